//! `Pipe`: typed two-way (or one-way) connections between processes,
//! Python's `multiprocessing.Pipe`.
//!
//! A pipe is a close-on-exec `SOCK_STREAM` socketpair carrying CPython's
//! frames (`multiprocessing.connection`): a 4-byte big-endian signed length,
//! then the body; a body longer than `i32::MAX` bytes has the length -1, then
//! an 8-byte big-endian length. A typed message's body is its postcard
//! encoding. So every connection, a pipe's or one that a
//! [`Listener`](crate::Listener) accepted, exchanges `send_bytes` and
//! `recv_bytes` with Python byte for byte. A receive never reads past the
//! frame in progress (its header, then exactly its body), so the next frame
//! stays in the socket for whichever process holding the end reads it, and
//! a timeout in the middle of a frame loses nothing: the part read waits in
//! the handle for the rest. `poll` takes nothing: it peeks the header and
//! counts the bytes queued. Descriptors (handles inside a message,
//! `send_handle`) travel with the first byte of their frame. A send is one
//! `sendmsg` (header and body together) under a per-handle mutex, so sends
//! from several threads never interleave.

use crate::codec::{self, CodecError, MAX_FRAME};
use crate::error::Error;
use crate::handles;
use crate::sys::fdpass::{self, CmsgSpace};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// Length of a frame header: a big-endian `i32` (Python's `struct.pack("!i", n)`).
const SHORT: usize = 4;
/// Length of the header of a body longer than `i32::MAX` bytes: -1, then a
/// big-endian `u64` (Python's `"!i"` -1, then `"!Q"` n).
const LONG: usize = 12;
/// The most a body buffer grows by before that much has arrived.
const INITIAL_BUF: usize = 64 * 1024;
/// A body buffer larger than this is freed once its frame is delivered.
const KEEP_BUF: usize = 4 << 20;

/// Creates pipes: Python's `multiprocessing.Pipe()`.
///
/// [`Pipe::new`] gives two [`Connection`]s, each of which can send and
/// receive; [`Pipe::one_way`] gives a [`PipeReader`] and a [`PipeWriter`]
/// (Python's `Pipe(duplex=False)`), and the wrong end cannot send or receive:
/// it has no such method. Messages are values of `T`, encoded with postcard;
/// message boundaries are kept.
///
/// ```
/// use multiproc::{Connection, Pipe, Process, worker};
///
/// #[worker]
/// fn double(conn: Connection<u64>) {
///     while let Ok(n) = conn.recv() {
///         conn.send(&(n * 2)).unwrap();
///     }
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let (here, there) = Pipe::new()?;
/// let mut p = Process::new(double, (there,)); // moved: the parent keeps no copy
/// p.start()?;
/// here.send(&21)?;
/// assert_eq!(here.recv()?, 42);
/// drop(here); // the child's `recv` now fails with `Closed`, and it returns
/// assert_eq!(p.join()?, 0);
/// # Ok(())
/// # }
/// ```
///
/// `Pipe<T>` only names the constructors; it has no values.
pub struct Pipe<T> {
    _items: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Pipe<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pipe")
    }
}

impl<T> Pipe<T> {
    /// A duplex pipe: two connected [`Connection`]s (Python's `Pipe()`).
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe::new()?;
    /// a.send(&"ping".to_string())?;
    /// assert_eq!(b.recv()?, "ping");
    /// b.send(&"pong".to_string())?;
    /// assert_eq!(a.recv()?, "pong");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    // Python's `Pipe()` returns a pair; so does `UnixStream::pair`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> crate::Result<(Connection<T>, Connection<T>)> {
        let (a, b) = Inner::pair()?;
        Ok((Connection::from_inner(a), Connection::from_inner(b)))
    }

    /// A one-way pipe: `(reader, writer)`, in the order of Python's
    /// `Pipe(duplex=False)` and of `std::io::pipe`.
    ///
    /// ```
    /// let (rx, tx) = multiproc::Pipe::one_way()?;
    /// tx.send(&[1u8, 2, 3])?;
    /// assert_eq!(rx.recv()?, [1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// The reader cannot send, and the writer cannot receive:
    ///
    /// ```compile_fail
    /// let (rx, _tx) = multiproc::Pipe::<u8>::one_way()?;
    /// rx.send(&1)?; // no method `send` on `PipeReader`
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// ```compile_fail
    /// let (_rx, tx) = multiproc::Pipe::<u8>::one_way()?;
    /// let _ = tx.recv()?; // no method `recv` on `PipeWriter`
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn one_way() -> crate::Result<(PipeReader<T>, PipeWriter<T>)> {
        let (a, b) = Inner::pair()?;
        Ok((
            PipeReader {
                inner: a,
                _items: PhantomData,
            },
            PipeWriter {
                inner: b,
                _items: PhantomData,
            },
        ))
    }
}

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

/// Why [`recv_timeout`](Connection::recv_timeout) failed.
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

/// Why [`try_recv`](Connection::try_recv) failed.
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
            RecvTimeoutError::Timeout => Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "timed out waiting on a pipe",
            )),
            RecvTimeoutError::Closed => Error::Closed,
            RecvTimeoutError::Decode(e) => Error::Codec(e),
            RecvTimeoutError::Io(e) => Error::Io(e),
        }
    }
}

impl From<TryRecvError> for Error {
    fn from(e: TryRecvError) -> Self {
        match e {
            TryRecvError::Empty => Error::Io(io::Error::new(
                io::ErrorKind::WouldBlock,
                "no message is ready on the pipe",
            )),
            TryRecvError::Closed => Error::Closed,
            TryRecvError::Decode(e) => Error::Codec(e),
            TryRecvError::Io(e) => Error::Io(e),
        }
    }
}

/// Why a receive failed, before it is told apart per operation.
enum Fail {
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

/// When a receive gives up.
#[derive(Clone, Copy)]
enum Deadline {
    Forever,
    At(Instant),
}

impl Deadline {
    fn now() -> Deadline {
        Deadline::At(Instant::now())
    }

    fn after(timeout: Duration) -> Deadline {
        Instant::now()
            .checked_add(timeout)
            .map_or(Deadline::Forever, Deadline::At)
    }

    /// Time left: `None` forever, `Err(Timeout)` once passed.
    fn remaining(self) -> Result<Option<Duration>, Fail> {
        match self {
            Deadline::Forever => Ok(None),
            Deadline::At(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Ok(Some(left)),
                _ => Err(Fail::Timeout),
            },
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until `fd` is readable or `timeout` passes, by
/// [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html).
fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    let timeout = match timeout {
        None => PollTimeout::NONE,
        // Round up, so a short wait does not spin at zero.
        Some(t) => PollTimeout::try_from(t.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX),
    };
    match nix::poll::poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], timeout) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The header of a body of `len` bytes, as Python writes it: the bytes, and
/// how many of them are used.
fn frame_header(len: u64) -> ([u8; LONG], usize) {
    let mut header = [0u8; LONG];
    match i32::try_from(len) {
        Ok(short) => {
            header[..SHORT].copy_from_slice(&short.to_be_bytes());
            (header, SHORT)
        }
        Err(_) => {
            header[..SHORT].copy_from_slice(&(-1i32).to_be_bytes());
            header[SHORT..].copy_from_slice(&len.to_be_bytes());
            (header, LONG)
        }
    }
}

/// What the first bytes of a frame say.
enum Header {
    /// At least this many bytes are needed to read the header.
    Incomplete(usize),
    /// A header of `size` bytes announcing a body of `len` bytes.
    Whole { size: usize, len: u64 },
    /// A negative length other than -1: not a frame.
    Negative(i32),
}

fn parse_header(bytes: &[u8]) -> Header {
    let Some(short) = bytes.first_chunk::<SHORT>() else {
        return Header::Incomplete(SHORT);
    };
    match i32::from_be_bytes(*short) {
        n if n >= 0 => Header::Whole {
            size: SHORT,
            len: n as u64,
        },
        -1 => match bytes.get(SHORT..LONG) {
            Some(long) => Header::Whole {
                size: LONG,
                len: u64::from_be_bytes(long.try_into().expect("8 bytes")),
            },
            None => Header::Incomplete(LONG),
        },
        n => Header::Negative(n),
    }
}

/// A header that no frame may have: the stream is out of step.
#[derive(Clone, Copy)]
enum Bad {
    /// It announces more than any frame may hold.
    Oversized(u64),
    /// It announces a negative length other than -1.
    Negative(i32),
}

impl Bad {
    fn error(self) -> CodecError {
        match self {
            Bad::Oversized(len) => CodecError::Oversized {
                len,
                limit: MAX_FRAME,
            },
            Bad::Negative(n) => CodecError::Corrupt {
                type_name: "a frame header",
                reason: format!("the peer announced a negative length, {n}"),
            },
        }
    }
}

/// The frame being received, as far as it has arrived. Reads never go past
/// the end of the frame in progress: the socket may be shared with other
/// processes (a handle passed to a child while the parent keeps a copy), and
/// whenever this handle holds no part of a frame the socket is at a frame
/// boundary for whoever reads next. The body grows only with bytes actually
/// received, so a lying header costs at most what the peer really sends.
#[derive(Default)]
struct RecvState {
    /// The header's bytes received so far.
    head: Vec<u8>,
    /// The body's bytes received so far (reused between frames).
    body: Vec<u8>,
    /// Descriptors that came with the frame's bytes.
    fds: Vec<OwnedFd>,
    /// Descriptors were lost in transit (`MSG_CTRUNC`) during this frame.
    lost: bool,
    /// The stream held a header no frame may have: every receive fails.
    poisoned: Option<Bad>,
    /// The peer closed its end (every copy of it).
    eof: bool,
    /// Bytes still to drop of a frame refused by `recv_bytes_max`.
    skip: u64,
    /// `recvmsg`'s control buffer, made at the first read.
    space: Option<CmsgSpace>,
}

/// What [`RecvState::ready`] found.
enum Readiness {
    /// A receive would return at once.
    Ready,
    /// It would wait; `queued`: bytes of an unfinished frame wait in the
    /// socket (so readability says nothing).
    Waiting { queued: bool },
}

impl RecvState {
    fn header(&self) -> Header {
        parse_header(&self.head)
    }

    /// Forgets the frame in progress (its descriptors close).
    fn reset(&mut self) {
        self.head.clear();
        if self.body.capacity() > KEEP_BUF {
            self.body = Vec::new();
        } else {
            self.body.clear();
        }
        self.fds.clear();
        self.lost = false;
    }

    /// Reads once, at most `max` bytes, appending to `head` or `body`
    /// (`into_body`), which has room: blocking without deadline, else
    /// without blocking and then polling until the deadline. Descriptors
    /// that come are kept with the frame.
    fn read(
        &mut self,
        fd: BorrowedFd<'_>,
        into_body: bool,
        max: usize,
        deadline: Deadline,
    ) -> Result<usize, Fail> {
        let space = self.space.get_or_insert_with(CmsgSpace::new);
        let buf = if into_body {
            &mut self.body
        } else {
            &mut self.head
        };
        let fds = &mut self.fds;
        loop {
            let wait = matches!(deadline, Deadline::Forever);
            match fdpass::recv_append(fd, buf, max, wait, space, |fd| fds.push(fd)) {
                Ok((0, _)) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok((n, lost)) => {
                    self.lost |= lost;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.remaining()?;
                    wait_readable(fd, left).map_err(Fail::Io)?;
                }
                Err(e) => return Err(Fail::Io(e)),
            }
        }
    }

    /// Drops what is left of a refused frame as it arrives.
    fn drain_skip(&mut self, fd: BorrowedFd<'_>, deadline: Deadline) -> Result<(), Fail> {
        while self.skip > 0 && !self.eof {
            self.body.clear();
            let step = self.skip.min(INITIAL_BUF as u64) as usize;
            self.body.reserve(step);
            let n = self.read(fd, true, step, deadline)?;
            self.skip -= n as u64;
            self.reset();
        }
        self.skip = 0;
        Ok(())
    }

    /// The end of the stream came in the middle of a frame (or of nothing).
    fn cut_short(&mut self) -> Fail {
        let fail = match self.header() {
            Header::Incomplete(_) if self.head.is_empty() => Fail::Closed,
            Header::Incomplete(need) => truncated(need as u64, self.head.len()),
            Header::Whole { len, .. } => truncated(len, self.body.len()),
            // Poisoned before the end was seen.
            Header::Negative(_) => Fail::Closed,
        };
        self.reset();
        fail
    }

    /// Refuses the frame in progress (its body is `len` bytes): the rest of
    /// it is dropped as it arrives.
    fn refuse(&mut self, len: u64, max: u64) -> Fail {
        self.skip = len - self.body.len() as u64;
        self.reset();
        Fail::Decode(CodecError::Oversized { len, limit: max })
    }

    fn poison(&mut self, bad: Bad) -> Fail {
        self.poisoned = Some(bad);
        self.reset();
        Fail::Decode(bad.error())
    }

    /// Receives until the frame in progress, of at most `max` bytes, is
    /// whole in `head`, `body` and `fds`.
    fn next_frame(&mut self, fd: BorrowedFd<'_>, max: u64, deadline: Deadline) -> Result<(), Fail> {
        loop {
            if let Some(bad) = self.poisoned {
                return Err(Fail::Decode(bad.error()));
            }
            self.drain_skip(fd, deadline)?;
            match self.header() {
                Header::Incomplete(need) => {
                    if self.eof {
                        return Err(self.cut_short());
                    }
                    self.head.reserve_exact(LONG);
                    self.read(fd, false, need - self.head.len(), deadline)?;
                }
                Header::Negative(n) => return Err(self.poison(Bad::Negative(n))),
                Header::Whole { len, .. } if len > MAX_FRAME || usize::try_from(len).is_err() => {
                    return Err(self.poison(Bad::Oversized(len)));
                }
                Header::Whole { len, .. } if len > max => return Err(self.refuse(len, max)),
                Header::Whole { len, .. } => {
                    let (len, have) = (len as usize, self.body.len());
                    if have == len {
                        return Ok(());
                    }
                    if self.eof {
                        return Err(self.cut_short());
                    }
                    if self.body.capacity() == have {
                        // Grow with the data received, by at most doubling.
                        let step = (len - have).min(have.max(INITIAL_BUF));
                        if self.body.try_reserve_exact(step).is_err() {
                            self.skip = (len - have) as u64;
                            self.reset();
                            return Err(Fail::Io(io::ErrorKind::OutOfMemory.into()));
                        }
                    }
                    self.read(fd, true, len - have, deadline)?;
                }
            }
        }
    }

    /// Whether a receive would return at once, found without taking a byte
    /// of a frame not begun out of the socket (other processes may read
    /// it): the header is peeked (`MSG_PEEK`), and the bytes waiting are
    /// counted (`FIONREAD`). Only the rest of a frame this handle refused is
    /// read, and dropped.
    fn ready(&mut self, fd: BorrowedFd<'_>) -> Readiness {
        if self.poisoned.is_some() || self.eof {
            return Readiness::Ready;
        }
        match self.drain_skip(fd, Deadline::now()) {
            Ok(()) if self.eof => return Readiness::Ready,
            Ok(()) => {}
            Err(Fail::Timeout) => return Readiness::Waiting { queued: false },
            Err(_) => return Readiness::Ready,
        }
        let Ok(queued) = fdpass::queued(fd) else {
            return Readiness::Ready; // a receive would fail
        };
        let missing = match self.header() {
            Header::Negative(_) => return Readiness::Ready,
            Header::Whole { len, .. } if len > MAX_FRAME => return Readiness::Ready,
            Header::Whole { len, .. } => len - self.body.len() as u64,
            Header::Incomplete(_) => {
                let mut head = [0u8; LONG];
                let have = self.head.len();
                head[..have].copy_from_slice(&self.head);
                let peeked = loop {
                    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
                    match socket::recv(fd.as_raw_fd(), &mut head[have..], flags) {
                        Ok(n) => break n,
                        Err(Errno::EINTR) => {}
                        Err(Errno::EAGAIN) => return Readiness::Waiting { queued: false },
                        // A receive would see the end, or fail.
                        Err(_) => return Readiness::Ready,
                    }
                };
                if peeked == 0 {
                    return Readiness::Ready; // the end: `Closed` or truncated
                }
                match parse_header(&head[..have + peeked]) {
                    Header::Whole { size, len } if len <= MAX_FRAME => (size - have) as u64 + len,
                    Header::Whole { .. } | Header::Negative(_) => return Readiness::Ready,
                    // A peek stops at bytes that carry descriptors: with more
                    // queued than a header, a receive goes on at once.
                    Header::Incomplete(_) if queued >= LONG - have => return Readiness::Ready,
                    Header::Incomplete(_) => u64::MAX,
                }
            }
        };
        if queued as u64 >= missing || peer_closed(fd) {
            Readiness::Ready
        } else {
            Readiness::Waiting { queued: queued > 0 }
        }
    }
}

/// Whether the peer has closed its end (so a frame cut short never ends).
fn peer_closed(fd: BorrowedFd<'_>) -> bool {
    let mut polled = [PollFd::new(
        fd,
        PollFlags::from_bits_retain(libc::POLLRDHUP),
    )];
    match nix::poll::poll(&mut polled, PollTimeout::ZERO) {
        Ok(_) => polled[0].revents().is_some_and(|r| {
            r.intersects(PollFlags::from_bits_retain(libc::POLLRDHUP) | PollFlags::POLLHUP)
        }),
        Err(_) => true,
    }
}

fn truncated(expected: u64, got: usize) -> Fail {
    Fail::Decode(CodecError::Truncated {
        expected,
        got: got as u64,
    })
}

/// One end of a pipe, shared by the clones of a handle in this process.
struct Inner {
    /// `None` once closed. Calls clone the `Arc`, so `close` never waits for
    /// a call in flight; the descriptor closes when the last of them ends.
    stream: Mutex<Option<Arc<UnixStream>>>,
    /// Serialises sends, so frames from several threads never interleave.
    send: Mutex<()>,
    recv: Mutex<RecvState>,
    /// A Unix socket, which carries descriptors (TCP does not).
    unix: bool,
}

impl Inner {
    fn new(stream: UnixStream) -> Arc<Inner> {
        let unix = socket::getsockname::<socket::SockaddrStorage>(stream.as_raw_fd())
            .map(|a| a.as_unix_addr().is_some())
            .unwrap_or(false);
        Arc::new(Inner {
            stream: Mutex::new(Some(Arc::new(stream))),
            send: Mutex::new(()),
            recv: Mutex::new(RecvState::default()),
            unix,
        })
    }

    fn pair() -> io::Result<(Arc<Inner>, Arc<Inner>)> {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((
            Inner::new(UnixStream::from(a)),
            Inner::new(UnixStream::from(b)),
        ))
    }

    fn stream(&self) -> Option<Arc<UnixStream>> {
        lock(&self.stream).clone()
    }

    fn close(&self) {
        lock(&self.stream).take();
    }

    fn is_closed(&self) -> bool {
        lock(&self.stream).is_none()
    }

    /// Writes `parts` as one stream of bytes: one `sendmsg` when the socket
    /// has room, with `MSG_NOSIGNAL` so a closed peer is an error, not a
    /// signal.
    fn write(&self, parts: &mut [IoSlice<'_>]) -> Result<(), SendError> {
        let stream = self.stream().ok_or(SendError::Closed)?;
        let _serial = lock(&self.send);
        write_all(&stream, parts)
    }

    fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        codec::with_scratch(|frame| {
            // Room for the longer header; the frame starts where its header does.
            frame.extend_from_slice(&[0; LONG]);
            // The handles inside `value` give their descriptors to `fds`.
            let (encoded, fds) = handles::collecting(|| codec::encode_into(value, frame));
            encoded.map_err(SendError::Encode)?;
            let len = (frame.len() - LONG) as u64;
            check_len(len)?;
            let (header, size) = frame_header(len);
            let at = LONG - size;
            frame[at..LONG].copy_from_slice(&header[..size]);
            if fds.is_empty() {
                self.write(&mut [IoSlice::new(&frame[at..])])
            } else {
                self.write_with_fds(&frame[at..], &fds, std::any::type_name::<T>())
            }
        })
    }

    /// Writes `bytes` with `fds` attached to their first byte, so that they
    /// reach the receiver with the frame that names them.
    fn write_with_fds(
        &self,
        bytes: &[u8],
        fds: &[OwnedFd],
        type_name: &'static str,
    ) -> Result<(), SendError> {
        if !self.unix {
            return Err(SendError::HandlesNeedUnixSocket);
        }
        if fds.len() > fdpass::MAX_FDS_PER_MESSAGE {
            return Err(SendError::Encode(CodecError::Unencodable {
                type_name,
                reason: format!(
                    "it holds handles of {} descriptors; one message carries at most {}",
                    fds.len(),
                    fdpass::MAX_FDS_PER_MESSAGE
                ),
            }));
        }
        let stream = self.stream().ok_or(SendError::Closed)?;
        let _serial = lock(&self.send);
        let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let rights = [socket::ControlMessage::ScmRights(&raw)];
        let sent = loop {
            let iov = [IoSlice::new(bytes)];
            match socket::sendmsg::<()>(
                stream.as_raw_fd(),
                &iov,
                &rights,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => break n,
                Err(Errno::EINTR) => {}
                Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(SendError::Closed),
                Err(e) => return Err(SendError::Io(e.into())),
            }
        };
        // The descriptors went with the first byte; the rest is plain.
        write_all(&stream, &mut [IoSlice::new(&bytes[sent..])])
    }

    /// Python's `reduction.send_handle`: one byte (the count of
    /// descriptors, 1) outside any frame, with `fd` attached.
    fn send_handle(&self, fd: BorrowedFd<'_>) -> Result<(), SendError> {
        if !self.unix {
            return Err(SendError::HandlesNeedUnixSocket);
        }
        let dup = fd.try_clone_to_owned().map_err(SendError::Io)?;
        self.write_with_fds(&[1], &[dup], "OwnedFd")
    }

    fn send_bytes(&self, body: &[u8]) -> Result<(), SendError> {
        let len = body.len() as u64;
        check_len(len)?;
        let (header, size) = frame_header(len);
        self.write(&mut [IoSlice::new(&header[..size]), IoSlice::new(body)])
    }

    /// Takes the receive lock, waiting at most until `deadline` for another
    /// thread's receive to end.
    fn lock_recv(&self, deadline: Deadline) -> Result<MutexGuard<'_, RecvState>, Fail> {
        if let Deadline::Forever = deadline {
            return Ok(lock(&self.recv));
        }
        let mut pause = Duration::from_micros(50);
        loop {
            match self.recv.try_lock() {
                Ok(guard) => return Ok(guard),
                Err(TryLockError::Poisoned(e)) => return Ok(e.into_inner()),
                Err(TryLockError::WouldBlock) => {
                    let left = deadline.remaining()?;
                    std::thread::sleep(pause.min(left.unwrap_or(pause)));
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
            }
        }
    }

    fn recv<T: DeserializeOwned>(&self, deadline: Deadline) -> Result<T, Fail> {
        let mut state = self.lock_recv(deadline)?;
        let stream = self.stream().ok_or(Fail::Closed)?;
        state.next_frame(stream.as_fd(), MAX_FRAME, deadline)?;
        if state.lost {
            state.reset();
            return Err(Fail::Io(io::Error::other(
                "the descriptors that came with the message were lost (this process's \
                 descriptor table is full?); the message was dropped",
            )));
        }
        let fds = std::mem::take(&mut state.fds);
        // The handles inside take their descriptors; the rest close.
        let value = handles::decode_with_fds(&state.body, fds);
        state.reset();
        value.map_err(Fail::Decode)
    }

    /// Python's `reduction.recv_handle`: the one byte `send_handle` wrote,
    /// and the descriptor that came with it.
    fn recv_handle(&self) -> Result<OwnedFd, Fail> {
        let mut state = self.lock_recv(Deadline::Forever)?;
        let stream = self.stream().ok_or(Fail::Closed)?;
        if !state.head.is_empty() || state.skip > 0 {
            return Err(Fail::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "recv_handle in the middle of a message (a receive timed out half-way)",
            )));
        }
        if state.eof {
            return Err(Fail::Closed);
        }
        state.head.reserve_exact(LONG);
        let n = state.read(stream.as_fd(), false, 1, Deadline::Forever)?;
        let byte = state.head.first().copied();
        let lost = state.lost;
        let mut fds = std::mem::take(&mut state.fds);
        state.reset();
        if n == 0 {
            return Err(Fail::Closed);
        }
        match (byte, fds.len(), lost) {
            (Some(1), 1, false) => Ok(fds.pop().expect("one descriptor")),
            _ => Err(Fail::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "expected one descriptor sent by send_handle, got the byte {byte:?} with {} \
                     descriptor(s){}",
                    fds.len(),
                    if lost { " (some lost)" } else { "" }
                ),
            ))),
        }
    }

    fn recv_bytes(&self, max: u64, deadline: Deadline) -> Result<Vec<u8>, Fail> {
        let mut state = self.lock_recv(deadline)?;
        let stream = self.stream().ok_or(Fail::Closed)?;
        state.next_frame(stream.as_fd(), max, deadline)?;
        let body = std::mem::take(&mut state.body);
        state.reset();
        Ok(body)
    }

    /// Whether a receive would return before `deadline`: a whole message is
    /// (or becomes) available, or the receive would fail at once. Takes no
    /// byte of a message out of the socket.
    fn poll(&self, deadline: Deadline) -> bool {
        let Ok(mut state) = self.lock_recv(deadline) else {
            return false; // another thread is receiving
        };
        let Some(stream) = self.stream() else {
            return true; // closed: a receive fails at once
        };
        let mut pause = Duration::from_micros(50);
        loop {
            let queued = match state.ready(stream.as_fd()) {
                Readiness::Ready => return true,
                Readiness::Waiting { queued } => queued,
            };
            let Ok(left) = deadline.remaining() else {
                return false;
            };
            if queued {
                // The socket stays readable with part of a frame in it:
                // look again, more and more slowly.
                std::thread::sleep(pause.min(left.unwrap_or(pause)));
                pause = (pause * 2).min(Duration::from_millis(5));
            } else if wait_readable(stream.as_fd(), left).is_err() {
                return true;
            }
        }
    }

    /// For `wait`: the socket to poll, unless bytes of an unfinished frame
    /// wait in it (it then polls readable while no message is ready, and
    /// `wait` must look again after a while instead).
    fn wait_stream(&self) -> Option<Arc<UnixStream>> {
        let stream = self.stream()?;
        match fdpass::queued(stream.as_fd()) {
            Ok(0) => Some(stream),
            _ => None,
        }
    }

    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let stream = self.stream().ok_or_else(|| {
            codec::custom_ser_error::<S::Error>(
                "a closed connection cannot be sent to a child".to_string(),
            )
        })?;
        handles::export_fd::<S::Error>(stream.as_fd())?.serialize(serializer)
    }

    fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<Inner>, D::Error> {
        let index = u32::deserialize(deserializer)?;
        let fd = handles::import_fd::<D::Error>(index)?;
        Ok(Inner::new(UnixStream::from(fd)))
    }

    fn fmt(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("fd", &self.stream().map(|s| s.as_raw_fd()))
            .finish()
    }
}

/// Writes `parts` to `stream` (the send lock held) as one stream of bytes:
/// one `sendmsg` when the socket has room, with `MSG_NOSIGNAL` so a closed
/// peer is an error, not a signal.
fn write_all(stream: &UnixStream, parts: &mut [IoSlice<'_>]) -> Result<(), SendError> {
    let mut parts = parts;
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        let fd = stream.as_raw_fd();
        let sent = match parts {
            // `send` is cheaper than `sendmsg` for one buffer.
            [one] => socket::send(fd, one, MsgFlags::MSG_NOSIGNAL),
            _ => socket::sendmsg::<()>(fd, parts, &[], MsgFlags::MSG_NOSIGNAL, None),
        };
        match sent {
            Ok(n) => IoSlice::advance_slices(&mut parts, n),
            Err(Errno::EINTR) => {}
            Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(SendError::Closed),
            Err(e) => return Err(SendError::Io(e.into())),
        }
    }
    Ok(())
}

fn check_len(len: u64) -> Result<(), SendError> {
    if len > MAX_FRAME {
        return Err(SendError::Encode(CodecError::Oversized {
            len,
            limit: MAX_FRAME,
        }));
    }
    Ok(())
}

/// One end of a duplex [`Pipe`]: Python's `multiprocessing.connection.Connection`,
/// typed.
///
/// Sends and receives values of `T`. Clones are cheap handles to the same
/// end; a handle passes to a child as (part of) a worker's arguments, a pool
/// task's arguments or an initializer's arguments, at any depth. The other
/// end sees [`RecvError::Closed`] once every copy of this end is closed or
/// dropped — in every process, including the parent's copy of an end it gave
/// a child; keep no copy you do not use.
///
/// Bytes this handle has already read from the socket and not yet delivered
/// stay with this process's handle when a copy is sent to a child. Two
/// processes receiving on the same end at once may split each other's
/// messages (Python's warning applies); threads of one process may share a
/// handle freely.
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
    inner: Arc<Inner>,
    _items: PhantomData<fn(T) -> T>,
}

/// The receiving end of a one-way pipe ([`Pipe::one_way`]): it has no
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
    inner: Arc<Inner>,
    _items: PhantomData<fn(T) -> T>,
}

/// The sending end of a one-way pipe ([`Pipe::one_way`]): it has no `recv`.
/// Otherwise as [`Connection`].
///
/// ```
/// let (rx, tx) = multiproc::Pipe::one_way()?;
/// tx.send(&'x')?;
/// assert_eq!(rx.recv()?, 'x');
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct PipeWriter<T> {
    inner: Arc<Inner>,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> Connection<T> {
    fn from_inner(inner: Arc<Inner>) -> Self {
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
            /// [`RecvError::Decode`] with [`CodecError::Oversized`]. That
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn raw_pair<T>() -> (Connection<T>, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (a.into(), b)
    }

    #[test]
    fn a_timeout_mid_frame_loses_nothing() {
        let (conn, mut raw) = raw_pair::<String>();
        let body = codec::encode(&"hello".to_string()).unwrap();
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        for split in [3, 4, 8] {
            raw.write_all(&frame[..split]).unwrap();
            let r = conn.recv_timeout(Duration::from_millis(5));
            assert!(matches!(r, Err(RecvTimeoutError::Timeout)), "split {split}");
            assert!(!conn.poll());
            raw.write_all(&frame[split..]).unwrap();
            assert_eq!(conn.recv_timeout(Duration::from_secs(5)).unwrap(), "hello");
        }
    }

    #[test]
    fn buffer_grows_with_data_not_with_the_header() {
        let (conn, mut raw) = raw_pair::<Vec<u8>>();
        // Announce 4 GiB (Python's long form), send 10 bytes: the buffer
        // stays small.
        raw.write_all(&(-1i32).to_be_bytes()).unwrap();
        raw.write_all(&MAX_FRAME.to_be_bytes()).unwrap();
        raw.write_all(&[0; 10]).unwrap();
        assert!(conn.recv_timeout(Duration::from_millis(20)).is_err());
        assert!(conn.inner.recv.lock().unwrap().body.capacity() <= INITIAL_BUF);
        drop(raw);
        match conn.recv() {
            Err(RecvError::Decode(CodecError::Truncated { expected, got })) => {
                assert_eq!((expected, got), (MAX_FRAME, 10));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(conn.recv(), Err(RecvError::Closed)));
    }

    #[test]
    fn frames_are_pythons_on_the_wire() {
        use std::io::Read;
        let (conn, mut raw) = raw_pair::<String>();
        conn.send_bytes(b"abc").unwrap();
        conn.send_bytes(b"").unwrap();
        conn.send(&"hi".to_string()).unwrap();
        let mut wire = [0u8; 4 + 3 + 4 + 4 + 3];
        raw.read_exact(&mut wire).unwrap();
        assert_eq!(
            wire,
            [
                0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0, 0, 0, 0, 3, 2, b'h', b'i'
            ]
        );
        // Python's reader accepts the long form for any length; so do we.
        raw.write_all(&(-1i32).to_be_bytes()).unwrap();
        raw.write_all(&3u64.to_be_bytes()).unwrap();
        raw.write_all(&[2, b'o', b'k']).unwrap();
        raw.write_all(&[0, 0, 0, 1, b'x']).unwrap();
        assert_eq!(conn.recv_timeout(Duration::from_secs(5)).unwrap(), "ok");
        assert_eq!(conn.recv_bytes().unwrap(), b"x");
    }

    #[test]
    fn the_long_header_is_written_only_past_i32_max() {
        assert_eq!(frame_header(0).1, SHORT);
        assert_eq!(frame_header(i32::MAX as u64).1, SHORT);
        assert_eq!(
            &frame_header(i32::MAX as u64).0[..SHORT],
            &[0x7f, 0xff, 0xff, 0xff]
        );
        let (header, size) = frame_header(i32::MAX as u64 + 1);
        assert_eq!(size, LONG);
        assert_eq!(header, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0]);
    }

    #[test]
    fn a_negative_length_is_a_typed_error_every_time() {
        let (conn, mut raw) = raw_pair::<Vec<u8>>();
        raw.write_all(&(-2i32).to_be_bytes()).unwrap();
        for _ in 0..2 {
            match conn.recv_timeout(Duration::from_secs(5)) {
                Err(RecvTimeoutError::Decode(CodecError::Corrupt { reason, .. })) => {
                    assert!(reason.contains("negative length, -2"), "{reason}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(conn.poll());
        assert!(matches!(
            conn.recv_bytes(),
            Err(RecvError::Decode(CodecError::Corrupt { .. }))
        ));
    }

    #[test]
    fn big_frames_take_the_direct_path_and_small_ones_follow() {
        let (a, b) = Pipe::<()>::new().unwrap();
        let big = vec![7u8; 3 << 20];
        std::thread::scope(|s| {
            s.spawn(|| {
                a.send_bytes(&big).unwrap();
                a.send_bytes(b"after").unwrap();
            });
            assert_eq!(b.recv_bytes().unwrap(), big);
            assert_eq!(b.recv_bytes().unwrap(), b"after");
        });
    }

    #[test]
    fn refused_frames_are_dropped_as_they_arrive() {
        let (a, b) = Pipe::<()>::new().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                a.send_bytes(&vec![1u8; 5 << 20]).unwrap();
                a.send_bytes(b"next").unwrap();
            });
            let r = b.recv_bytes_max(1024);
            assert!(matches!(
                r,
                Err(RecvError::Decode(CodecError::Oversized { len, limit: 1024 })) if len == 5 << 20
            ));
            assert_eq!(b.recv_bytes_max(1024).unwrap(), b"next");
            assert!(b.inner.recv.lock().unwrap().body.capacity() <= 2 * INITIAL_BUF);
        });
    }
}
