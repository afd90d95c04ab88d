//! UDP (RFC 768; RFC 8200 §8.1 for IPv6's mandatory checksum).

use super::{be16, ParseError};

/// Length of the UDP header.
pub const UDP_HEADER_LEN: usize = 8;

/// A validated UDP datagram: the length field covers the header and fits
/// the buffer (bytes past it are ignored, as Linux trims them).
#[derive(Clone, Copy, Debug)]
pub struct UdpDatagram<'a> {
    bytes: &'a [u8],
}

impl<'a> UdpDatagram<'a> {
    /// Checks `bytes` as a UDP datagram.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        if bytes.len() < UDP_HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let len = usize::from(be16(bytes, 4));
        if len < UDP_HEADER_LEN {
            return Err(ParseError::BadLength);
        }
        if len > bytes.len() {
            return Err(ParseError::Truncated);
        }
        Ok(UdpDatagram {
            bytes: &bytes[..len],
        })
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.bytes, 0)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.bytes, 2)
    }

    /// The checksum field; zero means "none" (legal only over IPv4).
    pub fn checksum_field(&self) -> u16 {
        be16(self.bytes, 6)
    }

    /// The whole datagram (header and payload), what the checksum covers.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The payload.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[UDP_HEADER_LEN..]
    }
}

/// A UDP header to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length.
    pub payload_len: usize,
}

impl UdpRepr {
    /// Writes the header with a zero checksum into `buf[..8]`; the caller
    /// fills it with [`super::fill_transport_checksum`] (field offset 6).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), ParseError> {
        let len =
            u16::try_from(self.payload_len + UDP_HEADER_LEN).map_err(|_| ParseError::BadLength)?;
        buf[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        buf[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        buf[4..6].copy_from_slice(&len.to_be_bytes());
        buf[6..8].fill(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::super::{fill_transport_checksum, proto, transport_checksum_ok};
    use super::*;

    #[test]
    fn golden() {
        // 127.0.0.1:1000 -> 127.0.0.1:2000, "hi". By hand: pseudo-header
        // 7f00+0001+7f00+0001+0011+000a = fe1d, header 03e8+07d0+000a = bc2,
        // data 6869; total fe1d+0bc2+6869 = 1_7248 -> 7249, checksum 8db6.
        let mut d = vec![0u8; 8];
        UdpRepr {
            src_port: 1000,
            dst_port: 2000,
            payload_len: 2,
        }
        .emit(&mut d)
        .unwrap();
        d.extend_from_slice(b"hi");
        let a = IpAddr::V4(Ipv4Addr::LOCALHOST);
        fill_transport_checksum(a, a, proto::UDP, &mut d, 6);
        assert_eq!(d, [0x03, 0xe8, 0x07, 0xd0, 0, 10, 0x8d, 0xb6, b'h', b'i']);
        assert!(transport_checksum_ok(a, a, proto::UDP, &d));
        let u = UdpDatagram::parse(&d).unwrap();
        assert_eq!(
            (u.src_port(), u.dst_port(), u.payload()),
            (1000, 2000, &b"hi"[..])
        );
    }

    #[test]
    fn malformed() {
        let d = [0x03, 0xe8, 0x07, 0xd0, 0, 10, 0, 0, b'h', b'i'];
        for n in 0..8 {
            assert_eq!(
                UdpDatagram::parse(&d[..n]).unwrap_err(),
                ParseError::Truncated
            );
        }
        assert_eq!(
            UdpDatagram::parse(&d[..9]).unwrap_err(),
            ParseError::Truncated
        );
        let mut b = d;
        b[5] = 7;
        assert_eq!(UdpDatagram::parse(&b).unwrap_err(), ParseError::BadLength);
        // Trailing bytes past the length are trimmed.
        let mut b = d.to_vec();
        b.push(0xff);
        assert_eq!(UdpDatagram::parse(&b).unwrap().payload(), b"hi");
        let r = UdpRepr {
            src_port: 1,
            dst_port: 2,
            payload_len: 65528,
        };
        assert_eq!(r.emit(&mut [0u8; 8]).unwrap_err(), ParseError::BadLength);
    }
}
