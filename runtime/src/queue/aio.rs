//! The queues' async forms (feature `tokio`): a get awaits the queue's
//! eventfd in tokio's reactor; a put on a full queue and a join await
//! their futex word through the process's one futex helper thread.

use super::{GetError, JoinableQueue, PutError, Queue, SimpleQueue, TryGetError, TryPutError};
use crate::aio::ready;
use serde::Serialize;
use serde::de::DeserializeOwned;

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Takes the oldest message, awaiting one: the async
    /// [`get`](Self::get), with the same errors (feature `tokio`). Dropping
    /// the future takes nothing.
    ///
    /// ```
    /// use multiproc::{Process, Queue, worker};
    ///
    /// #[worker]
    /// fn produce(q: Queue<String>) {
    ///     q.put("hello".to_string()).unwrap();
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let q = Queue::new()?;
    /// let mut p = Process::new(produce, (q.clone(),));
    /// p.start()?;
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// assert_eq!(runtime.block_on(q.get_async())?, "hello");
    /// p.join()?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_async(&self) -> Result<T, GetError> {
        loop {
            match self.try_get() {
                Err(TryGetError::Empty) => ready(self).await.map_err(GetError::Io)?,
                other => return other.map_err(TryGetError::waited),
            }
        }
    }

    /// Puts `item`, awaiting room in a bounded queue: the async
    /// [`put`](Self::put), with the same errors (feature `tokio`). Dropping
    /// the future before it finishes puts nothing (and drops the item).
    ///
    /// ```
    /// use multiproc::Queue;
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let q = Queue::with_maxsize(1)?;
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// runtime.block_on(async {
    ///     q.put_async(1).await?;
    ///     let consumer = q.clone();
    ///     let take = std::thread::spawn(move || consumer.get());
    ///     q.put_async(2).await?; // waits for the thread's get
    ///     assert_eq!(take.join().unwrap()?, 1);
    ///     assert_eq!(q.get_async().await?, 2);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub async fn put_async(&self, item: T) -> Result<(), PutError<T>> {
        let mut item = Some(item);
        self.raw
            .until_room(|| {
                let Some(next) = item.take() else {
                    unreachable!("every try that gives the item back keeps it");
                };
                match self.try_put(next) {
                    Err(TryPutError::Full(back)) => {
                        item = Some(back);
                        None
                    }
                    other => Some(other.map_err(TryPutError::waited)),
                }
            })
            .await
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// Takes the oldest message, awaiting one, as [`Queue::get_async`]
    /// (feature `tokio`).
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::new()?;
    /// q.put(5u8)?;
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// assert_eq!(runtime.block_on(q.get_async())?, 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub async fn get_async(&self) -> Result<T, GetError> {
        self.inner.get_async().await
    }
}

impl<T> JoinableQueue<T> {
    /// Awaits the moment every message put has been
    /// [`task_done`](Self::task_done): the async [`join`](Self::join)
    /// (feature `tokio`).
    ///
    /// ```
    /// use multiproc::{JoinableQueue, Process, worker};
    ///
    /// #[worker]
    /// fn consume(q: JoinableQueue<u32>) {
    ///     for _ in 0..3 {
    ///         q.get().unwrap();
    ///         q.task_done().unwrap();
    ///     }
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let q = JoinableQueue::new()?;
    /// for i in 0..3 {
    ///     q.put(i)?;
    /// }
    /// let mut p = Process::new(consume, (q.clone(),));
    /// p.start()?;
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// runtime.block_on(q.join_async())?;
    /// p.join()?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn join_async(&self) -> crate::Result<()> {
        self.inner.raw.join_async().await?;
        Ok(())
    }
}
