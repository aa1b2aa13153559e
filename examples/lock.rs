//! The guide's fourth program: five processes take turns under a shared
//! `Lock`, so their lines never mix.
//!
//! ```text
//! $ cargo run --example lock
//! Critical section!
//! Critical section!
//! Critical section!
//! Critical section!
//! Critical section!
//! ```

use multiproc::{Lock, Process, worker};

#[worker]
fn critical(lock: Lock) {
    let _held = lock.acquire().unwrap();
    println!("Critical section!");
}

fn main() -> multiproc::Result<()> {
    let lock = Lock::new()?;
    let mut jobs = Vec::new();
    for _ in 0..5 {
        let mut p = Process::new(critical, (lock.clone(),));
        p.start()?;
        jobs.push(p);
    }
    for p in &jobs {
        p.join()?;
    }
    Ok(())
}
