//! A Rust service that a Python program uses through `multiprocessing`'s own
//! protocol: a [`Listener`] with an authkey, and CPython's
//! `multiprocessing.connection.Client` on the other side.
//!
//! The service counts the words of each line it is sent and answers in
//! upper case; an empty message ends the session. The example starts the
//! Python client itself (`python3` on `PATH`), so one command runs both:
//!
//! ```text
//! $ cargo run --example listener
//! listening on 127.0.0.1:PORT
//! served "the quick brown fox": 4 words
//! served "jumps over the lazy dog": 5 words
//! served "multiproc speaks python": 3 words
//! the Python client checked every answer and exited with 0
//! ```
//!
//! Any Python 3 program can be the client:
//!
//! ```text
//! from multiprocessing.connection import Client
//! with Client(("127.0.0.1", PORT), authkey=b"...") as c:
//!     c.send_bytes(b"hello world")
//!     print(c.recv_bytes())
//! ```

use multiproc::{Connection, Listener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLIENT: &str = r#"
import os, sys
from multiprocessing.connection import Client
address = (os.environ["SERVICE_HOST"], int(os.environ["SERVICE_PORT"]))
with Client(address, authkey=os.environ["SERVICE_KEY"].encode()) as c:
    for line in ["the quick brown fox", "jumps over the lazy dog", "multiproc speaks python"]:
        c.send_bytes(line.encode())
        answer = c.recv_bytes().decode()
        expected = "%d words: %s" % (len(line.split()), line.upper())
        if answer != expected:
            sys.exit("wrong answer %r for %r" % (answer, line))
    c.send_bytes(b"")
"#;

const KEY: &str = "an example secret";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = Listener::bind("127.0.0.1:0", Some(KEY.as_bytes()))?;
    let multiproc::Address::Tcp(address) = listener.address().clone() else {
        unreachable!("a TCP address was bound");
    };
    println!("listening on {address}");

    let mut python = match Command::new("python3")
        .arg("-c")
        .arg(CLIENT)
        .env("SERVICE_HOST", address.ip().to_string())
        .env("SERVICE_PORT", address.port().to_string())
        .env("SERVICE_KEY", KEY)
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("cannot start python3 ({e}): this example needs Python 3 on PATH");
            std::process::exit(2);
        }
    };

    // One client at a time; a real service would hand each connection to a
    // thread or a worker process.
    let conn: Connection<()> = listener.accept_timeout(Duration::from_secs(30))?;
    loop {
        if !conn.poll_timeout(Duration::from_secs(30)) {
            return Err("the client went quiet".into());
        }
        let request = String::from_utf8(conn.recv_bytes()?)?;
        if request.is_empty() {
            break;
        }
        let words = request.split_whitespace().count();
        conn.send_bytes(format!("{words} words: {}", request.to_uppercase()).as_bytes())?;
        println!("served {request:?}: {words} words");
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = python.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            python.kill()?;
            return Err("the Python client did not exit".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    println!(
        "the Python client checked every answer and exited with {}",
        status.code().unwrap_or(-1)
    );
    Ok(())
}
