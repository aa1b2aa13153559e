//! Workers and parameters may use any name the expansion itself uses
//! internally (`f`, `args`, `call`, `fmt`, `deref`, `WORKER`, ...): every
//! binding the macro introduces is prefixed with `__multiproc`.

use multiproc::{Process, Worker};

mod workers {
    use multiproc::worker;

    #[worker]
    pub fn f(x: u8) -> u8 {
        x + 1
    }

    #[worker]
    pub fn args(items: Vec<u8>) -> usize {
        items.len()
    }

    #[worker]
    pub fn fmt() -> String {
        "fmt".to_string()
    }

    #[worker]
    pub fn deref() {}

    #[worker]
    #[allow(non_snake_case)]
    pub fn NAME() -> [u8; 0] {
        []
    }

    #[worker]
    #[allow(non_snake_case)]
    pub fn WORKER(x: u8) -> u8 {
        x
    }

    #[worker]
    #[allow(non_snake_case)]
    pub fn CALL(x: u8) -> u8 {
        x
    }
}

mod parameters {
    use multiproc::worker;

    #[worker]
    pub fn sum(args: u8, f: u8, fmt: u8, deref: u8, x: u8) -> u8 {
        args + f + fmt + deref + x
    }

    #[worker]
    #[allow(non_snake_case)]
    pub fn output(Args: u8, Output: u8, NAME: u8, WORKER: u8, call: u8) -> u8 {
        Args + Output + NAME + WORKER + call
    }
}

fn main() {
    assert_eq!(workers::f(1), 2);
    assert_eq!(workers::args(vec![1, 2]), 2);
    assert_eq!(workers::fmt(), "fmt");
    workers::deref();
    assert_eq!(workers::NAME(), []);
    assert_eq!(workers::WORKER(3), 3);
    assert_eq!(workers::CALL(4), 4);
    assert_eq!(format!("{:?}", workers::f), <workers::f as Worker>::NAME);
    assert_eq!(parameters::sum(1, 2, 3, 4, 5), 15);
    assert_eq!(parameters::output(1, 2, 3, 4, 5), 15);

    let mut p = Process::new(parameters::sum, (1, 2, 3, 4, 5));
    p.start().unwrap();
    assert_eq!(p.result().unwrap(), 15);
    let mut p = Process::new(workers::WORKER, (6,));
    p.start().unwrap();
    assert_eq!(p.result().unwrap(), 6);
}
