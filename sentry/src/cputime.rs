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
//!
//! Reading the clock around every switch costs two `rdtsc` per syscall
//! (about 65 ns on a VM that scales the TSC). A platform that spins on its
//! handoff (systrap) reads the counter there instead, just after it
//! resumes the thread and in the loop that sees the event, where the read
//! overlaps the cache-line transfer it waits for anyway; user time is
//! then the interval between those readings (`Context::app_tsc`).

use std::ops::{Add, AddAssign};
use std::sync::atomic::{fence, AtomicI32, AtomicU64, Ordering};
use std::sync::{OnceLock, Weak};
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

/// The clock user time is counted in. Its ticks are TSC cycles where the
/// TSC is invariant (a constant rate on every CPU, as the host kernel's
/// clocksource uses it): reading it costs about half a vDSO clock read,
/// and two are taken per syscall. Elsewhere a tick is a nanosecond of
/// the monotonic clock.
struct TickClock {
    tsc: bool,
    epoch: Instant,
    epoch_tsc: u64,
}

fn tick_clock() -> &'static TickClock {
    static CLOCK: OnceLock<TickClock> = OnceLock::new();
    CLOCK.get_or_init(|| TickClock {
        tsc: invariant_tsc(),
        epoch: Instant::now(),
        epoch_tsc: rdtsc(),
    })
}

/// CPUID 0x8000_0007, EDX bit 8: the TSC runs at a constant rate in
/// every P-, C- and T-state.
fn invariant_tsc() -> bool {
    use std::arch::x86_64::__cpuid;
    __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
}

fn rdtsc() -> u64 {
    // SAFETY: rdtsc reads the time-stamp counter and touches no memory.
    unsafe { std::arch::x86_64::_rdtsc() }
}

/// Now, in ticks (never 0).
fn now_ticks() -> u64 {
    let c = tick_clock();
    if c.tsc {
        rdtsc().max(1)
    } else {
        c.epoch.elapsed().as_nanos() as u64 + 1
    }
}

/// `ticks` as nanoseconds, at the TSC rate measured since the epoch.
fn ticks_to_ns(ticks: u64) -> u64 {
    let c = tick_clock();
    if !c.tsc {
        return ticks;
    }
    let ns = c.epoch.elapsed().as_nanos() as f64;
    let cycles = rdtsc().saturating_sub(c.epoch_tsc).max(1) as f64;
    (ticks as f64 * (ns / cycles)) as u64
}

fn host_cpu(clock: i32) -> Duration {
    crate::host::clock_gettime(clock)
        .map_or(Duration::ZERO, |(s, ns)| Duration::new(s as u64, ns as u32))
}

/// User time so far, in ticks: finished stretches of application code,
/// and when the current one began (0 while in the Sentry). Only the
/// task's own thread writes it; readers on other threads use `seq` (odd
/// while a write is under way) to see the two words from one moment, so a
/// stretch is never counted twice or not at all.
#[derive(Default)]
struct UserTime {
    seq: AtomicU64,
    done: AtomicU64,
    since: AtomicU64,
}

impl UserTime {
    /// The writer's side (the task's own thread only).
    fn write(&self, done: u64, since: u64) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.done.store(done, Ordering::Relaxed);
        self.since.store(since, Ordering::Relaxed);
        self.seq.store(s + 2, Ordering::Release);
    }

    /// (done, since), as one write left them.
    fn read(&self) -> (u64, u64) {
        loop {
            let s = self.seq.load(Ordering::Acquire);
            let done = self.done.load(Ordering::Relaxed);
            let since = self.since.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if s.is_multiple_of(2) && self.seq.load(Ordering::Relaxed) == s {
                return (done, since);
            }
            std::hint::spin_loop();
        }
    }
}

/// Whether ticks are time-stamp counter cycles, so that a platform's
/// counter readings (`Context::app_tsc`) can stand in for the Sentry's.
pub fn ticks_are_tsc() -> bool {
    tick_clock().tsc
}

/// One task's CPU time, readable from any thread.
#[derive(Default)]
pub struct ThreadCpu {
    user: UserTime,
    /// When application code last stopped, in ticks, for
    /// [`ThreadCpu::enter_app_unstamped`] (written by the task's thread).
    last_stop: AtomicU64,
    /// The largest user time reported, in nanoseconds: the tick rate is
    /// re-measured at each reading, and a reading never goes back.
    user_reported_ns: AtomicU64,
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

    /// Application code starts running (called by the task's thread).
    pub fn enter_app(&self) {
        let (done, _) = self.user.read();
        self.user.write(done, now_ticks());
    }

    /// Application code starts running, but the platform will say when
    /// (`leave_app_at`): no clock read here. Readers meanwhile count the
    /// running stretch from when application code last stopped, a little
    /// early; `user` never goes back when the exact figure comes.
    pub fn enter_app_unstamped(&self) {
        let (done, _) = self.user.read();
        let last = self.last_stop.load(Ordering::Relaxed);
        self.user
            .write(done, if last != 0 { last } else { now_ticks() });
    }

    /// Application code stopped, having run from tick `ran.0` to `ran.1`
    /// (`None`: it did not run) since `enter_app_unstamped`.
    pub fn leave_app_at(&self, ran: Option<(u64, u64)>) {
        let (mut done, _) = self.user.read();
        if let Some((start, stop)) = ran {
            done += stop.saturating_sub(start);
            self.last_stop.store(stop.max(1), Ordering::Relaxed);
        }
        self.user.write(done, 0);
    }

    /// Application code stopped (a syscall, fault or interrupt).
    pub fn leave_app(&self) {
        let (done, since) = self.user.read();
        if since != 0 {
            self.user.write(done + now_ticks().saturating_sub(since), 0);
        }
    }

    pub fn user(&self) -> Duration {
        let (done, since) = self.user.read();
        let running = if since == 0 {
            0
        } else {
            now_ticks().saturating_sub(since)
        };
        let ns = ticks_to_ns(done + running);
        let prev = self.user_reported_ns.fetch_max(ns, Ordering::Relaxed);
        Duration::from_nanos(ns.max(prev))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// With the platform's stamps, a stretch counts exactly what the
    /// platform measured, one the application did not run in counts
    /// nothing, and readers during a stretch see it from the last stop on.
    #[test]
    fn platform_stamps_count_what_ran() {
        let cpu = ThreadCpu::default();
        cpu.enter_app_unstamped();
        cpu.leave_app_at(Some((1_000, 4_000)));
        assert_eq!(cpu.user.read(), (3_000, 0));
        cpu.enter_app_unstamped();
        assert_eq!(cpu.user.read(), (3_000, 4_000));
        cpu.leave_app_at(None);
        assert_eq!(cpu.user.read(), (3_000, 0));
        cpu.enter_app_unstamped();
        cpu.leave_app_at(Some((9_000, 9_500)));
        assert_eq!(cpu.user.read(), (3_500, 0));
        // A reading between stamps never makes `user` go back later.
        cpu.enter_app_unstamped();
        let during = cpu.user();
        cpu.leave_app_at(Some((9_600, 9_700)));
        assert!(cpu.user() >= during);
    }
}
