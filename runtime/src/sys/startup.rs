//! What a re-executed child does before `main`, and the process-exit hook.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Removes the environment variable `name` and returns its value.
///
/// Called only from the constructor that runs before `main`, while the
/// process has a single thread.
pub(crate) fn take_env(name: &str) -> Option<OsString> {
    let value = std::env::var_os(name)?;
    // SAFETY: this runs in the pre-`main` constructor of a child started by
    // multiproc, before any thread exists, so nothing reads the environment
    // concurrently.
    unsafe { std::env::remove_var(name) };
    Some(value)
}

/// Takes ownership of descriptor `fd`, which the parent placed there, after
/// checking with [`fstat(2)`](https://man7.org/linux/man-pages/man2/fstat.2.html)
/// that it is open and a socket.
///
/// Called only before `main`, for the descriptor named by the child marker:
/// no other code of this process knows about it.
pub(crate) fn adopt_socket(fd: libc::c_int) -> std::io::Result<OwnedFd> {
    // SAFETY: `stat` is plain data that fstat fills in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat only writes to `st`, which is valid and writable.
    if unsafe { libc::fstat(fd, &mut st) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is not a socket"),
        ));
    }
    // SAFETY: the descriptor is open (fstat succeeded) and, being inherited
    // across exec before `main`, has no other owner in this process.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Ignores `SIGPIPE`, as Rust's `main` would have done: writes to a closed
/// pipe then fail with `EPIPE` instead of killing the process.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: installing SIG_IGN runs no handler code, so it cannot break any
    // invariant of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Registers `hook` to run at normal process exit (return from `main` or
/// `std::process::exit`), by [`atexit(3)`](https://man7.org/linux/man-pages/man3/atexit.3.html).
pub(crate) fn at_exit(hook: extern "C" fn()) -> bool {
    // SAFETY: `hook` is a plain `extern "C" fn()` that lives for the whole
    // program; the callers make it catch every panic.
    unsafe { libc::atexit(hook) == 0 }
}

/// Where the `SIGABRT` handler writes its note, and the note.
static ABORT_NOTE_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
static ABORT_NOTE: std::sync::OnceLock<&'static [u8]> = std::sync::OnceLock::new();

/// Arranges that if this process aborts while `errno` says `ENOMEM` (Rust's
/// allocation-failure path: malloc fails with ENOMEM, std prints "memory
/// allocation of N bytes failed" and calls `abort()`), `note` is written to
/// `fd` first. The process still dies of `SIGABRT`: the handler runs once
/// (`SA_RESETHAND`) and returns, and `abort()` then raises the signal again
/// under the default action.
pub(crate) fn note_allocation_failure(fd: BorrowedFd<'_>, note: Vec<u8>) -> std::io::Result<()> {
    if ABORT_NOTE.set(Vec::leak(note)).is_err() {
        return Ok(()); // installed already
    }
    ABORT_NOTE_FD.store(fd.as_raw_fd(), std::sync::atomic::Ordering::Release);
    // SAFETY: `sigaction` is plain data, filled in below before use.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_abort as extern "C" fn(libc::c_int) as libc::sighandler_t;
    action.sa_flags = libc::SA_RESETHAND;
    // SAFETY: `sa_mask` is a valid, writable sigset.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is initialised; the handler only reads errno, two
    // atomics/once-set statics and calls write(2), all async-signal-safe.
    if unsafe { libc::sigaction(libc::SIGABRT, &action, std::ptr::null_mut()) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

extern "C" fn on_abort(_: libc::c_int) {
    // SAFETY: errno is thread-local and always readable.
    let errno = unsafe { *libc::__errno_location() };
    if errno != libc::ENOMEM {
        return;
    }
    let fd = ABORT_NOTE_FD.load(std::sync::atomic::Ordering::Acquire);
    if let (true, Some(note)) = (fd >= 0, ABORT_NOTE.get()) {
        // SAFETY: `note` is a leaked, immutable buffer; write(2) only reads
        // it. A failed write is ignored: the process is dying either way.
        unsafe { libc::write(fd, note.as_ptr().cast(), note.len()) };
    }
}
