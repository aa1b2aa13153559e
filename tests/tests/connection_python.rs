//! `Listener` and `Client` against CPython's own `multiprocessing.connection`:
//! the handshake and the framing of `send_bytes`/`recv_bytes` are Python's,
//! byte for byte. The `python3` on these machines is 3.11, which speaks the
//! legacy HMAC-MD5 handshake; a hand-written script plays CPython 3.12's
//! `{sha256}` protocol so both are covered.
//!
//! Skipped, saying so, where `python3` is absent.

use multiproc::{Address, Client, Connection, Error, Listener};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);
const KEY: &[u8] = b"the shared secret";

fn unique(kind: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "multiproc-pytest-{kind}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn have_python() -> bool {
    let found = Command::new("python3")
        .arg("-c")
        .arg("import multiprocessing.connection")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: python3 (with multiprocessing) not found on PATH");
    }
    found
}

/// A running Python script: killed if the test fails before it ends.
struct Py {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Py {
    fn run(script: &str, args: &[&str]) -> Py {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 starts");
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Py { child, lines }
    }

    /// The script's next line of output.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(BOUND)
            .expect("the Python script printed a line in time")
    }

    /// Waits (bounded) for the script to end; its exit code.
    fn finish(mut self) -> i32 {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the Python script did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bounded `recv_bytes`: a test never hangs on a silent peer.
trait RecvBounded {
    fn recv_bytes_bounded(&self) -> multiproc::Result<Vec<u8>>;
}

impl RecvBounded for Connection<()> {
    fn recv_bytes_bounded(&self) -> multiproc::Result<Vec<u8>> {
        assert!(self.poll_timeout(BOUND), "a message (or the end) in time");
        Ok(self.recv_bytes()?)
    }
}

/// How Python spells an address of ours: `(host, port)` for TCP, a path,
/// or a name starting with NUL for Linux's abstract namespace.
fn python_address(a: &Address) -> String {
    match a {
        Address::Tcp(s) => format!("('{}', {})", s.ip(), s.port()),
        Address::Unix(p) => format!("{:?}", p.to_str().unwrap()),
        Address::Abstract(name) => format!("'\\0{}'", std::str::from_utf8(name).unwrap()),
        other => panic!("no Python spelling for {other:?}"),
    }
}

const ECHO_CLIENT: &str = r##"
import sys
from multiprocessing.connection import Client
address = eval(sys.argv[1])
key = sys.argv[2].encode()
c = Client(address, authkey=key)
c.send_bytes(b"hello from python")
m = c.recv_bytes()
c.send_bytes(m[::-1])
c.send_bytes(b"")
big = c.recv_bytes()
c.send_bytes(len(big).to_bytes(8, "big") + big[:16])
c.close()
print("done", flush=True)
"##;

#[test]
fn a_python_client_talks_to_our_listener_on_every_address_family() {
    if !have_python() {
        return;
    }
    let path = std::env::temp_dir().join(format!("{}.sock", unique("path")));
    for address in [
        path.to_str().unwrap().to_string(),
        format!("@{}", unique("abstract")),
        "127.0.0.1:0".to_string(),
    ] {
        let l = Listener::bind(address.as_str(), Some(KEY)).unwrap();
        let py = Py::run(
            ECHO_CLIENT,
            &[
                &python_address(l.address()),
                std::str::from_utf8(KEY).unwrap(),
            ],
        );
        serve_echo_client(l.accept_timeout(BOUND).unwrap(), py);
    }
}

/// Our side of `ECHO_CLIENT`'s whole dialogue, to the script's clean exit.
fn serve_echo_client(c: Connection<()>, py: Py) {
    assert_eq!(c.recv_bytes_bounded().unwrap(), b"hello from python");
    c.send_bytes(b"abc from rust").unwrap();
    assert_eq!(c.recv_bytes_bounded().unwrap(), b"tsur morf cba");
    assert_eq!(c.recv_bytes_bounded().unwrap(), b"");
    let big: Vec<u8> = (0..3 << 20).map(|i| (i * 7 % 251) as u8).collect();
    c.send_bytes(&big).unwrap();
    let back = c.recv_bytes_bounded().unwrap();
    assert_eq!(back[..8], (big.len() as u64).to_be_bytes());
    assert_eq!(back[8..], big[..16]);
    assert_eq!(py.line(), "done");
    assert_eq!(py.finish(), 0);
}

const ECHO_LISTENER: &str = r##"
import sys
from multiprocessing.connection import Listener
family = sys.argv[1]
key = sys.argv[2].encode()
if family == "tcp":
    l = Listener(("127.0.0.1", 0), authkey=key)
    print("%s:%d" % l.address, flush=True)
else:
    # An abstract name comes as "@name": a NUL cannot travel in argv.
    where = sys.argv[3]
    if where.startswith("@"):
        where = "\0" + where[1:]
    l = Listener(where, authkey=key)
    print(sys.argv[3], flush=True)
try:
    c = l.accept()
except Exception as e:
    print(type(e).__name__, flush=True)
    sys.exit(3)
m = c.recv_bytes()
c.send_bytes(m.upper())
c.send_bytes(b"")
c.close()
print("served", flush=True)
"##;

#[test]
fn our_client_talks_to_a_python_listener() {
    if !have_python() {
        return;
    }
    let path = std::env::temp_dir().join(format!("{}.sock", unique("pylisten")));
    for (family, where_) in [
        ("tcp", String::new()),
        ("unix", path.to_str().unwrap().to_string()),
        ("unix", format!("@{}", unique("pyabstract"))),
    ] {
        let py = Py::run(
            ECHO_LISTENER,
            &[family, std::str::from_utf8(KEY).unwrap(), &where_],
        );
        let address = py.line();
        let c: Connection<()> = Client::connect(address.as_str(), Some(KEY)).unwrap();
        c.send_bytes(b"shout this").unwrap();
        assert_eq!(c.recv_bytes_bounded().unwrap(), b"SHOUT THIS");
        assert_eq!(c.recv_bytes_bounded().unwrap(), b"");
        assert!(c.recv_bytes_bounded().is_err(), "python closed");
        assert_eq!(py.line(), "served");
        assert_eq!(py.finish(), 0, "{address}");
    }
}

const WRONG_KEY_CLIENT: &str = r##"
import sys
from multiprocessing.connection import Client
from multiprocessing import AuthenticationError
try:
    Client(eval(sys.argv[1]), authkey=b"not the key")
except AuthenticationError as e:
    print("AuthenticationError", flush=True)
    sys.exit(0)
print("connected", flush=True)
sys.exit(1)
"##;

#[test]
fn a_wrong_key_fails_on_both_sides_and_each_listener_goes_on() {
    if !have_python() {
        return;
    }
    // Python's client with the wrong key against our listener.
    let l = Listener::bind("127.0.0.1:0", Some(KEY)).unwrap();
    let py = Py::run(WRONG_KEY_CLIENT, &[&python_address(l.address())]);
    match l.accept_timeout::<()>(BOUND) {
        Err(Error::AuthenticationFailed { .. }) => {}
        other => panic!("expected AuthenticationFailed, got {other:?}"),
    }
    assert_eq!(py.line(), "AuthenticationError");
    assert_eq!(py.finish(), 0);
    // ... and the listener still serves Python's client with the right key.
    let py = Py::run(
        ECHO_CLIENT,
        &[
            &python_address(l.address()),
            std::str::from_utf8(KEY).unwrap(),
        ],
    );
    serve_echo_client(l.accept_timeout(BOUND).unwrap(), py);

    // Our client with the wrong key against Python's listener.
    let py = Py::run(
        ECHO_LISTENER,
        &["tcp", std::str::from_utf8(KEY).unwrap(), ""],
    );
    let address = py.line();
    match Client::connect::<()>(address.as_str(), Some(b"not the key".as_slice())) {
        Err(Error::AuthenticationFailed { .. }) => {}
        other => panic!("expected AuthenticationFailed, got {other:?}"),
    }
    assert_eq!(py.line(), "AuthenticationError");
    assert_eq!(py.finish(), 3);
}

/// CPython 3.12's side of the handshake, written out by hand from
/// `Lib/multiprocessing/connection.py` (3.12): the challenge carries a
/// `{sha256}` prefix and so does the answer. `role` says which side the
/// script plays.
const PY312_BY_HAND: &str = r##"
import hmac, os, socket, struct, sys
role, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()

def send(s, body):
    s.sendall(struct.pack("!i", len(body)) + body)

def recv(s):
    def exact(n):
        b = b""
        while len(b) < n:
            chunk = s.recv(n - len(b))
            if not chunk:
                raise EOFError
            b += chunk
        return b
    (n,) = struct.unpack("!i", exact(4))
    return exact(n)

def deliver(s):
    nonce = b"{sha256}" + os.urandom(40)
    send(s, b"#CHALLENGE#" + nonce)
    answer = recv(s)
    assert answer.startswith(b"{sha256}"), answer
    ok = hmac.compare_digest(answer[8:], hmac.new(key, nonce, "sha256").digest())
    send(s, b"#WELCOME#" if ok else b"#FAILURE#")
    assert ok

def answer(s):
    m = recv(s)
    assert m.startswith(b"#CHALLENGE#{sha256}"), m
    nonce = m[len(b"#CHALLENGE#"):]
    send(s, b"{sha256}" + hmac.new(key, nonce, "sha256").digest())
    assert recv(s) == b"#WELCOME#"

if role == "client":
    s = socket.create_connection(("127.0.0.1", port))
    answer(s)
    deliver(s)
else:
    l = socket.create_server(("127.0.0.1", 0))
    print("127.0.0.1:%d" % l.getsockname()[1], flush=True)
    s, _ = l.accept()
    deliver(s)
    answer(s)
send(s, b"3.12 says hi")
send(s, recv(s) + b"!")
print("ok", flush=True)
"##;

#[test]
fn cpython_312s_sha256_handshake_both_ways() {
    if !have_python() {
        return;
    }
    let key = std::str::from_utf8(KEY).unwrap();
    // The script as a 3.12 client of our listener.
    let l = Listener::bind("127.0.0.1:0", Some(KEY)).unwrap();
    let Address::Tcp(addr) = l.address().clone() else {
        unreachable!()
    };
    let py = Py::run(PY312_BY_HAND, &["client", &addr.port().to_string(), key]);
    let c: Connection<()> = l.accept_timeout(BOUND).unwrap();
    assert_eq!(c.recv_bytes_bounded().unwrap(), b"3.12 says hi");
    c.send_bytes(b"rust").unwrap();
    assert_eq!(c.recv_bytes_bounded().unwrap(), b"rust!");
    assert_eq!(py.line(), "ok");
    assert_eq!(py.finish(), 0);

    // The script as a 3.12 listener our client connects to.
    let py = Py::run(PY312_BY_HAND, &["server", "0", key]);
    let address = py.line();
    let c: Connection<()> = Client::connect(address.as_str(), Some(KEY)).unwrap();
    assert_eq!(c.recv_bytes_bounded().unwrap(), b"3.12 says hi");
    c.send_bytes(b"rust").unwrap();
    assert_eq!(c.recv_bytes_bounded().unwrap(), b"rust!");
    assert_eq!(py.line(), "ok");
    assert_eq!(py.finish(), 0);
}
