//! The host syscalls the VFS makes, as small safe functions.
//!
//! Every path these take is one name relative to a directory descriptor (or
//! empty, meaning the descriptor itself): nothing here opens a host path by
//! absolute name. Calls interrupted by a signal are retried.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use abi::{Errno, Stat};

use crate::{Result, StatFs, TimeUpdate};

/// Openat2's resolve flags (`RESOLVE_*`).
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;

/// `STATX_ATTR_MOUNT_ROOT`: the path is the root of a mount.
const STATX_ATTR_MOUNT_ROOT: u64 = 0x2000;

fn last_errno() -> Errno {
    Errno::from_io(&std::io::Error::last_os_error())
}

/// Retry a host call interrupted by a signal; a negative return is the
/// thread's errno.
fn retry(mut f: impl FnMut() -> libc::c_long) -> Result<usize> {
    loop {
        let ret = f();
        if ret >= 0 {
            return Ok(ret as usize);
        }
        let e = last_errno();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
}

fn cstr(name: &str) -> Result<CString> {
    CString::new(name).map_err(|_| Errno::EINVAL)
}

fn owned(fd: usize) -> OwnedFd {
    // SAFETY: callers pass a descriptor the kernel just returned, which
    // nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(dir, name, {flags | O_CLOEXEC, mode, resolve})`.
pub fn openat2(
    dir: BorrowedFd<'_>,
    name: &str,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> Result<OwnedFd> {
    let name = cstr(name)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u32 as u64,
        mode: u64::from(mode),
        resolve,
    };
    let fd = retry(|| {
        // SAFETY: `name` is NUL-terminated and `how` a correctly sized
        // open_how, both alive across the call; the kernel only reads them.
        unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                name.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        }
    })?;
    Ok(owned(fd))
}

/// `fstat(2)` (works on O_PATH descriptors) in the x86-64 ABI layout.
pub fn fstat(fd: BorrowedFd<'_>) -> Result<Stat> {
    // SAFETY: an all-zero `struct stat` is a valid value of the C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes one `struct stat` into `st`.
    retry(|| unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } as libc::c_long)?;
    Ok(Stat {
        dev: st.st_dev,
        ino: st.st_ino,
        nlink: st.st_nlink,
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        pad0: 0,
        rdev: st.st_rdev,
        size: st.st_size,
        blksize: st.st_blksize,
        blocks: st.st_blocks,
        atime_sec: st.st_atime,
        atime_nsec: st.st_atime_nsec,
        mtime_sec: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec,
        ctime_sec: st.st_ctime,
        ctime_nsec: st.st_ctime_nsec,
        reserved: [0; 3],
    })
}

/// `fstatfs(2)`.
pub fn fstatfs(fd: BorrowedFd<'_>) -> Result<StatFs> {
    // The raw x86-64 struct statfs: fifteen 8-byte words (libc hides fsid).
    let mut words = [0u64; 15];
    // SAFETY: the kernel writes one 120-byte struct statfs into `words`.
    retry(|| unsafe { libc::syscall(libc::SYS_fstatfs, fd.as_raw_fd(), words.as_mut_ptr()) })?;
    Ok(StatFs {
        fs_type: words[0] as i64,
        bsize: words[1] as i64,
        blocks: words[2],
        bfree: words[3],
        bavail: words[4],
        files: words[5],
        ffree: words[6],
        fsid: [words[7] as u32 as i32, (words[7] >> 32) as u32 as i32],
        namelen: words[8] as i64,
        frsize: words[9] as i64,
        flags: words[10] as i64,
    })
}

/// What `statx` tells about one entry of a directory without following it.
pub struct EntryInfo {
    pub mode: u32,
    pub dev: u64,
    pub mount_root: bool,
}

/// `statx(dir, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT)`: type, device
/// and whether the entry is a mount root.
pub fn statx_entry(dir: BorrowedFd<'_>, name: &str) -> Result<EntryInfo> {
    let name = cstr(name)?;
    // SAFETY: an all-zero `struct statx` is a valid value of the C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let flags = libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT | libc::AT_STATX_DONT_SYNC;
    retry(|| {
        // SAFETY: `name` is NUL-terminated and alive; the kernel writes one
        // struct statx into `stx`.
        (unsafe {
            libc::statx(
                dir.as_raw_fd(),
                name.as_ptr(),
                flags,
                libc::STATX_TYPE,
                &mut stx,
            )
        }) as libc::c_long
    })?;
    let mount_root = stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT != 0
        && stx.stx_attributes & STATX_ATTR_MOUNT_ROOT != 0;
    Ok(EntryInfo {
        mode: u32::from(stx.stx_mode),
        dev: libc::makedev(stx.stx_dev_major, stx.stx_dev_minor),
        mount_root,
    })
}

/// `readlinkat(fd, "")`: the target of the symlink `fd` (an O_PATH fd).
pub fn readlink_fd(fd: BorrowedFd<'_>) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    let n = retry(|| {
        // SAFETY: the path is a static empty C string; the kernel writes at
        // most `buf.len()` bytes into `buf`.
        (unsafe {
            libc::readlinkat(
                fd.as_raw_fd(),
                c"".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }) as libc::c_long
    })?;
    buf.truncate(n);
    Ok(buf)
}

/// `getdents64(2)` into `buf`.
pub fn getdents64(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize> {
    retry(|| {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        }
    })
}

/// `read(2)` (`offset` None) or `pread(2)`.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8], offset: Option<u64>) -> Result<usize> {
    let off = match offset {
        Some(o) => Some(i64::try_from(o).map_err(|_| Errno::EINVAL)?),
        None => None,
    };
    retry(|| {
        let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len());
        // SAFETY: the kernel writes at most `len` bytes at `ptr`, which is
        // `buf`, alive and exclusively borrowed.
        unsafe {
            match off {
                None => libc::read(fd.as_raw_fd(), ptr, len) as libc::c_long,
                Some(o) => libc::pread(fd.as_raw_fd(), ptr, len, o) as libc::c_long,
            }
        }
    })
}

/// `readv(2)` (`offset` None) or `preadv(2)`.
///
/// # Safety
/// Each `iovec` must describe memory valid for writes for the call, which
/// no Rust reference points into.
pub unsafe fn readv(fd: BorrowedFd<'_>, iov: &[libc::iovec], offset: Option<u64>) -> Result<usize> {
    let off = match offset {
        Some(o) => Some(i64::try_from(o).map_err(|_| Errno::EINVAL)?),
        None => None,
    };
    let cnt = iov.len().min(libc::UIO_MAXIOV as usize) as i32;
    retry(|| {
        // SAFETY: the caller vouches for the memory `iov` names; the
        // array itself is `cnt` live entries.
        unsafe {
            match off {
                None => libc::readv(fd.as_raw_fd(), iov.as_ptr(), cnt) as libc::c_long,
                Some(o) => libc::preadv(fd.as_raw_fd(), iov.as_ptr(), cnt, o) as libc::c_long,
            }
        }
    })
}

/// `writev(2)` (`offset` None) or `pwritev(2)`.
///
/// # Safety
/// Each `iovec` must describe memory valid for reads for the call.
pub unsafe fn writev(
    fd: BorrowedFd<'_>,
    iov: &[libc::iovec],
    offset: Option<u64>,
) -> Result<usize> {
    let off = match offset {
        Some(o) => Some(i64::try_from(o).map_err(|_| Errno::EINVAL)?),
        None => None,
    };
    let cnt = iov.len().min(libc::UIO_MAXIOV as usize) as i32;
    retry(|| {
        // SAFETY: as for `readv`; the kernel only reads the memory.
        unsafe {
            match off {
                None => libc::writev(fd.as_raw_fd(), iov.as_ptr(), cnt) as libc::c_long,
                Some(o) => libc::pwritev(fd.as_raw_fd(), iov.as_ptr(), cnt, o) as libc::c_long,
            }
        }
    })
}

/// `write(2)` (`offset` None) or `pwrite(2)`.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8], offset: Option<u64>) -> Result<usize> {
    let off = match offset {
        Some(o) => Some(i64::try_from(o).map_err(|_| Errno::EINVAL)?),
        None => None,
    };
    retry(|| {
        let (ptr, len) = (buf.as_ptr().cast(), buf.len());
        // SAFETY: the kernel reads at most `len` bytes from `buf`.
        unsafe {
            match off {
                None => libc::write(fd.as_raw_fd(), ptr, len) as libc::c_long,
                Some(o) => libc::pwrite(fd.as_raw_fd(), ptr, len, o) as libc::c_long,
            }
        }
    })
}

/// The access mode and status flags of a descriptor (`F_GETFL`).
pub fn status_flags(fd: BorrowedFd<'_>) -> Result<i32> {
    // SAFETY: F_GETFL only reads the descriptor's flags.
    retry(|| unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) } as libc::c_long)
        .map(|f| f as i32)
}

/// `lseek(2)`.
pub fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: i32) -> Result<u64> {
    // SAFETY: lseek takes integers only.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), offset, whence) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r as u64)
    }
}

/// `fsync(2)`.
pub fn fsync(fd: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: fsync takes a descriptor only.
    retry(|| unsafe { libc::fsync(fd.as_raw_fd()) } as libc::c_long).map(drop)
}

/// `ftruncate(2)`.
pub fn ftruncate(fd: BorrowedFd<'_>, size: u64) -> Result<()> {
    let size = i64::try_from(size).map_err(|_| Errno::EFBIG)?;
    // SAFETY: ftruncate takes integers only.
    retry(|| unsafe { libc::ftruncate(fd.as_raw_fd(), size) } as libc::c_long).map(drop)
}

/// `fchmod(2)` on an opened (not O_PATH) descriptor.
pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> Result<()> {
    // SAFETY: fchmod takes integers only.
    retry(|| unsafe { libc::fchmod(fd.as_raw_fd(), mode) } as libc::c_long).map(drop)
}

/// `fchmodat2(fd, "", mode, AT_EMPTY_PATH)`: change the mode of the file
/// behind an O_PATH descriptor itself (Linux 6.6 and later; ENOSYS before).
pub fn fchmod_path(fd: BorrowedFd<'_>, mode: u32) -> Result<()> {
    retry(|| {
        // SAFETY: the path is a static empty C string; integers otherwise.
        unsafe {
            libc::syscall(
                libc::SYS_fchmodat2,
                fd.as_raw_fd(),
                c"".as_ptr(),
                mode,
                libc::AT_EMPTY_PATH,
            )
        }
    })
    .map(drop)
}

/// `fchownat(fd, "", uid, gid, AT_EMPTY_PATH)` (works on O_PATH descriptors
/// and on symlinks themselves); `None` leaves an id alone.
pub fn fchown_path(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
    let uid = uid.unwrap_or(u32::MAX);
    let gid = gid.unwrap_or(u32::MAX);
    retry(|| {
        // SAFETY: the path is a static empty C string; integers otherwise.
        (unsafe { libc::fchownat(fd.as_raw_fd(), c"".as_ptr(), uid, gid, libc::AT_EMPTY_PATH) })
            as libc::c_long
    })
    .map(drop)
}

fn timespec(t: Option<TimeUpdate>) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(TimeUpdate::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(TimeUpdate::At(t)) => libc::timespec {
            tv_sec: t.sec,
            tv_nsec: t.nsec,
        },
    }
}

/// `utimensat(fd, "", times, AT_EMPTY_PATH)` on the file behind an O_PATH
/// descriptor; `None` leaves a time alone.
pub fn utimens_path(
    fd: BorrowedFd<'_>,
    atime: Option<TimeUpdate>,
    mtime: Option<TimeUpdate>,
) -> Result<()> {
    let times = [timespec(atime), timespec(mtime)];
    retry(|| {
        // SAFETY: the path is a static empty C string and `times` two live
        // timespecs the kernel reads.
        (unsafe {
            libc::utimensat(
                fd.as_raw_fd(),
                c"".as_ptr(),
                times.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        }) as libc::c_long
    })
    .map(drop)
}

/// `mkdirat(2)`.
pub fn mkdirat(dir: BorrowedFd<'_>, name: &str, mode: u32) -> Result<()> {
    let name = cstr(name)?;
    // SAFETY: `name` is a live NUL-terminated string the kernel only reads.
    retry(|| unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) } as libc::c_long)
        .map(drop)
}

/// `mknodat(2)`; `mode` carries the file type bits.
pub fn mknodat(dir: BorrowedFd<'_>, name: &str, mode: u32, rdev: u64) -> Result<()> {
    let name = cstr(name)?;
    retry(|| {
        // SAFETY: `name` is a live NUL-terminated string the kernel only reads.
        (unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, rdev) }) as libc::c_long
    })
    .map(drop)
}

/// `symlinkat(target, dir, name)`.
pub fn symlinkat(target: &str, dir: BorrowedFd<'_>, name: &str) -> Result<()> {
    let (target, name) = (cstr(target)?, cstr(name)?);
    retry(|| {
        // SAFETY: both strings are live and NUL-terminated; the kernel only
        // reads them.
        (unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
            as libc::c_long
    })
    .map(drop)
}

/// `linkat(old_dir, old, new_dir, new, 0)`: never follows a symlink `old`.
pub fn linkat(
    old_dir: BorrowedFd<'_>,
    old: &str,
    new_dir: BorrowedFd<'_>,
    new: &str,
) -> Result<()> {
    let (old, new) = (cstr(old)?, cstr(new)?);
    retry(|| {
        // SAFETY: both strings are live and NUL-terminated; the kernel only
        // reads them.
        (unsafe {
            libc::linkat(
                old_dir.as_raw_fd(),
                old.as_ptr(),
                new_dir.as_raw_fd(),
                new.as_ptr(),
                0,
            )
        }) as libc::c_long
    })
    .map(drop)
}

/// `unlinkat(2)` (`flags`: 0 or AT_REMOVEDIR).
pub fn unlinkat(dir: BorrowedFd<'_>, name: &str, flags: i32) -> Result<()> {
    let name = cstr(name)?;
    // SAFETY: `name` is a live NUL-terminated string the kernel only reads.
    retry(|| unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) } as libc::c_long)
        .map(drop)
}

/// `renameat2(2)` with `RENAME_*` flags.
pub fn renameat2(
    old_dir: BorrowedFd<'_>,
    old: &str,
    new_dir: BorrowedFd<'_>,
    new: &str,
    flags: u32,
) -> Result<()> {
    let (old, new) = (cstr(old)?, cstr(new)?);
    retry(|| {
        // SAFETY: both strings are live and NUL-terminated; the kernel only
        // reads them.
        unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                old_dir.as_raw_fd(),
                old.as_ptr(),
                new_dir.as_raw_fd(),
                new.as_ptr(),
                flags,
            )
        }
    })
    .map(drop)
}

/// `getrandom(2)` from the host, filling at most `buf`.
pub fn getrandom(buf: &mut [u8]) -> Result<usize> {
    retry(|| {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) as libc::c_long }
    })
}

/// `fallocate(2)`.
pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: u64, len: u64) -> Result<()> {
    let offset = i64::try_from(offset).map_err(|_| Errno::EFBIG)?;
    let len = i64::try_from(len).map_err(|_| Errno::EFBIG)?;
    // SAFETY: fallocate takes integers only.
    retry(|| unsafe { libc::fallocate(fd.as_raw_fd(), mode, offset, len) } as libc::c_long)
        .map(drop)
}

/// The largest extended attribute value Linux stores (XATTR_SIZE_MAX), and
/// the largest list of names (XATTR_LIST_MAX).
const XATTR_MAX: usize = 64 << 10;

/// `fgetxattr(2)` on an opened (not O_PATH) descriptor: the whole value.
pub fn fgetxattr(fd: BorrowedFd<'_>, name: &str) -> Result<Vec<u8>> {
    let name = cstr(name)?;
    let mut buf = vec![0u8; XATTR_MAX];
    // SAFETY: `name` is NUL-terminated and `buf` is writable for its length.
    let n = retry(|| unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    } as libc::c_long)?;
    buf.truncate(n);
    Ok(buf)
}

/// `flistxattr(2)` on an opened descriptor: the names.
pub fn flistxattr(fd: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; XATTR_MAX];
    // SAFETY: `buf` is writable for its length.
    let n = retry(
        || unsafe { libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
            as libc::c_long,
    )?;
    Ok(buf[..n]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// `fsetxattr(2)` on an opened descriptor.
pub fn fsetxattr(fd: BorrowedFd<'_>, name: &str, value: &[u8], flags: i32) -> Result<()> {
    let name = cstr(name)?;
    // SAFETY: `name` is NUL-terminated and `value` readable for its length.
    retry(|| unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    } as libc::c_long)
    .map(drop)
}

/// `fremovexattr(2)` on an opened descriptor.
pub fn fremovexattr(fd: BorrowedFd<'_>, name: &str) -> Result<()> {
    let name = cstr(name)?;
    // SAFETY: `name` is NUL-terminated.
    retry(|| unsafe { libc::fremovexattr(fd.as_raw_fd(), name.as_ptr()) } as libc::c_long).map(drop)
}
