//! inotify(7): watches on nodes, and the events the VFS raises for them.
//!
//! A watch is on a node, named by its `(st_dev, st_ino)`, so every path
//! and mount that reaches the node shares it. The VFS reports what
//! happens through the `*_event` functions below, in the order Linux's
//! fsnotify hooks fire (fs/namei.c, include/linux/fsnotify.h); each costs
//! one atomic load while no watch exists anywhere in the sandbox.
//! Changes made on the host behind the sandbox's back are not seen.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use abi::Errno;

use crate::inode::{FileOps, Inode};
use crate::waiter::Waiters;
use crate::{Location, Result};

// Event bits (include/uapi/linux/inotify.h).
pub const IN_ACCESS: u32 = 0x1;
pub const IN_MODIFY: u32 = 0x2;
pub const IN_ATTRIB: u32 = 0x4;
pub const IN_CLOSE_WRITE: u32 = 0x8;
pub const IN_CLOSE_NOWRITE: u32 = 0x10;
pub const IN_OPEN: u32 = 0x20;
pub const IN_MOVED_FROM: u32 = 0x40;
pub const IN_MOVED_TO: u32 = 0x80;
pub const IN_CREATE: u32 = 0x100;
pub const IN_DELETE: u32 = 0x200;
pub const IN_DELETE_SELF: u32 = 0x400;
pub const IN_MOVE_SELF: u32 = 0x800;
pub const IN_Q_OVERFLOW: u32 = 0x4000;
pub const IN_IGNORED: u32 = 0x8000;
pub const IN_ONLYDIR: u32 = 0x0100_0000;
pub const IN_DONT_FOLLOW: u32 = 0x0200_0000;
pub const IN_EXCL_UNLINK: u32 = 0x0400_0000;
pub const IN_MASK_CREATE: u32 = 0x1000_0000;
pub const IN_MASK_ADD: u32 = 0x2000_0000;
pub const IN_ISDIR: u32 = 0x4000_0000;
pub const IN_ONESHOT: u32 = 0x8000_0000;
/// Every event a watch can ask for.
pub const IN_ALL_EVENTS: u32 = 0xfff;
/// What inotify_add_watch accepts in its mask.
const VALID_MASK: u32 = IN_ALL_EVENTS
    | IN_ONLYDIR
    | IN_DONT_FOLLOW
    | IN_EXCL_UNLINK
    | IN_MASK_CREATE
    | IN_MASK_ADD
    | IN_ONESHOT;

/// `/proc/sys/fs/inotify/max_queued_events`'s default.
const MAX_QUEUED: usize = 16384;
/// `sizeof(struct inotify_event)`.
const HEADER: usize = 16;

type Key = (u64, u64);

struct Watch {
    owner: Weak<Inotify>,
    wd: i32,
    mask: u32,
}

#[derive(Default)]
struct Registry {
    watches: Mutex<HashMap<Key, Vec<Watch>>>,
    /// Watches anywhere; zero lets every hook return at once.
    count: AtomicUsize,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

fn active() -> bool {
    registry().count.load(Ordering::Relaxed) > 0
}

fn key_of(inode: &Arc<dyn Inode>) -> Option<(Key, bool)> {
    let st = inode.stat().ok()?;
    Some(((st.dev, st.ino), st.mode & crate::S_IFMT == crate::S_IFDIR))
}

#[derive(Clone, PartialEq, Eq)]
struct Event {
    wd: i32,
    mask: u32,
    cookie: u32,
    name: Option<String>,
}

impl Event {
    /// The name padded with NULs to a multiple of the header size.
    fn name_len(&self) -> usize {
        self.name
            .as_ref()
            .map_or(0, |n| (n.len() + 1).div_ceil(HEADER) * HEADER)
    }

    fn size(&self) -> usize {
        HEADER + self.name_len()
    }

    fn encode(&self, out: &mut [u8]) {
        let len = self.name_len();
        out[..4].copy_from_slice(&self.wd.to_le_bytes());
        out[4..8].copy_from_slice(&self.mask.to_le_bytes());
        out[8..12].copy_from_slice(&self.cookie.to_le_bytes());
        out[12..16].copy_from_slice(&(len as u32).to_le_bytes());
        let body = &mut out[HEADER..HEADER + len];
        body.fill(0);
        if let Some(n) = &self.name {
            body[..n.len()].copy_from_slice(n.as_bytes());
        }
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Event>,
    next_wd: i32,
    /// This instance's watches: descriptor → node.
    wds: HashMap<i32, Key>,
}

/// An inotify instance: the file an `inotify_init1` descriptor refers to.
pub struct Inotify {
    st: Mutex<State>,
    waiters: Waiters,
    /// For the registry's references back.
    me: Weak<Inotify>,
}

impl Inotify {
    pub fn new() -> Arc<Inotify> {
        Arc::new_cyclic(|me| Inotify {
            st: Mutex::default(),
            waiters: Waiters::default(),
            me: me.clone(),
        })
    }

    /// `inotify_add_watch` on the node `loc` names (already looked up with
    /// IN_DONT_FOLLOW honoured, and checked readable by the caller).
    pub fn add_watch(&self, loc: &Location, mask: u32) -> Result<i32> {
        if mask & !VALID_MASK != 0
            || mask & IN_ALL_EVENTS == 0
            || mask & (IN_MASK_ADD | IN_MASK_CREATE) == IN_MASK_ADD | IN_MASK_CREATE
        {
            return Err(Errno::EINVAL);
        }
        let (key, is_dir) = key_of(loc.inode()).ok_or(Errno::ENOENT)?;
        if mask & IN_ONLYDIR != 0 && !is_dir {
            return Err(Errno::ENOTDIR);
        }
        // Only what events come, and how, is kept.
        let kept = mask & (IN_ALL_EVENTS | IN_EXCL_UNLINK | IN_ONESHOT);
        let reg = registry();
        let mut all = reg.watches.lock().unwrap();
        let list = all.entry(key).or_default();
        if let Some(w) = list.iter_mut().find(|w| w.owner.ptr_eq(&self.me)) {
            if mask & IN_MASK_CREATE != 0 {
                return Err(Errno::EEXIST);
            }
            w.mask = if mask & IN_MASK_ADD != 0 {
                w.mask | kept
            } else {
                kept
            };
            return Ok(w.wd);
        }
        let wd = {
            let mut st = self.st.lock().unwrap();
            st.next_wd += 1;
            let wd = st.next_wd;
            st.wds.insert(wd, key);
            wd
        };
        list.push(Watch {
            owner: self.me.clone(),
            wd,
            mask: kept,
        });
        reg.count.fetch_add(1, Ordering::Relaxed);
        Ok(wd)
    }

    /// `inotify_rm_watch`: the watch goes, with an IN_IGNORED event.
    pub fn rm_watch(&self, wd: i32) -> Result<()> {
        let key = self
            .st
            .lock()
            .unwrap()
            .wds
            .remove(&wd)
            .ok_or(Errno::EINVAL)?;
        unregister(key, |w| w.wd == wd && std::ptr::eq(w.owner.as_ptr(), self));
        self.push(Event {
            wd,
            mask: IN_IGNORED,
            cookie: 0,
            name: None,
        });
        self.waiters.notify_all();
        Ok(())
    }

    /// Bytes ready to read (FIONREAD).
    pub fn pending_bytes(&self) -> usize {
        self.st.lock().unwrap().queue.iter().map(Event::size).sum()
    }

    /// Queue `ev`, dropping it if it repeats the newest queued event and
    /// ending the queue with one IN_Q_OVERFLOW once it is full.
    fn push(&self, ev: Event) {
        let mut st = self.st.lock().unwrap();
        if st.queue.back() == Some(&ev) {
            return;
        }
        if st.queue.len() >= MAX_QUEUED {
            let overflow = Event {
                wd: -1,
                mask: IN_Q_OVERFLOW,
                cookie: 0,
                name: None,
            };
            if st.queue.back() != Some(&overflow) {
                st.queue.push_back(overflow);
            }
            return;
        }
        st.queue.push_back(ev);
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        let wds = std::mem::take(&mut self.st.get_mut().unwrap().wds);
        let me: *const Inotify = self;
        for (wd, key) in wds {
            unregister(key, |w| w.wd == wd && std::ptr::eq(w.owner.as_ptr(), me));
        }
    }
}

/// Remove the watches on `key` that `matches` picks.
fn unregister(key: Key, matches: impl Fn(&Watch) -> bool) {
    let reg = registry();
    let mut all = reg.watches.lock().unwrap();
    if let Some(list) = all.get_mut(&key) {
        let before = list.len();
        list.retain(|w| !matches(w));
        reg.count.fetch_sub(before - list.len(), Ordering::Relaxed);
        if list.is_empty() {
            all.remove(&key);
        }
    }
}

impl FileOps for Inotify {
    fn read(&self, buf: &mut [u8], _offset: u64) -> Result<usize> {
        let mut st = self.st.lock().unwrap();
        let Some(first) = st.queue.front() else {
            return Err(Errno::EAGAIN);
        };
        if first.size() > buf.len() {
            return Err(Errno::EINVAL);
        }
        let mut n = 0;
        while let Some(ev) = st.queue.front() {
            let size = ev.size();
            if n + size > buf.len() {
                break;
            }
            ev.encode(&mut buf[n..n + size]);
            n += size;
            st.queue.pop_front();
        }
        Ok(n)
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, events: i16) -> i16 {
        if self.st.lock().unwrap().queue.is_empty() {
            0
        } else {
            events & (libc::POLLIN | libc::POLLRDNORM)
        }
    }

    fn waiters(&self) -> Option<&Waiters> {
        Some(&self.waiters)
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

/// Deliver `mask` (with `cookie` and `name`) to the watches on `key` that
/// ask for it; one-shot watches go after their event.
fn deliver(key: Key, mask: u32, cookie: u32, name: Option<&str>) {
    let mut woken: Vec<Arc<Inotify>> = Vec::new();
    let mut ended: Vec<(Arc<Inotify>, i32)> = Vec::new();
    // Every instance this looks at stays alive until the registry's lock
    // is gone: dropping the last reference inside would take it again.
    let mut seen: Vec<Arc<Inotify>> = Vec::new();
    {
        let reg = registry();
        let mut all = reg.watches.lock().unwrap();
        let Some(list) = all.get_mut(&key) else {
            return;
        };
        list.retain(|w| {
            let Some(owner) = w.owner.upgrade() else {
                return true;
            };
            seen.push(owner.clone());
            let always = mask & (IN_IGNORED | IN_Q_OVERFLOW) != 0;
            if !always && w.mask & mask & IN_ALL_EVENTS == 0 {
                return true;
            }
            owner.push(Event {
                wd: w.wd,
                mask,
                cookie,
                name: name.map(str::to_string),
            });
            woken.push(owner.clone());
            if w.mask & IN_ONESHOT != 0 && !always {
                ended.push((owner, w.wd));
                reg.count.fetch_sub(1, Ordering::Relaxed);
                return false;
            }
            true
        });
        if list.is_empty() {
            all.remove(&key);
        }
    }
    for (owner, wd) in ended {
        owner.st.lock().unwrap().wds.remove(&wd);
        owner.push(Event {
            wd,
            mask: IN_IGNORED,
            cookie: 0,
            name: None,
        });
    }
    for w in woken {
        w.waiters.notify_all();
    }
    drop(seen);
}

/// An event on the node at `loc` (IN_ACCESS, IN_MODIFY, IN_ATTRIB,
/// IN_OPEN, IN_CLOSE_*): to its own watches, and with its name to its
/// directory's.
pub fn file_event(loc: &Location, mask: u32) {
    if !active() {
        return;
    }
    let Some((key, is_dir)) = key_of(loc.inode()) else {
        return;
    };
    let mask = if is_dir { mask | IN_ISDIR } else { mask };
    if !loc.dentry.is_deleted() {
        if let Some((parent, name)) = loc.dentry.parent() {
            if let Some((pkey, _)) = key_of(parent.inode()) {
                deliver(pkey, mask, 0, Some(&name));
            }
        }
    }
    deliver(key, mask, 0, None);
}

/// An event only the node's own watches see (the link-count IN_ATTRIB,
/// IN_MOVE_SELF).
pub fn self_event(inode: &Arc<dyn Inode>, mask: u32) {
    if !active() {
        return;
    }
    if let Some((key, is_dir)) = key_of(inode) {
        deliver(key, if is_dir { mask | IN_ISDIR } else { mask }, 0, None);
    }
}

/// An entry of the directory `dir` changed (IN_CREATE, IN_DELETE,
/// IN_MOVED_FROM, IN_MOVED_TO): to the directory's watches, with the name.
pub fn dir_event(dir: &Location, name: &str, mask: u32, is_dir: bool, cookie: u32) {
    if !active() {
        return;
    }
    if let Some((key, _)) = key_of(dir.inode()) {
        let mask = if is_dir { mask | IN_ISDIR } else { mask };
        deliver(key, mask, cookie, Some(name));
    }
}

/// The node `key` names (read before its last name went) is deleted:
/// IN_DELETE_SELF to its watches.
pub fn deleted(key: Option<(u64, u64)>) {
    if let Some(key) = key.filter(|_| active()) {
        deliver(key, IN_DELETE_SELF, 0, None);
    }
}

/// The deleted node `key` names is gone: its watches end with IN_IGNORED.
pub fn forget(key: Option<(u64, u64)>) {
    let Some(key) = key.filter(|_| active()) else {
        return;
    };
    let gone: Vec<(Arc<Inotify>, i32)> = {
        let reg = registry();
        let mut all = reg.watches.lock().unwrap();
        let list = all.remove(&key).unwrap_or_default();
        reg.count.fetch_sub(list.len(), Ordering::Relaxed);
        list.into_iter()
            .filter_map(|w| w.owner.upgrade().map(|o| (o, w.wd)))
            .collect()
    };
    for (owner, wd) in gone {
        owner.st.lock().unwrap().wds.remove(&wd);
        owner.push(Event {
            wd,
            mask: IN_IGNORED,
            cookie: 0,
            name: None,
        });
        owner.waiters.notify_all();
    }
}

/// The identity of a node that may be about to lose its last name, for
/// [`deleted`]; None when nobody watches anything.
pub fn watched_key(inode: &Arc<dyn Inode>) -> Option<(u64, u64)> {
    if !active() {
        return None;
    }
    key_of(inode).map(|(k, _)| k)
}

/// Whether the node has no links left.
pub fn unlinked(inode: &Arc<dyn Inode>) -> bool {
    inode.stat().is_ok_and(|st| st.nlink == 0)
}

/// A fresh cookie tying an IN_MOVED_FROM to its IN_MOVED_TO.
pub fn next_cookie() -> u32 {
    static COOKIE: AtomicU32 = AtomicU32::new(0);
    COOKIE.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
}
