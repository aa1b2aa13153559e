//! Connections against CPython's own `multiprocessing.connection`: the
//! frames of `send_bytes`/`recv_bytes` (and of a typed message, whose body
//! is its postcard encoding) are Python's, byte for byte, both ways. Skipped
//! with a line on stderr when `python3` is not installed.

use multiproc::{Address, Client, Connection, Listener};
use multiproc_tests::run_bounded;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);

/// `python3`, if it is there and has `multiprocessing`.
fn python() -> Option<Command> {
    let found = Command::new("python3")
        .args(["-c", "import multiprocessing.connection"])
        .output();
    match found {
        Ok(out) if out.status.success() => Some(Command::new("python3")),
        Ok(out) => {
            eprintln!(
                "skipped: python3 cannot import multiprocessing.connection: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("skipped: python3 not found ({e})");
            None
        }
    }
}

fn unique(kind: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "multiproc-python-{kind}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `script` with `args` in a thread, bounded (killed after [`BOUND`]).
fn run_python(mut python: Command, script: &str, args: &[&str]) -> JoinHandle<Output> {
    python.arg("-c").arg(script).args(args);
    std::thread::spawn(move || run_bounded(python, BOUND))
}

fn check_exit(python: JoinHandle<Output>) {
    let out = python.join().expect("the python thread");
    assert!(
        out.status.success(),
        "python failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The 1 MiB message each side sends: a pattern, so a shifted or cut byte
/// shows.
fn mib() -> Vec<u8> {
    (0..1 << 20).map(|i: u32| (i % 251) as u8).collect()
}

/// The postcard encoding of a `String`: its length as a varint, then UTF-8.
fn postcard_string(s: &str) -> Vec<u8> {
    assert!(s.len() < 128);
    let mut out = vec![s.len() as u8];
    out.extend_from_slice(s.as_bytes());
    out
}

/// Python as a client of our listener: it receives three messages, checks
/// them, echoes them, then sends its own.
const CLIENT: &str = r#"
import sys
from multiprocessing.connection import Client
c = Client('\0' + sys.argv[1], family='AF_UNIX')
mib = bytes(i % 251 for i in range(1 << 20))
empty = c.recv_bytes()
assert empty == b'', empty
big = c.recv_bytes()
assert big == mib, (len(big), big[:16])
typed = c.recv_bytes()
assert typed == bytes.fromhex(sys.argv[2]), typed
c.send_bytes(empty)
c.send_bytes(big)
c.send_bytes(typed)
c.send_bytes(b'\x0bfrom python')  # postcard: a String of 11 bytes
assert c.recv_bytes() == b'done'
c.close()
"#;

#[test]
fn python_client_and_our_listener_exchange_bytes_and_typed_messages() {
    let Some(python) = python() else { return };
    let name = unique("client");
    let listener = Listener::bind(format!("@{name}"), None).unwrap();
    assert_eq!(listener.address(), &Address::Abstract(name.clone().into()));
    let typed = postcard_string("hello, python");
    let hex: String = typed.iter().map(|b| format!("{b:02x}")).collect();
    let py = run_python(python, CLIENT, &[&name, &hex]);
    let conn: Connection<String> = listener.accept_timeout(BOUND).unwrap();

    conn.send_bytes(b"").unwrap();
    conn.send_bytes(&mib()).unwrap();
    conn.send(&"hello, python".to_string()).unwrap();
    // Python checked them and sends them back as it received them.
    assert_eq!(conn.recv_bytes().unwrap(), b"");
    assert!(
        conn.recv_bytes().unwrap() == mib(),
        "the 1 MiB echo differs"
    );
    assert_eq!(conn.recv_bytes().unwrap(), typed);
    assert_eq!(conn.recv_timeout(BOUND).unwrap(), "from python");
    conn.send_bytes(b"done").unwrap();
    check_exit(py);
    assert!(conn.recv_timeout(BOUND).is_err(), "python closed its end");
}

/// Python as the listener, with an authkey: our client answers its
/// challenge (3.11's HMAC-MD5 form, 3.12's `{sha256}`), then the same
/// exchange the other way round.
const LISTENER: &str = r#"
import sys
from multiprocessing.connection import Listener
with Listener('\0' + sys.argv[1], family='AF_UNIX', authkey=b'py secret') as l:
    print('listening', flush=True)
    c = l.accept()
    mib = bytes(i % 251 for i in range(1 << 20))
    c.send_bytes(b'')
    c.send_bytes(mib)
    c.send_bytes(b'\x03abc')
    got = [c.recv_bytes() for _ in range(3)]
    assert got[0] == b'', got[0]
    assert got[1] == mib, len(got[1])
    assert got[2] == bytes.fromhex(sys.argv[2]), got[2]
    c.send_bytes(b'done')
    c.close()
"#;

#[test]
fn our_client_and_a_python_listener_with_an_authkey() {
    let Some(python) = python() else { return };
    let name = unique("listener");
    let typed = postcard_string("to python");
    let hex: String = typed.iter().map(|b| format!("{b:02x}")).collect();
    let py = run_python(python, LISTENER, &[&name, &hex]);
    // Python binds when it has started: try until it has, within the bound.
    let started = Instant::now();
    let conn: Connection<String> = loop {
        match Client::connect(format!("@{name}"), Some(b"py secret".as_slice())) {
            Ok(conn) => break conn,
            Err(e) if started.elapsed() < BOUND && !py.is_finished() => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                let out = py.join().expect("the python thread");
                panic!(
                    "could not connect to python: {e}; python: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    };
    assert_eq!(conn.recv_bytes().unwrap(), b"");
    assert!(
        conn.recv_bytes().unwrap() == mib(),
        "the 1 MiB message differs"
    );
    assert_eq!(conn.recv_timeout(BOUND).unwrap(), "abc");
    conn.send_bytes(b"").unwrap();
    conn.send_bytes(&mib()).unwrap();
    conn.send(&"to python".to_string()).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"done");
    check_exit(py);
}
