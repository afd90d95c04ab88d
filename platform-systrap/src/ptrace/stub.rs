//! A stub process: creation, syscall injection, teardown.

use abi::Errno;
use platform::{PlatformError, Regs};

use crate::sys::{self, WaitStatus};

/// Where the stub's code page sits: just below the top of the 47-bit user
/// address space, above anything the application may map.
pub const STUB_ADDR: u64 = 0x7fff_fff0_0000;

/// One past the highest user address on x86-64 with 4-level paging.
const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// The stub page's code: `syscall; int3`, so an injected syscall stops the
/// stub with SIGTRAP as soon as it returns.
const STUB_CODE: [u8; 8] = [0x0f, 0x05, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc];

std::arch::global_asm!(
    ".pushsection .text.runsc_ptrace_stub,\"ax\",@progbits",
    ".globl runsc_ptrace_stub_syscall",
    "runsc_ptrace_stub_syscall:",
    "syscall",
    "int3",
    ".popsection",
);

extern "C" {
    /// A `syscall; int3` in the Sentry's own text, present in a fresh stub
    /// (a copy of the Sentry) before the stub page exists.
    fn runsc_ptrace_stub_syscall();
}

pub struct Stub {
    pid: i32,
    /// The host thread that traces the stub; only it may drive it.
    owner: i32,
    /// Where the injected `syscall` instruction is.
    syscall_ip: u64,
    /// Register state to inject from (valid selectors and flags).
    base_regs: Regs,
}

impl Stub {
    /// Clone, trace and strip a new stub. `xsave_size` is what the platform
    /// will hand to `PTRACE_SETREGSET`; the kernel must agree.
    pub fn new(xsave_size: usize) -> Result<Stub, PlatformError> {
        let pid = sys::clone_stopped_stub().map_err(|errno| PlatformError::Host {
            op: "clone stub",
            errno,
        })?;
        let mut stub = Stub {
            pid,
            owner: sys::gettid(),
            syscall_ip: runsc_ptrace_stub_syscall as *const () as usize as u64,
            base_regs: Regs::default(),
        };
        stub.setup(xsave_size)?;
        Ok(stub)
    }

    fn setup(&mut self, xsave_size: usize) -> Result<(), PlatformError> {
        let host = |op| move |errno| PlatformError::Host { op, errno };
        match sys::wait(self.pid).map_err(host("wait for stub"))? {
            WaitStatus::Stopped(libc::SIGSTOP) => {}
            other => {
                return Err(PlatformError::StubDied(format!(
                    "{other:?} before its first stop"
                )))
            }
        }
        let options = libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL;
        sys::ptrace_setoptions(self.pid, options as u64).map_err(host("PTRACE_SETOPTIONS"))?;
        sys::ptrace_getregs(self.pid, &mut self.base_regs).map_err(host("PTRACE_GETREGS"))?;

        let mut xsave = vec![0u8; 1 << 16];
        let kernel_size =
            sys::ptrace_getxstate(self.pid, &mut xsave).map_err(host("PTRACE_GETREGSET"))?;
        if kernel_size != xsave_size {
            return Err(PlatformError::Host {
                op: "XSAVE size (CPUID and ptrace disagree)",
                errno: Errno::EINVAL,
            });
        }

        // The stub page, from the copy of our text the stub starts with.
        let prot = (libc::PROT_READ | libc::PROT_EXEC) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64;
        let page = abi::PAGE_SIZE;
        let ret = self.syscall(libc::SYS_mmap, [STUB_ADDR, page, prot, flags, u64::MAX, 0])?;
        if ret != STUB_ADDR {
            return Err(errno_of("mmap stub page", ret));
        }
        sys::ptrace_pokedata(self.pid, STUB_ADDR, u64::from_le_bytes(STUB_CODE))
            .map_err(host("PTRACE_POKEDATA"))?;
        self.syscall_ip = STUB_ADDR;

        // Drop everything else the stub inherited: the Sentry's image, heap,
        // stacks, and the host vDSO.
        for (start, end) in [(0, STUB_ADDR), (STUB_ADDR + page, TASK_SIZE)] {
            let ret = self.syscall(libc::SYS_munmap, [start, end - start, 0, 0, 0, 0])?;
            if ret != 0 {
                return Err(errno_of("munmap inherited memory", ret));
            }
        }
        Ok(())
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Fails unless called from the host thread that traces the stub.
    pub fn check_owner(&self) -> Result<(), PlatformError> {
        if sys::gettid() == self.owner {
            Ok(())
        } else {
            Err(PlatformError::WrongThread("a ptrace address space"))
        }
    }

    /// Make the stub run syscall `nr` with `args`; returns the raw result
    /// (`-errno` on failure). The stub must be stopped.
    pub fn syscall(&mut self, nr: libc::c_long, args: [u64; 6]) -> Result<u64, PlatformError> {
        self.check_owner()?;
        let host = |op| move |errno| PlatformError::Host { op, errno };
        let regs = Regs {
            rax: nr as u64,
            orig_rax: u64::MAX,
            rdi: args[0],
            rsi: args[1],
            rdx: args[2],
            r10: args[3],
            r8: args[4],
            r9: args[5],
            rip: self.syscall_ip,
            ..self.base_regs
        };
        sys::ptrace_setregs(self.pid, &regs).map_err(host("PTRACE_SETREGS"))?;
        loop {
            sys::ptrace_cont(self.pid).map_err(host("PTRACE_CONT"))?;
            match sys::wait(self.pid).map_err(host("wait for stub"))? {
                WaitStatus::Stopped(libc::SIGTRAP) => break,
                // A signal (an interrupt for a context) reached the stub
                // mid-injection: suppress it and let the syscall finish.
                WaitStatus::Stopped(_) => continue,
                other => {
                    return Err(PlatformError::StubDied(format!(
                        "{other:?} during an injected syscall"
                    )))
                }
            }
        }
        let mut out = Regs::default();
        sys::ptrace_getregs(self.pid, &mut out).map_err(host("PTRACE_GETREGS"))?;
        if out.rip != self.syscall_ip + 3 {
            return Err(PlatformError::StubDied(format!(
                "stub trapped at {:#x}, not after its syscall",
                out.rip
            )));
        }
        Ok(out.rax)
    }
}

pub(super) fn errno_of(op: &'static str, ret: u64) -> PlatformError {
    let errno = Errno::new(-(ret as i64) as i32).unwrap_or(Errno::EIO);
    PlatformError::Host { op, errno }
}

impl Drop for Stub {
    fn drop(&mut self) {
        sys::kill_and_reap(self.pid);
    }
}
