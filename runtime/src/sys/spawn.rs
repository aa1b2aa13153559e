//! Starting a child with `posix_spawn` (no `fork` path, no `pre_exec`).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

/// The descriptor at which a child finds its end of the spawn socket.
pub(crate) const CHILD_FD: libc::c_int = 3;

/// The signals a child starts with at their default action, whatever this
/// process does with them.
pub(crate) const DEFAULT_SIGNALS: &[libc::c_int] = &[
    libc::SIGPIPE,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGCHLD,
];

/// What a child's stdin, stdout or stderr is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StdioAction<'a> {
    /// The parent's own descriptor.
    Inherit,
    /// `/dev/null`, opened in the child.
    Null,
    /// A duplicate of this descriptor, which must be above [`CHILD_FD`] so
    /// that no earlier action overwrites it.
    Dup(BorrowedFd<'a>),
}

/// How a child's descriptors 0–2 and working directory are set up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildIo<'a> {
    /// stdin, stdout and stderr.
    pub(crate) stdio: [StdioAction<'a>; 3],
    /// The directory the child starts in; `None` is the parent's.
    pub(crate) cwd: Option<&'a CStr>,
}

/// Starts `path` with `argv` and `envp` by
/// [`posix_spawn(3)`](https://man7.org/linux/man-pages/man3/posix_spawn.3.html),
/// with `socket` duplicated onto [`CHILD_FD`] and every other descriptor above
/// stderr closed, signal mask emptied and the usual termination signals reset
/// to their default action. Returns the child's pid.
///
/// `io` chooses descriptors 0–2 (applied first) and the working directory
/// (entered last; `path` is absolute). A directory that cannot be entered
/// fails the spawn with that `chdir` error.
///
/// `socket` and every descriptor in `io` must be above `CHILD_FD`, so that
/// no action overwrites the source of a later one (and each dup clears
/// CLOEXEC, which a dup onto the same number would not on old glibc);
/// callers move them first.
pub(crate) fn spawn(
    path: &CStr,
    argv: &[CString],
    envp: &[CString],
    socket: BorrowedFd<'_>,
    io: &ChildIo<'_>,
) -> io::Result<libc::pid_t> {
    debug_assert!(socket.as_raw_fd() > CHILD_FD);
    let actions = FileActions::new()?;
    let attr = SpawnAttr::new()?;

    for (target, action) in (0..).zip(io.stdio) {
        match action {
            StdioAction::Inherit => {}
            StdioAction::Null => {
                let flags = if target == 0 {
                    libc::O_RDONLY
                } else {
                    libc::O_WRONLY
                };
                // SAFETY: `actions.0` was initialised by `FileActions::new`;
                // glibc copies the path string before returning.
                check(unsafe {
                    libc::posix_spawn_file_actions_addopen(
                        actions.ptr(),
                        target,
                        c"/dev/null".as_ptr(),
                        flags,
                        0,
                    )
                })?;
            }
            StdioAction::Dup(fd) => {
                debug_assert!(fd.as_raw_fd() > CHILD_FD);
                // SAFETY: as above; the descriptor is a plain integer that
                // glibc records and dups in the child.
                check(unsafe {
                    libc::posix_spawn_file_actions_adddup2(actions.ptr(), fd.as_raw_fd(), target)
                })?;
            }
        }
    }
    // SAFETY: `actions.0` was initialised by `FileActions::new`; the fds are
    // plain integers that glibc only records here and applies in the child.
    check(unsafe {
        libc::posix_spawn_file_actions_adddup2(actions.ptr(), socket.as_raw_fd(), CHILD_FD)
    })?;
    // SAFETY: as above.
    check(unsafe { libc::posix_spawn_file_actions_addclosefrom_np(actions.ptr(), CHILD_FD + 1) })?;
    if let Some(dir) = io.cwd {
        // SAFETY: as above; glibc copies the path string before returning.
        check(unsafe { libc::posix_spawn_file_actions_addchdir_np(actions.ptr(), dir.as_ptr()) })?;
    }

    // SAFETY: a `sigset_t` is plain data; `sigemptyset`/`sigaddset` initialise it.
    let mut defaults: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `defaults` is a valid, writable sigset.
    unsafe { libc::sigemptyset(&mut defaults) };
    for &sig in DEFAULT_SIGNALS {
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
