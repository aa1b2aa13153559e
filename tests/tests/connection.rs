//! `Listener` and `Client` (Python's `multiprocessing.connection`): every
//! address family, the authkey handshake, closing, and hostile peers that
//! cost only their own connection.

use multiproc::{Address, Client, Connection, Error, Listener, Process, Waitable, wait, worker};
use multiproc_tests::open_fds;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(60);
const KEY: &[u8] = b"the shared secret";

fn unique(kind: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "multiproc-test-{kind}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn addresses() -> Vec<String> {
    let path = std::env::temp_dir().join(format!("{}.sock", unique("path")));
    vec![
        path.to_str().unwrap().to_string(),
        format!("@{}", unique("abstract")),
        "127.0.0.1:0".to_string(),
    ]
}

/// Connects from a thread; the result comes back on the channel.
fn connect_in_thread<T: Send + 'static>(
    address: Address,
    key: Option<&'static [u8]>,
) -> mpsc::Receiver<multiproc::Result<Connection<T>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Client::connect(&address, key));
    });
    rx
}

#[test]
fn every_address_family_carries_typed_messages_both_ways_with_and_without_a_key() {
    for address in addresses() {
        for key in [None, Some(KEY)] {
            let listener = Listener::bind(address.as_str(), key).unwrap();
            let client = connect_in_thread::<Vec<String>>(listener.address().clone(), key);
            let server: Connection<Vec<String>> = listener.accept_timeout(BOUND).unwrap();
            let client = client.recv_timeout(BOUND).unwrap().unwrap();
            client.send(&vec!["ping".to_string()]).unwrap();
            assert_eq!(server.recv_timeout(BOUND).unwrap(), ["ping"]);
            server.send(&vec!["pong".into(), "again".into()]).unwrap();
            assert_eq!(client.recv_timeout(BOUND).unwrap(), ["pong", "again"]);
            // Raw bytes too (Python's send_bytes/recv_bytes).
            client.send_bytes(b"raw").unwrap();
            assert_eq!(server.recv_bytes().unwrap(), b"raw");
            drop(client);
            assert!(server.recv_timeout(BOUND).is_err());
        }
    }
}

#[test]
fn address_reports_what_was_bound_and_port_zero_picks_a_port() {
    let tcp = Listener::bind("127.0.0.1:0", None).unwrap();
    let Address::Tcp(addr) = tcp.address() else {
        panic!("{:?}", tcp.address())
    };
    assert_ne!(addr.port(), 0);
    let name = unique("abstract");
    let abs = Listener::bind(format!("@{name}"), None).unwrap();
    assert_eq!(abs.address(), &Address::Abstract(name.into_bytes()));
    let path = std::env::temp_dir().join(format!("{}.sock", unique("path")));
    let unix = Listener::bind(&path, None).unwrap();
    assert_eq!(unix.address(), &Address::Unix(path.clone()));
    // Python's (host, port) form.
    let pair = Listener::bind(("127.0.0.1", 0), None).unwrap();
    assert!(matches!(pair.address(), Address::Tcp(_)));
}

#[test]
fn several_listeners_at_once_and_an_address_in_use_is_a_typed_error() {
    let listeners: Vec<Listener> = addresses()
        .iter()
        .map(|a| Listener::bind(a.as_str(), Some(KEY)).unwrap())
        .collect();
    for l in &listeners {
        let again = Listener::bind(l.address(), Some(KEY));
        match again {
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::AddrInUse => {
                assert!(e.to_string().contains("in use"), "{e}");
            }
            other => panic!("{}: {other:?}", l.address()),
        }
    }
    // Each still works, independently.
    for l in listeners.iter().rev() {
        let c = connect_in_thread::<u32>(l.address().clone(), Some(KEY));
        let s: Connection<u32> = l.accept_timeout(BOUND).unwrap();
        let c = c.recv_timeout(BOUND).unwrap().unwrap();
        c.send(&5).unwrap();
        assert_eq!(s.recv_timeout(BOUND).unwrap(), 5);
    }
}

#[test]
fn a_wrong_key_fails_both_sides_and_the_listener_goes_on_accepting() {
    for address in addresses() {
        let listener = Listener::bind(address.as_str(), Some(KEY)).unwrap();
        let bad = connect_in_thread::<u8>(listener.address().clone(), Some(b"not the key"));
        match listener.accept_timeout::<u8>(BOUND) {
            Err(Error::AuthenticationFailed { reason }) => {
                assert!(reason.contains("wrong"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        match bad.recv_timeout(BOUND).unwrap() {
            Err(Error::AuthenticationFailed { reason }) => {
                assert!(reason.contains("rejected"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // A client without a key against a keyed listener fails too: it
        // reads the challenge as a message.
        let good = connect_in_thread::<u8>(listener.address().clone(), Some(KEY));
        let s: Connection<u8> = listener.accept_timeout(BOUND).unwrap();
        let c = good.recv_timeout(BOUND).unwrap().unwrap();
        s.send(&9).unwrap();
        assert_eq!(c.recv_timeout(BOUND).unwrap(), 9);
    }
}

#[test]
fn a_keyed_client_against_an_open_listener_fails_in_its_handshake_timeout() {
    let listener = Listener::bind("127.0.0.1:0", None).unwrap();
    let address = listener.address().clone();
    let t = std::thread::spawn(move || {
        Client::connect_with_timeout::<u8>(&address, Some(KEY), Duration::from_millis(300))
    });
    let _server: Connection<u8> = listener.accept_timeout(BOUND).unwrap();
    match t.join().unwrap() {
        Err(Error::AuthenticationFailed { reason }) => {
            assert!(reason.contains("within"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_empty_authkey_is_refused_on_both_sides() {
    assert!(matches!(
        Listener::bind("127.0.0.1:0", Some(b"")),
        Err(Error::InvalidArgument(_))
    ));
    let l = Listener::bind("127.0.0.1:0", None).unwrap();
    assert!(matches!(
        Client::connect::<u8>(l.address(), Some(b"")),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn nothing_listening_is_a_typed_error() {
    let gone = Listener::bind("127.0.0.1:0", None).unwrap();
    let address = gone.address().clone();
    drop(gone);
    match Client::connect::<u8>(&address, None) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("{other:?}"),
    }
    let path = std::env::temp_dir().join(format!("{}.sock", unique("none")));
    match Client::connect::<u8>(&path, None) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    match Client::connect::<u8>(format!("@{}", unique("none")), None) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("{other:?}"),
    }
}

#[test]
fn close_removes_the_socket_file_wakes_a_blocked_accept_and_keeps_accepted_connections() {
    let path = std::env::temp_dir().join(format!("{}.sock", unique("close")));
    let listener = std::sync::Arc::new(Listener::bind(&path, Some(KEY)).unwrap());
    let c = connect_in_thread::<u8>(listener.address().clone(), Some(KEY));
    let accepted: Connection<u8> = listener.accept_timeout(BOUND).unwrap();
    let client = c.recv_timeout(BOUND).unwrap().unwrap();

    let (tx, rx) = mpsc::channel();
    let l = listener.clone();
    std::thread::spawn(move || {
        let _ = tx.send(l.accept::<u8>().map(|_| ()));
    });
    std::thread::sleep(Duration::from_millis(50)); // let it block (not a timing assertion)
    listener.close();
    assert!(matches!(
        rx.recv_timeout(BOUND).unwrap(),
        Err(Error::Closed)
    ));
    assert!(!path.exists());
    listener.close(); // a second close does nothing
    assert!(matches!(
        listener.accept_timeout::<u8>(BOUND),
        Err(Error::Closed)
    ));
    client.send(&1).unwrap();
    assert_eq!(accepted.recv_timeout(BOUND).unwrap(), 1);
    // Nothing listens any more.
    assert!(Client::connect::<u8>(&path, Some(KEY)).is_err());

    // Dropping closes too.
    let path = std::env::temp_dir().join(format!("{}.sock", unique("drop")));
    drop(Listener::bind(&path, None).unwrap());
    assert!(!path.exists());
}

#[test]
fn last_accepted_names_the_peer() {
    let l = Listener::bind("127.0.0.1:0", Some(KEY)).unwrap();
    assert_eq!(l.last_accepted(), None);
    let c = connect_in_thread::<u8>(l.address().clone(), Some(KEY));
    let _s: Connection<u8> = l.accept_timeout(BOUND).unwrap();
    let c = c.recv_timeout(BOUND).unwrap().unwrap();
    drop(c);
    match l.last_accepted() {
        Some(Address::Tcp(peer)) => assert!(peer.ip().is_loopback()),
        other => panic!("{other:?}"),
    }
    let u = Listener::bind(format!("@{}", unique("peer")), None).unwrap();
    let _c: Connection<u8> = Client::connect(u.address(), None).unwrap();
    let _s: Connection<u8> = u.accept_timeout(BOUND).unwrap();
    assert_eq!(u.last_accepted(), Some(Address::Unix(Default::default())));
}

#[test]
fn wait_sees_a_listener_with_a_connection_to_accept() {
    let l = Listener::bind("127.0.0.1:0", None).unwrap();
    let objects: [&dyn Waitable; 1] = [&l];
    assert!(wait(&objects, Some(Duration::ZERO)).unwrap().is_empty());
    let _c: Connection<u8> = Client::connect(l.address(), None).unwrap();
    assert_eq!(wait(&objects, Some(BOUND)).unwrap(), [0]);
    let _s: Connection<u8> = l.accept_timeout(BOUND).unwrap();
}

#[worker]
fn serve_one(address: String, key: Vec<u8>) -> u64 {
    let c: Connection<u64> = Client::connect(address.as_str(), Some(&key)).unwrap();
    let n = c.recv().unwrap();
    c.send(&(n * n)).unwrap();
    n
}

#[test]
fn a_child_process_connects_by_address() {
    let name = format!("@{}", unique("child"));
    let l = Listener::bind(name.as_str(), Some(KEY)).unwrap();
    let mut p = Process::new(serve_one, (name, KEY.to_vec()));
    p.start().unwrap();
    let c: Connection<u64> = l.accept_timeout(BOUND).unwrap();
    c.send(&12).unwrap();
    assert_eq!(c.recv_timeout(BOUND).unwrap(), 144);
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
}

// --- Hostile peers ---------------------------------------------------------

/// The frame bytes Python's `send_bytes` writes.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    body
}

fn expect_failure(l: &Listener, needle: &str) {
    match l.accept_timeout::<u8>(BOUND) {
        Err(Error::AuthenticationFailed { reason }) => {
            assert!(reason.contains(needle), "{needle:?} not in {reason:?}")
        }
        other => panic!("expected a failed handshake ({needle}), got {other:?}"),
    }
}

/// After each hostile peer, an honest one is still served.
fn still_serves(l: &Listener) {
    let c = connect_in_thread::<u8>(l.address().clone(), Some(KEY));
    let s: Connection<u8> = l.accept_timeout(BOUND).unwrap();
    let c = c.recv_timeout(BOUND).unwrap().unwrap();
    c.send(&3).unwrap();
    assert_eq!(s.recv_timeout(BOUND).unwrap(), 3);
}

#[test]
fn hostile_handshakes_fail_alone_with_typed_errors() {
    let l = Listener::bind("127.0.0.1:0", Some(KEY))
        .unwrap()
        .with_handshake_timeout(Duration::from_millis(300));
    let Address::Tcp(addr) = l.address().clone() else {
        unreachable!()
    };

    // Garbage instead of an answer (a frame of junk of a legal length).
    let mut g = TcpStream::connect(addr).unwrap();
    g.write_all(&frame(&[0xAB; 100])).unwrap();
    expect_failure(&l, "malformed");
    still_serves(&l);

    // Raw garbage: a header announcing far more than a handshake frame.
    let mut g = TcpStream::connect(addr).unwrap();
    g.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    expect_failure(&l, "announced");
    still_serves(&l);

    // A negative length.
    let mut g = TcpStream::connect(addr).unwrap();
    g.write_all(&(-7i32).to_be_bytes()).unwrap();
    expect_failure(&l, "negative");

    // Python's long form announcing 1 TiB.
    let mut g = TcpStream::connect(addr).unwrap();
    g.write_all(&(-1i32).to_be_bytes()).unwrap();
    g.write_all(&(1u64 << 40).to_be_bytes()).unwrap();
    expect_failure(&l, "announced");

    // Silent: never answers the challenge.
    let _silent = TcpStream::connect(addr).unwrap();
    expect_failure(&l, "within");

    // Stops halfway: reads the challenge, sends half an answer. (The
    // challenge comes when `accept` runs, so the peer plays in a thread.)
    let half = std::thread::spawn(move || {
        let mut half = TcpStream::connect(addr).unwrap();
        let challenge = read_frame(&mut half);
        half.write_all(&frame(&[1; 40])[..20]).unwrap();
        (half, challenge)
    });
    expect_failure(&l, "within");
    let (_half, challenge) = half.join().unwrap();
    assert!(challenge.starts_with(b"#CHALLENGE#{sha256}"));

    // A wrong digest of the right size: told so with Python's #FAILURE#.
    let rogue = std::thread::spawn(move || {
        let mut rogue = TcpStream::connect(addr).unwrap();
        let _ = read_frame(&mut rogue);
        let mut wrong = b"{sha256}".to_vec();
        wrong.extend_from_slice(&[0; 32]);
        rogue.write_all(&frame(&wrong)).unwrap();
        read_frame(&mut rogue)
    });
    expect_failure(&l, "wrong");
    assert_eq!(rogue.join().unwrap(), b"#FAILURE#");

    // Closes in the middle.
    let g = TcpStream::connect(addr).unwrap();
    drop(g);
    expect_failure(&l, "closed");
    still_serves(&l);

    // A Unix peer that does the same is no different.
    let u = Listener::bind(format!("@{}", unique("hostile")), Some(KEY)).unwrap();
    let Address::Abstract(name) = u.address().clone() else {
        unreachable!()
    };
    use std::os::linux::net::SocketAddrExt;
    let a = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let mut g = UnixStream::connect_addr(&a).unwrap();
    g.write_all(&frame(b"#CHALLENGE#abc")).unwrap();
    expect_failure(&u, "malformed");
    still_serves(&u);
}

#[test]
fn a_thousand_silent_connections_cost_only_themselves_and_leave_no_descriptor() {
    let l = Listener::bind("127.0.0.1:0", Some(KEY))
        .unwrap()
        .with_handshake_timeout(Duration::from_secs(10));
    let Address::Tcp(addr) = l.address().clone() else {
        unreachable!()
    };
    let before = open_fds().len();
    // Connected from a thread, so that a kernel backlog smaller than 1,000
    // only makes them wait for `accept` below.
    let silent = std::thread::spawn(move || {
        (0..1000)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect::<Vec<_>>()
    });
    // An honest client behind all of them is served first: accept returns
    // its connection before any silent one's handshake times out.
    let address = l.address().clone();
    let honest = std::thread::spawn(move || {
        let silent = silent.join().unwrap();
        let c = Client::connect::<u8>(address, Some(KEY)).unwrap();
        (silent, c)
    });
    let s: Connection<u8> = l.accept_timeout(BOUND).unwrap();
    let (silent, c) = honest.join().unwrap();
    c.send(&1).unwrap();
    assert_eq!(s.recv_timeout(BOUND).unwrap(), 1);
    drop((s, c));
    // Then each silent one fails alone.
    for _ in 0..1000 {
        expect_failure(&l, "within");
    }
    drop(silent);
    assert!(matches!(
        l.accept_timeout::<u8>(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    let after = open_fds().len();
    assert!(
        after <= before + 2,
        "descriptors grew from {before} to {after}"
    );
    still_serves(&l);
}
