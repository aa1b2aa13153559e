//! The cases, in the order they run and print.
//!
//! Adding one: a module with its `multiproc` (and floor) runners and a
//! `pub const CASE: Case`, a function of the same name in
//! `bench/python/bench.py`, and a line in [`ALL`].

use crate::case::{BoxError, Case};
use std::time::Instant;

pub mod start_join;

pub const ALL: &[Case] = &[start_join::CASE];

/// Runs `op` `iters` times and returns the seconds each run took.
pub fn time_each(
    iters: usize,
    mut op: impl FnMut() -> Result<(), BoxError>,
) -> Result<Vec<f64>, BoxError> {
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        op()?;
        samples.push(start.elapsed().as_secs_f64());
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_params_nonzero() {
        for (i, case) in ALL.iter().enumerate() {
            assert!(
                ALL[..i].iter().all(|c| c.name != case.name),
                "{} twice",
                case.name
            );
            assert!(case.full.iters > 0 && case.quick.iters > 0, "{}", case.name);
        }
    }
}
