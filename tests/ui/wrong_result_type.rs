use multiproc::{Process, worker};

#[worker]
fn square(x: i64) -> i64 {
    x * x
}

fn main() {
    let mut p = Process::new(square, (3,));
    p.start().unwrap();
    let s: String = p.result().unwrap();
    println!("{s}");
}
