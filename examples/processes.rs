//! Five processes started together: every "started" line comes before any
//! "finished" line, each from its own `Process-N`.
//!
//! ```text
//! $ cargo run --example processes
//! Worker 0 started in Process-1
//! ...
//! Worker 4 finished in Process-5
//! ```

use multiproc::{Process, current_process, worker};

#[worker]
fn worker(num: u32) {
    let name = current_process().name();
    println!("Worker {num} started in {name}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    println!("Worker {num} finished in {name}");
}

fn main() -> multiproc::Result<()> {
    let mut jobs = Vec::new();
    for i in 0..5 {
        let mut p = Process::new(worker, (i,));
        p.start()?;
        jobs.push(p);
    }
    for p in &mut jobs {
        p.join()?;
    }
    Ok(())
}
