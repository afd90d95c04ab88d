//! Types shared by the socket-facing endpoint APIs (UDP and TCP).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use abi::Errno;

use crate::stack::canonical;

/// The socket's address family (`AF_INET` or `AF_INET6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `AF_INET`.
    V4,
    /// `AF_INET6` (dual-stack unless `IPV6_V6ONLY`).
    V6,
}

impl Family {
    /// The wildcard address of the family.
    pub fn unspecified(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }
}

/// Which directions `shutdown(2)` closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// `SHUT_RD`.
    Read,
    /// `SHUT_WR`.
    Write,
    /// `SHUT_RDWR`.
    Both,
}

impl Shutdown {
    pub(crate) fn read(self) -> bool {
        matches!(self, Shutdown::Read | Shutdown::Both)
    }

    pub(crate) fn write(self) -> bool {
        matches!(self, Shutdown::Write | Shutdown::Both)
    }
}

/// What a receive returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvInfo {
    /// Bytes copied into the caller's buffer.
    pub len: usize,
    /// Bytes the message held (UDP: more than `len` means truncated,
    /// `MSG_TRUNC`); equal to `len` for TCP.
    pub full_len: usize,
    /// The sender (UDP), or the peer (TCP).
    pub from: SocketAddr,
    /// The datagram's TTL or hop limit as received (`IP_RECVTTL`,
    /// `IPV6_RECVHOPLIMIT`); 0 when there was no datagram.
    pub ttl: u8,
}

/// Checks that `a` suits a socket of `family` (with `v6only`) and returns
/// its canonical IP (v4-mapped IPv6 as IPv4).
pub(crate) fn accept_addr(family: Family, v6only: bool, a: SocketAddr) -> Result<IpAddr, Errno> {
    match (family, a.ip()) {
        (Family::V4, IpAddr::V4(v4)) => Ok(IpAddr::V4(v4)),
        (Family::V4, IpAddr::V6(_)) => Err(Errno::EAFNOSUPPORT),
        (Family::V6, IpAddr::V4(_)) => Err(Errno::EAFNOSUPPORT),
        (Family::V6, ip @ IpAddr::V6(v6)) => {
            let c = canonical(ip);
            if c.is_ipv4() && v6only {
                return Err(Errno::EADDRNOTAVAIL);
            }
            // `::ffff:0.0.0.0` is not the IPv6 wildcard.
            if v6.is_unspecified() {
                return Ok(ip);
            }
            Ok(c)
        }
    }
}

/// `ip:port` as a socket of `family` reports it (IPv4 as v4-mapped on an
/// IPv6 socket).
pub(crate) fn user_addr(family: Family, ip: IpAddr, port: u16) -> SocketAddr {
    match (family, ip) {
        (Family::V6, IpAddr::V4(v4)) => {
            SocketAddr::V6(SocketAddrV6::new(v4.to_ipv6_mapped(), port, 0, 0))
        }
        _ => SocketAddr::new(ip, port),
    }
}

/// Whether a local binding of `bound` (canonical; unspecified = any)
/// accepts packets addressed to `dst` (canonical).
pub(crate) fn local_matches(bound: IpAddr, dual: bool, dst: IpAddr) -> bool {
    if bound.is_unspecified() {
        bound.is_ipv4() == dst.is_ipv4() || (dual && dst.is_ipv4())
    } else {
        bound == dst
    }
}

/// One endpoint as `/proc/net/{tcp,tcp6,udp,udp6}` list it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketEntry {
    /// TCP (else UDP).
    pub tcp: bool,
    /// The socket's family (an AF_INET6 socket lists in the `6` files,
    /// its IPv4 peers v4-mapped).
    pub family: Family,
    /// Local address as the socket reports it.
    pub local: SocketAddr,
    /// Remote address (unspecified, port 0, when unconnected).
    pub remote: SocketAddr,
    /// Linux's state number (UDP: 1 connected, 7 not).
    pub state: u8,
    /// Bytes queued to send.
    pub tx_queue: usize,
    /// Bytes queued to read (a listener: connections waiting).
    pub rx_queue: usize,
    /// The endpoint's id ([`crate::TcpSocket::id`], [`crate::UdpSocket::id`]).
    pub id: u64,
    /// Whether a socket still holds it (a closed connection finishing in
    /// the background, e.g. in TIME_WAIT, has none).
    pub open: bool,
    /// TCP: the retransmission timeout now, the congestion window in
    /// segments, and the slow-start threshold in segments (None until the
    /// first loss ends the initial slow start). Zero and None for UDP.
    pub rto: std::time::Duration,
    pub cwnd_segments: u32,
    pub ssthresh_segments: Option<u32>,
}
