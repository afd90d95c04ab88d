//! Files as the Sentry holds them until the VFS crate lands: the container
//! root (a host directory descriptor the runtime handed over) and open
//! files backed by host descriptors opened beneath it.
//!
//! The root is read-only: opening for write gives EROFS. Host procfs and
//! sysfs are never visible through it (they would describe the host and
//! the Sentry, not the sandbox), and of host device nodes only the
//! stateless memory devices (`/dev/null`, `zero`, `full`, `random`,
//! `urandom`) may be opened. Paths are resolved by string against the
//! working directory; symlinks and `..` are resolved by the host kernel
//! confined beneath the root (`RESOLVE_IN_ROOT`).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use abi::Errno;

use crate::host;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;

/// Character devices of major 1 ("mem") that hold no host state.
fn is_safe_device(rdev: u64, write: bool) -> bool {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    match (major, minor) {
        (1, 3) | (1, 5) | (1, 7) => true, // null, zero, full
        (1, 8) | (1, 9) => !write,        // random, urandom: reading only
        _ => false,
    }
}

/// The container's root directory.
pub struct Root {
    fd: OwnedFd,
}

/// Join `path` onto the absolute directory `dir` (no normalisation: the
/// host resolves `.`, `..` and symlinks beneath the root).
pub fn join(dir: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{path}")
    } else {
        format!("{dir}/{path}")
    }
}

/// Collapse `.`, `..` and repeated slashes of an absolute path lexically
/// (for the working directory; the host resolves symlinks on each use).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

impl Root {
    pub fn new(fd: OwnedFd) -> Root {
        Root { fd }
    }

    /// Open the absolute sandbox path `path` with open(2) `flags`; returns
    /// the host descriptor and its stat.
    pub fn open(&self, path: &str, flags: i32) -> Result<(OwnedFd, abi::Stat), Errno> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        let accmode = flags & libc::O_ACCMODE;
        let wants_write = accmode != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        let nofollow = flags & libc::O_NOFOLLOW;
        // Look first, so errors come in Linux's order (ENOENT, ENOTDIR, ELOOP
        // before EROFS).
        let found = host::openat2_beneath(
            self.fd.as_fd(),
            path,
            libc::O_PATH | nofollow | (flags & libc::O_DIRECTORY),
        );
        let probe = match found {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if flags & libc::O_CREAT != 0 => return Err(Errno::EROFS),
            Err(e) => return Err(e),
        };
        self.check_visible(probe.as_fd())?;
        let st = host::fstat(probe.as_fd())?;
        if flags & libc::O_CREAT != 0 && flags & libc::O_EXCL != 0 {
            return Err(Errno::EEXIST);
        }
        let kind = st.mode & S_IFMT;
        if (kind == S_IFCHR || kind == S_IFBLK) && !is_safe_device(st.rdev, wants_write) {
            tracing::info!(
                "open {path:?}: host device nodes other than the memory devices are not exposed"
            );
            return Err(Errno::EACCES);
        }
        if wants_write {
            if kind == S_IFDIR {
                return Err(Errno::EISDIR);
            }
            if kind != S_IFCHR {
                return Err(Errno::EROFS);
            }
        }
        if flags & libc::O_PATH != 0 {
            return Ok((probe, st));
        }
        let keep = libc::O_ACCMODE
            | libc::O_NONBLOCK
            | libc::O_DIRECTORY
            | libc::O_NOFOLLOW
            | libc::O_APPEND;
        let fd = host::openat2_beneath(self.fd.as_fd(), path, flags & keep)?;
        self.check_visible(fd.as_fd())?;
        let st = host::fstat(fd.as_fd())?;
        Ok((fd, st))
    }

    fn check_visible(&self, fd: BorrowedFd<'_>) -> Result<(), Errno> {
        if is_hidden_fs(fd)? {
            Err(Errno::ENOENT)
        } else {
            Ok(())
        }
    }
}

/// Whether `fd` is on a host filesystem the sandbox must not see.
fn is_hidden_fs(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    Ok(matches!(host::fs_type(fd)?, PROC_SUPER_MAGIC | SYSFS_MAGIC))
}

/// Read directory entries of `dir` into `buf` (`getdents64` records),
/// leaving out subdirectories that are host procfs or sysfs mounts, which
/// `open` refuses too.
pub fn read_dir(dir: &File, buf: &mut [u8]) -> Result<usize, Errno> {
    const DT_DIR: u8 = 4;
    loop {
        let n = host::getdents64(dir.host(), buf)?;
        if n == 0 {
            return Ok(0);
        }
        // Compact the kept records to the front of `buf`.
        let (mut read, mut kept) = (0, 0);
        while read + 19 <= n {
            let reclen = usize::from(u16::from_le_bytes([buf[read + 16], buf[read + 17]]));
            if reclen == 0 || read + reclen > n {
                break;
            }
            let name_bytes = &buf[read + 19..read + reclen];
            let name = &name_bytes[..name_bytes
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(name_bytes.len())];
            let hidden = buf[read + 18] == DT_DIR
                && name != b"."
                && name != b".."
                && std::str::from_utf8(name).is_ok_and(|name| {
                    host::openat2_beneath(dir.host(), name, libc::O_PATH | libc::O_NOFOLLOW)
                        .and_then(|fd| is_hidden_fs(fd.as_fd()))
                        .unwrap_or(false)
                });
            if !hidden {
                buf.copy_within(read..read + reclen, kept);
                kept += reclen;
            }
            read += reclen;
        }
        // Everything this batch held was hidden: read on rather than report
        // an end of directory that is not there.
        if kept > 0 {
            return Ok(kept);
        }
    }
}

/// An open file description.
pub struct File {
    host: OwnedFd,
    /// open(2) status flags and access mode.
    pub flags: i32,
    /// The sandbox path it was opened by, for `*at` calls relative to it.
    pub path: String,
    pub mode: u32,
}

impl File {
    pub fn new(host: OwnedFd, flags: i32, path: String, mode: u32) -> File {
        File {
            host,
            flags,
            path,
            mode,
        }
    }

    pub fn host(&self) -> BorrowedFd<'_> {
        self.host.as_fd()
    }

    pub fn readable(&self) -> bool {
        self.flags & libc::O_PATH == 0 && self.flags & libc::O_ACCMODE != libc::O_WRONLY
    }

    pub fn writable(&self) -> bool {
        self.flags & libc::O_PATH == 0 && self.flags & libc::O_ACCMODE != libc::O_RDONLY
    }

    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    pub fn is_regular(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
}

/// A process's descriptor table. Cloning it (fork) shares the open file
/// descriptions, as Linux does.
#[derive(Clone, Default)]
pub struct FdTable {
    slots: Vec<Option<(Arc<File>, bool)>>,
}

/// RLIMIT_NOFILE's default soft limit.
pub const MAX_FDS: usize = 1024;

impl FdTable {
    pub fn get(&self, fd: u64) -> Result<Arc<File>, Errno> {
        let slot = usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get(i))
            .ok_or(Errno::EBADF)?;
        slot.as_ref().map(|(f, _)| f.clone()).ok_or(Errno::EBADF)
    }

    /// Install `file` at the lowest free descriptor `>= min`.
    pub fn insert(&mut self, file: Arc<File>, cloexec: bool, min: usize) -> Result<u64, Errno> {
        let free = (min..MAX_FDS)
            .find(|&i| self.slots.get(i).is_none_or(|s| s.is_none()))
            .ok_or(Errno::EMFILE)?;
        self.set(free, file, cloexec);
        Ok(free as u64)
    }

    /// Install `file` at `fd`, closing what was there.
    pub fn set(&mut self, fd: usize, file: Arc<File>, cloexec: bool) {
        if self.slots.len() <= fd {
            self.slots.resize_with(fd + 1, || None);
        }
        self.slots[fd] = Some((file, cloexec));
    }

    pub fn remove(&mut self, fd: u64) -> Result<Arc<File>, Errno> {
        let slot = usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .ok_or(Errno::EBADF)?;
        slot.take().map(|(f, _)| f).ok_or(Errno::EBADF)
    }

    pub fn cloexec(&self, fd: u64) -> Result<bool, Errno> {
        let slot = usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get(i))
            .ok_or(Errno::EBADF)?;
        slot.as_ref().map(|(_, c)| *c).ok_or(Errno::EBADF)
    }

    /// Close every descriptor marked close-on-exec.
    pub fn close_on_exec(&mut self) {
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|(_, cloexec)| *cloexec) {
                *slot = None;
            }
        }
    }

    pub fn set_cloexec(&mut self, fd: u64, cloexec: bool) -> Result<(), Errno> {
        let slot = usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .ok_or(Errno::EBADF)?;
        let entry = slot.as_mut().ok_or(Errno::EBADF)?;
        entry.1 = cloexec;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_absolute_paths() {
        assert_eq!(join("/a", "/b"), "/b");
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(join("/", "b"), "/b");
    }

    #[test]
    fn normalize_collapses_dots() {
        assert_eq!(normalize("/a/b/../c/./d//"), "/a/c/d");
        assert_eq!(normalize("/.."), "/");
        assert_eq!(normalize("/"), "/");
    }

    #[test]
    fn only_memory_devices_are_safe() {
        let dev = |ma, mi| libc::makedev(ma, mi);
        assert!(is_safe_device(dev(1, 3), true));
        assert!(is_safe_device(dev(1, 9), false));
        assert!(!is_safe_device(dev(1, 9), true));
        assert!(!is_safe_device(dev(1, 1), false), "/dev/mem");
        assert!(!is_safe_device(dev(8, 0), false), "a disk");
    }

    #[test]
    fn lowest_free_descriptor_is_used() {
        let root = std::fs::File::open("/").unwrap();
        let file = |p: &str| {
            Arc::new(File::new(
                OwnedFd::from(root.try_clone().unwrap()),
                0,
                p.into(),
                S_IFDIR,
            ))
        };
        let mut t = FdTable::default();
        assert_eq!(t.insert(file("a"), false, 0).unwrap(), 0);
        assert_eq!(t.insert(file("b"), true, 0).unwrap(), 1);
        assert_eq!(t.insert(file("c"), false, 5).unwrap(), 5);
        t.remove(0).unwrap();
        assert_eq!(t.insert(file("d"), false, 0).unwrap(), 0);
        assert!(t.cloexec(1).unwrap());
        assert_eq!(t.get(3).err(), Some(Errno::EBADF));
        assert_eq!(t.remove(9).err(), Some(Errno::EBADF));
    }
}
