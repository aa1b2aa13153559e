//! The start-up protocol between a parent and the child it starts, below
//! both sides (`process`, the parent's; `child`, the child's) and whatever
//! starts the process: the marker in the environment, the spawn header, the
//! outcome the child reports, and how a child's panics are captured.

pub(crate) mod panics;

use crate::logs::LogLink;
use serde::{Deserialize, Serialize};

/// What the parent side (`process`, above this module) has the start-up
/// path (`child`, `start`, beside or below it) do at two moments of a
/// child's life, so that the start-up path never names it: set by the
/// first start in a process, which is the first time there is anything to
/// do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParentSide {
    /// At the end of a child's worker: Python's exit handling for the
    /// child's own children.
    pub(crate) at_worker_end: fn(),
    /// In a child made by fork: forget the parent's children.
    pub(crate) after_fork: fn(),
}

static PARENT_SIDE: std::sync::OnceLock<ParentSide> = std::sync::OnceLock::new();

pub(crate) fn register_parent_side(side: ParentSide) {
    let _ = PARENT_SIDE.set(side);
}

/// Runs [`ParentSide::at_worker_end`], if a start registered it.
pub(crate) fn at_worker_end() {
    if let Some(side) = PARENT_SIDE.get() {
        (side.at_worker_end)();
    }
}

/// Runs [`ParentSide::after_fork`], if a start registered it.
pub(crate) fn after_fork() {
    if let Some(side) = PARENT_SIDE.get() {
        (side.after_fork)();
    }
}

/// The environment variable that tells a re-executed binary it is a child.
pub(crate) const MARKER: &str = "MULTIPROC_CHILD";

pub(crate) const MAGIC: [u8; 4] = *b"MPRC";
pub(crate) const VERSION: u16 = 3;

/// The largest spawn header a child reads. It is read before its magic is
/// checked, so this bounds what a stranger's socket can make a child allocate.
pub(crate) const MAX_HEADER: usize = 1 << 20;
/// The longest process name `start()` accepts, in bytes. A header carries the
/// child's name and its parent's (each at most this), the worker's name and
/// the child's path: with names of 64 KiB it stays far below [`MAX_HEADER`].
pub(crate) const MAX_NAME: usize = 64 << 10;

/// The first frame on the spawn socket; the argument bytes follow as a
/// second frame.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SpawnHeader {
    magic: [u8; 4],
    version: u16,
    pub(crate) worker: String,
    pub(crate) name: String,
    pub(crate) path: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent_pid: u32,
    pub(crate) parent_name: String,
    /// Descriptors of the handles in the arguments (the initializer's
    /// first), sent with `SCM_RIGHTS` between the header and the argument
    /// frames.
    pub(crate) fds: u32,
    /// The start hooks to run first (`on_child_start`), by worker name.
    pub(crate) hooks: Vec<String>,
    /// The initializer's worker; its arguments come as a frame before the
    /// worker's.
    pub(crate) init: Option<String>,
    /// How many of `fds` are the initializer's.
    pub(crate) init_fds: u32,
    /// The child has a memory limit: note an allocation failure's abort.
    pub(crate) memory_note: bool,
    /// Forward logs to the descriptor that comes last among `fds`.
    pub(crate) logs: Option<LogLink>,
    /// The child's authkey (`current_process().authkey()`).
    pub(crate) authkey: Vec<u8>,
}

impl SpawnHeader {
    /// Whether the header was written by this build's protocol (its magic
    /// and version are ours).
    pub(crate) fn is_current(&self) -> bool {
        self.magic == MAGIC && self.version == VERSION
    }

    pub(crate) fn new(
        worker: &str,
        name: &str,
        path: &[u32],
        daemon: bool,
        parent: (u32, String),
        fds: usize,
    ) -> Self {
        SpawnHeader {
            magic: MAGIC,
            version: VERSION,
            worker: worker.to_string(),
            name: name.to_string(),
            path: path.to_vec(),
            daemon,
            parent_pid: parent.0,
            parent_name: parent.1,
            fds: fds as u32,
            hooks: Vec::new(),
            init: None,
            init_fds: 0,
            memory_note: false,
            logs: None,
            authkey: Vec::new(),
        }
    }
}

/// What the child reports before exiting. After `Returned` comes a frame with
/// the encoded result.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome {
    Returned,
    Panicked {
        message: String,
        location: Option<String>,
    },
    UnknownWorker {
        name: String,
    },
    Failed {
        reason: String,
    },
    /// A start hook or the initializer failed; nothing else ran.
    SetupFailed {
        worker: String,
        message: String,
        location: Option<String>,
    },
    /// Written by the `SIGABRT` handler of a child with a memory limit when
    /// it aborts just after an allocation failed.
    AllocationFailed,
}
