//! Dispatch before `main` works from an ordinary binary target.

use multiproc_tests::run_bounded;
use std::process::Command;
use std::time::Duration;

#[test]
fn a_binary_target_runs_its_worker() {
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_spawn_from_bin")),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Process-1 squared 9 = 81\n"
    );
}
