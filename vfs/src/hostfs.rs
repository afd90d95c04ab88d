//! A filesystem over a host directory descriptor: the gofer donates the
//! container root's host descriptor and the Sentry walks beneath it
//! (directfs).
//!
//! Each node holds an `O_PATH | O_NOFOLLOW` host descriptor. Lookups open
//! one component at a time with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS`, so the host never follows a symlink or `..` for
//! us: the VFS follows symlinks itself with `readlink`. Nothing is opened by
//! absolute host path.
//!
//! Host procfs and sysfs are invisible (they describe the host, not the
//! sandbox), and of host device nodes only the memory devices may be
//! opened, served by [`crate::dev`].
//!
//! On a read-only mount the sandbox has to itself (`--file-access=exclusive`,
//! as the root's lower layer is), a node keeps its attributes after the
//! first stat, as upstream's exclusive caching does: nothing but the
//! host's atime can change them then, and a read through the node (file
//! contents, directory entries, a link's target), which may move it, drops
//! them.
//!
//! Known gaps: extended attributes (the `f*xattr` calls do not work on
//! O_PATH descriptors), names that are not UTF-8 (left out of `read_dir`),
//! and a regular file is reopened by parent and name, checked against the
//! node's device and inode afterwards.

use std::any::Any;
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};

use abi::{Errno, Stat};

use crate::inode::{dirent_type, RENAME_EXCHANGE};
use crate::{
    dev, host, DirEntry, FileOps, Inode, NodeKind, Result, SetAttr, StatFs, S_IFBLK, S_IFCHR,
    S_IFDIR, S_IFLNK, S_IFMT, S_IFREG,
};

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;

/// How every name beneath the root is resolved: one component, no symlinks.
const RESOLVE: u64 =
    host::RESOLVE_BENEATH | host::RESOLVE_NO_SYMLINKS | host::RESOLVE_NO_MAGICLINKS;

/// Open flags passed through to the host when a node is reopened.
const KEEP_FLAGS: i32 = libc::O_ACCMODE
    | libc::O_NONBLOCK
    | libc::O_DIRECTORY
    | libc::O_APPEND
    | libc::O_NOFOLLOW
    | libc::O_CLOEXEC
    | libc::O_NOCTTY;

/// A file over an owned host descriptor.
pub struct HostFile {
    /// Shared by every plain read-only open of one host node (see
    /// `HostNode::read_fd`); reads and writes name their offsets.
    fd: Arc<OwnedFd>,
    seekable: bool,
    /// The position is the host descriptor's own (see [`HostFile::shared`]).
    host_positioned: bool,
    /// The host descriptor was opened with O_APPEND.
    append: bool,
    /// The node's cached attributes, dropped by every read and write.
    attrs: Option<Arc<AttrCache>>,
}

impl HostFile {
    pub fn new(fd: OwnedFd, seekable: bool) -> HostFile {
        let append = host::status_flags(fd.as_fd()).is_ok_and(|f| f & libc::O_APPEND != 0);
        HostFile::over(Arc::new(fd), seekable, append)
    }

    fn over(fd: Arc<OwnedFd>, seekable: bool, append: bool) -> HostFile {
        HostFile {
            fd,
            seekable,
            host_positioned: false,
            append,
            attrs: None,
        }
    }

    /// A file of `node`, whose cached attributes (if its mount keeps
    /// them) every read and write drops.
    fn of_node(mut self, node: &HostNode) -> HostFile {
        self.attrs = node.fs.cache_attrs.then(|| node.attrs.clone());
        self
    }

    /// The file was read or written: its atime, mtime or size may have
    /// moved.
    fn touched(&self) {
        if let Some(a) = &self.attrs {
            a.drop_stat();
        }
    }

    /// A host descriptor whose file position is shared with processes
    /// outside the sandbox (the stdio the runtime hands over, which may be
    /// a regular file the caller also writes): reads and writes use and
    /// move the host's position, and lseek goes to the host.
    pub fn shared(fd: OwnedFd) -> HostFile {
        let append = host::status_flags(fd.as_fd()).is_ok_and(|f| f & libc::O_APPEND != 0);
        HostFile {
            fd: Arc::new(fd),
            seekable: false,
            host_positioned: true,
            append,
            attrs: None,
        }
    }

    fn offset(&self, offset: u64) -> Option<u64> {
        self.seekable.then_some(offset)
    }
}

impl FileOps for HostFile {
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.touched();
        host::read(self.fd.as_fd(), buf, self.offset(offset))
    }

    fn write(&self, buf: &[u8], offset: u64) -> Result<usize> {
        self.touched();
        host::write(self.fd.as_fd(), buf, self.offset(offset))
    }

    fn append(&self, buf: &[u8]) -> Result<(usize, u64)> {
        self.touched();
        if !self.seekable {
            return Ok((host::write(self.fd.as_fd(), buf, None)?, 0));
        }
        if self.append {
            // The host appends atomically; the new end is read afterwards.
            let n = host::write(self.fd.as_fd(), buf, None)?;
            let end = host::fstat(self.fd.as_fd())?.size as u64;
            return Ok((n, end));
        }
        let end = host::fstat(self.fd.as_fd())?.size as u64;
        let n = host::write(self.fd.as_fd(), buf, Some(end))?;
        Ok((n, end + n as u64))
    }

    fn seekable(&self) -> bool {
        self.seekable
    }

    fn seek(&self, offset: i64, whence: i32) -> Option<Result<u64>> {
        self.host_positioned
            .then(|| host::lseek(self.fd.as_fd(), offset, whence))
    }

    fn stat(&self) -> Result<Stat> {
        host::fstat(self.fd.as_fd())
    }

    fn sync(&self) -> Result<()> {
        host::fsync(self.fd.as_fd())
    }

    fn host_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }

    /// The host file system decides which modes it supports.
    fn allocate(&self, mode: i32, offset: u64, len: u64) -> Option<Result<()>> {
        Some(host::fallocate(self.fd.as_fd(), mode, offset, len))
    }

    fn iov_io(&self) -> Option<&dyn crate::inode::IovIo> {
        // Not for descriptors shared with the host (stdio): they may block
        // in the host, and the direct path runs under the memory manager's
        // lock.
        (!self.host_positioned).then_some(self as &dyn crate::inode::IovIo)
    }
}

impl crate::inode::IovIo for HostFile {
    unsafe fn read_iov(&self, iov: &[libc::iovec], offset: u64) -> Result<usize> {
        self.touched();
        // SAFETY: the caller's contract is readv's.
        unsafe { host::readv(self.fd.as_fd(), iov, self.offset(offset)) }
    }

    unsafe fn write_iov(&self, iov: &[libc::iovec], offset: u64) -> Result<usize> {
        self.touched();
        // SAFETY: the caller's contract is writev's.
        unsafe { host::writev(self.fd.as_fd(), iov, self.offset(offset)) }
    }
}

/// What one instance's nodes share; its address tells instances apart.
struct Fs {
    read_only: bool,
    /// Nodes keep their attributes (read-only, exclusive access).
    cache_attrs: bool,
}

/// A node's attributes as last read from the host, while `Fs::cache_attrs`.
#[derive(Default)]
struct AttrCache(Mutex<Option<Stat>>);

impl AttrCache {
    fn get(&self) -> Option<Stat> {
        *self.0.lock().unwrap()
    }

    fn put(&self, st: Stat) {
        *self.0.lock().unwrap() = Some(st);
    }

    fn drop_stat(&self) {
        *self.0.lock().unwrap() = None;
    }
}

/// Where a node sits: its parent's descriptor and its name there.
#[derive(Clone)]
struct Loc {
    parent: Arc<OwnedFd>,
    name: String,
}

struct HostNode {
    fs: Arc<Fs>,
    /// `O_PATH | O_NOFOLLOW`; shared with children as their parent.
    fd: Arc<OwnedFd>,
    dev: u64,
    ino: u64,
    /// `S_IFMT` bits (a node never changes type).
    kind: u32,
    rdev: u64,
    /// `None` for the root and after the name was removed.
    loc: Mutex<Option<Loc>>,
    /// Live child nodes by name, so rename and unlink can tell them where
    /// they went.
    children: Mutex<HashMap<String, Weak<HostNode>>>,
    /// A regular file's read-only host descriptor, opened by the first
    /// plain read-only open and shared by the later ones (upstream's
    /// per-dentry read FD): opening a host file the sandbox has opened
    /// before costs no host call. Dropped with the node.
    read_fd: Mutex<Option<Arc<OwnedFd>>>,
    attrs: Arc<AttrCache>,
}

/// A filesystem whose root is the host directory `dir`; `exclusive`: only
/// the sandbox changes the files (`--file-access=exclusive`), so a
/// read-only mount keeps their attributes.
pub fn new_root(dir: OwnedFd, read_only: bool, exclusive: bool) -> Result<Arc<dyn Inode>> {
    let st = host::fstat(dir.as_fd())?;
    if st.mode & S_IFMT != S_IFDIR {
        return Err(Errno::ENOTDIR);
    }
    if is_hidden_fs(dir.as_fd())? {
        return Err(Errno::EACCES);
    }
    Ok(Arc::new(HostNode {
        fs: Arc::new(Fs {
            read_only,
            cache_attrs: read_only && exclusive,
        }),
        fd: Arc::new(dir),
        dev: st.dev,
        ino: st.ino,
        kind: S_IFDIR,
        rdev: 0,
        loc: Mutex::new(None),
        children: Mutex::new(HashMap::new()),
        read_fd: Mutex::new(None),
        attrs: Arc::default(),
    }))
}

/// Whether `fd` is on a host filesystem the sandbox must not see.
fn is_hidden_fs(fd: BorrowedFd<'_>) -> Result<bool> {
    Ok(matches!(
        host::fstatfs(fd)?.fs_type,
        PROC_SUPER_MAGIC | SYSFS_MAGIC
    ))
}

/// One component; the VFS never passes others, but a `/` must never reach
/// the host.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(Errno::ENOENT);
    }
    Ok(())
}

fn open_path(dir: BorrowedFd<'_>, name: &str) -> Result<OwnedFd> {
    host::openat2(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0, RESOLVE)
}

impl HostNode {
    fn writable(&self) -> Result<()> {
        if self.fs.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    fn dir(&self) -> Result<BorrowedFd<'_>> {
        if self.kind != S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        Ok(self.fd.as_fd())
    }

    /// The node for `fd`, just opened as `name` beneath this directory.
    fn child(&self, name: &str, fd: OwnedFd) -> Result<Arc<HostNode>> {
        let st = host::fstat(fd.as_fd())?;
        // Only a mount point changes the device, so only then ask statfs.
        if st.dev != self.dev && is_hidden_fs(fd.as_fd())? {
            return Err(Errno::ENOENT);
        }
        let mut children = self.children.lock().unwrap();
        if let Some(known) = children.get(name).and_then(Weak::upgrade) {
            if known.dev == st.dev && known.ino == st.ino {
                return Ok(known);
            }
        }
        let node = Arc::new(HostNode {
            fs: self.fs.clone(),
            fd: Arc::new(fd),
            dev: st.dev,
            ino: st.ino,
            kind: st.mode & S_IFMT,
            rdev: st.rdev,
            loc: Mutex::new(Some(Loc {
                parent: self.fd.clone(),
                name: name.to_string(),
            })),
            children: Mutex::new(HashMap::new()),
            read_fd: Mutex::new(None),
            attrs: Arc::default(),
        });
        if self.fs.cache_attrs {
            node.attrs.put(st);
        }
        if children.len() >= 64 {
            children.retain(|_, w| w.strong_count() > 0);
        }
        children.insert(name.to_string(), Arc::downgrade(&node));
        Ok(node)
    }

    /// Remove the live child `name` from the cache.
    fn take_child(&self, name: &str) -> Option<Arc<HostNode>> {
        self.children
            .lock()
            .unwrap()
            .remove(name)
            .and_then(|w| w.upgrade())
    }

    /// Record that `node` is now `name` in this directory.
    fn put_child(&self, name: &str, node: &Arc<HostNode>) {
        *node.loc.lock().unwrap() = Some(Loc {
            parent: self.fd.clone(),
            name: name.to_string(),
        });
        self.children
            .lock()
            .unwrap()
            .insert(name.to_string(), Arc::downgrade(node));
    }

    /// The child `name` was removed: it has no name to reopen by.
    fn forget_child(&self, name: &str) {
        if let Some(node) = self.take_child(name) {
            *node.loc.lock().unwrap() = None;
        }
    }

    /// Open the node itself with real `flags` (never following a symlink
    /// or leaving the root), checked to still be the same file.
    fn reopen(&self, flags: i32) -> Result<OwnedFd> {
        let flags = (flags & KEEP_FLAGS) | libc::O_NOFOLLOW | libc::O_NOCTTY;
        let fd = if self.kind == S_IFDIR {
            // A directory's O_PATH descriptor can itself be the base.
            host::openat2(self.fd.as_fd(), ".", flags | libc::O_DIRECTORY, 0, RESOLVE)?
        } else {
            let loc = self.loc.lock().unwrap().clone().ok_or(Errno::ENOENT)?;
            // O_NONBLOCK: should the name have been swapped for a FIFO, the
            // open must not hang before the check below catches it.
            host::openat2(
                loc.parent.as_fd(),
                &loc.name,
                flags | libc::O_NONBLOCK,
                0,
                RESOLVE,
            )?
        };
        let st = host::fstat(fd.as_fd())?;
        if st.dev != self.dev || st.ino != self.ino {
            return Err(Errno::ENOENT);
        }
        Ok(fd)
    }

    fn set_mode(&self, mode: u32) -> Result<()> {
        match host::fchmod_path(self.fd.as_fd(), mode) {
            // Before Linux 6.6: change it through an opened descriptor.
            Err(e) if e == Errno::ENOSYS && matches!(self.kind, S_IFDIR | S_IFREG) => {
                host::fchmod(self.reopen(libc::O_RDONLY)?.as_fd(), mode)
            }
            other => other,
        }
    }

    /// A device node that may be opened: a memory device, else EACCES.
    fn open_device(&self, flags: i32) -> Result<Arc<dyn FileOps>> {
        if self.kind == S_IFCHR {
            if let Ok(file) = dev::open_memory_device(self.rdev, flags) {
                return Ok(file);
            }
        }
        tracing::info!(
            "hostfs: host device {}:{} is not exposed to the sandbox",
            libc::major(self.rdev),
            libc::minor(self.rdev)
        );
        Err(Errno::EACCES)
    }

    fn downcast<'a>(&self, other: &'a Arc<dyn Inode>) -> Result<&'a HostNode> {
        other
            .as_any()
            .downcast_ref::<HostNode>()
            .filter(|n| Arc::ptr_eq(&n.fs, &self.fs))
            .ok_or(Errno::EXDEV)
    }

    /// Give a freshly made node its mode (the host umask cut it) and owner.
    fn finish_create(node: &HostNode, mode: u32, owner: (u32, u32)) {
        let Ok(st) = host::fstat(node.fd.as_fd()) else {
            return;
        };
        if node.kind != S_IFLNK && st.mode & 0o7777 != mode {
            if let Err(e) = node.set_mode(mode) {
                tracing::debug!("hostfs: mode {mode:o} of a new node: {e:?}");
            }
        }
        if (st.uid, st.gid) != owner {
            // Best effort: without CAP_CHOWN on the host the node keeps the
            // Sentry's ids.
            if let Err(e) = host::fchown_path(node.fd.as_fd(), Some(owner.0), Some(owner.1)) {
                tracing::debug!("hostfs: owner {owner:?} of a new node: {e:?}");
            }
        }
    }
}

impl Inode for HostNode {
    fn stat(&self) -> Result<Stat> {
        if !self.fs.cache_attrs {
            return host::fstat(self.fd.as_fd());
        }
        if let Some(st) = self.attrs.get() {
            return Ok(st);
        }
        let st = host::fstat(self.fd.as_fd())?;
        self.attrs.put(st);
        Ok(st)
    }

    fn statfs(&self) -> Result<StatFs> {
        host::fstatfs(self.fd.as_fd())
    }

    fn setattr(&self, attr: &SetAttr) -> Result<()> {
        self.writable()?;
        if let Some(size) = attr.size {
            match self.kind {
                S_IFDIR => return Err(Errno::EISDIR),
                S_IFREG => host::ftruncate(self.reopen(libc::O_WRONLY)?.as_fd(), size)?,
                _ => return Err(Errno::EINVAL),
            }
        }
        if attr.uid.is_some() || attr.gid.is_some() {
            host::fchown_path(self.fd.as_fd(), attr.uid, attr.gid)?;
        }
        if let Some(mode) = attr.mode {
            if self.kind == S_IFLNK {
                return Err(Errno::EOPNOTSUPP);
            }
            self.set_mode(mode & 0o7777)?;
        }
        if attr.atime.is_some() || attr.mtime.is_some() {
            host::utimens_path(self.fd.as_fd(), attr.atime, attr.mtime)?;
        }
        Ok(())
    }

    fn lookup(&self, name: &str) -> Result<Arc<dyn Inode>> {
        let dir = self.dir()?;
        check_name(name)?;
        let fd = open_path(dir, name)?;
        Ok(self.child(name, fd)?)
    }

    fn create(
        &self,
        name: &str,
        kind: NodeKind,
        mode: u32,
        owner: (u32, u32),
    ) -> Result<Arc<dyn Inode>> {
        let dir = self.dir()?;
        check_name(name)?;
        self.writable()?;
        let mode = mode & 0o7777;
        match &kind {
            NodeKind::Regular => {
                let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDONLY | libc::O_NOFOLLOW;
                drop(host::openat2(dir, name, flags, mode, RESOLVE)?);
            }
            NodeKind::Directory => host::mkdirat(dir, name, mode)?,
            NodeKind::Symlink(target) => host::symlinkat(target, dir, name)?,
            NodeKind::CharDevice(rdev) | NodeKind::BlockDevice(rdev) => {
                host::mknodat(dir, name, kind.type_bits() | mode, *rdev)?
            }
            NodeKind::Fifo | NodeKind::Socket => {
                host::mknodat(dir, name, kind.type_bits() | mode, 0)?
            }
        }
        let node = self.child(name, open_path(dir, name)?)?;
        Self::finish_create(&node, mode, owner);
        Ok(node)
    }

    fn link(&self, name: &str, target: &Arc<dyn Inode>) -> Result<()> {
        let dir = self.dir()?;
        check_name(name)?;
        self.writable()?;
        let target = self.downcast(target)?;
        if target.kind == S_IFDIR {
            return Err(Errno::EPERM);
        }
        let loc = target.loc.lock().unwrap().clone().ok_or(Errno::ENOENT)?;
        host::linkat(loc.parent.as_fd(), &loc.name, dir, name)?;
        // The name may have been swapped on the host meanwhile: keep the
        // new link only if it is the node asked for.
        let st = host::fstat(open_path(dir, name)?.as_fd())?;
        if st.dev != target.dev || st.ino != target.ino {
            let _ = host::unlinkat(dir, name, 0);
            return Err(Errno::ENOENT);
        }
        Ok(())
    }

    fn unlink(&self, name: &str) -> Result<()> {
        let dir = self.dir()?;
        check_name(name)?;
        self.writable()?;
        host::unlinkat(dir, name, 0)?;
        self.forget_child(name);
        Ok(())
    }

    fn rmdir(&self, name: &str) -> Result<()> {
        let dir = self.dir()?;
        check_name(name)?;
        self.writable()?;
        host::unlinkat(dir, name, libc::AT_REMOVEDIR)?;
        self.forget_child(name);
        Ok(())
    }

    fn rename(&self, old: &str, new_dir: &Arc<dyn Inode>, new: &str, flags: u32) -> Result<()> {
        let dir = self.dir()?;
        let new_node = self.downcast(new_dir)?;
        let to = new_node.dir()?;
        check_name(old)?;
        check_name(new)?;
        self.writable()?;
        host::renameat2(dir, old, to, new, flags)?;
        let moved = self.take_child(old);
        let displaced = new_node.take_child(new);
        if let Some(node) = &moved {
            new_node.put_child(new, node);
        }
        if let Some(node) = displaced {
            if flags & RENAME_EXCHANGE != 0 {
                self.put_child(old, &node);
            } else {
                *node.loc.lock().unwrap() = None;
            }
        }
        Ok(())
    }

    fn read_dir(&self) -> Result<Vec<DirEntry>> {
        self.dir()?;
        let dirfd = self.reopen(libc::O_RDONLY)?;
        self.attrs.drop_stat();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = host::getdents64(dirfd.as_fd(), &mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            let mut at = 0;
            // linux_dirent64: ino u64, off i64, reclen u16, type u8, name.
            while at + 19 <= n {
                let rec = &buf[at..n];
                let reclen = usize::from(u16::from_le_bytes([rec[16], rec[17]]));
                if reclen < 19 || reclen > rec.len() {
                    break;
                }
                at += reclen;
                let ino = u64::from_le_bytes(rec[..8].try_into().expect("8 bytes"));
                let raw = &rec[19..reclen];
                let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
                if raw == b"." || raw == b".." {
                    continue;
                }
                let Ok(name) = std::str::from_utf8(raw) else {
                    tracing::debug!("hostfs: skipping a name that is not UTF-8: {raw:?}");
                    continue;
                };
                if let Some(kind) = self.visible_kind(dirfd.as_fd(), name, rec[18]) {
                    out.push(DirEntry {
                        ino,
                        kind,
                        name: name.to_string(),
                    });
                }
            }
        }
    }

    fn readlink(&self) -> Result<String> {
        if self.kind != S_IFLNK {
            return Err(Errno::EINVAL);
        }
        let target = host::readlink_fd(self.fd.as_fd())?;
        self.attrs.drop_stat();
        Ok(String::from_utf8_lossy(&target).into_owned())
    }

    fn open(&self, flags: i32) -> Result<Arc<dyn FileOps>> {
        let wants_write = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        match self.kind {
            S_IFDIR => {
                if flags & libc::O_ACCMODE != libc::O_RDONLY {
                    return Err(Errno::EISDIR);
                }
                Ok(Arc::new(HostFile::new(self.reopen(flags)?, true)))
            }
            S_IFREG => {
                if wants_write {
                    self.writable()?;
                }
                // Flags that change what the host descriptor does (or that
                // the host must refuse) need one of their own; O_NONBLOCK
                // means nothing for regular files.
                const OWN_FD: i32 = libc::O_ACCMODE
                    | libc::O_DIRECTORY
                    | libc::O_PATH
                    | libc::O_TRUNC
                    | libc::O_APPEND
                    | libc::O_DIRECT
                    | libc::O_NOATIME
                    | libc::O_SYNC
                    | libc::O_DSYNC;
                if flags & OWN_FD == libc::O_RDONLY {
                    let mut cached = self.read_fd.lock().unwrap();
                    let fd = match &*cached {
                        Some(fd) => fd.clone(),
                        None => cached
                            .insert(Arc::new(self.reopen(libc::O_RDONLY)?))
                            .clone(),
                    };
                    return Ok(Arc::new(HostFile::over(fd, true, false).of_node(self)));
                }
                Ok(Arc::new(
                    HostFile::new(self.reopen(flags)?, true).of_node(self),
                ))
            }
            // Writing a device changes no file, so a read-only mount allows it.
            S_IFCHR | S_IFBLK => self.open_device(flags),
            S_IFLNK => Err(Errno::ELOOP),
            _ => {
                tracing::info!("hostfs: host FIFOs and sockets are not exposed to the sandbox");
                Err(Errno::EACCES)
            }
        }
    }

    fn getxattr(&self, name: &str) -> Result<Vec<u8>> {
        match self.xattr_fd(name)? {
            Some(fd) => host::fgetxattr(fd.as_fd(), name),
            None => Err(Errno::ENODATA),
        }
    }

    fn listxattr(&self) -> Result<Vec<String>> {
        let Some(fd) = self.xattr_fd("user.")? else {
            return Ok(Vec::new());
        };
        Ok(host::flistxattr(fd.as_fd())?
            .into_iter()
            .filter(|n| n.starts_with(b"user."))
            .filter_map(|n| String::from_utf8(n).ok())
            .collect())
    }

    fn setxattr(&self, name: &str, value: &[u8], flags: i32) -> Result<()> {
        self.writable()?;
        match self.xattr_fd(name)? {
            Some(fd) => host::fsetxattr(fd.as_fd(), name, value, flags),
            // Linux allows user.* only on regular files and directories.
            None => Err(Errno::EPERM),
        }
    }

    fn removexattr(&self, name: &str) -> Result<()> {
        self.writable()?;
        match self.xattr_fd(name)? {
            Some(fd) => host::fremovexattr(fd.as_fd(), name),
            None => Err(Errno::ENODATA),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl HostNode {
    /// A readable descriptor of this node to use xattr calls on, for the
    /// user.* namespace only (as the gofer: the host's security.*,
    /// trusted.* and system.* attributes are not the sandbox's); None for
    /// nodes other than regular files and directories, which Linux gives
    /// no user.* attributes.
    fn xattr_fd(&self, name: &str) -> Result<Option<OwnedFd>> {
        if !name.starts_with("user.") {
            return Err(Errno::EOPNOTSUPP);
        }
        if self.kind != S_IFREG && self.kind != S_IFDIR {
            return Ok(None);
        }
        self.reopen(libc::O_RDONLY).map(Some)
    }

    /// The `DT_*` type of the entry `name` of the opened directory `dir`,
    /// or `None` if it must stay invisible (a host procfs or sysfs mount)
    /// or is gone.
    fn visible_kind(&self, dir: BorrowedFd<'_>, name: &str, d_type: u8) -> Option<u8> {
        const DT_UNKNOWN: u8 = 0;
        const DT_DIR: u8 = 4;
        if d_type != DT_DIR && d_type != DT_UNKNOWN {
            return Some(d_type);
        }
        let info = host::statx_entry(dir, name).ok()?;
        if info.mount_root || info.dev != self.dev {
            let hidden = open_path(dir, name)
                .and_then(|fd| is_hidden_fs(fd.as_fd()))
                .unwrap_or(false);
            if hidden {
                return None;
            }
        }
        Some(if d_type == DT_UNKNOWN {
            dirent_type(info.mode)
        } else {
            d_type
        })
    }
}
