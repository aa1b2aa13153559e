//! A worker may be called `worker` while the attribute `worker` is in scope:
//! the attribute lives in the macro namespace, the generated value in the
//! type and value namespaces.

use multiproc::{Process, Worker, worker};

#[worker]
fn worker(num: u32) -> u32 {
    num * 10
}

fn main() {
    assert_eq!(worker(4), 40);
    assert!(<worker as Worker>::NAME.ends_with("::worker"));
    let mut p = Process::new(worker, (5,));
    p.start().unwrap();
    assert_eq!(p.result().unwrap(), 50);
}
