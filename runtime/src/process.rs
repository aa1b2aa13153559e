//! `Process`: a worker running in a re-executed child, with Python's semantics.

use crate::codec::{self, MAX_FRAME};
use crate::conn::Conn;
use crate::current;
use crate::error::{Error, Result};
use crate::handles;
use crate::pool::Initializer;
use crate::protocol::{MARKER, MAX_HEADER, MAX_NAME, Outcome, SpawnHeader};
use crate::registry::Worker;
use crate::setup::{self, ChildSetup, Limit, Limited, Resource, Stdio};
use crate::start::{self, StartMethod};
use crate::sys;
use crate::wait::{Sealed, WaitFd, Waitable};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::{ChildStderr, ChildStdin, ChildStdout};
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// A worker that runs in a child process: Python's `multiprocessing.Process`.
///
/// The child is the same binary, started again by `posix_spawn`; it finds the
/// worker by name before `main` runs, runs it, sends the result back and
/// exits. The argument tuple and the result are checked at compile time
/// against the worker's signature.
///
/// ```
/// use multiproc::{Process, worker};
///
/// #[worker]
/// fn square(x: i64) -> i64 {
///     x * x
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let mut p = Process::new(square, (7,));
/// assert_eq!(p.name(), "Process-1");
/// p.start()?;
/// assert_eq!(p.join()?, 0);
/// assert_eq!(p.exitcode(), Some(0));
/// assert_eq!(p.result()?, 49);
/// # Ok(())
/// # }
/// ```
///
/// Dropping a `Process` neither waits for nor kills the child: like Python,
/// the parent still joins non-daemon children (and terminates daemon ones)
/// when it exits normally, and a parent that dies abnormally takes its
/// children with it. A dropped child that has finished is reaped by the next
/// [`start`](Self::start) (or [`active_children`]), so fire-and-forget starts
/// leave no zombies.
///
/// To give a child a time limit, wait with
/// [`join_timeout`](Self::join_timeout) and [`kill`](Self::kill) it if it is
/// still running; [`join`](Self::join) then returns at once, and the exit
/// code says it was killed:
///
/// ```
/// use multiproc::{Error, Process, worker};
/// use std::time::Duration;
///
/// #[worker]
/// fn stuck() {
///     std::thread::sleep(Duration::from_secs(3600));
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let mut p = Process::new(stuck, ());
/// p.start()?;
/// if p.join_timeout(Duration::from_millis(100))?.is_none() {
///     p.kill()?; // SIGKILL; `terminate()` sends SIGTERM (-15)
/// }
/// assert_eq!(p.join()?, -9);
/// assert_eq!(p.exitcode(), Some(-9));
/// assert!(matches!(p.result(), Err(Error::Killed { signal: 9, .. })));
/// # Ok(())
/// # }
/// ```
pub struct Process<W: Worker> {
    args: Option<W::Args>,
    path: Vec<u32>,
    name: String,
    daemon: bool,
    child: Option<ChildProcess>,
    /// Set by the one `result()` call that takes the value (`result` takes
    /// `&self`, so that it can be used beside `name()` and from threads).
    result_taken: std::sync::atomic::AtomicBool,
    setup: ChildSetup,
    init: Option<Result<Initializer>>,
    /// The parent's ends of piped stdin, stdout and stderr, once started.
    pipes: [Option<OwnedFd>; 3],
    /// The child's authkey; this process's unless set.
    authkey: Vec<u8>,
    /// Set by [`close`](Self::close): the pid and exit code it had, if it
    /// was started.
    closed: Option<Option<(u32, i32)>>,
}

impl<W: Worker> std::fmt::Debug for Process<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("worker", &W::NAME)
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("pid", &self.pid())
            .field("exitcode", &self.exitcode())
            .finish()
    }
}

impl<W: Worker> Process<W> {
    /// A process that will run `worker` with `args` (a tuple: `(x,)` for one
    /// parameter, `()` for none). Nothing starts until [`start`](Self::start).
    ///
    /// The default name is `Process-N` (`Process-N:M` in a child), numbered in
    /// creation order as Python does. The daemon flag starts as this
    /// process's own ([`current_process().daemon()`](crate::CurrentProcess::daemon)),
    /// as Python copies it: `false` in the main process, `true` in a daemon
    /// child.
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// #[worker]
    /// fn greet(name: String) -> String {
    ///     format!("hello {name}")
    /// }
    /// let p = Process::new(greet, ("you".to_string(),));
    /// assert!(p.name().starts_with("Process-"));
    /// assert_eq!(p.pid(), None);
    /// ```
    pub fn new(worker: W, args: W::Args) -> Self {
        let _ = worker;
        let (path, name) = current::next_child();
        Process {
            args: Some(args),
            path,
            name,
            daemon: current::identity().daemon,
            authkey: current::authkey().to_vec(),
            child: None,
            result_taken: std::sync::atomic::AtomicBool::new(false),
            setup: ChildSetup::default(),
            init: None,
            pipes: [None, None, None],
            closed: None,
        }
    }

    /// Starts the child by `method` instead of the program's default
    /// ([`get_start_method`](crate::get_start_method)).
    ///
    /// ```
    /// use multiproc::{Process, StartMethod, worker};
    ///
    /// #[worker]
    /// fn parent_pid() -> u32 {
    ///     multiproc::parent_process().unwrap().pid()
    /// }
    ///
    /// let mut p = Process::new(parent_pid, ());
    /// p.start_method(StartMethod::Forkserver);
    /// p.start()?;
    /// // A fork server's child is still this process's child.
    /// assert_eq!(p.result()?, std::process::id());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn start_method(&mut self, method: StartMethod) -> &mut Self {
        self.setup.start_method = Some(method);
        self
    }

    /// Sets environment variable `key` to `value` in the child (as
    /// [`Command::env`](std::process::Command::env)). The child otherwise
    /// inherits this process's environment. A key that is empty or holds
    /// `=` or NUL, a value that holds NUL, or the runtime's own marker
    /// `MULTIPROC_CHILD`, is [`Error::InvalidArgument`] at
    /// [`start`](Self::start). Changes after `start` have no effect.
    ///
    /// ```
    /// use multiproc::{Process, worker};
    ///
    /// #[worker]
    /// fn read_env(key: String) -> Option<String> {
    ///     std::env::var(key).ok()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(read_env, ("GREETING".into(),));
    /// p.env("GREETING", "hello");
    /// p.start()?;
    /// assert_eq!(p.result()?.as_deref(), Some("hello"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.setup.env(key.as_ref(), value.as_ref());
        self
    }

    /// Removes environment variable `key` from the child's environment.
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # #[worker] fn has_home() -> bool { std::env::var_os("HOME").is_some() }
    /// let mut p = Process::new(has_home, ());
    /// p.env_remove("HOME");
    /// p.start()?;
    /// assert!(!p.result()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.setup.env_remove(key.as_ref());
        self
    }

    /// Starts the child with an empty environment, apart from what
    /// [`env`](Self::env) adds afterwards (and the runtime's own marker,
    /// which the child removes before anything reads it).
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # #[worker] fn env_len() -> usize { std::env::vars_os().count() }
    /// let mut p = Process::new(env_len, ());
    /// p.env_clear().env("ONLY", "this");
    /// p.start()?;
    /// assert_eq!(p.result()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn env_clear(&mut self) -> &mut Self {
        self.setup.env_clear();
        self
    }

    /// The directory the child starts in (a relative path is relative to
    /// this process's directory at `start`). A path that does not exist or
    /// is not a directory is an error from [`start`](Self::start)
    /// ([`Error::Spawn`] or [`Error::InvalidArgument`]), and nothing starts.
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # #[worker] fn cwd() -> std::path::PathBuf { std::env::current_dir().unwrap() }
    /// let mut p = Process::new(cwd, ());
    /// p.current_dir("/");
    /// p.start()?;
    /// assert_eq!(p.result()?, std::path::Path::new("/"));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.setup.current_dir(dir.as_ref());
        self
    }

    /// The child's standard input: inherited (the default),
    /// [`Stdio::null`], a file, or [`Stdio::piped`] (then
    /// [`take_stdin`](Self::take_stdin) gives the writing end).
    ///
    /// ```
    /// use multiproc::{Process, Stdio, worker};
    /// use std::io::{Read, Write};
    ///
    /// #[worker]
    /// fn count_bytes() -> usize {
    ///     let mut s = String::new();
    ///     std::io::stdin().read_to_string(&mut s).unwrap();
    ///     s.len()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(count_bytes, ());
    /// p.stdin(Stdio::piped());
    /// p.start()?;
    /// let mut stdin = p.take_stdin().unwrap();
    /// stdin.write_all(b"four")?;
    /// drop(stdin); // the child reads end of file
    /// assert_eq!(p.result()?, 4);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stdin(&mut self, stdin: impl Into<Stdio>) -> &mut Self {
        self.setup.stdio[0] = stdin.into().0;
        self
    }

    /// The child's standard output; see [`Stdio`] (with
    /// [`Stdio::piped`], [`take_stdout`](Self::take_stdout) gives the
    /// reading end).
    ///
    /// ```
    /// use multiproc::{Process, worker};
    ///
    /// #[worker]
    /// fn chatty() {
    ///     println!("to a file");
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let path = std::env::temp_dir().join(format!("multiproc-doc-{}", std::process::id()));
    /// let mut p = Process::new(chatty, ());
    /// p.stdout(std::fs::File::create(&path)?);
    /// p.start()?;
    /// p.join()?;
    /// assert_eq!(std::fs::read_to_string(&path)?, "to a file\n");
    /// # std::fs::remove_file(&path)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn stdout(&mut self, stdout: impl Into<Stdio>) -> &mut Self {
        self.setup.stdio[1] = stdout.into().0;
        self
    }

    /// The child's standard error; see [`Stdio`] (with [`Stdio::piped`],
    /// [`take_stderr`](Self::take_stderr) gives the reading end).
    ///
    /// ```
    /// use multiproc::{Process, Stdio, worker};
    /// use std::io::Read;
    ///
    /// #[worker]
    /// fn complain() {
    ///     eprint!("oops");
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(complain, ());
    /// p.stderr(Stdio::piped());
    /// p.start()?;
    /// let mut err = String::new();
    /// p.take_stderr().unwrap().read_to_string(&mut err)?;
    /// assert_eq!(err, "oops");
    /// assert_eq!(p.join()?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stderr(&mut self, stderr: impl Into<Stdio>) -> &mut Self {
        self.setup.stdio[2] = stderr.into().0;
        self
    }

    /// Limits the child's use of `resource` to `soft` (what the kernel
    /// enforces) and `hard` (the most the child may raise `soft` to);
    /// [`Resource::UNLIMITED`] for none. The limits are set on the child
    /// before it runs anything of the program (any start hook, the
    /// initializer, the worker), without `unsafe` in user code. A limit the
    /// kernel refuses (`soft` above `hard`, or `hard` above this process's
    /// own hard limit without the privilege to raise it) is
    /// [`Error::LimitRefused`] from [`start`](Self::start), and nothing
    /// runs. See [`Resource`] for how each limit shows when the child
    /// reaches it.
    ///
    /// ```
    /// use multiproc::{Error, Process, Resource, worker};
    ///
    /// #[worker]
    /// fn spin() {
    ///     let mut x = 0u64;
    ///     loop {
    ///         x = std::hint::black_box(x.wrapping_add(1));
    ///     }
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(spin, ());
    /// p.rlimit(Resource::Cpu, 1, 2); // SIGXCPU after 1 s of CPU
    /// p.start()?;
    /// assert!(matches!(p.result(), Err(Error::Killed { signal: libc::SIGXCPU, .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn rlimit(&mut self, resource: Resource, soft: u64, hard: u64) -> &mut Self {
        self.setup.rlimit(resource, soft, hard);
        self
    }

    /// A worker the child runs with `args` before its own worker, as a
    /// pool's [`initializer`](crate::PoolBuilder::initializer) does (after
    /// any [`on_child_start`](crate::on_child_start) hook). Its arguments
    /// may carry handles. If it panics, the worker does not run, and
    /// [`result`](Self::result) is [`Error::InitializerFailed`].
    ///
    /// ```
    /// use multiproc::{Process, Queue, worker};
    ///
    /// #[worker]
    /// fn announce(q: Queue<String>) {
    ///     q.put("initialized".to_string()).unwrap();
    /// }
    ///
    /// #[worker]
    /// fn work() -> u32 {
    ///     42
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let q = Queue::new()?;
    /// let mut p = Process::new(work, ());
    /// p.initializer(announce, (q.clone(),));
    /// p.start()?;
    /// assert_eq!(p.result()?, 42);
    /// assert_eq!(q.get_timeout(std::time::Duration::from_secs(10)).unwrap(), "initialized");
    /// # Ok(())
    /// # }
    /// ```
    pub fn initializer<I: Worker>(&mut self, worker: I, args: I::Args) -> &mut Self {
        let _ = worker;
        self.init = Some(Initializer::encode(I::ID, &args));
        self
    }

    /// The writing end of the child's stdin, if it was [`Stdio::piped`]
    /// and the process has started; it moves out (a second call is
    /// `None`). Drop it to give the child end of file.
    ///
    /// ```
    /// # use multiproc::{Process, Stdio, worker};
    /// # #[worker] fn nothing() {}
    /// let mut p = Process::new(nothing, ());
    /// p.stdin(Stdio::piped());
    /// assert!(p.take_stdin().is_none()); // not started yet
    /// p.start()?;
    /// assert!(p.take_stdin().is_some());
    /// assert!(p.take_stdin().is_none()); // it moved out
    /// p.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.pipes[0].take().map(ChildStdin::from)
    }

    /// The reading end of the child's stdout, if it was [`Stdio::piped`]
    /// and the process has started; it moves out (a second call is `None`).
    /// It reaches end of file when the child (and every process it gave
    /// its stdout to) has exited.
    ///
    /// ```
    /// use multiproc::{Process, Stdio, worker};
    /// use std::io::Read;
    ///
    /// #[worker]
    /// fn hello() {
    ///     print!("hi");
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(hello, ());
    /// p.stdout(Stdio::piped());
    /// p.start()?;
    /// let mut out = String::new();
    /// p.take_stdout().unwrap().read_to_string(&mut out)?; // until the child exits
    /// assert_eq!(out, "hi");
    /// assert!(p.take_stdout().is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.pipes[1].take().map(ChildStdout::from)
    }

    /// The reading end of the child's stderr, if it was [`Stdio::piped`]
    /// and the process has started; it moves out.
    ///
    /// ```
    /// # use multiproc::{Process, Stdio, worker};
    /// # use std::io::Read;
    /// # #[worker] fn warn() { eprintln!("careful"); }
    /// let mut p = Process::new(warn, ());
    /// p.stderr(Stdio::piped());
    /// p.start()?;
    /// let mut err = String::new();
    /// p.take_stderr().unwrap().read_to_string(&mut err)?;
    /// assert_eq!(err, "careful\n");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.pipes[2].take().map(ChildStderr::from)
    }

    /// A pool worker's set-up: its pool's.
    pub(crate) fn set_setup(&mut self, setup: ChildSetup) {
        self.setup = setup;
    }

    /// The process's name.
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
    /// let mut p = Process::new(my_name, ());
    /// assert!(p.name().starts_with("Process-"));
    /// p.start()?;
    /// assert_eq!(p.result()?, p.name()); // the child knows itself by it
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the process; a started child keeps the name it started with.
    /// [`start`](Self::start) refuses a name longer than 64 KiB.
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # #[worker] fn nothing() {}
    /// let mut p = Process::new(nothing, ());
    /// p.set_name("fetcher");
    /// assert_eq!(p.name(), "fetcher");
    /// ```
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// Whether the process is a daemon: terminated, not joined, when its
    /// parent exits. Unless [`set_daemon`](Self::set_daemon) says otherwise,
    /// that of the process that created it (so a daemon's children are
    /// daemons too).
    ///
    /// ```
    /// use multiproc::{Process, current_process, worker};
    ///
    /// #[worker]
    /// fn child_default() -> bool {
    ///     Process::new(child_default, ()).daemon()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// assert!(!current_process().daemon());
    /// let mut p = Process::new(child_default, ());
    /// assert!(!p.daemon()); // the main process is no daemon
    /// p.set_daemon(true)?;
    /// p.start()?;
    /// assert!(p.result()?); // created in a daemon: a daemon
    /// # Ok(())
    /// # }
    /// ```
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// Makes the process a daemon (or not). Only before `start`.
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # #[worker] fn nothing() {}
    /// let mut p = Process::new(nothing, ());
    /// p.set_daemon(true)?;
    /// assert!(p.daemon());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn set_daemon(&mut self, daemon: bool) -> Result<()> {
        if self.closed.is_some() {
            return Err(Error::Closed);
        }
        if self.child.is_some() {
            return Err(Error::AlreadyStarted);
        }
        self.daemon = daemon;
        Ok(())
    }

    /// The authkey the child gets as its
    /// [`current_process().authkey()`](crate::CurrentProcess::authkey)
    /// (Python's `Process.authkey`): this process's own unless
    /// [`set_authkey`](Self::set_authkey) changed it.
    ///
    /// ```
    /// # use multiproc::{Process, current_process, worker};
    /// # #[worker] fn nothing() {}
    /// let p = Process::new(nothing, ());
    /// assert_eq!(p.authkey(), current_process().authkey()); // inherited
    /// ```
    pub fn authkey(&self) -> &[u8] {
        &self.authkey
    }

    /// Gives the child another authkey (Python's `Process.authkey = ...`);
    /// its own children inherit it. Only before `start`
    /// ([`Error::AlreadyStarted`] after). An empty key, which authenticates
    /// nothing, or one over 64 KiB (it travels in the spawn header) is
    /// [`Error::InvalidArgument`], and the key is unchanged.
    ///
    /// ```
    /// use multiproc::{Error, Process, current_process, worker};
    ///
    /// #[worker]
    /// fn my_key() -> Vec<u8> {
    ///     current_process().authkey().to_vec()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(my_key, ());
    /// assert!(matches!(p.set_authkey(Vec::new()), Err(Error::InvalidArgument(_))));
    /// p.set_authkey(b"our secret".to_vec())?;
    /// assert_eq!(p.authkey(), b"our secret");
    /// p.start()?;
    /// assert_eq!(p.result()?, b"our secret");
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_authkey(&mut self, key: impl Into<Vec<u8>>) -> Result<()> {
        if self.closed.is_some() {
            return Err(Error::Closed);
        }
        if self.child.is_some() {
            return Err(Error::AlreadyStarted);
        }
        let key = key.into();
        if key.is_empty() {
            return Err(Error::InvalidArgument(
                "an empty authkey authenticates nothing; give the child a secret".to_string(),
            ));
        }
        if key.len() > MAX_NAME {
            return Err(Error::InvalidArgument(format!(
                "the authkey is {} bytes long; it may be at most {MAX_NAME} bytes (64 KiB)",
                key.len()
            )));
        }
        self.authkey = key;
        Ok(())
    }

    /// Starts the child. A second call is [`Error::AlreadyStarted`].
    ///
    /// Returns once the child exists and its arguments are on their way; a
    /// child that dies early shows up in [`exitcode`](Self::exitcode) and
    /// [`result`](Self::result), not here.
    ///
    /// As in Python, it first reaps this process's children that have
    /// finished, so starting and dropping processes without joining them
    /// leaves no zombies and holds no descriptors for them; a handle still
    /// held keeps the reaped child's exit code and result.
    ///
    /// A name longer than 64 KiB is [`Error::InvalidArgument`], and nothing
    /// starts.
    ///
    /// ```
    /// # use multiproc::{Error, Process, worker};
    /// # #[worker] fn nothing() {}
    /// let mut p = Process::new(nothing, ());
    /// p.set_name("x".repeat(1 << 20));
    /// match p.start() {
    ///     Err(Error::InvalidArgument(why)) => assert!(why.contains("at most 65536 bytes")),
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// assert_eq!(p.pid(), None);
    /// ```
    pub fn start(&mut self) -> Result<()> {
        if self.closed.is_some() {
            return Err(Error::Closed);
        }
        if self.child.is_some() {
            return Err(Error::AlreadyStarted);
        }
        let args = self.args.as_ref().ok_or(Error::AlreadyStarted)?;
        if self.name.len() > MAX_NAME {
            return Err(Error::InvalidArgument(format!(
                "the process name is {} bytes long, too long to start: a name may be at most \
                 {MAX_NAME} bytes (64 KiB)",
                self.name.len()
            )));
        }
        self.setup.check()?;
        let init = match &self.init {
            None => None,
            Some(Ok(init)) => Some(init),
            Some(Err(e)) => return Err(e.copy()),
        };
        // Python's `_cleanup()`: children that have finished are reaped here,
        // so fire-and-forget starts hold no zombies and no descriptors.
        reap_finished();
        let (args, fds) = handles::encode_with_fds(args)?;
        let logs = crate::logs::for_child();
        let me = current::identity();
        let mut header = SpawnHeader::new(
            W::ID,
            &self.name,
            &self.path,
            self.daemon,
            (std::process::id(), me.name.clone()),
            fds.len() + init.map_or(0, |i| i.fds.len()) + usize::from(logs.is_some()),
        );
        header.logs = logs.as_ref().map(|(link, _)| *link);
        header.hooks = setup::hooks();
        header.memory_note = self.setup.memory_limit().is_some();
        header.authkey = self.authkey.clone();
        if let Some(init) = init {
            header.init = Some(init.worker.clone());
            header.init_fds = init.fds.len() as u32;
        }
        let header = codec::encode(&header)?;
        if header.len() > MAX_HEADER {
            // Names are bounded above; only a worker name or a nesting depth
            // no program has gets here.
            return Err(Error::InvalidArgument(format!(
                "the spawn header of `{}` would be {} bytes; a child reads at most \
                 {MAX_HEADER} bytes (1 MiB)",
                W::NAME,
                header.len()
            )));
        }
        let prepared = self.setup.prepare()?;
        let all_fds: Vec<BorrowedFd<'_>> = init
            .into_iter()
            .flat_map(|i| i.fds.iter())
            .chain(&fds)
            .chain(logs.as_ref().map(|(_, fd)| fd))
            .map(AsFd::as_fd)
            .collect();
        let payload = Payload {
            header: &header,
            init: init.map(|i| i.args.as_slice()),
            args: &args,
            fds: &all_fds,
        };
        let method = self
            .setup
            .start_method
            .unwrap_or_else(start::get_start_method);
        let (shared, pipes) = spawn(
            method,
            payload,
            prepared,
            &self.setup.limits,
            self.name.clone(),
            self.daemon,
        )?;
        self.pipes = pipes;
        self.args = None;
        self.init = None;
        self.child = Some(ChildProcess { shared });
        Ok(())
    }

    pub(crate) fn started(&self) -> Result<&ChildProcess> {
        if self.closed.is_some() {
            return Err(Error::Closed);
        }
        self.child.as_ref().ok_or(Error::NotStarted)
    }

    /// Waits for the child to exit and returns its exit code (see
    /// [`exitcode`](Self::exitcode)). Joining again returns the same code.
    ///
    /// ```
    /// use multiproc::{Error, Process, worker};
    ///
    /// #[worker]
    /// fn exit_with(code: i32) {
    ///     std::process::exit(code)
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(exit_with, (3,));
    /// assert!(matches!(p.join(), Err(Error::NotStarted)));
    /// p.start()?;
    /// assert_eq!(p.join()?, 3);
    /// assert_eq!(p.join()?, 3); // again: the same code
    /// # Ok(())
    /// # }
    /// ```
    pub fn join(&self) -> Result<i32> {
        self.started()?.join()
    }

    /// Waits at most `timeout` for the child to exit: `Some(exitcode)` if it
    /// did, `None` if it is still running. A zero timeout only checks.
    ///
    /// ```
    /// use multiproc::{Process, worker};
    /// use std::time::Duration;
    ///
    /// #[worker]
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(Duration::from_millis(ms));
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(nap, (60_000,));
    /// p.start()?;
    /// assert_eq!(p.join_timeout(Duration::ZERO)?, None); // still running
    /// p.terminate()?;
    /// assert_eq!(p.join_timeout(Duration::from_secs(30))?, Some(-15));
    /// # Ok(())
    /// # }
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>> {
        self.started()?.join_timeout(timeout)
    }

    /// Whether the child has started and not yet exited (`false` after
    /// [`close`](Self::close)).
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # #[worker] fn nap(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)); }
    /// let mut p = Process::new(nap, (60_000,));
    /// assert!(!p.is_alive()); // not started
    /// p.start()?;
    /// assert!(p.is_alive());
    /// p.kill()?;
    /// p.join()?;
    /// assert!(!p.is_alive());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        self.child.as_ref().is_some_and(ChildProcess::is_alive)
    }

    /// The child's pid, once started (after [`close`](Self::close), the pid
    /// it had).
    ///
    /// ```
    /// use multiproc::{Process, worker};
    ///
    /// #[worker]
    /// fn my_pid() -> u32 {
    ///     std::process::id()
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(my_pid, ());
    /// assert_eq!(p.pid(), None);
    /// p.start()?;
    /// let pid = p.pid().unwrap();
    /// assert_eq!(p.result()?, pid);
    /// # Ok(())
    /// # }
    /// ```
    pub fn pid(&self) -> Option<u32> {
        match self.closed {
            Some(kept) => kept.map(|(pid, _)| pid),
            None => self.child.as_ref().map(ChildProcess::pid),
        }
    }

    /// Python's `exitcode`: `None` until the child has exited, then its exit
    /// status, or `-N` if signal `N` killed it (`-15` after
    /// [`terminate`](Self::terminate), `-9` after [`kill`](Self::kill)).
    /// After [`close`](Self::close), the code it had.
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # #[worker] fn nap(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)); }
    /// let mut p = Process::new(nap, (60_000,));
    /// assert_eq!(p.exitcode(), None); // not started
    /// p.start()?;
    /// assert_eq!(p.exitcode(), None); // running
    /// p.terminate()?;
    /// p.join()?;
    /// assert_eq!(p.exitcode(), Some(-15));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn exitcode(&self) -> Option<i32> {
        match self.closed {
            Some(kept) => kept.map(|(_, code)| code),
            None => self.child.as_ref().and_then(ChildProcess::exitcode),
        }
    }

    /// A descriptor that polls readable (`POLLIN`) once the child has
    /// exited, and stays so: Python's `sentinel`, for `poll`, `epoll` or an
    /// async reactor. It is lent, not given: the same descriptor on every
    /// call (and from every [`handle`](Self::handle) to the child), open
    /// until [`close`](Self::close) or until the last handle is dropped; do
    /// not close it. [`wait`](crate::wait) takes the [`Process`] itself.
    ///
    /// [`Error::NotStarted`] before [`start`](Self::start),
    /// [`Error::Closed`] after `close`; an [`Error::Io`] of kind
    /// `Unsupported` on a kernel without pidfds (before Linux 5.3).
    ///
    /// ```
    /// use multiproc::{Process, worker};
    /// use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    ///
    /// #[worker]
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(nap, (50,));
    /// assert!(matches!(p.sentinel(), Err(multiproc::Error::NotStarted)));
    /// p.start()?;
    /// let mut fds = [PollFd::new(p.sentinel()?, PollFlags::POLLIN)];
    /// poll(&mut fds, PollTimeout::from(30_000u16))?; // up to 30 s
    /// assert!(fds[0].revents().unwrap().contains(PollFlags::POLLIN));
    /// assert_eq!(p.join()?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sentinel(&self) -> Result<BorrowedFd<'_>> {
        Ok(self.started()?.shared.sentinel()?)
    }

    /// Releases what this handle holds (Python's `close()`): the child's
    /// descriptors, the parent's ends of piped stdio not taken, the result
    /// not collected. Afterwards [`start`](Self::start),
    /// [`join`](Self::join), [`join_timeout`](Self::join_timeout),
    /// [`result`](Self::result), [`terminate`](Self::terminate),
    /// [`kill`](Self::kill), [`sentinel`](Self::sentinel) and the setters
    /// are [`Error::Closed`] (Python's `ValueError: process object is
    /// closed`); [`pid`](Self::pid) and [`exitcode`](Self::exitcode) keep
    /// their last values and [`is_alive`](Self::is_alive) is `false`.
    /// Closing again does nothing. A process never started can be closed.
    ///
    /// A child still running is [`Error::StillRunning`] and nothing
    /// changes: [`join`](Self::join) or [`terminate`](Self::terminate) it
    /// first. Handles from [`handle`](Self::handle) are not affected.
    ///
    /// ```
    /// use multiproc::{Error, Process, worker};
    ///
    /// #[worker]
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(nap, (60_000,));
    /// p.start()?;
    /// assert!(matches!(p.close(), Err(Error::StillRunning { .. })));
    /// p.kill()?;
    /// p.join()?;
    /// p.close()?;
    /// assert!(matches!(p.join(), Err(Error::Closed)));
    /// assert_eq!(p.exitcode(), Some(-9));
    /// p.close()?; // again: nothing to do
    /// # Ok(())
    /// # }
    /// ```
    pub fn close(&mut self) -> Result<()> {
        if self.closed.is_some() {
            return Ok(());
        }
        let kept = match &self.child {
            None => None,
            Some(child) => match child.exitcode() {
                // Python's ValueError: "Cannot close a process while it is
                // still running."
                None => return Err(Error::StillRunning { pid: child.pid() }),
                Some(code) => Some((child.pid(), code)),
            },
        };
        // The child is reaped (exitcode() saw it exit), so its pidfd and
        // socket are closed already; dropping the handle frees the rest
        // (the sentinel, the result bytes) unless another handle holds it.
        self.child = None;
        self.pipes = [None, None, None];
        self.args = None;
        self.init = None;
        self.setup = ChildSetup::default();
        self.closed = Some(kept);
        Ok(())
    }

    /// Sends `SIGTERM` to the child (nothing if it has already exited).
    ///
    /// ```
    /// use multiproc::{Error, Process, worker};
    ///
    /// #[worker]
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(nap, (60_000,));
    /// p.start()?;
    /// p.terminate()?;
    /// assert_eq!(p.join()?, -15);
    /// assert!(matches!(p.result(), Err(Error::Killed { signal: 15, .. })));
    /// p.terminate()?; // it has exited: nothing happens
    /// # Ok(())
    /// # }
    /// ```
    pub fn terminate(&self) -> Result<()> {
        self.started()?.terminate()
    }

    /// Sends `SIGKILL` to the child (nothing if it has already exited).
    ///
    /// ```
    /// use multiproc::{Error, Process, worker};
    ///
    /// #[worker]
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(nap, (60_000,));
    /// assert!(matches!(p.kill(), Err(Error::NotStarted)));
    /// p.start()?;
    /// p.kill()?;
    /// assert_eq!(p.join()?, -9);
    /// assert!(matches!(p.result(), Err(Error::Killed { signal: 9, .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn kill(&self) -> Result<()> {
        self.started()?.kill()
    }

    /// A cheap, type-erased handle to the started child (`None` before
    /// start and after [`close`](Self::close)).
    ///
    /// ```
    /// use multiproc::{Process, worker};
    ///
    /// #[worker]
    /// fn seven() -> u8 {
    ///     7
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(seven, ());
    /// assert!(p.handle().is_none());
    /// p.start()?;
    /// let child = p.handle().unwrap();
    /// assert_eq!(Some(child.pid()), p.pid());
    /// let code = std::thread::spawn(move || child.join()).join().unwrap()?; // from another thread
    /// assert_eq!(code, 0);
    /// assert_eq!(p.result()?, 7);
    /// # Ok(())
    /// # }
    /// ```
    pub fn handle(&self) -> Option<ChildProcess> {
        self.child.clone()
    }

    /// Waits for the child and returns what the worker returned.
    ///
    /// A panic in the worker is [`Error::Panicked`] with the message and
    /// location; a child that exited or was killed before returning is
    /// [`Error::Exited`] or [`Error::Killed`]. The value moves out: a second
    /// call is [`Error::ResultTaken`].
    ///
    /// ```
    /// use multiproc::{Error, Process, worker};
    ///
    /// #[worker]
    /// fn fails(x: u32) -> u32 {
    ///     if x > 1 { panic!("too big: {x}") }
    ///     x
    /// }
    ///
    /// let mut p = Process::new(fails, (5,));
    /// p.start()?;
    /// match p.result() {
    ///     Err(Error::Panicked { message, .. }) => assert_eq!(message, "too big: 5"),
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// assert_eq!(p.exitcode(), Some(1));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn result(&self) -> Result<W::Output> {
        use std::sync::atomic::Ordering;
        let child = self.started()?.clone();
        if self.result_taken.load(Ordering::Acquire) {
            return Err(Error::ResultTaken);
        }
        let code = child.join()?;
        if self.result_taken.swap(true, Ordering::AcqRel) {
            return Err(Error::ResultTaken); // another thread took it
        }
        let inbox = std::mem::take(&mut child.shared.lock_state().inbox);
        let pid = child.pid();
        let (frames, _) = codec::split_frames(&inbox, MAX_FRAME)?;
        let died = || {
            if code < 0 {
                Error::Killed {
                    pid,
                    signal: -code,
                    limit: child.shared.limit_hit(-code, &inbox),
                }
            } else {
                Error::Exited { pid, code }
            }
        };
        let Some(first) = frames.first() else {
            return Err(died());
        };
        match codec::decode::<Outcome>(first)? {
            Outcome::Returned => match frames.get(1) {
                Some(body) => Ok(codec::decode(body)?),
                // Killed while sending the result.
                None => Err(died()),
            },
            Outcome::Panicked { message, location } => Err(Error::Panicked {
                pid,
                message,
                location,
                backtrace: None,
            }),
            // The child looked up the id (`name@line:column`); the user
            // knows the name.
            Outcome::UnknownWorker { mut name } => {
                name.truncate(name.find('@').unwrap_or(name.len()));
                Err(Error::UnknownWorker { name })
            }
            Outcome::Failed { reason } => Err(Error::WorkerFailed { pid, reason }),
            Outcome::SetupFailed {
                worker,
                message,
                location,
            } => Err(Error::InitializerFailed {
                pid,
                worker,
                message,
                location,
            }),
            // Written by the abort handler as the child died.
            Outcome::AllocationFailed => Err(died()),
        }
    }
}

/// A handle to a started child, whatever its worker: what
/// [`active_children`] returns and [`Process::handle`] gives.
///
/// ```
/// use multiproc::{Process, active_children, worker};
///
/// #[worker]
/// fn nap(ms: u64) {
///     std::thread::sleep(std::time::Duration::from_millis(ms));
/// }
///
/// let mut p = Process::new(nap, (10_000,));
/// p.start()?;
/// let child = active_children().into_iter().find(|c| Some(c.pid()) == p.pid()).unwrap();
/// child.kill()?;
/// assert_eq!(child.join()?, -9);
/// assert_eq!(p.exitcode(), Some(-9));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct ChildProcess {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ChildProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildProcess")
            .field("name", &self.shared.name)
            .field("pid", &self.shared.pid)
            .field("daemon", &self.shared.daemon)
            .field("exitcode", &self.exitcode())
            .finish()
    }
}

impl ChildProcess {
    /// The child's name.
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # #[worker] fn quick() {}
    /// let mut p = Process::new(quick, ());
    /// p.set_name("helper");
    /// p.start()?;
    /// let child = p.handle().unwrap();
    /// assert_eq!(child.name(), "helper");
    /// child.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The child's pid.
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # #[worker] fn quick() {}
    /// let mut p = Process::new(quick, ());
    /// p.start()?;
    /// let child = p.handle().unwrap();
    /// assert_eq!(Some(child.pid()), p.pid());
    /// child.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pid(&self) -> u32 {
        self.shared.pid.as_raw() as u32
    }

    /// Whether the child was started as a daemon.
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # #[worker] fn quick() {}
    /// let mut p = Process::new(quick, ());
    /// p.set_daemon(true)?;
    /// p.start()?;
    /// let child = p.handle().unwrap();
    /// assert!(child.daemon());
    /// child.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn daemon(&self) -> bool {
        self.shared.daemon
    }

    /// Whether the child is still running.
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # #[worker] fn nap(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)); }
    /// let mut p = Process::new(nap, (60_000,));
    /// p.start()?;
    /// let child = p.handle().unwrap();
    /// assert!(child.is_alive());
    /// child.kill()?;
    /// child.join()?;
    /// assert!(!child.is_alive());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        self.exitcode().is_none()
    }

    /// `None` while running, else the exit status or `-signal`.
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # #[worker] fn exit_with(code: i32) { std::process::exit(code) }
    /// let mut p = Process::new(exit_with, (4,));
    /// p.start()?;
    /// let child = p.handle().unwrap();
    /// child.join()?;
    /// assert_eq!(child.exitcode(), Some(4));
    /// assert_eq!(p.exitcode(), Some(4)); // the same child
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn exitcode(&self) -> Option<i32> {
        self.shared.wait(Some(Instant::now())).ok().flatten()
    }

    /// Waits for the child to exit; returns its exit code.
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # #[worker] fn quick() {}
    /// let mut p = Process::new(quick, ());
    /// p.start()?;
    /// let child = p.handle().unwrap();
    /// assert_eq!(child.join()?, 0);
    /// assert_eq!(child.join()?, 0); // again: the same code
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join(&self) -> Result<i32> {
        match self.shared.wait(None)? {
            Some(code) => Ok(code),
            None => unreachable!("a wait without deadline returns only when the child exited"),
        }
    }

    /// Waits at most `timeout`; `None` if the child is still running.
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # use std::time::Duration;
    /// # #[worker] fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)); }
    /// let mut p = Process::new(nap, (60_000,));
    /// p.start()?;
    /// let child = p.handle().unwrap();
    /// assert_eq!(child.join_timeout(Duration::from_millis(10))?, None);
    /// child.kill()?;
    /// assert_eq!(child.join_timeout(Duration::from_secs(30))?, Some(-9));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>> {
        let deadline = Instant::now().checked_add(timeout);
        Ok(self
            .shared
            .wait(Some(deadline.unwrap_or_else(far_future)))?)
    }

    /// Sends `SIGTERM` (nothing if the child has exited).
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # #[worker] fn nap(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)); }
    /// let mut p = Process::new(nap, (60_000,));
    /// p.start()?;
    /// let child = p.handle().unwrap();
    /// child.terminate()?;
    /// assert_eq!(child.join()?, -15);
    /// child.terminate()?; // it has exited: nothing happens
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn terminate(&self) -> Result<()> {
        Ok(self.shared.signal(libc::SIGTERM)?)
    }

    /// A descriptor that becomes readable when the child exits (a duplicate
    /// of its pidfd, for `wait`), or `None` once it has been reaped or where
    /// the kernel has no pidfds.
    /// Duplicates of what a join waits on: the pidfd, and the spawn socket
    /// until its end of file (its outcome is read as it comes, so that a
    /// large one does not stall the child). Empty once reaped, or on a
    /// kernel without pidfds (then the child is looked at in slices).
    #[cfg(feature = "tokio")]
    pub(crate) fn join_fds(&self) -> io::Result<Vec<OwnedFd>> {
        let fds = self.shared.fds.read().unwrap_or_else(|e| e.into_inner());
        let Some((fds, pidfd)) = fds.as_ref().and_then(|f| Some((f, f.pidfd.as_ref()?))) else {
            return Ok(Vec::new());
        };
        let mut out = vec![pidfd.try_clone()?];
        if !self.shared.lock_state().eof {
            out.push(fds.conn.as_fd().try_clone_to_owned()?);
        }
        Ok(out)
    }

    pub(crate) fn pidfd_dup(&self) -> Option<OwnedFd> {
        let fds = self.shared.fds.read().unwrap_or_else(|e| e.into_inner());
        fds.as_ref()?.pidfd.as_ref()?.try_clone().ok()
    }

    /// A descriptor that polls readable once the child has exited, as
    /// [`Process::sentinel`]; every handle to the child shares it, and it
    /// stays open while one of them exists. An [`Error::Io`] of kind
    /// `Unsupported` on a kernel without pidfds.
    ///
    /// ```
    /// use multiproc::{Process, worker};
    /// use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    ///
    /// #[worker]
    /// fn quick() {}
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(quick, ());
    /// p.start()?;
    /// let child = p.handle().unwrap();
    /// assert_eq!(child.join()?, 0);
    /// let mut fds = [PollFd::new(child.sentinel()?, PollFlags::POLLIN)];
    /// assert_eq!(poll(&mut fds, PollTimeout::ZERO)?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sentinel(&self) -> Result<BorrowedFd<'_>> {
        Ok(self.shared.sentinel()?)
    }

    /// Sends `SIGKILL` (nothing if the child has exited).
    ///
    /// ```
    /// # use multiproc::{Process, worker};
    /// # #[worker] fn nap(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)); }
    /// let mut p = Process::new(nap, (60_000,));
    /// p.start()?;
    /// let child = p.handle().unwrap();
    /// child.kill()?;
    /// assert_eq!(child.join()?, -9);
    /// assert_eq!(p.exitcode(), Some(-9));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn kill(&self) -> Result<()> {
        Ok(self.shared.signal(libc::SIGKILL)?)
    }

    /// For a pool: the limit that explains this child's death by `signal`
    /// (see `Shared::limit_hit`), after it was reaped.
    pub(crate) fn limit_hit(&self, signal: i32) -> Option<Limited> {
        let inbox = self.shared.lock_state().inbox.clone();
        self.shared.limit_hit(signal, &inbox)
    }

    /// For a pool: why the child could not start its worker, if it said so
    /// (a start hook that panicked), after it was reaped.
    pub(crate) fn setup_failure(&self) -> Option<String> {
        let state = self.shared.lock_state();
        let (frames, _) = codec::split_frames(&state.inbox, MAX_FRAME).ok()?;
        match codec::decode::<Outcome>(frames.first()?).ok()? {
            Outcome::SetupFailed {
                worker,
                message,
                location,
            } => Some(format!(
                "{worker} failed in process {}{}: {message}",
                self.pid(),
                location.map(|l| format!(" at {l}")).unwrap_or_default()
            )),
            _ => None,
        }
    }

    /// Sends `signal` through the pidfd (nothing if the child was reaped).
    pub(crate) fn send_signal(&self, signal: libc::c_int) -> Result<()> {
        Ok(self.shared.signal(signal)?)
    }
}

/// A descriptor that polls readable from the start and forever: an
/// eventfd holding 1 (nobody reads it), close-on-exec.
pub(crate) fn readable_fd() -> io::Result<OwnedFd> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    let fd = EventFd::from_value_and_flags(1, EfdFlags::EFD_CLOEXEC)?;
    Ok(OwnedFd::from(fd))
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// Children started by this process and not yet reaped: what
/// [`active_children`] lists and what exit handling joins.
static CHILDREN: Mutex<Vec<Arc<Shared>>> = Mutex::new(Vec::new());

fn children() -> MutexGuard<'static, Vec<Arc<Shared>>> {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

/// The children of this process that are still running (finished ones are
/// reaped on the way, as in Python).
///
/// ```
/// assert!(multiproc::active_children().iter().all(|c| c.is_alive()));
/// ```
pub fn active_children() -> Vec<ChildProcess> {
    let all = children().clone();
    all.into_iter()
        .map(|shared| ChildProcess { shared })
        .filter(ChildProcess::is_alive)
        .collect()
}

/// Reaps every registered child that has exited, as Python's `start()` does
/// (`_cleanup()`), and reads what running ones have sent (so a child writing
/// a result nobody waits for is not left blocked). A reaped child leaves the
/// registry and closes its descriptors; its exit code and outcome stay in its
/// `Shared` for any handle still held, and go with the last one.
fn reap_finished() {
    let all = children().clone();
    for child in all {
        // A zero deadline: one poll of the pidfd and socket, no waiting.
        let _ = child.wait(Some(Instant::now()));
    }
}

/// In a child forked from this process: the parent's children are not
/// ours. Forget them without closing or signalling anything.
pub(crate) fn forget_children() {
    std::mem::forget(std::mem::take(&mut *children()));
}

/// Python's exit handling: terminate daemon children, then join them all.
/// Runs at normal exit of any process that started children, and at the end
/// of a worker in a child.
pub(crate) fn exit_children() {
    let all = children().clone();
    for child in all.iter().filter(|c| c.daemon) {
        let _ = child.signal(libc::SIGTERM);
    }
    for child in &all {
        let _ = child.wait(None);
    }
}

extern "C" fn exit_hook() {
    // Never unwind into libc.
    let _ = std::panic::catch_unwind(exit_children);
}

/// State shared by every handle to one child.
struct Shared {
    pid: Pid,
    name: String,
    daemon: bool,
    /// The resource limits it was given.
    limits: Vec<Limit>,
    /// The pidfd and our end of the spawn socket; `None` once reaped. Pollers
    /// hold the read lock, so the descriptors stay open while they wait.
    fds: RwLock<Option<Fds>>,
    state: Mutex<State>,
    /// What [`Process::sentinel`] lends: a duplicate of the pidfd, made on
    /// first use, or a descriptor that is readable already if the child was
    /// reaped before that.
    sentinel: OnceLock<OwnedFd>,
}

struct Fds {
    pidfd: Option<OwnedFd>,
    conn: Conn,
}

#[derive(Default)]
struct State {
    exitcode: Option<i32>,
    /// Everything the child sent on the spawn socket (its outcome frames).
    inbox: Vec<u8>,
    /// The child closed its end: stop polling the socket (it would stay
    /// readable and turn the wait into a spin).
    eof: bool,
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sentinel(&self) -> io::Result<BorrowedFd<'_>> {
        if let Some(fd) = self.sentinel.get() {
            return Ok(fd.as_fd());
        }
        let fd = {
            let fds = self.fds.read().unwrap_or_else(|e| e.into_inner());
            match fds.as_ref() {
                Some(Fds {
                    pidfd: Some(pidfd), ..
                }) => pidfd.try_clone()?,
                Some(Fds { pidfd: None, .. }) => {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "this kernel has no pidfds (they came in Linux 5.3), so a child has \
                         no sentinel",
                    ));
                }
                // Reaped: the pidfd is gone, and the child has exited.
                None => readable_fd()?,
            }
        };
        Ok(self.sentinel.get_or_init(|| fd).as_fd())
    }

    /// Waits until the child exits or `deadline` passes, reading what it sends
    /// meanwhile (so a child writing a large result never blocks on us).
    fn wait(&self, deadline: Option<Instant>) -> io::Result<Option<i32>> {
        loop {
            let eof = {
                let state = self.lock_state();
                if let Some(code) = state.exitcode {
                    return Ok(Some(code));
                }
                state.eof
            };
            let reaped = {
                let fds = self.fds.read().unwrap_or_else(|e| e.into_inner());
                let Some(fds) = fds.as_ref() else {
                    continue; // reaped meanwhile: the exit code is set
                };
                let mut timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if fds.pidfd.is_none() {
                    // No pidfd: poll the exit status every few milliseconds.
                    let slice = Duration::from_millis(5);
                    timeout = Some(timeout.map_or(slice, |t| t.min(slice)));
                }
                let (exited, readable) = poll_child(fds, !eof, timeout)?;
                if readable {
                    let mut state = self.lock_state();
                    state.eof = fds.conn.drain_into(&mut state.inbox)?;
                }
                if exited || fds.pidfd.is_none() {
                    self.try_reap(fds)?
                } else {
                    None
                }
            };
            if let Some(code) = reaped {
                self.release();
                // In a root that collects children's logs: the child's last
                // records are re-emitted before its exit is reported.
                crate::logs::flush();
                return Ok(Some(code));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    fn try_reap(&self, fds: &Fds) -> io::Result<Option<i32>> {
        let mut state = self.lock_state();
        if let Some(code) = state.exitcode {
            return Ok(Some(code));
        }
        let code = match nix::sys::wait::waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => code,
            Ok(WaitStatus::Signaled(_, signal, _)) => -(signal as i32),
            Ok(_) => return Ok(None),
            // Reaped behind our back (SIGCHLD ignored, or a foreign waitpid(-1)):
            // the status is lost.
            Err(Errno::ECHILD) => 255,
            Err(Errno::EINTR) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // Everything the child wrote before exiting is in the socket now.
        fds.conn.drain_into(&mut state.inbox)?;
        state.exitcode = Some(code);
        Ok(Some(code))
    }

    /// After reaping: close the descriptors and forget the child.
    fn release(self: &Shared) {
        *self.fds.write().unwrap_or_else(|e| e.into_inner()) = None;
        children().retain(|c| !std::ptr::eq(Arc::as_ptr(c), self));
    }

    /// The limit that explains death by `signal`, if one does: `SIGABRT`
    /// after the abort handler's note (an allocation failed) under a memory
    /// limit, or `SIGXCPU` under a CPU limit. `inbox` is what the child sent.
    fn limit_hit(&self, signal: i32, inbox: &[u8]) -> Option<Limited> {
        match signal {
            libc::SIGABRT => {
                let limit = setup::memory_limit(&self.limits)?;
                let (frames, _) = codec::split_frames(inbox, MAX_FRAME).ok()?;
                let noted = frames
                    .iter()
                    .any(|f| matches!(codec::decode::<Outcome>(f), Ok(Outcome::AllocationFailed)));
                noted.then_some(Limited::Memory {
                    resource: limit.resource,
                    limit: limit.soft,
                })
            }
            libc::SIGXCPU => self
                .limits
                .iter()
                .find(|l| l.resource == Resource::Cpu && l.soft != Resource::UNLIMITED)
                .map(|l| Limited::Cpu { seconds: l.soft }),
            _ => None,
        }
    }

    fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        let fds = self.fds.read().unwrap_or_else(|e| e.into_inner());
        let Some(fds) = fds.as_ref() else {
            return Ok(()); // already reaped
        };
        let result = match &fds.pidfd {
            Some(pidfd) => sys::proc::pidfd_send_signal(pidfd.as_fd(), signal),
            // Not reaped yet (we hold the lock), so the pid is still ours.
            None => nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::try_from(signal)?)
                .map_err(io::Error::from),
        };
        match result {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            other => other,
        }
    }
}

/// Polls the pidfd and (if `watch_conn`) the socket; returns (exited, readable).
fn poll_child(fds: &Fds, watch_conn: bool, timeout: Option<Duration>) -> io::Result<(bool, bool)> {
    let timeout = match timeout {
        None => PollTimeout::NONE,
        // Round up, so a short wait does not spin at zero.
        Some(t) => PollTimeout::try_from(t.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX),
    };
    // POLLHUP is reported whatever the events asked for, so an unwatched
    // socket must be left out entirely.
    let mut polled = Vec::with_capacity(2);
    if watch_conn {
        polled.push(PollFd::new(fds.conn.as_fd(), PollFlags::POLLIN));
    }
    if let Some(pidfd) = &fds.pidfd {
        polled.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
    }
    match nix::poll::poll(&mut polled, timeout) {
        Ok(_) => {}
        Err(Errno::EINTR) => return Ok((false, false)),
        Err(e) => return Err(e.into()),
    }
    let ready = |p: &PollFd<'_>| p.revents().is_some_and(|r| !r.is_empty());
    let readable = watch_conn && ready(&polled[0]);
    let exited = fds.pidfd.is_some() && polled.last().is_some_and(ready);
    Ok((exited, readable))
}

/// What goes down the spawn socket: the header, the handles' descriptors
/// (the initializer's first), the initializer's arguments, the arguments.
struct Payload<'a> {
    header: &'a [u8],
    init: Option<&'a [u8]>,
    args: &'a [u8],
    fds: &'a [BorrowedFd<'a>],
}

/// The largest payload sent before its child exists: far below a Unix
/// socket's buffer (≈ 200 KiB), so that sending it never blocks.
const EARLY_PAYLOAD: usize = 32 << 10;

impl Payload<'_> {
    fn len(&self) -> usize {
        self.header.len() + self.init.map_or(0, <[u8]>::len) + self.args.len() + 8 * 3
    }
}

/// Sends the payload down the spawn socket: the header, the descriptors,
/// the initializer's arguments, the arguments.
fn send_payload(conn: &Conn, payload: &Payload<'_>) -> io::Result<()> {
    if payload.fds.is_empty() && payload.init.is_none() {
        // One write: each write wakes the child.
        return conn.send_frames(&[payload.header, payload.args]);
    }
    conn.send_frame(payload.header)?;
    for batch in payload.fds.chunks(sys::fdpass::MAX_FDS_PER_MESSAGE) {
        sys::fdpass::send_fds(conn.as_fd(), batch)?;
    }
    match payload.init {
        Some(init) => conn.send_frames(&[init, payload.args]),
        None => conn.send_frame(payload.args),
    }
}

fn spawn(
    method: StartMethod,
    payload: Payload<'_>,
    prepared: setup::Prepared,
    limits: &[Limit],
    name: String,
    daemon: bool,
) -> Result<(Arc<Shared>, [Option<OwnedFd>; 3])> {
    static EXIT_HOOK: Once = Once::new();
    EXIT_HOOK.call_once(|| {
        crate::protocol::register_parent_side(crate::protocol::ParentSide {
            at_worker_end: exit_children,
            after_fork: forget_children,
        });
        sys::startup::at_exit(exit_hook);
    });
    if std::env::var_os(MARKER).is_some() {
        // We are a child whose dispatch never ran; re-executing would recurse.
        return Err(Error::Spawn(io::Error::other(format!(
            "{MARKER} is set in this process's environment, so it would start itself \
             again instead of a worker; unset it"
        ))));
    }

    let (ours, theirs) = Conn::pair().map_err(Error::Spawn)?;
    // A payload that fits in the socket's buffer goes before the child
    // exists, so that it finds it at once instead of waiting to be woken
    // for it; but never ahead of limits, which must be in place before the
    // child can run anything.
    let early = limits.is_empty() && payload.len() <= EARLY_PAYLOAD;
    if early {
        send_payload(&ours, &payload).map_err(Error::Spawn)?;
    }
    let job = start::Job {
        envp: prepared.envp,
        socket: theirs.into_fd(),
        stdio: prepared.stdio,
        cwd: prepared.cwd,
    };
    let pid = start::launch(method, job)?;
    let pid = Pid::from_raw(pid);
    let pidfd = sys::proc::pidfd_open(pid.as_raw()).map_err(Error::Spawn)?;

    let shared = Arc::new(Shared {
        pid,
        name,
        daemon,
        limits: limits.to_vec(),
        fds: RwLock::new(Some(Fds { pidfd, conn: ours })),
        state: Mutex::new(State::default()),
        sentinel: OnceLock::new(),
    });
    children().push(shared.clone());
    let stop = |shared: &Shared| {
        let _ = shared.signal(libc::SIGKILL);
        let _ = shared.wait(None);
    };
    // With limits, the child waits for its payload, so it has run nothing
    // of the program yet: a refused limit stops it here.
    if let Err(e) = setup::apply_limits(pid.as_raw(), limits) {
        stop(&shared);
        return Err(e);
    }

    let fds = shared.fds.read().unwrap_or_else(|e| e.into_inner());
    let conn = &fds.as_ref().expect("not reaped before start returns").conn;
    match if early {
        Ok(())
    } else {
        send_payload(conn, &payload)
    } {
        Ok(()) => {}
        // The child died before reading its payload; its exit code tells why.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) => {}
        Err(e) => {
            drop(fds);
            stop(&shared);
            return Err(Error::Spawn(e));
        }
    }
    drop(fds);
    Ok((shared, prepared.pipes))
}

impl Sealed for ChildProcess {}

/// Ready once the child has exited (Python's `sentinel`).
impl Waitable for ChildProcess {
    fn wait_fd(&self) -> Option<WaitFd<'_>> {
        self.pidfd_dup().map(WaitFd::owned)
    }

    fn ready_now(&self) -> bool {
        self.exitcode().is_some()
    }
}

impl<W: Worker> Sealed for Process<W> {}

/// Ready once the child has exited; a process not yet started is never
/// ready.
impl<W: Worker> Waitable for Process<W> {
    fn wait_fd(&self) -> Option<WaitFd<'_>> {
        self.handle()?.pidfd_dup().map(WaitFd::owned)
    }

    fn ready_now(&self) -> bool {
        self.exitcode().is_some()
    }
}
