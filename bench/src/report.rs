//! The results as one Markdown table (pasted into BENCHMARKS.md as printed)
//! and as JSON.

use crate::case::{Against, Bound, Unit, sig3};
use crate::run::{CaseResult, Role, Series};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where and how the run happened.
#[derive(Serialize)]
pub struct Machine {
    /// UTC, `YYYY-MM-DD`.
    pub date: String,
    pub unix_time: u64,
    pub cores: usize,
    pub cpu: Option<String>,
    pub kernel: Option<String>,
    /// The Python version, e.g. `3.11.7`.
    pub python: Option<String>,
    /// Why Python did not run, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python_missing: Option<String>,
    pub commit: Option<String>,
}

#[derive(Serialize)]
pub struct Report<'a> {
    pub machine: &'a Machine,
    pub quick: bool,
    pub warmup: usize,
    pub rounds: usize,
    pub cases: &'a [CaseResult],
}

impl Machine {
    pub fn probe(python: &Result<String, String>) -> Machine {
        let unix_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, model)| model.trim().to_string())
            });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|k| k.trim().to_string());
        let commit = std::process::Command::new("git")
            .args([
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "rev-parse",
                "--short",
                "HEAD",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        Machine {
            date: utc_date(unix_time),
            unix_time,
            cores: multiproc::cpu_count(),
            cpu,
            kernel,
            python: python.as_ref().ok().cloned(),
            python_missing: python.as_ref().err().cloned(),
            commit,
        }
    }
}

/// `YYYY-MM-DD` of a Unix time (Howard Hinnant's `civil_from_days`).
fn utc_date(unix_time: u64) -> String {
    let z = (unix_time / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The header lines and the table, as Markdown.
pub fn render(report: &Report<'_>) -> String {
    let m = report.machine;
    let mut out = String::new();
    let mode = if report.quick { "quick" } else { "full" };
    let warmup = match report.warmup {
        0 => "no warm-up".to_string(),
        n => format!("after {n} warm-up"),
    };
    out.push_str(&format!(
        "multiproc-bench, {mode} run: {}, {warmup}, implementations interleaved \
         each round; medians over all rounds.\n",
        plural(report.rounds, "round"),
    ));
    let mut facts = vec![m.date.clone(), format!("{} cores", m.cores)];
    facts.extend(m.cpu.clone());
    facts.extend(m.kernel.as_ref().map(|k| format!("Linux {k}")));
    facts.push(match (&m.python, &m.python_missing) {
        (Some(version), _) => format!("Python {version}"),
        (None, Some(why)) => format!("no Python ({why})"),
        (None, None) => "no Python".to_string(),
    });
    facts.extend(m.commit.as_ref().map(|c| format!("commit {c}")));
    out.push_str(&facts.join(" · "));
    out.push_str("\n\n");

    let mut rows = vec![
        [
            "case",
            "implementation",
            "median",
            "multiproc ÷ this",
            "target (DESIGN.md)",
            "check",
            "met",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for result in report.cases {
        let unit = result.case.unit;
        for (i, series) in result.series.iter().enumerate() {
            let targets: Vec<_> = result.targets.iter().filter(|t| t.row == i).collect();
            let mut label = series.label.clone();
            if matches!(series.role, Role::Python(m) if Some(m) == result.python_best) {
                label.push_str(" (best)");
            }
            let first = [
                if i == 0 {
                    result.name.to_string()
                } else {
                    String::new()
                },
                label,
                median_cell(series, unit),
                if i == 0 {
                    String::new()
                } else {
                    ratio_cell(series, unit)
                },
            ];
            if targets.is_empty() {
                let mut row = first.to_vec();
                row.extend([String::new(), String::new(), String::new()]);
                rows.push(row);
            }
            for (j, target) in targets.iter().enumerate() {
                let mut row = if j == 0 {
                    first.to_vec()
                } else {
                    vec![String::new(); 4]
                };
                // Without a ratio, the row's median cell says why, unless
                // the target names another case.
                let check = match (target.ratio, &target.note) {
                    (Some(r), _) => check_cell(r, target.against, target.bound, unit),
                    (None, Some(why)) if series.median.is_some() => shorten(why, 40),
                    (None, _) => "—".to_string(),
                };
                let met = match target.met {
                    _ if matches!(target.bound, Bound::Show) => "—",
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "n/a",
                };
                row.extend([target.text.to_string(), check, met.to_string()]);
                rows.push(row);
            }
        }
    }
    out.push_str(&markdown(&rows));
    out
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn median_cell(series: &Series, unit: Unit) -> String {
    match (series.median, &series.error, &series.unavailable) {
        (Some(m), _, _) => unit.format(m),
        (None, Some(e), _) => format!("error: {}", shorten(e, 60)),
        (None, None, Some(why)) => format!("n/a: {}", shorten(why, 60)),
        (None, None, None) => "n/a".to_string(),
    }
}

fn ratio_cell(series: &Series, unit: Unit) -> String {
    let Some(ratio) = series.ratio else {
        return String::new();
    };
    let less = match unit {
        Unit::Seconds => Some("faster"),
        Unit::Bytes => Some("less"),
        Unit::Count => Some("fewer"),
        Unit::PerSecond | Unit::BytesPerSecond => None,
    };
    match less {
        // Only where the gap is more than noise.
        Some(word) if ratio < 0.95 => format!("{} ({}× {word})", sig3(ratio), sig3(1.0 / ratio)),
        _ => sig3(ratio),
    }
}

fn check_cell(ratio: f64, against: Against, bound: Bound, unit: Unit) -> String {
    match against {
        Against::Absolute => {
            let limit = match bound {
                Bound::AtMost(l) => format!(" ≤ {}", unit.format(l)),
                Bound::AtLeast(l) => format!(" ≥ {}", unit.format(l)),
                Bound::Show => String::new(),
            };
            format!("{}{limit}", unit.format(ratio))
        }
        _ if matches!(bound, Bound::Show) => sig3(ratio),
        _ => format!("{} {}", sig3(ratio), bound.describe()),
    }
}

fn shorten(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("").replace('|', "/");
    if line.chars().count() <= max {
        line
    } else {
        let cut: String = line.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

fn markdown(rows: &[Vec<String>]) -> String {
    let width = |s: &String| s.chars().count();
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| width(&r[c])).max().unwrap_or(0).max(3))
        .collect();
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    let pad = |s: &String, w: usize| format!("{s}{}", " ".repeat(w - width(s)));
    let mut out = line(
        rows[0]
            .iter()
            .zip(&widths)
            .map(|(s, &w)| pad(s, w))
            .collect(),
    );
    out.push_str(&line(widths.iter().map(|&w| "-".repeat(w)).collect()));
    for row in &rows[1..] {
        out.push_str(&line(
            row.iter().zip(&widths).map(|(s, &w)| pad(s, w)).collect(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_764_028_800), "2025-11-25");
    }

    #[test]
    fn ratio_cells_say_how_much_faster() {
        let mut series = Series {
            label: String::new(),
            role: Role::Floor(0),
            median: Some(1.0),
            min: None,
            max: None,
            ratio: Some(0.02),
            unavailable: None,
            error: None,
            samples: vec![],
        };
        assert_eq!(ratio_cell(&series, Unit::Seconds), "0.0200 (50.0× faster)");
        series.ratio = Some(1.26);
        assert_eq!(ratio_cell(&series, Unit::Seconds), "1.26");
        assert_eq!(
            check_cell(1.26, Against::Floor(0), Bound::AtMost(1.3), Unit::Seconds),
            "1.26 ≤ 1.3"
        );
    }
}
