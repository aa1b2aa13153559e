//! `Barrier`: parties in any mix of processes and threads wait until all
//! have arrived, then go on together.
//!
//! State lives in shared memory under a robust mutex: the round number, how
//! many parties have arrived, whether the barrier is broken. Each waiting
//! party also holds a slot of its own: a robust mutex it keeps locked while
//! it waits, and the outcome of its round (released or broken), written by
//! whoever ends the round. Waiters sleep on one futex word that moves on
//! whenever a round ends. Because every waiter holds its slot's mutex, a
//! party that dies while waiting is recognised by the others (the mutex
//! reports its owner dead): waiters look at one neighbour's slot every few
//! tens of milliseconds, and the last party to arrive checks them all, so a
//! dead party breaks the barrier instead of hanging the rest.

use super::Deadline;
use super::block::{Block, FIELDS, Kind};
use crate::codec;
use crate::sys::mutex::{self, Locked};
use crate::sys::{fnptr, futex};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::time::{Duration, Instant};

/// The main mutex sits at the start of the block.
const MAIN: usize = 0;
const PARTIES: usize = FIELDS;
/// The round being filled.
const ROUND: usize = FIELDS + 4;
/// Parties arrived in this round.
const COUNT: usize = FIELDS + 8;
const BROKEN: usize = FIELDS + 12;
/// A release is being written (finished by whoever finds its writer dead).
const RELEASING: usize = FIELDS + 16;
const CAPACITY: usize = FIELDS + 20;
/// Moves on whenever a round ends: the futex word waiters sleep on.
const PHASE: usize = FIELDS + 64;
const SLEEPERS: usize = FIELDS + 68;
const TIMEOUT_NS: usize = FIELDS + 72;
const ACTION: usize = FIELDS + 80;
const ACTION_OFFSET: usize = FIELDS + 88;
const EXE_DEV: usize = FIELDS + 96;
const EXE_INO: usize = FIELDS + 104;
/// `SLOT_OF[i]`: the slot of the party with index `i` in this round.
const SLOT_OF: usize = 256;

/// `ACTION` values.
const NO_ACTION: u32 = 0;
const SHAREABLE: u32 = 1;
const LOCAL_ONLY: u32 = 2;

/// Within a slot: its mutex, then round, index and state.
const SLOT_LEN: usize = 64;
const SLOT_ROUND: usize = 48;
const SLOT_INDEX: usize = 52;
const SLOT_STATE: usize = 56;
const _: () = assert!(mutex::MUTEX_SIZE <= SLOT_ROUND);

/// Slot states.
const FREE: u32 = 0;
const WAITING: u32 = 1;
const RELEASED: u32 = 2;
const BROKEN_STATE: u32 = 3;

const MAX_PARTIES: usize = 1 << 16;
const NO_TIMEOUT: u64 = u64::MAX;
/// How often a waiter first checks that its neighbour is alive, and how
/// rarely at most.
const PROBE_FIRST: Duration = Duration::from_millis(5);
const PROBE_MAX: Duration = Duration::from_millis(50);

fn slots_at(parties: usize) -> usize {
    (SLOT_OF + 4 * parties).next_multiple_of(SLOT_LEN)
}

/// Why [`Barrier::wait`] or [`Barrier::wait_timeout`] let a party through
/// without the others (Python's `BrokenBarrierError`). Serializable, so a
/// worker can return it.
///
/// ```
/// use multiproc::{Barrier, BarrierWaitError};
/// use std::time::Duration;
/// let b = Barrier::new(2)?;
/// assert_eq!(b.wait_timeout(Duration::ZERO), Err(BarrierWaitError::Timeout));
/// assert_eq!(b.wait(), Err(BarrierWaitError::Broken));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum BarrierWaitError {
    /// The barrier is broken: [`abort`](Barrier::abort), [`reset`](Barrier::reset)
    /// while waiting, another party's timeout, a party that died while
    /// waiting, or an action that panicked. It stays broken until `reset`.
    #[error("the barrier is broken")]
    Broken,
    /// This party's own wait timed out, which broke the barrier for everyone.
    #[error("timed out at the barrier, which is now broken")]
    Timeout,
}

/// Why [`Barrier::try_wait`] did not pass.
///
/// ```
/// use multiproc::{Barrier, TryBarrierWaitError};
/// let b = Barrier::new(2)?;
/// assert_eq!(b.try_wait(), Err(TryBarrierWaitError::WouldBlock));
/// b.abort();
/// assert_eq!(b.try_wait(), Err(TryBarrierWaitError::Broken));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum TryBarrierWaitError {
    /// The barrier is broken.
    #[error("the barrier is broken")]
    Broken,
    /// Other parties have yet to arrive: this one did not arrive either, and
    /// nothing changed.
    #[error("other parties have yet to arrive")]
    WouldBlock,
}

/// A party of the current round died while waiting.
struct DeadParty;

enum Fail {
    Broken,
    Timeout,
    WouldBlock,
}

/// Builds a [`Barrier`] with an action or a default timeout (Python's
/// `Barrier(parties, action, timeout)`).
///
/// ```
/// use std::time::Duration;
/// fn announce() {}
/// let barrier = multiproc::Barrier::builder(2)
///     .action(announce)
///     .timeout(Duration::from_secs(30))
///     .build()?;
/// assert_eq!(barrier.parties(), 2);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BarrierBuilder {
    parties: usize,
    action: Option<fn()>,
    timeout: Option<Duration>,
}

impl BarrierBuilder {
    /// A function that exactly one party runs, in its own process, once all
    /// have arrived and before any is released. It may be any `fn()` of the
    /// program (not one from a shared library). If it panics, the barrier
    /// breaks and the panic goes on in the party that ran it.
    ///
    /// ```
    /// fn report() { println!("everyone is here"); }
    /// let b = multiproc::Barrier::builder(1).action(report).build()?;
    /// assert_eq!(b.wait(), Ok(0));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn action(mut self, action: fn()) -> Self {
        self.action = Some(action);
        self
    }

    /// The timeout of [`Barrier::wait`] (none by default).
    ///
    /// ```
    /// use multiproc::BarrierWaitError;
    /// use std::time::Duration;
    /// let b = multiproc::Barrier::builder(2).timeout(Duration::from_millis(5)).build()?;
    /// assert_eq!(b.wait(), Err(BarrierWaitError::Timeout));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Creates the barrier. `parties` must be between 1 and 65,536.
    ///
    /// ```
    /// assert!(multiproc::Barrier::builder(0).build().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn build(self) -> crate::Result<Barrier> {
        let parties = self.parties;
        if parties == 0 || parties > MAX_PARTIES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a barrier needs between 1 and {MAX_PARTIES} parties, not {parties}"),
            )
            .into());
        }
        // Room for the parties of two rounds plus stragglers still leaving.
        let capacity = 2 * parties + 8;
        let len = slots_at(parties) + capacity * SLOT_LEN;
        let shared = self
            .action
            .map(|f| Ok::<_, io::Error>((fnptr::to_offset(f)?, fnptr::image()?)))
            .transpose();
        let block = Block::create(Kind::Barrier, len, |map| {
            mutex::init(map, MAIN)?;
            for slot in 0..capacity {
                mutex::init(map, slots_at(parties) + slot * SLOT_LEN)?;
            }
            map.u32_at(PARTIES).store(parties as u32, Relaxed);
            map.u32_at(CAPACITY).store(capacity as u32, Relaxed);
            let timeout = self.timeout.map_or(NO_TIMEOUT, |t| {
                u64::try_from(t.as_nanos()).unwrap_or(NO_TIMEOUT - 1)
            });
            map.u64_at(TIMEOUT_NS).store(timeout, Relaxed);
            let action = match (&self.action, &shared) {
                (None, _) => NO_ACTION,
                (Some(_), Ok(Some((offset, image)))) => {
                    map.u64_at(ACTION_OFFSET).store(*offset as u64, Relaxed);
                    map.u64_at(EXE_DEV).store(image.dev, Relaxed);
                    map.u64_at(EXE_INO).store(image.ino, Relaxed);
                    SHAREABLE
                }
                (Some(_), _) => LOCAL_ONLY,
            };
            map.u32_at(ACTION).store(action, Relaxed);
            Ok(())
        })?;
        Ok(Barrier {
            block: Arc::new(block),
            action: self.action,
        })
    }
}

/// Python's `multiprocessing.Barrier`: `parties` processes or threads call
/// [`wait`](Self::wait), and all return once the last has arrived, each with
/// its own index `0..parties` (in order of arrival). The barrier is reusable:
/// the next `parties` calls make the next round.
///
/// The barrier breaks, and every waiting and later party gets
/// [`BarrierWaitError::Broken`] until [`reset`](Self::reset), when a party
/// times out, [`abort`](Self::abort) is called, the action panics, or a party
/// dies while waiting (noticed within tens of milliseconds, not at the
/// timeout).
///
/// ```
/// use multiproc::{Barrier, Process, worker};
///
/// #[worker]
/// fn party(barrier: Barrier) -> usize {
///     barrier.wait().unwrap()
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let barrier = Barrier::new(3)?;
/// let mut a = Process::new(party, (barrier.clone(),));
/// let mut b = Process::new(party, (barrier.clone(),));
/// a.start()?;
/// b.start()?;
/// let mine = barrier.wait()?;
/// let mut indices = vec![mine, a.result()?, b.result()?];
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Barrier {
    block: Arc<Block>,
    action: Option<fn()>,
}

impl Barrier {
    /// A barrier for `parties` parties, without action or timeout.
    ///
    /// ```
    /// let b = multiproc::Barrier::new(1)?;
    /// assert_eq!(b.wait(), Ok(0)); // one party: passes at once
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(parties: usize) -> crate::Result<Barrier> {
        Barrier::builder(parties).build()
    }

    /// A builder, to add an action or a default timeout.
    ///
    /// ```
    /// let b = multiproc::Barrier::builder(4).build()?;
    /// assert_eq!(b.parties(), 4);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn builder(parties: usize) -> BarrierBuilder {
        BarrierBuilder {
            parties,
            action: None,
            timeout: None,
        }
    }

    /// The number of parties needed to pass.
    ///
    /// ```
    /// assert_eq!(multiproc::Barrier::new(3)?.parties(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn parties(&self) -> usize {
        self.u32(PARTIES).load(Relaxed) as usize
    }

    /// The number of parties waiting now (0 while broken).
    ///
    /// ```
    /// let b = multiproc::Barrier::new(2)?;
    /// assert_eq!(b.n_waiting(), 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn n_waiting(&self) -> usize {
        if self.broken() {
            0
        } else {
            self.u32(COUNT).load(Relaxed) as usize
        }
    }

    /// Whether the barrier is broken.
    ///
    /// ```
    /// let b = multiproc::Barrier::new(2)?;
    /// b.abort();
    /// assert!(b.broken());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn broken(&self) -> bool {
        self.u32(BROKEN).load(Acquire) != 0
    }

    /// The default timeout of [`wait`](Self::wait), if one was set.
    ///
    /// ```
    /// assert_eq!(multiproc::Barrier::new(2)?.timeout(), None);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn timeout(&self) -> Option<Duration> {
        match self.block.u64(TIMEOUT_NS).load(Relaxed) {
            NO_TIMEOUT => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// Waits until all parties have arrived (or the barrier's default
    /// timeout passes); returns this party's index, `0..parties`.
    ///
    /// ```
    /// let b = multiproc::Barrier::new(2)?;
    /// let indices = std::thread::scope(|s| {
    ///     let other = s.spawn(|| b.wait());
    ///     [b.wait().unwrap(), other.join().unwrap().unwrap()]
    /// });
    /// assert_eq!(indices[0] + indices[1], 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait(&self) -> Result<usize, BarrierWaitError> {
        self.wait_with(Deadline::after_opt(self.timeout()))
    }

    /// Waits at most `timeout` (instead of the default) for the other
    /// parties. On timeout the barrier breaks, for them too.
    ///
    /// ```
    /// use multiproc::BarrierWaitError;
    /// use std::time::Duration;
    /// let b = multiproc::Barrier::new(2)?;
    /// assert_eq!(b.wait_timeout(Duration::from_millis(5)), Err(BarrierWaitError::Timeout));
    /// assert_eq!(b.wait(), Err(BarrierWaitError::Broken));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BarrierWaitError> {
        self.wait_with(Deadline::after(timeout))
    }

    /// Passes if this party is the last one the barrier waits for (running
    /// the action); otherwise does not arrive at all and returns
    /// [`TryBarrierWaitError::WouldBlock`], leaving the barrier as it was.
    ///
    /// ```
    /// use multiproc::TryBarrierWaitError;
    /// let b = multiproc::Barrier::new(2)?;
    /// assert_eq!(b.try_wait(), Err(TryBarrierWaitError::WouldBlock));
    /// assert!(!b.broken());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_wait(&self) -> Result<usize, TryBarrierWaitError> {
        self.arrive(Deadline::Now, true).map_err(|e| match e {
            Fail::WouldBlock | Fail::Timeout => TryBarrierWaitError::WouldBlock,
            Fail::Broken => TryBarrierWaitError::Broken,
        })
    }

    /// Breaks the barrier: every waiting party and every later one gets
    /// [`BarrierWaitError::Broken`] until [`reset`](Self::reset).
    ///
    /// ```
    /// use multiproc::BarrierWaitError;
    /// let b = multiproc::Barrier::new(2)?;
    /// b.abort();
    /// assert_eq!(b.wait(), Err(BarrierWaitError::Broken));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn abort(&self) {
        self.lock_main();
        self.break_round();
        self.unlock_main();
    }

    /// Returns the barrier to its empty, unbroken state. Parties waiting now
    /// get [`BarrierWaitError::Broken`].
    ///
    /// ```
    /// let b = multiproc::Barrier::new(1)?;
    /// b.abort();
    /// b.reset();
    /// assert_eq!(b.wait(), Ok(0));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn reset(&self) {
        self.lock_main();
        self.mark_waiting(BROKEN_STATE);
        self.u32(ROUND).fetch_add(1, Relaxed);
        self.u32(COUNT).store(0, Relaxed);
        self.u32(BROKEN).store(0, Release);
        self.round_ended();
        self.unlock_main();
    }

    fn u32(&self, offset: usize) -> &AtomicU32 {
        self.block.u32(offset)
    }

    fn slot(&self, i: u32) -> usize {
        slots_at(self.parties()) + i as usize * SLOT_LEN
    }

    fn slot_state(&self, slot: u32) -> &AtomicU32 {
        self.u32(self.slot(slot) + SLOT_STATE)
    }

    fn wait_with(&self, deadline: Deadline) -> Result<usize, BarrierWaitError> {
        self.arrive(deadline, false).map_err(|e| match e {
            Fail::Broken | Fail::WouldBlock => BarrierWaitError::Broken,
            Fail::Timeout => BarrierWaitError::Timeout,
        })
    }

    /// Takes the main mutex; a holder that died is a party that died, or one
    /// that was releasing a round (which is finished for it).
    fn lock_main(&self) {
        match mutex::lock_spinning(self.block.map(), MAIN, None, 200) {
            Ok(Locked::Acquired) => {}
            Ok(Locked::OwnerDied) => {
                if self.u32(RELEASING).load(Relaxed) != 0 {
                    self.release_round();
                } else {
                    self.break_round();
                }
            }
            Ok(Locked::TimedOut) => unreachable!("no deadline"),
            Err(e) => panic!("multiproc: cannot lock a barrier: {e}"),
        }
    }

    fn unlock_main(&self) {
        let _ = mutex::unlock(self.block.map(), MAIN);
    }

    /// Under the main mutex: sets every party still waiting in this round
    /// to `outcome`.
    fn mark_waiting(&self, outcome: u32) {
        let round = self.u32(ROUND).load(Relaxed);
        let count = (self.u32(COUNT).load(Relaxed) as usize).min(self.parties());
        for i in 0..count as u32 {
            if let Some(slot) = self.waiting_slot(i, round) {
                self.slot_state(slot).store(outcome, Release);
            }
        }
    }

    /// The slot of party `index` of `round`, if it is waiting there.
    fn waiting_slot(&self, index: u32, round: u32) -> Option<u32> {
        let slot = self.u32(SLOT_OF + 4 * index as usize).load(Relaxed);
        if slot >= self.u32(CAPACITY).load(Relaxed) {
            return None;
        }
        let at = self.slot(slot);
        (self.u32(at + SLOT_ROUND).load(Relaxed) == round
            && self.u32(at + SLOT_INDEX).load(Relaxed) == index
            && self.u32(at + SLOT_STATE).load(Relaxed) == WAITING)
            .then_some(slot)
    }

    /// Under the main mutex: releases the round.
    fn release_round(&self) {
        self.u32(RELEASING).store(1, Relaxed);
        self.mark_waiting(RELEASED);
        self.u32(ROUND).fetch_add(1, Relaxed);
        self.u32(COUNT).store(0, Relaxed);
        self.u32(RELEASING).store(0, Relaxed);
        self.round_ended();
    }

    /// Under the main mutex: breaks the barrier.
    fn break_round(&self) {
        self.mark_waiting(BROKEN_STATE);
        self.u32(BROKEN).store(1, Release);
        self.round_ended();
    }

    fn round_ended(&self) {
        let phase = self.u32(PHASE);
        phase.fetch_add(1, SeqCst);
        if self.u32(SLEEPERS).load(SeqCst) > 0 {
            futex::wake(phase, i32::MAX);
        }
    }

    /// Under the main mutex: whether the party waiting as `index` died.
    fn dead(&self, index: u32, round: u32) -> bool {
        let Some(slot) = self.waiting_slot(index, round) else {
            return false;
        };
        let map = self.block.map();
        match mutex::try_lock(map, self.slot(slot)) {
            Ok(Locked::TimedOut) => false,
            Ok(Locked::Acquired | Locked::OwnerDied) => {
                // Its owner kept it locked while waiting: it is gone.
                let _ = mutex::unlock(map, self.slot(slot));
                true
            }
            Err(e) => panic!("multiproc: cannot check a barrier party: {e}"),
        }
    }

    /// Under the main mutex: claims a free slot (its mutex). `Err` if a
    /// slot turns out to belong to a party of this round that died.
    fn claim_slot(&self) -> Result<Option<u32>, DeadParty> {
        let map = self.block.map();
        let capacity = self.u32(CAPACITY).load(Relaxed);
        let round = self.u32(ROUND).load(Relaxed);
        for slot in 0..capacity {
            match mutex::try_lock(map, self.slot(slot)) {
                Ok(Locked::TimedOut) => {}
                Ok(Locked::Acquired) => return Ok(Some(slot)),
                Ok(Locked::OwnerDied) => {
                    let at = self.slot(slot);
                    let index = self.u32(at + SLOT_INDEX).load(Relaxed);
                    if self.waiting_slot(index, round) == Some(slot) {
                        let _ = mutex::unlock(map, at);
                        return Err(DeadParty);
                    }
                    // A straggler of an earlier round died leaving: reuse.
                    return Ok(Some(slot));
                }
                Err(e) => panic!("multiproc: cannot claim a barrier slot: {e}"),
            }
        }
        Ok(None)
    }

    fn free_slot(&self, slot: u32) -> u32 {
        let state = self.slot_state(slot).swap(FREE, SeqCst);
        let _ = mutex::unlock(self.block.map(), self.slot(slot));
        state
    }

    fn arrive(&self, deadline: Deadline, try_only: bool) -> Result<usize, Fail> {
        let parties = self.parties() as u32;
        loop {
            self.lock_main();
            if self.broken() {
                self.unlock_main();
                return Err(Fail::Broken);
            }
            let count = self.u32(COUNT).load(Relaxed);
            if count >= parties {
                // The last party of this round is running the action; if it
                // dies there, the round breaks and the phase moves on.
                let round = self.u32(ROUND).load(Relaxed);
                if self.dead(parties - 1, round) {
                    self.break_round();
                    self.unlock_main();
                    return Err(Fail::Broken);
                }
                let phase = self.u32(PHASE).load(SeqCst);
                self.unlock_main();
                if try_only {
                    return Err(Fail::WouldBlock);
                }
                if !self.sleep_phase(phase, deadline, Some(Instant::now() + PROBE_MAX)) {
                    self.lock_main();
                    self.break_round();
                    self.unlock_main();
                    return Err(Fail::Timeout);
                }
                continue;
            }
            let last = count + 1 == parties;
            if try_only && !last {
                self.unlock_main();
                return Err(Fail::WouldBlock);
            }
            let Ok(claimed) = self.claim_slot() else {
                self.break_round();
                self.unlock_main();
                return Err(Fail::Broken);
            };
            let Some(slot) = claimed else {
                // Stragglers of earlier rounds hold every slot (only with
                // more threads than parties): let them leave.
                self.unlock_main();
                if deadline.remaining().is_none() {
                    return Err(Fail::Timeout);
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            let round = self.u32(ROUND).load(Relaxed);
            let at = self.slot(slot);
            self.u32(at + SLOT_ROUND).store(round, Relaxed);
            self.u32(at + SLOT_INDEX).store(count, Relaxed);
            self.u32(at + SLOT_STATE).store(WAITING, Release);
            self.u32(SLOT_OF + 4 * count as usize).store(slot, Relaxed);
            self.u32(COUNT).store(count + 1, Relaxed);
            if !last {
                self.unlock_main();
                return self.await_release(slot, count, round, deadline);
            }
            if (0..count).any(|i| self.dead(i, round)) {
                self.break_round();
                self.unlock_main();
                self.free_slot(slot);
                return Err(Fail::Broken);
            }
            let Some(action) = self.action else {
                self.release_round();
                self.unlock_main();
                self.free_slot(slot);
                return Ok(count as usize);
            };
            self.unlock_main();
            let ran = std::panic::catch_unwind(action);
            self.lock_main();
            if self.slot_state(slot).load(Relaxed) == WAITING {
                if ran.is_ok() {
                    self.release_round();
                } else {
                    self.break_round();
                }
            }
            self.unlock_main();
            let state = self.free_slot(slot);
            if let Err(panic) = ran {
                std::panic::resume_unwind(panic);
            }
            return if state == RELEASED {
                Ok(count as usize)
            } else {
                Err(Fail::Broken)
            };
        }
    }

    /// Sleeps until the phase word moves from `phase`, `deadline` passes
    /// (`false`), or the next probe is due.
    fn sleep_phase(&self, phase: u32, deadline: Deadline, probe_at: Option<Instant>) -> bool {
        let word = self.u32(PHASE);
        let Some(mut timeout) = deadline.remaining() else {
            return false;
        };
        if let Some(at) = probe_at {
            let until = at.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(until, |t| t.min(until)));
        }
        let sleepers = self.u32(SLEEPERS);
        sleepers.fetch_add(1, SeqCst);
        futex::wait(word, phase, timeout);
        sleepers.fetch_sub(1, SeqCst);
        true
    }

    fn await_release(
        &self,
        slot: u32,
        index: u32,
        round: u32,
        deadline: Deadline,
    ) -> Result<usize, Fail> {
        let state = self.slot_state(slot);
        let began = match deadline {
            Deadline::Now => None,
            _ => self
                .block
                .spin_until(|| state.load(Acquire) != WAITING)
                .err(),
        };
        let slept = |outcome| {
            if let Some(began) = began {
                self.block.slept(began);
            }
            outcome
        };
        let mut probe_every = PROBE_FIRST;
        let mut probe_at = Instant::now() + probe_every;
        loop {
            let phase = self.u32(PHASE).load(SeqCst);
            match state.load(Acquire) {
                RELEASED => {
                    self.free_slot(slot);
                    return slept(Ok(index as usize));
                }
                BROKEN_STATE => {
                    self.free_slot(slot);
                    return slept(Err(Fail::Broken));
                }
                _ => {}
            }
            if !self.sleep_phase(phase, deadline, Some(probe_at)) {
                self.lock_main();
                let timed_out = state.load(Relaxed) == WAITING;
                if timed_out {
                    self.break_round();
                }
                self.unlock_main();
                return slept(match self.free_slot(slot) {
                    RELEASED => Ok(index as usize),
                    _ if timed_out => Err(Fail::Timeout),
                    _ => Err(Fail::Broken),
                });
            }
            if Instant::now() >= probe_at && state.load(Acquire) == WAITING {
                self.probe(index, round, state);
                probe_every = (probe_every * 2).min(PROBE_MAX);
                probe_at = Instant::now() + probe_every;
            }
        }
    }

    /// Checks the party that arrived just before this one (the last one,
    /// for the first): each waiter watches one neighbour, so every waiter is
    /// watched by someone.
    fn probe(&self, index: u32, round: u32, state: &AtomicU32) {
        self.lock_main();
        let count = self.u32(COUNT).load(Relaxed);
        if state.load(Relaxed) == WAITING && count >= 2 && index < count {
            let neighbour = (index + count - 1) % count;
            if self.dead(neighbour, round) {
                self.break_round();
            }
        }
        self.unlock_main();
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

impl Serialize for Barrier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.u32(ACTION).load(Relaxed) == LOCAL_ONLY {
            return Err(codec::custom_ser_error(
                "this Barrier's action is not a function of the main program \
                 (it lives in a shared library), so the barrier cannot go to a child",
            ));
        }
        self.block.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let block = Block::deserialize(deserializer, Kind::Barrier)?;
        let parties = block.u32(PARTIES).load(Relaxed) as usize;
        let capacity = block.u32(CAPACITY).load(Relaxed) as usize;
        if parties == 0
            || parties > MAX_PARTIES
            || capacity < parties
            || block.map().len() < slots_at(parties) + capacity * SLOT_LEN
        {
            return Err(codec::custom_de_error(
                "the descriptor is not a multiproc Barrier (bad layout)",
            ));
        }
        let action = match block.u32(ACTION).load(Relaxed) {
            NO_ACTION => None,
            SHAREABLE => {
                let offset = block.u64(ACTION_OFFSET).load(Relaxed) as i64;
                let image = fnptr::Image {
                    dev: block.u64(EXE_DEV).load(Relaxed),
                    ino: block.u64(EXE_INO).load(Relaxed),
                };
                let f = fnptr::from_offset(offset, image).map_err(|e| {
                    codec::custom_de_error(format!("cannot find the Barrier's action: {e}"))
                })?;
                Some(f)
            }
            _ => {
                return Err(codec::custom_de_error(
                    "the Barrier's action cannot be found in this process",
                ));
            }
        };
        Ok(Barrier {
            block: Arc::new(block),
            action,
        })
    }
}
