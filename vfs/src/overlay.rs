//! overlayfs: a writable upper directory tree over a read-only lower one,
//! with Linux overlayfs semantics (Documentation/filesystems/overlayfs.rst)
//! for one lower layer and without redirect_dir.
//!
//! Whiteouts are 0/0 character devices in the upper and opaque directories
//! carry `trusted.overlay.opaque=y`; both stay invisible through the
//! overlay. A node is copied up (parents first) before anything changes it.
//!
//! Locking: one overlay-wide mutex serialises every operation that looks
//! at or changes the namespace (and so copy-up); each node's own mutex is
//! only held briefly and never two at a time. Data reads and writes go to
//! the layers' open files without either.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use abi::{Errno, Stat};

use crate::inode::{
    dirent_type, DirEntry, FileOps, Inode, NodeKind, SetAttr, StatFs, TimeSpec, TimeUpdate,
    RENAME_EXCHANGE, RENAME_NOREPLACE,
};
use crate::{Result, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK};

const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
/// The overlay's own xattrs in the upper layer: hidden from users.
const PRIVATE_XATTR_PREFIX: &str = "trusted.overlay.";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Set on copy-up to the lower inode number, so a copied-up file keeps its
/// inode number even once the overlay no longer looks at the lower (after
/// a rename or a remount).
const ORIGIN_XATTR: &str = "trusted.overlay.origin";
/// Marks inode numbers taken from the upper layer, so they cannot collide
/// with lower ones.
const UPPER_INO_BIT: u64 = 1 << 62;
const COPY_CHUNK: usize = 128 << 10;

/// An overlay of `upper` (writable) on `lower` (read-only); both must be
/// directories. Returns the overlay's root.
pub fn new(upper: Arc<dyn Inode>, lower: Arc<dyn Inode>, dev: u64) -> Result<Arc<dyn Inode>> {
    let lower_st = lower.stat()?;
    if upper.stat()?.mode & S_IFMT != S_IFDIR || lower_st.mode & S_IFMT != S_IFDIR {
        return Err(Errno::ENOTDIR);
    }
    let ovl = Arc::new(Ovl {
        dev,
        upper_root: upper.clone(),
        lock: Mutex::new(()),
    });
    let root = Resolved {
        upper: Some(upper),
        lower: Some(lower),
        ftype: S_IFDIR,
        ino: lower_st.ino,
    };
    Ok(ONode::build(&ovl, root, None, String::new()))
}

struct Ovl {
    dev: u64,
    upper_root: Arc<dyn Inode>,
    /// Serialises namespace operations (see the module comment).
    lock: Mutex<()>,
}

/// What a name resolves to through the layers.
struct Resolved {
    upper: Option<Arc<dyn Inode>>,
    /// For a directory: the lower directory merged into it (none when
    /// opaque). For other kinds: set only while not copied up.
    lower: Option<Arc<dyn Inode>>,
    ftype: u32,
    ino: u64,
}

struct ONode {
    ovl: Arc<Ovl>,
    me: Weak<ONode>,
    /// Fixed for the node's life: copy-up and rename keep it.
    ino: u64,
    ftype: u32,
    state: Mutex<OState>,
}

struct OState {
    upper: Option<Arc<dyn Inode>>,
    lower: Option<Arc<dyn Inode>>,
    /// Where the node sits, for copying up its parents; None for the root.
    parent: Option<Arc<ONode>>,
    name: String,
    /// Unlinked, removed or replaced: must not be copied up again.
    removed: bool,
    /// Nodes already handed out, so one name keeps one node (a copy-up is
    /// seen by everyone holding it).
    children: HashMap<String, Weak<ONode>>,
}

type Layer = Arc<dyn Inode>;

fn is_whiteout(st: &Stat) -> bool {
    st.mode & S_IFMT == S_IFCHR && st.rdev == 0
}

fn is_opaque(dir: &Layer) -> bool {
    matches!(dir.getxattr(OPAQUE_XATTR), Ok(v) if v == b"y")
}

fn origin(node: &Layer) -> Option<u64> {
    let v = node.getxattr(ORIGIN_XATTR).ok()?;
    Some(u64::from_le_bytes(v.try_into().ok()?))
}

/// `name` in `dir` with its attributes, or None.
fn lookup_in(dir: Option<&Layer>, name: &str) -> Result<Option<(Layer, Stat)>> {
    let Some(dir) = dir else { return Ok(None) };
    match dir.lookup(name) {
        Ok(n) => {
            let st = n.stat()?;
            Ok(Some((n, st)))
        }
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn make_whiteout(dir: &Layer, name: &str) -> Result<()> {
    dir.create(name, NodeKind::CharDevice(0), 0, (0, 0))
        .map(|_| ())
}

/// Removes `name` from the upper `dir` if it is a whiteout; says whether it was.
fn remove_whiteout(dir: &Layer, name: &str) -> Result<bool> {
    match lookup_in(Some(dir), name)? {
        Some((_, st)) if is_whiteout(&st) => dir.unlink(name).map(|_| true),
        Some(_) => Err(Errno::EEXIST),
        None => Ok(false),
    }
}

/// Deletes the whiteouts of an upper directory that looks empty through
/// the overlay, so the directory itself can go.
fn clear_whiteouts(dir: &Layer) -> Result<()> {
    for e in dir.read_dir()? {
        if matches!(lookup_in(Some(dir), &e.name)?, Some((_, st)) if is_whiteout(&st)) {
            dir.unlink(&e.name)?;
        }
    }
    Ok(())
}

fn write_all(f: &dyn FileOps, mut buf: &[u8], mut offset: u64) -> Result<()> {
    while !buf.is_empty() {
        let n = f.write(buf, offset)?;
        if n == 0 {
            return Err(Errno::EIO);
        }
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// Copies data, xattrs and times of `lower` to the new upper node `upper`.
fn copy_contents(lower: &Layer, upper: &Layer, st: &Stat, with_data: bool) -> Result<()> {
    if st.mode & S_IFMT == S_IFREG && with_data {
        let src = lower.open(libc::O_RDONLY)?;
        let dst = upper.open(libc::O_WRONLY)?;
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut off = 0u64;
        let size = st.size as u64;
        while off < size {
            let n = src.read(&mut buf, off)?;
            if n == 0 {
                break;
            }
            // Zero pages stay holes, so sparse files stay sparse.
            let mut page_off = off;
            for page in buf[..n].chunks(4096) {
                if page.iter().any(|&b| b != 0) {
                    write_all(dst.as_ref(), page, page_off)?;
                }
                page_off += page.len() as u64;
            }
            off += n as u64;
        }
        upper.setattr(&SetAttr {
            size: Some(size),
            ..SetAttr::default()
        })?;
    }
    let names = match lower.listxattr() {
        Ok(names) => names,
        Err(Errno::EOPNOTSUPP) => Vec::new(),
        Err(e) => return Err(e),
    };
    for name in names {
        let user = name.starts_with("user.");
        if !user && !name.starts_with("security.") {
            continue;
        }
        let value = match lower.getxattr(&name) {
            Ok(v) => v,
            Err(Errno::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        let set = upper.setxattr(&name, &value, 0);
        // security.* is best effort: the upper may refuse some labels.
        if user {
            set?;
        }
    }
    // Best effort: without it the inode number changes after a remount.
    let _ = upper.setxattr(ORIGIN_XATTR, &st.ino.to_le_bytes(), 0);
    let time = |sec, nsec| Some(TimeUpdate::At(TimeSpec { sec, nsec }));
    upper.setattr(&SetAttr {
        atime: time(st.atime_sec, st.atime_nsec),
        mtime: time(st.mtime_sec, st.mtime_nsec),
        ..SetAttr::default()
    })
}

fn same_layer_node(a: &Option<Layer>, b: &Option<Layer>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            std::ptr::eq(Arc::as_ptr(a) as *const (), Arc::as_ptr(b) as *const ())
        }
        _ => false,
    }
}

impl ONode {
    fn build(ovl: &Arc<Ovl>, r: Resolved, parent: Option<Arc<ONode>>, name: String) -> Arc<ONode> {
        Arc::new_cyclic(|me| ONode {
            ovl: ovl.clone(),
            me: me.clone(),
            ino: r.ino,
            ftype: r.ftype,
            state: Mutex::new(OState {
                upper: r.upper,
                lower: r.lower,
                parent,
                name,
                removed: false,
                children: HashMap::new(),
            }),
        })
    }

    fn st(&self) -> MutexGuard<'_, OState> {
        self.state.lock().unwrap()
    }

    fn big_lock(&self) -> MutexGuard<'_, ()> {
        self.ovl.lock.lock().unwrap()
    }

    fn arc(&self) -> Arc<ONode> {
        // Nodes are only reachable through an Arc, so this cannot fail.
        self.me.upgrade().expect("overlay node without an Arc")
    }

    fn is_dir(&self) -> bool {
        self.ftype == S_IFDIR
    }

    fn layers(&self) -> (Option<Layer>, Option<Layer>) {
        let s = self.st();
        (s.upper.clone(), s.lower.clone())
    }

    /// The layer that answers for the node: the upper if there is one.
    fn top(&self) -> Layer {
        let s = self.st();
        match (&s.upper, &s.lower) {
            (Some(n), _) | (None, Some(n)) => n.clone(),
            (None, None) => unreachable!("overlay node without a layer"),
        }
    }

    fn check_live_dir(&self) -> Result<()> {
        if !self.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if self.st().removed {
            return Err(Errno::ENOENT);
        }
        Ok(())
    }

    /// What `name` in this directory is through the overlay, if anything.
    fn resolve(&self, name: &str) -> Result<Option<Resolved>> {
        let (upper, lower) = self.layers();
        if let Some((u, ust)) = lookup_in(upper.as_ref(), name)? {
            if is_whiteout(&ust) {
                return Ok(None);
            }
            let ftype = ust.mode & S_IFMT;
            let mut merged = None;
            if ftype == S_IFDIR && !is_opaque(&u) {
                if let Some((l, lst)) = lookup_in(lower.as_ref(), name)? {
                    if lst.mode & S_IFMT == S_IFDIR {
                        merged = Some((l, lst.ino));
                    }
                }
            }
            let ino = match &merged {
                Some((_, ino)) => *ino,
                None => origin(&u).unwrap_or(ust.ino | UPPER_INO_BIT),
            };
            return Ok(Some(Resolved {
                upper: Some(u),
                lower: merged.map(|(l, _)| l),
                ftype,
                ino,
            }));
        }
        match lookup_in(lower.as_ref(), name)? {
            Some((l, lst)) if !is_whiteout(&lst) => Ok(Some(Resolved {
                upper: None,
                lower: Some(l),
                ftype: lst.mode & S_IFMT,
                ino: lst.ino,
            })),
            _ => Ok(None),
        }
    }

    /// Whether the lower layer has `name` here, visible or hidden by the upper.
    fn lower_positive(&self, name: &str) -> Result<bool> {
        let (_, lower) = self.layers();
        Ok(matches!(lookup_in(lower.as_ref(), name)?, Some((_, st)) if !is_whiteout(&st)))
    }

    fn adopt(&self, name: &str, r: Resolved) -> Arc<ONode> {
        let node = ONode::build(&self.ovl, r, Some(self.arc()), name.to_string());
        let mut s = self.st();
        if s.children.len() >= 64 && s.children.len().is_power_of_two() {
            s.children.retain(|_, w| w.strong_count() > 0);
        }
        s.children.insert(name.to_string(), Arc::downgrade(&node));
        node
    }

    /// The node called `name` here (the overlay lock is held).
    fn child(&self, name: &str) -> Result<Arc<ONode>> {
        self.check_live_dir()?;
        if let Some(c) = self.st().children.get(name).and_then(Weak::upgrade) {
            return Ok(c);
        }
        let r = self.resolve(name)?.ok_or(Errno::ENOENT)?;
        Ok(self.adopt(name, r))
    }

    fn child_opt(&self, name: &str) -> Result<Option<Arc<ONode>>> {
        match self.child(name) {
            Ok(c) => Ok(Some(c)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Drops `name` from the node cache after it left the namespace.
    fn forget(&self, name: &str) {
        let gone = self.st().children.remove(name).and_then(|w| w.upgrade());
        if let Some(c) = gone {
            c.st().removed = true;
        }
    }

    fn parent(&self) -> Option<Arc<ONode>> {
        self.st().parent.clone()
    }

    /// Whether `self` is `dir` or lies beneath it.
    fn is_within(&self, dir: &ONode) -> bool {
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

    /// Makes sure the node has an upper (copying parents first) and returns
    /// it. `with_data` false skips a regular file's data (truncate to 0).
    fn copy_up(&self, with_data: bool) -> Result<Layer> {
        let (upper, lower, parent, name, removed) = {
            let s = self.st();
            (
                s.upper.clone(),
                s.lower.clone(),
                s.parent.clone(),
                s.name.clone(),
                s.removed,
            )
        };
        if let Some(u) = upper {
            return Ok(u);
        }
        if removed {
            return Err(Errno::ENOENT);
        }
        let (Some(lower), Some(parent)) = (lower, parent) else {
            return Err(Errno::EIO);
        };
        let dir = parent.copy_up(true)?;
        let st = lower.stat()?;
        let kind = match st.mode & S_IFMT {
            S_IFDIR => NodeKind::Directory,
            S_IFREG => NodeKind::Regular,
            S_IFLNK => NodeKind::Symlink(lower.readlink()?),
            S_IFCHR => NodeKind::CharDevice(st.rdev),
            S_IFBLK => NodeKind::BlockDevice(st.rdev),
            S_IFIFO => NodeKind::Fifo,
            S_IFSOCK => NodeKind::Socket,
            _ => return Err(Errno::EIO),
        };
        let upper = dir.create(&name, kind, st.mode & 0o7777, (st.uid, st.gid))?;
        if let Err(e) = copy_contents(&lower, &upper, &st, with_data) {
            // A half-made copy must not hide the lower.
            let _ = if self.is_dir() {
                dir.rmdir(&name)
            } else {
                dir.unlink(&name)
            };
            return Err(e);
        }
        let mut s = self.st();
        s.upper = Some(upper.clone());
        if !self.is_dir() {
            s.lower = None;
        }
        Ok(upper)
    }

    fn read_dir_locked(&self) -> Result<Vec<DirEntry>> {
        if !self.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let (upper, lower) = self.layers();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        if let Some(u) = &upper {
            for e in u.read_dir()? {
                if let Some(r) = self.resolve(&e.name)? {
                    out.push(DirEntry {
                        ino: r.ino,
                        kind: dirent_type(r.ftype),
                        name: e.name.clone(),
                    });
                }
                seen.insert(e.name);
            }
        }
        if let Some(l) = &lower {
            for e in l.read_dir()? {
                if seen.contains(&e.name) {
                    continue;
                }
                if e.kind == dirent_type(S_IFCHR)
                    && matches!(lookup_in(Some(l), &e.name)?, Some((_, st)) if is_whiteout(&st))
                {
                    continue;
                }
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Copies up this directory and clears a whiteout at `name`, ready for
    /// a new entry there. Returns the upper directory and whether a
    /// whiteout was removed.
    fn prepare_entry(&self, name: &str) -> Result<(Layer, bool)> {
        if self.resolve(name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        let dir = self.copy_up(true)?;
        let had_whiteout = remove_whiteout(&dir, name)?;
        Ok((dir, had_whiteout))
    }

    fn rename_locked(&self, old: &str, nd: &Arc<ONode>, new: &str, flags: u32) -> Result<()> {
        nd.check_live_dir()?;
        let src = self.child(old)?;
        let dst = nd.child_opt(new)?;
        let exchange = flags & RENAME_EXCHANGE != 0;
        if exchange && dst.is_none() {
            return Err(Errno::ENOENT);
        }
        if flags & RENAME_NOREPLACE != 0 && dst.is_some() {
            return Err(Errno::EEXIST);
        }
        if let Some(d) = &dst {
            if Arc::ptr_eq(d, &src) || same_layer_node(&d.layers().0, &src.layers().0) {
                return Ok(());
            }
        }
        if src.is_dir() && nd.is_within(&src) {
            return Err(Errno::EINVAL);
        }
        if let Some(d) = &dst {
            if exchange {
                if d.is_dir() && self.is_within(d) {
                    return Err(Errno::EINVAL);
                }
            } else {
                match (src.is_dir(), d.is_dir()) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    (true, true) if !d.read_dir_locked()?.is_empty() => {
                        return Err(Errno::ENOTEMPTY)
                    }
                    _ => {}
                }
            }
        }
        // Without redirect_dir a directory from the lower cannot move: its
        // lower part would stay behind. `mv` copies instead on EXDEV.
        let unmovable = |n: &ONode| n.is_dir() && n.layers().1.is_some();
        if unmovable(&src) || (exchange && dst.as_deref().is_some_and(unmovable)) {
            return Err(Errno::EXDEV);
        }

        let old_dir = self.copy_up(true)?;
        let new_dir = nd.copy_up(true)?;
        let src_upper = src.copy_up(true)?;
        let mut dst_upper = None;
        if let Some(d) = &dst {
            if exchange {
                dst_upper = Some(d.copy_up(true)?);
            } else if let (true, Some(du)) = (d.is_dir(), d.layers().0) {
                clear_whiteouts(&du)?;
            }
        }
        let mut had_whiteout = false;
        if !exchange {
            had_whiteout = match remove_whiteout(&new_dir, new) {
                Ok(had) => had,
                // A real upper entry there is the one being replaced.
                Err(Errno::EEXIST) => false,
                Err(e) => return Err(e),
            };
        }
        if let Err(e) = old_dir.rename(old, &new_dir, new, flags & RENAME_EXCHANGE) {
            if had_whiteout {
                let _ = make_whiteout(&new_dir, new);
            }
            return Err(e);
        }
        if !exchange && self.lower_positive(old)? {
            make_whiteout(&old_dir, old)?;
        }
        // A directory moved onto a name the lower has must hide it.
        if src.is_dir() && nd.lower_positive(new)? {
            src_upper.setxattr(OPAQUE_XATTR, b"y", 0)?;
        }
        if let (Some(d), Some(du)) = (&dst, &dst_upper) {
            if d.is_dir() && self.lower_positive(old)? {
                du.setxattr(OPAQUE_XATTR, b"y", 0)?;
            }
        }

        // Move the cached nodes along.
        self.st().children.remove(old);
        if exchange {
            nd.st().children.remove(new);
        } else {
            nd.forget(new);
        }
        {
            let mut s = src.st();
            s.parent = Some(nd.clone());
            s.name = new.to_string();
        }
        nd.st()
            .children
            .insert(new.to_string(), Arc::downgrade(&src));
        if let (true, Some(d)) = (exchange, &dst) {
            {
                let mut s = d.st();
                s.parent = Some(self.arc());
                s.name = old.to_string();
            }
            self.st()
                .children
                .insert(old.to_string(), Arc::downgrade(d));
        }
        Ok(())
    }
}

fn downcast<'a>(me: &ONode, inode: &'a Arc<dyn Inode>) -> Result<&'a ONode> {
    match inode.as_any().downcast_ref::<ONode>() {
        Some(n) if Arc::ptr_eq(&n.ovl, &me.ovl) => Ok(n),
        _ => Err(Errno::EXDEV),
    }
}

fn private(name: &str) -> bool {
    name.starts_with(PRIVATE_XATTR_PREFIX)
}

impl Inode for ONode {
    fn stat(&self) -> Result<Stat> {
        let (top, merged) = {
            let s = self.st();
            let merged = self.is_dir() && s.upper.is_some() && s.lower.is_some();
            (s.upper.as_ref().or(s.lower.as_ref()).cloned(), merged)
        };
        let mut st = top.expect("overlay node without a layer").stat()?;
        st.dev = self.ovl.dev;
        st.ino = self.ino;
        // A merged directory's subdirectory count is unknown; 1 tells
        // find(1) and friends not to rely on it, as Linux does.
        if merged {
            st.nlink = 1;
        }
        Ok(st)
    }

    fn statfs(&self) -> Result<StatFs> {
        let mut s = self.ovl.upper_root.statfs()?;
        s.fs_type = OVERLAYFS_SUPER_MAGIC;
        Ok(s)
    }

    fn setattr(&self, attr: &SetAttr) -> Result<()> {
        if attr.size.is_some() {
            match self.ftype {
                S_IFREG => {}
                S_IFDIR => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
        }
        let _g = self.big_lock();
        let upper = self.copy_up(attr.size != Some(0))?;
        upper.setattr(attr)
    }

    fn lookup(&self, name: &str) -> Result<Arc<dyn Inode>> {
        let _g = self.big_lock();
        Ok(self.child(name)?)
    }

    fn create(
        &self,
        name: &str,
        kind: NodeKind,
        mode: u32,
        owner: (u32, u32),
    ) -> Result<Arc<dyn Inode>> {
        let _g = self.big_lock();
        self.check_live_dir()?;
        let (dir, had_whiteout) = self.prepare_entry(name)?;
        let is_dir = kind == NodeKind::Directory;
        let made = dir.create(name, kind, mode, owner).and_then(|u| {
            // Where a whiteout was, the lower directory must stay hidden.
            if is_dir && had_whiteout {
                if let Err(e) = u.setxattr(OPAQUE_XATTR, b"y", 0) {
                    let _ = dir.rmdir(name);
                    return Err(e);
                }
            }
            Ok(u)
        });
        let upper = match made {
            Ok(u) => u,
            Err(e) => {
                if had_whiteout {
                    let _ = make_whiteout(&dir, name);
                }
                return Err(e);
            }
        };
        let st = upper.stat()?;
        let r = Resolved {
            upper: Some(upper),
            lower: None,
            ftype: st.mode & S_IFMT,
            ino: st.ino | UPPER_INO_BIT,
        };
        Ok(self.adopt(name, r))
    }

    fn link(&self, name: &str, target: &Arc<dyn Inode>) -> Result<()> {
        let t = downcast(self, target)?;
        if t.is_dir() {
            return Err(Errno::EPERM);
        }
        let _g = self.big_lock();
        self.check_live_dir()?;
        if self.resolve(name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        let tu = t.copy_up(true)?;
        let (dir, had_whiteout) = self.prepare_entry(name)?;
        if let Err(e) = dir.link(name, &tu) {
            if had_whiteout {
                let _ = make_whiteout(&dir, name);
            }
            return Err(e);
        }
        // Same file, same inode number (the origin xattr is shared too).
        let r = Resolved {
            upper: Some(tu),
            lower: None,
            ftype: t.ftype,
            ino: t.ino,
        };
        self.adopt(name, r);
        Ok(())
    }

    fn unlink(&self, name: &str) -> Result<()> {
        let _g = self.big_lock();
        let child = self.child(name)?;
        if child.is_dir() {
            return Err(Errno::EISDIR);
        }
        let dir = self.copy_up(true)?;
        if child.layers().0.is_some() {
            dir.unlink(name)?;
        }
        if self.lower_positive(name)? {
            make_whiteout(&dir, name)?;
        }
        self.forget(name);
        Ok(())
    }

    fn rmdir(&self, name: &str) -> Result<()> {
        let _g = self.big_lock();
        let child = self.child(name)?;
        if !child.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if !child.read_dir_locked()?.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        let dir = self.copy_up(true)?;
        if let Some(cu) = child.layers().0 {
            clear_whiteouts(&cu)?;
            dir.rmdir(name)?;
        }
        if self.lower_positive(name)? {
            make_whiteout(&dir, name)?;
        }
        self.forget(name);
        Ok(())
    }

    fn rename(&self, old: &str, new_dir: &Arc<dyn Inode>, new: &str, flags: u32) -> Result<()> {
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
            || flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        {
            return Err(Errno::EINVAL);
        }
        let nd = downcast(self, new_dir)?.arc();
        let _g = self.big_lock();
        self.check_live_dir()?;
        self.rename_locked(old, &nd, new, flags)
    }

    fn read_dir(&self) -> Result<Vec<DirEntry>> {
        let _g = self.big_lock();
        self.read_dir_locked()
    }

    fn readlink(&self) -> Result<String> {
        self.top().readlink()
    }

    fn open(&self, flags: i32) -> Result<Arc<dyn FileOps>> {
        // Only regular files need their own copy to write to; devices and
        // FIFOs are opened where they are.
        if flags & libc::O_ACCMODE != libc::O_RDONLY && self.ftype == S_IFREG {
            let _g = self.big_lock();
            self.copy_up(true)?;
        }
        self.top().open(flags)
    }

    fn getxattr(&self, name: &str) -> Result<Vec<u8>> {
        if private(name) {
            return Err(Errno::EOPNOTSUPP);
        }
        self.top().getxattr(name)
    }

    fn setxattr(&self, name: &str, value: &[u8], flags: i32) -> Result<()> {
        if private(name) {
            return Err(Errno::EOPNOTSUPP);
        }
        let _g = self.big_lock();
        self.copy_up(true)?.setxattr(name, value, flags)
    }

    fn listxattr(&self) -> Result<Vec<String>> {
        let mut names = self.top().listxattr()?;
        names.retain(|n| !private(n));
        Ok(names)
    }

    fn removexattr(&self, name: &str) -> Result<()> {
        if private(name) {
            return Err(Errno::EOPNOTSUPP);
        }
        let _g = self.big_lock();
        // Nothing to remove: no reason to copy up.
        if self.layers().0.is_none() {
            self.top().getxattr(name)?;
        }
        self.copy_up(true)?.removexattr(name)
    }

    fn prefetch(&self, names: &[&str]) {
        // The lower layer is the one whose lookups may cost a round trip
        // (goferfs); the upper is memory.
        if self.is_dir() {
            if let (_, Some(lower)) = self.layers() {
                lower.prefetch(names);
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
