//! `sendmsg` and `recvmsg` on a unix socket with an `SCM_RIGHTS` control
//! message: the host calls both wire crates (lisafs in `gofer-protocol`,
//! the control plane in `urpc`) need beyond std, in one audited place.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

/// The kernel's limit on FDs in one SCM_RIGHTS message (`SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

const FD_SIZE: usize = mem::size_of::<RawFd>();

/// Bytes of control buffer needed for `n` FDs.
pub fn cmsg_space(n: usize) -> usize {
    // `n <= MAX_FDS`, so the byte count fits a c_uint.
    let len = (n * FD_SIZE) as libc::c_uint;
    // SAFETY: CMSG_SPACE is arithmetic on its argument; it touches no memory.
    unsafe { libc::CMSG_SPACE(len) as usize }
}

/// A control buffer aligned for `cmsghdr` (u64 alignment suffices on
/// x86-64 and aarch64).
pub fn control_buf(n: usize) -> Vec<u64> {
    vec![0u64; cmsg_space(n).div_ceil(mem::size_of::<u64>())]
}

/// One `sendmsg` of `data`, with `fds` attached as one SCM_RIGHTS message
/// when non-empty. Returns the bytes sent (possibly fewer than `data`).
/// Uses MSG_NOSIGNAL so a closed peer is EPIPE, not SIGPIPE; retries EINTR.
pub fn send(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} FDs in one message; the kernel allows {MAX_FDS}",
                fds.len()
            ),
        ));
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut control = if fds.is_empty() {
        Vec::new()
    } else {
        control_buf(fds.len())
    };
    // SAFETY: msghdr is a plain C struct for which all-zero is valid.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = cmsg_space(fds.len());
        // SAFETY: msg_control points at a zeroed, aligned buffer of
        // msg_controllen bytes, enough for one header; CMSG_FIRSTHDR only
        // computes an address inside it (or null, which we check).
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        if cmsg.is_null() {
            return Err(io::Error::other("control buffer too small"));
        }
        // SAFETY: `cmsg` is a valid, aligned cmsghdr inside `control`, and
        // CMSG_DATA(cmsg) has room for fds.len() ints because the buffer
        // is CMSG_SPACE(fds.len() * 4) bytes; write_unaligned needs no
        // alignment.
        unsafe {
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN((fds.len() * FD_SIZE) as libc::c_uint) as usize;
            let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                ptr::write_unaligned(data.add(i), fd.as_raw_fd());
            }
        }
    }
    loop {
        // SAFETY: `msg` points at `iov` (over `data`, live for this call)
        // and `control` (live for this call); sendmsg only reads them.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// One `recvmsg` into `buf`, with room for up to `max_fds` FDs (opened
/// close-on-exec). Received FDs are appended to `fds`; any the kernel had
/// to drop for lack of room it closes itself. Returns the bytes read (0 at
/// end of stream); retries EINTR.
pub fn recv(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let max_fds = max_fds.min(MAX_FDS);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = if max_fds == 0 {
        Vec::new()
    } else {
        control_buf(max_fds)
    };
    // SAFETY: msghdr is a plain C struct for which all-zero is valid.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if max_fds > 0 {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() * mem::size_of::<u64>();
    }
    let n = loop {
        // SAFETY: `msg` points at `iov` (over `buf`, writable, live) and
        // `control` (writable, msg_controllen bytes, live); recvmsg writes
        // at most those lengths.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    if max_fds == 0 || msg.msg_controllen == 0 {
        return Ok(n);
    }
    let end = control.as_ptr() as usize + msg.msg_controllen.min(control.len() * 8);
    // SAFETY: after recvmsg, msg_control/msg_controllen describe the
    // control data the kernel wrote into `control`; CMSG_FIRSTHDR and
    // CMSG_NXTHDR stay within msg_controllen or return null.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/NXTHDR lies inside
        // `control` and is aligned; we read its fields.
        let (level, typ, len) =
            unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
        if level == libc::SOL_SOCKET && typ == libc::SCM_RIGHTS {
            // SAFETY: arithmetic on a valid header pointer.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
            // SAFETY: CMSG_LEN(0) is arithmetic only.
            let hdr = unsafe { libc::CMSG_LEN(0) } as usize;
            let avail = end.saturating_sub(data as usize);
            let count = (len.saturating_sub(hdr)).min(avail) / FD_SIZE;
            for i in 0..count {
                // SAFETY: `data + i` is within the control data the kernel
                // wrote (bounded by both cmsg_len and msg_controllen);
                // read_unaligned needs no alignment.
                let raw = unsafe { ptr::read_unaligned(data.add(i)) };
                if raw >= 0 {
                    // SAFETY: the kernel just installed `raw` in our FD
                    // table for us; nothing else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
        }
        // SAFETY: `cmsg` is a valid header inside the buffer described by
        // `msg`; CMSG_NXTHDR returns the next one or null.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok(n)
}
