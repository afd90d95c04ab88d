//! A synchronous lisafs client over the socket communicator: one request
//! at a time, its response, and the host FDs donated with it.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use abi::Errno;
use thiserror::Error;

use crate::message::{DecodeError, EncodeError, Mid, MountResp, Request, Response};
use crate::sock::{self, FrameError, DEFAULT_MAX_MESSAGE_SIZE, HARD_MAX_MESSAGE_SIZE};

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

/// A lisafs client on one socket. Calls are serialised: one outstanding
/// request at a time.
#[derive(Debug)]
pub struct Client {
    sock: UnixStream,
    state: Mutex<State>,
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
        }
    }

    /// The underlying socket (e.g. to set a read timeout).
    pub fn socket(&self) -> &UnixStream {
        &self.sock
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
    /// the error response becomes [`ClientError::Remote`].
    pub fn call(&self, req: &Request) -> Result<(Response, Vec<OwnedFd>), ClientError> {
        let mid = req.mid();
        let payload = req.encode()?;
        // Held for the whole exchange: one outstanding request per socket.
        let st = self.lock();
        if let Some(supported) = &st.supported {
            if !supported.contains(&mid.raw()) {
                return Err(ClientError::Unsupported(mid));
            }
        }
        sock::write_message(&self.sock, mid.raw(), &payload, &[], st.max_message_size)?;
        let (min, max) = mid.response_fds();
        let msg = sock::read_message(&self.sock, st.max_message_size, max)?;
        drop(st);
        if msg.mid == Mid::Error.raw() {
            // Any FDs sent along are closed when `msg` drops.
            let resp =
                Response::decode(msg.mid, &msg.payload).map_err(|err| ClientError::Decode {
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
        let resp = Response::decode(msg.mid, &msg.payload)
            .map_err(|err| ClientError::Decode { mid, err })?;
        Ok((resp, msg.fds))
    }
}
