//! `Barrier` passes by two processes.

use crate::case::{BoxError, Case, Floor, Method, Params, Unit};
use crate::cases::latency::{self, Pinned};
use crate::cases::per_second;
use multiproc::{Barrier, Process};
use std::time::Instant;

pub const CASE: Case = Case {
    name: "barrier",
    measures: "Barrier::new(2): the parent and one child call wait() `iters` times each \
               (Python: Barrier(2).wait()); passes per second, timed by the parent from \
               a first, untimed pass (both started) to its last. Each pass wakes the \
               other process, so the rate depends on where the two run: also shown with \
               parent and child pinned to one CPU.",
    unit: Unit::PerSecond,
    full: Params {
        iters: 10_000,
        size: 0,
    },
    quick: Params {
        iters: 500,
        size: 0,
    },
    multiproc,
    python: &[Method::Spawn, Method::Fork],
    floors: &[Floor {
        label: latency::PINNED_LABEL,
        run: multiproc_one_cpu,
    }],
    targets: &[],
};

/// Waits at `barrier` `passes` times.
#[multiproc::worker]
fn pass(barrier: Barrier, passes: usize) {
    for _ in 0..passes {
        barrier.wait().expect("the barrier broke");
    }
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    passes(params, None)
}

fn multiproc_one_cpu(params: &Params) -> Result<Vec<f64>, BoxError> {
    latency::on_one_cpu(|pinned| passes(params, Some(pinned)))
}

fn passes(params: &Params, pinned: Option<&Pinned>) -> Result<Vec<f64>, BoxError> {
    let barrier = Barrier::new(2)?;
    let mut child = Process::new(pass, (barrier.clone(), params.iters + 1));
    child.start()?;
    if let Some(pinned) = pinned {
        pinned.check_process(&child)?;
    }
    barrier.wait()?;
    let start = Instant::now();
    for _ in 0..params.iters {
        barrier.wait()?;
    }
    let elapsed = start.elapsed();
    child.result()?;
    Ok(per_second(params.iters, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiproc_runner_passes() {
        let samples = multiproc(&Params { iters: 10, size: 0 }).unwrap();
        assert_eq!(samples.len(), 1);
    }

    /// Through the binary (`tests/every_runner.rs`) the pinned runner's
    /// children are pinned; from a test thread they may not be (see
    /// [`latency::Pinned::check`]), which the runner reports rather than
    /// measuring them unpinned.
    #[test]
    fn the_pinned_runner_runs_or_says_its_children_are_not_pinned() {
        match multiproc_one_cpu(&Params { iters: 10, size: 0 }) {
            Ok(samples) => assert_eq!(samples.len(), 1),
            Err(e) => assert!(e.to_string().contains("not pinned"), "{e}"),
        }
    }
}
