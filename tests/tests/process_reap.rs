//! What `start()` does before it spawns. It reaps children that have
//! finished, as Python's `start()` does (`multiprocessing.process._cleanup`):
//! fire-and-forget starts (start, drop, never join) run in constant
//! descriptors and leave no zombies, and a handle still held to a reaped
//! child keeps its exit code and result. And it refuses a name too long for
//! the spawn header, instead of starting a child that rejects its header.

use multiproc::{Error, Process, active_children, current_process, parent_process, worker};
use multiproc_tests::{alive, child_pids, exists, open_fds, run_self, wait_until};
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);

#[worker]
fn nothing() {}

#[worker]
fn double(x: u64) -> u64 {
    x * 2
}

#[worker]
fn exit_with(code: i32) {
    std::process::exit(code);
}

#[worker]
fn panics(x: u32) {
    panic!("reaped with {x}");
}

#[worker]
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Whether this process has a child `pid` that is a zombie (exited, not
/// reaped).
fn zombie(pid: u32) -> bool {
    exists(pid) && !alive(pid) && child_pids().contains(&pid)
}

/// Starts (and joins) one more process: its `start()` reaps whatever has
/// finished.
fn start_another() {
    let mut p = Process::new(nothing, ());
    p.start().unwrap();
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
}

/// Waits until `pid` has exited (a zombie, or already reaped by a start in a
/// test running alongside), then starts another process and checks that
/// `pid` is no longer an unreaped child of ours.
fn reaped_by_the_next_start(pid: u32) {
    assert!(
        wait_until(BOUND, || !alive(pid)),
        "child {pid} did not exit"
    );
    start_another();
    assert!(
        !zombie(pid) && !child_pids().contains(&pid),
        "child {pid} was not reaped by the next start"
    );
}

#[test]
fn a_process_reaped_by_a_later_start_still_joins_with_its_exitcode_and_result() {
    let mut returns = Process::new(double, (21,));
    returns.start().unwrap();
    let mut exits = Process::new(exit_with, (7,));
    exits.start().unwrap();
    let mut panicking = Process::new(panics, (5,));
    panicking.env("RUST_BACKTRACE", "0"); // it panics on purpose
    panicking.start().unwrap();
    for pid in [returns.pid(), exits.pid(), panicking.pid()] {
        reaped_by_the_next_start(pid.unwrap());
    }

    // Reaped, but what they said and how they ended is kept for the handles.
    assert!(!returns.is_alive());
    assert_eq!(returns.exitcode(), Some(0));
    assert_eq!(returns.join().unwrap(), 0);
    assert_eq!(returns.result().unwrap(), 42);
    assert!(matches!(returns.result(), Err(Error::ResultTaken)));

    assert_eq!(exits.join().unwrap(), 7);
    match exits.result() {
        Err(Error::Exited { code, pid }) => {
            assert_eq!((code, Some(pid)), (7, exits.pid()));
        }
        other => panic!("unexpected {other:?}"),
    }

    assert_eq!(panicking.join_timeout(Duration::ZERO).unwrap(), Some(1));
    match panicking.result() {
        Err(Error::Panicked { message, .. }) => assert_eq!(message, "reaped with 5"),
        other => panic!("unexpected {other:?}"),
    }
    // Signalling a reaped child is a no-op, not a signal to a recycled pid.
    returns.kill().unwrap();
    assert_eq!(returns.exitcode(), Some(0));
}

#[test]
fn a_dropped_child_is_reaped_once_it_exits_and_a_kept_handle_sees_its_exit() {
    let mut p = Process::new(sleep_ms, (200,));
    p.start().unwrap();
    let pid = p.pid().unwrap();
    let handle = active_children()
        .into_iter()
        .find(|c| c.pid() == pid)
        .expect("a running child is active");
    drop(p);
    assert!(handle.is_alive());

    reaped_by_the_next_start(pid);
    assert_eq!(handle.exitcode(), Some(0));
    assert!(!handle.is_alive());
    assert_eq!(handle.join().unwrap(), 0);
    assert_eq!(
        handle.join_timeout(Duration::from_millis(1)).unwrap(),
        Some(0)
    );
    assert!(active_children().iter().all(|c| c.pid() != pid));
}

#[test]
fn a_child_whose_handles_were_all_dropped_is_reaped_by_the_next_start() {
    let mut p = Process::new(sleep_ms, (100,));
    p.start().unwrap();
    let pid = p.pid().unwrap();
    drop(p);
    assert!(active_children().iter().any(|c| c.pid() == pid));
    reaped_by_the_next_start(pid);
    assert!(active_children().iter().all(|c| c.pid() != pid));
}

const STARTS: usize = 20_000;
const NOFILE: u64 = 256;

/// Run only as a subprocess by the next test (so the limit and the counts are
/// this process's alone): `STARTS` fire-and-forget starts under
/// `RLIMIT_NOFILE` `NOFILE`, then prints what is left.
#[test]
#[ignore = "helper, run by fire_and_forget_starts_run_in_constant_descriptors_and_leave_no_zombies"]
fn helper_fire_and_forget() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let starts: usize = std::env::var("REAP_STARTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(STARTS);
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, NOFILE.min(hard), hard).unwrap();
    let before = open_fds().len();
    let began = Instant::now();
    let mut most_children = 0;
    for i in 0..starts {
        let mut p = Process::new(nothing, ());
        if let Err(e) = p.start() {
            panic!("start number {i} failed: {e}");
        }
        drop(p);
        if i % 256 == 0 {
            most_children = most_children.max(child_pids().len());
        }
    }
    let elapsed = began.elapsed();
    let zombies = child_pids().into_iter().filter(|&p| !alive(p)).count();
    println!(
        "REAP starts={starts} ms={} zombies={zombies} children={} most_children={most_children} fds_before={before} fds_after={}",
        elapsed.as_millis(),
        child_pids().len(),
        open_fds().len(),
    );
}

#[test]
fn fire_and_forget_starts_run_in_constant_descriptors_and_leave_no_zombies() {
    let out = run_self(
        &[
            "--exact",
            "helper_fire_and_forget",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ],
        &[],
        Duration::from_secs(600),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        // libtest may print `test helper_... ... ` on the same line first.
        .find_map(|l| l.split_once("REAP ").map(|(_, report)| report))
        .expect("the helper reported");
    eprintln!("{line}");
    let field = |name: &str| -> usize {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    // Only children still running or finished since the last start are
    // left: a few, not thousands.
    assert!(field("zombies") <= 64, "{line}");
    assert!(field("children") <= 64, "{line}");
    // Two descriptors per such child at most, plus the start in flight.
    assert!(
        field("fds_after") <= field("fds_before") + 2 * 64 + 3,
        "{line}"
    );
}

/// The longest name `start()` accepts (64 KiB).
const MAX_NAME: usize = 64 << 10;

/// This child's name, and what its own child, named `name`, saw as its own
/// and its parent's name.
#[worker]
fn names_below(name: String) -> (String, (String, Option<String>)) {
    let mut p = Process::new(own_names, ());
    p.set_name(name);
    p.start().unwrap();
    (current_process().name().to_string(), p.result().unwrap())
}

#[worker]
fn own_names() -> (String, Option<String>) {
    let parent = parent_process().map(|p| p.name().to_string());
    (current_process().name().to_string(), parent)
}

/// Found by probing: a name of 1 MiB started (`Ok`), then the child took its
/// own spawn header for a stranger's and exited 2.
#[test]
fn a_name_over_64_kib_is_refused_at_start_with_the_limit() {
    for len in [MAX_NAME + 1, 1 << 20, 4 << 20] {
        let mut p = Process::new(nothing, ());
        p.set_name("n".repeat(len));
        match p.start() {
            Err(Error::InvalidArgument(why)) => {
                assert!(why.contains("name"), "{why}");
                assert!(why.contains(&format!("{len} bytes")), "{why}");
                assert!(why.contains("at most 65536 bytes"), "{why}");
            }
            other => panic!("a {len}-byte name: {other:?}"),
        }
        assert_eq!(p.pid(), None);
        assert!(p.handle().is_none());
        // Nothing started, so it can still start with a shorter name.
        p.set_name("short again");
        p.start().unwrap();
        assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    }
}

#[test]
fn names_of_up_to_64_kib_reach_the_child_and_its_children() {
    let at_limit = "a".repeat(MAX_NAME);
    let just_under = "b".repeat(MAX_NAME - 1);
    let mut p = Process::new(names_below, (just_under.clone(),));
    p.set_name(at_limit.clone());
    p.start().unwrap();
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    // The grandchild's header carries both names, 128 KiB together.
    let (child, (grandchild, parent)) = p.result().unwrap();
    assert!(child == at_limit, "the child's name was not the one given");
    assert!(
        grandchild == just_under,
        "the grandchild's name was not the one given"
    );
    assert!(
        parent.as_ref() == Some(&at_limit),
        "the grandchild's parent's name"
    );
}
