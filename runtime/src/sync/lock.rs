//! `Lock` and `RLock`: robust, process-shared pthread mutexes in a memfd.

use super::block::{Block, FIELDS, Kind};
use super::{AcquireResult, AcquireTimeoutError, Deadline, NotOwner, OwnerDied, TryAcquireError};
use crate::sys::mutex::{self, Locked};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// Rounds of spinning on a held mutex before sleeping in the kernel: a
/// futex sleep and wake cost microseconds, most critical sections less.
const SPINS: u32 = 1000;

/// The mutex sits at the start of the block.
const MUTEX: usize = 0;

/// How an attempt to lock ended.
pub(super) enum Got {
    Acquired,
    OwnerDied,
    /// Held by someone else until the deadline.
    Busy,
    /// A `Lock` held by the calling thread itself.
    SelfHeld,
}

pub(super) fn lock_raw(block: &Block, deadline: Deadline) -> Got {
    let locked = match deadline {
        Deadline::Now => mutex::try_lock(block.map(), MUTEX),
        _ => mutex::lock_spinning(block.map(), MUTEX, deadline.instant(), SPINS),
    };
    match locked {
        Ok(Locked::Acquired) => Got::Acquired,
        Ok(Locked::OwnerDied) => Got::OwnerDied,
        Ok(Locked::TimedOut) => Got::Busy,
        Err(e) if e.raw_os_error() == Some(libc::EDEADLK) => Got::SelfHeld,
        // Only corrupt shared memory (EINVAL) or 2^32 nested RLock
        // acquisitions (EAGAIN) get here.
        Err(e) => panic!("multiproc: cannot lock a process-shared mutex: {e}"),
    }
}

/// Unlocks once: `false` if the calling thread did not hold the mutex.
pub(super) fn unlock_raw(block: &Block) -> bool {
    match mutex::unlock(block.map(), MUTEX) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => false,
        Err(e) => panic!("multiproc: cannot unlock a process-shared mutex: {e}"),
    }
}

/// Makes `Got` into the three public result shapes.
fn finish<G>(
    got: Got,
    guard: impl FnOnce() -> G,
    self_held: &str,
) -> Result<G, Option<OwnerDied<G>>> {
    match got {
        Got::Acquired => Ok(guard()),
        Got::OwnerDied => Err(Some(OwnerDied(guard()))),
        Got::Busy => Err(None),
        Got::SelfHeld => {
            // Only a blocking acquire asks for an answer that cannot come.
            if self_held.is_empty() {
                Err(None)
            } else {
                panic!("{self_held}")
            }
        }
    }
}

fn blocking<G>(r: Result<G, Option<OwnerDied<G>>>) -> AcquireResult<G> {
    r.map_err(|e| e.expect("a blocking lock waits until it acquires"))
}

fn trying<G>(r: Result<G, Option<OwnerDied<G>>>) -> Result<G, TryAcquireError<G>> {
    r.map_err(|e| e.map_or(TryAcquireError::WouldBlock, TryAcquireError::OwnerDied))
}

fn timing<G>(r: Result<G, Option<OwnerDied<G>>>) -> Result<G, AcquireTimeoutError<G>> {
    r.map_err(|e| e.map_or(AcquireTimeoutError::Timeout, AcquireTimeoutError::OwnerDied))
}

/// Python's `multiprocessing.Lock`: a mutual-exclusion lock shared by
/// processes and threads, robust to a holder that dies.
///
/// [`acquire`](Self::acquire) returns a [`LockGuard`] that releases the lock
/// when dropped (Python's `with lock:`). If the holder dies while holding
/// it (killed, aborted, exited), the lock is released by the kernel and the
/// next acquirer gets it with [`OwnerDied`] wrapped around the guard, once.
///
/// The lock has an owner: the thread that acquired it, which alone may
/// release it (guards are not `Send`). Python lets any process release a
/// `Lock`; use a [`Semaphore`](crate::Semaphore) of 1 for that hand-off
/// pattern. Acquiring a `Lock` the calling thread already holds panics
/// instead of deadlocking (its `try_` and `_timeout` forms fail at once);
/// use an [`RLock`] to re-enter.
///
/// ```
/// use multiproc::{Lock, Process, worker};
///
/// #[worker]
/// fn critical(lock: Lock) {
///     let _held = lock.acquire().unwrap();
///     println!("Critical section!");
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let lock = Lock::new()?;
/// let mut p = Process::new(critical, (lock.clone(),));
/// p.start()?;
/// assert_eq!(p.join()?, 0);
/// assert!(lock.try_acquire().is_ok()); // the child released it
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Lock {
    block: Arc<Block>,
}

/// Holds a [`Lock`]; dropping it releases the lock.
///
/// Forgetting the guard (`std::mem::forget`) keeps the lock held until this
/// thread calls [`Lock::release`] or dies.
///
/// ```
/// let lock = multiproc::Lock::new()?;
/// let guard = lock.acquire().unwrap();
/// assert!(lock.try_acquire().is_err());
/// drop(guard);
/// assert!(lock.try_acquire().is_ok());
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// Not `Send`: a pthread mutex must be unlocked by the thread that locked it.
///
/// ```compile_fail,E0277
/// let lock = multiproc::Lock::new().unwrap();
/// let guard = lock.acquire().unwrap();
/// std::thread::spawn(move || drop(guard)); // error: `LockGuard` cannot be sent
/// ```
pub struct LockGuard<'a> {
    lock: &'a Lock,
    /// Whether dropping unlocks (a `Condition` disarms the guard it waits on).
    armed: bool,
    _not_send: PhantomData<std::sync::MutexGuard<'static, ()>>,
}

const LOCK_SELF_HELD: &str = "multiproc::Lock::acquire: this thread already holds the lock, which would \
     deadlock (a Lock is not re-entrant; use an RLock)";

impl Lock {
    /// A new, unlocked lock.
    ///
    /// ```
    /// let lock = multiproc::Lock::new()?;
    /// assert!(lock.try_acquire().is_ok());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> crate::Result<Lock> {
        let block = Block::create(Kind::Lock, FIELDS, |map| {
            mutex::init_kind(map, MUTEX, mutex::Kind::ErrorCheck)
        })?;
        Ok(Lock {
            block: Arc::new(block),
        })
    }

    fn guard(&self) -> LockGuard<'_> {
        LockGuard {
            lock: self,
            armed: true,
            _not_send: PhantomData,
        }
    }

    /// Waits for the lock and takes it. `Err(OwnerDied)` still holds the
    /// lock: its previous holder died while holding it.
    ///
    /// # Panics
    ///
    /// If the calling thread already holds the lock (it would wait for
    /// itself for ever).
    ///
    /// ```
    /// let lock = multiproc::Lock::new()?;
    /// let guard = lock.acquire().unwrap();
    /// assert!(lock.try_acquire().is_err());
    /// drop(guard);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire(&self) -> AcquireResult<LockGuard<'_>> {
        blocking(finish(
            lock_raw(&self.block, Deadline::Never),
            || self.guard(),
            LOCK_SELF_HELD,
        ))
    }

    /// Takes the lock if it is free now (Python's `acquire(False)`).
    ///
    /// ```
    /// use multiproc::TryAcquireError;
    /// let lock = multiproc::Lock::new()?;
    /// let _held = lock.acquire().unwrap();
    /// assert!(matches!(lock.try_acquire(), Err(TryAcquireError::WouldBlock)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<LockGuard<'_>, TryAcquireError<LockGuard<'_>>> {
        trying(finish(
            lock_raw(&self.block, Deadline::Now),
            || self.guard(),
            "",
        ))
    }

    /// Waits at most `timeout` for the lock (Python's `acquire(timeout=t)`);
    /// a zero timeout only tries.
    ///
    /// ```
    /// use multiproc::AcquireTimeoutError;
    /// use std::time::Duration;
    /// let lock = multiproc::Lock::new()?;
    /// let _held = lock.acquire().unwrap();
    /// let again = std::thread::scope(|s| {
    ///     s.spawn(|| lock.acquire_timeout(Duration::from_millis(10)).is_ok()).join().unwrap()
    /// });
    /// assert!(!again);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<LockGuard<'_>, AcquireTimeoutError<LockGuard<'_>>> {
        timing(finish(
            lock_raw(&self.block, Deadline::after(timeout)),
            || self.guard(),
            "",
        ))
    }

    /// Releases the lock that the calling thread holds without a guard (after
    /// `std::mem::forget` of one): Python's explicit `release()`. Any other
    /// thread or process gets [`NotOwner`], and nothing changes.
    ///
    /// ```
    /// use multiproc::NotOwner;
    /// let lock = multiproc::Lock::new()?;
    /// std::mem::forget(lock.acquire().unwrap());
    /// let elsewhere = std::thread::scope(|s| s.spawn(|| lock.release()).join().unwrap());
    /// assert_eq!(elsewhere, Err(NotOwner));
    /// assert_eq!(lock.release(), Ok(()));
    /// assert_eq!(lock.release(), Err(NotOwner));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn release(&self) -> Result<(), NotOwner> {
        if unlock_raw(&self.block) {
            Ok(())
        } else {
            Err(NotOwner)
        }
    }

    pub(super) fn block(&self) -> &Block {
        &self.block
    }

    /// For `Condition::wait`: gives up the lock the guard holds; returns
    /// the guard's handle and how many levels it let go.
    pub(super) fn release_all(mut guard: LockGuard<'_>) -> (&Lock, u32) {
        guard.armed = false;
        (guard.lock, unlock_raw(&guard.lock.block) as u32)
    }

    /// For `Condition::wait`: takes the lock back.
    pub(super) fn reacquire(&self, _levels: u32) -> AcquireResult<LockGuard<'_>> {
        self.acquire()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            // EPERM only if `Lock::release` already released it.
            let _ = unlock_raw(&self.lock.block);
        }
    }
}

impl LockGuard<'_> {
    pub(super) fn block(&self) -> &Block {
        &self.lock.block
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock").finish_non_exhaustive()
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

impl Serialize for Lock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.block.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Lock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Lock {
            block: Arc::new(Block::deserialize(deserializer, Kind::Lock)?),
        })
    }
}

/// Python's `multiprocessing.RLock`: a re-entrant lock. The thread that holds
/// it may acquire it again (each acquire returns a guard, and the lock is
/// free once every guard is dropped); other threads and processes wait.
///
/// Robust like [`Lock`]: if the holder dies, the next acquirer gets the lock
/// (at depth one) wrapped in [`OwnerDied`]. Releasing an `RLock` the
/// calling thread does not hold is [`NotOwner`].
///
/// ```
/// use multiproc::{RLock, Process, worker};
///
/// #[worker]
/// fn nested(lock: RLock) -> bool {
///     let _outer = lock.acquire().unwrap();
///     let _inner = lock.acquire().unwrap(); // re-entered, no deadlock
///     true
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let lock = RLock::new()?;
/// let mut p = Process::new(nested, (lock.clone(),));
/// p.start()?;
/// assert!(p.result()?);
/// assert!(lock.try_acquire().is_ok());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RLock {
    block: Arc<Block>,
}

/// Holds one level of an [`RLock`]; dropping it releases that level.
/// Not `Send`, as [`LockGuard`]:
///
/// ```compile_fail,E0277
/// let lock = multiproc::RLock::new().unwrap();
/// let guard = lock.acquire().unwrap();
/// std::thread::spawn(move || drop(guard)); // error: `RLockGuard` cannot be sent
/// ```
///
/// Levels come and go in any order:
///
/// ```
/// let lock = multiproc::RLock::new()?;
/// let a = lock.acquire().unwrap();
/// let b = lock.acquire().unwrap();
/// drop(a);
/// drop(b); // now free
/// let free = std::thread::scope(|s| s.spawn(|| lock.try_acquire().is_ok()).join().unwrap());
/// assert!(free);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    armed: bool,
    _not_send: PhantomData<std::sync::MutexGuard<'static, ()>>,
}

impl RLock {
    /// A new, unlocked re-entrant lock.
    ///
    /// ```
    /// let lock = multiproc::RLock::new()?;
    /// assert!(lock.try_acquire().is_ok());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> crate::Result<RLock> {
        let block = Block::create(Kind::RLock, FIELDS, |map| {
            mutex::init_kind(map, MUTEX, mutex::Kind::Recursive)
        })?;
        Ok(RLock {
            block: Arc::new(block),
        })
    }

    fn guard(&self) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            armed: true,
            _not_send: PhantomData,
        }
    }

    /// Waits for the lock and takes it (at once if this thread holds it).
    /// `Err(OwnerDied)` still holds the lock: its previous holder died.
    ///
    /// ```
    /// let lock = multiproc::RLock::new()?;
    /// let _a = lock.acquire().unwrap();
    /// let _b = lock.acquire().unwrap();
    /// let other = std::thread::scope(|s| s.spawn(|| lock.try_acquire().is_ok()).join().unwrap());
    /// assert!(!other);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire(&self) -> AcquireResult<RLockGuard<'_>> {
        blocking(finish(
            lock_raw(&self.block, Deadline::Never),
            || self.guard(),
            "",
        ))
    }

    /// Takes the lock if it is free or held by this thread.
    ///
    /// ```
    /// let lock = multiproc::RLock::new()?;
    /// let _held = lock.acquire().unwrap();
    /// assert!(lock.try_acquire().is_ok()); // this thread: re-entered
    /// let other = std::thread::scope(|s| s.spawn(|| lock.try_acquire().is_ok()).join().unwrap());
    /// assert!(!other);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<RLockGuard<'_>, TryAcquireError<RLockGuard<'_>>> {
        trying(finish(
            lock_raw(&self.block, Deadline::Now),
            || self.guard(),
            "",
        ))
    }

    /// Waits at most `timeout` for the lock; a zero timeout only tries.
    ///
    /// ```
    /// use std::time::Duration;
    /// let lock = multiproc::RLock::new()?;
    /// assert!(lock.acquire_timeout(Duration::from_millis(10)).is_ok());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RLockGuard<'_>, AcquireTimeoutError<RLockGuard<'_>>> {
        timing(finish(
            lock_raw(&self.block, Deadline::after(timeout)),
            || self.guard(),
            "",
        ))
    }

    /// Releases one level that the calling thread holds without a guard
    /// (after `std::mem::forget` of one): Python's explicit `release()`.
    /// A thread or process that does not hold the lock gets [`NotOwner`],
    /// and nothing changes.
    ///
    /// ```
    /// use multiproc::NotOwner;
    /// let lock = multiproc::RLock::new()?;
    /// std::mem::forget(lock.acquire().unwrap());
    /// std::mem::forget(lock.acquire().unwrap());
    /// let elsewhere = std::thread::scope(|s| s.spawn(|| lock.release()).join().unwrap());
    /// assert_eq!(elsewhere, Err(NotOwner));
    /// assert_eq!(lock.release(), Ok(()));
    /// assert_eq!(lock.release(), Ok(()));
    /// assert_eq!(lock.release(), Err(NotOwner));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn release(&self) -> Result<(), NotOwner> {
        if unlock_raw(&self.block) {
            Ok(())
        } else {
            Err(NotOwner)
        }
    }

    pub(super) fn block(&self) -> &Block {
        &self.block
    }

    /// For `Condition::wait`: gives up every level the calling thread holds
    /// (the guard's and its outer guards'), returning how many.
    pub(super) fn release_all(mut guard: RLockGuard<'_>) -> (&RLock, u32) {
        guard.armed = false;
        let mut levels = 0;
        while unlock_raw(&guard.lock.block) {
            levels += 1;
        }
        (guard.lock, levels)
    }

    /// For `Condition::wait`: takes back `levels` levels (at least one).
    pub(super) fn reacquire(&self, levels: u32) -> AcquireResult<RLockGuard<'_>> {
        let first = self.acquire();
        for _ in 1..levels {
            // This thread holds it now: re-entering never waits, and the
            // outer guards own these levels.
            lock_raw(&self.block, Deadline::Never);
        }
        first
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            // EPERM only if `RLock::release` already released this level.
            let _ = unlock_raw(&self.lock.block);
        }
    }
}

impl RLockGuard<'_> {
    pub(super) fn block(&self) -> &Block {
        &self.lock.block
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock").finish_non_exhaustive()
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}

impl Serialize for RLock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.block.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RLock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(RLock {
            block: Arc::new(Block::deserialize(deserializer, Kind::RLock)?),
        })
    }
}
