//! Futexes: wait queues keyed by the memory a futex word lives in.
//!
//! A key is the word's address in one address space for private memory
//! and its offset in the memory file for shared memory (the same for every
//! address space that maps it); see `mm::FutexKey`. Waiting blocks the task's host thread on a condition
//! variable until a wake, a requeue-and-wake, or the timeout.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use abi::Errno;

use crate::mm::FutexKey;
use crate::process::KILL_POLL;

/// One blocked waiter.
struct Waiter {
    bitset: u32,
    /// Set by the waker; guarded so a wake is never lost.
    woken: Mutex<bool>,
    cond: Condvar,
}

#[derive(Default)]
pub struct FutexTable {
    queues: Mutex<HashMap<FutexKey, Vec<Arc<Waiter>>>>,
}

impl FutexTable {
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
        load: impl FnOnce() -> u32,
        stop: &dyn Fn() -> bool,
    ) -> Result<(), Errno> {
        if bitset == 0 {
            return Err(Errno::EINVAL);
        }
        let waiter = Arc::new(Waiter {
            bitset,
            woken: Mutex::new(false),
            cond: Condvar::new(),
        });
        {
            let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            if load() != expected {
                return Err(Errno::EAGAIN);
            }
            queues.entry(key).or_default().push(waiter.clone());
        }
        let mut woken = waiter.woken.lock().unwrap_or_else(|e| e.into_inner());
        let mut stopped = false;
        while !*woken {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            if stop() {
                stopped = true;
                break;
            }
            let slice = deadline.map_or(KILL_POLL, |d| (d - now).min(KILL_POLL));
            woken = waiter
                .cond
                .wait_timeout(woken, slice)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if *woken {
            return Ok(());
        }
        drop(woken);
        // Timed out: leave the queue, unless a waker took us meanwhile.
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        for queue in queues.values_mut() {
            queue.retain(|w| !Arc::ptr_eq(w, &waiter));
        }
        queues.retain(|_, q| !q.is_empty());
        if *waiter.woken.lock().unwrap_or_else(|e| e.into_inner()) {
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
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Self::wake_locked(&mut queues, key, n, bitset))
    }

    fn wake_locked(
        queues: &mut HashMap<FutexKey, Vec<Arc<Waiter>>>,
        key: FutexKey,
        n: u32,
        bitset: u32,
    ) -> u32 {
        let Some(queue) = queues.get_mut(&key) else {
            return 0;
        };
        let mut woken = 0;
        queue.retain(|w| {
            if woken < n && w.bitset & bitset != 0 {
                *w.woken.lock().unwrap_or_else(|e| e.into_inner()) = true;
                w.cond.notify_one();
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
        check: Option<(u32, &dyn Fn() -> u32)>,
    ) -> Result<u32, Errno> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((expected, load)) = check {
            if load() != expected {
                return Err(Errno::EAGAIN);
            }
        }
        let woken = Self::wake_locked(&mut queues, from, n, u32::MAX);
        let mut moved = Vec::new();
        if let Some(queue) = queues.get_mut(&from) {
            let k = queue.len().min(move_n as usize);
            moved = queue.drain(..k).collect();
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
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let condition = op()?;
        let mut woken = Self::wake_locked(&mut queues, key1, n, u32::MAX);
        if condition {
            woken += Self::wake_locked(&mut queues, key2, n2, u32::MAX);
        }
        Ok(woken)
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
            t.wait(k(8), 1, u32::MAX, None, || 2, &|| false),
            Err(Errno::EAGAIN)
        );
    }

    #[test]
    fn wait_times_out() {
        let t = FutexTable::default();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            t.wait(k(8), 1, u32::MAX, Some(deadline), || 1, &|| false),
            Err(Errno::ETIMEDOUT)
        );
        assert!(t.queues.lock().unwrap().is_empty());
    }

    #[test]
    fn a_killed_waiter_returns_eintr() {
        let t = FutexTable::default();
        assert_eq!(
            t.wait(k(8), 1, u32::MAX, None, || 1, &|| true),
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
                || w2.load(Ordering::SeqCst),
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
            std::thread::spawn(move || t.wait(key, 0, bits, None, || 0, &|| false))
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
}
