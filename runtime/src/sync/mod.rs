//! Synchronization between processes: `Lock`, `RLock`, `Semaphore`,
//! `BoundedSemaphore`, `Event`, `Condition`, `Barrier`.
//!
//! Each primitive lives in a small memfd that every handle maps. Locks are
//! robust, process-shared pthread mutexes, so a holder that dies releases
//! them and the next acquirer is told; the others sleep on shared futex
//! words, announcing themselves first so that wakers make a system call only
//! when someone sleeps.

mod barrier;
mod block;
mod condition;
mod event;
mod lock;
mod semaphore;

pub use barrier::{Barrier, BarrierBuilder, BarrierWaitError, TryBarrierWaitError};
pub use condition::{Condition, ConditionLock, WaitTimeoutResult};
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};

use crate::error::Error;
use crate::shared::OwnerDied;
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

/// How long a call may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Deadline {
    /// Not at all: answer from the current state.
    Now,
    /// Until this instant.
    At(Instant),
    /// For ever.
    Never,
}

impl Deadline {
    /// `timeout` from now; zero answers at once.
    pub(crate) fn after(timeout: Duration) -> Deadline {
        if timeout.is_zero() {
            return Deadline::Now;
        }
        match Instant::now().checked_add(timeout) {
            Some(at) => Deadline::At(at),
            None => Deadline::Never,
        }
    }

    /// `timeout` from now, or never without one.
    pub(crate) fn after_opt(timeout: Option<Duration>) -> Deadline {
        timeout.map_or(Deadline::Never, Deadline::after)
    }

    /// Time left: `None` once it has passed, `Some(None)` for ever.
    pub(crate) fn remaining(self) -> Option<Option<Duration>> {
        match self {
            Deadline::Now => None,
            Deadline::Never => Some(None),
            Deadline::At(at) => {
                let left = at.saturating_duration_since(Instant::now());
                (!left.is_zero()).then_some(Some(left))
            }
        }
    }

    /// `remaining`, capped at `slice` (for sleeps that re-check now and then).
    pub(crate) fn slice(self, slice: Duration) -> Option<Duration> {
        match self.remaining()? {
            None => Some(slice),
            Some(left) => Some(left.min(slice)),
        }
    }

    /// The instant for a timed `pthread_mutex` lock (`None`: for ever).
    pub(crate) fn instant(self) -> Option<Instant> {
        match self {
            Deadline::Now => Some(Instant::now()),
            Deadline::At(at) => Some(at),
            Deadline::Never => None,
        }
    }
}

/// The result of a blocking acquire: the guard, or the guard wrapped in
/// [`OwnerDied`] when the previous holder died while holding the lock (Python
/// would deadlock there). Then whatever the lock protects may be
/// half-updated: repair it, and go on with the guard. It is reported once:
/// the next acquirer gets the lock normally.
///
/// ```
/// use multiproc::{Lock, OwnerDied, Process, worker};
///
/// #[worker]
/// fn die_holding(lock: Lock) {
///     std::mem::forget(lock.acquire().unwrap());
///     std::process::exit(3); // or be killed, or abort
/// }
///
/// let lock = Lock::new()?;
/// let mut p = Process::new(die_holding, (lock.clone(),));
/// p.start()?;
/// assert_eq!(p.join()?, 3);
/// let err = lock.acquire().unwrap_err(); // acquired, and told
/// let guard = err.into_guard();
/// drop(guard);
/// assert!(lock.acquire().is_ok()); // reported once
/// # Ok::<(), multiproc::Error>(())
/// ```
pub type AcquireResult<G> = Result<G, OwnerDied<G>>;

/// Why `try_acquire` did not simply return a guard.
///
/// ```
/// use multiproc::{Lock, TryAcquireError};
/// let lock = Lock::new()?;
/// let held = lock.acquire().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| assert!(matches!(lock.try_acquire(), Err(TryAcquireError::WouldBlock))));
/// });
/// # drop(held);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub enum TryAcquireError<G> {
    /// Someone else holds the lock (or, for a [`Lock`], this thread does).
    WouldBlock,
    /// Acquired, but the previous holder died while holding it.
    OwnerDied(OwnerDied<G>),
}

/// Why `acquire_timeout` did not simply return a guard.
///
/// ```
/// use multiproc::{AcquireTimeoutError, RLock};
/// use std::time::Duration;
/// let lock = RLock::new()?;
/// let held = lock.acquire().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         let r = lock.acquire_timeout(Duration::from_millis(5));
///         assert!(matches!(r, Err(AcquireTimeoutError::Timeout)));
///     });
/// });
/// # drop(held);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub enum AcquireTimeoutError<G> {
    /// The lock stayed held for the whole timeout (or, for a [`Lock`], this
    /// thread holds it: waiting could never succeed).
    Timeout,
    /// Acquired, but the previous holder died while holding it.
    OwnerDied(OwnerDied<G>),
}

/// `OwnerDied` with the guard turned into something else.
pub(crate) fn map_died<G, H>(e: OwnerDied<G>, f: impl FnOnce(G) -> H) -> OwnerDied<H> {
    OwnerDied(f(e.0))
}

impl<G> From<OwnerDied<G>> for TryAcquireError<G> {
    fn from(e: OwnerDied<G>) -> Self {
        TryAcquireError::OwnerDied(e)
    }
}

impl<G> From<OwnerDied<G>> for AcquireTimeoutError<G> {
    fn from(e: OwnerDied<G>) -> Self {
        AcquireTimeoutError::OwnerDied(e)
    }
}

impl<G> fmt::Debug for TryAcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryAcquireError::WouldBlock => f.write_str("WouldBlock"),
            TryAcquireError::OwnerDied(e) => f.debug_tuple("OwnerDied").field(e).finish(),
        }
    }
}

impl<G> fmt::Debug for AcquireTimeoutError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireTimeoutError::Timeout => f.write_str("Timeout"),
            AcquireTimeoutError::OwnerDied(e) => f.debug_tuple("OwnerDied").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for TryAcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryAcquireError::WouldBlock => f.write_str("the lock is held"),
            TryAcquireError::OwnerDied(e) => e.fmt(f),
        }
    }
}

impl<G> fmt::Display for AcquireTimeoutError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireTimeoutError::Timeout => f.write_str("timed out waiting for the lock"),
            AcquireTimeoutError::OwnerDied(e) => e.fmt(f),
        }
    }
}

impl<G> std::error::Error for TryAcquireError<G> {}
impl<G> std::error::Error for AcquireTimeoutError<G> {}

impl<G> From<OwnerDied<G>> for Error {
    fn from(_: OwnerDied<G>) -> Self {
        Error::OwnerDied
    }
}

impl<G> From<TryAcquireError<G>> for Error {
    fn from(e: TryAcquireError<G>) -> Self {
        match e {
            TryAcquireError::WouldBlock => Error::WouldBlock,
            TryAcquireError::OwnerDied(_) => Error::OwnerDied,
        }
    }
}

impl<G> From<AcquireTimeoutError<G>> for Error {
    fn from(e: AcquireTimeoutError<G>) -> Self {
        match e {
            AcquireTimeoutError::Timeout => Error::Timeout,
            AcquireTimeoutError::OwnerDied(_) => Error::OwnerDied,
        }
    }
}

/// `release` was called by a thread that does not hold the lock (Python's
/// `RuntimeError: cannot release un-acquired lock`). Nothing changed.
///
/// ```
/// use multiproc::{NotOwner, RLock};
/// let lock = RLock::new()?;
/// assert_eq!(lock.release(), Err(NotOwner));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
#[error("the lock is not held by this thread")]
pub struct NotOwner;

impl From<NotOwner> for Error {
    fn from(_: NotOwner) -> Self {
        Error::NotOwner
    }
}

/// A [`BoundedSemaphore`] was released more times than it was acquired
/// (Python's `ValueError: Semaphore released too many times`). Nothing
/// changed.
///
/// ```
/// use multiproc::{BoundedSemaphore, ReleaseError};
/// let sem = BoundedSemaphore::new(1)?;
/// assert_eq!(sem.release(), Err(ReleaseError { limit: 1 }));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
#[error("semaphore released too many times (its limit is {limit})")]
pub struct ReleaseError {
    /// The value the semaphore may not exceed.
    pub limit: u32,
}

impl From<ReleaseError> for Error {
    fn from(_: ReleaseError) -> Self {
        Error::ReleasedTooManyTimes
    }
}

impl From<BarrierWaitError> for Error {
    fn from(e: BarrierWaitError) -> Self {
        match e {
            BarrierWaitError::Broken => Error::BrokenBarrier,
            BarrierWaitError::Timeout => Error::Timeout,
        }
    }
}

impl From<TryBarrierWaitError> for Error {
    fn from(e: TryBarrierWaitError) -> Self {
        match e {
            TryBarrierWaitError::Broken => Error::BrokenBarrier,
            TryBarrierWaitError::WouldBlock => Error::WouldBlock,
        }
    }
}

/// How often sleepers that must notice a dead process wake up to check.
pub(crate) const RECHECK: Duration = Duration::from_millis(50);

/// Whether more threads are runnable than this process has CPUs, read from
/// `/proc/loadavg` (its fourth field counts the runnable threads now, not
/// an average) at most every 10 ms. Then a spinning waiter takes the core
/// its partner needs to answer, so waiters sleep at once.
fn crowded() -> bool {
    static EPOCH: OnceLock<(Instant, usize)> = OnceLock::new();
    static NEXT_CHECK_MS: AtomicU64 = AtomicU64::new(0);
    static CROWDED: AtomicBool = AtomicBool::new(false);
    let (epoch, cpus) = *EPOCH.get_or_init(|| (Instant::now(), crate::cpu_count()));
    let now_ms = epoch.elapsed().as_millis() as u64;
    let next = NEXT_CHECK_MS.load(Relaxed);
    if now_ms >= next
        && NEXT_CHECK_MS
            .compare_exchange(next, now_ms + 10, Relaxed, Relaxed)
            .is_ok()
    {
        CROWDED.store(runnable_threads().is_some_and(|n| n > cpus), Relaxed);
    }
    CROWDED.load(Relaxed)
}

/// The number of runnable threads on the machine, this one included.
fn runnable_threads() -> Option<usize> {
    let mut buf = [0u8; 128];
    let n = std::fs::File::open("/proc/loadavg")
        .and_then(|mut f| std::io::Read::read(&mut f, &mut buf))
        .ok()?;
    // "0.52 0.58 0.59 3/467 12345": runnable/total is the fourth field.
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let field = text.split_ascii_whitespace().nth(3)?;
    field.split_once('/')?.0.parse().ok()
}

/// How long a waiter spins before it sleeps, adapted per handle. A futex
/// sleep and wake cost several microseconds and a partner process on
/// another core usually answers sooner, so a waiter spins up to 100 µs; but
/// when waits last longer than that (a partner doing real work between two
/// signals), spinning only burns a core, so the budget halves after every
/// wait that outlasted 100 µs (down to 2 µs) and is back to 100 µs after
/// the first shorter one. Judging by whether the spin itself succeeded
/// instead locks two partners into sleeping: each one's spin fails because
/// the other is asleep (event ping-pong: 12 µs per round trip instead of
/// 0.1 µs). And a waiter does not spin at all while the machine has more
/// runnable threads than cores (see [`crowded`]).
#[derive(Debug)]
pub(crate) struct Spin {
    budget_ns: AtomicU32,
}

impl Spin {
    const MAX: Duration = Duration::from_micros(100);
    const MAX_NS: u32 = 100_000;
    const MIN_NS: u32 = 2_000;

    pub(crate) const fn new() -> Spin {
        Spin {
            budget_ns: AtomicU32::new(Spin::MAX_NS),
        }
    }

    /// Spins until `ready` holds or the budget is spent. `Err` carries when
    /// the wait began, for [`slept`](Self::slept) once the caller's sleep
    /// is over.
    pub(crate) fn until(&self, mut ready: impl FnMut() -> bool) -> Result<(), Instant> {
        let limit = if crowded() {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.budget_ns.load(Relaxed).into())
        };
        let start = Instant::now();
        loop {
            if (0..32).any(|_| {
                std::hint::spin_loop();
                ready()
            }) {
                self.budget_ns.store(Spin::MAX_NS, Relaxed);
                return Ok(());
            }
            if start.elapsed() >= limit {
                return Err(start);
            }
        }
    }

    /// Adapts the budget to a wait that began at `start` and had to sleep.
    pub(crate) fn slept(&self, start: Instant) {
        let next = if start.elapsed() <= Spin::MAX {
            Spin::MAX_NS
        } else {
            (self.budget_ns.load(Relaxed) / 2).max(Spin::MIN_NS)
        };
        self.budget_ns.store(next, Relaxed);
    }
}
