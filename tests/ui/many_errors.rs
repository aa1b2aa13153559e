use multiproc::worker;

#[worker(fast)]
async unsafe fn everything<T>(name: &str, items: impl Iterator<Item = T>) -> &'static str {
    let _ = (name, items);
    "done"
}

fn main() {}
