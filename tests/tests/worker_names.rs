//! Two `#[worker]` functions of one name in different function bodies of a
//! module are two workers: each runs its own body in a child, in a
//! `Process` and in a `Pool`, as two local `fn`s of one name would.

use multiproc::{Pool, Process, Worker};
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(60);

fn doubles() -> Process<impl Worker<Args = (u32,), Output = u32>> {
    #[multiproc::worker]
    fn step(x: u32) -> u32 {
        x * 2
    }
    Process::new(step, (21,))
}

fn squares() -> Process<impl Worker<Args = (u32,), Output = u32>> {
    #[multiproc::worker]
    fn step(x: u32) -> u32 {
        x * x
    }
    Process::new(step, (21,))
}

fn run(mut p: Process<impl Worker<Args = (u32,), Output = u32>>) -> u32 {
    p.start().unwrap();
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    p.result().unwrap()
}

#[test]
fn two_workers_of_one_name_in_one_module_each_run_their_own_body() {
    assert_eq!(run(doubles()), 42);
    assert_eq!(run(squares()), 441);
}

fn pool_of_both(pool: &Pool) -> (Vec<u32>, Vec<u32>) {
    #[multiproc::worker]
    fn twice(x: u32) -> u32 {
        x * 2
    }
    let a = pool.map(twice, [1, 2, 3]).unwrap();
    let b = {
        #[multiproc::worker]
        fn twice(x: u32) -> u32 {
            x + x + 1
        }
        pool.map(twice, [1, 2, 3]).unwrap()
    };
    (a, b)
}

#[test]
fn a_pool_tells_them_apart_too() {
    let pool = Pool::builder().processes(2).build().unwrap();
    assert_eq!(pool_of_both(&pool), (vec![2, 4, 6], vec![3, 5, 7]));
}
