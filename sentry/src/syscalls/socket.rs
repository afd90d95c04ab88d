//! Socket syscalls. AF_UNIX sockets are the Sentry's own
//! (`crate::socket`); AF_INET and AF_INET6 go to `super::inet` (host
//! sockets with `--network=host`, our netstack otherwise).

use std::sync::Arc;

use abi::Errno;

use super::file::{host_io, iovecs, start_of, wait_on, Walker, AT_FDCWD};
use super::{inet, SysResult};
use crate::fs::File;
use crate::inet_socket::InetSocket;
use crate::signal::{self, Queued};
use crate::socket::{Address, Control, SockType, SocketFile, Ucred, UnixSocket};
use crate::task::Task;

const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
const SCM_CREDENTIALS: i32 = 2;
/// Longest `sun_path`.
const UNIX_PATH_MAX: usize = 108;
/// Files one SCM_RIGHTS message may carry (SCM_MAX_FD).
const SCM_MAX_FD: usize = 253;

fn ucred_of(task: &Task) -> Ucred {
    Ucred {
        pid: task.tg.tgid,
        uid: task.creds.euid,
        gid: task.creds.egid,
    }
}

fn install(task: &Task, sock: Arc<UnixSocket>, flags: i32) -> SysResult {
    let nonblock = if flags & libc::SOCK_NONBLOCK != 0 {
        libc::O_NONBLOCK
    } else {
        0
    };
    let file = File::anonymous(
        &format!("socket:[{}]", Arc::as_ptr(&sock) as u64 >> 4),
        Arc::new(SocketFile(sock)),
        libc::O_RDWR | nonblock,
    );
    task.fds().insert(file, flags & libc::SOCK_CLOEXEC != 0, 0)
}

/// The inet socket behind `file`, if it is one.
fn inet_of(file: &File) -> Option<&dyn InetSocket> {
    crate::inet_socket::inet_of(file.ops().as_ref())
}

/// The unix socket behind `file` (ENOTSOCK for other files).
fn unix_of(file: Arc<File>) -> Result<(Arc<File>, Arc<UnixSocket>), Errno> {
    let sock = file
        .ops()
        .as_any()
        .and_then(|a| a.downcast_ref::<SocketFile>())
        .map(|s| s.0.clone())
        .ok_or(Errno::ENOTSOCK)?;
    Ok((file, sock))
}

fn kind_of(raw: u64) -> Result<(SockType, i32), Errno> {
    let raw = raw as i32;
    let flags = raw & (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    let ty = SockType::from_raw(raw & !flags).ok_or(Errno::EINVAL)?;
    Ok((ty, flags))
}

fn check_domain(domain: u64, protocol: u64) -> Result<(), Errno> {
    if [libc::AF_INET, libc::AF_INET6, libc::AF_NETLINK].contains(&(domain as i32)) {
        // socketpair: Linux's inet and netlink families have none.
        return Err(Errno::EOPNOTSUPP);
    }
    if domain as i32 != libc::AF_UNIX {
        tracing::info!("socket family {domain} not supported yet: EAFNOSUPPORT");
        return Err(Errno::EAFNOSUPPORT);
    }
    if protocol != 0 && protocol as i32 != libc::PF_UNIX {
        return Err(Errno::EPROTONOSUPPORT);
    }
    Ok(())
}

pub fn socket(task: &mut Task, a: [u64; 6]) -> SysResult {
    let family = a[0] as i32;
    if family == libc::AF_NETLINK {
        return inet::netlink_socket(task, a[1] as i32, a[2] as i32);
    }
    if family == libc::AF_INET || family == libc::AF_INET6 {
        return inet::socket(task, family, a[1] as i32, a[2] as i32);
    }
    check_domain(a[0], a[2])?;
    let (ty, flags) = kind_of(a[1]).map_err(|_| Errno::ESOCKTNOSUPPORT)?;
    let sock = UnixSocket::new(ty, ucred_of(task), &task.kernel.unix);
    install(task, sock, flags)
}

pub fn socketpair(task: &mut Task, a: [u64; 6]) -> SysResult {
    check_domain(a[0], a[2])?;
    let (ty, flags) = kind_of(a[1]).map_err(|_| Errno::ESOCKTNOSUPPORT)?;
    let (x, y) = UnixSocket::pair(ty, ucred_of(task), &task.kernel.unix);
    let fx = install(task, x, flags)?;
    let fy = match install(task, y, flags) {
        Ok(f) => f,
        Err(e) => {
            let _ = task.fds().remove(fx);
            return Err(e);
        }
    };
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(fx as u32).to_le_bytes());
    out[4..].copy_from_slice(&(fy as u32).to_le_bytes());
    if let Err(e) = task.mm().copy_out(a[3], &out) {
        let _ = task.fds().remove(fx);
        let _ = task.fds().remove(fy);
        return Err(e);
    }
    Ok(0)
}

/// A `sockaddr_un` from the application.
enum Name {
    Path(Vec<u8>),
    Abstract(Vec<u8>),
    /// Just the family: autobind (for bind).
    Unnamed,
    /// AF_UNSPEC: connect dissolves a datagram socket's association.
    Unspec,
}

fn read_name(task: &Task, addr: u64, len: u64) -> Result<Name, Errno> {
    let len = len as usize;
    if !(2..=2 + UNIX_PATH_MAX).contains(&len) {
        return Err(Errno::EINVAL);
    }
    let mut b = vec![0u8; len];
    task.mm().copy_in(addr, &mut b)?;
    let family = u16::from_le_bytes([b[0], b[1]]) as i32;
    if family == libc::AF_UNSPEC {
        return Ok(Name::Unspec);
    }
    if family != libc::AF_UNIX {
        return Err(Errno::EINVAL);
    }
    let path = &b[2..];
    if path.is_empty() {
        return Ok(Name::Unnamed);
    }
    if path[0] == 0 {
        return Ok(Name::Abstract(path[1..].to_vec()));
    }
    let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
    Ok(Name::Path(path[..end].to_vec()))
}

/// Write a name for getsockname and friends: as much as `*lenp` allows,
/// and the full length back into `*lenp`.
fn write_name(task: &Task, addr: u64, lenp: u64, name: Option<&Address>) -> Result<(), Errno> {
    if addr == 0 || lenp == 0 {
        return Ok(());
    }
    let mut lb = [0u8; 4];
    task.mm().copy_in(lenp, &mut lb)?;
    let room = i32::from_le_bytes(lb);
    if room < 0 {
        return Err(Errno::EINVAL);
    }
    let bytes = match name {
        Some(n) => n.to_sockaddr(),
        None => (libc::AF_UNIX as u16).to_le_bytes().to_vec(),
    };
    let n = bytes.len().min(room as usize);
    task.mm().copy_out(addr, &bytes[..n])?;
    task.mm()
        .copy_out(lenp, &(bytes.len() as u32).to_le_bytes())?;
    Ok(())
}

fn path_str(p: &[u8]) -> Result<String, Errno> {
    String::from_utf8(p.to_vec()).map_err(|_| Errno::EINVAL)
}

pub fn bind(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if let Some(s) = inet_of(&file) {
        return inet::bind(task, s, a);
    }
    let (_, sock) = unix_of(file)?;
    let addr = match read_name(task, a[1], a[2])? {
        Name::Unspec => return Err(Errno::EINVAL),
        Name::Unnamed => None,
        Name::Abstract(n) => Some(Address::Abstract(n)),
        Name::Path(p) => {
            // The socket's node in the filesystem: its identity names it.
            // Linux makes the node before it looks at whether the socket
            // is bound already (and then removes it again).
            let path = path_str(&p)?;
            let start = start_of(task, AT_FDCWD, &path)?;
            let mode = 0o777 & !task.fs().umask;
            let w = Walker::of(task);
            let ctx = w.ctx();
            ctx.make(&start, &path, vfs::NodeKind::Socket, mode)
                .map_err(|e| {
                    if e == Errno::EEXIST {
                        Errno::EADDRINUSE
                    } else {
                        e
                    }
                })?;
            if sock.bound().is_some() {
                let _ = ctx.unlink(&start, &path);
                return Err(Errno::EINVAL);
            }
            let st = ctx.lookup(&start, &path, false)?.inode().stat()?;
            Some(Address::Path(p, (st.dev, st.ino)))
        }
    };
    sock.bind(addr).map(|()| 0)
}

pub fn listen(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if let Some(s) = inet_of(&file) {
        return inet::listen(s, a);
    }
    let (_, sock) = unix_of(file)?;
    sock.listen(a[1] as i32).map(|()| 0)
}

/// The socket an address names (connect, sendto).
fn target_of(task: &Task, sock: &UnixSocket, name: Name) -> Result<Arc<UnixSocket>, Errno> {
    let addr = match name {
        Name::Unnamed | Name::Unspec => return Err(Errno::EINVAL),
        Name::Abstract(n) => Address::Abstract(n),
        Name::Path(p) => {
            let path = path_str(&p)?;
            let start = start_of(task, AT_FDCWD, &path)?;
            let w = Walker::of(task);
            let ctx = w.ctx();
            let loc = ctx.lookup(&start, &path, true)?;
            let st = loc.inode().stat()?;
            if st.mode & libc::S_IFMT != libc::S_IFSOCK {
                return Err(Errno::ECONNREFUSED);
            }
            ctx.access(&loc, vfs::walk::MAY_WRITE)?;
            Address::Path(p, (st.dev, st.ino))
        }
    };
    sock.find(&addr)
}

pub fn connect(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if let Some(s) = inet_of(&file) {
        return inet::connect(task, &file, s, a);
    }
    let (file, sock) = unix_of(file)?;
    let name = read_name(task, a[1], a[2])?;
    if matches!(name, Name::Unspec) && sock.ty == SockType::Dgram {
        sock.disconnect();
        return Ok(0);
    }
    let target = target_of(task, &sock, name)?;
    let nonblock = file.flags() & libc::O_NONBLOCK != 0;
    loop {
        match sock.connect(&target) {
            Err(Errno::EAGAIN) if !nonblock => {
                // The listener's queue is full: wait for an accept.
                let t = target.clone();
                wait_on(task, target.waiters(), move || {
                    t.readiness(libc::POLLIN) == 0
                })?;
            }
            other => return other.map(|()| 0),
        }
    }
}

pub fn accept4(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = a[3] as i32;
    if flags & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let file = task.fds().get(a[0])?;
    if let Some(s) = inet_of(&file) {
        return inet::accept4(task, &file, s, a);
    }
    let (file, sock) = unix_of(file)?;
    if sock.ty == SockType::Dgram {
        return Err(Errno::EOPNOTSUPP);
    }
    if !sock.is_listening() {
        return Err(Errno::EINVAL);
    }
    let conn = host_io(task, &file, libc::POLLIN, || sock.accept())?;
    let peer = conn.peer_address().ok().flatten();
    let fd = install(task, conn, flags)?;
    if let Err(e) = write_name(task, a[1], a[2], peer.as_ref()) {
        let _ = task.fds().remove(fd);
        return Err(e);
    }
    Ok(fd)
}

pub fn accept(task: &mut Task, a: [u64; 6]) -> SysResult {
    accept4(task, [a[0], a[1], a[2], 0, 0, 0])
}

pub fn getsockname(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if let Some(s) = inet_of(&file) {
        return inet::getsockname(task, s, a);
    }
    let (_, sock) = unix_of(file)?;
    write_name(task, a[1], a[2], sock.bound().as_ref()).map(|()| 0)
}

pub fn getpeername(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if let Some(s) = inet_of(&file) {
        return inet::getpeername(task, s, a);
    }
    let (_, sock) = unix_of(file)?;
    let peer = sock.peer_address()?;
    write_name(task, a[1], a[2], peer.as_ref()).map(|()| 0)
}

pub fn shutdown(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if let Some(s) = inet_of(&file) {
        return inet::shutdown(s, a);
    }
    let (_, sock) = unix_of(file)?;
    let how = a[1] as i32;
    if !(0..=2).contains(&how) {
        return Err(Errno::EINVAL);
    }
    sock.shutdown(how).map(|()| 0)
}

/// `struct msghdr` fields.
pub(super) struct MsgHdr {
    pub name: u64,
    pub namelen: u32,
    pub iov: u64,
    pub iovlen: u64,
    pub control: u64,
    pub controllen: u64,
}

pub(super) fn read_msghdr(task: &Task, addr: u64) -> Result<MsgHdr, Errno> {
    let mut b = [0u8; 56];
    task.mm().copy_in(addr, &mut b)?;
    let w = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8"));
    Ok(MsgHdr {
        name: w(0),
        namelen: u32::from_le_bytes(b[8..12].try_into().expect("4")),
        iov: w(16),
        iovlen: w(24),
        control: w(32),
        controllen: w(40),
    })
}

/// Parse the control messages of a send.
fn read_control(task: &Task, addr: u64, len: u64) -> Result<Control, Errno> {
    let mut control = Control::default();
    if addr == 0 || len == 0 {
        return Ok(control);
    }
    if len > 1 << 16 {
        return Err(Errno::ENOBUFS);
    }
    let mut b = vec![0u8; len as usize];
    task.mm().copy_in(addr, &mut b)?;
    let mut at = 0usize;
    while at + 16 <= b.len() {
        let clen = u64::from_le_bytes(b[at..at + 8].try_into().expect("8")) as usize;
        let level = i32::from_le_bytes(b[at + 8..at + 12].try_into().expect("4"));
        let kind = i32::from_le_bytes(b[at + 12..at + 16].try_into().expect("4"));
        if clen < 16 || at + clen > b.len() {
            return Err(Errno::EINVAL);
        }
        let data = &b[at + 16..at + clen];
        match (level, kind) {
            (SOL_SOCKET, SCM_RIGHTS) => {
                let fds = data.len() / 4;
                if control.rights.len() + fds > SCM_MAX_FD {
                    return Err(Errno::EINVAL);
                }
                for c in data.chunks_exact(4) {
                    let fd = i32::from_le_bytes(c.try_into().expect("4"));
                    if fd < 0 {
                        return Err(Errno::EBADF);
                    }
                    control.rights.push(task.fds().get(fd as u64)?);
                }
            }
            (SOL_SOCKET, SCM_CREDENTIALS) => {
                if data.len() < 12 {
                    return Err(Errno::EINVAL);
                }
                let u = Ucred {
                    pid: i32::from_le_bytes(data[0..4].try_into().expect("4")),
                    uid: u32::from_le_bytes(data[4..8].try_into().expect("4")),
                    gid: u32::from_le_bytes(data[8..12].try_into().expect("4")),
                };
                // Only privileged senders may claim other identities.
                let own = ucred_of(task);
                let c = &task.creds;
                let uid_ok = [c.ruid, c.euid, c.suid].contains(&u.uid) || c.euid == 0;
                let gid_ok = [c.rgid, c.egid, c.sgid].contains(&u.gid) || c.euid == 0;
                if (u.pid != own.pid && c.euid != 0) || !uid_ok || !gid_ok {
                    return Err(Errno::EPERM);
                }
                control.creds = Some(u);
            }
            _ => {
                tracing::info!("control message level {level} type {kind} not supported: EINVAL");
                return Err(Errno::EINVAL);
            }
        }
        at += clen.next_multiple_of(8);
    }
    Ok(control)
}

/// Gather the bytes of an iovec array.
pub(super) fn gather(task: &Task, iov: &[(u64, u64)]) -> Result<Vec<u8>, Errno> {
    let total: u64 = iov.iter().map(|&(_, l)| l).sum();
    if total > 0x7fff_f000 {
        return Err(Errno::EMSGSIZE);
    }
    let mut data = vec![0u8; total as usize];
    let mut at = 0;
    for &(base, len) in iov {
        task.mm().copy_in(base, &mut data[at..at + len as usize])?;
        at += len as usize;
    }
    Ok(data)
}

/// Send `data`: all of it for a blocking stream socket (waiting for room),
/// one datagram otherwise.
fn send_common(
    task: &Task,
    file: &File,
    sock: &Arc<UnixSocket>,
    data: &[u8],
    control: Control,
    to: Option<Arc<UnixSocket>>,
    flags: i32,
) -> SysResult {
    let nonblock = file.flags() & libc::O_NONBLOCK != 0 || flags & libc::MSG_DONTWAIT != 0;
    let me = ucred_of(task);
    let mut control = Some(control);
    let mut sent = 0usize;
    loop {
        let ctl = control.take().unwrap_or_default();
        let r = sock.send(&data[sent..], ctl, to.as_ref(), me);
        match r {
            Ok(n) => {
                sent += n;
                if sent == data.len() || sock.ty != SockType::Stream {
                    return Ok(sent as u64);
                }
            }
            Err(Errno::EAGAIN) if !nonblock => {}
            Err(Errno::EPIPE) => {
                if flags & libc::MSG_NOSIGNAL == 0 {
                    let info = signal::user_info(signal::SIGPIPE, 0, 0, 0);
                    task.handle.post(Queued::new(signal::SIGPIPE, info));
                }
                return if sent > 0 {
                    Ok(sent as u64)
                } else {
                    Err(Errno::EPIPE)
                };
            }
            Err(e) => return if sent > 0 { Ok(sent as u64) } else { Err(e) },
        }
        if nonblock {
            return if sent > 0 {
                Ok(sent as u64)
            } else {
                Err(Errno::EAGAIN)
            };
        }
        // Wait for room at the receiving end.
        let target = match &to {
            Some(t) => t.clone(),
            None => match sock.peer_for_wait() {
                Some(p) => p,
                None => continue,
            },
        };
        let s = sock.clone();
        if let Err(e) = wait_on(task, target.waiters(), move || {
            s.readiness(libc::POLLOUT) != 0
        }) {
            return if sent > 0 { Ok(sent as u64) } else { Err(e) };
        }
    }
}

pub fn sendto(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if let Some(s) = inet_of(&file) {
        return inet::sendto(task, &file, s, a);
    }
    let (file, sock) = unix_of(file)?;
    let flags = a[3] as i32;
    let data = gather(task, &[(a[1], a[2])])?;
    let to = if a[4] != 0 {
        Some(target_of(task, &sock, read_name(task, a[4], a[5])?)?)
    } else {
        None
    };
    send_common(task, &file, &sock, &data, Control::default(), to, flags)
}

pub fn sendmsg(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if let Some(s) = inet_of(&file) {
        return inet::sendmsg(task, &file, s, a[1], a[2] as i32);
    }
    let (file, sock) = unix_of(file)?;
    send_one(task, &file, &sock, a[1], a[2] as i32)
}

fn send_one(task: &Task, file: &File, sock: &Arc<UnixSocket>, msg: u64, flags: i32) -> SysResult {
    let h = read_msghdr(task, msg)?;
    let iov = iovecs(task, h.iov, h.iovlen)?;
    let data = gather(task, &iov)?;
    let control = read_control(task, h.control, h.controllen)?;
    let to = if h.name != 0 && h.namelen != 0 {
        Some(target_of(
            task,
            sock,
            read_name(task, h.name, u64::from(h.namelen))?,
        )?)
    } else {
        None
    };
    send_common(task, file, sock, &data, control, to, flags)
}

/// The loop of sendmmsg and recvmmsg over `struct mmsghdr` entries (64
/// bytes: a msghdr, then msg_len): `one` handles the entry at an address
/// with the call's flags. With MSG_WAITFORONE a receive takes only what is
/// already there after the first message (without it, it waits for each,
/// as Linux); an error after the first ends the call with the count so
/// far.
fn each_mmsg(
    task: &Task,
    a: [u64; 6],
    recv: bool,
    mut one: impl FnMut(u64, i32) -> SysResult,
) -> SysResult {
    let vlen = a[2].min(1024);
    let wait_for_one = recv && a[3] as i32 & libc::MSG_WAITFORONE != 0;
    let base = a[3] as i32 & !libc::MSG_WAITFORONE;
    let mut done = 0;
    for i in 0..vlen {
        let entry = a[1] + i * 64;
        let flags = if wait_for_one && done > 0 {
            base | libc::MSG_DONTWAIT
        } else {
            base
        };
        match one(entry, flags) {
            Ok(n) => {
                task.mm().copy_out(entry + 56, &(n as u32).to_le_bytes())?;
                done += 1;
            }
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(done)
}

pub fn sendmmsg(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if let Some(s) = inet_of(&file) {
        return each_mmsg(task, a, false, |entry, flags| {
            inet::sendmsg(task, &file, s, entry, flags)
        });
    }
    let (file, sock) = unix_of(file)?;
    each_mmsg(task, a, false, |entry, flags| {
        send_one(task, &file, &sock, entry, flags)
    })
}

/// Receive into the iovecs of `h`; returns the byte count recvmsg returns.
/// With `hdr_addr` (the msghdr's address) it also fills in the sender's
/// name, the control messages and msg_flags.
fn recv_one(
    task: &Task,
    file: &File,
    sock: &Arc<UnixSocket>,
    h: &MsgHdr,
    hdr_addr: Option<u64>,
    flags: i32,
) -> SysResult {
    let iov = iovecs(task, h.iov, h.iovlen)?;
    let want: usize = iov.iter().map(|&(_, l)| l as usize).sum();
    let peek = flags & libc::MSG_PEEK != 0;
    let nonblock = file.flags() & libc::O_NONBLOCK != 0 || flags & libc::MSG_DONTWAIT != 0;
    let recv = || sock.recv(want, peek, false, nonblock);
    let mut got = if nonblock {
        recv()?
    } else {
        host_io(task, file, libc::POLLIN, recv)?
    };
    // MSG_WAITALL: keep reading a stream until the buffer is full or EOF.
    if flags & libc::MSG_WAITALL != 0 && sock.ty == SockType::Stream && !peek && !nonblock {
        while got.data.len() < want && got.rights.is_empty() {
            let left = want - got.data.len();
            match host_io(task, file, libc::POLLIN, || {
                sock.recv(left, false, false, false)
            }) {
                Ok(more) if !more.data.is_empty() => got.data.extend_from_slice(&more.data),
                _ => break,
            }
        }
        got.full_len = got.data.len();
    }
    // Scatter the data.
    let mut at = 0;
    for &(base, len) in &iov {
        if at >= got.data.len() {
            break;
        }
        let n = (len as usize).min(got.data.len() - at);
        task.mm().copy_out(base, &got.data[at..at + n])?;
        at += n;
    }
    let mut msg_flags = 0;
    if got.full_len > got.data.len() {
        msg_flags |= libc::MSG_TRUNC;
    }
    if let Some(addr) = hdr_addr {
        // msg_name and msg_namelen.
        if h.name != 0 {
            // An unnamed sender has no address at all: length 0.
            let bytes = got.from.as_ref().map_or(Vec::new(), Address::to_sockaddr);
            let n = bytes.len().min(h.namelen as usize);
            task.mm().copy_out(h.name, &bytes[..n])?;
            task.mm()
                .copy_out(addr + 8, &(bytes.len() as u32).to_le_bytes())?;
        }
        // Control messages: credentials, then files.
        let mut ctl = Vec::new();
        let room = h.controllen as usize;
        if let Some(c) = got.creds.filter(|_| sock.passcred()) {
            let mut m = cmsg_header(12, SCM_CREDENTIALS);
            m.extend_from_slice(&c.pid.to_le_bytes());
            m.extend_from_slice(&c.uid.to_le_bytes());
            m.extend_from_slice(&c.gid.to_le_bytes());
            pad8(&mut m);
            if ctl.len() + m.len() <= room {
                ctl.extend_from_slice(&m);
            } else {
                msg_flags |= libc::MSG_CTRUNC;
            }
        }
        if !got.rights.is_empty() && !peek {
            let fit = room.saturating_sub(ctl.len()).saturating_sub(16) / 4;
            let n = got.rights.len().min(fit);
            if n < got.rights.len() {
                msg_flags |= libc::MSG_CTRUNC;
            }
            if n > 0 {
                let cloexec = flags & libc::MSG_CMSG_CLOEXEC != 0;
                let mut m = cmsg_header(4 * n, SCM_RIGHTS);
                for f in got.rights.drain(..n) {
                    let fd = task.fds().insert(f, cloexec, 0)?;
                    m.extend_from_slice(&(fd as i32).to_le_bytes());
                }
                let unpadded = m.len();
                pad8(&mut m);
                let take = if ctl.len() + m.len() <= room {
                    m.len()
                } else {
                    unpadded
                };
                ctl.extend_from_slice(&m[..take]);
            }
        }
        if !ctl.is_empty() {
            task.mm().copy_out(h.control, &ctl)?;
        }
        task.mm()
            .copy_out(addr + 40, &(ctl.len() as u64).to_le_bytes())?;
        task.mm().copy_out(addr + 48, &msg_flags.to_le_bytes())?;
    }
    let n = if flags & libc::MSG_TRUNC != 0 && sock.ty != SockType::Stream {
        got.full_len
    } else {
        got.data.len()
    };
    Ok(n as u64)
}

fn cmsg_header(data_len: usize, kind: i32) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + data_len + 8);
    m.extend_from_slice(&((16 + data_len) as u64).to_le_bytes());
    m.extend_from_slice(&SOL_SOCKET.to_le_bytes());
    m.extend_from_slice(&kind.to_le_bytes());
    m
}

fn pad8(m: &mut Vec<u8>) {
    while !m.len().is_multiple_of(8) {
        m.push(0);
    }
}

pub fn recvfrom(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if let Some(s) = inet_of(&file) {
        return inet::recvfrom(task, &file, s, a);
    }
    let (file, sock) = unix_of(file)?;
    let flags = a[3] as i32;
    let peek = flags & libc::MSG_PEEK != 0;
    let nonblock = file.flags() & libc::O_NONBLOCK != 0 || flags & libc::MSG_DONTWAIT != 0;
    let recv = || sock.recv(a[2] as usize, peek, false, nonblock);
    let got = if nonblock {
        recv()?
    } else {
        host_io(task, &file, libc::POLLIN, recv)?
    };
    task.mm().copy_out(a[1], &got.data)?;
    if a[4] != 0 && a[5] != 0 {
        match &got.from {
            Some(from) => write_name(task, a[4], a[5], Some(from))?,
            // An unnamed sender has no address at all: length 0.
            None => task.mm().copy_out(a[5], &0u32.to_le_bytes())?,
        }
    }
    let n = if flags & libc::MSG_TRUNC != 0 && sock.ty != SockType::Stream {
        got.full_len
    } else {
        got.data.len()
    };
    Ok(n as u64)
}

pub fn recvmsg(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if let Some(s) = inet_of(&file) {
        return inet::recvmsg(task, &file, s, a);
    }
    let (file, sock) = unix_of(file)?;
    let h = read_msghdr(task, a[1])?;
    recv_one(task, &file, &sock, &h, Some(a[1]), a[2] as i32)
}

pub fn recvmmsg(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if let Some(s) = inet_of(&file) {
        return each_mmsg(task, a, true, |entry, flags| {
            let h = read_msghdr(task, entry)?;
            inet::recv_into(task, &file, s, &h, entry, flags)
        });
    }
    let (file, sock) = unix_of(file)?;
    each_mmsg(task, a, true, |entry, flags| {
        let h = read_msghdr(task, entry)?;
        recv_one(task, &file, &sock, &h, Some(entry), flags)
    })
}

fn int_opt(task: &Task, addr: u64, len: u64) -> Result<i32, Errno> {
    if len < 4 {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; 4];
    task.mm().copy_in(addr, &mut b)?;
    Ok(i32::from_le_bytes(b))
}

pub fn setsockopt(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if let Some(s) = inet_of(&file) {
        return inet::setsockopt(task, s, a);
    }
    let (_, sock) = unix_of(file)?;
    let (level, name) = (a[1] as i32, a[2] as i32);
    if level != SOL_SOCKET {
        return Err(Errno::ENOPROTOOPT);
    }
    match name {
        libc::SO_PASSCRED => {
            sock.set_passcred(int_opt(task, a[3], a[4])? != 0);
            Ok(0)
        }
        // Accepted; unix sockets here size their buffers themselves.
        libc::SO_SNDBUF
        | libc::SO_RCVBUF
        | libc::SO_REUSEADDR
        | libc::SO_KEEPALIVE
        | libc::SO_SNDBUFFORCE
        | libc::SO_RCVBUFFORCE
        | libc::SO_LINGER
        | libc::SO_RCVTIMEO
        | libc::SO_SNDTIMEO
        | libc::SO_PASSSEC => int_opt(task, a[3], a[4]).map(|_| 0),
        other => {
            tracing::info!("setsockopt SOL_SOCKET {other} not supported: ENOPROTOOPT");
            Err(Errno::ENOPROTOOPT)
        }
    }
}

pub fn getsockopt(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if let Some(s) = inet_of(&file) {
        return inet::getsockopt(task, s, a);
    }
    let (_, sock) = unix_of(file)?;
    let (level, name, out, lenp) = (a[1] as i32, a[2] as i32, a[3], a[4]);
    if level != SOL_SOCKET {
        return Err(Errno::ENOPROTOOPT);
    }
    let mut lb = [0u8; 4];
    task.mm().copy_in(lenp, &mut lb)?;
    let room = i32::from_le_bytes(lb);
    if room < 0 {
        return Err(Errno::EINVAL);
    }
    let bytes: Vec<u8> = match name {
        libc::SO_TYPE => sock.ty.raw().to_le_bytes().to_vec(),
        libc::SO_DOMAIN => libc::AF_UNIX.to_le_bytes().to_vec(),
        libc::SO_PROTOCOL => 0i32.to_le_bytes().to_vec(),
        libc::SO_ERROR => sock
            .take_error()
            .map_or(0, |e| e.raw())
            .to_le_bytes()
            .to_vec(),
        libc::SO_PASSCRED => i32::from(sock.passcred()).to_le_bytes().to_vec(),
        libc::SO_ACCEPTCONN => i32::from(sock.is_listening()).to_le_bytes().to_vec(),
        libc::SO_SNDBUF | libc::SO_RCVBUF => 212_992i32.to_le_bytes().to_vec(),
        libc::SO_PEERCRED => {
            // Unconnected: no peer, which Linux reports as pid 0, ids -1.
            let c = sock.peer_creds().unwrap_or(Ucred {
                pid: 0,
                uid: u32::MAX,
                gid: u32::MAX,
            });
            let mut v = c.pid.to_le_bytes().to_vec();
            v.extend_from_slice(&c.uid.to_le_bytes());
            v.extend_from_slice(&c.gid.to_le_bytes());
            v
        }
        other => {
            tracing::info!("getsockopt SOL_SOCKET {other} not supported: ENOPROTOOPT");
            return Err(Errno::ENOPROTOOPT);
        }
    };
    let n = bytes.len().min(room as usize);
    task.mm().copy_out(out, &bytes[..n])?;
    task.mm().copy_out(lenp, &(n as u32).to_le_bytes())?;
    Ok(0)
}
