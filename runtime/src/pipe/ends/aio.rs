//! The ends' async forms (feature `tokio`): a receive awaits the socket in
//! tokio's reactor, then takes the whole message; a send encodes at once
//! and writes without blocking, awaiting room.

use super::{Connection, PipeReader, PipeWriter};
use crate::aio::ready;
use crate::pipe::error::{RecvError, SendError, TryRecvError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;

/// A receive that waited: `Empty` cannot be its answer.
fn waited(e: TryRecvError) -> RecvError {
    match e {
        TryRecvError::Empty | TryRecvError::Closed => RecvError::Closed,
        TryRecvError::Decode(e) => RecvError::Decode(e),
        TryRecvError::Io(e) => RecvError::Io(e),
    }
}

macro_rules! recv_async {
    ($ty:ident, $new:literal) => {
        impl<T: DeserializeOwned> $ty<T> {
            /// Awaits the next message: the async [`recv`](Self::recv), with
            /// the same errors (feature `tokio`). The socket waits in
            /// tokio's reactor; the message is taken only once it has
            /// wholly arrived, so dropping the future loses nothing.
            ///
            /// ```
            #[doc = concat!("let (rx, tx) = ", "multiproc::Pipe::", $new, "()?;")]
            /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            /// let sender = std::thread::spawn(move || tx.send(&"hi".to_string()));
            /// assert_eq!(runtime.block_on(rx.recv_async())?, "hi");
            /// sender.join().unwrap()?;
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub async fn recv_async(&self) -> Result<T, RecvError> {
                loop {
                    match self.try_recv() {
                        Err(TryRecvError::Empty) => ready(self).await.map_err(RecvError::Io)?,
                        other => return other.map_err(waited),
                    }
                }
            }
        }
    };
}

macro_rules! send_async {
    ($ty:ident, $new:literal) => {
        impl<T: Serialize> $ty<T> {
            /// Sends `value` as one message: the async [`send`](Self::send),
            /// with the same errors (feature `tokio`). The value is encoded
            /// when this is called; while the receiver is not reading, the
            /// write awaits room in tokio's reactor instead of blocking.
            /// A future dropped before its first byte went sends nothing;
            /// one dropped part-way through the message closes this end
            /// (in this process), as the stream can carry no other message
            /// after half of one: the receiver gets an error, never a
            /// wrong message.
            ///
            /// ```
            #[doc = concat!("let (rx, tx) = ", "multiproc::Pipe::", $new, "()?;")]
            /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            /// let reader = std::thread::spawn(move || rx.recv());
            /// // Larger than the socket's buffer: the write awaits the reader.
            /// runtime.block_on(tx.send_async(&vec![7u8; 1 << 20]))?;
            /// assert_eq!(reader.join().unwrap()?.len(), 1 << 20);
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn send_async(
                &self,
                value: &T,
            ) -> impl Future<Output = Result<(), SendError>> + Send + 'static {
                self.inner.send_async(value)
            }
        }

        impl<T> $ty<T> {
            /// Sends `bytes` as one raw message: the async
            /// [`send_bytes`](Self::send_bytes) (feature `tokio`).
            ///
            /// ```
            #[doc = concat!("let (rx, tx) = ", "multiproc::Pipe::<()>::", $new, "()?;")]
            /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            /// runtime.block_on(tx.send_bytes_async(b"raw"))?;
            /// assert_eq!(rx.recv_bytes()?, b"raw");
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn send_bytes_async(
                &self,
                bytes: &[u8],
            ) -> impl Future<Output = Result<(), SendError>> + Send + 'static {
                self.inner.send_bytes_async(bytes)
            }
        }
    };
}

recv_async!(Connection, "new");
recv_async!(PipeReader, "one_way");
send_async!(Connection, "new");
send_async!(PipeWriter, "one_way");
