//! What a pool worker has done, kept where its death cannot take it.
//!
//! Each worker has a memfd of its own, created by the parent: a header page
//! of words the worker keeps up to date (which task it is on, which input of
//! that task, when that input times out, which tasks to skip), then the
//! worker's reply buffer, in which it encodes results as each input
//! finishes. A socket write only happens after a whole task, or several, so
//! a worker that dies mid-chunk would lose every result of the chunk it had
//! not yet written; here they survive it. After the death the parent reads
//! the header and the buffer (the worker is gone, so nothing moves): replies
//! already complete are delivered, the input that was running fails, and
//! the inputs that had not started go to another worker, with nothing run
//! twice.
//!
//! The words are written with plain atomic stores, a few per input, each
//! counter (`STARTED`, `BEGUN`, `DONE`, `FINISHED`) stored last with
//! release ordering, so that wherever the worker stops, the words a counter
//! vouches for were written before it. The parent reads them exactly only
//! after the worker has died or while it is stopped (`SIGSTOP`); while the
//! worker runs, it reads the deadline and input counters only as hints of
//! when to look again.

use crate::codec;
use crate::error::Result;
use crate::sys::shm::{self, Mapping};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// The header page; the reply buffer starts after it.
const HEADER: usize = 4096;
/// Tasks begun (the sequence number of the task now running, plus one).
const STARTED: usize = 0;
/// Tasks whose reply is complete (in the buffer or already sent).
const FINISHED: usize = 8;
/// The sequence number of the task whose reply starts the buffer.
const OUT_FIRST: usize = 16;
/// Bytes of the buffer that hold complete replies (moved once per task,
/// not per input).
const COMMITTED: usize = 24;
/// Inputs begun, over all tasks.
const BEGUN: usize = 32;
/// Inputs whose result is committed to the buffer, over all tasks.
const DONE: usize = 40;
/// `BEGUN` when the running task began.
const TASK_BASE: usize = 48;
/// Two words: where, in the running task's encoded inputs, the inputs after
/// input `k` start is at `REST + 8 * (k % 2)` (`k` counted over all tasks),
/// written before `BEGUN` counts input `k`, so the word for the last input
/// `BEGUN` counts is whole whenever the worker stops.
const REST: usize = 88;
/// Where, in the buffer, the running task's reply starts.
const RUN_AT: usize = 64;
/// `CLOCK_MONOTONIC` nanoseconds at which the running input times out; 0
/// when it has no timeout.
const DEADLINE: usize = 72;
/// Bit `s % 64`: task `s` was cancelled before it began (set by the parent
/// while the worker is stopped); the worker skips it.
const CANCEL: usize = 80;

/// Set (to the task's sequence number plus one) by the parent while the
/// worker is stopped: the task has no owner any more; begin no more of its
/// inputs.
const CUT: usize = 104;

/// Tasks the parent has wholly written to the worker's socket, stored by
/// the parent after each write: a worker about to sleep for its next task
/// spins on it first. A cache line of its own (the words above are the
/// worker's hot line).
const POSTED: usize = 128;
/// Tasks whose replies the worker has sent, stored after each send: a
/// parent about to sleep for a reply spins on it first. A line of its own.
const SENT: usize = 192;

/// A fresh buffer's size, and what a large one shrinks back to.
const SMALL: usize = 64 * 1024;
/// A buffer past this is shrunk once its replies are sent.
const LARGE: usize = 1 << 20;

/// `CLOCK_MONOTONIC` now, in nanoseconds (the same clock in every process).
pub(crate) fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// The parent's side: the file and a live view of the header.
pub(crate) struct Board {
    fd: OwnedFd,
    header: Mapping,
}

/// What a dead worker left: the header's words and its buffer.
#[derive(Debug, Default)]
pub(crate) struct Remains {
    pub(crate) started: u64,
    pub(crate) finished: u64,
    pub(crate) out_first: u64,
    /// The buffer: complete replies, then (if a task was running) that
    /// task's reply so far, then bytes of no meaning.
    pub(crate) out: Vec<u8>,
    pub(crate) begun: u64,
    pub(crate) done: u64,
    pub(crate) task_base: u64,
    /// Where the inputs after the last one begun start in the running
    /// task's encoded inputs.
    pub(crate) rest: u64,
    pub(crate) run_at: u64,
}

impl Board {
    pub(crate) fn new() -> io::Result<Board> {
        let fd = shm::memfd("multiproc-pool-worker", HEADER as u64)?;
        let header = Mapping::new(fd.as_fd(), 0, HEADER)?;
        Ok(Board { fd, header })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn word(&self, at: usize) -> u64 {
        self.header.u64_at(at).load(Relaxed)
    }

    /// Tasks the worker has begun.
    pub(crate) fn started(&self) -> u64 {
        self.word(STARTED)
    }

    /// Tasks the worker has finished.
    pub(crate) fn finished(&self) -> u64 {
        self.word(FINISHED)
    }

    /// Inputs begun and inputs done, over all tasks: an input is running
    /// while the first is ahead of the second.
    pub(crate) fn inputs(&self) -> (u64, u64) {
        (self.word(BEGUN), self.word(DONE))
    }

    /// When the running input times out (`CLOCK_MONOTONIC` ns), if it can.
    pub(crate) fn deadline(&self) -> Option<u64> {
        Some(self.word(DEADLINE)).filter(|&d| d != 0)
    }

    /// Says that the first `tasks` tasks are wholly written to the socket.
    pub(crate) fn posted(&self, tasks: u64) {
        self.header.u64_at(POSTED).store(tasks, Release);
    }

    /// How many tasks' replies the worker has sent.
    pub(crate) fn replies_sent(&self) -> u64 {
        self.header.u64_at(SENT).load(Acquire)
    }

    /// Tells the worker to skip task `seq` (only while it is stopped and has
    /// not begun it).
    pub(crate) fn cancel(&self, seq: u64) {
        self.header
            .u64_at(CANCEL)
            .fetch_or(1 << (seq % 64), Relaxed);
    }

    /// Tells the worker to begin no more inputs of task `seq`, which it
    /// runs now (only while it is stopped).
    pub(crate) fn cut(&self, seq: u64) {
        self.header.u64_at(CUT).store(seq + 1, Relaxed);
    }

    /// Reads what the worker left; only after it has died. The words come
    /// from another process's memory and are checked before they size
    /// anything.
    pub(crate) fn remains(&self) -> io::Result<Remains> {
        let committed = self.word(COMMITTED);
        let size = shm::size(self.fd.as_fd())?;
        let room = size.saturating_sub(HEADER as u64);
        if committed > room {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a worker's reply buffer claims {committed} bytes of {room}"),
            ));
        }
        // The whole buffer: the running task's results lie past `COMMITTED`.
        let mut out = Vec::new();
        if room > 0 {
            let len = usize::try_from(room).map_err(io::Error::other)?;
            Mapping::new(self.fd.as_fd(), HEADER as u64, len)?.read_append(0, len, &mut out);
        }
        let begun = self.word(BEGUN);
        Ok(Remains {
            started: self.word(STARTED),
            finished: self.word(FINISHED),
            out_first: self.word(OUT_FIRST),
            out,
            begun,
            done: self.word(DONE),
            task_base: self.word(TASK_BASE),
            rest: self.word(REST + 8 * (begun.wrapping_sub(1) % 2) as usize),
            run_at: self.word(RUN_AT),
        })
    }
}

/// The board as a worker argument: its descriptor travels as a handle.
pub(crate) struct BoardFd(pub(crate) OwnedFd);

impl Serialize for BoardFd {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::handles::export_fd::<S::Error>(self.0.as_fd())?.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for BoardFd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(deserializer)?;
        Ok(BoardFd(crate::handles::import_fd::<D::Error>(index)?))
    }
}

/// The worker's side: it writes the header and owns the reply buffer.
pub(crate) struct Tracker {
    fd: OwnedFd,
    header: Mapping,
    data: Mapping,
    len: usize,
    /// `BEGUN` and `DONE`, as last stored.
    begun: u64,
    done: u64,
    /// Whether `DEADLINE` may be non-zero.
    deadline: bool,
    /// The task being run.
    seq: u64,
}

impl Tracker {
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Tracker> {
        shm::resize(fd.as_fd(), (HEADER + SMALL) as u64)?;
        let header = Mapping::new(fd.as_fd(), 0, HEADER)?;
        let data = Mapping::new(fd.as_fd(), HEADER as u64, SMALL)?;
        Ok(Tracker {
            fd,
            header,
            data,
            len: 0,
            begun: 0,
            done: 0,
            deadline: false,
            seq: 0,
        })
    }

    #[inline(always)]
    fn set(&self, at: usize, value: u64) {
        self.header.u64_at(at).store(value, Relaxed);
    }

    /// Stores a counter, after everything it vouches for.
    #[inline(always)]
    fn count(&self, at: usize, value: u64) {
        self.header.u64_at(at).store(value, Release);
    }

    /// Task `seq` begins; returns `false` if it was cancelled (the bit is
    /// cleared: skip it). Its reply will start at the buffer's end.
    pub(crate) fn begin_task(&mut self, seq: u64) -> bool {
        self.set(TASK_BASE, self.begun);
        self.set(RUN_AT, self.len as u64);
        self.count(STARTED, seq + 1);
        self.seq = seq;
        let bit = 1 << (seq % 64);
        let cancel = self.header.u64_at(CANCEL);
        if cancel.load(Relaxed) & bit != 0 {
            cancel.fetch_and(!bit, Relaxed);
            return false;
        }
        true
    }

    /// How many tasks the parent has wholly written to the socket.
    #[inline(always)]
    pub(crate) fn posted(&self) -> u64 {
        self.header.u64_at(POSTED).load(Acquire)
    }

    /// Whether the parent cut the running task short (`Board::cut`).
    #[inline(always)]
    pub(crate) fn cut(&self) -> bool {
        self.header.u64_at(CUT).load(Relaxed) == self.seq + 1
    }

    /// The next input begins; the inputs after it start at `rest` in the
    /// task's encoded inputs. `deadline`: when it times out (0: never).
    #[inline(always)]
    pub(crate) fn begin_input(&mut self, rest: usize, deadline: u64) {
        self.set(REST + 8 * (self.begun % 2) as usize, rest as u64);
        if deadline != 0 || self.deadline {
            self.set(DEADLINE, deadline);
            self.deadline = deadline != 0;
        }
        self.begun += 1;
        self.count(BEGUN, self.begun);
    }

    /// The input's result is in the buffer (`COMMITTED` is not moved per
    /// input: after a death the parent reads the whole buffer and decodes
    /// exactly `DONE` values from the running task's reply).
    #[inline(always)]
    pub(crate) fn end_input(&mut self) {
        self.done += 1;
        self.count(DONE, self.done);
    }

    /// The task's reply is complete in the buffer.
    pub(crate) fn end_task(&mut self, seq: u64) {
        if self.deadline {
            self.set(DEADLINE, 0);
            self.deadline = false;
        }
        self.set(COMMITTED, self.len as u64);
        self.count(FINISHED, seq + 1);
    }

    /// The buffer's replies were sent; the next reply, for task `next`,
    /// will start the buffer.
    pub(crate) fn sent(&mut self, next: u64) -> io::Result<()> {
        // In this order: a death in between leaves either the old replies
        // with their old numbers, or none.
        self.set(COMMITTED, 0);
        self.count(OUT_FIRST, next);
        self.count(SENT, next);
        self.len = 0;
        if self.data.len() > LARGE {
            shm::resize(self.fd.as_fd(), (HEADER + SMALL) as u64)?;
            self.data = Mapping::new(self.fd.as_fd(), HEADER as u64, SMALL)?;
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer's bytes.
    pub(crate) fn bytes(&mut self) -> &[u8] {
        let len = self.len;
        &self.data.exclusive_bytes()[..len]
    }

    /// The buffer's bytes, writable.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.data.exclusive_bytes()[..len]
    }

    /// Makes room for `end` bytes in all; returns the whole buffer (its
    /// length is still `len`).
    #[inline]
    fn room(&mut self, end: usize) -> io::Result<&mut [u8]> {
        if end > self.data.len() {
            self.grow(end)?;
        }
        Ok(self.data.exclusive_bytes())
    }

    #[cold]
    fn grow(&mut self, end: usize) -> io::Result<()> {
        let cap = end.max(self.data.len() * 2).max(SMALL);
        // The file keeps what was written; the new mapping sees it.
        shm::resize(self.fd.as_fd(), (HEADER + cap) as u64)?;
        self.data = Mapping::new(self.fd.as_fd(), HEADER as u64, cap)?;
        Ok(())
    }

    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) -> io::Result<()> {
        let (start, end) = (self.len, self.len + bytes.len());
        self.room(end)?[start..end].copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Appends a number's bytes in two fixed-size stores (see
    /// `codec::Packed`), with room for all ten.
    #[inline(always)]
    fn extend_packed(&mut self, packed: codec::Packed) -> io::Result<()> {
        let start = self.len;
        let room = &mut self.room(start + 10)?[start..start + 10];
        room[..8].copy_from_slice(&packed.low.to_le_bytes());
        room[8..].copy_from_slice(&packed.high.to_le_bytes());
        self.len = start + packed.len;
        Ok(())
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Encodes a call's value at the end of the buffer, numbers by hand
    /// (see `codec::prim`); on failure the buffer is as it was.
    #[inline]
    pub(crate) fn encode_value<T: Serialize + 'static>(
        &mut self,
        value: &T,
    ) -> Result<(), codec::CodecError> {
        match codec::pack_prim(value) {
            Some(packed) => {
                self.extend_packed(packed)
                    .map_err(|e| codec::CodecError::Unencodable {
                        type_name: std::any::type_name::<T>(),
                        reason: e.to_string(),
                    })
            }
            None => self.encode(value),
        }
    }

    /// Encodes `value` at the end of the buffer; on failure the buffer is
    /// as it was.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), codec::CodecError> {
        let start = self.len;
        let result = codec::encode_with(
            value,
            Append {
                out: self,
                used: start,
            },
        );
        if result.is_err() {
            self.len = start;
        }
        result
    }
}

/// A postcard flavor that appends to the tracker's buffer.
struct Append<'a> {
    out: &'a mut Tracker,
    used: usize,
}

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self.used + data.len();
        let room = self
            .out
            .room(end)
            .map_err(|_| postcard::Error::SerializeBufferFull)?;
        codec::small_copy(&mut room[self.used..end], data);
        self.used = end;
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<()> {
        self.out.len = self.used;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_worker_wrote_is_read_back_after_it_is_gone() {
        let board = Board::new().unwrap();
        let mut tracker = Tracker::new(board.fd().try_clone_to_owned().unwrap()).unwrap();
        assert!(tracker.begin_task(0));
        tracker.begin_input(1, 0);
        tracker.end_input();
        tracker.extend_from_slice(b"reply").unwrap();
        tracker.begin_input(3, 0);
        tracker.encode(&vec![7u8; 200_000]).unwrap();
        tracker.end_input();
        tracker.begin_input(5, 0);
        drop(tracker);
        let left = board.remains().unwrap();
        assert_eq!(left.started, 1);
        assert_eq!((left.begun, left.done, left.task_base), (3, 2, 0));
        assert_eq!(left.rest, 5);
        assert_eq!(&left.out[..5], b"reply");
        let (tail, _): (Vec<u8>, _) = postcard::take_from_bytes(&left.out[5..]).unwrap();
        assert_eq!(tail.len(), 200_000);
    }

    #[test]
    fn a_cut_task_begins_no_more_inputs() {
        let board = Board::new().unwrap();
        let mut tracker = Tracker::new(board.fd().try_clone_to_owned().unwrap()).unwrap();
        assert!(tracker.begin_task(3));
        assert!(!tracker.cut());
        board.cut(3);
        assert!(tracker.cut());
        assert!(tracker.begin_task(4));
        assert!(!tracker.cut());
    }

    #[test]
    fn a_cancelled_task_is_skipped_once() {
        let board = Board::new().unwrap();
        let mut tracker = Tracker::new(board.fd().try_clone_to_owned().unwrap()).unwrap();
        board.cancel(65);
        assert!(tracker.begin_task(64));
        assert!(!tracker.begin_task(65));
        assert!(tracker.begin_task(65 + 64));
    }

    #[test]
    fn a_buffer_that_claims_more_than_its_file_is_refused() {
        let board = Board::new().unwrap();
        board.header.u64_at(COMMITTED).store(1 << 40, Relaxed);
        let e = board.remains().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
