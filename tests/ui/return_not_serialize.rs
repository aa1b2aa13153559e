use multiproc::worker;

struct Report {
    lines: usize,
}

#[worker]
fn analyze(text: String) -> Report {
    Report {
        lines: text.lines().count(),
    }
}

fn main() {}
