//! `/proc/net/{dev,if_inet6,tcp,tcp6,udp,udp6}` for the sandbox's netstack,
//! in Linux's layouts (`net/core/net-procfs.c`, `net/ipv6/addrconf.c`,
//! `net/ipv4/tcp_ipv4.c`, `net/ipv6/tcp_ipv6.c`, `net/ipv4/udp.c`,
//! `net/ipv6/datagram.c`).
//!
//! Socket lines stop after the inode column (the fields programs such as
//! `ss`, `netstat` and psutil read); the timer, refcount, pointer and
//! congestion columns Linux appends are not kept by the netstack. The uid
//! column is 0: sockets do not record their creator yet.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use netstack::{Family, InterfaceInfo, SocketEntry};

/// `/proc/net/dev`.
pub fn dev(ifs: &[InterfaceInfo]) -> String {
    let mut s = String::from(
        "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
    );
    for i in ifs {
        let c = i.counters;
        let _ = writeln!(
            s,
            "{:>6}: {:7} {:7} {:4} {:4} {:4} {:5} {:10} {:9} {:8} {:7} {:4} {:4} {:4} {:5} {:7} {:10}",
            i.name, c.rx_bytes, c.rx_packets, 0, 0, 0, 0, 0, 0, c.tx_bytes, c.tx_packets, 0, 0, 0, 0,
            0, 0
        );
    }
    s
}

/// `/proc/net/if_inet6`: each IPv6 address, its interface, prefix, scope
/// (IFA_HOST for loopback addresses, else global) and flags (permanent).
pub fn if_inet6(ifs: &[InterfaceInfo]) -> String {
    let mut s = String::new();
    for i in ifs {
        for a in &i.addrs {
            let IpAddr::V6(v6) = a.addr else { continue };
            let hex: String = v6.octets().iter().map(|b| format!("{b:02x}")).collect();
            let scope = if v6.is_loopback() { 0x10 } else { 0 };
            let _ = writeln!(
                s,
                "{hex} {:02x} {:02x} {scope:02x} {:02x} {:>8}",
                i.index, a.prefix_len, 0x80, i.name
            );
        }
    }
    s
}

/// An address as Linux prints it: each 32-bit word of the network-order
/// address in host (little-endian) order, in hex.
fn addr_hex(a: SocketAddr, v6: bool) -> String {
    let octets: Vec<u8> = match (a.ip(), v6) {
        (IpAddr::V4(v), false) => v.octets().to_vec(),
        (IpAddr::V6(v), true) => v.octets().to_vec(),
        (IpAddr::V4(v), true) => v.to_ipv6_mapped().octets().to_vec(),
        (IpAddr::V6(v), false) => v.to_ipv4_mapped().map_or([0; 4], |x| x.octets()).to_vec(),
    };
    let words: String = octets
        .chunks(4)
        .map(|w| format!("{:08X}", u32::from_le_bytes(w.try_into().expect("4 bytes"))))
        .collect();
    format!("{words}:{:04X}", a.port())
}

/// Linux's TCP_LISTEN state number.
const LISTEN: u8 = 10;

/// `/proc/net/tcp` (`tcp`, not `v6`), `tcp6`, `udp` or `udp6`: the
/// sockets of that protocol and family, in Linux's columns (inode 0 for a
/// connection no socket holds any more).
pub fn sockets(entries: &[SocketEntry], tcp: bool, v6: bool) -> String {
    let family = if v6 { Family::V6 } else { Family::V4 };
    let (head, width, sl_width) = if tcp {
        (
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
            149,
            4,
        )
    } else {
        (
            "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops",
            127,
            5,
        )
    };
    let head = if v6 {
        // The IPv6 files have a fixed header, not padded.
        if tcp {
            "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode".to_string()
        } else {
            "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops".to_string()
        }
    } else {
        format!("{head:<width$}")
    };
    let mut s = head + "\n";
    let mine = entries
        .iter()
        .filter(|e| e.tcp == tcp && e.family == family);
    for (n, e) in mine.enumerate() {
        let inode = if e.open { e.id } else { 0 };
        let mut line = format!(
            "{n:sl_width$}: {} {} {:02X} {:08X}:{:08X} 00:00000000 00000000 {:5} {:8} {inode}",
            addr_hex(e.local, v6),
            addr_hex(e.remote, v6),
            e.state,
            e.tx_queue,
            e.rx_queue,
            0,
            0,
        );
        // The columns after the inode (Linux's get_tcp4_sock,
        // get_timewait4_sock and udp4_format_sock): a reference count, the
        // kernel's socket pointer (printed as %pK, zeros here as for a
        // reader without kernel-pointer rights), then for a TCP socket the
        // RTO in clock ticks (USER_HZ 100), the delayed-ACK timeout and
        // quick-ack/ping-pong bits (not modelled: 0, what Linux shows
        // until a delayed ACK is scheduled), the congestion window in
        // segments and the slow-start threshold (-1 in the initial slow
        // start; a listener shows its fast-open queue length, 0); for UDP,
        // drops (none are counted).
        let ticks = |d: std::time::Duration| d.as_millis() / 10;
        if !tcp {
            line += " 2 0000000000000000 0";
        } else if !e.open {
            line += " 1 0000000000000000";
        } else if e.state == LISTEN {
            let _ = write!(
                line,
                " 1 0000000000000000 {} 0 0 {} 0",
                ticks(e.rto),
                e.cwnd_segments
            );
        } else {
            let ssthresh = e.ssthresh_segments.map_or(-1, i64::from);
            let _ = write!(
                line,
                " 1 0000000000000000 {} 0 0 {} {ssthresh}",
                ticks(e.rto),
                e.cwnd_segments
            );
        }
        if v6 {
            s += &line;
        } else {
            let _ = write!(s, "{line:<width$}");
        }
        s.push('\n');
    }
    s
}

/// The loopback interface as the netstack describes it (after a little
/// traffic), for the tests of the files and ioctls built from it.
#[cfg(test)]
pub(crate) fn test_loopback() -> InterfaceInfo {
    InterfaceInfo {
        index: 1,
        name: "lo".into(),
        mtu: 65536,
        loopback: true,
        addrs: vec![
            netstack::InterfaceAddr {
                addr: "127.0.0.1".parse().unwrap(),
                prefix_len: 8,
            },
            netstack::InterfaceAddr {
                addr: "::1".parse().unwrap(),
                prefix_len: 128,
            },
        ],
        counters: netstack::NicCounters {
            rx_packets: 3,
            rx_bytes: 180,
            tx_packets: 3,
            tx_bytes: 180,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_and_if_inet6_golden() {
        let d = dev(&[test_loopback()]);
        assert_eq!(
            d.lines().nth(2).unwrap(),
            "    lo:     180       3    0    0    0     0          0         0      180       3    0    0    0     0       0          0"
        );
        assert_eq!(
            if_inet6(&[test_loopback()]),
            "00000000000000000000000000000001 01 80 10 80       lo\n"
        );
    }

    #[test]
    fn tcp_lines_golden() {
        let listener = SocketEntry {
            tcp: true,
            family: Family::V4,
            local: "127.0.0.1:8080".parse().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
            state: 10,
            tx_queue: 0,
            rx_queue: 0,
            id: 42,
            open: true,
            rto: std::time::Duration::from_secs(1),
            cwnd_segments: 10,
            ssthresh_segments: None,
        };
        let udp6 = SocketEntry {
            tcp: false,
            family: Family::V6,
            local: "[::1]:53".parse().unwrap(),
            remote: "[::]:0".parse().unwrap(),
            state: 7,
            tx_queue: 0,
            rx_queue: 0,
            id: 43,
            open: true,
            rto: std::time::Duration::ZERO,
            cwnd_segments: 0,
            ssthresh_segments: None,
        };
        let t = sockets(&[listener, udp6], true, false);
        let line = t.lines().nth(1).unwrap();
        assert_eq!(line.len(), 149);
        assert_eq!(
            line.trim_end(),
            "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 42 1 0000000000000000 100 0 0 10 0"
        );
        assert_eq!(t.lines().count(), 2, "the UDP socket is not in tcp");
        let u = sockets(&[listener, udp6], false, true);
        assert_eq!(
            u.lines().nth(1).unwrap(),
            "    0: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 43 2 0000000000000000 0"
        );
    }
}
