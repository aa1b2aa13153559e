use multiproc::worker;

#[worker]
fn greeting() -> &'static str {
    "hello"
}

fn main() {}
