//! Thread groups (processes), their parent/child links, and exit.
//!
//! A [`ThreadGroup`] is what `getpid` names: it holds the live threads'
//! shared handles, the exit status once the group is exiting, and its
//! children. Waiting for children (`wait4`) blocks on the parent's
//! condition variable, which a child notifies when it becomes a zombie.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use platform::Interrupter;

use crate::task::ExitStatus;

/// How long a blocked task sleeps before it looks again at whether it was
/// killed (its wakers notify it at once; this bounds missed wake-ups).
pub(crate) const KILL_POLL: Duration = Duration::from_millis(50);

/// The part of a task other threads reach: to kill or interrupt it.
pub(crate) struct TaskHandle {
    pub tid: i32,
    pub interrupter: Arc<dyn Interrupter>,
    /// Set when the task must exit (exit_group of its group, exec of
    /// another thread); checked every time it enters the Sentry.
    pub killed: AtomicBool,
}

impl TaskHandle {
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.interrupter.interrupt();
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
    pub pgid: i32,
    pub sid: i32,
}

pub(crate) struct ThreadGroup {
    pub tgid: i32,
    state: Mutex<GroupState>,
    /// Notified when a child of this group becomes a zombie, and when this
    /// group itself does (for whoever waits for the init process).
    pub changed: Condvar,
}

impl ThreadGroup {
    pub fn new(tgid: i32, parent: Weak<ThreadGroup>, pgid: i32, sid: i32) -> Arc<ThreadGroup> {
        Arc::new(ThreadGroup {
            tgid,
            state: Mutex::new(GroupState {
                parent,
                children: Vec::new(),
                threads: Vec::new(),
                exit_status: None,
                zombie: false,
                pgid,
                sid,
            }),
            changed: Condvar::new(),
        })
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
    pub fn thread_exited(&self, tid: i32, status: ExitStatus) {
        let parent = {
            let mut st = self.lock();
            st.threads.retain(|t| t.tid != tid);
            if !st.threads.is_empty() {
                return;
            }
            st.exit_status.get_or_insert(status);
            st.zombie = true;
            st.parent.upgrade()
        };
        self.changed.notify_all();
        if let Some(parent) = parent {
            // Take the parent's lock so a waiter between its scan and its
            // sleep cannot miss this notification.
            drop(parent.lock());
            parent.changed.notify_all();
        }
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
