//! Unit tests of the pipe's framing and receive state.

use super::frame::{LONG, SHORT, frame_header};
use super::recv::INITIAL_BUF;
use super::*;
use crate::codec::{self, CodecError, MAX_FRAME};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn raw_pair<T>() -> (Connection<T>, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    (a.into(), b)
}

#[test]
fn a_timeout_mid_frame_loses_nothing() {
    let (conn, mut raw) = raw_pair::<String>();
    let body = codec::encode(&"hello".to_string()).unwrap();
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    for split in [3, 4, 8] {
        raw.write_all(&frame[..split]).unwrap();
        let r = conn.recv_timeout(Duration::from_millis(5));
        assert!(matches!(r, Err(RecvTimeoutError::Timeout)), "split {split}");
        assert!(!conn.poll());
        raw.write_all(&frame[split..]).unwrap();
        assert_eq!(conn.recv_timeout(Duration::from_secs(5)).unwrap(), "hello");
    }
}

#[test]
fn buffer_grows_with_data_not_with_the_header() {
    let (conn, mut raw) = raw_pair::<Vec<u8>>();
    // Announce 4 GiB (Python's long form), send 10 bytes: the buffer
    // stays small.
    raw.write_all(&(-1i32).to_be_bytes()).unwrap();
    raw.write_all(&MAX_FRAME.to_be_bytes()).unwrap();
    raw.write_all(&[0; 10]).unwrap();
    assert!(conn.recv_timeout(Duration::from_millis(20)).is_err());
    assert!(conn.inner.recv.lock().unwrap().body.capacity() <= INITIAL_BUF);
    drop(raw);
    match conn.recv() {
        Err(RecvError::Decode(CodecError::Truncated { expected, got })) => {
            assert_eq!((expected, got), (MAX_FRAME, 10));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(conn.recv(), Err(RecvError::Closed)));
}

#[test]
fn frames_are_pythons_on_the_wire() {
    use std::io::Read;
    let (conn, mut raw) = raw_pair::<String>();
    conn.send_bytes(b"abc").unwrap();
    conn.send_bytes(b"").unwrap();
    conn.send(&"hi".to_string()).unwrap();
    let mut wire = [0u8; 4 + 3 + 4 + 4 + 3];
    raw.read_exact(&mut wire).unwrap();
    assert_eq!(
        wire,
        [
            0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0, 0, 0, 0, 3, 2, b'h', b'i'
        ]
    );
    // Python's reader accepts the long form for any length; so do we.
    raw.write_all(&(-1i32).to_be_bytes()).unwrap();
    raw.write_all(&3u64.to_be_bytes()).unwrap();
    raw.write_all(&[2, b'o', b'k']).unwrap();
    raw.write_all(&[0, 0, 0, 1, b'x']).unwrap();
    assert_eq!(conn.recv_timeout(Duration::from_secs(5)).unwrap(), "ok");
    assert_eq!(conn.recv_bytes().unwrap(), b"x");
}

#[test]
fn the_long_header_is_written_only_past_i32_max() {
    assert_eq!(frame_header(0).1, SHORT);
    assert_eq!(frame_header(i32::MAX as u64).1, SHORT);
    assert_eq!(
        &frame_header(i32::MAX as u64).0[..SHORT],
        &[0x7f, 0xff, 0xff, 0xff]
    );
    let (header, size) = frame_header(i32::MAX as u64 + 1);
    assert_eq!(size, LONG);
    assert_eq!(header, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0]);
}

#[test]
fn a_negative_length_is_a_typed_error_every_time() {
    let (conn, mut raw) = raw_pair::<Vec<u8>>();
    raw.write_all(&(-2i32).to_be_bytes()).unwrap();
    for _ in 0..2 {
        match conn.recv_timeout(Duration::from_secs(5)) {
            Err(RecvTimeoutError::Decode(CodecError::Corrupt { reason, .. })) => {
                assert!(reason.contains("negative length, -2"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(conn.poll());
    assert!(matches!(
        conn.recv_bytes(),
        Err(RecvError::Decode(CodecError::Corrupt { .. }))
    ));
}

#[test]
fn big_frames_take_the_direct_path_and_small_ones_follow() {
    let (a, b) = Pipe::<()>::new().unwrap();
    let big = vec![7u8; 3 << 20];
    std::thread::scope(|s| {
        s.spawn(|| {
            a.send_bytes(&big).unwrap();
            a.send_bytes(b"after").unwrap();
        });
        assert_eq!(b.recv_bytes().unwrap(), big);
        assert_eq!(b.recv_bytes().unwrap(), b"after");
    });
}

#[test]
fn refused_frames_are_dropped_as_they_arrive() {
    let (a, b) = Pipe::<()>::new().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            a.send_bytes(&vec![1u8; 5 << 20]).unwrap();
            a.send_bytes(b"next").unwrap();
        });
        let r = b.recv_bytes_max(1024);
        assert!(matches!(
            r,
            Err(RecvError::Decode(CodecError::Oversized { len, limit: 1024 })) if len == 5 << 20
        ));
        assert_eq!(b.recv_bytes_max(1024).unwrap(), b"next");
        assert!(b.inner.recv.lock().unwrap().body.capacity() <= 2 * INITIAL_BUF);
    });
}
