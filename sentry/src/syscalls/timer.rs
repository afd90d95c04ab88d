//! alarm, setitimer/getitimer and POSIX timers.

use std::time::Duration;

use abi::Errno;

use super::SysResult;
use crate::task::Task;
use crate::timer::{Notify, Setting, ITIMER_PROF_ID, ITIMER_REAL_ID, ITIMER_VIRTUAL_ID};

/// A `struct timeval` (`micros`) or `struct timespec` at `addr`.
fn read_time(task: &Task, addr: u64, micros: bool) -> Result<Duration, Errno> {
    let mut b = [0u8; 16];
    task.mm().copy_in(addr, &mut b)?;
    let sec = i64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let frac = i64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
    let limit = if micros { 1_000_000 } else { 1_000_000_000 };
    if sec < 0 || !(0..limit).contains(&frac) {
        return Err(Errno::EINVAL);
    }
    let nanos = if micros { frac * 1000 } else { frac };
    Ok(Duration::new(sec as u64, nanos as u32))
}

fn time_bytes(d: Duration, micros: bool) -> [u8; 16] {
    let frac = if micros {
        u64::from(d.subsec_micros())
    } else {
        u64::from(d.subsec_nanos())
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&d.as_secs().to_le_bytes());
    b[8..].copy_from_slice(&frac.to_le_bytes());
    b
}

/// itimerval / itimerspec: the interval first, then the value.
fn setting_bytes((value, interval): Setting, micros: bool) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&time_bytes(interval, micros));
    b[16..].copy_from_slice(&time_bytes(value, micros));
    b
}

fn read_setting(task: &Task, addr: u64, micros: bool) -> Result<Setting, Errno> {
    let interval = read_time(task, addr, micros)?;
    let value = read_time(task, addr + 16, micros)?;
    Ok((value, interval))
}

/// The table id of setitimer's timer `which`.
fn itimer_id(which: u64) -> Result<i32, Errno> {
    match which as i32 as i64 {
        0 => Ok(ITIMER_REAL_ID),
        1 => Ok(ITIMER_VIRTUAL_ID),
        2 => Ok(ITIMER_PROF_ID),
        _ => Err(Errno::EINVAL),
    }
}

pub fn setitimer(task: &mut Task, a: [u64; 6]) -> SysResult {
    let id = itimer_id(a[0])?;
    let (value, interval) = if a[1] == 0 {
        (Duration::ZERO, Duration::ZERO)
    } else {
        read_setting(task, a[1], true)?
    };
    let old = task
        .tg
        .timers
        .set(id, value, interval, &task.tg)
        .unwrap_or_default();
    if a[2] != 0 {
        task.mm().copy_out(a[2], &setting_bytes(old, true))?;
    }
    Ok(0)
}

pub fn getitimer(task: &mut Task, a: [u64; 6]) -> SysResult {
    let cur = task.tg.timers.get(itimer_id(a[0])?).unwrap_or_default();
    task.mm().copy_out(a[1], &setting_bytes(cur, true))?;
    Ok(0)
}

pub fn alarm(task: &mut Task, a: [u64; 6]) -> SysResult {
    let secs = Duration::from_secs(a[0] & 0xffff_ffff);
    let (left, _) = task
        .tg
        .timers
        .set(ITIMER_REAL_ID, secs, Duration::ZERO, &task.tg)
        .unwrap_or_default();
    // Whole seconds, rounded to nearest, never 0 for a pending alarm.
    let mut s = left.as_secs() + u64::from(left.subsec_micros() >= 500_000);
    if s == 0 && !left.is_zero() {
        s = 1;
    }
    Ok(s)
}

pub fn timer_create(task: &mut Task, a: [u64; 6]) -> SysResult {
    const SIGEV_SIGNAL: i32 = 0;
    const SIGEV_NONE: i32 = 1;
    const SIGEV_THREAD_ID: i32 = 4;
    let clock = a[0] as i32;
    let cpu = super::process::cpu_clock(task, clock)?.map(|(c, _)| c);
    if cpu.is_none()
        && !matches!(
            clock,
            libc::CLOCK_REALTIME | libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME
        )
    {
        tracing::info!("timer_create: clock {clock} not supported: EINVAL");
        return Err(Errno::EINVAL);
    }
    let timers = task.tg.timers.clone();
    let id = if a[1] == 0 {
        // No sigevent: SIGALRM carrying the timer id.
        timers.create(clock, cpu, |id| Notify::Process {
            sig: libc::SIGALRM,
            value: id as u64,
        })?
    } else {
        let mut ev = [0u8; 64];
        task.mm().copy_in(a[1], &mut ev)?;
        let value = u64::from_le_bytes(ev[0..8].try_into().expect("8 bytes"));
        let sig = i32::from_le_bytes(ev[8..12].try_into().expect("4 bytes"));
        let how = i32::from_le_bytes(ev[12..16].try_into().expect("4 bytes"));
        let tid = i32::from_le_bytes(ev[16..20].try_into().expect("4 bytes"));
        let valid_sig = (1..=64).contains(&sig);
        let notify = match how {
            SIGEV_NONE => Notify::None,
            SIGEV_SIGNAL if valid_sig => Notify::Process { sig, value },
            SIGEV_THREAD_ID if valid_sig => {
                let thread = task
                    .tg
                    .lock()
                    .threads
                    .iter()
                    .find(|t| t.tid == tid)
                    .cloned()
                    .ok_or(Errno::EINVAL)?;
                Notify::Thread {
                    sig,
                    value,
                    thread: std::sync::Arc::downgrade(&thread),
                }
            }
            _ => return Err(Errno::EINVAL),
        };
        timers.create(clock, cpu, |_| notify)?
    };
    if let Err(e) = task.mm().copy_out(a[2], &id.to_le_bytes()) {
        timers.delete(id);
        return Err(e);
    }
    Ok(0)
}

fn timer_id(a: u64) -> Result<i32, Errno> {
    i32::try_from(a as i64)
        .ok()
        .filter(|&id| id >= 0)
        .ok_or(Errno::EINVAL)
}

pub fn timer_settime(task: &mut Task, a: [u64; 6]) -> SysResult {
    const TIMER_ABSTIME: u64 = 1;
    let id = timer_id(a[0])?;
    if a[1] & !TIMER_ABSTIME != 0 {
        return Err(Errno::EINVAL);
    }
    let clock = task.tg.timers.clock(id).ok_or(Errno::EINVAL)?;
    let (mut value, interval) = read_setting(task, a[2], false)?;
    if a[1] & TIMER_ABSTIME != 0 && !value.is_zero() {
        let now = match task.tg.timers.cpu_now(id) {
            Some(cpu) => cpu,
            None => {
                let (sec, nsec) = crate::host::clock_gettime(clock)?;
                Duration::new(sec as u64, nsec as u32)
            }
        };
        // An absolute time already past fires at once (1 ns from now).
        value = value.saturating_sub(now).max(Duration::from_nanos(1));
    }
    let old = task
        .tg
        .timers
        .set(id, value, interval, &task.tg)
        .ok_or(Errno::EINVAL)?;
    if a[3] != 0 {
        task.mm().copy_out(a[3], &setting_bytes(old, false))?;
    }
    Ok(0)
}

pub fn timer_gettime(task: &mut Task, a: [u64; 6]) -> SysResult {
    let cur = task.tg.timers.get(timer_id(a[0])?).ok_or(Errno::EINVAL)?;
    task.mm().copy_out(a[1], &setting_bytes(cur, false))?;
    Ok(0)
}

pub fn timer_getoverrun(task: &mut Task, a: [u64; 6]) -> SysResult {
    task.tg
        .timers
        .overrun(timer_id(a[0])?)
        .map(u64::from)
        .ok_or(Errno::EINVAL)
}

pub fn timer_delete(task: &mut Task, a: [u64; 6]) -> SysResult {
    if task.tg.timers.delete(timer_id(a[0])?) {
        Ok(0)
    } else {
        Err(Errno::EINVAL)
    }
}
