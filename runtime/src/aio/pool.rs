//! Awaiting a pool: `AsyncResult` as a future, `Pool::run`.

use crate::error::Result;
use crate::pool::{AsyncResult, Pool};
use crate::registry::Worker;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// The future an [`AsyncResult`] becomes with `.await` (feature `tokio`):
/// its value, or the same error [`get`](AsyncResult::get) would give.
///
/// It needs no runtime of its own: the pool's dispatcher wakes it, so it
/// works on any executor. Dropping it cancels only the wait, never the
/// task (the task runs on, and its result is dropped when it comes); call
/// [`AsyncResult::cancel`] first to stop the work too.
///
/// ```
/// use multiproc::{Pool, worker};
///
/// #[worker]
/// fn double(x: u64) -> u64 {
///     x * 2
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let pool = Pool::builder().processes(2).build()?;
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// runtime.block_on(async {
///     assert_eq!(pool.apply_async(double, (21,))?.await?, 42);
///     assert_eq!(pool.map_async(double, [1, 2, 3])?.await?, [2, 4, 6]);
///     Ok(())
/// })
/// # }
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct ResultFuture<T> {
    result: AsyncResult<T>,
    /// The waker the slots hold, to forget it when dropped early.
    waker: Option<Waker>,
}

impl<T> std::fmt::Debug for ResultFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultFuture")
            .field("result", &self.result)
            .finish()
    }
}

impl<T> IntoFuture for AsyncResult<T> {
    type Output = Result<T>;
    type IntoFuture = ResultFuture<T>;

    fn into_future(self) -> ResultFuture<T> {
        ResultFuture {
            result: self,
            waker: None,
        }
    }
}

impl<T> Unpin for ResultFuture<T> {}

impl<T> Future for ResultFuture<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = &mut *self;
        let waker = cx.waker();
        if !this.result.slots().all(|slot| slot.done_or_wake(waker)) {
            if this.waker.as_ref().is_none_or(|w| !w.will_wake(waker)) {
                if let Some(old) = this.waker.replace(waker.clone()) {
                    this.result.slots().for_each(|slot| slot.forget(&old));
                }
            }
            return Poll::Pending;
        }
        this.waker = None;
        Poll::Ready(this.result.take())
    }
}

impl<T> Drop for ResultFuture<T> {
    fn drop(&mut self) {
        if let Some(waker) = self.waker.take() {
            self.result.slots().for_each(|slot| slot.forget(&waker));
        }
    }
}

impl Pool {
    /// Runs `worker(args)` in a worker and awaits its value: the async
    /// [`apply`](Self::apply) (feature `tokio`), the same as
    /// `pool.apply_async(worker, args)?.await`. Dropping the future leaves
    /// the task running.
    ///
    /// ```
    /// use multiproc::{Pool, worker};
    ///
    /// #[worker]
    /// fn add(a: u32, b: u32) -> u32 {
    ///     a + b
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let pool = Pool::builder().processes(1).build()?;
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// assert_eq!(runtime.block_on(pool.run(add, (2, 3)))?, 5);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn run<W: Worker>(&self, worker: W, args: W::Args) -> Result<W::Output> {
        self.apply_async(worker, args)?.await
    }
}
