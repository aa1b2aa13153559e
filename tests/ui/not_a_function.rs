use multiproc::worker;

#[worker]
struct Square {
    x: i64,
}

fn main() {
    let _ = Square { x: 1 }.x;
}
