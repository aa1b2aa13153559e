//! The parent side of a pool: its workers, its queue of tasks, and the
//! dispatcher thread that moves bytes between them.
//!
//! Each worker has its own socket, so the pool knows exactly which tasks a
//! worker holds. Submitting threads queue tasks and write them straight to
//! an idle worker's socket (no thread hop on the way out). The dispatcher
//! thread polls every worker's socket and pidfd: it reads replies and hands
//! them to their owners, refills workers as they finish, finishes writes that
//! would have blocked, and, when a pidfd says a worker died, fails exactly
//! the tasks that worker had received, naming its pid and how it died, then
//! starts a replacement. Writes never block, so a slow worker never holds
//! up the others. Type-erased throughout: tasks and replies are bytes.

use super::result::{Delivery, Done, Sink};
use super::serve::{self, Channel, InitCall, Initializer};
use super::wire::{self, InBuf};
use crate::codec;
use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::process::{ChildProcess, Process};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{self, MsgFlags, Shutdown};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A worker holds about this much queued work (by the measured task time),
/// so it never waits for the parent between tiny tasks, while long tasks
/// go one at a time to whichever worker is free (as in Python).
const QUEUED_WORK_NS: u64 = 1_000_000;
/// The most tasks one worker holds at once.
const MAX_WINDOW: u64 = 64;
/// This many workers in a row dying before they start breaks the pool.
const MAX_EARLY_DEATHS: u32 = 10;
/// How long `terminate` lets a worker die of SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(1);

/// A task: a whole frame for the worker, and who wants the reply.
pub(crate) struct Task {
    pub(crate) frame: Vec<u8>,
    pub(crate) sink: Sink,
    /// A chunk of several calls: worth pipelining (two per worker) however
    /// long it runs, since moving its data takes time too.
    pub(crate) batch: bool,
}

/// Another copy of a refusal (`PoolClosed` or `PoolBroken`).
fn refused_again(e: &Error) -> Error {
    match e {
        Error::PoolBroken { reason } => Error::PoolBroken {
            reason: reason.clone(),
        },
        _ => Error::PoolClosed,
    }
}

/// A task a worker holds: its owner, and whether it is a batch.
type Held = (Sink, bool);

pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) init: Option<Arc<Initializer>>,
}

/// What the `Pool` handle, its results and the dispatcher share.
pub(crate) struct Shared {
    state: Mutex<State>,
    wake: EventFd,
    config: Config,
}

struct State {
    queue: VecDeque<Task>,
    workers: Vec<Member>,
    closed: bool,
    terminated: bool,
    broken: Option<String>,
    stats: Stats,
    retry_spawn_at: Option<Instant>,
}

/// What reading replies learns beyond the replies themselves.
#[derive(Default)]
struct Stats {
    /// Smoothed run time of one task in nanoseconds; 0 before the first reply.
    task_ns: u64,
    /// Workers in a row that died before they said `READY`.
    early_deaths: u32,
    /// Why the initializer failed, if it did.
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

pub(crate) struct Io {
    sock: OwnedFd,
    pidfd: Option<OwnedFd>,
}

/// One worker process, as the parent sees it.
struct Member {
    child: ChildProcess,
    pid: u32,
    io: Arc<Io>,
    /// Frames assigned and not yet fully written; `out_off` bytes of the
    /// first are written.
    out: VecDeque<Vec<u8>>,
    out_off: usize,
    inbuf: InBuf,
    /// Owners of the tasks assigned to this worker, oldest first; the last
    /// `out.len()` of them are (wholly or partly) unwritten.
    inflight: VecDeque<Held>,
    sent: u64,
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

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Starts the workers; the caller starts the dispatcher thread.
    pub(crate) fn start(config: Config) -> Result<Arc<Shared>> {
        let wake =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
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
            }),
            wake,
            config,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
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
    pub(crate) fn submit_and_serve(&self, task: Task) -> Result<Option<Arc<Io>>> {
        self.submit_inner([task], true)
    }

    fn submit_inner(
        &self,
        tasks: impl IntoIterator<Item = Task>,
        serve: bool,
    ) -> Result<Option<Arc<Io>>> {
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
                task.sink.deliver(Err(refused_again(&e)));
            }
            return Err(e);
        }
        let mut tasks = tasks.into_iter();
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
                        .and_then(|(sink, _)| sink.as_slot())
                        .is_some_and(|slot| Arc::ptr_eq(slot, &mine))
            };
            if let Some(w) = state
                .workers
                .iter_mut()
                .find(|w| took_it(w) && !w.watched && !w.served)
            {
                w.served = true;
                served = Some(w.io.clone());
            }
        }
        let blocked = state.flush_all(true);
        let wake = blocked || state.unwatched_work();
        drop(state);
        if wake {
            self.wake();
        }
        Ok(served)
    }

    /// Reads the replies of the worker behind `io` until `slot` is filled
    /// (or the worker is gone, then the dispatcher fills it), then hands the
    /// worker back to the dispatcher.
    pub(crate) fn serve(&self, io: &Arc<Io>, slot: &super::result::Slot) {
        let mut deliveries = Vec::new();
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
        let mut state = self.lock();
        if let Some(w) = state.workers.iter_mut().find(|w| Arc::ptr_eq(&w.io, io)) {
            w.served = false;
        }
        let wake = state.unwatched_work();
        drop(state);
        if wake {
            self.wake();
        }
    }

    /// Drops the queued (not yet assigned) tasks that feed `stream`.
    pub(crate) fn cancel(&self, stream: &Arc<super::result::Stream>) {
        self.lock().queue.retain(|task| !task.sink.feeds(stream));
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
            .filter(|w| !w.retiring)
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
        let mut plan = self.lock().plan();
        // Each round: wait, then handle what happened and plan the next wait
        // under one lock, then hand out replies outside it (so a woken owner
        // submitting its next task does not find the lock taken).
        while let Some((watch, timeout)) = plan.take() {
            let mut polled = vec![PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
            let mut index = Vec::with_capacity(watch.len());
            for (io, events) in &watch {
                let sock = (!events.is_empty()).then(|| {
                    polled.push(PollFd::new(io.sock.as_fd(), *events));
                    polled.len() - 1
                });
                let pidfd = io.pidfd.as_ref().map(|pidfd| {
                    polled.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
                    polled.len() - 1
                });
                index.push((sock, pidfd));
            }
            let timeout = match timeout {
                None => PollTimeout::NONE,
                Some(t) => {
                    PollTimeout::try_from(t.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX)
                }
            };
            match nix::poll::poll(&mut polled, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
            let revents = |i: Option<usize>| {
                i.and_then(|i| polled[i].revents())
                    .unwrap_or(PollFlags::empty())
            };
            let events: Vec<(PollFlags, bool)> = index
                .iter()
                .map(|&(sock, pidfd)| (revents(sock), !revents(pidfd).is_empty()))
                .collect();
            let woken = polled[0].revents().is_some_and(|r| !r.is_empty());
            drop(polled);
            drop(watch);

            let mut guard = self.lock();
            if woken {
                let _ = self.wake.read();
            }
            let state = &mut *guard;
            let mut died = Vec::new();
            // Only this thread adds or removes workers, so `events` lines up.
            for (i, (sock, exited)) in events.into_iter().enumerate() {
                let w = &mut state.workers[i];
                if w.served {
                    // Its caller reads it; only a write may be ours to finish.
                } else if sock
                    .intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
                {
                    w.read_replies(&mut deliveries, &mut state.stats);
                }
                if sock.contains(PollFlags::POLLOUT) {
                    w.flush();
                }
                let exited = exited || (w.io.pidfd.is_none() && w.child.exitcode().is_some());
                if exited {
                    died.push(i);
                }
            }
            for &i in died.iter().rev() {
                let w = state.workers.remove(i);
                state.bury(w, &mut deliveries);
            }
            self.tend(state, &mut deliveries);
            let spawn = state.missing_workers(self.config.processes);
            if spawn == 0 {
                plan = state.plan();
            }
            drop(guard);

            for (sink, delivery) in deliveries.drain(..) {
                sink.deliver(delivery);
            }
            if spawn > 0 {
                self.replace(spawn);
                plan = self.lock().plan();
            }
        }
        self.stop_now();
    }

    /// After any change: fail what cannot run, retire idle workers that
    /// should go, and hand queued tasks to workers with room.
    fn tend(&self, state: &mut State, deliveries: &mut Vec<(Sink, Delivery)>) {
        if let Some(why) = state.stats.init_failed.take() {
            state.broken.get_or_insert(why);
        }
        if let Some(reason) = &state.broken {
            for task in state.queue.drain(..) {
                deliveries.push((
                    task.sink,
                    Err(Error::PoolBroken {
                        reason: reason.clone(),
                    }),
                ));
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
            if state.workers.iter().all(|w| w.retiring) {
                state.broken = Some(format!("cannot start a pool worker: {e}"));
            } else {
                state.retry_spawn_at = Some(Instant::now() + Duration::from_millis(100));
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
            deliveries.push((task.sink, Err(Error::PoolTerminated)));
        }
        let workers = std::mem::take(&mut state.workers);
        drop(state);
        for w in &workers {
            let _ = w.child.terminate();
        }
        for mut w in workers {
            for (sink, _) in w.inflight.drain(..) {
                deliveries.push((sink, Err(Error::PoolTerminated)));
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

/// What the dispatcher waits for next: each worker's descriptors and
/// socket events, and a timeout.
type Plan = Option<(Vec<(Arc<Io>, PollFlags)>, Option<Duration>)>;

impl State {
    /// The next wait, or `None` when the dispatcher should stop: after
    /// `terminate`, or once a closed (or broken) pool has no work and no
    /// workers left.
    fn plan(&mut self) -> Plan {
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
        let mut watch = Vec::with_capacity(self.workers.len());
        for w in &mut self.workers {
            let mut events = PollFlags::empty();
            // An idle worker's socket stays quiet; its pidfd tells of its death.
            w.watched = !w.read_eof && !w.served && (!w.ready || !w.inflight.is_empty());
            if w.watched {
                events |= PollFlags::POLLIN;
            }
            w.pollout_armed = w.blocked && !w.out.is_empty() && !w.write_failed;
            if w.pollout_armed {
                events |= PollFlags::POLLOUT;
            }
            if w.io.pidfd.is_none() {
                // No pidfd (Linux < 5.3): look at the exit status now and then.
                let slice = Duration::from_millis(10);
                timeout = Some(timeout.map_or(slice, |t| t.min(slice)));
            }
            watch.push((w.io.clone(), events));
        }
        Some((watch, timeout))
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

    /// Hands queued tasks to ready workers with room, least loaded first.
    fn fill(&mut self, max_tasks: Option<u64>) {
        if self.queue.is_empty() {
            return;
        }
        let window = match self.stats.task_ns {
            0 => 1,
            ns => (QUEUED_WORK_NS / ns).clamp(1, MAX_WINDOW),
        } as usize;
        // No worker takes more than its share of the work there is, counting
        // workers still starting: a task written to one worker's socket
        // cannot move to another, so a pool whose second worker is not
        // ready yet would otherwise run a whole map on the first.
        let live = self
            .workers
            .iter()
            .filter(|w| !w.retiring && !w.write_failed)
            .count()
            .max(1);
        let work = self.queue.len() + self.workers.iter().map(|w| w.inflight.len()).sum::<usize>();
        let window = window.min(work.div_ceil(live)).max(1);
        let now = Instant::now();
        let overdue = Duration::from_nanos(self.stats.task_ns.saturating_mul(2) + 100_000);
        while !self.queue.is_empty() {
            let batch = self.queue.front().is_some_and(|t| t.batch);
            let window = if batch { window.max(2) } else { window };
            let best = self
                .workers
                .iter_mut()
                .filter(|w| {
                    w.ready
                        && !w.retiring
                        && !w.write_failed
                        && w.inflight.len() < window
                        && (w.inflight.is_empty() || now - w.head_since < overdue)
                        && max_tasks.is_none_or(|max| w.sent < max)
                })
                .min_by_key(|w| w.inflight.len());
            let Some(w) = best else { break };
            if w.inflight.is_empty() {
                w.head_since = now;
            }
            let task = self.queue.pop_front().expect("not empty");
            w.out.push_back(task.frame);
            w.inflight.push_back((task.sink, task.batch));
            w.sent += 1;
        }
    }

    /// Whether some worker holds tasks whose replies nobody is reading: the
    /// dispatcher must add it to its wait.
    fn unwatched_work(&self) -> bool {
        self.workers
            .iter()
            .any(|w| !w.inflight.is_empty() && !w.watched && !w.served && !w.read_eof)
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
            let written = w.inflight.len() - w.out.len();
            let batches = w.inflight.back().is_some_and(|(_, batch)| *batch);
            if w.out.is_empty() || (eager_only && batches && written >= 2) {
                continue;
            }
            if w.flush() && !w.pollout_armed {
                wake = true;
            }
        }
        wake
    }

    /// A worker died: keep what it finished, put back what it never
    /// received, fail what it held, and reap it.
    fn bury(&mut self, mut w: Member, deliveries: &mut Vec<(Sink, Delivery)>) {
        w.read_replies(deliveries, &mut self.stats);
        let code = w.child.join().unwrap_or(255);
        if w.retiring && w.inflight.is_empty() {
            return; // retired as planned
        }
        if !w.ready {
            self.stats.early_deaths += 1;
        }
        // Frames not even partly written never reached the worker.
        let partly = usize::from(w.out_off > 0);
        while w.out.len() > partly {
            let frame = w.out.pop_back().expect("len checked");
            let (sink, batch) = w.inflight.pop_back().expect("one owner per frame");
            self.queue.push_front(Task { frame, sink, batch });
        }
        let pid = w.pid;
        let died = || {
            if code < 0 {
                Error::Killed { pid, signal: -code }
            } else {
                Error::Exited { pid, code }
            }
        };
        for (sink, _) in w.inflight.drain(..) {
            deliveries.push((sink, Err(died())));
        }
        if self.stats.early_deaths >= MAX_EARLY_DEATHS && self.broken.is_none() {
            self.broken = Some(format!(
                "{MAX_EARLY_DEATHS} workers in a row died before they could start; the last: {}",
                died()
            ));
        }
    }
}

impl Member {
    fn spawn(config: &Config) -> Result<Member> {
        let (ours, theirs) = Conn::pair()?;
        let args = (Channel(theirs.into_fd()), InitCall(config.init.clone()));
        let mut process = Process::new(serve::pool_worker, args);
        let name = process.name().replacen("Process-", "PoolWorker-", 1);
        process.set_name(name);
        process.set_daemon(true)?;
        process.start()?;
        let child = process.handle().expect("started");
        let pidfd = child.sentinel();
        Ok(Member {
            pid: child.pid(),
            child,
            io: Arc::new(Io {
                sock: ours.into_fd(),
                pidfd,
            }),
            out: VecDeque::new(),
            out_off: 0,
            inbuf: InBuf::new(),
            inflight: VecDeque::new(),
            sent: 0,
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

    /// Writes as much of `out` as the socket takes now; returns whether it
    /// would block with bytes left.
    fn flush(&mut self) -> bool {
        self.blocked = false;
        while !self.out.is_empty() && !self.write_failed {
            let mut iov = Vec::with_capacity(self.out.len().min(64));
            for (i, frame) in self.out.iter().take(64).enumerate() {
                let skip = if i == 0 { self.out_off } else { 0 };
                iov.push(IoSlice::new(&frame[skip..]));
            }
            let sent = socket::sendmsg::<()>(
                self.io.sock.as_raw_fd(),
                &iov,
                &[],
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                None,
            );
            match sent {
                Ok(mut n) => {
                    while n > 0 {
                        let left = self.out[0].len() - self.out_off;
                        if n >= left {
                            n -= left;
                            self.out.pop_front();
                            self.out_off = 0;
                        } else {
                            self.out_off += n;
                            n = 0;
                        }
                    }
                }
                Err(Errno::EAGAIN) => {
                    self.blocked = true;
                    return true;
                }
                Err(Errno::EINTR) => {}
                // EPIPE, ECONNRESET: the worker is dying; its pidfd will say so.
                Err(_) => self.write_failed = true,
            }
        }
        false
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
                match self.inbuf.next_frame() {
                    Ok(Some(body)) => {
                        let who = (self.pid, self.child.name());
                        let replied = reply(body, who, &mut self.inflight, deliveries, stats);
                        self.head_since = Instant::now();
                        match replied {
                            Ok(ready) => self.ready |= ready,
                            Err(why) => {
                                broken = Some(why);
                                break;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        broken = Some(e.to_string());
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
}

/// Handles one reply frame from worker `who` (pid, name); returns whether
/// it said `READY`.
fn reply(
    body: &[u8],
    who: (u32, &str),
    inflight: &mut VecDeque<Held>,
    deliveries: &mut Vec<(Sink, Delivery)>,
    stats: &mut Stats,
) -> Result<bool, String> {
    let (pid, name) = who;
    let (&tag, rest) = body.split_first().ok_or("an empty reply")?;
    match tag {
        wire::READY => {
            stats.early_deaths = 0;
            return Ok(true);
        }
        wire::DONE => {
            let nanos = rest.get(..8).ok_or("a short reply")?;
            stats.observe(u64::from_le_bytes(nanos.try_into().expect("8 bytes")));
            let (sink, _) = inflight.pop_front().ok_or("a reply to no task")?;
            let done = Done {
                pid,
                payload: rest[8..].to_vec(),
            };
            deliveries.push((sink, Ok(done)));
        }
        wire::FAILED => {
            let (sink, _) = inflight.pop_front().ok_or("a reply to no task")?;
            let reason = String::from_utf8_lossy(rest).into_owned();
            deliveries.push((sink, Err(Error::WorkerFailed { pid, reason })));
        }
        wire::INIT_FAILED => {
            let (message, location): (String, Option<String>) =
                codec::decode(rest).map_err(|e| e.to_string())?;
            let at = location.map(|l| format!(" at {l}")).unwrap_or_default();
            stats.init_failed.get_or_insert(format!(
                "the initializer failed in {name} (pid {pid}){at}: {message}"
            ));
        }
        other => return Err(format!("a reply with unknown tag {other}")),
    }
    Ok(false)
}
