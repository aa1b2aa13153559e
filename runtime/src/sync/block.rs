//! The shared memory behind every primitive: a memfd, mapped once per
//! process, that starts with a 64-byte slot for a robust mutex and then a
//! magic number and a kind, so a descriptor received from elsewhere is
//! checked before use.

use super::Spin;
use crate::codec;
use crate::handles;
use crate::sys::mutex::{self, MUTEX_SIZE};
use crate::sys::shm::{self, Mapping};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
#[cfg(feature = "tokio")]
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

const MAGIC: u64 = u64::from_le_bytes(*b"MPSYNC01");
const MAGIC_AT: usize = 64;
const KIND_AT: usize = 72;
const LEN_AT: usize = 80;
/// Where each primitive's own fields start.
pub(crate) const FIELDS: usize = 128;

const _: () = assert!(MUTEX_SIZE <= MAGIC_AT);

/// Which primitive a block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Lock = 1,
    RLock = 2,
    Semaphore = 3,
    Event = 4,
    Condition = 5,
    Barrier = 6,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Lock => "Lock",
            Kind::RLock => "RLock",
            Kind::Semaphore => "Semaphore",
            Kind::Event => "Event",
            Kind::Condition => "Condition",
            Kind::Barrier => "Barrier",
        }
    }
}

/// One process's view of a primitive's shared memory.
#[derive(Debug)]
pub(crate) struct Block {
    fd: OwnedFd,
    /// Always `Some` until dropped.
    map: Option<Mapping>,
    kind: Kind,
    /// How long waiters on this handle spin before sleeping.
    spin: Spin,
    /// The memfd's inode: equal for every handle to the same primitive.
    ino: u64,
}

impl Block {
    /// A fresh block of `len` bytes; `init` sets it up before anyone else
    /// can see it.
    pub(crate) fn create(
        kind: Kind,
        len: usize,
        init: impl FnOnce(&Mapping) -> io::Result<()>,
    ) -> io::Result<Block> {
        let fd = shm::memfd(&format!("multiproc-{}", kind.name()), len as u64)?;
        let map = Mapping::new(fd.as_fd(), 0, len)?;
        init(&map)?;
        map.u32_at(KIND_AT).store(kind as u32, Ordering::Relaxed);
        map.u64_at(LEN_AT).store(len as u64, Ordering::Relaxed);
        map.u64_at(MAGIC_AT).store(MAGIC, Ordering::Release);
        let ino = nix::sys::stat::fstat(fd.as_fd())?.st_ino;
        Ok(Block {
            fd,
            map: Some(map),
            kind,
            spin: Spin::new(),
            ino,
        })
    }

    /// A block received from another process: checks that it holds `kind`.
    pub(crate) fn open(fd: OwnedFd, kind: Kind) -> io::Result<Block> {
        let invalid = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the descriptor is not a multiproc {} ({why})", kind.name()),
            )
        };
        let st = nix::sys::stat::fstat(fd.as_fd())?;
        let size = st.st_size as u64;
        if size < FIELDS as u64 {
            return Err(invalid("too small"));
        }
        let head = Mapping::new(fd.as_fd(), 0, FIELDS)?;
        if head.u64_at(MAGIC_AT).load(Ordering::Acquire) != MAGIC {
            return Err(invalid("bad magic"));
        }
        if head.u32_at(KIND_AT).load(Ordering::Relaxed) != kind as u32 {
            return Err(invalid("another kind of primitive"));
        }
        let len = head.u64_at(LEN_AT).load(Ordering::Relaxed);
        if len > size || len < FIELDS as u64 || len > isize::MAX as u64 {
            return Err(invalid("bad length"));
        }
        drop(head);
        let map = Mapping::new(fd.as_fd(), 0, len as usize)?;
        Ok(Block {
            fd,
            map: Some(map),
            kind,
            spin: Spin::new(),
            ino: st.st_ino,
        })
    }

    /// The memfd, for a primitive that maps more of it later (a
    /// `Condition`'s waiter table grows past the block's own length).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn map(&self) -> &Mapping {
        self.map.as_ref().expect("mapped until dropped")
    }

    /// Spins until `ready` holds, within this handle's adaptive budget;
    /// see [`Spin::until`].
    pub(crate) fn spin_until(&self, ready: impl FnMut() -> bool) -> Result<(), Instant> {
        self.spin.until(ready)
    }

    /// After a wait that had to sleep; see [`Spin::slept`].
    pub(crate) fn slept(&self, start: Instant) {
        self.spin.slept(start)
    }

    pub(crate) fn u32(&self, offset: usize) -> &AtomicU32 {
        self.map().u32_at(offset)
    }

    pub(crate) fn u64(&self, offset: usize) -> &AtomicU64 {
        self.map().u64_at(offset)
    }

    /// Whether both handles refer to the same primitive (even when mapped
    /// separately, as after two handles to it were passed to one child).
    pub(crate) fn same(&self, other: &Block) -> bool {
        self.ino == other.ino
    }

    /// Whether a thread of this process holds the lock at the start of the
    /// block (when /proc cannot tell, whether anyone does).
    fn held_here(&self) -> bool {
        let tid = mutex::holder_tid(self.map(), 0);
        if tid == 0 {
            return false;
        }
        let task = Path::new("/proc/self/task");
        !task.is_dir() || task.join(tid.to_string()).exists()
    }

    /// For a handle's `Serialize`: the descriptor's index in the spawn table.
    pub(crate) fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        handles::export_fd::<S::Error>(self.fd.as_fd())?.serialize(serializer)
    }

    /// For a handle's `Deserialize`.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
        kind: Kind,
    ) -> Result<Block, D::Error> {
        let index = u32::deserialize(deserializer)?;
        let fd = handles::import_fd::<D::Error>(index)?;
        Block::open(fd, kind).map_err(codec::custom_de_error)
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // A thread that forgot a guard still holds the lock, and its robust
        // mutex list (which glibc and the kernel walk) points into this
        // mapping: it must stay mapped.
        if matches!(self.kind, Kind::Lock | Kind::RLock) && self.held_here() {
            std::mem::forget(self.map.take());
        }
    }
}

/// A futex word of a block, for the futex helper of the async forms.
#[cfg(feature = "tokio")]
pub(crate) struct BlockWord {
    block: Arc<Block>,
    offset: usize,
}

#[cfg(feature = "tokio")]
impl BlockWord {
    pub(crate) fn new(block: &Arc<Block>, offset: usize) -> BlockWord {
        BlockWord {
            block: block.clone(),
            offset,
        }
    }
}

#[cfg(feature = "tokio")]
impl crate::aio::FutexWord for BlockWord {
    fn word(&self) -> &AtomicU32 {
        self.block.u32(self.offset)
    }
}
