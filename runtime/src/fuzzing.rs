//! Entry points for fuzzing: each feeds arbitrary bytes to the parsers that
//! read what another process wrote (frame headers, the spawn payload, the
//! handle table, message bodies, pool frames, a queue's shared ring).
//!
//! The `fuzz/` crate (cargo-fuzz) and `tests/tests/decode_props.rs`
//! (proptest) call these. They return normally for every input: a parser
//! that rejects bytes does so with a typed error, which is dropped here. A
//! panic out of one of these functions is a finding: either a parser
//! panicked, or it broke a contract checked here (a frame longer than its
//! limit, a buffer allocated for an announced length that never arrived).
//!
//! Allocation bounds are enforced by the caller: libFuzzer's
//! `-malloc_limit_mb`, or the counting allocator in `decode_props.rs`.
//! Every entry point keeps its limits small ([`SMALL_LIMIT`]) or lets the
//! parser run with the crate's default frame limit, `MAX_FRAME` (4 GiB),
//! where the point is that an announced length alone allocates nothing.

use crate::codec::{self, CodecError};
use crate::conn::Conn;
use crate::handles;
use crate::sys::shm::{self, Mapping};
use crate::{
    Array, Barrier, BoundedSemaphore, Condition, Connection, Event, JoinableQueue, Lock,
    PipeReader, PipeWriter, Queue, RLock, RawArray, RawValue, Semaphore, SharedMemory, SimpleQueue,
    TryGetError, TryRecvError, Value,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

// The pool's wire module is private to `pool`; the same source is compiled
// here so its parsers (`InBuf`, `parse_task`) can be driven directly.
#[allow(dead_code, unreachable_pub, clippy::duplicate_mod)]
#[path = "pool/wire.rs"]
mod wire;

pub use crate::codec::{decode, encode};

/// The largest frame any receiver accepts (`codec::MAX_FRAME`).
pub const MAX_FRAME: u64 = codec::MAX_FRAME;

/// `handles::decode_with_fds`: decodes `T`, handing `fds` (the handle
/// table, as a child receives it) to the handles inside.
pub fn decode_with_fds<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<T, CodecError> {
    handles::decode_with_fds(bytes, fds)
}

/// `codec::read_frame`: one frame of at most `limit` bytes from `r`.
pub fn read_frame(r: impl std::io::Read, limit: u64) -> Result<Option<Vec<u8>>, CodecError> {
    codec::read_frame(r, limit)
}

/// `codec::split_frames`: the complete frames at the front of `buf`, and
/// the bytes they use.
pub fn split_frames(buf: &[u8], limit: u64) -> Result<(Vec<&[u8]>, usize), CodecError> {
    codec::split_frames(buf, limit)
}

/// The frame limit the entry points use where a small one makes oversized
/// headers common: 64 KiB.
pub const SMALL_LIMIT: u64 = 64 << 10;

/// The most bytes an entry point writes into a socket before reading it
/// back: well under a Unix socket's default buffer, so no writer thread is
/// needed. Longer inputs are cut.
const MAX_STREAM: usize = 64 << 10;

/// The most descriptors [`handle_table`] puts in a table.
pub const MAX_FDS: u8 = 12;

/// A cursor over fuzz input: every read succeeds (zeros past the end).
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}

/// A connected socketpair whose read end holds `bytes` (at most 64 KiB)
/// followed by the end of the stream.
fn stream_of(bytes: &[u8]) -> std::io::Result<UnixStream> {
    let (mut writer, reader) = UnixStream::pair()?;
    writer.write_all(&bytes[..bytes.len().min(MAX_STREAM)])?;
    drop(writer);
    Ok(reader)
}

/// Frame headers: `split_frames` and `read_frame` (over a slice reader and
/// over a socket), with a small limit and with `MAX_FRAME`.
pub fn frames(bytes: &[u8]) {
    for limit in [0, 7, SMALL_LIMIT, MAX_FRAME] {
        // split_frames: frames in order, each within the limit, and the
        // bytes used are exactly their headers and bodies.
        match codec::split_frames(bytes, limit) {
            Ok((frames, used)) => {
                assert!(used <= bytes.len());
                let total: usize = frames.iter().map(|f| 8 + f.len()).sum();
                assert_eq!(total, used, "split_frames lost bytes");
                assert!(
                    bytes.len() - used < 8 || {
                        let len = u64::from_le_bytes(bytes[used..used + 8].try_into().unwrap());
                        (bytes.len() - used - 8) < len as usize
                    }
                );
                for f in &frames {
                    assert!(
                        f.len() as u64 <= limit,
                        "split_frames: frame over the limit"
                    );
                }
            }
            Err(CodecError::Oversized { len, limit: l }) => assert!(len > l && l == limit),
            Err(e) => panic!("split_frames: unexpected error {e}"),
        }
        // read_frame over a slice: same frames as split_frames, and no body
        // buffer sized by the header alone.
        let mut reader = bytes;
        let mut seen = 0usize;
        loop {
            match codec::read_frame(&mut reader, limit) {
                Ok(Some(body)) => {
                    assert!(
                        body.len() as u64 <= limit,
                        "read_frame: frame over the limit"
                    );
                    assert!(
                        body.capacity() <= (64 << 10).max(2 * body.len() + 64),
                        "read_frame: {} bytes of capacity for a {}-byte body",
                        body.capacity(),
                        body.len()
                    );
                    seen += 8 + body.len();
                }
                Ok(None) => {
                    assert_eq!(seen, bytes.len());
                    break;
                }
                Err(CodecError::Oversized { len, .. }) => {
                    assert!(len > limit);
                    break;
                }
                Err(CodecError::Truncated { expected, got }) => {
                    assert!(got < expected);
                    break;
                }
                Err(e) => panic!("read_frame: unexpected error {e}"),
            }
        }
        assert!(seen <= bytes.len());
    }
    // read_frame over a socket (the child's payload and outcome path).
    let Ok(stream) = stream_of(bytes) else { return };
    let conn = Conn::from_fd(OwnedFd::from(stream));
    for _ in 0..bytes.len() / 8 + 2 {
        match conn.recv_frame(SMALL_LIMIT) {
            Ok(Some(body)) => assert!(body.len() as u64 <= SMALL_LIMIT),
            Ok(None) | Err(_) => break,
        }
    }
}

/// The spawn payload as a child reads it: the header frame, the
/// descriptors, the argument frame, read from a socket holding `bytes`.
/// Also decodes the spawn header and the child's outcome from raw bytes.
pub fn spawn_payload(bytes: &[u8]) {
    let _ = codec::decode::<crate::protocol::SpawnHeader>(bytes);
    let _ = codec::decode::<crate::protocol::Outcome>(bytes);
    let Ok(stream) = stream_of(bytes) else { return };
    let conn = Conn::from_fd(OwnedFd::from(stream));
    if let Ok(payload) = crate::child::read_payload_frames(&conn) {
        let (fds, args) = (payload.fds, payload.args);
        assert!(args.len() <= bytes.len());
        assert!(fds.is_empty(), "descriptors out of a stream that had none");
    }
}

/// A descriptor of the kind `kind` selects, none of them a valid handle of
/// the type being decoded (some are valid handles of another type).
fn wrong_fd(kind: u8, input: &mut Input<'_>) -> Option<OwnedFd> {
    fn handle_fd<T: Serialize>(handle: crate::Result<T>) -> Option<OwnedFd> {
        let (_, mut fds) = handles::encode_with_fds(&handle.ok()?).ok()?;
        (!fds.is_empty()).then(|| fds.swap_remove(0))
    }
    match kind % 12 {
        0 => std::fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .ok()
            .map(OwnedFd::from),
        1 => {
            // A memfd of fuzz-chosen bytes and size; a set top bit makes it
            // a large sparse file (up to 32 GiB, nothing touched).
            let size = input.u16();
            let size = if size & 0x8000 != 0 {
                u64::from(size & 0x7fff) << 20
            } else {
                u64::from(size)
            };
            let len = input.u16() as usize;
            let content = input.take(len);
            let fd = shm::memfd("multiproc-fuzz", size).ok()?;
            let _ = nix::unistd::write(&fd, &content[..content.len().min(size as usize)]);
            Some(fd)
        }
        2 => UnixStream::pair().ok().map(|(a, _)| OwnedFd::from(a)),
        3 => nix::sys::eventfd::EventFd::new().ok().map(OwnedFd::from),
        4 => nix::unistd::pipe().ok().map(|(r, _)| r),
        5 => handle_fd(Lock::new()),
        6 => handle_fd(Queue::<u32>::new()),
        7 => handle_fd(Event::new()),
        8 => handle_fd(Value::new(0u64)),
        9 => handle_fd(SharedMemory::new(input.u16() as usize + 1)),
        10 => std::fs::File::open("/").ok().map(OwnedFd::from),
        _ => handle_fd(Array::<u8>::new(input.u8() as usize)),
    }
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct WithHandles {
    name: String,
    queue: Queue<Vec<u8>>,
    locks: Vec<Option<Lock>>,
    value: Value<[u32; 4]>,
    pipe: Option<PipeWriter<String>>,
}

/// Decodes `T` against the table; on success touches what a receiver
/// touches first without blocking (sizes, flags, lock-free reads).
fn decode_handles<T: serde::de::DeserializeOwned, F: FnOnce(&T)>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
    touch: F,
) {
    if let Ok(value) = handles::decode_with_fds::<T>(bytes, fds) {
        touch(&value);
    }
}

/// The handle table: `bytes` choose a type with handles inside, then
/// describe `nfds` (at most [`MAX_FDS`]) descriptors that are not what the
/// type expects; the rest is the encoded arguments, decoded against that
/// table. Every failure must be a typed error.
pub fn handle_table(bytes: &[u8], nfds: u8) {
    let mut input = Input(bytes);
    let which = input.u8();
    let mut fds = Vec::new();
    for _ in 0..nfds.min(MAX_FDS) {
        let kind = input.u8();
        if let Some(fd) = wrong_fd(kind, &mut input) {
            fds.push(fd);
        }
    }
    let body = input.rest();
    match which % 24 {
        0 => decode_handles::<Queue<u32>, _>(body, fds, |q| {
            let _ = (q.qsize(), q.empty(), q.full(), q.maxsize());
        }),
        1 => decode_handles::<SimpleQueue<String>, _>(body, fds, |q| {
            let _ = q.empty();
        }),
        2 => decode_handles::<JoinableQueue<u8>, _>(body, fds, |_| {}),
        3 => decode_handles::<Connection<u32>, _>(body, fds, |c| {
            let _ = c.poll();
            let _ = c.try_recv();
        }),
        4 => decode_handles::<PipeReader<String>, _>(body, fds, |c| {
            let _ = c.try_recv();
        }),
        5 => decode_handles::<PipeWriter<u8>, _>(body, fds, |_| {}),
        6 => decode_handles::<Lock, _>(body, fds, |_| {}),
        7 => decode_handles::<RLock, _>(body, fds, |_| {}),
        8 => decode_handles::<Semaphore, _>(body, fds, |s| {
            let _ = s.value();
        }),
        9 => decode_handles::<BoundedSemaphore, _>(body, fds, |_| {}),
        10 => decode_handles::<Event, _>(body, fds, |e| {
            let _ = e.is_set();
        }),
        11 => decode_handles::<Condition, _>(body, fds, |_| {}),
        12 => decode_handles::<Barrier, _>(body, fds, |b| {
            let _ = (b.parties(), b.n_waiting(), b.broken(), b.timeout());
        }),
        13 => decode_handles::<Value<u64>, _>(body, fds, |_| {}),
        14 => decode_handles::<Array<u8>, _>(body, fds, |a| {
            let _ = (a.len(), a.is_empty());
        }),
        15 => decode_handles::<RawValue<u32>, _>(body, fds, |v| {
            let _ = v.load();
        }),
        16 => decode_handles::<RawArray<u64>, _>(body, fds, |a| {
            if a.len() <= 1 << 16 {
                let _ = a.to_vec();
            }
        }),
        17 => decode_handles::<SharedMemory, _>(body, fds, |m| {
            let _ = (m.size(), m.name());
        }),
        18 => decode_handles::<Vec<Lock>, _>(body, fds, |_| {}),
        19 => decode_handles::<(Queue<u32>, Event, Value<u64>), _>(body, fds, |_| {}),
        20 => decode_handles::<Option<Connection<u8>>, _>(body, fds, |_| {}),
        21 => decode_handles::<WithHandles, _>(body, fds, |_| {}),
        22 => decode_handles::<HashMap<u8, Event>, _>(body, fds, |_| {}),
        _ => decode_handles::<Result<Lock, Semaphore>, _>(body, fds, |_| {}),
    }
}

/// Bytes through serde's byte-buffer path (what `serde_bytes` uses).
#[derive(Debug, PartialEq)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}

#[derive(Deserialize)]
#[allow(dead_code)]
enum Shape {
    Unit,
    Newtype(i32),
    Tuple(u8, String, Option<f32>),
    Struct {
        id: u128,
        tags: Vec<String>,
        nested: Box<Option<Shape>>,
    },
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Record {
    name: String,
    score: f64,
    when: (i64, u32),
    flags: [bool; 3],
    shapes: Vec<Shape>,
    attrs: BTreeMap<String, Vec<u16>>,
    payload: Bytes,
    ch: char,
}

/// Message bodies that do not decode as `T`: `codec::decode::<T>` for a
/// spread of types, and the pool's task and reply bodies.
pub fn decode_as(bytes: &[u8]) {
    fn try_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) {
        match codec::decode::<T>(bytes) {
            Ok(_) | Err(CodecError::Corrupt { .. }) => {}
            Err(e) => panic!("decode: unexpected error {e}"),
        }
    }
    try_decode::<()>(bytes);
    try_decode::<bool>(bytes);
    try_decode::<u8>(bytes);
    try_decode::<i64>(bytes);
    try_decode::<u128>(bytes);
    try_decode::<f64>(bytes);
    try_decode::<char>(bytes);
    try_decode::<String>(bytes);
    try_decode::<Vec<u8>>(bytes);
    try_decode::<Bytes>(bytes);
    try_decode::<Vec<String>>(bytes);
    try_decode::<Option<u32>>(bytes);
    try_decode::<(u8, String, Vec<i32>)>(bytes);
    try_decode::<HashMap<String, u64>>(bytes);
    try_decode::<BTreeMap<u32, Vec<u8>>>(bytes);
    try_decode::<Vec<Vec<Vec<()>>>>(bytes);
    try_decode::<Shape>(bytes);
    try_decode::<Record>(bytes);
    try_decode::<Result<Vec<u64>, String>>(bytes);
    // The pool: a task body, and the replies the parent parses.
    if let Some(parts) = wire::parse_task(bytes) {
        assert!(parts.name.len() + 10 <= bytes.len());
        try_decode::<Vec<(u64,)>>(parts.items);
        try_decode::<Vec<(String, Vec<u8>)>>(parts.items);
        if let Ok(mut calls) = codec::Items::new(parts.items) {
            while let Some(Ok(_)) = calls.next::<(u64,)>() {
                assert!(calls.offset() <= parts.items.len());
            }
        }
    }
    pool_reply(bytes);
}

/// A pool reply body as the parent reads it (`dispatch::reply`,
/// `result::outcomes`), as if for a chunk of 64 calls.
fn pool_reply(body: &[u8]) {
    let Some((&tag, rest)) = body.split_first() else {
        return;
    };
    match tag {
        wire::DONE => {
            let Some(values) = rest.get(8..) else { return };
            let Some(first) = values.get(..8) else { return };
            let first = u64::from_le_bytes(first.try_into().expect("8 bytes"));
            let plain = usize::try_from(first).unwrap_or(usize::MAX).min(64);
            let mut ok: Vec<String> = Vec::new();
            if let Ok(used) = codec::decode_run(&values[8..], plain, |v| ok.push(v)) {
                let mut rest: Vec<Result<u64, wire::TaskFailure>> = Vec::new();
                let _ = codec::decode_run(&values[8 + used..], 64 - plain, |v| rest.push(v));
            }
        }
        wire::FAILED => {
            let _ = String::from_utf8_lossy(rest);
        }
        wire::INIT_FAILED => {
            let _ = codec::decode::<(String, Option<String>)>(rest);
        }
        _ => {}
    }
}

/// Byte streams as a receiver reads them: a pipe end (`recv`, `try_recv`,
/// `recv_bytes`, `recv_bytes_max`) and a pool socket (`InBuf`, as the pool
/// worker reads it, with `Arrivals`), over a
/// socket holding `bytes`. The first byte picks the sequence of calls.
pub fn stream_recv(bytes: &[u8]) {
    let mut input = Input(bytes);
    let ops = input.u8();
    let stream = input.rest();
    // Pipe receives.
    if let Ok(reader) = stream_of(stream) {
        let conn: Connection<String> = reader.into();
        for i in 0..stream.len() / 4 + 2 {
            let op = (ops >> ((i % 4) * 2)) & 3;
            let closed = match op {
                0 => matches!(conn.recv(), Err(crate::RecvError::Closed)),
                1 => matches!(conn.try_recv(), Err(TryRecvError::Closed)),
                2 => match conn.recv_bytes() {
                    Ok(body) => {
                        assert!(body.len() <= stream.len());
                        false
                    }
                    Err(e) => matches!(e, crate::RecvError::Closed),
                },
                _ => match conn.recv_bytes_max(16) {
                    Ok(body) => {
                        assert!(body.len() <= 16);
                        false
                    }
                    Err(e) => matches!(e, crate::RecvError::Closed),
                },
            };
            if closed {
                break;
            }
        }
    }
    // Pool frames.
    if let Ok(reader) = stream_of(stream) {
        // As the pool worker reads: `recvmsg`, each frame taking the
        // descriptors it announces (none come here: a frame announcing some
        // is a broken framing).
        let mut inbuf = wire::InBuf::new();
        let mut arrivals = wire::Arrivals::new();
        let mut taken = 0usize;
        'read: loop {
            match inbuf.recv_with_fds(reader.as_fd(), &mut arrivals) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            loop {
                match inbuf.next_frame() {
                    Ok(Some(frame)) => {
                        taken += 8 + frame.len();
                        assert!(taken <= stream.len(), "InBuf: frames beyond the input");
                        let announced = wire::task_fds(frame);
                        match arrivals.take(frame.len(), announced) {
                            Ok(fds) => assert!(announced == 0 && fds.is_empty()),
                            Err(_) => break 'read,
                        }
                        if let Some(parts) = wire::parse_task(frame) {
                            let _ = codec::decode::<Vec<(u64,)>>(parts.items);
                        }
                        pool_reply(frame);
                    }
                    Ok(None) => break,
                    Err(_) => break 'read,
                }
            }
        }
    }
}

/// A queue whose shared memory a crashed or hostile peer corrupted. A real
/// queue gets a few messages; then `bytes` patch its header (outside the two
/// mutexes) and ring, possibly grow its file, and drive puts, gets and
/// attaches that never wait. Every inconsistency must be a typed error.
pub fn queue_ring(bytes: &[u8]) {
    const HEADER: usize = 4096;
    const MUTEXES: usize = 128;
    let mut input = Input(bytes);
    let maxsize = input.u8() as usize % 4;
    let Ok(queue) = Queue::<Bytes>::with_maxsize(maxsize) else {
        return;
    };
    for i in 0..input.u8() % 4 {
        let _ = queue.try_put(Bytes(vec![i; input.u16() as usize % 1000]));
    }
    let Ok((_, fds)) = handles::encode_with_fds(&queue) else {
        return;
    };
    let [memfd, eventfd] = <[OwnedFd; 2]>::try_from(fds).expect("a queue has two descriptors");
    let Ok(file) = shm::size(memfd.as_fd()) else {
        return;
    };
    let Ok(map) = Mapping::new(memfd.as_fd(), 0, file as usize) else {
        return;
    };
    // Patches: [u16 offset][u8 len][bytes], anywhere past the mutexes.
    for _ in 0..input.u8() % 16 {
        let at = MUTEXES + input.u16() as usize % (file as usize - MUTEXES);
        let len = input.u8() as usize;
        let patch = input.take(len);
        let patch = &patch[..patch.len().min(file as usize - at)];
        map.write(at, patch);
    }
    // A peer may also have grown the file (never shrunk: a mapping past the
    // end of a file faults, which no check can prevent).
    let grow = input.u8();
    if grow > 0 {
        let _ = shm::resize(memfd.as_fd(), file + (HEADER as u64) * u64::from(grow));
    }
    drop(map);
    let attached = handles::decode_with_fds::<Queue<Bytes>>(
        &codec::encode(&(0u32, 1u32)).expect("two indices"),
        vec![memfd, eventfd],
    );
    let queues: Vec<&Queue<Bytes>> = match &attached {
        Ok(other) => vec![&queue, other],
        Err(_) => vec![&queue],
    };
    let mut grown = false;
    for _ in 0..32 {
        let op = input.u8();
        let q = queues[op as usize % queues.len()];
        match op / 2 % 4 {
            0 => match q.try_get() {
                Ok(body) => assert!(body.0.len() <= file as usize * 2),
                Err(TryGetError::Empty | TryGetError::Decode(_) | TryGetError::Io(_)) => {}
                Err(TryGetError::Closed) => unreachable!("nobody closed the queue"),
                // A patched header may say so.
                Err(TryGetError::ShutDown) => {}
            },
            1 => {
                let len = input.u8() as usize;
                let _ = q.try_put(Bytes(input.take(len).to_vec()));
            }
            2 => {
                let _ = (q.qsize(), q.empty(), q.full());
            }
            // One large message per input at most: enough to grow the ring.
            _ if !grown => {
                grown = true;
                let _ = q.try_put(Bytes(vec![0; input.u16() as usize * 8]));
            }
            _ => {}
        }
    }
}
