//! `Forkserver`: a server process, this binary started once by re-execution,
//! that forks each new child on request.
//!
//! The server is started on the first start that needs it and lives as long
//! as this process (it dies with it: `PR_SET_PDEATHSIG`, and the end of its
//! socket). It runs in the runtime's constructor, before `main`, so it has
//! one thread and none of the program's state; it never prints.
//!
//! A request carries what a spawned child would have been given: the
//! child's end of its spawn socket, its standard descriptors (this
//! process's, unless the builder chose others), this process's working
//! directory (a descriptor) and the directory to enter from there, and the
//! whole environment. The server enters the directory, forks with
//! `CLONE_PARENT` — so the child is *this* process's child, reaped and
//! watched by pidfd as a spawned one is, with its parent-death signal on
//! this process — and replies with the pid. The child puts its descriptors
//! in place, closes every other one the server had, takes the environment
//! and runs the common start-up path (`child`), exactly as a spawned child
//! does after `exec`.

use super::Job;
use crate::codec;
use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::sys;
use crate::sys::clone::{Forked, ThreadIds};
use serde::{Deserialize, Serialize};
use std::ffi::CStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The environment variable that tells a re-executed binary to be a fork
/// server: `<fd>,<parent pid>`, as the child marker.
pub(crate) const SERVER_MARKER: &str = "MULTIPROC_FORKSERVER";

/// [`FORKSERVER_NAME`](super::FORKSERVER_NAME), for `prctl`.
const SERVER_NAME: &CStr = c"mp-forkserver";

/// The largest request the server reads (the environment is most of it).
const MAX_REQUEST: u64 = 16 << 20;
/// How long the parent waits for the server's greeting or a reply: it
/// forks at once, so only a stopped or wedged server is this slow.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// What becomes of one of the child's descriptors 0–2.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
enum Slot {
    /// The next descriptor sent with the request.
    Sent,
    /// `/dev/null`.
    Null,
    /// Closed, as it is in the parent.
    Closed,
}

/// One request: descriptors come first (one `SCM_RIGHTS` message: the
/// child's socket, the parent's working directory, then one per `Sent`
/// slot), then this frame.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    /// `None`: the server's own environment, which is the parent's as it
    /// was when the server started (the common case, and the child then
    /// has nothing to change).
    env: Option<Vec<Vec<u8>>>,
    /// Entered from the parent's directory; `None` stays there.
    cwd: Option<Vec<u8>>,
    stdio: [Slot; 3],
}

/// The server's answer, two little-endian `i32`s: what happened and a
/// value (a pid, or an errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Forked(libc::pid_t),
    /// The directory could not be entered (as `posix_spawn` fails then).
    Chdir(i32),
    /// The fork itself failed.
    Clone(i32),
    /// The request did not parse: a bug of ours, said as `EINVAL`.
    BadRequest,
    /// Not an answer: the server has forked `pid` ahead, to be the next
    /// child. It is this process's child from now on, so that the parent
    /// can reap it if the server goes first.
    Spare(libc::pid_t),
}

impl Reply {
    fn to_bytes(self) -> [u8; 8] {
        let (tag, value) = match self {
            Reply::Forked(pid) => (0, pid),
            Reply::Chdir(errno) => (1, errno),
            Reply::Clone(errno) => (2, errno),
            Reply::BadRequest => (3, libc::EINVAL),
            Reply::Spare(pid) => (4, pid),
        };
        let mut bytes = [0; 8];
        bytes[..4].copy_from_slice(&i32::to_le_bytes(tag));
        bytes[4..].copy_from_slice(&i32::to_le_bytes(value));
        bytes
    }

    fn from_bytes(bytes: [u8; 8]) -> Option<Reply> {
        let tag = i32::from_le_bytes(bytes[..4].try_into().ok()?);
        let value = i32::from_le_bytes(bytes[4..].try_into().ok()?);
        match tag {
            0 if value > 0 => Some(Reply::Forked(value)),
            1 => Some(Reply::Chdir(value)),
            2 => Some(Reply::Clone(value)),
            3 => Some(Reply::BadRequest),
            4 if value > 0 => Some(Reply::Spare(value)),
            _ => None,
        }
    }
}

/// The greeting a server sends once it can serve: 0, or the errno of what
/// stops it.
const READY: i32 = 0;

/// This process's server.
#[derive(Debug)]
struct Server {
    conn: Conn,
    pid: libc::pid_t,
    /// The environment it was started with.
    envp: Vec<std::ffi::CString>,
    /// The child the server has forked ahead, if it said so yet.
    spare: Option<libc::pid_t>,
}

/// The server, or why there can be none (then children are spawned).
enum State {
    Idle,
    Running(Server),
    Unavailable,
}

static SERVER: Mutex<State> = Mutex::new(State::Idle);

fn server() -> MutexGuard<'static, State> {
    SERVER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes `job`'s child through the server, starting (or restarting) it
/// first if needed.
pub(crate) fn launch(job: Job) -> Result<libc::pid_t> {
    let mut state = server();
    // A server that died since the last start is restarted once here.
    for _ in 0..2 {
        if matches!(*state, State::Idle) {
            *state = match start_server() {
                Ok(server) => State::Running(server),
                Err(why) => {
                    eprintln!(
                        "multiproc: the fork server cannot run here ({why}); children are \
                         spawned instead"
                    );
                    State::Unavailable
                }
            };
        }
        let server = match &mut *state {
            State::Running(server) => server,
            _ => return super::spawn::launch(job),
        };
        match server.request(&job) {
            Ok(Reply::Forked(pid)) => return Ok(pid),
            Ok(Reply::Chdir(errno)) => {
                return Err(Error::Spawn(io::Error::from_raw_os_error(errno)));
            }
            Ok(Reply::Clone(errno)) if matches!(errno, libc::ENOSYS | libc::EPERM) => {
                eprintln!(
                    "multiproc: the fork server cannot fork here ({}); children are spawned \
                     instead",
                    io::Error::from_raw_os_error(errno)
                );
                stop(std::mem::replace(&mut *state, State::Unavailable));
                return super::spawn::launch(job);
            }
            Ok(Reply::Clone(errno)) => {
                return Err(Error::Spawn(io::Error::from_raw_os_error(errno)));
            }
            // `request` reads past notices; one here would be garbled.
            Ok(Reply::BadRequest | Reply::Spare(_)) => {
                return Err(Error::Spawn(io::Error::other(
                    "the fork server did not understand the request",
                )));
            }
            // Dead before it read the request: start another and ask again.
            Err(Failed::NotSent) => stop(std::mem::replace(&mut *state, State::Idle)),
            // It may have forked before dying; asking again would give the
            // child's socket to a second child. The next start restarts it.
            Err(Failed::NoReply(e)) => {
                stop(std::mem::replace(&mut *state, State::Idle));
                return Err(Error::Spawn(io::Error::new(
                    e.kind(),
                    format!("the fork server died while starting the child: {e}"),
                )));
            }
        }
    }
    Err(Error::Spawn(io::Error::other(
        "the fork server died as soon as it was started",
    )))
}

/// Ends a server the state held and its spare child (killed and reaped;
/// both are this process's children).
fn stop(state: State) {
    if let State::Running(mut server) = state {
        // A notice of a spare may be waiting unread.
        let mut notice = [0; 8];
        while let Ok(8) = nix::sys::socket::recv(
            std::os::fd::AsRawFd::as_raw_fd(&server.conn.as_fd()),
            &mut notice,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        ) {
            if let Some(Reply::Spare(pid)) = Reply::from_bytes(notice) {
                server.spare = Some(pid);
            }
        }
        drop(server.conn);
        kill_and_reap(server.pid);
        if let Some(spare) = server.spare {
            kill_and_reap(spare);
        }
    }
}

/// SIGKILLs and reaps a child of this process that no `Process` owns: the
/// server, or a spare it forked.
fn kill_and_reap(pid: libc::pid_t) {
    let pid = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}

/// In a child forked from this process: the server belongs to the parent.
/// Forget it without closing or stopping anything.
pub(crate) fn forget_server() {
    let state = std::mem::replace(&mut *server(), State::Idle);
    std::mem::forget(state);
}

/// How a request failed.
enum Failed {
    /// The server's end was closed before the request went out.
    NotSent,
    /// The request went out and no reply came.
    NoReply(io::Error),
}

impl Server {
    fn request(&mut self, job: &Job) -> std::result::Result<Reply, Failed> {
        let here = nix::fcntl::open(
            ".",
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|_| Failed::NotSent)?;
        let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
        let ours = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
        let mut fds: Vec<BorrowedFd<'_>> = vec![job.socket.as_fd(), here.as_fd()];
        let mut stdio = [Slot::Null; 3];
        for (i, chosen) in job.stdio.iter().enumerate() {
            stdio[i] = match chosen {
                Some(Some(fd)) => {
                    fds.push(fd.as_fd());
                    Slot::Sent
                }
                Some(None) => Slot::Null,
                None if nix::fcntl::fcntl(ours[i], nix::fcntl::FcntlArg::F_GETFD).is_ok() => {
                    fds.push(ours[i]);
                    Slot::Sent
                }
                None => Slot::Closed,
            };
        }
        let request = Request {
            env: (job.envp != self.envp)
                .then(|| job.envp.iter().map(|kv| kv.as_bytes().to_vec()).collect()),
            cwd: job.cwd.as_ref().map(|d| d.as_bytes().to_vec()),
            stdio,
        };
        let frame = codec::encode(&request).map_err(|_| Failed::NotSent)?;
        // One message: the frame with the descriptors on its first byte.
        let mut message = Vec::with_capacity(8 + frame.len());
        message.extend_from_slice(&(frame.len() as u64).to_le_bytes());
        message.extend_from_slice(&frame);
        let sent = loop {
            match sys::fdpass::send_with_fds(self.conn.as_fd(), &message, &fds) {
                Ok(sent) => break sent,
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => {
                    let mut out = [nix::poll::PollFd::new(
                        self.conn.as_fd(),
                        nix::poll::PollFlags::POLLOUT,
                    )];
                    let _ = nix::poll::poll(&mut out, nix::poll::PollTimeout::NONE);
                }
                Err(_) => return Err(Failed::NotSent),
            }
        };
        (&self.conn)
            .write_all(&message[sent..])
            .map_err(Failed::NoReply)?;
        loop {
            let mut reply = [0; 8];
            (&self.conn)
                .read_exact(&mut reply)
                .map_err(Failed::NoReply)?;
            match Reply::from_bytes(reply) {
                Some(Reply::Spare(pid)) => self.spare = Some(pid),
                Some(reply) => {
                    if let Reply::Forked(pid) = reply {
                        match self.spare.take() {
                            // The spare became this child.
                            Some(spare) if spare == pid => {}
                            // The spare was gone (killed), and the server
                            // forked this child itself: reap what is left.
                            Some(gone) => kill_and_reap(gone),
                            None => {}
                        }
                    }
                    return Ok(reply);
                }
                None => return Err(Failed::NoReply(io::Error::other("a garbled reply"))),
            }
        }
    }
}

/// Starts a server: this binary again, marked, with `/dev/null` for its
/// standard descriptors, in `/`; waits for its greeting.
fn start_server() -> io::Result<Server> {
    let (ours, theirs) = Conn::pair()?;
    let envp = std::env::vars_os()
        .filter(|(k, _)| k != crate::protocol::MARKER && k != SERVER_MARKER)
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend_from_slice(v.as_encoded_bytes());
            std::ffi::CString::new(kv).ok()
        })
        .collect::<Vec<_>>();
    let job = Job {
        envp: Vec::clone(&envp),
        socket: theirs.into_fd(),
        stdio: [Some(None), Some(None), Some(None)],
        cwd: Some(c"/".to_owned()),
    };
    let pid = super::spawn::reexec(job, SERVER_MARKER)?;
    let server = Server {
        conn: ours,
        pid,
        envp,
        spare: None,
    };
    let greeting = (|| {
        let patience = nix::sys::time::TimeVal::new(REPLY_TIMEOUT.as_secs() as i64, 0);
        nix::sys::socket::setsockopt(
            &server.conn,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &patience,
        )?;
        let mut greeting = [0; 4];
        (&server.conn).read_exact(&mut greeting)?;
        io::Result::Ok(i32::from_le_bytes(greeting))
    })();
    match greeting {
        Ok(READY) => Ok(server),
        Ok(errno) => {
            stop(State::Running(server));
            Err(io::Error::from_raw_os_error(errno))
        }
        Err(e) => {
            stop(State::Running(server));
            Err(io::Error::new(e.kind(), format!("it did not start: {e}")))
        }
    }
}

/// The server's side: runs in the constructor of a process started with
/// [`SERVER_MARKER`] set to `marker`, and returns its exit status once its
/// parent has gone. In a forked child it does not return: the child runs
/// its worker and exits.
pub(crate) fn serve(marker: &str) -> i32 {
    let Some((fd, ppid)) = marker
        .split_once(',')
        .and_then(|(fd, ppid)| Some((fd.parse::<i32>().ok()?, ppid.parse::<u32>().ok()?)))
    else {
        return 2;
    };
    let Ok(socket) = sys::startup::adopt_socket(fd) else {
        return 2;
    };
    let conn = Conn::from_fd(socket);
    // Die with the parent; if it died before this line, leave now.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    if nix::unistd::getppid().as_raw() as u32 != ppid {
        return 2;
    }
    let _ = nix::fcntl::fcntl(
        conn.as_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    // Named so that `ps` (and a test looking for children) tells it apart;
    // its children take back the name every child of this binary has.
    let name = nix::sys::prctl::get_name().ok();
    let _ = nix::sys::prctl::set_name(SERVER_NAME);
    // Ctrl-C in a terminal reaches the whole process group: the parent
    // decides what it means, and the server stays (as Python's does).
    sys::clone::ignore_signal(libc::SIGINT);
    let ids = match sys::clone::thread_ids() {
        Ok(ids) => ids,
        Err(e) => {
            let _ = (&conn).write_all(&e.raw_os_error().unwrap_or(libc::ENOSYS).to_le_bytes());
            return 2;
        }
    };
    if (&conn).write_all(&READY.to_le_bytes()).is_err() {
        return 0;
    }
    let mut space = sys::fdpass::CmsgSpace::new();
    // One buffer for every request: each page the server writes after a
    // fork is a copy-on-write fault, so it writes as few as it can.
    let mut buf = Vec::with_capacity(4096);
    let mut spare = None;
    loop {
        // The next child is forked while the parent has no need of the
        // server (between its starts), not after it asks.
        if spare.is_none() {
            spare = fork_spare(&ids, ppid, name.as_deref());
            if let Some(Spare { pid, .. }) = spare {
                if (&conn).write_all(&Reply::Spare(pid).to_bytes()).is_err() {
                    return 0;
                }
            }
        }
        // The parent closing its end (or exiting) ends the server.
        let Ok(fds) = read_request(&conn, &mut space, &mut buf) else {
            return 0;
        };
        let (reply, done) = match codec::decode::<Request>(&buf[8..]) {
            Ok(request) => {
                let ready = enter(&request, &fds);
                match (ready, spare.take()) {
                    (Err(reply), taken) => {
                        spare = taken;
                        (reply, fds)
                    }
                    (Ok(()), Some(next)) => match next.hand_over(&buf, &fds) {
                        Ok(pid) => (Reply::Forked(pid), fds),
                        // The spare is gone: fork this one here.
                        Err(_) => fork_one(&ids, ppid, name.as_deref(), request, fds),
                    },
                    (Ok(()), None) => fork_one(&ids, ppid, name.as_deref(), request, fds),
                }
            }
            Err(_) => (Reply::BadRequest, fds),
        };
        back_home();
        drop(done);
        if buf.capacity() > 1 << 20 {
            // A large environment once does not keep its buffer.
            buf = Vec::with_capacity(4096);
        }
        if (&conn).write_all(&reply.to_bytes()).is_err() {
            return 0;
        }
    }
}

/// A child the server forked ahead of the next request: it waits on its end
/// of `channel` for the request, which the server passes on as it came.
struct Spare {
    pid: libc::pid_t,
    channel: Conn,
}

impl Spare {
    /// Gives the spare the request in `message` (length and frame) with its
    /// descriptors; it is then the requested child.
    fn hand_over(self, message: &[u8], fds: &[OwnedFd]) -> io::Result<libc::pid_t> {
        let sent = loop {
            match sys::fdpass::send_with_fds(self.channel.as_fd(), message, fds) {
                Ok(sent) => break sent,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        };
        (&self.channel).write_all(&message[sent..])?;
        Ok(self.pid)
    }
}

/// Forks a spare child; `None` if the fork fails (the next request is
/// then forked on demand, and its failure answered).
fn fork_spare(ids: &ThreadIds, ppid: u32, name: Option<&CStr>) -> Option<Spare> {
    let (ours, theirs) = Conn::pair().ok()?;
    // Never a moment ignoring SIGINT as the server does, so that it is told
    // apart from the server by that too.
    match sys::clone::fork_sibling_defaulting(ids, libc::SIGINT) {
        Ok(Forked::Child) => {
            drop(ours);
            wait_as_spare(ppid, name, theirs)
        }
        Ok(Forked::Parent(pid)) => Some(Spare { pid, channel: ours }),
        Err(_) => None,
    }
}

/// In a spare: holds nothing of the server's but its channel, and waits
/// for its request; then becomes that child. The end of the channel (the
/// server gone) ends it.
fn wait_as_spare(ppid: u32, name: Option<&CStr>, channel: Conn) -> ! {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    if nix::unistd::getppid().as_raw() as u32 != ppid {
        sys::clone::exit_now(0);
    }
    // The channel takes the slot of the server's socket to the parent,
    // which must not outlive the server in a spare (the parent tells the
    // server's death by its end of that socket).
    if sys::clone::dup_onto(channel.as_fd(), sys::spawn::CHILD_FD).is_err() {
        sys::clone::exit_now(2);
    }
    drop(channel);
    sys::clone::close_from(sys::spawn::CHILD_FD + 1);
    // A child's signals, not the server's: Ctrl-C ends a waiting spare as
    // it ends the children (the server then forks the next child itself).
    // SIGINT is already at its default; this unblocks it.
    sys::clone::default_signals(&[libc::SIGINT]);
    let Ok(channel) = sys::startup::adopt_socket(sys::spawn::CHILD_FD) else {
        sys::clone::exit_now(2);
    };
    let channel = Conn::from_fd(channel);
    let mut space = sys::fdpass::CmsgSpace::new();
    let mut buf = Vec::with_capacity(4096);
    let Ok(fds) = read_request(&channel, &mut space, &mut buf) else {
        sys::clone::exit_now(0);
    };
    let Ok(request) = codec::decode::<Request>(&buf[8..]) else {
        sys::clone::exit_now(2);
    };
    // The server entered this directory for the request: it exists.
    if enter(&request, &fds).is_err() {
        sys::clone::exit_now(2);
    }
    become_child(ppid, name, request, fds)
}

/// Enters the directory of `request` (from the parent's, the second
/// descriptor); an error is the reply to give.
fn enter(request: &Request, fds: &[OwnedFd]) -> std::result::Result<(), Reply> {
    let sent = request.stdio.iter().filter(|s| **s == Slot::Sent).count();
    if fds.len() != 2 + sent {
        return Err(Reply::BadRequest);
    }
    nix::unistd::fchdir(&fds[1]).map_err(|e| Reply::Chdir(e as i32))?;
    if let Some(dir) = &request.cwd {
        let dir = std::ffi::CString::new(dir.clone()).map_err(|_| Reply::BadRequest)?;
        nix::unistd::chdir(dir.as_c_str()).map_err(|e| Reply::Chdir(e as i32))?;
    }
    Ok(())
}

/// Reads one request into `buf` (cleared first): its length, then its
/// frame, in as few reads as it arrived in (one, unless the environment is
/// large); returns its descriptors. An end of stream, lost descriptors or a
/// frame over [`MAX_REQUEST`] is an error.
fn read_request(
    conn: &Conn,
    space: &mut sys::fdpass::CmsgSpace,
    buf: &mut Vec<u8>,
) -> io::Result<Vec<OwnedFd>> {
    let mut fds = Vec::new();
    buf.clear();
    loop {
        let want = match buf.get(..8) {
            Some(len) => {
                let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
                if len > MAX_REQUEST {
                    return Err(io::Error::other("an oversized request"));
                }
                8 + len as usize
            }
            None => 8,
        };
        if buf.len() >= 8 && buf.len() >= want {
            if buf.len() > want {
                // One request at a time: the parent waits for each reply.
                return Err(io::Error::other("bytes after the request"));
            }
            return Ok(fds);
        }
        buf.reserve(want.saturating_sub(buf.len()).max(1));
        let room = buf.capacity() - buf.len();
        let (n, lost) =
            sys::fdpass::recv_append(conn.as_fd(), buf, room, true, space, |fd| fds.push(fd))?;
        if n == 0 || lost {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Forks the child of `request` (the server in its directory); in the
/// child, does not return. Returns the reply and the request's
/// descriptors, for the server to close once it is back home.
fn fork_one(
    ids: &ThreadIds,
    ppid: u32,
    name: Option<&CStr>,
    request: Request,
    fds: Vec<OwnedFd>,
) -> (Reply, Vec<OwnedFd>) {
    match sys::clone::fork_sibling(ids) {
        Ok(Forked::Child) => become_child(ppid, name, request, fds),
        Ok(Forked::Parent(pid)) => (Reply::Forked(pid), fds),
        Err(e) => (Reply::Clone(e.raw_os_error().unwrap_or(libc::EIO)), fds),
    }
}

/// The server keeps `/` as its directory, so it holds no other one.
fn back_home() {
    let _ = nix::unistd::chdir(c"/");
}

/// In the forked child: descriptors, signals and environment as a spawned
/// child has them, then the common start-up path; exits.
fn become_child(ppid: u32, name: Option<&CStr>, request: Request, mut fds: Vec<OwnedFd>) -> ! {
    if let Some(name) = name {
        let _ = nix::sys::prctl::set_name(name);
    }
    let code = (|| {
        let mut sent = fds.drain(2..);
        for (target, slot) in (0..).zip(request.stdio) {
            let done = match slot {
                Slot::Sent => {
                    let fd = sent.next().expect("counted");
                    sys::clone::dup_onto(fd.as_fd(), target)
                }
                Slot::Null => super::null_onto(target),
                Slot::Closed => Ok(()),
            };
            if done.is_err() {
                return 2;
            }
        }
        drop(sent);
        // The socket takes the slot of the server's own socket, whose copy
        // here nothing will close.
        if sys::clone::dup_onto(fds[0].as_fd(), sys::spawn::CHILD_FD).is_err() {
            return 2;
        }
        drop(fds);
        sys::clone::close_from(sys::spawn::CHILD_FD + 1);
        for (target, slot) in (0..).zip(request.stdio) {
            if slot == Slot::Closed {
                sys::clone::close_std(target);
            }
        }
        sys::clone::default_signals(&[libc::SIGINT]);
        if let Some(env) = request.env {
            sys::clone::replace_env(&super::split_env(env));
        }
        let Ok(socket) = sys::startup::adopt_socket(sys::spawn::CHILD_FD) else {
            return 2;
        };
        crate::child::run_started(socket, ppid, "a child of the fork server could not start")
    })();
    // As Python's forkserver children do (`os._exit`): the exit handlers
    // are the server's, which ran nothing of `main`, and running them cost
    // a sixth of a start (each page they touch is a copy-on-write fault).
    // What a worker buffered still goes out.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    sys::clone::flush_c_stdio();
    sys::clone::exit_now(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_is_named_as_documented() {
        assert_eq!(SERVER_NAME.to_str(), Ok(super::super::FORKSERVER_NAME));
        // `prctl(PR_SET_NAME)` keeps 15 bytes.
        assert!(SERVER_NAME.to_bytes().len() <= 15);
    }

    #[test]
    fn replies_round_trip_and_garbage_is_refused() {
        for reply in [
            Reply::Forked(4242),
            Reply::Chdir(libc::ENOENT),
            Reply::Clone(libc::EAGAIN),
            Reply::BadRequest,
            Reply::Spare(4343),
        ] {
            assert_eq!(Reply::from_bytes(reply.to_bytes()), Some(reply));
        }
        assert_eq!(Reply::from_bytes([9, 0, 0, 0, 1, 0, 0, 0]), None);
        // A pid of 0 or below is no child.
        assert_eq!(Reply::from_bytes([0; 8]), None);
        assert_eq!(Reply::from_bytes([4, 0, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn a_request_is_read_with_its_descriptors_and_bad_ones_are_errors() {
        let (parent, server) = Conn::pair().unwrap();
        let mut space = sys::fdpass::CmsgSpace::new();
        let request = Request {
            env: None,
            cwd: Some(b"sub".to_vec()),
            stdio: [Slot::Null, Slot::Sent, Slot::Closed],
        };
        let frame = codec::encode(&request).unwrap();
        let mut message = (frame.len() as u64).to_le_bytes().to_vec();
        message.extend_from_slice(&frame);
        let (a, b) = Conn::pair().unwrap();
        let sent =
            sys::fdpass::send_with_fds(parent.as_fd(), &message, &[a.as_fd(), b.as_fd()]).unwrap();
        (&parent).write_all(&message[sent..]).unwrap();
        let mut buf = Vec::new();
        let fds = read_request(&server, &mut space, &mut buf).unwrap();
        let body = &buf[8..];
        assert_eq!(fds.len(), 2);
        let back: Request = codec::decode(body).unwrap();
        assert_eq!(back.cwd.as_deref(), Some(&b"sub"[..]));
        assert_eq!(back.stdio, request.stdio);

        // A length past the bound is refused before anything is allocated.
        (&parent).write_all(&u64::MAX.to_le_bytes()).unwrap();
        assert!(read_request(&server, &mut space, &mut buf).is_err());

        // A stream that ends mid-request is an error, not a hang.
        let (parent, server) = Conn::pair().unwrap();
        (&parent).write_all(&10u64.to_le_bytes()).unwrap();
        (&parent).write_all(b"abc").unwrap();
        drop(parent);
        assert!(read_request(&server, &mut space, &mut buf).is_err());
    }
}
