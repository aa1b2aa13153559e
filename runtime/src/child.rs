//! The child side of a spawn: dispatch before `main`.
//!
//! A constructor (the `ctor` crate) runs in every process that links
//! multiproc. In an ordinary process it sees no marker and returns at once.
//! In a re-executed child it takes the marker out of the environment, reads
//! the spawn payload from the inherited socket, arms `PR_SET_PDEATHSIG`, runs
//! the worker under `catch_unwind`, sends the outcome back and exits, so the
//! program's `main` never runs in a child.

use crate::codec::{self, CodecError, MAX_FRAME};
use crate::conn::Conn;
use crate::current::{self, Identity};
use crate::logs;
use crate::protocol::panics;
use crate::protocol::{MARKER, MAX_HEADER, Outcome, SpawnHeader};
use crate::registry::{self, Lookup};
use crate::setup;
use crate::start::forkserver::{self, SERVER_MARKER};
use crate::sys;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

/// How long a child waits for each read of its payload. The parent writes it
/// right after spawning, so only a stranger's socket is this slow.
const PAYLOAD_TIMEOUT_SECS: i64 = 30;
/// Exit status of a child that could not run its worker at all.
const EXIT_SETUP: i32 = 2;
#[ctor::ctor(unsafe)]
fn dispatch_before_main() {
    if let Some(marker) = sys::startup::take_env(SERVER_MARKER) {
        let marker = marker.to_string_lossy().into_owned();
        let code = panic::catch_unwind(|| forkserver::serve(&marker)).unwrap_or(EXIT_SETUP);
        std::process::exit(code);
    }
    let Some(marker) = sys::startup::take_env(MARKER) else {
        return;
    };
    // Never unwind out of a constructor.
    let code = panic::catch_unwind(|| run_child(&marker.to_string_lossy())).unwrap_or(EXIT_SETUP);
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// Whether a child whose parent is not the one its marker names was
/// orphaned while starting (rather than started by a stranger): the named
/// parent no longer exists and the other end of the spawn socket is closed.
fn orphaned(ppid: u32, conn: &Conn) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let Ok(pid) = i32::try_from(ppid) else {
        return false;
    };
    // Gone, or a zombie its own parent has not reaped yet.
    let gone = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next())
            .is_some_and(|state| matches!(state, 'Z' | 'X')),
        Err(_) => true,
    };
    let mut fds = [PollFd::new(conn.as_fd(), PollFlags::POLLIN)];
    let hung_up = poll(&mut fds, PollTimeout::ZERO).is_ok()
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLHUP));
    gone && hung_up
}

/// Whether this process's parent stops being `ppid` within `patience`.
fn parent_left(ppid: u32, patience: Duration) -> bool {
    let deadline = std::time::Instant::now() + patience;
    loop {
        if nix::unistd::getppid().as_raw() as u32 != ppid {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Prints the one-line reason a child cannot run and returns its exit status.
fn refuse(reason: std::fmt::Arguments<'_>) -> i32 {
    eprintln!("multiproc: {reason}");
    EXIT_SETUP
}

fn run_child(marker: &str) -> i32 {
    sys::startup::ignore_sigpipe();
    let not_ours = |why: &str| {
        refuse(format_args!(
            "{MARKER}={marker:?} is set, but this process was not started by multiproc ({why}); unset it"
        ))
    };
    let Some((fd, ppid)) = marker
        .split_once(',')
        .and_then(|(fd, ppid)| Some((fd.parse::<i32>().ok()?, ppid.parse::<u32>().ok()?)))
    else {
        return not_ours("malformed value");
    };
    let socket = match sys::startup::adopt_socket(fd) {
        Ok(fd) => fd,
        Err(e) => return not_ours(&format!("descriptor {fd}: {e}")),
    };
    let origin =
        format!("{MARKER}={marker:?} is set, but this process was not started by multiproc");
    run_started(socket, ppid, &origin)
}

/// The start-up path of every child, whatever made it (a re-execution, the
/// fork server, a fork): `socket` is its end of the spawn socket and
/// `ppid` the parent that made it; `origin` says what made it, for the
/// message that refuses a payload that is not ours. Returns the exit status.
pub(crate) fn run_started(socket: OwnedFd, ppid: u32, origin: &str) -> i32 {
    sys::startup::ignore_sigpipe();
    let not_ours = |why: &str| {
        if origin.starts_with(MARKER) {
            refuse(format_args!("{origin} ({why}); unset it"))
        } else {
            refuse(format_args!("{origin} ({why})"))
        }
    };
    let conn = Conn::from_fd(socket);
    let parent = nix::unistd::getppid().as_raw() as u32;
    if parent != ppid {
        if orphaned(ppid, &conn) {
            // Our parent was killed while we started: nobody is left to
            // tell, and this is no stranger's doing. Exit quietly.
            return EXIT_SETUP;
        }
        return not_ours(&format!("its parent is pid {parent}, not {ppid}"));
    }
    // Grandchildren must not inherit this socket.
    let _ = nix::fcntl::fcntl(
        conn.as_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );

    let Payload {
        header,
        mut fds,
        init_args,
        args,
    } = match read_payload(&conn) {
        Ok(payload) => payload,
        // Our parent (checked above) died while sending: exit quietly. Its
        // end of the socket closes before we are handed to a new parent,
        // so give that a moment.
        Err(_) if parent_left(ppid, Duration::from_millis(200)) => return EXIT_SETUP,
        Err(why) => return not_ours(&why),
    };
    // Die with the parent; if it died before this line, exit now.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    if nix::unistd::getppid().as_raw() as u32 != header.parent_pid {
        return EXIT_SETUP;
    }
    current::set_identity(Identity {
        name: header.name,
        path: header.path,
        daemon: header.daemon,
        parent: Some((header.parent_pid, header.parent_name)),
    });
    current::set_authkey(header.authkey);
    if header.memory_note {
        if let Ok(note) = codec::encode(&Outcome::AllocationFailed) {
            let mut frame = Vec::new();
            if codec::write_frame(&mut frame, &note).is_ok() {
                let _ = sys::startup::note_allocation_failure(conn.as_fd(), frame);
            }
        }
    }
    panics::install_panic_hook();
    if let Some(link) = header.logs {
        if let Some(fd) = fds.pop() {
            logs::start_in_child(link, fd);
        }
    }

    // The start hooks, then the initializer: a failure stops the child
    // before its worker.
    setup::set_hooks(header.hooks.clone());
    let init_fds: Vec<OwnedFd> = fds
        .drain(..(header.init_fds as usize).min(fds.len()))
        .collect();
    let mut set_up = header
        .hooks
        .iter()
        .map(|hook| {
            (
                format!("the start hook `{hook}`"),
                hook.as_str(),
                Vec::new(),
                Vec::new(),
            )
        })
        .collect::<Vec<_>>();
    if let (Some(init), Some(init_args)) = (&header.init, init_args) {
        set_up.push((
            format!("the initializer `{init}`"),
            init.as_str(),
            init_args,
            init_fds,
        ));
    }
    for (what, worker, args, fds) in set_up {
        if let Err((message, location)) = run_setup(worker, &args, fds) {
            eprintln!(
                "multiproc: {what} failed in {}{}: {message}",
                current::identity().name,
                location
                    .as_deref()
                    .map(|l| format!(" at {l}"))
                    .unwrap_or_default()
            );
            send_outcome(
                &conn,
                &Outcome::SetupFailed {
                    worker: what,
                    message,
                    location,
                },
                None,
            );
            return EXIT_SETUP;
        }
    }

    let entry = match registry::find(&header.worker) {
        Ok(entry) => entry,
        Err(lookup) => {
            let why = match lookup {
                Lookup::Missing => "is not in this binary",
                Lookup::Ambiguous => "is registered more than once in this binary",
            };
            send_outcome(
                &conn,
                &Outcome::UnknownWorker {
                    name: header.worker.clone(),
                },
                None,
            );
            return refuse(format_args!("worker `{}` {why}", header.worker));
        }
    };

    let run = panic::catch_unwind(AssertUnwindSafe(|| (entry.run)(&args, fds)));
    let code = match run {
        Ok(Ok(result)) => {
            send_outcome(&conn, &Outcome::Returned, Some(&result));
            0
        }
        Ok(Err(error)) => {
            let reason = error.to_string();
            send_outcome(
                &conn,
                &Outcome::Failed {
                    reason: reason.clone(),
                },
                None,
            );
            refuse(format_args!("worker `{}`: {reason}", header.worker))
        }
        Err(payload) => {
            let (message, location) = panics::caught_panic(payload.as_ref());
            send_outcome(&conn, &Outcome::Panicked { message, location }, None);
            1
        }
    };
    // Python's exit handling, for this child's own children.
    crate::protocol::at_worker_end();
    // The socket closes with the process; closing it now would only wake the
    // parent once more.
    std::mem::forget(conn);
    code
}

/// What a child reads from its spawn socket.
#[derive(Debug)]
pub(crate) struct Payload {
    pub(crate) header: SpawnHeader,
    pub(crate) fds: Vec<OwnedFd>,
    /// The initializer's arguments, when the header names one.
    pub(crate) init_args: Option<Vec<u8>>,
    pub(crate) args: Vec<u8>,
}

/// Runs set-up worker `name` (a start hook or the initializer) with
/// encoded `args`; on failure, the message and the panic's location.
fn run_setup(name: &str, args: &[u8], fds: Vec<OwnedFd>) -> Result<(), (String, Option<String>)> {
    let entry = registry::find(name).map_err(|lookup| {
        let why = match lookup {
            Lookup::Missing => "is not in this binary",
            Lookup::Ambiguous => "is registered more than once in this binary",
        };
        (format!("worker `{name}` {why}"), None)
    })?;
    match panic::catch_unwind(AssertUnwindSafe(|| (entry.run)(args, fds))) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err((error.to_string(), None)),
        Err(payload) => Err(panics::caught_panic(payload.as_ref())),
    }
}

fn read_payload(conn: &Conn) -> Result<Payload, String> {
    // A stranger's socket may never send, or stall mid-frame: bound every read.
    let patience = TimeVal::new(PAYLOAD_TIMEOUT_SECS, 0);
    setsockopt(conn, sockopt::ReceiveTimeout, &patience)
        .map_err(|e| format!("cannot bound reads on its socket: {e}"))?;
    let payload = read_payload_frames(conn)?;
    let _ = setsockopt(conn, sockopt::ReceiveTimeout, &TimeVal::new(0, 0));
    Ok(payload)
}

/// Reads the header frame, the descriptors and the argument frame (no
/// timeouts, no process state: the fuzz entry points drive it too).
pub(crate) fn read_payload_frames(conn: &Conn) -> Result<Payload, String> {
    let frame = |limit| match conn.recv_frame(limit) {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) => Err("its socket closed before the payload".to_string()),
        Err(CodecError::Oversized { len, .. }) => {
            Err(format!("its socket announced a {len}-byte frame"))
        }
        Err(e) => Err(format!("bad payload: {e}")),
    };
    let header: SpawnHeader = codec::decode(&frame(MAX_HEADER as u64)?)
        .map_err(|_| "the payload is not a multiproc spawn header".to_string())?;
    if !header.is_current() {
        return Err("the payload is not a multiproc spawn header".into());
    }
    // The count is the peer's word: reserve for one message's worth at most,
    // and every message must carry some (a data byte alone is not one).
    let wanted = header.fds as usize;
    let mut fds = Vec::with_capacity(wanted.min(sys::fdpass::MAX_FDS_PER_MESSAGE));
    while fds.len() < wanted {
        let batch = sys::fdpass::recv_fds(conn.as_fd())
            .map_err(|e| format!("cannot receive the handles' descriptors: {e}"))?;
        if batch.is_empty() {
            return Err("a descriptor message carried no descriptors".into());
        }
        fds.extend(batch);
    }
    if fds.len() != header.fds as usize {
        return Err("received more descriptors than announced".into());
    }
    if header.init_fds as u64 + u64::from(header.logs.is_some()) > header.fds as u64 {
        return Err("the initializer's descriptors are more than all of them".into());
    }
    let init_args = match header.init {
        Some(_) => Some(frame(MAX_FRAME)?),
        None => None,
    };
    let args = frame(MAX_FRAME)?;
    Ok(Payload {
        header,
        fds,
        init_args,
        args,
    })
}

fn send_outcome(conn: &Conn, outcome: &Outcome, result: Option<&[u8]>) {
    // What the worker printed goes out before its outcome, so that the
    // parent has it when it learns the result (and the child, which exits
    // right after, has nothing left to do but exit).
    let _ = std::io::stdout().flush();
    sys::clone::flush_c_stdio();
    // The parent may be gone; then nobody is listening and that is fine.
    let Ok(frame) = codec::encode(outcome) else {
        return;
    };
    let _ = match result {
        Some(result) => conn.send_frames(&[&frame, result]),
        None => conn.send_frame(&frame),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzz finding (decode_props, spawn_payload): a header announcing
    /// u32::MAX descriptors reserved 16 GiB for them before any arrived, and
    /// plain data bytes were taken one at a time as empty descriptor
    /// messages until the stream ended.
    #[test]
    fn a_payload_announcing_descriptors_it_does_not_send_is_refused() {
        for fds in [1, 2, 254, u32::MAX as usize] {
            let (parent, child) = Conn::pair().unwrap();
            let header = SpawnHeader::new("w", "n", &[1], false, (5, "p".into()), fds);
            parent
                .send_frames(&[&codec::encode(&header).unwrap()])
                .unwrap();
            (&parent).write_all(b"FFFF").unwrap();
            parent.send_frame(&[0]).unwrap();
            drop(parent);
            let err = read_payload_frames(&child).unwrap_err();
            assert!(err.contains("carried no descriptors"), "{fds}: {err}");
        }
    }
}
