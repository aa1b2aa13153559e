//! `RemoteError`: an error a worker can return, since most error types
//! (`std::io::Error` first) cannot cross the process boundary.

use serde::{Deserialize, Serialize};
use std::error::Error as StdError;
use std::fmt;
use std::io;

/// An error that crosses the process boundary: what kind it was, its
/// message and the messages of its causes, as text.
///
/// A worker's result must be `Serialize + DeserializeOwned`, and
/// `std::io::Error` is neither: besides an OS error code it may hold an
/// arbitrary boxed `dyn Error` (`io::Error::new(kind, anything)`), which
/// serde cannot write nor rebuild in another process. Most error types
/// are in the same place (they hold other errors, or are not serde types).
/// So a worker that can fail returns `Result<T, RemoteError>`, and `?`
/// converts an `io::Error` (and the other errors listed under `From`) on
/// the way:
///
/// ```
/// use multiproc::{Process, RemoteError, worker};
/// use std::io::ErrorKind;
///
/// #[worker]
/// fn file_len(path: String) -> Result<u64, RemoteError> {
///     Ok(std::fs::metadata(&path)?.len())
/// }
///
/// let mut p = Process::new(file_len, ("/no/such/file".to_string(),));
/// p.start()?;
/// let err = p.result()?.unwrap_err(); // the worker ran, and failed
/// assert_eq!(err.io_kind(), Some(ErrorKind::NotFound));
/// assert_eq!(err.kind(), "NotFound");
/// assert!(err.message().contains("No such file"), "{err}");
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// What is kept:
///
/// - [`kind`](Self::kind): for an `io::Error`, the name of its
///   [`ErrorKind`](io::ErrorKind) (`"NotFound"`), which
///   [`io_kind`](Self::io_kind) turns back into the `ErrorKind`; for any
///   other error given to [`RemoteError::new`] or a `From`, its type's
///   [`std::any::type_name`] (`"core::num::error::ParseIntError"`); for a
///   plain message (`From<String>`, `From<&str>`), `"message"`.
/// - [`message`](Self::message): the error's `Display`.
/// - [`chain`](Self::chain): the `Display` of each of its
///   [`source`](std::error::Error::source)s, outermost first.
///
/// Its own `Display` is the message followed by the chain, each after `: `
/// (a cause whose text the previous one already contains is not repeated);
/// its `source()` is `None`, since the chain is only text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RemoteError {
    kind: String,
    message: String,
    chain: Vec<String>,
}

impl RemoteError {
    /// The text of `error` and of its sources; its kind is its
    /// `ErrorKind`'s name if it is an `io::Error`, else the name of `E`.
    ///
    /// ```
    /// use multiproc::RemoteError;
    /// let parse = "x".parse::<u8>().unwrap_err();
    /// let err = RemoteError::new(&parse);
    /// assert_eq!(err.kind(), std::any::type_name::<std::num::ParseIntError>());
    /// assert_eq!(err.message(), "invalid digit found in string");
    /// ```
    pub fn new<E: StdError + 'static>(error: &E) -> Self {
        Self::describe(error, std::any::type_name::<E>())
    }

    /// The message, chain and kind of `error`: `type_name` unless it is an
    /// `io::Error` (its kind's name) or a `RemoteError` (copied).
    fn describe(error: &(dyn StdError + 'static), type_name: &str) -> Self {
        if let Some(remote) = error.downcast_ref::<RemoteError>() {
            return remote.clone();
        }
        let kind = match error.downcast_ref::<io::Error>() {
            Some(io) => format!("{:?}", io.kind()),
            None => type_name.to_string(),
        };
        let chain = std::iter::successors(error.source(), |&e| e.source())
            .map(ToString::to_string)
            .collect();
        RemoteError {
            kind,
            message: error.to_string(),
            chain,
        }
    }

    /// A boxed error: named by its type if it is one the `From`s list,
    /// else by the box's type.
    fn from_dyn(error: &(dyn StdError + 'static), boxed: &str) -> Self {
        macro_rules! known {
            ($($ty:ty),*) => {
                $(if error.is::<$ty>() {
                    return Self::describe(error, std::any::type_name::<$ty>());
                })*
            };
        }
        known!(
            std::num::ParseIntError,
            std::num::ParseFloatError,
            std::str::ParseBoolError,
            std::num::TryFromIntError,
            std::fmt::Error,
            std::string::FromUtf8Error,
            std::str::Utf8Error,
            std::env::VarError,
            std::net::AddrParseError,
            std::time::SystemTimeError,
            std::ffi::NulError
        );
        Self::describe(error, boxed)
    }

    /// The error's kind: an `io::ErrorKind`'s name, a type's name, or
    /// `"message"` (see the type's docs).
    ///
    /// ```
    /// use multiproc::RemoteError;
    /// use std::io;
    /// let err = RemoteError::from(io::Error::from(io::ErrorKind::TimedOut));
    /// assert_eq!(err.kind(), "TimedOut");
    /// assert_eq!(RemoteError::from("no luck").kind(), "message");
    /// ```
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The error's own `Display`, without its causes.
    ///
    /// ```
    /// use multiproc::RemoteError;
    /// assert_eq!(RemoteError::from("no luck").message(), "no luck");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `Display` of each cause (`source()`), outermost first.
    ///
    /// ```
    /// use multiproc::RemoteError;
    /// use std::io;
    /// let io = io::Error::new(io::ErrorKind::Other, "disk on fire");
    /// let err = RemoteError::new(&Saving(io));
    /// assert_eq!(err.message(), "could not save");
    /// assert_eq!(err.chain(), ["disk on fire"]);
    /// assert_eq!(err.to_string(), "could not save: disk on fire");
    ///
    /// #[derive(Debug)]
    /// struct Saving<E>(E);
    /// impl<E> std::fmt::Display for Saving<E> {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         f.write_str("could not save")
    ///     }
    /// }
    /// impl<E: std::error::Error + 'static> std::error::Error for Saving<E> {
    ///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
    ///         Some(&self.0)
    ///     }
    /// }
    /// ```
    pub fn chain(&self) -> &[String] {
        &self.chain
    }

    /// The `io::ErrorKind` the error had, if it was an `io::Error` of a
    /// kind that has a stable name.
    ///
    /// ```
    /// use multiproc::RemoteError;
    /// use std::io;
    /// let err = RemoteError::from(io::Error::from(io::ErrorKind::PermissionDenied));
    /// assert_eq!(err.io_kind(), Some(io::ErrorKind::PermissionDenied));
    /// assert_eq!(RemoteError::from("no luck").io_kind(), None);
    /// ```
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        use io::ErrorKind as K;
        Some(match self.kind.as_str() {
            "NotFound" => K::NotFound,
            "PermissionDenied" => K::PermissionDenied,
            "ConnectionRefused" => K::ConnectionRefused,
            "ConnectionReset" => K::ConnectionReset,
            "HostUnreachable" => K::HostUnreachable,
            "NetworkUnreachable" => K::NetworkUnreachable,
            "ConnectionAborted" => K::ConnectionAborted,
            "NotConnected" => K::NotConnected,
            "AddrInUse" => K::AddrInUse,
            "AddrNotAvailable" => K::AddrNotAvailable,
            "NetworkDown" => K::NetworkDown,
            "BrokenPipe" => K::BrokenPipe,
            "AlreadyExists" => K::AlreadyExists,
            "WouldBlock" => K::WouldBlock,
            "NotADirectory" => K::NotADirectory,
            "IsADirectory" => K::IsADirectory,
            "DirectoryNotEmpty" => K::DirectoryNotEmpty,
            "ReadOnlyFilesystem" => K::ReadOnlyFilesystem,
            "StaleNetworkFileHandle" => K::StaleNetworkFileHandle,
            "InvalidInput" => K::InvalidInput,
            "InvalidData" => K::InvalidData,
            "TimedOut" => K::TimedOut,
            "WriteZero" => K::WriteZero,
            "StorageFull" => K::StorageFull,
            "NotSeekable" => K::NotSeekable,
            "QuotaExceeded" => K::QuotaExceeded,
            "FileTooLarge" => K::FileTooLarge,
            "ResourceBusy" => K::ResourceBusy,
            "ExecutableFileBusy" => K::ExecutableFileBusy,
            "Deadlock" => K::Deadlock,
            "CrossesDevices" => K::CrossesDevices,
            "TooManyLinks" => K::TooManyLinks,
            "ArgumentListTooLong" => K::ArgumentListTooLong,
            "Interrupted" => K::Interrupted,
            "Unsupported" => K::Unsupported,
            "UnexpectedEof" => K::UnexpectedEof,
            "OutOfMemory" => K::OutOfMemory,
            "Other" => K::Other,
            _ => return None,
        })
    }

    /// An `io::Error` of the same kind ([`io_kind`](Self::io_kind), else
    /// `Other`) that holds this error (its `Display` is this one's).
    ///
    /// ```
    /// use multiproc::RemoteError;
    /// use std::io;
    /// let err = RemoteError::from(io::Error::new(io::ErrorKind::NotFound, "gone"));
    /// let io = err.clone().into_io();
    /// assert_eq!(io.kind(), io::ErrorKind::NotFound);
    /// assert_eq!(io.to_string(), "gone");
    /// assert_eq!(RemoteError::from("odd").into_io().kind(), io::ErrorKind::Other);
    /// ```
    pub fn into_io(self) -> io::Error {
        io::Error::new(self.io_kind().unwrap_or(io::ErrorKind::Other), self)
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        let mut previous = &self.message;
        for cause in &self.chain {
            if !previous.contains(cause.as_str()) {
                write!(f, ": {cause}")?;
            }
            previous = cause;
        }
        Ok(())
    }
}

impl StdError for RemoteError {}

impl From<io::Error> for RemoteError {
    fn from(error: io::Error) -> Self {
        // A `RemoteError` made into an `io::Error` comes back as it was.
        if error
            .get_ref()
            .is_some_and(|inner| inner.is::<RemoteError>())
        {
            let inner = error.into_inner().expect("checked above");
            return *inner.downcast::<RemoteError>().expect("checked above");
        }
        RemoteError::new(&error)
    }
}

impl From<RemoteError> for io::Error {
    fn from(error: RemoteError) -> Self {
        error.into_io()
    }
}

impl From<String> for RemoteError {
    fn from(message: String) -> Self {
        RemoteError {
            kind: "message".to_string(),
            message,
            chain: Vec::new(),
        }
    }
}

impl From<&str> for RemoteError {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

impl From<Box<dyn StdError + Send + Sync>> for RemoteError {
    fn from(error: Box<dyn StdError + Send + Sync>) -> Self {
        Self::from_dyn(&*error, std::any::type_name::<dyn StdError + Send + Sync>())
    }
}

impl From<Box<dyn StdError>> for RemoteError {
    fn from(error: Box<dyn StdError>) -> Self {
        Self::from_dyn(&*error, std::any::type_name::<dyn StdError>())
    }
}

/// `From` for error types of `std` that hold no other error.
macro_rules! from_std {
    ($($ty:ty),* $(,)?) => {
        $(
            impl From<$ty> for RemoteError {
                fn from(error: $ty) -> Self {
                    RemoteError::new(&error)
                }
            }
        )*
    };
}

from_std!(
    std::num::ParseIntError,
    std::num::ParseFloatError,
    std::str::ParseBoolError,
    std::num::TryFromIntError,
    std::fmt::Error,
    std::string::FromUtf8Error,
    std::str::Utf8Error,
    std::env::VarError,
    std::net::AddrParseError,
    std::time::SystemTimeError,
    std::ffi::NulError,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_kind_maps_back() {
        use io::ErrorKind as K;
        let kinds = [
            K::NotFound,
            K::PermissionDenied,
            K::ConnectionRefused,
            K::ConnectionReset,
            K::HostUnreachable,
            K::NetworkUnreachable,
            K::ConnectionAborted,
            K::NotConnected,
            K::AddrInUse,
            K::AddrNotAvailable,
            K::NetworkDown,
            K::BrokenPipe,
            K::AlreadyExists,
            K::WouldBlock,
            K::NotADirectory,
            K::IsADirectory,
            K::DirectoryNotEmpty,
            K::ReadOnlyFilesystem,
            K::StaleNetworkFileHandle,
            K::InvalidInput,
            K::InvalidData,
            K::TimedOut,
            K::WriteZero,
            K::StorageFull,
            K::NotSeekable,
            K::QuotaExceeded,
            K::FileTooLarge,
            K::ResourceBusy,
            K::ExecutableFileBusy,
            K::Deadlock,
            K::CrossesDevices,
            K::TooManyLinks,
            K::ArgumentListTooLong,
            K::Interrupted,
            K::Unsupported,
            K::UnexpectedEof,
            K::OutOfMemory,
            K::Other,
        ];
        for kind in kinds {
            let err = RemoteError::from(io::Error::from(kind));
            assert_eq!(err.kind(), format!("{kind:?}"));
            assert_eq!(err.io_kind(), Some(kind), "{kind:?}");
            assert_eq!(err.into_io().kind(), kind);
        }
    }

    #[test]
    fn display_does_not_repeat_a_cause_the_message_contains() {
        let err = RemoteError {
            kind: "k".into(),
            message: "reading config: gone".into(),
            chain: vec!["gone".into(), "deeper".into()],
        };
        assert_eq!(err.to_string(), "reading config: gone: deeper");
    }

    #[test]
    fn an_io_error_made_of_a_remote_error_comes_back_whole() {
        let err = RemoteError::from(io::Error::from(io::ErrorKind::NotFound));
        let back = RemoteError::from(err.clone().into_io());
        assert_eq!(back, err);
        let boxed: Box<dyn StdError + Send + Sync> = Box::new(err.clone());
        assert_eq!(RemoteError::from(boxed), err);
    }
}
