//! `wait` over connections, pipe readers and process sentinels together:
//! all ready ones, level-triggered, empty after the timeout.

use multiproc::{Connection, Pipe, PipeWriter, Process, Waitable, wait, worker};
use multiproc_tests::{start, wait_for_word};
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);

#[test]
fn all_ready_objects_level_triggered_then_empty_after_the_timeout() {
    let (a, a_peer) = Pipe::<String>::new().unwrap();
    let (b, b_peer) = Pipe::<String>::new().unwrap();
    let (c, c_peer) = Pipe::<String>::one_way().unwrap();
    let (stop, child_end) = Pipe::new().unwrap();
    let p = start(wait_for_word, (child_end,));
    let objects: [&dyn Waitable; 4] = [&a, &b, &c, &p];

    // Nothing ready: a zero timeout answers at once, a short one waits it out.
    let t = Instant::now();
    assert!(wait(&objects, Some(Duration::ZERO)).unwrap().is_empty());
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    assert!(
        wait(&objects, Some(Duration::from_millis(50)))
            .unwrap()
            .is_empty()
    );
    assert!(t.elapsed() >= Duration::from_millis(50));

    a_peer.send(&"to a".to_string()).unwrap();
    c_peer.send(&"to c".to_string()).unwrap();
    let ready = wait(&objects, Some(BOUND)).unwrap();
    assert_eq!(ready, [0, 2]);
    // Level-triggered: nothing was read, so the same again.
    assert_eq!(wait(&objects, Some(BOUND)).unwrap(), [0, 2]);
    assert_eq!(wait(&objects, None).unwrap(), [0, 2]);
    assert_eq!(a.recv().unwrap(), "to a");
    assert_eq!(wait(&objects, Some(BOUND)).unwrap(), [2]);
    assert_eq!(c.recv().unwrap(), "to c");

    // The child exits: its sentinel is ready, with a message on `b`.
    stop.send(&"stop".to_string()).unwrap();
    b_peer.send(&"to b".to_string()).unwrap();
    let deadline = Instant::now() + BOUND;
    let mut ready = Vec::new();
    while ready != [1, 3] && Instant::now() < deadline {
        ready = wait(&objects, Some(BOUND)).unwrap();
    }
    assert_eq!(ready, [1, 3]);
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(wait(&objects, Some(Duration::ZERO)).unwrap(), [1, 3]);
}

#[worker]
fn report_after(tx: PipeWriter<u32>, id: u32, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    tx.send(&id).unwrap();
}

#[test]
fn collect_from_several_children_as_they_answer() {
    // Python's documented use of `wait`: serve whichever reader is ready.
    let mut readers = Vec::new();
    let mut children = Vec::new();
    for (id, ms) in [(0, 400), (1, 0), (2, 200)] {
        let (rx, tx) = Pipe::one_way().unwrap();
        children.push(start(report_after, (tx, id, ms)));
        readers.push(rx);
    }
    let mut order = Vec::new();
    let mut open: Vec<usize> = (0..readers.len()).collect();
    while !open.is_empty() {
        let live: Vec<_> = open.iter().map(|&i| &readers[i]).collect();
        let ready = wait(&live, Some(BOUND)).unwrap();
        assert!(!ready.is_empty(), "timed out");
        let mut done = Vec::new();
        for k in ready {
            let i = open[k];
            match readers[i].recv() {
                Ok(id) => order.push(id),
                Err(multiproc::RecvError::Closed) => done.push(i),
                Err(e) => panic!("{e}"),
            }
        }
        open.retain(|i| !done.contains(i));
    }
    assert_eq!(order, [1, 2, 0]);
    for p in &children {
        assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    }
}

#[worker]
fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn process_sentinels_become_ready_when_children_exit() {
    let slow = start(nap, (10_000,));
    let fast = start(nap, (20,));
    let handle = fast.handle().unwrap();
    let t = Instant::now();
    let ready = wait(&[&slow as &dyn Waitable, &fast, &handle], Some(BOUND)).unwrap();
    assert_eq!(ready, [1, 2]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        wait(&[&slow], Some(Duration::from_millis(20)))
            .unwrap()
            .is_empty()
    );
    slow.kill().unwrap();
    assert_eq!(wait(&[&slow], Some(BOUND)).unwrap(), [0]);
    assert_eq!(slow.exitcode(), Some(-9));
    // Reaped children stay ready.
    assert_eq!(wait(&[&slow, &fast], Some(Duration::ZERO)).unwrap(), [0, 1]);
}

#[test]
fn an_unstarted_process_is_never_ready() {
    let p = Process::new(nap, (0,));
    assert!(
        wait(&[&p], Some(Duration::from_millis(20)))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_connection_whose_peer_is_gone_is_ready() {
    let (a, b) = Pipe::<u8>::new().unwrap();
    let p = start(wait_for_word_u8, (b,));
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    // `recv` would return `Closed` at once: that is ready.
    assert_eq!(wait(&[&a], Some(BOUND)).unwrap(), [0]);
    assert!(matches!(a.recv(), Err(multiproc::RecvError::Closed)));
}

#[worker]
fn wait_for_word_u8(_conn: Connection<u8>) {}

#[test]
fn a_partial_message_is_not_ready() {
    use std::io::Write;
    let (mut raw, end) = std::os::unix::net::UnixStream::pair().unwrap();
    let conn: Connection<u8> = end.into();
    raw.write_all(&1i32.to_be_bytes()).unwrap(); // a header, no body yet
    assert!(
        wait(&[&conn], Some(Duration::from_millis(30)))
            .unwrap()
            .is_empty()
    );
    raw.write_all(&[42]).unwrap();
    assert_eq!(wait(&[&conn], Some(BOUND)).unwrap(), [0]);
    assert_eq!(conn.recv().unwrap(), 42);
}
