//! Named `SharedMemory` blocks shared with Python's
//! `multiprocessing.shared_memory.SharedMemory`, both ways.
//!
//! Names: Python takes and reports names without the leading `/` (it adds
//! one for `shm_open`); `SharedMemory::create`/`attach` take either form and
//! `name()` reports `/name`. So a name Python printed is passed as it is, and
//! ours is given to Python without its slash.
//!
//! Each test skips (a line on stderr) when there is no `python3`.

use multiproc::SharedMemory;
use multiproc_tests::python::Python;
use std::io::ErrorKind;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(60);

fn unique(tag: &str) -> String {
    format!("mpt-py-{tag}-{}", std::process::id())
}

fn dev_shm_has(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

/// Attaches to block `argv[1]`, checks its size (`argv[2]`) and our bytes,
/// writes its own and prints the name Python reports.
const ATTACH: &str = r#"
import sys
from multiprocessing import resource_tracker, shared_memory

name, size = sys.argv[1], int(sys.argv[2])
shm = shared_memory.SharedMemory(name)
# Python 3.11 registers every block it attaches to with its resource
# tracker, which unlinks it when this interpreter exits although it did not
# create it (fixed in 3.13 by SharedMemory(track=False)); unregistering right
# after attaching is the known workaround.
resource_tracker.unregister(shm._name, "shared_memory")
assert shm.size == size, (shm.size, size)
assert bytes(shm.buf[:12]) == b"from rust\x00\x01\xff", bytes(shm.buf[:12])
shm.buf[100:111] = b"from python"
shm.buf[size - 1] = 0x7F
print(shm.name, flush=True)
shm.close()
"#;

#[test]
fn python_attaches_to_a_block_multiproc_created() {
    let name = unique("ours");
    // Created with the leading slash; the bare name is the same block.
    let block = SharedMemory::create(&format!("/{name}"), 4096).unwrap();
    assert_eq!(block.name(), Some(format!("/{name}").as_str()));
    block.write(0, b"from rust\x00\x01\xff").unwrap();
    let python_name = block.name().unwrap().trim_start_matches('/');
    let Some(py) = Python::start(ATTACH, &[python_name, "4096"]) else {
        return;
    };
    // `finish` waits for the resource tracker too, so a wrongful unlink at
    // its shutdown would have happened by now.
    let printed = py.finish(BOUND);
    assert_eq!(printed, vec![name.clone()], "Python's name has no slash");
    let mut buf = [0u8; 11];
    block.read(100, &mut buf).unwrap();
    assert_eq!(&buf, b"from python");
    let mut last = [0u8];
    block.read(4095, &mut last).unwrap();
    assert_eq!(last, [0x7F]);
    assert!(
        dev_shm_has(&name),
        "Python's exit removed a block it attached to"
    );
    drop(block);
    assert!(!dev_shm_has(&name));
}

/// Creates a block named `argv[1]` and one with a name of Python's own
/// choosing, prints both names and the size, waits for a line, checks what
/// multiproc wrote and unlinks both.
const CREATE: &str = r#"
import sys
from multiprocessing import shared_memory

named = shared_memory.SharedMemory(sys.argv[1], create=True, size=4096)
chosen = shared_memory.SharedMemory(create=True, size=100)
try:
    named.buf[:11] = b"from python"
    chosen.buf[:6] = b"chosen"
    print(named.name, named.size, chosen.name, flush=True)
    line = sys.stdin.readline()
    assert line == "written\n", line
    assert bytes(named.buf[200:209]) == b"from rust", bytes(named.buf[200:209])
    assert bytes(chosen.buf[50:54]) == b"rust", bytes(chosen.buf[50:54])
    print("checked", flush=True)
finally:
    for shm in (named, chosen):
        shm.close()
        shm.unlink()
"#;

#[test]
fn multiproc_attaches_to_blocks_python_created() {
    let name = unique("theirs");
    let Some(mut py) = Python::start(CREATE, &[&name]) else {
        return;
    };
    let line = py.line(BOUND);
    let fields: Vec<&str> = line.split(' ').collect();
    let [named, size, chosen] = fields[..] else {
        panic!("unexpected line {line:?}");
    };
    assert_eq!(named, name);
    assert_eq!(size, "4096");
    assert!(chosen.starts_with("psm_"), "{chosen}");

    // Python's name works as it is, and with a leading slash.
    let bare = SharedMemory::attach(named).unwrap();
    let slashed = SharedMemory::attach(&format!("/{named}")).unwrap();
    assert_eq!(bare.name(), Some(format!("/{named}").as_str()));
    assert_eq!(bare.size(), 4096);
    let mut buf = [0u8; 11];
    slashed.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"from python");
    bare.write(200, b"from rust").unwrap();
    let other = SharedMemory::attach(chosen).unwrap();
    assert_eq!(other.size(), 100);
    let mut buf = [0u8; 6];
    other.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"chosen");
    other.write(50, b"rust").unwrap();

    // An attacher never removes the name, by drop or by unlink.
    drop(slashed);
    assert!(dev_shm_has(named));
    let refused = bare.unlink().unwrap_err();
    assert!(
        matches!(&refused, multiproc::Error::Io(e) if e.kind() == ErrorKind::PermissionDenied),
        "{refused:?}"
    );

    py.send("written");
    assert_eq!(py.line(BOUND), "checked");
    py.finish(BOUND);
    // Python's unlink removed both names; our mappings stay usable.
    assert!(!dev_shm_has(named));
    assert!(!dev_shm_has(chosen));
    assert!(SharedMemory::attach(named).is_err());
    let mut buf = [0u8; 9];
    bare.read(200, &mut buf).unwrap();
    assert_eq!(&buf, b"from rust");
}
