//! Chaos rounds: processes SIGKILLed at random moments under load, with the
//! invariants checked after every round.
//!
//! One implementation, two entry points: the bounded tests in
//! `tests/tests/chaos.rs` run each [`Scenario`] for a few seconds, and
//! `examples/chaos.rs` runs them all for as long as asked (a soak). Both call
//! [`run`], which returns a [`Summary`]; a broken invariant is counted as a
//! violation (and printed to stderr as it happens) instead of panicking, so a
//! soak reports every one of them.
//!
//! Every round checks its own outcome (each pool task answered exactly once,
//! as a result or as its worker's death; no queue message duplicated,
//! reordered, corrupted or invented; the lock acquirable and its data
//! consistent; barrier parties released; a killed tree gone within 1 s; a
//! resource limit reported as a typed error or a death), then the common
//! invariants: no child left (zombie or not), the same descriptors open in
//! `/proc/self/fd` as before the round, nothing of ours left in `/dev/shm`.
//!
//! Every wait is bounded, and a watchdog aborts the process if a round runs
//! for longer than [`ROUND_LIMIT`], so a bug fails instead of hanging.

use crate::{alive, child_pids, open_fds, wait_until};
use multiproc::{
    AcquireTimeoutError, Barrier, BarrierWaitError, Error, Event, GetTimeoutError, Lock, OwnerDied,
    Pool, Process, PutError, Queue, RawArray, Semaphore, SharedMemory, TryGetError, Value, worker,
};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// The longest any single wait of a round may take before it counts as a
/// hang (a violation).
const BOUND: Duration = Duration::from_secs(30);

/// A round still running after this long aborts the whole process: a hang
/// must fail loudly, never stall a test or a soak.
pub const ROUND_LIMIT: Duration = Duration::from_secs(240);

/// How long the common invariants may take to settle after a round
/// (descriptors closed by other threads, children reaped).
const SETTLE: Duration = Duration::from_secs(5);

/// The most violation details a [`Summary`] keeps (all are counted).
const MAX_DETAILS: usize = 100;

// ---------------------------------------------------------------------------
// Randomness

/// A tiny xorshift64* generator: reproducible from its seed, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        // splitmix64 once, so that close seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// An index below `n` (which must not be 0).
    pub fn index(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with the given probability, in percent.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// A duration of `lo..=hi` milliseconds.
    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    /// A duration of `lo..=hi` microseconds.
    pub fn us(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_micros(self.range(lo, hi))
    }
}

/// A seed from the clock and the pid, for runs not given one.
pub fn time_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

// ---------------------------------------------------------------------------
// Configuration and summary

/// A kind of round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scenario {
    /// Pool tasks while random (started) workers are SIGKILLed: every task
    /// comes back exactly once, as its result or as its worker's death
    /// (`Killed`, signal 9, naming a pid that was killed).
    Pool,
    /// Producers and consumers of one queue SIGKILLed at random moments:
    /// nothing duplicated, invented, corrupted or reordered per producer;
    /// no more lost than one message per killed consumer.
    Queue,
    /// Holders increment counters under a `Lock` (and a `Value` and a named
    /// `SharedMemory`) and are SIGKILLed holding it: the lock stays
    /// acquirable, a dead holder is reported (`OwnerDied`) and the data is
    /// consistent with one interrupted critical section at most.
    Lock,
    /// Barrier parties in a loop, one or two SIGKILLed: the others are
    /// released with `Broken` or `Timeout` within the bound, and the barrier
    /// works again after `reset`.
    Barrier,
    /// A child with children and grandchildren (and sometimes a pool),
    /// SIGKILLed grown or while growing: no process of the tree is alive
    /// 1 s later.
    Tree,
    /// A child with `RLIMIT_NOFILE` 64: running out of descriptors is a
    /// typed error (`Io`, `Spawn`), and pool, queue, lock and barrier rounds
    /// run inside it with their invariants.
    Nofile,
    /// Children with a small `RLIMIT_AS` that allocate past it: a process,
    /// pool tasks (the rest of the pool goes on) and a producer filling a
    /// queue; each failure is reported as a death (`SIGABRT`) or a typed
    /// error, and the queue keeps every message whose `put` returned.
    AddressSpace,
}

impl Scenario {
    /// Every scenario, in the order a run cycles through them.
    pub const ALL: [Scenario; 7] = [
        Scenario::Pool,
        Scenario::Queue,
        Scenario::Lock,
        Scenario::Barrier,
        Scenario::Tree,
        Scenario::Nofile,
        Scenario::AddressSpace,
    ];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Pool => "pool",
            Scenario::Queue => "queue",
            Scenario::Lock => "lock",
            Scenario::Barrier => "barrier",
            Scenario::Tree => "tree",
            Scenario::Nofile => "nofile",
            Scenario::AddressSpace => "as",
        }
    }

    /// The scenario called `name`.
    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What [`run`] does.
#[derive(Debug, Clone)]
pub struct Config {
    /// Keep starting rounds until this much time has passed.
    pub duration: Duration,
    /// But run at least this many rounds (so every scenario runs once);
    /// rounds a `nofile` child runs inside it are not counted here.
    pub min_rounds: u64,
    /// And at most this many, if set.
    pub max_rounds: Option<u64>,
    /// The round kinds, run in turn.
    pub scenarios: Vec<Scenario>,
    /// The seed of every random choice (printed in the summary).
    pub seed: u64,
    /// Threads that burn CPU while the rounds run, for load.
    pub load_threads: usize,
    /// Print the summary so far to stderr this often, if set.
    pub progress: Option<Duration>,
}

impl Config {
    /// Every scenario for `duration`, with a seed from the clock and one
    /// load thread.
    pub fn new(duration: Duration) -> Config {
        Config {
            duration,
            min_rounds: Scenario::ALL.len() as u64,
            max_rounds: None,
            scenarios: Scenario::ALL.to_vec(),
            seed: time_seed(),
            load_threads: 1,
            progress: None,
        }
    }

    /// Only `scenario`, for `duration` and at least one round.
    pub fn only(scenario: Scenario, duration: Duration) -> Config {
        Config {
            min_rounds: 1,
            scenarios: vec![scenario],
            ..Config::new(duration)
        }
    }
}

/// What a run did, and what it found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// The seed of the run.
    pub seed: u64,
    /// Rounds run (nested rounds of `nofile` included).
    pub rounds: u64,
    /// Processes SIGKILLed by the chaos (not counting clean-up).
    pub kills: u64,
    /// Of those, pool workers killed before they were seen answering
    /// (starting, most of them).
    pub start_kills: u64,
    /// Pool tasks submitted.
    pub tasks: u64,
    /// Pool inputs that failed with `TaskTimedOut` (each one meant to hang).
    pub timeouts: u64,
    /// Pool inputs that came back `Cancelled` (their `cancel` returned true).
    pub cancels: u64,
    /// Queue messages received (by consumers or the final drain).
    pub messages: u64,
    /// Broken invariants; must be 0.
    pub violations: u64,
    /// The first violations, described.
    pub details: Vec<String>,
    /// Rounds per scenario name.
    pub per_scenario: BTreeMap<String, u64>,
    /// How often each notable outcome was seen (tasks failed with their
    /// worker, dead lock holders reported, barrier timeouts, ...), to show
    /// what a run exercised.
    pub events: BTreeMap<String, u64>,
    /// Wall time of the run, in seconds.
    pub secs: f64,
}

impl Summary {
    /// Adds the counts of `other` (a nested run) to these.
    pub fn absorb(&mut self, other: &Summary) {
        self.rounds += other.rounds;
        self.kills += other.kills;
        self.start_kills += other.start_kills;
        self.tasks += other.tasks;
        self.timeouts += other.timeouts;
        self.cancels += other.cancels;
        self.messages += other.messages;
        self.violations += other.violations;
        for d in &other.details {
            if self.details.len() < MAX_DETAILS {
                self.details.push(d.clone());
            }
        }
        for (k, v) in &other.events {
            *self.events.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.per_scenario {
            let k = k.strip_suffix(" (nested)").unwrap_or(k);
            *self
                .per_scenario
                .entry(format!("{k} (nested)"))
                .or_default() += v;
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chaos: {} rounds, {} kills ({} while starting), {} tasks ({} timed out, {} cancelled), {} messages, {} violations in {:.0} s (seed {})",
            self.rounds,
            self.kills,
            self.start_kills,
            self.tasks,
            self.timeouts,
            self.cancels,
            self.messages,
            self.violations,
            self.secs,
            self.seed
        )
    }
}

// ---------------------------------------------------------------------------
// The driver

/// Runs rounds as `config` says and returns what happened. Never panics on a
/// broken invariant: it counts it, prints it to stderr and goes on.
pub fn run(config: &Config) -> Summary {
    assert!(!config.scenarios.is_empty(), "no scenario to run");
    let start = Instant::now();
    let mut sum = Summary {
        seed: config.seed,
        ..Summary::default()
    };
    let mut rng = Rng::new(config.seed);
    let stop = Arc::new(AtomicBool::new(false));
    let armed: Arc<Mutex<Option<(Instant, String)>>> = Arc::new(Mutex::new(None));
    let mut threads = Vec::new();
    for _ in 0..config.load_threads {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || burn(&stop)));
    }
    {
        let (stop, armed) = (stop.clone(), armed.clone());
        threads.push(std::thread::spawn(move || watchdog(&stop, &armed)));
    }
    preflight(&mut sum);
    let mut last_progress = Instant::now();
    // Rounds of this run (`sum.rounds` also counts a child's nested ones).
    for n in 0u64.. {
        let enough_time = start.elapsed() >= config.duration && n >= config.min_rounds;
        if enough_time || config.max_rounds.is_some_and(|m| n >= m) {
            break;
        }
        let kind = config.scenarios[n as usize % config.scenarios.len()];
        let seed = rng.next_u64();
        let label = format!("round {n} ({}, seed {seed})", kind.name());
        *armed.lock().unwrap() = Some((Instant::now() + ROUND_LIMIT, label.clone()));
        one_round(kind, seed, label, &mut sum);
        *armed.lock().unwrap() = None;
        if let Some(every) = config.progress
            && last_progress.elapsed() >= every
        {
            last_progress = Instant::now();
            sum.secs = start.elapsed().as_secs_f64();
            eprintln!("{sum} so far");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    sum.secs = start.elapsed().as_secs_f64();
    sum
}

/// Runs one round of `kind` from its seed, then the common invariants.
fn one_round(kind: Scenario, seed: u64, label: String, sum: &mut Summary) {
    let before = Baseline::take();
    let mut round = Round {
        rng: Rng::new(seed),
        sum,
        label,
    };
    match kind {
        Scenario::Pool => round_pool(&mut round),
        Scenario::Queue => round_queue(&mut round),
        Scenario::Lock => round_lock(&mut round),
        Scenario::Barrier => round_barrier(&mut round),
        Scenario::Tree => round_tree(&mut round),
        Scenario::Nofile => round_nofile(&mut round),
        Scenario::AddressSpace => round_address_space(&mut round),
    }
    before.check(&mut round);
    sum.rounds += 1;
    *sum.per_scenario.entry(kind.name().to_string()).or_default() += 1;
}

/// Replays the round of `kind` whose seed a violation printed (`round N
/// (kind, seed S)`), `times` times, without load or watchdog.
pub fn replay(kind: Scenario, seed: u64, times: u64) -> Summary {
    let start = Instant::now();
    let mut sum = Summary {
        seed,
        ..Summary::default()
    };
    for i in 0..times {
        let label = format!("replay {i} ({}, seed {seed})", kind.name());
        one_round(kind, seed, label, &mut sum);
    }
    sum.secs = start.elapsed().as_secs_f64();
    sum
}

/// Spins until `stop`.
fn burn(stop: &AtomicBool) {
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

/// Aborts the process when the armed round passes its deadline.
fn watchdog(stop: &AtomicBool, armed: &Mutex<Option<(Instant, String)>>) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if let Some((deadline, label)) = &*armed.lock().unwrap()
            && Instant::now() > *deadline
        {
            eprintln!(
                "chaos: VIOLATION in {label}: still running after {ROUND_LIMIT:?}; aborting (pid {})",
                std::process::id()
            );
            std::process::abort();
        }
    }
}

/// Checks that this binary's children find the workers of this module
/// (registered from a library crate), before any round relies on it.
fn preflight(sum: &mut Summary) {
    let mut round = Round {
        rng: Rng::new(0),
        sum,
        label: "preflight".into(),
    };
    let mut p = Process::new(ping, (7,));
    match p.start().and_then(|()| p.result()) {
        Ok(8) => {}
        Ok(other) => round.violation(format!("ping answered {other}")),
        Err(e) => round.violation(format!("a worker of the chaos module did not run: {e}")),
    }
}

/// The state of one round: its random stream and where findings go.
struct Round<'a> {
    rng: Rng,
    sum: &'a mut Summary,
    label: String,
}

impl Round<'_> {
    fn event(&mut self, what: &str) {
        *self.sum.events.entry(what.to_string()).or_default() += 1;
    }

    fn violation(&mut self, what: impl fmt::Display) {
        let line = format!("{}: {what}", self.label);
        eprintln!("chaos: VIOLATION in {line} (pid {})", std::process::id());
        self.sum.violations += 1;
        if self.sum.details.len() < MAX_DETAILS {
            self.sum.details.push(line);
        }
    }
}

/// What the common invariants compare against.
struct Baseline {
    fds: Vec<i32>,
    shm: BTreeSet<String>,
}

/// The prefix of every `/dev/shm` name this process creates.
fn shm_prefix() -> String {
    format!("multiproc-chaos-{}-", std::process::id())
}

/// This process's entries in `/dev/shm`.
fn shm_ours() -> BTreeSet<String> {
    let prefix = shm_prefix();
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn describe_fd(fd: i32) -> String {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|t| t.display().to_string())
        .unwrap_or_else(|_| "?".into());
    format!("{fd} -> {target}")
}

/// The state letter of `pid` in `/proc` (`Z` for a zombie).
fn state_of(pid: u32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let i = s.rfind(')')?;
            s[i + 1..].trim_start().chars().next()
        })
        .unwrap_or('?')
}

impl Baseline {
    fn take() -> Baseline {
        Baseline {
            fds: open_fds(),
            shm: shm_ours(),
        }
    }

    /// No child left, no descriptor leaked, nothing left in `/dev/shm`.
    fn check(&self, r: &mut Round<'_>) {
        if !wait_until(SETTLE, || child_pids().is_empty()) {
            let kids = child_pids();
            let listed: Vec<String> = kids
                .iter()
                .map(|&p| format!("{p} ({})", state_of(p)))
                .collect();
            r.violation(format!(
                "children left after the round (Z = zombie): {}",
                listed.join(", ")
            ));
            // Clean up so that the next round starts clean.
            for &p in &kids {
                sigkill(p);
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p as i32), None);
            }
        }
        if !wait_until(SETTLE, || open_fds() == self.fds) {
            let now = open_fds();
            let leaked: Vec<String> = now
                .iter()
                .filter(|fd| !self.fds.contains(fd))
                .map(|&fd| describe_fd(fd))
                .collect();
            let closed: Vec<&i32> = self.fds.iter().filter(|fd| !now.contains(fd)).collect();
            r.violation(format!(
                "descriptors changed: leaked [{}], closed {closed:?}",
                leaked.join(", ")
            ));
        }
        let left: Vec<String> = shm_ours().difference(&self.shm).cloned().collect();
        if !left.is_empty() {
            r.violation(format!("left in /dev/shm: {left:?}"));
            for name in left {
                let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
            }
        }
    }
}

fn sigkill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Joins `p` within `bound`; on a timeout, reports it, kills and reaps it.
fn join_bounded<W: multiproc::Worker>(
    r: &mut Round<'_>,
    p: &Process<W>,
    what: &str,
    bound: Duration,
) -> Option<i32> {
    match p.join_timeout(bound) {
        Ok(Some(code)) => Some(code),
        Ok(None) => {
            r.violation(format!(
                "{what} (pid {:?}) still running after {bound:?}",
                p.pid()
            ));
            let _ = p.kill();
            let _ = p.join_timeout(BOUND);
            None
        }
        Err(e) => {
            r.violation(format!("joining {what}: {e}"));
            None
        }
    }
}

// ---------------------------------------------------------------------------
// Workers

/// Answers `n + 1`: proves that a child of this binary finds the workers of
/// this library module.
#[worker]
pub fn ping(n: u32) -> u32 {
    n + 1
}

/// A pool task: spins a little (a few to 60 µs) and says who ran it.
#[worker]
fn chaos_task(id: u64) -> (u64, u32) {
    let until = Instant::now() + Duration::from_micros(id.wrapping_mul(0x9E37) % 60);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    (id, std::process::id())
}

// ---------------------------------------------------------------------------
// Pool

/// Where the inputs of a pool round count their runs. A handle cannot be a
/// task's argument, so each worker gets it from its initializer.
static RUNS: OnceLock<RawArray<u32>> = OnceLock::new();

/// The bit of a [`chaos_counted`] input that makes it hang.
const HANG_BIT: u64 = 1 << 63;

/// How long a hanging input sleeps: past [`BOUND`], so only its timeout, a
/// kill or a cancel ends it within a round.
const HANG: Duration = Duration::from_secs(100);

/// A pool initializer: keeps the run counts, then takes `start_us` to start
/// (a window in which the worker is killed while starting).
#[worker]
fn chaos_pool_init(runs: RawArray<u32>, start_us: u64) {
    let _ = RUNS.set(runs);
    std::thread::sleep(Duration::from_micros(start_us));
}

/// The value input `id` must come back with.
fn counted_value(id: u64) -> u64 {
    mix(0xC0_FFEE, id)
}

/// A pool task: counts that input `id` started (its slot in [`RUNS`]), then
/// spins a little (a few to 60 µs), or hangs if [`HANG_BIT`] is set; returns
/// the id, its value and who ran it.
#[worker]
fn chaos_counted(input: u64) -> (u64, u64, u32) {
    let id = input & !HANG_BIT;
    if let Some(runs) = RUNS.get()
        && let Some(before) = runs.get(id as usize)
    {
        runs.set(id as usize, before.saturating_add(1));
    }
    if input & HANG_BIT != 0 {
        std::thread::sleep(HANG);
    } else {
        let until = Instant::now() + Duration::from_micros(id.wrapping_mul(0x9E37) % 60);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
    (id, counted_value(id), std::process::id())
}

/// What became of one input of a pool round: its result, or why it failed
/// (the error itself, not wrapped in `TaskFailed`).
type Outcome = multiproc::Result<(u64, u64, u32)>;

/// The call a pool round makes: its chunk size, and a per-call timeout.
fn pool_call(pool: &Pool, chunk: usize, per_call: Option<Duration>) -> multiproc::Chunked<'_> {
    match per_call {
        Some(t) => pool.timeout(t).chunksize(chunk),
        None => pool.chunksize(chunk),
    }
}

/// An outcome of `imap`/`imap_unordered` as the input it is about and what
/// became of it; `None` for one that names no input.
fn unwrap_outcome(res: multiproc::Result<(u64, u64, u32)>) -> Option<(u64, Outcome)> {
    match res {
        Ok(v) => Some((v.0, Ok(v))),
        Err(Error::TaskFailed { index, source }) => Some((index as u64, Err(*source))),
        Err(_) => None,
    }
}

/// What a pool round did, for [`audit_pool`].
struct PoolRun {
    /// Inputs submitted: `0..n`.
    n: u64,
    /// The inputs that hang.
    hangs: BTreeSet<u64>,
    /// The timeout of every input, if any.
    timeout: Option<Duration>,
    /// What became of each input that the round was told about.
    outcomes: Vec<(u64, Outcome)>,
    /// Inputs of a failed `map_async` other than the failure it reported:
    /// their fate is not told, only that they ran at most once.
    untold: BTreeSet<u64>,
    /// Inputs whose `cancel` returned true.
    cancelled: BTreeSet<u64>,
    /// Workers the round SIGKILLed.
    killed: HashSet<u32>,
    /// How often each input started, from [`RUNS`].
    runs: Vec<u32>,
}

/// The invariants of a pool round: every input answered once (or untold);
/// no innocent failure (a failed input is one whose worker the round killed
/// while it ran, one that hung past its timeout, or one cancelled); nothing
/// ran twice; every success ran once and has its value; a killed worker
/// fails one input at most. Returns the workers the pool killed for
/// timeouts.
fn audit_pool(r: &mut Round<'_>, run: &PoolRun) -> HashSet<u32> {
    let mut answered = vec![0u32; run.n as usize];
    // The inputs each killed worker's death failed.
    let mut blamed: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut timed_out = HashSet::new();
    let (mut timeouts, mut cancels) = (0u64, 0u64);
    for (id, res) in &run.outcomes {
        let id = *id;
        let Some(count) = answered.get_mut(id as usize) else {
            r.violation(format!("input {id} was never submitted"));
            continue;
        };
        *count += 1;
        if *count == 2 {
            r.violation(format!("input {id} answered twice"));
        }
        let ran = run.runs[id as usize];
        let hang = run.hangs.contains(&id);
        match res {
            Ok((got, value, _)) => {
                if *got != id || *value != counted_value(id) {
                    r.violation(format!("input {id} came back as ({got}, {value:#x})"));
                }
                if hang {
                    r.violation(format!("input {id} hangs, yet it succeeded"));
                }
                if ran != 1 {
                    r.violation(format!("input {id} succeeded but started {ran} times"));
                }
            }
            Err(Error::Killed { pid, signal: 9, .. }) if run.killed.contains(pid) => {
                blamed.entry(*pid).or_default().push(id);
                match ran {
                    1 => r.event("pool: input failed with its killed worker"),
                    // Killed between the pool marking it begun and its
                    // first line: it was the one running.
                    0 => {
                        r.event("pool: input failed with its worker, killed before its first line")
                    }
                    _ => r.violation(format!(
                        "input {id} failed with worker {pid}, started {ran} times"
                    )),
                }
            }
            Err(Error::TaskTimedOut { pid, timeout }) => {
                timeouts += 1;
                timed_out.insert(*pid);
                if !hang {
                    r.violation(format!(
                        "input {id} does not hang, yet it timed out (worker {pid}, {timeout:?})"
                    ));
                }
                if Some(*timeout) != run.timeout {
                    r.violation(format!(
                        "input {id} timed out after {timeout:?}, its timeout is {:?}",
                        run.timeout
                    ));
                }
                if ran != 1 {
                    r.violation(format!("input {id} timed out but started {ran} times"));
                }
            }
            Err(Error::Cancelled) if run.cancelled.contains(&id) => {
                cancels += 1;
                match ran {
                    0 => r.event("pool: cancelled input never ran"),
                    1 => r.event("pool: cancelled input had started"),
                    _ => r.violation(format!("cancelled input {id} started {ran} times")),
                }
            }
            Err(e) => r.violation(format!(
                "input {id} (hangs: {hang}, cancelled: {}) failed with {e:?}: an innocent failure",
                run.cancelled.contains(&id)
            )),
        }
    }
    for (pid, ids) in &blamed {
        if ids.len() > 1 {
            r.violation(format!(
                "the death of worker {pid} failed {} inputs {ids:?}: only the one it ran may fail",
                ids.len()
            ));
        }
    }
    let killed_failures: usize = blamed.values().map(Vec::len).sum();
    if killed_failures > run.killed.len() {
        r.violation(format!(
            "{killed_failures} inputs failed as Killed, for {} kills",
            run.killed.len()
        ));
    }
    if timeouts > run.hangs.len() as u64 {
        r.violation(format!(
            "{timeouts} inputs timed out, {} hang",
            run.hangs.len()
        ));
    }
    let twice: Vec<usize> = (0..run.n as usize).filter(|&i| run.runs[i] > 1).collect();
    if !twice.is_empty() {
        r.violation(format!(
            "{} inputs started more than once: {:?}..",
            twice.len(),
            &twice[..twice.len().min(10)]
        ));
    }
    let missing: Vec<u64> = (0..run.n)
        .filter(|&i| answered[i as usize] == 0 && !run.untold.contains(&i))
        .collect();
    if !missing.is_empty() {
        r.violation(format!(
            "{} of {} inputs never answered: {:?}..",
            missing.len(),
            run.n,
            &missing[..missing.len().min(10)]
        ));
    }
    r.sum.timeouts += timeouts;
    r.sum.cancels += cancels;
    timed_out
}

fn round_pool(r: &mut Round<'_>) {
    let workers = r.rng.range(2, 3) as usize;
    let mode = r.rng.range(0, 4);
    let n = r.rng.range(2_000, 20_000);
    let chunk = if mode == 0 {
        1
    } else {
        r.rng.range(1, 64) as usize
    };
    // No timeout, the builder's, or one per call.
    let timeouts = r.rng.range(0, 2);
    let timeout = (timeouts > 0).then(|| r.rng.ms(150, 400));
    let per_call = timeout.filter(|_| timeouts == 2);
    // Inputs that hang: under a timeout, or (apply_async) cancelled once
    // they run.
    let mut hangs = BTreeSet::new();
    if timeout.is_some() || mode == 2 {
        for _ in 0..r.rng.range(1, 4) {
            hangs.insert(r.rng.range(0, n - 1));
        }
    }
    let start_us = if r.rng.chance(50) {
        r.rng.range(500, 8_000)
    } else {
        0
    };
    // Kills of workers not yet seen answering (starting, most of them), in
    // bursts: right after the build, and now and then after a kill.
    let start_kills = if r.rng.chance(40) {
        r.rng.range(3, 10)
    } else {
        0
    };
    let runs = match RawArray::<u32>::new(n as usize) {
        Ok(a) => a,
        Err(e) => return r.violation(format!("cannot create the run counts: {e}")),
    };
    let mut builder = Pool::builder()
        .processes(workers)
        .initializer(chaos_pool_init, (runs.clone(), start_us));
    if r.rng.chance(30) {
        // Workers also retire on their own while others are killed.
        builder = builder.max_tasks_per_child(r.rng.range(50, 2_000));
    }
    if let (Some(t), 1) = (timeout, timeouts) {
        builder = builder.task_timeout(t);
    }
    let pool = match builder.build() {
        Ok(p) => p,
        Err(e) => return r.violation(format!("cannot build a pool: {e}")),
    };
    // What the round does, in what it reports.
    let how = [
        "imap_unordered",
        "imap_unordered",
        "apply_async",
        "imap",
        "map_async",
    ];
    r.label = format!(
        "{} [{workers} workers, {} of {n}, chunk {chunk}, timeout {timeout:?}{}, hangs {hangs:?}, start {start_us} us, {start_kills} start kills]",
        r.label,
        how[mode as usize],
        if per_call.is_some() { " per call" } else { "" },
    );
    let tag = |i: u64| if hangs.contains(&i) { i | HANG_BIT } else { i };
    let seen = Mutex::new(HashSet::new());
    let killed = Mutex::new(HashSet::new());
    let done = AtomicBool::new(false);
    let kills = AtomicU64::new(0);
    let start_killed = AtomicU64::new(0);
    let mut killer_rng = Rng::new(r.rng.next_u64());
    let mut rng = Rng::new(r.rng.next_u64());
    let (lo, hi) = if r.rng.chance(50) { (1, 10) } else { (5, 60) };
    let mut outcomes: Vec<(u64, Outcome)> = Vec::with_capacity(n as usize);
    let mut untold = BTreeSet::new();
    let mut cancelled = BTreeSet::new();
    let mut problems = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            let kill = |victim: u32| {
                killed.lock().unwrap().insert(victim);
                sigkill(victim);
                kills.fetch_add(1, Ordering::Relaxed);
            };
            let mut budget = start_kills;
            // Kills every worker not seen answering as it appears, for a
            // few ms (or until the budget is spent).
            let burst = |budget: &mut u64, rng: &mut Rng| {
                let until = Instant::now() + rng.ms(1, 15);
                while *budget > 0 && Instant::now() < until && !done.load(Ordering::Relaxed) {
                    let fresh: Vec<u32> = {
                        let seen = seen.lock().unwrap();
                        let killed = killed.lock().unwrap();
                        pool.pids()
                            .into_iter()
                            .filter(|p| !seen.contains(p) && !killed.contains(p))
                            .collect()
                    };
                    for p in fresh.into_iter().take(*budget as usize) {
                        kill(p);
                        start_killed.fetch_add(1, Ordering::Relaxed);
                        *budget -= 1;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            };
            if budget > 0 {
                burst(&mut budget, &mut killer_rng);
            }
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(killer_rng.ms(lo, hi));
                let candidates: Vec<u32> = {
                    let seen = seen.lock().unwrap();
                    let killed = killed.lock().unwrap();
                    pool.pids()
                        .into_iter()
                        .filter(|p| seen.contains(p) && !killed.contains(p))
                        .collect()
                };
                if candidates.is_empty() {
                    continue;
                }
                kill(candidates[killer_rng.index(candidates.len())]);
                if budget > 0 && killer_rng.chance(20) {
                    // Its replacement, as it starts.
                    burst(&mut budget, &mut killer_rng);
                }
            }
        });
        let note = |res: &Outcome| {
            if let Ok((_, _, pid)) = res {
                seen.lock().unwrap().insert(*pid);
            }
        };
        let call = || pool_call(&pool, chunk, per_call);
        match mode {
            0 | 1 => match call().imap_unordered(chaos_counted, (0..n).map(tag)) {
                Ok(it) => {
                    for res in it {
                        match unwrap_outcome(res) {
                            Some((id, res)) => {
                                note(&res);
                                outcomes.push((id, res));
                            }
                            None => problems.push("an outcome that names no input".to_string()),
                        }
                    }
                }
                Err(e) => problems.push(format!("imap_unordered refused: {e}")),
            },
            3 => match call().imap(chaos_counted, (0..n).map(tag)) {
                // In input order: the i-th outcome is about input i.
                Ok(it) => {
                    for (i, res) in it.enumerate() {
                        match unwrap_outcome(res) {
                            Some((id, res)) => {
                                if id != i as u64 {
                                    problems
                                        .push(format!("imap's outcome {i} is about input {id}"));
                                }
                                note(&res);
                                outcomes.push((i as u64, res));
                            }
                            None => problems.push(format!("imap's outcome {i} names no input")),
                        }
                    }
                }
                Err(e) => problems.push(format!("imap refused: {e}")),
            },
            2 => {
                let mut pending = Vec::with_capacity(n as usize);
                for i in 0..n {
                    let a = match per_call {
                        Some(t) => pool.timeout(t).apply_async(chaos_counted, (tag(i),)),
                        None => pool.apply_async(chaos_counted, (tag(i),)),
                    };
                    match a {
                        Ok(a) => pending.push((i, a)),
                        Err(e) => {
                            problems.push(format!("apply_async({i}) refused: {e}"));
                            break;
                        }
                    }
                }
                // Some at once: done, running or queued.
                for (i, a) in &pending {
                    if !hangs.contains(i) && rng.chance(1) && a.cancel() {
                        cancelled.insert(*i);
                    }
                }
                // A hanging input without a timeout is cancelled once it
                // runs (and one with a timeout, now and then), whatever the
                // order: the inputs a worker holds behind a running one wait
                // for it, so collecting in input order first would wait for
                // ever on those.
                let mut to_cancel: BTreeSet<u64> = hangs
                    .iter()
                    .copied()
                    .filter(|_| timeout.is_none() || rng.chance(50))
                    .collect();
                let deadline = Instant::now() + BOUND;
                while !to_cancel.is_empty() && Instant::now() < deadline {
                    for (i, a) in &pending {
                        if to_cancel.contains(i) && (a.pid().is_some() || a.ready()) {
                            if a.cancel() {
                                cancelled.insert(*i);
                            }
                            to_cancel.remove(i);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                for (i, mut a) in pending {
                    if to_cancel.contains(&i) && a.cancel() {
                        // It never ran, in BOUND.
                        cancelled.insert(i);
                    }
                    match a.get_timeout(BOUND) {
                        Err(Error::Timeout) => problems.push(format!(
                            "input {i} (cancelled: {}) unanswered after {BOUND:?}; now on {:?}, pool {:?}",
                            cancelled.contains(&i),
                            a.pid(),
                            pool.pids()
                        )),
                        res => {
                            note(&res);
                            outcomes.push((i, res));
                        }
                    }
                }
            }
            _ => {
                // map_async in batches, some cancelled.
                let mut batches = Vec::new();
                let mut first = 0;
                while first < n {
                    let len = rng.range(20, 500).min(n - first);
                    match call().map_async(chaos_counted, (first..first + len).map(tag)) {
                        Ok(a) => batches.push((first, len, a)),
                        Err(e) => {
                            problems.push(format!("map_async refused: {e}"));
                            break;
                        }
                    }
                    first += len;
                }
                let mut batch_cancelled = HashSet::new();
                for (first, _, a) in &batches {
                    if rng.chance(10) && a.cancel() {
                        batch_cancelled.insert(*first);
                    }
                }
                for (first, len, mut a) in batches {
                    let ids = first..first + len;
                    match a.get_timeout(BOUND) {
                        Err(Error::Timeout) => problems.push(format!(
                            "map_async of inputs {ids:?} unanswered after {BOUND:?}"
                        )),
                        Err(Error::Cancelled) if batch_cancelled.contains(&first) => {
                            for id in ids {
                                cancelled.insert(id);
                                outcomes.push((id, Err(Error::Cancelled)));
                            }
                        }
                        Ok(values) => {
                            if values.len() as u64 != len {
                                problems.push(format!(
                                    "map_async of {len} inputs gave {} values",
                                    values.len()
                                ));
                            }
                            for (id, v) in ids.zip(values) {
                                let res = Ok(v);
                                note(&res);
                                outcomes.push((id, res));
                            }
                        }
                        Err(Error::TaskFailed { index, source }) => {
                            let failed = first + index as u64;
                            if index as u64 >= len {
                                problems.push(format!(
                                    "map_async of {len} inputs failed at index {index}"
                                ));
                            }
                            untold.extend(ids.filter(|&id| id != failed));
                            outcomes.push((failed, Err(*source)));
                        }
                        Err(e) => problems.push(format!("map_async of inputs {ids:?}: {e:?}")),
                    }
                }
            }
        }
        done.store(true, Ordering::Relaxed);
    });
    for p in problems {
        r.violation(p);
    }
    let killed = killed.into_inner().unwrap();
    let run = PoolRun {
        n,
        hangs,
        timeout,
        outcomes,
        untold,
        cancelled,
        killed,
        runs: runs.to_vec(),
    };
    let timed_out = audit_pool(r, &run);
    let killed = run.killed;
    if !run.hangs.is_empty() {
        r.event("pool: round with inputs that hang");
    }
    // Every killed or timed-out worker is replaced (the last kill may be a
    // moment old)...
    let replaced = || {
        let pids = pool.pids();
        pids.len() == workers
            && pids
                .iter()
                .all(|p| !killed.contains(p) && !timed_out.contains(p))
    };
    if !wait_until(BOUND, replaced) {
        r.violation(format!(
            "the pool has workers {:?} ({workers} wanted, killed: {killed:?}, timed out: {timed_out:?})",
            pool.pids()
        ));
    }
    // ... and the pool still works.
    let check: Vec<_> = (0..20u64)
        .map(|i| pool.apply_async(chaos_task, (i,)))
        .collect();
    for (i, a) in check.into_iter().enumerate() {
        match a.map(|mut a| a.get_timeout(BOUND)) {
            Ok(Ok((id, _))) if id == i as u64 => {}
            other => r.violation(format!("after the round, task {i} gave {other:?}")),
        }
    }
    let pids = pool.pids();
    drop(pool);
    if !wait_until(SETTLE, || pids.iter().all(|&p| !alive(p))) {
        r.violation(format!("pool workers outlived the pool: {pids:?}"));
    }
    let start_killed = start_killed.load(Ordering::Relaxed);
    r.sum.start_kills += start_killed;
    r.sum.kills += kills.load(Ordering::Relaxed);
    r.sum.tasks += n;
}

// ---------------------------------------------------------------------------
// Queue

/// A queue message: producer, sequence number, payload derived from both.
type Msg = (u32, u64, ByteBuf);
/// An acknowledgement: consumer, producer, sequence number, payload intact.
type Ack = (u32, u32, u64, bool);

fn mix(producer: u32, seq: u64) -> u64 {
    let mut h = (u64::from(producer) << 40) ^ seq ^ 0x5851_F42D_4C95_7F2D;
    h = (h ^ (h >> 31)).wrapping_mul(0x7FB5_D329_728E_A185);
    h ^ (h >> 27)
}

/// The payload of message `seq` of `producer`: mostly small, now and then
/// 64–128 KiB, rarely 1 MiB (so rings grow and shrink).
fn payload(producer: u32, seq: u64) -> Vec<u8> {
    let h = mix(producer, seq);
    let len = match h % 512 {
        0 => 1 << 20,
        1..=8 => 65_536 + (h >> 20) as usize % 65_536,
        _ => (h >> 20) as usize % 512,
    };
    (0..len).map(|i| (h as u8).wrapping_add(i as u8)).collect()
}

fn message(producer: u32, seq: u64) -> Msg {
    (producer, seq, ByteBuf::from(payload(producer, seq)))
}

fn intact(m: &Msg) -> bool {
    *m.2 == payload(m.0, m.1)
}

#[worker]
fn chaos_produce(q: Queue<Msg>, producer: u32, count: u64) -> u64 {
    for seq in 0..count {
        if let Err(e) = q.put(message(producer, seq)) {
            panic!("put {seq}: {e}");
        }
    }
    count
}

#[worker]
fn chaos_consume(q: Queue<Msg>, acks: Queue<Ack>, consumer: u32, stop: Event) -> u64 {
    let mut n = 0;
    loop {
        match q.get_timeout(Duration::from_millis(20)) {
            Ok(m) => {
                let ok = intact(&m);
                if let Err(e) = acks.put((consumer, m.0, m.1, ok)) {
                    panic!("ack: {e}");
                }
                n += 1;
            }
            Err(GetTimeoutError::Timeout) => {
                if stop.is_set() {
                    return n;
                }
            }
            Err(e) => panic!("get: {e}"),
        }
    }
}

/// Per-producer bookkeeping of what arrived.
#[derive(Default)]
struct Received {
    seqs: HashSet<u64>,
    max: Option<u64>,
}

fn round_queue(r: &mut Round<'_>) {
    let producers = r.rng.range(1, 3) as u32;
    let consumers = r.rng.range(1, 3) as u32;
    let count = r.rng.range(200, 3_000);
    let budget = r.rng.range(1, 6);
    let made = if r.rng.chance(50) {
        Queue::with_maxsize(r.rng.range(2, 64) as usize)
    } else {
        Queue::new()
    };
    let (q, acks, stop) = match (made, Queue::<Ack>::new(), Event::new()) {
        (Ok(q), Ok(a), Ok(s)) => (q, a, s),
        _ => return r.violation("cannot create the queues"),
    };
    let mut prods: Vec<(Process<chaos_produce>, bool)> = Vec::new();
    for p in 0..producers {
        let mut proc = Process::new(chaos_produce, (q.clone(), p, count));
        if let Err(e) = proc.start() {
            return r.violation(format!("cannot start producer {p}: {e}"));
        }
        prods.push((proc, false));
    }
    let mut cons: Vec<(Process<chaos_consume>, bool)> = Vec::new();
    let start_consumer = |cid: u32| {
        let mut c = Process::new(chaos_consume, (q.clone(), acks.clone(), cid, stop.clone()));
        c.start().map(|()| c)
    };
    for cid in 0..consumers {
        match start_consumer(cid) {
            Ok(c) => cons.push((c, false)),
            Err(e) => return r.violation(format!("cannot start consumer {cid}: {e}")),
        }
    }
    let mut kills = 0u64;
    let mut consumer_kills = 0u64;
    let deadline = Instant::now() + BOUND * 2;
    while prods.iter().any(|(p, _)| p.is_alive()) {
        if Instant::now() > deadline {
            r.violation("producers did not finish in time");
            break;
        }
        if kills >= budget {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        std::thread::sleep(r.rng.ms(1, 40));
        if r.rng.chance(50) {
            let alive: Vec<usize> = (0..prods.len())
                .filter(|&i| prods[i].0.is_alive())
                .collect();
            if alive.is_empty() {
                continue;
            }
            let i = alive[r.rng.index(alive.len())];
            let _ = prods[i].0.kill();
            // A producer that finished first is not counted as killed.
            if let Some(-9) = join_bounded(r, &prods[i].0, "a killed producer", BOUND) {
                prods[i].1 = true;
                r.event("queue: producer killed");
                kills += 1;
            }
        } else {
            let i = r.rng.index(cons.len());
            if !cons[i].0.is_alive() {
                continue;
            }
            let _ = cons[i].0.kill();
            if let Some(-9) = join_bounded(r, &cons[i].0, "a killed consumer", BOUND) {
                cons[i].1 = true;
                kills += 1;
                consumer_kills += 1;
                r.event("queue: consumer killed");
            }
            // A replacement, so that a bounded queue keeps draining.
            match start_consumer(cons.len() as u32) {
                Ok(c) => cons.push((c, false)),
                Err(e) => return r.violation(format!("cannot start a consumer: {e}")),
            }
        }
    }
    stop.set();
    for (p, killed) in &mut prods {
        if *killed {
            continue;
        }
        if join_bounded(r, p, "a producer", BOUND).is_some() {
            match p.result() {
                Ok(n) if n == count => {}
                other => r.violation(format!("a producer ended with {other:?}")),
            }
        }
    }
    for (c, killed) in &mut cons {
        if *killed {
            continue;
        }
        if join_bounded(r, c, "a consumer", BOUND).is_some()
            && let Err(e) = c.result()
        {
            r.violation(format!("a consumer failed: {e}"));
        }
    }
    // Everything that arrived: acknowledged by consumers, then drained here.
    let mut got: HashMap<u32, Received> = HashMap::new();
    let mut last: HashMap<(u32, u32), u64> = HashMap::new();
    let mut total = 0u64;
    let mut record = |r: &mut Round<'_>, who: u32, producer: u32, seq: u64, ok: bool| {
        total += 1;
        if !ok {
            r.violation(format!("message {producer}/{seq} arrived corrupt"));
        }
        if producer >= producers || seq >= count {
            return r.violation(format!("message {producer}/{seq} was never put"));
        }
        if let Some(prev) = last.insert((who, producer), seq)
            && seq <= prev
        {
            r.violation(format!(
                "consumer {who} got {producer}/{seq} after {producer}/{prev}"
            ));
        }
        let rec = got.entry(producer).or_default();
        if !rec.seqs.insert(seq) {
            r.violation(format!("message {producer}/{seq} delivered twice"));
        }
        rec.max = rec.max.max(Some(seq));
    };
    loop {
        match acks.try_get() {
            Ok((cid, p, seq, ok)) => record(r, cid, p, seq, ok),
            Err(TryGetError::Empty) => break,
            Err(e) => {
                r.violation(format!("reading acknowledgements: {e}"));
                break;
            }
        }
    }
    loop {
        match q.try_get() {
            Ok(m) => {
                let ok = intact(&m);
                record(r, u32::MAX, m.0, m.1, ok);
            }
            Err(TryGetError::Empty) => break,
            Err(e) => {
                r.violation(format!("draining: {e}"));
                break;
            }
        }
    }
    // Gaps: a producer that finished put all `count`; a killed one put a
    // prefix. Only a killed consumer may have taken a message with it.
    let mut missing = 0u64;
    for (p, (_, killed)) in prods.iter().enumerate() {
        let rec = got.remove(&(p as u32)).unwrap_or_default();
        let expected = if *killed {
            rec.max.map_or(0, |m| m + 1)
        } else {
            count
        };
        missing += expected - rec.seqs.len() as u64;
    }
    for _ in 0..missing {
        r.event("queue: message lost with a killed consumer");
    }
    if missing > consumer_kills {
        r.violation(format!(
            "{missing} messages lost, with only {consumer_kills} consumers killed"
        ));
    }
    // The queue still works.
    match q.put_timeout(message(0, 1), BOUND) {
        Ok(()) => match q.get_timeout(BOUND) {
            Ok(m) if m.0 == 0 && m.1 == 1 && intact(&m) => {}
            other => r.violation(format!("the queue is broken after the round: {other:?}")),
        },
        Err(e) => r.violation(format!("the queue refuses a put after the round: {e}")),
    }
    r.sum.kills += kills;
    r.sum.messages += total;
}

// ---------------------------------------------------------------------------
// Lock

/// Slots of the lock round's shared state.
const A: usize = 0;
const B: usize = 1;
const INSIDE: usize = 2;
const BAD: usize = 3;
const DIED: usize = 4;

/// Checks the data a `Lock` protects, as found by a new holder, and repairs
/// it. A holder does `inside = 1; a += 1; count += 1; shm = a; b = a;
/// inside = 0` in its critical section, so a dead holder (`died`) may leave
/// one step half done; otherwise everything agrees.
fn audit(
    state: &RawArray<u64>,
    count: &Value<u64>,
    shm: &SharedMemory,
    died: bool,
) -> Result<(), String> {
    let get = |i| state.get(i).unwrap_or(u64::MAX);
    let (a, b, inside) = (get(A), get(B), get(INSIDE));
    let mut c = match count.lock_timeout(BOUND) {
        Some(g) => g.unwrap_or_else(OwnerDied::into_guard),
        None => return Err("the Value's lock is wedged".into()),
    };
    let mut word = [0u8; 8];
    if let Err(e) = shm.read(0, &mut word) {
        return Err(format!("reading the shared memory: {e}"));
    }
    let s = u64::from_le_bytes(word);
    let verdict = if died {
        let ok = (a == b || a == b + 1)
            && (b..=a).contains(&*c)
            && (b..=a).contains(&s)
            && s <= *c
            && inside <= 1;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "after a dead holder: a={a} b={b} count={} shm={s} inside={inside}",
                *c
            ))
        }
    } else if a == b && *c == a && s == a && inside == 0 {
        Ok(())
    } else {
        Err(format!(
            "acquired without OwnerDied: a={a} b={b} count={} shm={s} inside={inside}",
            *c
        ))
    };
    // Repair: the interrupted increment counts.
    *c = a;
    drop(c);
    let _ = shm.write(0, &a.to_le_bytes());
    state.set(B, a);
    state.set(INSIDE, 0);
    if died {
        state.set(DIED, get(DIED) + 1);
    }
    verdict
}

#[worker]
fn chaos_hold(
    lock: Lock,
    state: RawArray<u64>,
    count: Value<u64>,
    shm_name: String,
    progress: Semaphore,
) {
    let shm = SharedMemory::attach(&shm_name).expect("attach");
    loop {
        let (guard, died) = match lock.acquire() {
            Ok(g) => (g, false),
            Err(e) => (e.into_guard(), true),
        };
        if let Err(why) = audit(&state, &count, &shm, died) {
            eprintln!(
                "chaos: VIOLATION in lock holder {}: {why}",
                std::process::id()
            );
            state.set(BAD, state.get(BAD).unwrap_or(0) + 1);
        }
        state.set(INSIDE, 1);
        let a = state.get(A).unwrap_or(0) + 1;
        state.set(A, a);
        *count.lock().unwrap_or_else(OwnerDied::into_guard) += 1;
        shm.write(0, &a.to_le_bytes()).expect("write");
        state.set(B, a);
        state.set(INSIDE, 0);
        drop(guard);
        progress.release();
    }
}

/// Takes `lock` as the parent and audits what it protects, counting a dead
/// holder reported here and any broken invariant.
fn take_and_audit(
    r: &mut Round<'_>,
    lock: &Lock,
    (state, count, shm): (&RawArray<u64>, &Value<u64>, &SharedMemory),
    wedged: &str,
) {
    match lock.acquire_timeout(BOUND) {
        Ok(g) => {
            if let Err(why) = audit(state, count, shm, false) {
                r.violation(why);
            }
            drop(g);
        }
        Err(AcquireTimeoutError::OwnerDied(e)) => {
            r.event("lock: dead holder reported to this process");
            if let Err(why) = audit(state, count, shm, true) {
                r.violation(why);
            }
            drop(e.into_guard());
        }
        Err(AcquireTimeoutError::Timeout) => r.violation(wedged),
    }
}

fn round_lock(r: &mut Round<'_>) {
    let holders = r.rng.range(2, 4) as usize;
    let budget = r.rng.range(2, 8);
    let name = format!("{}{}", shm_prefix(), r.rng.next_u64());
    let made = (
        Lock::new(),
        RawArray::<u64>::new(5),
        Value::new(0u64),
        SharedMemory::create(&name, 4096),
        Semaphore::new(0),
    );
    let (lock, state, count, shm, progress) = match made {
        (Ok(l), Ok(s), Ok(c), Ok(m), Ok(p)) => (l, s, c, m, p),
        _ => return r.violation("cannot create the lock round's objects"),
    };
    let start = |r: &mut Round<'_>| {
        let mut p = Process::new(
            chaos_hold,
            (
                lock.clone(),
                state.clone(),
                count.clone(),
                name.clone(),
                progress.clone(),
            ),
        );
        match p.start() {
            Ok(()) => Some(p),
            Err(e) => {
                r.violation(format!("cannot start a holder: {e}"));
                None
            }
        }
    };
    let mut ps: Vec<_> = (0..holders).filter_map(|_| start(r)).collect();
    let mut kills = 0;
    while kills < budget && !ps.is_empty() {
        // Let the holders make some progress, then strike at a random moment.
        let target = progress.value() + r.rng.range(1, 200) as u32;
        if !wait_until(BOUND, || progress.value() >= target) {
            r.violation(format!(
                "holders made no progress for {BOUND:?} (at {})",
                progress.value()
            ));
            break;
        }
        std::thread::sleep(r.rng.us(0, 3_000));
        let i = r.rng.index(ps.len());
        let p = ps.swap_remove(i);
        let _ = p.kill();
        if let Some(-9) = join_bounded(r, &p, "a killed holder", BOUND) {
            kills += 1;
        }
        if r.rng.chance(30) {
            // This process takes its turn too.
            take_and_audit(r, &lock, (&state, &count, &shm), "the lock is wedged");
        }
        if let Some(p) = start(r) {
            ps.push(p);
        }
    }
    for p in &ps {
        let _ = p.kill();
        if let Some(-9) = join_bounded(r, p, "a killed holder", BOUND) {
            kills += 1;
        }
    }
    take_and_audit(
        r,
        &lock,
        (&state, &count, &shm),
        "the lock is wedged after the round",
    );
    // Reported once, then clean.
    match lock.try_acquire() {
        Ok(g) => drop(g),
        Err(e) => r.violation(format!("the lock is not clean after recovery: {e:?}")),
    }
    match count.lock_timeout(BOUND) {
        Some(Ok(_)) | Some(Err(_)) => {}
        None => r.violation("the Value's lock is wedged after the round"),
    }
    let bad = state.get(BAD).unwrap_or(0);
    if bad > 0 {
        r.violation(format!("holders found {bad} inconsistencies"));
    }
    for _ in 0..state.get(DIED).unwrap_or(0) {
        r.event("lock: dead holder reported to a holder");
    }
    drop(shm);
    r.sum.kills += kills;
}

// ---------------------------------------------------------------------------
// Barrier

#[worker]
fn chaos_party(b: Barrier, passes: Semaphore) -> (u64, BarrierWaitError) {
    let mut n = 0;
    loop {
        match b.wait() {
            Ok(_) => {
                n += 1;
                passes.release();
            }
            Err(e) => return (n, e),
        }
    }
}

fn round_barrier(r: &mut Round<'_>) {
    let parties = r.rng.range(2, 4) as usize;
    let timeout = r.rng.ms(300, 1_000);
    let (b, passes) = match (
        Barrier::builder(parties).timeout(timeout).build(),
        Semaphore::new(0),
    ) {
        (Ok(b), Ok(p)) => (b, p),
        _ => return r.violation("cannot create the barrier"),
    };
    let mut ps: Vec<Process<chaos_party>> = Vec::new();
    for _ in 0..parties {
        let mut p = Process::new(chaos_party, (b.clone(), passes.clone()));
        if let Err(e) = p.start() {
            r.violation(format!("cannot start a party: {e}"));
            for p in &ps {
                let _ = p.kill();
                let _ = p.join_timeout(BOUND);
            }
            return;
        }
        ps.push(p);
    }
    let target = r.rng.range(1, 60) as u32;
    if !wait_until(BOUND, || passes.value() >= target || b.broken()) {
        r.violation(format!("parties passed only {} times", passes.value()));
    }
    std::thread::sleep(r.rng.us(0, 5_000));
    let victims = if parties > 2 && r.rng.chance(25) {
        2
    } else {
        1
    };
    let mut dead = HashSet::new();
    while dead.len() < victims {
        dead.insert(r.rng.index(parties));
    }
    for &i in &dead {
        let _ = ps[i].kill();
    }
    let killed_at = Instant::now();
    let mut kills = 0;
    for &i in &dead {
        if let Some(-9) = join_bounded(r, &ps[i], "a killed party", BOUND) {
            kills += 1;
        }
    }
    let bound = timeout + Duration::from_secs(10);
    for (i, p) in ps.iter_mut().enumerate() {
        if dead.contains(&i) {
            continue;
        }
        let left = bound.saturating_sub(killed_at.elapsed());
        if join_bounded(
            r,
            p,
            "a surviving party",
            left.max(Duration::from_millis(1)),
        )
        .is_none()
        {
            continue;
        }
        match p.result() {
            Ok((_, e @ (BarrierWaitError::Broken | BarrierWaitError::Timeout))) => {
                r.event(&format!("barrier: survivor released with {e:?}"))
            }
            other => r.violation(format!("a surviving party ended with {other:?}")),
        }
    }
    if !b.broken() {
        r.violation("the barrier is not broken after a party died");
    }
    // Reset, it works again.
    b.reset();
    let indices: Vec<Result<usize, BarrierWaitError>> = std::thread::scope(|s| {
        let ts: Vec<_> = (0..parties)
            .map(|_| s.spawn(|| b.wait_timeout(BOUND)))
            .collect();
        ts.into_iter()
            .map(|t| t.join().unwrap_or(Err(BarrierWaitError::Broken)))
            .collect()
    });
    let mut ok: Vec<usize> = indices.iter().filter_map(|i| i.ok()).collect();
    ok.sort_unstable();
    if ok != (0..parties).collect::<Vec<_>>() {
        r.violation(format!("after reset, one pass gave {indices:?}"));
    }
    r.sum.kills += kills;
}

// ---------------------------------------------------------------------------
// Process tree

/// Reports its pid, starts a pool of `pool` workers (and reports theirs once
/// they run), starts `fanout` children one level down (every other one from a
/// short-lived thread), then sleeps (two minutes at most).
///
/// The pool's workers take `start_us` to start and run inputs that hang
/// past a 20-60 ms timeout, so it is killing and replacing workers when the
/// tree is killed; a thread reports every worker it sees.
#[worker]
fn chaos_tree(pids: Queue<u32>, depth: u32, fanout: u32, pool: u32, start_us: u64) {
    let _ = pids.put(std::process::id());
    let built = (pool > 0)
        .then(|| RawArray::<u32>::new(1))
        .and_then(Result::ok)
        .and_then(|runs| {
            Pool::builder()
                .processes(pool as usize)
                .initializer(chaos_pool_init, (runs, start_us))
                .task_timeout(Duration::from_millis(
                    20 + u64::from(std::process::id()) % 40,
                ))
                .build()
                .ok()
        });
    if let Some(pool) = built {
        if wait_until(BOUND, || pool.pids().len() == pool.processes()) {
            for p in pool.pids() {
                let _ = pids.put(p);
            }
        }
        let q = pids.clone();
        let _ = std::thread::Builder::new().spawn(move || {
            let mut told = HashSet::new();
            for i in 0u64.. {
                if i % 4 == 0 {
                    // Detached: nobody waits for these, they time out.
                    let _ = pool.apply_async(chaos_counted, (HANG_BIT | i,));
                    let _ = pool.apply_async(chaos_counted, (i,));
                }
                for p in pool.pids() {
                    if told.insert(p) {
                        let _ = q.put(p);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
    }
    if depth > 0 {
        for i in 0..fanout {
            let q = pids.clone();
            let start = move || {
                let mut p = Process::new(chaos_tree, (q, depth - 1, fanout, 0, 0));
                p.start().map(|()| p)
            };
            let p = if i % 2 == 1 {
                std::thread::spawn(start)
                    .join()
                    .unwrap_or_else(|_| Err(Error::NotStarted))
            } else {
                start()
            };
            std::mem::forget(p);
        }
    }
    std::thread::sleep(Duration::from_secs(120));
}

/// Every descendant of `pid` now, from `/proc/*/task/*/children`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(t.path().join("children")) {
                for c in list.split_whitespace().filter_map(|c| c.parse().ok()) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
    }
    out
}

/// Whether `pid` runs this executable (so a recycled pid is not blamed).
fn runs_this_binary(pid: u32) -> bool {
    match (
        std::fs::read_link(format!("/proc/{pid}/exe")),
        std::fs::read_link("/proc/self/exe"),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn round_tree(r: &mut Round<'_>) {
    let depth = r.rng.range(1, 3) as u32;
    let fanout = r.rng.range(1, 2) as u32;
    let pool = if r.rng.chance(30) { 2 } else { 0 };
    let nodes: u32 = (0..=depth).map(|d| fanout.pow(d)).sum::<u32>() + pool;
    let grown = r.rng.chance(60);
    let q = match Queue::<u32>::new() {
        Ok(q) => q,
        Err(e) => return r.violation(format!("cannot create a queue: {e}")),
    };
    let start_us = if r.rng.chance(50) {
        r.rng.range(500, 5_000)
    } else {
        0
    };
    let mut root = Process::new(chaos_tree, (q.clone(), depth, fanout, pool, start_us));
    if let Err(e) = root.start() {
        return r.violation(format!("cannot start the tree: {e}"));
    }
    let mut known: BTreeSet<u32> = BTreeSet::new();
    let drain = |known: &mut BTreeSet<u32>| {
        while let Ok(p) = q.try_get() {
            known.insert(p);
        }
    };
    if grown {
        let deadline = Instant::now() + BOUND;
        while known.len() < nodes as usize && Instant::now() < deadline {
            drain(&mut known);
            std::thread::sleep(Duration::from_millis(2));
        }
        if known.len() < nodes as usize {
            r.violation(format!(
                "the tree grew to {} of {nodes} processes",
                known.len()
            ));
        }
    } else {
        std::thread::sleep(r.rng.ms(0, 30));
    }
    let root_pid = root.pid().unwrap_or(0);
    known.extend(descendants(root_pid));
    let _ = root.kill();
    let killed_at = Instant::now();
    drain(&mut known);
    known.insert(root_pid);
    let gone = wait_until(Duration::from_secs(1), || {
        drain(&mut known);
        known.iter().all(|&p| !alive(p))
    });
    let took = killed_at.elapsed();
    // Alive now, a second after; not a recycled pid.
    let alive_now = |known: &BTreeSet<u32>| -> BTreeSet<u32> {
        known
            .iter()
            .copied()
            .filter(|&p| alive(p) && runs_this_binary(p))
            .collect()
    };
    let mut survivors = if gone {
        BTreeSet::new()
    } else {
        alive_now(&known)
    };
    if let Some(code) = join_bounded(r, &root, "the tree's root", BOUND)
        && code != -9
    {
        r.violation(format!("the root exited with {code}, not -9"));
    }
    // A process that reported itself only now is alive later still.
    drain(&mut known);
    survivors.extend(alive_now(&known));
    r.event(if grown {
        "tree: killed grown"
    } else {
        "tree: killed while growing"
    });
    if pool > 0 {
        r.event("tree: with a pool in the root");
    }
    if !survivors.is_empty() {
        r.violation(format!(
            "{} of {} tree processes alive {took:?} after the root was killed: {survivors:?}",
            survivors.len(),
            known.len()
        ));
    }
    for p in survivors {
        sigkill(p);
    }
    r.sum.kills += 1;
    r.sum.messages += known.len() as u64;
}

// ---------------------------------------------------------------------------
// Resource limits

fn set_limit(resource: nix::sys::resource::Resource, soft: u64) -> Result<(), String> {
    let (_, hard) = nix::sys::resource::getrlimit(resource).map_err(|e| e.to_string())?;
    nix::sys::resource::setrlimit(resource, soft.min(hard), hard).map_err(|e| e.to_string())
}

/// This process's address-space size, in bytes.
fn vm_size() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmSize:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Limits this process's address space to what it uses plus `extra_mib`.
fn limit_address_space(extra_mib: u64) -> Result<(), String> {
    set_limit(
        nix::sys::resource::Resource::RLIMIT_AS,
        vm_size() + (extra_mib << 20),
    )
}

/// Runs pool, queue, lock and barrier rounds under `RLIMIT_NOFILE` 64, after
/// checking that running out of descriptors is a typed error.
#[worker]
fn chaos_nofile(seed: u64, budget_ms: u64) -> Summary {
    let mut sum = Summary::default();
    let mut r = Round {
        rng: Rng::new(seed),
        sum: &mut sum,
        label: format!("nofile child {}", std::process::id()),
    };
    if let Err(e) = set_limit(nix::sys::resource::Resource::RLIMIT_NOFILE, 64) {
        r.violation(format!("setrlimit: {e}"));
        return sum;
    }
    let before = Baseline::take();
    // Run out: queues until one is refused, then a process start.
    let mut held = Vec::new();
    let refusal = loop {
        match Queue::<u8>::new() {
            Ok(q) => held.push(q),
            Err(e) => break Some(e),
        }
        if held.len() > 200 {
            break None;
        }
    };
    match refusal {
        Some(Error::Io(e)) if e.raw_os_error() == Some(libc::EMFILE) => r.event("nofile: EMFILE"),
        other => r.violation(format!(
            "with every descriptor taken, Queue::new gave {other:?}, not EMFILE"
        )),
    }
    let mut p = Process::new(ping, (1,));
    match p.start() {
        Err(_) => r.event("nofile: start refused"),
        Ok(()) => {
            if !matches!(p.result(), Ok(2)) {
                r.violation("a process started without descriptors left did not work");
            }
        }
    }
    drop(p);
    drop(held);
    before.check(&mut r);
    let inner = run(&Config {
        duration: Duration::from_millis(budget_ms),
        min_rounds: 4,
        max_rounds: None,
        scenarios: vec![
            Scenario::Pool,
            Scenario::Queue,
            Scenario::Lock,
            Scenario::Barrier,
        ],
        seed,
        load_threads: 0,
        progress: None,
    });
    sum.absorb(&inner);
    sum
}

fn round_nofile(r: &mut Round<'_>) {
    let budget_ms = r.rng.range(1_000, 4_000);
    let mut p = Process::new(chaos_nofile, (r.rng.next_u64(), budget_ms));
    if let Err(e) = p.start() {
        return r.violation(format!("cannot start the nofile child: {e}"));
    }
    let bound = Duration::from_millis(budget_ms) + ROUND_LIMIT / 2;
    if join_bounded(r, &p, "the nofile child", bound).is_none() {
        return;
    }
    match p.result() {
        Ok(inner) => {
            // Its violations were printed by the child already.
            r.sum.absorb(&inner);
        }
        Err(e) => r.violation(format!("the nofile child failed: {e}")),
    }
}

/// Limits its address space to 64 MiB more than it uses, then allocates
/// `mib` MiB.
#[worker]
fn chaos_hog(mib: u64) -> u64 {
    limit_address_space(64).expect("setrlimit");
    let v = vec![1u8; (mib << 20) as usize];
    std::hint::black_box(&v);
    v.len() as u64
}

/// A pool initializer: limits each worker's address space.
#[worker]
fn chaos_limit_pool_worker(extra_mib: u64) {
    limit_address_space(extra_mib).expect("setrlimit");
}

/// A pool task: allocates `mib` MiB, touches it, says who ran it.
#[worker]
fn chaos_alloc(id: u64, mib: u64) -> (u64, u32) {
    let v = vec![1u8; (mib << 20) as usize];
    std::hint::black_box(&v);
    (id, std::process::id())
}

/// Limits its address space to `extra_mib` MiB more than it uses, then puts
/// 4 MiB messages into `q` (which nobody reads) until a put fails; returns
/// how many puts returned and the error.
#[worker]
fn chaos_fill(q: Queue<Msg>, extra_mib: u64) -> (u64, String) {
    limit_address_space(extra_mib).expect("setrlimit");
    for seq in 0..1_000 {
        let m = (7, seq, ByteBuf::from(vec![seq as u8; 4 << 20]));
        match q.put(m) {
            Ok(()) => {}
            Err(PutError::Io(_, e)) => return (seq, format!("Os: {e}")),
            Err(e) => return (seq, format!("other: {e}")),
        }
    }
    (1_000, "no refusal".into())
}

fn round_address_space(r: &mut Round<'_>) {
    // A process that allocates past its limit dies with SIGABRT.
    let mut p = Process::new(chaos_hog, (r.rng.range(128, 1024),));
    // Dying of a failed allocation is this round's point: std's backtrace
    // of it would only flood the test output.
    p.env("RUST_BACKTRACE", "0");
    match p.start() {
        Ok(()) => {
            if join_bounded(r, &p, "the hog", BOUND).is_some() {
                match p.result() {
                    Err(Error::Killed { signal: 6, .. }) => {
                        r.event("as: hog process died of SIGABRT")
                    }
                    other => r.violation(format!("the hog ended with {other:?}, not SIGABRT")),
                }
            }
        }
        Err(e) => r.violation(format!("cannot start the hog: {e}")),
    }

    // Pool workers under a limit: the tasks that allocate past it die with
    // their worker, the others complete, the pool goes on.
    let pool = Pool::builder()
        .processes(2)
        .initializer(chaos_limit_pool_worker, (64,))
        .env("RUST_BACKTRACE", "0")
        .build();
    match pool {
        Ok(pool) => {
            let n = r.rng.range(50, 300);
            let mut pending = Vec::new();
            for id in 0..n {
                let hog = r.rng.chance(4);
                let mib = if hog { r.rng.range(128, 1024) } else { 1 };
                match pool.apply_async(chaos_alloc, (id, mib)) {
                    Ok(a) => pending.push((id, hog, a)),
                    Err(e) => {
                        r.violation(format!("apply_async refused: {e}"));
                        break;
                    }
                }
            }
            for (id, hog, mut a) in pending {
                match (hog, a.get_timeout(BOUND)) {
                    (_, Ok((got, _))) if got == id && !hog => {}
                    (true, Err(Error::Killed { signal: 6, .. })) => {
                        r.event("as: hog task died with its worker (SIGABRT)")
                    }
                    // A task queued behind a hog on the worker it killed
                    // runs elsewhere: its failure would be an innocent one.
                    (hog, other) => r.violation(format!(
                        "limited pool task {id} (hog: {hog}) ended with {other:?}"
                    )),
                }
            }
            r.sum.tasks += n;
            let pids = pool.pids();
            drop(pool);
            if !wait_until(SETTLE, || pids.iter().all(|&p| !alive(p))) {
                r.violation(format!("pool workers outlived the pool: {pids:?}"));
            }
        }
        Err(e) => r.violation(format!("cannot build a limited pool: {e}")),
    }

    // A producer under a limit: its put fails cleanly (or it dies of the
    // allocation); every put that returned is in the queue, intact.
    let q = match Queue::<Msg>::new() {
        Ok(q) => q,
        Err(e) => return r.violation(format!("cannot create a queue: {e}")),
    };
    let mut p = Process::new(chaos_fill, (q.clone(), r.rng.range(32, 160)));
    if let Err(e) = p.start() {
        return r.violation(format!("cannot start the filler: {e}"));
    }
    let returned = match join_bounded(r, &p, "the filler", BOUND) {
        None => return,
        Some(_) => match p.result() {
            Ok((n, why)) if why.starts_with("Os:") => {
                r.event("as: filler's put refused (PutError::Os)");
                Some(n)
            }
            Ok(other) => {
                r.violation(format!("the filler ended with {other:?}"));
                Some(other.0)
            }
            Err(Error::Killed { signal: 6, .. }) => {
                r.event("as: filler died of SIGABRT");
                None
            }
            Err(e) => return r.violation(format!("the filler failed: {e}")),
        },
    };
    let mut seqs = Vec::new();
    loop {
        match q.try_get() {
            Ok(m) => {
                if m.0 != 7 || m.2.len() != 4 << 20 || m.2.iter().any(|&b| b != m.1 as u8) {
                    r.violation(format!("message {} came back corrupt", m.1));
                }
                seqs.push(m.1);
            }
            Err(TryGetError::Empty) => break,
            Err(e) => {
                r.violation(format!("draining the filled queue: {e}"));
                break;
            }
        }
    }
    let expected: Vec<u64> = match returned {
        Some(n) => (0..n).collect(),
        None => (0..seqs.len() as u64).collect(),
    };
    if seqs != expected {
        r.violation(format!(
            "the filled queue held {} messages {:?}.., expected {}",
            seqs.len(),
            &seqs[..seqs.len().min(5)],
            expected.len()
        ));
    }
    r.sum.messages += seqs.len() as u64;
}
