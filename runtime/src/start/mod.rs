//! Start methods (Python's `spawn`, `forkserver` and `fork`): how a child
//! process comes to exist. Each makes a process that is waiting on its spawn
//! socket with its descriptors, environment and directory in place; from
//! there every child runs the same start-up path (`child`), whatever made
//! it, and the parent (`process`) talks to it the same way.
//!
//! Peers of one another, below `process` and beside `protocol`.

pub(crate) mod fork;
pub(crate) mod forkserver;
pub(crate) mod spawn;

use crate::error::{Error, Result};
use std::ffi::{CString, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::sync::Mutex;

/// How a child process is started (Python's start methods).
///
/// | method | how | start + join | inherits |
/// |---|---|---|---|
/// | [`Spawn`](Self::Spawn) (default) | `posix_spawn` of this binary | ≈ 1–1.7 ms | nothing but what it is sent |
/// | [`Forkserver`](Self::Forkserver) | a server process, started once, forks each child ahead of need | ≈ 1/5 of `Spawn`'s | nothing but what it is sent |
/// | [`Fork`](Self::Fork) | `fork` of this process | ≈ 0.1 ms + the copy of this process | all of this process's memory and descriptors |
///
/// Children of `Spawn` and `Forkserver` are alike to your code: the same
/// worker lookup, names, handles, results, panics, exit codes, signals and
/// death with the parent; the environment, working directory, standard
/// descriptors and limits are this process's at the moment of `start`, or
/// what the [`Process`](crate::Process) builder set. `Fork` children start
/// from a copy of this process instead, as in Python.
///
/// ```
/// use multiproc::{Process, StartMethod, worker};
///
/// #[worker]
/// fn double(x: u32) -> u32 {
///     x * 2
/// }
///
/// let mut p = Process::new(double, (21,));
/// p.start_method(StartMethod::Forkserver);
/// p.start()?;
/// assert_eq!(p.result()?, 42);
/// assert_eq!("forkserver".parse::<StartMethod>(), Ok(StartMethod::Forkserver));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StartMethod {
    /// Re-execute this binary with `posix_spawn`; the child runs its worker
    /// before `main`. Python's `spawn`.
    Spawn,
    /// Ask this process's fork server to fork a child. The server is this
    /// binary started once (by re-execution, on the first start that needs
    /// it), so every child is a copy of a fresh process that has run
    /// nothing of `main`: children start ≈ 5–10× faster than by `Spawn`,
    /// however large this process has grown. Python's `forkserver`.
    ///
    /// Where the kernel does not let the server work (no
    /// `PR_GET_TID_ADDRESS`, or `clone` refused), children are spawned
    /// instead, and the runtime says so once on stderr.
    Forkserver,
    /// `fork` this process; the child runs its worker in a copy of it.
    /// Python's `fork`, with its hazards made errors where they can be:
    ///
    /// - It is refused while this process has more than one thread
    ///   ([`Error::ForkWithThreads`]): in the child only the forking thread
    ///   would exist, and a lock any other thread held (malloc's, a
    ///   `Mutex`'s, stdout's) would stay held forever. Python's `fork` with
    ///   threads is its most infamous deadlock.
    /// - The child inherits every descriptor of this process, not only the
    ///   ones its handles carry, and a copy of all of its memory, secrets
    ///   included. Buffered stdout is flushed before the fork; a buffer of
    ///   your own is copied as it is.
    /// - The child exits without running this process's `atexit` hooks.
    /// - A [`Pool`](crate::Pool) cannot use it: it starts replacement
    ///   workers from its own thread (`build` says so).
    /// - Forking a process that has touched a lot of memory takes longer
    ///   (≈ 4–13 ms at 256 MiB), where `Forkserver` does not.
    Fork,
}

impl StartMethod {
    /// Python's name for the method: `"spawn"`, `"forkserver"` or `"fork"`.
    ///
    /// ```
    /// assert_eq!(multiproc::StartMethod::Forkserver.name(), "forkserver");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Spawn => "spawn",
            StartMethod::Forkserver => "forkserver",
            StartMethod::Fork => "fork",
        }
    }
}

impl std::fmt::Display for StartMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a start method (`StartMethod::from_str`).
///
/// ```
/// let err = "vfork".parse::<multiproc::StartMethod>().unwrap_err();
/// assert!(err.to_string().contains("spawn, forkserver, fork"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStartMethod(String);

impl std::fmt::Display for UnknownStartMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown start method {:?}: the methods are spawn, forkserver, fork",
            self.0
        )
    }
}

impl std::error::Error for UnknownStartMethod {}

impl std::str::FromStr for StartMethod {
    type Err = UnknownStartMethod;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "spawn" => Ok(StartMethod::Spawn),
            "forkserver" => Ok(StartMethod::Forkserver),
            "fork" => Ok(StartMethod::Fork),
            other => Err(UnknownStartMethod(other.to_string())),
        }
    }
}

/// The environment variable that chooses the default start method
/// (`spawn`, `forkserver` or `fork`) for a program that does not call
/// [`set_start_method`]. An unknown name is reported once on stderr and
/// `spawn` is used.
///
/// ```
/// use multiproc::{Process, START_METHOD_ENV, worker};
///
/// #[worker]
/// fn default_method() -> String {
///     multiproc::get_start_method().to_string()
/// }
///
/// let mut p = Process::new(default_method, ());
/// p.env(START_METHOD_ENV, "forkserver");
/// p.start()?;
/// // The child's own children would use the fork server.
/// assert_eq!(p.result()?, "forkserver");
/// # Ok::<(), multiproc::Error>(())
/// ```
pub const START_METHOD_ENV: &str = "MULTIPROC_START_METHOD";

/// The name the fork server runs under (its `/proc/<pid>/comm`, what `ps`
/// and `top` show): it is a child of the program, beside the program's
/// own children, and lives until the program exits.
///
/// The server keeps one child forked ahead (a *spare*), so that a start is
/// a hand-over rather than a fork; the spare is a child of the program too,
/// and carries this name until a start takes it and it becomes the worker.
/// So a program using the method has two processes of this name beside its
/// workers, both gone when it exits.
///
/// ```
/// use multiproc::{FORKSERVER_NAME, StartMethod, get_context, worker};
/// # #[worker] fn nothing() {}
/// let mut p = get_context(StartMethod::Forkserver).process(nothing, ());
/// p.start()?;
/// p.join()?;
/// let me = std::process::id().to_string();
/// let server = std::fs::read_dir("/proc")?.flatten().any(|e| {
///     let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
///     let ppid = stat.rsplit(')').next().and_then(|s| s.split_whitespace().nth(1));
///     let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
///     ppid == Some(me.as_str()) && comm.trim_end() == FORKSERVER_NAME
/// });
/// assert!(server);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const FORKSERVER_NAME: &str = "mp-forkserver";

/// What `set_start_method` chose; `None` until it is called.
static CHOSEN: Mutex<Option<StartMethod>> = Mutex::new(None);

fn chosen() -> std::sync::MutexGuard<'static, Option<StartMethod>> {
    CHOSEN.lock().unwrap_or_else(|e| e.into_inner())
}

/// The default from [`START_METHOD_ENV`], read once.
fn from_env() -> StartMethod {
    static FROM_ENV: std::sync::OnceLock<StartMethod> = std::sync::OnceLock::new();
    *FROM_ENV.get_or_init(|| {
        let Some(value) = std::env::var_os(START_METHOD_ENV) else {
            return StartMethod::Spawn;
        };
        match value.to_string_lossy().parse() {
            Ok(method) => method,
            Err(e) => {
                eprintln!("multiproc: {START_METHOD_ENV}: {e}; using spawn");
                StartMethod::Spawn
            }
        }
    })
}

/// Sets the start method of every [`Process`](crate::Process) and
/// [`Pool`](crate::Pool) that does not choose its own (Python's
/// `multiprocessing.set_start_method`). Like Python's, it may be called
/// once: a second call is [`Error::StartMethodSet`], since a library that
/// changed it would change it under the program. To mix methods, use
/// [`get_context`].
///
/// ```
/// use multiproc::{StartMethod, get_start_method, set_start_method};
///
/// set_start_method(StartMethod::Forkserver)?;
/// assert_eq!(get_start_method(), StartMethod::Forkserver);
/// assert!(set_start_method(StartMethod::Spawn).is_err());
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn set_start_method(method: StartMethod) -> Result<()> {
    let mut chosen = chosen();
    if let Some(current) = *chosen {
        return Err(Error::StartMethodSet { current });
    }
    *chosen = Some(method);
    Ok(())
}

/// The start method children get when they do not choose one: the one
/// [`set_start_method`] set, or else [`START_METHOD_ENV`]'s, or else
/// [`StartMethod::Spawn`] (Python's `get_start_method()`).
///
/// ```
/// # if std::env::var_os(multiproc::START_METHOD_ENV).is_none() {
/// assert_eq!(multiproc::get_start_method(), multiproc::StartMethod::Spawn);
/// # }
/// ```
pub fn get_start_method() -> StartMethod {
    chosen().unwrap_or_else(from_env)
}

/// The start methods this platform has, the default first (Python's
/// `get_all_start_methods()`).
///
/// ```
/// use multiproc::StartMethod;
/// let all = multiproc::get_all_start_methods();
/// assert_eq!(all[0], StartMethod::Spawn);
/// assert!(all.contains(&StartMethod::Forkserver) && all.contains(&StartMethod::Fork));
/// ```
pub fn get_all_start_methods() -> Vec<StartMethod> {
    vec![
        StartMethod::Spawn,
        StartMethod::Forkserver,
        StartMethod::Fork,
    ]
}

/// A context whose processes and pools use `method`, whatever the default
/// (Python's `multiprocessing.get_context(method)`), so that two methods
/// can be mixed in one program.
///
/// ```
/// use multiproc::{StartMethod, get_context, worker};
///
/// #[worker]
/// fn add(a: u32, b: u32) -> u32 {
///     a + b
/// }
///
/// let ctx = get_context(StartMethod::Forkserver);
/// let mut p = ctx.process(add, (2, 3));
/// p.start()?;
/// assert_eq!(p.result()?, 5);
/// let pool = ctx.pool().processes(2).build()?;
/// assert_eq!(pool.apply(add, (4, 5))?, 9);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn get_context(method: StartMethod) -> Context {
    Context { method }
}

/// Processes and pools with one start method: see [`get_context`].
///
/// ```
/// let ctx = multiproc::get_context(multiproc::StartMethod::Spawn);
/// assert_eq!(ctx.start_method(), multiproc::StartMethod::Spawn);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

impl Context {
    /// The context's start method.
    ///
    /// ```
    /// use multiproc::{StartMethod, get_context};
    /// assert_eq!(get_context(StartMethod::Fork).start_method(), StartMethod::Fork);
    /// ```
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A [`Process`](crate::Process) started by this context's method.
    ///
    /// ```
    /// # use multiproc::{StartMethod, get_context, worker};
    /// #[worker]
    /// fn pid() -> u32 {
    ///     std::process::id()
    /// }
    /// let mut p = get_context(StartMethod::Forkserver).process(pid, ());
    /// p.start()?;
    /// assert_eq!(Some(p.result()?), p.pid());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn process<W: crate::Worker>(&self, worker: W, args: W::Args) -> crate::Process<W> {
        let mut process = crate::Process::new(worker, args);
        process.start_method(self.method);
        process
    }

    /// A [`PoolBuilder`](crate::PoolBuilder) whose workers this context's
    /// method starts.
    ///
    /// ```
    /// # use multiproc::{StartMethod, get_context, worker};
    /// # #[worker] fn square(x: u64) -> u64 { x * x }
    /// let pool = get_context(StartMethod::Forkserver).pool().processes(2).build()?;
    /// assert_eq!(pool.map(square, [1, 2, 3])?, [1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pool(&self) -> crate::PoolBuilder {
        crate::Pool::builder().start_method(self.method)
    }
}

/// A child to make, ready for any start method: it gets `socket` at its
/// spawn-socket slot, `stdio` as its descriptors 0–2, `envp` as its
/// environment and `cwd` as its directory.
pub(crate) struct Job {
    /// `KEY=VALUE`, the runtime's marker not in it.
    pub(crate) envp: Vec<CString>,
    /// The child's end of the spawn socket; closed here once the child has it.
    pub(crate) socket: OwnedFd,
    /// stdin, stdout, stderr: `None` inherits this process's, `Some(None)`
    /// is `/dev/null`, `Some(Some(fd))` that descriptor.
    pub(crate) stdio: [Option<Option<OwnedFd>>; 3],
    /// Relative to this process's directory.
    pub(crate) cwd: Option<CString>,
}

/// Makes the child of `job` by `method`; returns its pid. The child is this
/// process's own child whatever the method (`waitpid` and `pidfd_open`
/// work on it) and waits for its payload on the socket.
pub(crate) fn launch(method: StartMethod, job: Job) -> Result<libc::pid_t> {
    match method {
        StartMethod::Spawn => spawn::launch(job),
        StartMethod::Forkserver => forkserver::launch(job),
        StartMethod::Fork => fork::launch(job),
    }
}

/// Has the fork server fork `n` children ahead (see `forkserver::reserve`).
pub(crate) fn reserve_forkserver(n: usize) {
    forkserver::reserve(n);
}

/// `KEY=VALUE` strings as pairs (a string without `=` is dropped; `prepare`
/// makes none).
fn split_env(vars: impl IntoIterator<Item = Vec<u8>>) -> Vec<(OsString, OsString)> {
    vars.into_iter()
        .filter_map(|mut kv| {
            let eq = kv.iter().position(|&b| b == b'=')?;
            let value = kv.split_off(eq + 1);
            kv.pop();
            Some((OsString::from_vec(kv), OsString::from_vec(value)))
        })
        .collect()
}

/// Opens `/dev/null` onto standard descriptor `target` of a forked child.
fn null_onto(target: libc::c_int) -> std::io::Result<()> {
    use nix::fcntl::OFlag;
    let flags = if target == 0 {
        OFlag::O_RDONLY
    } else {
        OFlag::O_WRONLY
    };
    let null = nix::fcntl::open(
        c"/dev/null",
        flags | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    crate::sys::clone::dup_onto(std::os::fd::AsFd::as_fd(&null), target)
}

/// In a child made by fork (by either forking method), before its start-up:
/// forgets the parent's bookkeeping that came along in the copy, so the
/// child starts as a fresh process would (Python's `_after_fork`).
pub(crate) fn after_fork_in_child() {
    crate::protocol::after_fork();
    forkserver::forget_server();
    crate::current::forget_identity();
}
