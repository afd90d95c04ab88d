//! Interval timers: ITIMER_REAL (alarm, setitimer) and POSIX timers
//! (timer_create) on the real-time and monotonic clocks, and the
//! CPU-time timers ITIMER_VIRTUAL and ITIMER_PROF.
//!
//! Each armed timer has a host thread that sleeps until it expires, posts
//! its signal to the process (or one thread, SIGEV_THREAD_ID) and re-arms
//! for its interval. Re-arming or deleting bumps the timer's generation and
//! wakes the sleeper, which then leaves.
//!
//! A CPU-time timer's sleeper cannot know when the process's CPU clock
//! will reach the expiry, but it cannot run faster than one second per
//! second per thread: it sleeps the remaining time divided by the number
//! of threads (at most [`CPU_RECHECK`]) and looks again.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::process::{TaskHandle, ThreadGroup};
use crate::signal::Queued;

/// The id `setitimer(ITIMER_REAL)` and `alarm` use in the table.
pub const ITIMER_REAL_ID: i32 = -1;

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
    notify: Notify,
    generation: u64,
    deadline: Option<Instant>,
    interval: Duration,
    overrun: u32,
}

#[derive(Default)]
pub struct Timers {
    table: Mutex<(HashMap<i32, Timer>, i32)>,
    changed: Condvar,
    /// ITIMER_VIRTUAL and ITIMER_PROF, by [`CpuItimer`].
    cpu: Mutex<[CpuTimer; 2]>,
    cpu_changed: Condvar,
}

/// The interval timers that count the process's CPU time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuItimer {
    /// User time; SIGVTALRM.
    Virtual = 0,
    /// User and system time; SIGPROF.
    Prof = 1,
}

impl CpuItimer {
    fn signal(self) -> i32 {
        match self {
            CpuItimer::Virtual => libc::SIGVTALRM,
            CpuItimer::Prof => libc::SIGPROF,
        }
    }

    /// The process CPU time this timer counts.
    fn reading(self, group: &ThreadGroup) -> Duration {
        let t = group.cpu_times();
        match self {
            CpuItimer::Virtual => t.user,
            CpuItimer::Prof => t.total(),
        }
    }
}

#[derive(Clone, Copy, Default)]
struct CpuTimer {
    generation: u64,
    /// The CPU-clock reading at which it fires.
    expires: Option<Duration>,
    interval: Duration,
}

/// The host kernel's tick, which Linux adds to a CPU-time timer's first
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
    /// Create a POSIX timer whose notification `notify` builds from its
    /// id; returns the id.
    pub fn create(
        &self,
        clock: i32,
        notify: impl FnOnce(i32) -> Notify,
    ) -> Result<i32, abi::Errno> {
        let mut t = self.lock();
        if t.0.len() >= 4096 {
            return Err(abi::Errno::EAGAIN);
        }
        let id = t.1;
        t.1 += 1;
        let notify = notify(id);
        t.0.insert(
            id,
            Timer {
                clock,
                notify,
                generation: 0,
                deadline: None,
                interval: Duration::ZERO,
                overrun: 0,
            },
        );
        Ok(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashMap<i32, Timer>, i32)> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn setting(timer: &Timer) -> Setting {
        let left = timer.deadline.map_or(Duration::ZERO, |d| {
            d.saturating_duration_since(Instant::now())
        });
        // An armed timer never reports zero remaining (it would read as off).
        let left = if timer.deadline.is_some() && left.is_zero() {
            Duration::from_nanos(1)
        } else {
            left
        };
        (left, timer.interval)
    }

    pub fn get(&self, id: i32) -> Option<Setting> {
        self.lock().0.get(&id).map(Self::setting)
    }

    pub fn clock(&self, id: i32) -> Option<i32> {
        self.lock().0.get(&id).map(|t| t.clock)
    }

    /// Forget every POSIX timer (exec); ITIMER_REAL stays.
    pub fn clear_posix(&self) {
        self.lock().0.retain(|&id, _| id == ITIMER_REAL_ID);
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

    /// Arm (`value` > 0) or disarm timer `id`, creating ITIMER_REAL on
    /// first use; returns the previous setting.
    pub fn set(
        self: &Arc<Self>,
        id: i32,
        value: Duration,
        interval: Duration,
        group: &Arc<ThreadGroup>,
    ) -> Option<Setting> {
        let generation;
        let old;
        {
            let mut t = self.lock();
            if id == ITIMER_REAL_ID && !t.0.contains_key(&id) {
                let notify = Notify::Process {
                    sig: libc::SIGALRM,
                    value: 0,
                };
                let timer = Timer {
                    clock: libc::CLOCK_REALTIME,
                    notify,
                    generation: 0,
                    deadline: None,
                    interval: Duration::ZERO,
                    overrun: 0,
                };
                t.0.insert(id, timer);
            }
            let timer = t.0.get_mut(&id)?;
            old = Self::setting(timer);
            timer.generation += 1;
            timer.interval = interval;
            timer.overrun = 0;
            timer.deadline = if value.is_zero() {
                None
            } else {
                crate::process::deadline_in(value)
            };
            generation = timer.generation;
            if timer.deadline.is_none() {
                self.changed.notify_all();
                return Some(old);
            }
        }
        self.changed.notify_all();
        let (timers, group) = (Arc::clone(self), Arc::downgrade(group));
        let spawned = std::thread::Builder::new()
            .name(format!("timer-{id}"))
            .spawn(move || timers.run(id, generation, group));
        if spawned.is_err() {
            tracing::error!("timer {id}: no thread to run it");
        }
        Some(old)
    }

    fn cpu_lock(&self) -> std::sync::MutexGuard<'_, [CpuTimer; 2]> {
        self.cpu.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The remaining CPU time and interval of `which`.
    pub fn get_cpu(&self, which: CpuItimer, group: &ThreadGroup) -> Setting {
        let now = which.reading(group);
        let timer = self.cpu_lock()[which as usize];
        Self::cpu_setting(timer, now)
    }

    fn cpu_setting(timer: CpuTimer, now: Duration) -> Setting {
        // Due but not yet fired reads as one tick (Linux's get_cpu_itimer).
        let left =
            timer.expires.map_or(
                Duration::ZERO,
                |e| {
                    if e > now {
                        e - now
                    } else {
                        host_tick()
                    }
                },
            );
        (left, timer.interval)
    }

    /// Arm (`value` > 0) or disarm `which`; returns the previous setting.
    pub fn set_cpu(
        self: &Arc<Self>,
        which: CpuItimer,
        value: Duration,
        interval: Duration,
        group: &Arc<ThreadGroup>,
    ) -> Setting {
        let now = which.reading(group);
        let (old, generation) = {
            let mut t = self.cpu_lock();
            let timer = &mut t[which as usize];
            let old = Self::cpu_setting(*timer, now);
            timer.generation += 1;
            timer.interval = interval;
            // Linux arms for a tick more than asked (set_cpu_itimer).
            timer.expires = (!value.is_zero()).then(|| now + value + host_tick());
            (old, timer.generation)
        };
        self.cpu_changed.notify_all();
        if !value.is_zero() {
            let (timers, group) = (Arc::clone(self), Arc::downgrade(group));
            let spawned = std::thread::Builder::new()
                .name(format!("itimer-{which:?}"))
                .spawn(move || timers.run_cpu(which, generation, group));
            if spawned.is_err() {
                tracing::error!("itimer {which:?}: no thread to run it");
            }
        }
        old
    }

    /// The sleeper of one arming of a CPU-time timer.
    fn run_cpu(&self, which: CpuItimer, generation: u64, group: Weak<ThreadGroup>) {
        loop {
            let Some(group) = group.upgrade().filter(|g| !g.lock().zombie) else {
                return;
            };
            // Read the clock before taking the timer's lock: setitimer
            // reads it the same way round.
            let now = which.reading(&group);
            let threads = group.lock().threads.len().max(1) as u32;
            let mut t = self.cpu_lock();
            let timer = &mut t[which as usize];
            if timer.generation != generation {
                return;
            }
            let Some(expires) = timer.expires else {
                return;
            };
            if now >= expires {
                timer.expires = (!timer.interval.is_zero()).then(|| {
                    let mut next = expires + timer.interval;
                    while next <= now {
                        next += timer.interval;
                    }
                    next
                });
                drop(t);
                const SI_KERNEL: i32 = 0x80;
                let sig = which.signal();
                let info = crate::signal::user_info(sig, SI_KERNEL, 0, 0);
                let _ = group.post(Queued { sig, info });
                continue;
            }
            let wait = ((expires - now) / threads).clamp(Duration::from_millis(1), CPU_RECHECK);
            drop(group);
            let _ = self
                .cpu_changed
                .wait_timeout(t, wait)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The sleeper of one arming of timer `id`.
    fn run(&self, id: i32, generation: u64, group: Weak<ThreadGroup>) {
        let mut t = self.lock();
        loop {
            let Some(timer) = t.0.get_mut(&id).filter(|x| x.generation == generation) else {
                return;
            };
            let Some(deadline) = timer.deadline else {
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
            let mut overrun = 0u32;
            let next = if timer.interval.is_zero() {
                None
            } else {
                let mut next = deadline.checked_add(timer.interval);
                while let Some(n) = next.filter(|&n| n <= now) {
                    next = n.checked_add(timer.interval);
                    overrun = overrun.saturating_add(1);
                }
                next
            };
            timer.deadline = next;
            timer.overrun = overrun;
            let notify = timer.notify.clone();
            drop(t);
            fire(id, &notify, overrun, &group);
            t = self.lock();
        }
    }
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
    if id == ITIMER_REAL_ID {
        info[8..12].copy_from_slice(&SI_KERNEL.to_le_bytes());
    } else {
        // _timer: si_tid (timer id), si_overrun, si_sigval.
        info[8..12].copy_from_slice(&SI_TIMER.to_le_bytes());
        info[16..20].copy_from_slice(&id.to_le_bytes());
        info[20..24].copy_from_slice(&overrun.to_le_bytes());
        info[24..32].copy_from_slice(&value.to_le_bytes());
    }
    let q = Queued { sig, info };
    match thread.and_then(Weak::upgrade) {
        Some(t) => t.post(q),
        None => {
            let _ = group.post(q);
        }
    }
}
