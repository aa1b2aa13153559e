//! `Listener` and `Client`: connections between processes that are not
//! parent and child, Python's `multiprocessing.connection`.
//!
//! A [`Listener`] binds an [`Address`] (a Unix socket path, a Linux abstract
//! socket or TCP) and accepts [`Connection`]s; [`Client::connect`] opens
//! one. With an authkey, both sides run Python's HMAC challenge–response
//! before the connection is handed out, and the wire (framing and
//! handshake) is CPython's, so a Python program with
//! `multiprocessing.connection.Client(address, authkey=...)` talks to a Rust
//! `Listener` through `send_bytes`/`recv_bytes`, and the reverse.
//!
//! Handshakes never block the listener: [`Listener::accept`] runs every
//! handshake in progress at once, so a peer that connects and stays silent,
//! sends garbage or stops halfway costs only its own connection — it fails
//! with a typed error from `accept` when it breaks the protocol or its
//! handshake timeout passes (5 s unless told otherwise), and the listener
//! goes on accepting.

mod address;
#[cfg(feature = "tokio")]
mod aio;
mod auth;
mod handshake;

pub use address::{Address, IntoAddress};

use crate::error::{Error, Result};
use crate::pipe::Connection;
use crate::wait::{Sealed, WaitFd, Waitable};
use handshake::{Handshake, Progress};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a peer has to complete the authkey handshake unless told
/// otherwise.
///
/// ```
/// use multiproc::{DEFAULT_HANDSHAKE_TIMEOUT, Listener};
/// use std::time::Duration;
///
/// assert_eq!(DEFAULT_HANDSHAKE_TIMEOUT, Duration::from_secs(5));
/// // Peers on a slow network get twice as long:
/// let listener = Listener::bind("127.0.0.1:0", Some(b"key".as_slice()))?
///     .with_handshake_timeout(DEFAULT_HANDSHAKE_TIMEOUT * 2);
/// # drop(listener);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many handshakes run at once; more connections wait in the
/// kernel's backlog until one ends.
const MAX_PENDING: usize = 4096;

const LISTENER: u64 = u64::MAX;
const WAKE: u64 = u64::MAX - 1;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Checks an authkey: an empty one is refused (Python's `Listener` takes
/// `b""` to mean "no authentication" while its `Client` runs the handshake
/// with it, so the two never agree; here `None` says "no authentication").
fn check_key(authkey: Option<&[u8]>) -> Result<Option<Vec<u8>>> {
    match authkey {
        Some([]) => Err(Error::InvalidArgument(
            "an empty authkey authenticates nothing: pass None for no authentication, \
             or a secret (e.g. current_process().authkey())"
                .to_string(),
        )),
        other => Ok(other.map(<[u8]>::to_vec)),
    }
}

enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Socket {
    fn accept(&self) -> io::Result<(OwnedFd, Address)> {
        match self {
            Socket::Unix(l) => l
                .accept()
                .map(|(s, a)| (OwnedFd::from(s), Address::from_unix(&a))),
            Socket::Tcp(l) => l.accept().map(|(s, a)| (OwnedFd::from(s), Address::Tcp(a))),
        }
    }

    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Socket::Unix(l) => l.as_fd(),
            Socket::Tcp(l) => l.as_fd(),
        }
    }
}

/// A handshake in progress, and who it is with.
struct Pending {
    handshake: Handshake,
    peer: Address,
}

struct State {
    socket: Option<Socket>,
    pending: HashMap<u64, Pending>,
    next_id: u64,
    last_accepted: Option<Address>,
    /// The listening socket is out of the epoll set: every handshake slot is
    /// taken, or the process ran out of descriptors.
    paused: Option<Pause>,
}

/// Why and until when accepting stopped.
struct Pause {
    /// Handshakes in progress when it stopped: one ending frees a slot or a
    /// descriptor.
    pending: usize,
    /// Out of descriptors: look at the backlog again then, anyway.
    retry_at: Option<Instant>,
}

/// A bound socket that accepts connections: Python's
/// `multiprocessing.connection.Listener`.
///
/// `accept` hands out typed [`Connection`]s; with an authkey, only peers
/// that prove they hold the same key (Python's HMAC challenge–response, in
/// CPython 3.12's `{sha256}` form or 3.11's legacy HMAC-MD5 form) get one. A
/// filesystem socket's file is removed when the listener closes. Several
/// listeners on distinct addresses can be open at once; an address in use
/// is an [`io::ErrorKind::AddrInUse`] error.
///
/// ```
/// use multiproc::{Client, Connection, Listener};
///
/// let listener = Listener::bind("127.0.0.1:0", Some(b"secret".as_slice()))?;
/// let address = listener.address().clone(); // port 0 picked a free port
/// let client = std::thread::spawn(move || -> multiproc::Result<String> {
///     let conn: Connection<String> = Client::connect(&address, Some(b"secret".as_slice()))?;
///     conn.send(&"ping".to_string())?;
///     Ok(conn.recv()?)
/// });
/// let conn: Connection<String> = listener.accept()?;
/// assert_eq!(conn.recv()?, "ping");
/// conn.send(&"pong".to_string())?;
/// assert_eq!(client.join().unwrap()?, "pong");
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Listener {
    state: Mutex<State>,
    epoll: Epoll,
    wake: EventFd,
    closed: AtomicBool,
    address: Address,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Duration,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authenticated", &self.authkey.is_some())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Listener {
    /// Binds `address` and listens (Python's `Listener(address, authkey=...)`).
    /// `authkey: None` accepts anyone; `Some(key)` runs the handshake with
    /// every peer. An empty key is [`Error::InvalidArgument`].
    ///
    /// ```
    /// use multiproc::{Address, Listener};
    /// let a = Listener::bind("@multiproc-doc-bind", None)?;
    /// assert_eq!(a.address(), &Address::Abstract(b"multiproc-doc-bind".to_vec()));
    /// let again = Listener::bind("@multiproc-doc-bind", None);
    /// assert!(matches!(again, Err(multiproc::Error::Io(e)) if e.kind() == std::io::ErrorKind::AddrInUse));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn bind(address: impl IntoAddress, authkey: Option<&[u8]>) -> Result<Listener> {
        let authkey = check_key(authkey)?;
        let wanted = address.into_address()?;
        let in_use = |e: io::Error| {
            if e.kind() == io::ErrorKind::AddrInUse {
                Error::Io(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("the address {wanted} is in use"),
                ))
            } else {
                Error::Io(e)
            }
        };
        let (socket, address) = match &wanted {
            Address::Tcp(addr) => {
                let l = TcpListener::bind(addr).map_err(in_use)?;
                let local = Address::Tcp(l.local_addr()?);
                (Socket::Tcp(l), local)
            }
            unix => {
                let addr = unix
                    .unix()?
                    .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
                let l = UnixListener::bind_addr(&addr).map_err(in_use)?;
                let local = Address::from_unix(&l.local_addr()?);
                (Socket::Unix(l), local)
            }
        };
        match &socket {
            Socket::Unix(l) => l.set_nonblocking(true)?,
            Socket::Tcp(l) => l.set_nonblocking(true)?,
        }
        // std listens with a backlog of 128; a server that many clients
        // reach at once wants the kernel's limit (`somaxconn`). Listening
        // again on a listening socket only changes its backlog.
        nix::sys::socket::listen(&socket.as_fd(), nix::sys::socket::Backlog::MAXCONN)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        epoll.add(
            socket.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, LISTENER),
        )?;
        epoll.add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
        let listener = Listener {
            state: Mutex::new(State {
                socket: Some(socket),
                pending: HashMap::new(),
                next_id: 0,
                last_accepted: None,
                paused: None,
            }),
            epoll,
            wake,
            closed: AtomicBool::new(false),
            address,
            authkey,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        };
        Ok(listener)
    }

    /// Gives each peer `timeout` to complete the authkey handshake (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]); one that does not fails alone.
    ///
    /// ```
    /// use std::time::Duration;
    /// let l = multiproc::Listener::bind("127.0.0.1:0", Some(b"k".as_slice()))?
    ///     .with_handshake_timeout(Duration::from_millis(500));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Listener {
        self.handshake_timeout = timeout;
        self
    }

    /// The address bound (Python's `address`): for TCP with port 0, the port
    /// the kernel picked.
    ///
    /// ```
    /// let l = multiproc::Listener::bind("127.0.0.1:0", None)?;
    /// assert!(matches!(l.address(), multiproc::Address::Tcp(a) if a.port() != 0));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The peer address of the last connection `accept` returned (Python's
    /// `last_accepted`): a TCP peer's address, or for a Unix peer its bound
    /// name — usually none, an empty [`Address::Unix`] path, as Python's
    /// `''`. `None` before the first.
    ///
    /// ```
    /// use multiproc::{Client, Connection, Listener};
    /// let l = Listener::bind("127.0.0.1:0", None)?;
    /// assert_eq!(l.last_accepted(), None);
    /// let _c: Connection<u8> = Client::connect(l.address(), None)?;
    /// let _s: Connection<u8> = l.accept()?;
    /// assert!(matches!(l.last_accepted(), Some(multiproc::Address::Tcp(_))));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn last_accepted(&self) -> Option<Address> {
        lock(&self.state).last_accepted.clone()
    }

    /// Waits for a peer and returns its connection, once it has passed the
    /// handshake if there is an authkey. A peer that fails the handshake
    /// (a wrong key: [`Error::AuthenticationFailed`]; garbage, a frame over
    /// 256 bytes, a close or its handshake timeout: the same, saying which)
    /// is an error from this call, for that peer only: call `accept` again
    /// to go on. A closed listener is [`Error::Closed`], also for a thread
    /// blocked here when another closes it.
    ///
    /// See [`Listener`] for an example.
    ///
    /// ```
    /// use multiproc::{Client, Connection, Error, Listener};
    ///
    /// let listener = Listener::bind("127.0.0.1:0", Some(b"right".as_slice()))?;
    /// let address = listener.address().clone();
    /// let peers = std::thread::spawn(move || {
    ///     let _ = Client::connect::<u8>(&address, Some(b"wrong".as_slice())); // refused
    ///     Client::connect::<u8>(&address, Some(b"right".as_slice()))?.send(&7)?;
    ///     Ok::<(), Error>(())
    /// });
    /// // The first peer fails alone; the next `accept` gets the second.
    /// assert!(matches!(listener.accept::<u8>(), Err(Error::AuthenticationFailed { .. })));
    /// let conn: Connection<u8> = listener.accept()?;
    /// assert_eq!(conn.recv()?, 7);
    /// peers.join().unwrap()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn accept<T>(&self) -> Result<Connection<T>> {
        self.accept_until(None).map(Connection::from_socket)
    }

    /// As [`accept`](Self::accept), giving up with [`Error::Timeout`] after
    /// `timeout`. Handshakes in progress go on in the next call.
    ///
    /// ```
    /// use std::time::Duration;
    /// let l = multiproc::Listener::bind("127.0.0.1:0", None)?;
    /// let r = l.accept_timeout::<u8>(Duration::from_millis(10));
    /// assert!(matches!(r, Err(multiproc::Error::Timeout)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn accept_timeout<T>(&self, timeout: Duration) -> Result<Connection<T>> {
        // A timeout too large for an `Instant` waits forever.
        let deadline = Instant::now().checked_add(timeout);
        self.accept_until(deadline).map(Connection::from_socket)
    }

    /// Closes the listening socket (Python's `close()`; dropping does the
    /// same): a filesystem socket's file is removed, handshakes in progress
    /// are dropped, and a thread blocked in `accept` returns
    /// [`Error::Closed`]. Connections already accepted stay open. A second
    /// close does nothing.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("multiproc-doc-{}.sock", std::process::id()));
    /// let l = multiproc::Listener::bind(&path, None)?;
    /// assert!(path.exists());
    /// l.close();
    /// assert!(!path.exists());
    /// assert!(matches!(l.accept::<u8>(), Err(multiproc::Error::Closed)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.wake.write(1);
        let mut state = lock(&self.state);
        state.pending.clear();
        if state.socket.take().is_some() {
            if let Address::Unix(path) = &self.address {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    fn accept_until(&self, deadline: Option<Instant>) -> Result<OwnedFd> {
        let mut state = lock(&self.state);
        let mut events = [EpollEvent::empty(); 64];
        loop {
            if self.closed.load(Ordering::Acquire) || state.socket.is_none() {
                return Err(Error::Closed);
            }
            // A handshake past its deadline fails now, alone.
            let now = Instant::now();
            if let Some(id) = state
                .pending
                .iter()
                .find(|(_, p)| p.handshake.deadline <= now)
                .map(|(id, _)| *id)
            {
                self.forget(&mut state, id);
                return Err(handshake::timed_out(self.handshake_timeout));
            }
            let next = state.pending.values().map(|p| p.handshake.deadline).min();
            if let Some(pause) = &state.paused {
                let ended = state.pending.len() < pause.pending;
                if ended || pause.retry_at.is_some_and(|t| now >= t) {
                    self.resume(&mut state)?;
                }
            }
            let retry = state.paused.as_ref().and_then(|p| p.retry_at);
            let until = [next, deadline, retry].into_iter().flatten().min();
            let timeout = match until {
                None => PollTimeout::NONE,
                // Only looking (an async accept's try): no wait at all.
                Some(u) if u <= now => PollTimeout::ZERO,
                Some(u) => {
                    let left = u.saturating_duration_since(now);
                    PollTimeout::try_from(left.as_millis().max(1)).unwrap_or(PollTimeout::MAX)
                }
            };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(e.into()),
            };
            for event in &events[..n] {
                match event.data() {
                    WAKE => {}
                    LISTENER => {
                        if let Some(fd) = self.accept_ready(&mut state)? {
                            return Ok(fd);
                        }
                    }
                    id => {
                        let Some(pending) = state.pending.get_mut(&id) else {
                            continue;
                        };
                        match pending.handshake.advance() {
                            Ok(Progress::Pending) => {}
                            Ok(Progress::Done) => {
                                let done = self.forget(&mut state, id);
                                if let Some(p) = done {
                                    state.last_accepted = Some(p.peer);
                                    return Ok(p.handshake.into_socket());
                                }
                            }
                            Err(e) => {
                                self.forget(&mut state, id);
                                return Err(e);
                            }
                        }
                    }
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout);
            }
        }
    }

    /// Accepts what the backlog holds: without an authkey the first
    /// connection is the answer; with one, each starts its handshake.
    fn accept_ready(&self, state: &mut State) -> Result<Option<OwnedFd>> {
        loop {
            if state.pending.len() >= MAX_PENDING {
                self.pause(state, None)?;
                return Ok(None);
            }
            let Some(socket) = &state.socket else {
                return Err(Error::Closed);
            };
            let (fd, peer) = match socket.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    if state.pending.is_empty() {
                        return Err(Error::Io(e));
                    }
                    // Wait for a handshake to end and free a descriptor.
                    let retry = Instant::now() + Duration::from_millis(10);
                    self.pause(state, Some(retry))?;
                    return Ok(None);
                }
                Err(e) => return Err(Error::Io(e)),
            };
            let Some(key) = &self.authkey else {
                state.last_accepted = Some(peer);
                return Ok(Some(fd));
            };
            let handshake = Handshake::accepting(fd, key, self.handshake_timeout)?;
            let id = state.next_id;
            state.next_id += 1;
            self.epoll.add(
                handshake.socket().as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, id),
            )?;
            state.pending.insert(id, Pending { handshake, peer });
        }
    }

    /// Stops watching the listening socket (its backlog would keep the
    /// epoll readable and `accept` spinning).
    fn pause(&self, state: &mut State, retry_at: Option<Instant>) -> Result<()> {
        if state.paused.is_none() {
            if let Some(socket) = &state.socket {
                self.epoll.delete(socket.as_fd())?;
            }
        }
        state.paused = Some(Pause {
            pending: state.pending.len(),
            retry_at,
        });
        Ok(())
    }

    fn resume(&self, state: &mut State) -> Result<()> {
        if state.paused.take().is_some() {
            if let Some(socket) = &state.socket {
                self.epoll.add(
                    socket.as_fd(),
                    EpollEvent::new(EpollFlags::EPOLLIN, LISTENER),
                )?;
            }
        }
        Ok(())
    }

    fn forget(&self, state: &mut State, id: u64) -> Option<Pending> {
        let pending = state.pending.remove(&id)?;
        let _ = self.epoll.delete(pending.handshake.socket().as_fd());
        Some(pending)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

impl Sealed for Listener {}

/// Ready when a connection waits in the backlog or a handshake in progress
/// can go on, so `accept` would make progress without waiting (it may still
/// wait for the rest of a handshake).
impl Waitable for Listener {
    fn wait_fd(&self) -> Option<WaitFd<'_>> {
        Some(WaitFd::borrowed(self.epoll.0.as_fd()))
    }

    fn ready_now(&self) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return true;
        }
        let mut fd = [PollFd::new(self.epoll.0.as_fd(), PollFlags::POLLIN)];
        matches!(nix::poll::poll(&mut fd, PollTimeout::ZERO), Ok(n) if n > 0)
    }
}

/// Opens connections to a [`Listener`]: Python's
/// `multiprocessing.connection.Client`.
///
/// `Client` only names the constructors; it has no values.
///
/// ```
/// use multiproc::{Client, Connection, Listener};
/// let l = Listener::bind("@multiproc-doc-client", None)?;
/// let c: Connection<u32> = Client::connect("@multiproc-doc-client", None)?;
/// c.send(&7)?;
/// let s: Connection<u32> = l.accept()?;
/// assert_eq!(s.recv()?, 7);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct Client {
    _private: (),
}

impl Client {
    /// Connects to `address` (Python's `Client(address, authkey=...)`) and,
    /// with an authkey, answers the listener's challenge and challenges it
    /// in turn, within [`DEFAULT_HANDSHAKE_TIMEOUT`]. A wrong key fails
    /// with [`Error::AuthenticationFailed`] (and the listener's `accept`
    /// fails the same way); nothing listening is an
    /// [`io::ErrorKind::ConnectionRefused`] or `NotFound` error.
    ///
    /// ```
    /// use multiproc::{Client, Connection, Error, Listener};
    /// let l = Listener::bind("127.0.0.1:0", Some(b"right".as_slice()))?;
    /// let address = l.address().clone();
    /// let server = std::thread::spawn(move || l.accept::<u8>().map(|_| ()));
    /// let r = Client::connect::<u8>(&address, Some(b"wrong".as_slice()));
    /// assert!(matches!(r, Err(Error::AuthenticationFailed { .. })));
    /// assert!(matches!(server.join().unwrap(), Err(Error::AuthenticationFailed { .. })));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn connect<T>(address: impl IntoAddress, authkey: Option<&[u8]>) -> Result<Connection<T>> {
        Client::connect_with_timeout(address, authkey, DEFAULT_HANDSHAKE_TIMEOUT)
    }

    /// As [`connect`](Self::connect), with `timeout` for the handshake (and
    /// for a TCP connect).
    ///
    /// ```
    /// use std::time::Duration;
    /// let l = multiproc::Listener::bind("127.0.0.1:0", None)?;
    /// let c = multiproc::Client::connect_with_timeout::<u8>(l.address(), None, Duration::from_secs(1))?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn connect_with_timeout<T>(
        address: impl IntoAddress,
        authkey: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Connection<T>> {
        let authkey = check_key(authkey)?;
        let address = address.into_address()?;
        let socket = match &address {
            Address::Tcp(addr) => OwnedFd::from(TcpStream::connect_timeout(addr, timeout)?),
            unix => {
                let addr = unix
                    .unix()?
                    .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
                OwnedFd::from(UnixStream::connect_addr(&addr)?)
            }
        };
        let socket = match &authkey {
            None => socket,
            Some(key) => Handshake::connecting(socket, key, timeout).finish(timeout)?,
        };
        Ok(Connection::from_socket(socket))
    }
}
