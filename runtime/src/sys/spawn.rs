//! Starting a child with `posix_spawn` (no `fork` path, no `pre_exec`).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

/// The descriptor at which a child finds its end of the spawn socket.
pub(crate) const CHILD_FD: libc::c_int = 3;

/// Starts `path` with `argv` and `envp` by
/// [`posix_spawn(3)`](https://man7.org/linux/man-pages/man3/posix_spawn.3.html),
/// with `socket` duplicated onto [`CHILD_FD`] and every other descriptor above
/// stderr closed, signal mask emptied and the usual termination signals reset
/// to their default action. Returns the child's pid.
///
/// `socket` must not itself be `CHILD_FD` (the dup would not clear CLOEXEC on
/// old glibc); callers move it first.
pub(crate) fn spawn(
    path: &CStr,
    argv: &[CString],
    envp: &[CString],
    socket: BorrowedFd<'_>,
) -> io::Result<libc::pid_t> {
    debug_assert_ne!(socket.as_raw_fd(), CHILD_FD);
    let actions = FileActions::new()?;
    let attr = SpawnAttr::new()?;

    // SAFETY: `actions.0` was initialised by `FileActions::new`; the fds are
    // plain integers that glibc only records here and applies in the child.
    check(unsafe {
        libc::posix_spawn_file_actions_adddup2(actions.ptr(), socket.as_raw_fd(), CHILD_FD)
    })?;
    // SAFETY: as above.
    check(unsafe { libc::posix_spawn_file_actions_addclosefrom_np(actions.ptr(), CHILD_FD + 1) })?;

    // SAFETY: a `sigset_t` is plain data; `sigemptyset`/`sigaddset` initialise it.
    let mut defaults: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `defaults` is a valid, writable sigset.
    unsafe { libc::sigemptyset(&mut defaults) };
    for sig in [
        libc::SIGPIPE,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGCHLD,
    ] {
        // SAFETY: `defaults` is initialised and `sig` is a valid signal number.
        unsafe { libc::sigaddset(&mut defaults, sig) };
    }
    // SAFETY: a `sigset_t` is plain data, initialised by `sigemptyset` next.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `empty` is a valid, writable sigset.
    unsafe { libc::sigemptyset(&mut empty) };
    // SAFETY: `attr.0` was initialised by `SpawnAttr::new`; the sigsets are
    // initialised and only read.
    unsafe {
        check(libc::posix_spawnattr_setsigdefault(attr.ptr(), &defaults))?;
        check(libc::posix_spawnattr_setsigmask(attr.ptr(), &empty))?;
        check(libc::posix_spawnattr_setflags(
            attr.ptr(),
            (libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as libc::c_short,
        ))?;
    }

    let argv_ptrs = null_terminated(argv);
    let envp_ptrs = null_terminated(envp);
    let mut pid: libc::pid_t = 0;
    // SAFETY: `path`, every `argv`/`envp` string and the pointer arrays (each
    // ending in a null pointer) outlive the call; `actions` and `attr` are
    // initialised; posix_spawn does not write through argv or envp.
    check(unsafe {
        libc::posix_spawn(
            &mut pid,
            path.as_ptr(),
            actions.ptr(),
            attr.ptr(),
            argv_ptrs.as_ptr(),
            envp_ptrs.as_ptr(),
        )
    })?;
    Ok(pid)
}

fn null_terminated(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(ptr::null_mut()))
        .collect()
}

/// posix_spawn functions return the error number instead of setting errno.
fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(ret))
    }
}

struct FileActions(Box<std::cell::UnsafeCell<libc::posix_spawn_file_actions_t>>);

impl FileActions {
    fn new() -> io::Result<Self> {
        // SAFETY: the struct is plain data; `init` below fully initialises it.
        let actions = Self(Box::new(unsafe { std::mem::zeroed() }));
        // SAFETY: the pointer is valid and uniquely ours.
        check(unsafe { libc::posix_spawn_file_actions_init(actions.ptr()) })?;
        Ok(actions)
    }

    fn ptr(&self) -> *mut libc::posix_spawn_file_actions_t {
        self.0.get()
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` and destroyed exactly once.
        unsafe { libc::posix_spawn_file_actions_destroy(self.ptr()) };
    }
}

struct SpawnAttr(Box<std::cell::UnsafeCell<libc::posix_spawnattr_t>>);

impl SpawnAttr {
    fn new() -> io::Result<Self> {
        // SAFETY: the struct is plain data; `init` below fully initialises it.
        let attr = Self(Box::new(unsafe { std::mem::zeroed() }));
        // SAFETY: the pointer is valid and uniquely ours.
        check(unsafe { libc::posix_spawnattr_init(attr.ptr()) })?;
        Ok(attr)
    }

    fn ptr(&self) -> *mut libc::posix_spawnattr_t {
        self.0.get()
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` and destroyed exactly once.
        unsafe { libc::posix_spawnattr_destroy(self.ptr()) };
    }
}
