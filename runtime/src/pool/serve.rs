//! The worker side of a pool: the loop a `PoolWorker-N` process runs.
//!
//! The pool starts each worker as an ordinary child running the internal
//! worker `pool_worker`, whose arguments are its task socket, its progress
//! board (`progress.rs`) and the initializer (all handles, so their
//! descriptors travel by `SCM_RIGHTS`). It runs the initializer, says
//! `READY`, then answers task frames in order until the parent closes the
//! socket, keeping its replies in the board's buffer until they are sent.

use super::progress::{BoardFd, Tracker, now_ns};
use super::wire::{self, InBuf, TaskFailure};
use crate::child;
use crate::codec::{self, CodecError, Items};
use crate::handles;
use crate::registry::{self, Worker, WorkerEntry};
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
}

impl ChunkRun<'_> {
    /// Call `index` is the first that failed: the values from it on are
    /// `Result`s.
    fn first_failure(&mut self, index: u64) {
        let at = self.at + 8 + wire::FIRST_FAILURE;
        self.tracker.bytes_mut()[at..at + 8].copy_from_slice(&index.to_le_bytes());
    }
}

/// Runs the calls of one chunk: what `WorkerEntry::chunk` points at.
///
/// Decodes the calls one at a time and appends each one's value as it
/// returns (see the module `wire` for the layout), telling the tracker
/// where each call begins and ends, so a death mid-chunk costs only the
/// call that was running.
pub(crate) fn run_chunk<W: Worker>(items: &[u8], run: &mut ChunkRun<'_>) -> Result<(), CodecError> {
    let mut calls = Items::new(items)?;
    let mut index = 0u64;
    let mut failed = false;
    while let Some(args) = calls.next::<W::Args>() {
        if run.tracker.cut() {
            break; // its owner is gone: the calls not begun never run
        }
        let args = args?;
        let deadline = match run.timeout_ns {
            0 => 0,
            t => now_ns().saturating_add(t),
        };
        run.tracker.begin_input(calls.offset(), deadline);
        let value = panic::catch_unwind(AssertUnwindSafe(|| W::call(args)));
        let failure = match value {
            Ok(value) if !failed => match run.tracker.encode(&value) {
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
                let (message, location) = child::caught_panic(payload.as_ref());
                Some(TaskFailure::Panicked { message, location })
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
    let mut last: Option<&'static WorkerEntry> = None;
    let mut seq = 0u64;
    loop {
        loop {
            let frame = match inbuf.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return, // not our parent's framing: stop
            };
            let took = if tracker.begin_task(seq) {
                match run_task(frame, &mut last, &mut tracker) {
                    Some(took) => took,
                    None => return, // no room for a reply: the parent sees a death
                }
            } else {
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
        match inbuf.recv(fd, false) {
            Ok(0) | Err(_) => return, // the pool closed our socket: done
            Ok(_) => {}
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
        Err(payload) => Err(child::caught_panic(payload.as_ref())),
    }
}

/// Runs one task frame, appending its reply to the tracker's buffer;
/// returns how long the calls took, or `None` if no reply could be written.
fn run_task(
    frame: &[u8],
    last: &mut Option<&'static WorkerEntry>,
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
                _ => registry::find(parts.name).map_err(|_| {
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
