//! NETLINK_ROUTE sockets over the sandbox's netstack: a datagram socket
//! whose peer is the kernel; each request sent is answered at once by
//! `netstack::rtnetlink` and queued for the next receive. Multicast
//! groups are accepted but nothing is ever announced: the interfaces
//! never change.

use std::any::Any;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abi::{Errno, Stat};
use netstack::Stack;
use vfs::inode::FileOps;
use vfs::waiter::Waiters;

use crate::inet_socket::{Accepted, InetSocket, Received, Timeouts};

pub const NETLINK_ROUTE: i32 = 0;
const SOL_NETLINK: i32 = 270;
/// `sizeof(struct sockaddr_nl)`.
const SOCKADDR_NL_LEN: usize = 12;

/// Port ids in use by the sandbox's netlink sockets.
static PORTS: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

fn claim_port(want: u32) -> bool {
    let mut g = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(HashSet::new).insert(want)
}

fn release_port(p: u32) {
    if let Some(s) = PORTS.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        s.remove(&p);
    }
}

/// A NETLINK_ROUTE socket.
pub struct NetlinkSocket {
    stack: Arc<Stack>,
    ty: i32,
    /// The port id (`nl_pid`); 0 until bound.
    port: Mutex<u32>,
    /// Who autobinding names the socket after first (Linux uses the
    /// process id, then negative numbers).
    tgid: i32,
    answers: Mutex<VecDeque<Vec<u8>>>,
    waiters: Waiters,
    timeouts: Timeouts,
    /// SO_RCVBUF, SO_SNDBUF as set (Linux doubles), and the SOL_NETLINK
    /// flags programs set and read back.
    opts: Mutex<NlOpts>,
    ino: u64,
}

#[derive(Clone, Copy)]
struct NlOpts {
    rcvbuf: i32,
    sndbuf: i32,
    ext_ack: bool,
    strict: bool,
}

impl NetlinkSocket {
    /// `socket(AF_NETLINK, ty, NETLINK_ROUTE)` for process `tgid`.
    pub fn new(
        stack: &Arc<Stack>,
        ty: i32,
        protocol: i32,
        tgid: i32,
    ) -> Result<NetlinkSocket, Errno> {
        if ty != libc::SOCK_RAW && ty != libc::SOCK_DGRAM {
            return Err(Errno::ESOCKTNOSUPPORT);
        }
        if protocol != NETLINK_ROUTE {
            tracing::info!("netlink protocol {protocol} not supported: EPROTONOSUPPORT");
            return Err(Errno::EPROTONOSUPPORT);
        }
        static NEXT_INO: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 40);
        Ok(NetlinkSocket {
            stack: stack.clone(),
            ty,
            port: Mutex::new(0),
            tgid,
            answers: Mutex::new(VecDeque::new()),
            waiters: Waiters::default(),
            timeouts: Timeouts::default(),
            opts: Mutex::new(NlOpts {
                rcvbuf: 212_992,
                sndbuf: 212_992,
                ext_ack: false,
                strict: false,
            }),
            ino: NEXT_INO.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// The port id, binding one first if needed (`netlink_autobind`: the
    /// process id if free, else a negative number).
    fn port(&self) -> u32 {
        let mut p = self.port.lock().unwrap_or_else(|e| e.into_inner());
        if *p == 0 {
            let mut want = self.tgid as u32;
            let mut next = -4097i32;
            while !claim_port(want) {
                want = next as u32;
                next -= 1;
            }
            *p = want;
        }
        *p
    }

    fn name(port: u32) -> Vec<u8> {
        let mut b = vec![0u8; SOCKADDR_NL_LEN];
        b[0..2].copy_from_slice(&(libc::AF_NETLINK as u16).to_le_bytes());
        b[4..8].copy_from_slice(&port.to_le_bytes());
        b
    }

    fn answers(&self) -> std::sync::MutexGuard<'_, VecDeque<Vec<u8>>> {
        self.answers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for NetlinkSocket {
    fn drop(&mut self) {
        let p = *self.port.get_mut().unwrap_or_else(|e| e.into_inner());
        if p != 0 {
            release_port(p);
        }
    }
}

/// Checks a `sockaddr_nl` (netlink_bind, netlink_connect, sendmsg).
fn parse_nl(addr: &[u8]) -> Result<(u32, u32), Errno> {
    if addr.len() < SOCKADDR_NL_LEN {
        return Err(Errno::EINVAL);
    }
    if i32::from(u16::from_le_bytes([addr[0], addr[1]])) != libc::AF_NETLINK {
        return Err(Errno::EINVAL);
    }
    let pid = u32::from_le_bytes(addr[4..8].try_into().expect("4 bytes"));
    let groups = u32::from_le_bytes(addr[8..12].try_into().expect("4 bytes"));
    Ok((pid, groups))
}

impl InetSocket for NetlinkSocket {
    fn family(&self) -> i32 {
        libc::AF_NETLINK
    }

    fn sock_type(&self) -> i32 {
        self.ty
    }

    fn protocol(&self) -> i32 {
        NETLINK_ROUTE
    }

    fn bind(&self, addr: &[u8]) -> Result<(), Errno> {
        let (pid, _groups) = parse_nl(addr)?;
        let mut p = self.port.lock().unwrap_or_else(|e| e.into_inner());
        if pid == 0 || pid == *p {
            drop(p);
            self.port();
            return Ok(());
        }
        if *p != 0 {
            return Err(Errno::EINVAL);
        }
        if !claim_port(pid) {
            return Err(Errno::EADDRINUSE);
        }
        *p = pid;
        Ok(())
    }

    fn connect(&self, addr: &[u8]) -> Result<(), Errno> {
        // Only the kernel (port 0) answers here.
        let (pid, _) = parse_nl(addr)?;
        if pid != 0 {
            return Err(Errno::ECONNREFUSED);
        }
        self.port();
        Ok(())
    }

    fn listen(&self, _backlog: i32) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    fn accept(&self) -> Result<Accepted, Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    fn local_name(&self) -> Result<Vec<u8>, Errno> {
        let p = *self.port.lock().unwrap_or_else(|e| e.into_inner());
        Ok(NetlinkSocket::name(p))
    }

    fn peer_name(&self) -> Result<Vec<u8>, Errno> {
        Ok(NetlinkSocket::name(0))
    }

    fn shutdown(&self, _how: i32) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    fn send(
        &self,
        data: &[u8],
        to: Option<&[u8]>,
        control: &[u8],
        _flags: i32,
    ) -> Result<usize, Errno> {
        if !control.is_empty() {
            tracing::info!("control messages on netlink sockets not supported: EINVAL");
            return Err(Errno::EINVAL);
        }
        if let Some(to) = to {
            let (pid, groups) = parse_nl(to)?;
            if pid != 0 || groups != 0 {
                tracing::info!("netlink messages to other ports or groups not supported: EPERM");
                return Err(Errno::EPERM);
            }
        }
        let port = self.port();
        let out = netstack::rtnetlink::answer(&self.stack.interfaces(), data, port);
        if !out.is_empty() {
            self.answers().extend(out);
            self.waiters.notify_all();
        }
        Ok(data.len())
    }

    fn recv(&self, buf: &mut [u8], _control_room: usize, flags: i32) -> Result<Received, Errno> {
        let mut q = self.answers();
        let Some(d) = q.front() else {
            return Err(Errno::EAGAIN);
        };
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        let full = d.len();
        if flags & libc::MSG_PEEK == 0 {
            q.pop_front();
        }
        Ok(Received {
            len: if flags & libc::MSG_TRUNC != 0 {
                full
            } else {
                n
            },
            name: NetlinkSocket::name(0),
            control: Vec::new(),
            flags: if full > n { libc::MSG_TRUNC } else { 0 },
        })
    }

    fn set_option(&self, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        let v = value
            .get(..4)
            .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or(Errno::EINVAL)?;
        let mut o = self.opts.lock().unwrap_or_else(|e| e.into_inner());
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_RCVBUF | libc::SO_RCVBUFFORCE) => {
                o.rcvbuf = v.clamp(1152, 212_992) * 2
            }
            (libc::SOL_SOCKET, libc::SO_SNDBUF | libc::SO_SNDBUFFORCE) => {
                o.sndbuf = v.clamp(2048, 212_992) * 2
            }
            // NETLINK_EXT_ACK (11) and NETLINK_GET_STRICT_CHK (12): kept
            // and reported; answers have no extended attributes either way.
            (SOL_NETLINK, 11) => o.ext_ack = v != 0,
            (SOL_NETLINK, 12) => o.strict = v != 0,
            _ => {
                tracing::info!(
                    "setsockopt level {level} option {name} not supported on netlink sockets: ENOPROTOOPT"
                );
                return Err(Errno::ENOPROTOOPT);
            }
        }
        Ok(())
    }

    fn get_option(&self, level: i32, name: i32, _room: usize) -> Result<Vec<u8>, Errno> {
        let o = *self.opts.lock().unwrap_or_else(|e| e.into_inner());
        let v = match (level, name) {
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => o.rcvbuf,
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => o.sndbuf,
            (libc::SOL_SOCKET, libc::SO_ERROR) => 0,
            (SOL_NETLINK, 11) => i32::from(o.ext_ack),
            (SOL_NETLINK, 12) => i32::from(o.strict),
            _ => {
                tracing::info!(
                    "getsockopt level {level} option {name} not supported on netlink sockets: ENOPROTOOPT"
                );
                return Err(Errno::ENOPROTOOPT);
            }
        };
        Ok(v.to_le_bytes().to_vec())
    }

    fn timeout(&self, send: bool) -> Option<Duration> {
        self.timeouts.get(send)
    }

    fn set_timeout(&self, send: bool, t: Option<Duration>) {
        self.timeouts.set(send, t)
    }
}

impl FileOps for NetlinkSocket {
    fn read(&self, buf: &mut [u8], _offset: u64) -> vfs::Result<usize> {
        InetSocket::recv(self, buf, 0, 0).map(|r| r.len)
    }

    fn write(&self, buf: &[u8], _offset: u64) -> vfs::Result<usize> {
        InetSocket::send(self, buf, None, &[], 0)
    }

    fn seekable(&self) -> bool {
        false
    }

    fn stat(&self) -> vfs::Result<Stat> {
        Ok(crate::socket::socket_stat(self.ino))
    }

    fn poll(&self, events: i16) -> i16 {
        let mut r = libc::POLLOUT | libc::POLLWRNORM;
        if !self.answers().is_empty() {
            r |= libc::POLLIN | libc::POLLRDNORM;
        }
        r & events
    }

    fn waiters(&self) -> Option<&Waiters> {
        Some(&self.waiters)
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}
