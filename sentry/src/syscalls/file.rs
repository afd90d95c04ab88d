//! File syscalls: open, read, write, stat and friends.

use std::sync::Arc;

use abi::Errno;

use super::SysResult;
use vfs::walk::Context;
use vfs::Location;

use crate::fs::{self, File};
use crate::host;
use crate::signal::{self, Queued};
use crate::task::Task;

/// `AT_FDCWD` as it arrives in a 64-bit register.
pub(super) const AT_FDCWD: u64 = libc::AT_FDCWD as u32 as u64;
/// Longest path accepted (PATH_MAX, including the NUL).
const PATH_MAX: usize = 4096;
/// Bytes moved per host call by read/write loops.
const CHUNK: usize = 256 << 10;
/// Linux caps one read or write at this many bytes (MAX_RW_COUNT).
const MAX_RW: u64 = 0x7fff_f000;

pub(super) fn path_arg(task: &Task, addr: u64) -> Result<String, Errno> {
    let bytes = task.mm().copy_in_string(addr, PATH_MAX - 1)?;
    String::from_utf8(bytes).map_err(|_| {
        tracing::info!("non-UTF-8 path refused");
        Errno::EINVAL
    })
}

/// What a path walk needs from the calling task, held apart from the task
/// so no lock is kept while the walk runs.
pub(super) struct Walker {
    fs: Arc<crate::fs::FsSnapshot>,
    creds: vfs::Creds,
}

impl Walker {
    pub(super) fn of(task: &Task) -> Walker {
        Walker {
            fs: task.fs_snapshot(),
            creds: task.vfs_creds(),
        }
    }

    pub(super) fn ctx(&self) -> Context<'_> {
        Context {
            mounts: &self.fs.mounts,
            root: &self.fs.root,
            creds: &self.creds,
        }
    }
}

/// Where a walk starts: the working directory (in an fs snapshot) or a
/// directory descriptor's location.
pub(super) enum Start {
    Cwd(Arc<crate::fs::FsSnapshot>),
    Dir(Location),
}

impl std::ops::Deref for Start {
    type Target = Location;
    fn deref(&self) -> &Location {
        match self {
            Start::Cwd(fs) => &fs.cwd,
            Start::Dir(loc) => loc,
        }
    }
}

/// Where a walk of `path` relative to `dirfd` starts. An absolute path
/// ignores `dirfd` entirely, as Linux does.
pub(super) fn start_of(task: &Task, dirfd: u64, path: &str) -> Result<Start, Errno> {
    if path.starts_with('/') || dirfd == AT_FDCWD {
        return Ok(Start::Cwd(task.fs_snapshot()));
    }
    let dir = task.fds().get(dirfd)?;
    let loc = dir.location().ok_or(Errno::ENOTDIR)?.clone();
    if !loc.dentry.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    Ok(Start::Dir(loc))
}

/// The location `dirfd`/`path` names for the `*at` calls taking
/// AT_SYMLINK_NOFOLLOW and AT_EMPTY_PATH (`path` empty: `dirfd` itself).
pub(super) fn at_location(
    task: &Task,
    dirfd: u64,
    path: &str,
    flags: u64,
) -> Result<Location, Errno> {
    if path.is_empty() {
        if flags & libc::AT_EMPTY_PATH as u64 == 0 {
            return Err(Errno::ENOENT);
        }
        if dirfd == AT_FDCWD {
            return Ok(task.fs().cwd.clone());
        }
        let file = task.fds().get(dirfd)?;
        return file.location().cloned().ok_or(Errno::EBADF);
    }
    let start = start_of(task, dirfd, path)?;
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW as u64 == 0;
    Walker::of(task).ctx().lookup(&start, path, follow)
}

fn open_common(
    task: &mut Task,
    dirfd: u64,
    path_addr: u64,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> SysResult {
    let path = path_arg(task, path_addr)?;
    let start = start_of(task, dirfd, &path)?;
    let mode = mode & 0o7777 & !task.fs().umask;
    let file = Walker::of(task)
        .ctx()
        .open(&start, &path, flags, mode, resolve)?;
    // A FIFO opened for reading only or writing only waits for the other
    // side to open (fifo(7)), unless O_NONBLOCK.
    let pipe = file
        .ops()
        .as_any()
        .and_then(|a| a.downcast_ref::<crate::pipe::PipeEnd>());
    if let Some(end) = pipe.filter(|_| flags & libc::O_NONBLOCK == 0) {
        if !end.partner_arrived() {
            let waiters = file.ops().waiters().expect("pipes have waiters");
            wait_on(task, waiters, || end.partner_arrived())?;
        }
    }
    task.fds().insert(file, flags & libc::O_CLOEXEC != 0, 0)
}

pub fn openat(task: &mut Task, a: [u64; 6]) -> SysResult {
    open_common(task, a[0], a[1], a[2] as i32, a[3] as u32, 0)
}

pub fn openat2(task: &mut Task, a: [u64; 6]) -> SysResult {
    // struct open_how { u64 flags; u64 mode; u64 resolve; }
    let size = a[3];
    if size < 24 {
        return Err(Errno::EINVAL);
    }
    if size > 4096 {
        return Err(Errno::E2BIG);
    }
    let mut how = vec![0u8; size as usize];
    task.mm().copy_in(a[2], &mut how)?;
    if how[24..].iter().any(|&b| b != 0) {
        return Err(Errno::E2BIG);
    }
    let word = |i: usize| u64::from_le_bytes(how[i..i + 8].try_into().expect("8 bytes"));
    let (flags, mode, resolve) = (word(0), word(8), word(16));
    if flags > u64::from(u32::MAX) || mode & !0o7777 != 0 || resolve & !0x3f != 0 {
        return Err(Errno::EINVAL);
    }
    if mode != 0 && flags as i32 & (libc::O_CREAT | libc::O_TMPFILE) == 0 {
        return Err(Errno::EINVAL);
    }
    open_common(task, a[0], a[1], flags as i32, mode as u32, resolve)
}

pub fn open(task: &mut Task, a: [u64; 6]) -> SysResult {
    openat(task, [AT_FDCWD, a[0], a[1], a[2], 0, 0])
}

pub fn creat(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64;
    openat(task, [AT_FDCWD, a[0], flags, a[1], 0, 0])
}

pub fn close(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().remove(a[0])?;
    release_posix_locks(task, &file);
    if Arc::strong_count(&file) == 1 {
        // The last reference: a lingering socket's close waits here.
        super::inet::linger_on_close(task, &file);
    }
    Ok(0)
}

/// close_range(2): close (or, with CLOSE_RANGE_CLOEXEC, mark
/// close-on-exec) every descriptor from `first` to `last`;
/// CLOSE_RANGE_UNSHARE first gives the process its own descriptor table.
pub fn close_range(task: &mut Task, a: [u64; 6]) -> SysResult {
    const CLOSE_RANGE_UNSHARE: u64 = 1 << 1;
    const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;
    let (first, last, flags) = (a[0] as u32 as u64, a[1] as u32 as u64, a[2]);
    if flags & !(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) != 0 || first > last {
        return Err(Errno::EINVAL);
    }
    if flags & CLOSE_RANGE_UNSHARE != 0 {
        let own = task.fds().clone();
        task.fds = std::sync::Arc::new(std::sync::Mutex::new(own));
        task.publish();
    }
    if flags & CLOSE_RANGE_CLOEXEC != 0 {
        task.fds().set_cloexec_range(first, last);
        return Ok(0);
    }
    let closed = task.fds().remove_range(first, last);
    for file in &closed {
        release_posix_locks(task, file);
    }
    Ok(0)
}

/// Closing any descriptor of a file drops the process's POSIX locks on it.
pub(super) fn release_posix_locks(task: &Task, file: &File) {
    // The key costs a stat (a host call for host files): skip it when
    // there is no lock to drop.
    if file.location().is_some() && !vfs::lock::table().is_empty() {
        if let Ok(key) = file.lock_key() {
            vfs::lock::table().release(key, vfs::lock::Owner::Process(task.tg.tgid));
        }
    }
}

/// `struct flock` (32 bytes on x86-64).
struct Flock {
    kind: i16,
    whence: i16,
    start: i64,
    len: i64,
    pid: i32,
}

impl Flock {
    fn read(task: &Task, addr: u64) -> Result<Flock, Errno> {
        let mut b = [0u8; 32];
        task.mm().copy_in(addr, &mut b)?;
        Ok(Flock {
            kind: i16::from_le_bytes([b[0], b[1]]),
            whence: i16::from_le_bytes([b[2], b[3]]),
            start: i64::from_le_bytes(b[8..16].try_into().expect("8")),
            len: i64::from_le_bytes(b[16..24].try_into().expect("8")),
            pid: i32::from_le_bytes(b[24..28].try_into().expect("4")),
        })
    }

    fn write(&self, task: &Task, addr: u64) -> Result<(), Errno> {
        let mut b = [0u8; 32];
        b[0..2].copy_from_slice(&self.kind.to_le_bytes());
        b[2..4].copy_from_slice(&self.whence.to_le_bytes());
        b[8..16].copy_from_slice(&self.start.to_le_bytes());
        b[16..24].copy_from_slice(&self.len.to_le_bytes());
        b[24..28].copy_from_slice(&self.pid.to_le_bytes());
        task.mm().copy_out(addr, &b)
    }

    /// The byte range `[start, end)` it names in `file`.
    fn range(&self, file: &File) -> Result<(u64, u64), Errno> {
        let base = match i32::from(self.whence) {
            libc::SEEK_SET => 0,
            libc::SEEK_CUR => file.position() as i64,
            libc::SEEK_END => file.stat()?.size,
            _ => return Err(Errno::EINVAL),
        };
        let start = base.checked_add(self.start).ok_or(Errno::EOVERFLOW)?;
        let (start, end) = match self.len {
            0 => (start, i64::MAX),
            n if n > 0 => (start, start.checked_add(n).ok_or(Errno::EOVERFLOW)?),
            n => (start + n, start),
        };
        if start < 0 {
            return Err(Errno::EINVAL);
        }
        let end = if end == i64::MAX {
            u64::MAX
        } else {
            end as u64
        };
        Ok((start as u64, end))
    }
}

/// F_GETLK, F_SETLK(W) and their OFD forms.
fn record_lock(task: &mut Task, file: &Arc<File>, cmd: i32, addr: u64) -> SysResult {
    const F_OFD_GETLK: i32 = 36;
    const F_OFD_SETLK: i32 = 37;
    const F_OFD_SETLKW: i32 = 38;
    if file.location().is_none() && file.is_path_only() {
        return Err(Errno::EBADF);
    }
    let mut fl = Flock::read(task, addr)?;
    let ofd = matches!(cmd, F_OFD_GETLK | F_OFD_SETLK | F_OFD_SETLKW);
    if ofd && fl.pid != 0 {
        return Err(Errno::EINVAL);
    }
    let kind = match i32::from(fl.kind) {
        libc::F_RDLCK => Some(vfs::lock::Kind::Read),
        libc::F_WRLCK => Some(vfs::lock::Kind::Write),
        libc::F_UNLCK => None,
        _ => return Err(Errno::EINVAL),
    };
    let (start, end) = fl.range(file)?;
    let owner = if ofd {
        file.lock_owner()
    } else {
        vfs::lock::Owner::Process(task.tg.tgid)
    };
    let req = vfs::lock::Request {
        owner,
        pid: if ofd { -1 } else { task.tg.tgid },
        kind,
        start,
        end,
    };
    let key = file.lock_key()?;
    let table = vfs::lock::table();
    match cmd {
        libc::F_GETLK | F_OFD_GETLK => {
            if kind.is_none() {
                return Err(Errno::EINVAL);
            }
            match table.test(key, &req) {
                None => fl.kind = libc::F_UNLCK as i16,
                Some(l) => {
                    fl.kind = match l.kind {
                        vfs::lock::Kind::Read => libc::F_RDLCK,
                        vfs::lock::Kind::Write => libc::F_WRLCK,
                    } as i16;
                    fl.whence = libc::SEEK_SET as i16;
                    fl.start = l.start as i64;
                    fl.len = if l.end == u64::MAX {
                        0
                    } else {
                        (l.end - l.start) as i64
                    };
                    fl.pid = l.pid;
                }
            }
            fl.write(task, addr)?;
            Ok(0)
        }
        _ => {
            match kind {
                Some(vfs::lock::Kind::Read) if !file.readable() => return Err(Errno::EBADF),
                Some(vfs::lock::Kind::Write) if !file.writable() => return Err(Errno::EBADF),
                _ => {}
            }
            if cmd == libc::F_SETLKW || cmd == F_OFD_SETLKW {
                let handle = task.handle.clone();
                table
                    .set_wait(key, &req, false, &|| handle.interrupted())
                    .map_err(restart_on_eintr)?;
            } else {
                table.set(key, &req)?;
            }
            Ok(0)
        }
    }
}

/// A blocking lock wait that a signal ended restarts if the handler says so.
fn restart_on_eintr(e: Errno) -> Errno {
    if e == Errno::EINTR {
        Errno::new(crate::deliver::ERESTARTSYS).expect("a valid errno number")
    } else {
        e
    }
}

pub fn flock(task: &mut Task, a: [u64; 6]) -> SysResult {
    const LOCK_SH: u64 = 1;
    const LOCK_EX: u64 = 2;
    const LOCK_NB: u64 = 4;
    const LOCK_UN: u64 = 8;
    let file = task.fds().get(a[0])?;
    if file.is_path_only() {
        return Err(Errno::EBADF);
    }
    let kind = match a[1] & !LOCK_NB {
        LOCK_SH => Some(vfs::lock::Kind::Read),
        LOCK_EX => Some(vfs::lock::Kind::Write),
        LOCK_UN => None,
        _ => return Err(Errno::EINVAL),
    };
    let req = vfs::lock::Request {
        owner: file.lock_owner(),
        pid: task.tg.tgid,
        kind,
        start: 0,
        end: u64::MAX,
    };
    let key = file.lock_key()?;
    let table = vfs::lock::table();
    if a[1] & LOCK_NB != 0 || kind.is_none() {
        table.flock(key, &req)?;
    } else {
        let handle = task.handle.clone();
        table
            .set_wait(key, &req, true, &|| handle.interrupted())
            .map_err(restart_on_eintr)?;
    }
    Ok(0)
}

/// Read up to `count` bytes from `file` (at `offset`, if given) into
/// application memory at `buf`.
/// Run `op` on `file`, which may be a host descriptor that is not ready:
/// for a blocking description, wait (interruptibly) until the host says it
/// is ready for `events`, then retry; EAGAIN for a non-blocking one. Files
/// the Sentry keeps itself are passed straight to `op`.
pub(super) fn host_io<T>(
    task: &Task,
    file: &File,
    events: i16,
    mut op: impl FnMut() -> Result<T, Errno>,
) -> Result<T, Errno> {
    let nonblock = file.flags() & libc::O_NONBLOCK != 0;
    // A socket's read and write wait as its recv and send do, within
    // SO_RCVTIMEO/SO_SNDTIMEO.
    if let Some(sock) = crate::inet_socket::inet_of(file.ops().as_ref()) {
        let timeout = sock.timeout(events == libc::POLLOUT);
        return super::inet::block(task, sock, events, nonblock, timeout, op);
    }
    let Some(fd) = file.ops().host_fd().filter(|_| file.location().is_none()) else {
        if file.ops().waiters().is_some() {
            return sentry_io(task, file, events, nonblock, op);
        }
        return op();
    };
    loop {
        // Ask the host first: stdio the runtime handed over blocks there.
        if !ready(fd, events, 0)? {
            if nonblock {
                return Err(Errno::EAGAIN);
            }
            wait_ready(task, fd, events)?;
            continue;
        }
        match op() {
            Err(Errno::EAGAIN) if !nonblock => wait_ready(task, fd, events)?,
            other => return other,
        }
    }
}

/// [`host_io`] for files the Sentry implements: wait on the file's
/// waiters (and the task's wake eventfd) between tries.
fn sentry_io<T>(
    task: &Task,
    file: &File,
    events: i16,
    nonblock: bool,
    mut op: impl FnMut() -> Result<T, Errno>,
) -> Result<T, Errno> {
    loop {
        match op() {
            Err(Errno::EAGAIN) if !nonblock => {
                let waiters = file
                    .ops()
                    .waiters()
                    .expect("only files with waiters get here");
                wait_on(task, waiters, || file.ops().poll(events) != 0)?
            }
            other => return other,
        }
    }
}

/// Wait until `ready` holds, looking again whenever `waiters` announce a
/// change (and every 50 ms); ERESTARTSYS when a signal or kill comes first.
pub(super) fn wait_on(
    task: &Task,
    waiters: &vfs::waiter::Waiters,
    ready: impl Fn() -> bool,
) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let me: Arc<dyn vfs::waiter::Notify> = task.handle.clone();
    waiters.add(&me);
    let r = (|| loop {
        if ready() {
            return Ok(());
        }
        if task.handle.interrupted() {
            return Err(Errno::new(crate::deliver::ERESTARTSYS).expect("valid"));
        }
        let mut p = [libc::pollfd {
            fd: task.handle.wake_fd.as_ref().map_or(-1, |w| w.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        }];
        crate::host::poll(&mut p, crate::process::KILL_POLL.as_millis() as i32)?;
        if p[0].revents != 0 {
            task.handle.drain_wake();
        }
    })();
    waiters.remove(&me);
    r
}

/// Whether the host descriptor is ready for `events` (or hung up, or in
/// error: the operation will say how) within `timeout_ms`.
fn ready(fd: std::os::fd::BorrowedFd<'_>, events: i16, timeout_ms: i32) -> Result<bool, Errno> {
    use std::os::fd::AsRawFd;
    let mut p = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    }];
    Ok(host::poll(&mut p, timeout_ms)? > 0)
}

/// Wait until `fd` is ready for `events`; ERESTARTSYS when a signal or a
/// kill comes first (the task's wake eventfd fires).
fn wait_ready(task: &Task, fd: std::os::fd::BorrowedFd<'_>, events: i16) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let wake = task.handle.wake_fd.as_ref().map_or(-1, |w| w.as_raw_fd());
    loop {
        if task.handle.interrupted() {
            return Err(Errno::new(crate::deliver::ERESTARTSYS).expect("a valid errno number"));
        }
        let mut p = [
            libc::pollfd {
                fd: fd.as_raw_fd(),
                events,
                revents: 0,
            },
            libc::pollfd {
                fd: wake,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        host::poll(&mut p, crate::process::KILL_POLL.as_millis() as i32)?;
        if p[1].revents != 0 {
            task.handle.drain_wake();
        }
        if p[0].revents != 0 {
            return Ok(());
        }
    }
}

/// Most bytes one direct host call moves, so the memory manager's lock is
/// not held for long.
const DIRECT_MAX: usize = 8 << 20;

/// One host read or write straight between `file`'s host descriptor and
/// application memory at `[addr, addr+len)` (`into`: a read). Ok(None)
/// when the direct path does not apply (the file has none, or the range is
/// not wholly accessible): the copying path then runs instead.
fn direct_step(
    task: &Task,
    file: &File,
    addr: u64,
    len: usize,
    offset: Option<u64>,
    into: bool,
) -> Result<Option<usize>, Errno> {
    let step = || {
        let mut mm = task.mm();
        let r = mm.with_host_iovecs(&[(addr, len as u64)], into, |iov| {
            // SAFETY: the iovecs name memory-file pages of this address
            // space, kept mapped by the memory manager's lock, which we
            // hold across the call; no Rust reference points into them.
            unsafe {
                if into {
                    file.read_iov(iov, offset)
                } else {
                    file.write_iov(iov, offset)
                }
            }
        });
        match r {
            Some(Some(r)) => r.map(Some),
            _ => Ok(None),
        }
    };
    let events = if into { libc::POLLIN } else { libc::POLLOUT };
    match offset {
        Some(_) => step(),
        None => host_io(task, file, events, step),
    }
}

fn read_into(task: &Task, file: &File, buf: u64, count: u64, offset: Option<u64>) -> SysResult {
    if file.ops().iov_io().is_none() || file.is_dir() {
        return read_copying(task, file, buf, count, offset);
    }
    let count = count.min(MAX_RW) as usize;
    let mut done = 0usize;
    while done < count {
        let want = (count - done).min(DIRECT_MAX);
        let at = offset.map(|o| o + done as u64);
        let n = match direct_step(task, file, buf + done as u64, want, at, true) {
            Ok(Some(n)) => n,
            Ok(None) => {
                return match read_copying(task, file, buf + done as u64, (count - done) as u64, at)
                {
                    Ok(n) => Ok(done as u64 + n),
                    Err(_) if done > 0 => Ok(done as u64),
                    Err(e) => Err(e),
                }
            }
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += n;
        // As in the copying path: only a regular file is read on to the
        // count; a short read ends the call.
        if n < want || !file.is_regular() {
            break;
        }
    }
    Ok(done as u64)
}

fn read_copying(task: &Task, file: &File, buf: u64, count: u64, offset: Option<u64>) -> SysResult {
    if !file.readable() {
        return Err(Errno::EBADF);
    }
    if file.is_dir() {
        return Err(Errno::EISDIR);
    }
    let count = count.min(MAX_RW) as usize;
    let mut done = 0usize;
    let mut chunk = vec![0u8; count.min(CHUNK)];
    while done < count {
        let want = (count - done).min(chunk.len());
        let got = match offset {
            Some(o) => file.pread(&mut chunk[..want], o + done as u64),
            None => host_io(task, file, libc::POLLIN, || file.read(&mut chunk[..want])),
        };
        let n = match got {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        if let Err(e) = task.mm().copy_out(buf + done as u64, &chunk[..n]) {
            return if done == 0 { Err(e) } else { Ok(done as u64) };
        }
        done += n;
        // Short reads end the call: pipes and terminals return what they
        // have, and a regular file has reached its end.
        if n < want || !file.is_regular() {
            break;
        }
    }
    Ok(done as u64)
}

/// How many of `count` bytes RLIMIT_FSIZE lets a write to `file` at
/// `offset` (None: the file position) move: all of them for files other
/// than regular ones; none past the limit, where the writer gets SIGXFSZ
/// and EFBIG (Linux's `generic_write_check_limits`; an empty write is
/// always allowed). An O_APPEND write is checked at the current end.
pub(super) fn fsize_allows(
    task: &Task,
    file: &File,
    offset: Option<u64>,
    count: u64,
) -> Result<u64, Errno> {
    let limit = task.tg.soft_limit(crate::limits::RLIMIT_FSIZE);
    if limit == crate::limits::RLIM_INFINITY || count == 0 || !file.is_regular() {
        return Ok(count);
    }
    let at = if file.flags() & libc::O_APPEND != 0 {
        file.stat()?.size.max(0) as u64
    } else {
        offset.unwrap_or_else(|| file.position())
    };
    if at >= limit {
        raise_sigxfsz(task);
        return Err(Errno::EFBIG);
    }
    Ok(count.min(limit - at))
}

/// SIGXFSZ to the calling thread, for a file growing past RLIMIT_FSIZE.
pub(super) fn raise_sigxfsz(task: &Task) {
    let info = signal::user_info(signal::SIGXFSZ, 0, 0, 0);
    task.handle.post(Queued::new(signal::SIGXFSZ, info));
}

/// Write up to `count` bytes from application memory at `buf` to `file`.
fn write_from(task: &Task, file: &File, buf: u64, count: u64, offset: Option<u64>) -> SysResult {
    let count = fsize_allows(task, file, offset, count)?;
    if file.ops().iov_io().is_none() {
        return write_copying(task, file, buf, count, offset);
    }
    let count = count.min(MAX_RW) as usize;
    let mut done = 0usize;
    while done < count {
        let want = (count - done).min(DIRECT_MAX);
        let at = offset.map(|o| o + done as u64);
        match direct_step(task, file, buf + done as u64, want, at, false) {
            Ok(Some(n)) => done += n,
            Ok(None) => {
                return match write_copying(task, file, buf + done as u64, (count - done) as u64, at)
                {
                    Ok(n) => Ok(done as u64 + n),
                    Err(_) if done > 0 => Ok(done as u64),
                    Err(e) => Err(e),
                }
            }
            Err(Errno::EPIPE) => {
                raise_sigpipe(task);
                return if done == 0 {
                    Err(Errno::EPIPE)
                } else {
                    Ok(done as u64)
                };
            }
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(done as u64)
}

fn write_copying(task: &Task, file: &File, buf: u64, count: u64, offset: Option<u64>) -> SysResult {
    if !file.writable() {
        return Err(Errno::EBADF);
    }
    let count = count.min(MAX_RW) as usize;
    let mut done = 0usize;
    let mut chunk = vec![0u8; count.min(CHUNK)];
    while done < count {
        let want = (count - done).min(chunk.len());
        if let Err(e) = task.mm().copy_in(buf + done as u64, &mut chunk[..want]) {
            return if done == 0 { Err(e) } else { Ok(done as u64) };
        }
        let mut sent = 0;
        while sent < want {
            let put = match offset {
                Some(o) => file.pwrite(&chunk[sent..want], o + (done + sent) as u64),
                None => host_io(task, file, libc::POLLOUT, || file.write(&chunk[sent..want])),
            };
            match put {
                Ok(n) => sent += n,
                Err(Errno::EPIPE) => {
                    raise_sigpipe(task);
                    return if done + sent == 0 {
                        Err(Errno::EPIPE)
                    } else {
                        Ok((done + sent) as u64)
                    };
                }
                Err(e) if done + sent == 0 => return Err(e),
                Err(_) => return Ok((done + sent) as u64),
            }
        }
        done += want;
    }
    Ok(done as u64)
}

pub fn read(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    expect_busy_reading(task, &file, a[2]);
    read_into(task, &file, a[1], a[2], None)
}

/// A read of this many bytes of a file kept in memory keeps the Sentry
/// copying for tens of microseconds, without blocking: the platform may
/// keep the application's thread awake for the answer.
fn expect_busy_reading(task: &mut Task, file: &File, count: u64) {
    const LONG_READ: u64 = 64 << 10;
    if count >= LONG_READ && file.is_regular() && file.ops().iov_io().is_some() {
        task.ctx.expect_busy();
    }
}

pub fn write(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    write_from(task, &file, a[1], a[2], None)
}

pub fn pread64(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if (a[3] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    expect_busy_reading(task, &file, a[2]);
    read_into(task, &file, a[1], a[2], Some(a[3]))
}

pub fn pwrite64(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if (a[3] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    write_from(task, &file, a[1], a[2], Some(a[3]))
}

/// The (base, len) pairs of an iovec array.
pub(super) fn iovecs(task: &Task, addr: u64, count: u64) -> Result<Vec<(u64, u64)>, Errno> {
    if count > 1024 {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; count as usize * 16];
    task.mm().copy_in(addr, &mut raw)?;
    let iov: Vec<(u64, u64)> = raw
        .chunks_exact(16)
        .map(|c| {
            let word = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().expect("8 bytes"));
            (word(0), word(8))
        })
        .collect();
    if iov.iter().any(|&(_, len)| len > i64::MAX as u64) {
        return Err(Errno::EINVAL);
    }
    Ok(iov)
}

/// Move data for each iovec in turn with `op` (read_into or write_from),
/// at `offset` onwards if given (the p*v calls) or at the file position,
/// stopping at the first short transfer; an error after some data was
/// moved ends the call with the count so far, as Linux does.
fn vectored(
    task: &Task,
    fd: u64,
    iov: (u64, u64),
    offset: Option<u64>,
    op: fn(&Task, &File, u64, u64, Option<u64>) -> SysResult,
) -> SysResult {
    let file = task.fds().get(fd)?;
    vectored_on(task, &file, iov, offset, op)
}

fn vectored_on(
    task: &Task,
    file: &File,
    iov: (u64, u64),
    offset: Option<u64>,
    op: fn(&Task, &File, u64, u64, Option<u64>) -> SysResult,
) -> SysResult {
    let iovecs = iovecs(task, iov.0, iov.1)?;
    // Linux refuses a total that would not fit in ssize_t before moving anything.
    if iovecs
        .iter()
        .try_fold(0u64, |sum, &(_, len)| {
            sum.checked_add(len).filter(|&s| s <= i64::MAX as u64)
        })
        .is_none()
    {
        return Err(Errno::EINVAL);
    }
    let mut total = 0;
    for (base, len) in iovecs {
        match op(task, file, base, len, offset.map(|o| o + total)) {
            Ok(n) => {
                total += n;
                if n < len {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total)
}

pub fn readv(task: &mut Task, a: [u64; 6]) -> SysResult {
    vectored(task, a[0], (a[1], a[2]), None, read_into)
}

pub fn writev(task: &mut Task, a: [u64; 6]) -> SysResult {
    vectored(task, a[0], (a[1], a[2]), None, write_from)
}

/// The offset of preadv/pwritev: on x86-64 the low word holds all of it.
fn vector_offset(pos: u64) -> Result<u64, Errno> {
    if (pos as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(pos)
}

pub fn preadv(task: &mut Task, a: [u64; 6]) -> SysResult {
    vectored(
        task,
        a[0],
        (a[1], a[2]),
        Some(vector_offset(a[3])?),
        read_into,
    )
}

pub fn pwritev(task: &mut Task, a: [u64; 6]) -> SysResult {
    vectored(
        task,
        a[0],
        (a[1], a[2]),
        Some(vector_offset(a[3])?),
        write_from,
    )
}

/// RWF_* flags of preadv2/pwritev2 (include/uapi/linux/fs.h).
const RWF_HIPRI: u64 = 0x1;
const RWF_DSYNC: u64 = 0x2;
const RWF_SYNC: u64 = 0x4;
const RWF_NOWAIT: u64 = 0x8;
const RWF_APPEND: u64 = 0x10;

/// preadv2/pwritev2's offset: -1 means the file position, as readv/writev.
fn vector2_offset(pos: u64) -> Result<Option<u64>, Errno> {
    match pos as i64 {
        -1 => Ok(None),
        p if p < 0 => Err(Errno::EINVAL),
        p => Ok(Some(p as u64)),
    }
}

/// preadv2(2). RWF_HIPRI is a polling hint with no meaning here; RWF_NOWAIT
/// (fail rather than wait for the page cache) is not supported and gives
/// EOPNOTSUPP, as Linux does for files that cannot honour it.
pub fn preadv2(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = a[5];
    if flags & !(RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND) != 0
        || flags & RWF_NOWAIT != 0
    {
        return Err(Errno::EOPNOTSUPP);
    }
    vectored(task, a[0], (a[1], a[2]), vector2_offset(a[3])?, read_into)
}

/// pwritev2(2): RWF_DSYNC and RWF_SYNC sync the file after the write, as
/// O_DSYNC/O_SYNC would; RWF_APPEND writes at the end whatever the offset.
pub fn pwritev2(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = a[5];
    if flags & !(RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND) != 0
        || flags & RWF_NOWAIT != 0
    {
        return Err(Errno::EOPNOTSUPP);
    }
    let file = task.fds().get(a[0])?;
    let mut offset = vector2_offset(a[3])?;
    if flags & RWF_APPEND != 0 && file.is_regular() {
        match offset {
            // At the file position: move it to the end first, so it ends
            // after the data as an O_APPEND write leaves it.
            None => {
                file.seek(0, libc::SEEK_END)?;
            }
            Some(_) => offset = Some(file.stat()?.size.max(0) as u64),
        }
    }
    let n = vectored(task, a[0], (a[1], a[2]), offset, write_from)?;
    if flags & (RWF_DSYNC | RWF_SYNC) != 0 && n > 0 {
        file.ops().sync()?;
    }
    Ok(n)
}

/// One side of a transfer: a file and where in it (None: at its position).
#[derive(Clone, Copy)]
struct End<'a> {
    file: &'a File,
    offset: Option<u64>,
}

impl<'a> End<'a> {
    fn new(file: &'a File, offset: Option<u64>) -> End<'a> {
        End { file, offset }
    }
}

/// What sendfile, splice and copy_file_range move: up to `count` bytes
/// from `from` to `to`, through the Sentry; blocking files wait as read
/// and write do. `once` stops after the first read that returns data
/// (splice moves what a pipe holds, not a fixed amount).
#[derive(Clone, Copy)]
struct Transfer<'a> {
    from: End<'a>,
    to: End<'a>,
    count: usize,
    once: bool,
}

/// Run `t` under RLIMIT_FSIZE; returns the bytes moved.
fn transfer(task: &Task, t: Transfer<'_>) -> Result<usize, Errno> {
    let wanted = t.count;
    let count = fsize_allows(task, t.to.file, t.to.offset, t.count as u64)? as usize;
    let done = transfer_up_to(task, Transfer { count, ..t })?;
    // Linux moves data in rounds, and the round after the one that reached
    // RLIMIT_FSIZE fails with SIGXFSZ (the call still returns what moved)
    // when there was more to move.
    if done == count && count < wanted && !t.once {
        let more = match t.from.offset {
            Some(o) => t
                .from
                .file
                .pread(&mut [0u8], o + done as u64)
                .is_ok_and(|n| n > 0),
            None => true,
        };
        if more {
            raise_sigxfsz(task);
        }
    }
    Ok(done)
}

fn transfer_up_to(task: &Task, t: Transfer<'_>) -> Result<usize, Errno> {
    let (inp, out) = (t.from.file, t.to.file);
    let mut buf = vec![0u8; t.count.min(CHUNK)];
    let mut done = 0usize;
    while done < t.count {
        let want = (t.count - done).min(buf.len());
        let got = match t.from.offset {
            Some(o) => inp.pread(&mut buf[..want], o + done as u64),
            None => host_io(task, inp, libc::POLLIN, || inp.read(&mut buf[..want])),
        };
        let n = match got {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        let mut sent = 0;
        while sent < n {
            let put = match t.to.offset {
                Some(o) => out.pwrite(&buf[sent..n], o + (done + sent) as u64),
                None => host_io(task, out, libc::POLLOUT, || out.write(&buf[sent..n])),
            };
            match put {
                Ok(w) => sent += w,
                Err(e) if done + sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        done += sent;
        if sent < n || t.once {
            break;
        }
    }
    Ok(done)
}

/// An `loff_t *` argument: None for a null pointer.
fn offset_arg(task: &Task, addr: u64) -> Result<Option<u64>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    let mut b = [0u8; 8];
    task.mm().copy_in(addr, &mut b)?;
    let off = i64::from_le_bytes(b);
    if off < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(Some(off as u64))
}

/// Store `off` through an `loff_t *` argument (the offset a call moved on).
fn offset_out(task: &Task, addr: u64, off: u64) -> Result<(), Errno> {
    task.mm().copy_out(addr, &off.to_le_bytes())
}

/// The descriptions a copy between descriptors reads from and writes to
/// (sendfile, splice, tee, copy_file_range): EBADF unless open for that.
fn in_and_out(task: &Task, in_fd: u64, out_fd: u64) -> Result<(Arc<File>, Arc<File>), Errno> {
    let inp = task.fds().get(in_fd)?;
    let out = task.fds().get(out_fd)?;
    if !inp.readable() || !out.writable() {
        return Err(Errno::EBADF);
    }
    Ok((inp, out))
}

pub fn sendfile(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (inp, out) = in_and_out(task, a[1], a[0])?;
    let offset = offset_arg(task, a[2])?;
    let count = a[3].min(MAX_RW) as usize;
    let done = transfer(
        task,
        Transfer {
            from: End::new(&inp, offset),
            to: End::new(&out, None),
            count,
            once: false,
        },
    )?;
    if let Some(off) = offset {
        offset_out(task, a[2], off + done as u64)?;
    }
    Ok(done as u64)
}

/// Whether `f` is a pipe (host or Sentry).
fn is_pipe(f: &File) -> bool {
    f.file_type() == libc::S_IFIFO
        || f.stat()
            .is_ok_and(|st| st.mode & libc::S_IFMT == libc::S_IFIFO)
}

/// splice(2), by copying through the Sentry: one side must be a pipe.
pub fn splice(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (in_fd, in_off_p, out_fd, out_off_p, len) = (a[0], a[1], a[2], a[3], a[4]);
    let (inp, out) = in_and_out(task, in_fd, out_fd)?;
    let (in_pipe, out_pipe) = (is_pipe(&inp), is_pipe(&out));
    if !in_pipe && !out_pipe {
        return Err(Errno::EINVAL);
    }
    if (in_pipe && in_off_p != 0) || (out_pipe && out_off_p != 0) {
        return Err(Errno::ESPIPE);
    }
    let in_off = offset_arg(task, in_off_p)?;
    let out_off = offset_arg(task, out_off_p)?;
    let count = len.min(MAX_RW) as usize;
    let done = transfer(
        task,
        Transfer {
            from: End::new(&inp, in_off),
            to: End::new(&out, out_off),
            count,
            once: in_pipe,
        },
    )?;
    if let Some(o) = in_off {
        offset_out(task, in_off_p, o + done as u64)?;
    }
    if let Some(o) = out_off {
        offset_out(task, out_off_p, o + done as u64)?;
    }
    Ok(done as u64)
}

const SPLICE_FLAGS: u64 =
    (libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MORE | libc::SPLICE_F_GIFT)
        as u64;

/// The Sentry's own pipe behind `f` (a FIFO's), if it is one.
fn sentry_pipe(f: &File) -> Option<&crate::pipe::PipeEnd> {
    f.ops()
        .as_any()
        .and_then(|a| a.downcast_ref::<crate::pipe::PipeEnd>())
}

/// The host pipe behind `f`, if it is one.
fn host_pipe(f: &File) -> Option<std::os::fd::BorrowedFd<'_>> {
    f.ops()
        .host_fd()
        .filter(|_| f.location().is_none() && is_pipe(f))
}

/// tee(2): copy up to `len` bytes from one pipe to another without
/// consuming them. Between pipes made by pipe2 (host pipes) the host's
/// tee does the copy; a FIFO (the Sentry's own pipe) on either side is
/// read without consuming and written by the Sentry. The Sentry does the
/// waiting, so signals interrupt it.
pub fn tee(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (len, flags) = (a[2], a[3]);
    if flags & !SPLICE_FLAGS != 0 {
        return Err(Errno::EINVAL);
    }
    let (inp, out) = in_and_out(task, a[0], a[1])?;
    if !is_pipe(&inp) || !is_pipe(&out) {
        return Err(Errno::EINVAL);
    }
    let (si, so) = (inp.stat()?, out.stat()?);
    let same = match (sentry_pipe(&inp), sentry_pipe(&out)) {
        (Some(i), Some(o)) => i.same_pipe(o),
        _ => (si.dev, si.ino) == (so.dev, so.ino),
    };
    if same {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(0);
    }
    let nonblock = flags & libc::SPLICE_F_NONBLOCK as u64 != 0
        || (inp.flags() | out.flags()) & libc::O_NONBLOCK != 0;
    let len = len.min(MAX_RW) as usize;
    if let (Some(in_fd), Some(out_fd)) = (host_pipe(&inp), host_pipe(&out)) {
        return loop {
            match host::tee(in_fd, out_fd, len) {
                Err(Errno::EAGAIN) if !nonblock => {
                    // Empty input, or a full output: wait for whichever.
                    if ready(in_fd, libc::POLLIN, 0)? {
                        wait_ready(task, out_fd, libc::POLLOUT)?;
                    } else {
                        wait_ready(task, in_fd, libc::POLLIN)?;
                    }
                }
                other => break other.map(|n| n as u64),
            }
        };
    }
    // Through the Sentry: the input's bytes, left in place, then as many
    // as the output takes.
    let peek = || match sentry_pipe(&inp) {
        Some(end) => end.peek(len),
        None => peek_host_pipe(host_pipe(&inp).ok_or(Errno::EINVAL)?, len),
    };
    let bytes = if nonblock {
        peek()?
    } else {
        host_io(task, &inp, libc::POLLIN, peek)?
    };
    if bytes.is_empty() {
        return Ok(0);
    }
    let write = || out.ops().write(&bytes, 0);
    let written = if nonblock {
        write()
    } else {
        host_io(task, &out, libc::POLLOUT, write)
    };
    if written == Err(Errno::EPIPE) {
        raise_sigpipe(task);
    }
    written.map(|n| n as u64)
}

/// Writing to a pipe nobody reads raises SIGPIPE as well as EPIPE.
fn raise_sigpipe(task: &Task) {
    let info = signal::user_info(signal::SIGPIPE, 0, 0, 0);
    task.handle.post(Queued::new(signal::SIGPIPE, info));
}

/// Up to `len` bytes at the front of the host pipe `fd`, left there: the
/// host's tee copies them into a pipe of our own, read back at once.
fn peek_host_pipe(fd: std::os::fd::BorrowedFd<'_>, len: usize) -> Result<Vec<u8>, Errno> {
    let (r, w) = host::pipe(libc::O_CLOEXEC | libc::O_NONBLOCK)?;
    let n = host::tee(fd, std::os::fd::AsFd::as_fd(&w), len.min(65536))?;
    let mut buf = vec![0u8; n];
    let got = vfs::host::read(std::os::fd::AsFd::as_fd(&r), &mut buf, None)?;
    buf.truncate(got);
    Ok(buf)
}

/// vmsplice(2), by copying: into a pipe's write end it is writev, out of
/// a read end readv (SPLICE_F_GIFT gives pages away in Linux; here the
/// bytes are copied, which the caller cannot tell apart).
pub fn vmsplice(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (fd, iov, count, flags) = (a[0], a[1], a[2], a[3]);
    if flags & !SPLICE_FLAGS != 0 {
        return Err(Errno::EINVAL);
    }
    let file = task.fds().get(fd)?;
    if !is_pipe(&file) {
        return Err(Errno::EBADF);
    }
    if flags & libc::SPLICE_F_NONBLOCK as u64 != 0 && file.flags() & libc::O_NONBLOCK == 0 {
        // SPLICE_F_NONBLOCK for this call only: a description of our own
        // that shares the pipe but not the caller's flags.
        let own = vfs::FileDescription::anonymous(
            file.anon_name(),
            file.ops().clone(),
            file.flags() | libc::O_NONBLOCK,
        );
        return vmsplice_on(task, &own, (iov, count));
    }
    vmsplice_on(task, &file, (iov, count))
}

fn vmsplice_on(task: &Task, file: &File, iov: (u64, u64)) -> SysResult {
    if file.writable() {
        vectored_on(task, file, iov, None, write_from)
    } else if file.readable() {
        vectored_on(task, file, iov, None, read_into)
    } else {
        Err(Errno::EBADF)
    }
}

/// memfd_create(2): an anonymous regular file in memory (a tmpfs file
/// made and unlinked at once). File seals are not supported.
pub fn memfd_create(task: &mut Task, a: [u64; 6]) -> SysResult {
    const MFD_CLOEXEC: u64 = 1;
    const MFD_ALLOW_SEALING: u64 = 2;
    const MFD_HUGETLB: u64 = 4;
    const MFD_NOEXEC_SEAL: u64 = 8;
    const MFD_EXEC: u64 = 0x10;
    let flags = a[1];
    if flags & !(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_NOEXEC_SEAL | MFD_EXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & MFD_HUGETLB != 0 {
        tracing::info!("memfd_create: MFD_HUGETLB not supported: EINVAL");
        return Err(Errno::EINVAL);
    }
    let name = task.mm().copy_in_string(a[0], 249).map_err(|e| {
        if e == Errno::ENAMETOOLONG {
            Errno::EINVAL
        } else {
            e
        }
    })?;
    let name = String::from_utf8_lossy(&name).replace('/', "_");
    let dir = task.kernel.memfds.clone();
    let creds = vfs::Creds::root();
    let ctx = Context {
        mounts: &task.kernel.mounts,
        root: &dir,
        creds: &creds,
    };
    // The node lives only between these two calls; another memfd of the
    // same name made at the same moment gets a numbered one.
    let flags_rw = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR;
    let mut node = format!("memfd:{name}");
    let mut n = 0;
    let file = loop {
        match ctx.open(&dir, &node, flags_rw, 0o777, 0) {
            Err(Errno::EEXIST) => {
                n += 1;
                node = format!("memfd:{name}.{n}");
            }
            other => break other?,
        }
    };
    ctx.unlink(&dir, &node)?;
    if flags & MFD_NOEXEC_SEAL != 0 {
        // Not executable, and sealed so it cannot become so.
        file.location()
            .ok_or(Errno::EINVAL)?
            .inode()
            .setattr(&vfs::SetAttr {
                mode: Some(0o666),
                ..vfs::SetAttr::default()
            })?;
    }
    if flags & (MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL) != 0 {
        if !vfs::tmpfs::allow_sealing(file.ops().as_ref()) {
            return Err(Errno::EINVAL);
        }
        if flags & MFD_NOEXEC_SEAL != 0 {
            const F_SEAL_EXEC: u32 = 0x20;
            file.ops().add_seals(F_SEAL_EXEC)?;
        }
    }
    task.fds().insert(file, flags & MFD_CLOEXEC != 0, 0)
}

/// copy_file_range(2) between regular files, by copying.
pub fn copy_file_range(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (in_fd, in_off_p, out_fd, out_off_p, len, flags) = (a[0], a[1], a[2], a[3], a[4], a[5]);
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let (inp, out) = in_and_out(task, in_fd, out_fd)?;
    if out.flags() & libc::O_APPEND != 0 {
        return Err(Errno::EBADF);
    }
    if inp.is_dir() || out.is_dir() {
        return Err(Errno::EISDIR);
    }
    if !inp.is_regular() || !out.is_regular() {
        return Err(Errno::EINVAL);
    }
    // A regular file whose position lives in the host (stdio the runtime
    // handed over) is used at that position, which the host moves.
    let position = |f: &File| f.ops().seekable().then(|| f.position());
    let in_off = offset_arg(task, in_off_p)?.or_else(|| position(&inp));
    let out_off = offset_arg(task, out_off_p)?.or_else(|| position(&out));
    let count = len.min(MAX_RW) as usize;
    let done = transfer(
        task,
        Transfer {
            from: End::new(&inp, in_off),
            to: End::new(&out, out_off),
            count,
            once: false,
        },
    )?;
    let moved = done as u64;
    if let Some(off) = in_off {
        if in_off_p != 0 {
            offset_out(task, in_off_p, off + moved)?;
        } else {
            inp.seek((off + moved) as i64, libc::SEEK_SET)?;
        }
    }
    if let Some(off) = out_off {
        if out_off_p != 0 {
            offset_out(task, out_off_p, off + moved)?;
        } else {
            out.seek((off + moved) as i64, libc::SEEK_SET)?;
        }
    }
    Ok(moved)
}

pub fn lseek(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    let whence = a[2] as i32;
    if !(0..=4).contains(&whence) {
        return Err(Errno::EINVAL);
    }
    file.seek(a[1] as i64, whence)
}

fn stat_out(task: &Task, st: &abi::Stat, addr: u64) -> SysResult {
    task.mm().copy_out(addr, &st.to_bytes())?;
    Ok(0)
}

pub fn fstat(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    let st = file.stat()?;
    stat_out(task, &st, a[1])
}

fn stat_path(task: &Task, dirfd: u64, path_addr: u64, out: u64, flags: u64) -> SysResult {
    const AT_SYMLINK_NOFOLLOW: u64 = libc::AT_SYMLINK_NOFOLLOW as u64;
    const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;
    const AT_NO_AUTOMOUNT: u64 = libc::AT_NO_AUTOMOUNT as u64;
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(task, path_addr)?;
    let st = stat_at(task, dirfd, &path, flags)?;
    stat_out(task, &st, out)
}

/// The attributes of what `dirfd`/`path` names (an empty path with
/// AT_EMPTY_PATH: the descriptor itself, even one without a path).
fn stat_at(task: &Task, dirfd: u64, path: &str, flags: u64) -> Result<abi::Stat, Errno> {
    if path.is_empty() && flags & libc::AT_EMPTY_PATH as u64 != 0 && dirfd != AT_FDCWD {
        return task.fds().get(dirfd)?.stat();
    }
    at_location(task, dirfd, path, flags)?.inode().stat()
}

pub fn stat(task: &mut Task, a: [u64; 6]) -> SysResult {
    stat_path(task, AT_FDCWD, a[0], a[1], 0)
}

pub fn lstat(task: &mut Task, a: [u64; 6]) -> SysResult {
    stat_path(task, AT_FDCWD, a[0], a[1], libc::AT_SYMLINK_NOFOLLOW as u64)
}

pub fn newfstatat(task: &mut Task, a: [u64; 6]) -> SysResult {
    stat_path(task, a[0], a[1], a[2], a[3])
}

pub fn readlinkat(task: &mut Task, a: [u64; 6]) -> SysResult {
    let size = a[3] as i64;
    if size <= 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(task, a[1])?;
    let loc = at_location(
        task,
        a[0],
        &path,
        (libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) as u64,
    )
    .map_err(|e| {
        if path.is_empty() && e == Errno::EBADF {
            Errno::ENOENT
        } else {
            e
        }
    })?;
    if path.is_empty() && !loc.dentry.is_symlink() {
        return Err(Errno::ENOENT);
    }
    let target = loc.inode().readlink()?;
    let n = target.len().min(size as usize);
    task.mm().copy_out(a[2], &target.as_bytes()[..n])?;
    Ok(n as u64)
}

pub fn readlink(task: &mut Task, a: [u64; 6]) -> SysResult {
    readlinkat(task, [AT_FDCWD, a[0], a[1], a[2], 0, 0])
}

fn access_path(task: &Task, dirfd: u64, path_addr: u64, mode: u64, flags: u64) -> SysResult {
    const ALLOWED: u64 =
        (libc::AT_SYMLINK_NOFOLLOW | libc::AT_EACCESS | libc::AT_EMPTY_PATH) as u64;
    if mode & !7 != 0 || flags & !ALLOWED != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(task, path_addr)?;
    let loc = at_location(task, dirfd, &path, flags)?;
    // Without AT_EACCESS the real ids are checked (what a set-user-ID
    // program asks before acting for its caller).
    let mut creds = task.vfs_creds();
    if flags & libc::AT_EACCESS as u64 == 0 {
        creds.uid = task.creds.ruid;
        creds.gid = task.creds.rgid;
        creds.caps = if creds.uid == 0 { u64::MAX } else { 0 };
    }
    let w = Walker::of(task);
    let ctx = Context {
        creds: &creds,
        ..w.ctx()
    };
    ctx.access(&loc, mode as u32).map(|()| 0)
}

pub fn access(task: &mut Task, a: [u64; 6]) -> SysResult {
    access_path(task, AT_FDCWD, a[0], a[1], 0)
}

pub fn faccessat(task: &mut Task, a: [u64; 6]) -> SysResult {
    access_path(task, a[0], a[1], a[2], 0)
}

pub fn faccessat2(task: &mut Task, a: [u64; 6]) -> SysResult {
    access_path(task, a[0], a[1], a[2], a[3])
}

pub fn getdents64(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    let parent_ino = match file.location() {
        Some(loc) => {
            let root = task.fs().root.clone();
            vfs::mount::parent_of(loc, &root).inode().stat()?.ino
        }
        None => return Err(Errno::ENOTDIR),
    };
    let mut buf = vec![0u8; (a[2] as usize).min(CHUNK)];
    let n = file.getdents(&mut buf, parent_ino)?;
    task.mm().copy_out(a[1], &buf[..n])?;
    Ok(n as u64)
}

pub fn ioctl(task: &mut Task, a: [u64; 6]) -> SysResult {
    const TCGETS: u64 = 0x5401;
    const TIOCGWINSZ: u64 = 0x5413;
    const FIONREAD: u64 = 0x541b;
    const FIONBIO: u64 = 0x5421;
    const FIONCLEX: u64 = 0x5450;
    const FIOCLEX: u64 = 0x5451;
    const FIOASYNC: u64 = 0x5452;
    let file = task.fds().get(a[0])?;
    if let Some(end) = file
        .ops()
        .as_any()
        .and_then(|x| x.downcast_ref::<crate::tty::End>())
    {
        const TIOCGPTPEER: u64 = 0x5441;
        if a[1] == TIOCGPTPEER {
            let flags = a[2] as i32;
            let ops = crate::tty::open_peer(end)?;
            let name = format!("/dev/pts/{}", end.pty.index);
            let peer = File::anonymous(&name, ops, flags & (libc::O_ACCMODE | libc::O_NONBLOCK));
            return task.fds().insert(peer, flags & libc::O_CLOEXEC != 0, 0);
        }
        if !matches!(a[1], FIOCLEX | FIONCLEX | FIONBIO | FIOASYNC) {
            let caller = {
                let st = task.tg.lock();
                (task.tg.tgid, st.pgid, st.sid)
            };
            let addr = a[2];
            return crate::tty::ioctl(
                end,
                a[1],
                &|buf| task.mm().copy_in(addr, buf),
                &|buf| task.mm().copy_out(addr, buf),
                caller,
            );
        }
    }
    if let Some(s) = file
        .ops()
        .as_any()
        .and_then(|x| x.downcast_ref::<crate::netstack_socket::NetSocket>())
    {
        // SIOCOUTQ (TIOCOUTQ's number): bytes not yet acknowledged.
        const SIOCOUTQ: u64 = 0x5411;
        if a[1] == SIOCOUTQ {
            let n = s.bytes_unsent()?.min(i32::MAX as usize) as i32;
            task.mm().copy_out(a[2], &n.to_le_bytes())?;
            return Ok(0);
        }
    }
    // The interface queries work on any socket (sock_ioctl), over the
    // sandbox's netstack; glibc's if_nametoindex asks a unix socket.
    let is_socket = file.ops().as_any().is_some_and(|x| {
        x.is::<crate::netstack_socket::NetSocket>() || x.is::<crate::socket::SocketFile>()
    });
    if is_socket {
        if let Some(stack) = &task.kernel.netstack {
            use crate::ifioctl::{self, IFREQ_LEN};
            if ifioctl::is_ifreq(a[1]) {
                let mut req = [0u8; IFREQ_LEN];
                task.mm().copy_in(a[2], &mut req)?;
                ifioctl::ifreq(&stack.interfaces(), a[1], &mut req)?;
                task.mm().copy_out(a[2], &req)?;
                return Ok(0);
            }
            if a[1] == ifioctl::SIOCGIFCONF {
                // struct ifconf: int ifc_len, then the buffer's address.
                let mut b = [0u8; 16];
                task.mm().copy_in(a[2], &mut b)?;
                let len = i32::from_le_bytes(b[0..4].try_into().expect("4 bytes"));
                let buf = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
                let room = (buf != 0).then_some(usize::try_from(len.max(0)).unwrap_or(0));
                let (out, n) = ifioctl::ifconf(&stack.interfaces(), room);
                task.mm().copy_out(buf, &out)?;
                task.mm().copy_out(a[2], &(n as i32).to_le_bytes())?;
                return Ok(0);
            }
        }
    }
    // The generic file ioctls (fs/ioctl.c).
    match a[1] {
        FIOCLEX | FIONCLEX => {
            return task.fds().set_cloexec(a[0], a[1] == FIOCLEX).map(|()| 0);
        }
        FIONBIO | FIOASYNC => {
            let mut b = [0u8; 4];
            task.mm().copy_in(a[2], &mut b)?;
            let on = i32::from_le_bytes(b) != 0;
            let bit = if a[1] == FIONBIO {
                libc::O_NONBLOCK
            } else {
                libc::O_ASYNC
            };
            let flags = file.flags();
            set_status_flags(
                task,
                &file,
                a[0],
                if on { flags | bit } else { flags & !bit },
            )?;
            return Ok(0);
        }
        FIONREAD => {
            let any = file.ops().as_any();
            let clamp = |n: usize| n.min(i32::MAX as usize) as i32;
            let n: i32 = if let (None, Some(fd)) = (file.location(), file.ops().host_fd()) {
                let mut b = [0u8; 4];
                host::ioctl_read(fd, FIONREAD, &mut b)?;
                i32::from_le_bytes(b)
            } else if let Some(s) = any.and_then(|a| a.downcast_ref::<crate::socket::SocketFile>())
            {
                clamp(s.0.pending())
            } else if let Some(i) = any.and_then(|a| a.downcast_ref::<vfs::notify::Inotify>()) {
                clamp(i.pending_bytes())
            } else if let Some(s) =
                any.and_then(|a| a.downcast_ref::<crate::netstack_socket::NetSocket>())
            {
                clamp(s.bytes_readable()?)
            } else if file.is_regular() {
                let size = file.stat()?.size as u64;
                size.saturating_sub(file.position()).min(i32::MAX as u64) as i32
            } else {
                return Err(Errno::ENOTTY);
            };
            task.mm().copy_out(a[2], &n.to_le_bytes())?;
            return Ok(0);
        }
        _ => {}
    }
    // Read-only terminal queries go to the host terminal the runtime gave
    // us; they change nothing there.
    let size = match a[1] {
        TCGETS => 36, // the kernel's struct termios
        TIOCGWINSZ => 8,
        other => {
            tracing::info!("ioctl {other:#x} not supported: ENOTTY");
            return Err(Errno::ENOTTY);
        }
    };
    let mut out = vec![0u8; size];
    host::ioctl_read(fs::host_fd(&file, Errno::ENOTTY)?, a[1], &mut out)?;
    task.mm().copy_out(a[2], &out)?;
    Ok(0)
}

pub fn dup(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    task.fds().insert(file, false, 0)
}

pub fn dup2(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if a[0] == a[1] {
        return Ok(a[1]);
    }
    dup_to(task, file, a[1], false)
}

pub fn dup3(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    let flags = a[2] as i32;
    if a[0] == a[1] || flags & !libc::O_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    dup_to(task, file, a[1], flags & libc::O_CLOEXEC != 0)
}

fn dup_to(task: &mut Task, file: Arc<File>, to: u64, cloexec: bool) -> SysResult {
    let slot = usize::try_from(to)
        .ok()
        .filter(|&t| t < task.fds().limit())
        .ok_or(Errno::EBADF)?;
    task.fds().set(slot, file, cloexec);
    Ok(to)
}

// F_SETOWN_EX's owner kinds (include/uapi/asm-generic/fcntl.h).
const F_OWNER_TID: i32 = 0;
const F_OWNER_PID: i32 = 1;
const F_OWNER_PGRP: i32 = 2;
const F_SETSIG: i32 = 10;
const F_GETSIG: i32 = 11;
const F_SETOWN_EX: i32 = 15;
const F_GETOWN_EX: i32 = 16;

/// F_SETFL and FIONBIO/FIOASYNC: new status flags; turning O_ASYNC on or
/// off starts or stops SIGIO for the file (`crate::fasync`).
fn set_status_flags(task: &Task, file: &Arc<File>, fd: u64, flags: i32) -> Result<(), Errno> {
    let was = file.flags() & libc::O_ASYNC != 0;
    let on = flags & libc::O_ASYNC != 0;
    if was != on {
        task.kernel.async_io.set(file, fd as i32, on)?;
    }
    file.set_status_flags(flags);
    Ok(())
}

/// F_SETOWN/F_SETOWN_EX: `(kind, id)`; ESRCH when nothing has that ID.
fn set_owner(task: &Task, file: &File, (kind, id): (i32, i32)) -> SysResult {
    let k = &task.kernel;
    let exists = id == 0
        || match kind {
            F_OWNER_TID => k.find_task(id).is_some(),
            F_OWNER_PID => k.find_group(id).is_some(),
            _ => k.all_groups().iter().any(|g| g.lock().pgid == id),
        };
    if !exists {
        return Err(Errno::ESRCH);
    }
    let mut o = file.async_owner();
    o.kind = kind;
    o.id = id;
    file.set_async_owner(o);
    Ok(0)
}

pub fn fcntl(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    match a[1] as i32 {
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            let min = usize::try_from(a[2])
                .ok()
                .filter(|&m| m < task.fds().limit())
                .ok_or(Errno::EINVAL)?;
            task.fds()
                .insert(file, a[1] as i32 == libc::F_DUPFD_CLOEXEC, min)
        }
        libc::F_GETFD => Ok(u64::from(task.fds().cloexec(a[0])?)),
        libc::F_SETFD => task
            .fds()
            .set_cloexec(a[0], a[2] & libc::FD_CLOEXEC as u64 != 0)
            .map(|()| 0),
        libc::F_GETFL => Ok((file.flags() | libc::O_LARGEFILE) as u64),
        cmd @ (libc::F_GETLK | libc::F_SETLK | libc::F_SETLKW | 36..=38) => {
            record_lock(task, &file, cmd, a[2])
        }
        libc::F_GETOWN => {
            let o = file.async_owner();
            Ok(match o.kind {
                F_OWNER_PGRP => -i64::from(o.id),
                _ => i64::from(o.id),
            } as u64)
        }
        libc::F_SETOWN => {
            let who = a[2] as i32;
            let owner = if who < 0 {
                (F_OWNER_PGRP, who.checked_neg().ok_or(Errno::EINVAL)?)
            } else {
                (F_OWNER_PID, who)
            };
            set_owner(task, &file, owner)
        }
        F_SETOWN_EX => {
            let mut b = [0u8; 8];
            task.mm().copy_in(a[2], &mut b)?;
            let kind = i32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
            let id = i32::from_le_bytes(b[4..].try_into().expect("4 bytes"));
            if !matches!(kind, F_OWNER_TID | F_OWNER_PID | F_OWNER_PGRP) || id < 0 {
                return Err(Errno::EINVAL);
            }
            set_owner(task, &file, (kind, id))
        }
        F_GETOWN_EX => {
            let o = file.async_owner();
            let mut b = [0u8; 8];
            // Nobody set reads as a process owner of 0, as in Linux.
            let kind = if o.id == 0 { F_OWNER_PID } else { o.kind };
            b[..4].copy_from_slice(&kind.to_le_bytes());
            b[4..].copy_from_slice(&o.id.to_le_bytes());
            task.mm().copy_out(a[2], &b).map(|()| 0)
        }
        F_GETSIG => Ok(file.async_owner().sig as u64),
        F_SETSIG => {
            let sig = a[2];
            if sig > 64 {
                return Err(Errno::EINVAL);
            }
            let mut o = file.async_owner();
            o.sig = sig as i32;
            file.set_async_owner(o);
            Ok(0)
        }
        libc::F_GET_SEALS => file.ops().seals().map(u64::from),
        libc::F_ADD_SEALS => {
            // Linux checks the file can be sealed before the access mode.
            file.ops().seals()?;
            if !file.writable() {
                return Err(Errno::EPERM);
            }
            file.ops().add_seals(a[2] as u32).map(|()| 0)
        }
        libc::F_GETPIPE_SZ | libc::F_SETPIPE_SZ => match sentry_pipe(&file) {
            Some(end) if a[1] as i32 == libc::F_GETPIPE_SZ => Ok(end.size() as u64),
            Some(end) => {
                let privileged = task.creds.has_cap(super::caps::CAP_SYS_RESOURCE);
                end.set_size(u64::from(a[2] as u32), privileged)
                    .map(|n| n as u64)
            }
            None => {
                let fd = fs::host_fd(&file, Errno::EBADF)?;
                host::fcntl_int(fd, a[1] as i32, a[2] as i32)
            }
        },
        libc::F_SETFL => {
            // Host descriptors stay as they are: blocking is the Sentry's
            // to emulate (see host_io), and stdio belongs to the caller too.
            set_status_flags(task, &file, a[0], a[2] as i32)?;
            Ok(0)
        }
        cmd => {
            tracing::info!("fcntl command {cmd} not supported: EINVAL");
            Err(Errno::EINVAL)
        }
    }
}

pub fn getcwd(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (cwd, root) = {
        let fs = task.fs();
        (fs.cwd.clone(), fs.root.clone())
    };
    let path = vfs::mount::path_of(&cwd, &root);
    if cwd.dentry.is_deleted() {
        return Err(Errno::ENOENT);
    }
    let mut bytes = path.into_bytes();
    bytes.push(0);
    if (a[1] as usize) < bytes.len() {
        return Err(Errno::ERANGE);
    }
    task.mm().copy_out(a[0], &bytes)?;
    Ok(bytes.len() as u64)
}

fn change_dir(task: &mut Task, loc: Location) -> SysResult {
    if !loc.dentry.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    Walker::of(task).ctx().access(&loc, vfs::walk::MAY_EXEC)?;
    task.fs().cwd = loc;
    Ok(0)
}

pub fn chdir(task: &mut Task, a: [u64; 6]) -> SysResult {
    let path = path_arg(task, a[0])?;
    let loc = at_location(task, AT_FDCWD, &path, 0)?;
    change_dir(task, loc)
}

pub fn fchdir(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    let loc = file.location().cloned().ok_or(Errno::ENOTDIR)?;
    change_dir(task, loc)
}

pub fn chroot(task: &mut Task, a: [u64; 6]) -> SysResult {
    let path = path_arg(task, a[0])?;
    let loc = at_location(task, AT_FDCWD, &path, 0)?;
    if !loc.dentry.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    Walker::of(task).ctx().access(&loc, vfs::walk::MAY_EXEC)?;
    if !task.vfs_creds().has_cap(vfs::inode::CAP_SYS_CHROOT) {
        return Err(Errno::EPERM);
    }
    task.fs().root = loc;
    Ok(0)
}

pub fn statx(task: &mut Task, a: [u64; 6]) -> SysResult {
    const AT_STATX_SYNC_TYPE: u64 = 0x6000;
    const STATX_RESERVED: u64 = 0x8000_0000;
    let (dirfd, path_addr, flags, mask, out) = (a[0], a[1], a[2], a[3], a[4]);
    let allowed = (libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH | libc::AT_NO_AUTOMOUNT) as u64
        | AT_STATX_SYNC_TYPE;
    if flags & !allowed != 0
        || flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE
        || mask & STATX_RESERVED != 0
    {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(task, path_addr)?;
    let st = stat_at(task, dirfd, &path, flags)?;
    task.mm().copy_out(out, &statx_bytes(&st))?;
    Ok(0)
}

/// `struct statx` (256 bytes) from a stat: the basic fields, no birth time.
fn statx_bytes(st: &abi::Stat) -> [u8; 256] {
    const STATX_BASIC_STATS: u32 = 0x7ff;
    let mut b = [0u8; 256];
    let put32 =
        |b: &mut [u8; 256], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 =
        |b: &mut [u8; 256], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put32(&mut b, 0, STATX_BASIC_STATS);
    put32(&mut b, 4, st.blksize as u32);
    put32(&mut b, 16, st.nlink as u32);
    put32(&mut b, 20, st.uid);
    put32(&mut b, 24, st.gid);
    b[28..30].copy_from_slice(&(st.mode as u16).to_le_bytes());
    put64(&mut b, 32, st.ino);
    put64(&mut b, 40, st.size as u64);
    put64(&mut b, 48, st.blocks as u64);
    for (at, sec, nsec) in [
        (64, st.atime_sec, st.atime_nsec),
        (96, st.ctime_sec, st.ctime_nsec),
        (112, st.mtime_sec, st.mtime_nsec),
    ] {
        put64(&mut b, at, sec as u64);
        put32(&mut b, at + 8, nsec as u32);
    }
    put32(&mut b, 128, libc::major(st.rdev));
    put32(&mut b, 132, libc::minor(st.rdev));
    put32(&mut b, 136, libc::major(st.dev));
    put32(&mut b, 140, libc::minor(st.dev));
    b
}

pub fn statfs(task: &mut Task, a: [u64; 6]) -> SysResult {
    let path = path_arg(task, a[0])?;
    let loc = at_location(task, AT_FDCWD, &path, 0)?;
    let mut sf = loc.inode().statfs()?;
    sf.flags |= mount_statfs_flags(&loc);
    task.mm().copy_out(a[1], &sf.to_bytes())?;
    Ok(0)
}

/// `f_flags` bits (ST_*) of the mount.
fn mount_statfs_flags(loc: &Location) -> i64 {
    let f = loc.mount.flags();
    let mut out = 0x20; // ST_VALID
    for (ms, st) in [(1, 1), (2, 2), (4, 4), (8, 8)] {
        if f & ms != 0 {
            out |= st;
        }
    }
    out
}

pub fn fstatfs(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    let sf = match file.location() {
        Some(loc) => {
            let mut sf = loc.inode().statfs()?;
            sf.flags |= mount_statfs_flags(loc);
            sf.to_bytes()
        }
        None => host::statfs_raw(fs::host_fd(&file, Errno::EBADF)?)?,
    };
    task.mm().copy_out(a[1], &sf)?;
    Ok(0)
}

pub fn fadvise64(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if !(0..=5).contains(&a[3]) {
        return Err(Errno::EINVAL);
    }
    if !file.is_regular() && !file.is_dir() {
        return Err(Errno::ESPIPE);
    }
    // Advice only: the host's page cache serves these files.
    Ok(0)
}
