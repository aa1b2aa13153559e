//! 1 MiB messages through a `Queue`, one producer to one consumer.

use crate::case::{Against, Bound, BoxError, Case, Floor, Method, Params, Target, Unit};
use crate::cases::{Crew, floor, per_second, ready_then_wait_for_go};
use multiproc::{Connection, Process, Queue};
use serde_bytes::ByteBuf;
use std::io::{Read, Write};
use std::time::Instant;

/// One message's payload in a full and a quick run.
const MIB: usize = 1 << 20;

pub const CASE: Case = Case {
    name: "queue_1mib",
    measures: "Queue<serde_bytes::ByteBuf>: a child puts `iters` messages of `size` \
               (1 MiB) bytes with `put_ref` (no clone), the parent gets them \
               (Python: Queue().put(payload) / get() of a bytes object); payload bytes \
               per second from the parent's go to its last get. Floors: a bare child \
               writing `size`-byte blocks to a pipe that the parent reads with \
               `size`-byte reads, with the default 64 KiB pipe buffer and with a \
               1 MiB one (F_SETPIPE_SZ).",
    unit: Unit::BytesPerSecond,
    full: Params {
        iters: 256,
        size: MIB,
    },
    quick: Params {
        iters: 16,
        size: MIB,
    },
    multiproc,
    python: &[Method::Spawn, Method::Fork],
    floors: &[
        Floor {
            label: "pipe, 1 MiB writes, 64 KiB buffer",
            run: floor_pipe,
        },
        Floor {
            label: "pipe, 1 MiB writes, 1 MiB buffer",
            run: floor_pipe_1mib,
        },
    ],
    targets: &[
        Target {
            text: "≥ 5 × Python Queue",
            against: Against::PythonBest,
            bound: Bound::AtLeast(5.0),
        },
        Target {
            text: "≥ 0.6 × raw pipe bandwidth",
            against: Against::Floor(0),
            bound: Bound::AtLeast(0.6),
        },
        Target {
            text: "≥ 0.6 × raw pipe bandwidth",
            against: Against::Floor(1),
            bound: Bound::AtLeast(0.6),
        },
    ],
};

/// Puts `count` copies of a `size`-byte buffer once the parent says go.
#[multiproc::worker]
fn produce(q: Queue<ByteBuf>, control: Connection<u8>, count: usize, size: usize) {
    let payload = ByteBuf::from(vec![0x5a_u8; size]);
    ready_then_wait_for_go(&control);
    for _ in 0..count {
        q.put_ref(&payload).expect("put");
    }
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    let q = Queue::<ByteBuf>::new()?;
    let crew = Crew::start(1, |_, control| {
        Process::new(produce, (q.clone(), control, params.iters, params.size))
    })?;
    let start = Instant::now();
    crew.go()?;
    let mut bytes = 0;
    for _ in 0..params.iters {
        bytes += q.get()?.len();
    }
    let elapsed = start.elapsed();
    crew.join()?;
    if bytes != params.iters * params.size {
        return Err(format!("got {bytes} bytes").into());
    }
    Ok(per_second(bytes, elapsed))
}

fn floor_pipe(params: &Params) -> Result<Vec<f64>, BoxError> {
    pipe_bandwidth(params, None)
}

fn floor_pipe_1mib(params: &Params) -> Result<Vec<f64>, BoxError> {
    pipe_bandwidth(params, Some(MIB))
}

/// A bare child writes `iters` blocks of `size` bytes into a pipe (with a
/// buffer of `pipe_size`, if given); the parent reads them, `size` at a time.
fn pipe_bandwidth(params: &Params, pipe_size: Option<usize>) -> Result<Vec<f64>, BoxError> {
    let (mut data, data_in) = std::io::pipe()?;
    let (go_out, mut go) = std::io::pipe()?;
    if let Some(size) = pipe_size {
        let size = i32::try_from(size)?;
        nix::fcntl::fcntl(&data, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size))?;
    }
    let child = floor::spawn(
        floor::WRITE_BLOCKS,
        &[params.size.to_string(), params.iters.to_string()],
        go_out,
        data_in,
    )?;
    let mut buffer = vec![0u8; params.size.max(1)];
    data.read_exact(&mut buffer[..1])?;
    let total = params.iters * params.size;
    let start = Instant::now();
    go.write_all(&[1])?;
    let mut got = 0;
    while got < total {
        match data.read(&mut buffer)? {
            0 => return Err(format!("the pipe ended after {got} bytes").into()),
            n => got += n,
        }
    }
    let elapsed = start.elapsed();
    floor::reap(child)?;
    Ok(per_second(total, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiproc_runner_moves_every_byte() {
        let samples = multiproc(&Params {
            iters: 4,
            size: 1000,
        })
        .unwrap();
        assert_eq!(samples.len(), 1);
    }
}
