//! A stub process: creation, syscall injection, new stub threads, teardown.

use abi::Errno;
use platform::{PlatformError, Regs};

use crate::sys::{self, WaitStatus};

/// Where the stub's code page sits: just below the top of the 47-bit user
/// address space, above anything the application may map.
pub const STUB_ADDR: u64 = 0x7fff_fff0_0000;

/// One past the highest user address on x86-64 with 4-level paging.
const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// The stub page's code.
///
/// ```text
/// 0x00  syscall           injected syscalls start here,
/// 0x02  int3              and stop the stub when they return
/// 0x08  syscall           injected clone() of a new stub thread starts here:
/// 0x0a  test %rax,%rax    the parent (rax = child id)
/// 0x0d  je 0x40
/// 0x0f  int3              stops;
/// 0x18  syscall           injected fork of the stub (a template) starts here:
/// 0x1a  test %rax,%rax    the parent
/// 0x1d  je 0x70
/// 0x1f  int3              stops;
/// 0x40  prctl(PR_SET_PDEATHSIG, SIGKILL)   a new stub thread: dies with its
/// 0x51  getppid; cmp %eax,%r9d; jne 0x66   parent, exits if that is gone
/// 0x5d  mov $34,%eax; syscall; jmp 0x5d    already (r9 = its pid), sleeps in
///                                          pause() until a thread seizes and
///                                          interrupts it (spinning there
///                                          took the CPU its seizer needed)
/// 0x66  exit
/// 0x70  prctl(PR_SET_PDEATHSIG, SIGKILL)   a forked stub: the same (fork
/// 0x81  getppid; cmp %eax,%r9d; jne 0x96   cleared the signal), then sleeps
/// 0x8d  mov $34,%eax; syscall; jmp 0x8d    in pause() (not spinning: it may
///                                          wait a while for its tracer on a
///                                          busy machine) until a thread
///                                          seizes and interrupts it
/// 0x96  exit
/// ```
///
/// Until a tracer seizes them, stub threads and forked stubs are nobody's
/// tracees, so only the parent-death signal ties them to the Sentry.
const STUB_CODE: [u8; 160] = [
    0x0f, 0x05, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, // 0x00
    0x0f, 0x05, 0x48, 0x85, 0xc0, 0x74, 0x31, 0xcc, // 0x08
    0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, // 0x10
    0x0f, 0x05, 0x48, 0x85, 0xc0, 0x74, 0x51, 0xcc, // 0x18
    0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, // 0x20
    0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, // 0x28
    0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, // 0x30
    0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, // 0x38
    0xb8, 0x9d, 0x00, 0x00, 0x00, 0xbf, 0x01, 0x00, // 0x40
    0x00, 0x00, 0xbe, 0x09, 0x00, 0x00, 0x00, 0x0f, // 0x48
    0x05, 0xb8, 0x6e, 0x00, 0x00, 0x00, 0x0f, 0x05, // 0x50
    0x44, 0x39, 0xc8, 0x75, 0x09, 0xb8, 0x22, 0x00, // 0x58
    0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7, 0xb8, 0x3c, // 0x60
    0x00, 0x00, 0x00, 0x0f, 0x05, 0xcc, 0xcc, 0xcc, // 0x68
    0xb8, 0x9d, 0x00, 0x00, 0x00, 0xbf, 0x01, 0x00, // 0x70
    0x00, 0x00, 0xbe, 0x09, 0x00, 0x00, 0x00, 0x0f, // 0x78
    0x05, 0xb8, 0x6e, 0x00, 0x00, 0x00, 0x0f, 0x05, // 0x80
    0x44, 0x39, 0xc8, 0x75, 0x09, 0xb8, 0x22, 0x00, // 0x88
    0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7, 0xb8, 0x3c, // 0x90
    0x00, 0x00, 0x00, 0x0f, 0x05, 0xcc, 0xcc, 0xcc, // 0x98
];
const SYSCALL_ENTRY: u64 = 0x00;
const CLONE_ENTRY: u64 = 0x08;
const FORK_ENTRY: u64 = 0x18;
/// Where an injected syscall stops: just after its `int3`.
const SYSCALL_STOP_IP: u64 = 0x03;
const CLONE_STOP_IP: u64 = 0x10;
const FORK_STOP_IP: u64 = 0x20;

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

/// The first thread of a stub process, through which syscalls are injected.
pub struct Stub {
    pid: i32,
    /// The host thread that traces the stub; only it may drive it.
    owner: i32,
    /// Register state to inject from (valid selectors and flags).
    base_regs: Regs,
    /// The stub page is in place.
    ready: bool,
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
            base_regs: Regs::default(),
            ready: false,
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
        for (i, word) in STUB_CODE.chunks_exact(8).enumerate() {
            let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            sys::ptrace_pokedata(self.pid, STUB_ADDR + 8 * i as u64, word)
                .map_err(host("PTRACE_POKEDATA"))?;
        }
        self.ready = true;

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

    /// Fork this stub (it must be stripped and stopped): a new process
    /// with a copy of the stub's few mappings and the Sentry's file table,
    /// a child of the Sentry (`CLONE_PARENT`), asleep in the stub page
    /// (`pause()`) untraced until [`Stub::adopt`] seizes it. Returns its pid. Copying
    /// this small process is far cheaper than cloning and stripping the
    /// Sentry again, so a stripped stub serves as the template of new ones.
    pub fn fork_process(&mut self) -> Result<i32, PlatformError> {
        let flags = (libc::CLONE_PARENT | libc::CLONE_FILES | libc::SIGCHLD) as u64;
        // r9 (unused by clone): the parent the child must find, us.
        let parent = u64::from(std::process::id());
        let ret = self.inject(
            STUB_ADDR + FORK_ENTRY,
            STUB_ADDR + FORK_STOP_IP,
            libc::SYS_clone,
            [flags, 0, 0, 0, 0, parent],
        )?;
        match i32::try_from(ret as i64) {
            Ok(pid) if pid > 0 => Ok(pid),
            _ => Err(errno_of("fork stub", ret)),
        }
    }

    /// Trace, from the calling thread, a stub made by
    /// [`fork_process`](Self::fork_process), and stop it for injection.
    /// On failure the process is killed.
    pub fn adopt(pid: i32) -> Result<Stub, PlatformError> {
        let host = |op| move |errno| PlatformError::Host { op, errno };
        let mut stub = Stub {
            pid,
            owner: sys::gettid(),
            base_regs: Regs::default(),
            ready: true,
        };
        // Dropping `stub` from here on kills and reaps the process.
        let options = libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL;
        sys::ptrace_seize(pid, options as u64).map_err(host("PTRACE_SEIZE forked stub"))?;
        sys::ptrace_interrupt(pid).map_err(host("PTRACE_INTERRUPT forked stub"))?;
        const EVENT_STOP: i32 = libc::SIGTRAP | (libc::PTRACE_EVENT_STOP << 8);
        match sys::wait(pid).map_err(host("wait for forked stub"))? {
            WaitStatus::Stopped(EVENT_STOP) => {}
            other => {
                return Err(PlatformError::StubDied(format!(
                    "forked stub: {other:?} instead of its first stop"
                )))
            }
        }
        sys::ptrace_getregs(pid, &mut stub.base_regs).map_err(host("PTRACE_GETREGS"))?;
        Ok(stub)
    }

    /// Fails unless called from the host thread that traces the stub.
    fn check_owner(&self) -> Result<(), PlatformError> {
        if sys::gettid() == self.owner {
            Ok(())
        } else {
            Err(PlatformError::WrongThread("a ptrace stub"))
        }
    }

    /// Make the stub run syscall `nr` with `args`; returns the raw result
    /// (`-errno` on failure). The stub must be stopped.
    pub fn syscall(&mut self, nr: libc::c_long, args: [u64; 6]) -> Result<u64, PlatformError> {
        if self.ready {
            self.inject(
                STUB_ADDR + SYSCALL_ENTRY,
                STUB_ADDR + SYSCALL_STOP_IP,
                nr,
                args,
            )
        } else {
            let ip = runsc_ptrace_stub_syscall as *const () as usize as u64;
            self.inject(ip, ip + 3, nr, args)
        }
    }

    /// Start a new stub thread: a process sharing this stub's memory and
    /// file table, asleep in the stub page until a host thread seizes it.
    /// Returns its id.
    pub fn new_thread(&mut self) -> Result<i32, PlatformError> {
        // No CLONE_THREAD: each stub thread is its own thread group, so a
        // stop or signal aimed at one never touches another. No exit
        // signal. A child of the Sentry (CLONE_PARENT), so that its tracer's
        // wait reaps it: as the stub's child it stayed a zombie until the
        // stub died.
        let flags =
            (libc::CLONE_PARENT | libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES) as u64;
        // r9 (unused by clone): the parent the child must find, us.
        let parent = u64::from(std::process::id());
        let ret = self.inject(
            STUB_ADDR + CLONE_ENTRY,
            STUB_ADDR + CLONE_STOP_IP,
            libc::SYS_clone,
            [flags, 0, 0, 0, 0, parent],
        )?;
        match i32::try_from(ret as i64) {
            Ok(tid) if tid > 0 => Ok(tid),
            _ => Err(errno_of("clone stub thread", ret)),
        }
    }

    /// Run syscall `nr` with `args` in the stub's first thread, starting at
    /// `ip` (a `syscall` instruction in stub code) and expecting the `int3`
    /// stop to leave the instruction pointer at `stop_ip`. Returns the raw
    /// result. Other platforms (systrap) use it with entry points of their
    /// own code.
    pub(crate) fn inject(
        &mut self,
        ip: u64,
        stop_ip: u64,
        nr: libc::c_long,
        args: [u64; 6],
    ) -> Result<u64, PlatformError> {
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
            rip: ip,
            ..self.base_regs
        };
        sys::ptrace_setregs(self.pid, &regs).map_err(host("PTRACE_SETREGS"))?;
        loop {
            sys::ptrace_cont(self.pid).map_err(host("PTRACE_CONT"))?;
            match sys::wait(self.pid).map_err(host("wait for stub"))? {
                WaitStatus::Stopped(libc::SIGTRAP) => break,
                // A signal reached the stub mid-injection: suppress it and
                // let the syscall finish.
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
        if out.rip != stop_ip {
            return Err(PlatformError::StubDied(format!(
                "stub trapped at {:#x}, not after its syscall",
                out.rip
            )));
        }
        Ok(out.rax)
    }
}

/// A stub made by [`Stub::fork_process`] that nobody traces yet: killed
/// and reaped when dropped before [`Unadopted::adopt`] takes it.
pub(crate) struct Unadopted(i32);

impl Unadopted {
    pub(crate) fn new(pid: i32) -> Unadopted {
        Unadopted(pid)
    }

    /// Trace it from the calling thread ([`Stub::adopt`], which kills
    /// what it fails to trace).
    pub(crate) fn adopt(mut self) -> Result<Stub, PlatformError> {
        Stub::adopt(std::mem::take(&mut self.0))
    }
}

impl Drop for Unadopted {
    fn drop(&mut self) {
        if self.0 > 0 {
            sys::kill_and_reap(self.0);
        }
    }
}

pub(crate) fn errno_of(op: &'static str, ret: u64) -> PlatformError {
    let errno = Errno::new(-(ret as i64) as i32).unwrap_or(Errno::EIO);
    PlatformError::Host { op, errno }
}

impl Drop for Stub {
    fn drop(&mut self) {
        sys::kill_and_reap(self.pid);
    }
}
