//! Bounded property runs of the parsers that read bytes from another
//! process: the same `multiproc::__fuzz` entry points the `fuzz/` targets
//! drive (so CI exercises them on every `cargo test`), and round-trip
//! properties of the codec and the frame layer.
//!
//! Every case must return (no panic, no hang), and no single allocation on
//! a test's thread may exceed [`ALLOC_LIMIT`] (a counting allocator records
//! the largest per thread): inputs are at most a few KiB, so only a parser
//! that trusts an announced length could come near it.

use multiproc::__fuzz as fuzz;
use multiproc::{CodecError, Connection, RecvError};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

/// The largest single allocation allowed while these properties run: the
/// pipe's largest read step (1 MiB) with room to spare, far below the
/// lengths (up to 4 GiB) that random headers announce.
const ALLOC_LIMIT: usize = 8 << 20;

thread_local! {
    /// The largest allocation this thread made (a plain `Cell`: no
    /// destructor, no allocation of its own).
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: nothing to record once the thread is being torn down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

/// The system allocator, recording the largest request per thread.
struct Counting;

// SAFETY: every call forwards to `System` with the caller's own arguments,
// so `System`'s guarantees hold; recording the size touches no memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: as in `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn assert_allocations_bounded() {
    let largest = LARGEST.with(Cell::get);
    assert!(
        largest <= ALLOC_LIMIT,
        "an allocation of {largest} bytes (limit {ALLOC_LIMIT})"
    );
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures are reported with the shrunk input; nothing is persisted.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A frame of the start-up protocol (`codec`): an 8-byte little-endian
/// length, then the body.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// A frame on a pipe or connection, Python's: a 4-byte big-endian length.
fn pipe_frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Random bytes, and bytes that look like frames (headers with small and
/// huge lengths, bodies cut short), which random bytes alone rarely are.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    let header_len = prop_oneof![
        0u64..64,
        Just(u64::MAX),
        Just(fuzz::MAX_FRAME),
        Just(fuzz::MAX_FRAME + 1),
        Just(fuzz::SMALL_LIMIT + 1),
        any::<u64>(),
    ];
    let framed = prop::collection::vec(
        (header_len, prop::collection::vec(any::<u8>(), 0..64)),
        0..6,
    )
    .prop_map(|parts| {
        let mut out = Vec::new();
        for (len, body) in parts {
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&body);
        }
        out
    });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..512), framed]
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn frames_never_panic(bytes in wire_bytes()) {
        fuzz::frames(&bytes);
        assert_allocations_bounded();
    }

    #[test]
    fn message_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        fuzz::decode_as(&bytes);
        assert_allocations_bounded();
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn streams_never_panic(op in any::<u8>(), bytes in wire_bytes()) {
        let mut input = vec![op];
        input.extend_from_slice(&bytes);
        fuzz::stream_recv(&input);
        assert_allocations_bounded();
    }

    #[test]
    fn spawn_payloads_never_panic(bytes in wire_bytes(), header in spawn_header()) {
        fuzz::spawn_payload(&bytes);
        // A real-looking header frame, then the random bytes.
        let mut input = frame(&header);
        input.extend_from_slice(&bytes);
        fuzz::spawn_payload(&input);
        assert_allocations_bounded();
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn handle_tables_never_panic(
        nfds in 0u8..8,
        bytes in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        fuzz::handle_table(&bytes, nfds);
        assert_allocations_bounded();
    }

    #[test]
    fn corrupt_queue_rings_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzz::queue_ring(&bytes);
        assert_allocations_bounded();
    }
}

/// The postcard encoding of a child's spawn header (field order of
/// `child::SpawnHeader`) announcing `fds` descriptors.
fn header_bytes(fds: u32, daemon: bool) -> Vec<u8> {
    let mut out = b"MPRC".to_vec();
    out.extend_from_slice(&[1, 1, b'w', 1, b'n', 1, 1, daemon as u8, 5, 1, b'p']);
    // A u32 varint.
    let mut n = fds;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out
}

fn spawn_header() -> impl Strategy<Value = Vec<u8>> {
    (any::<u32>(), any::<bool>()).prop_map(|(fds, daemon)| header_bytes(fds, daemon))
}

/// A spawn header announcing more descriptors than the stream carries (a
/// garbage byte stands where each would be) is refused, whatever the count,
/// without reserving room for the count first.
#[test]
fn a_spawn_header_announcing_many_descriptors_is_refused() {
    for fds in [1u32, 2, 253, 254, 1 << 20, u32::MAX] {
        let mut input = frame(&header_bytes(fds, false));
        input.extend_from_slice(b"FFFF");
        input.extend_from_slice(&frame(&[0]));
        fuzz::spawn_payload(&input);
    }
    assert_allocations_bounded();
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Unit,
    Newtype(i32),
    Tuple(u8, String, Option<i16>),
    Struct { id: u128, tags: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    name: String,
    score: f64,
    when: (i64, u32),
    flags: [bool; 3],
    shapes: Vec<Shape>,
    attrs: BTreeMap<String, Vec<u16>>,
    index: HashMap<u8, Option<u64>>,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
    ch: char,
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Unit),
        any::<i32>().prop_map(Shape::Newtype),
        (any::<u8>(), ".{0,8}", any::<Option<i16>>()).prop_map(|(a, b, c)| Shape::Tuple(a, b, c)),
        (any::<u128>(), prop::collection::vec(".{0,6}", 0..4))
            .prop_map(|(id, tags)| Shape::Struct { id, tags }),
    ]
}

fn records() -> impl Strategy<Value = Record> {
    (
        ".{0,16}",
        any::<f64>().prop_filter("NaN is not equal to itself", |f| !f.is_nan()),
        any::<(i64, u32)>(),
        any::<[bool; 3]>(),
        prop::collection::vec(shape(), 0..4),
        prop::collection::btree_map(".{0,6}", prop::collection::vec(any::<u16>(), 0..4), 0..4),
        prop::collection::hash_map(any::<u8>(), any::<Option<u64>>(), 0..4),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<char>(),
    )
        .prop_map(
            |(name, score, when, flags, shapes, attrs, index, payload, ch)| Record {
                name,
                score,
                when,
                flags,
                shapes,
                attrs,
                index,
                payload,
                ch,
            },
        )
}

/// A reader that hands out its bytes in the pieces given (one per read).
struct Pieces {
    bytes: Vec<u8>,
    cuts: Vec<usize>,
    at: usize,
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let next = self
            .cuts
            .iter()
            .copied()
            .find(|&c| c > self.at)
            .unwrap_or(self.bytes.len());
        let n = (next - self.at).min(buf.len());
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// Encoding then decoding gives the value back; the encoding with
    /// anything appended, or cut anywhere, is a typed error, never a panic.
    #[test]
    fn values_round_trip(value in records(), extra in 1u8..=255, cut in any::<prop::sample::Index>()) {
        let bytes = fuzz::encode(&value).unwrap();
        prop_assert_eq!(fuzz::decode::<Record>(&bytes).unwrap(), value);
        let mut longer = bytes.clone();
        longer.push(extra);
        let trailing = matches!(fuzz::decode::<Record>(&longer), Err(CodecError::Corrupt { .. }));
        prop_assert!(trailing);
        let short = &bytes[..cut.index(bytes.len())];
        let truncated = matches!(fuzz::decode::<Record>(short), Err(CodecError::Corrupt { .. }));
        prop_assert!(truncated);
    }

    /// Frames read back whole however the stream is cut into reads, and
    /// `split_frames` over any prefix then the rest finds the same frames.
    #[test]
    fn frames_reassemble_across_any_split(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let wire: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        cuts.sort_unstable();
        let mut reader = Pieces { bytes: wire.clone(), cuts: cuts.clone(), at: 0 };
        let mut got = Vec::new();
        while let Some(body) = fuzz::read_frame(&mut reader, fuzz::SMALL_LIMIT).unwrap() {
            got.push(body);
        }
        prop_assert_eq!(&got, &bodies);

        let split = cuts.first().copied().unwrap_or(0);
        let (first, used) = fuzz::split_frames(&wire[..split], fuzz::SMALL_LIMIT).unwrap();
        prop_assert!(used <= split);
        let mut all: Vec<Vec<u8>> = first.iter().map(|f| f.to_vec()).collect();
        let (rest, rest_used) = fuzz::split_frames(&wire[used..], fuzz::SMALL_LIMIT).unwrap();
        all.extend(rest.iter().map(|f| f.to_vec()));
        prop_assert_eq!(used + rest_used, wire.len());
        prop_assert_eq!(all, bodies);
    }

    /// A frame cut anywhere after its first byte is `Truncated`, over a
    /// reader and over a pipe end (cut before its first byte, the stream
    /// simply ends).
    #[test]
    fn a_truncated_frame_is_a_typed_error(
        body in prop::collection::vec(any::<u8>(), 0..300),
        cut in any::<prop::sample::Index>(),
    ) {
        let wire = frame(&body);
        let cut = cut.index(wire.len());
        let short = &wire[..cut];
        match fuzz::read_frame(short, fuzz::SMALL_LIMIT) {
            Ok(None) => prop_assert_eq!(cut, 0),
            Err(CodecError::Truncated { expected, got }) => {
                prop_assert!(cut > 0 && got < expected);
            }
            other => prop_assert!(false, "cut at {}: {:?}", cut, other),
        }
        let wire = pipe_frame(&body);
        let short = &wire[..cut.min(wire.len() - 1)];
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(short).unwrap();
        drop(a);
        let conn: Connection<Vec<u8>> = b.into();
        match conn.recv_bytes() {
            Err(RecvError::Closed) => prop_assert_eq!(cut, 0),
            Err(RecvError::Decode(CodecError::Truncated { .. })) => prop_assert!(cut > 0),
            other => prop_assert!(false, "cut at {}: {:?}", cut, other),
        }
        assert_allocations_bounded();
    }

    /// Values sent down a pipe in arbitrary write pieces arrive whole.
    #[test]
    fn pipe_messages_reassemble_across_any_split(
        values in prop::collection::vec(records(), 1..4),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let wire: Vec<u8> = values
            .iter()
            .flat_map(|v| pipe_frame(&fuzz::encode(v).unwrap()))
            .collect();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();
        let (a, b) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            let mut at = 0;
            for cut in cuts {
                (&a).write_all(&wire[at..cut]).unwrap();
                at = cut;
            }
        });
        let conn: Connection<Record> = b.into();
        for value in &values {
            prop_assert_eq!(&conn.recv().unwrap(), value);
        }
        writer.join().unwrap();
        prop_assert!(matches!(conn.recv(), Err(RecvError::Closed)));
    }
}

/// A memfd of `size` bytes holding `patches` (offset, little-endian u64).
fn memfd_with(size: u64, patches: &[(usize, u64)]) -> std::os::fd::OwnedFd {
    let fd =
        nix::sys::memfd::memfd_create(c"decode-props", nix::sys::memfd::MFdFlags::empty()).unwrap();
    nix::unistd::ftruncate(&fd, size as i64).unwrap();
    for &(at, value) in patches {
        nix::sys::uio::pwrite(&fd, &value.to_le_bytes(), at as i64).unwrap();
    }
    fd
}

/// A shared array's header claiming more elements than its file holds is
/// refused, even when the claimed size overflows `usize`.
///
/// Found while writing the `handle_table` target: `shared::Block::from_fd`
/// compared `len.checked_mul(size)...checked_add(DATA) > Some(file)`, and an
/// overflow (`None`) compares less, so the check passed; the array then
/// panicked on first use (`to_vec`: capacity overflow; `lock`: "array size
/// overflows"). Fixed with `.is_none_or(|bytes| bytes > file)`.
#[test]
fn a_shared_array_longer_than_its_file_is_refused() {
    const MAGIC: u64 = u64::from_le_bytes(*b"MPSHARE1");
    let index = fuzz::encode(&0u32).unwrap();
    for len in [1u64 << 61, (1 << 61) + 1, u64::MAX / 4, 100] {
        let fd = memfd_with(256, &[(64, len), (72, MAGIC), (80, 8)]);
        if let Ok(array) = fuzz::decode_with_fds::<multiproc::RawArray<u64>>(&index, vec![fd]) {
            let bytes = (array.len() as u128) * 8;
            assert!(
                bytes <= 256 - 128,
                "len {len}: an array of {} u64 in 256 bytes",
                array.len()
            );
        }
    }
}

/// A `queue_ring` input: no messages put, then `patches` (header offset,
/// little-endian u64) written over a fresh queue's header, then `ops`.
fn queue_ring_input(patches: &[(usize, u64)], ops: &[u8]) -> Vec<u8> {
    // maxsize 0, no puts, the patches (offsets count from byte 128).
    let mut input = vec![0, 0, patches.len() as u8];
    for &(at, value) in patches {
        input.extend_from_slice(&((at - 128) as u16).to_le_bytes());
        input.push(8);
        input.extend_from_slice(&value.to_le_bytes());
    }
    input.push(0); // the file is not grown
    input.extend_from_slice(ops);
    input
}

/// Fuzz finding (queue_ring, about 25 s in): a header claiming a capacity
/// of 1 or 2 and one message made `try_get` read the 8-byte length prefix
/// out of a 1-byte ring ("shared-memory access out of bounds: 0+7 of 1").
/// Every capacity below the ring's initial one (none is ever made) is
/// corrupt: an error, not a panic, for gets and puts alike.
#[test]
fn a_queue_ring_claiming_a_tiny_capacity_is_an_error() {
    const CAPACITY: usize = 144;
    const PUTS: usize = 200;
    // try_get on each handle, a small try_put on each, then try_get again.
    let ops = [0, 1, 2, 0, 3, 0, 0, 1];
    for capacity in [1, 2, 4, 8, 16, 4096, 128 << 10] {
        for puts in [1, 2] {
            let input = queue_ring_input(&[(CAPACITY, capacity), (PUTS, puts)], &ops);
            fuzz::queue_ring(&input);
        }
        fuzz::queue_ring(&queue_ring_input(&[(CAPACITY, capacity)], &ops));
    }
    assert_allocations_bounded();
}
