use multiproc::Process;

fn square(x: i64) -> i64 {
    x * x
}

fn main() {
    let _ = Process::new(square, (3,));
}
