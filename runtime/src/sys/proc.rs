//! Process handles: pidfds and signals.

use super::cvt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Opens a descriptor that refers to process `pid` and becomes readable when it
/// exits, by [`pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html).
///
/// Returns `Ok(None)` where the kernel lacks pidfds (before Linux 5.3).
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    match cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }) {
        // SAFETY: the kernel just returned this descriptor; nobody else owns it.
        Ok(fd) => Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sends `signal` to the process behind `pidfd`, by
/// [`pidfd_send_signal(2)`](https://man7.org/linux/man-pages/man2/pidfd_send_signal.2.html),
/// which cannot hit a recycled pid.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: the descriptor is borrowed and open for the call; a null siginfo
    // is documented to mean "as kill(2) would send it".
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// Sets resource limit `resource` (an `RLIMIT_*` number) of process `pid`
/// to `soft`/`hard`, by
/// [`prlimit(2)`](https://man7.org/linux/man-pages/man2/prlimit.2.html).
pub(crate) fn set_limit(
    pid: libc::pid_t,
    resource: libc::c_int,
    soft: u64,
    hard: u64,
) -> io::Result<()> {
    let new = libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `new` is a valid rlimit64 read by the kernel; the old-value
    // pointer is null, so nothing is written. `resource` is passed through:
    // the kernel rejects unknown numbers with EINVAL.
    let ret = unsafe {
        libc::prlimit64(
            pid,
            resource as libc::__rlimit_resource_t,
            &new,
            std::ptr::null_mut(),
        )
    };
    cvt(ret.into()).map(drop)
}

/// A close-on-exec duplicate of `fd` numbered `min` or above, by
/// `fcntl(F_DUPFD_CLOEXEC)`.
pub(crate) fn dup_from(fd: BorrowedFd<'_>, min: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: fcntl with F_DUPFD_CLOEXEC reads only its integer arguments;
    // `fd` is open for the call.
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) }.into())?;
    // SAFETY: the kernel just returned this new descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new as libc::c_int) })
}
