//! `Lock` acquire + release from two processes at once.

use crate::case::{Against, Bound, BoxError, Case, Floor, Method, Params, Target, Unit};
use crate::cases::{Crew, done, per_second, ready_then_wait_for_go};
use multiproc::{Connection, Lock, Process};
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Instant;

pub const CASE: Case = Case {
    name: "lock_contended",
    measures: "Lock::acquire + drop of the guard (empty critical section) in a loop, by \
               the parent and one child at once, `iters` in all (Python: `with lock: \
               pass` with Lock()); acquisitions per second from go until both are done. \
               Floor: std::sync::Mutex locked the same way by two threads of one process.",
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
    floors: &[Floor {
        label: "std::sync::Mutex, 2 threads",
        run: floor_std_mutex,
    }],
    targets: &[Target {
        text: "≥ 5 × Python Lock",
        against: Against::PythonBest,
        bound: Bound::AtLeast(5.0),
    }],
};

fn hammer(lock: &Lock, times: usize) {
    for _ in 0..times {
        drop(black_box(lock.acquire().expect("a holder died")));
    }
}

/// Acquires and releases `times` times once the parent says go.
#[multiproc::worker]
fn contend(lock: Lock, control: Connection<u8>, times: usize) {
    ready_then_wait_for_go(&control);
    hammer(&lock, times);
    done(&control);
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    let lock = Lock::new()?;
    let ours = params.iters / 2;
    let theirs = params.iters - ours;
    let crew = Crew::start(1, |_, control| {
        Process::new(contend, (lock.clone(), control, theirs))
    })?;
    let start = Instant::now();
    crew.go()?;
    hammer(&lock, ours);
    crew.wait_done()?;
    let elapsed = start.elapsed();
    crew.join()?;
    Ok(per_second(params.iters, elapsed))
}

fn floor_std_mutex(params: &Params) -> Result<Vec<f64>, BoxError> {
    let mutex = Mutex::new(());
    let hammer = |times: usize| {
        for _ in 0..times {
            drop(black_box(mutex.lock()));
        }
    };
    let ours = params.iters / 2;
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| hammer(params.iters - ours));
        hammer(ours);
    });
    Ok(per_second(params.iters, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiproc_runner_counts_both_processes() {
        let samples = multiproc(&Params {
            iters: 1000,
            size: 0,
        })
        .unwrap();
        assert_eq!(samples.len(), 1);
    }
}
