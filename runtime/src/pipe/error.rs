//! The errors of a pipe's operations, and how each becomes an [`Error`].

use crate::codec::CodecError;
use crate::error::Error;
use std::io;

/// Why a send failed.
///
/// ```
/// use multiproc::{Pipe, SendError};
/// let (a, b) = Pipe::<u8>::new()?;
/// drop(b);
/// assert!(matches!(a.send(&1), Err(SendError::Closed)));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// Every copy of the other end is closed, or this handle was closed.
    #[error("the connection is closed")]
    Closed,
    /// The value could not be encoded, or its encoding exceeds the frame
    /// limit (4 GiB). Nothing was sent.
    #[error(transparent)]
    Encode(CodecError),
    /// The operating system refused.
    #[error("pipe send failed: {0}")]
    Io(io::Error),
    /// The message holds handles (a `Queue`, a `Pipe` end, a `Lock`, ... or
    /// a descriptor given to `send_handle`), whose descriptors only a
    /// Unix-socket connection carries; this one is TCP. Nothing was sent.
    #[error(
        "the message holds multiproc handles, whose descriptors only a Unix-socket \
         connection carries (this one is TCP); nothing was sent"
    )]
    HandlesNeedUnixSocket,
}

/// Why a blocking receive failed.
///
/// ```
/// use multiproc::{Pipe, RecvError};
/// let (a, b) = Pipe::<u8>::new()?;
/// drop(b);
/// assert!(matches!(a.recv(), Err(RecvError::Closed)));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// Every copy of the other end is closed and every message has been
    /// received, or this handle was closed.
    #[error("the connection is closed")]
    Closed,
    /// The bytes received are not a message of the expected type: a frame
    /// whose header announces more than the limit, a frame cut short by the
    /// peer's end, or a body that does not decode. A whole frame that does
    /// not decode is consumed; the next receive goes on with the next frame.
    #[error(transparent)]
    Decode(CodecError),
    /// The operating system refused.
    #[error("pipe receive failed: {0}")]
    Io(io::Error),
}

/// Why [`recv_timeout`](crate::Connection::recv_timeout) failed.
///
/// ```
/// use multiproc::{Pipe, RecvTimeoutError};
/// use std::time::Duration;
/// let (a, _b) = Pipe::<u8>::new()?;
/// let r = a.recv_timeout(Duration::from_millis(10));
/// assert!(matches!(r, Err(RecvTimeoutError::Timeout)));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// No whole message arrived in time; whatever part of one did is kept
    /// for the next receive.
    #[error("timed out waiting on a pipe")]
    Timeout,
    /// As [`RecvError::Closed`].
    #[error("the connection is closed")]
    Closed,
    /// As [`RecvError::Decode`].
    #[error(transparent)]
    Decode(CodecError),
    /// The operating system refused.
    #[error("pipe receive failed: {0}")]
    Io(io::Error),
}

/// Why [`try_recv`](crate::Connection::try_recv) failed.
///
/// ```
/// use multiproc::{Pipe, TryRecvError};
/// let (a, _b) = Pipe::<u8>::new()?;
/// assert!(matches!(a.try_recv(), Err(TryRecvError::Empty)));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TryRecvError {
    /// No whole message is there now.
    #[error("no message is ready on the pipe")]
    Empty,
    /// As [`RecvError::Closed`].
    #[error("the connection is closed")]
    Closed,
    /// As [`RecvError::Decode`].
    #[error(transparent)]
    Decode(CodecError),
    /// The operating system refused.
    #[error("pipe receive failed: {0}")]
    Io(io::Error),
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Closed => Error::Closed,
            SendError::Encode(e) => Error::Codec(e),
            SendError::Io(e) => Error::Io(e),
            SendError::HandlesNeedUnixSocket => Error::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                SendError::HandlesNeedUnixSocket.to_string(),
            )),
        }
    }
}

impl From<RecvError> for Error {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Closed => Error::Closed,
            RecvError::Decode(e) => Error::Codec(e),
            RecvError::Io(e) => Error::Io(e),
        }
    }
}

impl From<RecvTimeoutError> for Error {
    fn from(e: RecvTimeoutError) -> Self {
        match e {
            RecvTimeoutError::Timeout => Error::Timeout,
            RecvTimeoutError::Closed => Error::Closed,
            RecvTimeoutError::Decode(e) => Error::Codec(e),
            RecvTimeoutError::Io(e) => Error::Io(e),
        }
    }
}

impl From<TryRecvError> for Error {
    fn from(e: TryRecvError) -> Self {
        match e {
            TryRecvError::Empty => Error::Empty,
            TryRecvError::Closed => Error::Closed,
            TryRecvError::Decode(e) => Error::Codec(e),
            TryRecvError::Io(e) => Error::Io(e),
        }
    }
}

/// Why a receive failed, before it is told apart per operation.
pub(super) enum Fail {
    Closed,
    Timeout,
    Decode(CodecError),
    Io(io::Error),
}

impl From<Fail> for RecvError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Closed => RecvError::Closed,
            Fail::Decode(e) => RecvError::Decode(e),
            Fail::Io(e) => RecvError::Io(e),
            // A receive without deadline never times out.
            Fail::Timeout => RecvError::Io(io::ErrorKind::TimedOut.into()),
        }
    }
}

impl From<Fail> for RecvTimeoutError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Closed => RecvTimeoutError::Closed,
            Fail::Timeout => RecvTimeoutError::Timeout,
            Fail::Decode(e) => RecvTimeoutError::Decode(e),
            Fail::Io(e) => RecvTimeoutError::Io(e),
        }
    }
}

impl From<Fail> for TryRecvError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Closed => TryRecvError::Closed,
            Fail::Timeout => TryRecvError::Empty,
            Fail::Decode(e) => TryRecvError::Decode(e),
            Fail::Io(e) => TryRecvError::Io(e),
        }
    }
}
