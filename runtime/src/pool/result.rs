//! Where finished tasks land: one-shot slots (`apply_async`, `map`) and
//! streams (`imap`), and the typed [`AsyncResult`] handle over slots.

use super::wire::{self, TaskFailure};
use crate::codec::{self, CodecError};
use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A chunk's reply: the pid that ran it and its results (mode byte first).
pub(crate) struct Done {
    pub(crate) pid: u32,
    pub(crate) payload: Vec<u8>,
}

/// What the pool hands a task's owner.
pub(crate) type Delivery = Result<Done, Error>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The decoded results of one chunk.
pub(crate) enum Chunk<O> {
    AllOk(Vec<O>),
    Mixed(u32, Vec<Result<O, TaskFailure>>),
}

impl TaskFailure {
    pub(crate) fn into_error(self, pid: u32) -> Error {
        match self {
            TaskFailure::Panicked { message, location } => Error::Panicked {
                pid,
                message,
                location,
            },
        }
    }
}

/// Decodes a chunk's reply as results of type `O`.
pub(crate) fn decode_chunk<O: DeserializeOwned>(done: Done) -> Result<Chunk<O>, CodecError> {
    let Some((&mode, body)) = done.payload.split_first() else {
        return Err(CodecError::Truncated {
            expected: 1,
            got: 0,
        });
    };
    if mode == wire::ALL_OK {
        Ok(Chunk::AllOk(codec::decode(body)?))
    } else {
        Ok(Chunk::Mixed(done.pid, codec::decode(body)?))
    }
}

impl<O> Chunk<O> {
    /// Each call's result, in order.
    pub(crate) fn into_results(self) -> Box<dyn Iterator<Item = Result<O>>>
    where
        O: 'static,
    {
        match self {
            Chunk::AllOk(v) => Box::new(v.into_iter().map(Ok)),
            Chunk::Mixed(pid, v) => {
                Box::new(v.into_iter().map(move |r| r.map_err(|f| f.into_error(pid))))
            }
        }
    }
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
    waiters: usize,
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
        state.ok = matches!(&delivery, Ok(done) if done.payload.first() == Some(&wire::ALL_OK));
        state.delivery = Some(delivery);
        state.done = true;
        let waiters = state.waiters > 0;
        drop(state);
        // Outside the lock, so the woken thread does not block on it.
        if waiters {
            self.filled.notify_all();
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        lock(&self.state).done
    }

    fn ok(&self) -> bool {
        lock(&self.state).ok
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
    fn take(&self) -> Delivery {
        self.wait(None);
        lock(&self.state)
            .delivery
            .take()
            .unwrap_or(Err(Error::ResultTaken))
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
}

impl Stream {
    pub(crate) fn new(ordered: bool) -> Arc<Stream> {
        Arc::new(Stream {
            state: Mutex::new(StreamState {
                by_seq: HashMap::new(),
                order: (!ordered).then(VecDeque::new),
                waiting: false,
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
        drop(state);
        if waiting {
            self.arrived.notify_one();
        }
    }

    /// Waits for chunk `seq`, or (`None`) for whichever arrived first.
    pub(crate) fn take(&self, seq: Option<u64>) -> (u64, Delivery) {
        let mut state = lock(&self.state);
        loop {
            match seq {
                Some(seq) => {
                    if let Some(delivery) = state.by_seq.remove(&seq) {
                        return (seq, delivery);
                    }
                }
                None => {
                    let state = &mut *state;
                    while let Some(seq) = state.order.as_mut().and_then(VecDeque::pop_front) {
                        if let Some(delivery) = state.by_seq.remove(&seq) {
                            return (seq, delivery);
                        }
                    }
                }
            }
            state.waiting = true;
            state = self.arrived.wait(state).unwrap_or_else(|e| e.into_inner());
            state.waiting = false;
        }
    }
}

/// Who gets a task's reply. A sink dropped without a reply (which only a
/// bug in the pool could do) delivers [`Error::PoolTerminated`], so that
/// nobody waits for ever.
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

    /// Whether this task feeds `stream`.
    pub(crate) fn feeds(&self, stream: &Arc<Stream>) -> bool {
        matches!(&self.0, Some(Target::Stream(s, _)) if Arc::ptr_eq(s, stream))
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
            target.deliver(Err(Error::PoolTerminated));
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
    pub(crate) fn new(parts: Vec<Part>, collect: fn(&[Part]) -> Result<T>) -> Self {
        AsyncResult {
            parts,
            collect,
            taken: false,
            _value: PhantomData,
        }
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
    pub fn get(self) -> Result<T> {
        if self.taken {
            return Err(Error::ResultTaken);
        }
        (self.collect)(&self.parts)
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

/// `collect` for `apply_async`: one task of one call.
pub(crate) fn collect_one<O: DeserializeOwned + 'static>(parts: &[Part]) -> Result<O> {
    let done = parts[0].slot.take()?;
    let mut results = decode_chunk::<O>(done)?.into_results();
    results.next().unwrap_or_else(|| {
        Err(Error::Codec(CodecError::Truncated {
            expected: 1,
            got: 0,
        }))
    })
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
            match delivery.and_then(|done| Ok(decode_chunk::<O>(done)?)) {
                Err(e) => failed = Some(fail(base, e)),
                Ok(Chunk::AllOk(mut values)) => {
                    if out.is_empty() {
                        std::mem::swap(&mut out, &mut values);
                        out.reserve(total - out.len());
                    } else {
                        out.append(&mut values);
                    }
                }
                Ok(chunk) => {
                    for (i, result) in chunk.into_results().enumerate() {
                        match result {
                            Ok(value) => out.push(value),
                            Err(e) => {
                                failed = Some(fail(base + i, e));
                                break;
                            }
                        }
                    }
                }
            }
        }
        base += part.len;
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
