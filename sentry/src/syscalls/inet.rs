//! AF_INET and AF_INET6 socket calls, whichever stack is behind the
//! socket (`crate::inet_socket`): a host socket with `--network=host`
//! (`crate::hostinet`), our netstack otherwise (`crate::netstack_socket`).
//! Each call is made non-blocking on the socket, with the Sentry doing
//! any waiting so signals, kills and SO_RCVTIMEO/SO_SNDTIMEO apply.
//! `socket.rs` routes here by the file's type.

use std::sync::Arc;
use std::time::{Duration, Instant};

use abi::Errno;

use super::file::iovecs;
use super::socket::{gather, read_msghdr, MsgHdr};
use super::SysResult;
use crate::fs::File;
use crate::hostinet::HostSocket;
use crate::inet_socket::{InetSocket, SOCKADDR_MAX};
use crate::netstack_socket::NetSocket;
use crate::signal::{self, Queued};
use crate::task::Task;

/// Longest option value passed to or from the host (TCP_INFO is 232
/// bytes today).
const OPT_MAX: usize = 512;
/// Largest single host receive; a stream read returns what it got.
const RECV_MAX: usize = 16 << 20;
/// Largest control buffer taken from or given to the host.
const CONTROL_MAX: usize = 4096;
/// SO_RCVTIMEO_NEW and SO_SNDTIMEO_NEW: on x86-64 the same timeval.
const SO_RCVTIMEO_NEW: i32 = 66;
const SO_SNDTIMEO_NEW: i32 = 67;

const SEND_FLAGS: i32 = libc::MSG_OOB
    | libc::MSG_DONTROUTE
    | libc::MSG_DONTWAIT
    | libc::MSG_EOR
    | libc::MSG_MORE
    | libc::MSG_NOSIGNAL
    | libc::MSG_CONFIRM;
const RECV_FLAGS: i32 = libc::MSG_OOB
    | libc::MSG_PEEK
    | libc::MSG_TRUNC
    | libc::MSG_DONTWAIT
    | libc::MSG_WAITALL
    | libc::MSG_ERRQUEUE
    | libc::MSG_CMSG_CLOEXEC;

/// `socket(2)` for an inet family.
pub fn socket(task: &Task, family: i32, raw_ty: i32, protocol: i32) -> SysResult {
    let flags = raw_ty & (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    let ty = raw_ty & !flags;
    match ty {
        libc::SOCK_STREAM | libc::SOCK_DGRAM => {}
        // Raw sockets need CAP_NET_RAW, which upstream withholds unless
        // --net-raw; this runsc has no --net-raw.
        libc::SOCK_RAW => return Err(Errno::EPERM),
        _ => return Err(Errno::ESOCKTNOSUPPORT),
    }
    let (ops, name): (Arc<dyn vfs::inode::FileOps>, String) = match &task.kernel.netstack {
        Some(stack) => {
            let sock = NetSocket::new(stack, family, ty, protocol)?;
            let name = sock.file_name();
            (Arc::new(sock), name)
        }
        None => {
            let sock = HostSocket::new(family, ty, protocol)?;
            let name = format!("socket:[{}]", sock.ino());
            (Arc::new(sock), name)
        }
    };
    install(task, ops, &name, flags)
}

/// `socket(AF_NETLINK, ...)`: NETLINK_ROUTE over the sandbox's netstack.
pub fn netlink_socket(task: &Task, raw_ty: i32, protocol: i32) -> SysResult {
    let flags = raw_ty & (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    let Some(stack) = &task.kernel.netstack else {
        tracing::info!("netlink sockets with --network=host not supported: EAFNOSUPPORT");
        return Err(Errno::EAFNOSUPPORT);
    };
    let sock = crate::netlink::NetlinkSocket::new(stack, raw_ty & !flags, protocol, task.tg.tgid)?;
    let name = format!("socket:[{}]", vfs::inode::FileOps::stat(&sock)?.ino);
    install(task, Arc::new(sock), &name, flags)
}

fn install(task: &Task, ops: Arc<dyn vfs::inode::FileOps>, name: &str, flags: i32) -> SysResult {
    let nonblock = if flags & libc::SOCK_NONBLOCK != 0 {
        libc::O_NONBLOCK
    } else {
        0
    };
    let file = File::anonymous(name, ops, libc::O_RDWR | nonblock);
    task.fds().insert(file, flags & libc::SOCK_CLOEXEC != 0, 0)
}

/// A socket address from the application, as `move_addr_to_kernel` takes it.
fn read_addr(task: &Task, addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
    let len = len as i32;
    if !(0..=SOCKADDR_MAX as i32).contains(&len) {
        return Err(Errno::EINVAL);
    }
    let mut b = vec![0u8; len as usize];
    task.mm().copy_in(addr, &mut b)?;
    Ok(b)
}

/// Write an address back as `move_addr_to_user` does: as much as `*lenp`
/// allows, and its full length into `*lenp`.
fn write_addr(task: &Task, addr: u64, lenp: u64, name: &[u8]) -> Result<(), Errno> {
    if addr == 0 || lenp == 0 {
        return Ok(());
    }
    let mut lb = [0u8; 4];
    task.mm().copy_in(lenp, &mut lb)?;
    let room = i32::from_le_bytes(lb);
    if room < 0 {
        return Err(Errno::EINVAL);
    }
    let n = name.len().min(room as usize);
    task.mm().copy_out(addr, &name[..n])?;
    task.mm().copy_out(lenp, &(name.len() as u32).to_le_bytes())
}

/// Run `op` until it stops saying EAGAIN, waiting for `events` on the
/// socket in between unless `nonblock`. A timeout (SO_RCVTIMEO or
/// SO_SNDTIMEO) ends the wait with EAGAIN; a signal ends it with
/// ERESTARTSYS, or EINTR when a timeout was set (sock_intr_errno).
pub(super) fn block<T>(
    task: &Task,
    sock: &dyn InetSocket,
    events: i16,
    nonblock: bool,
    timeout: Option<Duration>,
    mut op: impl FnMut() -> Result<T, Errno>,
) -> Result<T, Errno> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        match op() {
            Err(Errno::EAGAIN) if !nonblock => wait(task, sock, events, deadline)?,
            other => return other,
        }
    }
}

/// Wait until the socket may be ready for `events` (a host socket: its
/// descriptor polls so; a netstack socket: its waiters say so), the task
/// is interrupted, or `deadline` passes (EAGAIN).
fn wait(
    task: &Task,
    sock: &dyn InetSocket,
    events: i16,
    deadline: Option<Instant>,
) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let wake = task.handle.wake_fd.as_ref().map_or(-1, |w| w.as_raw_fd());
    let host = sock.host_fd().map(|fd| fd.as_raw_fd());
    let me: Arc<dyn vfs::waiter::Notify> = task.handle.clone();
    if let Some(w) = sock.waiters() {
        w.add(&me);
    }
    let r = (|| loop {
        if host.is_none() && sock.poll(events) != 0 {
            return Ok(());
        }
        if task.handle.interrupted() {
            return Err(if deadline.is_some() {
                Errno::EINTR
            } else {
                Errno::new(crate::deliver::ERESTARTSYS).expect("a valid errno number")
            });
        }
        let mut slice = crate::process::KILL_POLL;
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Errno::EAGAIN);
            }
            slice = slice.min(left);
        }
        let mut p = [
            libc::pollfd {
                fd: wake,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: host.unwrap_or(-1),
                events,
                revents: 0,
            },
        ];
        // Round up so a sub-millisecond remainder still sleeps.
        let ms = slice.as_micros().div_ceil(1000) as i32;
        crate::host::poll(&mut p, ms)?;
        if p[0].revents != 0 {
            task.handle.drain_wake();
        }
        if p[1].revents != 0 {
            return Ok(());
        }
    })();
    if let Some(w) = sock.waiters() {
        w.remove(&me);
    }
    r
}

fn nonblocking(file: &File, flags: i32) -> bool {
    file.flags() & libc::O_NONBLOCK != 0 || flags & libc::MSG_DONTWAIT != 0
}

pub fn bind(task: &Task, sock: &dyn InetSocket, a: [u64; 6]) -> SysResult {
    let addr = read_addr(task, a[1], a[2])?;
    sock.bind(&addr).map(|()| 0)
}

pub fn connect(task: &Task, file: &File, sock: &dyn InetSocket, a: [u64; 6]) -> SysResult {
    let addr = read_addr(task, a[1], a[2])?;
    let nonblock = nonblocking(file, 0);
    let deadline = sock.timeout(true).map(|t| Instant::now() + t);
    loop {
        match sock.connect(&addr) {
            Err(Errno::EINPROGRESS | Errno::EALREADY) if !nonblock => {
                match wait(task, sock, libc::POLLOUT, deadline) {
                    // Still connecting when SO_SNDTIMEO runs out.
                    Err(Errno::EAGAIN) => return Err(Errno::EINPROGRESS),
                    r => r?,
                }
                // Connecting again reports how it ended (Linux's
                // __inet_stream_connect after the wait).
            }
            other => return other.map(|()| 0),
        }
    }
}

/// close(2) of the last descriptor of a netstack TCP socket with
/// SO_LINGER on and a time: wait until the peer has acknowledged
/// everything and our FIN, the time runs out, or a signal arrives
/// (tcp_close's sk_stream_wait_close; close returns 0 either way, and the
/// connection goes on in the background).
pub fn linger_on_close(task: &Task, file: &File) {
    let Some(sock) = file
        .ops()
        .as_any()
        .and_then(|x| x.downcast_ref::<crate::netstack_socket::NetSocket>())
    else {
        return;
    };
    let Some(linger) = sock.start_lingering_close() else {
        return;
    };
    let deadline = Instant::now() + linger;
    while sock.fin_unacked() && Instant::now() < deadline {
        // State changes need not wake the file's waiters: look again at
        // least every few milliseconds.
        let slice = deadline.min(Instant::now() + Duration::from_millis(5));
        match wait(task, sock, 0, Some(slice)) {
            Ok(()) | Err(Errno::EAGAIN) => {}
            Err(_) => return,
        }
    }
}

pub fn listen(sock: &dyn InetSocket, a: [u64; 6]) -> SysResult {
    sock.listen(a[1] as i32).map(|()| 0)
}

pub fn accept4(task: &Task, file: &File, sock: &dyn InetSocket, a: [u64; 6]) -> SysResult {
    let flags = a[3] as i32;
    if flags & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let conn = block(
        task,
        sock,
        libc::POLLIN,
        nonblocking(file, 0),
        sock.timeout(false),
        || sock.accept(),
    )?;
    let fd = install(task, conn.file, &conn.name, flags)?;
    if let Err(e) = write_addr(task, a[1], a[2], &conn.peer) {
        let _ = task.fds().remove(fd);
        return Err(e);
    }
    Ok(fd)
}

pub fn getsockname(task: &Task, sock: &dyn InetSocket, a: [u64; 6]) -> SysResult {
    write_addr(task, a[1], a[2], &sock.local_name()?).map(|()| 0)
}

pub fn getpeername(task: &Task, sock: &dyn InetSocket, a: [u64; 6]) -> SysResult {
    write_addr(task, a[1], a[2], &sock.peer_name()?).map(|()| 0)
}

pub fn shutdown(sock: &dyn InetSocket, a: [u64; 6]) -> SysResult {
    sock.shutdown(a[1] as i32).map(|()| 0)
}

/// The control messages of a send, for the socket to check.
fn read_control(task: &Task, addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
    if addr == 0 || len == 0 {
        return Ok(Vec::new());
    }
    if len as usize > CONTROL_MAX {
        return Err(Errno::ENOBUFS);
    }
    let mut b = vec![0u8; len as usize];
    task.mm().copy_in(addr, &mut b)?;
    Ok(b)
}

/// Send `data`: all of it on a blocking stream socket (waiting for room),
/// one datagram otherwise.
fn send_data(
    task: &Task,
    file: &File,
    sock: &dyn InetSocket,
    data: &[u8],
    to: Option<&[u8]>,
    control: &[u8],
    flags: i32,
) -> SysResult {
    let nonblock = nonblocking(file, flags);
    let host_flags = flags & SEND_FLAGS;
    let deadline = sock.timeout(true).map(|t| Instant::now() + t);
    let mut sent = 0usize;
    loop {
        let ctl = if sent == 0 { control } else { &[] };
        match sock.send(&data[sent..], to, ctl, host_flags) {
            Ok(n) => {
                sent += n;
                if sent == data.len() || sock.sock_type() != libc::SOCK_STREAM {
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
        if let Err(e) = wait(task, sock, libc::POLLOUT, deadline) {
            return if sent > 0 { Ok(sent as u64) } else { Err(e) };
        }
    }
}

pub fn sendto(task: &Task, file: &File, sock: &dyn InetSocket, a: [u64; 6]) -> SysResult {
    let data = gather(task, &[(a[1], a[2])])?;
    let to = if a[4] != 0 {
        Some(read_addr(task, a[4], a[5])?)
    } else {
        None
    };
    send_data(task, file, sock, &data, to.as_deref(), &[], a[3] as i32)
}

pub fn sendmsg(task: &Task, file: &File, sock: &dyn InetSocket, msg: u64, flags: i32) -> SysResult {
    let h = read_msghdr(task, msg)?;
    let iov = iovecs(task, h.iov, h.iovlen)?;
    let data = gather(task, &iov)?;
    let control = read_control(task, h.control, h.controllen)?;
    let to = if h.name != 0 && h.namelen != 0 {
        Some(read_addr(task, h.name, u64::from(h.namelen))?)
    } else {
        None
    };
    send_data(task, file, sock, &data, to.as_deref(), &control, flags)
}

/// What one receive gave the application.
struct Got {
    /// The call's return value (the full datagram with MSG_TRUNC).
    ret: usize,
    data: Vec<u8>,
    name: Vec<u8>,
    control: Vec<u8>,
    flags: i32,
}

/// Receive up to `want` bytes (MSG_WAITALL: all of them on a stream, unless
/// the peer closes or a signal comes).
fn recv_data(
    task: &Task,
    file: &File,
    sock: &dyn InetSocket,
    want: usize,
    control_room: usize,
    flags: i32,
) -> Result<Got, Errno> {
    if flags & !RECV_FLAGS != 0 {
        tracing::info!("inet recv flags {flags:#x} not supported: EINVAL");
        return Err(Errno::EINVAL);
    }
    // The error queue never blocks (Linux: EAGAIN when empty).
    let nonblock = nonblocking(file, flags) || flags & libc::MSG_ERRQUEUE != 0;
    let host_flags = flags & !(libc::MSG_WAITALL | libc::MSG_CMSG_CLOEXEC);
    let mut buf = vec![0u8; want.min(RECV_MAX)];
    let timeout = sock.timeout(false);
    let first = block(task, sock, libc::POLLIN, nonblock, timeout, || {
        sock.recv(&mut buf, control_room, host_flags)
    })?;
    let mut got = first.len.min(buf.len());
    let waitall = flags & libc::MSG_WAITALL != 0
        && flags & libc::MSG_PEEK == 0
        && sock.sock_type() == libc::SOCK_STREAM
        && !nonblock;
    if waitall {
        while got < buf.len() && first.len > 0 {
            let (_, rest) = buf.split_at_mut(got);
            match block(task, sock, libc::POLLIN, false, timeout, || {
                sock.recv(rest, 0, host_flags)
            }) {
                Ok(r) if r.len > 0 => got += r.len.min(rest.len()),
                _ => break,
            }
        }
    }
    buf.truncate(got);
    let ret = if waitall { got } else { first.len };
    Ok(Got {
        ret,
        data: buf,
        name: first.name,
        control: first.control,
        flags: first.flags,
    })
}

fn scatter(task: &Task, iov: &[(u64, u64)], data: &[u8]) -> Result<(), Errno> {
    let mut at = 0;
    for &(base, len) in iov {
        if at >= data.len() {
            break;
        }
        let n = (len as usize).min(data.len() - at);
        task.mm().copy_out(base, &data[at..at + n])?;
        at += n;
    }
    Ok(())
}

pub fn recvfrom(task: &Task, file: &File, sock: &dyn InetSocket, a: [u64; 6]) -> SysResult {
    let got = recv_data(task, file, sock, a[2] as usize, 0, a[3] as i32)?;
    task.mm().copy_out(a[1], &got.data)?;
    if a[4] != 0 && a[5] != 0 {
        write_addr(task, a[4], a[5], &got.name)?;
    }
    Ok(got.ret as u64)
}

pub(super) fn recv_into(
    task: &Task,
    file: &File,
    sock: &dyn InetSocket,
    h: &MsgHdr,
    hdr_addr: u64,
    flags: i32,
) -> SysResult {
    let iov = iovecs(task, h.iov, h.iovlen)?;
    let want: usize = iov.iter().map(|&(_, l)| l as usize).sum();
    let room = (h.controllen as usize).min(CONTROL_MAX);
    let room = if h.control == 0 { 0 } else { room };
    let got = recv_data(task, file, sock, want, room, flags)?;
    scatter(task, &iov, &got.data)?;
    if h.name != 0 {
        let n = got.name.len().min(h.namelen as usize);
        task.mm().copy_out(h.name, &got.name[..n])?;
        task.mm()
            .copy_out(hdr_addr + 8, &(got.name.len() as u32).to_le_bytes())?;
    }
    if !got.control.is_empty() {
        task.mm().copy_out(h.control, &got.control)?;
    }
    task.mm()
        .copy_out(hdr_addr + 40, &(got.control.len() as u64).to_le_bytes())?;
    task.mm()
        .copy_out(hdr_addr + 48, &got.flags.to_le_bytes())?;
    Ok(got.ret as u64)
}

pub fn recvmsg(task: &Task, file: &File, sock: &dyn InetSocket, a: [u64; 6]) -> SysResult {
    let h = read_msghdr(task, a[1])?;
    recv_into(task, file, sock, &h, a[1], a[2] as i32)
}

fn timeval_of(b: &[u8]) -> Result<Option<Duration>, Errno> {
    if b.len() < 16 {
        return Err(Errno::EINVAL);
    }
    let sec = i64::from_le_bytes(b[0..8].try_into().expect("8 bytes"));
    let usec = i64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
    if !(0..1_000_000).contains(&usec) {
        return Err(Errno::EDOM);
    }
    Ok(match (sec, usec) {
        // A negative time means "do not wait" (sock_set_timeout).
        (s, _) if s < 0 => Some(Duration::ZERO),
        (0, 0) => None,
        (s, u) => Some(Duration::new(s as u64, (u * 1000) as u32)),
    })
}

fn timeval_bytes(t: Option<Duration>) -> Vec<u8> {
    let t = t.unwrap_or_default();
    let mut v = (t.as_secs() as i64).to_le_bytes().to_vec();
    v.extend_from_slice(&i64::from(t.subsec_micros()).to_le_bytes());
    v
}

pub fn setsockopt(task: &Task, sock: &dyn InetSocket, a: [u64; 6]) -> SysResult {
    let (level, name, addr, len) = (a[1] as i32, a[2] as i32, a[3], a[4] as i32);
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    let mut value = vec![0u8; (len as usize).min(OPT_MAX)];
    task.mm().copy_in(addr, &mut value)?;
    if level == libc::SOL_SOCKET {
        match name {
            libc::SO_RCVTIMEO | SO_RCVTIMEO_NEW => {
                sock.set_timeout(false, timeval_of(&value)?);
                return Ok(0);
            }
            libc::SO_SNDTIMEO | SO_SNDTIMEO_NEW => {
                sock.set_timeout(true, timeval_of(&value)?);
                return Ok(0);
            }
            _ => {}
        }
    }
    sock.set_option(level, name, &value).map(|()| 0)
}

pub fn getsockopt(task: &Task, sock: &dyn InetSocket, a: [u64; 6]) -> SysResult {
    let (level, name, out, lenp) = (a[1] as i32, a[2] as i32, a[3], a[4]);
    let mut lb = [0u8; 4];
    task.mm().copy_in(lenp, &mut lb)?;
    let room = i32::from_le_bytes(lb);
    if room < 0 {
        return Err(Errno::EINVAL);
    }
    let value = match (level, name) {
        (libc::SOL_SOCKET, libc::SO_TYPE) => sock.sock_type().to_le_bytes().to_vec(),
        (libc::SOL_SOCKET, libc::SO_DOMAIN) => sock.family().to_le_bytes().to_vec(),
        (libc::SOL_SOCKET, libc::SO_PROTOCOL) => sock.protocol().to_le_bytes().to_vec(),
        (libc::SOL_SOCKET, libc::SO_RCVTIMEO | SO_RCVTIMEO_NEW) => {
            timeval_bytes(sock.timeout(false))
        }
        (libc::SOL_SOCKET, libc::SO_SNDTIMEO | SO_SNDTIMEO_NEW) => {
            timeval_bytes(sock.timeout(true))
        }
        _ => sock.get_option(level, name, (room as usize).min(OPT_MAX))?,
    };
    let n = value.len().min(room as usize);
    task.mm().copy_out(out, &value[..n])?;
    task.mm().copy_out(lenp, &(n as u32).to_le_bytes())?;
    Ok(0)
}
