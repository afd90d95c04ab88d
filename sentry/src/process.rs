//! Thread groups (processes), their parent/child links, and exit.
//!
//! A [`ThreadGroup`] is what `getpid` names: it holds the live threads'
//! shared handles, the exit status once the group is exiting, and its
//! children. Waiting for children (`wait4`) blocks on the parent's
//! condition variable, which a child notifies when it becomes a zombie.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use platform::Interrupter;

use crate::cputime::Times;
use crate::signal::{self, Handlers, Queued, ThreadSignals};
use crate::task::ExitStatus;

/// How long a blocked task sleeps before it looks again at whether it was
/// killed (its wakers notify it at once; this bounds missed wake-ups).
pub(crate) const KILL_POLL: Duration = Duration::from_millis(50);

/// The instant `d` from now, or None when that is past what an `Instant`
/// can hold (an application asking for centuries): no deadline at all.
pub(crate) fn deadline_in(d: Duration) -> Option<std::time::Instant> {
    std::time::Instant::now().checked_add(d)
}

/// The part of a task other threads reach: to kill or interrupt it.
pub(crate) struct TaskHandle {
    pub tid: i32,
    pub interrupter: Arc<dyn Interrupter>,
    /// Set when the task must exit (exit_group of its group, exec of
    /// another thread); checked every time it enters the Sentry.
    pub killed: AtomicBool,
    /// Mask and pending signals; `wake` is notified when a signal arrives.
    pub signals: Mutex<ThreadSignals>,
    pub wake: Condvar,
    /// What `/proc/[pid]` shows of the task, published by the task itself
    /// whenever it changes (start, exec, prctl, set*id).
    pub view: Mutex<Option<TaskView>>,
    /// A host eventfd that turns readable when the task is signalled or
    /// killed, so waits on host descriptors end at once.
    pub wake_fd: Option<std::os::fd::OwnedFd>,
    /// Job control, changed under the group's lock (Linux's
    /// JOBCTL_STOP_PENDING): the task must take part in its group's stop.
    pub stop_pending: AtomicBool,
    /// The task has stopped and waits for SIGCONT (JOBCTL_STOPPED).
    pub stopped: AtomicBool,
    /// Affinity, policy and nice value (recorded; the host schedules).
    pub sched: Mutex<crate::syscalls::sched::Sched>,
    /// set_robust_list's head (0: none), walked when the thread exits.
    pub robust_list: AtomicU64,
    /// The thread has exited as far as futexes go: its robust list was
    /// walked, so it will never unlock a PI futex it still owns.
    pub futex_dead: AtomicBool,
    pub cpu: crate::cputime::ThreadCpu,
}

/// The parts of a task that other tasks read through procfs.
#[derive(Clone)]
pub(crate) struct TaskView {
    pub comm: Vec<u8>,
    pub exe: String,
    pub mm: Arc<Mutex<crate::mm::MemoryManager>>,
    pub fds: Arc<Mutex<crate::fs::FdTable>>,
    pub fs: Arc<Mutex<crate::fs::SharedFs>>,
    pub uts: Arc<crate::namespace::UtsNamespace>,
    pub ipc: Arc<crate::namespace::IpcNamespace>,
    pub creds: crate::task::Credentials,
}

impl vfs::waiter::Notify for TaskHandle {
    fn notify(&self) {
        self.nudge();
    }
}

impl TaskHandle {
    pub fn new(tid: i32, interrupter: Arc<dyn Interrupter>, mask: u64) -> Arc<TaskHandle> {
        Arc::new(TaskHandle {
            tid,
            interrupter,
            killed: AtomicBool::new(false),
            signals: Mutex::new(ThreadSignals {
                mask,
                ..ThreadSignals::default()
            }),
            wake: Condvar::new(),
            view: Mutex::new(None),
            wake_fd: crate::host::eventfd(0, libc::EFD_NONBLOCK).ok(),
            stop_pending: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            sched: Mutex::default(),
            robust_list: AtomicU64::new(0),
            futex_dead: AtomicBool::new(false),
            cpu: Default::default(),
        })
    }

    pub fn sched(&self) -> MutexGuard<'_, crate::syscalls::sched::Sched> {
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn signals(&self) -> MutexGuard<'_, ThreadSignals> {
        self.signals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a signal for this thread and get it out of application code
    /// or a blocking wait to take it.
    pub fn post(&self, q: Queued) {
        let deliverable = {
            let mut s = self.signals();
            s.post(q);
            s.deliverable()
        };
        // Even a blocked signal wakes host waits: a signalfd may be
        // waiting for it (the waiter rechecks and sleeps again if not).
        self.nudge();
        if deliverable {
            self.wake.notify_all();
            self.interrupter.interrupt();
        }
    }

    /// Make the wake eventfd readable.
    fn nudge(&self) {
        if let Some(fd) = &self.wake_fd {
            let _ = crate::host::eventfd_write(std::os::fd::AsFd::as_fd(fd), 1);
        }
    }

    /// Empty the wake eventfd (before a wait, and after it fired).
    pub fn drain_wake(&self) {
        if let Some(fd) = &self.wake_fd {
            let _ = crate::host::eventfd_read(std::os::fd::AsFd::as_fd(fd));
        }
    }

    /// Whether a blocking call should end: killed, a signal to take, or a
    /// group stop to take part in.
    pub fn interrupted(&self) -> bool {
        self.is_killed() || self.stop_pending() || self.signals().deliverable()
    }

    pub fn stop_pending(&self) -> bool {
        self.stop_pending.load(Ordering::SeqCst)
    }

    /// Get the task out of application code or a blocking wait to look at
    /// its job-control state.
    fn wake_up(&self) {
        self.nudge();
        self.wake.notify_all();
        self.interrupter.interrupt();
    }

    /// Sleep on the wake eventfd until something is posted to the task
    /// (the caller rechecks what it waits for; no lock is held).
    pub fn sleep_until_woken(&self) {
        use std::os::fd::AsRawFd;
        let Some(fd) = &self.wake_fd else {
            std::thread::sleep(KILL_POLL);
            return;
        };
        let mut p = [libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // Every waker makes the eventfd readable after changing what the
        // caller checks, so an unbounded wait misses nothing.
        let _ = crate::host::poll(&mut p, -1);
        self.drain_wake();
    }

    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.wake.notify_all();
        self.nudge();
        self.interrupter.interrupt();
    }

    pub fn view(&self) -> Option<TaskView> {
        self.view.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

pub(crate) struct GroupState {
    pub parent: Weak<ThreadGroup>,
    pub children: Vec<Arc<ThreadGroup>>,
    pub threads: Vec<Arc<TaskHandle>>,
    /// Set by exit_group or a fatal signal; the group's status once its last
    /// thread is gone.
    pub exit_status: Option<ExitStatus>,
    /// Every thread has exited; waiting for the parent to reap.
    pub zombie: bool,
    /// prctl(PR_SET_PDEATHSIG): the signal this process gets when its
    /// parent exits (0 for none).
    pub pdeath_signal: i32,
    /// prctl(PR_SET_DUMPABLE).
    pub dumpable: bool,
    /// prctl(PR_SET_NO_NEW_PRIVS): never cleared once set.
    pub no_new_privs: bool,
    pub pgid: i32,
    pub sid: i32,
    pub jobctl: JobControl,
    /// The fatal signal's default action dumped core (WCOREDUMP). No core
    /// file is ever written: only the status says so, as the same process
    /// would report natively under the same RLIMIT_CORE.
    pub core_dumped: bool,
    /// CPU time of the threads that have exited.
    pub exited_times: Times,
    /// CPU time of the children (and their descendants) reaped by wait.
    pub children_times: Times,
}

/// Linux's group stop (kernel/signal.c, `do_signal_stop` and
/// `prepare_signal`): what the process's threads and its parent's waits
/// see of stops and continues.
#[derive(Default)]
pub(crate) struct JobControl {
    /// Threads yet to stop in the group stop under way (group_stop_count).
    pub stopping: usize,
    /// Every thread has stopped (SIGNAL_STOP_STOPPED).
    pub stopped: bool,
    /// The stop signal a WUNTRACED wait has yet to report (group_exit_code;
    /// 0 once reported).
    pub stop_signal: i32,
    /// A continue a WCONTINUED wait has yet to report
    /// (SIGNAL_STOP_CONTINUED).
    pub continued: bool,
}

/// SIGCONT and the stop signals, which act when generated.
fn job_control(sig: i32) -> bool {
    sig == signal::SIGCONT || signal::bit(sig) & signal::STOP_SIGNALS != 0
}

/// si_code of SIGCHLD for a stop and a continue.
pub(crate) const CLD_STOPPED: i32 = 5;
pub(crate) const CLD_CONTINUED: i32 = 6;

/// Whether process group `pgid` is orphaned (POSIX; Linux's
/// `will_become_orphaned_pgrp`): no live member has a parent in another
/// group of the same session. `groups` are every process of the sandbox.
pub(crate) fn orphaned_pgrp(groups: &[Arc<ThreadGroup>], pgid: i32) -> bool {
    for g in groups {
        let (member, zombie, sid, parent) = {
            let st = g.lock();
            (st.pgid == pgid, st.zombie, st.sid, st.parent.upgrade())
        };
        if !member || zombie {
            continue;
        }
        // The sandbox's first process (its parent is outside) and the
        // processes it reaps are like Linux's init and its children
        // (`is_global_init` in will_become_orphaned_pgrp): neither keeps a
        // group from being orphaned.
        let Some(parent) = parent.filter(|p| p.tgid != 1) else {
            continue;
        };
        let (ppgid, psid) = {
            let st = parent.lock();
            (st.pgid, st.sid)
        };
        if ppgid != pgid && psid == sid {
            return false;
        }
    }
    true
}

pub(crate) struct ThreadGroup {
    pub tgid: i32,
    /// The signal the parent gets when this process ends (clone's low byte).
    pub exit_signal: i32,
    /// Signal dispositions, shared by the threads.
    pub handlers: Mutex<Handlers>,
    /// ITIMER_REAL and POSIX timers (not inherited by fork).
    pub timers: Arc<crate::timer::Timers>,
    /// Resource limits (inherited by fork: the parent copies them in).
    pub limits: Mutex<crate::limits::Limits>,
    state: Mutex<GroupState>,
    /// Notified when a child of this group becomes a zombie, and when this
    /// group itself does (for whoever waits for the init process).
    pub changed: Condvar,
    /// When the process was created (fork or start), for `ps`.
    pub start_time: std::time::SystemTime,
}

impl ThreadGroup {
    /// The soft limit of `resource` (a `crate::limits::RLIMIT_*`).
    pub fn soft_limit(&self, resource: usize) -> u64 {
        self.limits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .soft(resource)
    }

    pub fn new(
        tgid: i32,
        parent: Weak<ThreadGroup>,
        pgid: i32,
        sid: i32,
        exit_signal: i32,
        handlers: Handlers,
    ) -> Arc<ThreadGroup> {
        Arc::new(ThreadGroup {
            tgid,
            exit_signal,
            handlers: Mutex::new(handlers),
            timers: Arc::default(),
            limits: Mutex::default(),
            state: Mutex::new(GroupState {
                parent,
                children: Vec::new(),
                threads: Vec::new(),
                exit_status: None,
                zombie: false,
                pdeath_signal: 0,
                dumpable: true,
                no_new_privs: false,
                pgid,
                sid,
                jobctl: JobControl::default(),
                core_dumped: false,
                exited_times: Times::default(),
                children_times: Times::default(),
            }),
            changed: Condvar::new(),
            start_time: std::time::SystemTime::now(),
        })
    }

    pub fn handlers(&self) -> MutexGuard<'_, Handlers> {
        self.handlers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a process-directed signal on a thread that does not block it
    /// (the first thread if all do). Signals ignored at this moment are
    /// dropped, as Linux does at generation time. Returns false if the
    /// group has no threads left.
    pub fn post(&self, q: Queued) -> bool {
        if !job_control(q.sig) {
            let st = self.lock();
            return self.queue(&st, q);
        }
        // Under the same locks as the generation-time effects, so a task
        // that SIGCONT wakes finds the signal queued.
        self.with_parent(|st, parent| {
            self.prepare(q.sig, st, parent);
            self.queue(st, q)
        })
    }

    /// [`ThreadGroup::post`] after generation-time effects, with this
    /// group's state locked.
    fn queue(&self, st: &GroupState, mut q: Queued) -> bool {
        q.group = true;
        let action = self.handlers().get(q.sig);
        let ignored = signal::ignored(&action, q.sig);
        let target = st
            .threads
            .iter()
            .find(|t| t.signals().mask & signal::bit(q.sig) == 0)
            .or(st.threads.first());
        match target {
            Some(t) => {
                // A blocked signal is never ignored at generation: its
                // disposition may change before it is unblocked, and a
                // signalfd or sigwait may take it (signal(7)).
                let blocked = t.signals().mask & signal::bit(q.sig) != 0;
                if !ignored || blocked || q.sig == signal::SIGKILL {
                    t.post(q);
                }
                true
            }
            None => false,
        }
    }

    /// Run `f` with this group's parent (if any) and then this group
    /// locked, the order waits take them in: a change of state and the
    /// SIGCHLD that tells of it reach the parent's waits together.
    fn with_parent<R>(
        &self,
        f: impl FnOnce(&mut GroupState, Option<(&ThreadGroup, &mut GroupState)>) -> R,
    ) -> R {
        loop {
            let parent = self.parent();
            let mut pst = parent.as_ref().map(|p| p.lock());
            let mut st = self.lock();
            let now = st.parent.upgrade();
            let same = match (&parent, &now) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            if !same {
                // Reparented meanwhile: lock the new parent instead.
                continue;
            }
            let r = f(&mut st, parent.as_deref().zip(pst.as_deref_mut()));
            drop(st);
            drop(pst);
            if let Some(p) = &parent {
                p.changed.notify_all();
            }
            return r;
        }
    }

    /// Hand `t` the process-directed signals that wait on its siblings
    /// while they block them, where `t` does not block them or wants them
    /// anyway (`also`: a sigtimedwait's or signalfd's set). Linux keeps
    /// such signals in one queue any thread takes from; call this when
    /// `t` comes to accept more signals than before.
    pub fn claim_for(&self, t: &TaskHandle, also: u64) {
        let st = self.lock();
        let wanted = !t.signals().mask | also;
        for other in st.threads.iter().filter(|o| o.tid != t.tid) {
            let moved = {
                let mut s = other.signals();
                let blocked = s.mask;
                s.take_where(|q| {
                    let b = signal::bit(q.sig);
                    q.group && blocked & b != 0 && wanted & b != 0
                })
            };
            for q in moved {
                t.post(q);
            }
        }
    }

    /// Queue a thread-directed signal (tgkill), with the same generation
    /// rules as [`ThreadGroup::post`].
    pub fn post_thread(&self, t: &TaskHandle, q: Queued) {
        self.with_parent(|st, parent| {
            self.prepare(q.sig, st, parent);
            let action = self.handlers().get(q.sig);
            let blocked = t.signals().mask & signal::bit(q.sig) != 0;
            if !signal::ignored(&action, q.sig) || blocked || q.sig == signal::SIGKILL {
                t.post(q);
            }
        })
    }

    /// What generating `sig` does before it is queued (Linux's
    /// `prepare_signal`): a stop signal discards a pending SIGCONT; SIGCONT
    /// discards pending stop signals and resumes a stopped or stopping
    /// group, whether or not it is blocked, caught or ignored, and the
    /// parent hears of it.
    fn prepare(
        &self,
        sig: i32,
        st: &mut GroupState,
        parent: Option<(&ThreadGroup, &mut GroupState)>,
    ) {
        if !job_control(sig) {
            return;
        }
        {
            if st.zombie || st.exit_status.is_some() {
                return;
            }
            if sig != signal::SIGCONT {
                for t in &st.threads {
                    t.signals().discard(signal::SIGCONT);
                }
                return;
            }
            for t in &st.threads {
                {
                    let mut s = t.signals();
                    s.pending
                        .retain(|q| signal::bit(q.sig) & signal::STOP_SIGNALS == 0);
                    s.stop_dequeued = false;
                }
                t.stop_pending.store(false, Ordering::SeqCst);
                if t.stopped.swap(false, Ordering::SeqCst) {
                    t.wake_up();
                }
            }
            // A stop still under way counts as finished and then continued;
            // SIGCHLD does not queue, so only the stop is reported (as
            // Linux does, with the stop signal already cleared).
            let (code, status) = if st.jobctl.stopped {
                (CLD_CONTINUED, signal::SIGCONT)
            } else if st.jobctl.stopping > 0 {
                (CLD_STOPPED, 0)
            } else {
                return;
            };
            st.jobctl = JobControl {
                continued: true,
                ..JobControl::default()
            };
            let uid = st
                .threads
                .first()
                .and_then(|t| t.view())
                .map_or(0, |v| v.creds.ruid);
            self.tell_parent_stop(parent, code, status, uid);
        }
    }

    /// Tell the parent (locked) this process stopped or continued (Linux's
    /// `do_notify_parent_cldstop`): SIGCHLD, unless its SIGCHLD action is
    /// ignored or has SA_NOCLDSTOP; its waiters wake either way (when
    /// [`ThreadGroup::with_parent`] returns).
    fn tell_parent_stop(
        &self,
        parent: Option<(&ThreadGroup, &mut GroupState)>,
        code: i32,
        status: i32,
        uid: u32,
    ) {
        let Some((parent, pst)) = parent else {
            return;
        };
        let action = parent.handlers().get(signal::SIGCHLD);
        if action.handler == signal::SIG_IGN || action.flags & signal::SA_NOCLDSTOP != 0 {
            return;
        }
        let mut info = signal::user_info(signal::SIGCHLD, code, self.tgid, uid);
        info[24..28].copy_from_slice(&status.to_le_bytes());
        parent.queue(pst, Queued::new(signal::SIGCHLD, info));
    }

    /// Thread `t` (of a task with real uid `uid`) takes part in the group
    /// stop, starting one with `sig`, a stop signal it took for delivery,
    /// if none is under way; the last thread to stop tells the parent.
    /// Returns whether `t` is now stopped.
    pub fn stop_thread(&self, t: &TaskHandle, sig: i32, uid: u32) -> bool {
        self.with_parent(|st, parent| {
            if !t.stop_pending() {
                if sig == 0 {
                    return false;
                }
                // A SIGCONT since the signal was taken, or an exit, cancels
                // it.
                let dequeued = std::mem::take(&mut t.signals().stop_dequeued);
                if !dequeued || st.exit_status.is_some() || t.is_killed() {
                    return false;
                }
                if !st.jobctl.stopped {
                    st.jobctl.stop_signal = sig;
                }
                st.jobctl.stopping = 0;
                for other in &st.threads {
                    if other.stopped.load(Ordering::SeqCst) || other.is_killed() {
                        continue;
                    }
                    other.stop_pending.store(true, Ordering::SeqCst);
                    st.jobctl.stopping += 1;
                    if other.tid != t.tid {
                        other.wake_up();
                    }
                }
            }
            t.stop_pending.store(false, Ordering::SeqCst);
            t.stopped.store(true, Ordering::SeqCst);
            if let Some(stop_sig) = self.participated(st) {
                self.tell_parent_stop(parent, CLD_STOPPED, stop_sig, uid);
            }
            true
        })
    }

    /// One thread has stopped (or exited) for the group stop; the last
    /// completes it. Returns the stop signal to report to the parent.
    fn participated(&self, st: &mut GroupState) -> Option<i32> {
        st.jobctl.stopping = st.jobctl.stopping.saturating_sub(1);
        if st.jobctl.stopping > 0 || st.jobctl.stopped {
            return None;
        }
        st.jobctl.stopped = true;
        st.jobctl.continued = false;
        Some(st.jobctl.stop_signal)
    }

    pub fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn parent(&self) -> Option<Arc<ThreadGroup>> {
        self.lock().parent.upgrade()
    }

    /// Kill every thread but `except` (exit_group, exec, fatal signals).
    pub fn kill_others(&self, except: i32) {
        for t in self.lock().threads.iter().filter(|t| t.tid != except) {
            t.kill();
        }
    }

    /// Record that thread `tid` is gone; if it was the last, the group
    /// becomes a zombie with `status` (unless an exit status was already
    /// set) and its parent is told.
    ///
    /// The children of a process that ends are handed to `init` (the
    /// sandbox's PID 1), which reaps them, and each gets its parent-death
    /// signal if it asked for one.
    pub fn thread_exited(&self, tid: i32, status: ExitStatus, kernel: &crate::task::Kernel) {
        let last = self.with_parent(|st, parent| {
            // The exiting thread's host thread still runs (this is it), so
            // its CPU clock can be read one last time.
            if let Some(t) = st.threads.iter().find(|t| t.tid == tid) {
                let times = t.cpu.times();
                st.exited_times += times;
            }
            // A thread that exits instead of stopping still completes the
            // group stop (Linux's exit_signals).
            let was_stopping = st
                .threads
                .iter()
                .find(|t| t.tid == tid)
                .is_some_and(|t| t.stop_pending.swap(false, Ordering::SeqCst));
            let leaving = st.threads.iter().find(|t| t.tid == tid).cloned();
            st.threads.retain(|t| t.tid != tid);
            if !st.threads.is_empty() {
                // Signals sent to the process outlive the thread they
                // waited on.
                if let Some(t) = leaving {
                    let group = t.signals().take_where(|q| q.group);
                    for q in group {
                        self.queue(st, q);
                    }
                }
                if was_stopping && st.exit_status.is_none() {
                    if let Some(sig) = self.participated(st) {
                        self.tell_parent_stop(parent, CLD_STOPPED, sig, 0);
                    }
                }
                return None;
            }
            Some((
                *st.exit_status.get_or_insert(status),
                std::mem::take(&mut st.children),
            ))
        });
        let Some((status, children)) = last else {
            return;
        };
        // A process's record locks die with it (before its parent can see
        // it gone).
        vfs::lock::table().release_all(vfs::lock::Owner::Process(self.tgid));
        let init = kernel.find_group(1).filter(|i| i.tgid != self.tgid);
        let parent_at_exit = self.parent();
        let child_groups: Vec<(i32, i32)> = children
            .iter()
            .map(|c| {
                let st = c.lock();
                (st.pgid, st.sid)
            })
            .collect();
        for child in children {
            let (zombie, pdeath) = {
                let mut c = child.lock();
                c.parent = init.as_ref().map_or_else(Weak::new, Arc::downgrade);
                (c.zombie, c.pdeath_signal)
            };
            if pdeath > 0 {
                child.post(Queued::new(pdeath, signal::user_info(pdeath, 0x80, 0, 0)));
            }
            if let Some(init) = &init {
                init.lock().children.push(child.clone());
                if zombie {
                    init.changed.notify_all();
                }
            }
        }
        self.with_parent(|st, parent| {
            st.zombie = true;
            if let Some((parent, pst)) = parent {
                self.tell_parent_exit(parent, pst, status, st.core_dumped);
            }
        });
        self.changed.notify_all();
        self.hang_up_orphans(kernel, parent_at_exit, &child_groups);
    }

    /// POSIX's rule for process groups this exit orphans (Linux's
    /// `kill_orphaned_pgrp`): one with a stopped member gets SIGHUP and
    /// then SIGCONT, so it is not left stopped with nobody to continue it.
    /// Candidates are this process's own group (if its parent was in
    /// another group of the session) and its children's groups (if
    /// different from its own, in the same session).
    fn hang_up_orphans(
        &self,
        kernel: &crate::task::Kernel,
        parent: Option<Arc<ThreadGroup>>,
        children: &[(i32, i32)],
    ) {
        let (pgid, sid) = {
            let st = self.lock();
            (st.pgid, st.sid)
        };
        let mut candidates = Vec::new();
        if let Some(parent) = parent {
            let (ppgid, psid) = {
                let st = parent.lock();
                (st.pgid, st.sid)
            };
            if ppgid != pgid && psid == sid {
                candidates.push(pgid);
            }
        }
        for &(cpgid, csid) in children {
            if cpgid != pgid && csid == sid && !candidates.contains(&cpgid) {
                candidates.push(cpgid);
            }
        }
        if candidates.is_empty() {
            return;
        }
        let groups = kernel.all_groups();
        for pgrp in candidates {
            let members: Vec<&Arc<ThreadGroup>> = groups
                .iter()
                .filter(|g| {
                    let st = g.lock();
                    st.pgid == pgrp && !st.zombie
                })
                .collect();
            let stopped = members.iter().any(|g| g.lock().jobctl.stopped);
            if !stopped || !orphaned_pgrp(&groups, pgrp) {
                continue;
            }
            for sig in [libc::SIGHUP, signal::SIGCONT] {
                for g in &members {
                    g.post(Queued::new(
                        sig,
                        signal::user_info(sig, 0x80 /* SI_KERNEL */, 0, 0),
                    ));
                }
            }
        }
    }

    /// Tell the parent (locked) this process ended: SIGCHLD (or the
    /// clone's exit signal), or immediate reaping if the parent ignores
    /// SIGCHLD.
    fn tell_parent_exit(
        &self,
        parent: &ThreadGroup,
        pst: &mut GroupState,
        status: ExitStatus,
        dumped: bool,
    ) {
        let action = parent.handlers().get(signal::SIGCHLD);
        if action.handler == signal::SIG_IGN || action.flags & signal::SA_NOCLDWAIT != 0 {
            pst.children.retain(|c| c.tgid != self.tgid);
        }
        if self.exit_signal > 0 {
            const CLD_EXITED: i32 = 1;
            const CLD_KILLED: i32 = 2;
            const CLD_DUMPED: i32 = 3;
            let (code, value) = match status {
                ExitStatus::Exited(c) => (CLD_EXITED, c & 0xff),
                ExitStatus::Signaled(s) if dumped => (CLD_DUMPED, s),
                ExitStatus::Signaled(s) => (CLD_KILLED, s),
            };
            let mut info = signal::user_info(self.exit_signal, code, self.tgid, 0);
            info[24..28].copy_from_slice(&value.to_le_bytes());
            parent.queue(pst, Queued::new(self.exit_signal, info));
        }
    }

    /// The CPU time of the whole process (RUSAGE_SELF).
    pub fn cpu_times(&self) -> Times {
        let st = self.lock();
        st.threads
            .iter()
            .fold(st.exited_times, |sum, t| sum + t.cpu.times())
    }

    /// Block until this group is a zombie; returns its status.
    pub fn wait_exit(&self) -> ExitStatus {
        let mut st = self.lock();
        loop {
            if st.zombie {
                return st.exit_status.unwrap_or(ExitStatus::Exited(0));
            }
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}
