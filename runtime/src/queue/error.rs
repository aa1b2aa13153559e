//! The errors of a queue's operations, and how each becomes an [`Error`].
//!
//! One vocabulary with the pipe's ([`SendError`](crate::SendError),
//! [`RecvError`](crate::RecvError), ...): `Closed`, `ShutDown`, `Encode`,
//! `Decode`, `Io`, and for the operations that do not wait for ever, `Full`
//! and `Empty` (`try_`) or `Timeout` (`_timeout`), each a type of its own
//! as in std's `mpsc` and crossbeam.

use crate::codec::CodecError;
use crate::error::Error;
use std::fmt;
use std::io;

/// Why [`Queue::put`](crate::Queue::put) failed; the item comes back.
///
/// ```
/// use multiproc::{PutError, Queue};
/// let q = Queue::new()?;
/// q.close();
/// let err = q.put(7u32).unwrap_err();
/// assert!(matches!(err, PutError::Closed(7)));
/// assert_eq!(err.into_inner(), 7);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[non_exhaustive]
pub enum PutError<T> {
    /// This handle was closed with [`Queue::close`](crate::Queue::close).
    Closed(T),
    /// The queue was shut down ([`Queue::shutdown`](crate::Queue::shutdown),
    /// in any process; Python's `queue.ShutDown`).
    ShutDown(T),
    /// The item could not be encoded, or its encoding is longer than the
    /// queue's [message size limit](crate::Queue::with_max_message_size)
    /// ([`CodecError::Oversized`]). Nothing was put.
    Encode(T, CodecError),
    /// The operating system refused (out of memory for the queue's buffer).
    Io(T, io::Error),
}

/// Why [`Queue::try_put`](crate::Queue::try_put) failed; the item comes back.
///
/// ```
/// use multiproc::{Queue, TryPutError};
/// let q = Queue::with_maxsize(1)?;
/// q.try_put('a')?;
/// assert!(matches!(q.try_put('b'), Err(TryPutError::Full('b'))));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[non_exhaustive]
pub enum TryPutError<T> {
    /// The queue is bounded and full now (Python's `queue.Full`).
    Full(T),
    /// As [`PutError::Closed`].
    Closed(T),
    /// As [`PutError::ShutDown`].
    ShutDown(T),
    /// As [`PutError::Encode`].
    Encode(T, CodecError),
    /// As [`PutError::Io`].
    Io(T, io::Error),
}

/// Why [`Queue::put_timeout`](crate::Queue::put_timeout) failed; the item
/// comes back.
///
/// ```
/// use multiproc::{PutTimeoutError, Queue};
/// use std::time::Duration;
/// let q = Queue::with_maxsize(1)?;
/// q.put(1u8)?;
/// let r = q.put_timeout(2, Duration::from_millis(10));
/// assert!(matches!(r, Err(PutTimeoutError::Timeout(2))));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[non_exhaustive]
pub enum PutTimeoutError<T> {
    /// The queue stayed full until the timeout (Python's `queue.Full`).
    Timeout(T),
    /// As [`PutError::Closed`].
    Closed(T),
    /// As [`PutError::ShutDown`].
    ShutDown(T),
    /// As [`PutError::Encode`].
    Encode(T, CodecError),
    /// As [`PutError::Io`].
    Io(T, io::Error),
}

/// Why [`Queue::get`](crate::Queue::get) failed.
///
/// ```
/// use multiproc::{GetError, Queue};
/// let q = Queue::<u8>::new()?;
/// q.shutdown(false)?;
/// assert!(matches!(q.get(), Err(GetError::ShutDown)));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// This handle was closed with [`Queue::close`](crate::Queue::close).
    #[error("the queue handle is closed")]
    Closed,
    /// The queue was shut down ([`Queue::shutdown`](crate::Queue::shutdown),
    /// in any process) and is empty (Python's `queue.ShutDown`).
    #[error("the queue is shut down")]
    ShutDown,
    /// The message was taken but does not decode as `T` (the queue goes on).
    #[error(transparent)]
    Decode(CodecError),
    /// The operating system refused, or the queue's memory is corrupt.
    #[error("queue failure: {0}")]
    Io(io::Error),
}

/// Why [`Queue::try_get`](crate::Queue::try_get) failed.
///
/// ```
/// use multiproc::{Queue, TryGetError};
/// let q = Queue::<u8>::new()?;
/// assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TryGetError {
    /// No message is there now (Python's `queue.Empty`).
    #[error("the queue is empty")]
    Empty,
    /// As [`GetError::Closed`].
    #[error("the queue handle is closed")]
    Closed,
    /// As [`GetError::ShutDown`].
    #[error("the queue is shut down")]
    ShutDown,
    /// As [`GetError::Decode`].
    #[error(transparent)]
    Decode(CodecError),
    /// As [`GetError::Io`].
    #[error("queue failure: {0}")]
    Io(io::Error),
}

/// Why [`Queue::get_timeout`](crate::Queue::get_timeout) failed.
///
/// ```
/// use multiproc::{GetTimeoutError, Queue};
/// use std::time::Duration;
/// let q = Queue::<u8>::new()?;
/// let r = q.get_timeout(Duration::from_millis(10));
/// assert!(matches!(r, Err(GetTimeoutError::Timeout)));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetTimeoutError {
    /// No message arrived in time (Python's `queue.Empty`).
    #[error("timed out waiting on the queue")]
    Timeout,
    /// As [`GetError::Closed`].
    #[error("the queue handle is closed")]
    Closed,
    /// As [`GetError::ShutDown`].
    #[error("the queue is shut down")]
    ShutDown,
    /// As [`GetError::Decode`].
    #[error(transparent)]
    Decode(CodecError),
    /// As [`GetError::Io`].
    #[error("queue failure: {0}")]
    Io(io::Error),
}

/// The put errors, which carry the item and so cannot derive `Error`:
/// `into_inner`, `Display`, a `Debug` without `T: Debug` (as crossbeam's
/// `SendError`, so `.unwrap()` works for any item type), `Error`, and the
/// conversion into [`Error`].
macro_rules! put_error {
    ($name:ident { $($wait:ident => $text:literal, $variant:ident),* }) => {
        impl<T> $name<T> {
            /// The item that was not put.
            ///
            /// ```
            /// let q = multiproc::Queue::new()?;
            /// q.close();
            /// assert_eq!(q.put("kept".to_string()).unwrap_err().into_inner(), "kept");
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn into_inner(self) -> T {
                match self {
                    $($name::$wait(item) => item,)*
                    $name::Closed(item) | $name::ShutDown(item) => item,
                    $name::Encode(item, _) | $name::Io(item, _) => item,
                }
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$wait(_) => f.write_str($text),)*
                    $name::Closed(_) => f.write_str("the queue handle is closed"),
                    $name::ShutDown(_) => f.write_str("the queue is shut down"),
                    $name::Encode(_, e) => write!(f, "{e}"),
                    $name::Io(_, e) => write!(f, "queue failure: {e}"),
                }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl<T> std::error::Error for $name<T> {}

        impl<T> From<$name<T>> for Error {
            fn from(e: $name<T>) -> Self {
                match e {
                    $($name::$wait(_) => Error::$variant,)*
                    $name::Closed(_) => Error::Closed,
                    $name::ShutDown(_) => Error::ShutDown,
                    $name::Encode(_, e) => Error::Codec(e),
                    $name::Io(_, e) => Error::Io(e),
                }
            }
        }
    };
}

put_error!(PutError {});
put_error!(TryPutError { Full => "the queue is full", Full });
put_error!(PutTimeoutError { Timeout => "timed out waiting for room in the queue", Timeout });

/// The get errors' conversion into [`Error`].
macro_rules! get_error {
    ($name:ident { $($wait:ident => $variant:ident),* }) => {
        impl From<$name> for Error {
            fn from(e: $name) -> Self {
                match e {
                    $($name::$wait => Error::$variant,)*
                    $name::Closed => Error::Closed,
                    $name::ShutDown => Error::ShutDown,
                    $name::Decode(e) => Error::Codec(e),
                    $name::Io(e) => Error::Io(e),
                }
            }
        }
    };
}

get_error!(GetError {});
get_error!(TryGetError { Empty => Empty });
get_error!(GetTimeoutError { Timeout => Timeout });

impl<T> TryPutError<T> {
    /// The error of a put that waited for ever (which is never `Full`).
    pub(super) fn waited(self) -> PutError<T> {
        match self {
            TryPutError::Closed(item) => PutError::Closed(item),
            TryPutError::ShutDown(item) => PutError::ShutDown(item),
            TryPutError::Encode(item, e) => PutError::Encode(item, e),
            TryPutError::Io(item, e) => PutError::Io(item, e),
            TryPutError::Full(_) => unreachable!("a put without deadline waits for space"),
        }
    }

    /// The error of a put that waited until a deadline: full means timed out.
    pub(super) fn timed(self) -> PutTimeoutError<T> {
        match self {
            TryPutError::Full(item) => PutTimeoutError::Timeout(item),
            TryPutError::Closed(item) => PutTimeoutError::Closed(item),
            TryPutError::ShutDown(item) => PutTimeoutError::ShutDown(item),
            TryPutError::Encode(item, e) => PutTimeoutError::Encode(item, e),
            TryPutError::Io(item, e) => PutTimeoutError::Io(item, e),
        }
    }
}

impl TryGetError {
    /// The error of a get that waited for ever (which is never `Empty`).
    pub(super) fn waited(self) -> GetError {
        match self {
            TryGetError::Closed => GetError::Closed,
            TryGetError::ShutDown => GetError::ShutDown,
            TryGetError::Decode(e) => GetError::Decode(e),
            TryGetError::Io(e) => GetError::Io(e),
            TryGetError::Empty => unreachable!("a get without deadline waits for a message"),
        }
    }

    /// The error of a get that waited until a deadline: empty means timed out.
    pub(super) fn timed(self) -> GetTimeoutError {
        match self {
            TryGetError::Empty => GetTimeoutError::Timeout,
            TryGetError::Closed => GetTimeoutError::Closed,
            TryGetError::ShutDown => GetTimeoutError::ShutDown,
            TryGetError::Decode(e) => GetTimeoutError::Decode(e),
            TryGetError::Io(e) => GetTimeoutError::Io(e),
        }
    }
}
