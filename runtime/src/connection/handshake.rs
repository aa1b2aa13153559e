//! The authkey handshake of a new connection, as a state machine that never
//! blocks: a listener runs many at once, so a peer that stops halfway costs
//! only its own connection.
//!
//! Frames are Python's (`Connection.send_bytes`): a 4-byte big-endian signed
//! length, or -1 and an 8-byte big-endian length, then the body. Every
//! handshake frame is at most 256 bytes (Python's `recv_bytes(256)`), and
//! each read asks for exactly the bytes of the frame in progress, so nothing
//! the peer sends after the handshake is taken from the connection.

use super::auth;
use crate::error::Error;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, MsgFlags};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The largest handshake frame (Python's `recv_bytes(256)`).
const MAX_HANDSHAKE_FRAME: usize = 256;

fn failed(reason: impl Into<String>) -> Error {
    Error::AuthenticationFailed {
        reason: reason.into(),
    }
}

/// Reads one frame of at most [`MAX_HANDSHAKE_FRAME`] bytes, in pieces.
#[derive(Default)]
struct FrameReader {
    header: Vec<u8>,
    body: Option<(usize, Vec<u8>)>,
}

impl FrameReader {
    /// Reads what is there without blocking: `Some(body)` once whole.
    fn read(&mut self, fd: &OwnedFd) -> Result<Option<Vec<u8>>, Error> {
        loop {
            let want = match &self.body {
                Some((len, body)) => len - body.len(),
                None if self.header.len() == 4 && self.header == [0xff; 4] => 12 - 4,
                None if self.header.len() < 4 => 4 - self.header.len(),
                None => 12 - self.header.len(),
            };
            if want == 0 {
                return Ok(self.body.take().map(|(_, body)| body));
            }
            let mut chunk = [0u8; MAX_HANDSHAKE_FRAME];
            let n = match socket::recv(fd.as_raw_fd(), &mut chunk[..want], MsgFlags::MSG_DONTWAIT) {
                Ok(0) | Err(Errno::ECONNRESET) => {
                    return Err(failed(
                        "the peer closed the connection during the handshake",
                    ));
                }
                Ok(n) => n,
                Err(Errno::EAGAIN) => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Error::Io(e.into())),
            };
            match &mut self.body {
                Some((_, body)) => body.extend_from_slice(&chunk[..n]),
                None => {
                    self.header.extend_from_slice(&chunk[..n]);
                    self.parse_header()?;
                }
            }
        }
    }

    fn parse_header(&mut self) -> Result<(), Error> {
        let len: u64 = match self.header.len() {
            4 if self.header != [0xff; 4] => {
                let len = i32::from_be_bytes([
                    self.header[0],
                    self.header[1],
                    self.header[2],
                    self.header[3],
                ]);
                u64::try_from(len).map_err(|_| {
                    failed(format!("the peer sent a frame of negative length {len}"))
                })?
            }
            12 => {
                let mut long = [0u8; 8];
                long.copy_from_slice(&self.header[4..]);
                u64::from_be_bytes(long)
            }
            _ => return Ok(()), // more header to come
        };
        if len > MAX_HANDSHAKE_FRAME as u64 {
            return Err(failed(format!(
                "the peer announced a handshake message of {len} bytes (at most \
                 {MAX_HANDSHAKE_FRAME})"
            )));
        }
        self.body = Some((len as usize, Vec::with_capacity(len as usize)));
        self.header.clear();
        Ok(())
    }
}

/// Sends one frame without blocking. A fresh socket has room for every
/// handshake frame, so a full one means the peer is not playing fair.
fn send_frame(fd: &OwnedFd, body: &[u8]) -> Result<(), Error> {
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    let mut sent = 0;
    while sent < frame.len() {
        match socket::send(
            fd.as_raw_fd(),
            &frame[sent..],
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(n) => sent += n,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                return Err(failed(
                    "the peer does not read: its socket buffer is full during the handshake",
                ));
            }
            Err(Errno::EPIPE | Errno::ECONNRESET) => {
                return Err(failed(
                    "the peer closed the connection during the handshake",
                ));
            }
            Err(e) => return Err(Error::Io(e.into())),
        }
    }
    Ok(())
}

/// The frame a handshake waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Await {
    /// The answer to our challenge.
    Answer,
    /// The peer's challenge.
    Challenge,
    /// `#WELCOME#` (or `#FAILURE#`) for our answer.
    Verdict,
}

/// Whether a handshake has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// It waits for the peer.
    Pending,
    /// Both sides proved they hold the key.
    Done,
}

/// One connection's handshake: the accepting side challenges first, then
/// answers (Python's `deliver_challenge` then `answer_challenge`); the
/// connecting side does the reverse.
pub(crate) struct Handshake {
    socket: OwnedFd,
    key: Vec<u8>,
    accepting: bool,
    awaiting: Option<Await>,
    reader: FrameReader,
    /// The message of our challenge (after `#CHALLENGE#`).
    ours: Vec<u8>,
    pub(crate) deadline: Instant,
}

impl Handshake {
    /// Starts the accepting side: sends our challenge.
    pub(crate) fn accepting(socket: OwnedFd, key: &[u8], timeout: Duration) -> Result<Self, Error> {
        let mut hs = Handshake::new(socket, key, true, timeout);
        hs.challenge()?;
        Ok(hs)
    }

    /// Starts the connecting side: waits for the listener's challenge.
    pub(crate) fn connecting(socket: OwnedFd, key: &[u8], timeout: Duration) -> Self {
        let mut hs = Handshake::new(socket, key, false, timeout);
        hs.awaiting = Some(Await::Challenge);
        hs
    }

    fn new(socket: OwnedFd, key: &[u8], accepting: bool, timeout: Duration) -> Self {
        let now = Instant::now();
        Handshake {
            socket,
            key: key.to_vec(),
            accepting,
            awaiting: None,
            reader: FrameReader::default(),
            ours: Vec::new(),
            deadline: now
                .checked_add(timeout)
                .unwrap_or(now + Duration::from_secs(86400 * 365)),
        }
    }

    pub(crate) fn socket(&self) -> &OwnedFd {
        &self.socket
    }

    pub(crate) fn into_socket(self) -> OwnedFd {
        self.socket
    }

    fn challenge(&mut self) -> Result<(), Error> {
        self.ours = auth::new_challenge()?;
        let mut frame = auth::CHALLENGE.to_vec();
        frame.extend_from_slice(&self.ours);
        send_frame(&self.socket, &frame)?;
        self.awaiting = Some(Await::Answer);
        Ok(())
    }

    /// Goes as far as the bytes already received allow.
    pub(crate) fn advance(&mut self) -> Result<Progress, Error> {
        while let Some(awaiting) = self.awaiting {
            let Some(frame) = self.reader.read(&self.socket)? else {
                return Ok(Progress::Pending);
            };
            match awaiting {
                Await::Answer => {
                    if let Err(reason) = auth::verify(&self.key, &self.ours, &frame) {
                        // Tell the peer, as Python does; it may be gone.
                        let _ = send_frame(&self.socket, auth::FAILURE);
                        return Err(failed(reason));
                    }
                    send_frame(&self.socket, auth::WELCOME)?;
                    self.awaiting = self.accepting.then_some(Await::Challenge);
                }
                Await::Challenge => {
                    let Some(message) = frame.strip_prefix(auth::CHALLENGE) else {
                        return Err(failed(format!(
                            "protocol error: expected a challenge, got {} bytes starting {:?}",
                            frame.len(),
                            String::from_utf8_lossy(&frame[..frame.len().min(16)])
                        )));
                    };
                    let answer = auth::answer(&self.key, message).map_err(failed)?;
                    send_frame(&self.socket, &answer)?;
                    self.awaiting = Some(Await::Verdict);
                }
                Await::Verdict => {
                    if frame != auth::WELCOME {
                        return Err(failed("the peer rejected our digest (its authkey differs)"));
                    }
                    if self.accepting {
                        self.awaiting = None;
                    } else {
                        self.challenge()?;
                    }
                }
            }
        }
        Ok(Progress::Done)
    }

    /// Runs the handshake to its end, blocking until its deadline.
    pub(crate) fn finish(mut self, timeout: Duration) -> Result<OwnedFd, Error> {
        loop {
            if self.advance()? == Progress::Done {
                return Ok(self.socket);
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out(timeout));
            }
            let ms = PollTimeout::try_from(left.as_millis().max(1)).unwrap_or(PollTimeout::MAX);
            match nix::poll::poll(
                &mut [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)],
                ms,
            ) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::Io(e.into())),
            }
        }
    }
}

/// The error of a handshake that ran out of time.
pub(crate) fn timed_out(timeout: Duration) -> Error {
    failed(format!(
        "the peer did not complete the authkey handshake within {timeout:?}"
    ))
}
