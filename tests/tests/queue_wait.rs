//! `wait` over queues, together with connections and processes.

use multiproc::{JoinableQueue, Pipe, Process, Queue, SimpleQueue, Waitable, wait, worker};
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(30);

#[test]
fn a_queue_is_ready_while_it_is_not_empty() {
    let q = Queue::new().unwrap();
    let (a, _b) = Pipe::<u8>::new().unwrap();
    let objects: [&dyn Waitable; 2] = [&q, &a];
    assert!(wait(&objects, Some(Duration::ZERO)).unwrap().is_empty());
    let t = Instant::now();
    assert!(
        wait(&objects, Some(Duration::from_millis(50)))
            .unwrap()
            .is_empty()
    );
    assert!(t.elapsed() >= Duration::from_millis(50));
    q.put(1u32).unwrap();
    assert_eq!(wait(&objects, Some(Duration::ZERO)).unwrap(), [0]);
    // Level-triggered: still ready until taken.
    assert_eq!(wait(&objects, Some(BOUND)).unwrap(), [0]);
    assert_eq!(q.get().unwrap(), 1);
    assert!(wait(&objects, Some(Duration::ZERO)).unwrap().is_empty());
}

#[worker]
fn put_later(q: Queue<String>, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    q.put("late".into()).unwrap();
}

#[test]
fn a_put_in_another_process_wakes_a_waiter() {
    for _ in 0..20 {
        let q = Queue::new().unwrap();
        let mut p = Process::new(put_later, (q.clone(), 20));
        p.start().unwrap();
        let t = Instant::now();
        let ready = wait(&[&q as &dyn Waitable], Some(BOUND)).unwrap();
        assert_eq!(ready, [0]);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(q.get().unwrap(), "late");
        assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
        // Empty again: the signal was cleared.
        assert!(
            wait(&[&q as &dyn Waitable], Some(Duration::from_millis(20)))
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn several_threads_waiting_on_one_queue_all_wake() {
    let q = Queue::<u8>::new().unwrap();
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..4)
            .map(|_| s.spawn(|| wait(&[&q], Some(BOUND)).unwrap()))
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        q.put(9).unwrap();
        for w in waiters {
            assert_eq!(w.join().unwrap(), [0]);
        }
    });
}

#[test]
fn simple_and_joinable_queues_are_waitable_too() {
    let s = SimpleQueue::new().unwrap();
    let j = JoinableQueue::new().unwrap();
    let objects: [&dyn Waitable; 2] = [&s, &j];
    assert!(wait(&objects, Some(Duration::ZERO)).unwrap().is_empty());
    j.put(1u8).unwrap();
    assert_eq!(wait(&objects, Some(BOUND)).unwrap(), [1]);
    s.put(2u8).unwrap();
    assert_eq!(wait(&objects, Some(BOUND)).unwrap(), [0, 1]);
}
