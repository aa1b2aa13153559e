//! Events of `tracing` emitted in children reach the parent's subscriber
//! (feature `tracing`): `tracing-subscriber`'s `fmt`, set up in the test
//! process only, writing into a captured buffer.
//!
//! The subscriber is global to the process and the tests run as its
//! threads, so it is installed once (at `info`), and each test finds its own
//! events by a tag of its own.

use multiproc::{Pool, Process, current_process, worker};
use multiproc_tests::{Capture, join, run_self, syscw, wait_until};
use std::sync::OnceLock;
use std::time::Duration;
use tracing::{debug, info, info_span, trace, warn};

const BOUND: Duration = Duration::from_secs(60);

/// What the parent's subscriber printed so far.
fn captured() -> &'static Capture {
    static OUT: OnceLock<Capture> = OnceLock::new();
    OUT.get_or_init(|| {
        let out = Capture::default();
        let writer = out.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::INFO)
            .init();
        out
    })
}

/// The lines printed so far that contain `needle`.
fn lines_with(needle: &str) -> Vec<String> {
    captured().lines_with(needle)
}

#[derive(Debug)]
#[allow(dead_code)]
struct Shape {
    sides: u8,
}

#[worker]
fn emit(tag: String) -> (String, u32) {
    info!("hello {tag}");
    warn!(target: "elsewhere", count = 3_u64, ok = true, "careful {tag}");
    info!(delta = -7_i64, ratio = 0.5, word = "w", shape = ?Shape { sides: 4 }, "fields {tag}");
    let span = info_span!("inside", tag = %tag);
    span.in_scope(|| info!("within a span {tag}"));
    let me = current_process();
    (me.name().to_string(), me.pid())
}

#[test]
fn a_child_process_event_reaches_the_parent_with_its_fields_name_and_pid() {
    captured();
    let tag = "t-process";
    let mut p = Process::new(emit, (tag.to_string(),));
    p.start().unwrap();
    assert_eq!(join(&p), 0);
    let (name, pid) = p.result().unwrap();
    assert_eq!(Some(pid), p.pid());
    // Joined: its events have been dispatched already.
    let child = format!("child.name={name} child.pid={pid}");
    assert_eq!(
        lines_with(tag),
        [
            format!(" INFO logs_tracing: hello {tag} {child}"),
            format!(" WARN elsewhere: careful {tag} count=3 ok=true {child}"),
            format!(
                " INFO logs_tracing: fields {tag} delta=-7 ratio=0.5 word=\"w\" \
                 shape=Shape {{ sides: 4 }} {child}"
            ),
            // Spans are not forwarded; the event inside one is.
            format!(" INFO logs_tracing: within a span {tag} {child}"),
        ],
    );
}

#[test]
fn a_pool_workers_events_reach_the_parent() {
    captured();
    let tag = "t-pool";
    let pool = Pool::builder().processes(1).build().unwrap();
    let (name, pid) = pool.apply(emit, (tag.to_string(),)).unwrap();
    assert!(name.starts_with("PoolWorker-"), "{name}");
    // A task's result may come before its events: wait for them.
    wait_until(BOUND, || lines_with(tag).len() >= 4);
    let lines = lines_with(tag);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(
        lines[0],
        format!(" INFO logs_tracing: hello {tag} child.name={name} child.pid={pid}")
    );
}

#[worker]
fn start_one_that_emits(tag: String) -> (String, u32) {
    let mut p = Process::new(emit, (tag,));
    p.start().unwrap();
    p.result().unwrap()
}

#[test]
fn a_grandchilds_events_reach_the_root_named_by_the_grandchild() {
    captured();
    let tag = "t-grandchild";
    let mut p = Process::new(start_one_that_emits, (tag.to_string(),));
    p.start().unwrap();
    assert_eq!(join(&p), 0);
    let (name, pid) = p.result().unwrap();
    assert_eq!(name, format!("{}:1", p.name()));
    let lines = lines_with(tag);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines[0].ends_with(&format!("child.name={name} child.pid={pid}")),
        "{lines:?}"
    );
}

/// The write syscalls of 1000 `trace!`, 1000 `debug!` and 1000 spans
/// entered (all below the parent's level or not forwarded), then of one
/// `info!`.
#[worker]
fn cost_of_quiet_events(tag: String) -> (u64, u64) {
    let before = syscw();
    for i in 0..1000 {
        trace!("not sent {tag} {i}");
        debug!(i, "not sent {tag}");
        info_span!("quiet", i).in_scope(|| ());
    }
    let quiet = syscw() - before;
    let before = syscw();
    info!("sent {tag}");
    (quiet, syscw() - before)
}

#[test]
fn events_below_the_parents_level_are_not_sent_and_cost_no_syscall() {
    captured();
    let tag = "t-quiet";
    let mut p = Process::new(cost_of_quiet_events, (tag.to_string(),));
    p.start().unwrap();
    let (quiet, loud) = p.result().unwrap();
    assert_eq!(quiet, 0, "trace!/debug!/spans made write syscalls");
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
        info!(i, "{tag}");
    }
}

#[test]
fn ten_thousand_events_of_a_child_arrive_all_and_in_order() {
    captured();
    let tag = "t-order";
    let mut p = Process::new(numbered, (tag.to_string(), 10_000));
    p.start().unwrap();
    assert_eq!(join(&p), 0);
    let needle = format!(": {tag} i=");
    let got: Vec<u32> = lines_with(&needle)
        .iter()
        .map(|l| {
            let rest = &l[l.find(&needle).unwrap() + needle.len()..];
            rest.split(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(got.len(), 10_000);
    assert!(got.iter().copied().eq(0..10_000), "out of order");
}

/// Set in the copy of this test binary that the no-subscriber test runs.
const ALONE_MODE: &str = "MULTIPROC_TEST_TRACING_ALONE";

/// With no subscriber in the parent, nothing is installed in the child: it
/// can set its own.
#[worker]
fn set_own_subscriber() -> bool {
    let own = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .finish();
    let ok = tracing::subscriber::set_global_default(own).is_ok();
    info!("own subscriber");
    ok
}

#[test]
fn a_parent_without_a_subscriber_forwards_nothing_and_the_child_may_set_its_own() {
    if std::env::var_os(ALONE_MODE).is_some() {
        let mut p = Process::new(set_own_subscriber, ());
        p.start().unwrap();
        assert!(p.result().unwrap(), "the child could not set a subscriber");
        println!("child set its own");
        return;
    }
    let name = "a_parent_without_a_subscriber_forwards_nothing_and_the_child_may_set_its_own";
    let out = run_self(
        &["--exact", name, "--nocapture"],
        &[(ALONE_MODE, "1")],
        BOUND,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("child set its own"), "{stdout}");
    // The child's own subscriber printed it, without a forwarded child.name.
    let line = stderr.lines().find(|l| l.contains("own subscriber"));
    assert!(line.is_some_and(|l| !l.contains("child.name")), "{stderr}");
}
