//! `Lock` acquire + release by one process, nobody else trying.

use crate::case::{BoxError, Case, Floor, Method, Params, Unit};
use crate::cases::per_second;
use multiproc::Lock;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Instant;

pub const CASE: Case = Case {
    name: "lock_uncontended",
    measures: "Lock::acquire + drop of the guard in a loop in one process, nobody else \
               trying (Python: `with lock: pass` with Lock(), no child, so the start \
               method does not matter and only spawn's context runs); acquisitions per \
               second. Floor: std::sync::Mutex, in-process.",
    unit: Unit::PerSecond,
    full: Params {
        iters: 2_000_000,
        size: 0,
    },
    quick: Params {
        iters: 50_000,
        size: 0,
    },
    multiproc,
    python: &[Method::Spawn],
    floors: &[Floor {
        label: "std::sync::Mutex",
        run: floor_std_mutex,
    }],
    targets: &[],
};

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    let lock = Lock::new()?;
    drop(lock.acquire());
    let start = Instant::now();
    for _ in 0..params.iters {
        drop(black_box(lock.acquire().map_err(|_| "a holder died")?));
    }
    Ok(per_second(params.iters, start.elapsed()))
}

fn floor_std_mutex(params: &Params) -> Result<Vec<f64>, BoxError> {
    let mutex = Mutex::new(());
    let start = Instant::now();
    for _ in 0..params.iters {
        drop(black_box(black_box(&mutex).lock()));
    }
    Ok(per_second(params.iters, start.elapsed()))
}
