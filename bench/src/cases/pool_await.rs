//! Awaiting a pool from tokio: `apply_async(...).await` from many tasks,
//! against the same through `spawn_blocking`, and the threads each takes.

use crate::case::{Against, Bound, BoxError, Case, Floor, Method, Params, Target, Unit};
use crate::cases::per_second;
use multiproc::Pool;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Tokio tasks awaiting at once in the rate case (`size`); the threads
/// case runs ten times as many.
const TASKS: usize = 100;

pub const CASE: Case = Case {
    name: "pool_await",
    measures: "`iters` pool.apply_async(increment, (i,))?.await, split among `size` \
               concurrent tokio tasks (a runtime of 2 worker threads) on a Pool of 2 \
               workers, each result checked; tasks per second, pool start not counted \
               (Python: asyncio, `size` coroutines awaiting apply_async through its \
               callback and loop.call_soon_threadsafe). Floor: the same with \
               tokio::task::spawn_blocking(pool.apply) per task, what a tokio program \
               does without the feature.",
    unit: Unit::PerSecond,
    full: Params {
        iters: 10_000,
        size: TASKS,
    },
    quick: Params {
        iters: 1_000,
        size: TASKS,
    },
    multiproc: awaited,
    python: &[Method::Fork],
    floors: &[Floor {
        label: "tokio spawn_blocking(pool.apply)",
        run: blocking,
    }],
    targets: &[Target {
        text: "≥ 2 × the spawn_blocking rate",
        against: Against::Floor(0),
        bound: Bound::AtLeast(2.0),
    }],
};

pub const THREADS: Case = Case {
    name: "pool_await_threads",
    measures: "The most OS threads the process had during pool_await with ten times the \
               tasks (`size` concurrent tokio tasks): the main thread, tokio's 2 workers, \
               the pool's dispatcher (and the sampling thread, not counted). Floor: the \
               same through spawn_blocking, whose blocking pool grows a thread per \
               waiting task (up to its limit of 512).",
    unit: Unit::Count,
    full: Params {
        iters: 10_000,
        size: TASKS * 10,
    },
    quick: Params {
        iters: 2_000,
        size: TASKS * 10,
    },
    multiproc: awaited_threads,
    python: &[],
    floors: &[Floor {
        label: "tokio spawn_blocking(pool.apply)",
        run: blocking_threads,
    }],
    targets: &[
        Target {
            text: "threads independent of concurrency: ≤ 8",
            against: Against::Absolute,
            bound: Bound::AtMost(8.0),
        },
        Target {
            text: "vs spawn_blocking",
            against: Against::Floor(0),
            bound: Bound::Show,
        },
    ],
};

#[multiproc::worker]
fn pool_await_increment(x: u64) -> u64 {
    x + 1
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// `params.iters` tasks among `params.size` tokio tasks, each awaiting
/// its results one after another through `one`; the seconds it took.
fn drive<F, Fut>(params: &Params, one: F) -> Result<Duration, BoxError>
where
    F: Fn(Arc<Pool>, u64) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = Result<u64, String>> + Send,
{
    let pool = Arc::new(Pool::builder().processes(2).build()?);
    // Both workers up before timing.
    pool.map(pool_await_increment, [0, 1])?;
    let runtime = runtime()?;
    let tasks = params.size.max(1);
    let per_task = params.iters.div_ceil(tasks) as u64;
    let start = Instant::now();
    runtime.block_on(async {
        let handles: Vec<_> = (0..tasks as u64)
            .map(|t| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    for i in t * per_task..(t + 1) * per_task {
                        let got = one(pool.clone(), i).await?;
                        if got != i + 1 {
                            return Err(format!("task {i} returned {got}"));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle.await.map_err(|e| e.to_string())??;
        }
        Ok::<(), String>(())
    })?;
    let elapsed = start.elapsed();
    drop(runtime);
    pool.close();
    pool.join()?;
    Ok(elapsed)
}

async fn one_awaited(pool: Arc<Pool>, i: u64) -> Result<u64, String> {
    let result = pool
        .apply_async(pool_await_increment, (i,))
        .map_err(|e| e.to_string())?;
    result.await.map_err(|e| e.to_string())
}

async fn one_blocking(pool: Arc<Pool>, i: u64) -> Result<u64, String> {
    let got = tokio::task::spawn_blocking(move || pool.apply(pool_await_increment, (i,))).await;
    got.map_err(|e| e.to_string())?.map_err(|e| e.to_string())
}

/// The iterations actually run (`iters` rounded up to whole tasks).
fn total(params: &Params) -> usize {
    let tasks = params.size.max(1);
    params.iters.div_ceil(tasks) * tasks
}

fn awaited(params: &Params) -> Result<Vec<f64>, BoxError> {
    let elapsed = drive(params, one_awaited)?;
    Ok(per_second(total(params), elapsed))
}

fn blocking(params: &Params) -> Result<Vec<f64>, BoxError> {
    let elapsed = drive(params, one_blocking)?;
    Ok(per_second(total(params), elapsed))
}

/// The most threads this process has while `run` runs (the sampler not
/// counted).
fn peak_threads(run: impl FnOnce() -> Result<(), BoxError>) -> Result<Vec<f64>, BoxError> {
    let stop = Arc::new(AtomicBool::new(false));
    let watching = stop.clone();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while !watching.load(Ordering::Relaxed) {
            peak = peak.max(threads_now());
            std::thread::sleep(Duration::from_millis(1));
        }
        peak.max(threads_now())
    });
    let outcome = run();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().map_err(|_| "the sampling thread panicked")?;
    outcome?;
    Ok(vec![peak.saturating_sub(1) as f64])
}

fn threads_now() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn awaited_threads(params: &Params) -> Result<Vec<f64>, BoxError> {
    peak_threads(|| drive(params, one_awaited).map(drop))
}

fn blocking_threads(params: &Params) -> Result<Vec<f64>, BoxError> {
    peak_threads(|| drive(params, one_blocking).map(drop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_runners_get_every_result() {
        let params = Params {
            iters: 200,
            size: 10,
        };
        assert_eq!(awaited(&params).unwrap().len(), 1);
        assert_eq!(blocking(&params).unwrap().len(), 1);
    }
}
