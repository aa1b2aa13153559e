//! The socket layer: one end's descriptor, shared by the clones of a handle
//! in this process, with its send lock and receive state.

use super::error::{Fail, SendError};
use super::frame::{LONG, frame_header};
use super::recv::{Readiness, RecvState};
use crate::codec::{self, CodecError, MAX_FRAME};
use crate::handles;
use crate::sys::fdpass;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// When a receive gives up.
#[derive(Clone, Copy)]
pub(super) enum Deadline {
    Forever,
    At(Instant),
}

impl Deadline {
    pub(super) fn now() -> Deadline {
        Deadline::At(Instant::now())
    }

    pub(super) fn after(timeout: Duration) -> Deadline {
        Instant::now()
            .checked_add(timeout)
            .map_or(Deadline::Forever, Deadline::At)
    }

    /// Time left: `None` forever, `Err(Timeout)` once passed.
    pub(super) fn remaining(self) -> Result<Option<Duration>, Fail> {
        match self {
            Deadline::Forever => Ok(None),
            Deadline::At(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Ok(Some(left)),
                _ => Err(Fail::Timeout),
            },
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until `fd` is readable or `timeout` passes, by
/// [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html).
pub(super) fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
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

/// One end of a pipe, shared by the clones of a handle in this process.
pub(super) struct Inner {
    /// `None` once closed. Calls clone the `Arc`, so `close` never waits for
    /// a call in flight; the descriptor closes when the last of them ends.
    pub(super) stream: Mutex<Option<Arc<UnixStream>>>,
    /// Serialises sends, so frames from several threads never interleave.
    pub(super) send: SendLock,
    pub(super) recv: Mutex<RecvState>,
    /// A Unix socket, which carries descriptors (TCP does not).
    pub(super) unix: bool,
}

impl Inner {
    pub(super) fn new(stream: UnixStream) -> Arc<Inner> {
        let unix = socket::getsockname::<socket::SockaddrStorage>(stream.as_raw_fd())
            .map(|a| a.as_unix_addr().is_some())
            .unwrap_or(false);
        Arc::new(Inner {
            stream: Mutex::new(Some(Arc::new(stream))),
            send: SendLock::default(),
            recv: Mutex::new(RecvState::default()),
            unix,
        })
    }

    pub(super) fn pair() -> io::Result<(Arc<Inner>, Arc<Inner>)> {
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

    pub(super) fn stream(&self) -> Option<Arc<UnixStream>> {
        lock(&self.stream).clone()
    }

    pub(super) fn close(&self) {
        lock(&self.stream).take();
    }

    pub(super) fn is_closed(&self) -> bool {
        lock(&self.stream).is_none()
    }

    /// Writes `parts` as one stream of bytes: one `sendmsg` when the socket
    /// has room, with `MSG_NOSIGNAL` so a closed peer is an error, not a
    /// signal.
    pub(super) fn write(&self, parts: &mut [IoSlice<'_>]) -> Result<(), SendError> {
        let stream = self.stream().ok_or(SendError::Closed)?;
        let _serial = self.send.lock();
        write_all(&stream, parts)
    }

    pub(super) fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        codec::with_scratch(|frame| {
            let (at, fds) = encode_frame(value, frame)?;
            if fds.is_empty() {
                self.write(&mut [IoSlice::new(&frame[at..])])
            } else {
                self.write_with_fds(&frame[at..], &fds, std::any::type_name::<T>())
            }
        })
    }

    /// Whether these descriptors can go with one message on this socket.
    fn check_fds(&self, fds: &[OwnedFd], type_name: &'static str) -> Result<(), SendError> {
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
        Ok(())
    }

    /// Writes `bytes` with `fds` attached to their first byte, so that they
    /// reach the receiver with the frame that names them.
    pub(super) fn write_with_fds(
        &self,
        bytes: &[u8],
        fds: &[OwnedFd],
        type_name: &'static str,
    ) -> Result<(), SendError> {
        self.check_fds(fds, type_name)?;
        let stream = self.stream().ok_or(SendError::Closed)?;
        let _serial = self.send.lock();
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
    pub(super) fn send_handle(&self, fd: BorrowedFd<'_>) -> Result<(), SendError> {
        if !self.unix {
            return Err(SendError::HandlesNeedUnixSocket);
        }
        let dup = fd.try_clone_to_owned().map_err(SendError::Io)?;
        self.write_with_fds(&[1], &[dup], "OwnedFd")
    }

    pub(super) fn send_bytes(&self, body: &[u8]) -> Result<(), SendError> {
        let len = body.len() as u64;
        check_len(len)?;
        let (header, size) = frame_header(len);
        self.write(&mut [IoSlice::new(&header[..size]), IoSlice::new(body)])
    }

    /// Takes the receive lock, waiting at most until `deadline` for another
    /// thread's receive to end.
    pub(super) fn lock_recv(&self, deadline: Deadline) -> Result<MutexGuard<'_, RecvState>, Fail> {
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

    pub(super) fn recv<T: DeserializeOwned>(&self, deadline: Deadline) -> Result<T, Fail> {
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
    pub(super) fn recv_handle(&self) -> Result<OwnedFd, Fail> {
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

    pub(super) fn recv_bytes(&self, max: u64, deadline: Deadline) -> Result<Vec<u8>, Fail> {
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
    pub(super) fn poll(&self, deadline: Deadline) -> bool {
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
    pub(super) fn wait_stream(&self) -> Option<Arc<UnixStream>> {
        let stream = self.stream()?;
        match fdpass::queued(stream.as_fd()) {
            Ok(0) => Some(stream),
            _ => None,
        }
    }

    pub(super) fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let stream = self.stream().ok_or_else(|| {
            codec::custom_ser_error::<S::Error>(
                "a closed connection cannot be sent to a child".to_string(),
            )
        })?;
        handles::export_fd::<S::Error>(stream.as_fd())?.serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Arc<Inner>, D::Error> {
        let index = u32::deserialize(deserializer)?;
        let fd = handles::import_fd::<D::Error>(index)?;
        Ok(Inner::new(UnixStream::from(fd)))
    }

    pub(super) fn fmt(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("fd", &self.stream().map(|s| s.as_raw_fd()))
            .finish()
    }
}

/// Writes `parts` to `stream` (the send lock held) as one stream of bytes:
/// one `sendmsg` when the socket has room, with `MSG_NOSIGNAL` so a closed
/// peer is an error, not a signal.
pub(super) fn write_all(stream: &UnixStream, parts: &mut [IoSlice<'_>]) -> Result<(), SendError> {
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

/// Encodes `value` into the empty `frame` behind its header: the
/// frame starts at the returned offset; the handles inside `value` give
/// their descriptors to the returned list.
fn encode_frame<T: Serialize + ?Sized>(
    value: &T,
    frame: &mut Vec<u8>,
) -> Result<(usize, Vec<OwnedFd>), SendError> {
    // Room for the longer header; the frame starts where its header does.
    frame.extend_from_slice(&[0; LONG]);
    let (encoded, fds) = handles::collecting(|| codec::encode_into(value, frame));
    encoded.map_err(SendError::Encode)?;
    let len = (frame.len() - LONG) as u64;
    check_len(len)?;
    let (header, size) = frame_header(len);
    let at = LONG - size;
    frame[at..LONG].copy_from_slice(&header[..size]);
    Ok((at, fds))
}

pub(super) fn check_len(len: u64) -> Result<(), SendError> {
    if len > MAX_FRAME {
        return Err(SendError::Encode(CodecError::Oversized {
            len,
            limit: MAX_FRAME,
        }));
    }
    Ok(())
}

/// Serializes the senders of one end, blocking and async alike: a sender
/// holds it for a whole frame, across an await for room too (a frame is
/// never interleaved with another).
#[derive(Default)]
pub(super) struct SendLock {
    state: Mutex<SendState>,
    freed: std::sync::Condvar,
}

#[derive(Default)]
struct SendState {
    busy: bool,
    wakers: Vec<std::task::Waker>,
}

/// A sender's hold on a [`SendLock`].
pub(super) struct SendGuard<'a>(&'a SendLock);

impl SendLock {
    pub(super) fn lock(&self) -> SendGuard<'_> {
        let mut state = lock(&self.state);
        while state.busy {
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.busy = true;
        SendGuard(self)
    }

    /// The lock if it is free; if not, the task is woken when it may be.
    #[cfg(feature = "tokio")]
    pub(super) fn poll_lock(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<SendGuard<'_>> {
        let mut state = lock(&self.state);
        if state.busy {
            if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                state.wakers.push(cx.waker().clone());
            }
            return std::task::Poll::Pending;
        }
        state.busy = true;
        std::task::Poll::Ready(SendGuard(self))
    }
}

impl Drop for SendGuard<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.busy = false;
        let wakers = std::mem::take(&mut state.wakers);
        drop(state);
        self.0.freed.notify_one();
        wakers.into_iter().for_each(std::task::Waker::wake);
    }
}

#[cfg(feature = "tokio")]
impl Inner {
    /// `send`, awaited (feature `tokio`): the value is encoded at once, then
    /// written without blocking, awaiting room in the socket's buffer in
    /// tokio's reactor while the receiver is not reading.
    pub(super) fn send_async<T: Serialize + ?Sized>(
        self: &Arc<Self>,
        value: &T,
    ) -> impl std::future::Future<Output = Result<(), SendError>> + Send + 'static {
        let mut frame = Vec::new();
        let encoded = encode_frame(value, &mut frame).and_then(|(at, fds)| {
            if !fds.is_empty() {
                self.check_fds(&fds, std::any::type_name::<T>())?;
            }
            Ok((frame, at, fds))
        });
        let inner = self.clone();
        async move {
            let (frame, at, fds) = encoded?;
            inner.write_async(&frame[at..], &fds).await
        }
    }

    /// `send_bytes`, awaited.
    pub(super) fn send_bytes_async(
        self: &Arc<Self>,
        body: &[u8],
    ) -> impl std::future::Future<Output = Result<(), SendError>> + Send + 'static {
        let framed = check_len(body.len() as u64).map(|()| {
            let (header, size) = frame_header(body.len() as u64);
            [&header[..size], body].concat()
        });
        let inner = self.clone();
        async move { inner.write_async(&framed?, &[]).await }
    }

    /// Writes `bytes` (with `fds` on the first byte) without blocking,
    /// holding the send lock throughout.
    async fn write_async(&self, bytes: &[u8], fds: &[OwnedFd]) -> Result<(), SendError> {
        let stream = self.stream().ok_or(SendError::Closed)?;
        let _serial = std::future::poll_fn(|cx| self.send.poll_lock(cx)).await;
        let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
        /// Closes the end if dropped part-way through a frame: the
        /// stream cannot carry another message after half of one.
        struct Progress<'a> {
            inner: &'a Inner,
            sent: usize,
            len: usize,
        }
        impl Drop for Progress<'_> {
            fn drop(&mut self) {
                if self.sent > 0 && self.sent < self.len {
                    self.inner.close();
                }
            }
        }
        let mut progress = Progress {
            inner: self,
            sent: 0,
            len: bytes.len(),
        };
        let mut rights = !raw.is_empty();
        while progress.sent < bytes.len() {
            let rest = &bytes[progress.sent..];
            let result = if rights {
                let control = [socket::ControlMessage::ScmRights(&raw)];
                socket::sendmsg::<()>(
                    stream.as_raw_fd(),
                    &[IoSlice::new(rest)],
                    &control,
                    flags,
                    None,
                )
            } else {
                socket::send(stream.as_raw_fd(), rest, flags)
            };
            match result {
                Ok(n) => {
                    progress.sent += n;
                    rights = false;
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    crate::aio::ready_fd(stream.as_fd(), tokio::io::Interest::WRITABLE)
                        .await
                        .map_err(SendError::Io)?;
                }
                Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(SendError::Closed),
                Err(e) => return Err(SendError::Io(e.into())),
            }
        }
        Ok(())
    }
}
