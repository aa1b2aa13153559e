//! Shared memory: memfd files mapped `MAP_SHARED`.
//!
//! A [`Mapping`] is plain bytes that other processes may write at any time.
//! Its words are only ever touched through atomics; its byte ranges are only
//! copied while the owning structure's process-shared lock is held (that
//! protocol is the callers'; see `queue.rs`).

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// Creates an anonymous shared-memory file of `len` bytes by
/// [`memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html):
/// no name in `/dev/shm`, gone when the last descriptor and mapping are.
pub(crate) fn memfd(name: &str, len: u64) -> io::Result<OwnedFd> {
    let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    let fd =
        nix::sys::memfd::memfd_create(name.as_c_str(), nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    resize(fd.as_fd(), len)?;
    Ok(fd)
}

/// Sets the file's size by [`ftruncate(2)`](https://man7.org/linux/man-pages/man2/ftruncate.2.html).
pub(crate) fn resize(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = i64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(nix::unistd::ftruncate(fd, len)?)
}

/// The file's current size, by [`fstat(2)`](https://man7.org/linux/man-pages/man2/fstat.2.html).
pub(crate) fn size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(nix::sys::stat::fstat(fd)?.st_size as u64)
}

/// `len` bytes of a file at `offset`, mapped shared and read-write.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is process-shared memory; nothing in it is tied to a
// thread, and all access goes through atomics or copies made under the
// callers' lock protocol.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` from `offset` by
    /// [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html).
    /// The caller checks that the file is at least `offset + len` long.
    pub(crate) fn new(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<Mapping> {
        let length = NonZeroUsize::new(len).ok_or(io::ErrorKind::InvalidInput)?;
        let offset =
            i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh shared mapping chosen by the kernel overlaps nothing
        // of ours; the file outlives the call (borrowed).
        let ptr = unsafe {
            nix::sys::mman::mmap(
                None,
                length,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_SHARED,
                fd,
                offset,
            )?
        };
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn check(&self, offset: usize, len: usize, align: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len) && offset % align == 0,
            "shared-memory access out of bounds: {offset}+{len} of {}",
            self.len
        );
    }

    /// The 32-bit word at `offset` (aligned, in bounds: checked).
    pub(crate) fn u32_at(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4, 4);
        // SAFETY: in bounds and aligned (checked); mmap memory is valid for
        // the mapping's life, which `&self` bounds; atomics make concurrent
        // access from other processes well-defined.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
    }

    /// The 64-bit word at `offset` (aligned, in bounds: checked).
    #[inline]
    pub(crate) fn u64_at(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8, 8);
        // SAFETY: as in `u32_at`.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
    }

    /// Copies `bytes` in at `offset` (in bounds: checked).
    pub(crate) fn write(&self, offset: usize, bytes: &[u8]) {
        self.check(offset, bytes.len(), 1);
        // SAFETY: the destination is in bounds (checked) and cannot overlap
        // `bytes`, which is ordinary process memory; writers are serialized by
        // the caller's process-shared lock.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(offset),
                bytes.len(),
            )
        }
    }

    /// Copies `out.len()` bytes out from `offset` (in bounds: checked).
    pub(crate) fn read(&self, offset: usize, out: &mut [u8]) {
        self.check(offset, out.len(), 1);
        // SAFETY: as in `write`, in the other direction.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                out.as_mut_ptr(),
                out.len(),
            )
        }
    }

    /// Appends `len` bytes copied out from `offset` (in bounds: checked) to
    /// `out`, without first zeroing the room they take.
    pub(crate) fn read_append(&self, offset: usize, len: usize, out: &mut Vec<u8>) {
        self.check(offset, len, 1);
        out.reserve(len);
        // SAFETY: the source is in bounds (checked); the destination is `len`
        // bytes of `out`'s spare capacity (reserved), which cannot overlap
        // the mapping; `set_len` covers exactly the bytes just written.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                out.as_mut_ptr().add(out.len()),
                len,
            );
            out.set_len(out.len() + len);
        }
    }

    /// Copies `len` bytes from `from` to `to` within the mapping; the ranges
    /// may overlap (in bounds: checked).
    pub(crate) fn copy_within(&self, from: usize, to: usize, len: usize) {
        self.check(from, len, 1);
        self.check(to, len, 1);
        // SAFETY: both ranges are in bounds (checked); `copy` allows overlap.
        unsafe { std::ptr::copy(self.ptr.as_ptr().add(from), self.ptr.as_ptr().add(to), len) }
    }

    /// The whole mapping as ordinary bytes, for a mapping of a file range
    /// that no other process touches while this one lives: a pool worker's
    /// reply buffer, which the parent maps only after the worker has died
    /// (`pool/progress.rs`). `&mut self` makes this the only view here.
    #[inline]
    pub(crate) fn exclusive_bytes(&mut self) -> &mut [u8] {
        // SAFETY: the pointer and length are those of a live mapping that
        // `&mut self` borrows exclusively in this process; by the protocol
        // above no other process reads or writes the range meanwhile, so
        // nothing aliases the slice.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The address of byte `offset`, for the process-shared mutex in `mutex.rs`.
    pub(super) fn addr(&self, offset: usize, len: usize, align: usize) -> *mut u8 {
        self.check(offset, len, align);
        // SAFETY: in bounds (checked).
        unsafe { self.ptr.as_ptr().add(offset) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the pointer and length are exactly those mmap returned, and
        // no reference into the mapping outlives `self`.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len) };
    }
}
