//! poll, ppoll, select and pselect6 over the process's descriptors.
//!
//! Every descriptor is backed by a host descriptor, so readiness comes from
//! the host's poll, called in short slices so that a signal or a kill ends
//! the wait promptly.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi::Errno;

use super::SysResult;
use crate::deliver::ERESTARTNOHAND;
use crate::fs::File;
use crate::process::KILL_POLL;
use crate::task::Task;

const POLLNVAL: i16 = 0x20;
/// Linux's limit on poll's nfds (RLIMIT_NOFILE's default hard limit).
const MAX_NFDS: u64 = 1 << 20;

/// Poll `entries` (application fd, events) until one is ready, the
/// deadline passes, or a signal arrives; returns revents per entry.
fn wait_ready(
    task: &Task,
    entries: &[(i32, i16)],
    deadline: Option<Instant>,
) -> Result<Vec<i16>, Errno> {
    // Keep the files open while polling their host descriptors.
    let files: Vec<Option<Arc<File>>> = entries
        .iter()
        .map(|&(fd, _)| {
            if fd < 0 {
                None
            } else {
                task.fds().get(fd as u64).ok()
            }
        })
        .collect();
    // Files the Sentry keeps itself answer for themselves; those whose
    // readiness changes (sockets) wake this task through their waiters.
    // Host descriptors are polled on the host.
    let me: Arc<dyn vfs::waiter::Notify> = task.handle.clone();
    for f in files.iter().flatten() {
        if let Some(w) = f.ops().waiters() {
            w.add(&me);
        }
    }
    let result = (|| loop {
        let local: Vec<i16> = entries
            .iter()
            .zip(&files)
            .map(|(&(_, events), f)| match f {
                Some(f) if f.ops().host_fd().is_none() => f.ops().poll(events),
                _ => 0,
            })
            .collect();
        let any_local = local.iter().any(|&r| r != 0);
        let mut host: Vec<libc::pollfd> = entries
            .iter()
            .zip(&files)
            .map(|(&(fd, events), f)| libc::pollfd {
                fd: f
                    .as_ref()
                    .and_then(|f| f.ops().host_fd())
                    .map_or(-1, |h| h.as_raw_fd()),
                events: if fd < 0 { 0 } else { events },
                revents: 0,
            })
            .collect();
        // The task's wake eventfd ends the wait when a signal arrives.
        host.push(libc::pollfd {
            fd: task.handle.wake_fd.as_ref().map_or(-1, |w| w.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        });
        let now = Instant::now();
        let slice = match deadline {
            _ if any_local => Duration::ZERO,
            Some(d) if now >= d => Duration::ZERO,
            Some(d) => (d - now).min(KILL_POLL),
            None => KILL_POLL,
        };
        crate::host::poll(&mut host, slice.as_millis() as i32)?;
        if host.pop().is_some_and(|w| w.revents != 0) {
            task.handle.drain_wake();
        }
        let revents: Vec<i16> = entries
            .iter()
            .zip(&files)
            .zip(&host)
            .zip(&local)
            .map(|(((&(fd, _), f), h), &l)| {
                if fd >= 0 && f.is_none() {
                    POLLNVAL
                } else {
                    h.revents | l
                }
            })
            .collect();
        if revents.iter().any(|&r| r != 0) || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(revents);
        }
        if task.handle.interrupted() {
            return Err(Errno::new(ERESTARTNOHAND).expect("a valid errno number"));
        }
    })();
    for f in files.iter().flatten() {
        if let Some(w) = f.ops().waiters() {
            w.remove(&me);
        }
    }
    result
}

fn do_poll(task: &mut Task, addr: u64, nfds: u64, deadline: Option<Instant>) -> SysResult {
    if nfds > MAX_NFDS {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; nfds as usize * 8];
    task.mm().copy_in(addr, &mut raw)?;
    let entries: Vec<(i32, i16)> = raw
        .chunks_exact(8)
        .map(|c| {
            (
                i32::from_le_bytes(c[0..4].try_into().expect("4")),
                i16::from_le_bytes([c[4], c[5]]),
            )
        })
        .collect();
    let revents = wait_ready(task, &entries, deadline)?;
    for (c, r) in raw.chunks_exact_mut(8).zip(&revents) {
        c[6..8].copy_from_slice(&r.to_le_bytes());
    }
    task.mm().copy_out(addr, &raw)?;
    Ok(revents.iter().filter(|&&r| r != 0).count() as u64)
}

pub fn poll(task: &mut Task, a: [u64; 6]) -> SysResult {
    let timeout = a[2] as i32;
    let deadline = (timeout >= 0).then(|| Instant::now() + Duration::from_millis(timeout as u64));
    do_poll(task, a[0], a[1], deadline)
}

fn read_timeout(task: &Task, addr: u64) -> Result<Option<Instant>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    let mut b = [0u8; 16];
    task.mm().copy_in(addr, &mut b)?;
    let sec = i64::from_le_bytes(b[..8].try_into().expect("8"));
    let nsec = i64::from_le_bytes(b[8..].try_into().expect("8"));
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok(crate::process::deadline_in(Duration::new(
        sec as u64,
        nsec as u32,
    )))
}

/// Install a temporary signal mask for the call (ppoll, pselect6); the
/// old one returns when the call does or once a handler has run.
fn temporary_mask(task: &mut Task, addr: u64, size: u64) -> Result<(), Errno> {
    if addr == 0 {
        return Ok(());
    }
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; 8];
    task.mm().copy_in(addr, &mut b)?;
    let mask = u64::from_le_bytes(b) & !crate::signal::UNBLOCKABLE;
    task.saved_mask = Some(task.set_signal_mask(mask));
    Ok(())
}

pub fn ppoll(task: &mut Task, a: [u64; 6]) -> SysResult {
    let deadline = read_timeout(task, a[2])?;
    temporary_mask(task, a[3], a[4])?;
    do_poll(task, a[0], a[1], deadline)
}

fn do_select(task: &mut Task, nfds: u64, sets: [u64; 3], deadline: Option<Instant>) -> SysResult {
    const IN: i16 =
        libc::POLLIN | libc::POLLRDNORM | libc::POLLRDBAND | libc::POLLHUP | libc::POLLERR;
    const OUT: i16 = libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND | libc::POLLERR;
    const EX: i16 = libc::POLLPRI;
    if nfds > 1024 {
        return Err(Errno::EINVAL);
    }
    let bytes = nfds.div_ceil(64) as usize * 8;
    let mut bits = [vec![0u8; bytes], vec![0u8; bytes], vec![0u8; bytes]];
    for (set, addr) in bits.iter_mut().zip(sets) {
        if addr != 0 {
            task.mm().copy_in(addr, set)?;
        }
    }
    let has = |set: &[u8], fd: usize| set[fd / 8] & (1 << (fd % 8)) != 0;
    let mut entries = Vec::new();
    for fd in 0..nfds as usize {
        let events = [(0, libc::POLLIN), (1, libc::POLLOUT), (2, libc::POLLPRI)]
            .iter()
            .filter(|(i, _)| has(&bits[*i], fd))
            .fold(0i16, |e, (_, ev)| e | ev);
        if events != 0 {
            entries.push((fd as i32, events));
        }
    }
    let revents = wait_ready(task, &entries, deadline)?;
    if revents.contains(&POLLNVAL) {
        return Err(Errno::EBADF);
    }
    let mut out = [vec![0u8; bytes], vec![0u8; bytes], vec![0u8; bytes]];
    let mut count = 0;
    for (&(fd, events), &r) in entries.iter().zip(&revents) {
        let fd = fd as usize;
        for (i, mask) in [(0, IN), (1, OUT), (2, EX)] {
            let asked = [libc::POLLIN, libc::POLLOUT, libc::POLLPRI][i];
            if events & asked != 0 && r & mask != 0 {
                out[i][fd / 8] |= 1 << (fd % 8);
                count += 1;
            }
        }
    }
    for (set, addr) in out.iter().zip(sets) {
        if addr != 0 {
            task.mm().copy_out(addr, set)?;
        }
    }
    Ok(count)
}

pub fn select(task: &mut Task, a: [u64; 6]) -> SysResult {
    // struct timeval: seconds and microseconds.
    let deadline = if a[4] == 0 {
        None
    } else {
        let mut b = [0u8; 16];
        task.mm().copy_in(a[4], &mut b)?;
        let sec = i64::from_le_bytes(b[..8].try_into().expect("8"));
        let usec = i64::from_le_bytes(b[8..].try_into().expect("8"));
        if sec < 0 || !(0..1_000_000).contains(&usec) {
            return Err(Errno::EINVAL);
        }
        crate::process::deadline_in(Duration::new(sec as u64, usec as u32 * 1000))
    };
    do_select(task, a[0], [a[1], a[2], a[3]], deadline)
}

pub fn pselect6(task: &mut Task, a: [u64; 6]) -> SysResult {
    let deadline = read_timeout(task, a[4])?;
    // The sixth argument points at { const sigset_t *ss; size_t ss_len; }.
    if a[5] != 0 {
        let mut b = [0u8; 16];
        task.mm().copy_in(a[5], &mut b)?;
        let set = u64::from_le_bytes(b[..8].try_into().expect("8"));
        let len = u64::from_le_bytes(b[8..].try_into().expect("8"));
        temporary_mask(task, set, len)?;
    }
    do_select(task, a[0], [a[1], a[2], a[3]], deadline)
}
