//! `SelfDescribing<T>`: a value carried in MessagePack with its field names,
//! for the serde features that postcard's compact format cannot carry.

use crate::codec::{custom_de_error, custom_ser_error};
use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::any::type_name;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

/// A value that crosses the process boundary in a self-describing format
/// (MessagePack, with field and variant names), so that serde features which
/// postcard cannot carry work as they do with JSON.
///
/// multiproc's wire format is postcard: compact and fast, but not
/// self-describing. It writes no field names and no types, so
///
/// - `#[serde(skip_serializing_if = ...)]` and `#[serde(skip_serializing)]`
///   shift every later field (the receiver misreads them),
/// - `#[serde(flatten)]` cannot be encoded (it serializes a map of unknown
///   length),
/// - `#[serde(untagged)]`, internally tagged enums (`#[serde(tag = "...")]`),
///   `#[serde(flatten)]` and `serde_json::Value` cannot be decoded (they need
///   `deserialize_any`).
///
/// Wrapping the value in `SelfDescribing` makes all of them work anywhere a
/// value crosses: a worker's arguments or result, a [`Queue`](crate::Queue),
/// a [`Pipe`](crate::Pipe), a [`Pool`](crate::Pool) task. The value is
/// encoded with [`rmp_serde::to_vec_named`] and travels as one byte string
/// inside the postcard message; handles (a `Queue`, a `Lock`, ...) inside it
/// still travel. It costs more than postcard (field names are written, and
/// the bytes are copied once more): see BENCHMARKS.md's `self_describing`
/// case. Wrap only the values that need it; a field of a plain struct can be
/// a `SelfDescribing` too.
///
/// Decoding checks the MessagePack it is given: bytes that do not decode
/// are an error naming the type and what MessagePack's decoder found, bytes
/// left over are an error, nesting deeper than 128 levels is an error (as
/// `serde_json`'s limit), and nothing is allocated beyond what the message's
/// bytes hold.
///
/// Needs the `self-describing` feature (it adds the `rmp-serde`
/// dependency).
///
/// ```
/// use multiproc::{Process, Queue, SelfDescribing, worker};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// struct Job {
///     id: u32,
///     #[serde(default, skip_serializing_if = "Option::is_none")]
///     note: Option<String>,
///     #[serde(flatten)]
///     shape: Shape,
/// }
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// #[serde(tag = "kind")]
/// enum Shape {
///     Circle { r: f64 },
///     Square { side: f64 },
/// }
///
/// #[worker]
/// fn area(job: SelfDescribing<Job>, out: Queue<SelfDescribing<Job>>) -> f64 {
///     out.put(job.clone()).unwrap(); // through a queue, too
///     match job.shape {
///         Shape::Circle { r } => 3.0 * r * r,
///         Shape::Square { side } => side * side,
///     }
/// }
///
/// let job = Job { id: 1, note: None, shape: Shape::Square { side: 2.0 } };
/// let out = Queue::new()?;
/// let mut p = Process::new(area, (SelfDescribing(job.clone()), out.clone()));
/// p.start()?;
/// let back = out.get_timeout(std::time::Duration::from_secs(30)).unwrap();
/// assert_eq!(back.into_inner(), job);
/// assert_eq!(p.result()?, 4.0);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SelfDescribing<T>(pub T);

impl<T> SelfDescribing<T> {
    /// Wraps `value` (the same as `SelfDescribing(value)`).
    ///
    /// ```
    /// use multiproc::SelfDescribing;
    /// assert_eq!(SelfDescribing::new(3), SelfDescribing(3));
    /// ```
    pub fn new(value: T) -> Self {
        SelfDescribing(value)
    }

    /// The wrapped value.
    ///
    /// ```
    /// use multiproc::SelfDescribing;
    /// assert_eq!(SelfDescribing(String::from("x")).into_inner(), "x");
    /// ```
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for SelfDescribing<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for SelfDescribing<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T> From<T> for SelfDescribing<T> {
    fn from(value: T) -> Self {
        SelfDescribing(value)
    }
}

/// The deepest nesting a wrapped value may have when it decodes (the limit
/// `serde_json` has), so that hostile bytes cannot overflow the stack.
const MAX_DEPTH: usize = 128;

impl<T: Serialize> Serialize for SelfDescribing<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = rmp_serde::to_vec_named(&self.0).map_err(|e| {
            custom_ser_error(format!(
                "`{}` cannot be encoded as MessagePack (in `multiproc::SelfDescribing`): {e}",
                type_name::<T>()
            ))
        })?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for SelfDescribing<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(BytesVisitor(PhantomData))
    }
}

/// Decodes the MessagePack of a whole byte string as `T`.
fn decode<T: DeserializeOwned, E: de::Error>(bytes: &[u8]) -> Result<T, E> {
    let mut rest = bytes;
    let mut de = rmp_serde::Deserializer::new(&mut rest);
    de.set_max_depth(MAX_DEPTH);
    let value = T::deserialize(&mut de).map_err(|e| {
        custom_de_error(format!(
            "the MessagePack in `multiproc::SelfDescribing` does not decode as `{}`: {e}",
            type_name::<T>()
        ))
    })?;
    drop(de);
    if !rest.is_empty() {
        return Err(custom_de_error(format!(
            "the MessagePack in `multiproc::SelfDescribing` has {} bytes after its `{}`",
            rest.len(),
            type_name::<T>()
        )));
    }
    Ok(value)
}

/// Takes the byte string a [`SelfDescribing`] was written as: borrowed or
/// owned bytes, or a sequence of bytes (how formats without a byte type,
/// JSON say, write it).
struct BytesVisitor<T>(PhantomData<fn() -> T>);

impl<'de, T: DeserializeOwned> Visitor<'de> for BytesVisitor<T> {
    type Value = SelfDescribing<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a byte string holding `{}` as MessagePack (multiproc::SelfDescribing)",
            type_name::<T>()
        )
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        decode(bytes).map(SelfDescribing)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, bytes: &'de [u8]) -> Result<Self::Value, E> {
        decode(bytes).map(SelfDescribing)
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Self::Value, E> {
        decode(&bytes).map(SelfDescribing)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // The hint comes from the peer: trust it no further than a page.
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        decode(&bytes).map(SelfDescribing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, CodecError};
    use std::collections::BTreeMap;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Skips {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<u32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tags: Vec<String>,
        name: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Inner {
        a: u32,
        b: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Flat {
        id: u64,
        #[serde(flatten)]
        inner: Inner,
        #[serde(flatten)]
        extra: BTreeMap<String, u32>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    enum Untagged {
        Number(u64),
        Text(String),
        Pair { a: u32, b: String },
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Tagged {
        Circle { r: f64 },
        Rect { w: f64, h: f64 },
        Unit,
    }

    /// `inner` as postcard writes a byte string (the way a `SelfDescribing`
    /// travels).
    fn framed(inner: &[u8]) -> Vec<u8> {
        struct Raw<'a>(&'a [u8]);
        impl Serialize for Raw<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        codec::encode(&Raw(inner)).unwrap()
    }

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + fmt::Debug + Clone>(value: T) {
        let wrapped = SelfDescribing(value.clone());
        let bytes = codec::encode(&wrapped).unwrap();
        let back: SelfDescribing<T> = codec::decode(&bytes).unwrap();
        assert_eq!(back.into_inner(), value);
    }

    #[test]
    fn what_postcard_cannot_carry_round_trips_wrapped() {
        round_trip(Skips {
            note: None,
            tags: vec![],
            name: "x".into(),
        });
        round_trip(Skips {
            note: Some(3),
            tags: vec!["a".into()],
            name: "y".into(),
        });
        round_trip(Flat {
            id: 7,
            inner: Inner {
                a: 1,
                b: "b".into(),
            },
            extra: [("z".to_string(), 26)].into(),
        });
        for u in [
            Untagged::Number(5),
            Untagged::Text("t".into()),
            Untagged::Pair {
                a: 1,
                b: "2".into(),
            },
        ] {
            round_trip(u);
        }
        for t in [
            Tagged::Circle { r: 1.5 },
            Tagged::Rect { w: 2.0, h: 3.0 },
            Tagged::Unit,
        ] {
            round_trip(t);
        }
        // Nested inside a plain struct, as one of its fields.
        round_trip((1u8, SelfDescribing(Untagged::Number(9)), "tail".to_string()));
    }

    #[test]
    fn it_is_written_as_one_byte_string_of_named_messagepack() {
        let value = Inner {
            a: 1,
            b: "b".into(),
        };
        let bytes = codec::encode(&SelfDescribing(value.clone())).unwrap();
        let inner = rmp_serde::to_vec_named(&value).unwrap();
        assert_eq!(bytes[0] as usize, inner.len());
        assert_eq!(&bytes[1..], &inner[..]);
        // A map of two entries with field names, not an array.
        assert_eq!(inner[0], 0x82);
        assert_eq!(inner[1..3], [0xa1, b'a']);
    }

    #[test]
    fn owned_bytes_and_sequences_decode_too() {
        let value = Untagged::Pair {
            a: 4,
            b: "four".into(),
        };
        let inner = rmp_serde::to_vec_named(&value).unwrap();
        let visitor = BytesVisitor::<Untagged>(PhantomData);
        let owned: Result<_, serde::de::value::Error> = visitor.visit_byte_buf(inner.clone());
        assert_eq!(owned.unwrap().0, value);
        // A sequence of bytes: serde's `Vec<u8>` in postcard is one.
        let as_seq = codec::encode(&inner).unwrap();
        let back: SelfDescribing<Untagged> = codec::decode(&as_seq).unwrap();
        assert_eq!(back.0, value);
    }

    #[test]
    fn errors_inside_keep_their_messagepack_message() {
        // Bytes that are not the type: the type and rmp's message survive
        // postcard.
        let bytes = codec::encode(&SelfDescribing("text")).unwrap();
        let err = codec::decode::<SelfDescribing<u32>>(&bytes).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, CodecError::Corrupt { .. }), "{text}");
        assert!(text.contains("does not decode as `u32`"), "{text}");
        assert!(text.contains("MessagePack"), "{text}");
        // Left-over bytes after the value.
        let mut inner = rmp_serde::to_vec_named(&5u32).unwrap();
        inner.push(0xc0);
        let bytes = framed(&inner);
        let err = codec::decode::<SelfDescribing<u32>>(&bytes).unwrap_err();
        assert!(err.to_string().contains("1 bytes after"), "{err}");
        // A Serialize that fails inside: its message is kept.
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("refused on purpose"))
            }
        }
        let err = codec::encode(&SelfDescribing(Fails)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, CodecError::Unencodable { .. }), "{text}");
        assert!(text.contains("refused on purpose"), "{text}");
        assert!(text.contains("MessagePack"), "{text}");
    }

    #[test]
    fn hostile_bytes_fail_without_allocating_what_they_announce() {
        // MessagePack headers that announce 4 GiB strings, binaries, arrays
        // and maps, with nothing behind them: each fails at once (a slice
        // reader grows only with the bytes that are there).
        let announcing: [&[u8]; 4] = [
            &[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'],
            &[0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2],
            &[0xdd, 0xff, 0xff, 0xff, 0xff, 1],
            &[0xdf, 0xff, 0xff, 0xff, 0xff, 1, 2],
        ];
        for inner in announcing {
            let bytes = framed(inner);
            assert!(codec::decode::<SelfDescribing<String>>(&bytes).is_err());
            assert!(codec::decode::<SelfDescribing<Vec<u8>>>(&bytes).is_err());
            assert!(codec::decode::<SelfDescribing<Vec<String>>>(&bytes).is_err());
            assert!(codec::decode::<SelfDescribing<BTreeMap<String, u64>>>(&bytes).is_err());
            assert!(codec::decode::<SelfDescribing<Untagged>>(&bytes).is_err());
        }
        // Nesting past the depth limit is an error, not a stack overflow.
        let mut deep = vec![0x91u8; 100_000];
        deep.push(0x01);
        let bytes = framed(&deep);
        let err = codec::decode::<SelfDescribing<Untagged>>(&bytes).unwrap_err();
        assert!(err.to_string().contains("depth"), "{err}");
        // Pseudo-random garbage of every length: an error or a value, never
        // a panic or a hang.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..2000usize {
            let mut garbage = Vec::with_capacity(len);
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                garbage.push(state as u8);
            }
            let bytes = framed(&garbage);
            let _ = codec::decode::<SelfDescribing<Untagged>>(&bytes);
            let _ = codec::decode::<SelfDescribing<Tagged>>(&bytes);
            let _ = codec::decode::<SelfDescribing<Flat>>(&bytes);
            let _ = codec::decode::<SelfDescribing<Skips>>(&bytes);
        }
    }
}
