//! `Pool` never hangs: workers killed, aborting or exiting mid-task, chaos,
//! descriptor and memory bounds, no survivors after drop or a killed parent.

use multiproc::{Error, Pool, Queue, worker};
use multiproc_tests::{alive, open_fds, run_bounded, wait_until};
use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);

fn pool(processes: usize) -> Pool {
    Pool::builder().processes(processes).build().unwrap()
}

fn kill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[worker]
fn square(x: u64) -> u64 {
    x * x
}

#[worker]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[worker]
fn die(how: String) -> u32 {
    match how.as_str() {
        "abort" => std::process::abort(),
        "exit" => std::process::exit(3),
        _ => unreachable!(),
    }
}

static PIDS: std::sync::OnceLock<Queue<u32>> = std::sync::OnceLock::new();

#[worker]
fn keep_queue(q: Queue<u32>) {
    let _ = PIDS.set(q);
}

/// Says which process runs it, then sleeps for a minute.
#[worker]
fn report_and_hang() -> u32 {
    PIDS.get().unwrap().put(std::process::id()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
    0
}

#[test]
fn a_worker_killed_mid_task_fails_its_task_within_100_ms_and_is_replaced() {
    let q = Queue::new().unwrap();
    let pool = Pool::builder()
        .processes(2)
        .initializer(keep_queue, (q.clone(),))
        .build()
        .unwrap();
    let hung = pool.apply_async(report_and_hang, ()).unwrap();
    let victim = q.get_timeout(BOUND).unwrap();
    // A worker busy with a long task takes no more work, so these all go to
    // the other worker and none is lost with the victim.
    let others: Vec<_> = (0..200)
        .map(|i| pool.apply_async(square, (i,)).unwrap())
        .collect();
    assert!(pool.pids().contains(&victim));
    let killed = Instant::now();
    kill(victim);
    match hung.get() {
        Err(Error::Killed { pid, signal: 9, .. }) => assert_eq!(pid, victim),
        other => panic!("{other:?}"),
    }
    let took = killed.elapsed();
    assert!(took < Duration::from_millis(100), "{took:?}");
    for (i, r) in others.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), (i * i) as u64);
    }
    assert!(wait_until(BOUND, || {
        let pids = pool.pids();
        pids.len() == 2 && !pids.contains(&victim)
    }));
    assert_eq!(pool.apply(square, (9,)).unwrap(), 81);
}

#[test]
fn a_worker_that_aborts_or_exits_fails_its_task_naming_pid_and_cause() {
    let pool = pool(2);
    pool.map(square, 0..10).unwrap(); // warm: workers ready
    let start = Instant::now();
    match pool.apply(die, ("abort".to_string(),)) {
        Err(Error::Killed { pid, signal: 6, .. }) => assert!(pid > 0),
        other => panic!("{other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    pool.map(square, 0..10).unwrap();
    let start = Instant::now();
    let err = pool.apply(die, ("exit".to_string(),)).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    match &err {
        Error::Exited { code: 3, .. } => {}
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("exited with status 3"), "{err}");
    // The pool goes on, with replacements.
    assert_eq!(pool.map(square, 0..100).unwrap()[99], 99 * 99);
    assert_eq!(pool.pids().len(), 2);
}

#[worker]
fn spin(i: u64) -> (u64, u32) {
    let until = Instant::now() + Duration::from_micros(20);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    (i, std::process::id())
}

#[test]
fn chaos_killing_random_workers_loses_no_task() {
    const TASKS: u64 = 100_000;
    let pool = pool(2);
    let done = AtomicBool::new(false);
    let kills = AtomicUsize::new(0);
    let mut results = Vec::with_capacity(TASKS as usize);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(15));
                let pids = pool.pids();
                if pids.is_empty() {
                    continue;
                }
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                kill(pids[(n >> 33) as usize % pids.len()]);
                kills.fetch_add(1, Ordering::Relaxed);
            }
        });
        results.extend(pool.imap_unordered(spin, 0..TASKS).unwrap());
        done.store(true, Ordering::Relaxed);
    });
    assert!(kills.load(Ordering::Relaxed) > 3);
    assert_eq!(results.len(), TASKS as usize);
    let mut seen = HashSet::new();
    let mut died = 0;
    for r in results {
        let index = match r {
            Ok((i, _)) => i,
            Err(Error::TaskFailed { index, source }) => {
                assert!(
                    matches!(*source, Error::Killed { signal: 9, .. }),
                    "{source:?}"
                );
                died += 1;
                index as u64
            }
            Err(e) => panic!("{e:?}"),
        };
        assert!(seen.insert(index), "input {index} reported twice");
    }
    assert_eq!(seen.len(), TASKS as usize, "some input vanished");
    assert!(died > 0, "no task reported a death");
    eprintln!(
        "{} kills, {died} tasks died with their worker",
        kills.load(Ordering::Relaxed)
    );
    assert_eq!(pool.map(square, 0..1000).unwrap()[999], 999 * 999);
}

#[test]
fn queued_work_holds_no_descriptors() {
    // A million tasks under a limit of 256 open descriptors, in a subprocess.
    let exe = std::env::current_exe().unwrap();
    let script = "ulimit -n 256 && exec \"$0\" \"$@\"";
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", script]).arg(exe).args([
        "--exact",
        "helper_a_million_queued_tasks",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    let out = run_bounded(cmd, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("QUEUED 1000000"), "{stdout}");
}

#[test]
#[ignore = "helper, run by queued_work_holds_no_descriptors"]
fn helper_a_million_queued_tasks() {
    let limit = std::fs::read_to_string("/proc/self/limits").unwrap();
    assert!(
        limit
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 256 ")),
        "{limit}"
    );
    let pool = pool(2);
    let before = open_fds().len();
    let pending: Vec<_> = (0..1_000_000u64)
        .map(|i| pool.apply_async(square, (i % 1000,)).unwrap())
        .collect();
    let during = open_fds().len();
    assert!(during <= before + 2, "{before} -> {during} descriptors");
    let mut sum = 0u64;
    for r in pending {
        sum += r.get().unwrap();
    }
    assert_eq!(sum, 1000 * (0..1000u64).map(|i| i * i).sum::<u64>());
    println!("QUEUED 1000000 with {during} descriptors open");
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn imap_over_ten_million_items_runs_in_flat_memory() {
    let pool = pool(2);
    let mut it = pool
        .chunksize(10_000)
        .imap(square, 0..10_000_000u64)
        .unwrap();
    let mut sum = 0u64;
    for r in it.by_ref().take(100_000) {
        sum = sum.wrapping_add(r.unwrap());
    }
    let warm = rss_kib();
    let mut peak = warm;
    for (i, r) in it.enumerate() {
        sum = sum.wrapping_add(r.unwrap());
        if i % 500_000 == 0 {
            peak = peak.max(rss_kib());
        }
    }
    let expected = (0..10_000_000u64).fold(0u64, |s, x| s.wrapping_add(x * x));
    assert_eq!(sum, expected);
    // The results alone would be 80 MB if anything kept them.
    assert!(
        peak < warm + 32 * 1024,
        "RSS grew from {warm} KiB to {peak} KiB"
    );
}

#[test]
fn dropping_a_busy_pool_leaves_no_worker() {
    let pool = pool(2);
    let _pending: Vec<_> = (0..1000)
        .map(|_| pool.apply_async(nap, (10_000,)).unwrap())
        .collect();
    let _lazy = pool.imap(nap, [10_000, 10_000]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let pids = pool.pids();
    assert_eq!(pids.len(), 2);
    let start = Instant::now();
    drop(pool);
    assert!(start.elapsed() < Duration::from_secs(2));
    for pid in pids {
        assert!(!alive(pid), "worker {pid} survived the pool");
    }
}

#[test]
#[ignore = "helper, run by a_killed_parent_takes_its_workers_with_it"]
fn helper_pool_then_sleep() {
    let pool = pool(3);
    let _busy: Vec<_> = (0..100)
        .map(|_| pool.apply_async(nap, (60_000,)).unwrap())
        .collect();
    // Make sure every worker is up before reporting.
    assert!(wait_until(BOUND, || pool.pids().len() == 3));
    let pids: Vec<String> = pool.pids().iter().map(u32::to_string).collect();
    println!("PIDS {}", pids.join(" "));
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_parent_takes_its_workers_with_it() {
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "helper_pool_then_sleep",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let pids: Vec<u32> = loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(n > 0, "the helper exited without reporting its workers");
        // libtest may print "test name ... " on the same line first.
        if let Some((_, pids)) = line.trim().split_once("PIDS ") {
            break pids.split(' ').map(|p| p.parse().unwrap()).collect();
        }
    };
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|&p| alive(p)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let gone = wait_until(Duration::from_secs(1), || pids.iter().all(|&p| !alive(p)));
    for &p in &pids {
        kill(p);
    }
    assert!(gone, "pool workers outlived their SIGKILLed parent");
}
