//! epoll, eventfd and timerfd, backed by host objects of the same kind.
//!
//! Every application descriptor is a host descriptor, so an epoll set is a
//! host epoll set over those descriptors, carrying the application's event
//! data unchanged; waits run in short slices so a signal or kill ends them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use abi::Errno;

use super::SysResult;
use crate::deliver::ERESTARTNOHAND;
use crate::fs::{self, File};
use crate::host;
use crate::process::KILL_POLL;
use crate::task::Task;

/// Marks the files these calls create, so each call checks it got its kind.
const EPOLL_PATH: &str = "anon_inode:[eventpoll]";
const EVENTFD_PATH: &str = "anon_inode:[eventfd]";
const TIMERFD_PATH: &str = "anon_inode:[timerfd]";

fn install(
    task: &mut Task,
    fd: std::os::fd::OwnedFd,
    flags: i32,
    path: &str,
    cloexec: bool,
) -> SysResult {
    let file = fs::host_file(fd, libc::O_RDWR | flags, path);
    task.fds().insert(file, cloexec, 0)
}

fn of_kind(task: &Task, fd: u64, path: &str) -> Result<Arc<File>, Errno> {
    let file = task.fds().get(fd)?;
    if file.anon_name() != path {
        return Err(Errno::EINVAL);
    }
    Ok(file)
}

pub fn epoll_create1(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = a[0] as i32;
    if flags & !libc::EPOLL_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    let fd = host::epoll_create()?;
    install(task, fd, 0, EPOLL_PATH, flags & libc::EPOLL_CLOEXEC != 0)
}

pub fn epoll_create(task: &mut Task, a: [u64; 6]) -> SysResult {
    if a[0] as i32 <= 0 {
        return Err(Errno::EINVAL);
    }
    epoll_create1(task, [0; 6])
}

pub fn epoll_ctl(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (epfd, op, fd, event) = (a[0], a[1] as i32, a[2], a[3]);
    let ep = of_kind(task, epfd, EPOLL_PATH)?;
    let target = task.fds().get(fd)?;
    if epfd == fd {
        return Err(Errno::EINVAL);
    }
    let ev = if op == libc::EPOLL_CTL_DEL {
        None
    } else {
        let mut b = [0u8; 12];
        task.mm().copy_in(event, &mut b)?;
        Some(b)
    };
    // Linux refuses regular files and directories (always ready) with EPERM;
    // so does a file without a host descriptor here.
    let target_fd = fs::host_fd(&target, Errno::EPERM)?;
    host::epoll_ctl(fs::host_fd(&ep, Errno::EINVAL)?, op, target_fd, ev).map(|()| 0)
}

fn wait(task: &mut Task, epfd: u64, events: u64, max: u64, timeout_ms: i32) -> SysResult {
    if max == 0 || max > (i32::MAX as u64) / 12 {
        return Err(Errno::EINVAL);
    }
    let ep = of_kind(task, epfd, EPOLL_PATH)?;
    let max = max.min(4096) as usize;
    let deadline =
        (timeout_ms >= 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
    loop {
        let now = Instant::now();
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(now).min(KILL_POLL),
            None => KILL_POLL,
        };
        let ready = host::epoll_wait(
            fs::host_fd(&ep, Errno::EINVAL)?,
            max,
            slice.as_millis() as i32,
        )?;
        if !ready.is_empty() {
            let bytes: Vec<u8> = ready.iter().flatten().copied().collect();
            task.mm().copy_out(events, &bytes)?;
            return Ok(ready.len() as u64);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(0);
        }
        if task.handle.interrupted() {
            // epoll_wait is never restarted after a handler (signal(7)).
            return Err(Errno::new(ERESTARTNOHAND).expect("a valid errno number"));
        }
    }
}

pub fn epoll_wait(task: &mut Task, a: [u64; 6]) -> SysResult {
    wait(task, a[0], a[1], a[2], a[3] as i32)
}

pub fn epoll_pwait(task: &mut Task, a: [u64; 6]) -> SysResult {
    if a[4] != 0 {
        if a[5] != 8 {
            return Err(Errno::EINVAL);
        }
        let mut b = [0u8; 8];
        task.mm().copy_in(a[4], &mut b)?;
        let mask = u64::from_le_bytes(b) & !crate::signal::UNBLOCKABLE;
        let old = std::mem::replace(&mut task.handle.signals().mask, mask);
        task.saved_mask = Some(old);
    }
    wait(task, a[0], a[1], a[2], a[3] as i32)
}

pub fn eventfd2(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = a[1] as i32;
    if flags & !(libc::EFD_CLOEXEC | libc::EFD_NONBLOCK | libc::EFD_SEMAPHORE) != 0 {
        return Err(Errno::EINVAL);
    }
    // Non-blocking on the host; blocking reads are waits in the Sentry.
    let fd = host::eventfd(
        a[0] as u32,
        libc::EFD_NONBLOCK | (flags & libc::EFD_SEMAPHORE),
    )?;
    install(
        task,
        fd,
        flags & libc::EFD_NONBLOCK,
        EVENTFD_PATH,
        flags & libc::EFD_CLOEXEC != 0,
    )
}

pub fn eventfd(task: &mut Task, a: [u64; 6]) -> SysResult {
    eventfd2(task, [a[0], 0, 0, 0, 0, 0])
}

pub fn timerfd_create(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (clock, flags) = (a[0] as i32, a[1] as i32);
    if !matches!(
        clock,
        libc::CLOCK_REALTIME | libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME
    ) {
        return Err(Errno::EINVAL);
    }
    if flags & !(libc::TFD_CLOEXEC | libc::TFD_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let fd = host::timerfd_create(clock, libc::TFD_NONBLOCK)?;
    install(
        task,
        fd,
        flags & libc::TFD_NONBLOCK,
        TIMERFD_PATH,
        flags & libc::TFD_CLOEXEC != 0,
    )
}

pub fn timerfd_settime(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = of_kind(task, a[0], TIMERFD_PATH)?;
    let flags = a[1] as i32;
    if flags & !(libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET) != 0 {
        return Err(Errno::EINVAL);
    }
    let mut new = [0u8; 32];
    task.mm().copy_in(a[2], &mut new)?;
    let old = host::timerfd_settime(fs::host_fd(&file, Errno::EINVAL)?, flags, &new)?;
    if a[3] != 0 {
        task.mm().copy_out(a[3], &old)?;
    }
    Ok(0)
}

pub fn timerfd_gettime(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = of_kind(task, a[0], TIMERFD_PATH)?;
    let cur = host::timerfd_gettime(fs::host_fd(&file, Errno::EINVAL)?)?;
    task.mm().copy_out(a[1], &cur)?;
    Ok(0)
}
