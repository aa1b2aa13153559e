//! `StartMethod::Forkserver`: its children behave as spawned ones do
//! (results, panics, exit codes, signals, names, handles, pools, descriptors,
//! environment, directory, limits, stdio), nothing leaks from one child to
//! the next, and the server survives crashing children, is restarted when
//! killed and dies with its parent. Then the start-method API itself, and
//! `Fork` refused in this multithreaded binary (`start_fork.rs` tests `Fork`
//! from a single-threaded `main`).
//!
//! Every test chooses its method explicitly (`get_context` or
//! `Process::start_method`), so the suite tests the fork server whatever the
//! default. Checks that must own the whole process (killing its server,
//! counting its descriptors, changing its directory, being SIGKILLed) run
//! in a helper: this binary again, one ignored test alone (`run_self`).

use multiproc::{
    AcquireTimeoutError, Connection, Error, Lock, Pipe, Process, Queue, Resource, StartMethod,
    Stdio, TryAcquireError, current_process, get_all_start_methods, get_context, get_start_method,
    parent_process, set_start_method, worker,
};
use multiproc_tests::{alive, child_pids, exists, join, open_fds, run_self, wait_until};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);
const FS: StartMethod = StartMethod::Forkserver;

// ---- workers ----

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

/// Dies by `how`: "abort", "segv" or "exit".
#[worker]
fn crash(how: String) -> u32 {
    match how.as_str() {
        "abort" => std::process::abort(),
        "segv" => {
            // SAFETY: raise only sends a signal to this process.
            unsafe { libc::raise(libc::SIGSEGV) };
            unreachable!("SIGSEGV did not kill the child")
        }
        "exit" => std::process::exit(3),
        other => unreachable!("{other}"),
    }
}

/// A child's name, pid and parent (pid and name), as it sees them.
type Who = (String, u32, Option<(u32, String)>);

#[worker]
fn whoami() -> Who {
    let me = current_process();
    let parent = parent_process().map(|p| (p.pid(), p.name().to_string()));
    (me.name().to_string(), me.pid(), parent)
}

/// Starts a forkserver grandchild running `whoami`; returns the name it was
/// given, what it reported and its pid.
#[worker]
fn start_grandchild() -> (String, Who, u32) {
    let mut p = get_context(FS).process(whoami, ());
    let given = p.name().to_string();
    p.start().unwrap();
    let pid = p.pid().unwrap();
    (given, p.result().unwrap(), pid)
}

#[worker]
fn my_pid_and_ppid() -> (u32, u32) {
    (std::process::id(), nix::unistd::getppid().as_raw() as u32)
}

/// The descriptors open in the child (the directory listing's own one left
/// out).
#[worker]
fn child_fds() -> Vec<i32> {
    own_fds()
}

#[worker]
fn child_fds_with(_q: Queue<u32>, _conn: Connection<u32>, _lock: Lock) -> Vec<i32> {
    own_fds()
}

fn own_fds() -> Vec<i32> {
    open_fds()
        .into_iter()
        .filter(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok())
        .collect()
}

/// Uses all three handles: the lock is held by the parent at first (so
/// `try_acquire` fails), then released when the parent says so on `conn`.
#[worker]
fn use_handles(q: Queue<String>, conn: Connection<String>, lock: Lock) -> String {
    let first = match lock.try_acquire() {
        Err(TryAcquireError::WouldBlock) => "held",
        Ok(_) => "free",
        Err(TryAcquireError::OwnerDied(_)) => "died",
    };
    q.put(format!("queue from {}", std::process::id())).unwrap();
    conn.send(&format!("pipe {first}")).unwrap();
    let word = conn.recv_timeout(BOUND).unwrap();
    let got = lock.acquire_timeout(BOUND).is_ok();
    format!("{word} {got}")
}

/// Takes the lock and exits holding it.
#[worker]
fn die_holding(lock: Lock) {
    std::mem::forget(lock.acquire().unwrap());
    std::process::exit(4);
}

#[worker]
fn getenv(key: String) -> Option<String> {
    std::env::var(key).ok()
}

#[worker]
fn env_keys() -> Vec<String> {
    let mut keys: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    keys.sort();
    keys
}

#[worker]
fn cwd() -> PathBuf {
    std::env::current_dir().unwrap()
}

#[worker]
fn limits() -> Vec<(u64, u64)> {
    use nix::sys::resource::{Resource as R, getrlimit};
    [
        R::RLIMIT_AS,
        R::RLIMIT_CPU,
        R::RLIMIT_NOFILE,
        R::RLIMIT_CORE,
    ]
    .into_iter()
    .map(|r| getrlimit(r).unwrap())
    .collect()
}

#[worker]
fn print_lines(n: u32) {
    for i in 0..n {
        println!("line {i}");
    }
    eprintln!("done on stderr");
}

#[worker]
fn echo_stdin() -> String {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    line.trim_end().to_uppercase()
}

static TOUCHED: AtomicU32 = AtomicU32::new(0);

/// What this child found (an env var and a static that an earlier child
/// set in itself), then sets both.
#[worker]
fn leave_traces() -> (Option<String>, u32) {
    let found = (
        std::env::var("FORKSERVER_TRACE").ok(),
        TOUCHED.load(Ordering::SeqCst),
    );
    // SAFETY: the worker runs on the child's only thread.
    unsafe { std::env::set_var("FORKSERVER_TRACE", "left") };
    TOUCHED.store(99, Ordering::SeqCst);
    found
}

/// Starts `n` forkserver children that sleep for a minute, reports their
/// pids on `q`, then its fork server's and (with `pool`) a forkserver pool's
/// workers', then sleeps for a minute.
#[worker]
fn parent_of_forkserver_children(q: Queue<u32>, n: u32, pool: bool) {
    let kids: Vec<_> = (0..n)
        .map(|_| {
            let mut p = get_context(FS).process(sleep_ms, (60_000,));
            p.start().unwrap();
            q.put(p.pid().unwrap()).unwrap();
            p
        })
        .collect();
    let mut known: Vec<u32> = kids.iter().filter_map(Process::pid).collect();
    let pool = pool.then(|| get_context(FS).pool().processes(2).build().unwrap());
    if let Some(pool) = &pool {
        assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
        for pid in pool.pids() {
            q.put(pid).unwrap();
            known.push(pid);
        }
    }
    for server in forkserver_of(std::process::id(), &known) {
        q.put(server).unwrap();
    }
    std::mem::forget(kids);
    std::thread::sleep(Duration::from_secs(60));
}

// ---- /proc helpers ----

/// `pid`'s parent, from `/proc/<pid>/stat`.
fn ppid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// `pid`'s children, from `/proc/<pid>/task/*/children`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(
                    list.split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    out.sort_unstable();
    out
}

/// Every descendant of `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in children_of(p) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// Whether `pid` looks like a fork server: it was started with the server's
/// marker (its original environment, `/proc/<pid>/environ`, which its forked
/// children share) and it ignores SIGINT (its children, and the spare child
/// it keeps forked ahead, do not). While it forks a spare, the server has
/// SIGINT blocked at its default for a moment: one that does not ignore it
/// is looked at again for a while.
fn looks_like_a_server(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_millis(50);
    loop {
        match marked_and_ignoring(pid) {
            (true, true) => return alive(pid),
            (true, false) if alive(pid) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            _ => return false,
        }
    }
}

/// Whether `pid` has the server's marker, and whether it ignores SIGINT.
fn marked_and_ignoring(pid: u32) -> (bool, bool) {
    let marked = std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| {
            env.split(|&b| b == 0)
                .any(|kv| kv.starts_with(b"MULTIPROC_FORKSERVER="))
        })
        .unwrap_or(false);
    let ignores_sigint = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("SigIgn:"))?.trim();
            u64::from_str_radix(hex, 16).ok()
        })
        .is_some_and(|mask| mask & (1 << (libc::SIGINT - 1)) != 0);
    (marked, ignores_sigint)
}

/// The running fork servers among `parent`'s children, not counting `known`
/// (its `Process` children).
fn forkserver_of(parent: u32, known: &[u32]) -> Vec<u32> {
    children_of(parent)
        .into_iter()
        .filter(|p| !known.contains(p) && looks_like_a_server(*p))
        .collect()
}

fn sigkill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Reads `r` to its end on another thread, waiting at most `BOUND`.
fn read_all(mut r: impl Read + Send + 'static) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx.recv_timeout(BOUND)
        .expect("the pipe did not reach end of file")
}

fn fs<W: multiproc::Worker>(worker: W, args: W::Args) -> Process<W> {
    get_context(FS).process(worker, args)
}

/// A started forkserver child, run to its end (exit 0).
fn run_ok<W: multiproc::Worker>(p: &mut Process<W>) -> W::Output {
    p.start().unwrap();
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0), "the child failed");
    p.result().unwrap()
}

/// Runs the ignored helper test `name` alone in a new process of this
/// binary; panics with its output unless it passed.
fn helper(name: &str, env: &[(&str, &str)]) -> String {
    let out = run_self(
        &[
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ],
        env,
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

// ---- results, failures, signals ----

#[test]
fn results_panics_exit_codes_and_signals_are_those_of_spawn() {
    let mut p = fs(square, (12,));
    assert_eq!(p.pid(), None);
    p.start().unwrap();
    assert_eq!(join(&p), 0);
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(p.result().unwrap(), 144);
    assert!(matches!(p.result(), Err(Error::ResultTaken)));

    let mut p = fs(panics, ("the sky fell".to_string(),));
    p.env("RUST_BACKTRACE", "0").stderr(Stdio::null());
    p.start().unwrap();
    assert_eq!(join(&p), 1);
    let pid = p.pid().unwrap();
    match p.result() {
        Err(Error::Panicked {
            pid: reported,
            message,
            location,
            ..
        }) => {
            assert_eq!(reported, pid);
            assert_eq!(message, "the sky fell");
            let location = location.expect("a location");
            assert!(location.contains("start_methods.rs:"), "{location}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }

    let mut p = fs(exits, (3,));
    p.start().unwrap();
    assert_eq!(join(&p), 3);
    let pid = p.pid().unwrap();
    match p.result() {
        Err(Error::Exited {
            pid: reported,
            code: 3,
        }) => assert_eq!(reported, pid),
        other => panic!("expected Exited, got {other:?}"),
    }

    let mut t = fs(sleep_ms, (60_000,));
    let mut k = fs(sleep_ms, (60_000,));
    t.start().unwrap();
    k.start().unwrap();
    t.terminate().unwrap();
    k.kill().unwrap();
    assert_eq!(join(&t), -15);
    assert_eq!(join(&k), -9);
    assert!(matches!(t.result(), Err(Error::Killed { signal: 15, .. })));
    assert!(matches!(k.result(), Err(Error::Killed { signal: 9, .. })));
}

#[test]
fn join_timeout_and_is_alive_on_a_child_that_never_ends() {
    let mut p = fs(sleep_ms, (u64::MAX,));
    assert!(!p.is_alive());
    p.start().unwrap();
    assert!(p.is_alive());
    assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), None);
    assert_eq!(p.join_timeout(Duration::from_millis(200)).unwrap(), None);
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    p.kill().unwrap();
    assert_eq!(join(&p), -9);
    assert!(!p.is_alive());
}

#[test]
fn names_pids_and_the_parent_are_this_process() {
    let mut p = fs(whoami, ());
    p.set_name("served");
    let (name, pid, parent) = run_ok(&mut p);
    assert_eq!(name, "served");
    assert_eq!(Some(pid), p.pid());
    assert_eq!(
        parent,
        Some((std::process::id(), "MainProcess".to_string()))
    );

    // The child is this process's own child (CLONE_PARENT), not the
    // server's: its parent as the kernel says, while it runs.
    let (mine, theirs) = Pipe::<String>::new().unwrap();
    let mut p = fs(multiproc_tests::wait_for_word, (theirs,));
    p.start().unwrap();
    let pid = p.pid().unwrap();
    assert_eq!(ppid_of(pid), Some(std::process::id()));
    assert!(children_of(std::process::id()).contains(&pid));
    mine.send(&"go".to_string()).unwrap();
    assert_eq!(join(&p), 0);
    let (child, parent) = run_ok(&mut fs(my_pid_and_ppid, ()));
    assert_eq!(parent, std::process::id());
    assert_ne!(child, parent);

    // A forkserver child's own forkserver child: named N:1, its parent
    // that child, its pid what its handle says.
    let mut p = fs(start_grandchild, ());
    let (given, (name, pid, parent), handle_pid) = run_ok(&mut p);
    assert_eq!(given, format!("{}:1", p.name()));
    assert_eq!(name, given);
    assert_eq!(pid, handle_pid);
    assert_eq!(parent, Some((p.pid().unwrap(), p.name().to_string())));
}

// ---- handles ----

#[test]
fn a_queue_a_pipe_end_and_a_lock_work_in_a_forkserver_child() {
    let q = Queue::<String>::new().unwrap();
    let (mine, theirs) = Pipe::<String>::new().unwrap();
    let lock = Lock::new().unwrap();
    let held = lock.acquire().unwrap();
    let mut p = fs(use_handles, (q.clone(), theirs, lock.clone()));
    p.start().unwrap();
    let pid = p.pid().unwrap();
    assert_eq!(q.get_timeout(BOUND).unwrap(), format!("queue from {pid}"));
    assert_eq!(mine.recv_timeout(BOUND).unwrap(), "pipe held");
    drop(held);
    mine.send(&"released".to_string()).unwrap();
    assert_eq!(join(&p), 0);
    assert_eq!(p.result().unwrap(), "released true");
}

#[test]
fn a_forkserver_child_that_dies_holding_a_lock_is_its_owner() {
    // The child's robust-mutex list is its own (clone.rs sets it up): the
    // kernel marks the lock as its dead owner's.
    let lock = Lock::new().unwrap();
    let mut p = fs(die_holding, (lock.clone(),));
    p.start().unwrap();
    assert_eq!(join(&p), 4);
    match lock.acquire_timeout(BOUND) {
        Err(AcquireTimeoutError::OwnerDied(_)) => {}
        Ok(_) => panic!("the dead child's lock was acquired as if free"),
        Err(AcquireTimeoutError::Timeout) => {
            panic!("the lock a dead forkserver child held stayed held")
        }
    }
    assert!(lock.acquire_timeout(BOUND).is_ok());
}

// ---- pools ----

#[worker]
fn pool_whoami() -> (u32, u32) {
    (std::process::id(), nix::unistd::getppid().as_raw() as u32)
}

#[test]
fn a_pool_of_a_forkserver_context_maps_applies_and_survives_failed_tasks() {
    let pool = get_context(FS).pool().processes(2).build().unwrap();
    assert_eq!(
        pool.map(square, 0..20).unwrap(),
        (0..20).map(|x| x * x).collect::<Vec<_>>()
    );
    assert_eq!(pool.apply(square, (9,)).unwrap(), 81);
    for pid in pool.pids() {
        assert_eq!(ppid_of(pid), Some(std::process::id()), "worker {pid}");
    }
    let (_, parent) = pool.apply(pool_whoami, ()).unwrap();
    assert_eq!(parent, std::process::id());

    match pool.apply(panics, ("task 5 is bad".to_string(),)) {
        Err(Error::Panicked { message, .. }) => assert_eq!(message, "task 5 is bad"),
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(square, (4,)).unwrap(), 16);
    match pool.apply(crash, ("exit".to_string(),)) {
        Err(Error::Exited { code: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
    match pool.apply(crash, ("abort".to_string(),)) {
        Err(Error::Killed { signal: 6, .. }) => {}
        other => panic!("{other:?}"),
    }
    // The pool goes on, with replacements started by the server.
    assert_eq!(pool.map(square, 0..100).unwrap()[99], 99 * 99);
    assert!(wait_until(BOUND, || pool.pids().len() == 2));
    for pid in pool.pids() {
        assert_eq!(ppid_of(pid), Some(std::process::id()), "worker {pid}");
    }
    pool.close();
    pool.join().unwrap();
}

// ---- descriptors ----

#[test]
fn a_forkserver_child_holds_the_descriptors_a_spawned_one_does() {
    // A descriptor this process leaves inheritable must still not leak.
    let leaky = nix::unistd::dup(std::io::stderr()).unwrap();
    let spawned = {
        let mut p = Process::new(child_fds, ());
        p.start_method(StartMethod::Spawn);
        run_ok(&mut p)
    };
    let served = run_ok(&mut fs(child_fds, ()));
    assert_eq!(spawned, vec![0, 1, 2, 3]);
    assert_eq!(served, spawned);

    let q = Queue::<u32>::new().unwrap();
    let (_mine, theirs) = Pipe::<u32>::new().unwrap();
    let lock = Lock::new().unwrap();
    let args = || (q.clone(), theirs.clone(), lock.clone());
    let spawned = {
        let mut p = Process::new(child_fds_with, args());
        p.start_method(StartMethod::Spawn);
        run_ok(&mut p)
    };
    let served = run_ok(&mut get_context(FS).process(child_fds_with, args()));
    drop(leaky);
    assert!(
        spawned.len() > 4,
        "the handles carry descriptors: {spawned:?}"
    );
    assert_eq!(served, spawned);
}

#[test]
#[ignore = "helper, run by forkserver_starts_leak_no_descriptor_and_no_zombie"]
fn helper_forkserver_starts_leak_nothing() {
    run_ok(&mut fs(square, (1,)));
    let before = open_fds();
    let server = forkserver_of(std::process::id(), &[]);
    assert_eq!(server.len(), 1, "one server: {server:?}");
    for round in 0..10 {
        let mut batch: Vec<_> = (0..10)
            .map(|i| {
                let mut p = fs(square, (round * 10 + i,));
                p.start().unwrap();
                p
            })
            .collect();
        for (i, p) in batch.iter_mut().enumerate() {
            assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
            let x = round * 10 + i as i64;
            assert_eq!(p.result().unwrap(), x * x);
        }
        assert_eq!(open_fds(), before, "descriptors leaked in round {round}");
    }
    // No zombie: the only child left is the server (which child_pids leaves
    // out), the same one.
    assert_eq!(child_pids(), Vec::<u32>::new());
    assert_eq!(forkserver_of(std::process::id(), &[]), server);
    assert!(
        server
            .iter()
            .all(|&pid| multiproc_tests::is_fork_server(pid))
    );
}

#[test]
fn forkserver_starts_leak_no_descriptor_and_no_zombie() {
    helper("helper_forkserver_starts_leak_nothing", &[]);
}

// ---- environment, directory, limits, stdio ----

#[test]
fn the_environment_is_this_processs_at_start_not_the_servers() {
    // The server is up (started with this environment) before the change.
    assert_eq!(run_ok(&mut fs(getenv, ("FS_LATE_VAR".into(),))), None);
    assert!(!forkserver_of(std::process::id(), &[]).is_empty());
    // SAFETY: std's environment functions, which the runtime uses, take
    // one lock; a unique name no other test reads.
    unsafe { std::env::set_var("FS_LATE_VAR", "set after the server") };
    let got = run_ok(&mut fs(getenv, ("FS_LATE_VAR".into(),)));
    assert_eq!(got.as_deref(), Some("set after the server"));
    let path = std::env::var("PATH").ok();
    assert_eq!(run_ok(&mut fs(getenv, ("PATH".into(),))), path);
    // SAFETY: as above.
    unsafe { std::env::remove_var("FS_LATE_VAR") };
    assert_eq!(run_ok(&mut fs(getenv, ("FS_LATE_VAR".into(),))), None);

    // The builder's changes, on top of this process's environment.
    let mut p = fs(getenv, ("FS_SET".into(),));
    p.env("FS_SET", "one").env("FS_SET", "two");
    assert_eq!(run_ok(&mut p).as_deref(), Some("two"));
    let mut p = fs(getenv, ("PATH".into(),));
    p.env_remove("PATH");
    assert_eq!(run_ok(&mut p), None);
    let mut p = fs(env_keys, ());
    p.env("DROPPED", "x").env_clear().env("ONLY", "1");
    assert_eq!(run_ok(&mut p), vec!["ONLY".to_string()]);
    // The runtime's and the server's markers never show.
    let keys = run_ok(&mut fs(env_keys, ()));
    assert!(
        !keys
            .iter()
            .any(|k| k == "MULTIPROC_CHILD" || k == "MULTIPROC_FORKSERVER"),
        "{keys:?}"
    );
}

#[test]
fn current_dir_is_per_process_and_a_bad_one_fails_the_start() {
    let dir = std::env::temp_dir().canonicalize().unwrap();
    let mut p = fs(cwd, ());
    p.current_dir(&dir);
    assert_eq!(run_ok(&mut p), dir);
    // Without one: this process's directory (not the server's `/`).
    assert_eq!(run_ok(&mut fs(cwd, ())), std::env::current_dir().unwrap());

    let missing = dir.join(format!("multiproc-fs-missing-{}", std::process::id()));
    let mut p = fs(cwd, ());
    p.current_dir(&missing);
    match p.start() {
        Err(Error::Spawn(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(p.pid(), None);
    // A failed start leaves the process startable once fixed, and the
    // server serving.
    p.current_dir("/");
    assert_eq!(run_ok(&mut p), PathBuf::from("/"));
    assert_eq!(run_ok(&mut fs(square, (5,))), 25);
}

/// Changes this process's directory (alone in its process), then starts
/// children without a directory of their own and with a relative one.
#[test]
#[ignore = "helper, run by the_parents_directory_at_start_time_is_the_childs"]
fn helper_parent_cwd_at_start_time() {
    run_ok(&mut fs(square, (1,)));
    let base = std::env::temp_dir()
        .canonicalize()
        .unwrap()
        .join(format!("multiproc-fs-cwd-{}", std::process::id()));
    std::fs::create_dir_all(base.join("sub")).unwrap();
    std::env::set_current_dir(&base).unwrap();
    assert_eq!(run_ok(&mut fs(cwd, ())), base);
    let mut p = fs(cwd, ());
    p.current_dir("sub");
    assert_eq!(run_ok(&mut p), base.join("sub"));
    std::env::set_current_dir("/").unwrap();
    assert_eq!(run_ok(&mut fs(cwd, ())), PathBuf::from("/"));
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn the_parents_directory_at_start_time_is_the_childs() {
    helper("helper_parent_cwd_at_start_time", &[]);
}

#[test]
fn limits_are_applied_to_a_forkserver_child() {
    let mut p = fs(limits, ());
    p.rlimit(Resource::AddressSpace, 1 << 40, Resource::UNLIMITED)
        .rlimit(Resource::Cpu, 100, 200)
        .rlimit(Resource::OpenFiles, 64, 128)
        .rlimit(Resource::CoreSize, 0, 0);
    assert_eq!(
        run_ok(&mut p),
        vec![(1 << 40, u64::MAX), (100, 200), (64, 128), (0, 0)]
    );
}

#[test]
fn piped_and_null_stdio_of_a_forkserver_child() {
    let mut p = fs(print_lines, (3,));
    p.stdout(Stdio::piped()).stderr(Stdio::piped());
    p.start().unwrap();
    let out = read_all(p.take_stdout().unwrap());
    let err = read_all(p.take_stderr().unwrap());
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    assert_eq!(out, "line 0\nline 1\nline 2\n");
    assert_eq!(err, "done on stderr\n");

    let mut p = fs(echo_stdin, ());
    p.stdin(Stdio::piped());
    p.start().unwrap();
    let mut stdin = p.take_stdin().unwrap();
    stdin.write_all(b"hello server\n").unwrap();
    drop(stdin);
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    assert_eq!(p.result().unwrap(), "HELLO SERVER");

    let mut p = fs(echo_stdin, ());
    p.stdin(Stdio::null());
    assert_eq!(run_ok(&mut p), "");
    let mut p = fs(print_lines, (100,));
    p.stdout(Stdio::null()).stderr(Stdio::null());
    run_ok(&mut p);
}

/// Runs with stdout and stderr captured by the parent test: a forkserver
/// child's output goes to this process's stdio, not the server's
/// /dev/null.
#[test]
#[ignore = "helper, run by a_forkserver_child_inherits_this_processs_stdio"]
fn helper_inherited_stdio() {
    run_ok(&mut fs(print_lines, (2,)));
}

#[test]
fn a_forkserver_child_inherits_this_processs_stdio() {
    let out = helper("helper_inherited_stdio", &[]);
    assert!(out.contains("line 0\nline 1\n"), "{out}");
}

// ---- isolation and the server's life ----

#[test]
fn nothing_leaks_from_one_forkserver_child_to_the_next() {
    for _ in 0..3 {
        assert_eq!(run_ok(&mut fs(leave_traces, ())), (None, 0));
    }
    assert_eq!(TOUCHED.load(Ordering::SeqCst), 0);
}

#[test]
fn the_server_survives_children_that_crash() {
    run_ok(&mut fs(square, (1,)));
    for (how, code) in [("segv", -libc::SIGSEGV), ("abort", -libc::SIGABRT)] {
        let mut p = fs(crash, (how.to_string(),));
        p.stderr(Stdio::null());
        p.start().unwrap();
        assert_eq!(join(&p), code, "{how}");
        assert!(matches!(p.result(), Err(Error::Killed { .. })), "{how}");
        assert_eq!(run_ok(&mut fs(square, (7,))), 49, "after {how}");
    }
    assert_eq!(
        forkserver_of(std::process::id(), &[]).len(),
        1,
        "one server, still running"
    );
}

#[test]
#[ignore = "helper, run by a_killed_server_is_restarted_at_the_next_start"]
fn helper_kill_the_server() {
    assert_eq!(run_ok(&mut fs(square, (2,))), 4);
    // A child running while the server is found, so it is told apart.
    let mut sleeper = fs(sleep_ms, (60_000,));
    sleeper.start().unwrap();
    let known = [sleeper.pid().unwrap()];
    let servers = forkserver_of(std::process::id(), &known);
    assert_eq!(servers.len(), 1, "one server: {servers:?}");
    let old = servers[0];
    sigkill(old);
    assert!(
        wait_until(BOUND, || !alive(old)),
        "the server survived SIGKILL"
    );
    // Its children live on: they are this process's.
    assert!(sleeper.is_alive());
    for i in 0..3 {
        assert_eq!(
            run_ok(&mut fs(square, (i,))),
            i * i,
            "start {i} after the kill"
        );
    }
    let new = forkserver_of(std::process::id(), &known);
    assert_eq!(new.len(), 1, "one server again: {new:?}");
    assert_ne!(new[0], old);
    // The dead one was reaped.
    assert!(
        wait_until(BOUND, || !exists(old)),
        "the killed server is a zombie"
    );
    sleeper.kill().unwrap();
    assert_eq!(join(&sleeper), -9);
    // Killed while idle again, then a pool (its workers by the new server).
    sigkill(new[0]);
    assert!(wait_until(BOUND, || !alive(new[0])));
    let pool = get_context(FS).pool().processes(2).build().unwrap();
    assert_eq!(pool.map(square, 0..10).unwrap()[9], 81);
}

#[test]
fn a_killed_server_is_restarted_at_the_next_start() {
    helper("helper_kill_the_server", &[]);
}

/// Starts `parent_of_forkserver_children` by `method`, waits for its
/// report, SIGKILLs it: everything it started, its server included, is
/// gone within a second.
fn kill_a_parent_of_forkserver_children(method: StartMethod, pool: bool) {
    let case = format!("parent by {method}, pool {pool}");
    let q = Queue::<u32>::new().unwrap();
    let mut parent = Process::new(parent_of_forkserver_children, (q.clone(), 3, pool));
    parent.start_method(method);
    parent.start().unwrap();
    let expected = 3 + if pool { 2 } else { 0 } + 1;
    let mut pids: Vec<u32> = (0..expected)
        .map(|i| {
            q.get_timeout(BOUND)
                .unwrap_or_else(|e| panic!("{case}: report {i}: {e:?}"))
        })
        .collect();
    let server = *pids.last().unwrap();
    assert!(looks_like_a_server(server), "{case}: {server} is no server");
    let root = parent.pid().unwrap();
    for d in descendants(root) {
        if !pids.contains(&d) {
            pids.push(d);
        }
    }
    for &p in &pids {
        assert_eq!(
            ppid_of(p),
            Some(root),
            "{case}: {p} is not the parent's child"
        );
    }
    parent.kill().unwrap();
    assert_eq!(join(&parent), -9, "{case}");
    let gone = wait_until(Duration::from_secs(1), || pids.iter().all(|&p| !alive(p)));
    let survivors: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    for &p in &survivors {
        sigkill(p);
    }
    assert!(
        gone,
        "{case}: orphans alive 1 s after the parent's SIGKILL: {survivors:?} of {pids:?}"
    );
}

#[test]
fn a_killed_spawned_parent_takes_its_forkserver_children_and_server_with_it() {
    kill_a_parent_of_forkserver_children(StartMethod::Spawn, false);
    kill_a_parent_of_forkserver_children(StartMethod::Spawn, true);
}

#[test]
fn a_killed_forkserver_parent_takes_its_forkserver_children_and_server_with_it() {
    kill_a_parent_of_forkserver_children(FS, false);
    kill_a_parent_of_forkserver_children(FS, true);
}

/// A main process (not a multiproc child) with forkserver children and a
/// forkserver pool: prints every pid, then sleeps to be killed.
#[test]
#[ignore = "helper, run by a_killed_main_process_leaves_no_forkserver_orphans"]
fn helper_main_with_forkserver_children() {
    let kids: Vec<_> = (0..2)
        .map(|_| {
            let mut p = fs(sleep_ms, (60_000,));
            p.start().unwrap();
            p
        })
        .collect();
    let pool = get_context(FS).pool().processes(2).build().unwrap();
    assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
    let mut pids: Vec<u32> = kids.iter().filter_map(Process::pid).collect();
    pids.extend(pool.pids());
    let servers = forkserver_of(std::process::id(), &pids);
    assert_eq!(servers.len(), 1, "{servers:?}");
    pids.extend(servers);
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    println!("PIDS {}", pids.join(" "));
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_main_process_leaves_no_forkserver_orphans() {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_main_with_forkserver_children",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let helper = child.id();
    // Read the report on a thread, so a helper that never prints fails
    // the test instead of hanging it.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let found = lines.find_map(|l| {
            let l = l.ok()?;
            l.split_once("PIDS ").map(|(_, p)| p.to_string())
        });
        let _ = tx.send(found);
    });
    let report = rx.recv_timeout(BOUND);
    let pids: Vec<u32> = match report {
        Ok(Some(line)) => line.split(' ').map(|p| p.parse().unwrap()).collect(),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the helper did not report its children: {other:?}");
        }
    };
    assert_eq!(pids.len(), 5, "{pids:?}");
    for &p in &pids {
        assert_eq!(ppid_of(p), Some(helper), "{p}");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let gone = wait_until(Duration::from_secs(1), || pids.iter().all(|&p| !alive(p)));
    let survivors: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    for &p in &survivors {
        sigkill(p);
    }
    assert!(
        gone,
        "alive 1 s after their parent's SIGKILL: {survivors:?} of {pids:?}"
    );
}

// ---- the API ----

#[test]
fn set_start_method_once_then_start_method_set() {
    // Every other test here chooses its method, so the default may change.
    set_start_method(FS).unwrap();
    assert_eq!(get_start_method(), FS);
    match set_start_method(StartMethod::Spawn) {
        Err(e @ Error::StartMethodSet { current }) => {
            assert_eq!(current, FS);
            assert!(!e.to_string().is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(get_start_method(), FS);
}

#[test]
fn start_method_names_parse_and_list() {
    let err = "bad".parse::<StartMethod>().unwrap_err();
    assert!(err.to_string().contains("\"bad\""), "{err}");
    assert!(err.to_string().contains("spawn, forkserver, fork"), "{err}");
    assert!("Forkserver".parse::<StartMethod>().is_err());
    let all = get_all_start_methods();
    assert_eq!(
        all,
        [
            StartMethod::Spawn,
            StartMethod::Forkserver,
            StartMethod::Fork
        ]
    );
    for m in all {
        assert_eq!(m.name().parse::<StartMethod>(), Ok(m));
        assert_eq!(m.to_string(), m.name());
        assert_eq!(get_context(m).start_method(), m);
    }
}

#[test]
#[ignore = "helper, run by the_environment_variable_chooses_the_default"]
fn helper_default_from_env() {
    let want: StartMethod = std::env::var("WANT").unwrap().parse().unwrap();
    assert_eq!(get_start_method(), want);
    let mut p = Process::new(square, (6,));
    p.start().unwrap();
    let known = [p.pid().unwrap()];
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    assert_eq!(p.result().unwrap(), 36);
    let servers = forkserver_of(std::process::id(), &known);
    assert_eq!(servers.len(), usize::from(want == FS), "{servers:?}");
}

#[test]
fn the_environment_variable_chooses_the_default() {
    let env = multiproc::START_METHOD_ENV;
    helper(
        "helper_default_from_env",
        &[(env, "forkserver"), ("WANT", "forkserver")],
    );
    helper(
        "helper_default_from_env",
        &[(env, "spawn"), ("WANT", "spawn")],
    );
    let out = run_self(
        &[
            "--exact",
            "helper_default_from_env",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ],
        &[(env, "vfork"), ("WANT", "spawn")],
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("vfork"),
        "no word of the bad name: {stderr}"
    );
}

#[worker]
fn parks() {}

#[test]
fn fork_is_refused_in_a_multithreaded_process() {
    // One more thread for sure, whatever the harness runs tests on.
    let (tx, rx) = mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv_timeout(BOUND));
    let mut p = get_context(StartMethod::Fork).process(parks, ());
    match p.start() {
        Err(e @ Error::ForkWithThreads { threads }) => {
            assert!(threads > 1, "{threads}");
            assert!(e.to_string().contains(&threads.to_string()), "{e}");
        }
        other => panic!("expected ForkWithThreads, got {other:?}"),
    }
    assert_eq!(p.pid(), None);
    assert!(!p.is_alive());
    let mut p = Process::new(parks, ());
    p.start_method(StartMethod::Fork);
    assert!(matches!(p.start(), Err(Error::ForkWithThreads { .. })));
    tx.send(()).unwrap();
    let _ = other.join();
}

// ---- more ----

#[test]
fn forkserver_starts_from_many_threads_at_once_all_work() {
    let threads: Vec<_> = (0..6i64)
        .map(|t| {
            std::thread::spawn(move || {
                (0..5i64).all(|i| {
                    let x = t * 10 + i;
                    let mut p = fs(square, (x,));
                    p.start().unwrap();
                    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
                    p.result().unwrap() == x * x
                })
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap());
    }
}

/// Forks a grandchild (a forkserver child has one thread, so `Fork` is
/// allowed there) and returns its result and its parent's pid.
#[worker]
fn fork_a_grandchild(x: i64) -> (i64, u32, u32) {
    let mut p = get_context(StartMethod::Fork).process(my_pid_and_ppid, ());
    p.start().unwrap();
    let (pid, ppid) = p.result().unwrap();
    assert_eq!(Some(pid), p.pid());
    let mut q = get_context(StartMethod::Fork).process(square, (x,));
    q.start().unwrap();
    (q.result().unwrap(), ppid, std::process::id())
}

#[test]
fn a_forkserver_child_can_fork_its_own_children() {
    let (result, grandparent, child) = run_ok(&mut fs(fork_a_grandchild, (8,)));
    assert_eq!(result, 64);
    assert_eq!(grandparent, child);
}

#[test]
#[ignore = "helper, run by a_stopped_server_delays_one_start_and_is_replaced"]
fn helper_stop_the_server() {
    assert_eq!(run_ok(&mut fs(square, (2,))), 4);
    let servers = forkserver_of(std::process::id(), &[]);
    assert_eq!(servers.len(), 1, "one server: {servers:?}");
    let old = servers[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    // The server cannot answer. A start needs it only for the next spare:
    // the one forked already takes the first start, and the start after it
    // waits at most the runtime's reply timeout (10 s) for the server, then
    // has a new one fork it. None fails, none hangs.
    for x in 3..6_i64 {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut p = fs(square, (x,));
            let _ = tx.send(p.start().and_then(|()| p.result()));
        });
        match rx.recv_timeout(BOUND) {
            Ok(Ok(result)) => assert_eq!(result, x * x),
            Ok(Err(e)) => panic!("a start through a stopped server failed: {e}"),
            Err(_) => {
                sigkill(old);
                panic!("a start through a stopped server hung");
            }
        }
    }
    assert!(
        wait_until(BOUND, || !exists(old)),
        "the stopped server was left"
    );
    let new = forkserver_of(std::process::id(), &[]);
    assert_eq!(new.len(), 1, "one server again: {new:?}");
    assert_ne!(new[0], old);
}

#[test]
fn a_stopped_server_delays_one_start_and_is_replaced() {
    helper("helper_stop_the_server", &[]);
}

/// The spares among this process's children: named as the server, marked
/// as it is (they are its forks), but not ignoring SIGINT.
fn spares() -> Vec<u32> {
    children_of(std::process::id())
        .into_iter()
        .filter(|&p| multiproc_tests::is_fork_server(p) && marked_and_ignoring(p) == (true, false))
        .collect()
}

#[test]
#[ignore = "helper, run by a_killed_spare_is_replaced_and_reaped"]
fn helper_kill_the_spare() {
    assert_eq!(run_ok(&mut fs(square, (2,))), 4);
    // Ctrl-C reaches a spare (it has a child's SIGINT); so does a kill.
    for round in 0..3_i64 {
        assert!(
            wait_until(BOUND, || !spares().is_empty()),
            "no spare was forked ahead"
        );
        let killed = spares();
        for &spare in &killed {
            let signal = if round == 0 {
                nix::sys::signal::Signal::SIGINT
            } else {
                nix::sys::signal::Signal::SIGKILL
            };
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(spare as i32), signal);
        }
        assert!(wait_until(BOUND, || killed.iter().all(|&p| !alive(p))));
        // The next start hands its request to another spare.
        assert_eq!(run_ok(&mut fs(square, (round,))), round * round);
        assert!(
            wait_until(BOUND, || killed.iter().all(|&p| !exists(p))),
            "a killed spare was left a zombie"
        );
    }
    assert_eq!(child_pids(), Vec::<u32>::new());
}

#[test]
fn a_killed_spare_is_replaced_and_reaped() {
    helper("helper_kill_the_spare", &[]);
}
