//! `Listener::accept_async` (feature `tokio`): the listener's epoll set in
//! tokio's reactor; handshakes go on, without blocking, each time it fires.

use super::{Listener, lock};
use crate::aio::ready;
use crate::error::{Error, Result};
use crate::pipe::Connection;
use std::time::Instant;

impl Listener {
    /// Awaits a peer and returns its connection: the async
    /// [`accept`](Self::accept), with the same errors (a peer that fails
    /// its handshake is an error for that peer only; await again to go on).
    /// Handshakes make progress whenever their sockets are ready, without
    /// blocking a thread; a silent peer fails at its handshake timeout.
    /// Dropping the future leaves handshakes in progress to the next
    /// accept.
    ///
    /// ```
    /// use multiproc::{Client, Connection, Listener};
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let listener = Listener::bind("127.0.0.1:0", Some(b"key".as_slice()))?;
    /// let address = listener.address().clone();
    /// let client = std::thread::spawn(move || {
    ///     Client::connect::<u8>(&address, Some(b"key".as_slice()))?.send(&9)?;
    ///     Ok::<(), multiproc::Error>(())
    /// });
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// let conn: Connection<u8> = runtime.block_on(listener.accept_async())?;
    /// assert_eq!(conn.recv()?, 9);
    /// client.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn accept_async<T>(&self) -> Result<Connection<T>> {
        loop {
            match self.accept_until(Some(Instant::now())) {
                Err(Error::Timeout) => {}
                other => return other.map(Connection::from_socket),
            }
            // The next moment the listener must act without an event: a
            // handshake's deadline, or a retry after running out of
            // descriptors.
            let next = {
                let state = lock(&self.state);
                let handshakes = state.pending.values().map(|p| p.handshake.deadline);
                let retry = state.paused.as_ref().and_then(|p| p.retry_at);
                handshakes.chain(retry).min()
            };
            match next {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at.into(), ready(self)).await;
                }
                None => ready(self).await?,
            }
        }
    }
}
