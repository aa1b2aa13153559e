//! A tokio service that offloads CPU-bound work to a process pool: each
//! line a client sends is a number `n`, and the answer is how many primes
//! there are below `n`, counted in a pool worker while the service's
//! threads go on serving other connections.
//!
//! `pool.apply_async(job, args)?.await` waits without blocking a tokio
//! thread (feature `tokio`), and the count runs in another process, so a
//! slow request never stalls the runtime's threads, and the service's
//! memory and crashes stay apart from the work's.
//!
//! ```text
//! $ cargo run -p multiproc-examples --features tokio --example offload
//! client 0: 10 -> 4
//! client 0: 100 -> 25
//! ...
//! served 9 requests on 3 connections
//! ```
//!
//! `main` starts the service on 127.0.0.1 (a port the kernel picks), runs
//! three clients at once, prints their answers in client order, and shuts
//! the service down.

use multiproc::{Pool, worker};
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn Error + Send + Sync>;

/// The job: counts the primes below `n` by trial division (CPU-bound on
/// purpose).
#[worker]
fn primes_below(n: u32) -> u32 {
    (2..n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u32
}

/// What each client sends, one number (or not) per line.
const REQUESTS: [&[&str]; 3] = [
    &["10", "100", "1000"],
    &["10000", "20000", "2"],
    &["50000", "30", "seven"],
];

/// Answers one connection's lines in order, each one offloaded to `pool`.
async fn serve(
    stream: TcpStream,
    pool: Arc<Pool>,
    served: Arc<AtomicUsize>,
) -> Result<(), BoxError> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match line.trim().parse::<u32>() {
            // The await yields the tokio thread; the worker does the counting.
            Ok(n) => match pool.apply_async(primes_below, (n,))?.await {
                Ok(count) => count.to_string(),
                Err(e) => format!("failed: {e}"),
            },
            Err(_) => "not a number".to_string(),
        };
        served.fetch_add(1, Ordering::Relaxed);
        write
            .write_all(format!("{line} -> {answer}\n").as_bytes())
            .await?;
    }
    Ok(())
}

/// Accepts connections for ever, one task each.
async fn listen(listener: TcpListener, pool: Arc<Pool>, served: Arc<AtomicUsize>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (pool, served) = (pool.clone(), served.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(stream, pool, served).await {
                eprintln!("connection failed: {e}");
            }
        });
    }
}

/// One client: sends all its lines, then reads one answer per line.
async fn ask(address: std::net::SocketAddr, requests: &[&str]) -> Result<Vec<String>, BoxError> {
    let stream = TcpStream::connect(address).await?;
    let (read, mut write) = stream.into_split();
    for request in requests {
        write.write_all(format!("{request}\n").as_bytes()).await?;
    }
    let mut lines = BufReader::new(read).lines();
    let mut answers = Vec::new();
    while answers.len() < requests.len() {
        match lines.next_line().await? {
            Some(answer) => answers.push(answer),
            None => return Err("the service closed the connection early".into()),
        }
    }
    Ok(answers)
}

async fn run(pool: Arc<Pool>) -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    eprintln!("listening on {address}");
    let served = Arc::new(AtomicUsize::new(0));
    let server = tokio::spawn(listen(listener, pool, served.clone()));

    // The clients run at once; their answers are printed in client order.
    let clients: Vec<_> = REQUESTS
        .iter()
        .map(|requests| tokio::spawn(ask(address, requests)))
        .collect();
    for (i, client) in clients.into_iter().enumerate() {
        let answers = tokio::time::timeout(Duration::from_secs(60), client)
            .await
            .map_err(|_| "a client got no answer within 60 s")???;
        for answer in answers {
            println!("client {i}: {answer}");
        }
    }
    server.abort();
    println!(
        "served {} requests on {} connections",
        served.load(Ordering::Relaxed),
        REQUESTS.len()
    );
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let pool = Arc::new(Pool::builder().processes(2).build()?);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(pool.clone()))?;
    drop(runtime);
    // Shut down: no more work, and every worker exits.
    pool.close();
    pool.join()?;
    Ok(())
}
