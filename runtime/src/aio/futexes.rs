//! Futex words in futures: one helper thread per process waits on every
//! word a future is waiting for, with one `futex_waitv`, and wakes the
//! futures whose word changed. Never a thread per waiter.

use crate::sys::futex;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A futex word in memory that the implementor keeps mapped.
pub(crate) trait FutexWord: Send + Sync + 'static {
    fn word(&self) -> &AtomicU32;
}

/// How often words beyond one `futex_waitv`'s 128 (or all of them, on a
/// kernel without it) are looked at.
const SLICE: Duration = Duration::from_millis(5);

#[derive(Default)]
struct Signal {
    fired: AtomicBool,
    cancelled: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

struct Entry {
    word: Arc<dyn FutexWord>,
    expected: u32,
    signal: Arc<Signal>,
}

struct Helper {
    entries: Mutex<Vec<Entry>>,
    /// Moved on by every registration and cancellation, so the helper
    /// re-reads its list (a private futex: only this process maps it).
    control: AtomicU32,
    /// The process the thread runs in (a forked child has no such thread).
    pid: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static HELPER: Mutex<Option<Arc<Helper>>> = Mutex::new(None);

/// The helper of this process, started on first use.
fn helper() -> Arc<Helper> {
    let mut slot = lock(&HELPER);
    let pid = std::process::id();
    if let Some(h) = slot.as_ref().filter(|h| h.pid == pid) {
        return h.clone();
    }
    let h = Arc::new(Helper {
        entries: Mutex::new(Vec::new()),
        control: AtomicU32::new(0),
        pid,
    });
    let run = h.clone();
    std::thread::Builder::new()
        .name("multiproc-futex".into())
        .spawn(move || run.serve())
        .expect("cannot start multiproc's futex helper thread");
    *slot = Some(h.clone());
    h
}

impl Helper {
    fn nudge(&self) {
        self.control.fetch_add(1, SeqCst);
        futex::wake_private(&self.control);
    }

    fn serve(&self) {
        loop {
            let seen = self.control.load(SeqCst);
            let (watched, more) = {
                let mut entries = lock(&self.entries);
                entries.retain(|e| {
                    if e.signal.cancelled.load(SeqCst) {
                        return false;
                    }
                    if e.word.word().load(SeqCst) != e.expected {
                        e.signal.fired.store(true, SeqCst);
                        if let Some(w) = lock(&e.signal.waker).take() {
                            w.wake();
                        }
                        return false;
                    }
                    true
                });
                let watched: Vec<(Arc<dyn FutexWord>, u32)> = entries
                    .iter()
                    .take(futex::WAITV_MAX - 1)
                    .map(|e| (e.word.clone(), e.expected))
                    .collect();
                let more = entries.len() > watched.len();
                (watched, more)
            };
            let mut words: Vec<(&AtomicU32, u32, bool)> = vec![(&self.control, seen, true)];
            words.extend(
                watched
                    .iter()
                    .map(|(w, expected)| (w.word(), *expected, false)),
            );
            let timeout = more.then_some(SLICE);
            if !futex::wait_any(&words, timeout) {
                std::thread::sleep(SLICE);
            }
        }
    }
}

/// Resolves once the word no longer holds `expected`, or when the helper
/// thought so (callers re-check their condition and wait again).
pub(crate) struct Changed {
    word: Arc<dyn FutexWord>,
    expected: u32,
    signal: Option<Arc<Signal>>,
    helper: Option<Arc<Helper>>,
    done: bool,
}

/// A future for a change of `word` from `expected`.
pub(crate) fn changed(word: Arc<dyn FutexWord>, expected: u32) -> Changed {
    Changed {
        word,
        expected,
        signal: None,
        helper: None,
        done: false,
    }
}

impl Future for Changed {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.word.word().load(SeqCst) != self.expected {
            self.done = true;
            return Poll::Ready(());
        }
        match &self.signal {
            Some(signal) => {
                *lock(&signal.waker) = Some(cx.waker().clone());
                if signal.fired.load(SeqCst) {
                    self.done = true;
                    return Poll::Ready(());
                }
            }
            None => {
                let signal = Arc::new(Signal::default());
                *lock(&signal.waker) = Some(cx.waker().clone());
                let helper = helper();
                lock(&helper.entries).push(Entry {
                    word: self.word.clone(),
                    expected: self.expected,
                    signal: signal.clone(),
                });
                helper.nudge();
                self.signal = Some(signal);
                self.helper = Some(helper);
            }
        }
        Poll::Pending
    }
}

impl Drop for Changed {
    fn drop(&mut self) {
        let (Some(signal), Some(helper)) = (&self.signal, &self.helper) else {
            return;
        };
        if signal.fired.load(SeqCst) {
            if !self.done {
                // Woken for a change nobody will act on: a wake-up meant for
                // one waiter (a put's room) goes on to another.
                futex::wake(self.word.word(), 1);
            }
        } else {
            signal.cancelled.store(true, SeqCst);
            helper.nudge();
        }
    }
}

/// Takes one back from a waiter count when dropped (a future dropped
/// mid-wait must not leave itself counted).
pub(crate) struct Counted<'a>(&'a AtomicU32);

impl<'a> Counted<'a> {
    pub(crate) fn new(count: &'a AtomicU32) -> Self {
        count.fetch_add(1, SeqCst);
        Counted(count)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}
