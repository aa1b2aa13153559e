//! `Process`: Python's semantics, and every way a child can fail.

use multiproc::{
    ChildProcess, Error, Process, Worker, active_children, cpu_count, current_process,
    parent_process, worker,
};
use multiproc_tests::join;
use multiproc_tests::{alive, wait_until};
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(30);

#[worker]
fn square(x: i64) -> i64 {
    x * x
}

#[worker]
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[worker]
fn panics(message: String) -> u8 {
    panic!("{message}");
}

#[worker]
fn exits(code: i32) {
    std::process::exit(code);
}

#[worker]
fn aborts() {
    std::process::abort();
}

#[worker]
fn whoami() -> (String, u32, Option<(u32, String)>) {
    let me = current_process();
    let parent = parent_process().map(|p| (p.pid(), p.name().to_string()));
    (me.name().to_string(), me.pid(), parent)
}

#[worker]
fn start_grandchild() -> (String, String, Option<(u32, String)>) {
    let mut p = Process::new(whoami, ());
    let given = p.name().to_string();
    p.start().unwrap();
    let (name, _, parent) = p.result().unwrap();
    (given, name, parent)
}

#[worker]
fn echo_bytes(data: Vec<u8>) -> Vec<u8> {
    data.into_iter().rev().collect()
}

#[worker]
fn child_fds() -> Vec<i32> {
    // Read the list first, then drop the directory's own descriptor from it.
    let listed: Vec<i32> = multiproc_tests::open_fds();
    listed
        .into_iter()
        .filter(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok())
        .collect()
}

#[test]
fn result_and_exitcode_of_a_plain_worker() {
    let mut p = Process::new(square, (12,));
    assert_eq!(p.pid(), None);
    assert_eq!(p.exitcode(), None);
    assert!(!p.is_alive());
    p.start().unwrap();
    assert!(p.pid().is_some());
    assert_eq!(join(&p), 0);
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
    assert_eq!(p.result().unwrap(), 144);
    assert!(matches!(p.result(), Err(Error::ResultTaken)));
    // Joining again is fine and gives the same code.
    assert_eq!(p.join().unwrap(), 0);
}

#[test]
fn a_second_start_is_an_error() {
    let mut p = Process::new(square, (2,));
    p.start().unwrap();
    assert!(matches!(p.start(), Err(Error::AlreadyStarted)));
    assert!(matches!(p.set_daemon(true), Err(Error::AlreadyStarted)));
    assert_eq!(join(&p), 0);
    assert!(matches!(p.start(), Err(Error::AlreadyStarted)));
}

#[test]
fn operations_before_start_are_errors() {
    let p = Process::new(square, (2,));
    assert!(matches!(p.join(), Err(Error::NotStarted)));
    assert!(matches!(
        p.join_timeout(Duration::ZERO),
        Err(Error::NotStarted)
    ));
    assert!(matches!(p.terminate(), Err(Error::NotStarted)));
    assert!(matches!(p.kill(), Err(Error::NotStarted)));
    assert!(matches!(p.result(), Err(Error::NotStarted)));
    assert!(p.handle().is_none());
}

#[test]
fn is_alive_while_running_then_not() {
    let mut p = Process::new(sleep_ms, (300,));
    p.start().unwrap();
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    assert_eq!(join(&p), 0);
    assert!(!p.is_alive());
    p.result().unwrap();
}

/// Run only as a subprocess by the next test: a child that panics, with
/// the child's stderr going where this process's goes.
#[test]
#[ignore = "helper, run by a_child_panic_prints_like_a_main_thread_panic"]
fn helper_panicking_child() {
    let mut p = Process::new(panics, ("the sky fell".to_string(),));
    p.start().unwrap();
    assert_eq!(join(&p), 1);
}

#[test]
fn a_child_panic_prints_like_a_main_thread_panic() {
    let out = multiproc_tests::run_self(
        &[
            "--exact",
            "helper_panicking_child",
            "--ignored",
            "--nocapture",
        ],
        &[("RUST_BACKTRACE", "0")],
        BOUND,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("thread 'main' ("), "{stderr}");
    assert!(
        stderr.contains("panicked at tests/tests/process.rs:"),
        "{stderr}"
    );
    assert!(stderr.contains("\nthe sky fell\n"), "{stderr}");
    assert!(!stderr.contains("<unnamed>"), "{stderr}");
}

#[test]
fn a_panic_gives_exitcode_1_and_the_message_and_location() {
    let mut p = Process::new(panics, ("the sky fell".to_string(),));
    p.env("RUST_BACKTRACE", "0"); // it panics on purpose
    p.start().unwrap();
    assert_eq!(join(&p), 1);
    let pid = p.pid().unwrap();
    match p.result() {
        Err(Error::Panicked {
            pid: reported,
            message,
            location,
            backtrace,
        }) => {
            // A process child prints its own panic (and trace) to stderr.
            assert_eq!(backtrace, None);
            assert_eq!(reported, pid);
            assert_eq!(message, "the sky fell");
            let location = location.expect("a location");
            assert!(location.contains("process.rs:"), "{location}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
}

#[test]
fn an_exit_call_gives_its_status() {
    let mut p = Process::new(exits, (3,));
    p.start().unwrap();
    assert_eq!(join(&p), 3);
    let pid = p.pid().unwrap();
    match p.result() {
        Err(Error::Exited { pid: p2, code: 3 }) => assert_eq!(p2, pid),
        other => panic!("expected Exited, got {other:?}"),
    }
}

#[test]
fn an_abort_is_signal_6() {
    let mut p = Process::new(aborts, ());
    p.start().unwrap();
    assert_eq!(join(&p), -libc::SIGABRT);
    assert!(matches!(p.result(), Err(Error::Killed { signal: 6, .. })));
}

#[test]
fn terminate_gives_minus_15_and_kill_minus_9() {
    let mut t = Process::new(sleep_ms, (60_000,));
    let mut k = Process::new(sleep_ms, (60_000,));
    t.start().unwrap();
    k.start().unwrap();
    t.terminate().unwrap();
    k.kill().unwrap();
    assert_eq!(join(&t), -15);
    assert_eq!(join(&k), -9);
    let err = t.result().unwrap_err();
    assert!(matches!(err, Error::Killed { signal: 15, .. }));
    assert!(err.to_string().contains("SIGTERM"), "{err}");
    assert!(matches!(k.result(), Err(Error::Killed { signal: 9, .. })));
    // Signalling an exited child is a no-op.
    t.terminate().unwrap();
    k.kill().unwrap();
}

#[test]
fn a_child_killed_before_reading_its_payload_is_reported() {
    // Killed right after spawn: almost always before its constructor has read
    // the payload. Either way the parent must see the death, not hang.
    let mut p = Process::new(echo_bytes, (vec![7u8; 8 << 20],));
    p.start().unwrap();
    p.kill().unwrap();
    assert_eq!(join(&p), -9);
    assert!(matches!(p.result(), Err(Error::Killed { signal: 9, .. })));
}

#[test]
fn join_timeout_on_a_child_that_never_ends() {
    let p = {
        let mut p = Process::new(sleep_ms, (u64::MAX,));
        p.start().unwrap();
        p
    };
    let t = Instant::now();
    assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), None);
    assert!(t.elapsed() < Duration::from_millis(100));
    let t = Instant::now();
    assert_eq!(p.join_timeout(Duration::from_millis(200)).unwrap(), None);
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert!(p.is_alive());
    p.kill().unwrap();
    assert_eq!(join(&p), -9);
}

/// A worker that is not registered in this binary: the trait implemented by
/// hand, which `#[worker]` users never do.
#[derive(Clone, Copy)]
struct Unregistered;

impl Worker for Unregistered {
    const NAME: &'static str = "no::such::worker";
    type Args = ();
    type Output = ();
    fn call(_: ()) {}
}

#[test]
fn a_worker_name_the_binary_does_not_have() {
    let mut p = Process::new(Unregistered, ());
    p.start().unwrap();
    assert_eq!(join(&p), 2);
    match p.result() {
        Err(Error::UnknownWorker { name }) => assert_eq!(name, "no::such::worker"),
        other => panic!("expected UnknownWorker, got {other:?}"),
    }
}

#[test]
fn names_follow_python() {
    assert_eq!(current_process().name(), "MainProcess");
    assert!(parent_process().is_none());
    let a = Process::new(square, (1,));
    let b = Process::new(square, (1,));
    let n = |p: &Process<square>| -> u32 { p.name()["Process-".len()..].parse().unwrap() };
    assert_eq!(n(&b), n(&a) + 1);

    let mut p = Process::new(whoami, ());
    p.start().unwrap();
    let (name, pid, parent) = p.result().unwrap();
    assert_eq!(name, p.name());
    assert_eq!(Some(pid), p.pid());
    assert_eq!(
        parent,
        Some((std::process::id(), "MainProcess".to_string()))
    );
}

#[test]
fn nested_children_are_named_n_colon_m() {
    let mut p = Process::new(start_grandchild, ());
    p.start().unwrap();
    let child_name = p.name().to_string();
    let (given, reported, parent) = p.result().unwrap();
    assert_eq!(given, format!("{child_name}:1"));
    assert_eq!(reported, given);
    assert_eq!(parent.map(|(_, n)| n), Some(child_name));
}

#[test]
fn a_custom_name_reaches_the_child() {
    let mut p = Process::new(whoami, ());
    p.set_name("fetcher");
    p.start().unwrap();
    assert_eq!(p.result().unwrap().0, "fetcher");
}

#[test]
fn active_children_lists_running_ones_only() {
    let mut long = Process::new(sleep_ms, (60_000,));
    long.start().unwrap();
    let mut short = Process::new(square, (3,));
    short.start().unwrap();
    join(&short);
    let pids: Vec<u32> = active_children().iter().map(ChildProcess::pid).collect();
    assert!(pids.contains(&long.pid().unwrap()));
    assert!(!pids.contains(&short.pid().unwrap()));
    let handle = long.handle().unwrap();
    assert_eq!(handle.name(), long.name());
    assert!(handle.is_alive());
    handle.kill().unwrap();
    assert_eq!(handle.join_timeout(BOUND).unwrap(), Some(-9));
    assert_eq!(long.exitcode(), Some(-9));
    assert!(
        !active_children()
            .iter()
            .any(|c| c.pid() == long.pid().unwrap())
    );
}

#[test]
fn cpu_count_is_available_parallelism() {
    assert_eq!(
        cpu_count(),
        std::thread::available_parallelism().unwrap().get()
    );
}

#[test]
fn large_arguments_and_results_cross_both_ways() {
    // Larger than any socket buffer: the parent must read while the child writes.
    let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut p = Process::new(echo_bytes, (data.clone(),));
    p.start().unwrap();
    let back = p.result().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back.iter().rev().eq(data.iter()));
}

#[test]
fn a_child_holds_only_stdio_and_its_socket() {
    // A descriptor this process leaves inheritable must still not leak.
    let leaky = nix::unistd::dup(std::io::stderr()).unwrap();
    let mut p = Process::new(child_fds, ());
    p.start().unwrap();
    let fds = p.result().unwrap();
    drop(leaky);
    assert_eq!(fds, vec![0, 1, 2, 3]);
}

#[test]
fn a_child_started_from_a_finished_thread_lives_on() {
    // PR_SET_PDEATHSIG follows the creating thread; the spawner thread keeps
    // children alive after the thread that asked for them is gone.
    let p = std::thread::spawn(|| {
        let mut p = Process::new(sleep_ms, (300,));
        p.start().unwrap();
        p
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(alive(p.pid().unwrap()));
    assert_eq!(join(&p), 0);
    p.result().unwrap();
}

#[test]
fn joins_from_several_threads_agree() {
    let mut p = Process::new(sleep_ms, (200,));
    p.start().unwrap();
    let handle = p.handle().unwrap();
    let codes: Vec<i32> = (0..4)
        .map(|_| {
            let h = handle.clone();
            std::thread::spawn(move || h.join_timeout(BOUND).unwrap().unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(codes, vec![0; 4]);
    assert!(wait_until(BOUND, || !p.is_alive()));
    p.result().unwrap();
}

/// `result` borrows the process as `name` does: both in one expression,
/// and from several threads at once, where exactly one gets the value.
#[test]
fn result_reads_beside_name_and_is_taken_once_across_threads() {
    let mut p = Process::new(square, (4,));
    p.start().unwrap();
    assert_eq!(join(&p), 0);
    let (name, result) = (p.name(), p.result());
    assert!(name.starts_with("Process-"));
    assert_eq!(result.unwrap(), 16);

    let mut p = Process::new(square, (5,));
    p.start().unwrap();
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(|| p.result())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let values: Vec<_> = outcomes.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(values, [&25]);
    let taken = outcomes
        .iter()
        .filter(|r| matches!(r, Err(Error::ResultTaken)))
        .count();
    assert_eq!(taken, 3);
}
