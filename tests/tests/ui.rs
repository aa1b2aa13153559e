//! Compile-time diagnostics of `#[worker]` and of `Process::new` (trybuild).
//!
//! Each file in `ui/` holds one mistake; its `.stderr` shows the message the
//! user gets and the tokens it points at. Regenerate with
//! `TRYBUILD=overwrite cargo test -p multiproc-tests --test ui` and review
//! the diff. Files in `ui/pass/` must compile.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
    t.pass("ui/pass/*.rs");
}
