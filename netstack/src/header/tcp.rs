//! TCP header (RFC 9293) and options: MSS, window scale and timestamps
//! (RFC 7323), SACK-permitted and SACK blocks (RFC 2018).
//!
//! The fixed header is checked strictly (a bad data offset refuses the
//! segment). Options are parsed the way Linux's `tcp_parse_options`
//! (`net/ipv4/tcp_input.c`) does: parsing stops at a malformed option and
//! a known option with the wrong length is ignored, never failing the
//! segment. Option layout on the wire follows Linux's `tcp_options_write`
//! so captures look familiar (MSS, SACK-permitted+timestamps, NOP+window
//! scale on SYNs; NOP,NOP,timestamps then NOP,NOP,SACK on other segments).

use super::{be16, be32, ParseError};

/// Length of a TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;
/// Longest TCP header (data offset 15).
const TCP_MAX_HEADER_LEN: usize = 60;

const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_WS: u8 = 3;
const OPT_SACK_PERMITTED: u8 = 4;
const OPT_SACK: u8 = 5;
const OPT_TIMESTAMP: u8 = 8;

/// Most SACK blocks an option can hold (40 bytes of option space).
pub const MAX_SACK_BLOCKS: usize = 4;

/// TCP flag bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;

    /// Whether every bit of `bits` is set.
    pub fn has(self, bits: u8) -> bool {
        self.0 & bits == bits
    }
}

/// One SACK block: the sequence range `[start, end)` the peer holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SackBlock {
    /// First sequence number of the block.
    pub start: u32,
    /// Sequence number after the block.
    pub end: u32,
}

/// The options a segment carries (or is to carry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Maximum segment size (SYN only).
    pub mss: Option<u16>,
    /// Window scale shift (SYN only), as sent (the receiver clamps to 14).
    pub window_scale: Option<u8>,
    /// SACK permitted (SYN only).
    pub sack_permitted: bool,
    /// Timestamp value and echo reply.
    pub timestamp: Option<(u32, u32)>,
    /// SACK blocks, the first `sack_count` valid.
    pub sack_blocks: [SackBlock; MAX_SACK_BLOCKS],
    /// How many of `sack_blocks` are present.
    pub sack_count: u8,
}

impl TcpOptions {
    /// The SACK blocks present.
    pub fn sacks(&self) -> &[SackBlock] {
        &self.sack_blocks[..usize::from(self.sack_count)]
    }

    /// Parses an option area leniently (see the module doc).
    pub fn parse(mut b: &[u8]) -> TcpOptions {
        let mut o = TcpOptions::default();
        while let Some(&kind) = b.first() {
            match kind {
                OPT_EOL => break,
                OPT_NOP => {
                    b = &b[1..];
                    continue;
                }
                _ => {}
            }
            let Some(&len) = b.get(1) else { break };
            let len = usize::from(len);
            if len < 2 || len > b.len() {
                break;
            }
            let body = &b[2..len];
            match (kind, len) {
                (OPT_MSS, 4) => o.mss = Some(be16(body, 0)),
                (OPT_WS, 3) => o.window_scale = Some(body[0]),
                (OPT_SACK_PERMITTED, 2) => o.sack_permitted = true,
                (OPT_TIMESTAMP, 10) => o.timestamp = Some((be32(body, 0), be32(body, 4))),
                (OPT_SACK, _) if (len - 2) % 8 == 0 && len > 2 => {
                    for (i, blk) in body.chunks_exact(8).take(MAX_SACK_BLOCKS).enumerate() {
                        o.sack_blocks[i] = SackBlock {
                            start: be32(blk, 0),
                            end: be32(blk, 4),
                        };
                        o.sack_count = (i + 1) as u8;
                    }
                }
                _ => {}
            }
            b = &b[len..];
        }
        o
    }

    /// The number of option bytes [`TcpOptions::emit`] writes (a multiple
    /// of 4, at most 40).
    pub fn wire_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        // SACK-permitted and timestamps share a word-aligned 12 bytes.
        n += match (self.sack_permitted, self.timestamp.is_some()) {
            (_, true) => 12,
            (true, false) => 4,
            (false, false) => 0,
        };
        if self.window_scale.is_some() {
            n += 4;
        }
        n + self.sack_len(n)
    }

    /// Bytes of the SACK option that fit after `used` bytes of others.
    fn sack_len(&self, used: usize) -> usize {
        let room = (40usize.saturating_sub(used + 4)) / 8;
        let blocks = usize::from(self.sack_count).min(room);
        if blocks == 0 {
            0
        } else {
            4 + 8 * blocks
        }
    }

    /// Writes the options into `buf`, which must hold `wire_len()` bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut at = 0;
        if let Some(mss) = self.mss {
            buf[at..at + 2].copy_from_slice(&[OPT_MSS, 4]);
            buf[at + 2..at + 4].copy_from_slice(&mss.to_be_bytes());
            at += 4;
        }
        match (self.sack_permitted, self.timestamp) {
            (sp, Some((val, ecr))) => {
                if sp {
                    buf[at..at + 2].copy_from_slice(&[OPT_SACK_PERMITTED, 2]);
                } else {
                    buf[at..at + 2].copy_from_slice(&[OPT_NOP, OPT_NOP]);
                }
                buf[at + 2..at + 4].copy_from_slice(&[OPT_TIMESTAMP, 10]);
                buf[at + 4..at + 8].copy_from_slice(&val.to_be_bytes());
                buf[at + 8..at + 12].copy_from_slice(&ecr.to_be_bytes());
                at += 12;
            }
            (true, None) => {
                buf[at..at + 4].copy_from_slice(&[OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2]);
                at += 4;
            }
            (false, None) => {}
        }
        if let Some(ws) = self.window_scale {
            buf[at..at + 4].copy_from_slice(&[OPT_NOP, OPT_WS, 3, ws]);
            at += 4;
        }
        let sl = self.sack_len(at);
        if sl > 0 {
            buf[at..at + 4].copy_from_slice(&[OPT_NOP, OPT_NOP, OPT_SACK, (sl - 2) as u8]);
            let mut p = at + 4;
            for blk in &self.sack_blocks[..(sl - 4) / 8] {
                buf[p..p + 4].copy_from_slice(&blk.start.to_be_bytes());
                buf[p + 4..p + 8].copy_from_slice(&blk.end.to_be_bytes());
                p += 8;
            }
        }
    }
}

/// A validated TCP segment (header checks only; checksum separately).
#[derive(Clone, Copy, Debug)]
pub struct TcpSegment<'a> {
    bytes: &'a [u8],
    header_len: usize,
}

impl<'a> TcpSegment<'a> {
    /// Checks `bytes` as a TCP segment: the fixed header fits and the data
    /// offset lies within [20, len].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        if bytes.len() < TCP_HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let header_len = usize::from(bytes[12] >> 4) * 4;
        if header_len < TCP_HEADER_LEN {
            return Err(ParseError::BadHeaderLength);
        }
        if header_len > bytes.len() {
            return Err(ParseError::Truncated);
        }
        debug_assert!(header_len <= TCP_MAX_HEADER_LEN);
        Ok(TcpSegment { bytes, header_len })
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.bytes, 0)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.bytes, 2)
    }

    /// Sequence number.
    pub fn seq(&self) -> u32 {
        be32(self.bytes, 4)
    }

    /// Acknowledgment number.
    pub fn ack(&self) -> u32 {
        be32(self.bytes, 8)
    }

    /// Header length (data offset × 4).
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Flags.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.bytes[13])
    }

    /// Raw (unscaled) window.
    pub fn window(&self) -> u16 {
        be16(self.bytes, 14)
    }

    /// Urgent pointer.
    pub fn urgent(&self) -> u16 {
        be16(self.bytes, 18)
    }

    /// The options, parsed leniently.
    pub fn options(&self) -> TcpOptions {
        TcpOptions::parse(&self.bytes[TCP_HEADER_LEN..self.header_len])
    }

    /// The payload.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.header_len..]
    }
}

/// A TCP header to send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Raw (already scaled down) window.
    pub window: u16,
    /// Options.
    pub options: TcpOptions,
}

impl TcpRepr {
    /// Header length including options.
    pub fn header_len(&self) -> usize {
        TCP_HEADER_LEN + self.options.wire_len()
    }

    /// Writes the header and options with a zero checksum into
    /// `buf[..header_len()]`; the caller fills the checksum with
    /// [`super::fill_transport_checksum`] (field offset 16).
    pub fn emit(&self, buf: &mut [u8]) {
        let hl = self.header_len();
        buf[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        buf[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        buf[4..8].copy_from_slice(&self.seq.to_be_bytes());
        buf[8..12].copy_from_slice(&self.ack.to_be_bytes());
        buf[12] = ((hl / 4) as u8) << 4;
        buf[13] = self.flags.0;
        buf[14..16].copy_from_slice(&self.window.to_be_bytes());
        buf[16..20].fill(0);
        self.options.emit(&mut buf[TCP_HEADER_LEN..hl]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn_options() -> TcpOptions {
        TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some((0x01020304, 0)),
            ..TcpOptions::default()
        }
    }

    #[test]
    fn syn_golden_matches_linux_layout() {
        let r = TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: 0xdeadbeef,
            ack: 0,
            flags: TcpFlags(TcpFlags::SYN),
            window: 64240,
            options: syn_options(),
        };
        assert_eq!(r.header_len(), 40);
        let mut b = [0u8; 40];
        r.emit(&mut b);
        #[rustfmt::skip]
        let want = [
            0x9c, 0x40, 0x00, 0x50, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0xa0, 0x02, 0xfa, 0xf0, 0, 0, 0, 0,
            // mss 1460 | sackOK, ts 01020304 0 | nop, wscale 7 (Linux's SYN)
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        assert_eq!(b, want);
        let s = TcpSegment::parse(&b).unwrap();
        assert_eq!(s.options(), syn_options());
        assert_eq!(
            (s.src_port(), s.dst_port(), s.seq()),
            (40000, 80, 0xdeadbeef)
        );
        assert!(s.flags().has(TcpFlags::SYN));
        assert!(s.payload().is_empty());
    }

    #[test]
    fn sack_blocks_fit_beside_timestamps() {
        let mut o = TcpOptions {
            timestamp: Some((5, 6)),
            ..TcpOptions::default()
        };
        for i in 0..4u32 {
            o.sack_blocks[i as usize] = SackBlock {
                start: i * 100,
                end: i * 100 + 50,
            };
        }
        o.sack_count = 4;
        // 12 (ts) + 4 + 3*8: the fourth block does not fit.
        assert_eq!(o.wire_len(), 40);
        let mut b = [0u8; 40];
        o.emit(&mut b);
        let p = TcpOptions::parse(&b);
        assert_eq!(p.timestamp, Some((5, 6)));
        assert_eq!(p.sacks(), &o.sack_blocks[..3]);
        // Without timestamps all four fit.
        o.timestamp = None;
        assert_eq!(o.wire_len(), 36);
        let mut b = [0u8; 36];
        o.emit(&mut b);
        assert_eq!(TcpOptions::parse(&b).sacks(), &o.sack_blocks[..]);
    }

    #[test]
    fn malformed_header() {
        let mut b = [0u8; 24];
        b[12] = 0x60;
        for n in 0..20 {
            assert_eq!(
                TcpSegment::parse(&b[..n]).unwrap_err(),
                ParseError::Truncated
            );
        }
        // Data offset 24 bytes on a 20-byte buffer.
        assert_eq!(
            TcpSegment::parse(&b[..20]).unwrap_err(),
            ParseError::Truncated
        );
        b[12] = 0x40; // offset 16 < 20
        assert_eq!(
            TcpSegment::parse(&b).unwrap_err(),
            ParseError::BadHeaderLength
        );
        b[12] = 0xf0; // 60 > 24
        assert_eq!(TcpSegment::parse(&b).unwrap_err(), ParseError::Truncated);
    }

    #[test]
    fn malformed_options_are_ignored_like_linux() {
        // Zero-length option: parsing stops, nothing parsed after it.
        assert_eq!(TcpOptions::parse(&[2, 0, 5, 0xb4]), TcpOptions::default());
        // Length past the area.
        assert_eq!(TcpOptions::parse(&[8, 10, 0, 0]), TcpOptions::default());
        // MSS with the wrong length is ignored, the next option still read.
        let o = TcpOptions::parse(&[2, 3, 0, 1, 3, 3, 9]);
        assert_eq!((o.mss, o.window_scale), (None, Some(9)));
        // SACK with a partial block is ignored.
        let o = TcpOptions::parse(&[5, 6, 0, 0, 0, 1]);
        assert_eq!(o.sack_count, 0);
        // Lone kind byte at the end.
        assert_eq!(TcpOptions::parse(&[1, 1, 2]), TcpOptions::default());
        // EOL stops.
        assert!(!TcpOptions::parse(&[0, 4, 2]).sack_permitted);
    }
}
