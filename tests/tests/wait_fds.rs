//! `wait` over std's descriptor types (sockets, pipes, a listener, a
//! child's stdout, any `AsFd` through `as_fd()`), mixed with processes:
//! ready while they poll readable, level-triggered.

use multiproc::{Connection, Pipe, Process, Stdio, Waitable, wait, worker};
use multiproc_tests::{start, wait_for_word};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(60);

#[worker]
fn print_after_word(conn: Connection<String>) {
    let word = conn.recv().unwrap_or_default();
    println!("{word}");
}

fn ready(objects: &[&dyn Waitable]) -> Vec<usize> {
    wait(objects, Some(BOUND)).unwrap()
}

fn ready_now(objects: &[&dyn Waitable]) -> Vec<usize> {
    wait(objects, Some(Duration::ZERO)).unwrap()
}

#[test]
fn a_socket_pair_a_pipe_and_a_listener_mixed_with_a_process() {
    let (mut unix_ours, unix) = UnixStream::pair().unwrap();
    // Close-on-exec, or a program another test spawns meanwhile would hold
    // the writing end (and delay the end of file below).
    let (pipe_read, pipe_write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (stop, child_end) = Pipe::new().unwrap();
    let p = start(wait_for_word, (child_end,));
    let objects: [&dyn Waitable; 4] = [&unix, &pipe_read, &listener, &p];

    assert!(ready_now(&objects).is_empty());

    // A socket with bytes waiting is ready, and stays ready until read.
    unix_ours.write_all(b"hello").unwrap();
    assert_eq!(ready(&objects), [0]);
    assert_eq!(ready(&objects), [0]);
    let mut buf = [0; 5];
    (&unix).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    assert!(ready_now(&objects).is_empty());

    // A pipe with a byte in it, and a listener with a pending connection:
    // both ready at once.
    nix::unistd::write(&pipe_write, b"x").unwrap();
    assert_eq!(ready(&objects), [1]);
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let got = ready(&objects);
    assert!(got == [1, 2] || got == [1], "{got:?}");
    let got = wait(&objects[2..3], Some(BOUND)).unwrap();
    assert_eq!(got, [0], "the pending connection makes the listener ready");
    assert_eq!(ready(&objects), [1, 2]);

    // Drained and accepted: nothing is ready.
    let mut byte = [0; 1];
    assert_eq!(nix::unistd::read(pipe_read.as_fd(), &mut byte).unwrap(), 1);
    let (accepted, _) = listener.accept().unwrap();
    assert!(ready_now(&objects).is_empty());

    // The child exits: the process is ready, alone.
    stop.send(&"stop".to_string()).unwrap();
    assert_eq!(ready(&objects), [3]);
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));

    // End of file is readable too: the pipe's writer and the socket's peer
    // close.
    // (A child being spawned by another test holds copies of every
    // descriptor until its exec, so the end of file may come a moment
    // later; the process is ready meanwhile.)
    drop(pipe_write);
    drop(unix_ours);
    let mut got = Vec::new();
    let all = multiproc_tests::wait_until(BOUND, || {
        got = ready(&objects);
        got == [0, 1, 3]
    });
    assert!(all, "{got:?}");
    drop((client, accepted));
}

#[test]
fn a_childs_piped_stdout_is_ready_when_it_prints() {
    let (tell, child_end) = Pipe::new().unwrap();
    let mut p = Process::new(print_after_word, (child_end,));
    p.stdout(Stdio::piped());
    p.start().unwrap();
    let mut stdout = p.take_stdout().unwrap();
    assert!(ready_now(&[&stdout, &p]).is_empty());

    tell.send(&"word".to_string()).unwrap();
    // The line comes before the exit, but both may be seen at once.
    let got = ready(&[&stdout, &p]);
    assert_eq!(got[0], 0, "{got:?}");
    assert_eq!(p.join_timeout(BOUND).unwrap(), Some(0));
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert_eq!(out, "word\n");
    // At end of file it stays ready.
    assert_eq!(ready(&[&stdout, &p]), [0, 1]);
}

#[test]
fn a_std_command_stdout_is_waitable() {
    let mut child = std::process::Command::new("sh")
        .args(["-c", "read line; echo \"$line\""])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    assert!(ready_now(&[&stdout]).is_empty());
    writeln!(child.stdin.take().unwrap(), "echoed").unwrap();
    assert_eq!(ready(&[&stdout]), [0]);
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert_eq!(out, "echoed\n");
    assert!(multiproc_tests::wait_until(BOUND, || child
        .try_wait()
        .unwrap()
        .is_some()));
}

#[test]
fn any_as_fd_type_takes_part_through_as_fd() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Borrowed descriptors alone, in a plain array.
    let fds = [a.as_fd(), b.as_fd()];
    assert!(wait(&fds, Some(Duration::ZERO)).unwrap().is_empty());
    a.send_to(b"ping", b.local_addr().unwrap()).unwrap();
    assert_eq!(wait(&fds, Some(BOUND)).unwrap(), [1]);
    // The sockets themselves are waitable too.
    assert_eq!(wait(&[&a, &b], Some(BOUND)).unwrap(), [1]);
    let mut buf = [0; 4];
    b.recv(&mut buf).unwrap();
    assert!(wait(&[&a, &b], Some(Duration::ZERO)).unwrap().is_empty());
}
