//! The parent side of a pool: its workers, its queue of tasks, and the
//! dispatcher thread that moves bytes between them.
//!
//! Each worker has its own socket, so the pool knows exactly which tasks a
//! worker holds. Submitting threads queue tasks and write them straight to
//! an idle worker's socket (no thread hop on the way out). The dispatcher
//! thread polls every worker's socket and pidfd: it reads replies and hands
//! them to their owners, refills workers as they finish, finishes writes that
//! would have blocked, and, when a pidfd says a worker died, reads what the
//! worker left on its progress board (`progress.rs`): replies it had not
//! sent are delivered, the one input it was running fails (naming its pid
//! and how it died), and every input it had not begun goes back to the
//! queue; then a replacement starts. The dispatcher also stops inputs that
//! run past their timeout. Writes never block, so a slow worker never holds
//! up the others. Type-erased throughout: tasks and replies are bytes.

use super::progress::{Board, BoardFd, Remains, now_ns};
use super::result::{Delivery, Piece, Sink, Slot};
use super::serve::{self, Channel, InitCall, Initializer};
use super::wire::{self, InBuf};
use crate::codec;
use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::process::{ChildProcess, Process};
use crate::setup::{ChildSetup, StdioKind};
use crate::sync::Spin;
use crate::sys::fdpass;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{self, MsgFlags, Shutdown};
use nix::sys::wait::{self, WaitPidFlag, WaitStatus};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A worker holds about this much queued work (by the measured task time),
/// so it never waits for the parent between tiny tasks, while long tasks
/// go one at a time to whichever worker is free (as in Python).
const QUEUED_WORK_NS: u64 = 1_000_000;
/// The most tasks one worker holds at once.
const MAX_WINDOW: u64 = 64;
/// Workers that die before they start are restarted after a back-off that
/// doubles from the first to the second, for as long as there is work.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(1), Duration::from_secs(1));
/// This many initializers in a row failing break the pool.
const MAX_INIT_FAILURES: u32 = 3;
/// This many workers in a row exiting with the status of a child that
/// cannot run its worker (2) before they start break the pool.
const MAX_REFUSALS: u32 = 5;
/// A worker's running task must have run at least this long (and eight
/// times the usual task time) before the tasks queued behind it move to an
/// idle worker: long enough that a worker merely descheduled on a busy
/// machine keeps its tasks (a steal stops the worker; at 5 ms, steals under
/// load cost `imap` of tiny tasks 12 %).
const STEAL_AFTER: Duration = Duration::from_millis(50);
/// The longest the dispatcher waits for a worker to stop (`SIGSTOP`) before
/// it reads its board anyway.
const STOP_WAIT: Duration = Duration::from_secs(1);
/// How long `terminate` lets a worker die of SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(1);
/// The most descriptors of task arguments a worker holds written and not
/// yet answered (a task with more still goes, alone): descriptors in a
/// socket count against the sending user's `RLIMIT_NOFILE` until read.
const FDS_WRITTEN: usize = fdpass::MAX_FDS_PER_MESSAGE;
/// How soon the dispatcher tries again to write a task whose descriptors
/// waited (for room in `FDS_WRITTEN`, or after `ETOOMANYREFS`: too many
/// descriptors of the user in flight).
const FDS_RETRY: Duration = Duration::from_millis(2);

/// A task: a whole frame for the worker, and who wants the reply.
pub(crate) struct Task {
    frame: Vec<u8>,
    /// The descriptors of the handles in the task's arguments (`None` for
    /// most tasks), written with the frame each time it is written: to a
    /// replacement after a death (the rest of a chunk too) or to another
    /// worker after a steal (whose copy left behind shares them). Closed
    /// once every copy of the task is answered.
    fds: Option<Arc<[OwnedFd]>>,
    sink: Sink,
    /// A chunk of several calls: worth pipelining (two per worker) however
    /// long it runs, since moving its data takes time too.
    batch: bool,
    /// The calls in the frame.
    len: usize,
    /// What became of the calls before them, for the rest of a chunk whose
    /// worker died.
    prefix: Vec<Piece>,
    /// The timeout of each call (also in the frame).
    timeout: Option<Duration>,
}

impl Task {
    pub(crate) fn new(frame: wire::TaskFrame, sink: Sink, batch: bool, len: usize) -> Task {
        let (frame, fds) = frame;
        let timeout = match wire::task_timeout_ns(&frame) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        };
        Task {
            frame,
            fds: (!fds.is_empty()).then(|| Arc::from(fds)),
            sink,
            batch,
            len,
            prefix: Vec::new(),
            timeout,
        }
    }

    /// The task's owner and everything that became of its calls, `last` the
    /// end of it.
    fn finish(mut self, last: Piece) -> (Sink, Delivery) {
        let delivery = if self.prefix.is_empty() {
            Delivery::one(last)
        } else {
            self.prefix.push(last);
            Delivery::many(self.prefix)
        };
        (self.sink, delivery.with_frame(self.frame))
    }

    /// Fails the calls of this task that are not accounted for yet.
    fn fail(self, error: Error) -> (Sink, Delivery) {
        let count = self.len;
        self.finish(Piece::Failed { count, error })
    }
}

/// How long to wait before starting a worker after `deaths` in a row died
/// before they started: 1 ms, doubling, at most 1 s.
fn backoff(deaths: u32) -> Duration {
    let doublings = deaths.saturating_sub(1).min(20);
    BACKOFF.0.saturating_mul(1 << doublings).min(BACKOFF.1)
}

pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) init: Option<Arc<Initializer>>,
    pub(crate) task_timeout: Option<Duration>,
    /// Every worker's environment, directory, stdio and limits; a pool's
    /// piped streams are descriptors here until the pool stops.
    pub(crate) setup: Mutex<ChildSetup>,
}

/// What the `Pool` handle, its results and the dispatcher share.
pub(crate) struct Shared {
    state: Mutex<State>,
    wake: EventFd,
    /// What the dispatcher waits on: `wake`, and each worker's socket (for
    /// the events it needs now) and pidfd, registered as they change, so a
    /// wait costs the same whatever the number of workers.
    epoll: Epoll,
    /// The spin of callers of `apply` waiting for their reply.
    spin: Spin,
    config: Config,
}

/// The epoll token of `wake`; a worker's are `id << 1` (its socket) and
/// `id << 1 | 1` (its pidfd).
const WAKE_TOKEN: u64 = u64::MAX;
/// The epoll events a wait returns at most; more wait for the next.
const EPOLL_BATCH: usize = 256;
/// How long a busy worker may go without a reply before `fill` stops
/// queueing tasks behind it, once every CPU has a busy worker.
const CROWDED_OVERDUE: Duration = Duration::from_millis(1);

/// [`cpu_count`](crate::cpu_count), read once (the first pool's): `fill`
/// asks on every task.
fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(crate::cpu_count)
}

/// Worker ids, unique in the process (tokens outlive no worker).
static NEXT_WORKER_ID: AtomicU64 = AtomicU64::new(0);

struct State {
    queue: VecDeque<Task>,
    workers: Vec<Member>,
    closed: bool,
    terminated: bool,
    broken: Option<String>,
    stats: Stats,
    retry_spawn_at: Option<Instant>,
    /// Whether any task with a timeout was ever submitted: until then the
    /// dispatcher spends nothing on deadlines.
    timed: bool,
    /// Tasks assigned to workers so far.
    assigned: u64,
    /// The place in `workers` of the worker given the last task, and how
    /// many workers held tasks when `fill` last looked at all of them.
    hot: Option<usize>,
    busy: usize,
    /// The places of the workers `fill` gave tasks since the submitter
    /// last looked (in order, each once in a row).
    touched: Vec<usize>,
}

/// What reading replies learns beyond the replies themselves.
#[derive(Default)]
struct Stats {
    /// Smoothed run time of one task in nanoseconds; 0 before the first reply.
    task_ns: u64,
    /// Workers in a row that died before they said `READY`.
    early_deaths: u32,
    /// Of those, how many in a row exited with status 2.
    refusals: u32,
    /// Initializers in a row that failed.
    init_failures: u32,
    /// Why the initializer last failed.
    init_failed: Option<String>,
}

impl Stats {
    fn observe(&mut self, nanos: u64) {
        let nanos = nanos.max(1);
        self.task_ns = match self.task_ns {
            0 => nanos,
            old => (old * 7 + nanos) / 8,
        };
    }
}

/// A worker whose replies a caller of `apply` reads itself, and how many
/// replies it will have sent once the caller's is.
pub(crate) struct Served {
    io: Arc<Io>,
    replies: u64,
}

pub(crate) struct Io {
    sock: OwnedFd,
    pidfd: Option<OwnedFd>,
    board: Board,
}

/// Why the pool killed a worker: what its running input fails with.
#[derive(Clone, Copy)]
enum Doom {
    TimedOut(Duration),
    Cancelled,
}

/// One worker process, as the parent sees it.
struct Member {
    child: ChildProcess,
    pid: u32,
    /// Its epoll tokens' base.
    id: u64,
    /// The socket's events registered in the dispatcher's epoll set (empty:
    /// not in it), and whether its pidfd is.
    sock_events: EpollFlags,
    pidfd_registered: bool,
    /// The pool's assignment count when it was last given a task: of idle
    /// workers, the one given work last is woken first (its caches are
    /// warm, and the others stay asleep).
    last_assigned: u64,
    io: Arc<Io>,
    /// The tasks assigned to this worker and not yet answered, oldest
    /// first. The first `written` are wholly written to its socket; of the
    /// next, `out_off` bytes are.
    inflight: VecDeque<Task>,
    written: usize,
    out_off: usize,
    inbuf: InBuf,
    /// Tasks assigned (the sequence number of the next one).
    sent: u64,
    /// Replies received (the sequence number of `inflight[0]`).
    replied: u64,
    /// Set when the pool killed it.
    doom: Option<Doom>,
    ready: bool,
    write_failed: bool,
    read_eof: bool,
    /// Its socket is shut: it gets no more tasks and exits.
    retiring: bool,
    pollout_armed: bool,
    /// The last write would have blocked: wait for the socket to drain.
    blocked: bool,
    /// When the oldest task it holds became its oldest (by assignment or
    /// by the reply before it): a worker far past the usual task time is
    /// busy with a long task, and gets no more work queued behind it.
    head_since: Instant,
    /// The dispatcher's current wait reads this socket.
    watched: bool,
    /// A thread in `apply` reads this socket itself (one hop less).
    served: bool,
}

impl Member {
    /// [`State::flush_all`]'s write of one worker for a submitting thread;
    /// returns whether it blocked and the dispatcher does not know it yet.
    fn flush_eager(&mut self) -> bool {
        let batches = self.inflight.back().is_some_and(|task| task.batch);
        if self.unwritten() == 0 || (batches && self.written >= 2) {
            return false;
        }
        self.flush() && !self.pollout_armed
    }

    /// Brings its registrations in `epoll` to `sock_events` for the socket
    /// (empty: out of the set: an unwatched socket's hang-up would
    /// otherwise wake every wait) and, always, its pidfd.
    fn register(&mut self, epoll: &Epoll, sock_events: EpollFlags) {
        if sock_events != self.sock_events {
            let event = EpollEvent::new(sock_events, self.id << 1);
            let done = if sock_events.is_empty() {
                epoll.delete(self.io.sock.as_fd())
            } else if self.sock_events.is_empty() {
                epoll.add(self.io.sock.as_fd(), event)
            } else {
                epoll.modify(self.io.sock.as_fd(), &mut { event })
            };
            // ENOMEM/ENOSPC (the user's epoll watch limit) leave it as it
            // was; the next plan tries again.
            if done.is_ok() {
                self.sock_events = sock_events;
            }
        }
        if !self.pidfd_registered {
            if let Some(pidfd) = &self.io.pidfd {
                let event = EpollEvent::new(EpollFlags::EPOLLIN, self.id << 1 | 1);
                self.pidfd_registered = epoll.add(pidfd.as_fd(), event).is_ok();
            }
        }
    }

    /// Takes it out of `epoll` (before it is buried: a serving thread may
    /// still hold its socket open).
    fn unregister(&mut self, epoll: &Epoll) {
        self.register(epoll, EpollFlags::empty());
        if self.pidfd_registered {
            if let Some(pidfd) = &self.io.pidfd {
                let _ = epoll.delete(pidfd.as_fd());
            }
            self.pidfd_registered = false;
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Starts the workers; the caller starts the dispatcher thread.
    pub(crate) fn start(config: Config) -> Result<Arc<Shared>> {
        let wake =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(
            wake.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN),
        )?;
        let mut workers = Vec::with_capacity(config.processes);
        for _ in 0..config.processes {
            match Member::spawn(&config) {
                Ok(member) => workers.push(member),
                Err(e) => {
                    for member in &workers {
                        let _ = member.child.kill();
                        let _ = member.child.join();
                    }
                    return Err(e);
                }
            }
        }
        Ok(Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                workers,
                closed: false,
                terminated: false,
                broken: None,
                stats: Stats::default(),
                retry_spawn_at: None,
                timed: config.task_timeout.is_some(),
                assigned: 0,
                hot: None,
                busy: 0,
                touched: Vec::new(),
            }),
            wake,
            epoll,
            spin: Spin::new(),
            config,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Once the workers are gone: closes the pool's copies of the child
    /// ends of piped streams, so that their readers see end of file.
    pub(crate) fn release_stdio(&self) {
        for kind in &mut self
            .config
            .setup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stdio
        {
            if matches!(kind, StdioKind::Fd(_)) {
                *kind = StdioKind::Null;
            }
        }
    }

    /// The timeout every task gets unless a call sets another.
    pub(crate) fn task_timeout(&self) -> Option<Duration> {
        self.config.task_timeout
    }

    fn wake(&self) {
        let _ = self.wake.write(1);
    }

    /// Queues `tasks` (all or none) and writes what idle workers can take.
    pub(crate) fn submit(&self, tasks: impl IntoIterator<Item = Task>) -> Result<()> {
        self.submit_inner(tasks, false).map(drop)
    }

    /// Submits one task for a caller that will wait for it. If it went
    /// straight to an idle worker, the caller reads that worker's replies
    /// itself ([`serve`](Self::serve)): the reply then wakes the caller
    /// directly, not the dispatcher first.
    pub(crate) fn submit_and_serve(&self, task: Task) -> Result<Option<Served>> {
        self.submit_inner([task], true)
    }

    fn submit_inner(
        &self,
        tasks: impl IntoIterator<Item = Task>,
        serve: bool,
    ) -> Result<Option<Served>> {
        let mut state = self.lock();
        let refused = |state: &State| {
            if state.closed || state.terminated {
                Some(Error::PoolClosed)
            } else {
                state.broken.as_ref().map(|reason| Error::PoolBroken {
                    reason: reason.clone(),
                })
            }
        };
        if let Some(e) = refused(&state) {
            drop(state);
            // Each refused task gets the refusal, then the caller gets it too.
            for task in tasks {
                let (sink, delivery) = task.fail(e.copy());
                sink.deliver(delivery);
            }
            return Err(e);
        }
        let mut tasks = tasks.into_iter().peekable();
        // A timed task needs the dispatcher to plan its deadline, even when
        // the submitting thread serves the worker itself.
        let timed = tasks.peek().is_some_and(|t| t.timeout.is_some());
        state.timed |= timed;
        let first = tasks.next();
        let mine = first
            .as_ref()
            .filter(|_| serve)
            .and_then(|task| task.sink.as_slot().cloned());
        state.queue.extend(first);
        state.queue.extend(tasks);
        state.fill(self.config.max_tasks);
        let mut served = None;
        if let Some(mine) = mine {
            let took_it = |w: &Member| {
                w.inflight.len() == 1
                    && w.inflight
                        .back()
                        .and_then(|task| task.sink.as_slot())
                        .is_some_and(|slot| Arc::ptr_eq(slot, &mine))
            };
            if let Some(w) = state.workers.iter_mut().find(|w| took_it(w) && !w.served) {
                // The dispatcher leaves a served socket alone (and takes it
                // out of its set at its next look).
                w.served = true;
                served = Some(Served {
                    io: w.io.clone(),
                    replies: w.sent,
                });
            }
        }
        let wake = state.flush_touched() || timed;
        drop(state);
        if wake {
            self.wake();
        }
        Ok(served)
    }

    /// Reads the replies of the worker behind `io` until `slot` is filled
    /// (or the worker is gone, then the dispatcher fills it), then hands the
    /// worker back to the dispatcher.
    pub(crate) fn serve(&self, served: &Served, slot: &super::result::Slot) {
        let io = &served.io;
        let mut deliveries = Vec::new();
        // The worker usually answers sooner than a sleep and a wake-up
        // take: spin on its board's count of replies sent first, within
        // the sync primitives' budget (never on a crowded machine).
        let spun = self
            .spin
            .until(|| io.board.replies_sent() >= served.replies);
        while !slot.is_done() {
            let mut polled = [PollFd::new(io.sock.as_fd(), PollFlags::POLLIN)];
            // The timeout only guards against a missed wake-up.
            if let Err(e) = nix::poll::poll(&mut polled, PollTimeout::from(100u8)) {
                if e != Errno::EINTR {
                    break;
                }
            }
            let readable = polled[0].revents().is_some_and(|r| !r.is_empty());
            let mut guard = self.lock();
            let state = &mut *guard;
            let Some(w) = state.workers.iter_mut().find(|w| Arc::ptr_eq(&w.io, io)) else {
                break; // buried: the dispatcher fills the slot
            };
            if readable {
                w.read_replies(&mut deliveries, &mut state.stats);
            }
            if w.read_eof {
                break; // dying: the dispatcher fills the slot
            }
            self.tend(state, &mut deliveries);
            drop(guard);
            for (sink, delivery) in deliveries.drain(..) {
                sink.deliver(delivery);
            }
        }
        if let Err(start) = spun {
            self.spin.slept(start);
        }
        let mut state = self.lock();
        let mut wake = false;
        if let Some(w) = state.workers.iter_mut().find(|w| Arc::ptr_eq(&w.io, io)) {
            w.served = false;
            // Tasks went to it meanwhile: the dispatcher watches it again.
            wake = !w.inflight.is_empty() && !w.read_eof;
        }
        drop(state);
        if wake {
            self.wake();
        }
    }

    /// Drops the tasks that feed `stream` and have not begun: an `imap`
    /// dropped before its end. Tasks already running finish; their results
    /// are dropped.
    pub(crate) fn cancel_stream(&self, stream: &Arc<super::result::Stream>) {
        self.cancel_where(|sink| sink.feeds(stream), false);
    }

    /// Cancels the tasks that fill `slots`: those not begun never run, and
    /// a worker running one is killed (its other tasks go elsewhere).
    pub(crate) fn cancel_slots(&self, slots: &[Arc<Slot>]) {
        self.cancel_where(|sink| sink.fills(slots), true);
    }

    fn cancel_where(&self, ours: impl Fn(&Sink) -> bool, kill_running: bool) {
        let mut deliveries = Vec::new();
        let mut state = self.lock();
        let cancelled = |task: Task| task.fail(Error::Cancelled);
        let queue = std::mem::take(&mut state.queue);
        for task in queue {
            if ours(&task.sink) {
                deliveries.push(cancelled(task));
            } else {
                state.queue.push_back(task);
            }
        }
        for w in &mut state.workers {
            if w.read_eof || w.doom.is_some() || !w.inflight.iter().any(|t| ours(&t.sink)) {
                continue;
            }
            // Tasks not yet written at all come back out of the queue-to-write.
            let first_unwritten = w.first_untouched();
            let mut i = w.inflight.len();
            while i > first_unwritten {
                i -= 1;
                if ours(&w.inflight[i].sink) {
                    let task = w.inflight.remove(i).expect("in range");
                    w.sent -= 1; // it never reached the worker
                    deliveries.push(cancelled(task));
                }
            }
            // For the rest, the worker must be held still to know which it has
            // begun.
            if !w.inflight.iter().any(|t| ours(&t.sink)) {
                continue;
            }
            let stopped = w.stop();
            let (started, finished) = (w.io.board.started(), w.io.board.finished());
            let mut kill = false;
            for (i, task) in w.inflight.iter_mut().enumerate() {
                if !ours(&task.sink) || task.sink.is_detached() {
                    continue;
                }
                let seq = w.replied + i as u64;
                if seq >= started {
                    w.io.board.cancel(seq); // it will be skipped
                } else if seq >= finished {
                    if kill_running {
                        kill = true;
                    } else {
                        // The input now running finishes; no more of the
                        // task begin.
                        w.io.board.cut(seq);
                    }
                }
                let count = task.len;
                let sink = task.sink.detach();
                deliveries.push((
                    sink,
                    Delivery::one(Piece::Failed {
                        count,
                        error: Error::Cancelled,
                    }),
                ));
            }
            if kill {
                w.doom = Some(Doom::Cancelled);
                let _ = w.child.kill();
            } else if stopped {
                w.resume();
            }
        }
        // Tasks of the stream were cancelled as a whole: their sinks were
        // detached above and deliver nothing.
        let blocked = state.flush_all(false);
        drop(state);
        if blocked || kill_running {
            self.wake();
        }
        for (sink, delivery) in deliveries {
            sink.deliver(delivery);
        }
    }

    /// The pid of a worker running one of the tasks that fill `slots`.
    pub(crate) fn running_pid(&self, slots: &[&Arc<Slot>]) -> Option<u32> {
        let state = self.lock();
        for w in &state.workers {
            let (started, finished) = (w.io.board.started(), w.io.board.finished());
            for (i, task) in w.inflight.iter().enumerate() {
                let seq = w.replied + i as u64;
                if task.sink.fills(slots) && seq < started && seq >= finished {
                    return Some(w.pid);
                }
            }
        }
        None
    }

    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake();
    }

    pub(crate) fn terminate(&self) {
        self.lock().terminated = true;
        self.wake();
    }

    /// Whether `close` or `terminate` was called.
    pub(crate) fn stopping(&self) -> bool {
        let state = self.lock();
        state.closed || state.terminated
    }

    /// The pids of the current workers.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.lock()
            .workers
            .iter()
            .filter(|w| !w.retiring && w.doom.is_none())
            .map(|w| w.pid)
            .collect()
    }

    /// The dispatcher thread's body. A bug that panics here fails every
    /// task rather than leave its owner waiting for ever.
    pub(crate) fn run(self: Arc<Self>) {
        if panic::catch_unwind(AssertUnwindSafe(|| self.dispatch())).is_err() {
            let mut state = self.lock();
            state.broken = Some("the pool's dispatcher thread panicked".into());
            state.terminated = true;
            drop(state);
            self.stop_now();
        }
    }

    fn dispatch(&self) {
        let mut deliveries: Vec<(Sink, Delivery)> = Vec::new();
        let mut events = vec![EpollEvent::empty(); EPOLL_BATCH];
        let mut plan = self.lock().plan(&self.epoll);
        // Each round: wait, then handle what happened and plan the next wait
        // under one lock, then hand out replies outside it (so a woken owner
        // submitting its next task does not find the lock taken).
        while let Some(timeout) = plan.take() {
            let timeout = match timeout {
                None => PollTimeout::NONE,
                Some(t) => {
                    PollTimeout::try_from(t.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX)
                }
            };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(1));
                    0
                }
            };

            let mut guard = self.lock();
            let state = &mut *guard;
            // What each worker's descriptors said, by the worker's place.
            // Only this thread adds or removes workers, so the ids found
            // are still there.
            let mut said = vec![(EpollFlags::empty(), false); state.workers.len()];
            for event in &events[..n] {
                let token = event.data();
                if token == WAKE_TOKEN {
                    let _ = self.wake.read();
                    continue;
                }
                let Some(i) = state.workers.iter().position(|w| w.id == token >> 1) else {
                    continue;
                };
                if token & 1 == 1 {
                    said[i].1 = true;
                } else {
                    said[i].0 |= event.events();
                }
            }
            let mut died = Vec::new();
            for (i, (sock, exited)) in said.into_iter().enumerate() {
                let w = &mut state.workers[i];
                if w.served {
                    // Its caller reads it; only a write may be ours to finish.
                } else if sock
                    .intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR)
                {
                    w.read_replies(&mut deliveries, &mut state.stats);
                }
                if sock.contains(EpollFlags::EPOLLOUT) {
                    w.flush();
                }
                let exited = exited || (w.io.pidfd.is_none() && w.child.exitcode().is_some());
                if exited {
                    died.push(i);
                } else {
                    if state.timed {
                        w.enforce_timeout();
                    }
                }
            }
            for &i in died.iter().rev() {
                let mut w = state.workers.remove(i);
                state.hot = None;
                w.unregister(&self.epoll);
                state.bury(w, &mut deliveries);
            }
            self.tend(state, &mut deliveries);
            let spawn = state.missing_workers(self.config.processes);
            if spawn == 0 {
                plan = state.plan(&self.epoll);
            }
            drop(guard);

            for (sink, delivery) in deliveries.drain(..) {
                sink.deliver(delivery);
            }
            if spawn > 0 {
                self.replace(spawn);
                plan = self.lock().plan(&self.epoll);
            }
        }
        self.stop_now();
    }

    /// After any change: fail what cannot run, retire idle workers that
    /// should go, and hand queued tasks to workers with room.
    fn tend(&self, state: &mut State, deliveries: &mut Vec<(Sink, Delivery)>) {
        if state.stats.init_failures >= MAX_INIT_FAILURES && state.broken.is_none() {
            let why = state.stats.init_failed.clone().unwrap_or_default();
            state.broken = Some(format!(
                "{why} ({MAX_INIT_FAILURES} initializers in a row failed)"
            ));
        }
        if let Some(reason) = &state.broken {
            for task in state.queue.drain(..) {
                deliveries.push(task.fail(Error::PoolBroken {
                    reason: reason.clone(),
                }));
            }
        }
        let winding_down = (state.closed || state.broken.is_some()) && state.queue.is_empty();
        for w in &mut state.workers {
            let spent = self.config.max_tasks.is_some_and(|max| w.sent >= max);
            if !w.retiring && w.inflight.is_empty() && (spent || winding_down) {
                w.retiring = true;
                // The worker reads the end of its stream and exits.
                let _ = socket::shutdown(w.io.sock.as_raw_fd(), Shutdown::Write);
            }
        }
        state.steal();
        state.fill(self.config.max_tasks);
        state.flush_all(false);
    }

    /// Starts `n` workers (outside the lock: a spawn takes a millisecond).
    fn replace(&self, n: usize) {
        let mut started = Vec::new();
        let mut failure = None;
        for _ in 0..n {
            match Member::spawn(&self.config) {
                Ok(member) => started.push(member),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let mut deliveries = Vec::new();
        let mut state = self.lock();
        state.workers.extend(started);
        state.retry_spawn_at = None;
        if let Some(e) = failure {
            // A binary that cannot be executed stays so; anything else (out
            // of descriptors, processes or memory) may pass: try again later.
            let lasting = matches!(&e, Error::Spawn(io) if matches!(
                io.raw_os_error(),
                Some(libc::ENOENT | libc::EACCES | libc::ENOEXEC | libc::ENOTDIR | libc::ELOOP)
            ));
            if lasting && state.workers.iter().all(|w| w.retiring) {
                state.broken = Some(format!("cannot start a pool worker: {e}"));
            } else {
                state.stats.early_deaths += 1;
                let backoff = backoff(state.stats.early_deaths);
                state.retry_spawn_at = Some(Instant::now() + backoff);
            }
        }
        self.tend(&mut state, &mut deliveries);
        drop(state);
        for (sink, delivery) in deliveries {
            sink.deliver(delivery);
        }
    }

    /// `terminate`: fail everything, SIGTERM every worker (SIGKILL after a
    /// grace period) and reap them.
    fn stop_now(&self) {
        let mut state = self.lock();
        let mut deliveries = Vec::new();
        for task in state.queue.drain(..) {
            deliveries.push(task.fail(Error::PoolTerminated));
        }
        let workers = std::mem::take(&mut state.workers);
        drop(state);
        for w in &workers {
            let _ = w.child.terminate();
        }
        for mut w in workers {
            for task in w.inflight.drain(..) {
                deliveries.push(task.fail(Error::PoolTerminated));
            }
            let reaped = w.child.join_timeout(TERM_GRACE).ok().flatten();
            if reaped.is_none() {
                let _ = w.child.kill();
                let _ = w.child.join();
            }
        }
        for (sink, delivery) in deliveries {
            sink.deliver(delivery);
        }
    }
}

/// How long the dispatcher's next wait may last (`None`: until an event);
/// what it waits for is registered in its epoll set.
type Plan = Option<Option<Duration>>;

impl State {
    /// The next wait, registered in `epoll`, or `None` when the dispatcher
    /// should stop: after `terminate`, or once a closed (or broken) pool
    /// has no work and no workers left.
    fn plan(&mut self, epoll: &Epoll) -> Plan {
        if self.terminated {
            return None;
        }
        if (self.closed || self.broken.is_some())
            && self.queue.is_empty()
            && self.workers.is_empty()
        {
            return None;
        }
        let mut timeout = self
            .retry_spawn_at
            .map(|at| at.saturating_duration_since(Instant::now()));
        for w in &mut self.workers {
            let mut events = EpollFlags::empty();
            // An idle worker's socket stays quiet, and stays in the set
            // (costing a wait nothing), so that a task written to it needs
            // no wake-up of this thread to watch for the reply.
            w.watched = !w.read_eof && !w.served;
            if w.watched {
                events |= EpollFlags::EPOLLIN;
            }
            w.pollout_armed = w.blocked && w.unwritten() > 0 && !w.write_failed;
            if w.pollout_armed {
                events |= EpollFlags::EPOLLOUT;
            }
            w.register(epoll, events);
            if let Some(check) = self.timed.then(|| w.next_deadline_check()).flatten() {
                timeout = Some(timeout.map_or(check, |t| t.min(check)));
            }
            if w.fds_waiting() {
                timeout = Some(timeout.map_or(FDS_RETRY, |t| t.min(FDS_RETRY)));
            }
            if w.io.pidfd.is_none() {
                // No pidfd (Linux < 5.3): look at the exit status now and then.
                let slice = Duration::from_millis(10);
                timeout = Some(timeout.map_or(slice, |t| t.min(slice)));
            }
        }
        if let Some(at) = self.next_steal() {
            let check = at
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            timeout = Some(timeout.map_or(check, |t| t.min(check)));
        }
        Some(timeout)
    }

    /// How long a worker's oldest task must have run before the tasks
    /// queued behind it may move to an idle worker.
    fn patience(&self) -> Duration {
        Duration::from_nanos(self.stats.task_ns.saturating_mul(8)).max(STEAL_AFTER)
    }

    /// Whether a worker is ready and has nothing to do.
    fn idle(w: &Member) -> bool {
        w.ready
            && !w.retiring
            && !w.write_failed
            && !w.read_eof
            && w.doom.is_none()
            && w.inflight.is_empty()
    }

    /// Whether a worker is busy with a task and holds others behind it.
    fn crowded(w: &Member) -> bool {
        w.inflight.len() >= 2 && w.ready && !w.read_eof && w.doom.is_none()
    }

    /// When a steal may be due, if a worker is idle while another holds
    /// tasks behind its running one and the queue is empty.
    fn next_steal(&self) -> Option<Instant> {
        if !self.queue.is_empty() || !self.workers.iter().any(State::idle) {
            return None;
        }
        let patience = self.patience();
        self.workers
            .iter()
            .filter(|w| State::crowded(w))
            .map(|w| w.head_since + patience)
            .min()
    }

    /// Moves the tasks that wait behind a long-running one back to the
    /// queue, for an idle worker to take: those not yet written are taken
    /// back; those written but not begun are skipped by their worker
    /// (stopped meanwhile, so that it cannot begin one as it is taken).
    fn steal(&mut self) {
        let Some(due) = self.next_steal() else { return };
        let now = Instant::now();
        if now < due {
            return;
        }
        let patience = self.patience();
        let mut taken = Vec::new();
        for w in &mut self.workers {
            if !State::crowded(w) || now - w.head_since < patience {
                continue;
            }
            let first_unwritten = w.first_untouched().max(1);
            let mut unwritten = Vec::new();
            while w.inflight.len() > first_unwritten {
                unwritten.push(w.inflight.pop_back().expect("len checked"));
                w.sent -= 1; // it never reached the worker
            }
            if w.inflight.len() >= 2 && w.stop() {
                let started = w.io.board.started();
                for (i, task) in w.inflight.iter_mut().enumerate() {
                    let seq = w.replied + i as u64;
                    if seq < started || task.sink.is_detached() {
                        continue;
                    }
                    w.io.board.cancel(seq);
                    taken.push(Task {
                        frame: task.frame.clone(),
                        fds: task.fds.clone(),
                        sink: task.sink.detach(),
                        batch: task.batch,
                        len: task.len,
                        prefix: std::mem::take(&mut task.prefix),
                        timeout: task.timeout,
                    });
                }
                w.resume();
            }
            taken.extend(unwritten.into_iter().rev());
            // Its head has been seen: do not look again before it is due.
            w.head_since = now;
        }
        self.queue.extend(taken);
    }

    /// Workers to start now so that `processes` are running.
    fn missing_workers(&self, processes: usize) -> usize {
        let running = !self.terminated
            && self.broken.is_none()
            && !(self.closed && self.queue.is_empty())
            && self.retry_spawn_at.is_none_or(|at| Instant::now() >= at);
        if !running {
            return 0;
        }
        let live = self.workers.iter().filter(|w| !w.retiring).count();
        processes.saturating_sub(live)
    }

    /// Hands queued tasks to ready workers with room, least loaded first
    /// (of the idle, the one given work last). Once as many workers are
    /// busy as there are CPUs to run them, the worker given the last task
    /// takes the next while it has room (about 1 ms of work): tiny tasks
    /// stay on workers that are awake, an oversubscribed pool does not
    /// wake 128 processes for 128 tiny tasks (thread pools prefer hot
    /// threads for the same reason), and most tasks are placed without
    /// looking at every worker.
    fn fill(&mut self, max_tasks: Option<u64>) {
        if self.queue.is_empty() {
            return;
        }
        let window = match self.stats.task_ns {
            0 => 1,
            ns => (QUEUED_WORK_NS / ns).clamp(1, MAX_WINDOW),
        } as usize;
        let now = Instant::now();
        // A busy worker whose oldest task has run this long may be stuck in
        // a long one: it gets no more behind it. With every CPU taken, a
        // worker merely waiting for one looks the same for longer.
        let mut overdue = Duration::from_nanos(self.stats.task_ns.saturating_mul(2) + 100_000);
        if self.busy >= cpus() {
            overdue = overdue.max(CROWDED_OVERDUE);
        }
        let usable = |w: &Member| {
            w.ready
                && !w.retiring
                && !w.write_failed
                && w.doom.is_none()
                && max_tasks.is_none_or(|max| w.sent < max)
                && (w.inflight.is_empty() || now - w.head_since < overdue)
        };
        while !self.queue.is_empty() {
            let batch = self.queue.front().is_some_and(|t| t.batch);
            let hot = self.hot.filter(|&i| {
                !batch
                    && self.busy >= cpus()
                    && self
                        .workers
                        .get(i)
                        .is_some_and(|w| (1..window).contains(&w.inflight.len()) && usable(w))
            });
            let pick = match hot {
                Some(i) => Some(i),
                None => self.scan(window, batch, &usable),
            };
            let Some(i) = pick else { break };
            let w = &mut self.workers[i];
            if w.inflight.is_empty() {
                w.head_since = now;
            }
            let task = self.queue.pop_front().expect("not empty");
            w.inflight.push_back(task);
            w.sent += 1;
            self.assigned += 1;
            w.last_assigned = self.assigned;
            self.hot = Some(i);
            if self.touched.last() != Some(&i) {
                self.touched.push(i);
            }
        }
    }

    /// Looks at every worker: the least loaded `usable` one with room, of
    /// the idle the one given work last, or, once as many are busy as there
    /// are CPUs, the least loaded busy one with room first; counts the busy
    /// ones.
    fn scan(
        &mut self,
        window: usize,
        batch: bool,
        usable: &impl Fn(&Member) -> bool,
    ) -> Option<usize> {
        let (mut live, mut work, mut busy) = (0, self.queue.len(), 0);
        let mut best = None::<(usize, (usize, u64))>;
        let mut best_busy = None::<(usize, usize)>;
        for (i, w) in self.workers.iter().enumerate() {
            let load = w.inflight.len();
            work += load;
            if w.retiring || w.write_failed {
                continue;
            }
            live += 1;
            busy += usize::from(load > 0);
            if !usable(w) {
                continue;
            }
            let key = (load, u64::MAX - w.last_assigned);
            if best.is_none_or(|(_, k)| key < k) {
                best = Some((i, key));
            }
            if load > 0 && best_busy.is_none_or(|(_, l)| load < l) {
                best_busy = Some((i, load));
            }
        }
        self.busy = busy;
        if busy >= cpus() && !batch {
            if let Some((i, _)) = best_busy.filter(|&(_, load)| load < window) {
                return Some(i);
            }
        }
        // No worker takes more than its share of the work there is,
        // counting workers still starting: a task written to one worker's
        // socket cannot move to another, so a pool whose second worker is
        // not ready yet would otherwise run a whole map on the first.
        let share = work.div_ceil(live.max(1)).max(1);
        let window = if batch {
            window.min(share).max(2)
        } else {
            window.min(share)
        };
        best.filter(|&(_, (load, _))| load < window).map(|(i, _)| i)
    }

    /// For a submitting thread: writes what the workers `fill` just gave
    /// tasks can take now, as [`flush_all`](Self::flush_all) with
    /// `eager_only`, without looking at the others; returns whether the
    /// dispatcher must be woken: a write blocked, a worker holds tasks whose
    /// replies nobody is reading, or descriptors wait to be retried.
    fn flush_touched(&mut self) -> bool {
        let mut wake = false;
        for &i in &self.touched {
            let Some(w) = self.workers.get_mut(i) else {
                continue;
            };
            wake |= w.flush_eager();
            wake |= !w.inflight.is_empty() && !w.watched && !w.served && !w.read_eof;
            wake |= w.fds_waiting() && w.unwritten() > 0;
        }
        self.touched.clear();
        wake
    }

    /// Writes what every worker can take now; returns whether some worker
    /// is blocked and the dispatcher does not know it yet.
    ///
    /// With `eager_only` (a submitting thread), a worker that already has
    /// two batches (chunks of a `map`) written and unanswered is left alone:
    /// its next reply wakes whoever reads it, who writes the rest. The
    /// submitter then spends its time encoding, not pushing big frames into
    /// a full socket. Single tasks are written at once (measured: faster).
    fn flush_all(&mut self, eager_only: bool) -> bool {
        let mut wake = false;
        for w in &mut self.workers {
            wake |= if eager_only {
                w.flush_eager()
            } else {
                w.unwritten() > 0 && w.flush() && !w.pollout_armed
            };
        }
        wake
    }

    /// A worker died: deliver what it finished (sent or not), fail the
    /// input it was running, put back every input it had not begun, and
    /// reap it.
    fn bury(&mut self, mut w: Member, deliveries: &mut Vec<(Sink, Delivery)>) {
        w.read_replies(deliveries, &mut self.stats);
        let code = w.child.join().unwrap_or(255);
        if w.retiring && w.inflight.is_empty() {
            return; // retired as planned
        }
        if !w.ready {
            self.stats.early_deaths += 1;
            if let Some(why) = w.child.setup_failure() {
                // A start hook failed: as an initializer failing, it breaks
                // the pool if it keeps failing.
                self.stats.init_failures += 1;
                self.stats.init_failed = Some(why);
                self.stats.refusals = 0;
            } else {
                self.stats.refusals = if code == 2 {
                    self.stats.refusals + 1
                } else {
                    0
                };
            }
            self.retry_spawn_at = Some(Instant::now() + backoff(self.stats.early_deaths));
        }
        let pid = w.pid;
        let cause = match w.doom {
            Some(Doom::TimedOut(timeout)) => Error::TaskTimedOut { pid, timeout },
            Some(Doom::Cancelled) => Error::Cancelled,
            None if code < 0 => Error::Killed {
                pid,
                signal: -code,
                limit: w.child.limit_hit(-code),
            },
            None => Error::Exited { pid, code },
        };
        let begun = match w.io.board.remains() {
            Ok(remains) => w.recover(remains, cause, deliveries, &mut self.stats),
            Err(_) => Err(cause),
        };
        if let Err(cause) = begun {
            // The board cannot be read: the tasks the worker may have begun
            // fail, as before boards existed.
            let started = w.io.board.started();
            while w.replied < started {
                let Some(task) = w.inflight.pop_front() else {
                    break;
                };
                w.answered();
                deliveries.push(task.fail(cause.copy()));
            }
        }
        // Tasks it had not begun go back to the front of the queue, in order.
        while let Some(task) = w.inflight.pop_back() {
            if task.sink.is_detached() {
                continue; // cancelled
            }
            self.queue.push_front(task);
        }
        if self.stats.refusals >= MAX_REFUSALS && self.broken.is_none() {
            self.broken = Some(format!(
                "{MAX_REFUSALS} pool workers in a row exited with status 2 before they could \
                 start: the child cannot run its pool worker (its stderr says why); the last \
                 was pid {pid}"
            ));
        }
    }
}

impl Member {
    fn spawn(config: &Config) -> Result<Member> {
        let (ours, theirs) = Conn::pair()?;
        let board = Board::new()?;
        let args = (
            Channel(theirs.into_fd()),
            BoardFd(board.fd().try_clone_to_owned()?),
            InitCall(config.init.clone()),
        );
        let mut process = Process::new(serve::pool_worker, args);
        process.set_setup(
            config
                .setup
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        );
        let name = process.name().replacen("Process-", "PoolWorker-", 1);
        process.set_name(name);
        process.set_daemon(true)?;
        process.start()?;
        let child = process.handle().expect("started");
        let pidfd = child.pidfd_dup();
        Ok(Member {
            pid: child.pid(),
            id: NEXT_WORKER_ID.fetch_add(1, Ordering::Relaxed),
            sock_events: EpollFlags::empty(),
            pidfd_registered: false,
            last_assigned: 0,
            child,
            io: Arc::new(Io {
                sock: ours.into_fd(),
                pidfd,
                board,
            }),
            inflight: VecDeque::new(),
            written: 0,
            out_off: 0,
            inbuf: InBuf::new(),
            sent: 0,
            replied: 0,
            doom: None,
            ready: false,
            write_failed: false,
            read_eof: false,
            retiring: false,
            pollout_armed: false,
            blocked: false,
            head_since: Instant::now(),
            watched: false,
            served: false,
        })
    }

    /// Its oldest task was answered (and so had been written) and left
    /// `inflight`.
    fn answered(&mut self) {
        self.replied += 1;
        self.written = self.written.saturating_sub(1);
    }

    /// The first task of `inflight` of which no byte has been written: from
    /// there on, tasks can be taken back without the worker knowing.
    fn first_untouched(&self) -> usize {
        self.written + usize::from(self.out_off > 0)
    }

    /// Tasks assigned and not yet wholly written.
    fn unwritten(&self) -> usize {
        self.inflight.len() - self.written
    }

    /// Writes as much of the unwritten tasks as the socket takes now;
    /// returns whether it would block with bytes left.
    ///
    /// A task with descriptors is written by a `sendmsg` of its own for each
    /// batch of them, batch `b` with byte `b` of its frame (see `wire.rs`);
    /// how far its frame is written says which batches went.
    fn flush(&mut self) -> bool {
        self.blocked = false;
        while self.unwritten() > 0 && !self.write_failed {
            let head = &self.inflight[self.written];
            let sent = match &head.fds {
                Some(fds) if self.out_off == 0 && !self.fds_fit(fds.len()) => {
                    return false; // after a reply, or in `FDS_RETRY`
                }
                Some(fds) if self.out_off < wire::fd_batches(fds.len()) => {
                    let batch = self.out_off;
                    let last = batch + 1 == wire::fd_batches(fds.len());
                    let end = if last { head.frame.len() } else { batch + 1 };
                    let from = batch * fdpass::MAX_FDS_PER_MESSAGE;
                    let to = fds.len().min(from + fdpass::MAX_FDS_PER_MESSAGE);
                    fdpass::send_with_fds(
                        self.io.sock.as_fd(),
                        &head.frame[batch..end],
                        &fds[from..to],
                    )
                }
                _ => {
                    let mut iov = Vec::with_capacity(self.unwritten().min(64));
                    for (i, task) in self.inflight.iter().skip(self.written).take(64).enumerate() {
                        if i > 0 && task.fds.is_some() {
                            break; // its descriptors go with its first byte
                        }
                        let skip = if i == 0 { self.out_off } else { 0 };
                        iov.push(IoSlice::new(&task.frame[skip..]));
                    }
                    socket::sendmsg::<()>(
                        self.io.sock.as_raw_fd(),
                        &iov,
                        &[],
                        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                        None,
                    )
                }
            };
            match sent {
                Ok(mut n) => {
                    let before = self.written;
                    while n > 0 {
                        let left = self.inflight[self.written].frame.len() - self.out_off;
                        if n >= left {
                            n -= left;
                            self.written += 1;
                            self.out_off = 0;
                        } else {
                            self.out_off += n;
                            n = 0;
                        }
                    }
                    if self.written > before {
                        // A worker spinning for its next task sees it.
                        self.io.board.posted(self.replied + self.written as u64);
                    }
                }
                Err(Errno::EAGAIN) => {
                    self.blocked = true;
                    return true;
                }
                Err(Errno::EINTR) => {}
                // The user has too many descriptors in flight: they drain as
                // workers read; nothing was sent.
                Err(Errno::ETOOMANYREFS) => return false, // in `FDS_RETRY`
                // EPIPE, ECONNRESET: the worker is dying; its pidfd will say so.
                Err(_) => self.write_failed = true,
            }
        }
        false
    }

    /// Whether a task of `fds` descriptors may be written now: it fits in
    /// `FDS_WRITTEN` with those of the tasks written and not yet answered,
    /// or they have none.
    fn fds_fit(&self, fds: usize) -> bool {
        let written: usize = self
            .inflight
            .iter()
            .take(self.written)
            .filter_map(|task| task.fds.as_ref())
            .map(|fds| fds.len())
            .sum();
        written == 0 || written + fds <= FDS_WRITTEN
    }

    /// Whether the next task to write carries descriptors and waits: for
    /// room in `FDS_WRITTEN`, or after `ETOOMANYREFS`.
    fn fds_waiting(&self) -> bool {
        !self.blocked
            && !self.write_failed
            && self.out_off == 0
            && self
                .inflight
                .get(self.written)
                .is_some_and(|task| task.fds.is_some())
    }

    /// Stops the worker (`SIGSTOP`) and waits until it has stopped, so its
    /// board holds still; returns whether it did stop (it may have died).
    fn stop(&self) -> bool {
        let Some(pidfd) = self.io.pidfd.as_ref() else {
            return false; // no pidfd: no way to wait for the stop
        };
        if self.child.send_signal(libc::SIGSTOP).is_err() {
            return false;
        }
        let flags = WaitPidFlag::WSTOPPED
            | WaitPidFlag::WEXITED
            | WaitPidFlag::WNOWAIT
            | WaitPidFlag::WNOHANG;
        let start = Instant::now();
        let mut nap = Duration::from_micros(2);
        while start.elapsed() < STOP_WAIT {
            match wait::waitid(wait::Id::PIDFd(pidfd.as_fd()), flags) {
                Ok(WaitStatus::Stopped(..)) => return true,
                Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
                Ok(_) | Err(_) => return false, // exited, or not ours to wait for
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(1));
        }
        true // stuck in the kernel: read the board anyway
    }

    fn resume(&self) {
        let _ = self.child.send_signal(libc::SIGCONT);
    }

    /// The timeout of the task the worker is on, if the task it is most
    /// likely on has one: the one after those it has finished.
    fn running_timeout(&self) -> Option<Duration> {
        let finished = self.io.board.finished().max(self.replied);
        let index = usize::try_from(finished - self.replied).ok()?;
        self.inflight
            .get(index.min(self.written.saturating_sub(1)))?
            .timeout
    }

    /// When to look at this worker's deadline next, if any of its tasks has
    /// a timeout.
    fn next_deadline_check(&self) -> Option<Duration> {
        if self.doom.is_some() || self.read_eof {
            return None;
        }
        let shortest = self.inflight.iter().filter_map(|t| t.timeout).min()?;
        Some(match self.io.board.deadline() {
            // A deadline already past whose input has finished is stale for
            // the moment until the next input begins: look again soon, not
            // in a loop.
            Some(deadline) => Duration::from_nanos(deadline.saturating_sub(now_ns()))
                .max(Duration::from_millis(1)),
            // Nothing timed runs yet: no input can time out sooner.
            None => shortest,
        })
    }

    /// Kills the worker if the input it runs is past its deadline. The
    /// board says so only as a hint; the worker is stopped and the board
    /// read again, so that an input that finished meanwhile is not blamed
    /// for the next one.
    fn enforce_timeout(&mut self) {
        // The board's words are the worker's hot cache line: read them only
        // for a worker that holds a timed task.
        if self.doom.is_some() || self.read_eof || self.inflight.iter().all(|t| t.timeout.is_none())
        {
            return;
        }
        let overdue = |board: &Board| {
            let (begun, done) = board.inputs();
            begun > done && board.deadline().is_some_and(|d| now_ns() >= d)
        };
        if !overdue(&self.io.board) {
            return;
        }
        let stopped = self.stop();
        if overdue(&self.io.board) {
            let timeout = self.running_timeout().unwrap_or_default();
            self.doom = Some(Doom::TimedOut(timeout));
            let _ = self.child.kill();
        } else if stopped {
            self.resume();
        }
    }

    /// Reads every reply available now and hands them out.
    fn read_replies(&mut self, deliveries: &mut Vec<(Sink, Delivery)>, stats: &mut Stats) {
        while !self.read_eof {
            let more = match self.inbuf.recv_some(self.io.sock.as_fd(), true) {
                Ok((0, _)) => {
                    self.read_eof = true;
                    false
                }
                // A short read drained the socket: poll says when there is more.
                Ok((_, full)) => full,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => true,
                Err(_) => {
                    self.read_eof = true;
                    false
                }
            };
            let mut broken = None;
            loop {
                let body = match self.inbuf.next_frame() {
                    Ok(Some(body)) => body,
                    Ok(None) => break,
                    Err(e) => {
                        broken = Some(e.to_string());
                        break;
                    }
                };
                let who = (self.pid, self.child.name());
                let replied = reply(body, who, &mut self.inflight, deliveries, stats);
                self.head_since = Instant::now();
                match replied {
                    Ok(Reply::Ready) => self.ready = true,
                    Ok(Reply::Task) => self.answered(),
                    Ok(Reply::Other) => {}
                    Err(why) => {
                        broken = Some(why);
                        break;
                    }
                }
            }
            if broken.is_some() {
                // The worker broke the protocol (it cannot, short of memory
                // corruption): kill it, so its tasks fail as for any death.
                self.read_eof = true;
                let _ = self.child.kill();
                return;
            }
            if !more {
                break;
            }
        }
    }

    /// After its death: delivers the replies the worker had finished but
    /// not sent, then settles the task it had begun: the values of its
    /// calls that returned, the failure of the one that was running, and
    /// the rest of it back into `inflight` (which the caller requeues).
    /// `Err` when the board does not add up: the caller fails what the
    /// worker began.
    fn recover(
        &mut self,
        left: Remains,
        cause: Error,
        deliveries: &mut Vec<(Sink, Delivery)>,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        let mut at = 0usize;
        let mut seq = left.out_first;
        while seq < left.finished {
            let Some(len) = left.out.get(at..at + 8) else {
                break;
            };
            let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
            let Some(end) = usize::try_from(len)
                .ok()
                .and_then(|l| (at + 8).checked_add(l))
            else {
                break;
            };
            let Some(body) = left.out.get(at + 8..end) else {
                break;
            };
            if seq > self.replied {
                return Err(cause); // a reply is missing
            }
            if seq == self.replied {
                let who = (self.pid, self.child.name());
                match reply(body, who, &mut self.inflight, deliveries, stats) {
                    Ok(Reply::Task) => self.answered(),
                    _ => return Err(cause),
                }
            }
            at = end;
            seq += 1;
        }
        if left.started <= self.replied {
            return Ok(()); // it had begun nothing it did not answer
        }
        if left.started != self.replied + 1 {
            return Err(cause);
        }
        let Some(mut task) = self.inflight.pop_front() else {
            return Err(cause);
        };
        self.answered();
        if task.sink.is_detached() {
            return Ok(()); // cancelled: nothing of it is wanted
        }
        let counts = left
            .done
            .checked_sub(left.task_base)
            .zip(left.begun.checked_sub(left.task_base))
            .and_then(|(d, b)| Some((usize::try_from(d).ok()?, usize::try_from(b).ok()?)))
            .filter(|&(done, begun)| done <= begun && begun <= done + 1 && begun <= task.len);
        let Some((done, begun)) = counts else {
            deliveries.push(task.fail(cause));
            return Ok(());
        };
        if begun == 0 {
            self.inflight.push_front(task); // none of it ran: it goes back whole
            return Ok(());
        }
        if done > 0 {
            let from = usize::try_from(left.run_at)
                .ok()
                .and_then(|at| at.checked_add(8 + wire::FIRST_FAILURE));
            let Some(bytes) = from.and_then(|from| left.out.get(from..)) else {
                deliveries.push(task.fail(cause));
                return Ok(());
            };
            task.prefix.push(Piece::Values {
                pid: self.pid,
                count: done,
                bytes: bytes.to_vec(),
            });
        }
        let running = begun > done;
        if running {
            task.prefix.push(Piece::Failed {
                count: 1,
                error: cause,
            });
        }
        let rest = task.len - begun;
        if rest == 0 {
            deliveries.push((
                task.sink,
                Delivery::many(task.prefix).with_frame(task.frame),
            ));
            return Ok(());
        }
        task.len = rest;
        match wire::rest_of_task(&task.frame, left.rest, rest) {
            Some(frame) => {
                task.frame = frame;
                self.inflight.push_front(task);
            }
            None => {
                let error = Error::WorkerFailed {
                    pid: self.pid,
                    reason: "its progress board does not fit its task".into(),
                };
                deliveries.push(task.fail(error));
            }
        }
        Ok(())
    }
}

/// What a reply frame was.
enum Reply {
    Ready,
    /// The answer to the oldest task.
    Task,
    Other,
}

/// Handles one reply frame from worker `who` (pid, name).
fn reply(
    body: &[u8],
    who: (u32, &str),
    inflight: &mut VecDeque<Task>,
    deliveries: &mut Vec<(Sink, Delivery)>,
    stats: &mut Stats,
) -> Result<Reply, String> {
    let (pid, name) = who;
    let (&tag, rest) = body.split_first().ok_or("an empty reply")?;
    match tag {
        wire::READY => {
            stats.early_deaths = 0;
            stats.refusals = 0;
            stats.init_failures = 0;
            return Ok(Reply::Ready);
        }
        wire::DONE => {
            let nanos = rest.get(..8).ok_or("a short reply")?;
            stats.observe(u64::from_le_bytes(nanos.try_into().expect("8 bytes")));
            let task = inflight.pop_front().ok_or("a reply to no task")?;
            let count = task.len;
            let bytes = rest[8..].to_vec();
            deliveries.push(task.finish(Piece::Values { pid, count, bytes }));
        }
        wire::FAILED => {
            let task = inflight.pop_front().ok_or("a reply to no task")?;
            let reason = String::from_utf8_lossy(rest).into_owned();
            deliveries.push(task.fail(Error::WorkerFailed { pid, reason }));
        }
        wire::SKIPPED => {
            let task = inflight.pop_front().ok_or("a reply to no task")?;
            deliveries.push(task.fail(Error::Cancelled));
        }
        wire::INIT_FAILED => {
            let (message, location): (String, Option<String>) =
                codec::decode(rest).map_err(|e| e.to_string())?;
            let at = location.map(|l| format!(" at {l}")).unwrap_or_default();
            stats.init_failures += 1;
            stats.init_failed = Some(format!(
                "the initializer failed in {name} (pid {pid}){at}: {message}"
            ));
            return Ok(Reply::Other);
        }
        other => return Err(format!("a reply with unknown tag {other}")),
    }
    Ok(Reply::Task)
}
