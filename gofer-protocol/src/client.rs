//! A synchronous lisafs client over the socket communicator and, once
//! opened, flipcall channels: one request at a time per communicator, its
//! response, and the host FDs donated with it.
//!
//! After [`Client::open_channels`], a call takes an idle channel (the most
//! recently used first, as upstream does) and falls back to the socket
//! only when none is idle. A channel whose transport fails is shut down
//! and dropped; the others and the socket stay usable.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use abi::Errno;
use thiserror::Error;

use crate::channel::{self, Channel, ChannelError};
use crate::message::{DecodeError, EncodeError, Mid, MountResp, Request, Response};
use crate::sock::{self, FrameError, Message, DEFAULT_MAX_MESSAGE_SIZE, HARD_MAX_MESSAGE_SIZE};

/// Why a call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The server answered with the error response.
    #[error("gofer returned {0:?} ({0})")]
    Remote(Errno),
    /// The request could not be encoded.
    #[error("cannot encode lisafs request: {0}")]
    Encode(#[from] EncodeError),
    /// The connection failed or the peer sent a bad frame.
    #[error("lisafs transport: {0}")]
    Frame(#[from] FrameError),
    /// A channel failed (it has been shut down and dropped).
    #[error("{0}")]
    Channel(#[from] ChannelError),
    /// The response payload is malformed.
    #[error("malformed lisafs {mid:?} response: {err}")]
    Decode { mid: Mid, err: DecodeError },
    /// The response's MID is neither the request's nor Error.
    #[error("lisafs {sent:?} request answered with message id {got}")]
    WrongMid { sent: Mid, got: u16 },
    /// The response came with a number of FDs its MID does not allow.
    #[error("lisafs {mid:?} response carried {got} FDs; expected {min} to {max}")]
    FdCount {
        mid: Mid,
        got: usize,
        min: usize,
        max: usize,
    },
    /// The server did not advertise this MID in its Mount response.
    #[error("the gofer does not support lisafs {0:?}")]
    Unsupported(Mid),
}

impl ClientError {
    /// The errno the Sentry should surface: the server's own for
    /// [`ClientError::Remote`], EOPNOTSUPP for unsupported messages, EIO
    /// for everything else (as the Go client does).
    pub fn errno(&self) -> Errno {
        match self {
            ClientError::Remote(e) => *e,
            ClientError::Unsupported(_) => Errno::EOPNOTSUPP,
            _ => Errno::EIO,
        }
    }
}

#[derive(Debug)]
struct State {
    max_message_size: u32,
    supported: Option<Vec<u16>>,
}

/// A lisafs client on one socket and its channels. Calls on the socket
/// are serialised; each channel carries one call at a time, so up to
/// (channels + 1) calls run at once.
#[derive(Debug)]
pub struct Client {
    sock: UnixStream,
    state: Mutex<State>,
    /// Idle channels, a LIFO.
    idle: Mutex<Vec<Channel>>,
    /// Calls answered over a channel.
    channel_calls: AtomicU64,
}

impl Client {
    /// Wraps the client end of a lisafs socket. Call [`Client::mount`]
    /// first.
    pub fn new(sock: UnixStream) -> Client {
        Client {
            sock,
            state: Mutex::new(State {
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                supported: None,
            }),
            idle: Mutex::new(Vec::new()),
            channel_calls: AtomicU64::new(0),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Channel>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many calls were answered over a channel rather than the socket.
    pub fn channel_calls(&self) -> u64 {
        self.channel_calls.load(Ordering::Relaxed)
    }

    /// How many channels are idle (all of them when no call is running).
    pub fn idle_channels(&self) -> usize {
        self.idle().len()
    }

    /// Opens up to `want` channels with the Channel RPC (after Mount).
    /// Returns how many were opened: 0 if the server does not advertise
    /// Channel. ENOMEM (the server's channel limit) ends the attempt
    /// quietly once at least one channel exists; any other failure, or
    /// ENOMEM before the first channel, is returned (channels opened so far
    /// stay in use).
    pub fn open_channels(&self, want: usize) -> Result<usize, ClientError> {
        let (max, supported) = {
            let st = self.lock();
            let ok = st
                .supported
                .as_ref()
                .is_some_and(|s| s.contains(&Mid::Channel.raw()));
            (st.max_message_size, ok)
        };
        if !supported {
            return Ok(0);
        }
        let mut opened = 0;
        for _ in 0..want {
            let (resp, fds) = match self.call_socket(Mid::Channel, &[]) {
                Ok(r) => r,
                Err(ClientError::Remote(abi::Errno::ENOMEM)) if opened > 0 => break,
                Err(e) => return Err(e),
            };
            let Response::Channel(cr) = resp else {
                unreachable!("call_socket() checks the response MID");
            };
            let mut fds = fds.into_iter();
            let (Some(mem), Some(fdsock)) = (fds.next(), fds.next()) else {
                unreachable!("call_socket() checks Channel's FD count");
            };
            let ch = Channel::connect(&cr, mem, fdsock, max)?;
            self.idle().push(ch);
            opened += 1;
        }
        Ok(opened)
    }

    /// Opens as many channels as upstream's client would
    /// ([`channel::max_channels`]).
    pub fn open_default_channels(&self) -> Result<usize, ClientError> {
        self.open_channels(channel::max_channels())
    }

    /// The underlying socket (e.g. to set a read timeout).
    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }

    /// Whether the server's Mount reply listed `mid` (before Mount: true,
    /// as nothing is known yet).
    pub fn supports(&self, mid: Mid) -> bool {
        self.lock()
            .supported
            .as_ref()
            .is_none_or(|s| s.contains(&mid.raw()))
    }

    /// The current max payload size (the server's after Mount).
    pub fn max_message_size(&self) -> u32 {
        self.lock().max_message_size
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends Mount, the first RPC of a connection, and adopts the server's
    /// max message size (clamped to [`HARD_MAX_MESSAGE_SIZE`]) and
    /// supported-MID list. Returns the response and the mount-point FD if
    /// the server donated one (upstream directfs only).
    pub fn mount(&self) -> Result<(MountResp, Option<OwnedFd>), ClientError> {
        let (resp, mut fds) = self.call(&Request::Mount)?;
        let Response::Mount(m) = resp else {
            unreachable!("call() checks the response MID");
        };
        let mut st = self.lock();
        st.max_message_size = m.max_message_size.min(HARD_MAX_MESSAGE_SIZE);
        st.supported = Some(m.supported.clone());
        Ok((m, fds.pop()))
    }

    /// Sends `req` and waits for its response. Returns the decoded response
    /// and the FDs donated with it (their count checked against the MID);
    /// the error response becomes [`ClientError::Remote`]. Uses an idle
    /// channel if there is one, else the socket; Mount and Channel always
    /// go over the socket.
    pub fn call(&self, req: &Request) -> Result<(Response, Vec<OwnedFd>), ClientError> {
        let mid = req.mid();
        let payload = req.encode()?;
        if mid == Mid::Mount || mid == Mid::Channel {
            return self.call_socket(mid, &payload);
        }
        self.check_supported(mid)?;
        let Some(ch) = self.idle().pop() else {
            return self.call_socket(mid, &payload);
        };
        match ch.call(mid.raw(), &payload) {
            Ok(msg) => {
                self.idle().push(ch);
                self.channel_calls.fetch_add(1, Ordering::Relaxed);
                finish(mid, msg)
            }
            Err(e) => {
                // The channel is out of step or dead: retire it.
                ch.shutdown();
                Err(e.into())
            }
        }
    }

    /// Like [`Client::call`] but always over the socket.
    pub fn call_on_socket(&self, req: &Request) -> Result<(Response, Vec<OwnedFd>), ClientError> {
        self.call_socket(req.mid(), &req.encode()?)
    }

    fn check_supported(&self, mid: Mid) -> Result<(), ClientError> {
        if let Some(supported) = &self.lock().supported {
            if !supported.contains(&mid.raw()) {
                return Err(ClientError::Unsupported(mid));
            }
        }
        Ok(())
    }

    fn call_socket(
        &self,
        mid: Mid,
        payload: &[u8],
    ) -> Result<(Response, Vec<OwnedFd>), ClientError> {
        // Held for the whole exchange: one outstanding request per socket.
        let st = self.lock();
        if let Some(supported) = &st.supported {
            if !supported.contains(&mid.raw()) {
                return Err(ClientError::Unsupported(mid));
            }
        }
        sock::write_message(&self.sock, mid.raw(), payload, &[], st.max_message_size)?;
        let (_, max) = mid.response_fds();
        let msg = sock::read_message(&self.sock, st.max_message_size, max)?;
        drop(st);
        finish(mid, msg)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Shut the channels down before the socket closes, so the server's
        // channel threads wake at once.
        for ch in self.idle().drain(..) {
            ch.shutdown();
        }
    }
}

/// Checks a response against the request's MID and decodes it.
fn finish(mid: Mid, msg: Message) -> Result<(Response, Vec<OwnedFd>), ClientError> {
    let (min, max) = mid.response_fds();
    if msg.mid == Mid::Error.raw() {
        // Any FDs sent along are closed when `msg` drops.
        let resp = Response::decode(msg.mid, &msg.payload).map_err(|err| ClientError::Decode {
            mid: Mid::Error,
            err,
        })?;
        let Response::Error(e) = resp else {
            unreachable!("MID 0 decodes to Response::Error");
        };
        let errno = i32::try_from(e.errno)
            .ok()
            .and_then(Errno::new)
            .unwrap_or(Errno::EIO);
        return Err(ClientError::Remote(errno));
    }
    if msg.mid != mid.raw() {
        return Err(ClientError::WrongMid {
            sent: mid,
            got: msg.mid,
        });
    }
    let got = msg.fds.len();
    if got < min || got > max {
        return Err(ClientError::FdCount { mid, got, min, max });
    }
    let resp =
        Response::decode(msg.mid, &msg.payload).map_err(|err| ClientError::Decode { mid, err })?;
    Ok((resp, msg.fds))
}
