//! Start + join of a worker that does nothing: the cost of a process.

use crate::case::{Against, Bound, BoxError, Case, Floor, Method, Params, Target, Unit};
use crate::cases::time_each;
use multiproc::Process;
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, posix_spawn};
use nix::sys::wait::{WaitStatus, waitpid};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

/// The argument that makes the bench binary's `main` return at once: the
/// floor's child.
pub const FLOOR_EXIT: &str = "--floor-exit";

pub const CASE: Case = Case {
    name: "start_join",
    measures: "Process::new + start + join of a worker with no arguments and an empty body \
               (Python: Process(target=empty).start(); .join()); time per process. Floor: \
               posix_spawn of the same binary with an argument that makes main return at \
               once, + waitpid.",
    unit: Unit::Seconds,
    full: Params { iters: 40, size: 0 },
    quick: Params { iters: 8, size: 0 },
    multiproc,
    python: &[Method::Spawn, Method::Fork],
    floor: Some(Floor {
        label: "posix_spawn + waitpid",
        run: floor,
    }),
    targets: &[
        Target {
            text: "≤ 1.3 × floor",
            against: Against::Floor,
            bound: Bound::AtMost(1.3),
        },
        Target {
            text: "≥ 25 × faster than Python spawn",
            against: Against::Python(Method::Spawn),
            bound: Bound::AtMost(1.0 / 25.0),
        },
    ],
};

#[multiproc::worker]
fn empty() {}

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

fn floor(params: &Params) -> Result<Vec<f64>, BoxError> {
    let exe = CString::new("/proc/self/exe")?;
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let argv = [CString::new(argv0.as_bytes())?, CString::new(FLOOR_EXIT)?];
    let env = std::env::vars_os()
        .map(|(k, v)| CString::new([k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<Result<Vec<_>, _>>()?;
    let actions = PosixSpawnFileActions::init()?;
    let attr = PosixSpawnAttr::init()?;
    time_each(params.iters, || {
        let pid = posix_spawn(exe.as_c_str(), &actions, &attr, &argv, &env)?;
        match waitpid(pid, None)? {
            WaitStatus::Exited(_, 0) => Ok(()),
            status => Err(format!("the floor child ended with {status:?}").into()),
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
}
