//! Logs that reach the parent: records of the `log` crate and events of
//! `tracing`, emitted in any child, re-emitted in the root process.
//!
//! Compiled only with the features `log` and `tracing`; without them the
//! functions below do nothing, and the core pulls neither crate.
//!
//! # How
//!
//! The root process (the one whose logger or subscriber is set while its
//! parent forwards nothing, normally the program's main process) creates,
//! at its first spawn while its `log::max_level()` or its `tracing` level is
//! not off, one close-on-exec `AF_UNIX` `SOCK_DGRAM` socketpair and a
//! collector thread, `multiproc-logs`, that reads one record per datagram
//! and re-emits it in the root's `log::logger()` or `tracing` dispatcher.
//! Every child gets a duplicate of the sending end (by `SCM_RIGHTS`, with
//! the parent's level filters in the spawn header), installs a forwarding
//! logger and/or subscriber before its start hooks run, and hands the same
//! sending end to its own children: the records of every descendant go
//! straight to the root, each named by the process that emitted it.
//!
//! - **Filter.** A child's `log::max_level()` is the parent's, and its
//!   subscriber's `max_level_hint` is the parent's `tracing` level, so a
//!   record below them costs a comparison and no syscall. The parent's
//!   finer filters (per target) are applied when the record is re-emitted.
//!   The levels are the parent's when the child was started.
//! - **Order.** All senders share one socket, hence one receive queue, and
//!   a datagram is queued whole before its `write` returns: each process's
//!   records arrive in the order it wrote them, and a record written after
//!   a child was joined comes after all of that child's. A child that dies
//!   loses at most the record it was writing; a record is never torn.
//! - **Flooding: the child waits.** The send is a blocking `write(2)`; the
//!   kernel holds at most the socket's send buffer (`SO_SNDBUF`, about
//!   200 KiB by default) of records in flight for the whole tree, and a
//!   child whose records would go past it blocks until the collector has
//!   caught up. Nothing is dropped and memory is bounded on both sides; a
//!   slow logger in the root slows the children that log, as a slow logger
//!   slows the threads that log within one process.
//! - **Size.** A record is at most 64 KiB: longer messages are cut, with a
//!   note that says how long they were; long names and values are cut too.
//! - **Join.** When the root reaps a child (`join`, `result`, `exitcode`,
//!   exit handling), it waits, for at most a few seconds, until the
//!   collector has re-emitted everything queued so far: after `join()`,
//!   the child's records have been logged. At exit, the root joins its
//!   children and waits the same way.
//! - **No logger, no forwarding.** If the parent has no logger (its
//!   `log::max_level()` is off) and no subscriber, nothing is installed in
//!   the child, and the child may set up its own (it then collects for its
//!   own children). If the parent has one, the child's own `set_logger` or
//!   `set_global_default` fails (`env_logger::init()` panics; `try_init()`
//!   returns the error).
//!
//! Re-emitted `log` records keep their level, target, module path, file and
//! line, their key-values, and gain `child.name` and `child.pid`. Loggers
//! that print no key-values (`env_logger` without its `kv` feature, or
//! `tracing-log`) would hide those, so the message is also prefixed with
//! `NAME[PID]: `. `tracing` events keep their level, target, module path,
//! file, line and fields (values of the primitive types keep their type;
//! others arrive as their `Debug` rendering) and gain the fields
//! `child.name` and `child.pid`; see the `tracing` submodule for their
//! callsites. Spans of children are not forwarded.

use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;

#[cfg(any(feature = "log", feature = "tracing"))]
mod collector;
#[cfg(feature = "log")]
mod log;
#[cfg(feature = "tracing")]
mod tracing;
#[cfg(any(feature = "log", feature = "tracing"))]
mod wire;

/// What a child is told about forwarding: the parent's level filters, so
/// that records the parent would drop are never sent. 0 is off, 1 error ...
/// 5 trace.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct LogLink {
    pub(crate) log_level: u8,
    pub(crate) tracing_level: u8,
}

/// At each spawn, in the parent: the link for the child and the descriptor
/// it forwards to, or `None` when nothing is forwarded (features off, or
/// the parent has no logger and no subscriber).
pub(crate) fn for_child() -> Option<(LogLink, OwnedFd)> {
    #[cfg(any(feature = "log", feature = "tracing"))]
    {
        imp::for_child()
    }
    #[cfg(not(any(feature = "log", feature = "tracing")))]
    {
        None
    }
}

/// In a child, before its start hooks: installs the forwarding logger and
/// subscriber.
pub(crate) fn start_in_child(link: LogLink, fd: OwnedFd) {
    #[cfg(any(feature = "log", feature = "tracing"))]
    imp::start_in_child(link, fd);
    #[cfg(not(any(feature = "log", feature = "tracing")))]
    let _ = (link, fd);
}

/// In the root, after a child was reaped: waits (a few seconds at most)
/// until every record queued so far has been re-emitted. Nothing elsewhere.
pub(crate) fn flush() {
    #[cfg(any(feature = "log", feature = "tracing"))]
    collector::flush();
}

#[cfg(any(feature = "log", feature = "tracing"))]
mod imp {
    use super::wire::{self, Record};
    use super::{LogLink, collector};
    use nix::errno::Errno;
    use std::os::fd::OwnedFd;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// This process forwards: where to, and what to tell its own children.
    struct Forwarding {
        link: LogLink,
        fd: OwnedFd,
        /// This process's name and pid, carried by each record.
        origin: &'static str,
        pid: u32,
        /// The root is gone (its end of the socket closed): stop sending.
        dead: AtomicBool,
    }

    static FORWARDING: OnceLock<Forwarding> = OnceLock::new();

    pub(super) fn for_child() -> Option<(LogLink, OwnedFd)> {
        if let Some(forwarding) = FORWARDING.get() {
            // Our children send to our root too.
            if forwarding.dead.load(Ordering::Relaxed) {
                return None;
            }
            return Some((forwarding.link, forwarding.fd.try_clone().ok()?));
        }
        let link = LogLink {
            #[cfg(feature = "log")]
            log_level: super::log::parent_level(),
            #[cfg(not(feature = "log"))]
            log_level: 0,
            #[cfg(feature = "tracing")]
            tracing_level: super::tracing::parent_level(),
            #[cfg(not(feature = "tracing"))]
            tracing_level: 0,
        };
        if link.log_level == 0 && link.tracing_level == 0 {
            return None;
        }
        Some((link, collector::sender()?))
    }

    pub(super) fn start_in_child(link: LogLink, fd: OwnedFd) {
        let forwarding = Forwarding {
            link,
            fd,
            origin: crate::current::identity().name.as_str(),
            pid: std::process::id(),
            dead: AtomicBool::new(false),
        };
        if FORWARDING.set(forwarding).is_err() {
            return;
        }
        // Set even when nothing below installs (a logger was there before
        // us): our children still forward to the root.
        #[cfg(feature = "log")]
        if link.log_level > 0 {
            super::log::install(link.log_level);
        }
        #[cfg(feature = "tracing")]
        if link.tracing_level > 0 {
            super::tracing::install(link.tracing_level);
        }
    }

    /// This process's name and pid, if it forwards and the root is there.
    pub(super) fn origin() -> Option<(&'static str, u32)> {
        let forwarding = FORWARDING.get()?;
        if forwarding.dead.load(Ordering::Relaxed) {
            return None;
        }
        Some((forwarding.origin, forwarding.pid))
    }

    /// Sends `record` to the root: one blocking `write(2)` of one datagram
    /// (counted in `/proc/self/io`'s `syscw`). Waits while the socket's
    /// buffer is full; gives up for good once the root is gone.
    pub(super) fn send(record: &Record<'_>) {
        let Some(forwarding) = FORWARDING.get() else {
            return;
        };
        crate::codec::with_scratch(|buf| {
            let mut cap = wire::MAX_RECORD;
            loop {
                if !wire::encode_record(record, cap, buf) {
                    return;
                }
                match write_all_once(&forwarding.fd, buf) {
                    Ok(()) => return,
                    // A send buffer smaller than the record (a tiny
                    // `wmem_default`): try once more, shorter.
                    Err(Errno::EMSGSIZE) if cap > wire::SMALL_RECORD => cap = wire::SMALL_RECORD,
                    Err(Errno::EMSGSIZE | Errno::ENOBUFS | Errno::ENOMEM) => return,
                    Err(_) => {
                        forwarding.dead.store(true, Ordering::Relaxed);
                        #[cfg(feature = "log")]
                        ::log::set_max_level(::log::LevelFilter::Off);
                        return;
                    }
                }
            }
        });
    }

    fn write_all_once(fd: &OwnedFd, datagram: &[u8]) -> Result<(), Errno> {
        loop {
            match nix::unistd::write(fd, datagram) {
                // A datagram goes whole or not at all.
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
}
