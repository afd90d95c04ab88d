//! TCP endpoints (upstream's `pkg/tcpip/transport/tcp`): the demultiplexer,
//! listeners and their queues, timers, and the socket-facing
//! [`TcpSocket`]. The per-connection state machine is in `tcb.rs`.

mod seq;
mod tcb;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use abi::Errno;

pub(crate) use self::tcb::Tcb;
pub use self::tcb::TcpSocketOptions;
use self::tcb::{Outcome, Seg, SockState};
use crate::header::{proto, TcpFlags, TcpOptions, TcpRepr, TcpSegment};
use crate::ports::{Binding, PortTable};
use crate::socket::{accept_addr, local_matches, user_addr, Family, Shutdown};
use crate::stack::{canonical, Endpoint, EpId, Inner, Net, Stack, DEFAULT_TTL};
use crate::waiter::{Events, WaiterId, Waker};

/// Linux's `net.core.somaxconn` default: the cap on a listen backlog.
const SOMAXCONN: usize = 4096;
/// Half-open connections a listener holds at most (Linux answers more
/// with SYN cookies; we drop them, bounding memory under a SYN flood).
const SYN_QUEUE_MIN: usize = 256;

/// TCP states, with Linux's numbering (`include/net/tcp_states.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// ESTABLISHED.
    Established,
    /// SYN_SENT.
    SynSent,
    /// SYN_RECV.
    SynRcvd,
    /// FIN_WAIT1.
    FinWait1,
    /// FIN_WAIT2.
    FinWait2,
    /// TIME_WAIT.
    TimeWait,
    /// CLOSE.
    Closed,
    /// CLOSE_WAIT.
    CloseWait,
    /// LAST_ACK.
    LastAck,
    /// LISTEN.
    Listen,
    /// CLOSING.
    Closing,
}

impl TcpState {
    /// Linux's number for the state (`/proc/net/tcp`, `tcpi_state`).
    pub fn linux_number(self) -> u8 {
        match self {
            TcpState::Established => 1,
            TcpState::SynSent => 2,
            TcpState::SynRcvd => 3,
            TcpState::FinWait1 => 4,
            TcpState::FinWait2 => 5,
            TcpState::TimeWait => 6,
            TcpState::Closed => 7,
            TcpState::CloseWait => 8,
            TcpState::LastAck => 9,
            TcpState::Listen => 10,
            TcpState::Closing => 11,
        }
    }
}

/// What `TCP_INFO` reports (a subset of Linux's `struct tcp_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    /// Connection state.
    pub state: TcpState,
    /// Consecutive timeouts of the current segment (`tcpi_retransmits`).
    pub retransmits: u32,
    /// Exponential backoff applied to the RTO.
    pub backoff: u32,
    /// Current retransmission timeout (with backoff).
    pub rto: Duration,
    /// Smoothed RTT.
    pub srtt: Duration,
    /// RTT variance.
    pub rttvar: Duration,
    /// Payload bytes per segment sent.
    pub snd_mss: u32,
    /// MSS advertised to the peer.
    pub rcv_mss: u32,
    /// Congestion window, bytes.
    pub snd_cwnd: u32,
    /// Slow-start threshold, bytes (`u32::MAX` until the first loss).
    pub snd_ssthresh: u32,
    /// Peer's receive window, bytes.
    pub snd_wnd: u32,
    /// Receive window last advertised, bytes.
    pub rcv_wnd: u32,
    /// Peer's window scale shift.
    pub snd_wscale: u8,
    /// Our window scale shift.
    pub rcv_wscale: u8,
    /// Timestamps negotiated.
    pub timestamps: bool,
    /// SACK negotiated.
    pub sack: bool,
    /// Sequence space sent and not acknowledged.
    pub unacked: u32,
    /// Bytes the peer has SACKed.
    pub sacked: u32,
    /// Segments retransmitted over the connection's life.
    pub total_retrans: u32,
    /// Segments received.
    pub segs_in: u64,
    /// Segments sent.
    pub segs_out: u64,
    /// Payload bytes acknowledged by the peer.
    pub bytes_acked: u64,
    /// Payload bytes received in order.
    pub bytes_received: u64,
    /// In fast recovery.
    pub in_recovery: bool,
}

type Tuple = (IpAddr, u16, IpAddr, u16);

/// Per-stack TCP state.
pub(crate) struct Tables {
    ports: PortTable,
    /// Connections by (local ip, local port, remote ip, remote port).
    conns: HashMap<Tuple, EpId>,
    /// Listeners by port.
    listeners: HashMap<u16, Vec<EpId>>,
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            ports: PortTable::new(true),
            conns: HashMap::new(),
            listeners: HashMap::new(),
        }
    }
}

fn with_tcb<R>(inner: &mut Inner, id: EpId, f: impl FnOnce(&mut Tcb, &mut Net) -> R) -> Option<R> {
    match inner.eps.get_mut(&id) {
        Some(Endpoint::Tcp(t)) => Some(f(t, &mut inner.net)),
        _ => None,
    }
}

fn tuple(t: &Tcb) -> Tuple {
    (t.local.0, t.local.1, t.remote.0, t.remote.1)
}

/// An initial sequence number (RFC 6528): a keyed hash of the
/// connection's addresses plus a 4 µs clock.
fn isn(net: &Net, k: Tuple) -> u32 {
    let mut key = Vec::with_capacity(40);
    for ip in [k.0, k.2] {
        match ip {
            IpAddr::V4(a) => key.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => key.extend_from_slice(&a.octets()),
        }
    }
    key.extend_from_slice(&k.1.to_be_bytes());
    key.extend_from_slice(&k.3.to_be_bytes());
    (net.keyed_hash(&key) as u32).wrapping_add((net.now.as_micros() / 4) as u32)
}

/// Answers a segment nobody wants with a RST (RFC 9293 §3.10.7.1).
pub(crate) fn send_rst_reply(
    net: &mut Net,
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    seg: &Seg,
) {
    if seg.flags.has(TcpFlags::RST) {
        return;
    }
    let (seq, ack, flags) = if seg.flags.has(TcpFlags::ACK) {
        (seg.ack, 0, TcpFlags::RST)
    } else {
        let len = seg.payload.len() as u32
            + u32::from(seg.flags.has(TcpFlags::SYN))
            + u32::from(seg.flags.has(TcpFlags::FIN));
        (0, seg.seq.wrapping_add(len), TcpFlags::RST | TcpFlags::ACK)
    };
    let repr = TcpRepr {
        src_port: local.1,
        dst_port: remote.1,
        seq,
        ack,
        flags: TcpFlags(flags),
        window: 0,
        options: TcpOptions::default(),
    };
    let hl = repr.header_len();
    if net
        .output(
            local.0,
            remote.0,
            proto::TCP,
            DEFAULT_TTL,
            hl,
            Some(16),
            |b| repr.emit(b),
        )
        .is_ok()
    {
        net.stats.tcp_resets_sent += 1;
        net.stats.tcp_segments_sent += 1;
    }
}

/// Handles a received TCP segment (checksum already checked).
pub(crate) fn input(inner: &mut Inner, src: IpAddr, dst: IpAddr, bytes: &[u8]) {
    let Ok(t) = TcpSegment::parse(bytes) else {
        inner.net.stats.ip_malformed += 1;
        return;
    };
    inner.net.stats.tcp_segments_received += 1;
    let (src, dst) = (canonical(src), canonical(dst));
    let (sport, dport) = (t.src_port(), t.dst_port());
    let seg = Seg {
        seq: t.seq(),
        ack: t.ack(),
        flags: t.flags(),
        wnd: t.window(),
        opts: t.options(),
        payload: t.payload(),
    };
    let key = (dst, dport, src, sport);
    if let Some(&id) = inner.tcp.conns.get(&key) {
        let (state, parent, reopen) = match inner.eps.get(&id) {
            Some(Endpoint::Tcp(t)) => (t.state, t.parent, t.syn_may_reopen(&seg)),
            _ => return,
        };
        let is = |f| seg.flags.has(f);
        // Linux drops the handshake-completing ACK while the listener's
        // accept queue is full (tcp_check_req); the peer retransmits.
        if state == TcpState::SynRcvd
            && is(TcpFlags::ACK)
            && !is(TcpFlags::RST)
            && !is(TcpFlags::SYN)
        {
            if let Some(Endpoint::Tcp(l)) = parent.and_then(|p| inner.eps.get(&p)) {
                if l.accept_queue.len() > l.backlog {
                    inner.net.stats.tcp_listen_drops += 1;
                    return;
                }
            }
        }
        // A new SYN for a connection in TIME_WAIT starts a new
        // connection (Linux's tcp_timewait_state_process).
        if state == TcpState::TimeWait && is(TcpFlags::SYN) && !is(TcpFlags::ACK) && reopen {
            with_tcb(inner, id, |t, net| t.enter_closed(net));
            maybe_destroy(inner, id);
            if let Some(lid) = find_listener(inner, dst, dport, src, sport) {
                listen_input(inner, lid, (dst, dport), (src, sport), &seg);
            }
            return;
        }
        let o =
            with_tcb(inner, id, |t, net| t.segment_arrives(net, &seg)).unwrap_or(Outcome::Nothing);
        after(inner, id, o);
        return;
    }
    if let Some(lid) = find_listener(inner, dst, dport, src, sport) {
        listen_input(inner, lid, (dst, dport), (src, sport), &seg);
        return;
    }
    send_rst_reply(&mut inner.net, (dst, dport), (src, sport), &seg);
}

fn find_listener(inner: &Inner, dst: IpAddr, port: u16, src: IpAddr, sport: u16) -> Option<EpId> {
    let mut best: Vec<(u32, EpId, bool)> = Vec::new();
    for id in inner.tcp.listeners.get(&port).into_iter().flatten() {
        let Some(Endpoint::Tcp(t)) = inner.eps.get(id) else {
            continue;
        };
        let dual = t.family == Family::V6 && !t.opts.v6only;
        if !local_matches(t.local.0, dual, dst) {
            continue;
        }
        let mut score = if t.local.0.is_unspecified() { 1 } else { 4 };
        if t.family == Family::V4 || dst.is_ipv6() {
            score += 1;
        }
        best.push((score, *id, t.opts.reuseport));
    }
    let top = best.iter().map(|b| b.0).max()?;
    best.retain(|b| b.0 == top);
    if best.len() > 1 && best.iter().all(|b| b.2) {
        let mut key = format!("{src}").into_bytes();
        key.extend_from_slice(&sport.to_be_bytes());
        let h = inner.net.keyed_hash(&key);
        return Some(best[(h % best.len() as u64) as usize].1);
    }
    best.first().map(|b| b.1)
}

fn listen_input(
    inner: &mut Inner,
    lid: EpId,
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    seg: &Seg,
) {
    if seg.flags.has(TcpFlags::RST) {
        return;
    }
    if seg.flags.has(TcpFlags::ACK) {
        send_rst_reply(&mut inner.net, local, remote, seg);
        return;
    }
    if !seg.flags.has(TcpFlags::SYN) {
        return;
    }
    let id = inner.new_ep_id();
    let Some(Endpoint::Tcp(l)) = inner.eps.get(&lid) else {
        return;
    };
    // Linux's tcp_conn_request: a SYN finding the accept queue full
    // (more than `backlog` waiting) is dropped; the client retries.
    if l.accept_queue.len() > l.backlog || l.syn_queue >= SYN_QUEUE_MIN.max(l.backlog) {
        inner.net.stats.tcp_listen_drops += 1;
        return;
    }
    let mut child = Tcb::child_of(l, id);
    let binding = Binding {
        ep: id,
        addr: local.0,
        dual: false,
        reuseaddr: l.opts.reuseaddr,
        reuseport: l.opts.reuseport,
        listening: false,
    };
    child.local = local;
    child.remote = remote;
    child.bound = true;
    inner.tcp.ports.add_child(local.1, binding);
    let key = tuple(&child);
    inner.tcp.conns.insert(key, id);
    let iss = isn(&inner.net, key);
    let ts_offset = inner.net.random() as u32;
    let mtu = inner.net.route(remote.0).map_or(576, |r| r.mtu);
    child.accept_syn(&mut inner.net, seg, iss, ts_offset, mtu);
    inner.eps.insert(id, Endpoint::Tcp(Box::new(child)));
    if let Some(l) = inner.tcb(lid) {
        l.syn_queue += 1;
    }
}

/// Acts on what a segment or timer did to endpoint `id`.
fn after(inner: &mut Inner, id: EpId, o: Outcome) {
    match o {
        Outcome::Nothing => {}
        Outcome::Established => {
            let Some(parent) = inner.tcb(id).and_then(|t| t.parent) else {
                return;
            };
            if let Some(l) = inner.tcb(parent) {
                l.syn_queue = l.syn_queue.saturating_sub(1);
                l.accept_queue.push_back(id);
                inner.net.notify(parent, Events::READABLE);
            }
        }
        Outcome::Closed => maybe_destroy(inner, id),
    }
}

/// Frees a CLOSED endpoint nobody holds; frees the 4-tuple of one that
/// is still held.
fn maybe_destroy(inner: &mut Inner, id: EpId) {
    let Some(t) = inner.tcb(id) else { return };
    if t.state != TcpState::Closed {
        return;
    }
    let key = tuple(t);
    let (handle_open, parent) = (t.handle_open, t.parent);
    if inner.tcp.conns.get(&key) == Some(&id) {
        inner.tcp.conns.remove(&key);
    }
    if handle_open {
        return;
    }
    if let Some(p) = parent {
        if let Some(l) = inner.tcb(p) {
            if let Some(pos) = l.accept_queue.iter().position(|c| *c == id) {
                l.accept_queue.remove(pos);
            } else {
                l.syn_queue = l.syn_queue.saturating_sub(1);
            }
        }
    }
    destroy(inner, id);
}

/// Removes an endpoint and everything that refers to it.
fn destroy(inner: &mut Inner, id: EpId) {
    let Some(Endpoint::Tcp(t)) = inner.eps.remove(&id) else {
        return;
    };
    let key = tuple(&t);
    if inner.tcp.conns.get(&key) == Some(&id) {
        inner.tcp.conns.remove(&key);
    }
    if t.bound {
        inner.tcp.ports.release(t.local.1, id);
    }
    if let Some(v) = inner.tcp.listeners.get_mut(&t.local.1) {
        v.retain(|e| *e != id);
        if v.is_empty() {
            inner.tcp.listeners.remove(&t.local.1);
        }
    }
}

/// Runs endpoint `id`'s timers (its heap entry for time `t` came due).
pub(crate) fn on_timer(inner: &mut Inner, id: EpId, t: Duration) {
    let o = with_tcb(inner, id, |tcb, net| {
        if tcb.armed_at == Some(t) {
            tcb.armed_at = None;
        }
        let o = tcb.on_timer(net);
        tcb.rearm(net);
        o
    });
    if let Some(o) = o {
        after(inner, id, o);
    }
}

/// Stops a listener: its queued and half-open connections are reset
/// (Linux's inet_csk_listen_stop).
fn stop_listening(inner: &mut Inner, id: EpId) {
    let children: Vec<EpId> = inner
        .eps
        .iter()
        .filter_map(|(cid, e)| match e {
            Endpoint::Tcp(t) if t.parent == Some(id) => Some(*cid),
            _ => None,
        })
        .collect();
    for c in children {
        with_tcb(inner, c, |t, net| {
            t.parent = None;
            t.abort(net);
        });
        destroy(inner, c);
    }
    if let Some(t) = inner.tcb(id) {
        t.accept_queue.clear();
        t.syn_queue = 0;
        let port = t.local.1;
        if let Some(v) = inner.tcp.listeners.get_mut(&port) {
            v.retain(|e| *e != id);
        }
    }
}

/// The `/proc/net/tcp` view of an endpoint.
pub(crate) fn entry(id: EpId, t: &Tcb) -> crate::SocketEntry {
    let listening = t.state == TcpState::Listen;
    let info = t.info();
    crate::SocketEntry {
        tcp: true,
        family: t.family,
        local: user_addr(t.family, t.local.0, t.local.1),
        remote: user_addr(t.family, t.remote.0, t.remote.1),
        state: t.state.linux_number(),
        tx_queue: if listening { 0 } else { t.unsent_and_unacked() },
        rx_queue: if listening {
            t.accept_queue.len()
        } else {
            t.readable_bytes()
        },
        id: id.0,
        open: t.handle_open,
        rto: info.rto,
        // A listener has no window of its own; Linux shows the initial one.
        cwnd_segments: if listening {
            tcb::INITIAL_WINDOW_SEGMENTS
        } else {
            info.snd_cwnd / info.snd_mss.max(1)
        },
        ssthresh_segments: (info.snd_ssthresh != u32::MAX)
            .then(|| info.snd_ssthresh / info.snd_mss.max(1)),
    }
}

/// A TCP socket. Dropping it is `close(2)`: the connection then finishes
/// (or is reset) in the background.
pub struct TcpSocket {
    stack: Arc<Stack>,
    id: EpId,
}

impl std::fmt::Debug for TcpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpSocket").field("id", &self.id.0).finish()
    }
}

impl TcpSocket {
    /// A new socket (`socket(family, SOCK_STREAM, 0)`).
    pub fn new(stack: &Arc<Stack>, family: Family) -> TcpSocket {
        let id = stack.with(|i| {
            let id = i.new_ep_id();
            i.eps
                .insert(id, Endpoint::Tcp(Box::new(Tcb::new(id, family))));
            id
        });
        TcpSocket {
            stack: stack.clone(),
            id,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner, EpId) -> R) -> R {
        self.stack.with(|i| f(i, self.id))
    }

    fn tcb<R>(&self, f: impl FnOnce(&mut Tcb, &mut Net) -> R) -> R {
        self.with(|i, id| with_tcb(i, id, f).expect("a live TcpSocket's endpoint is in the table"))
    }

    /// `bind(2)`. Port 0 picks an ephemeral port.
    pub fn bind(&self, addr: SocketAddr) -> Result<(), Errno> {
        self.with(|i, id| {
            let t = i.tcb(id).expect("live");
            if t.bound || t.state != TcpState::Closed {
                return Err(Errno::EINVAL);
            }
            let ip = accept_addr(t.family, t.opts.v6only, addr)?;
            if !ip.is_unspecified() && !i.net.is_local(ip) {
                return Err(Errno::EADDRNOTAVAIL);
            }
            reserve(i, id, ip, addr.port(), Errno::EADDRINUSE)
        })
    }

    /// `listen(2)`. An unbound socket gets an ephemeral port.
    pub fn listen(&self, backlog: i32) -> Result<(), Errno> {
        let backlog = usize::try_from(backlog.max(0)).unwrap_or(0).min(SOMAXCONN);
        self.with(|i, id| {
            let t = i.tcb(id).expect("live");
            match t.state {
                TcpState::Listen => {
                    t.backlog = backlog;
                    return Ok(());
                }
                TcpState::Closed if t.sock == SockState::Unconnected => {}
                _ => return Err(Errno::EINVAL),
            }
            if !t.bound {
                let any = t.family.unspecified();
                reserve(i, id, any, 0, Errno::EADDRINUSE)?;
            }
            let t = i.tcb(id).expect("live");
            let port = t.local.1;
            i.tcp.ports.listen(port, id)?;
            let t = i.tcb(id).expect("live");
            t.state = TcpState::Listen;
            t.backlog = backlog;
            i.tcp.listeners.entry(port).or_default().push(id);
            Ok(())
        })
    }

    /// `accept4(2)`: the next established connection and its peer.
    /// EAGAIN if none is waiting, EINVAL if not listening.
    pub fn accept(&self) -> Result<(TcpSocket, SocketAddr), Errno> {
        let (child, peer) = self.with(|i, id| {
            let t = i.tcb(id).expect("live");
            if t.state != TcpState::Listen {
                return Err(Errno::EINVAL);
            }
            let c = t.accept_queue.pop_front().ok_or(Errno::EAGAIN)?;
            let child = i.tcb(c).expect("queued children are live");
            child.parent = None;
            child.handle_open = true;
            child.sock = SockState::Connected;
            let peer = user_addr(child.family, child.remote.0, child.remote.1);
            Ok((c, peer))
        })?;
        Ok((
            TcpSocket {
                stack: self.stack.clone(),
                id: child,
            },
            peer,
        ))
    }

    /// `connect(2)`, non-blocking: EINPROGRESS when the SYN went out,
    /// then (called again) EALREADY while in progress, success once
    /// established, or the error that ended the attempt (ECONNREFUSED,
    /// ETIMEDOUT...). The Sentry blocks by waiting for WRITABLE.
    pub fn connect(&self, addr: SocketAddr) -> Result<(), Errno> {
        self.with(|i, id| {
            let t = i.tcb(id).expect("live");
            match t.sock {
                SockState::Connected => return Err(Errno::EISCONN),
                SockState::Connecting => {
                    return match t.state {
                        TcpState::SynSent | TcpState::SynRcvd => Err(Errno::EALREADY),
                        TcpState::Closed => {
                            t.sock = SockState::Unconnected;
                            Err(t.error.take().unwrap_or(Errno::ECONNABORTED))
                        }
                        _ => {
                            t.sock = SockState::Connected;
                            Ok(())
                        }
                    };
                }
                SockState::Unconnected => {}
            }
            if t.state != TcpState::Closed {
                return Err(Errno::EISCONN);
            }
            let ip = accept_addr(t.family, t.opts.v6only, addr)?;
            let ip = if ip.is_unspecified() {
                loopback_of(ip)
            } else {
                ip
            };
            let route = i.net.route(ip)?;
            let t = i.tcb(id).expect("live");
            if !t.local.0.is_unspecified() && t.local.0.is_ipv4() != ip.is_ipv4() {
                return Err(Errno::ENETUNREACH);
            }
            let src = if t.local.0.is_unspecified() {
                route.src
            } else {
                t.local.0
            };
            if !t.bound {
                reserve(i, id, src, 0, Errno::EADDRNOTAVAIL)?;
            }
            let t = i.tcb(id).expect("live");
            t.local.0 = src;
            t.remote = (ip, addr.port());
            t.error = None;
            let key = tuple(t);
            if i.tcp.conns.contains_key(&key) {
                return Err(Errno::EADDRNOTAVAIL);
            }
            i.tcp.conns.insert(key, id);
            let iss = isn(&i.net, key);
            let ts_offset = i.net.random() as u32;
            with_tcb(i, id, |t, net| t.connect(net, iss, ts_offset, route.mtu));
            Err(Errno::EINPROGRESS)
        })
    }

    /// `send(2)`: queues what fits in the send buffer. EAGAIN when full
    /// or still connecting; EPIPE after shutdown(SHUT_WR)/close or on an
    /// unconnected socket (the Sentry raises SIGPIPE unless
    /// MSG_NOSIGNAL); a pending error (ECONNRESET) first.
    pub fn send(&self, data: &[u8]) -> Result<usize, Errno> {
        self.tcb(|t, net| {
            if let Some(e) = t.error.take() {
                return Err(e);
            }
            if t.snd_shutdown {
                return Err(Errno::EPIPE);
            }
            match t.state {
                TcpState::Established | TcpState::CloseWait => {}
                TcpState::SynSent | TcpState::SynRcvd => return Err(Errno::EAGAIN),
                _ => return Err(Errno::EPIPE),
            }
            if data.is_empty() {
                return Ok(0);
            }
            match t.write(net, data) {
                0 => Err(Errno::EAGAIN),
                n => Ok(n),
            }
        })
    }

    /// `recv(2)`: received data (`peek` leaves it queued, MSG_PEEK).
    /// Ok(0) at end of stream; EAGAIN when nothing is there yet;
    /// ENOTCONN on an unconnected or listening socket; a pending error
    /// (ECONNRESET) once.
    pub fn recv(&self, buf: &mut [u8], peek: bool) -> Result<usize, Errno> {
        self.tcb(|t, net| {
            if t.state == TcpState::Listen {
                return Err(Errno::ENOTCONN);
            }
            if t.readable_bytes() > 0 {
                return Ok(t.read(net, buf, peek));
            }
            if t.fin_received() {
                return Ok(0);
            }
            if let Some(e) = t.error.take() {
                return Err(e);
            }
            if t.rcv_shutdown {
                return Ok(0);
            }
            if t.state == TcpState::Closed {
                return Err(Errno::ENOTCONN);
            }
            Err(Errno::EAGAIN)
        })
    }

    /// `shutdown(2)`.
    pub fn shutdown(&self, how: Shutdown) -> Result<(), Errno> {
        self.with(|i, id| {
            let t = i.tcb(id).expect("live");
            match t.state {
                TcpState::Closed => {
                    t.rcv_shutdown |= how.read();
                    t.snd_shutdown |= how.write();
                    Err(Errno::ENOTCONN)
                }
                TcpState::Listen => {
                    if how.read() {
                        stop_listening(i, id);
                        let t = i.tcb(id).expect("live");
                        t.state = TcpState::Closed;
                        let port = t.local.1;
                        i.tcp.ports.release(port, id);
                        let t = i.tcb(id).expect("live");
                        t.bound = false;
                        t.local.1 = 0;
                    }
                    Ok(())
                }
                TcpState::SynSent => {
                    with_tcb(i, id, |t, net| t.enter_closed(net));
                    let t = i.tcb(id).expect("live");
                    t.sock = SockState::Unconnected;
                    maybe_destroy(i, id);
                    Ok(())
                }
                _ => {
                    with_tcb(i, id, |t, net| {
                        if how.read() {
                            t.rcv_shutdown = true;
                            net.notify(t.id, t.readiness());
                        }
                        if how.write() {
                            t.queue_fin(net);
                        }
                    });
                    Ok(())
                }
            }
        })
    }

    /// `getsockname(2)`.
    pub fn local_addr(&self) -> SocketAddr {
        self.tcb(|t, _| user_addr(t.family, t.local.0, t.local.1))
    }

    /// `getpeername(2)`: ENOTCONN unless connected.
    pub fn peer_addr(&self) -> Result<SocketAddr, Errno> {
        self.tcb(|t, _| match t.state {
            TcpState::Closed | TcpState::Listen | TcpState::SynSent => Err(Errno::ENOTCONN),
            _ => Ok(user_addr(t.family, t.remote.0, t.remote.1)),
        })
    }

    /// Current readiness (Linux's `tcp_poll`).
    pub fn readiness(&self) -> Events {
        self.tcb(|t, _| t.readiness())
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

    /// `SO_ERROR`: takes the pending error.
    pub fn take_error(&self) -> Option<Errno> {
        self.tcb(|t, _| t.error.take())
    }

    /// The connection's state.
    pub fn state(&self) -> TcpState {
        self.tcb(|t, _| t.state)
    }

    /// `TCP_INFO`.
    pub fn info(&self) -> TcpInfo {
        self.tcb(|t, _| t.info())
    }

    /// `FIONREAD`/`SIOCINQ`: bytes ready to read.
    pub fn readable_bytes(&self) -> usize {
        self.tcb(|t, _| t.readable_bytes())
    }

    /// `SIOCOUTQ`: bytes queued and not yet acknowledged.
    pub fn unacked_bytes(&self) -> usize {
        self.tcb(|t, _| t.unsent_and_unacked())
    }

    /// The socket options.
    pub fn options(&self) -> TcpSocketOptions {
        self.tcb(|t, _| t.opts)
    }

    /// Changes socket options through `f`, then applies the change:
    /// turning TCP_NODELAY on or TCP_CORK off pushes held data;
    /// keepalive settings rearm the timer. EINVAL for IPV6_V6ONLY on a
    /// bound or IPv4 socket, or a zero keepalive count or interval.
    pub fn set_options(&self, f: impl FnOnce(&mut TcpSocketOptions)) -> Result<(), Errno> {
        self.tcb(|t, net| {
            let mut o = t.opts;
            f(&mut o);
            if o.v6only != t.opts.v6only && (t.family != Family::V6 || t.bound) {
                return Err(Errno::EINVAL);
            }
            if o.keep_cnt == 0 || o.keep_intvl.is_zero() || o.keep_idle.is_zero() {
                return Err(Errno::EINVAL);
            }
            let old = t.opts;
            t.opts = o;
            if (o.nodelay && !old.nodelay) || (old.cork && !o.cork) {
                t.push(net);
            }
            if (o.keepalive, o.keep_idle) != (old.keepalive, old.keep_idle) {
                t.keepalive_changed(net);
            }
            net.notify(t.id, t.readiness());
            Ok(())
        })
    }
}

impl Drop for TcpSocket {
    fn drop(&mut self) {
        self.with(|i, id| {
            let listening = i.tcb(id).is_some_and(|t| t.state == TcpState::Listen);
            if listening {
                stop_listening(i, id);
            }
            let done = with_tcb(i, id, |t, net| t.close(net)).unwrap_or(true);
            if done {
                destroy(i, id);
            } else {
                maybe_destroy(i, id);
            }
        });
    }
}

/// Connecting to the wildcard means the local host (Linux).
fn loopback_of(ip: IpAddr) -> IpAddr {
    if ip.is_ipv4() {
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
    }
}

fn reserve(i: &mut Inner, id: EpId, ip: IpAddr, port: u16, exhausted: Errno) -> Result<(), Errno> {
    let t = i.tcb(id).expect("live");
    let b = Binding {
        ep: id,
        addr: ip,
        dual: t.family == Family::V6 && !t.opts.v6only,
        reuseaddr: t.opts.reuseaddr,
        reuseport: t.opts.reuseport,
        listening: false,
    };
    let hint = i.net.random() as u32;
    let port = i.tcp.ports.reserve(port, b, hint, exhausted)?;
    let t = i.tcb(id).expect("live");
    t.local = (ip, port);
    t.bound = true;
    Ok(())
}
