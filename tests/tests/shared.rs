//! `Value`, `Array`, `RawValue`, `RawArray`, `SharedMemory` across processes.

use multiproc::{
    Array, OwnerDied, Process, RawArray, RawValue, SharedMemory, Value, Worker, worker,
};
use multiproc_tests::join;
use multiproc_tests::{run_self, wait_until};
use std::io::ErrorKind;
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);

fn start_all<W: Worker>(mut ps: Vec<Process<W>>) -> Vec<Process<W>> {
    for p in &mut ps {
        p.start().unwrap();
    }
    ps
}

#[worker]
fn increment(counter: Value<u64>, times: u32) {
    for _ in 0..times {
        *counter.lock().unwrap() += 1;
    }
}

#[test]
fn four_processes_increment_one_value_under_its_lock() {
    let counter = Value::new(0u64).unwrap();
    let ps = start_all(
        (0..4)
            .map(|_| Process::new(increment, (counter.clone(), 100_000)))
            .collect(),
    );
    for p in &ps {
        assert_eq!(join(p), 0);
    }
    assert_eq!(counter.load(), 400_000);
}

#[worker]
fn fill_slice(a: Array<u32>, from: usize, to: usize) {
    for i in from..to {
        a.lock().unwrap()[i] += i as u32;
    }
}

#[test]
fn array_slices_split_between_workers() {
    let a = Array::<u32>::new(1000).unwrap();
    let ps = start_all(
        (0..4)
            .map(|k| Process::new(fill_slice, (a.clone(), k * 250, (k + 1) * 250)))
            .collect(),
    );
    for p in &ps {
        assert_eq!(join(p), 0);
    }
    assert_eq!(a.to_vec(), (0..1000).collect::<Vec<u32>>());
}

#[worker]
fn hold_and_die(v: Value<u64>) {
    let mut guard = v.lock().unwrap();
    *guard = 99;
    std::mem::forget(guard);
    std::thread::sleep(Duration::from_secs(3600));
}

#[test]
fn a_holder_killed_with_the_lock_is_reported_to_the_next() {
    for _ in 0..20 {
        let v = Value::new(0u64).unwrap();
        let mut p = Process::new(hold_and_die, (v.clone(),));
        p.start().unwrap();
        assert!(wait_until(BOUND, || v.try_lock().is_none()));
        p.kill().unwrap();
        assert_eq!(join(&p), -9);
        let t = Instant::now();
        match v.lock_timeout(Duration::from_secs(5)) {
            Some(Err(died)) => {
                let guard = died.into_guard();
                assert_eq!(*guard, 99);
            }
            Some(Ok(_)) => panic!("the dead owner was not reported"),
            None => panic!("the lock was not recovered"),
        }
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        // Recovered: later locks are clean.
        assert!(v.lock().is_ok());
    }
}

#[test]
fn a_lock_is_exclusive_between_threads_and_times_out() {
    let v = Value::new(1u8).unwrap();
    let held = v.lock().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let t = Instant::now();
            assert!(v.lock_timeout(Duration::from_millis(100)).is_none());
            assert!(t.elapsed() >= Duration::from_millis(100));
            assert!(v.try_lock().is_none());
        });
    });
    drop(held);
    let guard = v.try_lock().unwrap().unwrap_or_else(OwnerDied::into_guard);
    assert_eq!(*guard, 1);
}

#[worker]
fn raw_writer(v: RawValue<u64>, a: RawArray<u16>) {
    v.store(5);
    for i in 0..a.len() {
        a.set(i, i as u16 * 2);
    }
}

#[test]
fn raw_values_and_arrays_need_no_lock() {
    let v = RawValue::new(0u64).unwrap();
    let a = RawArray::<u16>::new(10).unwrap();
    let mut p = Process::new(raw_writer, (v.clone(), a.clone()));
    p.start().unwrap();
    assert_eq!(join(&p), 0);
    assert_eq!(v.load(), 5);
    assert_eq!(a.to_vec(), (0..10).map(|i| i * 2).collect::<Vec<u16>>());
    assert_eq!(a.get(10), None);
}

#[worker]
fn write_block(block: SharedMemory, at: usize, data: Vec<u8>) -> Option<String> {
    block.write(at, &data).unwrap();
    block.name().map(str::to_string)
}

#[test]
fn anonymous_blocks_reach_children_and_leave_nothing_in_dev_shm() {
    let before = dev_shm();
    let block = SharedMemory::new(1 << 20).unwrap();
    let mut p = Process::new(write_block, (block.clone(), 1000, b"child".to_vec()));
    p.start().unwrap();
    assert_eq!(p.result().unwrap(), None);
    let mut buf = [0u8; 5];
    block.read(1000, &mut buf).unwrap();
    assert_eq!(&buf, b"child");
    assert!(block.read(1 << 20, &mut buf).is_err());
    assert!(block.write((1 << 20) - 2, b"abc").is_err());
    drop(block);
    let after = dev_shm();
    assert!(
        after
            .iter()
            .all(|n| before.contains(n) || n.starts_with("mpt-")),
        "anonymous blocks left {after:?}"
    );
}

fn dev_shm() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn unique(tag: &str) -> String {
    format!("mpt-{tag}-{}", std::process::id())
}

#[test]
fn named_blocks_create_attach_and_errors() {
    let name = unique("named");
    let block = SharedMemory::create(&name, 4096).unwrap();
    assert_eq!(block.name(), Some(format!("/{name}").as_str()));
    let exists = SharedMemory::create(&name, 4096).unwrap_err();
    assert!(
        matches!(&exists, multiproc::Error::Io(e) if e.kind() == ErrorKind::AlreadyExists),
        "{exists}"
    );
    let missing = SharedMemory::attach(&unique("missing")).unwrap_err();
    assert!(
        matches!(&missing, multiproc::Error::Io(e) if e.kind() == ErrorKind::NotFound),
        "{missing}"
    );
    assert!(SharedMemory::create(&unique("zero"), 0).is_err());
    assert!(SharedMemory::create("a/b", 10).is_err());

    // A child given the handle writes through it; it never unlinks.
    let mut p = Process::new(write_block, (block.clone(), 0, b"from child".to_vec()));
    p.start().unwrap();
    assert_eq!(p.result().unwrap(), Some(format!("/{name}")));
    assert!(dev_shm().contains(&name));

    // An attacher, dropped, leaves the name in place.
    let attached = SharedMemory::attach(&name).unwrap();
    let mut buf = [0u8; 10];
    attached.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"from child");
    assert!(attached.unlink().is_err());
    drop(attached);
    assert!(dev_shm().contains(&name));

    // The creator's last handle removes it.
    drop(block);
    assert!(!dev_shm().contains(&name));
}

#[test]
fn a_second_unlink_is_not_found_as_pythons_file_not_found_error() {
    let is_not_found = |e: &multiproc::Error| matches!(e, multiproc::Error::Io(e) if e.kind() == ErrorKind::NotFound);
    let name = unique("unlink-twice");
    let block = SharedMemory::create(&name, 64).unwrap();
    block.unlink().unwrap();
    assert!(!dev_shm().contains(&name));
    let again = block.unlink().unwrap_err();
    assert!(is_not_found(&again), "{again:?}");
    // A clone shares the state: the name is gone for it too.
    let again = block.clone().unlink().unwrap_err();
    assert!(is_not_found(&again), "{again:?}");

    // Removed behind the creator's back: `shm_unlink`'s own ENOENT.
    let name = unique("unlink-behind");
    let block = SharedMemory::create(&name, 64).unwrap();
    nix::sys::mman::shm_unlink(format!("/{name}").as_str()).unwrap();
    let gone = block.unlink().unwrap_err();
    assert!(is_not_found(&gone), "{gone:?}");
    assert!(is_not_found(&block.unlink().unwrap_err()));
}

/// Run as a subprocess: an unrelated process attaching by name.
#[test]
#[ignore = "helper, run by an_unrelated_process_attaches_by_name"]
fn helper_attach_and_write() {
    let name = std::env::var("BLOCK_NAME").unwrap();
    let block = SharedMemory::attach(&name).unwrap();
    block.write(0, b"stranger").unwrap();
}

#[test]
fn an_unrelated_process_attaches_by_name() {
    let name = unique("stranger");
    let block = SharedMemory::create(&name, 64).unwrap();
    let out = run_self(
        &[
            "--exact",
            "helper_attach_and_write",
            "--ignored",
            "--test-threads=1",
        ],
        &[("BLOCK_NAME", &name)],
        BOUND,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut buf = [0u8; 8];
    block.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"stranger");
    assert!(dev_shm().contains(&name), "the attacher removed the name");
}

#[worker]
fn create_named_and_hang(name: String) {
    let block = SharedMemory::create(&name, 64).unwrap();
    std::mem::forget(block);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[test]
fn a_killed_creator_leaves_its_name_as_documented() {
    let name = unique("killed");
    let mut p = Process::new(create_named_and_hang, (name.clone(),));
    p.start().unwrap();
    assert!(wait_until(BOUND, || dev_shm().contains(&name)));
    p.kill().unwrap();
    assert_eq!(join(&p), -9);
    assert!(dev_shm().contains(&name));
    // Cleaning up is attaching and removing by hand.
    nix::sys::mman::shm_unlink(format!("/{name}").as_str()).unwrap();
}

#[worker]
fn create_anonymous_and_hang(ready: RawValue<u32>) {
    let block = SharedMemory::new(1 << 20).unwrap();
    let value = Value::new(1u64).unwrap();
    let array = Array::<u8>::new(4096).unwrap();
    let queue = multiproc::Queue::<u8>::new().unwrap();
    queue.put(1).unwrap();
    ready.store(1);
    std::mem::forget((block, value, array, queue));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[test]
fn a_creator_killed_with_anonymous_blocks_leaves_nothing_in_dev_shm() {
    let before = dev_shm();
    let ready = RawValue::new(0u32).unwrap();
    let mut p = Process::new(create_anonymous_and_hang, (ready.clone(),));
    p.start().unwrap();
    assert!(wait_until(BOUND, || ready.load() == 1));
    p.kill().unwrap();
    assert_eq!(join(&p), -9);
    let after = dev_shm();
    assert!(
        after
            .iter()
            .all(|n| before.contains(n) || n.starts_with("mpt-")),
        "a killed creator left {after:?}"
    );
}
