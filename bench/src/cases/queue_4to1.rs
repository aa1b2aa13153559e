//! Small messages through a `Queue`, four producers to one consumer.

use crate::case::{BoxError, Case, Method, Params, Unit};
use crate::cases::queue_small::many_to_one;

pub const CASE: Case = Case {
    name: "queue_4to1",
    measures: "Queue<u64>: 4 children put `iters` u64s in all, the parent gets them \
               (Python: the same with Queue and small ints); messages per second from \
               the parent's go to its last get, the children already started.",
    unit: Unit::PerSecond,
    full: Params {
        iters: 50_000,
        size: 0,
    },
    quick: Params {
        iters: 2_000,
        size: 0,
    },
    multiproc,
    python: &[Method::Spawn, Method::Fork],
    floors: &[],
    targets: &[],
};

/// The producers.
pub const PRODUCERS: usize = 4;

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    many_to_one(PRODUCERS, params.iters)
}
