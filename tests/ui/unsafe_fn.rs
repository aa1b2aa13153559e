use multiproc::worker;

#[worker]
unsafe fn poke(addr: usize) -> u8 {
    addr as u8
}

fn main() {}
