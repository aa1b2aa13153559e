//! Handle passing: how `Queue`, `Pipe`, `Lock`... travel to a child.
//!
//! While `Process::start` encodes the worker's arguments, every handle inside
//! them (at any depth) duplicates its descriptors into an outgoing table and
//! serializes only their indices. The table goes to the child with
//! `SCM_RIGHTS`; while the child decodes the arguments, each handle takes its
//! descriptors back out of the incoming table. Anywhere else, serializing a
//! handle is an error that says so.

use crate::codec::{self, CodecError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::os::fd::{BorrowedFd, OwnedFd};

/// The message every handle gives when serialized outside a spawn.
pub(crate) const NOT_IN_A_SPAWN: &str = "a multiproc handle (Queue, Pipe, Lock, ...) can only be \
    sent to a child as (part of) a worker's arguments; it cannot be serialized anywhere else";

thread_local! {
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Encodes `value`, collecting the descriptors of the handles inside it.
pub(crate) fn encode_with_fds<T: Serialize + ?Sized>(
    value: &T,
) -> Result<(Vec<u8>, Vec<OwnedFd>), CodecError> {
    let previous = OUTGOING.with(|t| t.borrow_mut().replace(Vec::new()));
    let bytes = codec::encode(value);
    let fds = OUTGOING.with(|t| std::mem::replace(&mut *t.borrow_mut(), previous));
    Ok((bytes?, fds.unwrap_or_default()))
}

/// Decodes `bytes`, handing `fds` to the handles inside. Descriptors no
/// handle claimed are closed.
pub(crate) fn decode_with_fds<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<T, CodecError> {
    let table = fds.into_iter().map(Some).collect();
    let previous = INCOMING.with(|t| t.borrow_mut().replace(table));
    let value = codec::decode(bytes);
    INCOMING.with(|t| *t.borrow_mut() = previous);
    value
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
