//! A hostile environment: the child marker set by a process that is not
//! multiproc, pointing at garbage, at a descriptor that is not ours, or at a
//! socket that speaks almost the right protocol. Every case must end in one
//! clear line on stderr and exit status 2: no panic, no hang, and the
//! program's own `main` never runs.

use multiproc::worker;
use multiproc_tests::{run_bounded_with_stdin, run_self};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(30);

/// A worker a forged header may name.
#[worker]
fn shout(text: String) -> usize {
    println!("{}", text.to_uppercase());
    text.len()
}

/// Asserts the child refused in exactly one `multiproc:` line with status 2
/// and without running `main` (which would print the test list).
fn assert_refused(out: &Output, case: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{case}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{case}: {stderr}");
    assert!(stderr.starts_with("multiproc: "), "{case}: {stderr}");
    assert!(!stderr.contains("panicked"), "{case}: {stderr}");
    assert!(out.stdout.is_empty(), "{case}: main ran");
    stderr
}

/// Runs this test binary as a child whose marker names descriptor 0, which
/// is `stdin`.
fn run_with_marker_on(stdin: Stdio) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("--list")
        .env("MULTIPROC_CHILD", format!("0,{}", std::process::id()))
        .stdin(stdin);
    run_bounded_with_stdin(cmd, BOUND)
}

/// Runs a child whose spawn socket has received `bytes` and then the
/// end of stream.
fn run_with_socket_of(bytes: &[u8]) -> Output {
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    ours.write_all(bytes).unwrap();
    drop(ours);
    run_with_marker_on(Stdio::from(OwnedFd::from(theirs)))
}

// --- A hand-made spawn payload, in postcard's encoding ---

fn varint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn string(s: &str, out: &mut Vec<u8>) {
    varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// The header frame a parent sends first: magic, version, worker, name,
/// path, daemon, parent pid, parent name, descriptor count, then no start
/// hooks, no initializer, no memory note, no log forwarding, and an authkey.
fn header(magic: &[u8; 4], version: u64, worker: &str, fds: u64) -> Vec<u8> {
    let mut body = magic.to_vec();
    varint(version, &mut body);
    string(worker, &mut body);
    string("Process-1", &mut body);
    varint(1, &mut body); // path: [1]
    varint(1, &mut body);
    body.push(0); // not a daemon
    varint(u64::from(std::process::id()), &mut body);
    string("MainProcess", &mut body);
    varint(fds, &mut body);
    varint(0, &mut body); // hooks: []
    body.push(0); // init: None
    varint(0, &mut body); // init_fds
    body.push(0); // memory_note: false
    body.push(0); // logs: None
    varint(4, &mut body); // authkey
    body.extend_from_slice(b"key!");
    frame(&body)
}

const SHOUT: &str = <shout as multiproc::Worker>::ID;

#[test]
fn a_marker_of_garbage_or_a_descriptor_that_is_not_ours_gets_one_clear_line() {
    let me = std::process::id().to_string();
    let cases = [
        "garbage".to_string(),
        String::new(),
        ",".to_string(),
        "3,1".to_string(),        // not our parent
        format!("-1,{me}"),       // no such descriptor
        format!("3,{me}"),        // not open
        format!("0,{me}"),        // /dev/null, not a socket
        format!("99999999,{me}"), // out of range
        format!("2,{me},extra"),  // trailing junk
        format!("1 ,{me}"),       // not a number
        "\u{1F980},\u{1F980}".to_string(),
    ];
    for marker in cases {
        let out = run_self(&["--list"], &[("MULTIPROC_CHILD", &marker)], BOUND);
        assert_refused(&out, &format!("marker {marker:?}"));
    }
}

#[test]
fn a_marker_pointing_at_a_socket_of_garbage_gets_one_clear_line() {
    let garbage: [&[u8]; 5] = [
        b"",                                 // closed at once
        b"\xff\xff\xff\xff\xff\xff\xff\xff", // an absurd frame length
        b"\x05\0\0\0\0\0\0\0abc",            // a truncated frame
        b"\x04\0\0\0\0\0\0\0MPRX",           // a frame that is no header
        b"\x03\0\0",                         // a truncated length
    ];
    for bytes in garbage {
        assert_refused(&run_with_socket_of(bytes), &format!("{bytes:?}"));
    }
}

#[test]
fn a_marker_pointing_at_a_listening_socket_gets_one_clear_line() {
    let dir = std::env::temp_dir().join(format!("multiproc-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let listener = UnixListener::bind(dir.join("sock")).unwrap();
    let out = run_with_marker_on(Stdio::from(OwnedFd::from(listener)));
    assert_refused(&out, "listening socket");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_forged_header_of_another_magic_or_version_is_refused() {
    for (magic, version) in [(b"MPRX", 3), (b"MPRC", 2), (b"MPRC", 4), (b"MPRC", 0)] {
        let mut bytes = header(magic, version, SHOUT, 0);
        bytes.extend(frame(b"\x02hi"));
        let stderr = assert_refused(&run_with_socket_of(&bytes), "forged header");
        assert!(stderr.contains("not a multiproc spawn header"), "{stderr}");
    }
}

#[test]
fn a_header_naming_a_worker_the_binary_lacks_names_it() {
    let mut bytes = header(b"MPRC", 3, "nowhere::to_be_found", 0);
    bytes.extend(frame(b""));
    let stderr = assert_refused(&run_with_socket_of(&bytes), "unknown worker");
    assert!(stderr.contains("`nowhere::to_be_found`"), "{stderr}");
    assert!(stderr.contains("not in this binary"), "{stderr}");
}

#[test]
fn a_header_announcing_descriptors_that_never_come_is_refused() {
    let mut bytes = header(b"MPRC", 3, SHOUT, 3);
    bytes.extend(frame(b"\x02hi"));
    let stderr = assert_refused(&run_with_socket_of(&bytes), "missing descriptors");
    assert!(stderr.contains("descriptors"), "{stderr}");
}

#[test]
fn arguments_that_do_not_decode_are_a_clear_error_naming_the_worker() {
    let cases: [&[u8]; 3] = [
        b"",             // nothing at all
        b"\x09short",    // a string shorter than its length
        b"\x02\xff\xfe", // not UTF-8
    ];
    for args in cases {
        let mut bytes = header(b"MPRC", 3, SHOUT, 0);
        bytes.extend(frame(args));
        let stderr = assert_refused(&run_with_socket_of(&bytes), &format!("args {args:?}"));
        assert!(stderr.contains(SHOUT), "{stderr}");
    }
}

#[test]
fn an_argument_frame_that_never_ends_is_refused() {
    let mut bytes = header(b"MPRC", 3, SHOUT, 0);
    bytes.extend_from_slice(&1000u64.to_le_bytes());
    bytes.extend_from_slice(b"\x02hi");
    assert_refused(&run_with_socket_of(&bytes), "truncated arguments");
}

#[test]
fn a_well_formed_forged_payload_runs_the_worker() {
    // The control for the cases above: the same hand-made bytes, correct,
    // are enough to run a worker (its main never runs; it exits 0).
    let mut bytes = header(b"MPRC", 3, SHOUT, 0);
    bytes.extend(frame(b"\x02hi"));
    let out = run_with_socket_of(&bytes);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HI\n");
}
