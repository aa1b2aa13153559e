//! Passing descriptors over a Unix socket (`SCM_RIGHTS`).

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

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
pub(crate) fn send_with_fds<F: AsFd>(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[F],
) -> nix::Result<usize> {
    debug_assert!(!bytes.is_empty() && fds.len() <= MAX_FDS_PER_MESSAGE);
    let mut raw = [0 as RawFd; MAX_FDS_PER_MESSAGE];
    let count = fds.len().min(MAX_FDS_PER_MESSAGE);
    for (slot, fd) in raw.iter_mut().zip(fds) {
        *slot = fd.as_fd().as_raw_fd();
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

/// A `recvmsg` control buffer with room for one message's descriptors
/// ([`MAX_FDS_PER_MESSAGE`]), aligned for `cmsghdr`.
pub(crate) struct CmsgSpace(Vec<u64>);

impl CmsgSpace {
    pub(crate) fn new() -> CmsgSpace {
        // SAFETY: `CMSG_SPACE` only computes a size.
        let bytes = unsafe {
            libc::CMSG_SPACE((MAX_FDS_PER_MESSAGE * size_of::<libc::c_int>()) as libc::c_uint)
        } as usize;
        CmsgSpace(vec![0; bytes.div_ceil(size_of::<u64>())])
    }
}

/// Receives once by [`recvmsg(2)`](https://man7.org/linux/man-pages/man2/recvmsg.2.html)
/// at most `max` bytes into the spare capacity of `buf` (which must have
/// some), appending them without zeroing anything first; hands each
/// descriptor that comes with the bytes (close-on-exec) to `got`. Without
/// `wait`, does not block (`WouldBlock`). Returns the bytes read (0: the end
/// of the stream, or a reset) and whether descriptors were lost for want of
/// room in `space` or in the descriptor table (`MSG_CTRUNC`). Interrupted
/// calls are retried.
pub(crate) fn recv_append(
    sock: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
    wait: bool,
    space: &mut CmsgSpace,
    mut got: impl FnMut(OwnedFd),
) -> io::Result<(usize, bool)> {
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(max);
    debug_assert!(len > 0, "recv_append with no room");
    let mut iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: len,
    };
    let control_len = space.0.len() * size_of::<u64>();
    let flags = libc::MSG_CMSG_CLOEXEC | if wait { 0 } else { libc::MSG_DONTWAIT };
    let (n, msg) = loop {
        // SAFETY: all-zero is a valid `msghdr` (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.0.as_mut_ptr().cast();
        msg.msg_controllen = control_len as _;
        // SAFETY: `msg` points to one iovec of `len` writable bytes (the
        // spare capacity of `buf`, which the kernel writes without reading)
        // and to a control buffer of `control_len` bytes; both outlive the
        // call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
        if n >= 0 {
            break (n as usize, msg);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::ECONNRESET) => return Ok((0, false)),
            _ => return Err(e),
        }
    };
    let control = space.0.as_ptr().cast::<u8>();
    let control_end = control as usize + msg.msg_controllen.min(control_len);
    // SAFETY: `msg` is the header `recvmsg` filled: its control pointer and
    // length describe the control data the kernel wrote.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: `CMSG_FIRSTHDR`/`CMSG_NXTHDR` return a header that lies
        // wholly inside the control data (aligned: the buffer is of `u64`s).
        let header = unsafe { cmsg.read() };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: the data of a header inside the control data.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            let end = (cmsg as usize + header.cmsg_len as usize).min(control_end);
            let count = end.saturating_sub(data as usize) / size_of::<libc::c_int>();
            for i in 0..count {
                // SAFETY: descriptor `i` lies within the message's data,
                // which ends at or before the end of the control data.
                let fd = unsafe {
                    data.add(i * size_of::<libc::c_int>())
                        .cast::<libc::c_int>()
                        .read_unaligned()
                };
                // SAFETY: the kernel just installed this descriptor in our
                // table for this message; nothing else owns it.
                got(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: `cmsg` is a header of this message's control data.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    // SAFETY: `recvmsg` wrote the first `n <= len` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok((n, msg.msg_flags & libc::MSG_CTRUNC != 0))
}

/// How many bytes wait unread in a socket's receive queue (`FIONREAD`,
/// [`ioctl(2)`](https://man7.org/linux/man-pages/man7/unix.7.html)): for a
/// stream socket, all of them, across every `send`.
pub(crate) fn queued(sock: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: `FIONREAD` writes one `int` through the pointer, which points
    // to `n`.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}
