//! The worker side of a pool: the loop a `PoolWorker-N` process runs.
//!
//! The pool starts each worker as an ordinary child running the internal
//! worker `pool_worker`, whose arguments are its task socket and the
//! initializer (both handles, so their descriptors travel by `SCM_RIGHTS`).
//! It runs the initializer, says `READY`, then answers task frames in order
//! until the parent closes the socket.

use super::wire::{self, InBuf, TaskFailure};
use crate::child;
use crate::codec::{self, CodecError};
use crate::handles;
use crate::registry::{self, Worker, WorkerEntry};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::os::fd::{AsFd, OwnedFd};
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
    use super::{Channel, InitCall};

    /// The internal worker every pool process runs.
    #[crate::worker]
    pub(crate) fn pool_worker(channel: Channel, init: InitCall) {
        super::serve(channel.0, init);
    }
}
pub(crate) use entry::pool_worker;

/// Runs the calls of one chunk: what `WorkerEntry::chunk` points at.
///
/// Appends a mode byte and the results: [`wire::ALL_OK`] and the postcard
/// `Vec<Output>` when no call panicked (the common case, decoded straight
/// into the caller's values), else [`wire::MIXED`] and `Vec<Result<Output,
/// TaskFailure>>`.
pub(crate) fn run_chunk<W: Worker>(items: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
    let items: Vec<W::Args> = codec::decode(items)?;
    let mut oks: Vec<W::Output> = Vec::with_capacity(items.len());
    let mut mixed: Option<Vec<Result<W::Output, TaskFailure>>> = None;
    for args in items {
        match panic::catch_unwind(AssertUnwindSafe(|| W::call(args))) {
            Ok(value) => match &mut mixed {
                Some(mixed) => mixed.push(Ok(value)),
                None => oks.push(value),
            },
            Err(payload) => {
                let (message, location) = child::caught_panic(payload.as_ref());
                mixed
                    .get_or_insert_with(|| oks.drain(..).map(Ok).collect())
                    .push(Err(TaskFailure::Panicked { message, location }));
            }
        }
    }
    match mixed {
        None => {
            out.push(wire::ALL_OK);
            codec::encode_into(&oks, out)
        }
        Some(mixed) => {
            out.push(wire::MIXED);
            codec::encode_into(&mixed, out)
        }
    }
}

fn serve(socket: OwnedFd, init: InitCall) {
    let fd = socket.as_fd();
    let mut out = Vec::new();
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
    out.clear();

    let mut inbuf = InBuf::new();
    let mut last: Option<&'static WorkerEntry> = None;
    loop {
        loop {
            let frame = match inbuf.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return, // not our parent's framing: stop
            };
            let took = run_task(frame, &mut last, &mut out);
            if took >= BATCH_BELOW || out.len() >= BATCH_BYTES || !inbuf.has_frame() {
                if wire::send_all(fd, &out).is_err() {
                    return;
                }
                out.clear();
            }
        }
        if !out.is_empty() {
            if wire::send_all(fd, &out).is_err() {
                return;
            }
            out.clear();
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

/// Runs one task frame, appending its reply to `out`; returns how long the
/// calls took.
fn run_task(frame: &[u8], last: &mut Option<&'static WorkerEntry>, out: &mut Vec<u8>) -> Duration {
    let start = Instant::now();
    let at = wire::begin_reply(out, wire::DONE);
    out.extend_from_slice(&[0; 8]);
    let result = match wire::parse_task(frame) {
        None => Err("a task frame that does not parse".to_string()),
        Some((name, items)) => {
            let entry = match *last {
                Some(entry) if entry.name == name => Ok(entry),
                _ => registry::find(name).map_err(|_| {
                    format!("the pool worker's binary has no single worker named `{name}`")
                }),
            };
            entry.and_then(|entry| {
                *last = Some(entry);
                (entry.chunk)(items, out).map_err(|e| e.to_string())
            })
        }
    };
    let took = start.elapsed();
    match result {
        Ok(()) => {
            let nanos = took.as_nanos().min(u64::MAX as u128) as u64;
            out[at + 9..at + 17].copy_from_slice(&nanos.to_le_bytes());
        }
        Err(reason) => {
            out.truncate(at);
            wire::begin_reply(out, wire::FAILED);
            out.extend_from_slice(reason.as_bytes());
        }
    }
    wire::end_reply(out, at);
    took
}
