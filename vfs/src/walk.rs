//! Path resolution and the operations that take paths: the part of the
//! VFS every filesystem shares (symlinks, `..`, mount crossings,
//! permission checks, read-only mounts, the sticky bit).

use std::sync::Arc;

use abi::{Errno, Stat};

use crate::dentry::Dentry;
use crate::file::FileDescription;
use crate::inode::*;
use crate::mount::{self, Location, Mounts, MS_NODEV, MS_RDONLY};
use crate::notify::{
    self, IN_ACCESS, IN_ATTRIB, IN_CREATE, IN_DELETE, IN_MODIFY, IN_MOVED_FROM, IN_MOVED_TO,
    IN_MOVE_SELF, IN_OPEN,
};
use crate::{Result, NAME_MAX, S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};

/// Access wanted, as in Linux's `MAY_*`.
pub const MAY_EXEC: u32 = 1;
pub const MAY_WRITE: u32 = 2;
pub const MAY_READ: u32 = 4;

/// Symlinks followed in one resolution before ELOOP (Linux's MAXSYMLINKS).
const MAX_SYMLINKS: u32 = 40;

/// `openat2` RESOLVE_* flags.
pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;
pub const RESOLVE_CACHED: u64 = 0x20;

/// Whether `creds` may access a node with attributes `st` as `may` asks
/// (Linux's generic_permission: owner, group or other bits, then the
/// DAC-override capabilities).
pub fn permission(creds: &Creds, st: &Stat, may: u32) -> Result<()> {
    let bits = if creds.uid == st.uid {
        st.mode >> 6
    } else if creds.in_group(st.gid) {
        st.mode >> 3
    } else {
        st.mode
    } & 7;
    if bits & may == may {
        return Ok(());
    }
    let is_dir = st.mode & S_IFMT == S_IFDIR;
    if creds.has_cap(CAP_DAC_OVERRIDE) {
        // Execute needs some execute bit, except on directories.
        if may & MAY_EXEC == 0 || is_dir || st.mode & 0o111 != 0 {
            return Ok(());
        }
    }
    if creds.has_cap(CAP_DAC_READ_SEARCH) && (may == MAY_READ || is_dir && may & MAY_WRITE == 0) {
        return Ok(());
    }
    Err(Errno::EACCES)
}

/// Who walks, from where: a task's view of the tree.
pub struct Context<'a> {
    pub mounts: &'a Mounts,
    /// The task's root (chroot); `..` stops here.
    pub root: &'a Location,
    pub creds: &'a Creds,
}

struct Walk {
    links: u32,
    resolve: u64,
    /// Where RESOLVE_BENEATH / RESOLVE_IN_ROOT confine the walk.
    anchor: Option<Location>,
}

/// Tell the filesystem of `dir` which names the walk is about to look up,
/// `name` not being cached: the plain names from `name` on (up to a `.`
/// or `..`; `rest` is the path after `name`), if there are at least two.
fn prefetch(dir: &Location, name: &str, rest: &str) {
    let ahead: Vec<&str> = std::iter::once(name)
        .chain(rest.split('/').filter(|p| !p.is_empty()))
        .take_while(|p| *p != "." && *p != ".." && check_name(p).is_ok())
        .collect();
    if ahead.len() >= 2 {
        dir.inode().prefetch(&ahead);
    }
}

/// The first component of `path` (after any slashes) and the path after
/// it; None once only slashes are left.
fn next_component(path: &str) -> Option<(&str, &str)> {
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        return None;
    }
    Some(path.split_once('/').unwrap_or((path, "")))
}

fn check_name(name: &str) -> Result<()> {
    if name.len() > NAME_MAX {
        Err(Errno::ENAMETOOLONG)
    } else {
        Ok(())
    }
}

impl Context<'_> {
    fn may_search(&self, dir: &Location) -> Result<()> {
        if !dir.dentry.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if self.creds.has_cap(CAP_DAC_READ_SEARCH) || self.creds.has_cap(CAP_DAC_OVERRIDE) {
            return Ok(());
        }
        permission(self.creds, &dir.inode().stat()?, MAY_EXEC)
    }

    /// [`permission`] on the node at `loc`. Without MAY_EXEC,
    /// CAP_DAC_OVERRIDE lets every access through whatever the mode says,
    /// so the node's attributes (a host call on host files) are not asked.
    fn may_access(&self, loc: &Location, may: u32) -> Result<()> {
        if may & MAY_EXEC == 0 && self.creds.has_cap(CAP_DAC_OVERRIDE) {
            return Ok(());
        }
        permission(self.creds, &loc.inode().stat()?, may)
    }

    fn top(&self, w: &Walk) -> Location {
        w.anchor.clone().unwrap_or_else(|| self.root.clone())
    }

    /// Resolve `path` from `start` one component at a time; the last
    /// component's symlink is followed when `follow` says so or the path
    /// ends in a slash.
    fn walk(&self, start: &Location, path: &str, follow: bool, w: &mut Walk) -> Result<Location> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        let mut cur = if path.starts_with('/') {
            if w.resolve & RESOLVE_BENEATH != 0 {
                return Err(Errno::EXDEV);
            }
            self.top(w)
        } else {
            start.clone()
        };
        let trailing = path.ends_with('/');
        let mut rest = path;
        while let Some((part, after)) = next_component(rest) {
            let last = next_component(after).is_none();
            self.may_search(&cur)?;
            cur = self.step(&cur, part, after, !last || follow || trailing, w)?;
            rest = after;
        }
        if trailing && !cur.dentry.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(cur)
    }

    /// One component from the directory `cur` (`rest`: the path after it).
    fn step(
        &self,
        cur: &Location,
        part: &str,
        rest: &str,
        follow: bool,
        w: &mut Walk,
    ) -> Result<Location> {
        match part {
            "." => return Ok(cur.clone()),
            ".." => {
                let top = self.top(w);
                if w.resolve & RESOLVE_BENEATH != 0 && cur.same(&top) {
                    return Err(Errno::EXDEV);
                }
                let up = mount::parent_of(cur, &top);
                if w.resolve & RESOLVE_NO_XDEV != 0 && !Arc::ptr_eq(&up.mount, &cur.mount) {
                    return Err(Errno::EXDEV);
                }
                return Ok(up);
            }
            _ => {}
        }
        check_name(part)?;
        let child = match cur.dentry.cached_live_child(part) {
            Some(d) => d,
            None => {
                prefetch(cur, part, rest);
                cur.dentry.child(part)?
            }
        };
        let next = self.mounts.enter(Location {
            mount: cur.mount.clone(),
            dentry: child,
        });
        if w.resolve & RESOLVE_NO_XDEV != 0 && !Arc::ptr_eq(&next.mount, &cur.mount) {
            return Err(Errno::EXDEV);
        }
        if !follow || !next.dentry.is_symlink() {
            return Ok(next);
        }
        if w.resolve & RESOLVE_NO_SYMLINKS != 0 {
            return Err(Errno::ELOOP);
        }
        w.links += 1;
        if w.links > MAX_SYMLINKS {
            return Err(Errno::ELOOP);
        }
        if let Some(place) = next.inode().jump() {
            if w.resolve & (RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH | RESOLVE_IN_ROOT) != 0 {
                return Err(Errno::ELOOP);
            }
            return place;
        }
        let target = next.inode().readlink()?;
        self.walk(cur, &target, true, w)
    }

    fn new_walk(&self, start: &Location, resolve: u64) -> Walk {
        let anchor = (resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) != 0).then(|| start.clone());
        Walk {
            links: 0,
            resolve,
            anchor,
        }
    }

    /// The location `path` names, starting at `start` for relative paths.
    pub fn lookup(&self, start: &Location, path: &str, follow: bool) -> Result<Location> {
        self.walk(start, path, follow, &mut self.new_walk(start, 0))
    }

    /// Like [`lookup`](Self::lookup) with `openat2` RESOLVE_* flags.
    pub fn lookup_resolve(
        &self,
        start: &Location,
        path: &str,
        follow: bool,
        resolve: u64,
    ) -> Result<Location> {
        let mut w = self.new_walk(start, resolve);
        if resolve & RESOLVE_IN_ROOT != 0 && path.starts_with('/') {
            let top = self.top(&w);
            return self.walk(&top, path.trim_start_matches('/'), follow, &mut w);
        }
        self.walk(start, path, follow, &mut w)
    }

    /// The directory holding the last component of `path`, that component
    /// (`.` for a path of slashes only) and whether the path ended in `/`.
    pub fn lookup_parent(&self, start: &Location, path: &str) -> Result<(Location, String, bool)> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        let trimmed = path.trim_end_matches('/');
        let trailing = trimmed.len() != path.len();
        if trimmed.is_empty() {
            return Ok((self.root.clone(), ".".into(), trailing));
        }
        let (dir_path, name) = match trimmed.rfind('/') {
            Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
            None => ("", trimmed),
        };
        let dir = if dir_path.is_empty() {
            start.clone()
        } else {
            self.lookup(start, dir_path, true)?
        };
        self.may_search(&dir)?;
        check_name(name)?;
        Ok((dir, name.to_string(), trailing))
    }

    /// The child `name` of `dir` (not following a final symlink), with
    /// mounts entered.
    fn child(&self, dir: &Location, name: &str) -> Result<Location> {
        let d = dir.dentry.child(name)?;
        Ok(self.mounts.enter(Location {
            mount: dir.mount.clone(),
            dentry: d,
        }))
    }

    fn writable_mount(loc: &Location) -> Result<()> {
        if loc.mount.flags() & MS_RDONLY != 0 {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// Write and search permission on `dir` for adding or removing entries.
    fn may_modify(&self, dir: &Location) -> Result<()> {
        Self::writable_mount(dir)?;
        permission(self.creds, &dir.inode().stat()?, MAY_WRITE | MAY_EXEC)
    }

    /// The sticky-bit rule: in a sticky directory only the owner of the
    /// entry or of the directory (or CAP_FOWNER) may remove or rename it.
    fn sticky_ok(&self, dir: &Location, victim: &Stat) -> Result<()> {
        let d = dir.inode().stat()?;
        if d.mode & 0o1000 == 0
            || self.creds.uid == victim.uid
            || self.creds.uid == d.uid
            || self.creds.has_cap(CAP_FOWNER)
        {
            Ok(())
        } else {
            Err(Errno::EPERM)
        }
    }

    /// The owner and extra mode bits of a node created in `dir` (a setgid
    /// directory hands down its group, and to new directories its bit).
    fn new_owner(&self, dir: &Location, mode: u32, is_dir: bool) -> Result<((u32, u32), u32)> {
        let d = dir.inode().stat()?;
        if d.mode & 0o2000 != 0 {
            let mode = if is_dir { mode | 0o2000 } else { mode };
            Ok(((self.creds.uid, d.gid), mode))
        } else {
            Ok(((self.creds.uid, self.creds.gid), mode))
        }
    }

    /// Create `name` in `dir` (permission checks included).
    fn create_in(&self, dir: &Location, name: &str, kind: NodeKind, mode: u32) -> Result<Location> {
        self.may_modify(dir)?;
        let is_dir = kind == NodeKind::Directory;
        let (owner, mode) = self.new_owner(dir, mode & 0o7777, is_dir)?;
        let inode = dir.inode().create(name, kind, mode, owner)?;
        notify::dir_event(dir, name, IN_CREATE, is_dir, 0);
        Ok(Location {
            mount: dir.mount.clone(),
            dentry: dir.dentry.adopt(name, inode),
        })
    }

    /// `openat(2)` and `openat2(2)`: `mode` already has the umask applied.
    pub fn open(
        &self,
        start: &Location,
        path: &str,
        flags: i32,
        mode: u32,
        resolve: u64,
    ) -> Result<Arc<FileDescription>> {
        if flags & libc::O_TMPFILE == libc::O_TMPFILE {
            tracing::info!("open: O_TMPFILE not supported: EOPNOTSUPP");
            return Err(Errno::EOPNOTSUPP);
        }
        let follow = flags & libc::O_NOFOLLOW == 0;
        if flags & libc::O_CREAT == 0 {
            let loc = self.lookup_resolve(start, path, follow, resolve)?;
            return self.open_location(loc, flags, false);
        }
        // O_CREAT: a trailing slash or a last component of `.`/`..`
        // names a directory, which open does not create.
        let mut w = self.new_walk(start, resolve);
        let (mut dir, mut name, trailing) = self.lookup_parent(start, path)?;
        if trailing || name == "." || name == ".." {
            return Err(Errno::EISDIR);
        }
        loop {
            match self.child(&dir, &name) {
                Ok(loc) if flags & libc::O_EXCL != 0 => {
                    let _ = loc;
                    return Err(Errno::EEXIST);
                }
                Ok(loc) if loc.dentry.is_symlink() => {
                    if !follow || resolve & RESOLVE_NO_SYMLINKS != 0 {
                        return Err(Errno::ELOOP);
                    }
                    // Follow it; a dangling link creates its target.
                    w.links += 1;
                    if w.links > MAX_SYMLINKS {
                        return Err(Errno::ELOOP);
                    }
                    if let Some(place) = loc.inode().jump() {
                        return self.open_location(place?, flags, false);
                    }
                    let target = loc.inode().readlink()?;
                    let (d, n, t) = self.lookup_parent(&dir, &target)?;
                    if t || n == "." || n == ".." {
                        return Err(Errno::EISDIR);
                    }
                    (dir, name) = (d, n);
                }
                Ok(loc) => return self.open_location(loc, flags, false),
                Err(Errno::ENOENT) => {
                    let loc = self.create_in(&dir, &name, NodeKind::Regular, mode)?;
                    return self.open_location(loc, flags, true);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Open what `loc` names, with open(2)'s checks (`created`: it was
    /// just made by this open, so its mode does not restrict the opener).
    pub fn open_location(
        &self,
        loc: Location,
        flags: i32,
        created: bool,
    ) -> Result<Arc<FileDescription>> {
        let kind = loc.dentry.file_type()?;
        if flags & libc::O_PATH != 0 {
            if flags & libc::O_DIRECTORY != 0 && kind != S_IFDIR {
                return Err(Errno::ENOTDIR);
            }
            return Ok(FileDescription::new(
                loc,
                Arc::new(PathOnly),
                flags & (libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC),
            ));
        }
        if kind == S_IFLNK {
            return Err(Errno::ELOOP);
        }
        let acc = flags & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        let trunc = flags & libc::O_TRUNC != 0;
        if flags & libc::O_DIRECTORY != 0 && kind != S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        if kind == S_IFDIR && (write || acc == 3) {
            return Err(Errno::EISDIR);
        }
        if !created {
            let mut may = 0;
            if acc == libc::O_RDONLY || acc == libc::O_RDWR {
                may |= MAY_READ;
            }
            if write || trunc {
                may |= MAY_WRITE;
            }
            self.may_access(&loc, may)?;
        }
        if (kind == S_IFCHR || kind == S_IFBLK) && loc.mount.flags() & MS_NODEV != 0 {
            return Err(Errno::EACCES);
        }
        if (write || trunc) && (kind == S_IFREG || kind == S_IFDIR) {
            Self::writable_mount(&loc)?;
        }
        if trunc && kind == S_IFREG && !created {
            loc.inode().setattr(&SetAttr {
                size: Some(0),
                ..SetAttr::default()
            })?;
            notify::file_event(&loc, IN_MODIFY);
        }
        let ops = match loc.inode().open(flags) {
            Err(Errno::EMFILE | Errno::ENFILE) if crate::dentry::relieve_fd_pressure() => {
                loc.inode().open(flags)?
            }
            other => other?,
        };
        let file = FileDescription::new(loc, ops, flags);
        if let Some(loc) = file.location() {
            notify::file_event(loc, IN_OPEN);
        }
        Ok(file)
    }

    /// `mkdirat`, `mknodat`, `symlinkat`: make a node at `path`.
    pub fn make(&self, start: &Location, path: &str, kind: NodeKind, mode: u32) -> Result<()> {
        let (dir, name, trailing) = self.lookup_parent(start, path)?;
        if name == "." || name == ".." {
            return Err(Errno::EEXIST);
        }
        if trailing && kind != NodeKind::Directory {
            // `mknod("x/")`: Linux looks it up as a directory.
            return match self.child(&dir, &name) {
                Ok(_) => Err(Errno::EEXIST),
                Err(Errno::ENOENT) => Err(Errno::ENOENT),
                Err(e) => Err(e),
            };
        }
        if let NodeKind::CharDevice(_) | NodeKind::BlockDevice(_) = kind {
            if !self.creds.has_cap(CAP_MKNOD) {
                return Err(Errno::EPERM);
            }
        }
        match self.child(&dir, &name) {
            Ok(_) => return Err(Errno::EEXIST),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        self.create_in(&dir, &name, kind, mode).map(|_| ())
    }

    /// `linkat`: `new_path` becomes another name for what `old` names.
    pub fn link(&self, old: &Location, new_start: &Location, new_path: &str) -> Result<()> {
        if old.dentry.is_dir() {
            return Err(Errno::EPERM);
        }
        let (dir, name, trailing) = self.lookup_parent(new_start, new_path)?;
        if name == "." || name == ".." {
            return Err(Errno::EEXIST);
        }
        if trailing {
            return Err(Errno::ENOENT);
        }
        if !Arc::ptr_eq(&dir.mount, &old.mount) {
            return Err(Errno::EXDEV);
        }
        match self.child(&dir, &name) {
            Ok(_) => return Err(Errno::EEXIST),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        self.may_modify(&dir)?;
        dir.inode().link(&name, old.inode())?;
        notify::self_event(old.inode(), IN_ATTRIB);
        notify::dir_event(&dir, &name, IN_CREATE, false, 0);
        Ok(())
    }

    /// `unlinkat` without AT_REMOVEDIR.
    pub fn unlink(&self, start: &Location, path: &str) -> Result<()> {
        let (dir, name, trailing) = self.lookup_parent(start, path)?;
        if name == "." || name == ".." {
            return Err(Errno::EISDIR);
        }
        let victim = self.child_no_enter(&dir, &name)?;
        if victim.is_dir() {
            return Err(Errno::EISDIR);
        }
        if trailing {
            return Err(Errno::ENOTDIR);
        }
        self.may_modify(&dir)?;
        self.sticky_ok(&dir, &victim.inode().stat()?)?;
        if victim.is_mountpoint() {
            return Err(Errno::EBUSY);
        }
        let node = victim.inode().clone();
        let key = notify::watched_key(&node);
        dir.inode().unlink(&name)?;
        dir.dentry.forget(&name);
        // Linux's order: the link count, the node's end, the entry's.
        notify::self_event(&node, IN_ATTRIB);
        let last = key.is_some() && notify::unlinked(&node);
        if last {
            notify::deleted(key);
        }
        notify::dir_event(&dir, &name, IN_DELETE, false, 0);
        if last {
            notify::forget(key);
        }
        Ok(())
    }

    /// `rmdir` and `unlinkat(AT_REMOVEDIR)`.
    pub fn rmdir(&self, start: &Location, path: &str) -> Result<()> {
        let (dir, name, _) = self.lookup_parent(start, path)?;
        match name.as_str() {
            "." => return Err(Errno::EINVAL),
            ".." => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        let victim = self.child_no_enter(&dir, &name)?;
        if !victim.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        self.may_modify(&dir)?;
        self.sticky_ok(&dir, &victim.inode().stat()?)?;
        if victim.is_mountpoint() {
            return Err(Errno::EBUSY);
        }
        let key = notify::watched_key(victim.inode());
        dir.inode().rmdir(&name)?;
        dir.dentry.forget(&name);
        notify::deleted(key);
        notify::dir_event(&dir, &name, IN_DELETE, true, 0);
        notify::forget(key);
        Ok(())
    }

    /// The dentry `name` in `dir` itself, not what may be mounted on it.
    fn child_no_enter(&self, dir: &Location, name: &str) -> Result<Arc<Dentry>> {
        dir.dentry.child(name)
    }

    /// `renameat2`.
    pub fn rename(
        &self,
        old_start: &Location,
        old_path: &str,
        new_start: &Location,
        new_path: &str,
        flags: u32,
    ) -> Result<()> {
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) != 0
            || flags & RENAME_EXCHANGE != 0 && flags & (RENAME_NOREPLACE | RENAME_WHITEOUT) != 0
        {
            return Err(Errno::EINVAL);
        }
        if flags & RENAME_WHITEOUT != 0 {
            return Err(Errno::EINVAL);
        }
        let (odir, oname, otrail) = self.lookup_parent(old_start, old_path)?;
        let (ndir, nname, ntrail) = self.lookup_parent(new_start, new_path)?;
        if [&oname, &nname].iter().any(|n| *n == "." || *n == "..") {
            return Err(Errno::EBUSY);
        }
        let src = self.child_no_enter(&odir, &oname)?;
        let src_dir = src.is_dir();
        if (otrail || ntrail) && !src_dir {
            return Err(Errno::ENOTDIR);
        }
        if !Arc::ptr_eq(&odir.mount, &ndir.mount) {
            return Err(Errno::EXDEV);
        }
        let dst = match self.child_no_enter(&ndir, &nname) {
            Ok(d) => Some(d),
            Err(Errno::ENOENT) if flags & RENAME_EXCHANGE == 0 => None,
            Err(e) => return Err(e),
        };
        if let Some(dst) = &dst {
            if Arc::ptr_eq(dst, &src) || Arc::ptr_eq(dst.inode(), src.inode()) {
                return Ok(());
            }
            if flags & RENAME_NOREPLACE != 0 {
                return Err(Errno::EEXIST);
            }
            if dst.is_mountpoint() {
                return Err(Errno::EBUSY);
            }
        }
        if src.is_mountpoint() {
            return Err(Errno::EBUSY);
        }
        // A directory cannot move beneath itself.
        if src_dir && ndir.dentry.is_within(&src) {
            return Err(Errno::EINVAL);
        }
        if let Some(dst) = &dst {
            if flags & RENAME_EXCHANGE != 0 && dst.is_dir() && odir.dentry.is_within(dst) {
                return Err(Errno::EINVAL);
            }
            if flags & RENAME_EXCHANGE == 0 && src.is_within(dst) {
                return Err(Errno::ENOTEMPTY);
            }
        }
        self.may_modify(&odir)?;
        self.may_modify(&ndir)?;
        self.sticky_ok(&odir, &src.inode().stat()?)?;
        if let Some(dst) = &dst {
            self.sticky_ok(&ndir, &dst.inode().stat()?)?;
        }
        // A directory moving to another parent rewrites its `..`.
        if src_dir && !Arc::ptr_eq(&odir.dentry, &ndir.dentry) {
            permission(self.creds, &src.inode().stat()?, MAY_WRITE)?;
        }
        let src_node = src.inode().clone();
        let dst_node = dst.as_ref().map(|d| (d.inode().clone(), d.is_dir()));
        let dst_key = dst_node.as_ref().and_then(|(n, _)| notify::watched_key(n));
        odir.inode().rename(&oname, ndir.inode(), &nname, flags)?;
        if flags & RENAME_EXCHANGE != 0 {
            odir.dentry.exchanged(&oname, &ndir.dentry, &nname);
        } else {
            odir.dentry.moved(&oname, &ndir.dentry, &nname);
        }
        let moved = |from: &Location,
                     a: &str,
                     to: &Location,
                     b: &str,
                     node: &Arc<dyn Inode>,
                     is_dir: bool| {
            let cookie = notify::next_cookie();
            notify::dir_event(from, a, IN_MOVED_FROM, is_dir, cookie);
            notify::dir_event(to, b, IN_MOVED_TO, is_dir, cookie);
            notify::self_event(node, IN_MOVE_SELF);
        };
        match &dst_node {
            Some((node, is_dir)) if flags & RENAME_EXCHANGE != 0 => {
                moved(&odir, &oname, &ndir, &nname, &src_node, src_dir);
                moved(&ndir, &nname, &odir, &oname, node, *is_dir);
            }
            Some((node, _)) => {
                // The replaced node loses a link, and maybe its last.
                let cookie = notify::next_cookie();
                notify::dir_event(&odir, &oname, IN_MOVED_FROM, src_dir, cookie);
                notify::dir_event(&ndir, &nname, IN_MOVED_TO, src_dir, cookie);
                notify::self_event(node, IN_ATTRIB);
                notify::self_event(&src_node, IN_MOVE_SELF);
                if dst_key.is_some() && notify::unlinked(node) {
                    notify::deleted(dst_key);
                    notify::forget(dst_key);
                }
            }
            None => moved(&odir, &oname, &ndir, &nname, &src_node, src_dir),
        }
        Ok(())
    }

    /// `chmod`, `chown`, `truncate`, `utimensat` on `loc`, with their
    /// permission rules. `size` needs write permission, checked here for
    /// paths (an fd's access mode is the caller's to check).
    pub fn setattr(&self, loc: &Location, mut attr: SetAttr, by_fd: bool) -> Result<()> {
        let st = loc.inode().stat()?;
        let owner = self.creds.uid == st.uid;
        let fowner = owner || self.creds.has_cap(CAP_FOWNER);
        let kind = st.mode & S_IFMT;
        if attr.size.is_some() {
            if kind == S_IFDIR {
                return Err(Errno::EISDIR);
            }
            if kind != S_IFREG {
                return Err(Errno::EINVAL);
            }
            if !by_fd {
                permission(self.creds, &st, MAY_WRITE)?;
            }
        }
        if let Some(mode) = attr.mode.as_mut() {
            if !fowner {
                return Err(Errno::EPERM);
            }
            let group = attr.gid.unwrap_or(st.gid);
            if *mode & 0o2000 != 0 && !self.creds.in_group(group) && !self.creds.has_cap(CAP_FSETID)
            {
                *mode &= !0o2000;
            }
        }
        let changes_uid = attr.uid.is_some_and(|u| u != st.uid);
        let changes_gid = attr.gid.is_some_and(|g| g != st.gid);
        if changes_uid && !self.creds.has_cap(CAP_CHOWN) {
            return Err(Errno::EPERM);
        }
        if let (Some(g), false) = (attr.gid, self.creds.has_cap(CAP_CHOWN)) {
            if !(owner && (self.creds.in_group(g) || g == st.gid)) {
                return Err(Errno::EPERM);
            }
        }
        if (changes_uid || changes_gid) && kind != S_IFDIR && attr.mode.is_none() {
            // chown clears set-user-ID, and set-group-ID when group-executable.
            let mut m = st.mode & 0o7777 & !0o4000;
            if st.mode & 0o010 != 0 {
                m &= !0o2000;
            }
            if m != st.mode & 0o7777 {
                attr.mode = Some(m);
            }
        }
        let explicit_time = matches!(attr.atime, Some(TimeUpdate::At(_)))
            || matches!(attr.mtime, Some(TimeUpdate::At(_)));
        if attr.atime.is_some() || attr.mtime.is_some() {
            if explicit_time {
                if !fowner {
                    return Err(Errno::EPERM);
                }
            } else if !fowner {
                permission(self.creds, &st, MAY_WRITE)?;
            }
        }
        let only_device_data =
            attr.size.is_none() && kind != S_IFREG && kind != S_IFDIR && kind != S_IFLNK;
        if !only_device_data || attr.mode.is_some() || attr.uid.is_some() || attr.gid.is_some() {
            Self::writable_mount(loc)?;
        }
        loc.inode().setattr(&attr)?;
        notify::file_event(loc, setattr_events(&attr));
        Ok(())
    }

    /// `access`/`faccessat`: `mode` is F_OK (0) or R/W/X_OK bits.
    pub fn access(&self, loc: &Location, mode: u32) -> Result<()> {
        let st = loc.inode().stat()?;
        if mode & MAY_WRITE != 0 && loc.mount.read_only() {
            let kind = st.mode & S_IFMT;
            if kind == S_IFREG || kind == S_IFDIR || kind == S_IFLNK {
                return Err(Errno::EROFS);
            }
        }
        if mode == 0 {
            return Ok(());
        }
        permission(self.creds, &st, mode)
    }

    /// The path of `loc` as this context's root sees it.
    pub fn path_of(&self, loc: &Location) -> String {
        mount::path_of(loc, self.root)
    }
}

/// What inotify reports for a change of attributes (Linux's
/// `fsnotify_change`): a size is a modification; a time alone is an access
/// or a modification, both times or ownership or mode are IN_ATTRIB.
fn setattr_events(attr: &SetAttr) -> u32 {
    let mut mask = 0;
    if attr.size.is_some() {
        mask |= IN_MODIFY;
    }
    if attr.uid.is_some() || attr.gid.is_some() || attr.mode.is_some() {
        mask |= IN_ATTRIB;
    }
    match (attr.atime.is_some(), attr.mtime.is_some()) {
        (true, true) => mask |= IN_ATTRIB,
        (true, false) => mask |= IN_ACCESS,
        (false, true) => mask |= IN_MODIFY,
        (false, false) => {}
    }
    mask
}

/// The "file" of an O_PATH descriptor: no data operations.
struct PathOnly;

impl FileOps for PathOnly {
    fn read(&self, _buf: &mut [u8], _offset: u64) -> Result<usize> {
        Err(Errno::EBADF)
    }

    fn write(&self, _buf: &[u8], _offset: u64) -> Result<usize> {
        Err(Errno::EBADF)
    }
}
