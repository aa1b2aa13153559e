//! The root's side: one datagram socket for the whole tree, and the thread
//! `multiproc-logs` that re-emits what arrives on it.

use super::wire::{self, Facade, Incoming, Record};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// How long a flush waits for the collector to catch up. The backlog is at
/// most a socket buffer of records, so only a logger that is stuck (not
/// merely slow) makes a flush give up.
const FLUSH_PATIENCE: Duration = Duration::from_secs(5);

struct Collector {
    /// The sending end: duplicated for each child; the flush markers go
    /// through it too, behind everything the children queued.
    tx: OwnedFd,
    /// The number of the last marker sent. Held while one is sent, so that
    /// markers are queued in the order of their numbers.
    sent: Mutex<u64>,
    progress: Arc<Progress>,
    thread: ThreadId,
}

/// What the collector thread tells the flushers.
struct Progress {
    /// The number of the last marker the collector reached.
    reached: Mutex<u64>,
    cond: Condvar,
    /// The collector thread has stopped (it never does but on a failed
    /// `recv`); children then see their sends refused.
    stopped: AtomicBool,
}

/// `None` inside once creating it failed: then nothing is forwarded.
static COLLECTOR: OnceLock<Option<Collector>> = OnceLock::new();

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A duplicate of the sending end for a child, the collector started on
/// the first call.
pub(super) fn sender() -> Option<OwnedFd> {
    let collector = COLLECTOR.get_or_init(|| start().ok()).as_ref()?;
    if collector.progress.stopped.load(Ordering::Relaxed) {
        return None;
    }
    collector.tx.try_clone().ok()
}

fn start() -> std::io::Result<Collector> {
    let (rx, tx) = socket::socketpair(
        AddressFamily::Unix,
        SockType::Datagram,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let progress = Arc::new(Progress {
        reached: Mutex::new(0),
        cond: Condvar::new(),
        stopped: AtomicBool::new(false),
    });
    let theirs = Arc::clone(&progress);
    let thread = std::thread::Builder::new()
        .name("multiproc-logs".into())
        .spawn(move || collect(rx, &theirs))?
        .thread()
        .id();
    crate::sys::startup::at_exit(at_exit);
    Ok(Collector {
        tx,
        sent: Mutex::new(0),
        progress,
        thread,
    })
}

/// The collector thread: one datagram, one record, re-emitted.
fn collect(rx: OwnedFd, progress: &Progress) {
    // One byte more than a record may have: a longer datagram is no child's.
    let mut buf = vec![0u8; wire::MAX_RECORD + 1];
    loop {
        let len = match socket::recv(rx.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(len) => len,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        };
        if len > wire::MAX_RECORD {
            continue;
        }
        match wire::decode(&buf[..len]) {
            Some(Incoming::Record(record)) => {
                // A logger that panics loses its record, not the collector.
                let _ = panic::catch_unwind(AssertUnwindSafe(|| emit(&record)));
            }
            Some(Incoming::Flush(seq)) => {
                *lock(&progress.reached) = seq;
                progress.cond.notify_all();
            }
            None => {}
        }
    }
    progress.stopped.store(true, Ordering::Relaxed);
    progress.cond.notify_all();
}

fn emit(record: &Record<'_>) {
    match record.facade {
        #[cfg(feature = "log")]
        Facade::Log => super::log::emit(record),
        #[cfg(feature = "tracing")]
        Facade::Tracing => super::tracing::emit(record),
        // The other facade is not compiled in (no child of this binary
        // sends it).
        #[allow(unreachable_patterns)]
        _ => {}
    }
}

/// Waits until the collector has re-emitted everything queued before this
/// call, or [`FLUSH_PATIENCE`] has passed. Nothing outside a root, or on
/// the collector thread itself (a logger that joins a process).
pub(super) fn flush() {
    let Some(Some(collector)) = COLLECTOR.get() else {
        return;
    };
    let progress = &collector.progress;
    if std::thread::current().id() == collector.thread {
        return;
    }
    let deadline = Instant::now() + FLUSH_PATIENCE;
    let seq = {
        let mut sent = lock(&collector.sent);
        let seq = *sent + 1;
        let Some(marker) = wire::encode_flush(seq) else {
            return;
        };
        if !send_before(&collector.tx, &marker, deadline) {
            return;
        }
        *sent = seq;
        seq
    };
    let mut reached = lock(&progress.reached);
    while *reached < seq && !progress.stopped.load(Ordering::Relaxed) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        reached = progress
            .cond
            .wait_timeout(reached, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// Sends `datagram` without blocking past `deadline` (the socket is shared
/// with every child, so no timeout can be set on it).
fn send_before(fd: &OwnedFd, datagram: &[u8], deadline: Instant) -> bool {
    loop {
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        match socket::send(fd.as_raw_fd(), datagram, flags) {
            Ok(_) => return true,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                // Short rounds: a datagram socket is reported writable only
                // once most of its buffer is free, and a send may fit before.
                let slice = left.min(Duration::from_millis(20));
                let timeout = PollTimeout::try_from(slice.as_millis().max(1) as u64)
                    .unwrap_or(PollTimeout::MAX);
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut fds, timeout);
            }
            Err(_) => return false,
        }
    }
}

/// At normal exit of a root: join the children as exit handling does (it
/// may be registered after this hook, and so run after it), then wait for
/// their last records.
extern "C" fn at_exit() {
    // Never unwind into libc.
    let _ = panic::catch_unwind(|| {
        crate::process::exit_children();
        flush();
    });
}
