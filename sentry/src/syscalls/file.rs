//! File syscalls: open, read, write, stat and friends.

use std::sync::Arc;

use abi::Errno;

use super::SysResult;
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

/// The absolute sandbox path of `path` relative to `dirfd`.
pub(super) fn resolve(task: &Task, dirfd: u64, path: &str) -> Result<String, Errno> {
    if path.starts_with('/') {
        return Ok(path.to_string());
    }
    if dirfd == AT_FDCWD {
        return Ok(fs::join(&task.cwd(), path));
    }
    let dir = task.fds().get(dirfd)?;
    if !dir.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    Ok(fs::join(&dir.path, path))
}

pub fn openat(task: &mut Task, a: [u64; 6]) -> SysResult {
    let path = path_arg(task, a[1])?;
    let flags = a[2] as i32;
    let abs = resolve(task, a[0], &path)?;
    let (fd, st) = task.kernel.root.open(&abs, flags)?;
    let file = File::new(
        fd,
        flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC),
        abs,
        st.mode,
    );
    task.fds()
        .insert(Arc::new(file), flags & libc::O_CLOEXEC != 0, 0)
}

pub fn open(task: &mut Task, a: [u64; 6]) -> SysResult {
    openat(task, [AT_FDCWD, a[0], a[1], a[2], 0, 0])
}

pub fn creat(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64;
    openat(task, [AT_FDCWD, a[0], flags, a[1], 0, 0])
}

pub fn close(task: &mut Task, a: [u64; 6]) -> SysResult {
    task.fds().remove(a[0]).map(|_| 0)
}

/// Read up to `count` bytes from `file` (at `offset`, if given) into
/// application memory at `buf`.
fn read_into(task: &Task, file: &File, buf: u64, count: u64, offset: Option<u64>) -> SysResult {
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
        let n = match host::read(
            file.host(),
            &mut chunk[..want],
            offset.map(|o| o + done as u64),
        ) {
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

/// Write up to `count` bytes from application memory at `buf` to `file`.
fn write_from(task: &Task, file: &File, buf: u64, count: u64, offset: Option<u64>) -> SysResult {
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
            match host::write(
                file.host(),
                &chunk[sent..want],
                offset.map(|o| o + (done + sent) as u64),
            ) {
                Ok(n) => sent += n,
                Err(Errno::EPIPE) => {
                    // Writing to a pipe nobody reads raises SIGPIPE too.
                    let info = signal::user_info(signal::SIGPIPE, 0, 0, 0);
                    task.handle.post(Queued {
                        sig: signal::SIGPIPE,
                        info,
                    });
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
    read_into(task, &file, a[1], a[2], None)
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
fn iovecs(task: &Task, addr: u64, count: u64) -> Result<Vec<(u64, u64)>, Errno> {
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
/// stopping at the first short transfer; an error after some data was
/// moved ends the call with the count so far, as Linux does.
fn vectored(
    task: &Task,
    a: [u64; 6],
    op: fn(&Task, &File, u64, u64, Option<u64>) -> SysResult,
) -> SysResult {
    let file = task.fds().get(a[0])?;
    let mut total = 0;
    for (base, len) in iovecs(task, a[1], a[2])? {
        match op(task, &file, base, len, None) {
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
    vectored(task, a, read_into)
}

pub fn writev(task: &mut Task, a: [u64; 6]) -> SysResult {
    vectored(task, a, write_from)
}

pub fn sendfile(task: &mut Task, a: [u64; 6]) -> SysResult {
    let out = task.fds().get(a[0])?;
    let inp = task.fds().get(a[1])?;
    if !inp.readable() || !out.writable() {
        return Err(Errno::EBADF);
    }
    let offset = if a[2] == 0 {
        None
    } else {
        let mut b = [0u8; 8];
        task.mm().copy_in(a[2], &mut b)?;
        let off = i64::from_le_bytes(b);
        if off < 0 {
            return Err(Errno::EINVAL);
        }
        Some(off as u64)
    };
    let count = a[3].min(MAX_RW) as usize;
    let mut buf = vec![0u8; count.min(CHUNK)];
    let mut done = 0usize;
    while done < count {
        let want = (count - done).min(buf.len());
        let n = match host::read(
            inp.host(),
            &mut buf[..want],
            offset.map(|o| o + done as u64),
        ) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        let mut sent = 0;
        while sent < n {
            match host::write(out.host(), &buf[sent..n], None) {
                Ok(w) => sent += w,
                Err(e) if done + sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        done += sent;
        if sent < n {
            break;
        }
    }
    if let Some(off) = offset {
        task.mm()
            .copy_out(a[2], &(off + done as u64).to_le_bytes())?;
    }
    Ok(done as u64)
}

pub fn lseek(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    let whence = a[2] as i32;
    if !(0..=4).contains(&whence) {
        return Err(Errno::EINVAL);
    }
    host::lseek(file.host(), a[1] as i64, whence)
}

fn stat_out(task: &Task, st: &abi::Stat, addr: u64) -> SysResult {
    task.mm().copy_out(addr, &st.to_bytes())?;
    Ok(0)
}

pub fn fstat(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    let st = host::fstat(file.host())?;
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
    if path.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        let st = if dirfd == AT_FDCWD {
            let (fd, _) = task.kernel.root.open(&task.cwd(), libc::O_PATH)?;
            host::fstat(std::os::fd::AsFd::as_fd(&fd))?
        } else {
            host::fstat(task.fds().get(dirfd)?.host())?
        };
        return stat_out(task, &st, out);
    }
    let nofollow = if flags & AT_SYMLINK_NOFOLLOW != 0 {
        libc::O_NOFOLLOW
    } else {
        0
    };
    let abs = resolve(task, dirfd, &path)?;
    let (_, st) = task.kernel.root.open(&abs, libc::O_PATH | nofollow)?;
    stat_out(task, &st, out)
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
    let abs = resolve(task, a[0], &path)?;
    let (fd, st) = task
        .kernel
        .root
        .open(&abs, libc::O_PATH | libc::O_NOFOLLOW)?;
    if st.mode & libc::S_IFMT != libc::S_IFLNK {
        return Err(Errno::EINVAL);
    }
    let target = host::readlink_fd(std::os::fd::AsFd::as_fd(&fd))?;
    let n = target.len().min(size as usize);
    task.mm().copy_out(a[2], &target[..n])?;
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
    let nofollow = if flags & libc::AT_SYMLINK_NOFOLLOW as u64 != 0 {
        libc::O_NOFOLLOW
    } else {
        0
    };
    let abs = if path.is_empty() && flags & libc::AT_EMPTY_PATH as u64 != 0 {
        if dirfd == AT_FDCWD {
            task.cwd()
        } else {
            task.fds().get(dirfd)?.path.clone()
        }
    } else {
        resolve(task, dirfd, &path)?
    };
    let (fd, _) = task.kernel.root.open(&abs, libc::O_PATH | nofollow)?;
    host::access_fd(std::os::fd::AsFd::as_fd(&fd), (mode & 5) as i32)?;
    // The root is read-only.
    if mode & libc::W_OK as u64 != 0 {
        return Err(Errno::EROFS);
    }
    Ok(0)
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
    if !file.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let mut buf = vec![0u8; (a[2] as usize).min(CHUNK)];
    let n = fs::read_dir(&file, &mut buf)?;
    task.mm().copy_out(a[1], &buf[..n])?;
    Ok(n as u64)
}

pub fn ioctl(task: &mut Task, a: [u64; 6]) -> SysResult {
    const TCGETS: u64 = 0x5401;
    const TIOCGWINSZ: u64 = 0x5413;
    let file = task.fds().get(a[0])?;
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
    host::ioctl_read(file.host(), a[1], &mut out)?;
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
        .filter(|&t| t < fs::MAX_FDS)
        .ok_or(Errno::EBADF)?;
    task.fds().set(slot, file, cloexec);
    Ok(to)
}

pub fn fcntl(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    match a[1] as i32 {
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            let min = usize::try_from(a[2])
                .ok()
                .filter(|&m| m < fs::MAX_FDS)
                .ok_or(Errno::EINVAL)?;
            task.fds()
                .insert(file, a[1] as i32 == libc::F_DUPFD_CLOEXEC, min)
        }
        libc::F_GETFD => Ok(u64::from(task.fds().cloexec(a[0])?)),
        libc::F_SETFD => task
            .fds()
            .set_cloexec(a[0], a[2] & libc::FD_CLOEXEC as u64 != 0)
            .map(|()| 0),
        libc::F_GETFL => Ok((file.flags | libc::O_LARGEFILE) as u64),
        cmd => {
            tracing::info!("fcntl command {cmd} not supported: EINVAL");
            Err(Errno::EINVAL)
        }
    }
}

pub fn getcwd(task: &mut Task, a: [u64; 6]) -> SysResult {
    let mut cwd = task.cwd().into_bytes();
    cwd.push(0);
    if (a[1] as usize) < cwd.len() {
        return Err(Errno::ERANGE);
    }
    task.mm().copy_out(a[0], &cwd)?;
    Ok(cwd.len() as u64)
}

fn change_dir(task: &mut Task, abs: String) -> SysResult {
    let (_, st) = task
        .kernel
        .root
        .open(&abs, libc::O_PATH | libc::O_DIRECTORY)?;
    if st.mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(Errno::ENOTDIR);
    }
    task.set_cwd(fs::normalize(&abs));
    Ok(0)
}

pub fn chdir(task: &mut Task, a: [u64; 6]) -> SysResult {
    let path = path_arg(task, a[0])?;
    let abs = resolve(task, AT_FDCWD, &path)?;
    change_dir(task, abs)
}

pub fn fchdir(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    change_dir(task, file.path.clone())
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
    let buf = if path.is_empty() && flags & libc::AT_EMPTY_PATH as u64 != 0 {
        if dirfd == AT_FDCWD {
            let (fd, _) = task.kernel.root.open(&task.cwd(), libc::O_PATH)?;
            host::statx_fd(std::os::fd::AsFd::as_fd(&fd), 0, mask as u32)?
        } else {
            host::statx_fd(task.fds().get(dirfd)?.host(), 0, mask as u32)?
        }
    } else {
        let nofollow = if flags & libc::AT_SYMLINK_NOFOLLOW as u64 != 0 {
            libc::O_NOFOLLOW
        } else {
            0
        };
        let abs = resolve(task, dirfd, &path)?;
        let (fd, _) = task.kernel.root.open(&abs, libc::O_PATH | nofollow)?;
        host::statx_fd(std::os::fd::AsFd::as_fd(&fd), 0, mask as u32)?
    };
    task.mm().copy_out(out, &buf)?;
    Ok(0)
}

pub fn statfs(task: &mut Task, a: [u64; 6]) -> SysResult {
    let path = path_arg(task, a[0])?;
    let abs = resolve(task, AT_FDCWD, &path)?;
    let (fd, _) = task.kernel.root.open(&abs, libc::O_PATH)?;
    let buf = host::statfs_raw(std::os::fd::AsFd::as_fd(&fd))?;
    task.mm().copy_out(a[1], &buf)?;
    Ok(0)
}

pub fn fstatfs(task: &mut Task, a: [u64; 6]) -> SysResult {
    let buf = host::statfs_raw(task.fds().get(a[0])?.host())?;
    task.mm().copy_out(a[1], &buf)?;
    Ok(0)
}

/// The extended-attribute calls: the root filesystem here keeps no
/// extended attributes, which Linux reports as EOPNOTSUPP for such a
/// filesystem. The file (or descriptor) must still exist.
fn no_xattrs(target: Result<(), Errno>) -> SysResult {
    target?;
    Err(Errno::EOPNOTSUPP)
}

fn xattr_path(task: &Task, addr: u64, follow: bool) -> Result<(), Errno> {
    let path = path_arg(task, addr)?;
    let abs = resolve(task, AT_FDCWD, &path)?;
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    task.kernel
        .root
        .open(&abs, libc::O_PATH | nofollow)
        .map(drop)
}

pub fn getxattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    no_xattrs(xattr_path(task, a[0], true))
}

pub fn lgetxattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    no_xattrs(xattr_path(task, a[0], false))
}

pub fn fgetxattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    no_xattrs(task.fds().get(a[0]).map(drop))
}

pub fn listxattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    no_xattrs(xattr_path(task, a[0], true))
}

pub fn llistxattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    no_xattrs(xattr_path(task, a[0], false))
}

pub fn flistxattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    no_xattrs(task.fds().get(a[0]).map(drop))
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
