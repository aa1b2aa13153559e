//! `Process`: the sentinel, `close`, a child watching its parent, the
//! daemon flag inherited from the creator, and the authkey.

use multiproc::{
    Connection, Error, Pipe, Process, Queue, Stdio, Waitable, parent_process, wait, worker,
};
use multiproc_tests::{start, wait_for_word};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(60);

#[worker]
fn quick() -> u32 {
    7
}

/// The target of this process's stdout, as `/proc/self/fd/1` names it.
#[worker]
fn stdout_link() -> String {
    std::fs::read_link("/proc/self/fd/1")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Whether `fd` polls readable within `timeout`.
fn readable(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::from(ms)).unwrap();
    fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLIN))
}

fn links_to(target: &str) -> bool {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|link| link.to_string_lossy() == target)
}

// --- sentinel ---

#[test]
fn the_sentinel_polls_readable_once_the_child_has_exited_and_stays_so() {
    let (tell, child_end) = Pipe::new().unwrap();
    let mut p = Process::new(wait_for_word, (child_end,));
    assert!(matches!(p.sentinel(), Err(Error::NotStarted)));
    p.start().unwrap();

    let fd = p.sentinel().unwrap();
    assert!(
        !readable(fd, Duration::ZERO),
        "readable while the child runs"
    );
    assert_eq!(
        p.sentinel().unwrap().as_raw_fd(),
        fd.as_raw_fd(),
        "the same descriptor each time"
    );

    tell.send(&"exit".to_string()).unwrap();
    assert!(readable(p.sentinel().unwrap(), BOUND));
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    // Reaped: still readable, still the same descriptor.
    assert_eq!(p.sentinel().unwrap().as_raw_fd(), fd.as_raw_fd());
    assert!(readable(p.sentinel().unwrap(), Duration::ZERO));

    p.close().unwrap();
    assert!(matches!(p.sentinel(), Err(Error::Closed)));
}

#[test]
fn a_sentinel_first_asked_for_after_the_child_was_reaped_is_readable() {
    let p = start(quick, ());
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    assert!(readable(p.sentinel().unwrap(), Duration::ZERO));
    // A handle's sentinel is the same shared descriptor.
    let child = p.handle().unwrap();
    assert_eq!(
        child.sentinel().unwrap().as_raw_fd(),
        p.sentinel().unwrap().as_raw_fd()
    );
}

#[test]
fn the_sentinel_works_with_epoll() {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
    let (tell, child_end) = Pipe::new().unwrap();
    let p = start(wait_for_word, (child_end,));
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    epoll
        .add(
            p.sentinel().unwrap(),
            EpollEvent::new(EpollFlags::EPOLLIN, 42),
        )
        .unwrap();
    let mut events = [EpollEvent::empty()];
    assert_eq!(epoll.wait(&mut events, 0u8).unwrap(), 0);
    tell.send(&"exit".to_string()).unwrap();
    let ms = u16::try_from(BOUND.as_millis()).unwrap();
    assert_eq!(epoll.wait(&mut events, ms).unwrap(), 1);
    assert_eq!(events[0].data(), 42);
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
}

// --- close ---

#[test]
fn close_is_refused_while_the_child_runs_and_changes_nothing() {
    let (tell, child_end) = Pipe::new().unwrap();
    let mut p = start(wait_for_word, (child_end,));
    let pid = p.pid().unwrap();
    match p.close() {
        Err(Error::StillRunning { pid: named }) => assert_eq!(named, pid),
        other => panic!("unexpected {other:?}"),
    }
    // Still a working handle.
    assert!(p.is_alive());
    assert!(p.sentinel().is_ok());
    tell.send(&"exit".to_string()).unwrap();
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    p.close().unwrap();
}

#[test]
fn after_close_every_call_on_the_child_is_closed_and_close_again_is_a_no_op() {
    let mut p = start(quick, ());
    let pid = p.pid().unwrap();
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    p.close().unwrap();

    assert!(matches!(p.join(), Err(Error::Closed)));
    assert!(matches!(p.join_timeout(Duration::ZERO), Err(Error::Closed)));
    assert!(matches!(p.result(), Err(Error::Closed)));
    assert!(matches!(p.terminate(), Err(Error::Closed)));
    assert!(matches!(p.kill(), Err(Error::Closed)));
    assert!(matches!(p.sentinel(), Err(Error::Closed)));
    assert!(matches!(p.start(), Err(Error::Closed)));
    assert!(matches!(p.set_daemon(true), Err(Error::Closed)));
    assert!(p.handle().is_none());
    // What it had stays readable.
    assert!(!p.is_alive());
    assert_eq!(p.pid(), Some(pid));
    assert_eq!(p.exitcode(), Some(0));

    p.close().unwrap();
    assert!(matches!(p.join(), Err(Error::Closed)));
}

#[test]
fn a_process_never_started_can_be_closed_and_then_never_starts() {
    let mut p = Process::new(quick, ());
    p.close().unwrap();
    assert!(matches!(p.start(), Err(Error::Closed)));
    assert!(matches!(p.join(), Err(Error::Closed)));
    assert_eq!(p.pid(), None);
    assert_eq!(p.exitcode(), None);
    assert!(!p.is_alive());
    p.close().unwrap();
}

#[test]
fn close_releases_the_untaken_pipe_end() {
    let mut p = Process::new(stdout_link, ());
    p.stdout(Stdio::piped());
    p.start().unwrap();
    // The child's stdout is the pipe whose reading end this handle holds.
    let link = p.result().unwrap();
    assert!(link.starts_with("pipe:["), "{link}");
    assert!(
        links_to(&link),
        "the parent holds the reading end of {link}"
    );
    p.close().unwrap();
    assert!(!links_to(&link), "close() closed the reading end of {link}");
    assert!(p.take_stdout().is_none());
}

// --- watching the parent ---

/// Reports on its parent through `q`: alive, then (once it has exited)
/// joined. It turns off the death signal first, so it outlives its parent.
#[worker]
fn watch_parent(q: Queue<String>) {
    nix::sys::prctl::set_pdeathsig(None).unwrap();
    let parent = parent_process().unwrap();
    let sentinel = parent.sentinel().unwrap();
    let ready = |fd: BorrowedFd<'_>| !wait(&[fd], Some(Duration::ZERO)).unwrap().is_empty();
    let put = |s: String| q.put(s).unwrap();
    put(format!("parent {}", parent.pid()));
    put(format!("alive {}", parent.is_alive()));
    put(format!(
        "joined {}",
        parent.join_timeout(Duration::from_millis(10)).unwrap()
    ));
    put(format!("sentinel {}", ready(sentinel)));
    put(format!("joined {}", parent.join_timeout(BOUND).unwrap()));
    put(format!("alive {}", parent.is_alive()));
    put(format!("sentinel {}", ready(sentinel)));
    put(format!(
        "same sentinel {}",
        parent.sentinel().unwrap().as_raw_fd() == sentinel.as_raw_fd()
    ));
}

/// Like `watch_parent`, but asks only once its parent has gone (it sees
/// itself reparented), so the parent's pidfd is first wanted after the
/// parent's pid may have been reused.
#[worker]
fn watch_parent_late(q: Queue<String>) {
    nix::sys::prctl::set_pdeathsig(None).unwrap();
    let parent = parent_process().unwrap();
    q.put(format!("parent {}", parent.pid())).unwrap();
    let gone = multiproc_tests::wait_until(BOUND, || {
        nix::unistd::getppid().as_raw() as u32 != parent.pid()
    });
    let sentinel = parent.sentinel().unwrap();
    let ready = !wait(&[sentinel], Some(Duration::ZERO)).unwrap().is_empty();
    q.put(format!(
        "gone {gone}, alive {}, joined {}, sentinel {ready}",
        parent.is_alive(),
        parent.join_timeout(Duration::ZERO).unwrap()
    ))
    .unwrap();
}

/// Starts a `watch_parent` (or, if `late`, a `watch_parent_late`)
/// grandchild and waits until it is killed.
#[worker]
fn start_watcher(q: Queue<String>, hold: Connection<()>, late: bool) {
    if late {
        Process::new(watch_parent_late, (q,)).start().unwrap();
    } else {
        Process::new(watch_parent, (q,)).start().unwrap();
    }
    let _ = hold.recv();
}

#[test]
fn a_grandchild_sees_its_parent_alive_then_exited() {
    let q = Queue::new().unwrap();
    let (hold, hold_child) = Pipe::new().unwrap();
    let middle = start(start_watcher, (q.clone(), hold_child, false));
    let next = || q.get_timeout(BOUND).unwrap();

    assert_eq!(next(), format!("parent {}", middle.pid().unwrap()));
    // The middle child lives: alive, a short join times out, the sentinel
    // is not readable.
    assert_eq!(next(), "alive true");
    assert_eq!(next(), "joined false");
    assert_eq!(next(), "sentinel false");

    // The middle child exits; the grandchild's join returns.
    middle.kill().unwrap();
    assert_eq!(middle.join_timeout(BOUND).unwrap(), Some(-9));
    assert_eq!(next(), "joined true");
    assert_eq!(next(), "alive false");
    assert_eq!(next(), "sentinel true");
    assert_eq!(next(), "same sentinel true");
    drop(hold);
}

#[test]
fn a_grandchild_that_first_asks_after_its_parent_died_sees_it_exited() {
    let q = Queue::new().unwrap();
    let (hold, hold_child) = Pipe::new().unwrap();
    let middle = start(start_watcher, (q.clone(), hold_child, true));
    assert_eq!(
        q.get_timeout(BOUND).unwrap(),
        format!("parent {}", middle.pid().unwrap())
    );
    middle.kill().unwrap();
    assert_eq!(middle.join_timeout(BOUND).unwrap(), Some(-9));
    assert_eq!(
        q.get_timeout(BOUND).unwrap(),
        "gone true, alive false, joined true, sentinel true"
    );
    drop(hold);
}

#[worker]
fn parent_now() -> (u32, bool, bool) {
    let parent = parent_process().unwrap();
    (
        parent.pid(),
        parent.is_alive(),
        parent.join_timeout(Duration::ZERO).unwrap(),
    )
}

#[test]
fn a_child_sees_its_living_parent_alive_and_not_joined() {
    let p = start(parent_now, ());
    assert_eq!(p.result().unwrap(), (std::process::id(), true, false));
    assert!(parent_process().is_none());
}

#[test]
fn a_childs_view_of_its_living_parents_sentinel_beside_a_queue() {
    // The child's own view: its parent's sentinel, waited on beside a
    // queue, is not ready while the parent lives.
    let p = start(sentinel_beside_queue, ());
    assert_eq!(p.result().unwrap(), Vec::<usize>::new());
}

#[worker]
fn sentinel_beside_queue() -> Vec<usize> {
    let q = Queue::<u8>::new().unwrap();
    let sentinel = parent_process().unwrap().sentinel().unwrap();
    wait(
        &[&sentinel as &dyn Waitable, &q],
        Some(Duration::from_millis(10)),
    )
    .unwrap()
}

// --- the daemon flag ---

/// What this process is, and the daemon flag of a `Process` created here
/// (and, if `nest`, of one created in that one's child).
#[worker]
fn daemon_flags(nest: bool) -> (bool, bool, Option<(bool, bool)>) {
    let mut p = Process::new(daemon_flags, (false,));
    let default = p.daemon();
    let nested = nest.then(|| {
        p.start().unwrap();
        let (me, default, _) = p.result().unwrap();
        (me, default)
    });
    (multiproc::current_process().daemon(), default, nested)
}

#[test]
fn a_process_created_in_a_daemon_is_a_daemon_unless_told_otherwise() {
    // In the main process: not a daemon.
    assert!(!Process::new(quick, ()).daemon());

    let mut p = Process::new(daemon_flags, (true,));
    p.set_daemon(true).unwrap();
    p.start().unwrap();
    // The daemon child's Process defaults to daemon; so does the one its
    // (daemon) child creates.
    assert_eq!(p.result().unwrap(), (true, true, Some((true, true))));

    let mut p = Process::new(daemon_flags, (true,));
    p.start().unwrap();
    assert_eq!(p.result().unwrap(), (false, false, Some((false, false))));
}

#[worker]
fn start_non_daemon_from_daemon() -> (bool, bool) {
    let mut p = Process::new(daemon_flags, (false,));
    p.set_daemon(false).unwrap();
    p.start().unwrap();
    let (me, _, _) = p.result().unwrap();
    (multiproc::current_process().daemon(), me)
}

#[test]
fn a_daemon_can_still_start_a_non_daemon() {
    let mut p = Process::new(start_non_daemon_from_daemon, ());
    p.set_daemon(true).unwrap();
    p.start().unwrap();
    assert_eq!(p.result().unwrap(), (true, false));
}

// --- the authkey ---

#[worker]
fn my_key() -> Vec<u8> {
    multiproc::current_process().authkey().to_vec()
}

/// This process's key and the key of a child it starts (with `key` set on
/// that child, if given).
#[worker]
fn my_key_and_my_childs(key: Option<Vec<u8>>) -> (Vec<u8>, Vec<u8>) {
    let mut p = Process::new(my_key, ());
    if let Some(key) = key {
        p.set_authkey(key).unwrap();
    }
    p.start().unwrap();
    (
        multiproc::current_process().authkey().to_vec(),
        p.result().unwrap(),
    )
}

#[test]
fn parent_and_child_share_a_random_32_byte_authkey() {
    let key = multiproc::current_process().authkey();
    assert_eq!(key.len(), 32);
    assert!(key.iter().any(|&b| b != 0), "{key:?}");
    assert_eq!(multiproc::current_process().authkey(), key, "stable");
    let mut p = Process::new(my_key, ());
    assert_eq!(p.authkey(), key);
    p.start().unwrap();
    assert_eq!(p.result().unwrap(), key);
}

#[test]
fn set_authkey_gives_the_child_that_key_and_a_grandchild_inherits_it() {
    let mut p = Process::new(my_key_and_my_childs, (None,));
    p.set_authkey(b"family secret".to_vec()).unwrap();
    assert_eq!(p.authkey(), b"family secret");
    p.start().unwrap();
    let (child, grandchild) = p.result().unwrap();
    assert_eq!(child, b"family secret");
    assert_eq!(grandchild, b"family secret");

    // A child can give its own child another key.
    let mut p = Process::new(my_key_and_my_childs, (Some(b"inner".to_vec()),));
    p.start().unwrap();
    let (child, grandchild) = p.result().unwrap();
    assert_eq!(child, multiproc::current_process().authkey());
    assert_eq!(grandchild, b"inner");
}

#[test]
fn set_authkey_refuses_an_empty_or_huge_key_and_a_started_process() {
    let mut p = Process::new(my_key, ());
    let before = p.authkey().to_vec();
    assert!(matches!(
        p.set_authkey(Vec::new()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        p.set_authkey(vec![1; (64 << 10) + 1]),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(p.authkey(), before, "unchanged");
    p.set_authkey(vec![1; 64 << 10]).unwrap();
    p.start().unwrap();
    assert!(matches!(
        p.set_authkey(b"late".to_vec()),
        Err(Error::AlreadyStarted)
    ));
    assert_eq!(p.result().unwrap(), vec![1; 64 << 10]);
}

/// Connects to `address` with this process's own authkey and sends `word`;
/// the error's text if the handshake fails.
#[worker]
fn connect_with_my_key(address: String, word: String) -> Result<(), String> {
    let key = multiproc::current_process().authkey();
    let conn: Connection<String> =
        multiproc::Client::connect(address.as_str(), Some(key)).map_err(|e| e.to_string())?;
    conn.send(&word).map_err(|e| e.to_string())
}

#[test]
fn a_listener_and_a_child_authenticate_with_the_shared_key() {
    let address = format!("@multiproc-process-more-authkey-{}", std::process::id());
    let key = multiproc::current_process().authkey();
    let listener = multiproc::Listener::bind(address.as_str(), Some(key)).unwrap();
    let p = start(connect_with_my_key, (address.clone(), "hello".to_string()));
    let conn: Connection<String> = listener.accept_timeout(BOUND).unwrap();
    assert_eq!(conn.recv().unwrap(), "hello");
    assert_eq!(p.result().unwrap(), Ok(()));

    // A child given another key fails the handshake.
    let mut p = Process::new(connect_with_my_key, (address, "no".to_string()));
    p.set_authkey(b"another".to_vec()).unwrap();
    p.start().unwrap();
    assert!(matches!(
        listener.accept_timeout::<String>(BOUND),
        Err(Error::AuthenticationFailed { .. })
    ));
    let refused = p.result().unwrap().unwrap_err();
    assert!(refused.contains("authentication failed"), "{refused}");
}
