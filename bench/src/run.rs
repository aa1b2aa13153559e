//! Running the cases: implementations interleaved round by round, then
//! medians, ratios and targets.

use crate::case::{Against, Bound, Case, Method, Params, Runner, Unavailable, Unit};
use crate::cases::procspawn;
use crate::python::{self, Python};
use serde::Serialize;
use std::time::Instant;

/// How many rounds, and whether this is `--quick`.
pub struct Plan {
    pub quick: bool,
    pub warmup: usize,
    pub rounds: usize,
}

/// One implementation's results in one case.
#[derive(Serialize)]
pub struct Series {
    /// `multiproc`, `Python spawn`, `procspawn`, `floor: posix_spawn + waitpid`, ...
    pub label: String,
    pub role: Role,
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// multiproc's median / this one's.
    pub ratio: Option<f64>,
    /// Why there is no median: not available here, or an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub samples: Vec<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Multiproc,
    Python(Method),
    /// The procspawn crate ([`procspawn::runner`]).
    Procspawn,
    /// Index into the case's floors.
    Floor(usize),
}

#[derive(Serialize)]
pub struct CaseResult {
    pub name: &'static str,
    pub measures: &'static str,
    pub unit: &'static str,
    #[serde(skip)]
    pub case: &'static Case,
    pub params: Params,
    pub series: Vec<Series>,
    /// The fastest Python start method, by median.
    pub python_best: Option<Method>,
    pub targets: Vec<TargetResult>,
    pub seconds: f64,
}

#[derive(Serialize)]
pub struct TargetResult {
    pub text: &'static str,
    pub against: Against,
    pub bound: Bound,
    /// multiproc / against (or multiproc's median, for an absolute bound).
    pub ratio: Option<f64>,
    /// `None` when the ratio could not be measured, or the bound is
    /// [`Bound::Show`].
    pub met: Option<bool>,
    /// Index into the case's `series` of the row it compares with.
    #[serde(skip)]
    pub row: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl CaseResult {
    pub fn multiproc(&self) -> &Series {
        &self.series[0]
    }

    /// Whether any implementation failed (as opposed to being unavailable).
    pub fn failed(&self) -> bool {
        self.series.iter().any(|s| s.error.is_some())
    }
}

enum Source<'a> {
    Rust(Runner),
    Python(&'a Python, Method),
}

struct Slot<'a> {
    source: Option<Source<'a>>,
    series: Series,
}

/// Runs `case`: `plan.warmup` discarded rounds, then `plan.rounds`, each
/// running every implementation once, in the same order.
pub fn run_case(
    case: &'static Case,
    plan: &Plan,
    python: &Result<Python, String>,
    mut progress: impl FnMut(usize),
) -> CaseResult {
    let params = if plan.quick { case.quick } else { case.full };
    let mut slots = vec![Slot::new(
        "multiproc",
        Role::Multiproc,
        Some(Source::Rust(case.multiproc)),
    )];
    for &method in case.python {
        let label = format!("Python {}", method.name());
        let source = python.as_ref().ok().map(|py| Source::Python(py, method));
        let mut slot = Slot::new(&label, Role::Python(method), source);
        if let Err(why) = python {
            slot.series.unavailable = Some(why.clone());
        }
        slots.push(slot);
    }
    if let Some(run) = procspawn::runner(case.name) {
        slots.push(Slot::new(
            "procspawn",
            Role::Procspawn,
            Some(Source::Rust(run)),
        ));
    }
    for (i, floor) in case.floors.iter().enumerate() {
        let label = format!("floor: {}", floor.label);
        slots.push(Slot::new(
            &label,
            Role::Floor(i),
            Some(Source::Rust(floor.run)),
        ));
    }

    let started = Instant::now();
    for round in 0..plan.warmup + plan.rounds {
        for slot in &mut slots {
            slot.run(case, &params, round >= plan.warmup);
        }
        progress(round);
    }

    let mut series: Vec<Series> = slots.into_iter().map(|s| s.series).collect();
    for s in &mut series {
        s.median = median(&s.samples);
        s.min = s.samples.iter().copied().reduce(f64::min);
        s.max = s.samples.iter().copied().reduce(f64::max);
    }
    let ours = series[0].median;
    for s in &mut series {
        s.ratio = ours.zip(s.median).map(|(a, b)| a / b);
    }
    let python_best = series
        .iter()
        .filter(|s| s.median.is_some())
        .filter_map(|s| match s.role {
            Role::Python(m) => Some((m, s.median.unwrap_or(f64::NAN))),
            _ => None,
        })
        .reduce(|a, b| {
            let b_better = if case.unit.higher_is_better() {
                b.1 > a.1
            } else {
                b.1 < a.1
            };
            if b_better { b } else { a }
        })
        .map(|(m, _)| m);

    CaseResult {
        name: case.name,
        measures: case.measures,
        unit: case.unit.key(),
        case,
        params,
        series,
        python_best,
        targets: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

impl<'a> Slot<'a> {
    fn new(label: &str, role: Role, source: Option<Source<'a>>) -> Self {
        Slot {
            source,
            series: Series {
                label: label.to_string(),
                role,
                median: None,
                min: None,
                max: None,
                ratio: None,
                unavailable: None,
                error: None,
                samples: Vec::new(),
            },
        }
    }

    /// Runs one round; an error or unavailability stops this implementation.
    fn run(&mut self, case: &Case, params: &Params, keep: bool) {
        let Some(source) = &self.source else { return };
        let round = match source {
            Source::Rust(run) => run(params).map(python::Round::Samples).or_else(|e| {
                match e.downcast::<Unavailable>() {
                    Ok(why) => Ok(python::Round::Unavailable(why.0)),
                    Err(e) => Err(e),
                }
            }),
            Source::Python(py, method) => py.run(case, *method, params),
        };
        match round {
            Ok(python::Round::Samples(samples)) if samples.is_empty() => {
                self.series.error = Some("a round gave no samples".into());
                self.source = None;
            }
            Ok(python::Round::Samples(samples)) => {
                if keep {
                    self.series.samples.extend(samples);
                }
            }
            Ok(python::Round::Unavailable(why)) => {
                self.series.unavailable = Some(why);
                self.source = None;
            }
            Err(e) => {
                self.series.error = Some(e.to_string());
                self.source = None;
            }
        }
    }
}

/// The target every case with a procspawn row gets: multiproc ahead of it.
const AHEAD_OF_PROCSPAWN: &str = "ahead of procspawn";

/// multiproc no worse than procspawn: at most its time (or bytes, or
/// count), at least its rate.
fn ahead_of_procspawn(unit: Unit) -> Bound {
    if unit.higher_is_better() {
        Bound::AtLeast(1.0)
    } else {
        Bound::AtMost(1.0)
    }
}

/// Checks every case's targets, once all cases have run (a target may name
/// another case); a case with a procspawn row also gets
/// [`AHEAD_OF_PROCSPAWN`].
pub fn check_targets(results: &mut [CaseResult]) {
    let mut checked = Vec::new();
    for result in results.iter() {
        let mut targets: Vec<TargetResult> = result
            .case
            .targets
            .iter()
            .map(|t| check(result, t.text, t.against, t.bound, results))
            .collect();
        if result.series.iter().any(|s| s.role == Role::Procspawn) {
            let bound = ahead_of_procspawn(result.case.unit);
            targets.push(check(
                result,
                AHEAD_OF_PROCSPAWN,
                Against::Procspawn,
                bound,
                results,
            ));
        }
        checked.push(targets);
    }
    for (result, targets) in results.iter_mut().zip(checked) {
        result.targets = targets;
    }
}

fn check(
    result: &CaseResult,
    text: &'static str,
    against: Against,
    bound: Bound,
    all: &[CaseResult],
) -> TargetResult {
    let row_of = |role: Role| result.series.iter().position(|s| s.role == role);
    let ours = result.multiproc().median;
    let (row, ratio, note) = match against {
        Against::Floor(i) => {
            let row = row_of(Role::Floor(i));
            (row, row.and_then(|r| result.series[r].ratio), None)
        }
        Against::Python(method) => {
            let row = row_of(Role::Python(method));
            (row, row.and_then(|r| result.series[r].ratio), None)
        }
        Against::Procspawn => {
            let row = row_of(Role::Procspawn);
            (row, row.and_then(|r| result.series[r].ratio), None)
        }
        Against::PythonBest => {
            let row = result.python_best.and_then(|m| row_of(Role::Python(m)));
            (row, row.and_then(|r| result.series[r].ratio), None)
        }
        Against::Absolute => (Some(0), ours, None),
        Against::Rows(a, b) => {
            let median = |i| row_of(Role::Floor(i)).and_then(|r| result.series[r].median);
            let note = median(a).is_none().then(|| match row_of(Role::Floor(a)) {
                Some(r) => format!("no median for {}", result.series[r].label),
                None => format!("the case has no floor {a}"),
            });
            let ratio = median(a).zip(median(b)).map(|(a, b)| a / b);
            (row_of(Role::Floor(b)), ratio, note)
        }
        Against::Case(name) => match all.iter().find(|r| r.name == name) {
            Some(other) => (
                Some(0),
                ours.zip(other.multiproc().median).map(|(a, b)| a / b),
                None,
            ),
            None => (Some(0), None, Some(format!("{name} was not run"))),
        },
    };
    let row = row.unwrap_or(0);
    let note = note.or_else(|| {
        let series = &result.series[row];
        ratio.is_none().then(|| {
            let why = series.unavailable.as_ref().or(series.error.as_ref());
            why.cloned().unwrap_or_else(|| "not measured".to_string())
        })
    });
    TargetResult {
        text,
        against,
        bound,
        ratio,
        met: ratio.and_then(|r| bound.holds(r)),
        row,
        note,
    }
}

/// The median; the mean of the middle two for an even count.
pub fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(role: Role, median: f64, ratio: f64) -> Series {
        let mut s = Slot::new("", role, None).series;
        s.median = Some(median);
        s.ratio = Some(ratio);
        s
    }

    #[test]
    fn a_procspawn_row_gets_its_target() {
        let case = crate::cases::ALL
            .iter()
            .find(|c| c.name == "pool_apply_async")
            .unwrap();
        let mut results = vec![CaseResult {
            name: case.name,
            measures: case.measures,
            unit: case.unit.key(),
            case,
            params: case.quick,
            series: vec![
                series(Role::Multiproc, 300.0, 1.0),
                series(Role::Procspawn, 100.0, 3.0),
            ],
            python_best: None,
            targets: Vec::new(),
            seconds: 0.0,
        }];
        check_targets(&mut results);
        let target = results[0].targets.last().unwrap();
        assert_eq!(target.text, AHEAD_OF_PROCSPAWN);
        assert_eq!(target.row, 1);
        assert_eq!(target.ratio, Some(3.0));
        assert_eq!(target.met, Some(true));
        assert!(matches!(
            ahead_of_procspawn(Unit::Seconds),
            Bound::AtMost(1.0)
        ));
        assert!(matches!(
            ahead_of_procspawn(Unit::PerSecond),
            Bound::AtLeast(1.0)
        ));
    }

    #[test]
    fn a_rows_target_divides_floor_by_floor_and_unavailable_is_no_error() {
        use crate::case::{BoxError, Floor, Target, Unit};
        fn two(_: &Params) -> Result<Vec<f64>, BoxError> {
            Ok(vec![2.0])
        }
        fn six(_: &Params) -> Result<Vec<f64>, BoxError> {
            Ok(vec![6.0])
        }
        fn absent(_: &Params) -> Result<Vec<f64>, BoxError> {
            Err(Unavailable("one CPU".into()).into())
        }
        const PARAMS: Params = Params { iters: 1, size: 0 };
        static CASE: Case = Case {
            name: "rows",
            measures: "",
            unit: Unit::Seconds,
            full: PARAMS,
            quick: PARAMS,
            multiproc: two,
            python: &[],
            floors: &[
                Floor {
                    label: "six",
                    run: six,
                },
                Floor {
                    label: "two",
                    run: two,
                },
                Floor {
                    label: "absent",
                    run: absent,
                },
            ],
            targets: &[Target {
                text: "six ÷ two",
                against: Against::Rows(0, 1),
                bound: Bound::AtMost(3.0),
            }],
        };
        let plan = Plan {
            quick: true,
            warmup: 0,
            rounds: 1,
        };
        let mut results = [run_case(&CASE, &plan, &Err("no".into()), |_| {})];
        check_targets(&mut results);
        let [result] = &results;
        assert!(!result.failed());
        assert_eq!(result.series[3].unavailable.as_deref(), Some("one CPU"));
        let target = &result.targets[0];
        assert_eq!(
            (target.ratio, target.met, target.row),
            (Some(3.0), Some(true), 2)
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
