//! TCP driven through whole stacks: two endpoints talking over loopback
//! or over a test link that drops, reorders and delays.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use netstack::{Errno, Events, FakeClock, Family, Shutdown, TcpSocket, TcpState};

const MS: Duration = Duration::from_millis(1);

fn has(flags: u8, f: u8) -> bool {
    flags & f != 0
}
const SYN: u8 = 0x02;
const RST: u8 = 0x04;

#[test]
fn handshake_negotiates_options() {
    let (s, _) = lo_stack();
    let (_l, c, srv) = connected_pair(&s, v4(8000));
    for t in [&c, &srv] {
        let i = t.info();
        assert_eq!(i.state, TcpState::Established);
        assert!(i.timestamps && i.sack);
        assert_eq!((i.snd_wscale, i.rcv_wscale), (7, 7));
        // 65535 (IPv4's largest packet) - 40 header bytes - 12 of
        // timestamps: Linux's MSS on lo.
        assert_eq!(i.snd_mss, 65483);
    }
    assert_eq!(c.peer_addr(), Ok(srv.local_addr()));
    assert_eq!(c.connect(v4(8000)), Err(Errno::EISCONN));
    assert_eq!(c.readiness(), Events::WRITABLE);
}

#[test]
fn bulk_transfer_over_loopback_v4_and_v6() {
    for addr in [v4(8001), v6(8001)] {
        let (s, clock) = lo_stack();
        let (_l, c, srv) = connected_pair(&s, addr);
        let data = pattern(8 << 20, 1);
        let got = transfer(&s, &clock, &c, &srv, &data, MS);
        let (mut a, mut b) = (FNV_START, FNV_START);
        fnv(&mut a, &data);
        fnv(&mut b, &got);
        assert_eq!(a, b, "stream checksum");
        let i = c.info();
        assert_eq!(i.bytes_acked, 8 << 20);
        assert_eq!(i.total_retrans, 0);
        assert_eq!(srv.info().bytes_received, 8 << 20);
    }
}

/// A 1500-MTU checksummed link, a connected pair, and the link.
fn lossy_pair(
    port: u16,
) -> (
    Arc<netstack::Stack>,
    Arc<FakeClock>,
    Arc<TestLink>,
    TcpSocket,
    TcpSocket,
    TcpSocket,
) {
    let clock = Arc::new(FakeClock::new());
    let link = TestLink::new(clock.clone(), 1500, true);
    let s = stack_on(link.clone(), clock.clone());
    let (l, c, srv) = connected_pair(&s, v4(port));
    (s, clock, link, l, c, srv)
}

#[test]
fn one_lost_segment_is_fast_retransmitted_using_sack() {
    let (s, clock, link, _l, c, srv) = lossy_pair(8002);
    c.set_options(|o| o.nodelay = true).unwrap();
    let mss = c.info().snd_mss as usize;
    assert_eq!(mss, 1500 - 40 - 12);
    // Drop the third data segment of the flight, once.
    let mut n = 0;
    link.set_policy(move |p| {
        if p.dst_port == 8002 && p.payload_len > 0 {
            n += 1;
            if n == 3 {
                return Fate::Drop;
            }
        }
        Fate::Deliver
    });
    let data = pattern(9 * mss, 2);
    assert_eq!(c.send(&data), Ok(data.len()));
    // No time passes: the dup ACKs (with SACK) trigger the retransmit.
    let mut buf = vec![0u8; data.len() + 1];
    let mut got = Vec::new();
    while let Ok(n) = srv.recv(&mut buf, false) {
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, data);
    let seen = link.seen();
    let sacks: Vec<_> = seen
        .iter()
        .filter(|p| p.src_port == 8002 && p.opts.sack_count > 0)
        .collect();
    assert!(!sacks.is_empty(), "receiver SACKed the data after the hole");
    let lost_seq = seen.iter().find(|p| p.fate == Fate::Drop).unwrap().seq;
    assert_eq!(
        sacks[0].opts.sack_blocks[0].start,
        lost_seq.wrapping_add(mss as u32)
    );
    let retx: Vec<_> = seen
        .iter()
        .filter(|p| p.dst_port == 8002 && p.seq == lost_seq)
        .collect();
    assert_eq!(retx.len(), 2, "sent once, retransmitted once");
    let i = c.info();
    assert_eq!(i.total_retrans, 1);
    // Two segments were acknowledged before the hole: seven in flight.
    assert_eq!(i.snd_ssthresh, 7 * mss as u32 / 2);
    let _ = (s, clock);
}

#[test]
fn two_holes_are_both_repaired_in_one_sack_recovery() {
    let (_s, _clock, link, _l, c, srv) = lossy_pair(8003);
    c.set_options(|o| o.nodelay = true).unwrap();
    let mss = c.info().snd_mss as usize;
    let mut n = 0;
    link.set_policy(move |p| {
        if p.dst_port == 8003 && p.payload_len > 0 {
            n += 1;
            if n == 2 || n == 5 {
                return Fate::Drop;
            }
        }
        Fate::Deliver
    });
    let data = pattern(10 * mss, 3);
    c.send(&data).unwrap();
    let mut buf = vec![0u8; data.len()];
    let mut got = Vec::new();
    while let Ok(n) = srv.recv(&mut buf, false) {
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        got.len(),
        data.len(),
        "both holes repaired without a timeout"
    );
    assert_eq!(got, data);
    // Exactly the two lost segments were resent: SACK told the sender
    // which ones arrived.
    assert_eq!(c.info().total_retrans, 2);
}

#[test]
fn reordered_segments_are_reassembled_without_retransmission() {
    let (s, clock, link, _l, c, srv) = lossy_pair(8004);
    c.set_options(|o| o.nodelay = true).unwrap();
    let mss = c.info().snd_mss as usize;
    let mut n = 0;
    link.set_policy(move |p| {
        if p.dst_port == 8004 && p.payload_len > 0 {
            n += 1;
            if n % 4 == 1 {
                return Fate::Delay;
            }
        }
        Fate::Deliver
    });
    let data = pattern(40 * mss, 4);
    let got = transfer(&s, &clock, &c, &srv, &data, MS);
    assert_eq!(got, data);
    assert_eq!(
        c.info().total_retrans,
        0,
        "one-segment reordering is below the dupthresh"
    );
}

#[test]
fn random_loss_and_reordering_bulk() {
    let (s, clock, link, _l, c, srv) = lossy_pair(8005);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    link.set_policy(move |p| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Data and ACKs alike: 3% lost, 3% reordered.
        let _ = p;
        match x % 100 {
            0..=2 => Fate::Drop,
            3..=5 => Fate::Delay,
            _ => Fate::Deliver,
        }
    });
    let data = pattern(2 << 20, 5);
    let got = transfer(&s, &clock, &c, &srv, &data, 10 * MS);
    let (mut a, mut b) = (FNV_START, FNV_START);
    fnv(&mut a, &data);
    fnv(&mut b, &got);
    assert_eq!(a, b);
    let i = c.info();
    assert!(i.total_retrans > 0);
    println!(
        "2 MiB with 3% loss: {} retransmits, {:?} simulated",
        i.total_retrans,
        netstack::Clock::now(&*clock)
    );
}

#[test]
fn rto_backs_off_exponentially_then_times_out() {
    let (s, clock, link, _l, c, srv) = lossy_pair(8006);
    // Loopback RTT is zero, so the RTO sits at its 200 ms floor.
    assert_eq!(c.info().rto, 200 * MS);
    link.clear_seen();
    link.set_policy(|p| {
        if p.dst_port == 8006 {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    c.send(b"hello").unwrap();
    s.advance(&clock, Duration::from_secs(7));
    let sends: Vec<Duration> = link
        .seen()
        .iter()
        .filter(|p| p.dst_port == 8006)
        .map(|p| p.at)
        .collect();
    let gaps: Vec<u128> = sends
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    assert_eq!(gaps, vec![200, 400, 800, 1600, 3200]);
    assert_eq!(c.info().backoff, 5);
    // The path heals: the next retransmission gets through.
    link.set_policy(|_| Fate::Deliver);
    s.advance(&clock, Duration::from_secs(7));
    let mut buf = [0u8; 8];
    assert_eq!(srv.recv(&mut buf, false), Ok(5));
    assert_eq!(c.info().backoff, 0);
    // Broken for good: after tcp_retries2 (15) backoffs, ETIMEDOUT.
    link.set_policy(|p| {
        if p.dst_port == 8006 {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    c.send(b"again").unwrap();
    s.advance(&clock, Duration::from_secs(30 * 60));
    assert!(c.readiness().intersects(Events::ERR | Events::HUP));
    assert_eq!(c.send(b"x"), Err(Errno::ETIMEDOUT));
    assert_eq!(c.send(b"x"), Err(Errno::EPIPE));
    assert_eq!(c.state(), TcpState::Closed);
}

#[test]
fn connect_to_closed_port_is_refused() {
    let (s, _) = lo_stack();
    let c = TcpSocket::new(&s, Family::V4);
    assert_eq!(c.connect(v4(9)), Err(Errno::EINPROGRESS));
    assert!(c.readiness().intersects(Events::ERR));
    // Linux: the next connect reports the error, the one after retries.
    assert_eq!(c.connect(v4(9)), Err(Errno::ECONNREFUSED));
    assert_eq!(c.take_error(), None);
    assert_eq!(c.connect(v4(9)), Err(Errno::EINPROGRESS));
    assert_eq!(c.take_error(), Some(Errno::ECONNREFUSED));
    assert_eq!(c.connect(v4(9)), Err(Errno::ECONNABORTED));
    assert_eq!(s.stats().tcp_resets_sent, 2);
}

#[test]
fn syn_timeout_gives_etimedout() {
    let clock = Arc::new(FakeClock::new());
    let link = TestLink::new(clock.clone(), 1500, true);
    let s = stack_on(link.clone(), clock.clone());
    let l = TcpSocket::new(&s, Family::V4);
    l.bind(v4(8007)).unwrap();
    l.listen(1).unwrap();
    link.set_policy(|p| {
        if has(p.flags, SYN) {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    let c = TcpSocket::new(&s, Family::V4);
    assert_eq!(c.connect(v4(8007)), Err(Errno::EINPROGRESS));
    s.advance(&clock, Duration::from_secs(60));
    assert_eq!(c.connect(v4(8007)), Err(Errno::EALREADY));
    s.advance(&clock, Duration::from_secs(100));
    // 1+2+4+8+16+32 s of retries, then 64 s more: 127 s as on Linux.
    let syns: Vec<Duration> = link
        .seen()
        .iter()
        .filter(|p| has(p.flags, SYN))
        .map(|p| p.at)
        .collect();
    assert_eq!(syns.len(), 7);
    assert_eq!(c.connect(v4(8007)), Err(Errno::ETIMEDOUT));
}

#[test]
fn listen_backlog_overflow_drops_syns_until_accepted() {
    let (s, clock) = lo_stack();
    let l = TcpSocket::new(&s, Family::V4);
    l.bind(v4(8008)).unwrap();
    l.listen(2).unwrap();
    let clients: Vec<TcpSocket> = (0..6)
        .map(|_| {
            let c = TcpSocket::new(&s, Family::V4);
            assert_eq!(c.connect(v4(8008)), Err(Errno::EINPROGRESS));
            c
        })
        .collect();
    let states: Vec<TcpState> = clients.iter().map(|c| c.state()).collect();
    // Linux queues backlog + 1 connections, then drops SYNs.
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == TcpState::Established)
            .count(),
        3
    );
    assert_eq!(
        states.iter().filter(|s| **s == TcpState::SynSent).count(),
        3
    );
    assert_eq!(s.stats().tcp_listen_drops, 3);
    assert!(l.readiness().intersects(Events::READABLE));
    let mut accepted = Vec::new();
    while let Ok((a, _)) = l.accept() {
        accepted.push(a);
    }
    assert_eq!(accepted.len(), 3);
    assert_eq!(l.accept().unwrap_err(), Errno::EAGAIN);
    assert_eq!(l.readiness(), Events::NONE);
    // The dropped clients retry their SYN after 1 s and get in.
    s.advance(&clock, Duration::from_millis(1100));
    while let Ok((a, _)) = l.accept() {
        accepted.push(a);
    }
    assert_eq!(accepted.len(), 6);
    assert!(clients.iter().all(|c| c.state() == TcpState::Established));
    // Data flows on all of them.
    for c in &clients {
        c.send(b"hi").unwrap();
    }
    let mut buf = [0u8; 4];
    let total: usize = accepted
        .iter()
        .map(|a| a.recv(&mut buf, false).unwrap())
        .sum();
    assert_eq!(total, 12);
}

#[test]
fn half_close_then_time_wait() {
    let (s, clock) = lo_stack();
    let (l, c, srv) = connected_pair(&s, v4(8009));
    c.send(b"request").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(c.send(b"more"), Err(Errno::EPIPE));
    assert_eq!(c.state(), TcpState::FinWait2);
    let mut buf = [0u8; 32];
    assert_eq!(srv.recv(&mut buf, false), Ok(7));
    assert_eq!(srv.recv(&mut buf, false), Ok(0), "EOF after the peer's FIN");
    assert!(srv.readiness().intersects(Events::RDHUP | Events::READABLE));
    assert_eq!(srv.state(), TcpState::CloseWait);
    // The other direction still works.
    srv.send(b"response").unwrap();
    assert_eq!(c.recv(&mut buf, false), Ok(8));
    assert_eq!(&buf[..8], b"response");
    drop(srv);
    assert_eq!(c.recv(&mut buf, false), Ok(0));
    assert_eq!(c.state(), TcpState::TimeWait);
    assert!(c.readiness().intersects(Events::HUP));
    // TIME_WAIT lasts 60 s.
    s.advance(&clock, Duration::from_secs(59));
    assert_eq!(c.state(), TcpState::TimeWait);
    s.advance(&clock, Duration::from_secs(2));
    assert_eq!(c.state(), TcpState::Closed);
    drop(l);
}

#[test]
fn time_wait_holds_the_port_against_bind() {
    let (s, clock) = lo_stack();
    let (l, c, srv) = connected_pair(&s, v4(8010));
    // The server closes first, so its side goes through TIME_WAIT.
    drop(srv);
    drop(l);
    let mut buf = [0u8; 4];
    assert_eq!(c.recv(&mut buf, false), Ok(0));
    drop(c);
    let again = TcpSocket::new(&s, Family::V4);
    assert_eq!(again.bind(v4(8010)), Err(Errno::EADDRINUSE));
    s.advance(&clock, Duration::from_secs(61));
    again.bind(v4(8010)).unwrap();

    // With SO_REUSEADDR on the listener (inherited by its connections)
    // and on the new socket, TIME_WAIT does not block the bind.
    let l = TcpSocket::new(&s, Family::V4);
    l.set_options(|o| o.reuseaddr = true).unwrap();
    l.bind(v4(8011)).unwrap();
    l.listen(1).unwrap();
    let c = TcpSocket::new(&s, Family::V4);
    let _ = c.connect(v4(8011));
    let (srv, _) = l.accept().unwrap();
    drop(srv);
    drop(l);
    let again = TcpSocket::new(&s, Family::V4);
    again.set_options(|o| o.reuseaddr = true).unwrap();
    again.bind(v4(8011)).unwrap();
    again.listen(1).unwrap();
}

#[test]
fn keepalive_kills_a_silent_peer_and_spares_a_live_one() {
    let (s, clock, link, _l, c, srv) = lossy_pair(8012);
    c.set_options(|o| {
        o.keepalive = true;
        o.keep_idle = Duration::from_secs(10);
        o.keep_intvl = Duration::from_secs(2);
        o.keep_cnt = 3;
    })
    .unwrap();
    // A live peer answers the probes: still up after an hour.
    link.clear_seen();
    s.advance(&clock, Duration::from_secs(3600));
    assert_eq!(c.state(), TcpState::Established);
    let probes = link
        .seen()
        .iter()
        .filter(|p| p.dst_port == 8012 && p.payload_len == 0)
        .count();
    assert!(probes >= 300, "a probe every idle period ({probes})");
    // The peer goes silent: 10 s idle + 3 probes 2 s apart, then reset.
    link.set_policy(|p| {
        if p.src_port == 8012 {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    s.advance(&clock, Duration::from_secs(15));
    assert_eq!(c.state(), TcpState::Established);
    s.advance(&clock, Duration::from_secs(2));
    assert_eq!(c.state(), TcpState::Closed);
    let mut buf = [0u8; 4];
    assert_eq!(c.recv(&mut buf, false), Err(Errno::ETIMEDOUT));
    // The peer saw the RST.
    let rst = link
        .seen()
        .iter()
        .any(|p| p.dst_port == 8012 && has(p.flags, RST));
    assert!(rst);
    assert_eq!(srv.recv(&mut buf, false), Err(Errno::ECONNRESET));
    assert_eq!(srv.recv(&mut buf, false), Ok(0));
}

#[test]
fn nagle_delays_small_segments_nodelay_and_cork() {
    let (s, clock) = lo_stack();
    let (_l, c, srv) = connected_pair(&s, v4(8013));
    let mut buf = [0u8; 16];
    // The first read opens the window past the SYN-ACK's 64 KiB and
    // sends an update; get it out of the way.
    c.send(b"x").unwrap();
    assert_eq!(srv.recv(&mut buf, false), Ok(1));
    s.advance(&clock, 50 * MS);
    c.send(b"a").unwrap();
    assert_eq!(srv.recv(&mut buf, false), Ok(1));
    // "a" is unacknowledged (the server delays its ACK): Nagle holds "b".
    c.send(b"b").unwrap();
    assert_eq!(srv.recv(&mut buf, false), Err(Errno::EAGAIN));
    s.advance(&clock, 39 * MS);
    assert_eq!(srv.recv(&mut buf, false), Err(Errno::EAGAIN));
    s.advance(&clock, MS);
    assert_eq!(
        srv.recv(&mut buf, false),
        Ok(1),
        "sent when the delayed ACK came"
    );
    assert_eq!(buf[0], b'b');

    c.set_options(|o| o.nodelay = true).unwrap();
    s.advance(&clock, 50 * MS);
    c.send(b"c").unwrap();
    c.send(b"d").unwrap();
    assert_eq!(
        srv.recv(&mut buf, false),
        Ok(2),
        "TCP_NODELAY sends at once"
    );

    c.set_options(|o| o.cork = true).unwrap();
    c.send(b"corked").unwrap();
    s.advance(&clock, Duration::from_secs(5));
    assert_eq!(srv.recv(&mut buf, false), Err(Errno::EAGAIN));
    c.set_options(|o| o.cork = false).unwrap();
    assert_eq!(srv.recv(&mut buf, false), Ok(6));
}

#[test]
fn linger_zero_resets_and_unread_data_resets() {
    let (s, _) = lo_stack();
    let (_l, c, srv) = connected_pair(&s, v4(8014));
    c.set_options(|o| o.linger = Some(Duration::ZERO)).unwrap();
    drop(c);
    let mut buf = [0u8; 4];
    assert_eq!(srv.recv(&mut buf, false), Err(Errno::ECONNRESET));
    assert!(srv.readiness().intersects(Events::HUP | Events::ERR));
    assert_eq!(srv.send(b"x"), Err(Errno::EPIPE));

    let (_l2, c, srv) = connected_pair(&s, v4(8015));
    c.send(b"never read").unwrap();
    drop(srv);
    assert_eq!(c.recv(&mut buf, false), Err(Errno::ECONNRESET));
}

#[test]
fn flow_control_fills_the_receive_window_and_resumes() {
    let (s, clock) = lo_stack();
    let (_l, c, srv) = connected_pair(&s, v4(8016));
    srv.set_options(|o| o.rcv_buf = 64 * 1024).unwrap();
    // The small buffer applies once the window drains; push enough to
    // fill receive window and send buffer.
    let data = pattern(4 << 20, 6);
    let mut sent = 0;
    while let Ok(n) = c.send(&data[sent..]) {
        sent += n;
    }
    assert!(sent < data.len(), "the sender blocked on the window");
    assert!(!c.readiness().intersects(Events::WRITABLE));
    assert!(srv.readable_bytes() > 0);
    // The persist timer may fill the last window unit (the window field
    // counts 128-byte units with scale 7), then nothing more arrives.
    s.advance(&clock, Duration::from_secs(1));
    let queued = srv.readable_bytes();
    assert!(queued <= 64 * 1024 + 128, "{queued}");
    s.advance(&clock, Duration::from_secs(10));
    assert_eq!(srv.readable_bytes(), queued, "nothing beyond the window");
    let woke = Arc::new(AtomicUsize::new(0));
    let w = woke.clone();
    c.register_waker(
        Events::WRITABLE,
        Arc::new(move |_| {
            w.fetch_add(1, Ordering::SeqCst);
        }),
    );
    // Read and keep writing until the whole stream is through.
    let mut all = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut idle = 0;
    while all.len() < data.len() {
        let mut moved = false;
        if sent < data.len() {
            if let Ok(n) = c.send(&data[sent..]) {
                sent += n;
                moved = true;
            }
        }
        while let Ok(n) = srv.recv(&mut buf, false) {
            all.extend_from_slice(&buf[..n]);
            moved = true;
        }
        if !moved {
            idle += 1;
            assert!(idle < 10_000, "stalled at {}", all.len());
            s.advance(&clock, MS);
        }
    }
    assert!(all == data, "stream intact");
    assert!(
        woke.load(Ordering::SeqCst) > 0,
        "the writer was woken when the window opened"
    );
}

#[test]
fn zero_window_probe_survives_lost_window_update() {
    let (s, clock, link, _l, c, srv) = lossy_pair(8017);
    srv.set_options(|o| o.rcv_buf = 16 * 1024).unwrap();
    let data = pattern(200 * 1024, 7);
    assert_eq!(c.send(&data), Ok(data.len()));
    s.advance(&clock, Duration::from_secs(1));
    // Lose the window update the read triggers.
    link.set_policy(|p| {
        if p.src_port == 8017 && p.payload_len == 0 {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = Vec::new();
    while let Ok(n) = srv.recv(&mut buf, false) {
        got.extend_from_slice(&buf[..n]);
    }
    link.set_policy(|_| Fate::Deliver);
    // The sender's persist timer probes and learns the window.
    s.advance(&clock, Duration::from_secs(10));
    while let Ok(n) = srv.recv(&mut buf, false) {
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.len() > 16 * 1024,
        "data moved after the probe ({} bytes)",
        got.len()
    );
    assert_eq!(&got[..], &data[..got.len()]);
}

#[test]
fn wakers_fire_outside_the_lock_and_may_reenter() {
    let (s, _) = lo_stack();
    let (l, c, srv) = connected_pair(&s, v4(8018));
    let srv = Arc::new(srv);
    let seen = Arc::new(AtomicUsize::new(0));
    let (srv2, seen2) = (srv.clone(), seen.clone());
    // The waker calls back into the stack: it must not deadlock.
    srv.register_waker(
        Events::READABLE,
        Arc::new(move |ev| {
            assert!(ev.intersects(Events::READABLE));
            seen2.store(srv2.readable_bytes(), Ordering::SeqCst);
        }),
    );
    c.send(b"wake up").unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 7);
    // Listener readiness on a new connection.
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let id = l.register_waker(
        Events::READABLE,
        Arc::new(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        }),
    );
    let c2 = TcpSocket::new(&s, Family::V4);
    let _ = c2.connect(v4(8018));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    l.unregister_waker(id);
    let c3 = TcpSocket::new(&s, Family::V4);
    let _ = c3.connect(v4(8018));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn errors_on_unconnected_and_listening_sockets() {
    let (s, _) = lo_stack();
    let t = TcpSocket::new(&s, Family::V4);
    let mut buf = [0u8; 4];
    assert_eq!(t.recv(&mut buf, false), Err(Errno::ENOTCONN));
    assert_eq!(t.send(b"x"), Err(Errno::EPIPE));
    assert_eq!(t.peer_addr(), Err(Errno::ENOTCONN));
    assert_eq!(t.shutdown(Shutdown::Both), Err(Errno::ENOTCONN));
    assert_eq!(t.accept().unwrap_err(), Errno::EINVAL);
    // A fresh socket polls writable and hung up, as on Linux.
    let fresh = TcpSocket::new(&s, Family::V4);
    assert_eq!(fresh.readiness(), Events::WRITABLE | Events::HUP);
    let l = TcpSocket::new(&s, Family::V4);
    l.listen(5).unwrap();
    assert!(l.local_addr().port() >= 32768, "listen autobinds");
    assert_eq!(l.recv(&mut buf, false), Err(Errno::ENOTCONN));
    assert_eq!(l.connect(v4(1)), Err(Errno::EISCONN));
    // Two listeners on one SO_REUSEADDR port: the second listen fails.
    let a = TcpSocket::new(&s, Family::V4);
    let b = TcpSocket::new(&s, Family::V4);
    for x in [&a, &b] {
        x.set_options(|o| o.reuseaddr = true).unwrap();
        x.bind(v4(8019)).unwrap();
    }
    a.listen(1).unwrap();
    assert_eq!(b.listen(1), Err(Errno::EADDRINUSE));
    // SO_REUSEPORT: both listen, connections spread.
    let p: Vec<TcpSocket> = (0..2)
        .map(|_| {
            let x = TcpSocket::new(&s, Family::V4);
            x.set_options(|o| o.reuseport = true).unwrap();
            x.bind(v4(8020)).unwrap();
            x.listen(64).unwrap();
            x
        })
        .collect();
    let cs: Vec<TcpSocket> = (0..16)
        .map(|_| {
            let c = TcpSocket::new(&s, Family::V4);
            let _ = c.connect(v4(8020));
            c
        })
        .collect();
    let counts: Vec<usize> = p
        .iter()
        .map(|x| std::iter::from_fn(|| x.accept().ok()).count())
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), 16);
    assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
    drop(cs);
}

#[test]
fn closing_a_listener_resets_queued_connections() {
    let (s, _) = lo_stack();
    let l = TcpSocket::new(&s, Family::V4);
    l.bind(v4(8021)).unwrap();
    l.listen(4).unwrap();
    let c = TcpSocket::new(&s, Family::V4);
    let _ = c.connect(v4(8021));
    assert_eq!(c.state(), TcpState::Established);
    drop(l);
    let mut buf = [0u8; 4];
    assert_eq!(c.recv(&mut buf, false), Err(Errno::ECONNRESET));
    let d = TcpSocket::new(&s, Family::V4);
    assert_eq!(d.connect(v4(8021)), Err(Errno::EINPROGRESS));
    assert_eq!(d.connect(v4(8021)), Err(Errno::ECONNREFUSED));
}

#[test]
fn peek_and_simultaneous_close() {
    let (s, clock) = lo_stack();
    let (_l, c, srv) = connected_pair(&s, v4(8022));
    c.send(b"peekaboo").unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(srv.recv(&mut buf, true), Ok(4));
    assert_eq!(srv.readable_bytes(), 8);
    let mut all = [0u8; 8];
    assert_eq!(srv.recv(&mut all, false), Ok(8));
    assert_eq!(&all, b"peekaboo");
    // Both shut down writing: FINs cross, both end in TIME_WAIT/CLOSING→TIME_WAIT.
    c.shutdown(Shutdown::Write).unwrap();
    srv.shutdown(Shutdown::Write).unwrap();
    assert_eq!(c.state(), TcpState::TimeWait);
    assert_eq!(
        srv.state(),
        TcpState::Closed,
        "passive side finishes LAST_ACK"
    );
    s.advance(&clock, Duration::from_secs(61));
    assert_eq!(c.state(), TcpState::Closed);
}

#[test]
fn info_reports_rtt_and_window() {
    let (s, clock, _link, _l, c, srv) = lossy_pair(8023);
    let data = pattern(100_000, 8);
    let got = transfer(&s, &clock, &c, &srv, &data, MS);
    assert_eq!(got, data);
    // Let the receiver's delayed ACK go.
    s.advance(&clock, 50 * MS);
    let i = c.info();
    assert_eq!(i.unacked, 0);
    assert!(i.snd_cwnd >= 10 * i.snd_mss);
    assert!(i.rto >= Duration::from_millis(200));
    assert!(i.segs_out > 60);
    assert_eq!(c.unacked_bytes(), 0);
}

#[test]
fn timer_thread_drives_timers_on_the_host_clock() {
    let s = netstack::Stack::with_loopback(Arc::new(netstack::MonotonicClock::new()));
    let timers = s.spawn_timer_thread().unwrap();
    let (_l, c, srv) = connected_pair(&s, v4(8030));
    let mut buf = [0u8; 8];
    c.send(b"x").unwrap();
    assert_eq!(srv.recv(&mut buf, false), Ok(1));
    std::thread::sleep(Duration::from_millis(100));
    c.send(b"a").unwrap();
    assert_eq!(srv.recv(&mut buf, false), Ok(1));
    // Nagle holds "b" until the server's delayed ACK, which only the
    // timer thread can send.
    let ready = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let r = ready.clone();
    srv.register_waker(
        Events::READABLE,
        Arc::new(move |_| {
            *r.0.lock().unwrap() = true;
            r.1.notify_all();
        }),
    );
    c.send(b"b").unwrap();
    let (m, cv) = &*ready;
    let g = cv
        .wait_timeout_while(m.lock().unwrap(), Duration::from_secs(10), |r| !*r)
        .unwrap()
        .0;
    assert!(*g, "the delayed ACK timer fired");
    drop(g);
    assert_eq!(srv.recv(&mut buf, false), Ok(1));
    assert_eq!(buf[0], b'b');
    drop(timers);
}
