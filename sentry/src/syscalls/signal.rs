//! Signal syscalls: dispositions, masks, sending, waiting, sigreturn.

use std::sync::Arc;
use std::time::{Duration, Instant};

use abi::Errno;
use platform::FpState;

use super::SysResult;
use crate::deliver::{ERESTARTNOHAND, ERESTART_RESTARTBLOCK};
use crate::process::{TaskHandle, ThreadGroup, KILL_POLL};
use crate::signal::{self, bit, AltStack, Queued, SigAction, UNBLOCKABLE};
use crate::task::Task;

const SI_USER: i32 = 0;
const SI_TKILL: i32 = -6;

fn check_sig(sig: u64) -> Result<i32, Errno> {
    if (1..=64).contains(&sig) {
        Ok(sig as i32)
    } else {
        Err(Errno::EINVAL)
    }
}

fn restart(code: i32) -> Errno {
    Errno::new(code).expect("restart codes are valid errno numbers")
}

fn read_set(task: &Task, addr: u64) -> Result<u64, Errno> {
    let mut b = [0u8; 8];
    task.mm().copy_in(addr, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

pub fn rt_sigaction(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (sig, act, oact, size) = (a[0], a[1], a[2], a[3]);
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let sig = check_sig(sig)?;
    let new = if act != 0 {
        if bit(sig) & UNBLOCKABLE != 0 {
            return Err(Errno::EINVAL);
        }
        let mut b = [0u8; 32];
        task.mm().copy_in(act, &mut b)?;
        Some(SigAction::from_bytes(&b))
    } else {
        None
    };
    let old = {
        let mut h = task.tg.handlers();
        let old = h.get(sig);
        if let Some(mut new) = new {
            new.mask &= !UNBLOCKABLE;
            h.actions[(sig - 1) as usize] = new;
        }
        old
    };
    // A signal set to be ignored is discarded if pending (POSIX).
    if let Some(new) = new {
        if signal::ignored(&new, sig) {
            for t in task.tg.lock().threads.iter() {
                t.signals().discard(sig);
            }
        }
    }
    if oact != 0 {
        task.mm().copy_out(oact, &old.to_bytes())?;
    }
    Ok(0)
}

pub fn rt_sigprocmask(task: &mut Task, a: [u64; 6]) -> SysResult {
    const SIG_BLOCK: u64 = 0;
    const SIG_UNBLOCK: u64 = 1;
    const SIG_SETMASK: u64 = 2;
    let (how, set, oset, size) = (a[0], a[1], a[2], a[3]);
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let new = if set != 0 {
        Some(read_set(task, set)?)
    } else {
        None
    };
    let old = task.handle.signals().mask;
    if let Some(new) = new {
        let mask = match how {
            SIG_BLOCK => old | new,
            SIG_UNBLOCK => old & !new,
            SIG_SETMASK => new,
            _ => return Err(Errno::EINVAL),
        };
        task.set_signal_mask(mask & !UNBLOCKABLE);
    }
    if oset != 0 {
        task.mm().copy_out(oset, &old.to_le_bytes())?;
    }
    Ok(0)
}

pub fn rt_sigpending(task: &mut Task, a: [u64; 6]) -> SysResult {
    if a[1] != 8 {
        return Err(Errno::EINVAL);
    }
    let set = {
        let s = task.handle.signals();
        s.pending_set() & s.mask
    };
    task.mm().copy_out(a[0], &set.to_le_bytes())?;
    Ok(0)
}

pub fn rt_sigreturn(task: &mut Task, _: [u64; 6]) -> SysResult {
    // The flags user code may not change come from the current state.
    task.ctx
        .pull_full_state(task.space.as_ref(), &mut task.state)
        .map_err(|_| Errno::EFAULT)?;
    // The handler's `ret` popped the frame's return address.
    let frame = task.state.regs.rsp.wrapping_sub(8);
    let mut uc = [0u8; 304];
    let bad = |task: &mut Task| {
        tracing::info!("rt_sigreturn: bad frame; killing with SIGSEGV");
        task.die_of(libc::SIGSEGV);
        Ok(0)
    };
    // What the handler interrupted cannot be resumed by restart_syscall.
    task.restart_sleep = None;
    if task.mm().copy_in(frame + 8, &mut uc).is_err() {
        return bad(task);
    }
    let restored = signal::restore_regs(&mut task.state, &uc);
    let size = task.state.fp.as_bytes().len();
    if restored.fp_addr == 0 {
        task.state.fp = FpState::reset(size);
    } else {
        let mut image = vec![0u8; size + 4];
        if task.mm().copy_in(restored.fp_addr, &mut image).is_err()
            || !signal::check_fp(&image, size)
        {
            return bad(task);
        }
        task.state.fp.as_bytes_mut().copy_from_slice(&image[..size]);
    }
    task.ctx.full_state_changed();
    task.set_signal_mask(restored.mask);
    if !task.alt_stack.contains(task.state.regs.rsp) {
        task.alt_stack = restored.alt;
    }
    // Leave the restored rax in place.
    Ok(task.state.regs.rax)
}

pub fn sigaltstack(task: &mut Task, a: [u64; 6]) -> SysResult {
    const MINSIGSTKSZ: u64 = 2048;
    let (ss, oss) = (a[0], a[1]);
    let old = task.alt_stack;
    let sp = task.state.regs.rsp;
    if ss != 0 {
        let mut b = [0u8; 24];
        task.mm().copy_in(ss, &mut b)?;
        if old.contains(sp) {
            return Err(Errno::EPERM);
        }
        let flags = i32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        let new = AltStack {
            sp: u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
            size: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            flags,
        };
        const SS_AUTODISARM: i32 = 1 << 31;
        if flags & !(signal::SS_DISABLE | signal::SS_ONSTACK | SS_AUTODISARM) != 0 {
            return Err(Errno::EINVAL);
        }
        task.alt_stack = if flags & signal::SS_DISABLE != 0 {
            AltStack {
                flags: signal::SS_DISABLE,
                ..AltStack::default()
            }
        } else {
            if new.size < MINSIGSTKSZ {
                return Err(Errno::ENOMEM);
            }
            AltStack { flags: 0, ..new }
        };
    }
    if oss != 0 {
        task.mm().copy_out(oss, &old.to_bytes(sp))?;
    }
    Ok(0)
}

/// Sleep until a signal the thread does not block arrives (or it is
/// killed, or its group stops).
fn wait_for_signal(handle: &TaskHandle, deadline: Option<Instant>) -> bool {
    let mut s = handle.signals();
    loop {
        if s.deliverable() || handle.is_killed() || handle.stop_pending() {
            return true;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return false;
        }
        let slice = deadline.map_or(KILL_POLL, |d| (d - now).min(KILL_POLL));
        s = handle
            .wake
            .wait_timeout(s, slice)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

pub fn rt_sigsuspend(task: &mut Task, a: [u64; 6]) -> SysResult {
    if a[1] != 8 {
        return Err(Errno::EINVAL);
    }
    let mask = read_set(task, a[0])? & !UNBLOCKABLE;
    task.saved_mask = Some(task.set_signal_mask(mask));
    wait_for_signal(&task.handle, None);
    Err(restart(ERESTARTNOHAND))
}

/// rt_sigtimedwait(2): take a pending signal of `set`, waiting for one
/// up to the timeout. While it waits the signals of `set` count as
/// unblocked, so one sent to the process picks this thread and wakes it
/// (Linux's `real_blocked`); any other unblocked signal ends the wait
/// with EINTR, and the timeout with EAGAIN.
pub fn rt_sigtimedwait(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (set_addr, info_addr, timeout_addr, size) = (a[0], a[1], a[2], a[3]);
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let set = read_set(task, set_addr)? & !UNBLOCKABLE;
    let deadline = if timeout_addr == 0 {
        None
    } else {
        Some(Instant::now() + read_timespec(task, timeout_addr)?)
    };
    let handle = task.handle.clone();
    task.tg.claim_for(&handle, set);
    let taken = {
        let mut s = handle.signals();
        let blocked = s.mask;
        let mut taken = s.take_in(set);
        if taken.is_none() && deadline.is_none_or(|d| d > Instant::now()) {
            s.mask = blocked & !set;
            loop {
                if s.pending_set() & set != 0 {
                    taken = s.take_in(set);
                    break;
                }
                if s.deliverable() || handle.is_killed() || handle.stop_pending() {
                    break;
                }
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    break;
                }
                let slice = deadline.map_or(KILL_POLL, |d| (d - now).min(KILL_POLL));
                s = handle
                    .wake
                    .wait_timeout(s, slice)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            s.mask = blocked;
        }
        taken
    };
    let Some(q) = taken else {
        let timed_out = deadline.is_some_and(|d| Instant::now() >= d) && !handle.interrupted();
        return Err(if timed_out {
            Errno::EAGAIN
        } else {
            Errno::EINTR
        });
    };
    if info_addr != 0 {
        // A failed copy loses the signal, as in Linux.
        task.mm().copy_out(info_addr, &q.info)?;
    }
    Ok(q.sig as u64)
}

pub fn pause(task: &mut Task, _: [u64; 6]) -> SysResult {
    wait_for_signal(&task.handle, None);
    Err(restart(ERESTARTNOHAND))
}

/// Sleep for `dur` unless a signal comes first (then EINTR, with the time
/// left written to `rem` if given).
fn sleep(task: &mut Task, dur: Duration, rem: u64) -> SysResult {
    sleep_until(task, crate::process::deadline_in(dur), rem)
}

/// Sleep until `deadline`. Interrupted, the time left goes to `rem` and
/// the sleep resumes through restart_syscall unless a handler runs (a
/// stop and continue, or a signal with no handler, does not end it), as
/// Linux's nanosleep restart block does.
fn sleep_until(task: &mut Task, deadline: Option<Instant>, rem: u64) -> SysResult {
    if wait_for_signal(&task.handle, deadline) {
        if rem != 0 {
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&(left.as_secs().min(i64::MAX as u64) as i64).to_le_bytes());
            b[8..].copy_from_slice(&i64::from(left.subsec_nanos()).to_le_bytes());
            task.mm().copy_out(rem, &b)?;
        }
        task.restart_sleep = Some((deadline, rem));
        return Err(restart(ERESTART_RESTARTBLOCK));
    }
    Ok(0)
}

/// Resume what a signal interrupted with ERESTART_RESTARTBLOCK; EINTR when
/// there is nothing to resume (Linux's `do_no_restart_syscall`).
pub fn restart_syscall(task: &mut Task, _: [u64; 6]) -> SysResult {
    match task.restart_sleep.take() {
        Some((deadline, rem)) => sleep_until(task, deadline, rem),
        None => Err(Errno::EINTR),
    }
}

fn read_timespec(task: &Task, addr: u64) -> Result<Duration, Errno> {
    let mut b = [0u8; 16];
    task.mm().copy_in(addr, &mut b)?;
    let sec = i64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let nsec = i64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok(Duration::new(sec as u64, nsec as u32))
}

pub fn nanosleep(task: &mut Task, a: [u64; 6]) -> SysResult {
    let dur = read_timespec(task, a[0])?;
    sleep(task, dur, a[1])
}

pub fn clock_nanosleep(task: &mut Task, a: [u64; 6]) -> SysResult {
    const TIMER_ABSTIME: u64 = 1;
    let (clock, flags, req, rem) = (a[0] as i32, a[1], a[2], a[3]);
    if !matches!(
        clock,
        libc::CLOCK_REALTIME | libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME
    ) {
        return Err(Errno::EINVAL);
    }
    let t = read_timespec(task, req)?;
    let dur = if flags & TIMER_ABSTIME != 0 {
        let (sec, nsec) = crate::host::clock_gettime(clock)?;
        t.saturating_sub(Duration::new(sec as u64, nsec as u32))
    } else {
        t
    };
    // An absolute sleep reports no remaining time.
    sleep(task, dur, if flags & TIMER_ABSTIME != 0 { 0 } else { rem })
}

/// Send `sig` to a whole process; sig 0 only checks it exists.
fn send_group(task: &Task, tg: &ThreadGroup, sig: i32, info: [u8; 128]) -> Result<(), Errno> {
    if sig == 0 {
        return if tg.lock().threads.is_empty() {
            Err(Errno::ESRCH)
        } else {
            Ok(())
        };
    }
    let _ = task;
    if tg.post(Queued::new(sig, info)) {
        Ok(())
    } else {
        Err(Errno::ESRCH)
    }
}

pub fn kill(task: &mut Task, a: [u64; 6]) -> SysResult {
    let pid = a[0] as i32;
    let sig = if a[1] == 0 { 0 } else { check_sig(a[1])? };
    let info = signal::user_info(sig, SI_USER, task.tg.tgid, task.creds.ruid);
    let targets: Vec<Arc<ThreadGroup>> = if pid > 0 {
        vec![task.kernel.find_group(pid).ok_or(Errno::ESRCH)?]
    } else {
        let pgid = match pid {
            0 => Some(task.tg.lock().pgid),
            -1 => None,
            p => Some(-p),
        };
        task.kernel
            .all_groups()
            .into_iter()
            .filter(|g| pgid.is_none_or(|p| g.lock().pgid == p))
            // kill(-1) spares the caller and init.
            .filter(|g| pid != -1 || (g.tgid != task.tg.tgid && g.tgid != 1))
            .collect()
    };
    let mut sent = false;
    for g in &targets {
        sent |= send_group(task, g, sig, info).is_ok();
    }
    if sent {
        Ok(0)
    } else {
        Err(Errno::ESRCH)
    }
}

fn send_thread(
    task: &Task,
    tgid: Option<i32>,
    tid: i32,
    sig: u64,
    info: Option<[u8; 128]>,
) -> SysResult {
    if tid <= 0 || tgid.is_some_and(|g| g <= 0) {
        return Err(Errno::EINVAL);
    }
    let sig = if sig == 0 { 0 } else { check_sig(sig)? };
    let (tg, handle) = task.kernel.find_task(tid).ok_or(Errno::ESRCH)?;
    if tgid.is_some_and(|g| g != tg.tgid) {
        return Err(Errno::ESRCH);
    }
    if sig != 0 {
        let info =
            info.unwrap_or_else(|| signal::user_info(sig, SI_TKILL, task.tg.tgid, task.creds.ruid));
        tg.post_thread(&handle, Queued::new(sig, info));
    }
    Ok(0)
}

pub fn tgkill(task: &mut Task, a: [u64; 6]) -> SysResult {
    send_thread(task, Some(a[0] as i32), a[1] as i32, a[2], None)
}

pub fn tkill(task: &mut Task, a: [u64; 6]) -> SysResult {
    send_thread(task, None, a[0] as i32, a[1], None)
}

/// The siginfo a process supplies: it may not pretend to be the kernel or
/// kill(2) when signalling another process.
fn queued_info(task: &Task, target: i32, sig: i32, addr: u64) -> Result<[u8; 128], Errno> {
    let mut info = [0u8; 128];
    task.mm().copy_in(addr, &mut info)?;
    let code = i32::from_le_bytes(info[8..12].try_into().expect("4 bytes"));
    if (code >= 0 || code == SI_TKILL) && target != task.tg.tgid {
        return Err(Errno::EPERM);
    }
    info[0..4].copy_from_slice(&sig.to_le_bytes());
    Ok(info)
}

pub fn rt_sigqueueinfo(task: &mut Task, a: [u64; 6]) -> SysResult {
    let sig = check_sig(a[1])?;
    let tg = task.kernel.find_group(a[0] as i32).ok_or(Errno::ESRCH)?;
    let info = queued_info(task, tg.tgid, sig, a[2])?;
    send_group(task, &tg, sig, info).map(|()| 0)
}

pub fn rt_tgsigqueueinfo(task: &mut Task, a: [u64; 6]) -> SysResult {
    let sig = check_sig(a[2])?;
    let info = queued_info(task, a[0] as i32, sig, a[3])?;
    send_thread(task, Some(a[0] as i32), a[1] as i32, a[2], Some(info))
}

/// A signalfd: reads take pending signals of its mask from the reading
/// thread's queue as `signalfd_siginfo` records. Posting a blocked signal
/// does not wake waiters; they see it within the 50 ms recheck.
pub(crate) struct SignalFd {
    mask: std::sync::Mutex<u64>,
    kernel: std::sync::Weak<crate::task::Kernel>,
    waiters: vfs::waiter::Waiters,
}

impl SignalFd {
    /// The reading thread, with the process-directed signals in this
    /// descriptor's set that wait on its siblings handed to it.
    fn handle(&self) -> Option<Arc<crate::process::TaskHandle>> {
        let (_, tid) = crate::procfs::current_ids();
        let (group, handle) = self.kernel.upgrade()?.find_task(tid)?;
        group.claim_for(&handle, *self.mask.lock().unwrap());
        Some(handle)
    }
}

impl vfs::inode::FileOps for SignalFd {
    fn read(&self, buf: &mut [u8], _offset: u64) -> Result<usize, Errno> {
        if buf.len() < 128 {
            return Err(Errno::EINVAL);
        }
        let handle = self.handle().ok_or(Errno::EINVAL)?;
        let mask = *self.mask.lock().unwrap();
        let mut n = 0;
        while n + 128 <= buf.len() {
            let Some(q) = handle.signals().take_in(mask) else {
                break;
            };
            buf[n..n + 128].copy_from_slice(&siginfo_to_ssi(&q));
            n += 128;
        }
        if n == 0 {
            Err(Errno::EAGAIN)
        } else {
            Ok(n)
        }
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, events: i16) -> i16 {
        let mask = *self.mask.lock().unwrap();
        let ready = self.handle().is_some_and(|h| {
            h.signals()
                .pending
                .iter()
                .any(|q| mask & (1 << (q.sig - 1)) != 0)
        });
        if ready {
            events & (libc::POLLIN | libc::POLLRDNORM)
        } else {
            0
        }
    }

    fn waiters(&self) -> Option<&vfs::waiter::Waiters> {
        Some(&self.waiters)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

/// `struct signalfd_siginfo` from a queued siginfo.
fn siginfo_to_ssi(q: &signal::Queued) -> [u8; 128] {
    let i = &q.info;
    let w32 = |at: usize| u32::from_le_bytes(i[at..at + 4].try_into().expect("4"));
    let mut o = [0u8; 128];
    o[0..4].copy_from_slice(&(q.sig as u32).to_le_bytes()); // ssi_signo
    o[4..8].copy_from_slice(&w32(4).to_le_bytes()); // ssi_errno
    o[8..12].copy_from_slice(&w32(8).to_le_bytes()); // ssi_code
    o[12..16].copy_from_slice(&w32(16).to_le_bytes()); // ssi_pid
    o[16..20].copy_from_slice(&w32(20).to_le_bytes()); // ssi_uid
                                                       // The word after si_uid is si_status for SIGCHLD, si_value otherwise.
    if q.sig == libc::SIGCHLD {
        o[40..44].copy_from_slice(&w32(24).to_le_bytes()); // ssi_status
    } else {
        o[44..48].copy_from_slice(&w32(24).to_le_bytes()); // ssi_int
        o[48..56].copy_from_slice(&i[24..32]); // ssi_ptr
    }
    o
}

pub fn signalfd4(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (fd, mask_addr, size, flags) = (a[0] as i32, a[1], a[2], a[3] as i32);
    if size != 8 || flags & !(libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; 8];
    task.mm().copy_in(mask_addr, &mut b)?;
    let mask = u64::from_le_bytes(b) & !signal::UNBLOCKABLE;
    if fd != -1 {
        let file = task.fds().get(fd as u64)?;
        let sfd = file
            .ops()
            .as_any()
            .and_then(|x| x.downcast_ref::<SignalFd>())
            .ok_or(Errno::EINVAL)?;
        *sfd.mask.lock().unwrap() = mask;
        return Ok(fd as u64);
    }
    let ops = SignalFd {
        mask: std::sync::Mutex::new(mask),
        kernel: Arc::downgrade(&task.kernel),
        waiters: Default::default(),
    };
    let nonblock = if flags & libc::SFD_NONBLOCK != 0 {
        libc::O_NONBLOCK
    } else {
        0
    };
    let file = crate::fs::File::anonymous(
        "anon_inode:[signalfd]",
        Arc::new(ops),
        libc::O_RDWR | nonblock,
    );
    task.fds().insert(file, flags & libc::SFD_CLOEXEC != 0, 0)
}

pub fn signalfd(task: &mut Task, a: [u64; 6]) -> SysResult {
    signalfd4(task, [a[0], a[1], a[2], 0, 0, 0])
}
