//! Runs the examples and checks what they print.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The built example binary, built on demand when this test runs alone.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(name);
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "multiproc-examples", "--example", name])
            .status()
            .unwrap();
        assert!(status.success(), "building example {name}");
    }
    path
}

/// Runs an example with a time bound.
fn run(name: &str) -> Output {
    let mut child = Command::new(example(name))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("example {name} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "example {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn foo_prints_foo() {
    assert_eq!(String::from_utf8(run("foo").stdout).unwrap(), "Foo\n");
}

#[test]
fn queue_carries_the_greeting() {
    assert_eq!(
        String::from_utf8(run("queue").stdout).unwrap(),
        "Hello from worker!\n"
    );
}

#[test]
fn shared_counter_counts_to_400000() {
    assert_eq!(
        String::from_utf8(run("shared_counter").stdout).unwrap(),
        "counter = 400000\nsquares = [0, 1, 4, 9, 16, 25, 36, 49]\n"
    );
}

#[test]
fn pipe_carries_the_tuple() {
    assert_eq!(
        String::from_utf8(run("pipe").stdout).unwrap(),
        "(42, None, \"hello\")\n"
    );
}

#[test]
fn five_workers_all_start_before_any_finishes() {
    let stdout = String::from_utf8(run("processes").stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 10, "{stdout}");
    let (started, finished) = lines.split_at(5);
    let mut started = started.to_vec();
    let mut finished = finished.to_vec();
    started.sort_unstable();
    finished.sort_unstable();
    for i in 0..5 {
        assert_eq!(
            started[i],
            format!("Worker {i} started in Process-{}", i + 1)
        );
        assert_eq!(
            finished[i],
            format!("Worker {i} finished in Process-{}", i + 1)
        );
    }
}

#[test]
fn five_processes_print_under_a_lock() {
    assert_eq!(
        String::from_utf8(run("lock").stdout).unwrap(),
        "Critical section!\n".repeat(5)
    );
}

#[test]
fn pool_squares_five_numbers() {
    assert_eq!(
        String::from_utf8(run("pool").stdout).unwrap(),
        "[1, 4, 9, 16, 25]\n"
    );
}

#[test]
fn progress_bar_counts_primes() {
    // Not a terminal: indicatif draws nothing; the count is printed.
    let out = run("progress");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "2262 primes below 20000\n"
    );
}

#[test]
fn listener_serves_a_python_client() {
    let found = Command::new("python3")
        .args(["-c", "import multiprocessing.connection"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: python3 (with multiprocessing) not found on PATH");
        return;
    }
    let stdout = String::from_utf8(run("listener").stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(lines[0].starts_with("listening on 127.0.0.1:"), "{stdout}");
    assert_eq!(
        lines[1..],
        [
            "served \"the quick brown fox\": 4 words",
            "served \"jumps over the lazy dog\": 5 words",
            "served \"multiproc speaks python\": 3 words",
            "the Python client checked every answer and exited with 0",
        ]
    );
}
