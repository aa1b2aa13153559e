//! The `tokio` feature: pool results, processes, queues, pipes, listeners
//! and events awaited from tokio, with the same values and the same typed
//! errors as their blocking twins.
//!
//! Every await is bounded by `tokio::time::timeout`, so a future that is
//! never woken fails its test instead of hanging it. The two tests that
//! count what the whole process holds (its threads, its children) run alone
//! in a copy of this binary, where no other test adds to the counts.

use futures_util::StreamExt;
use multiproc::{
    Client, Connection, Error, Event, GetError, JoinableQueue, Listener, Pipe, PipeReader,
    PipeWriter, Pool, Process, PutError, Queue, RecvError, SimpleQueue, worker,
};
use multiproc_tests::{child_pids, run_self, wait_until};
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;

/// The hang guard of every await.
const BOUND: Duration = Duration::from_secs(30);

/// How long a future that must still be pending is given to (wrongly)
/// complete.
const PENDING: Duration = Duration::from_millis(200);

const KEY: &[u8] = b"the async secret";

/// Awaits `f` for at most [`BOUND`]; panics naming `what` if it takes longer.
async fn bounded<F: IntoFuture>(what: &str, f: F) -> F::Output {
    match timeout(BOUND, f).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {BOUND:?}"),
    }
}

/// Asserts that `f` (pinned, so it can be awaited again afterwards) is
/// still pending after [`PENDING`].
async fn assert_pending<F: std::future::Future + Unpin>(what: &str, f: &mut F)
where
    F::Output: std::fmt::Debug,
{
    if let Ok(out) = timeout(PENDING, f).await {
        panic!("{what} completed early: {out:?}");
    }
}

fn pool(processes: usize) -> Pool {
    Pool::builder().processes(processes).build().unwrap()
}

fn start<W: multiproc::Worker>(worker: W, args: W::Args) -> Process<W> {
    multiproc_tests::start(worker, args)
}

/// Runs `body` on a current-thread runtime in a thread of its own, waiting
/// for it at most [`BOUND`]: a future that blocks the runtime's only thread
/// fails the test instead of hanging it (its timer could not fire).
fn on_current_thread<F>(what: &'static str, body: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(body());
        }));
        let _ = tx.send(outcome);
    });
    match rx.recv_timeout(BOUND) {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what} did not finish within {BOUND:?}: the runtime's thread is stuck"),
    }
}

/// This process's thread count, from `/proc/self/status`.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Runs the test `name` alone in a copy of this binary, with `mode` set in
/// its environment so that it runs its body there; asserts that it passed.
fn run_alone(name: &str, mode: &str) {
    let out = run_self(
        &["--exact", name, "--test-threads=1", "--nocapture"],
        &[(mode, "1")],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{name} did not run: {stdout}");
    // What it measured, for `--nocapture`.
    for line in stderr.lines().filter(|l| l.starts_with("threads: ")) {
        eprintln!("{line}");
    }
}

/// Whether this is the copy of the binary that runs `name` alone; if not,
/// runs that copy and asserts it passed (the caller then returns).
fn in_alone_copy(name: &str, mode: &str) -> bool {
    if std::env::var_os(mode).is_some() {
        return true;
    }
    run_alone(name, mode);
    false
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------
// Workers.

/// Dies of SIGKILL, as a worker killed from outside would.
fn sigkill_myself() {
    // SAFETY: raise only sends a signal to this process.
    unsafe { libc::raise(libc::SIGKILL) };
}

#[worker]
fn square(x: i64) -> i64 {
    x * x
}

#[worker]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[worker]
fn boom(x: u64) -> u64 {
    if x == 7 {
        panic!("boom at {x}");
    }
    x
}

#[worker]
fn die(how: String) -> u32 {
    match how.as_str() {
        "exit" => std::process::exit(3),
        "kill" => {
            sigkill_myself();
            unreachable!("SIGKILL returned")
        }
        _ => unreachable!(),
    }
}

/// Waits (a minute at most) for `go`, then puts `value` on `q`: a task whose
/// side effect the test can see, and can hold back until its await is gone.
#[worker]
fn put_when_set(go: Event, q: Queue<u64>, value: u64) -> u64 {
    assert!(go.wait_timeout(Duration::from_secs(60)), "never told to go");
    q.put(value).unwrap();
    value
}

#[worker]
fn exit_with(code: i32) {
    std::process::exit(code);
}

#[worker]
fn sleep_a_minute() {
    std::thread::sleep(Duration::from_secs(60));
}

#[worker]
fn answer() -> u64 {
    42
}

#[worker]
fn panic_in_process() -> u64 {
    panic!("the process gave up");
}

#[worker]
fn send_greeting(q: Queue<String>) {
    q.put("Hello from worker!".to_string()).unwrap();
}

#[worker]
fn die_before_put(_q: Queue<u64>) {
    sigkill_myself();
}

#[worker]
fn take_one(q: Queue<u64>) -> u64 {
    q.get_timeout(Duration::from_secs(60)).unwrap()
}

/// Takes `n` items, marking each done; returns their sum.
#[worker]
fn work_through(q: JoinableQueue<u64>, n: u64) -> u64 {
    let mut sum = 0;
    for _ in 0..n {
        sum += q.get_timeout(Duration::from_secs(60)).unwrap();
        q.task_done().unwrap();
    }
    sum
}

#[worker]
fn shut_down(q: Queue<u64>) {
    q.shutdown(false).unwrap();
}

/// Echoes each number from `inq` to `outq`, plus one, until it gets 0.
#[worker]
fn increment_simple(inq: SimpleQueue<u64>, outq: SimpleQueue<u64>) {
    loop {
        let x = inq.get().unwrap();
        if x == 0 {
            return;
        }
        outq.put(x + 1).unwrap();
    }
}

/// Answers every number with its double until the parent's end closes.
#[worker]
fn double_back(conn: Connection<u64>) -> u32 {
    let mut served = 0;
    while let Ok(x) = conn.recv() {
        conn.send(&(x * 2)).unwrap();
        served += 1;
    }
    served
}

#[worker]
fn die_holding(_conn: Connection<u64>) {
    sigkill_myself();
}

#[worker]
fn write_three(tx: PipeWriter<u64>) {
    for x in [1, 2, 3] {
        tx.send(&x).unwrap();
    }
}

#[worker]
fn sum_until_closed(rx: PipeReader<u64>) -> u64 {
    let mut sum = 0;
    while let Ok(x) = rx.recv() {
        sum += x;
    }
    sum
}

/// Connects to the parent's listener on `port`, sends a word and waits for
/// its answer.
#[worker]
fn connect_and_talk(port: u16, key: Vec<u8>) -> String {
    let conn: Connection<String> = Client::connect(("127.0.0.1", port), Some(&key)).unwrap();
    conn.send(&"hello".to_string()).unwrap();
    conn.recv_timeout(Duration::from_secs(60)).unwrap()
}

#[worker]
fn set_when_told(ev: Event, told: Event) {
    assert!(told.wait_timeout(Duration::from_secs(60)), "never told");
    ev.set();
}

#[worker]
fn set_all(events: Vec<Event>) {
    for ev in &events {
        ev.set();
    }
}

// ---------------------------------------------------------------------------
// Pool results.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_async_awaited_gives_the_value() {
    let pool = pool(2);
    let nine = bounded("apply_async", pool.apply_async(square, (3,)).unwrap()).await;
    assert_eq!(nine.unwrap(), 9);
    let slept = bounded("apply_async", pool.apply_async(nap, (20,)).unwrap()).await;
    assert_eq!(slept.unwrap(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_tasks_await_their_own_results_from_two_workers() {
    let pool = Arc::new(pool(2));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200i64 {
        let pool = pool.clone();
        tasks.spawn(async move {
            let result = pool.apply_async(square, (i,)).unwrap().await;
            (i, result)
        });
    }
    let mut seen = Vec::new();
    while let Some(joined) = bounded("the 200 tasks", tasks.join_next()).await {
        let (i, result) = joined.unwrap();
        assert_eq!(result.unwrap(), i * i, "task {i}");
        seen.push(i);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_async_awaited_gives_every_result_in_order_and_names_a_failed_input() {
    let pool = pool(2);
    let squares = bounded("map_async", pool.map_async(square, 0..100).unwrap()).await;
    assert_eq!(
        squares.unwrap(),
        (0..100).map(|x| x * x).collect::<Vec<_>>()
    );
    let empty = bounded("map_async", pool.map_async(square, Vec::new()).unwrap()).await;
    assert_eq!(empty.unwrap(), Vec::<i64>::new());
    match bounded("map_async", pool.map_async(boom, 0..10).unwrap()).await {
        Err(Error::TaskFailed { index, source }) => {
            assert_eq!(index, 7);
            assert!(matches!(*source, Error::Panicked { .. }), "{source:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_is_apply_awaited() {
    let pool = pool(2);
    assert_eq!(bounded("run", pool.run(square, (12,))).await.unwrap(), 144);
    match bounded("run", pool.run(boom, (7,))).await {
        Err(Error::Panicked { message, .. }) => assert!(message.contains("boom at 7"), "{message}"),
        other => panic!("{other:?}"),
    }
    // Several at once, from one task.
    let (a, b) = tokio::join!(pool.run(square, (2,)), pool.run(nap, (30,)));
    assert_eq!((a.unwrap(), b.unwrap()), (4, 30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_is_a_stream_in_input_order() {
    let pool = pool(2);
    let stream = pool.imap(square, (0..50).collect::<Vec<i64>>()).unwrap();
    let got: Vec<i64> = bounded(
        "imap",
        StreamExt::map(stream, Result::unwrap).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(got, (0..50).map(|x| x * x).collect::<Vec<_>>());
    // Slow first inputs do not reorder the results.
    let stream = pool.imap(nap, vec![200, 10, 10, 10]).unwrap();
    let got: Vec<u64> = bounded(
        "imap",
        StreamExt::map(stream, Result::unwrap).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(got, [200, 10, 10, 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_unordered_is_a_stream_of_every_result() {
    let pool = pool(2);
    let stream = pool.imap_unordered(square, 0..100i64).unwrap();
    let mut got: Vec<i64> = bounded(
        "imap_unordered",
        StreamExt::map(stream, Result::unwrap).collect::<Vec<_>>(),
    )
    .await;
    got.sort_unstable();
    assert_eq!(got, (0..100).map(|x| x * x).collect::<Vec<_>>());
    // A failing input is one error among the items; the rest still come.
    let mut stream = pool.imap_unordered(boom, 0..10).unwrap();
    let (mut ok, mut failed) = (Vec::new(), 0);
    while let Some(item) = bounded("imap_unordered", StreamExt::next(&mut stream)).await {
        match item {
            Ok(x) => ok.push(x),
            Err(Error::TaskFailed { index: 7, source }) => {
                assert!(matches!(*source, Error::Panicked { .. }), "{source:?}");
                failed += 1;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    ok.sort_unstable();
    assert_eq!(ok, [0, 1, 2, 3, 4, 5, 6, 8, 9]);
    assert_eq!(failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_panics_is_panicked() {
    let pool = pool(2);
    match bounded("apply_async", pool.apply_async(boom, (7,)).unwrap()).await {
        Err(Error::Panicked {
            pid,
            message,
            location,
            ..
        }) => {
            assert!(pid > 0);
            assert!(message.contains("boom at 7"), "{message}");
            assert!(location.is_some_and(|l| l.contains("tokio_async.rs")));
        }
        other => panic!("{other:?}"),
    }
    let after = bounded("apply_async", pool.apply_async(square, (5,)).unwrap()).await;
    assert_eq!(after.unwrap(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_exits_or_is_killed_while_awaited_is_the_same_error_as_get() {
    let pool = pool(2);
    let exited = bounded(
        "apply_async",
        pool.apply_async(die, ("exit".into(),)).unwrap(),
    )
    .await;
    match exited {
        Err(Error::Exited { pid, code: 3 }) => assert!(pid > 0),
        other => panic!("{other:?}"),
    }
    let killed = bounded(
        "apply_async",
        pool.apply_async(die, ("kill".into(),)).unwrap(),
    )
    .await;
    match killed {
        Err(Error::Killed { pid, signal: 9, .. }) => assert!(pid > 0),
        other => panic!("{other:?}"),
    }
    // The blocking twin says the same.
    match pool.apply_async(die, ("exit".into(),)).unwrap().get() {
        Err(Error::Exited { code: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
    // The pool goes on, with replacements.
    let after = bounded("map_async", pool.map_async(square, 0..20).unwrap()).await;
    assert_eq!(after.unwrap()[19], 361);
    assert!(wait_until(BOUND, || pool.pids().len() == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_result_future_cancels_the_wait_not_the_task() {
    let pool = pool(2);
    let go = Event::new().unwrap();
    let q = Queue::new().unwrap();
    let mut fut = Box::pin(
        pool.apply_async(put_when_set, (go.clone(), q.clone(), 5))
            .unwrap()
            .into_future(),
    );
    // Polled (so it registered its wait), then dropped.
    assert_pending("a task waiting for its event", &mut fut).await;
    drop(fut);
    go.set();
    assert_eq!(bounded("the task's put", q.get_async()).await.unwrap(), 5);
    // Never polled at all.
    drop(
        pool.apply_async(put_when_set, (go.clone(), q.clone(), 6))
            .unwrap(),
    );
    assert_eq!(bounded("the task's put", q.get_async()).await.unwrap(), 6);
    // The pool still works.
    let after = bounded("apply_async", pool.apply_async(square, (4,)).unwrap()).await;
    assert_eq!(after.unwrap(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_that_elapses_leaves_the_task_running() {
    let pool = pool(1);
    let go = Event::new().unwrap();
    let q = Queue::new().unwrap();
    let waited = timeout(
        PENDING,
        pool.apply_async(put_when_set, (go.clone(), q.clone(), 7))
            .unwrap(),
    )
    .await;
    assert!(waited.is_err(), "{waited:?}");
    go.set();
    assert_eq!(bounded("the task's put", q.get_async()).await.unwrap(), 7);
    // Its worker is free again: the one-process pool answers the next task.
    let after = bounded("apply_async", pool.apply_async(square, (6,)).unwrap()).await;
    assert_eq!(after.unwrap(), 36);
}

#[test]
fn results_are_awaited_on_a_current_thread_runtime_without_blocking_it() {
    on_current_thread("a current-thread runtime", || async {
        let pool = pool(2);
        let q = Queue::new().unwrap();
        let go = Event::new().unwrap();
        // The task waits for the event; the event is set by another future
        // of the same thread, which runs only if the await yields.
        let task = pool
            .apply_async(put_when_set, (go.clone(), q.clone(), 1))
            .unwrap();
        let setter = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            go.set();
        };
        let (result, ()) = tokio::join!(bounded("apply_async", task), setter);
        assert_eq!(result.unwrap(), 1);
        assert_eq!(bounded("get_async", q.get_async()).await.unwrap(), 1);
        let squares = bounded("map_async", pool.map_async(square, 0..10).unwrap()).await;
        assert_eq!(squares.unwrap()[9], 81);
    });
}

// ---------------------------------------------------------------------------
// Processes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_async_gives_the_exit_code() {
    let p = start(exit_with, (7,));
    assert_eq!(bounded("join_async", p.join_async()).await.unwrap(), 7);
    assert_eq!(p.exitcode(), Some(7));
    // Once exited, again at once.
    assert_eq!(bounded("join_async", p.join_async()).await.unwrap(), 7);
    let ok = start(answer, ());
    assert_eq!(bounded("join_async", ok.join_async()).await.unwrap(), 0);
    // Through a `ChildProcess` handle too.
    let other = start(exit_with, (5,));
    let handle = other.handle().unwrap();
    assert_eq!(bounded("join_async", handle.join_async()).await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_while_join_async_waits_is_minus_nine() {
    let p = start(sleep_a_minute, ());
    let join = p.join_async();
    tokio::pin!(join);
    assert_pending("join_async of a sleeping child", &mut join).await;
    p.kill().unwrap();
    assert_eq!(bounded("join_async", join).await.unwrap(), -9);
    assert!(!p.is_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_async_gives_the_value_or_the_panic() {
    let p = start(answer, ());
    assert_eq!(bounded("result_async", p.result_async()).await.unwrap(), 42);
    let p = start(panic_in_process, ());
    match bounded("result_async", p.result_async()).await {
        Err(Error::Panicked { message, .. }) => {
            assert!(message.contains("the process gave up"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let p = start(exit_with, (3,));
    match bounded("result_async", p.result_async()).await {
        Err(Error::Exited { code: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_processes_joined_concurrently() {
    let procs: Vec<_> = (0..8).map(|i| start(exit_with, (i,))).collect();
    let joins = procs.iter().map(|p| p.join_async());
    let codes = bounded("8 joins", futures_util::future::join_all(joins)).await;
    let codes: Vec<i32> = codes.into_iter().map(Result::unwrap).collect();
    assert_eq!(codes, (0..8).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------
// Queues.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_async_gets_what_a_child_puts() {
    let q = Queue::new().unwrap();
    let p = start(send_greeting, (q.clone(),));
    let got = bounded("get_async", q.get_async()).await.unwrap();
    assert_eq!(got, "Hello from worker!");
    assert_eq!(bounded("join_async", p.join_async()).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_dies_without_putting_leaves_get_async_waiting_not_hung() {
    let q: Queue<u64> = Queue::new().unwrap();
    let p = start(die_before_put, (q.clone(),));
    assert_eq!(bounded("join_async", p.join_async()).await.unwrap(), -9);
    let waited = timeout(PENDING, q.get_async()).await;
    assert!(waited.is_err(), "{waited:?}");
    // The queue still works.
    q.put(8).unwrap();
    assert_eq!(bounded("get_async", q.get_async()).await.unwrap(), 8);
    bounded("put_async", q.put_async(9)).await.unwrap();
    assert_eq!(q.get_timeout(BOUND).unwrap(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_async_on_a_full_queue_completes_once_a_consumer_takes_one() {
    let q = Queue::with_maxsize(1).unwrap();
    q.put(1).unwrap();
    assert!(q.full());
    let put = q.put_async(2);
    tokio::pin!(put);
    assert_pending("put_async on a full queue", &mut put).await;
    let consumer = start(take_one, (q.clone(),));
    bounded("put_async", put).await.unwrap();
    assert_eq!(
        bounded("result_async", consumer.result_async())
            .await
            .unwrap(),
        1
    );
    assert_eq!(bounded("get_async", q.get_async()).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joinable_queue_join_async_completes_after_every_item_is_done() {
    let q = JoinableQueue::new().unwrap();
    for x in 0..10 {
        bounded("put_async", q.put_async(x)).await.unwrap();
    }
    let join = q.join_async();
    tokio::pin!(join);
    assert_pending("join_async with items not done", &mut join).await;
    let worker = start(work_through, (q.clone(), 10));
    bounded("join_async", join).await.unwrap();
    assert!(q.empty());
    assert_eq!(
        bounded("result_async", worker.result_async())
            .await
            .unwrap(),
        45
    );
    // Nothing outstanding: at once.
    bounded("join_async", q.join_async()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_async_on_a_shut_down_queue_is_shut_down() {
    let q: Queue<u64> = Queue::new().unwrap();
    // A waiting get wakes when a child shuts the queue down.
    let get = q.get_async();
    tokio::pin!(get);
    assert_pending("get_async on an empty queue", &mut get).await;
    let p = start(shut_down, (q.clone(),));
    assert!(matches!(
        bounded("get_async", get).await,
        Err(GetError::ShutDown)
    ));
    assert_eq!(bounded("join_async", p.join_async()).await.unwrap(), 0);
    // And every later one at once; puts are refused, the item handed back.
    assert!(matches!(
        bounded("get_async", q.get_async()).await,
        Err(GetError::ShutDown)
    ));
    assert!(matches!(
        bounded("put_async", q.put_async(3)).await,
        Err(PutError::ShutDown(3))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shut_down_queue_gives_what_is_left_first() {
    let q = Queue::new().unwrap();
    q.put(1u64).unwrap();
    q.put(2).unwrap();
    q.shutdown(false).unwrap();
    assert_eq!(bounded("get_async", q.get_async()).await.unwrap(), 1);
    assert_eq!(bounded("get_async", q.get_async()).await.unwrap(), 2);
    assert!(matches!(
        bounded("get_async", q.get_async()).await,
        Err(GetError::ShutDown)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_queue_get_async_gets_what_a_child_puts() {
    let to_child = SimpleQueue::new().unwrap();
    let from_child = SimpleQueue::new().unwrap();
    let p = start(increment_simple, (to_child.clone(), from_child.clone()));
    for x in 1..=5u64 {
        to_child.put(x).unwrap();
        assert_eq!(
            bounded("get_async", from_child.get_async()).await.unwrap(),
            x + 1
        );
    }
    to_child.put(0).unwrap();
    assert_eq!(bounded("join_async", p.join_async()).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------
// Pipes and connections.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_carries_messages_both_ways_between_async_and_sync() {
    let (mine, theirs) = Pipe::<u64>::new().unwrap();
    let p = start(double_back, (theirs,));
    for x in [1, 21, 1000] {
        bounded("send_async", mine.send_async(&x)).await.unwrap();
        assert_eq!(
            bounded("recv_async", mine.recv_async()).await.unwrap(),
            x * 2
        );
    }
    drop(mine);
    assert_eq!(bounded("result_async", p.result_async()).await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_async_from_a_peer_that_dies_is_closed() {
    let (mine, theirs) = Pipe::<u64>::new().unwrap();
    let recv = mine.recv_async();
    tokio::pin!(recv);
    let p = start(die_holding, (theirs,)); // moved: released by `start`
    match bounded("recv_async", recv).await {
        Err(RecvError::Closed) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(bounded("join_async", p.join_async()).await.unwrap(), -9);
    // And a send to it is refused.
    assert!(bounded("send_async", mine.send_async(&1)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_pipes_are_awaited_at_either_end() {
    let (rx, tx) = Pipe::<u64>::one_way().unwrap();
    let p = start(write_three, (tx,));
    for x in [1, 2, 3] {
        assert_eq!(bounded("recv_async", rx.recv_async()).await.unwrap(), x);
    }
    assert!(matches!(
        bounded("recv_async", rx.recv_async()).await,
        Err(RecvError::Closed)
    ));
    assert_eq!(bounded("join_async", p.join_async()).await.unwrap(), 0);

    let (rx, tx) = Pipe::<u64>::one_way().unwrap();
    let p = start(sum_until_closed, (rx,));
    for x in 1..=10 {
        bounded("send_async", tx.send_async(&x)).await.unwrap();
    }
    drop(tx);
    assert_eq!(bounded("result_async", p.result_async()).await.unwrap(), 55);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_accepts_async_a_client_in_a_child_and_one_in_a_thread() {
    let listener = Listener::bind("127.0.0.1:0", Some(KEY)).unwrap();
    let multiproc::Address::Tcp(address) = listener.address().clone() else {
        panic!("{:?}", listener.address())
    };
    // A client in a child process.
    let p = start(connect_and_talk, (address.port(), KEY.to_vec()));
    let conn: Connection<String> = bounded("accept_async", listener.accept_async())
        .await
        .unwrap();
    assert_eq!(
        bounded("recv_async", conn.recv_async()).await.unwrap(),
        "hello"
    );
    bounded("send_async", conn.send_async(&"world".to_string()))
        .await
        .unwrap();
    assert_eq!(
        bounded("result_async", p.result_async()).await.unwrap(),
        "world"
    );
    // A client in a std thread, on a Unix socket this time.
    let name = format!("@multiproc-test-tokio-{}", std::process::id());
    let unix = Listener::bind(name.as_str(), Some(KEY)).unwrap();
    let address = unix.address().clone();
    let client = std::thread::spawn(move || {
        let conn: Connection<u32> = Client::connect(&address, Some(KEY)).unwrap();
        conn.send(&5).unwrap();
        conn.recv_timeout(Duration::from_secs(60)).unwrap()
    });
    let conn: Connection<u32> = bounded("accept_async", unix.accept_async()).await.unwrap();
    let x = bounded("recv_async", conn.recv_async()).await.unwrap();
    bounded("send_async", conn.send_async(&(x + 1)))
        .await
        .unwrap();
    assert_eq!(client.join().unwrap(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_wrong_key_fails_accept_async_and_the_next_one_works() {
    let listener = Listener::bind("127.0.0.1:0", Some(KEY)).unwrap();
    let address = listener.address().clone();
    let clients = std::thread::spawn(move || {
        let bad = Client::connect::<u8>(&address, Some(b"not the key".as_slice()));
        assert!(
            matches!(bad, Err(Error::AuthenticationFailed { .. })),
            "{bad:?}"
        );
        let good: Connection<u8> = Client::connect(&address, Some(KEY)).unwrap();
        good.send(&9).unwrap();
        good.recv_timeout(Duration::from_secs(60)).unwrap()
    });
    match bounded("accept_async", listener.accept_async::<u8>()).await {
        Err(Error::AuthenticationFailed { reason }) => {
            assert!(reason.contains("wrong"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let conn: Connection<u8> = bounded("accept_async", listener.accept_async())
        .await
        .unwrap();
    assert_eq!(bounded("recv_async", conn.recv_async()).await.unwrap(), 9);
    bounded("send_async", conn.send_async(&10)).await.unwrap();
    assert_eq!(clients.join().unwrap(), 10);
}

// ---------------------------------------------------------------------------
// Events.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_async_wakes_when_a_child_sets_the_event() {
    let ev = Event::new().unwrap();
    let told = Event::new().unwrap();
    let p = start(set_when_told, (ev.clone(), told.clone()));
    let wait = ev.wait_async();
    tokio::pin!(wait);
    assert_pending("wait_async on an event not set", &mut wait).await;
    told.set();
    bounded("wait_async", wait).await;
    assert!(ev.is_set());
    assert_eq!(bounded("join_async", p.join_async()).await.unwrap(), 0);
    // Set already: at once.
    bounded("wait_async", ev.wait_async()).await;
}

const MANY_WAITERS_MODE: &str = "MULTIPROC_TEST_TOKIO_MANY_WAITERS";

/// Fewer threads than this while 300 futures wait: no thread per waiter.
const THREAD_BOUND: usize = 50;

#[test]
fn three_hundred_event_waiters_do_not_need_three_hundred_threads() {
    if !in_alone_copy(
        "three_hundred_event_waiters_do_not_need_three_hundred_threads",
        MANY_WAITERS_MODE,
    ) {
        return;
    }
    let runtime = multi_thread_runtime();
    runtime.block_on(async {
        let before = threads();
        let events: Vec<Event> = (0..300).map(|_| Event::new().unwrap()).collect();
        let mut waiters = tokio::task::JoinSet::new();
        for (i, ev) in events.iter().enumerate() {
            let ev = ev.clone();
            waiters.spawn(async move {
                ev.wait_async().await;
                i
            });
        }
        // Every waiter has polled (and is waiting) once the runtime had
        // time to run them all.
        tokio::time::sleep(PENDING).await;
        assert_eq!(waiters.len(), 300);
        let during = threads();
        eprintln!("threads: {before} before, {during} with 300 waiters");
        assert!(
            during < THREAD_BOUND,
            "{during} threads with 300 waiters ({before} before)"
        );
        // Half set by a child, half here; every waiter wakes.
        let setter = start(set_all, (events[..150].to_vec(),));
        for ev in &events[150..] {
            ev.set();
        }
        let mut woken = Vec::new();
        while let Some(i) = bounded("300 waiters", waiters.join_next()).await {
            woken.push(i.unwrap());
        }
        woken.sort_unstable();
        assert_eq!(woken, (0..300).collect::<Vec<_>>());
        assert_eq!(bounded("join_async", setter.join_async()).await.unwrap(), 0);
    });
}

// ---------------------------------------------------------------------------
// A runtime shut down with futures pending.

const SHUTDOWN_MODE: &str = "MULTIPROC_TEST_TOKIO_SHUTDOWN";

#[test]
fn a_runtime_shut_down_with_futures_pending_leaves_nothing_behind() {
    if !in_alone_copy(
        "a_runtime_shut_down_with_futures_pending_leaves_nothing_behind",
        SHUTDOWN_MODE,
    ) {
        return;
    }
    let pool = Arc::new(pool(2));
    // A daemon: if this test fails, its exit does not wait for the sleeper.
    let mut sleeper = Process::new(sleep_a_minute, ());
    sleeper.set_daemon(true).unwrap();
    sleeper.start().unwrap();
    let sleeper = Arc::new(sleeper);
    let q: Queue<u64> = Queue::new().unwrap();
    let ev = Event::new().unwrap();
    let (mine, theirs) = Pipe::<u64>::new().unwrap();
    let runtime = multi_thread_runtime();
    let (long, join) = {
        let (pool, sleeper) = (pool.clone(), sleeper.clone());
        let long = runtime.spawn(async move { pool.apply_async(nap, (60_000,)).unwrap().await });
        let join = runtime.spawn(async move { sleeper.join_async().await });
        (long, join)
    };
    {
        let (q, ev) = (q.clone(), ev.clone());
        runtime.spawn(async move { q.get_async().await });
        runtime.spawn(async move { ev.wait_async().await });
        runtime.spawn(async move { mine.recv_async().await });
    }
    // Let every future poll (and register its wait) before the shutdown.
    runtime.block_on(async { tokio::time::sleep(PENDING).await });
    assert!(!long.is_finished() && !join.is_finished());
    runtime.shutdown_timeout(Duration::from_secs(1));

    // The handles are still good in blocking code...
    assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
    q.put(1).unwrap();
    assert_eq!(q.get_timeout(BOUND).unwrap(), 1);
    ev.set();
    assert!(ev.wait_timeout(BOUND));
    drop(theirs);
    // ...and in a new runtime.
    let again = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    again.block_on(async {
        let r = bounded("apply_async", pool.apply_async(square, (4,)).unwrap()).await;
        assert_eq!(r.unwrap(), 16);
        q.put(2).unwrap();
        assert_eq!(bounded("get_async", q.get_async()).await.unwrap(), 2);
    });
    drop(again);

    pool.terminate();
    sleeper.kill().unwrap();
    assert_eq!(sleeper.join_timeout(BOUND).unwrap(), Some(-9));
    assert!(
        wait_until(BOUND, || multiproc::active_children().is_empty()),
        "children left: {:?}",
        multiproc::active_children()
            .iter()
            .map(|c| (c.pid(), c.name().to_string()))
            .collect::<Vec<_>>()
    );
    // Reaped too: no zombie is left either.
    assert!(
        wait_until(BOUND, || child_pids().is_empty()),
        "{:?}",
        child_pids()
    );
}

// ---- Sends, semaphores, dropped puts --------------------------------------

#[worker]
fn read_all_after(rx: Connection<Vec<u8>>, ms: u64, n: u32) -> Vec<usize> {
    std::thread::sleep(Duration::from_millis(ms));
    (0..n).map(|_| rx.recv().unwrap().len()).collect()
}

#[worker]
fn release_after(sem: multiproc::Semaphore, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    sem.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_sends_from_async_and_sync_senders_never_interleave() {
    let (ours, theirs) = Pipe::<Vec<u8>>::new().unwrap();
    // The reader starts late: every send fills the socket's buffer and waits.
    let reader = start(read_all_after, (theirs, 100, 8));
    let ours = Arc::new(ours);
    let mut sends = Vec::new();
    for i in 0..4u8 {
        let conn = ours.clone();
        sends.push(tokio::spawn(async move {
            conn.send_async(&vec![i; 1 << 20]).await
        }));
    }
    let sync_conn = ours.clone();
    let sync_sends = tokio::task::spawn_blocking(move || {
        (0..4u8)
            .map(|i| sync_conn.send(&vec![10 + i; 300_000]))
            .collect::<Result<Vec<()>, _>>()
    });
    for send in sends {
        bounded("an async send", send).await.unwrap().unwrap();
    }
    bounded("the sync sends", sync_sends)
        .await
        .unwrap()
        .unwrap();
    let mut lens = bounded("the reader", reader.result_async()).await.unwrap();
    lens.sort();
    // Each message whole: a frame cut by another would not decode.
    assert_eq!(
        lens,
        [
            300_000,
            300_000,
            300_000,
            300_000,
            1 << 20,
            1 << 20,
            1 << 20,
            1 << 20
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_dropped_part_way_closes_the_end_and_the_peer_sees_no_message() {
    let (ours, theirs) = Pipe::<Vec<u8>>::new().unwrap();
    // Nobody reads: a 4 MiB send writes what the buffer takes, then waits.
    let sending = ours.send_async(&vec![1; 4 << 20]);
    assert!(
        timeout(PENDING, sending).await.is_err(),
        "the send cannot have finished"
    );
    // Half a frame went; this end is closed rather than left mid-message.
    assert!(ours.is_closed());
    assert!(matches!(
        ours.send(&vec![2]),
        Err(multiproc::SendError::Closed)
    ));
    drop(ours);
    // The cut frame is a typed error (truncated), then the end of the stream.
    match theirs.recv_timeout(BOUND) {
        Err(multiproc::RecvTimeoutError::Decode(multiproc::CodecError::Truncated { .. })) => {}
        other => panic!("the peer got {other:?}"),
    }
    assert!(matches!(
        theirs.recv_timeout(BOUND),
        Err(multiproc::RecvTimeoutError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_dropped_before_its_first_byte_sends_nothing() {
    let (ours, theirs) = Pipe::<u32>::new().unwrap();
    drop(ours.send_async(&1));
    ours.send(&2).unwrap();
    assert_eq!(theirs.recv_timeout(BOUND).unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_async_waits_for_a_release_in_a_child() {
    let sem = multiproc::Semaphore::new(0).unwrap();
    let child = start(release_after, (sem.clone(), 100));
    let mut acquiring = Box::pin(sem.acquire_async());
    let unit = bounded("acquire_async", &mut acquiring).await;
    assert_eq!(sem.value(), 0);
    drop(unit);
    assert_eq!(sem.value(), 1);
    assert_eq!(bounded("the child", child.join_async()).await.unwrap(), 0);
    // A dropped acquire takes nothing.
    let held = sem.acquire_async().await;
    let mut second = Box::pin(sem.acquire_async());
    assert!(timeout(PENDING, &mut second).await.is_err());
    drop(second);
    drop(held);
    assert_eq!(sem.value(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_async_dropped_while_full_puts_nothing_and_a_later_one_goes_in() {
    let q = Queue::<u64>::with_maxsize(1).unwrap();
    q.put(1).unwrap();
    let mut waiting = Box::pin(q.put_async(2));
    assert!(
        timeout(PENDING, &mut waiting).await.is_err(),
        "the queue is full"
    );
    drop(waiting);
    assert_eq!(q.get().unwrap(), 1);
    bounded("put_async", q.put_async(3)).await.unwrap();
    assert_eq!(q.get().unwrap(), 3);
    assert!(q.empty());
}

#[worker]
fn big_reply(len: usize) -> serde_bytes::ByteBuf {
    std::thread::sleep(Duration::from_millis(5));
    serde_bytes::ByteBuf::from(vec![7u8; len])
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

const DROPPED_FUTURES_MODE: &str = "MULTIPROC_TEST_DROPPED_FUTURES";

/// 100 results of 4 MiB each, their futures polled and dropped before the
/// replies came: if a dropped future kept its task's slot (and the reply
/// filed into it), the process would hold 400 MiB more afterwards.
#[test]
fn dropped_result_futures_do_not_keep_their_replies() {
    if !in_alone_copy(
        "dropped_result_futures_do_not_keep_their_replies",
        DROPPED_FUTURES_MODE,
    ) {
        return;
    }
    const LEN: usize = 4 << 20;
    let runtime = multi_thread_runtime();
    runtime.block_on(async {
        let pool = pool(2);
        // Once through, so that the pool's own buffers are grown.
        let first = bounded("a big reply", pool.apply_async(big_reply, (LEN,)).unwrap()).await;
        assert_eq!(first.unwrap().len(), LEN);
        let before = rss_bytes();
        for _ in 0..100 {
            let mut fut = Box::pin(pool.apply_async(big_reply, (LEN,)).unwrap().into_future());
            // Polled once (its waker is in the slot), then dropped.
            let _ = timeout(Duration::from_millis(1), &mut fut).await;
        }
        // Every task has run and its reply has come once the pool is joined.
        pool.close();
        pool.join().unwrap();
        let grown = rss_bytes().saturating_sub(before);
        eprintln!("rss grew by {} MiB", grown >> 20);
        assert!(grown < 100 << 20, "the process kept {} MiB", grown >> 20);
    });
}
