//! Awaiting a process: `join_async`, `result_async`.

use super::fd::ready_fd;
use crate::error::Result;
use crate::process::{ChildProcess, Process};
use crate::registry::Worker;
use std::os::fd::AsFd;
use std::time::Duration;
use tokio::io::Interest;

/// How often a child is looked at on a kernel without pidfds.
const SLICE: Duration = Duration::from_millis(5);

impl ChildProcess {
    /// Awaits the child's exit and returns its exit code, as
    /// [`join`](Self::join) does, with its pidfd in tokio's reactor instead
    /// of a blocked thread (feature `tokio`). Dropping the future leaves the
    /// child running.
    ///
    /// ```
    /// use multiproc::{Process, worker};
    ///
    /// #[worker]
    /// fn leave(code: i32) {
    ///     std::process::exit(code)
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(leave, (4,));
    /// p.start()?;
    /// let child = p.handle().unwrap();
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// assert_eq!(runtime.block_on(child.join_async())?, 4);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn join_async(&self) -> Result<i32> {
        loop {
            if let Some(code) = self.join_timeout(Duration::ZERO)? {
                return Ok(code);
            }
            let fds = self.join_fds()?;
            if fds.is_empty() {
                tokio::time::sleep(SLICE).await;
                continue;
            }
            // Whichever comes first: the exit, or outcome bytes to read.
            let waits: Vec<_> = fds
                .iter()
                .map(|fd| Box::pin(ready_fd(fd.as_fd(), Interest::READABLE)))
                .collect();
            first_of(waits).await?;
        }
    }
}

/// The output of whichever of `futures` finishes first.
async fn first_of<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> F::Output {
    std::future::poll_fn(move |cx| {
        for f in &mut futures {
            if let std::task::Poll::Ready(out) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(out);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

impl<W: Worker> Process<W> {
    /// Awaits the child's exit and returns its exit code: the async
    /// [`join`](Self::join) (feature `tokio`; see
    /// [`ChildProcess::join_async`]).
    ///
    /// ```
    /// use multiproc::{Process, worker};
    ///
    /// #[worker]
    /// fn quick() {}
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(quick, ());
    /// p.start()?;
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// assert_eq!(runtime.block_on(p.join_async())?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn join_async(&self) -> Result<i32> {
        self.started()?.join_async().await
    }

    /// Awaits the child and returns what the worker returned: the async
    /// [`result`](Self::result), with the same errors (feature `tokio`).
    ///
    /// ```
    /// use multiproc::{Process, worker};
    ///
    /// #[worker]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let mut p = Process::new(square, (9,));
    /// p.start()?;
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// assert_eq!(runtime.block_on(p.result_async())?, 81);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn result_async(&self) -> Result<W::Output> {
        self.join_async().await?;
        self.result()
    }
}
