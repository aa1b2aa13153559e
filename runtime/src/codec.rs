//! The one module that serializes: postcard bodies in length-prefixed frames.
//!
//! A frame is an 8-byte little-endian length followed by that many bytes.
//! The length is checked against a limit before anything is allocated, and
//! the body buffer grows only as bytes actually arrive, so a peer that lies
//! about a length costs at most what it really sends.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{self, Read};

mod prim;

/// The largest frame accepted unless a caller sets another limit: 4 GiB.
pub(crate) const MAX_FRAME: u64 = 4 << 30;

/// Why a value could not be encoded, or bytes could not be decoded.
///
/// ```
/// use multiproc::{CodecError, Pipe, RecvError};
///
/// let (a, b) = Pipe::<bool>::new()?;
/// a.send_bytes(&[7])?; // a frame that is no bool (postcard has only 0 and 1)
/// match b.recv() {
///     Err(RecvError::Decode(CodecError::Corrupt { type_name, .. })) => assert_eq!(type_name, "bool"),
///     other => panic!("unexpected {other:?}"),
/// }
/// a.send(&true)?; // the bad frame was consumed: the next one is read
/// assert!(b.recv()?);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A frame header announced more bytes than the limit allows.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    Oversized {
        /// The announced length.
        len: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The peer closed the stream in the middle of a frame.
    #[error("truncated frame: expected {expected} bytes, got {got}")]
    Truncated {
        /// Bytes announced (body, or the 8-byte header).
        expected: u64,
        /// Bytes received before the end of the stream.
        got: u64,
    },
    /// The bytes are not a valid encoding of the expected type.
    #[error("message does not decode as `{type_name}`: {reason}")]
    Corrupt {
        /// The Rust type the bytes were decoded as.
        type_name: &'static str,
        /// What the decoder found wrong.
        reason: String,
    },
    /// The value could not be encoded.
    #[error("`{type_name}` cannot be encoded: {reason}")]
    Unencodable {
        /// The Rust type that was encoded.
        type_name: &'static str,
        /// What the encoder found wrong.
        reason: String,
    },
    /// Reading or writing the stream failed.
    #[error("i/o error on a multiproc stream: {0}")]
    Io(#[from] io::Error),
}

thread_local! {
    /// The message of the last custom error our own serde impls raised:
    /// postcard keeps only the fact of a custom error, not its text.
    static CUSTOM: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// A serde custom error whose message survives postcard (for our handles).
pub(crate) fn custom_ser_error<E: serde::ser::Error>(message: impl std::fmt::Display) -> E {
    let message = message.to_string();
    let error = E::custom(&message);
    let _ = CUSTOM.try_with(|c| *c.borrow_mut() = Some(message));
    error
}

/// As [`custom_ser_error`], for deserialization.
pub(crate) fn custom_de_error<E: serde::de::Error>(message: impl std::fmt::Display) -> E {
    let message = message.to_string();
    let error = E::custom(&message);
    let _ = CUSTOM.try_with(|c| *c.borrow_mut() = Some(message));
    error
}

/// How to carry a value postcard cannot: in [`SelfDescribing`](crate::SelfDescribing),
/// which needs the `self-describing` feature.
#[cfg(feature = "self-describing")]
pub(crate) const WRAP: &str = "wrap the value in `multiproc::SelfDescribing`";
/// How to carry a value postcard cannot: in `SelfDescribing`, which needs
/// the `self-describing` feature.
#[cfg(not(feature = "self-describing"))]
pub(crate) const WRAP: &str = "enable multiproc's `self-describing` feature and wrap the value \
    in `multiproc::SelfDescribing`";

/// What makes the bytes of one type not line up with another.
const SHIFTED: &str = "a field with `#[serde(skip_serializing_if = ...)]` or \
    `#[serde(skip_serializing)]` (postcard writes no field names, so a skipped field shifts \
    every later one), or a sender and a receiver whose types differ";

/// Turns a postcard error into a message: postcard's own text, the serde
/// feature that likely caused it, and the fix.
fn explain(error: postcard::Error) -> String {
    use postcard::Error as E;
    let ours = CUSTOM.try_with(|c| c.borrow_mut().take()).ok().flatten();
    let (cause, fix) = match &error {
        E::SerdeSerCustom | E::SerdeDeCustom if ours.is_some() => {
            return ours.unwrap_or_default();
        }
        E::SerdeSerCustom => {
            return "the type's own Serialize implementation returned an error (postcard does \
                    not keep its message)"
                .to_string();
        }
        E::SerdeDeCustom => {
            return format!(
                "the type's own Deserialize implementation returned an error (postcard does not \
                 keep its message). For a derived Deserialize that is an enum variant index or \
                 a length out of range, which the likely cause is: {SHIFTED}. Fix: remove the \
                 attribute (or use one type on both sides), or {WRAP}, which carries field names"
            );
        }
        E::SerializeSeqLengthUnknown => (
            "`#[serde(flatten)]`, or a Serialize impl that calls `serialize_seq(None)` or \
             `serialize_map(None)`: postcard writes the length of a map or sequence before its \
             items"
                .to_string(),
            format!(
                "remove `#[serde(flatten)]` (keep the inner struct as a plain field) or give \
                 the length, or {WRAP}"
            ),
        ),
        E::DeserializeBadOption
        | E::DeserializeBadBool
        | E::DeserializeBadEnum
        | E::DeserializeBadVarint
        | E::DeserializeUnexpectedEnd
        | E::DeserializeBadUtf8
        | E::DeserializeBadChar => (
            SHIFTED.to_string(),
            format!(
                "remove the attribute (or use one type on both sides), or {WRAP}, which \
                 carries field names"
            ),
        ),
        E::WontImplement => (
            "the type needs `deserialize_any`, which postcard's compact format cannot give \
             (it carries no types to look at): `#[serde(untagged)]`, `#[serde(tag = \"...\")]` \
             (an internally tagged enum), `#[serde(flatten)]` and `serde_json::Value` need it"
                .to_string(),
            format!("use an externally tagged enum (no attribute) and plain fields, or {WRAP}"),
        ),
        other => return other.to_string(),
    };
    format!("{error} (postcard). Likely cause: {cause}. Fix: {fix}")
}

/// Why bytes were left over after a value: the message for trailing bytes.
fn trailing(count: usize) -> String {
    format!(
        "{count} trailing bytes: the receiving type read less than the sender wrote. Likely \
         cause: {SHIFTED}. Fix: remove the attribute (or use one type on both sides), or {WRAP}"
    )
}

/// Encodes `value` with postcard.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let _ = CUSTOM.try_with(|c| c.borrow_mut().take());
    postcard::to_stdvec(value).map_err(|e| CodecError::Unencodable {
        type_name: std::any::type_name::<T>(),
        reason: explain(e),
    })
}

/// A postcard flavor that appends to a borrowed buffer (reused across calls,
/// so steady traffic allocates nothing). The buffer is kept longer than what
/// was written, so that the few bytes of each varint are stored with
/// fixed-size copies instead of a call to `memcpy`; `finalize` cuts it back.
struct Append<'a> {
    buf: &'a mut Vec<u8>,
    used: usize,
}

impl<'a> Append<'a> {
    fn new(buf: &'a mut Vec<u8>) -> Self {
        let used = buf.len();
        Append { buf, used }
    }
}

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self.used + data.len();
        if end > self.buf.len() {
            let room = end.max(self.buf.len() * 2).max(256);
            self.buf.resize(room, 0);
        }
        small_copy(&mut self.buf[self.used..end], data);
        self.used = end;
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<()> {
        self.buf.truncate(self.used);
        Ok(())
    }
}

pub(crate) use prim::Packed;

/// `value`'s bytes if it is a number, as postcard writes them; `None` for
/// any other type.
#[inline(always)]
pub(crate) fn pack_prim<T: 'static>(value: &T) -> Option<Packed> {
    prim::pack(value)
}

/// Encodes `items` (as postcard encodes a slice: the count, then each)
/// at the end of `buf`; numbers by hand (see `prim`).
pub(crate) fn encode_slice_into<T: Serialize + 'static>(
    items: &[T],
    buf: &mut Vec<u8>,
) -> Result<(), CodecError> {
    if !prim::is_prim::<T>() {
        return encode_into(items, buf);
    }
    let (count, n) = prim::pack(&(items.len() as u64))
        .map(Packed::bytes)
        .unwrap_or_default();
    buf.reserve(n + items.len() * 3 + 10);
    buf.extend_from_slice(&count[..n]);
    for item in items {
        let Some(p) = prim::pack(item) else { continue };
        // Ten bytes in two fixed-size stores, then back to the value's end
        // (see `Packed`).
        let at = buf.len();
        buf.extend_from_slice(&p.low.to_le_bytes());
        buf.extend_from_slice(&p.high.to_le_bytes());
        buf.truncate(at + p.len);
    }
    Ok(())
}

/// Encodes `value` at the end of `buf`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let _ = CUSTOM.try_with(|c| c.borrow_mut().take());
    let start = buf.len();
    postcard::serialize_with_flavor(value, Append::new(buf)).map_err(|e| {
        buf.truncate(start);
        CodecError::Unencodable {
            type_name: std::any::type_name::<T>(),
            reason: explain(e),
        }
    })
}

/// Encodes `value` into a flavor of the caller's (the pool worker's shared
/// reply buffer).
pub(crate) fn encode_with<T, F>(value: &T, flavor: F) -> Result<(), CodecError>
where
    T: Serialize + ?Sized,
    F: postcard::ser_flavors::Flavor<Output = ()>,
{
    // Called once per value on the pool worker's hot path: `CUSTOM` is not
    // reset here (see `Items::next`).
    postcard::serialize_with_flavor(value, flavor).map_err(|e| CodecError::Unencodable {
        type_name: std::any::type_name::<T>(),
        reason: explain(e),
    })
}

/// How many bytes `value` encodes to (a pass that writes nothing), or
/// [`CodecError::Oversized`] as soon as the count passes `limit`.
pub(crate) fn encoded_len<T: Serialize + ?Sized>(
    value: &T,
    limit: u64,
) -> Result<usize, CodecError> {
    struct Count(u64, u64);
    impl postcard::ser_flavors::Flavor for Count {
        type Output = u64;
        #[inline]
        fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
            self.0 += data.len() as u64;
            if self.0 > self.1 {
                return Err(postcard::Error::SerializeBufferFull);
            }
            Ok(())
        }
        fn try_push(&mut self, _: u8) -> postcard::Result<()> {
            self.try_extend(&[0])
        }
        fn finalize(self) -> postcard::Result<u64> {
            Ok(self.0)
        }
    }
    let _ = CUSTOM.try_with(|c| c.borrow_mut().take());
    let mut counted = 0;
    let result = postcard::serialize_with_flavor(value, Count(0, limit)).inspect(|&n| counted = n);
    match result {
        Ok(len) => usize::try_from(len).map_err(|_| CodecError::Oversized { len, limit }),
        Err(postcard::Error::SerializeBufferFull) => Err(CodecError::Oversized {
            len: limit.saturating_add(1).max(counted),
            limit,
        }),
        Err(e) => Err(CodecError::Unencodable {
            type_name: std::any::type_name::<T>(),
            reason: explain(e),
        }),
    }
}

/// A postcard flavor that hands the encoding to a sink in pieces of up to
/// 4 KiB (postcard's own pieces are mostly varints of a few bytes), the sink
/// refusing (`false`) bytes beyond the room it was given.
struct Sink<F> {
    sink: F,
    buf: [u8; 4096],
    len: usize,
}

impl<F: FnMut(&[u8]) -> bool> Sink<F> {
    fn flush(&mut self) -> postcard::Result<()> {
        let len = std::mem::take(&mut self.len);
        if len == 0 || (self.sink)(&self.buf[..len]) {
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }
}

impl<F: FnMut(&[u8]) -> bool> postcard::ser_flavors::Flavor for Sink<F> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() > self.buf.len() - self.len {
            self.flush()?;
        }
        if data.len() >= self.buf.len() {
            return if (self.sink)(data) {
                Ok(())
            } else {
                Err(postcard::Error::SerializeBufferFull)
            };
        }
        small_copy(&mut self.buf[self.len..self.len + data.len()], data);
        self.len += data.len();
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(mut self) -> postcard::Result<()> {
        self.flush()
    }
}

/// Copies `from` into `to` (of the same length) without a call to `memcpy`
/// for the few bytes of a varint: fixed-size loads and stores that overlap
/// in the middle (a byte loop would be turned back into a `memcpy` call).
#[inline(always)]
pub(crate) fn small_copy(to: &mut [u8], from: &[u8]) {
    let n = from.len();
    match n {
        0 => {}
        1..=3 => {
            to[0] = from[0];
            to[n / 2] = from[n / 2];
            to[n - 1] = from[n - 1];
        }
        4..=7 => {
            to[..4].copy_from_slice(&from[..4]);
            to[n - 4..].copy_from_slice(&from[n - 4..]);
        }
        8..=16 => {
            to[..8].copy_from_slice(&from[..8]);
            to[n - 8..].copy_from_slice(&from[n - 8..]);
        }
        _ => to.copy_from_slice(from),
    }
}

/// Encodes `value` piece by piece into `sink`, which has room for exactly
/// the `len` bytes [`encoded_len`] measured. Any other length (a sink that
/// runs out of room, or bytes left over) means the value's `Serialize` is
/// not deterministic.
pub(crate) fn encode_to<T: Serialize + ?Sized>(
    value: &T,
    len: usize,
    mut sink: impl FnMut(&[u8]) -> bool,
) -> Result<(), CodecError> {
    let _ = CUSTOM.try_with(|c| c.borrow_mut().take());
    let mut written = 0;
    let counted = Sink {
        sink: |bytes: &[u8]| {
            written += bytes.len();
            sink(bytes)
        },
        buf: [0; 4096],
        len: 0,
    };
    let fickle = || CodecError::Unencodable {
        type_name: std::any::type_name::<T>(),
        reason: "it encoded to a different length than it measured: its Serialize is not \
                 deterministic"
            .into(),
    };
    match postcard::serialize_with_flavor(value, counted) {
        Ok(()) if written == len => Ok(()),
        Ok(()) | Err(postcard::Error::SerializeBufferFull) => Err(fickle()),
        Err(e) => Err(CodecError::Unencodable {
            type_name: std::any::type_name::<T>(),
            reason: explain(e),
        }),
    }
}

/// A postcard flavor that appends to a buffer, but refuses a large piece
/// (a byte string, say) that would take the buffer past a soft cap, and any
/// piece that would take it past a hard limit.
struct Capped<'a> {
    out: Append<'a>,
    cap: usize,
    limit: usize,
    /// Set when a piece would have passed `limit`.
    over: &'a std::cell::Cell<bool>,
}

impl postcard::ser_flavors::Flavor for Capped<'_> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self.out.used + data.len();
        if end > self.limit {
            self.over.set(true);
            return Err(postcard::Error::SerializeBufferFull);
        }
        if data.len() >= 4096 && end > self.cap {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.out.try_extend(data)
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<()> {
        self.out.finalize()
    }
}

/// Encodes `value` at the end of `buf` unless a large piece of it (4 KiB or
/// more in one, a byte string say) would take `buf` past `cap` bytes: then
/// `Ok(false)`, and `buf` holds a partial encoding. Many small pieces are
/// never refused by the cap (encoding them twice would cost more than
/// copying them), but nothing is encoded past `limit`: an encoding longer
/// than that is [`CodecError::Oversized`] as soon as it passes it, so a
/// message of a billion small pieces over the limit never fills memory.
pub(crate) fn encode_into_capped<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
    cap: usize,
    limit: u64,
) -> Result<bool, CodecError> {
    let _ = CUSTOM.try_with(|c| c.borrow_mut().take());
    let start = buf.len();
    let hard = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_add(start);
    let over = std::cell::Cell::new(false);
    let flavor = Capped {
        out: Append::new(buf),
        cap,
        limit: hard,
        over: &over,
    };
    let result = postcard::serialize_with_flavor(value, flavor);
    if result.is_err() {
        buf.truncate(start);
    }
    match result {
        Ok(()) => Ok(true),
        Err(postcard::Error::SerializeBufferFull) if over.get() => Err(CodecError::Oversized {
            len: limit.saturating_add(1),
            limit,
        }),
        Err(postcard::Error::SerializeBufferFull) => Ok(false),
        Err(e) => Err(CodecError::Unencodable {
            type_name: std::any::type_name::<T>(),
            reason: explain(e),
        }),
    }
}

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer, emptied. Re-entrant (a nested
/// call gets a fresh buffer); a buffer grown past 16 MiB is not kept.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    // Fresh when this thread's locals are gone (a record logged at exit).
    let mut buf = SCRATCH.try_with(|s| s.take()).unwrap_or_default();
    buf.clear();
    let result = f(&mut buf);
    if buf.capacity() <= 16 << 20 {
        let _ = SCRATCH.try_with(|s| s.set(buf));
    }
    result
}

/// The items of an encoded `Vec<T>` (or slice), decoded one at a time, so a
/// caller knows where each one ends.
pub(crate) struct Items<'a> {
    rest: &'a [u8],
    whole: usize,
    left: usize,
}

impl<'a> Items<'a> {
    /// Reads the count at the front of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Result<Items<'a>, CodecError> {
        let (count, rest): (usize, _) =
            postcard::take_from_bytes(bytes).map_err(|e| CodecError::Corrupt {
                type_name: "a sequence's length",
                reason: explain(e),
            })?;
        Ok(Items {
            rest,
            whole: bytes.len(),
            left: count,
        })
    }

    /// Where the items not yet taken start, from the start of the bytes.
    pub(crate) fn offset(&self) -> usize {
        self.whole - self.rest.len()
    }

    /// The next item, or `None` after the last (trailing bytes are an error).
    pub(crate) fn next<T: DeserializeOwned + 'static>(&mut self) -> Option<Result<T, CodecError>> {
        if self.left > 0 {
            if let Some((value, used)) = prim::take::<T>(self.rest) {
                self.left -= 1;
                self.rest = &self.rest[used..];
                return Some(Ok(value));
            }
        }
        if self.left == 0 {
            if self.rest.is_empty() {
                return None;
            }
            let trailing = self.rest.len();
            self.rest = &[];
            return Some(Err(CodecError::Corrupt {
                type_name: std::any::type_name::<T>(),
                reason: self::trailing(trailing),
            }));
        }
        self.left -= 1;
        // No reset of `CUSTOM` per item (a thread-local access on the pool
        // worker's hot path): a message it holds is only read after an error.
        match postcard::take_from_bytes(self.rest) {
            Ok((value, rest)) => {
                self.rest = rest;
                Some(Ok(value))
            }
            Err(e) => {
                self.left = 0;
                self.rest = &[];
                Some(Err(CodecError::Corrupt {
                    type_name: std::any::type_name::<T>(),
                    reason: explain(e),
                }))
            }
        }
    }
}

/// Decodes `count` values of `T` encoded one after another (postcard's
/// encoding of a tuple: no length in front) from the front of `bytes`,
/// handing each to `push`; returns how many bytes they took.
pub(crate) fn decode_run<T: DeserializeOwned + 'static>(
    bytes: &[u8],
    count: usize,
    mut push: impl FnMut(T),
) -> Result<usize, CodecError> {
    // Numbers by hand (see `prim`), as far as the fast path is sure; the
    // rest through postcard.
    let mut at = 0;
    let mut done = 0;
    if prim::is_prim::<T>() {
        while done < count {
            let Some((value, used)) = prim::take::<T>(&bytes[at..]) else {
                break;
            };
            push(value);
            at += used;
            done += 1;
        }
        if done == count {
            return Ok(at);
        }
    }
    decode_run_serde(&bytes[at..], count - done, push).map(|used| at + used)
}

fn decode_run_serde<T: DeserializeOwned>(
    bytes: &[u8],
    count: usize,
    push: impl FnMut(T),
) -> Result<usize, CodecError> {
    struct Run<T, F>(usize, F, std::marker::PhantomData<fn() -> T>);
    impl<'de, T: serde::Deserialize<'de>, F: FnMut(T)> serde::de::DeserializeSeed<'de> for Run<T, F> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_tuple(self.0, self)
        }
    }
    impl<'de, T: serde::Deserialize<'de>, F: FnMut(T)> serde::de::Visitor<'de> for Run<T, F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{} values", self.0)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
            for i in 0..self.0 {
                match seq.next_element()? {
                    Some(value) => (self.1)(value),
                    None => return Err(serde::de::Error::invalid_length(i, &self)),
                }
            }
            Ok(())
        }
    }
    let corrupt = |reason| CodecError::Corrupt {
        type_name: std::any::type_name::<T>(),
        reason,
    };
    let _ = CUSTOM.try_with(|c| c.borrow_mut().take());
    let mut de = postcard::Deserializer::from_bytes(bytes);
    serde::de::DeserializeSeed::deserialize(Run(count, push, std::marker::PhantomData), &mut de)
        .map_err(|e| corrupt(explain(e)))?;
    let rest = de.finalize().map_err(|e| corrupt(explain(e)))?;
    Ok(bytes.len() - rest.len())
}

/// How many of `count` values of `T` to reserve room for before decoding
/// them from `len` bytes: no more than the bytes could hold, nor than 4 MiB,
/// so a lying count allocates nothing extra.
pub(crate) fn room_for<T>(count: usize, len: usize) -> usize {
    count.min(len.max(1)).min((4 << 20) / size_of::<T>().max(1))
}

/// Decodes a whole buffer as `T`; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let corrupt = |reason| CodecError::Corrupt {
        type_name: std::any::type_name::<T>(),
        reason,
    };
    let _ = CUSTOM.try_with(|c| c.borrow_mut().take());
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| corrupt(explain(e)))?;
    if !rest.is_empty() {
        return Err(corrupt(trailing(rest.len())));
    }
    Ok(value)
}

/// Writes one frame: the length, then `body` (`Conn` gathers frames into
/// one write).
pub(crate) fn write_frame(mut w: impl std::io::Write, body: &[u8]) -> io::Result<()> {
    w.write_all(&(body.len() as u64).to_le_bytes())?;
    w.write_all(body)
}

/// Reads one frame of at most `limit` bytes. `Ok(None)` is a clean end of
/// stream before a header.
pub(crate) fn read_frame(mut r: impl Read, limit: u64) -> Result<Option<Vec<u8>>, CodecError> {
    let mut header = [0u8; 8];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(CodecError::Truncated {
                    expected: 8,
                    got: got as u64,
                });
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u64::from_le_bytes(header);
    if len > limit {
        return Err(CodecError::Oversized { len, limit });
    }
    // Grow with the data actually received, not with the announced length.
    let mut body = Vec::with_capacity(len.min(64 * 1024) as usize);
    r.take(len).read_to_end(&mut body)?;
    if (body.len() as u64) < len {
        return Err(CodecError::Truncated {
            expected: len,
            got: body.len() as u64,
        });
    }
    Ok(Some(body))
}

/// Splits complete frames off the front of `buf` (bytes already received).
/// Returns the frames and how many bytes they used; an incomplete frame at
/// the end is left for later.
pub(crate) fn split_frames(buf: &[u8], limit: u64) -> Result<(Vec<&[u8]>, usize), CodecError> {
    let mut frames = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 8 {
        let len = u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
        if len > limit {
            return Err(CodecError::Oversized { len, limit });
        }
        let end = (at as u64 + 8).saturating_add(len);
        if end > buf.len() as u64 {
            break;
        }
        frames.push(&buf[at + 8..end as usize]);
        at = end as usize;
    }
    Ok((frames, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that serialize as one piece, as `serde_bytes` does.
    struct Bytes(Vec<u8>);

    impl Serialize for Bytes {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    #[test]
    fn small_copy_copies_every_length() {
        let from: Vec<u8> = (1..=40).collect();
        for n in 0..=40 {
            let mut to = vec![0u8; n];
            small_copy(&mut to, &from[..n]);
            assert_eq!(to, from[..n], "length {n}");
        }
    }

    #[test]
    fn encode_into_appends_and_a_failure_leaves_the_buffer_as_it_was() {
        let mut buf = b"head".to_vec();
        let value = (u64::MAX, -1i64, "x".repeat(100), vec![300u32; 50]);
        encode_into(&value, &mut buf).unwrap();
        assert_eq!(&buf[..4], b"head");
        assert_eq!(buf[4..], encode(&value).unwrap());

        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = s.serialize_seq(Some(2))?;
                seq.serialize_element(&123456789u64)?;
                Err(serde::ser::Error::custom("no"))
            }
        }
        encode_into(&Fails, &mut buf).unwrap_err();
        assert_eq!(buf[4..], encode(&value).unwrap());
        assert!(encode_into_capped(&Fails, &mut buf, 1 << 20, u64::MAX).is_err());
        assert_eq!(buf[4..], encode(&value).unwrap());
    }

    #[test]
    fn a_capped_encoding_refuses_only_large_pieces_past_the_cap() {
        let many_small: Vec<u64> = (0..10_000).collect();
        let mut buf = Vec::new();
        assert!(encode_into_capped(&many_small, &mut buf, 100, u64::MAX).unwrap());
        assert_eq!(buf, encode(&many_small).unwrap());
        let bytes = Bytes(vec![9u8; 5000]);
        buf.clear();
        assert!(!encode_into_capped(&bytes, &mut buf, 4999, u64::MAX).unwrap());
        assert!(buf.is_empty());
        assert!(encode_into_capped(&bytes, &mut buf, 5010, u64::MAX).unwrap());
        assert_eq!(buf, encode(&bytes).unwrap());
    }

    #[test]
    fn nothing_is_encoded_or_counted_past_the_limit() {
        // A message of many small pieces: refused once it passes the limit,
        // with the buffer never holding more than the limit.
        let many_small: Vec<u64> = (0..100_000).collect();
        let whole = encode(&many_small).unwrap().len() as u64;
        let mut buf = Vec::new();
        match encode_into_capped(&many_small, &mut buf, 1 << 30, 1000) {
            Err(CodecError::Oversized { len, limit }) => assert_eq!((len, limit), (1001, 1000)),
            other => panic!("{other:?}"),
        }
        assert!(buf.is_empty());
        assert!(encode_into_capped(&many_small, &mut buf, 1 << 30, whole).unwrap());
        assert!(matches!(
            encoded_len(&many_small, 1000),
            Err(CodecError::Oversized { limit: 1000, .. })
        ));
        assert_eq!(encoded_len(&many_small, whole).unwrap() as u64, whole);
    }

    #[test]
    fn encode_to_hands_over_exactly_the_measured_bytes() {
        let value = (vec![7u16; 3000], Bytes(vec![1u8; 10_000]));
        let len = encoded_len(&value, u64::MAX).unwrap();
        let mut out = Vec::new();
        encode_to(&value, len, |b| {
            out.extend_from_slice(b);
            true
        })
        .unwrap();
        assert_eq!(out, encode(&value).unwrap());
        // A sink that runs out of room, or a length that is too long.
        let e = encode_to(&value, len, |_| false).unwrap_err();
        assert!(e.to_string().contains("different length"), "{e}");
        let e = encode_to(&value, len + 1, |_| true).unwrap_err();
        assert!(e.to_string().contains("different length"), "{e}");
    }

    #[test]
    fn frames_round_trip_and_keep_boundaries() {
        let mut wire = Vec::new();
        for body in [&b""[..], b"a", &[7u8; 100_000]] {
            write_frame(&mut wire, body).unwrap();
        }
        let mut r = &wire[..];
        assert_eq!(read_frame(&mut r, MAX_FRAME).unwrap().unwrap(), b"");
        assert_eq!(read_frame(&mut r, MAX_FRAME).unwrap().unwrap(), b"a");
        assert_eq!(
            read_frame(&mut r, MAX_FRAME).unwrap().unwrap().len(),
            100_000
        );
        assert!(read_frame(&mut r, MAX_FRAME).unwrap().is_none());
        let (frames, used) = split_frames(&wire, MAX_FRAME).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(used, wire.len());
    }

    #[test]
    fn oversized_header_is_rejected_before_allocating() {
        let wire = u64::MAX.to_le_bytes();
        let err = read_frame(&wire[..], MAX_FRAME).unwrap_err();
        assert!(
            matches!(err, CodecError::Oversized { len: u64::MAX, .. }),
            "{err}"
        );
        assert!(matches!(
            split_frames(&wire, 16),
            Err(CodecError::Oversized { .. })
        ));
    }

    #[test]
    fn truncated_frames_are_typed_errors() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello").unwrap();
        let err = read_frame(&wire[..10], MAX_FRAME).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::Truncated {
                    expected: 5,
                    got: 2
                }
            ),
            "{err}"
        );
        let err = read_frame(&wire[..3], MAX_FRAME).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::Truncated {
                    expected: 8,
                    got: 3
                }
            ),
            "{err}"
        );
        let (frames, used) = split_frames(&wire[..10], MAX_FRAME).unwrap();
        assert!(frames.is_empty());
        assert_eq!(used, 0);
    }

    #[test]
    fn corrupt_and_trailing_bytes_are_typed_errors() {
        let err = decode::<String>(&[5, b'a']).unwrap_err();
        assert!(matches!(err, CodecError::Corrupt { .. }), "{err}");
        let err = decode::<u8>(&[1, 2]).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
        let err = decode::<String>(&[2, 0xff, 0xfe]).unwrap_err();
        assert!(matches!(err, CodecError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn every_postcard_error_names_its_likely_serde_cause_and_the_fix() {
        use postcard::Error as E;
        #[cfg(feature = "self-describing")]
        assert_eq!(WRAP, "wrap the value in `multiproc::SelfDescribing`");
        #[cfg(not(feature = "self-describing"))]
        assert!(
            WRAP.starts_with("enable multiproc's `self-describing` feature and wrap the value"),
            "{WRAP}"
        );
        let check = |error: E, causes: &[&str]| {
            let text = explain(error.clone());
            assert!(text.starts_with(&error.to_string()), "{text}");
            for cause in causes {
                assert!(text.contains(cause), "{error:?}: no `{cause}` in {text}");
            }
            assert!(text.contains(WRAP), "{text}");
        };
        check(
            E::SerializeSeqLengthUnknown,
            &[
                "#[serde(flatten)]",
                "serialize_seq(None)",
                "serialize_map(None)",
            ],
        );
        for shifted in [
            E::DeserializeBadOption,
            E::DeserializeBadBool,
            E::DeserializeBadEnum,
            E::DeserializeBadVarint,
            E::DeserializeUnexpectedEnd,
            E::DeserializeBadUtf8,
            E::DeserializeBadChar,
        ] {
            check(
                shifted,
                &[
                    "#[serde(skip_serializing_if",
                    "#[serde(skip_serializing)]",
                    "no field names",
                    "types differ",
                ],
            );
        }
        check(
            E::WontImplement,
            &[
                "deserialize_any",
                "#[serde(untagged)]",
                "#[serde(tag = \"...\")]",
                "#[serde(flatten)]",
                "serde_json::Value",
            ],
        );
        // A custom error postcard dropped the text of: the shift is the
        // likely cause for a derived Deserialize.
        let text = explain(E::SerdeDeCustom);
        assert!(text.contains("does not keep its message"), "{text}");
        assert!(text.contains("#[serde(skip_serializing_if"), "{text}");
        assert!(text.contains(WRAP), "{text}");
        // One of ours keeps its text, alone.
        let _: E = custom_de_error("our own words");
        assert_eq!(explain(E::SerdeDeCustom), "our own words");
        let _: E = custom_ser_error("ours again");
        assert_eq!(explain(E::SerdeSerCustom), "ours again");
        // Trailing bytes name the same causes.
        let text = decode::<u8>(&[1, 2]).unwrap_err().to_string();
        assert!(text.contains("1 trailing bytes"), "{text}");
        assert!(text.contains("#[serde(skip_serializing_if"), "{text}");
        assert!(text.contains(WRAP), "{text}");
    }

    #[test]
    fn deserialize_any_is_named_as_the_cause() {
        #[derive(serde::Serialize, serde::Deserialize, Debug)]
        #[serde(untagged)]
        enum Untagged {
            A(u8),
        }
        let bytes = encode(&Untagged::A(1)).unwrap();
        let err = decode::<Untagged>(&bytes).unwrap_err();
        assert!(err.to_string().contains("deserialize_any"), "{err}");
    }
}
