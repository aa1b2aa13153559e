use multiproc::Process;

fn main() {
    let offset = 2;
    let _ = Process::new(move |x: i64| x + offset, (3,));
}
