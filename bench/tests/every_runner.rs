//! Every case's multiproc and floor runners, once, through the real binary:
//! the floors start this binary again as their bare child, which a unit
//! test binary cannot be.

use std::process::Command;

#[test]
fn every_case_runs_without_python() {
    let out = Command::new(env!("CARGO_BIN_EXE_multiproc-bench"))
        .args(["--quick", "--no-python", "--rounds", "1", "--warmup", "0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let listed = Command::new(env!("CARGO_BIN_EXE_multiproc-bench"))
        .arg("--list")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    let names: Vec<&str> = listed
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(' '))
        .collect();
    assert!(names.len() > 1, "{listed}");
    for name in names {
        assert!(
            stdout.contains(&format!("| {name} ")),
            "no row for {name}:\n{stdout}"
        );
    }
    assert!(!stdout.contains("error:"), "{stdout}");
    // procspawn's children re-execute this binary: none of them may run
    // the harness or print into its table.
    assert_eq!(stdout.matches("multiproc-bench, quick run").count(), 1);
    for name in WITH_PROCSPAWN {
        let rows = case_rows(&stdout, name);
        let row = rows
            .iter()
            .find(|cells| cells[1] == "procspawn")
            .unwrap_or_else(|| panic!("no procspawn row for {name}:\n{stdout}"));
        let measured = !row[2].starts_with("n/a") && !row[2].starts_with("error");
        assert!(measured, "{name}: {row:?}");
        assert!(
            rows.iter().any(|cells| cells[4] == "ahead of procspawn"),
            "{name}: no target against procspawn: {rows:?}"
        );
    }
    // The latency floors (the spinning one may be n/a on one CPU).
    for row in [
        "floor: socketpair ping-pong, 8 bytes, both on one CPU",
        "floor: shared-memory spin ping-pong, two CPUs (C)",
        "floor: multiproc, pinned to one CPU",
    ] {
        assert!(stdout.contains(row), "no row {row:?}:\n{stdout}");
    }
}

/// The cases `bench/src/cases/procspawn.rs` has a runner for.
const WITH_PROCSPAWN: &[&str] = &[
    "start_join",
    "pool_apply",
    "pool_apply_async",
    "pool_map",
    "pool_payload_1mib",
    "pool_payload_8mib",
];

/// The table rows of case `name`, each split into its trimmed cells.
fn case_rows(table: &str, name: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in table.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        if !cells[0].is_empty() {
            inside = cells[0] == name;
        }
        if inside {
            rows.push(cells);
        }
    }
    rows
}
