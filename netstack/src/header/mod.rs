//! Wire formats: parse (validated views over untrusted bytes) and build.
//!
//! Shaped like upstream's `pkg/tcpip/header`: one file per protocol, each
//! with a view type whose `parse` checks every length and offset before
//! any accessor runs (accessors then never index out of bounds), and a
//! `*Repr`/`emit` pair that writes a header into a caller's buffer.
//! Checksums are verified separately (`*_checksum_ok`) because links that
//! offload them (loopback) skip the work, as upstream and Linux do.

mod checksum;
mod icmp;
mod ipv4;
mod ipv6;
mod tcp;
mod udp;

use std::fmt;
use std::net::IpAddr;

pub use checksum::{checksum, pseudo_header_sum, Checksum};
pub use icmp::{IcmpEcho, IcmpEchoRepr, ICMPV4_ECHO_REPLY, ICMPV4_ECHO_REQUEST};
pub use icmp::{ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, ICMP_ECHO_HEADER_LEN};
pub use ipv4::{Ipv4Packet, Ipv4Repr, IPV4_HEADER_LEN};
pub use ipv6::{Ipv6Packet, Ipv6Repr, IPV6_HEADER_LEN};
pub use tcp::{SackBlock, TcpFlags, TcpOptions, TcpRepr, TcpSegment, TCP_HEADER_LEN};
pub use udp::{UdpDatagram, UdpRepr, UDP_HEADER_LEN};

/// IANA protocol numbers the stack understands.
pub mod proto {
    /// ICMP for IPv4.
    pub const ICMPV4: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
}

/// Why a packet was refused. Every parser returns one of these for any
/// malformed input; none panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer bytes than the header (or a length field) requires.
    Truncated,
    /// The IP version nibble is not the one expected.
    BadVersion,
    /// A header-length or data-offset field is out of range.
    BadHeaderLength,
    /// A total/payload length field disagrees with the buffer.
    BadLength,
    /// A checksum does not verify.
    BadChecksum,
    /// An IP fragment: the stack does not reassemble and drops these.
    Fragment,
    /// An option (TCP) or extension header (IPv6) is malformed.
    BadOption,
    /// A field holds a value the protocol forbids (e.g. port 0 as source
    /// where that is illegal, an ICMP type that is not echo).
    Unsupported,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Truncated => "truncated packet",
            ParseError::BadVersion => "bad IP version",
            ParseError::BadHeaderLength => "bad header length",
            ParseError::BadLength => "bad length field",
            ParseError::BadChecksum => "bad checksum",
            ParseError::Fragment => "IP fragment (not reassembled)",
            ParseError::BadOption => "malformed option",
            ParseError::Unsupported => "unsupported value",
        })
    }
}

impl std::error::Error for ParseError {}

/// Verifies the transport checksum of `segment` (TCP, UDP or ICMPv6,
/// whose checksums cover a pseudo-header) sent from `src` to `dst`.
pub fn transport_checksum_ok(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> bool {
    let Ok(len) = u32::try_from(segment.len()) else {
        return false;
    };
    let mut c = Checksum::new();
    c.add_u32(pseudo_header_sum(src, dst, proto, len));
    c.add_bytes(segment);
    c.finish() == 0
}

/// Computes the transport checksum of `segment` whose checksum field (at
/// `field`) is zero, and stores it there.
pub fn fill_transport_checksum(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    segment: &mut [u8],
    field: usize,
) {
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    let mut c = Checksum::new();
    c.add_u32(pseudo_header_sum(src, dst, proto, len));
    c.add_bytes(segment);
    let mut sum = c.finish();
    // UDP sends an all-ones checksum for a computed zero (RFC 768); TCP
    // and ICMPv6 accept either representation of zero, so do it for all.
    if sum == 0 && proto == proto::UDP {
        sum = 0xffff;
    }
    segment[field..field + 2].copy_from_slice(&sum.to_be_bytes());
}

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
