//! The sandbox's CLOCK_MONOTONIC and CLOCK_REALTIME: a line over the host's
//! time-stamp counter, published in the vDSO parameter page so applications
//! read the time without a syscall (upstream's `pkg/sentry/time` and
//! `kernel/vdso.go`; Linux's timekeeping and `vdso/gettimeofday.c`).
//!
//! A background thread calibrates the line against the host's clocks
//! (after 10 ms, then every second). Every update starts the new line where
//! the old one stood at that instant and steers its slope so it meets the
//! host clock (plus [`LEAD`]) one interval later; it never turns back. The
//! Sentry's own clock syscalls read the same page with the same formula
//! ([`vdso::Params::clock_ns`]), so a program mixing the vDSO and syscalls
//! sees one clock. Until the first calibration, and on hosts whose TSC is
//! not invariant, the page stays not ready: the vDSO makes real syscalls and
//! the Sentry answers from the host's clocks.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use abi::Errno;
use vdso::{rdtsc_ordered, Params};

use crate::host;
use crate::memfile::MemoryFile;
use crate::mm::SharedRange;

/// How far the line runs ahead of the host clock. Slightly ahead rather than
/// behind: a program that sleeps until a time the host clock reaches (the
/// Sentry's timers use the host clocks) then never reads an earlier time.
const LEAD_NS: u64 = 2_000;
/// The first calibration's span, and the interval between updates.
const FIRST_SPAN: Duration = Duration::from_millis(10);
const INTERVAL: Duration = Duration::from_secs(1);
/// The most the slope may be slowed below the TSC's measured rate when the
/// line is ahead of the host (500 ppm, NTP's limit).
const MAX_SLOW_PPM: u64 = 500;
/// Fixed-point shift of `Params::mult`.
const SHIFT: u32 = 32;

/// The parameter page of one kernel and the clock it describes.
pub(crate) struct Clock {
    page: Arc<SharedRange>,
}

/// Byte offsets of the page's fields.
mod field {
    use std::mem::offset_of;
    use vdso::Params;
    pub const SEQ: u64 = offset_of!(Params, seq) as u64;
    pub const READY: u64 = offset_of!(Params, ready) as u64;
    pub const BASE_TSC: u64 = offset_of!(Params, base_tsc) as u64;
    pub const BASE_NS: u64 = offset_of!(Params, base_ns) as u64;
    pub const MULT: u64 = offset_of!(Params, mult) as u64;
    pub const SHIFT: u64 = offset_of!(Params, shift) as u64;
    pub const REALTIME_OFFSET: u64 = offset_of!(Params, realtime_offset) as u64;
    pub const GETCPU_RDTSCP: u64 = offset_of!(Params, getcpu_rdtscp) as u64;
}

impl Clock {
    /// A parameter page in `mf`, and the thread that keeps it calibrated.
    pub(crate) fn new(mf: &Arc<MemoryFile>) -> Result<Arc<Clock>, Errno> {
        let page = SharedRange::allocate(mf, vdso::PARAMS_PAGE_SIZE)?;
        let clock = Arc::new(Clock { page });
        clock
            .word(field::GETCPU_RDTSCP)
            .store(u64::from(tsc_aux_is_cpu()), Ordering::Relaxed);
        if invariant_tsc() {
            let weak = Arc::downgrade(&clock);
            if let Err(e) = std::thread::Builder::new()
                .name("clock".into())
                .spawn(move || keep_calibrated(weak))
            {
                // The vDSO then falls back to syscalls; time stays right.
                tracing::warn!("starting the clock thread: {e}; the vDSO will make syscalls");
            }
        } else {
            tracing::info!("host TSC is not invariant; the vDSO will make syscalls");
        }
        Ok(clock)
    }

    /// The page the loader maps below every vDSO.
    pub(crate) fn params_page(&self) -> &Arc<SharedRange> {
        &self.page
    }

    fn word(&self, offset: u64) -> &AtomicU64 {
        self.page.atomic_u64(offset)
    }

    /// A consistent copy of the parameters and a TSC value read while they
    /// were current, as the vDSO reads them.
    fn read(&self) -> (Params, u64) {
        let seq_word = self.word(field::SEQ);
        let get = |f| self.word(f).load(Ordering::Relaxed);
        let mut spins = 0u32;
        loop {
            let seq = seq_word.load(Ordering::Acquire);
            if seq & 1 == 1 {
                // The writer is mid-update; it may have been preempted.
                spins += 1;
                if spins > 100 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            let p = Params {
                seq,
                ready: get(field::READY),
                base_tsc: get(field::BASE_TSC),
                base_ns: get(field::BASE_NS),
                mult: get(field::MULT),
                shift: get(field::SHIFT),
                realtime_offset: get(field::REALTIME_OFFSET) as i64,
                getcpu_rdtscp: get(field::GETCPU_RDTSCP),
            };
            let tsc = rdtsc_ordered();
            fence(Ordering::Acquire);
            if seq_word.load(Ordering::Relaxed) == seq {
                return (p, tsc);
            }
        }
    }

    /// The time of `clock` as (seconds, nanoseconds): REALTIME and
    /// MONOTONIC as the vDSO computes them once calibrated, anything else
    /// (and everything before) from the host.
    pub(crate) fn now(&self, clock: i32) -> Result<(i64, i64), Errno> {
        let (p, tsc) = self.read();
        match p.clock_ns(clock, tsc) {
            Some(ns) => Ok(((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64)),
            None => host::clock_gettime(clock),
        }
    }

    /// Replace the line with the one `next` computes from the TSC value at
    /// which the update takes effect and the line in force until then.
    /// Readers that finish with the old line read the TSC before that value,
    /// so the old line's readings never exceed the new line's start.
    fn update(&self, next: impl FnOnce(u64, &Params) -> Params) {
        let (old, _) = self.read();
        let seq = self.word(field::SEQ);
        seq.store(old.seq + 1, Ordering::Relaxed);
        // The odd count is visible to every reader before the TSC is read.
        fence(Ordering::SeqCst);
        let now = rdtsc_ordered();
        let p = next(now, &old);
        let set = |f, v| self.word(f).store(v, Ordering::Relaxed);
        set(field::BASE_TSC, p.base_tsc);
        set(field::BASE_NS, p.base_ns);
        set(field::MULT, p.mult);
        set(field::SHIFT, p.shift);
        set(field::REALTIME_OFFSET, p.realtime_offset as u64);
        set(field::READY, p.ready);
        seq.store(old.seq + 2, Ordering::Release);
    }
}

/// One reading of the host clocks paired with the TSC.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// The TSC just before the clocks were read.
    tsc: u64,
    /// CLOCK_MONOTONIC in ns, read after `tsc` (so at most a few hundred
    /// nanoseconds later than the instant `tsc` names).
    mono: u64,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in ns.
    realtime_offset: i64,
}

fn host_ns(clock: i32) -> Option<u64> {
    let (s, ns) = host::clock_gettime(clock).ok()?;
    Some(s as u64 * 1_000_000_000 + ns as u64)
}

/// The tightest of a few readings (a preempted one is useless).
fn sample() -> Option<Sample> {
    let mut best: Option<(u64, Sample)> = None;
    for _ in 0..5 {
        let tsc = rdtsc_ordered();
        let mono = host_ns(libc::CLOCK_MONOTONIC)?;
        let real = host_ns(libc::CLOCK_REALTIME)?;
        let mono2 = host_ns(libc::CLOCK_MONOTONIC)?;
        let spread = rdtsc_ordered() - tsc;
        // The realtime reading lies between the two monotonic ones.
        let realtime_offset = real as i64 - (mono / 2 + mono2 / 2) as i64;
        let s = Sample {
            tsc,
            mono,
            realtime_offset,
        };
        if best.is_none_or(|(b, _)| spread < b) {
            best = Some((spread, s));
        }
    }
    best.map(|(_, s)| s)
}

/// Nanoseconds per tick between two samples, as `mult >> SHIFT`.
fn rate(a: &Sample, b: &Sample) -> Option<u64> {
    let ticks = b.tsc.checked_sub(a.tsc).filter(|&t| t > 0)?;
    let ns = b.mono.checked_sub(a.mono)?;
    let mult = (u128::from(ns) << SHIFT) / u128::from(ticks);
    u64::try_from(mult).ok().filter(|&m| m > 0)
}

fn scale(ticks: u64, mult: u64) -> u64 {
    ((u128::from(ticks) * u128::from(mult)) >> SHIFT) as u64
}

/// The host clock at TSC value `tsc`, extrapolated from `s` at `mult`.
fn host_at(s: &Sample, tsc: u64, mult: u64) -> u64 {
    s.mono + scale(tsc.saturating_sub(s.tsc), mult)
}

/// The new line from TSC `now` on, given the old line and a fresh sample:
/// start where the old line stands (or at the host clock if the old line
/// fell behind it: a step forward), and meet the host clock plus the lead
/// one interval later.
fn steer(now: u64, old: &Params, s: &Sample, mult: u64, realtime_offset: i64) -> Params {
    let target_now = host_at(s, now, mult) + LEAD_NS;
    let start = match old.monotonic_ns(now) {
        Some(at) => at.max(target_now),
        None => target_now,
    };
    let interval_ns = INTERVAL.as_nanos() as u64;
    let interval_ticks = ((u128::from(interval_ns) << SHIFT) / u128::from(mult)) as u64;
    // start >= target_now, so this is at most `mult`: the line only slows.
    let want = ((u128::from((target_now + interval_ns).saturating_sub(start)) << SHIFT)
        / u128::from(interval_ticks.max(1))) as u64;
    let slowest = mult - mult / 1_000_000 * MAX_SLOW_PPM;
    Params {
        seq: old.seq,
        ready: 1,
        base_tsc: now,
        base_ns: start,
        mult: want.clamp(slowest, mult),
        shift: u64::from(SHIFT),
        realtime_offset,
        getcpu_rdtscp: old.getcpu_rdtscp,
    }
}

/// The clock thread: calibrate, publish, refresh every interval; ends when
/// the kernel (its Clock) is gone.
fn keep_calibrated(clock: Weak<Clock>) {
    let Some(first) = sample() else {
        tracing::warn!("reading the host clocks failed; the vDSO will make syscalls");
        return;
    };
    let mut wait = FIRST_SPAN;
    let mut realtime_offset = first.realtime_offset;
    loop {
        std::thread::sleep(wait);
        wait = INTERVAL;
        let Some(clock) = clock.upgrade() else {
            return;
        };
        let Some(s) = sample() else {
            continue;
        };
        // The longer the baseline, the better the rate.
        let Some(mult) = rate(&first, &s) else {
            continue;
        };
        // REALTIME - MONOTONIC only changes when the host's time is set;
        // ignore the readings' jitter so REALTIME does not wobble.
        if (s.realtime_offset - realtime_offset).abs() > 1_000 {
            realtime_offset = s.realtime_offset;
        }
        clock.update(|now, old| steer(now, old, &s, mult, realtime_offset));
    }
}

/// Whether the TSC ticks at a constant rate in every C-state (CPUID
/// 0x80000007 EDX bit 8, "invariant TSC"; Linux's constant_tsc and
/// nonstop_tsc).
fn invariant_tsc() -> bool {
    use std::arch::x86_64::__cpuid;
    let max = __cpuid(0x8000_0000).eax;
    max >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
}

/// Whether `rdtscp` exists and its TSC_AUX holds the CPU number, as Linux
/// sets it (`(node << 12) | cpu`), so the vDSO's getcpu agrees with the
/// getcpu syscall.
fn tsc_aux_is_cpu() -> bool {
    use std::arch::x86_64::{__cpuid, __rdtscp};
    let max = __cpuid(0x8000_0000).eax;
    if max < 0x8000_0001 || __cpuid(0x8000_0001).edx & (1 << 27) == 0 {
        return false;
    }
    // A migration between the two readings can make them differ; a few
    // tries settle it.
    (0..10).any(|_| {
        let mut aux = 0u32;
        // SAFETY: rdtscp exists (checked above) and writes only `aux`.
        unsafe { __rdtscp(&mut aux) };
        host::getcpu().is_ok_and(|(cpu, node)| aux == (node << 12) | cpu)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_at(tsc: u64, mono: u64) -> Sample {
        Sample {
            tsc,
            mono,
            realtime_offset: 0,
        }
    }

    /// 1 ns per tick.
    const ONE: u64 = 1 << SHIFT;

    #[test]
    fn a_line_behind_the_host_steps_forward() {
        let old = Params {
            ready: 1,
            base_tsc: 0,
            base_ns: 0,
            mult: ONE,
            shift: 32,
            ..Params::default()
        };
        let s = sample_at(1_000, 10_000);
        let p = steer(2_000, &old, &s, ONE, 0);
        assert_eq!(p.base_ns, 11_000 + LEAD_NS);
        assert_eq!(p.mult, ONE);
    }

    #[test]
    fn a_line_ahead_of_the_host_slows_but_never_turns_back() {
        let old = Params {
            ready: 1,
            base_tsc: 0,
            base_ns: 1_000_000,
            mult: ONE,
            shift: 32,
            ..Params::default()
        };
        let s = sample_at(0, 0);
        let now = 5_000;
        let p = steer(now, &old, &s, ONE, 0);
        // Continuous at the switch.
        assert_eq!(p.monotonic_ns(now), old.monotonic_ns(now));
        // Slower than the host, by at most the limit.
        assert!(p.mult < ONE && p.mult >= ONE - ONE / 1_000_000 * MAX_SLOW_PPM);
        assert!(p.monotonic_ns(now + 1_000_000_000) > p.monotonic_ns(now));
    }

    #[test]
    fn a_line_slightly_ahead_meets_the_host_after_one_interval() {
        let old = Params {
            ready: 1,
            base_tsc: 0,
            base_ns: 10_000 + LEAD_NS,
            mult: ONE,
            shift: 32,
            ..Params::default()
        };
        let s = sample_at(0, 0);
        let p = steer(0, &old, &s, ONE, 0);
        let later = INTERVAL.as_nanos() as u64;
        let at = p.monotonic_ns(later).unwrap();
        let host = later + LEAD_NS;
        assert!(at.abs_diff(host) < 10, "{at} vs {host}");
    }

    #[test]
    fn the_first_line_starts_at_the_host_clock() {
        let s = sample_at(100, 5_000);
        let p = steer(200, &Params::default(), &s, ONE, 42);
        assert_eq!(p.base_ns, 5_100 + LEAD_NS);
        assert_eq!((p.ready, p.realtime_offset), (1, 42));
    }

    #[test]
    fn the_page_tracks_the_host_clock() {
        let mf = Arc::new(MemoryFile::new().unwrap());
        let clock = Clock::new(&mf).unwrap();
        if !invariant_tsc() {
            return;
        }
        // Calibrated within a second.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while clock.read().0.ready == 0 {
            assert!(std::time::Instant::now() < deadline, "never calibrated");
            std::thread::sleep(Duration::from_millis(5));
        }
        let ns = |(s, n): (i64, i64)| s as u64 * 1_000_000_000 + n as u64;
        let mut last = 0;
        for _ in 0..1000 {
            let before = host_ns(libc::CLOCK_MONOTONIC).unwrap();
            let ours = ns(clock.now(libc::CLOCK_MONOTONIC).unwrap());
            let real = ns(clock.now(libc::CLOCK_REALTIME).unwrap());
            let host_real = host_ns(libc::CLOCK_REALTIME).unwrap();
            assert!(ours >= last, "monotonic went back: {last} -> {ours}");
            last = ours;
            // Within 100 µs of the host (the first line is 10 ms old).
            assert!(ours.abs_diff(before) < 100_000, "{ours} vs {before}");
            assert!(real.abs_diff(host_real) < 100_000, "{real} vs {host_real}");
        }
    }
}
