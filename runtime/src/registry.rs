//! The `Worker` trait and the link-time registry a child looks workers up in.

use crate::codec::{self, CodecError};
use crate::handles;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::os::fd::OwnedFd;

/// A function that a child process can run, made by [`#[worker]`](crate::worker).
///
/// The attribute implements this trait for the value named like the function,
/// so `Process::new(square, (3,))` checks the argument tuple and the result
/// type at compile time. Do not implement it by hand: a worker must also be
/// registered at link time, which only the attribute does.
///
/// ```
/// use multiproc::{Worker, worker};
///
/// #[worker]
/// fn add(a: i32, b: i32) -> i32 {
///     a + b
/// }
///
/// fn args_of<W: Worker>(_: W) -> &'static str {
///     std::any::type_name::<W::Args>()
/// }
/// assert_eq!(args_of(add), "(i32, i32)");
/// assert!(<add as Worker>::NAME.ends_with("::add"));
/// assert_eq!(add(2, 3), 5); // still an ordinary function here
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a worker: add `#[multiproc::worker]` to the function",
    label = "not a `#[multiproc::worker]` function",
    note = "a child process is this binary started again: it can only run a function that \
            `#[multiproc::worker]` registered by name, written as `#[multiproc::worker] fn name(..)`",
    note = "closures cannot run in a child (what they capture is not sent); move the body \
            into a `#[worker]` function and pass the captures as its arguments"
)]
pub trait Worker: Copy + Send + Sync + 'static {
    /// The name a child finds the worker by: `module::path::function`.
    ///
    /// ```
    /// use multiproc::{Worker, worker};
    ///
    /// #[worker]
    /// fn ping() {}
    ///
    /// assert!(<ping as Worker>::NAME.ends_with("::ping")); // module path, then the name
    /// ```
    const NAME: &'static str;
    /// What a child looks the worker up by: [`NAME`](Worker::NAME) and the
    /// line and column of the `#[worker]`, so that two workers of one name
    /// in different function bodies of a module are two workers.
    #[doc(hidden)]
    const ID: &'static str = Self::NAME;
    /// The parameters, as a tuple: `(i32, i32)`, `(String,)`, `()`.
    ///
    /// ```
    /// use multiproc::{Worker, worker};
    ///
    /// #[worker]
    /// fn greet(name: String, times: usize) -> String {
    ///     name.repeat(times)
    /// }
    ///
    /// let args: <greet as Worker>::Args = ("hi".to_string(), 2); // (String, usize)
    /// assert_eq!(<greet as Worker>::call(args), "hihi");
    /// ```
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// The return type.
    ///
    /// ```
    /// use multiproc::{Worker, worker};
    ///
    /// #[worker]
    /// fn halve(x: u32) -> Option<u32> {
    ///     (x % 2 == 0).then(|| x / 2)
    /// }
    ///
    /// let out: <halve as Worker>::Output = halve(4); // Option<u32>
    /// assert_eq!(out, Some(2));
    /// ```
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// Runs the function in this process.
    ///
    /// ```
    /// use multiproc::{Worker, worker};
    ///
    /// #[worker]
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// // What a child does once it has the arguments, here in this process:
    /// assert_eq!(<add as Worker>::call((2, 3)), 5);
    /// ```
    fn call(args: Self::Args) -> Self::Output;
}

/// Decodes the arguments (with the handles' descriptors), runs the worker,
/// encodes its result.
pub(crate) type RunFn = fn(&[u8], Vec<OwnedFd>) -> Result<Vec<u8>, CodecError>;

/// What the registry holds for one worker.
#[doc(hidden)]
#[derive(Debug)]
pub struct WorkerEntry {
    pub(crate) name: &'static str,
    pub(crate) run: RunFn,
}

impl WorkerEntry {
    /// The entry for `W`: its name and a monomorphized runner.
    pub const fn new<W: Worker>() -> Self {
        WorkerEntry {
            name: W::ID,
            run: run::<W>,
        }
    }
}

/// Every worker of the binary, gathered by the linker.
#[doc(hidden)]
#[linkme::distributed_slice]
pub static WORKERS: [WorkerEntry];

fn run<W: Worker>(args: &[u8], fds: Vec<OwnedFd>) -> Result<Vec<u8>, CodecError> {
    let args: W::Args = handles::decode_with_fds(args, fds)?;
    codec::encode(&W::call(args))
}

/// Finds a worker by its [`Worker::ID`]. An id registered twice (one
/// `#[worker]` expanded twice at one place, by a macro) is ambiguous and not
/// found.
pub(crate) fn find(name: &str) -> Result<&'static WorkerEntry, Lookup> {
    find_in(&WORKERS, name, |w| w.name)
}

/// The one entry of `entries` named `name` (the pool's chunk runners are
/// looked up the same way, in their own slice).
pub(crate) fn find_in<T>(
    entries: &'static [T],
    name: &str,
    name_of: fn(&T) -> &str,
) -> Result<&'static T, Lookup> {
    let mut found = entries.iter().filter(|w| name_of(w) == name);
    match (found.next(), found.next()) {
        (Some(entry), None) => Ok(entry),
        (None, _) => Err(Lookup::Missing),
        (Some(_), Some(_)) => Err(Lookup::Ambiguous),
    }
}

pub(crate) enum Lookup {
    Missing,
    Ambiguous,
}
