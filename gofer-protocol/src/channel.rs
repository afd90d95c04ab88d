//! lisafs channels (§1.4, §1.5): RPCs through a flipcall packet window,
//! with donated host FDs passed on a per-channel "fdchannel".
//!
//! A datagram in the window is a 4-byte header (`MID u16`, `numFDs u8`,
//! pad) and the payload. Requests carry no FDs; a response's `numFDs` says
//! how many FDs the server queued on the fdchannel, a `SOCK_SEQPACKET`
//! socket on which every FD travels alone in a zero-length datagram.
//!
//! The server side allocates windows from one memfd per connection
//! ([`WindowAllocator`]) and donates a dup of it and the client end of the
//! fdchannel with the Channel response; the client maps its window and
//! runs the flipcall connect handshake ([`Channel::connect`]).
//!
//! Everything read from the window is copied out once and validated
//! (length against the window, payload against the max message size,
//! `numFDs` against the FDs that actually arrived).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use thiserror::Error;

use crate::flipcall::{Endpoint, FlipcallError, Side, PACKET_HEADER_SIZE};
use crate::message::{ChannelResp, ErrorResp, Mid, Response};
use crate::shm::{self, Mapping};
use crate::sock::{Message, HARD_MAX_MESSAGE_SIZE};
use crate::sys;

/// A server's request handler: (MID, payload) to (MID, payload, FDs).
type Handler<'a> = dyn FnMut(u16, &[u8]) -> (u16, Vec<u8>, Vec<OwnedFd>) + 'a;

/// Bytes of the lisafs header at the start of a channel datagram.
pub const CHANNEL_HEADER_SIZE: usize = 4;

/// At most this many FDs accompany one channel response (`numFDs` is u8).
pub const MAX_CHANNEL_FDS: usize = u8::MAX as usize;

/// The name of the memfd that backs a connection's windows.
pub const WINDOW_MEMFD_NAME: &std::ffi::CStr = c"flipcall_packet_windows";

/// How many channels each side allows per connection:
/// clamp(available parallelism, 2, 4), as upstream derives it from
/// GOMAXPROCS. Computed once: std reads /proc and /sys for it, which a
/// process under a seccomp filter (the gofer) must do before installing it.
pub fn max_channels() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 4)
    })
}

/// The window size for a connection's max message size: header, channel
/// header and payload, rounded up to a page.
pub fn window_size(max_message_size: u32) -> usize {
    let page = shm::page_size();
    (PACKET_HEADER_SIZE + CHANNEL_HEADER_SIZE + max_message_size as usize).div_ceil(page) * page
}

/// What went wrong on a channel.
#[derive(Debug, Error)]
pub enum ChannelError {
    /// The flipcall handoff failed (shutdown, dead peer, bad length).
    #[error("lisafs channel: {0}")]
    Flipcall(#[from] FlipcallError),
    /// A datagram too short to hold the channel header.
    #[error("lisafs channel datagram of {0} bytes is shorter than the 4-byte header")]
    Short(u32),
    /// A payload larger than the connection's max message size.
    #[error("lisafs channel payload of {len} bytes exceeds the max message size {max}")]
    TooLarge { len: u64, max: u32 },
    /// The response promised more FDs than the fdchannel delivered.
    #[error("lisafs channel response announced {want} FDs but the fdchannel delivered {got}")]
    MissingFds { want: usize, got: usize },
    /// The server's Channel response describes a window we refuse to map.
    #[error("lisafs Channel response: {0}")]
    BadWindow(String),
    /// A host call failed.
    #[error("lisafs channel I/O: {0}")]
    Io(#[from] io::Error),
}

impl ChannelError {
    /// Whether the channel merely ended (shut down, or its peer went away)
    /// rather than misbehaved.
    pub fn is_shutdown(&self) -> bool {
        matches!(
            self,
            ChannelError::Flipcall(FlipcallError::Shutdown | FlipcallError::PeerGone)
        )
    }
}

/// One channel, either end: the flipcall endpoint on its window and our
/// end of the fdchannel. Dropping it shuts the channel down.
#[derive(Debug)]
pub struct Channel {
    ep: Endpoint,
    fd_sock: OwnedFd,
    max: u32,
}

fn encode_header(mid: u16, num_fds: u8) -> [u8; CHANNEL_HEADER_SIZE] {
    let m = mid.to_le_bytes();
    [m[0], m[1], num_fds, 0]
}

impl Channel {
    /// The flipcall endpoint (tests use it to misbehave on purpose).
    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    /// Our end of the fdchannel.
    pub fn fd_socket(&self) -> BorrowedFd<'_> {
        self.fd_sock.as_fd()
    }

    /// The largest payload this channel carries.
    pub fn max_payload(&self) -> u32 {
        self.max
    }

    /// Splits the channel into its endpoint and fdchannel socket (tests use
    /// this to play a peer that dies without shutting down).
    pub fn into_parts(self) -> (Endpoint, OwnedFd) {
        (self.ep, self.fd_sock)
    }

    /// Shuts the channel down; the peer's next (or current) wait fails.
    pub fn shutdown(&self) {
        self.ep.shutdown();
    }

    /// Client: sets up a channel from a Channel response and its two
    /// donated FDs (`mem`, the memfd of the windows; `sock`, the client
    /// end of the fdchannel), then runs the connect handshake.
    /// `max_message_size` is the connection's (from Mount).
    ///
    /// The window must lie page-aligned inside a memfd sealed against
    /// shrinking (so the mapping can never fault), be no larger than a
    /// window for [`HARD_MAX_MESSAGE_SIZE`], and `sock` must be a
    /// `SOCK_SEQPACKET` socket.
    pub fn connect(
        resp: &ChannelResp,
        mem: OwnedFd,
        sock: OwnedFd,
        max_message_size: u32,
    ) -> Result<Channel, ChannelError> {
        let bad = |s: String| Err(ChannelError::BadWindow(s));
        let min = PACKET_HEADER_SIZE + CHANNEL_HEADER_SIZE;
        let most = window_size(HARD_MAX_MESSAGE_SIZE);
        let len = resp.data_length;
        if len < min as u64 || len > most as u64 || !len.is_multiple_of(4) {
            return bad(format!(
                "window length {len} is not a multiple of 4 between {min} and {most}"
            ));
        }
        let Ok(off) = u64::try_from(resp.data_offset) else {
            return bad(format!("negative window offset {}", resp.data_offset));
        };
        if !off.is_multiple_of(shm::page_size() as u64) {
            return bad(format!("window offset {off} is not page aligned"));
        }
        let seals = shm::get_seals(mem.as_fd())?;
        if seals & libc::F_SEAL_SHRINK == 0 {
            return bad("the window memfd is not sealed against shrinking (F_SEAL_SHRINK)".into());
        }
        let mem = File::from(mem);
        let size = mem.metadata()?.len();
        if off.checked_add(len).is_none_or(|end| end > size) {
            return bad(format!(
                "window {off}+{len} lies past the end of the {size}-byte memfd"
            ));
        }
        match sys::socket_type(sock.as_fd()) {
            Ok(libc::SOCK_SEQPACKET) => {}
            Ok(t) => return bad(format!("fdchannel socket has type {t}, not SOCK_SEQPACKET")),
            Err(e) => return bad(format!("fdchannel FD is not a socket: {e}")),
        }
        let map = Mapping::map(mem.as_fd(), off, len as usize)?;
        drop(mem);
        let ep = Endpoint::new(map, Side::Client)?;
        let max = max_message_size.min(ep.data_cap() - CHANNEL_HEADER_SIZE as u32);
        let ch = Channel {
            ep,
            fd_sock: sock,
            max,
        };
        ch.ep.connect(Some(ch.fd_sock.as_fd()))?;
        Ok(ch)
    }

    /// Client: one RPC over the channel. Returns the response's MID,
    /// payload and the FDs it announced.
    pub fn call(&self, mid: u16, payload: &[u8]) -> Result<Message, ChannelError> {
        if payload.len() as u64 > u64::from(self.max) {
            return Err(ChannelError::TooLarge {
                len: payload.len() as u64,
                max: self.max,
            });
        }
        self.ep.write_data(0, &encode_header(mid, 0))?;
        self.ep.write_data(CHANNEL_HEADER_SIZE, payload)?;
        let len = self.ep.send_recv(
            (CHANNEL_HEADER_SIZE + payload.len()) as u32,
            Some(self.fd_sock.as_fd()),
        )?;
        let (mid, num_fds, payload) = self.read_datagram(len)?;
        if payload.len() as u64 > u64::from(self.max) {
            return Err(ChannelError::TooLarge {
                len: payload.len() as u64,
                max: self.max,
            });
        }
        let mut fds = Vec::new();
        let got = self.recv_fds(usize::from(num_fds), &mut fds)?;
        if got < usize::from(num_fds) {
            return Err(ChannelError::MissingFds {
                want: usize::from(num_fds),
                got,
            });
        }
        Ok(Message { mid, payload, fds })
    }

    /// Copies a received datagram (already checked against the window)
    /// out of the window once and splits it into MID, numFDs and payload.
    fn read_datagram(&self, len: u32) -> Result<(u16, u8, Vec<u8>), ChannelError> {
        if (len as usize) < CHANNEL_HEADER_SIZE {
            return Err(ChannelError::Short(len));
        }
        let mut buf = vec![0u8; len as usize];
        self.ep.read_data(0, &mut buf)?;
        let mid = u16::from_le_bytes([buf[0], buf[1]]);
        let num_fds = buf[2];
        buf.drain(..CHANNEL_HEADER_SIZE);
        Ok((mid, num_fds, buf))
    }

    /// Receives up to `n` FDs queued on the fdchannel without blocking;
    /// returns how many arrived.
    fn recv_fds(&self, n: usize, out: &mut Vec<OwnedFd>) -> Result<usize, ChannelError> {
        let mut got = 0;
        while got < n {
            match sys::recv_one_fd(self.fd_sock.as_fd())? {
                Some(fd) => {
                    out.push(fd);
                    got += 1;
                }
                None => break,
            }
        }
        Ok(got)
    }

    /// Sends FDs on the fdchannel, one per datagram; stops at the first
    /// failure (and sends none if there are more than 255). Returns how
    /// many were sent, the `numFDs` to announce.
    pub fn send_fds(&self, fds: &[OwnedFd]) -> u8 {
        if fds.len() > MAX_CHANNEL_FDS {
            return 0;
        }
        let mut sent = 0u8;
        for fd in fds {
            if sys::send(self.fd_sock.as_fd(), &[], &[fd.as_fd()]).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    }

    /// Server: serves the channel until the client ends it. `handle`
    /// maps a request (MID, payload) to a response (MID, payload, FDs to
    /// donate). Requests that announce FDs are answered with EINVAL (the
    /// FDs are taken off the fdchannel and closed). Returns `Ok(())` when
    /// the client sent the zero-length datagram or the channel was shut
    /// down or its peer went away; an error when the client broke the
    /// protocol (the channel is then shut down).
    pub fn serve<F>(&self, mut handle: F) -> Result<(), ChannelError>
    where
        F: FnMut(u16, &[u8]) -> (u16, Vec<u8>, Vec<OwnedFd>),
    {
        let res = self.serve_inner(&mut handle);
        self.ep.shutdown();
        match res {
            Err(e) if e.is_shutdown() => Ok(()),
            r => r,
        }
    }

    fn serve_inner(&self, handle: &mut Handler<'_>) -> Result<(), ChannelError> {
        let watch = Some(self.fd_sock.as_fd());
        let mut len = self.ep.recv_first(watch)?;
        while len != 0 {
            let (mid, num_fds, payload) = self.read_datagram(len)?;
            let (rmid, rpayload, rfds) = if num_fds != 0 {
                let mut junk = Vec::new();
                self.recv_fds(usize::from(num_fds), &mut junk)?;
                error_reply(libc::EINVAL)
            } else if payload.len() as u64 > u64::from(self.max) {
                // Fits the window but not the message size: EIO, as the
                // socket answers an oversize request.
                error_reply(libc::EIO)
            } else {
                handle(mid, &payload)
            };
            let (rmid, rpayload, rfds) = if rpayload.len() as u64 > u64::from(self.max) {
                error_reply(libc::EIO)
            } else {
                (rmid, rpayload, rfds)
            };
            let sent = self.send_fds(&rfds);
            drop(rfds);
            self.ep.write_data(0, &encode_header(rmid, sent))?;
            self.ep.write_data(CHANNEL_HEADER_SIZE, &rpayload)?;
            len = self
                .ep
                .send_recv((CHANNEL_HEADER_SIZE + rpayload.len()) as u32, watch)?;
        }
        Ok(())
    }
}

fn error_reply(errno: i32) -> (u16, Vec<u8>, Vec<OwnedFd>) {
    let payload = Response::Error(ErrorResp {
        errno: errno as u32,
    })
    .encode()
    .unwrap_or_default();
    (Mid::Error.raw(), payload, Vec::new())
}

/// A server connection's packet-window memory: one sealed memfd, grown by
/// doubling, with windows handed out back to back from offset 0.
#[derive(Debug)]
pub struct WindowAllocator {
    file: File,
    size: u64,
    next: u64,
}

impl WindowAllocator {
    /// Creates the memfd (`flipcall_packet_windows`, close-on-exec, sealed
    /// against shrinking and further sealing), one page long.
    pub fn new() -> io::Result<WindowAllocator> {
        let file = shm::memfd_create(WINDOW_MEMFD_NAME)?;
        let size = shm::page_size() as u64;
        file.set_len(size)?;
        shm::add_seals(file.as_fd(), libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL)?;
        Ok(WindowAllocator {
            file,
            size,
            next: 0,
        })
    }

    fn allocate(&mut self, len: u64) -> io::Result<u64> {
        let off = self.next;
        let end = off
            .checked_add(len)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        let mut size = self.size;
        while size < end {
            size = size
                .checked_mul(2)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        }
        if size != self.size {
            self.file.set_len(size)?;
            self.size = size;
        }
        self.next = end;
        Ok(off)
    }

    /// Server: allocates a window for `max_message_size`, maps it, and
    /// creates the fdchannel. Returns our end of the channel, the Channel
    /// response, and the two FDs to donate in order (a dup of the memfd,
    /// the client end of the fdchannel). Serve the channel with
    /// [`Channel::serve`] (typically on its own thread).
    pub fn create_channel(
        &mut self,
        max_message_size: u32,
    ) -> Result<(Channel, ChannelResp, [OwnedFd; 2]), ChannelError> {
        let max = max_message_size.min(HARD_MAX_MESSAGE_SIZE);
        let len = window_size(max);
        let off = self.allocate(len as u64)?;
        let map = Mapping::map(self.file.as_fd(), off, len)?;
        let ep = Endpoint::new(map, Side::Server)?;
        let (ours, theirs) = sys::seqpacket_pair()?;
        let mem = self.file.as_fd().try_clone_to_owned()?;
        let resp = ChannelResp {
            data_offset: off as i64,
            data_length: len as u64,
        };
        Ok((
            Channel {
                ep,
                fd_sock: ours,
                max,
            },
            resp,
            [mem, theirs],
        ))
    }
}
