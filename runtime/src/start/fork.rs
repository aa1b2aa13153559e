//! `Fork`: fork this process; the child runs the common start-up path in a
//! copy of it. Refused while the process has more than one thread.

use super::Job;
use crate::error::{Error, Result};
use crate::sys;
use crate::sys::clone::Forked;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

pub(crate) fn launch(job: Job) -> Result<libc::pid_t> {
    let threads = sys::clone::thread_count().map_err(Error::Spawn)?;
    if threads > 1 {
        return Err(Error::ForkWithThreads { threads });
    }
    // What is buffered would be written twice, once by each process.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // Enter the child's directory here (one thread: nobody else sees it),
    // so that a directory that cannot be entered fails the start, as it
    // does a spawn; the child inherits it and this process goes back.
    let back = match &job.cwd {
        Some(dir) => Some(enter(dir).map_err(Error::Spawn)?),
        None => None,
    };
    let forked = sys::clone::fork();
    if !matches!(forked, Ok(Forked::Child)) {
        // This process goes back; the child stays where it was sent.
        if let Some(back) = &back {
            let _ = nix::unistd::fchdir(back);
        }
    }
    match forked.map_err(Error::Spawn)? {
        Forked::Child => become_child(job),
        Forked::Parent(pid) => Ok(pid),
    }
}

/// Enters `dir`; returns this process's directory before, to go back to.
fn enter(dir: &std::ffi::CStr) -> std::io::Result<OwnedFd> {
    let here = nix::fcntl::open(
        ".",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    nix::unistd::chdir(dir)?;
    Ok(here)
}

/// In the forked child: the parent's bookkeeping forgotten, descriptors 0–2
/// and the environment as the builder chose, then the common start-up path.
/// Exits without the parent's `atexit` hooks.
fn become_child(job: Job) -> ! {
    let ppid = nix::unistd::getppid().as_raw() as u32;
    super::after_fork_in_child();
    let Job {
        envp,
        socket,
        stdio,
        cwd: _,
    } = job;
    let code = (|| {
        for (target, chosen) in (0..).zip(&stdio) {
            let done = match chosen {
                None => Ok(()),
                Some(Some(fd)) => sys::clone::dup_onto(fd.as_fd(), target),
                Some(None) => super::null_onto(target),
            };
            if done.is_err() {
                return 2;
            }
        }
        drop(stdio);
        sys::clone::default_signals(sys::spawn::DEFAULT_SIGNALS);
        sys::clone::replace_env(&super::split_env(
            envp.into_iter().map(|kv| kv.into_bytes()),
        ));
        crate::child::run_started(socket, ppid, "a forked child could not start")
    })();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    sys::clone::exit_now(code)
}
