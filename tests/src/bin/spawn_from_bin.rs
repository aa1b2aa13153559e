//! A plain binary that starts a worker: proves dispatch works from a `[[bin]]`
//! target too. Prints the worker's result.

use multiproc::{Process, current_process, worker};

#[worker]
fn describe(n: u32) -> String {
    format!("{} squared {n} = {}", current_process().name(), n * n)
}

fn main() -> multiproc::Result<()> {
    let mut p = Process::new(describe, (9,));
    p.start()?;
    println!("{}", p.result()?);
    Ok(())
}
