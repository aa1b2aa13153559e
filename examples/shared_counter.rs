//! Shared state: four processes increment one `Value` 100,000 times each
//! under its lock, then fill an `Array` in slices.
//!
//! ```text
//! $ cargo run --example shared_counter
//! counter = 400000
//! squares = [0, 1, 4, 9, 16, 25, 36, 49]
//! ```

use multiproc::{Array, Process, Value, worker};

#[worker]
fn increment(counter: Value<u64>, times: u32) {
    for _ in 0..times {
        // The guard is the lock: `+= 1` cannot race.
        *counter.lock().unwrap() += 1;
    }
}

#[worker]
fn squares(array: Array<u64>, from: usize, to: usize) {
    let mut array = array.lock().unwrap();
    for (i, slot) in array[from..to].iter_mut().enumerate() {
        let n = (from + i) as u64;
        *slot = n * n;
    }
}

fn main() -> multiproc::Result<()> {
    let counter = Value::new(0u64)?;
    let mut workers: Vec<_> = (0..4)
        .map(|_| Process::new(increment, (counter.clone(), 100_000)))
        .collect();
    for w in &mut workers {
        w.start()?;
    }
    for w in &workers {
        w.join()?;
    }
    println!("counter = {}", counter.load());

    let array = Array::new(8)?;
    let mut halves = [
        Process::new(squares, (array.clone(), 0, 4)),
        Process::new(squares, (array.clone(), 4, 8)),
    ];
    for h in &mut halves {
        h.start()?;
    }
    for h in &halves {
        h.join()?;
    }
    println!("squares = {:?}", array.to_vec());
    Ok(())
}
