//! Who this process is: `current_process()`, `parent_process()`, `cpu_count()`.

use crate::error::Result;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// This process's place in the tree, fixed before any user code runs.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) name: String,
    /// `[]` in the main process, `[1]` in `Process-1`, `[1, 2]` in `Process-1:2`.
    pub(crate) path: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent: Option<(u32, String)>,
}

/// Set once in a child before its worker runs, or made on first use in the
/// main process; replaced only in a child made by fork, whose copy holds
/// its parent's (then the old one is leaked, as it may still be borrowed).
static IDENTITY: RwLock<Option<&'static Identity>> = RwLock::new(None);
static NEXT_CHILD: AtomicU32 = AtomicU32::new(1);
/// This process's authkey: 32 random bytes in the main process, the
/// parent's choice in a child. Kept apart from [`Identity`], which prints.
static AUTHKEY: RwLock<Option<&'static [u8]>> = RwLock::new(None);

/// `slot`'s value, or `init()`'s, stored (and leaked) on first use.
fn get_or_leak<T: ?Sized>(
    slot: &RwLock<Option<&'static T>>,
    init: impl FnOnce() -> Box<T>,
) -> &'static T {
    if let Some(value) = *slot.read().unwrap_or_else(|e| e.into_inner()) {
        return value;
    }
    let mut slot = slot.write().unwrap_or_else(|e| e.into_inner());
    slot.get_or_insert_with(|| Box::leak(init()))
}

fn put<T: ?Sized>(slot: &RwLock<Option<&'static T>>, value: Option<Box<T>>) {
    *slot.write().unwrap_or_else(|e| e.into_inner()) = value.map(|v| &*Box::leak(v));
}

/// This process's authkey, made on first use in the main process.
pub(crate) fn authkey() -> &'static [u8] {
    get_or_leak(&AUTHKEY, || {
        let mut key = vec![0; 32];
        // As Python's `os.urandom(32)`, which raises when the system has no
        // randomness to give.
        if let Err(e) = getrandom::fill(&mut key) {
            panic!("cannot make this process's authkey: getrandom failed: {e}");
        }
        key.into_boxed_slice()
    })
}

/// Called once in a child, before the worker runs, with the key from its
/// spawn header (an empty one, which no parent sends, leaves a random key).
pub(crate) fn set_authkey(key: Vec<u8>) {
    if !key.is_empty() {
        put(&AUTHKEY, Some(key.into_boxed_slice()));
    }
}

pub(crate) fn identity() -> &'static Identity {
    get_or_leak(&IDENTITY, || {
        Box::new(Identity {
            name: "MainProcess".to_string(),
            path: Vec::new(),
            daemon: false,
            parent: None,
        })
    })
}

/// Called once in a child, before the worker runs.
pub(crate) fn set_identity(identity: Identity) {
    put(&IDENTITY, Some(Box::new(identity)));
}

/// In a child made by fork: its parent's identity, authkey and child
/// counter came along in the copy; the child's own are set from its spawn
/// header next (Python's `_bootstrap` resets the counter too).
pub(crate) fn forget_identity() {
    put(&IDENTITY, None);
    put(&AUTHKEY, None);
    NEXT_CHILD.store(1, Ordering::Relaxed);
}

/// The path and default name of the next child this process creates.
pub(crate) fn next_child() -> (Vec<u32>, String) {
    let mut path = identity().path.clone();
    path.push(NEXT_CHILD.fetch_add(1, Ordering::Relaxed));
    let digits: Vec<String> = path.iter().map(u32::to_string).collect();
    let name = format!("Process-{}", digits.join(":"));
    (path, name)
}

/// The process this code runs in, as Python's `multiprocessing.current_process()`.
///
/// ```
/// let me = multiproc::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CurrentProcess {
    identity: &'static Identity,
}

impl CurrentProcess {
    /// `MainProcess`, or the name the parent gave this child (`Process-1`, `Process-1:2`, ...).
    ///
    /// ```
    /// use multiproc::{Process, current_process, worker};
    ///
    /// #[worker]
    /// fn my_name() -> String {
    ///     current_process().name().to_string()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// assert_eq!(current_process().name(), "MainProcess");
    /// let mut p = Process::new(my_name, ());
    /// p.set_name("fetcher");
    /// p.start()?;
    /// assert_eq!(p.result()?, "fetcher");
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(&self) -> &'static str {
        &self.identity.name
    }

    /// This process's id.
    ///
    /// ```
    /// use multiproc::{Process, current_process, worker};
    ///
    /// #[worker]
    /// fn my_pid() -> u32 {
    ///     current_process().pid()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(my_pid, ());
    /// p.start()?;
    /// assert_eq!(Some(p.result()?), p.pid());
    /// assert_eq!(current_process().pid(), std::process::id());
    /// # Ok(())
    /// # }
    /// ```
    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    /// This process's authentication key (Python's
    /// `current_process().authkey`): 32 random bytes in the main process,
    /// made on first use, and in a child what its parent gave it: the
    /// parent's own key, or the one set with
    /// [`Process::set_authkey`](crate::Process::set_authkey). So every
    /// process of a tree shares one secret unless told otherwise, the
    /// secret a [`Listener`](crate::Listener) and
    /// [`Client`](crate::Client) can authenticate each other with.
    ///
    /// ```
    /// use multiproc::{Process, current_process, worker};
    ///
    /// #[worker]
    /// fn my_key() -> Vec<u8> {
    ///     current_process().authkey().to_vec()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let key = current_process().authkey();
    /// assert_eq!(key.len(), 32);
    /// let mut p = Process::new(my_key, ());
    /// p.start()?;
    /// assert_eq!(p.result()?, key);
    /// # Ok(())
    /// # }
    /// ```
    pub fn authkey(&self) -> &'static [u8] {
        authkey()
    }

    /// Whether the parent started this process as a daemon (`false` in the
    /// main process). A [`Process`](crate::Process) created here starts
    /// with this flag.
    ///
    /// ```
    /// use multiproc::{Process, current_process, worker};
    ///
    /// #[worker]
    /// fn am_i_a_daemon() -> bool {
    ///     current_process().daemon()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// assert!(!current_process().daemon()); // the main process
    /// let mut p = Process::new(am_i_a_daemon, ());
    /// p.set_daemon(true)?;
    /// p.start()?;
    /// assert!(p.result()?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn daemon(&self) -> bool {
        self.identity.daemon
    }
}

/// Returns the process this code runs in.
///
/// ```
/// assert_eq!(multiproc::current_process().name(), "MainProcess");
/// ```
pub fn current_process() -> CurrentProcess {
    CurrentProcess {
        identity: identity(),
    }
}

/// The process that started this one, as seen by `parent_process()`.
///
/// A child can watch its parent: [`is_alive`](Self::is_alive),
/// [`join_timeout`](Self::join_timeout) and [`sentinel`](Self::sentinel),
/// as Python's `parent_process()` offers. They go by a pidfd of the
/// parent, opened the first time one of them is called and kept for the
/// life of the process; it is opened only while the parent is still this
/// process's parent (`getppid`), so a pid reused after the parent's death
/// is never mistaken for it.
///
/// A multiproc child normally dies with its parent (`SIGKILL`, by
/// `PR_SET_PDEATHSIG`), and a parent that exits normally first joins its
/// non-daemon children and terminates its daemon ones, so a child sees its
/// parent exit only in the moment before its own end, or if it turned
/// the death signal off (`prctl(PR_SET_PDEATHSIG, 0)`, e.g. with
/// `nix::sys::prctl::set_pdeathsig(None)`).
///
/// ```
/// use multiproc::{Process, parent_process, worker};
/// use std::time::Duration;
///
/// #[worker]
/// fn check_parent() -> (bool, bool) {
///     let parent = parent_process().unwrap();
///     (parent.is_alive(), parent.join_timeout(Duration::ZERO).unwrap())
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let mut p = Process::new(check_parent, ());
/// p.start()?;
/// // Alive, and not joined: it is waiting for us.
/// assert_eq!(p.result()?, (true, false));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ParentProcess {
    pid: u32,
    name: &'static str,
}

impl ParentProcess {
    /// The parent's pid.
    ///
    /// ```
    /// use multiproc::{Process, parent_process, worker};
    ///
    /// #[worker]
    /// fn parent_pid() -> u32 {
    ///     parent_process().unwrap().pid()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// assert!(parent_process().is_none()); // the main process has none
    /// let mut p = Process::new(parent_pid, ());
    /// p.start()?;
    /// assert_eq!(p.result()?, std::process::id());
    /// # Ok(())
    /// # }
    /// ```
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The parent's name (`MainProcess`, `Process-1`, ...).
    ///
    /// ```
    /// use multiproc::{Process, parent_process, worker};
    ///
    /// #[worker]
    /// fn parent_name() -> String {
    ///     parent_process().unwrap().name().to_string()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(parent_name, ());
    /// p.start()?;
    /// assert_eq!(p.result()?, "MainProcess");
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the parent is still running (Python's
    /// `parent_process().is_alive()`).
    ///
    /// ```
    /// use multiproc::{Process, parent_process, worker};
    ///
    /// #[worker]
    /// fn parent_alive() -> bool {
    ///     parent_process().unwrap().is_alive()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(parent_alive, ());
    /// p.start()?;
    /// assert!(p.result()?); // we are waiting for it, so alive
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_alive(&self) -> bool {
        !matches!(self.join_timeout(Duration::ZERO), Ok(true))
    }

    /// Waits until the parent has exited: Python's
    /// `parent_process().join()`.
    ///
    /// ```no_run
    /// use multiproc::{parent_process, worker};
    ///
    /// // Not run: the child waits until its parent exits, which the parent of a
    /// // doc test would not do before joining the child.
    /// #[worker]
    /// fn outlive_parent() {
    ///     nix::sys::prctl::set_pdeathsig(None).unwrap(); // do not die with it
    ///     parent_process().unwrap().join().unwrap();
    ///     // The parent has exited: clean up after it here.
    /// }
    /// # fn main() {}
    /// ```
    pub fn join(&self) -> Result<()> {
        // An endless deadline: returns only once the parent has exited.
        self.join_timeout(Duration::MAX).map(drop)
    }

    /// Waits at most `timeout` for the parent to exit: `true` if it has,
    /// `false` if it is still running. A zero timeout only checks. (The
    /// parent is not this process's child: its exit code cannot be had.)
    ///
    /// ```
    /// use multiproc::{Process, parent_process, worker};
    /// use std::time::{Duration, Instant};
    ///
    /// #[worker]
    /// fn wait_for_parent(ms: u64) -> bool {
    ///     parent_process().unwrap().join_timeout(Duration::from_millis(ms)).unwrap()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(wait_for_parent, (20,));
    /// p.start()?;
    /// assert!(!p.result()?); // we outlived its wait
    /// # Ok(())
    /// # }
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now().checked_add(timeout);
        let Some(watch) = parent_watch(self.pid) else {
            // No pidfd: our parent has exited once we are someone else's
            // child. Check every few milliseconds.
            loop {
                if reparented(self.pid) {
                    return Ok(true);
                }
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if left.is_some_and(|l| l.is_zero()) {
                    return Ok(false);
                }
                let slice = Duration::from_millis(5);
                std::thread::sleep(left.map_or(slice, |l| l.min(slice)));
            }
        };
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let timeout = match left {
                None => PollTimeout::NONE,
                // Round up, so a short wait does not spin at zero.
                Some(t) => {
                    PollTimeout::try_from(t.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX)
                }
            };
            let mut polled = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut polled, timeout) {
                Ok(n) if n > 0 => return Ok(true),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            if left.is_some_and(|l| l.is_zero()) || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    /// A descriptor that polls readable (`POLLIN`) once the parent has
    /// exited (Python's `parent_process().sentinel`), for `poll`, `epoll`
    /// or [`wait`](crate::wait); lent for the life of the process, do not
    /// close it. An [`Error::Io`](crate::Error::Io) of kind `Unsupported` on
    /// a kernel without pidfds (before Linux 5.3) or when none could be
    /// opened.
    ///
    /// ```
    /// use multiproc::{Process, parent_process, wait, worker};
    /// use std::time::Duration;
    ///
    /// #[worker]
    /// fn parent_exited() -> bool {
    ///     let sentinel = parent_process().unwrap().sentinel().unwrap();
    ///     !wait(&[sentinel], Some(Duration::ZERO)).unwrap().is_empty()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(parent_exited, ());
    /// p.start()?;
    /// assert!(!p.result()?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sentinel(&self) -> Result<BorrowedFd<'static>> {
        match parent_watch(self.pid) {
            Some(fd) => Ok(fd.as_fd()),
            None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no pidfd of the parent could be opened (pidfds came in Linux 5.3)",
            )
            .into()),
        }
    }
}

/// Whether this process is no longer the child of `pid` (it was reparented
/// when its parent exited).
fn reparented(pid: u32) -> bool {
    nix::unistd::getppid().as_raw() as u32 != pid
}

/// The descriptor a child watches its parent by, opened on first use: a
/// pidfd of the parent, or, if the parent had already exited, a descriptor
/// that is readable already. `None` where no pidfd could be opened (then
/// `getppid` tells).
fn parent_watch(pid: u32) -> Option<&'static OwnedFd> {
    // Keyed by the parent's pid: a child made by fork has its parent's
    // entry in the copy, for another process.
    static WATCH: Mutex<Option<(u32, &'static Option<OwnedFd>)>> = Mutex::new(None);
    let mut watch = WATCH.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((watched, fd)) = *watch {
        if watched == pid {
            return fd.as_ref();
        }
    }
    let pidfd = crate::sys::proc::pidfd_open(pid as libc::pid_t);
    // The parent was alive when this process started (the child checks at
    // start-up). If it is still our parent after the open, it was alive
    // during the open, so its pid was not reused and the pidfd is the
    // parent's. If not, it has exited.
    let fd = if reparented(pid) {
        crate::process::readable_fd().ok()
    } else {
        pidfd.ok().flatten()
    };
    let fd: &'static Option<OwnedFd> = Box::leak(Box::new(fd));
    *watch = Some((pid, fd));
    fd.as_ref()
}

/// Returns the parent of this process if multiproc started it, `None` in the
/// main process (as Python's `parent_process()`).
///
/// ```
/// assert!(multiproc::parent_process().is_none());
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    let (pid, name) = identity().parent.as_ref()?;
    Some(ParentProcess {
        pid: *pid,
        name: name.as_str(),
    })
}

/// The number of CPUs this process may use (`std::thread::available_parallelism`,
/// which honours affinity masks and cgroup quotas); 1 if unknown.
///
/// ```
/// assert!(multiproc::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
