//! The smallest program: one process that prints `Foo`.
//!
//! ```text
//! $ cargo run --example foo
//! Foo
//! ```

use multiproc::{Process, worker};

#[worker]
fn foo() {
    println!("Foo");
}

fn main() -> multiproc::Result<()> {
    let mut p = Process::new(foo, ());
    p.start()?;
    p.join()?;
    Ok(())
}
