//! The mount tree of one mount namespace.
//!
//! A [`Mounts`] is one namespace. [`Mounts::copy`] makes another whose
//! mounts are copies of these (same filesystems and dentries, new mount
//! objects), as unshare(CLONE_NEWNS) and clone(CLONE_NEWNS) do; from then
//! on mounting or unmounting in one changes nothing in the other. Every
//! mount knows the namespace it belongs to, so a walk from a location in
//! another namespace (a descriptor opened before unshare) crosses that
//! namespace's mounts, as Linux's walk follows the mount's own tree.
//! There is no shared-subtree propagation: every mount is private.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use abi::Errno;

use crate::dentry::Dentry;
use crate::inode::Inode;
use crate::Result;

/// Mount flags the VFS enforces (`MS_*`).
pub const MS_RDONLY: u32 = 1;
pub const MS_NOSUID: u32 = 2;
pub const MS_NODEV: u32 = 4;
pub const MS_NOEXEC: u32 = 8;

/// A filesystem (or a part of one, for bind mounts) attached somewhere.
pub struct Mount {
    id: u64,
    root: Arc<Dentry>,
    flags: AtomicU32,
    /// The filesystem's name (`tmpfs`, `proc`, ...) and source, for
    /// `/proc/self/mounts`.
    pub fs_type: String,
    pub source: String,
    /// Where it is attached: the parent mount and the dentry covered.
    parent: Mutex<Option<Location>>,
    /// The mount table of the namespace it belongs to (empty for a
    /// detached mount that never belonged to one).
    ns: Weak<Mutex<Covering>>,
}

impl Mount {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn root(&self) -> &Arc<Dentry> {
        &self.root
    }

    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    pub fn set_flags(&self, flags: u32) {
        self.flags.store(flags, Ordering::Relaxed);
    }

    pub fn read_only(&self) -> bool {
        self.flags() & MS_RDONLY != 0
    }

    /// The mount point: parent mount and the dentry this mount covers.
    pub fn mountpoint(&self) -> Option<Location> {
        self.parent.lock().unwrap().clone()
    }
}

/// A position in the tree: a dentry as seen through a mount.
#[derive(Clone)]
pub struct Location {
    pub mount: Arc<Mount>,
    pub dentry: Arc<Dentry>,
}

impl Location {
    pub fn inode(&self) -> &Arc<dyn Inode> {
        self.dentry.inode()
    }

    pub fn same(&self, other: &Location) -> bool {
        Arc::ptr_eq(&self.mount, &other.mount) && Arc::ptr_eq(&self.dentry, &other.dentry)
    }

    pub fn is_mount_root(&self) -> bool {
        Arc::ptr_eq(&self.dentry, &self.mount.root)
    }
}

/// (parent mount id, covered dentry address) → the mounts stacked there,
/// the last one on top.
type Covering = HashMap<(u64, usize), Vec<Arc<Mount>>>;

/// A mount namespace: every mount and where it sits.
pub struct Mounts {
    /// The root mount (pivot_root changes it).
    root: Mutex<Arc<Mount>>,
    covering: Arc<Mutex<Covering>>,
    /// Mount ids, shared by a namespace and its copies so ids stay unique
    /// across them (the covering tables are keyed by them).
    next_id: Arc<AtomicU64>,
    /// The namespace's inode number (`mnt:[N]` in `/proc/[pid]/ns/mnt`).
    ino: u32,
}

/// Inode numbers of namespaces, from where Linux's dynamic proc inodes
/// start (`PROC_DYNAMIC_FIRST`); every kind of namespace draws from it.
static NEXT_NS_INO: AtomicU32 = AtomicU32::new(0xF000_0000);

/// A fresh namespace inode number.
pub fn new_ns_ino() -> u32 {
    NEXT_NS_INO.fetch_add(1, Ordering::Relaxed)
}

/// What [`Mounts::copy`] made of each mount: old mount id → its copy.
pub struct CopyMap(HashMap<u64, Arc<Mount>>);

impl CopyMap {
    /// `loc` moved into the copy: the same dentry on the copy of its
    /// mount. A location on a mount the copy does not have (one detached
    /// earlier) stays where it is, as Linux's copy_mnt_ns leaves it.
    pub fn location(&self, loc: &Location) -> Location {
        match self.0.get(&loc.mount.id) {
            Some(m) => Location {
                mount: m.clone(),
                dentry: loc.dentry.clone(),
            },
            None => loc.clone(),
        }
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        // The dentries' mount counts cover every namespace; take this
        // one's out, so a directory mounted on only here is no longer busy.
        let covering = self.covering.lock().unwrap_or_else(|e| e.into_inner());
        for stack in covering.values() {
            for m in stack {
                if let Some(at) = m.mountpoint() {
                    at.dentry.remove_mount();
                }
            }
        }
    }
}

fn key(loc: &Location) -> (u64, usize) {
    (loc.mount.id, Arc::as_ptr(&loc.dentry) as *const () as usize)
}

impl Mounts {
    /// A namespace whose root is the filesystem rooted at `root`.
    pub fn new(root: Arc<dyn Inode>, fs_type: &str, source: &str, flags: u32) -> Mounts {
        let covering = Arc::new(Mutex::new(HashMap::new()));
        let mount = Arc::new(Mount {
            id: 1,
            root: Dentry::new_root(root),
            flags: AtomicU32::new(flags),
            fs_type: fs_type.into(),
            source: source.into(),
            parent: Mutex::new(None),
            ns: Arc::downgrade(&covering),
        });
        Mounts {
            root: Mutex::new(mount),
            covering,
            next_id: Arc::new(AtomicU64::new(2)),
            ino: new_ns_ino(),
        }
    }

    /// The namespace's inode number.
    pub fn ino(&self) -> u32 {
        self.ino
    }

    /// Whether `m` is attached in this namespace (its root mount, or
    /// mounted somewhere in it): not another namespace's, not detached.
    pub fn contains(&self, m: &Arc<Mount>) -> bool {
        Weak::ptr_eq(&m.ns, &Arc::downgrade(&self.covering))
            && (m.mountpoint().is_some() || Arc::ptr_eq(m, &self.root.lock().unwrap()))
    }

    /// A new namespace whose mounts are copies of this one's, at the same
    /// places, with the same flags (Linux's copy_mnt_ns). The map moves
    /// locations (a task's root and working directory) into the copy.
    pub fn copy(&self) -> (Mounts, CopyMap) {
        let old = self.all();
        let covering = Arc::new(Mutex::new(HashMap::new()));
        let ns = Arc::downgrade(&covering);
        let mut map = HashMap::new();
        for m in &old {
            let copy = Arc::new(Mount {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                root: m.root.clone(),
                flags: AtomicU32::new(m.flags()),
                fs_type: m.fs_type.clone(),
                source: m.source.clone(),
                parent: Mutex::new(None),
                ns: ns.clone(),
            });
            map.insert(m.id, copy);
        }
        let mut table: Covering = HashMap::new();
        for ((pid, at), stack) in self.covering.lock().unwrap().iter() {
            let Some(parent) = map.get(pid) else {
                continue;
            };
            let mut copies = Vec::new();
            for m in stack {
                let (Some(copy), Some(point)) = (map.get(&m.id), m.mountpoint()) else {
                    continue;
                };
                point.dentry.add_mount();
                *copy.parent.lock().unwrap() = Some(Location {
                    mount: parent.clone(),
                    dentry: point.dentry,
                });
                copies.push(copy.clone());
            }
            if !copies.is_empty() {
                table.insert((parent.id, *at), copies);
            }
        }
        *covering.lock().unwrap() = table;
        let root = map[&old[0].id].clone();
        let mounts = Mounts {
            root: Mutex::new(root),
            covering,
            next_id: self.next_id.clone(),
            ino: new_ns_ino(),
        };
        (mounts, CopyMap(map))
    }

    /// The namespace's root directory.
    pub fn root(&self) -> Location {
        let root = self.root.lock().unwrap().clone();
        Location {
            dentry: root.root.clone(),
            mount: root,
        }
    }

    /// pivot_root(2): the mount whose root `new_root` is becomes the
    /// namespace's root, and the old root mount is attached at `put_old`
    /// (at or beneath `new_root`). EINVAL unless `new_root` is a mount
    /// root attached below the root, EBUSY if it is the root mount.
    pub fn pivot_root(&self, new_root: &Location, put_old: &Location) -> Result<()> {
        if !self.contains(&new_root.mount) || !self.contains(&put_old.mount) {
            return Err(Errno::EINVAL);
        }
        let old = self.root.lock().unwrap().clone();
        if Arc::ptr_eq(&new_root.mount, &old) || Arc::ptr_eq(&put_old.mount, &old) {
            return Err(Errno::EBUSY);
        }
        if !new_root.is_mount_root() {
            return Err(Errno::EINVAL);
        }
        // put_old must be reachable from new_root.
        let mut cur = Some(put_old.clone());
        let mut under = false;
        while let Some(l) = cur {
            if Arc::ptr_eq(&l.mount, &new_root.mount) {
                under = l.dentry.is_within(&new_root.dentry);
                break;
            }
            cur = l.mount.mountpoint();
        }
        if !under {
            return Err(Errno::EINVAL);
        }
        let at = new_root.mount.mountpoint().ok_or(Errno::EINVAL)?;
        let mut covering = self.covering.lock().unwrap();
        let stack = covering.get_mut(&key(&at)).ok_or(Errno::EINVAL)?;
        let pos = stack
            .iter()
            .position(|m| Arc::ptr_eq(m, &new_root.mount))
            .ok_or(Errno::EINVAL)?;
        stack.remove(pos);
        if stack.is_empty() {
            covering.remove(&key(&at));
        }
        at.dentry.remove_mount();
        *new_root.mount.parent.lock().unwrap() = None;
        put_old.dentry.add_mount();
        covering.entry(key(put_old)).or_default().push(old.clone());
        *old.parent.lock().unwrap() = Some(put_old.clone());
        *self.root.lock().unwrap() = new_root.mount.clone();
        Ok(())
    }

    /// Attach the filesystem rooted at `root` (a dentry, so bind mounts can
    /// attach part of a mounted filesystem) on top of `at`.
    pub fn mount(
        &self,
        at: &Location,
        root: Arc<Dentry>,
        fs_type: &str,
        source: &str,
        flags: u32,
    ) -> Result<Arc<Mount>> {
        // Linux's graft_tree: only onto this namespace's mounts.
        if !self.contains(&at.mount) {
            return Err(Errno::EINVAL);
        }
        let mount = Arc::new(Mount {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            root,
            flags: AtomicU32::new(flags),
            fs_type: fs_type.into(),
            source: source.into(),
            parent: Mutex::new(Some(at.clone())),
            ns: Arc::downgrade(&self.covering),
        });
        at.dentry.add_mount();
        self.covering
            .lock()
            .unwrap()
            .entry(key(at))
            .or_default()
            .push(mount.clone());
        Ok(mount)
    }

    /// Mount a new filesystem whose root node is `inode`.
    pub fn mount_fs(
        &self,
        at: &Location,
        inode: Arc<dyn Inode>,
        fs_type: &str,
        source: &str,
        flags: u32,
    ) -> Result<Arc<Mount>> {
        self.mount(at, Dentry::new_root(inode), fs_type, source, flags)
    }

    /// A mount of `inode` that is attached nowhere: a place for things
    /// that have no path (what a magic link to a pipe leads to).
    pub fn detached(&self, inode: Arc<dyn Inode>, fs_type: &str) -> Location {
        let mount = Arc::new(Mount {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            root: Dentry::new_root(inode),
            flags: AtomicU32::new(0),
            fs_type: fs_type.into(),
            source: "none".into(),
            parent: Mutex::new(None),
            ns: Weak::new(),
        });
        Location {
            dentry: mount.root.clone(),
            mount,
        }
    }

    /// Detach the mount whose root `loc` is. EBUSY if something is mounted
    /// beneath it; EINVAL if `loc` is not a mount root or is the
    /// namespace's root.
    pub fn unmount(&self, loc: &Location) -> Result<()> {
        if !loc.is_mount_root() {
            return Err(Errno::EINVAL);
        }
        if !self.contains(&loc.mount) {
            return Err(Errno::EINVAL);
        }
        let at = loc.mount.mountpoint().ok_or(Errno::EINVAL)?;
        let mut covering = self.covering.lock().unwrap();
        if covering.keys().any(|(id, _)| *id == loc.mount.id) {
            return Err(Errno::EBUSY);
        }
        let stack = covering.get_mut(&key(&at)).ok_or(Errno::EINVAL)?;
        let pos = stack
            .iter()
            .position(|m| Arc::ptr_eq(m, &loc.mount))
            .ok_or(Errno::EINVAL)?;
        stack.remove(pos);
        if stack.is_empty() {
            covering.remove(&key(&at));
        }
        at.dentry.remove_mount();
        *loc.mount.parent.lock().unwrap() = None;
        Ok(())
    }

    /// The mounts attached directly inside `parent`.
    pub fn submounts(&self, parent: &Mount) -> Vec<Arc<Mount>> {
        let covering = self.covering.lock().unwrap();
        let mut kids: Vec<Arc<Mount>> = covering
            .iter()
            .filter(|((pid, _), _)| *pid == parent.id)
            .flat_map(|(_, s)| s.iter().cloned())
            .collect();
        kids.sort_by_key(|m| m.id);
        kids
    }

    /// Detach the mount whose root `loc` is and everything mounted inside
    /// it, deepest first (umount2's MNT_DETACH: whoever still uses them
    /// keeps them; they are just no longer reachable by path).
    pub fn detach_tree(&self, loc: &Location) -> Result<()> {
        if !loc.is_mount_root() || loc.mount.mountpoint().is_none() {
            return Err(Errno::EINVAL);
        }
        for kid in self.submounts(&loc.mount) {
            self.detach_tree(&Location {
                dentry: kid.root.clone(),
                mount: kid,
            })?;
        }
        self.unmount(loc)
    }

    /// Move the mount whose root `from` is, with everything inside it, on
    /// top of `to` (MS_MOVE). EINVAL for the namespace's root, for a
    /// `from` that is not a mount root, or a `to` inside the mount itself.
    pub fn move_mount(&self, from: &Location, to: &Location) -> Result<()> {
        if !from.is_mount_root() || !self.contains(&from.mount) || !self.contains(&to.mount) {
            return Err(Errno::EINVAL);
        }
        let old_at = from.mount.mountpoint().ok_or(Errno::EINVAL)?;
        // `to` may not lie within the moved tree.
        let mut cur = Some(to.clone());
        while let Some(l) = cur {
            if Arc::ptr_eq(&l.mount, &from.mount) {
                return Err(Errno::EINVAL);
            }
            cur = l.mount.mountpoint();
        }
        let mut covering = self.covering.lock().unwrap();
        let stack = covering.get_mut(&key(&old_at)).ok_or(Errno::EINVAL)?;
        let pos = stack
            .iter()
            .position(|m| Arc::ptr_eq(m, &from.mount))
            .ok_or(Errno::EINVAL)?;
        stack.remove(pos);
        if stack.is_empty() {
            covering.remove(&key(&old_at));
        }
        old_at.dentry.remove_mount();
        to.dentry.add_mount();
        covering
            .entry(key(to))
            .or_default()
            .push(from.mount.clone());
        *from.mount.parent.lock().unwrap() = Some(to.clone());
        Ok(())
    }

    /// Step from a mount point into what is mounted on it (the top of the
    /// stack, repeatedly); other locations come back unchanged.
    /// The mounts looked at are those of the namespace `loc`'s mount
    /// belongs to, which is normally this one.
    pub fn enter(&self, mut loc: Location) -> Location {
        while loc.dentry.is_mountpoint() {
            let Some(table) = loc.mount.ns.upgrade() else {
                break;
            };
            let top = table
                .lock()
                .unwrap()
                .get(&key(&loc))
                .and_then(|s| s.last().cloned());
            match top {
                Some(m) => {
                    loc = Location {
                        dentry: m.root.clone(),
                        mount: m,
                    }
                }
                None => break,
            }
        }
        loc
    }

    /// Every mount, parents before children, for `/proc/self/mounts`.
    pub fn all(&self) -> Vec<Arc<Mount>> {
        let covering = self.covering.lock().unwrap();
        let mut out = vec![self.root.lock().unwrap().clone()];
        let mut i = 0;
        while i < out.len() {
            let id = out[i].id;
            let mut kids: Vec<Arc<Mount>> = covering
                .iter()
                .filter(|((pid, _), _)| *pid == id)
                .flat_map(|(_, s)| s.iter().cloned())
                .collect();
            kids.sort_by_key(|m| m.id);
            out.extend(kids);
            i += 1;
        }
        out
    }
}

/// The parent of `loc` as `..` sees it: across mount boundaries, but never
/// above `root`.
pub fn parent_of(loc: &Location, root: &Location) -> Location {
    let mut loc = loc.clone();
    loop {
        if loc.same(root) {
            return loc;
        }
        if !loc.is_mount_root() {
            break;
        }
        match loc.mount.mountpoint() {
            Some(at) => loc = at,
            None => return loc,
        }
    }
    match loc.dentry.parent() {
        Some((p, _)) => Location {
            mount: loc.mount,
            dentry: p,
        },
        None => loc,
    }
}

/// The path of `dentry` from the root of its filesystem, whatever is
/// mounted where (mountinfo's root field: where a bind mount's root lies
/// in the filesystem it shows).
pub fn path_in_fs(dentry: &Arc<Dentry>) -> String {
    let mut names = Vec::new();
    let mut cur = dentry.clone();
    while let Some((parent, name)) = cur.parent() {
        names.push(name);
        cur = parent;
    }
    if names.is_empty() {
        return "/".to_string();
    }
    names.iter().rev().fold(String::new(), |mut p, n| {
        p.push('/');
        p.push_str(n);
        p
    })
}

/// The path of `loc` as seen from `root` ("/" for the root itself). A
/// location outside `root` (a chroot escaped by an open directory) is named
/// from its topmost ancestor, as Linux does; a deleted one gets
/// " (deleted)" appended.
pub fn path_of(loc: &Location, root: &Location) -> String {
    let mut names: Vec<String> = Vec::new();
    let mut cur = loc.clone();
    loop {
        if cur.same(root) {
            break;
        }
        if cur.is_mount_root() {
            match cur.mount.mountpoint() {
                Some(at) => {
                    cur = at;
                    continue;
                }
                None => break,
            }
        }
        match cur.dentry.parent() {
            Some((p, name)) => {
                names.push(name);
                cur.dentry = p;
            }
            None => break,
        }
    }
    let mut path = String::new();
    for n in names.iter().rev() {
        path.push('/');
        path.push_str(n);
    }
    if path.is_empty() {
        path.push('/');
    }
    if loc.dentry.is_deleted() {
        path.push_str(" (deleted)");
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tmpfs::{self, TmpfsOptions};
    use crate::walk::Context;
    use crate::Creds;

    fn tmpfs() -> Arc<dyn Inode> {
        tmpfs::new(TmpfsOptions {
            mode: 0o1777,
            size_limit: 1 << 20,
            ..TmpfsOptions::default()
        })
    }

    fn lookup(mounts: &Mounts, root: &Location, path: &str) -> Result<Location> {
        let creds = Creds::root();
        let ctx = Context {
            mounts,
            root,
            creds: &creds,
        };
        ctx.lookup(root, path, true)
    }

    fn mkdir(mounts: &Mounts, path: &str) {
        let root = mounts.root();
        let creds = Creds::root();
        let ctx = Context {
            mounts,
            root: &root,
            creds: &creds,
        };
        ctx.make(&root, path, crate::NodeKind::Directory, 0o755)
            .unwrap();
    }

    /// A namespace with tmpfs mounts on /a and /a/b.
    fn tree() -> Mounts {
        let ns = Mounts::new(tmpfs(), "tmpfs", "root", 0);
        mkdir(&ns, "/a");
        let a = lookup(&ns, &ns.root(), "/a").unwrap();
        ns.mount_fs(&a, tmpfs(), "tmpfs", "a", MS_NOSUID).unwrap();
        mkdir(&ns, "/a/b");
        mkdir(&ns, "/c");
        let b = lookup(&ns, &ns.root(), "/a/b").unwrap();
        ns.mount_fs(&b, tmpfs(), "tmpfs", "b", 0).unwrap();
        ns
    }

    fn sources(ns: &Mounts) -> Vec<String> {
        ns.all().iter().map(|m| m.source.clone()).collect()
    }

    #[test]
    fn a_copy_has_the_same_tree_in_new_mounts() {
        let ns = tree();
        let (copy, map) = ns.copy();
        assert_eq!(sources(&copy), ["root", "a", "b"]);
        assert_ne!(copy.ino(), ns.ino());
        for (old, new) in ns.all().iter().zip(copy.all()) {
            assert!(!Arc::ptr_eq(old, &new));
            assert_ne!(old.id(), new.id());
            assert!(Arc::ptr_eq(old.root(), new.root()));
            assert_eq!(old.flags(), new.flags());
            assert!(copy.contains(&new) && !ns.contains(&new) && !copy.contains(old));
        }
        // Walks in the copy stay in the copy.
        let b = lookup(&copy, &copy.root(), "/a/b").unwrap();
        assert!(copy.contains(&b.mount));
        assert_eq!(path_of(&b, &copy.root()), "/a/b");
        // Locations move to the copies of their mounts.
        let old_b = lookup(&ns, &ns.root(), "/a/b").unwrap();
        assert!(map.location(&old_b).same(&b));
        assert!(map.location(&ns.root()).same(&copy.root()));
    }

    #[test]
    fn mounts_after_the_copy_stay_in_their_namespace() {
        let ns = tree();
        let (copy, _) = ns.copy();
        let c = lookup(&copy, &copy.root(), "/c").unwrap();
        copy.mount_fs(&c, tmpfs(), "tmpfs", "new", 0).unwrap();
        assert_eq!(sources(&copy), ["root", "a", "new", "b"]);
        assert_eq!(sources(&ns), ["root", "a", "b"]);
        let in_ns = lookup(&ns, &ns.root(), "/c").unwrap();
        assert!(Arc::ptr_eq(&in_ns.mount, &ns.root().mount));
        // Unmounting in the original leaves the copy's.
        let b = lookup(&ns, &ns.root(), "/a/b").unwrap();
        ns.unmount(&b).unwrap();
        assert_eq!(sources(&ns), ["root", "a"]);
        assert_eq!(sources(&copy), ["root", "a", "new", "b"]);
        // Neither namespace takes the other's mounts.
        let copy_b = lookup(&copy, &copy.root(), "/a/b").unwrap();
        assert_eq!(ns.unmount(&copy_b).err(), Some(Errno::EINVAL));
        assert_eq!(
            ns.mount_fs(&copy_b, tmpfs(), "tmpfs", "x", 0).err(),
            Some(Errno::EINVAL)
        );
        // A location from the other namespace walks that namespace's tree.
        let a_in_copy = lookup(&copy, &copy.root(), "/a").unwrap();
        let creds = Creds::root();
        let ctx = Context {
            mounts: &ns,
            root: &ns.root(),
            creds: &creds,
        };
        let b2 = ctx.lookup(&a_in_copy, "b", true).unwrap();
        assert!(Arc::ptr_eq(&b2.mount, &copy_b.mount));
    }

    #[test]
    fn a_dropped_copy_leaves_no_mount_points_behind() {
        let ns = tree();
        let (copy, _) = ns.copy();
        let c = lookup(&copy, &copy.root(), "/c").unwrap();
        copy.mount_fs(&c, tmpfs(), "tmpfs", "new", 0).unwrap();
        assert!(c.dentry.is_mountpoint());
        drop(copy);
        assert!(!c.dentry.is_mountpoint());
        let a = lookup(&ns, &ns.root(), "/a").unwrap();
        let a_point = a.mount.mountpoint().unwrap();
        assert!(a_point.dentry.is_mountpoint());
    }
}
