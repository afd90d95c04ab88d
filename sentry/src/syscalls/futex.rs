//! futex(2).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use abi::Errno;
use platform::AccessType;

use super::SysResult;
use crate::futex::{PiWord, Word};
use crate::host;
use crate::mm::FutexKey;
use crate::task::Task;

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_REQUEUE: u64 = 3;
const FUTEX_CMP_REQUEUE: u64 = 4;
const FUTEX_WAKE_OP: u64 = 5;
const FUTEX_LOCK_PI: u64 = 6;
const FUTEX_UNLOCK_PI: u64 = 7;
const FUTEX_TRYLOCK_PI: u64 = 8;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
const FUTEX_WAIT_REQUEUE_PI: u64 = 11;
const FUTEX_CMP_REQUEUE_PI: u64 = 12;
const FUTEX_LOCK_PI2: u64 = 13;
const FUTEX_PRIVATE_FLAG: u64 = 128;
const FUTEX_CLOCK_REALTIME: u64 = 256;

/// Read a `struct timespec`, rejecting what Linux rejects.
fn timespec(task: &Task, addr: u64) -> Result<Duration, Errno> {
    let mut b = [0u8; 16];
    task.mm().copy_in(addr, &mut b)?;
    let sec = i64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let nsec = i64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok(Duration::new(sec as u64, nsec as u32))
}

/// The instant an absolute timeout on `clock` falls on.
fn deadline_at(abs: Duration, clock: i32) -> Result<Option<Instant>, Errno> {
    let (sec, nsec) = host::clock_gettime(clock)?;
    let now = Duration::new(sec as u64, nsec as u32);
    Ok(crate::process::deadline_in(abs.saturating_sub(now)))
}

/// The key of the futex word at `addr`.
fn key(task: &Task, addr: u64) -> Result<FutexKey, Errno> {
    task.mm().futex_key(addr)
}

/// FUTEX_WAKE_OP's operation on the second word; returns whether the old
/// value meets the encoded condition.
fn wake_op(word: &dyn Word, encoded: u32) -> Result<bool, Errno> {
    let sign_extend_12 = |v: u32| ((v << 20) as i32) >> 20;
    let op = (encoded >> 28) & 7;
    let shift = encoded & (8 << 28) != 0;
    let cmp = (encoded >> 24) & 15;
    let mut oparg = sign_extend_12((encoded >> 12) & 0xfff);
    let cmparg = sign_extend_12(encoded & 0xfff);
    if shift {
        oparg = 1i32.checked_shl(oparg as u32 & 31).unwrap_or(0);
    }
    let oparg = oparg as u32;
    let old = match op {
        0 => word.update(&|_| oparg),
        1 => word.update(&|v| v.wrapping_add(oparg)),
        2 => word.update(&|v| v | oparg),
        3 => word.update(&|v| v & !oparg),
        4 => word.update(&|v| v ^ oparg),
        _ => return Err(Errno::ENOSYS),
    }? as i32;
    Ok(match cmp {
        0 => old == cmparg,
        1 => old != cmparg,
        2 => old < cmparg,
        3 => old <= cmparg,
        4 => old > cmparg,
        5 => old >= cmparg,
        _ => return Err(Errno::ENOSYS),
    })
}

/// A futex wait cut short by a signal restarts if the handler allows.
fn restartable() -> Errno {
    Errno::new(crate::deliver::ERESTARTSYS).expect("a valid errno number")
}

pub fn futex(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (addr, op, val, timeout, addr2, val3) = (a[0], a[1], a[2] as u32, a[3], a[4], a[5] as u32);
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    if op & FUTEX_CLOCK_REALTIME != 0
        && !matches!(
            cmd,
            FUTEX_WAIT | FUTEX_WAIT_BITSET | FUTEX_WAIT_REQUEUE_PI | FUTEX_LOCK_PI2
        )
    {
        return Err(Errno::ENOSYS);
    }
    if matches!(
        cmd,
        FUTEX_LOCK_PI
            | FUTEX_LOCK_PI2
            | FUTEX_TRYLOCK_PI
            | FUTEX_UNLOCK_PI
            | FUTEX_WAIT_REQUEUE_PI
            | FUTEX_CMP_REQUEUE_PI
    ) {
        return futex_pi(task, cmd, op & FUTEX_CLOCK_REALTIME != 0, a);
    }
    let k = key(task, addr)?;
    // The word is read afresh each time, through the address space: a
    // copy-on-write break may move the page it lives in. EFAULT if it is
    // not mapped readable (or lies past the end of a mapped file).
    let mm = task.mm.clone();
    let load = || {
        let mut b = [0u8; 4];
        mm.lock()
            .unwrap_or_else(|e| e.into_inner())
            .copy_in(addr, &mut b)
            .map(|()| u32::from_le_bytes(b))
    };
    let futexes = &task.kernel.futexes;
    match cmd {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            let bitset = if cmd == FUTEX_WAIT { u32::MAX } else { val3 };
            let deadline = if timeout == 0 {
                None
            } else if cmd == FUTEX_WAIT && op & FUTEX_CLOCK_REALTIME == 0 {
                crate::process::deadline_in(timespec(task, timeout)?)
            } else {
                let clock = if op & FUTEX_CLOCK_REALTIME != 0 {
                    libc::CLOCK_REALTIME
                } else {
                    libc::CLOCK_MONOTONIC
                };
                deadline_at(timespec(task, timeout)?, clock)?
            };
            let handle = task.handle.clone();
            futexes
                .wait(k, val, bitset, deadline, load, &|| handle.interrupted())
                .map(|()| 0)
                .map_err(|e| if e == Errno::EINTR { restartable() } else { e })
        }
        FUTEX_WAKE => futexes.wake(k, val, u32::MAX).map(u64::from),
        FUTEX_WAKE_BITSET => futexes.wake(k, val, val3).map(u64::from),
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            let k2 = key(task, addr2)?;
            // val2 travels in the timeout argument.
            let move_n = timeout as u32;
            let check: Option<(u32, crate::futex::Load<'_>)> =
                (cmd == FUTEX_CMP_REQUEUE).then_some((val3, &load));
            futexes.requeue(k, k2, val, move_n, check).map(u64::from)
        }
        FUTEX_WAKE_OP => {
            let k2 = key(task, addr2)?;
            let word2 = task.mm().futex_word(addr2, AccessType::READ_WRITE)?;
            futexes
                .wake_op(k, k2, val, timeout as u32, || wake_op(&word2, val3))
                .map(u64::from)
        }
        other => {
            tracing::info!("futex operation {other} not supported: ENOSYS");
            Err(Errno::ENOSYS)
        }
    }
}

/// The PI operations: the word at `addr` is a lock holding its owner's TID.
fn futex_pi(task: &mut Task, cmd: u64, realtime: bool, a: [u64; 6]) -> SysResult {
    let (addr, val, timeout, addr2, val3) = (a[0], a[2] as u32, a[3], a[4], a[5] as u32);
    // LOCK_PI times out on CLOCK_REALTIME; LOCK_PI2 and WAIT_REQUEUE_PI on
    // CLOCK_MONOTONIC unless told otherwise. All three are absolute.
    let deadline =
        if timeout == 0 || !matches!(cmd, FUTEX_LOCK_PI | FUTEX_LOCK_PI2 | FUTEX_WAIT_REQUEUE_PI) {
            None
        } else {
            let clock = if cmd == FUTEX_LOCK_PI || realtime {
                libc::CLOCK_REALTIME
            } else {
                libc::CLOCK_MONOTONIC
            };
            deadline_at(timespec(task, timeout)?, clock)?
        };
    // The word's key, and the word for atomic updates (made this address
    // space's own first, so it stays put).
    let rw_key = |task: &Task, addr: u64| {
        let mut mm = task.mm();
        let key = mm.futex_key(addr)?;
        Ok::<_, Errno>((key, mm.futex_word(addr, AccessType::READ_WRITE)?))
    };
    let first = rw_key(task, addr)?;
    let k = first.0;
    let kernel = task.kernel.clone();
    let alive = |tid: i32| {
        kernel
            .find_task(tid)
            .is_some_and(|(_, h)| !h.futex_dead.load(Ordering::SeqCst))
    };
    let handle = task.handle.clone();
    let stop = || handle.interrupted();
    let futexes = &task.kernel.futexes;
    let restart = || Errno::new(crate::deliver::ERESTARTNOINTR).expect("a valid errno number");
    fn pi_word<'a>(
        (key, word): &'a (FutexKey, crate::mm::FutexWord),
        tid: i32,
        alive: &'a dyn Fn(i32) -> bool,
    ) -> PiWord<'a> {
        PiWord {
            key: *key,
            word,
            tid,
            alive,
        }
    }
    let pi_at = |kw| pi_word(kw, task.tid, &alive);
    match cmd {
        FUTEX_LOCK_PI | FUTEX_LOCK_PI2 | FUTEX_TRYLOCK_PI => futexes
            .lock_pi(&pi_at(&first), deadline, cmd == FUTEX_TRYLOCK_PI, &stop)
            .map(|()| 0)
            .map_err(|e| if e == Errno::EINTR { restart() } else { e }),
        FUTEX_UNLOCK_PI => futexes.unlock_pi(&pi_at(&first)).map(|()| 0),
        FUTEX_WAIT_REQUEUE_PI => {
            let k2 = rw_key(task, addr2)?;
            if k2.0 == k {
                return Err(Errno::EINVAL);
            }
            let load = || first.1.load();
            futexes
                .wait_requeue_pi(k, val, &pi_at(&k2), deadline, load, &stop)
                .map(|()| 0)
                .map_err(|e| if e == Errno::EINTR { restart() } else { e })
        }
        FUTEX_CMP_REQUEUE_PI => {
            let k2 = rw_key(task, addr2)?;
            // val2 (how many to requeue) travels in the timeout argument;
            // exactly one may be woken (given the lock).
            let nr_requeue = timeout as i32;
            if k2.0 == k || val != 1 || nr_requeue < 0 {
                return Err(Errno::EINVAL);
            }
            let load = || first.1.load();
            futexes
                .cmp_requeue_pi(k, &pi_at(&k2), nr_requeue as u32, val3, &load)
                .map(u64::from)
        }
        _ => unreachable!("futex_pi called for PI operations only"),
    }
}
