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
    // The latency floors (the spinning one may be n/a on one CPU).
    for row in [
        "floor: socketpair ping-pong, 8 bytes, both on one CPU",
        "floor: shared-memory spin ping-pong, two CPUs (C)",
        "floor: multiproc, pinned to one CPU",
    ] {
        assert!(stdout.contains(row), "no row {row:?}:\n{stdout}");
    }
}
