//! The untyped queue: length-prefixed byte messages in a growable ring in
//! shared memory, with one robust process-shared mutex for producers and one
//! for consumers (the two-lock queue), so a producer and a consumer never
//! wait for each other.
//!
//! Layout of the memfd: a 4 KiB header (the mutexes, positions, futex words),
//! then the ring. Positions (`head`, `tail`) only grow; a byte at position
//! `p` lives at ring offset `p % capacity`, and the capacity is a power of
//! two. Producers own `tail`, `puts` and `unfinished` (under the put lock);
//! consumers own `head` and `gets` (under the get lock); the capacity
//! changes only with both locks held (put lock first). A message becomes
//! visible when `puts` is published, and its space free when `gets` is.
//!
//! Crash safety. Each side commits through its own journal: new values are
//! written to the journal, the journal is marked valid (the commit point),
//! the values are applied, and the journal is cleared. Whoever takes that
//! side's lock next replays a valid journal. So a process killed anywhere
//! inside `put` or `get` leaves the old state or the new one:
//! - a producer killed before its commit put nothing (its `put` never
//!   returned); after it, the message is in the queue;
//! - a consumer killed before its commit took nothing, and the message goes
//!   to the next consumer; after it, the message is gone with that consumer
//!   (it was taken, though never returned to user code).
//!
//! Growth doubles the capacity and copies only into the new upper half, so
//! the old layout stays intact until the new capacity (a single store) is
//! committed.
//!
//! Shutdown (Python 3.13's `Queue.shutdown`) is a flag in the header, set
//! with both locks held: a producer reads it under the put lock, a consumer
//! only when it finds the queue empty, so the hot paths pay one load of a
//! read-mostly cache line at most. An immediate shutdown discards what is
//! left in one get-side commit (a journal of its own kind, so it is
//! crash-safe like any other), which also counts the discarded messages'
//! tasks as done: `discarded` is subtracted from `unfinished` wherever tasks
//! are counted, so no put-side field has to change with it.

use crate::codec::CodecError;
use crate::sys::futex;
use crate::sys::mutex::{self, Locked, MUTEX_SIZE};
use crate::sys::shm::{self, Mapping};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HEADER_LEN: usize = 4096;
const INITIAL_CAPACITY: u64 = 256 << 10;
/// An empty queue whose ring grew beyond this gives the memory back...
const SHRINK_ABOVE: u64 = 16 << 20;
/// ...unless it grew this recently: a stream whose consumer keeps emptying
/// the queue would otherwise shrink and regrow it, faulting every page in
/// afresh, again and again.
const SHRINK_AFTER_NS: u64 = 1_000_000_000;
/// Version 4: the header holds the shutdown flag and the count of messages
/// an immediate shutdown discarded (version 3: the message size limit).
const MAGIC: u64 = u64::from_le_bytes(*b"MPQUEUE4");
/// Each message is preceded by its length.
const PREFIX: u64 = 8;
/// Getters spin this many times on an empty queue before sleeping.
const SPINS: u32 = 400;

/// Header offsets. Each side's hot fields and each futex word sit on their
/// own cache lines.
mod off {
    pub(super) const PUT_MUTEX: usize = 0;
    pub(super) const GET_MUTEX: usize = 64;
    pub(super) const MAGIC: usize = 128;
    pub(super) const MAXSIZE: usize = 136;
    pub(super) const CAPACITY: usize = 144;
    /// The largest message body a put accepts, in bytes (set by the
    /// queue's creator).
    pub(super) const MAX_MESSAGE: usize = 152;
    /// Non-zero once the queue is shut down (set with both locks held,
    /// never cleared).
    pub(super) const SHUTDOWN: usize = 160;
    // Producer side.
    pub(super) const TAIL: usize = 192;
    pub(super) const PUTS: usize = 200;
    pub(super) const UNFINISHED: usize = 208;
    pub(super) const PUT_JOURNAL_VALID: usize = 216;
    /// tail, puts, unfinished.
    pub(super) const PUT_JOURNAL: usize = 224;
    // Consumer side.
    pub(super) const HEAD: usize = 256;
    pub(super) const GETS: usize = 264;
    pub(super) const GET_JOURNAL_VALID: usize = 272;
    /// head, gets; for a drain head, discarded, gets.
    pub(super) const GET_JOURNAL: usize = 280;
    /// Tasks of messages discarded by an immediate shutdown, counted as
    /// done (changed only with both locks held, or by the replay of a
    /// drain's journal).
    pub(super) const DISCARDED: usize = 304;
    /// The eventfd has been written since the queue last became non-empty.
    pub(super) const SIGNALED: usize = 320;
    pub(super) const NOT_EMPTY: usize = 384;
    pub(super) const GETTERS: usize = 388;
    pub(super) const NOT_FULL: usize = 448;
    pub(super) const PUTTERS: usize = 452;
    pub(super) const ALL_DONE: usize = 512;
    pub(super) const JOINERS: usize = 516;
    pub(super) const POLL_WAITERS: usize = 576;
    /// When the ring last grew (`CLOCK_MONOTONIC`, ns).
    pub(super) const GROWN_AT: usize = 640;
}

const _: () = assert!(MUTEX_SIZE <= 64);

/// How long an operation may wait for space, data or completion.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Not at all: answer from the current state (the mutex, held only for
    /// copies, is still waited for).
    No,
    /// Until this instant (the mutex included).
    Until(Instant),
    /// For ever.
    Forever,
}

impl Wait {
    pub(crate) fn timeout(timeout: Duration) -> Wait {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => Wait::Until(deadline),
            None => Wait::Forever,
        }
    }

    fn lock_deadline(self) -> Option<Instant> {
        match self {
            Wait::Until(deadline) => Some(deadline),
            Wait::No | Wait::Forever => None,
        }
    }

    /// Time left to sleep: `Some(None)` for ever, `None` if no time is left.
    fn remaining(self) -> Option<Option<Duration>> {
        match self {
            Wait::No => None,
            Wait::Forever => Some(None),
            Wait::Until(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (!left.is_zero()).then_some(Some(left))
            }
        }
    }
}

/// Why a raw put did not happen.
#[derive(Debug)]
pub(crate) enum PutFail {
    Full,
    Closed,
    /// The queue was shut down.
    ShutDown,
    Os(io::Error),
    /// The message's bytes could not be written (see [`RawQueue::put_by`]).
    Encode(CodecError),
}

/// The room a message takes in the ring, written front to back.
pub(crate) struct RingWriter<'a> {
    ring: &'a Mapping,
    pos: u64,
    end: u64,
}

impl RingWriter<'_> {
    /// Appends `bytes`; `false` (and nothing written) if they do not fit in
    /// the message's room.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> bool {
        if self.end - self.pos < bytes.len() as u64 {
            return false;
        }
        write_ring(self.ring, self.pos, bytes);
        self.pos += bytes.len() as u64;
        true
    }
}

/// Why a raw get returned nothing.
#[derive(Debug)]
pub(crate) enum GetFail {
    Empty,
    Closed,
    /// The queue was shut down and is empty.
    ShutDown,
    Os(io::Error),
}

impl From<io::Error> for PutFail {
    fn from(e: io::Error) -> Self {
        PutFail::Os(e)
    }
}

impl From<io::Error> for GetFail {
    fn from(e: io::Error) -> Self {
        GetFail::Os(e)
    }
}

/// One process's view of a queue: the shared file, its header mapping and
/// its current mapping of the ring.
#[derive(Debug)]
pub(crate) struct RawQueue {
    memfd: OwnedFd,
    /// Readable while the queue is non-empty and someone is in `wait`.
    eventfd: OwnedFd,
    header: Mapping,
    /// The ring as this process last mapped it. An operation holds its own
    /// `Arc` while it copies, so a re-map by another thread never pulls the
    /// memory from under it.
    ring: Mutex<Option<Arc<Mapping>>>,
    /// `close()` was called on this handle.
    closed: AtomicBool,
}

impl RawQueue {
    /// A new queue; `maxsize` 0 is unbounded; a put of a message longer
    /// than `max_message` bytes is refused.
    pub(crate) fn new(maxsize: u64, max_message: u64) -> io::Result<RawQueue> {
        let memfd = shm::memfd("multiproc-queue", HEADER_LEN as u64 + INITIAL_CAPACITY)?;
        let header = Mapping::new(memfd.as_fd(), 0, HEADER_LEN)?;
        mutex::init(&header, off::PUT_MUTEX)?;
        mutex::init(&header, off::GET_MUTEX)?;
        header
            .u64_at(off::MAXSIZE)
            .store(maxsize, Ordering::Relaxed);
        header
            .u64_at(off::CAPACITY)
            .store(INITIAL_CAPACITY, Ordering::Relaxed);
        header
            .u64_at(off::MAX_MESSAGE)
            .store(max_message, Ordering::Relaxed);
        header.u64_at(off::MAGIC).store(MAGIC, Ordering::Release);
        let eventfd = OwnedFd::from(nix::sys::eventfd::EventFd::from_value_and_flags(
            0,
            nix::sys::eventfd::EfdFlags::EFD_CLOEXEC | nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
        )?);
        Ok(RawQueue {
            memfd,
            eventfd,
            header,
            ring: Mutex::new(None),
            closed: AtomicBool::new(false),
        })
    }

    /// A queue received from another process: checks it is one.
    pub(crate) fn from_fds(memfd: OwnedFd, eventfd: OwnedFd) -> io::Result<RawQueue> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        if shm::size(memfd.as_fd())? < HEADER_LEN as u64 {
            return Err(invalid(
                "the descriptor is not a multiproc queue (too small)",
            ));
        }
        let header = Mapping::new(memfd.as_fd(), 0, HEADER_LEN)?;
        if header.u64_at(off::MAGIC).load(Ordering::Acquire) != MAGIC {
            return Err(invalid(
                "the descriptor is not a multiproc queue (bad magic)",
            ));
        }
        Ok(RawQueue {
            memfd,
            eventfd,
            header,
            ring: Mutex::new(None),
            closed: AtomicBool::new(false),
        })
    }

    pub(crate) fn memfd(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
    }

    pub(crate) fn eventfd(&self) -> BorrowedFd<'_> {
        self.eventfd.as_fd()
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        self.header.u32_at(offset)
    }

    fn u64(&self, offset: usize) -> &AtomicU64 {
        self.header.u64_at(offset)
    }

    pub(crate) fn maxsize(&self) -> u64 {
        self.u64(off::MAXSIZE).load(Ordering::Relaxed)
    }

    /// The largest message a put accepts, in bytes: set at creation, read
    /// from the shared header (so the same in every process).
    pub(crate) fn max_message(&self) -> u64 {
        self.u64(off::MAX_MESSAGE).load(Ordering::Relaxed)
    }

    /// Sets the limit for every handle, in every process.
    pub(crate) fn set_max_message(&self, bytes: u64) {
        self.u64(off::MAX_MESSAGE).store(bytes, Ordering::Relaxed);
    }

    /// Messages in the queue now (a snapshot, as Python's `qsize`).
    pub(crate) fn len(&self) -> u64 {
        let gets = self.u64(off::GETS).load(Ordering::Acquire);
        let puts = self.u64(off::PUTS).load(Ordering::Acquire);
        puts.saturating_sub(gets)
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Checks what a crashed or hostile peer may have left in the header
    /// before any of it sizes a copy, a growth or an allocation: positions
    /// in order and their distance within the ring, counts in order, room
    /// for one more message. `capacity` is the length of the ring as
    /// [`ring`](Self::ring) mapped (and checked) it, not the header's word,
    /// which a peer may change again. Call with either lock held; `head`
    /// may be stale on the put side (it only grows, and never passes
    /// `tail`).
    fn check_positions(
        &self,
        head: u64,
        tail: u64,
        gets: u64,
        puts: u64,
        capacity: u64,
    ) -> io::Result<()> {
        let consistent = capacity_is_valid(capacity)
            && head <= tail
            && tail - head <= capacity
            && gets <= puts
            && puts < u64::MAX
            && tail < u64::MAX / 2;
        if consistent {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "queue memory is corrupt (head {head}, tail {tail}, gets {gets}, puts {puts}, \
                     capacity {capacity})"
                ),
            ))
        }
    }

    /// Takes one side's mutex (or times out: `None`) and replays that side's
    /// journal, repairing whatever a holder killed mid-commit left.
    fn lock(&self, side: Side, deadline: Option<Instant>) -> io::Result<Option<Held<'_>>> {
        match mutex::lock(&self.header, side.mutex(), deadline)? {
            Locked::TimedOut => return Ok(None),
            // The journal makes the state consistent either way.
            Locked::Acquired | Locked::OwnerDied => {}
        }
        let held = Held { q: self, side };
        held.replay();
        Ok(Some(held))
    }

    /// The ring at the capacity in the header, mapped afresh if this
    /// process's mapping is stale. Call with either lock held (the capacity
    /// cannot change then).
    fn ring(&self) -> io::Result<Arc<Mapping>> {
        let capacity = self.u64(off::CAPACITY).load(Ordering::Acquire);
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(map) = ring.as_ref().filter(|m| m.len() as u64 == capacity) {
            return Ok(map.clone());
        }
        let file = shm::size(self.memfd.as_fd())?;
        if !capacity_is_valid(capacity) || file < HEADER_LEN as u64 + capacity {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "queue memory is corrupt (capacity {capacity}, not a power of two from \
                     {INITIAL_CAPACITY} up to the file's {} bytes)",
                    file.saturating_sub(HEADER_LEN as u64)
                ),
            ));
        }
        *ring = None;
        let map = Arc::new(Mapping::new(
            self.memfd.as_fd(),
            HEADER_LEN as u64,
            capacity as usize,
        )?);
        *ring = Some(map.clone());
        Ok(map)
    }

    /// Appends one message. [`Wait::Forever`] blocks while a bounded queue is
    /// full; [`Wait::No`] only tries.
    pub(crate) fn put(&self, body: &[u8], wait: Wait) -> Result<(), PutFail> {
        self.put_by(body.len() as u64, wait, |w| {
            w.write(body);
            Ok(())
        })
    }

    /// As [`put`](Self::put) for a message of `len` bytes that `fill` writes
    /// straight into the ring, under the put lock. If `fill` fails or writes
    /// fewer than `len` bytes, nothing is put. A message longer than
    /// [`max_message`](Self::max_message) is refused before anything is
    /// locked, grown or written.
    pub(crate) fn put_by(
        &self,
        len: u64,
        wait: Wait,
        fill: impl FnOnce(&mut RingWriter<'_>) -> Result<(), CodecError>,
    ) -> Result<(), PutFail> {
        if self.is_closed() {
            return Err(PutFail::Closed);
        }
        let limit = self.max_message();
        if len > limit {
            return Err(oversized(len, limit));
        }
        let need = len
            .checked_add(PREFIX)
            .ok_or_else(|| oversized(len, u64::MAX))?;
        let maxsize = self.maxsize();
        let mut pace_until = None;
        loop {
            let Some(g) = self.lock(Side::Put, wait.lock_deadline())? else {
                return Err(PutFail::Full);
            };
            // Set under this lock, so the lock orders it with this put.
            if self.word(off::SHUTDOWN).load(Ordering::Relaxed) != 0 {
                return Err(PutFail::ShutDown);
            }
            let tail = self.u64(off::TAIL).load(Ordering::Relaxed);
            let puts = self.u64(off::PUTS).load(Ordering::Relaxed);
            let unfinished = self.u64(off::UNFINISHED).load(Ordering::Relaxed);
            let gets = self.u64(off::GETS).load(Ordering::Acquire);
            // A stale `head` only under-counts free space.
            let head = self.u64(off::HEAD).load(Ordering::Acquire);
            // Maps the ring at the header's capacity, checked against the
            // file, before that capacity bounds anything below.
            let mut ring = self.ring()?;
            let capacity = ring.len() as u64;
            self.check_positions(head, tail, gets, puts, capacity)?;
            if unfinished > puts {
                return Err(PutFail::Os(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "queue memory is corrupt (more unfinished tasks than puts)",
                )));
            }
            if maxsize > 0 && puts - gets >= maxsize {
                let timeout = wait.remaining().ok_or(PutFail::Full)?;
                self.sleep_for_room(g, gets, timeout);
                continue;
            }
            // Checked, though it cannot overflow for a message that is in
            // memory: the distance is at most the capacity (a power of two,
            // so at most 2^63), and `need` below 2^63.
            let room = (tail - head)
                .checked_add(need)
                .ok_or_else(|| oversized(len, u64::MAX))?;
            if room > capacity {
                // Pace a producer that outruns an active consumer instead
                // of growing a large ring further: fresh pages cost a fault
                // and zeroing each, far more than waiting for the consumer
                // to free room. The wait is bounded (about as long as
                // copying the message), so `put` still never blocks.
                if capacity >= PACE_ABOVE && wait.remaining().is_some() {
                    let until = *pace_until.get_or_insert_with(|| Instant::now() + pace_for(len));
                    let left = until.saturating_duration_since(Instant::now());
                    if !left.is_zero() {
                        let timeout = wait.remaining().flatten().map_or(left, |t| t.min(left));
                        drop(ring);
                        self.sleep_for_room(g, gets, Some(timeout));
                        continue;
                    }
                }
                drop(ring);
                self.grow(tail, room)?;
                ring = self.ring()?;
            }
            // The ring as mapped now must hold the whole message (its
            // writes wrap around the end at most once).
            if need > ring.len() as u64 {
                return Err(PutFail::Os(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "queue memory is corrupt (the ring shrank under a put)",
                )));
            }
            write_ring(&ring, tail, &len.to_le_bytes());
            let mut writer = RingWriter {
                ring: &ring,
                pos: tail + PREFIX,
                end: tail + need,
            };
            fill(&mut writer).map_err(PutFail::Encode)?;
            if writer.pos != writer.end {
                return Err(PutFail::Os(io::Error::other(
                    "a message left part of its room in the queue unwritten",
                )));
            }
            g.commit(&[tail + need, unfinished + 1, puts + 1]);
            if self.word(off::POLL_WAITERS).load(Ordering::SeqCst) > 0 {
                self.signal_pollers();
            }
            drop(g);
            self.wake(off::NOT_EMPTY, off::GETTERS, 1);
            return Ok(());
        }
    }

    /// Releases the put lock `g` and sleeps until a consumer takes a message
    /// (if none did since `gets` was read) or `timeout` passes.
    fn sleep_for_room(&self, g: Held<'_>, gets: u64, timeout: Option<Duration>) {
        let seq = self.word(off::NOT_FULL).load(Ordering::SeqCst);
        self.word(off::PUTTERS).fetch_add(1, Ordering::SeqCst);
        // A consumer publishes `gets`, then looks for sleepers; we
        // announce, then look at `gets`: one of us sees the other.
        let changed = self.u64(off::GETS).load(Ordering::SeqCst) != gets;
        drop(g);
        if !changed {
            futex::wait(self.word(off::NOT_FULL), seq, timeout);
        }
        self.word(off::PUTTERS).fetch_sub(1, Ordering::SeqCst);
    }

    /// Removes the oldest message into `body`. [`Wait::Forever`] blocks while
    /// empty; [`Wait::No`] only tries.
    pub(crate) fn get(&self, wait: Wait, body: &mut Vec<u8>) -> Result<(), GetFail> {
        if self.is_closed() {
            return Err(GetFail::Closed);
        }
        loop {
            if self.len() == 0 && wait.remaining().is_some() {
                spin_until(|| self.len() > 0);
            }
            let Some(g) = self.lock(Side::Get, wait.lock_deadline())? else {
                return Err(self.empty_or_shut_down());
            };
            let head = self.u64(off::HEAD).load(Ordering::Relaxed);
            let gets = self.u64(off::GETS).load(Ordering::Relaxed);
            let puts = self.u64(off::PUTS).load(Ordering::Acquire);
            if puts == gets && self.word(off::PUT_JOURNAL_VALID).load(Ordering::Acquire) == 1 {
                // A producer died after committing a put it had not applied:
                // the next holder of the put lock replays it. Take that lock
                // now (only trying, as the put lock comes first), so that a
                // committed message is not reported missing until some
                // producer comes along. A live producer mid-commit holds the
                // lock: it publishes the message itself.
                if let Some(put) = self.try_lock(Side::Put)? {
                    drop(put);
                    drop(g);
                    continue;
                }
            }
            if puts == gets {
                // Set under this lock too; read only when empty, so the
                // flag costs a consumer nothing while messages flow.
                if self.word(off::SHUTDOWN).load(Ordering::Relaxed) != 0 {
                    return Err(GetFail::ShutDown);
                }
                let timeout = wait.remaining().ok_or(GetFail::Empty)?;
                let seq = self.word(off::NOT_EMPTY).load(Ordering::SeqCst);
                self.word(off::GETTERS).fetch_add(1, Ordering::SeqCst);
                let changed = self.u64(off::PUTS).load(Ordering::SeqCst) != puts;
                drop(g);
                if !changed {
                    futex::wait(self.word(off::NOT_EMPTY), seq, timeout);
                }
                self.word(off::GETTERS).fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let ring = self.ring()?;
            let tail = self.u64(off::TAIL).load(Ordering::Acquire);
            // Against the ring as mapped: at least the initial capacity, so
            // the 8-byte prefix fits, and the length is bounded below by the
            // positions' distance, so the body fits too.
            self.check_positions(head, tail, gets, puts, ring.len() as u64)?;
            let mut prefix = [0u8; PREFIX as usize];
            read_ring(&ring, head, &mut prefix);
            let len = u64::from_le_bytes(prefix);
            if (tail - head)
                .checked_sub(PREFIX)
                .is_none_or(|stored| len > stored)
            {
                return Err(GetFail::Os(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "queue memory is corrupt (message longer than the queue's contents)",
                )));
            }
            body.clear();
            body.try_reserve_exact(len as usize)
                .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
            read_ring_append(&ring, head + PREFIX, len as usize, body);
            drop(ring);
            g.commit(&[head + PREFIX + len, gets + 1]);
            let now_empty = self.u64(off::PUTS).load(Ordering::SeqCst) == gets + 1;
            if now_empty {
                self.unsignal_pollers();
                self.shrink_if_large()?;
            }
            drop(g);
            self.wake(off::NOT_FULL, off::PUTTERS, 1);
            // A getter woken for a message it did not take (it timed out or
            // died) must not leave others asleep: pass the wake on.
            if !now_empty {
                self.wake(off::NOT_EMPTY, off::GETTERS, 1);
            }
            return Ok(());
        }
    }

    /// Doubles the ring until `needed` bytes fit. Called with the put lock;
    /// takes the get lock too, so no consumer reads meanwhile. Crash-safe:
    /// live bytes whose position falls in the new upper half are copied
    /// there, and only then is the new capacity (one store) committed.
    fn grow(&self, tail: u64, needed: u64) -> io::Result<()> {
        let consumers = self
            .lock(Side::Get, None)?
            .expect("a lock without deadline is taken");
        let head = self.u64(off::HEAD).load(Ordering::Relaxed);
        loop {
            let old = self.u64(off::CAPACITY).load(Ordering::Relaxed);
            if old >= needed {
                break;
            }
            let new = old
                .checked_mul(2)
                .filter(|n| *n <= isize::MAX as u64 / 2)
                .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
            shm::resize(self.memfd.as_fd(), HEADER_LEN as u64 + new)?;
            let ring = Mapping::new(self.memfd.as_fd(), HEADER_LEN as u64, new as usize)?;
            let mut pos = head;
            while pos < tail {
                let end = ((pos / old + 1) * old).min(tail);
                if (pos / old) % 2 == 1 {
                    let at = (pos % old) as usize;
                    ring.copy_within(at, at + old as usize, (end - pos) as usize);
                }
                pos = end;
            }
            self.u64(off::CAPACITY).store(new, Ordering::Release);
            self.u64(off::GROWN_AT).store(now_ns(), Ordering::Relaxed);
        }
        drop(consumers);
        Ok(())
    }

    /// Called by a consumer that just emptied the queue, with the get lock:
    /// if the ring grew large, give the memory back. Needs the put lock too;
    /// taking it out of order is only tried, never waited for.
    fn shrink_if_large(&self) -> io::Result<()> {
        if self.u64(off::CAPACITY).load(Ordering::Relaxed) <= SHRINK_ABOVE
            || now_ns().saturating_sub(self.u64(off::GROWN_AT).load(Ordering::Relaxed))
                < SHRINK_AFTER_NS
        {
            return Ok(());
        }
        let Some(producers) = self.try_lock(Side::Put)? else {
            return Ok(());
        };
        self.shrink_if_empty()?;
        drop(producers);
        Ok(())
    }

    /// Gives the ring's memory back down to the initial capacity if the
    /// queue is empty. Call with both locks held.
    fn shrink_if_empty(&self) -> io::Result<()> {
        let empty = self.u64(off::PUTS).load(Ordering::Relaxed)
            == self.u64(off::GETS).load(Ordering::Relaxed);
        if empty && self.u64(off::CAPACITY).load(Ordering::Relaxed) != INITIAL_CAPACITY {
            // Positions stay: with nothing stored, any capacity fits them.
            self.u64(off::CAPACITY)
                .store(INITIAL_CAPACITY, Ordering::Release);
            shm::resize(self.memfd.as_fd(), HEADER_LEN as u64 + INITIAL_CAPACITY)?;
            *self.ring.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        Ok(())
    }

    fn try_lock(&self, side: Side) -> io::Result<Option<Held<'_>>> {
        match mutex::try_lock(&self.header, side.mutex())? {
            Locked::TimedOut => Ok(None),
            Locked::Acquired | Locked::OwnerDied => {
                let held = Held { q: self, side };
                held.replay();
                Ok(Some(held))
            }
        }
    }

    /// After a change sleepers on `word` wait for: if any announced
    /// themselves, move the word on and wake `n` of them.
    fn wake(&self, word: usize, sleepers: usize, n: i32) {
        if self.word(sleepers).load(Ordering::SeqCst) > 0 {
            self.word(word).fetch_add(1, Ordering::SeqCst);
            futex::wake(self.word(word), n);
        }
    }

    /// Tasks put and not yet done: `unfinished` less the tasks of messages
    /// an immediate shutdown discarded. Call with the put lock held.
    fn outstanding(&self) -> u64 {
        let unfinished = self.u64(off::UNFINISHED).load(Ordering::Relaxed);
        // Saturating: a drain's replay (under the get lock alone) may land
        // between a task_done's reads, which then counts one task too few.
        unfinished.saturating_sub(self.u64(off::DISCARDED).load(Ordering::SeqCst))
    }

    /// Why a get found nothing without looking under the lock (its lock
    /// wait timed out): `ShutDown` if the queue is shut down and empty.
    fn empty_or_shut_down(&self) -> GetFail {
        if self.is_shut_down() && self.len() == 0 {
            GetFail::ShutDown
        } else {
            GetFail::Empty
        }
    }

    /// JoinableQueue: one task finished. `false` if none was outstanding.
    pub(crate) fn task_done(&self) -> io::Result<bool> {
        let g = self.lock(Side::Put, None)?.expect("no deadline");
        let tail = self.u64(off::TAIL).load(Ordering::Relaxed);
        let puts = self.u64(off::PUTS).load(Ordering::Relaxed);
        let unfinished = self.u64(off::UNFINISHED).load(Ordering::Relaxed);
        let outstanding = self.outstanding();
        if outstanding == 0 {
            return Ok(false);
        }
        g.commit(&[tail, unfinished - 1, puts]);
        drop(g);
        if outstanding == 1 {
            self.wake(off::ALL_DONE, off::JOINERS, i32::MAX);
        }
        Ok(true)
    }

    /// JoinableQueue: waits until every message put has been `task_done`.
    /// Returns `false` at the deadline.
    pub(crate) fn join(&self, wait: Wait) -> io::Result<bool> {
        loop {
            let Some(g) = self.lock(Side::Put, wait.lock_deadline())? else {
                return Ok(false);
            };
            let outstanding = self.outstanding();
            if outstanding == 0 {
                return Ok(true);
            }
            let Some(timeout) = wait.remaining() else {
                return Ok(false);
            };
            // task_done and a shutdown change the count under the same
            // lock, after us; only the replay of a dead shutdown's drain
            // does not (it holds the get lock alone), so look once more
            // after announcing ourselves.
            let seq = self.word(off::ALL_DONE).load(Ordering::SeqCst);
            self.word(off::JOINERS).fetch_add(1, Ordering::SeqCst);
            let changed = self.outstanding() != outstanding;
            drop(g);
            if !changed {
                futex::wait(self.word(off::ALL_DONE), seq, timeout);
            }
            self.word(off::JOINERS).fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Whether the queue was shut down (by any process).
    pub(crate) fn is_shut_down(&self) -> bool {
        self.word(off::SHUTDOWN).load(Ordering::SeqCst) != 0
    }

    /// Python's `Queue.shutdown`: from now on every put fails, and every
    /// get once the queue is empty. `immediate` discards what is left and
    /// counts the discarded messages' tasks as done. Wakes every process
    /// blocked in a put, a get, a join or a `wait` on the queue. Idempotent;
    /// an immediate shutdown after a plain one discards what is left then.
    pub(crate) fn shutdown(&self, immediate: bool) -> io::Result<()> {
        let producers = self.lock(Side::Put, None)?.expect("no deadline");
        let consumers = self.lock(Side::Get, None)?.expect("no deadline");
        // With both locks held: a put or get that holds either lock after
        // us sees the flag, and none of them is half-way through.
        self.word(off::SHUTDOWN).store(1, Ordering::SeqCst);
        let drained = if immediate {
            self.drain(&consumers)
        } else {
            Ok(())
        };
        drop(consumers);
        drop(producers);
        self.wake_everyone();
        drained
    }

    /// Discards every message in the queue and counts their tasks as done,
    /// in one commit. Call with both locks held, `consumers` the get lock.
    fn drain(&self, consumers: &Held<'_>) -> io::Result<()> {
        let head = self.u64(off::HEAD).load(Ordering::Relaxed);
        let gets = self.u64(off::GETS).load(Ordering::Relaxed);
        let tail = self.u64(off::TAIL).load(Ordering::Relaxed);
        let puts = self.u64(off::PUTS).load(Ordering::Relaxed);
        let ring = self.ring()?;
        self.check_positions(head, tail, gets, puts, ring.len() as u64)?;
        drop(ring);
        if puts == gets {
            return Ok(());
        }
        let unfinished = self.u64(off::UNFINISHED).load(Ordering::Relaxed);
        let discarded = self.u64(off::DISCARDED).load(Ordering::Relaxed);
        // As Python: a discarded message's task counts as done only while
        // tasks are outstanding (task_done may have been called for it
        // already).
        let done = (puts - gets).min(unfinished.saturating_sub(discarded));
        consumers.commit_drain(&[tail, discarded + done, puts]);
        // Nothing is ever put again: all the memory can go back.
        self.shrink_if_empty()
    }

    /// After a shutdown (or the replay of its drain): wake every sleeper,
    /// to look at the flag; make the eventfd readable for `wait`.
    fn wake_everyone(&self) {
        self.wake(off::NOT_EMPTY, off::GETTERS, i32::MAX);
        self.wake(off::NOT_FULL, off::PUTTERS, i32::MAX);
        self.wake(off::ALL_DONE, off::JOINERS, i32::MAX);
        if self.word(off::POLL_WAITERS).load(Ordering::SeqCst) > 0 {
            self.signal_pollers();
        }
    }

    /// For `wait`: registers a poller, so producers make the eventfd readable.
    pub(crate) fn arm(&self) {
        self.word(off::POLL_WAITERS).fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn disarm(&self) {
        self.word(off::POLL_WAITERS).fetch_sub(1, Ordering::SeqCst);
    }

    /// After a put while someone is in `wait`: make the eventfd readable if
    /// it is not already.
    fn signal_pollers(&self) {
        if self.word(off::SIGNALED).swap(1, Ordering::SeqCst) == 0 {
            let _ = nix::unistd::write(self.eventfd.as_fd(), &1u64.to_ne_bytes());
        }
    }

    /// After the queue became empty: drain the eventfd; if a producer slipped
    /// a message in meanwhile (and, seeing the signal set, did not write),
    /// or the queue was shut down (a shut-down queue stays ready), signal
    /// again.
    fn unsignal_pollers(&self) {
        if self.word(off::SIGNALED).swap(0, Ordering::SeqCst) == 1 {
            let mut buf = [0u8; 8];
            let _ = nix::unistd::read(self.eventfd.as_fd(), &mut buf);
            if (self.len() > 0 || self.is_shut_down())
                && self.word(off::POLL_WAITERS).load(Ordering::SeqCst) > 0
            {
                self.signal_pollers();
            }
        }
    }

    /// For `wait`: the eventfd is readable but the queue is empty (a consumer
    /// died between emptying it and draining): drain it.
    pub(crate) fn repair_signal(&self) -> io::Result<()> {
        if let Some(g) = self.lock(Side::Get, None)? {
            if self.len() == 0 && !self.is_shut_down() {
                self.word(off::SIGNALED).store(1, Ordering::SeqCst);
                self.unsignal_pollers();
            }
            drop(g);
        }
        Ok(())
    }
}

/// A producer that would grow a ring of at least this size waits a little
/// for a consumer to make room first.
const PACE_ABOVE: u64 = 4 << 20;

/// How long a producer waits for room before growing the ring: about as long
/// as copying its message takes (4 GB/s), within 20 µs..2 ms.
fn pace_for(len: u64) -> Duration {
    Duration::from_nanos(len / 4).clamp(Duration::from_micros(20), Duration::from_millis(2))
}

/// A message of `len` bytes is over `limit`: nothing is put.
fn oversized(len: u64, limit: u64) -> PutFail {
    PutFail::Encode(CodecError::Oversized { len, limit })
}

/// A ring capacity this crate can have made: a power of two (positions map
/// to offsets modulo it, and growth doubles it), never below the initial
/// one (a queue starts there and shrinks back only to there). Anything
/// else is corruption; in particular a ring shorter than a message's
/// 8-byte length prefix cannot be read or written.
fn capacity_is_valid(capacity: u64) -> bool {
    capacity.is_power_of_two() && capacity >= INITIAL_CAPACITY
}

/// The system-wide monotonic clock in ns (the same in every process).
fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

fn spin_until(mut ready: impl FnMut() -> bool) {
    for _ in 0..SPINS {
        if ready() {
            return;
        }
        std::hint::spin_loop();
    }
}

/// Copies `bytes` in at position `pos`, wrapping around the ring's end.
fn write_ring(ring: &Mapping, pos: u64, bytes: &[u8]) {
    let cap = ring.len();
    let at = (pos % cap as u64) as usize;
    let first = bytes.len().min(cap - at);
    ring.write(at, &bytes[..first]);
    if first < bytes.len() {
        ring.write(0, &bytes[first..]);
    }
}

/// Copies out from position `pos`, wrapping around the ring's end.
fn read_ring(ring: &Mapping, pos: u64, out: &mut [u8]) {
    let cap = ring.len();
    let at = (pos % cap as u64) as usize;
    let first = out.len().min(cap - at);
    ring.read(at, &mut out[..first]);
    if first < out.len() {
        ring.read(0, &mut out[first..]);
    }
}

/// Appends `len` bytes from position `pos` to `out`, wrapping around the
/// ring's end.
fn read_ring_append(ring: &Mapping, pos: u64, len: usize, out: &mut Vec<u8>) {
    let cap = ring.len();
    let at = (pos % cap as u64) as usize;
    let first = len.min(cap - at);
    ring.read_append(at, first, out);
    if first < len {
        ring.read_append(0, len - first, out);
    }
}

/// Which of the two locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Put,
    Get,
}

impl Side {
    fn mutex(self) -> usize {
        match self {
            Side::Put => off::PUT_MUTEX,
            Side::Get => off::GET_MUTEX,
        }
    }

    /// Where the side's journal lives, and the fields it covers, in order.
    fn journal(self) -> (usize, usize, &'static [usize]) {
        match self {
            Side::Put => (
                off::PUT_JOURNAL_VALID,
                off::PUT_JOURNAL,
                &[off::TAIL, off::UNFINISHED, off::PUTS],
            ),
            Side::Get => (
                off::GET_JOURNAL_VALID,
                off::GET_JOURNAL,
                &[off::HEAD, off::GETS],
            ),
        }
    }
}

/// A side's journal-valid word: a commit of the side's own fields is due.
const JOURNALED: u32 = 1;
/// The get side's journal-valid word: a drain is due (an immediate
/// shutdown's commit, of [`DRAIN_FIELDS`]).
const DRAIN_JOURNALED: u32 = 2;
/// What a drain commits, in order: the count (`gets`) last, as every commit.
const DRAIN_FIELDS: &[usize] = &[off::HEAD, off::DISCARDED, off::GETS];

/// One side's mutex, held. Unlocks on drop.
struct Held<'a> {
    q: &'a RawQueue,
    side: Side,
}

impl Held<'_> {
    /// Journal, commit point, apply, clear. `values` follow
    /// [`Side::journal`]'s field order: a put `[tail, unfinished, puts]`, a
    /// get `[head, gets]`. The count (`puts` or `gets`) is applied last, with
    /// SeqCst: publishing it is what shows the change to the other side.
    fn commit(&self, values: &[u64]) {
        let (_, _, fields) = self.side.journal();
        self.commit_fields(JOURNALED, fields, values);
    }

    /// An immediate shutdown's drain, `[head, discarded, gets]`, through the
    /// get side's journal, which the get lock's next holder replays if the
    /// shutdown dies half-way. `discarded` is the one field a drain shares
    /// with the put side; the put side reads it knowing that a replay may
    /// change it under the get lock alone (see [`RawQueue::outstanding`]).
    fn commit_drain(&self, values: &[u64; 3]) {
        debug_assert_eq!(self.side, Side::Get);
        self.commit_fields(DRAIN_JOURNALED, DRAIN_FIELDS, values);
    }

    fn commit_fields(&self, mark: u32, fields: &[usize], values: &[u64]) {
        let (valid, journal, _) = self.side.journal();
        debug_assert_eq!(values.len(), fields.len());
        for (i, value) in values.iter().enumerate() {
            self.q.u64(journal + 8 * i).store(*value, Ordering::Relaxed);
        }
        self.q.word(valid).store(mark, Ordering::Release);
        self.apply(mark, fields, values);
        self.q.word(valid).store(0, Ordering::Release);
    }

    fn apply(&self, mark: u32, fields: &[usize], values: &[u64]) {
        let last = fields.len() - 1;
        for (i, (field, value)) in fields.iter().zip(values).enumerate() {
            // A drain is rare: all SeqCst, so a joiner that announced itself
            // sees `discarded` (see `join`).
            let order = if i == last || mark == DRAIN_JOURNALED {
                Ordering::SeqCst
            } else {
                Ordering::Relaxed
            };
            self.q.u64(*field).store(*value, order);
        }
    }

    /// Re-applies a commit its holder died in the middle of; after a drain,
    /// wakes every sleeper, which the dead shutdown may not have done.
    fn replay(&self) {
        let (valid, journal, fields) = self.side.journal();
        let mark = self.q.word(valid).load(Ordering::Acquire);
        let fields = match mark {
            JOURNALED => fields,
            DRAIN_JOURNALED if self.side == Side::Get => DRAIN_FIELDS,
            _ => return,
        };
        let mut values = [0u64; 3];
        for (i, value) in values.iter_mut().enumerate().take(fields.len()) {
            *value = self.q.u64(journal + 8 * i).load(Ordering::Relaxed);
        }
        self.apply(mark, fields, &values[..fields.len()]);
        self.q.word(valid).store(0, Ordering::Release);
        if mark == DRAIN_JOURNALED {
            self.q.wake_everyone();
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = mutex::unlock(&self.q.header, self.side.mutex());
    }
}

/// A word of a queue's header, for the futex helper of the async forms.
#[cfg(feature = "tokio")]
struct QueueWord {
    queue: Arc<RawQueue>,
    offset: usize,
}

#[cfg(feature = "tokio")]
impl crate::aio::FutexWord for QueueWord {
    fn word(&self) -> &AtomicU32 {
        self.queue.word(self.offset)
    }
}

/// The async forms' waits: the same announcements as the blocking ones
/// (a count of sleepers, then a look), with the futex word awaited.
#[cfg(feature = "tokio")]
impl RawQueue {
    /// Calls `attempt` (a put that does not wait) until it gives an answer,
    /// awaiting room between tries: a get, a shutdown or a close moves
    /// `NOT_FULL` on while a putter is announced.
    pub(crate) async fn until_room<R>(
        self: &Arc<Self>,
        mut attempt: impl FnMut() -> Option<R>,
    ) -> R {
        loop {
            let seq = self.word(off::NOT_FULL).load(Ordering::SeqCst);
            let _announced = crate::aio::Counted::new(self.word(off::PUTTERS));
            let gets = self.u64(off::GETS).load(Ordering::SeqCst);
            if let Some(answer) = attempt() {
                return answer;
            }
            if self.u64(off::GETS).load(Ordering::SeqCst) == gets {
                let word = Arc::new(QueueWord {
                    queue: self.clone(),
                    offset: off::NOT_FULL,
                });
                crate::aio::changed(word, seq).await;
            }
        }
    }

    /// `join`, awaited: until every message put has been `task_done`.
    pub(crate) async fn join_async(self: &Arc<Self>) -> io::Result<()> {
        loop {
            let seq = self.word(off::ALL_DONE).load(Ordering::SeqCst);
            let _announced = crate::aio::Counted::new(self.word(off::JOINERS));
            if self.join(Wait::No)? {
                return Ok(());
            }
            let word = Arc::new(QueueWord {
                queue: self.clone(),
                offset: off::ALL_DONE,
            });
            crate::aio::changed(word, seq).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corrupt(q: &RawQueue, field: usize, value: u64) {
        q.u64(field).store(value, Ordering::SeqCst);
    }

    fn is_corrupt<T: std::fmt::Debug>(r: Result<(), T>) -> bool {
        matches!(&r, Err(e) if format!("{e:?}").contains("corrupt"))
    }

    /// Fuzz finding (queue_ring): a tail far beyond the head made a put
    /// "grow" the ring to 1 TiB and copy half of it (a 15 s timeout, and
    /// memory without bound); a get would have sized its buffer by it.
    #[test]
    fn a_corrupt_header_is_an_error_not_a_growth_or_a_panic() {
        for (field, value) in [
            (off::TAIL, 1 << 40),
            (off::TAIL, u64::MAX),
            (off::HEAD, u64::MAX),
            (off::GETS, u64::MAX),
            (off::PUTS, u64::MAX),
            (off::UNFINISHED, u64::MAX),
            (off::CAPACITY, 3),
            (off::CAPACITY, 0),
        ] {
            let q = RawQueue::new(0, u64::MAX).unwrap();
            q.put(b"first", Wait::No).unwrap();
            q.put(&[7; 1000], Wait::No).unwrap();
            corrupt(&q, field, value);
            let start = Instant::now();
            let put = q.put(b"more", Wait::No);
            let mut body = Vec::new();
            let get = q.get(Wait::No, &mut body);
            assert!(
                is_corrupt(put.map_err(|e| format!("{e:?}")))
                    || is_corrupt(get.map_err(|e| format!("{e:?}"))),
                "field {field} = {value}: neither put nor get saw the corruption"
            );
            assert!(body.len() <= 1000, "field {field} = {value}");
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "field {field} = {value}"
            );
            assert!(shm::size(q.memfd()).unwrap() <= HEADER_LEN as u64 + INITIAL_CAPACITY);
        }
    }

    /// A valid journal replays whatever it holds; the replayed positions are
    /// checked like any others.
    #[test]
    fn a_replayed_journal_of_garbage_is_checked_too() {
        let q = RawQueue::new(0, u64::MAX).unwrap();
        q.put(b"x", Wait::No).unwrap();
        for i in 0..3 {
            corrupt(&q, off::PUT_JOURNAL + 8 * i, u64::MAX - 1);
        }
        q.word(off::PUT_JOURNAL_VALID).store(1, Ordering::SeqCst);
        assert!(is_corrupt(
            q.put(b"y", Wait::No).map_err(|e| format!("{e:?}"))
        ));
    }
}

#[cfg(test)]
mod capacity_and_limit_tests {
    use super::*;

    fn set(q: &RawQueue, field: usize, value: u64) {
        q.u64(field).store(value, Ordering::SeqCst);
    }

    fn is_invalid_data<T: std::fmt::Debug>(r: &Result<(), T>, what: &str) {
        let text = format!("{r:?}");
        assert!(
            text.contains("InvalidData") && text.contains("corrupt"),
            "{what}: {text}"
        );
    }

    /// Fuzz finding (queue_ring): a header claiming a capacity of 1 or 2
    /// with a message counted made `get` read its 8-byte length prefix out
    /// of a 1-byte ring and panic ("shared-memory access out of bounds: 0+7
    /// of 1"). No capacity below the initial one, none that is not a power
    /// of two, and none beyond the file is ever made: each is corrupt, an
    /// `InvalidData` error for put and get alike, and nothing grows.
    #[test]
    fn a_capacity_the_crate_never_makes_is_invalid_data_not_a_panic() {
        for capacity in [
            0,
            1,
            2,
            3,
            4,
            7,
            8,
            16,
            4096,
            INITIAL_CAPACITY / 2,
            INITIAL_CAPACITY + 8,
            INITIAL_CAPACITY * 2,
            1 << 62,
            1 << 63,
            u64::MAX,
        ] {
            // An empty ring whose count claims a message (tail == head, so
            // no distance check can see it), and a ring holding one short
            // message (a distance of 9, within the tiny capacities).
            for stored in [0usize, 1] {
                let q = RawQueue::new(0, u64::MAX).unwrap();
                if stored == 0 {
                    set(&q, off::PUTS, 1);
                } else {
                    q.put(b"x", Wait::No).unwrap();
                }
                set(&q, off::CAPACITY, capacity);
                let what = format!("capacity {capacity}, {stored} stored");
                let mut body = Vec::new();
                is_invalid_data(&q.get(Wait::No, &mut body), &what);
                is_invalid_data(&q.put(b"more", Wait::No), &what);
                assert!(body.is_empty(), "{what}");
                assert_eq!(
                    shm::size(q.memfd()).unwrap(),
                    HEADER_LEN as u64 + INITIAL_CAPACITY,
                    "{what}: the file changed"
                );
            }
        }
    }

    /// A capacity (and positions within it) claimed beyond the file was
    /// trusted by a put before the ring was mapped: a distance of nearly
    /// 1 TiB within a claimed 1 TiB made it "grow" to 2 TiB and copy. The
    /// put now maps (and checks) the ring first.
    #[test]
    fn positions_within_a_capacity_beyond_the_file_grow_nothing() {
        let q = RawQueue::new(0, u64::MAX).unwrap();
        q.put(b"first", Wait::No).unwrap();
        set(&q, off::CAPACITY, 1 << 40);
        set(&q, off::TAIL, (1 << 40) - 4);
        is_invalid_data(&q.put(&[1; 100], Wait::No), "put");
        let mut body = Vec::new();
        is_invalid_data(&q.get(Wait::No, &mut body), "get");
        assert_eq!(
            shm::size(q.memfd()).unwrap(),
            HEADER_LEN as u64 + INITIAL_CAPACITY
        );
    }

    /// A put over the queue's limit is refused before anything is locked,
    /// grown or written: the fill is never called, the file keeps its size,
    /// and the queue goes on. A message of exactly the limit goes through.
    #[test]
    fn a_message_over_the_limit_is_refused_and_one_at_it_goes_through() {
        let q = RawQueue::new(0, 1000).unwrap();
        assert_eq!(q.max_message(), 1000);
        match q.put(&[1; 1001], Wait::Forever) {
            Err(PutFail::Encode(CodecError::Oversized { len, limit })) => {
                assert_eq!((len, limit), (1001, 1000));
            }
            other => panic!("{other:?}"),
        }
        let huge = q.put_by(1 << 40, Wait::Forever, |_| {
            panic!("an oversized message must not be written")
        });
        assert!(matches!(
            huge,
            Err(PutFail::Encode(CodecError::Oversized {
                len: 0x100_0000_0000,
                limit: 1000
            }))
        ));
        assert_eq!(q.len(), 0);
        assert_eq!(
            shm::size(q.memfd()).unwrap(),
            HEADER_LEN as u64 + INITIAL_CAPACITY
        );
        q.put(&[2; 1000], Wait::No).unwrap();
        let mut body = Vec::new();
        q.get(Wait::No, &mut body).unwrap();
        assert_eq!(body, [2; 1000]);
    }

    /// A length whose prefixed size wraps is refused, not wrapped, even
    /// with no limit.
    #[test]
    fn a_length_that_wraps_is_refused() {
        let q = RawQueue::new(0, u64::MAX).unwrap();
        for len in [u64::MAX, u64::MAX - PREFIX + 1] {
            let r = q.put_by(len, Wait::No, |_| panic!("nothing to write"));
            assert!(
                matches!(r, Err(PutFail::Encode(CodecError::Oversized { .. }))),
                "{len}: {r:?}"
            );
        }
        assert_eq!(q.len(), 0);
    }
}

#[cfg(test)]
mod shutdown_tests {
    use super::*;
    use std::sync::mpsc;

    /// What a shutdown that died after its drain's commit point leaves: the
    /// flag, and a drain journal not yet applied.
    fn die_mid_drain(q: &RawQueue) {
        let tail = q.u64(off::TAIL).load(Ordering::SeqCst);
        let puts = q.u64(off::PUTS).load(Ordering::SeqCst);
        let gets = q.u64(off::GETS).load(Ordering::SeqCst);
        q.word(off::SHUTDOWN).store(1, Ordering::SeqCst);
        for (i, value) in [tail, puts - gets, puts].into_iter().enumerate() {
            q.u64(off::GET_JOURNAL + 8 * i)
                .store(value, Ordering::SeqCst);
        }
        q.word(off::GET_JOURNAL_VALID)
            .store(DRAIN_JOURNALED, Ordering::SeqCst);
    }

    #[test]
    fn a_drain_cut_short_by_death_is_replayed_by_the_next_consumer() {
        let q = RawQueue::new(0, u64::MAX).unwrap();
        for m in [b"a", b"b", b"c"] {
            q.put(m, Wait::No).unwrap();
        }
        die_mid_drain(&q);
        assert_eq!(q.len(), 3, "nothing applied yet");
        let mut body = Vec::new();
        assert!(matches!(q.get(Wait::No, &mut body), Err(GetFail::ShutDown)));
        assert!(body.is_empty());
        assert_eq!(q.len(), 0);
        assert_eq!(q.word(off::GET_JOURNAL_VALID).load(Ordering::SeqCst), 0);
        assert!(q.join(Wait::No).unwrap(), "the discarded tasks are done");
        assert!(!q.task_done().unwrap());
        assert!(matches!(q.put(b"d", Wait::No), Err(PutFail::ShutDown)));
    }

    /// The replay wakes the sleepers the dead shutdown may not have woken.
    #[test]
    fn the_replay_of_a_drain_wakes_a_joiner() {
        let q = Arc::new(RawQueue::new(0, u64::MAX).unwrap());
        q.put(b"a", Wait::No).unwrap();
        q.put(b"b", Wait::No).unwrap();
        let (tx, rx) = mpsc::channel();
        let joiner = {
            let q = q.clone();
            std::thread::spawn(move || tx.send(q.join(Wait::Forever).unwrap()).unwrap())
        };
        // The joiner is asleep (or about to be): its answer waits for us.
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        die_mid_drain(&q);
        let mut body = Vec::new();
        assert!(matches!(q.get(Wait::No, &mut body), Err(GetFail::ShutDown)));
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(true));
        joiner.join().unwrap();
    }

    #[test]
    fn a_drain_journal_of_garbage_is_checked_too() {
        let q = RawQueue::new(0, u64::MAX).unwrap();
        q.put(b"x", Wait::No).unwrap();
        for i in 0..3 {
            q.u64(off::GET_JOURNAL + 8 * i)
                .store(u64::MAX - 1, Ordering::SeqCst);
        }
        q.word(off::GET_JOURNAL_VALID)
            .store(DRAIN_JOURNALED, Ordering::SeqCst);
        let mut body = Vec::new();
        let r = q.get(Wait::No, &mut body);
        assert!(format!("{r:?}").contains("corrupt"), "{r:?}");
    }

    /// As Python: a discarded message counts as a done task only while tasks
    /// are outstanding; one taken before the shutdown still needs its
    /// task_done.
    #[test]
    fn discarded_tasks_count_as_done_but_never_below_zero() {
        let q = RawQueue::new(0, u64::MAX).unwrap();
        for _ in 0..3 {
            q.put(b"t", Wait::No).unwrap();
        }
        for _ in 0..3 {
            assert!(q.task_done().unwrap());
        }
        q.shutdown(true).unwrap();
        assert_eq!(q.len(), 0);
        assert!(q.join(Wait::No).unwrap());
        assert!(!q.task_done().unwrap());

        let q = RawQueue::new(0, u64::MAX).unwrap();
        for _ in 0..3 {
            q.put(b"t", Wait::No).unwrap();
        }
        let mut body = Vec::new();
        q.get(Wait::No, &mut body).unwrap();
        q.shutdown(true).unwrap();
        assert_eq!(q.len(), 0);
        assert!(!q.join(Wait::No).unwrap(), "the taken task is not done");
        assert!(q.task_done().unwrap());
        assert!(q.join(Wait::No).unwrap());
        assert!(!q.task_done().unwrap());
        // Shutting down again discards nothing more and counts nothing.
        q.shutdown(true).unwrap();
        assert!(q.join(Wait::No).unwrap());
        assert!(!q.task_done().unwrap());
    }

    #[test]
    fn an_immediate_shutdown_gives_the_memory_back() {
        let q = RawQueue::new(0, u64::MAX).unwrap();
        for _ in 0..4 {
            q.put(&vec![1; 1 << 20], Wait::No).unwrap();
        }
        assert!(shm::size(q.memfd()).unwrap() > HEADER_LEN as u64 + INITIAL_CAPACITY);
        q.shutdown(true).unwrap();
        assert_eq!(
            shm::size(q.memfd()).unwrap(),
            HEADER_LEN as u64 + INITIAL_CAPACITY
        );
        let mut body = Vec::new();
        assert!(matches!(q.get(Wait::No, &mut body), Err(GetFail::ShutDown)));
    }

    fn eventfd_readable(q: &RawQueue) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(q.eventfd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).unwrap() == 1
    }

    /// A consumer that empties a shut-down queue leaves the eventfd
    /// readable: a `wait` asleep in `poll` would otherwise miss the
    /// shutdown, woken for a message that is gone when it looks.
    #[test]
    fn a_shut_down_queue_stays_signaled_for_pollers_once_drained() {
        let q = RawQueue::new(0, u64::MAX).unwrap();
        q.arm();
        q.put(b"x", Wait::No).unwrap();
        assert!(eventfd_readable(&q));
        let mut body = Vec::new();
        q.get(Wait::No, &mut body).unwrap();
        assert!(!eventfd_readable(&q), "empty and open: not signaled");
        q.put(b"y", Wait::No).unwrap();
        q.shutdown(false).unwrap();
        q.get(Wait::No, &mut body).unwrap();
        assert!(eventfd_readable(&q), "emptied after the shutdown");
        q.repair_signal().unwrap();
        assert!(eventfd_readable(&q), "a shut-down queue is never spurious");
        q.disarm();

        // A poller that armed before a shutdown of an empty queue.
        let q = RawQueue::new(0, u64::MAX).unwrap();
        q.arm();
        assert!(!eventfd_readable(&q));
        q.shutdown(false).unwrap();
        assert!(eventfd_readable(&q));
        q.disarm();
    }

    /// A plain shutdown leaves the messages, and consumers take them all
    /// before they see it.
    #[test]
    fn a_plain_shutdown_lets_the_queue_drain_then_fails_gets() {
        let q = RawQueue::new(2, u64::MAX).unwrap();
        q.put(b"1", Wait::No).unwrap();
        q.put(b"2", Wait::No).unwrap();
        q.shutdown(false).unwrap();
        assert!(q.is_shut_down());
        // Full and shut down: ShutDown, as Python checks it first.
        assert!(matches!(q.put(b"3", Wait::No), Err(PutFail::ShutDown)));
        let mut body = Vec::new();
        q.get(Wait::Forever, &mut body).unwrap();
        assert_eq!(body, b"1");
        q.get(Wait::Forever, &mut body).unwrap();
        assert_eq!(body, b"2");
        for wait in [
            Wait::No,
            Wait::timeout(Duration::from_secs(60)),
            Wait::Forever,
        ] {
            assert!(matches!(q.get(wait, &mut body), Err(GetFail::ShutDown)));
        }
    }
}
