//! The host calls lisafs needs beyond std: `sendmsg`/`recvmsg` with
//! `SCM_RIGHTS` come from the shared `fdpass` crate; the fdchannel receive
//! and socket helpers are here. Everything unsafe in the crate is here.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use fdpass::{cmsg_space, control_buf};
pub(crate) use fdpass::{recv, send, MAX_FDS};

const FD_SIZE: usize = mem::size_of::<RawFd>();

/// One non-blocking receive of a zero-length datagram carrying exactly one
/// FD (the fdchannel format): room for one int of control data,
/// `MSG_DONTWAIT | MSG_TRUNC`, and an exact check of the control message's
/// level, type and length. `Ok(None)` if nothing is queued (EAGAIN) or the
/// datagram carried no FD; an error if it carried anything else.
pub(crate) fn recv_one_fd(sock: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let mut control = control_buf(1);
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 0,
    };
    // SAFETY: msghdr is a plain C struct for which all-zero is valid.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = cmsg_space(1);
    let flags = libc::MSG_DONTWAIT | libc::MSG_TRUNC | libc::MSG_CMSG_CLOEXEC;
    loop {
        // SAFETY: `msg` points at `iov` (zero bytes of `byte`) and
        // `control` (writable, msg_controllen bytes, live); recvmsg writes
        // at most those lengths.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
        if n >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(err),
        }
    }
    if msg.msg_controllen == 0 {
        return Ok(None);
    }
    // SAFETY: after recvmsg, msg_control/msg_controllen describe what the
    // kernel wrote into `control`; CMSG_FIRSTHDR stays inside or is null.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        return Ok(None);
    }
    // SAFETY: a non-null header from CMSG_FIRSTHDR lies inside `control`
    // and is aligned; we read its fields.
    let (level, typ, len) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
    // SAFETY: CMSG_LEN is arithmetic only.
    let want = unsafe { libc::CMSG_LEN(FD_SIZE as libc::c_uint) } as usize;
    if level != libc::SOL_SOCKET || typ != libc::SCM_RIGHTS || len != want {
        // If it was SCM_RIGHTS with more FDs, the kernel truncated
        // (MSG_CTRUNC) and closed the rest; take the one we got so it
        // does not leak, and report the bad format.
        if level == libc::SOL_SOCKET && typ == libc::SCM_RIGHTS && len > want {
            // SAFETY: arithmetic on a valid header pointer.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
            // SAFETY: the buffer holds one int after the header
            // (CMSG_SPACE(4)); read_unaligned needs no alignment.
            let raw = unsafe { ptr::read_unaligned(data) };
            if raw >= 0 {
                // SAFETY: the kernel installed `raw` for us; we own it.
                drop(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("fdchannel control message level {level} type {typ} length {len}; want one SCM_RIGHTS FD"),
        ));
    }
    // SAFETY: arithmetic on a valid header pointer.
    let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
    // SAFETY: cmsg_len says exactly one int follows the header, inside
    // `control`; read_unaligned needs no alignment.
    let raw = unsafe { ptr::read_unaligned(data) };
    if raw < 0 {
        return Ok(None);
    }
    // SAFETY: the kernel just installed `raw` in our FD table for us.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(raw) }))
}

/// A connected `AF_UNIX` `SOCK_SEQPACKET` pair, both ends close-on-exec
/// (the fdchannel).
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: `fds` is a live array of two ints that socketpair fills.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded and installed both FDs for us alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The socket type (`SO_TYPE`) of `fd`; an error if it is not a socket.
pub(crate) fn socket_type(fd: BorrowedFd<'_>) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live and sized for an int option value.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}
