//! `Pipe`: typed two-way (or one-way) connections between processes,
//! Python's `multiprocessing.Pipe`.
//!
//! A pipe is a close-on-exec `SOCK_STREAM` socketpair carrying CPython's
//! frames (`multiprocessing.connection`): a 4-byte big-endian signed length,
//! then the body; a body longer than `i32::MAX` bytes has the length -1, then
//! an 8-byte big-endian length. A typed message's body is its postcard
//! encoding. So every connection, a pipe's or one that a
//! [`Listener`](crate::Listener) accepted, exchanges `send_bytes` and
//! `recv_bytes` with Python byte for byte. A receive never reads past the
//! frame in progress (its header, then exactly its body), so the next frame
//! stays in the socket for whichever process holding the end reads it, and
//! a timeout in the middle of a frame loses nothing: the part read waits in
//! the handle for the rest. `poll` takes nothing: it peeks the header and
//! counts the bytes queued. Descriptors (handles inside a message,
//! `send_handle`) travel with the first byte of their frame. A send is one
//! `sendmsg` (header and body together) under a per-handle mutex, so sends
//! from several threads never interleave.

mod ends;
mod error;
mod frame;
mod recv;
mod socket;
#[cfg(test)]
mod tests;

pub use ends::{Connection, PipeReader, PipeWriter};
pub use error::{RecvError, RecvTimeoutError, SendError, TryRecvError};

use socket::Inner;
use std::fmt;
use std::marker::PhantomData;

/// Creates pipes: Python's `multiprocessing.Pipe()`.
///
/// [`Pipe::new`] gives two [`Connection`]s, each of which can send and
/// receive; [`Pipe::one_way`] gives a [`PipeReader`] and a [`PipeWriter`]
/// (Python's `Pipe(duplex=False)`), and the wrong end cannot send or receive:
/// it has no such method. Messages are values of `T`, encoded with postcard;
/// message boundaries are kept.
///
/// ```
/// use multiproc::{Connection, Pipe, Process, worker};
///
/// #[worker]
/// fn double(conn: Connection<u64>) {
///     while let Ok(n) = conn.recv() {
///         conn.send(&(n * 2)).unwrap();
///     }
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let (here, there) = Pipe::new()?;
/// let mut p = Process::new(double, (there,)); // moved: the parent keeps no copy
/// p.start()?;
/// here.send(&21)?;
/// assert_eq!(here.recv()?, 42);
/// drop(here); // the child's `recv` now fails with `Closed`, and it returns
/// assert_eq!(p.join()?, 0);
/// # Ok(())
/// # }
/// ```
///
/// `Pipe<T>` only names the constructors; it has no values.
pub struct Pipe<T> {
    _items: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Pipe<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pipe")
    }
}

impl<T> Pipe<T> {
    /// A duplex pipe: two connected [`Connection`]s (Python's `Pipe()`).
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe::new()?;
    /// a.send(&"ping".to_string())?;
    /// assert_eq!(b.recv()?, "ping");
    /// b.send(&"pong".to_string())?;
    /// assert_eq!(a.recv()?, "pong");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    // Python's `Pipe()` returns a pair; so does `UnixStream::pair`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> crate::Result<(Connection<T>, Connection<T>)> {
        let (a, b) = Inner::pair()?;
        Ok((Connection::from_inner(a), Connection::from_inner(b)))
    }

    /// A one-way pipe: `(reader, writer)`, in the order of Python's
    /// `Pipe(duplex=False)` and of `std::io::pipe`.
    ///
    /// ```
    /// let (rx, tx) = multiproc::Pipe::one_way()?;
    /// tx.send(&[1u8, 2, 3])?;
    /// assert_eq!(rx.recv()?, [1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// The reader cannot send, and the writer cannot receive:
    ///
    /// ```compile_fail,E0599
    /// let (rx, _tx) = multiproc::Pipe::<u8>::one_way()?;
    /// rx.send(&1)?; // no method `send` on `PipeReader`
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// ```compile_fail,E0599
    /// let (_rx, tx) = multiproc::Pipe::<u8>::one_way()?;
    /// let _ = tx.recv()?; // no method `recv` on `PipeWriter`
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn one_way() -> crate::Result<(PipeReader<T>, PipeWriter<T>)> {
        let (a, b) = Inner::pair()?;
        Ok((
            PipeReader {
                inner: a,
                _items: PhantomData,
            },
            PipeWriter {
                inner: b,
                _items: PhantomData,
            },
        ))
    }
}
