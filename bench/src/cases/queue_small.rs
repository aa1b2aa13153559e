//! Small messages through a `Queue`, one producer to one consumer.

use crate::case::{Against, Bound, BoxError, Case, Method, Params, Target, Unit};
use crate::cases::{Crew, per_second, ready_then_wait_for_go};
use multiproc::{Connection, Process, Queue};
use std::time::Instant;

pub const CASE: Case = Case {
    name: "queue_small",
    measures: "Queue<u64>: a child puts `iters` u64s, the parent gets them (Python: \
               Queue().put(i) / get() of small ints); messages per second from the \
               parent's go to its last get, the child already started.",
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
    targets: &[Target {
        text: "≥ 10 × Python Queue",
        against: Against::PythonBest,
        bound: Bound::AtLeast(10.0),
    }],
};

/// Puts `0..count` once the parent says go.
#[multiproc::worker]
fn produce(q: Queue<u64>, control: Connection<u8>, count: u64) {
    ready_then_wait_for_go(&control);
    for i in 0..count {
        q.put(i).expect("put");
    }
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    many_to_one(1, params.iters)
}

/// `producers` children put `messages` u64s in all; the parent gets them.
/// One sample: messages per second.
pub fn many_to_one(producers: usize, messages: usize) -> Result<Vec<f64>, BoxError> {
    let q = Queue::<u64>::new()?;
    let share = |i: usize| (messages / producers + usize::from(i < messages % producers)) as u64;
    let crew = Crew::start(producers, |i, control| {
        Process::new(produce, (q.clone(), control, share(i)))
    })?;
    let start = Instant::now();
    crew.go()?;
    let mut sum = 0u64;
    for _ in 0..messages {
        sum += q.get()?;
    }
    let elapsed = start.elapsed();
    crew.join()?;
    let expected: u64 = (0..producers)
        .map(|i| share(i) * share(i).saturating_sub(1) / 2)
        .sum();
    if sum != expected {
        return Err(format!("the messages sum to {sum}, not {expected}").into());
    }
    Ok(per_second(messages, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_every_message() {
        assert_eq!(many_to_one(1, 1000).unwrap().len(), 1);
        assert_eq!(many_to_one(3, 1000).unwrap().len(), 1);
    }
}
