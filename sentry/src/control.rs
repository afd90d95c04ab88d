//! What the runtime asks of a running kernel from outside the sandbox (the
//! control server's `containerManager` methods, upstream
//! `runsc/boot/controller.go` and `pkg/sentry/control/proc.go`): start a
//! process (the container's init, or an exec) on its own host thread, wait
//! for one, signal one or all, list them, and pause or resume every task.
//!
//! Processes started here have no parent in the sandbox. The kernel keeps
//! each one until [`Kernel::wait_process`] reaps it, so its exit status
//! outlives it as upstream's exec'd thread groups' do.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::process::KILL_POLL;
use crate::task::{ExitStatus, Kernel, ProcessSpec, StartError, Task};

/// One process, as `ps` shows it (upstream's `control.Process`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: i32,
    /// 0 when the parent is outside the sandbox.
    pub ppid: i32,
    /// Effective user ID.
    pub uid: u32,
    pub threads: Vec<i32>,
    /// The command name (`comm`).
    pub cmd: String,
    pub started: SystemTime,
    /// User plus system CPU time.
    pub cpu: Duration,
}

/// The sandbox's resource use, for `runsc events`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// User and system CPU time of every process, live or exited.
    pub cpu_user: Duration,
    pub cpu_system: Duration,
    /// Bytes of application memory in use (the memory file's pages).
    pub memory: u64,
    /// Live processes.
    pub processes: u64,
}

impl Kernel {
    /// Start `spec` as a new process with no parent in the sandbox, on a
    /// host thread of its own (the platform binds its context to that
    /// thread). Returns its PID once it is ready to run.
    pub fn start_process(self: &Arc<Self>, spec: ProcessSpec) -> Result<i32, StartError> {
        let (tx, rx) = mpsc::channel();
        let kernel = self.clone();
        let spawned = std::thread::Builder::new()
            .name("task-start".into())
            .spawn(move || match Task::start(kernel.clone(), spec) {
                Ok(task) => {
                    kernel
                        .started
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(task.tid, task.tg.clone());
                    let _ = tx.send(Ok(task.tid));
                    task.run_thread();
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            });
        spawned.map_err(|e| StartError::Setup(format!("starting a task thread: {e}")))?;
        rx.recv()
            .unwrap_or_else(|_| Err(StartError::Setup("the task thread ended early".into())))
    }

    /// Block until process `pid`, one [`Kernel::start_process`] started,
    /// has exited; its status. With `reap`, the kernel forgets it (a second
    /// wait finds nothing). None if there is no such process.
    pub fn wait_process(&self, pid: i32, reap: bool) -> Option<ExitStatus> {
        let tg = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&pid)
            .cloned()?;
        let status = tg.wait_exit();
        if reap {
            self.started
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&pid);
            self.unregister_group(pid);
        }
        Some(status)
    }

    /// Send `sig` to every live process; how many there were.
    pub fn signal_all(&self, sig: i32) -> usize {
        let live: Vec<_> = self
            .all_groups()
            .into_iter()
            .filter(|g| !g.lock().zombie)
            .collect();
        live.iter()
            .filter(|g| self.send_signal(g.tgid, sig))
            .count()
    }

    /// Send `sig` to `pid` as Linux delivers a signal from an ancestor PID
    /// namespace to that namespace's init (kernel/signal.c,
    /// `sig_task_ignored` with SIGNAL_UNKILLABLE): a signal whose action is
    /// the default is dropped unless it is SIGKILL or SIGSTOP. So `kill
    /// TERM` leaves an init without a SIGTERM handler running, as under
    /// runc. False if there is no such process.
    pub fn signal_init(&self, pid: i32, sig: i32) -> bool {
        let Some(group) = self.find_group(pid) else {
            return false;
        };
        let default = group.handlers().get(sig).handler == crate::signal::SIG_DFL;
        if default && sig != libc::SIGKILL && sig != libc::SIGSTOP {
            return true;
        }
        self.send_signal(pid, sig)
    }

    /// Kill every process and wait (at most `limit`) until all are gone.
    pub fn kill_all(&self, limit: Duration) {
        self.resume();
        self.signal_all(libc::SIGKILL);
        let end = std::time::Instant::now() + limit;
        while std::time::Instant::now() < end && self.all_groups().iter().any(|g| !g.lock().zombie)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Every live process, by PID.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        let mut out: Vec<ProcessInfo> = self
            .all_groups()
            .into_iter()
            .filter_map(|g| {
                let (threads, ppid, leader) = {
                    let st = g.lock();
                    if st.zombie {
                        return None;
                    }
                    let threads: Vec<i32> = st.threads.iter().map(|t| t.tid).collect();
                    let leader = st
                        .threads
                        .iter()
                        .find(|t| t.tid == g.tgid)
                        .or(st.threads.first())
                        .cloned();
                    (threads, st.parent.upgrade().map_or(0, |p| p.tgid), leader)
                };
                let view = leader.and_then(|t| t.view());
                Some(ProcessInfo {
                    pid: g.tgid,
                    ppid,
                    uid: view.as_ref().map_or(0, |v| v.creds.euid),
                    threads,
                    cmd: view
                        .map(|v| String::from_utf8_lossy(&v.comm).into_owned())
                        .unwrap_or_default(),
                    started: g.start_time,
                    cpu: g.cpu_times().total(),
                })
            })
            .collect();
        out.sort_by_key(|p| p.pid);
        out
    }

    /// CPU time, memory and process count of the whole sandbox.
    pub fn usage(&self) -> Usage {
        let mut u = Usage::default();
        for g in self.all_groups() {
            let t = g.cpu_times() + g.lock().children_times;
            u.cpu_user += t.user;
            u.cpu_system += t.sys;
            if !g.lock().zombie {
                u.processes += 1;
            }
        }
        if let Ok(st) = crate::host::fstat_raw(self.mf.fd().as_fd()) {
            u.memory = u64::try_from(st.blocks).unwrap_or(0) * 512;
        }
        u
    }

    /// Stop every task at its next return to the Sentry (a task blocked
    /// in a syscall stops when the call returns) until [`Kernel::resume`].
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        for g in self.all_groups() {
            for t in &g.lock().threads {
                t.interrupter.interrupt();
            }
        }
    }

    pub fn resume(&self) {
        let _guard = self.pause_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.paused.store(false, Ordering::SeqCst);
        self.unpaused.notify_all();
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Called by a task on its way back to application code: wait while
    /// the kernel is paused, unless the task is killed.
    pub(crate) fn wait_while_paused(&self, killed: impl Fn() -> bool) {
        if !self.paused.load(Ordering::Relaxed) {
            return;
        }
        let mut guard = self.pause_lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.paused.load(Ordering::SeqCst) && !killed() {
            guard = self
                .unpaused
                .wait_timeout(guard, KILL_POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
