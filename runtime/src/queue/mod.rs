//! `Queue`, `SimpleQueue` and `JoinableQueue`: typed, multi-producer,
//! multi-consumer queues between any number of processes.
//!
//! Messages live in shared memory (a memfd), not in the producer: a producer
//! can put any amount into an unbounded queue and exit at once without losing
//! anything, and its parent can join it before draining the queue (Python's
//! `Queue` deadlocks there, because its data waits in the producer's feeder
//! thread).
//!
//! What survives a process killed mid-operation (SIGKILL, abort):
//! - a message whose `put` returned is in the queue, whoever dies after;
//! - a `put` interrupted by death adds nothing;
//! - a `get` interrupted by death before it took its message leaves the
//!   message for the next consumer; a consumer that dies after taking it (the
//!   instant before `get` would have returned) takes it with it;
//! - no message is ever delivered twice, and the queue stays usable.

#[cfg(feature = "tokio")]
mod aio;
mod raw;

/// Messages that encode to more bytes than this are encoded straight into
/// the queue's memory.
const DIRECT_ABOVE: usize = 64 << 10;

/// The largest message a queue accepts unless told otherwise: 4 GiB, the
/// same as a [`Pipe`](crate::Pipe)'s frame limit.
const DEFAULT_MAX_MESSAGE: u64 = codec::MAX_FRAME;

use crate::codec;
use crate::handles;
mod error;

pub use error::{GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError};
use raw::{GetFail, PutFail, RawQueue, Wait};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// A multi-producer, multi-consumer queue between processes: Python's
/// `multiprocessing.Queue`, typed.
///
/// Create it in a parent, pass clones to children as worker arguments (at any
/// depth: a field, a `Vec`), and `put`/`get` from anywhere. FIFO per
/// producer. Unbounded by default; [`with_maxsize`](Self::with_maxsize)
/// bounds the number of messages. Clones are cheap handles to the same queue.
///
/// A message whose encoding is longer than 4 GiB (the same limit as a
/// [`Pipe`](crate::Pipe)'s) is refused at once, before any memory is
/// taken for it, with [`PutError::Encode`] holding
/// [`CodecError::Oversized`](crate::CodecError::Oversized); [`with_max_message_size`](Self::with_max_message_size)
/// sets another limit, which every handle to the queue obeys, in every
/// process.
///
/// Messages live in shared memory (an anonymous memfd), not in the producer:
/// a producer can put any amount into an unbounded queue and exit at once
/// without losing anything, and its parent may join it before draining the
/// queue (Python's `Queue` deadlocks there). The memory goes away with the
/// last handle; nothing is left in `/dev/shm`.
///
/// An unbounded `put` never waits for a consumer, with one bounded
/// exception: once the queue holds more than 4 MiB, a producer that finds no
/// room waits up to about as long as copying its message takes (20 µs to
/// 2 ms) for a consumer to free some, before it grows the queue's memory.
/// Fresh memory costs a page fault and zeroing per 4 KiB, so this keeps a
/// fast producer and an active consumer streaming through warm memory.
///
/// When a process is killed in the middle of an operation:
/// - a message whose `put` returned stays in the queue;
/// - an interrupted `put` adds nothing;
/// - an interrupted `get` leaves its message for the next consumer, unless the
///   process died after taking it (the instant before `get` would have
///   returned): then the message is gone with it;
/// - no message is ever delivered twice, and the queue stays usable.
///
/// Byte buffers travel fastest as `serde_bytes::ByteBuf` (or a field with
/// `#[serde(with = "serde_bytes")]`): serde encodes a plain `Vec<u8>` one
/// element at a time.
///
/// ```
/// use multiproc::{Process, Queue, worker};
///
/// #[worker]
/// fn send_greeting(q: Queue<String>) {
///     q.put("Hello from worker!".to_string()).unwrap();
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let q = Queue::new()?;
/// let mut p = Process::new(send_greeting, (q.clone(),));
/// p.start()?;
/// assert_eq!(q.get()?, "Hello from worker!");
/// p.join()?;
/// # Ok(())
/// # }
/// ```
pub struct Queue<T> {
    raw: Arc<RawQueue>,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            raw: self.raw.clone(),
            _items: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.raw.len())
            .field("maxsize", &self.raw.maxsize())
            .field("max_message_size", &self.raw.max_message())
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue.
    ///
    /// ```
    /// let q = multiproc::Queue::<u32>::new()?;
    /// assert!(q.empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> crate::Result<Self> {
        Self::with_maxsize(0)
    }

    /// A queue holding at most `maxsize` messages; `0` means unbounded, as
    /// in Python.
    ///
    /// ```
    /// use multiproc::{Queue, TryPutError};
    /// let q = Queue::with_maxsize(1)?;
    /// q.put(1)?;
    /// assert!(q.full());
    /// assert!(matches!(q.try_put(2), Err(TryPutError::Full(2))));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_maxsize(maxsize: usize) -> crate::Result<Self> {
        Ok(Queue {
            raw: Arc::new(RawQueue::new(maxsize as u64, DEFAULT_MAX_MESSAGE)?),
            _items: PhantomData,
        })
    }

    /// Puts `item`, waiting while a bounded queue is full. An unbounded queue
    /// never waits.
    ///
    /// ```
    /// let q = multiproc::Queue::new()?;
    /// q.put(vec![1, 2, 3])?;
    /// assert_eq!(q.get()?, vec![1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_with(item, Wait::Forever)
            .map_err(TryPutError::waited)
    }

    /// Puts a copy of `*item`, waiting for room: the item is encoded, not
    /// moved, so the caller keeps it (as with Python's `put`, which never
    /// takes the object away). Saves a clone when the same value is sent
    /// again and again; the error carries no item.
    ///
    /// ```
    /// let q = multiproc::Queue::new()?;
    /// let greeting = String::from("hello");
    /// q.put_ref(&greeting)?;
    /// q.put_ref(&greeting)?;
    /// assert_eq!(q.get()?, greeting);
    /// assert_eq!(q.qsize(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put_ref(&self, item: &T) -> Result<(), PutError<()>> {
        match self.put_ref_with(item, Wait::Forever) {
            Ok(()) => Ok(()),
            Err(PutFail::Encode(e)) => Err(PutError::Encode((), e)),
            Err(PutFail::Closed) => Err(PutError::Closed(())),
            Err(PutFail::ShutDown) => Err(PutError::ShutDown(())),
            Err(PutFail::Os(e)) => Err(PutError::Io((), e)),
            Err(PutFail::Full) => unreachable!("a put without deadline waits for space"),
        }
    }

    fn put_with(&self, item: T, wait: Wait) -> Result<(), TryPutError<T>> {
        match self.put_ref_with(&item, wait) {
            Ok(()) => Ok(()),
            Err(PutFail::Encode(e)) => Err(TryPutError::Encode(item, e)),
            Err(PutFail::Full) => Err(TryPutError::Full(item)),
            Err(PutFail::Closed) => Err(TryPutError::Closed(item)),
            Err(PutFail::ShutDown) => Err(TryPutError::ShutDown(item)),
            Err(PutFail::Os(e)) => Err(TryPutError::Io(item, e)),
        }
    }

    /// A small message is encoded into a scratch buffer and copied into the
    /// ring; a large one is measured, then encoded straight into the ring
    /// (one pass over its bytes instead of two).
    fn put_ref_with(&self, item: &T, wait: Wait) -> Result<(), PutFail> {
        codec::with_scratch(|body| {
            let limit = self.raw.max_message();
            if codec::encode_into_capped(item, body, DIRECT_ABOVE, limit)
                .map_err(PutFail::Encode)?
            {
                return self.raw.put(body, wait);
            }
            let len = codec::encoded_len(item, limit).map_err(PutFail::Encode)?;
            self.raw.put_by(len as u64, wait, |ring| {
                codec::encode_to(item, len, |bytes| ring.write(bytes))
            })
        })
    }

    /// Puts `item` if there is room now (Python's `put_nowait`).
    ///
    /// ```
    /// let q = multiproc::Queue::with_maxsize(1)?;
    /// assert!(q.try_put('a').is_ok());
    /// assert_eq!(q.try_put('b').unwrap_err().into_inner(), 'b');
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
        self.put_with(item, Wait::No)
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc::Queue::with_maxsize(1)?;
    /// q.put(1u8)?;
    /// assert!(matches!(
    ///     q.put_timeout(2, Duration::from_millis(10)),
    ///     Err(multiproc::PutTimeoutError::Timeout(2))
    /// ));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.put_with(item, Wait::timeout(timeout))
            .map_err(TryPutError::timed)
    }

    fn get_with(&self, wait: Wait) -> Result<T, TryGetError> {
        codec::with_scratch(|body| match self.raw.get(wait, body) {
            Ok(()) => codec::decode(body).map_err(TryGetError::Decode),
            Err(GetFail::Empty) => Err(TryGetError::Empty),
            Err(GetFail::Closed) => Err(TryGetError::Closed),
            Err(GetFail::ShutDown) => Err(TryGetError::ShutDown),
            Err(GetFail::Os(e)) => Err(TryGetError::Io(e)),
        })
    }

    /// Takes the oldest message, waiting for one.
    ///
    /// ```
    /// let q = multiproc::Queue::new()?;
    /// q.put("first".to_string())?;
    /// q.put("second".to_string())?;
    /// assert_eq!(q.get()?, "first");
    /// assert_eq!(q.get()?, "second");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self) -> Result<T, GetError> {
        self.get_with(Wait::Forever).map_err(TryGetError::waited)
    }

    /// Takes the oldest message if there is one now (Python's `get_nowait`).
    ///
    /// ```
    /// use multiproc::TryGetError;
    /// let q = multiproc::Queue::<u8>::new()?;
    /// assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_get(&self) -> Result<T, TryGetError> {
        self.get_with(Wait::No)
    }

    /// Takes the oldest message, waiting at most `timeout` for one.
    ///
    /// ```
    /// use multiproc::GetTimeoutError;
    /// use std::time::Duration;
    /// let q = multiproc::Queue::<u8>::new()?;
    /// let r = q.get_timeout(Duration::from_millis(10));
    /// assert!(matches!(r, Err(GetTimeoutError::Timeout)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.get_with(Wait::timeout(timeout))
            .map_err(TryGetError::timed)
    }
}

impl<T> Queue<T> {
    /// How many messages are in the queue now (a snapshot: other processes
    /// may change it at once).
    ///
    /// ```
    /// let q = multiproc::Queue::new()?;
    /// q.put(1)?;
    /// q.put(2)?;
    /// assert_eq!(q.qsize(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn qsize(&self) -> usize {
        self.raw.len() as usize
    }

    /// Whether the queue is empty now (another process may change that at
    /// once: Python's caveat).
    ///
    /// ```
    /// let q = multiproc::Queue::new()?;
    /// assert!(q.empty());
    /// q.put('x')?;
    /// assert!(!q.empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn empty(&self) -> bool {
        self.raw.len() == 0
    }

    /// Whether a bounded queue is full now (never, for an unbounded one).
    ///
    /// ```
    /// let q = multiproc::Queue::with_maxsize(2)?;
    /// q.put(1u8)?;
    /// assert!(!q.full());
    /// q.put(2)?;
    /// assert!(q.full());
    /// assert!(!multiproc::Queue::<u8>::new()?.full());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn full(&self) -> bool {
        let max = self.raw.maxsize();
        max > 0 && self.raw.len() >= max
    }

    /// The bound given to [`with_maxsize`](Queue::with_maxsize); 0 for unbounded.
    ///
    /// ```
    /// use multiproc::Queue;
    /// assert_eq!(Queue::<u8>::with_maxsize(5)?.maxsize(), 5);
    /// assert_eq!(Queue::<u8>::new()?.maxsize(), 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn maxsize(&self) -> usize {
        self.raw.maxsize() as usize
    }

    /// Sets the largest message the queue accepts, in encoded bytes (4 GiB
    /// unless set). A longer one is refused at once by every `put`,
    /// `put_ref`, `try_put` and `put_timeout`, with
    /// [`CodecError::Oversized`](crate::CodecError::Oversized) (in [`PutError::Encode`], the item
    /// handed back); nothing is put and the queue's memory does not grow.
    /// The limit lives in the queue's shared memory: it holds for every
    /// handle, clones and handles sent to children alike, so set it before
    /// sharing the queue.
    ///
    /// ```
    /// use multiproc::{CodecError, PutError, Queue};
    /// let q = Queue::<String>::new()?.with_max_message_size(16);
    /// assert_eq!(q.max_message_size(), 16);
    /// let long = "x".repeat(100);
    /// match q.put(long.clone()) {
    ///     Err(PutError::Encode(item, CodecError::Oversized { limit, .. })) => {
    ///         assert_eq!((item, limit), (long, 16));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// q.put("short".to_string())?; // the queue goes on
    /// assert_eq!(q.get()?, "short");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_max_message_size(self, bytes: usize) -> Self {
        self.raw.set_max_message(bytes as u64);
        self
    }

    /// The largest message the queue accepts, in encoded bytes (see
    /// [`with_max_message_size`](Self::with_max_message_size)).
    ///
    /// ```
    /// let q = multiproc::Queue::<u8>::new()?;
    /// assert_eq!(q.max_message_size(), 4 << 30);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn max_message_size(&self) -> usize {
        usize::try_from(self.raw.max_message()).unwrap_or(usize::MAX)
    }

    /// Closes this handle (and its clones in this process): later `put` and
    /// `get` through it fail with `Closed`. Other processes' handles, and the
    /// messages already in the queue, are unaffected. Python's `close()`.
    ///
    /// ```
    /// use multiproc::PutError;
    /// let q = multiproc::Queue::new()?;
    /// q.close();
    /// assert!(matches!(q.put(1), Err(PutError::Closed(1))));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&self) {
        self.raw.close();
    }

    /// Shuts the queue down for every handle, in every process: Python
    /// 3.13's `queue.Queue.shutdown` (Python's `multiprocessing` queues have
    /// none).
    ///
    /// From then on every `put`, `put_ref`, `try_put` and `put_timeout`
    /// fails with `ShutDown` ([`PutError::ShutDown`], the item handed back).
    /// Gets still take what is left; once the queue is empty, every `get`,
    /// `try_get` and `get_timeout` fails with `ShutDown`
    /// ([`GetError::ShutDown`]) instead of waiting or reporting `Empty`.
    /// With `immediate`, what is left is discarded now, and counted as done
    /// tasks for [`JoinableQueue::join`]; the queue's memory shrinks back.
    ///
    /// Every process blocked in a `put` on a full queue or a `get` on an
    /// empty one wakes and fails with `ShutDown`; so does a
    /// [`wait`](crate::wait) on the queue, which stays ready from then on.
    /// Shutting down again changes nothing, except that an immediate
    /// shutdown after a plain one discards what is left. There is no way
    /// back. Fails only if the queue's lock or memory does ([`Error::Io`](crate::Error::Io)).
    ///
    /// The usual end of a stream: consumers take messages until
    /// `ShutDown`, and whoever knows the stream is over shuts the queue down
    /// (no sentinel per consumer).
    ///
    /// ```
    /// use multiproc::{GetError, Process, Queue, worker};
    ///
    /// #[worker]
    /// fn sum_until_shutdown(q: Queue<u64>) -> u64 {
    ///     let mut sum = 0;
    ///     loop {
    ///         match q.get() {
    ///             Ok(x) => sum += x,
    ///             Err(GetError::ShutDown) => return sum,
    ///             Err(e) => panic!("{e}"),
    ///         }
    ///     }
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let q = Queue::new()?;
    /// let mut p = Process::new(sum_until_shutdown, (q.clone(),));
    /// p.start()?;
    /// for x in 1..=10 {
    ///     q.put(x)?;
    /// }
    /// q.shutdown(false)?; // the consumer takes what is left, then stops
    /// p.join()?;
    /// assert_eq!(p.result()?, 55);
    /// # Ok(())
    /// # }
    /// ```
    pub fn shutdown(&self, immediate: bool) -> crate::Result<()> {
        Ok(self.raw.shutdown(immediate)?)
    }

    /// Whether the queue was shut down, by any process (Python's
    /// `is_shutdown`).
    ///
    /// ```
    /// use multiproc::{PutError, Queue, TryGetError};
    /// let q = Queue::new()?;
    /// q.put(1)?;
    /// q.put(2)?;
    /// assert!(!q.is_shutdown());
    /// q.shutdown(false)?;
    /// assert!(q.is_shutdown());
    /// assert!(matches!(q.put(3), Err(PutError::ShutDown(3))));
    /// assert_eq!(q.get()?, 1); // what is left still comes out...
    /// q.shutdown(true)?; // ...unless an immediate shutdown discards it
    /// assert!(q.empty());
    /// assert!(matches!(q.try_get(), Err(TryGetError::ShutDown)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_shutdown(&self) -> bool {
        self.raw.is_shut_down()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let memfd = handles::export_fd::<S::Error>(self.raw.memfd())?;
        let eventfd = handles::export_fd::<S::Error>(self.raw.eventfd())?;
        (memfd, eventfd).serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (memfd, eventfd) = <(u32, u32)>::deserialize(deserializer)?;
        let memfd = handles::import_fd::<D::Error>(memfd)?;
        let eventfd = handles::import_fd::<D::Error>(eventfd)?;
        let raw = RawQueue::from_fds(memfd, eventfd).map_err(codec::custom_de_error)?;
        Ok(Queue {
            raw: Arc::new(raw),
            _items: PhantomData,
        })
    }
}

/// Python's `SimpleQueue`: an unbounded [`Queue`] with only `put`, `get`,
/// `empty` and `close`.
///
/// ```
/// let q = multiproc::SimpleQueue::new()?;
/// q.put(3.5)?;
/// assert!(!q.empty());
/// assert_eq!(q.get()?, 3.5);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct SimpleQueue<T> {
    inner: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue")
            .field("qsize", &self.inner.qsize())
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new, empty queue.
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::<String>::new()?;
    /// assert!(q.empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> crate::Result<Self> {
        Ok(SimpleQueue {
            inner: Queue::new()?,
        })
    }

    /// Puts `item` (never waits).
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::new()?;
    /// q.put((1, "one".to_string()))?;
    /// assert_eq!(q.get()?, (1, "one".to_string()));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.inner.put(item)
    }

    /// Takes the oldest message, waiting for one.
    ///
    /// ```
    /// use multiproc::{Process, SimpleQueue, worker};
    ///
    /// #[worker]
    /// fn produce(q: SimpleQueue<u32>) {
    ///     for i in 0..3 {
    ///         q.put(i).unwrap();
    ///     }
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let q = SimpleQueue::new()?;
    /// let mut p = Process::new(produce, (q.clone(),));
    /// p.start()?;
    /// let got: Vec<u32> = (0..3).map(|_| q.get()).collect::<Result<_, _>>()?;
    /// assert_eq!(got, [0, 1, 2]);
    /// p.join()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn get(&self) -> Result<T, GetError> {
        self.inner.get()
    }
}

impl<T> SimpleQueue<T> {
    /// Sets the largest message the queue accepts, for every handle in
    /// every process, as [`Queue::with_max_message_size`].
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::<Vec<u32>>::new()?.with_max_message_size(8);
    /// assert!(q.put(vec![7; 100]).is_err());
    /// assert!(q.empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_max_message_size(self, bytes: usize) -> Self {
        SimpleQueue {
            inner: self.inner.with_max_message_size(bytes),
        }
    }

    /// Whether the queue is empty now.
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::new()?;
    /// q.put(1u8)?;
    /// assert!(!q.empty());
    /// q.get()?;
    /// assert!(q.empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn empty(&self) -> bool {
        self.inner.empty()
    }

    /// Closes this handle: later `put` and `get` through it fail.
    ///
    /// ```
    /// use multiproc::{GetError, PutError, SimpleQueue};
    /// let q = SimpleQueue::new()?;
    /// q.close();
    /// assert!(matches!(q.put(1u8), Err(PutError::Closed(1))));
    /// assert!(matches!(q.get(), Err(GetError::Closed)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&self) {
        self.inner.close()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(SimpleQueue {
            inner: Queue::deserialize(deserializer)?,
        })
    }
}

/// Python's `JoinableQueue`: a [`Queue`] (all its methods, through `Deref`)
/// that also counts unfinished tasks. Every `put` adds one; consumers call
/// [`task_done`](Self::task_done) when they have processed a message, and
/// [`join`](Self::join) waits until the count is back to zero.
///
/// ```
/// use multiproc::{JoinableQueue, Process, worker};
///
/// #[worker]
/// fn consume(q: JoinableQueue<u32>, n: u32) {
///     for _ in 0..n {
///         q.get().unwrap();
///         q.task_done().unwrap();
///     }
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let q = JoinableQueue::new()?;
/// for i in 0..10 {
///     q.put(i)?;
/// }
/// let mut p = Process::new(consume, (q.clone(), 10));
/// p.start()?;
/// assert!(q.join_timeout(std::time::Duration::from_secs(30))?);
/// p.join()?;
/// # Ok(())
/// # }
/// ```
pub struct JoinableQueue<T> {
    inner: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("qsize", &self.inner.qsize())
            .finish()
    }
}

impl<T> std::ops::Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.inner
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// An unbounded joinable queue.
    ///
    /// ```
    /// let q = multiproc::JoinableQueue::<u8>::new()?;
    /// assert_eq!(q.maxsize(), 0);
    /// q.join()?; // nothing was put: returns at once
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> crate::Result<Self> {
        Self::with_maxsize(0)
    }

    /// A joinable queue holding at most `maxsize` messages (0: unbounded).
    ///
    /// ```
    /// let q = multiproc::JoinableQueue::with_maxsize(1)?;
    /// q.put('a')?;
    /// assert!(q.full());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_maxsize(maxsize: usize) -> crate::Result<Self> {
        Ok(JoinableQueue {
            inner: Queue::with_maxsize(maxsize)?,
        })
    }
}

impl<T> JoinableQueue<T> {
    /// Sets the largest message the queue accepts, for every handle in
    /// every process, as [`Queue::with_max_message_size`]. A refused
    /// message adds no unfinished task.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc::JoinableQueue::<String>::new()?.with_max_message_size(8);
    /// assert!(q.put("far too long for eight bytes".to_string()).is_err());
    /// assert!(q.join_timeout(Duration::ZERO)?); // nothing to wait for
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_max_message_size(self, bytes: usize) -> Self {
        JoinableQueue {
            inner: self.inner.with_max_message_size(bytes),
        }
    }

    /// Marks one message as processed. Calling it more often than messages
    /// were put is [`Error::TaskDoneTooOften`](crate::Error::TaskDoneTooOften) (Python's `ValueError`).
    ///
    /// ```
    /// use multiproc::{Error, JoinableQueue};
    /// let q = JoinableQueue::new()?;
    /// q.put(1)?;
    /// q.get()?;
    /// q.task_done()?;
    /// assert!(matches!(q.task_done(), Err(Error::TaskDoneTooOften)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn task_done(&self) -> crate::Result<()> {
        if self.inner.raw.task_done()? {
            Ok(())
        } else {
            Err(crate::Error::TaskDoneTooOften)
        }
    }

    /// Waits until every message put has been marked done.
    ///
    /// ```
    /// use multiproc::{JoinableQueue, Process, worker};
    ///
    /// #[worker]
    /// fn consume(q: JoinableQueue<u32>, n: u32) {
    ///     for _ in 0..n {
    ///         q.get().unwrap();
    ///         q.task_done().unwrap();
    ///     }
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let q = JoinableQueue::new()?;
    /// for i in 0..4 {
    ///     q.put(i)?;
    /// }
    /// let mut p = Process::new(consume, (q.clone(), 4));
    /// p.start()?;
    /// q.join()?; // returns once the child has marked all four done
    /// assert!(q.empty());
    /// p.join()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn join(&self) -> crate::Result<()> {
        self.inner.raw.join(Wait::Forever)?;
        Ok(())
    }

    /// Waits at most `timeout`; returns whether every task was done.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put("task".to_string())?;
    /// assert!(!q.join_timeout(Duration::from_millis(10))?);
    /// q.get()?;
    /// q.task_done()?;
    /// assert!(q.join_timeout(Duration::ZERO)?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> crate::Result<bool> {
        Ok(self.inner.raw.join(Wait::timeout(timeout))?)
    }

    /// Shuts the queue down, as [`Queue::shutdown`]. With `immediate`, the
    /// messages still in the queue are discarded and their tasks counted as
    /// done, so a [`join`](Self::join) waiting only for them returns, in
    /// every process. A message already taken still needs its
    /// [`task_done`](Self::task_done), which works as before (as in
    /// Python).
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put("first".to_string())?;
    /// q.put("second".to_string())?;
    /// q.put("third".to_string())?;
    /// assert_eq!(q.get()?, "first"); // taken, not yet done
    /// q.shutdown(true)?; // the other two are discarded, and done
    /// assert!(!q.join_timeout(Duration::ZERO)?);
    /// q.task_done()?;
    /// q.join()?; // nothing left to wait for
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn shutdown(&self, immediate: bool) -> crate::Result<()> {
        self.inner.shutdown(immediate)
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(JoinableQueue {
            inner: Queue::deserialize(deserializer)?,
        })
    }
}

/// A queue is ready for [`wait`](crate::wait) while it is not empty, and
/// for ever once it is shut down (a `get` then answers at once).
impl<T> crate::wait::Sealed for Queue<T> {}

impl<T> crate::wait::Waitable for Queue<T> {
    fn wait_fd(&self) -> Option<crate::wait::WaitFd<'_>> {
        Some(crate::wait::WaitFd::borrowed(self.raw.eventfd()))
    }

    fn ready_now(&self) -> bool {
        // A shut-down queue answers a get at once, if only with ShutDown.
        !self.empty() || self.raw.is_shut_down()
    }

    fn arm(&self) {
        self.raw.arm();
    }

    fn disarm(&self) {
        self.raw.disarm();
    }

    fn clear_spurious(&self) {
        let _ = self.raw.repair_signal();
    }
}

macro_rules! waitable_through_inner {
    ($name:ident) => {
        impl<T> crate::wait::Sealed for $name<T> {}

        impl<T> crate::wait::Waitable for $name<T> {
            fn wait_fd(&self) -> Option<crate::wait::WaitFd<'_>> {
                self.inner.wait_fd()
            }

            fn ready_now(&self) -> bool {
                self.inner.ready_now()
            }

            fn arm(&self) {
                self.inner.arm();
            }

            fn disarm(&self) {
                self.inner.disarm();
            }

            fn clear_spurious(&self) {
                self.inner.clear_spurious();
            }
        }
    };
}

waitable_through_inner!(SimpleQueue);
waitable_through_inner!(JoinableQueue);
