//! How a child is set up before its worker runs: environment, working
//! directory, stdio, resource limits, and the start hooks.
//!
//! [`Process`](crate::Process) and [`PoolBuilder`](crate::PoolBuilder) offer
//! the same methods, named as [`std::process::Command`] names them; both
//! keep a [`ChildSetup`] and apply it at each spawn. Everything is checked
//! in the parent, and the environment, descriptors and directory are set by
//! `posix_spawn` itself, so a child never starts half-configured: a bad key,
//! a directory that does not exist or a limit the kernel refuses is an error
//! from `start()` (or from `build()`, for a pool), and no worker runs.

use crate::error::{Error, Result};
use crate::pool::Initializer;
use crate::protocol::MARKER;
use crate::registry::Worker;
use crate::sys;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What a child's stdin, stdout or stderr is connected to: the counterpart
/// of [`std::process::Stdio`] for [`Process`](crate::Process) and
/// [`PoolBuilder`](crate::PoolBuilder).
///
/// ```
/// use multiproc::{Process, Stdio, worker};
/// use std::io::Read;
///
/// #[worker]
/// fn shout() {
///     println!("HELLO");
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let mut p = Process::new(shout, ());
/// p.stdout(Stdio::piped()).stderr(Stdio::null());
/// p.start()?;
/// let mut out = String::new();
/// p.take_stdout().unwrap().read_to_string(&mut out)?;
/// p.join()?;
/// assert_eq!(out, "HELLO\n");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Stdio(pub(crate) StdioKind);

#[derive(Debug, Clone)]
pub(crate) enum StdioKind {
    Inherit,
    Null,
    Piped,
    Fd(Arc<OwnedFd>),
}

impl Stdio {
    /// The parent's own descriptor (the default).
    ///
    /// ```
    /// use multiproc::{Process, Stdio, worker};
    ///
    /// #[worker]
    /// fn hello() {
    ///     println!("on the parent's stdout");
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(hello, ());
    /// p.stdout(Stdio::inherit()); // the default, said out loud
    /// p.start()?;
    /// assert_eq!(p.join()?, 0);
    /// assert!(p.take_stdout().is_none()); // not piped: nothing to take
    /// # Ok(())
    /// # }
    /// ```
    pub fn inherit() -> Stdio {
        Stdio(StdioKind::Inherit)
    }

    /// `/dev/null`: reads see end of file, writes are discarded.
    ///
    /// ```
    /// use multiproc::{Process, Stdio, worker};
    /// use std::io::Read;
    ///
    /// #[worker]
    /// fn read_all() -> usize {
    ///     let mut input = Vec::new();
    ///     std::io::stdin().read_to_end(&mut input).unwrap();
    ///     input.len()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(read_all, ());
    /// p.stdin(Stdio::null()); // end of file at once, never waiting on a terminal
    /// p.start()?;
    /// assert_eq!(p.result()?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn null() -> Stdio {
        Stdio(StdioKind::Null)
    }

    /// A new pipe; the parent takes its end with
    /// [`Process::take_stdout`](crate::Process::take_stdout) (or
    /// `take_stdin`/`take_stderr`; for a pool,
    /// [`Pool::take_stdout`](crate::Pool::take_stdout)). As with
    /// [`std::process::Stdio::piped`], a child that writes more than the
    /// pipe holds (64 KiB) waits until the parent reads; if the parent drops
    /// its end, the child's writes fail with `EPIPE` (`BrokenPipe`), and
    /// `println!` panics.
    ///
    /// ```
    /// use multiproc::{Process, Stdio, worker};
    /// use std::io::{BufRead, BufReader};
    ///
    /// #[worker]
    /// fn count() {
    ///     for i in 0..3 {
    ///         println!("{i}");
    ///     }
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(count, ());
    /// p.stdout(Stdio::piped());
    /// p.start()?;
    /// let lines = BufReader::new(p.take_stdout().unwrap()).lines();
    /// assert_eq!(lines.collect::<Result<Vec<_>, _>>()?, ["0", "1", "2"]);
    /// assert_eq!(p.join()?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn piped() -> Stdio {
        Stdio(StdioKind::Piped)
    }
}

impl From<File> for Stdio {
    /// The child's descriptor is a duplicate of the file's.
    fn from(file: File) -> Stdio {
        Stdio(StdioKind::Fd(Arc::new(file.into())))
    }
}

impl From<OwnedFd> for Stdio {
    /// The child's descriptor is a duplicate of `fd`.
    fn from(fd: OwnedFd) -> Stdio {
        Stdio(StdioKind::Fd(Arc::new(fd)))
    }
}

/// A kind of resource whose use a child's limits bound: the `RLIMIT_*`
/// constants of [`setrlimit(2)`](https://man7.org/linux/man-pages/man2/setrlimit.2.html).
///
/// What a child sees when it reaches a limit:
///
/// - [`AddressSpace`](Self::AddressSpace) (and [`Data`](Self::Data)): an
///   allocation fails, and a Rust program aborts on a failed allocation, so
///   the child dies of `SIGABRT`: [`Error::Killed`] with `signal: 6`. The
///   runtime notices when the abort followed a failed allocation and says so
///   ([`Limited::Memory`] in the error's `limit`); it cannot when the child
///   prints a backtrace on the abort (`RUST_BACKTRACE` set), which erases
///   the evidence (`errno`), and then `limit` is `None`.
/// - [`Cpu`](Self::Cpu): `SIGXCPU` at the soft limit (which kills, unless
///   handled), `SIGKILL` at the hard one: `Killed { signal: 24 or 9 }`.
/// - [`OpenFiles`](Self::OpenFiles): opening more descriptors fails with
///   `EMFILE`. The child needs a few for itself (its stdio and the runtime's
///   socket): a limit below about 8 may stop it before its worker runs.
/// - [`CoreSize`](Self::CoreSize): how large a core dump may be (0: none).
///
/// ```
/// use multiproc::{Process, Resource, worker};
///
/// #[worker]
/// fn open_many() -> bool {
///     let files: Vec<_> = (0..64).map(|_| std::fs::File::open("/dev/null")).collect();
///     files.iter().any(|f| f.is_err()) // EMFILE once the limit is reached
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let mut p = Process::new(open_many, ());
/// p.rlimit(Resource::OpenFiles, 32, 32);
/// p.start()?;
/// assert!(p.result()?);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Resource {
    /// `RLIMIT_AS`: the size of the address space, in bytes.
    AddressSpace,
    /// `RLIMIT_CPU`: CPU time, in seconds.
    Cpu,
    /// `RLIMIT_NOFILE`: one more than the highest descriptor number.
    OpenFiles,
    /// `RLIMIT_CORE`: the size of a core dump, in bytes.
    CoreSize,
    /// `RLIMIT_DATA`: the data segment and private mappings, in bytes.
    Data,
    /// `RLIMIT_STACK`: the main thread's stack, in bytes.
    Stack,
    /// `RLIMIT_FSIZE`: the size of a file the child writes, in bytes.
    FileSize,
    /// `RLIMIT_NPROC`: processes (threads count) of the child's user.
    Processes,
    /// `RLIMIT_MEMLOCK`: memory locked in RAM, in bytes.
    LockedMemory,
}

impl Resource {
    /// No limit (`RLIM_INFINITY`).
    ///
    /// ```
    /// use multiproc::{Process, Resource, worker};
    ///
    /// #[worker]
    /// fn file_size_limit() -> String {
    ///     let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    ///     limits.lines().find(|l| l.starts_with("Max file size")).unwrap().to_string()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(file_size_limit, ());
    /// p.rlimit(Resource::FileSize, 1 << 20, Resource::UNLIMITED); // soft 1 MiB, no hard limit
    /// p.start()?;
    /// let line = p.result()?;
    /// let fields: Vec<&str> = line.split_whitespace().collect();
    /// assert_eq!(fields[3..5], ["1048576", "unlimited"]);
    /// # Ok(())
    /// # }
    /// ```
    pub const UNLIMITED: u64 = u64::MAX;

    fn raw(self) -> libc::c_int {
        (match self {
            Resource::AddressSpace => libc::RLIMIT_AS,
            Resource::Cpu => libc::RLIMIT_CPU,
            Resource::OpenFiles => libc::RLIMIT_NOFILE,
            Resource::CoreSize => libc::RLIMIT_CORE,
            Resource::Data => libc::RLIMIT_DATA,
            Resource::Stack => libc::RLIMIT_STACK,
            Resource::FileSize => libc::RLIMIT_FSIZE,
            Resource::Processes => libc::RLIMIT_NPROC,
            Resource::LockedMemory => libc::RLIMIT_MEMLOCK,
        }) as libc::c_int
    }

    /// Whether reaching this limit makes allocations fail.
    fn bounds_memory(self) -> bool {
        matches!(self, Resource::AddressSpace | Resource::Data)
    }
}

/// The limit a child ran into, when the runtime can tell: the `limit` of
/// [`Error::Killed`].
///
/// ```
/// use multiproc::{Error, Limited, Process, Resource, worker};
///
/// #[worker]
/// fn greedy() -> usize {
///     vec![1u8; 1 << 30].len() // 1 GiB, under a 256 MiB limit
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let mut p = Process::new(greedy, ());
/// p.rlimit(Resource::AddressSpace, 256 << 20, 256 << 20)
///     .stderr(multiproc::Stdio::null())
///     .env_remove("RUST_BACKTRACE"); // a backtrace would hide the cause
/// p.start()?;
/// match p.result() {
///     Err(Error::Killed { signal: 6, limit: Some(Limited::Memory { resource, .. }), .. }) => {
///         assert_eq!(resource, Resource::AddressSpace)
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limited {
    /// An allocation failed under a memory limit this child was given, and
    /// the failure aborted it.
    Memory {
        /// [`Resource::AddressSpace`] or [`Resource::Data`].
        resource: Resource,
        /// The soft limit, in bytes.
        limit: u64,
    },
    /// The child was killed by `SIGXCPU` under the CPU-time limit it was
    /// given.
    Cpu {
        /// The soft limit, in seconds.
        seconds: u64,
    },
}

impl std::fmt::Display for Limited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limited::Memory { resource, limit } => write!(
                f,
                "an allocation failed under its {} limit of {limit} bytes, and a failed \
                 allocation aborts",
                match resource {
                    Resource::Data => "data-segment",
                    _ => "address-space",
                }
            ),
            Limited::Cpu { seconds } => {
                write!(f, "it used up its CPU-time limit of {seconds} s")
            }
        }
    }
}

/// One resource limit to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    pub(crate) resource: Resource,
    pub(crate) soft: u64,
    pub(crate) hard: u64,
}

/// A child's set-up, as chosen by the methods of `Process` and
/// `PoolBuilder`.
#[derive(Debug, Clone)]
pub(crate) struct ChildSetup {
    /// Changes in order: `Some` sets, `None` removes.
    env: Vec<(OsString, Option<OsString>)>,
    env_clear: bool,
    cwd: Option<PathBuf>,
    pub(crate) stdio: [StdioKind; 3],
    pub(crate) limits: Vec<Limit>,
    /// `None`: the program's default at `start`.
    pub(crate) start_method: Option<crate::StartMethod>,
}

impl Default for ChildSetup {
    fn default() -> Self {
        ChildSetup {
            env: Vec::new(),
            env_clear: false,
            cwd: None,
            stdio: [StdioKind::Inherit, StdioKind::Inherit, StdioKind::Inherit],
            limits: Vec::new(),
            start_method: None,
        }
    }
}

/// What [`ChildSetup::prepare`] made for one spawn.
pub(crate) struct Prepared {
    /// The child's environment, the runtime's marker not yet in it.
    pub(crate) envp: Vec<CString>,
    pub(crate) cwd: Option<CString>,
    /// The child's descriptors 0–2: `None` inherits, `Some(None)` is
    /// `/dev/null`, `Some(Some(fd))` a descriptor above 3 to dup there.
    pub(crate) stdio: [Option<Option<OwnedFd>>; 3],
    /// The parent's ends of piped descriptors.
    pub(crate) pipes: [Option<OwnedFd>; 3],
}

impl ChildSetup {
    pub(crate) fn env(&mut self, key: &OsStr, value: &OsStr) {
        self.env.push((key.to_owned(), Some(value.to_owned())));
    }

    pub(crate) fn env_remove(&mut self, key: &OsStr) {
        self.env.push((key.to_owned(), None));
    }

    pub(crate) fn env_clear(&mut self) {
        self.env.clear();
        self.env_clear = true;
    }

    pub(crate) fn current_dir(&mut self, dir: &Path) {
        self.cwd = Some(dir.to_owned());
    }

    pub(crate) fn rlimit(&mut self, resource: Resource, soft: u64, hard: u64) {
        self.limits.retain(|l| l.resource != resource);
        self.limits.push(Limit {
            resource,
            soft,
            hard,
        });
    }

    /// The memory limit that makes allocations fail first, if any.
    pub(crate) fn memory_limit(&self) -> Option<Limit> {
        memory_limit(&self.limits)
    }

    /// Checks everything that can be checked before a spawn: the
    /// environment's keys and values, the directory, the limits' order.
    pub(crate) fn check(&self) -> Result<()> {
        for (key, value) in &self.env {
            check_env_key(key)?;
            if value.is_some() && key == MARKER {
                return Err(Error::InvalidArgument(format!(
                    "environment variable name {key:?} is the runtime's own marker, which it \
                     sets for every child"
                )));
            }
            if let Some(value) = value {
                if value.as_bytes().contains(&0) {
                    return Err(Error::InvalidArgument(format!(
                        "the value of environment variable {key:?} contains a NUL byte"
                    )));
                }
            }
        }
        if let Some(dir) = &self.cwd {
            if dir.as_os_str().as_bytes().contains(&0) {
                return Err(Error::InvalidArgument(format!(
                    "current_dir {dir:?} contains a NUL byte"
                )));
            }
            match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(Error::InvalidArgument(format!(
                        "current_dir {dir:?} is not a directory"
                    )));
                }
                Err(e) => {
                    return Err(Error::Spawn(std::io::Error::new(
                        e.kind(),
                        format!("cannot use {dir:?} as the child's current_dir: {e}"),
                    )));
                }
            }
        }
        for limit in &self.limits {
            if limit.soft > limit.hard {
                return Err(Error::LimitRefused {
                    resource: limit.resource,
                    soft: limit.soft,
                    hard: limit.hard,
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "the soft limit is above the hard limit",
                    ),
                });
            }
        }
        Ok(())
    }

    /// Makes what one spawn needs: the environment, the directory, the
    /// descriptors (new pipes for `piped`). Call [`check`](Self::check)
    /// first.
    pub(crate) fn prepare(&self) -> Result<Prepared> {
        let mut vars: Vec<(OsString, OsString)> = if self.env_clear {
            Vec::new()
        } else {
            std::env::vars_os().collect()
        };
        for (key, value) in &self.env {
            vars.retain(|(k, _)| k != key);
            if let Some(value) = value {
                vars.push((key.clone(), value.clone()));
            }
        }
        let envp = vars
            .into_iter()
            .filter(|(k, _)| k != MARKER)
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect();
        let cwd = self
            .cwd
            .as_ref()
            .map(|d| CString::new(d.as_os_str().as_bytes()).expect("checked: no NUL"));
        let mut stdio = [None, None, None];
        let mut pipes = [None, None, None];
        for (i, kind) in self.stdio.iter().enumerate() {
            stdio[i] = match kind {
                StdioKind::Inherit => None,
                StdioKind::Null => Some(None),
                StdioKind::Fd(fd) => Some(Some(above_child_fd(fd.as_fd())?)),
                StdioKind::Piped => {
                    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                        .map_err(|e| Error::Spawn(e.into()))?;
                    let (theirs, ours) = if i == 0 { (read, write) } else { (write, read) };
                    pipes[i] = Some(ours);
                    Some(Some(above_child_fd(theirs.as_fd())?))
                }
            };
        }
        Ok(Prepared {
            envp,
            cwd,
            stdio,
            pipes,
        })
    }
}

/// Of `limits`, the memory limit that makes allocations fail first.
pub(crate) fn memory_limit(limits: &[Limit]) -> Option<Limit> {
    limits
        .iter()
        .filter(|l| l.resource.bounds_memory() && l.soft != Resource::UNLIMITED)
        .min_by_key(|l| l.soft)
        .copied()
}

/// A close-on-exec duplicate of `fd` numbered above the spawn socket's slot,
/// so that no file action of the spawn overwrites it before it is used.
fn above_child_fd(fd: std::os::fd::BorrowedFd<'_>) -> Result<OwnedFd> {
    sys::proc::dup_from(fd, sys::spawn::CHILD_FD + 1).map_err(Error::Spawn)
}

fn check_env_key(key: &OsStr) -> Result<()> {
    let bytes = key.as_bytes();
    let why = if bytes.is_empty() {
        "is empty"
    } else if bytes.contains(&b'=') {
        "contains '='"
    } else if bytes.contains(&0) {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::InvalidArgument(format!(
        "environment variable name {key:?} {why}"
    )))
}

impl Initializer {
    /// Worker `name` with `args`, encoded with the descriptors of the
    /// handles in them.
    pub(crate) fn encode<A: serde::Serialize>(name: &str, args: &A) -> Result<Initializer> {
        let (args, fds) = crate::handles::encode_with_fds(args)?;
        Ok(Initializer {
            worker: name.to_string(),
            args,
            fds,
        })
    }
}

/// The start hooks: workers every child of this program runs first.
static HOOKS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Registers `hook` to run first in every child this process starts from
/// now on (processes and pool workers, and their children in turn, at any
/// depth), before the child's initializer and its worker: the one place for
/// set-up that `main` does in the parent, such as a logger or metrics, since
/// a re-executed child never runs `main`.
///
/// The hook travels by name (children are the same binary) and runs in
/// registration order; registering the same worker twice runs it once. If it
/// panics, the child runs nothing else: a `Process` reports
/// [`Error::InitializerFailed`], and a pool whose workers cannot start is
/// broken ([`Error::PoolBroken`]).
///
/// ```
/// use multiproc::{Process, on_child_start, worker};
///
/// #[worker]
/// fn set_up() {
///     // SAFETY: the hook runs before the child starts any thread.
///     unsafe { std::env::set_var("SET_UP_BY_HOOK", "yes") };
/// }
///
/// #[worker]
/// fn check() -> bool {
///     std::env::var("SET_UP_BY_HOOK").is_ok()
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// on_child_start(set_up);
/// let mut p = Process::new(check, ());
/// p.start()?;
/// assert!(p.result()?);
/// # Ok(())
/// # }
/// ```
pub fn on_child_start<W: Worker<Args = ()>>(hook: W) {
    let _ = hook;
    let mut hooks = HOOKS.lock().unwrap_or_else(|e| e.into_inner());
    if !hooks.iter().any(|h| h == W::ID) {
        hooks.push(W::ID.to_string());
    }
}

/// The hooks a child started now must run.
pub(crate) fn hooks() -> Vec<String> {
    HOOKS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// In a child: the hooks it received, which its own children inherit.
pub(crate) fn set_hooks(hooks: Vec<String>) {
    *HOOKS.lock().unwrap_or_else(|e| e.into_inner()) = hooks;
}

/// Applies the limits to a just-spawned child, which has not yet been sent
/// its payload and so runs nothing of the program.
pub(crate) fn apply_limits(pid: libc::pid_t, limits: &[Limit]) -> Result<()> {
    for limit in limits {
        sys::proc::set_limit(pid, limit.resource.raw(), limit.soft, limit.hard).map_err(
            |source| Error::LimitRefused {
                resource: limit.resource,
                soft: limit.soft,
                hard: limit.hard,
                source,
            },
        )?;
    }
    Ok(())
}
