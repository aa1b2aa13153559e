use multiproc::worker;

struct Parser;

impl Parser {
    #[worker]
    fn parse(text: String) -> usize {
        text.len()
    }
}

fn main() {}
