//! `Condition` across processes and threads: exact notify counts, oldest
//! first, nothing remembered, dead waiters skipped, dead lock holders
//! reported.

use multiproc::{
    AcquireTimeoutError, Condition, ConditionLock, Event, GetTimeoutError, Lock, Process, Queue,
    Semaphore, worker,
};
use multiproc_tests::join;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(60);
/// How long to watch for a wake-up that must not happen.
const QUIET: Duration = Duration::from_millis(150);
const RECOVERY: Duration = Duration::from_millis(100);

/// Registers under the lock (so once the notifier holds the lock, this
/// waiter is in `wait`), then reports its id when woken.
fn wait_once<L: ConditionLock>(
    cond: &Condition<L>,
    registered: &Semaphore,
    woke: &Queue<u32>,
    id: u32,
) {
    let guard = cond.acquire().unwrap();
    registered.release();
    let (_guard, r) = cond.wait_timeout(guard, BOUND).unwrap();
    assert!(!r.timed_out(), "waiter {id} was never notified");
    woke.put(id).unwrap();
}

#[worker]
fn waiter(cond: Condition<Lock>, registered: Semaphore, woke: Queue<u32>, id: u32) {
    wait_once(&cond, &registered, &woke, id);
}

#[worker]
fn two_waiting_threads(cond: Condition<Lock>, registered: Semaphore, woke: Queue<u32>, id: u32) {
    std::thread::scope(|s| {
        s.spawn(|| wait_once(&cond, &registered, &woke, id));
        wait_once(&cond, &registered, &woke, id + 1);
    });
}

/// Waits until `n` waiters have registered, then until they are all in
/// `wait` (they registered while holding the lock).
fn until_waiting<L: ConditionLock>(cond: &Condition<L>, registered: &Semaphore, n: u32) {
    for _ in 0..n {
        registered
            .acquire_timeout(BOUND)
            .expect("waiter registered")
            .forget();
    }
    drop(cond.acquire_timeout(BOUND).unwrap());
}

fn take(woke: &Queue<u32>, n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| woke.get_timeout(BOUND).expect("a woken waiter"))
        .collect()
}

fn nothing_more(woke: &Queue<u32>) {
    match woke.get_timeout(QUIET) {
        Err(GetTimeoutError::Timeout) => {}
        other => panic!("an extra waiter woke: {other:?}"),
    }
}

#[test]
fn notify_wakes_exactly_n_of_mixed_processes_and_threads() {
    for round in 0..5 {
        let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
        let registered = Semaphore::new(0).unwrap();
        let woke = Queue::new().unwrap();
        let ps: Vec<_> = (0..2)
            .map(|i| {
                let args = (cond.clone(), registered.clone(), woke.clone(), 10 * (i + 1));
                let mut p = Process::new(two_waiting_threads, args);
                p.start().unwrap();
                p
            })
            .collect();
        std::thread::scope(|s| {
            for id in 0..2 {
                let (cond, registered, woke) = (&cond, &registered, &woke);
                s.spawn(move || wait_once(cond, registered, woke, 100 + id));
            }
            until_waiting(&cond, &registered, 6);
            assert_eq!(cond.notify(2), 2, "round {round}");
            let mut all = take(&woke, 2);
            nothing_more(&woke);
            assert_eq!(cond.notify(3), 3);
            all.extend(take(&woke, 3));
            nothing_more(&woke);
            assert_eq!(cond.notify(5), 1, "only one was left");
            all.extend(take(&woke, 1));
            all.sort_unstable();
            assert_eq!(all, [10, 11, 20, 21, 100, 101]);
            assert_eq!(cond.notify_all(), 0);
        });
        for p in &ps {
            assert_eq!(join(p), 0);
        }
    }
}

#[test]
fn a_notify_with_nobody_waiting_is_not_remembered() {
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let registered = Semaphore::new(0).unwrap();
    let woke = Queue::new().unwrap();
    assert_eq!(cond.notify(1), 0);
    assert_eq!(cond.notify_all(), 0);
    let mut p = Process::new(waiter, (cond.clone(), registered.clone(), woke.clone(), 1));
    p.start().unwrap();
    until_waiting(&cond, &registered, 1);
    nothing_more(&woke);
    assert_eq!(cond.notify(1), 1);
    assert_eq!(take(&woke, 1), [1]);
    assert_eq!(join(&p), 0);
}

#[test]
fn the_longest_waiting_is_woken_first() {
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let registered = Semaphore::new(0).unwrap();
    let woke = Queue::new().unwrap();
    std::thread::scope(|s| {
        let mut ps = Vec::new();
        // Alternate child processes and threads of this one, in a known order.
        for id in 0..6 {
            if id % 2 == 0 {
                let mut p =
                    Process::new(waiter, (cond.clone(), registered.clone(), woke.clone(), id));
                p.start().unwrap();
                ps.push(p);
            } else {
                let (cond, registered, woke) = (&cond, &registered, &woke);
                s.spawn(move || wait_once(cond, registered, woke, id));
            }
            until_waiting(&cond, &registered, 1);
        }
        for id in 0..6 {
            assert_eq!(cond.notify(1), 1);
            assert_eq!(take(&woke, 1), [id]);
        }
        for p in &ps {
            assert_eq!(join(p), 0);
        }
    });
}

#[test]
fn a_killed_waiter_never_swallows_a_notification() {
    for round in 0..15 {
        let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
        let registered = Semaphore::new(0).unwrap();
        let woke = Queue::new().unwrap();
        let ps: Vec<_> = (0..3)
            .map(|id| {
                let mut p =
                    Process::new(waiter, (cond.clone(), registered.clone(), woke.clone(), id));
                p.start().unwrap();
                // In order, so the victim can be the oldest.
                until_waiting(&cond, &registered, 1);
                p
            })
            .collect();
        let victim = round % 3;
        ps[victim].kill().unwrap();
        assert_eq!(join(&ps[victim]), -9);
        let live: Vec<u32> = (0..3).filter(|&id| id != victim as u32).collect();
        assert_eq!(cond.notify(1), 1, "round {round}");
        assert_eq!(take(&woke, 1), [live[0]]);
        assert_eq!(cond.notify(1), 1);
        assert_eq!(take(&woke, 1), [live[1]]);
        assert_eq!(cond.notify(1), 0, "the dead waiter is not counted");
        for (i, p) in ps.iter().enumerate() {
            if i != victim {
                assert_eq!(join(p), 0);
            }
        }
    }
}

#[worker]
fn die_holding_condition_lock(cond: Condition<Lock>, rcond: Condition, held: Event) {
    std::mem::forget(cond.acquire().unwrap());
    std::mem::forget(rcond.acquire().unwrap());
    held.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_killed_holder_of_the_lock_under_a_condition_is_reported() {
    for round in 0..50 {
        let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
        let rcond = Condition::new().unwrap();
        let held = Event::new().unwrap();
        let p = {
            let mut p = Process::new(
                die_holding_condition_lock,
                (cond.clone(), rcond.clone(), held.clone()),
            );
            p.start().unwrap();
            p
        };
        assert!(held.wait_timeout(BOUND));
        p.kill().unwrap();
        assert_eq!(join(&p), -9);
        match cond.acquire_timeout(RECOVERY) {
            Err(AcquireTimeoutError::OwnerDied(e)) => drop(e.into_guard()),
            other => panic!("round {round}: {other:?}"),
        }
        match rcond.acquire_timeout(RECOVERY) {
            Err(AcquireTimeoutError::OwnerDied(e)) => drop(e.into_guard()),
            other => panic!("round {round}: {other:?}"),
        }
        // And the conditions still work.
        let g = cond.acquire().unwrap();
        let (_g, r) = cond.wait_timeout(g, Duration::ZERO).unwrap();
        assert!(r.timed_out());
    }
}

#[worker]
fn notify_then_die_holding(cond: Condition<Lock>) {
    let guard = cond.acquire().unwrap();
    cond.notify(1);
    std::mem::forget(guard);
    std::process::abort();
}

#[test]
fn a_wait_reports_a_holder_that_died_before_it_could_take_the_lock_back() {
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let guard = cond.acquire().unwrap();
    let mut p = Process::new(notify_then_die_holding, (cond.clone(),));
    p.start().unwrap();
    // The child can only take the lock once this wait has given it up.
    match cond.wait_timeout(guard, BOUND) {
        Err(e) => {
            let (_guard, r) = e.into_guard();
            assert!(!r.timed_out(), "it was notified before the holder died");
        }
        Ok(_) => panic!("the dead holder was not reported"),
    }
    assert_eq!(join(&p), -6);
}

#[worker]
fn count_up(cond: Condition, state: Semaphore, n: u32) {
    for _ in 0..n {
        let _g = cond.acquire().unwrap();
        state.release();
        cond.notify_all();
    }
}

#[test]
fn wait_for_a_predicate_set_by_another_process() {
    let cond = Condition::new().unwrap();
    let state = Semaphore::new(0).unwrap();
    let guard = cond.acquire().unwrap();
    let mut p = Process::new(count_up, (cond.clone(), state.clone(), 50));
    p.start().unwrap();
    let (guard, r) = cond
        .wait_for_timeout(guard, BOUND, || state.value() >= 50)
        .unwrap();
    assert!(!r.timed_out());
    drop(guard);
    assert_eq!(join(&p), 0);
    let guard = cond.acquire().unwrap();
    let guard = cond.wait_for(guard, || state.value() == 50).unwrap();
    let (_g, r) = cond
        .wait_for_timeout(guard, Duration::from_millis(20), || state.value() > 50)
        .unwrap();
    assert!(r.timed_out());
}

#[worker]
fn take_when_free(cond: Condition, free: Event) {
    let _g = cond.acquire_timeout(Duration::from_secs(60)).unwrap();
    free.set();
    cond.notify_all();
}

#[test]
fn waiting_gives_up_every_level_of_an_rlock_and_takes_them_back() {
    let cond = Condition::new().unwrap();
    let outer = cond.acquire().unwrap();
    let inner = cond.acquire().unwrap();
    let free = Event::new().unwrap();
    let mut p = Process::new(take_when_free, (cond.clone(), free.clone()));
    p.start().unwrap();
    // While this thread waits (holding two levels), the child gets the lock.
    let (inner, r) = cond
        .wait_for_timeout(inner, BOUND, || free.is_set())
        .unwrap();
    assert!(!r.timed_out());
    assert_eq!(join(&p), 0);
    // Both levels are back: one drop leaves it held.
    drop(inner);
    std::thread::scope(|s| {
        s.spawn(|| assert!(cond.try_acquire().is_err()));
    });
    drop(outer);
    std::thread::scope(|s| {
        s.spawn(|| assert!(cond.try_acquire().is_ok()));
    });
}

#[test]
#[should_panic(expected = "not a guard of this condition's lock")]
fn waiting_with_another_locks_guard_panics() {
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let other = Lock::new().unwrap();
    let _ = cond.wait_timeout(other.acquire().unwrap(), Duration::ZERO);
}

#[worker]
fn wait_with_separately_passed_lock(lock: Lock, cond: Condition<Lock>, ready: Event) -> bool {
    let guard = lock.acquire().unwrap();
    ready.set();
    let (_g, r) = cond.wait_timeout(guard, Duration::from_secs(60)).unwrap();
    !r.timed_out()
}

#[test]
fn a_guard_of_another_handle_to_the_same_lock_is_accepted() {
    let lock = Lock::new().unwrap();
    let cond = Condition::with_lock(lock.clone()).unwrap();
    let ready = Event::new().unwrap();
    // The child maps the lock twice: once on its own, once inside `cond`.
    let mut p = Process::new(
        wait_with_separately_passed_lock,
        (lock.clone(), cond.clone(), ready.clone()),
    );
    p.start().unwrap();
    assert!(ready.wait_timeout(BOUND));
    drop(lock.acquire_timeout(BOUND).unwrap()); // the child is waiting
    assert_eq!(cond.notify(1), 1);
    assert!(p.result().unwrap());
}

#[test]
fn many_rounds_of_notify_one_between_threads_lose_nothing() {
    // A producer/consumer hand-off: each item is announced under the lock
    // with notify(1); the consumer must see every one.
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let items = Semaphore::new(0).unwrap();
    std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            for _ in 0..2_000 {
                let g = cond.acquire().unwrap();
                let (_g, r) = cond
                    .wait_for_timeout(g, BOUND, || items.value() > 0)
                    .unwrap();
                assert!(!r.timed_out());
                items.try_acquire().unwrap().forget();
            }
        });
        for _ in 0..2_000 {
            let _g = cond.acquire().unwrap();
            items.release();
            cond.notify(1);
        }
        consumer.join().unwrap();
    });
    assert_eq!(items.value(), 0);
}

/// Threads waiting at once in the crowd tests: more than a table of 1,024
/// slots could hold, so these fail if waiters beyond them are lost.
const CROWD_STACK: usize = 64 * 1024;
/// The crowd tests run one at a time: together they would start 3,500
/// threads on a machine whose limit is shared with other users.
static CROWD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Starts `n` threads of `wait_once` with ids `first..first + n` in scope `s`.
fn spawn_crowd<'s, 'e: 's>(
    s: &'s std::thread::Scope<'s, 'e>,
    (cond, registered, woke): (&'e Condition<Lock>, &'e Semaphore, &'e Queue<u32>),
    first: u32,
    n: u32,
) {
    for id in first..first + n {
        std::thread::Builder::new()
            .stack_size(CROWD_STACK)
            .spawn_scoped(s, move || wait_once(cond, registered, woke, id))
            .expect("spawn a waiting thread");
    }
}

#[worker]
fn crowd(cond: Condition<Lock>, registered: Semaphore, woke: Queue<u32>, first: u32, n: u32) {
    std::thread::scope(|s| spawn_crowd(s, (&cond, &registered, &woke), first, n));
}

/// Takes `n` reported ids and sorts them.
fn take_sorted(woke: &Queue<u32>, n: usize) -> Vec<u32> {
    let mut ids = take(woke, n);
    ids.sort_unstable();
    ids
}

#[test]
fn notify_all_wakes_every_one_of_2000_waiters_in_two_processes() {
    let _one = CROWD.lock().unwrap_or_else(|e| e.into_inner());
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let registered = Semaphore::new(0).unwrap();
    let woke = Queue::new().unwrap();
    let mut p = Process::new(
        crowd,
        (cond.clone(), registered.clone(), woke.clone(), 0, 1_000),
    );
    p.start().unwrap();
    std::thread::scope(|s| {
        spawn_crowd(s, (&cond, &registered, &woke), 1_000, 1_000);
        until_waiting(&cond, &registered, 2_000);
        assert_eq!(cond.notify_all(), 2_000);
        // Each of the 2,000 returned from `wait` notified, and once.
        assert_eq!(take_sorted(&woke, 2_000), (0..2_000).collect::<Vec<_>>());
        assert_eq!(cond.notify_all(), 0, "nobody is left waiting");
    });
    assert_eq!(join(&p), 0);
    nothing_more(&woke);
}

#[test]
fn notify_n_beyond_the_first_1024_wakes_exactly_n_oldest_first() {
    let _one = CROWD.lock().unwrap_or_else(|e| e.into_inner());
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let registered = Semaphore::new(0).unwrap();
    let woke = Queue::new().unwrap();
    // Three generations, each all waiting before the next starts: 700
    // threads of a child (ids 0..700), then 500 of this process
    // (1000..1500), then 300 more (2000..2300).
    let mut p = Process::new(
        crowd,
        (cond.clone(), registered.clone(), woke.clone(), 0, 700),
    );
    p.start().unwrap();
    until_waiting(&cond, &registered, 700);
    std::thread::scope(|s| {
        let handles = (&cond, &registered, &woke);
        spawn_crowd(s, handles, 1_000, 500);
        until_waiting(&cond, &registered, 500);
        spawn_crowd(s, handles, 2_000, 300);
        until_waiting(&cond, &registered, 300);
        assert_eq!(cond.notify(1_200), 1_200);
        let oldest: Vec<u32> = (0..700).chain(1_000..1_500).collect();
        assert_eq!(take_sorted(&woke, 1_200), oldest);
        nothing_more(&woke);
        assert_eq!(cond.notify(1), 1);
        let mut last = take(&woke, 1);
        assert!((2_000..2_300).contains(&last[0]), "{last:?}");
        nothing_more(&woke);
        assert_eq!(cond.notify_all(), 299);
        last.extend(take(&woke, 299));
        last.sort_unstable();
        assert_eq!(last, (2_000..2_300).collect::<Vec<_>>());
    });
    assert_eq!(join(&p), 0);
    nothing_more(&woke);
}

#[test]
fn killed_waiters_beyond_the_first_1024_never_swallow_a_notification() {
    let _one = CROWD.lock().unwrap_or_else(|e| e.into_inner());
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let registered = Semaphore::new(0).unwrap();
    let woke = Queue::new().unwrap();
    // 1,100 waiters of a child (so the child grew the table), killed.
    let mut p = Process::new(
        crowd,
        (cond.clone(), registered.clone(), woke.clone(), 0, 1_100),
    );
    p.start().unwrap();
    until_waiting(&cond, &registered, 1_100);
    p.kill().unwrap();
    assert_eq!(join(&p), -9);
    std::thread::scope(|s| {
        // Three live ones, in order, in slots the dead left.
        for id in 5_000..5_003 {
            let (cond, registered, woke) = (&cond, &registered, &woke);
            s.spawn(move || wait_once(cond, registered, woke, id));
            until_waiting(cond, registered, 1);
        }
        assert_eq!(cond.notify(1), 1);
        assert_eq!(take(&woke, 1), [5_000]);
        assert_eq!(cond.notify(2), 2);
        assert_eq!(take_sorted(&woke, 2), [5_001, 5_002]);
        assert_eq!(cond.notify_all(), 0, "the dead are not counted");
    });
    nothing_more(&woke);
}
