//! serde features that postcard (multiproc's wire format, which is not
//! self-describing) cannot carry, found before they bite: each fails at
//! run time at every boundary (a worker's argument, its result, a queue
//! message, a pipe message) with a typed error whose message names the
//! serde attribute, keeps postcard's own text and gives the fix,
//! `multiproc::SelfDescribing`.

use multiproc::{
    CodecError, Connection, Error, GetTimeoutError, Pipe, Process, PutTimeoutError, Queue,
    RecvTimeoutError, SendError, worker,
};
use multiproc_tests::join;
use multiproc_tests::serde_types::*;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(60);

/// Where the bare type fails: encoding it, or decoding it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fails {
    Encoding,
    Decoding,
}

/// The checks every message gets: the attribute, postcard's own words, the
/// fix.
fn assert_explains(text: &str, cause: &str, postcard: &str) {
    assert!(text.contains(cause), "does not name `{cause}`: {text}");
    assert!(
        text.contains(postcard),
        "lost postcard's `{postcard}`: {text}"
    );
    assert!(
        text.contains("wrap the value in `multiproc::SelfDescribing`"),
        "does not give the fix: {text}"
    );
}

/// One module per type: its workers and a test per boundary.
macro_rules! boundaries {
    ($ty:ty, $value:expr, $fails:expr, $cause:literal, $postcard:literal) => {
        use super::*;

        const FAILS: Fails = $fails;

        fn value() -> $ty {
            $value
        }

        fn assert_explains(text: &str) {
            super::assert_explains(text, $cause, $postcard);
        }

        /// Takes the value as its argument.
        #[worker]
        fn take(v: $ty) -> bool {
            v == value()
        }

        /// Returns the value.
        #[worker]
        fn give() -> $ty {
            value()
        }

        /// Puts the value on `q`; the text of a put's encoding error.
        #[worker]
        fn put(q: Queue<$ty>) -> Option<String> {
            match q.put_timeout(value(), BOUND) {
                Ok(()) => None,
                Err(PutTimeoutError::Encode(_, e @ CodecError::Unencodable { .. })) => {
                    Some(e.to_string())
                }
                Err(e) => panic!("put: {e:?}"),
            }
        }

        /// Sends the value on `conn`; the text of a send's encoding error.
        #[worker]
        fn send(conn: Connection<$ty>) -> Option<String> {
            match conn.send(&value()) {
                Ok(()) => None,
                Err(SendError::Encode(e @ CodecError::Unencodable { .. })) => Some(e.to_string()),
                Err(e) => panic!("send: {e:?}"),
            }
        }

        #[test]
        fn as_a_worker_argument() {
            let mut p = Process::new(take, (value(),));
            let err = match (p.start(), FAILS) {
                (Err(e @ Error::Codec(CodecError::Unencodable { .. })), Fails::Encoding) => e,
                (Ok(()), Fails::Decoding) => {
                    join(&p);
                    match p.result() {
                        Err(e @ Error::WorkerFailed { .. }) => e,
                        other => panic!("the child decoded its argument: {other:?}"),
                    }
                }
                (other, fails) => panic!("{fails:?} expected, start() gave {other:?}"),
            };
            assert_explains(&err.to_string());
        }

        #[test]
        fn as_a_worker_result() {
            let mut p = Process::new(give, ());
            p.start().unwrap();
            join(&p);
            let err = match (p.result(), FAILS) {
                (Err(e @ Error::WorkerFailed { .. }), Fails::Encoding) => e,
                (Err(e @ Error::Codec(CodecError::Corrupt { .. })), Fails::Decoding) => e,
                (other, fails) => panic!("{fails:?} expected, result() gave {other:?}"),
            };
            assert_explains(&err.to_string());
        }

        #[test]
        fn as_a_queue_message() {
            let q = Queue::new().unwrap();
            let mut p = Process::new(put, (q.clone(),));
            p.start().unwrap();
            join(&p);
            let put_error = p.result().unwrap();
            let text = match FAILS {
                Fails::Encoding => put_error.expect("the child's put did not fail"),
                Fails::Decoding => {
                    assert_eq!(put_error, None);
                    match q.get_timeout(BOUND) {
                        Err(GetTimeoutError::Decode(e @ CodecError::Corrupt { .. })) => {
                            e.to_string()
                        }
                        other => panic!("the message decoded: {other:?}"),
                    }
                }
            };
            assert_explains(&text);
        }

        #[test]
        fn as_a_pipe_message() {
            let (here, there) = Pipe::<$ty>::new().unwrap();
            let mut p = Process::new(send, (there,));
            p.start().unwrap();
            join(&p);
            let send_error = p.result().unwrap();
            let text = match FAILS {
                Fails::Encoding => send_error.expect("the child's send did not fail"),
                Fails::Decoding => {
                    assert_eq!(send_error, None);
                    match here.recv_timeout(BOUND) {
                        Err(RecvTimeoutError::Decode(e @ CodecError::Corrupt { .. })) => {
                            e.to_string()
                        }
                        other => panic!("the message decoded: {other:?}"),
                    }
                }
            };
            assert_explains(&text);
        }
    };
}

mod skip_serializing_if {
    boundaries!(
        Skipping,
        skipping(),
        Fails::Decoding,
        "#[serde(skip_serializing_if",
        "Found an Option discriminant that wasn't 0 or 1"
    );
}

mod flatten {
    boundaries!(
        Flattened,
        flattened(),
        Fails::Encoding,
        "#[serde(flatten)]",
        "The length of a sequence must be known"
    );
}

mod untagged {
    boundaries!(
        Untagged,
        untagged(),
        Fails::Decoding,
        "#[serde(untagged)]",
        "This is a feature that PostCard will never implement"
    );
}

mod internally_tagged {
    boundaries!(
        Tagged,
        tagged(),
        Fails::Decoding,
        "#[serde(tag = \"...\")]",
        "This is a feature that PostCard will never implement"
    );
}

mod json_value {
    boundaries!(
        serde_json::Value,
        serde_json::json!({"id": 1, "tags": ["a", "b"], "nested": {"ok": true}}),
        Fails::Decoding,
        "`serde_json::Value`",
        "This is a feature that PostCard will never implement"
    );
}
