//! The crate's error type.

use crate::codec::CodecError;
use crate::setup::{Limited, Resource};
use std::io;

/// Everything that can go wrong in multiproc: starting, waiting for or
/// collecting a process, a pool's tasks, and (through `?`) every handle's
/// own error type, each of which becomes the one variant named for it.
///
/// A child that panics is [`Error::Panicked`], with its message:
///
/// ```
/// use multiproc::{Error, Process, worker};
///
/// #[worker]
/// fn fail(code: u32) {
///     panic!("bad input {code}");
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let mut p = Process::new(fail, (7,));
/// p.env("RUST_BACKTRACE", "0"); // this panic is expected: no backtrace
/// p.start()?;
/// p.join()?;
/// match p.result() {
///     Err(Error::Panicked { message, .. }) => assert!(message.contains("bad input 7")),
///     other => panic!("expected a panic, got {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
///
/// A handle's error converts with `?`:
///
/// ```
/// use multiproc::{Error, Queue};
/// fn first(q: &Queue<u8>) -> multiproc::Result<u8> {
///     Ok(q.try_get()?) // `TryGetError::Empty` becomes `Error::Empty`
/// }
/// let q = Queue::new()?;
/// assert!(matches!(first(&q), Err(Error::Empty)));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `start` was called on a process that was already started.
    #[error("cannot start a process twice")]
    AlreadyStarted,
    /// The operation needs a started process.
    #[error("the process has not been started")]
    NotStarted,
    /// The child could not be created.
    #[error("could not start a child process: {0}")]
    Spawn(#[source] io::Error),
    /// The worker panicked in the child (which then exited with status 1).
    #[error(
        "worker panicked in process {pid}{}: {message}",
        location.as_deref().map(|l| format!(" at {l}")).unwrap_or_default()
    )]
    Panicked {
        /// The child's pid.
        pid: u32,
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic, when known.
        location: Option<String>,
        /// The child's backtrace of the panic, for a pool task in a child
        /// whose `RUST_BACKTRACE` asked for one. A pool worker prints
        /// nothing when a task panics (as Python's pool prints nothing when
        /// a task raises): the panic is the task's result, and this is
        /// where its trace goes (`{:?}` shows it). A `Process` child
        /// prints its panic as a main thread would, and this is `None`.
        backtrace: Option<String>,
    },
    /// The child exited without delivering a result (for example it called
    /// `std::process::exit`).
    #[error("process {pid} exited with status {code} before returning a result")]
    Exited {
        /// The child's pid.
        pid: u32,
        /// Its exit status.
        code: i32,
    },
    /// The child was killed by a signal before delivering a result.
    #[error(
        "process {pid} was killed by signal {signal} ({}){}",
        signal_name(*signal),
        limit.as_ref().map(|l| format!(": {l}")).unwrap_or_default()
    )]
    Killed {
        /// The child's pid.
        pid: u32,
        /// The signal number (`exitcode` is its negation).
        signal: i32,
        /// The resource limit it was given and ran into, when the runtime
        /// can tell (see [`Resource`](crate::Resource)).
        limit: Option<Limited>,
    },
    /// The kernel refused a resource limit asked for with `rlimit` (for
    /// example a hard limit above this process's own, without the
    /// privilege to raise it); the child was stopped before it ran anything.
    #[error(
        "the kernel refused the child's {resource:?} limit (soft {soft}, hard {hard}): {source}"
    )]
    LimitRefused {
        /// The resource.
        resource: Resource,
        /// The soft limit asked for.
        soft: u64,
        /// The hard limit asked for.
        hard: u64,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// A start hook ([`on_child_start`](crate::on_child_start)) or the
    /// process's initializer panicked or failed in the child, which then ran
    /// nothing else.
    #[error(
        "{worker} failed in process {pid} before its worker ran{}: {message}",
        location.as_deref().map(|l| format!(" at {l}")).unwrap_or_default()
    )]
    InitializerFailed {
        /// The child's pid.
        pid: u32,
        /// Which set-up failed: "the start hook `name`" or "the initializer
        /// `name`".
        worker: String,
        /// The panic message, or why it could not run.
        message: String,
        /// `file:line:column` of the panic, when known.
        location: Option<String>,
    },
    /// The child binary has no worker of that name.
    #[error("the child binary has no worker named `{name}`")]
    UnknownWorker {
        /// The name looked up.
        name: String,
    },
    /// The child could not run the worker: its arguments did not decode, or
    /// its result did not encode.
    #[error("process {pid} could not run its worker: {reason}")]
    WorkerFailed {
        /// The child's pid.
        pid: u32,
        /// What went wrong, as the child reported it.
        reason: String,
    },
    /// The worker's result was already taken by an earlier call.
    #[error("the worker's result was already taken")]
    ResultTaken,
    /// Work was submitted to a pool after [`Pool::close`](crate::Pool::close)
    /// or [`Pool::terminate`](crate::Pool::terminate).
    #[error("the pool is closed: it takes no new work after close() or terminate()")]
    PoolClosed,
    /// [`Pool::join`](crate::Pool::join) was called before `close` or `terminate`.
    #[error("the pool is still running: call close() or terminate() before join()")]
    PoolRunning,
    /// The pool was terminated (or dropped) before the task ran to its end.
    #[error("the pool was terminated before the task finished")]
    PoolTerminated,
    /// The pool cannot run tasks: its initializer failed, or its workers die
    /// before they start.
    #[error("the pool cannot run tasks: {reason}")]
    PoolBroken {
        /// What went wrong.
        reason: String,
    },
    /// One input of a `map`, `starmap` or `imap` failed; `source` says how.
    #[error("input {index} failed: {source}")]
    TaskFailed {
        /// The position of the input, counting from 0.
        index: usize,
        /// Why it failed: [`Panicked`](Error::Panicked), [`Killed`](Error::Killed),
        /// [`Exited`](Error::Exited), ...
        source: Box<Error>,
    },
    /// The input iterator of an `imap` panicked while producing item `index`.
    #[error("the input iterator panicked at item {index}: {message}")]
    InputPanicked {
        /// How many items it had produced before.
        index: usize,
        /// The panic message.
        message: String,
    },
    /// A pool task ran longer than its timeout: its worker was killed and
    /// replaced, and the task failed alone (the other inputs of its chunk
    /// went on).
    #[error("a task ran past its timeout of {timeout:?} in pool worker {pid}, which was killed")]
    TaskTimedOut {
        /// The worker that was running it.
        pid: u32,
        /// The timeout it ran past.
        timeout: std::time::Duration,
    },
    /// The task was cancelled ([`AsyncResult::cancel`](crate::AsyncResult::cancel),
    /// or an `imap` dropped before its end) before it finished.
    #[error("the task was cancelled")]
    Cancelled,
    /// [`StartMethod::Fork`](crate::StartMethod::Fork) was asked of a
    /// process with more than one thread: in the child only the forking
    /// thread would exist, and a lock another thread held would stay held
    /// (Python's `fork` deadlock). Use `Forkserver` or `Spawn`.
    #[error(
        "cannot start a child by fork: this process has {threads} threads, and in the child \
         every lock another thread held would stay held; use StartMethod::Forkserver or Spawn"
    )]
    ForkWithThreads {
        /// How many threads the process had.
        threads: usize,
    },
    /// [`set_start_method`](crate::set_start_method) was called a second
    /// time (Python's `RuntimeError: context has already been set`). Use
    /// [`get_context`](crate::get_context) to start some children another
    /// way.
    #[error("the start method is set already (to {current}); use get_context() for another")]
    StartMethodSet {
        /// The method set before.
        current: crate::StartMethod,
    },
    /// An argument is out of range: a pool of 0 processes or
    /// `max_tasks_per_child(0)`, an empty or oversized authkey, a resource
    /// limit or an environment the child cannot have. (A chunk size of 0 is
    /// a programmer's error and panics, as std's `slice::chunks(0)`.)
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A queue or connection handle was closed, or a
    /// [`Process`](crate::Process) after [`close`](crate::Process::close)
    /// (Python's `ValueError: process object is closed`).
    #[error("the handle is closed")]
    Closed,
    /// [`Process::close`](crate::Process::close) was called while the
    /// child is running (Python's `ValueError`): join or terminate it first.
    #[error("cannot close process {pid} while it is still running: join() or terminate() it first")]
    StillRunning {
        /// The child's pid.
        pid: u32,
    },
    /// A `try_put` found a bounded queue full ([`TryPutError::Full`](crate::TryPutError::Full);
    /// Python's `queue.Full`).
    #[error("the queue is full")]
    Full,
    /// A `try_get` or `try_recv` found nothing there
    /// ([`TryGetError::Empty`](crate::TryGetError::Empty),
    /// [`TryRecvError::Empty`](crate::TryRecvError::Empty); Python's `queue.Empty`).
    #[error("the queue is empty")]
    Empty,
    /// `JoinableQueue::task_done` was called more times than items were put.
    #[error("task_done() called too many times")]
    TaskDoneTooOften,
    /// A lock was acquired, but its previous holder died while holding it
    /// (see [`OwnerDied`](crate::OwnerDied), which keeps the guard).
    #[error("the previous owner of the lock died while holding it")]
    OwnerDied,
    /// A lock's or semaphore's `try_acquire` would have had to wait.
    #[error("the operation would have to wait")]
    WouldBlock,
    /// A `_timeout` call ran out of time: a queue's `get_timeout` or
    /// `put_timeout` ([`GetTimeoutError::Timeout`](crate::GetTimeoutError::Timeout),
    /// [`PutTimeoutError::Timeout`](crate::PutTimeoutError::Timeout)), a pipe's
    /// `recv_timeout` ([`RecvTimeoutError::Timeout`](crate::RecvTimeoutError::Timeout)),
    /// a lock's, a condition's, a barrier's.
    #[error("timed out")]
    Timeout,
    /// A thread released a lock it does not hold.
    #[error("the lock is not held by this thread")]
    NotOwner,
    /// A `BoundedSemaphore` was released more times than it was acquired.
    #[error("semaphore released too many times")]
    ReleasedTooManyTimes,
    /// A `Barrier` is broken (aborted, reset, timed out, a party died).
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// The peer of a [`Listener`](crate::Listener) or
    /// [`Client`](crate::Client) connection failed the authkey challenge, or
    /// rejected ours (Python's `AuthenticationError`). Only that connection
    /// is lost: the listener goes on accepting.
    #[error("authentication failed: {reason}")]
    AuthenticationFailed {
        /// What went wrong: a wrong digest, a digest the other side
        /// rejected, an unsupported digest, or a malformed handshake.
        reason: String,
    },
    /// The queue was shut down ([`Queue::shutdown`](crate::Queue::shutdown),
    /// Python's `queue.ShutDown`): it takes no new items, and once empty
    /// gives none.
    #[error("the queue is shut down")]
    ShutDown,
    /// An index past the end of a fixed-length
    /// [`ShareableList`](crate::ShareableList) (Python's `IndexError`).
    #[error("index {index} is out of range for a list of {len} items")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The list's length.
        len: usize,
    },
    /// A `str` or `bytes` item of a [`ShareableList`](crate::ShareableList)
    /// longer than its slot (Python's `ValueError`, "bytes/str item exceeds
    /// available storage").
    #[error("item {index}: {len} bytes do not fit in its slot of {capacity} bytes")]
    ItemTooLong {
        /// The item's position.
        index: usize,
        /// The length of the value, in bytes (UTF-8 for a `str`).
        len: usize,
        /// The most its slot holds.
        capacity: usize,
    },
    /// Encoding or decoding failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// An operating-system call failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Error {
    /// The pid of the process a failure happened in, if it names one.
    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            Error::Killed { pid, .. }
            | Error::Exited { pid, .. }
            | Error::WorkerFailed { pid, .. }
            | Error::Panicked { pid, .. }
            | Error::TaskTimedOut { pid, .. }
            | Error::InitializerFailed { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// Another copy of a pool task's error, for each input of a chunk that
    /// failed as a whole (errors that carry an `io::Error` are copied as
    /// their text).
    pub(crate) fn copy(&self) -> Error {
        match self {
            Error::Killed { pid, signal, limit } => Error::Killed {
                pid: *pid,
                signal: *signal,
                limit: limit.clone(),
            },
            Error::Exited { pid, code } => Error::Exited {
                pid: *pid,
                code: *code,
            },
            Error::WorkerFailed { pid, reason } => Error::WorkerFailed {
                pid: *pid,
                reason: reason.clone(),
            },
            Error::Panicked {
                pid,
                message,
                location,
                backtrace,
            } => Error::Panicked {
                pid: *pid,
                message: message.clone(),
                location: location.clone(),
                backtrace: backtrace.clone(),
            },
            Error::TaskTimedOut { pid, timeout } => Error::TaskTimedOut {
                pid: *pid,
                timeout: *timeout,
            },
            Error::Cancelled => Error::Cancelled,
            Error::PoolClosed => Error::PoolClosed,
            Error::PoolTerminated => Error::PoolTerminated,
            Error::PoolBroken { reason } => Error::PoolBroken {
                reason: reason.clone(),
            },
            Error::ResultTaken => Error::ResultTaken,
            other => Error::Io(io::Error::other(other.to_string())),
        }
    }
}

/// `Result<T, multiproc::Error>`, the return type of most of the crate, and
/// a `main` that uses `?` on any of its errors.
///
/// ```
/// fn main() -> multiproc::Result<()> {
///     let (a, b) = multiproc::Pipe::new()?;
///     a.send(&"hi".to_string())?; // a `SendError` would convert
///     assert_eq!(b.recv()?, "hi");
///     Ok(())
/// }
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The conventional name of a signal (`SIGKILL`), or `signal N`.
pub(crate) fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

impl From<nix::errno::Errno> for Error {
    fn from(errno: nix::errno::Errno) -> Self {
        Error::Io(errno.into())
    }
}
