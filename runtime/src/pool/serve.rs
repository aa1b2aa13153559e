//! The worker side of a pool: the loop a `PoolWorker-N` process runs.
//!
//! The pool starts each worker as an ordinary child running the internal
//! worker `pool_worker`, whose arguments are its task socket, its progress
//! board (`progress.rs`) and the initializer (all handles, so their
//! descriptors travel by `SCM_RIGHTS`). It runs the initializer, says
//! `READY`, then answers task frames in order until the parent closes the
//! socket, keeping its replies in the board's buffer until they are sent.
//!
//! The descriptors of the handles in a task's arguments come on the same
//! socket, with the task frame's own bytes (`wire.rs` says how). The worker
//! reads with `recvmsg`, gives each frame the descriptors it announces,
//! lends them to the decoding of each call of the chunk in turn (and only
//! to the decoding: a call's own work never sees the table), and closes
//! what no handle claimed when the task ends; the handles that claimed
//! theirs are dropped with their call's arguments. A frame whose
//! descriptors are missing, or descriptors with no frame, end the worker,
//! as any broken framing does.

use super::progress::{BoardFd, Tracker, now_ns};
use super::wire::{self, Arrivals, InBuf, TaskFailure};
use crate::codec::{self, CodecError, Items};
use crate::handles::{self, FdTable};
use crate::protocol::panics;
use crate::registry::{self, Worker};
use crate::sync::Spin;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Results are written at once after a call this long; shorter calls'
/// results wait (briefly) to share one write.
const BATCH_BELOW: Duration = Duration::from_micros(20);
/// Results are written once this many bytes are waiting.
const BATCH_BYTES: usize = 64 * 1024;

/// A worker's end of its task socket, as a worker argument.
pub(crate) struct Channel(pub(crate) OwnedFd);

impl Serialize for Channel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        handles::export_fd::<S::Error>(self.0.as_fd())?.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(deserializer)?;
        Ok(Channel(handles::import_fd::<D::Error>(index)?))
    }
}

/// The initializer: a worker name and its arguments, encoded once by the
/// parent with the descriptors of the handles in them, so that every worker
/// (replacements too) gets the same call.
#[derive(Debug)]
pub(crate) struct Initializer {
    pub(crate) worker: String,
    pub(crate) args: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

/// The initializer as a worker argument: its descriptors travel as handles.
pub(crate) struct InitCall(pub(crate) Option<Arc<Initializer>>);

impl Serialize for InitCall {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let init = self.0.as_ref().map(|init| {
            let fds = init
                .fds
                .iter()
                .map(|fd| handles::export_fd::<S::Error>(fd.as_fd()))
                .collect::<Result<Vec<u32>, _>>();
            fds.map(|fds| (init.worker.as_str(), init.args.as_slice(), fds))
        });
        init.transpose()?.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for InitCall {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Some((worker, args, fds)) =
            Option::<(String, Vec<u8>, Vec<u32>)>::deserialize(deserializer)?
        else {
            return Ok(InitCall(None));
        };
        let fds = fds
            .into_iter()
            .map(handles::import_fd::<D::Error>)
            .collect::<Result<_, _>>()?;
        Ok(InitCall(Some(Arc::new(Initializer { worker, args, fds }))))
    }
}

#[allow(unsafe_code)] // `#[worker]` registers with a link-section static
mod entry {
    use super::{BoardFd, Channel, InitCall};

    /// The internal worker every pool process runs.
    #[crate::worker]
    pub(crate) fn pool_worker(channel: Channel, board: BoardFd, init: InitCall) {
        super::serve(channel.0, board.0, init);
    }
}
pub(crate) use entry::pool_worker;

/// What a chunk runner writes to: the worker's reply buffer, the reply's
/// place in it, and the timeout of each call.
pub(crate) struct ChunkRun<'a> {
    tracker: &'a mut Tracker,
    /// Where the reply frame starts in the buffer.
    at: usize,
    timeout_ns: u64,
    /// The descriptors the task carries, for the handles in its calls'
    /// arguments (empty for most tasks).
    fds: FdTable,
}

impl ChunkRun<'_> {
    /// Call `index` is the first that failed: the values from it on are
    /// `Result`s.
    fn first_failure(&mut self, index: u64) {
        let at = self.at + 8 + wire::FIRST_FAILURE;
        self.tracker.bytes_mut()[at..at + 8].copy_from_slice(&index.to_le_bytes());
    }
}

/// Decodes a chunk of argument tuples, runs each call under `catch_unwind`,
/// appends each encoded result to the worker's reply buffer as it returns.
pub(crate) type ChunkFn = fn(&[u8], &mut ChunkRun<'_>) -> Result<(), CodecError>;

/// The chunk runner of one worker, beside its
/// [`WorkerEntry`](crate::registry::WorkerEntry) (which the
/// registry keeps free of the pool): `#[worker]` registers both.
#[doc(hidden)]
#[derive(Debug)]
pub struct ChunkEntry {
    name: &'static str,
    chunk: ChunkFn,
}

impl ChunkEntry {
    /// The entry for `W`: its name and its monomorphized chunk runner.
    pub const fn new<W: Worker>() -> Self {
        ChunkEntry {
            name: W::ID,
            chunk: run_chunk::<W>,
        }
    }
}

/// Every worker's chunk runner, gathered by the linker.
#[doc(hidden)]
#[linkme::distributed_slice]
pub static CHUNKS: [ChunkEntry];

/// Runs the calls of one chunk: what `ChunkEntry::chunk` points at.
///
/// Decodes the calls one at a time (each with the task's descriptors for
/// the handles in it) and appends each one's value as it returns (see the
/// module `wire` for the layout), telling the tracker where each call
/// begins and ends, so a death mid-chunk costs only the call that was
/// running.
fn run_chunk<W: Worker>(items: &[u8], run: &mut ChunkRun<'_>) -> Result<(), CodecError> {
    let mut calls = Items::new(items)?;
    let mut index = 0u64;
    let mut failed = false;
    loop {
        let args = if run.fds.is_empty() {
            calls.next::<W::Args>()
        } else {
            handles::with_incoming(&mut run.fds, || calls.next::<W::Args>())
        };
        let Some(args) = args else { break };
        if run.tracker.cut() {
            break; // its owner is gone: the calls not begun never run
        }
        let args = args?;
        let deadline = match run.timeout_ns {
            0 => 0,
            t => now_ns().saturating_add(t),
        };
        run.tracker.begin_input(calls.offset(), deadline);
        let value =
            panics::quiet_panics(|| panic::catch_unwind(AssertUnwindSafe(|| W::call(args))));
        let failure = match value {
            Ok(value) if !failed => match run.tracker.encode_value(&value) {
                Ok(()) => None,
                Err(e) => Some(TaskFailure::Unencodable {
                    reason: e.to_string(),
                }),
            },
            Ok(value) => match run.tracker.encode(&Ok::<_, TaskFailure>(value)) {
                Ok(()) => None,
                Err(e) => Some(TaskFailure::Unencodable {
                    reason: e.to_string(),
                }),
            },
            Err(payload) => {
                let (message, location) = panics::caught_panic(payload.as_ref());
                Some(TaskFailure::Panicked {
                    message,
                    location,
                    backtrace: panics::take_backtrace(),
                })
            }
        };
        if let Some(failure) = failure {
            if !failed {
                failed = true;
                run.first_failure(index);
            }
            run.tracker.encode(&Err::<W::Output, _>(failure))?;
        }
        run.tracker.end_input();
        index += 1;
    }
    Ok(())
}

/// Sends the buffer's replies; `next` is the task after the last of them.
fn send(fd: BorrowedFd<'_>, tracker: &mut Tracker, next: u64) -> bool {
    wire::send_all(fd, tracker.bytes()).is_ok() && tracker.sent(next).is_ok()
}

fn serve(socket: OwnedFd, board: OwnedFd, init: InitCall) {
    let fd = socket.as_fd();
    let mut out = Vec::new();
    let Ok(mut tracker) = Tracker::new(board) else {
        return; // no memory for the board: the parent sees an early death
    };
    if let Some(init) = init.0 {
        if let Err(why) = initialize(init) {
            let at = wire::begin_reply(&mut out, wire::INIT_FAILED);
            let _ = codec::encode_into(&why, &mut out);
            wire::end_reply(&mut out, at);
            let _ = wire::send_all(fd, &out);
            return;
        }
    }
    let at = wire::begin_reply(&mut out, wire::READY);
    wire::end_reply(&mut out, at);
    if wire::send_all(fd, &out).is_err() {
        return;
    }

    let mut inbuf = InBuf::new();
    let mut arrivals = Arrivals::new();
    let mut last: Option<&'static ChunkEntry> = None;
    let mut seq = 0u64;
    let spin = Spin::new();
    loop {
        loop {
            let frame = match inbuf.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return, // not our parent's framing: stop
            };
            let fds = match arrivals.take(frame.len(), wire::task_fds(frame)) {
                Ok(fds) => fds,
                Err(_) => return, // descriptors that do not match the frames: stop
            };
            let took = if tracker.begin_task(seq) {
                match run_task(frame, fds, &mut last, &mut tracker) {
                    Some(took) => took,
                    None => return, // no room for a reply: the parent sees a death
                }
            } else {
                drop(fds); // a cancelled task's descriptors close unused
                let ok = tracker.extend_from_slice(&1u64.to_le_bytes()).is_ok()
                    && tracker.extend_from_slice(&[wire::SKIPPED]).is_ok();
                if !ok {
                    return;
                }
                Duration::ZERO
            };
            tracker.end_task(seq);
            seq += 1;
            let due = took >= BATCH_BELOW || tracker.len() >= BATCH_BYTES || !inbuf.has_frame();
            if due && !send(fd, &mut tracker, seq) {
                return;
            }
        }
        if !tracker.is_empty() && !send(fd, &mut tracker, seq) {
            return;
        }
        // The parent usually answers sooner than a sleep and a wake-up
        // take: spin on the board's count of tasks written, within the
        // sync primitives' budget (never on a crowded machine).
        let spun = spin.until(|| tracker.posted() > seq);
        match inbuf.recv_with_fds(fd, &mut arrivals) {
            Ok(0) | Err(_) => return, // the pool closed our socket: done
            Ok(_) => {}
        }
        if let Err(start) = spun {
            spin.slept(start);
        }
    }
}

/// Runs the initializer; on failure, returns `(message, location)`.
fn initialize(init: Arc<Initializer>) -> Result<(), (String, Option<String>)> {
    let init = Arc::try_unwrap(init).map_err(|_| ("initializer shared".to_string(), None))?;
    let entry = registry::find(&init.worker).map_err(|_| {
        (
            format!("the binary has no single worker named `{}`", init.worker),
            None,
        )
    })?;
    match panic::catch_unwind(AssertUnwindSafe(|| (entry.run)(&init.args, init.fds))) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err((e.to_string(), None)),
        Err(payload) => Err(panics::caught_panic(payload.as_ref())),
    }
}

/// Runs one task frame with its descriptors (closed when it ends),
/// appending its reply to the tracker's buffer; returns how long the calls
/// took, or `None` if no reply could be written.
fn run_task(
    frame: &[u8],
    fds: FdTable,
    last: &mut Option<&'static ChunkEntry>,
    tracker: &mut Tracker,
) -> Option<Duration> {
    let start = Instant::now();
    let at = tracker.len();
    let mut head = [0u8; 8 + wire::DONE_HEAD];
    head[8] = wire::DONE;
    head[8 + wire::FIRST_FAILURE..].copy_from_slice(&wire::NO_FAILURE.to_le_bytes());
    tracker.extend_from_slice(&head).ok()?;
    let result = match wire::parse_task(frame) {
        None => Err("a task frame that does not parse".to_string()),
        Some(parts) => {
            let entry = match *last {
                Some(entry) if entry.name == parts.name => Ok(entry),
                _ => registry::find_in(&CHUNKS, parts.name, |c| c.name).map_err(|_| {
                    format!(
                        "the pool worker's binary has no single worker named `{}`",
                        parts.name
                    )
                }),
            };
            entry.and_then(|entry| {
                *last = Some(entry);
                let mut run = ChunkRun {
                    tracker: &mut *tracker,
                    at,
                    timeout_ns: parts.timeout_ns,
                    fds,
                };
                (entry.chunk)(parts.items, &mut run).map_err(|e| e.to_string())
            })
        }
    };
    let took = start.elapsed();
    match result {
        Ok(()) => {
            let nanos = took.as_nanos().min(u64::MAX as u128) as u64;
            tracker.bytes_mut()[at + 9..at + 17].copy_from_slice(&nanos.to_le_bytes());
        }
        Err(reason) => {
            tracker.truncate(at);
            let mut failed = vec![0u8; 8];
            failed.push(wire::FAILED);
            failed.extend_from_slice(reason.as_bytes());
            tracker.extend_from_slice(&failed).ok()?;
        }
    }
    let len = (tracker.len() - at - 8) as u64;
    if let Some(place) = tracker.bytes_mut().get_mut(at..at + 8) {
        place.copy_from_slice(&len.to_le_bytes());
    }
    Some(took)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Conn;
    use crate::pool::progress::Board;
    use crate::sys::fdpass;
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    use std::thread::JoinHandle;

    const BOUND: Duration = Duration::from_secs(30);

    /// `serve` on a thread, as a pool worker without an initializer, and
    /// the parent's end of its socket (its `READY` already read).
    struct Peer {
        sock: Conn,
        board: Board,
        inbuf: InBuf,
        worker: JoinHandle<()>,
    }

    impl Peer {
        fn start() -> Peer {
            let (ours, theirs) = Conn::pair().unwrap();
            let board = Board::new().unwrap();
            let board_fd = board.fd().try_clone_to_owned().unwrap();
            let worker =
                std::thread::spawn(move || serve(theirs.into_fd(), board_fd, InitCall(None)));
            let mut peer = Peer {
                sock: ours,
                board,
                inbuf: InBuf::new(),
                worker,
            };
            assert_eq!(peer.reply().expect("READY")[0], wire::READY);
            peer
        }

        /// The next reply frame, or `None` at the end of the stream.
        fn reply(&mut self) -> Option<Vec<u8>> {
            loop {
                if let Some(frame) = self.inbuf.next_frame().unwrap() {
                    return Some(frame.to_vec());
                }
                let mut polled = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
                let ready = nix::poll::poll(&mut polled, PollTimeout::from(10_000u16)).unwrap();
                assert!(
                    ready > 0,
                    "the worker neither replied nor closed its socket"
                );
                if self.inbuf.recv(self.sock.as_fd(), false).unwrap() == 0 {
                    return None;
                }
            }
        }

        /// Sends `bytes` in one `sendmsg`, carrying `fds` with the first.
        fn send(&self, bytes: &[u8], fds: &[OwnedFd]) {
            let n = if fds.is_empty() {
                wire::send_all(self.sock.as_fd(), bytes).unwrap();
                bytes.len()
            } else {
                fdpass::send_with_fds(self.sock.as_fd(), bytes, fds).unwrap()
            };
            assert_eq!(n, bytes.len());
        }

        /// Sends a task as the pool does: batch `b` of its descriptors with
        /// byte `b` of its frame.
        fn send_task(&self, frame: &[u8], fds: &[OwnedFd]) {
            let batches = wire::fd_batches(fds.len());
            for (b, batch) in fds.chunks(fdpass::MAX_FDS_PER_MESSAGE).enumerate() {
                let end = if b + 1 == batches { frame.len() } else { b + 1 };
                self.send(&frame[b..end], batch);
            }
            if fds.is_empty() {
                self.send(frame, &[]);
            }
        }

        /// The worker returned (it stops on its own), within the bound.
        fn stopped(self) -> bool {
            let start = std::time::Instant::now();
            while !self.worker.is_finished() {
                if start.elapsed() > BOUND {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            self.worker.join().is_ok()
        }
    }

    /// A pipe whose write end goes to the worker: `closed` says whether
    /// every copy of it is closed (the read end sees the end of the stream).
    struct Probe {
        read: OwnedFd,
    }

    impl Probe {
        fn new() -> (Probe, OwnedFd) {
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
            (Probe { read }, write)
        }

        fn closed(&self) -> bool {
            let mut polled = [PollFd::new(self.read.as_fd(), PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut polled, PollTimeout::from(10_000u16));
            polled[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLHUP))
        }
    }

    /// Where `task_with`'s frames hold their descriptor count.
    const COUNT_AT: usize = 8 + 8 + 2 + "no::such::worker".len();

    /// A task for a worker no binary has, whose single call carries `fds`
    /// (as handles of the internal `Channel` type).
    fn task_with(fds: Vec<OwnedFd>) -> wire::TaskFrame {
        let args: Vec<Channel> = fds.into_iter().map(Channel).collect();
        let (frame, fds) = wire::task_frame("no::such::worker", 0, &[(args,)]).unwrap();
        assert!(wire::task_fds(&frame[8..]) as usize == fds.len());
        (frame, fds)
    }

    #[test]
    fn a_tasks_descriptors_close_when_it_ends_claimed_or_not() {
        let mut peer = Peer::start();
        // The worker is missing: nothing claims the descriptors, the task
        // fails, and they close; the worker goes on.
        let (probe, write) = Probe::new();
        let (frame, fds) = task_with(vec![write]);
        peer.send_task(&frame, &fds);
        drop(fds);
        assert_eq!(peer.reply().unwrap()[0], wire::FAILED);
        assert!(probe.closed(), "the worker kept an unclaimed descriptor");
        // A cancelled task's descriptors close too.
        peer.board.cancel(1);
        let (probe, write) = Probe::new();
        let (frame, fds) = task_with(vec![write]);
        peer.send_task(&frame, &fds);
        drop(fds);
        assert_eq!(peer.reply().unwrap()[0], wire::SKIPPED);
        assert!(
            probe.closed(),
            "the worker kept a skipped task's descriptor"
        );
        // More than one message's worth, and a task without any after it.
        let probes: Vec<(Probe, OwnedFd)> = (0..300).map(|_| Probe::new()).collect();
        let (probes, writes): (Vec<Probe>, Vec<OwnedFd>) = probes.into_iter().unzip();
        let (frame, fds) = task_with(writes);
        peer.send_task(&frame, &fds);
        drop(fds);
        assert_eq!(peer.reply().unwrap()[0], wire::FAILED);
        assert!(probes.iter().all(Probe::closed));
        let (frame, _) = wire::task_frame("no::such::worker", 0, &[(1u8,)]).unwrap();
        peer.send_task(&frame, &[]);
        assert_eq!(peer.reply().unwrap()[0], wire::FAILED);
        drop(peer.sock);
        assert!(peer.worker.join().is_ok());
    }

    #[test]
    fn announced_descriptors_that_never_come_stop_the_worker() {
        for announced in [1, 2, u32::MAX] {
            let mut peer = Peer::start();
            let (mut frame, fds) = task_with(vec![Probe::new().1]);
            drop(fds);
            frame[COUNT_AT..COUNT_AT + 4].copy_from_slice(&announced.to_le_bytes());
            assert_eq!(wire::task_fds(&frame[8..]), announced);
            peer.send_task(&frame, &[]);
            assert_eq!(peer.reply(), None, "announced {announced}");
            assert!(peer.stopped(), "announced {announced}");
        }
        // Fewer than announced: those that came close.
        let mut peer = Peer::start();
        let (probe, write) = Probe::new();
        let (mut frame, fds) = task_with(vec![write]);
        frame[COUNT_AT..COUNT_AT + 4].copy_from_slice(&2u32.to_le_bytes());
        peer.send_task(&frame, &fds);
        drop(fds);
        assert_eq!(peer.reply(), None);
        assert!(peer.stopped());
        assert!(probe.closed());
    }

    #[test]
    fn descriptors_no_frame_owns_stop_the_worker() {
        // With the bytes of a task that announces none.
        let mut peer = Peer::start();
        let (probe, write) = Probe::new();
        let (frame, _) = wire::task_frame("no::such::worker", 0, &[(1u8,)]).unwrap();
        peer.send(&frame, &[write]);
        assert_eq!(peer.reply(), None);
        assert!(peer.stopped());
        assert!(probe.closed());
        // With a task that takes fewer than came.
        let mut peer = Peer::start();
        let (probe, write) = Probe::new();
        let (frame, mut fds) = task_with(vec![Probe::new().1]);
        fds.push(write);
        peer.send(&frame, &fds);
        drop(fds);
        assert_eq!(peer.reply(), None);
        assert!(peer.stopped());
        assert!(probe.closed());
        // With the start of a frame the peer never finishes.
        let peer = Peer::start();
        let (probe, write) = Probe::new();
        let (frame, _) = task_with(vec![Probe::new().1]);
        peer.send(&frame[..12], &[write]);
        assert!(!peer.worker.is_finished());
        drop(peer.sock);
        let worker = peer.worker;
        assert!(worker.join().is_ok());
        assert!(probe.closed());
    }
}
