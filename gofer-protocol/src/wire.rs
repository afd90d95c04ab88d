//! Little-endian primitives of the lisafs payload encoding (§1.6 of the
//! protocol notes): scalars, u16-length-prefixed strings, u16-counted
//! arrays, and fixed C-layout structs copied byte for byte.
//!
//! The decoder works on untrusted bytes: it never panics, and it never
//! reserves memory for a length or count that the remaining input could not
//! back.

use thiserror::Error;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Why a payload could not be decoded. Every variant names the message and
/// field that was wrong so a log line says what the peer sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The payload ended inside a field.
    #[error("{msg}.{field}: needs {need} bytes at offset {offset} but only {have} remain")]
    Truncated {
        msg: &'static str,
        field: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    /// A length or count prefix promises more bytes than the payload has.
    #[error(
        "{msg}.{field}: length prefix at offset {offset} asks for {len} bytes but only {have} remain"
    )]
    LengthPastEnd {
        msg: &'static str,
        field: &'static str,
        offset: usize,
        len: usize,
        have: usize,
    },
    /// Bytes were left over after the last field of the message.
    #[error("{msg}: {trailing} unexpected bytes after the last field (payload is {total} bytes)")]
    TrailingBytes {
        msg: &'static str,
        trailing: usize,
        total: usize,
    },
    /// The message id is not one of lisafs' (0-33).
    #[error("unknown lisafs message id {0}")]
    UnknownMid(u16),
    /// MID 0 (`Error`) is a response only; a client may not send it.
    #[error("message id 0 (Error) is a response, never a request")]
    ErrorAsRequest,
    /// Walk's status byte is not 0 (ok), 1 (missing) or 2 (symlink).
    #[error("WalkResp.status: {0} is not a walk status (0 ok, 1 missing component, 2 symlink)")]
    BadWalkStatus(u8),
}

/// Why a message could not be encoded: a variable-length field is longer
/// than its length prefix can say.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{msg}.{field}: {len} is more than the wire format's limit of {max}")]
pub struct EncodeError {
    pub msg: &'static str,
    pub field: &'static str,
    pub len: usize,
    pub max: usize,
}

/// Appends encoded fields to a payload buffer.
#[derive(Debug)]
pub(crate) struct Encoder {
    msg: &'static str,
    pub(crate) buf: Vec<u8>,
}

impl Encoder {
    pub(crate) fn new(msg: &'static str) -> Self {
        Encoder {
            msg,
            buf: Vec::new(),
        }
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// A fixed C-layout struct, byte for byte.
    pub(crate) fn fixed<T: IntoBytes + Immutable>(&mut self, v: &T) {
        self.buf.extend_from_slice(v.as_bytes());
    }
    /// A length that must fit in `max` (the width of its prefix).
    pub(crate) fn check_len(
        &self,
        field: &'static str,
        len: usize,
        max: usize,
    ) -> Result<(), EncodeError> {
        if len > max {
            return Err(EncodeError {
                msg: self.msg,
                field,
                len,
                max,
            });
        }
        Ok(())
    }
    /// A u16 count or length prefix.
    pub(crate) fn count(&mut self, field: &'static str, n: usize) -> Result<(), EncodeError> {
        self.check_len(field, n, usize::from(u16::MAX))?;
        self.u16(n as u16);
        Ok(())
    }
    /// A SizedString: u16 length, then the bytes.
    pub(crate) fn sized(&mut self, field: &'static str, s: &[u8]) -> Result<(), EncodeError> {
        self.count(field, s.len())?;
        self.bytes(s);
        Ok(())
    }
    /// A StringArray: u16 count, then SizedStrings.
    pub(crate) fn sized_array(
        &mut self,
        field: &'static str,
        v: &[Vec<u8>],
    ) -> Result<(), EncodeError> {
        self.count(field, v.len())?;
        for s in v {
            self.sized(field, s)?;
        }
        Ok(())
    }
}

/// Reads fields off the front of an untrusted payload.
#[derive(Debug)]
pub(crate) struct Decoder<'a> {
    msg: &'static str,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(msg: &'static str, buf: &'a [u8]) -> Self {
        Decoder { msg, buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        let have = self.remaining();
        if n > have {
            return Err(DecodeError::Truncated {
                msg: self.msg,
                field,
                offset: self.pos,
                need: n,
                have,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.array(field).map(u16::from_le_bytes)
    }
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_le_bytes)
    }
    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        self.array(field).map(i32::from_le_bytes)
    }
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// A fixed C-layout struct, byte for byte.
    pub(crate) fn fixed<T: FromBytes + KnownLayout + Immutable>(
        &mut self,
        field: &'static str,
    ) -> Result<T, DecodeError> {
        let bytes = self.take(field, core::mem::size_of::<T>())?;
        // Cannot fail: `take` returned exactly size_of::<T>() bytes and
        // `read_from_bytes` has no alignment requirement.
        T::read_from_bytes(bytes).map_err(|_| DecodeError::Truncated {
            msg: self.msg,
            field,
            offset: self.pos,
            need: core::mem::size_of::<T>(),
            have: 0,
        })
    }

    /// `len` raw bytes whose length was given by an earlier field.
    pub(crate) fn bytes(
        &mut self,
        field: &'static str,
        len: usize,
    ) -> Result<Vec<u8>, DecodeError> {
        let have = self.remaining();
        if len > have {
            return Err(DecodeError::LengthPastEnd {
                msg: self.msg,
                field,
                offset: self.pos,
                len,
                have,
            });
        }
        self.take(field, len).map(<[u8]>::to_vec)
    }

    /// A SizedString: u16 length, then that many bytes.
    pub(crate) fn sized(&mut self, field: &'static str) -> Result<Vec<u8>, DecodeError> {
        let len = self.u16(field)?;
        self.bytes(field, usize::from(len))
    }

    /// A u16 count of elements that each take at least `min_elem` bytes.
    /// Fails if the remaining input could not hold that many, so the caller
    /// may reserve `count` slots.
    pub(crate) fn count(
        &mut self,
        field: &'static str,
        min_elem: usize,
    ) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let n = usize::from(self.u16(field)?);
        let len = n * min_elem;
        let have = self.remaining();
        if len > have {
            return Err(DecodeError::LengthPastEnd {
                msg: self.msg,
                field,
                offset,
                len,
                have,
            });
        }
        Ok(n)
    }

    /// A StringArray: u16 count, then that many SizedStrings.
    pub(crate) fn sized_array(&mut self, field: &'static str) -> Result<Vec<Vec<u8>>, DecodeError> {
        let n = self.count(field, 2)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.sized(field)?);
        }
        Ok(out)
    }

    /// Ends decoding: leftover bytes are an error.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            trailing => Err(DecodeError::TrailingBytes {
                msg: self.msg,
                trailing,
                total: self.buf.len(),
            }),
        }
    }
}
