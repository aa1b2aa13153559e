//! Handles over a live connection (issue 14, item 5): `send_handle` /
//! `recv_handle` (Python's `reduction.send_handle`/`recv_handle`, byte for
//! byte), and multiproc handles (`Queue`, `Lock`, `Value`, a `Pipe` end)
//! inside messages sent after the child started. Only Unix sockets carry
//! descriptors: over TCP both are a typed error and nothing is lost.

use multiproc::{
    Client, Connection, Listener, Lock, Pipe, PipeReader, PipeWriter, Queue, RecvError, SendError,
    Value, worker,
};
use multiproc_tests::python::Python;
use multiproc_tests::{join, start};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(60);
const KEY: &[u8] = b"handles over a live connection";

/// An open file with `text` in it, already unlinked.
fn file_with(text: &[u8]) -> std::fs::File {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("mp-handles-{}-{n}", std::process::id()));
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    file.write_all(text).unwrap();
    file
}

/// Takes descriptors from `conn` until it closes; reads each as a file
/// from its start and answers with what it holds.
#[worker]
fn read_files(conn: Connection<String>) -> usize {
    let mut n = 0;
    loop {
        match conn.recv_handle() {
            Ok(fd) => {
                let mut file = std::fs::File::from(fd);
                file.rewind().unwrap();
                let mut text = String::new();
                file.read_to_string(&mut text).unwrap();
                conn.send(&text).unwrap();
                n += 1;
            }
            Err(RecvError::Closed) => return n,
            Err(e) => panic!("child: {e}"),
        }
    }
}

#[test]
fn send_handle_gives_a_started_child_an_open_file() {
    let (here, there) = Pipe::<String>::new().unwrap();
    let p = start(read_files, (there,));
    for text in ["first file", "second file"] {
        let file = file_with(text.as_bytes());
        here.send_handle(file.as_fd()).unwrap();
        assert!(here.poll_timeout(BOUND));
        assert_eq!(here.recv().unwrap(), text);
    }
    drop(here);
    assert_eq!(join(&p), 0);
    assert_eq!(p.result().unwrap(), 2);
}

/// What a started child is handed, in one message, after its start.
#[derive(Serialize, Deserialize)]
struct Kit {
    jobs: Queue<u64>,
    lock: Lock,
    total: Value<u64>,
    report: PipeWriter<String>,
}

/// Waits for kits; for each, takes the jobs, adds them to `total` under
/// `lock`, and reports on the kit's own pipe.
#[worker]
fn use_kits(kits: PipeReader<Option<Kit>>) -> u32 {
    let mut used = 0;
    while let Some(kit) = kits.recv().unwrap() {
        let mut sum = 0;
        while let Ok(job) = kit.jobs.get_timeout(Duration::from_millis(100)) {
            sum += job;
        }
        {
            let _held = kit.lock.acquire().unwrap();
            *kit.total.lock().unwrap() += sum;
        }
        kit.report.send(&format!("summed {sum}")).unwrap();
        used += 1;
    }
    used
}

#[test]
fn handles_inside_messages_reach_a_started_child_and_work_there() {
    let (kits_rx, kits_tx) = Pipe::<Option<Kit>>::one_way().unwrap();
    let p = start(use_kits, (kits_rx,));
    for round in 1..=3u64 {
        let jobs = Queue::new().unwrap();
        for j in 0..10 {
            jobs.put(j * round).unwrap();
        }
        let total = Value::new(0u64).unwrap();
        let (report_rx, report_tx) = Pipe::<String>::one_way().unwrap();
        let kit = Kit {
            jobs,
            lock: Lock::new().unwrap(),
            total: total.clone(),
            report: report_tx,
        };
        kits_tx.send(&Some(kit)).unwrap();
        assert!(report_rx.poll_timeout(BOUND), "the child reported");
        assert_eq!(report_rx.recv().unwrap(), format!("summed {}", 45 * round));
        assert_eq!(*total.lock().unwrap(), 45 * round);
    }
    kits_tx.send(&None).unwrap();
    assert_eq!(join(&p), 0);
    assert_eq!(p.result().unwrap(), 3);
}

/// Sends and receives 50 messages of three queues each, dropping them;
/// the descriptors open before and after (in a child of its own, so no
/// other test's descriptors are counted).
#[worker]
fn count_fds_around_handle_messages() -> (usize, usize) {
    let (rx, tx) = Pipe::<Vec<Queue<u8>>>::new().unwrap();
    let before = multiproc_tests::open_fds().len();
    for _ in 0..50 {
        let queues: Vec<Queue<u8>> = (0..3).map(|_| Queue::new().unwrap()).collect();
        queues[1].put(7).unwrap();
        tx.send(&queues).unwrap();
        drop(queues);
        let got = rx.recv_timeout(BOUND).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].get_timeout(BOUND).unwrap(), 7);
    }
    (before, multiproc_tests::open_fds().len())
}

/// A received handle's descriptors belong to it alone: dropping what was
/// received closes them, and the table of a process that received many
/// messages with handles does not grow.
#[test]
fn received_handles_hold_their_descriptors_and_no_more() {
    let p = start(count_fds_around_handle_messages, ());
    assert_eq!(join(&p), 0);
    let (before, after) = p.result().unwrap();
    assert_eq!(before, after);
}

/// More descriptors than one message carries: an encode error, nothing
/// sent, and the connection goes on.
#[test]
fn too_many_handles_for_one_message_is_an_error_and_sends_nothing() {
    let (rx, tx) = Pipe::<Vec<PipeWriter<u8>>>::new().unwrap();
    let ends: Vec<(PipeReader<u8>, PipeWriter<u8>)> =
        (0..254).map(|_| Pipe::one_way().unwrap()).collect();
    let writers: Vec<PipeWriter<u8>> = ends.iter().map(|(_, w)| w.clone()).collect();
    match tx.send(&writers) {
        Err(SendError::Encode(e)) => assert!(e.to_string().contains("at most 253"), "{e}"),
        other => panic!("expected an encode error, got {other:?}"),
    }
    assert!(!rx.poll_timeout(Duration::ZERO), "nothing was sent");
    tx.send(&writers[..2].to_vec()).unwrap();
    let got = rx.recv_timeout(BOUND).unwrap();
    got[1].send(&9).unwrap();
    assert_eq!(ends[1].0.recv_timeout(BOUND).unwrap(), 9);
}

#[test]
fn recv_handle_refuses_a_byte_without_a_descriptor_and_reports_the_end() {
    let (ours, mut raw) = UnixStream::pair().unwrap();
    let conn = Connection::<()>::from(ours);
    raw.write_all(&[1]).unwrap();
    match conn.recv_handle() {
        Err(RecvError::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        }
        other => panic!("expected InvalidData, got {other:?}"),
    }
    drop(raw);
    assert!(matches!(conn.recv_handle(), Err(RecvError::Closed)));
}

/// Over TCP: a handle in a message and `send_handle` are
/// `HandlesNeedUnixSocket`, nothing is sent, and the next message arrives.
#[test]
fn over_tcp_handles_are_a_typed_error_and_lose_nothing() {
    let listener = Listener::bind("127.0.0.1:0", Some(KEY)).unwrap();
    let address = listener.address().clone();
    let client = std::thread::spawn(move || {
        let conn: Connection<Option<Queue<u64>>> = Client::connect(address, Some(KEY)).unwrap();
        let q = Queue::new().unwrap();
        let refused = conn.send(&Some(q));
        let file = file_with(b"x");
        let refused_handle = conn.send_handle(file.as_fd());
        conn.send(&None).unwrap();
        (refused, refused_handle)
    });
    let server: Connection<Option<Queue<u64>>> = listener.accept_timeout(BOUND).unwrap();
    assert!(server.poll_timeout(BOUND));
    assert!(
        server.recv().unwrap().is_none(),
        "the next message arrives whole"
    );
    let (refused, refused_handle) = client.join().unwrap();
    assert!(
        matches!(refused, Err(SendError::HandlesNeedUnixSocket)),
        "{refused:?}"
    );
    assert!(matches!(
        refused_handle,
        Err(SendError::HandlesNeedUnixSocket)
    ));
    let e: multiproc::Error = SendError::HandlesNeedUnixSocket.into();
    assert!(e.to_string().contains("Unix-socket"), "{e}");
}

/// CPython's `reduction.recv_handle` and `send_handle` against ours, over a
/// `Listener` on a Unix path: Python takes a file we send and reads it,
/// then sends us one end of a `socketpair` it keeps talking on.
const PY_HANDLES: &str = r#"
import os, socket, sys
from multiprocessing.connection import Client
from multiprocessing import reduction
conn = Client(sys.argv[1], authkey=sys.argv[2].encode())
fd = reduction.recv_handle(conn)
with os.fdopen(fd, "rb") as f:
    f.seek(0)
    conn.send_bytes(b"python read: " + f.read())
a, b = socket.socketpair()
reduction.send_handle(conn, b.fileno(), os.getpid())
b.close()
a.sendall(b"through python's socket")
a.close()
print("done", flush=True)
conn.recv_bytes()
"#;

#[test]
fn python_receives_and_sends_handles_with_us() {
    let path = std::env::temp_dir().join(format!("mp-handles-py-{}", std::process::id()));
    let listener = Listener::bind(path.as_path(), Some(KEY)).unwrap();
    let key = std::str::from_utf8(KEY).unwrap();
    let Some(mut py) = Python::start(PY_HANDLES, &[path.to_str().unwrap(), key]) else {
        return;
    };
    let conn: Connection<()> = listener.accept_timeout(BOUND).unwrap();
    let file = file_with(b"a file from rust");
    conn.send_handle(file.as_fd()).unwrap();
    assert!(conn.poll_timeout(BOUND));
    assert_eq!(conn.recv_bytes().unwrap(), b"python read: a file from rust");
    let sock = UnixStream::from(conn.recv_handle().unwrap());
    assert_eq!(py.line(BOUND), "done");
    sock.set_read_timeout(Some(BOUND)).unwrap();
    let mut got = Vec::new();
    (&sock).read_to_end(&mut got).unwrap();
    assert_eq!(got, b"through python's socket");
    conn.send_bytes(b"bye").unwrap();
    py.finish(BOUND);
}
