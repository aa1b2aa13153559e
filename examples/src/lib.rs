//! Runnable programs live beside this file; see `Cargo.toml`.

/// The README's Rust programs, compiled and run as doctests so that what a
/// newcomer copies works as written.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
