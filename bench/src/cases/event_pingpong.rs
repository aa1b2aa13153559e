//! A round trip between two processes through two `Event`s.

use crate::case::{Against, Bound, BoxError, Case, Floor, Method, Params, Target, Unit};
use crate::cases::latency::{self, Pinned};
use crate::cases::time_each;
use multiproc::{Event, Process};

pub const CASE: Case = Case {
    name: "event_pingpong",
    measures: "The parent sets event `ping` and waits for `pong`, then clears it; a child \
               waits for `ping`, clears it and sets `pong` (Python: the same with two \
               Event()s); time per round trip. Compared with pipe_roundtrip's multiproc \
               median (no target). Floors: a raw socketpair ping-pong unpinned and with \
               both on one CPU; two processes spinning on shared memory on two CPUs; and \
               the multiproc work with parent and child pinned to one CPU.",
    unit: Unit::Seconds,
    full: Params {
        iters: 10_000,
        size: 0,
    },
    quick: Params {
        iters: 500,
        size: 0,
    },
    multiproc,
    python: &[Method::Spawn, Method::Fork],
    floors: &[
        latency::SOCKETPAIR,
        latency::SOCKETPAIR_ONE_CPU,
        latency::SPIN,
        Floor {
            label: latency::PINNED_LABEL,
            run: multiproc_one_cpu,
        },
    ],
    targets: &[
        Target {
            text: "vs pipe_roundtrip (shown, no target)",
            against: Against::Case("pipe_roundtrip"),
            bound: Bound::Show,
        },
        Target {
            text: "pinned multiproc ÷ this (shown)",
            against: Against::Rows(3, 1),
            bound: Bound::Show,
        },
        Target {
            text: "vs the spinning floor (shown)",
            against: Against::Floor(2),
            bound: Bound::Show,
        },
    ],
};

/// Answers `trips` pings with pongs.
#[multiproc::worker]
fn answer(ping: Event, pong: Event, trips: usize) {
    for _ in 0..trips {
        ping.wait();
        ping.clear();
        pong.set();
    }
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    round_trips(params, None)
}

fn multiproc_one_cpu(params: &Params) -> Result<Vec<f64>, BoxError> {
    latency::on_one_cpu(|pinned| round_trips(params, Some(pinned)))
}

fn round_trips(params: &Params, pinned: Option<&Pinned>) -> Result<Vec<f64>, BoxError> {
    let (ping, back) = (Event::new()?, Event::new()?);
    let mut child = Process::new(answer, (ping.clone(), back.clone(), params.iters + 1));
    child.start()?;
    if let Some(pinned) = pinned {
        pinned.check_process(&child)?;
    }
    let trip = || {
        ping.set();
        back.wait();
        back.clear();
        Ok(())
    };
    // One untimed trip: the child is up.
    trip()?;
    let samples = time_each(params.iters, trip)?;
    child.result()?;
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiproc_runner_times_each_trip() {
        let samples = multiproc(&Params { iters: 3, size: 0 }).unwrap();
        assert_eq!(samples.len(), 3);
    }

    /// Through the binary (`tests/every_runner.rs`) the pinned runner's
    /// children are pinned; from a test thread they may not be (see
    /// [`latency::Pinned::check`]), which the runner reports rather than
    /// measuring them unpinned.
    #[test]
    fn the_pinned_runner_runs_or_says_its_children_are_not_pinned() {
        match multiproc_one_cpu(&Params { iters: 3, size: 0 }) {
            Ok(samples) => assert_eq!(samples.len(), 3),
            Err(e) => assert!(e.to_string().contains("not pinned"), "{e}"),
        }
    }
}
