//! Fine-grained tasks through `apply_async`, all queued, then all got.

use crate::case::{Against, Bound, BoxError, Case, Method, Params, Target, Unit};
use crate::cases::per_second;
use multiproc::Pool;
use std::time::Instant;

pub const CASE: Case = Case {
    name: "pool_apply_async",
    measures: "`iters` pool.apply_async(increment, (i,)) on a Pool of 2 workers, then \
               .get() of each, checked (Python: the same with apply_async and get()); \
               tasks per second, pool start not counted.",
    unit: Unit::PerSecond,
    full: Params {
        iters: 100_000,
        size: 0,
    },
    quick: Params {
        iters: 2_000,
        size: 0,
    },
    multiproc,
    python: &[Method::Spawn, Method::Fork],
    floors: &[],
    targets: &[Target {
        text: "≥ 10 × Python tasks/s",
        against: Against::PythonBest,
        bound: Bound::AtLeast(10.0),
    }],
};

#[multiproc::worker]
fn pool_async_increment(x: u64) -> u64 {
    x + 1
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    let pool = Pool::builder().processes(2).build()?;
    // Both workers up before timing.
    pool.map(pool_async_increment, [0, 1])?;
    let rate = increments_per_second(&pool, params.iters)?;
    pool.close();
    pool.join()?;
    Ok(rate)
}

/// `iters` `apply_async(increment, (i,))` on `pool`, then `get` of each,
/// checked: the tasks per second, as the round's one sample.
pub fn increments_per_second(pool: &Pool, iters: usize) -> Result<Vec<f64>, BoxError> {
    let start = Instant::now();
    let pending = (0..iters as u64)
        .map(|i| pool.apply_async(pool_async_increment, (i,)))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, result) in pending.into_iter().enumerate() {
        let got = result.get()?;
        if got != i as u64 + 1 {
            return Err(format!("task {i} returned {got}").into());
        }
    }
    Ok(per_second(iters, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiproc_runner_gets_every_result() {
        let samples = multiproc(&Params {
            iters: 100,
            size: 0,
        })
        .unwrap();
        assert_eq!(samples.len(), 1);
    }
}
