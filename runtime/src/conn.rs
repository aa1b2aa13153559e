//! A byte stream over one end of a Unix socketpair, carrying codec frames.
//!
//! Writes use `MSG_NOSIGNAL`, so a closed peer is an `EPIPE` error even in a
//! process that did not ignore `SIGPIPE`.

use crate::codec::{self, CodecError};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use std::io::{self, IoSlice, Read, Write};
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
        self.send_frames(&[body])
    }

    /// Sends several frames with as few syscalls as the kernel allows (one,
    /// unless the socket buffer fills): every write wakes the peer, so a
    /// header and its body must not go out separately.
    pub(crate) fn send_frames(&self, bodies: &[&[u8]]) -> io::Result<()> {
        let headers: Vec<[u8; 8]> = bodies
            .iter()
            .map(|b| (b.len() as u64).to_le_bytes())
            .collect();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(bodies.len() * 2);
        for (header, body) in headers.iter().zip(bodies) {
            parts.push(header);
            parts.push(body);
        }
        let mut skip = 0; // bytes of `parts` already sent
        let total: usize = parts.iter().map(|p| p.len()).sum();
        while skip < total {
            let mut left = skip;
            let iov: Vec<IoSlice<'_>> = parts
                .iter()
                .filter_map(|p| {
                    if left >= p.len() {
                        left -= p.len();
                        None
                    } else {
                        let slice = IoSlice::new(&p[left..]);
                        left = 0;
                        Some(slice)
                    }
                })
                .take(512)
                .collect();
            match socket::sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                &[],
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => skip += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub(crate) fn recv_frame(&self, limit: u64) -> Result<Option<Vec<u8>>, CodecError> {
        codec::read_frame(self, limit)
    }

    /// Appends whatever is readable now to `buf` without blocking. Returns
    /// `true` once the peer has closed its end.
    pub(crate) fn drain_into(&self, buf: &mut Vec<u8>) -> io::Result<bool> {
        // Most reads are an outcome of a few bytes: a small chunk first
        // (zeroing 64 KiB for each of them showed in a start's profile),
        // a large one once a read fills it.
        let mut small = [0u8; 4096];
        let mut large = Vec::new();
        loop {
            let chunk: &mut [u8] = if large.is_empty() {
                &mut small
            } else {
                &mut large
            };
            match socket::recv(self.fd.as_raw_fd(), chunk, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if n == chunk.len() && large.is_empty() {
                        large = vec![0u8; 64 * 1024];
                    }
                }
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
