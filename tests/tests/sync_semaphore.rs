//! `Semaphore`, `BoundedSemaphore` and `Event` across processes, including
//! waiters killed while they wait.

use multiproc::{BoundedSemaphore, Event, Process, Queue, ReleaseError, Semaphore, worker};
use multiproc_tests::join;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);

fn assert_handle<T: Clone + Send + Sync + Serialize + for<'de> Deserialize<'de>>() {}

#[test]
fn handles_are_cheap_shareable_values() {
    assert_handle::<Semaphore>();
    assert_handle::<BoundedSemaphore>();
    assert_handle::<Event>();
}

#[worker]
fn take_and_give(sem: Semaphore, inside: Semaphore, peak: Queue<u32>, rounds: u32) {
    let mut most = 0;
    for _ in 0..rounds {
        let unit = sem.acquire();
        inside.release();
        most = most.max(inside.value());
        std::hint::spin_loop();
        inside.acquire().forget();
        drop(unit);
    }
    peak.put(most).unwrap();
}

#[test]
fn a_semaphore_admits_at_most_its_value() {
    const LIMIT: u32 = 2;
    let sem = Semaphore::new(LIMIT).unwrap();
    let inside = Semaphore::new(0).unwrap();
    let peak = Queue::new().unwrap();
    let ps: Vec<_> = (0..4)
        .map(|_| {
            let mut p = Process::new(
                take_and_give,
                (sem.clone(), inside.clone(), peak.clone(), 3_000),
            );
            p.start().unwrap();
            p
        })
        .collect();
    for p in &ps {
        assert_eq!(join(p), 0);
    }
    for _ in 0..4 {
        let most = peak.get_timeout(BOUND).unwrap();
        assert!((1..=LIMIT).contains(&most), "{most} inside at once");
    }
    assert_eq!(sem.value(), LIMIT);
    assert_eq!(inside.value(), 0);
}

#[worker]
fn produce(sem: Semaphore, n: u32) {
    for _ in 0..n {
        sem.release();
    }
}

#[worker]
fn consume(sem: Semaphore, n: u32) -> u32 {
    let mut got = 0;
    for _ in 0..n {
        sem.acquire_timeout(Duration::from_secs(60))
            .expect("a unit in time")
            .forget();
        got += 1;
    }
    got
}

#[test]
fn units_released_in_one_process_are_taken_in_others() {
    const EACH: u32 = 20_000;
    let sem = Semaphore::new(0).unwrap();
    let mut consumers: Vec<_> = (0..2)
        .map(|_| {
            let mut p = Process::new(consume, (sem.clone(), EACH));
            p.start().unwrap();
            p
        })
        .collect();
    let producers: Vec<_> = (0..2)
        .map(|_| {
            let mut p = Process::new(produce, (sem.clone(), EACH));
            p.start().unwrap();
            p
        })
        .collect();
    for p in &producers {
        assert_eq!(join(p), 0);
    }
    for p in &mut consumers {
        assert_eq!(p.result().unwrap(), EACH);
    }
    assert_eq!(sem.value(), 0);
}

#[test]
fn semaphore_try_timeout_and_release_n() {
    let sem = Semaphore::new(0).unwrap();
    assert!(sem.try_acquire().is_none());
    let start = Instant::now();
    assert!(sem.acquire_timeout(Duration::ZERO).is_none());
    assert!(start.elapsed() < Duration::from_millis(50));
    let start = Instant::now();
    assert!(sem.acquire_timeout(Duration::from_millis(30)).is_none());
    assert!(start.elapsed() >= Duration::from_millis(30));
    sem.release_n(3);
    assert_eq!(sem.value(), 3);
    let units: Vec<_> = (0..3).map(|_| sem.try_acquire().unwrap()).collect();
    assert!(sem.try_acquire().is_none());
    drop(units);
    assert_eq!(sem.value(), 3);
}

#[test]
fn a_bounded_semaphore_refuses_to_pass_its_limit() {
    let sem = BoundedSemaphore::new(2).unwrap();
    assert_eq!(sem.release(), Err(ReleaseError { limit: 2 }));
    assert_eq!(sem.value(), 2);
    sem.acquire().forget();
    sem.acquire().forget();
    assert_eq!(sem.release_n(3), Err(ReleaseError { limit: 2 }));
    assert_eq!(sem.value(), 0, "a refused release changes nothing");
    assert_eq!(sem.release_n(2), Ok(()));
    assert_eq!(sem.release(), Err(ReleaseError { limit: 2 }));
    let e: multiproc::Error = ReleaseError { limit: 2 }.into();
    assert!(matches!(e, multiproc::Error::ReleasedTooManyTimes));
}

#[worker]
fn over_release(sem: BoundedSemaphore) -> bool {
    sem.release().is_err()
}

#[test]
fn the_bound_holds_in_other_processes() {
    let sem = BoundedSemaphore::new(1).unwrap();
    let mut p = Process::new(over_release, (sem.clone(),));
    p.start().unwrap();
    assert!(p.result().unwrap());
    assert_eq!(sem.value(), 1);
}

#[worker]
fn acquire_and_report(sem: Semaphore, waiting: Semaphore, got: Queue<u32>, id: u32) {
    waiting.release();
    sem.acquire().forget();
    got.put(id).unwrap();
}

#[test]
fn semaphore_waiters_stay_correct_when_one_is_killed() {
    for round in 0..15 {
        let sem = Semaphore::new(0).unwrap();
        let waiting = Semaphore::new(0).unwrap();
        let got = Queue::new().unwrap();
        let ps: Vec<_> = (0..3)
            .map(|id| {
                let mut p = Process::new(
                    acquire_and_report,
                    (sem.clone(), waiting.clone(), got.clone(), id),
                );
                p.start().unwrap();
                p
            })
            .collect();
        for _ in 0..3 {
            waiting.acquire_timeout(BOUND).unwrap().forget();
        }
        std::thread::sleep(Duration::from_millis(20)); // asleep in the kernel
        let victim = round % 3;
        ps[victim].kill().unwrap();
        assert_eq!(join(&ps[victim]), -9);
        sem.release_n(2);
        let mut woke: Vec<u32> = (0..2).map(|_| got.get_timeout(BOUND).unwrap()).collect();
        woke.sort_unstable();
        let mut expected: Vec<u32> = (0..3).filter(|&id| id != victim as u32).collect();
        expected.sort_unstable();
        assert_eq!(woke, expected, "round {round}");
        for (i, p) in ps.iter().enumerate() {
            if i != victim {
                assert_eq!(join(p), 0);
            }
        }
        assert_eq!(sem.value(), 0);
    }
}

#[worker]
fn set_later(e: Event, delay_ms: u64) {
    std::thread::sleep(Duration::from_millis(delay_ms));
    e.set();
}

#[test]
fn an_event_set_in_a_child_wakes_the_parent() {
    let e = Event::new().unwrap();
    assert!(!e.is_set());
    let mut p = Process::new(set_later, (e.clone(), 30));
    p.start().unwrap();
    assert!(e.wait_timeout(BOUND));
    assert!(e.is_set());
    assert!(e.try_wait());
    assert_eq!(join(&p), 0);
    e.clear();
    assert!(!e.is_set());
    assert!(!e.try_wait());
}

#[test]
fn an_event_wait_timeout_returns_false() {
    let e = Event::new().unwrap();
    let start = Instant::now();
    assert!(!e.wait_timeout(Duration::ZERO));
    assert!(start.elapsed() < Duration::from_millis(50));
    let start = Instant::now();
    assert!(!e.wait_timeout(Duration::from_millis(30)));
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(30), "{waited:?}");
    e.set();
    assert!(e.wait_timeout(Duration::ZERO));
}

#[worker]
fn wait_and_report(e: Event, waiting: Semaphore, woke: Queue<u32>, id: u32) {
    waiting.release();
    assert!(e.wait_timeout(Duration::from_secs(60)));
    woke.put(id).unwrap();
}

#[test]
fn event_waiters_stay_correct_when_one_is_killed() {
    for round in 0..15 {
        let e = Event::new().unwrap();
        let waiting = Semaphore::new(0).unwrap();
        let woke = Queue::new().unwrap();
        let ps: Vec<_> = (0..3)
            .map(|id| {
                let mut p = Process::new(
                    wait_and_report,
                    (e.clone(), waiting.clone(), woke.clone(), id),
                );
                p.start().unwrap();
                p
            })
            .collect();
        for _ in 0..3 {
            waiting.acquire_timeout(BOUND).unwrap().forget();
        }
        std::thread::sleep(Duration::from_millis(20));
        let victim = round % 3;
        ps[victim].kill().unwrap();
        assert_eq!(join(&ps[victim]), -9);
        e.set();
        let mut got: Vec<u32> = (0..2).map(|_| woke.get_timeout(BOUND).unwrap()).collect();
        got.sort_unstable();
        let expected: Vec<u32> = (0..3).filter(|&id| id != victim as u32).collect();
        assert_eq!(got, expected, "round {round}");
        for (i, p) in ps.iter().enumerate() {
            if i != victim {
                assert_eq!(join(p), 0);
            }
        }
    }
}

#[test]
fn a_set_then_clear_still_wakes_the_threads_waiting_then() {
    let e = Event::new().unwrap();
    let waiting = Semaphore::new(0).unwrap();
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    waiting.release();
                    e.wait_timeout(BOUND)
                })
            })
            .collect();
        for _ in 0..3 {
            waiting.acquire_timeout(BOUND).unwrap().forget();
        }
        std::thread::sleep(Duration::from_millis(10));
        e.set();
        e.clear();
        for w in waiters {
            assert!(w.join().unwrap());
        }
    });
}

#[worker]
fn ponger(ping: Event, pong: Event, rounds: u32) {
    for _ in 0..rounds {
        assert!(ping.wait_timeout(Duration::from_secs(60)));
        ping.clear();
        pong.set();
    }
}

#[test]
fn event_ping_pong_many_rounds() {
    const ROUNDS: u32 = 2_000;
    let (ping, pong) = (Event::new().unwrap(), Event::new().unwrap());
    let mut p = Process::new(ponger, (ping.clone(), pong.clone(), ROUNDS));
    p.start().unwrap();
    for round in 0..ROUNDS {
        ping.set();
        assert!(pong.wait_timeout(BOUND), "round {round}");
        pong.clear();
    }
    assert_eq!(join(&p), 0);
}
