//! CPU time of tasks: user time is the time a task spends in application
//! code (inside the platform's switch), system time is the CPU time of the
//! host thread that runs the task in the Sentry (every task has its own).
//!
//! The stub thread's own CPU clock would measure user time more exactly,
//! but Linux lets a process read only its own threads' CPU clocks
//! (posix-cpu-timers' lookup_task), and reading
//! `/proc/<pid>/task/<tid>/schedstat` on every switch would cost several
//! syscalls. So user time is the monotonic time spent switched in: it
//! includes the host's trap and wake-up path and any time the host had the
//! stub descheduled, and never runs faster than one second per second per
//! thread. System time comes from the host thread's CPU clock, which
//! excludes time blocked in waits.

use std::ops::{Add, AddAssign};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::process::{TaskHandle, ThreadGroup};

/// User and system time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Times {
    pub user: Duration,
    pub sys: Duration,
}

impl Times {
    pub fn total(self) -> Duration {
        self.user + self.sys
    }
}

impl Add for Times {
    type Output = Times;
    fn add(self, o: Times) -> Times {
        Times {
            user: self.user + o.user,
            sys: self.sys + o.sys,
        }
    }
}

impl AddAssign for Times {
    fn add_assign(&mut self, o: Times) {
        *self = *self + o;
    }
}

/// Nanoseconds on the Sentry's monotonic clock, from a fixed start.
fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn host_cpu(clock: i32) -> Duration {
    crate::host::clock_gettime(clock)
        .map_or(Duration::ZERO, |(s, ns)| Duration::new(s as u64, ns as u32))
}

/// User time so far: nanoseconds of finished stretches of application
/// code, and when the current one began (None while in the Sentry).
/// Kept together so a reader never sees a stretch counted twice or not
/// at all.
#[derive(Default)]
struct UserTime {
    done_ns: u64,
    since_ns: Option<u64>,
}

/// One task's CPU time, readable from any thread.
#[derive(Default)]
pub struct ThreadCpu {
    user: Mutex<UserTime>,
    /// The CPU clock of the host thread running the task, 0 until it runs.
    host_clock: AtomicI32,
    /// The host thread's CPU time when it began running the task.
    sys_base_ns: AtomicU64,
    /// The final system time, once the task has exited (`+ 1`; 0 before).
    sys_final_ns: AtomicU64,
}

impl ThreadCpu {
    /// The calling host thread runs this task from now on.
    pub fn bind_to_this_thread(&self) {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        // Linux's MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED).
        let clock = ((!(tid as u32)) << 3) as i32 | 6;
        self.sys_base_ns
            .store(host_cpu(clock).as_nanos() as u64, Ordering::Relaxed);
        self.host_clock.store(clock, Ordering::Release);
    }

    fn user_time(&self) -> std::sync::MutexGuard<'_, UserTime> {
        self.user.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Application code starts running.
    pub fn enter_app(&self) {
        self.user_time().since_ns = Some(now_ns());
    }

    /// Application code stopped (a syscall, fault or interrupt).
    pub fn leave_app(&self) {
        let mut u = self.user_time();
        if let Some(since) = u.since_ns.take() {
            u.done_ns += now_ns().saturating_sub(since);
        }
    }

    pub fn user(&self) -> Duration {
        let u = self.user_time();
        let running = u.since_ns.map_or(0, |since| now_ns().saturating_sub(since));
        Duration::from_nanos(u.done_ns + running)
    }

    /// The task is exiting, on its own host thread: its times stop here,
    /// and its clock no longer names a thread.
    pub fn finish(&self) {
        let sys = self.sys().as_nanos() as u64;
        self.sys_final_ns.store(sys + 1, Ordering::Release);
    }

    pub fn finished(&self) -> bool {
        self.sys_final_ns.load(Ordering::Acquire) != 0
    }

    /// Read from the host thread's CPU clock while the task runs (the
    /// host thread outlives the task's place in its group, from which
    /// other threads find it), its final value afterwards.
    pub fn sys(&self) -> Duration {
        let fin = self.sys_final_ns.load(Ordering::Acquire);
        if fin != 0 {
            return Duration::from_nanos(fin - 1);
        }
        let clock = self.host_clock.load(Ordering::Acquire);
        if clock == 0 {
            return Duration::ZERO;
        }
        let base = Duration::from_nanos(self.sys_base_ns.load(Ordering::Relaxed));
        host_cpu(clock).saturating_sub(base)
    }

    pub fn times(&self) -> Times {
        Times {
            user: self.user(),
            sys: self.sys(),
        }
    }
}

/// Which time a CPU-time clock counts (Linux's CPUCLOCK_WHICH).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuWhich {
    /// User and system time (CPUCLOCK_PROF).
    Prof,
    /// User time only (CPUCLOCK_VIRT).
    Virt,
    /// Time on a CPU (CPUCLOCK_SCHED): user and system time here.
    Sched,
}

impl CpuWhich {
    pub fn of(self, t: Times) -> Duration {
        match self {
            CpuWhich::Virt => t.user,
            CpuWhich::Prof | CpuWhich::Sched => t.total(),
        }
    }
}

/// Whose CPU time a clock counts.
#[derive(Clone)]
pub enum CpuTarget {
    Process(Weak<ThreadGroup>),
    Thread(Weak<TaskHandle>),
}

/// A CPU-time clock, as timers hold it.
#[derive(Clone)]
pub struct CpuClock {
    pub target: CpuTarget,
    pub which: CpuWhich,
}

impl CpuClock {
    /// The clock's reading, and how many threads advance it at once (so a
    /// sleeper waiting for it knows how fast it can move); None once the
    /// thread or process is gone.
    pub fn read(&self) -> Option<(Duration, u32)> {
        match &self.target {
            CpuTarget::Process(g) => {
                let g = g.upgrade()?;
                let threads = g.lock().threads.len().max(1) as u32;
                Some((self.which.of(g.cpu_times()), threads))
            }
            CpuTarget::Thread(t) => {
                let t = t.upgrade().filter(|t| !t.cpu.finished())?;
                Some((self.which.of(t.cpu.times()), 1))
            }
        }
    }
}
