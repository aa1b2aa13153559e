//! Child processes for the floors: this binary again, started with
//! `std::process::Command` and [`ARG`] as its first argument, doing the
//! least a case needs on descriptors it inherits as stdin and stdout.
//!
//! `main` hands such a run to [`child_main`] before anything else. Floors
//! need a real second process, but not multiproc's: the child gets plain
//! descriptors (a socket, a pipe) and runs bare std.

use crate::case::BoxError;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitCode, Stdio};

/// The first argument of a floor child.
pub const ARG: &str = "--floor-child";

/// Echoes 8-byte messages on its stdin socket until the peer hangs up.
pub const ECHO8: &str = "echo8";
/// Writes a ready byte to stdout, reads a go byte from stdin, then writes
/// `count` blocks of `size` bytes to stdout.
pub const WRITE_BLOCKS: &str = "write-blocks";

/// Starts this binary as a floor child running `program` with `args`.
pub fn spawn(
    program: &str,
    args: &[String],
    stdin: impl Into<Stdio>,
    stdout: impl Into<Stdio>,
) -> Result<Child, BoxError> {
    Ok(Command::new(std::env::current_exe()?)
        .arg(ARG)
        .arg(program)
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .spawn()?)
}

/// Waits for a floor child and checks that it succeeded.
pub fn reap(mut child: Child) -> Result<(), BoxError> {
    match child.wait()? {
        status if status.success() => Ok(()),
        status => Err(format!("the floor child ended with {status}").into()),
    }
}

/// The floor child's `main`: `args` are those after [`ARG`].
pub fn child_main(args: &[OsString]) -> ExitCode {
    match run_child(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("multiproc-bench floor child {args:?}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_child(args: &[OsString]) -> Result<(), BoxError> {
    let args: Vec<&str> = args
        .iter()
        .map(|a| a.to_str().ok_or("non-UTF-8 argument"))
        .collect::<Result<_, _>>()?;
    let stdin_fd = || std::io::stdin().as_fd().try_clone_to_owned();
    match args.as_slice() {
        [ECHO8] => {
            let mut socket = UnixStream::from(stdin_fd()?);
            let mut message = [0u8; 8];
            loop {
                match socket.read_exact(&mut message) {
                    Ok(()) => socket.write_all(&message)?,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        [WRITE_BLOCKS, size, count] => {
            let (size, count): (usize, usize) = (size.parse()?, count.parse()?);
            let block = vec![0x5a_u8; size];
            let mut out = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
            let mut go = std::fs::File::from(stdin_fd()?);
            out.write_all(&[super::READY])?;
            let mut byte = [0u8];
            go.read_exact(&mut byte)?;
            for _ in 0..count {
                out.write_all(&block)?;
            }
            Ok(())
        }
        _ => Err("unknown floor child".into()),
    }
}
