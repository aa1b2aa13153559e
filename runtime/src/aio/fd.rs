//! Descriptors in tokio's reactor: what a future waits on when the object
//! has a descriptor (a socket, a pidfd, an eventfd, an epoll set).

use crate::sys::reactor::watch;
use crate::wait::Waitable;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;
use tokio::io::Interest;

/// How often an object with no descriptor to watch is looked at again (as
/// [`wait`](crate::wait) does).
const SLICE: Duration = Duration::from_millis(5);

/// Waits until `fd` polls ready for `interest`. The reactor watches a
/// duplicate, so the same descriptor can be awaited by several futures at
/// once (epoll refuses one descriptor twice).
pub(crate) async fn ready_fd(fd: BorrowedFd<'_>, interest: Interest) -> io::Result<()> {
    let watched = watch(fd.try_clone_to_owned()?, interest)?;
    if interest.is_writable() {
        let _ = watched.writable().await?;
    } else {
        let _ = watched.readable().await?;
    }
    Ok(())
}

/// Waits until `object` is ready as [`wait`](crate::wait) means it: what
/// the call it stands for (a receive, a join, a get) would do at once.
pub(crate) async fn ready<W: Waitable + ?Sized>(object: &W) -> io::Result<()> {
    struct Armed<'a, W: Waitable + ?Sized>(&'a W);
    impl<W: Waitable + ?Sized> Drop for Armed<'_, W> {
        fn drop(&mut self) {
            self.0.disarm();
        }
    }
    object.arm();
    let _armed = Armed(object);
    loop {
        if object.ready_now() {
            return Ok(());
        }
        match object.wait_fd() {
            Some(fd) => {
                ready_fd(fd.as_fd(), Interest::READABLE).await?;
                if !object.ready_now() {
                    object.clear_spurious();
                }
            }
            None => tokio::time::sleep(SLICE).await,
        }
    }
}
