//! urpc: the control-plane RPC between the runsc CLI and the sandbox
//! (upstream `pkg/urpc` over `pkg/unet`; protocol notes §4.2).
//!
//! A call is one JSON value `{"method":"Type.Method","arg":...}`, a reply
//! one JSON value `{"success":bool,"err":"...","result":...}`, each written
//! as Go's `encoding/json` writes it: compact, no length prefix, no
//! newline. File descriptors travel as one SCM_RIGHTS message on the first
//! `sendmsg` of a message. A reader takes the FDs from its first `recvmsg`
//! of a message and then parses exactly one JSON value.
//!
//! Upstream's server answers an unknown method with `unknown method`, an
//! argument that does not decode with Go's JSON error text ([`go`] builds
//! those texts), and a request that is not a JSON object with the right
//! shape by closing the connection without a reply.
//!
//! Surface: [`Conn`] (one connection: [`Conn::read_message`],
//! [`Conn::write_message`]), [`Client`], [`Server`] with the [`Dispatch`]
//! trait a receiver implements, and the message codecs in [`wire`].

pub mod go;
use fdpass as sys;
pub mod wire;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use wire::{Request, Response};

/// Most FDs one message may carry (upstream's `maxFiles`).
pub const MAX_FILES: usize = 128;

/// Largest message this implementation reads (upstream has no bound; a
/// bound keeps a hostile peer from exhausting memory).
pub const MAX_MESSAGE: usize = 16 << 20;

/// What can go wrong on a connection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer closed the connection before a whole message arrived.
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The bytes are not one well-formed message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The remote method failed; its error text (upstream's `RemoteError`).
    #[error("{0}")]
    Remote(String),
}

/// One urpc connection (either end).
pub struct Conn {
    sock: UnixStream,
    /// Bytes received but not yet parsed.
    buf: Vec<u8>,
    pos: usize,
}

/// Serves buffered bytes, then receives more; FDs arriving with any
/// `recvmsg` go to `files`.
struct Reader<'a> {
    conn: &'a mut Conn,
    files: &'a mut Vec<OwnedFd>,
    /// Bytes of the current message consumed so far.
    taken: usize,
}

impl io::Read for Reader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.conn.pos == self.conn.buf.len() {
            self.conn.fill(self.files)?;
            if self.conn.pos == self.conn.buf.len() {
                return Ok(0);
            }
        }
        let avail = &self.conn.buf[self.conn.pos..];
        let n = avail.len().min(out.len());
        if self.taken + n > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("message longer than {MAX_MESSAGE} bytes"),
            ));
        }
        out[..n].copy_from_slice(&avail[..n]);
        self.conn.pos += n;
        self.taken += n;
        Ok(n)
    }
}

impl Conn {
    pub fn new(sock: UnixStream) -> Conn {
        Conn {
            sock,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Connect to a server's socket.
    pub fn connect(path: &Path) -> io::Result<Conn> {
        Ok(Conn::new(UnixStream::connect(path)?))
    }

    /// One `recvmsg` into the (empty) buffer, taking FDs that come with it.
    fn fill(&mut self, files: &mut Vec<OwnedFd>) -> io::Result<()> {
        self.buf.resize(64 * 1024, 0);
        self.pos = 0;
        let room = MAX_FILES.saturating_sub(files.len());
        let before = files.len();
        let n = sys::recv(self.sock.as_fd(), &mut self.buf, room, files);
        self.buf.truncate(*n.as_ref().unwrap_or(&0));
        let n = n?;
        if files.len() > before + room {
            files.truncate(before + room);
        }
        if n == 0 {
            self.buf.clear();
        }
        Ok(())
    }

    /// Read one message: its JSON value and the FDs that came with it.
    /// [`Error::Closed`] if the peer closed the connection between
    /// messages.
    pub fn read_message(&mut self) -> Result<(Value, Vec<OwnedFd>), Error> {
        let mut files = Vec::new();
        if self.pos == self.buf.len() {
            self.fill(&mut files)?;
            if self.buf.is_empty() {
                return Err(Error::Closed);
            }
        }
        let reader = Reader {
            conn: self,
            files: &mut files,
            taken: 0,
        };
        let mut stream = serde_json::Deserializer::from_reader(reader).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => Ok((v, files)),
            Some(Err(e)) if e.is_eof() => Err(Error::Closed),
            Some(Err(e)) => Err(Error::Malformed(e.to_string())),
            None => Err(Error::Closed),
        }
    }

    /// Write one message (already encoded) with `files` attached to its
    /// first `sendmsg`.
    pub fn write_message(&mut self, bytes: &[u8], files: &[BorrowedFd<'_>]) -> Result<(), Error> {
        if files.len() > MAX_FILES {
            return Err(Error::Malformed("too many files".into()));
        }
        let mut sent = 0;
        let mut fds = files;
        while sent < bytes.len() {
            let n = sys::send(self.sock.as_fd(), &bytes[sent..], fds)?;
            fds = &[];
            sent += n;
        }
        Ok(())
    }

    /// The underlying socket (for tests that write raw bytes).
    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }
}

/// The calling end: one call at a time on one connection.
pub struct Client {
    conn: Conn,
}

impl Client {
    pub fn connect(path: &Path) -> io::Result<Client> {
        Ok(Client {
            conn: Conn::connect(path)?,
        })
    }

    pub fn new(sock: UnixStream) -> Client {
        Client {
            conn: Conn::new(sock),
        }
    }

    /// The connection's descriptor number.
    pub fn socket_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(self.conn.socket())
    }

    /// Call `method` with `arg`, sending `files` along; the result value
    /// and any FDs it carried. A method failure is [`Error::Remote`].
    pub fn call(
        &mut self,
        method: &str,
        arg: &impl serde::Serialize,
        files: &[BorrowedFd<'_>],
    ) -> Result<(Value, Vec<OwnedFd>), Error> {
        let arg = serde_json::to_value(arg).map_err(|e| Error::Malformed(e.to_string()))?;
        let bytes = wire::encode_request(method, &arg);
        self.conn.write_message(&bytes, files)?;
        let (v, fds) = self.conn.read_message()?;
        let resp = wire::decode_response(&v).map_err(Error::Malformed)?;
        if resp.success {
            Ok((resp.result, fds))
        } else {
            Err(Error::Remote(resp.err))
        }
    }
}

/// Why a method call failed, as the reply says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No such method is registered.
    UnknownMethod,
    /// The argument did not decode, or the method failed: the text.
    Failed(String),
}

impl<E: std::fmt::Display> From<E> for CallError {
    fn from(e: E) -> Self {
        CallError::Failed(e.to_string())
    }
}

/// A method's successful outcome.
#[derive(Debug)]
pub struct Reply {
    /// The result, encoded as Go would (see [`wire::to_go_json`]).
    pub result: Vec<u8>,
    /// FDs sent with the reply (a `FilePayload` result).
    pub files: Vec<OwnedFd>,
}

impl Reply {
    pub fn value(v: impl serde::Serialize) -> Reply {
        Reply {
            result: wire::to_go_json(&v),
            files: Vec::new(),
        }
    }

    /// `{}`: what a `*struct{}` result encodes to.
    pub fn empty() -> Reply {
        Reply::value(serde_json::Map::new())
    }
}

/// The server's receivers: one call, by full method name.
pub trait Dispatch: Send + Sync + 'static {
    /// Handle `method` with its raw argument and the FDs that came with
    /// the call (closed after the call unless the handler keeps them).
    fn call(&self, method: &str, arg: &Value, files: Vec<OwnedFd>) -> Result<Reply, CallError>;
}

/// Serves calls on accepted connections, one thread per connection.
pub struct Server {
    dispatch: Arc<dyn Dispatch>,
    inflight: Arc<AtomicUsize>,
}

impl Server {
    pub fn new(dispatch: Arc<dyn Dispatch>) -> Arc<Server> {
        Arc::new(Server {
            dispatch,
            inflight: Arc::default(),
        })
    }

    /// Accept connections on `listener` forever (on the calling thread).
    pub fn serve(self: &Arc<Self>, listener: UnixListener) {
        for conn in listener.incoming() {
            match conn {
                Ok(sock) => {
                    let me = self.clone();
                    let spawned = std::thread::Builder::new()
                        .name("urpc-conn".into())
                        .spawn(move || me.serve_conn(Conn::new(sock)));
                    if let Err(e) = spawned {
                        tracing::warn!("urpc: no thread for a connection: {e}");
                    }
                }
                Err(e) => {
                    tracing::warn!("urpc: accept: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Serve one connection until the client closes it or sends
    /// something that is not a call (upstream drops such a client).
    pub fn serve_conn(&self, mut conn: Conn) {
        loop {
            let (v, files) = match conn.read_message() {
                Ok(m) => m,
                Err(Error::Closed) => return,
                Err(e) => {
                    tracing::warn!("urpc: dropping a client: {e}");
                    return;
                }
            };
            let req = match wire::decode_request(&v) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("urpc: dropping a client: {e}");
                    return;
                }
            };
            self.inflight.fetch_add(1, Ordering::SeqCst);
            let outcome = self.dispatch.call(&req.method, &req.arg, files);
            let (bytes, reply_files) = match outcome {
                Ok(reply) if reply.files.len() > MAX_FILES => {
                    (wire::encode_error("too many files"), Vec::new())
                }
                Ok(reply) => (wire::encode_success(&reply.result), reply.files),
                Err(CallError::UnknownMethod) => (wire::encode_error("unknown method"), Vec::new()),
                Err(CallError::Failed(msg)) => (wire::encode_error(&msg), Vec::new()),
            };
            let borrowed: Vec<BorrowedFd<'_>> = reply_files.iter().map(|f| f.as_fd()).collect();
            let wrote = conn.write_message(&bytes, &borrowed);
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            if let Err(e) = wrote {
                tracing::debug!("urpc: writing a reply: {e}");
                return;
            }
        }
    }

    /// Wait until no call is being handled, for at most `limit`.
    pub fn wait_idle(&self, limit: Duration) {
        let end = Instant::now() + limit;
        while self.inflight.load(Ordering::SeqCst) > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
