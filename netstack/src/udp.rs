//! UDP endpoints (upstream's `pkg/tcpip/transport/udp`; Linux's
//! `net/ipv4/udp.c` for the semantics).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use abi::Errno;

use crate::header::{proto, UdpDatagram, UdpRepr, UDP_HEADER_LEN};
use crate::ports::{Binding, PortTable};
use crate::socket::{accept_addr, local_matches, user_addr, Family, RecvInfo, Shutdown};
use crate::stack::{canonical, Endpoint, EpId, Inner, Stack, DEFAULT_TTL};
use crate::waiter::{Events, WaiterId, WaiterList, Waker};

/// Default receive and send buffer (Linux's `rmem_default`/`wmem_default`).
pub const UDP_DEFAULT_BUFFER: usize = 212_992;
/// What each queued datagram costs beyond its payload, standing in for
/// Linux's `skb->truesize` overhead so small datagrams fill the buffer as
/// they do there.
const DATAGRAM_OVERHEAD: usize = 256;
/// Largest payload a UDP/IPv4 datagram carries (65535 - 20 - 8).
const MAX_PAYLOAD_V4: usize = 65507;
/// Largest payload a UDP/IPv6 datagram carries (65535 - 8).
const MAX_PAYLOAD_V6: usize = 65527;

/// Per-stack UDP state.
pub(crate) struct Tables {
    ports: PortTable,
    /// Bound endpoints by local port, in bind order.
    bound: HashMap<u16, Vec<EpId>>,
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            ports: PortTable::new(false),
            bound: HashMap::new(),
        }
    }
}

struct Datagram {
    from: (IpAddr, u16),
    ttl: u8,
    data: Vec<u8>,
}

/// One UDP endpoint.
pub(crate) struct UdpEp {
    pub waiters: WaiterList,
    family: Family,
    v6only: bool,
    reuseaddr: bool,
    reuseport: bool,
    /// Canonical local address (unspecified = any) and port (0 = unbound).
    local: (IpAddr, u16),
    remote: Option<(IpAddr, u16)>,
    rcv: VecDeque<Datagram>,
    rcv_used: usize,
    rcv_buf: usize,
    snd_buf: usize,
    shut_rd: bool,
    shut_wr: bool,
    ttl: u8,
}

impl UdpEp {
    fn dual(&self) -> bool {
        self.family == Family::V6 && !self.v6only
    }

    fn readiness(&self) -> Events {
        let mut ev = Events::WRITABLE;
        if !self.rcv.is_empty() || self.shut_rd {
            ev |= Events::READABLE;
        }
        if self.shut_rd {
            ev |= Events::RDHUP;
        }
        if self.shut_rd && self.shut_wr {
            ev |= Events::HUP;
        }
        ev
    }

    /// Linux's `compute_score`: how well this endpoint matches, or None.
    fn score(&self, src: (IpAddr, u16), dst: IpAddr) -> Option<u32> {
        if !local_matches(self.local.0, self.dual(), dst) {
            return None;
        }
        let mut s = if self.family == Family::V4 || dst.is_ipv6() {
            2
        } else {
            1
        };
        if !self.local.0.is_unspecified() {
            s += 4;
        }
        if let Some(r) = self.remote {
            if r != src {
                return None;
            }
            s += 4;
        }
        Some(s)
    }
}

/// Delivers a received datagram (checksum already checked).
pub(crate) fn input(inner: &mut Inner, src: IpAddr, dst: IpAddr, ttl: u8, bytes: &[u8]) {
    let Ok(d) = UdpDatagram::parse(bytes) else {
        inner.net.stats.ip_malformed += 1;
        return;
    };
    let (src, dst) = (canonical(src), canonical(dst));
    let from = (src, d.src_port());
    // Best score wins; among equals, a SO_REUSEPORT group spreads by a
    // hash of the sender, otherwise the most recently bound wins.
    let mut best: Vec<(u32, EpId, bool)> = Vec::new();
    for id in inner.udp.bound.get(&d.dst_port()).into_iter().flatten() {
        if let Some(Endpoint::Udp(u)) = inner.eps.get(id) {
            if let Some(s) = u.score(from, dst) {
                best.push((s, *id, u.reuseport));
            }
        }
    }
    let Some(top) = best.iter().map(|b| b.0).max() else {
        inner.net.stats.udp_no_port += 1;
        return;
    };
    best.retain(|b| b.0 == top);
    let id = if best.len() > 1 && best.iter().all(|b| b.2) {
        let key = [
            &format!("{src}").into_bytes()[..],
            &d.src_port().to_be_bytes(),
        ]
        .concat();
        best[(inner.net.keyed_hash(&key) % best.len() as u64) as usize].1
    } else {
        best[best.len() - 1].1
    };
    let Some(u) = inner.udp_ep(id) else { return };
    // Linux (`__udp_enqueue_schedule_skb`) drops once the charge already
    // queued exceeds the buffer, so one datagram always fits.
    if u.rcv_used > u.rcv_buf || u.shut_rd {
        inner.net.stats.udp_rcvbuf_errors += u64::from(!u.shut_rd);
        return;
    }
    let data = d.payload().to_vec();
    u.rcv_used += data.len() + DATAGRAM_OVERHEAD;
    u.rcv.push_back(Datagram { from, ttl, data });
    inner.net.stats.udp_delivered += 1;
    inner.net.notify(id, Events::READABLE);
}

/// The `/proc/net/udp` view of an endpoint.
pub(crate) fn entry(id: EpId, u: &UdpEp) -> crate::SocketEntry {
    let (rip, rport) = u.remote.unwrap_or((u.family.unspecified(), 0));
    crate::SocketEntry {
        tcp: false,
        family: u.family,
        local: user_addr(u.family, u.local.0, u.local.1),
        remote: user_addr(u.family, rip, rport),
        state: if u.remote.is_some() { 1 } else { 7 },
        tx_queue: 0,
        rx_queue: u.rcv_used,
        id: id.0,
        open: true,
        rto: std::time::Duration::ZERO,
        cwnd_segments: 0,
        ssthresh_segments: None,
    }
}

/// A UDP socket. Dropping it closes the endpoint.
pub struct UdpSocket {
    stack: Arc<Stack>,
    id: EpId,
}

impl UdpSocket {
    /// A new unbound socket (`socket(family, SOCK_DGRAM, 0)`).
    pub fn new(stack: &Arc<Stack>, family: Family) -> UdpSocket {
        let id = stack.with(|i| {
            let id = i.new_ep_id();
            i.eps.insert(
                id,
                Endpoint::Udp(Box::new(UdpEp {
                    waiters: WaiterList::default(),
                    family,
                    v6only: false,
                    reuseaddr: false,
                    reuseport: false,
                    local: (family.unspecified(), 0),
                    remote: None,
                    rcv: VecDeque::new(),
                    rcv_used: 0,
                    rcv_buf: UDP_DEFAULT_BUFFER,
                    snd_buf: UDP_DEFAULT_BUFFER,
                    shut_rd: false,
                    shut_wr: false,
                    ttl: DEFAULT_TTL,
                })),
            );
            id
        });
        UdpSocket {
            stack: stack.clone(),
            id,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner, &mut UdpEp) -> R) -> R {
        self.stack.with(|i| {
            // Take the endpoint out so `f` can use the rest of the stack.
            let Some(Endpoint::Udp(mut u)) = i.eps.remove(&self.id) else {
                unreachable!("a live UdpSocket's endpoint is in the table");
            };
            let r = f(i, &mut u);
            i.eps.insert(self.id, Endpoint::Udp(u));
            r
        })
    }

    /// `bind(2)`. Port 0 picks an ephemeral port.
    pub fn bind(&self, addr: SocketAddr) -> Result<(), Errno> {
        let id = self.id;
        self.with(|i, u| {
            if u.local.1 != 0 {
                return Err(Errno::EINVAL);
            }
            let ip = accept_addr(u.family, u.v6only, addr)?;
            if !ip.is_unspecified() && !i.net.is_local(ip) {
                return Err(Errno::EADDRNOTAVAIL);
            }
            bind_port(i, id, u, ip, addr.port(), Errno::EADDRINUSE)
        })
    }

    /// `connect(2)`: fixes the peer (and the local address, if unbound).
    pub fn connect(&self, addr: SocketAddr) -> Result<(), Errno> {
        let id = self.id;
        self.with(|i, u| {
            let ip = accept_addr(u.family, u.v6only, addr)?;
            if addr.port() == 0 {
                return Err(Errno::ECONNREFUSED);
            }
            let ip = if ip.is_unspecified() {
                loopback_of(ip)
            } else {
                ip
            };
            let route = i.net.route(ip)?;
            if u.local.1 == 0 {
                bind_port(i, id, u, u.family.unspecified(), 0, Errno::EAGAIN)?;
            }
            if u.local.0.is_unspecified() {
                u.local.0 = route.src;
            }
            u.remote = Some((ip, addr.port()));
            Ok(())
        })
    }

    /// `connect(2)` with `AF_UNSPEC`: forgets the peer.
    pub fn disconnect(&self) {
        self.with(|_, u| u.remote = None);
    }

    /// `sendto(2)`/`send(2)`: `to` or the connected peer. Returns the
    /// bytes sent (always all of them).
    pub fn send_to(&self, data: &[u8], to: Option<SocketAddr>) -> Result<usize, Errno> {
        let id = self.id;
        self.with(|i, u| {
            if u.shut_wr {
                return Err(Errno::EPIPE);
            }
            let (dst, port) = match to {
                Some(a) => (accept_addr(u.family, u.v6only, a)?, a.port()),
                None => u.remote.ok_or(Errno::EDESTADDRREQ)?,
            };
            if port == 0 {
                return Err(Errno::EINVAL);
            }
            let dst = if dst.is_unspecified() {
                loopback_of(dst)
            } else {
                dst
            };
            let max = if dst.is_ipv4() {
                MAX_PAYLOAD_V4
            } else {
                MAX_PAYLOAD_V6
            };
            if data.len() > max || data.len() > u.snd_buf {
                return Err(Errno::EMSGSIZE);
            }
            if u.local.0.is_ipv4() != dst.is_ipv4() && !u.local.0.is_unspecified() {
                return Err(Errno::ENETUNREACH);
            }
            let route = i.net.route(dst)?;
            if u.local.1 == 0 {
                bind_port(i, id, u, u.family.unspecified(), 0, Errno::EAGAIN)?;
            }
            let src = if u.local.0.is_unspecified() {
                route.src
            } else {
                u.local.0
            };
            let repr = UdpRepr {
                src_port: u.local.1,
                dst_port: port,
                payload_len: data.len(),
            };
            i.net.output(
                src,
                dst,
                proto::UDP,
                u.ttl,
                UDP_HEADER_LEN + data.len(),
                Some(6),
                |b| {
                    repr.emit(b).expect("length checked above");
                    b[UDP_HEADER_LEN..].copy_from_slice(data);
                },
            )?;
            Ok(data.len())
        })
    }

    /// `recvfrom(2)`: the next datagram, truncated to `buf`; `peek` leaves
    /// it queued (`MSG_PEEK`). EAGAIN if none is queued.
    pub fn recv_from(&self, buf: &mut [u8], peek: bool) -> Result<RecvInfo, Errno> {
        self.with(|_, u| {
            let Some(d) = u.rcv.front() else {
                if u.shut_rd {
                    return Ok(RecvInfo {
                        len: 0,
                        full_len: 0,
                        from: user_addr(u.family, u.family.unspecified(), 0),
                        ttl: 0,
                    });
                }
                return Err(Errno::EAGAIN);
            };
            let n = buf.len().min(d.data.len());
            buf[..n].copy_from_slice(&d.data[..n]);
            let info = RecvInfo {
                len: n,
                full_len: d.data.len(),
                from: user_addr(u.family, d.from.0, d.from.1),
                ttl: d.ttl,
            };
            if !peek {
                let d = u.rcv.pop_front().expect("front exists");
                u.rcv_used -= d.data.len() + DATAGRAM_OVERHEAD;
            }
            Ok(info)
        })
    }

    /// `shutdown(2)`. ENOTCONN unless connected, as Linux.
    pub fn shutdown(&self, how: Shutdown) -> Result<(), Errno> {
        let id = self.id;
        self.with(|i, u| {
            if u.remote.is_none() {
                return Err(Errno::ENOTCONN);
            }
            u.shut_rd |= how.read();
            u.shut_wr |= how.write();
            i.net.notify(id, u.readiness());
            Ok(())
        })
    }

    /// `getsockname(2)`.
    pub fn local_addr(&self) -> SocketAddr {
        self.with(|_, u| user_addr(u.family, u.local.0, u.local.1))
    }

    /// `getpeername(2)`.
    pub fn peer_addr(&self) -> Result<SocketAddr, Errno> {
        self.with(|_, u| {
            u.remote
                .map(|(a, p)| user_addr(u.family, a, p))
                .ok_or(Errno::ENOTCONN)
        })
    }

    /// Current readiness.
    pub fn readiness(&self) -> Events {
        self.with(|_, u| u.readiness())
    }

    /// `FIONREAD`: the size of the next datagram (0 if none).
    pub fn next_datagram_len(&self) -> usize {
        self.with(|_, u| u.rcv.front().map_or(0, |d| d.data.len()))
    }

    /// Registers a waker for `mask` (see [`Waker`]).
    pub fn register_waker(&self, mask: Events, waker: Waker) -> WaiterId {
        self.stack.register(self.id, mask, waker)
    }

    /// The endpoint's id, unique within the stack and never reused
    /// ([`crate::SocketEntry::id`]).
    pub fn id(&self) -> u64 {
        self.id.0
    }

    /// Removes a waker.
    pub fn unregister_waker(&self, id: WaiterId) {
        self.stack.unregister(self.id, id)
    }

    /// `SO_REUSEADDR`.
    pub fn set_reuse_addr(&self, on: bool) {
        self.with(|_, u| u.reuseaddr = on);
    }

    /// `SO_REUSEPORT`.
    pub fn set_reuse_port(&self, on: bool) {
        self.with(|_, u| u.reuseport = on);
    }

    /// `IPV6_V6ONLY`; EINVAL once bound or on an IPv4 socket.
    pub fn set_v6only(&self, on: bool) -> Result<(), Errno> {
        self.with(|_, u| {
            if u.family != Family::V6 || u.local.1 != 0 {
                return Err(Errno::EINVAL);
            }
            u.v6only = on;
            Ok(())
        })
    }

    /// `SO_RCVBUF`/`SO_SNDBUF`, in bytes of buffer (the Sentry applies
    /// Linux's doubling and clamping before calling).
    pub fn set_buffer_sizes(&self, rcv: Option<usize>, snd: Option<usize>) {
        self.with(|_, u| {
            if let Some(r) = rcv {
                u.rcv_buf = r;
            }
            if let Some(s) = snd {
                u.snd_buf = s;
            }
        });
    }

    /// (`SO_RCVBUF`, `SO_SNDBUF`).
    pub fn buffer_sizes(&self) -> (usize, usize) {
        self.with(|_, u| (u.rcv_buf, u.snd_buf))
    }

    /// `IP_TTL`/`IPV6_UNICAST_HOPS`.
    pub fn set_ttl(&self, ttl: u8) {
        self.with(|_, u| u.ttl = ttl);
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let id = self.id;
        self.stack.with(|i| {
            if let Some(Endpoint::Udp(u)) = i.eps.remove(&id) {
                if u.local.1 != 0 {
                    i.udp.ports.release(u.local.1, id);
                    if let Some(v) = i.udp.bound.get_mut(&u.local.1) {
                        v.retain(|e| *e != id);
                    }
                }
            }
        });
    }
}

/// Connecting or sending to the wildcard means the local host (Linux).
fn loopback_of(ip: IpAddr) -> IpAddr {
    if ip.is_ipv4() {
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
    }
}

fn bind_port(
    i: &mut Inner,
    id: EpId,
    u: &mut UdpEp,
    ip: IpAddr,
    port: u16,
    exhausted: Errno,
) -> Result<(), Errno> {
    let b = Binding {
        ep: id,
        addr: ip,
        dual: u.dual(),
        reuseaddr: u.reuseaddr,
        reuseport: u.reuseport,
        listening: false,
    };
    let hint = i.net.random() as u32;
    let port = i.udp.ports.reserve(port, b, hint, exhausted)?;
    u.local = (ip, port);
    i.udp.bound.entry(port).or_default().push(id);
    Ok(())
}
