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
    pub fs: Arc<Mutex<crate::fs::FsContext>>,
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
            robust_list: AtomicU64::new(0),
            futex_dead: AtomicBool::new(false),
            cpu: Default::default(),
        })
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

    /// Whether a blocking call should end: killed, or a signal to take.
    pub fn interrupted(&self) -> bool {
        self.is_killed() || self.signals().deliverable()
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
    /// CPU time of the threads that have exited.
    pub exited_times: Times,
    /// CPU time of the children (and their descendants) reaped by wait.
    pub children_times: Times,
    /// RLIMIT_CPU (soft, hard) in seconds, enforced by the process's
    /// timers.
    pub cpu_limit: (u64, u64),
}

pub(crate) struct ThreadGroup {
    pub tgid: i32,
    /// The signal the parent gets when this process ends (clone's low byte).
    pub exit_signal: i32,
    /// Signal dispositions, shared by the threads.
    pub handlers: Mutex<Handlers>,
    /// ITIMER_REAL and POSIX timers (not inherited by fork).
    pub timers: Arc<crate::timer::Timers>,
    state: Mutex<GroupState>,
    /// Notified when a child of this group becomes a zombie, and when this
    /// group itself does (for whoever waits for the init process).
    pub changed: Condvar,
}

impl ThreadGroup {
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
                exited_times: Times::default(),
                children_times: Times::default(),
                cpu_limit: (u64::MAX, u64::MAX),
            }),
            changed: Condvar::new(),
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
        let action = self.handlers().get(q.sig);
        let ignored = action.handler == signal::SIG_IGN
            || (action.handler == signal::SIG_DFL
                && signal::default_action(q.sig) == signal::Default_::Ignore);
        let target = {
            let st = self.lock();
            st.threads
                .iter()
                .find(|t| t.signals().mask & signal::bit(q.sig) == 0)
                .or(st.threads.first())
                .cloned()
        };
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
    pub fn thread_exited(&self, tid: i32, status: ExitStatus, init: Option<Arc<ThreadGroup>>) {
        let (parent, status, children) = {
            let mut st = self.lock();
            // The exiting thread's host thread still runs (this is it), so
            // its CPU clock can be read one last time.
            if let Some(t) = st.threads.iter().find(|t| t.tid == tid) {
                let times = t.cpu.times();
                st.exited_times += times;
            }
            st.threads.retain(|t| t.tid != tid);
            if !st.threads.is_empty() {
                return;
            }
            let status = *st.exit_status.get_or_insert(status);
            st.zombie = true;
            (
                st.parent.upgrade(),
                status,
                std::mem::take(&mut st.children),
            )
        };
        // A process's record locks die with it (before its parent can see
        // it gone).
        vfs::lock::table().release_all(vfs::lock::Owner::Process(self.tgid));
        self.changed.notify_all();
        let init = init.filter(|i| i.tgid != self.tgid);
        for child in children {
            let (zombie, pdeath) = {
                let mut c = child.lock();
                c.parent = init.as_ref().map_or_else(Weak::new, Arc::downgrade);
                (c.zombie, c.pdeath_signal)
            };
            if pdeath > 0 {
                child.post(Queued {
                    sig: pdeath,
                    info: signal::user_info(pdeath, 0x80, 0, 0),
                });
            }
            if let Some(init) = &init {
                init.lock().children.push(child.clone());
                if zombie {
                    init.changed.notify_all();
                }
            }
        }
        if let Some(parent) = parent {
            self.notify_parent(&parent, status);
        }
    }

    /// Tell the parent this process ended: SIGCHLD (or the clone's exit
    /// signal), or immediate reaping if the parent ignores SIGCHLD.
    fn notify_parent(self: &ThreadGroup, parent: &ThreadGroup, status: ExitStatus) {
        let action = parent.handlers().get(signal::SIGCHLD);
        let autoreap =
            action.handler == signal::SIG_IGN || action.flags & signal::SA_NOCLDWAIT != 0;
        {
            // Under the parent's lock, so a waiter between its scan and its
            // sleep cannot miss this.
            let mut st = parent.lock();
            if autoreap {
                st.children.retain(|c| c.tgid != self.tgid);
            }
        }
        parent.changed.notify_all();
        if self.exit_signal > 0 {
            const CLD_EXITED: i32 = 1;
            const CLD_KILLED: i32 = 2;
            let (code, value) = match status {
                ExitStatus::Exited(c) => (CLD_EXITED, c & 0xff),
                ExitStatus::Signaled(s) => (CLD_KILLED, s),
            };
            let mut info = signal::user_info(self.exit_signal, code, self.tgid, 0);
            info[24..28].copy_from_slice(&value.to_le_bytes());
            parent.post(Queued {
                sig: self.exit_signal,
                info,
            });
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
