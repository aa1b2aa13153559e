//! The guide's `Pipe` program: a child sends a message through one end of a
//! duplex pipe, the parent receives it from the other.
//!
//! ```text
//! $ cargo run --example pipe
//! (42, None, "hello")
//! ```

use multiproc::{Connection, Pipe, Process, worker};

type Message = (i32, Option<i32>, String);

#[worker]
fn f(conn: Connection<Message>) {
    conn.send(&(42, None, "hello".to_string())).unwrap();
    conn.close();
}

fn main() -> multiproc::Result<()> {
    let (parent_conn, child_conn) = Pipe::new()?;
    let mut p = Process::new(f, (child_conn,));
    p.start()?;
    println!("{:?}", parent_conn.recv()?);
    p.join()?;
    Ok(())
}
