//! The chaos soak: SIGKILLs pool workers, queue producers and consumers, lock
//! holders, barrier parties and process trees at random moments under load,
//! also under `RLIMIT_NOFILE` 64 and a small `RLIMIT_AS`, and checks the
//! invariants after every round (see `multiproc_tests::chaos`).
//!
//! ```sh
//! cargo run --release -p multiproc-examples --example chaos -- --duration 30m
//! ```
//!
//! Options: `--duration 90s|30m|1h` (or `--secs N`), `--seed N` (to replay),
//! `--load N` (CPU-burning threads, default 2), `--scenarios pool,queue,...`
//! (default all: pool, queue, lock, barrier, tree, nofile, as), `--rounds N`
//! (stop after N rounds), `--progress SECS` (print the summary so far; 60),
//! `--replay SEED` (run only the round of the first scenario given whose
//! seed a violation printed, `--rounds` times; 1 by default).
//! Prints one summary line and exits with status 1 if any invariant broke.

use multiproc_tests::chaos::{self, Config, Scenario};
use std::time::Duration;

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("bad duration unit in {s:?} (s, m or h)")),
    };
    Ok(Duration::from_secs(secs))
}

fn parse(args: &[String]) -> Result<(Config, Option<u64>), String> {
    let mut config = Config::new(Duration::from_secs(60));
    config.load_threads = 2;
    config.progress = Some(Duration::from_secs(60));
    let mut replay = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: &String| v.parse::<u64>().map_err(|_| format!("bad number {v:?}"));
        match flag.as_str() {
            "--duration" => config.duration = parse_duration(value()?)?,
            "--secs" => config.duration = Duration::from_secs(number(value()?)?),
            "--seed" => config.seed = number(value()?)?,
            "--load" => config.load_threads = number(value()?)? as usize,
            "--rounds" => config.max_rounds = Some(number(value()?)?),
            "--replay" => replay = Some(number(value()?)?),
            "--progress" => config.progress = Some(Duration::from_secs(number(value()?)?)),
            "--scenarios" => {
                config.scenarios = value()?
                    .split(',')
                    .map(|s| Scenario::parse(s).ok_or(format!("unknown scenario {s:?}")))
                    .collect::<Result<_, _>>()?;
                config.min_rounds = config.scenarios.len() as u64;
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok((config, replay))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (config, replay) = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chaos: {e}");
            std::process::exit(2);
        }
    };
    let names: Vec<&str> = config.scenarios.iter().map(|s| s.name()).collect();
    eprintln!(
        "chaos: seed {}, {:?}, {} load threads, scenarios {}",
        config.seed,
        config.duration,
        config.load_threads,
        names.join(",")
    );
    let summary = match replay {
        Some(seed) => chaos::replay(config.scenarios[0], seed, config.max_rounds.unwrap_or(1)),
        None => chaos::run(&config),
    };
    for (name, n) in &summary.per_scenario {
        eprintln!("chaos:   {name}: {n} rounds");
    }
    for (event, n) in &summary.events {
        eprintln!("chaos:   {event}: {n}");
    }
    for d in &summary.details {
        eprintln!("chaos: violation: {d}");
    }
    println!("{summary}");
    if summary.violations > 0 {
        std::process::exit(1);
    }
}
