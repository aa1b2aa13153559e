//! Bulk copies into and out of a shared `Array<u8>`.

use crate::case::{Against, Bound, BoxError, Case, Floor, Method, Params, Target, Unit};
use crate::cases::per_second;
use multiproc::Array;
use std::hint::black_box;
use std::time::Instant;

const MIB: usize = 1 << 20;

pub const CASE: Case = Case {
    name: "array_copy",
    measures: "An Array<u8> of `size` bytes (100 MiB; 16 MiB with --quick): copy_from_slice into it and out of \
               it under its lock, `iters` times each, after one untimed pass that faults \
               its pages in (Python: Array('B', size, lock=True), `with a.get_lock(): \
               mv[:] = src` and `out[:] = mv` on memoryviews, the fastest of the \
               idiomatic ways; no child, so only spawn's context runs); bytes copied per \
               second, both directions counted. Floor: the same two copies between heap \
               buffers (memcpy).",
    unit: Unit::BytesPerSecond,
    full: Params {
        iters: 8,
        size: 100 * MIB,
    },
    quick: Params {
        iters: 2,
        size: 16 * MIB,
    },
    multiproc,
    python: &[Method::Spawn],
    floors: &[Floor {
        label: "memcpy between heap buffers",
        run: floor_memcpy,
    }],
    targets: &[Target {
        text: "vs memcpy (shown, no target)",
        against: Against::Floor(0),
        bound: Bound::Show,
    }],
};

/// `size` bytes of 0, 1, ..., 250, 0, 1, ...
fn source(size: usize) -> Vec<u8> {
    let pattern: Vec<u8> = (0..251).collect();
    let mut bytes = vec![0u8; size];
    for chunk in bytes.chunks_mut(pattern.len()) {
        chunk.copy_from_slice(&pattern[..chunk.len()]);
    }
    bytes
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    let array = Array::<u8>::new(params.size)?;
    let src = source(params.size);
    let mut out = vec![0u8; params.size];
    let mut pass = || -> Result<(), BoxError> {
        array
            .lock()
            .map_err(|_| "a holder died")?
            .copy_from_slice(black_box(&src));
        out.copy_from_slice(&array.lock().map_err(|_| "a holder died")?);
        black_box(&mut out);
        Ok(())
    };
    pass()?;
    let start = Instant::now();
    for _ in 0..params.iters {
        pass()?;
    }
    let elapsed = start.elapsed();
    if out != src {
        return Err("the copy out differs from the copy in".into());
    }
    Ok(per_second(2 * params.iters * params.size, elapsed))
}

fn floor_memcpy(params: &Params) -> Result<Vec<f64>, BoxError> {
    let src = source(params.size);
    let mut middle = vec![0u8; params.size];
    let mut out = vec![0u8; params.size];
    let mut pass = || {
        middle.copy_from_slice(black_box(&src));
        out.copy_from_slice(black_box(&middle));
        black_box(&mut out);
    };
    pass();
    let start = Instant::now();
    for _ in 0..params.iters {
        pass();
    }
    let elapsed = start.elapsed();
    if out != src {
        return Err("the copy out differs from the copy in".into());
    }
    Ok(per_second(2 * params.iters * params.size, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiproc_runner_round_trips_the_bytes() {
        let samples = multiproc(&Params {
            iters: 2,
            size: 4096,
        })
        .unwrap();
        assert_eq!(samples.len(), 1);
    }
}
