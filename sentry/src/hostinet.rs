//! `--network=host`: the application's AF_INET and AF_INET6 sockets are
//! host sockets the Sentry makes and drives for it (upstream's
//! `pkg/sentry/socket/hostinet`).
//!
//! The host descriptor is always non-blocking; the Sentry does the blocking
//! itself (interruptibly, in `syscalls::inet`), so a signal or a kill can
//! end any wait. What reaches the host is bounded: only inet families, only
//! stream and datagram sockets, only the socket options and control
//! messages listed here (`sockopt_allowed`, `cmsg_allowed`), and addresses
//! no longer than a `sockaddr_storage`. Every `unsafe` block of this module
//! is a host socket call over buffers it owns.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use abi::{Errno, Stat};
use vfs::inode::FileOps;

use crate::inet_socket::{Accepted, InetSocket, Received, Timeouts, SOCKADDR_MAX};

/// One application socket: a non-blocking host socket and what the Sentry
/// keeps beside it.
pub struct HostSocket {
    fd: OwnedFd,
    pub family: i32,
    /// SOCK_STREAM or SOCK_DGRAM.
    pub ty: i32,
    pub protocol: i32,
    /// SO_RCVTIMEO and SO_SNDTIMEO: the Sentry blocks, so it keeps them.
    timeouts: Timeouts,
}

use crate::host::{check, retry};

/// Which `(level, name)` socket options reach the host. Options the Sentry
/// answers itself (SO_RCVTIMEO, SO_SNDTIMEO, SO_TYPE, ...) are not here.
/// The list follows upstream's hostinet allow-lists
/// (pkg/sentry/socket/hostinet/socket.go) and the options glibc, Python,
/// curl and OpenSSL set.
pub fn sockopt_allowed(level: i32, name: i32, set: bool) -> bool {
    use libc::*;
    match level {
        SOL_SOCKET => {
            matches!(
                name,
                SO_REUSEADDR
                    | SO_REUSEPORT
                    | SO_KEEPALIVE
                    | SO_BROADCAST
                    | SO_LINGER
                    | SO_RCVBUF
                    | SO_SNDBUF
                    | SO_OOBINLINE
                    | SO_RCVLOWAT
                    | SO_TIMESTAMP
                    | SO_TIMESTAMPNS
                    | SO_PRIORITY
                    | SO_NO_CHECK
            ) || (!set && matches!(name, SO_ERROR | SO_ACCEPTCONN))
        }
        IPPROTO_IP => {
            matches!(
                name,
                IP_TOS
                    | IP_TTL
                    | IP_RECVERR
                    | IP_PKTINFO
                    | IP_RECVTOS
                    | IP_RECVTTL
                    | IP_MTU_DISCOVER
                    | IP_MULTICAST_IF
                    | IP_MULTICAST_TTL
                    | IP_MULTICAST_LOOP
                    | IP_ADD_MEMBERSHIP
                    | IP_DROP_MEMBERSHIP
                    | IP_FREEBIND
                    | IP_RECVORIGDSTADDR
                    | IP_BIND_ADDRESS_NO_PORT
            ) || (!set && name == IP_MTU)
        }
        IPPROTO_IPV6 => {
            matches!(
                name,
                IPV6_V6ONLY
                    | IPV6_RECVPKTINFO
                    | IPV6_UNICAST_HOPS
                    | IPV6_MULTICAST_HOPS
                    | IPV6_MULTICAST_LOOP
                    | IPV6_MULTICAST_IF
                    | IPV6_TCLASS
                    | IPV6_RECVTCLASS
                    | IPV6_RECVERR
                    | IPV6_MTU_DISCOVER
                    | IPV6_RECVHOPLIMIT
                    | IPV6_ADD_MEMBERSHIP
                    | IPV6_DROP_MEMBERSHIP
            ) || (!set && name == IPV6_MTU)
        }
        IPPROTO_TCP => {
            matches!(
                name,
                TCP_NODELAY
                    | TCP_MAXSEG
                    | TCP_CORK
                    | TCP_KEEPIDLE
                    | TCP_KEEPINTVL
                    | TCP_KEEPCNT
                    | TCP_SYNCNT
                    | TCP_LINGER2
                    | TCP_DEFER_ACCEPT
                    | TCP_WINDOW_CLAMP
                    | TCP_QUICKACK
                    | TCP_CONGESTION
                    | TCP_USER_TIMEOUT
                    | TCP_NOTSENT_LOWAT
            ) || (!set && name == TCP_INFO)
        }
        IPPROTO_UDP => name == libc::UDP_CORK,
        _ => false,
    }
}

/// Control messages passed between the application and the host: the
/// per-packet information inet sockets carry (never descriptors: inet
/// sockets have none, and anything else is dropped).
pub fn cmsg_allowed(level: i32, kind: i32) -> bool {
    use libc::*;
    match level {
        SOL_SOCKET => matches!(kind, SO_TIMESTAMP | SO_TIMESTAMPNS),
        IPPROTO_IP => matches!(
            kind,
            IP_TOS | IP_TTL | IP_PKTINFO | IP_RECVERR | IP_ORIGDSTADDR
        ),
        IPPROTO_IPV6 => matches!(
            kind,
            IPV6_PKTINFO | IPV6_HOPLIMIT | IPV6_TCLASS | IPV6_RECVERR
        ),
        _ => false,
    }
}

/// Keep only the allowed control messages of a host `msg_control` buffer
/// (native layout: 16-byte `cmsghdr`, 8-byte alignment); returns what is
/// left and whether anything was dropped.
pub fn filter_cmsgs(buf: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut dropped = false;
    let mut at = 0usize;
    while at + 16 <= buf.len() {
        let len = u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes")) as usize;
        let level = i32::from_le_bytes(buf[at + 8..at + 12].try_into().expect("4 bytes"));
        let kind = i32::from_le_bytes(buf[at + 12..at + 16].try_into().expect("4 bytes"));
        if len < 16 || at + len > buf.len() {
            break;
        }
        let padded = len.next_multiple_of(8).min(buf.len() - at);
        if cmsg_allowed(level, kind) {
            out.extend_from_slice(&buf[at..at + padded]);
        } else {
            dropped = true;
        }
        at += padded;
    }
    (out, dropped)
}

impl HostSocket {
    /// A new host socket. The caller checked the family and type.
    pub fn new(family: i32, ty: i32, protocol: i32) -> Result<HostSocket, Errno> {
        let fd = retry(|| {
            // SAFETY: socket takes integers and returns a new descriptor.
            unsafe {
                libc::socket(
                    family,
                    ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    protocol,
                ) as libc::c_long
            }
        })?;
        // SAFETY: socket returned a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(HostSocket::wrap(fd, family, ty, protocol))
    }

    fn wrap(fd: OwnedFd, family: i32, ty: i32, protocol: i32) -> HostSocket {
        HostSocket {
            fd,
            family,
            ty,
            protocol,
            timeouts: Timeouts::default(),
        }
    }

    fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// The host socket's inode number, for `socket:[N]` names.
    pub fn ino(&self) -> u64 {
        crate::host::fstat_raw(self.fd.as_fd()).map_or(0, |st| st.ino)
    }

    pub fn bind(&self, addr: &[u8]) -> Result<(), Errno> {
        retry(|| {
            // SAFETY: the kernel reads `addr.len()` bytes of `addr`.
            unsafe {
                libc::bind(self.raw(), addr.as_ptr().cast(), addr.len() as u32) as libc::c_long
            }
        })
        .map(drop)
    }

    /// Start or continue connecting; EINPROGRESS / EALREADY while pending.
    pub fn connect(&self, addr: &[u8]) -> Result<(), Errno> {
        // Not retried on EINTR: a second connect would report EALREADY.
        // SAFETY: the kernel reads `addr.len()` bytes of `addr`.
        let r = unsafe { libc::connect(self.raw(), addr.as_ptr().cast(), addr.len() as u32) };
        check(r as libc::c_long).map(drop)
    }

    pub fn listen(&self, backlog: i32) -> Result<(), Errno> {
        // SAFETY: listen takes integers.
        check(unsafe { libc::listen(self.raw(), backlog) } as libc::c_long).map(drop)
    }

    /// Take a pending connection (EAGAIN if none); the peer's address too.
    pub fn accept(&self) -> Result<(HostSocket, Vec<u8>), Errno> {
        let mut name = [0u8; SOCKADDR_MAX];
        let mut len = SOCKADDR_MAX as libc::socklen_t;
        let fd = retry(|| {
            // SAFETY: the kernel writes at most `len` bytes into `name`
            // and the address's length into `len`.
            unsafe {
                libc::accept4(
                    self.raw(),
                    name.as_mut_ptr().cast(),
                    &mut len,
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                ) as libc::c_long
            }
        })?;
        // SAFETY: accept4 returned a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let n = (len as usize).min(SOCKADDR_MAX);
        Ok((
            HostSocket::wrap(fd, self.family, self.ty, self.protocol),
            name[..n].to_vec(),
        ))
    }

    fn name_call(
        &self,
        f: unsafe extern "C" fn(i32, *mut libc::sockaddr, *mut libc::socklen_t) -> i32,
    ) -> Result<Vec<u8>, Errno> {
        let mut name = [0u8; SOCKADDR_MAX];
        let mut len = SOCKADDR_MAX as libc::socklen_t;
        // SAFETY: f is getsockname or getpeername; the kernel writes at
        // most `len` bytes into `name` and the full length into `len`.
        check(unsafe { f(self.raw(), name.as_mut_ptr().cast(), &mut len) } as libc::c_long)?;
        Ok(name[..(len as usize).min(SOCKADDR_MAX)].to_vec())
    }

    pub fn local_name(&self) -> Result<Vec<u8>, Errno> {
        self.name_call(libc::getsockname)
    }

    pub fn peer_name(&self) -> Result<Vec<u8>, Errno> {
        self.name_call(libc::getpeername)
    }

    pub fn shutdown(&self, how: i32) -> Result<(), Errno> {
        // SAFETY: shutdown takes integers.
        check(unsafe { libc::shutdown(self.raw(), how) } as libc::c_long).map(drop)
    }

    /// One non-blocking `sendmsg`; the caller checked `control`.
    pub fn send(
        &self,
        data: &[u8],
        to: Option<&[u8]>,
        control: &[u8],
        flags: i32,
    ) -> Result<usize, Errno> {
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        // SAFETY: msghdr is plain data; all-zero is a valid empty value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(to) = to {
            msg.msg_name = to.as_ptr() as *mut libc::c_void;
            msg.msg_namelen = to.len() as u32;
        }
        if !control.is_empty() {
            msg.msg_control = control.as_ptr() as *mut libc::c_void;
            msg.msg_controllen = control.len();
        }
        let flags = flags | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        retry(|| {
            // SAFETY: every pointer in `msg` points at a live buffer of the
            // stated length; the kernel only reads them.
            unsafe { libc::sendmsg(self.raw(), &msg, flags) as libc::c_long }
        })
    }

    /// One non-blocking `recvmsg` into `buf`, with room for `control_room`
    /// bytes of control messages (unfiltered: see [`filter_cmsgs`]).
    pub fn recv(&self, buf: &mut [u8], control_room: usize, flags: i32) -> Result<Received, Errno> {
        let mut name = [0u8; SOCKADDR_MAX];
        let mut control = vec![0u8; control_room];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; all-zero is a valid empty value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_name = name.as_mut_ptr().cast();
        msg.msg_namelen = SOCKADDR_MAX as u32;
        if control_room > 0 {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = control_room;
        }
        let flags = (flags | libc::MSG_DONTWAIT) & !libc::MSG_CMSG_CLOEXEC;
        let len = retry(|| {
            // SAFETY: every pointer in `msg` points at a live buffer of the
            // stated length, which the kernel fills.
            unsafe { libc::recvmsg(self.raw(), &mut msg, flags) as libc::c_long }
        })?;
        control.truncate(msg.msg_controllen.min(control_room));
        Ok(Received {
            len,
            name: name[..(msg.msg_namelen as usize).min(SOCKADDR_MAX)].to_vec(),
            control,
            flags: msg.msg_flags,
        })
    }

    /// `setsockopt` on the host; the caller checked [`sockopt_allowed`].
    pub fn set_option(&self, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        // SAFETY: the kernel reads `value.len()` bytes of `value`.
        check(unsafe {
            libc::setsockopt(
                self.raw(),
                level,
                name,
                value.as_ptr().cast(),
                value.len() as u32,
            )
        } as libc::c_long)
        .map(drop)
    }

    /// `getsockopt` on the host into at most `room` bytes.
    pub fn get_option(&self, level: i32, name: i32, room: usize) -> Result<Vec<u8>, Errno> {
        let mut value = vec![0u8; room];
        let mut len = room as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `value` and
        // the length it wrote into `len`.
        check(unsafe {
            libc::getsockopt(self.raw(), level, name, value.as_mut_ptr().cast(), &mut len)
        } as libc::c_long)?;
        value.truncate((len as usize).min(room));
        Ok(value)
    }
}

/// The syscall layer's view; options reach the host only if
/// [`sockopt_allowed`].
impl InetSocket for HostSocket {
    fn family(&self) -> i32 {
        self.family
    }

    fn sock_type(&self) -> i32 {
        self.ty
    }

    fn protocol(&self) -> i32 {
        match (self.protocol, self.ty) {
            (0, libc::SOCK_STREAM) => libc::IPPROTO_TCP,
            (0, _) => libc::IPPROTO_UDP,
            (p, _) => p,
        }
    }

    fn bind(&self, addr: &[u8]) -> Result<(), Errno> {
        HostSocket::bind(self, addr)
    }

    fn connect(&self, addr: &[u8]) -> Result<(), Errno> {
        HostSocket::connect(self, addr)
    }

    fn listen(&self, backlog: i32) -> Result<(), Errno> {
        HostSocket::listen(self, backlog)
    }

    fn accept(&self) -> Result<Accepted, Errno> {
        let (conn, peer) = HostSocket::accept(self)?;
        Ok(Accepted {
            name: format!("socket:[{}]", conn.ino()),
            file: std::sync::Arc::new(conn),
            peer,
        })
    }

    fn local_name(&self) -> Result<Vec<u8>, Errno> {
        HostSocket::local_name(self)
    }

    fn peer_name(&self) -> Result<Vec<u8>, Errno> {
        HostSocket::peer_name(self)
    }

    fn shutdown(&self, how: i32) -> Result<(), Errno> {
        HostSocket::shutdown(self, how)
    }

    fn send(
        &self,
        data: &[u8],
        to: Option<&[u8]>,
        control: &[u8],
        flags: i32,
    ) -> Result<usize, Errno> {
        let (kept, dropped) = filter_cmsgs(control);
        if dropped {
            tracing::info!("inet socket: control message not supported: EINVAL");
            return Err(Errno::EINVAL);
        }
        HostSocket::send(self, data, to, &kept, flags)
    }

    fn recv(&self, buf: &mut [u8], control_room: usize, flags: i32) -> Result<Received, Errno> {
        let mut r = HostSocket::recv(self, buf, control_room, flags)?;
        let (control, dropped) = filter_cmsgs(&r.control);
        if dropped {
            r.flags |= libc::MSG_CTRUNC;
        }
        r.control = control;
        Ok(r)
    }

    fn set_option(&self, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        if !sockopt_allowed(level, name, true) {
            tracing::info!(
                "setsockopt level {level} option {name} not supported on inet sockets: ENOPROTOOPT"
            );
            return Err(Errno::ENOPROTOOPT);
        }
        HostSocket::set_option(self, level, name, value)
    }

    fn get_option(&self, level: i32, name: i32, room: usize) -> Result<Vec<u8>, Errno> {
        if !sockopt_allowed(level, name, false) {
            tracing::info!(
                "getsockopt level {level} option {name} not supported on inet sockets: ENOPROTOOPT"
            );
            return Err(Errno::ENOPROTOOPT);
        }
        HostSocket::get_option(self, level, name, room)
    }

    fn timeout(&self, send: bool) -> Option<Duration> {
        self.timeouts.get(send)
    }

    fn set_timeout(&self, send: bool, t: Option<Duration>) {
        self.timeouts.set(send, t)
    }
}

/// `read`/`write`, `poll` and `epoll` reach the socket as any host
/// descriptor: the generic host I/O path waits on it.
impl FileOps for HostSocket {
    fn read(&self, buf: &mut [u8], _offset: u64) -> vfs::Result<usize> {
        self.recv(buf, 0, 0).map(|r| r.len)
    }

    fn write(&self, buf: &[u8], _offset: u64) -> vfs::Result<usize> {
        self.send(buf, None, &[], 0)
    }

    fn stat(&self) -> vfs::Result<Stat> {
        crate::host::fstat_raw(self.fd.as_fd())
    }

    fn host_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    fn iov_io(&self) -> Option<&dyn vfs::inode::IovIo> {
        Some(self)
    }
}

impl vfs::inode::IovIo for HostSocket {
    unsafe fn read_iov(&self, iov: &[libc::iovec], _offset: u64) -> vfs::Result<usize> {
        // SAFETY: msghdr is plain data; all-zero is a valid empty value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len();
        retry(|| {
            // SAFETY: the caller vouches for the memory `iov` names; the
            // rest of `msg` is empty.
            unsafe { libc::recvmsg(self.raw(), &mut msg, libc::MSG_DONTWAIT) as libc::c_long }
        })
    }

    unsafe fn write_iov(&self, iov: &[libc::iovec], _offset: u64) -> vfs::Result<usize> {
        // SAFETY: msghdr is plain data; all-zero is a valid empty value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len();
        retry(|| {
            // SAFETY: the caller vouches for the memory `iov` names; the
            // kernel only reads it.
            unsafe {
                libc::sendmsg(self.raw(), &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                    as libc::c_long
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let mut m = ((16 + data.len()) as u64).to_le_bytes().to_vec();
        m.extend_from_slice(&level.to_le_bytes());
        m.extend_from_slice(&kind.to_le_bytes());
        m.extend_from_slice(data);
        while !m.len().is_multiple_of(8) {
            m.push(0);
        }
        m
    }

    #[test]
    fn control_messages_other_than_packet_info_are_dropped() {
        let ttl = cmsg(libc::IPPROTO_IP, libc::IP_TTL, &64i32.to_le_bytes());
        let rights = cmsg(libc::SOL_SOCKET, libc::SCM_RIGHTS, &3i32.to_le_bytes());
        let mut buf = rights.clone();
        buf.extend_from_slice(&ttl);
        let (kept, dropped) = filter_cmsgs(&buf);
        assert_eq!(kept, ttl);
        assert!(dropped);
        // A header claiming more than the buffer holds ends the walk.
        let mut bad = ttl.clone();
        bad[0] = 200;
        assert_eq!(filter_cmsgs(&bad), (Vec::new(), false));
    }

    #[test]
    fn options_the_sentry_answers_never_reach_the_host() {
        assert!(!sockopt_allowed(libc::SOL_SOCKET, libc::SO_RCVTIMEO, true));
        assert!(!sockopt_allowed(
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            true
        ));
        assert!(!sockopt_allowed(libc::SOL_SOCKET, libc::SO_ERROR, true));
        assert!(sockopt_allowed(libc::SOL_SOCKET, libc::SO_ERROR, false));
        assert!(sockopt_allowed(libc::IPPROTO_TCP, libc::TCP_NODELAY, true));
        assert!(!sockopt_allowed(libc::IPPROTO_TCP, libc::TCP_INFO, true));
        assert!(!sockopt_allowed(libc::IPPROTO_IP, libc::IP_HDRINCL, true));
    }

    #[test]
    fn loopback_round_trip_through_host_sockets() {
        let server = HostSocket::new(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        let mut any = [0u8; 16];
        any[0..2].copy_from_slice(&(libc::AF_INET as u16).to_le_bytes());
        any[4..8].copy_from_slice(&[127, 0, 0, 1]);
        server.bind(&any).unwrap();
        server.listen(1).unwrap();
        let name = server.local_name().unwrap();
        let client = HostSocket::new(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        match client.connect(&name) {
            Ok(()) | Err(Errno::EINPROGRESS) => {}
            Err(e) => panic!("connect: {e:?}"),
        }
        let (conn, peer) = loop {
            match server.accept() {
                Err(Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
                other => break other.unwrap(),
            }
        };
        assert_eq!(peer, client.local_name().unwrap());
        assert_eq!(client.send(b"ping", None, &[], 0).unwrap(), 4);
        let mut buf = [0u8; 8];
        let got = loop {
            match conn.recv(&mut buf, 0, 0) {
                Err(Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
                other => break other.unwrap(),
            }
        };
        assert_eq!(&buf[..got.len], b"ping");
    }
}
