//! `Queue`, `SimpleQueue`, `JoinableQueue` across processes.

use multiproc::{
    CodecError, Error, GetError, GetTimeoutError, JoinableQueue, Process, PutError,
    PutTimeoutError, Queue, SimpleQueue, TryGetError, TryPutError, worker,
};
use multiproc_tests::join;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);

#[worker]
fn send_greeting(q: Queue<String>) {
    q.put("Hello from worker!".to_string()).unwrap();
}

#[test]
fn hello_from_worker() {
    let q = Queue::new().unwrap();
    let mut p = Process::new(send_greeting, (q.clone(),));
    p.start().unwrap();
    assert_eq!(q.get_timeout(BOUND).unwrap(), "Hello from worker!");
    assert_eq!(join(&p), 0);
}

#[worker]
fn produce(q: Queue<(u32, u64)>, id: u32, n: u64) {
    for seq in 0..n {
        q.put((id, seq)).unwrap();
    }
}

/// Returns (count, sum of seqs, per-producer order kept).
#[worker]
fn consume(q: Queue<(u32, u64)>, producers: u32) -> (u64, u64, bool) {
    let mut last = vec![None::<u64>; producers as usize];
    let (mut count, mut sum, mut ordered) = (0, 0, true);
    loop {
        let (id, seq) = q.get_timeout(Duration::from_secs(60)).unwrap();
        if id == u32::MAX {
            return (count, sum, ordered);
        }
        if last[id as usize].is_some_and(|l| l >= seq) {
            ordered = false;
        }
        last[id as usize] = Some(seq);
        count += 1;
        sum += seq;
    }
}

#[test]
fn eight_producers_four_consumers_lose_and_duplicate_nothing() {
    const PRODUCERS: u32 = 8;
    const CONSUMERS: u32 = 4;
    const EACH: u64 = 100_000;
    let q = Queue::new().unwrap();
    let mut consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let mut p = Process::new(consume, (q.clone(), PRODUCERS));
            p.start().unwrap();
            p
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let mut p = Process::new(produce, (q.clone(), id, EACH));
            p.start().unwrap();
            p
        })
        .collect();
    for p in &producers {
        assert_eq!(join(p), 0);
    }
    for _ in 0..CONSUMERS {
        q.put((u32::MAX, 0)).unwrap();
    }
    let (mut count, mut sum) = (0, 0);
    for c in &mut consumers {
        let (n, s, ordered) = c.result().unwrap();
        assert!(ordered, "a consumer saw a producer's messages out of order");
        count += n;
        sum += s;
    }
    assert_eq!(count, PRODUCERS as u64 * EACH);
    assert_eq!(sum, PRODUCERS as u64 * (EACH * (EACH - 1) / 2));
    assert!(q.empty());
}

#[worker]
fn put_many_and_exit(q: Queue<ByteBuf>, messages: u32, size: usize) {
    for i in 0..messages {
        q.put(ByteBuf::from(vec![i as u8; size])).unwrap();
    }
}

#[test]
fn a_producer_can_exit_and_be_joined_before_the_queue_is_drained() {
    // 100 MiB: far beyond any pipe or socket buffer. Python deadlocks here.
    let q = Queue::new().unwrap();
    let mut p = Process::new(put_many_and_exit, (q.clone(), 100, 1 << 20));
    p.start().unwrap();
    assert_eq!(join(&p), 0, "the producer could not exit before the drain");
    assert_eq!(q.qsize(), 100);
    for i in 0..100u32 {
        let m = q.try_get().unwrap();
        assert_eq!(m.len(), 1 << 20);
        assert!(m.iter().all(|&b| b == i as u8));
    }
    assert!(q.empty());
}

#[test]
fn empty_and_one_gib_messages() {
    let q = Queue::<()>::new().unwrap();
    q.put(()).unwrap();
    q.put(()).unwrap();
    assert_eq!(q.qsize(), 2);
    q.get().unwrap();
    q.get().unwrap();

    let big = Queue::<ByteBuf>::new().unwrap();
    let mut data = vec![0u8; 1 << 30];
    data[0] = 1;
    data[(1 << 30) - 1] = 2;
    big.put(ByteBuf::from(data)).unwrap();
    big.put(ByteBuf::from(vec![3u8])).unwrap();
    let got = big.get().unwrap();
    assert_eq!(got.len(), 1 << 30);
    assert_eq!((got[0], got[(1 << 30) - 1]), (1, 2));
    drop(got);
    assert_eq!(big.get().unwrap().into_vec(), vec![3]);
    assert!(big.empty());
}

#[worker]
fn echo_all(input: Queue<String>, output: Queue<String>, n: u32) {
    for _ in 0..n {
        output.put(input.get().unwrap()).unwrap();
    }
}

#[test]
fn large_and_wrapping_messages_keep_order_through_a_child() {
    let input = Queue::new().unwrap();
    let output = Queue::new().unwrap();
    let mut p = Process::new(echo_all, (input.clone(), output.clone(), 300));
    p.start().unwrap();
    // Past 64 KiB a message is encoded straight into the ring.
    let sizes: Vec<usize> = (0..300).map(|i| (i * 7919) % 200_000).collect();
    for (i, &n) in sizes.iter().enumerate() {
        input.put(format!("{i}:{}", "x".repeat(n))).unwrap();
    }
    for (i, &n) in sizes.iter().enumerate() {
        let m = output.get_timeout(BOUND).unwrap();
        assert_eq!(m, format!("{i}:{}", "x".repeat(n)));
    }
    assert_eq!(join(&p), 0);
}

#[test]
fn bounded_queues_block_and_report_full() {
    let q = Queue::with_maxsize(2).unwrap();
    assert_eq!(q.maxsize(), 2);
    q.put(1).unwrap();
    q.try_put(2).unwrap();
    assert!(q.full());
    assert!(matches!(q.try_put(3), Err(TryPutError::Full(3))));
    let t = Instant::now();
    let err = q.put_timeout(4, Duration::from_millis(100)).unwrap_err();
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert_eq!(err.into_inner(), 4);
    // A blocked put proceeds once a consumer makes room.
    let q2 = q.clone();
    let t = std::thread::spawn(move || q2.put(5));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(q.get().unwrap(), 1);
    t.join().unwrap().unwrap();
    assert_eq!(q.get().unwrap(), 2);
    assert_eq!(q.get().unwrap(), 5);
    assert!(!q.full());
}

#[test]
fn empty_queues_answer_at_once_or_after_the_timeout() {
    let q = Queue::<u8>::new().unwrap();
    let t = Instant::now();
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    assert!(matches!(
        q.get_timeout(Duration::ZERO),
        Err(GetTimeoutError::Timeout)
    ));
    assert!(t.elapsed() < Duration::from_millis(50));
    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(100)),
        Err(GetTimeoutError::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(100));
    // An unbounded queue is never full.
    assert!(!q.full());
    q.try_put(1).unwrap();
    assert_eq!(q.get_timeout(Duration::ZERO).unwrap(), 1);
}

#[test]
fn a_closed_handle_refuses_puts_and_gets() {
    let q = Queue::new().unwrap();
    let other = Queue::clone(&q);
    q.put(1).unwrap();
    q.close();
    assert!(matches!(q.put(2), Err(PutError::Closed(2))));
    assert!(matches!(q.get(), Err(GetError::Closed)));
    assert!(matches!(other.try_get(), Err(TryGetError::Closed)));
    let e: Error = q.put(3).unwrap_err().into();
    assert!(matches!(e, Error::Closed));
}

#[derive(Serialize, Deserialize, Debug)]
struct Holder {
    name: String,
    queue: Queue<u32>,
}

#[test]
fn a_handle_cannot_be_serialized_outside_a_spawn() {
    let q = Queue::<Holder>::new().unwrap();
    let inner = Queue::<u32>::new().unwrap();
    let err = q
        .put(Holder {
            name: "x".into(),
            queue: inner,
        })
        .unwrap_err();
    assert!(err.to_string().contains("can only be sent as"), "{err}");
    assert!(matches!(err, PutError::Encode(..)));
    assert_eq!(err.into_inner().name, "x");
}

#[worker]
fn deep_handles(holder: Holder, many: Vec<Queue<u32>>, maybe: Option<Queue<u32>>) -> u32 {
    holder.queue.put(1).unwrap();
    for (i, q) in many.iter().enumerate() {
        q.put(10 + i as u32).unwrap();
    }
    maybe.unwrap().put(99).unwrap();
    many.len() as u32
}

#[test]
fn handles_travel_at_any_depth() {
    let a = Queue::new().unwrap();
    let many: Vec<Queue<u32>> = (0..5).map(|_| Queue::new().unwrap()).collect();
    let maybe = Queue::new().unwrap();
    let holder = Holder {
        name: "h".into(),
        queue: a.clone(),
    };
    let mut p = Process::new(deep_handles, (holder, many.clone(), Some(maybe.clone())));
    p.start().unwrap();
    assert_eq!(p.result().unwrap(), 5);
    assert_eq!(a.get().unwrap(), 1);
    for (i, q) in many.iter().enumerate() {
        assert_eq!(q.get().unwrap(), 10 + i as u32);
    }
    assert_eq!(maybe.get().unwrap(), 99);
}

#[worker]
fn fds_with_a_queue(_q: Queue<u8>) -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

#[test]
fn a_child_holds_its_handles_descriptors_and_no_others() {
    let q = Queue::new().unwrap();
    let mut p = Process::new(fds_with_a_queue, (q,));
    p.start().unwrap();
    // stdio, the spawn socket, the queue's memfd and eventfd.
    assert_eq!(p.result().unwrap(), 6);
}

/// Decodes only even numbers: a stand-in for bytes that do not decode as `T`.
#[derive(Debug, PartialEq, Serialize)]
struct Even(u32);

impl<'de> Deserialize<'de> for Even {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        if n % 2 == 0 {
            Ok(Even(n))
        } else {
            Err(serde::de::Error::custom(format!("{n} is odd")))
        }
    }
}

/// How a [`Fickle`] encodes on its third pass (a large message is tried in
/// a capped buffer, measured, then written into the queue).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Third {
    Same,
    Longer,
    Shorter,
    Fails,
    Panics,
}

/// 100,000 bytes whose `Serialize` can misbehave on its third call.
#[derive(Debug)]
struct Fickle {
    third: Third,
    calls: std::sync::atomic::AtomicU32,
}

impl Fickle {
    fn new(third: Third) -> Self {
        Fickle {
            third,
            calls: 0.into(),
        }
    }
}

impl Serialize for Fickle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let call = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let len = match (call, self.third) {
            (3, Third::Longer) => 100_001,
            (3, Third::Shorter) => 99_999,
            (3, Third::Fails) => return Err(serde::ser::Error::custom("changed its mind")),
            (3, Third::Panics) => panic!("changed its mind"),
            _ => 100_000,
        };
        s.serialize_bytes(&vec![7u8; len])
    }
}

impl<'de> Deserialize<'de> for Fickle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = ByteBuf::deserialize(d)?;
        assert_eq!(bytes.len(), 100_000);
        assert!(bytes.iter().all(|&b| b == 7));
        Ok(Fickle::new(Third::Same))
    }
}

#[test]
fn a_large_message_whose_encoding_changes_midway_puts_nothing() {
    let q = Queue::<Fickle>::new().unwrap();
    for third in [Third::Longer, Third::Shorter, Third::Fails, Third::Panics] {
        let put = std::panic::catch_unwind(|| q.put(Fickle::new(third)));
        match (third, put) {
            (Third::Panics, Err(_)) => {}
            (_, Ok(Err(PutError::Encode(_, e)))) => {
                assert!(e.to_string().contains("Fickle"), "{third:?}: {e}")
            }
            (_, other) => panic!("{third:?}: expected Unencodable, got {other:?}"),
        }
        assert_eq!(q.qsize(), 0, "{third:?}");
        // The queue goes on: the put lock is free and the ring intact.
        q.put(Fickle::new(Third::Same)).unwrap();
        q.put_ref(&Fickle::new(Third::Same)).unwrap();
        q.get_timeout(BOUND).unwrap();
        q.get_timeout(BOUND).unwrap();
        assert!(q.empty());
    }
}

#[worker]
fn take_two_then_wait(q: Queue<ByteBuf>, resume: multiproc::Event, total: u32) -> u32 {
    let mut taken = 0;
    for _ in 0..2 {
        q.get_timeout(BOUND).unwrap();
        taken += 1;
    }
    assert!(resume.wait_timeout(BOUND));
    while taken < total {
        q.get_timeout(BOUND).unwrap();
        taken += 1;
    }
    taken
}

#[test]
fn an_unbounded_put_never_waits_for_a_consumer_that_stalls() {
    // Past 4 MiB a producer waits a little for an active consumer to make
    // room before growing the ring; when the consumer stalls it must give
    // up and grow, so every put returns while nobody consumes.
    let q = Queue::new().unwrap();
    let resume = multiproc::Event::new().unwrap();
    let mut p = Process::new(take_two_then_wait, (q.clone(), resume.clone(), 40));
    p.start().unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    let producer = q.clone();
    std::thread::spawn(move || {
        let message = ByteBuf::from(vec![3u8; 1 << 20]);
        for _ in 0..40 {
            producer.put_ref(&message).unwrap();
        }
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(BOUND)
        .expect("puts waited for a stalled consumer");
    resume.set();
    assert_eq!(join(&p), 0);
    assert_eq!(p.result().unwrap(), 40);
    assert!(q.empty());
}

#[test]
fn put_ref_keeps_the_item_and_sends_a_copy() {
    let q = Queue::new().unwrap();
    let big = ByteBuf::from(vec![1u8; 300_000]);
    let small = ByteBuf::from(vec![2u8; 10]);
    for _ in 0..3 {
        q.put_ref(&big).unwrap();
        q.put_ref(&small).unwrap();
    }
    for _ in 0..3 {
        assert_eq!(q.get_timeout(BOUND).unwrap(), big);
        assert_eq!(q.get_timeout(BOUND).unwrap(), small);
    }
    q.close();
    assert!(matches!(q.put_ref(&small), Err(PutError::Closed(()))));
}

#[test]
fn a_message_that_does_not_decode_fails_that_get_only() {
    let q = Queue::new().unwrap();
    q.put(Even(3)).unwrap();
    q.put(Even(4)).unwrap();
    match q.get() {
        Err(GetError::Decode(e)) => assert!(e.to_string().contains("Even"), "{e}"),
        other => panic!("expected Decode, got {other:?}"),
    }
    assert_eq!(q.get().unwrap(), Even(4));
}

#[test]
fn simple_queue_is_a_queue() {
    let q = SimpleQueue::new().unwrap();
    assert!(q.empty());
    q.put("a".to_string()).unwrap();
    assert!(!q.empty());
    assert_eq!(q.get().unwrap(), "a");
    q.close();
    assert!(q.put("b".to_string()).is_err());
}

#[worker]
fn do_tasks(q: JoinableQueue<u32>, results: Queue<u32>) {
    loop {
        let n = q.get().unwrap();
        if n == 0 {
            q.task_done().unwrap();
            return;
        }
        results.put(n * 2).unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn joinable_queue_join_waits_for_every_task_done() {
    let q = JoinableQueue::new().unwrap();
    let results = Queue::new().unwrap();
    assert!(q.join_timeout(Duration::ZERO).unwrap());
    for n in 1..=50 {
        q.put(n).unwrap();
    }
    assert!(!q.join_timeout(Duration::from_millis(20)).unwrap());
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let mut p = Process::new(do_tasks, (q.clone(), results.clone()));
            p.start().unwrap();
            p
        })
        .collect();
    for _ in 0..2 {
        q.put(0).unwrap();
    }
    assert!(q.join_timeout(BOUND).unwrap());
    for p in &workers {
        assert_eq!(join(p), 0);
    }
    let mut got: Vec<u32> = (0..50).map(|_| results.get().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (1..=50).map(|n| n * 2).collect::<Vec<_>>());
    assert!(matches!(q.task_done(), Err(Error::TaskDoneTooOften)));
}

/// `len` bytes, as a queue message: postcard writes a byte buffer as a
/// varint length (1 byte below 128, 2 below 16 KiB, 3 below 2 MiB) and the bytes.
fn bytes(len: usize, fill: u8) -> ByteBuf {
    ByteBuf::from(vec![fill; len])
}

/// The limit and length a put was refused with, if it was refused as
/// oversized, with the item handed back intact.
fn oversized<T: PartialEq + std::fmt::Debug>(
    r: Result<(), TryPutError<T>>,
    sent: &T,
) -> Option<(u64, u64)> {
    match r {
        Err(TryPutError::Encode(item, CodecError::Oversized { len, limit })) => {
            assert_eq!(&item, sent, "the refused item comes back");
            Some((len, limit))
        }
        _ => None,
    }
}

/// The limit a user relies on: every put path refuses a message one byte
/// over it with `CodecError::Oversized` and hands the item back, nothing is
/// put, and the queue goes on; a message of exactly the limit goes through.
/// Small messages (copied through a scratch buffer) and large ones (written
/// straight into the ring) alike.
#[test]
fn a_message_over_the_limit_is_refused_and_one_at_the_limit_goes_through() {
    for limit in [1024usize, 200_000] {
        let prefix = if limit < 16 << 10 { 2 } else { 3 };
        let q = Queue::<ByteBuf>::new()
            .unwrap()
            .with_max_message_size(limit);
        assert_eq!(q.max_message_size(), limit);
        let over = bytes(limit - prefix + 1, 9);
        let expected = Some((limit as u64 + 1, limit as u64));
        let put = q.put(over.clone()).map_err(|e| match e {
            PutError::Encode(item, e) => TryPutError::Encode(item, e),
            other => panic!("put: {other:?}"),
        });
        assert_eq!(oversized(put, &over), expected, "put, limit {limit}");
        assert_eq!(oversized(q.try_put(over.clone()), &over), expected);
        assert_eq!(
            oversized(
                q.put_timeout(over.clone(), BOUND).map_err(|e| match e {
                    PutTimeoutError::Encode(item, e) => TryPutError::Encode(item, e),
                    other => panic!("put_timeout: {other:?}"),
                }),
                &over
            ),
            expected
        );
        assert!(matches!(
            q.put_ref(&over),
            Err(PutError::Encode((), CodecError::Oversized { .. }))
        ));
        assert!(q.empty(), "limit {limit}: a refused message was put");
        let at = bytes(limit - prefix, 7);
        q.put(at.clone()).unwrap();
        q.put(bytes(1, 1)).unwrap();
        assert_eq!(q.get_timeout(BOUND).unwrap(), at);
        assert_eq!(q.get_timeout(BOUND).unwrap(), bytes(1, 1));
        // The error converts, as any put error, into the crate's error.
        let e = Error::from(q.try_put(over).unwrap_err());
        assert!(
            matches!(e, Error::Codec(CodecError::Oversized { .. })),
            "{e}"
        );
    }
}

/// The default: a message within 4 GiB (here 1 MiB) goes through, and the
/// limit reported is 4 GiB, the same as a pipe's frame limit.
#[test]
fn the_default_limit_is_four_gib() {
    let q = Queue::<ByteBuf>::new().unwrap();
    assert_eq!(q.max_message_size(), 4 << 30);
    assert_eq!(
        Queue::<u8>::with_maxsize(3).unwrap().max_message_size(),
        4 << 30
    );
    q.put(bytes(1 << 20, 5)).unwrap();
    assert_eq!(q.get_timeout(BOUND).unwrap().len(), 1 << 20);
}

/// A child puts one message over the limit and one at it, and reports the
/// limit it saw and how its over-limit put was refused.
#[worker]
fn put_over_and_at_the_limit(q: Queue<ByteBuf>, at: usize) -> (usize, Option<(u64, u64)>) {
    let over = bytes(at + 1, 3);
    let refused = oversized(q.try_put(over.clone()), &over);
    q.put(bytes(at, 4)).unwrap();
    (q.max_message_size(), refused)
}

/// The limit lives in the queue's shared memory: a child's handle obeys
/// the limit the parent set, refusing the same message the same way.
#[test]
fn the_limit_holds_in_a_child() {
    const LIMIT: usize = 4096;
    let q = Queue::new().unwrap().with_max_message_size(LIMIT);
    let mut p = Process::new(put_over_and_at_the_limit, (q.clone(), LIMIT - 2));
    p.start().unwrap();
    assert_eq!(q.get_timeout(BOUND).unwrap(), bytes(LIMIT - 2, 4));
    assert_eq!(join(&p), 0);
    assert_eq!(
        p.result().unwrap(),
        (LIMIT, Some((LIMIT as u64 + 1, LIMIT as u64)))
    );
    assert!(q.empty(), "the child's refused message was put");
}

/// A refused put adds no unfinished task to a joinable queue, and a simple
/// queue obeys its limit too.
#[test]
fn joinable_and_simple_queues_obey_the_limit() {
    let j = JoinableQueue::<ByteBuf>::new()
        .unwrap()
        .with_max_message_size(100);
    assert!(j.put(bytes(100, 0)).is_err());
    assert!(
        j.join_timeout(Duration::ZERO).unwrap(),
        "a refused put left a task"
    );
    j.put(bytes(99, 0)).unwrap();
    assert!(!j.join_timeout(Duration::ZERO).unwrap());
    j.get_timeout(BOUND).unwrap();
    j.task_done().unwrap();
    assert!(j.join_timeout(Duration::ZERO).unwrap());

    let s = SimpleQueue::<ByteBuf>::new()
        .unwrap()
        .with_max_message_size(100);
    match s.put(bytes(100, 6)) {
        Err(PutError::Encode(
            item,
            CodecError::Oversized {
                len: 101,
                limit: 100,
            },
        )) => {
            assert_eq!(item, bytes(100, 6));
        }
        other => panic!("{other:?}"),
    }
    s.put(bytes(99, 6)).unwrap();
    assert_eq!(s.get().unwrap(), bytes(99, 6));
}

/// A message of many small pieces (a plain `Vec<u8>` encodes byte by byte)
/// is refused as soon as its encoding passes the limit, not after it has
/// been encoded whole: issue 12 measured a 4 GiB + 1 `Vec<u8>` growing the
/// ring for 29 s to 8.4 GB first.
#[test]
fn a_message_of_small_pieces_over_the_limit_is_refused_before_it_is_encoded_whole() {
    let q = Queue::<Vec<u8>>::new()
        .unwrap()
        .with_max_message_size(64 << 10);
    // 4 MiB of pieces against a 64 KiB limit: the scratch buffer must not
    // have to hold it.
    let big = vec![3u8; 4 << 20];
    match q.put_ref(&big) {
        Err(PutError::Encode((), CodecError::Oversized { len, limit })) => {
            assert_eq!(limit, 64 << 10);
            assert!(len > limit);
        }
        other => panic!("{other:?}"),
    }
    // Large enough to take the measured, direct-to-ring path, and still
    // over the limit.
    let q = Queue::<Vec<u16>>::new()
        .unwrap()
        .with_max_message_size(100_000);
    let items = vec![7u16; 200_000];
    assert!(matches!(
        q.try_put(items),
        Err(TryPutError::Encode(
            _,
            CodecError::Oversized { limit: 100_000, .. }
        ))
    ));
    assert!(q.empty());
    q.put(vec![1, 2, 3]).unwrap();
    assert_eq!(q.get_timeout(BOUND).unwrap(), [1, 2, 3]);
}
