//! `Pool::map` of many small items with the default chunk size.

use crate::case::{Against, Bound, BoxError, Case, Floor, Method, Params, Target, Unit};
use crate::cases::per_second;
use multiproc::Pool;
use std::time::Instant;

pub const CASE: Case = Case {
    name: "pool_map",
    measures: "pool.map(square, 0..size) of i64s on a Pool of 2 workers, default chunk \
               size, the result checked (Python: Pool(2).map(square, range(size))); items \
               per second, pool start not counted. Floor: multiproc itself, the input cut \
               by hand into 8 Vec<i64> chunks, one task each (map with chunksize 1 of a \
               worker that squares a whole Vec).",
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
    floors: &[Floor {
        label: "multiproc, 8 hand-made Vec<i64> chunks",
        run: hand_chunked,
    }],
    targets: &[
        Target {
            text: "≥ 20 × Python items/s",
            against: Against::PythonBest,
            bound: Bound::AtLeast(20.0),
        },
        Target {
            text: "≥ 2 × procspawn's hand-chunked best",
            against: Against::Procspawn,
            bound: Bound::AtLeast(2.0),
        },
        Target {
            text: "≥ 1 × its own 8-chunk form",
            against: Against::Floor(0),
            bound: Bound::AtLeast(1.0),
        },
    ],
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

#[multiproc::worker]
fn pool_map_square_chunk(xs: Vec<i64>) -> Vec<i64> {
    xs.into_iter().map(|x| x * x).collect()
}

/// The same squares, the input cut by hand into 8 chunks, one task each.
fn hand_chunked(params: &Params) -> Result<Vec<f64>, BoxError> {
    const CHUNKS: usize = 8;
    let pool = Pool::builder().processes(2).build()?;
    pool.map(pool_map_square, [0, 1])?;
    let n = params.size as i64;
    let per = params.size.div_ceil(CHUNKS) as i64;
    let start = Instant::now();
    let mut squares = Vec::new();
    for _ in 0..params.iters {
        let chunks = (0..CHUNKS as i64).map(|c| (c * per..((c + 1) * per).min(n)).collect());
        squares = pool
            .chunksize(1)
            .map(pool_map_square_chunk, chunks)?
            .into_iter()
            .flatten()
            .collect();
    }
    let elapsed = start.elapsed();
    if squares.len() != params.size || squares.iter().zip(0..).any(|(&s, i)| s != i * i) {
        return Err("the chunks returned the wrong squares".into());
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
        let samples = hand_chunked(&Params {
            iters: 1,
            size: 1001,
        })
        .unwrap();
        assert_eq!(samples.len(), 1);
    }
}
