//! Advisory file locks: POSIX record locks (`fcntl` F_SETLK and friends,
//! owned by a process), open-file-description locks (F_OFD_*, owned by a
//! description) and `flock` locks (whole-file, owned by a description).
//! POSIX/OFD locks and flock locks do not interact, as on Linux.
//!
//! The table does not block: callers wait on [`Locks::wait_changed`] in
//! short slices so signals can interrupt them.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use abi::Errno;

use crate::Result;

/// Which file: (device, inode) of the node.
pub type FileKey = (u64, u64);

/// Who holds a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// POSIX record locks belong to a process (its thread group ID).
    Process(i32),
    /// OFD and flock locks belong to an open file description.
    Description(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
}

/// A lock held on a byte range `[start, end)`; `end == u64::MAX` reaches
/// to the end of the file however it grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lock {
    pub owner: Owner,
    /// The process reported by F_GETLK (-1 for OFD locks).
    pub pid: i32,
    pub kind: Kind,
    pub start: u64,
    pub end: u64,
}

impl Lock {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start < end && start < self.end
    }

    fn conflicts(&self, owner: Owner, kind: Kind, start: u64, end: u64) -> bool {
        self.owner != owner
            && self.overlaps(start, end)
            && (self.kind == Kind::Write || kind == Kind::Write)
    }
}

#[derive(Default)]
struct State {
    /// Record locks (POSIX and OFD) per file.
    records: HashMap<FileKey, Vec<Lock>>,
    /// flock locks per file (each covers the whole file).
    flocks: HashMap<FileKey, Vec<Lock>>,
    /// Who each blocked owner waits for, for deadlock detection.
    waits: HashMap<Owner, Owner>,
}

#[derive(Default)]
pub struct Locks {
    state: Mutex<State>,
    changed: Condvar,
}

/// The Sentry's lock table (one sandbox per Sentry process).
pub fn table() -> &'static Locks {
    static TABLE: OnceLock<Locks> = OnceLock::new();
    TABLE.get_or_init(Locks::default)
}

/// What a lock request asks for.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub owner: Owner,
    pub pid: i32,
    /// None unlocks the range.
    pub kind: Option<Kind>,
    pub start: u64,
    pub end: u64,
}

impl Locks {
    /// F_GETLK: the first lock that would block `req`, if any.
    pub fn test(&self, file: FileKey, req: &Request) -> Option<Lock> {
        let kind = req.kind?;
        let st = self.state.lock().unwrap();
        st.records
            .get(&file)?
            .iter()
            .find(|l| l.conflicts(req.owner, kind, req.start, req.end))
            .copied()
    }

    /// F_SETLK: take (or release) a record lock without waiting; EAGAIN if
    /// another owner holds a conflicting one.
    pub fn set(&self, file: FileKey, req: &Request) -> Result<()> {
        let mut st = self.state.lock().unwrap();
        self.set_locked(&mut st, file, req, false).map(|_| ())
    }

    /// F_SETLKW and blocking flock: wait until the lock can be taken.
    /// `interrupted` is asked between waits; when it says so the call ends
    /// with EINTR (the caller restarts or fails the syscall). EDEADLK if
    /// waiting would close a cycle of POSIX lock owners.
    pub fn set_wait(
        &self,
        file: FileKey,
        req: &Request,
        flock: bool,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<()> {
        let mut st = self.state.lock().unwrap();
        loop {
            let blocker = if flock {
                Self::flock_locked(&mut st, file, req)
            } else {
                self.set_locked(&mut st, file, req, true)?
            };
            let Some(blocker) = blocker else {
                st.waits.remove(&req.owner);
                return Ok(());
            };
            if !flock
                && matches!(req.owner, Owner::Process(_))
                && Self::would_deadlock(&st, req.owner, blocker)
            {
                st.waits.remove(&req.owner);
                return Err(Errno::EDEADLK);
            }
            st.waits.insert(req.owner, blocker);
            if interrupted() {
                st.waits.remove(&req.owner);
                return Err(Errno::EINTR);
            }
            st = self
                .changed
                .wait_timeout(st, Duration::from_millis(50))
                .unwrap()
                .0;
        }
    }

    fn would_deadlock(st: &State, me: Owner, mut blocker: Owner) -> bool {
        for _ in 0..st.waits.len() + 1 {
            if blocker == me {
                return true;
            }
            match st.waits.get(&blocker) {
                Some(&next) => blocker = next,
                None => return false,
            }
        }
        false
    }

    /// Apply `req` to the record locks of `file`. Returns the owner that
    /// blocks it (when `report` asks for a blocker instead of EAGAIN).
    fn set_locked(
        &self,
        st: &mut State,
        file: FileKey,
        req: &Request,
        report: bool,
    ) -> Result<Option<Owner>> {
        let locks = st.records.entry(file).or_default();
        if let Some(kind) = req.kind {
            if let Some(l) = locks
                .iter()
                .find(|l| l.conflicts(req.owner, kind, req.start, req.end))
            {
                return if report {
                    Ok(Some(l.owner))
                } else {
                    Err(Errno::EAGAIN)
                };
            }
        }
        // Cut the owner's existing locks out of the range, keeping the parts
        // outside it; then add the new lock.
        let mut kept = Vec::with_capacity(locks.len() + 2);
        for l in locks.drain(..) {
            if l.owner != req.owner || !l.overlaps(req.start, req.end) {
                kept.push(l);
                continue;
            }
            if l.start < req.start {
                kept.push(Lock {
                    end: req.start,
                    ..l
                });
            }
            if l.end > req.end {
                kept.push(Lock {
                    start: req.end,
                    ..l
                });
            }
        }
        if let Some(kind) = req.kind {
            kept.push(Lock {
                owner: req.owner,
                pid: req.pid,
                kind,
                start: req.start,
                end: req.end,
            });
        }
        if kept.is_empty() {
            st.records.remove(&file);
        } else {
            *locks = kept;
        }
        self.changed.notify_all();
        Ok(None)
    }

    /// flock without waiting: EWOULDBLOCK (EAGAIN) on conflict.
    pub fn flock(&self, file: FileKey, req: &Request) -> Result<()> {
        let mut st = self.state.lock().unwrap();
        let blocker = Self::flock_locked(&mut st, file, req);
        self.changed.notify_all();
        match blocker {
            Some(_) => Err(Errno::EAGAIN),
            None => Ok(()),
        }
    }

    fn flock_locked(st: &mut State, file: FileKey, req: &Request) -> Option<Owner> {
        let locks = st.flocks.entry(file).or_default();
        // Converting a lock first drops the old one, as Linux does.
        locks.retain(|l| l.owner != req.owner);
        if let Some(kind) = req.kind {
            if let Some(l) = locks
                .iter()
                .find(|l| l.conflicts(req.owner, kind, 0, u64::MAX))
            {
                return Some(l.owner);
            }
            locks.push(Lock {
                owner: req.owner,
                pid: req.pid,
                kind,
                start: 0,
                end: u64::MAX,
            });
        }
        if locks.is_empty() {
            st.flocks.remove(&file);
        }
        None
    }

    /// Whether no lock at all is held (so [`release`](Self::release) has
    /// nothing to do, and callers need not find the file's key).
    pub fn is_empty(&self) -> bool {
        let st = self.state.lock().unwrap();
        st.records.is_empty() && st.flocks.is_empty()
    }

    /// Drop every lock `owner` holds on `file` (a process closed a
    /// descriptor of it: POSIX drops all of that process's locks there).
    pub fn release(&self, file: FileKey, owner: Owner) {
        let mut guard = self.state.lock().unwrap();
        let st = &mut *guard;
        let mut changed = false;
        for map in [&mut st.records, &mut st.flocks] {
            if let Some(locks) = map.get_mut(&file) {
                let before = locks.len();
                locks.retain(|l| l.owner != owner);
                changed |= locks.len() != before;
                if locks.is_empty() {
                    map.remove(&file);
                }
            }
        }
        if changed {
            self.changed.notify_all();
        }
    }

    /// Drop every lock `owner` holds anywhere (a process exited, a
    /// description was closed for the last time).
    pub fn release_all(&self, owner: Owner) {
        let mut guard = self.state.lock().unwrap();
        let st = &mut *guard;
        for map in [&mut st.records, &mut st.flocks] {
            map.retain(|_, locks| {
                locks.retain(|l| l.owner != owner);
                !locks.is_empty()
            });
        }
        st.waits.remove(&owner);
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(owner: i32, kind: Option<Kind>, start: u64, end: u64) -> Request {
        Request {
            owner: Owner::Process(owner),
            pid: owner,
            kind,
            start,
            end,
        }
    }

    #[test]
    fn read_locks_share_write_locks_exclude() {
        let t = Locks::default();
        let f = (1, 1);
        t.set(f, &req(1, Some(Kind::Read), 0, 10)).unwrap();
        t.set(f, &req(2, Some(Kind::Read), 5, 15)).unwrap();
        assert_eq!(
            t.set(f, &req(3, Some(Kind::Write), 9, 10)),
            Err(Errno::EAGAIN)
        );
        assert!(t.set(f, &req(3, Some(Kind::Write), 15, 20)).is_ok());
        let blocker = t.test(f, &req(4, Some(Kind::Write), 0, 1)).unwrap();
        assert_eq!((blocker.pid, blocker.start, blocker.end), (1, 0, 10));
        // A process's own locks never block it.
        assert!(t.set(f, &req(1, Some(Kind::Write), 0, 5)).is_ok());
    }

    #[test]
    fn unlocking_the_middle_splits_a_lock() {
        let t = Locks::default();
        let f = (1, 2);
        t.set(f, &req(1, Some(Kind::Write), 0, 100)).unwrap();
        t.set(f, &req(1, None, 40, 60)).unwrap();
        assert!(t.set(f, &req(2, Some(Kind::Write), 40, 60)).is_ok());
        assert_eq!(
            t.set(f, &req(2, Some(Kind::Write), 39, 40)),
            Err(Errno::EAGAIN)
        );
        assert_eq!(
            t.set(f, &req(2, Some(Kind::Write), 60, 61)),
            Err(Errno::EAGAIN)
        );
        t.release(f, Owner::Process(1));
        assert!(t.set(f, &req(2, Some(Kind::Write), 0, u64::MAX)).is_ok());
    }

    #[test]
    fn a_wait_cycle_is_edeadlk() {
        let t = Locks::default();
        let f = (1, 3);
        t.set(f, &req(1, Some(Kind::Write), 0, 1)).unwrap();
        t.set(f, &req(2, Some(Kind::Write), 1, 2)).unwrap();
        // Process 1 is blocked on 2's range.
        t.state
            .lock()
            .unwrap()
            .waits
            .insert(Owner::Process(1), Owner::Process(2));
        let r = t.set_wait(f, &req(2, Some(Kind::Write), 0, 1), false, &|| false);
        assert_eq!(r, Err(Errno::EDEADLK));
    }

    #[test]
    fn a_blocked_wait_ends_when_interrupted() {
        let t = Locks::default();
        let f = (1, 4);
        t.set(f, &req(1, Some(Kind::Write), 0, 1)).unwrap();
        let r = t.set_wait(f, &req(2, Some(Kind::Read), 0, 1), false, &|| true);
        assert_eq!(r, Err(Errno::EINTR));
    }

    #[test]
    fn flock_is_whole_file_and_per_description() {
        let t = Locks::default();
        let f = (1, 5);
        let d = |n: usize, kind| Request {
            owner: Owner::Description(n),
            pid: 1,
            kind,
            start: 0,
            end: u64::MAX,
        };
        t.flock(f, &d(1, Some(Kind::Read))).unwrap();
        t.flock(f, &d(2, Some(Kind::Read))).unwrap();
        assert_eq!(t.flock(f, &d(3, Some(Kind::Write))), Err(Errno::EAGAIN));
        t.flock(f, &d(1, None)).unwrap();
        t.flock(f, &d(2, None)).unwrap();
        t.flock(f, &d(3, Some(Kind::Write))).unwrap();
        // Record locks are a separate world.
        t.set(f, &req(9, Some(Kind::Write), 0, 10)).unwrap();
    }
}
