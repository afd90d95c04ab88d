//! The IP layer, ICMP echo and UDP, driven through whole stacks.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use common::*;
use netstack::header::{
    checksum, fill_transport_checksum, proto, IcmpEcho, IcmpEchoRepr, Ipv4Packet, Ipv4Repr,
    Ipv6Repr, ICMPV4_ECHO_REPLY, ICMPV4_ECHO_REQUEST, ICMPV6_ECHO_REQUEST,
};
use netstack::{Errno, Events, FakeClock, Family, Shutdown, Stack, UdpSocket};

fn echo_request_v4(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; 8];
    IcmpEchoRepr {
        icmp_type: ICMPV4_ECHO_REQUEST,
        ident,
        seq,
    }
    .emit(&mut m);
    m.extend_from_slice(data);
    let s = checksum(&m);
    m[2..4].copy_from_slice(&s.to_be_bytes());
    let mut p = vec![0u8; 20];
    Ipv4Repr {
        src,
        dst,
        protocol: proto::ICMPV4,
        ttl: 64,
        tos: 0,
        id: 1,
        payload_len: m.len(),
    }
    .emit(&mut p)
    .unwrap();
    p.extend_from_slice(&m);
    p
}

#[test]
fn icmp_echo_reply_on_a_checksummed_link() {
    let clock = Arc::new(FakeClock::new());
    let cap = TestLink::new(clock.clone(), 1500, false);
    let s = Stack::new(clock);
    let nic = s.add_nic("eth0", cap.clone());
    let me = Ipv4Addr::new(10, 0, 0, 1);
    let peer = Ipv4Addr::new(10, 0, 0, 2);
    s.add_address(nic, me.into(), 24).unwrap();
    s.add_route("10.0.0.0".parse().unwrap(), 24, nic).unwrap();

    s.deliver_packet(nic, echo_request_v4(peer, me, 0x4242, 7, b"ping data"));
    let out = cap.captured.lock().unwrap().clone();
    assert_eq!(out.len(), 1);
    let ip = Ipv4Packet::parse(&out[0]).unwrap();
    assert!(ip.header_checksum_ok());
    assert_eq!(
        (ip.src(), ip.dst(), ip.protocol()),
        (me, peer, proto::ICMPV4)
    );
    assert_eq!(checksum(ip.payload()), 0, "ICMP checksum verifies");
    let e = IcmpEcho::parse(ip.payload()).unwrap();
    assert_eq!(
        (e.icmp_type(), e.ident(), e.seq(), e.data()),
        (ICMPV4_ECHO_REPLY, 0x4242, 7, &b"ping data"[..])
    );
    assert_eq!(s.stats().icmp_echo_replied, 1);

    // A corrupted request (bad ICMP checksum) gets no reply.
    let mut bad = echo_request_v4(peer, me, 1, 1, b"x");
    let n = bad.len();
    bad[n - 1] ^= 1;
    s.deliver_packet(nic, bad);
    // A bad IPv4 header checksum is dropped as malformed.
    let mut bad = echo_request_v4(peer, me, 1, 1, b"x");
    bad[8] ^= 1;
    s.deliver_packet(nic, bad);
    // Not addressed to us.
    s.deliver_packet(
        nic,
        echo_request_v4(peer, Ipv4Addr::new(10, 0, 0, 9), 1, 1, b"x"),
    );
    // Garbage and truncation.
    s.deliver_packet(nic, vec![0x45, 0, 0]);
    s.deliver_packet(nic, vec![]);
    s.deliver_packet(nic, vec![0x99; 40]);
    assert_eq!(cap.captured.lock().unwrap().len(), 1);
    let st = s.stats();
    assert_eq!(st.bad_checksum, 1);
    assert_eq!(st.ip_malformed, 4);
    assert_eq!(st.ip_not_local, 1);
}

#[test]
fn icmp_echo_over_loopback_v4_and_v6() {
    let (s, _clock) = lo_stack();
    let lo = s.interfaces()[0].clone();
    assert_eq!(lo.name, "lo");
    assert!(lo.loopback);
    assert_eq!(lo.mtu, 65536);
    assert_eq!(lo.addrs.len(), 2);
    let nic = s.nic_by_name("lo").unwrap();
    // Any 127/8 address is local on lo, as on Linux.
    s.deliver_packet(
        nic,
        echo_request_v4(
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::new(127, 1, 2, 3),
            1,
            1,
            b"abc",
        ),
    );
    let mut m = vec![0u8; 8];
    IcmpEchoRepr {
        icmp_type: ICMPV6_ECHO_REQUEST,
        ident: 9,
        seq: 3,
    }
    .emit(&mut m);
    m.extend_from_slice(b"six");
    let a: IpAddr = "::1".parse().unwrap();
    fill_transport_checksum(a, a, proto::ICMPV6, &mut m, 2);
    let mut p = vec![0u8; 40];
    Ipv6Repr {
        src: "::1".parse().unwrap(),
        dst: "::1".parse().unwrap(),
        next_header: proto::ICMPV6,
        hop_limit: 64,
        traffic_class: 0,
        payload_len: m.len(),
    }
    .emit(&mut p)
    .unwrap();
    p.extend_from_slice(&m);
    s.deliver_packet(nic, p);
    let st = s.stats();
    assert_eq!(st.icmp_echo_replied, 2);
    // The replies came back over lo to the stack.
    assert_eq!(st.icmp_echo_replies_received, 2);
}

#[test]
fn udp_round_trip_over_v6_loopback_with_source_address() {
    let (s, _) = lo_stack();
    let a = UdpSocket::new(&s, Family::V6);
    a.bind(v6(0)).unwrap();
    let a_addr = a.local_addr();
    assert!(a_addr.port() >= 32768, "ephemeral port {a_addr}");
    let b = UdpSocket::new(&s, Family::V6);
    b.bind(v6(5353)).unwrap();
    assert_eq!(b.readiness(), Events::WRITABLE);
    assert_eq!(a.send_to(b"hello", Some(v6(5353))), Ok(5));
    assert_eq!(b.readiness(), Events::WRITABLE | Events::READABLE);
    assert_eq!(b.next_datagram_len(), 5);
    let mut buf = [0u8; 64];
    let r = b.recv_from(&mut buf, true).unwrap();
    assert_eq!((r.len, r.from), (5, a_addr));
    let r = b.recv_from(&mut buf, false).unwrap();
    assert_eq!(&buf[..r.len], b"hello");
    assert_eq!(b.recv_from(&mut buf, false), Err(Errno::EAGAIN));
    // Reply to the source.
    b.send_to(b"world!", Some(r.from)).unwrap();
    let r = a.recv_from(&mut buf, false).unwrap();
    assert_eq!((&buf[..r.len], r.from), (&b"world!"[..], v6(5353)));
    // Truncation reports the full length.
    b.send_to(&[7u8; 100], Some(a_addr)).unwrap();
    let mut small = [0u8; 10];
    let r = a.recv_from(&mut small, false).unwrap();
    assert_eq!((r.len, r.full_len), (10, 100));
    // The hop limit arrives with the datagram (IPV6_RECVHOPLIMIT).
    assert_eq!(r.ttl, 64);
    b.set_ttl(7);
    b.send_to(b"x", Some(a_addr)).unwrap();
    assert_eq!(a.recv_from(&mut small, false).unwrap().ttl, 7);
}

#[test]
fn udp_dual_stack_sees_v4_peers_as_mapped() {
    let (s, _) = lo_stack();
    let server = UdpSocket::new(&s, Family::V6);
    server.bind("[::]:7000".parse().unwrap()).unwrap();
    let client = UdpSocket::new(&s, Family::V4);
    client.send_to(b"from v4", Some(v4(7000))).unwrap();
    let mut buf = [0u8; 32];
    let r = server.recv_from(&mut buf, false).unwrap();
    let want: SocketAddr = format!("[::ffff:127.0.0.1]:{}", client.local_addr().port())
        .parse()
        .unwrap();
    assert_eq!(r.from, want);
    server.send_to(b"back", Some(r.from)).unwrap();
    let r = client.recv_from(&mut buf, false).unwrap();
    assert_eq!(&buf[..r.len], b"back");
    assert_eq!(r.from, v4(7000));
    // A v6-only socket does not take IPv4.
    let only = UdpSocket::new(&s, Family::V6);
    only.set_v6only(true).unwrap();
    only.bind("[::]:7001".parse().unwrap()).unwrap();
    client.send_to(b"lost", Some(v4(7001))).unwrap();
    assert_eq!(only.recv_from(&mut buf, false), Err(Errno::EAGAIN));
    assert_eq!(s.stats().udp_no_port, 1);
    // ... and so the IPv4 port is still free.
    let v4sock = UdpSocket::new(&s, Family::V4);
    v4sock.bind(v4(7001)).unwrap();
}

#[test]
fn udp_bind_rules() {
    let (s, _) = lo_stack();
    let a = UdpSocket::new(&s, Family::V4);
    a.bind(v4(6000)).unwrap();
    assert_eq!(a.bind(v4(6001)), Err(Errno::EINVAL), "already bound");
    let b = UdpSocket::new(&s, Family::V4);
    assert_eq!(b.bind(v4(6000)), Err(Errno::EADDRINUSE));
    assert_eq!(
        b.bind("0.0.0.0:6000".parse().unwrap()),
        Err(Errno::EADDRINUSE)
    );
    assert_eq!(
        b.bind("10.9.9.9:6000".parse().unwrap()),
        Err(Errno::EADDRNOTAVAIL)
    );
    assert_eq!(b.bind(v6(6000)), Err(Errno::EAFNOSUPPORT));
    drop(a);
    b.bind(v4(6000)).unwrap();

    // SO_REUSEADDR on both shares the port; the later bind receives.
    let r1 = UdpSocket::new(&s, Family::V4);
    let r2 = UdpSocket::new(&s, Family::V4);
    r1.set_reuse_addr(true);
    r2.set_reuse_addr(true);
    r1.bind(v4(6100)).unwrap();
    r2.bind(v4(6100)).unwrap();
    let plain = UdpSocket::new(&s, Family::V4);
    assert_eq!(plain.bind(v4(6100)), Err(Errno::EADDRINUSE));
    let c = UdpSocket::new(&s, Family::V4);
    c.send_to(b"x", Some(v4(6100))).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(r1.recv_from(&mut buf, false), Err(Errno::EAGAIN));
    assert!(r2.recv_from(&mut buf, false).is_ok());

    // SO_REUSEPORT spreads senders over the group; each sender sticks.
    let p: Vec<UdpSocket> = (0..4)
        .map(|_| {
            let u = UdpSocket::new(&s, Family::V4);
            u.set_reuse_port(true);
            u.bind(v4(6200)).unwrap();
            u
        })
        .collect();
    let senders: Vec<UdpSocket> = (0..32).map(|_| UdpSocket::new(&s, Family::V4)).collect();
    for (i, snd) in senders.iter().enumerate() {
        snd.send_to(&[i as u8], Some(v4(6200))).unwrap();
        snd.send_to(&[i as u8], Some(v4(6200))).unwrap();
    }
    let mut total = 0;
    let mut used = 0;
    for u in &p {
        let mut n = 0;
        let mut last: Option<(u8, SocketAddr)> = None;
        while let Ok(r) = u.recv_from(&mut buf, false) {
            n += 1;
            if let Some((b, from)) = last.take() {
                // Both datagrams of a sender arrive at the same socket.
                assert_eq!((b, from), (buf[0], r.from));
            } else {
                last = Some((buf[0], r.from));
            }
        }
        total += n;
        used += usize::from(n > 0);
    }
    assert_eq!(total, 64);
    assert!(
        used >= 2,
        "REUSEPORT group load-balances ({used} sockets used)"
    );
}

#[test]
fn udp_connect_filters_and_errors() {
    let (s, _) = lo_stack();
    let server = UdpSocket::new(&s, Family::V4);
    server.bind(v4(6300)).unwrap();
    let a = UdpSocket::new(&s, Family::V4);
    assert_eq!(a.send_to(b"x", None), Err(Errno::EDESTADDRREQ));
    assert_eq!(a.peer_addr(), Err(Errno::ENOTCONN));
    assert_eq!(a.shutdown(Shutdown::Both), Err(Errno::ENOTCONN));
    a.connect(v4(6300)).unwrap();
    assert_eq!(a.peer_addr(), Ok(v4(6300)));
    assert_eq!(a.local_addr().ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    a.send_to(b"connected", None).unwrap();
    let mut buf = [0u8; 16];
    let r = server.recv_from(&mut buf, false).unwrap();
    assert_eq!(r.from, a.local_addr());
    // A connected socket only takes datagrams from its peer.
    let other = UdpSocket::new(&s, Family::V4);
    other.send_to(b"stranger", Some(a.local_addr())).unwrap();
    assert_eq!(a.recv_from(&mut buf, false), Err(Errno::EAGAIN));
    server.send_to(b"peer", Some(a.local_addr())).unwrap();
    assert_eq!(a.recv_from(&mut buf, false).unwrap().len, 4);
    // Too big for one datagram.
    assert_eq!(a.send_to(&vec![0u8; 65508], None), Err(Errno::EMSGSIZE));
    assert_eq!(a.send_to(b"x", Some(v4(0))), Err(Errno::EINVAL));
    assert_eq!(
        a.send_to(b"x", Some("10.1.1.1:9".parse().unwrap())),
        Err(Errno::ENETUNREACH)
    );
    a.shutdown(Shutdown::Write).unwrap();
    assert_eq!(a.send_to(b"x", None), Err(Errno::EPIPE));
    a.shutdown(Shutdown::Read).unwrap();
    assert!(a.readiness().intersects(Events::HUP));
    assert_eq!(a.recv_from(&mut buf, false).unwrap().len, 0);
}

#[test]
fn udp_receive_buffer_full_drops_like_linux() {
    let (s, _) = lo_stack();
    let rx = UdpSocket::new(&s, Family::V4);
    rx.set_buffer_sizes(Some(4096), None);
    rx.bind(v4(6400)).unwrap();
    let tx = UdpSocket::new(&s, Family::V4);
    for i in 0..50u8 {
        tx.send_to(&[i; 1000], Some(v4(6400))).unwrap();
    }
    let mut buf = [0u8; 2000];
    let mut got = Vec::new();
    while let Ok(r) = rx.recv_from(&mut buf, false) {
        got.push(buf[0]);
        assert_eq!(r.len, 1000);
    }
    // Datagrams are taken while the charge already queued (payload +
    // overhead, 1256 each) is within the buffer, checked before adding
    // as Linux does: three queued (3768) still admit a fourth.
    assert_eq!(got, vec![0, 1, 2, 3]);
    assert_eq!(s.stats().udp_rcvbuf_errors, 46);
    // Reading made room again.
    tx.send_to(&[99; 1000], Some(v4(6400))).unwrap();
    assert_eq!(rx.recv_from(&mut buf, false).unwrap().len, 1000);
    assert_eq!(buf[0], 99);
}

#[test]
fn udp_checksums_on_a_checksummed_link() {
    let clock = Arc::new(FakeClock::new());
    let link = TestLink::new(clock.clone(), 1500, true);
    let s = stack_on(link, clock);
    let rx = UdpSocket::new(&s, Family::V4);
    rx.bind(v4(6500)).unwrap();
    let tx = UdpSocket::new(&s, Family::V4);
    tx.send_to(b"good", Some(v4(6500))).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(rx.recv_from(&mut buf, false).unwrap().len, 4);
    // A datagram with one byte flipped after checksumming is dropped.
    let mut d = vec![0u8; 8];
    netstack::header::UdpRepr {
        src_port: 1,
        dst_port: 6500,
        payload_len: 2,
    }
    .emit(&mut d)
    .unwrap();
    d.extend_from_slice(b"ok");
    let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
    fill_transport_checksum(lo, lo, proto::UDP, &mut d, 6);
    d[9] ^= 0xff;
    let mut p = vec![0u8; 20];
    Ipv4Repr {
        src: Ipv4Addr::LOCALHOST,
        dst: Ipv4Addr::LOCALHOST,
        protocol: proto::UDP,
        ttl: 64,
        tos: 0,
        id: 5,
        payload_len: d.len(),
    }
    .emit(&mut p)
    .unwrap();
    p.extend_from_slice(&d);
    let nic = s.nic_by_name("test0").unwrap();
    s.deliver_packet(nic, p);
    assert_eq!(rx.recv_from(&mut buf, false), Err(Errno::EAGAIN));
    assert_eq!(s.stats().bad_checksum, 1);
}

#[test]
fn socket_table_and_interface_counters() {
    let (s, _) = lo_stack();
    let before = s.interfaces()[0].counters;
    let a = UdpSocket::new(&s, Family::V6);
    a.bind(v6(0)).unwrap();
    let b = UdpSocket::new(&s, Family::V4);
    b.connect(v4(9)).unwrap();
    b.send_to(b"12345", None).unwrap();
    let t = s.sockets();
    assert_eq!(t.len(), 2);
    assert_eq!(
        (t[0].id, t[0].family, t[0].local),
        (a.id(), Family::V6, a.local_addr())
    );
    assert_eq!((t[0].state, t[0].tcp, t[0].open), (7, false, true));
    assert_eq!((t[1].id, t[1].state, t[1].remote), (b.id(), 1, v4(9)));
    // One 5-byte datagram out and back in over lo (IPv4 20 + UDP 8).
    let c = s.interfaces()[0].counters;
    assert_eq!(c.tx_packets - before.tx_packets, 1);
    assert_eq!(c.rx_packets - before.rx_packets, 1);
    assert_eq!(c.tx_bytes - before.tx_bytes, 33);
    drop(a);
    assert_eq!(s.sockets().len(), 1);
}
