//! `Pool`: Python's API, results in order, errors that name their input.

use multiproc::{Error, Pool, Queue, current_process, worker};
use std::cell::Cell;
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);

fn pool(processes: usize) -> Pool {
    Pool::builder().processes(processes).build().unwrap()
}

#[worker]
fn square(x: i64) -> i64 {
    x * x
}

#[worker]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[worker]
fn whoami() -> (String, bool, u32) {
    let me = current_process();
    (me.name().to_string(), me.daemon(), me.pid())
}

#[worker]
fn fail_on(x: u64, bad: u64) -> u64 {
    if x == bad {
        panic!("input {x} is bad");
    }
    x
}

#[worker]
fn fail_on_one(x: u64) -> u64 {
    if x == 7 {
        panic!("seven");
    }
    x
}

#[worker]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Set by `keep_queue`, the initializer, in each worker (Python's idiom of
/// an initializer that sets a global).
static NOTES: std::sync::OnceLock<Queue<u64>> = std::sync::OnceLock::new();

#[worker]
fn keep_queue(q: Queue<u64>) {
    let _ = NOTES.set(q);
}

/// Notes `x` in the initializer's queue; fails on 13.
#[worker]
fn note(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(x % 3));
    if x == 13 {
        panic!("thirteen");
    }
    NOTES.get().unwrap().put(x).unwrap();
    x
}

#[test]
fn the_guides_fifth_program() {
    let pool = Pool::new().unwrap();
    assert_eq!(pool.processes(), multiproc::cpu_count());
    assert_eq!(
        pool.map(square, [1, 2, 3, 4, 5]).unwrap(),
        [1, 4, 9, 16, 25]
    );
}

#[test]
fn workers_are_daemons_named_pool_worker() {
    let pool = pool(2);
    let pids = pool.pids();
    assert_eq!(pids.len(), 2);
    for _ in 0..10 {
        let (name, daemon, pid) = pool.apply(whoami, ()).unwrap();
        assert!(name.starts_with("PoolWorker-"), "{name}");
        assert!(daemon);
        assert!(pids.contains(&pid));
    }
    let names: Vec<String> = multiproc::active_children()
        .into_iter()
        .filter(|c| pids.contains(&c.pid()))
        .map(|c| {
            assert!(c.daemon());
            c.name().to_string()
        })
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.iter().all(|n| n.starts_with("PoolWorker-")));
}

#[test]
fn map_and_starmap_keep_input_order_for_any_chunk_size() {
    let pool = pool(3);
    let expected: Vec<i64> = (0..10_000).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..10_000).unwrap(), expected);
    for chunksize in [1, 7, 10_000, 50_000] {
        assert_eq!(
            pool.chunksize(chunksize).map(square, 0..10_000).unwrap(),
            expected
        );
        let sums = pool
            .chunksize(chunksize)
            .starmap(add, (0..1000).map(|i| (i, 2 * i)))
            .unwrap();
        assert_eq!(sums, (0..1000).map(|i| 3 * i).collect::<Vec<_>>());
    }
    assert_eq!(pool.map(square, Vec::new()).unwrap(), Vec::<i64>::new());
    assert_eq!(
        pool.starmap_async(add, [(1, 1)]).unwrap().get().unwrap(),
        [2]
    );
}

#[test]
fn map_reports_the_first_failed_input_after_every_task_ran() {
    let pool = pool(2);
    let err = pool
        .chunksize(1)
        .starmap(fail_on, (0..40).map(|i| (i, 3)))
        .unwrap_err();
    match err {
        Error::TaskFailed { index, source } => {
            assert_eq!(index, 3);
            match *source {
                Error::Panicked {
                    message, location, ..
                } => {
                    assert_eq!(message, "input 3 is bad");
                    assert!(location.unwrap().contains("pool.rs"));
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    // Every task finished before map returned: none is left queued.
    let start = Instant::now();
    assert_eq!(pool.map(fail_on_one, [1, 2]).unwrap(), [1, 2]);
    assert!(start.elapsed() < Duration::from_secs(5));
    // With default chunks, the index is still the failing input's own.
    match pool.map(fail_on_one, 0..100) {
        Err(Error::TaskFailed { index: 7, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn map_waits_for_all_tasks_before_reporting() {
    let q = Queue::new().unwrap();
    let pool = Pool::builder()
        .processes(2)
        .initializer(keep_queue, (q.clone(),))
        .build()
        .unwrap();
    match pool.chunksize(1).map(note, 0..30) {
        Err(Error::TaskFailed { index: 13, .. }) => {}
        other => panic!("{other:?}"),
    }
    // Every other input already ran: nothing arrives after map returned.
    let mut seen: Vec<u64> = std::iter::from_fn(|| q.try_get().ok()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..30).filter(|&i| i != 13).collect::<Vec<_>>());
}

#[test]
fn a_panicking_task_fails_alone_and_its_worker_lives_on() {
    let pool = pool(1);
    let (_, _, pid) = pool.apply(whoami, ()).unwrap();
    for _ in 0..3 {
        match pool.apply(fail_on, (5, 5)) {
            Err(Error::Panicked {
                pid: p, message, ..
            }) => {
                assert_eq!(p, pid);
                assert_eq!(message, "input 5 is bad");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(pool.apply(whoami, ()).unwrap().2, pid);
    assert_eq!(pool.apply(add, (2, 3)).unwrap(), 5);
}

#[test]
fn imap_yields_in_order_and_goes_on_after_a_failed_item() {
    let pool = pool(2);
    let results: Vec<_> = pool.imap(fail_on_one, 0..20).unwrap().collect();
    assert_eq!(results.len(), 20);
    for (i, r) in results.into_iter().enumerate() {
        match (i, r) {
            (7, Err(Error::TaskFailed { index: 7, source })) => {
                assert!(matches!(*source, Error::Panicked { .. }));
            }
            (i, Ok(v)) => assert_eq!(v, i as u64),
            (i, other) => panic!("{i}: {other:?}"),
        }
    }
    // Chunked: still one result per input, in order.
    let results: Vec<_> = pool
        .chunksize(4)
        .imap(fail_on_one, 0..20)
        .unwrap()
        .collect();
    assert_eq!(results.len(), 20);
    assert!(matches!(
        results[7],
        Err(Error::TaskFailed { index: 7, .. })
    ));
    assert!(matches!(results[6], Ok(6)));
    assert!(matches!(results[8], Ok(8)));
}

#[test]
fn imap_unordered_yields_as_tasks_finish_and_names_failed_inputs() {
    let pool = pool(2);
    let order: Vec<u64> = pool
        .imap_unordered(nap, [600, 10, 20, 30])
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(order.last(), Some(&600));
    let mut seen: Vec<u64> = Vec::new();
    let mut failed = Vec::new();
    for r in pool.imap_unordered(fail_on_one, 0..50).unwrap() {
        match r {
            Ok(v) => seen.push(v),
            Err(Error::TaskFailed { index, .. }) => failed.push(index),
            Err(e) => panic!("{e:?}"),
        }
    }
    seen.sort_unstable();
    assert_eq!(failed, [7]);
    assert_eq!(seen.len(), 49);
    assert!(!seen.contains(&7));
}

#[test]
fn imap_is_lazy_and_bounded_over_an_endless_input() {
    let pool = pool(2);
    let pulled = Cell::new(0u64);
    let inputs = (0..).inspect(|_| pulled.set(pulled.get() + 1));
    let first: Vec<i64> = pool
        .imap(square, inputs)
        .unwrap()
        .take(1000)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first[999], 999 * 999);
    assert!(pulled.get() < 5_000, "pulled {}", pulled.get());
    // Unordered too.
    let pulled = Cell::new(0u64);
    let inputs = (0..).inspect(|_| pulled.set(pulled.get() + 1));
    let n = pool
        .imap_unordered(square, inputs)
        .unwrap()
        .take(100)
        .count();
    assert_eq!(n, 100);
    assert!(pulled.get() < 5_000, "pulled {}", pulled.get());
    // The pool still works after the iterators were dropped mid-way.
    assert_eq!(pool.apply(square, (12,)).unwrap(), 144);
}

#[test]
fn imap_is_exact_size_when_its_input_is() {
    let pool = pool(2);
    let mut it = pool.imap(square, vec![1, 2, 3, 4]).unwrap();
    assert_eq!(it.len(), 4);
    assert_eq!(it.next().unwrap().unwrap(), 1);
    assert_eq!(it.len(), 3);
    assert_eq!(it.by_ref().count(), 3);
    assert_eq!(it.len(), 0);
    assert!(it.next().is_none());
    let mut it = pool
        .chunksize(3)
        .imap_unordered(square, vec![0; 10])
        .unwrap();
    assert_eq!(it.len(), 10);
    it.next();
    assert_eq!(it.len(), 9);
}

#[test]
fn an_input_that_panics_ends_imap_after_the_results_before_it() {
    let pool = pool(2);
    for chunksize in [1, 3] {
        let inputs = (0..10).inspect(|&i| assert!(i != 6, "input ran dry"));
        let results: Vec<_> = pool
            .chunksize(chunksize)
            .imap(square, inputs)
            .unwrap()
            .collect();
        assert_eq!(results.len(), 7, "chunksize {chunksize}");
        for (i, r) in results[..6].iter().enumerate() {
            assert_eq!(*r.as_ref().unwrap(), (i * i) as i64);
        }
        match &results[6] {
            Err(Error::InputPanicked { index: 6, message }) => assert_eq!(message, "input ran dry"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn async_results_wait_time_out_and_report_success() {
    let pool = pool(1);
    let mut slow = pool.apply_async(nap, (300,)).unwrap();
    assert!(!slow.ready());
    assert_eq!(slow.successful(), None);
    assert!(matches!(
        slow.get_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert!(!slow.wait_timeout(Duration::from_millis(1)));
    slow.wait();
    assert!(slow.ready());
    assert_eq!(slow.successful(), Some(true));
    assert_eq!(slow.get_timeout(BOUND).unwrap(), 300);
    assert!(matches!(slow.get(), Err(Error::ResultTaken)));

    let bad = pool.apply_async(fail_on, (1, 1)).unwrap();
    assert!(bad.wait_timeout(BOUND));
    assert_eq!(bad.successful(), Some(false));
    assert!(matches!(bad.get(), Err(Error::Panicked { .. })));

    let mapped = pool.map_async(fail_on_one, 0..10).unwrap();
    mapped.wait();
    assert_eq!(mapped.successful(), Some(false));
    let mapped = pool.map_async(square, 0..10).unwrap();
    assert!(mapped.wait_timeout(BOUND));
    assert_eq!(mapped.successful(), Some(true));
    assert_eq!(mapped.get().unwrap()[9], 81);
}

#[test]
fn close_lets_queued_work_finish_and_refuses_new_work() {
    let pool = pool(2);
    assert!(matches!(pool.join(), Err(Error::PoolRunning)));
    let queued: Vec<_> = (0..20)
        .map(|i| pool.apply_async(nap, (i,)).unwrap())
        .collect();
    let mut lazy = pool.imap(square, 0..100_000).unwrap();
    assert!(lazy.next().unwrap().is_ok());
    let pids = pool.pids();
    pool.close();
    assert!(matches!(pool.apply(square, (1,)), Err(Error::PoolClosed)));
    assert!(matches!(pool.map(square, [1]), Err(Error::PoolClosed)));
    assert!(matches!(pool.imap(square, [1]), Err(Error::PoolClosed)));
    assert!(matches!(
        pool.apply_async(square, (1,)),
        Err(Error::PoolClosed)
    ));
    pool.join().unwrap();
    pool.join().unwrap();
    for (i, r) in queued.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), i as u64);
    }
    // The lazy imap's prefetched items finished; it then reports the closed pool.
    let rest: Vec<_> = lazy.by_ref().collect();
    assert!(rest.iter().any(|r| r.is_ok()));
    assert!(matches!(
        rest.last(),
        Some(Err(Error::TaskFailed { source, .. })) if matches!(**source, Error::PoolClosed)
    ));
    for pid in pids {
        assert!(!multiproc_tests::alive(pid), "worker {pid} outlived join");
    }
}

#[test]
fn terminate_is_prompt_with_ten_thousand_long_tasks_queued() {
    let pool = pool(2);
    let long: Vec<_> = (0..10_000)
        .map(|_| pool.apply_async(nap, (60_000,)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let pids = pool.pids();
    let start = Instant::now();
    pool.terminate();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    for r in long {
        assert!(matches!(r.get(), Err(Error::PoolTerminated)));
    }
    for pid in pids {
        assert!(!multiproc_tests::alive(pid));
    }
    assert!(matches!(pool.apply(square, (1,)), Err(Error::PoolClosed)));
    pool.join().unwrap();
}

#[worker]
fn announce(q: Queue<(String, u32)>) {
    let me = current_process();
    q.put((me.name().to_string(), me.pid())).unwrap();
}

#[test]
fn the_initializer_runs_in_every_worker_and_every_replacement() {
    let q = Queue::new().unwrap();
    let pool = Pool::builder()
        .processes(1)
        .initializer(announce, (q.clone(),))
        .max_tasks_per_child(2)
        .build()
        .unwrap();
    let pids: Vec<u32> = (0..10).map(|_| pool.apply(whoami, ()).unwrap().2).collect();
    let mut distinct = pids.clone();
    distinct.dedup();
    // Two tasks per worker, then a new process.
    assert_eq!(distinct.len(), 5, "{pids:?}");
    let announced: Vec<(String, u32)> = (0..5).map(|_| q.get_timeout(BOUND).unwrap()).collect();
    for ((name, pid), expected) in announced.iter().zip(&distinct) {
        assert!(name.starts_with("PoolWorker-"));
        assert_eq!(pid, expected);
    }
    let names: Vec<&String> = announced.iter().map(|(n, _)| n).collect();
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(
        unique.len(),
        5,
        "each replacement has a new name: {names:?}"
    );
}

#[worker]
fn broken_init(x: u32) {
    panic!("cannot initialize with {x}");
}

#[test]
fn a_failing_initializer_breaks_the_pool_with_its_reason() {
    let pool = Pool::builder()
        .processes(2)
        .env("RUST_BACKTRACE", "0") // it panics on purpose
        .initializer(broken_init, (42,))
        .build()
        .unwrap();
    match pool.apply(square, (3,)) {
        Err(Error::PoolBroken { reason }) => {
            assert!(reason.contains("cannot initialize with 42"), "{reason}");
            assert!(reason.contains("PoolWorker-"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        pool.map(square, [1, 2]),
        Err(Error::PoolBroken { .. })
    ));
}

#[test]
fn bad_options_are_errors() {
    assert!(matches!(
        Pool::builder().processes(0).build(),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Pool::builder().max_tasks_per_child(0).build(),
        Err(Error::InvalidArgument(_))
    ));
    let pool = pool(1);
    let zero = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.chunksize(0)));
    assert!(zero.is_err());
}

#[worker]
fn blob(n: usize) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(vec![7u8; n])
}

#[worker]
fn measure(bytes: serde_bytes::ByteBuf) -> usize {
    bytes.iter().map(|&b| b as usize).sum()
}

#[test]
fn large_arguments_and_results_cross_in_both_directions() {
    let pool = pool(2);
    let big = pool.apply(blob, (16 << 20,)).unwrap();
    assert_eq!(big.len(), 16 << 20);
    assert_eq!(
        pool.apply(measure, (serde_bytes::ByteBuf::from(vec![1u8; 16 << 20]),))
            .unwrap(),
        16 << 20
    );
    let sizes = pool.map(blob, [1 << 20, 3 << 20, 10, 0]).unwrap();
    assert_eq!(
        sizes.iter().map(|b| b.len()).collect::<Vec<_>>(),
        [1 << 20, 3 << 20, 10, 0]
    );
}

#[test]
fn many_threads_share_one_pool() {
    let pool = pool(2);
    std::thread::scope(|s| {
        for t in 0..8i64 {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..200 {
                    assert_eq!(pool.apply(add, (t, i)).unwrap(), t + i);
                }
                let v = pool.map(square, 0..500).unwrap();
                assert_eq!(v[499], 499 * 499);
                let r: Vec<_> = (0..50)
                    .map(|i| pool.apply_async(square, (i,)).unwrap())
                    .collect();
                for (i, r) in r.into_iter().enumerate() {
                    assert_eq!(r.get().unwrap(), (i * i) as i64);
                }
            });
        }
    });
}

#[test]
fn dropping_the_pool_terminates_its_workers() {
    let pool = pool(2);
    let pending: Vec<_> = (0..4)
        .map(|_| pool.apply_async(nap, (60_000,)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let pids = pool.pids();
    drop(pool);
    for pid in pids {
        assert!(!multiproc_tests::alive(pid));
    }
    for r in pending {
        assert!(matches!(r.get(), Err(Error::PoolTerminated)));
    }
}

/// Delays the second worker to start, for the test below.
#[worker]
fn second_starts_late(started: multiproc::Value<u32>) {
    let order = {
        let mut n = started.lock().unwrap();
        *n += 1;
        *n
    };
    if order == 2 {
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[worker]
fn pid_after_a_while(_: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(250));
    current_process().pid()
}

#[test]
fn a_worker_that_starts_late_still_gets_its_share() {
    // A tiny first task teaches the pool that tasks are short, so it would
    // queue many on one worker; but the second worker, still starting, must
    // be left its share: a task written to one worker cannot move.
    let started = multiproc::Value::new(0u32).unwrap();
    let pool = Pool::builder()
        .processes(2)
        .initializer(second_starts_late, (started,))
        .build()
        .unwrap();
    pool.map(square, [1]).unwrap();
    let pids = pool.map(pid_after_a_while, 0..12).unwrap();
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 2, "one worker ran every task: {pids:?}");
}

/// A task's panic is its result: the worker prints nothing (Python's pool
/// prints nothing when a task raises), and the trace the child's
/// `RUST_BACKTRACE` asked for travels in the error instead.
#[test]
fn a_task_panic_prints_nothing_in_the_worker_and_its_trace_travels_in_the_error() {
    use std::io::Read;
    for wanted in ["1", "0"] {
        let pool = multiproc::Pool::builder()
            .processes(1)
            .env("RUST_BACKTRACE", wanted)
            .stderr(multiproc::Stdio::piped())
            .build()
            .unwrap();
        let mut stderr = pool.take_stderr().unwrap();
        match pool.apply(fail_on, (5, 5)) {
            Err(Error::Panicked {
                message, backtrace, ..
            }) => {
                assert_eq!(message, "input 5 is bad");
                match (wanted, backtrace) {
                    ("1", Some(trace)) => assert!(trace.contains("fail_on"), "{trace}"),
                    ("0", None) => {}
                    (_, other) => panic!("RUST_BACKTRACE={wanted}: {other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(pool.apply(add, (2, 3)).unwrap(), 5);
        pool.close();
        pool.join().unwrap();
        let mut printed = String::new();
        stderr.read_to_string(&mut printed).unwrap();
        assert!(
            !printed.contains("panicked"),
            "the worker printed: {printed}"
        );
    }
}
