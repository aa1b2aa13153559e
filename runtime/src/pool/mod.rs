//! `Pool`: Python's `multiprocessing.Pool`, typed, and it never hangs.

mod dispatch;
mod imap;
mod progress;
mod result;
mod serve;
mod wire;

pub use imap::{Imap, ImapUnordered};
pub use result::AsyncResult;
pub use serve::{CHUNKS, ChunkEntry};

use crate::current;
use crate::error::{Error, Result};
use crate::registry::Worker;
use crate::setup::{ChildSetup, Resource, Stdio, StdioKind};
use dispatch::{Config, Shared, Task};
use result::{Part, Sink, Slot, collect_map, collect_one};
pub(crate) use serve::Initializer;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{ChildStderr, ChildStdin, ChildStdout};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A pool of worker processes: Python's `multiprocessing.Pool`.
///
/// Workers are daemon children named `PoolWorker-N`, started once and reused
/// for many tasks. A task names a [`#[worker]`](crate::worker) function and
/// carries its arguments, checked against its signature at compile time.
///
/// ```
/// use multiproc::{Pool, worker};
///
/// #[worker]
/// fn square(x: i64) -> i64 {
///     x * x
/// }
///
/// let pool = Pool::new()?;
/// assert_eq!(pool.map(square, [1, 2, 3, 4, 5])?, [1, 4, 9, 16, 25]);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// What Python's `Pool` does not give:
///
/// - A worker that dies (killed, aborted, out of memory, `exit`) fails
///   exactly the input it was running, at once, with [`Error::Killed`] or
///   [`Error::Exited`] naming its pid. The inputs it had not begun (the rest
///   of its chunk too) run on another worker, those it had finished keep
///   their results, and no input runs twice; the worker is replaced.
///   Python's pool hangs for ever there.
/// - Timeouts that stop the task ([`PoolBuilder::task_timeout`],
///   [`Pool::timeout`]): an input that runs too long has its worker killed
///   and fails alone with [`Error::TaskTimedOut`]. [`AsyncResult::cancel`]
///   stops one task the same way.
/// - Workers that die while they start are restarted after a back-off (1 ms
///   doubling to 1 s) for as long as there is work; tasks wait, they do
///   not fail for it.
/// - A task that panics fails alone with [`Error::Panicked`] (message and
///   location); its worker lives on.
/// - The `imap`s are lazy over their input, with bounded prefetch.
/// - Task arguments may hold handles (a [`Queue`](crate::Queue),
///   [`Pipe`](crate::Pipe) ends, a [`Lock`](crate::Lock), an
///   [`Event`](crate::Event), shared memory), at any depth, in every method
///   and at any chunk size (see [`apply`](Self::apply)). Python refuses them
///   (`RuntimeError`): there they go only through the initializer.
/// - Queued tasks cost memory, not descriptors: a pool holds a few
///   descriptors per worker, however much work waits. The exception is a
///   task whose arguments hold handles: it keeps a duplicate of their
///   descriptors until it is answered (a `map` whose inputs all hold one
///   holds one per input at once; an `imap` only those of its prefetch).
///
/// # Drop
///
/// Dropping a `Pool` [terminates](Self::terminate) it, as leaving Python's
/// `with Pool() as pool:` block does: queued and running tasks fail with
/// [`Error::PoolTerminated`], and the workers are killed and reaped before
/// `drop` returns. To let queued work finish, [`close`](Self::close) and
/// [`join`](Self::join) first. Workers also die with the parent, however it
/// dies.
pub struct Pool {
    shared: Arc<Shared>,
    processes: usize,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    /// The parent's ends of piped stdin, stdout and stderr.
    pipes: Mutex<[Option<OwnedFd>; 3]>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes)
            .field("pids", &self.shared.pids())
            .finish()
    }
}

/// Options for a [`Pool`], from [`Pool::builder`].
///
/// ```
/// use multiproc::{Pool, Queue, worker};
///
/// #[worker]
/// fn hello(q: Queue<String>) {
///     q.put(multiproc::current_process().name().to_string()).unwrap();
/// }
///
/// let q = Queue::new()?;
/// let pool = Pool::builder()
///     .processes(2)
///     .initializer(hello, (q.clone(),)) // handles such as a Queue may travel here
///     .max_tasks_per_child(100)
///     .build()?;
/// assert_eq!(pool.processes(), 2);
/// assert!(q.get()?.starts_with("PoolWorker-"));
/// assert!(q.get()?.starts_with("PoolWorker-"));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Default)]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<Result<Initializer>>,
    max_tasks_per_child: Option<u64>,
    task_timeout: Option<Duration>,
    setup: ChildSetup,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let init = match &self.initializer {
            Some(Ok(init)) => Some(init.worker.as_str()),
            Some(Err(_)) => Some("<unencodable>"),
            None => None,
        };
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &init)
            .field("max_tasks_per_child", &self.max_tasks_per_child)
            .field("task_timeout", &self.task_timeout)
            .field("setup", &self.setup)
            .finish()
    }
}

impl PoolBuilder {
    /// The number of worker processes; [`cpu_count()`](crate::cpu_count) by
    /// default. Zero is an error at [`build`](Self::build).
    ///
    /// ```
    /// let pool = multiproc::Pool::builder().processes(3).build()?;
    /// assert_eq!(pool.processes(), 3);
    /// assert!(multiproc::Pool::builder().processes(0).build().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn processes(mut self, processes: usize) -> Self {
        self.processes = Some(processes);
        self
    }

    /// A worker each pool process runs once, with `args`, before its first
    /// task (replacement workers too). The arguments may carry handles (a
    /// `Queue`, a `Lock`, shared memory): the pool keeps their descriptors for
    /// replacements. If the initializer panics, the pool is broken: its
    /// tasks fail with [`Error::PoolBroken`], which says why.
    ///
    /// ```
    /// use multiproc::{Error, Pool, worker};
    ///
    /// #[worker]
    /// fn refuse() {
    ///     panic!("no config");
    /// }
    /// #[worker]
    /// fn one() -> u8 {
    ///     1
    /// }
    ///
    /// let pool = Pool::builder().processes(1).initializer(refuse, ()).build()?;
    /// match pool.apply(one, ()) {
    ///     Err(Error::PoolBroken { reason }) => assert!(reason.contains("no config"), "{reason}"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn initializer<W: Worker>(mut self, worker: W, args: W::Args) -> Self {
        let _ = worker;
        self.initializer = Some(Initializer::encode(W::ID, &args));
        self
    }

    /// Replaces each worker with a new process after it has run `n` tasks (a
    /// chunk of `map` is one task), as Python's `maxtasksperchild`: a way to
    /// give back memory that a task leaked. Zero is an error at `build`.
    ///
    /// ```
    /// use multiproc::{Pool, worker};
    ///
    /// #[worker]
    /// fn pid() -> u32 {
    ///     std::process::id()
    /// }
    ///
    /// let pool = Pool::builder().processes(1).max_tasks_per_child(1).build()?;
    /// let first = pool.apply(pid, ())?;
    /// let second = pool.apply(pid, ())?;
    /// assert_ne!(first, second);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// Limits every input of every task to `timeout` of run time (a task
    /// waiting in the queue is not timed). An input that runs longer has its
    /// worker killed and replaced, and fails alone with
    /// [`Error::TaskTimedOut`], which names the worker's pid and the
    /// timeout; the other inputs of its chunk run on. A per-call
    /// [`Pool::timeout`] overrides it.
    ///
    /// ```
    /// use multiproc::{Error, Pool, worker};
    /// use std::time::Duration;
    ///
    /// #[worker]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let pool = Pool::builder()
    ///     .processes(1)
    ///     .task_timeout(Duration::from_millis(500))
    ///     .build()?;
    /// match pool.apply(nap, (60_000,)) {
    ///     Err(Error::TaskTimedOut { timeout, .. }) => assert_eq!(timeout, Duration::from_millis(500)),
    ///     other => panic!("{other:?}"),
    /// }
    /// assert_eq!(pool.apply(nap, (1,))?, 1); // a new worker took over
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Sets environment variable `key` to `value` in every worker; see
    /// [`Process::env`](crate::Process::env) (a bad key is an error at
    /// [`build`](Self::build)).
    ///
    /// ```
    /// use multiproc::{Pool, worker};
    ///
    /// #[worker]
    /// fn mode() -> Option<String> {
    ///     std::env::var("MODE").ok()
    /// }
    ///
    /// let pool = Pool::builder().processes(1).env("MODE", "fast").build()?;
    /// assert_eq!(pool.apply(mode, ())?.as_deref(), Some("fast"));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.setup.env(key.as_ref(), value.as_ref());
        self
    }

    /// Removes environment variable `key` from every worker's environment.
    ///
    /// ```
    /// use multiproc::{Pool, worker};
    ///
    /// #[worker]
    /// fn has_home() -> bool {
    ///     std::env::var_os("HOME").is_some()
    /// }
    ///
    /// let pool = Pool::builder().processes(1).env_remove("HOME").build()?;
    /// assert!(!pool.apply(has_home, ())?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.setup.env_remove(key.as_ref());
        self
    }

    /// Starts every worker with an empty environment, apart from what
    /// [`env`](Self::env) adds afterwards.
    ///
    /// ```
    /// use multiproc::{Pool, worker};
    ///
    /// #[worker]
    /// fn env_names() -> Vec<String> {
    ///     std::env::vars().map(|(k, _)| k).collect()
    /// }
    ///
    /// let pool = Pool::builder().processes(1).env_clear().env("ONLY", "this").build()?;
    /// assert_eq!(pool.apply(env_names, ())?, ["ONLY"]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn env_clear(mut self) -> Self {
        self.setup.env_clear();
        self
    }

    /// The directory every worker starts in; one that does not exist is an
    /// error at [`build`](Self::build).
    ///
    /// ```
    /// use multiproc::{Pool, worker};
    /// use std::path::{Path, PathBuf};
    ///
    /// #[worker]
    /// fn cwd() -> PathBuf {
    ///     std::env::current_dir().unwrap()
    /// }
    ///
    /// let pool = Pool::builder().processes(1).current_dir("/").build()?;
    /// assert_eq!(pool.apply(cwd, ())?, Path::new("/"));
    /// assert!(Pool::builder().current_dir("/no/such/dir").build().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.setup.current_dir(dir.as_ref());
        self
    }

    /// Every worker's stdin. With [`Stdio::piped`], all workers (and their
    /// replacements) share one pipe, whose writing end
    /// [`Pool::take_stdin`] gives; each read takes what it finds.
    ///
    /// ```
    /// use multiproc::{Pool, Stdio, worker};
    /// use std::io::Write;
    ///
    /// #[worker]
    /// fn read_line() -> String {
    ///     let mut line = String::new();
    ///     std::io::stdin().read_line(&mut line).unwrap();
    ///     line
    /// }
    ///
    /// let pool = Pool::builder().processes(1).stdin(Stdio::piped()).build()?;
    /// pool.take_stdin().unwrap().write_all(b"hello\n")?;
    /// assert_eq!(pool.apply(read_line, ())?, "hello\n");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn stdin(mut self, stdin: impl Into<Stdio>) -> Self {
        self.setup.stdio[0] = stdin.into().0;
        self
    }

    /// Every worker's stdout. With [`Stdio::piped`], all workers (and their
    /// replacements) write into one pipe, whose reading end
    /// [`Pool::take_stdout`] gives: one stream for the whole pool, in which
    /// a line of up to 4 KiB written at once (as `println!` writes it) is
    /// never split by another worker's. It reaches end of file once the
    /// pool has been joined or terminated. Read it while the pool runs (from
    /// another thread, say): a full pipe (64 KiB) makes writing workers wait.
    ///
    /// ```
    /// use multiproc::{Pool, Stdio, worker};
    /// use std::io::Read;
    ///
    /// #[worker]
    /// fn say(x: u32) {
    ///     println!("input {x}");
    /// }
    ///
    /// let pool = Pool::builder().processes(2).stdout(Stdio::piped()).build()?;
    /// let mut out = pool.take_stdout().unwrap();
    /// pool.map(say, 0..3)?;
    /// pool.close();
    /// pool.join()?;
    /// let mut text = String::new();
    /// out.read_to_string(&mut text)?;
    /// let mut lines: Vec<&str> = text.lines().collect();
    /// lines.sort();
    /// assert_eq!(lines, ["input 0", "input 1", "input 2"]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn stdout(mut self, stdout: impl Into<Stdio>) -> Self {
        self.setup.stdio[1] = stdout.into().0;
        self
    }

    /// Every worker's stderr; as [`stdout`](Self::stdout), with
    /// [`Pool::take_stderr`].
    ///
    /// ```
    /// use multiproc::{Pool, Stdio, worker};
    /// use std::io::Read;
    ///
    /// #[worker]
    /// fn warn(x: u32) {
    ///     eprintln!("warning {x}");
    /// }
    ///
    /// let pool = Pool::builder().processes(1).stderr(Stdio::piped()).build()?;
    /// let mut err = pool.take_stderr().unwrap();
    /// pool.apply(warn, (1,))?;
    /// pool.close();
    /// pool.join()?;
    /// let mut text = String::new();
    /// err.read_to_string(&mut text)?; // ends: the pool was joined
    /// assert_eq!(text, "warning 1\n");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn stderr(mut self, stderr: impl Into<Stdio>) -> Self {
        self.setup.stdio[2] = stderr.into().0;
        self
    }

    /// Starts the workers (and their replacements) by `method` instead of
    /// the program's default; see [`StartMethod`](crate::StartMethod).
    /// `Fork` is refused by [`build`](Self::build) with
    /// [`Error::InvalidArgument`] (whether chosen here or by default): the
    /// pool replaces workers from its own thread, where a fork is refused.
    ///
    /// ```
    /// use multiproc::{Pool, StartMethod, worker};
    ///
    /// #[worker]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = Pool::builder()
    ///     .processes(2)
    ///     .start_method(StartMethod::Forkserver)
    ///     .build()?;
    /// assert_eq!(pool.map(square, 1..=4)?, [1, 4, 9, 16]);
    ///
    /// let fork = Pool::builder().start_method(StartMethod::Fork).build();
    /// assert!(matches!(fork, Err(multiproc::Error::InvalidArgument(_))));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn start_method(mut self, method: crate::StartMethod) -> Self {
        self.setup.start_method = Some(method);
        self
    }

    /// Limits every worker's use of `resource`; see
    /// [`Process::rlimit`](crate::Process::rlimit). A limit the kernel
    /// refuses is [`Error::LimitRefused`] from [`build`](Self::build). A
    /// task whose worker dies of its limit fails alone, as any crash does:
    /// a memory limit shows as [`Error::Killed`] with `signal: 6` and
    /// `limit: Some(Limited::Memory { .. })`, and the worker is replaced.
    ///
    /// ```
    /// use multiproc::{Error, Limited, Pool, Resource, Stdio, worker};
    ///
    /// #[worker]
    /// fn alloc(mib: usize) -> usize {
    ///     vec![7u8; mib << 20].len() >> 20
    /// }
    ///
    /// let pool = Pool::builder()
    ///     .processes(1)
    ///     .rlimit(Resource::AddressSpace, 512 << 20, 512 << 20)
    ///     .stderr(Stdio::null())
    ///     .env_remove("RUST_BACKTRACE") // a backtrace would hide the cause
    ///     .build()?;
    /// assert_eq!(pool.apply(alloc, (16,))?, 16);
    /// assert!(matches!(
    ///     pool.apply(alloc, (4096,)),
    ///     Err(Error::Killed { signal: 6, limit: Some(Limited::Memory { .. }), .. })
    /// ));
    /// assert_eq!(pool.apply(alloc, (16,))?, 16); // a new worker took over
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn rlimit(mut self, resource: Resource, soft: u64, hard: u64) -> Self {
        self.setup.rlimit(resource, soft, hard);
        self
    }

    /// Starts the workers. They start in the background: `build` returns
    /// once they are spawned, and tasks wait until a worker is ready.
    ///
    /// ```
    /// let pool = multiproc::Pool::builder().processes(2).build()?;
    /// assert_eq!(pool.processes(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn build(self) -> Result<Pool> {
        let processes = self.processes.unwrap_or_else(current::cpu_count);
        if processes == 0 {
            return Err(Error::InvalidArgument(
                "a pool needs at least one process".into(),
            ));
        }
        if self.max_tasks_per_child == Some(0) {
            return Err(Error::InvalidArgument(
                "max_tasks_per_child must be at least 1".into(),
            ));
        }
        let init = self.initializer.transpose()?.map(Arc::new);
        let mut setup = self.setup;
        setup.check()?;
        // The method is fixed now, as Python's pool keeps its context: the
        // workers started later (replacements) use it too.
        let method = setup.start_method.unwrap_or_else(crate::get_start_method);
        if method == crate::StartMethod::Fork {
            return Err(Error::InvalidArgument(
                "a Pool cannot start its workers by fork: it replaces them from its own \
                 thread, and fork is refused while threads run; use StartMethod::Forkserver"
                    .into(),
            ));
        }
        setup.start_method = Some(method);
        if method == crate::StartMethod::Forkserver {
            // The server forks the workers' spares one after another while
            // the first workers start, instead of one after each start.
            crate::start::reserve_forkserver(processes);
        }
        // One pipe per piped stream for the whole pool: the workers get
        // duplicates of its child end, which the pool keeps for
        // replacements until it stops.
        let mut pipes = [None, None, None];
        for (i, kind) in setup.stdio.iter_mut().enumerate() {
            if matches!(kind, StdioKind::Piped) {
                let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
                let (theirs, ours) = if i == 0 { (read, write) } else { (write, read) };
                *kind = StdioKind::Fd(Arc::new(theirs));
                pipes[i] = Some(ours);
            }
        }
        let shared = Shared::start(Config {
            processes,
            max_tasks: self.max_tasks_per_child,
            init,
            task_timeout: self.task_timeout,
            setup: Mutex::new(setup),
        })?;
        let runner = shared.clone();
        let dispatcher = std::thread::Builder::new()
            .name("multiproc-pool".into())
            .spawn(move || runner.run());
        let dispatcher = match dispatcher {
            Ok(handle) => handle,
            Err(e) => {
                shared.terminate();
                shared.clone().run();
                return Err(Error::Io(e));
            }
        };
        Ok(Pool {
            shared,
            processes,
            dispatcher: Mutex::new(Some(dispatcher)),
            pipes: Mutex::new(pipes),
        })
    }
}

/// Python's default chunk size for `map`: `ceil(len / (4 × processes))`.
fn default_chunksize(len: usize, processes: usize) -> usize {
    len.div_ceil(4 * processes).max(1)
}

fn check_chunksize(chunksize: usize) {
    assert!(chunksize > 0, "chunksize must be at least 1");
}

impl Pool {
    /// A pool of [`cpu_count()`](crate::cpu_count) workers.
    ///
    /// ```
    /// let pool = multiproc::Pool::new()?;
    /// assert_eq!(pool.processes(), multiproc::cpu_count());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<Pool> {
        Pool::builder().build()
    }

    /// Options: the number of processes, an initializer, a task limit per
    /// worker.
    ///
    /// ```
    /// let pool = multiproc::Pool::builder().processes(1).build()?;
    /// assert_eq!(pool.processes(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The number of worker processes the pool keeps running.
    ///
    /// ```
    /// let pool = multiproc::Pool::builder().processes(2).build()?;
    /// assert_eq!(pool.processes(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// The pids of the workers now running (they change as workers are
    /// replaced).
    ///
    /// ```
    /// let pool = multiproc::Pool::builder().processes(2).build()?;
    /// assert_eq!(pool.pids().len(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pids(&self) -> Vec<u32> {
        self.shared.pids()
    }

    fn accepting(&self) -> Result<()> {
        if self.shared.stopping() {
            Err(Error::PoolClosed)
        } else {
            Ok(())
        }
    }

    /// Runs `worker(args)` in a worker and waits for the result: Python's
    /// `apply`.
    ///
    /// A panic in the task is [`Error::Panicked`] (the worker survives); a
    /// worker that dies running it is [`Error::Killed`] or [`Error::Exited`]
    /// with its pid.
    ///
    /// ```
    /// use multiproc::{Error, Pool, worker};
    ///
    /// #[worker]
    /// fn divide(a: i32, b: i32) -> i32 {
    ///     a / b
    /// }
    ///
    /// let pool = Pool::builder().processes(1).build()?;
    /// assert_eq!(pool.apply(divide, (7, 2))?, 3);
    /// assert!(matches!(pool.apply(divide, (1, 0)), Err(Error::Panicked { .. })));
    /// assert_eq!(pool.apply(divide, (9, 3))?, 3); // the worker lived on
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// The arguments (of `apply` and of every other method) may hold
    /// handles, at any depth: a [`Queue`](crate::Queue),
    /// [`Pipe`](crate::Pipe) ends, a [`Lock`](crate::Lock), an
    /// [`Event`](crate::Event), shared memory. Their descriptors go to the
    /// worker with the task (again with it if a worker's death or a steal
    /// sends it to another); the worker's copies close when the call
    /// returns, the pool's once the task is answered.
    ///
    /// ```
    /// use multiproc::{Pool, Queue, worker};
    /// use std::time::Duration;
    ///
    /// #[worker]
    /// fn report(q: Queue<u32>, x: u32) {
    ///     q.put(x * 10).unwrap();
    /// }
    ///
    /// let pool = Pool::builder().processes(1).build()?;
    /// let q = Queue::new()?;
    /// pool.apply(report, (q.clone(), 4))?;
    /// assert_eq!(q.get_timeout(Duration::from_secs(60)).unwrap(), 40);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn apply<W: Worker>(&self, worker: W, args: W::Args) -> Result<W::Output> {
        self.chunked(None).apply(worker, args)
    }

    /// Queues `worker(args)` and returns at once with a handle to its result:
    /// Python's `apply_async`. Queued tasks hold memory, and descriptors
    /// only for the handles in their arguments.
    ///
    /// Completion callbacks are left to Rust's own tools: wait on the handle
    /// from another thread, or use [`imap_unordered`](Self::imap_unordered)
    /// for results in completion order.
    ///
    /// ```
    /// use multiproc::{Pool, worker};
    ///
    /// #[worker]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = Pool::builder().processes(2).build()?;
    /// let pending: Vec<_> = (0..100).map(|i| pool.apply_async(square, (i,))).collect::<Result<_, _>>()?;
    /// let total: u64 = pending.into_iter().map(|r| r.get().unwrap()).sum();
    /// assert_eq!(total, 328_350);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn apply_async<W: Worker>(
        &self,
        worker: W,
        args: W::Args,
    ) -> Result<AsyncResult<W::Output>> {
        self.chunked(None).apply_async(worker, args)
    }

    /// Runs a single-parameter worker on every input, in chunks, and returns
    /// the results in input order: Python's `map`.
    ///
    /// Inputs are the bare values (`[1, 2, 3]`, not 1-tuples); a worker with
    /// several parameters goes through [`starmap`](Self::starmap). The chunk
    /// size is Python's default, `ceil(len / (4 × processes))`; set another
    /// with [`chunksize`](Self::chunksize). If inputs fail, `map` still waits
    /// for every task, then returns [`Error::TaskFailed`] for the first failed
    /// input, with its index.
    ///
    /// ```
    /// use multiproc::{Error, Pool, worker};
    ///
    /// #[worker]
    /// fn square(x: i64) -> i64 {
    ///     x * x
    /// }
    /// #[worker]
    /// fn invert(x: i64) -> i64 {
    ///     100 / x
    /// }
    ///
    /// let pool = Pool::builder().processes(2).build()?;
    /// assert_eq!(pool.map(square, [1, 2, 3])?, [1, 4, 9]);
    /// assert_eq!(pool.map(square, Vec::new())?, []);
    /// match pool.map(invert, [5, 4, 0, 2]) {
    ///     Err(Error::TaskFailed { index, source }) => {
    ///         assert_eq!(index, 2);
    ///         assert!(matches!(*source, Error::Panicked { .. }));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// Inputs of the wrong type do not compile:
    ///
    /// ```compile_fail,E0271
    /// # use multiproc::{Pool, worker};
    /// # #[worker] fn square(x: i64) -> i64 { x * x }
    /// let pool = Pool::new().unwrap();
    /// pool.map(square, ["a"]);
    /// ```
    pub fn map<W, T>(
        &self,
        worker: W,
        inputs: impl IntoIterator<Item = T>,
    ) -> Result<Vec<W::Output>>
    where
        W: Worker<Args = (T,)>,
    {
        self.chunked(None).map(worker, inputs)
    }

    /// [`map`](Self::map) without waiting: a handle to all the results.
    ///
    /// ```
    /// use multiproc::{Pool, worker};
    ///
    /// #[worker]
    /// fn double(x: u8) -> u16 {
    ///     u16::from(x) * 2
    /// }
    ///
    /// let pool = Pool::builder().processes(2).build()?;
    /// let doubled = pool.map_async(double, 0..=255)?;
    /// let doubled = doubled.get()?;
    /// assert_eq!(doubled[255], 510);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map_async<W, T>(
        &self,
        worker: W,
        inputs: impl IntoIterator<Item = T>,
    ) -> Result<AsyncResult<Vec<W::Output>>>
    where
        W: Worker<Args = (T,)>,
    {
        self.chunked(None).map_async(worker, inputs)
    }

    /// Like [`map`](Self::map), for workers of any arity: each input is the
    /// argument tuple. Python's `starmap`.
    ///
    /// ```
    /// use multiproc::{Pool, worker};
    ///
    /// #[worker]
    /// fn power(base: u64, exp: u32) -> u64 {
    ///     base.pow(exp)
    /// }
    ///
    /// let pool = Pool::builder().processes(2).build()?;
    /// assert_eq!(pool.starmap(power, [(2, 10), (3, 2), (10, 0)])?, [1024, 9, 1]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap<W: Worker>(
        &self,
        worker: W,
        inputs: impl IntoIterator<Item = W::Args>,
    ) -> Result<Vec<W::Output>> {
        self.chunked(None).starmap(worker, inputs)
    }

    /// [`starmap`](Self::starmap) without waiting.
    ///
    /// ```
    /// use multiproc::{Pool, worker};
    ///
    /// #[worker]
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// let pool = Pool::builder().processes(1).build()?;
    /// let sums = pool.starmap_async(add, [(1, 2), (3, 4)])?;
    /// assert_eq!(sums.get()?, [3, 7]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap_async<W: Worker>(
        &self,
        worker: W,
        inputs: impl IntoIterator<Item = W::Args>,
    ) -> Result<AsyncResult<Vec<W::Output>>> {
        self.chunked(None).starmap_async(worker, inputs)
    }

    /// Results in input order, computed lazily from `inputs`: Python's
    /// `imap`, chunk size 1 unless set with [`chunksize`](Self::chunksize).
    /// See [`Imap`].
    ///
    /// ```
    /// use multiproc::{Pool, worker};
    ///
    /// #[worker]
    /// fn shout(s: String) -> String {
    ///     s.to_uppercase()
    /// }
    ///
    /// let pool = Pool::builder().processes(2).build()?;
    /// let words = ["a", "b", "c"].map(String::from);
    /// let loud: Vec<String> = pool.imap(shout, words)?.collect::<Result<_, _>>()?;
    /// assert_eq!(loud, ["A", "B", "C"]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap<W, T, I>(&self, worker: W, inputs: I) -> Result<Imap<W, I::IntoIter>>
    where
        W: Worker<Args = (T,)>,
        I: IntoIterator<Item = T>,
    {
        self.chunked(None).imap(worker, inputs)
    }

    /// Results in completion order, computed lazily from `inputs`: Python's
    /// `imap_unordered`. See [`ImapUnordered`].
    ///
    /// ```
    /// use multiproc::{Pool, worker};
    ///
    /// #[worker]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let pool = Pool::builder().processes(2).build()?;
    /// let order: Vec<u64> = pool.imap_unordered(nap, [400, 10])?.map(Result::unwrap).collect();
    /// assert_eq!(order, [10, 400]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap_unordered<W, T, I>(
        &self,
        worker: W,
        inputs: I,
    ) -> Result<ImapUnordered<W, I::IntoIter>>
    where
        W: Worker<Args = (T,)>,
        I: IntoIterator<Item = T>,
    {
        self.chunked(None).imap_unordered(worker, inputs)
    }

    /// The `map` family with `chunksize` inputs per task (Python's
    /// `chunksize=` argument). Bigger chunks cost less per item; smaller
    /// ones balance uneven work better.
    ///
    /// # Panics
    ///
    /// If `chunksize` is 0.
    ///
    /// ```
    /// use multiproc::{Pool, worker};
    ///
    /// #[worker]
    /// fn pid(_: u32) -> u32 {
    ///     std::process::id()
    /// }
    ///
    /// let pool = Pool::builder().processes(2).build()?;
    /// // One chunk of ten: one worker runs them all.
    /// let pids = pool.chunksize(10).map(pid, 0..10)?;
    /// assert!(pids.iter().all(|&p| p == pids[0]));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn chunksize(&self, chunksize: usize) -> Chunked<'_> {
        self.chunked(None).chunksize(chunksize)
    }

    /// The `apply` and `map` families with every input limited to `timeout`
    /// of run time, overriding [`PoolBuilder::task_timeout`]. An input that
    /// runs longer has its worker killed and replaced, and fails alone with
    /// [`Error::TaskTimedOut`]; in a chunk the timeout applies to each
    /// input, not to the chunk.
    ///
    /// ```
    /// use multiproc::{Error, Pool, worker};
    /// use std::time::Duration;
    ///
    /// #[worker]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let pool = Pool::builder().processes(2).build()?;
    /// let naps = pool.timeout(Duration::from_secs(1)).chunksize(3).map(nap, [5, 60_000, 5]);
    /// match naps {
    ///     Err(Error::TaskFailed { index: 1, source }) => {
    ///         assert!(matches!(*source, Error::TaskTimedOut { .. }));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// // Only input 1 failed: the others of its chunk ran.
    /// let results: Vec<_> = pool.timeout(Duration::from_secs(1)).imap(nap, [5, 60_000, 5])?.collect();
    /// assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn timeout(&self, timeout: Duration) -> Chunked<'_> {
        self.chunked(None).timeout(timeout)
    }

    fn chunked(&self, chunksize: Option<usize>) -> Chunked<'_> {
        Chunked {
            pool: self,
            chunksize,
            timeout: self.shared.task_timeout(),
        }
    }

    /// Takes no more work; queued and running tasks still finish, then the
    /// workers exit. Python's `close`. Work submitted later is
    /// [`Error::PoolClosed`], including further input of a lazy `imap`.
    ///
    /// ```
    /// use multiproc::{Error, Pool, worker};
    ///
    /// #[worker]
    /// fn one() -> u8 {
    ///     1
    /// }
    ///
    /// let pool = Pool::builder().processes(1).build()?;
    /// let queued = pool.apply_async(one, ())?;
    /// pool.close();
    /// assert!(matches!(pool.apply(one, ()), Err(Error::PoolClosed)));
    /// pool.join()?;
    /// assert_eq!(queued.get()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&self) {
        self.shared.close();
    }

    /// Waits until every worker has exited; only after [`close`](Self::close)
    /// or [`terminate`](Self::terminate) ([`Error::PoolRunning`] before).
    ///
    /// ```
    /// use multiproc::{Error, Pool};
    ///
    /// let pool = Pool::builder().processes(2).build()?;
    /// assert!(matches!(pool.join(), Err(Error::PoolRunning)));
    /// let pids = pool.pids();
    /// pool.close();
    /// pool.join()?;
    /// assert!(multiproc::active_children().iter().all(|c| !pids.contains(&c.pid())));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join(&self) -> Result<()> {
        if !self.shared.stopping() {
            return Err(Error::PoolRunning);
        }
        let handle = self
            .dispatcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        self.shared.release_stdio();
        Ok(())
    }

    /// Stops at once: queued and running tasks fail with
    /// [`Error::PoolTerminated`], and the workers get `SIGTERM` (`SIGKILL`
    /// if they are still there a second later) and are reaped before this
    /// returns. Python's `terminate`; what dropping the pool does.
    ///
    /// ```
    /// use multiproc::{Error, Pool, worker};
    ///
    /// #[worker]
    /// fn nap(s: u64) {
    ///     std::thread::sleep(std::time::Duration::from_secs(s));
    /// }
    ///
    /// let pool = Pool::builder().processes(2).build()?;
    /// let long: Vec<_> = (0..1000).map(|_| pool.apply_async(nap, (60,))).collect::<Result<_, _>>()?;
    /// let start = std::time::Instant::now();
    /// pool.terminate();
    /// assert!(start.elapsed() < std::time::Duration::from_secs(5));
    /// assert!(long.into_iter().all(|r| matches!(r.get(), Err(Error::PoolTerminated))));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn terminate(&self) {
        self.shared.terminate();
        let handle = self
            .dispatcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        self.shared.release_stdio();
    }

    /// The writing end of the workers' shared stdin, if the pool was built
    /// with [`stdin(Stdio::piped())`](PoolBuilder::stdin); it moves out (a
    /// second call is `None`).
    ///
    /// ```
    /// use multiproc::{Pool, Stdio};
    ///
    /// let pool = Pool::builder().processes(1).stdin(Stdio::piped()).build()?;
    /// assert!(pool.take_stdin().is_some());
    /// assert!(pool.take_stdin().is_none()); // it moved out
    /// let plain = Pool::builder().processes(1).build()?;
    /// assert!(plain.take_stdin().is_none()); // not piped
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn take_stdin(&self) -> Option<ChildStdin> {
        self.take_pipe(0).map(ChildStdin::from)
    }

    /// The reading end of the workers' shared stdout, if the pool was built
    /// with [`stdout(Stdio::piped())`](PoolBuilder::stdout); it moves out
    /// (a second call is `None`). One stream for every worker; it ends once
    /// the pool has been joined or terminated.
    ///
    /// ```
    /// use multiproc::{Pool, Stdio, worker};
    /// use std::io::Read;
    ///
    /// #[worker]
    /// fn hello() {
    ///     println!("hi");
    /// }
    ///
    /// let pool = Pool::builder().processes(1).stdout(Stdio::piped()).build()?;
    /// let mut out = pool.take_stdout().unwrap();
    /// assert!(pool.take_stdout().is_none()); // it moved out
    /// pool.apply(hello, ())?;
    /// pool.close();
    /// pool.join()?;
    /// let mut text = String::new();
    /// out.read_to_string(&mut text)?; // ends: the pool was joined
    /// assert_eq!(text, "hi\n");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn take_stdout(&self) -> Option<ChildStdout> {
        self.take_pipe(1).map(ChildStdout::from)
    }

    /// The reading end of the workers' shared stderr, as
    /// [`take_stdout`](Self::take_stdout).
    ///
    /// ```
    /// use multiproc::{Pool, Stdio, worker};
    /// use std::io::Read;
    ///
    /// #[worker]
    /// fn complain() {
    ///     eprint!("oops");
    /// }
    ///
    /// let pool = Pool::builder().processes(1).stderr(Stdio::piped()).build()?;
    /// let mut err = pool.take_stderr().unwrap();
    /// pool.apply(complain, ())?;
    /// pool.terminate(); // the stream ends after terminate too
    /// let mut text = String::new();
    /// err.read_to_string(&mut text)?;
    /// assert_eq!(text, "oops");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn take_stderr(&self) -> Option<ChildStderr> {
        self.take_pipe(2).map(ChildStderr::from)
    }

    fn take_pipe(&self, i: usize) -> Option<OwnedFd> {
        self.pipes.lock().unwrap_or_else(|e| e.into_inner())[i].take()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The `apply` and `map` families with a chosen chunk size or timeout, from
/// [`Pool::chunksize`] or [`Pool::timeout`] (chain them for both).
///
/// ```
/// use multiproc::{Pool, worker};
///
/// #[worker]
/// fn square(x: u32) -> u32 {
///     x * x
/// }
///
/// let pool = Pool::builder().processes(2).build()?;
/// let squares: Vec<u32> = pool.chunksize(100).imap(square, 0..1000)?.map(Result::unwrap).collect();
/// assert_eq!(squares[999], 998_001);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Chunked<'a> {
    pool: &'a Pool,
    /// `None`: Python's default for each method.
    chunksize: Option<usize>,
    timeout: Option<Duration>,
}

impl Chunked<'_> {
    /// This chunk size for the `map` family (`apply` runs one input).
    ///
    /// # Panics
    ///
    /// If `chunksize` is 0.
    ///
    /// ```
    /// # use multiproc::{Pool, worker};
    /// # use std::time::Duration;
    /// # #[worker] fn square(x: u32) -> u32 { x * x }
    /// let pool = Pool::builder().processes(2).build()?;
    /// let squares = pool.timeout(Duration::from_secs(60)).chunksize(2).map(square, [1, 2, 3])?;
    /// assert_eq!(squares, [1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        check_chunksize(chunksize);
        self.chunksize = Some(chunksize);
        self
    }

    /// This timeout for each input (see [`Pool::timeout`]).
    ///
    /// ```
    /// # use multiproc::{Pool, worker};
    /// # use std::time::Duration;
    /// # #[worker] fn square(x: u32) -> u32 { x * x }
    /// let pool = Pool::builder().processes(2).build()?;
    /// let squares = pool.chunksize(2).timeout(Duration::from_secs(60)).map(square, [1, 2, 3])?;
    /// assert_eq!(squares, [1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The timeout as the wire carries it (0: none).
    fn timeout_ns(&self) -> u64 {
        self.timeout
            .map_or(0, |t| t.as_nanos().clamp(1, u64::MAX as u128) as u64)
    }

    /// [`Pool::apply`] with this timeout.
    ///
    /// ```
    /// # use multiproc::{Pool, worker};
    /// # use std::time::Duration;
    /// # #[worker] fn square(x: u32) -> u32 { x * x }
    /// let pool = Pool::builder().processes(1).build()?;
    /// assert_eq!(pool.timeout(Duration::from_secs(60)).apply(square, (3,))?, 9);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn apply<W: Worker>(self, worker: W, args: W::Args) -> Result<W::Output> {
        let _ = worker;
        let shared = &self.pool.shared;
        let frame = wire::task_frame(W::ID, self.timeout_ns(), std::slice::from_ref(&args))?;
        let slot = Slot::new();
        let task = Task::new(frame, Sink::slot(&slot), false, 1);
        if let Some(served) = shared.submit_and_serve(task)? {
            shared.serve(&served, &slot);
        }
        AsyncResult::new(
            vec![Part { slot, len: 1 }],
            collect_one::<W::Output>,
            shared,
        )
        .get()
    }

    /// [`Pool::apply_async`] with this timeout.
    ///
    /// ```
    /// # use multiproc::{Pool, worker};
    /// # use std::time::Duration;
    /// # #[worker] fn square(x: u32) -> u32 { x * x }
    /// let pool = Pool::builder().processes(1).build()?;
    /// let nine = pool.timeout(Duration::from_secs(60)).apply_async(square, (3,))?;
    /// assert_eq!(nine.get()?, 9);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn apply_async<W: Worker>(
        self,
        worker: W,
        args: W::Args,
    ) -> Result<AsyncResult<W::Output>> {
        let _ = worker;
        let shared = &self.pool.shared;
        let frame = wire::task_frame(W::ID, self.timeout_ns(), std::slice::from_ref(&args))?;
        let slot = Slot::new();
        shared.submit([Task::new(frame, Sink::slot(&slot), false, 1)])?;
        Ok(AsyncResult::new(
            vec![Part { slot, len: 1 }],
            collect_one::<W::Output>,
            shared,
        ))
    }

    /// [`Pool::map`] with this chunk size.
    ///
    /// ```
    /// # use multiproc::{Pool, worker};
    /// # #[worker] fn square(x: u32) -> u32 { x * x }
    /// let pool = Pool::builder().processes(2).build()?;
    /// assert_eq!(pool.chunksize(2).map(square, [1, 2, 3])?, [1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map<W, T>(self, worker: W, inputs: impl IntoIterator<Item = T>) -> Result<Vec<W::Output>>
    where
        W: Worker<Args = (T,)>,
    {
        self.map_async(worker, inputs)?.get()
    }

    /// [`Pool::map_async`] with this chunk size.
    ///
    /// ```
    /// # use multiproc::{Pool, worker};
    /// # #[worker] fn square(x: u32) -> u32 { x * x }
    /// let pool = Pool::builder().processes(2).build()?;
    /// assert_eq!(pool.chunksize(1).map_async(square, [4])?.get()?, [16]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map_async<W, T>(
        self,
        worker: W,
        inputs: impl IntoIterator<Item = T>,
    ) -> Result<AsyncResult<Vec<W::Output>>>
    where
        W: Worker<Args = (T,)>,
    {
        self.starmap_async(worker, inputs.into_iter().map(|x| (x,)))
    }

    /// [`Pool::starmap`] with this chunk size.
    ///
    /// ```
    /// # use multiproc::{Pool, worker};
    /// # #[worker] fn add(a: u32, b: u32) -> u32 { a + b }
    /// let pool = Pool::builder().processes(2).build()?;
    /// assert_eq!(pool.chunksize(1).starmap(add, [(1, 1), (2, 2)])?, [2, 4]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap<W: Worker>(
        self,
        worker: W,
        inputs: impl IntoIterator<Item = W::Args>,
    ) -> Result<Vec<W::Output>> {
        self.starmap_async(worker, inputs)?.get()
    }

    /// [`Pool::starmap_async`] with this chunk size.
    ///
    /// ```
    /// # use multiproc::{Pool, worker};
    /// # #[worker] fn add(a: u32, b: u32) -> u32 { a + b }
    /// let pool = Pool::builder().processes(2).build()?;
    /// assert_eq!(pool.chunksize(5).starmap_async(add, [(1, 1)])?.get()?, [2]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap_async<W: Worker>(
        self,
        worker: W,
        inputs: impl IntoIterator<Item = W::Args>,
    ) -> Result<AsyncResult<Vec<W::Output>>> {
        let _ = worker;
        self.pool.accepting()?;
        let items: Vec<W::Args> = inputs.into_iter().collect();
        let chunksize = self
            .chunksize
            .unwrap_or_else(|| default_chunksize(items.len(), self.pool.processes));
        let mut parts = Vec::with_capacity(items.len().div_ceil(chunksize));
        // Each chunk goes out as soon as it is encoded, so workers start
        // while the rest encode.
        let timeout_ns = self.timeout_ns();
        for chunk in items.chunks(chunksize) {
            let frame = wire::task_frame(W::ID, timeout_ns, chunk)?;
            let slot = Slot::new();
            let task = Task::new(frame, Sink::slot(&slot), chunk.len() > 1, chunk.len());
            self.pool.shared.submit([task])?;
            parts.push(Part {
                slot,
                len: chunk.len(),
            });
        }
        Ok(AsyncResult::new(
            parts,
            collect_map::<W::Output>,
            &self.pool.shared,
        ))
    }

    /// [`Pool::imap`] with this chunk size.
    ///
    /// ```
    /// # use multiproc::{Pool, worker};
    /// # #[worker] fn square(x: u32) -> u32 { x * x }
    /// let pool = Pool::builder().processes(2).build()?;
    /// let squares = pool.chunksize(3).imap(square, 0..10)?;
    /// assert_eq!(squares.len(), 10);
    /// assert_eq!(squares.map(Result::unwrap).sum::<u32>(), 285);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap<W, T, I>(self, worker: W, inputs: I) -> Result<Imap<W, I::IntoIter>>
    where
        W: Worker<Args = (T,)>,
        I: IntoIterator<Item = T>,
    {
        let _ = worker;
        self.pool.accepting()?;
        Ok(Imap::new(
            self.pool.shared.clone(),
            self.pool.processes,
            inputs.into_iter(),
            |x| (x,),
            self.chunksize.unwrap_or(1),
            self.timeout_ns(),
        ))
    }

    /// [`Pool::imap_unordered`] with this chunk size.
    ///
    /// ```
    /// # use multiproc::{Pool, worker};
    /// # #[worker] fn square(x: u32) -> u32 { x * x }
    /// let pool = Pool::builder().processes(2).build()?;
    /// let total: u32 = pool.chunksize(4).imap_unordered(square, 0..10)?.map(Result::unwrap).sum();
    /// assert_eq!(total, 285);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap_unordered<W, T, I>(
        self,
        worker: W,
        inputs: I,
    ) -> Result<ImapUnordered<W, I::IntoIter>>
    where
        W: Worker<Args = (T,)>,
        I: IntoIterator<Item = T>,
    {
        let _ = worker;
        self.pool.accepting()?;
        Ok(ImapUnordered::new(
            self.pool.shared.clone(),
            self.pool.processes,
            inputs.into_iter(),
            |x| (x,),
            self.chunksize.unwrap_or(1),
            self.timeout_ns(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_chunksize_is_pythons() {
        assert_eq!(default_chunksize(0, 2), 1);
        assert_eq!(default_chunksize(1, 2), 1);
        assert_eq!(default_chunksize(8, 2), 1);
        assert_eq!(default_chunksize(9, 2), 2);
        assert_eq!(default_chunksize(1_000_000, 2), 125_000);
    }
}
