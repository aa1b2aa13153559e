//! Records of the `log` crate emitted in children reach the parent's logger
//! (feature `log`): `env_logger`, set up in the test process only, with a
//! captured writer.
//!
//! The logger is global to the process and the tests run as its threads, so
//! it is installed once (at `info`), and each test finds its own records by
//! a tag of its own and its children's pids.

use log::{debug, info, trace, warn};
use multiproc::{Pool, Process, RawValue, current_process, worker};
use multiproc_tests::{Capture, join, run_self, syscw, wait_until};
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(60);

/// What the parent's logger printed so far.
fn captured() -> &'static Capture {
    static OUT: OnceLock<Capture> = OnceLock::new();
    OUT.get_or_init(|| {
        let out = Capture::default();
        env_logger::Builder::new()
            .filter_level(log::LevelFilter::Info)
            .target(env_logger::Target::Pipe(Box::new(out.clone())))
            .init();
        out
    })
}

/// The lines printed so far that contain `needle`.
fn lines_with(needle: &str) -> Vec<String> {
    captured().lines_with(needle)
}

/// Waits until `count` lines contain `needle`; returns them.
fn wait_for_lines(needle: &str, count: usize) -> Vec<String> {
    wait_until(BOUND, || lines_with(needle).len() >= count);
    lines_with(needle)
}

#[worker]
fn say(tag: String) -> (String, u32) {
    info!("hello {tag}");
    warn!(target: "elsewhere", "careful {tag}");
    info!(answer = 42, word = "w"; "with fields {tag}");
    let me = current_process();
    (me.name().to_string(), me.pid())
}

#[test]
fn a_child_process_info_reaches_the_parent_with_its_name_pid_level_and_target() {
    captured();
    let tag = "t-process";
    let mut p = Process::new(say, (tag.to_string(),));
    p.start().unwrap();
    assert_eq!(join(&p), 0);
    let (name, pid) = p.result().unwrap();
    assert_eq!(Some(pid), p.pid());
    assert!(name.starts_with("Process-"), "{name}");
    // Joined: its records have been logged already.
    let lines = lines_with(tag);
    assert_eq!(
        lines,
        [
            format!("[INFO  logs] {name}[{pid}]: hello {tag} child.name={name} child.pid={pid}"),
            format!(
                "[WARN  elsewhere] {name}[{pid}]: careful {tag} child.name={name} child.pid={pid}"
            ),
            format!(
                "[INFO  logs] {name}[{pid}]: with fields {tag} answer=42 word=w \
                 child.name={name} child.pid={pid}"
            ),
        ],
    );
}

#[test]
fn a_pool_workers_records_reach_the_parent() {
    captured();
    let tag = "t-pool";
    let pool = Pool::builder().processes(1).build().unwrap();
    let (name, pid) = pool.apply(say, (tag.to_string(),)).unwrap();
    assert!(name.starts_with("PoolWorker-"), "{name}");
    assert_eq!(pool.pids(), [pid]);
    // A task's result may come before its records: wait for them.
    let lines = wait_for_lines(tag, 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines[0],
        format!("[INFO  logs] {name}[{pid}]: hello {tag} child.name={name} child.pid={pid}")
    );
}

#[worker]
fn start_one_that_says(tag: String) -> (String, u32) {
    let mut p = Process::new(say, (tag,));
    p.start().unwrap();
    p.result().unwrap()
}

#[test]
fn a_grandchilds_records_reach_the_root_named_by_the_grandchild() {
    captured();
    let tag = "t-grandchild";
    let mut p = Process::new(start_one_that_says, (tag.to_string(),));
    p.start().unwrap();
    assert_eq!(join(&p), 0);
    let (name, pid) = p.result().unwrap();
    assert_eq!(name, format!("{}:1", p.name()));
    assert_ne!(Some(pid), p.pid());
    let lines = lines_with(tag);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines[1],
        format!("[WARN  elsewhere] {name}[{pid}]: careful {tag} child.name={name} child.pid={pid}")
    );
}

/// The write syscalls of 1000 `trace!` and 1000 `debug!` (below the
/// parent's level), then of one `info!`.
#[worker]
fn cost_of_quiet_records(tag: String) -> (u64, u64) {
    let before = syscw();
    for i in 0..1000 {
        trace!("not sent {tag} {i}");
        debug!("not sent {tag} {i}");
    }
    let quiet = syscw() - before;
    let before = syscw();
    info!("sent {tag}");
    (quiet, syscw() - before)
}

#[test]
fn records_below_the_parents_level_are_not_sent_and_cost_no_syscall() {
    captured();
    let tag = "t-quiet";
    let mut p = Process::new(cost_of_quiet_records, (tag.to_string(),));
    p.start().unwrap();
    let (quiet, loud) = p.result().unwrap();
    assert_eq!(
        quiet, 0,
        "trace!/debug! below the filter made write syscalls"
    );
    assert!(
        loud >= 1,
        "an info! made no write syscall: is syscw counting?"
    );
    let lines = lines_with(tag);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(&format!("sent {tag}")), "{lines:?}");
}

#[worker]
fn numbered(tag: String, count: u32) {
    for i in 0..count {
        info!("{tag} {i}");
    }
}

/// The numbers at the end of the lines of `tag` from process `pid`.
fn numbers(tag: &str, pid: u32) -> Vec<u64> {
    let prefix = format!("[{pid}]: {tag} ");
    lines_with(&prefix)
        .iter()
        .map(|l| {
            let rest = &l[l.find(&prefix).unwrap() + prefix.len()..];
            rest.split(' ').next().unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn ten_thousand_records_of_a_child_arrive_all_and_in_order() {
    captured();
    let tag = "t-order";
    let mut p = Process::new(numbered, (tag.to_string(), 10_000));
    p.start().unwrap();
    assert_eq!(join(&p), 0);
    let got = numbers(tag, p.pid().unwrap());
    assert_eq!(got.len(), 10_000);
    assert!(got.iter().copied().eq(0..10_000), "out of order");
}

const PAD: &str = "padding-padding-padding-padding-padding-padding-padding-padding";

#[worker]
fn log_forever(tag: String) {
    for i in 0u64.. {
        info!("{tag} {i} {PAD}");
    }
}

#[test]
fn a_child_killed_while_logging_leaves_a_prefix_and_the_collector_working() {
    captured();
    let tag = "t-killed";
    let mut p = Process::new(log_forever, (tag.to_string(),));
    p.start().unwrap();
    let pid = p.pid().unwrap();
    assert!(
        wait_until(BOUND, || numbers(tag, pid).len() >= 1000),
        "the child's records did not arrive"
    );
    p.kill().unwrap();
    assert_eq!(join(&p), -9);
    // Every line whole, the numbers a prefix of what was sent.
    let prefix = format!("[{pid}]: {tag} ");
    let lines = lines_with(&prefix);
    for (i, line) in lines.iter().enumerate() {
        let name = p.name();
        assert_eq!(
            line,
            &format!(
                "[INFO  logs] {name}[{pid}]: {tag} {i} {PAD} child.name={name} child.pid={pid}"
            )
        );
    }
    // The next child is heard.
    let after = "t-after-kill";
    let mut q = Process::new(say, (after.to_string(),));
    q.start().unwrap();
    assert_eq!(join(&q), 0);
    assert_eq!(lines_with(after).len(), 3);
}

/// Set in the copy of this test binary that `children_not_joined...` runs.
const EXIT_MODE: &str = "MULTIPROC_TEST_LOGS_EXIT";

#[test]
fn records_of_children_left_running_are_logged_before_the_root_exits() {
    if std::env::var_os(EXIT_MODE).is_some() {
        // The program: a logger to stderr, a child that logs, no join; the
        // exit handling joins it and waits for its records.
        env_logger::Builder::new()
            .filter_level(log::LevelFilter::Info)
            .target(env_logger::Target::Stderr)
            .init();
        let mut p = Process::new(numbered, ("at-exit".to_string(), 500));
        p.start().unwrap();
        std::mem::forget(p);
        return;
    }
    let name = "records_of_children_left_running_are_logged_before_the_root_exits";
    let out = run_self(
        &["--exact", name, "--nocapture"],
        &[(EXIT_MODE, "1")],
        BOUND,
    );
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().rfind(|l| l.contains("at-exit "));
    assert!(
        last.is_some_and(|l| l.contains("at-exit 499 ")),
        "the last record is missing: {stderr}"
    );
    assert_eq!(stderr.matches("at-exit ").count(), 500, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Set in the copy of this test binary that the flood test runs.
const FLOOD_MODE: &str = "MULTIPROC_TEST_LOGS_FLOOD";
const FLOOD: u64 = 50_000;

/// Closed: the parent's logger is stuck in its writer.
static GATE_OPEN: AtomicBool = AtomicBool::new(false);

/// A writer that waits (60 s at most) until the gate opens.
struct Gated;

impl Write for Gated {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let stuck = std::time::Instant::now();
        while !GATE_OPEN.load(Ordering::Acquire) && stuck.elapsed() < BOUND {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::io::stderr().write_all(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[worker]
fn flood(progress: RawValue<u64>) {
    for i in 0..FLOOD {
        info!("flood {i} {PAD}");
        progress.store(i + 1);
    }
}

#[test]
fn a_child_that_floods_a_stuck_logger_waits_and_loses_nothing() {
    if std::env::var_os(FLOOD_MODE).is_some() {
        env_logger::Builder::new()
            .filter_level(log::LevelFilter::Info)
            .target(env_logger::Target::Pipe(Box::new(Gated)))
            .init();
        let progress = RawValue::new(0u64).unwrap();
        let mut p = Process::new(flood, (progress.clone(),));
        p.start().unwrap();
        // Wait until the child stops getting on (500 ms without a record).
        let mut last = u64::MAX;
        let stalled = wait_until(BOUND, || {
            let now = progress.load();
            let still = now == last;
            last = now;
            if !still {
                std::thread::sleep(Duration::from_millis(500));
            }
            still
        });
        let held = progress.load();
        assert!(stalled, "the child never waited");
        // Far fewer than all: the kernel holds a socket buffer of them.
        assert!(
            held < FLOOD / 2,
            "the child sent {held} records into a stuck logger"
        );
        println!("stalled at {held}");
        GATE_OPEN.store(true, Ordering::Release);
        assert_eq!(join(&p), 0);
        assert_eq!(progress.load(), FLOOD);
        return;
    }
    let name = "a_child_that_floods_a_stuck_logger_waits_and_loses_nothing";
    let out = run_self(
        &["--exact", name, "--nocapture"],
        &[(FLOOD_MODE, "1")],
        BOUND * 2,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("stalled at "), "{stdout}");
    let got: Vec<u64> = stderr
        .lines()
        .filter_map(|l| l.split("]: flood ").nth(1))
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(got.len() as u64, FLOOD, "records were lost");
    assert!(got.iter().copied().eq(0..FLOOD), "out of order");
}

/// Set in the copy of this test binary that the no-logger test runs.
const ALONE_MODE: &str = "MULTIPROC_TEST_LOGS_ALONE";

struct Own;

impl log::Log for Own {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        eprintln!("own logger: {}", record.args());
    }

    fn flush(&self) {}
}

/// With no logger in the parent, nothing is installed in the child: it can
/// set its own.
#[worker]
fn set_own_logger() -> bool {
    let ok = log::set_logger(&Own).is_ok();
    log::set_max_level(log::LevelFilter::Info);
    info!("a record of its own");
    ok
}

#[test]
fn a_parent_without_a_logger_forwards_nothing_and_the_child_may_set_its_own() {
    if std::env::var_os(ALONE_MODE).is_some() {
        let mut p = Process::new(set_own_logger, ());
        p.start().unwrap();
        assert!(p.result().unwrap(), "the child could not set a logger");
        println!("child set its own");
        return;
    }
    let name = "a_parent_without_a_logger_forwards_nothing_and_the_child_may_set_its_own";
    let out = run_self(
        &["--exact", name, "--nocapture"],
        &[(ALONE_MODE, "1")],
        BOUND,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("child set its own"), "{stdout}");
    assert!(
        stderr.contains("own logger: a record of its own"),
        "{stderr}"
    );
}
