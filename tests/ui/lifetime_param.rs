use multiproc::worker;

#[worker]
fn count<'a>(words: Vec<String>) -> usize {
    words.len()
}

fn main() {}
