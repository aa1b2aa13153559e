//! Handle passing: how `Queue`, `Pipe`, `Lock`... travel to a child.
//!
//! A handle travels in four places: a worker's arguments
//! (`Process::start`), a pool task's arguments (`Pool::apply`, `map`,
//! `imap`... at any chunk size), a pool initializer's arguments, and a
//! message sent over a live `Connection` or `PipeWriter` (a Unix socket:
//! the descriptors ride with the frame's first byte, and the receiver
//! keeps those that come while it reads that frame; `pipe.rs`). While
//! those arguments encode, every handle inside them (at any depth)
//! duplicates its descriptors into an outgoing table and serializes only
//! their indices. The table goes to the child with `SCM_RIGHTS`: over the
//! spawn socket for a worker's (and so an initializer's) arguments, over the
//! pool worker's task socket for a task's (`pool/wire.rs` says how they are
//! matched to their task), with the frame of a message. While the child decodes the arguments, each
//! handle takes its descriptors back out of the incoming table; descriptors
//! no handle claimed are closed. Anywhere else, serializing a handle is an
//! error that says so.

use crate::codec::{self, CodecError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::os::fd::{BorrowedFd, OwnedFd};

/// The message every handle gives when serialized outside a spawn.
pub(crate) const NOT_IN_A_SPAWN: &str = "a multiproc handle (Queue, Pipe, Lock, ...) can only be \
    sent as (part of) a worker's arguments, a pool task's arguments, an initializer's \
    arguments, or a message sent over a Pipe or a Unix-socket Connection; it cannot be \
    serialized anywhere else";

/// The descriptors of one decoding: each is taken out by the handle whose
/// index it is.
pub(crate) type FdTable = Vec<Option<OwnedFd>>;

thread_local! {
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<FdTable>> = const { RefCell::new(None) };
}

/// Puts back the outgoing table that was in place before a collection, even
/// if the encoding panicked.
struct Collecting {
    previous: Option<Vec<OwnedFd>>,
}

impl Collecting {
    fn start() -> Collecting {
        Collecting {
            previous: OUTGOING.with(|t| t.borrow_mut().replace(Vec::new())),
        }
    }

    fn finish(mut self) -> Vec<OwnedFd> {
        let previous = self.previous.take();
        let fds = OUTGOING.with(|t| std::mem::replace(&mut *t.borrow_mut(), previous));
        std::mem::forget(self);
        fds.unwrap_or_default()
    }
}

impl Drop for Collecting {
    fn drop(&mut self) {
        let previous = self.previous.take();
        OUTGOING.with(|t| *t.borrow_mut() = previous);
    }
}

/// Runs `encode`, collecting the descriptors of the handles it serializes.
/// Costs no allocation and no system call when there are none.
pub(crate) fn collecting<R>(encode: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let collecting = Collecting::start();
    let value = encode();
    (value, collecting.finish())
}

/// Encodes `value`, collecting the descriptors of the handles inside it.
pub(crate) fn encode_with_fds<T: Serialize + ?Sized>(
    value: &T,
) -> Result<(Vec<u8>, Vec<OwnedFd>), CodecError> {
    let (bytes, fds) = collecting(|| codec::encode(value));
    Ok((bytes?, fds))
}

/// Decodes `bytes`, handing `fds` to the handles inside. Descriptors no
/// handle claimed are closed.
pub(crate) fn decode_with_fds<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<T, CodecError> {
    let mut table = fds.into_iter().map(Some).collect();
    with_incoming(&mut table, || codec::decode(bytes))
}

/// Puts the incoming table back where it came from, even if the decoding
/// panicked.
struct Lending<'a> {
    table: &'a mut FdTable,
    previous: Option<FdTable>,
}

impl Drop for Lending<'_> {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let lent = INCOMING.with(|t| std::mem::replace(&mut *t.borrow_mut(), previous));
        *self.table = lent.unwrap_or_default();
    }
}

/// Runs `decode` with `table` as the incoming table, so that the handles it
/// decodes take their descriptors out of it; what they leave stays in
/// `table` (a pool chunk decodes its calls one at a time, from one table).
pub(crate) fn with_incoming<R>(table: &mut FdTable, decode: impl FnOnce() -> R) -> R {
    let lent = std::mem::take(table);
    let previous = INCOMING.with(|t| t.borrow_mut().replace(lent));
    let _lending = Lending { table, previous };
    decode()
}

/// For a handle's `Serialize`: duplicates `fd` into the outgoing table and
/// returns its index, or fails outside a spawn.
pub(crate) fn export_fd<E: serde::ser::Error>(fd: BorrowedFd<'_>) -> Result<u32, E> {
    OUTGOING.with(|t| {
        let mut table = t.borrow_mut();
        let table = table
            .as_mut()
            .ok_or_else(|| codec::custom_ser_error(NOT_IN_A_SPAWN))?;
        let dup = fd.try_clone_to_owned().map_err(|e| {
            codec::custom_ser_error(format!("cannot duplicate a handle's descriptor: {e}"))
        })?;
        table.push(dup);
        Ok(table.len() as u32 - 1)
    })
}

/// For a handle's `Deserialize`: takes descriptor `index` out of the
/// incoming table, or fails outside a spawn or for a bad index.
pub(crate) fn import_fd<E: serde::de::Error>(index: u32) -> Result<OwnedFd, E> {
    INCOMING.with(|t| {
        let mut table = t.borrow_mut();
        let table = table
            .as_mut()
            .ok_or_else(|| codec::custom_de_error(NOT_IN_A_SPAWN))?;
        table
            .get_mut(index as usize)
            .and_then(Option::take)
            .ok_or_else(|| {
                codec::custom_de_error(format!("handle table has no descriptor {index}"))
            })
    })
}
