use multiproc::worker;

#[worker(foo)]
fn square(x: i64) -> i64 {
    x * x
}

fn main() {}
