//! `Pool::apply` round trip of a large byte payload to one worker, against
//! a `Pipe` round trip of the same bytes.

use crate::case::{Against, Bound, BoxError, Case, Floor, Method, Params, Target, Unit};
use multiproc::{Connection, Pipe, Pool, Process, RecvError};
use serde_bytes::ByteBuf;
use std::time::Instant;

const MIB: usize = 1 << 20;

/// What [`PAYLOAD_1MIB`] and [`PAYLOAD_8MIB`] measure, `size` aside.
const MEASURES: &str = "pool.apply(echo, (payload,)) of a `size`-byte (1 MiB, or 8 MiB in \
                        pool_payload_8mib) serde_bytes::ByteBuf on a Pool of 1 worker, started and used once before timing, the echo \
                        checked after each call (Python: Pool(1).apply(echo, (payload,)) of a \
                        bytes object); time per call, the clone that apply's by-value \
                        argument needs made before timing. Floor: multiproc's own Pipe round \
                        trip of the same bytes to a child that echoes them.";

pub const PAYLOAD_1MIB: Case = Case {
    name: "pool_payload_1mib",
    measures: MEASURES,
    unit: Unit::Seconds,
    full: Params {
        iters: 100,
        size: MIB,
    },
    quick: Params {
        iters: 8,
        size: MIB,
    },
    multiproc,
    python: &[Method::Spawn, Method::Fork],
    floors: &[Floor {
        label: "multiproc Pipe round trip, same bytes",
        run: pipe_roundtrip,
    }],
    targets: &[Target {
        text: "vs the Pipe round trip",
        against: Against::Floor(0),
        bound: Bound::Show,
    }],
};

/// [`PAYLOAD_1MIB`] with 8 MiB.
pub const PAYLOAD_8MIB: Case = Case {
    name: "pool_payload_8mib",
    full: Params {
        iters: 25,
        size: 8 * MIB,
    },
    quick: Params {
        iters: 3,
        size: 8 * MIB,
    },
    ..PAYLOAD_1MIB
};

/// `size` bytes of a pattern the echo must bring back as it went.
pub fn payload(size: usize) -> ByteBuf {
    ByteBuf::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// Checks one echo against what was sent.
pub fn check_echo(sent: &ByteBuf, echoed: &ByteBuf) -> Result<(), BoxError> {
    if echoed == sent {
        Ok(())
    } else {
        Err(format!(
            "the echo differs: {} bytes back for {} sent",
            echoed.len(),
            sent.len()
        )
        .into())
    }
}

#[multiproc::worker]
fn pool_payload_echo(payload: ByteBuf) -> ByteBuf {
    payload
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    let pool = Pool::builder().processes(1).build()?;
    let sent = payload(params.size);
    // One untimed call: the worker is up.
    check_echo(&sent, &pool.apply(pool_payload_echo, (sent.clone(),))?)?;
    let mut samples = Vec::with_capacity(params.iters);
    for _ in 0..params.iters {
        let argument = sent.clone();
        let start = Instant::now();
        let echoed = pool.apply(pool_payload_echo, (argument,))?;
        samples.push(start.elapsed().as_secs_f64());
        check_echo(&sent, &echoed)?;
    }
    pool.close();
    pool.join()?;
    Ok(samples)
}

/// Echoes every payload until the parent closes its end.
#[multiproc::worker]
fn pool_payload_pipe_echo(conn: Connection<ByteBuf>) {
    loop {
        match conn.recv() {
            Ok(payload) => conn.send(&payload).expect("the parent hung up"),
            Err(RecvError::Closed) => return,
            Err(e) => panic!("echo: {e}"),
        }
    }
}

fn pipe_roundtrip(params: &Params) -> Result<Vec<f64>, BoxError> {
    let (ours, theirs) = Pipe::<ByteBuf>::new()?;
    let mut child = Process::new(pool_payload_pipe_echo, (theirs,));
    child.start()?;
    let sent = payload(params.size);
    ours.send(&sent)?;
    check_echo(&sent, &ours.recv()?)?;
    let mut samples = Vec::with_capacity(params.iters);
    for _ in 0..params.iters {
        let start = Instant::now();
        ours.send(&sent)?;
        let echoed = ours.recv()?;
        samples.push(start.elapsed().as_secs_f64());
        check_echo(&sent, &echoed)?;
    }
    ours.close();
    child.result()?;
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runners_time_each_call() {
        let params = Params {
            iters: 3,
            size: 100_000,
        };
        assert_eq!(multiproc(&params).unwrap().len(), 3);
        assert_eq!(pipe_roundtrip(&params).unwrap().len(), 3);
    }

    #[test]
    fn a_wrong_echo_is_an_error() {
        let sent = payload(1000);
        assert!(check_echo(&sent, &sent.clone()).is_ok());
        assert!(check_echo(&sent, &payload(999)).is_err());
    }
}
