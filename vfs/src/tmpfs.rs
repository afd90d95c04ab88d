//! tmpfs: an in-memory filesystem with Linux tmpfs semantics.
//!
//! File data is kept in sparse 4 KiB pages, so holes cost nothing and read
//! as zeros; allocated pages are charged against the instance's size limit.
//!
//! Locking: every node has one mutex over its attributes and contents.
//! Changes to the namespace (create, link, unlink, rmdir, rename) also take
//! the instance-wide `tree` mutex, which lets them lock the nodes involved
//! one after the other instead of nested, so no lock order is needed.

use std::any::Any;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use abi::{Errno, Stat};

use crate::inode::{
    dirent_type, DirEntry, FileOps, Inode, NodeKind, SetAttr, SharedMap, SharedMemory,
    SharedRegion, StatFs, TimeSpec, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT,
    XATTR_CREATE, XATTR_REPLACE,
};
use crate::{Result, NAME_MAX, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG};

const PAGE: u64 = 4096;
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// s_maxbytes of tmpfs (MAX_LFS_FILESIZE).
const MAX_FILE_SIZE: u64 = i64::MAX as u64;
/// Linux's made-up directory entry size: a directory's st_size is this
/// times (entries + 2).
const BOGO_DIRENT_SIZE: u64 = 20;
const XATTR_SIZE_MAX: usize = 65536;
/// Symlink targets are limited to PATH_MAX including the NUL.
const SYMLINK_MAX: usize = 4095;

// File seals (include/uapi/linux/fcntl.h).
const F_SEAL_SEAL: u32 = 0x1;
const F_SEAL_SHRINK: u32 = 0x2;
const F_SEAL_GROW: u32 = 0x4;
const F_SEAL_WRITE: u32 = 0x8;
const F_SEAL_FUTURE_WRITE: u32 = 0x10;
const F_SEAL_EXEC: u32 = 0x20;
const ALL_SEALS: u32 =
    F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_EXEC;

/// Opens a FIFO: `((dev, ino) of the node, open flags)`.
pub type FifoOpener = Arc<dyn Fn((u64, u64), i32) -> Result<Arc<dyn FileOps>> + Send + Sync>;

/// Opens a character or block device node: `(rdev, open flags)`.
pub type DeviceOpener = Arc<dyn Fn(u64, i32) -> Result<Arc<dyn FileOps>> + Send + Sync>;

/// How to set up one tmpfs instance.
#[derive(Clone)]
pub struct TmpfsOptions {
    pub dev: u64,
    /// Permission bits of the root directory.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Bytes of file data the instance may hold (ENOSPC past it); 0 means
    /// no limit, as tmpfs's `size=0`.
    pub size_limit: u64,
    /// Opens device nodes; without it they fail with ENXIO.
    pub devices: Option<DeviceOpener>,
    /// Where files move when mapped MAP_SHARED; without it such mappings
    /// are refused.
    pub memory: Option<Arc<dyn SharedMemory>>,
    /// Opens FIFOs; without it they fail with ENXIO.
    pub fifos: Option<FifoOpener>,
}

impl Default for TmpfsOptions {
    fn default() -> Self {
        TmpfsOptions {
            dev: 0,
            mode: 0o1777,
            uid: 0,
            gid: 0,
            size_limit: 0,
            devices: None,
            memory: None,
            fifos: None,
        }
    }
}

/// A new tmpfs instance; returns its root directory.
pub fn new(opts: TmpfsOptions) -> Arc<dyn Inode> {
    let fs = Arc::new(Fs {
        dev: opts.dev,
        limit: opts.size_limit,
        used: AtomicU64::new(0),
        next_ino: AtomicU64::new(1),
        devices: opts.devices,
        memory: opts.memory,
        fifos: opts.fifos,
        tree: Mutex::new(()),
    });
    fs.new_node(
        NodeKind::Directory,
        opts.mode,
        (opts.uid, opts.gid),
        Weak::new(),
    )
}

/// One instance: what its nodes share.
struct Fs {
    dev: u64,
    limit: u64,
    /// Bytes of allocated data pages.
    used: AtomicU64,
    next_ino: AtomicU64,
    devices: Option<DeviceOpener>,
    memory: Option<Arc<dyn SharedMemory>>,
    fifos: Option<FifoOpener>,
    /// Serialises namespace changes (see the module comment).
    tree: Mutex<()>,
}

impl Fs {
    fn charge(&self, bytes: u64) -> Result<()> {
        let limit = if self.limit == 0 {
            u64::MAX
        } else {
            self.limit
        };
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&n| n <= limit)
            })
            .map(|_| ())
            .map_err(|_| Errno::ENOSPC)
    }

    fn uncharge(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn new_node(
        self: &Arc<Fs>,
        kind: NodeKind,
        mode: u32,
        owner: (u32, u32),
        parent: Weak<Node>,
    ) -> Arc<Node> {
        let now = TimeSpec::now();
        let ftype = kind.type_bits();
        let (body, rdev) = match kind {
            // Like every shmem file, sealed against seals until a memfd
            // made with MFD_ALLOW_SEALING lifts it (`allow_sealing`).
            NodeKind::Regular => (
                Body::File(Data {
                    seals: F_SEAL_SEAL,
                    ..Data::default()
                }),
                0,
            ),
            NodeKind::Directory => (
                Body::Dir(Dir {
                    entries: BTreeMap::new(),
                    parent,
                }),
                0,
            ),
            NodeKind::Symlink(target) => (Body::Symlink(target), 0),
            NodeKind::CharDevice(rdev) | NodeKind::BlockDevice(rdev) => (Body::Special, rdev),
            NodeKind::Fifo | NodeKind::Socket => (Body::Special, 0),
        };
        let meta = Meta {
            mode: ftype | (mode & 0o7777),
            uid: owner.0,
            gid: owner.1,
            nlink: if ftype == S_IFDIR { 2 } else { 1 },
            rdev,
            atime: now,
            mtime: now,
            ctime: now,
            xattrs: BTreeMap::new(),
            body,
        };
        Arc::new_cyclic(|me| Node {
            fs: self.clone(),
            ino: self.next_ino.fetch_add(1, Ordering::Relaxed),
            ftype,
            me: me.clone(),
            meta: Mutex::new(meta),
        })
    }
}

struct Node {
    fs: Arc<Fs>,
    ino: u64,
    /// The `S_IFMT` bits, fixed for the node's life (kept outside the lock
    /// so directory operations can check a child's type without locking it).
    ftype: u32,
    me: Weak<Node>,
    meta: Mutex<Meta>,
}

struct Meta {
    /// Type and permission bits.
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    rdev: u64,
    atime: TimeSpec,
    mtime: TimeSpec,
    ctime: TimeSpec,
    xattrs: BTreeMap<String, Vec<u8>>,
    body: Body,
}

enum Body {
    Dir(Dir),
    File(Data),
    Symlink(String),
    /// Devices, FIFOs and sockets: no contents here.
    Special,
}

struct Dir {
    /// Sorted, so `read_dir` order is stable.
    entries: BTreeMap<String, Arc<Node>>,
    /// For refusing to move a directory beneath itself.
    parent: Weak<Node>,
}

#[derive(Default)]
struct Data {
    size: u64,
    /// Page index → page; missing pages are holes.
    pages: BTreeMap<u64, Box<[u8]>>,
    /// Once the file is mapped shared its bytes live here instead of in
    /// `pages` (which is then empty), so mappings and read/write agree.
    region: Option<Arc<dyn SharedRegion>>,
    /// `F_SEAL_*` bits.
    seals: u32,
    /// One more strong reference per shared mapping that may be written
    /// (the [`SharedMap::writer`] tokens), so F_SEAL_WRITE can refuse.
    writers: Arc<()>,
}

/// The pages of a file for ascending page indexes: one walk of the map
/// instead of a search per page (a 128 KiB read touches 32 pages).
struct PageCursor<'a> {
    pages: std::iter::Peekable<std::collections::btree_map::Range<'a, u64, Box<[u8]>>>,
}

impl<'a> PageCursor<'a> {
    fn new(pages: &'a BTreeMap<u64, Box<[u8]>>, first: u64) -> PageCursor<'a> {
        PageCursor {
            pages: pages.range(first..).peekable(),
        }
    }

    /// The page `idx` (None: a hole); `idx` must never go backwards.
    fn get(&mut self, idx: u64) -> Option<&'a [u8]> {
        while self.pages.next_if(|(&k, _)| k < idx).is_some() {}
        self.pages
            .peek()
            .filter(|(&k, _)| k == idx)
            .map(|(_, p)| &p[..])
    }
}

impl Data {
    /// Move the data into shared memory (once; from then on the file's
    /// bytes live there and the region's length is the file's size).
    fn share(&mut self, fs: &Fs) -> Result<Arc<dyn SharedRegion>> {
        if let Some(r) = &self.region {
            return Ok(r.clone());
        }
        let memory = fs.memory.as_ref().ok_or(Errno::ENODEV)?;
        // The region is charged for its whole length, holes included.
        fs.charge(pages(self.size))?;
        let region = match memory.allocate(self.size) {
            Ok(r) => r,
            Err(e) => {
                fs.uncharge(pages(self.size));
                return Err(e);
            }
        };
        for (&idx, page) in &self.pages {
            let keep = (self.size - idx * PAGE).min(PAGE) as usize;
            if let Err(e) = region.write(idx * PAGE, &page[..keep]) {
                fs.uncharge(pages(self.size));
                return Err(e);
            }
        }
        fs.uncharge(self.pages.len() as u64 * PAGE);
        self.pages.clear();
        self.region = Some(region.clone());
        Ok(region)
    }

    /// Copy bytes from `offset` on into the raw iovecs `iov` (memmove,
    /// so no Rust reference is formed over the destination); returns the
    /// bytes copied.
    ///
    /// # Safety
    /// As [`IovIo::read_iov`](crate::inode::IovIo::read_iov).
    unsafe fn read_raw(&self, iov: &[libc::iovec], offset: u64) -> Result<usize> {
        if let Some(r) = &self.region {
            // No further than the file's size, whatever the region holds
            // past it (a write that failed half-way may have grown it).
            let mut left = self.size.saturating_sub(offset) as usize;
            let mut upto = Vec::with_capacity(iov.len());
            for v in iov {
                if left == 0 {
                    break;
                }
                let n = v.iov_len.min(left);
                upto.push(libc::iovec {
                    iov_base: v.iov_base,
                    iov_len: n,
                });
                left -= n;
            }
            // SAFETY: the caller's contract, for a prefix of its iovecs.
            return unsafe { r.read_iov(&upto, offset) };
        }
        let mut pos = offset;
        let mut done = 0usize;
        let mut pages = PageCursor::new(&self.pages, offset / PAGE);
        for v in iov {
            let mut at = 0usize;
            while at < v.iov_len && pos < self.size {
                let in_page = (pos % PAGE) as usize;
                let n = (PAGE as usize - in_page)
                    .min(v.iov_len - at)
                    .min((self.size - pos) as usize);
                let dst = (v.iov_base as *mut u8).wrapping_add(at);
                match pages.get(pos / PAGE).map(|p| &p[in_page..in_page + n]) {
                    // SAFETY: `dst` has `n` writable bytes (the caller's
                    // contract on `iov`); the source is Sentry memory.
                    Some(src) => unsafe { std::ptr::copy(src.as_ptr(), dst, n) },
                    // SAFETY: as above; a hole reads as zeros.
                    None => unsafe { std::ptr::write_bytes(dst, 0, n) },
                }
                at += n;
                pos += n as u64;
                done += n;
            }
            if pos >= self.size {
                break;
            }
        }
        Ok(done)
    }

    fn read(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let len = (buf.len() as u64).min(self.size - offset) as usize;
        if let Some(r) = &self.region {
            return r.read(offset, &mut buf[..len]);
        }
        let mut done = 0;
        let mut pages = PageCursor::new(&self.pages, offset / PAGE);
        while done < len {
            let pos = offset + done as u64;
            let in_page = (pos % PAGE) as usize;
            let n = (PAGE as usize - in_page).min(len - done);
            let out = &mut buf[done..done + n];
            match pages.get(pos / PAGE) {
                Some(page) => out.copy_from_slice(&page[in_page..in_page + n]),
                None => out.fill(0),
            }
            done += n;
        }
        Ok(len)
    }

    /// Writes as much as fits; ENOSPC or EFBIG only when nothing does.
    fn write(&mut self, fs: &Fs, buf: &[u8], offset: u64) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE) != 0
            || (self.seals & F_SEAL_GROW != 0
                && offset.saturating_add(buf.len() as u64) > self.size)
        {
            return Err(Errno::EPERM);
        }
        if offset >= MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let len = (buf.len() as u64).min(MAX_FILE_SIZE - offset) as usize;
        if let Some(region) = &self.region {
            let end = offset + len as u64;
            let grow = pages(end).saturating_sub(pages(self.size));
            fs.charge(grow)?;
            if let Err(e) = region.write(offset, &buf[..len]) {
                fs.uncharge(grow);
                return Err(e);
            }
            self.size = self.size.max(end);
            return Ok(len);
        }
        let mut done = 0;
        while done < len {
            let pos = offset + done as u64;
            let in_page = (pos % PAGE) as usize;
            let n = (PAGE as usize - in_page).min(len - done);
            let page = match self.pages.entry(pos / PAGE) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    if let Err(err) = fs.charge(PAGE) {
                        if done == 0 {
                            return Err(err);
                        }
                        break;
                    }
                    e.insert(vec![0; PAGE as usize].into_boxed_slice())
                }
            };
            page[in_page..in_page + n].copy_from_slice(&buf[done..done + n]);
            done += n;
        }
        self.size = self.size.max(offset + done as u64);
        Ok(done)
    }

    /// FALLOC_FL_PUNCH_HOLE: zero `[offset, offset + len)` within the
    /// file, whole pages becoming holes again; the size stays.
    fn punch_hole(&mut self, fs: &Fs, offset: u64, len: u64) -> Result<()> {
        if self.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE) != 0 {
            return Err(Errno::EPERM);
        }
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return Ok(());
        }
        if let Some(r) = &self.region {
            return r.punch(offset, end - offset);
        }
        let mut pos = offset;
        while pos < end {
            let idx = pos / PAGE;
            let in_page = (pos % PAGE) as usize;
            let n = (PAGE as usize - in_page).min((end - pos) as usize);
            if n == PAGE as usize {
                if self.pages.remove(&idx).is_some() {
                    fs.uncharge(PAGE);
                }
            } else if let Some(page) = self.pages.get_mut(&idx) {
                page[in_page..in_page + n].fill(0);
            }
            pos += n as u64;
        }
        Ok(())
    }

    /// Whether the seals allow changing the size to `size`.
    fn may_resize(&self, size: u64) -> Result<()> {
        if (size < self.size && self.seals & F_SEAL_SHRINK != 0)
            || (size > self.size && self.seals & F_SEAL_GROW != 0)
        {
            return Err(Errno::EPERM);
        }
        Ok(())
    }

    fn truncate(&mut self, fs: &Fs, size: u64) -> Result<()> {
        if let Some(r) = &self.region {
            // The region follows: pages cut off are gone from every
            // mapping (touching them is SIGBUS), and growing reads zeros.
            let grow = pages(size).saturating_sub(pages(self.size));
            fs.charge(grow)?;
            if let Err(e) = r.set_len(size) {
                fs.uncharge(grow);
                return Err(e);
            }
            fs.uncharge(pages(self.size).saturating_sub(pages(size)));
            self.size = size;
            return Ok(());
        }
        if size < self.size {
            let dropped = self.pages.split_off(&size.div_ceil(PAGE));
            fs.uncharge(dropped.len() as u64 * PAGE);
            // Zero the cut-off tail so growing the file again reads zeros.
            if !size.is_multiple_of(PAGE) {
                if let Some(page) = self.pages.get_mut(&(size / PAGE)) {
                    page[(size % PAGE) as usize..].fill(0);
                }
            }
        }
        self.size = size;
        Ok(())
    }
}

/// `len` bytes rounded up to whole pages.
fn pages(len: u64) -> u64 {
    len.div_ceil(PAGE) * PAGE
}

impl Drop for Node {
    fn drop(&mut self) {
        let meta = match self.meta.get_mut() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        match &mut meta.body {
            Body::File(data) => {
                let region = if data.region.is_some() {
                    pages(data.size)
                } else {
                    0
                };
                self.fs.uncharge(data.pages.len() as u64 * PAGE + region)
            }
            // Tear down a subtree iteratively: recursive drops of a deep tree
            // could overflow the stack.
            Body::Dir(dir) => {
                let mut stack: Vec<Arc<Node>> =
                    std::mem::take(&mut dir.entries).into_values().collect();
                while let Some(child) = stack.pop() {
                    if let Ok(mut child) = Arc::try_unwrap(child) {
                        let meta = match child.meta.get_mut() {
                            Ok(m) => m,
                            Err(poisoned) => poisoned.into_inner(),
                        };
                        if let Body::Dir(d) = &mut meta.body {
                            stack.extend(std::mem::take(&mut d.entries).into_values());
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn touch(meta: &mut Meta, now: TimeSpec) {
    meta.mtime = now;
    meta.ctime = now;
}

/// Checks an xattr name: length, then namespace.
fn check_xattr_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(Errno::ERANGE);
    }
    for prefix in ["user.", "trusted.", "security."] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return if rest.is_empty() {
                Err(Errno::EINVAL)
            } else {
                Ok(())
            };
        }
    }
    Err(Errno::EOPNOTSUPP)
}

fn downcast(inode: &Arc<dyn Inode>) -> Option<&Node> {
    inode.as_any().downcast_ref::<Node>()
}

impl Node {
    fn lock(&self) -> MutexGuard<'_, Meta> {
        self.meta.lock().unwrap()
    }

    fn arc(&self) -> Arc<Node> {
        // A node is only reachable through an Arc, so this cannot fail.
        self.me.upgrade().expect("tmpfs node without an Arc")
    }

    fn is_dir(&self) -> bool {
        self.ftype == S_IFDIR
    }

    /// The entry `name`, or None; ENOTDIR for non-directories and ENOENT
    /// for a removed directory.
    fn entry(&self, name: &str) -> Result<Option<Arc<Node>>> {
        let meta = self.lock();
        match &meta.body {
            Body::Dir(_) if meta.nlink == 0 => Err(Errno::ENOENT),
            Body::Dir(d) => Ok(d.entries.get(name).cloned()),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn is_empty_dir(&self) -> bool {
        matches!(&self.lock().body, Body::Dir(d) if d.entries.is_empty())
    }

    fn parent(&self) -> Option<Arc<Node>> {
        match &self.lock().body {
            Body::Dir(d) => d.parent.upgrade(),
            _ => None,
        }
    }

    /// Whether `self` is `dir` or lies beneath it.
    fn is_within(&self, dir: &Node) -> bool {
        if std::ptr::eq(self, dir) {
            return true;
        }
        let mut cur = self.parent();
        while let Some(n) = cur {
            if std::ptr::eq(Arc::as_ptr(&n), dir) {
                return true;
            }
            cur = n.parent();
        }
        false
    }

    /// Runs `f` on this directory's entries, with the directory's metadata.
    fn with_dir<T>(&self, f: impl FnOnce(&mut Meta) -> T) -> T {
        f(&mut self.lock())
    }

    fn entries_mut(meta: &mut Meta) -> &mut BTreeMap<String, Arc<Node>> {
        match &mut meta.body {
            Body::Dir(d) => &mut d.entries,
            // Callers have checked the node is a directory.
            _ => unreachable!("tmpfs: entries of a non-directory"),
        }
    }

    fn set_parent(&self, parent: &Node) {
        if let Body::Dir(d) = &mut self.lock().body {
            d.parent = parent.me.clone();
        }
    }

    fn rename_exchange(&self, old: &str, nd: &Node, new: &str, src: Arc<Node>, dst: Arc<Node>) {
        let now = TimeSpec::now();
        let same_dir = std::ptr::eq(self, nd);
        let (src_dir, dst_dir) = (src.is_dir(), dst.is_dir());
        self.with_dir(|m| {
            Self::entries_mut(m).insert(old.to_string(), dst.clone());
            if !same_dir {
                m.nlink = m.nlink + u64::from(dst_dir) - u64::from(src_dir);
            }
            touch(m, now);
        });
        nd.with_dir(|m| {
            Self::entries_mut(m).insert(new.to_string(), src.clone());
            if !same_dir {
                m.nlink = m.nlink + u64::from(src_dir) - u64::from(dst_dir);
            }
            touch(m, now);
        });
        src.set_parent(nd);
        dst.set_parent(self);
        src.lock().ctime = now;
        dst.lock().ctime = now;
    }
}

impl Inode for Node {
    fn stat(&self) -> Result<Stat> {
        let m = self.lock();
        let (size, blocks) = match &m.body {
            Body::Dir(d) => ((d.entries.len() as u64 + 2) * BOGO_DIRENT_SIZE, 0),
            Body::File(data) => {
                let bytes = match &data.region {
                    Some(_) => pages(data.size),
                    None => data.pages.len() as u64 * PAGE,
                };
                (data.size, bytes / 512)
            }
            Body::Symlink(t) => (t.len() as u64, 0),
            Body::Special => (0, 0),
        };
        Ok(Stat {
            dev: self.fs.dev,
            ino: self.ino,
            nlink: m.nlink,
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            rdev: m.rdev,
            size: size as i64,
            blksize: PAGE as i64,
            blocks: blocks as i64,
            atime_sec: m.atime.sec,
            atime_nsec: m.atime.nsec,
            mtime_sec: m.mtime.sec,
            mtime_nsec: m.mtime.nsec,
            ctime_sec: m.ctime.sec,
            ctime_nsec: m.ctime.nsec,
            ..Stat::default()
        })
    }

    fn statfs(&self) -> Result<StatFs> {
        // Like Linux, an unlimited instance reports no block counts.
        let (blocks, free) = if self.fs.limit == 0 {
            (0, 0)
        } else {
            let used = self.fs.used.load(Ordering::Relaxed);
            (
                self.fs.limit / PAGE,
                self.fs.limit.saturating_sub(used) / PAGE,
            )
        };
        Ok(StatFs {
            fs_type: TMPFS_MAGIC,
            bsize: PAGE as i64,
            blocks,
            bfree: free,
            bavail: free,
            namelen: NAME_MAX as i64,
            frsize: PAGE as i64,
            ..StatFs::default()
        })
    }

    fn setattr(&self, attr: &SetAttr) -> Result<()> {
        let mut m = self.lock();
        if let Some(size) = attr.size {
            match &m.body {
                Body::File(data) => data.may_resize(size)?,
                Body::Dir(_) => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
            if size > MAX_FILE_SIZE {
                return Err(Errno::EFBIG);
            }
        }
        if let (Some(mode), Body::File(data)) = (attr.mode, &m.body) {
            if data.seals & F_SEAL_EXEC != 0 && (mode ^ m.mode) & 0o111 != 0 {
                return Err(Errno::EPERM);
            }
        }
        let now = TimeSpec::now();
        // The size first: it is the one change that can fail.
        if let Some(size) = attr.size {
            if let Body::File(data) = &mut m.body {
                data.truncate(&self.fs, size)?;
            }
            m.mtime = now;
        }
        if let Some(mode) = attr.mode {
            m.mode = (m.mode & S_IFMT) | (mode & 0o7777);
        }
        if let Some(uid) = attr.uid {
            m.uid = uid;
        }
        if let Some(gid) = attr.gid {
            m.gid = gid;
        }
        if let Some(t) = attr.atime {
            m.atime = t.resolve();
        }
        if let Some(t) = attr.mtime {
            m.mtime = t.resolve();
        }
        m.ctime = now;
        Ok(())
    }

    fn lookup(&self, name: &str) -> Result<Arc<dyn Inode>> {
        match &self.lock().body {
            Body::Dir(d) => match d.entries.get(name) {
                Some(n) => Ok(n.clone()),
                None => Err(Errno::ENOENT),
            },
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn create(
        &self,
        name: &str,
        kind: NodeKind,
        mode: u32,
        owner: (u32, u32),
    ) -> Result<Arc<dyn Inode>> {
        if let NodeKind::Symlink(target) = &kind {
            if target.len() > SYMLINK_MAX {
                return Err(Errno::ENAMETOOLONG);
            }
        }
        let _tree = self.fs.tree.lock().unwrap();
        if self.entry(name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        let is_dir = kind == NodeKind::Directory;
        let node = self.fs.new_node(kind, mode, owner, self.me.clone());
        self.with_dir(|m| {
            Self::entries_mut(m).insert(name.to_string(), node.clone());
            if is_dir {
                m.nlink += 1;
            }
            touch(m, TimeSpec::now());
        });
        Ok(node)
    }

    fn link(&self, name: &str, target: &Arc<dyn Inode>) -> Result<()> {
        let t = downcast(target).ok_or(Errno::EXDEV)?;
        if !Arc::ptr_eq(&t.fs, &self.fs) {
            return Err(Errno::EXDEV);
        }
        if t.is_dir() {
            return Err(Errno::EPERM);
        }
        let _tree = self.fs.tree.lock().unwrap();
        if self.entry(name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        // An unlinked file cannot get a name back (linkat of an O_TMPFILE
        // aside, which we do not have).
        if t.lock().nlink == 0 {
            return Err(Errno::ENOENT);
        }
        let now = TimeSpec::now();
        self.with_dir(|m| {
            Self::entries_mut(m).insert(name.to_string(), t.arc());
            touch(m, now);
        });
        let mut tm = t.lock();
        tm.nlink += 1;
        tm.ctime = now;
        Ok(())
    }

    fn unlink(&self, name: &str) -> Result<()> {
        let _tree = self.fs.tree.lock().unwrap();
        let child = self.entry(name)?.ok_or(Errno::ENOENT)?;
        if child.is_dir() {
            return Err(Errno::EISDIR);
        }
        let now = TimeSpec::now();
        self.with_dir(|m| {
            Self::entries_mut(m).remove(name);
            touch(m, now);
        });
        let mut cm = child.lock();
        cm.nlink -= 1;
        cm.ctime = now;
        Ok(())
    }

    fn rmdir(&self, name: &str) -> Result<()> {
        let _tree = self.fs.tree.lock().unwrap();
        let child = self.entry(name)?.ok_or(Errno::ENOENT)?;
        if !child.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let now = TimeSpec::now();
        {
            let mut cm = child.lock();
            if !matches!(&cm.body, Body::Dir(d) if d.entries.is_empty()) {
                return Err(Errno::ENOTEMPTY);
            }
            // nlink 0 also stops creation inside the removed directory.
            cm.nlink = 0;
            cm.ctime = now;
        }
        self.with_dir(|m| {
            Self::entries_mut(m).remove(name);
            m.nlink -= 1;
            touch(m, now);
        });
        Ok(())
    }

    fn rename(&self, old: &str, new_dir: &Arc<dyn Inode>, new: &str, flags: u32) -> Result<()> {
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) != 0
            || (flags & RENAME_EXCHANGE != 0 && flags & (RENAME_NOREPLACE | RENAME_WHITEOUT) != 0)
        {
            return Err(Errno::EINVAL);
        }
        let nd = downcast(new_dir).ok_or(Errno::EXDEV)?;
        if !Arc::ptr_eq(&nd.fs, &self.fs) {
            return Err(Errno::EXDEV);
        }
        let _tree = self.fs.tree.lock().unwrap();
        let src = self.entry(old)?.ok_or(Errno::ENOENT)?;
        let dst = nd.entry(new)?;
        let exchange = flags & RENAME_EXCHANGE != 0;
        if exchange && dst.is_none() {
            return Err(Errno::ENOENT);
        }
        if flags & RENAME_NOREPLACE != 0 && dst.is_some() {
            return Err(Errno::EEXIST);
        }
        // Two names of one inode (or a name onto itself): nothing to do.
        if dst.as_ref().is_some_and(|d| Arc::ptr_eq(d, &src)) {
            return Ok(());
        }
        if src.is_dir() && nd.is_within(&src) {
            return Err(Errno::EINVAL);
        }
        if exchange {
            let dst = dst.expect("checked above");
            if dst.is_dir() && self.is_within(&dst) {
                return Err(Errno::EINVAL);
            }
            self.rename_exchange(old, nd, new, src, dst);
            return Ok(());
        }
        if let Some(d) = &dst {
            match (src.is_dir(), d.is_dir()) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) if !d.is_empty_dir() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        let now = TimeSpec::now();
        let same_dir = std::ptr::eq(self, nd);
        let src_dir = src.is_dir();
        self.with_dir(|m| {
            Self::entries_mut(m).remove(old);
            if src_dir && !same_dir {
                m.nlink -= 1;
            }
            touch(m, now);
        });
        if let Some(d) = &dst {
            let mut dm = d.lock();
            dm.nlink = if d.is_dir() { 0 } else { dm.nlink - 1 };
            dm.ctime = now;
        }
        let replaced_dir = dst.as_ref().is_some_and(|d| d.is_dir());
        nd.with_dir(|m| {
            Self::entries_mut(m).insert(new.to_string(), src.clone());
            if src_dir && !same_dir {
                m.nlink += 1;
            }
            if replaced_dir {
                m.nlink -= 1;
            }
            touch(m, now);
        });
        src.set_parent(nd);
        src.lock().ctime = now;
        if flags & RENAME_WHITEOUT != 0 {
            let (uid, gid) = {
                let m = src.lock();
                (m.uid, m.gid)
            };
            let whiteout = self
                .fs
                .new_node(NodeKind::CharDevice(0), 0, (uid, gid), Weak::new());
            self.with_dir(|m| {
                Self::entries_mut(m).insert(old.to_string(), whiteout);
            });
        }
        Ok(())
    }

    fn read_dir(&self) -> Result<Vec<DirEntry>> {
        match &self.lock().body {
            Body::Dir(d) => Ok(d
                .entries
                .iter()
                .map(|(name, n)| DirEntry {
                    ino: n.ino,
                    kind: dirent_type(n.ftype),
                    name: name.clone(),
                })
                .collect()),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn readlink(&self) -> Result<String> {
        match &self.lock().body {
            Body::Symlink(t) => Ok(t.clone()),
            _ => Err(Errno::EINVAL),
        }
    }

    fn open(&self, flags: i32) -> Result<Arc<dyn FileOps>> {
        match self.ftype {
            S_IFREG => Ok(Arc::new(RegularFile { node: self.arc() })),
            S_IFDIR => Ok(Arc::new(DirFile { node: self.arc() })),
            S_IFLNK => Err(Errno::ELOOP),
            S_IFCHR | S_IFBLK => {
                let rdev = self.lock().rdev;
                match &self.fs.devices {
                    Some(open) => open(rdev, flags),
                    None => Err(Errno::ENXIO),
                }
            }
            // A FIFO's pipe is the kernel's, found by the node's identity.
            S_IFIFO => match &self.fs.fifos {
                Some(open) => open((self.fs.dev, self.ino), flags),
                None => Err(Errno::ENXIO),
            },
            // Opening a socket node is ENXIO on Linux too.
            _ => Err(Errno::ENXIO),
        }
    }

    fn getxattr(&self, name: &str) -> Result<Vec<u8>> {
        check_xattr_name(name)?;
        self.lock().xattrs.get(name).cloned().ok_or(Errno::ENODATA)
    }

    fn setxattr(&self, name: &str, value: &[u8], flags: i32) -> Result<()> {
        if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 {
            return Err(Errno::EINVAL);
        }
        check_xattr_name(name)?;
        if value.len() > XATTR_SIZE_MAX {
            return Err(Errno::E2BIG);
        }
        let mut m = self.lock();
        let exists = m.xattrs.contains_key(name);
        if flags & XATTR_CREATE != 0 && exists {
            return Err(Errno::EEXIST);
        }
        if flags & XATTR_REPLACE != 0 && !exists {
            return Err(Errno::ENODATA);
        }
        m.xattrs.insert(name.to_string(), value.to_vec());
        m.ctime = TimeSpec::now();
        Ok(())
    }

    fn listxattr(&self) -> Result<Vec<String>> {
        Ok(self.lock().xattrs.keys().cloned().collect())
    }

    fn removexattr(&self, name: &str) -> Result<()> {
        check_xattr_name(name)?;
        let mut m = self.lock();
        m.xattrs.remove(name).ok_or(Errno::ENODATA)?;
        m.ctime = TimeSpec::now();
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A read updates atime the relatime way: only when atime is older than
/// the last change, or a day old.
fn relatime(m: &mut Meta) {
    let now = TimeSpec::now();
    let key = |t: TimeSpec| (t.sec, t.nsec);
    if key(m.atime) <= key(m.mtime)
        || key(m.atime) <= key(m.ctime)
        || now.sec - m.atime.sec >= 86400
    {
        m.atime = now;
    }
}

/// An open regular file. It holds the node, so the data outlives unlink.
struct RegularFile {
    node: Arc<Node>,
}

impl RegularFile {
    fn write_at(&self, buf: &[u8], offset: Option<u64>) -> Result<(usize, u64)> {
        let mut m = self.node.lock();
        let Body::File(data) = &mut m.body else {
            unreachable!("tmpfs: regular file without data")
        };
        let offset = offset.unwrap_or(data.size);
        let n = data.write(&self.node.fs, buf, offset)?;
        if n > 0 {
            touch(&mut m, TimeSpec::now());
        }
        Ok((n, offset + n as u64))
    }
}

impl FileOps for RegularFile {
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        let mut m = self.node.lock();
        let Body::File(data) = &m.body else {
            unreachable!("tmpfs: regular file without data")
        };
        let n = data.read(buf, offset)?;
        relatime(&mut m);
        Ok(n)
    }

    fn write(&self, buf: &[u8], offset: u64) -> Result<usize> {
        self.write_at(buf, Some(offset)).map(|(n, _)| n)
    }

    fn append(&self, buf: &[u8]) -> Result<(usize, u64)> {
        self.write_at(buf, None)
    }

    fn stat(&self) -> Result<Stat> {
        self.node.stat()
    }

    /// The modes Linux's tmpfs takes (shmem_fallocate): plain allocation
    /// (None: the caller grows the file), FALLOC_FL_KEEP_SIZE (nothing to
    /// do for sparse pages) and FALLOC_FL_PUNCH_HOLE with it.
    fn allocate(&self, mode: i32, offset: u64, len: u64) -> Option<Result<()>> {
        match mode {
            0 => None,
            libc::FALLOC_FL_KEEP_SIZE => Some(Ok(())),
            m if m == libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE => {
                let mut m = self.node.lock();
                let Body::File(data) = &mut m.body else {
                    unreachable!("tmpfs: regular file without data")
                };
                let r = data.punch_hole(&self.node.fs, offset, len);
                if r.is_ok() {
                    touch(&mut m, TimeSpec::now());
                }
                Some(r)
            }
            _ => Some(Err(Errno::EOPNOTSUPP)),
        }
    }

    fn map_shared(&self, may_write: bool) -> Option<Result<SharedMap>> {
        self.node.fs.memory.as_ref()?;
        let mut m = self.node.lock();
        let Body::File(data) = &mut m.body else {
            unreachable!("tmpfs: regular file without data")
        };
        // A file sealed against writes maps, but never writably (Linux
        // clears VM_MAYWRITE).
        let writable = may_write && data.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE) == 0;
        let writer = writable.then(|| data.writers.clone() as Arc<dyn Any + Send + Sync>);
        // The mapping keeps the file, as a Linux mapping holds its file.
        let node = self.node.clone();
        let size = Arc::new(move || match &node.lock().body {
            Body::File(data) => data.size,
            _ => 0,
        });
        Some(data.share(&self.node.fs).map(|region| SharedMap {
            region,
            writer,
            size,
        }))
    }

    fn iov_io(&self) -> Option<&dyn crate::inode::IovIo> {
        Some(self)
    }

    fn seals(&self) -> Result<u32> {
        match &self.node.lock().body {
            Body::File(data) => Ok(data.seals),
            _ => Err(Errno::EINVAL),
        }
    }

    /// memfd's rules (mm/memfd.c): nothing once F_SEAL_SEAL is set, and
    /// F_SEAL_WRITE not while a shared mapping may still write.
    fn add_seals(&self, seals: u32) -> Result<()> {
        if seals & !ALL_SEALS != 0 {
            return Err(Errno::EINVAL);
        }
        let mut m = self.node.lock();
        let Body::File(data) = &mut m.body else {
            return Err(Errno::EINVAL);
        };
        if data.seals & F_SEAL_SEAL != 0 {
            return Err(Errno::EPERM);
        }
        if seals & F_SEAL_WRITE != 0
            && data.seals & F_SEAL_WRITE == 0
            && Arc::strong_count(&data.writers) > 1
        {
            return Err(Errno::EBUSY);
        }
        data.seals |= seals;
        Ok(())
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

/// Reads copy straight from the file's pages into the caller's memory
/// (one copy instead of two through a bounce buffer); writes gather first.
impl crate::inode::IovIo for RegularFile {
    unsafe fn read_iov(&self, iov: &[libc::iovec], offset: u64) -> Result<usize> {
        let mut m = self.node.lock();
        let Body::File(data) = &m.body else {
            unreachable!("tmpfs: regular file without data")
        };
        // SAFETY: the caller's contract.
        let n = unsafe { data.read_raw(iov, offset) }?;
        relatime(&mut m);
        Ok(n)
    }

    unsafe fn write_iov(&self, iov: &[libc::iovec], offset: u64) -> Result<usize> {
        let mut buf = vec![0u8; iov.iter().map(|v| v.iov_len).sum()];
        let mut at = 0;
        for v in iov {
            // SAFETY: the caller's contract: `v` names `iov_len` readable
            // bytes; `buf` has room for them at `at`.
            unsafe { std::ptr::copy(v.iov_base as *const u8, buf.as_mut_ptr().add(at), v.iov_len) };
            at += v.iov_len;
        }
        self.write_at(&buf, Some(offset)).map(|(n, _)| n)
    }
}

/// Lift the F_SEAL_SEAL every tmpfs file starts with, so seals can be
/// added (memfd_create's MFD_ALLOW_SEALING). False if `ops` is not an
/// open tmpfs regular file.
pub fn allow_sealing(ops: &dyn FileOps) -> bool {
    let Some(file) = ops.as_any().and_then(|a| a.downcast_ref::<RegularFile>()) else {
        return false;
    };
    match &mut file.node.lock().body {
        Body::File(data) => {
            data.seals &= !F_SEAL_SEAL;
            true
        }
        _ => false,
    }
}

/// An open directory: no data; listing goes through the inode.
struct DirFile {
    node: Arc<Node>,
}

impl FileOps for DirFile {
    fn read(&self, _buf: &mut [u8], _offset: u64) -> Result<usize> {
        Err(Errno::EISDIR)
    }

    fn write(&self, _buf: &[u8], _offset: u64) -> Result<usize> {
        Err(Errno::EISDIR)
    }

    fn stat(&self) -> Result<Stat> {
        self.node.stat()
    }
}
