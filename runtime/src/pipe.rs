//! `Pipe`: typed two-way (or one-way) connections between processes,
//! Python's `multiprocessing.Pipe`.
//!
//! A pipe is a close-on-exec `SOCK_STREAM` socketpair carrying codec frames
//! (an 8-byte little-endian length, then the body). Every handle keeps a
//! receive buffer: a blocking `recv` reads whatever is available in one
//! syscall, and a timeout in the middle of a frame loses nothing. A send is
//! one `sendmsg` (header and body together) under a per-handle mutex, so
//! sends from several threads never interleave.

use crate::codec::{self, CodecError, MAX_FRAME};
use crate::error::Error;
use crate::handles;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::io::{self, IoSlice, Read};
use std::marker::PhantomData;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// Length of a frame header.
const HEADER: usize = 8;
/// First size of a receive buffer.
const INITIAL_BUF: usize = 64 * 1024;
/// A receive buffer larger than this is freed once empty.
const KEEP_BUF: usize = 4 << 20;
/// Read at least this much at a time (compact the buffer otherwise).
const MIN_READ: usize = 4 * 1024;
/// A blocking receive with at least this much of a frame still to come reads
/// it straight into the returned body (no buffer, no zeroing, no copy).
const BIG: usize = 256 * 1024;

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

/// What the receive buffer holds.
enum Status {
    /// A whole frame; its body is `buf[body]`.
    Frame { body: Range<usize>, len: u64 },
    /// A header announcing more than any frame may hold: the stream is out
    /// of step, and every receive fails at once.
    Poisoned(u64),
    /// `need` bytes from `start` are needed for the next step (the header,
    /// or the whole frame whose body is `len` bytes).
    Partial { need: usize, len: Option<u64> },
}

/// Where a received frame is.
enum Frame {
    Buffered(Range<usize>),
    Owned(Vec<u8>),
}

/// The bytes received and not yet consumed, `buf[start..end]`. `buf` is
/// fully initialised (safe code cannot read into spare capacity); it grows
/// only with bytes actually received, so a lying header costs at most what
/// the peer really sends.
#[derive(Default)]
struct RecvState {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The peer closed its end (every copy of it).
    eof: bool,
    /// Bytes still to drop of a frame refused by `recv_bytes_max`.
    skip: u64,
}

impl RecvState {
    fn avail(&self) -> usize {
        self.end - self.start
    }

    fn header(&self) -> u64 {
        let mut header = [0u8; HEADER];
        header.copy_from_slice(&self.buf[self.start..self.start + HEADER]);
        u64::from_le_bytes(header)
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_BUF {
                self.buf = Vec::new();
            }
        }
    }

    /// Drops what is buffered of a refused frame, then says what is left.
    fn status(&mut self) -> Status {
        if self.skip > 0 {
            let dropped = self.skip.min(self.avail() as u64);
            self.consume(dropped as usize);
            self.skip -= dropped;
            if self.skip > 0 {
                return Status::Partial { need: 1, len: None };
            }
        }
        let avail = self.avail();
        if avail < HEADER {
            return Status::Partial {
                need: HEADER,
                len: None,
            };
        }
        let len = self.header();
        let total = match usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(HEADER))
        {
            Some(total) if len <= MAX_FRAME => total,
            _ => return Status::Poisoned(len),
        };
        if avail >= total {
            Status::Frame {
                body: self.start + HEADER..self.start + total,
                len,
            }
        } else {
            Status::Partial {
                need: total,
                len: Some(len),
            }
        }
    }

    /// Makes room to read into, for `need` bytes from `start`: compacts, or
    /// grows by at most doubling.
    fn make_room(&mut self, need: usize) -> io::Result<()> {
        if self.start > 0
            && (self.buf.len() - self.start < need || self.buf.len() - self.end < MIN_READ)
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // Grow only when full: with the data received, not with the header.
        if self.end == self.buf.len() {
            let target = (self.start + need)
                .min(self.buf.len().saturating_mul(2))
                .max(INITIAL_BUF)
                .max(self.end + 1);
            self.buf
                .try_reserve_exact(target - self.buf.len())
                .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
            self.buf.resize(target, 0);
        }
        Ok(())
    }

    /// Reads once: blocking without deadline (no poll first), else without
    /// blocking and then polling until the deadline.
    fn fill(&mut self, stream: &UnixStream, need: usize, deadline: Deadline) -> Result<(), Fail> {
        self.make_room(need).map_err(Fail::Io)?;
        loop {
            let end = self.end;
            let spare = &mut self.buf[end..];
            let got = match deadline {
                Deadline::Forever => (&mut &*stream).read(spare),
                Deadline::At(_) => socket::recv(stream.as_raw_fd(), spare, MsgFlags::MSG_DONTWAIT)
                    .map_err(io::Error::from),
            };
            match got {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted => {}
                    // The peer died with data of ours unread: it is gone.
                    io::ErrorKind::ConnectionReset => {
                        self.eof = true;
                        return Ok(());
                    }
                    io::ErrorKind::WouldBlock => {
                        let left = deadline.remaining()?;
                        wait_readable(stream.as_fd(), left).map_err(Fail::Io)?;
                    }
                    _ => return Err(Fail::Io(e)),
                },
            }
        }
    }

    /// The end of the stream came in the middle of a frame (or of nothing).
    fn cut_short(&mut self) -> Fail {
        self.skip = 0;
        let avail = self.avail();
        if avail == 0 {
            return Fail::Closed;
        }
        let (expected, got) = if avail < HEADER {
            (HEADER as u64, avail as u64)
        } else {
            (self.header(), (avail - HEADER) as u64)
        };
        self.consume(avail);
        Fail::Decode(CodecError::Truncated { expected, got })
    }

    /// Refuses the frame at `start` (its body is `len` bytes): it is dropped
    /// as it arrives.
    fn refuse(&mut self, len: u64, max: u64) -> Fail {
        self.consume(HEADER);
        self.skip = len;
        self.status();
        Fail::Decode(CodecError::Oversized { len, limit: max })
    }

    /// The next whole frame of at most `max` bytes.
    fn next_frame(
        &mut self,
        stream: &UnixStream,
        max: u64,
        deadline: Deadline,
    ) -> Result<Frame, Fail> {
        loop {
            match self.status() {
                Status::Frame { len, .. } if len > max => return Err(self.refuse(len, max)),
                Status::Frame { body, .. } => return Ok(Frame::Buffered(body)),
                Status::Poisoned(len) => {
                    return Err(Fail::Decode(CodecError::Oversized {
                        len,
                        limit: MAX_FRAME,
                    }));
                }
                Status::Partial { len: Some(len), .. } if len > max => {
                    return Err(self.refuse(len, max));
                }
                Status::Partial { .. } if self.eof => return Err(self.cut_short()),
                Status::Partial { need, len } => {
                    if let (Deadline::Forever, Some(len)) = (deadline, len) {
                        if need - self.avail() >= BIG {
                            return self.read_big(stream, len);
                        }
                    }
                    self.fill(stream, need, deadline)?;
                }
            }
        }
    }

    /// Reads the rest of a large frame (header buffered) straight into its
    /// own vector, growing it with the data received.
    fn read_big(&mut self, stream: &UnixStream, len: u64) -> Result<Frame, Fail> {
        let oom = || Fail::Io(io::ErrorKind::OutOfMemory.into());
        let total = len as usize; // checked against usize by `status`
        let mut body = Vec::new();
        let have = self.avail() - HEADER;
        body.try_reserve_exact(have).map_err(|_| oom())?;
        body.extend_from_slice(&self.buf[self.start + HEADER..self.end]);
        self.consume(self.avail());
        while body.len() < total {
            let step = (total - body.len()).min(body.len().max(1 << 20));
            if body.try_reserve_exact(step).is_err() {
                self.skip = (total - body.len()) as u64;
                return Err(oom());
            }
            // `read_to_end` reads into spare capacity (no zeroing) and
            // retries interrupted reads.
            match (&mut &*stream).take(step as u64).read_to_end(&mut body) {
                Ok(n) if n == step => {}
                Ok(_) => {
                    self.eof = true;
                    return Err(truncated(len, body.len()));
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.eof = true;
                    return Err(truncated(len, body.len()));
                }
                Err(e) => {
                    self.skip = (total - body.len()) as u64;
                    return Err(Fail::Io(e));
                }
            }
        }
        Ok(Frame::Owned(body))
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
}

impl Inner {
    fn new(stream: UnixStream) -> Arc<Inner> {
        Arc::new(Inner {
            stream: Mutex::new(Some(Arc::new(stream))),
            send: Mutex::new(()),
            recv: Mutex::new(RecvState::default()),
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

    fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        codec::with_scratch(|frame| {
            frame.extend_from_slice(&[0; HEADER]);
            codec::encode_into(value, frame).map_err(SendError::Encode)?;
            let len = (frame.len() - HEADER) as u64;
            check_len(len)?;
            frame[..HEADER].copy_from_slice(&len.to_le_bytes());
            self.write(&mut [IoSlice::new(frame)])
        })
    }

    fn send_bytes(&self, body: &[u8]) -> Result<(), SendError> {
        let len = body.len() as u64;
        check_len(len)?;
        let header = len.to_le_bytes();
        self.write(&mut [IoSlice::new(&header), IoSlice::new(body)])
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
        match state.next_frame(&stream, MAX_FRAME, deadline)? {
            Frame::Buffered(body) => {
                let value = codec::decode(&state.buf[body.clone()]);
                let used = body.end - state.start;
                state.consume(used);
                value.map_err(Fail::Decode)
            }
            Frame::Owned(body) => codec::decode(&body).map_err(Fail::Decode),
        }
    }

    fn recv_bytes(&self, max: u64, deadline: Deadline) -> Result<Vec<u8>, Fail> {
        let mut state = self.lock_recv(deadline)?;
        let stream = self.stream().ok_or(Fail::Closed)?;
        match state.next_frame(&stream, max, deadline)? {
            Frame::Buffered(body) => {
                let bytes = state.buf[body.clone()].to_vec();
                let used = body.end - state.start;
                state.consume(used);
                Ok(bytes)
            }
            Frame::Owned(body) => Ok(body),
        }
    }

    /// Whether a receive would return before `deadline`: a whole message is
    /// (or becomes) available, or the receive would fail at once.
    fn poll(&self, deadline: Deadline) -> bool {
        let Ok(mut state) = self.lock_recv(deadline) else {
            return false; // another thread is receiving
        };
        let Some(stream) = self.stream() else {
            return true; // closed: a receive fails at once
        };
        loop {
            let need = match state.status() {
                Status::Frame { .. } | Status::Poisoned(_) => return true,
                Status::Partial { .. } if state.eof => return true,
                Status::Partial { need, .. } => need,
            };
            match state.fill(&stream, need, deadline) {
                Ok(()) => {}
                Err(Fail::Timeout) => return false,
                Err(_) => return true,
            }
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
    #[allow(dead_code)] // used by the `connection` module, next
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
                self.inner.stream()
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
        /// must speak the same frames (another multiproc pipe end, or code
        /// writing an 8-byte little-endian length before each message).
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
        let mut frame = (body.len() as u64).to_le_bytes().to_vec();
        frame.extend_from_slice(&body);
        for split in [3, 8, 10] {
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
        // Announce 4 GiB, send 10 bytes: the buffer stays small.
        raw.write_all(&MAX_FRAME.to_le_bytes()).unwrap();
        raw.write_all(&[0; 10]).unwrap();
        assert!(conn.recv_timeout(Duration::from_millis(20)).is_err());
        assert!(conn.inner.recv.lock().unwrap().buf.len() <= INITIAL_BUF);
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
            assert!(b.inner.recv.lock().unwrap().buf.len() <= 2 * INITIAL_BUF);
        });
    }
}
