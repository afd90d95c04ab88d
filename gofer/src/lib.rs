//! The gofer's file server: serves one host directory over lisafs and never
//! lets a client reach outside it.
//!
//! # Confinement
//!
//! Every file the server touches is reached from an FD it already holds,
//! one validated name at a time:
//!
//! * a name from a request must be a single component: non-empty, no `/`,
//!   not `.` or `..`, no NUL (EINVAL otherwise, as upstream);
//! * every lookup is `openat2(parent_fd, name, O_NOFOLLOW,
//!   RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS)`, so even
//!   if the name check were wrong the kernel would refuse to leave the
//!   parent or follow any link;
//! * symlinks are opened as themselves (`O_PATH | O_NOFOLLOW`) and never
//!   followed: Walk stops at them (status 2) and the client resolves the
//!   target itself;
//! * the *at calls that create, remove or rename (`mkdirat`, `unlinkat`,
//!   `renameat2`, ...) take a directory FD and a validated name, so they act
//!   on that directory's entry whatever happened to paths meanwhile;
//! * re-opening a node with other flags goes through `/proc/self/fd/<our
//!   FD>` (the FD we already hold), never through a path.
//!
//! A rename race (a directory swapped for a symlink while walks run) can at
//! worst make a walk return the symlink itself.

#![forbid(unsafe_code)]

pub mod filter;

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use abi::Errno;
use gofer_protocol::message::*;
use gofer_protocol::server::{Ctx, FileServer, Reply};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, StatxFlags};

/// How the server treats its tree.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Refuse every mutating request with EROFS (and OpenAt for writing).
    pub readonly: bool,
    /// Let clients open host FIFOs (upstream `--host-fifo=open`).
    pub host_fifo: bool,
    /// Let clients see host sockets (upstream `--host-uds=open`).
    pub host_uds: bool,
    /// directfs: donate the root's host FD in the Mount reply so the Sentry
    /// opens files beneath it itself (upstream's default, `--directfs`).
    pub directfs: bool,
}

/// What a control FD refers to: a file beneath the root, held by FD.
#[derive(Debug)]
pub struct Node {
    /// `O_RDONLY|O_NONBLOCK` where that works, `O_PATH` otherwise; always
    /// opened with `O_NOFOLLOW`.
    fd: OwnedFd,
    /// The `S_IFMT` bits at open time (a node cannot change type).
    ftype: u32,
    /// A write-only FD opened on first need (truncate, times of a regular
    /// file), as upstream does.
    writable: OnceLock<OwnedFd>,
}

impl Node {
    fn is_dir(&self) -> bool {
        self.ftype == libc::S_IFDIR
    }
    fn is_symlink(&self) -> bool {
        self.ftype == libc::S_IFLNK
    }
    fn is_regular(&self) -> bool {
        self.ftype == libc::S_IFREG
    }
}

/// What an open FD refers to.
#[derive(Debug)]
pub struct OpenFile {
    node: Arc<Node>,
    fd: OwnedFd,
    readable: bool,
    writable: bool,
}

/// The file server: one per served directory.
#[derive(Debug)]
pub struct HostFs {
    root: OwnedFd,
    proc_self_fd: OwnedFd,
    config: Config,
}

/// The MIDs [`HostFs`] handles (besides the framework's Mount and Close).
const SUPPORTED: &[Mid] = &[
    Mid::FStat,
    Mid::SetStat,
    Mid::Walk,
    Mid::WalkStat,
    Mid::OpenAt,
    Mid::OpenCreateAt,
    Mid::FSync,
    Mid::PWrite,
    Mid::PRead,
    Mid::MkdirAt,
    Mid::MknodAt,
    Mid::SymlinkAt,
    Mid::LinkAt,
    Mid::FStatFS,
    Mid::FAllocate,
    Mid::ReadLinkAt,
    Mid::UnlinkAt,
    Mid::RenameAt,
    Mid::Getdents64,
    Mid::FGetXattr,
    Mid::FSetXattr,
    Mid::FListXattr,
    Mid::FRemoveXattr,
    Mid::RenameAt2,
];

fn errno(e: rustix::io::Errno) -> Errno {
    Errno::new(e.raw_os_error()).unwrap_or(Errno::EIO)
}

/// The flags every host open carries.
fn base_flags() -> OFlags {
    OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn resolve() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_SYMLINKS
}

/// A request name must be one path component (upstream's rule), and the
/// host cannot take a NUL.
fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    if name.contains(&0) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// Opens `name` beneath `dir` without following anything, with `flags`.
fn open_beneath(dir: BorrowedFd<'_>, name: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(dir, name, flags | base_flags(), Mode::empty(), resolve()).map_err(errno)
}

/// Opens `name` as a control FD: readable where possible (so f*xattr,
/// fchmod and getdents work on it), else `O_PATH` (symlinks, sockets,
/// unreadable files), as upstream's fallback order.
fn try_open(dir: BorrowedFd<'_>, name: &[u8], extra: OFlags) -> Result<OwnedFd, Errno> {
    match open_beneath(dir, name, OFlags::RDONLY | OFlags::NONBLOCK | extra) {
        Ok(fd) => Ok(fd),
        Err(Errno::ENOENT) => Err(Errno::ENOENT),
        Err(_) => open_beneath(dir, name, OFlags::PATH | extra),
    }
}

/// Stats an FD we hold, as upstream does (`statx` with an empty path).
pub fn fstat(fd: BorrowedFd<'_>) -> Result<Statx, Errno> {
    let s = rustix::fs::statx(
        fd,
        c"",
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::BTIME,
    )
    .map_err(errno)?;
    let ts = |t: rustix::fs::StatxTimestamp| StatxTimestamp {
        sec: t.tv_sec,
        nsec: t.tv_nsec,
        pad: 0,
    };
    Ok(Statx {
        mask: s.stx_mask,
        blksize: s.stx_blksize,
        attributes: s.stx_attributes.bits(),
        nlink: s.stx_nlink,
        uid: s.stx_uid,
        gid: s.stx_gid,
        mode: s.stx_mode,
        pad: 0,
        ino: s.stx_ino,
        size: s.stx_size,
        blocks: s.stx_blocks,
        attributes_mask: s.stx_attributes_mask.bits(),
        atime: ts(s.stx_atime),
        btime: ts(s.stx_btime),
        ctime: ts(s.stx_ctime),
        mtime: ts(s.stx_mtime),
        rdev_major: s.stx_rdev_major,
        rdev_minor: s.stx_rdev_minor,
        dev_major: s.stx_dev_major,
        dev_minor: s.stx_dev_minor,
    })
}

fn uid_of(u: u32) -> Option<rustix::fs::Uid> {
    (u != NO_UID).then(|| rustix::fs::Uid::from_raw(u))
}

fn gid_of(g: u32) -> Option<rustix::fs::Gid> {
    (g != NO_GID).then(|| rustix::fs::Gid::from_raw(g))
}

/// `fchownat(fd, "", uid, gid, AT_EMPTY_PATH|AT_SYMLINK_NOFOLLOW)`, a no-op
/// when neither id is set.
fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> Result<(), Errno> {
    if uid == NO_UID && gid == NO_GID {
        return Ok(());
    }
    rustix::fs::chownat(
        fd,
        c"",
        uid_of(uid),
        gid_of(gid),
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(errno)
}

/// The `d_reclen` the kernel uses for a `linux_dirent64` with this name.
fn dirent_reclen(name_len: usize) -> usize {
    (19 + name_len + 1).div_ceil(8) * 8
}

impl HostFs {
    /// Serves the directory at `root` (a trusted path from the container
    /// spec; it is resolved once, here). Opens `/proc/self/fd` too, which
    /// the server uses to re-open nodes it holds; do this before any
    /// chroot.
    pub fn new(root: &Path, config: Config) -> io::Result<HostFs> {
        let root = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let proc_self_fd = rustix::fs::open(
            "/proc/self/fd",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(HostFs::from_fds(root, proc_self_fd, config))
    }

    /// Serves the directory `root` (any FD on it), using `proc_self_fd` (an
    /// FD on this process's `/proc/self/fd`) to re-open nodes.
    pub fn from_fds(root: OwnedFd, proc_self_fd: OwnedFd, config: Config) -> HostFs {
        HostFs {
            root,
            proc_self_fd,
            config,
        }
    }

    fn check_writable(&self) -> Result<(), Errno> {
        if self.config.readonly {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// Upstream's file type policy: regular files, directories, symlinks
    /// and character devices always; FIFOs and sockets when allowed;
    /// anything else (block devices...) EPERM.
    fn check_file_type(&self, mode: u16) -> Result<(), Errno> {
        match u32::from(mode) & libc::S_IFMT {
            libc::S_IFREG | libc::S_IFDIR | libc::S_IFLNK | libc::S_IFCHR => Ok(()),
            libc::S_IFIFO if self.config.host_fifo => Ok(()),
            libc::S_IFSOCK if self.config.host_uds => Ok(()),
            _ => Err(Errno::EPERM),
        }
    }

    /// Wraps a freshly opened FD as a node after checking its type.
    fn node(&self, fd: OwnedFd) -> Result<(Node, Statx), Errno> {
        let stat = fstat(fd.as_fd())?;
        self.check_file_type(stat.mode)?;
        Ok((
            Node {
                fd,
                ftype: u32::from(stat.mode) & libc::S_IFMT,
                writable: OnceLock::new(),
            },
            stat,
        ))
    }

    /// Re-opens an FD we hold with other flags (never following a path
    /// the client could influence: `/proc/self/fd/N` names our own FD).
    fn reopen(&self, fd: BorrowedFd<'_>, flags: OFlags) -> Result<OwnedFd, Errno> {
        use std::os::fd::AsRawFd;
        let name = fd.as_raw_fd().to_string();
        rustix::fs::openat(
            &self.proc_self_fd,
            name.as_str(),
            (flags | OFlags::CLOEXEC) & !OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(errno)
    }

    fn writable_fd<'a>(&self, node: &'a Node) -> Result<BorrowedFd<'a>, Errno> {
        if let Some(fd) = node.writable.get() {
            return Ok(fd.as_fd());
        }
        let fd = self.reopen(node.fd.as_fd(), OFlags::WRONLY)?;
        // A concurrent caller may have won; either FD is fine.
        let _ = node.writable.set(fd);
        node.writable.get().map(|f| f.as_fd()).ok_or(Errno::EIO)
    }

    fn dir(&self, ctx: &Ctx<'_, Self>, id: FdId) -> Result<Arc<Node>, Errno> {
        let n = ctx.control(id)?;
        if !n.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(n)
    }

    fn insert(&self, ctx: &Ctx<'_, Self>, node: Node, stat: Statx) -> Result<Inode, Errno> {
        Ok(Inode {
            control_fd: ctx.insert_control(node)?,
            stat,
        })
    }

    fn walk(&self, req: WalkReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        let start = self.dir(ctx, req.dir_fd)?;
        let size = 3u64 + req.path.len() as u64 * core::mem::size_of::<Inode>() as u64;
        if size > u64::from(ctx.max_message_size()) {
            return Err(Errno::EIO);
        }
        let mut walked: Vec<(Node, Statx)> = Vec::new();
        let mut status = WalkStatus::Success;
        let mut failure = None;
        for name in &req.path {
            if let Err(e) = check_name(name) {
                failure = Some(e);
                break;
            }
            let cur: &Node = walked.last().map(|(n, _)| n).unwrap_or(&start);
            if cur.is_symlink() {
                status = WalkStatus::ComponentIsSymlink;
                break;
            }
            match try_open(cur.fd.as_fd(), name, OFlags::empty()).and_then(|fd| self.node(fd)) {
                Ok(n) => walked.push(n),
                Err(Errno::ENOENT) => {
                    status = WalkStatus::ComponentDoesNotExist;
                    break;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            // Upstream hands out an FDID per component as it walks and
            // drops them on failure; consume the same ids so that FDIDs
            // stay in step with a Go server's.
            for id in ctx.insert_controls(walked.into_iter().map(|(n, _)| n).collect())? {
                ctx.remove(id);
            }
            return Err(e);
        }
        let stats: Vec<Statx> = walked.iter().map(|(_, s)| *s).collect();
        let ids = ctx.insert_controls(walked.into_iter().map(|(n, _)| n).collect())?;
        let inodes = ids
            .into_iter()
            .zip(stats)
            .map(|(control_fd, stat)| Inode { control_fd, stat })
            .collect();
        Ok(Reply::new(Response::Walk(WalkResp { status, inodes })))
    }

    fn walk_stat(&self, req: WalkReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        let start = ctx.control(req.dir_fd)?;
        let mut path = &req.path[..];
        if !start.is_dir() && (path.len() > 1 || path.first().is_some_and(|p| !p.is_empty())) {
            return Err(Errno::ENOTDIR);
        }
        for (i, name) in path.iter().enumerate() {
            if !(i == 0 && name.is_empty()) {
                check_name(name)?;
            }
        }
        let size = 2u64 + path.len() as u64 * core::mem::size_of::<Statx>() as u64;
        if size > u64::from(ctx.max_message_size()) {
            return Err(Errno::EIO);
        }
        let mut stats = Vec::new();
        if path.first().is_some_and(|p| p.is_empty()) {
            stats.push(fstat(start.fd.as_fd())?);
            path = &path[1..];
        }
        if !start.is_symlink() {
            let mut cur: Option<OwnedFd> = None;
            for name in path {
                let dir = cur.as_ref().map(|f| f.as_fd()).unwrap_or(start.fd.as_fd());
                let fd = match open_beneath(dir, name, OFlags::PATH) {
                    Ok(fd) => fd,
                    Err(Errno::ENOENT) => break,
                    Err(e) => return Err(e),
                };
                let s = fstat(fd.as_fd())?;
                self.check_file_type(s.mode)?;
                stats.push(s);
                if u32::from(s.mode) & libc::S_IFMT == libc::S_IFLNK {
                    break;
                }
                cur = Some(fd);
            }
        }
        Ok(Reply::new(Response::WalkStat(WalkStatResp { stats })))
    }

    fn open_at(&self, req: OpenAtReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        let flags = req.flags & OPEN_ALLOWED_FLAGS;
        let acc = flags & libc::O_ACCMODE as u32;
        let trunc = flags & libc::O_TRUNC as u32 != 0;
        if self.config.readonly && (acc != libc::O_RDONLY as u32 || trunc) {
            return Err(Errno::EROFS);
        }
        let node = ctx.control(req.fd)?;
        if node.is_dir() && (acc != libc::O_RDONLY as u32 || trunc) {
            return Err(Errno::EISDIR);
        }
        if node.is_symlink() {
            return Err(Errno::EINVAL);
        }
        let fd = self.reopen(node.fd.as_fd(), OFlags::from_bits_retain(flags))?;
        let donate = match node.ftype {
            // Best effort for regular files, so that data I/O skips us.
            libc::S_IFREG => rustix::io::dup(&fd).ok(),
            // Mandatory for what can block: the client must poll it.
            libc::S_IFIFO | libc::S_IFCHR => Some(rustix::io::dup(&fd).map_err(errno)?),
            _ => None,
        };
        let open = OpenFile {
            node,
            fd,
            readable: acc == libc::O_RDONLY as u32 || acc == libc::O_RDWR as u32,
            writable: acc == libc::O_WRONLY as u32 || acc == libc::O_RDWR as u32,
        };
        let open_fd = ctx.insert_open(open)?;
        Ok(Reply::with_fds(
            Response::OpenAt(OpenAtResp { open_fd }),
            donate.into_iter().collect(),
        ))
    }

    fn open_create_at(&self, req: OpenCreateAtReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        self.check_writable()?;
        check_name(&req.name)?;
        let dir = self.dir(ctx, req.common.dir_fd)?;
        let mode = Mode::from_bits_truncate(u32::from(req.common.mode) & 0o7777);
        let fd = rustix::fs::openat2(
            &dir.fd,
            req.name.as_slice(),
            OFlags::CREATE | OFlags::EXCL | OFlags::RDONLY | OFlags::NONBLOCK | base_flags(),
            mode,
            resolve(),
        )
        .map_err(errno)?;
        let undo = |e: Errno| {
            let _ = rustix::fs::unlinkat(&dir.fd, req.name.as_slice(), AtFlags::empty());
            e
        };
        chown_fd(fd.as_fd(), req.common.uid, req.common.gid).map_err(undo)?;
        let (node, stat) = self.node(fd).map_err(undo)?;
        let flags = req.flags & OPEN_ALLOWED_FLAGS;
        let acc = flags & libc::O_ACCMODE as u32;
        let open_fd = self
            .reopen(node.fd.as_fd(), OFlags::from_bits_retain(flags))
            .map_err(undo)?;
        let donate = rustix::io::dup(&open_fd).ok();
        let node = Arc::new(node);
        let child = ctx.insert_control_arc(node.clone())?;
        let new_fd = ctx.insert_open(OpenFile {
            node,
            fd: open_fd,
            readable: acc == libc::O_RDONLY as u32 || acc == libc::O_RDWR as u32,
            writable: acc == libc::O_WRONLY as u32 || acc == libc::O_RDWR as u32,
        })?;
        Ok(Reply::with_fds(
            Response::OpenCreateAt(OpenCreateAtResp {
                child: Inode {
                    control_fd: child,
                    stat,
                },
                new_fd,
            }),
            donate.into_iter().collect(),
        ))
    }

    fn set_stat(&self, req: SetStatReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        self.check_writable()?;
        if req.unsupported_mask() != 0 {
            return Err(Errno::EPERM);
        }
        let node = ctx.control(req.fd)?;
        let mut failure_mask = 0u32;
        let mut failure_errno = 0u32;
        let mut fail = |bits: u32, e: Errno| {
            failure_mask |= bits;
            failure_errno = e.raw() as u32;
        };
        if req.mask & setstat_mask::MODE != 0 {
            let mode = Mode::from_bits_truncate(req.mode & 0o7777);
            if let Err(e) = rustix::fs::fchmod(&node.fd, mode) {
                fail(setstat_mask::MODE, errno(e));
            }
        }
        if req.mask & setstat_mask::SIZE != 0 {
            let r = self
                .writable_fd(&node)
                .and_then(|fd| rustix::fs::ftruncate(fd, req.size).map_err(errno));
            if let Err(e) = r {
                fail(setstat_mask::SIZE, e);
            }
        }
        let times = req.mask & (setstat_mask::ATIME | setstat_mask::MTIME);
        if times != 0 {
            let omit = rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            };
            let ts = |t: Timespec| rustix::fs::Timespec {
                tv_sec: t.sec,
                tv_nsec: t.nsec,
            };
            let stamps = rustix::fs::Timestamps {
                last_access: if req.mask & setstat_mask::ATIME != 0 {
                    ts(req.atime)
                } else {
                    omit
                },
                last_modification: if req.mask & setstat_mask::MTIME != 0 {
                    ts(req.mtime)
                } else {
                    omit
                },
            };
            let r = if node.is_symlink() {
                // Setting a symlink's own times needs its parent and name,
                // which a control FD does not keep.
                Err(Errno::EPERM)
            } else {
                let fd = if node.is_regular() {
                    self.writable_fd(&node).unwrap_or(node.fd.as_fd())
                } else {
                    node.fd.as_fd()
                };
                rustix::fs::futimens(fd, &stamps).map_err(errno)
            };
            if let Err(e) = r {
                fail(times, e);
            }
        }
        let ids = req.mask & (setstat_mask::UID | setstat_mask::GID);
        if ids != 0 {
            let uid = if req.mask & setstat_mask::UID != 0 {
                req.uid
            } else {
                NO_UID
            };
            let gid = if req.mask & setstat_mask::GID != 0 {
                req.gid
            } else {
                NO_GID
            };
            if let Err(e) = chown_fd(node.fd.as_fd(), uid, gid) {
                fail(ids, e);
            }
        }
        Ok(Reply::new(Response::SetStat(SetStatResp {
            failure_mask,
            failure_errno,
        })))
    }

    fn fstat_any(&self, id: FdId, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        let s = if ctx.is_open(id)? {
            fstat(ctx.open(id)?.fd.as_fd())?
        } else {
            fstat(ctx.control(id)?.fd.as_fd())?
        };
        Ok(Reply::new(Response::FStat(s)))
    }

    fn pread(&self, req: PReadReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        let f = ctx.open(req.fd)?;
        if !f.readable {
            return Err(Errno::EBADF);
        }
        if 8 + u64::from(req.count) > u64::from(ctx.max_message_size()) {
            return Err(Errno::new(libc::ENOBUFS).unwrap_or(Errno::EIO));
        }
        let mut buf = vec![0u8; req.count as usize];
        let mut got = 0;
        while got < buf.len() {
            match rustix::io::pread(&f.fd, &mut buf[got..], req.offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        buf.truncate(got);
        Ok(Reply::new(Response::PRead(PReadResp { data: buf })))
    }

    fn pwrite(&self, req: PWriteReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        self.check_writable()?;
        let f = ctx.open(req.fd)?;
        if !f.writable {
            return Err(Errno::EBADF);
        }
        let mut done = 0;
        while done < req.data.len() {
            match rustix::io::pwrite(&f.fd, &req.data[done..], req.offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) if done == 0 => return Err(errno(e)),
                Err(_) => break,
            }
        }
        Ok(Reply::new(Response::PWrite(PWriteResp {
            count: done as u64,
        })))
    }

    fn fsync(&self, req: FsyncReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        let mut first = None;
        for id in req.fds {
            let r = ctx
                .open(id)
                .and_then(|f| rustix::fs::fsync(&f.fd).map_err(errno));
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(Reply::new(Response::FSync)),
        }
    }

    fn mkdir_at(&self, req: MkdirAtReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        self.check_writable()?;
        check_name(&req.name)?;
        let dir = self.dir(ctx, req.common.dir_fd)?;
        let mode = Mode::from_bits_truncate(u32::from(req.common.mode) & 0o7777);
        rustix::fs::mkdirat(&dir.fd, req.name.as_slice(), mode).map_err(errno)?;
        let undo = |e: Errno| {
            let _ = rustix::fs::unlinkat(&dir.fd, req.name.as_slice(), AtFlags::REMOVEDIR);
            e
        };
        let fd = try_open(dir.fd.as_fd(), &req.name, OFlags::DIRECTORY).map_err(undo)?;
        chown_fd(fd.as_fd(), req.common.uid, req.common.gid).map_err(undo)?;
        let (node, stat) = self.node(fd).map_err(undo)?;
        Ok(Reply::new(Response::MkdirAt(self.insert(ctx, node, stat)?)))
    }

    fn mknod_at(&self, req: MknodAtReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        self.check_writable()?;
        check_name(&req.name)?;
        let dir = self.dir(ctx, req.common.dir_fd)?;
        // Only regular files, as upstream: the Sentry emulates the rest.
        if u32::from(req.common.mode) & libc::S_IFMT != libc::S_IFREG {
            return Err(Errno::EPERM);
        }
        let mode = Mode::from_bits_truncate(u32::from(req.common.mode) & 0o7777);
        rustix::fs::mknodat(
            &dir.fd,
            req.name.as_slice(),
            rustix::fs::FileType::RegularFile,
            mode,
            0,
        )
        .map_err(errno)?;
        let undo = |e: Errno| {
            let _ = rustix::fs::unlinkat(&dir.fd, req.name.as_slice(), AtFlags::empty());
            e
        };
        let fd = try_open(dir.fd.as_fd(), &req.name, OFlags::empty()).map_err(undo)?;
        chown_fd(fd.as_fd(), req.common.uid, req.common.gid).map_err(undo)?;
        let (node, stat) = self.node(fd).map_err(undo)?;
        Ok(Reply::new(Response::MknodAt(self.insert(ctx, node, stat)?)))
    }

    fn symlink_at(&self, req: SymlinkAtReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        self.check_writable()?;
        check_name(&req.name)?;
        if req.target.contains(&0) {
            return Err(Errno::EINVAL);
        }
        let dir = self.dir(ctx, req.dir_fd)?;
        rustix::fs::symlinkat(req.target.as_slice(), &dir.fd, req.name.as_slice())
            .map_err(errno)?;
        let undo = |e: Errno| {
            let _ = rustix::fs::unlinkat(&dir.fd, req.name.as_slice(), AtFlags::empty());
            e
        };
        let fd = open_beneath(dir.fd.as_fd(), &req.name, OFlags::PATH).map_err(undo)?;
        chown_fd(fd.as_fd(), req.uid, req.gid).map_err(undo)?;
        let (node, stat) = self.node(fd).map_err(undo)?;
        Ok(Reply::new(Response::SymlinkAt(
            self.insert(ctx, node, stat)?,
        )))
    }

    fn link_at(&self, req: LinkAtReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        self.check_writable()?;
        check_name(&req.name)?;
        let dir = self.dir(ctx, req.dir_fd)?;
        let target = ctx.control(req.target)?;
        if target.is_dir() {
            return Err(Errno::EPERM);
        }
        rustix::fs::linkat(
            &target.fd,
            c"",
            &dir.fd,
            req.name.as_slice(),
            AtFlags::EMPTY_PATH,
        )
        .map_err(errno)?;
        let undo = |e: Errno| {
            let _ = rustix::fs::unlinkat(&dir.fd, req.name.as_slice(), AtFlags::empty());
            e
        };
        let fd = try_open(dir.fd.as_fd(), &req.name, OFlags::empty()).map_err(undo)?;
        let (node, stat) = self.node(fd).map_err(undo)?;
        Ok(Reply::new(Response::LinkAt(self.insert(ctx, node, stat)?)))
    }

    fn fstatfs(&self, req: FStatFsReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        let node = ctx.control(req.fd)?;
        let s = rustix::fs::fstatfs(&node.fd).map_err(errno)?;
        Ok(Reply::new(Response::FStatFS(StatFs {
            fs_type: s.f_type as u64,
            block_size: s.f_bsize,
            blocks: s.f_blocks,
            blocks_free: s.f_bfree,
            blocks_available: s.f_bavail,
            files: s.f_files,
            files_free: s.f_ffree,
            name_length: s.f_namelen as u64,
        })))
    }

    fn fallocate(&self, req: FAllocateReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        self.check_writable()?;
        let f = ctx.open(req.fd)?;
        if !f.writable {
            return Err(Errno::EBADF);
        }
        // Only plain allocation, as the Sentry's fallocate(2) accepts (and
        // the seccomp filter allows: any other mode would kill the gofer).
        if req.mode != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        rustix::fs::fallocate(
            &f.fd,
            rustix::fs::FallocateFlags::empty(),
            req.offset,
            req.length,
        )
        .map_err(errno)?;
        Ok(Reply::new(Response::FAllocate))
    }

    fn read_link_at(&self, req: ReadLinkAtReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        let node = ctx.control(req.fd)?;
        if !node.is_symlink() {
            return Err(Errno::EINVAL);
        }
        let t = rustix::fs::readlinkat(&node.fd, c"", Vec::new()).map_err(errno)?;
        Ok(Reply::new(Response::ReadLinkAt(ReadLinkAtResp {
            target: t.into_bytes(),
        })))
    }

    fn unlink_at(&self, req: UnlinkAtReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        self.check_writable()?;
        check_name(&req.name)?;
        let dir = self.dir(ctx, req.dir_fd)?;
        if req.flags & !(libc::AT_REMOVEDIR as u32) != 0 {
            return Err(Errno::EINVAL);
        }
        rustix::fs::unlinkat(
            &dir.fd,
            req.name.as_slice(),
            AtFlags::from_bits_retain(req.flags),
        )
        .map_err(errno)?;
        Ok(Reply::new(Response::UnlinkAt))
    }

    fn rename(
        &self,
        ctx: &Ctx<'_, Self>,
        old_dir: FdId,
        old_name: &[u8],
        new_dir: FdId,
        new_name: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        check_name(old_name)?;
        check_name(new_name)?;
        let od = ctx.control(old_dir)?;
        let nd = ctx.control(new_dir)?;
        if !od.is_dir() || !nd.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if old_name == new_name {
            let (a, b) = (fstat(od.fd.as_fd())?, fstat(nd.fd.as_fd())?);
            if (a.dev_major, a.dev_minor, a.ino) == (b.dev_major, b.dev_minor, b.ino) {
                return Ok(());
            }
        }
        let flags = rustix::fs::RenameFlags::from_bits(flags).ok_or(Errno::EINVAL)?;
        rustix::fs::renameat_with(&od.fd, old_name, &nd.fd, new_name, flags).map_err(errno)
    }

    fn getdents64(&self, req: Getdents64Req, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        let f = ctx.open(req.dir_fd)?;
        if !f.node.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if req.count < 0 {
            rustix::fs::seek(&f.fd, rustix::fs::SeekFrom::Start(0)).map_err(errno)?;
        }
        // The budget counts host dirent bytes. Never read more than a
        // response can carry (an encoded dirent is at most 27 + 255 bytes
        // for each at least 24 host bytes, so half the max is safe).
        let budget = (req.count.unsigned_abs() as usize).min(ctx.max_message_size() as usize / 2);
        let mut dirents = Vec::new();
        let mut used = 0usize;
        let mut store = vec![MaybeUninit::<u8>::uninit(); 8192 + 8];
        while used < budget {
            let want = (budget - used).min(8192);
            let mut dir = rustix::fs::RawDir::new(&f.fd, &mut store[..want + 8]);
            let mut batch = 0usize;
            let mut progressed = false;
            loop {
                let ent = match dir.next() {
                    None => break,
                    Some(Err(rustix::io::Errno::INVAL)) if want < 280 => break,
                    Some(Err(e)) => return Err(errno(e)),
                    Some(Ok(ent)) => ent,
                };
                progressed = true;
                let name = ent.file_name().to_bytes();
                batch += dirent_reclen(name.len());
                if name != b"." && name != b".." {
                    // Entries whose stat fails (e.g. removed meanwhile) are
                    // skipped, as upstream does.
                    if let Ok(st) = rustix::fs::statat(&f.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                        dirents.push(Dirent64 {
                            ino: ent.ino(),
                            dev_minor: rustix::fs::minor(st.st_dev),
                            dev_major: rustix::fs::major(st.st_dev),
                            off: ent.next_entry_cookie(),
                            typ: (ent.file_type().as_raw_mode() >> 12) as u8,
                            name: name.to_vec(),
                        });
                    }
                }
                if dir.is_buffer_empty() {
                    break;
                }
            }
            if !progressed {
                break;
            }
            used += batch.max(1);
        }
        Ok(Reply::new(Response::Getdents64(Getdents64Resp { dirents })))
    }

    fn xattr_node(&self, ctx: &Ctx<'_, Self>, id: FdId, name: &[u8]) -> Result<Arc<Node>, Errno> {
        // Only the user namespace is the container's; the host's
        // security.*, trusted.* and system.* attributes stay out of reach.
        if !name.starts_with(b"user.") || name.contains(&0) {
            return Err(Errno::EOPNOTSUPP);
        }
        ctx.control(id)
    }

    fn get_xattr(&self, req: FGetXattrReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        let node = self.xattr_node(ctx, req.fd, &req.name)?;
        let mut buf = vec![0u8; usize::from(u16::MAX)];
        let n =
            rustix::fs::fgetxattr(&node.fd, req.name.as_slice(), &mut buf[..]).map_err(errno)?;
        if req.buf_size != 0 && n > req.buf_size as usize {
            return Err(Errno::ERANGE);
        }
        buf.truncate(n);
        Ok(Reply::new(Response::FGetXattr(FGetXattrResp {
            value: buf,
        })))
    }

    fn set_xattr(&self, req: FSetXattrReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        self.check_writable()?;
        let node = self.xattr_node(ctx, req.fd, &req.name)?;
        let flags = rustix::fs::XattrFlags::from_bits(req.flags).ok_or(Errno::EINVAL)?;
        rustix::fs::fsetxattr(&node.fd, req.name.as_slice(), &req.value, flags).map_err(errno)?;
        Ok(Reply::new(Response::FSetXattr))
    }

    fn list_xattr(&self, req: FListXattrReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        let node = ctx.control(req.fd)?;
        let mut buf = vec![0u8; 64 << 10];
        let n = rustix::fs::flistxattr(&node.fd, &mut buf[..]).map_err(errno)?;
        let names: Vec<Vec<u8>> = buf[..n]
            .split(|b| *b == 0)
            .filter(|s| s.starts_with(b"user."))
            .map(<[u8]>::to_vec)
            .collect();
        let total: usize = names.iter().map(|n| n.len() + 1).sum();
        if req.size != 0 && total as u64 > req.size {
            return Err(Errno::ERANGE);
        }
        Ok(Reply::new(Response::FListXattr(FListXattrResp { names })))
    }

    fn remove_xattr(&self, req: FRemoveXattrReq, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        self.check_writable()?;
        let node = self.xattr_node(ctx, req.fd, &req.name)?;
        rustix::fs::fremovexattr(&node.fd, req.name.as_slice()).map_err(errno)?;
        Ok(Reply::new(Response::FRemoveXattr))
    }
}

impl FileServer for HostFs {
    type Control = Node;
    type Open = OpenFile;

    fn supported(&self) -> &[Mid] {
        SUPPORTED
    }

    fn mount(&self) -> Result<(Node, Statx, Option<OwnedFd>), Errno> {
        let fd = match rustix::fs::openat(
            &self.root,
            c".",
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(_) => rustix::io::dup(&self.root).map_err(errno)?,
        };
        let donated = if self.config.directfs {
            Some(rustix::io::fcntl_dupfd_cloexec(&fd, 0).map_err(errno)?)
        } else {
            None
        };
        let (node, stat) = self.node(fd)?;
        Ok((node, stat, donated))
    }

    fn handle(&self, req: Request, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        match req {
            Request::FStat(r) => self.fstat_any(r.fd, ctx),
            Request::SetStat(r) => self.set_stat(r, ctx),
            Request::Walk(r) => self.walk(r, ctx),
            Request::WalkStat(r) => self.walk_stat(r, ctx),
            Request::OpenAt(r) => self.open_at(r, ctx),
            Request::OpenCreateAt(r) => self.open_create_at(r, ctx),
            Request::FSync(r) => self.fsync(r, ctx),
            Request::PWrite(r) => self.pwrite(r, ctx),
            Request::PRead(r) => self.pread(r, ctx),
            Request::MkdirAt(r) => self.mkdir_at(r, ctx),
            Request::MknodAt(r) => self.mknod_at(r, ctx),
            Request::SymlinkAt(r) => self.symlink_at(r, ctx),
            Request::LinkAt(r) => self.link_at(r, ctx),
            Request::FStatFS(r) => self.fstatfs(r, ctx),
            Request::FAllocate(r) => self.fallocate(r, ctx),
            Request::ReadLinkAt(r) => self.read_link_at(r, ctx),
            Request::UnlinkAt(r) => self.unlink_at(r, ctx),
            Request::RenameAt(r) => {
                self.rename(ctx, r.old_dir, &r.old_name, r.new_dir, &r.new_name, 0)?;
                Ok(Reply::new(Response::RenameAt))
            }
            Request::RenameAt2(r) => {
                self.rename(ctx, r.old_dir, &r.old_name, r.new_dir, &r.new_name, r.flags)?;
                Ok(Reply::new(Response::RenameAt2))
            }
            Request::Getdents64(r) => self.getdents64(r, ctx),
            Request::FGetXattr(r) => self.get_xattr(r, ctx),
            Request::FSetXattr(r) => self.set_xattr(r, ctx),
            Request::FListXattr(r) => self.list_xattr(r, ctx),
            Request::FRemoveXattr(r) => self.remove_xattr(r, ctx),
            _ => Err(Errno::EOPNOTSUPP),
        }
    }
}
