//! IPv6 (RFC 8200). Extension headers (hop-by-hop, routing, destination
//! options, AH) are walked and skipped; a fragment header rejects the
//! packet (no reassembly, as for IPv4). Facts from upstream's
//! `pkg/tcpip/header/ipv6.go`, `ipv6_extension_headers.go`.

use std::net::Ipv6Addr;

use super::{be16, ParseError};

/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;

const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AUTH: u8 = 51;
const DEST_OPTS: u8 = 60;

/// A validated IPv6 packet with its extension headers skipped.
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Packet<'a> {
    bytes: &'a [u8],
    /// Offset of the upper-layer payload (after extension headers).
    payload_at: usize,
    /// The upper-layer protocol (the last Next Header).
    protocol: u8,
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

impl<'a> Ipv6Packet<'a> {
    /// Checks `bytes` as an IPv6 packet and walks its extension headers.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        if bytes.len() < IPV6_HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        if bytes[0] >> 4 != 6 {
            return Err(ParseError::BadVersion);
        }
        let payload_len = usize::from(be16(bytes, 4));
        let end = IPV6_HEADER_LEN + payload_len;
        if end > bytes.len() {
            return Err(ParseError::Truncated);
        }
        let bytes = &bytes[..end];
        let mut next = bytes[6];
        let mut at = IPV6_HEADER_LEN;
        // Each extension header is at least 8 bytes, so this terminates
        // within payload_len / 8 steps.
        loop {
            let len = match next {
                HOP_BY_HOP | ROUTING | DEST_OPTS => {
                    let h = bytes.get(at..at + 2).ok_or(ParseError::BadOption)?;
                    (usize::from(h[1]) + 1) * 8
                }
                AUTH => {
                    let h = bytes.get(at..at + 2).ok_or(ParseError::BadOption)?;
                    (usize::from(h[1]) + 2) * 4
                }
                FRAGMENT => return Err(ParseError::Fragment),
                _ => break,
            };
            if at + len > bytes.len() {
                return Err(ParseError::BadOption);
            }
            // Hop-by-hop is only legal first (RFC 8200 §4.3).
            if next == HOP_BY_HOP && at != IPV6_HEADER_LEN {
                return Err(ParseError::BadOption);
            }
            next = bytes[at];
            at += len;
        }
        Ok(Ipv6Packet {
            bytes,
            payload_at: at,
            protocol: next,
        })
    }

    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        (self.bytes[0] << 4) | (self.bytes[1] >> 4)
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.bytes[7]
    }

    /// The upper-layer protocol after any extension headers (59 = none).
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        addr(&self.bytes[8..24])
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        addr(&self.bytes[24..40])
    }

    /// The upper-layer payload.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.payload_at..]
    }
}

/// The fields of an IPv6 header the stack sends (no extension headers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next header (the transport protocol).
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Payload length.
    pub payload_len: usize,
}

impl Ipv6Repr {
    /// Writes the 40-byte header into `buf[..40]`. Fails if the payload
    /// length does not fit 16 bits (no jumbograms).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), ParseError> {
        let len = u16::try_from(self.payload_len).map_err(|_| ParseError::BadLength)?;
        let h = &mut buf[..IPV6_HEADER_LEN];
        h[0] = 0x60 | (self.traffic_class >> 4);
        h[1] = self.traffic_class << 4;
        h[2] = 0;
        h[3] = 0;
        h[4..6].copy_from_slice(&len.to_be_bytes());
        h[6] = self.next_header;
        h[7] = self.hop_limit;
        h[8..24].copy_from_slice(&self.src.octets());
        h[24..40].copy_from_slice(&self.dst.octets());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x60, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.push(next);
        v.push(64);
        v.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn round_trip() {
        let g = golden(17, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let p = Ipv6Packet::parse(&g).unwrap();
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.src(), Ipv6Addr::LOCALHOST);
        assert_eq!(p.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut out = [0u8; 40];
        Ipv6Repr {
            src: p.src(),
            dst: p.dst(),
            next_header: 17,
            hop_limit: 64,
            traffic_class: 0,
            payload_len: 8,
        }
        .emit(&mut out)
        .unwrap();
        assert_eq!(&out[..], &g[..40]);
    }

    #[test]
    fn extension_headers_skipped() {
        // Hop-by-hop (8 bytes: next=60, len=0, PadN) then destination
        // options (16 bytes: next=6, len=1) then 4 bytes of TCP-ish payload.
        let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[6, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        let g = golden(0, &ext);
        let p = Ipv6Packet::parse(&g).unwrap();
        assert_eq!(p.protocol(), 6);
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn malformed() {
        let g = golden(17, &[0; 8]);
        for n in 0..40 {
            assert_eq!(
                Ipv6Packet::parse(&g[..n]).unwrap_err(),
                ParseError::Truncated
            );
        }
        assert_eq!(
            Ipv6Packet::parse(&g[..47]).unwrap_err(),
            ParseError::Truncated
        );
        let mut b = g.clone();
        b[0] = 0x40;
        assert_eq!(Ipv6Packet::parse(&b).unwrap_err(), ParseError::BadVersion);
        // Fragment header.
        let f = golden(44, &[17, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(Ipv6Packet::parse(&f).unwrap_err(), ParseError::Fragment);
        // Extension header longer than the payload.
        let e = golden(60, &[17, 4, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Ipv6Packet::parse(&e).unwrap_err(), ParseError::BadOption);
        // Extension header cut before its length byte.
        let e = golden(60, &[17]);
        assert_eq!(Ipv6Packet::parse(&e).unwrap_err(), ParseError::BadOption);
        // Hop-by-hop not first.
        let e = golden(60, &[0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Ipv6Packet::parse(&e).unwrap_err(), ParseError::BadOption);
        // Oversized payload for emit.
        let r = Ipv6Repr {
            src: Ipv6Addr::LOCALHOST,
            dst: Ipv6Addr::LOCALHOST,
            next_header: 6,
            hop_limit: 64,
            traffic_class: 0,
            payload_len: 70000,
        };
        assert_eq!(r.emit(&mut [0u8; 40]).unwrap_err(), ParseError::BadLength);
    }
}
