//! Numbers, and one-number tuples (a one-argument worker's arguments),
//! encoded and decoded by hand in postcard's own bytes: varints (zigzag for
//! signed integers), raw bytes for `u8`/`i8`, little-endian for floats. The
//! pool's hot loops (a `map` of a million `i64`s) then skip serde's
//! machinery per item: measured, it was a fifth of a worker's time. The
//! bytes are exactly postcard's, so a value written one way reads back the
//! other; a decode the fast path is not sure of (a varint at its longest, a
//! short buffer) returns `None` and the caller takes postcard's path, which
//! gives the same value or the same error.
//!
//! Which type a generic `T` is comes from [`Any`]: a type-id comparison the
//! compiler folds away per monomorphized caller.

use std::any::Any;

/// A value's bytes, packed in registers: the first eight in `low`, the
/// rest (a varint's ninth and tenth) in `high`, little-endian, and how
/// many there are. Written with two fixed-size stores: bytes stored one by
/// one and then copied stall the copy (store forwarding fails), and a copy
/// of a length known only at run time is a call to memcpy.
#[derive(Clone, Copy)]
pub(crate) struct Packed {
    pub(crate) low: u64,
    pub(crate) high: u16,
    pub(crate) len: usize,
}

impl Packed {
    /// The bytes, in a buffer (for tests and the rare caller that wants one).
    pub(crate) fn bytes(self) -> ([u8; 10], usize) {
        let mut out = [0u8; 10];
        out[..8].copy_from_slice(&self.low.to_le_bytes());
        out[8..].copy_from_slice(&self.high.to_le_bytes());
        (out, self.len)
    }
}

/// A number postcard encodes without a header.
trait Prim: Copy + 'static {
    /// The value's bytes.
    fn pack(self) -> Packed;
    /// The value at the front of `bytes` and its length, or `None` when
    /// the fast path cannot be sure (postcard's path decides).
    fn take(bytes: &[u8]) -> Option<(Self, usize)>;
}

#[inline(always)]
fn pack_varint(mut v: u64) -> Packed {
    let mut low = 0u64;
    let mut i = 0;
    while v >= 0x80 && i < 8 {
        low |= ((v & 0x7F) | 0x80) << (8 * i);
        v >>= 7;
        i += 1;
    }
    if i < 8 {
        low |= v << (8 * i);
        return Packed {
            low,
            high: 0,
            len: i + 1,
        };
    }
    // Past 56 bits: at most 8 left, in one or two more bytes.
    let (high, len) = if v >= 0x80 {
        ((v & 0x7F | 0x80) as u16 | ((v >> 7) as u16) << 8, 10)
    } else {
        (v as u16, 9)
    };
    Packed { low, high, len }
}

/// A varint of at most `max - 1` bytes (the longest form, whose last byte
/// postcard range-checks, is left to postcard).
#[inline(always)]
fn take_varint(bytes: &[u8], max: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().take(max - 1).enumerate() {
        v |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

macro_rules! unsigned {
    ($($t:ty => $max:expr),*) => {$(
        impl Prim for $t {
            #[inline(always)]
            fn pack(self) -> Packed {
                pack_varint(self as u64)
            }
            #[inline(always)]
            fn take(bytes: &[u8]) -> Option<(Self, usize)> {
                take_varint(bytes, $max).map(|(v, n)| (v as $t, n))
            }
        }
    )*};
}

macro_rules! signed {
    ($($t:ty => $u:ty, $max:expr),*) => {$(
        impl Prim for $t {
            #[inline(always)]
            fn pack(self) -> Packed {
                let zigzag = ((self << 1) ^ (self >> (<$t>::BITS - 1))) as $u;
                pack_varint(zigzag as u64)
            }
            #[inline(always)]
            fn take(bytes: &[u8]) -> Option<(Self, usize)> {
                take_varint(bytes, $max).map(|(v, n)| {
                    let v = v as $u;
                    (((v >> 1) as $t) ^ -((v & 1) as $t), n)
                })
            }
        }
    )*};
}

unsigned!(u16 => 3, u32 => 5, u64 => 10, usize => 10);
signed!(i16 => u16, 3, i32 => u32, 5, i64 => u64, 10, isize => usize, 10);

macro_rules! raw {
    ($($t:ty),*) => {$(
        impl Prim for $t {
            #[inline(always)]
            fn pack(self) -> Packed {
                const N: usize = size_of::<$t>();
                let mut low = [0u8; 8];
                low[..N].copy_from_slice(&self.to_le_bytes());
                Packed {
                    low: u64::from_le_bytes(low),
                    high: 0,
                    len: N,
                }
            }
            #[inline(always)]
            fn take(bytes: &[u8]) -> Option<(Self, usize)> {
                const N: usize = size_of::<$t>();
                let head: [u8; N] = bytes.get(..N)?.try_into().ok()?;
                Some((<$t>::from_le_bytes(head), N))
            }
        }
    )*};
}

raw!(u8, i8, f32, f64);

/// Runs `$body` with `$v` bound to the number inside `$any` (a `&dyn Any`
/// of `T`), when `T` is one of the numbers or a one-number tuple.
macro_rules! each_prim {
    ($m:ident) => {
        $m!(u8, i8, u16, i16, u32, i32, u64, i64, usize, isize, f32, f64)
    };
}

/// Whether `T` takes the fast path.
#[inline(always)]
pub(crate) fn is_prim<T: 'static>() -> bool {
    let id = std::any::TypeId::of::<T>();
    macro_rules! check {
        ($($t:ty),*) => {
            $(id == std::any::TypeId::of::<$t>() || id == std::any::TypeId::of::<($t,)>())||*
        };
    }
    each_prim!(check)
}

/// `value`'s bytes if it is a number, `None` for any other type.
#[inline(always)]
pub(crate) fn pack<T: 'static>(value: &T) -> Option<Packed> {
    let any = value as &dyn Any;
    macro_rules! try_pack {
        ($($t:ty),*) => {$(
            if let Some(v) = any.downcast_ref::<$t>() {
                return Some(v.pack());
            }
            if let Some((v,)) = any.downcast_ref::<($t,)>() {
                return Some(v.pack());
            }
        )*};
    }
    each_prim!(try_pack);
    None
}

/// The `T` at the front of `bytes` and its length, if `T` is a number and
/// the fast path is sure of it.
#[inline(always)]
pub(crate) fn take<T: 'static>(bytes: &[u8]) -> Option<(T, usize)> {
    let mut slot: Option<T> = None;
    let used = {
        let any = &mut slot as &mut dyn Any;
        macro_rules! try_take {
            ($($t:ty),*) => {'found: {
                $(
                    if let Some(s) = any.downcast_mut::<Option<$t>>() {
                        let (v, n) = <$t as Prim>::take(bytes)?;
                        *s = Some(v);
                        break 'found n;
                    }
                    if let Some(s) = any.downcast_mut::<Option<($t,)>>() {
                        let (v, n) = <$t as Prim>::take(bytes)?;
                        *s = Some((v,));
                        break 'found n;
                    }
                )*
                return None;
            }};
        }
        each_prim!(try_take)
    };
    slot.map(|v| (v, used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    fn same<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + 'static>(v: T) {
        let theirs = postcard::to_stdvec(&v).unwrap();
        let (ours, n) = pack(&v).expect("a number").bytes();
        assert_eq!(&ours[..n], &theirs[..], "{v:?}");
        match take::<T>(&theirs) {
            Some((back, used)) => {
                assert_eq!(back, v);
                assert_eq!(used, theirs.len());
            }
            // Only the longest varints are left to postcard.
            None => assert!(theirs.len() >= 3, "{v:?} not taken"),
        }
        // A short buffer is never read past.
        assert!(take::<T>(&theirs[..theirs.len() - 1]).is_none());
    }

    #[test]
    fn bytes_are_postcards() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            same(v);
            same((v,));
            same(v as u32);
            same(v as u16);
            same(v as usize);
        }
        for v in [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX, -300, 1 << 40] {
            same(v);
            same((v,));
            same(v as i32);
            same(v as i16);
            same(v as isize);
        }
        for v in [0u8, 7, 255] {
            same(v);
            same(v as i8);
        }
        for v in [0.0f64, -1.5, f64::MAX, f64::MIN_POSITIVE] {
            same(v);
            same(v as f32);
        }
    }

    #[test]
    fn other_types_take_the_slow_path() {
        assert!(!is_prim::<String>());
        assert!(!is_prim::<(u64, u64)>());
        assert!(!is_prim::<bool>());
        assert!(is_prim::<(i64,)>());
        assert!(pack(&"x".to_string()).is_none());
        assert!(take::<(u64, u64)>(&[1, 2]).is_none());
    }

    /// Whatever the bytes, the fast path gives postcard's value and length,
    /// or leaves them to postcard.
    fn agrees_on<T: Serialize + DeserializeOwned + 'static>(bytes: &[u8]) {
        if let Some((ours, used)) = take::<T>(bytes) {
            let (theirs, rest) = postcard::take_from_bytes::<T>(bytes).expect("postcard reads it");
            // Compared as bytes: NaN is not equal to itself.
            let (ours, theirs) = (postcard::to_stdvec(&ours), postcard::to_stdvec(&theirs));
            assert_eq!(ours.unwrap(), theirs.unwrap(), "{bytes:?}");
            assert_eq!(used, bytes.len() - rest.len(), "{bytes:?}");
        }
    }

    #[test]
    fn any_bytes_read_as_postcard_reads_them() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 12) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    let b = (state >> (i * 5 % 56)) as u8;
                    // Mostly continuation bytes: long varints too.
                    if state >> 60 > 3 { b | 0x80 } else { b }
                })
                .collect();
            let bytes = &bytes[..];
            agrees_on::<u64>(bytes);
            agrees_on::<i64>(bytes);
            agrees_on::<u32>(bytes);
            agrees_on::<(i32,)>(bytes);
            agrees_on::<u16>(bytes);
            agrees_on::<i16>(bytes);
            agrees_on::<u8>(bytes);
            agrees_on::<f64>(bytes);
        }
    }

    #[test]
    fn non_canonical_varints_read_as_postcard_reads_them() {
        // 0 in two bytes: postcard accepts it.
        let bytes = [0x80, 0x00];
        let theirs: u64 = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(take::<u64>(&bytes), Some((theirs, 2)));
    }
}
