//! `Forkserver`: a server process, this binary started once by re-execution,
//! that forks the children ahead of need.
//!
//! The server is started on the first start that needs it and lives as long
//! as this process (it dies with it: `PR_SET_PDEATHSIG`, and the end of its
//! socket). It runs in the runtime's constructor, before `main`, so it has
//! one thread and none of the program's state; it never prints.
//!
//! It forks with `CLONE_PARENT` — so each child is *this* process's child,
//! reaped and watched by pidfd as a spawned one is, with its parent-death
//! signal on this process — and keeps one child forked ahead, a *spare*,
//! which has run nothing but the server's code. It sends this process the
//! spare's pid with this process's end of a socket pair that only the spare
//! shares, and forks the next when asked ([`WANT`], sent as each spare is
//! taken; a `Pool` asks for as many as it has workers). So the server is
//! off the path of a start: the start writes its request to the spare.
//!
//! A request carries what a spawned child would have been given: the
//! child's end of its spawn socket, its standard descriptors (this
//! process's, unless the builder chose others), this process's working
//! directory (a descriptor) and the directory to enter from there, and the
//! environment if it differs from the server's. The spare enters the
//! directory (answering, when one was chosen, whether it could: a bad one
//! fails the start), puts its descriptors in place, closes every other one
//! the server had, takes the environment and runs the common start-up path
//! (`child`), exactly as a spawned child does after `exec`.

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

/// Set beside `LD_BIND_NOW` when the parent added that variable to the
/// server's environment (and the server is to take it out).
const BOUND_MARKER: &str = "MULTIPROC_FORKSERVER_BOUND";
const BIND_NOW: &str = "LD_BIND_NOW";

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

/// A message of the server or of a spare, two little-endian `i32`s: what
/// happened and a value (a pid, or an errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// From a spare: it took the request and is now that child.
    Forked(libc::pid_t),
    /// From a spare: the directory could not be entered (as `posix_spawn`
    /// fails then); it exits.
    Chdir(i32),
    /// From the server: the fork of the next spare failed.
    Clone(i32),
    /// From a spare: the request did not parse (a bug of ours, said as
    /// `EINVAL`); it exits.
    BadRequest,
    /// From the server, with the parent's end of the spare's channel: it
    /// has forked `pid`, to be the next child. It is this process's child
    /// from now on, so this process reaps it if it is not used.
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

/// What the parent sends the server: fork the next spare (tag 5).
const WANT: [u8; 8] = [5, 0, 0, 0, 0, 0, 0, 0];

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
    /// The notices of spares not read yet: the server forks one when it
    /// starts and one after each [`WANT`], and tells of each. Each is read
    /// when a start needs it (a spare is this process's child from its fork,
    /// and [`stop`] reaps those it did not read).
    owed: usize,
}

/// A child the server forked ahead: it waits for a request at its end of
/// `channel`, whose other end the server gave this process.
#[derive(Debug)]
struct Spare {
    pid: libc::pid_t,
    channel: Conn,
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

/// Makes `job`'s child: hands it to the spare the server forked last,
/// starting (or restarting) the server first if needed, and asks the
/// server for the next spare meanwhile.
pub(crate) fn launch(job: Job) -> Result<libc::pid_t> {
    let here = nix::fcntl::open(
        ".",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::Spawn(e.into()))?;
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let ours = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    let mut state = server();
    // A server that died since the last start is restarted here, and a
    // spare that died (a Ctrl-C reaches it) is replaced: twice at most.
    for _ in 0..3 {
        ensure_started(&mut state);
        let server = match &mut *state {
            State::Running(server) => server,
            _ => return super::spawn::launch(job),
        };
        let (message, fds) =
            request_for(&job, &server.envp, here.as_fd(), ours).map_err(Error::Spawn)?;
        let spare = match server.take_spare() {
            Ok(Ok(spare)) => spare,
            Ok(Err(errno)) if matches!(errno, libc::ENOSYS | libc::EPERM) => {
                eprintln!(
                    "multiproc: the fork server cannot fork here ({}); children are spawned \
                     instead",
                    io::Error::from_raw_os_error(errno)
                );
                stop(std::mem::replace(&mut *state, State::Unavailable));
                return super::spawn::launch(job);
            }
            Ok(Err(errno)) => return Err(Error::Spawn(io::Error::from_raw_os_error(errno))),
            // Gone or garbled: start another and ask again.
            Err(_) => {
                stop(std::mem::replace(&mut *state, State::Idle));
                continue;
            }
        };
        // The next spare is forked while this one starts. A server that is
        // gone is replaced now, so that the next start finds one.
        if !server.ask(1) {
            stop(std::mem::replace(&mut *state, State::Idle));
            ensure_started(&mut state);
        }
        match spare.hand_over(&message, &fds, job.cwd.is_some()) {
            Ok(Reply::Forked(pid)) if pid == spare.pid => return Ok(pid),
            Ok(reply) => {
                // It has exited or will, having run nothing.
                kill_and_reap(spare.pid);
                return Err(Error::Spawn(match reply {
                    Reply::Chdir(errno) => io::Error::from_raw_os_error(errno),
                    _ => io::Error::other("the fork server's child did not understand the request"),
                }));
            }
            // Dead before it answered, so before it ran anything: the next
            // spare takes the request.
            Err(_) => kill_and_reap(spare.pid),
        }
    }
    Err(Error::Spawn(io::Error::other(
        "the fork server and its children died as soon as they were started",
    )))
}

/// Starts the server if there is none (and it has not been found unable
/// to run here).
fn ensure_started(state: &mut State) {
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
}

/// Asks the server to fork spares until `n` are ready or coming, so that
/// `n` starts in a row (a `Pool`'s workers) find each its spare forked
/// while the ones before it started, not after. Starts the server if
/// needed.
pub(crate) fn reserve(n: usize) {
    let mut state = server();
    ensure_started(&mut state);
    if let State::Running(server) = &mut *state {
        if !server.ask(n) {
            stop(std::mem::replace(&mut *state, State::Idle));
        }
    }
}

/// The request for `job`'s child as it goes on the wire (its length, then
/// its frame), and its descriptors in their order: the socket, this
/// process's directory (`here`), then one per `Sent` slot. `envp` is the
/// server's environment, which the spare has; `ours` are this process's
/// standard descriptors.
fn request_for<'a>(
    job: &'a Job,
    envp: &[std::ffi::CString],
    here: BorrowedFd<'a>,
    ours: [BorrowedFd<'a>; 3],
) -> io::Result<(Vec<u8>, Vec<BorrowedFd<'a>>)> {
    let mut fds = vec![job.socket.as_fd(), here];
    let mut stdio = [Slot::Null; 3];
    for (i, chosen) in job.stdio.iter().enumerate() {
        stdio[i] = match chosen {
            Some(Some(fd)) => {
                fds.push(fd.as_fd());
                Slot::Sent
            }
            Some(None) => Slot::Null,
            // Open here: the child inherits it. Closed here: closed there.
            None if nix::fcntl::fcntl(ours[i], nix::fcntl::FcntlArg::F_GETFD).is_ok() => {
                fds.push(ours[i]);
                Slot::Sent
            }
            None => Slot::Closed,
        };
    }
    let request = Request {
        env: (job.envp != envp).then(|| job.envp.iter().map(|kv| kv.as_bytes().to_vec()).collect()),
        cwd: job.cwd.as_ref().map(|d| d.as_bytes().to_vec()),
        stdio,
    };
    let frame = codec::encode(&request).map_err(io::Error::other)?;
    let mut message = Vec::with_capacity(8 + frame.len());
    message.extend_from_slice(&(frame.len() as u64).to_le_bytes());
    message.extend_from_slice(&frame);
    Ok((message, fds))
}

/// Ends a server the state held and every spare it told of (killed and
/// reaped; all are this process's children).
fn stop(state: State) {
    if let State::Running(server) = state {
        let Server { conn, pid, .. } = server;
        kill_and_reap(pid);
        // The server is gone: each notice it sent is there unread, or never
        // was. (A spare forked just before a kill, whose notice never went,
        // ends at the end of its channel; it is not this process's to know.)
        while let Some((reply, fds)) = read_notice(&conn, false) {
            if let Some(Reply::Spare(pid)) = reply {
                drop(fds);
                kill_and_reap(pid);
            }
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

/// The server is gone, or said something that makes no sense.
struct Gone;

/// Reads one notice of the server: its 8 bytes as a reply (`None` if they
/// make no sense) and the descriptors that came with them (a `Spare`'s
/// channel). `None` at the end of the stream, on an error (a timeout
/// included) or lost descriptors, and, without `wait`, when no whole notice
/// is there now.
fn read_notice(conn: &Conn, wait: bool) -> Option<(Option<Reply>, Vec<OwnedFd>)> {
    let mut space = sys::fdpass::CmsgSpace::new();
    let mut notice = Vec::with_capacity(8);
    let mut fds = Vec::new();
    while notice.len() < 8 {
        let room = 8 - notice.len();
        match sys::fdpass::recv_append(conn.as_fd(), &mut notice, room, wait, &mut space, |fd| {
            fds.push(fd)
        }) {
            Ok((n, false)) if n > 0 => {}
            _ => return None,
        }
    }
    let bytes = notice[..8].try_into().expect("8 bytes");
    Some((Reply::from_bytes(bytes), fds))
}

impl Server {
    /// The spare to use: the next the server tells of (asked for first if
    /// none is owed). `Ok(Err(errno))`: the server could not fork one.
    fn take_spare(&mut self) -> std::result::Result<std::result::Result<Spare, i32>, Gone> {
        if !self.ask(1) {
            return Err(Gone);
        }
        let (reply, mut fds) = read_notice(&self.conn, true).ok_or(Gone)?;
        self.owed -= 1;
        match (reply, fds.len()) {
            (Some(Reply::Spare(pid)), 1) => Ok(Ok(Spare {
                pid,
                channel: Conn::from_fd(fds.pop().expect("one")),
            })),
            (Some(Reply::Spare(pid)), _) => {
                kill_and_reap(pid);
                Err(Gone)
            }
            (Some(Reply::Clone(errno)), 0) => Ok(Err(errno)),
            _ => Err(Gone),
        }
    }

    /// Asks for spares until `n` are owed; false if the server is gone.
    fn ask(&mut self, n: usize) -> bool {
        while self.owed < n {
            if (&self.conn).write_all(&WANT).is_err() {
                return false;
            }
            self.owed += 1;
        }
        true
    }
}

impl Spare {
    /// Gives the spare the request in `message` (length and frame) with its
    /// descriptors. With `answer` (a directory was chosen, which may not be
    /// entered), reads its answer: `Forked` with its own pid, once it is
    /// that child; without, the spare is that child once this returns. An
    /// error: it died first (or is wedged past [`REPLY_TIMEOUT`]), having
    /// run nothing of the request.
    fn hand_over(&self, message: &[u8], fds: &[BorrowedFd<'_>], answer: bool) -> io::Result<Reply> {
        send_with_fds(&self.channel, message, fds)?;
        if !answer {
            return Ok(Reply::Forked(self.pid));
        }
        let mut reply = [0; 8];
        (&self.channel).read_exact(&mut reply)?;
        Reply::from_bytes(reply).ok_or_else(|| io::Error::other("a garbled answer"))
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
    let mut job = Job {
        envp: Vec::clone(&envp),
        socket: theirs.into_fd(),
        stdio: [Some(None), Some(None), Some(None)],
        cwd: Some(c"/".to_owned()),
    };
    if std::env::var_os(BIND_NOW).is_none() {
        // Every library's symbols bound once in the server, not lazily in
        // each child: a lazy binding (libc binds its own calls to `malloc`
        // and the like lazily) is a lookup and a copy-on-write fault in
        // every child that makes the call. The server takes the variable
        // out of its environment again, which its children get.
        job.envp.push(c"LD_BIND_NOW=1".to_owned());
        job.envp
            .push(std::ffi::CString::new(format!("{BOUND_MARKER}=1")).expect("no NUL"));
    }
    let pid = super::spawn::reexec(job, SERVER_MARKER)?;
    let server = Server {
        conn: ours,
        pid,
        envp,
        // It forks its first spare as soon as it has greeted.
        owed: 1,
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
/// parent has gone. It forks a spare child, tells the parent of it (with
/// the parent's end of the spare's channel), and waits to be asked for the
/// next; it never reads a request itself. In a spare it does not return:
/// the spare becomes a child, runs its worker and exits.
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
    if sys::startup::take_env(BOUND_MARKER).is_some() {
        sys::startup::take_env(BIND_NOW);
    }
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
    loop {
        let told = match fork_spare(&ids, ppid, name.as_deref()) {
            Ok(spare) => send_with_fds(
                &conn,
                &Reply::Spare(spare.pid).to_bytes(),
                &[spare.channel.as_fd()],
            ),
            Err(errno) => send_with_fds(&conn, &Reply::Clone(errno).to_bytes(), &[]),
        };
        // The parent closing its end (or exiting) ends the server.
        let mut want = [0; 8];
        if told.is_err() || (&conn).read_exact(&mut want).is_err() || want != WANT {
            return 0;
        }
    }
}

/// Sends all of `bytes` on `conn`, `fds` with the first of them (what a
/// socket with room does not take at once follows by plain writes).
fn send_with_fds(conn: &Conn, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.is_empty() {
        return (&*conn).write_all(bytes);
    }
    let sent = loop {
        match sys::fdpass::send_with_fds(conn.as_fd(), bytes, fds) {
            Ok(sent) => break sent,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    };
    (&*conn).write_all(&bytes[sent..])
}

/// Forks a spare child, with a channel of its own to the parent (whose end
/// the caller sends on, then closes); the errno of a fork that failed.
fn fork_spare(ids: &ThreadIds, ppid: u32, name: Option<&CStr>) -> std::result::Result<Spare, i32> {
    let errno = |e: io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let (ours, theirs) = Conn::pair().map_err(errno)?;
    // The parent's wait for the spare's answer is bounded.
    let patience = nix::sys::time::TimeVal::new(REPLY_TIMEOUT.as_secs() as i64, 0);
    let _ =
        nix::sys::socket::setsockopt(&ours, nix::sys::socket::sockopt::ReceiveTimeout, &patience);
    // Never a moment ignoring SIGINT as the server does, so that it is told
    // apart from the server by that too.
    match sys::clone::fork_sibling_defaulting(ids, libc::SIGINT).map_err(errno)? {
        Forked::Child => {
            drop(ours);
            wait_as_spare(ppid, name, theirs)
        }
        Forked::Parent(pid) => Ok(Spare { pid, channel: ours }),
    }
}

/// In a spare: holds nothing of the server's but its channel, and waits
/// for its request; then answers and becomes that child. The end of the
/// channel (the parent has no use for it) ends it.
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
    // it ends the children (the parent then hands the request to the next).
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
    let ready = codec::decode::<Request>(&buf[8..])
        .map_err(|_| Reply::BadRequest)
        .and_then(|request| enter(&request, &fds).map(|()| request));
    // The parent waits for an answer only if it chose a directory (which
    // may not be entered: that fails its start). A failure it does not wait
    // for (its own directory, or a request that does not parse) ends the
    // child as any failure of its set-up does, with status 2.
    let answer = match &ready {
        Ok(request) => request
            .cwd
            .is_some()
            .then(|| Reply::Forked(std::process::id() as libc::pid_t)),
        Err(reply) => Some(*reply),
    };
    if let Some(answer) = answer {
        if (&channel).write_all(&answer.to_bytes()).is_err() {
            sys::clone::exit_now(2);
        }
    }
    match ready {
        Ok(request) => {
            // Its slot becomes the socket's, which `become_child` puts there.
            std::mem::forget(channel);
            become_child(ppid, name, request, fds)
        }
        Err(_) => sys::clone::exit_now(2),
    }
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
                // A spare takes one request, and nothing comes after it.
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

/// In the forked child: descriptors, signals and environment as a spawned
/// child has them, then the common start-up path; exits.
fn become_child(ppid: u32, name: Option<&CStr>, request: Request, fds: Vec<OwnedFd>) -> ! {
    if let Some(name) = name {
        let _ = nix::sys::prctl::set_name(name);
    }
    let code = (|| {
        // The request's descriptors: the socket, the directory, then one per
        // `Sent` slot (as many as `enter` counted).
        let mut sent = fds[2..].iter();
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
        // The socket takes the slot of the spare's channel (closing it).
        if sys::clone::dup_onto(fds[0].as_fd(), sys::spawn::CHILD_FD).is_err() {
            return 2;
        }
        // Every descriptor the request brought is above that slot: one call
        // closes them all, with anything else the server had.
        std::mem::forget(fds);
        sys::clone::close_from(sys::spawn::CHILD_FD + 1);
        for (target, slot) in (0..).zip(request.stdio) {
            if slot == Slot::Closed {
                sys::clone::close_std(target);
            }
        }
        // Signals are a child's already (the spare set them).
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
        // The parent's one message to the server is no reply.
        assert_eq!(Reply::from_bytes(WANT), None);
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
