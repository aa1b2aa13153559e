//! Start + join of a worker that does nothing: the cost of a process.

use crate::case::{Against, Bound, BoxError, Case, Floor, Method, Params, Target, Unit};
use crate::cases::{fork_floor, time_each};
use multiproc::{Process, StartMethod, get_context};
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, posix_spawn};
use nix::sys::wait::{WaitStatus, waitpid};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

/// The argument that makes the bench binary's `main` return at once: the
/// floor's child.
pub const FLOOR_EXIT: &str = "--floor-exit";

pub const CASE: Case = Case {
    name: "start_join",
    measures: "Process::new + start + join of a worker with no arguments and an empty body \
               (Python: Process(target=empty).start(); .join()); time per process. Floors: \
               posix_spawn of the same binary + waitpid, the child exiting at the start of \
               main, or earlier, in multiproc's constructor (where a worker would start).",
    unit: Unit::Seconds,
    full: Params { iters: 40, size: 0 },
    quick: Params { iters: 8, size: 0 },
    multiproc,
    python: &[Method::Spawn, Method::Fork],
    floors: &[
        Floor {
            label: "posix_spawn + waitpid, exit in main",
            run: floor_in_main,
        },
        Floor {
            label: "posix_spawn + waitpid, exit before main",
            run: floor_before_main,
        },
    ],
    targets: &[
        Target {
            text: "≤ 1.3 × floor",
            against: Against::Floor(0),
            bound: Bound::AtMost(1.3),
        },
        Target {
            text: "≤ 1.3 × floor",
            against: Against::Floor(1),
            bound: Bound::AtMost(1.3),
        },
        Target {
            text: "≥ 25 × faster than Python spawn",
            against: Against::Python(Method::Spawn),
            bound: Bound::AtMost(1.0 / 25.0),
        },
    ],
};

/// The same with `StartMethod::Forkserver`, beside a bare fork server.
pub const FORKSERVER: Case = Case {
    name: "start_join_forkserver",
    measures: "start_join with get_context(StartMethod::Forkserver) (Python: \
               get_context('forkserver'), and spawn and fork beside it); time per \
               process, the server started before timing. Floors: a bare C fork server \
               doing the same request (a socket passed by SCM_RIGHTS, clone with \
               CLONE_PARENT, the pid back, the child writes a byte and exits, the \
               requester reaps it), and start_join's re-exec floor.",
    unit: Unit::Seconds,
    full: Params { iters: 40, size: 0 },
    quick: Params { iters: 8, size: 0 },
    multiproc: multiproc_forkserver,
    python: &[Method::Forkserver, Method::Spawn, Method::Fork],
    floors: &[
        Floor {
            label: "bare fork server (C), CLONE_PARENT + waitpid",
            run: fork_floor::server,
        },
        Floor {
            label: "posix_spawn + waitpid, exit in main",
            run: floor_in_main,
        },
    ],
    targets: &[
        Target {
            text: "≤ 1.5 × the fork-server floor",
            against: Against::Floor(0),
            bound: Bound::AtMost(1.5),
        },
        Target {
            text: "≥ 4 × faster than the re-exec floor",
            against: Against::Floor(1),
            bound: Bound::AtMost(0.25),
        },
        Target {
            text: "vs Python forkserver",
            against: Against::Python(Method::Forkserver),
            bound: Bound::Show,
        },
    ],
};

/// The same with `StartMethod::Fork`, beside a direct fork. Runs before
/// any case leaves a thread behind (a Fork start refuses a threaded
/// parent).
pub const FORK: Case = Case {
    name: "start_join_fork",
    measures: "start_join with get_context(StartMethod::Fork) (Python: get_context('fork')); \
               time per process. Floor: fork + _exit + waitpid in a bare C program.",
    unit: Unit::Seconds,
    full: Params { iters: 40, size: 0 },
    quick: Params { iters: 8, size: 0 },
    multiproc: multiproc_fork,
    python: &[Method::Fork],
    floors: &[Floor {
        label: "fork + _exit + waitpid (C)",
        run: fork_floor::direct,
    }],
    targets: &[
        Target {
            text: "vs the direct fork floor",
            against: Against::Floor(0),
            bound: Bound::Show,
        },
        Target {
            text: "vs Python fork",
            against: Against::Python(Method::Fork),
            bound: Bound::Show,
        },
    ],
};

#[multiproc::worker]
fn empty() {}

fn start_join(method: StartMethod) -> Result<(), BoxError> {
    let mut p = get_context(method).process(empty, ());
    p.start()?;
    match p.join()? {
        0 => Ok(()),
        code => Err(format!("the child exited with {code}").into()),
    }
}

fn multiproc(params: &Params) -> Result<Vec<f64>, BoxError> {
    time_each(params.iters, || {
        let mut p = Process::new(empty, ());
        p.start()?;
        match p.join()? {
            0 => Ok(()),
            code => Err(format!("the child exited with {code}").into()),
        }
    })
}

fn multiproc_forkserver(params: &Params) -> Result<Vec<f64>, BoxError> {
    // The server starts on first use: not timed, as the floor's is not.
    start_join(StartMethod::Forkserver)?;
    time_each(params.iters, || start_join(StartMethod::Forkserver))
}

fn multiproc_fork(params: &Params) -> Result<Vec<f64>, BoxError> {
    time_each(params.iters, || start_join(StartMethod::Fork))
}

/// The child runs std's start-up (stack guard, which reads
/// `/proc/self/maps`; `sigaltstack`) and returns from `main`.
fn floor_in_main(params: &Params) -> Result<Vec<f64>, BoxError> {
    let env = environment(None)?;
    spawn_and_wait(params, &env, PosixSpawnFileActions::init()?, 0)
}

/// The child stops where a multiproc child starts its work: in the runtime's
/// constructor, before std's start-up. A malformed child marker makes that
/// constructor refuse (on stderr, here /dev/null) and exit with status 2
/// before `main`; a 0 would mean `main` ran after all.
fn floor_before_main(params: &Params) -> Result<Vec<f64>, BoxError> {
    let env = environment(Some("MULTIPROC_CHILD=floor"))?;
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    let mut actions = PosixSpawnFileActions::init()?;
    actions.add_dup2(null.as_raw_fd(), 2)?;
    spawn_and_wait(params, &env, actions, 2)
}

fn environment(extra: Option<&str>) -> Result<Vec<CString>, BoxError> {
    let mut env = std::env::vars_os()
        .map(|(k, v)| CString::new([k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<Result<Vec<_>, _>>()?;
    env.extend(extra.map(CString::new).transpose()?);
    Ok(env)
}

/// posix_spawn of this binary with [`FLOOR_EXIT`], then waitpid, timed.
fn spawn_and_wait(
    params: &Params,
    env: &[CString],
    actions: PosixSpawnFileActions,
    status: i32,
) -> Result<Vec<f64>, BoxError> {
    let exe = CString::new("/proc/self/exe")?;
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let argv = [CString::new(argv0.as_bytes())?, CString::new(FLOOR_EXIT)?];
    let attr = PosixSpawnAttr::init()?;
    time_each(params.iters, || {
        let pid = posix_spawn(exe.as_c_str(), &actions, &attr, &argv, env)?;
        match waitpid(pid, None)? {
            WaitStatus::Exited(_, code) if code == status => Ok(()),
            other => {
                Err(format!("the floor child ended with {other:?}, not status {status}").into())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiproc_runner_times_each_start() {
        let samples = multiproc(&Params { iters: 2, size: 0 }).unwrap();
        assert_eq!(samples.len(), 2);
        assert!(samples.iter().all(|&s| s > 0.0));
    }

    #[test]
    fn forkserver_runner_times_each_start() {
        assert_eq!(
            multiproc_forkserver(&Params { iters: 2, size: 0 })
                .unwrap()
                .len(),
            2
        );
    }

    /// Holds in a test binary too: the runtime's constructor refuses the
    /// malformed marker before libtest's `main` sees [`FLOOR_EXIT`].
    #[test]
    fn the_runtime_exits_before_main_on_a_malformed_marker() {
        let samples = floor_before_main(&Params { iters: 2, size: 0 }).unwrap();
        assert_eq!(samples.len(), 2);
    }
}
