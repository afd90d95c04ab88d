//! Route netlink (NETLINK_ROUTE) answers about the stack's interfaces,
//! the messages glibc's `getifaddrs`/`if_nameindex` and iproute2's
//! `ip link`/`ip addr` read (formats from Linux's
//! `include/uapi/linux/{netlink,rtnetlink,if_link,if_addr}.h`; upstream's
//! `pkg/sentry/socket/netlink/route`). The Sentry's netlink socket hands
//! [`answer`] the bytes the application sent.
//!
//! Requests answered: RTM_GETLINK and RTM_GETADDR (dumps, or one link by
//! index or name). Each request's answer is one datagram (a dump's
//! messages and its NLMSG_DONE), as Linux's dump fills one skb. Changes
//! (RTM_NEW*/RTM_DEL*) and other requests get an NLMSG_ERROR of
//! EOPNOTSUPP; a malformed header ends processing of the buffer, as
//! `netlink_rcv_skb` does.

use std::net::IpAddr;

use crate::stack::InterfaceInfo;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const EINVAL: i32 = 22;
const ENODEV: i32 = 19;
const EOPNOTSUPP: i32 = 95;

/// `NLMSG_HDRLEN`.
pub const NLMSG_HDRLEN: usize = 16;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Types below this are control messages, not requests.
const NLMSG_MIN_TYPE: u16 = 0x10;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_MULTI: u16 = 0x2;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;

const IFLA_ADDRESS: u16 = 1;
const IFLA_BROADCAST: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_QDISC: u16 = 6;
const IFLA_STATS: u16 = 7;
const IFLA_TXQLEN: u16 = 13;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKMODE: u16 = 17;
const IFLA_STATS64: u16 = 23;
const IFLA_GROUP: u16 = 27;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_LABEL: u16 = 3;
const IFA_CACHEINFO: u16 = 6;
const IFA_FLAGS: u16 = 8;

const ARPHRD_LOOPBACK: u16 = 772;
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_RUNNING: u32 = 0x40;
const IFF_LOWER_UP: u32 = 0x10000;
const IFA_F_PERMANENT: u32 = 0x80;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_HOST: u8 = 254;
/// Linux's default `tx_queue_len`.
const TXQLEN: u32 = 1000;

fn push_attr(m: &mut Vec<u8>, ty: u16, data: &[u8]) {
    m.extend_from_slice(&((4 + data.len()) as u16).to_le_bytes());
    m.extend_from_slice(&ty.to_le_bytes());
    m.extend_from_slice(data);
    while !m.len().is_multiple_of(4) {
        m.push(0);
    }
}

/// One message: header (length filled in), then `body`.
fn message(ty: u16, flags: u16, seq: u32, port: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDRLEN + body.len());
    m.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_le_bytes());
    m.extend_from_slice(&ty.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&port.to_le_bytes());
    m.extend_from_slice(body);
    m
}

/// RTM_NEWLINK's body for an interface.
fn link_body(i: &InterfaceInfo) -> Vec<u8> {
    let mut b = Vec::new();
    b.push(0); // AF_UNSPEC
    b.push(0);
    let ty: u16 = if i.loopback { ARPHRD_LOOPBACK } else { 1 };
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&(i.index as i32).to_le_bytes());
    let mut flags = IFF_UP | IFF_RUNNING | IFF_LOWER_UP;
    if i.loopback {
        flags |= IFF_LOOPBACK;
    }
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // ifi_change
    let mut name = i.name.as_bytes().to_vec();
    name.push(0);
    push_attr(&mut b, IFLA_IFNAME, &name);
    push_attr(&mut b, IFLA_TXQLEN, &TXQLEN.to_le_bytes());
    // IF_OPER_UNKNOWN: loopback reports no carrier state, as Linux's lo.
    push_attr(&mut b, IFLA_OPERSTATE, &[0]);
    push_attr(&mut b, IFLA_LINKMODE, &[0]);
    push_attr(&mut b, IFLA_MTU, &(i.mtu as u32).to_le_bytes());
    push_attr(&mut b, IFLA_GROUP, &0u32.to_le_bytes());
    // No queueing discipline: packets go straight to the link.
    push_attr(&mut b, IFLA_QDISC, b"noqueue\0");
    push_attr(&mut b, IFLA_ADDRESS, &[0; 6]);
    push_attr(&mut b, IFLA_BROADCAST, &[0; 6]);
    let c = i.counters;
    // struct rtnl_link_stats64: rx_packets, tx_packets, rx_bytes,
    // tx_bytes, then errors and drops (none), 24 fields in all.
    let mut s64 = vec![0u8; 24 * 8];
    for (k, v) in [c.rx_packets, c.tx_packets, c.rx_bytes, c.tx_bytes]
        .into_iter()
        .enumerate()
    {
        s64[k * 8..k * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    push_attr(&mut b, IFLA_STATS64, &s64);
    let mut s32 = vec![0u8; 24 * 4];
    for (k, v) in [c.rx_packets, c.tx_packets, c.rx_bytes, c.tx_bytes]
        .into_iter()
        .enumerate()
    {
        s32[k * 4..k * 4 + 4].copy_from_slice(&(v as u32).to_le_bytes());
    }
    push_attr(&mut b, IFLA_STATS, &s32);
    b
}

/// RTM_NEWADDR bodies for an interface's addresses of `family` (0: all).
fn addr_bodies(i: &InterfaceInfo, family: u8) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for a in &i.addrs {
        let (fam, bytes) = match a.addr {
            IpAddr::V4(v) => (AF_INET, v.octets().to_vec()),
            IpAddr::V6(v) => (AF_INET6, v.octets().to_vec()),
        };
        if family != 0 && family != fam {
            continue;
        }
        let scope = if a.addr.is_loopback() {
            RT_SCOPE_HOST
        } else {
            RT_SCOPE_UNIVERSE
        };
        let flags = IFA_F_PERMANENT;
        let mut b = vec![fam, a.prefix_len, flags as u8, scope];
        b.extend_from_slice(&i.index.to_le_bytes());
        push_attr(&mut b, IFA_ADDRESS, &bytes);
        if fam == AF_INET {
            push_attr(&mut b, IFA_LOCAL, &bytes);
            let mut label = i.name.as_bytes().to_vec();
            label.push(0);
            push_attr(&mut b, IFA_LABEL, &label);
        }
        push_attr(&mut b, IFA_FLAGS, &flags.to_le_bytes());
        // struct ifa_cacheinfo: preferred and valid lifetimes forever.
        let mut ci = Vec::new();
        ci.extend_from_slice(&u32::MAX.to_le_bytes());
        ci.extend_from_slice(&u32::MAX.to_le_bytes());
        ci.extend_from_slice(&[0; 8]);
        push_attr(&mut b, IFA_CACHEINFO, &ci);
        out.push(b);
    }
    out
}

fn error_message(err: i32, request: &[u8], port: u32) -> Vec<u8> {
    let seq = u32::from_le_bytes(request[8..12].try_into().expect("4 bytes"));
    let mut body = err.to_le_bytes().to_vec();
    // The request's header follows the error (its payload only without
    // NETLINK_CAP_ACK for errors; the header alone is enough for both
    // iproute2 and glibc).
    let mut hdr = request[..NLMSG_HDRLEN].to_vec();
    hdr[0..4].copy_from_slice(&(NLMSG_HDRLEN as u32).to_le_bytes());
    body.extend_from_slice(&hdr);
    message(NLMSG_ERROR, 0, seq, port, &body)
}

/// Finds the attribute `ty` among `attrs`.
fn find_attr(mut attrs: &[u8], ty: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_le_bytes([attrs[0], attrs[1]]));
        let t = u16::from_le_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if t == ty {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

/// The answers to a buffer of requests from port `port`: one datagram per
/// request that has an answer. Stops at the first malformed header.
pub fn answer(ifs: &[InterfaceInfo], mut buf: &[u8], port: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        let req = &buf[..len];
        let ty = u16::from_le_bytes([req[4], req[5]]);
        let flags = u16::from_le_bytes([req[6], req[7]]);
        let seq = u32::from_le_bytes(req[8..12].try_into().expect("4 bytes"));
        let payload = &req[NLMSG_HDRLEN..];
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        if flags & NLM_F_REQUEST == 0 || ty < NLMSG_MIN_TYPE {
            // Not a request: nothing to do (an ack if asked).
            if flags & NLM_F_ACK != 0 {
                out.push(error_message(0, req, port));
            }
            continue;
        }
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let family = payload.first().copied().unwrap_or(0);
        let result: Result<Vec<u8>, i32> = match (ty, dump) {
            (RTM_GETLINK, true) => {
                let mut d = Vec::new();
                for i in ifs {
                    d.extend(message(RTM_NEWLINK, NLM_F_MULTI, seq, port, &link_body(i)));
                }
                d.extend(message(
                    NLMSG_DONE,
                    NLM_F_MULTI,
                    seq,
                    port,
                    &0i32.to_le_bytes(),
                ));
                Ok(d)
            }
            (RTM_GETADDR, true) => {
                let mut d = Vec::new();
                for i in ifs {
                    for b in addr_bodies(i, family) {
                        d.extend(message(RTM_NEWADDR, NLM_F_MULTI, seq, port, &b));
                    }
                }
                d.extend(message(
                    NLMSG_DONE,
                    NLM_F_MULTI,
                    seq,
                    port,
                    &0i32.to_le_bytes(),
                ));
                Ok(d)
            }
            (RTM_GETLINK, false) => {
                // struct ifinfomsg (16 bytes), then attributes.
                if payload.len() < 16 {
                    Err(-EINVAL)
                } else {
                    let index = i32::from_le_bytes(payload[4..8].try_into().expect("4 bytes"));
                    let name = find_attr(&payload[16..], IFLA_IFNAME)
                        .map(|n| &n[..n.iter().position(|&c| c == 0).unwrap_or(n.len())]);
                    ifs.iter()
                        .find(|i| {
                            (index > 0 && i.index as i32 == index)
                                || (index <= 0 && name == Some(i.name.as_bytes()))
                        })
                        .map(|i| message(RTM_NEWLINK, 0, seq, port, &link_body(i)))
                        .ok_or(-ENODEV)
                }
            }
            _ => Err(-EOPNOTSUPP),
        };
        match result {
            Ok(d) => {
                out.push(d);
                if flags & NLM_F_ACK != 0 && !dump {
                    out.push(error_message(0, req, port));
                }
            }
            Err(e) => out.push(error_message(e, req, port)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{InterfaceAddr, NicCounters};

    fn lo() -> Vec<InterfaceInfo> {
        vec![InterfaceInfo {
            index: 1,
            name: "lo".into(),
            mtu: 65536,
            loopback: true,
            addrs: vec![
                InterfaceAddr {
                    addr: "127.0.0.1".parse().unwrap(),
                    prefix_len: 8,
                },
                InterfaceAddr {
                    addr: "::1".parse().unwrap(),
                    prefix_len: 128,
                },
            ],
            counters: NicCounters::default(),
        }]
    }

    fn request(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        message(ty, flags | NLM_F_REQUEST, seq, 0, body)
    }

    #[test]
    fn address_dump_golden() {
        let req = request(RTM_GETADDR, NLM_F_DUMP, 7, &[AF_INET]);
        let out = answer(&lo(), &req, 42);
        assert_eq!(out.len(), 1);
        let d = &out[0];
        // RTM_NEWADDR for 127.0.0.1/8, then NLMSG_DONE.
        let mut want = vec![
            76, 0, 0, 0, 20, 0, 2, 0, 7, 0, 0, 0, 42, 0, 0, 0, // nlmsghdr
            2, 8, 0x80, 254, 1, 0, 0, 0, // ifaddrmsg
            8, 0, 1, 0, 127, 0, 0, 1, // IFA_ADDRESS
            8, 0, 2, 0, 127, 0, 0, 1, // IFA_LOCAL
            7, 0, 3, 0, b'l', b'o', 0, 0, // IFA_LABEL
            8, 0, 8, 0, 0x80, 0, 0, 0, // IFA_FLAGS
            20, 0, 6, 0, // IFA_CACHEINFO
        ];
        want.extend_from_slice(&[0xff; 8]);
        want.extend_from_slice(&[0; 8]);
        want.extend_from_slice(&[20, 0, 0, 0, 3, 0, 2, 0, 7, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d, &want);
    }

    #[test]
    fn link_lookup_and_errors() {
        let mut ifi = vec![0u8; 16];
        ifi[4] = 1;
        let out = answer(&lo(), &request(RTM_GETLINK, NLM_F_ACK, 1, &ifi), 5);
        assert_eq!(out.len(), 2, "the link, then the ack");
        assert_eq!(u16::from_le_bytes([out[0][4], out[0][5]]), RTM_NEWLINK);
        assert_eq!(&out[1][16..20], &0i32.to_le_bytes());
        let mut by_name = vec![0u8; 16];
        push_attr(&mut by_name, IFLA_IFNAME, b"lo\0");
        assert_eq!(
            answer(&lo(), &request(RTM_GETLINK, 0, 2, &by_name), 5).len(),
            1
        );
        ifi[4] = 9;
        let out = answer(&lo(), &request(RTM_GETLINK, 0, 3, &ifi), 5);
        assert_eq!(&out[0][16..20], &(-ENODEV).to_le_bytes());
        // A change is refused, not faked.
        let out = answer(&lo(), &request(RTM_NEWADDR, 0, 4, &[0; 8]), 5);
        assert_eq!(&out[0][16..20], &(-EOPNOTSUPP).to_le_bytes());
    }

    #[test]
    fn malformed_requests_end_processing_quietly() {
        let good = request(RTM_GETLINK, NLM_F_DUMP, 1, &[0]);
        for bad in [
            vec![],
            vec![0u8; 15],
            // Length below the header's.
            {
                let mut b = good.clone();
                b[0] = 4;
                b
            },
            // Length past the buffer.
            {
                let mut b = good.clone();
                b[0] = 200;
                b
            },
        ] {
            assert!(answer(&lo(), &bad, 1).is_empty());
        }
        // A short ifinfomsg on a single-link request is EINVAL.
        let out = answer(&lo(), &request(RTM_GETLINK, 0, 1, &[0; 4]), 1);
        assert_eq!(&out[0][16..20], &(-EINVAL).to_le_bytes());
        // Attributes with bad lengths are ignored, never read past.
        let mut ifi = vec![0u8; 16];
        ifi.extend_from_slice(&[200, 0, 3, 0]);
        let out = answer(&lo(), &request(RTM_GETLINK, 0, 1, &ifi), 1);
        assert_eq!(&out[0][16..20], &(-ENODEV).to_le_bytes());
    }
}
