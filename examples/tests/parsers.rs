//! Runs the `parsers` example (a pool of crash-prone parsers under a memory
//! limit and a task timeout, with `tracing` from the workers) and checks
//! what it prints.

use std::time::Duration;

#[test]
fn each_bad_document_fails_alone_and_the_workers_events_reach_the_parent() {
    let out = multiproc_tests::run_example_with("parsers", "tracing", Duration::from_secs(60));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("document "))
        .collect();
    assert_eq!(
        summary,
        [
            "document 0: ok, 2 fields",
            "document 1: panicked: document 1: no '=' in \"no-equals-sign\"",
            "document 2: timed out after 2s",
            "document 3: out of memory (limit 512 MiB)",
            "document 4: killed by signal 6",
            "document 5: ok, 3 fields",
        ],
        "{stdout}"
    );
    // The workers' events, re-emitted by the parent's subscriber with the
    // worker's name; debug events (below the parent's level) never came.
    let events: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("PoolWorker-"))
        .collect();
    for id in 0..6 {
        assert!(
            events
                .iter()
                .any(|l| l.contains("parsing") && l.contains(&format!("id={id}"))),
            "no 'parsing' event for document {id}: {stdout}"
        );
    }
    for (id, fields) in [(0, 2), (5, 3)] {
        assert!(
            events.iter().any(|l| l.contains("parsed")
                && l.contains(&format!("id={id}"))
                && l.contains(&format!("fields={fields}"))),
            "no 'parsed' event for document {id}: {stdout}"
        );
    }
    assert!(
        !stdout.contains("growing"),
        "a debug event passed the filter: {stdout}"
    );
}
