//! How the Sentry runs application code: the platform boundary.
//!
//! The traits mirror upstream's `pkg/sentry/platform/platform.go`: a
//! [`Platform`] makes [`AddressSpace`]s (where application memory is mapped)
//! and [`Context`]s (one per task, the thing that runs application code until
//! it makes a syscall, faults, or is interrupted). Implementations live in
//! their own crates (`platform-systrap` holds systrap and its ptrace
//! fallback); the Sentry only sees these traits.

#![forbid(unsafe_code)]

mod regs;

use std::os::fd::BorrowedFd;
use std::sync::Arc;

pub use regs::{ArchState, FpState, Regs};

/// The host signal reserved for [`Interrupter::interrupt`] (upstream's
/// `platform.SignalInterrupt`). The Sentry never forwards it to the
/// application as a host signal.
pub const SIGNAL_INTERRUPT: i32 = 17; // SIGCHLD

/// Kinds of memory access; also the protection of a mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AccessType {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl AccessType {
    pub const NONE: AccessType = AccessType {
        read: false,
        write: false,
        execute: false,
    };
    pub const READ: AccessType = AccessType {
        read: true,
        write: false,
        execute: false,
    };
    pub const READ_WRITE: AccessType = AccessType {
        read: true,
        write: true,
        execute: false,
    };

    /// From `PROT_*` bits; bits other than READ/WRITE/EXEC are ignored.
    pub fn from_prot(prot: u32) -> AccessType {
        AccessType {
            read: prot & 1 != 0,
            write: prot & 2 != 0,
            execute: prot & 4 != 0,
        }
    }

    /// As `PROT_*` bits.
    pub fn to_prot(self) -> u32 {
        u32::from(self.read) | u32::from(self.write) << 1 | u32::from(self.execute) << 2
    }

    /// Whether every access in `other` is allowed by `self`.
    pub fn allows(self, other: AccessType) -> bool {
        (self.read || !other.read)
            && (self.write || !other.write)
            && (self.execute || !other.execute)
    }

    /// Both sets of accesses.
    pub fn union(self, other: AccessType) -> AccessType {
        AccessType {
            read: self.read || other.read,
            write: self.write || other.write,
            execute: self.execute || other.execute,
        }
    }
}

/// The signal information of a fault or signal the application took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalInfo {
    pub signo: i32,
    pub code: i32,
    /// `si_addr` for faults (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP).
    pub addr: u64,
}

/// Why [`Context::switch`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchEvent {
    /// The application made a syscall; its number is `state.regs.orig_rax`
    /// and the Sentry writes the result to `state.regs.rax`.
    Syscall,
    /// The application took a fault or signal. For SIGSEGV, `access` says
    /// what kind of access faulted, when the platform knows.
    Signal {
        info: SignalInfo,
        access: Option<AccessType>,
    },
    /// [`Interrupter::interrupt`] was called (may be spurious).
    Interrupt,
}

/// Failures of the platform itself (not of the application).
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// A host syscall the platform needs failed.
    #[error("{op}: {errno}")]
    Host { op: &'static str, errno: abi::Errno },
    /// The stub process running the address space is gone.
    #[error("the stub process exited unexpectedly ({0})")]
    StubDied(String),
    /// The call came from a host thread that may not drive this object.
    #[error("{0} used from a host thread other than its owner")]
    WrongThread(&'static str),
}

/// A way to pull a [`Context`] out of application code from another thread.
pub trait Interrupter: Send + Sync {
    /// Make the current or next `switch` return [`SwitchEvent::Interrupt`].
    fn interrupt(&self);
}

/// Where one application's memory is mapped. Shared by every task that runs
/// in it, so its methods take `&self`.
pub trait AddressSpace: Send + Sync {
    /// Map `len` bytes of `file` at `offset` to `addr`, shared, replacing
    /// whatever was mapped there. `addr`, `offset` and `len` are page-aligned
    /// and `len > 0`; `precommit` asks to populate the pages now.
    fn map_file(
        &self,
        addr: u64,
        len: u64,
        file: BorrowedFd<'_>,
        offset: u64,
        access: AccessType,
        precommit: bool,
    ) -> Result<(), PlatformError>;

    /// Remove every mapping in `[addr, addr+len)` (page-aligned, `len > 0`).
    fn unmap(&self, addr: u64, len: u64) -> Result<(), PlatformError>;

    /// This address space's state for the platform's contexts (downcast by
    /// the platform that made it).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// Runs one task's application code.
pub trait Context: Send {
    /// Run `state` in `space` until the application makes a syscall, takes a
    /// fault or signal, or is interrupted. On return `state.regs` is current;
    /// the FP state is current only after [`Context::pull_full_state`].
    fn switch(
        &mut self,
        space: &dyn AddressSpace,
        state: &mut ArchState,
    ) -> Result<SwitchEvent, PlatformError>;

    /// Make all of `state` current after a switch. On the syscall fast path
    /// a platform may leave `state.fp` stale, and every general register
    /// but the syscall's own (number, arguments, rip, rsp, rcx and the
    /// result): code that reads or sets another register calls this first,
    /// or replaces the whole state and says so with
    /// [`Context::full_state_changed`].
    fn pull_full_state(
        &mut self,
        space: &dyn AddressSpace,
        state: &mut ArchState,
    ) -> Result<(), PlatformError>;

    /// The Sentry rewrote `state` wholesale (exec, sigreturn): push all of
    /// it, FP included, on the next switch.
    fn full_state_changed(&mut self);

    /// A handle that interrupts this context from any thread.
    fn interrupter(&self) -> Arc<dyn Interrupter>;

    /// The Sentry is about to spend a while computing for the current
    /// event without blocking (a long read of a file in memory): a
    /// platform whose application thread waits for the answer may keep
    /// it waiting awake rather than let it sleep.
    fn expect_busy(&mut self) {}

    /// Whether the last [`SwitchEvent::Syscall`] came from a `syscall`
    /// instruction the platform trapped (so the two bytes before `rip`
    /// are that instruction and the site may be patched), as opposed to a
    /// trampoline of an already patched site.
    fn syscall_trapped(&self) -> bool {
        false
    }

    /// Whether this context reports, through [`Context::app_tsc`], when
    /// the application ran in each switch.
    fn reports_app_tsc(&self) -> bool {
        false
    }

    /// The time-stamp counter just after the last [`switch`](Self::switch)
    /// resumed the application and as it saw the application stop; None
    /// when the application did not run in it. Platforms that spin on the
    /// handoff read the counter there, where it costs nothing, so the
    /// Sentry need not read it around every switch for CPU time.
    fn app_tsc(&self) -> Option<(u64, u64)> {
        None
    }
}

/// What a platform offers for syscall patching (upstream's "usertrap"):
/// the Sentry may rewrite an application's `mov $nr,%eax; syscall`
/// (`b8 nn nn nn nn 0f 05`; the Sentry's `patch` module lists the other
/// shapes) into `jmp *abs32` (`ff 24 25` + the 4-byte
/// address of an 8-byte slot holding a trampoline's address), the
/// trampoline loading `rcx` with the return address (the instruction after
/// the old `syscall`) ORed with `nr << 48` and jumping to [`entry`]. The
/// platform then reports [`SwitchEvent::Syscall`] with exactly the state a
/// trapped `syscall` would have had.
///
/// [`entry`]: SyscallPatching::entry
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallPatching {
    /// Where the trampoline table goes in every address space, and its
    /// length: below 2 GiB and below [`Platform::min_user_address`], so
    /// the application can neither map over it nor unmap it. The third
    /// byte of every address in it is an invalid opcode in 64-bit mode, so
    /// the byte that was the `syscall`'s first faults (SIGILL).
    pub table_addr: u64,
    pub table_len: u64,
    /// The platform's trampoline entry.
    pub entry: u64,
    /// A second entry for sites whose number is not an immediate (glibc's
    /// `syscall(2)`, which ends `mov 8(%rsp),%r9; syscall`): `rcx` = the
    /// return address, `rax` = the number, as the old `syscall` had it.
    pub entry_rax: u64,
}

/// A way of running application code, selected by `--platform`.
pub trait Platform: Send + Sync {
    /// The name `--platform` takes.
    fn name(&self) -> &'static str;

    /// Whether `AddressSpace` can read and write application memory itself.
    /// Every platform here says no: the Sentry copies through its own mapping
    /// of the memory file, as upstream's do.
    fn supports_address_space_io(&self) -> bool {
        false
    }

    /// Whether `switch` can report that the CPU was preempted.
    fn detects_cpu_preemption(&self) -> bool {
        false
    }

    /// Granularity of eager mappings; 0 when cost does not depend on size.
    fn map_unit(&self) -> u64 {
        0
    }

    /// Lowest address the application may map.
    fn min_user_address(&self) -> u64;

    /// One past the highest address the application may map.
    fn max_user_address(&self) -> u64;

    /// How many contexts may run application code at once (`usize::MAX` for
    /// no limit).
    fn concurrency_count(&self) -> usize {
        usize::MAX
    }

    /// A new, empty address space.
    fn new_address_space(&self) -> Result<std::sync::Arc<dyn AddressSpace>, PlatformError>;

    /// A new context for one task.
    fn new_context(&self) -> Result<Box<dyn Context>, PlatformError>;

    /// The initial register state of a fresh task (segment selectors and
    /// flags valid for this platform, FP in its reset state).
    fn initial_state(&self) -> ArchState;

    /// Syscall patching, when this platform does it and it is enabled.
    fn syscall_patching(&self) -> Option<SyscallPatching> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_types_round_trip_prot_bits() {
        for prot in 0..8 {
            assert_eq!(AccessType::from_prot(prot).to_prot(), prot);
        }
        assert!(AccessType::READ_WRITE.allows(AccessType::READ));
        assert!(!AccessType::READ.allows(AccessType::READ_WRITE));
        assert_eq!(
            AccessType::READ.union(AccessType::from_prot(4)).to_prot(),
            5
        );
    }
}
