//! One error vocabulary (issue 15, item 8): the same failure has the same
//! name in a pipe and in a queue, `try_` calls fail with `Empty`/`Full`,
//! `_timeout` calls with `Timeout`, and each becomes the one `Error`
//! variant that exists for it.

use multiproc::{
    CodecError, Error, GetError, GetTimeoutError, Pipe, PutError, PutTimeoutError, Queue,
    RecvError, RecvTimeoutError, SendError, TryGetError, TryPutError, TryRecvError,
};
use std::time::Duration;

const SHORT: Duration = Duration::from_millis(10);

/// A value postcard cannot encode: a sequence of unknown length.
struct Unsized;

impl serde::Serialize for Unsized {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        s.serialize_seq(None)?.end()
    }
}

impl<'de> serde::Deserialize<'de> for Unsized {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unsized)
    }
}

#[test]
fn waiting_too_long_is_timeout_and_finding_nothing_is_empty_in_pipes_and_queues() {
    let (a, _b) = Pipe::<u8>::new().unwrap();
    assert!(matches!(
        a.recv_timeout(SHORT),
        Err(RecvTimeoutError::Timeout)
    ));
    assert!(matches!(a.try_recv(), Err(TryRecvError::Empty)));
    assert!(matches!(
        Error::from(a.recv_timeout(SHORT).unwrap_err()),
        Error::Timeout
    ));
    assert!(matches!(
        Error::from(a.try_recv().unwrap_err()),
        Error::Empty
    ));

    let q = Queue::<u8>::new().unwrap();
    assert!(matches!(
        q.get_timeout(SHORT),
        Err(GetTimeoutError::Timeout)
    ));
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    assert!(matches!(
        Error::from(q.get_timeout(SHORT).unwrap_err()),
        Error::Timeout
    ));
    assert!(matches!(
        Error::from(q.try_get().unwrap_err()),
        Error::Empty
    ));

    let full = Queue::with_maxsize(1).unwrap();
    full.put(1u8).unwrap();
    let timed_out = full.put_timeout(2, SHORT).unwrap_err();
    assert_eq!(
        timed_out.to_string(),
        "timed out waiting for room in the queue"
    );
    assert!(matches!(timed_out, PutTimeoutError::Timeout(2)));
    assert!(matches!(Error::from(timed_out), Error::Timeout));
    let now = full.try_put(3).unwrap_err();
    assert_eq!(now.to_string(), "the queue is full");
    assert!(matches!(Error::from(now), Error::Full));
    // Nothing was lost: the one item is still there.
    assert_eq!(full.get_timeout(SHORT).unwrap(), 1);
}

#[test]
fn a_closed_end_is_closed_everywhere() {
    let (a, b) = Pipe::<u8>::new().unwrap();
    drop(b);
    assert!(matches!(a.send(&1), Err(SendError::Closed)));
    assert!(matches!(a.recv(), Err(RecvError::Closed)));
    assert!(matches!(Error::from(a.recv().unwrap_err()), Error::Closed));

    let q = Queue::<u8>::new().unwrap();
    q.close();
    let err = q.put(4).unwrap_err();
    assert!(matches!(err, PutError::Closed(4)));
    assert!(matches!(Error::from(err), Error::Closed));
    assert!(matches!(q.try_put(5), Err(TryPutError::Closed(5))));
    assert!(matches!(
        q.put_timeout(6, SHORT),
        Err(PutTimeoutError::Closed(6))
    ));
    assert!(matches!(q.get(), Err(GetError::Closed)));
    assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
    assert!(matches!(q.get_timeout(SHORT), Err(GetTimeoutError::Closed)));
    assert!(matches!(Error::from(q.get().unwrap_err()), Error::Closed));
}

#[test]
fn what_cannot_be_encoded_is_encode_with_the_codec_error_and_the_item_back() {
    let (a, _b) = Pipe::<Unsized>::new().unwrap();
    let err = a.send(&Unsized).unwrap_err();
    assert!(matches!(
        err,
        SendError::Encode(CodecError::Unencodable { .. })
    ));
    assert!(matches!(Error::from(err), Error::Codec(_)));

    let q = Queue::<Unsized>::new().unwrap();
    let err = q.put(Unsized).unwrap_err();
    assert!(matches!(
        err,
        PutError::Encode(Unsized, CodecError::Unencodable { .. })
    ));
    assert!(err.to_string().contains("length"), "{err}");
    assert!(matches!(Error::from(err), Error::Codec(_)));
    assert!(matches!(
        q.try_put(Unsized),
        Err(TryPutError::Encode(Unsized, _))
    ));
    let err = q.put_timeout(Unsized, SHORT).unwrap_err();
    assert!(matches!(Error::from(err), Error::Codec(_)));
    assert_eq!(q.qsize(), 0, "nothing was put");
}
