//! `Pool::apply` round trip to one worker, against a `Pipe` round trip.

use crate::case::{Against, Bound, BoxError, Case, Floor, Method, Params, Target, Unit};
use crate::cases::latency::{self, Pinned};
use crate::cases::time_each;
use multiproc::{Connection, Pipe, Pool, Process, RecvError};

pub const CASE: Case = Case {
    name: "pool_apply",
    measures: "pool.apply(identity, (x,)) of a u64 on a Pool of 1 worker, started and \
               used once before timing (Python: Pool(1).apply(identity, (x,))); time per \
               call. Baseline: multiproc's own Pipe round trip of a u64 to a child that \
               echoes it, measured in the same rounds. Floors: a raw socketpair ping-pong \
               unpinned and with both on one CPU; two processes spinning on shared memory \
               on two CPUs; and the pool's work with parent, dispatcher and worker pinned \
               to one CPU.",
    unit: Unit::Seconds,
    full: Params {
        iters: 5_000,
        size: 0,
    },
    quick: Params {
        iters: 200,
        size: 0,
    },
    multiproc,
    python: &[Method::Spawn, Method::Fork],
    floors: &[
        Floor {
            label: "multiproc Pipe round trip, u64",
            run: pipe_roundtrip,
        },
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
            text: "≤ 2 × the Pipe round trip",
            against: Against::Floor(0),
            bound: Bound::AtMost(2.0),
        },
        Target {
            text: "≤ 1.5 × the spinning floor (idle machine)",
            against: Against::Floor(3),
            bound: Bound::AtMost(1.5),
        },
        Target {
            text: "pinned multiproc ÷ this (goal ≤ 1.1, shown)",
            against: Against::Rows(4, 2),
            bound: Bound::Show,
        },
    ],
};

#[multiproc::worker]
fn pool_identity(x: u64) -> u64 {
    x
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    applies(params, None)
}

/// The pool built while pinned: its dispatcher thread and its worker
/// inherit the one CPU.
fn multiproc_one_cpu(params: &Params) -> Result<Vec<f64>, BoxError> {
    latency::on_one_cpu(|pinned| applies(params, Some(pinned)))
}

fn applies(params: &Params, pinned: Option<&Pinned>) -> Result<Vec<f64>, BoxError> {
    let pool = Pool::builder().processes(1).build()?;
    // One untimed call: the worker is up.
    pool.apply(pool_identity, (0,))?;
    if let Some(pinned) = pinned {
        for pid in pool.pids() {
            pinned.check(pid)?;
        }
    }
    let mut x = 0u64;
    let samples = time_each(params.iters, || {
        x += 1;
        match pool.apply(pool_identity, (x,))? {
            y if y == x => Ok(()),
            y => Err(format!("apply returned {y}, not {x}").into()),
        }
    })?;
    pool.close();
    pool.join()?;
    Ok(samples)
}

/// Echoes every message until the parent closes its end.
#[multiproc::worker]
fn pool_apply_echo(conn: Connection<u64>) {
    loop {
        match conn.recv() {
            Ok(x) => conn.send(&x).expect("the parent hung up"),
            Err(RecvError::Closed) => return,
            Err(e) => panic!("echo: {e}"),
        }
    }
}

fn pipe_roundtrip(params: &Params) -> Result<Vec<f64>, BoxError> {
    let (ours, theirs) = Pipe::<u64>::new()?;
    let mut child = Process::new(pool_apply_echo, (theirs,));
    child.start()?;
    ours.send(&0)?;
    ours.recv()?;
    let mut x = 0u64;
    let samples = time_each(params.iters, || {
        x += 1;
        ours.send(&x)?;
        match ours.recv()? {
            y if y == x => Ok(()),
            y => Err(format!("echoed {y}, sent {x}").into()),
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
    fn runners_time_each_call() {
        let params = Params { iters: 3, size: 0 };
        assert_eq!(multiproc(&params).unwrap().len(), 3);
        assert_eq!(pipe_roundtrip(&params).unwrap().len(), 3);
    }

    /// Through the binary (`tests/every_runner.rs`) the pinned runner's
    /// children are pinned; from a test thread they may not be (see
    /// [`latency::Pinned::check`]), which the runner reports rather than
    /// measuring them unpinned.
    #[test]
    fn the_pinned_runner_runs_or_says_its_children_are_not_pinned() {
        match multiproc_one_cpu(&Params { iters: 3, size: 0 }) {
            Ok(samples) => assert_eq!(samples.len(), 3),
            Err(e) => assert!(e.to_string().contains("not pinned"), "{e}"),
        }
    }
}
