//! `Condition`: a condition variable over a [`Lock`] or [`RLock`], shared by
//! processes and threads.
//!
//! Waiters register in a table in shared memory (a slot each, under the
//! table's own robust mutex), then sleep on their slot's word; `notify(n)`
//! hands a notification to the `n` oldest registered waiters and wakes
//! exactly those. A waiter holds its slot's robust mutex while registered,
//! so a waiter that dies is recognised (the mutex reports its owner dead)
//! and skipped: it never swallows a notification meant for a live one.

use super::block::{Block, FIELDS, Kind};
use super::{
    AcquireResult, AcquireTimeoutError, Deadline, Lock, LockGuard, OwnerDied, RLock, RLockGuard,
    TryAcquireError, map_died,
};
use crate::sys::futex;
use crate::sys::mutex::{self, Locked};
use serde::de::DeserializeOwned;
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::time::Duration;

/// The table's mutex sits at the start of the block.
const TABLE_MUTEX: usize = 0;
/// Registration order: the next waiter's sequence number.
const NEXT_SEQ: usize = FIELDS;
/// One past the highest slot ever used.
const HIGH: usize = FIELDS + 8;
const SLOTS: usize = 256;
const SLOT_LEN: usize = 64;
/// Waiters registered at once; more wait for a free slot.
const CAPACITY: usize = 1024;
const LEN: usize = SLOTS + CAPACITY * SLOT_LEN;

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

fn slot(i: usize) -> usize {
    SLOTS + i * SLOT_LEN
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
    table: Arc<Block>,
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
        let table = Block::create(Kind::Condition, LEN, |map| mutex::init(map, TABLE_MUTEX))?;
        Ok(Condition {
            lock,
            table: Arc::new(table),
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
    /// If `guard` is not a guard of this condition's lock.
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
    /// waiting) and returns how many it woke. Nobody waiting: nothing
    /// happens, and nothing is remembered for later waiters. Python
    /// requires the lock to be held; here it may be, or not.
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
        let map = t.map();
        lock_table(t);
        let high = t.u32(HIGH).load(Relaxed) as usize;
        let mut waiting: Vec<(u64, usize)> = (0..high)
            .filter(|&i| matches!(state(t, i).load(Acquire), WAITING | SLEEPING))
            .map(|i| (t.u64(slot(i) + SLOT_SEQ).load(Relaxed), i))
            .collect();
        if n < waiting.len() {
            waiting.sort_unstable();
        }
        let mut woken = 0;
        for (_, i) in waiting {
            if woken == n {
                break;
            }
            match mutex::try_lock(map, slot(i)) {
                // Held: its waiter is alive.
                Ok(Locked::TimedOut) => {
                    if notify_slot(state(t, i)) {
                        woken += 1;
                    }
                }
                // Its waiter died (or just left): not a waiter any more.
                Ok(Locked::Acquired | Locked::OwnerDied) => {
                    state(t, i).store(FREE, SeqCst);
                    let _ = mutex::unlock(map, slot(i));
                }
                Err(e) => panic!("multiproc: cannot lock a condition's waiter slot: {e}"),
            }
        }
        unlock_table(t);
        woken
    }

    /// Wakes every waiter; returns how many.
    ///
    /// ```
    /// let cond = multiproc::Condition::new()?;
    /// assert_eq!(cond.notify_all(), 0);
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
        let mut guard = guard;
        let slot = loop {
            if let Some(slot) = register(&self.table) {
                break slot;
            }
            // Every slot is taken: let the others go on, then look again.
            let (lock, levels) = L::__release_all(guard, Token(()));
            std::thread::sleep(Duration::from_millis(1));
            guard = lock
                .__reacquire(levels, Token(()))
                .map_err(|e| map_died(e, |g| (g, false)))?;
            if deadline.remaining().is_none() {
                return Ok((guard, false));
            }
        };
        // Reacquired through the guard's own handle (perhaps not `self.lock`).
        let (lock, levels) = L::__release_all(guard, Token(()));
        let notified = sleep(&self.table, slot, deadline);
        match lock.__reacquire(levels, Token(())) {
            Ok(g) => Ok((g, notified)),
            Err(e) => Err(map_died(e, |g| (g, notified))),
        }
    }
}

fn state(t: &Block, i: usize) -> &AtomicU32 {
    t.u32(slot(i) + SLOT_STATE)
}

fn lock_table(t: &Block) {
    if let Err(e) = mutex::lock_spinning(t.map(), TABLE_MUTEX, None, 100) {
        panic!("multiproc: cannot lock a condition's table: {e}");
    }
    // A holder that died left at most one slot half-claimed (its mutex
    // reports the death to whoever claims it next) or a notify half done.
}

fn unlock_table(t: &Block) {
    let _ = mutex::unlock(t.map(), TABLE_MUTEX);
}

/// Claims a slot for the calling thread: its mutex, then its state. `None`
/// when every slot is held.
fn register(t: &Block) -> Option<usize> {
    lock_table(t);
    let high = t.u32(HIGH).load(Relaxed) as usize;
    let mut claimed = None;
    for i in 0..(high + 1).min(CAPACITY) {
        if i == high {
            // First use: nobody has looked at this slot yet.
            if let Err(e) = mutex::init(t.map(), slot(i)) {
                panic!("multiproc: cannot set up a condition's waiter slot: {e}");
            }
        }
        match mutex::try_lock(t.map(), slot(i)) {
            Ok(Locked::TimedOut) => continue,
            Ok(Locked::Acquired | Locked::OwnerDied) => {
                let seq = t.u64(NEXT_SEQ).fetch_add(1, Relaxed);
                t.u64(slot(i) + SLOT_SEQ).store(seq, Relaxed);
                state(t, i).store(WAITING, SeqCst);
                if i == high {
                    t.u32(HIGH).store(high as u32 + 1, Relaxed);
                }
                claimed = Some(i);
                break;
            }
            Err(e) => panic!("multiproc: cannot lock a condition's waiter slot: {e}"),
        }
    }
    unlock_table(t);
    claimed
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
fn sleep(t: &Block, i: usize, deadline: Deadline) -> bool {
    let st = state(t, i);
    let began = match deadline {
        Deadline::Now => None,
        _ => t.spin_until(|| st.load(Acquire) == NOTIFIED).err(),
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
        t.slept(began);
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
    let _ = mutex::unlock(t.map(), slot(i));
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
        t.serialize_element(&TableRef(&self.table))?;
        t.end()
    }
}

impl<'de, L: ConditionLock + DeserializeOwned> Deserialize<'de> for Condition<L> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (lock, TableDe(table)) = <(L, TableDe)>::deserialize(deserializer)?;
        Ok(Condition {
            lock,
            table: Arc::new(table),
        })
    }
}
