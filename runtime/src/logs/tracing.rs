//! The `tracing` facade: a forwarding subscriber in children, re-emission in
//! the root's dispatcher.
//!
//! An event needs `'static` metadata from a registered callsite. The root
//! makes one per distinct (level, target, module path, file, line, field
//! names) it receives, leaked and cached, so a re-emitted event is the
//! child's own to the subscriber: its real target (which `EnvFilter`
//! directives and `fmt` see), its location and its fields, followed by
//! `child.name` and `child.pid`. The children run this very binary, so
//! these are at most the event callsites it contains; past
//! [`MAX_CALLSITES`] of them (a bound on what is leaked, about 0.5 KiB
//! each), events go to one fixed callsite per level, target
//! `multiproc::child`, which carries the original target, module path,
//! file, line and fields (as one `child.fields` text) in fields of its own.
//!
//! Events are dispatched in the dispatcher that was the default of the
//! thread that started a child last (the global one unless a child was
//! started within `with_default`), or the collector thread's default if
//! that one has been dropped.

use super::imp;
use super::wire::{Facade, MAX_FIELDS, Record, Val};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use tracing_core::callsite::{self, Callsite};
use tracing_core::dispatcher::{self, Dispatch, WeakDispatch};
use tracing_core::field::{self, DisplayValue, Field, FieldSet, Value, Visit};
use tracing_core::metadata::Kind;
use tracing_core::span::{Attributes, Id};
use tracing_core::subscriber::{Interest, NoSubscriber, Subscriber};
use tracing_core::{Event, Level, LevelFilter, Metadata, identify_callsite};

/// The most callsites the root makes for its children's events.
const MAX_CALLSITES: usize = 1024;

fn to_u8(filter: LevelFilter) -> u8 {
    match filter.into_level() {
        None => 0,
        Some(Level::ERROR) => 1,
        Some(Level::WARN) => 2,
        Some(Level::INFO) => 3,
        Some(Level::DEBUG) => 4,
        Some(_) => 5,
    }
}

fn to_filter(level: u8) -> LevelFilter {
    match level {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// Where the root re-emits: the dispatcher a child was last started under.
static ROUTE: Mutex<Option<WeakDispatch>> = Mutex::new(None);

/// In a root, at each spawn: 0 if the spawning thread has no dispatcher,
/// else `LevelFilter::current()`; that dispatcher then receives the
/// children's events.
pub(super) fn parent_level() -> u8 {
    dispatcher::get_default(|current| {
        if current.is::<NoSubscriber>() {
            return 0;
        }
        // The most verbose level any live subscriber wants (the dispatcher's
        // own hint is not public).
        let level = to_u8(LevelFilter::current());
        if level > 0 {
            *ROUTE.lock().unwrap_or_else(|e| e.into_inner()) = Some(current.downgrade());
        }
        level
    })
}

/// The forwarding subscriber of a child. Spans are not forwarded: they are
/// disabled, so entering one costs nothing.
struct Forwarder {
    level: LevelFilter,
}

/// In a child: becomes the global default, at the parent's level (nothing
/// if the child had one already).
pub(super) fn install(level: u8) {
    let forwarder = Forwarder {
        level: to_filter(level),
    };
    let _ = dispatcher::set_global_default(Dispatch::new(forwarder));
}

impl Forwarder {
    fn wanted(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && *metadata.level() <= self.level
    }
}

impl Subscriber for Forwarder {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.wanted(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.wanted(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.level)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &tracing_core::span::Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        if !self.wanted(metadata) {
            return;
        }
        let Some((origin, pid)) = imp::origin() else {
            return;
        };
        let mut fields = Fields {
            message: None,
            fields: Vec::new(),
        };
        event.record(&mut fields);
        fields.fields.truncate(MAX_FIELDS);
        let record = Record {
            facade: Facade::Tracing,
            origin: Cow::Borrowed(origin),
            pid,
            level: to_u8(LevelFilter::from_level(*metadata.level())),
            target: Cow::Borrowed(metadata.target()),
            module_path: metadata.module_path().map(Cow::Borrowed),
            file: metadata.file().map(Cow::Borrowed),
            line: metadata.line(),
            message: fields.message,
            fields: fields.fields,
        };
        imp::send(&record);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Collects an event's message and fields.
struct Fields {
    message: Option<Cow<'static, str>>,
    fields: Vec<(Cow<'static, str>, Val<'static>)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: Val<'static>) {
        self.fields.push((Cow::Borrowed(field.name()), value));
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(Cow::Owned(text));
        } else {
            self.push(field, Val::Text(Cow::Owned(text)));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(Cow::Owned(value.to_owned()));
        } else {
            self.push(field, Val::Str(Cow::Owned(value.to_owned())));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Val::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Val::U64(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Val::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Val::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Val::Text(Cow::Owned(value.to_string())));
    }
}

/// A callsite made in the root for children's events: leaked, registered
/// once, its metadata set before it is registered.
struct Made {
    metadata: OnceLock<Metadata<'static>>,
    /// 0 never, 1 sometimes, 2 always.
    interest: AtomicU8,
}

impl Callsite for Made {
    fn set_interest(&self, interest: Interest) {
        let value = if interest.is_never() {
            0
        } else if interest.is_always() {
            2
        } else {
            1
        };
        self.interest.store(value, Ordering::Relaxed);
    }

    fn metadata(&self) -> &Metadata<'_> {
        self.metadata
            .get()
            .expect("a made callsite's metadata is set before it is registered")
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// Makes and registers a callsite.
fn make(
    level: Level,
    target: &str,
    module_path: Option<&str>,
    file: Option<&str>,
    line: Option<u32>,
    names: Vec<&'static str>,
) -> &'static Made {
    let made: &'static Made = Box::leak(Box::new(Made {
        metadata: OnceLock::new(),
        interest: AtomicU8::new(1),
    }));
    let name = match (file, line) {
        (Some(file), Some(line)) => leak(&format!("event {file}:{line}")),
        _ => "event",
    };
    let names: &'static [&'static str] = Vec::leak(names);
    let metadata = Metadata::new(
        name,
        leak(target),
        level,
        file.map(leak),
        line,
        module_path.map(leak),
        FieldSet::new(names, identify_callsite!(made)),
        Kind::EVENT,
    );
    let _ = made.metadata.set(metadata);
    callsite::register(made);
    made
}

/// The callsites made so far, by a hash of what identifies them.
struct Cache {
    by_hash: HashMap<u64, Vec<&'static Made>>,
    count: usize,
    /// The fixed callsites, one per level, once the others are too many.
    fixed: [Option<&'static Made>; 5],
}

static MADE: Mutex<Option<Cache>> = Mutex::new(None);

const FIXED_FIELDS: [&str; 8] = [
    "message",
    "child.name",
    "child.pid",
    "child.target",
    "child.module_path",
    "child.file",
    "child.line",
    "child.fields",
];

fn key_hash(record: &Record<'_>) -> u64 {
    let mut hasher = DefaultHasher::new();
    record.level.hash(&mut hasher);
    record.target.hash(&mut hasher);
    record.module_path.hash(&mut hasher);
    record.file.hash(&mut hasher);
    record.line.hash(&mut hasher);
    record.message.is_some().hash(&mut hasher);
    for (name, _) in &record.fields {
        name.hash(&mut hasher);
    }
    hasher.finish()
}

/// Whether `made` is the callsite for `record`: same place, same fields.
fn matches(made: &Made, record: &Record<'_>) -> bool {
    let metadata = made.metadata();
    let mut names = metadata.fields().iter().map(|f| f.name());
    let message_matches = match record.message {
        Some(_) => names.next() == Some("message"),
        None => true,
    };
    to_u8(LevelFilter::from_level(*metadata.level())) == record.level
        && metadata.target() == record.target
        && metadata.module_path() == record.module_path.as_deref()
        && metadata.file() == record.file.as_deref()
        && metadata.line() == record.line
        && message_matches
        && record
            .fields
            .iter()
            .map(|(name, _)| name.as_ref())
            .chain(["child.name", "child.pid"])
            .eq(names)
}

/// The callsite for `record`, made if it is new; `None` if the record's
/// level is not one, and the fixed callsite of its level once too many
/// were made.
fn callsite_for(record: &Record<'_>) -> Option<(&'static Made, bool)> {
    let level = to_filter(record.level).into_level()?;
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    let made = made.get_or_insert_with(|| Cache {
        by_hash: HashMap::new(),
        count: 0,
        fixed: [None; 5],
    });
    let hash = key_hash(record);
    if let Some(found) = made
        .by_hash
        .get(&hash)
        .and_then(|all| all.iter().find(|m| matches(m, record)))
    {
        return Some((found, false));
    }
    if made.count >= MAX_CALLSITES {
        let slot = &mut made.fixed[usize::from(record.level.clamp(1, 5) - 1)];
        let fixed = *slot.get_or_insert_with(|| {
            make(
                level,
                "multiproc::child",
                Some("multiproc::child"),
                None,
                None,
                FIXED_FIELDS.to_vec(),
            )
        });
        return Some((fixed, true));
    }
    let names: Vec<&'static str> = record
        .message
        .as_ref()
        .map(|_| "message")
        .into_iter()
        .chain(record.fields.iter().map(|(name, _)| leak(name)))
        .chain(["child.name", "child.pid"])
        .collect();
    let new = make(
        level,
        &record.target,
        record.module_path.as_deref(),
        record.file.as_deref(),
        record.line,
        names,
    );
    made.by_hash.entry(hash).or_default().push(new);
    made.count += 1;
    Some((new, false))
}

/// A value, held so that a `&dyn Value` can point at it.
enum Held<'a> {
    Str(&'a str),
    Text(DisplayValue<&'a str>),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl<'a> Held<'a> {
    fn of(value: &'a Val<'_>) -> Self {
        match value {
            Val::Str(s) => Held::Str(s),
            Val::Text(s) => Held::Text(field::display(s.as_ref())),
            Val::I64(i) => Held::I64(*i),
            Val::U64(u) => Held::U64(*u),
            Val::F64(f) => Held::F64(*f),
            Val::Bool(b) => Held::Bool(*b),
        }
    }

    fn value(&self) -> &dyn Value {
        match self {
            Held::Str(s) => s,
            Held::Text(t) => t,
            Held::I64(i) => i,
            Held::U64(u) => u,
            Held::F64(f) => f,
            Held::Bool(b) => b,
        }
    }
}

/// In the root: dispatches a child's event as if it had happened here.
pub(super) fn emit(record: &Record<'_>) {
    let Some(level) = to_filter(record.level).into_level() else {
        return;
    };
    if level > LevelFilter::current() {
        return;
    }
    let Some((made, fixed)) = callsite_for(record) else {
        return;
    };
    if made.interest.load(Ordering::Relaxed) == 0 {
        return;
    }
    let metadata: &'static Metadata<'static> = made.metadata();
    let fields: Vec<Field> = metadata.fields().iter().collect();
    let origin = field::display(record.origin.as_ref());
    let message = record.message.as_deref().map(field::display);
    let held: Vec<Held<'_>> = record.fields.iter().map(|(_, v)| Held::of(v)).collect();
    let target = record.target.as_ref();
    let module_path = record.module_path.as_deref();
    let file = record.file.as_deref();
    let joined;
    let mut values: [(&Field, Option<&dyn Value>); MAX_FIELDS + 3] =
        [(&fields[0], None); MAX_FIELDS + 3];
    if fixed {
        joined = record
            .fields
            .iter()
            .map(|(name, value)| format!("{name}={}", text(value)))
            .collect::<Vec<_>>()
            .join(" ");
        let place: [Option<&dyn Value>; 8] = [
            message.as_ref().map(|m| m as &dyn Value),
            Some(&origin),
            Some(&record.pid),
            Some(&target),
            module_path.as_ref().map(|m| m as &dyn Value),
            file.as_ref().map(|f| f as &dyn Value),
            record.line.as_ref().map(|l| l as &dyn Value),
            Some(&joined),
        ];
        for (slot, (field, value)) in values.iter_mut().zip(fields.iter().zip(place)) {
            *slot = (field, value);
        }
    } else {
        let mut given = message
            .as_ref()
            .map(|m| m as &dyn Value)
            .into_iter()
            .chain(held.iter().map(Held::value))
            .chain([&origin as &dyn Value, &record.pid]);
        for (slot, field) in values.iter_mut().zip(&fields) {
            *slot = (field, given.next());
        }
    }
    let value_set = metadata.fields().value_set(&values);
    let event = Event::new(metadata, &value_set);
    with_route(|dispatch| {
        if dispatch.enabled(metadata) {
            dispatch.event(&event);
        }
    });
}

fn text(value: &Val<'_>) -> String {
    match value {
        Val::Str(s) => format!("{s:?}"),
        Val::Text(s) => s.to_string(),
        Val::I64(i) => i.to_string(),
        Val::U64(u) => u.to_string(),
        Val::F64(f) => f.to_string(),
        Val::Bool(b) => b.to_string(),
    }
}

fn with_route(mut f: impl FnMut(&Dispatch)) {
    let route = ROUTE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(WeakDispatch::upgrade);
    match route {
        Some(dispatch) => f(&dispatch),
        None => dispatcher::get_default(|dispatch| f(dispatch)),
    }
}
