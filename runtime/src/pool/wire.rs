//! The frames on a pool worker's socket.
//!
//! Parent to worker, one frame per task: `[u64 len][u64 timeout ns][u16 name
//! len][worker name][postcard Vec<Args>]`. A task is a chunk of one or more
//! calls of the same worker; the timeout (0: none) applies to each call.
//! Worker to parent, one frame per reply: `[u64 len][u8 tag]...`: `READY`
//! once the initializer has run; `DONE` with the chunk's run time in
//! nanoseconds, then the results (see [`FIRST_FAILURE`]); `FAILED` with a
//! reason when the chunk could not run at all; `SKIPPED` for a task that was
//! cancelled before it began; `INIT_FAILED` with the initializer's panic. A
//! worker handles its tasks in order, so replies match tasks by position: no
//! ids on the wire.
//!
//! A `DONE` reply's results are `[u64 first failure]` and then one value per
//! call, back to back: the calls before the first failure as plain
//! `Output`s, those from it on as `Result<Output, TaskFailure>`
//! (`u64::MAX`: none failed). The worker writes each value as its call
//! returns, so the results of a chunk cut short by the worker's death can be
//! read from its reply buffer (`progress.rs`).

use crate::codec::{self, CodecError, MAX_FRAME};
use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags};
use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

pub(crate) const READY: u8 = 0;
pub(crate) const DONE: u8 = 1;
pub(crate) const FAILED: u8 = 2;
pub(crate) const INIT_FAILED: u8 = 3;
pub(crate) const SKIPPED: u8 = 4;

/// A `DONE` reply's bytes before the results: the tag, the run time, the
/// index of the first failure.
pub(crate) const DONE_HEAD: usize = 1 + 8 + 8;
/// Where, in a `DONE` reply's body, the index of the first failure is.
pub(crate) const FIRST_FAILURE: usize = 1 + 8;
/// The first failure of a chunk in which every call returned.
pub(crate) const NO_FAILURE: u64 = u64::MAX;

/// Why one call of a chunk produced no value.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum TaskFailure {
    Panicked {
        message: String,
        location: Option<String>,
    },
    /// The call returned, but its value did not encode.
    Unencodable { reason: String },
}

/// Encodes a task: `items` (argument tuples) for the worker named `worker`,
/// each call limited to `timeout_ns` (0: no limit).
pub(crate) fn task_frame<A: Serialize>(
    worker: &str,
    timeout_ns: u64,
    items: &[A],
) -> Result<Vec<u8>, CodecError> {
    let per_item = size_of::<A>().clamp(1, 64);
    let frame = Vec::with_capacity(24 + worker.len() + items.len() * per_item);
    task_frame_into(frame, worker, timeout_ns, items)
}

/// [`task_frame`], in a buffer that held an earlier frame (its capacity
/// is reused).
pub(crate) fn task_frame_into<A: Serialize>(
    mut frame: Vec<u8>,
    worker: &str,
    timeout_ns: u64,
    items: &[A],
) -> Result<Vec<u8>, CodecError> {
    frame.clear();
    frame.extend_from_slice(&[0; 8]);
    frame.extend_from_slice(&timeout_ns.to_le_bytes());
    frame.extend_from_slice(&(worker.len() as u16).to_le_bytes());
    frame.extend_from_slice(worker.as_bytes());
    codec::encode_into(items, &mut frame)?;
    let len = (frame.len() - 8) as u64;
    frame[..8].copy_from_slice(&len.to_le_bytes());
    Ok(frame)
}

/// A task's parts: the timeout, the worker's name, the encoded items.
pub(crate) struct TaskParts<'a> {
    pub(crate) timeout_ns: u64,
    pub(crate) name: &'a str,
    pub(crate) items: &'a [u8],
}

/// Splits a task frame's body (after the length) into its parts.
pub(crate) fn parse_task(body: &[u8]) -> Option<TaskParts<'_>> {
    let timeout_ns = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
    let len = u16::from_le_bytes(body.get(8..10)?.try_into().ok()?) as usize;
    let name = std::str::from_utf8(body.get(10..10 + len)?).ok()?;
    Some(TaskParts {
        timeout_ns,
        name,
        items: &body[10 + len..],
    })
}

/// The task of the calls of `frame` (a whole task frame, length included)
/// that had not begun: `left` items, whose encoding starts `rest` bytes
/// into the frame's items. `None` if the numbers do not fit the frame.
pub(crate) fn rest_of_task(frame: &[u8], rest: u64, left: usize) -> Option<Vec<u8>> {
    let parts = parse_task(frame.get(8..)?)?;
    let tail = parts.items.get(usize::try_from(rest).ok()?..)?;
    let mut out = Vec::with_capacity(32 + parts.name.len() + tail.len());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&parts.timeout_ns.to_le_bytes());
    out.extend_from_slice(&(parts.name.len() as u16).to_le_bytes());
    out.extend_from_slice(parts.name.as_bytes());
    codec::encode_into(&left, &mut out).ok()?;
    out.extend_from_slice(tail);
    let len = (out.len() - 8) as u64;
    out[..8].copy_from_slice(&len.to_le_bytes());
    Some(out)
}

/// The timeout a task frame (length included) carries.
pub(crate) fn task_timeout_ns(frame: &[u8]) -> u64 {
    frame
        .get(8..16)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// Starts a reply frame at the end of `out`; returns where it starts.
pub(crate) fn begin_reply(out: &mut Vec<u8>, tag: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 8]);
    out.push(tag);
    at
}

/// Writes the length of the reply frame that starts at `at`.
pub(crate) fn end_reply(out: &mut [u8], at: usize) {
    let len = (out.len() - at - 8) as u64;
    out[at..at + 8].copy_from_slice(&len.to_le_bytes());
}

/// Bytes received on a socket, from which whole frames are taken.
pub(crate) struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    pub(crate) fn new() -> InBuf {
        InBuf {
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
        }
    }

    /// Receives once into the free space (`MSG_DONTWAIT` if `nonblocking`).
    /// `Ok(0)` is the end of the stream (or a reset: the peer is gone).
    pub(crate) fn recv(&mut self, fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<usize> {
        Ok(self.recv_some(fd, nonblocking)?.0)
    }

    /// As [`recv`](Self::recv), also saying whether the read filled the free
    /// space (so more may be waiting; a short read drained the socket).
    pub(crate) fn recv_some(
        &mut self,
        fd: BorrowedFd<'_>,
        nonblocking: bool,
    ) -> io::Result<(usize, bool)> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.compact();
            } else {
                let len = self.buf.len() * 2;
                self.buf.resize(len, 0);
            }
        }
        let flags = if nonblocking {
            MsgFlags::MSG_DONTWAIT
        } else {
            MsgFlags::empty()
        };
        let room = self.buf.len() - self.end;
        loop {
            match socket::recv(fd.as_raw_fd(), &mut self.buf[self.end..], flags) {
                Ok(n) => {
                    self.end += n;
                    return Ok((n, n == room));
                }
                Err(Errno::EINTR) => {}
                Err(Errno::ECONNRESET) => return Ok((0, false)),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }

    /// The length of the next frame's body if it is complete, without
    /// taking it. A frame that does not fit where it starts is moved to the
    /// front; the buffer grows only as bytes arrive (`recv_some` doubles it
    /// when full), never to a length a header merely announces.
    fn complete(&mut self) -> Result<Option<usize>, CodecError> {
        let have = self.end - self.start;
        if have < 8 {
            return Ok(None);
        }
        let len = u64::from_le_bytes(
            self.buf[self.start..self.start + 8]
                .try_into()
                .expect("8 bytes"),
        );
        if len > MAX_FRAME {
            return Err(CodecError::Oversized {
                len,
                limit: MAX_FRAME,
            });
        }
        let total = 8 + len as usize;
        if have >= total {
            return Ok(Some(len as usize));
        }
        if self.buf.len() - self.start < total {
            self.compact();
        }
        Ok(None)
    }

    /// Whether a whole frame is waiting.
    pub(crate) fn has_frame(&mut self) -> bool {
        matches!(self.complete(), Ok(Some(_)) | Err(_))
    }

    /// Takes the next complete frame's body.
    pub(crate) fn next_frame(&mut self) -> Result<Option<&[u8]>, CodecError> {
        let Some(len) = self.complete()? else {
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                // Give back what one big frame took.
                if self.buf.len() > 1 << 20 {
                    self.buf.truncate(64 * 1024);
                    self.buf.shrink_to_fit();
                }
            }
            return Ok(None);
        };
        let body = self.start + 8..self.start + 8 + len;
        self.start = body.end;
        Ok(Some(&self.buf[body]))
    }
}

/// Sends all of `bytes` (blocking), without `SIGPIPE`.
pub(crate) fn send_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match socket::send(fd.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Conn;
    use std::os::fd::AsFd;

    #[test]
    fn a_task_frame_names_its_worker_and_carries_its_items() {
        let frame = task_frame("m::square", 7, &[(3i64,), (4,)]).unwrap();
        let len = u64::from_le_bytes(frame[..8].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 8);
        let parts = parse_task(&frame[8..]).unwrap();
        assert_eq!((parts.name, parts.timeout_ns), ("m::square", 7));
        assert_eq!(task_timeout_ns(&frame), 7);
        assert_eq!(
            codec::decode::<Vec<(i64,)>>(parts.items).unwrap(),
            [(3,), (4,)]
        );
        assert!(parse_task(&[0, 0, 0, 0, 0, 0, 0, 0, 9, 0, b'x']).is_none());
    }

    #[test]
    fn the_rest_of_a_task_is_a_task_of_the_calls_not_begun() {
        let frame = task_frame("m::f", 5, &[(1u64,), (300,), (70_000,)]).unwrap();
        let items = parse_task(&frame[8..]).unwrap().items;
        let mut walk = codec::Items::new(items).unwrap();
        let _: (u64,) = walk.next().unwrap().unwrap();
        let rest = walk.offset() as u64;
        let tail = rest_of_task(&frame, rest, 2).unwrap();
        let parts = parse_task(&tail[8..]).unwrap();
        assert_eq!((parts.name, parts.timeout_ns), ("m::f", 5));
        assert_eq!(
            codec::decode::<Vec<(u64,)>>(parts.items).unwrap(),
            [(300,), (70_000,)]
        );
        assert!(rest_of_task(&frame, 1 << 40, 1).is_none());
    }

    #[test]
    fn frames_come_out_whole_however_the_bytes_arrive() {
        let (a, b) = Conn::pair().unwrap();
        let mut wire = Vec::new();
        for (tag, body) in [
            (READY, vec![]),
            (DONE, vec![1; 200_000]),
            (FAILED, b"no".to_vec()),
        ] {
            let at = begin_reply(&mut wire, tag);
            wire.extend_from_slice(&body);
            end_reply(&mut wire, at);
        }
        let writer = std::thread::spawn(move || {
            for piece in wire.chunks(7_001) {
                send_all(a.as_fd(), piece).unwrap();
            }
        });
        let mut inbuf = InBuf::new();
        let mut got = Vec::new();
        while got.len() < 3 {
            assert!(inbuf.recv(b.as_fd(), false).unwrap() > 0);
            while let Some(frame) = inbuf.next_frame().unwrap() {
                got.push((frame[0], frame.len() - 1));
            }
        }
        writer.join().unwrap();
        assert_eq!(got, [(READY, 0), (DONE, 200_000), (FAILED, 2)]);
        assert!(!inbuf.has_frame());
    }

    /// Fuzz finding (stream_recv): a 9-byte input whose header announced
    /// 184 MB made `complete` resize the buffer to that length at once.
    #[test]
    fn an_announced_length_alone_allocates_nothing() {
        let (a, b) = Conn::pair().unwrap();
        let mut wire = (MAX_FRAME).to_le_bytes().to_vec();
        wire.extend_from_slice(b"short");
        send_all(a.as_fd(), &wire).unwrap();
        drop(a);
        let mut inbuf = InBuf::new();
        while inbuf.recv(b.as_fd(), false).unwrap() > 0 {
            for _ in 0..100 {
                assert!(inbuf.next_frame().unwrap().is_none());
                assert!(!inbuf.has_frame());
            }
        }
        assert!(inbuf.buf.len() <= 128 * 1024, "{} bytes", inbuf.buf.len());
    }
}
