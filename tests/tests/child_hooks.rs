//! `on_child_start`: hooks registered in the parent run first in every
//! child (processes, pool workers, grandchildren), before the initializer
//! and the worker. Hooks are process-wide, so they live in this test binary
//! alone.

use multiproc::{Error, Pool, Process, on_child_start, worker};
use std::sync::Once;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(60);

/// Appends `hook` to `TRAIL`; panics if the child was told to.
#[worker]
fn hook() {
    if std::env::var_os("HOOK_PANIC").is_some() {
        panic!("the hook was told to fail");
    }
    append("hook");
}

#[worker]
fn second_hook() {
    append("second");
}

fn append(what: &str) {
    let so_far = std::env::var("TRAIL").unwrap_or_default();
    // SAFETY: hooks and initializers run before the child starts threads.
    unsafe { std::env::set_var("TRAIL", format!("{so_far}{what},")) };
}

#[worker]
fn init() {
    append("init");
}

#[worker]
fn trail() -> String {
    std::env::var("TRAIL").unwrap_or_default()
}

/// Starts a grandchild and returns its trail.
#[worker]
fn grandchild_trail() -> String {
    let mut p = Process::new(trail, ());
    p.env_remove("TRAIL");
    p.start().unwrap();
    p.result().unwrap()
}

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        on_child_start(hook);
        on_child_start(second_hook);
        on_child_start(hook); // a second registration runs it once
    });
}

#[test]
fn hooks_run_first_in_order_and_once_then_the_initializer_then_the_worker() {
    register();
    let mut p = Process::new(trail, ());
    p.env_remove("TRAIL").initializer(init, ());
    p.start().unwrap();
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    assert_eq!(p.result().unwrap(), "hook,second,init,");
    // Not in this process.
    assert!(std::env::var_os("TRAIL").is_none());
}

#[test]
fn hooks_reach_grandchildren_and_pool_workers() {
    register();
    let mut p = Process::new(grandchild_trail, ());
    p.start().unwrap();
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    assert_eq!(p.result().unwrap(), "hook,second,");

    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(1)
        .env_remove("TRAIL")
        .initializer(init, ())
        .build()
        .unwrap();
    for _ in 0..4 {
        assert_eq!(pool.apply(trail, ()).unwrap(), "hook,second,init,");
    }
}

#[test]
fn a_failing_hook_stops_the_child_and_breaks_a_pool_with_its_message() {
    register();
    let mut p = Process::new(trail, ());
    p.env("HOOK_PANIC", "1").stderr(multiproc::Stdio::null());
    p.start().unwrap();
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(2));
    match p.result() {
        Err(Error::InitializerFailed {
            worker, message, ..
        }) => {
            assert!(
                worker.contains("start hook") && worker.contains("hook"),
                "{worker}"
            );
            assert_eq!(message, "the hook was told to fail");
        }
        other => panic!("unexpected {other:?}"),
    }

    let pool = Pool::builder()
        .processes(1)
        .env("HOOK_PANIC", "1")
        .stderr(multiproc::Stdio::null())
        .build()
        .unwrap();
    let mut result = pool.apply_async(trail, ()).unwrap();
    match result.get_timeout(BOUND) {
        Err(Error::PoolBroken { reason }) => {
            assert!(reason.contains("the hook was told to fail"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
}
