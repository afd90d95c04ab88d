//! Fuzzes the stack's whole receive path: IP, ICMP, UDP, and the TCP
//! state machine with live connections.
//!
//! A loopback stack (no checksums on loopback, so mutations reach the
//! protocol logic) holds a TCP listener on 127.0.0.1:80 and [::1]:80, a
//! connection to each, and a UDP socket on port 53. The input is a
//! sequence of packets, each prefixed by a 16-bit big-endian length, each
//! delivered on `lo`; between packets the fake clock moves by the low
//! byte of the length in tens of milliseconds, so timers fire too. Nothing
//! may panic or loop forever.
//!
//! ```sh
//! cd netstack/fuzz
//! cargo +nightly fuzz run stack_input -- -max_len=8192
//! ```

#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use netstack::{Errno, FakeClock, Family, Stack, TcpSocket, UdpSocket};

fuzz_target!(|data: &[u8]| {
    let clock = Arc::new(FakeClock::new());
    let s = Stack::with_loopback(clock.clone());
    let lo = s.nic_by_name("lo").expect("lo");
    let mut keep = Vec::new();
    for (fam, addr) in [(Family::V4, "127.0.0.1:80"), (Family::V6, "[::1]:80")] {
        let l = TcpSocket::new(&s, fam);
        l.bind(addr.parse().unwrap()).unwrap();
        l.listen(4).unwrap();
        let c = TcpSocket::new(&s, fam);
        assert_eq!(c.connect(addr.parse().unwrap()), Err(Errno::EINPROGRESS));
        let a = l.accept().ok().map(|(a, _)| a);
        keep.push((l, c, a));
    }
    let u = UdpSocket::new(&s, Family::V6);
    u.bind("[::]:53".parse().unwrap()).unwrap();
    let mut rest = data;
    let mut buf = [0u8; 1024];
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let pkt = &rest[2..(2 + len).min(rest.len())];
        s.deliver_packet(lo, pkt.to_vec());
        s.advance(&clock, Duration::from_millis(10 * u64::from(rest[1])));
        rest = &rest[(2 + len).min(rest.len())..];
        for (_, c, a) in &keep {
            let _ = c.recv(&mut buf, false);
            let _ = c.send(b"x");
            if let Some(a) = a {
                let _ = a.recv(&mut buf, false);
            }
        }
        let _ = u.recv_from(&mut buf, false);
    }
});
