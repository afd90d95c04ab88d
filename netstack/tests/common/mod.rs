//! Test fixtures: stacks on a fake clock, a programmable link that drops,
//! delays, corrupts and records packets, and transfer helpers.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netstack::header::{Ipv4Packet, Ipv6Packet, TcpOptions, TcpSegment};
use netstack::{
    Dispatcher, Errno, FakeClock, Family, LinkCaps, LinkEndpoint, NicId, Stack, TcpSocket,
};

/// What the test link does with one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Drop,
    /// Held back and delivered after the next delivered packet (reorder).
    Delay,
    /// One payload byte flipped (the checksum must catch it).
    Corrupt,
}

/// A TCP segment as the link saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Duration,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub flags: u8,
    pub payload_len: usize,
    pub opts: TcpOptions,
    pub fate: Fate,
}

type Policy = Box<dyn FnMut(&Seen) -> Fate + Send>;

/// A loopback-like link whose behaviour a test programs.
pub struct TestLink {
    mtu: usize,
    caps: LinkCaps,
    clock: Arc<FakeClock>,
    dispatcher: Mutex<Option<Dispatcher>>,
    policy: Mutex<Policy>,
    held: Mutex<VecDeque<Vec<u8>>>,
    pub seen: Mutex<Vec<Seen>>,
    /// When false, packets are only recorded (a capture link).
    pub deliver: bool,
    /// Also record delivered packets in `captured`.
    pub record: std::sync::atomic::AtomicBool,
    pub captured: Mutex<Vec<Vec<u8>>>,
}

fn parse_tcp(pkt: &[u8]) -> Option<(u16, u16, u32, u8, usize, TcpOptions)> {
    let (proto, payload) = match pkt.first()? >> 4 {
        4 => {
            let p = Ipv4Packet::parse(pkt).ok()?;
            (p.protocol(), p.payload())
        }
        6 => {
            let p = Ipv6Packet::parse(pkt).ok()?;
            (p.protocol(), p.payload())
        }
        _ => return None,
    };
    if proto != 6 {
        return None;
    }
    let t = TcpSegment::parse(payload).ok()?;
    Some((
        t.src_port(),
        t.dst_port(),
        t.seq(),
        t.flags().0,
        t.payload().len(),
        t.options(),
    ))
}

impl TestLink {
    pub fn new(clock: Arc<FakeClock>, mtu: usize, deliver: bool) -> Arc<TestLink> {
        Arc::new(TestLink {
            mtu,
            // No checksum offload: every packet is checksummed and checked.
            caps: LinkCaps {
                checksum_offload: false,
                loopback: deliver,
            },
            clock,
            dispatcher: Mutex::new(None),
            policy: Mutex::new(Box::new(|_| Fate::Deliver)),
            held: Mutex::new(VecDeque::new()),
            seen: Mutex::new(Vec::new()),
            deliver,
            record: std::sync::atomic::AtomicBool::new(false),
            captured: Mutex::new(Vec::new()),
        })
    }

    pub fn set_policy(&self, p: impl FnMut(&Seen) -> Fate + Send + 'static) {
        *self.policy.lock().unwrap() = Box::new(p);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear_seen(&self) {
        self.seen.lock().unwrap().clear();
    }

    fn dispatch(&self, pkt: Vec<u8>) {
        let d = self.dispatcher.lock().unwrap().clone();
        if let Some(d) = d {
            d.deliver(pkt);
        }
    }
}

impl LinkEndpoint for TestLink {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn caps(&self) -> LinkCaps {
        self.caps
    }

    fn attach(&self, dispatcher: Dispatcher) {
        *self.dispatcher.lock().unwrap() = Some(dispatcher);
    }

    fn write_packet(&self, mut pkt: Vec<u8>) {
        if !self.deliver {
            self.captured.lock().unwrap().push(pkt);
            return;
        }
        if self.record.load(std::sync::atomic::Ordering::Relaxed) {
            self.captured.lock().unwrap().push(pkt.clone());
        }
        let mut fate = Fate::Deliver;
        if let Some((sp, dp, seq, flags, len, opts)) = parse_tcp(&pkt) {
            let mut s = Seen {
                at: netstack::Clock::now(&*self.clock),
                src_port: sp,
                dst_port: dp,
                seq,
                flags,
                payload_len: len,
                opts,
                fate: Fate::Deliver,
            };
            fate = (self.policy.lock().unwrap())(&s);
            s.fate = fate;
            self.seen.lock().unwrap().push(s);
        }
        match fate {
            Fate::Drop => {}
            Fate::Delay => self.held.lock().unwrap().push_back(pkt),
            Fate::Corrupt => {
                let n = pkt.len();
                pkt[n - 1] ^= 0x55;
                self.dispatch(pkt);
            }
            Fate::Deliver => {
                self.dispatch(pkt);
                let held: Vec<_> = self.held.lock().unwrap().drain(..).collect();
                for h in held {
                    self.dispatch(h);
                }
            }
        }
    }
}

/// A stack on a fake clock whose only NIC is `link`, holding 127.0.0.1/8
/// and ::1 (the test link plays loopback).
pub fn stack_on(link: Arc<TestLink>, clock: Arc<FakeClock>) -> Arc<Stack> {
    let s = Stack::new(clock);
    let nic = s.add_nic("test0", link);
    add_lo_addrs(&s, nic);
    s
}

pub fn add_lo_addrs(s: &Stack, nic: NicId) {
    s.add_address(nic, IpAddr::V4(Ipv4Addr::LOCALHOST), 8)
        .unwrap();
    s.add_address(nic, "::1".parse().unwrap(), 128).unwrap();
    s.add_route("127.0.0.0".parse().unwrap(), 8, nic).unwrap();
    s.add_route("::1".parse().unwrap(), 128, nic).unwrap();
}

/// A loopback stack on a fake clock.
pub fn lo_stack() -> (Arc<Stack>, Arc<FakeClock>) {
    let clock = Arc::new(FakeClock::new());
    (Stack::with_loopback(clock.clone()), clock)
}

pub fn v4(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

pub fn v6(port: u16) -> SocketAddr {
    SocketAddr::new("::1".parse().unwrap(), port)
}

/// A listener on `addr`, a client connected to it, and the accepted end.
pub fn connected_pair(stack: &Arc<Stack>, addr: SocketAddr) -> (TcpSocket, TcpSocket, TcpSocket) {
    let fam = if addr.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    };
    let l = TcpSocket::new(stack, fam);
    l.bind(addr).unwrap();
    l.listen(16).unwrap();
    let addr = l.local_addr();
    let c = TcpSocket::new(stack, fam);
    assert_eq!(c.connect(addr), Err(Errno::EINPROGRESS));
    // Loopback runs the handshake before connect returns.
    assert_eq!(c.connect(addr), Ok(()));
    let (s, peer) = l.accept().unwrap();
    assert_eq!(peer, c.local_addr());
    (l, c, s)
}

/// FNV-1a, to compare streams.
pub fn fnv(h: &mut u64, data: &[u8]) {
    for &b in data {
        *h ^= u64::from(b);
        *h = h.wrapping_mul(0x100_0000_01b3);
    }
}

pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Deterministic test data.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sends `data` from `tx` to `rx`, advancing the fake clock by `tick`
/// whenever neither side can move. Returns what `rx` received.
pub fn transfer(
    stack: &Stack,
    clock: &FakeClock,
    tx: &TcpSocket,
    rx: &TcpSocket,
    data: &[u8],
    tick: Duration,
) -> Vec<u8> {
    let mut sent = 0;
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 256 * 1024];
    let mut idle = 0;
    while got.len() < data.len() {
        let mut moved = false;
        if sent < data.len() {
            match tx.send(&data[sent..]) {
                Ok(n) => {
                    sent += n;
                    moved = true;
                }
                Err(Errno::EAGAIN) => {}
                Err(e) => panic!("send: {e:?}"),
            }
        }
        loop {
            match rx.recv(&mut buf, false) {
                Ok(0) => panic!("unexpected EOF after {} bytes", got.len()),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    moved = true;
                }
                Err(Errno::EAGAIN) => break,
                Err(e) => panic!("recv: {e:?}"),
            }
        }
        if moved {
            idle = 0;
        } else {
            idle += 1;
            assert!(
                idle < 100_000,
                "transfer stalled at {} of {} bytes",
                got.len(),
                data.len()
            );
            stack.advance(clock, tick);
        }
    }
    got
}
