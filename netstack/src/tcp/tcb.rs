//! The TCP control block and its state machine: one connection (or
//! listener), driven by segments, user calls and timers.
//!
//! Semantics follow RFC 9293 (state machine, segment arrival order),
//! RFC 7323 (window scale, timestamps, PAWS), RFC 2018 and RFC 6675
//! (SACK and SACK-based loss recovery), RFC 5681 and RFC 6582 (Reno and
//! NewReno congestion control), RFC 6298 (RTO), RFC 5961 (challenge
//! ACKs), and Linux's `net/ipv4/tcp_input.c`, `tcp_output.c`,
//! `tcp_timer.c` for constants and the choices the RFCs leave open.
//! Upstream's `pkg/tcpip/transport/tcp` (`snd.go`, `rcv.go`, `sack_recovery.go`)
//! has the same split of sender and receiver.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use abi::Errno;

use super::seq::{ge, gt, in_window, le, lt, max};
use super::{TcpInfo, TcpState};
use crate::header::{
    proto, SackBlock, TcpFlags, TcpOptions, TcpRepr, IPV4_HEADER_LEN, IPV6_HEADER_LEN,
    TCP_HEADER_LEN,
};
use crate::socket::Family;
use crate::stack::{EpId, Net, DEFAULT_TTL};
use crate::waiter::{Events, WaiterList};

/// RFC 6298 §2.4 allows 1 s; Linux's `TCP_RTO_MIN` is 200 ms.
pub(crate) const MIN_RTO: Duration = Duration::from_millis(200);
/// Linux's `TCP_RTO_MAX`.
pub(crate) const MAX_RTO: Duration = Duration::from_secs(120);
/// RFC 6298 §2.1.
pub(crate) const INITIAL_RTO: Duration = Duration::from_secs(1);
/// Linux's `TCP_TIMEWAIT_LEN` (2 MSL).
pub(crate) const TIME_WAIT_LEN: Duration = Duration::from_secs(60);
/// Linux's `tcp_fin_timeout`: how long an orphan stays in FIN_WAIT_2.
pub(crate) const FIN_WAIT2_TIMEOUT: Duration = Duration::from_secs(60);
/// Linux's `TCP_DELACK_MIN`.
const DELAYED_ACK: Duration = Duration::from_millis(40);
/// Linux's `tcp_invalid_ratelimit`.
const OOW_ACK_INTERVAL: Duration = Duration::from_millis(500);
/// Linux's `tcp_syn_retries`.
const SYN_RETRIES: u32 = 6;
/// Linux's `tcp_synack_retries`.
const SYNACK_RETRIES: u32 = 5;
/// Linux's `tcp_retries2`.
const RETRIES2: u32 = 15;
/// Default buffer sizes (upstream's `DefaultSendBufferSize`/`DefaultReceiveBufferSize`).
pub(crate) const DEFAULT_BUFFER: usize = 1 << 20;
/// Largest buffer whose window the scale factor must cover (Linux's
/// `tcp_rmem[2]` is 6 MiB; its usual shift is 7).
const MAX_WINDOW_BUFFER: usize = 6 << 20;
/// RFC 9293 §3.7.1: the MSS to assume when the peer sends none.
const DEFAULT_MSS_V4: u32 = 536;
const DEFAULT_MSS_V6: u32 = 1220;
/// RFC 6928 / Linux's `TCP_INIT_CWND`.
pub(crate) const INITIAL_WINDOW_SEGMENTS: u32 = 10;
/// Bytes of the timestamp option on every segment once negotiated.
const TS_OPTION_LEN: u32 = 12;

/// The socket's connect state (Linux's `socket->state`), which decides
/// what a repeated `connect(2)` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SockState {
    Unconnected,
    Connecting,
    Connected,
}

/// A TCP socket's options (`setsockopt(2)` levels SOL_SOCKET, SOL_TCP,
/// SOL_IP/SOL_IPV6), changed through [`super::TcpSocket::set_options`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSocketOptions {
    /// `TCP_NODELAY`: send small segments without waiting (no Nagle).
    pub nodelay: bool,
    /// `TCP_CORK`: hold partial segments until uncorked or a FIN.
    pub cork: bool,
    /// `SO_KEEPALIVE`.
    pub keepalive: bool,
    /// `TCP_KEEPIDLE`: idle time before the first probe.
    pub keep_idle: Duration,
    /// `TCP_KEEPINTVL`: time between probes.
    pub keep_intvl: Duration,
    /// `TCP_KEEPCNT`: unanswered probes before the connection dies.
    pub keep_cnt: u32,
    /// `SO_LINGER`: `Some(0)` makes close reset the connection; other
    /// values close gracefully (waiting in close(2) is the Sentry's).
    pub linger: Option<Duration>,
    /// `SO_REUSEADDR` (takes effect at bind).
    pub reuseaddr: bool,
    /// `SO_REUSEPORT` (takes effect at bind).
    pub reuseport: bool,
    /// `IPV6_V6ONLY` (IPv6 sockets, before bind).
    pub v6only: bool,
    /// `SO_RCVBUF`, bytes of receive window (the Sentry applies Linux's
    /// doubling and limits before setting it).
    pub rcv_buf: usize,
    /// `SO_SNDBUF`, bytes of send queue.
    pub snd_buf: usize,
    /// `IP_TTL`/`IPV6_UNICAST_HOPS`.
    pub ttl: u8,
}

impl Default for TcpSocketOptions {
    fn default() -> Self {
        TcpSocketOptions {
            nodelay: false,
            cork: false,
            keepalive: false,
            // Linux's tcp_keepalive_time, _intvl, _probes.
            keep_idle: Duration::from_secs(7200),
            keep_intvl: Duration::from_secs(75),
            keep_cnt: 9,
            linger: None,
            reuseaddr: false,
            reuseport: false,
            v6only: false,
            rcv_buf: DEFAULT_BUFFER,
            snd_buf: DEFAULT_BUFFER,
            ttl: DEFAULT_TTL,
        }
    }
}

/// A received segment, parsed.
pub(crate) struct Seg<'a> {
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub wnd: u16,
    pub opts: TcpOptions,
    pub payload: &'a [u8],
}

impl Seg<'_> {
    fn has(&self, f: u8) -> bool {
        self.flags.has(f)
    }

    /// Sequence space the segment occupies.
    fn len(&self) -> u32 {
        self.payload.len() as u32
            + u32::from(self.has(TcpFlags::SYN))
            + u32::from(self.has(TcpFlags::FIN))
    }
}

/// What a segment or timer did that the endpoint table must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Nothing,
    /// A passive open completed (SYN_RCVD -> ESTABLISHED).
    Established,
    /// The connection reached CLOSED.
    Closed,
}

/// One TCP endpoint.
pub(crate) struct Tcb {
    pub id: EpId,
    pub waiters: WaiterList,
    pub state: TcpState,
    pub sock: SockState,
    pub family: Family,
    pub opts: TcpSocketOptions,
    /// Canonical local address (unspecified = any) and port (0 = none).
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    /// Holds a port reservation.
    pub bound: bool,
    /// A `TcpSocket` refers to this endpoint.
    pub handle_open: bool,
    /// The listener this connection came from, until accepted.
    pub parent: Option<EpId>,

    // Listener.
    pub backlog: usize,
    pub accept_queue: VecDeque<EpId>,
    pub syn_queue: usize,

    // Linux's sk_shutdown bits and sk_err.
    pub rcv_shutdown: bool,
    pub snd_shutdown: bool,
    pub error: Option<Errno>,
    /// The user (or close) asked for a FIN after the queued data.
    fin_queued: bool,
    fin_received: bool,
    /// Sequence number of a FIN seen but not yet reached.
    fin_seq: Option<u32>,

    // Sender (RFC 9293 §3.3.1 names).
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    /// Highest sequence number sent (snd_nxt moves back on timeout).
    snd_max: u32,
    snd_wnd: u32,
    max_snd_wnd: u32,
    snd_wl1: u32,
    snd_wl2: u32,
    snd_shift: u8,
    send_buf: VecDeque<u8>,
    /// Sequence number of `send_buf[0]`.
    snd_buf_seq: u32,
    /// Payload bytes per segment we send (options excluded).
    smss: u32,

    // Receiver.
    irs: u32,
    rcv_nxt: u32,
    /// Right edge of the window last advertised (never moves left).
    rcv_adv: u32,
    rcv_shift: u8,
    rcv_buf: VecDeque<u8>,
    /// Out-of-order data: disjoint, non-adjacent pieces.
    ooo: Vec<(u32, Vec<u8>)>,
    /// The MSS we advertise.
    rcv_mss: u32,

    // Options negotiated.
    ts_ok: bool,
    ts_recent: u32,
    ts_offset: u32,
    sack_ok: bool,
    /// SACK blocks to report, most recent first.
    sack_out: Vec<SackBlock>,
    /// What the peer has SACKed: disjoint ranges above snd_una.
    scoreboard: Vec<(u32, u32)>,

    // RTT (RFC 6298).
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    backoff: u32,
    /// A segment being timed (when timestamps are off): its end, sent at.
    rtt_seq: Option<(u32, Duration)>,

    // Congestion control.
    cwnd: u32,
    ssthresh: u32,
    dupacks: u32,
    in_recovery: bool,
    recover: u32,
    /// SACK recovery: holes below this were retransmitted.
    rexmit_next: u32,
    ca_acked: u32,

    segs_unacked: u32,

    // Timers.
    rto_at: Option<Duration>,
    delack_at: Option<Duration>,
    keepalive_at: Option<Duration>,
    /// TIME_WAIT end, or orphan FIN_WAIT_2 timeout.
    close_at: Option<Duration>,
    /// Earliest deadline on the stack's timer heap for us.
    pub armed_at: Option<Duration>,
    ka_probes: u32,
    last_oow_ack: Option<Duration>,
    /// The RTO timer is probing a zero window.
    persist: bool,
    last_rcv: Duration,

    // Counters for TCP_INFO.
    total_retrans: u32,
    segs_in: u64,
    segs_out: u64,
    bytes_acked: u64,
    bytes_received: u64,
}

impl Tcb {
    pub fn new(id: EpId, family: Family) -> Tcb {
        Tcb {
            id,
            waiters: WaiterList::default(),
            state: TcpState::Closed,
            sock: SockState::Unconnected,
            family,
            opts: TcpSocketOptions::default(),
            local: (family.unspecified(), 0),
            remote: (family.unspecified(), 0),
            bound: false,
            handle_open: true,
            parent: None,
            backlog: 0,
            accept_queue: VecDeque::new(),
            syn_queue: 0,
            rcv_shutdown: false,
            snd_shutdown: false,
            error: None,
            fin_queued: false,
            fin_received: false,
            fin_seq: None,
            iss: 0,
            snd_una: 0,
            snd_nxt: 0,
            snd_max: 0,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: 0,
            snd_wl2: 0,
            snd_shift: 0,
            send_buf: VecDeque::new(),
            snd_buf_seq: 0,
            smss: DEFAULT_MSS_V4,
            irs: 0,
            rcv_nxt: 0,
            rcv_adv: 0,
            rcv_shift: 0,
            rcv_buf: VecDeque::new(),
            ooo: Vec::new(),
            rcv_mss: DEFAULT_MSS_V4,
            ts_ok: false,
            ts_recent: 0,
            ts_offset: 0,
            sack_ok: false,
            sack_out: Vec::new(),
            scoreboard: Vec::new(),
            srtt: None,
            rttvar: Duration::ZERO,
            rto: INITIAL_RTO,
            backoff: 0,
            rtt_seq: None,
            cwnd: 0,
            ssthresh: u32::MAX,
            dupacks: 0,
            in_recovery: false,
            recover: 0,
            rexmit_next: 0,
            ca_acked: 0,
            segs_unacked: 0,
            rto_at: None,
            delack_at: None,
            keepalive_at: None,
            close_at: None,
            armed_at: None,
            ka_probes: 0,
            last_oow_ack: None,
            persist: false,
            last_rcv: Duration::ZERO,
            total_retrans: 0,
            segs_in: 0,
            segs_out: 0,
            bytes_acked: 0,
            bytes_received: 0,
        }
    }

    /// A connection born from `listener` on a SYN (passive open).
    pub fn child_of(listener: &Tcb, id: EpId) -> Tcb {
        let mut t = Tcb::new(id, listener.family);
        t.opts = listener.opts;
        t.handle_open = false;
        t.parent = Some(listener.id);
        t
    }

    // ---- Readiness (Linux's tcp_poll) ----

    pub fn readiness(&self) -> Events {
        if self.state == TcpState::Listen {
            return if self.accept_queue.is_empty() {
                Events::NONE
            } else {
                Events::READABLE
            };
        }
        let mut ev = Events::NONE;
        if (self.rcv_shutdown && self.snd_shutdown) || self.state == TcpState::Closed {
            ev |= Events::HUP;
        }
        if self.rcv_shutdown {
            ev |= Events::READABLE | Events::RDHUP;
        }
        if !matches!(self.state, TcpState::SynSent | TcpState::SynRcvd) {
            if !self.rcv_buf.is_empty() {
                ev |= Events::READABLE;
            }
            if self.snd_shutdown || self.writable() {
                ev |= Events::WRITABLE;
            }
        }
        if self.error.is_some() {
            ev |= Events::ERR;
        }
        ev
    }

    fn notify(&self, net: &mut Net) {
        net.notify(self.id, self.readiness() | Events::HUP | Events::ERR);
    }

    /// Linux's `sk_stream_is_writeable`: free space of at least half
    /// what is queued, so a writer blocked on a full buffer wakes for a
    /// useful amount rather than for every acknowledgement.
    fn writable(&self) -> bool {
        let space = self.send_space();
        space > 0 && space >= self.send_buf.len() / 2
    }

    pub fn send_space(&self) -> usize {
        self.opts.snd_buf.saturating_sub(self.send_buf.len())
    }

    pub fn readable_bytes(&self) -> usize {
        self.rcv_buf.len()
    }

    pub fn unsent_and_unacked(&self) -> usize {
        self.send_buf.len()
    }

    // ---- Timers ----

    fn deadline(&self) -> Option<Duration> {
        [
            self.rto_at,
            self.delack_at,
            self.keepalive_at,
            self.close_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Puts our earliest deadline on the stack's heap if it is earlier
    /// than what is there.
    pub fn rearm(&mut self, net: &mut Net) {
        if let Some(d) = self.deadline() {
            if self.armed_at.is_none_or(|a| d < a) {
                self.armed_at = Some(d);
                net.schedule(self.id, d);
            }
        }
    }

    fn current_rto(&self) -> Duration {
        self.rto
            .saturating_mul(1u32 << self.backoff.min(16))
            .min(MAX_RTO)
    }

    fn arm_rto(&mut self, now: Duration) {
        self.rto_at = Some(now + self.current_rto());
    }

    fn arm_keepalive(&mut self) {
        self.keepalive_at = (self.opts.keepalive && self.is_synchronized())
            .then(|| self.last_rcv + self.opts.keep_idle);
    }

    /// Keepalive settings changed.
    pub fn keepalive_changed(&mut self, net: &mut Net) {
        self.arm_keepalive();
        self.rearm(net);
    }

    fn is_synchronized(&self) -> bool {
        matches!(
            self.state,
            TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2 | TcpState::CloseWait
        )
    }

    /// Runs the timers due at `net.now`.
    pub fn on_timer(&mut self, net: &mut Net) -> Outcome {
        let now = net.now;
        let due = |t: Option<Duration>| t.is_some_and(|t| t <= now);
        if due(self.close_at) {
            self.close_at = None;
            self.enter_closed(net);
            return Outcome::Closed;
        }
        if due(self.delack_at) {
            self.delack_at = None;
            self.send_ack(net);
        }
        if due(self.rto_at) {
            self.rto_at = None;
            let o = self.rto_fired(net);
            if o != Outcome::Nothing {
                return o;
            }
        }
        if due(self.keepalive_at) {
            self.keepalive_at = None;
            let o = self.keepalive_fired(net);
            if o != Outcome::Nothing {
                return o;
            }
        }
        Outcome::Nothing
    }

    fn rto_fired(&mut self, net: &mut Net) -> Outcome {
        let now = net.now;
        match self.state {
            TcpState::SynSent => {
                if self.backoff >= SYN_RETRIES {
                    return self.fail(net, Errno::ETIMEDOUT, false);
                }
                self.backoff += 1;
                self.total_retrans += 1;
                net.stats.tcp_retransmits += 1;
                self.send_syn(net, false);
                self.arm_rto(now);
            }
            TcpState::SynRcvd => {
                if self.backoff >= SYNACK_RETRIES {
                    self.enter_closed(net);
                    return Outcome::Closed;
                }
                self.backoff += 1;
                self.total_retrans += 1;
                net.stats.tcp_retransmits += 1;
                self.send_syn(net, true);
                self.arm_rto(now);
            }
            _ if self.persist => {
                if self.backoff >= RETRIES2 {
                    return self.fail(net, Errno::ETIMEDOUT, false);
                }
                self.backoff += 1;
                let wnd_end = self.snd_una.wrapping_add(self.snd_wnd);
                let room = if lt(self.snd_nxt, wnd_end) {
                    wnd_end.wrapping_sub(self.snd_nxt)
                } else {
                    0
                };
                let data_end = self.data_end();
                let unsent = if lt(self.snd_nxt, data_end) {
                    data_end.wrapping_sub(self.snd_nxt)
                } else {
                    0
                };
                let len = room.min(unsent).min(self.smss);
                if len > 0 {
                    // The window opened a little and stayed small: send
                    // what fits (RFC 9293 §3.8.6.2.1's override timeout).
                    let seq = self.snd_nxt;
                    self.send_data(net, seq, len, false);
                    self.snd_nxt = seq.wrapping_add(len);
                } else {
                    // Zero-window probe (Linux's tcp_probe_timer): an old
                    // sequence number elicits an ACK carrying the window.
                    self.send_probe(net);
                }
                self.persist = true;
                self.arm_rto(now);
            }
            _ if self.snd_una != self.snd_max => {
                if self.backoff >= RETRIES2 {
                    return self.fail(net, Errno::ETIMEDOUT, false);
                }
                // RFC 5681 §3.1 eq. (4), RFC 6298 §5.5-5.7, RFC 2018 §8:
                // halve, restart from one segment, forget SACK state, and
                // resend from the first unacknowledged byte.
                let flight = self.snd_max.wrapping_sub(self.snd_una);
                self.ssthresh = (flight / 2).max(2 * self.smss);
                self.cwnd = self.smss;
                self.ca_acked = 0;
                self.in_recovery = false;
                self.dupacks = 0;
                self.scoreboard.clear();
                self.snd_nxt = self.snd_una;
                self.rtt_seq = None;
                self.backoff += 1;
                self.output(net);
                self.arm_rto(now);
            }
            _ => {}
        }
        Outcome::Nothing
    }

    fn keepalive_fired(&mut self, net: &mut Net) -> Outcome {
        if !self.opts.keepalive || !self.is_synchronized() {
            return Outcome::Nothing;
        }
        let now = net.now;
        // Linux's tcp_keepalive_timer: no probes while data is in flight
        // or queued (the retransmit timer watches those).
        if self.snd_una != self.snd_max || !self.send_buf.is_empty() {
            self.keepalive_at = Some(now + self.opts.keep_idle);
            return Outcome::Nothing;
        }
        let idle = now.saturating_sub(self.last_rcv);
        if idle < self.opts.keep_idle {
            self.keepalive_at = Some(self.last_rcv + self.opts.keep_idle);
            return Outcome::Nothing;
        }
        if self.ka_probes >= self.opts.keep_cnt {
            return self.fail(net, Errno::ETIMEDOUT, true);
        }
        self.ka_probes += 1;
        self.send_probe(net);
        self.keepalive_at = Some(now + self.opts.keep_intvl);
        Outcome::Nothing
    }

    // ---- Errors and closing ----

    /// Ends the connection with an error the user will see.
    fn fail(&mut self, net: &mut Net, err: Errno, send_rst: bool) -> Outcome {
        if send_rst {
            self.send_rst(net);
        }
        self.error = Some(err);
        self.enter_closed(net);
        Outcome::Closed
    }

    /// Moves to CLOSED: both directions shut, timers off, queues dropped.
    pub fn enter_closed(&mut self, net: &mut Net) {
        self.state = TcpState::Closed;
        self.rcv_shutdown = true;
        self.snd_shutdown = true;
        self.rto_at = None;
        self.delack_at = None;
        self.keepalive_at = None;
        self.close_at = None;
        self.send_buf.clear();
        self.ooo.clear();
        self.notify(net);
    }

    fn enter_time_wait(&mut self, net: &mut Net) {
        self.state = TcpState::TimeWait;
        self.rto_at = None;
        self.delack_at = None;
        self.keepalive_at = None;
        self.close_at = Some(net.now + TIME_WAIT_LEN);
        self.snd_shutdown = true;
        self.notify(net);
    }

    /// Sends a RST for this connection (abortive close, keepalive death).
    pub fn send_rst(&mut self, net: &mut Net) {
        if matches!(
            self.state,
            TcpState::Closed | TcpState::Listen | TcpState::SynSent
        ) {
            return;
        }
        let flags = TcpFlags::RST | TcpFlags::ACK;
        let _ = self.emit(net, self.snd_nxt, flags, 0, 0);
        net.stats.tcp_resets_sent += 1;
    }

    /// Aborts with RST, as close(2) does with unread data or SO_LINGER 0,
    /// and as a listener's close does to its unaccepted connections.
    pub fn abort(&mut self, net: &mut Net) {
        self.send_rst(net);
        self.enter_closed(net);
    }

    /// The user closed the socket (last reference). Returns whether the
    /// endpoint is finished and may be freed now.
    pub fn close(&mut self, net: &mut Net) -> bool {
        self.handle_open = false;
        match self.state {
            TcpState::Closed | TcpState::SynSent | TcpState::Listen => {
                self.enter_closed(net);
                true
            }
            _ if !self.rcv_buf.is_empty() || self.opts.linger == Some(Duration::ZERO) => {
                // Linux's tcp_close: unread data, or a zero linger, means
                // the connection is reset rather than finished.
                self.abort(net);
                true
            }
            TcpState::SynRcvd | TcpState::Established | TcpState::CloseWait => {
                self.rcv_shutdown = true;
                self.queue_fin(net);
                false
            }
            TcpState::FinWait2 => {
                self.rcv_shutdown = true;
                self.close_at = Some(net.now + FIN_WAIT2_TIMEOUT);
                self.rearm(net);
                false
            }
            _ => {
                self.rcv_shutdown = true;
                false
            }
        }
    }

    /// Queues a FIN after the data (shutdown(SHUT_WR), close).
    pub fn queue_fin(&mut self, net: &mut Net) {
        if self.fin_queued {
            return;
        }
        self.fin_queued = true;
        self.snd_shutdown = true;
        self.state = match self.state {
            TcpState::SynRcvd | TcpState::Established => TcpState::FinWait1,
            TcpState::CloseWait => TcpState::LastAck,
            s => s,
        };
        self.output(net);
        self.rearm(net);
        self.notify(net);
    }

    // ---- Opening ----

    fn our_mss(&self, mtu: usize) -> u32 {
        // IPv4's total length and IPv6's payload length are 16 bits, so
        // a 64 KiB loopback MTU still caps segments (Linux's lo MSS is
        // 65483 with timestamps).
        let (ip, max) = if self.remote.0.is_ipv4() {
            (IPV4_HEADER_LEN, 65535)
        } else {
            (IPV6_HEADER_LEN, 65535 + IPV6_HEADER_LEN)
        };
        (mtu.min(max).saturating_sub(ip + TCP_HEADER_LEN)) as u32
    }

    fn window_shift() -> u8 {
        let mut s = 0u8;
        while (MAX_WINDOW_BUFFER >> s) > 65535 && s < 14 {
            s += 1;
        }
        s
    }

    /// Active open: sends the SYN.
    pub fn connect(&mut self, net: &mut Net, iss: u32, ts_offset: u32, mtu: usize) {
        self.iss = iss;
        self.snd_una = iss;
        self.snd_nxt = iss;
        self.snd_max = iss;
        self.snd_buf_seq = iss.wrapping_add(1);
        self.ts_offset = ts_offset;
        self.rcv_mss = self.our_mss(mtu);
        self.rcv_shift = Self::window_shift();
        self.state = TcpState::SynSent;
        self.sock = SockState::Connecting;
        self.backoff = 0;
        self.rto = INITIAL_RTO;
        self.send_syn(net, false);
        self.arm_rto(net.now);
        self.rearm(net);
    }

    /// Passive open: takes the peer's SYN and answers SYN-ACK.
    pub fn accept_syn(&mut self, net: &mut Net, seg: &Seg, iss: u32, ts_offset: u32, mtu: usize) {
        self.iss = iss;
        self.snd_una = iss;
        self.snd_nxt = iss;
        self.snd_max = iss;
        self.snd_buf_seq = iss.wrapping_add(1);
        self.ts_offset = ts_offset;
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq.wrapping_add(1);
        self.rcv_mss = self.our_mss(mtu);
        self.negotiate(seg);
        self.snd_wnd = u32::from(seg.wnd);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = seg.seq;
        self.snd_wl2 = iss;
        self.state = TcpState::SynRcvd;
        self.last_rcv = net.now;
        self.send_syn(net, true);
        self.arm_rto(net.now);
        self.rearm(net);
    }

    /// Applies the options of the peer's SYN (RFC 7323 §1.3, §3.2;
    /// RFC 2018 §2): each is on only if both sides offered it.
    fn negotiate(&mut self, seg: &Seg) {
        match seg.opts.window_scale {
            Some(s) => {
                self.snd_shift = s.min(14);
                if self.state != TcpState::SynSent {
                    self.rcv_shift = Self::window_shift();
                }
            }
            None => {
                self.snd_shift = 0;
                self.rcv_shift = 0;
            }
        }
        self.sack_ok = seg.opts.sack_permitted;
        if let Some((val, _)) = seg.opts.timestamp {
            self.ts_ok = true;
            self.ts_recent = val;
        } else {
            self.ts_ok = false;
        }
        let default = if self.remote.0.is_ipv4() {
            DEFAULT_MSS_V4
        } else {
            DEFAULT_MSS_V6
        };
        let peer = seg.opts.mss.map_or(default, u32::from).max(64);
        let ts = if self.ts_ok { TS_OPTION_LEN } else { 0 };
        self.smss = peer.min(self.rcv_mss) - ts;
        self.cwnd = INITIAL_WINDOW_SEGMENTS * self.smss;
    }

    fn send_syn(&mut self, net: &mut Net, ack: bool) {
        let flags = if ack {
            TcpFlags::SYN | TcpFlags::ACK
        } else {
            TcpFlags::SYN
        };
        let _ = self.emit(net, self.iss, flags, 0, 0);
        self.snd_nxt = self.iss.wrapping_add(1);
        self.snd_max = max(self.snd_max, self.snd_nxt);
    }

    // ---- Output ----

    fn ts_now(&self, now: Duration) -> u32 {
        (now.as_millis() as u32).wrapping_add(self.ts_offset)
    }

    /// The window to advertise (RFC 9293 §3.8.6.2.2 receiver SWS
    /// avoidance; RFC 7323 §2.4 never shrink), as the header field.
    fn window_field(&mut self, syn: bool) -> u16 {
        let free = self
            .opts
            .rcv_buf
            .saturating_sub(self.rcv_buf.len())
            .min(u32::MAX as usize) as u32;
        let cur = if lt(self.rcv_adv, self.rcv_nxt) {
            0
        } else {
            self.rcv_adv.wrapping_sub(self.rcv_nxt)
        };
        let threshold = ((self.opts.rcv_buf / 2) as u32).min(self.rcv_mss);
        let wnd = if free >= cur.saturating_add(threshold) {
            free
        } else {
            cur
        };
        if syn {
            let w = wnd.min(65535);
            if self.state == TcpState::SynRcvd {
                self.rcv_adv = self.rcv_nxt.wrapping_add(w);
            }
            return w as u16;
        }
        let unit = 1u32 << self.rcv_shift;
        let wnd = wnd.min(65535 << self.rcv_shift);
        let field = wnd.div_ceil(unit).min(65535);
        self.rcv_adv = max(
            self.rcv_adv,
            self.rcv_nxt.wrapping_add(field << self.rcv_shift),
        );
        field as u16
    }

    /// Builds and sends one segment carrying `send_buf[off..off + len]`.
    fn emit(
        &mut self,
        net: &mut Net,
        seq: u32,
        flags: u8,
        off: usize,
        len: usize,
    ) -> Result<(), Errno> {
        let syn = flags & TcpFlags::SYN != 0;
        let mut opts = TcpOptions::default();
        if syn {
            opts.mss = Some(self.rcv_mss.min(65535) as u16);
            let active = flags & TcpFlags::ACK == 0;
            if active || self.rcv_shift > 0 || self.snd_shift > 0 {
                opts.window_scale = Some(self.rcv_shift);
            }
            opts.sack_permitted = active || self.sack_ok;
            if active || self.ts_ok {
                opts.timestamp = Some((self.ts_now(net.now), self.ts_recent));
            }
        } else {
            if self.ts_ok {
                opts.timestamp = Some((self.ts_now(net.now), self.ts_recent));
            }
            if self.sack_ok && flags & TcpFlags::RST == 0 {
                for (i, b) in self.sack_out.iter().take(4).enumerate() {
                    opts.sack_blocks[i] = *b;
                    opts.sack_count = i as u8 + 1;
                }
            }
        }
        let window = if flags & TcpFlags::RST != 0 {
            0
        } else {
            self.window_field(syn)
        };
        let ack = if flags & TcpFlags::ACK != 0 {
            self.rcv_nxt
        } else {
            0
        };
        let repr = TcpRepr {
            src_port: self.local.1,
            dst_port: self.remote.1,
            seq,
            ack,
            flags: TcpFlags(flags),
            window,
            options: opts,
        };
        let hl = repr.header_len();
        let buf = &self.send_buf;
        net.output(
            self.local.0,
            self.remote.0,
            proto::TCP,
            self.opts.ttl,
            hl + len,
            Some(16),
            |out| {
                repr.emit(out);
                let (a, b) = buf.as_slices();
                let mut dst = &mut out[hl..];
                // Copy [off, off+len) out of the ring's two halves.
                if off < a.len() {
                    let n = (a.len() - off).min(len);
                    dst[..n].copy_from_slice(&a[off..off + n]);
                    dst = &mut dst[n..];
                    let rest = len - n;
                    dst[..rest].copy_from_slice(&b[..rest]);
                } else {
                    let o = off - a.len();
                    dst[..len].copy_from_slice(&b[o..o + len]);
                }
            },
        )?;
        self.segs_out += 1;
        net.stats.tcp_segments_sent += 1;
        if flags & TcpFlags::ACK != 0 {
            self.segs_unacked = 0;
            self.delack_at = None;
        }
        Ok(())
    }

    fn send_ack(&mut self, net: &mut Net) {
        let _ = self.emit(net, self.snd_nxt, TcpFlags::ACK, 0, 0);
    }

    /// Answers an out-of-window or otherwise unacceptable segment with an
    /// ACK, at most one per 500 ms unless it carried data, so two
    /// desynchronised ends cannot ACK each other forever (Linux's
    /// tcp_oow_rate_limited and tcp_invalid_ratelimit; RFC 5961 §7).
    fn send_oow_ack(&mut self, net: &mut Net, seg: &Seg) {
        if seg.payload.is_empty() || seg.has(TcpFlags::SYN) {
            if self
                .last_oow_ack
                .is_some_and(|t| net.now.saturating_sub(t) < OOW_ACK_INTERVAL)
            {
                return;
            }
            self.last_oow_ack = Some(net.now);
        }
        self.send_ack(net);
    }

    /// A segment with an old sequence number and no data (keepalive and
    /// zero-window probes, Linux's tcp_xmit_probe_skb).
    fn send_probe(&mut self, net: &mut Net) {
        let _ = self.emit(net, self.snd_una.wrapping_sub(1), TcpFlags::ACK, 0, 0);
    }

    /// Sequence number after the last queued data byte.
    fn data_end(&self) -> u32 {
        self.snd_buf_seq.wrapping_add(self.send_buf.len() as u32)
    }

    /// Whether a FIN was sent (it is at `data_end`).
    fn fin_sent(&self) -> bool {
        self.fin_queued && gt(self.snd_max, self.data_end())
    }

    /// Sends `[seq, seq+len)` of queued data (and the FIN if it follows
    /// and `fin`), marking retransmissions.
    fn send_data(&mut self, net: &mut Net, seq: u32, len: u32, fin: bool) {
        let off = seq.wrapping_sub(self.snd_buf_seq) as usize;
        let mut flags = TcpFlags::ACK;
        if off + len as usize == self.send_buf.len() && len > 0 {
            flags |= TcpFlags::PSH;
        }
        if fin {
            flags |= TcpFlags::FIN;
        }
        let end = seq.wrapping_add(len).wrapping_add(u32::from(fin));
        let retransmit = lt(seq, self.snd_max);
        if retransmit {
            self.total_retrans += 1;
            net.stats.tcp_retransmits += 1;
        } else if !self.ts_ok && self.rtt_seq.is_none() {
            self.rtt_seq = Some((end, net.now));
        }
        if self.emit(net, seq, flags, off, len as usize).is_ok() {
            self.snd_max = max(self.snd_max, end);
            if self.rto_at.is_none() || self.persist {
                self.persist = false;
                self.arm_rto(net.now);
            }
        }
    }

    /// Bytes in flight for the congestion window: RFC 6675's pipe during
    /// SACK recovery, else everything sent and not acknowledged.
    fn in_flight(&self) -> u32 {
        if self.in_recovery && self.sack_ok {
            let high = self.scoreboard.last().map_or(self.snd_una, |r| r.1);
            let above = self.snd_max.wrapping_sub(max(high, self.snd_una));
            let retx_end = if gt(self.rexmit_next, high) {
                high
            } else {
                self.rexmit_next
            };
            let retx = if gt(retx_end, self.snd_una) {
                retx_end.wrapping_sub(self.snd_una) - self.sacked_between(self.snd_una, retx_end)
            } else {
                0
            };
            above + retx
        } else {
            self.snd_nxt.wrapping_sub(self.snd_una)
        }
    }

    fn sacked_between(&self, a: u32, b: u32) -> u32 {
        self.scoreboard
            .iter()
            .map(|&(s, e)| {
                let s = max(s, a);
                let e = if lt(e, b) { e } else { b };
                if lt(s, e) {
                    e.wrapping_sub(s)
                } else {
                    0
                }
            })
            .sum()
    }

    /// SACK recovery (RFC 6675 §5 NextSeg rule 1): retransmit the holes
    /// below the highest SACKed byte, in order, while the pipe allows.
    fn retransmit_holes(&mut self, net: &mut Net) {
        let Some(&(_, high)) = self.scoreboard.last() else {
            return;
        };
        loop {
            if self.in_flight() >= self.cwnd {
                return;
            }
            let mut s = max(self.rexmit_next, self.snd_una);
            // Skip SACKed ranges.
            for &(a, b) in &self.scoreboard {
                if le(a, s) && lt(s, b) {
                    s = b;
                }
            }
            if ge(s, high) {
                return;
            }
            let hole_end = self
                .scoreboard
                .iter()
                .map(|r| r.0)
                .find(|&a| gt(a, s))
                .unwrap_or(high);
            let data_end = self.data_end();
            let len = hole_end
                .wrapping_sub(s)
                .min(self.smss)
                .min(data_end.wrapping_sub(s));
            let fin = self.fin_sent() && s.wrapping_add(len) == data_end && len < self.smss;
            if len == 0 && !fin {
                return;
            }
            self.send_data(net, s, len, fin);
            self.rexmit_next = s.wrapping_add(len).wrapping_add(u32::from(fin));
        }
    }

    /// Sends what the windows, Nagle and cork allow.
    pub fn output(&mut self, net: &mut Net) {
        if !matches!(
            self.state,
            TcpState::Established
                | TcpState::CloseWait
                | TcpState::FinWait1
                | TcpState::Closing
                | TcpState::LastAck
        ) {
            return;
        }
        if self.in_recovery && self.sack_ok {
            self.retransmit_holes(net);
        }
        loop {
            let data_end = self.data_end();
            let unsent = if lt(self.snd_nxt, data_end) {
                data_end.wrapping_sub(self.snd_nxt)
            } else {
                0
            };
            let seq = self.snd_nxt;
            if unsent == 0 {
                if self.fin_queued && seq == data_end {
                    self.send_data(net, seq, 0, true);
                    self.snd_nxt = seq.wrapping_add(1);
                }
                break;
            }
            let flight = self.in_flight();
            let cwnd_room = self.cwnd.saturating_sub(flight);
            let wnd_end = self.snd_una.wrapping_add(self.snd_wnd);
            let rwnd_room = if lt(seq, wnd_end) {
                wnd_end.wrapping_sub(seq)
            } else {
                0
            };
            let want = unsent.min(self.smss);
            let len = want.min(cwnd_room).min(rwnd_room);
            if len < want {
                if rwnd_room < want && flight == 0 {
                    self.start_persist(net);
                }
                // Wait for the congestion window (ACKs are coming), or
                // for the peer's window to open: a partial segment goes
                // only if it is half the largest window the peer offered
                // (sender SWS avoidance, RFC 9293 §3.8.6.2.1).
                if len == 0 || cwnd_room < want || len < self.max_snd_wnd / 2 {
                    break;
                }
            }
            // A small final piece: TCP_CORK holds it; Nagle holds it while
            // anything is unacknowledged. A queued FIN pushes it out.
            if len < self.smss
                && len == unsent
                && !self.fin_queued
                && (self.opts.cork || (!self.opts.nodelay && flight > 0))
            {
                break;
            }
            let fin = self.fin_queued && seq.wrapping_add(len) == data_end;
            self.send_data(net, seq, len, fin);
            self.snd_nxt = seq.wrapping_add(len).wrapping_add(u32::from(fin));
            if fin {
                break;
            }
        }
        self.rearm(net);
    }

    fn start_persist(&mut self, net: &mut Net) {
        if self.rto_at.is_none() {
            self.persist = true;
            self.arm_rto(net.now);
        }
    }

    // ---- Input ----

    /// Handles a segment in SYN_SENT (RFC 9293 §3.10.7.3).
    fn syn_sent_input(&mut self, net: &mut Net, seg: &Seg) -> Outcome {
        let ack_ok = seg.has(TcpFlags::ACK) && gt(seg.ack, self.iss) && le(seg.ack, self.snd_max);
        if seg.has(TcpFlags::ACK) && !ack_ok {
            if !seg.has(TcpFlags::RST) {
                super::send_rst_reply(net, self.local, self.remote, seg);
            }
            return Outcome::Nothing;
        }
        if seg.has(TcpFlags::RST) {
            if ack_ok {
                return self.fail(net, Errno::ECONNREFUSED, false);
            }
            return Outcome::Nothing;
        }
        if !seg.has(TcpFlags::SYN) {
            return Outcome::Nothing;
        }
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq.wrapping_add(1);
        self.rcv_adv = self
            .rcv_nxt
            .wrapping_add(self.opts.rcv_buf.min(65535) as u32);
        self.negotiate(seg);
        if !ack_ok {
            // Simultaneous open (RFC 9293 figure 8): answer SYN-ACK.
            self.state = TcpState::SynRcvd;
            self.snd_wnd = u32::from(seg.wnd);
            self.send_syn(net, true);
            return Outcome::Nothing;
        }
        self.snd_una = seg.ack;
        // A SYN's window is never scaled (RFC 7323 §2.2).
        self.snd_wnd = u32::from(seg.wnd);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = seg.seq;
        self.snd_wl2 = seg.ack;
        if self.ts_ok {
            if let Some((_, ecr)) = seg.opts.timestamp {
                self.rtt_from_ts(net.now, ecr);
            }
        } else if self.backoff == 0 {
            // Karn: the SYN was not retransmitted, so its RTT is valid.
            if let Some(rto_at) = self.rto_at {
                let sent = rto_at.saturating_sub(self.current_rto());
                self.rtt_sample(net.now.saturating_sub(sent));
            }
        }
        self.backoff = 0;
        self.rto_at = None;
        self.state = TcpState::Established;
        self.last_rcv = net.now;
        self.arm_keepalive();
        self.send_ack(net);
        self.output(net);
        self.rearm(net);
        self.notify(net);
        Outcome::Nothing
    }

    /// Handles a segment for this connection (not a listener).
    pub fn segment_arrives(&mut self, net: &mut Net, seg: &Seg) -> Outcome {
        self.segs_in += 1;
        match self.state {
            TcpState::Closed | TcpState::Listen => return Outcome::Nothing,
            TcpState::SynSent => return self.syn_sent_input(net, seg),
            _ => {}
        }
        self.last_rcv = net.now;
        self.ka_probes = 0;
        if self.state == TcpState::SynRcvd
            && seg.has(TcpFlags::SYN)
            && !seg.has(TcpFlags::ACK)
            && seg.seq == self.irs
        {
            // The peer did not see our SYN-ACK.
            self.send_syn(net, true);
            return Outcome::Nothing;
        }
        // RFC 7323 §5.3: PAWS.
        if self.ts_ok && !seg.has(TcpFlags::RST) {
            if let Some((val, _)) = seg.opts.timestamp {
                if lt(val, self.ts_recent) {
                    self.send_oow_ack(net, seg);
                    return Outcome::Nothing;
                }
            }
        }
        // RFC 9293 §3.10.7.4, first: is the segment in the window?
        let wnd = if lt(self.rcv_adv, self.rcv_nxt) {
            0
        } else {
            self.rcv_adv.wrapping_sub(self.rcv_nxt)
        };
        let len = seg.len();
        let acceptable = match (len, wnd) {
            (0, 0) => seg.seq == self.rcv_nxt,
            (0, _) => in_window(seg.seq, self.rcv_nxt, wnd),
            (_, 0) => false,
            _ => {
                in_window(seg.seq, self.rcv_nxt, wnd)
                    || in_window(seg.seq.wrapping_add(len - 1), self.rcv_nxt, wnd)
            }
        };
        // A segment exactly at the window's right edge carrying only an
        // ACK (a zero-window peer's ACKs) must still be processed.
        let acceptable = acceptable || (len == 0 && seg.seq == self.rcv_adv);
        if !acceptable {
            if !seg.has(TcpFlags::RST) {
                if self.state == TcpState::TimeWait && seg.has(TcpFlags::FIN) {
                    self.close_at = Some(net.now + TIME_WAIT_LEN);
                    self.rearm(net);
                }
                self.send_oow_ack(net, seg);
            }
            return Outcome::Nothing;
        }
        // Second: RST (RFC 5961 §3.2: exact match resets, else challenge).
        if seg.has(TcpFlags::RST) {
            if seg.seq != self.rcv_nxt {
                self.send_oow_ack(net, seg);
                return Outcome::Nothing;
            }
            return match self.state {
                TcpState::SynRcvd if self.parent.is_some() => {
                    self.enter_closed(net);
                    Outcome::Closed
                }
                TcpState::SynRcvd => self.fail(net, Errno::ECONNREFUSED, false),
                TcpState::Closing | TcpState::LastAck | TcpState::TimeWait => {
                    self.enter_closed(net);
                    Outcome::Closed
                }
                _ => self.fail(net, Errno::ECONNRESET, false),
            };
        }
        // Fourth: a SYN in a synchronized state gets a challenge ACK
        // (RFC 5961 §4).
        if seg.has(TcpFlags::SYN) {
            self.send_oow_ack(net, seg);
            return Outcome::Nothing;
        }
        // Fifth: the ACK field.
        if !seg.has(TcpFlags::ACK) {
            return Outcome::Nothing;
        }
        if self.ts_ok {
            // RFC 7323 §4.3: remember the newest timestamp of an in-order segment.
            if let Some((val, _)) = seg.opts.timestamp {
                if le(seg.seq, self.rcv_nxt) && ge(val, self.ts_recent) {
                    self.ts_recent = val;
                }
            }
        }
        let mut outcome = Outcome::Nothing;
        if self.state == TcpState::SynRcvd {
            if !(gt(seg.ack, self.snd_una) && le(seg.ack, self.snd_max)) {
                super::send_rst_reply(net, self.local, self.remote, seg);
                return Outcome::Nothing;
            }
            self.state = if self.fin_queued {
                TcpState::FinWait1
            } else {
                TcpState::Established
            };
            self.sock = SockState::Connected;
            self.snd_wnd = u32::from(seg.wnd) << self.snd_shift;
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            self.backoff = 0;
            self.rto_at = None;
            self.arm_keepalive();
            outcome = Outcome::Established;
        }
        if gt(seg.ack, self.snd_max) {
            self.send_oow_ack(net, seg);
            return outcome;
        }
        if ge(seg.ack, self.snd_una) {
            self.process_ack(net, seg);
        }
        let fin_acked = self.fin_sent() && self.snd_una == self.data_end().wrapping_add(1);
        match self.state {
            TcpState::FinWait1 if fin_acked => {
                self.state = TcpState::FinWait2;
                if !self.handle_open {
                    self.close_at = Some(net.now + FIN_WAIT2_TIMEOUT);
                }
                self.notify(net);
            }
            TcpState::Closing if fin_acked => self.enter_time_wait(net),
            TcpState::LastAck if fin_acked => {
                self.enter_closed(net);
                return Outcome::Closed;
            }
            TcpState::TimeWait => {
                if seg.has(TcpFlags::FIN) {
                    self.send_ack(net);
                    self.close_at = Some(net.now + TIME_WAIT_LEN);
                    self.rearm(net);
                }
                return outcome;
            }
            _ => {}
        }
        // Seventh: data.
        let mut ack_now = false;
        if !seg.payload.is_empty() {
            if matches!(
                self.state,
                TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2
            ) {
                ack_now |= self.receive_data(net, seg);
            } else {
                ack_now = true;
            }
        }
        // Eighth: FIN.
        if seg.has(TcpFlags::FIN) {
            let f = seg.seq.wrapping_add(seg.payload.len() as u32);
            if le(f, self.rcv_adv) {
                self.fin_seq = Some(f);
            }
            ack_now = true;
        }
        if let Some(f) = self.fin_seq {
            if f == self.rcv_nxt && !self.fin_received {
                self.fin_received = true;
                self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                self.rcv_shutdown = true;
                ack_now = true;
                match self.state {
                    TcpState::Established => self.state = TcpState::CloseWait,
                    TcpState::FinWait1 if fin_acked => self.enter_time_wait(net),
                    TcpState::FinWait1 => self.state = TcpState::Closing,
                    TcpState::FinWait2 => self.enter_time_wait(net),
                    _ => {}
                }
                self.notify(net);
            }
        }
        if ack_now {
            self.send_ack(net);
        } else if self.segs_unacked > 0 && self.delack_at.is_none() {
            self.delack_at = Some(net.now + DELAYED_ACK);
        }
        self.output(net);
        self.rearm(net);
        outcome
    }

    /// Takes data at or after rcv_nxt; returns whether to ACK at once.
    fn receive_data(&mut self, net: &mut Net, seg: &Seg) -> bool {
        let mut seq = seg.seq;
        let mut data = seg.payload;
        if lt(seq, self.rcv_nxt) {
            let skip = self.rcv_nxt.wrapping_sub(seq) as usize;
            if skip >= data.len() {
                return true;
            }
            data = &data[skip..];
            seq = self.rcv_nxt;
        }
        let room = if lt(seq, self.rcv_adv) {
            self.rcv_adv.wrapping_sub(seq) as usize
        } else {
            0
        };
        data = &data[..data.len().min(room)];
        if data.is_empty() {
            return true;
        }
        if seq != self.rcv_nxt {
            self.store_out_of_order(seq, data);
            // RFC 5681 §4.2: out-of-order data is acknowledged at once.
            return true;
        }
        self.rcv_buf.extend(data);
        self.rcv_nxt = self.rcv_nxt.wrapping_add(data.len() as u32);
        self.bytes_received += data.len() as u64;
        let filled_hole = !self.ooo.is_empty();
        while let Some(pos) = self.ooo.iter().position(|(s, _)| le(*s, self.rcv_nxt)) {
            let (s, d) = self.ooo.remove(pos);
            let skip = self.rcv_nxt.wrapping_sub(s) as usize;
            if skip < d.len() {
                self.rcv_buf.extend(&d[skip..]);
                self.bytes_received += (d.len() - skip) as u64;
                self.rcv_nxt = self.rcv_nxt.wrapping_add((d.len() - skip) as u32);
            }
        }
        let nxt = self.rcv_nxt;
        self.sack_out.retain(|b| gt(b.end, nxt));
        self.segs_unacked += 1;
        net.notify(self.id, Events::READABLE);
        // RFC 5681 §4.2: ACK at least every second full segment, and at
        // once when the data fills a hole.
        filled_hole || self.segs_unacked >= 2
    }

    fn store_out_of_order(&mut self, seq: u32, data: &[u8]) {
        let mut s = seq;
        let mut e = seq.wrapping_add(data.len() as u32);
        let mut buf = data.to_vec();
        let mut kept = Vec::with_capacity(self.ooo.len() + 1);
        for (ps, pd) in std::mem::take(&mut self.ooo) {
            let pe = ps.wrapping_add(pd.len() as u32);
            if lt(pe, s) || gt(ps, e) {
                kept.push((ps, pd));
                continue;
            }
            // Overlapping or adjacent: merge.
            let mut merged = Vec::new();
            if lt(ps, s) {
                merged.extend_from_slice(&pd[..s.wrapping_sub(ps) as usize]);
                s = ps;
            }
            merged.extend_from_slice(&buf);
            if gt(pe, e) {
                merged.extend_from_slice(&pd[e.wrapping_sub(ps) as usize..]);
                e = pe;
            }
            buf = merged;
        }
        kept.push((s, buf));
        let nxt = self.rcv_nxt;
        kept.sort_by_key(|(ps, _)| ps.wrapping_sub(nxt));
        self.ooo = kept;
        // RFC 2018 §4: the block holding the newest data goes first.
        self.sack_out.retain(|b| !(ge(b.start, s) && le(b.end, e)));
        self.sack_out.insert(0, SackBlock { start: s, end: e });
        self.sack_out.truncate(4);
    }

    fn rtt_from_ts(&mut self, now: Duration, ecr: u32) {
        if ecr == 0 {
            return;
        }
        let ms = self.ts_now(now).wrapping_sub(ecr);
        if ms < 60_000 {
            self.rtt_sample(Duration::from_millis(u64::from(ms)));
        }
    }

    /// RFC 6298 §2.2-2.3.
    fn rtt_sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                let delta = s.abs_diff(r);
                self.rttvar = self.rttvar * 3 / 4 + delta / 4;
                self.srtt = Some(s * 7 / 8 + r / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        self.rto = (srtt + (4 * self.rttvar).max(Duration::from_millis(1))).clamp(MIN_RTO, MAX_RTO);
    }

    fn update_scoreboard(&mut self, seg: &Seg) -> u32 {
        if !self.sack_ok {
            return 0;
        }
        let before = self.sacked_between(self.snd_una, self.snd_max);
        for b in seg.opts.sacks() {
            // Only blocks wholly within what is outstanding (RFC 2018 §8
            // leaves the rest meaningless; Linux's tcp_is_sackblock_valid).
            if !(lt(b.start, b.end) && ge(b.start, self.snd_una) && le(b.end, self.snd_max)) {
                continue;
            }
            let (mut s, mut e) = (b.start, b.end);
            let mut kept = Vec::with_capacity(self.scoreboard.len() + 1);
            for &(ps, pe) in &self.scoreboard {
                if lt(pe, s) || gt(ps, e) {
                    kept.push((ps, pe));
                } else {
                    if lt(ps, s) {
                        s = ps;
                    }
                    if gt(pe, e) {
                        e = pe;
                    }
                }
            }
            kept.push((s, e));
            let una = self.snd_una;
            kept.sort_by_key(|r| r.0.wrapping_sub(una));
            self.scoreboard = kept;
        }
        self.sacked_between(self.snd_una, self.snd_max)
            .saturating_sub(before)
    }

    /// Fifth step for an acceptable ACK: window, SACK, RTT, congestion
    /// control, loss recovery.
    fn process_ack(&mut self, net: &mut Net, seg: &Seg) {
        let ack = seg.ack;
        let wnd = u32::from(seg.wnd) << self.snd_shift;
        let window_changed = wnd != self.snd_wnd;
        if lt(self.snd_wl1, seg.seq) || (self.snd_wl1 == seg.seq && le(self.snd_wl2, ack)) {
            self.snd_wnd = wnd;
            self.max_snd_wnd = self.max_snd_wnd.max(wnd);
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            if wnd > 0 && self.persist {
                self.persist = false;
                self.rto_at = None;
                self.backoff = 0;
            }
        }
        let newly_sacked = self.update_scoreboard(seg);
        let acked = ack.wrapping_sub(self.snd_una);
        if acked > 0 {
            // Drop acknowledged data (SYN and FIN occupy no buffer).
            if gt(ack, self.snd_buf_seq) {
                let n = (ack.wrapping_sub(self.snd_buf_seq) as usize).min(self.send_buf.len());
                self.send_buf.drain(..n);
                self.snd_buf_seq = self.snd_buf_seq.wrapping_add(n as u32);
                self.bytes_acked += n as u64;
            }
            if self.ts_ok {
                if let Some((_, ecr)) = seg.opts.timestamp {
                    self.rtt_from_ts(net.now, ecr);
                }
            } else if let Some((end, sent)) = self.rtt_seq {
                if ge(ack, end) {
                    self.rtt_sample(net.now.saturating_sub(sent));
                    self.rtt_seq = None;
                }
            }
            self.backoff = 0;
            self.snd_una = ack;
            if lt(self.snd_nxt, ack) {
                self.snd_nxt = ack;
            }
            let una = self.snd_una;
            self.scoreboard.retain(|r| gt(r.1, una));
            if let Some(first) = self.scoreboard.first_mut() {
                first.0 = max(first.0, una);
            }
            if self.in_recovery {
                if ge(ack, self.recover) {
                    // Full ACK: leave recovery (RFC 6582 §3.2 step 3).
                    self.in_recovery = false;
                    self.cwnd = self
                        .ssthresh
                        .min(self.in_flight() + self.smss)
                        .max(self.smss);
                    self.dupacks = 0;
                } else if self.sack_ok {
                    self.rexmit_next = max(self.rexmit_next, una);
                } else {
                    // NewReno partial ACK: resend the next hole, deflate.
                    self.retransmit_first(net);
                    self.cwnd = self
                        .cwnd
                        .saturating_sub(acked)
                        .saturating_add(self.smss)
                        .max(self.smss);
                }
            } else {
                self.dupacks = 0;
                if self.cwnd < self.ssthresh {
                    // Slow start with appropriate byte counting (RFC 3465, L = 2).
                    self.cwnd = self.cwnd.saturating_add(acked.min(2 * self.smss));
                } else {
                    self.ca_acked = self.ca_acked.saturating_add(acked);
                    if self.ca_acked >= self.cwnd {
                        self.ca_acked -= self.cwnd;
                        self.cwnd = self.cwnd.saturating_add(self.smss);
                    }
                }
                self.cwnd = self.cwnd.min(1 << 30);
            }
            if self.snd_una == self.snd_max {
                self.rto_at = None;
            } else {
                self.arm_rto(net.now);
            }
            net.notify(self.id, Events::WRITABLE);
        } else if self.snd_una != self.snd_max
            && seg.payload.is_empty()
            && !seg.has(TcpFlags::SYN)
            && !seg.has(TcpFlags::FIN)
            && (!window_changed || newly_sacked > 0)
        {
            self.dupacks += 1;
            if self.in_recovery && !self.sack_ok {
                self.cwnd = self.cwnd.saturating_add(self.smss);
            }
        }
        // Enter fast recovery on the third duplicate ACK (RFC 5681 §3.2),
        // or when SACK shows three segments' worth above a hole (RFC 6675 §5).
        let sack_loss = self.sack_ok
            && self.sacked_between(self.snd_una, self.snd_max) >= 3 * self.smss
            && acked == 0;
        if !self.in_recovery && (self.dupacks >= 3 || sack_loss) && gt(self.snd_max, self.snd_una) {
            // RFC 6582: no new recovery for losses from before the last one.
            if self.dupacks >= 3
                && !sack_loss
                && le(self.snd_max, self.recover)
                && self.recover != 0
            {
                return;
            }
            self.in_recovery = true;
            self.recover = self.snd_max;
            let flight = self.snd_max.wrapping_sub(self.snd_una);
            self.ssthresh = (flight / 2).max(2 * self.smss);
            self.rexmit_next = self.snd_una;
            if self.sack_ok {
                self.cwnd = self.ssthresh;
                // The first hole goes out now regardless of the pipe
                // (RFC 6675 §5 step 4.3).
                self.retransmit_first(net);
                self.rexmit_next = self.snd_una.wrapping_add(self.smss);
            } else {
                self.retransmit_first(net);
                self.cwnd = self.ssthresh + 3 * self.smss;
            }
        }
    }

    /// Retransmits the segment at snd_una.
    fn retransmit_first(&mut self, net: &mut Net) {
        let s = self.snd_una;
        let data_end = self.data_end();
        let len = data_end.wrapping_sub(s).min(self.smss);
        let len = if lt(s, data_end) { len } else { 0 };
        let fin = self.fin_sent() && s.wrapping_add(len) == data_end;
        if len > 0 || fin {
            self.send_data(net, s, len, fin);
            self.arm_rto(net.now);
        }
    }

    // ---- User calls ----

    /// Appends to the send queue; returns how much fit.
    pub fn write(&mut self, net: &mut Net, data: &[u8]) -> usize {
        let n = self.send_space().min(data.len());
        self.send_buf.extend(&data[..n]);
        self.output(net);
        n
    }

    /// Copies (and unless `peek`, consumes) received data.
    pub fn read(&mut self, net: &mut Net, buf: &mut [u8], peek: bool) -> usize {
        let n = buf.len().min(self.rcv_buf.len());
        let (a, b) = self.rcv_buf.as_slices();
        let na = n.min(a.len());
        buf[..na].copy_from_slice(&a[..na]);
        buf[na..n].copy_from_slice(&b[..n - na]);
        if peek || n == 0 {
            return n;
        }
        self.rcv_buf.drain(..n);
        // Linux's tcp_cleanup_rbuf: tell the peer when reading opened the
        // window to at least twice what it last saw.
        if self.is_synchronized() && !self.fin_received {
            let cur = if lt(self.rcv_adv, self.rcv_nxt) {
                0
            } else {
                self.rcv_adv.wrapping_sub(self.rcv_nxt)
            };
            let free = self
                .opts
                .rcv_buf
                .saturating_sub(self.rcv_buf.len())
                .min(u32::MAX as usize) as u32;
            let threshold = ((self.opts.rcv_buf / 2) as u32).min(self.rcv_mss);
            if free >= cur.saturating_mul(2) && free >= cur.saturating_add(threshold) {
                self.send_ack(net);
                self.rearm(net);
            }
        }
        n
    }

    /// Uncorking or setting TCP_NODELAY pushes what was held.
    pub fn push(&mut self, net: &mut Net) {
        self.output(net);
    }

    /// Whether a SYN for this TIME_WAIT connection may start a new one:
    /// its sequence number (or timestamp) is newer than anything seen
    /// (Linux's tcp_timewait_state_process, RFC 6191).
    pub fn syn_may_reopen(&self, seg: &Seg) -> bool {
        match (self.ts_ok, seg.opts.timestamp) {
            (true, Some((val, _))) => gt(val, self.ts_recent),
            _ => gt(seg.seq, self.rcv_nxt),
        }
    }

    /// Whether the peer's FIN has been received.
    pub fn fin_received(&self) -> bool {
        self.fin_received
    }

    /// TCP_INFO.
    pub fn info(&self) -> TcpInfo {
        TcpInfo {
            state: self.state,
            retransmits: self.backoff,
            backoff: self.backoff,
            rto: self.current_rto(),
            srtt: self.srtt.unwrap_or(Duration::ZERO),
            rttvar: self.rttvar,
            snd_mss: self.smss,
            rcv_mss: self.rcv_mss,
            snd_cwnd: self.cwnd,
            snd_ssthresh: self.ssthresh,
            snd_wnd: self.snd_wnd,
            rcv_wnd: self.rcv_adv.wrapping_sub(self.rcv_nxt),
            snd_wscale: self.snd_shift,
            rcv_wscale: self.rcv_shift,
            timestamps: self.ts_ok,
            sack: self.sack_ok,
            unacked: self.snd_max.wrapping_sub(self.snd_una),
            sacked: self.sacked_between(self.snd_una, self.snd_max),
            total_retrans: self.total_retrans,
            segs_in: self.segs_in,
            segs_out: self.segs_out,
            bytes_acked: self.bytes_acked,
            bytes_received: self.bytes_received,
            in_recovery: self.in_recovery,
        }
    }
}
