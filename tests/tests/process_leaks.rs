//! Spawning many processes leaks no descriptor and leaves no zombie. Alone in
//! its test binary, so no other test opens descriptors meanwhile.

use multiproc::{Process, worker};
use multiproc_tests::{child_pids, open_fds};
use std::time::Duration;

#[worker]
fn short(i: u32) -> u32 {
    i + 1
}

#[test]
fn two_hundred_short_processes_leave_nothing_behind() {
    // Warm up once: the first spawn creates lazily-initialised state.
    let mut p = Process::new(short, (0,));
    p.start().unwrap();
    p.result().unwrap();
    let before = open_fds();

    for round in 0..20 {
        let mut batch: Vec<_> = (0..10)
            .map(|i| {
                let mut p = Process::new(short, (round * 10 + i,));
                p.start().unwrap();
                p
            })
            .collect();
        for (i, p) in batch.iter_mut().enumerate() {
            assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
            assert_eq!(p.result().unwrap(), round * 10 + i as u32 + 1);
        }
        // Joined processes hold no descriptors even while their handles live.
        assert_eq!(open_fds(), before, "descriptors leaked in round {round}");
    }
    assert_eq!(open_fds(), before);
    assert_eq!(child_pids(), Vec::<u32>::new(), "zombies left behind");
}
