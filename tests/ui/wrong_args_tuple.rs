use multiproc::{Process, worker};

#[worker]
fn square(x: i64) -> i64 {
    x * x
}

fn main() {
    let _p = Process::new(square, ("x",));
}
