//! What a filesystem implements: [`Inode`] for nodes and [`FileOps`] for
//! opened nodes. The VFS has already checked permissions, resolved the
//! path and refused `.`/`..`, read-only mounts and names longer than
//! NAME_MAX before any of these methods runs.

use std::any::Any;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use abi::{Errno, Stat};

use crate::Result;

/// Capability numbers the VFS consults (`include/uapi/linux/capability.h`).
pub const CAP_CHOWN: u32 = 0;
pub const CAP_DAC_OVERRIDE: u32 = 1;
pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_FOWNER: u32 = 3;
pub const CAP_FSETID: u32 = 4;
pub const CAP_SYS_CHROOT: u32 = 18;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_MKNOD: u32 = 27;

/// Who performs an operation: the filesystem ids, supplementary groups and
/// effective capabilities of the calling task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// Effective capability set, one bit per capability number.
    pub caps: u64,
}

impl Creds {
    /// Root with every capability.
    pub fn root() -> Creds {
        Creds {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            caps: u64::MAX,
        }
    }

    pub fn has_cap(&self, cap: u32) -> bool {
        self.caps & (1 << cap) != 0
    }

    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// What kind of node `create` makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Regular,
    Directory,
    Symlink(String),
    CharDevice(u64),
    BlockDevice(u64),
    Fifo,
    Socket,
}

impl NodeKind {
    /// The `S_IF*` bits of this kind.
    pub fn type_bits(&self) -> u32 {
        match self {
            NodeKind::Regular => crate::S_IFREG,
            NodeKind::Directory => crate::S_IFDIR,
            NodeKind::Symlink(_) => crate::S_IFLNK,
            NodeKind::CharDevice(_) => crate::S_IFCHR,
            NodeKind::BlockDevice(_) => crate::S_IFBLK,
            NodeKind::Fifo => crate::S_IFIFO,
            NodeKind::Socket => crate::S_IFSOCK,
        }
    }
}

/// `d_type` of a mode's type bits (`DT_*`).
pub fn dirent_type(mode: u32) -> u8 {
    ((mode & crate::S_IFMT) >> 12) as u8
}

/// One directory entry as `read_dir` lists it (never `.` or `..`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    /// `DT_*` value.
    pub kind: u8,
    pub name: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeSpec {
    pub sec: i64,
    pub nsec: i64,
}

impl TimeSpec {
    pub fn now() -> TimeSpec {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        TimeSpec {
            sec: d.as_secs() as i64,
            nsec: i64::from(d.subsec_nanos()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUpdate {
    Now,
    At(TimeSpec),
}

impl TimeUpdate {
    pub fn resolve(self) -> TimeSpec {
        match self {
            TimeUpdate::Now => TimeSpec::now(),
            TimeUpdate::At(t) => t,
        }
    }
}

/// Attribute changes (`chmod`, `chown`, `truncate`, `utimensat`); `None`
/// leaves a field alone. `mode` holds permission bits only (07777).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeUpdate>,
    pub mtime: Option<TimeUpdate>,
}

/// `struct statfs` fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFs {
    pub fs_type: i64,
    pub bsize: i64,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub fsid: [i32; 2],
    pub namelen: i64,
    pub frsize: i64,
    pub flags: i64,
}

impl StatFs {
    /// The 120-byte x86-64 `struct statfs`.
    pub fn to_bytes(&self) -> [u8; 120] {
        let fsid = (self.fsid[0] as u32 as u64) | ((self.fsid[1] as u32 as u64) << 32);
        let words: [u64; 15] = [
            self.fs_type as u64,
            self.bsize as u64,
            self.blocks,
            self.bfree,
            self.bavail,
            self.files,
            self.ffree,
            fsid,
            self.namelen as u64,
            self.frsize as u64,
            self.flags as u64,
            0,
            0,
            0,
            0,
        ];
        let mut out = [0u8; 120];
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

/// `renameat2` flags.
pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;
pub const RENAME_WHITEOUT: u32 = 4;

/// `setxattr` flags.
pub const XATTR_CREATE: i32 = 1;
pub const XATTR_REPLACE: i32 = 2;

/// A node of a filesystem. Directory methods on a non-directory return
/// ENOTDIR (the defaults), and so on for each kind.
pub trait Inode: Send + Sync {
    fn stat(&self) -> Result<Stat>;

    fn statfs(&self) -> Result<StatFs>;

    /// Change attributes. A size change on a non-regular file is EINVAL
    /// (directories: EISDIR).
    fn setattr(&self, _attr: &SetAttr) -> Result<()> {
        Err(Errno::EPERM)
    }

    /// The child called `name`, or ENOENT.
    fn lookup(&self, _name: &str) -> Result<Arc<dyn Inode>> {
        Err(Errno::ENOTDIR)
    }

    /// Make a child: EEXIST if `name` exists. `mode` holds permission bits
    /// (umask already applied); the new node belongs to `owner` (uid, gid).
    fn create(
        &self,
        _name: &str,
        _kind: NodeKind,
        _mode: u32,
        _owner: (u32, u32),
    ) -> Result<Arc<dyn Inode>> {
        Err(Errno::ENOTDIR)
    }

    /// Make `name` another link to `target` (a non-directory). EXDEV if
    /// `target` belongs to another filesystem.
    fn link(&self, _name: &str, _target: &Arc<dyn Inode>) -> Result<()> {
        Err(Errno::ENOTDIR)
    }

    /// Remove the non-directory `name` (EISDIR for a directory).
    fn unlink(&self, _name: &str) -> Result<()> {
        Err(Errno::ENOTDIR)
    }

    /// Remove the empty directory `name` (ENOTDIR, ENOTEMPTY).
    fn rmdir(&self, _name: &str) -> Result<()> {
        Err(Errno::ENOTDIR)
    }

    /// Move `old` to `new_dir`/`new` (`RENAME_*` flags). EXDEV if `new_dir`
    /// belongs to another filesystem. Replacing follows rename(2): a
    /// directory only replaces an empty directory, a non-directory only a
    /// non-directory.
    fn rename(&self, _old: &str, _new_dir: &Arc<dyn Inode>, _new: &str, _flags: u32) -> Result<()> {
        Err(Errno::ENOTDIR)
    }

    /// The entries of a directory, without `.` and `..`.
    fn read_dir(&self) -> Result<Vec<DirEntry>> {
        Err(Errno::ENOTDIR)
    }

    /// A symlink's target (EINVAL for other kinds).
    fn readlink(&self) -> Result<String> {
        Err(Errno::EINVAL)
    }

    /// Open the node's data. `flags` are open(2) flags; O_CREAT, O_EXCL and
    /// O_TRUNC have already been dealt with.
    fn open(&self, flags: i32) -> Result<Arc<dyn FileOps>>;

    fn getxattr(&self, _name: &str) -> Result<Vec<u8>> {
        Err(Errno::ENODATA)
    }

    fn setxattr(&self, _name: &str, _value: &[u8], _flags: i32) -> Result<()> {
        Err(Errno::EOPNOTSUPP)
    }

    fn listxattr(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn removexattr(&self, _name: &str) -> Result<()> {
        Err(Errno::ENODATA)
    }

    /// The walk is about to look up `names` one after the other beneath
    /// this directory (none of them cached yet, none `.` or `..`). A
    /// filesystem whose lookups are round trips may fetch them all at once
    /// and answer the coming [`lookup`](Self::lookup)s from that; the
    /// default does nothing.
    fn prefetch(&self, _names: &[&str]) {}

    /// Whether a cached dentry for this node still names it. Filesystems
    /// whose entries change behind the VFS's back (procfs, a host
    /// directory others write to) answer false to make the walk look the
    /// name up again.
    fn valid(&self) -> bool {
        true
    }

    /// For magic links (procfs's `fd/N`, `cwd`, `exe`): the place the link
    /// stands for, which the walk goes to instead of resolving the link's
    /// text (that text may name no path at all: `pipe:[3]`).
    fn jump(&self) -> Option<Result<crate::Location>> {
        None
    }

    /// For filesystems to recognise their own nodes (link, rename).
    fn as_any(&self) -> &dyn Any;
}

/// Memory a file's data can live in so it can be mapped MAP_SHARED: the
/// kernel's shared memory objects (host memfds), handed to filesystems
/// that keep data in memory.
pub trait SharedMemory: Send + Sync {
    /// A zeroed region `len` bytes long.
    fn allocate(&self, len: u64) -> Result<Arc<dyn SharedRegion>>;
}

/// A region from [`SharedMemory`]: the file's bytes, and what the kernel
/// maps into address spaces. Its length is the file's size and changes
/// with it, so mappings see the file grow and, where it shrank, fault
/// (SIGBUS) as in Linux.
pub trait SharedRegion: Send + Sync {
    /// Read from `offset`; short at the end of the region.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize>;
    /// Write at `offset`, growing the region if `buf` reaches past its end.
    fn write(&self, offset: u64, buf: &[u8]) -> Result<()>;
    /// Grow (with zeros) or shrink the region to `len` bytes.
    fn set_len(&self, len: u64) -> Result<()>;
    /// Zero `[offset, offset + len)` within the region, giving whole pages
    /// back; the length stays.
    fn punch(&self, offset: u64, len: u64) -> Result<()>;
    /// Read from `offset` into raw iovecs; short at the end of the region.
    ///
    /// # Safety
    /// As [`IovIo::read_iov`].
    unsafe fn read_iov(&self, iov: &[libc::iovec], offset: u64) -> Result<usize>;
    /// For the kernel to recognise its own regions.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// A file's memory as one `mmap(MAP_SHARED)` of it gets it.
pub struct SharedMap {
    pub region: Arc<dyn SharedRegion>,
    /// Held by the mapping for as long as it may be written: while any
    /// is held, the file cannot be sealed against writes (EBUSY). None
    /// when the mapping may never be made writable (a read-only
    /// descriptor, or a file sealed against writes).
    pub writer: Option<Arc<dyn Any + Send + Sync>>,
    /// The file's size now (it changes while mapped): a fault on a page
    /// wholly past it is SIGBUS.
    pub size: Arc<dyn Fn() -> u64 + Send + Sync>,
}

/// An opened node: its data. Offsets are the caller's business (the
/// [`FileDescription`](crate::FileDescription) keeps the position).
pub trait FileOps: Send + Sync {
    /// Read at `offset` (ignored when not [`seekable`](Self::seekable)).
    fn read(&self, _buf: &mut [u8], _offset: u64) -> Result<usize> {
        Err(Errno::EINVAL)
    }

    /// Write at `offset` (ignored when not seekable).
    fn write(&self, _buf: &[u8], _offset: u64) -> Result<usize> {
        Err(Errno::EINVAL)
    }

    /// Write at the end of the file as one step (O_APPEND); returns the bytes
    /// written and the offset just past them.
    fn append(&self, buf: &[u8]) -> Result<(usize, u64)> {
        let n = self.write(buf, 0)?;
        Ok((n, n as u64))
    }

    /// Whether the file has positions (lseek works, offsets matter).
    fn seekable(&self) -> bool {
        true
    }

    /// For files whose position lives outside the description (a host
    /// descriptor shared with the host): `lseek` is answered here, and
    /// such files report not [`seekable`](Self::seekable) so reads and
    /// writes leave positioning to them.
    fn seek(&self, _offset: i64, _whence: i32) -> Option<Result<u64>> {
        None
    }

    /// The node's attributes when the file has no node in the VFS (host
    /// descriptors, pipes); files opened by path use their inode instead.
    fn stat(&self) -> Result<Stat> {
        Err(Errno::EBADF)
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    /// `fallocate(2)` over `[offset, offset + len)` for files whose storage
    /// lives elsewhere (a gofer's file). None: the caller grows the file
    /// through the inode's size instead.
    fn allocate(&self, _mode: i32, _offset: u64, _len: u64) -> Option<Result<()>> {
        None
    }

    /// The host descriptor behind the file, if there is one: poll, epoll,
    /// ioctl and a few others go straight to it.
    fn host_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// For `mmap(MAP_SHARED)`: the memory holding the file's bytes, so
    /// every mapping and every read and write see the same bytes.
    /// `may_write`: the mapping could be made writable (its descriptor is
    /// open for writing). None: the file cannot be mapped shared.
    fn map_shared(&self, _may_write: bool) -> Option<Result<SharedMap>> {
        None
    }

    /// `fcntl(F_GET_SEALS)`: the file's seals (`F_SEAL_*`); EINVAL for
    /// files that cannot be sealed.
    fn seals(&self) -> Result<u32> {
        Err(Errno::EINVAL)
    }

    /// `fcntl(F_ADD_SEALS)`.
    fn add_seals(&self, _seals: u32) -> Result<()> {
        Err(Errno::EINVAL)
    }

    /// Readiness (`POLL*` bits of `events`, plus POLLHUP/POLLERR which are
    /// always reported) of a file without a host descriptor. Regular files
    /// and memory devices are always ready.
    fn poll(&self, events: i16) -> i16 {
        events & (libc::POLLIN | libc::POLLOUT | libc::POLLRDNORM | libc::POLLWRNORM)
    }

    /// Who to tell when [`poll`](Self::poll)'s answer may change; None for
    /// files whose readiness never changes.
    fn waiters(&self) -> Option<&crate::waiter::Waiters> {
        None
    }

    /// For the kernel to recognise the files it implements (sockets, epoll).
    fn as_any(&self) -> Option<&dyn Any> {
        None
    }

    /// Files over a host descriptor can move bytes straight between it and
    /// memory named by raw `iovec`s (the application's pages in the memory
    /// file), skipping a bounce buffer.
    fn iov_io(&self) -> Option<&dyn IovIo> {
        None
    }
}

/// Vectored I/O between a host descriptor and caller-named memory. Offsets
/// and positions mean what they mean for [`FileOps::read`] and
/// [`FileOps::write`].
pub trait IovIo {
    /// Read into `iov`.
    ///
    /// # Safety
    /// Every `iovec` must describe memory that stays mapped and writable
    /// for the whole call and that no Rust reference points into (the
    /// kernel writes there).
    unsafe fn read_iov(&self, iov: &[libc::iovec], offset: u64) -> Result<usize>;

    /// Write from `iov`.
    ///
    /// # Safety
    /// Every `iovec` must describe memory that stays mapped and readable
    /// for the whole call.
    unsafe fn write_iov(&self, iov: &[libc::iovec], offset: u64) -> Result<usize>;
}
