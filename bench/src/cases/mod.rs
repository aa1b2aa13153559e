//! The cases, in the order they run and print.
//!
//! Adding one: a module with its `multiproc` (and floor) runners and a
//! `pub const CASE: Case`, a function of the same name in
//! `bench/python/bench.py`, and a line in [`ALL`]; a procspawn runner, if
//! procspawn can do the work, goes in [`procspawn`].

use crate::case::BoxError;
use crate::case::Case;
use multiproc::{Connection, Pipe, Process, Worker};
use std::time::{Duration, Instant};

pub mod array_copy;
pub mod barrier;
pub mod event_pingpong;
pub mod floor;
pub mod fork_floor;
pub mod latency;
pub mod lock_contended;
pub mod lock_uncontended;
pub mod pipe_roundtrip;
pub mod pool_apply;
pub mod pool_apply_async;
pub mod pool_await;
pub mod pool_cpu;
pub mod pool_idle_rss;
pub mod pool_imap;
pub mod pool_map;
pub mod pool_payload;
pub mod pool_scale;
pub mod pool_start;
pub mod procspawn;
pub mod queue_1mib;
pub mod queue_4to1;
pub mod queue_record;
pub mod queue_small;
pub mod start_join;
pub mod value_counter;

pub const ALL: &[Case] = &[
    start_join::CASE,
    start_join::FORK,
    start_join::FORKSERVER,
    pipe_roundtrip::CASE,
    queue_small::CASE,
    queue_1mib::CASE,
    queue_4to1::CASE,
    queue_record::CASE,
    queue_record::SELF_DESCRIBING,
    lock_contended::CASE,
    lock_uncontended::CASE,
    event_pingpong::CASE,
    barrier::CASE,
    value_counter::CASE,
    array_copy::CASE,
    pool_apply::CASE,
    pool_imap::CASE,
    pool_apply_async::CASE,
    pool_await::CASE,
    pool_await::THREADS,
    pool_map::CASE,
    pool_cpu::CASE,
    pool_scale::TWO,
    pool_scale::EIGHT,
    pool_scale::THIRTY_TWO,
    pool_scale::HUNDRED_TWENTY_EIGHT,
    pool_start::CASE,
    pool_start::FORKSERVER,
    pool_idle_rss::CASE,
    pool_payload::PAYLOAD_1MIB,
    pool_payload::PAYLOAD_8MIB,
];

/// Runs `op` `iters` times and returns the seconds each run took.
pub fn time_each(
    iters: usize,
    mut op: impl FnMut() -> Result<(), BoxError>,
) -> Result<Vec<f64>, BoxError> {
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        op()?;
        samples.push(start.elapsed().as_secs_f64());
    }
    Ok(samples)
}

/// `count` per second over `elapsed`: a rate case's one sample per round.
pub fn per_second(count: usize, elapsed: Duration) -> Vec<f64> {
    vec![count as f64 / elapsed.as_secs_f64()]
}

/// What a child says on its control pipe.
pub const READY: u8 = 1;
pub const GO: u8 = 2;
pub const DONE: u8 = 3;

/// In a child: says it is ready (started, its handles open), then waits
/// for the parent's go, so that no process's start-up is timed.
pub fn ready_then_wait_for_go(control: &Connection<u8>) {
    control.send(&READY).expect("the parent hung up");
    let go = control.recv().expect("the parent hung up");
    assert_eq!(go, GO, "the parent said {go}, not go");
}

/// In a child: says its work is done.
pub fn done(control: &Connection<u8>) {
    control.send(&DONE).expect("the parent hung up");
}

/// Children that have said they are ready, each with its control pipe.
pub struct Crew<W: Worker> {
    processes: Vec<Process<W>>,
    controls: Vec<Connection<u8>>,
}

impl<W: Worker> Crew<W> {
    /// Starts `count` children, `make(i, control)` building the i-th with
    /// its end of a control pipe, and waits until every one is ready.
    pub fn start(
        count: usize,
        mut make: impl FnMut(usize, Connection<u8>) -> Process<W>,
    ) -> Result<Crew<W>, BoxError> {
        let mut crew = Crew {
            processes: Vec::with_capacity(count),
            controls: Vec::with_capacity(count),
        };
        for i in 0..count {
            let (ours, theirs) = Pipe::<u8>::new()?;
            let mut process = make(i, theirs);
            process.start()?;
            crew.processes.push(process);
            crew.controls.push(ours);
        }
        crew.expect_from_all(READY)?;
        Ok(crew)
    }

    /// Tells every child to go.
    pub fn go(&self) -> Result<(), BoxError> {
        for control in &self.controls {
            control.send(&GO)?;
        }
        Ok(())
    }

    /// Waits until every child says it is done.
    pub fn wait_done(&self) -> Result<(), BoxError> {
        self.expect_from_all(DONE)
    }

    fn expect_from_all(&self, what: u8) -> Result<(), BoxError> {
        for control in &self.controls {
            let got = control.recv()?;
            if got != what {
                return Err(format!("a child said {got}, not {what}").into());
            }
        }
        Ok(())
    }

    /// Joins every child, reporting a panic or a non-zero exit as an error.
    pub fn join(self) -> Result<Vec<W::Output>, BoxError> {
        drop(self.controls);
        let mut outputs = Vec::with_capacity(self.processes.len());
        for process in self.processes {
            outputs.push(process.result()?);
        }
        Ok(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_params_nonzero() {
        for (i, case) in ALL.iter().enumerate() {
            assert!(
                ALL[..i].iter().all(|c| c.name != case.name),
                "{} twice",
                case.name
            );
            assert!(case.full.iters > 0 && case.quick.iters > 0, "{}", case.name);
        }
    }
}
