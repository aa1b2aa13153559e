//! Child set-up on `Process` and `PoolBuilder`: environment, working
//! directory, stdio, resource limits and the initializer, and how each
//! fails: a typed error from `start()`/`build()` and no half-configured
//! child, or a clean `EPIPE` in the child.

use multiproc::{Error, Limited, Pool, Process, Queue, Resource, Stdio, worker};
use multiproc_tests::{alive, child_pids, exists};
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(60);

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
fn print_lines(n: u32) {
    for i in 0..n {
        println!("line {i}");
    }
    eprintln!("done on stderr");
}

#[worker]
fn echo_stdin() -> String {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    line.trim_end().to_uppercase()
}

/// Writes until stdout fails; returns the error's kind.
#[worker]
fn write_until_error() -> String {
    let mut out = std::io::stdout().lock();
    for _ in 0..100_000 {
        if let Err(e) = out.write_all(&[b'x'; 4096]).and_then(|()| out.flush()) {
            return format!("{:?}", e.kind());
        }
    }
    "no error".into()
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

/// Opens /dev/null until it fails; returns how many opened and the error.
#[worker]
fn open_many() -> (usize, String) {
    let mut files = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(e) => return (files.len(), format!("{:?}", e.raw_os_error())),
        }
        if files.len() > 100_000 {
            return (files.len(), "no limit".into());
        }
    }
}

#[worker]
fn allocate(mib: usize) -> usize {
    let v = std::hint::black_box(vec![1u8; mib << 20]);
    v.iter().step_by(4096).map(|&b| b as usize).sum::<usize>() / (256 * mib)
}

#[worker]
fn spin_forever() {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

#[worker]
fn touch(path: PathBuf) {
    std::fs::write(path, b"ran").unwrap();
}

#[worker]
fn init_put(q: Queue<String>, what: String) {
    q.put(format!("init {what}")).unwrap();
}

#[worker]
fn init_panics(why: String) {
    panic!("initializer refuses: {why}");
}

#[worker]
fn put_after_init(q: Queue<String>) -> u32 {
    q.put("worker".into()).unwrap();
    7
}

#[worker]
fn my_pid() -> u32 {
    std::process::id()
}

fn started<W: multiproc::Worker>(p: &mut Process<W>) {
    p.start().unwrap();
    assert_eq!(
        p.join_timeout(BOUND).unwrap(),
        Some(0),
        "the child did not finish"
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

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("multiproc-setup-{}-{name}", std::process::id()))
}

// ---- environment ----

#[test]
fn env_sets_removes_and_clears_and_later_calls_win() {
    let mut p = Process::new(getenv, ("SETUP_A".into(),));
    p.env("SETUP_A", "one").env("SETUP_A", "two");
    started(&mut p);
    assert_eq!(p.result().unwrap().as_deref(), Some("two"));

    // Inherited unless removed.
    let mut p = Process::new(getenv, ("PATH".into(),));
    started(&mut p);
    assert!(p.result().unwrap().is_some());
    let mut p = Process::new(getenv, ("PATH".into(),));
    p.env_remove("PATH");
    started(&mut p);
    assert_eq!(p.result().unwrap(), None);
    // Set after a remove: set.
    let mut p = Process::new(getenv, ("SETUP_B".into(),));
    p.env_remove("SETUP_B").env("SETUP_B", "back");
    started(&mut p);
    assert_eq!(p.result().unwrap().as_deref(), Some("back"));

    // Cleared: only what was set afterwards; the runtime's marker never
    // shows, and the child still started.
    let mut p = Process::new(env_keys, ());
    p.env("DROPPED", "x").env_clear().env("ONLY", "1");
    started(&mut p);
    assert_eq!(p.result().unwrap(), vec!["ONLY".to_string()]);
}

#[test]
fn env_changes_never_disturb_the_runtime_marker() {
    // Removing it is harmless: the runtime sets its own.
    let mut p = Process::new(getenv, ("MULTIPROC_CHILD".into(),));
    p.env_remove("MULTIPROC_CHILD");
    started(&mut p);
    assert_eq!(p.result().unwrap(), None, "the child took the marker out");
    // Setting it is refused before anything starts.
    let mut p = Process::new(getenv, ("X".into(),));
    p.env("MULTIPROC_CHILD", "3,1");
    match p.start() {
        Err(Error::InvalidArgument(why)) => assert!(why.contains("marker"), "{why}"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(p.pid(), None);
}

#[test]
fn a_bad_env_key_or_value_is_refused_and_nothing_starts() {
    let before = child_pids();
    for (key, value, says) in [
        ("A=B", "v", "contains '='"),
        ("", "v", "is empty"),
        ("NUL\0KEY", "v", "NUL"),
        ("GOOD", "bad\0value", "NUL"),
    ] {
        let mut p = Process::new(getenv, ("GOOD".into(),));
        p.env(key, value);
        match p.start() {
            Err(Error::InvalidArgument(why)) => assert!(why.contains(says), "{key:?}: {why}"),
            other => panic!("{key:?}: unexpected {other:?}"),
        }
        assert_eq!(p.pid(), None);
    }
    let mut p = Process::new(getenv, ("GOOD".into(),));
    p.env_remove("A=B");
    assert!(matches!(p.start(), Err(Error::InvalidArgument(_))));
    // None of the refused starts left a child behind.
    let new: Vec<u32> = child_pids()
        .into_iter()
        .filter(|c| !before.contains(c))
        .collect();
    assert!(
        new.iter().all(|&pid| !cmdline_runs_getenv(pid)),
        "a refused start left a child: {new:?}"
    );
}

/// Whether `pid` is one of our children started by a refused `start()`:
/// such a child would hold the spawn marker in its environment at birth,
/// which `/proc/PID/environ` shows until it exits.
fn cmdline_runs_getenv(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|&b| b == 0).any(|kv| kv.starts_with(b"GOOD=")))
        .unwrap_or(false)
}

// ---- working directory ----

#[test]
fn current_dir_is_where_the_child_starts() {
    let dir = std::env::temp_dir().canonicalize().unwrap();
    let mut p = Process::new(cwd, ());
    p.current_dir(&dir);
    started(&mut p);
    assert_eq!(p.result().unwrap(), dir);
}

#[test]
fn a_missing_or_non_directory_current_dir_is_an_error_and_nothing_starts() {
    let missing = temp_path("no-such-dir");
    let mut p = Process::new(cwd, ());
    p.current_dir(&missing);
    match p.start() {
        Err(Error::Spawn(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
            assert!(e.to_string().contains("no-such-dir"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(p.pid(), None);

    let file = temp_path("a-file");
    std::fs::write(&file, b"").unwrap();
    let mut p = Process::new(cwd, ());
    p.current_dir(&file);
    match p.start() {
        Err(Error::InvalidArgument(why)) => assert!(why.contains("not a directory"), "{why}"),
        other => panic!("unexpected {other:?}"),
    }
    std::fs::remove_file(&file).unwrap();
    // A start that failed leaves the process startable once fixed.
    p.current_dir("/");
    started(&mut p);
    assert_eq!(p.result().unwrap(), PathBuf::from("/"));
}

// ---- stdio ----

#[test]
fn piped_stdout_and_stderr_carry_the_childs_output() {
    let mut p = Process::new(print_lines, (3,));
    p.stdout(Stdio::piped()).stderr(Stdio::piped());
    assert!(p.take_stdout().is_none(), "no pipe before start");
    p.start().unwrap();
    let out = read_all(p.take_stdout().unwrap());
    let err = read_all(p.take_stderr().unwrap());
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    assert_eq!(out, "line 0\nline 1\nline 2\n");
    assert_eq!(err, "done on stderr\n");
    assert!(p.take_stdout().is_none(), "the end moved out");
}

#[test]
fn piped_stdin_reaches_the_child() {
    let mut p = Process::new(echo_stdin, ());
    p.stdin(Stdio::piped());
    p.start().unwrap();
    let mut stdin = p.take_stdin().unwrap();
    stdin.write_all(b"hello child\n").unwrap();
    drop(stdin);
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    assert_eq!(p.result().unwrap(), "HELLO CHILD");
}

#[test]
fn null_stdin_reads_end_of_file_and_null_stdout_discards() {
    let mut p = Process::new(echo_stdin, ());
    p.stdin(Stdio::null());
    started(&mut p);
    assert_eq!(p.result().unwrap(), "");
    let mut p = Process::new(print_lines, (100,));
    p.stdout(Stdio::null()).stderr(Stdio::null());
    started(&mut p);
}

#[test]
fn stdout_to_a_file() {
    let path = temp_path("stdout");
    let mut p = Process::new(print_lines, (2,));
    p.stdout(std::fs::File::create(&path).unwrap())
        .stderr(Stdio::null());
    started(&mut p);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "line 0\nline 1\n");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_dropped_stdout_reader_gives_the_child_a_clean_epipe() {
    let mut p = Process::new(write_until_error, ());
    p.stdout(Stdio::piped());
    p.start().unwrap();
    drop(p.take_stdout().unwrap());
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    assert_eq!(p.result().unwrap(), "BrokenPipe");
}

// ---- resource limits ----

#[test]
fn limits_are_set_before_the_worker_runs() {
    let mut p = Process::new(limits, ());
    p.rlimit(Resource::AddressSpace, 1 << 40, Resource::UNLIMITED)
        .rlimit(Resource::Cpu, 100, 200)
        .rlimit(Resource::OpenFiles, 64, 128)
        .rlimit(Resource::CoreSize, 0, 0)
        .rlimit(Resource::Cpu, 300, 400); // the last call for a resource wins
    started(&mut p);
    assert_eq!(
        p.result().unwrap(),
        vec![(1 << 40, u64::MAX), (300, 400), (64, 128), (0, 0)]
    );
}

#[test]
fn an_open_files_limit_makes_opens_fail_with_emfile() {
    let mut p = Process::new(open_many, ());
    p.rlimit(Resource::OpenFiles, 32, 32);
    started(&mut p);
    let (opened, error) = p.result().unwrap();
    assert!(opened < 32, "{opened}");
    assert_eq!(error, format!("Some({})", libc::EMFILE));
}

#[test]
fn a_cpu_limit_kills_with_sigxcpu_and_says_so() {
    let mut p = Process::new(spin_forever, ());
    p.rlimit(Resource::Cpu, 1, 5);
    p.start().unwrap();
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(-libc::SIGXCPU));
    match p.result() {
        Err(
            e @ Error::Killed {
                signal,
                limit: Some(Limited::Cpu { seconds: 1 }),
                ..
            },
        ) => {
            assert_eq!(signal, libc::SIGXCPU);
            assert!(e.to_string().contains("CPU-time limit of 1 s"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn an_address_space_limit_aborts_a_failed_allocation_and_the_error_says_so() {
    let mut p = Process::new(allocate, (2048,));
    p.rlimit(Resource::AddressSpace, 512 << 20, 512 << 20)
        .env_remove("RUST_BACKTRACE")
        .stderr(Stdio::piped());
    p.start().unwrap();
    let stderr = read_all(p.take_stderr().unwrap());
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(-6));
    assert!(stderr.contains("memory allocation of"), "{stderr}");
    match p.result() {
        Err(
            e @ Error::Killed {
                signal: 6,
                limit: Some(Limited::Memory { .. }),
                ..
            },
        ) => {
            let Error::Killed {
                limit: Some(Limited::Memory { resource, limit }),
                ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((*resource, *limit), (Resource::AddressSpace, 512 << 20));
            assert!(
                e.to_string()
                    .contains("address-space limit of 536870912 bytes"),
                "{e}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // Under the limit, the same worker runs.
    let mut p = Process::new(allocate, (16,));
    p.rlimit(Resource::AddressSpace, 512 << 20, 512 << 20);
    started(&mut p);
    assert_eq!(p.result().unwrap(), 1);
}

#[test]
fn an_abort_that_is_no_allocation_failure_is_not_blamed_on_the_limit() {
    #[worker]
    fn aborts() {
        std::process::abort();
    }
    let mut p = Process::new(aborts, ());
    p.rlimit(Resource::AddressSpace, 1 << 32, 1 << 32);
    p.start().unwrap();
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(-6));
    assert!(matches!(
        p.result(),
        Err(Error::Killed {
            signal: 6,
            limit: None,
            ..
        })
    ));
}

#[test]
fn a_limit_the_kernel_refuses_is_an_error_and_the_child_runs_nothing() {
    let marker = temp_path("refused-ran");
    // Soft above hard: refused before any spawn.
    let mut p = Process::new(touch, (marker.clone(),));
    p.rlimit(Resource::OpenFiles, 100, 10);
    match p.start() {
        Err(Error::LimitRefused {
            resource: Resource::OpenFiles,
            soft: 100,
            hard: 10,
            ..
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(p.pid(), None);
    // Above the kernel's ceiling for open files: refused by the kernel, even
    // for root.
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let before = child_pids();
    let mut p = Process::new(touch, (marker.clone(),));
    p.rlimit(Resource::OpenFiles, nr_open + 1, nr_open + 1);
    match p.start() {
        Err(e @ Error::LimitRefused { .. }) => {
            assert!(e.to_string().contains("OpenFiles"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(p.pid(), None);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!marker.exists(), "the refused child ran its worker");
    // It was stopped and reaped: no zombie of ours is left from it.
    let zombies: Vec<u32> = child_pids()
        .into_iter()
        .filter(|c| !before.contains(c) && exists(*c) && !alive(*c))
        .collect();
    assert!(zombies.is_empty(), "{zombies:?}");
}

// ---- the initializer ----

#[test]
fn the_initializer_runs_first_with_its_handles() {
    let q = Queue::new().unwrap();
    let mut p = Process::new(put_after_init, (q.clone(),));
    p.initializer(init_put, (q.clone(), "first".into()));
    started(&mut p);
    assert_eq!(p.result().unwrap(), 7);
    assert_eq!(q.get_timeout(BOUND).unwrap(), "init first");
    assert_eq!(q.get_timeout(BOUND).unwrap(), "worker");
}

#[test]
fn a_panicking_initializer_stops_the_worker_and_says_why() {
    let q = Queue::new().unwrap();
    let mut p = Process::new(put_after_init, (q.clone(),));
    p.initializer(init_panics, ("no config".into(),))
        .stderr(Stdio::null());
    p.start().unwrap();
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(2));
    match p.result() {
        Err(Error::InitializerFailed {
            worker,
            message,
            location,
            ..
        }) => {
            assert!(worker.contains("init_panics"), "{worker}");
            assert_eq!(message, "initializer refuses: no config");
            assert!(location.unwrap().contains("child_setup.rs"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(q.try_get().is_err(), "the worker ran");
}

// ---- the same on a pool ----

#[test]
fn a_pools_workers_and_their_replacements_get_the_set_up() {
    let dir = std::env::temp_dir().canonicalize().unwrap();
    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(1)
        .env("POOL_SETUP", "yes")
        .env_remove("HOME")
        .current_dir(&dir)
        .rlimit(Resource::OpenFiles, 100, 200)
        .build()
        .unwrap();
    for _ in 0..4 {
        assert_eq!(
            pool.apply(getenv, ("POOL_SETUP".into(),))
                .unwrap()
                .as_deref(),
            Some("yes")
        );
        assert_eq!(pool.apply(getenv, ("HOME".into(),)).unwrap(), None);
        assert_eq!(pool.apply(cwd, ()).unwrap(), dir);
        assert_eq!(pool.apply(limits, ()).unwrap()[2], (100, 200));
    }
}

#[test]
fn a_pool_with_piped_stdout_has_one_stream_that_ends_after_join() {
    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(3)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .build()
        .unwrap();
    let out = pool.take_stdout().unwrap();
    assert!(pool.take_stdout().is_none());
    let reader = std::thread::spawn(move || read_all(out));
    pool.map(print_lines, vec![2; 10]).unwrap();
    pool.close();
    pool.join().unwrap();
    let text = reader.join().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 20, "{text}");
    assert_eq!(lines.iter().filter(|l| **l == "line 0").count(), 10);
    assert_eq!(lines.iter().filter(|l| **l == "line 1").count(), 10);
}

#[test]
fn a_pool_task_over_the_memory_limit_fails_alone() {
    let pool = Pool::builder()
        .processes(2)
        .rlimit(Resource::AddressSpace, 512 << 20, 512 << 20)
        .env_remove("RUST_BACKTRACE")
        .stderr(Stdio::null())
        .build()
        .unwrap();
    let outcomes: Vec<_> = pool
        .chunksize(1)
        .imap(allocate, vec![8, 8, 4096, 8, 8])
        .unwrap()
        .collect();
    for (i, outcome) in outcomes.iter().enumerate() {
        match (i, outcome) {
            (2, Err(Error::TaskFailed { index: 2, source })) => match &**source {
                Error::Killed {
                    signal: 6,
                    limit: Some(Limited::Memory { limit, .. }),
                    ..
                } => assert_eq!(*limit, 512 << 20),
                other => panic!("the greedy input: {other:?}"),
            },
            (2, other) => panic!("the greedy input: {other:?}"),
            (_, Ok(1)) => {}
            (_, other) => panic!("input {i}: {other:?}"),
        }
    }
    assert_eq!(pool.apply(allocate, (8,)).unwrap(), 1);
}

#[test]
fn a_pool_refuses_bad_set_up_at_build() {
    match Pool::builder().processes(1).env("BAD=KEY", "v").build() {
        Err(Error::InvalidArgument(why)) => assert!(why.contains("'='"), "{why}"),
        other => panic!("unexpected {other:?}"),
    }
    match Pool::builder()
        .processes(1)
        .current_dir(temp_path("pool-no-dir"))
        .build()
    {
        Err(Error::Spawn(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("unexpected {other:?}"),
    }
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    match Pool::builder()
        .processes(2)
        .rlimit(Resource::OpenFiles, nr_open + 1, nr_open + 1)
        .build()
    {
        Err(Error::LimitRefused { .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
    // A working pool afterwards.
    let pool = Pool::builder().processes(1).build().unwrap();
    assert!(pool.apply(my_pid, ()).unwrap() > 0);
}
