//! The only module that may contain `unsafe`: syscalls the safe crates
//! (`nix`, std) do not cover, each wrapped in a safe function.
//!
//! Every `unsafe` block carries a `// SAFETY:` comment.

pub(crate) mod clone;
pub(crate) mod fdpass;
pub(crate) mod fnptr;
pub(crate) mod futex;
pub(crate) mod mutex;
pub(crate) mod pod;
pub(crate) mod proc;
#[cfg(feature = "tokio")]
pub(crate) mod reactor;
pub(crate) mod shm;
pub(crate) mod spawn;
pub(crate) mod startup;

use std::io;

/// Turns a `-1`-and-errno return into an `io::Error`.
fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
