//! `Pipe`, `Connection`, `PipeReader`, `PipeWriter` across real processes:
//! round trips, boundaries, large messages, timeouts, closing, killed peers,
//! bad bytes, and handles at any depth of a worker's arguments.

use multiproc::{
    CodecError, Connection, Pipe, PipeReader, PipeWriter, Process, RecvError, RecvTimeoutError,
    SendError, TryRecvError, worker,
};
use multiproc_tests::{join, start};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u32,
    name: String,
    weights: Vec<f64>,
}

/// Answers each job with its id doubled and its name reversed, until the
/// parent closes its end.
#[worker]
fn serve_jobs(conn: Connection<Job>) -> u32 {
    let mut served = 0;
    loop {
        match conn.recv() {
            Ok(job) => {
                let answer = Job {
                    id: job.id * 2,
                    name: job.name.chars().rev().collect(),
                    weights: job.weights.iter().map(|w| w + 1.0).collect(),
                };
                conn.send(&answer).unwrap();
                served += 1;
            }
            Err(RecvError::Closed) => return served,
            Err(e) => panic!("child: {e}"),
        }
    }
}

#[test]
fn duplex_round_trips_with_a_child() {
    let (here, there) = Pipe::new().unwrap();
    let p = start(serve_jobs, (there,));
    for id in 0..100 {
        let job = Job {
            id,
            name: format!("job-{id}"),
            weights: vec![id as f64; id as usize % 5],
        };
        here.send(&job).unwrap();
        let answer = here.recv_timeout(BOUND).unwrap();
        assert_eq!(answer.id, id * 2);
        assert_eq!(
            answer.name,
            format!("job-{id}").chars().rev().collect::<String>()
        );
        assert_eq!(answer.weights, vec![id as f64 + 1.0; id as usize % 5]);
    }
    drop(here);
    assert_eq!(join(&p), 0);
    assert_eq!(p.result().unwrap(), 100);
}

#[worker]
fn sum_until_closed(rx: PipeReader<u64>, tx: PipeWriter<u64>) {
    let mut sum = 0;
    while let Ok(n) = rx.recv() {
        sum += n;
    }
    tx.send(&sum).unwrap();
}

#[test]
fn one_way_pipes_in_both_directions() {
    let (to_child_rx, to_child_tx) = Pipe::one_way().unwrap();
    let (from_child_rx, from_child_tx) = Pipe::one_way().unwrap();
    let p = start(sum_until_closed, (to_child_rx, from_child_tx));
    for n in 1..=1000 {
        to_child_tx.send(&n).unwrap();
    }
    to_child_tx.close();
    assert_eq!(from_child_rx.recv_timeout(BOUND).unwrap(), 500_500);
    assert_eq!(join(&p), 0);
    // The child exited and the parent kept no copy of its ends.
    assert!(matches!(
        from_child_rx.recv_timeout(BOUND),
        Err(RecvTimeoutError::Closed)
    ));
}

#[worker]
fn send_in_a_burst(tx: PipeWriter<()>) {
    for m in [&b"ab"[..], b"", b"cd", b"", b""] {
        tx.send_bytes(m).unwrap();
    }
    tx.send(&()).unwrap(); // `()` encodes to zero bytes: an empty message too
}

#[test]
fn boundaries_are_kept_and_empty_messages_count() {
    let (rx, tx) = Pipe::one_way().unwrap();
    let p = start(send_in_a_burst, (tx,));
    assert_eq!(join(&p), 0);
    // Everything is in the socket at once now; nothing merges.
    assert!(rx.poll());
    let got: Vec<Vec<u8>> = (0..5).map(|_| rx.recv_bytes().unwrap()).collect();
    assert_eq!(got, [&b"ab"[..], b"", b"cd", b"", b""]);
    rx.recv().unwrap();
    assert!(matches!(rx.recv(), Err(RecvError::Closed)));
}

#[worker]
fn expect_two_then_report(rx: PipeReader<String>) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(100)); // both sends are in the socket
    vec![rx.recv().unwrap(), rx.recv().unwrap()]
}

#[test]
fn two_sends_to_a_child_are_two_recvs() {
    let (rx, tx) = Pipe::one_way().unwrap();
    let p = start(expect_two_then_report, (rx,));
    tx.send(&"first".to_string()).unwrap();
    tx.send(&"second".to_string()).unwrap();
    assert_eq!(p.result().unwrap(), ["first", "second"]);
}

#[worker]
fn echo_big(conn: Connection<ByteBuf>) {
    // Typed one way, raw bytes the other.
    let m = conn.recv().unwrap();
    conn.send_bytes(&m).unwrap();
    let raw = conn.recv_bytes().unwrap();
    conn.send(&ByteBuf::from(raw)).unwrap();
}

/// `len` bytes that are not periodic at any power of two (built with
/// memcpy: the test crate is unoptimised).
fn pattern(len: usize) -> Vec<u8> {
    let base: Vec<u8> = (0..(1 << 20) + 7).map(|i| (i % 251) as u8).collect();
    let mut v = base.repeat(len / base.len() + 1);
    v.truncate(len);
    v
}

#[test]
fn sixty_four_mib_both_ways() {
    const SIZE: usize = 64 << 20;
    let (here, there) = Pipe::<ByteBuf>::new().unwrap();
    let p = start(echo_big, (there,));
    let data = pattern(SIZE);
    here.send(&ByteBuf::from(data.clone())).unwrap();
    let back = here.recv_bytes().unwrap();
    assert!(
        back == data,
        "64 MiB came back changed (typed there, raw back)"
    );
    here.send_bytes(&data).unwrap();
    let back = here.recv_timeout(BOUND).unwrap();
    assert!(
        back.into_vec() == data,
        "64 MiB came back changed (raw there, typed back)"
    );
    assert_eq!(join(&p), 0);
}

#[test]
fn recv_timeout_times_out_and_poll_answers_at_once() {
    let (a, b) = Pipe::<u32>::new().unwrap();
    let t = Instant::now();
    assert!(matches!(
        a.recv_timeout(Duration::from_millis(50)),
        Err(RecvTimeoutError::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(50));
    let t = Instant::now();
    assert!(!a.poll());
    assert!(matches!(a.try_recv(), Err(TryRecvError::Empty)));
    assert!(t.elapsed() < Duration::from_millis(20), "poll waited");
    assert!(!a.poll_timeout(Duration::from_millis(20)));
    b.send(&5).unwrap();
    assert!(a.poll_timeout(BOUND));
    assert!(a.poll());
    assert_eq!(a.try_recv().unwrap(), 5);
    assert!(!a.poll());
}

#[worker]
fn exit_at_once(_conn: Connection<u8>) {}

#[test]
fn closed_once_the_child_exits_when_the_parent_kept_no_copy() {
    let (a, b) = Pipe::new().unwrap();
    let p = start(exit_at_once, (b,)); // moved: released by `start`
    assert_eq!(join(&p), 0);
    assert!(matches!(
        a.recv_timeout(BOUND),
        Err(RecvTimeoutError::Closed)
    ));
    assert!(matches!(a.recv(), Err(RecvError::Closed)));
    assert!(matches!(a.send(&1), Err(SendError::Closed)));
}

#[test]
fn the_parents_copy_of_the_child_end_keeps_it_open() {
    let (a, b) = Pipe::new().unwrap();
    let p = start(exit_at_once, (b.clone(),));
    assert_eq!(join(&p), 0);
    // `b` is still open here, so the pipe is not closed: no message, no end.
    assert!(matches!(
        a.recv_timeout(SHORT),
        Err(RecvTimeoutError::Timeout)
    ));
    assert!(!a.poll());
    drop(b);
    assert!(matches!(
        a.recv_timeout(BOUND),
        Err(RecvTimeoutError::Closed)
    ));
}

#[test]
fn close_on_one_clone_closes_them_all() {
    let (a, b) = Pipe::new().unwrap();
    let b2 = b.clone();
    b.close();
    assert!(b2.is_closed());
    assert!(matches!(
        a.recv_timeout(BOUND),
        Err(RecvTimeoutError::Closed)
    ));
    assert!(matches!(b2.send(&1u8), Err(SendError::Closed)));
    assert!(matches!(b2.recv(), Err(RecvError::Closed)));
}

#[worker]
fn announce_then_send_forever(tx: PipeWriter<ByteBuf>) {
    // Built before the announcement, so the first write follows it at once.
    let big = vec![9u8; 64 << 20];
    tx.send_bytes(b"").unwrap();
    loop {
        tx.send_bytes(&big).unwrap();
    }
}

#[test]
fn a_sender_killed_mid_message_is_a_truncated_frame_then_closed() {
    let (rx, tx) = Pipe::one_way().unwrap();
    let p = start(announce_then_send_forever, (tx,));
    assert_eq!(rx.recv_bytes().unwrap(), b"");
    // The child is now blocked writing 64 MiB into a full socket.
    std::thread::sleep(Duration::from_millis(100));
    p.kill().unwrap();
    assert_eq!(join(&p), -9);
    let t = Instant::now();
    match rx.recv() {
        Err(RecvError::Decode(CodecError::Truncated { expected, got })) => {
            assert!(expected > got, "{expected} > {got}");
        }
        other => panic!("expected a truncated frame, got {other:?}"),
    }
    assert!(matches!(rx.recv(), Err(RecvError::Closed)));
    assert!(t.elapsed() < BOUND);
}

#[worker]
fn send_garbage_then_good(conn: Connection<String>) {
    // Not a String: a length of 5 and one byte.
    conn.send_bytes(&[5, b'a']).unwrap();
    // Not UTF-8.
    conn.send_bytes(&[2, 0xff, 0xfe]).unwrap();
    // A varint that never ends.
    conn.send_bytes(&[0xff; 12]).unwrap();
    conn.send(&"good".to_string()).unwrap();
}

#[test]
fn bytes_that_do_not_decode_fail_that_recv_only() {
    let (a, b) = Pipe::new().unwrap();
    let p = start(send_garbage_then_good, (b,));
    for _ in 0..3 {
        match a.recv_timeout(BOUND) {
            Err(RecvTimeoutError::Decode(CodecError::Corrupt { type_name, .. })) => {
                assert!(type_name.contains("String"), "{type_name}");
            }
            other => panic!("expected a decode error, got {other:?}"),
        }
    }
    assert_eq!(a.recv_timeout(BOUND).unwrap(), "good");
    assert_eq!(join(&p), 0);
}

#[worker]
fn recv_what_the_raw_peer_sends(conn: Connection<u32>) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match conn.recv_timeout(Duration::from_secs(60)) {
            Ok(n) => seen.push(format!("ok {n}")),
            Err(RecvTimeoutError::Closed) => return seen,
            Err(RecvTimeoutError::Decode(e)) => seen.push(format!("bad {e}")),
            Err(e) => panic!("{e}"),
        }
    }
}

/// A frame as Python's `send_bytes` writes it: a 4-byte big-endian length.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

#[test]
fn a_truncated_frame_from_a_raw_peer_is_an_error_then_closed() {
    // One end is a plain socket the test writes to by hand.
    let (mine, theirs) = UnixStream::pair().unwrap();
    let p = start(recv_what_the_raw_peer_sends, (Connection::from(theirs),));
    let mut raw = mine;
    raw.write_all(&frame(&[7])).unwrap();
    raw.write_all(&frame(&[0xff; 3])).unwrap(); // undecodable u32
    raw.write_all(&frame(&[9])).unwrap();
    raw.write_all(&100i32.to_be_bytes()).unwrap();
    raw.write_all(&[1; 10]).unwrap(); // 10 of 100 bytes, then the end
    drop(raw);
    let seen = p.result().unwrap();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[0], "ok 7");
    assert!(seen[1].starts_with("bad"), "{seen:?}");
    assert_eq!(seen[2], "ok 9");
    assert!(seen[3].contains("truncated"), "{seen:?}");
}

#[test]
fn a_corrupt_length_is_a_typed_error_and_never_an_allocation() {
    let (mut raw, end) = UnixStream::pair().unwrap();
    let conn: Connection<u32> = end.into();
    // Python's long form (-1, then a u64) announcing 2^64 - 1 bytes.
    raw.write_all(&(-1i32).to_be_bytes()).unwrap();
    raw.write_all(&u64::MAX.to_be_bytes()).unwrap();
    raw.write_all(&[0; 64]).unwrap();
    for _ in 0..2 {
        // The stream is out of step: every receive says so, at once.
        match conn.recv_timeout(BOUND) {
            Err(RecvTimeoutError::Decode(CodecError::Oversized { len, .. })) => {
                assert_eq!(len, u64::MAX)
            }
            other => panic!("expected an oversized frame, got {other:?}"),
        }
    }
    assert!(conn.poll(), "a receive would fail at once");

    // A negative length other than Python's -1 is no frame either.
    let (mut raw, end) = UnixStream::pair().unwrap();
    let conn: Connection<u32> = end.into();
    raw.write_all(&(-5i32).to_be_bytes()).unwrap();
    raw.write_all(&[0; 64]).unwrap();
    for _ in 0..2 {
        match conn.recv_timeout(BOUND) {
            Err(RecvTimeoutError::Decode(CodecError::Corrupt { reason, .. })) => {
                assert!(reason.contains("negative"), "{reason}")
            }
            other => panic!("expected a negative length, got {other:?}"),
        }
    }
    assert!(conn.poll(), "a receive would fail at once");
}

#[test]
fn recv_bytes_max_refuses_a_long_message_and_goes_on() {
    let (rx, tx) = Pipe::<()>::one_way().unwrap();
    tx.send_bytes(&[1; 1000]).unwrap();
    tx.send_bytes(&[2; 10]).unwrap();
    tx.send_bytes(&[3; 11]).unwrap();
    match rx.recv_bytes_max(10) {
        Err(RecvError::Decode(CodecError::Oversized { len, limit })) => {
            assert_eq!((len, limit), (1000, 10));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.recv_bytes_max(10).unwrap(), [2; 10]);
    assert!(rx.recv_bytes_max(10).is_err());
    tx.send_bytes(b"last").unwrap();
    assert_eq!(rx.recv_bytes_max(10).unwrap(), b"last");
}

/// A queue's messages live in shared memory, which carries no descriptors:
/// a connection put in one is a clear error, and nothing is put.
#[test]
fn a_connection_put_in_a_queue_is_a_clear_error() {
    let q = multiproc::Queue::<Connection<u8>>::new().unwrap();
    let (c, _d) = Pipe::<u8>::new().unwrap();
    match q.put(c) {
        Err(multiproc::PutError::Encode(_, e)) => {
            let message = e.to_string();
            assert!(message.contains("worker's arguments"), "{message}");
        }
        other => panic!("expected an encode error, got {other:?}"),
    }
    assert_eq!(q.qsize(), 0);
}

#[derive(Serialize, Deserialize)]
struct Wiring {
    label: String,
    control: Connection<String>,
}

#[worker]
fn deep_handles(wiring: Wiring, outs: Vec<PipeWriter<u32>>, maybe: Option<PipeReader<u32>>) {
    let n = maybe.unwrap().recv().unwrap();
    for (i, out) in outs.iter().enumerate() {
        out.send(&(n + i as u32)).unwrap();
    }
    let question = wiring.control.recv().unwrap();
    wiring
        .control
        .send(&format!("{}: {question}", wiring.label))
        .unwrap();
}

#[test]
fn handles_travel_at_any_depth() {
    let (control, control_child) = Pipe::new().unwrap();
    let (readers, writers): (Vec<_>, Vec<_>) =
        (0..4).map(|_| Pipe::<u32>::one_way().unwrap()).unzip();
    let (in_rx, in_tx) = Pipe::one_way().unwrap();
    let wiring = Wiring {
        label: "deep".into(),
        control: control_child,
    };
    let p = start(deep_handles, (wiring, writers, Some(in_rx)));
    in_tx.send(&100).unwrap();
    for (i, r) in readers.iter().enumerate() {
        assert_eq!(r.recv_timeout(BOUND).unwrap(), 100 + i as u32);
    }
    control.send(&"are you there?".to_string()).unwrap();
    assert_eq!(control.recv_timeout(BOUND).unwrap(), "deep: are you there?");
    assert_eq!(join(&p), 0);
    // Every end the child held is closed now.
    for r in &readers {
        assert!(matches!(
            r.recv_timeout(BOUND),
            Err(RecvTimeoutError::Closed)
        ));
    }
}

#[worker]
fn list_fds(_a: Connection<u8>, _r: PipeReader<u8>, _w: PipeWriter<u8>) -> Vec<String> {
    multiproc_tests::open_fds()
        .into_iter()
        .filter_map(|fd| {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
            Some(format!("{fd} {}", target.display()))
        })
        .collect()
}

#[test]
fn a_child_holds_exactly_its_handles_descriptors() {
    let (_a, b) = Pipe::new().unwrap();
    let (r, _w) = Pipe::one_way().unwrap();
    let (_r2, w) = Pipe::one_way().unwrap();
    // Unrelated pipes the child must not see.
    let _others: Vec<_> = (0..5).map(|_| Pipe::<u8>::new().unwrap()).collect();
    let p = start(list_fds, (b, r, w));
    let fds = p.result().unwrap();
    // stdio, the spawn socket and the three ends.
    assert_eq!(fds.len(), 7, "{fds:?}");
    let sockets = fds.iter().filter(|f| f.contains("socket:")).count();
    assert!(sockets >= 4, "{fds:?}");
}

#[test]
fn sends_from_many_threads_never_interleave() {
    const THREADS: u8 = 4;
    const EACH: usize = 200;
    let (a, b) = Pipe::<()>::new().unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let a = a.clone();
            s.spawn(move || {
                for i in 0..EACH {
                    // From a few bytes to beyond a socket buffer: the thread's
                    // number, then the length, then filler.
                    let len = 9 + (i * 7919) % (300 * 1024);
                    let mut m = vec![t; len];
                    m[1..9].copy_from_slice(&(len as u64).to_le_bytes());
                    a.send_bytes(&m).unwrap();
                }
            });
        }
        let mut counts = [0; THREADS as usize];
        for _ in 0..THREADS as usize * EACH {
            let m = b.recv_bytes().unwrap();
            let len = u64::from_le_bytes(m[1..9].try_into().unwrap()) as usize;
            assert_eq!(m.len(), len, "a message was cut or merged");
            assert!(m[9..].iter().all(|&x| x == m[0]), "messages interleaved");
            counts[m[0] as usize] += 1;
        }
        assert_eq!(counts, [EACH; THREADS as usize]);
    });
}

#[test]
fn a_closed_end_cannot_be_given_to_a_child() {
    let (_a, b) = Pipe::<u8>::new().unwrap();
    b.close();
    let mut p = Process::new(exit_at_once, (b,));
    match p.start() {
        Err(multiproc::Error::Codec(e)) => assert!(e.to_string().contains("closed"), "{e}"),
        other => panic!("expected an encode error, got {other:?}"),
    }
}

#[test]
fn timeouts_hold_while_another_thread_is_blocked_in_recv() {
    let (a, b) = Pipe::<u32>::new().unwrap();
    std::thread::scope(|s| {
        let blocked = s.spawn(|| a.recv().unwrap());
        std::thread::sleep(Duration::from_millis(50)); // let it block
        let t = Instant::now();
        assert!(matches!(
            a.recv_timeout(Duration::from_millis(50)),
            Err(RecvTimeoutError::Timeout)
        ));
        assert!(!a.poll());
        assert!(matches!(a.try_recv(), Err(TryRecvError::Empty)));
        assert!(t.elapsed() < Duration::from_secs(5));
        b.send(&9).unwrap();
        assert_eq!(blocked.join().unwrap(), 9);
    });
}

/// Polls its copy of a shared reader end, and says what it saw; never
/// receives.
#[worker]
fn poll_shared(rx: PipeReader<String>) -> bool {
    rx.poll_timeout(BOUND)
}

/// Regression (issue 14): `poll` on an end several processes hold took the
/// waiting messages into the poller's private buffer, so a child that only
/// polled made them vanish, and the parent's `recv` then said `Closed`.
/// Python's `poll` never consumes; neither does ours.
#[test]
fn poll_on_a_shared_end_takes_nothing_from_the_other_holders() {
    let (rx, tx) = Pipe::<String>::one_way().unwrap();
    tx.send(&"first".to_string()).unwrap();
    tx.send(&"second".to_string()).unwrap();
    drop(tx);
    let p = start(poll_shared, (rx.clone(),));
    assert_eq!(join(&p), 0);
    assert!(p.result().unwrap(), "the child saw a message waiting");
    assert!(rx.poll_timeout(Duration::ZERO));
    assert!(
        rx.poll_timeout(Duration::ZERO),
        "polling twice takes nothing"
    );
    assert_eq!(rx.recv_timeout(BOUND).unwrap(), "first");
    assert_eq!(rx.recv_timeout(BOUND).unwrap(), "second");
    assert!(matches!(
        rx.recv_timeout(BOUND),
        Err(RecvTimeoutError::Closed)
    ));
}

/// Half of a frame in the socket: poll says no (the receive would wait) and
/// takes nothing; once the rest comes, the message is whole for `recv`.
#[test]
fn poll_with_half_a_frame_waiting_says_no_and_keeps_it() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let conn = Connection::<u32>::from(ours);
    let mut raw = theirs;
    // postcard writes 7 as the one byte 7.
    let whole = frame(&[7]);
    raw.write_all(&whole[..3]).unwrap();
    assert!(!conn.poll_timeout(SHORT));
    raw.write_all(&whole[3..]).unwrap();
    assert!(conn.poll_timeout(BOUND));
    assert_eq!(conn.recv_timeout(BOUND).unwrap(), 7);
}
