//! `Pool::map` of many small items with the default chunk size.

use crate::case::{Against, Bound, BoxError, Case, Method, Params, Target, Unit};
use crate::cases::per_second;
use multiproc::Pool;
use std::time::Instant;

pub const CASE: Case = Case {
    name: "pool_map",
    measures: "pool.map(square, 0..size) of i64s on a Pool of 2 workers, default chunk \
               size, the result checked (Python: Pool(2).map(square, range(size))); items \
               per second, pool start not counted.",
    unit: Unit::PerSecond,
    full: Params {
        iters: 1,
        size: 1_000_000,
    },
    quick: Params {
        iters: 1,
        size: 100_000,
    },
    multiproc,
    python: &[Method::Spawn, Method::Fork],
    floors: &[],
    targets: &[Target {
        text: "≥ 10 × Python items/s",
        against: Against::PythonBest,
        bound: Bound::AtLeast(10.0),
    }],
};

#[multiproc::worker]
fn pool_map_square(x: i64) -> i64 {
    x * x
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    let pool = Pool::builder().processes(2).build()?;
    // Both workers up before timing.
    pool.map(pool_map_square, [0, 1])?;
    let n = params.size as i64;
    let start = Instant::now();
    let mut squares = Vec::new();
    for _ in 0..params.iters {
        squares = pool.map(pool_map_square, 0..n)?;
    }
    let elapsed = start.elapsed();
    if squares.len() != params.size || squares.iter().zip(0..).any(|(&s, i)| s != i * i) {
        return Err("map returned the wrong squares".into());
    }
    pool.close();
    pool.join()?;
    Ok(per_second(params.iters * params.size, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiproc_runner_checks_the_squares() {
        let samples = multiproc(&Params {
            iters: 1,
            size: 1000,
        })
        .unwrap();
        assert_eq!(samples.len(), 1);
    }
}
