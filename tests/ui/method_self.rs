use multiproc::worker;

struct Counter {
    count: u64,
}

impl Counter {
    #[worker]
    fn total(&self) -> u64 {
        self.count
    }
}

fn main() {
    let _ = Counter { count: 1 }.total();
}
