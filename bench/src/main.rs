//! multiproc vs Python's `multiprocessing` vs the raw OS floor, side by side.
//!
//! `cargo run --release -p multiproc-bench -- --help` for the options;
//! BENCHMARKS.md for what each case measures and the last full run.

#![forbid(unsafe_code)]

mod case;
mod cases;
mod python;
mod report;
mod run;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: multiproc-bench [--quick] [--json PATH] [--case NAME]... [--rounds N] [--warmup N]
                       [--python PROGRAM | --no-python] [--list]

Runs each case in multiproc, in Python's multiprocessing (bench/python/bench.py)
and on the raw OS floor, interleaved round by round, and prints the medians,
the ratios and DESIGN.md's targets as one Markdown table.

  --quick           fewer rounds, no warm-up, smaller sizes (CI: well under a minute)
  --json PATH       also write the results, with every sample, as JSON
  --case NAME       run only this case (repeatable); --list shows them
  --rounds N        measured rounds (default 9, quick 3)
  --warmup N        discarded rounds first (default 1, quick 0)
  --python PROGRAM  the Python interpreter (default python3)
  --no-python       skip the Python column
  --list            list the cases and what they measure

Exit status: 0 when every implementation ran (missed targets included),
1 when one failed, 2 on a usage error.";

struct Options {
    quick: bool,
    json: Option<PathBuf>,
    cases: Vec<String>,
    rounds: Option<usize>,
    warmup: Option<usize>,
    python: Option<OsString>,
    list: bool,
}

fn main() -> ExitCode {
    // The floors' children: exit before doing anything else, or do the
    // least a case needs on the descriptors they were given.
    let args: Vec<OsString> = std::env::args_os().collect();
    match args.get(1) {
        Some(a) if a == cases::start_join::FLOOR_EXIT => return ExitCode::SUCCESS,
        Some(a) if a == cases::floor::ARG => return cases::floor::child_main(&args[2..]),
        _ => {}
    }
    // procspawn's children (its marker in the environment): run the
    // function they were sent and exit here, before the harness starts.
    // Nothing above may print: their stdout is the table's.
    procspawn::init();
    let options = match parse(std::env::args_os().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("multiproc-bench: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if options.list {
        for case in cases::ALL {
            println!("{}\n    {}\n", case.name, case.measures);
        }
        return ExitCode::SUCCESS;
    }
    let selected: Vec<&'static case::Case> = cases::ALL
        .iter()
        .filter(|c| options.cases.is_empty() || options.cases.iter().any(|n| n == c.name))
        .collect();
    if let Some(unknown) = options
        .cases
        .iter()
        .find(|n| cases::ALL.iter().all(|c| c.name != n.as_str()))
    {
        eprintln!("multiproc-bench: no case {unknown:?} (see --list)");
        return ExitCode::from(2);
    }

    let python = match &options.python {
        Some(program) => python::Python::detect(program.clone()),
        None => Err("skipped (--no-python)".to_string()),
    };
    let plan = run::Plan {
        quick: options.quick,
        warmup: options.warmup.unwrap_or(if options.quick { 0 } else { 1 }),
        rounds: options.rounds.unwrap_or(if options.quick { 3 } else { 9 }),
    };
    let machine = report::Machine::probe(
        &python
            .as_ref()
            .map(|p| p.version.clone())
            .map_err(Clone::clone),
    );

    let mut results = Vec::new();
    for case in selected {
        eprint!("{}: ", case.name);
        let result = run::run_case(case, &plan, &python, |round| {
            eprint!("{}", if round < plan.warmup { 'w' } else { '.' });
            let _ = std::io::stderr().flush();
        });
        eprintln!(" {:.2} s", result.seconds);
        results.push(result);
    }
    run::check_targets(&mut results);

    let report = report::Report {
        machine: &machine,
        quick: plan.quick,
        warmup: plan.warmup,
        rounds: plan.rounds,
        cases: &results,
    };
    println!("\n{}", report::render(&report));
    let mut code = ExitCode::SUCCESS;
    for result in results.iter().filter(|r| r.failed()) {
        for series in result.series.iter().filter(|s| s.error.is_some()) {
            let error = series.error.as_deref().unwrap_or_default();
            eprintln!(
                "multiproc-bench: {} / {} failed: {error}",
                result.name, series.label
            );
        }
        code = ExitCode::FAILURE;
    }
    if let Some(path) = &options.json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(path, json + "\n"));
        match written {
            Ok(()) => eprintln!("wrote {}", path.display()),
            Err(e) => {
                eprintln!("multiproc-bench: cannot write {}: {e}", path.display());
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}

/// `Ok(None)` for `--help`.
fn parse(args: impl Iterator<Item = OsString>) -> Result<Option<Options>, String> {
    let mut options = Options {
        quick: false,
        json: None,
        cases: Vec::new(),
        rounds: None,
        warmup: None,
        python: Some("python3".into()),
        list: false,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("unexpected argument {a:?}"))?;
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, v: OsString| {
            v.to_str()
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| format!("{name} needs a number, not {v:?}"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quick" => options.quick = true,
            "--list" => options.list = true,
            "--no-python" => options.python = None,
            "--json" => options.json = Some(value("--json")?.into()),
            "--python" => options.python = Some(value("--python")?),
            "--case" => {
                let name = value("--case")?;
                options.cases.push(name.to_string_lossy().into_owned());
            }
            "--rounds" => {
                let rounds = number("--rounds", value("--rounds")?)?;
                if rounds == 0 {
                    return Err("--rounds must be at least 1".into());
                }
                options.rounds = Some(rounds);
            }
            "--warmup" => options.warmup = Some(number("--warmup", value("--warmup")?)?),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(Some(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Options>, String> {
        parse(list.iter().map(OsString::from))
    }

    #[test]
    fn parses_options() {
        let o = args(&[
            "--quick",
            "--json",
            "out.json",
            "--case",
            "start_join",
            "--rounds",
            "5",
        ])
        .unwrap()
        .unwrap();
        assert!(o.quick);
        assert_eq!(o.json, Some(PathBuf::from("out.json")));
        assert_eq!(o.cases, ["start_join"]);
        assert_eq!(o.rounds, Some(5));
        assert!(args(&["--no-python"]).unwrap().unwrap().python.is_none());
        assert!(args(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn rejects_bad_options() {
        assert!(args(&["--json"]).is_err());
        assert!(args(&["--rounds", "x"]).is_err());
        assert!(args(&["--rounds", "0"]).is_err());
        assert!(args(&["--bogus"]).is_err());
    }
}
