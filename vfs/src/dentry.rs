//! Dentries: the cached edges of the tree (parent, name → node).
//!
//! A dentry knows its parent and name, so a position in the tree can be
//! turned back into a path (`getcwd`, `/proc/self/fd/N`) and `..` never has
//! to ask the filesystem. Children are cached weakly: a dentry lives as
//! long as something (an open file, a working directory, a mount, a child)
//! holds it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use abi::Errno;

use crate::inode::Inode;
use crate::Result;

pub struct Dentry {
    inode: Arc<dyn Inode>,
    /// Parent and name; `None` for the root of a filesystem.
    link: Mutex<Option<(Arc<Dentry>, String)>>,
    children: Mutex<HashMap<String, Weak<Dentry>>>,
    /// How many mounts sit on this dentry (checked on every step of a walk).
    mounts: AtomicUsize,
    /// Unlinked (or rmdir'ed): its path reads " (deleted)".
    deleted: AtomicBool,
    /// The node's `S_IFMT` bits once known (a node never changes type), so
    /// walks do not stat every component; 0 until first asked.
    file_type: AtomicU32,
    /// Used since it last came up for eviction from the recent list.
    referenced: AtomicBool,
}

/// How many dentries stay cached after nothing else holds them. Without
/// this a path's dentries would die with each syscall that walked it, and
/// every walk would ask the filesystem (for the host layer, a host call per
/// component) again.
const RECENT: usize = 8192;

/// The recent list's length: RECENT, or a quarter of the descriptors the
/// process may hold when that is less (host-layer dentries hold one each).
fn recent_capacity() -> usize {
    static CAP: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CAP.get_or_init(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one struct rlimit into `lim`.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
        if ok {
            RECENT.min((lim.rlim_cur / 4) as usize).max(64)
        } else {
            RECENT
        }
    })
}

/// Out of host descriptors: let go of half the recently used dentries
/// (and the descriptors they hold). Returns whether any were dropped.
pub fn relieve_fd_pressure() -> bool {
    let dropped: Vec<Arc<Dentry>> = {
        let mut list = LIST.lock().unwrap();
        let n = list.len() / 2;
        list.drain(..n).collect()
    };
    !dropped.is_empty()
}

static LIST: Mutex<VecDeque<Arc<Dentry>>> = Mutex::new(VecDeque::new());

/// Hold `d` for a while: a bounded FIFO with a second chance for dentries
/// used again since they were last at its head (the clock algorithm).
fn keep_recent(d: &Arc<Dentry>) {
    let mut list = LIST.lock().unwrap();
    list.push_back(d.clone());
    let mut budget = 8;
    let cap = recent_capacity();
    while list.len() > cap && budget > 0 {
        budget -= 1;
        let Some(old) = list.pop_front() else { break };
        if old.referenced.swap(false, Ordering::Relaxed) {
            list.push_back(old);
        }
    }
    while list.len() > cap {
        list.pop_front();
    }
}

impl Dentry {
    /// The root dentry of a filesystem.
    pub fn new_root(inode: Arc<dyn Inode>) -> Arc<Dentry> {
        Arc::new(Dentry {
            inode,
            link: Mutex::new(None),
            children: Mutex::new(HashMap::new()),
            mounts: AtomicUsize::new(0),
            deleted: AtomicBool::new(false),
            file_type: AtomicU32::new(0),
            referenced: AtomicBool::new(false),
        })
    }

    pub fn inode(&self) -> &Arc<dyn Inode> {
        &self.inode
    }

    /// The parent dentry and this dentry's name in it.
    pub fn parent(&self) -> Option<(Arc<Dentry>, String)> {
        self.link.lock().unwrap().clone()
    }

    /// The node's `S_IFMT` bits.
    pub fn file_type(&self) -> Result<u32> {
        let known = self.file_type.load(Ordering::Relaxed);
        if known != 0 {
            return Ok(known);
        }
        let t = self.inode.stat()?.mode & crate::S_IFMT;
        self.file_type.store(t, Ordering::Relaxed);
        Ok(t)
    }

    pub fn is_dir(&self) -> bool {
        self.file_type().is_ok_and(|t| t == crate::S_IFDIR)
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type().is_ok_and(|t| t == crate::S_IFLNK)
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Relaxed)
    }

    pub fn is_mountpoint(&self) -> bool {
        self.mounts.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn add_mount(&self) {
        self.mounts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remove_mount(&self) {
        self.mounts.fetch_sub(1, Ordering::Relaxed);
    }

    /// The child `name` (not `.` or `..`), from the cache or the filesystem.
    pub fn child(self: &Arc<Dentry>, name: &str) -> Result<Arc<Dentry>> {
        if let Some(d) = self.cached_live_child(name) {
            return Ok(d);
        }
        let inode = match self.inode.lookup(name) {
            Err(Errno::EMFILE | Errno::ENFILE) if relieve_fd_pressure() => {
                self.inode.lookup(name)?
            }
            other => other?,
        };
        let d = self.adopt(name, inode);
        keep_recent(&d);
        Ok(d)
    }

    /// The cached child `name` if the filesystem says it is still valid
    /// (or something is mounted on it). A stale one is dropped, so that
    /// [`child`](Self::child) asks the filesystem again.
    pub fn cached_live_child(&self, name: &str) -> Option<Arc<Dentry>> {
        let d = self.cached_child(name)?;
        if d.inode.valid() {
            d.referenced.store(true, Ordering::Relaxed);
            return Some(d);
        }
        if d.is_mountpoint() {
            return Some(d);
        }
        self.children.lock().unwrap().remove(name);
        None
    }

    /// Cache `inode` as the child `name` (after a lookup or a create).
    pub fn adopt(self: &Arc<Dentry>, name: &str, inode: Arc<dyn Inode>) -> Arc<Dentry> {
        let mut children = self.children.lock().unwrap();
        if let Some(d) = children.get(name).and_then(Weak::upgrade) {
            return d;
        }
        let d = Arc::new(Dentry {
            inode,
            link: Mutex::new(Some((self.clone(), name.to_string()))),
            children: Mutex::new(HashMap::new()),
            mounts: AtomicUsize::new(0),
            deleted: AtomicBool::new(false),
            file_type: AtomicU32::new(0),
            referenced: AtomicBool::new(false),
        });
        children.retain(|_, w| w.strong_count() > 0);
        children.insert(name.to_string(), Arc::downgrade(&d));
        d
    }

    /// The cached child `name`, if any (for mount checks before removal).
    pub fn cached_child(&self, name: &str) -> Option<Arc<Dentry>> {
        self.children
            .lock()
            .unwrap()
            .get(name)
            .and_then(Weak::upgrade)
    }

    /// Forget the child `name` after it was removed from the filesystem.
    pub fn forget(&self, name: &str) {
        if let Some(d) = self
            .children
            .lock()
            .unwrap()
            .remove(name)
            .and_then(|w| w.upgrade())
        {
            d.deleted.store(true, Ordering::Relaxed);
            // A removed file must not outlive its last user here: its data
            // is still charged to its filesystem.
            LIST.lock().unwrap().retain(|x| !Arc::ptr_eq(x, &d));
        }
    }

    /// Record a rename the filesystem has done: `old` under `self` is now
    /// `new` under `new_parent`, replacing whatever was cached there.
    pub fn moved(self: &Arc<Dentry>, old: &str, new_parent: &Arc<Dentry>, new: &str) {
        let moving = self.children.lock().unwrap().remove(old);
        new_parent.forget(new);
        if let Some(d) = moving.and_then(|w| w.upgrade()) {
            *d.link.lock().unwrap() = Some((new_parent.clone(), new.to_string()));
            new_parent
                .children
                .lock()
                .unwrap()
                .insert(new.to_string(), Arc::downgrade(&d));
        }
    }

    /// Record a RENAME_EXCHANGE: the children `a` of `self` and `b` of
    /// `other` swapped places.
    pub fn exchanged(self: &Arc<Dentry>, a: &str, other: &Arc<Dentry>, b: &str) {
        let da = self.children.lock().unwrap().remove(a);
        let db = other.children.lock().unwrap().remove(b);
        if let Some(d) = da.and_then(|w| w.upgrade()) {
            *d.link.lock().unwrap() = Some((other.clone(), b.to_string()));
            other
                .children
                .lock()
                .unwrap()
                .insert(b.to_string(), Arc::downgrade(&d));
        }
        if let Some(d) = db.and_then(|w| w.upgrade()) {
            *d.link.lock().unwrap() = Some((self.clone(), a.to_string()));
            self.children
                .lock()
                .unwrap()
                .insert(a.to_string(), Arc::downgrade(&d));
        }
    }

    /// Whether `self` is `other` or lies beneath it (rename into itself).
    pub fn is_within(self: &Arc<Dentry>, other: &Arc<Dentry>) -> bool {
        let mut cur = self.clone();
        loop {
            if Arc::ptr_eq(&cur, other) {
                return true;
            }
            match cur.parent() {
                Some((p, _)) => cur = p,
                None => return false,
            }
        }
    }
}
