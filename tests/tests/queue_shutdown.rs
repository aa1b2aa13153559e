//! `Queue::shutdown` and `JoinableQueue::shutdown` (Python 3.13's
//! `queue.Queue.shutdown`) across processes: puts fail, gets drain then
//! fail, an immediate shutdown discards (and counts the discarded tasks as
//! done), and every blocked put, get, join and `wait`, in any process, wakes.
//!
//! Every wait is bounded by [`BOUND`], an upper limit only: nothing here
//! asserts how fast anything happens.

use multiproc::{
    Error, GetError, GetTimeoutError, JoinableQueue, Process, PutError, PutTimeoutError, Queue,
    TryGetError, TryPutError, Waitable, wait, worker,
};
use multiproc_tests::join;
use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(60);

/// Lets children that announced themselves on `ready` get into their
/// blocking call before the parent acts. Not needed for correctness (a
/// child that is not asleep yet sees the shutdown when it looks), only to
/// make the test exercise the wake-up most of the time.
fn wait_for_ready(ready: &Queue<()>, children: usize) {
    for _ in 0..children {
        ready.get_timeout(BOUND).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
}

/// What a get in a child ended with, as text the parent can match.
fn get_outcome(r: Result<u32, GetError>) -> String {
    match r {
        Ok(x) => format!("got {x}"),
        Err(GetError::ShutDown) => "shut down".to_string(),
        Err(e) => format!("error: {e}"),
    }
}

#[worker]
fn put_one(q: Queue<u32>, x: u32) -> String {
    match q.put(x) {
        Ok(()) => "put".to_string(),
        Err(PutError::ShutDown(item)) => format!("shut down, {item} handed back"),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn a_put_after_shutdown_fails_with_shut_down_in_every_process() {
    let q = Queue::with_maxsize(10).unwrap();
    q.put(1).unwrap();
    q.shutdown(false).unwrap();
    assert!(q.is_shutdown());
    assert!(matches!(q.put(2), Err(PutError::ShutDown(2))));
    assert!(matches!(q.put_ref(&3), Err(PutError::ShutDown(()))));
    assert!(matches!(q.try_put(4), Err(TryPutError::ShutDown(4))));
    assert!(matches!(
        q.put_timeout(5, BOUND),
        Err(PutTimeoutError::ShutDown(5))
    ));
    // A clone made before, in this process, and a handle in a child.
    let clone = q.clone();
    assert!(clone.is_shutdown());
    assert!(matches!(clone.put(6), Err(PutError::ShutDown(6))));
    let mut p = Process::new(put_one, (q.clone(), 7));
    p.start().unwrap();
    assert_eq!(join(&p), 0);
    assert_eq!(p.result().unwrap(), "shut down, 7 handed back");
    // The crate's error, through `?`.
    assert!(matches!(
        Error::from(q.put(8).unwrap_err()),
        Error::ShutDown
    ));
    assert!(matches!(
        Error::from(q.try_put(9).unwrap_err()),
        Error::ShutDown
    ));
    // Nothing was added; what was there stays.
    assert_eq!(q.qsize(), 1);
    assert_eq!(q.get().unwrap(), 1);
}

/// Takes messages until ShutDown; returns them, and how the last get ended.
#[worker]
fn take_until_shutdown(q: Queue<u32>) -> (Vec<u32>, String) {
    let mut got = Vec::new();
    loop {
        match q.get() {
            Ok(x) => got.push(x),
            Err(e) => return (got, get_outcome(Err(e))),
        }
    }
}

#[test]
fn gets_drain_what_is_left_then_fail_with_shut_down() {
    let q = Queue::new().unwrap();
    for x in 1..=3 {
        q.put(x).unwrap();
    }
    q.shutdown(false).unwrap();
    assert_eq!(q.qsize(), 3, "a plain shutdown discards nothing");
    for x in 1..=3 {
        assert_eq!(q.get().unwrap(), x);
    }
    assert!(matches!(q.get(), Err(GetError::ShutDown)));
    assert!(matches!(q.try_get(), Err(TryGetError::ShutDown)));
    assert!(matches!(
        q.get_timeout(BOUND),
        Err(GetTimeoutError::ShutDown)
    ));
    assert!(matches!(Error::from(q.get().unwrap_err()), Error::ShutDown));
    assert!(matches!(
        Error::from(q.try_get().unwrap_err()),
        Error::ShutDown
    ));
}

#[test]
fn consumers_in_children_take_everything_then_stop_on_shut_down() {
    const ITEMS: u32 = 10_000;
    let q = Queue::new().unwrap();
    let mut consumers: Vec<_> = (0..3)
        .map(|_| {
            let mut p = Process::new(take_until_shutdown, (q.clone(),));
            p.start().unwrap();
            p
        })
        .collect();
    for x in 0..ITEMS {
        q.put(x).unwrap();
    }
    q.shutdown(false).unwrap();
    let mut all = Vec::new();
    for p in &mut consumers {
        assert_eq!(join(p), 0);
        let (got, last) = p.result().unwrap();
        assert_eq!(last, "shut down");
        all.extend(got);
    }
    assert_eq!(all.len(), ITEMS as usize, "lost or duplicated messages");
    assert_eq!(
        all.into_iter().collect::<BTreeSet<_>>().len(),
        ITEMS as usize
    );
}

#[test]
fn an_immediate_shutdown_discards_what_is_left() {
    let q = Queue::new().unwrap();
    for x in 0..100u32 {
        q.put(x).unwrap();
    }
    q.shutdown(true).unwrap();
    assert!(q.empty());
    assert_eq!(q.qsize(), 0);
    assert!(matches!(q.get(), Err(GetError::ShutDown)));
    assert!(matches!(q.try_get(), Err(TryGetError::ShutDown)));
    assert!(matches!(q.put(1), Err(PutError::ShutDown(1))));
}

#[test]
fn shutdown_is_idempotent_and_an_immediate_one_upgrades_a_plain_one() {
    let q = Queue::new().unwrap();
    for x in 0..3u32 {
        q.put(x).unwrap();
    }
    q.shutdown(false).unwrap();
    q.shutdown(false).unwrap();
    assert_eq!(q.qsize(), 3, "a second plain shutdown discards nothing");
    assert_eq!(q.get().unwrap(), 0);
    q.shutdown(true).unwrap();
    assert!(q.empty(), "the immediate shutdown discarded the rest");
    assert!(matches!(q.get(), Err(GetError::ShutDown)));
    q.shutdown(true).unwrap();
    q.shutdown(false).unwrap();
    assert!(q.is_shutdown());
    assert!(matches!(q.get(), Err(GetError::ShutDown)));
    assert!(matches!(q.put(9), Err(PutError::ShutDown(9))));
}

#[worker]
fn join_queue(q: JoinableQueue<u32>, ready: Queue<()>) -> bool {
    ready.put(()).unwrap();
    q.join().unwrap();
    true
}

#[test]
fn a_join_returns_after_an_immediate_shutdown_in_every_process() {
    let q = JoinableQueue::new().unwrap();
    for x in 0..5 {
        q.put(x).unwrap();
    }
    let ready = Queue::new().unwrap();
    let mut joiners: Vec<_> = (0..2)
        .map(|_| {
            let mut p = Process::new(join_queue, (q.clone(), ready.clone()));
            p.start().unwrap();
            p
        })
        .collect();
    wait_for_ready(&ready, joiners.len());
    assert!(!q.join_timeout(Duration::ZERO).unwrap());
    q.shutdown(true).unwrap();
    assert!(q.join_timeout(BOUND).unwrap());
    q.join().unwrap();
    for p in &mut joiners {
        assert_eq!(join(p), 0);
        assert!(p.result().unwrap());
    }
    // Every task is done: none is left to mark.
    assert!(matches!(q.task_done(), Err(Error::TaskDoneTooOften)));
}

#[test]
fn a_plain_shutdown_leaves_the_tasks_to_be_done() {
    let q = JoinableQueue::new().unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    q.shutdown(false).unwrap();
    assert!(!q.join_timeout(Duration::ZERO).unwrap());
    for x in 1..=2 {
        assert_eq!(q.get().unwrap(), x);
        q.task_done().unwrap();
    }
    assert!(q.join_timeout(BOUND).unwrap());
    assert!(matches!(q.get(), Err(GetError::ShutDown)));
}

#[worker]
fn get_on_empty(q: Queue<u32>, ready: Queue<()>) -> String {
    ready.put(()).unwrap();
    get_outcome(q.get())
}

#[test]
fn children_blocked_in_get_on_an_empty_queue_wake_with_shut_down() {
    for immediate in [false, true] {
        let q = Queue::new().unwrap();
        let ready = Queue::new().unwrap();
        let mut getters: Vec<_> = (0..3)
            .map(|_| {
                let mut p = Process::new(get_on_empty, (q.clone(), ready.clone()));
                p.start().unwrap();
                p
            })
            .collect();
        wait_for_ready(&ready, getters.len());
        q.shutdown(immediate).unwrap();
        for p in &mut getters {
            assert_eq!(join(p), 0, "immediate {immediate}");
            assert_eq!(p.result().unwrap(), "shut down", "immediate {immediate}");
        }
    }
}

#[worker]
fn put_on_full(q: Queue<u32>, ready: Queue<()>, x: u32) -> String {
    ready.put(()).unwrap();
    match q.put(x) {
        Ok(()) => "put".to_string(),
        Err(PutError::ShutDown(item)) => format!("shut down, {item} handed back"),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn children_blocked_in_put_on_a_full_queue_wake_with_shut_down() {
    for immediate in [false, true] {
        let q = Queue::with_maxsize(1).unwrap();
        q.put(0).unwrap();
        assert!(q.full());
        let ready = Queue::new().unwrap();
        let mut putters: Vec<_> = (1..=2)
            .map(|x| {
                let mut p = Process::new(put_on_full, (q.clone(), ready.clone(), x));
                p.start().unwrap();
                p
            })
            .collect();
        wait_for_ready(&ready, putters.len());
        q.shutdown(immediate).unwrap();
        for (p, x) in putters.iter_mut().zip(1..) {
            assert_eq!(join(p), 0, "immediate {immediate}");
            assert_eq!(
                p.result().unwrap(),
                format!("shut down, {x} handed back"),
                "immediate {immediate}"
            );
        }
        if immediate {
            assert!(q.empty());
        } else {
            assert_eq!(q.get().unwrap(), 0, "the message put before stays");
        }
        assert!(matches!(q.get(), Err(GetError::ShutDown)));
    }
}

#[worker]
fn shut_down_queue(q: Queue<u32>, immediate: bool) {
    q.shutdown(immediate).unwrap();
}

#[test]
fn a_shutdown_in_a_child_wakes_a_get_in_the_parent() {
    let q = Queue::new().unwrap();
    // A get without a timeout, in a thread: a timed one would also end in
    // ShutDown when its time ran out, wake-up or not.
    let (tx, rx) = mpsc::channel();
    let getter = {
        let q = q.clone();
        std::thread::spawn(move || tx.send(get_outcome(q.get())).unwrap())
    };
    let mut p = Process::new(shut_down_queue, (q.clone(), false));
    p.start().unwrap();
    assert_eq!(rx.recv_timeout(BOUND).unwrap(), "shut down");
    getter.join().unwrap();
    assert_eq!(join(&p), 0);
    assert!(q.is_shutdown());
    assert!(matches!(q.put(1), Err(PutError::ShutDown(1))));
}

#[test]
fn an_immediate_shutdown_in_a_child_discards_the_parents_messages() {
    let q = Queue::new().unwrap();
    for x in 0..10 {
        q.put(x).unwrap();
    }
    let mut p = Process::new(shut_down_queue, (q.clone(), true));
    p.start().unwrap();
    assert_eq!(join(&p), 0);
    assert!(q.is_shutdown());
    assert!(q.empty());
    assert!(matches!(q.try_get(), Err(TryGetError::ShutDown)));
}

#[worker]
fn shut_down_joinable(q: JoinableQueue<u32>, immediate: bool) {
    q.shutdown(immediate).unwrap();
}

#[test]
fn an_immediate_shutdown_in_a_child_releases_a_join_in_the_parent() {
    let q = JoinableQueue::new().unwrap();
    for x in 0..10 {
        q.put(x).unwrap();
    }
    let mut p = Process::new(shut_down_joinable, (q.clone(), true));
    p.start().unwrap();
    assert!(q.join_timeout(BOUND).unwrap());
    assert_eq!(join(&p), 0);
    assert!(q.empty());
}

#[test]
fn a_wait_on_a_queue_wakes_when_another_process_shuts_it_down() {
    let q = Queue::<u32>::new().unwrap();
    assert!(
        wait(&[&q as &dyn Waitable], Some(Duration::ZERO))
            .unwrap()
            .is_empty()
    );
    // Without a timeout, in a thread, as above.
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let q = q.clone();
        std::thread::spawn(move || {
            tx.send(wait(&[&q as &dyn Waitable], None).unwrap())
                .unwrap()
        })
    };
    let mut p = Process::new(shut_down_queue, (q.clone(), false));
    p.start().unwrap();
    assert_eq!(rx.recv_timeout(BOUND).unwrap(), [0]);
    waiter.join().unwrap();
    assert_eq!(join(&p), 0);
    // A get answers at once now, and the queue stays ready.
    assert!(matches!(q.try_get(), Err(TryGetError::ShutDown)));
    assert_eq!(
        wait(&[&q as &dyn Waitable], Some(Duration::ZERO)).unwrap(),
        [0]
    );
}
