//! `Barrier` across processes: indices, the action, lockstep, and every way
//! it breaks (abort, reset, timeout, a party killed while waiting, a
//! panicking action).

use multiproc::{
    Barrier, BarrierWaitError, Error, Process, Semaphore, TryBarrierWaitError, worker,
};
use multiproc_tests::join;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);

fn assert_handle<T: Clone + Send + Sync + Serialize + for<'de> Deserialize<'de>>() {}

#[test]
fn a_barrier_is_a_cheap_shareable_value() {
    assert_handle::<Barrier>();
    let b = Barrier::new(3).unwrap();
    assert_eq!(b.parties(), 3);
    assert_eq!(b.n_waiting(), 0);
    assert!(!b.broken());
    assert_eq!(b.timeout(), None);
    assert!(Barrier::new(0).is_err());
}

#[worker]
fn indices(b: Barrier, rounds: u32) -> Vec<usize> {
    (0..rounds).map(|_| b.wait().unwrap()).collect()
}

#[test]
fn each_round_hands_out_the_indices_0_to_parties() {
    const ROUNDS: u32 = 300;
    let b = Barrier::new(4).unwrap();
    let mut ps: Vec<_> = (0..3)
        .map(|_| {
            let mut p = Process::new(indices, (b.clone(), ROUNDS));
            p.start().unwrap();
            p
        })
        .collect();
    let mine = indices(b.clone(), ROUNDS);
    let mut all = vec![mine];
    all.extend(ps.iter_mut().map(|p| p.result().unwrap()));
    for round in 0..ROUNDS as usize {
        let mut got: Vec<usize> = all.iter().map(|seq| seq[round]).collect();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2, 3], "round {round}");
    }
}

/// Before pass `k` every party adds one to `arrivals`; after it, all
/// parties have added `k + 1` and none can have added `k + 3` (it would
/// have passed `k + 1` without us). Returns the passes out of step.
#[worker]
fn lockstep(b: Barrier, arrivals: Semaphore, passes: u32) -> u32 {
    let parties = b.parties() as u32;
    let mut out_of_step = 0;
    for k in 0..passes {
        arrivals.release();
        b.wait().unwrap();
        let v = arrivals.value();
        if v < parties * (k + 1) || v >= parties * (k + 2) {
            out_of_step += 1;
        }
    }
    out_of_step
}

#[test]
fn a_thousand_passes_in_lockstep() {
    const PASSES: u32 = 1_000;
    let b = Barrier::new(3).unwrap();
    let arrivals = Semaphore::new(0).unwrap();
    let mut ps: Vec<_> = (0..2)
        .map(|_| {
            let mut p = Process::new(lockstep, (b.clone(), arrivals.clone(), PASSES));
            p.start().unwrap();
            p
        })
        .collect();
    let mine = lockstep(b.clone(), arrivals.clone(), PASSES);
    let theirs: u32 = ps.iter_mut().map(|p| p.result().unwrap()).sum();
    assert_eq!(mine + theirs, 0, "a process got ahead");
    assert_eq!(arrivals.value(), 3 * PASSES);
}

static ACTION_LOG: OnceLock<Semaphore> = OnceLock::new();
static RAN_HERE: AtomicU32 = AtomicU32::new(0);

fn count_action() {
    ACTION_LOG.get().expect("set before waiting").release();
    RAN_HERE.fetch_add(1, Ordering::SeqCst);
}

/// Returns (rounds in which the action had not run exactly once before the
/// release, how often it ran in this process).
#[worker]
fn with_action(b: Barrier, log: Semaphore, rounds: u32) -> (u32, u32) {
    let _ = ACTION_LOG.set(log.clone());
    let mut wrong = 0;
    for k in 0..rounds {
        b.wait().unwrap();
        // This round's action ran; the next round's cannot have yet.
        if log.value() != k + 1 {
            wrong += 1;
        }
    }
    (wrong, RAN_HERE.load(Ordering::SeqCst))
}

#[test]
fn the_action_runs_once_per_round_before_anyone_is_released() {
    const ROUNDS: u32 = 200;
    let log = Semaphore::new(0).unwrap();
    let b = Barrier::builder(3).action(count_action).build().unwrap();
    let mut ps: Vec<_> = (0..2)
        .map(|_| {
            let mut p = Process::new(with_action, (b.clone(), log.clone(), ROUNDS));
            p.start().unwrap();
            p
        })
        .collect();
    let (mut wrong, mut ran) = with_action(b.clone(), log.clone(), ROUNDS);
    for p in &mut ps {
        let (w, r) = p.result().unwrap();
        wrong += w;
        ran += r;
    }
    assert_eq!(wrong, 0);
    assert_eq!(ran, ROUNDS, "the action ran once per round, in one process");
    assert_eq!(log.value(), ROUNDS);
}

fn boom() {
    panic!("the action failed");
}

#[worker]
fn wait_result(b: Barrier) -> Result<usize, BarrierWaitError> {
    b.wait_timeout(Duration::from_secs(60))
}

#[test]
fn a_panicking_action_breaks_the_barrier_and_panics_in_its_party() {
    let b = Barrier::builder(2).action(boom).build().unwrap();
    let mut p = Process::new(wait_result, (b.clone(),));
    p.env("RUST_BACKTRACE", "0"); // its action may panic, on purpose
    p.start().unwrap();
    // Whichever party arrives last runs the action.
    let here = std::panic::catch_unwind(|| b.wait_timeout(BOUND));
    let there = p.result();
    match (here, there) {
        (Err(_), Ok(r)) => assert_eq!(r, Err(BarrierWaitError::Broken)),
        (Ok(r), Err(Error::Panicked { message, .. })) => {
            assert_eq!(r, Err(BarrierWaitError::Broken));
            assert_eq!(message, "the action failed");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(b.broken());
    b.reset();
    assert!(!b.broken());
}

#[worker]
fn wait_then_report(b: Barrier, arrived: Semaphore) -> Result<usize, BarrierWaitError> {
    arrived.release();
    b.wait_timeout(Duration::from_secs(60))
}

fn start_waiters(b: &Barrier, arrived: &Semaphore, n: usize) -> Vec<Process<wait_then_report>> {
    (0..n)
        .map(|_| {
            let mut p = Process::new(wait_then_report, (b.clone(), arrived.clone()));
            p.start().unwrap();
            p
        })
        .collect()
}

/// Until `n` parties are waiting.
fn until_waiting(b: &Barrier, n: usize) {
    let deadline = Instant::now() + BOUND;
    while b.n_waiting() < n {
        assert!(Instant::now() < deadline, "parties never arrived");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn abort_breaks_it_for_waiting_and_late_parties_until_reset() {
    let b = Barrier::new(3).unwrap();
    let arrived = Semaphore::new(0).unwrap();
    let mut ps = start_waiters(&b, &arrived, 2);
    until_waiting(&b, 2);
    b.abort();
    for p in &mut ps {
        assert_eq!(p.result().unwrap(), Err(BarrierWaitError::Broken));
    }
    assert!(b.broken());
    assert_eq!(b.n_waiting(), 0);
    assert_eq!(b.wait(), Err(BarrierWaitError::Broken), "a late party");
    assert_eq!(b.try_wait(), Err(TryBarrierWaitError::Broken));
    b.reset();
    assert!(!b.broken());
    let mut ps = start_waiters(&b, &arrived, 2);
    let mine = b.wait_timeout(BOUND).unwrap();
    let mut got = vec![mine];
    for p in &mut ps {
        got.push(p.result().unwrap().unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2]);
}

#[test]
fn reset_while_parties_wait_breaks_their_round_only() {
    let b = Barrier::new(3).unwrap();
    let arrived = Semaphore::new(0).unwrap();
    let mut ps = start_waiters(&b, &arrived, 2);
    until_waiting(&b, 2);
    b.reset();
    for p in &mut ps {
        assert_eq!(p.result().unwrap(), Err(BarrierWaitError::Broken));
    }
    assert!(!b.broken(), "reset leaves the barrier usable");
    let mut ps = start_waiters(&b, &arrived, 2);
    assert!(b.wait_timeout(BOUND).is_ok());
    for p in &mut ps {
        assert!(p.result().unwrap().is_ok());
    }
}

#[test]
fn a_timeout_breaks_it_for_everyone() {
    let b = Barrier::new(3).unwrap();
    let arrived = Semaphore::new(0).unwrap();
    let ps = start_waiters(&b, &arrived, 1);
    until_waiting(&b, 1);
    let start = Instant::now();
    assert_eq!(
        b.wait_timeout(Duration::from_millis(50)),
        Err(BarrierWaitError::Timeout)
    );
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(ps[0].result().unwrap(), Err(BarrierWaitError::Broken));
    assert_eq!(b.wait(), Err(BarrierWaitError::Broken), "a late party");
    b.reset();
    // A zero timeout answers at once, and breaks it too (Python's wait(0)).
    let start = Instant::now();
    assert_eq!(
        b.wait_timeout(Duration::ZERO),
        Err(BarrierWaitError::Timeout)
    );
    assert!(start.elapsed() < Duration::from_millis(50));
    assert!(b.broken());
}

#[test]
fn the_default_timeout_applies_to_wait() {
    let b = Barrier::builder(2)
        .timeout(Duration::from_millis(30))
        .build()
        .unwrap();
    assert_eq!(b.timeout(), Some(Duration::from_millis(30)));
    let mut p = Process::new(indices, (b.clone(), 0));
    p.start().unwrap();
    assert_eq!(b.wait(), Err(BarrierWaitError::Timeout));
    assert!(b.broken());
    assert_eq!(
        Error::from(BarrierWaitError::Broken).to_string(),
        "the barrier is broken"
    );
    assert_eq!(join(&p), 0);
}

#[test]
fn try_wait_passes_only_as_the_last_party() {
    let b = Barrier::new(2).unwrap();
    assert_eq!(b.try_wait(), Err(TryBarrierWaitError::WouldBlock));
    assert_eq!(b.n_waiting(), 0, "a refused try_wait does not arrive");
    assert!(!b.broken());
    let arrived = Semaphore::new(0).unwrap();
    let ps = start_waiters(&b, &arrived, 1);
    until_waiting(&b, 1);
    assert_eq!(b.try_wait(), Ok(1));
    assert_eq!(ps[0].result().unwrap(), Ok(0));
}

#[test]
fn a_party_killed_while_waiting_breaks_it_for_the_rest() {
    for round in 0..30 {
        // A generous default timeout: the death must be noticed long before.
        let b = Barrier::builder(4)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let arrived = Semaphore::new(0).unwrap();
        let ps = start_waiters(&b, &arrived, 2);
        until_waiting(&b, 2);
        std::thread::sleep(Duration::from_millis(10)); // asleep in the kernel
        let victim = round % 2;
        let start = Instant::now();
        std::thread::scope(|s| {
            // Round by round, this process is already waiting when the
            // victim dies, or arrives afterwards as the last party.
            let me = if round % 3 == 0 {
                Some(s.spawn(|| b.wait()))
            } else {
                None
            };
            if me.is_some() {
                until_waiting(&b, 3);
            }
            ps[victim].kill().unwrap();
            assert_eq!(join(&ps[victim]), -9);
            let survivor = 1 - victim;
            assert_eq!(
                ps[survivor].result().unwrap(),
                Err(BarrierWaitError::Broken),
                "round {round}"
            );
            match me {
                Some(me) => assert_eq!(me.join().unwrap(), Err(BarrierWaitError::Broken)),
                None => assert_eq!(b.wait(), Err(BarrierWaitError::Broken)),
            }
        });
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "round {round}: noticed after {took:?}"
        );
    }
}

#[worker]
fn arrive_and_die(b: Barrier) {
    std::thread::spawn(move || {
        let _ = b.wait();
    });
    std::thread::sleep(Duration::from_millis(20));
    std::process::abort();
}

#[test]
fn the_last_party_finds_a_waiter_that_died() {
    // Two parties: the only waiter dies, nobody watches it but the last
    // party to arrive, which must not pass with a dead partner.
    let b = Barrier::builder(2)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut p = Process::new(arrive_and_die, (b.clone(),));
    p.start().unwrap();
    assert_eq!(join(&p), -6);
    let start = Instant::now();
    assert_eq!(b.wait(), Err(BarrierWaitError::Broken));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn threads_and_processes_share_a_barrier_for_many_rounds() {
    const ROUNDS: u32 = 200;
    let b = Barrier::new(4).unwrap();
    let mut p = Process::new(indices, (b.clone(), ROUNDS));
    p.start().unwrap();
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..3)
            .map(|_| s.spawn(|| indices(b.clone(), ROUNDS)))
            .collect();
        let mut all: Vec<Vec<usize>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        all.push(p.result().unwrap());
        for round in 0..ROUNDS as usize {
            let mut got: Vec<usize> = all.iter().map(|seq| seq[round]).collect();
            got.sort_unstable();
            assert_eq!(got, [0, 1, 2, 3], "round {round}");
        }
    });
}

#[worker]
fn pass_until_broken(b: Barrier, passes: Semaphore) -> BarrierWaitError {
    loop {
        match b.wait() {
            Ok(_) => passes.release(),
            Err(e) => return e,
        }
    }
}

#[test]
fn parties_killed_at_random_moments_never_hang_the_rest() {
    // Killed inside `wait`, a party is noticed by the others; killed between
    // two waits, it is simply missing, and the timeout ends the round.
    const TIMEOUT: Duration = Duration::from_millis(300);
    for round in 0..15u64 {
        let b = Barrier::builder(3).timeout(TIMEOUT).build().unwrap();
        let passes = Semaphore::new(0).unwrap();
        let mut ps: Vec<_> = (0..3)
            .map(|_| {
                let mut p = Process::new(pass_until_broken, (b.clone(), passes.clone()));
                p.start().unwrap();
                p
            })
            .collect();
        let deadline = Instant::now() + BOUND;
        while passes.value() < 30 {
            assert!(
                Instant::now() < deadline,
                "round {round}: the parties never got going"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let victim = (round % 3) as usize;
        std::thread::sleep(Duration::from_micros(100 + 997 * round % 3_000));
        ps[victim].kill().unwrap();
        let killed_at = Instant::now();
        assert_eq!(join(&ps[victim]), -9);
        for (i, p) in ps.iter_mut().enumerate() {
            if i != victim {
                let e = p.result().unwrap();
                assert!(
                    matches!(e, BarrierWaitError::Broken | BarrierWaitError::Timeout),
                    "round {round}: {e:?}"
                );
            }
        }
        let took = killed_at.elapsed();
        assert!(
            took < TIMEOUT + Duration::from_secs(5),
            "round {round}: {took:?}"
        );
        assert!(b.broken());
    }
}

fn die_in_action() {
    std::process::abort();
}

#[worker]
fn wait_last(b: Barrier) {
    let _ = b.wait();
}

#[test]
fn a_party_that_dies_running_the_action_breaks_the_barrier() {
    let b = Barrier::builder(2)
        .action(die_in_action)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    std::thread::scope(|s| {
        // This process arrives first, so the child is the last party and
        // runs the action, which kills it.
        let first = s.spawn(|| b.wait());
        until_waiting(&b, 1);
        let mut p = Process::new(wait_last, (b.clone(),));
        p.start().unwrap();
        let start = Instant::now();
        assert_eq!(join(&p), -6);
        assert_eq!(first.join().unwrap(), Err(BarrierWaitError::Broken));
        assert!(start.elapsed() < Duration::from_secs(5));
    });
    assert_eq!(b.wait(), Err(BarrierWaitError::Broken), "a late party");
}
