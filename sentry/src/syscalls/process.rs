//! Process, identity, time and limit syscalls.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use abi::Errno;

use super::SysResult;

use crate::cputime::{CpuClock, CpuTarget, CpuWhich, Times};
use crate::host;
use crate::limits;
use crate::process::ThreadGroup;
use crate::task::{ExitStatus, Task};

pub fn exit(task: &mut Task, a: [u64; 6]) -> SysResult {
    // This thread only; the process ends with its last thread.
    task.exit = Some(ExitStatus::Exited((a[0] & 0xff) as i32));
    Ok(0)
}

pub fn exit_group(task: &mut Task, a: [u64; 6]) -> SysResult {
    task.exit_group(ExitStatus::Exited((a[0] & 0xff) as i32));
    Ok(0)
}

pub fn getpid(task: &mut Task, _: [u64; 6]) -> SysResult {
    Ok(task.tg.tgid as u64)
}

pub fn gettid(task: &mut Task, _: [u64; 6]) -> SysResult {
    Ok(task.tid as u64)
}

pub fn getppid(task: &mut Task, _: [u64; 6]) -> SysResult {
    // The first process's parent is outside its PID namespace: 0.
    Ok(task.tg.parent().map_or(0, |p| p.tgid as u64))
}

pub fn getuid(task: &mut Task, _: [u64; 6]) -> SysResult {
    Ok(u64::from(task.creds.ruid))
}

pub fn getgid(task: &mut Task, _: [u64; 6]) -> SysResult {
    Ok(u64::from(task.creds.rgid))
}

pub fn geteuid(task: &mut Task, _: [u64; 6]) -> SysResult {
    Ok(u64::from(task.creds.euid))
}

pub fn getegid(task: &mut Task, _: [u64; 6]) -> SysResult {
    Ok(u64::from(task.creds.egid))
}

pub fn sched_yield(_: &mut Task, _: [u64; 6]) -> SysResult {
    host::sched_yield();
    Ok(0)
}

/// The kernel identity upstream gVisor reports
/// (`pkg/sentry/syscalls/linux/linux64.go`), so programs see the same
/// kernel whichever Sentry runs them.
pub(crate) const SYSNAME: &str = "Linux";
pub(crate) const RELEASE: &str = "4.4.0";
pub(crate) const VERSION: &str = "#1 SMP Sun Jan 10 15:06:54 PST 2016";
const MACHINE: &str = "x86_64";

pub fn uname(task: &mut Task, a: [u64; 6]) -> SysResult {
    // struct utsname: six fields of 65 bytes.
    let mut buf = [0u8; 6 * 65];
    let names = task.uts.names();
    for (i, field) in [
        SYSNAME.as_bytes(),
        &names.hostname,
        RELEASE.as_bytes(),
        VERSION.as_bytes(),
        MACHINE.as_bytes(),
        &names.domainname,
    ]
    .iter()
    .enumerate()
    {
        let bytes = &field[..field.len().min(64)];
        buf[i * 65..i * 65 + bytes.len()].copy_from_slice(bytes);
    }
    task.mm().copy_out(a[0], &buf)?;
    Ok(0)
}

pub fn arch_prctl(task: &mut Task, a: [u64; 6]) -> SysResult {
    const ARCH_SET_GS: u64 = 0x1001;
    const ARCH_SET_FS: u64 = 0x1002;
    const ARCH_GET_FS: u64 = 0x1003;
    const ARCH_GET_GS: u64 = 0x1004;
    let max_addr = task.mm().max_addr();
    let regs = &mut task.state.regs;
    match a[0] {
        ARCH_SET_FS | ARCH_SET_GS if a[1] >= max_addr => Err(Errno::EPERM),
        ARCH_SET_FS => {
            regs.fs_base = a[1];
            regs.fs = 0;
            Ok(0)
        }
        ARCH_SET_GS => {
            regs.gs_base = a[1];
            regs.gs = 0;
            Ok(0)
        }
        ARCH_GET_FS => {
            let v = regs.fs_base;
            task.mm().copy_out(a[1], &v.to_le_bytes()).map(|()| 0)
        }
        ARCH_GET_GS => {
            let v = regs.gs_base;
            task.mm().copy_out(a[1], &v.to_le_bytes()).map(|()| 0)
        }
        code => {
            tracing::info!("arch_prctl code {code:#x} not supported: EINVAL");
            Err(Errno::EINVAL)
        }
    }
}

pub fn set_tid_address(task: &mut Task, a: [u64; 6]) -> SysResult {
    task.clear_child_tid = a[0];
    Ok(task.tid as u64)
}

pub fn set_robust_list(task: &mut Task, a: [u64; 6]) -> SysResult {
    // sizeof(struct robust_list_head)
    if a[1] != 24 {
        return Err(Errno::EINVAL);
    }
    task.handle.robust_list.store(a[0], Ordering::Relaxed);
    Ok(0)
}

pub fn get_robust_list(task: &mut Task, a: [u64; 6]) -> SysResult {
    let head = if a[0] == 0 {
        task.handle.robust_list.load(Ordering::Relaxed)
    } else {
        let tid = i32::try_from(a[0] as i64).map_err(|_| Errno::ESRCH)?;
        let (_, handle) = task.kernel.find_task(tid).ok_or(Errno::ESRCH)?;
        handle.robust_list.load(Ordering::Relaxed)
    };
    task.mm().copy_out(a[1], &head.to_le_bytes())?;
    task.mm().copy_out(a[2], &24u64.to_le_bytes())?;
    Ok(0)
}

pub fn prctl(task: &mut Task, a: [u64; 6]) -> SysResult {
    if let Some(r) = super::caps::prctl(task, a) {
        return r;
    }
    const PR_SET_PDEATHSIG: u64 = 1;
    const PR_GET_PDEATHSIG: u64 = 2;
    const PR_GET_DUMPABLE: u64 = 3;
    const PR_SET_DUMPABLE: u64 = 4;
    const PR_SET_NAME: u64 = 15;
    const PR_GET_NAME: u64 = 16;
    const PR_SET_NO_NEW_PRIVS: u64 = 38;
    const PR_GET_NO_NEW_PRIVS: u64 = 39;
    match a[0] {
        PR_SET_PDEATHSIG => {
            if a[1] > 64 {
                return Err(Errno::EINVAL);
            }
            task.tg.lock().pdeath_signal = a[1] as i32;
            Ok(0)
        }
        PR_GET_PDEATHSIG => {
            let sig = task.tg.lock().pdeath_signal;
            task.mm().copy_out(a[1], &sig.to_le_bytes()).map(|()| 0)
        }
        PR_GET_DUMPABLE => Ok(u64::from(task.tg.lock().dumpable)),
        PR_SET_DUMPABLE => match a[1] {
            0 | 1 => {
                task.tg.lock().dumpable = a[1] == 1;
                Ok(0)
            }
            _ => Err(Errno::EINVAL),
        },
        PR_SET_NO_NEW_PRIVS => {
            if a[1] != 1 || a[2] != 0 || a[3] != 0 || a[4] != 0 {
                return Err(Errno::EINVAL);
            }
            task.tg.lock().no_new_privs = true;
            Ok(0)
        }
        PR_GET_NO_NEW_PRIVS => Ok(u64::from(task.tg.lock().no_new_privs)),
        PR_SET_NAME => {
            let mut name = [0u8; 16];
            // The name may sit at the end of a mapping: read it byte-wise
            // up to the first NUL or 15 bytes.
            for (i, b) in name.iter_mut().take(15).enumerate() {
                task.mm()
                    .copy_in(a[1] + i as u64, std::slice::from_mut(b))?;
                if *b == 0 {
                    break;
                }
            }
            let len = name.iter().position(|&b| b == 0).unwrap_or(15);
            task.comm = name[..len].to_vec();
            task.publish();
            Ok(0)
        }
        PR_GET_NAME => {
            let mut name = [0u8; 16];
            name[..task.comm.len()].copy_from_slice(&task.comm);
            task.mm().copy_out(a[1], &name).map(|()| 0)
        }
        option => {
            tracing::info!("prctl option {option} not supported: EINVAL");
            Err(Errno::EINVAL)
        }
    }
}

fn rlimit_bytes((cur, max): (u64, u64)) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&cur.to_le_bytes());
    b[8..].copy_from_slice(&max.to_le_bytes());
    b
}

/// Limits the Sentry enforces, and so lets processes set (RLIMIT_CPU by
/// the process's CPU-clock timers, NICE and RTPRIO by setpriority and
/// sched_setscheduler). RLIMIT_RSS and RLIMIT_LOCKS are ignored by Linux
/// too; MEMLOCK only bounds mlock, which never pins here; MSGQUEUE bounds
/// POSIX message queues, of which this kernel has none (mq_open is
/// ENOSYS). SIGPENDING and RTTIME are not enforced, so not settable.
const SETTABLE: [usize; 14] = [
    limits::RLIMIT_CPU,
    limits::RLIMIT_FSIZE,
    limits::RLIMIT_NPROC,
    limits::RLIMIT_DATA,
    limits::RLIMIT_STACK,
    limits::RLIMIT_CORE,
    5, // rss
    limits::RLIMIT_NOFILE,
    8, // memlock
    limits::RLIMIT_AS,
    10, // locks
    12, // msgqueue
    limits::RLIMIT_NICE,
    limits::RLIMIT_RTPRIO,
];

pub fn getrlimit(task: &mut Task, a: [u64; 6]) -> SysResult {
    let lim = task
        .tg
        .limits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(a[0]);
    let lim = lim.ok_or(Errno::EINVAL)?;
    task.mm().copy_out(a[1], &rlimit_bytes(lim)).map(|()| 0)
}

pub fn setrlimit(task: &mut Task, a: [u64; 6]) -> SysResult {
    prlimit64(task, [0, a[0], a[1], 0, 0, 0])
}

pub fn prlimit64(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (pid, resource, new, old) = (a[0], a[1], a[2], a[3]);
    let target = if pid == 0 || pid == task.tg.tgid as u64 || pid == task.tid as u64 {
        task.tg.clone()
    } else {
        let tgid = i32::try_from(pid).map_err(|_| Errno::ESRCH)?;
        let tg = task.kernel.find_group(tgid).ok_or(Errno::ESRCH)?;
        // Another process's limits: CAP_SYS_RESOURCE (Linux also allows
        // the same user throughout; we check only the capability).
        if !task.creds.has_cap(super::caps::CAP_SYS_RESOURCE) {
            return Err(Errno::EPERM);
        }
        tg
    };
    let current = target
        .limits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(resource)
        .ok_or(Errno::EINVAL)?;
    if new != 0 {
        let mut b = [0u8; 16];
        task.mm().copy_in(new, &mut b)?;
        let soft = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let hard = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
        if !SETTABLE.contains(&(resource as usize)) {
            // Accepting a limit nothing enforces would be a lie: refuse as
            // an unprivileged process would.
            tracing::info!("prlimit64: resource {resource} is not enforced; setting it: EPERM");
            return Err(Errno::EPERM);
        }
        let updated = {
            let mut l = target.limits.lock().unwrap_or_else(|e| e.into_inner());
            l.set(
                resource,
                (soft, hard),
                task.creds.has_cap(super::caps::CAP_SYS_RESOURCE),
            )?;
            *l
        };
        apply_limits(task, &target, &updated);
    }
    if old != 0 {
        task.mm().copy_out(old, &rlimit_bytes(current))?;
    }
    Ok(0)
}

/// Make a process's memory manager and descriptor table follow its
/// limits after a change.
fn apply_limits(task: &Task, target: &Arc<ThreadGroup>, l: &limits::Limits) {
    let (soft, hard) = l.get(limits::RLIMIT_CPU as u64).expect("a resource");
    target.timers.set_cpu_limit(soft, hard, target);
    let mem = crate::mm::MemoryLimits::of(l);
    let nofile = l.soft(limits::RLIMIT_NOFILE);
    if Arc::ptr_eq(target, &task.tg) {
        task.mm().limits = mem;
        task.fds().set_limit(nofile);
        return;
    }
    let views: Vec<_> = target
        .lock()
        .threads
        .iter()
        .filter_map(|t| t.view())
        .collect();
    for v in views {
        v.mm.lock().unwrap_or_else(|e| e.into_inner()).limits = mem;
        v.fds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_limit(nofile);
    }
}

pub fn getrandom(task: &mut Task, a: [u64; 6]) -> SysResult {
    const GRND_NONBLOCK: u64 = 1;
    const GRND_RANDOM: u64 = 2;
    const GRND_INSECURE: u64 = 4;
    if a[2] & !(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) != 0 {
        return Err(Errno::EINVAL);
    }
    // Linux returns at most 32 MiB - 1 per call; short counts are allowed.
    let len = a[1].min(1 << 20) as usize;
    let mut buf = vec![0u8; len];
    let n = host::getrandom(&mut buf)?;
    task.mm().copy_out(a[0], &buf[..n])?;
    Ok(n as u64)
}

/// Host clocks that read the same inside the sandbox.
fn clock_ok(clock: u64) -> bool {
    matches!(
        clock as i32,
        libc::CLOCK_REALTIME
            | libc::CLOCK_MONOTONIC
            | libc::CLOCK_MONOTONIC_RAW
            | libc::CLOCK_REALTIME_COARSE
            | libc::CLOCK_MONOTONIC_COARSE
            | libc::CLOCK_BOOTTIME
    )
}

/// The CPU-time clock `clock` names (None: not a CPU-time clock), and
/// whether it is a thread's. Negative ids encode a pid or tid as
/// clock_getcpuclockid(3) and pthread_getcpuclockid(3) make them:
/// `~id << 3 | perthread << 2 | which`.
pub(crate) fn cpu_clock(task: &Task, clock: i32) -> Result<Option<(CpuClock, bool)>, Errno> {
    let (id, which, thread) = match clock {
        libc::CLOCK_PROCESS_CPUTIME_ID => (0, CpuWhich::Sched, false),
        libc::CLOCK_THREAD_CPUTIME_ID => (0, CpuWhich::Sched, true),
        c if c < 0 => {
            let which = match c & 3 {
                0 => CpuWhich::Prof,
                1 => CpuWhich::Virt,
                2 => CpuWhich::Sched,
                _ => return Err(Errno::EINVAL),
            };
            (!(c >> 3), which, c & 4 != 0)
        }
        _ => return Ok(None),
    };
    let target = if thread {
        let handle = if id == 0 || id == task.tid {
            task.handle.clone()
        } else {
            // Only threads of the caller's own process (posix-cpu-timers).
            let st = task.tg.lock();
            st.threads
                .iter()
                .find(|t| t.tid == id && !t.cpu.finished())
                .cloned()
                .ok_or(Errno::EINVAL)?
        };
        CpuTarget::Thread(Arc::downgrade(&handle))
    } else if id == 0 || id == task.tg.tgid {
        CpuTarget::Process(Arc::downgrade(&task.tg))
    } else {
        let group = task.kernel.find_group(id).ok_or(Errno::EINVAL)?;
        CpuTarget::Process(Arc::downgrade(&group))
    };
    Ok(Some((CpuClock { target, which }, thread)))
}

fn timespec_bytes(d: Duration) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&d.as_secs().to_le_bytes());
    b[8..].copy_from_slice(&u64::from(d.subsec_nanos()).to_le_bytes());
    b
}

pub fn clock_gettime(task: &mut Task, a: [u64; 6]) -> SysResult {
    if let Some((clock, _)) = cpu_clock(task, a[0] as i32)? {
        let (value, _) = clock.read().ok_or(Errno::EINVAL)?;
        return task.mm().copy_out(a[1], &timespec_bytes(value)).map(|()| 0);
    }
    if !clock_ok(a[0]) {
        tracing::info!("clock_gettime: clock {} not supported: EINVAL", a[0] as i32);
        return Err(Errno::EINVAL);
    }
    // REALTIME and MONOTONIC as the vDSO reads them, so the two agree.
    let (sec, nsec) = task.kernel.clock.now(a[0] as i32)?;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&sec.to_le_bytes());
    b[8..].copy_from_slice(&nsec.to_le_bytes());
    task.mm().copy_out(a[1], &b).map(|()| 0)
}

pub fn clock_getres(task: &mut Task, a: [u64; 6]) -> SysResult {
    // A CPU clock's resolution is the host's for the same kind of clock of
    // its own (Linux: 1 ns for CPUCLOCK_SCHED, a tick for the others).
    let host_clock = match cpu_clock(task, a[0] as i32)? {
        Some((clock, thread)) => {
            let which = match clock.which {
                CpuWhich::Prof => 0,
                CpuWhich::Virt => 1,
                CpuWhich::Sched => 2,
            };
            !0 << 3 | i32::from(thread) << 2 | which
        }
        None if clock_ok(a[0]) => a[0] as i32,
        None => {
            tracing::info!("clock_getres: clock {} not supported: EINVAL", a[0] as i32);
            return Err(Errno::EINVAL);
        }
    };
    if a[1] != 0 {
        let (sec, nsec) = host::clock_getres(host_clock)?;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&sec.to_le_bytes());
        b[8..].copy_from_slice(&nsec.to_le_bytes());
        task.mm().copy_out(a[1], &b)?;
    }
    Ok(0)
}

/// `struct rusage` with the user and system times (the other fields are
/// not accounted and read 0).
pub(crate) fn rusage_bytes(t: Times) -> [u8; 144] {
    let mut b = [0u8; 144];
    for (i, d) in [t.user, t.sys].into_iter().enumerate() {
        b[i * 16..i * 16 + 8].copy_from_slice(&d.as_secs().to_le_bytes());
        b[i * 16 + 8..i * 16 + 16].copy_from_slice(&u64::from(d.subsec_micros()).to_le_bytes());
    }
    b
}

pub fn getrusage(task: &mut Task, a: [u64; 6]) -> SysResult {
    const RUSAGE_SELF: i32 = 0;
    const RUSAGE_CHILDREN: i32 = -1;
    const RUSAGE_THREAD: i32 = 1;
    let times = match a[0] as i32 {
        RUSAGE_SELF => task.tg.cpu_times(),
        RUSAGE_CHILDREN => task.tg.lock().children_times,
        RUSAGE_THREAD => task.handle.cpu.times(),
        _ => return Err(Errno::EINVAL),
    };
    task.mm().copy_out(a[1], &rusage_bytes(times)).map(|()| 0)
}

pub fn times(task: &mut Task, a: [u64; 6]) -> SysResult {
    // Clock ticks of USER_HZ (100 a second), as times(2) counts.
    let ticks = |d: Duration| (d.as_nanos() / 10_000_000) as u64;
    if a[0] != 0 {
        let own = task.tg.cpu_times();
        let children = task.tg.lock().children_times;
        let mut b = [0u8; 32];
        for (i, d) in [own.user, own.sys, children.user, children.sys]
            .into_iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&ticks(d).to_le_bytes());
        }
        task.mm().copy_out(a[0], &b)?;
    }
    // The elapsed real time from an arbitrary point: boot.
    let (sec, nsec) = host::clock_gettime(libc::CLOCK_BOOTTIME)?;
    Ok(ticks(Duration::new(sec as u64, nsec as u32)))
}

pub fn gettimeofday(task: &mut Task, a: [u64; 6]) -> SysResult {
    if a[0] != 0 {
        let (sec, nsec) = task.kernel.clock.now(libc::CLOCK_REALTIME)?;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&sec.to_le_bytes());
        b[8..].copy_from_slice(&(nsec / 1000).to_le_bytes());
        task.mm().copy_out(a[0], &b)?;
    }
    if a[1] != 0 {
        // struct timezone is obsolete; Linux reports zeros unless set.
        task.mm().copy_out(a[1], &[0u8; 8])?;
    }
    Ok(0)
}

pub fn time(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (sec, _) = task.kernel.clock.now(libc::CLOCK_REALTIME)?;
    if a[0] != 0 {
        task.mm().copy_out(a[0], &sec.to_le_bytes())?;
    }
    Ok(sec as u64)
}

/// getcpu(2): the host CPU (and node) this Sentry thread runs on, the same
/// numbering the vDSO reads from TSC_AUX and sched_getaffinity reports.
pub fn getcpu(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (cpu, node) = host::getcpu()?;
    if a[0] != 0 {
        task.mm().copy_out(a[0], &cpu.to_le_bytes())?;
    }
    if a[1] != 0 {
        task.mm().copy_out(a[1], &node.to_le_bytes())?;
    }
    Ok(0)
}

pub fn sysinfo(task: &mut Task, a: [u64; 6]) -> SysResult {
    let info = host::sysinfo()?;
    // struct sysinfo on x86-64: uptime, loads[3], totalram, freeram,
    // sharedram, bufferram, totalswap, freeswap (longs), procs (u16, padded),
    // totalhigh, freehigh (longs), mem_unit (u32), padding: 112 bytes.
    let mut b = [0u8; 112];
    let longs = [
        info.uptime as u64,
        info.loads[0],
        info.loads[1],
        info.loads[2],
        info.totalram,
        info.freeram,
        info.sharedram,
        info.bufferram,
        info.totalswap,
        info.freeswap,
    ];
    for (i, v) in longs.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    // One process is running in this sandbox.
    b[80..82].copy_from_slice(&1u16.to_le_bytes());
    b[104..108].copy_from_slice(&info.mem_unit.to_le_bytes());
    task.mm().copy_out(a[0], &b)?;
    Ok(0)
}
