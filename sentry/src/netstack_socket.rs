//! AF_INET and AF_INET6 sockets on our netstack (`--network=none` and,
//! until it has real links, `--network=sandbox`): a [`NetSocket`] wraps a
//! netstack [`TcpSocket`] or [`UdpSocket`] as a Sentry file description
//! and translates between the application's bytes (sockaddrs, option
//! values, flags) and the netstack's typed API, with Linux's errors
//! (`net/ipv4/af_inet.c`, `net/ipv6/af_inet6.c`, `net/core/sock.c`,
//! `net/ipv4/tcp.c`, `net/ipv4/udp.c`). Blocking is the syscall layer's
//! (`syscalls::inet`): every call here is non-blocking, and the netstack's
//! waker for the endpoint wakes the file's [`Waiters`].

use std::any::Any;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abi::{Errno, Stat};
use netstack::{
    Events, Family, Shutdown, Stack, TcpInfo, TcpSocket, TcpState, UdpSocket, WaiterId,
};
use vfs::inode::FileOps;
use vfs::waiter::Waiters;

use crate::inet_socket::{Accepted, InetSocket, Received, Timeouts};

/// `sizeof(struct sockaddr_in)`.
const SOCKADDR_IN_LEN: usize = 16;
/// `sizeof(struct sockaddr_in6)`.
const SOCKADDR_IN6_LEN: usize = 28;
/// `SIN6_LEN_RFC2133`: the shortest sockaddr_in6 Linux takes (no scope id).
const SIN6_LEN_RFC2133: usize = 24;
/// `net.core.rmem_max` and `wmem_max`: the cap on SO_RCVBUF/SO_SNDBUF.
const BUF_MAX: usize = 212_992;
/// `SOCK_MIN_RCVBUF` and `SOCK_MIN_SNDBUF` on x86-64 (`include/net/sock.h`).
const MIN_RCVBUF: usize = 2_304;
const MIN_SNDBUF: usize = 4_608;
/// `sizeof(struct tcp_info)` in Linux 6.x.
const TCP_INFO_LEN: usize = 232;
/// The default TTL and hop limit (`ip_default_ttl`).
const DEFAULT_TTL: u8 = 64;

enum Proto {
    Tcp(TcpSocket),
    Udp(UdpSocket),
}

/// Options the netstack does not keep: what Linux reports back for UDP
/// options, and which per-datagram control messages to deliver.
#[derive(Clone, Copy)]
struct UdpShadow {
    reuseaddr: bool,
    reuseport: bool,
    v6only: bool,
    broadcast: bool,
    ttl: u8,
    /// IP_RECVTTL: an IP_TTL message with each IPv4 datagram.
    recv_ttl: bool,
    /// IPV6_RECVHOPLIMIT: an IPV6_HOPLIMIT message with each IPv6 one.
    recv_hoplimit: bool,
}

/// An inet socket on the sandbox's netstack.
pub struct NetSocket {
    proto: Proto,
    family: i32,
    waiters: Arc<Waiters>,
    waker: WaiterId,
    timeouts: Timeouts,
    udp: Mutex<UdpShadow>,
    ino: u64,
}

/// Which call an address comes with (the checks differ).
#[derive(Clone, Copy, PartialEq, Eq)]
enum AddrUse {
    Bind,
    Connect,
    SendTo,
}

/// A parsed application address.
enum Addr {
    Inet(SocketAddr),
    /// AF_UNSPEC: connect dissolves the association.
    Unspec,
}

fn family_of(af: i32) -> Family {
    if af == libc::AF_INET6 {
        Family::V6
    } else {
        Family::V4
    }
}

/// Parses a `sockaddr_in`/`sockaddr_in6` for a socket of family `af`, as
/// Linux's `inet_bind`, `__inet_stream_connect`, `udp_sendmsg` and their
/// IPv6 twins check them.
fn parse_addr(af: i32, b: &[u8], used: AddrUse) -> Result<Addr, Errno> {
    if b.len() < 2 {
        return Err(Errno::EINVAL);
    }
    let fam = i32::from(u16::from_le_bytes([b[0], b[1]]));
    if fam == libc::AF_UNSPEC && used == AddrUse::Connect {
        return Ok(Addr::Unspec);
    }
    let v4 = |b: &[u8]| -> Result<SocketAddr, Errno> {
        if b.len() < SOCKADDR_IN_LEN {
            return Err(Errno::EINVAL);
        }
        let port = u16::from_be_bytes([b[2], b[3]]);
        let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
        Ok(SocketAddr::V4(SocketAddrV4::new(ip, port)))
    };
    if af == libc::AF_INET {
        if b.len() < SOCKADDR_IN_LEN {
            return Err(Errno::EINVAL);
        }
        let a = v4(b)?;
        return match fam {
            libc::AF_INET => Ok(Addr::Inet(a)),
            // bind(AF_UNSPEC, INADDR_ANY) is accepted for old programs;
            // udp_sendmsg takes AF_UNSPEC as AF_INET.
            libc::AF_UNSPEC
                if used == AddrUse::SendTo
                    || (used == AddrUse::Bind && a.ip().is_unspecified()) =>
            {
                Ok(Addr::Inet(a))
            }
            _ => Err(Errno::EAFNOSUPPORT),
        };
    }
    match fam {
        libc::AF_INET6 => {
            if b.len() < SIN6_LEN_RFC2133 {
                return Err(Errno::EINVAL);
            }
            let port = u16::from_be_bytes([b[2], b[3]]);
            let flow = u32::from_be_bytes(b[4..8].try_into().expect("4 bytes"));
            let octets: [u8; 16] = b[8..24].try_into().expect("16 bytes");
            let scope = if b.len() >= SOCKADDR_IN6_LEN {
                u32::from_le_bytes(b[24..28].try_into().expect("4 bytes"))
            } else {
                0
            };
            let ip = Ipv6Addr::from(octets);
            Ok(Addr::Inet(SocketAddr::V6(SocketAddrV6::new(
                ip, port, flow, scope,
            ))))
        }
        // udpv6_sendmsg hands an AF_INET destination to the IPv4 code.
        libc::AF_INET if used == AddrUse::SendTo => {
            let a = v4(b)?;
            let ip = match a.ip() {
                IpAddr::V4(v) => v.to_ipv6_mapped(),
                IpAddr::V6(v) => v,
            };
            Ok(Addr::Inet(SocketAddr::V6(SocketAddrV6::new(
                ip,
                a.port(),
                0,
                0,
            ))))
        }
        _ if used == AddrUse::Bind || b.len() >= SIN6_LEN_RFC2133 => Err(Errno::EAFNOSUPPORT),
        _ => Err(Errno::EINVAL),
    }
}

/// The application's bytes for an address of a socket of family `af`.
pub fn sockaddr_bytes(af: i32, a: SocketAddr) -> Vec<u8> {
    let (ip, port) = (a.ip(), a.port());
    if af == libc::AF_INET {
        let v4 = match ip {
            IpAddr::V4(v) => v,
            IpAddr::V6(v) => v.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
        };
        let mut b = vec![0u8; SOCKADDR_IN_LEN];
        b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_le_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..8].copy_from_slice(&v4.octets());
        return b;
    }
    let v6 = match ip {
        IpAddr::V4(v) => v.to_ipv6_mapped(),
        IpAddr::V6(v) => v,
    };
    let mut b = vec![0u8; SOCKADDR_IN6_LEN];
    b[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_le_bytes());
    b[2..4].copy_from_slice(&port.to_be_bytes());
    b[8..24].copy_from_slice(&v6.octets());
    b
}

fn int_of(v: &[u8]) -> Result<i32, Errno> {
    v.get(..4)
        .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ok_or(Errno::EINVAL)
}

fn int_bytes(v: i32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// Linux's SO_RCVBUF/SO_SNDBUF arithmetic (`sk_setsockopt`): capped at
/// the sysctl maximum, doubled for bookkeeping, floored at the minimum.
fn buffer_size(v: i32, min: usize) -> usize {
    (usize::try_from(v.max(0)).unwrap_or(0).min(BUF_MAX) * 2).max(min)
}

/// A hop limit from IP_TTL/IPV6_UNICAST_HOPS: -1 is the default.
fn ttl_of(v: i32, min: i32) -> Result<u8, Errno> {
    match v {
        -1 => Ok(DEFAULT_TTL),
        v if (min..=255).contains(&v) => Ok(v as u8),
        _ => Err(Errno::EINVAL),
    }
}

/// `struct tcp_info` as Linux lays it out (`include/uapi/linux/tcp.h`),
/// with the fields the netstack keeps; the rest are zero.
fn tcp_info_bytes(i: &TcpInfo) -> Vec<u8> {
    let mut b = vec![0u8; TCP_INFO_LEN];
    let us = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
    let mss = i.snd_mss.max(1);
    b[0] = i.state.linux_number();
    // tcpi_ca_state: TCP_CA_Recovery (3) or TCP_CA_Open (0).
    b[1] = if i.in_recovery { 3 } else { 0 };
    b[2] = i.retransmits.min(255) as u8;
    b[4] = i.backoff.min(255) as u8;
    let mut opts = 0u8;
    if i.timestamps {
        opts |= 1; // TCPI_OPT_TIMESTAMPS
    }
    if i.sack {
        opts |= 2; // TCPI_OPT_SACK
    }
    if i.snd_wscale != 0 || i.rcv_wscale != 0 {
        opts |= 4; // TCPI_OPT_WSCALE
    }
    b[5] = opts;
    b[6] = (i.snd_wscale & 0xf) | (i.rcv_wscale << 4);
    let mut put32 = |at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put32(8, us(i.rto));
    put32(16, i.snd_mss);
    put32(20, i.rcv_mss);
    put32(24, i.unacked / mss);
    put32(28, i.sacked / mss);
    put32(68, us(i.srtt));
    put32(72, us(i.rttvar));
    put32(
        76,
        if i.snd_ssthresh == u32::MAX {
            0x7fff_ffff // TCP_INFINITE_SSTHRESH
        } else {
            i.snd_ssthresh / mss
        },
    );
    put32(80, i.snd_cwnd / mss);
    put32(84, i.rcv_mss);
    put32(100, i.total_retrans);
    put32(136, i.segs_out.min(u64::from(u32::MAX)) as u32);
    put32(140, i.segs_in.min(u64::from(u32::MAX)) as u32);
    put32(228, i.snd_wnd);
    b[120..128].copy_from_slice(&i.bytes_acked.to_le_bytes());
    b[128..136].copy_from_slice(&i.bytes_received.to_le_bytes());
    b
}

impl NetSocket {
    /// `socket(family, ty, protocol)` on `stack`.
    pub fn new(
        stack: &Arc<Stack>,
        family: i32,
        ty: i32,
        protocol: i32,
    ) -> Result<NetSocket, Errno> {
        let proto = match (ty, protocol) {
            (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) => {
                Proto::Tcp(TcpSocket::new(stack, family_of(family)))
            }
            (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => {
                Proto::Udp(UdpSocket::new(stack, family_of(family)))
            }
            _ => return Err(Errno::EPROTONOSUPPORT),
        };
        Ok(NetSocket::wrap(proto, family))
    }

    fn wrap(proto: Proto, family: i32) -> NetSocket {
        let waiters = Arc::new(Waiters::default());
        let w = waiters.clone();
        let waker: netstack::Waker = Arc::new(move |_| w.notify_all());
        let all = Events::READABLE | Events::WRITABLE | Events::ERR | Events::HUP | Events::RDHUP;
        let (id, ino) = match &proto {
            Proto::Tcp(t) => (t.register_waker(all, waker), t.id()),
            Proto::Udp(u) => (u.register_waker(all, waker), u.id()),
        };
        NetSocket {
            proto,
            family,
            waiters,
            waker: id,
            timeouts: Timeouts::default(),
            udp: Mutex::new(UdpShadow {
                reuseaddr: false,
                reuseport: false,
                v6only: false,
                broadcast: false,
                ttl: DEFAULT_TTL,
                recv_ttl: false,
                recv_hoplimit: false,
            }),
            // The endpoint's id: what /proc/net/tcp shows as the inode.
            ino,
        }
    }

    /// `socket:[N]`, the name `/proc/PID/fd` shows.
    pub fn file_name(&self) -> String {
        format!("socket:[{}]", self.ino)
    }

    /// `FIONREAD`/`SIOCINQ`: bytes ready to read (the next datagram's
    /// size for UDP); EINVAL on a listening socket, as Linux.
    pub fn bytes_readable(&self) -> Result<usize, Errno> {
        match &self.proto {
            Proto::Tcp(t) if t.state() == TcpState::Listen => Err(Errno::EINVAL),
            Proto::Tcp(t) => Ok(t.readable_bytes()),
            Proto::Udp(u) => Ok(u.next_datagram_len()),
        }
    }

    /// `SIOCOUTQ`: bytes sent and not yet acknowledged (UDP: none stay).
    /// Closing with SO_LINGER on and a time: starts the close's FIN (after
    /// the queued data) and says how long close(2) may wait for the peer
    /// to acknowledge it. None when close does not wait: no lingering,
    /// a zero time (the drop resets), unread data (tcp_close resets
    /// instead), or nothing connected.
    pub fn start_lingering_close(&self) -> Option<Duration> {
        let Proto::Tcp(t) = &self.proto else {
            return None;
        };
        let linger = t.options().linger.filter(|d| !d.is_zero())?;
        if t.readable_bytes() > 0
            || !matches!(t.state(), TcpState::Established | TcpState::CloseWait)
        {
            return None;
        }
        t.shutdown(Shutdown::Write).ok()?;
        Some(linger)
    }

    /// After [`NetSocket::start_lingering_close`]: whether our FIN is
    /// still unacknowledged. Linux's `closing()` names FIN_WAIT1, CLOSING
    /// and LAST_ACK; here a FIN queued behind unsent data leaves the state
    /// at ESTABLISHED or CLOSE_WAIT until it goes out, so those count too.
    pub fn fin_unacked(&self) -> bool {
        matches!(
            &self.proto,
            Proto::Tcp(t) if matches!(
                t.state(),
                TcpState::Established
                    | TcpState::CloseWait
                    | TcpState::FinWait1
                    | TcpState::Closing
                    | TcpState::LastAck
            )
        )
    }

    pub fn bytes_unsent(&self) -> Result<usize, Errno> {
        match &self.proto {
            Proto::Tcp(t) if t.state() == TcpState::Listen => Err(Errno::EINVAL),
            Proto::Tcp(t) => Ok(t.unacked_bytes()),
            Proto::Udp(_) => Ok(0),
        }
    }

    fn readiness(&self) -> Events {
        match &self.proto {
            Proto::Tcp(t) => t.readiness(),
            Proto::Udp(u) => u.readiness(),
        }
    }

    fn udp_shadow(&self) -> std::sync::MutexGuard<'_, UdpShadow> {
        self.udp.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_socket_option(&self, name: i32, v: &[u8]) -> Result<(), Errno> {
        if name == libc::SO_LINGER {
            if v.len() < 8 {
                return Err(Errno::EINVAL);
            }
            let on = int_of(&v[0..4])? != 0;
            let secs = int_of(&v[4..8])?;
            let linger = on.then(|| Duration::from_secs(u64::try_from(secs.max(0)).unwrap_or(0)));
            return match &self.proto {
                Proto::Tcp(t) => t.set_options(|o| o.linger = linger),
                // UDP keeps nothing to linger over.
                Proto::Udp(_) => Ok(()),
            };
        }
        let i = int_of(v)?;
        let on = i != 0;
        match (&self.proto, name) {
            (Proto::Tcp(t), libc::SO_REUSEADDR) => t.set_options(|o| o.reuseaddr = on),
            (Proto::Tcp(t), libc::SO_REUSEPORT) => t.set_options(|o| o.reuseport = on),
            (Proto::Tcp(t), libc::SO_KEEPALIVE) => t.set_options(|o| o.keepalive = on),
            (Proto::Tcp(t), libc::SO_RCVBUF) => {
                t.set_options(|o| o.rcv_buf = buffer_size(i, MIN_RCVBUF))
            }
            (Proto::Tcp(t), libc::SO_SNDBUF) => {
                t.set_options(|o| o.snd_buf = buffer_size(i, MIN_SNDBUF))
            }
            (Proto::Udp(u), libc::SO_REUSEADDR) => {
                u.set_reuse_addr(on);
                self.udp_shadow().reuseaddr = on;
                Ok(())
            }
            (Proto::Udp(u), libc::SO_REUSEPORT) => {
                u.set_reuse_port(on);
                self.udp_shadow().reuseport = on;
                Ok(())
            }
            (Proto::Udp(u), libc::SO_RCVBUF) => {
                u.set_buffer_sizes(Some(buffer_size(i, MIN_RCVBUF)), None);
                Ok(())
            }
            (Proto::Udp(u), libc::SO_SNDBUF) => {
                u.set_buffer_sizes(None, Some(buffer_size(i, MIN_SNDBUF)));
                Ok(())
            }
            // Only a permission to send to broadcast addresses, which the
            // loopback stack has none of.
            (Proto::Udp(_), libc::SO_BROADCAST) => {
                self.udp_shadow().broadcast = on;
                Ok(())
            }
            _ => Err(unsupported("setsockopt", libc::SOL_SOCKET, name)),
        }
    }

    fn get_socket_option(&self, name: i32) -> Result<Vec<u8>, Errno> {
        let b = |on: bool| int_bytes(i32::from(on));
        let sz = |n: usize| int_bytes(i32::try_from(n).unwrap_or(i32::MAX));
        Ok(match (&self.proto, name) {
            (Proto::Tcp(t), libc::SO_ERROR) => int_bytes(t.take_error().map_or(0, |e| e.raw())),
            (Proto::Udp(_), libc::SO_ERROR) => int_bytes(0),
            (Proto::Tcp(t), libc::SO_ACCEPTCONN) => b(t.state() == TcpState::Listen),
            (Proto::Udp(_), libc::SO_ACCEPTCONN) => b(false),
            (Proto::Tcp(t), libc::SO_REUSEADDR) => b(t.options().reuseaddr),
            (Proto::Tcp(t), libc::SO_REUSEPORT) => b(t.options().reuseport),
            (Proto::Tcp(t), libc::SO_KEEPALIVE) => b(t.options().keepalive),
            (Proto::Tcp(t), libc::SO_RCVBUF) => sz(t.options().rcv_buf),
            (Proto::Tcp(t), libc::SO_SNDBUF) => sz(t.options().snd_buf),
            (Proto::Tcp(t), libc::SO_LINGER) => {
                let l = t.options().linger;
                let mut v = b(l.is_some());
                v.extend_from_slice(&sz(l.map_or(0, |d| d.as_secs() as usize)));
                v
            }
            (Proto::Udp(_), libc::SO_LINGER) => vec![0u8; 8],
            (Proto::Udp(_), libc::SO_REUSEADDR) => b(self.udp_shadow().reuseaddr),
            (Proto::Udp(_), libc::SO_REUSEPORT) => b(self.udp_shadow().reuseport),
            (Proto::Udp(_), libc::SO_BROADCAST) => b(self.udp_shadow().broadcast),
            (Proto::Udp(_), libc::SO_KEEPALIVE) => b(false),
            (Proto::Tcp(_), libc::SO_BROADCAST) => b(false),
            (Proto::Udp(u), libc::SO_RCVBUF) => sz(u.buffer_sizes().0),
            (Proto::Udp(u), libc::SO_SNDBUF) => sz(u.buffer_sizes().1),
            _ => return Err(unsupported("getsockopt", libc::SOL_SOCKET, name)),
        })
    }

    fn tcp_option(&self, name: i32, v: &[u8]) -> Result<(), Errno> {
        let Proto::Tcp(t) = &self.proto else {
            return Err(unsupported("setsockopt", libc::IPPROTO_TCP, name));
        };
        let i = int_of(v)?;
        let secs = |max: i32| -> Result<Duration, Errno> {
            if !(1..=max).contains(&i) {
                return Err(Errno::EINVAL);
            }
            Ok(Duration::from_secs(i as u64))
        };
        // Limits from tcp_sock_set_keepidle/keepintvl/keepcnt.
        match name {
            libc::TCP_NODELAY => t.set_options(|o| o.nodelay = i != 0),
            libc::TCP_CORK => t.set_options(|o| o.cork = i != 0),
            libc::TCP_KEEPIDLE => {
                let d = secs(32767)?;
                t.set_options(|o| o.keep_idle = d)
            }
            libc::TCP_KEEPINTVL => {
                let d = secs(32767)?;
                t.set_options(|o| o.keep_intvl = d)
            }
            libc::TCP_KEEPCNT => {
                if !(1..=127).contains(&i) {
                    return Err(Errno::EINVAL);
                }
                t.set_options(|o| o.keep_cnt = i as u32)
            }
            _ => Err(unsupported("setsockopt", libc::IPPROTO_TCP, name)),
        }
    }

    fn get_tcp_option(&self, name: i32) -> Result<Vec<u8>, Errno> {
        let Proto::Tcp(t) = &self.proto else {
            return Err(unsupported("getsockopt", libc::IPPROTO_TCP, name));
        };
        let o = t.options();
        Ok(match name {
            libc::TCP_NODELAY => int_bytes(i32::from(o.nodelay)),
            libc::TCP_CORK => int_bytes(i32::from(o.cork)),
            libc::TCP_KEEPIDLE => int_bytes(o.keep_idle.as_secs() as i32),
            libc::TCP_KEEPINTVL => int_bytes(o.keep_intvl.as_secs() as i32),
            libc::TCP_KEEPCNT => int_bytes(o.keep_cnt as i32),
            libc::TCP_INFO => tcp_info_bytes(&t.info()),
            _ => return Err(unsupported("getsockopt", libc::IPPROTO_TCP, name)),
        })
    }

    fn set_ttl(&self, ttl: u8) -> Result<(), Errno> {
        match &self.proto {
            Proto::Tcp(t) => t.set_options(|o| o.ttl = ttl),
            Proto::Udp(u) => {
                u.set_ttl(ttl);
                self.udp_shadow().ttl = ttl;
                Ok(())
            }
        }
    }

    fn ttl(&self) -> u8 {
        match &self.proto {
            Proto::Tcp(t) => t.options().ttl,
            Proto::Udp(_) => self.udp_shadow().ttl,
        }
    }

    fn v6only(&self) -> bool {
        match &self.proto {
            Proto::Tcp(t) => t.options().v6only,
            Proto::Udp(_) => self.udp_shadow().v6only,
        }
    }
}

fn is_mapped(a: SocketAddr) -> bool {
    matches!(a, SocketAddr::V6(v) if v.ip().to_ipv4_mapped().is_some())
}

/// A control message carrying one int, as `put_cmsg` writes it into
/// `room` bytes: whole when it fits (padded to CMSG_SPACE if that fits
/// too), cut short with MSG_CTRUNC when only part does, nothing when not
/// even the header fits.
fn int_cmsg(level: i32, kind: i32, v: i32, room: usize) -> (Vec<u8>, bool) {
    const HDR: usize = 16;
    let mut m = Vec::with_capacity(HDR + 8);
    m.extend_from_slice(&((HDR + 4) as u64).to_le_bytes());
    m.extend_from_slice(&level.to_le_bytes());
    m.extend_from_slice(&kind.to_le_bytes());
    m.extend_from_slice(&v.to_le_bytes());
    if room < HDR {
        return (Vec::new(), true);
    }
    if room < m.len() {
        m.truncate(room);
        return (m, true);
    }
    m.resize(m.len().next_multiple_of(8).min(room), 0);
    (m, false)
}

fn unsupported(call: &str, level: i32, name: i32) -> Errno {
    tracing::info!(
        "{call} level {level} option {name} not supported on netstack sockets: ENOPROTOOPT"
    );
    Errno::ENOPROTOOPT
}

impl Drop for NetSocket {
    fn drop(&mut self) {
        match &self.proto {
            Proto::Tcp(t) => t.unregister_waker(self.waker),
            Proto::Udp(u) => u.unregister_waker(self.waker),
        }
    }
}

impl InetSocket for NetSocket {
    fn family(&self) -> i32 {
        self.family
    }

    fn sock_type(&self) -> i32 {
        match self.proto {
            Proto::Tcp(_) => libc::SOCK_STREAM,
            Proto::Udp(_) => libc::SOCK_DGRAM,
        }
    }

    fn protocol(&self) -> i32 {
        match self.proto {
            Proto::Tcp(_) => libc::IPPROTO_TCP,
            Proto::Udp(_) => libc::IPPROTO_UDP,
        }
    }

    fn bind(&self, addr: &[u8]) -> Result<(), Errno> {
        let Addr::Inet(a) = parse_addr(self.family, addr, AddrUse::Bind)? else {
            return Err(Errno::EAFNOSUPPORT);
        };
        // inet6_bind: a v4-mapped address on a v6-only socket.
        if self.v6only() && is_mapped(a) {
            return Err(Errno::EINVAL);
        }
        match &self.proto {
            Proto::Tcp(t) => t.bind(a),
            Proto::Udp(u) => u.bind(a),
        }
    }

    fn connect(&self, addr: &[u8]) -> Result<(), Errno> {
        let a = parse_addr(self.family, addr, AddrUse::Connect)?;
        // tcp_v6_connect and ip6_datagram_connect refuse a v4-mapped peer
        // on a v6-only socket.
        if matches!(a, Addr::Inet(a) if is_mapped(a)) && self.v6only() {
            return Err(Errno::ENETUNREACH);
        }
        match (&self.proto, a) {
            (Proto::Tcp(t), Addr::Inet(a)) => t.connect(a),
            (Proto::Udp(u), Addr::Inet(a)) => u.connect(a),
            (Proto::Udp(u), Addr::Unspec) => {
                u.disconnect();
                Ok(())
            }
            // tcp_disconnect on a socket that never connected does nothing.
            (Proto::Tcp(t), Addr::Unspec) if t.state() == TcpState::Closed => Ok(()),
            (Proto::Tcp(_), Addr::Unspec) => {
                tracing::info!(
                    "connect(AF_UNSPEC) on a connected TCP socket not supported: EOPNOTSUPP"
                );
                Err(Errno::EOPNOTSUPP)
            }
        }
    }

    fn listen(&self, backlog: i32) -> Result<(), Errno> {
        match &self.proto {
            Proto::Tcp(t) => t.listen(backlog),
            Proto::Udp(_) => Err(Errno::EOPNOTSUPP),
        }
    }

    fn accept(&self) -> Result<Accepted, Errno> {
        let Proto::Tcp(t) = &self.proto else {
            return Err(Errno::EOPNOTSUPP);
        };
        let (conn, peer) = t.accept()?;
        let sock = NetSocket::wrap(Proto::Tcp(conn), self.family);
        Ok(Accepted {
            name: sock.file_name(),
            peer: sockaddr_bytes(self.family, peer),
            file: Arc::new(sock),
        })
    }

    fn local_name(&self) -> Result<Vec<u8>, Errno> {
        let a = match &self.proto {
            Proto::Tcp(t) => t.local_addr(),
            Proto::Udp(u) => u.local_addr(),
        };
        Ok(sockaddr_bytes(self.family, a))
    }

    fn peer_name(&self) -> Result<Vec<u8>, Errno> {
        let a = match &self.proto {
            Proto::Tcp(t) => t.peer_addr()?,
            Proto::Udp(u) => u.peer_addr()?,
        };
        Ok(sockaddr_bytes(self.family, a))
    }

    fn shutdown(&self, how: i32) -> Result<(), Errno> {
        let how = match how {
            libc::SHUT_RD => Shutdown::Read,
            libc::SHUT_WR => Shutdown::Write,
            libc::SHUT_RDWR => Shutdown::Both,
            _ => return Err(Errno::EINVAL),
        };
        match &self.proto {
            Proto::Tcp(t) => t.shutdown(how),
            Proto::Udp(u) => u.shutdown(how),
        }
    }

    fn send(
        &self,
        data: &[u8],
        to: Option<&[u8]>,
        control: &[u8],
        flags: i32,
    ) -> Result<usize, Errno> {
        if !control.is_empty() {
            tracing::info!("control messages on netstack sockets not supported: EINVAL");
            return Err(Errno::EINVAL);
        }
        if flags & libc::MSG_OOB != 0 {
            tracing::info!("MSG_OOB on netstack sockets not supported: EOPNOTSUPP");
            return Err(Errno::EOPNOTSUPP);
        }
        match &self.proto {
            // A stream ignores the address (tcp_sendmsg).
            Proto::Tcp(t) => t.send(data),
            Proto::Udp(u) => {
                if flags & libc::MSG_MORE != 0 {
                    tracing::info!("MSG_MORE on netstack UDP sockets not supported: EOPNOTSUPP");
                    return Err(Errno::EOPNOTSUPP);
                }
                let to = match to {
                    Some(b) => match parse_addr(self.family, b, AddrUse::SendTo)? {
                        Addr::Inet(a) => Some(a),
                        Addr::Unspec => None,
                    },
                    None => None,
                };
                if to.is_some_and(is_mapped) && self.v6only() {
                    return Err(Errno::ENETUNREACH);
                }
                u.send_to(data, to)
            }
        }
    }

    fn recv(&self, buf: &mut [u8], control_room: usize, flags: i32) -> Result<Received, Errno> {
        if flags & libc::MSG_ERRQUEUE != 0 {
            // Nothing reports errors through the error queue here.
            return Err(Errno::EAGAIN);
        }
        let peek = flags & libc::MSG_PEEK != 0;
        match &self.proto {
            Proto::Tcp(t) => {
                if flags & libc::MSG_OOB != 0 {
                    // No urgent data is ever queued (tcp_recv_urg).
                    return Err(Errno::EINVAL);
                }
                let n = t.recv(buf, peek)?;
                Ok(Received {
                    len: n,
                    name: Vec::new(),
                    control: Vec::new(),
                    flags: 0,
                })
            }
            Proto::Udp(u) => {
                if flags & libc::MSG_OOB != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                let r = u.recv_from(buf, peek)?;
                let truncated = r.full_len > r.len;
                let shadow = *self.udp_shadow();
                let v4 = match r.from.ip() {
                    IpAddr::V4(_) => true,
                    IpAddr::V6(v) => v.to_ipv4_mapped().is_some(),
                };
                let want = match (v4, shadow.recv_ttl, shadow.recv_hoplimit) {
                    (true, true, _) => Some((libc::IPPROTO_IP, libc::IP_TTL)),
                    (false, _, true) => Some((libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT)),
                    _ => None,
                };
                let (control, ctrunc) = match want {
                    Some((level, kind)) => int_cmsg(level, kind, i32::from(r.ttl), control_room),
                    None => (Vec::new(), false),
                };
                let msg_flags = if truncated { libc::MSG_TRUNC } else { 0 }
                    | if ctrunc { libc::MSG_CTRUNC } else { 0 };
                Ok(Received {
                    len: if flags & libc::MSG_TRUNC != 0 {
                        r.full_len
                    } else {
                        r.len
                    },
                    name: sockaddr_bytes(self.family, r.from),
                    control,
                    flags: msg_flags,
                })
            }
        }
    }

    fn set_option(&self, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        match level {
            libc::SOL_SOCKET => self.set_socket_option(name, value),
            libc::IPPROTO_TCP => self.tcp_option(name, value),
            libc::IPPROTO_IP if name == libc::IP_TTL => {
                let ttl = ttl_of(int_of(value)?, 1)?;
                self.set_ttl(ttl)
            }
            libc::IPPROTO_IP if name == libc::IP_RECVTTL => {
                self.udp_shadow().recv_ttl = int_of(value)? != 0;
                Ok(())
            }
            libc::IPPROTO_IPV6 if self.family == libc::AF_INET6 => match name {
                libc::IPV6_V6ONLY => {
                    let on = int_of(value)? != 0;
                    match &self.proto {
                        Proto::Tcp(t) => t.set_options(|o| o.v6only = on),
                        Proto::Udp(u) => {
                            u.set_v6only(on)?;
                            self.udp_shadow().v6only = on;
                            Ok(())
                        }
                    }
                }
                libc::IPV6_UNICAST_HOPS => {
                    let ttl = ttl_of(int_of(value)?, 0)?;
                    self.set_ttl(ttl)
                }
                libc::IPV6_RECVHOPLIMIT => {
                    self.udp_shadow().recv_hoplimit = int_of(value)? != 0;
                    Ok(())
                }
                _ => Err(unsupported("setsockopt", level, name)),
            },
            _ => Err(unsupported("setsockopt", level, name)),
        }
    }

    fn get_option(&self, level: i32, name: i32, _room: usize) -> Result<Vec<u8>, Errno> {
        match level {
            libc::SOL_SOCKET => self.get_socket_option(name),
            libc::IPPROTO_TCP => self.get_tcp_option(name),
            libc::IPPROTO_IP if name == libc::IP_TTL => Ok(int_bytes(i32::from(self.ttl()))),
            libc::IPPROTO_IP if name == libc::IP_RECVTTL => {
                Ok(int_bytes(i32::from(self.udp_shadow().recv_ttl)))
            }
            libc::IPPROTO_IPV6 if self.family == libc::AF_INET6 => match name {
                libc::IPV6_V6ONLY => Ok(int_bytes(i32::from(self.v6only()))),
                libc::IPV6_UNICAST_HOPS => Ok(int_bytes(i32::from(self.ttl()))),
                libc::IPV6_RECVHOPLIMIT => {
                    Ok(int_bytes(i32::from(self.udp_shadow().recv_hoplimit)))
                }
                _ => Err(unsupported("getsockopt", level, name)),
            },
            _ => Err(unsupported("getsockopt", level, name)),
        }
    }

    fn timeout(&self, send: bool) -> Option<Duration> {
        self.timeouts.get(send)
    }

    fn set_timeout(&self, send: bool, t: Option<Duration>) {
        self.timeouts.set(send, t)
    }
}

/// `read`/`write` are `recv`/`send` without flags; blocking is the
/// caller's (it retries on EAGAIN after waiting on [`FileOps::waiters`]).
impl FileOps for NetSocket {
    fn read(&self, buf: &mut [u8], _offset: u64) -> vfs::Result<usize> {
        InetSocket::recv(self, buf, 0, 0).map(|r| r.len.min(buf.len()))
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
        let ev = self.readiness();
        let mut r = 0i16;
        if ev.intersects(Events::READABLE) {
            r |= libc::POLLIN | libc::POLLRDNORM;
        }
        if ev.intersects(Events::WRITABLE) {
            r |= libc::POLLOUT | libc::POLLWRNORM;
        }
        if ev.intersects(Events::RDHUP) {
            r |= libc::POLLRDHUP;
        }
        let always = if ev.intersects(Events::ERR) {
            libc::POLLERR
        } else {
            0
        } | if ev.intersects(Events::HUP) {
            libc::POLLHUP
        } else {
            0
        };
        (r & events) | always
    }

    fn waiters(&self) -> Option<&Waiters> {
        Some(&self.waiters)
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }

    /// A stream moves bytes straight between the application's pages and
    /// the connection's buffers (a datagram takes the copying path, which
    /// keeps it whole).
    fn iov_io(&self) -> Option<&dyn vfs::inode::IovIo> {
        match self.proto {
            Proto::Tcp(_) => Some(self),
            Proto::Udp(_) => None,
        }
    }
}

/// Runs `op` over each iovec in turn while it takes all of it; the total,
/// or the first error if nothing moved.
fn each_iovec(
    iov: &[libc::iovec],
    mut op: impl FnMut(*mut u8, usize) -> Result<usize, Errno>,
) -> Result<usize, Errno> {
    let mut total = 0;
    for v in iov.iter().filter(|v| v.iov_len > 0) {
        match op(v.iov_base.cast(), v.iov_len) {
            Ok(n) => {
                total += n;
                if n < v.iov_len {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total)
}

impl vfs::inode::IovIo for NetSocket {
    unsafe fn read_iov(&self, iov: &[libc::iovec], _offset: u64) -> vfs::Result<usize> {
        let Proto::Tcp(t) = &self.proto else {
            return Err(Errno::EINVAL);
        };
        each_iovec(iov, |base, len| {
            // SAFETY: the caller vouches that each iovec names writable
            // memory nobody else references for the call's duration.
            let buf = unsafe { std::slice::from_raw_parts_mut(base, len) };
            t.recv(buf, false)
        })
    }

    unsafe fn write_iov(&self, iov: &[libc::iovec], _offset: u64) -> vfs::Result<usize> {
        let Proto::Tcp(t) = &self.proto else {
            return Err(Errno::EINVAL);
        };
        each_iovec(iov, |base, len| {
            // SAFETY: the caller vouches that each iovec names readable
            // memory that stays mapped for the call's duration.
            let buf = unsafe { std::slice::from_raw_parts(base.cast_const(), len) };
            t.send(buf)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(ip: [u8; 4], port: u16) -> Vec<u8> {
        sockaddr_bytes(libc::AF_INET, SocketAddr::from((ip, port)))
    }

    #[test]
    fn sockaddr_in_golden_bytes() {
        assert_eq!(
            v4([127, 0, 0, 1], 8080),
            [2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let six = sockaddr_bytes(libc::AF_INET6, "[::1]:53".parse().unwrap());
        let mut want = vec![10, 0, 0, 53, 0, 0, 0, 0];
        want.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        want.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(six, want);
        // An IPv4 peer of a dual-stack socket shows as v4-mapped.
        let mapped = sockaddr_bytes(libc::AF_INET6, "127.0.0.1:1".parse().unwrap());
        assert_eq!(
            &mapped[8..24],
            &Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets()
        );
    }

    #[test]
    fn malformed_addresses_get_linux_errors() {
        let good = v4([127, 0, 0, 1], 1);
        let parse = |af, b: &[u8], u| parse_addr(af, b, u).map(|_| ());
        assert_eq!(
            parse(libc::AF_INET, &good[..15], AddrUse::Bind),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            parse(libc::AF_INET, &[], AddrUse::Connect),
            Err(Errno::EINVAL)
        );
        let mut wrong = good.clone();
        wrong[0] = libc::AF_INET6 as u8;
        assert_eq!(
            parse(libc::AF_INET, &wrong, AddrUse::Bind),
            Err(Errno::EAFNOSUPPORT)
        );
        assert_eq!(
            parse(libc::AF_INET, &wrong, AddrUse::Connect),
            Err(Errno::EAFNOSUPPORT)
        );
        // AF_UNSPEC binds only the wildcard.
        let mut unspec = good.clone();
        unspec[0] = 0;
        assert_eq!(
            parse(libc::AF_INET, &unspec, AddrUse::Bind),
            Err(Errno::EAFNOSUPPORT)
        );
        unspec[4..8].fill(0);
        assert!(parse(libc::AF_INET, &unspec, AddrUse::Bind).is_ok());
        assert!(matches!(
            parse_addr(libc::AF_INET, &unspec, AddrUse::Connect),
            Ok(Addr::Unspec)
        ));
        // sockaddr_in6 shorter than SIN6_LEN_RFC2133.
        let six = sockaddr_bytes(libc::AF_INET6, "[::1]:53".parse().unwrap());
        assert_eq!(
            parse(libc::AF_INET6, &six[..23], AddrUse::Bind),
            Err(Errno::EINVAL)
        );
        assert!(parse(libc::AF_INET6, &six[..24], AddrUse::Bind).is_ok());
        assert_eq!(
            parse(libc::AF_INET6, &good, AddrUse::Bind),
            Err(Errno::EAFNOSUPPORT)
        );
        assert!(parse(libc::AF_INET6, &good, AddrUse::SendTo).is_ok());
    }

    #[test]
    fn buffer_sizes_follow_linux_arithmetic() {
        assert_eq!(buffer_size(1000, MIN_RCVBUF), 2304);
        assert_eq!(buffer_size(65536, MIN_RCVBUF), 131_072);
        assert_eq!(buffer_size(i32::MAX, MIN_SNDBUF), 425_984);
        assert_eq!(buffer_size(-5, MIN_SNDBUF), 4608);
    }

    #[test]
    fn tcp_round_trip_through_the_byte_interface() {
        let stack = Stack::with_loopback(Arc::new(netstack::MonotonicClock::new()));
        let _timers = stack.spawn_timer_thread().unwrap();
        let server = NetSocket::new(&stack, libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        server.bind(&v4([127, 0, 0, 1], 0)).unwrap();
        server.listen(4).unwrap();
        let name = server.local_name().unwrap();
        assert_eq!(name.len(), 16);
        let client = NetSocket::new(&stack, libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        assert_eq!(client.connect(&name), Err(Errno::EINPROGRESS));
        // Loopback completes the handshake inline.
        assert_eq!(client.connect(&name), Ok(()));
        assert_eq!(client.poll(libc::POLLOUT), libc::POLLOUT);
        let conn = server.accept().unwrap();
        assert_eq!(conn.peer, client.local_name().unwrap());
        assert_eq!(InetSocket::send(&client, b"ping", None, &[], 0), Ok(4));
        let c = conn
            .file
            .as_any()
            .unwrap()
            .downcast_ref::<NetSocket>()
            .unwrap();
        assert_eq!(c.bytes_readable(), Ok(4));
        let mut buf = [0u8; 8];
        let r = InetSocket::recv(c, &mut buf, 0, libc::MSG_PEEK).unwrap();
        assert_eq!(&buf[..r.len], b"ping");
        assert_eq!(c.read(&mut buf, 0), Ok(4));
        assert_eq!(c.read(&mut buf, 0), Err(Errno::EAGAIN));
        let info = c
            .get_option(libc::IPPROTO_TCP, libc::TCP_INFO, 232)
            .unwrap();
        assert_eq!(info.len(), TCP_INFO_LEN);
        assert_eq!(info[0], 1, "ESTABLISHED");
        assert_eq!(
            client.set_option(libc::IPPROTO_TCP, libc::TCP_NODELAY, &[1, 0]),
            Err(Errno::EINVAL),
            "short option buffer"
        );
        drop(client);
        assert_eq!(c.read(&mut buf, 0), Ok(0), "end of stream after close");
    }

    #[test]
    fn udp_truncation_and_peek_report_like_linux() {
        let stack = Stack::with_loopback(Arc::new(netstack::MonotonicClock::new()));
        let a = NetSocket::new(&stack, libc::AF_INET6, libc::SOCK_DGRAM, 0).unwrap();
        let six = sockaddr_bytes(libc::AF_INET6, "[::1]:0".parse().unwrap());
        a.bind(&six).unwrap();
        let to = a.local_name().unwrap();
        let b = NetSocket::new(&stack, libc::AF_INET6, libc::SOCK_DGRAM, 0).unwrap();
        assert_eq!(InetSocket::send(&b, b"hello", Some(&to), &[], 0), Ok(5));
        let mut small = [0u8; 2];
        let r = InetSocket::recv(&a, &mut small, 0, libc::MSG_PEEK | libc::MSG_TRUNC).unwrap();
        assert_eq!((r.len, r.flags), (5, libc::MSG_TRUNC));
        // The sender was bound on the fly to the wildcard; it sent from ::1.
        assert_eq!(r.name[2..4], b.local_name().unwrap()[2..4]);
        assert_eq!(r.name[8..24], Ipv6Addr::LOCALHOST.octets());
        let r = InetSocket::recv(&a, &mut small, 0, 0).unwrap();
        assert_eq!((r.len, &small), (2, b"he"));
        // IPV6_RECVHOPLIMIT: the hop limit as a control message.
        a.set_option(
            libc::IPPROTO_IPV6,
            libc::IPV6_RECVHOPLIMIT,
            &1i32.to_le_bytes(),
        )
        .unwrap();
        InetSocket::send(&b, b"x", Some(&to), &[], 0).unwrap();
        let r = InetSocket::recv(&a, &mut small, 64, 0).unwrap();
        let mut want = 20u64.to_le_bytes().to_vec();
        want.extend_from_slice(&libc::IPPROTO_IPV6.to_le_bytes());
        want.extend_from_slice(&libc::IPV6_HOPLIMIT.to_le_bytes());
        want.extend_from_slice(&[64, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!((r.control, r.flags), (want, 0));
        InetSocket::send(&b, b"x", Some(&to), &[], 0).unwrap();
        let r = InetSocket::recv(&a, &mut small, 8, 0).unwrap();
        assert_eq!((r.control.len(), r.flags), (0, libc::MSG_CTRUNC));
        assert_eq!(a.bytes_readable(), Ok(0));
        assert_eq!(
            NetSocket::new(&stack, libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_TCP).err(),
            Some(Errno::EPROTONOSUPPORT)
        );
    }
}
