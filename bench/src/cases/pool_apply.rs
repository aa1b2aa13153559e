//! `Pool::apply` round trip to one worker, against a `Pipe` round trip.

use crate::case::{Against, Bound, BoxError, Case, Floor, Method, Params, Target, Unit};
use crate::cases::time_each;
use multiproc::{Connection, Pipe, Pool, Process, RecvError};

pub const CASE: Case = Case {
    name: "pool_apply",
    measures: "pool.apply(identity, (x,)) of a u64 on a Pool of 1 worker, started and \
               used once before timing (Python: Pool(1).apply(identity, (x,))); time per \
               call. Baseline: multiproc's own Pipe round trip of a u64 to a child that \
               echoes it, measured in the same rounds.",
    unit: Unit::Seconds,
    full: Params {
        iters: 5_000,
        size: 0,
    },
    quick: Params {
        iters: 200,
        size: 0,
    },
    multiproc,
    python: &[Method::Spawn, Method::Fork],
    floors: &[Floor {
        label: "multiproc Pipe round trip, u64",
        run: pipe_roundtrip,
    }],
    targets: &[Target {
        text: "≤ 2 × the Pipe round trip",
        against: Against::Floor(0),
        bound: Bound::AtMost(2.0),
    }],
};

#[multiproc::worker]
fn pool_identity(x: u64) -> u64 {
    x
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    let pool = Pool::builder().processes(1).build()?;
    // One untimed call: the worker is up.
    pool.apply(pool_identity, (0,))?;
    let mut x = 0u64;
    let samples = time_each(params.iters, || {
        x += 1;
        match pool.apply(pool_identity, (x,))? {
            y if y == x => Ok(()),
            y => Err(format!("apply returned {y}, not {x}").into()),
        }
    })?;
    pool.close();
    pool.join()?;
    Ok(samples)
}

/// Echoes every message until the parent closes its end.
#[multiproc::worker]
fn pool_apply_echo(conn: Connection<u64>) {
    loop {
        match conn.recv() {
            Ok(x) => conn.send(&x).expect("the parent hung up"),
            Err(RecvError::Closed) => return,
            Err(e) => panic!("echo: {e}"),
        }
    }
}

fn pipe_roundtrip(params: &Params) -> Result<Vec<f64>, BoxError> {
    let (ours, theirs) = Pipe::<u64>::new()?;
    let mut child = Process::new(pool_apply_echo, (theirs,));
    child.start()?;
    ours.send(&0)?;
    ours.recv()?;
    let mut x = 0u64;
    let samples = time_each(params.iters, || {
        x += 1;
        ours.send(&x)?;
        match ours.recv()? {
            y if y == x => Ok(()),
            y => Err(format!("echoed {y}, sent {x}").into()),
        }
    })?;
    ours.close();
    child.result()?;
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runners_time_each_call() {
        let params = Params { iters: 3, size: 0 };
        assert_eq!(multiproc(&params).unwrap().len(), 3);
        assert_eq!(pipe_roundtrip(&params).unwrap().len(), 3);
    }
}
