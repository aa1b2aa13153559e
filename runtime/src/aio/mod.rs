//! Async forms for tokio (feature `tokio`): await a pool's results, a
//! process, a queue, a connection, a listener or an event without a
//! blocked thread per wait.
//!
//! The handles are the same objects as in sync code (a `Queue` made in
//! `main` and passed to a child is awaited in async code), and the async
//! methods sit beside their sync twins with an `_async` suffix, giving the
//! same values and errors. What a future waits on:
//!
//! - a descriptor (a connection's socket, a child's pidfd, a queue's
//!   eventfd, a listener's epoll set): a duplicate of it in tokio's reactor
//!   ([`AsyncFd`](tokio::io::unix::AsyncFd));
//! - a futex word in shared memory (an [`Event`](crate::Event), a full
//!   queue's room, a `JoinableQueue`'s join): one helper thread per
//!   process waits on all of them with one `futex_waitv` and wakes the
//!   futures whose word moved;
//! - a pool's result: the dispatcher thread wakes the future when it
//!   files the reply (no reactor needed, so an [`AsyncResult`] can be
//!   awaited on any executor).
//!
//! Dropping a future cancels only the wait, never the work: a task keeps
//! running (its result is dropped when it comes), a child keeps running,
//! a queue message stays in the queue. The descriptor-based forms need a
//! tokio runtime with IO and time enabled (they panic outside one, as
//! tokio's own types do).
//!
//! [`AsyncResult`]: crate::AsyncResult

mod fd;
mod futexes;
mod pool;
mod process;

pub(crate) use fd::{ready, ready_fd};
pub(crate) use futexes::{Counted, FutexWord, changed};
pub use pool::ResultFuture;
