//! Typed access to plain-old-data in shared memory (`Value`, `Array`,
//! `SharedMemory`).

use super::shm::Mapping;
use bytemuck::Pod;

/// `len` elements of `T` at `offset` of `map`, as a mutable slice.
///
/// Crate-internal contract: the caller holds the process-shared lock that
/// guards this memory for as long as the slice lives, so no other reference
/// to it exists in any process (every other access goes through the same
/// lock). Bounds and alignment are checked here.
#[allow(clippy::mut_from_ref)] // exclusivity comes from the process-shared lock
pub(crate) fn locked_slice<T: Pod>(map: &Mapping, offset: usize, len: usize) -> &mut [T] {
    let bytes = len
        .checked_mul(size_of::<T>())
        .expect("array size overflows");
    let ptr = map.addr(offset, bytes, align_of::<T>().max(1));
    // SAFETY: in bounds and aligned (checked by `addr`); any bit pattern is a
    // valid `T` (`Pod`); the mapping outlives the borrow of `map`; exclusive
    // access is the caller's lock (see above).
    unsafe { std::slice::from_raw_parts_mut(ptr.cast::<T>(), len) }
}

/// Reads element `index` of a `T` array at `offset` with a volatile load: no
/// lock, so a concurrent writer in another process may tear a multi-word value.
pub(crate) fn read<T: Pod>(map: &Mapping, offset: usize, index: usize) -> T {
    let at = offset + index * size_of::<T>();
    let ptr = map.addr(at, size_of::<T>(), align_of::<T>().max(1));
    // SAFETY: in bounds and aligned (checked); any bit pattern is a valid `T`.
    // A volatile access never forms a reference, so other processes writing
    // concurrently cannot invalidate one.
    unsafe { std::ptr::read_volatile(ptr.cast::<T>()) }
}

/// Writes element `index` with a volatile store (see [`read`]).
pub(crate) fn write<T: Pod>(map: &Mapping, offset: usize, index: usize, value: T) {
    let at = offset + index * size_of::<T>();
    let ptr = map.addr(at, size_of::<T>(), align_of::<T>().max(1));
    // SAFETY: as in `read`.
    unsafe { std::ptr::write_volatile(ptr.cast::<T>(), value) }
}

/// The whole mapping as bytes, for `SharedMemory`'s escape hatches.
///
/// # Safety
///
/// While the slice lives, no process may write the memory (for `&[u8]`), or
/// access it at all (for the `&mut` variant), other than through this slice.
#[allow(clippy::mut_from_ref)] // exclusivity is the caller's contract
pub(crate) unsafe fn bytes_mut(map: &Mapping) -> &mut [u8] {
    let ptr = map.addr(0, map.len(), 1);
    // SAFETY: the whole mapping is in bounds; the caller upholds exclusivity.
    unsafe { std::slice::from_raw_parts_mut(ptr, map.len()) }
}

impl crate::shared::SharedMemory {
    /// The whole block as a byte slice.
    ///
    /// # Safety
    ///
    /// No process may write the block while the slice lives (multiproc cannot
    /// see other processes' writes; a concurrent write is a data race).
    ///
    /// ```
    /// let block = multiproc::SharedMemory::new(4)?;
    /// block.write(0, &[1, 2, 3, 4])?;
    /// // SAFETY: no other process has this block.
    /// assert_eq!(unsafe { block.as_slice() }, &[1, 2, 3, 4]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: forwarded to the caller; a shared view is a weaker `&mut`.
        unsafe { bytes_mut(self.mapping()) }
    }

    /// The whole block as a mutable byte slice.
    ///
    /// # Safety
    ///
    /// No process (this one included, through another handle or slice) may
    /// read or write the block while the slice lives.
    ///
    /// ```
    /// let block = multiproc::SharedMemory::new(4)?;
    /// // SAFETY: no other process has this block, and nothing else here touches
    /// // it while `bytes` lives.
    /// let bytes = unsafe { block.as_mut_slice() };
    /// bytes.copy_from_slice(b"abcd");
    /// bytes.reverse();
    /// let mut out = [0u8; 4];
    /// block.read(0, &mut out)?; // `bytes` is no longer used
    /// assert_eq!(&out, b"dcba");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: forwarded to the caller.
        unsafe { bytes_mut(self.mapping()) }
    }
}
