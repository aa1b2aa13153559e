//! The latency cases' shared floors: what a round trip between two
//! processes costs the kernel across CPUs and on one CPU, and what it costs
//! two processes spinning on shared memory; and [`on_one_cpu`], which runs a
//! case's multiproc work with the parent and its children on one CPU.
//!
//! Why several: a blocking round trip is two wake-ups, and a wake-up of a
//! process on another, idle CPU costs that CPU's way out of idle (tens of
//! µs on a VM), one on the same CPU a context switch (a few µs). The same
//! work swings by 10–20× with where the scheduler puts the two sides, so a
//! latency target is read against the floor that had the same placement.

use crate::case::{BoxError, Floor, Params, Unavailable};
use crate::cases::{floor, time_each};
use multiproc::{Process, Worker};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

/// The C program's path, from `build.rs`.
const PROGRAM: &str = env!("LATENCY_FLOOR");

/// Its exit status when the machine cannot run the floor.
const EXIT_UNAVAILABLE: i32 = 3;

/// The label of a case's own multiproc work run by [`on_one_cpu`], a row
/// each latency case adds to its floors.
pub const PINNED_LABEL: &str = "multiproc, pinned to one CPU";

/// The kernel's floor across CPUs (wherever the scheduler puts the two).
pub const SOCKETPAIR: Floor = Floor {
    label: "socketpair ping-pong, 8 bytes",
    run: socketpair,
};
/// The kernel's floor on one CPU.
pub const SOCKETPAIR_ONE_CPU: Floor = Floor {
    label: "socketpair ping-pong, 8 bytes, both on one CPU",
    run: socketpair_one_cpu,
};
/// No kernel at all: two CPUs handing a cache line back and forth.
pub const SPIN: Floor = Floor {
    label: "shared-memory spin ping-pong, two CPUs (C)",
    run: spin,
};

/// The calling thread pinned to one CPU, for [`on_one_cpu`]'s work.
pub struct Pinned {
    one: CpuSet,
    cpu: usize,
}

impl Pinned {
    /// Checks that process `pid` (a child started while pinned) is on the
    /// same one CPU. Children inherit the mask of the thread that starts
    /// them, which is not always the caller: multiproc starts a child from
    /// a thread other than the main one on its long-lived spawner thread.
    pub fn check(&self, pid: u32) -> Result<(), BoxError> {
        let theirs = sched_getaffinity(Pid::from_raw(i32::try_from(pid)?))?;
        if theirs == self.one {
            Ok(())
        } else {
            Err(format!(
                "process {pid} is not pinned to CPU {} with its parent",
                self.cpu
            )
            .into())
        }
    }

    /// [`check`](Self::check) of a started multiproc child; kills and
    /// reaps it when it is not pinned (a child waiting for a peer that
    /// gave up would keep the bench from exiting).
    pub fn check_process<W: Worker>(&self, process: &Process<W>) -> Result<(), BoxError> {
        let pid = process.pid().ok_or("the child has not started")?;
        self.check(pid).inspect_err(|_| {
            let _ = process.kill();
            let _ = process.join();
        })
    }
}

/// Runs `work` with the calling thread pinned to the first CPU of its
/// affinity mask, so that the children, threads and pools it starts inherit
/// that one CPU; then restores the mask, whatever `work` returned.
pub fn on_one_cpu<T>(work: impl FnOnce(&Pinned) -> Result<T, BoxError>) -> Result<T, BoxError> {
    let this_thread = Pid::from_raw(0);
    let before = sched_getaffinity(this_thread)?;
    let cpu = (0..CpuSet::count())
        .find(|&i| before.is_set(i).unwrap_or(false))
        .ok_or("this thread's affinity mask is empty")?;
    let mut one = CpuSet::new();
    one.set(cpu)?;
    sched_setaffinity(this_thread, &one)?;
    let result = work(&Pinned { one, cpu });
    let restored = sched_setaffinity(this_thread, &before);
    let value = result?;
    restored?;
    Ok(value)
}

/// A raw socketpair ping-pong: 8-byte `write_all` + `read_exact`, a bare
/// child (this binary, [`floor::ECHO8`]) echoing, both blocking in the
/// kernel; time per round trip.
pub fn socketpair(params: &Params) -> Result<Vec<f64>, BoxError> {
    socketpair_checked(params, None)
}

/// [`socketpair`] with the parent and the echoing child on one CPU.
pub fn socketpair_one_cpu(params: &Params) -> Result<Vec<f64>, BoxError> {
    on_one_cpu(|pinned| socketpair_checked(params, Some(pinned)))
}

fn socketpair_checked(params: &Params, pinned: Option<&Pinned>) -> Result<Vec<f64>, BoxError> {
    let (mut ours, theirs) = UnixStream::pair()?;
    let child = floor::spawn(
        floor::ECHO8,
        &[],
        Stdio::from(OwnedFd::from(theirs)),
        Stdio::null(),
    )?;
    if let Some(pinned) = pinned
        && let Err(e) = pinned.check(child.id())
    {
        drop(ours);
        let _ = floor::reap(child);
        return Err(e);
    }
    let message = *b"8 bytes!";
    let mut back = [0u8; 8];
    let mut trip = || -> Result<(), BoxError> {
        ours.write_all(&message)?;
        ours.read_exact(&mut back)?;
        if back == message {
            Ok(())
        } else {
            Err(format!("echoed {back:?}").into())
        }
    };
    // One untimed trip: the child is up.
    trip()?;
    let samples = time_each(params.iters, &mut trip)?;
    drop(ours);
    floor::reap(child)?;
    Ok(samples)
}

/// Two processes on two CPUs spinning on a shared counter, in
/// `floor/latency_floor.c`, timed there; time per round trip.
/// [`Unavailable`] when this process may run on one CPU only.
pub fn spin(params: &Params) -> Result<Vec<f64>, BoxError> {
    let out = Command::new(PROGRAM)
        .args(["spin", &params.iters.to_string()])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.code() == Some(EXIT_UNAVAILABLE) {
        return Err(Unavailable(stderr).into());
    }
    if !out.status.success() {
        return Err(format!("the spin floor ended with {}: {stderr}", out.status).into());
    }
    let samples = String::from_utf8(out.stdout)?
        .lines()
        .map(str::parse)
        .collect::<Result<Vec<f64>, _>>()?;
    if samples.len() != params.iters {
        return Err(format!("{} samples from the spin floor", samples.len()).into());
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: Params = Params { iters: 3, size: 0 };

    #[test]
    fn the_spin_floor_times_each_trip_or_says_why_not() {
        match spin(&PARAMS) {
            Ok(samples) => assert!(samples.len() == 3 && samples.iter().all(|&s| s > 0.0)),
            Err(e) => assert!(e.is::<Unavailable>(), "{e}"),
        }
    }

    #[test]
    fn pinning_reaches_children_and_is_undone() {
        let this_thread = Pid::from_raw(0);
        let before = sched_getaffinity(this_thread).unwrap();
        on_one_cpu(|pinned| {
            assert_eq!(sched_getaffinity(this_thread)?, pinned.one);
            let mut child = Command::new("sleep").arg("10").spawn()?;
            let checked = pinned.check(child.id());
            child.kill()?;
            child.wait()?;
            checked
        })
        .unwrap();
        assert_eq!(sched_getaffinity(this_thread).unwrap(), before);
        let failed: Result<(), BoxError> = on_one_cpu(|_| Err("no".into()));
        assert!(failed.is_err());
        assert_eq!(sched_getaffinity(this_thread).unwrap(), before);
    }
}
