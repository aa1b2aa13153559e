//! A pool's whole life: start, one task, orderly shutdown.

use crate::case::{Against, Bound, BoxError, Case, Method, Params, Target, Unit};
use crate::cases::time_each;
use multiproc::{StartMethod, get_context};

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

/// The same with `StartMethod::Forkserver` workers.
pub const FORKSERVER: Case = Case {
    name: "pool_start_forkserver",
    measures: "pool_start with get_context(StartMethod::Forkserver).pool() (Python: \
               get_context('forkserver').Pool(2), and spawn and fork beside it); time per \
               pool, the server started before timing.",
    unit: Unit::Seconds,
    full: Params { iters: 10, size: 0 },
    quick: Params { iters: 1, size: 0 },
    multiproc: multiproc_forkserver,
    python: &[Method::Forkserver, Method::Spawn, Method::Fork],
    floors: &[],
    targets: &[
        Target {
            text: "≤ 1/10 of Python fork's",
            against: Against::Python(Method::Fork),
            bound: Bound::AtMost(0.1),
        },
        Target {
            text: "vs Python forkserver",
            against: Against::Python(Method::Forkserver),
            bound: Bound::Show,
        },
    ],
};

#[multiproc::worker]
fn pool_start_one() -> u8 {
    1
}

fn pool_start(method: StartMethod) -> Result<(), BoxError> {
    let pool = get_context(method).pool().processes(2).build()?;
    match pool.apply(pool_start_one, ())? {
        1 => {}
        other => return Err(format!("apply returned {other}").into()),
    }
    pool.close();
    pool.join()?;
    Ok(())
}

fn multiproc_forkserver(params: &Params) -> Result<Vec<f64>, BoxError> {
    // The server starts on first use: not timed.
    pool_start(StartMethod::Forkserver)?;
    time_each(params.iters, || pool_start(StartMethod::Forkserver))
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    time_each(params.iters, || {
        let pool = multiproc::Pool::builder().processes(2).build()?;
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

    #[test]
    fn forkserver_runner_times_each_pool() {
        let samples = multiproc_forkserver(&Params { iters: 2, size: 0 }).unwrap();
        assert_eq!(samples.len(), 2);
    }
}
