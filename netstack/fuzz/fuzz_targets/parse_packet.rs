//! Fuzzes the packet parsers with arbitrary bytes.
//!
//! Each input is parsed as an IPv4 and as an IPv6 packet; whatever parses
//! has its transport payload parsed as TCP (with options), UDP and ICMP
//! echo, and every accessor and checksum check is called. Nothing may
//! panic; a TCP header that parses must re-emit to the same options.
//!
//! Run (needs a nightly toolchain and `cargo install cargo-fuzz`):
//!
//! ```sh
//! cd netstack/fuzz
//! cargo +nightly fuzz run parse_packet -- -max_len=2048
//! ```

#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use netstack::header::{
    proto, transport_checksum_ok, IcmpEcho, Ipv4Packet, Ipv6Packet, TcpOptions, TcpSegment, UdpDatagram,
};

fn transport(src: IpAddr, dst: IpAddr, protocol: u8, payload: &[u8]) {
    let _ = transport_checksum_ok(src, dst, protocol, payload);
    if let Ok(t) = TcpSegment::parse(payload) {
        let o = t.options();
        let _ = (t.src_port(), t.dst_port(), t.seq(), t.ack(), t.flags(), t.window(), t.urgent());
        let _ = t.payload().len();
        // Options that parsed re-emit and parse back to themselves (SACK
        // blocks beyond what fits beside the others are dropped on emit).
        let mut buf = [0u8; 40];
        let n = o.wire_len();
        o.emit(&mut buf[..n]);
        let back = TcpOptions::parse(&buf[..n]);
        assert_eq!((back.mss, back.window_scale, back.sack_permitted, back.timestamp),
                   (o.mss, o.window_scale, o.sack_permitted, o.timestamp));
    }
    if let Ok(u) = UdpDatagram::parse(payload) {
        let _ = (u.src_port(), u.dst_port(), u.checksum_field(), u.payload().len());
    }
    if let Ok(i) = IcmpEcho::parse(payload) {
        let _ = (i.icmp_type(), i.code(), i.ident(), i.seq(), i.data().len());
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Ipv4Packet::parse(data) {
        let _ = (p.header_checksum_ok(), p.tos(), p.id(), p.ttl(), p.header_len());
        transport(p.src().into(), p.dst().into(), p.protocol(), p.payload());
    }
    if let Ok(p) = Ipv6Packet::parse(data) {
        let _ = (p.traffic_class(), p.hop_limit());
        transport(p.src().into(), p.dst().into(), p.protocol(), p.payload());
    }
    // The transport parsers also see raw bytes directly.
    transport(IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 1]), proto::UDP, data);
});
