//! Calls that change the tree or a node's attributes: mkdir, mknod,
//! symlink, link, unlink, rmdir, rename, chmod, chown, truncate,
//! utimensat, extended attributes, fsync and friends.

use abi::Errno;
use vfs::inode::{SetAttr, TimeSpec, TimeUpdate};
use vfs::{Location, NodeKind};

use super::file::{at_location, path_arg, start_of, Walker, AT_FDCWD};
use super::SysResult;
use crate::task::Task;

fn make(task: &mut Task, dirfd: u64, path_addr: u64, kind: NodeKind, mode: u32) -> SysResult {
    let path = path_arg(task, path_addr)?;
    let start = start_of(task, dirfd, &path)?;
    let mode = if matches!(kind, NodeKind::Symlink(_)) {
        0o777
    } else {
        mode & 0o7777 & !task.fs().umask
    };
    Walker::of(task)
        .ctx()
        .make(&start, &path, kind, mode)
        .map(|()| 0)
}

pub fn mkdirat(task: &mut Task, a: [u64; 6]) -> SysResult {
    make(task, a[0], a[1], NodeKind::Directory, a[2] as u32)
}

pub fn mkdir(task: &mut Task, a: [u64; 6]) -> SysResult {
    make(task, AT_FDCWD, a[0], NodeKind::Directory, a[1] as u32)
}

pub fn mknodat(task: &mut Task, a: [u64; 6]) -> SysResult {
    let mode = a[2] as u32;
    let rdev = a[3];
    let kind = match mode & libc::S_IFMT {
        0 | libc::S_IFREG => NodeKind::Regular,
        libc::S_IFCHR => NodeKind::CharDevice(rdev),
        libc::S_IFBLK => NodeKind::BlockDevice(rdev),
        libc::S_IFIFO => NodeKind::Fifo,
        libc::S_IFSOCK => NodeKind::Socket,
        libc::S_IFDIR => return Err(Errno::EPERM),
        _ => return Err(Errno::EINVAL),
    };
    make(task, a[0], a[1], kind, mode)
}

pub fn mknod(task: &mut Task, a: [u64; 6]) -> SysResult {
    mknodat(task, [AT_FDCWD, a[0], a[1], a[2], 0, 0])
}

pub fn symlinkat(task: &mut Task, a: [u64; 6]) -> SysResult {
    let target = path_arg(task, a[0])?;
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    make(task, a[1], a[2], NodeKind::Symlink(target), 0o777)
}

pub fn symlink(task: &mut Task, a: [u64; 6]) -> SysResult {
    symlinkat(task, [a[0], AT_FDCWD, a[1], 0, 0, 0])
}

pub fn linkat(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = a[4];
    let allowed = (libc::AT_SYMLINK_FOLLOW | libc::AT_EMPTY_PATH) as u64;
    if flags & !allowed != 0 {
        return Err(Errno::EINVAL);
    }
    let old_path = path_arg(task, a[1])?;
    // linkat does not follow a final symlink unless asked to.
    let mut at_flags = flags & libc::AT_EMPTY_PATH as u64;
    if flags & libc::AT_SYMLINK_FOLLOW as u64 == 0 {
        at_flags |= libc::AT_SYMLINK_NOFOLLOW as u64;
    }
    let old = at_location(task, a[0], &old_path, at_flags)?;
    let new_path = path_arg(task, a[3])?;
    let start = start_of(task, a[2], &new_path)?;
    Walker::of(task)
        .ctx()
        .link(&old, &start, &new_path)
        .map(|()| 0)
}

pub fn link(task: &mut Task, a: [u64; 6]) -> SysResult {
    linkat(task, [AT_FDCWD, a[0], AT_FDCWD, a[1], 0, 0])
}

pub fn unlinkat(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = a[2];
    if flags & !(libc::AT_REMOVEDIR as u64) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(task, a[1])?;
    let start = start_of(task, a[0], &path)?;
    let w = Walker::of(task);
    if flags != 0 {
        w.ctx().rmdir(&start, &path)
    } else {
        w.ctx().unlink(&start, &path)
    }
    .map(|()| 0)
}

pub fn unlink(task: &mut Task, a: [u64; 6]) -> SysResult {
    unlinkat(task, [AT_FDCWD, a[0], 0, 0, 0, 0])
}

pub fn rmdir(task: &mut Task, a: [u64; 6]) -> SysResult {
    unlinkat(task, [AT_FDCWD, a[0], libc::AT_REMOVEDIR as u64, 0, 0, 0])
}

pub fn renameat2(task: &mut Task, a: [u64; 6]) -> SysResult {
    let old_path = path_arg(task, a[1])?;
    let new_path = path_arg(task, a[3])?;
    let old_start = start_of(task, a[0], &old_path)?;
    let new_start = start_of(task, a[2], &new_path)?;
    Walker::of(task)
        .ctx()
        .rename(&old_start, &old_path, &new_start, &new_path, a[4] as u32)
        .map(|()| 0)
}

pub fn renameat(task: &mut Task, a: [u64; 6]) -> SysResult {
    renameat2(task, [a[0], a[1], a[2], a[3], 0, 0])
}

pub fn rename(task: &mut Task, a: [u64; 6]) -> SysResult {
    renameat2(task, [AT_FDCWD, a[0], AT_FDCWD, a[1], 0, 0])
}

fn set(task: &Task, loc: &Location, attr: SetAttr, by_fd: bool) -> SysResult {
    Walker::of(task).ctx().setattr(loc, attr, by_fd).map(|()| 0)
}

fn fd_location(task: &Task, fd: u64) -> Result<Location, Errno> {
    let file = task.fds().get(fd)?;
    file.location().cloned().ok_or(Errno::EBADF)
}

fn mode_attr(mode: u64) -> SetAttr {
    SetAttr {
        mode: Some(mode as u32 & 0o7777),
        ..SetAttr::default()
    }
}

pub fn fchmodat(task: &mut Task, a: [u64; 6]) -> SysResult {
    let path = path_arg(task, a[1])?;
    let loc = at_location(task, a[0], &path, 0)?;
    set(task, &loc, mode_attr(a[2]), false)
}

pub fn chmod(task: &mut Task, a: [u64; 6]) -> SysResult {
    fchmodat(task, [AT_FDCWD, a[0], a[1], 0, 0, 0])
}

pub fn fchmod(task: &mut Task, a: [u64; 6]) -> SysResult {
    let loc = fd_location(task, a[0])?;
    set(task, &loc, mode_attr(a[1]), true)
}

fn owner_attr(uid: u64, gid: u64) -> SetAttr {
    let id = |v: u64| (v as u32 != u32::MAX).then_some(v as u32);
    SetAttr {
        uid: id(uid),
        gid: id(gid),
        ..SetAttr::default()
    }
}

pub fn fchownat(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = a[4];
    if flags & !((libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) as u64) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(task, a[1])?;
    let loc = at_location(task, a[0], &path, flags)?;
    set(task, &loc, owner_attr(a[2], a[3]), false)
}

pub fn chown(task: &mut Task, a: [u64; 6]) -> SysResult {
    fchownat(task, [AT_FDCWD, a[0], a[1], a[2], 0, 0])
}

pub fn lchown(task: &mut Task, a: [u64; 6]) -> SysResult {
    fchownat(
        task,
        [
            AT_FDCWD,
            a[0],
            a[1],
            a[2],
            libc::AT_SYMLINK_NOFOLLOW as u64,
            0,
        ],
    )
}

pub fn fchown(task: &mut Task, a: [u64; 6]) -> SysResult {
    let loc = fd_location(task, a[0])?;
    set(task, &loc, owner_attr(a[1], a[2]), true)
}

fn size_attr(len: u64) -> Result<SetAttr, Errno> {
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(SetAttr {
        size: Some(len),
        ..SetAttr::default()
    })
}

/// Linux's `inode_newsize_ok` for RLIMIT_FSIZE: growing a file past the
/// limit is EFBIG, with SIGXFSZ to the caller.
fn fsize_allows_growth(task: &Task, loc: &Location, new_size: u64) -> Result<(), Errno> {
    let limit = task.tg.soft_limit(crate::limits::RLIMIT_FSIZE);
    if new_size > limit && new_size > loc.inode().stat()?.size.max(0) as u64 {
        super::file::raise_sigxfsz(task);
        return Err(Errno::EFBIG);
    }
    Ok(())
}

pub fn truncate(task: &mut Task, a: [u64; 6]) -> SysResult {
    let path = path_arg(task, a[0])?;
    let loc = at_location(task, AT_FDCWD, &path, 0)?;
    let attr = size_attr(a[1])?;
    fsize_allows_growth(task, &loc, a[1])?;
    set(task, &loc, attr, false)
}

pub fn ftruncate(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    let attr = size_attr(a[1])?;
    if !file.writable() {
        return Err(Errno::EINVAL);
    }
    let loc = file.location().cloned().ok_or(Errno::EINVAL)?;
    fsize_allows_growth(task, &loc, a[1])?;
    set(task, &loc, attr, true)
}

/// fallocate(2). The file's filesystem takes the modes it supports (host
/// files: the host's; tmpfs: KEEP_SIZE and PUNCH_HOLE, as Linux's);
/// plain allocation of a file with no storage of its own grows it.
pub fn fallocate(task: &mut Task, a: [u64; 6]) -> SysResult {
    const KNOWN: i32 = libc::FALLOC_FL_KEEP_SIZE
        | libc::FALLOC_FL_PUNCH_HOLE
        | libc::FALLOC_FL_COLLAPSE_RANGE
        | libc::FALLOC_FL_ZERO_RANGE
        | libc::FALLOC_FL_INSERT_RANGE
        | libc::FALLOC_FL_UNSHARE_RANGE;
    let (fd, off, len) = (a[0], a[2] as i64, a[3] as i64);
    let mode = i32::try_from(a[1]).map_err(|_| Errno::EOPNOTSUPP)?;
    let file = task.fds().get(fd)?;
    // vfs_fallocate's checks, in its order.
    if off < 0 || len <= 0 {
        return Err(Errno::EINVAL);
    }
    if mode & !KNOWN != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let punch = mode & libc::FALLOC_FL_PUNCH_HOLE != 0;
    if punch && (mode & libc::FALLOC_FL_KEEP_SIZE == 0 || mode & libc::FALLOC_FL_ZERO_RANGE != 0) {
        return Err(Errno::EOPNOTSUPP);
    }
    if !file.writable() {
        return Err(Errno::EBADF);
    }
    let end = off.checked_add(len).ok_or(Errno::EFBIG)?;
    if mode & libc::FALLOC_FL_KEEP_SIZE == 0 {
        if let Some(loc) = file.location() {
            fsize_allows_growth(task, loc, end as u64)?;
        }
    }
    // Files whose storage is elsewhere (the host's, the gofer's, memory)
    // allocate there.
    if let Some(done) = file.ops().allocate(mode, off as u64, len as u64) {
        return done.map(|()| 0);
    }
    if mode != 0 {
        tracing::info!("fallocate mode {mode:#x} not supported for this file: EOPNOTSUPP");
        return Err(Errno::EOPNOTSUPP);
    }
    let loc = file.location().cloned().ok_or(Errno::ENODEV)?;
    let st = loc.inode().stat()?;
    if st.mode & libc::S_IFMT != libc::S_IFREG {
        return Err(if st.mode & libc::S_IFMT == libc::S_IFDIR {
            Errno::EISDIR
        } else {
            Errno::ENODEV
        });
    }
    if end > st.size {
        loc.inode().setattr(&SetAttr {
            size: Some(end as u64),
            ..SetAttr::default()
        })?;
    }
    Ok(0)
}

/// A `struct timespec` pair from application memory, as utimensat reads it.
fn times_in(task: &Task, addr: u64) -> Result<(Option<TimeUpdate>, Option<TimeUpdate>), Errno> {
    const UTIME_NOW: i64 = (1 << 30) - 1;
    const UTIME_OMIT: i64 = (1 << 30) - 2;
    if addr == 0 {
        return Ok((Some(TimeUpdate::Now), Some(TimeUpdate::Now)));
    }
    let mut b = [0u8; 32];
    task.mm().copy_in(addr, &mut b)?;
    let word = |i: usize| i64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let one = |sec: i64, nsec: i64| -> Result<Option<TimeUpdate>, Errno> {
        match nsec {
            UTIME_NOW => Ok(Some(TimeUpdate::Now)),
            UTIME_OMIT => Ok(None),
            0..=999_999_999 => Ok(Some(TimeUpdate::At(TimeSpec { sec, nsec }))),
            _ => Err(Errno::EINVAL),
        }
    };
    Ok((one(word(0), word(8))?, one(word(16), word(24))?))
}

fn utimes_common(
    task: &Task,
    dirfd: u64,
    path_addr: u64,
    times: (Option<TimeUpdate>, Option<TimeUpdate>),
    flags: u64,
) -> SysResult {
    if flags & !((libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) as u64) != 0 {
        return Err(Errno::EINVAL);
    }
    // A null path means the descriptor itself (the glibc futimens form).
    let (loc, by_fd) = if path_addr == 0 {
        if dirfd == AT_FDCWD {
            return Err(Errno::EFAULT);
        }
        (fd_location(task, dirfd)?, true)
    } else {
        let path = path_arg(task, path_addr)?;
        (at_location(task, dirfd, &path, flags)?, false)
    };
    if times.0.is_none() && times.1.is_none() {
        return Ok(0);
    }
    set(
        task,
        &loc,
        SetAttr {
            atime: times.0,
            mtime: times.1,
            ..SetAttr::default()
        },
        by_fd,
    )
}

pub fn utimensat(task: &mut Task, a: [u64; 6]) -> SysResult {
    let times = times_in(task, a[2])?;
    utimes_common(task, a[0], a[1], times, a[3])
}

/// `struct timeval` pairs (utimes, futimesat) or `struct utimbuf` (utime).
fn timevals_in(
    task: &Task,
    addr: u64,
    micros: bool,
) -> Result<(Option<TimeUpdate>, Option<TimeUpdate>), Errno> {
    if addr == 0 {
        return Ok((Some(TimeUpdate::Now), Some(TimeUpdate::Now)));
    }
    let mut b = [0u8; 32];
    let len = if micros { 32 } else { 16 };
    task.mm().copy_in(addr, &mut b[..len])?;
    let word = |i: usize| i64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let t = |sec: i64, usec: i64| -> Result<Option<TimeUpdate>, Errno> {
        if !(0..1_000_000).contains(&usec) {
            return Err(Errno::EINVAL);
        }
        Ok(Some(TimeUpdate::At(TimeSpec {
            sec,
            nsec: usec * 1000,
        })))
    };
    if micros {
        Ok((t(word(0), word(8))?, t(word(16), word(24))?))
    } else {
        Ok((t(word(0), 0)?, t(word(8), 0)?))
    }
}

pub fn futimesat(task: &mut Task, a: [u64; 6]) -> SysResult {
    let times = timevals_in(task, a[2], true)?;
    if a[1] == 0 {
        return Err(Errno::EFAULT);
    }
    utimes_common(task, a[0], a[1], times, 0)
}

pub fn utimes(task: &mut Task, a: [u64; 6]) -> SysResult {
    futimesat(task, [AT_FDCWD, a[0], a[1], 0, 0, 0])
}

pub fn utime(task: &mut Task, a: [u64; 6]) -> SysResult {
    let times = timevals_in(task, a[1], false)?;
    if a[0] == 0 {
        return Err(Errno::EFAULT);
    }
    utimes_common(task, AT_FDCWD, a[0], times, 0)
}

pub fn fsync(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = task.fds().get(a[0])?;
    if file.is_path_only() {
        return Err(Errno::EBADF);
    }
    file.ops().sync().map(|()| 0)
}

pub fn sync(_task: &mut Task, _a: [u64; 6]) -> SysResult {
    // Memory-backed layers have nothing to flush; host files are written
    // through at each write.
    Ok(0)
}

pub fn syncfs(task: &mut Task, a: [u64; 6]) -> SysResult {
    task.fds().get(a[0]).map(|_| 0)
}

pub fn sync_file_range(task: &mut Task, a: [u64; 6]) -> SysResult {
    if (a[1] as i64) < 0 || (a[2] as i64) < 0 || a[3] & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    fsync(task, a)
}

// Extended attributes.

const XATTR_NAME_MAX: usize = 255;
const XATTR_SIZE_MAX: usize = 65536;

fn xattr_name(task: &Task, addr: u64) -> Result<String, Errno> {
    let bytes = task.mm().copy_in_string(addr, XATTR_NAME_MAX + 1)?;
    if bytes.is_empty() || bytes.len() > XATTR_NAME_MAX {
        return Err(Errno::ERANGE);
    }
    String::from_utf8(bytes).map_err(|_| Errno::EINVAL)
}

/// The node a path-or-fd xattr call names: `path` for getxattr and
/// friends, `l` variants do not follow, `f` variants take a descriptor.
enum Target {
    Path(bool),
    Fd,
}

fn xattr_target(task: &Task, arg: u64, how: Target) -> Result<Location, Errno> {
    match how {
        Target::Fd => fd_location(task, arg),
        Target::Path(follow) => {
            let path = path_arg(task, arg)?;
            let flags = if follow {
                0
            } else {
                libc::AT_SYMLINK_NOFOLLOW as u64
            };
            at_location(task, AT_FDCWD, &path, flags)
        }
    }
}

fn getxattr_common(task: &Task, a: [u64; 6], how: Target) -> SysResult {
    let loc = xattr_target(task, a[0], how)?;
    let name = xattr_name(task, a[1])?;
    let w = Walker::of(task);
    w.ctx().access(&loc, vfs::walk::MAY_READ).or_else(|e| {
        if name.starts_with("user.") {
            Err(e)
        } else {
            Ok(())
        }
    })?;
    let value = loc.inode().getxattr(&name)?;
    if a[3] == 0 {
        return Ok(value.len() as u64);
    }
    if value.len() > a[3] as usize {
        return Err(Errno::ERANGE);
    }
    task.mm().copy_out(a[2], &value)?;
    Ok(value.len() as u64)
}

pub fn getxattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    getxattr_common(task, a, Target::Path(true))
}

pub fn lgetxattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    getxattr_common(task, a, Target::Path(false))
}

pub fn fgetxattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    getxattr_common(task, a, Target::Fd)
}

fn setxattr_common(task: &Task, a: [u64; 6], how: Target) -> SysResult {
    let loc = xattr_target(task, a[0], how)?;
    let name = xattr_name(task, a[1])?;
    let flags = a[4] as i32;
    if flags & !3 != 0 {
        return Err(Errno::EINVAL);
    }
    if a[3] as usize > XATTR_SIZE_MAX {
        return Err(Errno::E2BIG);
    }
    let mut value = vec![0u8; a[3] as usize];
    task.mm().copy_in(a[2], &mut value)?;
    check_xattr_write(task, &loc, &name)?;
    loc.inode().setxattr(&name, &value, flags).map(|()| 0)
}

/// Who may change extended attributes: user.* needs write permission on a
/// regular file or directory; trusted.* and security.* need privilege.
fn check_xattr_write(task: &Task, loc: &Location, name: &str) -> Result<(), Errno> {
    if loc.mount.read_only() {
        return Err(Errno::EROFS);
    }
    let creds = task.vfs_creds();
    if name.starts_with("user.") {
        let st = loc.inode().stat()?;
        let kind = st.mode & libc::S_IFMT;
        if kind != libc::S_IFREG && kind != libc::S_IFDIR {
            return Err(Errno::EPERM);
        }
        return vfs::walk::permission(&creds, &st, vfs::walk::MAY_WRITE);
    }
    if name.starts_with("trusted.") || name.starts_with("security.") {
        return if creds.has_cap(vfs::inode::CAP_SYS_ADMIN) {
            Ok(())
        } else {
            Err(Errno::EPERM)
        };
    }
    Err(Errno::EOPNOTSUPP)
}

pub fn setxattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    setxattr_common(task, a, Target::Path(true))
}

pub fn lsetxattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    setxattr_common(task, a, Target::Path(false))
}

pub fn fsetxattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    setxattr_common(task, a, Target::Fd)
}

fn listxattr_common(task: &Task, a: [u64; 6], how: Target) -> SysResult {
    let loc = xattr_target(task, a[0], how)?;
    let privileged = task.vfs_creds().has_cap(vfs::inode::CAP_SYS_ADMIN);
    let mut out = Vec::new();
    for name in loc.inode().listxattr()? {
        if name.starts_with("trusted.") && !privileged {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
    }
    if a[2] == 0 {
        return Ok(out.len() as u64);
    }
    if out.len() > a[2] as usize {
        return Err(Errno::ERANGE);
    }
    task.mm().copy_out(a[1], &out)?;
    Ok(out.len() as u64)
}

pub fn listxattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    listxattr_common(task, a, Target::Path(true))
}

pub fn llistxattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    listxattr_common(task, a, Target::Path(false))
}

pub fn flistxattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    listxattr_common(task, a, Target::Fd)
}

fn removexattr_common(task: &Task, a: [u64; 6], how: Target) -> SysResult {
    let loc = xattr_target(task, a[0], how)?;
    let name = xattr_name(task, a[1])?;
    check_xattr_write(task, &loc, &name)?;
    loc.inode().removexattr(&name).map(|()| 0)
}

pub fn removexattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    removexattr_common(task, a, Target::Path(true))
}

pub fn lremovexattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    removexattr_common(task, a, Target::Path(false))
}

pub fn fremovexattr(task: &mut Task, a: [u64; 6]) -> SysResult {
    removexattr_common(task, a, Target::Fd)
}
