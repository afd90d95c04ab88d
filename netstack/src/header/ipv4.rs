//! IPv4 (RFC 791). Options are skipped (their length is honoured, their
//! content ignored); fragments are rejected, not reassembled: the stack
//! never fragments what it sends (DF is set, links carry whole packets)
//! and a lone fragment cannot be delivered. Facts from upstream's
//! `pkg/tcpip/header/ipv4.go` and Linux's `net/ipv4/ip_input.c`.

use std::net::Ipv4Addr;

use super::{be16, checksum::checksum, ParseError};

/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A validated IPv4 packet: the header fits, the lengths agree, and it is
/// not a fragment. Bytes past the total length (link padding) are ignored.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Packet<'a> {
    bytes: &'a [u8],
    header_len: usize,
}

impl<'a> Ipv4Packet<'a> {
    /// Checks `bytes` as an IPv4 packet. The header checksum is checked
    /// separately ([`Ipv4Packet::header_checksum_ok`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        if bytes.len() < IPV4_HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        if bytes[0] >> 4 != 4 {
            return Err(ParseError::BadVersion);
        }
        let header_len = usize::from(bytes[0] & 0xf) * 4;
        if header_len < IPV4_HEADER_LEN {
            return Err(ParseError::BadHeaderLength);
        }
        let total = usize::from(be16(bytes, 2));
        if total < header_len {
            return Err(ParseError::BadLength);
        }
        if total > bytes.len() {
            return Err(ParseError::Truncated);
        }
        let frag = be16(bytes, 6);
        if frag & FLAG_MF != 0 || frag & FRAG_OFFSET_MASK != 0 {
            return Err(ParseError::Fragment);
        }
        Ok(Ipv4Packet {
            bytes: &bytes[..total],
            header_len,
        })
    }

    /// Whether the header checksum verifies.
    pub fn header_checksum_ok(&self) -> bool {
        checksum(&self.bytes[..self.header_len]) == 0
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Type of service / DSCP+ECN byte.
    pub fn tos(&self) -> u8 {
        self.bytes[1]
    }

    /// Identification field.
    pub fn id(&self) -> u16 {
        be16(self.bytes, 4)
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.bytes[8]
    }

    /// The transport protocol number.
    pub fn protocol(&self) -> u8 {
        self.bytes[9]
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::new(
            self.bytes[12],
            self.bytes[13],
            self.bytes[14],
            self.bytes[15],
        )
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::new(
            self.bytes[16],
            self.bytes[17],
            self.bytes[18],
            self.bytes[19],
        )
    }

    /// The bytes after the header, up to the total length.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.header_len..]
    }
}

/// The fields of an IPv4 header the stack sends (no options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Transport protocol.
    pub protocol: u8,
    /// Time to live.
    pub ttl: u8,
    /// Type of service.
    pub tos: u8,
    /// Identification.
    pub id: u16,
    /// Payload length (the transport segment).
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// Writes the 20-byte header, with DF set and its checksum, into
    /// `buf[..20]`. Fails if the total length does not fit 16 bits.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), ParseError> {
        let total =
            u16::try_from(self.payload_len + IPV4_HEADER_LEN).map_err(|_| ParseError::BadLength)?;
        let h = &mut buf[..IPV4_HEADER_LEN];
        h[0] = 0x45;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&self.id.to_be_bytes());
        h[6..8].copy_from_slice(&FLAG_DF.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[10..12].fill(0);
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let sum = checksum(h);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ICMP echo header as `ping 127.0.0.1` sends it, laid out by hand
    // from RFC 791: 45 00 0054 1c46 4000 40 01 ____ 7f000001 7f000001.
    fn golden() -> Vec<u8> {
        let mut v = vec![
            0x45, 0x00, 0x00, 0x54, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 127, 0, 0, 1,
            127, 0, 0, 1,
        ];
        let s = checksum(&v);
        v[10..12].copy_from_slice(&s.to_be_bytes());
        v.resize(0x54, 0xab);
        v
    }

    #[test]
    fn golden_checksum_value() {
        let g = golden();
        // By hand: 4500+0054+1c46+4000+4001+7f00+0001+7f00+0001 = 1df9d,
        // folded df9e, complemented 2061.
        assert_eq!(&g[10..12], &[0x20, 0x61]);
    }

    #[test]
    fn parse_and_emit_round_trip() {
        let g = golden();
        let p = Ipv4Packet::parse(&g).unwrap();
        assert!(p.header_checksum_ok());
        assert_eq!(p.src(), Ipv4Addr::LOCALHOST);
        assert_eq!(p.protocol(), 1);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.payload().len(), 0x54 - 20);
        let r = Ipv4Repr {
            src: p.src(),
            dst: p.dst(),
            protocol: 1,
            ttl: 64,
            tos: 0,
            id: 0x1c46,
            payload_len: 0x54 - 20,
        };
        let mut out = [0u8; 20];
        r.emit(&mut out).unwrap();
        assert_eq!(&out[..], &g[..20]);
    }

    #[test]
    fn malformed() {
        let g = golden();
        for n in 0..20 {
            assert_eq!(
                Ipv4Packet::parse(&g[..n]).unwrap_err(),
                ParseError::Truncated
            );
        }
        // Total length past the buffer.
        assert_eq!(
            Ipv4Packet::parse(&g[..40]).unwrap_err(),
            ParseError::Truncated
        );
        let mut b = g.clone();
        b[0] = 0x65;
        assert_eq!(Ipv4Packet::parse(&b).unwrap_err(), ParseError::BadVersion);
        let mut b = g.clone();
        b[0] = 0x44;
        assert_eq!(
            Ipv4Packet::parse(&b).unwrap_err(),
            ParseError::BadHeaderLength
        );
        let mut b = g.clone();
        b[0] = 0x4f; // 60-byte header
        b[2..4].copy_from_slice(&40u16.to_be_bytes()); // total 40 < 60
        assert_eq!(Ipv4Packet::parse(&b).unwrap_err(), ParseError::BadLength);
        let mut b = g.clone();
        b[6] = 0x20; // MF
        assert_eq!(Ipv4Packet::parse(&b).unwrap_err(), ParseError::Fragment);
        let mut b = g.clone();
        b[7] = 0x01; // offset 8
        assert_eq!(Ipv4Packet::parse(&b).unwrap_err(), ParseError::Fragment);
        let mut b = g.clone();
        b[15] ^= 1;
        assert!(!Ipv4Packet::parse(&b).unwrap().header_checksum_ok());
        // Oversized payload for emit.
        let r = Ipv4Repr {
            src: Ipv4Addr::LOCALHOST,
            dst: Ipv4Addr::LOCALHOST,
            protocol: 6,
            ttl: 64,
            tos: 0,
            id: 0,
            payload_len: 65536,
        };
        assert_eq!(r.emit(&mut [0u8; 20]).unwrap_err(), ParseError::BadLength);
    }

    #[test]
    fn options_are_skipped_and_padding_ignored() {
        let mut b = vec![
            0x46, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        b.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
        b.extend_from_slice(&[9, 9, 9, 9]);
        b.extend_from_slice(&[0xee; 6]); // link padding
        let s = checksum(&b[..24]);
        b[10..12].copy_from_slice(&s.to_be_bytes());
        let p = Ipv4Packet::parse(&b).unwrap();
        assert!(p.header_checksum_ok());
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload(), &[9, 9, 9, 9]);
    }
}
