//! `wait`: readiness over connections, queues and process sentinels
//! together, Python's `multiprocessing.connection.wait`.
//!
//! Level-triggered: an object is ready while the call it stands for (a
//! receive, a join) would return at once, however often you ask. Each object
//! says whether it is ready now and names a descriptor that becomes readable
//! when it may have become ready; `wait` checks, polls them all, and checks
//! again.

use crate::error::Result;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often objects that have no descriptor to poll are checked again.
const SLICE: Duration = Duration::from_millis(5);

mod sealed {
    /// Only this crate's types are [`Waitable`](super::Waitable).
    pub trait Sealed {}
}

pub(crate) use sealed::Sealed;

/// Something [`wait`] can watch: [`Connection`](crate::Connection),
/// [`PipeReader`](crate::PipeReader), [`Process`](crate::Process) and
/// [`ChildProcess`](crate::ChildProcess) (ready once the child has exited),
/// queues, a [`Listener`](crate::Listener), and references to any of them,
/// `&dyn Waitable` included. Sealed: only this crate implements it, and its
/// methods are internal.
///
/// ```
/// use multiproc::{Pipe, Waitable};
/// let (a, b) = Pipe::<u8>::new()?;
/// let objects: [&dyn Waitable; 2] = [&a, &b];
/// a.send(&1)?;
/// assert_eq!(multiproc::wait(&objects, Some(std::time::Duration::ZERO))?, [1]);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Descriptors
///
/// Python's `wait` also takes anything with a `fileno()`. Here std's
/// descriptor types are `Waitable` too, ready while they poll readable
/// (data, a pending connection, end of file, an error), as Python's
/// `select` sees them: [`OwnedFd`], [`BorrowedFd`], [`File`](std::fs::File),
/// [`Stdin`](std::io::Stdin), [`TcpListener`](std::net::TcpListener),
/// [`TcpStream`](std::net::TcpStream), [`UdpSocket`](std::net::UdpSocket),
/// [`UnixListener`](std::os::unix::net::UnixListener), [`UnixStream`],
/// [`UnixDatagram`](std::os::unix::net::UnixDatagram),
/// [`ChildStdout`](std::process::ChildStdout) and
/// [`ChildStderr`](std::process::ChildStderr). Any other type that is
/// [`AsFd`] (`std::io::PipeReader`, a socket of another crate) takes part
/// through its [`as_fd()`](AsFd::as_fd), a `BorrowedFd`. `wait` never reads
/// from them: it only says which would not block.
///
/// ```
/// use multiproc::{Process, Waitable, wait, worker};
/// use std::io::Write;
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// use std::time::Duration;
///
/// #[worker]
/// fn nap() {
///     std::thread::sleep(Duration::from_millis(10));
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let (mut a, b) = UnixStream::pair()?;
/// let (c, _d) = UnixStream::pair()?;
/// let mut p = Process::new(nap, ());
/// p.start()?;
/// a.write_all(b"hi")?;
/// let objects: [&dyn Waitable; 3] = [&b, &c.as_fd(), &p];
/// assert_eq!(wait(&objects, Some(Duration::from_secs(30)))?[0], 0);
/// p.join()?;
/// assert_eq!(wait(&objects, Some(Duration::from_secs(30)))?, [0, 2]);
/// # Ok(())
/// # }
/// ```
pub trait Waitable: Sealed {
    /// A descriptor that polls readable (`POLLIN`) when the object may have
    /// become ready; `None` if there is none (then `wait` checks
    /// [`ready_now`](Self::ready_now) every few milliseconds).
    #[doc(hidden)]
    fn wait_fd(&self) -> Option<WaitFd<'_>>;

    /// Whether the object is ready now, without blocking: a whole message
    /// buffered or arrived, an exited child, a non-empty queue.
    #[doc(hidden)]
    fn ready_now(&self) -> bool;

    /// Called once before a `wait` polls (a queue registers a poller here, so
    /// producers signal its descriptor).
    #[doc(hidden)]
    fn arm(&self) {}

    /// Undoes [`arm`](Self::arm) when the `wait` returns.
    #[doc(hidden)]
    fn disarm(&self) {}

    /// Called when [`wait_fd`](Self::wait_fd) polled readable but
    /// [`ready_now`](Self::ready_now) said no: the object must make its
    /// descriptor stop polling readable unless it is ready, or `wait` spins.
    #[doc(hidden)]
    fn clear_spurious(&self) {}
}

/// A descriptor to poll, borrowed from the object or kept open by it.
#[doc(hidden)]
pub struct WaitFd<'a>(FdRef<'a>);

enum FdRef<'a> {
    Borrowed(BorrowedFd<'a>),
    Owned(OwnedFd),
    Stream(Arc<UnixStream>),
}

impl<'a> WaitFd<'a> {
    /// A descriptor the object owns for at least `'a`.
    pub(crate) fn borrowed(fd: BorrowedFd<'a>) -> Self {
        WaitFd(FdRef::Borrowed(fd))
    }

    /// A descriptor of its own (a duplicate), closed after the poll.
    pub(crate) fn owned(fd: OwnedFd) -> Self {
        WaitFd(FdRef::Owned(fd))
    }

    pub(crate) fn stream(stream: Arc<UnixStream>) -> Self {
        WaitFd(FdRef::Stream(stream))
    }
}

impl AsFd for WaitFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.0 {
            FdRef::Borrowed(fd) => fd.as_fd(),
            FdRef::Owned(fd) => fd.as_fd(),
            FdRef::Stream(stream) => stream.as_fd(),
        }
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes
/// (`None`: no limit): Python's `multiprocessing.connection.wait`. Returns
/// the indices of *all* the objects ready at that moment, in order; empty
/// after the timeout. A zero timeout checks and answers at once.
///
/// Level-triggered: a connection is ready while a whole message (or an
/// error, such as `Closed`) is waiting for `recv`, and stays ready until it is
/// received; a process is ready once it has exited. Only a [`PipeReader`](crate::PipeReader) or
/// a [`Connection`](crate::Connection) can be waited on, not a [`PipeWriter`](crate::PipeWriter).
/// Sockets, pipes and other descriptors can be mixed in (see
/// [`Waitable`]'s list); they are ready while they poll readable.
/// Waiting on nothing with no timeout waits forever, as in Python.
///
/// ```
/// use multiproc::{Pipe, PipeWriter, Process, Waitable, wait, worker};
/// use std::time::Duration;
///
/// #[worker]
/// fn reply_after(tx: PipeWriter<u32>, ms: u64) {
///     std::thread::sleep(Duration::from_millis(ms));
///     tx.send(&7).unwrap();
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let (rx, tx) = Pipe::one_way()?;
/// let mut p = Process::new(reply_after, (tx, 50));
/// p.start()?;
/// // Nothing yet: a zero timeout answers at once.
/// assert!(wait(&[&rx as &dyn Waitable, &p], Some(Duration::ZERO))?.is_empty());
/// // The message arrives first (index 0); the child exits right after.
/// let ready = wait(&[&rx as &dyn Waitable, &p], Some(Duration::from_secs(30)))?;
/// assert_eq!(ready[0], 0);
/// assert_eq!(rx.recv()?, 7);
/// assert_eq!(wait(&[&p], Some(Duration::from_secs(30)))?, [0]);
/// # Ok(())
/// # }
/// ```
pub fn wait<W: Waitable>(objects: &[W], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    for object in objects {
        object.arm();
    }
    let _armed = Armed(objects);
    let mut fired: Vec<usize> = Vec::new();
    loop {
        let ready: Vec<usize> = (0..objects.len())
            .filter(|&i| objects[i].ready_now())
            .collect();
        if !ready.is_empty() {
            return Ok(ready);
        }
        for &i in &fired {
            objects[i].clear_spurious();
        }
        let mut left = match deadline {
            None => None,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(Vec::new()),
            },
        };
        let fds: Vec<(usize, WaitFd<'_>)> = objects
            .iter()
            .enumerate()
            .filter_map(|(i, object)| Some((i, object.wait_fd()?)))
            .collect();
        if fds.len() < objects.len() {
            left = Some(left.map_or(SLICE, |l| l.min(SLICE)));
        }
        let mut polled: Vec<PollFd<'_>> = fds
            .iter()
            .map(|(_, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        let timeout = match left {
            None => PollTimeout::NONE,
            // Round up, so a short wait does not spin at zero.
            Some(t) => {
                PollTimeout::try_from(t.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX)
            }
        };
        match nix::poll::poll(&mut polled, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        fired = polled
            .iter()
            .zip(&fds)
            .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, (i, _))| *i)
            .collect();
    }
}

/// Disarms the objects when `wait` returns, however it returns.
struct Armed<'a, W: Waitable>(&'a [W]);

impl<W: Waitable> Drop for Armed<'_, W> {
    fn drop(&mut self) {
        for object in self.0 {
            object.disarm();
        }
    }
}

impl<T: Waitable + ?Sized> Sealed for &T {}

impl<T: Waitable + ?Sized> Waitable for &T {
    fn wait_fd(&self) -> Option<WaitFd<'_>> {
        (**self).wait_fd()
    }

    fn ready_now(&self) -> bool {
        (**self).ready_now()
    }

    fn arm(&self) {
        (**self).arm()
    }

    fn disarm(&self) {
        (**self).disarm()
    }

    fn clear_spurious(&self) {
        (**self).clear_spurious()
    }
}

/// Whether `fd` polls readable now (or hung up, or failed: whatever would
/// make a read return at once).
fn readable_now(fd: BorrowedFd<'_>) -> bool {
    let mut polled = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(nix::poll::poll(&mut polled, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// std's descriptor types: ready while they poll readable.
macro_rules! waitable_fds {
    ($($t:ty),* $(,)?) => {$(
        impl Sealed for $t {}

        /// Ready while the descriptor polls readable (data, a pending
        /// connection, end of file or an error): a read would not block.
        impl Waitable for $t {
            fn wait_fd(&self) -> Option<WaitFd<'_>> {
                Some(WaitFd::borrowed(self.as_fd()))
            }

            fn ready_now(&self) -> bool {
                readable_now(self.as_fd())
            }
        }
    )*};
}

waitable_fds!(
    OwnedFd,
    BorrowedFd<'_>,
    std::fs::File,
    std::io::Stdin,
    std::net::TcpListener,
    std::net::TcpStream,
    std::net::UdpSocket,
    std::os::unix::net::UnixListener,
    UnixStream,
    std::os::unix::net::UnixDatagram,
    std::process::ChildStdout,
    std::process::ChildStderr,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pipe;

    #[test]
    fn level_triggered_and_all_ready() {
        let (a, b) = Pipe::<u8>::new().unwrap();
        let (c, d) = Pipe::<u8>::new().unwrap();
        let objects = [&a, &b, &c, &d];
        assert!(wait(&objects, Some(Duration::ZERO)).unwrap().is_empty());
        b.send(&1).unwrap();
        c.send(&2).unwrap();
        let t = Some(Duration::from_secs(5));
        assert_eq!(wait(&objects, t).unwrap(), [0, 3]);
        assert_eq!(wait(&objects, t).unwrap(), [0, 3]);
        assert_eq!(a.recv().unwrap(), 1);
        assert_eq!(wait(&objects, t).unwrap(), [3]);
        c.close();
        assert_eq!(d.recv().unwrap(), 2);
        // `c` is closed and `d`'s peer is gone: `recv` fails at once on both.
        assert_eq!(wait(&objects, t).unwrap(), [2, 3]);
    }

    #[test]
    fn a_timeout_gives_nothing_after_about_that_long() {
        let (a, _b) = Pipe::<u8>::new().unwrap();
        let start = Instant::now();
        assert!(
            wait(&[&a], Some(Duration::from_millis(30)))
                .unwrap()
                .is_empty()
        );
        assert!(start.elapsed() >= Duration::from_millis(30));
    }
}
