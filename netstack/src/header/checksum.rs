//! The Internet checksum (RFC 1071): the ones'-complement of the
//! ones'-complement sum of 16-bit big-endian words.

use std::net::IpAddr;

/// An incremental Internet checksum. Bytes may be added in pieces of any
/// length; a piece of odd length is continued correctly by the next.
#[derive(Clone, Copy, Debug, Default)]
pub struct Checksum {
    sum: u64,
    /// A byte left over from an odd-length piece, waiting for its pair.
    pending: Option<u8>,
}

impl Checksum {
    /// An empty sum.
    pub fn new() -> Checksum {
        Checksum::default()
    }

    /// Adds a 16-bit word.
    pub fn add_u16(&mut self, v: u16) {
        self.sum += u64::from(v);
    }

    /// Adds a 32-bit value as two words.
    pub fn add_u32(&mut self, v: u32) {
        self.sum += u64::from(v >> 16) + u64::from(v & 0xffff);
    }

    /// Adds bytes, pairing them into big-endian words.
    pub fn add_bytes(&mut self, mut b: &[u8]) {
        if let Some(hi) = self.pending.take() {
            match b.split_first() {
                Some((&lo, rest)) => {
                    self.add_u16(u16::from_be_bytes([hi, lo]));
                    b = rest;
                }
                None => {
                    self.pending = Some(hi);
                    return;
                }
            }
        }
        // Sum 32-bit big-endian chunks into a 64-bit accumulator: no
        // carry can be lost before 2^32 chunks, far beyond any packet.
        let mut chunks = b.chunks_exact(4);
        let mut acc: u64 = 0;
        for c in &mut chunks {
            acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        }
        self.sum += (acc >> 32) + ((acc >> 16) & 0xffff) + (acc & 0xffff);
        let rest = chunks.remainder();
        let mut pairs = rest.chunks_exact(2);
        for p in &mut pairs {
            self.add_u16(u16::from_be_bytes([p[0], p[1]]));
        }
        if let [last] = pairs.remainder() {
            self.pending = Some(*last);
        }
    }

    /// The folded 16-bit sum, not complemented.
    pub fn folded(&self) -> u16 {
        let mut s = self.sum;
        if let Some(hi) = self.pending {
            s += u64::from(hi) << 8;
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// The checksum to store in a header (complement of the folded sum).
    /// Over bytes that include a correct checksum, this is zero.
    pub fn finish(&self) -> u16 {
        !self.folded()
    }
}

/// The checksum of `b` alone.
pub fn checksum(b: &[u8]) -> u16 {
    let mut c = Checksum::new();
    c.add_bytes(b);
    c.finish()
}

/// The (unfolded) sum of the TCP/UDP/ICMPv6 pseudo-header (RFC 793 §3.1,
/// RFC 8200 §8.1). Mixed address families sum what they are given; the
/// stack never mixes them.
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, proto: u8, len: u32) -> u32 {
    let mut c = Checksum::new();
    for a in [src, dst] {
        match a {
            IpAddr::V4(a) => c.add_bytes(&a.octets()),
            IpAddr::V6(a) => c.add_bytes(&a.octets()),
        }
    }
    c.add_u32(len);
    c.add_u16(u16::from(proto));
    u32::from(c.folded())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let mut c = Checksum::new();
        c.add_bytes(&b);
        assert_eq!(c.folded(), 0xddf2);
        assert_eq!(checksum(&b), !0xddf2);
    }

    #[test]
    fn odd_pieces_match_whole() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let whole = checksum(&data);
        for split in [0, 1, 2, 3, 5, 7, 500, 999, 1000, 1001] {
            let mut c = Checksum::new();
            c.add_bytes(&data[..split]);
            c.add_bytes(&data[split..]);
            assert_eq!(c.finish(), whole, "split at {split}");
        }
        // Three pieces with two odd boundaries.
        let mut c = Checksum::new();
        c.add_bytes(&data[..3]);
        c.add_bytes(&data[3..4]);
        c.add_bytes(&data[4..]);
        assert_eq!(c.finish(), whole);
    }

    #[test]
    fn trailing_odd_byte_is_padded_with_zero() {
        assert_eq!(checksum(&[0x12]), !0x1200);
    }
}
