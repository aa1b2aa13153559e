//! The guide's fifth program: a pool squares five numbers.
//!
//! ```text
//! $ cargo run --example pool
//! [1, 4, 9, 16, 25]
//! ```

use multiproc::{Pool, worker};

#[worker]
fn square(x: i64) -> i64 {
    x * x
}

fn main() -> multiproc::Result<()> {
    let pool = Pool::new()?;
    let squares = pool.map(square, [1, 2, 3, 4, 5])?;
    assert_eq!(squares, [1, 4, 9, 16, 25]);
    println!("{squares:?}");
    Ok(())
}
