//! `Event`: one futex word holding the flag (bit 0) and a count of `set`s
//! (the other bits), so a waiter that sleeps through a `set` and a `clear`
//! still sees that the event was set while it waited.

use super::Deadline;
use super::block::{Block, FIELDS, Kind};
use crate::sys::futex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::time::Duration;

const WORD: usize = FIELDS;
const SLEEPERS: usize = FIELDS + 4;
const LEN: usize = FIELDS + 64;
const SET: u32 = 1;

/// Python's `multiprocessing.Event`: a flag that processes and threads can
/// [`set`](Self::set), [`clear`](Self::clear) and [`wait`](Self::wait) for.
///
/// Every waiter wakes when the flag is set, including one that the flag was
/// cleared again for before it could run (as `threading.Event`). A waiter
/// that is killed never disturbs the others.
///
/// ```
/// use multiproc::{Event, Process, worker};
///
/// #[worker]
/// fn starter(go: Event) {
///     go.set();
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let go = Event::new()?;
/// let mut p = Process::new(starter, (go.clone(),));
/// p.start()?;
/// go.wait();
/// assert!(go.is_set());
/// p.join()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Event {
    block: Arc<Block>,
}

impl Event {
    /// A new event, not set.
    ///
    /// ```
    /// assert!(!multiproc::Event::new()?.is_set());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> crate::Result<Event> {
        Ok(Event {
            block: Arc::new(Block::create(Kind::Event, LEN, |_| Ok(()))?),
        })
    }

    /// Whether the flag is set now.
    ///
    /// ```
    /// let e = multiproc::Event::new()?;
    /// e.set();
    /// assert!(e.is_set());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_set(&self) -> bool {
        self.block.u32(WORD).load(Acquire) & SET != 0
    }

    /// Sets the flag and wakes every waiter.
    ///
    /// ```
    /// let e = multiproc::Event::new()?;
    /// e.set();
    /// e.set(); // no change
    /// assert!(e.wait_timeout(std::time::Duration::ZERO));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn set(&self) {
        let word = self.block.u32(WORD);
        let mut w = word.load(Relaxed);
        loop {
            if w & SET != 0 {
                return;
            }
            match word.compare_exchange_weak(w, w.wrapping_add(2) | SET, SeqCst, Relaxed) {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        if self.block.u32(SLEEPERS).load(SeqCst) > 0 {
            futex::wake(word, i32::MAX);
        }
    }

    /// Clears the flag: later waits wait for the next [`set`](Self::set).
    ///
    /// ```
    /// let e = multiproc::Event::new()?;
    /// e.set();
    /// e.clear();
    /// assert!(!e.is_set());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn clear(&self) {
        self.block.u32(WORD).fetch_and(!SET, SeqCst);
    }

    /// Waits until the flag is set.
    ///
    /// ```
    /// let e = multiproc::Event::new()?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| e.set());
    ///     e.wait();
    /// });
    /// assert!(e.is_set());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait(&self) {
        self.wait_until(Deadline::Never);
    }

    /// Waits at most `timeout` for the flag; returns whether it was set
    /// (Python's `wait(timeout)`). A zero timeout only looks.
    ///
    /// ```
    /// use std::time::Duration;
    /// let e = multiproc::Event::new()?;
    /// assert!(!e.wait_timeout(Duration::from_millis(10)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Deadline::after(timeout))
    }

    /// Whether the flag is set now, without waiting: the `try_` form of
    /// [`wait`](Self::wait), the same as [`is_set`](Self::is_set).
    ///
    /// ```
    /// let e = multiproc::Event::new()?;
    /// assert!(!e.try_wait());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_wait(&self) -> bool {
        self.is_set()
    }

    /// Awaits the flag: the async [`wait`](Self::wait) (feature `tokio`).
    /// The futex word is watched by the process's one helper thread, which
    /// waits for every such future at once (never a thread per waiter).
    ///
    /// ```
    /// use multiproc::{Event, Process, worker};
    ///
    /// #[worker]
    /// fn starter(go: Event) {
    ///     go.set();
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let go = Event::new()?;
    /// let mut p = Process::new(starter, (go.clone(),));
    /// p.start()?;
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// runtime.block_on(go.wait_async());
    /// assert!(go.is_set());
    /// p.join()?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn wait_async(&self) {
        let word = self.block.u32(WORD);
        loop {
            let start = word.load(SeqCst);
            if start & SET != 0 {
                return;
            }
            let _sleeping = crate::aio::Counted::new(self.block.u32(SLEEPERS));
            if word.load(SeqCst) != start {
                continue;
            }
            let watched = std::sync::Arc::new(super::block::BlockWord::new(&self.block, WORD));
            crate::aio::changed(watched, start).await;
        }
    }

    fn wait_until(&self, deadline: Deadline) -> bool {
        let word = self.block.u32(WORD);
        let start = word.load(Acquire);
        if start & SET != 0 {
            return true;
        }
        // With the flag clear, only a `set` changes the word.
        if matches!(deadline, Deadline::Now) {
            return false;
        }
        let Err(began) = self.block.spin_until(|| word.load(Acquire) != start) else {
            return true;
        };
        let sleepers = self.block.u32(SLEEPERS);
        let set = loop {
            let Some(timeout) = deadline.remaining() else {
                break word.load(Acquire) != start;
            };
            sleepers.fetch_add(1, SeqCst);
            futex::wait(word, start, timeout);
            sleepers.fetch_sub(1, SeqCst);
            if word.load(Acquire) != start {
                break true;
            }
        };
        self.block.slept(began);
        set
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("is_set", &self.is_set())
            .finish()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.block.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Event {
            block: Arc::new(Block::deserialize(deserializer, Kind::Event)?),
        })
    }
}
