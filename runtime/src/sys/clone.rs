//! Forking without exec: glibc's `fork` for the `Fork` start method, and a
//! clone whose child is the *caller's parent's* child for the fork server.

use super::cvt;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Which side of a fork the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    /// The new process.
    Child,
    /// The caller; the new process's pid.
    Parent(libc::pid_t),
}

/// The addresses glibc registered with the kernel for the calling thread:
/// where the kernel writes its thread id at creation and clears it at exit
/// (`set_tid_address`, glibc's `struct pthread::tid`), and the head of its
/// robust-mutex list (`set_robust_list`).
///
/// A clone made by raw syscall must register both again, or the child's
/// thread id in glibc is its creator's (a robust mutex it locks records the
/// wrong owner, so the kernel would not release it when the child dies) and
/// the kernel knows no robust list for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThreadIds {
    tid_address: u64,
    robust_head: u64,
    robust_len: usize,
}

/// The calling thread's [`ThreadIds`], by `prctl(PR_GET_TID_ADDRESS)` and
/// `get_robust_list(0)`. `PR_GET_TID_ADDRESS` needs a kernel built with
/// `CONFIG_CHECKPOINT_RESTORE`; without it this is the error.
pub(crate) fn thread_ids() -> io::Result<ThreadIds> {
    let mut tid_address: libc::c_ulong = 0;
    // SAFETY: PR_GET_TID_ADDRESS writes one pointer-sized value through the
    // second argument, which points at `tid_address`.
    cvt(unsafe { libc::prctl(libc::PR_GET_TID_ADDRESS, &mut tid_address as *mut _) }.into())?;
    let mut head: *mut libc::c_void = std::ptr::null_mut();
    let mut len: libc::size_t = 0;
    // SAFETY: get_robust_list(0, ...) writes the calling thread's list head
    // and its length through the two pointers, both valid and writable.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut head as *mut *mut libc::c_void,
            &mut len as *mut libc::size_t,
        )
    })?;
    if tid_address == 0 {
        return Err(io::Error::other("this thread has no thread-id address"));
    }
    Ok(ThreadIds {
        tid_address: tid_address as u64,
        robust_head: head as u64,
        robust_len: len,
    })
}

/// `clone_args` of `linux/sched.h`, the fields of its first version.
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// Forks the calling process into a new one that is a child of the caller's
/// *parent* (`CLONE_PARENT`), as `fork` does otherwise: copy-on-write memory,
/// the caller's descriptors, on the same stack. The child's exit status and
/// `SIGCHLD` go to that parent, which can `waitpid` and `pidfd_open` it as
/// any child of its own, and its parent-death signal follows that parent.
///
/// The child's glibc thread id and robust list are set up from `ids` (the
/// caller's, from [`thread_ids`]), so its robust mutexes work.
///
/// Only for a process with one thread that holds no lock (glibc's `fork`
/// bookkeeping — atfork handlers, resetting malloc's and stdio's locks —
/// does not run): the fork server, between requests.
pub(crate) fn fork_sibling(ids: &ThreadIds) -> io::Result<Forked> {
    let flags = (libc::CLONE_PARENT | libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64;
    let args = CloneArgs {
        flags,
        pidfd: 0,
        child_tid: ids.tid_address,
        parent_tid: 0,
        // With CLONE_PARENT the kernel takes the caller's own exit signal
        // (SIGCHLD) and refuses any other.
        exit_signal: 0,
        stack: 0,
        stack_size: 0,
        tls: 0,
    };
    // SAFETY: clone3 reads `args` (valid for its size) and, with no stack
    // given, continues both processes on their own copy of this stack, as
    // fork does. The child writes its tid to `child_tid`, glibc's tid field
    // of this thread, which is mapped in the copy at the same address.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let ret = match cvt(ret) {
        Ok(ret) => ret,
        // Older kernels, and seccomp profiles that hide clone3: clone(2).
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => legacy_clone(flags, ids)?,
        Err(e) => return Err(e),
    };
    if ret != 0 {
        return Ok(Forked::Parent(ret as libc::pid_t));
    }
    // SAFETY: the list head belongs to this thread's `struct pthread`, valid
    // at the same address in this copy of the memory; the kernel only
    // records the pointer. A failure leaves the child without a robust list,
    // as before the call.
    unsafe {
        libc::syscall(libc::SYS_set_robust_list, ids.robust_head, ids.robust_len);
    }
    Ok(Forked::Child)
}

#[cfg(target_arch = "x86_64")]
fn legacy_clone(flags: u64, ids: &ThreadIds) -> io::Result<libc::c_long> {
    // SAFETY: as for clone3 above; x86-64 takes (flags, stack, parent_tid,
    // child_tid, tls).
    cvt(unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as u64,
            0usize,
            0usize,
            ids.tid_address,
            0usize,
        )
    })
}

#[cfg(target_arch = "aarch64")]
fn legacy_clone(flags: u64, ids: &ThreadIds) -> io::Result<libc::c_long> {
    // SAFETY: as for clone3 above; arm64 takes (flags, stack, parent_tid,
    // tls, child_tid).
    cvt(unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as u64,
            0usize,
            0usize,
            0usize,
            ids.tid_address,
        )
    })
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn legacy_clone(_: u64, _: &ThreadIds) -> io::Result<libc::c_long> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// glibc's [`fork(2)`](https://man7.org/linux/man-pages/man2/fork.2.html).
///
/// Only for a process with one thread (the `Fork` start method checks with
/// [`thread_count`] first): in the child, only the calling thread exists, and
/// a lock another thread held would stay held.
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: the callers have checked that this process has one thread, so
    // no lock is held by a thread that will not exist in the child; the
    // child runs only the start-up path and exits, never returning into the
    // caller's frames.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child.as_raw())),
    }
}

/// How many threads this process has (the entries of `/proc/self/task`).
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Makes descriptor `target` a duplicate of `fd` (not close-on-exec), by
/// [`dup2(2)`](https://man7.org/linux/man-pages/man2/dup2.2.html). A child
/// calls it on its own descriptors 0–3, which no object of its owns.
pub(crate) fn dup_onto(fd: BorrowedFd<'_>, target: libc::c_int) -> io::Result<()> {
    if fd.as_raw_fd() == target {
        // dup2 onto itself keeps close-on-exec: clear it instead.
        return nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map(drop)
        .map_err(Into::into);
    }
    // SAFETY: dup2 reads two integers; whatever `target` was is closed
    // first, and the callers own that slot (a child's standard descriptors
    // and its spawn-socket slot, set up before any of its code runs).
    cvt(unsafe { libc::dup2(fd.as_raw_fd(), target) }.into()).map(drop)
}

/// Closes descriptor `fd` of a child's standard three (a child whose parent
/// had it closed), by [`close(2)`](https://man7.org/linux/man-pages/man2/close.2.html).
pub(crate) fn close_std(fd: libc::c_int) {
    debug_assert!((0..=2).contains(&fd));
    // SAFETY: called before the child runs any of its code: no object owns
    // descriptors 0–2 yet. An error (it was closed already) is what we want.
    unsafe { libc::close(fd) };
}

/// Closes every descriptor from `min` up, by
/// [`close_range(2)`](https://man7.org/linux/man-pages/man2/close_range.2.html),
/// or one by one from `/proc/self/fd` where the kernel lacks it.
///
/// Only in a child forked by the fork server, before any of its own code
/// runs: every descriptor above its standard ones and its spawn socket is
/// one the server had, and nothing in the child owns it.
pub(crate) fn close_from(min: libc::c_int) {
    // SAFETY: close_range takes integers; see above for why closing is safe.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, min as libc::c_uint, u32::MAX, 0) };
    if ret == 0 {
        return;
    }
    let open: Vec<libc::c_int> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd >= min)
            .collect(),
        Err(_) => return,
    };
    for fd in open {
        // SAFETY: as above (the directory's own descriptor is closed too;
        // the iterator was dropped already).
        unsafe { libc::close(fd) };
    }
}

/// Replaces this process's environment with `vars`.
///
/// Only in a freshly forked child with one thread, before any of its own
/// code runs.
pub(crate) fn replace_env(vars: &[(OsString, OsString)]) {
    let old: Vec<OsString> = std::env::vars_os().map(|(k, _)| k).collect();
    for key in old {
        // SAFETY: one thread (see above), so nothing reads the environment
        // concurrently.
        unsafe { std::env::remove_var(key) };
    }
    for (key, value) in vars {
        // SAFETY: as above.
        unsafe { std::env::set_var(key, value) };
    }
}

/// Sets `signal`'s disposition back to the default and empties the signal
/// mask, as a spawned child starts.
pub(crate) fn default_signals(signals: &[libc::c_int]) {
    for &signal in signals {
        // SAFETY: SIG_DFL runs no code of ours.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    // SAFETY: `empty` is initialised by sigemptyset before sigprocmask reads it.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// [`fork_sibling`] by a process that ignores `signal`, the child getting
/// it at its default action instead, blocked (a signal that comes meanwhile
/// waits for the child to unblock it). This process keeps ignoring it
/// throughout: it is blocked here while its action is the default.
pub(crate) fn fork_sibling_defaulting(ids: &ThreadIds, signal: libc::c_int) -> io::Result<Forked> {
    // SAFETY: both sets are initialised (sigemptyset, or written by
    // sigprocmask) before they are read; SIG_DFL and SIG_IGN run no code of
    // ours.
    unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, signal);
        libc::sigprocmask(libc::SIG_BLOCK, &block, &mut old);
        libc::signal(signal, libc::SIG_DFL);
        let forked = fork_sibling(ids);
        if !matches!(forked, Ok(Forked::Child)) {
            // Ignoring it again discards one that came while it was blocked.
            libc::signal(signal, libc::SIG_IGN);
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        }
        forked
    }
}

/// Ignores `signal` (the fork server ignores `SIGINT`, as Python's does).
pub(crate) fn ignore_signal(signal: libc::c_int) {
    // SAFETY: SIG_IGN runs no code of ours.
    unsafe { libc::signal(signal, libc::SIG_IGN) };
}

/// Flushes C's stdio streams (`fflush(NULL)`): what C code in a worker
/// printed, before [`exit_now`] skips `exit`'s own flush.
pub(crate) fn flush_c_stdio() {
    // SAFETY: fflush(NULL) flushes every open output stream; it takes no
    // pointer of ours.
    unsafe {
        libc::fflush(std::ptr::null_mut());
    }
}

/// Leaves the process at once with `code`, running no exit handler
/// (`_exit(2)`): a `Fork` child must not run its parent's `atexit` hooks,
/// nor a fork server's child the server's.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process; nothing runs after it.
    unsafe { libc::_exit(code) }
}
