//! The per-task cost as the pool grows: `pool_apply_async`'s tiny tasks on
//! 2, 8, 32 and 128 workers.

use crate::case::{Against, Bound, BoxError, Case, Method, Params, Target, Unit};
use crate::cases::pool_apply_async::increments_per_second;
use multiproc::Pool;
use std::time::Duration;

const MEASURES: &str = "`iters` pool.apply_async(increment, (i,)) on a Pool of `size` workers, \
                        then .get() of each, checked (Python: the same, fork); tasks per \
                        second, the pool started and every worker up (a 10 ms task each) \
                        before timing. On a 2-core machine every size past 2 oversubscribes \
                        it: the cost of a worker that is not needed.";

/// One size's case; the targets for 32 and 128 compare with the 8 workers'.
const fn at(name: &'static str, workers: usize, targets: &'static [Target]) -> Case {
    Case {
        name,
        measures: MEASURES,
        unit: Unit::PerSecond,
        full: Params {
            iters: 100_000,
            size: workers,
        },
        quick: Params {
            iters: 2_000,
            size: workers,
        },
        multiproc,
        python: &[Method::Fork],
        floors: &[],
        targets,
    }
}

const VS_PYTHON: Target = Target {
    text: "≥ 10 × Python tasks/s",
    against: Against::PythonBest,
    bound: Bound::AtLeast(10.0),
};

const VS_EIGHT: Target = Target {
    text: "≥ 0.8 × the 8 workers' rate",
    against: Against::Case("pool_scale_8"),
    bound: Bound::AtLeast(0.8),
};

pub const TWO: Case = at("pool_scale_2", 2, &[VS_PYTHON]);
pub const EIGHT: Case = at("pool_scale_8", 8, &[VS_PYTHON]);
pub const THIRTY_TWO: Case = at("pool_scale_32", 32, &[VS_PYTHON, VS_EIGHT]);
pub const HUNDRED_TWENTY_EIGHT: Case = at("pool_scale_128", 128, &[VS_PYTHON, VS_EIGHT]);

/// Holds its worker long enough that a `map` of one per worker reaches
/// every worker.
#[multiproc::worker]
fn pool_scale_nap(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(10));
    x
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    let workers = params.size.max(1);
    let pool = Pool::builder().processes(workers).build()?;
    pool.chunksize(1).map(pool_scale_nap, 0..workers as u64)?;
    let rate = increments_per_second(&pool, params.iters)?;
    pool.close();
    pool.join()?;
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiproc_runner_gets_every_result() {
        let samples = multiproc(&Params {
            iters: 200,
            size: 8,
        })
        .unwrap();
        assert_eq!(samples.len(), 1);
    }
}
