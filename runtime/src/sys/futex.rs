//! Process-shared futex waits and wakes.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `word` holds `expected`, at most `timeout`, by
/// [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
/// `FUTEX_WAIT` (shared, not `PRIVATE`: the word may live in shared memory).
/// Returns on a wake, a change, a signal or the timeout; callers re-check.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the call; the timespec (or
    // null) outlives it. Errors (EAGAIN, EINTR, ETIMEDOUT) all mean "re-check".
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
        );
    }
}

/// Wakes up to `n` waiters on `word` (`FUTEX_WAKE`, shared).
pub(crate) fn wake(word: &AtomicU32, n: i32) {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE only reads its address.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n);
    }
}

/// The most words one [`wait_any`] takes (the kernel's `FUTEX_WAITV_MAX`).
#[cfg(feature = "tokio")]
pub(crate) const WAITV_MAX: usize = 128;

/// Sleeps until any of `words` no longer holds its expected value, is
/// woken, a signal arrives or `timeout` passes, by
/// [`futex_waitv(2)`](https://docs.kernel.org/userspace-api/futex2.html)
/// (Linux 5.16): shared words, except those marked private (a word only
/// this process maps). At most [`WAITV_MAX`] words. Returns `false` if the
/// kernel has no `futex_waitv` (`ENOSYS`); callers re-check either way.
#[cfg(feature = "tokio")]
pub(crate) fn wait_any(words: &[(&AtomicU32, u32, bool)], timeout: Option<Duration>) -> bool {
    /// `struct futex_waitv` of `<linux/futex.h>`.
    #[repr(C)]
    struct FutexWaitv {
        val: u64,
        uaddr: u64,
        flags: u32,
        reserved: u32,
    }
    const FUTEX2_SIZE_U32: u32 = 0x02;
    const FUTEX2_PRIVATE: u32 = 128;
    let waiters: Vec<FutexWaitv> = words
        .iter()
        .take(WAITV_MAX)
        .map(|&(word, expected, private)| FutexWaitv {
            val: u64::from(expected),
            uaddr: word.as_ptr() as u64,
            flags: FUTEX2_SIZE_U32 | if private { FUTEX2_PRIVATE } else { 0 },
            reserved: 0,
        })
        .collect();
    // futex_waitv's timeout is absolute, on the clock it is given.
    let deadline = timeout.map(|t| {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(Duration::from)
            .unwrap_or_default();
        let at = now.saturating_add(t);
        libc::timespec {
            tv_sec: at.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: at.subsec_nanos() as libc::c_long,
        }
    });
    let ts_ptr = deadline
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `waiters` is a valid array of `waiters.len()` (≤ 128)
    // `futex_waitv` entries, each naming an aligned u32 that the caller
    // keeps mapped for the call; the timespec (or null) outlives it. The
    // kernel only reads the words. Errors (EAGAIN: a word changed, EINTR,
    // ETIMEDOUT) mean "re-check"; ENOSYS is reported.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            waiters.as_ptr(),
            waiters.len() as libc::c_uint,
            0 as libc::c_uint,
            ts_ptr,
            libc::CLOCK_MONOTONIC,
        )
    };
    !(ret == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
}

/// Wakes every waiter on a word only this process maps
/// (`FUTEX_WAKE_PRIVATE`).
#[cfg(feature = "tokio")]
pub(crate) fn wake_private(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE only reads its address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}
