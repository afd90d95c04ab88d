//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) echo messages, the only ICMP
//! the stack speaks so far. Both share one layout: type, code, checksum,
//! identifier, sequence, data. ICMPv4's checksum covers the message;
//! ICMPv6's also covers the IPv6 pseudo-header.

use super::{be16, ParseError};

/// Length of an echo header.
pub const ICMP_ECHO_HEADER_LEN: usize = 8;
/// ICMPv4 echo request type.
pub const ICMPV4_ECHO_REQUEST: u8 = 8;
/// ICMPv4 echo reply type.
pub const ICMPV4_ECHO_REPLY: u8 = 0;
/// ICMPv6 echo request type.
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
/// ICMPv6 echo reply type.
pub const ICMPV6_ECHO_REPLY: u8 = 129;

/// A validated ICMP echo request or reply (v4 or v6).
#[derive(Clone, Copy, Debug)]
pub struct IcmpEcho<'a> {
    bytes: &'a [u8],
}

impl<'a> IcmpEcho<'a> {
    /// Checks `bytes` as an ICMP message of one of the echo types; other
    /// types are `Unsupported`. Checksums are checked by the caller.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        if bytes.len() < ICMP_ECHO_HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        match bytes[0] {
            ICMPV4_ECHO_REQUEST | ICMPV4_ECHO_REPLY | ICMPV6_ECHO_REQUEST | ICMPV6_ECHO_REPLY => {}
            _ => return Err(ParseError::Unsupported),
        }
        Ok(IcmpEcho { bytes })
    }

    /// Message type.
    pub fn icmp_type(&self) -> u8 {
        self.bytes[0]
    }

    /// Code (0 for echo).
    pub fn code(&self) -> u8 {
        self.bytes[1]
    }

    /// Identifier.
    pub fn ident(&self) -> u16 {
        be16(self.bytes, 4)
    }

    /// Sequence number.
    pub fn seq(&self) -> u16 {
        be16(self.bytes, 6)
    }

    /// Echo data.
    pub fn data(&self) -> &'a [u8] {
        &self.bytes[ICMP_ECHO_HEADER_LEN..]
    }
}

/// An echo message to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpEchoRepr {
    /// Message type (one of the echo constants).
    pub icmp_type: u8,
    /// Identifier.
    pub ident: u16,
    /// Sequence number.
    pub seq: u16,
}

impl IcmpEchoRepr {
    /// Writes the 8-byte header with a zero checksum into `buf[..8]`; the
    /// caller fills the checksum once the data follows it (ICMPv4:
    /// [`super::checksum`] of the message; ICMPv6:
    /// [`super::fill_transport_checksum`]).
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0] = self.icmp_type;
        buf[1] = 0;
        buf[2..4].fill(0);
        buf[4..6].copy_from_slice(&self.ident.to_be_bytes());
        buf[6..8].copy_from_slice(&self.seq.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use super::super::{checksum, fill_transport_checksum, proto, transport_checksum_ok};
    use super::*;

    #[test]
    fn v4_golden() {
        // Echo request id 0x1234 seq 1, data "abcd": by hand the words
        // 0800+0000+1234+0001+6162+6364 = defb, checksum 2104.
        let mut m = vec![0u8; 8];
        IcmpEchoRepr {
            icmp_type: ICMPV4_ECHO_REQUEST,
            ident: 0x1234,
            seq: 1,
        }
        .emit(&mut m);
        m.extend_from_slice(b"abcd");
        let s = checksum(&m);
        m[2..4].copy_from_slice(&s.to_be_bytes());
        assert_eq!(
            m,
            [8, 0, 0x21, 0x04, 0x12, 0x34, 0, 1, b'a', b'b', b'c', b'd']
        );
        assert_eq!(checksum(&m), 0);
        let e = IcmpEcho::parse(&m).unwrap();
        assert_eq!(
            (e.icmp_type(), e.code(), e.ident(), e.seq()),
            (8, 0, 0x1234, 1)
        );
        assert_eq!(e.data(), b"abcd");
    }

    #[test]
    fn v6_checksum_covers_pseudo_header() {
        let a = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let mut m = vec![0u8; 8];
        IcmpEchoRepr {
            icmp_type: ICMPV6_ECHO_REQUEST,
            ident: 7,
            seq: 9,
        }
        .emit(&mut m);
        m.extend_from_slice(b"xyz");
        fill_transport_checksum(a, a, proto::ICMPV6, &mut m, 2);
        assert!(transport_checksum_ok(a, a, proto::ICMPV6, &m));
        m[10] ^= 1;
        assert!(!transport_checksum_ok(a, a, proto::ICMPV6, &m));
    }

    #[test]
    fn malformed() {
        for n in 0..8 {
            assert_eq!(
                IcmpEcho::parse(&[8; 8][..n]).unwrap_err(),
                ParseError::Truncated
            );
        }
        // Destination unreachable is not an echo.
        assert_eq!(
            IcmpEcho::parse(&[3, 1, 0, 0, 0, 0, 0, 0]).unwrap_err(),
            ParseError::Unsupported
        );
    }
}
