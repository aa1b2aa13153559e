use multiproc::worker;

struct Config {
    verbose: bool,
}

#[worker]
fn run(config: Config) -> bool {
    config.verbose
}

fn main() {}
