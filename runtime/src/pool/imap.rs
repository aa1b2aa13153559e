//! `imap` and `imap_unordered`: lazy over their input, with bounded prefetch.

use super::dispatch::{Shared, Task};
use super::result::{Delivery, Piece, Sink, Stream, outcomes};
use super::wire;
use crate::error::{Error, Result};
use crate::protocol::panics;
use crate::registry::Worker;
use std::collections::{HashMap, VecDeque};
use std::iter::FusedIterator;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

/// Answered frames up to this size are kept for reuse.
const SPARE_CAPACITY: usize = 64 * 1024;

/// The iterator [`Pool::imap`](crate::Pool::imap) returns: results in input
/// order.
///
/// It pulls its input lazily (in the thread that iterates) and keeps a
/// bounded number of chunks queued or running, so an endless input works and
/// memory stays flat. When the input is an [`ExactSizeIterator`], so is
/// this, and progress bars (`indicatif`'s `ProgressIterator`) work on it
/// unchanged.
///
/// Each item is the value, or [`Error::TaskFailed`] naming the input's index
/// and why (a panic, a worker's death); iteration goes on after a failed
/// item, as in Python. If the input iterator itself panics at item `k`, the
/// results before `k` come first, then one [`Error::InputPanicked`], then
/// the end.
///
/// Dropping it before the end cancels the inputs that have not started:
/// they never run. Inputs already running finish (their results are
/// dropped); nothing is killed.
///
/// ```
/// use multiproc::{Pool, worker};
///
/// #[worker]
/// fn square(x: u32) -> u32 {
///     x * x
/// }
///
/// let pool = Pool::builder().processes(2).build()?;
/// let squares = pool.imap(square, 0..100)?;
/// assert_eq!(squares.len(), 100); // a `Range<u32>` is an `ExactSizeIterator`
/// let squares: Vec<u32> = squares.collect::<Result<_, _>>()?;
/// assert_eq!(squares[9], 81);
/// // Endless input: only what is taken (plus a bounded prefetch) is computed.
/// let first: Vec<u32> = pool.imap(square, 1..)?.take(3).map(Result::unwrap).collect();
/// assert_eq!(first, [1, 4, 9]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Imap<W: Worker, I: Iterator> {
    inner: Lazy<W, I>,
}

/// The iterator [`Pool::imap_unordered`](crate::Pool::imap_unordered)
/// returns: results as they finish.
///
/// Like [`Imap`] (lazy, bounded, exact-size when the input is), but each
/// result comes as soon as its chunk is done, so a slow item does not hold
/// back the others. A failed item is [`Error::TaskFailed`], whose `index`
/// says which input it was.
///
/// ```
/// use multiproc::{Pool, worker};
///
/// #[worker]
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::builder().processes(2).build()?;
/// let mut squares: Vec<u64> = pool.imap_unordered(square, 0..10)?.map(Result::unwrap).collect();
/// squares.sort();
/// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ImapUnordered<W: Worker, I: Iterator> {
    inner: Lazy<W, I>,
}

struct Lazy<W: Worker, I: Iterator> {
    shared: Arc<Shared>,
    /// `None` once exhausted, after a panic, or after a refused submission.
    inputs: Option<I>,
    to_args: fn(I::Item) -> W::Args,
    chunksize: usize,
    /// Each input's timeout (0: none).
    timeout_ns: u64,
    /// Most chunks submitted and not yet taken.
    prefetch: usize,
    stream: Arc<Stream>,
    ordered: bool,
    /// Items per chunk submitted and not yet taken, by sequence number.
    lens: HashMap<u64, usize>,
    outstanding: usize,
    next_seq: u64,
    next_take: u64,
    pulled: usize,
    ready: VecDeque<Result<W::Output>>,
    /// Frames of answered chunks, for the next chunks to reuse.
    spare: Vec<Vec<u8>>,
    /// Comes after every result before it: an input panic.
    last: Option<Error>,
}

impl<W: Worker, I: Iterator> Lazy<W, I> {
    fn new(
        shared: Arc<Shared>,
        processes: usize,
        inputs: I,
        to_args: fn(I::Item) -> W::Args,
        chunksize: usize,
        timeout_ns: u64,
        ordered: bool,
    ) -> Self {
        Lazy {
            shared,
            inputs: Some(inputs),
            to_args,
            chunksize,
            timeout_ns,
            prefetch: (processes * 4).max((processes * 128).div_ceil(chunksize)),
            stream: Stream::new(ordered),
            ordered,
            lens: HashMap::new(),
            outstanding: 0,
            next_seq: 0,
            next_take: 0,
            pulled: 0,
            ready: VecDeque::new(),
            spare: Vec::new(),
            last: None,
        }
    }

    /// Pulls and submits chunks until `prefetch` are out (once half are
    /// taken, so submissions go in batches).
    fn top_up(&mut self) {
        let Some(inputs) = self.inputs.as_mut() else {
            return;
        };
        if self.lens.len() > self.prefetch / 2 {
            return;
        }
        let mut tasks = Vec::new();
        let mut ended = false;
        while self.lens.len() < self.prefetch && !ended {
            let mut items = Vec::with_capacity(self.chunksize.min(1024));
            while items.len() < self.chunksize {
                match panic::catch_unwind(AssertUnwindSafe(|| inputs.next())) {
                    Ok(Some(item)) => items.push((self.to_args)(item)),
                    Ok(None) => {
                        ended = true;
                        break;
                    }
                    Err(payload) => {
                        let (message, _) = panics::caught_panic(payload.as_ref());
                        self.last = Some(Error::InputPanicked {
                            index: self.pulled + items.len(),
                            message,
                        });
                        ended = true;
                        break;
                    }
                }
            }
            if items.is_empty() {
                break;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.pulled += items.len();
            self.outstanding += items.len();
            self.lens.insert(seq, items.len());
            let buf = self.spare.pop().unwrap_or_default();
            match wire::task_frame_into(buf, W::ID, self.timeout_ns, &items) {
                Ok(frame) => tasks.push(Task::new(
                    frame,
                    Sink::stream(&self.stream, seq),
                    self.chunksize > 1,
                    items.len(),
                )),
                // This chunk fails; the others go on.
                Err(e) => {
                    let failed = Piece::Failed {
                        count: items.len(),
                        error: e.into(),
                    };
                    self.stream.put(seq, Delivery::one(failed));
                }
            }
        }
        if ended {
            self.inputs = None;
        }
        if tasks.is_empty() {
            return;
        }
        if self.shared.submit(tasks).is_err() {
            // Closed or broken: the refused chunks got the error; pull no more.
            self.inputs = None;
        }
    }

    fn next(&mut self) -> Option<Result<W::Output>> {
        self.advance(|stream, seq| Some(stream.take(seq)))
            .expect("a waiting take always takes")
    }

    /// The next item if it is there; if not, `waker` is woken when a chunk
    /// arrives (a stream's poll).
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_next(
        &mut self,
        waker: &std::task::Waker,
    ) -> Option<Option<Result<W::Output>>> {
        self.advance(|stream, seq| stream.take_or_wake(seq, waker))
    }

    /// The next item, taking chunks with `take`; `None` if `take` gave none.
    fn advance(
        &mut self,
        mut take: impl FnMut(&Stream, Option<u64>) -> Option<(u64, Delivery)>,
    ) -> Option<Option<Result<W::Output>>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(Some(item));
            }
            self.top_up();
            if self.lens.is_empty() {
                return Some(self.last.take().map(Err));
            }
            let (seq, mut delivery) = take(&self.stream, self.ordered.then_some(self.next_take))?;
            let frame = std::mem::take(&mut delivery.frame);
            if frame.capacity() <= SPARE_CAPACITY && self.spare.len() < self.prefetch {
                self.spare.push(frame);
            }
            self.next_take += u64::from(self.ordered);
            let len = self.lens.remove(&seq).expect("a chunk we submitted");
            self.outstanding -= len;
            let base = seq as usize * self.chunksize;
            let fail = |index, source| Error::TaskFailed {
                index,
                source: Box::new(source),
            };
            let results = outcomes::<W::Output>(delivery, len);
            self.ready.extend(
                results
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| r.map_err(|e| fail(base + i, e))),
            );
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let known = self.ready.len() + self.outstanding + usize::from(self.last.is_some());
        match &self.inputs {
            None => (known, Some(known)),
            Some(inputs) => {
                let (low, high) = inputs.size_hint();
                (
                    known.saturating_add(low),
                    high.and_then(|h| h.checked_add(known)),
                )
            }
        }
    }
}

impl<W: Worker, I: Iterator> Drop for Lazy<W, I> {
    fn drop(&mut self) {
        if !self.lens.is_empty() {
            self.shared.cancel_stream(&self.stream);
        }
    }
}

macro_rules! iterator {
    ($name:ident, $ordered:expr) => {
        impl<W: Worker, I: Iterator> $name<W, I> {
            pub(crate) fn new(
                shared: Arc<Shared>,
                processes: usize,
                inputs: I,
                to_args: fn(I::Item) -> W::Args,
                chunksize: usize,
                timeout_ns: u64,
            ) -> Self {
                $name {
                    inner: Lazy::new(
                        shared, processes, inputs, to_args, chunksize, timeout_ns, $ordered,
                    ),
                }
            }
        }

        impl<W: Worker, I: Iterator> Iterator for $name<W, I> {
            type Item = Result<W::Output>;

            fn next(&mut self) -> Option<Self::Item> {
                self.inner.next()
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                self.inner.size_hint()
            }
        }

        /// Results as a [`Stream`](futures_core::Stream) (feature `tokio`):
        /// the same items as the iterator, awaited instead of waited for.
        /// Inputs are pulled from the input iterator in `poll_next`. Being
        /// both an `Iterator` and a `Stream`, its `next` and `map` are
        /// ambiguous with `futures::StreamExt` in scope: call them as
        /// `StreamExt::next(&mut results)`.
        ///
        /// ```
        /// use futures_core::Stream;
        /// use multiproc::{Pool, worker};
        /// use std::pin::Pin;
        ///
        /// #[worker]
        /// fn square(x: u64) -> u64 {
        ///     x * x
        /// }
        ///
        /// # fn main() -> multiproc::Result<()> {
        /// let pool = Pool::builder().processes(2).build()?;
        /// let mut squares = pool.imap(square, 0..4)?;
        /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        /// let got = runtime.block_on(async {
        ///     let mut got = Vec::new();
        ///     while let Some(x) = std::future::poll_fn(|cx| Pin::new(&mut squares).poll_next(cx)).await {
        ///         got.push(x?);
        ///     }
        ///     Ok::<_, multiproc::Error>(got)
        /// })?;
        /// assert_eq!(got, [0, 1, 4, 9]);
        /// # Ok(())
        /// # }
        /// ```
        #[cfg(feature = "tokio")]
        impl<W: Worker, I: Iterator> futures_core::Stream for $name<W, I>
        where
            Self: Unpin,
        {
            type Item = Result<W::Output>;

            fn poll_next(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Self::Item>> {
                match self.inner.poll_next(cx.waker()) {
                    Some(item) => std::task::Poll::Ready(item),
                    None => std::task::Poll::Pending,
                }
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                self.inner.size_hint()
            }
        }

        impl<W: Worker, I: ExactSizeIterator> ExactSizeIterator for $name<W, I> {}

        impl<W: Worker, I: Iterator> FusedIterator for $name<W, I> {}

        impl<W: Worker, I: Iterator> std::fmt::Debug for $name<W, I> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("worker", &W::NAME)
                    .field("chunksize", &self.inner.chunksize)
                    .field("in_flight", &self.inner.outstanding)
                    .finish()
            }
        }
    };
}

iterator!(Imap, true);
iterator!(ImapUnordered, false);
