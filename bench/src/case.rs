//! What a benchmark case is: the same work done three ways, and its targets.

use serde::Serialize;

/// A runner's error: whatever multiproc, procspawn, nix or std returned.
pub type BoxError = Box<dyn std::error::Error>;

/// A runner's error meaning "not on this machine" (too few CPUs, say): the
/// table shows the row as n/a with the reason, and the run does not fail.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// One round of one implementation: samples in the case's [`Unit`] (one per
/// operation for latencies, or one per round for rates).
pub type Runner = fn(&Params) -> Result<Vec<f64>, BoxError>;

/// One benchmark: the work measured in multiproc, in Python's
/// `multiprocessing` (a function of the same name in `bench/python/bench.py`)
/// and on the raw OS floor; procspawn's runners, where it has one, are in
/// [`crate::cases::procspawn`], not here.
pub struct Case {
    /// Its name on the command line, in the table and in `bench.py`.
    pub name: &'static str,
    /// What one sample measures, for `--list` and BENCHMARKS.md.
    pub measures: &'static str,
    pub unit: Unit,
    /// The work of one round in a full run and in `--quick`.
    pub full: Params,
    pub quick: Params,
    pub multiproc: Runner,
    /// Python start methods to run; empty if Python has no counterpart.
    pub python: &'static [Method],
    /// The raw OS doing the same work; several where more than one bare
    /// baseline is worth seeing (serial and rayon, say).
    pub floors: &'static [Floor],
    /// DESIGN.md's targets for the case.
    pub targets: &'static [Target],
}

/// The least the OS needs to do the same work.
pub struct Floor {
    /// What it does, e.g. `posix_spawn + waitpid`.
    pub label: &'static str,
    pub run: Runner,
}

/// The size of one round; `bench.py` gets the same as `--iters` and `--size`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Params {
    /// Operations per round.
    pub iters: usize,
    /// A case-defined size (message bytes, items); 0 where unused.
    pub size: usize,
}

/// What a sample is, which way is better, and how `bench.py` names it.
#[allow(dead_code)] // variants for the cases later parts add
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Seconds per operation; lower is better.
    Seconds,
    /// Operations per second; higher is better.
    PerSecond,
    /// Bytes (memory); lower is better.
    Bytes,
    /// Bytes per second; higher is better.
    BytesPerSecond,
    /// A count (OS threads, say); lower is better.
    Count,
}

impl Unit {
    /// The unit's name in `bench.py`'s output and in the JSON report.
    pub fn key(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::PerSecond => "1/s",
            Unit::Bytes => "B",
            Unit::BytesPerSecond => "B/s",
            Unit::Count => "n",
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(self, Unit::PerSecond | Unit::BytesPerSecond)
    }

    /// `value` with a scaled unit, three significant digits.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Seconds => {
                let (scale, suffix) = [(1.0, "s"), (1e-3, "ms"), (1e-6, "µs")]
                    .into_iter()
                    .find(|&(scale, _)| value >= scale)
                    .unwrap_or((1e-9, "ns"));
                format!("{} {suffix}", sig3(value / scale))
            }
            Unit::PerSecond => format!("{}/s", si(value, 1000.0, &["", "k", "M", "G"])),
            Unit::Bytes => format!("{}B", si(value, 1024.0, &[" ", " Ki", " Mi", " Gi"])),
            Unit::BytesPerSecond => {
                format!("{}B/s", si(value, 1024.0, &[" ", " Ki", " Mi", " Gi"]))
            }
            Unit::Count => sig3(value),
        }
    }
}

/// Three significant digits, no exponent.
pub fn sig3(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let digits = 2 - value.abs().log10().floor() as i32;
    format!("{value:.*}", digits.max(0) as usize)
}

fn si(value: f64, base: f64, prefixes: &[&str]) -> String {
    let mut scaled = value;
    let mut prefix = prefixes[0];
    for p in &prefixes[1..] {
        if scaled < base {
            break;
        }
        scaled /= base;
        prefix = p;
    }
    format!("{}{prefix}", sig3(scaled))
}

/// A Python start method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Spawn,
    Fork,
    Forkserver,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Spawn => "spawn",
            Method::Fork => "fork",
            Method::Forkserver => "forkserver",
        }
    }
}

/// A target from DESIGN.md's performance table: a bound on multiproc's
/// median divided by another median (or on multiproc's median itself, or
/// on one floor row's median divided by another's).
pub struct Target {
    /// As DESIGN.md words it.
    pub text: &'static str,
    pub against: Against,
    pub bound: Bound,
}

/// What multiproc's median is divided by.
#[allow(dead_code)] // variants for the cases later parts add
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Against {
    /// The case's floor with this index in [`Case::floors`].
    Floor(usize),
    /// Python with this start method.
    Python(Method),
    /// Python's best start method.
    PythonBest,
    /// The procspawn crate's row (the harness adds this target itself to
    /// every case procspawn runs).
    Procspawn,
    /// multiproc's median in another case (same unit).
    Case(&'static str),
    /// Not multiproc's main median: floor `.0`'s divided by floor `.1`'s
    /// (multiproc pinned to one CPU, a floor row, over the one-CPU kernel
    /// floor, say). Shown on floor `.1`'s row.
    Rows(usize, usize),
    /// Nothing: the bound is on multiproc's median, in the case's unit.
    Absolute,
}

/// A bound on the ratio `multiproc / against`.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    AtMost(f64),
    AtLeast(f64),
    /// No bound: the ratio is shown (a comparison DESIGN.md asks to see),
    /// nothing is checked.
    Show,
}

impl Bound {
    /// Whether `ratio` meets the bound; `None` for [`Bound::Show`].
    pub fn holds(self, ratio: f64) -> Option<bool> {
        match self {
            Bound::AtMost(limit) => Some(ratio <= limit),
            Bound::AtLeast(limit) => Some(ratio >= limit),
            Bound::Show => None,
        }
    }

    /// `≤ 1.3`; empty for [`Bound::Show`].
    pub fn describe(self) -> String {
        match self {
            Bound::AtMost(limit) => format!("≤ {limit}"),
            Bound::AtLeast(limit) => format!("≥ {limit}"),
            Bound::Show => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_scaled_values() {
        assert_eq!(Unit::Seconds.format(0.001234), "1.23 ms");
        assert_eq!(Unit::Seconds.format(12.5e-6), "12.5 µs");
        assert_eq!(Unit::Seconds.format(850e-9), "850 ns");
        assert_eq!(Unit::Seconds.format(2.0), "2.00 s");
        assert_eq!(Unit::PerSecond.format(2_900_000.0), "2.90M/s");
        assert_eq!(Unit::PerSecond.format(12.0), "12.0/s");
        assert_eq!(Unit::Bytes.format(3.5 * 1024.0 * 1024.0), "3.50 MiB");
        assert_eq!(Unit::BytesPerSecond.format(3e9), "2.79 GiB/s");
    }

    #[test]
    fn bounds() {
        assert_eq!(Bound::AtMost(1.3).holds(1.2), Some(true));
        assert_eq!(Bound::AtMost(1.3).holds(1.31), Some(false));
        assert_eq!(Bound::AtLeast(10.0).holds(10.0), Some(true));
        assert_eq!(Bound::Show.holds(10.0), None);
        assert_eq!(Bound::AtMost(1.0 / 25.0).describe(), "≤ 0.04");
    }
}
