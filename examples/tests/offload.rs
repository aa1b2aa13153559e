//! Runs the `offload` example (a tokio line service whose CPU-bound work
//! is awaited from a process pool) and checks what it prints.

use std::time::Duration;

#[test]
fn every_client_gets_its_prime_counts_in_order() {
    let out = multiproc_tests::run_example_with("offload", "tokio", Duration::from_secs(60));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout,
        "client 0: 10 -> 4\n\
         client 0: 100 -> 25\n\
         client 0: 1000 -> 168\n\
         client 1: 10000 -> 1229\n\
         client 1: 20000 -> 2262\n\
         client 1: 2 -> 0\n\
         client 2: 50000 -> 5133\n\
         client 2: 30 -> 10\n\
         client 2: seven -> not a number\n\
         served 9 requests on 3 connections\n",
        "{stderr}"
    );
    assert!(stderr.contains("listening on 127.0.0.1:"), "{stderr}");
}
