//! Queues survive processes killed in the middle of `put` and `get`: nothing
//! that was put is lost unless the killed process had taken it, nothing is
//! delivered twice, and the queue goes on working.

use multiproc::{Process, Queue, TryGetError, worker};
use serde_bytes::ByteBuf;
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

const BOUND: Duration = Duration::from_secs(60);
const SIZE: usize = 2 << 20;

/// A message that proves its own integrity: its sequence number, then bytes
/// derived from it.
fn message(seq: u64) -> ByteBuf {
    let mut m = vec![(seq % 251) as u8; SIZE];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    ByteBuf::from(m)
}

fn check(m: &[u8]) -> u64 {
    assert_eq!(m.len(), SIZE, "a message was cut");
    let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
    assert!(
        m[8..].iter().all(|&b| b == (seq % 251) as u8),
        "message {seq} is corrupt"
    );
    seq
}

/// A pseudo-random delay, different each round.
fn jitter(round: u64, max_ms: u64) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let x = (nanos ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(6364136223846793005);
    Duration::from_millis(1 + (x >> 33) % max_ms)
}

#[worker]
fn put_forever(q: Queue<ByteBuf>) {
    for seq in 0.. {
        q.put(message(seq)).unwrap();
    }
}

#[test]
fn a_producer_killed_mid_put_loses_nothing_it_put() {
    for round in 0..8 {
        let q = Queue::with_maxsize(4).unwrap();
        let mut p = Process::new(put_forever, (q.clone(),));
        p.start().unwrap();
        let deadline = Instant::now() + jitter(round, 60);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(m) = q.get_timeout(Duration::from_millis(5)) {
                seen.push(check(&m));
            }
        }
        p.kill().unwrap();
        assert_eq!(p.join_timeout(BOUND).unwrap(), Some(-9));
        // Whatever it managed to put is all there, in order, intact.
        loop {
            match q.try_get() {
                Ok(m) => seen.push(check(&m)),
                Err(TryGetError::Empty) => break,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        let expected: Vec<u64> = (0..seen.len() as u64).collect();
        assert_eq!(seen, expected, "round {round}: gaps or duplicates");
        // And the queue still works, even if the producer died holding its lock.
        q.put_timeout(message(7), BOUND).unwrap();
        assert_eq!(check(&q.get_timeout(BOUND).unwrap()), 7);
    }
}

#[worker]
fn take_and_ack(q: Queue<ByteBuf>, acks: Queue<u64>) {
    loop {
        match q.get_timeout(Duration::from_millis(300)) {
            Ok(m) => acks.put(check(&m)).unwrap(),
            Err(_) => return,
        }
    }
}

#[test]
fn a_consumer_killed_mid_get_takes_at_most_its_own_message() {
    const MESSAGES: u64 = 60;
    for round in 0..8 {
        let q = Queue::new().unwrap();
        let acks = Queue::new().unwrap();
        for seq in 0..MESSAGES {
            q.put(message(seq)).unwrap();
        }
        let mut victim = Process::new(take_and_ack, (q.clone(), acks.clone()));
        let mut survivor = Process::new(take_and_ack, (q.clone(), acks.clone()));
        victim.start().unwrap();
        survivor.start().unwrap();
        std::thread::sleep(jitter(round, 30));
        victim.kill().unwrap();
        assert_eq!(victim.join_timeout(BOUND).unwrap(), Some(-9));
        // The survivor goes on and drains the rest, then gives up on an empty queue.
        assert_eq!(survivor.join_timeout(BOUND).unwrap(), Some(0));
        assert!(q.empty(), "round {round}: messages left behind");
        let mut delivered = Vec::new();
        while let Ok(seq) = acks.try_get() {
            delivered.push(seq);
        }
        let unique: BTreeSet<u64> = delivered.iter().copied().collect();
        assert_eq!(
            unique.len(),
            delivered.len(),
            "round {round}: a message came twice"
        );
        // The victim may have taken one message and died before acknowledging it.
        let missing = MESSAGES as usize - unique.len();
        assert!(missing <= 1, "round {round}: {missing} messages lost");
    }
}
