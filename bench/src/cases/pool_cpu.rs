//! CPU-bound tasks on 2 workers, against the same work serially and in
//! rayon's threads.

use crate::case::{Against, Bound, BoxError, Case, Floor, Params, Target, Unit};
use crate::cases::per_second;
use multiproc::Pool;
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Instant;

pub const CASE: Case = Case {
    name: "pool_cpu",
    measures: "`iters` CPU-bound tasks, each summing `size` iterations of an integer \
               hash (splitmix64), through pool.chunksize(1).starmap on a Pool of 2 \
               workers; tasks per second, pool start not counted. Baselines: the same \
               tasks one after another in this process, and in a 2-thread rayon pool \
               (par_iter, one task per split). No Python row: pure-Python hashing is \
               orders of magnitude slower, a different workload.",
    unit: Unit::PerSecond,
    full: Params {
        iters: 32,
        size: 8_000_000,
    },
    quick: Params {
        iters: 8,
        size: 4_000_000,
    },
    multiproc,
    python: &[],
    floors: &[
        Floor {
            label: "serial, in this process",
            run: serial,
        },
        Floor {
            label: "rayon, 2 threads",
            run: rayon_threads,
        },
    ],
    targets: &[
        Target {
            text: "≥ 1.9 × serial",
            against: Against::Floor(0),
            bound: Bound::AtLeast(1.9),
        },
        Target {
            text: "≥ 0.95 × rayon",
            against: Against::Floor(1),
            bound: Bound::AtLeast(0.95),
        },
    ],
};

/// The sum of splitmix64 over `seed..seed + n`.
fn burn(seed: u64, n: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        let mut z = seed.wrapping_add(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        sum = sum.wrapping_add(z ^ (z >> 31));
    }
    sum
}

#[multiproc::worker]
fn pool_cpu_burn(seed: u64, n: u64) -> u64 {
    burn(black_box(seed), black_box(n))
}

/// Each task's arguments: its seed and the iterations.
fn tasks(params: &Params) -> Vec<(u64, u64)> {
    (0..params.iters as u64)
        .map(|t| (t << 40, params.size as u64))
        .collect()
}

fn check(params: &Params, sums: &[u64]) -> Result<(), BoxError> {
    // A cheap check: every task ran and returned something; the sums of
    // equal work must agree across implementations (the tests compare).
    if sums.len() == params.iters {
        Ok(())
    } else {
        Err(format!("{} results for {} tasks", sums.len(), params.iters).into())
    }
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    let pool = Pool::builder().processes(2).build()?;
    // Both workers up before timing.
    pool.starmap(pool_cpu_burn, [(0, 1), (1, 1)])?;
    let tasks = tasks(params);
    let start = Instant::now();
    let sums = pool.chunksize(1).starmap(pool_cpu_burn, tasks)?;
    let elapsed = start.elapsed();
    check(params, &sums)?;
    pool.close();
    pool.join()?;
    Ok(per_second(params.iters, elapsed))
}

fn serial(params: &Params) -> Result<Vec<f64>, BoxError> {
    let tasks = tasks(params);
    let start = Instant::now();
    let sums: Vec<u64> = tasks
        .iter()
        .map(|&(seed, n)| burn(black_box(seed), black_box(n)))
        .collect();
    let elapsed = start.elapsed();
    check(params, &sums)?;
    Ok(per_second(params.iters, elapsed))
}

fn rayon_threads(params: &Params) -> Result<Vec<f64>, BoxError> {
    let threads = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
    // Both threads up before timing.
    threads.install(|| (0..2).into_par_iter().with_max_len(1).for_each(|_| ()));
    let tasks = tasks(params);
    let start = Instant::now();
    let sums: Vec<u64> = threads.install(|| {
        tasks
            .par_iter()
            .with_max_len(1)
            .map(|&(seed, n)| burn(black_box(seed), black_box(n)))
            .collect()
    });
    let elapsed = start.elapsed();
    check(params, &sums)?;
    Ok(per_second(params.iters, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_runner_does_the_same_work() {
        let params = Params {
            iters: 4,
            size: 1000,
        };
        let pool = Pool::builder().processes(2).build().unwrap();
        let ours = pool.starmap(pool_cpu_burn, tasks(&params)).unwrap();
        let local: Vec<u64> = tasks(&params).iter().map(|&(s, n)| burn(s, n)).collect();
        assert_eq!(ours, local);
        for run in [multiproc, serial, rayon_threads] {
            assert_eq!(run(&params).unwrap().len(), 1);
        }
    }
}
