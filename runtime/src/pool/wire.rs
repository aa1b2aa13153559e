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
//!
//! # Descriptors
//!
//! A task whose arguments hold handles (a `Queue`, a `Lock`, shared memory,
//! at any depth, in any call of the chunk) carries their descriptors: the
//! top bit of its name length is set ([`CARRIES_FDS`]) and a `u32` count
//! follows the name, `[u64 len][u64 timeout ns][u16 name len | 0x8000][worker
//! name][u32 descriptors][postcard Vec<Args>]`. A task without handles is
//! byte for byte as above. The handles' indices number the task's table,
//! over all its calls.
//!
//! The descriptors travel with the frame's own bytes, by `SCM_RIGHTS`, in
//! batches of at most [`MAX_FDS_PER_MESSAGE`]: batch `b` rides on a
//! `sendmsg` that begins at byte `b` of the frame, and every batch but the
//! last carries that one byte only (a frame has more bytes than batches).
//! Unix stream sockets deliver a message's descriptors with the `recvmsg`
//! that reads its first byte, so by the time the worker holds a whole frame
//! it holds all the frame's descriptors, and no later frame's can have come
//! before them. The worker ([`Arrivals`]) keeps what it receives in arrival
//! order, each descriptor marked with the number of stream bytes received
//! with it; a frame takes the `count` oldest. A frame whose descriptors are
//! not all there, or a descriptor left over that came no later than the end
//! of a frame (no frame can own it), is a broken framing: the worker exits,
//! which closes them. The announced count never sizes an allocation: only
//! descriptors that arrived are taken.
//!
//! The rest of a chunk re-sent after its worker died ([`rest_of_task`])
//! keeps the count and carries the whole table again, so the indices need
//! no rewriting; the calls already run leave their descriptors unclaimed,
//! and the worker closes every descriptor of a task when the task ends.

use crate::codec::{self, CodecError, MAX_FRAME};
use crate::handles::{self, FdTable};
use crate::sys::fdpass::{self, MAX_FDS_PER_MESSAGE};
use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

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
        backtrace: Option<String>,
    },
    /// The call returned, but its value did not encode.
    Unencodable { reason: String },
}

/// The bit of a task frame's name length that says a descriptor count
/// follows the name (see the module docs).
pub(crate) const CARRIES_FDS: u16 = 0x8000;

/// A task frame and the descriptors of the handles in its items (empty for
/// a task without handles: no allocation).
pub(crate) type TaskFrame = (Vec<u8>, Vec<OwnedFd>);

/// How many `SCM_RIGHTS` messages `fds` descriptors take.
pub(crate) fn fd_batches(fds: usize) -> usize {
    fds.div_ceil(MAX_FDS_PER_MESSAGE)
}

/// Encodes a task: `items` (argument tuples) for the worker named `worker`,
/// each call limited to `timeout_ns` (0: no limit), with the descriptors of
/// the handles in them.
pub(crate) fn task_frame<A: Serialize + 'static>(
    worker: &str,
    timeout_ns: u64,
    items: &[A],
) -> Result<TaskFrame, CodecError> {
    let per_item = size_of::<A>().clamp(1, 64);
    let frame = Vec::with_capacity(24 + worker.len() + items.len() * per_item);
    task_frame_into(frame, worker, timeout_ns, items)
}

/// [`task_frame`], in a buffer that held an earlier frame (its capacity
/// is reused).
pub(crate) fn task_frame_into<A: Serialize + 'static>(
    mut frame: Vec<u8>,
    worker: &str,
    timeout_ns: u64,
    items: &[A],
) -> Result<TaskFrame, CodecError> {
    let unencodable = |reason: String| CodecError::Unencodable {
        type_name: std::any::type_name::<A>(),
        reason,
    };
    let name_len = u16::try_from(worker.len())
        .ok()
        .filter(|&len| len & CARRIES_FDS == 0)
        .ok_or_else(|| unencodable(format!("a worker name of {} bytes", worker.len())))?;
    frame.clear();
    frame.extend_from_slice(&[0; 8]);
    frame.extend_from_slice(&timeout_ns.to_le_bytes());
    frame.extend_from_slice(&name_len.to_le_bytes());
    frame.extend_from_slice(worker.as_bytes());
    let items_at = frame.len();
    let (encoded, fds) = handles::collecting(|| codec::encode_slice_into(items, &mut frame));
    encoded?;
    if !fds.is_empty() {
        let count = u32::try_from(fds.len())
            .map_err(|_| unencodable(format!("{} descriptors in one task", fds.len())))?;
        frame[16..18].copy_from_slice(&(name_len | CARRIES_FDS).to_le_bytes());
        frame.splice(items_at..items_at, count.to_le_bytes());
        if fd_batches(fds.len()) > frame.len() {
            return Err(unencodable(format!(
                "{} descriptors in a task frame of {} bytes",
                fds.len(),
                frame.len()
            )));
        }
    }
    let len = (frame.len() - 8) as u64;
    frame[..8].copy_from_slice(&len.to_le_bytes());
    Ok((frame, fds))
}

/// A task's parts: the timeout, the worker's name, the number of
/// descriptors it carries, the encoded items.
pub(crate) struct TaskParts<'a> {
    pub(crate) timeout_ns: u64,
    pub(crate) name: &'a str,
    pub(crate) fds: u32,
    pub(crate) items: &'a [u8],
}

/// Splits a task frame's body (after the length) into its parts.
pub(crate) fn parse_task(body: &[u8]) -> Option<TaskParts<'_>> {
    let timeout_ns = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
    let flagged = u16::from_le_bytes(body.get(8..10)?.try_into().ok()?);
    let len = (flagged & !CARRIES_FDS) as usize;
    let name = std::str::from_utf8(body.get(10..10 + len)?).ok()?;
    let (fds, items_at) = if flagged & CARRIES_FDS == 0 {
        (0, 10 + len)
    } else {
        let count = body.get(10 + len..14 + len)?;
        (u32::from_le_bytes(count.try_into().ok()?), 14 + len)
    };
    Some(TaskParts {
        timeout_ns,
        name,
        fds,
        items: &body[items_at..],
    })
}

/// The number of descriptors a task frame's body announces (0 for one that
/// does not parse).
pub(crate) fn task_fds(body: &[u8]) -> u32 {
    match body.get(9) {
        // The high byte of the name length: most tasks carry none.
        Some(&high) if u16::from(high) << 8 & CARRIES_FDS != 0 => {
            parse_task(body).map_or(0, |parts| parts.fds)
        }
        _ => 0,
    }
}

/// The task of the calls of `frame` (a whole task frame, length included)
/// that had not begun: `left` items, whose encoding starts `rest` bytes
/// into the frame's items. It carries the same descriptors as `frame` (the
/// indices in its items are those of the whole task). `None` if the
/// numbers do not fit the frame.
pub(crate) fn rest_of_task(frame: &[u8], rest: u64, left: usize) -> Option<Vec<u8>> {
    let parts = parse_task(frame.get(8..)?)?;
    let tail = parts.items.get(usize::try_from(rest).ok()?..)?;
    let mut out = Vec::with_capacity(36 + parts.name.len() + tail.len());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&parts.timeout_ns.to_le_bytes());
    let mut name_len = parts.name.len() as u16;
    if parts.fds > 0 {
        name_len |= CARRIES_FDS;
    }
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(parts.name.as_bytes());
    if parts.fds > 0 {
        out.extend_from_slice(&parts.fds.to_le_bytes());
    }
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

/// Why the descriptors a worker received do not match its task frames: a
/// broken framing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BadFds {
    /// A frame announced more descriptors than came with it.
    Missing { announced: u32, came: usize },
    /// A descriptor came that no frame can own.
    Unclaimed,
    /// `recvmsg` had no room for every descriptor (`MSG_CTRUNC`): some
    /// were lost.
    Truncated,
}

/// The worker's side of the descriptors on its task socket: those received
/// and not yet taken by a frame, oldest first (see the module docs).
pub(crate) struct Arrivals {
    /// Each descriptor with the number of stream bytes received up to the
    /// end of the `recvmsg` that brought it.
    fds: VecDeque<(u64, OwnedFd)>,
    /// Stream bytes received.
    received: u64,
    /// Stream bytes of the frames taken: where the next frame starts.
    taken: u64,
    /// `recvmsg`'s control buffer, room for one message's descriptors.
    space: Vec<u8>,
}

impl Arrivals {
    pub(crate) fn new() -> Arrivals {
        Arrivals {
            fds: VecDeque::new(),
            received: 0,
            taken: 0,
            space: nix::cmsg_space!([RawFd; MAX_FDS_PER_MESSAGE]),
        }
    }

    /// The next frame, of `body` bytes after its length, was taken and
    /// announces `announced` descriptors: takes them (the oldest), and
    /// checks that every descriptor left can still belong to a later frame.
    pub(crate) fn take(&mut self, body: usize, announced: u32) -> Result<FdTable, BadFds> {
        let start = self.taken;
        self.taken += 8 + body as u64;
        if announced == 0 && self.fds.is_empty() {
            return Ok(Vec::new()); // the usual task: nothing to do
        }
        let count = announced as usize;
        if count > self.fds.len() {
            return Err(BadFds::Missing {
                announced,
                came: self.fds.len(),
            });
        }
        // Ours came with bytes of this frame (or later ones).
        if self.fds.iter().take(count).any(|&(by, _)| by <= start) {
            return Err(BadFds::Unclaimed);
        }
        let table = self.fds.drain(..count).map(|(_, fd)| Some(fd)).collect();
        // A later frame's descriptors come with its bytes, after this one's end.
        if self.fds.front().is_some_and(|&(by, _)| by <= self.taken) {
            return Err(BadFds::Unclaimed);
        }
        Ok(table)
    }
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
    #[cfg(test)]
    pub(crate) fn recv(&mut self, fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<usize> {
        Ok(self.recv_some(fd, nonblocking)?.0)
    }

    /// Receives once into the free space (`MSG_DONTWAIT` if `nonblocking`),
    /// also saying whether the read filled it (so more may be waiting; a
    /// short read drained the socket). `Ok((0, _))` is the end of the stream
    /// (or a reset: the peer is gone). The parent's read of replies.
    pub(crate) fn recv_some(
        &mut self,
        fd: BorrowedFd<'_>,
        nonblocking: bool,
    ) -> io::Result<(usize, bool)> {
        self.make_room();
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

    /// Receives once (blocking) into the free space, and the descriptors
    /// that come with the bytes (close-on-exec) into `arrivals`: the pool
    /// worker's read, by `recvmsg(2)` (the same one system call as `recv`).
    /// `Ok(0)` is the end of the stream.
    pub(crate) fn recv_with_fds(
        &mut self,
        fd: BorrowedFd<'_>,
        arrivals: &mut Arrivals,
    ) -> Result<usize, RecvFdsError> {
        self.make_room();
        let fds = &mut arrivals.fds;
        let before = fds.len();
        let (n, truncated) =
            fdpass::recv_with_fds(fd, &mut self.buf[self.end..], &mut arrivals.space, |fd| {
                fds.push_back((0, fd))
            })
            .map_err(RecvFdsError::Io)?;
        // Each descriptor came with the bytes up to the end of this read.
        let by = arrivals.received + n as u64;
        for (at, _) in fds.range_mut(before..) {
            *at = by;
        }
        arrivals.received = by;
        self.end += n;
        if truncated {
            return Err(RecvFdsError::Bad(BadFds::Truncated));
        }
        Ok(n)
    }

    /// Makes free space at the end of the buffer: moves the bytes waiting
    /// to the front, or doubles the buffer when they fill it.
    fn make_room(&mut self) {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.compact();
            } else {
                let len = self.buf.len() * 2;
                self.buf.resize(len, 0);
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

/// Why [`InBuf::recv_with_fds`] failed.
#[derive(Debug)]
#[allow(dead_code)] // for `Debug`: the worker only stops
pub(crate) enum RecvFdsError {
    Io(io::Error),
    Bad(BadFds),
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
        let (frame, fds) = task_frame("m::square", 7, &[(3i64,), (4,)]).unwrap();
        assert!(fds.is_empty());
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
        let (frame, _) = task_frame("m::f", 5, &[(1u64,), (300,), (70_000,)]).unwrap();
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

    /// A handle of the test's own: one descriptor.
    struct Fd(OwnedFd);

    impl Serialize for Fd {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use std::os::fd::AsFd;
            handles::export_fd::<S::Error>(self.0.as_fd())?.serialize(serializer)
        }
    }

    fn an_fd() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    #[test]
    fn a_task_without_handles_is_the_plain_frame() {
        let (frame, fds) = task_frame("m::g", 3, &[(9u8, 10u16)]).unwrap();
        assert!(fds.is_empty());
        let mut want = Vec::new();
        want.extend_from_slice(&(8u64 + 2 + 4 + 3).to_le_bytes());
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(&4u16.to_le_bytes());
        want.extend_from_slice(b"m::g");
        want.extend_from_slice(&[1, 9, 10]);
        assert_eq!(frame, want);
        assert_eq!(task_fds(&frame[8..]), 0);
    }

    #[test]
    fn a_task_with_handles_counts_their_descriptors_and_its_rest_keeps_them() {
        let items = [
            (Fd(an_fd()), 1u64),
            (Fd(an_fd()), 300),
            (Fd(an_fd()), 70_000),
        ];
        let (frame, fds) = task_frame("m::h", 5, &items).unwrap();
        assert_eq!(fds.len(), 3);
        let len = u64::from_le_bytes(frame[..8].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 8);
        let parts = parse_task(&frame[8..]).unwrap();
        assert_eq!((parts.name, parts.timeout_ns, parts.fds), ("m::h", 5, 3));
        assert_eq!(task_fds(&frame[8..]), 3);
        assert_eq!(
            codec::decode::<Vec<(u32, u64)>>(parts.items).unwrap(),
            [(0, 1), (1, 300), (2, 70_000)]
        );
        let mut walk = codec::Items::new(parts.items).unwrap();
        let _: (u32, u64) = walk.next().unwrap().unwrap();
        let tail = rest_of_task(&frame, walk.offset() as u64, 2).unwrap();
        let parts = parse_task(&tail[8..]).unwrap();
        assert_eq!((parts.name, parts.timeout_ns, parts.fds), ("m::h", 5, 3));
        assert_eq!(
            codec::decode::<Vec<(u32, u64)>>(parts.items).unwrap(),
            [(1, 300), (2, 70_000)]
        );
        // Outside a task's encoding, the handle is refused.
        assert!(codec::encode(&items[0]).is_err());
    }

    #[test]
    fn a_frame_takes_its_descriptors_and_leaves_none_it_cannot_own() {
        let came = |arrivals: &mut Arrivals, by: u64, n: usize| {
            for _ in 0..n {
                arrivals.fds.push_back((by, an_fd()));
            }
            arrivals.received = by;
        };
        // Two frames of 100 and 50 bytes, descriptors with each one's bytes.
        let mut a = Arrivals::new();
        came(&mut a, 60, 2);
        came(&mut a, 150, 1);
        assert_eq!(a.take(92, 2).unwrap().len(), 2);
        assert_eq!(a.take(42, 1).unwrap().len(), 1);
        assert!(a.take(10, 0).unwrap().is_empty());
        // The next frame's descriptors came in the read that ended this one.
        let mut a = Arrivals::new();
        came(&mut a, 120, 1);
        assert!(a.take(92, 0).unwrap().is_empty());
        assert_eq!(a.take(92, 1).unwrap().len(), 1);
        // Missing.
        let mut a = Arrivals::new();
        came(&mut a, 60, 1);
        assert_eq!(
            a.take(92, u32::MAX).err(),
            Some(BadFds::Missing {
                announced: u32::MAX,
                came: 1
            })
        );
        // One more than the frame takes, come with its bytes.
        let mut a = Arrivals::new();
        came(&mut a, 60, 3);
        assert_eq!(a.take(92, 2).err(), Some(BadFds::Unclaimed));
        // Some with a frame that announces none.
        let mut a = Arrivals::new();
        came(&mut a, 100, 1);
        assert_eq!(a.take(92, 0).err(), Some(BadFds::Unclaimed));
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
