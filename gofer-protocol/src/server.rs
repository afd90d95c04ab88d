//! The server side of lisafs: a connection loop and an FDID table around a
//! file server that implements [`FileServer`].
//!
//! The framework owns everything that is the same for every file server:
//! framing, the pre-dispatch checks of §1.3 (oversize payload → EIO, MID 0
//! → EINVAL, unknown or unadvertised MID → EOPNOTSUPP, undecodable payload
//! → EIO, handler panic → EREMOTEIO, oversize response → EIO), the error
//! response (MID 0 carrying an errno), Mount's supported-MID list, Close,
//! Channel (a flipcall window and fdchannel per channel, each served on its
//! own thread with the same checks as the socket), and the per-connection
//! FDID table (first FDID 1, never reused, 0 never valid). The file server sees decoded requests and answers with decoded
//! responses plus the host FDs to donate.
//!
//! A malformed or hostile client gets an error response or a closed
//! connection; nothing it sends makes the server panic or allocate more
//! than the connection's max message size per request.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use abi::Errno;
use thiserror::Error;

use crate::channel::{self, Channel, WindowAllocator};
use crate::message::{ErrorResp, FdId, Mid, MountResp, Request, Response, Statx};
use crate::sock::{self, FrameError, Incoming, GO_SERVER_MAX_MESSAGE_SIZE};

/// Errnos the framework answers with that `abi::Errno` has no name for.
mod errno {
    use abi::Errno;
    /// EREMOTEIO: the handler failed in a way that has no better errno.
    pub(super) fn eremoteio() -> Errno {
        Errno::new(libc::EREMOTEIO).unwrap_or(Errno::EIO)
    }
}

/// The errno for a failed host call (EIO if it has none).
fn io_errno(e: &std::io::Error) -> Errno {
    e.raw_os_error().and_then(Errno::new).unwrap_or(Errno::EIO)
}

/// A successful answer: the response and the host FDs donated with it.
#[derive(Debug)]
pub struct Reply {
    pub resp: Response,
    pub fds: Vec<OwnedFd>,
}

impl Reply {
    /// A response that donates no FDs.
    pub fn new(resp: Response) -> Reply {
        Reply {
            resp,
            fds: Vec::new(),
        }
    }

    /// A response with donated FDs.
    pub fn with_fds(resp: Response, fds: Vec<OwnedFd>) -> Reply {
        Reply { resp, fds }
    }
}

/// A lisafs file server: what the gofer implements.
///
/// `Control` is the server's object behind a control FD (a handle on a
/// file), `Open` the one behind an open FD. The framework stores them in
/// the connection's FDID table behind `Arc`s; closing an FDID drops the
/// table's reference.
pub trait FileServer: Send + Sync + 'static {
    /// The object behind a control FD.
    type Control: Send + Sync + 'static;
    /// The object behind an open FD.
    type Open: Send + Sync + 'static;

    /// The MIDs [`FileServer::handle`] implements. Mount and Close are the
    /// framework's and are always advertised; a MID not listed here (or
    /// one the framework handles) never reaches `handle`.
    fn supported(&self) -> &[Mid];

    /// The largest payload either side may send on this connection.
    fn max_message_size(&self) -> u32 {
        GO_SERVER_MAX_MESSAGE_SIZE
    }

    /// Mount: open the connection's root. Returns the root's control
    /// object, its stat, and optionally a host FD to donate (directfs).
    fn mount(&self) -> Result<(Self::Control, Statx, Option<OwnedFd>), Errno>;

    /// Every other supported request.
    fn handle(&self, req: Request, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno>;
}

/// One entry of the FDID table.
enum Entry<S: FileServer + ?Sized> {
    Control(Arc<S::Control>),
    Open(Arc<S::Open>),
}

/// The per-connection FDID table. FDIDs count up from 1 and are never
/// reused; 0 is never valid.
struct FdTable<S: FileServer + ?Sized> {
    next: FdId,
    entries: HashMap<FdId, Entry<S>>,
}

/// The most FDIDs one connection may hold at once. Each holds host
/// resources, so a client that never closes runs into this (ENFILE)
/// rather than exhausting the gofer.
pub const MAX_FDIDS: usize = 1 << 20;

impl<S: FileServer + ?Sized> FdTable<S> {
    fn new() -> Self {
        FdTable {
            next: 1,
            entries: HashMap::new(),
        }
    }

    fn insert(&mut self, e: Entry<S>) -> Result<FdId, Errno> {
        if self.entries.len() >= MAX_FDIDS {
            return Err(Errno::ENFILE);
        }
        let id = self.next;
        // u64 FDIDs cannot run out in practice; refuse rather than wrap.
        self.next = self.next.checked_add(1).ok_or(Errno::ENFILE)?;
        self.entries.insert(id, e);
        Ok(id)
    }
}

/// The channels of one connection.
struct Channels {
    /// Set once the connection ends: no more channels (ENOSYS).
    closed: bool,
    /// The window memfd, created with the first channel.
    alloc: Option<WindowAllocator>,
    live: Vec<(Arc<Channel>, JoinHandle<()>)>,
}

/// Shared state of one connection (the socket and its channels).
struct Conn<S: FileServer> {
    server: Arc<S>,
    max: u32,
    supported: Vec<u16>,
    table: Mutex<FdTable<S>>,
    channels: Mutex<Channels>,
}

/// What a handler sees of its connection: the FDID table and limits.
pub struct Ctx<'a, S: FileServer + ?Sized> {
    table: &'a Mutex<FdTable<S>>,
    max: u32,
}

impl<S: FileServer + ?Sized> Ctx<'_, S> {
    fn lock(&self) -> MutexGuard<'_, FdTable<S>> {
        // A panicking handler never holds this lock (it is taken and
        // released inside these short methods), so poisoning carries no
        // torn state; take the table anyway.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection's max payload size.
    pub fn max_message_size(&self) -> u32 {
        self.max
    }

    /// The control object behind `id`: EBADF if there is none, EINVAL if
    /// `id` is an open FD.
    pub fn control(&self, id: FdId) -> Result<Arc<S::Control>, Errno> {
        match self.lock().entries.get(&id) {
            Some(Entry::Control(c)) => Ok(c.clone()),
            Some(Entry::Open(_)) => Err(Errno::EINVAL),
            None => Err(Errno::EBADF),
        }
    }

    /// The open object behind `id`: EBADF if there is none, EINVAL if `id`
    /// is a control FD.
    pub fn open(&self, id: FdId) -> Result<Arc<S::Open>, Errno> {
        match self.lock().entries.get(&id) {
            Some(Entry::Open(o)) => Ok(o.clone()),
            Some(Entry::Control(_)) => Err(Errno::EINVAL),
            None => Err(Errno::EBADF),
        }
    }

    /// Whether `id` names a control FD (false) or an open FD (true); EBADF
    /// if it names nothing.
    pub fn is_open(&self, id: FdId) -> Result<bool, Errno> {
        match self.lock().entries.get(&id) {
            Some(Entry::Open(_)) => Ok(true),
            Some(Entry::Control(_)) => Ok(false),
            None => Err(Errno::EBADF),
        }
    }

    /// Adds a control FD and returns its new FDID.
    pub fn insert_control(&self, c: S::Control) -> Result<FdId, Errno> {
        self.lock().insert(Entry::Control(Arc::new(c)))
    }

    /// Adds a control FD the server keeps a reference to (e.g. one an
    /// open FD also points at).
    pub fn insert_control_arc(&self, c: Arc<S::Control>) -> Result<FdId, Errno> {
        self.lock().insert(Entry::Control(c))
    }

    /// Adds several control FDs at once (all or none), e.g. for Walk.
    pub fn insert_controls(&self, cs: Vec<S::Control>) -> Result<Vec<FdId>, Errno> {
        let mut t = self.lock();
        if t.entries.len() + cs.len() > MAX_FDIDS {
            return Err(Errno::ENFILE);
        }
        cs.into_iter()
            .map(|c| t.insert(Entry::Control(Arc::new(c))))
            .collect()
    }

    /// Adds an open FD and returns its new FDID.
    pub fn insert_open(&self, o: S::Open) -> Result<FdId, Errno> {
        self.lock().insert(Entry::Open(Arc::new(o)))
    }

    /// Removes `id` (unknown ids are ignored, as Close does).
    pub fn remove(&self, id: FdId) {
        let e = self.lock().entries.remove(&id);
        // Dropped outside the lock: releasing host FDs may take a while.
        drop(e);
    }

    /// How many FDIDs the connection holds.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the connection holds no FDIDs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a connection ended other than by the peer closing it cleanly.
#[derive(Debug, Error)]
pub enum ServeError {
    /// Reading a request or writing a response failed.
    #[error("lisafs connection failed: {0}")]
    Frame(#[from] FrameError),
}

/// An encoded answer ready for the wire.
struct Wire {
    mid: u16,
    payload: Vec<u8>,
    fds: Vec<OwnedFd>,
}

fn error_wire(e: Errno) -> Wire {
    let payload = Response::Error(ErrorResp {
        errno: e.raw() as u32,
    })
    .encode()
    .unwrap_or_default();
    Wire {
        mid: Mid::Error.raw(),
        payload,
        fds: Vec::new(),
    }
}

impl<S: FileServer> Conn<S> {
    fn new(server: Arc<S>) -> Self {
        let max = server.max_message_size().min(sock::HARD_MAX_MESSAGE_SIZE);
        let mut supported: Vec<u16> = [Mid::Mount, Mid::Channel, Mid::Close]
            .iter()
            .chain(server.supported())
            .filter(|m| **m != Mid::Error)
            .map(|m| m.raw())
            .collect();
        supported.sort_unstable();
        supported.dedup();
        Conn {
            server,
            max,
            supported,
            table: Mutex::new(FdTable::new()),
            channels: Mutex::new(Channels {
                closed: false,
                alloc: None,
                live: Vec::new(),
            }),
        }
    }

    fn channels(&self) -> MutexGuard<'_, Channels> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Channel: allocates a window and an fdchannel, starts a thread
    /// serving it, and answers with the window's place and the two FDs
    /// (memfd, client end of the fdchannel).
    fn open_channel(self: &Arc<Self>) -> Result<Reply, Errno> {
        let mut set = self.channels();
        if set.closed {
            return Err(Errno::ENOSYS);
        }
        if set.live.len() >= channel::max_channels() {
            return Err(Errno::ENOMEM);
        }
        if set.alloc.is_none() {
            set.alloc = Some(WindowAllocator::new().map_err(|e| io_errno(&e))?);
        }
        let alloc = set.alloc.as_mut().ok_or(Errno::ENOMEM)?;
        let (ch, resp, fds) = alloc.create_channel(self.max).map_err(|e| match e {
            channel::ChannelError::Io(e) => io_errno(&e),
            _ => Errno::ENOMEM,
        })?;
        let ch = Arc::new(ch);
        let conn = Arc::clone(self);
        let served = Arc::clone(&ch);
        let thread = std::thread::Builder::new()
            .name("lisafs-channel".into())
            .spawn(move || {
                // A protocol error from the client ends this channel only;
                // the channel is shut down either way.
                let _ = served.serve(|mid, payload| {
                    let w = conn.dispatch(mid, payload);
                    (w.mid, w.payload, w.fds)
                });
            })
            .map_err(|_| Errno::EAGAIN)?;
        set.live.push((ch, thread));
        Ok(Reply::with_fds(
            Response::Channel(resp),
            fds.into_iter().collect(),
        ))
    }

    /// Ends every channel and waits for their threads.
    fn close_channels(&self) {
        let live = {
            let mut set = self.channels();
            set.closed = true;
            std::mem::take(&mut set.live)
        };
        for (ch, _) in &live {
            ch.shutdown();
        }
        for (_, t) in live {
            let _ = t.join();
        }
    }

    fn ctx(&self) -> Ctx<'_, S> {
        Ctx {
            table: &self.table,
            max: self.max,
        }
    }

    /// Handles one request and encodes the answer, applying §1.3's checks
    /// in upstream's order.
    fn dispatch(self: &Arc<Self>, mid: u16, payload: &[u8]) -> Wire {
        if payload.len() as u64 > u64::from(self.max) {
            return error_wire(Errno::EIO);
        }
        if mid == Mid::Error.raw() {
            return error_wire(Errno::EINVAL);
        }
        let Some(m) = Mid::from_u16(mid) else {
            return error_wire(Errno::EOPNOTSUPP);
        };
        if !self.supported.contains(&mid) {
            return error_wire(Errno::EOPNOTSUPP);
        }
        let req = match Request::decode(mid, payload) {
            Ok(r) => r,
            Err(_) => return error_wire(Errno::EIO),
        };
        let result = catch_unwind(AssertUnwindSafe(|| self.handle(req)));
        let reply = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return error_wire(e),
            Err(_) => return error_wire(errno::eremoteio()),
        };
        if reply.resp.mid() != m {
            // A server bug; answer as upstream answers a failed handler.
            return error_wire(errno::eremoteio());
        }
        if reply.fds.len() > m.response_fds().1 {
            return error_wire(errno::eremoteio());
        }
        match reply.resp.encode() {
            Ok(p) if p.len() as u64 <= u64::from(self.max) => Wire {
                mid,
                payload: p,
                fds: reply.fds,
            },
            _ => error_wire(Errno::EIO),
        }
    }

    fn handle(self: &Arc<Self>, req: Request) -> Result<Reply, Errno> {
        let ctx = self.ctx();
        match req {
            Request::Mount => {
                let (root, stat, fd) = self.server.mount()?;
                let id = ctx.insert_control(root)?;
                Ok(Reply::with_fds(
                    Response::Mount(MountResp {
                        root: crate::message::Inode {
                            control_fd: id,
                            stat,
                        },
                        max_message_size: self.max,
                        supported: self.supported.clone(),
                    }),
                    fd.into_iter().collect(),
                ))
            }
            Request::Channel => self.open_channel(),
            Request::Close(c) => {
                for id in c.fds {
                    ctx.remove(id);
                }
                Ok(Reply::new(Response::Close))
            }
            req => self.server.handle(req, &ctx),
        }
    }
}

/// Serves one lisafs connection on `sock` until the peer closes it.
/// Returns `Ok(())` when the peer hung up between requests, an error when
/// the transport failed or the peer broke off inside a message. Every FDID
/// of the connection is released when this returns.
pub fn serve<S: FileServer>(server: Arc<S>, sock: UnixStream) -> Result<(), ServeError> {
    let conn = Arc::new(Conn::new(server));
    let res = serve_socket(&conn, &sock);
    // The socket is the session: when it ends, so do the channels.
    conn.close_channels();
    // Release host resources promptly, whatever happened.
    conn.table
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entries
        .clear();
    res
}

fn serve_socket<S: FileServer>(conn: &Arc<Conn<S>>, sock: &UnixStream) -> Result<(), ServeError> {
    loop {
        let wire = match sock::read_request(sock, conn.max) {
            Ok(Incoming::Message(msg)) => conn.dispatch(msg.mid, &msg.payload),
            Ok(Incoming::Oversize { .. }) => error_wire(Errno::EIO),
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let fds: Vec<_> = wire.fds.iter().map(|f| f.as_fd()).collect();
        match sock::write_message(sock, wire.mid, &wire.payload, &fds, conn.max) {
            Ok(()) => {}
            // The peer hung up without reading its answer: a clean end.
            Err(FrameError::Io(e))
                if matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET)) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e.into()),
        }
        // `wire.fds` (our copies of donated FDs) close here.
    }
}
