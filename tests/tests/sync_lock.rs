//! `Lock` and `RLock` across processes and threads: mutual exclusion,
//! re-entrancy, ownership, and recovery from a holder that died.

use multiproc::{
    AcquireTimeoutError, Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard, NotOwner,
    OwnerDied, Process, PutError, Queue, RLock, Semaphore, TryAcquireError, Worker, worker,
};
use multiproc_tests::join;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);
/// How soon the next acquirer must get a lock whose holder died.
const RECOVERY: Duration = Duration::from_millis(100);

fn assert_handle<T: Clone + Send + Sync + Serialize + for<'de> Deserialize<'de>>() {}

#[test]
fn handles_are_cheap_shareable_values() {
    assert_handle::<Lock>();
    assert_handle::<RLock>();
    assert_handle::<Condition>();
    assert_handle::<Condition<Lock>>();
}

/// Each iteration takes the lock and checks that nobody else is inside:
/// `inside` has one unit, taken on entry without waiting.
fn hammer(lock: &Lock, inside: &BoundedSemaphore, count: &Semaphore, n: u32) -> u32 {
    let mut overlaps = 0;
    for _ in 0..n {
        let _held = lock.acquire().unwrap();
        match inside.try_acquire() {
            Some(unit) => {
                count.release();
                std::hint::spin_loop();
                drop(unit);
            }
            None => overlaps += 1,
        }
    }
    overlaps
}

#[worker]
fn hammer_with_threads(lock: Lock, inside: BoundedSemaphore, count: Semaphore, n: u32) -> u32 {
    std::thread::scope(|s| {
        let other = s.spawn(|| hammer(&lock, &inside, &count, n));
        hammer(&lock, &inside, &count, n) + other.join().unwrap()
    })
}

#[test]
fn a_lock_excludes_processes_and_threads() {
    const N: u32 = 5_000;
    let lock = Lock::new().unwrap();
    let inside = BoundedSemaphore::new(1).unwrap();
    let count = Semaphore::new(0).unwrap();
    let mut ps: Vec<_> = (0..3)
        .map(|_| {
            let mut p = Process::new(
                hammer_with_threads,
                (lock.clone(), inside.clone(), count.clone(), N),
            );
            p.start().unwrap();
            p
        })
        .collect();
    let mine = hammer(&lock, &inside, &count, N);
    let overlaps: u32 = mine + ps.iter_mut().map(|p| p.result().unwrap()).sum::<u32>();
    assert_eq!(overlaps, 0, "two holders were inside at once");
    assert_eq!(count.value(), 7 * N);
}

#[worker]
fn critical(lock: Lock, log: Queue<u32>, id: u32) {
    let _held = lock.acquire().unwrap();
    log.put(id).unwrap();
    std::thread::sleep(Duration::from_millis(2));
    log.put(id).unwrap();
}

#[test]
fn five_processes_take_turns() {
    let lock = Lock::new().unwrap();
    let log = Queue::new().unwrap();
    let ps: Vec<_> = (0..5)
        .map(|id| {
            let mut p = Process::new(critical, (lock.clone(), log.clone(), id));
            p.start().unwrap();
            p
        })
        .collect();
    for p in &ps {
        assert_eq!(join(p), 0);
    }
    let entries: Vec<u32> = (0..10).map(|_| log.get_timeout(BOUND).unwrap()).collect();
    for pair in entries.chunks(2) {
        assert_eq!(
            pair[0], pair[1],
            "critical sections interleaved: {entries:?}"
        );
    }
}

#[test]
fn try_and_timeout_forms_answer_in_time() {
    let lock = Lock::new().unwrap();
    let _held = lock.acquire().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(
                lock.try_acquire(),
                Err(TryAcquireError::WouldBlock)
            ));
            let start = Instant::now();
            assert!(matches!(
                lock.acquire_timeout(Duration::ZERO),
                Err(AcquireTimeoutError::Timeout)
            ));
            assert!(start.elapsed() < Duration::from_millis(50));
            let start = Instant::now();
            assert!(matches!(
                lock.acquire_timeout(Duration::from_millis(30)),
                Err(AcquireTimeoutError::Timeout)
            ));
            let waited = start.elapsed();
            assert!(waited >= Duration::from_millis(30), "{waited:?}");
            assert!(waited < Duration::from_secs(5), "{waited:?}");
        });
    });
    // The holder itself: re-acquiring a Lock can never succeed, so the
    // non-blocking forms say so at once.
    assert!(matches!(
        lock.try_acquire(),
        Err(TryAcquireError::WouldBlock)
    ));
    let start = Instant::now();
    assert!(lock.acquire_timeout(Duration::from_secs(10)).is_err());
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
#[should_panic(expected = "already holds the lock")]
fn re_acquiring_a_lock_panics_instead_of_deadlocking() {
    let lock = Lock::new().unwrap();
    let _held = lock.acquire().unwrap();
    let _again = lock.acquire();
}

#[worker]
fn release_elsewhere(lock: Lock, rlock: RLock) -> (bool, bool) {
    (
        lock.release() == Err(NotOwner),
        rlock.release() == Err(NotOwner),
    )
}

#[test]
fn only_the_owner_releases() {
    let lock = Lock::new().unwrap();
    let rlock = RLock::new().unwrap();
    std::mem::forget(lock.acquire().unwrap());
    std::mem::forget(rlock.acquire().unwrap());
    // Another process, then another thread of this one.
    let mut p = Process::new(release_elsewhere, (lock.clone(), rlock.clone()));
    p.start().unwrap();
    assert_eq!(p.result().unwrap(), (true, true));
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(lock.release(), Err(NotOwner));
            assert_eq!(rlock.release(), Err(NotOwner));
            // Still held: the failed releases changed nothing.
            assert!(lock.try_acquire().is_err());
            assert!(rlock.try_acquire().is_err());
        });
    });
    assert_eq!(lock.release(), Ok(()));
    assert_eq!(rlock.release(), Ok(()));
    assert_eq!(lock.release(), Err(NotOwner));
    assert_eq!(rlock.release(), Err(NotOwner));
}

#[worker]
fn reenter(lock: RLock, depth: u32, entered: Event, go: Event) -> u32 {
    let guards: Vec<_> = (0..depth).map(|_| lock.acquire().unwrap()).collect();
    entered.set();
    assert!(go.wait_timeout(Duration::from_secs(60)));
    let held = guards.len() as u32;
    // Dropping all but one keeps it held; the last one frees it.
    drop(guards);
    held
}

#[test]
fn an_rlock_re_enters_for_its_owner_only() {
    let lock = RLock::new().unwrap();
    let (entered, go) = (Event::new().unwrap(), Event::new().unwrap());
    let mut p = Process::new(reenter, (lock.clone(), 50, entered.clone(), go.clone()));
    p.start().unwrap();
    assert!(entered.wait_timeout(BOUND));
    assert!(matches!(
        lock.try_acquire(),
        Err(TryAcquireError::WouldBlock)
    ));
    assert!(matches!(
        lock.acquire_timeout(Duration::from_millis(20)),
        Err(AcquireTimeoutError::Timeout)
    ));
    go.set();
    assert_eq!(p.result().unwrap(), 50);
    // Released all 50 levels: free for us, and re-entrant for us.
    let a = lock.acquire_timeout(BOUND).unwrap();
    let b = lock.try_acquire().unwrap();
    drop(a);
    std::thread::scope(|s| {
        s.spawn(|| assert!(lock.try_acquire().is_err()));
    });
    drop(b);
    std::thread::scope(|s| {
        s.spawn(|| assert!(lock.try_acquire().is_ok()));
    });
}

/// How a holder leaves the world while holding.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Death {
    Killed,
    Abort,
    Exit,
}

#[worker]
fn die_holding_lock(lock: Lock, held: Event, death: Death) {
    std::mem::forget(lock.acquire().unwrap());
    finish(held, death);
}

#[worker]
fn die_holding_rlock(lock: RLock, held: Event, death: Death) {
    std::mem::forget(lock.acquire().unwrap());
    std::mem::forget(lock.acquire().unwrap()); // at depth two
    finish(held, death);
}

fn finish(held: Event, death: Death) {
    held.set();
    match death {
        Death::Killed => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        Death::Abort => std::process::abort(),
        Death::Exit => std::process::exit(7),
    }
}

/// Starts `worker` and lets it die holding; returns once it is gone.
fn holder_dies<W: Worker<Args = (L, Event, Death)>, L>(worker: W, lock: L, death: Death) {
    let held = Event::new().unwrap();
    let mut p = Process::new(worker, (lock, held.clone(), death));
    p.start().unwrap();
    assert!(held.wait_timeout(BOUND), "the holder never took the lock");
    if let Death::Killed = death {
        p.kill().unwrap();
    }
    let code = join(&p);
    let expected = match death {
        Death::Killed => -9,
        Death::Abort => -6,
        Death::Exit => 7,
    };
    assert_eq!(code, expected);
}

fn expect_owner_died<G>(r: Result<G, AcquireTimeoutError<G>>, what: &str) -> G {
    match r {
        Err(AcquireTimeoutError::OwnerDied(e)) => e.into_guard(),
        Ok(_) => panic!("{what}: the dead owner was not reported"),
        Err(AcquireTimeoutError::Timeout) => {
            panic!("{what}: not acquired within {RECOVERY:?} of the holder's death")
        }
    }
}

#[test]
fn a_dead_holder_of_a_lock_is_reported_to_the_next_acquirer() {
    let lock = Lock::new().unwrap();
    for round in 0..100 {
        let death = [Death::Killed, Death::Killed, Death::Abort, Death::Exit][round % 4];
        holder_dies(die_holding_lock, lock.clone(), death);
        let guard = expect_owner_died(
            lock.acquire_timeout(RECOVERY),
            &format!("round {round} ({death:?})"),
        );
        drop(guard);
        // Reported once; the lock works as before.
        drop(lock.try_acquire().expect("the lock works again"));
    }
}

#[test]
fn a_dead_holder_of_an_rlock_is_reported_to_the_next_acquirer() {
    let lock = RLock::new().unwrap();
    for round in 0..60 {
        let death = [Death::Killed, Death::Abort, Death::Exit][round % 3];
        holder_dies(die_holding_rlock, lock.clone(), death);
        let guard = expect_owner_died(
            lock.acquire_timeout(RECOVERY),
            &format!("round {round} ({death:?})"),
        );
        // Held once, not at the dead holder's depth: one drop frees it.
        drop(guard);
        std::thread::scope(|s| {
            s.spawn(|| drop(lock.try_acquire().expect("free after one release")));
        });
    }
}

#[test]
fn a_waiter_blocked_on_the_lock_gets_it_when_the_holder_is_killed() {
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let mut p = Process::new(
        die_holding_lock,
        (lock.clone(), held.clone(), Death::Killed),
    );
    p.start().unwrap();
    assert!(held.wait_timeout(BOUND));
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let start = Instant::now();
            let r = lock.acquire().map(drop).map_err(|e| drop(e.into_guard()));
            (r.is_err(), start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(20));
        p.kill().unwrap();
        let (died, _) = waiter.join().unwrap();
        assert!(died, "the blocked waiter was not told the owner died");
    });
    assert_eq!(join(&p), -9);
}

#[derive(Serialize, Deserialize)]
struct Kit {
    locks: Vec<Lock>,
    rlock: Option<RLock>,
    flag: Event,
    units: (Semaphore, BoundedSemaphore),
    cond: Option<Condition<Lock>>,
    barriers: Vec<Barrier>,
}

#[worker]
fn use_kit(kit: Kit) -> usize {
    for lock in &kit.locks {
        drop(lock.acquire().unwrap());
    }
    drop(kit.rlock.unwrap().acquire().unwrap());
    kit.units.0.release();
    kit.units.1.acquire().forget();
    let cond = kit.cond.unwrap();
    drop(cond.acquire().unwrap());
    cond.notify_all();
    assert_eq!(kit.barriers[0].wait(), Ok(0));
    kit.flag.set();
    kit.locks.len()
}

#[test]
fn handles_travel_at_any_depth_and_refuse_other_serialization() {
    let kit = Kit {
        locks: vec![Lock::new().unwrap(), Lock::new().unwrap()],
        rlock: Some(RLock::new().unwrap()),
        flag: Event::new().unwrap(),
        units: (
            Semaphore::new(0).unwrap(),
            BoundedSemaphore::new(1).unwrap(),
        ),
        cond: Some(Condition::with_lock(Lock::new().unwrap()).unwrap()),
        barriers: vec![Barrier::new(1).unwrap()],
    };
    let (flag, units) = (kit.flag.clone(), kit.units.clone());
    let mut p = Process::new(use_kit, (kit,));
    p.start().unwrap();
    assert_eq!(p.result().unwrap(), 2);
    assert!(flag.is_set());
    assert_eq!((units.0.value(), units.1.value()), (1, 0));

    let q = Queue::<Lock>::new().unwrap();
    let err = q.put(Lock::new().unwrap()).unwrap_err();
    assert!(err.to_string().contains("can only be sent as"), "{err}");
    assert!(matches!(err, PutError::Encode(..)));
}

#[test]
fn owner_died_converts_to_the_crate_error() {
    fn acquire(lock: &Lock) -> multiproc::Result<LockGuard<'_>> {
        Ok(lock.acquire()?)
    }
    let lock = Lock::new().unwrap();
    holder_dies(die_holding_lock, lock.clone(), Death::Exit);
    assert!(matches!(acquire(&lock), Err(multiproc::Error::OwnerDied)));
    // Converting released the guard; the next acquire is clean.
    assert!(acquire(&lock).is_ok());
    let e: OwnerDied<()> = OwnerDied(());
    assert!(e.to_string().contains("died"));
}

/// A pseudo-random delay in `1..=max_ms` milliseconds, different each round.
fn jitter(round: u64, max_ms: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let x = (nanos ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(6364136223846793005);
    Duration::from_millis(1 + (x >> 33) % max_ms)
}

#[worker]
fn hammer_forever(lock: Lock, started: Event) {
    started.set();
    loop {
        let guard = lock.acquire().unwrap_or_else(OwnerDied::into_guard);
        std::hint::spin_loop();
        drop(guard);
    }
}

#[test]
fn holders_killed_at_random_moments_never_wedge_the_lock() {
    let lock = Lock::new().unwrap();
    let mut died = 0;
    for round in 0..30 {
        let started = Event::new().unwrap();
        let ps: Vec<_> = (0..2)
            .map(|_| {
                let mut p = Process::new(hammer_forever, (lock.clone(), started.clone()));
                p.start().unwrap();
                p
            })
            .collect();
        assert!(started.wait_timeout(BOUND));
        std::thread::sleep(jitter(round, 10));
        for p in &ps {
            p.kill().unwrap();
            assert_eq!(join(p), -9);
        }
        match lock.acquire_timeout(RECOVERY) {
            Ok(g) => drop(g),
            Err(AcquireTimeoutError::OwnerDied(e)) => {
                died += 1;
                drop(e.into_guard());
            }
            Err(AcquireTimeoutError::Timeout) => panic!("round {round}: the lock is wedged"),
        }
    }
    // Killed mid-loop, a hammering holder usually dies holding.
    assert!(died > 0, "no round caught a holder inside");
}

/// Mappings of lock memory in this process.
fn lock_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("multiproc-Lock") || l.contains("multiproc-RLock"))
        .count()
}

#[worker]
fn forget_then_drop_the_handles() -> (usize, usize, usize) {
    // glibc links every robust mutex a thread holds into that thread's list,
    // through the mutex itself: the mapping must outlive a forgotten guard.
    let lock = Lock::new().unwrap();
    std::mem::forget(lock.acquire().unwrap());
    drop(lock);
    let rlock = RLock::new().unwrap();
    std::mem::forget(rlock.acquire().unwrap());
    drop(rlock);
    let kept = lock_mappings();
    // Locks nobody holds are unmapped as usual.
    for _ in 0..100 {
        let other = Lock::new().unwrap();
        drop(other.acquire().unwrap());
        let held = other.acquire().unwrap();
        assert!(other.try_acquire().is_err());
        drop(held);
    }
    let after = lock_mappings();
    // A lock released before its handle goes is unmapped too.
    let released = Lock::new().unwrap();
    std::mem::forget(released.acquire().unwrap());
    released.release().unwrap();
    drop(released);
    (kept, after, lock_mappings())
}

#[test]
fn a_forgotten_guard_keeps_its_lock_mapped() {
    let mut p = Process::new(forget_then_drop_the_handles, ());
    p.start().unwrap();
    assert_eq!(p.result().unwrap(), (2, 2, 2));
}
