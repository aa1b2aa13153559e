//! CPython's frame header (`multiprocessing.connection`): a 4-byte
//! big-endian signed length, or -1 and an 8-byte length.

use crate::codec::{CodecError, MAX_FRAME};

/// Length of a frame header: a big-endian `i32` (Python's `struct.pack("!i", n)`).
pub(super) const SHORT: usize = 4;
/// Length of the header of a body longer than `i32::MAX` bytes: -1, then a
/// big-endian `u64` (Python's `"!i"` -1, then `"!Q"` n).
pub(super) const LONG: usize = 12;

/// The header of a body of `len` bytes, as Python writes it: the bytes, and
/// how many of them are used.
pub(super) fn frame_header(len: u64) -> ([u8; LONG], usize) {
    let mut header = [0u8; LONG];
    match i32::try_from(len) {
        Ok(short) => {
            header[..SHORT].copy_from_slice(&short.to_be_bytes());
            (header, SHORT)
        }
        Err(_) => {
            header[..SHORT].copy_from_slice(&(-1i32).to_be_bytes());
            header[SHORT..].copy_from_slice(&len.to_be_bytes());
            (header, LONG)
        }
    }
}

/// What the first bytes of a frame say.
pub(super) enum Header {
    /// At least this many bytes are needed to read the header.
    Incomplete(usize),
    /// A header of `size` bytes announcing a body of `len` bytes.
    Whole { size: usize, len: u64 },
    /// A negative length other than -1: not a frame.
    Negative(i32),
}

pub(super) fn parse_header(bytes: &[u8]) -> Header {
    let Some(short) = bytes.first_chunk::<SHORT>() else {
        return Header::Incomplete(SHORT);
    };
    match i32::from_be_bytes(*short) {
        n if n >= 0 => Header::Whole {
            size: SHORT,
            len: n as u64,
        },
        -1 => match bytes.get(SHORT..LONG) {
            Some(long) => Header::Whole {
                size: LONG,
                len: u64::from_be_bytes(long.try_into().expect("8 bytes")),
            },
            None => Header::Incomplete(LONG),
        },
        n => Header::Negative(n),
    }
}

/// A header that no frame may have: the stream is out of step.
#[derive(Clone, Copy)]
pub(super) enum Bad {
    /// It announces more than any frame may hold.
    Oversized(u64),
    /// It announces a negative length other than -1.
    Negative(i32),
}

impl Bad {
    pub(super) fn error(self) -> CodecError {
        match self {
            Bad::Oversized(len) => CodecError::Oversized {
                len,
                limit: MAX_FRAME,
            },
            Bad::Negative(n) => CodecError::Corrupt {
                type_name: "a frame header",
                reason: format!("the peer announced a negative length, {n}"),
            },
        }
    }
}
