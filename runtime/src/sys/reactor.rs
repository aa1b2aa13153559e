//! A descriptor in tokio's reactor (feature `tokio`).

use std::io;
use std::os::fd::OwnedFd;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers `fd` with the current tokio runtime's reactor for `interest`.
/// Panics outside a tokio runtime, as tokio's own types do.
pub(crate) fn watch(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `AsyncFd` owns `fd`: an `OwnedFd` is open, refers to the
    // same file description and returns the same number from `as_raw_fd`
    // until it is dropped, which happens only with (after) the `AsyncFd`.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}
