//! Shared state: `Value`, `Array` (locked), `RawValue`, `RawArray` (no lock),
//! `SharedMemory` (bytes, anonymous or named) and `ShareableList` (Python's
//! list of scalars, in Python's layout, inside a `SharedMemory`).
//!
//! Everything lives in an anonymous memfd mapped `MAP_SHARED`, except a named
//! `SharedMemory`, which is a POSIX shared-memory object in `/dev/shm`.

mod array;
mod block;
mod list;
mod memory;

pub use array::{Array, ArrayGuard, RawArray, RawValue, Value, ValueGuard};
pub use list::{ShareableList, ShareableValue};
pub use memory::SharedMemory;

/// The lock was acquired, but its previous holder died while holding it: the
/// data may be half-updated. Like std's `PoisonError`, it still hands over the
/// guard ([`into_guard`](OwnerDied::into_guard)); the lock is usable again
/// once this guard drops.
///
/// ```
/// use multiproc::{OwnerDied, Value};
///
/// let v = Value::new(5u32)?;
/// // No one died here, so `lock` succeeds; after a holder's death the same
/// // call returns `Err(OwnerDied(guard))`, and this recovers the guard:
/// let guard = v.lock().unwrap_or_else(OwnerDied::into_guard);
/// assert_eq!(*guard, 5);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct OwnerDied<G>(pub G);

impl<G> OwnerDied<G> {
    /// The guard, for use despite the dead owner.
    ///
    /// ```
    /// use multiproc::{Process, Value, worker};
    ///
    /// #[worker]
    /// fn die_holding(v: Value<u32>) {
    ///     let mut guard = v.lock().unwrap();
    ///     *guard = 99; // half-way through an update...
    ///     std::process::exit(1); // ...the holder dies
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let v = Value::new(0u32)?;
    /// let mut p = Process::new(die_holding, (v.clone(),));
    /// p.start()?;
    /// p.join()?;
    /// let guard = v.lock().unwrap_err().into_guard(); // Err: the owner died
    /// assert_eq!(*guard, 99); // what it left
    /// drop(guard);
    /// assert!(v.lock().is_ok()); // usable again
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_guard(self) -> G {
        self.0
    }
}

impl<G> std::fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnerDied { .. }")
    }
}

impl<G> std::fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the previous holder of the lock died while holding it")
    }
}

impl<G> std::error::Error for OwnerDied<G> {}
