//! A progress bar over a pool's results: `imap` returns an
//! `ExactSizeIterator` when its input is one, so indicatif's
//! `ProgressIterator` works on it unchanged (`progress_with_style` needs the
//! exact length).
//!
//! ```text
//! $ cargo run --example progress
//! [00:00:01] ######################################## 200/200
//! 2262 primes below 20000
//! ```
//!
//! (The bar is drawn on stderr, and only when it is a terminal.)

use indicatif::{ProgressIterator, ProgressStyle};
use multiproc::{Pool, worker};

/// Counts the primes below `n`, slowly enough to watch.
#[worker]
fn primes_below(n: u32) -> u32 {
    (2..n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u32
}

fn main() -> multiproc::Result<()> {
    let pool = Pool::new()?;
    let limits = (1..201).map(|i| i * 100); // a `Map<Range<u32>, _>`: exact size
    let style = ProgressStyle::with_template("[{elapsed_precise}] {wide_bar} {pos}/{len}")
        .expect("a valid template");
    let counts = pool
        .imap(primes_below, limits)?
        .progress_with_style(style)
        .collect::<multiproc::Result<Vec<u32>>>()?;
    assert_eq!(counts.len(), 200);
    println!("{} primes below 20000", counts[199]);
    Ok(())
}
