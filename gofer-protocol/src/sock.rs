//! The socket communicator (§1.2): every message, in both directions, is an
//! 8-byte header (`payloadLen u32`, `MID u16`, `pad u16`, little-endian)
//! followed by `payloadLen` bytes. Host FDs ride on the first `sendmsg` of
//! a response as one `SCM_RIGHTS` message.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use thiserror::Error;

use crate::sys;

/// Size of the socket message header.
pub const HEADER_SIZE: usize = 8;

/// The max payload size a client assumes before Mount tells it the
/// server's (the Go client's initial value, 1 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 1 << 20;

/// The max payload size the Go server advertises on 4 KiB-page hosts
/// (2 MiB - 4 KiB, so that a channel window is one huge page).
pub const GO_SERVER_MAX_MESSAGE_SIZE: u32 = (2 << 20) - 4096;

/// The largest max payload size we accept from a peer: a server that
/// advertises more is clamped to this, so that it cannot make us allocate
/// an arbitrary amount per message.
pub const HARD_MAX_MESSAGE_SIZE: u32 = 16 << 20;

/// What went wrong moving one message over the socket.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The peer closed the connection between messages.
    #[error("lisafs peer closed the connection")]
    Closed,
    /// The peer closed the connection inside a message.
    #[error("lisafs connection ended inside a message: got {got} of {want} {part} bytes")]
    Truncated {
        part: &'static str,
        got: usize,
        want: usize,
    },
    /// The header's payload length exceeds the connection's max message
    /// size; the payload was not read.
    #[error("lisafs message of {len} payload bytes exceeds the max message size {max}")]
    TooLarge { len: u64, max: u32 },
    /// More FDs were offered than one message can carry.
    #[error("{0} FDs in one lisafs message; at most {max} fit", max = sys::MAX_FDS)]
    TooManyFds(usize),
    /// The host socket call failed.
    #[error("lisafs socket I/O failed: {0}")]
    Io(#[from] io::Error),
}

/// One message as it came off the socket.
#[derive(Debug)]
pub struct Message {
    /// The raw message id (validated only when the payload is decoded).
    pub mid: u16,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// FDs that arrived with the message.
    pub fds: Vec<OwnedFd>,
}

/// Encodes the 8-byte header.
pub fn encode_header(payload_len: u32, mid: u16) -> [u8; HEADER_SIZE] {
    let mut h = [0u8; HEADER_SIZE];
    h[..4].copy_from_slice(&payload_len.to_le_bytes());
    h[4..6].copy_from_slice(&mid.to_le_bytes());
    h
}

/// Decodes the 8-byte header into `(payload_len, mid)`; the pad is ignored.
pub fn decode_header(h: &[u8; HEADER_SIZE]) -> (u32, u16) {
    (
        u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
        u16::from_le_bytes([h[4], h[5]]),
    )
}

/// Writes one whole message (header and payload), attaching `fds` to the
/// first `sendmsg`. `max` is the connection's max payload size.
pub fn write_message(
    sock: &UnixStream,
    mid: u16,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
    max: u32,
) -> Result<(), FrameError> {
    if payload.len() as u64 > u64::from(max) {
        return Err(FrameError::TooLarge {
            len: payload.len() as u64,
            max,
        });
    }
    if fds.len() > sys::MAX_FDS {
        return Err(FrameError::TooManyFds(fds.len()));
    }
    let mut buf = Vec::with_capacity(HEADER_SIZE + payload.len());
    buf.extend_from_slice(&encode_header(payload.len() as u32, mid));
    buf.extend_from_slice(payload);
    let mut sent = 0;
    let mut pending_fds = fds;
    while sent < buf.len() {
        let n = sys::send(sock.as_fd(), &buf[sent..], pending_fds)?;
        if n == 0 {
            return Err(FrameError::Io(io::ErrorKind::WriteZero.into()));
        }
        sent += n;
        pending_fds = &[];
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes; FDs are accepted only on the first
/// `recvmsg` (and only if `max_fds > 0`). Returns how many bytes arrived
/// before end of stream.
fn read_full(
    sock: &UnixStream,
    buf: &mut [u8],
    max_fds: usize,
    fds: &mut Vec<OwnedFd>,
) -> Result<usize, FrameError> {
    let mut got = 0;
    let mut want_fds = max_fds;
    while got < buf.len() {
        let n = sys::recv(sock.as_fd(), &mut buf[got..], want_fds, fds)?;
        if n == 0 {
            break;
        }
        got += n;
        want_fds = 0;
    }
    Ok(got)
}

/// Reads one whole message. `max` is the connection's max payload size: a
/// larger header is refused before any payload is read or allocated.
/// `max_fds` is how many FDs to make room for (0 for requests); extra FDs
/// beyond the room are closed by the kernel.
pub fn read_message(sock: &UnixStream, max: u32, max_fds: usize) -> Result<Message, FrameError> {
    let max = max.min(HARD_MAX_MESSAGE_SIZE);
    let mut header = [0u8; HEADER_SIZE];
    let mut fds = Vec::new();
    let got = read_full(sock, &mut header, max_fds, &mut fds)?;
    if got == 0 {
        return Err(FrameError::Closed);
    }
    if got < HEADER_SIZE {
        return Err(FrameError::Truncated {
            part: "header",
            got,
            want: HEADER_SIZE,
        });
    }
    let (len, mid) = decode_header(&header);
    if len > max {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        });
    }
    let mut payload = vec![0u8; len as usize];
    let got = read_full(sock, &mut payload, 0, &mut fds)?;
    if got < payload.len() {
        return Err(FrameError::Truncated {
            part: "payload",
            got,
            want: payload.len(),
        });
    }
    Ok(Message { mid, payload, fds })
}

/// What a server read off its socket: a request, or the header of one whose
/// payload exceeded the max message size (the payload was read and thrown
/// away in bounded chunks, so the stream stays in step and nothing of that
/// size was allocated).
#[derive(Debug)]
pub enum Incoming {
    /// A request within the size limit.
    Message(Message),
    /// A request whose payload was larger than the limit.
    Oversize { mid: u16, len: u32 },
}

/// Reads one request for a server. Requests never carry FDs, so none are
/// accepted (the kernel closes any that a peer attaches). A payload longer
/// than `max` is drained and reported as [`Incoming::Oversize`], so the
/// server can answer it with an error as upstream does, without buffering
/// it.
pub fn read_request(sock: &UnixStream, max: u32) -> Result<Incoming, FrameError> {
    let max = max.min(HARD_MAX_MESSAGE_SIZE);
    let mut header = [0u8; HEADER_SIZE];
    let mut fds = Vec::new();
    let got = read_full(sock, &mut header, 0, &mut fds)?;
    if got == 0 {
        return Err(FrameError::Closed);
    }
    if got < HEADER_SIZE {
        return Err(FrameError::Truncated {
            part: "header",
            got,
            want: HEADER_SIZE,
        });
    }
    let (len, mid) = decode_header(&header);
    if len > max {
        let mut chunk = vec![0u8; 64 << 10];
        let mut left = len as usize;
        while left > 0 {
            let want = left.min(chunk.len());
            let got = read_full(sock, &mut chunk[..want], 0, &mut fds)?;
            if got < want {
                return Err(FrameError::Truncated {
                    part: "payload",
                    got: len as usize - left + got,
                    want: len as usize,
                });
            }
            left -= want;
        }
        return Ok(Incoming::Oversize { mid, len });
    }
    let mut payload = vec![0u8; len as usize];
    let got = read_full(sock, &mut payload, 0, &mut fds)?;
    if got < payload.len() {
        return Err(FrameError::Truncated {
            part: "payload",
            got,
            want: payload.len(),
        });
    }
    Ok(Incoming::Message(Message { mid, payload, fds }))
}
