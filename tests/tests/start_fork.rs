//! `StartMethod::Fork`, from a `main` of one thread (`harness = false`:
//! libtest would run the checks on threads of its own, where `Fork` is
//! refused). The checks run in order; each prints its name, a failure says
//! which one and why, and the binary exits non-zero if any failed. An
//! `alarm` bounds the whole run (a thread would make `Fork` refuse), and
//! every wait inside has its own bound.

use multiproc::{
    Error, Process, Queue, Resource, StartMethod, Stdio, Worker, current_process, get_context,
    parent_process, worker,
};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);
const FORK: StartMethod = StartMethod::Fork;

type Check = Result<(), String>;
/// Each grandchild's method, and its result and whether its parent was the
/// child that started it (or why it failed).
type Grandchildren = Vec<(String, Result<(i64, bool), String>)>;
/// A named check.
type Named = (&'static str, fn() -> Check);

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

macro_rules! ensure_eq {
    ($left:expr, $right:expr) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(format!(
                "{} = {left:?}, expected {right:?} (line {})",
                stringify!($left),
                line!()
            ));
        }
    }};
}

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

#[worker]
fn whoami() -> (String, u32, u32, Option<(u32, String)>) {
    let me = current_process();
    let parent = parent_process().map(|p| (p.pid(), p.name().to_string()));
    (me.name().to_string(), me.pid(), std::process::id(), parent)
}

#[worker]
fn put_into(q: Queue<String>, what: String) -> u32 {
    q.put(format!("{what} from {}", std::process::id()))
        .unwrap();
    7
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
    [R::RLIMIT_CPU, R::RLIMIT_NOFILE]
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

static SET_BEFORE_FORK: AtomicU64 = AtomicU64::new(0);
static HEAP_BEFORE_FORK: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// What the parent put in its statics before forking (a spawned child sees
/// their initial values).
#[worker]
fn read_statics() -> (u64, Vec<String>) {
    let heap = HEAP_BEFORE_FORK
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    (SET_BEFORE_FORK.load(Ordering::SeqCst), heap)
}

/// Changes the statics in the child: the parent's stay as they were.
#[worker]
fn change_statics() {
    SET_BEFORE_FORK.store(1, Ordering::SeqCst);
    HEAP_BEFORE_FORK
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push("from the child".into());
}

/// Starts grandchildren by every method; their results, and whether each
/// one's parent is this child.
#[worker]
fn start_grandchildren(x: i64) -> Grandchildren {
    let me = std::process::id();
    [
        StartMethod::Spawn,
        StartMethod::Forkserver,
        StartMethod::Fork,
    ]
    .into_iter()
    .map(|m| {
        let run = || -> Result<(i64, bool), String> {
            let mut p = get_context(m).process(square_and_parent, (x,));
            p.start().map_err(|e| e.to_string())?;
            match p.join_timeout(BOUND).map_err(|e| e.to_string())? {
                Some(0) => {}
                other => return Err(format!("exit {other:?}")),
            }
            let (y, ppid) = p.result().map_err(|e| e.to_string())?;
            Ok((y, ppid == me))
        };
        (m.to_string(), run())
    })
    .collect()
}

#[worker]
fn square_and_parent(x: i64) -> (i64, u32) {
    (x * x, nix::unistd::getppid().as_raw() as u32)
}

// ---- helpers ----

/// `Process` of `worker` by `Fork`.
fn fork<W: Worker>(worker: W, args: W::Args) -> Process<W> {
    get_context(FORK).process(worker, args)
}

/// Joins `p` within `BOUND`; its exit code.
fn join<W: Worker>(p: &Process<W>) -> Result<i32, String> {
    p.join_timeout(BOUND)
        .map_err(|e| format!("join: {e}"))?
        .ok_or_else(|| format!("child {:?} did not exit within {BOUND:?}", p.pid()))
}

/// Starts `p`, joins it (exit 0) and takes its result.
fn run<W: Worker>(p: &mut Process<W>) -> Result<W::Output, String> {
    p.start().map_err(|e| format!("start: {e}"))?;
    let code = join(p)?;
    ensure!(code == 0, "exit code {code}");
    p.result().map_err(|e| format!("result: {e}"))
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

fn read_pipe(mut r: impl std::io::Read) -> Result<String, String> {
    let mut s = String::new();
    r.read_to_string(&mut s).map_err(|e| e.to_string())?;
    Ok(s)
}

// ---- checks ----

fn results_names_and_pids() -> Check {
    ensure_eq!(run(&mut fork(square, (7,)))?, 49);
    let mut p = fork(whoami, ());
    p.set_name("forked");
    let (name, pid, os_pid, parent) = run(&mut p)?;
    ensure_eq!(name, "forked");
    ensure_eq!(Some(pid), p.pid());
    ensure_eq!(os_pid, pid);
    ensure_eq!(
        parent,
        Some((std::process::id(), "MainProcess".to_string()))
    );
    Ok(())
}

fn a_panic_gives_1_and_its_message() -> Check {
    let mut p = fork(panics, ("forked sky fell".to_string(),));
    p.stderr(Stdio::null());
    p.start().map_err(|e| e.to_string())?;
    ensure_eq!(join(&p)?, 1);
    match p.result() {
        Err(Error::Panicked {
            message, location, ..
        }) => {
            ensure_eq!(message, "forked sky fell");
            let location = location.unwrap_or_default();
            ensure!(location.contains("start_fork.rs:"), "location {location:?}");
            Ok(())
        }
        other => Err(format!("expected Panicked, got {other:?}")),
    }
}

fn an_exit_code_and_signals() -> Check {
    let mut p = fork(exits, (3,));
    p.start().map_err(|e| e.to_string())?;
    ensure_eq!(join(&p)?, 3);
    ensure!(
        matches!(p.result(), Err(Error::Exited { code: 3, .. })),
        "not Exited"
    );
    let mut k = fork(sleep_ms, (60_000,));
    k.start().map_err(|e| e.to_string())?;
    ensure!(k.is_alive(), "not alive");
    ensure_eq!(
        k.join_timeout(Duration::ZERO).map_err(|e| e.to_string())?,
        None
    );
    k.kill().map_err(|e| e.to_string())?;
    ensure_eq!(join(&k)?, -9);
    ensure!(
        matches!(k.result(), Err(Error::Killed { signal: 9, .. })),
        "not Killed by 9"
    );
    let mut t = fork(sleep_ms, (60_000,));
    t.start().map_err(|e| e.to_string())?;
    t.terminate().map_err(|e| e.to_string())?;
    ensure_eq!(join(&t)?, -15);
    Ok(())
}

fn a_queue_argument() -> Check {
    let q = Queue::<String>::new().map_err(|e| e.to_string())?;
    let mut p = fork(put_into, (q.clone(), "hello".to_string()));
    p.start().map_err(|e| e.to_string())?;
    let pid = p.pid().unwrap_or(0);
    let got = q.get_timeout(BOUND).map_err(|e| format!("get: {e:?}"))?;
    ensure_eq!(got, format!("hello from {pid}"));
    ensure_eq!(join(&p)?, 0);
    ensure_eq!(p.result().map_err(|e| e.to_string())?, 7);
    Ok(())
}

fn env_per_process() -> Check {
    // SAFETY: this process has one thread.
    unsafe { std::env::set_var("FORK_PARENT_VAR", "from main") };
    ensure_eq!(
        run(&mut fork(getenv, ("FORK_PARENT_VAR".into(),)))?,
        Some("from main".to_string())
    );
    let mut p = fork(getenv, ("FORK_A".into(),));
    p.env("FORK_A", "one").env("FORK_A", "two");
    ensure_eq!(run(&mut p)?, Some("two".to_string()));
    let mut p = fork(getenv, ("FORK_PARENT_VAR".into(),));
    p.env_remove("FORK_PARENT_VAR");
    ensure_eq!(run(&mut p)?, None);
    let mut p = fork(env_keys, ());
    p.env("DROPPED", "x").env_clear().env("ONLY", "1");
    ensure_eq!(run(&mut p)?, vec!["ONLY".to_string()]);
    // The child's changes stayed in the child.
    ensure_eq!(
        std::env::var("FORK_PARENT_VAR").ok(),
        Some("from main".to_string())
    );
    ensure!(std::env::var_os("ONLY").is_none(), "ONLY leaked back");
    // SAFETY: as above.
    unsafe { std::env::remove_var("FORK_PARENT_VAR") };
    ensure_eq!(run(&mut fork(getenv, ("FORK_PARENT_VAR".into(),)))?, None);
    Ok(())
}

fn cwd_per_process() -> Check {
    let here = std::env::current_dir().map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir()
        .canonicalize()
        .map_err(|e| e.to_string())?;
    ensure_eq!(run(&mut fork(cwd, ()))?, here);
    let mut p = fork(cwd, ());
    p.current_dir(dir.join(format!("multiproc-fork-missing-{}", std::process::id())));
    match p.start() {
        Err(Error::Spawn(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
        other => return Err(format!("a missing directory: {other:?}")),
    }
    ensure_eq!(p.pid(), None);
    ensure_eq!(std::env::current_dir().map_err(|e| e.to_string())?, here);
    // The child starts in its own directory; this process stays in its.
    let mut p = fork(cwd, ());
    p.current_dir(&dir);
    let theirs = run(&mut p)?;
    ensure_eq!(std::env::current_dir().map_err(|e| e.to_string())?, here);
    ensure!(
        theirs == dir,
        "the child of current_dir({dir:?}) started in {theirs:?}, this process's directory"
    );
    Ok(())
}

fn limits_and_stdio() -> Check {
    let mut p = fork(limits, ());
    p.rlimit(Resource::Cpu, 100, 200)
        .rlimit(Resource::OpenFiles, 64, 128);
    ensure_eq!(run(&mut p)?, vec![(100, 200), (64, 128)]);
    let mut p = fork(print_lines, (3,));
    p.stdout(Stdio::piped()).stderr(Stdio::piped());
    p.start().map_err(|e| e.to_string())?;
    // A few bytes: the pipes hold them until the child has exited.
    ensure_eq!(join(&p)?, 0);
    let out = read_pipe(p.take_stdout().ok_or("no stdout")?)?;
    let err = read_pipe(p.take_stderr().ok_or("no stderr")?)?;
    ensure_eq!(out, "line 0\nline 1\nline 2\n");
    ensure_eq!(err, "done on stderr\n");
    let mut p = fork(print_lines, (50,));
    p.stdout(Stdio::null()).stderr(Stdio::null());
    run(&mut p)?;
    Ok(())
}

fn the_child_sees_the_parents_statics() -> Check {
    SET_BEFORE_FORK.store(42, Ordering::SeqCst);
    HEAP_BEFORE_FORK
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push("set in main".into());
    ensure_eq!(
        run(&mut fork(read_statics, ()))?,
        (42, vec!["set in main".to_string()])
    );
    // A spawned child starts from the binary's initial values instead.
    let mut spawned = Process::new(read_statics, ());
    spawned.start_method(StartMethod::Spawn);
    ensure_eq!(run(&mut spawned)?, (0, Vec::<String>::new()));
    // What the child changes is its own copy.
    run(&mut fork(change_statics, ()))?;
    ensure_eq!(SET_BEFORE_FORK.load(Ordering::SeqCst), 42);
    ensure_eq!(
        HEAP_BEFORE_FORK
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len(),
        1
    );
    Ok(())
}

fn the_childs_own_children_work() -> Check {
    let got = run(&mut fork(start_grandchildren, (9,)))?;
    let want: Grandchildren = ["spawn", "forkserver", "fork"]
        .into_iter()
        .map(|m| (m.to_string(), Ok((81, true))))
        .collect();
    ensure_eq!(got, want);
    Ok(())
}

static MAIN_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn hook() {
    // SAFETY: getpid and write take plain values and a static buffer.
    unsafe {
        if libc::getpid() != MAIN_PID.load(Ordering::SeqCst) {
            let msg = b"ATEXIT-HOOK-RAN-IN-A-FORKED-CHILD\n";
            libc::write(2, msg.as_ptr().cast(), msg.len());
        }
    }
}

fn no_atexit_hooks_of_the_parent_in_the_child() -> Check {
    MAIN_PID.store(std::process::id() as i32, Ordering::SeqCst);
    // SAFETY: registers a function with the C runtime; it only reads an
    // atomic and writes to descriptor 2.
    ensure!(unsafe { libc::atexit(hook) } == 0, "atexit refused");
    let mut p = fork(square, (2,));
    p.stderr(Stdio::piped());
    p.start().map_err(|e| e.to_string())?;
    ensure_eq!(join(&p)?, 0);
    let err = read_pipe(p.take_stderr().ok_or("no stderr")?)?;
    ensure!(
        !err.contains("ATEXIT-HOOK"),
        "the parent's atexit hook ran in the child: {err:?}"
    );
    Ok(())
}

/// A Fork pool is refused at build, naming the way out: it would replace
/// dead workers from its own thread, where a fork is refused, and its next
/// tasks would wait for ever. Nothing is started.
fn a_pool_by_fork_is_refused_at_build() -> Check {
    let before = threads();
    match get_context(FORK).pool().processes(2).build() {
        Err(Error::InvalidArgument(why)) => {
            ensure!(
                why.contains("Forkserver"),
                "the refusal names no way out: {why}"
            );
        }
        Ok(_) => return Err("a Fork pool was built".into()),
        Err(other) => return Err(format!("building a Fork pool: {other}")),
    }
    ensure_eq!(threads(), before);
    Ok(())
}

fn a_second_thread_refuses_the_next_fork() -> Check {
    ensure_eq!(threads(), 1);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv_timeout(BOUND));
    let mut p = fork(square, (3,));
    let refused = p.start();
    let _ = tx.send(());
    let _ = other.join();
    match refused {
        Err(Error::ForkWithThreads { threads }) => ensure!(threads >= 2, "threads {threads}"),
        other => return Err(format!("expected ForkWithThreads, got {other:?}")),
    }
    ensure_eq!(p.pid(), None);
    // The thread is gone (its task leaves /proc soon after the join):
    // forking works again, and the refused process can still start.
    let deadline = Instant::now() + BOUND;
    while threads() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    ensure_eq!(threads(), 1);
    ensure_eq!(run(&mut p)?, 9);
    Ok(())
}

fn the_parent_stays_single_threaded() -> Check {
    // Everything above ran with `Fork`; none of it may have left a thread
    // behind, or every later `Fork` would be refused.
    ensure_eq!(threads(), 1);
    Ok(())
}

fn main() {
    // A bound on the whole run: SIGALRM ends it (non-zero) if a check hangs.
    // SAFETY: alarm takes an integer.
    unsafe { libc::alarm(300) };
    let checks: &[Named] = &[
        ("results_names_and_pids", results_names_and_pids),
        (
            "a_panic_gives_1_and_its_message",
            a_panic_gives_1_and_its_message,
        ),
        ("an_exit_code_and_signals", an_exit_code_and_signals),
        ("a_queue_argument", a_queue_argument),
        ("env_per_process", env_per_process),
        ("cwd_per_process", cwd_per_process),
        ("limits_and_stdio", limits_and_stdio),
        (
            "the_child_sees_the_parents_statics",
            the_child_sees_the_parents_statics,
        ),
        ("the_childs_own_children_work", the_childs_own_children_work),
        (
            "no_atexit_hooks_of_the_parent_in_the_child",
            no_atexit_hooks_of_the_parent_in_the_child,
        ),
        (
            "the_parent_stays_single_threaded",
            the_parent_stays_single_threaded,
        ),
        (
            "a_second_thread_refuses_the_next_fork",
            a_second_thread_refuses_the_next_fork,
        ),
        (
            "a_pool_by_fork_is_refused_at_build",
            a_pool_by_fork_is_refused_at_build,
        ),
    ];
    let mut failed = Vec::new();
    for (name, check) in checks {
        println!("check {name} ...");
        let outcome = catch_unwind(AssertUnwindSafe(check))
            .unwrap_or_else(|_| Err("panicked (see above)".to_string()));
        match outcome {
            Ok(()) => println!("check {name} ... ok"),
            Err(why) => {
                println!("check {name} ... FAILED: {why}");
                failed.push(*name);
            }
        }
    }
    if failed.is_empty() {
        println!("start_fork: {} checks passed", checks.len());
    } else {
        println!(
            "start_fork: {} of {} checks FAILED: {}",
            failed.len(),
            checks.len(),
            failed.join(", ")
        );
        std::process::exit(1);
    }
}
