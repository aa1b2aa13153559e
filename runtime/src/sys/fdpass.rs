//! Passing descriptors over a Unix socket (`SCM_RIGHTS`).

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The most descriptors one `SCM_RIGHTS` message may carry (`SCM_MAX_FD`).
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 253;

/// Sends one byte carrying `fds` by
/// [`sendmsg(2)`](https://man7.org/linux/man-pages/man2/sendmsg.2.html).
pub(crate) fn send_fds(sock: BorrowedFd<'_>, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    debug_assert!(fds.len() <= MAX_FDS_PER_MESSAGE);
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let iov = [IoSlice::new(b"F")];
    loop {
        match socket::sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(io::Error::other("sendmsg sent no byte")),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one byte and the descriptors it carries (close-on-exec), by
/// [`recvmsg(2)`](https://man7.org/linux/man-pages/man2/recvmsg.2.html).
/// An end of stream is `UnexpectedEof`.
pub(crate) fn recv_fds(sock: BorrowedFd<'_>) -> io::Result<Vec<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS_PER_MESSAGE]);
    let mut received = Vec::new();
    let (bytes, truncated) = loop {
        let mut iov = [IoSliceMut::new(&mut byte)];
        match socket::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                for cmsg in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(fds) = cmsg {
                        for fd in fds {
                            // SAFETY: the kernel just installed this descriptor
                            // in our table for this message; nothing else owns it.
                            received.push(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    }
                }
                let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
                break (msg.bytes, truncated);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    };
    if bytes == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if truncated {
        return Err(io::Error::other(
            "descriptors were lost in transit (MSG_CTRUNC)",
        ));
    }
    Ok(received)
}

/// Receives once (blocking) into `buf` by `recvmsg(2)`, handing each
/// descriptor that comes with the bytes (close-on-exec) to `got`; returns
/// the bytes read (0: the end of the stream, or a reset) and whether
/// descriptors were lost for want of room in `space` or in the descriptor
/// table (`MSG_CTRUNC`).
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    space: &mut Vec<u8>,
    mut got: impl FnMut(OwnedFd),
) -> io::Result<(usize, bool)> {
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        match socket::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut *space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
                match msg.cmsgs() {
                    Ok(cmsgs) => {
                        for cmsg in cmsgs {
                            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                                for fd in fds {
                                    // SAFETY: the kernel just installed this
                                    // descriptor in our table for this message;
                                    // nothing else owns it.
                                    got(unsafe { OwnedFd::from_raw_fd(fd) });
                                }
                            }
                        }
                    }
                    Err(_) => truncated = true,
                }
                return Ok((msg.bytes, truncated));
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::ECONNRESET) => return Ok((0, false)),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends `bytes` (as much as the socket takes now, without blocking or
/// `SIGPIPE`) by `sendmsg(2)`, carrying `fds` (at most
/// [`MAX_FDS_PER_MESSAGE`]) with the first byte; returns the bytes sent.
/// Nothing is sent (no descriptor either) on an error.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[OwnedFd],
) -> nix::Result<usize> {
    debug_assert!(!bytes.is_empty() && fds.len() <= MAX_FDS_PER_MESSAGE);
    let mut raw = [0 as RawFd; MAX_FDS_PER_MESSAGE];
    let count = fds.len().min(MAX_FDS_PER_MESSAGE);
    for (slot, fd) in raw.iter_mut().zip(fds) {
        *slot = fd.as_raw_fd();
    }
    let cmsg = [ControlMessage::ScmRights(&raw[..count])];
    let iov = [IoSlice::new(bytes)];
    socket::sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &cmsg,
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        None,
    )
}
