//! Processes and threads: clone, fork, vfork, wait, process groups, pipes.

use std::sync::{Arc, Mutex};

use abi::Errno;

use super::ns::{CLONE_NEWIPC, CLONE_NEWNS};
use super::process::rusage_bytes;
use super::SysResult;
use crate::cputime::Times;
use crate::fs;
use crate::process::{TaskHandle, ThreadGroup, KILL_POLL};
use crate::task::{ExitStatus, Task};

const CSIGNAL: u64 = 0xff;
const CLONE_VM: u64 = 0x100;
const CLONE_FS: u64 = 0x200;
const CLONE_FILES: u64 = 0x400;
const CLONE_SIGHAND: u64 = 0x800;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_PARENT: u64 = 0x8000;
const CLONE_THREAD: u64 = 0x10000;
const CLONE_SYSVSEM: u64 = 0x40000;
const CLONE_SETTLS: u64 = 0x80000;
const CLONE_PARENT_SETTID: u64 = 0x100000;
const CLONE_CHILD_CLEARTID: u64 = 0x200000;
const CLONE_DETACHED: u64 = 0x400000;
const CLONE_CHILD_SETTID: u64 = 0x1000000;
const CLONE_IO: u64 = 0x8000_0000;

/// What clone, clone3, fork and vfork ask for.
struct CloneArgs {
    flags: u64,
    stack: u64,
    parent_tid: u64,
    child_tid: u64,
    tls: u64,
}

fn do_clone(task: &mut Task, args: CloneArgs) -> SysResult {
    let flags = args.flags;
    const SUPPORTED: u64 = CSIGNAL
        | CLONE_VM
        | CLONE_FS
        | CLONE_FILES
        | CLONE_SIGHAND
        | CLONE_VFORK
        | CLONE_PARENT
        | CLONE_THREAD
        | CLONE_SYSVSEM
        | CLONE_SETTLS
        | CLONE_PARENT_SETTID
        | CLONE_CHILD_CLEARTID
        | CLONE_DETACHED
        | CLONE_CHILD_SETTID
        | CLONE_IO
        | super::ns::SUPPORTED_NS;
    super::ns::refuse_unsupported("clone", flags & !CSIGNAL)?;
    if flags & !SUPPORTED != 0 {
        tracing::info!(
            "clone flags {:#x} not supported: EINVAL",
            flags & !SUPPORTED
        );
        return Err(Errno::EINVAL);
    }
    if flags & CLONE_THREAD != 0 && flags & CLONE_SIGHAND == 0
        || flags & CLONE_SIGHAND != 0 && flags & CLONE_VM == 0
    {
        return Err(Errno::EINVAL);
    }
    // copy_process: a new mount namespace needs its own fs context.
    if flags & CLONE_NEWNS != 0 && flags & CLONE_FS != 0 {
        return Err(Errno::EINVAL);
    }
    if over_nproc(task) {
        return Err(Errno::EAGAIN);
    }
    // copy_namespaces.
    if flags & super::ns::SUPPORTED_NS != 0 {
        if !task.creds.has_cap(super::caps::CAP_SYS_ADMIN) {
            return Err(Errno::EPERM);
        }
        if flags & CLONE_NEWIPC != 0 && flags & CLONE_SYSVSEM != 0 {
            return Err(Errno::EINVAL);
        }
    }
    let kernel = task.kernel.clone();
    let platform_err = |e: platform::PlatformError| {
        tracing::error!("clone: {e}");
        Errno::ENOMEM
    };
    // The child starts from the parent's complete register state.
    task.ctx
        .pull_full_state(task.space.as_ref(), &mut task.state)
        .map_err(platform_err)?;

    let (mm, space) = if flags & CLONE_VM != 0 {
        (task.mm.clone(), task.space.clone())
    } else {
        let space = kernel.platform.new_address_space().map_err(platform_err)?;
        let child_mm = task.mm().fork(space.clone())?;
        (Arc::new(Mutex::new(child_mm)), space)
    };
    let fds = if flags & CLONE_FILES != 0 {
        task.fds.clone()
    } else {
        Arc::new(Mutex::new(task.fds().clone()))
    };
    let fs = if flags & CLONE_FS != 0 {
        task.fs.clone()
    } else if flags & CLONE_NEWNS != 0 {
        Arc::new(Mutex::new(crate::fs::SharedFs::new(
            super::ns::new_mount_ns(&task.fs()),
        )))
    } else {
        Arc::new(Mutex::new(task.fs().clone()))
    };
    let uts = super::ns::uts_for_child(task, flags);
    let ipc = if flags & CLONE_NEWIPC != 0 {
        crate::namespace::IpcNamespace::new()
    } else {
        task.ipc.clone()
    };
    let ctx = kernel.platform.new_context().map_err(platform_err)?;
    let tid = kernel.alloc_pid();
    let handle = TaskHandle::new(tid, ctx.interrupter(), task.handle.signals().mask);
    *handle.sched() = *task.handle.sched();
    let tg = if flags & CLONE_THREAD != 0 {
        task.tg.clone()
    } else {
        let parent = if flags & CLONE_PARENT != 0 {
            task.tg.parent()
        } else {
            Some(task.tg.clone())
        };
        let (pgid, sid) = {
            let st = task.tg.lock();
            (st.pgid, st.sid)
        };
        let weak = parent
            .as_ref()
            .map_or_else(std::sync::Weak::new, Arc::downgrade);
        let handlers = task.tg.handlers().clone();
        let tg = ThreadGroup::new(tid, weak, pgid, sid, (flags & CSIGNAL) as i32, handlers);
        // Limits are inherited; the child's CPU time starts from zero.
        let limits = *task.tg.limits.lock().unwrap_or_else(|e| e.into_inner());
        *tg.limits.lock().unwrap_or_else(|e| e.into_inner()) = limits;
        let (soft, hard) = limits
            .get(crate::limits::RLIMIT_CPU as u64)
            .expect("a resource");
        tg.timers.set_cpu_limit(soft, hard, &tg);
        if let Some(parent) = parent {
            parent.lock().children.push(tg.clone());
        }
        kernel.register_group(&tg);
        tg
    };
    {
        let mut st = tg.lock();
        // A thread created while its group is stopping stops too (Linux's
        // task_join_group_stop).
        if flags & CLONE_THREAD != 0 && task.handle.stop_pending() {
            handle
                .stop_pending
                .store(true, std::sync::atomic::Ordering::SeqCst);
            st.jobctl.stopping += 1;
        }
        st.threads.push(handle.clone());
    }

    let mut state = task.state.clone();
    state.regs.rax = 0;
    if args.stack != 0 {
        state.regs.rsp = args.stack;
    }
    if flags & CLONE_SETTLS != 0 {
        state.regs.fs_base = args.tls;
    }
    let tid_bytes = (tid as u32).to_le_bytes();
    if flags & CLONE_PARENT_SETTID != 0 {
        task.mm().copy_out(args.parent_tid, &tid_bytes)?;
    }
    if flags & CLONE_CHILD_SETTID != 0 {
        mm.lock()
            .unwrap_or_else(|e| e.into_inner())
            .copy_out(args.child_tid, &tid_bytes)?;
    }
    let (vfork_tx, vfork_rx) = std::sync::mpsc::channel();
    let child = Task {
        kernel,
        tid,
        tg,
        handle,
        mm,
        space,
        ctx,
        state,
        fds,
        fs,
        uts,
        ipc,
        creds: task.creds.clone(),
        comm: task.comm.clone(),
        exe: task.exe.clone(),
        clear_child_tid: if flags & CLONE_CHILD_CLEARTID != 0 {
            args.child_tid
        } else {
            0
        },
        exit: None,
        vfork_done: (flags & CLONE_VFORK != 0).then_some(vfork_tx),
        retried_fault: None,
        nproc_exceeded: false,
        alt_stack: if flags & CLONE_VM != 0 && flags & CLONE_VFORK == 0 {
            Default::default()
        } else {
            task.alt_stack
        },
        saved_mask: None,
        restart_sleep: None,
    };
    // Visible to procfs and to RLIMIT_NPROC's count before it first runs.
    child.publish();
    Task::spawn(child)?;
    if flags & CLONE_VFORK != 0 {
        // Resumes when the child execs or exits (its sender is dropped).
        let _ = vfork_rx.recv();
    }
    Ok(tid as u64)
}

pub fn clone(task: &mut Task, a: [u64; 6]) -> SysResult {
    // x86-64 order: flags, stack, parent_tid, child_tid, tls.
    do_clone(
        task,
        CloneArgs {
            flags: a[0],
            stack: a[1],
            parent_tid: a[2],
            child_tid: a[3],
            tls: a[4],
        },
    )
}

pub fn clone3(task: &mut Task, a: [u64; 6]) -> SysResult {
    // struct clone_args, version 0: flags, pidfd, child_tid, parent_tid,
    // exit_signal, stack, stack_size, tls (eight u64).
    let size = a[1] as usize;
    if !(64..=4096).contains(&size) {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; size];
    task.mm().copy_in(a[0], &mut raw)?;
    let word = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    // Fields past version 0 (set_tid, cgroup) must be unused.
    if raw[64..].iter().any(|&b| b != 0) {
        tracing::info!("clone3: set_tid and cgroup not supported: EINVAL");
        return Err(Errno::EINVAL);
    }
    let (flags, exit_signal, stack, stack_size) = (word(0), word(4), word(5), word(6));
    if flags & CSIGNAL != 0 || exit_signal > 64 {
        return Err(Errno::EINVAL);
    }
    let stack = if stack != 0 { stack + stack_size } else { 0 };
    do_clone(
        task,
        CloneArgs {
            flags: flags | exit_signal,
            stack,
            parent_tid: word(3),
            child_tid: word(2),
            tls: word(7),
        },
    )
}

pub fn fork(task: &mut Task, _: [u64; 6]) -> SysResult {
    do_clone(
        task,
        CloneArgs {
            flags: libc::SIGCHLD as u64,
            stack: 0,
            parent_tid: 0,
            child_tid: 0,
            tls: 0,
        },
    )
}

pub fn vfork(task: &mut Task, _: [u64; 6]) -> SysResult {
    let flags = CLONE_VM | CLONE_VFORK | libc::SIGCHLD as u64;
    do_clone(
        task,
        CloneArgs {
            flags,
            stack: 0,
            parent_tid: 0,
            child_tid: 0,
            tls: 0,
        },
    )
}

/// Which children a wait call means (wait4's pid argument).
fn selects(pid: i64, parent_pgid: i32, child: &ThreadGroup) -> bool {
    match pid {
        -1 => true,
        0 => child.lock().pgid == parent_pgid,
        p if p > 0 => i64::from(child.tgid) == p,
        p => i64::from(child.lock().pgid) == -p,
    }
}

/// What a wait call asks for (wait4 always includes exits).
#[derive(Clone, Copy)]
struct WaitFor {
    exited: bool,
    stopped: bool,
    continued: bool,
    nohang: bool,
    /// Leave the event to be reported again (waitid's WNOWAIT).
    keep: bool,
}

/// A child's state change that a wait reports.
#[derive(Clone, Copy)]
enum Event {
    /// It ended; the bool says its status reports a core dump.
    Exited(ExitStatus, bool),
    /// It stopped with this signal.
    Stopped(i32),
    Continued,
}

/// What `child` has to report to a wait for `w`, consuming it unless
/// `w.keep` (Linux's wait_consider_task: exit, then stop, then continue).
fn event_of(child: &ThreadGroup, w: WaitFor) -> Option<Event> {
    let mut c = child.lock();
    if c.zombie {
        let status = c.exit_status.unwrap_or(ExitStatus::Exited(0));
        return w.exited.then_some(Event::Exited(status, c.core_dumped));
    }
    let jc = &mut c.jobctl;
    if w.stopped && jc.stopped && jc.stop_signal != 0 {
        let sig = jc.stop_signal;
        if !w.keep {
            jc.stop_signal = 0;
        }
        return Some(Event::Stopped(sig));
    }
    if w.continued && jc.continued {
        if !w.keep {
            jc.continued = false;
        }
        return Some(Event::Continued);
    }
    None
}

/// Find a child selected by `pid` with an event `w` asks for; reap an
/// exited one unless `w.keep`. `Ok(None)` when there are matching children
/// but none has an event and `w.nohang`; ECHILD when no child matches.
fn wait_child(task: &Task, pid: i64, w: WaitFor) -> Result<Option<(i32, Event, Times)>, Errno> {
    let mut st = task.tg.lock();
    loop {
        let pgid = st.pgid;
        let matching: Vec<usize> = st
            .children
            .iter()
            .enumerate()
            .filter(|(_, c)| selects(pid, pgid, c))
            .map(|(i, _)| i)
            .collect();
        if matching.is_empty() {
            return Err(Errno::ECHILD);
        }
        for &i in &matching {
            let Some(event) = event_of(&st.children[i], w) else {
                continue;
            };
            let tgid = st.children[i].tgid;
            // Its own time and its reaped descendants' (RUSAGE_BOTH).
            let times = {
                let c = st.children[i].lock();
                c.exited_times + c.children_times
            };
            if matches!(event, Event::Exited(..)) && !w.keep {
                st.children_times += times;
                st.children.remove(i);
                task.kernel.unregister_group(tgid);
            }
            return Ok(Some((tgid, event, times)));
        }
        if w.nohang {
            return Ok(None);
        }
        if task.handle.interrupted() {
            return Err(Errno::new(crate::deliver::ERESTARTSYS).expect("a valid errno number"));
        }
        st = task
            .tg
            .changed
            .wait_timeout(st, KILL_POLL)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// The wait status word wait4 reports.
fn wait_status(event: Event) -> u32 {
    match event {
        Event::Exited(ExitStatus::Exited(code), _) => ((code & 0xff) as u32) << 8,
        Event::Exited(ExitStatus::Signaled(sig), core) => {
            (sig & 0x7f) as u32 | if core { 0x80 } else { 0 }
        }
        Event::Stopped(sig) => ((sig & 0xff) as u32) << 8 | 0x7f,
        Event::Continued => 0xffff,
    }
}

pub fn wait4(task: &mut Task, a: [u64; 6]) -> SysResult {
    const WNOHANG: u64 = 1;
    const WUNTRACED: u64 = 2;
    const WCONTINUED: u64 = 8;
    const WNOTHREAD: u64 = 0x2000_0000;
    const WALL: u64 = 0x4000_0000;
    const WCLONE: u64 = 0x8000_0000;
    let (pid, status_addr, options, rusage) = (a[0] as i32 as i64, a[1], a[2], a[3]);
    if options & !(WNOHANG | WUNTRACED | WCONTINUED | WNOTHREAD | WALL | WCLONE) != 0 {
        return Err(Errno::EINVAL);
    }
    if pid == i64::from(i32::MIN) {
        return Err(Errno::ESRCH);
    }
    let w = WaitFor {
        exited: true,
        stopped: options & WUNTRACED != 0,
        continued: options & WCONTINUED != 0,
        nohang: options & WNOHANG != 0,
        keep: false,
    };
    let Some((child, event, times)) = wait_child(task, pid, w)? else {
        return Ok(0);
    };
    if status_addr != 0 {
        task.mm()
            .copy_out(status_addr, &wait_status(event).to_le_bytes())?;
    }
    if rusage != 0 {
        task.mm().copy_out(rusage, &rusage_bytes(times))?;
    }
    Ok(child as u64)
}

pub fn waitid(task: &mut Task, a: [u64; 6]) -> SysResult {
    const P_ALL: u64 = 0;
    const P_PID: u64 = 1;
    const P_PGID: u64 = 2;
    const WNOHANG: u64 = 1;
    const WSTOPPED: u64 = 2;
    const WEXITED: u64 = 4;
    const WCONTINUED: u64 = 8;
    const WNOWAIT: u64 = 0x0100_0000;
    let (idtype, id, infop, options, rusage) = (a[0], a[1] as i32 as i64, a[2], a[3], a[4]);
    if options & !(WNOHANG | WSTOPPED | WEXITED | WCONTINUED | WNOWAIT | 0xe000_0000) != 0
        || options & (WSTOPPED | WEXITED | WCONTINUED) == 0
    {
        return Err(Errno::EINVAL);
    }
    let pid = match idtype {
        P_ALL => -1,
        P_PID if id > 0 => id,
        P_PGID if id >= 0 => -id,
        _ => return Err(Errno::EINVAL),
    };
    let pid = if idtype == P_PGID && id == 0 { 0 } else { pid };
    let w = WaitFor {
        exited: options & WEXITED != 0,
        stopped: options & WSTOPPED != 0,
        continued: options & WCONTINUED != 0,
        nohang: options & WNOHANG != 0,
        keep: options & WNOWAIT != 0,
    };
    let found = wait_child(task, pid, w)?;
    let mut info = [0u8; 128];
    let mut times = Times::default();
    if let Some((child, event, child_times)) = found {
        times = child_times;
        const CLD_EXITED: i32 = 1;
        const CLD_KILLED: i32 = 2;
        const CLD_DUMPED: i32 = 3;
        let (code, value) = match event {
            Event::Exited(ExitStatus::Exited(c), _) => (CLD_EXITED, c & 0xff),
            Event::Exited(ExitStatus::Signaled(s), false) => (CLD_KILLED, s),
            Event::Exited(ExitStatus::Signaled(s), true) => (CLD_DUMPED, s),
            Event::Stopped(s) => (crate::process::CLD_STOPPED, s),
            Event::Continued => (crate::process::CLD_CONTINUED, libc::SIGCONT),
        };
        info[0..4].copy_from_slice(&libc::SIGCHLD.to_le_bytes());
        info[8..12].copy_from_slice(&code.to_le_bytes());
        info[16..20].copy_from_slice(&child.to_le_bytes());
        info[20..24].copy_from_slice(&task.creds.ruid.to_le_bytes());
        info[24..28].copy_from_slice(&value.to_le_bytes());
    }
    if infop != 0 {
        task.mm().copy_out(infop, &info)?;
    }
    if rusage != 0 {
        task.mm().copy_out(rusage, &rusage_bytes(times))?;
    }
    Ok(0)
}

pub fn getpgrp(task: &mut Task, _: [u64; 6]) -> SysResult {
    Ok(task.tg.lock().pgid as u64)
}

/// The thread group `pid` names: 0 for the caller.
fn group(task: &Task, pid: u64) -> Result<Arc<ThreadGroup>, Errno> {
    let pid = pid as i32;
    if pid < 0 {
        return Err(Errno::EINVAL);
    }
    if pid == 0 || pid == task.tg.tgid {
        return Ok(task.tg.clone());
    }
    task.kernel.find_group(pid).ok_or(Errno::ESRCH)
}

pub fn getpgid(task: &mut Task, a: [u64; 6]) -> SysResult {
    Ok(group(task, a[0])?.lock().pgid as u64)
}

pub fn getsid(task: &mut Task, a: [u64; 6]) -> SysResult {
    Ok(group(task, a[0])?.lock().sid as u64)
}

pub fn setpgid(task: &mut Task, a: [u64; 6]) -> SysResult {
    let target = group(task, a[0])?;
    let is_child = target.parent().is_some_and(|p| Arc::ptr_eq(&p, &task.tg));
    if !Arc::ptr_eq(&target, &task.tg) && !is_child {
        return Err(Errno::ESRCH);
    }
    let pgid = if a[1] == 0 { target.tgid } else { a[1] as i32 };
    if pgid < 0 {
        return Err(Errno::EINVAL);
    }
    let my_sid = task.tg.lock().sid;
    let mut st = target.lock();
    if st.sid != my_sid || st.sid == target.tgid {
        // Another session, or a session leader.
        return Err(Errno::EPERM);
    }
    st.pgid = pgid;
    Ok(0)
}

pub fn setsid(task: &mut Task, _: [u64; 6]) -> SysResult {
    let tgid = task.tg.tgid;
    let mut st = task.tg.lock();
    if st.pgid == tgid {
        // A process group leader cannot start a session.
        return Err(Errno::EPERM);
    }
    st.pgid = tgid;
    st.sid = tgid;
    Ok(tgid as u64)
}

pub fn pipe2(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = a[1] as i32;
    if flags & !(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_DIRECT) != 0 {
        return Err(Errno::EINVAL);
    }
    // Non-blocking on the host: the Sentry waits itself, so a signal can
    // interrupt the wait (the description's O_NONBLOCK says what the
    // application asked for).
    let (r, w) = crate::host::pipe(libc::O_NONBLOCK | (flags & libc::O_DIRECT))?;
    let status = flags & (libc::O_NONBLOCK | libc::O_DIRECT);
    let cloexec = flags & libc::O_CLOEXEC != 0;
    let read = fs::host_file(r, libc::O_RDONLY | status, "pipe:[r]");
    let write = fs::host_file(w, libc::O_WRONLY | status, "pipe:[w]");
    let (rfd, wfd) = {
        let mut fds = task.fds();
        let rfd = fds.insert(read, cloexec, 0)?;
        match fds.insert(write, cloexec, 0) {
            Ok(wfd) => (rfd, wfd),
            Err(e) => {
                let _ = fds.remove(rfd);
                return Err(e);
            }
        }
    };
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(rfd as u32).to_le_bytes());
    out[4..].copy_from_slice(&(wfd as u32).to_le_bytes());
    if let Err(e) = task.mm().copy_out(a[0], &out) {
        let mut fds = task.fds();
        let _ = fds.remove(rfd);
        let _ = fds.remove(wfd);
        return Err(e);
    }
    Ok(0)
}

pub fn pipe(task: &mut Task, a: [u64; 6]) -> SysResult {
    pipe2(task, [a[0], 0, 0, 0, 0, 0])
}

/// RLIMIT_NPROC as Linux's copy_process checks it: a caller whose real
/// uid already has as many tasks (threads included) as its soft limit may
/// not make another, unless it is root or holds CAP_SYS_RESOURCE or
/// CAP_SYS_ADMIN.
fn over_nproc(task: &Task) -> bool {
    let uid = task.creds.ruid;
    if uid == 0
        || task.creds.has_cap(super::caps::CAP_SYS_RESOURCE)
        || task.creds.has_cap(super::caps::CAP_SYS_ADMIN)
    {
        return false;
    }
    let limit = task.tg.soft_limit(crate::limits::RLIMIT_NPROC);
    tasks_of(task, uid, limit) >= limit
}

/// How many tasks have the real uid `uid`, counting no further than
/// `enough`.
pub(crate) fn tasks_of(task: &Task, uid: u32, enough: u64) -> u64 {
    let mut count = 0u64;
    for g in task.kernel.all_groups() {
        let threads = g.lock().threads.clone();
        count += threads
            .iter()
            .filter(|t| t.view().is_some_and(|v| v.creds.ruid == uid))
            .count() as u64;
        if count >= enough {
            break;
        }
    }
    count
}
