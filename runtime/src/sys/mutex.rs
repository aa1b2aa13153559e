//! Robust, process-shared pthread mutexes living in shared memory.
//!
//! If a holder dies, the kernel marks the mutex and the next locker gets
//! `EOWNERDEAD`; we make it consistent at once and report `OwnerDied`, so the
//! caller can repair what the dead holder left (the queue replays its
//! journal).

use super::shm::Mapping;
use std::io;
use std::time::Instant;

/// Bytes a mutex occupies in shared memory (`pthread_mutex_t`).
pub(crate) const MUTEX_SIZE: usize = std::mem::size_of::<libc::pthread_mutex_t>();
const MUTEX_ALIGN: usize = std::mem::align_of::<libc::pthread_mutex_t>();

/// How a lock attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    /// Acquired.
    Acquired,
    /// Acquired, and the previous holder died while holding it.
    OwnerDied,
    /// Not acquired before the deadline (or at once, for a try).
    TimedOut,
}

unsafe extern "C" {
    // glibc 2.30+; the libc crate does not bind it yet.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

fn ptr(map: &Mapping, offset: usize) -> *mut libc::pthread_mutex_t {
    map.addr(offset, MUTEX_SIZE, MUTEX_ALIGN).cast()
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(ret))
    }
}

/// Initialises a robust, process-shared mutex at `offset` by
/// [`pthread_mutex_init(3)`](https://man7.org/linux/man-pages/man3/pthread_mutex_init.3p.html).
/// Only for fresh memory that no other process sees yet.
pub(crate) fn init(map: &Mapping, offset: usize) -> io::Result<()> {
    // SAFETY: an attr is plain data that `init` fills in.
    let mut attr: libc::pthread_mutexattr_t = unsafe { std::mem::zeroed() };
    // SAFETY: `attr` is valid and writable; every call checks its result, and
    // the attr is destroyed once, after use. The mutex memory is in bounds
    // and aligned (`ptr` checks) and not yet shared with anyone.
    unsafe {
        check(libc::pthread_mutexattr_init(&mut attr))?;
        let result = (|| {
            check(libc::pthread_mutexattr_setpshared(
                &mut attr,
                libc::PTHREAD_PROCESS_SHARED,
            ))?;
            check(libc::pthread_mutexattr_setrobust(
                &mut attr,
                libc::PTHREAD_MUTEX_ROBUST,
            ))?;
            check(libc::pthread_mutex_init(ptr(map, offset), &attr))
        })();
        libc::pthread_mutexattr_destroy(&mut attr);
        result
    }
}

/// Locks the mutex at `offset`, waiting until `deadline` (`None`: for ever;
/// a past deadline: try once), by `pthread_mutex_clocklock` on
/// `CLOCK_MONOTONIC`.
pub(crate) fn lock(map: &Mapping, offset: usize, deadline: Option<Instant>) -> io::Result<Locked> {
    let m = ptr(map, offset);
    // Robust mutexes do not spin before sleeping in the kernel, and a shared
    // futex sleep costs microseconds; our critical sections are short copies,
    // so try for a while first.
    for _ in 0..SPIN_TRIES {
        // SAFETY: `m` points at an initialised process-shared mutex inside a
        // live mapping (bounds and alignment checked by `ptr`).
        match unsafe { libc::pthread_mutex_trylock(m) } {
            libc::EBUSY => std::hint::spin_loop(),
            ret => return finish(m, ret),
        }
    }
    let ret = match deadline {
        // SAFETY: as above.
        None => unsafe { libc::pthread_mutex_lock(m) },
        Some(deadline) => {
            // SAFETY: as above; trylock never blocks.
            let first = unsafe { libc::pthread_mutex_trylock(m) };
            if first != libc::EBUSY {
                first
            } else {
                let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    libc::EBUSY
                } else {
                    let mut sec = now.tv_sec() + left.as_secs() as libc::time_t;
                    let mut nsec = now.tv_nsec() + left.subsec_nanos() as libc::c_long;
                    if nsec >= 1_000_000_000 {
                        sec += 1;
                        nsec -= 1_000_000_000;
                    }
                    let abs = libc::timespec {
                        tv_sec: sec,
                        tv_nsec: nsec,
                    };
                    // SAFETY: as above; `abs` outlives the call.
                    unsafe { pthread_mutex_clocklock(m, libc::CLOCK_MONOTONIC, &abs) }
                }
            }
        }
    };
    finish(m, ret)
}

/// Tries before a blocking lock.
const SPIN_TRIES: u32 = 100;

/// Interprets a lock call's result; makes a dead owner's mutex consistent.
fn finish(m: *mut libc::pthread_mutex_t, ret: libc::c_int) -> io::Result<Locked> {
    match ret {
        0 => Ok(Locked::Acquired),
        libc::EBUSY | libc::ETIMEDOUT => Ok(Locked::TimedOut),
        libc::EOWNERDEAD => {
            // SAFETY: we hold the mutex (EOWNERDEAD means acquired).
            check(unsafe { libc::pthread_mutex_consistent(m) })?;
            Ok(Locked::OwnerDied)
        }
        other => Err(io::Error::from_raw_os_error(other)),
    }
}

/// Tries the mutex at `offset` once, without spinning or waiting, by
/// `pthread_mutex_trylock`.
pub(crate) fn try_lock(map: &Mapping, offset: usize) -> io::Result<Locked> {
    let m = ptr(map, offset);
    // SAFETY: `m` points at an initialised process-shared mutex inside a live
    // mapping (bounds and alignment checked by `ptr`); trylock never blocks.
    finish(m, unsafe { libc::pthread_mutex_trylock(m) })
}

/// Unlocks the mutex at `offset`; the calling thread must hold it.
pub(crate) fn unlock(map: &Mapping, offset: usize) -> io::Result<()> {
    // SAFETY: `ptr` checks bounds and alignment; unlocking a mutex we do not
    // hold is reported by the robust mutex as EPERM, not undefined.
    check(unsafe { libc::pthread_mutex_unlock(ptr(map, offset)) })
}

/// What a robust mutex does when the thread that holds it locks it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Refuses with `EDEADLK` (instead of deadlocking).
    ErrorCheck,
    /// Counts: the owner must unlock as many times as it locked.
    Recursive,
}

/// As [`init`], for a mutex of the given [`Kind`]
/// ([`pthread_mutexattr_settype(3)`](https://man7.org/linux/man-pages/man3/pthread_mutexattr_settype.3p.html)).
/// Only for fresh memory that no other process sees yet.
pub(crate) fn init_kind(map: &Mapping, offset: usize, kind: Kind) -> io::Result<()> {
    let kind = match kind {
        Kind::ErrorCheck => libc::PTHREAD_MUTEX_ERRORCHECK,
        Kind::Recursive => libc::PTHREAD_MUTEX_RECURSIVE,
    };
    // SAFETY: an attr is plain data that `init` fills in.
    let mut attr: libc::pthread_mutexattr_t = unsafe { std::mem::zeroed() };
    // SAFETY: as in `init`: `attr` is valid and writable, every call is
    // checked, the attr is destroyed once after use, and the mutex memory is
    // in bounds, aligned and not yet shared.
    unsafe {
        check(libc::pthread_mutexattr_init(&mut attr))?;
        let result = (|| {
            check(libc::pthread_mutexattr_setpshared(
                &mut attr,
                libc::PTHREAD_PROCESS_SHARED,
            ))?;
            check(libc::pthread_mutexattr_setrobust(
                &mut attr,
                libc::PTHREAD_MUTEX_ROBUST,
            ))?;
            check(libc::pthread_mutexattr_settype(&mut attr, kind))?;
            check(libc::pthread_mutex_init(ptr(map, offset), &attr))
        })();
        libc::pthread_mutexattr_destroy(&mut attr);
        result
    }
}

/// The owner's thread id in a robust mutex's lock word (`linux/futex.h`).
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

/// Locks the mutex at `offset` like [`lock`], but first spins for up to
/// `spins` pause instructions, looking at the lock word with plain reads (no
/// stores) and backing off exponentially between looks, so a holder that
/// releases and re-takes the lock keeps its cache line instead of losing it
/// on every round (2 processes contending: about 2x the throughput of
/// looking after every pause).
///
/// The word is glibc's `__data.__lock`, the first field of every
/// `pthread_mutex_t` on Linux and the futex word the kernel's robust-futex
/// ABI knows about; it is only read here, as an atomic, never written.
pub(crate) fn lock_spinning(
    map: &Mapping,
    offset: usize,
    deadline: Option<Instant>,
    spins: u32,
) -> io::Result<Locked> {
    const MAX_BACKOFF: u32 = 64;
    let m = ptr(map, offset);
    let word = map.u32_at(offset);
    let (mut backoff, mut spent) = (1, 0);
    while spent < spins {
        // Free, or free after a dead owner (only the owner-died bit set).
        if word.load(std::sync::atomic::Ordering::Relaxed) & FUTEX_TID_MASK == 0 {
            // SAFETY: as in `try_lock`.
            match unsafe { libc::pthread_mutex_trylock(m) } {
                libc::EBUSY => {}
                ret => return finish(m, ret),
            }
        }
        for _ in 0..backoff {
            std::hint::spin_loop();
        }
        spent += backoff;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    lock(map, offset, deadline)
}

/// The id of the thread holding the mutex at `offset`, from its lock word
/// (see [`lock_spinning`]); 0 if it is free or its holder died.
pub(crate) fn holder_tid(map: &Mapping, offset: usize) -> u32 {
    map.u32_at(offset)
        .load(std::sync::atomic::Ordering::Acquire)
        & FUTEX_TID_MASK
}
