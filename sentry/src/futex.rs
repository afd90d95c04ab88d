//! Futexes: wait queues keyed by the memory a futex word lives in.
//!
//! A key is the word's address in one address space for private memory
//! and its offset in the memory file for shared memory (the same for every
//! address space that maps it); see `mm::FutexKey`. Waiting blocks the task's host thread on a condition
//! variable until a wake, a requeue-and-wake, or the timeout.
//!
//! Priority-inheritance (PI) futexes follow Linux's user-space protocol
//! (futex(2)): the word holds the owner's TID, FUTEX_WAITERS while
//! threads wait in the kernel, FUTEX_OWNER_DIED after a robust owner
//! died. An unlock with waiters hands the lock to the first of them by
//! writing its TID into the word. No priorities are boosted: the Sentry
//! does not schedule.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use abi::Errno;

use crate::mm::FutexKey;
use crate::process::KILL_POLL;

pub const FUTEX_WAITERS: u32 = 0x8000_0000;
pub const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
pub const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

/// What a waiter waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// FUTEX_WAIT: released by a wake or requeued by a requeue.
    Plain,
    /// FUTEX_LOCK_PI: released holding the lock.
    Pi,
    /// FUTEX_WAIT_REQUEUE_PI before its requeue: waits on a plain futex
    /// until FUTEX_CMP_REQUEUE_PI locks `target` for it or makes it a
    /// PI waiter there.
    RequeuePi { target: FutexKey },
}

/// What a waiter's waker changes (table locked, then this).
struct WaitState {
    kind: Kind,
    /// Released: woken (Plain), or holding the lock (Pi, RequeuePi).
    woken: bool,
    /// A PI waiter should look at the word again (its owner died).
    recheck: bool,
}

/// One blocked waiter.
struct Waiter {
    bitset: u32,
    /// The waiting thread, which a PI unlock makes the owner.
    tid: i32,
    state: Mutex<WaitState>,
    cond: Condvar,
}

impl Waiter {
    fn new(bitset: u32, tid: i32, kind: Kind) -> Arc<Waiter> {
        Arc::new(Waiter {
            bitset,
            tid,
            state: Mutex::new(WaitState {
                kind,
                woken: false,
                recheck: false,
            }),
            cond: Condvar::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, WaitState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self) {
        self.state().woken = true;
        self.cond.notify_one();
    }
}

type Queues = HashMap<FutexKey, Vec<Arc<Waiter>>>;

#[derive(Default)]
pub struct FutexTable {
    queues: Mutex<Queues>,
}

/// A futex word in application memory, updated atomically in place; an
/// access may fail (EFAULT) where the memory went away.
pub trait Word {
    fn load(&self) -> Result<u32, Errno>;
    /// Store `new` if the word holds `current`: Ok(current) then, else
    /// Err(what it holds).
    fn compare_exchange(&self, current: u32, new: u32) -> Result<Result<u32, u32>, Errno>;

    /// Replace the word with `f(old)` atomically; returns the old value.
    fn update(&self, f: &dyn Fn(u32) -> u32) -> Result<u32, Errno> {
        let mut old = self.load()?;
        loop {
            match self.compare_exchange(old, f(old))? {
                Ok(_) => return Ok(old),
                Err(now) => old = now,
            }
        }
    }
}

/// For tests: a word in Sentry memory.
impl Word for AtomicU32 {
    fn load(&self) -> Result<u32, Errno> {
        Ok(AtomicU32::load(self, Ordering::SeqCst))
    }
    fn compare_exchange(&self, current: u32, new: u32) -> Result<Result<u32, u32>, Errno> {
        Ok(AtomicU32::compare_exchange(
            self,
            current,
            new,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ))
    }
}

/// Reads a futex word afresh (through the address space, so a word a
/// copy-on-write break moved is still found).
pub type Load<'a> = &'a dyn Fn() -> Result<u32, Errno>;

/// The word of a PI futex and who is asking.
pub struct PiWord<'a> {
    pub key: FutexKey,
    pub word: &'a dyn Word,
    /// The calling thread's TID.
    pub tid: i32,
    /// Whether a TID names a thread that has not finished exiting.
    pub alive: &'a dyn Fn(i32) -> bool,
}

/// The outcome of one attempt to take a PI lock.
enum Take {
    Got,
    Busy,
}

fn remove(queues: &mut Queues, waiter: &Arc<Waiter>) {
    for queue in queues.values_mut() {
        queue.retain(|w| !Arc::ptr_eq(w, waiter));
    }
    queues.retain(|_, q| !q.is_empty());
}

fn has_pi_waiter(queues: &Queues, key: FutexKey, except: Option<&Arc<Waiter>>) -> bool {
    queues.get(&key).is_some_and(|q| {
        q.iter()
            .any(|w| except.is_none_or(|e| !Arc::ptr_eq(w, e)) && w.state().kind == Kind::Pi)
    })
}

/// Try to take the PI lock at `pi` for thread `tid`, as Linux's
/// futex_lock_pi_atomic does; `me` is the waiter already queued for it.
/// Sets FUTEX_WAITERS when the lock stays busy.
fn take_pi(
    queues: &Queues,
    pi: &PiWord<'_>,
    tid: i32,
    me: Option<&Arc<Waiter>>,
) -> Result<Take, Errno> {
    loop {
        let uval = pi.word.load()?;
        let owner = uval & FUTEX_TID_MASK;
        if owner == tid as u32 {
            return Err(Errno::EDEADLK);
        }
        let others = has_pi_waiter(queues, pi.key, me);
        // A dead owner's waiters inherit the lock (Linux's
        // exit_pi_state_list); a newcomer with nobody waiting is told
        // the owner is gone.
        let dead = owner != 0 && !(pi.alive)(owner as i32);
        if owner == 0 || (dead && me.is_some()) {
            let new =
                tid as u32 | (uval & FUTEX_OWNER_DIED) | if others { FUTEX_WAITERS } else { 0 };
            if pi.word.compare_exchange(uval, new)?.is_ok() {
                return Ok(Take::Got);
            }
            continue;
        }
        if dead && !others {
            return Err(Errno::ESRCH);
        }
        if uval & FUTEX_WAITERS == 0
            && pi
                .word
                .compare_exchange(uval, uval | FUTEX_WAITERS)?
                .is_err()
        {
            continue;
        }
        return Ok(Take::Busy);
    }
}

/// Why a blocked wait ended without its wake.
fn timed_out_or_stopped(deadline: Option<Instant>, stop: &dyn Fn() -> bool) -> Option<Errno> {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        Some(Errno::ETIMEDOUT)
    } else if stop() {
        Some(Errno::EINTR)
    } else {
        None
    }
}

impl FutexTable {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Block while the word at `key` holds `expected`. `load` reads the word;
    /// it is called with the table locked, so a waker that changes the
    /// word and then wakes cannot slip in between check and sleep.
    ///
    /// `stop` says the waiting task was killed: the wait then ends with
    /// EINTR within [`crate::process::KILL_POLL`].
    pub fn wait(
        &self,
        key: FutexKey,
        expected: u32,
        bitset: u32,
        deadline: Option<Instant>,
        load: impl FnOnce() -> Result<u32, Errno>,
        stop: &dyn Fn() -> bool,
    ) -> Result<(), Errno> {
        if bitset == 0 {
            return Err(Errno::EINVAL);
        }
        let waiter = Waiter::new(bitset, 0, Kind::Plain);
        {
            let mut queues = self.lock();
            if load()? != expected {
                return Err(Errno::EAGAIN);
            }
            queues.entry(key).or_default().push(waiter.clone());
        }
        let mut st = waiter.state();
        let mut stopped = false;
        while !st.woken {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            if stop() {
                stopped = true;
                break;
            }
            let slice = deadline.map_or(KILL_POLL, |d| (d - now).min(KILL_POLL));
            st = waiter
                .cond
                .wait_timeout(st, slice)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if st.woken {
            return Ok(());
        }
        drop(st);
        // Timed out: leave the queue, unless a waker took us meanwhile.
        let mut queues = self.lock();
        remove(&mut queues, &waiter);
        if waiter.state().woken {
            Ok(())
        } else if stopped {
            Err(Errno::EINTR)
        } else {
            Err(Errno::ETIMEDOUT)
        }
    }

    /// Wake up to `n` waiters on `key` whose bitset meets `bitset`.
    pub fn wake(&self, key: FutexKey, n: u32, bitset: u32) -> Result<u32, Errno> {
        if bitset == 0 {
            return Err(Errno::EINVAL);
        }
        let mut queues = self.lock();
        Ok(Self::wake_locked(&mut queues, key, n, bitset))
    }

    /// Wake plain waiters only: PI waiters leave holding the lock, and
    /// Linux refuses to wake them (EINVAL) where we skip them.
    fn wake_locked(queues: &mut Queues, key: FutexKey, n: u32, bitset: u32) -> u32 {
        let Some(queue) = queues.get_mut(&key) else {
            return 0;
        };
        let mut woken = 0;
        queue.retain(|w| {
            if woken < n && w.bitset & bitset != 0 && w.state().kind == Kind::Plain {
                w.release();
                woken += 1;
                false
            } else {
                true
            }
        });
        if queue.is_empty() {
            queues.remove(&key);
        }
        woken
    }

    /// Wake `n` waiters on `from` and move up to `move_n` others to `to`.
    /// With `expected`, first check (table locked) that `load` still reads
    /// it (CMP_REQUEUE), else EAGAIN.
    pub fn requeue(
        &self,
        from: FutexKey,
        to: FutexKey,
        n: u32,
        move_n: u32,
        check: Option<(u32, Load<'_>)>,
    ) -> Result<u32, Errno> {
        let mut queues = self.lock();
        if let Some((expected, load)) = check {
            if load()? != expected {
                return Err(Errno::EAGAIN);
            }
        }
        let woken = Self::wake_locked(&mut queues, from, n, u32::MAX);
        let mut moved = Vec::new();
        if let Some(queue) = queues.get_mut(&from) {
            let mut left = move_n as usize;
            queue.retain(|w| {
                if left > 0 && w.state().kind == Kind::Plain {
                    left -= 1;
                    moved.push(w.clone());
                    false
                } else {
                    true
                }
            });
            if queue.is_empty() {
                queues.remove(&from);
            }
        }
        let count = moved.len() as u32;
        if !moved.is_empty() {
            queues.entry(to).or_default().extend(moved);
        }
        Ok(woken + count)
    }

    /// FUTEX_WAKE_OP: run `op` on the word at `key2` (table locked), wake
    /// `n` on `key1`, and `n2` on `key2` if the old value met the condition.
    pub fn wake_op(
        &self,
        key1: FutexKey,
        key2: FutexKey,
        n: u32,
        n2: u32,
        op: impl FnOnce() -> Result<bool, Errno>,
    ) -> Result<u32, Errno> {
        let mut queues = self.lock();
        let condition = op()?;
        let mut woken = Self::wake_locked(&mut queues, key1, n, u32::MAX);
        if condition {
            woken += Self::wake_locked(&mut queues, key2, n2, u32::MAX);
        }
        Ok(woken)
    }

    /// FUTEX_LOCK_PI / FUTEX_TRYLOCK_PI: take the lock, or wait until an
    /// unlock hands it over (or its owner dies). EINTR when `stop` says
    /// so (the caller restarts).
    pub fn lock_pi(
        &self,
        pi: &PiWord<'_>,
        deadline: Option<Instant>,
        trylock: bool,
        stop: &dyn Fn() -> bool,
    ) -> Result<(), Errno> {
        let waiter = {
            let mut queues = self.lock();
            match take_pi(&queues, pi, pi.tid, None)? {
                Take::Got => return Ok(()),
                Take::Busy if trylock => return Err(Errno::EAGAIN),
                Take::Busy => {}
            }
            let waiter = Waiter::new(u32::MAX, pi.tid, Kind::Pi);
            queues.entry(pi.key).or_default().push(waiter.clone());
            waiter
        };
        self.block_pi(&waiter, pi, deadline, stop)
            .map_err(|(e, _)| e)
    }

    /// FUTEX_UNLOCK_PI: the caller must own the lock; the first PI waiter
    /// becomes the owner, or the word becomes 0 when nobody waits.
    pub fn unlock_pi(&self, pi: &PiWord<'_>) -> Result<(), Errno> {
        let mut queues = self.lock();
        loop {
            let uval = pi.word.load()?;
            if uval & FUTEX_TID_MASK != pi.tid as u32 {
                return Err(Errno::EPERM);
            }
            let next = queues
                .get(&pi.key)
                .and_then(|q| q.iter().find(|w| w.state().kind == Kind::Pi).cloned());
            // Linux keeps FUTEX_WAITERS set on a hand-off (wake_futex_pi).
            let new = next.as_ref().map_or(0, |w| w.tid as u32 | FUTEX_WAITERS);
            if pi.word.compare_exchange(uval, new)?.is_err() {
                continue;
            }
            if let Some(w) = next {
                remove(&mut queues, &w);
                w.release();
            }
            return Ok(());
        }
    }

    /// FUTEX_WAIT_REQUEUE_PI: wait on `key` (which must hold `expected`)
    /// until FUTEX_CMP_REQUEUE_PI moves us to the PI lock `pi`; return
    /// holding it. EINTR before the requeue (the caller restarts), EAGAIN
    /// when interrupted after it, as Linux returns.
    pub fn wait_requeue_pi(
        &self,
        key: FutexKey,
        expected: u32,
        pi: &PiWord<'_>,
        deadline: Option<Instant>,
        load: impl FnOnce() -> Result<u32, Errno>,
        stop: &dyn Fn() -> bool,
    ) -> Result<(), Errno> {
        let waiter = Waiter::new(u32::MAX, pi.tid, Kind::RequeuePi { target: pi.key });
        {
            let mut queues = self.lock();
            if load()? != expected {
                return Err(Errno::EAGAIN);
            }
            queues.entry(key).or_default().push(waiter.clone());
        }
        self.block_pi(&waiter, pi, deadline, stop)
            .map_err(|(e, kind)| {
                if e == Errno::EINTR && kind == Kind::Pi {
                    Errno::EAGAIN
                } else {
                    e
                }
            })
    }

    /// FUTEX_CMP_REQUEUE_PI: if the word at `from` still reads `expected`,
    /// lock `pi` for the first waiter on `from` if it is free, and move up
    /// to `nr_requeue` of the others to wait for it. Returns how many were
    /// given the lock or moved.
    pub fn cmp_requeue_pi(
        &self,
        from: FutexKey,
        pi: &PiWord<'_>,
        nr_requeue: u32,
        expected: u32,
        load: Load<'_>,
    ) -> Result<u32, Errno> {
        let mut queues = self.lock();
        if load()? != expected {
            return Err(Errno::EAGAIN);
        }
        let waiters = queues.get(&from).cloned().unwrap_or_default();
        let target = Kind::RequeuePi { target: pi.key };
        if waiters.iter().any(|w| w.state().kind != target) {
            return Err(Errno::EINVAL);
        }
        let mut count = 0;
        let mut rest = &waiters[..];
        if let Some(top) = waiters.first() {
            if let Take::Got = take_pi(&queues, pi, top.tid, None)? {
                remove(&mut queues, top);
                top.release();
                count += 1;
                rest = &waiters[1..];
            }
        }
        let moved: Vec<_> = rest.iter().take(nr_requeue as usize).cloned().collect();
        for w in &moved {
            remove(&mut queues, w);
            w.state().kind = Kind::Pi;
            queues.entry(pi.key).or_default().push(w.clone());
            count += 1;
        }
        if !moved.is_empty() {
            pi.word.update(&|v| v | FUTEX_WAITERS)?;
        }
        Ok(count)
    }

    /// A thread exited: PI waiters look again at their locks, which they
    /// inherit if it owned them.
    pub fn owner_exited(&self) {
        let queues = self.lock();
        for w in queues.values().flatten() {
            let mut st = w.state();
            if st.kind == Kind::Pi {
                st.recheck = true;
                w.cond.notify_one();
            }
        }
    }

    /// Wait (as a PI waiter, or a requeue-PI waiter not yet moved) until
    /// holding the lock. Errors carry the kind the waiter had by then.
    fn block_pi(
        &self,
        waiter: &Arc<Waiter>,
        pi: &PiWord<'_>,
        deadline: Option<Instant>,
        stop: &dyn Fn() -> bool,
    ) -> Result<(), (Errno, Kind)> {
        loop {
            {
                let mut st = waiter.state();
                if !st.woken && !st.recheck {
                    let slice = deadline.map_or(KILL_POLL, |d| {
                        d.saturating_duration_since(Instant::now()).min(KILL_POLL)
                    });
                    st = waiter
                        .cond
                        .wait_timeout(st, slice)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                st.recheck = false;
            }
            let mut queues = self.lock();
            let kind = {
                let st = waiter.state();
                if st.woken {
                    return Ok(());
                }
                st.kind
            };
            if kind == Kind::Pi {
                match take_pi(&queues, pi, waiter.tid, Some(waiter)) {
                    Ok(Take::Got) => {
                        remove(&mut queues, waiter);
                        return Ok(());
                    }
                    Ok(Take::Busy) => {}
                    Err(e) => {
                        remove(&mut queues, waiter);
                        return Err((e, kind));
                    }
                }
            }
            if let Some(e) = timed_out_or_stopped(deadline, stop) {
                remove(&mut queues, waiter);
                return Err((e, kind));
            }
        }
    }
}

/// Linux's ROBUST_LIST_LIMIT: how many entries a walk visits at most, so
/// a circular list cannot stall an exit.
const ROBUST_LIST_LIMIT: usize = 2048;

/// The thread is exiting: release its robust futexes, then let waiters
/// on PI futexes it still owns inherit them (Linux's futex_exit_release).
pub(crate) fn exit_futexes(task: &crate::task::Task) {
    exit_robust_list(task);
    task.handle.futex_dead.store(true, Ordering::SeqCst);
    task.kernel.futexes.owner_exited();
}

/// Walk the dying (or exec'ing) thread's robust futex list as Linux's
/// exit_robust_list does (kernel/futex/core.c): every lock word still
/// owned by the thread gets FUTEX_OWNER_DIED and one waiter is woken;
/// the entry in `list_op_pending` is handled last. The list is then gone.
pub(crate) fn exit_robust_list(task: &crate::task::Task) {
    let head = task.handle.robust_list.swap(0, Ordering::Relaxed);
    if head == 0 {
        return;
    }
    // Words are marked with the memory manager locked (so they stay
    // mapped); their waiters are woken after it is released.
    let mut wake = Vec::new();
    {
        let mut mm = task.mm();
        walk_robust_list(task, &mut mm, head, &mut wake);
    }
    for key in wake {
        let _ = task.kernel.futexes.wake(key, 1, u32::MAX);
    }
}

/// Mark the words of the list at `head`; collect the keys to wake.
fn walk_robust_list(
    task: &crate::task::Task,
    mm: &mut crate::mm::MemoryManager,
    head: u64,
    wake: &mut Vec<FutexKey>,
) {
    let read = |mm: &crate::mm::MemoryManager, addr: u64| {
        let mut b = [0u8; 8];
        mm.copy_in(addr, &mut b)
            .ok()
            .map(|()| u64::from_le_bytes(b))
    };
    // struct robust_list_head: list.next, futex_offset, list_op_pending.
    // A pointer's low bit marks a PI futex.
    let (Some(first), Some(offset), Some(pending)) =
        (read(mm, head), read(mm, head + 8), read(mm, head + 16))
    else {
        return;
    };
    let mut death = |mm: &mut crate::mm::MemoryManager, entry: u64, pi: bool, pending: bool| {
        let addr = entry.wrapping_add(offset);
        wake.extend(handle_futex_death(task, mm, addr, pi, pending));
    };
    let (pending, pending_pi) = (pending & !1, pending & 1 != 0);
    let (mut entry, mut pi) = (first & !1, first & 1 != 0);
    let mut limit = ROBUST_LIST_LIMIT;
    while entry != head {
        let next = read(mm, entry);
        if entry != pending {
            death(mm, entry, pi, false);
        }
        let Some(next) = next else {
            return;
        };
        (entry, pi) = (next & !1, next & 1 != 0);
        limit -= 1;
        if limit == 0 {
            break;
        }
    }
    if pending != 0 {
        death(mm, pending, pending_pi, true);
    }
}

/// Mark one robust lock word at `addr` whose owner (the task) died;
/// returns its key if one waiter should be woken.
fn handle_futex_death(
    task: &crate::task::Task,
    mm: &mut crate::mm::MemoryManager,
    addr: u64,
    pi: bool,
    pending: bool,
) -> Option<FutexKey> {
    if !addr.is_multiple_of(4) {
        return None;
    }
    let key = mm.futex_key(addr).ok()?;
    let word = mm.futex_word(addr, platform::AccessType::READ_WRITE).ok()?;
    loop {
        let uval = word.load().ok()?;
        // Died between unlocking (word 0) and waking: wake for it.
        if pending && !pi && uval == 0 {
            return Some(key);
        }
        if uval & FUTEX_TID_MASK != task.tid as u32 {
            return None;
        }
        let new = (uval & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
        if word.compare_exchange(uval, new).ok()?.is_err() {
            continue;
        }
        // PI waiters take the lock when told their owner exited
        // (FutexTable::owner_exited).
        return (!pi && uval & FUTEX_WAITERS != 0).then_some(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    fn k(offset: u64) -> FutexKey {
        FutexKey::Shared { offset }
    }

    #[test]
    fn wait_returns_eagain_when_the_word_changed() {
        let t = FutexTable::default();
        assert_eq!(
            t.wait(k(8), 1, u32::MAX, None, || Ok(2), &|| false),
            Err(Errno::EAGAIN)
        );
    }

    #[test]
    fn wait_times_out() {
        let t = FutexTable::default();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            t.wait(k(8), 1, u32::MAX, Some(deadline), || Ok(1), &|| false),
            Err(Errno::ETIMEDOUT)
        );
        assert!(t.queues.lock().unwrap().is_empty());
    }

    #[test]
    fn a_killed_waiter_returns_eintr() {
        let t = FutexTable::default();
        assert_eq!(
            t.wait(k(8), 1, u32::MAX, None, || Ok(1), &|| true),
            Err(Errno::EINTR)
        );
        assert!(t.queues.lock().unwrap().is_empty());
    }

    #[test]
    fn wake_releases_a_waiter_and_counts_it() {
        let t = Arc::new(FutexTable::default());
        let word = Arc::new(AtomicU32::new(0));
        let (t2, w2) = (t.clone(), word.clone());
        let waiter = std::thread::spawn(move || {
            t2.wait(
                k(64),
                0,
                u32::MAX,
                None,
                || Ok(w2.load(Ordering::SeqCst)),
                &|| false,
            )
        });
        // Wake until the waiter has queued and been released.
        let mut woken = 0;
        while woken == 0 {
            woken = t.wake(k(64), 1, u32::MAX).unwrap();
            std::thread::yield_now();
        }
        assert_eq!(woken, 1);
        assert_eq!(waiter.join().unwrap(), Ok(()));
    }

    #[test]
    fn bitsets_select_waiters_and_requeue_moves_them() {
        let t = Arc::new(FutexTable::default());
        let spawn = |key, bits| {
            let t = t.clone();
            std::thread::spawn(move || t.wait(key, 0, bits, None, || Ok(0), &|| false))
        };
        let a = spawn(k(1), 0b01);
        let b = spawn(k(1), 0b10);
        while t.queues.lock().unwrap().get(&k(1)).map_or(0, Vec::len) < 2 {
            std::thread::yield_now();
        }
        assert_eq!(t.wake(k(1), 5, 0b100).unwrap(), 0);
        assert_eq!(t.wake(k(1), 5, 0b10).unwrap(), 1);
        assert_eq!(b.join().unwrap(), Ok(()));
        assert_eq!(t.requeue(k(1), k(2), 0, 1, None).unwrap(), 1);
        assert_eq!(t.wake(k(2), 1, u32::MAX).unwrap(), 1);
        assert_eq!(a.join().unwrap(), Ok(()));
    }

    #[test]
    fn pi_unlock_hands_the_lock_to_the_first_waiter() {
        let t = Arc::new(FutexTable::default());
        let word = Arc::new(AtomicU32::new(1));
        let alive = |_: i32| true;
        let waiter = {
            let (t, word) = (t.clone(), word.clone());
            std::thread::spawn(move || {
                let alive = |_: i32| true;
                let pi = PiWord {
                    key: k(8),
                    word: &*word,
                    tid: 2,
                    alive: &alive,
                };
                t.lock_pi(&pi, None, false, &|| false)
            })
        };
        while t.queues.lock().unwrap().get(&k(8)).map_or(0, Vec::len) < 1 {
            std::thread::yield_now();
        }
        assert_eq!(word.load(Ordering::SeqCst), 1 | FUTEX_WAITERS);
        let owner = |tid| PiWord {
            key: k(8),
            word: &*word,
            tid,
            alive: &alive,
        };
        assert_eq!(t.unlock_pi(&owner(2)), Err(Errno::EPERM));
        assert_eq!(t.unlock_pi(&owner(1)), Ok(()));
        assert_eq!(word.load(Ordering::SeqCst), 2 | FUTEX_WAITERS);
        assert_eq!(waiter.join().unwrap(), Ok(()));
        assert_eq!(
            t.lock_pi(&owner(2), None, false, &|| false),
            Err(Errno::EDEADLK)
        );
        assert_eq!(t.unlock_pi(&owner(2)), Ok(()));
        assert_eq!(word.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn pi_lock_of_a_dead_owner_is_esrch_and_waiters_inherit_it() {
        let t = FutexTable::default();
        let word = AtomicU32::new(7);
        let dead = |tid: i32| tid != 7;
        let pi = PiWord {
            key: k(8),
            word: &word,
            tid: 3,
            alive: &dead,
        };
        assert_eq!(t.lock_pi(&pi, None, false, &|| false), Err(Errno::ESRCH));
        // A robust owner's death leaves OWNER_DIED, which the next owner keeps.
        word.store(FUTEX_OWNER_DIED, Ordering::SeqCst);
        assert_eq!(t.lock_pi(&pi, None, true, &|| false), Ok(()));
        assert_eq!(word.load(Ordering::SeqCst), 3 | FUTEX_OWNER_DIED);
    }
}
