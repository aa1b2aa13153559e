//! A byte stream over one end of a Unix socketpair, carrying codec frames.
//!
//! Writes use `MSG_NOSIGNAL`, so a closed peer is an `EPIPE` error even in a
//! process that did not ignore `SIGPIPE`.

use crate::codec::{self, CodecError};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// One end of a connected stream socket.
#[derive(Debug)]
pub(crate) struct Conn {
    fd: OwnedFd,
}

impl Conn {
    /// A connected pair, both ends close-on-exec.
    pub(crate) fn pair() -> io::Result<(Conn, Conn)> {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Conn { fd: a }, Conn { fd: b }))
    }

    pub(crate) fn from_fd(fd: OwnedFd) -> Conn {
        Conn { fd }
    }

    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }

    pub(crate) fn send_frame(&self, body: &[u8]) -> io::Result<()> {
        codec::write_frame(self, body)
    }

    pub(crate) fn recv_frame(&self, limit: u64) -> Result<Option<Vec<u8>>, CodecError> {
        codec::read_frame(self, limit)
    }

    /// Appends whatever is readable now to `buf` without blocking. Returns
    /// `true` once the peer has closed its end.
    pub(crate) fn drain_into(&self, buf: &mut Vec<u8>) -> io::Result<bool> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match socket::recv(self.fd.as_raw_fd(), &mut chunk, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return Ok(true),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(nix::errno::Errno::EAGAIN) => return Ok(false),
                Err(nix::errno::Errno::EINTR) => {}
                // The peer died with unread data of ours: it is gone.
                Err(nix::errno::Errno::ECONNRESET) => return Ok(true),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Read for &Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match socket::recv(self.fd.as_raw_fd(), buf, MsgFlags::empty()) {
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::ECONNRESET) => return Ok(0),
                other => return Ok(other?),
            }
        }
    }
}

impl Write for &Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match socket::send(self.fd.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL) {
                Err(nix::errno::Errno::EINTR) => {}
                other => return Ok(other?),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
