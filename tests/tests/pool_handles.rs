//! Handles (`Queue`, `Pipe` ends, `Lock`, `Event`, shared memory) inside
//! `Pool` task arguments: every submission method, every chunk size, after
//! a worker's death and a steal, and without descriptor leaks.
//!
//! Every wait is bounded: a bug fails a test, it does not hang it.

use multiproc::{
    Connection, Error, Event, Lock, Pipe, Pool, PutError, Queue, TryRecvError, worker,
};
use multiproc_tests::wait_until;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

/// The hang guard of every wait.
const BOUND: Duration = Duration::from_secs(60);

/// The descriptor-count test runs alone (the others take this shared), so
/// that no other test's pool changes the counts it compares.
static EXCLUSIVE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner())
}

fn pool(processes: usize) -> Pool {
    Pool::builder().processes(processes).build().unwrap()
}

/// Runs `f` in a thread and waits at most `BOUND` for it (for the waits
/// that have no timeout of their own: iterating an `imap`, `map`).
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(BOUND) {
        Ok(value) => value,
        Err(e) => panic!("{what} did not finish within {BOUND:?}: {e}"),
    }
}

/// Takes every value waiting in `q` (none may take longer than a moment to
/// come once the tasks that put them are answered).
fn drain(q: &Queue<u64>) -> Vec<u64> {
    let mut got: Vec<u64> =
        std::iter::from_fn(|| q.get_timeout(Duration::from_millis(200)).ok()).collect();
    got.sort_unstable();
    got
}

/// Nothing more comes down `end`, and every copy of its other end (the
/// pool's, the worker's) is closed soon.
fn assert_closed_after(end: &Connection<u64>, how: &str) {
    let closed = wait_until(BOUND, || match end.try_recv() {
        Err(TryRecvError::Closed) => true,
        Err(TryRecvError::Empty) => false,
        other => panic!("{how}: {other:?}"),
    });
    assert!(closed, "{how}: a copy of the pipe's other end stayed open");
}

/// The descriptors open in process `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
}

#[worker]
fn put_into(q: Queue<u64>, x: u64) -> u64 {
    q.put(x).unwrap();
    x
}

#[worker]
fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn a_queue_passed_to_apply_carries_the_workers_value_back() {
    let _shared = shared();
    let pool = pool(1);
    let q = Queue::new().unwrap();
    assert_eq!(pool.apply(put_into, (q.clone(), 42)).unwrap(), 42);
    assert_eq!(q.get_timeout(BOUND).unwrap(), 42);
    // The pool's copy of the worker's descriptors, and the worker's, are
    // gone: the queue still works from here, and the next task too.
    let mut again = pool.apply_async(put_into, (q.clone(), 43)).unwrap();
    assert_eq!(again.get_timeout(BOUND).unwrap(), 43);
    assert_eq!(q.get_timeout(BOUND).unwrap(), 43);
    let timed = pool
        .timeout(BOUND)
        .apply(put_into, (q.clone(), 44))
        .unwrap();
    assert_eq!(timed, 44);
    assert_eq!(q.get_timeout(BOUND).unwrap(), 44);
}

#[test]
fn tasks_with_and_without_handles_interleave() {
    let _shared = shared();
    let pool = pool(2);
    let q = Queue::new().unwrap();
    let mut pending = Vec::new();
    for i in 0..200u64 {
        if i % 3 == 0 {
            pending.push((i, pool.apply_async(put_into, (q.clone(), i)).unwrap()));
        } else {
            pending.push((i * i, pool.apply_async(square, (i,)).unwrap()));
        }
    }
    for (want, mut r) in pending {
        assert_eq!(r.get_timeout(BOUND).unwrap(), want);
    }
    assert_eq!(drain(&q), (0..200).step_by(3).collect::<Vec<_>>());
    // starmap too, in chunks that mix nothing else.
    let args: Vec<_> = (0..30).map(|i| (q.clone(), 1000 + i)).collect();
    let mut out = pool.chunksize(4).starmap_async(put_into, args).unwrap();
    assert_eq!(
        out.get_timeout(BOUND).unwrap(),
        (1000..1030).collect::<Vec<_>>()
    );
    assert_eq!(drain(&q), (1000..1030).collect::<Vec<_>>());
}

/// What each input of the map tests carries: handles shared by all inputs
/// and a pipe end of its own.
#[derive(Serialize, Deserialize)]
struct Kit {
    queue: Queue<u64>,
    lock: Lock,
    reply: Connection<u64>,
    id: u64,
}

/// Notes the input's id in the queue (under the lock) and sends `id * 3`
/// down its own pipe; aborts on `abort_at`.
#[worker]
fn use_kit(kit: Kit) -> u64 {
    {
        let _held = kit.lock.acquire().unwrap_or_else(|e| e.into_guard());
        kit.queue.put(kit.id).unwrap();
    }
    kit.reply.send(&(kit.id * 3)).unwrap();
    kit.id
}

/// The inputs of the death test that abort: the first in chunk 7..14, the
/// second in chunk 28..35 (of 7), each with inputs after it in its chunk.
const ABORTS: [u64; 2] = [9, 30];

#[worker]
fn use_kit_or_abort(kit: Kit) -> u64 {
    if ABORTS.contains(&kit.id) {
        std::process::abort();
    }
    use_kit(kit)
}

/// `n` kits sharing one queue and lock, and the parent's ends of their pipes.
fn kits(n: u64) -> (Queue<u64>, Vec<Kit>, Vec<Connection<u64>>) {
    let queue = Queue::new().unwrap();
    let lock = Lock::new().unwrap();
    let mut kits = Vec::new();
    let mut ends = Vec::new();
    for id in 0..n {
        let (ours, theirs) = Pipe::<u64>::new().unwrap();
        kits.push(Kit {
            queue: queue.clone(),
            lock: lock.clone(),
            reply: theirs,
            id,
        });
        ends.push(ours);
    }
    (queue, kits, ends)
}

/// Each input whose id is not in `skipped` sent its own `id * 3` down its
/// own pipe exactly once, and noted its id in the queue exactly once.
fn check_kits(queue: &Queue<u64>, ends: &[Connection<u64>], skipped: &[u64], how: &str) {
    for (id, end) in ends.iter().enumerate() {
        let id = id as u64;
        if !skipped.contains(&id) {
            match end.recv_timeout(BOUND) {
                Ok(v) => assert_eq!(v, id * 3, "{how}: input {id}'s pipe got another's value"),
                Err(e) => panic!("{how}: input {id} sent nothing: {e:?}"),
            }
        }
        assert_closed_after(end, &format!("{how}: input {id} (run twice?)"));
    }
    let want: Vec<u64> = (0..ends.len() as u64)
        .filter(|id| !skipped.contains(id))
        .collect();
    assert_eq!(drain(queue), want, "{how}: the queue's notes");
}

#[test]
fn a_struct_of_handles_goes_through_map_at_chunk_sizes_1_and_7() {
    let _shared = shared();
    let pool = pool(2);
    for chunk in [1, 7] {
        let (queue, kits, ends) = kits(50);
        let mut out = pool.chunksize(chunk).map_async(use_kit, kits).unwrap();
        assert_eq!(
            out.get_timeout(BOUND).unwrap(),
            (0..50).collect::<Vec<_>>(),
            "chunk {chunk}"
        );
        check_kits(&queue, &ends, &[], &format!("map chunk {chunk}"));
    }
    // The default chunk size, through the blocking map.
    let (queue, kits, ends) = kits(50);
    let pool = Arc::new(pool);
    let got = bounded("map", {
        let pool = pool.clone();
        move || pool.map(use_kit, kits).unwrap()
    });
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    check_kits(&queue, &ends, &[], "map, default chunk size");
}

#[test]
fn imap_and_imap_unordered_carry_handles() {
    let _shared = shared();
    let pool = Arc::new(pool(2));
    for chunk in [1, 4] {
        for ordered in [true, false] {
            let how = format!("imap ordered {ordered} chunk {chunk}");
            let (queue, kits, ends) = kits(40);
            let got = bounded(&how, {
                let pool = pool.clone();
                move || {
                    let c = pool.chunksize(chunk);
                    let mut got: Vec<u64> = if ordered {
                        c.imap(use_kit, kits).unwrap().map(Result::unwrap).collect()
                    } else {
                        c.imap_unordered(use_kit, kits)
                            .unwrap()
                            .map(Result::unwrap)
                            .collect()
                    };
                    got.sort_unstable();
                    got
                }
            });
            assert_eq!(got, (0..40).collect::<Vec<_>>(), "{how}");
            check_kits(&queue, &ends, &[], &how);
        }
    }
}

#[test]
fn a_worker_killed_mid_chunk_leaves_working_handles_for_the_rest() {
    let _shared = shared();
    let pool = Arc::new(pool(2));
    for method in ["imap", "imap_unordered", "map"] {
        let (queue, kits, ends) = kits(50);
        let mut got: Vec<(usize, multiproc::Result<u64>)> = bounded(method, {
            let pool = pool.clone();
            move || {
                let c = pool.chunksize(7);
                let named = |r: multiproc::Result<u64>| match r {
                    Ok(id) => (id as usize, Ok(id)),
                    Err(Error::TaskFailed { index, source }) => (index, Err(*source)),
                    Err(e) => panic!("a failure that names no input: {e:?}"),
                };
                match method {
                    "imap" => c.imap(use_kit_or_abort, kits).unwrap().map(named).collect(),
                    "imap_unordered" => c
                        .imap_unordered(use_kit_or_abort, kits)
                        .unwrap()
                        .map(named)
                        .collect(),
                    // `map` reports the first failure only: the rest is
                    // checked through the pipes and the queue.
                    _ => vec![named(c.map(use_kit_or_abort, kits).map(|_| 0))],
                }
            }
        });
        got.sort_by_key(|(i, _)| *i);
        if method == "map" {
            let (index, r) = got.pop().unwrap();
            assert_eq!(index, 9, "{method}");
            assert!(
                matches!(r, Err(Error::Killed { signal: 6, .. })),
                "{method}: {r:?}"
            );
        } else {
            assert_eq!(got.len(), 50, "{method}");
            for (i, r) in got {
                if ABORTS.contains(&(i as u64)) {
                    assert!(
                        matches!(r, Err(Error::Killed { signal: 6, .. })),
                        "{method}: input {i}: {r:?}"
                    );
                } else {
                    assert_eq!(r.ok(), Some(i as u64), "{method}: input {i}");
                }
            }
        }
        check_kits(&queue, &ends, &ABORTS, method);
    }
}

/// Job 0 holds its worker until `go` is set; the others send their id down
/// their own pipe. Each returns its id and the pid that ran it.
#[worker]
fn hold_or_send(job: (Option<Event>, u64, Connection<u64>)) -> (u64, u32) {
    let (go, id, reply) = job;
    if let Some(go) = go {
        assert!(go.wait_timeout(BOUND), "never let go");
    } else {
        reply.send(&(id * 3)).unwrap();
    }
    (id, std::process::id())
}

#[test]
fn tasks_stolen_from_a_busy_worker_carry_their_handles_to_another() {
    let _shared = shared();
    let pool = Arc::new(pool(2));
    // Tiny tasks first, so the pool queues several tasks per worker.
    let mut warm = pool.chunksize(1).map_async(square, 0..500).unwrap();
    warm.get_timeout(BOUND).unwrap();
    let go = Event::new().unwrap();
    let mut jobs = Vec::new();
    let mut ends = Vec::new();
    for id in 0..10u64 {
        let (ours, theirs) = Pipe::<u64>::new().unwrap();
        jobs.push(((id == 0).then(|| go.clone()), id, theirs));
        ends.push(ours);
    }
    // One submission of all ten: job 0's worker gets some of the others
    // queued behind it, which it cannot run while job 0 holds it.
    let all = std::thread::spawn({
        let pool = pool.clone();
        move || {
            pool.chunksize(1)
                .imap(hold_or_send, jobs)
                .unwrap()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        }
    });
    // Every other job ran, with its own pipe end, while job 0 held its
    // worker: those queued behind it were stolen, handles and all.
    for (id, end) in ends.iter().enumerate().skip(1) {
        match end.recv_timeout(BOUND) {
            Ok(v) => assert_eq!(v, id as u64 * 3, "job {id}'s pipe got another's value"),
            Err(e) => panic!("job {id} sent nothing: {e:?}"),
        }
    }
    go.set();
    assert!(wait_until(BOUND, || all.is_finished()), "imap never ended");
    let results = all.join().unwrap();
    let holder = results[0].1;
    for (i, &(id, pid)) in results.iter().enumerate() {
        assert_eq!(id, i as u64);
        if i > 0 {
            assert_ne!(pid, holder, "job {i} ran behind job 0");
            assert_closed_after(&ends[i], &format!("job {i} (run twice?)"));
        }
    }
}

#[worker]
fn with_lock(job: (Lock, u64)) -> u64 {
    let (lock, i) = job;
    drop(lock.acquire().unwrap_or_else(|e| e.into_guard()));
    i
}

#[test]
fn a_hundred_thousand_tasks_with_a_lock_each_leak_no_descriptor() {
    let _alone = EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner());
    const TASKS: u64 = 100_000;
    let pool = Arc::new(pool(2));
    let lock = Lock::new().unwrap();
    let run = |n: u64, chunk: usize| {
        let (pool, lock) = (pool.clone(), lock.clone());
        bounded("imap_unordered", move || {
            let inputs = (0..n).map(move |i| (lock.clone(), i));
            pool.chunksize(chunk)
                .imap_unordered(with_lock, inputs)
                .unwrap()
                .map(Result::unwrap)
                .sum::<u64>()
        })
    };
    // Both workers up and each through a task with a lock.
    assert_eq!(run(200, 1), 199 * 100);
    let pids = pool.pids();
    assert_eq!(pids.len(), 2);
    let before: Vec<usize> = pids.iter().map(|&pid| fd_count(pid)).collect();
    let parent_before = multiproc_tests::open_fds().len();

    let start = std::time::Instant::now();
    assert_eq!(run(TASKS, 1), TASKS * (TASKS - 1) / 2);
    eprintln!(
        "{TASKS} tasks of one lock each (chunk size 1): {:?}",
        start.elapsed()
    );
    let start = std::time::Instant::now();
    assert_eq!(run(TASKS, 50), TASKS * (TASKS - 1) / 2);
    eprintln!(
        "{TASKS} tasks of one lock each (chunk size 50): {:?}",
        start.elapsed()
    );

    assert_eq!(pool.pids(), pids, "a worker was replaced");
    let after: Vec<usize> = pids.iter().map(|&pid| fd_count(pid)).collect();
    for ((pid, b), a) in pids.iter().zip(&before).zip(&after) {
        assert!(
            a.abs_diff(*b) <= 5,
            "worker {pid}: {b} descriptors before, {a} after"
        );
    }
    let parent_after = multiproc_tests::open_fds().len();
    assert!(
        parent_after.abs_diff(parent_before) <= 5,
        "the parent: {parent_before} descriptors before, {parent_after} after"
    );
}

#[worker]
fn set_all(events: Vec<Event>) -> usize {
    for e in &events {
        e.set();
    }
    events.len()
}

#[test]
fn a_task_with_more_descriptors_than_one_message_carries_works() {
    let _shared = shared();
    let pool = pool(2);
    // 300 events: more than the 253 one SCM_RIGHTS message carries.
    let events: Vec<Event> = (0..300).map(|_| Event::new().unwrap()).collect();
    let mut one = pool.apply_async(set_all, (events.clone(),)).unwrap();
    assert_eq!(one.get_timeout(BOUND).unwrap(), 300);
    assert!(events.iter().all(Event::is_set));
    // Chunks of two inputs of 300 each: 600 descriptors per task.
    let sets: Vec<Vec<Event>> = (0..4)
        .map(|_| (0..300).map(|_| Event::new().unwrap()).collect())
        .collect();
    let mut many = pool.chunksize(2).map_async(set_all, sets.clone()).unwrap();
    assert_eq!(many.get_timeout(BOUND).unwrap(), [300; 4]);
    assert!(sets.iter().flatten().all(Event::is_set));
}

/// Sends the payload's length down the pipe, if there is one.
#[worker]
fn measure(job: (Vec<u8>, Option<Connection<u64>>)) -> usize {
    let (payload, reply) = job;
    if let Some(reply) = reply {
        reply.send(&(payload.len() as u64)).unwrap();
    }
    payload.len()
}

#[test]
fn big_tasks_with_and_without_handles_fill_the_socket_and_arrive_whole() {
    let _shared = shared();
    let pool = pool(2);
    let mut ends = Vec::new();
    let jobs: Vec<_> = (0..24usize)
        .map(|i| {
            let reply = (i % 2 == 1).then(|| {
                let (ours, theirs) = Pipe::<u64>::new().unwrap();
                ends.push((i, ours));
                theirs
            });
            (vec![i as u8; 1 << 20 | i], reply)
        })
        .collect();
    let mut out = pool.chunksize(1).map_async(measure, jobs).unwrap();
    let lens = out.get_timeout(BOUND).unwrap();
    assert_eq!(lens, (0..24).map(|i| 1 << 20 | i).collect::<Vec<_>>());
    for (i, end) in ends {
        assert_eq!(end.recv_timeout(BOUND).unwrap(), (1 << 20 | i) as u64);
        assert_closed_after(&end, &format!("job {i}"));
    }
}

#[derive(Serialize, Deserialize)]
struct Holder {
    name: String,
    queue: Queue<u64>,
}

#[test]
fn a_handle_serialized_anywhere_else_is_still_refused() {
    let _shared = shared();
    let outer = Queue::<Holder>::new().unwrap();
    let err = outer
        .put(Holder {
            name: "x".into(),
            queue: Queue::new().unwrap(),
        })
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("cannot be serialized anywhere else"),
        "{message}"
    );
    assert!(message.contains("a pool task's arguments"), "{message}");
    assert!(matches!(err, PutError::Encode(..)));

    // A pipe carries handles now; any other serializer still refuses them.
    let message = serde_json::to_string(&Lock::new().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("cannot be serialized anywhere else"),
        "{message}"
    );
}

/// Set in the unprivileged helper process.
const HELPER: &str = "POOL_HANDLES_UNPRIVILEGED";

#[test]
fn descriptors_the_user_cannot_send_yet_wait_and_then_go() {
    let _shared = shared();
    let out = multiproc_tests::run_self(
        &[
            "--exact",
            "helper_too_many_descriptors_in_flight",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ],
        &[(HELPER, "1")],
        BOUND * 2,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    if stderr.contains("skipped:") {
        eprintln!("{stderr}");
    }
}

/// Run by `descriptors_the_user_cannot_send_yet_wait_and_then_go`: as an
/// unprivileged user with a low descriptor limit, fills the user's quota of
/// descriptors in flight (`ETOOMANYREFS`), submits a task with a queue,
/// then drains the quota: the task waits, then runs.
#[test]
#[ignore = "run by descriptors_the_user_cannot_send_yet_wait_and_then_go"]
fn helper_too_many_descriptors_in_flight() {
    use nix::sys::socket::{self, ControlMessage, MsgFlags};
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::{AsRawFd, RawFd};
    use std::os::unix::net::UnixStream;

    if std::env::var_os(HELPER).is_none() {
        return;
    }
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 256, 256).unwrap();
    // SAFETY: plain system calls on this process's credentials.
    if unsafe { libc::geteuid() } == 0 {
        // SAFETY: as above.
        let dropped = unsafe { libc::setgid(65534) == 0 && libc::setuid(65534) == 0 };
        if !dropped {
            eprintln!("skipped: cannot become an unprivileged user");
            return;
        }
    }
    let pool = pool(1);
    let q = Queue::new().unwrap();
    let mut warm = pool.apply_async(square, (3,)).unwrap();
    assert_eq!(warm.get_timeout(BOUND).unwrap(), 9);

    // Descriptors in flight on a socket nobody reads, until the kernel
    // refuses more for this user.
    let (stuffed, reader) = UnixStream::pair().unwrap();
    stuffed.set_nonblocking(true).unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let raw: Vec<RawFd> = vec![null.as_raw_fd(); 150];
    let mut refused = false;
    for _ in 0..100 {
        let cmsg = [ControlMessage::ScmRights(&raw)];
        let iov = [IoSlice::new(b"x")];
        match socket::sendmsg::<()>(stuffed.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None) {
            Ok(_) => {}
            Err(nix::errno::Errno::ETOOMANYREFS) => {
                refused = true;
                break;
            }
            Err(e) => panic!("stuffing: {e}"),
        }
    }
    if !refused {
        eprintln!("skipped: the kernel does not limit this user's descriptors in flight");
        return;
    }

    let mut r = pool.apply_async(put_into, (q.clone(), 7)).unwrap();
    // It cannot be sent yet: it waits (it does not fail, nor break the worker).
    assert!(!r.wait_timeout(Duration::from_millis(300)));
    // Drain the quota: the pool tries again on its own.
    reader.set_nonblocking(true).unwrap();
    let mut space = nix::cmsg_space!([RawFd; 253]);
    loop {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let got = socket::recvmsg::<()>(
            reader.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        );
        match got {
            Ok(msg) => {
                for cmsg in msg.cmsgs().unwrap() {
                    if let socket::ControlMessageOwned::ScmRights(fds) = cmsg {
                        for fd in fds {
                            // SAFETY: just received; ours alone.
                            unsafe { libc::close(fd) };
                        }
                    }
                }
            }
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(e) => panic!("draining: {e}"),
        }
    }
    assert_eq!(r.get_timeout(BOUND).unwrap(), 7);
    assert_eq!(q.get_timeout(BOUND).unwrap(), 7);
}
