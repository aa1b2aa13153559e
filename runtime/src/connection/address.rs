//! Where a [`Listener`](super::Listener) listens: a Unix socket path, a
//! Linux abstract socket name, or a TCP address.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::SocketAddr as UnixAddr;
use std::path::{Path, PathBuf};

/// The address of a [`Listener`](super::Listener) or of a connection's peer
/// (Python's `address` and `last_accepted`, which are a path string for
/// `AF_UNIX`, a `'\0'`-prefixed string for an abstract socket and a
/// `(host, port)` tuple for `AF_INET`).
///
/// Strings convert by these rules ([`IntoAddress`]):
/// - a leading `@` or NUL byte: a Linux abstract socket (`"@svc"`, `"\0svc"`);
/// - containing `/`: a filesystem Unix socket (`"/tmp/svc.sock"`, `"./s"`);
/// - `host:port` (port 0 picks a free one): TCP, resolved at bind or
///   connect (`"127.0.0.1:0"`, `"localhost:6000"`, `"[::1]:6000"`);
/// - anything else: a Unix socket path relative to the working directory.
///
/// [`Display`](fmt::Display) writes the form those rules read back.
///
/// ```
/// use multiproc::Address;
/// assert_eq!(Address::parse("@svc")?, Address::Abstract(b"svc".to_vec()));
/// assert_eq!(Address::parse("/tmp/s.sock")?, Address::Unix("/tmp/s.sock".into()));
/// assert_eq!(Address::parse("127.0.0.1:6000")?, Address::Tcp("127.0.0.1:6000".parse().unwrap()));
/// assert_eq!(Address::parse("127.0.0.1:6000")?.to_string(), "127.0.0.1:6000");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// A Unix socket in the filesystem. A listener removes its socket file
    /// when it closes. An empty path is a peer that never bound a name (the
    /// usual client), as Python's `''`.
    Unix(PathBuf),
    /// A Linux abstract Unix socket: a name without a file, gone when the
    /// last socket bound to it closes.
    Abstract(Vec<u8>),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl Address {
    /// Reads an address by the rules above, resolving a TCP host name.
    ///
    /// ```
    /// use multiproc::Address;
    ///
    /// assert_eq!(Address::parse("\0svc")?, Address::Abstract(b"svc".to_vec())); // as "@svc"
    /// assert_eq!(Address::parse("svc.sock")?, Address::Unix("svc.sock".into())); // relative
    /// assert!(matches!(Address::parse("[::1]:0")?, Address::Tcp(a) if a.is_ipv6() && a.port() == 0));
    /// let parsed: Address = "@svc".parse()?; // `FromStr` does the same
    /// assert_eq!(parsed.to_string(), "@svc");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn parse(s: &str) -> io::Result<Address> {
        if let Some(name) = s.strip_prefix('@').or_else(|| s.strip_prefix('\0')) {
            return Ok(Address::Abstract(name.as_bytes().to_vec()));
        }
        if s.contains('/') {
            return Ok(Address::Unix(PathBuf::from(s)));
        }
        if let Some((host, port)) = s.rsplit_once(':') {
            if !host.is_empty() && port.parse::<u16>().is_ok() {
                return resolve(s);
            }
        }
        Ok(Address::Unix(PathBuf::from(s)))
    }

    /// The Unix socket address of an `Abstract` or `Unix` address.
    pub(crate) fn unix(&self) -> io::Result<Option<UnixAddr>> {
        match self {
            Address::Unix(path) => UnixAddr::from_pathname(path).map(Some),
            Address::Abstract(name) => UnixAddr::from_abstract_name(name).map(Some),
            Address::Tcp(_) => Ok(None),
        }
    }

    /// The address a Unix socket reports (`local_addr`, `peer_addr`).
    pub(crate) fn from_unix(addr: &UnixAddr) -> Address {
        if let Some(name) = addr.as_abstract_name() {
            Address::Abstract(name.to_vec())
        } else {
            Address::Unix(
                addr.as_pathname()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
            )
        }
    }
}

fn resolve(s: &str) -> io::Result<Address> {
    s.to_socket_addrs()?
        .next()
        .map(Address::Tcp)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{s:?} resolves to no address"),
            )
        })
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "{}", path.display()),
            Address::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            Address::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

impl std::str::FromStr for Address {
    type Err = io::Error;
    fn from_str(s: &str) -> io::Result<Address> {
        Address::parse(s)
    }
}

/// What [`Listener::bind`](super::Listener::bind) and
/// [`Client::connect`](super::Client::connect) take as an address: an
/// [`Address`], a string read by [`Address::parse`], a [`SocketAddr`], a
/// `(host, port)` pair as Python's, or a filesystem path.
///
/// ```
/// use multiproc::{Address, IntoAddress};
/// let tcp = ("127.0.0.1", 0).into_address()?;
/// assert!(matches!(tcp, Address::Tcp(_)));
/// let unix = std::path::Path::new("svc.sock").into_address()?;
/// assert_eq!(unix, Address::Unix("svc.sock".into()));
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait IntoAddress {
    /// The address, resolving host names.
    ///
    /// ```
    /// use multiproc::{Address, IntoAddress};
    /// use std::net::SocketAddr;
    ///
    /// let tcp: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    /// assert_eq!(tcp.into_address()?, Address::Tcp(tcp));
    /// assert_eq!("@svc".into_address()?, Address::Abstract(b"svc".to_vec()));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn into_address(self) -> io::Result<Address>;
}

impl IntoAddress for Address {
    fn into_address(self) -> io::Result<Address> {
        Ok(self)
    }
}

impl IntoAddress for &Address {
    fn into_address(self) -> io::Result<Address> {
        Ok(self.clone())
    }
}

impl IntoAddress for &str {
    fn into_address(self) -> io::Result<Address> {
        Address::parse(self)
    }
}

impl IntoAddress for String {
    fn into_address(self) -> io::Result<Address> {
        Address::parse(&self)
    }
}

impl IntoAddress for &String {
    fn into_address(self) -> io::Result<Address> {
        Address::parse(self)
    }
}

impl IntoAddress for SocketAddr {
    fn into_address(self) -> io::Result<Address> {
        Ok(Address::Tcp(self))
    }
}

impl IntoAddress for (&str, u16) {
    fn into_address(self) -> io::Result<Address> {
        resolve(&format!("{}:{}", self.0, self.1)).or_else(|_| {
            // An IPv6 literal needs brackets in the joined form.
            resolve(&format!("[{}]:{}", self.0, self.1))
        })
    }
}

impl IntoAddress for &Path {
    fn into_address(self) -> io::Result<Address> {
        Ok(Address::Unix(self.to_path_buf()))
    }
}

impl IntoAddress for PathBuf {
    fn into_address(self) -> io::Result<Address> {
        Ok(Address::Unix(self))
    }
}

impl IntoAddress for &PathBuf {
    fn into_address(self) -> io::Result<Address> {
        Ok(Address::Unix(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_read_by_the_documented_rules() {
        assert_eq!(
            Address::parse("\0x").unwrap(),
            Address::Abstract(b"x".to_vec())
        );
        assert_eq!(Address::parse("@").unwrap(), Address::Abstract(Vec::new()));
        assert_eq!(
            Address::parse("a/b:1").unwrap(),
            Address::Unix("a/b:1".into())
        );
        assert_eq!(
            Address::parse("svc.sock").unwrap(),
            Address::Unix("svc.sock".into())
        );
        assert_eq!(
            Address::parse("x:notaport").unwrap(),
            Address::Unix("x:notaport".into())
        );
        assert_eq!(
            Address::parse("[::1]:7").unwrap(),
            Address::Tcp("[::1]:7".parse().unwrap())
        );
        assert!(matches!(Address::parse("localhost:0").unwrap(), Address::Tcp(a) if a.port() == 0));
        assert!(Address::parse("no-such-host.invalid:80").is_err());
    }

    #[test]
    fn display_reads_back() {
        for s in ["@svc", "/tmp/x.sock", "127.0.0.1:80", "[::1]:80"] {
            assert_eq!(Address::parse(s).unwrap().to_string(), s);
        }
    }
}
