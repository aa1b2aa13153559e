//! Crash isolation, measured: what a failure costs in a `Pool`.
//!
//! 1. 40 inputs on 2 workers, 3 of which call `abort()`, through every
//!    method and chunk size: how many inputs failed, and how many of those
//!    were innocent (did not abort). Every input counts its runs in shared
//!    memory, so an input that ran twice is seen too.
//! 2. Kill-to-error: a worker running a long task is SIGKILLed; how long
//!    until the task's `get` returns `Killed`.
//! 3. Timeout-to-error: a task that sleeps for ever under a 100 ms timeout;
//!    how long past the timeout its `get` returns `TaskTimedOut`.
//! 4. A storm: workers SIGKILLed as they start, every 1 ms for 0.5 s; then
//!    how long until the pool answers again.
//!
//! `cargo run --release --example isolation` (`--rounds N` for parts 2-3).

use multiproc::{Array, Error, Pool, worker};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static RUNS: OnceLock<Array<u32>> = OnceLock::new();

#[worker]
fn remember(runs: Array<u32>) {
    let _ = RUNS.set(runs);
}

/// Input `i` counts its run, then aborts if it is one of the three.
#[worker]
fn maybe_abort(i: usize) -> usize {
    if let Some(runs) = RUNS.get() {
        runs.lock().expect("runs")[i] += 1;
    }
    std::thread::sleep(Duration::from_millis(2));
    if [5, 17, 33].contains(&i) {
        std::process::abort();
    }
    i * 2
}

#[worker]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// One way of running the 40 inputs: which failed.
fn failed_inputs(pool: &Pool, how: &str, chunk: usize) -> multiproc::Result<Vec<usize>> {
    let inputs: Vec<usize> = (0..40).collect();
    let c = pool.chunksize(chunk);
    let outcomes: Vec<multiproc::Result<usize>> = match how {
        "imap" => c.imap(maybe_abort, inputs)?.collect(),
        "imap_unordered" => {
            let mut got: Vec<_> = c
                .imap_unordered(maybe_abort, inputs)?
                .map(|r| match r {
                    Ok(v) => (v / 2, Ok(v)),
                    Err(Error::TaskFailed { index, source }) => (index, Err(*source)),
                    Err(e) => (usize::MAX, Err(e)),
                })
                .collect();
            got.sort_by_key(|(i, _)| *i);
            got.into_iter().map(|(_, r)| r).collect()
        }
        "apply_async" => {
            let pending: Vec<_> = inputs
                .iter()
                .map(|&i| pool.apply_async(maybe_abort, (i,)))
                .collect::<Result<_, _>>()?;
            pending.into_iter().map(|r| r.get()).collect()
        }
        _ => {
            // map: one failure is reported; the others are found by the
            // run counts, so ask imap for the per-input outcome instead.
            match c.map(maybe_abort, inputs.clone()) {
                Ok(_) => unreachable!("three inputs abort"),
                Err(Error::TaskFailed { .. }) => {}
                Err(e) => return Err(e),
            }
            return Ok(Vec::new());
        }
    };
    Ok(outcomes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i)
        .collect())
}

fn part1() -> multiproc::Result<()> {
    println!("1. 40 inputs, 2 workers, inputs 5, 17 and 33 abort:");
    let mut innocent_total = 0;
    for how in ["imap", "imap_unordered", "apply_async", "map"] {
        for chunk in [1, 3, 7, 40] {
            if how == "apply_async" && chunk != 1 {
                continue;
            }
            for max_tasks in [None, Some(2)] {
                let runs = Array::<u32>::new(40)?;
                let mut builder = Pool::builder()
                    .processes(2)
                    .initializer(remember, (runs.clone(),));
                if let Some(n) = max_tasks {
                    builder = builder.max_tasks_per_child(n);
                }
                let pool = builder.build()?;
                let failed = failed_inputs(&pool, how, chunk)?;
                drop(pool);
                let runs: Vec<u32> = runs.lock().expect("runs").to_vec();
                let twice = runs.iter().filter(|&&r| r > 1).count();
                let never = runs.iter().filter(|&&r| r == 0).count();
                let innocent = failed.iter().filter(|i| ![5, 17, 33].contains(*i)).count();
                innocent_total += innocent + twice + never;
                println!(
                    "   {how:>14} chunk {chunk:>2} max_tasks {:>4}: {} failed ({innocent} innocent), {twice} ran twice, {never} never ran",
                    max_tasks.map_or("-".into(), |n| n.to_string()),
                    if how == "map" {
                        "-".to_string()
                    } else {
                        failed.len().to_string()
                    },
                );
            }
        }
    }
    println!("   innocent failures + double runs + lost inputs in all: {innocent_total}");
    Ok(())
}

fn stats(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    let max = ms[ms.len() - 1];
    println!(
        "   {name}: median {median:.2} ms, max {max:.2} ms over {} rounds",
        ms.len()
    );
}

fn part2(rounds: usize) -> multiproc::Result<()> {
    println!("2. kill-to-error (SIGKILL of the worker running a task -> get() returns Killed):");
    let pool = Pool::builder().processes(1).build()?;
    let mut times = Vec::new();
    for _ in 0..rounds {
        let r = pool.apply_async(nap, (60_000,))?;
        let pid = loop {
            if let Some(pid) = r.pid() {
                break pid;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let start = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill");
        match r.get() {
            Err(Error::Killed { signal: 9, .. }) => {}
            other => panic!("expected Killed, got {other:?}"),
        }
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    stats("kill-to-error", times);
    Ok(())
}

fn part3(rounds: usize) -> multiproc::Result<()> {
    println!("3. timeout-to-error (a task under a 100 ms timeout sleeps for ever):");
    let pool = Pool::builder()
        .processes(1)
        .task_timeout(Duration::from_millis(100))
        .build()?;
    let mut times = Vec::new();
    for _ in 0..rounds {
        let r = pool.apply_async(nap, (60_000,))?;
        while r.pid().is_none() {
            std::thread::sleep(Duration::from_micros(200));
        }
        let start = Instant::now();
        match r.get() {
            Err(Error::TaskTimedOut { .. }) => {}
            other => panic!("expected TaskTimedOut, got {other:?}"),
        }
        // From the moment it was seen running: at most the 100 ms, plus
        // the time to notice, stop, kill and report.
        times.push((start.elapsed().as_secs_f64() * 1e3 - 100.0).max(0.0));
    }
    stats("past the timeout", times);
    Ok(())
}

fn part4() -> multiproc::Result<()> {
    println!("4. a storm: workers SIGKILLed as they start, every 1 ms for 0.5 s:");
    let pool = Pool::builder().processes(2).build()?;
    let during = pool.apply_async(nap, (1,))?;
    let start = Instant::now();
    let mut kills = 0;
    while start.elapsed() < Duration::from_millis(500) {
        for pid in pool.pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            kills += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let after = Instant::now();
    let answer = pool.apply(nap, (1,));
    println!(
        "   {kills} kills; then apply answered {:?} after {:.0} ms; the task submitted during the storm: {:?}",
        answer.map(|_| "Ok"),
        after.elapsed().as_secs_f64() * 1e3,
        during.get().map(|_| "Ok"),
    );
    Ok(())
}

fn main() -> multiproc::Result<()> {
    let rounds = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    part1()?;
    part2(rounds)?;
    part3(rounds)?;
    part4()?;
    Ok(())
}
