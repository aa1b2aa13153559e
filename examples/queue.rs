//! The guide's third program: a child sends a greeting through a `Queue`.
//!
//! ```text
//! $ cargo run --example queue
//! Hello from worker!
//! ```

use multiproc::{Process, Queue, worker};

#[worker]
fn send_greeting(q: Queue<String>) {
    q.put("Hello from worker!".to_string()).unwrap();
}

fn main() -> multiproc::Result<()> {
    let q = Queue::new()?;
    let mut p = Process::new(send_greeting, (q.clone(),));
    p.start()?;
    println!("{}", q.get()?);
    p.join()?;
    Ok(())
}
