//! What rustdoc shows of a `#[worker]` in a downstream crate: rustdoc sees a
//! struct, so the attribute writes the function's signature and how to run
//! it into the item's documentation, after the user's own.

use std::path::PathBuf;
use std::process::Command;

/// Documents `multiproc-doc-check` (only it: `--no-deps`) into its own
/// target directory, so it never waits on the lock of the build running
/// these tests; returns the HTML of each worker's page.
fn worker_pages() -> Vec<(String, String)> {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/doc-check");
    let out = Command::new(env!("CARGO"))
        .args(["doc", "-q", "--no-deps", "-p", "multiproc-doc-check"])
        .env("CARGO_TARGET_DIR", &target)
        .env("RUSTDOCFLAGS", "-D warnings")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo doc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = target.join("doc/multiproc_doc_check");
    ["double", "summarize", "undocumented"]
        .iter()
        .map(|name| {
            let html = std::fs::read_to_string(dir.join(format!("struct.{name}.html"))).unwrap();
            (name.to_string(), html)
        })
        .collect()
}

/// The page's text, tags dropped and entities decoded (enough for rustdoc's
/// output).
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
}

#[test]
fn a_worker_reads_as_the_function_it_is() {
    let pages = worker_pages();
    let page = |name: &str| text(&pages.iter().find(|(n, _)| n == name).unwrap().1);

    let double = page("double");
    assert!(double.contains("Doubles a number."), "{double}");
    assert!(double.contains("fn double(x: i64) -> i64"), "{double}");
    assert!(double.contains("Process::new(double, (x,))"), "{double}");
    assert!(
        double.contains("double(x) calls it in this process"),
        "{double}"
    );

    let summarize = page("summarize");
    assert!(
        summarize.contains("Counts the words of each job."),
        "{summarize}"
    );
    assert!(
        summarize.contains(
            "fn summarize(jobs: Vec<Job>, limit: Option<u32>) -> Result<Vec<(usize, String)>, String>"
        ),
        "{summarize}"
    );
    assert!(
        summarize.contains("Process::new(summarize, (jobs, limit))"),
        "{summarize}"
    );

    let undocumented = page("undocumented");
    assert!(undocumented.contains("fn undocumented()"), "{undocumented}");
    assert!(
        undocumented.contains("Process::new(undocumented, ())"),
        "{undocumented}"
    );
}
