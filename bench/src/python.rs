//! Running a case's round in Python's `multiprocessing` (`bench/python/bench.py`).

use crate::case::{BoxError, Case, Method, Params};
use serde::Deserialize;
use std::ffi::OsString;
use std::process::Command;

/// The script, found in the source tree (the harness runs from a checkout).
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/bench.py");

/// `bench.py`'s exit status for a start method this platform lacks.
const EXIT_NO_METHOD: i32 = 3;

/// A working Python interpreter.
pub struct Python {
    program: OsString,
    /// `sys.version`'s first word, e.g. `3.11.7`.
    pub version: String,
}

/// How one Python round ended, short of an error.
pub enum Round {
    Samples(Vec<f64>),
    /// The start method does not exist here (e.g. `fork` off POSIX).
    Unavailable(String),
}

#[derive(Deserialize)]
struct Output {
    case: String,
    method: String,
    unit: String,
    samples: Vec<f64>,
}

impl Python {
    /// Checks that `program` runs Python 3; `Err` says why not, for the table.
    pub fn detect(program: OsString) -> Result<Python, String> {
        let shown = program.to_string_lossy().into_owned();
        let out = Command::new(&program)
            .args(["-c", "import sys; print(sys.version.split()[0])"])
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!("{shown} not found"),
                _ => format!("{shown} does not run ({e})"),
            })?;
        if !out.status.success() {
            return Err(format!("{shown} does not run ({})", out.status));
        }
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !version.starts_with('3') {
            return Err(format!("{shown} is Python {version}, not 3"));
        }
        Ok(Python { program, version })
    }

    /// Runs one round of `case` with start method `method`.
    pub fn run(&self, case: &Case, method: Method, params: &Params) -> Result<Round, BoxError> {
        let out = Command::new(&self.program)
            .arg(SCRIPT)
            .arg(case.name)
            .args(["--method", method.name()])
            .args(["--iters", &params.iters.to_string()])
            .args(["--size", &params.size.to_string()])
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if out.status.code() == Some(EXIT_NO_METHOD) {
            return Ok(Round::Unavailable(stderr));
        }
        if !out.status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "bench.py {} failed ({}): {}",
                case.name,
                out.status,
                tail.join(" / ")
            )
            .into());
        }
        let output: Output = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("bench.py {} printed no valid result: {e}", case.name))?;
        if output.case != case.name || output.method != method.name() {
            return Err(format!(
                "bench.py answered for {} {}, not {} {}",
                output.case,
                output.method,
                case.name,
                method.name()
            )
            .into());
        }
        if output.unit != case.unit.key() {
            return Err(format!(
                "bench.py reports {} in {:?}, the harness expects {:?}",
                case.name,
                output.unit,
                case.unit.key()
            )
            .into());
        }
        Ok(Round::Samples(output.samples))
    }

    /// The case names `bench.py` knows.
    #[cfg(test)]
    pub fn cases(&self) -> Result<Vec<String>, BoxError> {
        let out = Command::new(&self.program)
            .args([SCRIPT, "--list"])
            .output()?;
        if !out.status.success() {
            return Err(format!("bench.py --list failed ({})", out.status).into());
        }
        Ok(String::from_utf8(out.stdout)?
            .lines()
            .map(str::to_string)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cases;

    fn python() -> Option<Python> {
        match Python::detect("python3".into()) {
            Ok(python) => Some(python),
            Err(why) => {
                eprintln!("skipped: {why}");
                None
            }
        }
    }

    #[test]
    fn every_case_with_python_methods_is_in_the_script() {
        let Some(python) = python() else { return };
        let known = python.cases().unwrap();
        for case in cases::ALL.iter().filter(|c| !c.python.is_empty()) {
            assert!(
                known.iter().any(|k| k == case.name),
                "bench.py has no case {}",
                case.name
            );
        }
    }

    #[test]
    fn a_missing_interpreter_is_reported_not_fatal() {
        let why = Python::detect("/nonexistent/python3".into()).err().unwrap();
        assert!(why.contains("not found"), "{why}");
    }
}
