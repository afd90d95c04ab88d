//! Unix domain sockets, implemented in the Sentry: stream, datagram and
//! seqpacket; socketpair; names in the filesystem (a socket node whose
//! identity maps to the bound socket) and in the abstract namespace (one
//! per sandbox); SCM_RIGHTS carrying open files and SCM_CREDENTIALS
//! carrying sandbox IDs; peer credentials.
//!
//! Readiness changes are announced on each socket's [`Waiters`]; blocking
//! is the syscall layer's business (it waits and retries on EAGAIN).

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use abi::{Errno, Stat};
use vfs::inode::FileOps;
use vfs::waiter::Waiters;

use crate::fs::File;

/// Bytes a socket may have queued for it before senders wait (Linux's
/// default `net.core.wmem_default`-based limit for unix sockets).
const RECV_LIMIT: usize = 212_992;
/// Datagrams queued per socket before senders wait
/// (`net.unix.max_dgram_qlen`).
const DGRAM_QLEN: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SockType {
    Stream,
    Dgram,
    SeqPacket,
}

impl SockType {
    pub fn from_raw(t: i32) -> Option<SockType> {
        match t {
            libc::SOCK_STREAM => Some(SockType::Stream),
            libc::SOCK_DGRAM => Some(SockType::Dgram),
            libc::SOCK_SEQPACKET => Some(SockType::SeqPacket),
            _ => None,
        }
    }

    pub fn raw(self) -> i32 {
        match self {
            SockType::Stream => libc::SOCK_STREAM,
            SockType::Dgram => libc::SOCK_DGRAM,
            SockType::SeqPacket => libc::SOCK_SEQPACKET,
        }
    }

    fn connected(self) -> bool {
        self != SockType::Dgram
    }
}

/// `struct ucred`: who a socket's peer (or a message's sender) is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ucred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// A socket's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Address {
    /// Bound to a path: as given to bind, and the node's (dev, ino).
    Path(Vec<u8>, (u64, u64)),
    /// In the abstract namespace (the name without its leading NUL).
    Abstract(Vec<u8>),
}

impl Address {
    /// The `sockaddr_un` bytes getsockname reports.
    pub fn to_sockaddr(&self) -> Vec<u8> {
        let mut out = (libc::AF_UNIX as u16).to_le_bytes().to_vec();
        match self {
            Address::Path(p, _) => {
                out.extend_from_slice(p);
                out.push(0);
            }
            Address::Abstract(n) => {
                out.push(0);
                out.extend_from_slice(n);
            }
        }
        out
    }

    fn key(&self) -> Key {
        match self {
            Address::Path(_, node) => Key::Node(*node),
            Address::Abstract(n) => Key::Abstract(n.clone()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Node((u64, u64)),
    Abstract(Vec<u8>),
}

/// The names bound in a sandbox.
#[derive(Default)]
pub(crate) struct Registry {
    bound: Mutex<HashMap<Key, Weak<UnixSocket>>>,
}

impl Registry {
    fn lookup(&self, key: &Key) -> Option<Arc<UnixSocket>> {
        self.bound.lock().unwrap().get(key).and_then(Weak::upgrade)
    }

    /// A free abstract name for autobind: five hex digits, as Linux.
    fn autobind_name(&self) -> Vec<u8> {
        let bound = self.bound.lock().unwrap();
        for n in 0u32..0x10_0000 {
            let name = format!("{n:05x}").into_bytes();
            if bound
                .get(&Key::Abstract(name.clone()))
                .is_none_or(|w| w.strong_count() == 0)
            {
                return name;
            }
        }
        b"fffff".to_vec()
    }
}

/// Files and credentials travelling with data.
#[derive(Default)]
pub(crate) struct Control {
    pub rights: Vec<Arc<File>>,
    pub creds: Option<Ucred>,
}

struct Message {
    data: Vec<u8>,
    /// Bytes of `data` already read (stream sockets read messages in parts).
    read: usize,
    rights: Vec<Arc<File>>,
    creds: Ucred,
    from: Option<Address>,
}

struct State {
    bound: Option<Address>,
    /// The other end of a connection, or a datagram socket's default
    /// destination.
    peer: Option<Weak<UnixSocket>>,
    /// Set once connected (stream, seqpacket): a peer that went away then
    /// reads as a hang-up, not as "not connected".
    was_connected: bool,
    peer_creds: Option<Ucred>,
    listen: Option<(usize, VecDeque<Arc<UnixSocket>>)>,
    queue: VecDeque<Message>,
    queued_bytes: usize,
    shut_rd: bool,
    shut_wr: bool,
    /// The peer shut down writing (or closed): reads see EOF after the queue.
    peer_shut_wr: bool,
    passcred: bool,
    /// A pending error for SO_ERROR (ECONNRESET and the like).
    error: Option<Errno>,
}

pub(crate) struct UnixSocket {
    pub ty: SockType,
    /// Who made the socket (reported to a peer by SO_PEERCRED).
    creds: Ucred,
    state: Mutex<State>,
    waiters: Waiters,
    registry: Arc<Registry>,
    me: Weak<UnixSocket>,
}

/// What a receive gives back.
pub(crate) struct Received {
    pub data: Vec<u8>,
    /// The full length of a datagram (larger than `data` when truncated).
    pub full_len: usize,
    pub rights: Vec<Arc<File>>,
    pub creds: Option<Ucred>,
    pub from: Option<Address>,
}

impl UnixSocket {
    pub fn new(ty: SockType, creds: Ucred, registry: &Arc<Registry>) -> Arc<UnixSocket> {
        Arc::new_cyclic(|me| UnixSocket {
            ty,
            creds,
            state: Mutex::new(State {
                bound: None,
                peer: None,
                was_connected: false,
                peer_creds: None,
                listen: None,
                queue: VecDeque::new(),
                queued_bytes: 0,
                shut_rd: false,
                shut_wr: false,
                peer_shut_wr: false,
                passcred: false,
                error: None,
            }),
            waiters: Waiters::default(),
            registry: registry.clone(),
            me: me.clone(),
        })
    }

    /// `socketpair`: two connected sockets.
    pub fn pair(
        ty: SockType,
        creds: Ucred,
        registry: &Arc<Registry>,
    ) -> (Arc<UnixSocket>, Arc<UnixSocket>) {
        let a = UnixSocket::new(ty, creds, registry);
        let b = UnixSocket::new(ty, creds, registry);
        link(&a, &b);
        (a, b)
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn peer(&self) -> Option<Arc<UnixSocket>> {
        self.st().peer.as_ref().and_then(Weak::upgrade)
    }

    /// connect(AF_UNSPEC) of a datagram socket: no default destination.
    pub fn disconnect(&self) {
        let mut st = self.st();
        st.peer = None;
        st.peer_creds = None;
    }

    /// The peer, whose queue a blocked sender waits on.
    pub fn peer_for_wait(&self) -> Option<Arc<UnixSocket>> {
        self.peer()
    }

    pub fn bound(&self) -> Option<Address> {
        self.st().bound.clone()
    }

    pub fn peer_address(&self) -> Result<Option<Address>, Errno> {
        match self.peer() {
            Some(p) => Ok(p.bound()),
            None => Err(Errno::ENOTCONN),
        }
    }

    pub fn peer_creds(&self) -> Option<Ucred> {
        self.st().peer_creds
    }

    pub fn set_passcred(&self, on: bool) {
        self.st().passcred = on;
    }

    pub fn passcred(&self) -> bool {
        self.st().passcred
    }

    /// FIONREAD: bytes queued (stream), or the next datagram's size.
    pub fn pending(&self) -> usize {
        let st = self.st();
        match self.ty {
            SockType::Stream => st.queued_bytes,
            _ => st.queue.front().map_or(0, |m| m.data.len()),
        }
    }

    pub fn take_error(&self) -> Option<Errno> {
        self.st().error.take()
    }

    pub fn is_listening(&self) -> bool {
        self.st().listen.is_some()
    }

    /// Bind to `addr` (None: autobind an abstract name). EINVAL if
    /// already bound, EADDRINUSE if the name is taken.
    pub fn bind(&self, addr: Option<Address>) -> Result<(), Errno> {
        let mut st = self.st();
        if st.bound.is_some() {
            return Err(Errno::EINVAL);
        }
        let addr = addr.unwrap_or_else(|| Address::Abstract(self.registry.autobind_name()));
        let mut bound = self.registry.bound.lock().unwrap();
        let key = addr.key();
        if bound.get(&key).is_some_and(|w| w.strong_count() > 0) {
            return Err(Errno::EADDRINUSE);
        }
        bound.insert(key, self.me.clone());
        st.bound = Some(addr);
        Ok(())
    }

    pub fn listen(&self, backlog: i32) -> Result<(), Errno> {
        if !self.ty.connected() {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut st = self.st();
        if st.peer.is_some() || st.was_connected {
            return Err(Errno::EINVAL);
        }
        if st.bound.is_none() {
            return Err(Errno::EINVAL);
        }
        let backlog = backlog.clamp(1, 4096) as usize;
        match &mut st.listen {
            Some((b, _)) => *b = backlog,
            None => st.listen = Some((backlog, VecDeque::new())),
        }
        Ok(())
    }

    /// The socket bound at `key`, for connect and sendto.
    pub fn find(&self, addr: &Address) -> Result<Arc<UnixSocket>, Errno> {
        self.registry.lookup(&addr.key()).ok_or(Errno::ECONNREFUSED)
    }

    /// connect(2). For stream/seqpacket, `target` must be listening: a new
    /// socket joins its accept queue, connected to this one. EAGAIN when
    /// the queue is full (the caller waits on the target's waiters).
    pub fn connect(&self, target: &Arc<UnixSocket>) -> Result<(), Errno> {
        if target.ty != self.ty {
            return Err(Errno::EPROTOTYPE);
        }
        if !self.ty.connected() {
            let mut st = self.st();
            st.peer = Some(Arc::downgrade(target));
            st.peer_creds = Some(target.creds);
            return Ok(());
        }
        {
            let st = self.st();
            if st.listen.is_some() {
                return Err(Errno::EINVAL);
            }
            if st.peer.is_some() || st.was_connected {
                return Err(Errno::EISCONN);
            }
        }
        let server = UnixSocket::new(self.ty, target.creds, &self.registry);
        {
            let mut t = target.st();
            let name = t.bound.clone();
            let Some((backlog, queue)) = &mut t.listen else {
                return Err(Errno::ECONNREFUSED);
            };
            if queue.len() >= *backlog {
                return Err(Errno::EAGAIN);
            }
            server.st().bound = name;
            link(&server, &self.me.upgrade().ok_or(Errno::EBADF)?);
            queue.push_back(server);
        }
        target.waiters.notify_all();
        Ok(())
    }

    /// accept(2): the next connection, or EAGAIN.
    pub fn accept(&self) -> Result<Arc<UnixSocket>, Errno> {
        if !self.ty.connected() {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut st = self.st();
        let (_, queue) = st.listen.as_mut().ok_or(Errno::EINVAL)?;
        queue.pop_front().ok_or(Errno::EAGAIN)
    }

    /// Send `data` (with `control`) to the peer, or to `to` for datagram
    /// sockets. Returns bytes queued; EAGAIN when nothing fits now; EPIPE
    /// when the connection is gone (the caller raises SIGPIPE).
    pub fn send(
        &self,
        data: &[u8],
        control: Control,
        to: Option<&Arc<UnixSocket>>,
        sender: Ucred,
    ) -> Result<usize, Errno> {
        let from = self.bound();
        let target = match (self.ty, to) {
            (_, Some(t)) if t.ty != self.ty => return Err(Errno::EPROTOTYPE),
            (SockType::Dgram, Some(t)) => t.clone(),
            (SockType::Dgram, None) => {
                let mut st = self.st();
                match st.peer.as_ref().map(Weak::upgrade) {
                    Some(Some(p)) => p,
                    // The peer went away: refused once, then not connected.
                    Some(None) => {
                        st.peer = None;
                        return Err(Errno::ECONNREFUSED);
                    }
                    None => return Err(Errno::ENOTCONN),
                }
            }
            (_, Some(_)) => return Err(Errno::EISCONN),
            (_, None) => {
                let st = self.st();
                if st.shut_wr {
                    return Err(Errno::EPIPE);
                }
                let peer = st.peer.as_ref().and_then(Weak::upgrade);
                match peer {
                    Some(p) => p,
                    None if st.was_connected => return Err(Errno::EPIPE),
                    None => return Err(Errno::ENOTCONN),
                }
            }
        };
        if self.ty == SockType::Dgram && self.st().shut_wr {
            return Err(Errno::EPIPE);
        }
        let creds = control.creds.unwrap_or(sender);
        let n = {
            let mut t = target.st();
            if t.shut_rd && self.ty.connected() {
                return Err(Errno::EPIPE);
            }
            if self.ty == SockType::Dgram {
                if let Some(p) = t.peer.as_ref().and_then(Weak::upgrade) {
                    // A connected datagram socket takes only from its peer.
                    if !std::ptr::eq(Arc::as_ptr(&p), self) {
                        return Err(Errno::EPERM);
                    }
                }
            }
            let room = RECV_LIMIT.saturating_sub(t.queued_bytes);
            let n = match self.ty {
                SockType::Stream => {
                    if room == 0 {
                        return Err(Errno::EAGAIN);
                    }
                    data.len().min(room)
                }
                _ => {
                    if data.len() > RECV_LIMIT {
                        return Err(Errno::EMSGSIZE);
                    }
                    if data.len() > room || t.queue.len() >= DGRAM_QLEN {
                        return Err(Errno::EAGAIN);
                    }
                    data.len()
                }
            };
            if n == 0 && self.ty == SockType::Stream && control.rights.is_empty() {
                return Ok(0);
            }
            t.queue.push_back(Message {
                data: data[..n].to_vec(),
                read: 0,
                rights: control.rights,
                creds,
                from,
            });
            t.queued_bytes += n;
            n
        };
        target.waiters.notify_all();
        Ok(n)
    }

    /// Receive up to `len` bytes. `peek` leaves them queued; `trunc`
    /// (MSG_TRUNC) reports a datagram's full length. EAGAIN when empty and
    /// not at end of stream.
    pub fn recv(
        &self,
        len: usize,
        peek: bool,
        want_creds: bool,
        nonblock: bool,
    ) -> Result<Received, Errno> {
        let mut got = Received {
            data: Vec::new(),
            full_len: 0,
            rights: Vec::new(),
            creds: None,
            from: None,
        };
        let woke_sender;
        {
            let mut st = self.st();
            let want_creds = want_creds || st.passcred;
            if st.queue.is_empty() {
                // A datagram socket that was shut down still says EAGAIN to
                // a non-blocking receive; a stream socket says EOF.
                let dgram_nb = self.ty == SockType::Dgram && nonblock;
                if !dgram_nb
                    && (st.shut_rd
                        || st.peer_shut_wr
                        || (self.ty.connected()
                            && st.was_connected
                            && st.peer.as_ref().is_none_or(|p| p.strong_count() == 0)))
                {
                    return Ok(got);
                }
                if self.ty.connected() && !st.was_connected {
                    return Err(Errno::ENOTCONN);
                }
                return Err(Errno::EAGAIN);
            }
            match self.ty {
                SockType::Stream => {
                    // Read across messages, but stop at one that carries
                    // files (they go with the bytes they were sent with) or
                    // other credentials.
                    let mut i = 0;
                    let first_creds = st.queue[0].creds;
                    let first_has_files = !st.queue[0].rights.is_empty();
                    got.from = st.queue[0].from.clone();
                    while got.data.len() < len && i < st.queue.len() {
                        let m = &st.queue[i];
                        if i > 0
                            && (first_has_files
                                || !m.rights.is_empty()
                                || (want_creds && m.creds != first_creds))
                        {
                            break;
                        }
                        let take = (m.data.len() - m.read).min(len - got.data.len());
                        got.data.extend_from_slice(&m.data[m.read..m.read + take]);
                        i += 1;
                    }
                    got.full_len = got.data.len();
                    if want_creds {
                        got.creds = Some(first_creds);
                    }
                    if !peek {
                        let mut left = got.data.len();
                        let mut first = true;
                        while let Some(m) = st.queue.front_mut() {
                            if !first && left == 0 {
                                break;
                            }
                            if first || !m.rights.is_empty() {
                                got.rights.append(&mut m.rights);
                            }
                            first = false;
                            let take = (m.data.len() - m.read).min(left);
                            m.read += take;
                            left -= take;
                            if m.read == m.data.len() {
                                st.queue.pop_front();
                            } else {
                                break;
                            }
                        }
                        st.queued_bytes -= got.data.len();
                    } else {
                        got.rights = st.queue[0].rights.clone();
                    }
                }
                _ => {
                    let m = if peek {
                        let m = &st.queue[0];
                        Message {
                            data: m.data.clone(),
                            read: 0,
                            rights: m.rights.clone(),
                            creds: m.creds,
                            from: m.from.clone(),
                        }
                    } else {
                        let m = st.queue.pop_front().expect("not empty");
                        st.queued_bytes -= m.data.len();
                        m
                    };
                    got.full_len = m.data.len();
                    got.data = m.data[..m.data.len().min(len)].to_vec();
                    got.rights = m.rights;
                    got.from = m.from;
                    if want_creds {
                        got.creds = Some(m.creds);
                    }
                }
            }
            woke_sender = !peek;
        }
        if woke_sender {
            // Room for senders: they wait on the peer's waiters, which are
            // ours to wake as well.
            self.waiters.notify_all();
            if let Some(p) = self.peer() {
                p.waiters.notify_all();
            }
        }
        Ok(got)
    }

    /// shutdown(2): SHUT_RD 0, SHUT_WR 1, SHUT_RDWR 2.
    pub fn shutdown(&self, how: i32) -> Result<(), Errno> {
        let peer = {
            let mut st = self.st();
            if self.ty.connected() && !st.was_connected {
                return Err(Errno::ENOTCONN);
            }
            if how == libc::SHUT_RD || how == libc::SHUT_RDWR {
                st.shut_rd = true;
            }
            if how == libc::SHUT_WR || how == libc::SHUT_RDWR {
                st.shut_wr = true;
            }
            st.peer.as_ref().and_then(Weak::upgrade)
        };
        if let Some(p) = &peer {
            if how == libc::SHUT_WR || how == libc::SHUT_RDWR {
                p.st().peer_shut_wr = true;
            }
            p.waiters.notify_all();
        }
        self.waiters.notify_all();
        Ok(())
    }

    /// poll(2) readiness.
    pub fn readiness(&self, events: i16) -> i16 {
        let st = self.state.lock().unwrap();
        let mut r = 0i16;
        if let Some((_, q)) = &st.listen {
            if !q.is_empty() {
                r |= libc::POLLIN | libc::POLLRDNORM;
            }
            return r & (events | libc::POLLHUP | libc::POLLERR);
        }
        let peer = st.peer.as_ref().and_then(Weak::upgrade);
        let peer_gone = self.ty.connected() && st.was_connected && peer.is_none();
        if !st.queue.is_empty() || st.shut_rd || st.peer_shut_wr || peer_gone {
            r |= libc::POLLIN | libc::POLLRDNORM;
        }
        if st.peer_shut_wr || peer_gone {
            r |= libc::POLLRDHUP;
        }
        if peer_gone || (st.shut_wr && st.peer_shut_wr) {
            r |= libc::POLLHUP;
        }
        let shut_wr = st.shut_wr;
        let unconnected = self.ty.connected() && !st.was_connected;
        // Never hold our lock while taking the peer's: two sockets polling
        // each other would deadlock.
        drop(st);
        let writable = match (&peer, self.ty) {
            (Some(p), _) => {
                let ps = p.state.lock().unwrap();
                ps.queued_bytes < RECV_LIMIT
                    && (self.ty == SockType::Stream || ps.queue.len() < DGRAM_QLEN)
            }
            (None, SockType::Dgram) => true,
            // The peer is gone: writing fails at once (EPIPE), so it does
            // not block, which poll reports as writable.
            (None, _) => peer_gone,
        };
        if writable && !shut_wr {
            r |= libc::POLLOUT | libc::POLLWRNORM;
        }
        if unconnected {
            // An unconnected stream socket: Linux reports POLLOUT and HUP.
            r |= libc::POLLOUT | libc::POLLHUP;
        }
        r & (events | libc::POLLHUP | libc::POLLERR)
    }

    pub fn waiters(&self) -> &Waiters {
        &self.waiters
    }
}

/// Connect `a` and `b` to each other.
fn link(a: &Arc<UnixSocket>, b: &Arc<UnixSocket>) {
    for (x, y) in [(a, b), (b, a)] {
        let mut st = x.st();
        st.peer = Some(Arc::downgrade(y));
        st.peer_creds = Some(y.creds);
        st.was_connected = true;
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let me: *const UnixSocket = self;
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(addr) = st.bound.take() {
            let mut bound = self.registry.bound.lock().unwrap();
            if bound
                .get(&addr.key())
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), me))
            {
                bound.remove(&addr.key());
            }
        }
        // Pending connections die with their listener.
        st.listen = None;
        if let Some(p) = st.peer.take().and_then(|w| w.upgrade()) {
            if self.ty.connected() {
                p.st().peer_shut_wr = true;
            }
            p.waiters.notify_all();
        }
    }
}

/// The file a socket descriptor refers to.
pub(crate) struct SocketFile(pub Arc<UnixSocket>);

impl FileOps for SocketFile {
    fn read(&self, buf: &mut [u8], _offset: u64) -> Result<usize, Errno> {
        // Blocking is the caller's: it retries on EAGAIN.
        let got = self.0.recv(buf.len(), false, false, false)?;
        buf[..got.data.len()].copy_from_slice(&got.data);
        Ok(got.data.len())
    }

    fn write(&self, buf: &[u8], _offset: u64) -> Result<usize, Errno> {
        let me = Ucred {
            pid: crate::procfs::current_tgid(),
            ..self.0.creds
        };
        self.0.send(buf, Control::default(), None, me)
    }

    fn seekable(&self) -> bool {
        false
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(socket_stat(Arc::as_ptr(&self.0) as u64 >> 4))
    }

    fn poll(&self, events: i16) -> i16 {
        self.0.readiness(events)
    }

    fn waiters(&self) -> Option<&Waiters> {
        Some(self.0.waiters())
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

/// What fstat(2) shows for any socket of the sandbox (sockfs): a socket
/// node, mode 0777, one link, `ino` its identity.
pub(crate) fn socket_stat(ino: u64) -> Stat {
    Stat {
        mode: libc::S_IFSOCK | 0o777,
        nlink: 1,
        blksize: 4096,
        ino,
        ..Stat::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Ucred {
        Ucred {
            pid: 1,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn stream_pairs_carry_bytes_both_ways_and_end_in_eof() {
        let reg = Arc::new(Registry::default());
        let (a, b) = UnixSocket::pair(SockType::Stream, me(), &reg);
        assert_eq!(
            a.send(b"hello ", Control::default(), None, me()).unwrap(),
            6
        );
        assert_eq!(a.send(b"world", Control::default(), None, me()).unwrap(), 5);
        assert_eq!(b.recv(4, true, false, false).unwrap().data, b"hell");
        assert_eq!(
            b.recv(100, false, false, false).unwrap().data,
            b"hello world"
        );
        assert_eq!(b.recv(100, false, false, false).err(), Some(Errno::EAGAIN));
        b.send(b"back", Control::default(), None, me()).unwrap();
        assert_eq!(a.recv(100, false, false, false).unwrap().data, b"back");
        a.shutdown(libc::SHUT_WR).unwrap();
        assert!(
            b.recv(10, false, false, false).unwrap().data.is_empty(),
            "EOF"
        );
        assert_eq!(
            a.send(b"x", Control::default(), None, me()).err(),
            Some(Errno::EPIPE)
        );
        drop(b);
        assert_eq!(a.readiness(libc::POLLIN) & libc::POLLHUP, libc::POLLHUP);
    }

    #[test]
    fn both_ends_polled_at_once_do_not_deadlock() {
        // Readiness looks at the peer's queue too; two sockets polling each
        // other must not wait on each other's locks.
        let reg = Arc::new(Registry::default());
        let (a, b) = UnixSocket::pair(SockType::Stream, me(), &reg);
        let spin = |s: Arc<UnixSocket>| {
            std::thread::spawn(move || {
                let mut seen = 0;
                for _ in 0..200_000 {
                    seen |= s.readiness(libc::POLLIN | libc::POLLOUT);
                }
                seen
            })
        };
        let (ta, tb) = (spin(a.clone()), spin(b.clone()));
        assert_eq!(ta.join().unwrap() & libc::POLLOUT, libc::POLLOUT);
        assert_eq!(tb.join().unwrap() & libc::POLLOUT, libc::POLLOUT);
    }

    #[test]
    fn listeners_queue_connections_up_to_the_backlog() {
        let reg = Arc::new(Registry::default());
        let server = UnixSocket::new(SockType::Stream, me(), &reg);
        server
            .bind(Some(Address::Abstract(b"srv".to_vec())))
            .unwrap();
        server.listen(1).unwrap();
        let target = server.find(&Address::Abstract(b"srv".to_vec())).unwrap();
        let c1 = UnixSocket::new(
            SockType::Stream,
            Ucred {
                pid: 7,
                uid: 1,
                gid: 2,
            },
            &reg,
        );
        c1.connect(&target).unwrap();
        let c2 = UnixSocket::new(SockType::Stream, me(), &reg);
        assert_eq!(c2.connect(&target).err(), Some(Errno::EAGAIN));
        let s1 = server.accept().unwrap();
        assert_eq!(s1.peer_creds().unwrap().pid, 7);
        assert_eq!(c1.peer_creds().unwrap().pid, 1);
        c1.send(b"hi", Control::default(), None, me()).unwrap();
        assert_eq!(s1.recv(10, false, false, false).unwrap().data, b"hi");
        assert_eq!(server.accept().err(), Some(Errno::EAGAIN));
        let other = UnixSocket::new(SockType::Stream, me(), &reg);
        assert_eq!(
            other.bind(Some(Address::Abstract(b"srv".to_vec()))).err(),
            Some(Errno::EADDRINUSE)
        );
        drop(server);
        drop(target);
        assert!(reg.lookup(&Key::Abstract(b"srv".to_vec())).is_none());
    }

    #[test]
    fn datagrams_keep_their_boundaries_and_sender() {
        let reg = Arc::new(Registry::default());
        let rx = UnixSocket::new(SockType::Dgram, me(), &reg);
        rx.bind(Some(Address::Abstract(b"rx".to_vec()))).unwrap();
        let tx = UnixSocket::new(SockType::Dgram, me(), &reg);
        tx.bind(None).unwrap();
        tx.send(b"one", Control::default(), Some(&rx), me())
            .unwrap();
        tx.send(b"three", Control::default(), Some(&rx), me())
            .unwrap();
        let m = rx.recv(2, false, false, false).unwrap();
        assert_eq!((m.data.as_slice(), m.full_len), (&b"on"[..], 3));
        assert_eq!(m.from, Some(Address::Abstract(b"00000".to_vec())));
        assert_eq!(rx.recv(100, false, false, false).unwrap().data, b"three");
    }
}
