//! Exit semantics: what happens to children when their parent exits
//! normally or is killed. (A stranger setting the child marker: hostile.rs.)

use multiproc::{Process, worker};
use multiproc_tests::{alive, run_self, wait_until};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(30);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("multiproc-exit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[worker]
fn touch_after(path: PathBuf, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    std::fs::write(path, b"done").unwrap();
}

#[worker]
fn sleep_forever() {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Starts a slow non-daemon child and a daemon that never ends, and returns
/// without joining either: exit handling must join the first and terminate
/// the second.
fn leave_children(marker: PathBuf) -> (u32, u32) {
    let mut slow = Process::new(touch_after, (marker, 300));
    slow.start().unwrap();
    let mut daemon = Process::new(sleep_forever, ());
    daemon.set_daemon(true).unwrap();
    daemon.start().unwrap();
    (slow.pid().unwrap(), daemon.pid().unwrap())
}

#[worker]
fn leave_children_in_a_child(marker: PathBuf) -> (u32, u32) {
    leave_children(marker)
}

#[test]
fn a_child_joins_its_children_and_terminates_its_daemons_at_exit() {
    let dir = scratch("child");
    let marker = dir.join("slow-finished");
    let mut p = Process::new(leave_children_in_a_child, (marker.clone(),));
    p.start().unwrap();
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    let (_slow, daemon) = p.result().unwrap();
    // The child exited only after its non-daemon child had finished...
    assert!(marker.exists(), "the non-daemon grandchild was not joined");
    // ...and after terminating (and reaping) its daemon.
    assert!(!alive(daemon), "the daemon grandchild survived");
    let _ = std::fs::remove_dir_all(dir);
}

/// Run only as a subprocess by the next test: exits the test binary with
/// children still running.
#[test]
#[ignore = "helper, run by main_process_exit_joins_and_terminates"]
fn helper_main_exit_with_children() {
    let marker = PathBuf::from(std::env::var("MARKER_PATH").unwrap());
    let (slow, daemon) = leave_children(marker);
    println!("PIDS {slow} {daemon}");
    std::io::stdout().flush().unwrap();
}

#[test]
fn main_process_exit_joins_and_terminates() {
    let dir = scratch("main");
    let marker = dir.join("slow-finished");
    let out = run_self(
        &[
            "--exact",
            "helper_main_exit_with_children",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ],
        &[("MARKER_PATH", marker.to_str().unwrap())],
        BOUND,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pids: Vec<u32> = stdout
        .lines()
        .find_map(|l| l.split_once("PIDS ").map(|(_, pids)| pids))
        .expect("the helper printed its children")
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        marker.exists(),
        "the non-daemon child was not joined at exit"
    );
    assert!(
        !alive(pids[1]),
        "the daemon child survived its parent's exit"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn append_line(path: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    // One write per line: O_APPEND keeps concurrent writers' lines whole.
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// Records its pid, starts two children one level down (one of them from a
/// thread that ends at once), then sleeps for ever.
#[worker]
fn tree(path: PathBuf, depth: u32) {
    append_line(&path, &std::process::id().to_string());
    if depth > 0 {
        let mut a = Process::new(tree, (path.clone(), depth - 1));
        a.start().unwrap();
        let b = std::thread::spawn(move || {
            let mut b = Process::new(tree, (path, depth - 1));
            b.start().unwrap();
            b
        })
        .join()
        .unwrap();
        std::mem::forget((a, b));
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[test]
fn a_killed_parent_takes_its_whole_tree_with_it() {
    let dir = scratch("tree");
    let pids_file = dir.join("pids");
    let mut p = Process::new(tree, (pids_file.clone(), 2));
    p.start().unwrap();
    let read_pids = || -> Vec<u32> {
        std::fs::read_to_string(&pids_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    };
    assert!(
        wait_until(BOUND, || read_pids().len() == 7),
        "the tree did not grow to 7 processes: {:?}",
        read_pids()
    );
    let pids = read_pids();
    assert!(pids.iter().all(|&pid| alive(pid)));
    p.kill().unwrap();
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(-9));
    let gone = wait_until(Duration::from_secs(1), || {
        pids.iter().all(|&pid| !alive(pid))
    });
    let survivors: Vec<u32> = pids.iter().copied().filter(|&pid| alive(pid)).collect();
    for &pid in &survivors {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(gone, "orphans survived for more than 1 s: {survivors:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[worker]
fn sleep_secs(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}

/// Starts a non-daemon child that sleeps for a minute, writes its pid to
/// `path` and waits (for a minute too) to be signalled.
fn start_a_sleeper_and_wait(path: &Path) {
    let mut sleeper = Process::new(sleep_secs, (60,));
    sleeper.start().unwrap();
    append_line(path, &sleeper.pid().unwrap().to_string());
    std::thread::sleep(Duration::from_secs(60));
}

#[worker]
fn parent_of_a_sleeper(path: PathBuf) {
    start_a_sleeper_and_wait(&path);
}

/// Run only as a subprocess by the next test: a main process (not started by
/// multiproc) with a non-daemon child.
#[test]
#[ignore = "helper, run by a_parent_killed_by_sigterm_or_sigint_takes_its_non_daemon_children"]
fn helper_main_process_with_a_sleeper() {
    start_a_sleeper_and_wait(Path::new(&std::env::var("PIDS_PATH").unwrap()));
}

/// Documented in README.md and RELIABILITY.md ("Signals to the parent"):
/// SIGTERM or SIGINT to a parent kills it by the default action, and the
/// parent-death signal takes its children, non-daemon ones included, with it
/// (Python would join them after Ctrl-C and orphan them after SIGTERM).
#[test]
fn a_parent_killed_by_sigterm_or_sigint_takes_its_non_daemon_children() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        for main in [false, true] {
            let case = format!("{signal:?}, main process: {main}");
            let dir = scratch(&format!("signal-{signal:?}-{main}"));
            let pids_file = dir.join("pids");
            // The parent: a multiproc child, or a main process of its own.
            let (parent, mut reap_parent): (u32, Box<dyn FnMut() -> Option<i32>>) = if main {
                let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
                cmd.args([
                    "--exact",
                    "helper_main_process_with_a_sleeper",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env("PIDS_PATH", &pids_file)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null());
                let mut child = cmd.spawn().unwrap();
                let pid = child.id();
                (
                    pid,
                    Box::new(move || {
                        let done = wait_until(BOUND, || child.try_wait().unwrap().is_some());
                        if !done {
                            let _ = child.kill();
                        }
                        let status = child.wait().unwrap();
                        std::os::unix::process::ExitStatusExt::signal(&status).map(|s| -s)
                    }),
                )
            } else {
                let mut p = Process::new(parent_of_a_sleeper, (pids_file.clone(),));
                p.start().unwrap();
                let pid = p.pid().unwrap();
                (pid, Box::new(move || p.join_timeout(BOUND).unwrap()))
            };
            let sleeper = || -> Option<u32> {
                std::fs::read_to_string(&pids_file)
                    .ok()?
                    .lines()
                    .next()?
                    .parse()
                    .ok()
            };
            assert!(
                wait_until(BOUND, || sleeper().is_some()),
                "{case}: no child started"
            );
            let sleeper = sleeper().unwrap();
            assert!(alive(sleeper), "{case}");
            kill(Pid::from_raw(parent as i32), signal).unwrap();
            assert_eq!(reap_parent(), Some(-(signal as i32)), "{case}");
            // An orphan would sleep on for a minute.
            let gone = wait_until(Duration::from_secs(10), || !alive(sleeper));
            if !gone {
                let _ = kill(Pid::from_raw(sleeper as i32), Signal::SIGKILL);
            }
            assert!(
                gone,
                "{case}: the non-daemon child {sleeper} outlived its parent"
            );
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
