//! A pool's whole life: start, one task, orderly shutdown.

use crate::case::{Against, Bound, BoxError, Case, Method, Params, Target, Unit};
use crate::cases::time_each;
use multiproc::Pool;

pub const CASE: Case = Case {
    name: "pool_start",
    measures: "Pool::builder().processes(2).build() + apply(one, ()) + close + join \
               (Python: Pool(2), apply(one), close(), join()); time per pool.",
    unit: Unit::Seconds,
    full: Params { iters: 10, size: 0 },
    quick: Params { iters: 1, size: 0 },
    multiproc,
    python: &[Method::Spawn, Method::Fork],
    floors: &[],
    targets: &[Target {
        text: "≤ 1/10 of Python's",
        against: Against::PythonBest,
        bound: Bound::AtMost(0.1),
    }],
};

#[multiproc::worker]
fn pool_start_one() -> u8 {
    1
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    time_each(params.iters, || {
        let pool = Pool::builder().processes(2).build()?;
        match pool.apply(pool_start_one, ())? {
            1 => {}
            other => return Err(format!("apply returned {other}").into()),
        }
        pool.close();
        pool.join()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiproc_runner_times_each_pool() {
        assert_eq!(multiproc(&Params { iters: 2, size: 0 }).unwrap().len(), 2);
    }
}
