//! A filesystem served by a gofer over lisafs (`--directfs=false`): every
//! node is a control FD on the gofer, and the Sentry asks the gofer for
//! every operation instead of making host calls beneath a donated root.
//!
//! The model is upstream's `pkg/sentry/fsimpl/gofer` with its lisafs
//! client; the notes' §1.9 lists what it sends:
//!
//! * lookups are Walks, whose replies carry each child's stat; when the
//!   path walk has several uncached names ahead it says so
//!   ([`Inode::prefetch`]) and they are walked in one RPC (up to a missing
//!   name or a symlink), the nodes waiting in their parents for the
//!   lookups that follow;
//! * a regular file is opened with OpenAt, and the host FD the gofer
//!   donates with the reply carries the data (read, write, mmap, fsync,
//!   fallocate), as upstream does; without a donated FD, data goes
//!   through PRead/PWrite on the gofer's open FD. Every open of one access
//!   mode shares one such handle, as upstream's dentries share theirs, so
//!   only the first open of a file asks the gofer;
//! * directories are listed with Getdents64 on one open FD per directory;
//! * creating, linking, removing, renaming, attribute and xattr changes
//!   are the matching RPCs.
//!
//! Only messages the Mount reply lists are sent (the client refuses the
//! others with EOPNOTSUPP): Debian's 2022 gofer lacks FListXattr,
//! FRemoveXattr and RenameAt2, so those calls answer EOPNOTSUPP (listxattr,
//! removexattr) or EINVAL (renameat2 with flags, as upstream's client).
//!
//! # Revalidation (upstream's `--file-access`)
//!
//! * [`FileAccess::Exclusive`] (the root's default): the sandbox is the
//!   only writer, so cached dentries and attributes are trusted. Attributes
//!   are fetched once and dropped whenever this filesystem changes the
//!   file (write, truncate, setattr, link, a create or removal in a
//!   directory), so the next stat asks the gofer again.
//! * [`FileAccess::Shared`]: others may change the files. A cached dentry
//!   is checked before each use: WalkStat of its name from its parent (Walk
//!   on servers without WalkStat) must still find the same inode, and
//!   stat always asks the gofer. One RPC per cached name: the check is per
//!   dentry ([`Inode::valid`]); upstream batches a path's checks into one
//!   WalkStat. Under the root overlay (`runsc do`) only lookups reach this
//!   layer (the overlay caches its own nodes and does not ask `valid`), so
//!   shared access matters for mounts of this filesystem without one.
//!
//! Host procfs and sysfs mounts beneath the served tree stay invisible, as
//! in [`crate::hostfs`], and of host device nodes only the memory devices
//! open. Names that are not UTF-8 are left out of directory listings.
//!
//! Every reply is untrusted: a malformed or inconsistent one becomes EIO
//! (the client's decoding), never a panic.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use abi::{Errno, Stat};
use gofer_protocol::message::{
    self as msg, CloseReq, CreateCommon, FAllocateReq, FGetXattrReq, FListXattrReq,
    FRemoveXattrReq, FSetXattrReq, FStatFsReq, FsyncReq, Getdents64Req, LinkAtReq, MkdirAtReq,
    MknodAtReq, OpenAtReq, OpenCreateAtReq, PReadReq, PWriteReq, ReadLinkAtReq, RenameAt2Req,
    RenameAtReq, SetStatReq, StatReq, Statx, SymlinkAtReq, UnlinkAtReq, WalkReq, WalkStatus,
};
use gofer_protocol::{Client, Mid, Request, Response};

use crate::inode::RENAME_EXCHANGE;
use crate::{
    dev, host, DirEntry, FileOps, Inode, NodeKind, Result, SetAttr, StatFs, TimeUpdate, S_IFBLK,
    S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG,
};

const PROC_SUPER_MAGIC: u64 = 0x9fa0;
const SYSFS_MAGIC: u64 = 0x6265_6572;

/// Close requests wait until this many FDIDs are pending (upstream's
/// client batches its closes too).
const CLOSE_BATCH: usize = 32;

/// Getdents64's budget per call, in host dirent bytes.
const DIRENTS_BUDGET: i32 = 64 * 1024;

/// A directory listing longer than this is taken for a server that never
/// ends it (EIO) rather than grown without bound.
const MAX_ENTRIES: usize = 1 << 20;

/// The largest xattr value lisafs can carry (a u16-sized string).
const XATTR_MAX: u32 = u16::MAX as u32;

const UTIME_NOW: i64 = (1 << 30) - 1;
const UTIME_OMIT: i64 = (1 << 30) - 2;

/// How far cached dentries and attributes are trusted (upstream's
/// `--file-access`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileAccess {
    /// Only this sandbox changes the files: trust the caches.
    #[default]
    Exclusive,
    /// Files may change behind the sandbox's back: revalidate.
    Shared,
}

impl FileAccess {
    /// The flag's value (`exclusive` or `shared`).
    pub fn parse(s: &str) -> Option<FileAccess> {
        match s {
            "exclusive" => Some(FileAccess::Exclusive),
            "shared" => Some(FileAccess::Shared),
            _ => None,
        }
    }
}

/// How a gofer-backed mount is made.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Refuse every change locally (EROFS) without asking the gofer.
    pub read_only: bool,
    pub file_access: FileAccess,
    /// Use the root FD the Mount reply donates and make host calls beneath
    /// it ([`crate::hostfs`]) instead of lisafs calls.
    pub directfs: bool,
}

/// Why mounting through a gofer failed.
#[derive(Debug)]
pub enum MountError {
    /// The Mount RPC failed.
    Rpc(gofer_protocol::ClientError),
    /// directfs was asked for but the gofer donated no root FD.
    NoDonatedRoot,
    /// The mount point is unusable (not a directory, a bad reply).
    Root(Errno),
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountError::Rpc(e) => write!(f, "mounting through the gofer: {e}"),
            MountError::NoDonatedRoot => write!(
                f,
                "the gofer did not donate the root FD, which --directfs=true needs \
                 (a gofer without directfs, such as the 2022 release, needs --directfs=false)"
            ),
            MountError::Root(e) => write!(f, "the gofer's mount point: {e}"),
        }
    }
}

impl std::error::Error for MountError {}

/// Mount the gofer's tree through `client` (a fresh connection: Mount is
/// its first RPC). With `directfs` the result is a [`crate::hostfs`] over
/// the donated root FD; otherwise a lisafs-backed filesystem, for which
/// channels are opened as upstream's client does (a failure there only
/// leaves calls on the socket).
pub fn mount(
    client: Arc<Client>,
    opts: Options,
) -> std::result::Result<Arc<dyn Inode>, MountError> {
    let (resp, donated) = client.mount().map_err(MountError::Rpc)?;
    if opts.directfs {
        let fd = donated.ok_or(MountError::NoDonatedRoot)?;
        let exclusive = opts.file_access == FileAccess::Exclusive;
        return crate::hostfs::new_root(fd, opts.read_only, exclusive).map_err(MountError::Root);
    }
    drop(donated);
    match client.open_default_channels() {
        Ok(n) => tracing::debug!("goferfs: {n} channel(s) open"),
        Err(e) => tracing::warn!("goferfs: no channels, calls go over the socket: {e}"),
    }
    new_root(client, resp.root, opts).map_err(MountError::Root)
}

/// The filesystem whose root is the control FD `root` (with its stat) of
/// a connection already mounted.
pub fn new_root(client: Arc<Client>, root: msg::Inode, opts: Options) -> Result<Arc<dyn Inode>> {
    if root.control_fd == 0 {
        return Err(Errno::EIO);
    }
    let fs = Arc::new(Fs {
        client,
        read_only: opts.read_only,
        access: opts.file_access,
        to_close: Mutex::new(Vec::new()),
    });
    let node = GoferNode::new(&fs, root, None);
    if node.kind != S_IFDIR {
        return Err(Errno::ENOTDIR);
    }
    Ok(node)
}

/// An open FD on the gofer and the host FD donated with it, if any.
type OpenFd = (u64, Option<OwnedFd>);

/// What one mount's nodes share; its address tells mounts apart.
struct Fs {
    client: Arc<Client>,
    read_only: bool,
    access: FileAccess,
    /// FDIDs of dropped nodes and files, closed in batches.
    to_close: Mutex<Vec<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fs {
    /// One RPC; a failure becomes the errno the caller sees (the gofer's
    /// own, EOPNOTSUPP for a message it does not support, else EIO).
    fn call(&self, req: Request) -> Result<(Response, Vec<OwnedFd>)> {
        self.client.call(&req).map_err(|e| {
            use gofer_protocol::ClientError::{Remote, Unsupported};
            if !matches!(e, Remote(_) | Unsupported(_)) {
                tracing::warn!("goferfs: {:?}: {e}", req.mid());
            }
            e.errno()
        })
    }

    /// Whether the Mount reply listed `mid` (to choose between
    /// alternatives; the client refuses unlisted messages anyway).
    fn client_supports(&self, mid: Mid) -> bool {
        self.client.supports(mid)
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// Queue `fd` for Close, sending the batch once it is full.
    fn close_later(&self, fd: u64) {
        let batch = {
            let mut q = lock(&self.to_close);
            q.push(fd);
            if q.len() < CLOSE_BATCH {
                return;
            }
            std::mem::take(&mut *q)
        };
        if let Err(e) = self.client.call(&Request::Close(CloseReq { fds: batch })) {
            tracing::debug!("goferfs: Close: {e}");
        }
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        let fds = std::mem::take(&mut *lock(&self.to_close));
        if !fds.is_empty() {
            let _ = self.client.call(&Request::Close(CloseReq { fds }));
        }
    }
}

/// A lisafs Statx as the `stat` the VFS reports.
fn to_stat(x: &Statx) -> Stat {
    Stat {
        dev: libc::makedev(x.dev_major, x.dev_minor),
        ino: x.ino,
        nlink: u64::from(x.nlink),
        mode: u32::from(x.mode),
        uid: x.uid,
        gid: x.gid,
        rdev: libc::makedev(x.rdev_major, x.rdev_minor),
        size: x.size as i64,
        blksize: i64::from(x.blksize),
        blocks: x.blocks as i64,
        atime_sec: x.atime.sec,
        atime_nsec: i64::from(x.atime.nsec),
        mtime_sec: x.mtime.sec,
        mtime_nsec: i64::from(x.mtime.nsec),
        ctime_sec: x.ctime.sec,
        ctime_nsec: i64::from(x.ctime.nsec),
        ..Stat::default()
    }
}

/// Where a node sits: its parent and its name there. The parent is weak:
/// it may hold this node (a prefetched child), and the VFS's dentries keep
/// parents alive while their children are in use.
#[derive(Clone)]
struct Loc {
    parent: Weak<GoferNode>,
    name: String,
}

struct GoferNode {
    fs: Arc<Fs>,
    me: Weak<GoferNode>,
    /// The control FD on the gofer (closed when the node goes).
    fd: u64,
    dev: u64,
    ino: u64,
    /// `S_IFMT` bits (a node never changes type).
    kind: u32,
    rdev: u64,
    /// Cached attributes (exclusive access); None: ask the gofer.
    attr: Mutex<Option<Stat>>,
    /// `None` for the root and once the name was removed.
    loc: Mutex<Option<Loc>>,
    /// The name was removed: a cached dentry for it is stale.
    deleted: std::sync::atomic::AtomicBool,
    /// Live children by name, so lookups reuse them and removals and
    /// renames can tell them.
    children: Mutex<HashMap<String, Weak<GoferNode>>>,
    /// The child a prefetch walked to, for the lookup that comes next.
    prefetched: Mutex<Option<(String, Arc<GoferNode>)>>,
    /// A symlink's target, read once (it cannot change).
    target: Mutex<Option<String>>,
    /// A directory's open FD for Getdents64; the lock keeps one listing
    /// at a time on it.
    dir_fd: Mutex<Option<u64>>,
    /// A regular file's open handles by access mode (O_RDONLY, O_WRONLY,
    /// O_RDWR), shared by every open of that mode as upstream's dentries
    /// share theirs: only the first open of each mode asks the gofer.
    handles: Mutex<[Option<Arc<Handle>>; 3]>,
}

impl Drop for GoferNode {
    fn drop(&mut self) {
        if let Some(fd) = lock(&self.dir_fd).take() {
            self.fs.close_later(fd);
        }
        self.fs.close_later(self.fd);
    }
}

impl GoferNode {
    fn new(fs: &Arc<Fs>, inode: msg::Inode, loc: Option<Loc>) -> Arc<GoferNode> {
        let st = to_stat(&inode.stat);
        let attr = (fs.access == FileAccess::Exclusive).then_some(st);
        Arc::new_cyclic(|me| GoferNode {
            fs: fs.clone(),
            me: me.clone(),
            fd: inode.control_fd,
            dev: st.dev,
            ino: st.ino,
            kind: st.mode & S_IFMT,
            rdev: st.rdev,
            attr: Mutex::new(attr),
            loc: Mutex::new(loc),
            deleted: std::sync::atomic::AtomicBool::new(false),
            children: Mutex::new(HashMap::new()),
            prefetched: Mutex::new(None),
            target: Mutex::new(None),
            dir_fd: Mutex::new(None),
            handles: Mutex::new([None, None, None]),
        })
    }

    fn this(&self) -> Arc<GoferNode> {
        self.me.upgrade().expect("a node in use is alive")
    }

    fn dir(&self) -> Result<()> {
        if self.kind == S_IFDIR {
            Ok(())
        } else {
            Err(Errno::ENOTDIR)
        }
    }

    /// The attributes changed (or may have): the next stat asks.
    fn touched(&self) {
        *lock(&self.attr) = None;
    }

    fn fresh_stat(&self) -> Result<Stat> {
        match self.fs.call(Request::FStat(StatReq { fd: self.fd }))? {
            (Response::FStat(x), _) => Ok(to_stat(&x)),
            _ => Err(Errno::EIO),
        }
    }

    /// A node for `inode`, just returned for `name` beneath this
    /// directory: the cached one if it is the same file (the new control
    /// FD is then closed), else a new one.
    fn adopt(&self, name: &str, inode: msg::Inode) -> Result<Arc<GoferNode>> {
        if inode.control_fd == 0 {
            return Err(Errno::EIO);
        }
        let dev = libc::makedev(inode.stat.dev_major, inode.stat.dev_minor);
        let mut children = lock(&self.children);
        if let Some(known) = children.get(name).and_then(Weak::upgrade) {
            if known.dev == dev && known.ino == inode.stat.ino {
                drop(children);
                self.fs.close_later(inode.control_fd);
                if self.fs.access == FileAccess::Exclusive {
                    *lock(&known.attr) = Some(to_stat(&inode.stat));
                }
                return Ok(known);
            }
        }
        let node = GoferNode::new(
            &self.fs,
            inode,
            Some(Loc {
                parent: self.me.clone(),
                name: name.to_string(),
            }),
        );
        if children.len() >= 64 {
            children.retain(|_, w| w.strong_count() > 0);
        }
        children.insert(name.to_string(), Arc::downgrade(&node));
        Ok(node)
    }

    fn take_child(&self, name: &str) -> Option<Arc<GoferNode>> {
        lock(&self.children).remove(name).and_then(|w| w.upgrade())
    }

    /// The child `name` was removed or replaced.
    fn forget_child(&self, name: &str) {
        if let Some(node) = self.take_child(name) {
            node.deleted
                .store(true, std::sync::atomic::Ordering::Relaxed);
            *lock(&node.loc) = None;
        }
    }

    fn put_child(&self, name: &str, node: &Arc<GoferNode>) {
        *lock(&node.loc) = Some(Loc {
            parent: self.me.clone(),
            name: name.to_string(),
        });
        lock(&self.children).insert(name.to_string(), Arc::downgrade(node));
    }

    /// Whether the mount point `node` (a child on another device) is a host
    /// procfs or sysfs, which the sandbox must not see.
    fn hidden(&self, node: &GoferNode) -> bool {
        if node.dev == self.dev || node.kind != S_IFDIR {
            return false;
        }
        match self.fs.call(Request::FStatFS(FStatFsReq { fd: node.fd })) {
            Ok((Response::FStatFS(s), _)) => matches!(s.fs_type, PROC_SUPER_MAGIC | SYSFS_MAGIC),
            _ => false,
        }
    }

    /// Walk one name; None when it does not exist.
    fn walk(&self, name: &str) -> Result<Option<msg::Inode>> {
        let req = Request::Walk(WalkReq {
            dir_fd: self.fd,
            path: vec![name.as_bytes().to_vec()],
        });
        let (Response::Walk(w), _) = self.fs.call(req)? else {
            return Err(Errno::EIO);
        };
        let inode = match (w.status, &w.inodes[..]) {
            (WalkStatus::ComponentDoesNotExist, []) => return Ok(None),
            (WalkStatus::Success | WalkStatus::ComponentIsSymlink, [one]) => *one,
            _ => {
                // Not what a one-name walk can answer: drop what it made.
                for i in &w.inodes {
                    self.fs.close_later(i.control_fd);
                }
                tracing::warn!(
                    "goferfs: a walk of one name answered {:?} with {} inodes",
                    w.status,
                    w.inodes.len()
                );
                return Err(Errno::EIO);
            }
        };
        Ok(Some(inode))
    }

    /// Shared access: whether `name` in `parent` still is this node,
    /// refreshing nothing else.
    fn still_named(&self, loc: &Loc) -> bool {
        let Some(parent) = loc.parent.upgrade() else {
            return false;
        };
        let stat = if self.fs.client_supports(Mid::WalkStat) {
            let req = Request::WalkStat(WalkReq {
                dir_fd: parent.fd,
                path: vec![loc.name.as_bytes().to_vec()],
            });
            match self.fs.call(req) {
                Ok((Response::WalkStat(w), _)) if w.stats.len() == 1 => w.stats[0],
                _ => return false,
            }
        } else {
            match parent.walk(&loc.name) {
                Ok(Some(i)) => {
                    self.fs.close_later(i.control_fd);
                    i.stat
                }
                _ => return false,
            }
        };
        stat.ino == self.ino && libc::makedev(stat.dev_major, stat.dev_minor) == self.dev
    }

    fn downcast<'a>(&self, other: &'a Arc<dyn Inode>) -> Result<&'a GoferNode> {
        other
            .as_any()
            .downcast_ref::<GoferNode>()
            .filter(|n| Arc::ptr_eq(&n.fs, &self.fs))
            .ok_or(Errno::EXDEV)
    }

    fn open_device(&self, flags: i32) -> Result<Arc<dyn FileOps>> {
        if self.kind == S_IFCHR {
            if let Ok(file) = dev::open_memory_device(self.rdev, flags) {
                return Ok(file);
            }
        }
        tracing::info!(
            "goferfs: host device {}:{} is not exposed to the sandbox",
            libc::major(self.rdev),
            libc::minor(self.rdev)
        );
        Err(Errno::EACCES)
    }

    /// OpenAt with the flags the gofer honours.
    fn open_at(&self, flags: i32) -> Result<OpenFd> {
        let flags = flags as u32 & msg::OPEN_ALLOWED_FLAGS;
        let req = Request::OpenAt(OpenAtReq {
            fd: self.fd,
            flags,
            pad: 0,
        });
        let (Response::OpenAt(o), mut fds) = self.fs.call(req)? else {
            return Err(Errno::EIO);
        };
        if o.open_fd == 0 {
            return Err(Errno::EIO);
        }
        Ok((o.open_fd, fds.pop()))
    }

    fn create_common(&self, mode: u32, owner: (u32, u32)) -> CreateCommon {
        CreateCommon {
            dir_fd: self.fd,
            uid: owner.0,
            gid: owner.1,
            mode: mode as u16,
        }
    }

    fn getdents(&self, fd: u64, count: i32) -> Result<Vec<msg::Dirent64>> {
        let req = Request::Getdents64(Getdents64Req {
            dir_fd: fd,
            count,
            pad: 0,
        });
        match self.fs.call(req)? {
            (Response::Getdents64(g), _) => Ok(g.dirents),
            _ => Err(Errno::EIO),
        }
    }

    /// Whether the entry `name` (a directory on another device) is a host
    /// procfs or sysfs mount.
    fn hidden_entry(&self, name: &str) -> bool {
        match self.walk(name) {
            Ok(Some(inode)) => {
                let fd = inode.control_fd;
                let hidden = matches!(
                    self.fs.call(Request::FStatFS(FStatFsReq { fd })),
                    Ok((Response::FStatFS(s), _)) if matches!(s.fs_type, PROC_SUPER_MAGIC | SYSFS_MAGIC)
                );
                self.fs.close_later(fd);
                hidden
            }
            _ => false,
        }
    }
}

fn setstat_time(t: Option<TimeUpdate>) -> msg::Timespec {
    match t {
        None => msg::Timespec {
            sec: 0,
            nsec: UTIME_OMIT,
        },
        Some(TimeUpdate::Now) => msg::Timespec {
            sec: 0,
            nsec: UTIME_NOW,
        },
        Some(TimeUpdate::At(t)) => msg::Timespec {
            sec: t.sec,
            nsec: t.nsec,
        },
    }
}

impl Inode for GoferNode {
    fn stat(&self) -> Result<Stat> {
        if let Some(st) = *lock(&self.attr) {
            return Ok(st);
        }
        let st = self.fresh_stat()?;
        if self.fs.access == FileAccess::Exclusive {
            *lock(&self.attr) = Some(st);
        }
        Ok(st)
    }

    fn statfs(&self) -> Result<StatFs> {
        let (Response::FStatFS(s), _) =
            self.fs.call(Request::FStatFS(FStatFsReq { fd: self.fd }))?
        else {
            return Err(Errno::EIO);
        };
        Ok(StatFs {
            fs_type: s.fs_type as i64,
            bsize: s.block_size,
            blocks: s.blocks,
            bfree: s.blocks_free,
            bavail: s.blocks_available,
            files: s.files,
            ffree: s.files_free,
            fsid: [0, 0],
            namelen: s.name_length as i64,
            frsize: s.block_size,
            flags: 0,
        })
    }

    fn setattr(&self, attr: &SetAttr) -> Result<()> {
        use msg::setstat_mask as m;
        self.fs.writable()?;
        if attr.size.is_some() {
            match self.kind {
                S_IFDIR => return Err(Errno::EISDIR),
                S_IFREG => {}
                _ => return Err(Errno::EINVAL),
            }
        }
        if attr.mode.is_some() && self.kind == S_IFLNK {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut mask = 0;
        let mut req = SetStatReq {
            fd: self.fd,
            uid: msg::NO_UID,
            gid: msg::NO_GID,
            ..SetStatReq::default()
        };
        if let Some(mode) = attr.mode {
            mask |= m::MODE;
            req.mode = mode & 0o7777;
        }
        if let Some(uid) = attr.uid {
            mask |= m::UID;
            req.uid = uid;
        }
        if let Some(gid) = attr.gid {
            mask |= m::GID;
            req.gid = gid;
        }
        if let Some(size) = attr.size {
            mask |= m::SIZE;
            req.size = size;
        }
        if attr.atime.is_some() {
            mask |= m::ATIME;
        }
        if attr.mtime.is_some() {
            mask |= m::MTIME;
        }
        req.atime = setstat_time(attr.atime);
        req.mtime = setstat_time(attr.mtime);
        req.mask = mask;
        if mask == 0 {
            return Ok(());
        }
        let result = self.fs.call(Request::SetStat(req));
        self.touched();
        let (Response::SetStat(r), _) = result? else {
            return Err(Errno::EIO);
        };
        if r.failure_mask != 0 {
            let e = i32::try_from(r.failure_errno)
                .ok()
                .and_then(Errno::new)
                .unwrap_or(Errno::EIO);
            return Err(e);
        }
        Ok(())
    }

    fn lookup(&self, name: &str) -> Result<Arc<dyn Inode>> {
        self.dir()?;
        let ahead = lock(&self.prefetched).take();
        let node = match ahead {
            Some((n, node)) if n == name => node,
            _ => {
                let inode = self.walk(name)?.ok_or(Errno::ENOENT)?;
                self.adopt(name, inode)?
            }
        };
        if self.hidden(&node) {
            return Err(Errno::ENOENT);
        }
        Ok(node)
    }

    fn create(
        &self,
        name: &str,
        kind: NodeKind,
        mode: u32,
        owner: (u32, u32),
    ) -> Result<Arc<dyn Inode>> {
        self.dir()?;
        self.fs.writable()?;
        let perm = mode & 0o7777;
        let (inode, spare) = match &kind {
            NodeKind::Regular => {
                let req = Request::OpenCreateAt(OpenCreateAtReq {
                    common: self.create_common(perm, owner),
                    flags: libc::O_RDWR as u32,
                    name: name.as_bytes().to_vec(),
                });
                let (Response::OpenCreateAt(r), mut fds) = self.fs.call(req)? else {
                    return Err(Errno::EIO);
                };
                (r.child, (r.new_fd != 0).then(|| (r.new_fd, fds.pop())))
            }
            NodeKind::Directory => {
                let req = Request::MkdirAt(MkdirAtReq {
                    common: self.create_common(perm, owner),
                    name: name.as_bytes().to_vec(),
                });
                let (Response::MkdirAt(i), _) = self.fs.call(req)? else {
                    return Err(Errno::EIO);
                };
                (i, None)
            }
            NodeKind::Symlink(target) => {
                let req = Request::SymlinkAt(SymlinkAtReq {
                    dir_fd: self.fd,
                    uid: owner.0,
                    gid: owner.1,
                    name: name.as_bytes().to_vec(),
                    target: target.as_bytes().to_vec(),
                });
                let (Response::SymlinkAt(i), _) = self.fs.call(req)? else {
                    return Err(Errno::EIO);
                };
                (i, None)
            }
            NodeKind::CharDevice(rdev) | NodeKind::BlockDevice(rdev) => {
                self.mknod(name, kind.type_bits() | perm, *rdev, owner)?
            }
            NodeKind::Fifo | NodeKind::Socket => {
                self.mknod(name, kind.type_bits() | perm, 0, owner)?
            }
        };
        self.touched();
        let node = match self.adopt(name, inode) {
            Ok(n) => n,
            Err(e) => {
                if let Some((fd, host)) = spare {
                    drop(host);
                    self.fs.close_later(fd);
                }
                return Err(e);
            }
        };
        if let Some((fd, host)) = spare {
            // Made O_RDWR: the first read-write open takes it.
            let handle = Arc::new(Handle {
                fs: self.fs.clone(),
                fd,
                host,
            });
            lock(&node.handles)[libc::O_RDWR as usize] = Some(handle);
        }
        Ok(node)
    }

    fn link(&self, name: &str, target: &Arc<dyn Inode>) -> Result<()> {
        self.dir()?;
        self.fs.writable()?;
        let target = self.downcast(target)?;
        if target.kind == S_IFDIR {
            return Err(Errno::EPERM);
        }
        let req = Request::LinkAt(LinkAtReq {
            dir_fd: self.fd,
            target: target.fd,
            name: name.as_bytes().to_vec(),
        });
        let (Response::LinkAt(inode), _) = self.fs.call(req)? else {
            return Err(Errno::EIO);
        };
        self.touched();
        target.touched();
        self.adopt(name, inode).map(drop)
    }

    fn unlink(&self, name: &str) -> Result<()> {
        self.unlink_at(name, 0)
    }

    fn rmdir(&self, name: &str) -> Result<()> {
        self.unlink_at(name, libc::AT_REMOVEDIR as u32)
    }

    fn rename(&self, old: &str, new_dir: &Arc<dyn Inode>, new: &str, flags: u32) -> Result<()> {
        self.dir()?;
        let to = self.downcast(new_dir)?;
        to.dir()?;
        self.fs.writable()?;
        let req = if flags == 0 {
            Request::RenameAt(RenameAtReq {
                old_dir: self.fd,
                new_dir: to.fd,
                old_name: old.as_bytes().to_vec(),
                new_name: new.as_bytes().to_vec(),
            })
        } else if self.fs.client_supports(Mid::RenameAt2) {
            Request::RenameAt2(RenameAt2Req {
                old_dir: self.fd,
                new_dir: to.fd,
                old_name: old.as_bytes().to_vec(),
                new_name: new.as_bytes().to_vec(),
                flags,
            })
        } else {
            // As upstream's client: flags need RenameAt2.
            return Err(Errno::EINVAL);
        };
        self.fs.call(req)?;
        self.touched();
        to.touched();
        let moved = self.take_child(old);
        let displaced = to.take_child(new);
        if let Some(node) = &moved {
            to.put_child(new, node);
        }
        if let Some(node) = displaced {
            if flags & RENAME_EXCHANGE != 0 {
                self.put_child(old, &node);
            } else {
                node.deleted
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                *lock(&node.loc) = None;
            }
        }
        Ok(())
    }

    fn read_dir(&self) -> Result<Vec<DirEntry>> {
        self.dir()?;
        // Taken out of the slot for the listing (a concurrent listing opens
        // its own), so no lock is held across the RPCs.
        let cached = lock(&self.dir_fd).take();
        let fd = match cached {
            Some(fd) => fd,
            None => self.open_at(libc::O_RDONLY)?.0,
        };
        let out = self.list(fd);
        match &out {
            Ok(_) => {
                let old = lock(&self.dir_fd).replace(fd);
                if let Some(old) = old {
                    self.fs.close_later(old);
                }
            }
            // The open FD may be what failed: open another next time.
            Err(_) => self.fs.close_later(fd),
        }
        if self.fs.access == FileAccess::Exclusive {
            // Listing updates the directory's atime on the host.
            self.touched();
        }
        out
    }

    fn readlink(&self) -> Result<String> {
        if self.kind != S_IFLNK {
            return Err(Errno::EINVAL);
        }
        let exclusive = self.fs.access == FileAccess::Exclusive;
        if exclusive {
            if let Some(t) = lock(&self.target).clone() {
                return Ok(t);
            }
        }
        let (Response::ReadLinkAt(r), _) = self
            .fs
            .call(Request::ReadLinkAt(ReadLinkAtReq { fd: self.fd }))?
        else {
            return Err(Errno::EIO);
        };
        let target = String::from_utf8_lossy(&r.target).into_owned();
        if exclusive {
            *lock(&self.target) = Some(target.clone());
        }
        Ok(target)
    }

    fn open(&self, flags: i32) -> Result<Arc<dyn FileOps>> {
        let acc = flags & libc::O_ACCMODE;
        let wants_write = acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        match self.kind {
            S_IFDIR => {
                if acc != libc::O_RDONLY {
                    return Err(Errno::EISDIR);
                }
                Ok(Arc::new(GoferDir))
            }
            S_IFREG => {
                if wants_write {
                    self.fs.writable()?;
                }
                let handle = self.handle(flags)?;
                Ok(Arc::new(GoferFile {
                    node: self.this(),
                    handle,
                }))
            }
            S_IFCHR | S_IFBLK => self.open_device(flags),
            S_IFLNK => Err(Errno::ELOOP),
            _ => {
                tracing::info!("goferfs: host FIFOs and sockets are not exposed to the sandbox");
                Err(Errno::EACCES)
            }
        }
    }

    fn getxattr(&self, name: &str) -> Result<Vec<u8>> {
        let req = Request::FGetXattr(FGetXattrReq {
            fd: self.fd,
            buf_size: XATTR_MAX,
            name: name.as_bytes().to_vec(),
        });
        match self.fs.call(req)? {
            (Response::FGetXattr(r), _) => Ok(r.value),
            _ => Err(Errno::EIO),
        }
    }

    fn setxattr(&self, name: &str, value: &[u8], flags: i32) -> Result<()> {
        self.fs.writable()?;
        if value.len() > XATTR_MAX as usize {
            // lisafs cannot carry it.
            return Err(Errno::E2BIG);
        }
        let req = Request::FSetXattr(FSetXattrReq {
            fd: self.fd,
            flags: flags as u32,
            name: name.as_bytes().to_vec(),
            value: value.to_vec(),
        });
        self.fs.call(req)?;
        self.touched();
        Ok(())
    }

    fn listxattr(&self) -> Result<Vec<String>> {
        let req = Request::FListXattr(FListXattrReq {
            fd: self.fd,
            size: u64::from(XATTR_MAX),
        });
        match self.fs.call(req)? {
            (Response::FListXattr(r), _) => Ok(r
                .names
                .into_iter()
                .map(|n| String::from_utf8_lossy(&n).into_owned())
                .collect()),
            _ => Err(Errno::EIO),
        }
    }

    fn removexattr(&self, name: &str) -> Result<()> {
        self.fs.writable()?;
        let req = Request::FRemoveXattr(FRemoveXattrReq {
            fd: self.fd,
            name: name.as_bytes().to_vec(),
        });
        self.fs.call(req)?;
        self.touched();
        Ok(())
    }

    /// One Walk for every name ahead (upstream's client walks several
    /// components per RPC too); each node it returns waits in its parent
    /// for the lookup that follows. The walk stops at a missing name or a
    /// symlink, and lookups past that point go one by one.
    fn prefetch(&self, names: &[&str]) {
        if self.kind != S_IFDIR || names.len() < 2 {
            return;
        }
        // Already walked by an earlier prefetch of this walk.
        if lock(&self.prefetched)
            .as_ref()
            .is_some_and(|(n, _)| n == names[0])
        {
            return;
        }
        let req = Request::Walk(WalkReq {
            dir_fd: self.fd,
            path: names.iter().map(|n| n.as_bytes().to_vec()).collect(),
        });
        let Ok((Response::Walk(w), _)) = self.fs.call(req) else {
            return;
        };
        if w.inodes.len() > names.len() {
            for i in &w.inodes {
                self.fs.close_later(i.control_fd);
            }
            return;
        }
        let mut parent = self.this();
        let mut inodes = w.inodes.into_iter();
        for (name, inode) in names.iter().zip(inodes.by_ref()) {
            let Ok(node) = parent.adopt(name, inode) else {
                break;
            };
            let old = lock(&parent.prefetched).replace((name.to_string(), node.clone()));
            drop(old);
            if node.kind != S_IFDIR {
                break;
            }
            parent = node;
        }
        // Inodes past a failure are not wanted.
        for i in inodes {
            self.fs.close_later(i.control_fd);
        }
    }

    fn valid(&self) -> bool {
        if self.deleted.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        if self.fs.access == FileAccess::Exclusive {
            return true;
        }
        let Some(loc) = lock(&self.loc).clone() else {
            // The root is always itself.
            return true;
        };
        self.still_named(&loc)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl GoferNode {
    fn mknod(
        &self,
        name: &str,
        mode: u32,
        rdev: u64,
        owner: (u32, u32),
    ) -> Result<(msg::Inode, Option<OpenFd>)> {
        let req = Request::MknodAt(MknodAtReq {
            common: self.create_common(mode, owner),
            minor: libc::minor(rdev),
            major: libc::major(rdev),
            name: name.as_bytes().to_vec(),
        });
        match self.fs.call(req)? {
            (Response::MknodAt(i), _) => Ok((i, None)),
            _ => Err(Errno::EIO),
        }
    }

    /// The shared handle for `flags`' access mode, opened on first use.
    /// O_TRUNC always asks the gofer (which truncates); the handle it
    /// returns is then the one shared.
    fn handle(&self, flags: i32) -> Result<Arc<Handle>> {
        let acc = (flags & libc::O_ACCMODE) as usize;
        if acc > 2 {
            return Err(Errno::EINVAL);
        }
        let trunc = flags & libc::O_TRUNC != 0;
        let mut handles = lock(&self.handles);
        if !trunc {
            if let Some(h) = &handles[acc] {
                return Ok(h.clone());
            }
        }
        let (fd, host) = self.open_at(flags)?;
        let handle = Arc::new(Handle {
            fs: self.fs.clone(),
            fd,
            host,
        });
        handles[acc] = Some(handle.clone());
        drop(handles);
        if trunc {
            self.touched();
        }
        Ok(handle)
    }

    /// Every entry of the directory open as `fd`, from the start.
    fn list(&self, fd: u64) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        // A negative budget rewinds first (a fresh listing each time).
        let mut count = -DIRENTS_BUDGET;
        loop {
            let dirents = self.getdents(fd, count)?;
            if dirents.is_empty() {
                break;
            }
            count = DIRENTS_BUDGET;
            if out.len() + dirents.len() > MAX_ENTRIES {
                tracing::warn!("goferfs: a directory listing exceeds {MAX_ENTRIES} entries");
                return Err(Errno::EIO);
            }
            for d in dirents {
                if d.name == b"." || d.name == b".." || d.name.is_empty() {
                    continue;
                }
                let Ok(name) = String::from_utf8(d.name) else {
                    tracing::debug!("goferfs: skipping a name that is not UTF-8");
                    continue;
                };
                if name.contains('/') {
                    return Err(Errno::EIO);
                }
                const DT_DIR: u8 = 4;
                let dev = libc::makedev(d.dev_major, d.dev_minor);
                if d.typ == DT_DIR && dev != self.dev && self.hidden_entry(&name) {
                    continue;
                }
                out.push(DirEntry {
                    ino: d.ino,
                    kind: d.typ,
                    name,
                });
            }
        }
        Ok(out)
    }

    fn unlink_at(&self, name: &str, flags: u32) -> Result<()> {
        self.dir()?;
        self.fs.writable()?;
        let req = Request::UnlinkAt(UnlinkAtReq {
            dir_fd: self.fd,
            flags,
            name: name.as_bytes().to_vec(),
        });
        self.fs.call(req)?;
        self.touched();
        let child = lock(&self.children).get(name).and_then(Weak::upgrade);
        if let Some(node) = child {
            // One link fewer (or gone).
            node.touched();
        }
        self.forget_child(name);
        Ok(())
    }
}

/// An opened directory: the listing is the inode's (`read_dir`).
struct GoferDir;

impl FileOps for GoferDir {
    fn read(&self, _buf: &mut [u8], _offset: u64) -> Result<usize> {
        Err(Errno::EISDIR)
    }

    fn write(&self, _buf: &[u8], _offset: u64) -> Result<usize> {
        Err(Errno::EBADF)
    }
}

/// An open FD on the gofer and the host FD it donated with it (data goes
/// there when present).
struct Handle {
    fs: Arc<Fs>,
    fd: u64,
    host: Option<OwnedFd>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.fs.close_later(self.fd);
    }
}

/// An opened regular file: its node and its access mode's handle.
struct GoferFile {
    node: Arc<GoferNode>,
    handle: Arc<Handle>,
}

impl GoferFile {
    fn fs(&self) -> &Fs {
        &self.node.fs
    }

    /// The size the gofer reports for the open file.
    fn size(&self) -> Result<u64> {
        if let Some(h) = &self.handle.host {
            return Ok(host::fstat(h.as_fd())?.size as u64);
        }
        match self
            .fs()
            .call(Request::FStat(StatReq { fd: self.handle.fd }))?
        {
            (Response::FStat(x), _) => Ok(x.size),
            _ => Err(Errno::EIO),
        }
    }

    fn pread_rpc(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        // The reply holds 8 bytes of length before the data.
        let chunk = (self.fs().client.max_message_size() as usize)
            .saturating_sub(8)
            .max(1);
        let mut done = 0;
        while done < buf.len() {
            let want = (buf.len() - done).min(chunk);
            let req = Request::PRead(PReadReq {
                offset: offset + done as u64,
                fd: self.handle.fd,
                count: want as u32,
                pad: 0,
            });
            let (Response::PRead(r), _) = self.fs().call(req)? else {
                return Err(Errno::EIO);
            };
            if r.data.len() > want {
                tracing::warn!("goferfs: PRead returned more than asked");
                return Err(Errno::EIO);
            }
            buf[done..done + r.data.len()].copy_from_slice(&r.data);
            done += r.data.len();
            if r.data.len() < want {
                break;
            }
        }
        Ok(done)
    }

    fn pwrite_rpc(&self, buf: &[u8], offset: u64) -> Result<usize> {
        // The request holds 20 bytes of offset, FD and length first.
        let chunk = (self.fs().client.max_message_size() as usize)
            .saturating_sub(20)
            .max(1);
        let mut done = 0;
        while done < buf.len() {
            let want = (buf.len() - done).min(chunk);
            let req = Request::PWrite(PWriteReq {
                offset: offset + done as u64,
                fd: self.handle.fd,
                data: buf[done..done + want].to_vec(),
            });
            let (Response::PWrite(r), _) = self.fs().call(req)? else {
                return Err(Errno::EIO);
            };
            let n = usize::try_from(r.count).map_err(|_| Errno::EIO)?;
            if n > want {
                tracing::warn!("goferfs: PWrite claims more than was sent");
                return Err(Errno::EIO);
            }
            done += n;
            if n < want {
                break;
            }
        }
        Ok(done)
    }
}

impl FileOps for GoferFile {
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        match &self.handle.host {
            Some(h) => host::read(h.as_fd(), buf, Some(offset)),
            None => self.pread_rpc(buf, offset),
        }
    }

    fn write(&self, buf: &[u8], offset: u64) -> Result<usize> {
        let r = match &self.handle.host {
            Some(h) => host::write(h.as_fd(), buf, Some(offset)),
            None => self.pwrite_rpc(buf, offset),
        };
        self.node.touched();
        r
    }

    fn append(&self, buf: &[u8]) -> Result<(usize, u64)> {
        // The gofer opens without O_APPEND (it honours only the access
        // mode and O_TRUNC): the sandbox is the writer, so end-then-write.
        let end = self.size()?;
        let n = self.write(buf, end)?;
        Ok((n, end + n as u64))
    }

    fn sync(&self) -> Result<()> {
        match &self.handle.host {
            Some(h) => host::fsync(h.as_fd()),
            None => self
                .fs()
                .call(Request::FSync(FsyncReq {
                    fds: vec![self.handle.fd],
                }))
                .map(drop),
        }
    }

    fn allocate(&self, mode: i32, offset: u64, len: u64) -> Option<Result<()>> {
        let r = match &self.handle.host {
            Some(h) => host::fallocate(h.as_fd(), mode, offset, len),
            None => self
                .fs()
                .call(Request::FAllocate(FAllocateReq {
                    fd: self.handle.fd,
                    mode: mode as u64,
                    offset,
                    length: len,
                }))
                .map(drop),
        };
        self.node.touched();
        Some(r)
    }

    fn host_fd(&self) -> Option<BorrowedFd<'_>> {
        self.handle.host.as_ref().map(|h| h.as_fd())
    }
}
