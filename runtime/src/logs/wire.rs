//! What a datagram on the log socket holds: one record, or the root's own
//! flush marker. Encoded with the crate's codec (postcard).

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The largest datagram a child sends, and the collector reads.
pub(super) const MAX_RECORD: usize = 64 << 10;
/// What a record is cut to when the socket refuses one of [`MAX_RECORD`].
pub(super) const SMALL_RECORD: usize = 4 << 10;
/// Names (origin, target, module path, file, field names) are cut to this.
const MAX_NAME: usize = 1 << 10;
/// Field values are cut to this when a record is too large.
const MAX_VALUE: usize = 4 << 10;
/// Fields past this many are left out of a record that is too large (and
/// of every `tracing` event, whose callsites hold at most this many).
pub(super) const MAX_FIELDS: usize = 60;

/// Which facade a record came from, and goes back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Facade {
    Log,
    Tracing,
}

/// One record or event of a child, as it travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Record<'a> {
    pub(super) facade: Facade,
    /// The emitting process's name (`Process-1:2`, `PoolWorker-3`).
    pub(super) origin: Cow<'a, str>,
    pub(super) pid: u32,
    /// 1 error ... 5 trace.
    pub(super) level: u8,
    pub(super) target: Cow<'a, str>,
    pub(super) module_path: Option<Cow<'a, str>>,
    pub(super) file: Option<Cow<'a, str>>,
    pub(super) line: Option<u32>,
    /// `None` for a `tracing` event without a message.
    pub(super) message: Option<Cow<'a, str>>,
    pub(super) fields: Vec<(Cow<'a, str>, Val<'a>)>,
}

/// A key-value's or field's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) enum Val<'a> {
    /// A string (`tracing` quotes it, as it did in the child).
    Str(Cow<'a, str>),
    /// Any other value, as its `Display` (`log`) or `Debug` (`tracing`)
    /// rendering, shown as is.
    Text(Cow<'a, str>),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

/// What a sender writes. Serializes as [`Incoming`] deserializes.
#[derive(Serialize)]
enum Outgoing<'r, 'a> {
    Record(&'r Record<'a>),
    Flush(u64),
}

/// What the collector reads.
#[derive(Debug, Deserialize)]
pub(super) enum Incoming {
    Record(Record<'static>),
    /// The root's marker: everything queued before it has been re-emitted
    /// once the collector reaches it.
    Flush(u64),
}

/// Encodes the root's flush marker number `seq`.
pub(super) fn encode_flush(seq: u64) -> Option<Vec<u8>> {
    crate::codec::encode(&Outgoing::Flush(seq)).ok()
}

pub(super) fn decode(datagram: &[u8]) -> Option<Incoming> {
    crate::codec::decode(datagram).ok()
}

/// Encodes `record` into `buf` (emptied first) in at most `cap` bytes,
/// cutting names, values, fields and finally the message as needed (the
/// message then ends with a note of its full length). `false` if even that
/// does not fit (a `cap` below a few hundred bytes).
pub(super) fn encode_record(record: &Record<'_>, cap: usize, buf: &mut Vec<u8>) -> bool {
    let fits = |r: &Record<'_>, buf: &mut Vec<u8>| {
        buf.clear();
        crate::codec::encode_into(&Outgoing::Record(r), buf).is_ok() && buf.len() <= cap
    };
    if fits(record, buf) {
        return true;
    }
    let mut small = record.clone();
    cut_cow(&mut small.origin, MAX_NAME);
    cut_cow(&mut small.target, MAX_NAME);
    for name in [&mut small.module_path, &mut small.file]
        .into_iter()
        .flatten()
    {
        cut_cow(name, MAX_NAME);
    }
    small.fields.truncate(MAX_FIELDS);
    for (name, value) in &mut small.fields {
        cut_cow(name, MAX_NAME);
        if let Val::Str(s) | Val::Text(s) = value {
            cut_cow(s, MAX_VALUE);
        }
    }
    if fits(&small, buf) {
        return true;
    }
    // Only the message is left to cut: by what is over, and room for the note.
    let over = buf.len().saturating_sub(cap);
    if let Some(message) = &mut small.message {
        let full = message.len();
        let keep = full.saturating_sub(over + 96);
        let note = format!(
            "{}… [cut by multiproc: the message had {full} bytes]",
            prefix(message, keep)
        );
        *message = Cow::Owned(note);
    }
    if fits(&small, buf) {
        return true;
    }
    // Many fields of long names: keep the message alone.
    small.fields.clear();
    if fits(&small, buf) {
        return true;
    }
    if let Some(message) = &mut small.message {
        cut_cow(message, cap / 2);
    }
    fits(&small, buf)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn cut_cow(s: &mut Cow<'_, str>, max: usize) {
    if s.len() > max {
        *s = Cow::Owned(format!("{}…", prefix(s, max)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(message: String, fields: Vec<(Cow<'static, str>, Val<'static>)>) -> Record<'static> {
        Record {
            facade: Facade::Log,
            origin: "Process-1".into(),
            pid: 42,
            level: 3,
            target: "t".into(),
            module_path: Some("m".into()),
            file: Some("f.rs".into()),
            line: Some(7),
            message: Some(message.into()),
            fields,
        }
    }

    #[test]
    fn a_record_round_trips() {
        let r = record(
            "hello".into(),
            vec![
                ("a".into(), Val::I64(-1)),
                ("b".into(), Val::Str("x".into())),
                ("c".into(), Val::F64(0.5)),
            ],
        );
        let mut buf = Vec::new();
        assert!(encode_record(&r, MAX_RECORD, &mut buf));
        let Some(Incoming::Record(back)) = decode(&buf) else {
            panic!("not a record");
        };
        assert_eq!(back.message.as_deref(), Some("hello"));
        assert_eq!(back.fields, r.fields);
        assert_eq!((back.pid, back.level, back.line), (42, 3, Some(7)));
        assert!(matches!(
            decode(&encode_flush(9).unwrap()),
            Some(Incoming::Flush(9))
        ));
    }

    #[test]
    fn a_long_message_is_cut_with_a_note() {
        let r = record("é".repeat(100_000), Vec::new());
        let mut buf = Vec::new();
        assert!(encode_record(&r, MAX_RECORD, &mut buf));
        assert!(buf.len() <= MAX_RECORD);
        let Some(Incoming::Record(back)) = decode(&buf) else {
            panic!("not a record");
        };
        let message = back.message.unwrap();
        assert!(message.len() > MAX_RECORD - 1024, "{}", message.len());
        assert!(message.ends_with("[cut by multiproc: the message had 200000 bytes]"));
    }

    #[test]
    fn many_large_fields_are_cut_too() {
        let fields = (0..1000)
            .map(|i| {
                (
                    Cow::Owned(format!("{i:0>2000}")),
                    Val::Text("v".repeat(10_000).into()),
                )
            })
            .collect();
        let r = record("m".repeat(70_000), fields);
        let mut buf = Vec::new();
        for cap in [MAX_RECORD, SMALL_RECORD] {
            assert!(encode_record(&r, cap, &mut buf));
            assert!(buf.len() <= cap);
            assert!(matches!(decode(&buf), Some(Incoming::Record(_))));
        }
    }
}
