use multiproc::worker;

struct Config {
    verbose: bool,
}

#[worker]
fn run(id: u32, config: Config, name: String) -> bool {
    let _ = (id, name);
    config.verbose
}

fn main() {}
