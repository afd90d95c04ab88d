//! Hostile input: mutated replays of real traffic and random bytes are
//! fed to a stack with live connections. Nothing may panic or hang, and
//! the stack must keep working. (The cargo-fuzz targets in `fuzz/` do
//! the same with coverage guidance; this runs in CI.)

mod common;

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use netstack::header::{fill_transport_checksum, Ipv4Packet, Ipv6Packet};
use netstack::{Errno, FakeClock, Family, TcpSocket};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Flips bytes of a captured packet's transport header or payload and
/// fixes the checksums so the mutation reaches TCP/UDP logic.
fn mutate(rng: &mut Rng, pkt: &[u8]) -> Vec<u8> {
    let mut p = pkt.to_vec();
    let (hl, src, dst, proto): (usize, IpAddr, IpAddr, u8) = match p[0] >> 4 {
        4 => {
            let ip = Ipv4Packet::parse(&p).unwrap();
            (
                ip.header_len(),
                ip.src().into(),
                ip.dst().into(),
                ip.protocol(),
            )
        }
        _ => {
            let ip = Ipv6Packet::parse(&p).unwrap();
            (40, ip.src().into(), ip.dst().into(), ip.protocol())
        }
    };
    let n = 1 + rng.below(4);
    for _ in 0..n {
        // Mostly the TCP header (flags, seq, ack, window, offset, options).
        let at = if rng.below(4) > 0 {
            hl + rng.below((p.len() - hl).min(60))
        } else {
            rng.below(p.len())
        };
        p[at] ^= 1 << rng.below(8);
    }
    if rng.below(8) == 0 {
        let cut = hl + rng.below(p.len() - hl);
        p.truncate(cut);
    }
    if proto == 6 && p.len() >= hl + 18 && rng.below(4) > 0 {
        p[hl + 16] = 0;
        p[hl + 17] = 0;
        fill_transport_checksum(src, dst, proto, &mut p[hl..], 16);
    }
    p
}

#[test]
fn mutated_replays_and_garbage_do_not_break_the_stack() {
    let clock = Arc::new(FakeClock::new());
    let link = TestLink::new(clock.clone(), 1500, true);
    let s = stack_on(link.clone(), clock.clone());
    let nic = s.nic_by_name("test0").unwrap();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    link.record.store(true, Ordering::Relaxed);
    for round in 0..100 {
        let addr = if round % 2 == 0 {
            v4(9000 + round)
        } else {
            v6(9000 + round)
        };
        let (_l, c, srv) = connected_pair(&s, addr);
        let data = pattern(256 * 1024, round as u64);
        let mut sent = 0;
        let mut got = 0;
        let mut buf = vec![0u8; 8192];
        for _ in 0..2000 {
            if sent < data.len() {
                if let Ok(n) = c.send(&data[sent..(sent + 4096).min(data.len())]) {
                    sent += n;
                }
            }
            match srv.recv(&mut buf, false) {
                Ok(n) => got += n,
                Err(Errno::EAGAIN) => {}
                Err(_) => break, // A mutated RST may legitimately end it.
            }
            let cap: Vec<Vec<u8>> = link.captured.lock().unwrap().drain(..).collect();
            for p in &cap {
                if rng.below(3) == 0 {
                    s.deliver_packet(nic, mutate(&mut rng, p));
                }
            }
            // Plain garbage too.
            let len = rng.below(80);
            let g: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            s.deliver_packet(nic, g);
            link.captured.lock().unwrap().clear();
            s.advance(&clock, Duration::from_millis(rng.below(300) as u64));
            if got == data.len() {
                break;
            }
        }
    }
    link.record.store(false, Ordering::Relaxed);
    // Still working: a clean connection moves data.
    let (_l, c, srv) = connected_pair(&s, v4(9999));
    let data = pattern(300_000, 99);
    assert_eq!(
        transfer(&s, &clock, &c, &srv, &data, Duration::from_millis(1)),
        data
    );
    let st = s.stats();
    assert!(st.ip_malformed > 0 && st.tcp_resets_sent > 0, "{st:?}");
}

#[test]
fn syn_flood_is_bounded() {
    let (s, _clock) = lo_stack();
    let l = TcpSocket::new(&s, Family::V4);
    l.bind(v4(9100)).unwrap();
    l.listen(8).unwrap();
    // A flood of connection attempts nobody accepts: the accept queue
    // holds backlog + 1, the rest are dropped, memory stays bounded.
    let clients: Vec<TcpSocket> = (0..500)
        .map(|_| {
            let c = TcpSocket::new(&s, Family::V4);
            let _ = c.connect(v4(9100));
            c
        })
        .collect();
    let established = clients
        .iter()
        .filter(|c| c.state() == netstack::TcpState::Established)
        .count();
    assert_eq!(established, 9);
    assert_eq!(s.stats().tcp_listen_drops, 491);
}
