//! Where finished tasks land: one-shot slots (`apply_async`, `map`) and
//! streams (`imap`), and the typed [`AsyncResult`] handle over slots.

use super::wire::{self, TaskFailure};
use crate::codec::{self, CodecError};
use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use std::collections::{HashMap, VecDeque};

use super::dispatch::Shared;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::Waker;
use std::time::{Duration, Instant};

/// Part of what became of a task's calls, in call order: a task whose
/// worker died mid-chunk is delivered as the values of the calls before the
/// death, the failure of the call that was running, and (from the worker
/// that ran the rest) the values of the calls after it.
pub(crate) enum Piece {
    /// `count` calls' values as a `DONE` reply carries them: the index of
    /// the first failure, then one value per call (see `wire`).
    Values {
        pid: u32,
        count: usize,
        bytes: Vec<u8>,
    },
    /// `count` calls that produced nothing, all for this reason.
    Failed { count: usize, error: Error },
}

impl Piece {
    pub(crate) fn count(&self) -> usize {
        match self {
            Piece::Values { count, .. } | Piece::Failed { count, .. } => *count,
        }
    }

    /// Whether every call of the piece returned a value.
    fn ok(&self) -> bool {
        match self {
            Piece::Values { bytes, .. } => {
                bytes
                    .get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                    == Some(wire::NO_FAILURE)
            }
            Piece::Failed { .. } => false,
        }
    }
}

/// What the pool hands a task's owner: every call's outcome, in pieces
/// (nearly always one, which takes no allocation of its own), and the
/// task's frame, given back so that the thread that made it frees it (or
/// reuses it for the next task): a frame freed by the dispatcher thread
/// would go back to another thread's heap, which costs both threads more.
pub(crate) struct Delivery {
    pieces: Pieces,
    pub(crate) frame: Vec<u8>,
}

enum Pieces {
    One(Piece),
    Many(Vec<Piece>),
}

impl Delivery {
    pub(crate) fn one(piece: Piece) -> Delivery {
        Delivery {
            pieces: Pieces::One(piece),
            frame: Vec::new(),
        }
    }

    pub(crate) fn many(pieces: Vec<Piece>) -> Delivery {
        Delivery {
            pieces: Pieces::Many(pieces),
            frame: Vec::new(),
        }
    }

    /// The same delivery, carrying `frame` back.
    pub(crate) fn with_frame(mut self, frame: Vec<u8>) -> Delivery {
        self.frame = frame;
        self
    }

    fn iter(&self) -> std::slice::Iter<'_, Piece> {
        match &self.pieces {
            Pieces::One(piece) => std::slice::from_ref(piece).iter(),
            Pieces::Many(pieces) => pieces.iter(),
        }
    }

    /// The one piece, if the delivery is one piece of `len` values in which
    /// every call returned.
    fn all_ok(self, len: usize) -> Result<Piece, Delivery> {
        match self.pieces {
            Pieces::One(piece) if piece.ok() && piece.count() == len => Ok(piece),
            pieces => Err(Delivery {
                pieces,
                frame: self.frame,
            }),
        }
    }
}

impl IntoIterator for Delivery {
    type Item = Piece;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Piece>, std::vec::IntoIter<Piece>>;

    fn into_iter(self) -> Self::IntoIter {
        match self.pieces {
            Pieces::One(piece) => Some(piece).into_iter().chain(Vec::new()),
            Pieces::Many(pieces) => None.into_iter().chain(pieces),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TaskFailure {
    pub(crate) fn into_error(self, pid: u32) -> Error {
        match self {
            TaskFailure::Panicked {
                message,
                location,
                backtrace,
            } => Error::Panicked {
                pid,
                message,
                location,
                backtrace,
            },
            TaskFailure::Unencodable { reason } => Error::WorkerFailed { pid, reason },
        }
    }
}

/// Decodes a `Values` piece: the calls before the first failure go to
/// `ok`; the outcomes from the first failure on are returned.
fn decode_values<O: DeserializeOwned + 'static>(
    pid: u32,
    count: usize,
    bytes: &[u8],
    ok: impl FnMut(O),
) -> Result<Vec<Result<O>>, CodecError> {
    let truncated = || CodecError::Truncated {
        expected: 8,
        got: bytes.len() as u64,
    };
    let first = u64::from_le_bytes(bytes.get(..8).ok_or_else(truncated)?.try_into().expect("8"));
    let plain = usize::try_from(first).unwrap_or(usize::MAX).min(count);
    let body = &bytes[8..];
    let used = codec::decode_run(body, plain, ok)?;
    let mut rest: Vec<Result<O>> = Vec::new();
    // Bytes after the last value are not checked: the buffer of a worker
    // that died may hold the value of a call it had not yet counted.
    codec::decode_run(&body[used..], count - plain, |r: Result<O, TaskFailure>| {
        rest.push(r.map_err(|f| f.into_error(pid)))
    })?;
    Ok(rest)
}

/// Every call's outcome, in order, from a delivery for `expected` calls
/// (a piece that claims more is cut short; calls that no piece covers are
/// a truncation error).
pub(crate) fn outcomes<O: DeserializeOwned + 'static>(
    pieces: Delivery,
    expected: usize,
) -> Vec<Result<O>> {
    let mut out = Vec::new();
    for piece in pieces {
        if out.len() >= expected {
            break;
        }
        match piece {
            Piece::Values { pid, count, bytes } => {
                let before = out.len();
                out.reserve(codec::room_for::<Result<O>>(count, bytes.len()));
                match decode_values::<O>(pid, count, &bytes, |v| out.push(Ok(v))) {
                    Ok(rest) => out.extend(rest),
                    Err(e) => {
                        out.truncate(before);
                        let e = Error::Codec(e);
                        out.extend((0..count).map(|_| Err(e.copy())));
                    }
                }
            }
            Piece::Failed { count, error } => {
                let count = count.min(expected - out.len());
                out.extend((1..count).map(|_| Err(error.copy())));
                if count > 0 {
                    out.push(Err(error));
                }
            }
        }
    }
    out.truncate(expected);
    while out.len() < expected {
        out.push(Err(Error::Codec(CodecError::Truncated {
            expected: expected as u64,
            got: out.len() as u64,
        })));
    }
    out
}

/// A one-shot result cell for one task.
pub(crate) struct Slot {
    state: Mutex<SlotState>,
    filled: Condvar,
}

#[derive(Default)]
struct SlotState {
    delivery: Option<Delivery>,
    done: bool,
    /// Whether every call of the task returned (known once done).
    ok: bool,
    /// The worker that ran (some of) it, once done.
    pid: Option<u32>,
    waiters: usize,
    /// Futures waiting for it (feature `tokio`; empty otherwise).
    wakers: Vec<Waker>,
}

impl Slot {
    pub(crate) fn new() -> Arc<Slot> {
        Arc::new(Slot {
            state: Mutex::new(SlotState::default()),
            filled: Condvar::new(),
        })
    }

    pub(crate) fn put(&self, delivery: Delivery) {
        let mut state = lock(&self.state);
        state.ok = delivery.iter().all(Piece::ok);
        state.pid = delivery.iter().find_map(|p| match p {
            Piece::Values { pid, .. } => Some(*pid),
            Piece::Failed { error, .. } => error.pid(),
        });
        state.delivery = Some(delivery);
        state.done = true;
        let waiters = state.waiters > 0;
        let wakers = std::mem::take(&mut state.wakers);
        drop(state);
        // Outside the lock, so the woken thread does not block on it.
        if waiters {
            self.filled.notify_all();
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    #[cfg(feature = "tokio")]
    /// Whether filled; if not, `waker` is woken when it is.
    pub(crate) fn done_or_wake(&self, waker: &Waker) -> bool {
        let mut state = lock(&self.state);
        if !state.done {
            remember(&mut state.wakers, waker);
        }
        state.done
    }

    #[cfg(feature = "tokio")]
    /// Forgets `waker` (its future was dropped).
    pub(crate) fn forget(&self, waker: &Waker) {
        lock(&self.state).wakers.retain(|w| !w.will_wake(waker));
    }

    pub(crate) fn is_done(&self) -> bool {
        lock(&self.state).done
    }

    fn ok(&self) -> bool {
        lock(&self.state).ok
    }

    fn pid(&self) -> Option<u32> {
        lock(&self.state).pid
    }

    /// Waits until filled or `deadline`; returns whether filled.
    fn wait(&self, deadline: Option<Instant>) -> bool {
        let mut state = lock(&self.state);
        while !state.done {
            state.waiters += 1;
            state = match deadline {
                None => self.filled.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        state.waiters -= 1;
                        return false;
                    }
                    self.filled
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            state.waiters -= 1;
        }
        true
    }

    /// Waits, then takes the delivery (once).
    fn take(&self) -> Result<Delivery> {
        self.wait(None);
        lock(&self.state).delivery.take().ok_or(Error::ResultTaken)
    }
}

/// Results of an `imap`: chunks arrive in any order, tagged by sequence.
pub(crate) struct Stream {
    state: Mutex<StreamState>,
    arrived: Condvar,
}

struct StreamState {
    by_seq: HashMap<u64, Delivery>,
    /// Arrival order, kept only for an unordered stream.
    order: Option<VecDeque<u64>>,
    waiting: bool,
    /// A stream's consumer, when it polls (feature `tokio`).
    waker: Option<Waker>,
}

impl Stream {
    pub(crate) fn new(ordered: bool) -> Arc<Stream> {
        Arc::new(Stream {
            state: Mutex::new(StreamState {
                by_seq: HashMap::new(),
                order: (!ordered).then(VecDeque::new),
                waiting: false,
                waker: None,
            }),
            arrived: Condvar::new(),
        })
    }

    /// Files the reply to chunk `seq` (the first one, if it came twice).
    pub(crate) fn put(&self, seq: u64, delivery: Delivery) {
        let mut state = lock(&self.state);
        if state.by_seq.contains_key(&seq) {
            return;
        }
        state.by_seq.insert(seq, delivery);
        if let Some(order) = &mut state.order {
            order.push_back(seq);
        }
        let waiting = state.waiting;
        let waker = state.waker.take();
        drop(state);
        if waiting {
            self.arrived.notify_one();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Waits for chunk `seq`, or (`None`) for whichever arrived first.
    pub(crate) fn take(&self, seq: Option<u64>) -> (u64, Delivery) {
        let mut state = lock(&self.state);
        loop {
            if let Some(taken) = Self::take_now(&mut state, seq) {
                return taken;
            }
            state.waiting = true;
            state = self.arrived.wait(state).unwrap_or_else(|e| e.into_inner());
            state.waiting = false;
        }
    }

    #[cfg(feature = "tokio")]
    /// As [`take`](Self::take) if the chunk is there; if not, `waker` is
    /// woken when a chunk arrives.
    pub(crate) fn take_or_wake(&self, seq: Option<u64>, waker: &Waker) -> Option<(u64, Delivery)> {
        let mut state = lock(&self.state);
        let taken = Self::take_now(&mut state, seq);
        if taken.is_none() {
            state.waker = Some(waker.clone());
        }
        taken
    }

    fn take_now(state: &mut StreamState, seq: Option<u64>) -> Option<(u64, Delivery)> {
        match seq {
            Some(seq) => state.by_seq.remove(&seq).map(|delivery| (seq, delivery)),
            None => {
                while let Some(seq) = state.order.as_mut().and_then(VecDeque::pop_front) {
                    if let Some(delivery) = state.by_seq.remove(&seq) {
                        return Some((seq, delivery));
                    }
                }
                None
            }
        }
    }
}

/// Who gets a task's reply. A sink dropped without a reply (which only a
/// bug in the pool could do) delivers [`Error::PoolTerminated`], so that
/// nobody waits for ever. A cancelled task's sink is detached: its owner
/// already has [`Error::Cancelled`], and whatever the task still yields is
/// dropped.
pub(crate) struct Sink(Option<Target>);

enum Target {
    Slot(Arc<Slot>),
    Stream(Arc<Stream>, u64),
}

impl Sink {
    pub(crate) fn slot(slot: &Arc<Slot>) -> Sink {
        Sink(Some(Target::Slot(slot.clone())))
    }

    pub(crate) fn stream(stream: &Arc<Stream>, seq: u64) -> Sink {
        Sink(Some(Target::Stream(stream.clone(), seq)))
    }

    pub(crate) fn deliver(mut self, delivery: Delivery) {
        if let Some(target) = self.0.take() {
            target.deliver(delivery);
        }
    }

    /// Takes the owner away, leaving a sink that delivers nothing.
    pub(crate) fn detach(&mut self) -> Sink {
        Sink(self.0.take())
    }

    /// Whether nobody waits for this task any more.
    pub(crate) fn is_detached(&self) -> bool {
        self.0.is_none()
    }

    /// Whether this task feeds `stream`.
    pub(crate) fn feeds(&self, stream: &Arc<Stream>) -> bool {
        matches!(&self.0, Some(Target::Stream(s, _)) if Arc::ptr_eq(s, stream))
    }

    /// Whether this task fills one of `slots`.
    pub(crate) fn fills<S: std::borrow::Borrow<Arc<Slot>>>(&self, slots: &[S]) -> bool {
        self.as_slot()
            .is_some_and(|s| slots.iter().any(|o| Arc::ptr_eq(s, o.borrow())))
    }

    /// The slot this task fills, if it fills one.
    pub(crate) fn as_slot(&self) -> Option<&Arc<Slot>> {
        match &self.0 {
            Some(Target::Slot(slot)) => Some(slot),
            _ => None,
        }
    }
}

impl Target {
    fn deliver(self, delivery: Delivery) {
        match self {
            Target::Slot(slot) => slot.put(delivery),
            Target::Stream(stream, seq) => stream.put(seq, delivery),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(target) = self.0.take() {
            let failed = Piece::Failed {
                count: usize::MAX,
                error: Error::PoolTerminated,
            };
            target.deliver(Delivery::one(failed));
        }
    }
}

/// One task of an [`AsyncResult`]: its slot and how many inputs it carries.
pub(crate) struct Part {
    pub(crate) slot: Arc<Slot>,
    pub(crate) len: usize,
}

/// The result of [`Pool::apply_async`](crate::Pool::apply_async) or
/// [`Pool::map_async`](crate::Pool::map_async): Python's `AsyncResult`.
///
/// It does not borrow the pool: keep it, send it to another thread, wait
/// for it later. If the pool is terminated or dropped first, it holds
/// [`Error::PoolTerminated`].
///
/// ```
/// use multiproc::{Pool, worker};
/// use std::time::Duration;
///
/// #[worker]
/// fn add(a: u64, b: u64) -> u64 {
///     a + b
/// }
///
/// let pool = Pool::builder().processes(1).build()?;
/// let mut sum = pool.apply_async(add, (2, 3))?;
/// sum.wait();
/// assert!(sum.ready());
/// assert_eq!(sum.successful(), Some(true));
/// assert_eq!(sum.get_timeout(Duration::from_secs(10))?, 5);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct AsyncResult<T> {
    parts: Vec<Part>,
    collect: fn(&[Part]) -> Result<T>,
    taken: bool,
    pool: Weak<Shared>,
    cancelled: AtomicBool,
    _value: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("tasks", &self.parts.len())
            .field("ready", &self.ready())
            .field("taken", &self.taken)
            .finish()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(
        parts: Vec<Part>,
        collect: fn(&[Part]) -> Result<T>,
        pool: &Arc<Shared>,
    ) -> Self {
        AsyncResult {
            parts,
            collect,
            taken: false,
            pool: Arc::downgrade(pool),
            cancelled: AtomicBool::new(false),
            _value: PhantomData,
        }
    }

    /// Cancels the task (every task of a `map_async`): inputs that have not
    /// started never run, and a worker running one is killed and replaced
    /// (only that worker: the other tasks it held go to other workers).
    /// Returns `false`, changing nothing, if the result was already ready
    /// (or the pool is gone); after `true`, [`get`](Self::get) is
    /// [`Error::Cancelled`].
    ///
    /// ```
    /// use multiproc::{Error, Pool, worker};
    /// use std::time::Duration;
    ///
    /// #[worker]
    /// fn spin() -> u32 {
    ///     loop {
    ///         std::hint::spin_loop();
    ///     }
    /// }
    ///
    /// let pool = Pool::builder().processes(1).build()?;
    /// let stuck = pool.apply_async(spin, ())?;
    /// while stuck.pid().is_none() {
    ///     std::thread::sleep(Duration::from_millis(5)); // until it runs
    /// }
    /// let pid = stuck.pid();
    /// assert!(stuck.cancel());
    /// assert!(matches!(stuck.get(), Err(Error::Cancelled)));
    /// assert_ne!(pool.pids(), vec![pid.unwrap()]); // its worker was replaced
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        if self.ready() {
            return false;
        }
        let Some(pool) = self.pool.upgrade() else {
            return false;
        };
        self.cancelled.store(true, Ordering::Relaxed);
        let slots: Vec<Arc<Slot>> = self.parts.iter().map(|p| p.slot.clone()).collect();
        pool.cancel_slots(&slots);
        true
    }

    /// The pid of the worker running the task now (for a `map_async`, one of
    /// its tasks); once done, of the worker that ran it; `None` while it
    /// waits in the queue.
    ///
    /// ```
    /// use multiproc::{Pool, worker};
    ///
    /// #[worker]
    /// fn one() -> u8 {
    ///     1
    /// }
    ///
    /// let pool = Pool::builder().processes(1).build()?;
    /// let r = pool.apply_async(one, ())?;
    /// r.wait();
    /// assert_eq!(r.pid(), Some(pool.pids()[0]));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pid(&self) -> Option<u32> {
        if let Some(pool) = self.pool.upgrade() {
            let slots: Vec<&Arc<Slot>> = self.parts.iter().map(|p| &p.slot).collect();
            if let Some(pid) = pool.running_pid(&slots) {
                return Some(pid);
            }
        }
        self.parts.iter().find_map(|p| p.slot.pid())
    }

    /// Waits for the result and returns it: Python's `get()`.
    ///
    /// A task that panicked is [`Error::Panicked`]; one whose worker died is
    /// [`Error::Killed`] or [`Error::Exited`] (naming the worker's pid); for
    /// `map_async`, the first failed input is [`Error::TaskFailed`] with its
    /// index. After [`get_timeout`](Self::get_timeout) has returned the
    /// value, this is [`Error::ResultTaken`].
    ///
    /// ```
    /// use multiproc::{Error, Pool, worker};
    ///
    /// #[worker]
    /// fn half(x: u32) -> u32 {
    ///     assert!(x % 2 == 0, "{x} is odd");
    ///     x / 2
    /// }
    ///
    /// let pool = Pool::builder().processes(1).build()?;
    /// assert_eq!(pool.apply_async(half, (8,))?.get()?, 4);
    /// match pool.apply_async(half, (3,))?.get() {
    ///     Err(Error::Panicked { message, .. }) => assert_eq!(message, "3 is odd"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(mut self) -> Result<T> {
        self.take()
    }

    /// What `get` returns (waiting first if it is not ready); once.
    pub(crate) fn take(&mut self) -> Result<T> {
        if std::mem::replace(&mut self.taken, true) {
            return Err(Error::ResultTaken);
        }
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        (self.collect)(&self.parts)
    }

    #[cfg(feature = "tokio")]
    /// The tasks' result slots (for the future that awaits them).
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.parts.iter().map(|p| &p.slot)
    }

    /// Waits at most `timeout`: the result, or [`Error::Timeout`] if it is not
    /// ready yet (then the handle stays usable).
    ///
    /// ```
    /// use multiproc::{Error, Pool, worker};
    /// use std::time::Duration;
    ///
    /// #[worker]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let pool = Pool::builder().processes(1).build()?;
    /// let mut r = pool.apply_async(nap, (300,))?;
    /// assert!(matches!(r.get_timeout(Duration::from_millis(10)), Err(Error::Timeout)));
    /// assert_eq!(r.get_timeout(Duration::from_secs(30))?, 300);
    /// assert!(matches!(r.get_timeout(Duration::ZERO), Err(Error::ResultTaken)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        if self.taken {
            return Err(Error::ResultTaken);
        }
        if !self.wait_timeout(timeout) {
            return Err(Error::Timeout);
        }
        self.taken = true;
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        (self.collect)(&self.parts)
    }

    /// Waits until the result is ready.
    ///
    /// ```
    /// # use multiproc::{Pool, worker};
    /// # #[worker] fn one() -> u8 { 1 }
    /// let pool = Pool::builder().processes(1).build()?;
    /// let r = pool.apply_async(one, ())?;
    /// r.wait();
    /// assert!(r.ready());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait(&self) {
        for part in &self.parts {
            part.slot.wait(None);
        }
    }

    /// Waits at most `timeout`; returns whether the result is ready.
    ///
    /// ```
    /// # use multiproc::{Pool, worker};
    /// # use std::time::Duration;
    /// # #[worker] fn one() -> u8 { 1 }
    /// let pool = Pool::builder().processes(1).build()?;
    /// let r = pool.apply_async(one, ())?;
    /// assert!(r.wait_timeout(Duration::from_secs(30)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        self.parts.iter().all(|part| part.slot.wait(deadline))
    }

    /// Whether the result is ready (without waiting).
    ///
    /// ```
    /// # use multiproc::{Pool, worker};
    /// # #[worker] fn nap() { std::thread::sleep(std::time::Duration::from_millis(200)) }
    /// let pool = Pool::builder().processes(1).build()?;
    /// let r = pool.apply_async(nap, ())?;
    /// assert!(!r.ready());
    /// r.wait();
    /// assert!(r.ready());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn ready(&self) -> bool {
        self.parts.iter().all(|part| part.slot.is_done())
    }

    /// `None` while not ready; then whether every call returned a value
    /// (Python's `successful()`, which raises instead of `None`).
    ///
    /// ```
    /// # use multiproc::{Pool, worker};
    /// # #[worker] fn boom() { panic!("no") }
    /// let pool = Pool::builder().processes(1).build()?;
    /// let r = pool.apply_async(boom, ())?;
    /// r.wait();
    /// assert_eq!(r.successful(), Some(false));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn successful(&self) -> Option<bool> {
        if !self.ready() {
            return None;
        }
        Some(self.parts.iter().all(|part| part.slot.ok()))
    }
}

#[cfg(feature = "tokio")]
/// Adds `waker` to `wakers` unless one there wakes the same task.
fn remember(wakers: &mut Vec<Waker>, waker: &Waker) {
    if !wakers.iter().any(|w| w.will_wake(waker)) {
        wakers.push(waker.clone());
    }
}

/// `collect` for `apply_async`: one task of one call.
pub(crate) fn collect_one<O: DeserializeOwned + 'static>(parts: &[Part]) -> Result<O> {
    let pieces = parts[0].slot.take()?;
    outcomes(pieces, 1).pop().expect("one outcome")
}

/// `collect` for `map_async`: the chunks' values in input order, or the
/// first failed input once every chunk has finished.
pub(crate) fn collect_map<O: DeserializeOwned + 'static>(parts: &[Part]) -> Result<Vec<O>> {
    let total: usize = parts.iter().map(|p| p.len).sum();
    let mut out: Vec<O> = Vec::new();
    let mut failed: Option<Error> = None;
    let mut base = 0;
    for part in parts {
        let delivery = part.slot.take();
        if failed.is_none() {
            let fail = |index, source| Error::TaskFailed {
                index,
                source: Box::new(source),
            };
            match delivery {
                Err(e) => failed = Some(fail(base, e)),
                // The common case: one reply in which every call returned,
                // decoded straight into the output.
                Ok(delivery) => match delivery.all_ok(part.len) {
                    Ok(Piece::Values { pid, count, bytes }) => {
                        if out.is_empty() {
                            out.reserve(total.min((64 << 20) / size_of::<O>().max(1)));
                        }
                        match decode_values(pid, count, &bytes, |v| out.push(v)) {
                            Ok(rest) if rest.is_empty() => {}
                            Ok(_) => {
                                unreachable!("no failure in a reply whose first failure is none")
                            }
                            Err(e) => failed = Some(fail(base, e.into())),
                        }
                    }
                    Ok(Piece::Failed { .. }) => unreachable!("a piece that is ok holds values"),
                    Err(pieces) => {
                        for (i, result) in outcomes::<O>(pieces, part.len).into_iter().enumerate() {
                            match result {
                                Ok(value) => out.push(value),
                                Err(e) => {
                                    failed = Some(fail(base + i, e));
                                    break;
                                }
                            }
                        }
                    }
                },
            }
        }
        base += part.len;
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
