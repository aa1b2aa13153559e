//! The memfd block behind `Value`, `Array`, `RawValue` and `RawArray`:
//! a 128-byte header (a robust mutex, the element count, a magic word),
//! then the elements.

use crate::codec;
use crate::handles;
use crate::sys::mutex::{self, Locked};
use crate::sys::shm::{self, Mapping};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Instant;

pub(crate) const DATA: usize = 128;
const MUTEX: usize = 0;
const LEN: usize = 64;
const MAGIC_AT: usize = 72;
const ELEMENT_SIZE: usize = 80;
const MAGIC: u64 = u64::from_le_bytes(*b"MPSHARE1");

/// One shared block: the memfd and this process's mapping of it.
#[derive(Debug)]
pub(crate) struct Block {
    fd: OwnedFd,
    pub(crate) map: Mapping,
    pub(crate) len: usize,
}

impl Block {
    /// A block for `len` elements of `size` bytes each (alignment ≤ 64).
    pub(crate) fn new(len: usize, size: usize) -> io::Result<Block> {
        let bytes = len
            .checked_mul(size)
            .and_then(|b| b.checked_add(DATA))
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let fd = shm::memfd("multiproc-shared", bytes as u64)?;
        let map = Mapping::new(fd.as_fd(), 0, bytes)?;
        mutex::init(&map, MUTEX)?;
        map.u64_at(LEN).store(len as u64, Ordering::Relaxed);
        map.u64_at(ELEMENT_SIZE)
            .store(size as u64, Ordering::Relaxed);
        map.u64_at(MAGIC_AT).store(MAGIC, Ordering::Release);
        Ok(Block { fd, map, len })
    }

    /// A block received from another process, checked against the element
    /// size this side expects.
    pub(crate) fn from_fd(fd: OwnedFd, size: usize) -> io::Result<Block> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let file = shm::size(fd.as_fd())? as usize;
        if file < DATA {
            return Err(invalid("not a multiproc shared block (too small)"));
        }
        let map = Mapping::new(fd.as_fd(), 0, file)?;
        if map.u64_at(MAGIC_AT).load(Ordering::Acquire) != MAGIC {
            return Err(invalid("not a multiproc shared block (bad magic)"));
        }
        let len = map.u64_at(LEN).load(Ordering::Relaxed) as usize;
        let stored = map.u64_at(ELEMENT_SIZE).load(Ordering::Relaxed) as usize;
        // An overflowing length is too long for any file (`None` would
        // compare below every `Some`).
        let needed = len.checked_mul(size).and_then(|b| b.checked_add(DATA));
        if stored != size || needed.is_none_or(|bytes| bytes > file) {
            return Err(invalid("shared block does not match the element type"));
        }
        Ok(Block { fd, map, len })
    }

    /// Takes the block's robust mutex; `Ok(true)` if its previous holder died.
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> io::Result<Option<bool>> {
        Ok(match mutex::lock(&self.map, MUTEX, deadline)? {
            Locked::Acquired => Some(false),
            Locked::OwnerDied => Some(true),
            Locked::TimedOut => None,
        })
    }

    pub(crate) fn unlock(&self) {
        let _ = mutex::unlock(&self.map, MUTEX);
    }
}

impl Serialize for Block {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        handles::export_fd::<S::Error>(self.fd.as_fd())?.serialize(serializer)
    }
}

/// Deserializes the descriptor; the caller checks it with [`Block::from_fd`].
pub(crate) fn deserialize_fd<'de, D: Deserializer<'de>>(d: D) -> Result<OwnedFd, D::Error> {
    let index = u32::deserialize(d)?;
    handles::import_fd::<D::Error>(index)
}

/// Maps a block-check failure to a serde error whose text survives postcard.
pub(crate) fn de_error<E: serde::de::Error>(e: io::Error) -> E {
    codec::custom_de_error(e)
}
