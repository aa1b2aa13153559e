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
