//! A shared counter incremented under its lock by two processes at once.

use crate::case::{BoxError, Case, Method, Params, Unit};
use crate::cases::{Crew, done, per_second, ready_then_wait_for_go};
use multiproc::{Connection, Process, Value};
use std::time::Instant;

pub const CASE: Case = Case {
    name: "value_counter",
    measures: "`*v.lock().unwrap() += 1` on a Value<u64>, by the parent and one child at \
               once, `iters` in all (Python: `with v.get_lock(): v.value += 1` on \
               Value('Q', 0)); increments per second from go until both are done, the \
               final count checked.",
    unit: Unit::PerSecond,
    full: Params {
        iters: 500_000,
        size: 0,
    },
    quick: Params {
        iters: 50_000,
        size: 0,
    },
    multiproc,
    python: &[Method::Spawn, Method::Fork],
    floors: &[],
    targets: &[],
};

fn increment(v: &Value<u64>, times: usize) {
    for _ in 0..times {
        *v.lock().expect("a holder died") += 1;
    }
}

/// Increments `times` times once the parent says go.
#[multiproc::worker]
fn add(v: Value<u64>, control: Connection<u8>, times: usize) {
    ready_then_wait_for_go(&control);
    increment(&v, times);
    done(&control);
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    let v = Value::new(0u64)?;
    let ours = params.iters / 2;
    let theirs = params.iters - ours;
    let crew = Crew::start(1, |_, control| {
        Process::new(add, (v.clone(), control, theirs))
    })?;
    let start = Instant::now();
    crew.go()?;
    increment(&v, ours);
    crew.wait_done()?;
    let elapsed = start.elapsed();
    crew.join()?;
    match v.load() {
        n if n == params.iters as u64 => Ok(per_second(params.iters, elapsed)),
        n => Err(format!("the counter reached {n}, not {}", params.iters).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiproc_runner_counts_every_increment() {
        let samples = multiproc(&Params {
            iters: 1001,
            size: 0,
        })
        .unwrap();
        assert_eq!(samples.len(), 1);
    }
}
