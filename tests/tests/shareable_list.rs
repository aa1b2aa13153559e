//! `ShareableList` across processes: with Python's
//! `multiprocessing.shared_memory.ShareableList` both ways (skipped, with a
//! line on stderr, when there is no `python3`), and with `#[worker]`
//! children.

use multiproc::{Error, Process, ShareableList, ShareableValue as V, worker};
use multiproc_tests::join;
use multiproc_tests::python::Python;
use std::io::ErrorKind;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(60);

fn unique(tag: &str) -> String {
    format!("mpt-list-{tag}-{}", std::process::id())
}

fn dev_shm_has(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

fn ours() -> Vec<V> {
    vec![
        V::Int(i64::MIN),
        V::Float(-0.125),
        V::Bool(true),
        V::Str("hello".into()),
        V::Str("héllo wörld ✓".into()),
        V::Bytes(b"a\x00b\xff".to_vec()),
        V::None,
        V::Str(String::new()),
        V::Int(42),
        V::Bool(false),
    ]
}

/// ASCII only, so Python sizes every slot as we do.
fn twin_items() -> Vec<V> {
    vec![
        V::Int(-1),
        V::Float(1.5),
        V::Bool(true),
        V::Str("ascii text".into()),
        V::Bytes(b"\x00\x01".to_vec()),
        V::None,
        V::Str(String::new()),
        V::Str("12345678".into()),
    ]
}

/// Attaches to our lists `argv[1]` (see `ours`) and `argv[2]` (see `twin_items`),
/// checks every item, checks that its own list of the twin's items is the
/// same bytes, and changes items of the first, types included.
const ATTACH: &str = r#"
import sys
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import ShareableList

sl = ShareableList(name=sys.argv[1])
twin = ShareableList(name=sys.argv[2])
# Python 3.11 registers every block it attaches to with its resource
# tracker, which unlinks it when this interpreter exits although it did not
# create it; unregistering right after attaching is the known workaround.
for attached in (sl, twin):
    resource_tracker.unregister(attached.shm._name, "shared_memory")

expected = [-2**63, -0.125, True, "hello", "héllo wörld ✓", b"a\x00b\xff",
            None, "", 42, False]
got = list(sl)
assert got == expected, got
assert [type(v) for v in got] == [type(v) for v in expected], got
assert len(sl) == 10
assert sl.format == sys.argv[3], sl.format
assert sl.index(42) == 8 and sl.count(True) == 1

own = ShareableList([-1, 1.5, True, "ascii text", b"\x00\x01", None, "", "12345678"])
try:
    assert bytes(own.shm.buf) == bytes(twin.shm.buf), (
        bytes(own.shm.buf).hex(), bytes(twin.shm.buf).hex())
finally:
    own.shm.close()
    own.shm.unlink()

sl[0] = 7
sl[1] = "changed"
sl[2] = 2.25
sl[3] = None
sl[4] = "wörld"
sl[5] = b"new"
sl[6] = True
sl[7] = b"12345678"
try:
    sl[8] = "123456789"
except ValueError:
    pass
else:
    raise AssertionError("a str longer than its slot was stored")
print("ok", flush=True)
sl.shm.close()
twin.shm.close()
"#;

#[test]
fn python_attaches_to_a_list_multiproc_created_and_changes_it() {
    let name = unique("ours");
    let twin_name = unique("twin");
    let list = ShareableList::create(Some(&name), ours()).unwrap();
    let twin = ShareableList::create(Some(&twin_name), twin_items()).unwrap();
    let format = list.format().unwrap();
    // The non-ASCII str has a slot for its 17 UTF-8 bytes (Python would size
    // it by its 13 characters).
    assert_eq!(format, "qdxxxxxxx?8s24s8sxxxxxx?x8sqxxxxxxx?");
    let Some(py) = Python::start(ATTACH, &[&name, &twin_name, &format]) else {
        return;
    };
    assert_eq!(py.finish(BOUND), vec!["ok".to_string()]);
    assert_eq!(
        list.to_vec().unwrap(),
        vec![
            V::Int(7),
            V::Str("changed".into()),
            V::Float(2.25),
            V::None,
            V::Str("wörld".into()),
            V::Bytes(b"new".to_vec()),
            V::Bool(true),
            V::Bytes(b"12345678".to_vec()),
            V::Int(42),
            V::Bool(false),
        ]
    );
    assert_eq!(
        list.format().unwrap(),
        "q8sdxxxxxx?x24s8sxxxxxxx?8sqxxxxxxx?"
    );
    assert_eq!(twin.to_vec().unwrap(), twin_items());
    // Python's exit (and its resource tracker's, which `finish` waited for)
    // left the names alone.
    assert!(dev_shm_has(&name) && dev_shm_has(&twin_name));
    drop((list, twin));
    assert!(!dev_shm_has(&name) && !dev_shm_has(&twin_name));
}

/// Creates a list named `argv[1]`, prints its format, waits for a line,
/// checks what multiproc changed and unlinks it.
const CREATE: &str = r#"
import sys
from multiprocessing.shared_memory import ShareableList

sl = ShareableList([1, 2.0, False, "naïve", b"\x00bytes", None, "x" * 20, -(2**63) + 1],
                   name=sys.argv[1])
try:
    print(sl.format, flush=True)
    line = sys.stdin.readline()
    assert line == "written\n", line
    got = list(sl)
    expected = ["eight ch", 2.0, True, "über", b"\x00bytes", 3.5, b"y" * 24, -(2**63) + 1]
    assert got == expected, got
    assert [type(v) for v in got] == [type(v) for v in expected], got
    print("checked", flush=True)
finally:
    sl.shm.close()
    sl.shm.unlink()
"#;

#[test]
fn multiproc_attaches_to_a_list_python_created_and_changes_it() {
    let name = unique("theirs");
    let Some(mut py) = Python::start(CREATE, &[&name]) else {
        return;
    };
    let format = py.line(BOUND);
    assert_eq!(format, "qdxxxxxxx?8s8sxxxxxx?x24sq");
    let list = ShareableList::attach(&name).unwrap();
    assert_eq!(list.name(), Some(format!("/{name}").as_str()));
    assert_eq!(list.len(), 8);
    assert_eq!(list.format().unwrap(), format);
    assert_eq!(
        list.to_vec().unwrap(),
        vec![
            V::Int(1),
            V::Float(2.0),
            V::Bool(false),
            V::Str("naïve".into()),
            V::Bytes(b"\x00bytes".to_vec()),
            V::None,
            V::Str("x".repeat(20)),
            V::Int(i64::MIN + 1),
        ]
    );
    assert_eq!(list.capacity(3).unwrap(), 8);
    assert_eq!(list.capacity(6).unwrap(), 24);

    list.set(0, "eight ch").unwrap();
    list.set(2, true).unwrap();
    let long = list.set(3, "naïveté").unwrap_err(); // 9 bytes, slot of 8
    assert!(
        matches!(
            long,
            Error::ItemTooLong {
                index: 3,
                len: 9,
                capacity: 8
            }
        ),
        "{long:?}"
    );
    list.set(3, "über").unwrap();
    list.set(5, 3.5).unwrap();
    list.set(6, b"y".repeat(24)).unwrap();
    assert!(matches!(
        list.set(8, 0),
        Err(Error::IndexOutOfRange { index: 8, len: 8 })
    ));
    // Attaching never removes the name; only Python, its creator, does.
    drop(ShareableList::attach(&name).unwrap());
    assert!(dev_shm_has(&name));
    let refused = list.unlink().unwrap_err();
    assert!(
        matches!(&refused, Error::Io(e) if e.kind() == ErrorKind::PermissionDenied),
        "{refused:?}"
    );

    py.send("written");
    assert_eq!(py.line(BOUND), "checked");
    py.finish(BOUND);
    assert!(!dev_shm_has(&name));
    // Our mapping outlives the name.
    assert_eq!(list.get(5).unwrap(), V::Float(3.5));
}

/// Adds one to item 0, rewrites items 1 and 2 with other types, and reports
/// the list's length and name and whether a too-long str was refused.
#[worker]
fn edit(list: ShareableList) -> (usize, Option<String>, bool) {
    if let V::Int(n) = list.get(0).unwrap() {
        list.set(0, n + 1).unwrap();
    }
    list.set(1, "from child").unwrap();
    list.set(2, V::None).unwrap();
    let refused = matches!(
        list.set(1, "far too long for this slot"),
        Err(Error::ItemTooLong { index: 1, .. })
    );
    (list.len(), list.name().map(str::to_string), refused)
}

#[test]
fn a_child_changes_an_anonymous_and_a_named_list() {
    let anonymous =
        ShareableList::create(None, [V::Int(41), "0123456789".into(), 1.5.into()]).unwrap();
    let name = unique("child");
    let named = ShareableList::create(
        Some(&name),
        [V::Int(1), "a str of 16 b..".into(), true.into()],
    )
    .unwrap();
    for list in [&anonymous, &named] {
        let mut p = Process::new(edit, (list.clone(),));
        p.start().unwrap();
        let (len, child_name, refused) = p.result().unwrap();
        assert_eq!(len, 3);
        assert_eq!(child_name.as_deref(), list.name());
        assert!(refused);
        assert_eq!(list.get(1).unwrap(), V::Str("from child".into()));
        assert_eq!(list.get(2).unwrap(), V::None);
    }
    assert_eq!(anonymous.get(0).unwrap(), V::Int(42));
    assert_eq!(named.get(0).unwrap(), V::Int(2));
    // The child's handle, dropped at its exit, left the name in place.
    assert!(dev_shm_has(&name));
    drop(named);
    assert!(!dev_shm_has(&name));
}

#[worker]
fn length(list: ShareableList) -> usize {
    list.len()
}

#[test]
fn a_child_refuses_a_list_whose_header_was_corrupted() {
    let list = ShareableList::create(None, [1, 2, 3]).unwrap();
    // An item count far past the block, written behind the list's back.
    list.shm().write(0, &1_000_000i64.to_ne_bytes()).unwrap();
    // This handle checked the header when it was made, and keeps to it.
    assert_eq!(list.len(), 3);
    assert_eq!(list.get(2).unwrap(), V::Int(3));
    let mut p = Process::new(length, (list.clone(),));
    p.start().unwrap();
    match p.result() {
        Err(Error::WorkerFailed { reason, .. }) => {
            assert!(reason.contains("not a valid ShareableList"), "{reason}")
        }
        other => panic!("the child accepted a corrupt list: {other:?}"),
    }
    assert_eq!(join(&p), 2);
}

#[test]
fn attaching_to_a_block_that_is_no_list_is_invalid_data() {
    let name = unique("garbage");
    let block = multiproc::SharedMemory::create(&name, 64).unwrap();
    block.write(0, &[0xAB; 64]).unwrap();
    let e = ShareableList::attach(&name).unwrap_err();
    assert!(
        matches!(&e, Error::Io(e) if e.kind() == ErrorKind::InvalidData),
        "{e:?}"
    );
    let e = ShareableList::attach(&unique("missing")).unwrap_err();
    assert!(
        matches!(&e, Error::Io(e) if e.kind() == ErrorKind::NotFound),
        "{e:?}"
    );
}
