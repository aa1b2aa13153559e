//! A round trip of an 8-byte message over a `Pipe` to a child that echoes it.

use crate::case::{Against, Bound, BoxError, Case, Floor, Method, Params, Target, Unit};
use crate::cases::latency::{self, Pinned};
use crate::cases::time_each;
use multiproc::{Connection, Pipe, Process, RecvError};

/// The message: 8 bytes of payload (postcard writes a byte array as is).
type Message = [u8; 8];

pub const CASE: Case = Case {
    name: "pipe_roundtrip",
    measures: "Connection::send + recv of an 8-byte message ([u8; 8]) to a child that \
               echoes it over a Pipe (Python: Pipe(), send/recv of 8 bytes, the child \
               echoing with recv/send); time per round trip. Floors: a raw socketpair \
               ping-pong, 8-byte write + read_exact, with a bare child echoing, unpinned \
               and with both on one CPU; two processes spinning on shared memory on two \
               CPUs; and the multiproc work with parent and child pinned to one CPU.",
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
    floors: &[
        latency::SOCKETPAIR,
        latency::SOCKETPAIR_ONE_CPU,
        latency::SPIN,
        Floor {
            label: latency::PINNED_LABEL,
            run: multiproc_one_cpu,
        },
    ],
    targets: &[
        Target {
            text: "≤ 1.15 × raw socketpair ping-pong",
            against: Against::Floor(0),
            bound: Bound::AtMost(1.15),
        },
        Target {
            text: "pinned multiproc ÷ this (shown)",
            against: Against::Rows(3, 1),
            bound: Bound::Show,
        },
    ],
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
    round_trips(params, None)
}

fn multiproc_one_cpu(params: &Params) -> Result<Vec<f64>, BoxError> {
    latency::on_one_cpu(|pinned| round_trips(params, Some(pinned)))
}

fn round_trips(params: &Params, pinned: Option<&Pinned>) -> Result<Vec<f64>, BoxError> {
    let (ours, theirs) = Pipe::<Message>::new()?;
    let mut child = Process::new(echo, (theirs,));
    child.start()?;
    if let Some(pinned) = pinned {
        pinned.check_process(&child)?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiproc_runner_times_each_trip() {
        let samples = multiproc(&Params { iters: 3, size: 8 }).unwrap();
        assert_eq!(samples.len(), 3);
    }

    /// Through the binary (`tests/every_runner.rs`) the pinned runner's
    /// children are pinned; from a test thread they may not be (see
    /// [`latency::Pinned::check`]), which the runner reports rather than
    /// measuring them unpinned.
    #[test]
    fn the_pinned_runner_runs_or_says_its_children_are_not_pinned() {
        match multiproc_one_cpu(&Params { iters: 3, size: 8 }) {
            Ok(samples) => assert_eq!(samples.len(), 3),
            Err(e) => assert!(e.to_string().contains("not pinned"), "{e}"),
        }
    }
}
