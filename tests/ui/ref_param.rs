use multiproc::worker;

#[worker]
fn shout(text: &str) -> String {
    text.to_uppercase()
}

fn main() {}
