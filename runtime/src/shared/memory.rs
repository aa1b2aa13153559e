//! `SharedMemory`: a block of bytes shared between processes.

use crate::codec;
use crate::handles;
use crate::sys::shm::{self, Mapping};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A block of bytes shared between processes: Python's
/// `multiprocessing.shared_memory.SharedMemory`.
///
/// Anonymous blocks ([`new`](Self::new)) live in a memfd: nothing appears in
/// `/dev/shm`, nothing can leak, and they reach children as worker arguments.
/// Named blocks ([`create`](Self::create), [`attach`](Self::attach)) are POSIX
/// shared-memory objects that unrelated processes can open by name. Only the
/// creator removes the name: when its last handle drops, or at
/// [`unlink`](Self::unlink); attaching never does (Python's resource tracker
/// deletes blocks it merely attached to). If the creator is killed before it
/// unlinks, the name stays in `/dev/shm` until someone attaches and the
/// system is told otherwise (`shm_unlink`, or a reboot): the kernel cannot
/// know that nobody will attach again.
///
/// Access copies bytes in and out ([`read`](Self::read),
/// [`write`](Self::write)); other processes may write concurrently, so there
/// is no safe `&[u8]` view. `as_slice`/`as_mut_slice` are the `unsafe`
/// escape hatches for callers that synchronize themselves.
///
/// ```
/// use multiproc::{Process, SharedMemory, worker};
///
/// #[worker]
/// fn shout(block: SharedMemory) {
///     block.write(0, b"HELLO").unwrap();
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let block = SharedMemory::new(16)?;
/// let mut p = Process::new(shout, (block.clone(),));
/// p.start()?;
/// p.join()?;
/// let mut out = [0u8; 5];
/// block.read(0, &mut out)?;
/// assert_eq!(&out, b"HELLO");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SharedMemory {
    inner: Arc<Inner>,
}

struct Inner {
    fd: OwnedFd,
    pub(crate) map: Mapping,
    /// The `/name` of a named block.
    name: Option<String>,
    /// This process created the name (and so removes it).
    creator: bool,
    unlinked: AtomicBool,
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.inner.name)
            .field("size", &self.size())
            .finish()
    }
}

fn invalid(message: String) -> crate::Error {
    crate::Error::Io(io::Error::new(io::ErrorKind::InvalidInput, message))
}

/// `name` as a POSIX shared-memory name: one leading slash, no other.
fn posix_name(name: &str) -> crate::Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() || bare.contains('/') || bare.len() > 250 || bare.contains('\0') {
        return Err(invalid(format!(
            "`{name}` is not a valid shared-memory name (1-250 characters, no `/` but a leading one)"
        )));
    }
    Ok(format!("/{bare}"))
}

impl SharedMemory {
    /// An anonymous block of `size` zeroed bytes. A size of zero is an error.
    ///
    /// ```
    /// let block = multiproc::SharedMemory::new(4096)?;
    /// assert_eq!(block.size(), 4096);
    /// assert!(block.name().is_none());
    /// assert!(multiproc::SharedMemory::new(0).is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(size: usize) -> crate::Result<Self> {
        if size == 0 {
            return Err(invalid("a shared-memory block cannot be empty".into()));
        }
        let fd = shm::memfd("multiproc-shared-memory", size as u64)?;
        Self::from_parts(fd, None, false)
    }

    /// A new named block of `size` zeroed bytes; an existing name or a size
    /// of zero is an error. This handle (and its clones) removes the name
    /// when the last of them drops.
    ///
    /// ```
    /// use multiproc::SharedMemory;
    /// let name = format!("doc-create-{}", std::process::id());
    /// let block = SharedMemory::create(&name, 64)?;
    /// assert!(SharedMemory::create(&name, 64).is_err()); // exists
    /// let other = SharedMemory::attach(&name)?;
    /// other.write(0, b"hi")?;
    /// let mut buf = [0; 2];
    /// block.read(0, &mut buf)?;
    /// assert_eq!(&buf, b"hi");
    /// drop((block, other));
    /// assert!(SharedMemory::attach(&name).is_err()); // gone with its creator
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn create(name: &str, size: usize) -> crate::Result<Self> {
        let name = posix_name(name)?;
        if size == 0 {
            return Err(invalid("a shared-memory block cannot be empty".into()));
        }
        let fd = nix::sys::mman::shm_open(
            name.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )?;
        if let Err(e) = shm::resize(fd.as_fd(), size as u64) {
            let _ = nix::sys::mman::shm_unlink(name.as_str());
            return Err(e.into());
        }
        Self::from_parts(fd, Some(name), true)
    }

    /// Attaches to the existing named block `name`; a missing name is an
    /// error. Attaching never removes the name.
    ///
    /// ```
    /// use multiproc::{Process, SharedMemory, worker};
    ///
    /// #[worker]
    /// fn fill(name: String) {
    ///     SharedMemory::attach(&name).unwrap().write(0, b"from child").unwrap();
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let name = format!("doc-attach-{}", std::process::id());
    /// let block = SharedMemory::create(&name, 16)?;
    /// let mut p = Process::new(fill, (name,));
    /// p.start()?;
    /// p.result()?;
    /// let mut buf = [0u8; 10];
    /// block.read(0, &mut buf)?;
    /// assert_eq!(&buf, b"from child");
    /// assert!(SharedMemory::attach("doc-no-such-block").is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn attach(name: &str) -> crate::Result<Self> {
        let name = posix_name(name)?;
        let fd = nix::sys::mman::shm_open(name.as_str(), OFlag::O_RDWR, Mode::empty())?;
        Self::from_parts(fd, Some(name), false)
    }

    fn from_parts(fd: OwnedFd, name: Option<String>, creator: bool) -> crate::Result<Self> {
        let size = shm::size(fd.as_fd())? as usize;
        if size == 0 {
            return Err(invalid("the shared-memory block is empty".into()));
        }
        let map = Mapping::new(fd.as_fd(), 0, size)?;
        Ok(SharedMemory {
            inner: Arc::new(Inner {
                fd,
                map,
                name,
                creator,
                unlinked: AtomicBool::new(false),
            }),
        })
    }

    /// The block's name (`/name`), for a named block.
    ///
    /// Python's `SharedMemory(name)` takes and reports names without the
    /// leading slash (it adds one for `shm_open`), while [`create`](Self::create)
    /// and [`attach`](Self::attach) take either form: pass a name Python
    /// printed as it is, and give Python this one without its `/` (glibc
    /// would find the block under `/name` too, but Python would then report
    /// its name as `/name`). Python 3.11 and 3.12 unlink a block they merely
    /// attached to when the interpreter exits; call
    /// `resource_tracker.unregister(shm._name, "shared_memory")` there after
    /// attaching.
    ///
    /// ```
    /// let name = format!("doc-name-{}", std::process::id());
    /// let block = multiproc::SharedMemory::create(&name, 8)?;
    /// assert_eq!(block.name(), Some(format!("/{name}").as_str()));
    /// let for_python = block.name().unwrap().trim_start_matches('/');
    /// assert_eq!(for_python, name);
    /// let again = multiproc::SharedMemory::attach(for_python)?; // either form
    /// assert_eq!(again.name(), block.name());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// The block's size in bytes.
    ///
    /// ```
    /// let block = multiproc::SharedMemory::new(100)?;
    /// assert_eq!(block.size(), 100);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn size(&self) -> usize {
        self.inner.map.len()
    }

    fn check(&self, offset: usize, len: usize) -> crate::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size() => Ok(()),
            _ => Err(invalid(format!(
                "{len} bytes at offset {offset} do not fit in a block of {}",
                self.size()
            ))),
        }
    }

    /// Copies `buf.len()` bytes out, from `offset`.
    ///
    /// ```
    /// let block = multiproc::SharedMemory::new(8)?;
    /// block.write(4, b"data")?;
    /// let mut buf = [0u8; 4];
    /// block.read(4, &mut buf)?;
    /// assert_eq!(&buf, b"data");
    /// assert!(block.read(6, &mut buf).is_err()); // past the end: nothing copied
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> crate::Result<()> {
        self.check(offset, buf.len())?;
        self.inner.map.read(offset, buf);
        Ok(())
    }

    /// Copies `data` in, at `offset`.
    ///
    /// ```
    /// let block = multiproc::SharedMemory::new(4)?;
    /// block.write(0, &[1, 2])?;
    /// assert!(block.write(3, &[7, 7]).is_err()); // does not fit: nothing written
    /// let mut buf = [0u8; 4];
    /// block.read(0, &mut buf)?;
    /// assert_eq!(buf, [1, 2, 0, 0]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn write(&self, offset: usize, data: &[u8]) -> crate::Result<()> {
        self.check(offset, data.len())?;
        self.inner.map.write(offset, data);
        Ok(())
    }

    /// Removes the name now (the memory stays until every handle is gone).
    /// Only the creator may: for anyone else it is an error of kind
    /// `PermissionDenied`. A name that is already gone (a second `unlink`,
    /// or someone else's `shm_unlink`) is `NotFound`, as Python's
    /// `FileNotFoundError`.
    ///
    /// ```
    /// use multiproc::{Error, SharedMemory};
    /// use std::io::ErrorKind;
    ///
    /// let name = format!("doc-unlink-{}", std::process::id());
    /// let block = SharedMemory::create(&name, 8)?;
    /// let attached = SharedMemory::attach(&name)?;
    /// assert!(attached.unlink().is_err()); // not the creator
    /// block.unlink()?;
    /// let again = block.unlink().unwrap_err();
    /// assert!(matches!(again, Error::Io(e) if e.kind() == ErrorKind::NotFound));
    /// assert!(SharedMemory::attach(&name).is_err());
    /// attached.write(0, b"mapped")?; // the memory stays while handles live
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn unlink(&self) -> crate::Result<()> {
        let Some(name) = &self.inner.name else {
            return Err(invalid("an anonymous block has no name to unlink".into()));
        };
        if !self.inner.creator {
            return Err(crate::Error::Io(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("only the creator of `{name}` unlinks it"),
            )));
        }
        if self.inner.unlinked.swap(true, Ordering::AcqRel) {
            // What `shm_unlink` says of a name that is gone (ENOENT), and
            // what Python raises (`FileNotFoundError`).
            return Err(crate::Error::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("`{name}` was already unlinked"),
            )));
        }
        nix::sys::mman::shm_unlink(name.as_str())?;
        Ok(())
    }

    pub(crate) fn mapping(&self) -> &Mapping {
        &self.inner.map
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            if self.creator && !self.unlinked.swap(true, Ordering::AcqRel) {
                let _ = nix::sys::mman::shm_unlink(name.as_str());
            }
        }
    }
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fd = handles::export_fd::<S::Error>(self.inner.fd.as_fd())?;
        (fd, &self.inner.name).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (fd, name) = <(u32, Option<String>)>::deserialize(deserializer)?;
        let fd = handles::import_fd::<D::Error>(fd)?;
        // A block received from the parent never removes the name.
        SharedMemory::from_parts(fd, name, false).map_err(codec::custom_de_error)
    }
}
