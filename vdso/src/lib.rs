//! The vDSO the Sentry maps into every application address space
//! (upstream's `vdso/` and `pkg/sentry/loader/vdso.go`; Linux's
//! `arch/x86/entry/vdso`).
//!
//! [`IMAGE`] is a shared object built from `src/vdso.c` that exports
//! `__vdso_clock_gettime`, `__vdso_gettimeofday`, `__vdso_time`,
//! `__vdso_getcpu` and `__vdso_clock_getres` (and their unprefixed aliases)
//! at version `LINUX_2.6`. It is linked at 0 and needs no relocation. It
//! reads a [`Params`] page that must be mapped read-only directly below it;
//! only the Sentry writes that page.

/// The vDSO image, an ELF shared object, to be copied to a page-aligned
/// address with the parameter page directly below.
pub const IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vdso.so"));

/// The size of the parameter page.
pub const PARAMS_PAGE_SIZE: u64 = 4096;

/// The parameter page, at the start of the page below the image. Writers
/// follow the sequence-count protocol: make `seq` odd, write the fields,
/// make `seq` even (and larger). Readers retry while `seq` is odd or
/// changed. `src/vdso.c` pins the same offsets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params {
    /// Odd while the Sentry is updating the fields below.
    pub seq: u64,
    /// Nonzero once the fields below describe the clock; until then every
    /// call falls back to a syscall.
    pub ready: u64,
    /// A TSC value and CLOCK_MONOTONIC at that value, in nanoseconds.
    pub base_tsc: u64,
    pub base_ns: u64,
    /// Nanoseconds per TSC tick, as `mult / 2^shift`.
    pub mult: u64,
    pub shift: u64,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds.
    pub realtime_offset: i64,
    /// Nonzero if `rdtscp`'s TSC_AUX holds `(node << 12) | cpu`, so getcpu
    /// can be answered without a syscall.
    pub getcpu_rdtscp: u64,
}

const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(Params, seq) == 0);
    assert!(offset_of!(Params, ready) == 8);
    assert!(offset_of!(Params, base_tsc) == 16);
    assert!(offset_of!(Params, base_ns) == 24);
    assert!(offset_of!(Params, mult) == 32);
    assert!(offset_of!(Params, shift) == 40);
    assert!(offset_of!(Params, realtime_offset) == 48);
    assert!(offset_of!(Params, getcpu_rdtscp) == 56);
    assert!(std::mem::size_of::<Params>() == 64);
};

/// The clocks the vDSO answers itself.
pub const CLOCK_REALTIME: i32 = 0;
pub const CLOCK_MONOTONIC: i32 = 1;

impl Params {
    /// CLOCK_MONOTONIC in nanoseconds at TSC value `tsc`, computed exactly as
    /// the vDSO computes it; None until the parameters are ready.
    pub fn monotonic_ns(&self, tsc: u64) -> Option<u64> {
        if self.ready == 0 {
            return None;
        }
        let delta = tsc.saturating_sub(self.base_tsc);
        let scaled = (u128::from(delta) * u128::from(self.mult)) >> self.shift;
        Some(self.base_ns.wrapping_add(scaled as u64))
    }

    /// The time of `clock` (REALTIME or MONOTONIC) in nanoseconds at `tsc`,
    /// as the vDSO computes it; None for other clocks or before ready.
    pub fn clock_ns(&self, clock: i32, tsc: u64) -> Option<u64> {
        let mono = self.monotonic_ns(tsc)?;
        match clock {
            CLOCK_MONOTONIC => Some(mono),
            CLOCK_REALTIME => Some(mono.wrapping_add(self.realtime_offset as u64)),
            _ => None,
        }
    }
}

/// The TSC, read after every earlier instruction has completed and before
/// any later one starts (the vDSO's `lfence; rdtsc; lfence`).
pub fn rdtsc_ordered() -> u64 {
    use std::arch::x86_64::{_mm_lfence, _rdtsc};
    // SAFETY: lfence and rdtsc touch no memory; both exist on every x86-64.
    unsafe {
        _mm_lfence();
        let t = _rdtsc();
        _mm_lfence();
        t
    }
}

#[cfg(test)]
mod tests;
