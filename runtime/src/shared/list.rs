//! `ShareableList`: Python's `multiprocessing.shared_memory.ShareableList`,
//! in Python's own layout (CPython 3.11's `Lib/multiprocessing/shared_memory.py`;
//! CPython's main branch still has the same one).
//!
//! One block, all integers native-endian:
//!
//! - 8 bytes: the item count `n` (`q`);
//! - `(n + 1) * 8` bytes: the offsets of the items from the start of the data
//!   area (`q` each; the first is 0, the last is the data area's length);
//! - the data area: each item in its slot, 8 bytes for a number, a bool or
//!   `None`, `8 * (len / 8 + 1)` for a `str` or `bytes` of `len` bytes;
//! - `n * 8` bytes: each item's `struct` format, NUL-padded: `q`, `d`,
//!   `xxxxxxx?` (a bool in the slot's last byte), `xxxxxx?x` (`None`), or
//!   `<slot>s`;
//! - `n` bytes: each item's back-transform code: 0 as stored, 1 `str`,
//!   2 `bytes`, 3 `None`.
//!
//! The count and offsets never change after creation, so they are read and
//! checked once, when a handle is made; formats and codes are checked at
//! every read, since any process may write them.

use super::SharedMemory;
use crate::codec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::io;
use std::sync::Arc;

/// The unit of Python's layout: every slot is a multiple of it.
const ALIGNMENT: usize = 8;
/// The longest `str`/`bytes` Python's layout can describe: its slot's
/// format (`<slot>s`) must fit in 8 bytes, and the slot is rounded up.
const MAX_ITEM: usize = 9_999_991;
/// The largest slot a `<slot>s` format of 8 bytes can name.
const MAX_FORMAT_SLOT: usize = 9_999_999;

const CODE_AS_STORED: u8 = 0;
const CODE_STR: u8 = 1;
const CODE_BYTES: u8 = 2;
const CODE_NONE: u8 = 3;

/// One item of a [`ShareableList`]: the types Python's `ShareableList`
/// holds (`int` within `i64`, `float`, `bool`, `str`, `bytes`, `None`).
///
/// `PartialEq` compares variants structurally (`Int(1) != Float(1.0)`);
/// [`ShareableList::count`] and [`index`](ShareableList::index) use Python's
/// `==` instead.
///
/// ```
/// use multiproc::ShareableValue;
///
/// assert_eq!(ShareableValue::from(3), ShareableValue::Int(3));
/// assert_eq!(ShareableValue::from("hi"), ShareableValue::Str("hi".into()));
/// assert_eq!(ShareableValue::from(None::<i64>), ShareableValue::None);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum ShareableValue {
    /// A Python `int` (format `q`).
    Int(i64),
    /// A Python `float` (format `d`).
    Float(f64),
    /// A Python `bool` (format `xxxxxxx?`).
    Bool(bool),
    /// A Python `str`, stored as UTF-8 (format `<slot>s`). Trailing NULs are
    /// lost, as in Python, which strips them when it reads.
    Str(String),
    /// A Python `bytes` (format `<slot>s`); trailing NULs are lost, as in
    /// Python.
    Bytes(Vec<u8>),
    /// Python's `None` (format `xxxxxx?x`).
    None,
}

impl From<i64> for ShareableValue {
    fn from(v: i64) -> Self {
        ShareableValue::Int(v)
    }
}

impl From<i32> for ShareableValue {
    fn from(v: i32) -> Self {
        ShareableValue::Int(v.into())
    }
}

impl From<f64> for ShareableValue {
    fn from(v: f64) -> Self {
        ShareableValue::Float(v)
    }
}

impl From<bool> for ShareableValue {
    fn from(v: bool) -> Self {
        ShareableValue::Bool(v)
    }
}

impl From<String> for ShareableValue {
    fn from(v: String) -> Self {
        ShareableValue::Str(v)
    }
}

impl From<&str> for ShareableValue {
    fn from(v: &str) -> Self {
        ShareableValue::Str(v.to_string())
    }
}

impl From<Vec<u8>> for ShareableValue {
    fn from(v: Vec<u8>) -> Self {
        ShareableValue::Bytes(v)
    }
}

impl From<&[u8]> for ShareableValue {
    fn from(v: &[u8]) -> Self {
        ShareableValue::Bytes(v.to_vec())
    }
}

impl<T: Into<ShareableValue>> From<Option<T>> for ShareableValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(ShareableValue::None, Into::into)
    }
}

/// Python's `==` between two items: numbers (and bools, as 0 and 1) compare
/// by value across types, exactly; `str` never equals `bytes`.
fn python_eq(a: &ShareableValue, b: &ShareableValue) -> bool {
    use ShareableValue as V;
    enum Num {
        Int(i64),
        Float(f64),
    }
    fn num(v: &ShareableValue) -> Option<Num> {
        match v {
            V::Int(i) => Some(Num::Int(*i)),
            V::Bool(b) => Some(Num::Int(i64::from(*b))),
            V::Float(f) => Some(Num::Float(*f)),
            _ => None,
        }
    }
    // Python compares an int and a float exactly, never by rounding one.
    fn int_eq_float(i: i64, f: f64) -> bool {
        const TWO_63: f64 = 9_223_372_036_854_775_808.0;
        f.fract() == 0.0 && (-TWO_63..TWO_63).contains(&f) && f as i64 == i
    }
    match (a, b) {
        (V::Str(x), V::Str(y)) => x == y,
        (V::Bytes(x), V::Bytes(y)) => x == y,
        (V::None, V::None) => true,
        _ => match (num(a), num(b)) {
            (Some(Num::Int(x)), Some(Num::Int(y))) => x == y,
            (Some(Num::Float(x)), Some(Num::Float(y))) => x == y,
            (Some(Num::Int(i)), Some(Num::Float(f))) | (Some(Num::Float(f)), Some(Num::Int(i))) => {
                int_eq_float(i, f)
            }
            _ => false,
        },
    }
}

/// An item's `struct` format, as stored.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Int,
    Float,
    Bool,
    None,
    /// `<n>s`: `n` bytes.
    Bytes(usize),
}

impl Format {
    fn parse(raw: &[u8; 8]) -> Option<Format> {
        let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        Some(match &raw[..end] {
            b"q" => Format::Int,
            b"d" => Format::Float,
            b"xxxxxxx?" => Format::Bool,
            b"xxxxxx?x" => Format::None,
            [digits @ .., b's'] if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
                // At most 7 digits: no overflow.
                Format::Bytes(std::str::from_utf8(digits).ok()?.parse().ok()?)
            }
            _ => return None,
        })
    }

    fn encode(self) -> [u8; 8] {
        let text = match self {
            Format::Int => "q".to_string(),
            Format::Float => "d".to_string(),
            Format::Bool => "xxxxxxx?".to_string(),
            Format::None => "xxxxxx?x".to_string(),
            Format::Bytes(n) => format!("{n}s"),
        };
        let mut raw = [0u8; 8];
        raw[..text.len()].copy_from_slice(text.as_bytes());
        raw
    }
}

/// An item encoded for its slot: format, code and the bytes to store.
struct Encoded {
    format: Format,
    code: u8,
    data: Vec<u8>,
}

/// Encodes `value` for a slot that holds `capacity` bytes of `str`/`bytes`
/// (at least 8), as Python's `__setitem__` does.
fn encode(index: usize, value: &ShareableValue, capacity: usize) -> crate::Result<Encoded> {
    let word = |format, code, data: [u8; 8]| Encoded {
        format,
        code,
        data: data.to_vec(),
    };
    Ok(match value {
        ShareableValue::Int(v) => word(Format::Int, CODE_AS_STORED, v.to_ne_bytes()),
        ShareableValue::Float(v) => word(Format::Float, CODE_AS_STORED, v.to_ne_bytes()),
        ShareableValue::Bool(v) => {
            let mut data = [0; 8];
            data[7] = u8::from(*v);
            word(Format::Bool, CODE_AS_STORED, data)
        }
        ShareableValue::None => word(Format::None, CODE_NONE, [0; 8]),
        ShareableValue::Str(s) => text(index, s.as_bytes(), CODE_STR, capacity)?,
        ShareableValue::Bytes(b) => text(index, b, CODE_BYTES, capacity)?,
    })
}

fn text(index: usize, bytes: &[u8], code: u8, capacity: usize) -> crate::Result<Encoded> {
    if bytes.len() > capacity {
        return Err(crate::Error::ItemTooLong {
            index,
            len: bytes.len(),
            capacity,
        });
    }
    // `struct` pads an `s` item with NULs to its full width.
    let mut data = vec![0; capacity];
    data[..bytes.len()].copy_from_slice(bytes);
    Ok(Encoded {
        format: Format::Bytes(capacity),
        code,
        data,
    })
}

fn corrupt(what: String) -> crate::Error {
    crate::Error::Io(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("not a valid ShareableList: {what}"),
    ))
}

/// Where everything is: read and checked once per handle.
#[derive(Debug)]
struct Layout {
    /// `len + 1` offsets from the data area's start, non-decreasing by at
    /// least 8.
    offsets: Box<[usize]>,
}

impl Layout {
    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn data_start(&self) -> usize {
        (self.len() + 2) * 8
    }

    fn formats_at(&self) -> usize {
        self.data_start() + self.offsets[self.len()]
    }

    fn codes_at(&self) -> usize {
        self.formats_at() + self.len() * 8
    }

    /// The block offset and length of item `index`'s slot.
    fn slot(&self, index: usize) -> (usize, usize) {
        let start = self.offsets[index];
        (self.data_start() + start, self.offsets[index + 1] - start)
    }

    /// Sizes the slots for `items` as Python does, but by UTF-8 length.
    fn for_items(items: &[ShareableValue]) -> crate::Result<(Layout, usize)> {
        let mut offsets = Vec::with_capacity(items.len() + 1);
        let mut end = 0usize;
        offsets.push(end);
        for (index, item) in items.iter().enumerate() {
            let slot = match item {
                ShareableValue::Str(s) => text_slot(index, s.len())?,
                ShareableValue::Bytes(b) => text_slot(index, b.len())?,
                _ => ALIGNMENT,
            };
            end = end.checked_add(slot).ok_or_else(too_large)?;
            offsets.push(end);
        }
        let layout = Layout {
            offsets: offsets.into(),
        };
        let size = items
            .len()
            .checked_mul(17)
            .and_then(|n| n.checked_add(16))
            .and_then(|n| n.checked_add(end))
            .ok_or_else(too_large)?;
        Ok((layout, size))
    }

    /// Reads and checks the count and offsets of the list in `shm`.
    fn read(shm: &SharedMemory) -> crate::Result<Layout> {
        let size = shm.size();
        let word = |at: usize| -> crate::Result<i64> {
            let mut raw = [0; 8];
            shm.read(at, &mut raw)
                .map_err(|_| corrupt(format!("a block of {size} bytes has no header")))?;
            Ok(i64::from_ne_bytes(raw))
        };
        let count = word(0)?;
        let len = usize::try_from(count)
            .ok()
            .filter(|&len| {
                len.checked_add(2)
                    .and_then(|n| n.checked_mul(8))
                    .is_some_and(|h| h <= size)
            })
            .ok_or_else(|| {
                corrupt(format!(
                    "an item count of {count} in a block of {size} bytes"
                ))
            })?;
        let mut raw = vec![0; (len + 1) * 8];
        shm.read(8, &mut raw)?;
        let mut offsets = Vec::with_capacity(len + 1);
        for (i, chunk) in raw.chunks_exact(8).enumerate() {
            let offset = i64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
            let offset = usize::try_from(offset)
                .ok()
                .filter(|&o| {
                    offsets
                        .last()
                        .is_none_or(|&prev: &usize| o >= prev && o - prev >= ALIGNMENT)
                })
                .ok_or_else(|| {
                    corrupt(format!(
                        "item offset {i} is {offset}, not 8 or more past the one before"
                    ))
                })?;
            offsets.push(offset);
        }
        let end = offsets[len]
            .checked_add((len + 2) * 8)
            .and_then(|n| n.checked_add(len * 9));
        if end.is_none_or(|end| end > size) {
            return Err(corrupt(format!(
                "{len} items with {} bytes of data do not fit in a block of {size} bytes",
                offsets[len]
            )));
        }
        Ok(Layout {
            offsets: offsets.into(),
        })
    }
}

fn text_slot(index: usize, len: usize) -> crate::Result<usize> {
    if len > MAX_ITEM {
        return Err(crate::Error::ItemTooLong {
            index,
            len,
            capacity: MAX_ITEM,
        });
    }
    Ok(ALIGNMENT * (len / ALIGNMENT + 1))
}

fn too_large() -> crate::Error {
    crate::Error::InvalidArgument("the list's items are too large for one block".into())
}

/// A fixed-length list of `i64`, `f64`, `bool`, `str`, `bytes` and `None`
/// items in one shared-memory block: Python's
/// `multiprocessing.shared_memory.ShareableList`, in Python's own layout, so
/// a Python process attaches to a named list by its name and sees (and
/// changes) the same items, and the other way round.
///
/// Each item has a slot sized when the list is created: 8 bytes for a
/// number, bool or `None`, and for a `str` or `bytes` of `n` bytes the next
/// multiple of 8 above `n`. [`set`](Self::set) may change an item's type, as
/// Python allows, as long as the new value fits the slot: a longer `str`
/// or `bytes` is [`Error::ItemTooLong`](crate::Error::ItemTooLong) (Python's
/// `ValueError`).
///
/// There is no lock, as in Python: a [`get`](Self::get) racing a `set` of
/// the same item, in any process, may see a torn value or a format that
/// does not match the bytes; the result is some value or an error, never a
/// panic or a read outside the block. Bring a [`Lock`](crate::Lock) if items
/// change while others read them.
///
/// Like [`SharedMemory`], the list reaches children as a worker argument
/// (anonymous or named), and a named list's name is removed when the
/// creator's last handle drops (or at [`unlink`](Self::unlink); Python's
/// creator must call `shm.unlink()` itself). A block whose header someone
/// corrupted is refused with an `InvalidData` error.
///
/// Where it differs from Python: a `str` slot is sized by the string's
/// UTF-8 length, where Python counts characters and so truncates (or cuts
/// in two) a non-ASCII string that needs more bytes; `create(None, ..)`
/// makes an anonymous list, where Python picks a random name; indices are
/// `usize`, without Python's negative ones; [`index`](Self::index) returns
/// `None` where Python raises `ValueError`; [`name`](Self::name) has the
/// leading `/` that Python's `sl.shm.name` lacks (give Python the name
/// without it; either form attaches here). A Python 3.11 or 3.12 process
/// that attaches unlinks the block when it exits unless it calls
/// `resource_tracker.unregister(sl.shm._name, "shared_memory")`.
///
/// ```
/// use multiproc::{Process, ShareableList, ShareableValue, worker};
///
/// #[worker]
/// fn bump(list: ShareableList) {
///     if let Ok(ShareableValue::Int(n)) = list.get(0) {
///         list.set(0, n + 1).unwrap();
///     }
///     list.set(2, "done").unwrap();
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let list = ShareableList::create(
///     None,
///     [ShareableValue::Int(41), 2.5.into(), "waiting".into(), ShareableValue::None],
/// )?;
/// let mut p = Process::new(bump, (list.clone(),));
/// p.start()?;
/// p.join()?;
/// assert_eq!(list.get(0)?, ShareableValue::Int(42));
/// assert_eq!(list.get(2)?, ShareableValue::Str("done".into()));
/// assert_eq!(list.format()?, "qd8sxxxxxx?x");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ShareableList {
    shm: SharedMemory,
    layout: Arc<Layout>,
}

impl fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareableList")
            .field("name", &self.shm.name())
            .field("len", &self.len())
            .finish()
    }
}

impl ShareableList {
    /// A new list of `items`: in a named block (`Some(name)`, like
    /// Python's `ShareableList(items, name=name)`; an existing name is an
    /// error) or in an anonymous one (`None`: it reaches children as a
    /// worker argument, but no unrelated process can attach; Python's
    /// `name=None` picks a random name instead).
    ///
    /// A `str` or `bytes` item over 9,999,991 bytes is
    /// [`Error::ItemTooLong`](crate::Error::ItemTooLong): Python's layout
    /// cannot describe its slot.
    ///
    /// ```
    /// use multiproc::{ShareableList, ShareableValue};
    ///
    /// let name = format!("doc-list-{}", std::process::id());
    /// let list = ShareableList::create(Some(&name), [1, 2, 3])?;
    /// assert_eq!(list.len(), 3);
    /// assert_eq!(list.name(), Some(format!("/{name}").as_str()));
    /// let words = ShareableList::create(None, ["howdy", "hello"])?;
    /// assert_eq!(words.get(1)?, ShareableValue::Str("hello".into()));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn create<I>(name: Option<&str>, items: I) -> crate::Result<Self>
    where
        I: IntoIterator,
        I::Item: Into<ShareableValue>,
    {
        let items: Vec<ShareableValue> = items.into_iter().map(Into::into).collect();
        let (layout, size) = Layout::for_items(&items)?;
        let mut block = vec![0u8; size];
        block[..8].copy_from_slice(&(items.len() as i64).to_ne_bytes());
        for (i, offset) in layout.offsets.iter().enumerate() {
            block[8 + i * 8..16 + i * 8].copy_from_slice(&(*offset as i64).to_ne_bytes());
        }
        for (index, item) in items.iter().enumerate() {
            let (at, slot) = layout.slot(index);
            let encoded = encode(index, item, slot)?;
            block[at..at + encoded.data.len()].copy_from_slice(&encoded.data);
            let format_at = layout.formats_at() + index * 8;
            block[format_at..format_at + 8].copy_from_slice(&encoded.format.encode());
            block[layout.codes_at() + index] = encoded.code;
        }
        let shm = match name {
            Some(name) => SharedMemory::create(name, size)?,
            None => SharedMemory::new(size)?,
        };
        shm.write(0, &block)?;
        Ok(ShareableList {
            shm,
            layout: Arc::new(layout),
        })
    }

    /// Attaches to the existing list in the named block `name` (Python's
    /// `ShareableList(name=name)`), with or without the leading `/`. A
    /// missing name is a `NotFound` error; a block that does not hold a
    /// valid list, `InvalidData`. Attaching never removes the name.
    ///
    /// ```
    /// use multiproc::{ShareableList, ShareableValue};
    ///
    /// let name = format!("doc-list-attach-{}", std::process::id());
    /// let list = ShareableList::create(Some(&name), [ShareableValue::Bool(true)])?;
    /// let other = ShareableList::attach(&name)?;
    /// other.set(0, false)?;
    /// assert_eq!(list.get(0)?, ShareableValue::Bool(false));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn attach(name: &str) -> crate::Result<Self> {
        Self::from_shm(SharedMemory::attach(name)?)
    }

    fn from_shm(shm: SharedMemory) -> crate::Result<Self> {
        let layout = Layout::read(&shm)?;
        Ok(ShareableList {
            shm,
            layout: Arc::new(layout),
        })
    }

    /// The number of items, fixed at creation.
    ///
    /// ```
    /// let list = multiproc::ShareableList::create(None, [1, 2])?;
    /// assert_eq!(list.len(), 2);
    /// assert!(!list.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.layout.len()
    }

    /// Whether the list has no items.
    ///
    /// ```
    /// let list = multiproc::ShareableList::create(None, Vec::<i64>::new())?;
    /// assert!(list.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check_index(&self, index: usize) -> crate::Result<()> {
        if index < self.len() {
            Ok(())
        } else {
            Err(crate::Error::IndexOutOfRange {
                index,
                len: self.len(),
            })
        }
    }

    fn format_at(&self, index: usize) -> crate::Result<Format> {
        let mut raw = [0u8; 8];
        self.shm
            .read(self.layout.formats_at() + index * 8, &mut raw)?;
        Format::parse(&raw).ok_or_else(|| {
            corrupt(format!(
                "item {index} has the format {:?}",
                String::from_utf8_lossy(&raw).trim_end_matches('\0')
            ))
        })
    }

    /// Item `index`, as Python would read it.
    /// [`Error::IndexOutOfRange`](crate::Error::IndexOutOfRange) past the
    /// end; an `InvalidData` error if its stored format or type code is not
    /// one Python writes (or a `str` is not UTF-8).
    ///
    /// ```
    /// use multiproc::{Error, ShareableList, ShareableValue};
    ///
    /// let list = ShareableList::create(None, [ShareableValue::Float(0.5), b"raw\0".as_slice().into()])?;
    /// assert_eq!(list.get(0)?, ShareableValue::Float(0.5));
    /// // Python strips trailing NULs when it reads: so do we.
    /// assert_eq!(list.get(1)?, ShareableValue::Bytes(b"raw".to_vec()));
    /// assert!(matches!(list.get(2), Err(Error::IndexOutOfRange { index: 2, len: 2 })));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self, index: usize) -> crate::Result<ShareableValue> {
        self.check_index(index)?;
        let format = self.format_at(index)?;
        let mut code = [0u8];
        self.shm.read(self.layout.codes_at() + index, &mut code)?;
        let code = code[0];
        let (at, slot) = self.layout.slot(index);
        let width = match format {
            Format::Bytes(n) if n > slot => {
                return Err(corrupt(format!(
                    "item {index}'s format names {n} bytes in a slot of {slot}"
                )));
            }
            Format::Bytes(n) => n,
            _ => 8,
        };
        let mut data = vec![0u8; width];
        self.shm.read(at, &mut data)?;
        let word = || -> [u8; 8] { data[..8].try_into().expect("8 bytes") };
        let strip = |mut bytes: Vec<u8>| {
            let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            bytes.truncate(end);
            bytes
        };
        Ok(match (format, code) {
            (_, CODE_NONE) => ShareableValue::None,
            (Format::Int, CODE_AS_STORED) => ShareableValue::Int(i64::from_ne_bytes(word())),
            (Format::Float, CODE_AS_STORED) => ShareableValue::Float(f64::from_ne_bytes(word())),
            (Format::Bool, CODE_AS_STORED) => ShareableValue::Bool(data[7] != 0),
            // What Python reads from these pairings, which it never writes.
            (Format::None, CODE_AS_STORED) => ShareableValue::Bool(data[6] != 0),
            (Format::Bytes(_), CODE_AS_STORED) => ShareableValue::Bytes(data),
            (Format::Bytes(_), CODE_STR) => {
                ShareableValue::Str(String::from_utf8(strip(data)).map_err(|e| {
                    corrupt(format!("item {index} is a str that is not UTF-8: {e}"))
                })?)
            }
            (Format::Bytes(_), CODE_BYTES) => ShareableValue::Bytes(strip(data)),
            (format, code) => {
                return Err(corrupt(format!(
                    "item {index} has the type code {code} with the format {:?}",
                    String::from_utf8_lossy(&format.encode()).trim_end_matches('\0')
                )));
            }
        })
    }

    /// Sets item `index` to `value`, which may be of another type than
    /// before, as in Python, if it fits the item's slot (see
    /// [`capacity`](Self::capacity)): a longer `str` or `bytes` is
    /// [`Error::ItemTooLong`](crate::Error::ItemTooLong) and changes nothing.
    ///
    /// ```
    /// use multiproc::{Error, ShareableList, ShareableValue};
    ///
    /// let list = ShareableList::create(None, [ShareableValue::Int(7), "abc".into()])?;
    /// list.set(0, "eight ch")?; // a number's slot holds 8 bytes
    /// list.set(1, 2.0)?;
    /// list.set(1, "seven..")?; // "abc" got a slot of 8
    /// assert_eq!(list.to_vec()?, vec!["eight ch".into(), "seven..".into()]);
    /// let long = list.set(1, "nine byte").unwrap_err();
    /// assert!(matches!(long, Error::ItemTooLong { index: 1, len: 9, capacity: 8 }));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn set(&self, index: usize, value: impl Into<ShareableValue>) -> crate::Result<()> {
        self.check_index(index)?;
        let value = value.into();
        let (at, slot) = self.layout.slot(index);
        let encoded = encode(index, &value, slot.min(MAX_FORMAT_SLOT))?;
        // Python's order: format and code, then the value.
        self.shm.write(
            self.layout.formats_at() + index * 8,
            &encoded.format.encode(),
        )?;
        self.shm
            .write(self.layout.codes_at() + index, &[encoded.code])?;
        self.shm.write(at, &encoded.data)
    }

    /// The most bytes a `str` or `bytes` at `index` can take (its slot).
    ///
    /// ```
    /// let list = multiproc::ShareableList::create(None, ["", "12345678"])?;
    /// assert_eq!(list.capacity(0)?, 8);
    /// assert_eq!(list.capacity(1)?, 16);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn capacity(&self, index: usize) -> crate::Result<usize> {
        self.check_index(index)?;
        Ok(self.layout.slot(index).1.min(MAX_FORMAT_SLOT))
    }

    /// All items, in order (Python's `list(sl)`).
    ///
    /// ```
    /// use multiproc::{ShareableList, ShareableValue};
    ///
    /// let list = ShareableList::create(None, [Some(1), None])?;
    /// assert_eq!(list.to_vec()?, vec![ShareableValue::Int(1), ShareableValue::None]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn to_vec(&self) -> crate::Result<Vec<ShareableValue>> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// How many items equal `value` by Python's `==`, under which `1`,
    /// `1.0` and `True` are equal (Python's `sl.count(value)`).
    ///
    /// ```
    /// use multiproc::{ShareableList, ShareableValue};
    ///
    /// let list = ShareableList::create(
    ///     None,
    ///     [ShareableValue::Int(1), 1.0.into(), true.into(), "1".into()],
    /// )?;
    /// assert_eq!(list.count(&ShareableValue::Int(1))?, 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn count(&self, value: &ShareableValue) -> crate::Result<usize> {
        let mut n = 0;
        for i in 0..self.len() {
            n += usize::from(python_eq(&self.get(i)?, value));
        }
        Ok(n)
    }

    /// The position of the first item equal to `value` by Python's `==`
    /// (see [`count`](Self::count)), or `None` (where Python raises
    /// `ValueError`).
    ///
    /// ```
    /// use multiproc::{ShareableList, ShareableValue};
    ///
    /// let list = ShareableList::create(None, ["a", "b"])?;
    /// assert_eq!(list.index(&"b".into())?, Some(1));
    /// assert_eq!(list.index(&ShareableValue::Bytes(b"b".to_vec()))?, None);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn index(&self, value: &ShareableValue) -> crate::Result<Option<usize>> {
        for i in 0..self.len() {
            if python_eq(&self.get(i)?, value) {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// The `struct` formats of all items, joined (Python's `sl.format`).
    ///
    /// ```
    /// use multiproc::{ShareableList, ShareableValue};
    ///
    /// let list = ShareableList::create(None, [ShareableValue::Int(1), "x".into(), true.into()])?;
    /// assert_eq!(list.format()?, "q8sxxxxxxx?");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn format(&self) -> crate::Result<String> {
        let mut all = String::new();
        for i in 0..self.len() {
            let raw = self.format_at(i)?.encode();
            all.push_str(String::from_utf8_lossy(&raw).trim_end_matches('\0'));
        }
        Ok(all)
    }

    /// The block's name (`/name`), for a named list; Python's
    /// `sl.shm.name` is the same without the slash.
    ///
    /// ```
    /// let list = multiproc::ShareableList::create(None, [1])?;
    /// assert_eq!(list.name(), None);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.shm.name()
    }

    /// The block holding the list (Python's `sl.shm`).
    ///
    /// ```
    /// let list = multiproc::ShareableList::create(None, [1, 2])?;
    /// // Count, 3 offsets, 2 slots, 2 formats and 2 codes.
    /// assert_eq!(list.shm().size(), 8 + 24 + 16 + 16 + 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    /// Removes the name now, as [`SharedMemory::unlink`] (only the creator
    /// may; a second time is `NotFound`).
    ///
    /// ```
    /// let name = format!("doc-list-unlink-{}", std::process::id());
    /// let list = multiproc::ShareableList::create(Some(&name), [1])?;
    /// list.unlink()?;
    /// assert!(multiproc::ShareableList::attach(&name).is_err());
    /// assert_eq!(list.get(0)?, 1.into()); // the memory stays while handles live
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn unlink(&self) -> crate::Result<()> {
        self.shm.unlink()
    }
}

impl Serialize for ShareableList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shm.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shm = SharedMemory::deserialize(deserializer)?;
        ShareableList::from_shm(shm).map_err(codec::custom_de_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ShareableValue as V;

    fn sample() -> Vec<ShareableValue> {
        vec![
            V::Int(-5),
            V::Float(2.5),
            V::Bool(true),
            V::Str("abc".into()),
            V::Bytes(b"xy".to_vec()),
            V::None,
            V::Str(String::new()),
            V::Str("12345678".into()),
            V::Bool(false),
            V::Str("ééééé".into()),
        ]
    }

    fn is_invalid_data(e: &crate::Error) -> bool {
        matches!(e, crate::Error::Io(e) if e.kind() == io::ErrorKind::InvalidData)
    }

    #[test]
    fn items_round_trip_in_pythons_layout() {
        let list = ShareableList::create(None, sample()).unwrap();
        assert_eq!(list.to_vec().unwrap(), sample());
        // The same block size and formats Python gives these items (ASCII
        // strings; "ééééé" is 10 bytes, so 16 here, where Python's 8 would
        // truncate it).
        assert_eq!(
            list.format().unwrap(),
            "qdxxxxxxx?8s8sxxxxxx?x8s16sxxxxxxx?16s"
        );
        assert_eq!(list.shm().size(), 8 * 12 + 96 + 80 + 10);
        let mut count = [0; 8];
        list.shm().read(0, &mut count).unwrap();
        assert_eq!(i64::from_ne_bytes(count), 10);
        // Another handle on the same block reads the header back.
        let again = ShareableList::from_shm(list.shm().clone()).unwrap();
        assert_eq!(again.to_vec().unwrap(), sample());
    }

    #[test]
    fn set_changes_type_within_the_slot_as_python() {
        let list = ShareableList::create(None, sample()).unwrap();
        list.set(0, "8 bytes!").unwrap();
        assert_eq!(list.get(0).unwrap(), V::Str("8 bytes!".into()));
        list.set(0, 1.5).unwrap();
        assert_eq!(list.get(0).unwrap(), V::Float(1.5));
        list.set(3, V::None).unwrap();
        list.set(3, b"bytes".as_slice()).unwrap();
        assert_eq!(list.get(3).unwrap(), V::Bytes(b"bytes".to_vec()));
        list.set(7, "a").unwrap();
        assert_eq!(list.get(7).unwrap(), V::Str("a".into()));
        list.set(7, "16 bytes exactly").unwrap();
        assert_eq!(list.get(7).unwrap(), V::Str("16 bytes exactly".into()));
        let e = list.set(7, "seventeen bytes!!").unwrap_err();
        assert!(
            matches!(
                e,
                crate::Error::ItemTooLong {
                    index: 7,
                    len: 17,
                    capacity: 16
                }
            ),
            "{e:?}"
        );
        assert_eq!(list.get(7).unwrap(), V::Str("16 bytes exactly".into()));
        let e = list.set(10, 1).unwrap_err();
        assert!(matches!(
            e,
            crate::Error::IndexOutOfRange { index: 10, len: 10 }
        ));
        assert!(matches!(
            list.get(usize::MAX),
            Err(crate::Error::IndexOutOfRange { .. })
        ));
        assert_eq!(
            list.format().unwrap(),
            "ddxxxxxxx?8s8sxxxxxx?x8s16sxxxxxxx?16s"
        );
    }

    #[test]
    fn python_equality_for_count_and_index() {
        let list = ShareableList::create(
            None,
            [
                V::Int(1),
                V::Float(1.0),
                V::Bool(true),
                V::Str("1".into()),
                V::Bytes(b"1".to_vec()),
                V::Float(f64::NAN),
                V::Int(i64::MAX),
                V::None,
            ],
        )
        .unwrap();
        assert_eq!(list.count(&V::Bool(true)).unwrap(), 3);
        assert_eq!(list.count(&V::Float(f64::NAN)).unwrap(), 0);
        assert_eq!(list.index(&V::Float(1.0)).unwrap(), Some(0));
        assert_eq!(list.index(&V::Bytes(b"1".to_vec())).unwrap(), Some(4));
        assert_eq!(list.index(&V::None).unwrap(), Some(7));
        // 2**63 as a float is not i64::MAX, which it would be if rounded.
        assert_eq!(list.index(&V::Float(i64::MAX as f64)).unwrap(), None);
        assert_eq!(list.index(&V::Int(0)).unwrap(), None);
    }

    #[test]
    fn empty_lists_and_item_size_limits() {
        let list = ShareableList::create(None, Vec::<V>::new()).unwrap();
        assert!(list.is_empty());
        assert_eq!(list.shm().size(), 16);
        assert_eq!(list.to_vec().unwrap(), vec![]);
        assert_eq!(list.format().unwrap(), "");

        let biggest = vec![b'x'; MAX_ITEM];
        let list = ShareableList::create(None, [V::Bytes(biggest.clone())]).unwrap();
        assert_eq!(list.format().unwrap(), "9999992s");
        assert_eq!(list.get(0).unwrap(), V::Bytes(biggest));
        let e = ShareableList::create(None, [V::Bytes(vec![b'x'; MAX_ITEM + 1])]).unwrap_err();
        assert!(
            matches!(e, crate::Error::ItemTooLong { index: 0, .. }),
            "{e:?}"
        );
    }

    /// A list whose header or item descriptions someone overwrote: every
    /// read is a typed error, never a panic.
    #[test]
    fn a_corrupted_block_is_an_invalid_data_error() {
        let fresh = || {
            let list = ShareableList::create(None, sample()).unwrap();
            let shm = list.shm().clone();
            (list, shm)
        };
        let refuse = |shm: &SharedMemory| {
            let e = ShareableList::from_shm(shm.clone()).unwrap_err();
            assert!(is_invalid_data(&e), "{e:?}");
        };
        let put = |shm: &SharedMemory, at: usize, v: i64| shm.write(at, &v.to_ne_bytes()).unwrap();

        // Counts: negative, huge, overflowing, one too many for the block.
        for count in [-1, i64::MAX, i64::MAX / 8, 1 << 40, 11, 30] {
            let (_list, shm) = fresh();
            put(&shm, 0, count);
            refuse(&shm);
        }
        // Offsets: past the block, decreasing, a slot under 8 bytes, negative.
        for (which, offset) in [(10, 1 << 30), (3, 8), (3, 20), (0, -8), (10, i64::MAX)] {
            let (_list, shm) = fresh();
            put(&shm, 8 + which * 8, offset);
            refuse(&shm);
        }
        // A block too small for any header.
        refuse(&SharedMemory::new(4).unwrap());

        // Formats and codes, checked at each read; the others still read.
        let (list, shm) = fresh();
        let formats = list.layout.formats_at();
        let codes = list.layout.codes_at();
        shm.write(formats, b"i\0\0\0\0\0\0\0").unwrap();
        shm.write(formats + 8, b"zzzzzzzz").unwrap();
        shm.write(formats + 3 * 8, b"9s\0\0\0\0\0\0").unwrap(); // slot of 8
        shm.write(codes + 4, &[9]).unwrap();
        shm.write(codes + 2, &[CODE_STR]).unwrap(); // a str code on a bool
        shm.write(formats + 7 * 8, b"99999999").unwrap(); // no `s`
        shm.write(list.layout.slot(9).0, &[0xff, 0xfe]).unwrap(); // not UTF-8
        for index in [0, 1, 2, 3, 4, 7, 9] {
            let e = list.get(index).unwrap_err();
            assert!(is_invalid_data(&e), "item {index}: {e:?}");
        }
        assert!(is_invalid_data(&list.format().unwrap_err()));
        assert!(is_invalid_data(&list.to_vec().unwrap_err()));
        assert_eq!(list.get(5).unwrap(), V::None);
        assert_eq!(list.get(8).unwrap(), V::Bool(false));
        // A `set` rewrites an item's format and code: it reads again.
        list.set(1, 3).unwrap();
        assert_eq!(list.get(1).unwrap(), V::Int(3));
        list.set(9, "fixed").unwrap();
        assert_eq!(list.get(9).unwrap(), V::Str("fixed".into()));
    }

    /// Random bytes written anywhere in a list's block: reading it is
    /// always a value or an error.
    #[test]
    fn random_corruption_never_panics() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let list = ShareableList::create(None, sample()).unwrap();
            let shm = list.shm().clone();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() % shm.size() as u64) as usize;
                let len = ((next() % 8 + 1) as usize).min(shm.size() - at);
                let bytes = next().to_ne_bytes();
                shm.write(at, &bytes[..len]).unwrap();
            }
            if let Ok(again) = ShareableList::from_shm(shm) {
                for i in 0..again.len() + 1 {
                    let _ = again.get(i);
                }
                let _ = again.format();
            }
            for i in 0..list.len() {
                let _ = list.get(i);
            }
        }
    }

    #[test]
    fn a_list_crosses_the_codec_only_as_a_handle() {
        let list = ShareableList::create(None, [1]).unwrap();
        // Outside a process start the handle refuses to serialize.
        assert!(postcard::to_allocvec(&list).is_err());
    }
}
