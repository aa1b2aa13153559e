//! `Spawn`: re-execute this binary with `posix_spawn`. The child finds the
//! runtime's marker in its environment before `main` and starts from there.

use super::Job;
use crate::error::{Error, Result};
use crate::protocol::MARKER;
use crate::sys;
use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Mutex, OnceLock, mpsc};

pub(crate) fn launch(job: Job) -> Result<libc::pid_t> {
    reexec(job, MARKER).map_err(Error::Spawn)
}

/// Starts this binary with `job`, `marker` (`MULTIPROC_CHILD`, or the fork
/// server's) telling it where its socket is and who its parent is.
pub(crate) fn reexec(mut job: Job, marker: &str) -> io::Result<libc::pid_t> {
    let marker = format!("{marker}={},{}", sys::spawn::CHILD_FD, std::process::id());
    job.envp.push(CString::new(marker).expect("no NUL"));
    spawn_on_stable_thread(job)
}

/// The running binary, as `posix_spawn` is given it.
fn exe() -> &'static CString {
    static EXE: OnceLock<CString> = OnceLock::new();
    EXE.get_or_init(|| {
        let proc_exe = std::path::Path::new("/proc/self/exe");
        let path = if proc_exe.exists() {
            proc_exe.to_path_buf()
        } else {
            std::env::current_exe().unwrap_or_else(|_| proc_exe.to_path_buf())
        };
        CString::new(path.as_os_str().as_bytes()).expect("a path has no NUL byte")
    })
}

fn argv0() -> CString {
    std::env::args_os()
        .next()
        .and_then(|a| CString::new(a.as_bytes()).ok())
        .unwrap_or_else(|| exe().clone())
}

fn run(job: Job) -> io::Result<libc::pid_t> {
    fn action(slot: &Option<Option<std::os::fd::OwnedFd>>) -> sys::spawn::StdioAction<'_> {
        match slot {
            None => sys::spawn::StdioAction::Inherit,
            Some(None) => sys::spawn::StdioAction::Null,
            Some(Some(fd)) => sys::spawn::StdioAction::Dup(fd.as_fd()),
        }
    }
    let mut socket = job.socket;
    if std::os::fd::AsRawFd::as_raw_fd(&socket) <= sys::spawn::CHILD_FD {
        // Above every slot a file action writes to.
        socket = sys::proc::dup_from(socket.as_fd(), sys::spawn::CHILD_FD + 1)?;
    }
    let io = sys::spawn::ChildIo {
        stdio: [
            action(&job.stdio[0]),
            action(&job.stdio[1]),
            action(&job.stdio[2]),
        ],
        cwd: job.cwd.as_deref(),
    };
    sys::spawn::spawn(exe(), &[argv0()], &job.envp, socket.as_fd(), &io)
}

/// Spawns from a thread that lives as long as the process.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that created the child exits, not
/// the process; a child spawned from a short-lived thread (a test, a scoped
/// thread) would be killed with it. The main thread spawns directly; any other
/// thread hands the job to one long-lived spawner thread.
fn spawn_on_stable_thread(job: Job) -> io::Result<libc::pid_t> {
    if nix::unistd::gettid() == nix::unistd::getpid() {
        return run(job);
    }
    type Reply = mpsc::Sender<io::Result<libc::pid_t>>;
    static SPAWNER: Mutex<Option<mpsc::Sender<(Job, Reply)>>> = Mutex::new(None);
    let sender = {
        let mut spawner = SPAWNER.lock().unwrap_or_else(|e| e.into_inner());
        if spawner.is_none() {
            let (tx, rx) = mpsc::channel::<(Job, Reply)>();
            std::thread::Builder::new()
                .name("multiproc-spawner".into())
                .spawn(move || {
                    for (job, reply) in rx {
                        let _ = reply.send(run(job));
                    }
                })?;
            *spawner = Some(tx);
        }
        spawner.clone().expect("set above")
    };
    let (reply_tx, reply_rx) = mpsc::channel();
    sender
        .send((job, reply_tx))
        .map_err(|_| io::Error::other("the multiproc spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the multiproc spawner thread is gone"))?
}
