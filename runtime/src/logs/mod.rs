//! Logs that reach the parent: records of the `log` crate and events of
//! `tracing`, emitted in any child, re-emitted in the root process.
//!
//! Compiled only with the features `log` and `tracing`; without them the
//! two functions below do nothing, and the core pulls neither crate.

use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;

/// What a child is told about forwarding: the parent's level filters, so
/// that records the parent would drop are never sent. 0 is off, 1 error ...
/// 5 trace.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct LogLink {
    pub(crate) log_level: u8,
    pub(crate) tracing_level: u8,
}

/// At each spawn, in the parent: the link for the child and the descriptor
/// it forwards to, or `None` when nothing is forwarded (features off, or
/// the parent has no logger and no subscriber).
pub(crate) fn for_child() -> Option<(LogLink, OwnedFd)> {
    None
}

/// In a child, before its start hooks: installs the forwarding logger and
/// subscriber.
pub(crate) fn start_in_child(link: LogLink, fd: OwnedFd) {
    let _ = (link, fd);
}
