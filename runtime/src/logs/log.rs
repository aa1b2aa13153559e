//! The `log` facade: a forwarding logger in children, re-emission in the
//! root's `log::logger()`.

use super::imp;
use super::wire::{Facade, Record, Val};
use ::log::kv::{self, Key, Value, VisitSource};
use ::log::{Level, LevelFilter, Log, Metadata};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU8, Ordering};

fn to_u8(filter: LevelFilter) -> u8 {
    filter as usize as u8
}

fn to_filter(level: u8) -> LevelFilter {
    match level {
        0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

fn to_level(level: u8) -> Option<Level> {
    to_filter(level).to_level()
}

/// In a root, at each spawn: the level its logger wants (0 when it has none).
pub(super) fn parent_level() -> u8 {
    to_u8(::log::max_level())
}

/// The forwarding logger of a child.
struct Forwarder;

static FORWARDER: Forwarder = Forwarder;
/// The parent's level, which `log::max_level()` is also set to (a child
/// that raises the latter still sends nothing the parent does not want).
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// In a child: becomes its logger, at the parent's level (nothing if the
/// child had one already).
pub(super) fn install(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
    if ::log::set_logger(&FORWARDER).is_ok() {
        ::log::set_max_level(to_filter(level));
    }
}

impl Log for Forwarder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= to_filter(LEVEL.load(Ordering::Relaxed))
    }

    fn log(&self, record: &::log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Some((origin, pid)) = imp::origin() else {
            return;
        };
        let args = record.args();
        let message = match args.as_str() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(args.to_string()),
        };
        let mut fields = Fields(Vec::new());
        let _ = record.key_values().visit(&mut fields);
        let record = Record {
            facade: Facade::Log,
            origin: Cow::Borrowed(origin),
            pid,
            level: record.level() as usize as u8,
            target: Cow::Borrowed(record.target()),
            module_path: record.module_path().map(Cow::Borrowed),
            file: record.file().map(Cow::Borrowed),
            line: record.line(),
            message: Some(message),
            fields: fields.0,
        };
        imp::send(&record);
    }

    fn flush(&self) {}
}

/// Collects a record's key-values.
struct Fields<'kvs>(Vec<(Cow<'kvs, str>, Val<'kvs>)>);

impl<'kvs> VisitSource<'kvs> for Fields<'kvs> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        let name = match key.to_borrowed_str() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(key.as_str().to_owned()),
        };
        let value = if let Some(b) = value.to_bool() {
            Val::Bool(b)
        } else if let Some(s) = value.to_borrowed_str() {
            Val::Str(Cow::Borrowed(s))
        } else if let Some(i) = value.to_i64() {
            Val::I64(i)
        } else if let Some(u) = value.to_u64() {
            Val::U64(u)
        } else if let Some(f) = value.to_f64() {
            Val::F64(f)
        } else {
            Val::Text(Cow::Owned(value.to_string()))
        };
        self.0.push((name, value));
        Ok(())
    }
}

/// A record's key-values, then `child.name` and `child.pid`.
struct Source<'r>(&'r Record<'r>);

impl kv::Source for Source<'_> {
    fn visit<'kvs>(&'kvs self, visitor: &mut dyn VisitSource<'kvs>) -> Result<(), kv::Error> {
        for (name, value) in &self.0.fields {
            let value = match value {
                Val::Str(s) | Val::Text(s) => Value::from(s.as_ref()),
                Val::I64(i) => Value::from(*i),
                Val::U64(u) => Value::from(*u),
                Val::F64(f) => Value::from(*f),
                Val::Bool(b) => Value::from(*b),
            };
            visitor.visit_pair(Key::from_str(name), value)?;
        }
        visitor.visit_pair(
            Key::from_str("child.name"),
            Value::from(self.0.origin.as_ref()),
        )?;
        visitor.visit_pair(Key::from_str("child.pid"), Value::from(self.0.pid))
    }
}

/// In the root: logs a child's record in `log::logger()`, as if it had been
/// logged here, with `NAME[PID]: ` before its message.
pub(super) fn emit(record: &Record<'_>) {
    let Some(level) = to_level(record.level) else {
        return;
    };
    if level > ::log::max_level() {
        return;
    }
    let logger = ::log::logger();
    let metadata = Metadata::builder()
        .level(level)
        .target(&record.target)
        .build();
    if !logger.enabled(&metadata) {
        return;
    }
    let source = Source(record);
    let message = record.message.as_deref().unwrap_or_default();
    logger.log(
        &::log::Record::builder()
            .metadata(metadata)
            .args(format_args!("{}[{}]: {message}", record.origin, record.pid))
            .module_path(record.module_path.as_deref())
            .file(record.file.as_deref())
            .line(record.line)
            .key_values(&source)
            .build(),
    );
}
