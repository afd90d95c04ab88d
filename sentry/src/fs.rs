//! The Sentry's side of files: the filesystem tree a sandbox starts with,
//! each task's root, working directory and umask, and descriptor tables.
//! The VFS itself (paths, mounts, filesystems) is the `vfs` crate.
//!
//! The tree: the container root from the gofer (a host directory the
//! Sentry walks beneath itself with directfs, else the gofer's files over
//! lisafs) as the read-only lower layer of
//! an overlay whose upper layer is memory, so nothing the program writes
//! reaches the host (upstream's `--overlay2=root:memory`); a devtmpfs with
//! the memory devices on `/dev`; empty read-only directories over `/proc`
//! and `/sys` until procfs and sysfs exist, so the host's never show.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use abi::Errno;

use vfs::mount::{MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY};
use vfs::tmpfs::{self, TmpfsOptions};
use vfs::{dev, hostfs, overlay, Creds, FileDescription, FileOps, Location, Mounts, NodeKind};

pub use vfs::FileDescription as File;

/// Anonymous device numbers (major 0), one per filesystem instance.
static NEXT_DEV: AtomicU64 = AtomicU64::new(1);

pub fn anon_dev() -> u64 {
    libc::makedev(0, NEXT_DEV.fetch_add(1, Ordering::Relaxed) as u32)
}

/// A tmpfs may hold at most this much file data (Linux's default is half
/// of RAM; the sandbox's memory is bounded elsewhere later).
const TMPFS_LIMIT: u64 = 8 << 30;

/// A tmpfs whose files can be mapped shared and hold FIFOs; with `ptys`,
/// its device nodes open the memory devices and `/dev/ptmx`.
fn new_tmpfs(
    mode: u32,
    ptys: Option<&Arc<crate::tty::Ptys>>,
    fifos: &Arc<crate::pipe::Fifos>,
) -> Arc<dyn vfs::Inode> {
    new_tmpfs_with(
        TmpfsOptions {
            mode,
            size_limit: TMPFS_LIMIT,
            ..TmpfsOptions::default()
        },
        ptys,
        fifos,
    )
}

/// [`new_tmpfs`] with the caller's mode, owner and size limit.
fn new_tmpfs_with(
    opts: TmpfsOptions,
    ptys: Option<&Arc<crate::tty::Ptys>>,
    fifos: &Arc<crate::pipe::Fifos>,
) -> Arc<dyn vfs::Inode> {
    let fifos = fifos.clone();
    let ptys = ptys.cloned();
    tmpfs::new(TmpfsOptions {
        fifos: Some(Arc::new(move |key, flags| fifos.open(key, flags))),
        memory: Some(Arc::new(crate::mm::FileMemory)),
        dev: anon_dev(),
        mode: opts.mode,
        uid: opts.uid,
        gid: opts.gid,
        size_limit: opts.size_limit,
        devices: ptys.map(|ptys| {
            Arc::new(move |rdev, flags| {
                if rdev == libc::makedev(5, 2) {
                    ptys.open_master()
                } else if rdev == libc::makedev(5, 0) {
                    ptys.open_controlling()
                } else {
                    dev::open_memory_device(rdev, flags)
                }
            }) as tmpfs::DeviceOpener
        }),
    })
}

/// What `mount(2)` makes: new instances of the sandbox's own filesystems.
pub(crate) struct Filesystems {
    fifos: Arc<crate::pipe::Fifos>,
    ptys: Arc<crate::tty::Ptys>,
    kernel: std::sync::Weak<crate::task::Kernel>,
}

impl Filesystems {
    pub fn new(kernel: std::sync::Weak<crate::task::Kernel>) -> Filesystems {
        Filesystems {
            fifos: Arc::default(),
            ptys: crate::tty::Ptys::new(kernel.clone(), anon_dev()),
            kernel,
        }
    }

    /// A new filesystem of type `fs_type` with mount options `data`
    /// (comma-separated); ENODEV for types the sandbox does not have,
    /// EINVAL for options it does not know.
    pub fn new_instance(&self, fs_type: &str, data: &str) -> Result<Arc<dyn vfs::Inode>, Errno> {
        let options = data.split(',').filter(|o| !o.is_empty());
        match fs_type {
            "tmpfs" => {
                let mut opts = TmpfsOptions {
                    mode: 0o1777,
                    size_limit: TMPFS_LIMIT,
                    ..TmpfsOptions::default()
                };
                for o in options {
                    let (k, v) = o.split_once('=').unwrap_or((o, ""));
                    let num = |v: &str| v.parse::<u32>().map_err(|_| Errno::EINVAL);
                    match k {
                        "mode" => {
                            opts.mode =
                                u32::from_str_radix(v, 8).map_err(|_| Errno::EINVAL)? & 0o7777
                        }
                        "uid" => opts.uid = num(v)?,
                        "gid" => opts.gid = num(v)?,
                        "size" => opts.size_limit = tmpfs_size(v)?,
                        // Accepted as Linux does; nothing here depends on them.
                        "nr_inodes" | "huge" | "mpol" | "inode64" | "noswap" => {}
                        // Mount flags spelled as options (mount(8) passes
                        // them as flags; a raw caller may not).
                        "rw" | "ro" | "nosuid" | "nodev" | "noexec" | "relatime" | "noatime" => {}
                        _ => {
                            tracing::info!("mount: tmpfs option {o:?} not supported: EINVAL");
                            return Err(Errno::EINVAL);
                        }
                    }
                }
                Ok(new_tmpfs_with(opts, Some(&self.ptys), &self.fifos))
            }
            "proc" => Ok(crate::procfs::new_procfs(self.kernel.clone(), anon_dev())),
            "sysfs" => Ok(crate::procfs::new_sysfs(anon_dev())),
            _ => {
                tracing::info!("mount: filesystem type {fs_type:?} not supported: ENODEV");
                Err(Errno::ENODEV)
            }
        }
    }
}

/// tmpfs's `size=`: bytes, with a k/m/g suffix (a `%` of memory is not
/// supported).
fn tmpfs_size(v: &str) -> Result<u64, Errno> {
    let (digits, unit) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&v[..i], c.to_ascii_lowercase()),
        _ => (v, 'b'),
    };
    let n: u64 = digits.parse().map_err(|_| Errno::EINVAL)?;
    let shift = match unit {
        'b' => 0,
        'k' => 10,
        'm' => 20,
        'g' => 30,
        't' => 40,
        _ => return Err(Errno::EINVAL),
    };
    // size=0 means no limit, as in Linux; round up to whole pages.
    n.checked_shl(shift)
        .filter(|b| b >> shift == n)
        .map(|b| b.div_ceil(4096) * 4096)
        .ok_or(Errno::EINVAL)
}

/// A bind mount of the spec: a host directory the gofer serves, mounted
/// at `destination` (an absolute path in the container).
pub struct BindMount {
    pub destination: String,
    pub fs: Arc<dyn vfs::Inode>,
    pub read_only: bool,
}

/// Build the sandbox's mount namespace over the container's root
/// filesystem `lower` (read-only; see `KernelConfig::root`), with the
/// spec's bind mounts on top, in the spec's order.
pub fn build_tree(
    lower: Arc<dyn vfs::Inode>,
    binds: Vec<BindMount>,
    filesystems: &Filesystems,
) -> Result<(Arc<Mounts>, Location), Errno> {
    let (fifos, ptys) = (&filesystems.fifos, &filesystems.ptys);
    let kernel = filesystems.kernel.clone();
    let upper = new_tmpfs(0o755, Some(ptys), fifos);
    let merged = overlay::new(upper, lower, anon_dev())?;
    let mounts = Arc::new(Mounts::new(merged, "overlay", "root", 0));
    let creds = Creds::root();
    let top = mounts.root();
    let ctx = vfs::walk::Context {
        mounts: &mounts,
        root: &top,
        creds: &creds,
    };
    let dir = |path: &str| -> Result<Location, Errno> {
        match ctx.make(&top, path, NodeKind::Directory, 0o755) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        ctx.lookup(&top, path, true)
    };

    // /dev: the memory devices, /dev/shm, and the links programs expect.
    let devfs = new_tmpfs(0o755, Some(ptys), fifos);
    let at = dir("/dev")?;
    let devm = mounts.mount_fs(&at, devfs, "tmpfs", "none", MS_NOSUID | MS_NOEXEC)?;
    let devroot = Location {
        dentry: devm.root().clone(),
        mount: devm,
    };
    for &(name, rdev, mode) in dev::MEMORY_DEVICES {
        ctx.make(&devroot, name, NodeKind::CharDevice(rdev), mode)?;
    }
    ctx.make(&devroot, "shm", NodeKind::Directory, 0o1777)?;
    ctx.make(
        &devroot,
        "ptmx",
        NodeKind::CharDevice(libc::makedev(5, 2)),
        0o666,
    )?;
    ctx.make(
        &devroot,
        "tty",
        NodeKind::CharDevice(libc::makedev(5, 0)),
        0o666,
    )?;
    ctx.make(&devroot, "pts", NodeKind::Directory, 0o755)?;
    let pts = ctx.lookup(&devroot, "pts", false)?;
    mounts.mount_fs(
        &pts,
        Arc::new(crate::tty::DevPts { ptys: ptys.clone() }),
        "devpts",
        "devpts",
        MS_NOSUID | MS_NOEXEC,
    )?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ctx.make(&devroot, name, NodeKind::Symlink(target.into()), 0o777)?;
    }
    // procfs and sysfs describe the sandbox, and cover the host's.
    let at = dir("/proc")?;
    let flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    mounts.mount_fs(
        &at,
        crate::procfs::new_procfs(kernel, anon_dev()),
        "proc",
        "proc",
        flags,
    )?;
    let at = dir("/sys")?;
    mounts.mount_fs(
        &at,
        crate::procfs::new_sysfs(anon_dev()),
        "sysfs",
        "sysfs",
        flags | MS_RDONLY,
    )?;
    // The spec's bind mounts. Their mount points are resolved here, in the
    // sandbox's own tree (missing directories are made in the root's
    // memory layer), never on the host: a symlink in the rootfs cannot
    // send a mount outside it.
    for bind in binds {
        let at = make_dirs(&ctx, &top, top.clone(), &bind.destination, 0)?;
        let flags = if bind.read_only { MS_RDONLY } else { 0 };
        mounts.mount_fs(&at, bind.fs, "9p", "none", flags)?;
    }
    // memfd_create's files: in a tmpfs mounted nowhere.
    let memfds = mounts.detached(new_tmpfs(0o1777, None, fifos), "tmpfs");
    Ok((mounts, memfds))
}

/// `mkdir -p` of `path` from `at` inside the sandbox's tree, following
/// symlinks as the tree resolves them (an absolute target from `top`,
/// `..` stopping there), so a symlinked mount point is made where it
/// points within the container, as runc's securejoin does on the host.
fn make_dirs(
    ctx: &vfs::walk::Context,
    top: &Location,
    mut at: Location,
    path: &str,
    depth: u32,
) -> Result<Location, Errno> {
    // Linux's limit on symlinks followed in one resolution.
    if depth > 40 {
        return Err(Errno::ELOOP);
    }
    if path.starts_with('/') {
        at = top.clone();
    }
    for name in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let next = match ctx.lookup(&at, name, false) {
            Ok(loc) => loc,
            Err(Errno::ENOENT) => {
                ctx.make(&at, name, NodeKind::Directory, 0o755)?;
                ctx.lookup(&at, name, false)?
            }
            Err(e) => return Err(e),
        };
        let st = next.inode().stat()?;
        at = if st.mode & libc::S_IFMT == libc::S_IFLNK {
            let target = next.inode().readlink()?;
            make_dirs(ctx, top, at, &target, depth + 1)?
        } else {
            next
        };
    }
    Ok(at)
}

/// Join `path` onto `dir` (a path of the sandbox, absolute or relative).
pub fn join(dir: &str, path: &str) -> String {
    if path.starts_with('/') || dir.is_empty() {
        path.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{path}")
    } else {
        format!("{dir}/{path}")
    }
}

/// An fs context as tasks hold it, shared by threads made with CLONE_FS,
/// with the snapshot path walks take of it (`snapshot`). Every mutable
/// borrow of the context drops the snapshot, so none outlives a change:
/// a stale one would show another thread the old working directory, and
/// keep its mount busy.
#[derive(Clone)]
pub struct SharedFs {
    ctx: FsContext,
    snapshot: Option<Arc<FsSnapshot>>,
}

impl SharedFs {
    pub fn new(ctx: FsContext) -> SharedFs {
        SharedFs {
            ctx,
            snapshot: None,
        }
    }

    /// Mounts, root and working directory for a path walk: one
    /// reference to clone instead of five.
    pub fn snapshot(&mut self) -> Arc<FsSnapshot> {
        let ctx = &self.ctx;
        self.snapshot
            .get_or_insert_with(|| {
                Arc::new(FsSnapshot {
                    mounts: ctx.mounts.clone(),
                    root: ctx.root.clone(),
                    cwd: ctx.cwd.clone(),
                })
            })
            .clone()
    }
}

impl std::ops::Deref for SharedFs {
    type Target = FsContext;
    fn deref(&self) -> &FsContext {
        &self.ctx
    }
}

impl std::ops::DerefMut for SharedFs {
    fn deref_mut(&mut self) -> &mut FsContext {
        self.snapshot = None;
        &mut self.ctx
    }
}

/// What a path walk needs of an fs context, as it was when taken.
pub struct FsSnapshot {
    pub mounts: Arc<Mounts>,
    pub root: Location,
    pub cwd: Location,
}

/// A task's view of the tree: its root (chroot), working directory and
/// umask, shared by threads made with CLONE_FS (as [`SharedFs`]).
#[derive(Clone)]
pub struct FsContext {
    /// The mount namespace root and cwd are in (Linux keeps it in the
    /// nsproxy; here it goes with them, since the rules keep tasks that
    /// share an fs context in one mount namespace: CLONE_NEWNS excludes
    /// CLONE_FS, unshare(CLONE_NEWNS) unshares the fs context, setns
    /// refuses a shared one).
    pub mounts: Arc<Mounts>,
    pub root: Location,
    pub cwd: Location,
    pub umask: u32,
}

/// A file over a host descriptor the Sentry owns (stdio, host pipes,
/// eventfds, epoll sets): `name` is how `/proc/self/fd` will show it.
pub fn host_file(fd: OwnedFd, flags: i32, name: &str) -> Arc<File> {
    // The host object keeps the position: stdio may be a file the caller
    // writes too, and pipes and eventfds have none.
    let ops: Arc<dyn FileOps> = Arc::new(hostfs::HostFile::shared(fd));
    FileDescription::anonymous(name, ops, flags)
}

/// The host descriptor behind `file`, for the calls that pass through to
/// the host (poll, epoll, ioctl); `err` when it has none.
pub fn host_fd(file: &File, err: Errno) -> Result<BorrowedFd<'_>, Errno> {
    file.ops().host_fd().ok_or(err)
}

/// A process's descriptor table. Cloning it (fork) shares the open file
/// descriptions, as Linux does.
#[derive(Clone)]
pub struct FdTable {
    slots: Vec<Option<(Arc<File>, bool)>>,
    /// Descriptors are below this (RLIMIT_NOFILE's soft limit, as set by
    /// the processes that use the table).
    limit: usize,
}

impl Default for FdTable {
    fn default() -> Self {
        FdTable {
            slots: Vec::new(),
            limit: MAX_FDS,
        }
    }
}

/// RLIMIT_NOFILE's default soft limit.
pub const MAX_FDS: usize = 1024;

impl FdTable {
    /// The first descriptor number that may not be used.
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn set_limit(&mut self, limit: u64) {
        self.limit = usize::try_from(limit.min(crate::limits::NR_OPEN)).unwrap_or(MAX_FDS);
    }

    pub fn get(&self, fd: u64) -> Result<Arc<File>, Errno> {
        let slot = usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get(i))
            .ok_or(Errno::EBADF)?;
        slot.as_ref().map(|(f, _)| f.clone()).ok_or(Errno::EBADF)
    }

    /// Install `file` at the lowest free descriptor `>= min`.
    pub fn insert(&mut self, file: Arc<File>, cloexec: bool, min: usize) -> Result<u64, Errno> {
        let free = (min..self.limit)
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

    /// Take every open descriptor in `first..=last` out of the table
    /// (close_range), returning their files so the caller can drop locks
    /// and release them after the table's lock is gone.
    pub fn remove_range(&mut self, first: u64, last: u64) -> Vec<Arc<File>> {
        let end = usize::try_from(last.saturating_add(1))
            .unwrap_or(usize::MAX)
            .min(self.slots.len());
        let start = usize::try_from(first).unwrap_or(usize::MAX).min(end);
        self.slots[start..end]
            .iter_mut()
            .filter_map(|slot| slot.take().map(|(f, _)| f))
            .collect()
    }

    /// Mark every open descriptor in `first..=last` close-on-exec.
    pub fn set_cloexec_range(&mut self, first: u64, last: u64) {
        let end = usize::try_from(last.saturating_add(1))
            .unwrap_or(usize::MAX)
            .min(self.slots.len());
        let start = usize::try_from(first).unwrap_or(usize::MAX).min(end);
        for (_, cloexec) in self.slots[start..end].iter_mut().flatten() {
            *cloexec = true;
        }
    }

    /// The open descriptors in order (for /proc).
    pub fn numbers(&self) -> Vec<u64> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].is_some())
            .map(|i| i as u64)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_descriptor_is_used() {
        let file = |p: &str| {
            let fd = OwnedFd::from(std::fs::File::open("/").unwrap());
            host_file(fd, libc::O_RDONLY, p)
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
