//! Who this process is: `current_process()`, `parent_process()`, `cpu_count()`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// This process's place in the tree, fixed before any user code runs.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) name: String,
    /// `[]` in the main process, `[1]` in `Process-1`, `[1, 2]` in `Process-1:2`.
    pub(crate) path: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent: Option<(u32, String)>,
}

static IDENTITY: OnceLock<Identity> = OnceLock::new();
static NEXT_CHILD: AtomicU32 = AtomicU32::new(1);

pub(crate) fn identity() -> &'static Identity {
    IDENTITY.get_or_init(|| Identity {
        name: "MainProcess".to_string(),
        path: Vec::new(),
        daemon: false,
        parent: None,
    })
}

/// Called once in a child, before the worker runs.
pub(crate) fn set_identity(identity: Identity) {
    let _ = IDENTITY.set(identity);
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
    pub fn name(&self) -> &'static str {
        &self.identity.name
    }

    /// This process's id.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Whether the parent started this process as a daemon.
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
#[derive(Debug, Clone, Copy)]
pub struct ParentProcess {
    pid: u32,
    name: &'static str,
}

impl ParentProcess {
    /// The parent's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The parent's name (`MainProcess`, `Process-1`, ...).
    pub fn name(&self) -> &'static str {
        self.name
    }
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
