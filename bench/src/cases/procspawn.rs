//! The procspawn column: the same work through the `procspawn` crate
//! (mitsuhiko's `thread::spawn` with processes), the peer a Rust user would
//! pick, for the cases procspawn can express.
//!
//! procspawn re-executes this binary with `__PROCSPAWN_CONTENT_PROCESS_ID`
//! set; `main` calls `procspawn::init()` right after the floor children's
//! exits, and there such a child runs its function and exits. multiproc's
//! children never get that far (its constructor dispatches them before
//! `main`), and neither crate's marker reaches the other's children: each
//! is set on one child's command only, and taken out of the environment
//! by the child it was set for.
//!
//! What procspawn cannot do, and so has no row: `map` (`pool_map` chunks
//! the input by hand), `imap`/`imap_unordered`, queues, pipes, locks,
//! events, barriers and shared values in multiproc's sense, `async`.
//!
//! Every wait is bounded: joins by `join_timeout` ([`TIMEOUT`]), which
//! fails the row; the calls procspawn gives no timeout (a spawn waiting for
//! its child to connect, a large argument's send) by a backstop that ends
//! the whole harness after [`ROUND_LIMIT`], so a hang cannot hang CI.

use crate::case::{BoxError, Params, Runner};
use crate::cases::{self, per_second, pool_payload::check_echo, pool_payload::payload, time_each};
use nix::sys::resource::{Resource, getrlimit};
use procspawn::{JoinHandle, Pool};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a join waits for one result before the row fails.
const TIMEOUT: Duration = Duration::from_secs(60);

/// How long one round may take before the backstop ends the harness.
const ROUND_LIMIT: Duration = Duration::from_secs(300);

/// The cases with a procspawn runner, by their `Case::name`.
const RUNNERS: &[(&str, Runner)] = &[
    (cases::start_join::CASE.name, start_join),
    (cases::pool_apply::CASE.name, pool_apply),
    (cases::pool_apply_async::CASE.name, pool_apply_async),
    (cases::pool_map::CASE.name, pool_map),
    (cases::pool_payload::PAYLOAD_1MIB.name, pool_payload),
    (cases::pool_payload::PAYLOAD_8MIB.name, pool_payload),
];

/// The procspawn runner of the case named `case_name`, if procspawn can
/// do its work.
pub fn runner(case_name: &str) -> Option<Runner> {
    RUNNERS
        .iter()
        .find(|&&(name, _)| name == case_name)
        .map(|&(_, run)| run)
}

/// Runs one round: a panic inside procspawn (its pool unwraps descriptor
/// and send errors) becomes the row's error, and a round that never returns
/// ends the harness after [`ROUND_LIMIT`] instead of hanging it.
fn bounded(round: impl FnOnce() -> Result<Vec<f64>, BoxError>) -> Result<Vec<f64>, BoxError> {
    let (finished, wait) = mpsc::channel::<()>();
    // Scoped: the backstop thread is gone when the round returns (a later
    // case forks, which needs a process of one thread).
    std::thread::scope(|scope| {
        scope.spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(ROUND_LIMIT) {
                eprintln!(
                    "multiproc-bench: a procspawn round is still running after {} s, in a \
                     call procspawn gives no timeout; exiting",
                    ROUND_LIMIT.as_secs()
                );
                std::process::exit(1);
            }
        });
        let result = catch_unwind(AssertUnwindSafe(round)).unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            Err(format!("procspawn panicked: {message}").into())
        });
        drop(finished);
        result
    })
}

/// Waits at most [`TIMEOUT`] for `handle`'s result.
fn join<T: Serialize + DeserializeOwned>(handle: &mut JoinHandle<T>) -> Result<T, BoxError> {
    handle.join_timeout(TIMEOUT).map_err(|e| {
        if e.is_timeout() {
            format!("procspawn: no result in {} s", TIMEOUT.as_secs()).into()
        } else {
            e.into()
        }
    })
}

/// Runs `body` on a pool of `workers`, each worker up and through one task
/// first (not timed), then drops the pool, which kills its workers (every
/// result is in by then; `Pool::shutdown` would first wait, unbounded, for
/// the queue to drain), and waits for its monitor threads to end, so that
/// none is left for the cases that count or need this process's threads.
fn with_pool(
    workers: usize,
    body: impl FnOnce(&Pool) -> Result<Vec<f64>, BoxError>,
) -> Result<Vec<f64>, BoxError> {
    let pool = Pool::new(workers)?;
    let result = warm_up(&pool, workers).and_then(|()| body(&pool));
    drop(pool);
    let deadline = Instant::now() + Duration::from_secs(5);
    while monitor_threads()? > 0 {
        if Instant::now() > deadline {
            return Err("procspawn's monitor threads outlived their pool by 5 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    result
}

/// One task for each of the pool's `workers`, all in flight at once.
fn warm_up(pool: &Pool, workers: usize) -> Result<(), BoxError> {
    let mut warm: Vec<_> = (0..workers as u64)
        .map(|i| pool.spawn(i, increment))
        .collect();
    for (i, handle) in warm.iter_mut().enumerate() {
        let got = join(handle)?;
        if got != i as u64 + 1 {
            return Err(format!("a warm-up task returned {got}").into());
        }
    }
    Ok(())
}

/// How many of this process's threads are procspawn pool monitors (named
/// `procspawn-monitor`, 15 bytes of it kept by the kernel).
fn monitor_threads() -> Result<usize, BoxError> {
    let mut count = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        // A thread may end between the listing and the read.
        if let Ok(name) = std::fs::read_to_string(task?.path().join("comm")) {
            count += usize::from(name.starts_with("procspawn-moni"));
        }
    }
    Ok(count)
}

fn nothing(_: ()) {}

fn identity(x: u64) -> u64 {
    x
}

fn increment(x: u64) -> u64 {
    x + 1
}

fn squares(chunk: Vec<i64>) -> Vec<i64> {
    chunk.into_iter().map(|x| x * x).collect()
}

fn echo(payload: ByteBuf) -> ByteBuf {
    payload
}

/// `start_join`: `procspawn::spawn` of an empty function + join; time per
/// process.
fn start_join(params: &Params) -> Result<Vec<f64>, BoxError> {
    bounded(|| {
        time_each(params.iters, || {
            let mut handle = procspawn::spawn((), nothing);
            join(&mut handle)
        })
    })
}

/// `pool_apply`: a round trip `pool.spawn(x, identity)` + join of a u64 on
/// a pool of 1; time per call.
fn pool_apply(params: &Params) -> Result<Vec<f64>, BoxError> {
    bounded(|| {
        with_pool(1, |pool| {
            let mut x = 0u64;
            time_each(params.iters, || {
                x += 1;
                match join(&mut pool.spawn(x, identity))? {
                    y if y == x => Ok(()),
                    y => Err(format!("the call returned {y}, not {x}").into()),
                }
            })
        })
    })
}

/// `pool_apply_async`: `iters` one-item tasks spawned on a pool of 2, then
/// each joined; tasks per second.
///
/// A queued procspawn task holds 3 descriptors (its argument's and result's
/// channel ends) until it runs. When `iters` of them would not fit under
/// the descriptor limit (`ulimit -n`), at most [`tasks_in_flight`] are
/// queued at once: the oldest is joined before the next is spawned.
fn pool_apply_async(params: &Params) -> Result<Vec<f64>, BoxError> {
    bounded(|| {
        with_pool(2, |pool| {
            let window = tasks_in_flight()?;
            let mut pending = VecDeque::with_capacity(params.iters.min(window));
            let mut next = 0u64;
            let mut collect = |handle: &mut JoinHandle<u64>| -> Result<(), BoxError> {
                match join(handle)? {
                    got if got == next + 1 => {
                        next += 1;
                        Ok(())
                    }
                    got => Err(format!("task {next} returned {got}").into()),
                }
            };
            let start = Instant::now();
            for i in 0..params.iters as u64 {
                if pending.len() == window {
                    let mut oldest = pending.pop_front().ok_or("an empty window")?;
                    collect(&mut oldest)?;
                }
                pending.push_back(pool.spawn(i, increment));
            }
            for mut handle in pending {
                collect(&mut handle)?;
            }
            let elapsed = start.elapsed();
            Ok(per_second(params.iters, elapsed))
        })
    })
}

/// How many queued procspawn tasks the descriptor limit leaves room for: 3
/// descriptors each, the ones already open and a margin aside.
fn tasks_in_flight() -> Result<usize, BoxError> {
    const PER_TASK: usize = 3;
    const MARGIN: usize = 64;
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let open = std::fs::read_dir("/proc/self/fd")?.count();
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    Ok((soft.saturating_sub(open + MARGIN) / PER_TASK).max(1))
}

/// `pool_map`: procspawn has no `map`, so `0..size` is cut into one chunk
/// per worker, each spawned as one task returning its squares, and the
/// results concatenated; items per second.
///
/// One chunk per worker is one wave: never more tasks in flight than
/// workers. procspawn deadlocks with more when arguments are large (8 of
/// 1 MiB on 2 workers hang in the third `spawn`): `Pool::spawn` sends the
/// argument before it returns, and one larger than the socket buffer only
/// goes once a worker reads it; but each worker's monitor thread, holding
/// a finished result, waits (a rendezvous channel) for its handle to be
/// joined before it hands that worker another task.
fn pool_map(params: &Params) -> Result<Vec<f64>, BoxError> {
    const WORKERS: usize = 2;
    bounded(|| {
        with_pool(WORKERS, |pool| {
            let n = params.size as i64;
            let per_chunk = params.size.div_ceil(WORKERS).max(1);
            let start = Instant::now();
            let mut all = Vec::new();
            for _ in 0..params.iters {
                let mut wave: Vec<_> = (0..n)
                    .step_by(per_chunk)
                    .map(|first| {
                        let chunk: Vec<i64> = (first..n).take(per_chunk).collect();
                        pool.spawn(chunk, squares)
                    })
                    .collect();
                all = Vec::with_capacity(params.size);
                for handle in &mut wave {
                    all.extend(join(handle)?);
                }
            }
            let elapsed = start.elapsed();
            if all.len() != params.size || all.iter().zip(0..).any(|(&s, i)| s != i * i) {
                return Err("the chunks returned the wrong squares".into());
            }
            Ok(per_second(params.iters * params.size, elapsed))
        })
    })
}

/// `pool_payload_*`: a round trip `pool.spawn(payload, echo)` + join of
/// `size` bytes on a pool of 1; time per call, the argument's clone made
/// before timing. One call in flight on one worker: waves of one, clear of
/// the deadlock described at [`pool_map`].
fn pool_payload(params: &Params) -> Result<Vec<f64>, BoxError> {
    bounded(|| {
        with_pool(1, |pool| {
            let sent = payload(params.size);
            check_echo(&sent, &join(&mut pool.spawn(sent.clone(), echo))?)?;
            let mut samples = Vec::with_capacity(params.iters);
            for _ in 0..params.iters {
                let argument = sent.clone();
                let start = Instant::now();
                let echoed = join(&mut pool.spawn(argument, echo))?;
                samples.push(start.elapsed().as_secs_f64());
                check_echo(&sent, &echoed)?;
            }
            Ok(samples)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cases::ALL;

    /// The runners themselves run in `tests/every_runner.rs`, through the
    /// real binary: procspawn re-executes the running program, and a test
    /// binary's `main` is libtest's, which would run the tests again.
    #[test]
    fn every_runner_names_a_case() {
        for &(name, _) in RUNNERS {
            assert!(ALL.iter().any(|c| c.name == name), "no case {name}");
        }
        assert!(runner("start_join").is_some());
        assert!(runner("queue_small").is_none());
    }

    #[test]
    fn a_panic_in_a_round_is_an_error() {
        let error = bounded(|| panic!("boom")).unwrap_err();
        assert!(error.to_string().contains("boom"), "{error}");
        assert_eq!(bounded(|| Ok(vec![1.0])).unwrap(), [1.0]);
    }
}
