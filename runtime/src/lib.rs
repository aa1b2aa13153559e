//! Python's `multiprocessing`, in Rust, type-checked at compile time.
//!
//! A [`#[worker]`](worker) function runs in a child process: the same binary,
//! started again, which finds the worker by name before `main` runs. Its
//! arguments and result cross the process boundary with serde, and their
//! types are checked when you compile, not when the child starts.
//!
//! ```
//! use multiproc::{Process, current_process, worker};
//!
//! #[worker]
//! fn hello(n: u32) -> String {
//!     format!("hello {n} from {}", current_process().name())
//! }
//!
//! # fn main() -> multiproc::Result<()> {
//! let mut p = Process::new(hello, (7,));
//! p.start()?;
//! assert_eq!(p.result()?, format!("hello 7 from {}", p.name()));
//! assert_eq!(p.exitcode(), Some(0));
//! # Ok(())
//! # }
//! ```
//!
//! | Python | multiproc |
//! |---|---|
//! | `def f(x): ...` + `Process(target=f, args=(x,))` | `#[worker] fn f(x: T)` + `Process::new(f, (x,))` |
//! | `p.start()`, `p.join()`, `p.join(timeout)` | `p.start()?`, `p.join()?`, `p.join_timeout(d)?` |
//! | `p.is_alive()`, `p.pid`, `p.exitcode`, `p.name`, `p.daemon` | same names, as methods |
//! | `p.terminate()`, `p.kill()` | same |
//! | `p.sentinel`, `p.close()`, `p.authkey` | `p.sentinel()?` (a `BorrowedFd`), `p.close()?`, `p.authkey()` / `p.set_authkey(k)?` |
//! | `current_process()`, `parent_process()`, `active_children()`, `cpu_count()` | same |
//! | `parent_process().is_alive()`, `.join(t)` | `.is_alive()`, `.join_timeout(d)?` (`true` once it has exited) |
//! | `connection.wait([conn, p.sentinel, sock], t)` | `wait(&[&conn as &dyn Waitable, &p, &sock], Some(d))?` |
//! | `Pool(n, initializer, initargs, maxtasksperchild)` | `Pool::builder().processes(n).initializer(f, args).max_tasks_per_child(m).build()?` |
//! | `pool.map(f, xs)`, `starmap`, `imap`, `imap_unordered`, `apply`, `apply_async` | same names; `pool.chunksize(c).map(f, xs)` for `chunksize=c` |
//! | `with Pool() as pool:` (terminate on exit) | dropping the [`Pool`] terminates it |
//!
//! # What can cross the boundary
//!
//! Arguments, results and messages are encoded with postcard, which is
//! compact and fast but not self-describing: it writes no field names and no
//! types. Plain structs, tuples, `Vec`s, maps, `Option`s, externally tagged
//! enums (serde's default), `#[serde(rename)]`, `#[serde(default)]`,
//! `#[serde(with)]`, `#[serde(transparent)]` and `#[serde(skip)]` (on both
//! sides) work as they are. These need a self-describing format, and fail
//! at run time with an error that names the attribute and the fix:
//!
//! | serde feature | what goes wrong with postcard |
//! |---|---|
//! | `#[serde(skip_serializing_if = ...)]`, `#[serde(skip_serializing)]` | a skipped field shifts every later one: the receiver misreads them (a decode error) |
//! | `#[serde(flatten)]` | encoding fails: "the length of a sequence must be known" |
//! | `#[serde(untagged)]`, `#[serde(tag = "...")]`, `serde_json::Value` | decoding fails: they need `deserialize_any` |
//!
//! Wrap such a value in `SelfDescribing` (feature `self-describing`,
//! below), which carries it as MessagePack with field names. A worker that
//! can fail returns `Result<T, RemoteError>`: `std::io::Error` and most
//! error types cannot be serialized ([`RemoteError`] says why).
//!
//! # Features
//!
//! Off by default; without them the crate depends on no logging crate, and
//! on no format but postcard.
//!
//! - `self-describing`: [`SelfDescribing<T>`](https://docs.rs/multiproc/latest/multiproc/struct.SelfDescribing.html)
//!   carries `T` as MessagePack with field names (with `rmp-serde`), so that
//!   the serde features above cross the boundary.
//! - `log`: records of the [`log`](https://docs.rs/log) crate emitted in any
//!   child (a [`Process`] or a [`Pool`] worker, at any depth) are re-emitted
//!   in the root process's logger, with `child.name` and `child.pid` as
//!   key-values and `NAME[PID]: ` before the message.
//! - `tracing`: events of [`tracing`](https://docs.rs/tracing) emitted in any
//!   child are dispatched to the root's subscriber with their own target,
//!   location and fields, plus `child.name` and `child.pid`. Spans are not
//!   forwarded.
//!
//! The child is given the parent's level, so a record the parent would drop
//! costs it no syscall; a child's records keep their order and have been
//! re-emitted when `join()` returns; a child that logs faster than the
//! parent's logger writes waits for it. With a logger in the parent, a
//! child's own `log::set_logger` or `tracing::subscriber::set_global_default`
//! fails: set logging up in `main` only.

#![warn(missing_docs)]
// Unsafe code lives in `sys` only.
#![deny(unsafe_code)]

// Lets the code `#[worker]` generates (which names `::multiproc`) compile
// inside this crate's own tests.
#[allow(unused_extern_crates)]
extern crate self as multiproc;

// Not in the unit-test build: it compiles `pool/wire.rs` a second time.
#[cfg(not(test))]
#[doc(hidden)]
#[path = "fuzzing.rs"]
pub mod __fuzz;
#[cfg(feature = "tokio")]
mod aio;
mod child;
mod codec;
mod conn;
mod connection;
mod current;
mod error;
mod handles;
mod logs;
mod pipe;
mod pool;
mod process;
mod protocol;
mod queue;
mod registry;
mod remote_error;
#[cfg(feature = "self-describing")]
mod self_describing;
mod setup;
mod shared;
mod start;
mod sync;
#[allow(unsafe_code)]
mod sys;
mod wait;

#[cfg(feature = "tokio")]
pub use aio::ResultFuture;
pub use codec::CodecError;
pub use connection::{Address, Client, DEFAULT_HANDSHAKE_TIMEOUT, IntoAddress, Listener};
pub use current::{CurrentProcess, ParentProcess, cpu_count, current_process, parent_process};
pub use error::{Error, Result};
pub use pipe::{
    Connection, Pipe, PipeReader, PipeWriter, RecvError, RecvTimeoutError, SendError, TryRecvError,
};
pub use pool::{AsyncResult, Chunked, Imap, ImapUnordered, Pool, PoolBuilder};
pub use process::{ChildProcess, Process, active_children};
pub use queue::{
    GetError, GetTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue, SimpleQueue,
    TryGetError, TryPutError,
};
pub use registry::Worker;
pub use remote_error::RemoteError;
#[cfg(feature = "self-describing")]
pub use self_describing::SelfDescribing;
pub use setup::{Limited, Resource, Stdio, on_child_start};
pub use shared::{
    Array, ArrayGuard, OwnerDied, RawArray, RawValue, ShareableList, ShareableValue, SharedMemory,
    Value, ValueGuard,
};
pub use start::{
    Context, FORKSERVER_NAME, START_METHOD_ENV, StartMethod, UnknownStartMethod,
    get_all_start_methods, get_context, get_start_method, set_start_method,
};
pub use sync::{
    AcquireResult, AcquireTimeoutError, Barrier, BarrierBuilder, BarrierWaitError,
    BoundedSemaphore, Condition, ConditionLock, Event, Lock, LockGuard, NotOwner, RLock,
    RLockGuard, ReleaseError, Semaphore, SemaphoreGuard, TryAcquireError, TryBarrierWaitError,
    WaitTimeoutResult,
};
pub use wait::{Waitable, wait};

/// Turns a free function into a worker that a child process can run.
///
/// The function stays callable as before (`square(3)` runs here). Its name,
/// used as a value, implements [`Worker`], so [`Process::new`] checks the
/// argument tuple and result type at compile time. Parameters and the result
/// must be owned and implement serde's `Serialize` and `DeserializeOwned`;
/// the worker cannot be generic, `async`, `unsafe`, `extern`, `const` or a
/// method. Each of those is a compile error under the offending tokens.
///
/// The worker's name is its module path plus the function name; the child
/// finds it in a link-time registry, so no registration call is needed.
///
/// ```
/// use multiproc::{Process, worker};
///
/// #[worker]
/// fn square(x: i64) -> i64 {
///     x * x
/// }
///
/// assert_eq!(square(3), 9); // a plain call, in this process
/// let mut p = Process::new(square, (4,)); // `("x",)` would not compile
/// p.start()?;
/// assert_eq!(p.result()?, 16);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub use multiproc_macros::worker;

#[doc(hidden)]
pub mod __private {
    pub use crate::pool::{CHUNKS, ChunkEntry};
    pub use crate::registry::{WORKERS, WorkerEntry};
    pub use linkme;
}

#[cfg(test)]
#[allow(unsafe_code)] // `#[worker]` registers with a link-section static
mod tests {
    use crate::{Error, Process, current_process, parent_process, worker};

    #[worker]
    fn parent_and_self() -> (String, Option<(u32, String)>) {
        let parent = parent_process().map(|p| (p.pid(), p.name().to_string()));
        (current_process().name().to_string(), parent)
    }

    #[worker]
    fn boom() {
        panic!("unit boom");
    }

    #[test]
    fn workers_run_from_a_unit_test() {
        let mut p = Process::new(parent_and_self, ());
        p.start().unwrap();
        let (name, parent) = p.result().unwrap();
        assert_eq!(name, p.name());
        assert_eq!(
            parent,
            Some((std::process::id(), "MainProcess".to_string()))
        );
    }

    #[test]
    fn panics_in_unit_test_children_are_reported() {
        let mut p = Process::new(boom, ());
        p.env("RUST_BACKTRACE", "0"); // it panics on purpose
        p.start().unwrap();
        match p.result() {
            Err(Error::Panicked {
                message, location, ..
            }) => {
                assert_eq!(message, "unit boom");
                assert!(location.unwrap().contains("lib.rs"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(p.exitcode(), Some(1));
    }
}
