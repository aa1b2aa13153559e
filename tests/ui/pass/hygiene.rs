//! The code `#[worker]` generates stays correct under strict lints and with
//! local items that shadow the names it uses (`core`, `std`, prelude traits
//! and types): it reaches everything through absolute paths.
#![deny(unused_qualifications, missing_docs, warnings)]
#![forbid(unsafe_code)]

use multiproc::{Process, worker};

#[allow(dead_code)]
mod core {}
#[allow(dead_code)]
mod std {}
#[allow(dead_code)]
mod serde {}
#[allow(dead_code)]
mod linkme {}

#[allow(dead_code)]
struct Clone;
#[allow(dead_code)]
struct Copy;
#[allow(dead_code)]
struct Deref;
#[allow(dead_code)]
struct Debug;
#[allow(dead_code)]
struct Worker;
#[allow(dead_code)]
struct WorkerEntry;
#[allow(dead_code)]
type Option = ();
#[allow(dead_code)]
type Result = ();
#[allow(dead_code)]
type Vec = ();
#[allow(dead_code)]
type String = ();

#[allow(unused_macros)]
macro_rules! concat {
    ($($t:tt)*) => {
        compile_error!("the user's concat! was called")
    };
}
#[allow(unused_macros)]
macro_rules! stringify {
    ($($t:tt)*) => {
        compile_error!("the user's stringify! was called")
    };
}
#[allow(unused_macros)]
macro_rules! module_path {
    ($($t:tt)*) => {
        compile_error!("the user's module_path! was called")
    };
}

/// Adds one.
#[worker]
pub fn add_one(x: i64) -> i64 {
    x + 1
}

/// Returns nothing.
#[worker]
pub fn nothing() {}

fn main() {
    assert_eq!(add_one(1), 2);
    nothing();
    let mut p = Process::new(add_one, (41,));
    p.start().unwrap();
    assert_eq!(p.result().unwrap(), 42);
}
