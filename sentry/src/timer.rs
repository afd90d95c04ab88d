//! Interval timers: ITIMER_REAL (alarm, setitimer), the CPU-time timers
//! ITIMER_VIRTUAL and ITIMER_PROF, and POSIX timers (timer_create) on the
//! real-time, monotonic and CPU-time clocks.
//!
//! Each armed timer has a host thread that sleeps until it expires, posts
//! its signal to the process (or one thread, SIGEV_THREAD_ID) and re-arms
//! for its interval. Re-arming or deleting bumps the timer's generation and
//! wakes the sleeper, which then leaves.
//!
//! A CPU-time timer's sleeper cannot know when its clock will reach the
//! expiry, but the clock cannot run faster than one second per second per
//! thread: it sleeps the remaining time divided by the number of threads
//! (at most [`CPU_RECHECK`]) and looks again.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::cputime::{CpuClock, CpuTarget, CpuWhich};
use crate::process::{TaskHandle, ThreadGroup};
use crate::signal::Queued;

/// The ids setitimer's timers use in the table (POSIX timers count up
/// from 0).
pub const ITIMER_REAL_ID: i32 = -1;
pub const ITIMER_VIRTUAL_ID: i32 = -2;
pub const ITIMER_PROF_ID: i32 = -3;
/// RLIMIT_CPU's soft limit (SIGXCPU, then once a second) and hard limit
/// (SIGKILL), as timers on the process's user and system time.
const RLIMIT_CPU_SOFT_ID: i32 = -4;
const RLIMIT_CPU_HARD_ID: i32 = -5;

/// Where a timer's expiry goes.
#[derive(Clone)]
pub enum Notify {
    /// Nothing (SIGEV_NONE): the timer only counts.
    None,
    /// A signal to the process.
    Process { sig: i32, value: u64 },
    /// A signal to one thread (SIGEV_THREAD_ID).
    Thread {
        sig: i32,
        value: u64,
        thread: Weak<TaskHandle>,
    },
}

struct Timer {
    /// The clock absolute settings are read against.
    clock: i32,
    /// A CPU-time clock's timer counts its readings instead of real time.
    cpu: Option<CpuClock>,
    notify: Notify,
    generation: u64,
    expiry: Option<Expiry>,
    interval: Duration,
    overrun: u32,
}

#[derive(Clone, Copy)]
enum Expiry {
    /// A real-time instant.
    At(Instant),
    /// A reading of the timer's CPU-time clock.
    Cpu(Duration),
}

#[derive(Default)]
pub struct Timers {
    table: Mutex<(HashMap<i32, Timer>, i32)>,
    changed: Condvar,
}

/// The host kernel's tick, which Linux adds to a CPU-time itimer's first
/// expiry: the resolution of a process's CPUCLOCK_PROF clock.
fn host_tick() -> Duration {
    const PROCESS_PROF_CLOCK: i32 = !0 << 3;
    crate::host::clock_getres(PROCESS_PROF_CLOCK).map_or(Duration::from_millis(4), |(s, ns)| {
        Duration::new(s as u64, ns as u32)
    })
}

/// The longest a CPU-time timer's sleeper waits before it looks at the
/// clock again (threads may have been created meanwhile).
const CPU_RECHECK: Duration = Duration::from_millis(250);

/// Remaining time and interval of a timer (zeros when disarmed).
pub type Setting = (Duration, Duration);

impl Timers {
    /// Create a POSIX timer on `clock` (`cpu` for a CPU-time clock) whose
    /// notification `notify` builds from its id; returns the id.
    pub fn create(
        &self,
        clock: i32,
        cpu: Option<CpuClock>,
        notify: impl FnOnce(i32) -> Notify,
    ) -> Result<i32, abi::Errno> {
        let mut t = self.lock();
        if t.0.len() >= 4096 {
            return Err(abi::Errno::EAGAIN);
        }
        let id = t.1;
        t.1 += 1;
        let notify = notify(id);
        t.0.insert(id, Timer::new(clock, cpu, notify));
        Ok(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashMap<i32, Timer>, i32)> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn setting(id: i32, timer: &Timer, cpu_now: Option<Duration>) -> Setting {
        let left = match timer.expiry {
            None => Duration::ZERO,
            // An armed timer never reports zero remaining (it would read as off).
            Some(Expiry::At(d)) => d
                .saturating_duration_since(Instant::now())
                .max(Duration::from_nanos(1)),
            Some(Expiry::Cpu(e)) => match cpu_now {
                Some(now) if e > now => e - now,
                // Due but not yet fired: a tick for an itimer (Linux's
                // get_cpu_itimer), 1 ns for a POSIX timer.
                _ if id < 0 => host_tick(),
                _ => Duration::from_nanos(1),
            },
        };
        (left, timer.interval)
    }

    /// The reading of timer `id`'s CPU-time clock (None for other timers).
    /// Read without the table locked: reading takes the process's lock.
    pub fn cpu_now(&self, id: i32) -> Option<Duration> {
        let clock = self.lock().0.get(&id).and_then(|t| t.cpu.clone())?;
        clock.read().map(|(now, _)| now)
    }

    pub fn get(&self, id: i32) -> Option<Setting> {
        let now = self.cpu_now(id);
        self.lock().0.get(&id).map(|t| Self::setting(id, t, now))
    }

    pub fn clock(&self, id: i32) -> Option<i32> {
        self.lock().0.get(&id).map(|t| t.clock)
    }

    /// Forget every POSIX timer (exec); setitimer's timers stay.
    pub fn clear_posix(&self) {
        self.lock().0.retain(|&id, _| id < 0);
        self.changed.notify_all();
    }

    pub fn overrun(&self, id: i32) -> Option<u32> {
        self.lock().0.get(&id).map(|t| t.overrun)
    }

    pub fn delete(&self, id: i32) -> bool {
        let gone = self.lock().0.remove(&id).is_some();
        self.changed.notify_all();
        gone
    }

    /// Arm (`value` > 0) or disarm timer `id`, creating setitimer's timers
    /// on first use; returns the previous setting.
    pub fn set(
        self: &Arc<Self>,
        id: i32,
        value: Duration,
        interval: Duration,
        group: &Arc<ThreadGroup>,
    ) -> Option<Setting> {
        if id < 0 {
            self.create_builtin(id, group)?;
        }
        let cpu_now = self.cpu_now(id);
        let (generation, old, on_cpu) = {
            let mut t = self.lock();
            let timer = t.0.get_mut(&id)?;
            let old = Self::setting(id, timer, cpu_now);
            timer.generation += 1;
            timer.interval = interval;
            timer.overrun = 0;
            timer.expiry = if value.is_zero() {
                None
            } else if timer.cpu.is_some() {
                // Linux arms an itimer for a tick more than asked
                // (set_cpu_itimer). A clock that is gone never fires.
                let itimer = matches!(id, ITIMER_VIRTUAL_ID | ITIMER_PROF_ID);
                let extra = if itimer { host_tick() } else { Duration::ZERO };
                cpu_now
                    .and_then(|now| now.checked_add(value)?.checked_add(extra))
                    .map(Expiry::Cpu)
            } else {
                crate::process::deadline_in(value).map(Expiry::At)
            };
            if timer.expiry.is_none() {
                self.changed.notify_all();
                return Some(old);
            }
            (timer.generation, old, timer.cpu.is_some())
        };
        self.changed.notify_all();
        let (timers, group) = (Arc::clone(self), Arc::downgrade(group));
        let spawned = std::thread::Builder::new()
            .name(format!("timer-{id}"))
            .spawn(move || {
                if on_cpu {
                    timers.run_cpu(id, generation, group)
                } else {
                    timers.run(id, generation, group)
                }
            });
        if spawned.is_err() {
            tracing::error!("timer {id}: no thread to run it");
        }
        Some(old)
    }

    /// Create setitimer's timers and RLIMIT_CPU's on first use.
    fn create_builtin(&self, id: i32, group: &Arc<ThreadGroup>) -> Option<()> {
        let itimer = |cpu: Option<CpuWhich>, sig| {
            let clock = if cpu.is_some() {
                libc::CLOCK_PROCESS_CPUTIME_ID
            } else {
                libc::CLOCK_REALTIME
            };
            let cpu = cpu.map(|which| CpuClock {
                target: CpuTarget::Process(Arc::downgrade(group)),
                which,
            });
            Timer::new(clock, cpu, Notify::Process { sig, value: 0 })
        };
        let timer = match id {
            ITIMER_REAL_ID => itimer(None, libc::SIGALRM),
            ITIMER_VIRTUAL_ID => itimer(Some(CpuWhich::Virt), libc::SIGVTALRM),
            ITIMER_PROF_ID => itimer(Some(CpuWhich::Prof), libc::SIGPROF),
            RLIMIT_CPU_SOFT_ID => itimer(Some(CpuWhich::Prof), libc::SIGXCPU),
            RLIMIT_CPU_HARD_ID => itimer(Some(CpuWhich::Prof), libc::SIGKILL),
            _ => return None,
        };
        self.lock().0.entry(id).or_insert(timer);
        Some(())
    }

    /// Enforce RLIMIT_CPU of `soft` and `hard` seconds (u64::MAX: none) on
    /// the process's CPU time from now on.
    pub fn set_cpu_limit(self: &Arc<Self>, soft: u64, hard: u64, group: &Arc<ThreadGroup>) {
        for (id, limit, interval) in [
            (RLIMIT_CPU_SOFT_ID, soft, Duration::from_secs(1)),
            (RLIMIT_CPU_HARD_ID, hard, Duration::ZERO),
        ] {
            let value = if limit == u64::MAX {
                Duration::ZERO
            } else {
                let _ = self.create_builtin(id, group);
                let now = self.cpu_now(id).unwrap_or_default();
                // A limit already passed fires at once.
                Duration::from_secs(limit)
                    .saturating_sub(now)
                    .max(Duration::from_nanos(1))
            };
            if value.is_zero() && !self.lock().0.contains_key(&id) {
                continue;
            }
            self.set(id, value, interval, group);
        }
    }

    /// The sleeper of one arming of timer `id` on a CPU-time clock.
    fn run_cpu(&self, id: i32, generation: u64, group: Weak<ThreadGroup>) {
        loop {
            let Some(group) = group.upgrade().filter(|g| !g.lock().zombie) else {
                return;
            };
            let clock = match self.lock().0.get(&id) {
                Some(timer) if timer.generation == generation => timer.cpu.clone(),
                _ => None,
            };
            // Read before taking the table's lock, as set does.
            let Some((now, threads)) = clock.and_then(|c| c.read()) else {
                return;
            };
            let mut t = self.lock();
            let Some(timer) = t.0.get_mut(&id).filter(|x| x.generation == generation) else {
                return;
            };
            let Some(Expiry::Cpu(expires)) = timer.expiry else {
                return;
            };
            if now < expires {
                let wait = ((expires - now) / threads).clamp(Duration::from_millis(1), CPU_RECHECK);
                drop(group);
                let _ = self
                    .changed
                    .wait_timeout(t, wait)
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let (next, overrun) = next_expiry(expires, timer.interval, now, Duration::checked_add);
            timer.expiry = next.map(Expiry::Cpu);
            timer.overrun = overrun;
            let notify = timer.notify.clone();
            drop(t);
            fire(id, &notify, overrun, &group);
        }
    }

    /// The sleeper of one arming of timer `id` on a real-time clock.
    fn run(&self, id: i32, generation: u64, group: Weak<ThreadGroup>) {
        let mut t = self.lock();
        loop {
            let Some(timer) = t.0.get_mut(&id).filter(|x| x.generation == generation) else {
                return;
            };
            let Some(Expiry::At(deadline)) = timer.expiry else {
                return;
            };
            let now = Instant::now();
            if now < deadline {
                t = self
                    .changed
                    .wait_timeout(t, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            let Some(group) = group.upgrade().filter(|g| !g.lock().zombie) else {
                return;
            };
            // Expired: count the periods missed, fire once, re-arm.
            let (next, overrun) =
                next_expiry(deadline, timer.interval, now, |i, d| i.checked_add(d));
            timer.expiry = next.map(Expiry::At);
            timer.overrun = overrun;
            let notify = timer.notify.clone();
            drop(t);
            fire(id, &notify, overrun, &group);
            t = self.lock();
        }
    }
}

impl Timer {
    fn new(clock: i32, cpu: Option<CpuClock>, notify: Notify) -> Timer {
        Timer {
            clock,
            cpu,
            notify,
            generation: 0,
            expiry: None,
            interval: Duration::ZERO,
            overrun: 0,
        }
    }
}

/// After an expiry at `due` seen at `now`: the next expiry (None for a
/// one-shot timer, or past what `add` can hold) and how many periods were
/// missed.
fn next_expiry<T: Copy + PartialOrd>(
    due: T,
    interval: Duration,
    now: T,
    add: impl Fn(T, Duration) -> Option<T>,
) -> (Option<T>, u32) {
    if interval.is_zero() {
        return (None, 0);
    }
    let mut next = add(due, interval);
    let mut overrun = 0u32;
    while let Some(n) = next.filter(|&n| n <= now) {
        next = add(n, interval);
        overrun = overrun.saturating_add(1);
    }
    (next, overrun)
}

fn fire(id: i32, notify: &Notify, overrun: u32, group: &ThreadGroup) {
    const SI_TIMER: i32 = -2;
    const SI_KERNEL: i32 = 0x80;
    let (sig, value, thread) = match notify {
        Notify::None => return,
        Notify::Process { sig, value } => (*sig, *value, None),
        Notify::Thread { sig, value, thread } => (*sig, *value, Some(thread)),
    };
    let mut info = [0u8; 128];
    info[0..4].copy_from_slice(&sig.to_le_bytes());
    if id < 0 {
        info[8..12].copy_from_slice(&SI_KERNEL.to_le_bytes());
    } else {
        // _timer: si_tid (timer id), si_overrun, si_sigval.
        info[8..12].copy_from_slice(&SI_TIMER.to_le_bytes());
        info[16..20].copy_from_slice(&id.to_le_bytes());
        info[20..24].copy_from_slice(&overrun.to_le_bytes());
        info[24..32].copy_from_slice(&value.to_le_bytes());
    }
    let q = Queued::new(sig, info);
    match thread.and_then(Weak::upgrade) {
        Some(t) => t.post(q),
        None => {
            let _ = group.post(q);
        }
    }
}
