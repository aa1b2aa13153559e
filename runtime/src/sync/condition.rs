//! `Condition`: a condition variable over a [`Lock`] or [`RLock`], shared by
//! processes and threads.
//!
//! Waiters register in a table in shared memory (a slot each, under the
//! table's own robust mutex), then sleep on their slot's word; `notify(n)`
//! hands a notification to the `n` oldest registered waiters and wakes
//! exactly those. A waiter holds its slot's robust mutex while registered,
//! so a waiter that dies is recognised (the mutex reports its owner dead)
//! and skipped: it never swallows a notification meant for a live one.
//!
//! The table grows, so every waiter gets a slot: chunk 0 (1,024 slots) is
//! in the block itself; a waiter that finds every slot held appends chunk
//! `k` (`1024 << (k - 1)` slots: 1,024, 2,048, 4,096, …) to the same memfd,
//! and each handle maps a chunk when it first meets a slot there. Thirteen
//! chunks hold 4,194,304 slots, Linux's `PID_MAX_LIMIT`: more waiting
//! threads than can exist at once.

use super::block::{Block, FIELDS, Kind};
use super::{
    AcquireResult, AcquireTimeoutError, Deadline, Lock, LockGuard, OwnerDied, RLock, RLockGuard,
    TryAcquireError, map_died,
};
use crate::sys::futex;
use crate::sys::mutex::{self, Locked};
use crate::sys::shm::{self, Mapping};
use serde::de::DeserializeOwned;
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::io;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The table's mutex sits at the start of the block.
const TABLE_MUTEX: usize = 0;
/// Registration order: the next waiter's sequence number.
const NEXT_SEQ: usize = FIELDS;
/// One past the highest slot ever used.
const HIGH: usize = FIELDS + 8;
/// How many chunks of slots the memfd holds (at least 1).
const CHUNKS: usize = FIELDS + 12;
/// Where chunk 0's slots start in the block.
const SLOTS: usize = 256;
const SLOT_LEN: usize = 64;
/// Slots in chunk 0, inside the block. Chunk `k >= 1` follows in the same
/// memfd and holds `FIRST << (k - 1)` slots, so chunks `0..=k` hold
/// `FIRST << k`.
const FIRST: usize = 1024;
/// `FIRST << 12` = 4,194,304 slots: Linux's `PID_MAX_LIMIT` on 64-bit, so
/// at least one per thread that can exist at once.
const MAX_CHUNKS: usize = 13;
/// Chunks start at multiples of this in the memfd: a multiple of every page
/// size Linux uses (4 KiB to 64 KiB), as `mmap` needs.
const CHUNK_ALIGN: usize = 64 * 1024;
/// The block: the header and chunk 0 (its last 65,280 bytes are padding,
/// never touched, so never backed by memory).
const LEN: usize = (SLOTS + FIRST * SLOT_LEN).next_multiple_of(CHUNK_ALIGN);
const _: () = assert!(SLOTS + FIRST * SLOT_LEN <= LEN && CHUNKS + 4 <= SLOTS);

/// Within a slot: its mutex, state word and sequence number.
const SLOT_STATE: usize = 48;
const SLOT_SEQ: usize = 56;
const _: () = assert!(mutex::MUTEX_SIZE <= SLOT_STATE);

/// Slot states.
const FREE: u32 = 0;
const WAITING: u32 = 1;
/// Waiting, and asleep on the state word (a notifier must wake it).
const SLEEPING: u32 = 2;
const NOTIFIED: u32 = 3;

/// Slot `i`'s chunk, and its index within the chunk.
fn chunk_of(i: usize) -> (usize, usize) {
    if i < FIRST {
        (0, i)
    } else {
        let k = (i / FIRST).ilog2() as usize + 1;
        (k, i - (FIRST << (k - 1)))
    }
}

/// Where chunk `k >= 1` starts in the memfd, and its length in bytes.
fn chunk_span(k: usize) -> (u64, usize) {
    let first_slot = FIRST << (k - 1);
    let offset = LEN + (first_slot - FIRST) * SLOT_LEN;
    (offset as u64, first_slot * SLOT_LEN)
}

/// One handle's view of a condition's waiter table: the block (header and
/// chunk 0) and the chunks after it, each mapped when first needed.
#[derive(Debug)]
struct Table {
    block: Block,
    chunks: [OnceLock<Mapping>; MAX_CHUNKS - 1],
}

impl Table {
    fn new(block: Block) -> Table {
        Table {
            block,
            chunks: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Maps every chunk holding slots `0..n` that this handle has not
    /// mapped yet. The memfd must already hold them (`HIGH` or `grow_to`
    /// says so, under the table mutex).
    fn map_through(&self, n: usize) -> io::Result<()> {
        if n <= FIRST {
            return Ok(());
        }
        let (last, _) = chunk_of(n - 1);
        for k in 1..=last {
            if self.chunks[k - 1].get().is_none() {
                let (offset, len) = chunk_span(k);
                let chunk = Mapping::new(self.block.fd(), offset, len)?;
                // Another thread of this process may have mapped it first:
                // either mapping will do.
                let _ = self.chunks[k - 1].set(chunk);
            }
        }
        Ok(())
    }

    /// Makes the memfd hold at least `n` slots, a chunk at a time.
    fn grow_to(&self, n: usize) -> io::Result<()> {
        let word = self.block.u32(CHUNKS);
        let mut chunks = (word.load(Relaxed) as usize).max(1);
        while FIRST << (chunks - 1) < n {
            if chunks == MAX_CHUNKS {
                return Err(io::Error::other("more waiters than Linux has threads"));
            }
            let (offset, len) = chunk_span(chunks);
            let end = offset + len as u64;
            // A grower that died here may have resized already.
            if shm::size(self.block.fd())? < end {
                shm::resize(self.block.fd(), end)?;
            }
            chunks += 1;
            word.store(chunks as u32, Relaxed);
        }
        Ok(())
    }

    /// Slot `i`'s mapping and offset; its chunk must be mapped.
    fn slot(&self, i: usize) -> (&Mapping, usize) {
        match chunk_of(i) {
            (0, j) => (self.block.map(), SLOTS + j * SLOT_LEN),
            (k, j) => {
                let chunk = self.chunks[k - 1].get();
                let chunk = chunk.expect("a waiter chunk is mapped before its slots are used");
                (chunk, j * SLOT_LEN)
            }
        }
    }

    fn state(&self, i: usize) -> &AtomicU32 {
        let (map, at) = self.slot(i);
        map.u32_at(at + SLOT_STATE)
    }

    fn seq(&self, i: usize) -> &AtomicU64 {
        let (map, at) = self.slot(i);
        map.u64_at(at + SLOT_SEQ)
    }
}

mod private {
    pub trait Sealed {}

    /// Keeps the hidden methods of `ConditionLock` for this crate.
    #[derive(Debug, Clone, Copy)]
    pub struct Token(pub(super) ());
}

use private::Token;

/// The locks a [`Condition`] can be built over: [`Lock`] and [`RLock`].
/// Sealed: it cannot be implemented outside multiproc.
///
/// ```
/// use multiproc::{Condition, ConditionLock, Lock};
///
/// fn notify_under<L: ConditionLock>(cond: &Condition<L>) -> usize {
///     let _guard: L::Guard<'_> = cond.acquire().unwrap();
///     cond.notify_all()
/// }
/// assert_eq!(notify_under(&Condition::with_lock(Lock::new()?)?), 0);
/// assert_eq!(notify_under(&Condition::new()?), 0);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait ConditionLock: private::Sealed + Clone + Send + Sync + fmt::Debug + 'static {
    /// The guard that acquiring the lock returns: [`LockGuard`] or
    /// [`RLockGuard`].
    ///
    /// ```
    /// use multiproc::{Condition, ConditionLock, RLock, RLockGuard};
    ///
    /// let cond = Condition::with_lock(RLock::new()?)?;
    /// let outer: <RLock as ConditionLock>::Guard<'_> = cond.acquire().unwrap();
    /// let inner: RLockGuard<'_> = cond.acquire().unwrap(); // the same type; an RLock re-enters
    /// drop(inner);
    /// drop(outer);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    type Guard<'a>;

    #[doc(hidden)]
    fn __lock(
        &self,
        timeout: Option<Duration>,
        _: Token,
    ) -> Result<Self::Guard<'_>, Option<OwnerDied<Self::Guard<'_>>>>;

    #[doc(hidden)]
    fn __owns(&self, guard: &Self::Guard<'_>, _: Token) -> bool;

    #[doc(hidden)]
    fn __release_all<'a>(guard: Self::Guard<'a>, _: Token) -> (&'a Self, u32);

    #[doc(hidden)]
    fn __reacquire(&self, levels: u32, _: Token) -> AcquireResult<Self::Guard<'_>>;
}

impl private::Sealed for Lock {}
impl private::Sealed for RLock {}

/// Maps an `acquire_timeout` result to the shape `__lock` returns.
fn timed<G>(r: Result<G, AcquireTimeoutError<G>>) -> Result<G, Option<OwnerDied<G>>> {
    r.map_err(|e| match e {
        AcquireTimeoutError::Timeout => None,
        AcquireTimeoutError::OwnerDied(e) => Some(e),
    })
}

impl ConditionLock for Lock {
    type Guard<'a> = LockGuard<'a>;

    fn __lock(
        &self,
        timeout: Option<Duration>,
        _: Token,
    ) -> Result<LockGuard<'_>, Option<OwnerDied<LockGuard<'_>>>> {
        match timeout {
            None => self.acquire().map_err(Some),
            Some(t) => timed(self.acquire_timeout(t)),
        }
    }

    fn __owns(&self, guard: &LockGuard<'_>, _: Token) -> bool {
        guard.block().same(self.block())
    }

    fn __release_all<'a>(guard: Self::Guard<'a>, _: Token) -> (&'a Self, u32) {
        Lock::release_all(guard)
    }

    fn __reacquire(&self, levels: u32, _: Token) -> AcquireResult<LockGuard<'_>> {
        self.reacquire(levels)
    }
}

impl ConditionLock for RLock {
    type Guard<'a> = RLockGuard<'a>;

    fn __lock(
        &self,
        timeout: Option<Duration>,
        _: Token,
    ) -> Result<RLockGuard<'_>, Option<OwnerDied<RLockGuard<'_>>>> {
        match timeout {
            None => self.acquire().map_err(Some),
            Some(t) => timed(self.acquire_timeout(t)),
        }
    }

    fn __owns(&self, guard: &RLockGuard<'_>, _: Token) -> bool {
        guard.block().same(self.block())
    }

    fn __release_all<'a>(guard: Self::Guard<'a>, _: Token) -> (&'a Self, u32) {
        RLock::release_all(guard)
    }

    fn __reacquire(&self, levels: u32, _: Token) -> AcquireResult<RLockGuard<'_>> {
        self.reacquire(levels)
    }
}

/// Whether a timed wait on a [`Condition`] ran out of time (std's
/// `WaitTimeoutResult`).
///
/// ```
/// use std::time::Duration;
/// let cond = multiproc::Condition::new()?;
/// let guard = cond.acquire().unwrap();
/// let (_guard, result) = cond.wait_timeout(guard, Duration::from_millis(5)).unwrap();
/// assert!(result.timed_out());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// Whether the wait ended because the timeout passed (Python's `False`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = multiproc::Condition::new()?;
    /// let guard = cond.acquire().unwrap();
    /// let (_guard, r) = cond.wait_for_timeout(guard, Duration::ZERO, || true).unwrap();
    /// assert!(!r.timed_out()); // the predicate already held
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

/// Python's `multiprocessing.Condition`: waiters give up a lock and sleep
/// until another process or thread notifies them, then take the lock back.
///
/// Over an [`RLock`] by default ([`new`](Condition::new)), or over a lock you
/// pass to [`with_lock`](Condition::with_lock). Waiters in any mix of
/// processes and threads are woken oldest first; [`notify(n)`](Self::notify)
/// wakes exactly `n` of the waiters registered at that moment (all of them
/// if fewer), and a notification with nobody waiting is not remembered.
/// `wait` returns only when notified (or timed out): no spurious wake-ups.
///
/// These hold for any number of waiters: there is no limit on how many
/// wait at once. Each waiter takes a 64-byte slot in shared memory; past
/// the first 1,024 the table grows (by 1,024, then 2,048, 4,096, … slots)
/// and keeps its peak size until the last handle is dropped.
///
/// A waiter that is killed is skipped by `notify`; a process that dies
/// holding the lock is reported to the next acquirer as [`OwnerDied`], from
/// [`acquire`](Self::acquire) or from the `wait` that takes the lock back.
///
/// ```
/// use multiproc::{Condition, Event, Lock, Process, worker};
///
/// #[worker]
/// fn waiter(cond: Condition<Lock>, ready: Event) {
///     let guard = cond.acquire().unwrap();
///     ready.set(); // still holding the lock: the notify comes after the wait begins
///     let _guard = cond.wait(guard).unwrap();
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let cond = Condition::with_lock(Lock::new()?)?;
/// let ready = Event::new()?;
/// let mut p = Process::new(waiter, (cond.clone(), ready.clone()));
/// p.start()?;
/// ready.wait();
/// let _guard = cond.acquire().unwrap(); // the waiter is asleep now
/// assert_eq!(cond.notify(1), 1);
/// drop(_guard);
/// assert_eq!(p.join()?, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Condition<L: ConditionLock = RLock> {
    lock: L,
    table: Arc<Table>,
}

impl Condition<RLock> {
    /// A condition over a new [`RLock`] (Python's `Condition()`).
    ///
    /// ```
    /// let cond = multiproc::Condition::new()?;
    /// let _a = cond.acquire().unwrap();
    /// let _b = cond.acquire().unwrap(); // an RLock re-enters
    /// assert!(cond.try_acquire().is_ok());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> crate::Result<Self> {
        Condition::with_lock(RLock::new()?)
    }
}

impl<L: ConditionLock> Condition<L> {
    /// A condition over `lock` (Python's `Condition(lock)`): other handles
    /// to the same lock keep working alongside, and guards from them may be
    /// waited on.
    ///
    /// ```
    /// use multiproc::{Condition, Lock};
    /// let lock = Lock::new()?;
    /// let cond = Condition::with_lock(lock.clone())?;
    /// let guard = lock.acquire().unwrap();
    /// let (_guard, r) = cond.wait_timeout(guard, std::time::Duration::ZERO).unwrap();
    /// assert!(r.timed_out());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_lock(lock: L) -> crate::Result<Self> {
        let table = Block::create(Kind::Condition, LEN, |map| {
            map.u32_at(CHUNKS).store(1, Relaxed);
            mutex::init(map, TABLE_MUTEX)
        })?;
        Ok(Condition {
            lock,
            table: Arc::new(Table::new(table)),
        })
    }

    /// The lock under the condition.
    ///
    /// ```
    /// let cond = multiproc::Condition::new()?;
    /// let held = cond.lock().acquire().unwrap();
    /// let (_held, r) = cond.wait_timeout(held, std::time::Duration::ZERO).unwrap();
    /// assert!(r.timed_out());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn lock(&self) -> &L {
        &self.lock
    }

    /// Acquires the underlying lock (Python's `with cond:`).
    ///
    /// ```
    /// let cond = multiproc::Condition::new()?;
    /// let guard = cond.acquire().unwrap();
    /// let elsewhere = std::thread::scope(|s| s.spawn(|| cond.try_acquire().is_ok()).join().unwrap());
    /// assert!(!elsewhere);
    /// drop(guard);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire(&self) -> AcquireResult<L::Guard<'_>> {
        self.lock
            .__lock(None, Token(()))
            .map_err(|e| e.expect("a blocking lock waits until it acquires"))
    }

    /// Acquires the underlying lock if it is free now.
    ///
    /// ```
    /// let cond = multiproc::Condition::new()?;
    /// assert!(cond.try_acquire().is_ok());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<L::Guard<'_>, TryAcquireError<L::Guard<'_>>> {
        self.lock
            .__lock(Some(Duration::ZERO), Token(()))
            .map_err(|e| e.map_or(TryAcquireError::WouldBlock, TryAcquireError::OwnerDied))
    }

    /// Acquires the underlying lock, waiting at most `timeout`.
    ///
    /// ```
    /// let cond = multiproc::Condition::new()?;
    /// assert!(cond.acquire_timeout(std::time::Duration::from_millis(5)).is_ok());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<L::Guard<'_>, AcquireTimeoutError<L::Guard<'_>>> {
        self.lock
            .__lock(Some(timeout), Token(()))
            .map_err(|e| e.map_or(AcquireTimeoutError::Timeout, AcquireTimeoutError::OwnerDied))
    }

    /// Releases the lock (every level of an `RLock` this thread holds),
    /// sleeps until notified, and takes the lock back. `Err(OwnerDied)`
    /// holds the lock again: someone died holding it meanwhile.
    ///
    /// # Panics
    ///
    /// If `guard` is not a guard of this condition's lock, or if the waiter
    /// table must grow and the system refuses the memory (`ftruncate` or
    /// `mmap` fails); the guard is dropped, releasing the lock.
    ///
    /// ```
    /// use multiproc::Condition;
    /// let cond = Condition::new()?;
    /// std::thread::scope(|s| {
    ///     let guard = cond.acquire().unwrap();
    ///     let notifier = s.spawn(|| {
    ///         let _g = cond.acquire().unwrap(); // the waiter has let go
    ///         cond.notify_all()
    ///     });
    ///     let _guard = cond.wait(guard).unwrap();
    ///     assert_eq!(notifier.join().unwrap(), 1);
    /// });
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait<'a>(&self, guard: L::Guard<'a>) -> AcquireResult<L::Guard<'a>> {
        self.wait_until(guard, Deadline::Never)
            .map(|(g, _)| g)
            .map_err(|e| map_died(e, |(g, _)| g))
    }

    /// As [`wait`](Self::wait), for at most `timeout` (Python's
    /// `wait(timeout)`, whose `False` is [`WaitTimeoutResult::timed_out`]).
    /// A zero timeout gives the lock up and takes it back at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = multiproc::Condition::new()?;
    /// let guard = cond.acquire().unwrap();
    /// let (_guard, r) = cond.wait_timeout(guard, Duration::from_millis(5)).unwrap();
    /// assert!(r.timed_out());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_timeout<'a>(
        &self,
        guard: L::Guard<'a>,
        timeout: Duration,
    ) -> AcquireResult<(L::Guard<'a>, WaitTimeoutResult)> {
        self.wait_until(guard, Deadline::after(timeout))
            .map(|(g, notified)| (g, WaitTimeoutResult(!notified)))
            .map_err(|e| map_died(e, |(g, notified)| (g, WaitTimeoutResult(!notified))))
    }

    /// Waits until `predicate` holds, checking it first and after every
    /// notification, with the lock held (Python's `wait_for`).
    ///
    /// ```
    /// use multiproc::{Condition, Semaphore};
    /// let cond = Condition::new()?;
    /// let items = Semaphore::new(1)?; // shared state the predicate reads
    /// let guard = cond.acquire().unwrap();
    /// let _guard = cond.wait_for(guard, || items.value() > 0).unwrap(); // at once
    /// assert_eq!(items.value(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_for<'a>(
        &self,
        guard: L::Guard<'a>,
        mut predicate: impl FnMut() -> bool,
    ) -> AcquireResult<L::Guard<'a>> {
        let mut guard = guard;
        while !predicate() {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// As [`wait_for`](Self::wait_for), for at most `timeout`;
    /// `timed_out()` means the predicate still does not hold.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = multiproc::Condition::new()?;
    /// let guard = cond.acquire().unwrap();
    /// let (_g, r) = cond.wait_for_timeout(guard, Duration::from_millis(5), || false).unwrap();
    /// assert!(r.timed_out());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_for_timeout<'a>(
        &self,
        guard: L::Guard<'a>,
        timeout: Duration,
        mut predicate: impl FnMut() -> bool,
    ) -> AcquireResult<(L::Guard<'a>, WaitTimeoutResult)> {
        let deadline = Deadline::after(timeout);
        let mut guard = guard;
        loop {
            if predicate() {
                return Ok((guard, WaitTimeoutResult(false)));
            }
            if deadline.remaining().is_none() {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            guard = match self.wait_until(guard, deadline) {
                Ok((g, _)) => g,
                Err(e) => {
                    let e = map_died(e, |(g, _)| g);
                    let held = predicate();
                    return Err(map_died(e, |g| (g, WaitTimeoutResult(!held))));
                }
            };
        }
    }

    /// Wakes the `n` longest-waiting waiters (all of them if fewer are
    /// waiting) and returns how many it woke: `min(n, w)`, where `w` counts
    /// the live waiters registered when it looked (however many; killed
    /// waiters are not counted, and never take a notification). Nobody
    /// waiting: nothing happens, and nothing is remembered for later
    /// waiters. Python requires the lock to be held; here it may be, or not.
    ///
    /// # Panics
    ///
    /// If this handle cannot map the part of the waiter table that another
    /// handle grew (`mmap` fails: out of memory or address space).
    ///
    /// ```
    /// let cond = multiproc::Condition::new()?;
    /// assert_eq!(cond.notify(1), 0); // nobody is waiting
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn notify(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let t = &self.table;
        lock_table(t);
        let woken = notify_under_table(t, n);
        unlock_table(t);
        woken.unwrap_or_else(|e| panic!("multiproc: cannot reach a condition's waiters: {e}"))
    }

    /// Wakes every waiter registered when it looks, however many, and
    /// returns how many it woke (killed waiters are not counted). Panics as
    /// [`notify`](Self::notify) does.
    ///
    /// ```
    /// use multiproc::{Condition, Semaphore};
    /// let cond = Condition::new()?;
    /// assert_eq!(cond.notify_all(), 0); // nobody is waiting
    /// let waiting = Semaphore::new(0)?;
    /// std::thread::scope(|s| {
    ///     for _ in 0..3 {
    ///         s.spawn(|| {
    ///             let guard = cond.acquire().unwrap();
    ///             waiting.release(); // still holding the lock
    ///             drop(cond.wait(guard).unwrap());
    ///         });
    ///     }
    ///     for _ in 0..3 {
    ///         waiting.acquire().forget();
    ///     }
    ///     let _guard = cond.acquire().unwrap(); // all three are in `wait`
    ///     assert_eq!(cond.notify_all(), 3);
    /// });
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn notify_all(&self) -> usize {
        self.notify(usize::MAX)
    }

    fn wait_until<'a>(
        &self,
        guard: L::Guard<'a>,
        deadline: Deadline,
    ) -> AcquireResult<(L::Guard<'a>, bool)> {
        assert!(
            self.lock.__owns(&guard, Token(())),
            "multiproc::Condition::wait: the guard is not a guard of this condition's lock"
        );
        let slot = register(&self.table)
            .unwrap_or_else(|e| panic!("multiproc: cannot register a condition's waiter: {e}"));
        // Reacquired through the guard's own handle (perhaps not `self.lock`).
        let (lock, levels) = L::__release_all(guard, Token(()));
        let notified = sleep(&self.table, slot, deadline);
        match lock.__reacquire(levels, Token(())) {
            Ok(g) => Ok((g, notified)),
            Err(e) => Err(map_died(e, |g| (g, notified))),
        }
    }
}

fn lock_table(t: &Table) {
    if let Err(e) = mutex::lock_spinning(t.block.map(), TABLE_MUTEX, None, 100) {
        panic!("multiproc: cannot lock a condition's table: {e}");
    }
    // A holder that died left at most one slot half-claimed (its mutex
    // reports the death to whoever claims it next), a chunk added to the
    // memfd but not yet counted (the next grower resizes to the same
    // length), or a notify half done.
}

fn unlock_table(t: &Table) {
    let _ = mutex::unlock(t.block.map(), TABLE_MUTEX);
}

/// `notify(n)` (`n > 0`), with the table mutex held.
fn notify_under_table(t: &Table, n: usize) -> io::Result<usize> {
    let high = t.block.u32(HIGH).load(Relaxed) as usize;
    t.map_through(high)?;
    let mut waiting: Vec<(u64, usize)> = (0..high)
        .filter(|&i| matches!(t.state(i).load(Acquire), WAITING | SLEEPING))
        .map(|i| (t.seq(i).load(Relaxed), i))
        .collect();
    if n < waiting.len() {
        waiting.sort_unstable();
    }
    let mut woken = 0;
    for (_, i) in waiting {
        if woken == n {
            break;
        }
        let (map, at) = t.slot(i);
        match mutex::try_lock(map, at)? {
            // Held: its waiter is alive.
            Locked::TimedOut => {
                if notify_slot(t.state(i)) {
                    woken += 1;
                }
            }
            // Its waiter died (or just left): not a waiter any more.
            Locked::Acquired | Locked::OwnerDied => {
                t.state(i).store(FREE, SeqCst);
                let _ = mutex::unlock(map, at);
            }
        }
    }
    Ok(woken)
}

/// Claims a slot for the calling thread (its mutex, then its state),
/// adding one at the end of the table, which grows a chunk at a time, when
/// every slot is held.
fn register(t: &Table) -> io::Result<usize> {
    lock_table(t);
    let claimed = claim(t);
    unlock_table(t);
    claimed
}

/// `register`, with the table mutex held.
fn claim(t: &Table) -> io::Result<usize> {
    let high = t.block.u32(HIGH).load(Relaxed) as usize;
    t.map_through(high)?;
    for i in 0..high {
        let (map, at) = t.slot(i);
        match mutex::try_lock(map, at)? {
            Locked::TimedOut => continue,
            Locked::Acquired | Locked::OwnerDied => {
                enter(t, i);
                return Ok(i);
            }
        }
    }
    // Every slot is held: use slot `high` for the first time.
    t.grow_to(high + 1)?;
    t.map_through(high + 1)?;
    let (map, at) = t.slot(high);
    mutex::init(map, at)?;
    if mutex::try_lock(map, at)? == Locked::TimedOut {
        return Err(io::Error::other("a new waiter slot is already held"));
    }
    enter(t, high);
    t.block.u32(HIGH).store(high as u32 + 1, Relaxed);
    Ok(high)
}

/// Marks the slot just claimed as the newest waiter's.
fn enter(t: &Table, i: usize) {
    let seq = t.block.u64(NEXT_SEQ).fetch_add(1, Relaxed);
    t.seq(i).store(seq, Relaxed);
    t.state(i).store(WAITING, SeqCst);
}

/// Hands a notification to a live waiter; `false` if it had just left.
fn notify_slot(state: &AtomicU32) -> bool {
    let mut s = state.load(Acquire);
    loop {
        if s != WAITING && s != SLEEPING {
            return false;
        }
        match state.compare_exchange(s, NOTIFIED, SeqCst, Acquire) {
            Ok(_) => {
                if s == SLEEPING {
                    futex::wake(state, 1);
                }
                return true;
            }
            Err(now) => s = now,
        }
    }
}

/// Sleeps on slot `i` until notified or `deadline`, then gives the slot up.
/// Returns whether it was notified.
fn sleep(t: &Table, i: usize, deadline: Deadline) -> bool {
    let st = t.state(i);
    let began = match deadline {
        Deadline::Now => None,
        _ => t.block.spin_until(|| st.load(Acquire) == NOTIFIED).err(),
    };
    loop {
        let s = st.load(Acquire);
        if s == NOTIFIED {
            break;
        }
        let Some(timeout) = deadline.remaining() else {
            break;
        };
        if s == WAITING
            && st
                .compare_exchange(WAITING, SLEEPING, SeqCst, Acquire)
                .is_err()
        {
            continue;
        }
        futex::wait(st, SLEEPING, timeout);
    }
    if let Some(began) = began {
        t.block.slept(began);
    }
    // Leave: a notification that lands first still counts.
    let mut s = st.load(Acquire);
    let notified = loop {
        if s == NOTIFIED {
            break true;
        }
        match st.compare_exchange(s, FREE, SeqCst, Acquire) {
            Ok(_) => break false,
            Err(now) => s = now,
        }
    };
    st.store(FREE, SeqCst);
    let (map, at) = t.slot(i);
    let _ = mutex::unlock(map, at);
    notified
}

impl<L: ConditionLock> fmt::Debug for Condition<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

struct TableRef<'a>(&'a Block);

impl Serialize for TableRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

struct TableDe(Block);

impl<'de> Deserialize<'de> for TableDe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(TableDe(Block::deserialize(deserializer, Kind::Condition)?))
    }
}

impl<L: ConditionLock + Serialize> Serialize for Condition<L> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut t = serializer.serialize_tuple(2)?;
        t.serialize_element(&self.lock)?;
        t.serialize_element(&TableRef(&self.table.block))?;
        t.end()
    }
}

impl<'de, L: ConditionLock + DeserializeOwned> Deserialize<'de> for Condition<L> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (lock, TableDe(table)) = <(L, TableDe)>::deserialize(deserializer)?;
        Ok(Condition {
            lock,
            table: Arc::new(Table::new(table)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_tile_the_memfd_page_aligned_and_cover_every_thread() {
        assert_eq!(chunk_of(0), (0, 0));
        assert_eq!(chunk_of(FIRST - 1), (0, FIRST - 1));
        assert_eq!(chunk_of(FIRST), (1, 0));
        assert_eq!(chunk_of(2 * FIRST - 1), (1, FIRST - 1));
        assert_eq!(chunk_of(2 * FIRST), (2, 0));
        let mut end = LEN as u64;
        for k in 1..MAX_CHUNKS {
            let (offset, len) = chunk_span(k);
            assert_eq!(offset, end, "chunk {k} follows the one before");
            assert_eq!(offset % CHUNK_ALIGN as u64, 0);
            assert_eq!(len / SLOT_LEN, FIRST << (k - 1));
            // Its first and last slots are in it.
            assert_eq!(chunk_of(FIRST << (k - 1)), (k, 0));
            assert_eq!(chunk_of((FIRST << k) - 1), (k, len / SLOT_LEN - 1));
            end = offset + len as u64;
        }
        assert_eq!(FIRST << (MAX_CHUNKS - 1), 4_194_304, "PID_MAX_LIMIT");
    }

    #[test]
    fn a_second_handle_maps_the_chunks_the_first_one_grew() {
        let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
        let t = &cond.table;
        lock_table(t);
        t.grow_to(3 * FIRST).unwrap();
        unlock_table(t);
        assert_eq!(t.block.u32(CHUNKS).load(Relaxed), 3);
        let want = chunk_span(2).0 + chunk_span(2).1 as u64;
        assert_eq!(shm::size(t.block.fd()).unwrap(), want);
        // Another mapping of the same memfd sees a word written in chunk 2.
        let fd = t.block.fd().try_clone_to_owned().unwrap();
        let other = Table::new(Block::open(fd, Kind::Condition).unwrap());
        t.map_through(3 * FIRST).unwrap();
        other.map_through(3 * FIRST).unwrap();
        t.state(3 * FIRST - 1).store(SLEEPING, SeqCst);
        assert_eq!(other.state(3 * FIRST - 1).load(SeqCst), SLEEPING);
        assert_eq!(other.state(2 * FIRST).load(SeqCst), FREE);
    }
}
