//! The untyped queue: length-prefixed byte messages in a growable ring in
//! shared memory, guarded by a robust process-shared mutex.
//!
//! Layout of the memfd: a 4 KiB header (the mutex, positions, futex words),
//! then the ring. Positions (`head`, `tail`) only grow; a byte at position
//! `p` lives at ring offset `p % capacity`, and the capacity is a power of
//! two.
//!
//! Crash safety. Every change to the header happens under the mutex and is
//! committed through a journal: the new values are written to the journal,
//! the journal is marked valid (the commit point), the values are applied,
//! and the journal is cleared. Whoever takes the mutex next replays a valid
//! journal. So a process killed anywhere inside `put`, `get` or a growth
//! leaves either the old state or the new one:
//! - a producer killed before its commit put nothing (its `put` never
//!   returned); after it, the message is in the queue;
//! - a consumer killed before its commit took nothing, and the message goes
//!   to the next consumer; after it, the message is gone with that consumer
//!   (it was taken, though never returned to user code).
//!
//! Growth doubles the capacity and copies only into the new upper half, so
//! the old layout stays intact until the new capacity is committed.

use crate::sys::futex;
use crate::sys::mutex::{self, Locked, MUTEX_SIZE};
use crate::sys::shm::{self, Mapping};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const HEADER_LEN: usize = 4096;
const INITIAL_CAPACITY: u64 = 256 << 10;
/// An empty queue whose ring grew beyond this gives the memory back.
const SHRINK_ABOVE: u64 = 16 << 20;
const MAGIC: u64 = u64::from_le_bytes(*b"MPQUEUE1");
/// Each message is preceded by its length.
const PREFIX: u64 = 8;
/// Getters spin this many times on an empty queue before sleeping.
const SPINS: u32 = 200;

/// Header offsets. Futex words sit on their own cache lines.
mod off {
    pub(super) const MUTEX: usize = 0;
    pub(super) const MAGIC: usize = 64;
    pub(super) const MAXSIZE: usize = 72;
    pub(super) const CAPACITY: usize = 80;
    pub(super) const HEAD: usize = 88;
    pub(super) const TAIL: usize = 96;
    pub(super) const COUNT: usize = 104;
    pub(super) const UNFINISHED: usize = 112;
    /// The eventfd has been written since the queue last became non-empty.
    pub(super) const SIGNALED: usize = 120;
    pub(super) const JOURNAL_VALID: usize = 128;
    /// The journal: capacity, head, tail, count, unfinished.
    pub(super) const JOURNAL: usize = 136;
    pub(super) const NOT_EMPTY: usize = 256;
    pub(super) const GETTERS: usize = 260;
    pub(super) const NOT_FULL: usize = 320;
    pub(super) const PUTTERS: usize = 324;
    pub(super) const ALL_DONE: usize = 384;
    pub(super) const JOINERS: usize = 388;
    pub(super) const POLL_WAITERS: usize = 448;
}

const _: () = assert!(MUTEX_SIZE <= off::MAGIC);

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
    Os(io::Error),
}

/// Why a raw get returned nothing.
#[derive(Debug)]
pub(crate) enum GetFail {
    Empty,
    Closed,
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

/// The header fields a commit changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    capacity: u64,
    head: u64,
    tail: u64,
    count: u64,
    unfinished: u64,
}

/// One process's view of a queue: the shared file, its header mapping and
/// (under the lock) its ring mapping.
#[derive(Debug)]
pub(crate) struct RawQueue {
    memfd: OwnedFd,
    /// Readable while the queue is non-empty and someone is in `wait`.
    eventfd: OwnedFd,
    header: Mapping,
    /// The ring as this process last mapped it; re-mapped under the lock
    /// whenever the capacity in the header differs.
    ring: Mutex<Option<Mapping>>,
    /// `close()` was called on this handle.
    closed: AtomicBool,
}

impl RawQueue {
    /// A new queue; `maxsize` 0 is unbounded.
    pub(crate) fn new(maxsize: u64) -> io::Result<RawQueue> {
        let memfd = shm::memfd("multiproc-queue", HEADER_LEN as u64 + INITIAL_CAPACITY)?;
        let header = Mapping::new(memfd.as_fd(), 0, HEADER_LEN)?;
        mutex::init(&header, off::MUTEX)?;
        header
            .u64_at(off::MAXSIZE)
            .store(maxsize, Ordering::Relaxed);
        header
            .u64_at(off::CAPACITY)
            .store(INITIAL_CAPACITY, Ordering::Relaxed);
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

    pub(crate) fn memfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.memfd.as_fd()
    }

    pub(crate) fn eventfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.eventfd.as_fd()
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        self.header.u32_at(offset)
    }

    pub(crate) fn maxsize(&self) -> u64 {
        self.header.u64_at(off::MAXSIZE).load(Ordering::Relaxed)
    }

    /// Messages in the queue now (a snapshot, as Python's `qsize`).
    pub(crate) fn len(&self) -> u64 {
        self.header.u64_at(off::COUNT).load(Ordering::Acquire)
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Takes the queue's mutex (or times out: `None`), repairs what a dead
    /// holder left, and maps the ring at its current capacity.
    fn lock(&self, deadline: Option<Instant>) -> io::Result<Option<Guard<'_>>> {
        let owner_died = match mutex::lock(&self.header, off::MUTEX, deadline)? {
            Locked::TimedOut => return Ok(None),
            Locked::Acquired => false,
            Locked::OwnerDied => true,
        };
        let mut guard = Guard {
            q: self,
            ring: self.ring.lock().unwrap_or_else(|e| e.into_inner()),
        };
        guard.replay_journal();
        let _ = owner_died; // the journal makes the state consistent either way
        guard.map_ring()?;
        Ok(Some(guard))
    }

    /// Appends one message. `deadline`: `None` blocks while a bounded queue
    /// is full; a past deadline only tries.
    pub(crate) fn put(&self, body: &[u8], wait: Wait) -> Result<(), PutFail> {
        if self.is_closed() {
            return Err(PutFail::Closed);
        }
        let need = PREFIX + body.len() as u64;
        let maxsize = self.maxsize();
        loop {
            let Some(mut g) = self.lock(wait.lock_deadline())? else {
                return Err(PutFail::Full);
            };
            let st = g.state();
            if maxsize > 0 && st.count >= maxsize {
                let timeout = wait.remaining().ok_or(PutFail::Full)?;
                let seq = g.announce_sleeper(off::NOT_FULL, off::PUTTERS);
                drop(g);
                sleep_on(
                    self.word(off::NOT_FULL),
                    self.word(off::PUTTERS),
                    seq,
                    timeout,
                );
                continue;
            }
            let used = st.tail - st.head;
            if used + need > st.capacity {
                g.grow(used + need)?;
            }
            let st = g.state();
            g.write_ring(st.tail, &(body.len() as u64).to_le_bytes());
            g.write_ring(st.tail + PREFIX, body);
            g.commit(State {
                tail: st.tail + need,
                count: st.count + 1,
                unfinished: st.unfinished + 1,
                ..st
            });
            g.signal_pollers();
            drop(g);
            self.wake(off::NOT_EMPTY, off::GETTERS, 1);
            return Ok(());
        }
    }

    /// Removes the oldest message. `deadline`: `None` blocks while empty; a
    /// past deadline only tries.
    pub(crate) fn get(&self, wait: Wait, body: &mut Vec<u8>) -> Result<(), GetFail> {
        if self.is_closed() {
            return Err(GetFail::Closed);
        }
        loop {
            if self.len() == 0 && wait.remaining().is_some() {
                spin_until(|| self.len() > 0);
            }
            let Some(mut g) = self.lock(wait.lock_deadline())? else {
                return Err(GetFail::Empty);
            };
            let st = g.state();
            if st.count == 0 {
                let timeout = wait.remaining().ok_or(GetFail::Empty)?;
                let seq = g.announce_sleeper(off::NOT_EMPTY, off::GETTERS);
                drop(g);
                sleep_on(
                    self.word(off::NOT_EMPTY),
                    self.word(off::GETTERS),
                    seq,
                    timeout,
                );
                continue;
            }
            let mut prefix = [0u8; PREFIX as usize];
            g.read_ring(st.head, &mut prefix);
            let len = u64::from_le_bytes(prefix);
            if (st.tail - st.head)
                .checked_sub(PREFIX)
                .is_none_or(|body| len > body)
            {
                return Err(GetFail::Os(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "queue memory is corrupt (message longer than the queue's contents)",
                )));
            }
            body.clear();
            body.resize(len as usize, 0);
            g.read_ring(st.head + PREFIX, body);
            let left = st.count - 1;
            let next = if left == 0 && st.capacity > SHRINK_ABOVE {
                State {
                    capacity: INITIAL_CAPACITY,
                    head: 0,
                    tail: 0,
                    count: 0,
                    ..st
                }
            } else {
                State {
                    head: st.head + PREFIX + len,
                    count: left,
                    ..st
                }
            };
            g.commit(next);
            if left == 0 {
                g.unsignal_pollers();
            }
            if next.capacity != st.capacity {
                g.shrink_file(next.capacity)?;
            }
            drop(g);
            self.wake(off::NOT_FULL, off::PUTTERS, 1);
            // A getter woken for a message it did not take (it timed out or
            // died) must not leave others asleep: pass the wake on.
            if left > 0 {
                self.wake(off::NOT_EMPTY, off::GETTERS, 1);
            }
            return Ok(());
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

    /// JoinableQueue: one task finished. Errors if none was outstanding.
    pub(crate) fn task_done(&self) -> io::Result<bool> {
        let g = self.lock(None)?.expect("no deadline");
        let st = g.state();
        if st.unfinished == 0 {
            return Ok(false);
        }
        g.commit(State {
            unfinished: st.unfinished - 1,
            ..st
        });
        drop(g);
        if st.unfinished == 1 {
            self.wake(off::ALL_DONE, off::JOINERS, i32::MAX);
        }
        Ok(true)
    }

    /// JoinableQueue: waits until every message put has been `task_done`.
    /// Returns `false` at the deadline.
    pub(crate) fn join(&self, wait: Wait) -> io::Result<bool> {
        loop {
            let Some(g) = self.lock(wait.lock_deadline())? else {
                return Ok(false);
            };
            if g.state().unfinished == 0 {
                return Ok(true);
            }
            let Some(timeout) = wait.remaining() else {
                return Ok(false);
            };
            let seq = g.announce_sleeper(off::ALL_DONE, off::JOINERS);
            drop(g);
            sleep_on(
                self.word(off::ALL_DONE),
                self.word(off::JOINERS),
                seq,
                timeout,
            );
        }
    }

    #[allow(dead_code)] // for `wait`, being wired
    /// For `wait`: registers a poller, so producers make the eventfd readable.
    pub(crate) fn arm(&self) {
        self.word(off::POLL_WAITERS).fetch_add(1, Ordering::SeqCst);
    }

    #[allow(dead_code)] // for `wait`, being wired
    pub(crate) fn disarm(&self) {
        self.word(off::POLL_WAITERS).fetch_sub(1, Ordering::SeqCst);
    }

    /// For `wait`: the eventfd woke us but the queue is empty (a consumer
    /// died between emptying it and clearing the signal): clear it.
    #[allow(dead_code)] // for `wait`, being wired
    pub(crate) fn repair_signal(&self) -> io::Result<()> {
        if let Some(g) = self.lock(None)? {
            if g.state().count == 0 {
                g.q.header.u32_at(off::SIGNALED).store(1, Ordering::Relaxed);
                g.unsignal_pollers();
            }
        }
        Ok(())
    }
}

/// Sleeps on `word` while it holds `seq`, then withdraws from `sleepers`
/// (which [`Guard::announce_sleeper`] joined under the lock).
fn sleep_on(word: &AtomicU32, sleepers: &AtomicU32, seq: u32, timeout: Option<Duration>) {
    futex::wait(word, seq, timeout);
    sleepers.fetch_sub(1, Ordering::SeqCst);
}

fn spin_until(mut ready: impl FnMut() -> bool) {
    for _ in 0..SPINS {
        if ready() {
            return;
        }
        std::hint::spin_loop();
    }
}

/// The queue's mutex, held. Unlocks on drop.
struct Guard<'a> {
    q: &'a RawQueue,
    ring: MutexGuard<'a, Option<Mapping>>,
}

impl Guard<'_> {
    fn u64(&self, offset: usize) -> &AtomicU64 {
        self.q.header.u64_at(offset)
    }

    fn state(&self) -> State {
        let load = |offset| self.u64(offset).load(Ordering::Relaxed);
        State {
            capacity: load(off::CAPACITY),
            head: load(off::HEAD),
            tail: load(off::TAIL),
            count: load(off::COUNT),
            unfinished: load(off::UNFINISHED),
        }
    }

    fn apply(&self, st: State) {
        self.u64(off::CAPACITY)
            .store(st.capacity, Ordering::Relaxed);
        self.u64(off::HEAD).store(st.head, Ordering::Relaxed);
        self.u64(off::TAIL).store(st.tail, Ordering::Relaxed);
        self.u64(off::UNFINISHED)
            .store(st.unfinished, Ordering::Relaxed);
        self.u64(off::COUNT).store(st.count, Ordering::Release);
    }

    /// Joins `sleepers` while the lock is held, so whoever changes the state
    /// next (under the lock, after us) sees a sleeper and moves `word` on;
    /// returns the value to sleep on. A sleeper killed before it withdraws
    /// only costs wakers a spare syscall.
    fn announce_sleeper(&self, word: usize, sleepers: usize) -> u32 {
        self.q.word(sleepers).fetch_add(1, Ordering::SeqCst);
        self.q.word(word).load(Ordering::SeqCst)
    }

    /// Journal, commit point, apply, clear.
    fn commit(&self, st: State) {
        let fields = [st.capacity, st.head, st.tail, st.count, st.unfinished];
        for (i, value) in fields.into_iter().enumerate() {
            self.u64(off::JOURNAL + 8 * i)
                .store(value, Ordering::Relaxed);
        }
        let valid = self.q.header.u32_at(off::JOURNAL_VALID);
        valid.store(1, Ordering::Release);
        self.apply(st);
        valid.store(0, Ordering::Release);
    }

    fn replay_journal(&self) {
        let valid = self.q.header.u32_at(off::JOURNAL_VALID);
        if valid.load(Ordering::Acquire) == 1 {
            let field = |i: usize| self.u64(off::JOURNAL + 8 * i).load(Ordering::Relaxed);
            self.apply(State {
                capacity: field(0),
                head: field(1),
                tail: field(2),
                count: field(3),
                unfinished: field(4),
            });
            valid.store(0, Ordering::Release);
        }
    }

    /// Maps the ring at the header's capacity if this process's mapping is
    /// stale (another process grew or shrank it).
    fn map_ring(&mut self) -> io::Result<()> {
        let capacity = self.u64(off::CAPACITY).load(Ordering::Relaxed);
        if self
            .ring
            .as_ref()
            .is_some_and(|m| m.len() as u64 == capacity)
        {
            return Ok(());
        }
        let file = shm::size(self.q.memfd.as_fd())?;
        if !capacity.is_power_of_two() || file < HEADER_LEN as u64 + capacity {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "queue memory is corrupt (capacity beyond the file)",
            ));
        }
        *self.ring = None;
        *self.ring = Some(Mapping::new(
            self.q.memfd.as_fd(),
            HEADER_LEN as u64,
            capacity as usize,
        )?);
        Ok(())
    }

    fn ring(&self) -> &Mapping {
        self.ring.as_ref().expect("mapped by lock()")
    }

    /// Copies `bytes` in at position `pos`, wrapping around the ring's end.
    fn write_ring(&self, pos: u64, bytes: &[u8]) {
        let ring = self.ring();
        let cap = ring.len();
        let at = (pos % cap as u64) as usize;
        let first = bytes.len().min(cap - at);
        ring.write(at, &bytes[..first]);
        if first < bytes.len() {
            ring.write(0, &bytes[first..]);
        }
    }

    /// Copies out from position `pos`, wrapping around the ring's end.
    fn read_ring(&self, pos: u64, out: &mut [u8]) {
        let ring = self.ring();
        let cap = ring.len();
        let at = (pos % cap as u64) as usize;
        let first = out.len().min(cap - at);
        ring.read(at, &mut out[..first]);
        if first < out.len() {
            ring.read(0, &mut out[first..]);
        }
    }

    /// Doubles the ring until `needed` bytes fit, crash-safely: the file
    /// grows, live bytes whose position falls in the new upper half are
    /// copied there, and only then is the new capacity committed.
    fn grow(&mut self, needed: u64) -> io::Result<()> {
        loop {
            let st = self.state();
            if st.capacity >= needed {
                return Ok(());
            }
            let old = st.capacity;
            let new = old
                .checked_mul(2)
                .filter(|n| *n <= isize::MAX as u64)
                .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
            shm::resize(self.q.memfd.as_fd(), HEADER_LEN as u64 + new)?;
            *self.ring = None;
            *self.ring = Some(Mapping::new(
                self.q.memfd.as_fd(),
                HEADER_LEN as u64,
                new as usize,
            )?);
            let ring = self.ring();
            let mut pos = st.head;
            while pos < st.tail {
                let block_end = (pos / old + 1) * old;
                let end = block_end.min(st.tail);
                if (pos / old) % 2 == 1 {
                    let at = (pos % old) as usize;
                    ring.copy_within(at, at + old as usize, (end - pos) as usize);
                }
                pos = end;
            }
            self.commit(State {
                capacity: new,
                ..st
            });
        }
    }

    /// After a shrink was committed: give the memory back and remap.
    fn shrink_file(&mut self, capacity: u64) -> io::Result<()> {
        *self.ring = None;
        shm::resize(self.q.memfd.as_fd(), HEADER_LEN as u64 + capacity)?;
        self.map_ring()
    }

    /// After a put: if someone is in `wait` and the eventfd is not yet
    /// readable, make it so.
    fn signal_pollers(&self) {
        let signaled = self.q.header.u32_at(off::SIGNALED);
        if self.q.word(off::POLL_WAITERS).load(Ordering::SeqCst) > 0
            && signaled.load(Ordering::Relaxed) == 0
        {
            let _ = nix::unistd::write(self.q.eventfd.as_fd(), &1u64.to_ne_bytes());
            signaled.store(1, Ordering::Relaxed);
        }
    }

    /// After the queue became empty: drain the eventfd.
    fn unsignal_pollers(&self) {
        let signaled = self.q.header.u32_at(off::SIGNALED);
        if signaled.load(Ordering::Relaxed) == 1 {
            let mut buf = [0u8; 8];
            let _ = nix::unistd::read(self.q.eventfd.as_fd(), &mut buf);
            signaled.store(0, Ordering::Relaxed);
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = mutex::unlock(&self.q.header, off::MUTEX);
    }
}
