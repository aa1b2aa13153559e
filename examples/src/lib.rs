//! Runnable programs live beside this file; see `Cargo.toml`.
