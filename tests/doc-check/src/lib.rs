//! A library of workers as a user writes one; `tests/tests/rustdoc.rs`
//! builds its documentation and reads what rustdoc made of each worker.
#![allow(unsafe_code)] // `#[worker]` registers with a link-section static

use multiproc::worker;
use serde::{Deserialize, Serialize};

/// Doubles a number.
#[worker]
pub fn double(x: i64) -> i64 {
    x * 2
}

/// A job for [`summarize`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    /// The words.
    pub words: Vec<String>,
}

/// Counts the words of each job.
#[worker]
pub fn summarize(jobs: Vec<Job>, limit: Option<u32>) -> Result<Vec<(usize, String)>, String> {
    let _ = limit;
    Ok(jobs
        .iter()
        .map(|j| (j.words.len(), j.words.join(" ")))
        .collect())
}

#[worker]
pub fn undocumented() {}
