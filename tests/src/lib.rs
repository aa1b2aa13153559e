//! Helpers shared by the integration tests: process liveness from `/proc`,
//! bounded waits, running the test binary itself as a subprocess, and
//! running `python3` beside a test ([`python`]).

pub mod chaos;
pub mod python;
pub mod serde_types;

use multiproc::{Connection, Process, Worker, worker};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A writer into a shared buffer: what a logger or subscriber under test
/// printed.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// The lines written so far that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        let out = self.0.lock().unwrap();
        String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// This process's count of write syscalls (`write`, `writev`, ...), from
/// `/proc/self/io`.
pub fn syscw() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("syscw: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Whether `pid` is a running (not zombie, not gone) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => false,
        },
        Err(_) => false,
    }
}

/// Whether `pid` still exists at all, zombie included.
pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes; returns
/// whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[worker]
fn warm_up_child() {}

/// In the main process, when the default start method is `Forkserver`
/// (`MULTIPROC_START_METHOD=forkserver`, as `.ci/run` runs the suites once):
/// starts the fork server, once, by starting a child. The server is one
/// descriptor and one child of this process for as long as it lives, so the
/// suites' before-and-after counts must find it there before they start.
pub fn warm_up() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if multiproc::parent_process().is_some()
        || multiproc::get_start_method() != multiproc::StartMethod::Forkserver
    {
        return;
    }
    ONCE.call_once(|| {
        let mut p = Process::new(warm_up_child, ());
        p.start().expect("start the warm-up child");
        p.join_timeout(Duration::from_secs(30))
            .expect("join the warm-up child")
            .expect("the warm-up child ended");
    });
}

/// Whether `pid` is a fork server (by its name).
pub fn is_fork_server(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim_end() == multiproc::FORKSERVER_NAME)
}

/// The descriptors open in this process, from `/proc/self/fd` (after
/// [`warm_up`]).
pub fn open_fds() -> Vec<i32> {
    warm_up();
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

/// The pids of this process's children, from `/proc/self/task/*/children`,
/// the fork server left out (after [`warm_up`]).
pub fn child_pids() -> Vec<u32> {
    warm_up();
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
    {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    pids.retain(|&pid| !is_fork_server(pid));
    pids.sort_unstable();
    pids
}

/// Runs this test binary again with `args` and extra `env`, killing it if it
/// takes longer than `timeout`. Panics on timeout.
pub fn run_self(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Output {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(args).envs(env.iter().copied());
    run_bounded(cmd, timeout)
}

/// Builds the example `name` of `multiproc-examples` with `feature` (an
/// example that needs one is not built by a plain test run), then runs it as
/// [`run_bounded`] does. Call from a test binary of that package.
pub fn run_example_with(name: &str, feature: &str, timeout: Duration) -> Output {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "-p",
            "multiproc-examples",
            "--features",
            feature,
        ])
        .args(["--example", name])
        .status()
        .expect("cargo");
    assert!(status.success(), "building the example {name}");
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    run_bounded(Command::new(dir.join("examples").join(name)), timeout)
}

/// Runs `cmd` with stdin closed and output captured, killing it if it takes
/// longer than `timeout`. Panics on timeout.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null());
    run_bounded_with_stdin(cmd, timeout)
}

/// As [`run_bounded`], keeping whatever stdin `cmd` was given. Its output is
/// read while it runs, so a child that prints more than a pipe holds does
/// not block.
pub fn run_bounded_with_stdin(mut cmd: Command, timeout: Duration) -> Output {
    use std::io::Read;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id();
    fn drain(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = from.read_to_end(&mut all);
            all
        })
    }
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // The pipes end when the child and anything that inherited them exit.
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{cmd:?} (pid {pid}) did not finish in {timeout:?}; stderr: {}",
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Joins `p` within a minute, so a bug fails the test instead of hanging CI;
/// returns the exit code.
pub fn join<W: Worker>(p: &Process<W>) -> i32 {
    p.join_timeout(Duration::from_secs(60))
        .unwrap()
        .expect("child did not exit within the bound")
}

/// A started `Process` of `worker` with `args` (panics if it cannot start).
pub fn start<W: Worker>(worker: W, args: W::Args) -> Process<W> {
    let mut p = Process::new(worker, args);
    p.start().unwrap();
    p
}

/// A child that waits for one word on `conn`, or for the parent's end to
/// close, and exits.
#[worker]
pub fn wait_for_word(conn: Connection<String>) {
    let _ = conn.recv();
}
