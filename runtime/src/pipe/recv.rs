//! The receive state of one end: the frame in progress, read no further
//! than its end, and whether a receive would return now.

use super::error::Fail;
use super::frame::{Bad, Header, LONG, parse_header};
use super::socket::{Deadline, wait_readable};
use crate::codec::{CodecError, MAX_FRAME};
use crate::sys::fdpass::{self, CmsgSpace};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, MsgFlags};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// The most a body buffer grows by before that much has arrived.
pub(super) const INITIAL_BUF: usize = 64 * 1024;
/// A body buffer larger than this is freed once its frame is delivered.
pub(super) const KEEP_BUF: usize = 4 << 20;

/// The frame being received, as far as it has arrived. Reads never go past
/// the end of the frame in progress: the socket may be shared with other
/// processes (a handle passed to a child while the parent keeps a copy), and
/// whenever this handle holds no part of a frame the socket is at a frame
/// boundary for whoever reads next. The body grows only with bytes actually
/// received, so a lying header costs at most what the peer really sends.
#[derive(Default)]
pub(super) struct RecvState {
    /// The header's bytes received so far.
    pub(super) head: Vec<u8>,
    /// The body's bytes received so far (reused between frames).
    pub(super) body: Vec<u8>,
    /// Descriptors that came with the frame's bytes.
    pub(super) fds: Vec<OwnedFd>,
    /// Descriptors were lost in transit (`MSG_CTRUNC`) during this frame.
    pub(super) lost: bool,
    /// The stream held a header no frame may have: every receive fails.
    pub(super) poisoned: Option<Bad>,
    /// The peer closed its end (every copy of it).
    pub(super) eof: bool,
    /// Bytes still to drop of a frame refused by `recv_bytes_max`.
    pub(super) skip: u64,
    /// `recvmsg`'s control buffer, made at the first read.
    pub(super) space: Option<CmsgSpace>,
}

/// What [`RecvState::ready`] found.
pub(super) enum Readiness {
    /// A receive would return at once.
    Ready,
    /// It would wait; `queued`: bytes of an unfinished frame wait in the
    /// socket (so readability says nothing).
    Waiting { queued: bool },
}

impl RecvState {
    pub(super) fn header(&self) -> Header {
        parse_header(&self.head)
    }

    /// Forgets the frame in progress (its descriptors close).
    pub(super) fn reset(&mut self) {
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
    pub(super) fn read(
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
    pub(super) fn drain_skip(
        &mut self,
        fd: BorrowedFd<'_>,
        deadline: Deadline,
    ) -> Result<(), Fail> {
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
    pub(super) fn cut_short(&mut self) -> Fail {
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
    pub(super) fn refuse(&mut self, len: u64, max: u64) -> Fail {
        self.skip = len - self.body.len() as u64;
        self.reset();
        Fail::Decode(CodecError::Oversized { len, limit: max })
    }

    pub(super) fn poison(&mut self, bad: Bad) -> Fail {
        self.poisoned = Some(bad);
        self.reset();
        Fail::Decode(bad.error())
    }

    /// Receives until the frame in progress, of at most `max` bytes, is
    /// whole in `head`, `body` and `fds`.
    pub(super) fn next_frame(
        &mut self,
        fd: BorrowedFd<'_>,
        max: u64,
        deadline: Deadline,
    ) -> Result<(), Fail> {
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
    pub(super) fn ready(&mut self, fd: BorrowedFd<'_>) -> Readiness {
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
pub(super) fn peer_closed(fd: BorrowedFd<'_>) -> bool {
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

pub(super) fn truncated(expected: u64, got: usize) -> Fail {
    Fail::Decode(CodecError::Truncated {
        expected,
        got: got as u64,
    })
}
