//! A round trip between two processes through two `Event`s.

use crate::case::{Against, Bound, BoxError, Case, Method, Params, Target, Unit};
use crate::cases::time_each;
use multiproc::{Event, Process};

pub const CASE: Case = Case {
    name: "event_pingpong",
    measures: "The parent sets event `ping` and waits for `pong`, then clears it; a child \
               waits for `ping`, clears it and sets `pong` (Python: the same with two \
               Event()s); time per round trip. Compared with pipe_roundtrip's multiproc \
               median (no target).",
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
    floors: &[],
    targets: &[Target {
        text: "vs pipe_roundtrip (shown, no target)",
        against: Against::Case("pipe_roundtrip"),
        bound: Bound::Show,
    }],
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
    let (ping, back) = (Event::new()?, Event::new()?);
    let mut child = Process::new(answer, (ping.clone(), back.clone(), params.iters + 1));
    child.start()?;
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
}
