//! A round trip of an 8-byte message over a `Pipe` to a child that echoes it.

use crate::case::{Against, Bound, BoxError, Case, Floor, Method, Params, Target, Unit};
use crate::cases::{floor, time_each};
use multiproc::{Connection, Pipe, Process, RecvError};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Stdio;

/// The message: 8 bytes of payload (postcard writes a byte array as is).
type Message = [u8; 8];

pub const CASE: Case = Case {
    name: "pipe_roundtrip",
    measures: "Connection::send + recv of an 8-byte message ([u8; 8]) to a child that \
               echoes it over a Pipe (Python: Pipe(), send/recv of 8 bytes, the child \
               echoing with recv/send); time per round trip. Floor: a raw socketpair \
               ping-pong, 8-byte write + read_exact, with a bare child echoing.",
    unit: Unit::Seconds,
    full: Params {
        iters: 20_000,
        size: 8,
    },
    quick: Params {
        iters: 500,
        size: 8,
    },
    multiproc,
    python: &[Method::Spawn, Method::Fork],
    floors: &[Floor {
        label: "socketpair ping-pong, 8 bytes",
        run: floor_socketpair,
    }],
    targets: &[Target {
        text: "≤ 1.15 × raw socketpair ping-pong",
        against: Against::Floor(0),
        bound: Bound::AtMost(1.15),
    }],
};

/// Echoes every message until the parent closes its end.
#[multiproc::worker]
fn echo(conn: Connection<Message>) {
    loop {
        match conn.recv() {
            Ok(message) => conn.send(&message).expect("the parent hung up"),
            Err(RecvError::Closed) => return,
            Err(e) => panic!("echo: {e}"),
        }
    }
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    let (ours, theirs) = Pipe::<Message>::new()?;
    let mut child = Process::new(echo, (theirs,));
    child.start()?;
    let message: Message = *b"8 bytes!";
    // One untimed trip: the child is up and its end open.
    ours.send(&message)?;
    ours.recv()?;
    let samples = time_each(params.iters, || {
        ours.send(&message)?;
        match ours.recv()? {
            m if m == message => Ok(()),
            m => Err(format!("echoed {m:?}, sent {message:?}").into()),
        }
    })?;
    ours.close();
    child.result()?;
    Ok(samples)
}

fn floor_socketpair(params: &Params) -> Result<Vec<f64>, BoxError> {
    let (mut ours, theirs) = UnixStream::pair()?;
    let child = floor::spawn(
        floor::ECHO8,
        &[],
        Stdio::from(OwnedFd::from(theirs)),
        Stdio::null(),
    )?;
    let message = *b"8 bytes!";
    let mut back = [0u8; 8];
    let mut trip = || -> Result<(), BoxError> {
        ours.write_all(&message)?;
        ours.read_exact(&mut back)?;
        if back == message {
            Ok(())
        } else {
            Err(format!("echoed {back:?}").into())
        }
    };
    trip()?;
    let samples = time_each(params.iters, &mut trip)?;
    drop(ours);
    floor::reap(child)?;
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiproc_runner_times_each_trip() {
        let samples = multiproc(&Params { iters: 3, size: 8 }).unwrap();
        assert_eq!(samples.len(), 3);
    }
}
