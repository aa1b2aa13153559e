//! `Semaphore` and `BoundedSemaphore`: a counter in shared memory, taken
//! with a compare-and-swap, slept on as a futex word.

use super::block::{Block, FIELDS, Kind};
use super::{Deadline, RECHECK, ReleaseError};
use crate::sys::futex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::time::Duration;

/// The count: the futex word waiters sleep on.
const VALUE: usize = FIELDS;
/// Waiters about to sleep or asleep; releasers wake only if there are any.
const SLEEPERS: usize = FIELDS + 4;
/// The value a release may not exceed (`u32::MAX` when unbounded).
const LIMIT: usize = FIELDS + 64;
const LEN: usize = FIELDS + 128;

fn create(value: u32, limit: u32) -> crate::Result<Arc<Block>> {
    let block = Block::create(Kind::Semaphore, LEN, |map| {
        map.u32_at(VALUE).store(value, Relaxed);
        map.u32_at(LIMIT).store(limit, Relaxed);
        Ok(())
    })?;
    Ok(Arc::new(block))
}

fn value(b: &Block) -> u32 {
    b.u32(VALUE).load(Relaxed)
}

/// Takes one unit if there is one now.
fn try_take(b: &Block) -> bool {
    let word = b.u32(VALUE);
    let mut v = word.load(Relaxed);
    while v > 0 {
        match word.compare_exchange_weak(v, v - 1, Acquire, Relaxed) {
            Ok(_) => return true,
            Err(now) => v = now,
        }
    }
    false
}

fn take(b: &Block, deadline: Deadline) -> bool {
    if try_take(b) {
        return true;
    }
    if matches!(deadline, Deadline::Now) {
        return false;
    }
    let Err(began) = b.spin_until(|| value(b) > 0 && try_take(b)) else {
        return true;
    };
    let (word, sleepers) = (b.u32(VALUE), b.u32(SLEEPERS));
    let taken = loop {
        // A waiter woken for a unit and killed before taking it would leave
        // the others asleep beside a free unit: sleep in slices.
        let Some(slice) = deadline.slice(RECHECK) else {
            break try_take(b);
        };
        sleepers.fetch_add(1, SeqCst);
        if word.load(SeqCst) == 0 {
            futex::wait(word, 0, Some(slice));
        }
        sleepers.fetch_sub(1, SeqCst);
        if try_take(b) {
            break true;
        }
    };
    b.slept(began);
    taken
}

/// `take` awaited (feature `tokio`): the value word is watched by the
/// process's futex helper, in slices (as `take` sleeps in slices).
#[cfg(feature = "tokio")]
async fn take_async(b: &Arc<Block>) {
    loop {
        if try_take(b) {
            return;
        }
        let _sleeping = crate::aio::Counted::new(b.u32(SLEEPERS));
        if b.u32(VALUE).load(SeqCst) == 0 {
            let watched = Arc::new(super::block::BlockWord::new(b, VALUE));
            let _ = tokio::time::timeout(RECHECK, crate::aio::changed(watched, 0)).await;
        }
    }
}

/// Adds `n` units unless that would pass the limit.
fn give(b: &Block, n: u32) -> Result<(), ReleaseError> {
    let (word, limit) = (b.u32(VALUE), b.u32(LIMIT).load(Relaxed));
    let mut v = word.load(Relaxed);
    loop {
        let next = v
            .checked_add(n)
            .filter(|next| *next <= limit)
            .ok_or(ReleaseError { limit })?;
        match word.compare_exchange_weak(v, next, SeqCst, Relaxed) {
            Ok(_) => break,
            Err(now) => v = now,
        }
    }
    if n > 0 && b.u32(SLEEPERS).load(SeqCst) > 0 {
        futex::wake(word, n.min(i32::MAX as u32) as i32);
    }
    Ok(())
}

/// Holds one unit of a [`Semaphore`] or [`BoundedSemaphore`]; dropping it
/// releases the unit (Python's `with sem:`). Unlike a lock guard it may move
/// to another thread: a semaphore has no owner.
///
/// ```
/// let sem = multiproc::Semaphore::new(1)?;
/// let unit = sem.acquire();
/// assert_eq!(sem.value(), 0);
/// drop(unit);
/// assert_eq!(sem.value(), 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct SemaphoreGuard {
    block: Option<Arc<Block>>,
}

impl SemaphoreGuard {
    /// Keeps the unit taken: dropping the guard will not release it
    /// (Python's `acquire()` without a matching `release()`).
    ///
    /// ```
    /// let sem = multiproc::Semaphore::new(2)?;
    /// sem.acquire().forget();
    /// assert_eq!(sem.value(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn forget(mut self) {
        self.block = None;
    }
}

impl Drop for SemaphoreGuard {
    fn drop(&mut self) {
        if let Some(b) = self.block.take() {
            // Past the limit only if someone released this unit explicitly.
            let _ = give(&b, 1);
        }
    }
}

impl fmt::Debug for SemaphoreGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").finish_non_exhaustive()
    }
}

/// Python's `multiprocessing.Semaphore`: a counter that `acquire` takes one
/// from, waiting while it is zero, and `release` adds one to. Shared by
/// processes and threads; it has no owner, so any of them may release.
///
/// A waiter that is killed never disturbs the others: units are counted in
/// shared memory, not handed to particular waiters.
///
/// ```
/// use multiproc::{Process, Semaphore, worker};
///
/// #[worker]
/// fn signal(sem: Semaphore) {
///     sem.release();
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let sem = Semaphore::new(0)?;
/// let mut p = Process::new(signal, (sem.clone(),));
/// p.start()?;
/// sem.acquire().forget(); // waits for the child's release
/// assert_eq!(sem.value(), 0);
/// p.join()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Semaphore {
    block: Arc<Block>,
}

impl Semaphore {
    /// A semaphore holding `value` units.
    ///
    /// ```
    /// let sem = multiproc::Semaphore::new(3)?;
    /// assert_eq!(sem.value(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(value: u32) -> crate::Result<Semaphore> {
        Ok(Semaphore {
            block: create(value, u32::MAX)?,
        })
    }

    fn guard(&self) -> SemaphoreGuard {
        SemaphoreGuard {
            block: Some(self.block.clone()),
        }
    }

    /// Takes a unit, waiting for one.
    ///
    /// ```
    /// let sem = multiproc::Semaphore::new(1)?;
    /// let _unit = sem.acquire();
    /// assert!(sem.try_acquire().is_none());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire(&self) -> SemaphoreGuard {
        take(&self.block, Deadline::Never);
        self.guard()
    }

    /// Takes a unit, awaiting one: the async [`acquire`](Self::acquire)
    /// (feature `tokio`). The futex word is watched by the process's one
    /// helper thread, never a thread per waiter; dropping the future takes
    /// nothing.
    ///
    /// ```
    /// let sem = multiproc::Semaphore::new(0)?;
    /// let other = sem.clone();
    /// let releaser = std::thread::spawn(move || other.release());
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// let unit = runtime.block_on(sem.acquire_async());
    /// assert_eq!(sem.value(), 0);
    /// drop(unit);
    /// assert_eq!(sem.value(), 1);
    /// releaser.join().unwrap();
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn acquire_async(&self) -> SemaphoreGuard {
        take_async(&self.block).await;
        self.guard()
    }

    /// Takes a unit if there is one now.
    ///
    /// ```
    /// let sem = multiproc::Semaphore::new(0)?;
    /// assert!(sem.try_acquire().is_none());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Option<SemaphoreGuard> {
        take(&self.block, Deadline::Now).then(|| self.guard())
    }

    /// Takes a unit, waiting at most `timeout` for one.
    ///
    /// ```
    /// use std::time::Duration;
    /// let sem = multiproc::Semaphore::new(0)?;
    /// assert!(sem.acquire_timeout(Duration::from_millis(10)).is_none());
    /// sem.release();
    /// assert!(sem.acquire_timeout(Duration::from_millis(10)).is_some());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard> {
        take(&self.block, Deadline::after(timeout)).then(|| self.guard())
    }

    /// Adds a unit, waking a waiter if there is one.
    ///
    /// # Panics
    ///
    /// If the value would exceed `u32::MAX`.
    ///
    /// ```
    /// let sem = multiproc::Semaphore::new(0)?;
    /// sem.release();
    /// assert_eq!(sem.value(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn release(&self) {
        self.release_n(1);
    }

    /// Adds `n` units, waking up to `n` waiters (Python's `release(n)`).
    ///
    /// # Panics
    ///
    /// If the value would exceed `u32::MAX`.
    ///
    /// ```
    /// let sem = multiproc::Semaphore::new(0)?;
    /// sem.release_n(3);
    /// assert_eq!(sem.value(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn release_n(&self, n: u32) {
        if let Err(e) = give(&self.block, n) {
            panic!("multiproc::Semaphore::release: {e}");
        }
    }

    /// The number of units now (Python's `get_value()`; a snapshot).
    ///
    /// ```
    /// let sem = multiproc::Semaphore::new(2)?;
    /// let _unit = sem.acquire();
    /// assert_eq!(sem.value(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn value(&self) -> u32 {
        value(&self.block)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .finish()
    }
}

impl Serialize for Semaphore {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.block.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Semaphore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Semaphore {
            block: Arc::new(Block::deserialize(deserializer, Kind::Semaphore)?),
        })
    }
}

/// Python's `multiprocessing.BoundedSemaphore`: a [`Semaphore`] whose value
/// may never exceed its initial value; a release past it is a
/// [`ReleaseError`] and changes nothing.
///
/// ```
/// use multiproc::{BoundedSemaphore, ReleaseError};
/// let pool = BoundedSemaphore::new(2)?;
/// let unit = pool.acquire();
/// drop(unit);
/// assert_eq!(pool.release(), Err(ReleaseError { limit: 2 }));
/// assert_eq!(pool.value(), 2);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    block: Arc<Block>,
}

impl BoundedSemaphore {
    /// A bounded semaphore holding `value` units, its limit.
    ///
    /// ```
    /// let sem = multiproc::BoundedSemaphore::new(3)?;
    /// assert_eq!(sem.limit(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(value: u32) -> crate::Result<BoundedSemaphore> {
        Ok(BoundedSemaphore {
            block: create(value, value)?,
        })
    }

    fn guard(&self) -> SemaphoreGuard {
        SemaphoreGuard {
            block: Some(self.block.clone()),
        }
    }

    /// Takes a unit, waiting for one.
    ///
    /// ```
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// let _unit = sem.acquire();
    /// assert_eq!(sem.value(), 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire(&self) -> SemaphoreGuard {
        take(&self.block, Deadline::Never);
        self.guard()
    }

    /// Takes a unit, awaiting one, as [`Semaphore::acquire_async`]
    /// (feature `tokio`).
    ///
    /// ```
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// let unit = runtime.block_on(sem.acquire_async());
    /// assert!(sem.try_acquire().is_none());
    /// drop(unit);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn acquire_async(&self) -> SemaphoreGuard {
        take_async(&self.block).await;
        self.guard()
    }

    /// Takes a unit if there is one now.
    ///
    /// ```
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// let _unit = sem.try_acquire().unwrap();
    /// assert!(sem.try_acquire().is_none());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Option<SemaphoreGuard> {
        take(&self.block, Deadline::Now).then(|| self.guard())
    }

    /// Takes a unit, waiting at most `timeout` for one.
    ///
    /// ```
    /// use std::time::Duration;
    /// let sem = multiproc::BoundedSemaphore::new(0)?;
    /// assert!(sem.acquire_timeout(Duration::ZERO).is_none());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard> {
        take(&self.block, Deadline::after(timeout)).then(|| self.guard())
    }

    /// Adds a unit back, unless the value is at its limit already.
    ///
    /// ```
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// sem.acquire().forget();
    /// assert_eq!(sem.release(), Ok(()));
    /// assert!(sem.release().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn release(&self) -> Result<(), ReleaseError> {
        give(&self.block, 1)
    }

    /// Adds `n` units back, unless that passes the limit (then nothing
    /// changes).
    ///
    /// ```
    /// let sem = multiproc::BoundedSemaphore::new(2)?;
    /// sem.acquire().forget();
    /// assert!(sem.release_n(2).is_err());
    /// assert_eq!(sem.release_n(1), Ok(()));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn release_n(&self, n: u32) -> Result<(), ReleaseError> {
        give(&self.block, n)
    }

    /// The number of units now (a snapshot).
    ///
    /// ```
    /// let sem = multiproc::BoundedSemaphore::new(2)?;
    /// assert_eq!(sem.value(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn value(&self) -> u32 {
        value(&self.block)
    }

    /// The initial value, which the value may never exceed.
    ///
    /// ```
    /// assert_eq!(multiproc::BoundedSemaphore::new(4)?.limit(), 4);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn limit(&self) -> u32 {
        self.block.u32(LIMIT).load(Relaxed)
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.value())
            .field("limit", &self.limit())
            .finish()
    }
}

impl Serialize for BoundedSemaphore {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.block.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for BoundedSemaphore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(BoundedSemaphore {
            block: Arc::new(Block::deserialize(deserializer, Kind::Semaphore)?),
        })
    }
}
