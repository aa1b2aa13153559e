//! The resident memory of an idle pool worker.

use crate::case::{Against, Bound, BoxError, Case, Method, Params, Target, Unit};
use multiproc::Pool;
use std::time::Duration;

/// How long the workers idle before their memory is read.
pub const IDLE: Duration = Duration::from_millis(200);

pub const CASE: Case = Case {
    name: "pool_idle_rss",
    measures: "VmRSS (/proc/PID/status) of each worker of a Pool of `iters` workers, \
               each having run one task, after 200 ms idle (Python: the same for \
               Pool(iters), the pids from pool._pool); one sample per worker.",
    unit: Unit::Bytes,
    full: Params { iters: 2, size: 0 },
    quick: Params { iters: 2, size: 0 },
    multiproc,
    python: &[Method::Spawn, Method::Fork],
    floors: &[],
    targets: &[Target {
        text: "≤ 4 MiB",
        against: Against::Absolute,
        bound: Bound::AtMost(4.0 * 1024.0 * 1024.0),
    }],
};

#[multiproc::worker]
fn pool_rss_pid(_task: u32) -> u32 {
    std::process::id()
}

/// A process's resident set, in bytes, from `/proc/PID/status`.
pub fn vm_rss(pid: u32) -> Result<f64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .ok_or_else(|| format!("no VmRSS for pid {pid}"))?;
    let kib: f64 = line.trim().trim_end_matches("kB").trim().parse()?;
    Ok(kib * 1024.0)
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    let pool = Pool::builder().processes(params.iters).build()?;
    // A task on every worker (one each: a task takes a worker's whole
    // attention, and they are all handed out before any returns).
    let ran = pool
        .chunksize(1)
        .map(pool_rss_pid, 0..params.iters as u32 * 4)?;
    std::thread::sleep(IDLE);
    let pids = pool.pids();
    if pids.len() != params.iters {
        return Err(format!("{} workers, not {}", pids.len(), params.iters).into());
    }
    if !ran.iter().all(|pid| pids.contains(pid)) {
        return Err("a task ran on a worker no longer in the pool".into());
    }
    let samples = pids.into_iter().map(vm_rss).collect::<Result<_, _>>()?;
    pool.close();
    pool.join()?;
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_workers_rss() {
        let samples = multiproc(&Params { iters: 2, size: 0 }).unwrap();
        assert_eq!(samples.len(), 2);
        assert!(samples.iter().all(|&b| b > 0.0), "{samples:?}");
    }
}
