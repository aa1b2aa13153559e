//! Plain function pointers that travel to a child: a `Barrier`'s action.
//!
//! A child is the same executable file started again, so a function has the
//! same offset from any other function of that file in both processes, even
//! though address-space randomisation loads the file at different addresses.
//! A pointer travels as its offset from [`anchor`], together with the
//! identity of the executable file; the receiver rebuilds the pointer only if
//! it runs the very same file (same device and inode: a running executable
//! cannot be modified in place) and the pointer is in the main program.

use std::io;

/// Which executable file a process runs: `/proc/self/exe`'s device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Image {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// This process's executable file, by
/// [`stat(2)`](https://man7.org/linux/man-pages/man2/stat.2.html) on
/// `/proc/self/exe`.
pub(crate) fn image() -> io::Result<Image> {
    let st = nix::sys::stat::stat("/proc/self/exe")?;
    Ok(Image {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// The reference point offsets are measured from: a function of this crate.
#[inline(never)]
fn anchor() {}

/// The base address of the loaded object containing `addr` (0: none), by
/// [`dladdr(3)`](https://man7.org/linux/man-pages/man3/dladdr.3.html).
fn object_base(addr: usize) -> usize {
    // SAFETY: Dl_info is plain data that dladdr fills in.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables and writes `info`, which
    // is valid and writable; any address may be asked about.
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) };
    if found == 0 {
        0
    } else {
        info.dli_fbase as usize
    }
}

/// The base address of the main program: the object holding its program
/// headers ([`getauxval(3)`](https://man7.org/linux/man-pages/man3/getauxval.3.html) `AT_PHDR`).
fn main_program_base() -> usize {
    // SAFETY: getauxval reads the auxiliary vector; it has no preconditions.
    let phdr = unsafe { libc::getauxval(libc::AT_PHDR) } as usize;
    if phdr == 0 { 0 } else { object_base(phdr) }
}

fn not_in_main_program() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "the function is not part of the main program (it lives in a shared library), \
         so it cannot be found again in a child process",
    )
}

/// `f`'s offset from [`anchor`], if both are functions of the main program.
pub(crate) fn to_offset(f: fn()) -> io::Result<i64> {
    let (f, anchor) = (f as usize, anchor as fn() as usize);
    let main = main_program_base();
    if main == 0 || object_base(f) != main || object_base(anchor) != main {
        return Err(not_in_main_program());
    }
    Ok((f as i64).wrapping_sub(anchor as i64))
}

/// The function that [`to_offset`] gave `offset` for in a process running
/// executable `image`.
pub(crate) fn from_offset(offset: i64, image: Image) -> io::Result<fn()> {
    if self::image()? != image {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the function comes from a process running a different executable file",
        ));
    }
    let anchor = anchor as fn() as usize;
    let addr = (anchor as i64).wrapping_add(offset) as usize;
    let main = main_program_base();
    if main == 0 || object_base(anchor) != main || object_base(addr) != main {
        return Err(not_in_main_program());
    }
    // SAFETY: `offset` was measured by `to_offset` between a valid `fn()` and
    // `anchor`, both in the main program of a process running this same
    // executable file (checked just above: same device and inode, which
    // cannot be rewritten while it runs). The loader maps a program as one
    // block at a random base, so the function lies at the same offset from
    // `anchor` here: `addr` is the entry of that same `fn()`.
    Ok(unsafe { std::mem::transmute::<*const (), fn()>(addr as *const ()) })
}
