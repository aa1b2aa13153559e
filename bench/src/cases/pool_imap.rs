//! Fine-grained tasks through `imap` with chunk size 1.

use crate::case::{Against, Bound, BoxError, Case, Method, Params, Target, Unit};
use crate::cases::per_second;
use multiproc::Pool;
use std::time::Instant;

pub const CASE: Case = Case {
    name: "pool_imap",
    measures: "pool.chunksize(1).imap(increment, 0..iters) on a Pool of 2 workers, every \
               result read in order and checked (Python: Pool(2).imap(increment, \
               range(iters), chunksize=1)); tasks per second, pool start not counted.",
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
fn pool_imap_increment(x: u64) -> u64 {
    x + 1
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    let pool = Pool::builder().processes(2).build()?;
    // Both workers up before timing.
    pool.map(pool_imap_increment, [0, 1])?;
    let start = Instant::now();
    let results = pool
        .chunksize(1)
        .imap(pool_imap_increment, 0..params.iters as u64)?;
    let mut expected = 1;
    for result in results {
        let got = result?;
        if got != expected {
            return Err(format!("imap yielded {got}, not {expected}").into());
        }
        expected += 1;
    }
    let elapsed = start.elapsed();
    if expected != params.iters as u64 + 1 {
        return Err(format!("imap yielded {} results", expected - 1).into());
    }
    pool.close();
    pool.join()?;
    Ok(per_second(params.iters, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiproc_runner_reads_every_result() {
        let samples = multiproc(&Params {
            iters: 100,
            size: 0,
        })
        .unwrap();
        assert_eq!(samples.len(), 1);
    }
}
