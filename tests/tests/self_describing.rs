//! `SelfDescribing<T>` (feature `self-describing`): the serde features
//! postcard cannot carry (`skip_serializing_if`, `flatten`, untagged and
//! internally tagged enums, `serde_json::Value`) cross every boundary when
//! wrapped: a worker's argument and result, a queue, a pipe, a pool's map.
//! Handles inside a wrapped value still travel, and hostile bytes inside
//! the wrapper fail in a child with a tight memory limit, without
//! allocating what they announce.

use multiproc::{
    Connection, Pipe, Pool, Process, Queue, RecvTimeoutError, Resource, SelfDescribing, worker,
};
use multiproc_tests::join;
use multiproc_tests::serde_types::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(60);

/// One module per type: its workers and a test per boundary.
macro_rules! crosses {
    ($ty:ty, $value:expr) => {
        use super::*;

        type Wrapped = SelfDescribing<$ty>;

        fn value() -> $ty {
            $value
        }

        /// Whether the child got the value, and the value back.
        #[worker]
        fn check_and_echo(v: Wrapped) -> (bool, Wrapped) {
            (v.0 == value(), v)
        }

        /// The value back (a pool's map).
        #[worker]
        fn echo(v: Wrapped) -> Wrapped {
            v
        }

        /// Puts the value on `q`.
        #[worker]
        fn put(q: Queue<Wrapped>) {
            q.put_timeout(SelfDescribing(value()), BOUND).unwrap();
        }

        /// Sends back what it receives, and whether it was the value.
        #[worker]
        fn pipe_echo(conn: Connection<Wrapped>) -> bool {
            let v = conn.recv_timeout(BOUND).unwrap();
            let same = v.0 == value();
            conn.send(&v).unwrap();
            same
        }

        #[test]
        fn as_a_worker_argument_and_result() {
            let mut p = Process::new(check_and_echo, (SelfDescribing(value()),));
            p.start().unwrap();
            assert_eq!(join(&p), 0);
            let (same, back) = p.result().unwrap();
            assert!(same, "the child decoded another value");
            assert_eq!(back.into_inner(), value());
        }

        #[test]
        fn as_a_queue_message() {
            let q = Queue::new().unwrap();
            let mut p = Process::new(put, (q.clone(),));
            p.start().unwrap();
            assert_eq!(q.get_timeout(BOUND).unwrap().into_inner(), value());
            assert_eq!(join(&p), 0);
            p.result().unwrap();
        }

        #[test]
        fn as_a_pipe_message() {
            let (here, there) = Pipe::<Wrapped>::new().unwrap();
            let mut p = Process::new(pipe_echo, (there,));
            p.start().unwrap();
            here.send(&SelfDescribing(value())).unwrap();
            assert_eq!(here.recv_timeout(BOUND).unwrap().into_inner(), value());
            assert_eq!(join(&p), 0);
            assert!(p.result().unwrap(), "the child decoded another value");
        }

        #[test]
        fn through_a_pool_map() {
            let pool = Pool::builder().processes(2).build().unwrap();
            let inputs = vec![SelfDescribing(value()); 7];
            let out = pool
                .chunksize(3)
                .map_async(echo, inputs)
                .unwrap()
                .get_timeout(BOUND)
                .unwrap();
            assert_eq!(out.len(), 7);
            assert!(out.into_iter().all(|v| v.into_inner() == value()));
        }
    };
}

mod skip_serializing_if {
    crosses!(Skipping, skipping());
}

mod flatten {
    crosses!(Flattened, flattened());
}

mod untagged {
    crosses!(Untagged, untagged());
}

mod internally_tagged {
    crosses!(Tagged, tagged());
}

mod json_value {
    crosses!(
        serde_json::Value,
        serde_json::json!({"id": 1, "tags": ["a", "b"], "nested": {"ok": true, "n": null}})
    );
}

/// A wrapped value with a handle inside (and a skipped field before it).
#[derive(Serialize, Deserialize)]
struct Holder {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    out: Queue<u32>,
    shape: Tagged,
}

#[worker]
fn put_through_the_handle(holder: SelfDescribing<Holder>) {
    let side = match holder.shape {
        Tagged::Square { side } => side as u32,
        Tagged::Circle { r } => r as u32,
    };
    let note = holder.note.as_deref().map_or(0, str::len) as u32;
    holder.out.put_timeout(side * 100 + note, BOUND).unwrap();
}

#[test]
fn handles_inside_a_wrapped_value_still_travel() {
    let out = Queue::new().unwrap();
    let holder = Holder {
        note: None,
        out: out.clone(),
        shape: Tagged::Square { side: 3.0 },
    };
    let mut p = Process::new(put_through_the_handle, (SelfDescribing(holder),));
    p.start().unwrap();
    assert_eq!(out.get_timeout(BOUND).unwrap(), 300);
    assert_eq!(join(&p), 0);
    p.result().unwrap();
}

/// `inner` as postcard writes a byte string: a varint length, the bytes.
fn byte_string(inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len() + 10);
    let mut n = inner.len();
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            break;
        }
        out.push(low | 0x80);
    }
    out.extend_from_slice(inner);
    out
}

/// Receives until the parent closes; counts the messages that failed to
/// decode and those that decoded.
#[worker]
fn decode_all(conn: Connection<SelfDescribing<serde_json::Value>>) -> (u32, u32) {
    let (mut failed, mut decoded) = (0, 0);
    loop {
        match conn.recv_timeout(BOUND) {
            Ok(_) => decoded += 1,
            Err(RecvTimeoutError::Decode(_)) => failed += 1,
            Err(RecvTimeoutError::Closed) => return (failed, decoded),
            Err(e) => panic!("child: {e}"),
        }
    }
}

#[test]
fn hostile_bytes_inside_the_wrapper_fail_without_allocating_what_they_announce() {
    let (here, there) = Pipe::<SelfDescribing<serde_json::Value>>::new().unwrap();
    let mut p = Process::new(decode_all, (there,));
    // 512 MiB of address space: a 4 GiB allocation would abort the child.
    p.rlimit(Resource::AddressSpace, 512 << 20, 512 << 20);
    p.start().unwrap();
    // MessagePack headers announcing 4 GiB strings, binaries, arrays and
    // maps, with a few bytes behind them.
    let mut hostile: Vec<Vec<u8>> = vec![
        vec![0xdb, 0xff, 0xff, 0xff, 0xff, b'a'],
        vec![0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2],
        vec![0xdd, 0xff, 0xff, 0xff, 0xff, 1],
        vec![0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, b'k', 1],
        // An array of 4 Gi strings each announcing 4 GiB.
        [0xdd, 0xff, 0xff, 0xff, 0xff]
            .into_iter()
            .chain([0xdb, 0xff, 0xff, 0xff, 0xff].repeat(1000))
            .collect(),
        // Nesting far past the depth limit.
        [0x91u8; 200_000].into_iter().chain([0x01]).collect(),
        // A valid value with bytes left over.
        vec![0x01, 0xc0],
        // Nothing at all.
        vec![],
    ];
    let definitely_fail = hostile.len();
    // Pseudo-random garbage.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for len in 1..300usize {
        let garbage = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        hostile.push(garbage);
    }
    let mut frames: Vec<Vec<u8>> = hostile.iter().map(|inner| byte_string(inner)).collect();
    // A byte string announcing 32 MiB that holds 2 bytes.
    frames.push(vec![0xff, 0xff, 0xff, 0x0f, 1, 2]);
    for frame in &frames {
        here.send_bytes(frame).unwrap();
    }
    // And one good message after them all: the connection goes on.
    here.send(&SelfDescribing(serde_json::json!({"still": "fine"})))
        .unwrap();
    drop(here);
    assert_eq!(join(&p), 0, "the child did not survive: {:?}", p.result());
    let (failed, decoded) = p.result().unwrap();
    assert_eq!(failed + decoded, frames.len() as u32 + 1);
    assert!(failed as usize > definitely_fail, "{failed} failed");
    assert!(decoded >= 1);
}
