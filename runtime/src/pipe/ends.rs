//! The public ends: [`Connection`], [`PipeReader`], [`PipeWriter`], and
//! what [`wait`](crate::wait) sees of them.

#[cfg(feature = "tokio")]
mod aio;

use super::error::{RecvError, RecvTimeoutError, SendError, TryRecvError};
use super::socket::{Deadline, Inner};
use crate::codec::MAX_FRAME;
use crate::wait::{Sealed, WaitFd, Waitable};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

/// One end of a duplex [`Pipe`](crate::Pipe): Python's `multiprocessing.connection.Connection`,
/// typed.
///
/// Sends and receives values of `T`. Clones are cheap handles to the same
/// end; a handle passes to a child as (part of) a worker's arguments, a pool
/// task's arguments or an initializer's arguments, at any depth. The other
/// end sees [`RecvError::Closed`] once every copy of this end is closed or
/// dropped — in every process, including the parent's copy of an end it gave
/// a child; keep no copy you do not use.
///
/// A receive reads only the message it returns, and `poll` reads nothing,
/// so processes holding copies of one end each get whole messages: what one
/// has not taken stays in the socket for the others. Only the part of a
/// message that a timed-out receive had read stays with this process's
/// handle, for its next receive. Two processes receiving on the same end at
/// the same moment may still split a message between them (Python's
/// warning applies); threads of one process may share a handle freely.
///
/// ```
/// use multiproc::{Connection, Pipe, Process, worker};
///
/// #[worker]
/// fn greet(conn: Connection<String>) {
///     let name = conn.recv().unwrap();
///     conn.send(&format!("hello, {name}")).unwrap();
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let (parent, child) = Pipe::new()?;
/// let mut p = Process::new(greet, (child,));
/// p.start()?;
/// parent.send(&"world".to_string())?;
/// assert_eq!(parent.recv()?, "hello, world");
/// p.join()?;
/// # Ok(())
/// # }
/// ```
pub struct Connection<T> {
    pub(super) inner: Arc<Inner>,
    pub(super) _items: PhantomData<fn(T) -> T>,
}

/// The receiving end of a one-way pipe ([`Pipe::one_way`](crate::Pipe::one_way)): it has no
/// `send`. Otherwise as [`Connection`].
///
/// ```
/// use multiproc::{Pipe, PipeWriter, Process, worker};
///
/// #[worker]
/// fn count(tx: PipeWriter<u32>, n: u32) {
///     for i in 0..n {
///         tx.send(&i).unwrap();
///     }
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let (rx, tx) = Pipe::one_way()?;
/// let mut p = Process::new(count, (tx, 3));
/// p.start()?;
/// let got: Vec<u32> = std::iter::from_fn(|| rx.recv().ok()).collect();
/// assert_eq!(got, [0, 1, 2]); // then `Closed`: the child exited
/// # Ok(())
/// # }
/// ```
pub struct PipeReader<T> {
    pub(super) inner: Arc<Inner>,
    pub(super) _items: PhantomData<fn(T) -> T>,
}

/// The sending end of a one-way pipe ([`Pipe::one_way`](crate::Pipe::one_way)): it has no `recv`.
/// Otherwise as [`Connection`].
///
/// ```
/// let (rx, tx) = multiproc::Pipe::one_way()?;
/// tx.send(&'x')?;
/// assert_eq!(rx.recv()?, 'x');
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct PipeWriter<T> {
    pub(super) inner: Arc<Inner>,
    pub(super) _items: PhantomData<fn(T) -> T>,
}

impl<T> Connection<T> {
    pub(super) fn from_inner(inner: Arc<Inner>) -> Self {
        Connection {
            inner,
            _items: PhantomData,
        }
    }

    /// A connection over a connected stream socket (Unix or TCP) that a
    /// [`Listener`](crate::Listener) accepted or a
    /// [`Client`](crate::Client) connected, after its handshake.
    pub(crate) fn from_socket(socket: std::os::fd::OwnedFd) -> Self {
        Connection::from_inner(Inner::new(UnixStream::from(socket)))
    }
}

/// The sending half, shared by [`Connection`] and [`PipeWriter`].
macro_rules! send_methods {
    ($ty:ident, $new:literal) => {
        impl<T: Serialize> $ty<T> {
            /// Sends `value` as one message. Blocks only while the socket's
            /// buffer is full (the receiver is not reading).
            ///
            /// A value that cannot be encoded is [`SendError::Encode`] and
            /// nothing is sent. Every copy of the other end closed is
            /// [`SendError::Closed`].
            ///
            /// ```
            #[doc = concat!("let (rx, tx) = ", "multiproc::Pipe::", $new, "()?;")]
            /// tx.send(&vec![1, 2])?;
            /// tx.send(&vec![])?; // an empty message is a message
            /// assert_eq!(rx.recv()?, [1, 2]);
            /// assert_eq!(rx.recv()?, Vec::<i32>::new());
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn send(&self, value: &T) -> Result<(), SendError> {
                self.inner.send(value)
            }
        }

        impl<T> $ty<T> {
            /// Sends `bytes` as one raw message (Python's `send_bytes`): the
            /// receiver gets exactly these bytes from `recv_bytes`, or
            /// decodes them as `T` with `recv`.
            ///
            /// ```
            #[doc = concat!("let (rx, tx) = ", "multiproc::Pipe::<()>::", $new, "()?;")]
            /// tx.send_bytes(b"ab")?;
            /// tx.send_bytes(b"c")?;
            /// assert_eq!(rx.recv_bytes()?, b"ab"); // boundaries kept
            /// assert_eq!(rx.recv_bytes()?, b"c");
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), SendError> {
                self.inner.send_bytes(bytes)
            }

            /// Sends a duplicate of `fd` (any open descriptor: a file, a
            /// socket, a pipe), which the other end takes with `recv_handle`
            /// (Python's `multiprocessing.reduction.send_handle`, byte for
            /// byte: one byte outside any message, the descriptor attached
            /// with `SCM_RIGHTS`). `fd` stays open here.
            ///
            /// Only a Unix-socket connection carries descriptors: over TCP
            /// this is [`SendError::HandlesNeedUnixSocket`].
            ///
            /// ```
            /// use std::io::{Read, Seek, Write};
            /// use std::os::fd::AsFd;
            #[doc = concat!("let (rx, tx) = ", "multiproc::Pipe::<()>::", $new, "()?;")]
            /// let path = std::env::temp_dir().join(format!("send-handle-{}", std::process::id()));
            /// let mut file = std::fs::File::options()
            ///     .read(true).write(true).create(true).truncate(true).open(&path)?;
            /// std::fs::remove_file(&path)?;
            /// file.write_all(b"hello")?;
            /// tx.send_handle(file.as_fd())?;
            /// let mut same = std::fs::File::from(rx.recv_handle()?);
            /// same.rewind()?; // one open file, one offset
            /// let mut text = String::new();
            /// same.read_to_string(&mut text)?;
            /// assert_eq!(text, "hello");
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn send_handle(&self, fd: BorrowedFd<'_>) -> Result<(), SendError> {
                self.inner.send_handle(fd)
            }
        }
    };
}

/// The receiving half, shared by [`Connection`] and [`PipeReader`].
macro_rules! recv_methods {
    ($ty:ident, $new:literal) => {
        impl<T: DeserializeOwned> $ty<T> {
            /// Waits for the next message and decodes it as `T`.
            ///
            /// Once every copy of the other end is closed and every message
            /// has been received, this is [`RecvError::Closed`], never a
            /// hang. Bytes that are not a `T` are [`RecvError::Decode`]; the
            /// message is consumed and the next `recv` goes on.
            ///
            /// ```
            /// use multiproc::RecvError;
            #[doc = concat!("let (rx, tx) = ", "multiproc::Pipe::", $new, "()?;")]
            /// tx.send(&1u16)?;
            /// drop(tx);
            /// assert_eq!(rx.recv()?, 1);
            /// assert!(matches!(rx.recv(), Err(RecvError::Closed)));
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn recv(&self) -> Result<T, RecvError> {
                Ok(self.inner.recv(Deadline::Forever)?)
            }

            /// Waits at most `timeout` for the next message. A message that
            /// has only partly arrived is kept for the next receive.
            ///
            /// ```
            /// use multiproc::RecvTimeoutError;
            /// use std::time::Duration;
            #[doc = concat!("let (rx, tx) = ", "multiproc::Pipe::", $new, "()?;")]
            /// let r = rx.recv_timeout(Duration::from_millis(5));
            /// assert!(matches!(r, Err(RecvTimeoutError::Timeout)));
            /// tx.send(&7u8)?;
            /// assert_eq!(rx.recv_timeout(Duration::from_secs(5))?, 7);
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
                Ok(self.inner.recv(Deadline::after(timeout))?)
            }

            /// Takes the next message if it has wholly arrived; never waits.
            ///
            /// ```
            /// use multiproc::TryRecvError;
            #[doc = concat!("let (rx, tx) = ", "multiproc::Pipe::", $new, "()?;")]
            /// assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
            /// tx.send(&true)?;
            /// assert_eq!(rx.try_recv()?, true);
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn try_recv(&self) -> Result<T, TryRecvError> {
                Ok(self.inner.recv(Deadline::now())?)
            }
        }

        impl<T> $ty<T> {
            /// Waits for the next message and returns its raw bytes
            /// (Python's `recv_bytes`), whatever sent it.
            ///
            /// ```
            #[doc = concat!("let (rx, tx) = ", "multiproc::Pipe::<()>::", $new, "()?;")]
            /// tx.send_bytes(b"")?;
            /// assert_eq!(rx.recv_bytes()?, b"");
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
                Ok(self.inner.recv_bytes(MAX_FRAME, Deadline::Forever)?)
            }

            /// Waits for a descriptor sent with `send_handle` (Python's
            /// `multiprocessing.reduction.recv_handle`) and returns it, open
            /// and close-on-exec in this process.
            ///
            /// Every copy of the other end closed is [`RecvError::Closed`];
            /// anything but one byte with one descriptor attached (a
            /// message sent with `send`, say) is [`RecvError::Io`] of kind
            /// `InvalidData`, and that byte is consumed.
            ///
            /// ```
            /// use std::os::fd::AsFd;
            #[doc = concat!("let (rx, tx) = ", "multiproc::Pipe::<()>::", $new, "()?;")]
            /// let (mut ours, theirs) = std::os::unix::net::UnixStream::pair()?;
            /// tx.send_handle(theirs.as_fd())?;
            /// drop(theirs);
            /// let got = std::os::unix::net::UnixStream::from(rx.recv_handle()?);
            /// std::io::Write::write_all(&mut ours, b"x")?;
            /// let mut byte = [0];
            /// std::io::Read::read_exact(&mut &got, &mut byte)?;
            /// assert_eq!(&byte, b"x");
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn recv_handle(&self) -> Result<OwnedFd, RecvError> {
                Ok(self.inner.recv_handle()?)
            }

            /// As [`recv_bytes`](Self::recv_bytes), but a message longer than
            /// `max_len` is an error (Python's `maxlength`):
            /// [`RecvError::Decode`] with [`CodecError::Oversized`](crate::CodecError::Oversized). That
            /// message is dropped as it arrives, never held in memory, and
            /// the next receive gets the message after it.
            ///
            /// ```
            /// use multiproc::{CodecError, RecvError};
            #[doc = concat!("let (rx, tx) = ", "multiproc::Pipe::<()>::", $new, "()?;")]
            /// tx.send_bytes(&[0; 100])?;
            /// tx.send_bytes(b"ok")?;
            /// let r = rx.recv_bytes_max(10);
            /// assert!(matches!(r, Err(RecvError::Decode(CodecError::Oversized { len: 100, .. }))));
            /// assert_eq!(rx.recv_bytes_max(10)?, b"ok");
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn recv_bytes_max(&self, max_len: usize) -> Result<Vec<u8>, RecvError> {
                let max = (max_len as u64).min(MAX_FRAME);
                Ok(self.inner.recv_bytes(max, Deadline::Forever)?)
            }

            /// Whether a receive would return at once: a whole message has
            /// arrived, or the receive would fail at once (closed, bad
            /// bytes). Answers immediately (Python's `poll()`).
            ///
            /// ```
            #[doc = concat!("let (rx, tx) = ", "multiproc::Pipe::<()>::", $new, "()?;")]
            /// assert!(!rx.poll());
            /// tx.send_bytes(b"x")?;
            /// assert!(rx.poll());
            /// assert!(rx.poll()); // level-triggered: still there
            /// rx.recv_bytes()?;
            /// assert!(!rx.poll());
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn poll(&self) -> bool {
                self.inner.poll(Deadline::now())
            }

            /// Waits at most `timeout` until [`poll`](Self::poll) would be
            /// true (Python's `poll(timeout)`); returns whether it is.
            ///
            /// ```
            /// use std::time::Duration;
            #[doc = concat!("let (rx, tx) = ", "multiproc::Pipe::<()>::", $new, "()?;")]
            /// assert!(!rx.poll_timeout(Duration::from_millis(5)));
            /// drop(tx);
            /// assert!(rx.poll_timeout(Duration::from_secs(5))); // `recv` would say `Closed`
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn poll_timeout(&self, timeout: Duration) -> bool {
                self.inner.poll(Deadline::after(timeout))
            }

            /// For `wait`: readiness now, without blocking.
            pub(crate) fn ready_now(&self) -> bool {
                self.inner.poll(Deadline::now())
            }

            /// For `wait`: the socket to poll, kept open while it is used
            /// (`None` once closed).
            pub(crate) fn wait_stream(&self) -> Option<Arc<UnixStream>> {
                self.inner.wait_stream()
            }
        }
    };
}

/// What every kind of end shares: closing, cloning, passing to a child.
macro_rules! common {
    ($ty:ident, $new:literal) => {
        impl<T> $ty<T> {
            /// Closes this handle and its clones in this process (Python's
            /// `close()`); later calls through them fail with `Closed`. The
            /// descriptor closes at once unless another thread is in a call
            /// on it (then when that call returns). Other processes' copies
            /// are unaffected. Dropping the last clone closes too.
            ///
            /// ```
            #[doc = concat!("let (rx, tx) = ", "multiproc::Pipe::<()>::", $new, "()?;")]
            /// assert!(!tx.is_closed());
            /// tx.close();
            /// assert!(tx.is_closed());
            /// assert!(matches!(rx.recv_bytes(), Err(multiproc::RecvError::Closed)));
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn close(&self) {
                self.inner.close()
            }

            /// Whether [`close`](Self::close) was called on this handle or a
            /// clone of it (Python's `closed`).
            ///
            /// ```
            #[doc = concat!("let (rx, _tx) = ", "multiproc::Pipe::<()>::", $new, "()?;")]
            /// let copy = rx.clone();
            /// rx.close();
            /// assert!(copy.is_closed());
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn is_closed(&self) -> bool {
                self.inner.is_closed()
            }
        }

        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty {
                    inner: self.inner.clone(),
                    _items: PhantomData,
                }
            }
        }

        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.inner.fmt(stringify!($ty), f)
            }
        }

        /// Wraps one end of a connected Unix stream socket; the other end
        /// must speak the same frames (another multiproc pipe end, Python's
        /// `multiprocessing.connection.Connection`, or code writing a
        /// 4-byte big-endian length before each message).
        ///
        /// ```
        /// use std::os::unix::net::UnixStream;
        #[doc = concat!("use multiproc::", stringify!($ty), ";")]
        /// let (a, b) = UnixStream::pair()?;
        #[doc = concat!("let end: ", stringify!($ty), "<u8> = a.into();")]
        #[doc = concat!("let other: ", stringify!($ty), "<u8> = b.into();")]
        /// assert!(!end.is_closed() && !other.is_closed());
        /// # Ok::<(), std::io::Error>(())
        /// ```
        impl<T> From<UnixStream> for $ty<T> {
            fn from(stream: UnixStream) -> Self {
                $ty {
                    inner: Inner::new(stream),
                    _items: PhantomData,
                }
            }
        }

        /// A handle serializes only while [`Process::start`](crate::Process::start)
        /// encodes a worker's arguments, or a [`Pool`](crate::Pool) a task's
        /// or an initializer's: its descriptor travels to the child with
        /// `SCM_RIGHTS`. Anywhere else serializing it is an error that says
        /// so.
        impl<T> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.inner.serialize(serializer)
            }
        }

        impl<'de, T> Deserialize<'de> for $ty<T> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Ok($ty {
                    inner: Inner::deserialize(deserializer)?,
                    _items: PhantomData,
                })
            }
        }
    };
}

send_methods!(Connection, "new");
recv_methods!(Connection, "new");
common!(Connection, "new");
send_methods!(PipeWriter, "one_way");
recv_methods!(PipeReader, "one_way");
common!(PipeReader, "one_way");
common!(PipeWriter, "one_way");

impl<T> Sealed for Connection<T> {}

/// Ready while a whole message (or an error such as `Closed`) waits for
/// `recv`.
impl<T> Waitable for Connection<T> {
    fn wait_fd(&self) -> Option<WaitFd<'_>> {
        self.wait_stream().map(WaitFd::stream)
    }

    fn ready_now(&self) -> bool {
        Connection::ready_now(self)
    }
}

impl<T> Sealed for PipeReader<T> {}

/// Ready while a whole message (or an error such as `Closed`) waits for
/// `recv`.
impl<T> Waitable for PipeReader<T> {
    fn wait_fd(&self) -> Option<WaitFd<'_>> {
        self.wait_stream().map(WaitFd::stream)
    }

    fn ready_now(&self) -> bool {
        PipeReader::ready_now(self)
    }
}
