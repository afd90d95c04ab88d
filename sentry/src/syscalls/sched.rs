//! Scheduling attributes: CPU affinity, policy and real-time priority,
//! nice values. The Sentry does not schedule (host threads run the tasks),
//! so these are recorded per thread and reported back as Linux would,
//! with Linux's validation (sched(7), sched_setaffinity(2),
//! sched_setscheduler(2), getpriority(2)).

use std::sync::Arc;

use abi::Errno;

use super::SysResult;
use crate::host;
use crate::process::TaskHandle;
use crate::task::Task;

const SCHED_OTHER: i32 = 0;
const SCHED_FIFO: i32 = 1;
const SCHED_RR: i32 = 2;
const SCHED_BATCH: i32 = 3;
const SCHED_IDLE: i32 = 5;
const SCHED_RESET_ON_FORK: i32 = 0x4000_0000;

/// One thread's scheduling attributes; a new thread starts with its
/// creator's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sched {
    /// CPUs the thread may run on, one bit each (the first 64 CPUs).
    pub affinity: u64,
    pub policy: i32,
    /// sched_priority: 1..=99 for SCHED_FIFO/RR, else 0.
    pub rt_priority: i32,
    /// -20..=19.
    pub nice: i32,
}

impl Default for Sched {
    fn default() -> Self {
        Sched {
            affinity: online_mask(),
            policy: SCHED_OTHER,
            rt_priority: 0,
            nice: 0,
        }
    }
}

fn online_mask() -> u64 {
    match host::online_cpus() {
        n if n >= 64 => u64::MAX,
        n => (1u64 << n) - 1,
    }
}

/// The thread `pid` names (0: the caller).
fn thread(task: &Task, pid: u64) -> Result<Arc<TaskHandle>, Errno> {
    let tid = i32::try_from(pid).map_err(|_| Errno::EINVAL)?;
    if tid < 0 {
        return Err(Errno::EINVAL);
    }
    if tid == 0 || tid == task.tid {
        return Ok(task.handle.clone());
    }
    task.kernel
        .find_task(tid)
        .map(|(_, t)| t)
        .ok_or(Errno::ESRCH)
}

pub fn sched_setaffinity(task: &mut Task, a: [u64; 6]) -> SysResult {
    let t = thread(task, a[0])?;
    let len = (a[1] as usize).min(8);
    let mut b = [0u8; 8];
    task.mm().copy_in(a[2], &mut b[..len])?;
    let mask = u64::from_le_bytes(b) & online_mask();
    if mask == 0 {
        return Err(Errno::EINVAL);
    }
    t.sched().affinity = mask;
    Ok(0)
}

pub fn sched_getaffinity(task: &mut Task, a: [u64; 6]) -> SysResult {
    let t = thread(task, a[0])?;
    let size = a[1] as usize;
    let bytes = host::online_cpus().div_ceil(64) * 8;
    if !size.is_multiple_of(8) || size < bytes {
        return Err(Errno::EINVAL);
    }
    let mut mask = vec![0u8; bytes];
    mask[..8].copy_from_slice(&t.sched().affinity.to_le_bytes());
    task.mm().copy_out(a[2], &mask)?;
    Ok(bytes as u64)
}

/// The soft limit `resource` of the process `t` belongs to (0 once it is
/// gone).
fn limit_of(task: &Task, t: &TaskHandle, resource: usize) -> u64 {
    if t.tid == task.tid {
        return task.tg.soft_limit(resource);
    }
    task.kernel
        .find_task(t.tid)
        .map_or(0, |(tg, _)| tg.soft_limit(resource))
}

/// Whether `t` may get the nice value `nice` (Linux's can_nice): within
/// RLIMIT_NICE (whose value 20 - nice is the lowest nice allowed) or with
/// CAP_SYS_NICE.
fn can_nice(task: &Task, t: &TaskHandle, nice: i32) -> bool {
    task.creds.has_cap(super::caps::CAP_SYS_NICE)
        || (20 - nice) as u64 <= limit_of(task, t, crate::limits::RLIMIT_NICE)
}

/// Check a policy and priority for thread `t` as sched_setscheduler
/// does: without CAP_SYS_NICE, a real-time policy needs a nonzero
/// RLIMIT_RTPRIO to be entered and a priority within it to be raised,
/// and SCHED_IDLE is left only as far as RLIMIT_NICE allows.
fn check_policy(task: &Task, t: &TaskHandle, policy: i32, priority: i32) -> Result<i32, Errno> {
    let policy = policy & !SCHED_RESET_ON_FORK;
    match policy {
        SCHED_FIFO | SCHED_RR if !(1..=99).contains(&priority) => return Err(Errno::EINVAL),
        SCHED_FIFO | SCHED_RR => {}
        SCHED_OTHER | SCHED_BATCH | SCHED_IDLE if priority == 0 => {}
        _ => return Err(Errno::EINVAL),
    }
    if task.creds.has_cap(super::caps::CAP_SYS_NICE) {
        return Ok(policy);
    }
    let now = *t.sched();
    if matches!(policy, SCHED_FIFO | SCHED_RR) {
        let rtprio = limit_of(task, t, crate::limits::RLIMIT_RTPRIO);
        if policy != now.policy && rtprio == 0 {
            return Err(Errno::EPERM);
        }
        if priority > now.rt_priority && priority as u64 > rtprio {
            return Err(Errno::EPERM);
        }
    }
    if now.policy == SCHED_IDLE && policy != SCHED_IDLE && !can_nice(task, t, now.nice) {
        return Err(Errno::EPERM);
    }
    Ok(policy)
}

fn read_priority(task: &Task, addr: u64) -> Result<i32, Errno> {
    if addr == 0 {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; 4];
    task.mm().copy_in(addr, &mut b)?;
    Ok(i32::from_le_bytes(b))
}

pub fn sched_setscheduler(task: &mut Task, a: [u64; 6]) -> SysResult {
    let policy = a[1] as i32;
    if policy < 0 {
        return Err(Errno::EINVAL);
    }
    let priority = read_priority(task, a[2])?;
    let t = thread(task, a[0])?;
    let policy = check_policy(task, &t, policy, priority)?;
    let mut s = t.sched();
    s.policy = policy;
    s.rt_priority = priority;
    Ok(0)
}

pub fn sched_getscheduler(task: &mut Task, a: [u64; 6]) -> SysResult {
    let t = thread(task, a[0])?;
    let policy = t.sched().policy;
    Ok(policy as u64)
}

pub fn sched_setparam(task: &mut Task, a: [u64; 6]) -> SysResult {
    let priority = read_priority(task, a[1])?;
    let t = thread(task, a[0])?;
    let policy = t.sched().policy;
    check_policy(task, &t, policy, priority)?;
    t.sched().rt_priority = priority;
    Ok(0)
}

pub fn sched_getparam(task: &mut Task, a: [u64; 6]) -> SysResult {
    if a[1] == 0 {
        return Err(Errno::EINVAL);
    }
    let t = thread(task, a[0])?;
    let priority = t.sched().rt_priority;
    task.mm().copy_out(a[1], &priority.to_le_bytes())?;
    Ok(0)
}

pub fn sched_get_priority_max(_: &mut Task, a: [u64; 6]) -> SysResult {
    match a[0] as i32 {
        SCHED_FIFO | SCHED_RR => Ok(99),
        SCHED_OTHER | SCHED_BATCH | SCHED_IDLE => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

pub fn sched_get_priority_min(_: &mut Task, a: [u64; 6]) -> SysResult {
    match a[0] as i32 {
        SCHED_FIFO | SCHED_RR => Ok(1),
        SCHED_OTHER | SCHED_BATCH | SCHED_IDLE => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

const PRIO_PROCESS: u64 = 0;
const PRIO_PGRP: u64 = 1;
const PRIO_USER: u64 = 2;

/// The threads getpriority/setpriority's `which` and `who` select.
fn selected(task: &Task, which: u64, who: u64) -> Result<Vec<Arc<TaskHandle>>, Errno> {
    let who = u32::try_from(who).map_err(|_| Errno::EINVAL)?;
    let threads = match which {
        PRIO_PROCESS => vec![thread(task, u64::from(who))?],
        PRIO_PGRP => {
            let pgid = if who == 0 {
                task.tg.lock().pgid
            } else {
                who as i32
            };
            task.kernel
                .all_groups()
                .into_iter()
                .filter(|g| g.lock().pgid == pgid)
                .flat_map(|g| g.lock().threads.clone())
                .collect()
        }
        PRIO_USER => {
            let uid = if who == 0 { task.creds.ruid } else { who };
            task.kernel
                .all_groups()
                .into_iter()
                .flat_map(|g| g.lock().threads.clone())
                .filter(|t| {
                    if t.tid == task.tid {
                        task.creds.ruid == uid
                    } else {
                        t.view().is_some_and(|v| v.creds.ruid == uid)
                    }
                })
                .collect()
        }
        _ => return Err(Errno::EINVAL),
    };
    if threads.is_empty() {
        return Err(Errno::ESRCH);
    }
    Ok(threads)
}

/// getpriority(2) as the kernel returns it: 20 - nice of the highest
/// priority (lowest nice) selected thread (glibc converts back).
pub fn getpriority(task: &mut Task, a: [u64; 6]) -> SysResult {
    let nice = selected(task, a[0], a[1])?
        .iter()
        .map(|t| t.sched().nice)
        .min()
        .expect("selected is never empty");
    Ok((20 - nice) as u64)
}

pub fn setpriority(task: &mut Task, a: [u64; 6]) -> SysResult {
    let nice = (a[2] as i32).clamp(-20, 19);
    for t in selected(task, a[0], a[1])? {
        // Lowering nice needs RLIMIT_NICE or CAP_SYS_NICE.
        let lower = nice < t.sched().nice;
        if lower && !can_nice(task, &t, nice) {
            return Err(Errno::EACCES);
        }
        t.sched().nice = nice;
    }
    Ok(0)
}
