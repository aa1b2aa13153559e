//! What `#[worker]` accepts and generates, run for real: every worker here is
//! called directly and in a child process, and the two results must agree.
//!
//! The crate-level lints prove the generated code is clean under them: a
//! `pub` worker keeps its doc comment (or `missing_docs` would fail), and
//! nothing the macro emits trips `unused_qualifications` or the workspace's
//! `rust_2018_idioms` (clippy runs on this file with `-D warnings`).
#![deny(missing_docs, unused_qualifications, missing_debug_implementations)]

use multiproc::{Process, Worker, worker};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

/// Runs `w` in a child process with `args`, bounded, and returns its result.
fn in_child<W: Worker>(w: W, args: W::Args) -> W::Output {
    let mut p = Process::new(w, args);
    p.start().unwrap();
    let code = p.join_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(code, Some(0), "{} did not exit cleanly in time", W::NAME);
    p.result().unwrap()
}

/// Calls `w` here through [`Worker::call`] and in a child; both must agree.
fn same_here_and_there<W: Worker>(w: W, args: W::Args) -> W::Output
where
    W::Args: Clone,
    W::Output: PartialEq + Debug,
{
    let here = W::call(args.clone());
    let there = in_child(w, args);
    assert_eq!(here, there, "{}", W::NAME);
    there
}

/// `both!(worker, a, b)` calls `worker(a, b)` directly (a plain call, in this
/// process) and runs it in a child with `(a, b)`; the results must agree.
/// Each argument expression is evaluated twice.
macro_rules! both {
    ($worker:expr $(, $arg:expr)* $(,)?) => {{
        let here = $worker($($arg),*);
        let there = in_child($worker, ($($arg,)*));
        assert_eq!(here, there, "{}", stringify!($worker));
        there
    }};
}

// ---- visibility, docs, modules -------------------------------------------

/// A public worker: its doc comment lands on the generated item.
#[worker]
pub fn public_double(x: i64) -> i64 {
    x * 2
}

#[worker]
fn private_triple(x: i64) -> i64 {
    x * 3
}

#[worker]
pub(crate) fn crate_visible(x: i64) -> i64 {
    x - 1
}

/// Workers in nested modules: their names carry the module path.
pub mod outer {
    use multiproc::worker;

    /// Same function name as [`inner::twin`]: the module path tells them apart.
    #[worker]
    pub fn twin() -> String {
        "outer".into()
    }

    /// One level further down.
    pub mod inner {
        use multiproc::worker;

        /// The inner twin.
        #[worker]
        pub fn twin() -> String {
            "inner".into()
        }

        #[worker]
        fn private_deep(s: String) -> String {
            s.repeat(2)
        }

        /// Re-exposes the private worker as a value, to run it from outside.
        pub fn private_deep_value() -> impl multiproc::Worker<Args = (String,), Output = String> {
            private_deep
        }
    }
}

#[test]
fn visibility_and_direct_calls() {
    assert_eq!(public_double(21), 42);
    assert_eq!(private_triple(5), 15);
    assert_eq!(crate_visible(5), 4);
    assert_eq!(both!(public_double, 21), 42);
    assert_eq!(both!(private_triple, 5), 15);
    assert_eq!(both!(crate_visible, 5), 4);
}

#[test]
fn names_include_the_module_path() {
    assert_eq!(
        <public_double as Worker>::NAME,
        "worker_macro::public_double"
    );
    assert_eq!(<outer::twin as Worker>::NAME, "worker_macro::outer::twin");
    assert_eq!(
        <outer::inner::twin as Worker>::NAME,
        "worker_macro::outer::inner::twin"
    );
    // Debug prints the name.
    assert_eq!(
        format!("{:?}", outer::inner::twin),
        "worker_macro::outer::inner::twin"
    );
}

#[test]
fn workers_in_nested_modules_run_in_a_child() {
    assert_eq!(both!(outer::twin), "outer");
    assert_eq!(both!(outer::inner::twin), "inner");
    let deep = outer::inner::private_deep_value();
    assert_eq!(same_here_and_there(deep, ("ab".into(),)), "abab");
}

#[test]
fn a_worker_declared_in_a_function_body() {
    #[worker]
    fn local_to_a_test(x: u32) -> u32 {
        x + 100
    }
    assert_eq!(
        <local_to_a_test as Worker>::NAME,
        "worker_macro::local_to_a_test"
    );
    assert_eq!(local_to_a_test(1), 101);
    assert_eq!(both!(local_to_a_test, 1), 101);
}

// ---- zero to eight parameters ---------------------------------------------

#[worker]
fn p0() -> String {
    "none".to_string()
}

#[worker]
fn p1(a: u8) -> String {
    format!("{a}")
}

#[worker]
fn p2(a: u8, b: u16) -> String {
    format!("{a} {b}")
}

#[worker]
fn p3(a: u8, b: u16, c: u32) -> String {
    format!("{a} {b} {c}")
}

#[worker]
fn p4(a: u8, b: u16, c: u32, d: u64) -> String {
    format!("{a} {b} {c} {d}")
}

#[worker]
fn p5(a: u8, b: u16, c: u32, d: u64, e: i8) -> String {
    format!("{a} {b} {c} {d} {e}")
}

#[worker]
fn p6(a: u8, b: u16, c: u32, d: u64, e: i8, f: bool) -> String {
    format!("{a} {b} {c} {d} {e} {f}")
}

#[worker]
fn p7(a: u8, b: u16, c: u32, d: u64, e: i8, f: bool, g: char) -> String {
    format!("{a} {b} {c} {d} {e} {f} {g}")
}

#[worker]
fn p8(a: u8, b: u16, c: u32, d: u64, e: i8, f: bool, g: char, h: f64) -> String {
    format!("{a} {b} {c} {d} {e} {f} {g} {h}")
}

#[test]
fn zero_to_eight_parameters() {
    assert_eq!(p0(), "none");
    assert_eq!(p8(1, 2, 3, 4, -5, true, 'z', 0.5), "1 2 3 4 -5 true z 0.5");

    assert_eq!(both!(p0), "none");
    assert_eq!(both!(p1, 1), "1");
    assert_eq!(both!(p2, 1, 2), "1 2");
    assert_eq!(both!(p3, 1, 2, 3), "1 2 3");
    assert_eq!(both!(p4, 1, 2, 3, u64::MAX), "1 2 3 18446744073709551615");
    assert_eq!(both!(p5, 1, 2, 3, 4, i8::MIN), "1 2 3 4 -128");
    assert_eq!(both!(p6, 1, 2, 3, 4, -5, false), "1 2 3 4 -5 false");
    assert_eq!(both!(p7, 1, 2, 3, 4, -5, true, 'é'), "1 2 3 4 -5 true é");
    assert_eq!(
        both!(p8, 1, 2, 3, 4, -5, true, 'z', -1.25),
        "1 2 3 4 -5 true z -1.25"
    );
}

#[test]
fn args_is_the_parameter_tuple() {
    fn args_of<W: Worker>(_: W) -> &'static str {
        std::any::type_name::<W::Args>()
    }
    fn output_of<W: Worker>(_: W) -> &'static str {
        std::any::type_name::<W::Output>()
    }
    assert_eq!(args_of(p0), "()");
    assert_eq!(args_of(p1), "(u8,)");
    assert_eq!(args_of(p8), "(u8, u16, u32, u64, i8, bool, char, f64)");
    assert_eq!(output_of(p8), "alloc::string::String");
    assert_eq!(output_of(unit_return), "()");
}

// ---- parameter and return types -------------------------------------------

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
enum Shape {
    Empty,
    Circle { center: Point, radius: f64 },
    Polygon(Vec<Point>),
    Tagged(String, Option<Box<Shape>>),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Newtype(u64);

#[worker]
fn swap_tuple(pair: (String, u32)) -> (u32, String) {
    (pair.1, pair.0)
}

#[worker]
fn move_point(p: Point, by: (i32, i32)) -> Point {
    Point {
        x: p.x + by.0,
        y: p.y + by.1,
    }
}

#[worker]
fn describe(shape: Shape) -> String {
    match shape {
        Shape::Empty => "empty".into(),
        Shape::Circle { center, radius } => {
            format!("circle at {},{} r={radius}", center.x, center.y)
        }
        Shape::Polygon(points) => format!("polygon of {}", points.len()),
        Shape::Tagged(tag, inner) => match inner {
            Some(inner) => format!("{tag}: {}", describe(*inner)),
            None => format!("{tag}: nothing"),
        },
    }
}

#[worker]
fn grow(shape: Shape) -> Shape {
    match shape {
        Shape::Polygon(mut points) => {
            points.push(Point { x: 0, y: 0 });
            Shape::Polygon(points)
        }
        other => Shape::Tagged("grown".into(), Some(Box::new(other))),
    }
}

#[worker]
fn lengths(words: Vec<String>) -> Vec<usize> {
    words.iter().map(String::len).collect()
}

#[worker]
fn first_even(numbers: Vec<i64>) -> Option<i64> {
    numbers.into_iter().find(|n| n % 2 == 0)
}

#[worker]
fn maybe_len(s: Option<String>) -> Option<usize> {
    s.map(|s| s.len())
}

#[worker]
fn index(items: Vec<(String, Option<Vec<Point>>)>) -> BTreeMap<String, (usize, Option<Point>)> {
    items
        .into_iter()
        .map(|(name, points)| {
            let count = points.as_ref().map_or(0, Vec::len);
            let last = points.and_then(|p| p.last().cloned());
            (name, (count, last))
        })
        .collect()
}

#[worker]
fn checked_div(a: i64, b: i64) -> Result<i64, String> {
    if b == 0 {
        Err(format!("{a} / 0"))
    } else {
        Ok(a / b)
    }
}

#[worker]
fn wrap(n: Newtype) -> Newtype {
    Newtype(n.0 + 1)
}

#[worker]
fn unit_return(_ignored: u8) {}

#[worker]
fn unit_param(unit: ()) {
    unit
}

#[test]
fn tuples_and_structs() {
    assert_eq!(both!(swap_tuple, ("a".into(), 1)), (1, "a".to_string()));
    assert_eq!(
        both!(move_point, Point { x: 1, y: 2 }, (10, 20)),
        Point { x: 11, y: 22 }
    );
    assert_eq!(both!(wrap, Newtype(41)), Newtype(42));
}

#[test]
fn enums_with_data() {
    let nested = Shape::Tagged(
        "outer".into(),
        Some(Box::new(Shape::Circle {
            center: Point { x: 3, y: 4 },
            radius: 1.5,
        })),
    );
    assert_eq!(
        both!(describe, nested.clone()),
        "outer: circle at 3,4 r=1.5"
    );
    assert_eq!(both!(describe, Shape::Empty), "empty");
    assert_eq!(
        both!(grow, Shape::Polygon(vec![Point { x: 1, y: 1 }])),
        Shape::Polygon(vec![Point { x: 1, y: 1 }, Point { x: 0, y: 0 }])
    );
    assert_eq!(
        both!(grow, nested.clone()),
        Shape::Tagged("grown".into(), Some(Box::new(nested)))
    );
}

#[test]
fn vecs_strings_options() {
    assert_eq!(
        both!(lengths, vec!["a".into(), "".into(), "héllo".into()]),
        vec![1, 0, 6]
    );
    assert_eq!(both!(lengths, vec![]), Vec::<usize>::new());
    assert_eq!(both!(first_even, vec![1, 3, 8, 10]), Some(8));
    assert_eq!(both!(first_even, vec![1, 3]), None);
    assert_eq!(both!(maybe_len, Some("four".into())), Some(4));
    assert_eq!(both!(maybe_len, None), None);
    assert_eq!(both!(checked_div, 7, 2), Ok(3));
    assert_eq!(both!(checked_div, 7, 0), Err("7 / 0".to_string()));
}

#[test]
fn nested_combinations() {
    let items = vec![
        (
            "a".to_string(),
            Some(vec![Point { x: 1, y: 1 }, Point { x: 2, y: 3 }]),
        ),
        ("b".to_string(), None),
        ("c".to_string(), Some(vec![])),
    ];
    let out = both!(index, items.clone());
    assert_eq!(out["a"], (2, Some(Point { x: 2, y: 3 })));
    assert_eq!(out["b"], (0, None));
    assert_eq!(out["c"], (0, None));
}

#[test]
fn unit_return_and_unit_parameter() {
    // A statement call of a `()` worker: clippy (run with -D warnings on this
    // file) must not take it for a constructor "with no effect".
    unit_return(1);
    both!(unit_return, 1);
    both!(unit_param, ());
}

// ---- patterns, attributes, cfg ---------------------------------------------

#[worker]
fn add_pair((a, b): (i32, i32)) -> i32 {
    a + b
}

#[worker]
fn countdown(mut x: u32) -> Vec<u32> {
    let mut seen = Vec::new();
    while x > 0 {
        seen.push(x);
        x -= 1;
    }
    seen
}

#[worker]
fn norm1(Point { x, y }: Point, _: String) -> i32 {
    x.abs() + y.abs()
}

#[worker]
#[allow(unused_variables)]
fn ignores_its_argument(unused: u32) -> u32 {
    7
}

#[worker]
fn attribute_on_a_parameter(#[allow(unused_variables)] unused: u32) -> u32 {
    8
}

#[worker]
#[inline]
fn inlined(x: u32) -> u32 {
    x.rotate_left(1)
}

#[worker]
#[inline(never)]
#[must_use]
fn not_inlined(x: u32) -> u32 {
    x.wrapping_mul(3)
}

#[worker]
#[cfg(unix)]
fn configured_in(x: u8) -> u8 {
    x
}

#[worker]
#[cfg(not(unix))]
fn configured_out(x: u8) -> u8 {
    compile_error!("a worker under a false `cfg` must vanish entirely")
}

#[test]
fn pattern_parameters() {
    assert_eq!(add_pair((2, 3)), 5);
    assert_eq!(both!(add_pair, (2, 3)), 5);
    assert_eq!(countdown(3), [3, 2, 1]);
    assert_eq!(both!(countdown, 3), [3, 2, 1]);
    assert_eq!(both!(norm1, Point { x: -3, y: 4 }, String::new()), 7);
}

#[test]
fn passthrough_attributes() {
    assert_eq!(both!(ignores_its_argument, 1), 7);
    assert_eq!(both!(attribute_on_a_parameter, 1), 8);
    assert_eq!(both!(inlined, 1), 2);
    assert_eq!(both!(not_inlined, 5), 15);
    assert_eq!(both!(configured_in, 9), 9);
}

// ---- the generated value ----------------------------------------------------

#[test]
fn the_worker_value_is_a_copyable_function() {
    // Deref gives the plain function pointer.
    let f: fn(i64) -> i64 = *public_double;
    assert_eq!(f(4), 8);
    // Copy + Clone: the value can be used many times.
    let w = public_double;
    #[allow(clippy::clone_on_copy)]
    let ws = [w, w.clone()];
    assert!(ws.iter().all(|w| w(1) == 2));
    // `Worker::call` runs in this process.
    assert_eq!(<public_double as Worker>::call((5,)), 10);
}

#[worker]
fn own_pid() -> u32 {
    std::process::id()
}

#[test]
fn in_child_really_is_another_process() {
    assert_eq!(own_pid(), std::process::id());
    assert_ne!(in_child(own_pid, ()), std::process::id());
}

#[test]
fn many_children_of_one_worker() {
    let mut ps: Vec<_> = (0..4).map(|i| Process::new(public_double, (i,))).collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for (i, p) in ps.iter_mut().enumerate() {
        assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
        assert_eq!(p.result().unwrap(), 2 * i as i64);
    }
}
