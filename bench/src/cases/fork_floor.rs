//! The fork floors, run by `floor/fork_floor.c` (built by `build.rs`): a
//! bare fork server answering the same request multiproc's makes, and a
//! direct fork in a program with nothing else in it.

use crate::case::{BoxError, Params};
use crate::cases::time_each;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use std::io::{IoSlice, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};

/// The C program's path, from `build.rs`.
const PROGRAM: &str = env!("FORK_FLOOR");

/// A bare fork server on the other end of a socket.
struct Server {
    control: UnixStream,
    child: Child,
}

impl Server {
    fn start() -> Result<Server, BoxError> {
        let (control, theirs) = UnixStream::pair()?;
        let child = Command::new(PROGRAM)
            .arg("serve")
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .spawn()?;
        Ok(Server { control, child })
    }

    /// One start + join: a socket for the child, the request, the reply
    /// with its pid, the child's byte, the child's exit status.
    fn start_join(&mut self) -> Result<(), BoxError> {
        let (mut ours, theirs) = UnixStream::pair()?;
        let fds = [theirs.as_raw_fd()];
        sendmsg::<()>(
            self.control.as_raw_fd(),
            &[IoSlice::new(&[0; 8])],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )?;
        drop(theirs);
        let mut reply = [0u8; 8];
        self.control.read_exact(&mut reply)?;
        let pid = Pid::from_raw(i32::try_from(u64::from_le_bytes(reply))?);
        let mut byte = [0u8];
        ours.read_exact(&mut byte)?;
        match waitpid(pid, None)? {
            WaitStatus::Exited(_, 0) => Ok(()),
            other => Err(format!("the fork-server floor's child ended with {other:?}").into()),
        }
    }

    fn stop(self) -> Result<(), BoxError> {
        let Server { control, mut child } = self;
        drop(control);
        match child.wait()? {
            status if status.success() => Ok(()),
            status => Err(format!("the fork-server floor ended with {status}").into()),
        }
    }
}

/// A bare fork server's start + join, per process; the server itself is
/// started (and used once) before timing, as multiproc's is.
pub fn server(params: &Params) -> Result<Vec<f64>, BoxError> {
    let mut server = Server::start()?;
    server.start_join()?;
    let samples = time_each(params.iters, || server.start_join());
    server.stop()?;
    samples
}

/// fork + `_exit` + waitpid in the C program, timed there, per process.
pub fn direct(params: &Params) -> Result<Vec<f64>, BoxError> {
    let out = Command::new(PROGRAM)
        .args(["direct", &params.iters.to_string()])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("the direct fork floor ended with {}", out.status).into());
    }
    let samples = String::from_utf8(out.stdout)?
        .lines()
        .map(str::parse)
        .collect::<Result<Vec<f64>, _>>()?;
    if samples.len() != params.iters {
        return Err(format!("{} samples from the direct fork floor", samples.len()).into());
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_floor_starts_and_reaps_each_child() {
        assert_eq!(server(&Params { iters: 3, size: 0 }).unwrap().len(), 3);
    }

    #[test]
    fn the_direct_floor_reports_each_fork() {
        let samples = direct(&Params { iters: 3, size: 0 }).unwrap();
        assert!(samples.len() == 3 && samples.iter().all(|&s| s > 0.0));
    }
}
