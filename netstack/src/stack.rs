//! The stack: NICs, addresses, routes, the IP layer, ICMP echo, timers,
//! and the one lock that guards them (upstream's `pkg/tcpip/stack`).
//!
//! # Locking and callbacks
//!
//! All protocol state lives in one `Mutex<Inner>`. Every public operation
//! takes it, does its work, and queues what must happen outside it:
//! packets to write to links and endpoints whose readiness changed. The
//! thread that finds nobody else doing so then *flushes* without the
//! lock held: it runs the wakers and writes the packets, looping until
//! both queues are empty. A link that delivers inline (loopback) thus
//! re-enters the stack from the flushing thread; the nested operation
//! sees a flush in progress, leaves its own output queued, and returns,
//! so processing is iterative, never recursive.
//!
//! Lock order: the stack lock is innermost with respect to the Sentry.
//! The Sentry may call into the stack holding its own locks; the stack
//! never calls a waker or a link while holding its lock. A waker may
//! take Sentry locks and may call back into the stack.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use abi::Errno;

use crate::clock::{Clock, FakeClock};
use crate::header::{
    self, checksum, proto, IcmpEcho, IcmpEchoRepr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    ICMPV4_ECHO_REPLY, ICMPV4_ECHO_REQUEST, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST,
    ICMP_ECHO_HEADER_LEN, IPV4_HEADER_LEN, IPV6_HEADER_LEN,
};
use crate::link::{Dispatcher, LinkCaps, LinkEndpoint, Loopback};
use crate::tcp;
use crate::udp;
use crate::waiter::{Events, WaiterId, WaiterList, Waker};

/// Identifies a NIC within its stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NicId(pub(crate) usize);

/// Identifies an endpoint; never reused within a stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct EpId(pub u64);

/// Default TTL / hop limit (Linux's `ip_default_ttl`).
pub(crate) const DEFAULT_TTL: u8 = 64;

/// Counters, a subset of Linux's SNMP MIB (`/proc/net/snmp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// IP packets handed to the stack by links.
    pub ip_received: u64,
    /// IP packets handed to links.
    pub ip_sent: u64,
    /// IP packets dropped as malformed (bad header, fragment, bad checksum).
    pub ip_malformed: u64,
    /// IP packets dropped because their destination is not ours.
    pub ip_not_local: u64,
    /// Transport segments dropped for a bad checksum.
    pub bad_checksum: u64,
    /// ICMP echo requests answered.
    pub icmp_echo_replied: u64,
    /// ICMP echo replies received.
    pub icmp_echo_replies_received: u64,
    /// UDP datagrams delivered to a socket.
    pub udp_delivered: u64,
    /// UDP datagrams to a port nobody holds.
    pub udp_no_port: u64,
    /// UDP datagrams dropped because the receive buffer was full.
    pub udp_rcvbuf_errors: u64,
    /// TCP segments received (valid header).
    pub tcp_segments_received: u64,
    /// TCP segments sent.
    pub tcp_segments_sent: u64,
    /// TCP segments retransmitted.
    pub tcp_retransmits: u64,
    /// TCP resets sent.
    pub tcp_resets_sent: u64,
    /// SYNs dropped because a listener's queue was full.
    pub tcp_listen_drops: u64,
}

/// One address on a NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceAddr {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
}

/// What the Sentry needs to describe a NIC (`SIOCGIFCONF`, netlink).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Index (1-based, like Linux's ifindex).
    pub index: u32,
    /// Name (`lo`).
    pub name: String,
    /// MTU.
    pub mtu: usize,
    /// Whether it is a loopback link.
    pub loopback: bool,
    /// Its addresses.
    pub addrs: Vec<InterfaceAddr>,
    /// Its traffic.
    pub counters: NicCounters,
}

struct Nic {
    name: String,
    link: Arc<dyn LinkEndpoint>,
    mtu: usize,
    caps: LinkCaps,
    addrs: Vec<InterfaceAddr>,
    counters: NicCounters,
}

/// A NIC's traffic (`/proc/net/dev`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicCounters {
    /// IP packets the link delivered.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// IP packets handed to the link.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
}

#[derive(Clone, Copy, Debug)]
struct Route {
    dest: IpAddr,
    prefix_len: u8,
    nic: NicId,
}

fn in_prefix(a: IpAddr, net: IpAddr, len: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// An IPv4-mapped IPv6 address as IPv4; anything else unchanged. The
/// stack keys all its tables by canonical addresses.
pub(crate) fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

/// The services protocols use while the stack lock is held: routing and
/// output, timers, readiness notification, randomness, counters.
pub(crate) struct Net {
    /// The time of the current operation (read once when the lock is taken).
    pub now: Duration,
    nics: Vec<Nic>,
    routes: Vec<Route>,
    out: Vec<(Arc<dyn LinkEndpoint>, Vec<u8>)>,
    notify: Vec<(EpId, Events)>,
    timers: BinaryHeap<Reverse<(Duration, EpId)>>,
    /// The earliest deadline moved earlier: wake the timer thread.
    timers_changed: bool,
    rng: u64,
    hasher: RandomState,
    ip_id: u16,
    pub stats: Stats,
}

/// A route to a destination: the NIC and the source address to use.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteInfo {
    pub src: IpAddr,
    pub mtu: usize,
}

impl Net {
    /// A pseudo-random number (xorshift; seeded from `RandomState`).
    pub fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// A keyed hash of `data` (initial sequence numbers, RFC 6528).
    pub fn keyed_hash(&self, data: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(data);
        h.finish()
    }

    /// Queues a readiness change for `ep`'s wakers.
    pub fn notify(&mut self, ep: EpId, ev: Events) {
        if !ev.is_empty() {
            self.notify.push((ep, ev));
        }
    }

    /// Makes sure `ep`'s timer runs at or before `at`.
    pub fn schedule(&mut self, ep: EpId, at: Duration) {
        if self.timers.peek().is_none_or(|Reverse((t, _))| at < *t) {
            self.timers_changed = true;
        }
        self.timers.push(Reverse((at, ep)));
    }

    fn nic_of_local(&self, a: IpAddr) -> Option<NicId> {
        let a = canonical(a);
        self.nics
            .iter()
            .position(|n| n.addrs.iter().any(|x| x.addr == a))
            .map(NicId)
            .or_else(|| {
                // Every address in a loopback subnet is local (127.0.0.0/8).
                self.nics
                    .iter()
                    .position(|n| {
                        n.caps.loopback
                            && a.is_ipv4()
                            && n.addrs.iter().any(|x| in_prefix(a, x.addr, x.prefix_len))
                    })
                    .map(NicId)
            })
    }

    /// Whether `a` is one of the stack's addresses.
    pub fn is_local(&self, a: IpAddr) -> bool {
        self.nic_of_local(a).is_some()
    }

    fn route_nic(&self, dst: IpAddr) -> Option<NicId> {
        if self.is_local(dst) {
            // Linux's local table: traffic to our own addresses loops back.
            if let Some(lo) = self.nics.iter().position(|n| n.caps.loopback) {
                return Some(NicId(lo));
            }
        }
        self.routes
            .iter()
            .filter(|r| in_prefix(dst, r.dest, r.prefix_len))
            .max_by_key(|r| r.prefix_len)
            .map(|r| r.nic)
    }

    /// The route to `dst`: ENETUNREACH if none, EADDRNOTAVAIL if the
    /// NIC has no address of the family to send from.
    pub fn route(&self, dst: IpAddr) -> Result<RouteInfo, Errno> {
        let dst = canonical(dst);
        let nic = self.route_nic(dst).ok_or(Errno::ENETUNREACH)?;
        let n = &self.nics[nic.0];
        let src = if self
            .nics
            .iter()
            .any(|n| n.addrs.iter().any(|x| x.addr == dst))
        {
            dst
        } else {
            let same: Vec<_> = n
                .addrs
                .iter()
                .filter(|x| x.addr.is_ipv4() == dst.is_ipv4())
                .collect();
            same.iter()
                .find(|x| in_prefix(dst, x.addr, x.prefix_len))
                .or(same.first())
                .map(|x| x.addr)
                .ok_or(Errno::EADDRNOTAVAIL)?
        };
        Ok(RouteInfo { src, mtu: n.mtu })
    }

    /// Sends a transport segment of `len` bytes, written by `fill`, from
    /// `src` to `dst`. `csum_at` is the offset of a pseudo-header
    /// checksum field to fill (unless the link offloads checksums).
    #[expect(clippy::too_many_arguments, reason = "one IP header's worth of fields")]
    pub fn output(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        ttl: u8,
        len: usize,
        csum_at: Option<usize>,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), Errno> {
        let (src, dst) = (canonical(src), canonical(dst));
        let nic = self.route_nic(dst).ok_or(Errno::ENETUNREACH)?;
        let n = &self.nics[nic.0];
        let hlen = if dst.is_ipv4() {
            IPV4_HEADER_LEN
        } else {
            IPV6_HEADER_LEN
        };
        if hlen + len > n.mtu {
            return Err(Errno::EMSGSIZE);
        }
        let mut pkt = vec![0u8; hlen + len];
        fill(&mut pkt[hlen..]);
        if let (Some(at), false) = (csum_at, n.caps.checksum_offload) {
            header::fill_transport_checksum(src, dst, protocol, &mut pkt[hlen..], at);
        }
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                self.ip_id = self.ip_id.wrapping_add(1);
                Ipv4Repr {
                    src: s,
                    dst: d,
                    protocol,
                    ttl,
                    tos: 0,
                    id: self.ip_id,
                    payload_len: len,
                }
                .emit(&mut pkt)
                .map_err(|_| Errno::EMSGSIZE)?;
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                Ipv6Repr {
                    src: s,
                    dst: d,
                    next_header: protocol,
                    hop_limit: ttl,
                    traffic_class: 0,
                    payload_len: len,
                }
                .emit(&mut pkt)
                .map_err(|_| Errno::EMSGSIZE)?;
            }
            _ => return Err(Errno::EAFNOSUPPORT),
        }
        self.stats.ip_sent += 1;
        let link = n.link.clone();
        let c = &mut self.nics[nic.0].counters;
        c.tx_packets += 1;
        c.tx_bytes += pkt.len() as u64;
        self.out.push((link, pkt));
        Ok(())
    }
}

/// One endpoint in the stack's table.
pub(crate) enum Endpoint {
    Tcp(Box<tcp::Tcb>),
    Udp(Box<udp::UdpEp>),
}

impl Endpoint {
    pub fn waiters(&mut self) -> &mut WaiterList {
        match self {
            Endpoint::Tcp(t) => &mut t.waiters,
            Endpoint::Udp(u) => &mut u.waiters,
        }
    }

    fn waiters_ref(&self) -> &WaiterList {
        match self {
            Endpoint::Tcp(t) => &t.waiters,
            Endpoint::Udp(u) => &u.waiters,
        }
    }
}

/// Everything the stack lock guards.
pub(crate) struct Inner {
    pub net: Net,
    pub eps: HashMap<EpId, Endpoint>,
    pub tcp: tcp::Tables,
    pub udp: udp::Tables,
    next_ep: u64,
    next_waiter: u64,
    flushing: bool,
    timer_thread_stop: bool,
}

impl Inner {
    pub fn new_ep_id(&mut self) -> EpId {
        self.next_ep += 1;
        EpId(self.next_ep)
    }

    pub fn tcb(&mut self, id: EpId) -> Option<&mut tcp::Tcb> {
        match self.eps.get_mut(&id) {
            Some(Endpoint::Tcp(t)) => Some(t),
            _ => None,
        }
    }

    pub fn udp_ep(&mut self, id: EpId) -> Option<&mut udp::UdpEp> {
        match self.eps.get_mut(&id) {
            Some(Endpoint::Udp(u)) => Some(u),
            _ => None,
        }
    }

    fn ip_input(&mut self, nic: NicId, pkt: &[u8]) {
        self.net.stats.ip_received += 1;
        let Some(n) = self.net.nics.get_mut(nic.0) else {
            return;
        };
        n.counters.rx_packets += 1;
        n.counters.rx_bytes += pkt.len() as u64;
        let offload = n.caps.checksum_offload;
        let (src, dst, protocol, ttl, payload): (IpAddr, IpAddr, u8, u8, &[u8]) =
            match pkt.first().map(|b| b >> 4) {
                Some(4) => match Ipv4Packet::parse(pkt) {
                    Ok(p) if offload || p.header_checksum_ok() => (
                        p.src().into(),
                        p.dst().into(),
                        p.protocol(),
                        p.ttl(),
                        p.payload(),
                    ),
                    _ => {
                        self.net.stats.ip_malformed += 1;
                        return;
                    }
                },
                Some(6) => match Ipv6Packet::parse(pkt) {
                    Ok(p) => (
                        p.src().into(),
                        p.dst().into(),
                        p.protocol(),
                        p.hop_limit(),
                        p.payload(),
                    ),
                    Err(_) => {
                        self.net.stats.ip_malformed += 1;
                        return;
                    }
                },
                _ => {
                    self.net.stats.ip_malformed += 1;
                    return;
                }
            };
        if !self.net.is_local(dst) {
            self.net.stats.ip_not_local += 1;
            return;
        }
        if !offload {
            let ok = match protocol {
                proto::TCP | proto::ICMPV6 => {
                    header::transport_checksum_ok(src, dst, protocol, payload)
                }
                // A zero UDP checksum means "none", legal only over IPv4.
                proto::UDP => {
                    (src.is_ipv4() && payload.len() >= 8 && payload[6..8] == [0, 0])
                        || header::transport_checksum_ok(src, dst, protocol, payload)
                }
                proto::ICMPV4 => checksum(payload) == 0,
                _ => true,
            };
            if !ok {
                self.net.stats.bad_checksum += 1;
                return;
            }
        }
        match protocol {
            proto::TCP => tcp::input(self, src, dst, payload),
            proto::UDP => udp::input(self, src, dst, ttl, payload),
            proto::ICMPV4 if src.is_ipv4() => self.icmp_input(src, dst, payload),
            proto::ICMPV6 if src.is_ipv6() => self.icmp_input(src, dst, payload),
            _ => {}
        }
    }

    fn icmp_input(&mut self, src: IpAddr, dst: IpAddr, msg: &[u8]) {
        let Ok(e) = IcmpEcho::parse(msg) else { return };
        let (request, reply, protocol) = if src.is_ipv4() {
            (ICMPV4_ECHO_REQUEST, ICMPV4_ECHO_REPLY, proto::ICMPV4)
        } else {
            (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY, proto::ICMPV6)
        };
        if e.icmp_type() == reply {
            self.net.stats.icmp_echo_replies_received += 1;
            return;
        }
        if e.icmp_type() != request || e.code() != 0 {
            return;
        }
        let data = e.data();
        let repr = IcmpEchoRepr {
            icmp_type: reply,
            ident: e.ident(),
            seq: e.seq(),
        };
        let v4 = src.is_ipv4();
        let sent = self.net.output(
            dst,
            src,
            protocol,
            DEFAULT_TTL,
            ICMP_ECHO_HEADER_LEN + data.len(),
            (!v4).then_some(2),
            |b| {
                repr.emit(b);
                b[ICMP_ECHO_HEADER_LEN..].copy_from_slice(data);
                if v4 {
                    let s = checksum(b);
                    b[2..4].copy_from_slice(&s.to_be_bytes());
                }
            },
        );
        if sent.is_ok() {
            self.net.stats.icmp_echo_replied += 1;
        }
    }

    fn run_timers(&mut self) {
        while let Some(&Reverse((t, id))) = self.net.timers.peek() {
            if t > self.net.now {
                break;
            }
            self.net.timers.pop();
            tcp::on_timer(self, id, t);
        }
    }
}

/// A TCP/IP stack. Shared (`Arc`) by its sockets and links.
pub struct Stack {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
    timer_cv: Condvar,
}

impl Stack {
    /// An empty stack (no NICs) reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Arc<Stack> {
        let hasher = RandomState::new();
        let seed = hasher.hash_one(0x6e65_7473_7461_636bu64) | 1;
        Arc::new(Stack {
            inner: Mutex::new(Inner {
                net: Net {
                    now: clock.now(),
                    nics: Vec::new(),
                    routes: Vec::new(),
                    out: Vec::new(),
                    notify: Vec::new(),
                    timers: BinaryHeap::new(),
                    timers_changed: false,
                    rng: seed,
                    hasher,
                    ip_id: 0,
                    stats: Stats::default(),
                },
                eps: HashMap::new(),
                tcp: tcp::Tables::default(),
                udp: udp::Tables::default(),
                next_ep: 0,
                next_waiter: 0,
                flushing: false,
                timer_thread_stop: false,
            }),
            clock,
            timer_cv: Condvar::new(),
        })
    }

    /// A stack with `lo` (the loopback link) holding 127.0.0.1/8 and
    /// ::1/128, what `--network=none` gives a sandbox.
    pub fn with_loopback(clock: Arc<dyn Clock>) -> Arc<Stack> {
        let s = Stack::new(clock);
        let lo = s.add_nic("lo", Loopback::new());
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        s.add_address(lo, v4, 8)
            .expect("fresh NIC takes 127.0.0.1/8");
        s.add_address(lo, v6, 128).expect("fresh NIC takes ::1/128");
        s.add_route(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8, lo)
            .expect("lo route");
        s.add_route(v6, 128, lo).expect("lo route");
        s
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` under the lock at the current time, then flushes (see the
    /// module doc).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = self.lock();
        let now = self.clock.now();
        if now > g.net.now {
            g.net.now = now;
        }
        let r = f(&mut g);
        let flush = !g.flushing;
        g.flushing = true;
        drop(g);
        if flush {
            self.flush();
        }
        r
    }

    fn flush(&self) {
        /// Clears the flushing flag even if a waker or link panics.
        struct Reset<'a>(&'a Stack, bool);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.lock().flushing = false;
                }
            }
        }
        let mut guard = Reset(self, false);
        loop {
            let (out, wakes) = {
                let mut g = self.lock();
                if g.net.out.is_empty() && g.net.notify.is_empty() {
                    g.flushing = false;
                    guard.1 = true;
                    if std::mem::take(&mut g.net.timers_changed) {
                        self.timer_cv.notify_all();
                    }
                    return;
                }
                let out = std::mem::take(&mut g.net.out);
                let mut notes = std::mem::take(&mut g.net.notify);
                notes.sort_by_key(|(id, _)| *id);
                let mut wakes: Vec<(Waker, Events)> = Vec::new();
                let mut i = 0;
                while i < notes.len() {
                    let id = notes[i].0;
                    let mut ev = Events::NONE;
                    while i < notes.len() && notes[i].0 == id {
                        ev |= notes[i].1;
                        i += 1;
                    }
                    if let Some(ep) = g.eps.get(&id) {
                        ep.waiters_ref().matching(ev, &mut wakes);
                    }
                }
                (out, wakes)
            };
            for (w, ev) in wakes {
                w(ev);
            }
            for (link, pkt) in out {
                link.write_packet(pkt);
            }
        }
    }

    /// Attaches a link as a new NIC.
    pub fn add_nic(self: &Arc<Self>, name: &str, link: Arc<dyn LinkEndpoint>) -> NicId {
        let id = {
            let mut g = self.lock();
            g.net.nics.push(Nic {
                name: name.to_string(),
                mtu: link.mtu(),
                caps: link.caps(),
                link: link.clone(),
                addrs: Vec::new(),
                counters: NicCounters::default(),
            });
            NicId(g.net.nics.len() - 1)
        };
        link.attach(Dispatcher {
            stack: Arc::downgrade(self),
            nic: id,
        });
        id
    }

    /// Adds `addr/prefix_len` to a NIC. EEXIST if it is already there,
    /// EINVAL for a bad prefix or an unspecified/multicast address.
    pub fn add_address(&self, nic: NicId, addr: IpAddr, prefix_len: u8) -> Result<(), Errno> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max || addr.is_unspecified() || addr.is_multicast() {
            return Err(Errno::EINVAL);
        }
        let mut g = self.lock();
        let n = g.net.nics.get_mut(nic.0).ok_or(Errno::ENODEV)?;
        if n.addrs.iter().any(|a| a.addr == addr) {
            return Err(Errno::EEXIST);
        }
        n.addrs.push(InterfaceAddr { addr, prefix_len });
        Ok(())
    }

    /// Routes `dest/prefix_len` through a NIC.
    pub fn add_route(&self, dest: IpAddr, prefix_len: u8, nic: NicId) -> Result<(), Errno> {
        let max = if dest.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(Errno::EINVAL);
        }
        let mut g = self.lock();
        if nic.0 >= g.net.nics.len() {
            return Err(Errno::ENODEV);
        }
        g.net.routes.push(Route {
            dest,
            prefix_len,
            nic,
        });
        Ok(())
    }

    /// The NICs, for `SIOCGIFCONF`, netlink and `/proc/net/dev`.
    pub fn interfaces(&self) -> Vec<InterfaceInfo> {
        let g = self.lock();
        g.net
            .nics
            .iter()
            .enumerate()
            .map(|(i, n)| InterfaceInfo {
                index: i as u32 + 1,
                name: n.name.clone(),
                mtu: n.mtu,
                loopback: n.caps.loopback,
                addrs: n.addrs.clone(),
                counters: n.counters,
            })
            .collect()
    }

    /// The NIC called `name`.
    pub fn nic_by_name(&self, name: &str) -> Option<NicId> {
        self.lock()
            .net
            .nics
            .iter()
            .position(|n| n.name == name)
            .map(NicId)
    }

    /// Hands a received IP packet to the stack, as a link would
    /// ([`Dispatcher::deliver`]).
    pub fn deliver_packet(&self, nic: NicId, packet: Vec<u8>) {
        self.with(|i| i.ip_input(nic, &packet));
    }

    /// Every TCP and UDP endpoint, in creation order (`/proc/net/tcp`...).
    pub fn sockets(&self) -> Vec<crate::SocketEntry> {
        let g = self.lock();
        let mut v: Vec<_> = g
            .eps
            .iter()
            .map(|(id, e)| match e {
                Endpoint::Tcp(t) => tcp::entry(*id, t),
                Endpoint::Udp(u) => udp::entry(*id, u),
            })
            .collect();
        v.sort_by_key(|e| e.id);
        v
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.lock().net.stats
    }

    /// The earliest pending timer deadline, if any.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.lock().net.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Runs every timer due at the clock's current time.
    pub fn run_timers(&self) {
        self.with(|i| i.run_timers());
    }

    /// Test aid for a stack on a [`FakeClock`]: moves `clock` forward by
    /// `d`, stopping at every deadline on the way to run its timers, so
    /// each fires at exactly its time.
    pub fn advance(&self, clock: &FakeClock, d: Duration) {
        let target = clock.now() + d;
        while let Some(t) = self.next_deadline().filter(|t| *t <= target) {
            clock.set(t);
            self.run_timers();
        }
        clock.set(target);
        self.run_timers();
    }

    /// Starts a thread that runs the stack's timers on its clock (the
    /// Sentry's, with [`crate::MonotonicClock`]). It stops when the
    /// returned handle is dropped.
    pub fn spawn_timer_thread(self: &Arc<Self>) -> std::io::Result<TimerThread> {
        let s = self.clone();
        s.lock().timer_thread_stop = false;
        let handle = std::thread::Builder::new()
            .name("netstack-timers".into())
            .spawn(move || {
                let mut g = s.lock();
                loop {
                    if g.timer_thread_stop {
                        return;
                    }
                    let now = s.clock.now();
                    match g.net.timers.peek().map(|Reverse((t, _))| *t) {
                        Some(t) if t <= now => {
                            drop(g);
                            s.run_timers();
                            g = s.lock();
                        }
                        Some(t) => {
                            g = s
                                .timer_cv
                                .wait_timeout(g, t - now)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0
                        }
                        None => g = s.timer_cv.wait(g).unwrap_or_else(PoisonError::into_inner),
                    }
                }
            })?;
        Ok(TimerThread {
            stack: self.clone(),
            handle: Some(handle),
        })
    }

    /// Registers `waker` for `mask` on endpoint `ep`.
    pub(crate) fn register(&self, ep: EpId, mask: Events, waker: Waker) -> WaiterId {
        let mut g = self.lock();
        g.next_waiter += 1;
        let id = WaiterId(g.next_waiter);
        if let Some(e) = g.eps.get_mut(&ep) {
            e.waiters().add(id, mask, waker);
        }
        id
    }

    /// Removes a waker registered on `ep`.
    pub(crate) fn unregister(&self, ep: EpId, id: WaiterId) {
        if let Some(e) = self.lock().eps.get_mut(&ep) {
            e.waiters().remove(id);
        }
    }
}

/// The thread running a stack's timers; dropping it stops the thread.
pub struct TimerThread {
    stack: Arc<Stack>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for TimerThread {
    fn drop(&mut self) {
        self.stack.lock().timer_thread_stop = true;
        self.stack.timer_cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
