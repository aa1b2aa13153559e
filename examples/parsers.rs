//! A pool of crash-prone parsers: each worker runs under a memory limit and
//! each input under a timeout, and the workers' `tracing` events show up in
//! the parent's subscriber, which only `main` set up.
//!
//! Some documents are well formed; one makes the parser panic, one makes it
//! loop for ever, one makes it allocate without bound, one makes it abort.
//! Each of those fails alone, with its own cause; the others are parsed.
//!
//! ```sh
//! cargo run -p multiproc-examples --features tracing --example parsers
//! ```

use multiproc::{Error, Limited, Pool, Resource, worker};
use std::time::Duration;

/// Parses `key=value;key=value` into pairs. The parser has bugs that real
/// parsers have: some inputs crash or hang it.
#[worker]
fn parse(input: (usize, String)) -> Vec<(String, String)> {
    let (id, doc) = input;
    tracing::info!(id, bytes = doc.len(), "parsing");
    let mut fields = Vec::new();
    for part in doc.split(';').filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            panic!("document {id}: no '=' in {part:?}");
        };
        match value {
            // A value that makes the parser loop for ever.
            "loop" => loop {
                std::hint::spin_loop();
            },
            // A value whose length field the parser trusts: it allocates
            // without bound.
            "huge" => {
                let mut buffers = Vec::new();
                loop {
                    buffers.push(std::hint::black_box(vec![1u8; 64 << 20]));
                    tracing::debug!(id, held = buffers.len(), "growing");
                }
            }
            // A value that corrupts the parser's state beyond recovery.
            "corrupt" => std::process::abort(),
            _ => fields.push((key.to_string(), value.to_string())),
        }
    }
    tracing::info!(id, fields = fields.len(), "parsed");
    fields
}

fn main() -> multiproc::Result<()> {
    // The one subscriber, in the parent: workers' events arrive here.
    tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .without_time()
        .with_max_level(tracing::Level::INFO)
        .init();

    let docs = [
        "name=ada;lang=rust",
        "name=grace;no-equals-sign",
        "name=alan;size=loop",
        "name=barbara;size=huge",
        "name=edsger;state=corrupt",
        "name=linus;lang=c;year=1991",
    ];
    let pool = Pool::builder()
        .processes(2)
        .rlimit(Resource::AddressSpace, 512 << 20, 512 << 20)
        .task_timeout(Duration::from_secs(2))
        // A backtrace printed on the abort would hide that the memory limit
        // caused it.
        .env_remove("RUST_BACKTRACE")
        .build()?;
    let inputs = docs.iter().enumerate().map(|(i, d)| (i, d.to_string()));
    let results = pool.chunksize(1).imap(parse, inputs)?;
    for (id, result) in results.enumerate() {
        let outcome = match result {
            Ok(fields) => format!("ok, {} fields", fields.len()),
            Err(Error::TaskFailed { source, .. }) => match *source {
                Error::Panicked { message, .. } => format!("panicked: {message}"),
                Error::TaskTimedOut { timeout, .. } => format!("timed out after {timeout:?}"),
                Error::Killed {
                    signal: 6,
                    limit: Some(Limited::Memory { limit, .. }),
                    ..
                } => format!("out of memory (limit {} MiB)", limit >> 20),
                Error::Killed { signal, .. } => format!("killed by signal {signal}"),
                other => format!("failed: {other}"),
            },
            Err(other) => format!("failed: {other}"),
        };
        println!("document {id}: {outcome}");
    }
    Ok(())
}
