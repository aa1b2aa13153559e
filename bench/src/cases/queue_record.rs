//! A small struct through a `Queue`, one producer to one consumer: once in
//! postcard (the default codec) and once wrapped in
//! [`SelfDescribing`](multiproc::SelfDescribing) (MessagePack with field
//! names), so the table shows what the escape hatch costs.

use crate::case::{BoxError, Case, Method, Params, Unit};
use crate::cases::{Crew, per_second, ready_then_wait_for_go};
use multiproc::{Connection, Process, Queue, SelfDescribing};
use serde::{Deserialize, Serialize};
use std::time::Instant;

const MEASURES: &str = "a child puts `iters` records {id: u64, name: String, tags: \
                        Vec<String>, score: f64} into a Queue, the parent gets them \
                        (Python: the same dict); records per second from the parent's \
                        go to its last get, the child already started.";

pub const CASE: Case = Case {
    name: "queue_record",
    measures: MEASURES,
    unit: Unit::PerSecond,
    full: Params {
        iters: 50_000,
        size: 0,
    },
    quick: Params {
        iters: 2_000,
        size: 0,
    },
    multiproc: postcard,
    python: &[Method::Spawn, Method::Fork],
    floors: &[],
    targets: &[],
};

/// The same records, each wrapped in `SelfDescribing` (MessagePack).
pub const SELF_DESCRIBING: Case = Case {
    name: "queue_record_self_describing",
    measures: "queue_record with Queue<SelfDescribing<Record>>: the records carried \
               as MessagePack with field names (feature `self-describing`); Python \
               runs the same as for queue_record.",
    multiproc: self_describing,
    ..CASE
};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Record {
    id: u64,
    name: String,
    tags: Vec<String>,
    score: f64,
}

fn record(i: u64) -> Record {
    Record {
        id: i,
        name: format!("item-{i}"),
        tags: vec!["alpha".into(), "beta".into()],
        score: i as f64 * 0.5,
    }
}

#[multiproc::worker]
fn produce_plain(q: Queue<Record>, control: Connection<u8>, count: u64) {
    ready_then_wait_for_go(&control);
    for i in 0..count {
        q.put(record(i)).expect("put");
    }
}

#[multiproc::worker]
fn produce_wrapped(q: Queue<SelfDescribing<Record>>, control: Connection<u8>, count: u64) {
    ready_then_wait_for_go(&control);
    for i in 0..count {
        q.put(SelfDescribing(record(i))).expect("put");
    }
}

fn postcard(params: &Params) -> Result<Vec<f64>, BoxError> {
    let q = Queue::<Record>::new()?;
    let count = params.iters as u64;
    let crew = Crew::start(1, |_, control| {
        Process::new(produce_plain, (q.clone(), control, count))
    })?;
    let start = Instant::now();
    crew.go()?;
    let mut sum = 0u64;
    for _ in 0..count {
        sum += q.get()?.id;
    }
    let elapsed = start.elapsed();
    crew.join()?;
    check(sum, count)?;
    Ok(per_second(params.iters, elapsed))
}

fn self_describing(params: &Params) -> Result<Vec<f64>, BoxError> {
    let q = Queue::<SelfDescribing<Record>>::new()?;
    let count = params.iters as u64;
    let crew = Crew::start(1, |_, control| {
        Process::new(produce_wrapped, (q.clone(), control, count))
    })?;
    let start = Instant::now();
    crew.go()?;
    let mut sum = 0u64;
    for _ in 0..count {
        sum += q.get()?.0.id;
    }
    let elapsed = start.elapsed();
    crew.join()?;
    check(sum, count)?;
    Ok(per_second(params.iters, elapsed))
}

fn check(sum: u64, count: u64) -> Result<(), BoxError> {
    let expected = count * count.saturating_sub(1) / 2;
    if sum != expected {
        return Err(format!("the record ids sum to {sum}, not {expected}").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_codecs_deliver_every_record() {
        let p = Params {
            iters: 500,
            size: 0,
        };
        assert_eq!(postcard(&p).unwrap().len(), 1);
        assert_eq!(self_describing(&p).unwrap().len(), 1);
    }
}
