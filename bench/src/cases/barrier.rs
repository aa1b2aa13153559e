//! `Barrier` passes by two processes.

use crate::case::{BoxError, Case, Method, Params, Unit};
use crate::cases::per_second;
use multiproc::{Barrier, Process};
use std::time::Instant;

pub const CASE: Case = Case {
    name: "barrier",
    measures: "Barrier::new(2): the parent and one child call wait() `iters` times each \
               (Python: Barrier(2).wait()); passes per second, timed by the parent from \
               a first, untimed pass (both started) to its last.",
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
    floors: &[],
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
    let barrier = Barrier::new(2)?;
    let mut child = Process::new(pass, (barrier.clone(), params.iters + 1));
    child.start()?;
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
}
