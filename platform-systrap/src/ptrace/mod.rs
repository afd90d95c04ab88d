//! The ptrace platform: application code runs in a traced stub process and
//! every syscall it makes stops it (`PTRACE_SYSEMU`) without running on the
//! host.
//!
//! Layout of a stub's address space: one read-only, executable page of stub
//! code at [`STUB_ADDR`] (a `syscall; int3` used to inject `mmap`/`munmap`)
//! and the application's mappings of the Sentry's memory file below it.
//! Everything the stub inherited from the Sentry at clone time is unmapped
//! before the first application instruction runs.
//!
//! ptrace ties a tracee to the one host thread that traces it, so an address
//! space and the contexts switching into it must be driven from the host
//! thread that created the address space; other threads get
//! [`PlatformError::WrongThread`]. That is enough for one thread per address
//! space; the multi-threaded model (one traced stub thread per Sentry thread,
//! as upstream) arrives with clone in the Sentry.

mod stub;

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use abi::Errno;
use platform::{
    AccessType, AddressSpace, ArchState, Context, FpState, Interrupter, Platform, PlatformError,
    Regs, SignalInfo, SwitchEvent, SIGNAL_INTERRUPT,
};

use crate::sys::{self, WaitStatus};
pub use stub::STUB_ADDR;

/// `SIGTRAP | 0x80`: a syscall stop under `PTRACE_O_TRACESYSGOOD`.
const SYSCALL_STOP: i32 = libc::SIGTRAP | 0x80;

/// The ptrace platform (`--platform=ptrace`).
pub struct PtracePlatform {
    xsave_size: usize,
}

impl PtracePlatform {
    /// Checks that the host lets us trace: makes and discards one stub.
    pub fn new() -> Result<PtracePlatform, PlatformError> {
        let xsave_size = sys::xsave_size().max(FpState::MIN_SIZE);
        let probe = stub::Stub::new(xsave_size)?;
        drop(probe);
        Ok(PtracePlatform { xsave_size })
    }
}

impl Platform for PtracePlatform {
    fn name(&self) -> &'static str {
        "ptrace"
    }

    fn min_user_address(&self) -> u64 {
        abi::PAGE_SIZE * 16
    }

    fn max_user_address(&self) -> u64 {
        STUB_ADDR
    }

    fn new_address_space(&self) -> Result<Box<dyn AddressSpace>, PlatformError> {
        Ok(Box::new(PtraceAddressSpace {
            stub: stub::Stub::new(self.xsave_size)?,
        }))
    }

    fn new_context(&self) -> Result<Box<dyn Context>, PlatformError> {
        Ok(Box::new(PtraceContext {
            interrupter: Arc::new(PtraceInterrupter::default()),
            fp_dirty: true,
            last_pid: 0,
        }))
    }

    fn initial_state(&self) -> ArchState {
        ArchState {
            regs: Regs {
                cs: 0x33,
                ss: 0x2b,
                eflags: 0x202,
                ..Regs::default()
            },
            fp: FpState::reset(self.xsave_size),
        }
    }
}

struct PtraceAddressSpace {
    stub: stub::Stub,
}

impl AddressSpace for PtraceAddressSpace {
    fn map_file(
        &mut self,
        addr: u64,
        len: u64,
        file: BorrowedFd<'_>,
        offset: u64,
        access: AccessType,
        precommit: bool,
    ) -> Result<(), PlatformError> {
        let mut flags = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
        if precommit {
            flags |= libc::MAP_POPULATE as u64;
        }
        let ret = self.stub.syscall(
            libc::SYS_mmap,
            [
                addr,
                len,
                u64::from(access.to_prot()),
                flags,
                file.as_raw_fd() as u64,
                offset,
            ],
        )?;
        if ret != addr {
            return Err(stub::errno_of("mmap in stub", ret));
        }
        Ok(())
    }

    fn unmap(&mut self, addr: u64, len: u64) -> Result<(), PlatformError> {
        let ret = self
            .stub
            .syscall(libc::SYS_munmap, [addr, len, 0, 0, 0, 0])?;
        if ret != 0 {
            return Err(stub::errno_of("munmap in stub", ret));
        }
        Ok(())
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

#[derive(Default)]
struct PtraceInterrupter {
    pending: AtomicBool,
    /// The stub thread running this context's code, 0 when none.
    running: AtomicI32,
}

impl Interrupter for PtraceInterrupter {
    fn interrupt(&self) {
        self.pending.store(true, Ordering::SeqCst);
        let tid = self.running.load(Ordering::SeqCst);
        if tid > 0 {
            // The stub is single-threaded: its thread id is its pid. A stop
            // with this signal makes `switch` return; it is never delivered.
            let _ = sys::tgkill(tid, tid, SIGNAL_INTERRUPT);
        }
    }
}

struct PtraceContext {
    interrupter: Arc<PtraceInterrupter>,
    /// The FP state in `ArchState` differs from the stub's.
    fp_dirty: bool,
    /// The stub this context last ran in; another stub needs the full state.
    last_pid: i32,
}

impl PtraceContext {
    fn stub(space: &mut dyn AddressSpace) -> Result<&mut stub::Stub, PlatformError> {
        let space = space
            .as_any_mut()
            .downcast_mut::<PtraceAddressSpace>()
            .expect("a ptrace context runs only in ptrace address spaces");
        space.stub.check_owner()?;
        Ok(&mut space.stub)
    }
}

impl Context for PtraceContext {
    fn switch(
        &mut self,
        space: &mut dyn AddressSpace,
        state: &mut ArchState,
    ) -> Result<SwitchEvent, PlatformError> {
        let stub = Self::stub(space)?;
        let pid = stub.pid();
        if self.interrupter.pending.swap(false, Ordering::SeqCst) {
            return Ok(SwitchEvent::Interrupt);
        }
        if self.last_pid != pid {
            self.fp_dirty = true;
            self.last_pid = pid;
        }
        sys::ptrace_setregs(pid, &state.regs).map_err(|e| host("PTRACE_SETREGS", e))?;
        if self.fp_dirty {
            sys::ptrace_setxstate(pid, state.fp.as_bytes())
                .map_err(|e| host("PTRACE_SETREGSET", e))?;
            self.fp_dirty = false;
        }
        self.interrupter.running.store(pid, Ordering::SeqCst);
        let resumed = sys::ptrace_sysemu(pid);
        let status = resumed.and_then(|()| sys::wait(pid));
        self.interrupter.running.store(0, Ordering::SeqCst);
        let status = status.map_err(|e| host("PTRACE_SYSEMU", e))?;
        match status {
            WaitStatus::Stopped(SYSCALL_STOP) => {
                sys::ptrace_getregs(pid, &mut state.regs).map_err(|e| host("PTRACE_GETREGS", e))?;
                Ok(SwitchEvent::Syscall)
            }
            WaitStatus::Stopped(_) => {
                sys::ptrace_getregs(pid, &mut state.regs).map_err(|e| host("PTRACE_GETREGS", e))?;
                let (signo, code, addr) =
                    sys::ptrace_getsiginfo(pid).map_err(|e| host("PTRACE_GETSIGINFO", e))?;
                // Signals raised by the kernel for what the instruction did
                // have a positive si_code; anything sent by a process (our
                // own interrupt, or a stray kill from the host) does not, and
                // only means "come back to the Sentry".
                if code <= 0 {
                    self.interrupter.pending.store(false, Ordering::SeqCst);
                    return Ok(SwitchEvent::Interrupt);
                }
                self.pull_full_state(space, state)?;
                Ok(SwitchEvent::Signal {
                    info: SignalInfo { signo, code, addr },
                    access: None,
                })
            }
            WaitStatus::Exited(code) => Err(PlatformError::StubDied(format!("exit status {code}"))),
            WaitStatus::Signaled(sig) => {
                Err(PlatformError::StubDied(format!("killed by signal {sig}")))
            }
        }
    }

    fn pull_full_state(
        &mut self,
        space: &mut dyn AddressSpace,
        state: &mut ArchState,
    ) -> Result<(), PlatformError> {
        let stub = Self::stub(space)?;
        sys::ptrace_getxstate(stub.pid(), state.fp.as_bytes_mut())
            .map_err(|e| host("PTRACE_GETREGSET", e))?;
        Ok(())
    }

    fn full_state_changed(&mut self) {
        self.fp_dirty = true;
    }

    fn interrupter(&self) -> Arc<dyn Interrupter> {
        self.interrupter.clone()
    }
}

fn host(op: &'static str, errno: Errno) -> PlatformError {
    if errno == Errno::ESRCH || errno == Errno::ECHILD {
        PlatformError::StubDied(format!("{op}: {errno}"))
    } else {
        PlatformError::Host { op, errno }
    }
}
