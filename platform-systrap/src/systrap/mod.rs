//! The systrap platform, first slice: application syscalls and faults reach
//! the Sentry through a signal handler in the stub and shared memory,
//! without a ptrace stop (upstream's `pkg/sentry/platform/systrap`, design
//! in `gvisor-protocols.md` section 8; the mechanism is ours).
//!
//! # Pieces
//!
//! - **Stub process.** The platform makes one *template* stub (when the
//!   first address space is asked for, so it is in the container's cgroup)
//!   as the ptrace platform makes its stub ([`crate::ptrace::stub::Stub`]:
//!   a `CLONE_FILES` child of the Sentry, stripped of everything it
//!   inherited), maps the stub code and its request pages into it, and
//!   injects one `clone` that starts its *syscall thread*. That is the
//!   only use of ptrace.
//! - **Syscall thread.** Each stub has one: a thread of stub code that
//!   waits (futex) on a request page mapped read-only in the stub (only the
//!   Sentry writes it), makes the requested `mmap`, `munmap` or `clone` of
//!   a new stub thread, and writes the result and the request's sequence
//!   number to a reply page. Each address space is a fork of the template
//!   made by the template's syscall thread: the copy of that thread maps
//!   the new address space's own request pages and serves them. So
//!   address-space changes, new stub threads and new address spaces take
//!   no ptrace stop.
//! - **Stub threads** outlive their context: when a task ends while its
//!   thread waits at an event, the thread is parked and the next context
//!   of that address space takes it over, writing its whole state into the
//!   waiting signal frame (a thread per `pthread_create` is otherwise an
//!   injected clone plus the setup below).
//! - **Stub code** ([`code`]): our own assembly, copied into a memory file
//!   mapped read-only and executable at [`code::CODE_ADDR`], with read-only
//!   data after it (the `sigaction`, the seccomp program, each slot's
//!   `stack_t`). A new stub thread runs its setup from there: parent-death
//!   signal, `sigaltstack` (with `SS_AUTODISARM`, so the handler always
//!   starts at the top of its stack whatever the application did to `rsp`),
//!   handlers for SIGSYS, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP and SIGCHLD,
//!   `PR_SET_NO_NEW_PRIVS`, and the seccomp filter. The setup code uses no
//!   stack and reads only registers and read-only pages, so a concurrently
//!   running application thread cannot change what gets installed.
//! - **Seccomp filter** ([`code::filter`]): every syscall returns
//!   `SECCOMP_RET_TRAP` unless it is x86-64, issued from the stub code
//!   page, and one of `rt_sigreturn`, `futex(FUTEX_WAIT|FUTEX_WAKE)`,
//!   `arch_prctl(ARCH_SET_FS|ARCH_SET_GS)`. 32-bit `int 0x80` traps too and
//!   is reported as a SIGSYS signal, not as a syscall.
//! - **Slots.** Each stub thread owns a 64 KiB slot of its own memory file,
//!   mapped at the same time in the stub (at a slot-aligned address above
//!   [`layout::SLOTS_BASE`]) and in the Sentry. Page 0 holds the message
//!   words ([`layout`]); the rest is the thread's signal stack. The handler
//!   finds its slot by rounding its stack pointer down.
//! - **Handoff.** The handler does not copy registers: it records where the
//!   kernel put the `siginfo` and `ucontext` (both on the signal stack,
//!   hence in shared memory), sets the state word to EVENT and wakes the
//!   Sentry only if the Sentry sleeps; then spins a while on the state word
//!   and falls back to `FUTEX_WAIT`. The Sentry reads the registers and,
//!   when asked ([`Context::pull_full_state`]), the XSAVE area straight out
//!   of the signal frame, writes the next registers (and FP state when it
//!   changed) straight back into it, sets RESUME (waking the stub only if it
//!   sleeps), and the handler returns into the application with
//!   `rt_sigreturn`. A new thread's first trap is a refused `getpid` at the
//!   end of its setup, so every entry into application code, the first
//!   included, is a signal return (or, after a patched syscall, the
//!   trampoline's return, below). Both sides spin (adaptive budgets, `Spin`) before sleeping; the
//!   futex words are shared (not process-private) because the two sides
//!   are different processes.
//! - **fs/gs base** are not in a signal frame: the Sentry asks the handler
//!   to `arch_prctl(ARCH_SET_FS/GS)` when the value it wants differs from
//!   what the thread has, and, when the CPU lets user space change them
//!   (`FSGSBASE`), the handler reads them back with `rdfsbase/rdgsbase` on
//!   every trap.
//! - **Syscall patching** (upstream's "usertrap"; off with
//!   `--systrap-disable-syscall-patching`, and on hosts without `FSGSBASE`).
//!   The Sentry (`sentry/src/patch.rs`) rewrites a trapped
//!   `mov $nr,%eax; syscall` (and two more shapes, glibc's read among
//!   them: see there) into `jmp *abs32` through an entry of a
//!   per-process table at [`layout::TABLE_ADDR`] (below
//!   [`layout::MIN_USER_ADDR`], the lowest address the application may
//!   map, so it can neither map over nor unmap it; a fork copies it, an
//!   exec drops it). The entry loads `rcx` with the return address and
//!   `nr << 48` and jumps to the trampoline in the stub code. The
//!   trampoline finds its slot through the GS base, which the platform
//!   keeps at the slot while the application's GS base is 0 (the handler
//!   reports the slot as 0); with any other GS base it faults at a known
//!   `ud2`, which `switch` turns into the syscall (slow but exact). It
//!   then fills in what the kernel would have put in a signal frame at the
//!   bottom of the slot's signal stack (every register, the flags from
//!   `lahf`/`seto` taken before it changed them, `rcx`/`r11` as a
//!   `syscall` leaves them); the parts that never change (a SIGSYS
//!   `siginfo`, segments, the kernel's XSAVE software-reserved bytes,
//!   copied from the thread's first frame) the Sentry wrote once. A round
//!   trip moves as few cache lines as it can: the trampoline stores a
//!   register only when the frame holds another value, the Sentry writes
//!   back only what changed, and rax (the number going in, the result
//!   coming back) travels in the message words' first line with the state
//!   word ([`layout::MSG_RAX`]), so a call that changes no other register
//!   moves that one line each way. The Sentry reads only that line and
//!   the syscall's own registers, which the trampoline also keeps in the
//!   next line ([`layout::MSG_ARGS`]); the frame's other registers it
//!   reads when it needs them ([`Context::pull_full_state`]), so those the
//!   application changes from call to call stay in the stub's cache. It leaves the FP state in the
//!   registers (nothing in the stub touches them): the Sentry needs it
//!   only to deliver a signal, fork or move the thread, and then asks the
//!   parked thread for it (SAVE_FP in the state word), which XSAVEs it
//!   into the frame and reports again. It hands the frame over exactly as
//!   the handler does, so `switch` cannot tell the two apart (except for
//!   [`Context::syscall_trapped`], which says which sites are worth
//!   patching). It returns without a syscall: `xrstor` when the Sentry
//!   wrote FP state, `popfq`, every register, and a jump through the GS
//!   base (`rt_sigreturn` from the frame when the Sentry changes the GS
//!   base). The trampoline runs with signals unblocked: the handler drops
//!   an interrupt that lands in it before its event is published (the
//!   event returns to the Sentry anyway, and the Sentry's interrupt stays
//!   pending for its next switch) and, once the Sentry has resumed the
//!   thread, reports the interrupt in the trampoline's place with the
//!   trampoline's frame as the interrupted state (and the FP registers,
//!   which the kernel saved in its own frame, copied into it unless the
//!   Sentry had written FP state there).
//! - **Interrupts** send SIGCHLD ([`platform::SIGNAL_INTERRUPT`]) with
//!   `tgkill` to the stub thread while it runs a context; its handler
//!   reports the event like any other, and `switch` returns
//!   [`SwitchEvent::Interrupt`].
//! - **Death and reaping.** Stub threads are cloned with
//!   `CLONE_PARENT_SETTID` and `CLONE_CHILD_CLEARTID` on a word of their
//!   slot, so the Sentry sees a dead thread as a zero there (or, when
//!   nothing else used the memory, which leaves the word alone, through
//!   `waitid(WNOWAIT)`); its waits time out periodically to look. Every
//!   stub process and thread is a child of the template's tracer thread
//!   (`CLONE_PARENT` all the way down), whose death kills them all by
//!   their parent-death signal; the Sentry kills and reaps each when its
//!   context or address space goes.
//!
//! Unlike the ptrace platform, no host thread owns a stub thread once it
//! runs: a context may be switched from any host thread.
//!
//! # Trust
//!
//! The slots are writable by the application (they are in its address
//! space), so everything the Sentry reads from them is untrusted: pointers
//! are bounds-checked against the slot, values only ever become the
//! application's own registers. What the application can reach from the
//! stub page is what the filter allows from there, which touches no host
//! resource beyond its own threads (`stub_code_grants_no_syscalls` jumps to
//! every byte of the stub code). One application thread can still rewrite
//! another's parked signal frame (mask, signal stack) in the instant
//! between the Sentry's write and the `rt_sigreturn`; the Sentry checks
//! both on every resume and rewrites what differs, and the worst outcome
//! is that application thread dying or wedging, which the Sentry sees as
//! a dead stub thread or clears by dropping the context. A SAVE_FP the application writes into a state
//! word only makes that thread save its own FP state into its own frame.
//! The interrupt handler's copy of the FP state into the trampoline's
//! frame is bounded by the trampoline's XSAVE area, whatever size the
//! slot's message words claim.
//!
//! # Not done yet (issue 4)
//!
//! - The reply page is writable by the application, like upstream's: a
//!   thread could fake an early reply to an `munmap`, keeping a mapping a
//!   few microseconds after the Sentry believes it gone.
//! - No pool of ready address spaces: each is forked from the template
//!   when asked for.
//! - Spin budgets adapt only to how quickly answers come (see `Spin`),
//!   not to how busy the host's CPUs are.
//! - A full trampoline table (1959 sites and 44 read sites per process)
//!   stops patching;
//!   entries of unmapped code are not reused, and code moved by `mremap`
//!   keeps jumping to entries that return to its old address.
//! - The Sentry's own seccomp allow-list (not built yet) will need
//!   `memfd_create`, shared `futex`, `tgkill`, `wait4` and `mmap` of the
//!   slots for this platform.

mod code;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use abi::Errno;
use platform::{
    AccessType, AddressSpace, ArchState, Context, FpState, Interrupter, Platform, PlatformError,
    Regs, SignalInfo, SwitchEvent, SyscallPatching, SIGNAL_INTERRUPT,
};

use crate::interrupt::StubInterrupter;
use crate::ptrace::stub::{self, Stub};
use crate::sys::{self, SharedMem};
use layout::*;

/// Addresses and the layout of a slot, shared with the stub code.
mod layout {
    pub const PAGE: u64 = 4096;
    /// The stub code page; the application may map only below it.
    pub const SYSTRAP_BASE: u64 = 0x7ffe_0000_0000;
    /// The first slot.
    pub const SLOTS_BASE: u64 = SYSTRAP_BASE + 0x10_0000;
    /// Bytes per slot; slots are aligned to their size.
    pub const SLOT_SIZE: u64 = 0x1_0000;
    /// Stub threads per address space.
    pub const MAX_SLOTS: usize = 4096;

    // Message words at the start of a slot. The first cache line holds
    // everything a syscall's round trip must carry (the state word, the
    // thread pointers, the syscall number and its result), so that a call
    // which changes no other register moves just this line each way.
    /// EVENT (stub wrote one), RESUME (Sentry wrote the next state) or
    /// SAVE_FP (Sentry asks for the FP state); both sides' futex word.
    pub const MSG_STATE: u64 = 0x00;
    pub const MSG_STUB_SLEEPING: u64 = 0x04;
    pub const MSG_SENTRY_SLEEPING: u64 = 0x08;
    /// The Sentry wrote FP state into the frame for this resume (u32):
    /// the trampoline's return loads it (a signal return always does).
    pub const MSG_FP_LOAD: u64 = 0x0c;
    pub const MSG_SIGINFO_PTR: u64 = 0x10;
    pub const MSG_UCTX_PTR: u64 = 0x18;
    pub const MSG_FS_BASE: u64 = 0x20;
    pub const MSG_GS_BASE: u64 = 0x28;
    pub const MSG_SET_FS: u64 = 0x30;
    pub const MSG_SET_GS: u64 = 0x34;
    /// The trampoline frame's rax (the syscall number at an event, the
    /// result at a resume), which its `ucontext` slot does not hold: every
    /// return through `rt_sigreturn` from that frame first copies it there.
    pub const MSG_RAX: u64 = 0x38;
    /// The software-reserved bytes (`struct _fpx_sw_bytes`, 48) of the
    /// XSAVE area in the kernel's signal frames for this thread, copied by
    /// the Sentry from its first frame (also into the trampoline's frame,
    /// where XSAVE leaves them alone), for the trampoline's XSAVE mask.
    pub const MSG_FPSW: u64 = 0x40;
    /// How many TSC cycles the stub spins for the Sentry's answer before it
    /// sleeps (u32), set by the Sentry when it changes (see `Spin`).
    pub const MSG_SPIN_CYCLES: u64 = 0x70;
    /// The stub thread's id while it lives (set and cleared by the kernel).
    pub const MSG_TID: u64 = 0x74;
    /// Nonzero while the Sentry works on the event without blocking (u32):
    /// a stub whose spin budget runs out spins up to two budgets more.
    pub const MSG_BUSY: u64 = 0x78;
    /// A patched syscall's own registers, which the trampoline copies here
    /// (each only when it differs) besides its frame: rdi, rsi, rdx, r10,
    /// r8, r9, rip and rsp, one cache line. The Sentry reads just this
    /// line and the first at such an event, and the frame's registers
    /// only when it needs them (`Context::pull_full_state`): a register
    /// the application changes between calls (a loop counter in rbx, the
    /// flags) then stays in the stub's cache instead of crossing to the
    /// Sentry's core and back on every call.
    pub const MSG_ARGS: u64 = 0x80;
    /// Where the trampoline's return jumps (through the GS base), written
    /// by the stub on every return: in a line the Sentry reads only when
    /// the thread died (the setup error below).
    pub const MSG_RET_RIP: u64 = 0xc0;
    /// The failing syscall's result if the thread's setup failed.
    pub const MSG_SETUP_ERR: u64 = 0xc8;

    /// The syscall trampoline's signal frame, at the bottom of the signal
    /// stack (the kernel puts a signal's frame at its top, so an interrupt
    /// arriving while the trampoline runs leaves it alone): `pretcode`,
    /// `struct ucontext`, `siginfo`, then the XSAVE area (64-byte aligned).
    pub const TF_PRET: u64 = 0x1040;
    pub const TF_UC: u64 = TF_PRET + 8;
    pub const TF_INFO: u64 = 0x1180;
    pub const TF_FP: u64 = 0x1200;
    /// Where the trampoline's frame must end (the XSAVE area and its
    /// closing magic word); a larger XSAVE area disables patching.
    pub const TF_END: u64 = 0x4000;
    /// `uc_mcontext` in `struct ucontext`.
    pub const UC_MCONTEXT_OFF: u64 = 40;

    /// The syscall trampoline table (see `platform::SyscallPatching`):
    /// every address in it has 0x06 (invalid in 64-bit mode) as its third
    /// byte, and it lies below the lowest address the application may map.
    pub const TABLE_ADDR: u64 = 0x6_0000;
    pub const TABLE_LEN: u64 = 0x1_0000;
    /// The lowest address the application may map: the table's end.
    pub const MIN_USER_ADDR: u64 = TABLE_ADDR + TABLE_LEN;

    /// The syscall thread's request page (read-only in the stub: only the
    /// Sentry writes it) and reply page (read-write) right after it.
    pub const REQ_ADDR: u64 = SYSTRAP_BASE + 0x8_0000;
    pub const REP_ADDR: u64 = REQ_ADDR + PAGE;
    /// Request page: sequence number (the syscall thread's futex word),
    /// operation, six arguments.
    pub const REQ_SEQ: u64 = 0x00;
    pub const REQ_OP: u64 = 0x04;
    pub const REQ_ARGS: u64 = 0x08;
    /// Reply page: the sequence number of the last request served (the
    /// Sentry's futex word), whether the Sentry sleeps on it, the result.
    pub const REP_DONE: u64 = 0x00;
    pub const REP_SENTRY_SLEEPING: u64 = 0x04;
    pub const REP_RET: u64 = 0x08;
    /// Requests: `mmap(args)`, `munmap(args)`, a new stub thread
    /// (`clone(THREAD_FLAGS, args[1], args[2], args[3])`), a new address
    /// space (fork; args[4] = the descriptor of its request pages).
    pub const OP_MMAP: u32 = 1;
    pub const OP_MUNMAP: u32 = 2;
    pub const OP_THREAD: u32 = 3;
    pub const OP_FORK: u32 = 4;
    /// A stub thread: its own thread group (a signal to it touches no
    /// other), sharing memory and files, no exit signal; a child of the
    /// Sentry (`CLONE_PARENT`: the syscall thread's parent), which reaps
    /// it; the kernel keeps its id in its slot's MSG_TID while it lives.
    pub const THREAD_FLAGS: u32 = (libc::CLONE_PARENT
        | libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID) as u32;
    /// A new address space: a copy of the stub sharing the Sentry's file
    /// table (so descriptors mean the same there), a child of the Sentry.
    pub const FORK_FLAGS: u32 = (libc::CLONE_PARENT | libc::CLONE_FILES | libc::SIGCHLD) as u32;
    /// The template's syscall thread, cloned by injection from the
    /// template's first thread (exit signal none; reaped by the Sentry).
    pub const SERVER_FLAGS: u64 =
        (libc::CLONE_PARENT | libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES) as u64;

    /// The signal stack: the rest of the slot.
    pub const ALTSTACK_OFF: u64 = PAGE;
    pub const ALTSTACK_SIZE: u64 = SLOT_SIZE - PAGE;

    /// `sigaltstack` flag: the kernel disarms the signal stack while a
    /// handler runs on it, so a handler always starts at its top.
    pub const SS_AUTODISARM: u32 = 1 << 31;

    pub const STATE_EVENT: u32 = 1;
    pub const STATE_RESUME: u32 = 2;
    /// The Sentry asks a thread parked in the trampoline to save its FP
    /// state into the trampoline's frame; it answers with EVENT.
    pub const STATE_SAVE_FP: u32 = 3;
}

// The kernel's x86-64 signal frame (`struct ucontext`, `struct sigcontext`).
const UC_STACK: usize = 16;
const UC_MCONTEXT: usize = 40;
const UC_SIGMASK: usize = UC_MCONTEXT + 256;
const UC_SIZE: usize = UC_SIGMASK + 8;
const MC_CSGSFS: usize = 144;
const MC_ERR: usize = 152;
const MC_TRAPNO: usize = 160;
const MC_FPSTATE: usize = 184;
/// rax among the general registers of `struct sigcontext`.
const GREG_RAX: usize = 13;
/// The general registers (`struct sigcontext` order) a patched syscall's
/// event leaves in the frame until the Sentry asks for them: r11, r12-r15,
/// rbp, rbx and the flags. The others are the syscall's own (MSG_ARGS,
/// MSG_RAX; rcx is rip).
const GREGS_LEFT_IN_FRAME: [usize; 8] = [3, 4, 5, 6, 7, 10, 11, 17];
const SIGINFO_SIZE: usize = 128;
/// `struct _fpx_sw_bytes` in the FXSAVE area's software-reserved bytes.
const FP_SW_BYTES: usize = 464;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
const FXSAVE_SIZE: usize = 512;
const SYS_SECCOMP: i32 = 1;

/// How long the Sentry spins waiting for the syscall thread's answer.
const REQUEST_SPIN: Duration = Duration::from_micros(10);
/// The longest the Sentry spins on the state word before it sleeps, and
/// the longest the stub's handler spins waiting for the Sentry (see
/// [`Spin`]).
const MAX_SPIN: Duration = Duration::from_micros(20);
/// How often a sleeping Sentry looks whether the stub thread died.
const DEATH_POLL: Duration = Duration::from_millis(50);
/// How long a new stub thread may take to reach its first trap.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The systrap platform (`--platform=systrap`).
pub struct SystrapPlatform {
    xsave_size: usize,
    fsgsbase: bool,
    /// The stub code and configuration pages, mapped into every stub.
    image: OwnedFd,
    /// A stub with the code and configuration mapped and no threads, which
    /// new address spaces are forked from. Made when the first address
    /// space is asked for, not with the platform: a fork stays in its
    /// parent's cgroup, and the runtime moves the sandbox into the
    /// container's cgroup only after the Sentry has started, before the
    /// container's first process.
    template: Mutex<Option<Arc<Space>>>,
    /// Syscall patching is on.
    patching: bool,
    tsc_per_us: f64,
    max_spin: Duration,
}

/// Adaptive spin budgets, per context. A waiting side spins (burning its
/// CPU) in the hope that the other answers sooner than a futex wake-up
/// would take; that pays only when answers come quickly and another CPU
/// runs the other side. So each budget is the maximum while the answers
/// it waits for keep coming within the maximum, and halves each time one
/// takes longer, down to a quarter of the maximum: never to nothing, or
/// two sides that both sleep would wake each other slowly (a wake-up of
/// a halted virtual CPU can take longer than the maximum) and never find
/// out that spinning pays again. On a single CPU nothing spins.
#[derive(Clone, Copy, Debug)]
struct Spin {
    max: Duration,
    /// The Sentry waiting for the stub thread's next event.
    sentry: Duration,
    /// The stub thread waiting for the Sentry to resume it.
    stub: Duration,
    /// `stub` in TSC cycles, as last converted: (`stub`, cycles).
    stub_cycles: (Duration, u32),
}

impl Spin {
    /// The maximum budget on this host: none with a single CPU.
    fn max_for_host() -> Duration {
        match std::thread::available_parallelism() {
            Ok(n) if n.get() > 1 => MAX_SPIN,
            _ => Duration::ZERO,
        }
    }

    fn new(max: Duration) -> Spin {
        Spin {
            max,
            sentry: max,
            stub: max,
            stub_cycles: (Duration::MAX, 0),
        }
    }

    /// The stub's budget in TSC cycles, converted only when it changed.
    fn stub_cycles(&mut self, tsc_per_us: f64) -> u32 {
        if self.stub_cycles.0 != self.stub {
            let cycles = (self.stub.as_nanos() as u64 as f64 * tsc_per_us / 1000.0) as u32;
            self.stub_cycles = (self.stub, cycles);
        }
        self.stub_cycles.1
    }

    /// A budget after a wait that took `took`.
    fn adapt(budget: Duration, took: Duration, max: Duration) -> Duration {
        if took <= max {
            max
        } else {
            (budget / 2).max(max / 4)
        }
    }
}

impl SystrapPlatform {
    /// Builds the stub image and checks that the host runs it: makes one
    /// address space with one thread that must reach its first trap.
    /// Syscall patching is on where the host allows it.
    pub fn new() -> Result<SystrapPlatform, PlatformError> {
        SystrapPlatform::with_patching(true)
    }

    /// As [`SystrapPlatform::new`]; `patching` false never patches
    /// (`--systrap-disable-syscall-patching`). Patching also needs
    /// `FSGSBASE` (the trampoline finds its slot through the GS base) and
    /// an XSAVE area that fits the trampoline's frame.
    pub fn with_patching(patching: bool) -> Result<SystrapPlatform, PlatformError> {
        let xsave_size = sys::xsave_size().max(FpState::MIN_SIZE);
        let fsgsbase = sys::has_fsgsbase();
        let patching = patching && fsgsbase && TF_FP + xsave_size as u64 + 4 <= TF_END;
        let tsc_per_us = sys::tsc_per_us();
        let max_spin = Spin::max_for_host();
        let spin_cycles = (tsc_per_us * max_spin.as_micros() as f64) as u64;
        let image = code::image(fsgsbase, spin_cycles);
        let fd = sys::memfd(c"runsc-systrap-stub", image.len() as u64)
            .map_err(host_err("memfd_create"))?;
        let file = std::fs::File::from(fd);
        std::os::unix::fs::FileExt::write_all_at(&file, &image, 0).map_err(|e| {
            PlatformError::Host {
                op: "write stub image",
                errno: Errno::from_io(&e),
            }
        })?;
        let image = OwnedFd::from(file);
        // A throwaway template, to check the host runs a stub thread.
        let space = Space::template(xsave_size, &image)?;
        let slot = space.new_thread()?;
        space.release_slot(&slot);
        Ok(SystrapPlatform {
            xsave_size,
            fsgsbase,
            image,
            template: Mutex::new(None),
            patching,
            tsc_per_us,
            max_spin,
        })
    }

    /// Whether this platform patches syscalls.
    pub fn patching(&self) -> bool {
        self.patching
    }

    /// A new context, as `new_context` gives it (tests reach inside).
    fn context(&self) -> SystrapContext {
        SystrapContext {
            interrupter: Arc::new(StubInterrupter::default()),
            threads: Vec::new(),
            current: None,
            fp_dirty: true,
            regs_replaced: false,
            fsgsbase: self.fsgsbase,
            patching: self.patching,
            trapped: false,
            spin: Spin::new(self.max_spin),
            tsc_per_us: self.tsc_per_us,
            event_at: None,
            busy: None,
            app_tsc: None,
        }
    }

    /// The template, made on first use.
    fn template(&self) -> Result<Arc<Space>, PlatformError> {
        let mut t = self.template.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = &*t {
            return Ok(t.clone());
        }
        let made = Space::template(self.xsave_size, &self.image)?;
        *t = Some(made.clone());
        Ok(made)
    }
}

impl Platform for SystrapPlatform {
    fn name(&self) -> &'static str {
        "systrap"
    }

    /// Above the syscall trampoline table (as if the host's
    /// `vm.mmap_min_addr` were 0x70000), with patching on or off, so the
    /// two agree on every address.
    fn min_user_address(&self) -> u64 {
        MIN_USER_ADDR
    }

    fn max_user_address(&self) -> u64 {
        SYSTRAP_BASE
    }

    fn new_address_space(&self) -> Result<Arc<dyn AddressSpace>, PlatformError> {
        Ok(Arc::new(SystrapAddressSpace {
            space: Space::fork_from(&self.template()?)?,
        }))
    }

    fn new_context(&self) -> Result<Box<dyn Context>, PlatformError> {
        Ok(Box::new(self.context()))
    }

    fn initial_state(&self) -> ArchState {
        ArchState::initial(self.xsave_size)
    }

    fn syscall_patching(&self) -> Option<SyscallPatching> {
        self.patching.then(|| SyscallPatching {
            table_addr: TABLE_ADDR,
            table_len: TABLE_LEN,
            entry: code::tramp_entry(),
            entry_rax: code::tramp_entry_rax(),
        })
    }
}

fn host_err(op: &'static str) -> impl Fn(Errno) -> PlatformError {
    move |errno| PlatformError::Host { op, errno }
}

/// One thread's slot: its shared memory, mapped here and in the stub.
struct Slot {
    index: usize,
    mem: SharedMem,
    in_use: AtomicBool,
    /// The stub thread started in this slot and not yet reaped (0: none).
    /// Stub threads are children of the Sentry (`CLONE_PARENT`), which
    /// reaps each when its slot is released.
    child: Mutex<i32>,
}

impl Slot {
    /// Kill and reap the thread started in this slot, if any.
    fn reap(&self) {
        let tid = std::mem::take(&mut *self.child.lock().unwrap_or_else(|e| e.into_inner()));
        if tid > 0 {
            sys::kill_and_reap(tid);
        }
    }

    /// The slot's thread lives and waits at an event for the Sentry.
    fn parked(&self) -> bool {
        let child = *self.child.lock().unwrap_or_else(|e| e.into_inner());
        child > 0
            && self.tid() == child
            && self.mem.u32_at(MSG_STATE as usize).load(Ordering::SeqCst) == STATE_EVENT
    }

    /// The slot's address in the stub.
    fn stub_addr(&self) -> u64 {
        SLOTS_BASE + self.index as u64 * SLOT_SIZE
    }

    fn tid(&self) -> i32 {
        self.mem.u32_at(MSG_TID as usize).load(Ordering::SeqCst) as i32
    }

    /// Wait for the stub thread's next event (spin, then futex), failing if
    /// the thread dies or `deadline` passes.
    /// Returns whether it had to sleep.
    fn wait_event(&self, deadline: Option<Instant>, spin: Duration) -> Result<bool, PlatformError> {
        self.wait_event_at(deadline, spin).map(|(slept, _)| slept)
    }

    /// As [`Slot::wait_event`], also returning the time-stamp counter as
    /// the event was seen: read on every spin, where it delays nothing (the
    /// line's transfer from the stub's core takes longer), or after a
    /// sleep.
    fn wait_event_at(
        &self,
        deadline: Option<Instant>,
        spin: Duration,
    ) -> Result<(bool, u64), PlatformError> {
        let state = self.mem.u32_at(MSG_STATE as usize);
        // The clock is read only once the first few spins have failed: a
        // quick answer costs no clock read.
        let mut spin_start = None;
        'spin: loop {
            for _ in 0..32 {
                let tsc = sys::rdtsc();
                if state.load(Ordering::Acquire) == STATE_EVENT {
                    return Ok((false, tsc));
                }
                std::hint::spin_loop();
            }
            if spin_start.get_or_insert_with(Instant::now).elapsed() >= spin {
                break 'spin;
            }
        }
        let sleeping = self.mem.u32_at(MSG_SENTRY_SLEEPING as usize);
        loop {
            sleeping.store(1, Ordering::SeqCst);
            let seen = state.load(Ordering::SeqCst);
            if seen != STATE_EVENT {
                sys::futex_wait(state, seen, DEATH_POLL);
            }
            sleeping.store(0, Ordering::Relaxed);
            if state.load(Ordering::Acquire) == STATE_EVENT {
                return Ok((true, sys::rdtsc()));
            }
            // The kernel clears the tid word of a dead thread only while
            // other threads still use its memory, so ask about the child
            // itself too.
            let child = *self.child.lock().unwrap_or_else(|e| e.into_inner());
            if self.tid() == 0 || (child > 0 && sys::exited(child)) {
                let err = self
                    .mem
                    .u64_at(MSG_SETUP_ERR as usize)
                    .load(Ordering::SeqCst);
                return Err(PlatformError::StubDied(if err != 0 {
                    format!(
                        "stub thread setup failed: {}",
                        Errno::new(-(err as i64) as i32).unwrap_or(Errno::EIO)
                    )
                } else {
                    "stub thread exited".into()
                }));
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                return Err(PlatformError::StubDied(
                    "stub thread did not report in time".into(),
                ));
            }
        }
    }

    /// Let the parked stub thread go on. Returns whether it had gone to
    /// sleep.
    fn resume(&self) -> bool {
        self.hand_over(STATE_RESUME)
    }

    /// Have a thread parked in the trampoline save its FP state into the
    /// trampoline's frame, and wait until it has.
    /// `spin`: how long to spin before sleeping (it is an XSAVE away).
    fn save_fp(&self, spin: Duration) -> Result<(), PlatformError> {
        self.hand_over(STATE_SAVE_FP);
        self.wait_event(None, spin).map(drop)
    }

    /// Set the state word to `to` and wake the stub thread if it sleeps;
    /// whether it did.
    fn hand_over(&self, to: u32) -> bool {
        let state = self.mem.u32_at(MSG_STATE as usize);
        state.store(to, Ordering::SeqCst);
        let slept = self
            .mem
            .u32_at(MSG_STUB_SLEEPING as usize)
            .load(Ordering::SeqCst)
            != 0;
        if slept {
            sys::futex_wake(state, 1);
        }
        slept
    }
}

/// One address space: a stub process, its syscall thread, its slots.
struct Space {
    /// The stub's syscall thread, which makes this address space's
    /// `mmap`, `munmap` and `clone` calls on request (and, in the
    /// template, forks new address spaces). A process of its own (no
    /// `CLONE_THREAD`), a child of the Sentry, reaped on drop.
    server: i32,
    /// The request page and the reply page, as the Sentry maps them.
    pages: SharedMem,
    /// One request at a time.
    requests: Mutex<Requests>,
    slots: Mutex<Vec<Arc<Slot>>>,
    /// The template only: the host thread tracing the stub's first
    /// thread. Every stub process and thread is a child of that host
    /// thread (`CLONE_PARENT` all the way down), and their parent-death
    /// signal fires when it ends, so it lives as long as the template.
    tracer: Option<Tracer>,
    /// A forked address space keeps its template (and so the tracer
    /// above) alive.
    _template: Option<Arc<Space>>,
}

struct Requests {
    /// The last request's sequence number.
    seq: u32,
    /// A new address space's request-page descriptor, which its syscall
    /// thread maps after the fork: kept open until it has answered once.
    fd: Option<OwnedFd>,
}

/// The thread that traces a template stub's first thread, and its work.
struct Tracer {
    jobs: Option<Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Work for the tracer thread, which alone may drive the traced stub.
type Job = Box<dyn FnOnce(&mut Stub) + Send>;

impl Tracer {
    /// Start a thread that makes a stub (it becomes the stub's tracer)
    /// and then runs jobs on it until dropped.
    fn start(xsave_size: usize) -> Result<Tracer, PlatformError> {
        let (tx, rx) = channel::<Job>();
        let (ready_tx, ready_rx) = channel();
        let thread = std::thread::Builder::new()
            .name("systrap-template".into())
            .spawn(move || {
                let mut stub = match Stub::new(xsave_size) {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                for job in rx {
                    job(&mut stub);
                }
                // Dropping the stub kills its first thread.
            })
            .map_err(|e| PlatformError::Host {
                op: "spawn stub thread",
                errno: Errno::from_io(&e),
            })?;
        let tracer = Tracer {
            jobs: Some(tx),
            thread: Some(thread),
        };
        ready_rx
            .recv()
            .map_err(|_| PlatformError::StubDied("tracer thread ended".into()))??;
        Ok(tracer)
    }

    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Stub) -> Result<T, PlatformError> + Send + 'static,
    ) -> Result<T, PlatformError> {
        let (reply, answer) = channel();
        let job: Job = Box::new(move |stub| drop(reply.send(f(stub))));
        let sent = self.jobs.as_ref().map(|tx| tx.send(job).is_ok());
        if sent != Some(true) {
            return Err(PlatformError::StubDied("the template is gone".into()));
        }
        answer
            .recv()
            .map_err(|_| PlatformError::StubDied("tracer thread ended".into()))?
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The memory file of an address space's request and reply pages, and
/// the Sentry's mapping of it.
fn request_pages() -> Result<(OwnedFd, SharedMem), PlatformError> {
    let fd = sys::memfd(c"runsc-systrap-requests", 2 * PAGE).map_err(host_err("memfd_create"))?;
    let pages =
        SharedMem::map(fd.as_fd(), 2 * PAGE as usize).map_err(host_err("mmap request pages"))?;
    Ok((fd, pages))
}

impl Space {
    /// The template: a stub made by cloning and stripping the Sentry
    /// (ptrace), with the stub code, configuration and request pages
    /// mapped and its syscall thread started by one injected `clone`.
    /// This is the only place the platform uses ptrace.
    fn template(xsave_size: usize, image: &OwnedFd) -> Result<Arc<Space>, PlatformError> {
        let tracer = Tracer::start(xsave_size)?;
        let (req_fd, pages) = request_pages()?;
        let image = image.as_raw_fd() as u64;
        let req = req_fd.as_raw_fd() as u64;
        let server = tracer.run(move |stub| {
            let fixed = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
            let rx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
            let ro = libc::PROT_READ as u64;
            let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
            for (args, op) in [
                (
                    [code::CODE_ADDR, PAGE, rx, fixed, image, 0],
                    "map stub code",
                ),
                (
                    [
                        code::CONFIG_ADDR,
                        code::IMAGE_SIZE - PAGE,
                        ro,
                        fixed,
                        image,
                        PAGE,
                    ],
                    "map stub configuration",
                ),
                ([REQ_ADDR, PAGE, ro, fixed, req, 0], "map request page"),
                ([REP_ADDR, PAGE, rw, fixed, req, PAGE], "map reply page"),
            ] {
                let ret = stub.syscall(libc::SYS_mmap, args)?;
                if ret != args[0] {
                    return Err(stub::errno_of(op, ret));
                }
            }
            let ret = stub.inject(
                code::server_clone_entry(),
                code::server_clone_stop(),
                libc::SYS_clone,
                [SERVER_FLAGS, 0, 0, 0, 0, 0],
            )?;
            match i32::try_from(ret as i64) {
                Ok(pid) if pid > 0 => Ok(pid),
                _ => Err(stub::errno_of("clone syscall thread", ret)),
            }
        })?;
        Ok(Arc::new(Space {
            server,
            pages,
            requests: Mutex::new(Requests { seq: 0, fd: None }),
            slots: Mutex::new(Vec::new()),
            tracer: Some(tracer),
            _template: None,
        }))
    }

    /// A new address space: a fork of `template` made by the template's
    /// syscall thread, whose copy serves the new stub. No ptrace.
    fn fork_from(template: &Arc<Space>) -> Result<Arc<Space>, PlatformError> {
        let (req_fd, pages) = request_pages()?;
        let ret = template.request(OP_FORK, [0, 0, 0, 0, req_fd.as_raw_fd() as u64, 0])?;
        let server = match i32::try_from(ret as i64) {
            Ok(pid) if pid > 0 => pid,
            _ => return Err(stub::errno_of("fork stub", ret)),
        };
        Ok(Arc::new(Space {
            server,
            pages,
            requests: Mutex::new(Requests {
                seq: 0,
                fd: Some(req_fd),
            }),
            slots: Mutex::new(Vec::new()),
            tracer: None,
            _template: Some(template.clone()),
        }))
    }

    /// Have the syscall thread serve one request; returns its raw result
    /// (`-errno` on failure).
    fn request(&self, op: u32, args: [u64; 6]) -> Result<u64, PlatformError> {
        let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let p = &self.pages;
        r.seq = r.seq.wrapping_add(1);
        if r.seq == 0 {
            // The syscall thread starts out having "served" 0.
            r.seq = 1;
        }
        let seq = r.seq;
        p.u32_at(REQ_OP as usize).store(op, Ordering::Relaxed);
        for (i, a) in args.iter().enumerate() {
            p.u64_at(REQ_ARGS as usize + 8 * i)
                .store(*a, Ordering::Relaxed);
        }
        let req_seq = p.u32_at(REQ_SEQ as usize);
        req_seq.store(seq, Ordering::SeqCst);
        sys::futex_wake(req_seq, 1);

        // The syscall thread answers in microseconds: spin briefly, then
        // sleep, looking now and then whether it died.
        let rep = PAGE as usize;
        let done = p.u32_at(rep + REP_DONE as usize);
        let spin_start = Instant::now();
        while done.load(Ordering::Acquire) != seq {
            if spin_start.elapsed() > REQUEST_SPIN {
                let sleeping = p.u32_at(rep + REP_SENTRY_SLEEPING as usize);
                sleeping.store(1, Ordering::SeqCst);
                let seen = done.load(Ordering::SeqCst);
                if seen != seq {
                    sys::futex_wait(done, seen, DEATH_POLL);
                }
                sleeping.store(0, Ordering::Relaxed);
                if done.load(Ordering::Acquire) != seq && sys::exited(self.server) {
                    return Err(PlatformError::StubDied(
                        "the stub's syscall thread exited".into(),
                    ));
                }
            } else {
                std::hint::spin_loop();
            }
        }
        r.fd = None;
        Ok(p.u64_at(rep + REP_RET as usize).load(Ordering::Acquire))
    }

    fn mmap(&self, args: [u64; 6], op: &'static str) -> Result<(), PlatformError> {
        let ret = self.request(OP_MMAP, args)?;
        if ret != args[0] {
            return Err(stub::errno_of(op, ret));
        }
        Ok(())
    }

    /// A free slot: a dead thread's, or a new one mapped on both sides.
    fn alloc_slot(&self) -> Result<Arc<Slot>, PlatformError> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots
            .iter()
            .find(|s| !s.in_use.load(Ordering::SeqCst) && s.tid() == 0)
        {
            slot.in_use.store(true, Ordering::SeqCst);
            return Ok(slot.clone());
        }
        let index = slots.len();
        if index >= MAX_SLOTS {
            return Err(PlatformError::Host {
                op: "new stub thread (too many in one address space)",
                errno: Errno::EAGAIN,
            });
        }
        let fd = sys::memfd(c"runsc-systrap-slot", SLOT_SIZE).map_err(host_err("memfd_create"))?;
        let mem = SharedMem::map(fd.as_fd(), SLOT_SIZE as usize).map_err(host_err("mmap slot"))?;
        let slot = Arc::new(Slot {
            index,
            mem,
            in_use: AtomicBool::new(true),
            child: Mutex::new(0),
        });
        let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let fixed = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
        // The descriptor is closed when `fd` drops; both mappings stay.
        self.mmap(
            [
                slot.stub_addr(),
                SLOT_SIZE,
                rw,
                fixed,
                fd.as_raw_fd() as u64,
                0,
            ],
            "map stub thread slot",
        )?;
        slots.push(slot.clone());
        Ok(slot)
    }

    /// A stub thread for a new context: one parked by a context that is
    /// gone (see [`Space::park_or_release`]), or a new one.
    fn new_thread(&self) -> Result<Arc<Slot>, PlatformError> {
        if let Some(slot) = self.take_parked() {
            return Ok(slot);
        }
        self.start_thread()
    }

    /// Take a parked stub thread. It waits in its handler for the Sentry
    /// to write registers into its signal frame and resume it, as after
    /// any trap; the next context writes its whole state there (registers,
    /// FP state, mask, signal stack) and sets fs/gs afresh, so nothing of
    /// the previous context's reaches the next.
    fn take_parked(&self) -> Option<Arc<Slot>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots
            .iter()
            .find(|s| !s.in_use.load(Ordering::SeqCst) && s.parked())?;
        slot.in_use.store(true, Ordering::SeqCst);
        Some(slot.clone())
    }

    /// A context is done with `slot`'s thread. If the thread waits at an
    /// event, keep it for the next context of this address space: starting
    /// a stub thread (an injected clone, then its setup and seccomp filter)
    /// costs far more than reusing one. Otherwise kill it.
    fn park_or_release(&self, slot: &Slot) {
        if slot.parked() {
            slot.in_use.store(false, Ordering::SeqCst);
        } else {
            self.release_slot(slot);
        }
    }

    /// Start a stub thread and wait for it to park at its first trap.
    fn start_thread(&self) -> Result<Arc<Slot>, PlatformError> {
        let slot = self.alloc_slot()?;
        let m = &slot.mem;
        for off in [
            MSG_STATE,
            MSG_STUB_SLEEPING,
            MSG_SENTRY_SLEEPING,
            MSG_TID,
            MSG_SET_FS,
            MSG_SET_GS,
        ] {
            m.u32_at(off as usize).store(0, Ordering::SeqCst);
        }
        m.u64_at(MSG_SETUP_ERR as usize).store(0, Ordering::SeqCst);
        let base = slot.stub_addr();

        // The syscall thread clones it (THREAD_FLAGS) onto the slot's stack.
        let tid_word = base + MSG_TID;
        let sp = base + SLOT_SIZE - 64;
        let ret = self.request(OP_THREAD, [0, sp, tid_word, tid_word, 0, 0]);
        let ret = match ret {
            Ok(r) => r,
            Err(e) => {
                self.release_slot(&slot);
                return Err(e);
            }
        };
        if (ret as i64) <= 0 {
            self.release_slot(&slot);
            return Err(stub::errno_of("clone stub thread", ret));
        }
        *slot.child.lock().unwrap_or_else(|e| e.into_inner()) = ret as i32;
        if let Err(e) = slot.wait_event(Some(Instant::now() + SETUP_TIMEOUT), MAX_SPIN) {
            self.release_slot(&slot);
            return Err(e);
        }
        // The first event must be the refused getpid at the end of setup.
        let frame = Frame::locate(&slot)?;
        let info = frame.siginfo(&slot);
        let rip = slot.mem.read_u64(frame.uc + UC_MCONTEXT + 128);
        let code_range = code::CODE_ADDR..code::CODE_ADDR + PAGE;
        if info.signo != libc::SIGSYS || !code_range.contains(&rip) {
            self.release_slot(&slot);
            return Err(PlatformError::StubDied(format!(
                "new stub thread's first event was signal {} at {rip:#x}",
                info.signo
            )));
        }
        prepare_trampoline_frame(&slot, &frame);
        Ok(slot)
    }

    /// Kill and reap the slot's thread (if any) and let the slot be reused.
    fn release_slot(&self, slot: &Slot) {
        slot.reap();
        slot.in_use.store(false, Ordering::SeqCst);
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        for slot in self
            .slots
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            slot.reap();
        }
        sys::kill_and_reap(self.server);
        // A template's tracer thread ends, which kills and reaps the
        // stub's first thread; the template itself goes with the last
        // address space forked from it.
        self.tracer.take();
    }
}

struct SystrapAddressSpace {
    space: Arc<Space>,
}

impl AddressSpace for SystrapAddressSpace {
    fn map_file(
        &self,
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
        self.space.mmap(
            [
                addr,
                len,
                u64::from(access.to_prot()),
                flags,
                file.as_raw_fd() as u64,
                offset,
            ],
            "mmap in stub",
        )
    }

    fn unmap(&self, addr: u64, len: u64) -> Result<(), PlatformError> {
        let ret = self.space.request(OP_MUNMAP, [addr, len, 0, 0, 0, 0])?;
        if ret != 0 {
            return Err(stub::errno_of("munmap in stub", ret));
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Fill in what the syscall trampoline's frame holds for every syscall, so
/// the trampoline writes only what changes (and the Sentry's reads of the
/// rest hit its own cache): the kernel's XSAVE bookkeeping, copied from
/// the thread's first signal frame `first` (the software-reserved bytes,
/// which XSAVE leaves alone, and the closing magic word), the `ucontext`
/// flags, segments and FP pointer, and a SIGSYS `siginfo`.
fn prepare_trampoline_frame(slot: &Slot, first: &Frame) {
    let m = &slot.mem;
    let mut sw = [0u8; 48];
    m.read(first.fp + FP_SW_BYTES, &mut sw);
    m.write(MSG_FPSW as usize, &sw);
    let fp = TF_FP as usize;
    m.write(fp + FP_SW_BYTES, &sw);
    let xstate_size = u32::from_le_bytes(sw[16..20].try_into().expect("4 bytes")) as usize;
    if fp + xstate_size + 4 <= TF_END as usize {
        m.write(fp + xstate_size, &FP_XSTATE_MAGIC2.to_le_bytes());
    }
    let uc = TF_UC as usize;
    // UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS, no link.
    m.write_u64(uc, 7);
    m.write_u64(uc + 8, 0);
    m.write_u64(uc + UC_MCONTEXT + MC_CSGSFS, 0x002b_0000_0000_0033);
    for off in [MC_ERR, MC_TRAPNO, MC_TRAPNO + 8, MC_TRAPNO + 16] {
        m.write_u64(uc + UC_MCONTEXT + off, 0);
    }
    m.write_u64(uc + UC_MCONTEXT + MC_FPSTATE, slot.stub_addr() + TF_FP);
    let mut info = [0u8; SIGINFO_SIZE];
    info[0..4].copy_from_slice(&libc::SIGSYS.to_le_bytes());
    info[8..12].copy_from_slice(&SYS_SECCOMP.to_le_bytes());
    info[28..32].copy_from_slice(&code::AUDIT_ARCH_X86_64.to_le_bytes());
    m.write(TF_INFO as usize, &info);
}

/// Where the parked thread's signal frame is, as offsets into its slot.
#[derive(Clone, Copy)]
struct Frame {
    uc: usize,
    info: usize,
    fp: usize,
    fp_len: usize,
}

impl Frame {
    /// Find and check the frame the handler reported. The pointers come
    /// from memory the application can write: each must lie in the slot's
    /// signal stack.
    fn locate(slot: &Slot) -> Result<Frame, PlatformError> {
        let m = &slot.mem;
        let base = slot.stub_addr();
        let inside = |ptr: u64, size: usize| -> Option<usize> {
            let off = ptr.checked_sub(base)?;
            (off >= ALTSTACK_OFF && off.checked_add(size as u64)? <= SLOT_SIZE)
                .then_some(off as usize)
        };
        let corrupt =
            || PlatformError::StubDied("stub thread reported a corrupt signal frame".into());
        let uc = inside(m.read_u64(MSG_UCTX_PTR as usize), UC_SIZE).ok_or_else(corrupt)?;
        let info =
            inside(m.read_u64(MSG_SIGINFO_PTR as usize), SIGINFO_SIZE).ok_or_else(corrupt)?;
        let fp_ptr = m.read_u64(uc + UC_MCONTEXT + MC_FPSTATE);
        let fp = inside(fp_ptr, FXSAVE_SIZE).ok_or_else(corrupt)?;
        let mut sw = [0u8; 32];
        m.read(fp + FP_SW_BYTES, &mut sw);
        let magic = u32::from_le_bytes(sw[0..4].try_into().expect("4 bytes"));
        let xstate_size = u32::from_le_bytes(sw[16..20].try_into().expect("4 bytes")) as usize;
        let fp_len = if magic == FP_XSTATE_MAGIC1 && xstate_size >= FpState::MIN_SIZE {
            xstate_size.min(SLOT_SIZE as usize - fp)
        } else {
            FXSAVE_SIZE
        };
        Ok(Frame {
            uc,
            info,
            fp,
            fp_len,
        })
    }

    fn siginfo(&self, slot: &Slot) -> RawSigInfo {
        let mut b = [0u8; 32];
        slot.mem.read(self.info, &mut b);
        let i32_at = |o: usize| i32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        RawSigInfo {
            signo: i32_at(0),
            code: i32_at(8),
            addr: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            arch: i32_at(28) as u32,
        }
    }

    /// The general registers from the frame into `regs` (fs/gs base,
    /// orig_rax and the ds/es/fs/gs selectors are not in a signal frame and
    /// are left alone). Returns the fault's error code and trap number.
    fn load_regs(&self, slot: &Slot, regs: &mut Regs) -> (u64, u64) {
        let mut mc = [0u8; 192];
        slot.mem.read(self.uc + UC_MCONTEXT, &mut mc);
        let q = |i: usize| u64::from_le_bytes(mc[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let mut gregs: [u64; 18] = std::array::from_fn(q);
        if self.is_trampoline() {
            gregs[GREG_RAX] = slot.mem.read_u64(MSG_RAX as usize);
        }
        regs.set_sigcontext_gregs(&gregs);
        let segs = q(MC_CSGSFS / 8);
        regs.cs = segs & 0xffff;
        regs.ss = (segs >> 48) & 0xffff;
        (q(MC_ERR / 8), q(MC_TRAPNO / 8))
    }

    /// A patched syscall's registers: the number, the arguments, rip and
    /// rsp from the message words (rcx is rip, as a syscall leaves it).
    /// The rest of `regs` is left as it is, until [`Frame::complete_regs`].
    fn load_syscall_regs(slot: &Slot, regs: &mut Regs) {
        let mut a = [0u8; 64];
        slot.mem.read(MSG_ARGS as usize, &mut a);
        let q = |i: usize| u64::from_le_bytes(a[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        regs.rdi = q(0);
        regs.rsi = q(1);
        regs.rdx = q(2);
        regs.r10 = q(3);
        regs.r8 = q(4);
        regs.r9 = q(5);
        regs.rip = q(6);
        regs.rsp = q(7);
        regs.rcx = regs.rip;
        regs.rax = slot.mem.read_u64(MSG_RAX as usize);
    }

    /// After [`Frame::load_syscall_regs`] gave `regs` as `loaded`: take
    /// the registers it left behind from the frame, except those the
    /// Sentry has set since.
    fn complete_regs(&self, slot: &Slot, regs: &mut Regs, loaded: &[u64; 18]) {
        let mut mc = [0u8; 144];
        slot.mem.read(self.uc + UC_MCONTEXT, &mut mc);
        let q = |i: usize| u64::from_le_bytes(mc[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let mut gregs = regs.sigcontext_gregs();
        for i in GREGS_LEFT_IN_FRAME {
            if gregs[i] == loaded[i] {
                gregs[i] = q(i);
            }
        }
        regs.set_sigcontext_gregs(&gregs);
    }

    /// As [`Frame::store_regs`] after [`Frame::load_syscall_regs`] gave
    /// `regs` as `loaded`, when nothing else of the frame needs checking:
    /// only the registers the Sentry changed, without reading the frame
    /// (whose lines the stub may hold).
    fn store_changed_regs(&self, slot: &Slot, regs: &Regs, loaded: &[u64; 18]) {
        let m = &slot.mem;
        let mc = self.uc + UC_MCONTEXT;
        for (i, v) in regs.sigcontext_gregs().into_iter().enumerate() {
            if i == GREG_RAX {
                m.write_u64(MSG_RAX as usize, v);
            } else if v != loaded[i] {
                m.write_u64(mc + i * 8, v);
            }
        }
    }

    /// Write `regs` into the frame for the thread's `rt_sigreturn`, with an
    /// empty signal mask and the slot's own signal stack. Only what
    /// differs is written, so a call that changes one register hands the
    /// stub back just the lines that hold it.
    fn store_regs(&self, slot: &Slot, regs: &Regs) {
        let m = &slot.mem;
        let mc = self.uc + UC_MCONTEXT;
        for (i, v) in regs.sigcontext_gregs().into_iter().enumerate() {
            if i == GREG_RAX && self.is_trampoline() {
                m.write_u64(MSG_RAX as usize, v);
            } else {
                m.update_u64(mc + i * 8, v);
            }
        }
        // cs, gs, fs, ss (the kernel keeps gs and fs at 0 there).
        let segs = m.read_u64(mc + MC_CSGSFS);
        let segs = (segs & 0x0000_ffff_ffff_0000) | (regs.cs & 0xffff) | ((regs.ss & 0xffff) << 48);
        m.update_u64(mc + MC_CSGSFS, segs);
        m.update_u64(mc + MC_FPSTATE, slot.stub_addr() + self.fp as u64);
        m.update_u64(self.uc + UC_SIGMASK, 0);
        m.update_u64(self.uc + UC_STACK, slot.stub_addr() + ALTSTACK_OFF);
        m.update_u64(self.uc + UC_STACK + 8, u64::from(SS_AUTODISARM));
        m.update_u64(self.uc + UC_STACK + 16, ALTSTACK_SIZE);
    }

    /// Whether this is the syscall trampoline's frame.
    fn is_trampoline(&self) -> bool {
        self.uc == TF_UC as usize
    }

    /// Whether the trampoline reported a syscall in this frame (and not
    /// the handler an interrupt, with the trampoline's frame as the
    /// interrupted state and the kernel's `siginfo`).
    fn is_trampoline_syscall(&self) -> bool {
        self.is_trampoline() && self.info == TF_INFO as usize
    }

    /// The XSAVE area from the frame into `fp`.
    fn load_fp(&self, slot: &Slot, fp: &mut FpState) {
        let bytes = fp.as_bytes_mut();
        let n = self.fp_len.min(bytes.len());
        slot.mem.read(self.fp, &mut bytes[..n]);
    }

    /// `fp` into the frame's XSAVE area, keeping the kernel's
    /// software-reserved bytes, which `rt_sigreturn` checks.
    fn store_fp(&self, slot: &Slot, fp: &FpState) {
        let bytes = fp.as_bytes();
        let n = self.fp_len.min(bytes.len());
        slot.mem.write(self.fp, &bytes[..FP_SW_BYTES.min(n)]);
        if n > FXSAVE_SIZE {
            slot.mem
                .write(self.fp + FXSAVE_SIZE, &bytes[FXSAVE_SIZE..n]);
        }
    }
}

struct RawSigInfo {
    signo: i32,
    code: i32,
    addr: u64,
    arch: u32,
}

/// A context's stub thread in one address space.
struct Bound {
    space: Weak<Space>,
    slot: Arc<Slot>,
    tid: i32,
    /// The frame the thread is parked in.
    frame: Frame,
    /// Whether that frame holds the thread's FP state: not after a patched
    /// syscall, whose trampoline leaves it in the registers until asked.
    fp_saved: bool,
    /// The fs/gs base the thread has, when known.
    fs_base: Option<u64>,
    gs_base: Option<u64>,
    /// The last event was a patched syscall, loaded with
    /// [`Frame::load_syscall_regs`] as these registers: the rest are
    /// still only in the frame.
    partial: Option<[u64; 18]>,
}

impl Bound {
    /// Make `regs` whole if the last event left registers in the frame.
    fn complete_regs(&mut self, regs: &mut Regs) {
        if let Some(loaded) = self.partial.take() {
            self.frame.complete_regs(&self.slot, regs, &loaded);
        }
    }

    /// The thread's FP state into `fp`, which a thread parked in the
    /// trampoline saves into its frame first.
    /// `spin` as for [`Slot::save_fp`].
    fn load_fp(&mut self, fp: &mut FpState, spin: Duration) -> Result<(), PlatformError> {
        if !self.fp_saved {
            self.slot.save_fp(spin)?;
            self.fp_saved = true;
        }
        self.frame.load_fp(&self.slot, fp);
        Ok(())
    }
}

fn space_of(space: &dyn AddressSpace) -> &Arc<Space> {
    &space
        .as_any()
        .downcast_ref::<SystrapAddressSpace>()
        .expect("a systrap context runs only in systrap address spaces")
        .space
}

struct SystrapContext {
    interrupter: Arc<StubInterrupter>,
    threads: Vec<Bound>,
    /// Index in `threads` of the thread that ran last.
    current: Option<usize>,
    /// `ArchState.fp` is newer than the thread's.
    fp_dirty: bool,
    /// The Sentry replaced the registers wholesale
    /// ([`Context::full_state_changed`]): none are left to take from the
    /// frame, and every one is written back.
    regs_replaced: bool,
    fsgsbase: bool,
    /// Syscall patching is on: the thread's GS base is its slot while the
    /// application's is 0 (the trampoline finds its slot there).
    patching: bool,
    /// The last syscall event came from a trapped `syscall` instruction.
    trapped: bool,
    spin: Spin,
    tsc_per_us: f64,
    /// When the last event reached the Sentry.
    event_at: Option<Instant>,
    /// The slot whose MSG_BUSY `expect_busy` set, cleared at the next
    /// switch.
    busy: Option<Arc<Slot>>,
    /// The time-stamp counter when the last switch resumed the thread
    /// and when it saw the event (`Context::app_tsc`).
    app_tsc: Option<(u64, u64)>,
}

impl SystrapContext {
    /// This context's thread in `space`, if it has one.
    fn find(&self, space: &Arc<Space>) -> Option<usize> {
        self.threads
            .iter()
            .position(|b| b.space.as_ptr() == Arc::as_ptr(space))
    }

    /// This context's thread in `space`, started on first use.
    fn bind(&mut self, space: &dyn AddressSpace) -> Result<usize, PlatformError> {
        let space = space_of(space);
        if let Some(i) = self.find(space) {
            return Ok(i);
        }
        // Forget threads of address spaces that are gone (their threads
        // died with them).
        let current = self.current.map(|i| self.threads[i].slot.clone());
        self.threads.retain(|b| b.space.strong_count() > 0);
        self.current =
            current.and_then(|s| self.threads.iter().position(|b| Arc::ptr_eq(&b.slot, &s)));
        let slot = space.new_thread()?;
        let frame = Frame::locate(&slot)?;
        self.threads.push(Bound {
            space: Arc::downgrade(space),
            tid: slot.tid(),
            slot,
            frame,
            fp_saved: true,
            fs_base: None,
            gs_base: None,
            partial: None,
        });
        Ok(self.threads.len() - 1)
    }
}

impl Context for SystrapContext {
    fn switch(
        &mut self,
        space: &dyn AddressSpace,
        state: &mut ArchState,
    ) -> Result<SwitchEvent, PlatformError> {
        self.app_tsc = None;
        let idx = self.bind(space)?;
        if self.current != Some(idx) {
            // Moving to another thread (another address space): carry the
            // FP state over unless the Sentry already rewrote it.
            if let Some(old) = self.current {
                let old = &mut self.threads[old];
                if !self.regs_replaced {
                    old.complete_regs(&mut state.regs);
                }
                old.partial = None;
                // A thread that died meanwhile leaves `state` as it is.
                if !self.fp_dirty && old.slot.tid() == old.tid {
                    let _ = old.load_fp(&mut state.fp, self.spin.max);
                }
            }
            self.fp_dirty = true;
            // Its frame's registers are not `state`'s: check them all.
            self.threads[idx].partial = None;
            self.current = Some(idx);
        }
        let b = &mut self.threads[idx];
        self.interrupter.running.store(b.tid, Ordering::SeqCst);
        // A load first: the store above is a full fence on x86, and the
        // swap, a second one, is needed only when an interrupt came.
        if self.interrupter.pending.load(Ordering::SeqCst)
            && self.interrupter.pending.swap(false, Ordering::SeqCst)
        {
            self.interrupter.running.store(0, Ordering::SeqCst);
            return Ok(SwitchEvent::Interrupt);
        }

        if let Some(busy) = self.busy.take() {
            busy.mem
                .u32_at(MSG_BUSY as usize)
                .store(0, Ordering::Relaxed);
        }
        let slot = &*b.slot;
        // After a patched syscall, write back just what the Sentry changed,
        // unless the frame must be whole for `rt_sigreturn` (a new GS base)
        // or the Sentry replaced everything.
        let gs_changes = b.gs_base != Some(state.regs.gs_base);
        match b.partial.take() {
            Some(loaded) if !self.regs_replaced && !gs_changes => {
                b.frame.store_changed_regs(slot, &state.regs, &loaded);
            }
            Some(loaded) => {
                if !self.regs_replaced {
                    b.frame.complete_regs(slot, &mut state.regs, &loaded);
                }
                b.frame.store_regs(slot, &state.regs);
            }
            None => b.frame.store_regs(slot, &state.regs),
        }
        self.regs_replaced = false;
        if self.fp_dirty {
            b.frame.store_fp(slot, &state.fp);
        }
        slot.mem
            .u32_at(MSG_FP_LOAD as usize)
            .store(u32::from(self.fp_dirty), Ordering::Relaxed);
        self.fp_dirty = false;
        if b.fs_base != Some(state.regs.fs_base) {
            slot.mem
                .u64_at(MSG_FS_BASE as usize)
                .store(state.regs.fs_base, Ordering::Relaxed);
            slot.mem
                .u32_at(MSG_SET_FS as usize)
                .store(1, Ordering::Relaxed);
            b.fs_base = Some(state.regs.fs_base);
        }
        if b.gs_base != Some(state.regs.gs_base) {
            let host_gs = if self.patching && state.regs.gs_base == 0 {
                slot.stub_addr()
            } else {
                state.regs.gs_base
            };
            slot.mem
                .u64_at(MSG_GS_BASE as usize)
                .store(host_gs, Ordering::Relaxed);
            slot.mem
                .u32_at(MSG_SET_GS as usize)
                .store(1, Ordering::Relaxed);
            b.gs_base = Some(state.regs.gs_base);
        }
        let stub_cycles = self.spin.stub_cycles(self.tsc_per_us);
        let spin_word = slot.mem.u32_at(MSG_SPIN_CYCLES as usize);
        if spin_word.load(Ordering::Relaxed) != stub_cycles {
            spin_word.store(stub_cycles, Ordering::Relaxed);
        }
        // The clock is read only where a budget is below its maximum (and
        // a wait is slow anyway): while spins succeed they cost nothing.
        let max = self.spin.max;
        let processing = self.event_at.take().map(|at| at.elapsed());
        let resumed = (self.spin.sentry < max).then(Instant::now);
        let stub_slept = slot.resume();
        // The stub cannot see the resume before the state word's line
        // reaches its core, which takes longer than reading the counter.
        let resumed_tsc = sys::rdtsc();
        let waited = slot.wait_event_at(None, self.spin.sentry);
        // No fence: an interrupter that still sees the thread sends it a
        // signal it reports as a spurious interrupt, which callers allow.
        self.interrupter.running.store(0, Ordering::Release);
        let (slept, event_tsc) = waited?;
        self.app_tsc = Some((resumed_tsc, event_tsc));
        // The stub thread spun for the Sentry's answer, and slept if it
        // took longer than its budget.
        self.spin.stub = match (stub_slept, processing) {
            (false, _) => max,
            (true, Some(took)) => Spin::adapt(self.spin.stub, took, max),
            (true, None) => Spin::adapt(self.spin.stub, Duration::MAX, max),
        };
        // The Sentry spun for the event, and slept if it took longer.
        self.spin.sentry = match (slept, resumed) {
            (false, _) => max,
            (true, Some(at)) => Spin::adapt(self.spin.sentry, at.elapsed(), max),
            (true, None) => Spin::adapt(self.spin.sentry, Duration::MAX, max),
        };
        self.event_at = (self.spin.stub < max).then(Instant::now);

        b.frame = Frame::locate(slot)?;
        b.fp_saved = !b.frame.is_trampoline_syscall();
        let (err, trapno) = if b.frame.is_trampoline_syscall() {
            Frame::load_syscall_regs(slot, &mut state.regs);
            b.partial = Some(state.regs.sigcontext_gregs());
            (0, 0)
        } else {
            b.partial = None;
            b.frame.load_regs(slot, &mut state.regs)
        };
        if self.fsgsbase {
            let fs = slot
                .mem
                .u64_at(MSG_FS_BASE as usize)
                .load(Ordering::Relaxed);
            let gs = slot
                .mem
                .u64_at(MSG_GS_BASE as usize)
                .load(Ordering::Relaxed);
            let gs = if self.patching && gs == slot.stub_addr() {
                0
            } else {
                gs
            };
            state.regs.fs_base = fs;
            state.regs.gs_base = gs;
            b.fs_base = Some(fs);
            b.gs_base = Some(gs);
        }
        let info = b.frame.siginfo(slot);
        self.trapped = false;
        // A seccomp trap of an x86-64 syscall; a 32-bit one (int 0x80) is
        // not served and is reported below as SIGSYS.
        if info.signo == libc::SIGSYS
            && info.code == SYS_SECCOMP
            && info.arch == code::AUDIT_ARCH_X86_64
        {
            // The kernel rolled rax back to the syscall number.
            state.regs.orig_rax = state.regs.rax;
            state.regs.rax = Errno::ENOSYS.as_return();
            self.trapped = !b.frame.is_trampoline();
            return Ok(SwitchEvent::Syscall);
        }
        if self.patching && info.signo == libc::SIGILL && state.regs.rip == code::tramp_fallback() {
            // The trampoline found a GS base of the application's own:
            // rcx holds the return address and nr, ax the arithmetic flags
            // (lahf; seto al) it had on entry. Make the syscall of it.
            let r = &mut state.regs;
            let (packed, ax) = (r.rcx, r.rax);
            const ARITH: u64 = 0x8d5;
            let flags = (r.eflags & !ARITH) | ((ax >> 8) & 0xd5) | ((ax & 1) << 11);
            r.eflags = flags;
            r.r11 = flags;
            r.rip = packed & ((1 << 48) - 1);
            r.rcx = r.rip;
            r.orig_rax = packed >> 48;
            r.rax = Errno::ENOSYS.as_return();
            return Ok(SwitchEvent::Syscall);
        }
        if self.patching
            && info.signo == libc::SIGILL
            && state.regs.rip == code::tramp_fallback_rax()
        {
            // The second entry, with a number beyond 16 bits: r11 holds
            // it, rcx the return address, ax the flags.
            let r = &mut state.regs;
            let ax = r.rax;
            const ARITH: u64 = 0x8d5;
            let flags = (r.eflags & !ARITH) | ((ax >> 8) & 0xd5) | ((ax & 1) << 11);
            r.eflags = flags;
            r.orig_rax = r.r11;
            r.r11 = flags;
            r.rip = r.rcx;
            r.rax = Errno::ENOSYS.as_return();
            return Ok(SwitchEvent::Syscall);
        }
        state.regs.orig_rax = u64::MAX;
        // Signals a process sent (our interrupt, or a stray kill from the
        // host) have si_code <= 0 and only mean "come back to the Sentry".
        if info.signo == SIGNAL_INTERRUPT || info.code <= 0 {
            self.interrupter.pending.store(false, Ordering::SeqCst);
            return Ok(SwitchEvent::Interrupt);
        }
        b.load_fp(&mut state.fp, self.spin.max)?;
        let access = (info.signo == libc::SIGSEGV && trapno == 14).then(|| {
            // Page-fault error code: bit 1 write, bit 4 instruction fetch.
            let write = err & 2 != 0;
            let execute = err & 16 != 0;
            AccessType {
                read: !write && !execute,
                write,
                execute,
            }
        });
        Ok(SwitchEvent::Signal {
            info: SignalInfo {
                signo: info.signo,
                code: info.code,
                addr: info.addr,
            },
            access,
        })
    }

    fn pull_full_state(
        &mut self,
        space: &dyn AddressSpace,
        state: &mut ArchState,
    ) -> Result<(), PlatformError> {
        // Only the thread that ran last holds newer state than `state`.
        if let Some(idx) = self.find(space_of(space)) {
            if Some(idx) == self.current {
                let b = &mut self.threads[idx];
                if self.regs_replaced {
                    b.partial = None;
                } else {
                    b.complete_regs(&mut state.regs);
                }
                if !self.fp_dirty {
                    b.load_fp(&mut state.fp, self.spin.max)?;
                }
            }
        }
        Ok(())
    }

    fn full_state_changed(&mut self) {
        self.fp_dirty = true;
        self.regs_replaced = true;
    }

    fn expect_busy(&mut self) {
        if let (None, Some(i)) = (&self.busy, self.current) {
            let slot = self.threads[i].slot.clone();
            slot.mem
                .u32_at(MSG_BUSY as usize)
                .store(1, Ordering::Relaxed);
            self.busy = Some(slot);
        }
    }

    fn interrupter(&self) -> Arc<dyn Interrupter> {
        self.interrupter.clone()
    }

    fn syscall_trapped(&self) -> bool {
        self.trapped
    }

    fn reports_app_tsc(&self) -> bool {
        true
    }

    fn app_tsc(&self) -> Option<(u64, u64)> {
        self.app_tsc
    }
}

impl Drop for SystrapContext {
    fn drop(&mut self) {
        for b in self.threads.drain(..) {
            // An address space that is gone reaped its threads already.
            if let Some(space) = b.space.upgrade() {
                space.park_or_release(&b.slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the tests' application code sits.
    const CODE: u64 = 0x10_0000;

    /// A new address space with `code` mapped read-execute at [`CODE`].
    fn space_with_code(p: &SystrapPlatform, code: &[u8]) -> Arc<dyn AddressSpace> {
        let fd = sys::memfd(c"systrap-test-code", PAGE).unwrap();
        let file = std::fs::File::from(fd);
        std::os::unix::fs::FileExt::write_all_at(&file, code, 0).unwrap();
        let space = p.new_address_space().unwrap();
        space
            .map_file(CODE, PAGE, file.as_fd(), 0, AccessType::from_prot(5), false)
            .unwrap();
        space
    }

    #[test]
    fn filter_jumps_land_on_returns() {
        let f = code::filter();
        let n = f.len();
        assert_eq!(f[n - 2].k, code::SECCOMP_RET_TRAP);
        assert_eq!(f[n - 1].k, code::SECCOMP_RET_ALLOW);
        for (i, insn) in f.iter().enumerate() {
            if insn.code & 0x07 == 0x05 {
                assert!(i + 1 + (insn.jt as usize) < n);
                assert!(i + 1 + (insn.jf as usize) < n);
            }
        }
    }

    #[test]
    fn configuration_fields_do_not_overlap() {
        for w in code::CFG_FIELDS.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "{:?} overlaps {:?}", w[0], w[1]);
        }
        // Every signal stays blocked while the handler runs, whatever else
        // the configuration page holds.
        let image = code::image(true, u64::MAX / 3);
        assert_eq!(code::image_sa_mask(&image), u64::MAX);
    }

    #[test]
    fn stub_code_fits_its_page() {
        let image = code::image(false, 1000);
        assert_eq!(image.len() as u64, code::IMAGE_SIZE);
        assert!(code::server_clone_stop() > code::server_clone_entry());
    }

    #[test]
    fn spin_budgets_shrink_when_answers_are_slow_and_recover() {
        let max = Duration::from_micros(20);
        let mut b = max;
        for want in [10_000, 5_000, 5_000, 5_000] {
            b = Spin::adapt(b, Duration::from_millis(1), max);
            assert_eq!(b, Duration::from_nanos(want));
        }
        assert_eq!(Spin::adapt(b, Duration::from_micros(3), max), max);
        // No spinning at all where the maximum is zero (one CPU).
        assert_eq!(
            Spin::adapt(Duration::ZERO, Duration::ZERO, Duration::ZERO),
            Duration::ZERO
        );
    }

    /// The rarest path of a patched syscall, made to happen: an interrupt
    /// that reaches the thread after the Sentry resumed it but before it
    /// left the trampoline, while its FP state is still only in its
    /// registers. The handler adopts the trampoline's frame and must take
    /// the FP state from the kernel's frame.
    #[test]
    fn an_interrupt_adopted_in_the_trampoline_keeps_the_fp_registers() {
        const XMM1: u64 = 0x5eed_0000_1234_abcd;
        let p = SystrapPlatform::with_patching(true).expect("systrap works here");
        assert!(p.patching(), "this host patches syscalls (FSGSBASE)");
        // movq %rdi,%xmm1; lea 1f(%rip),%rcx; movabs $(39 << 48),%r11;
        // or %r11,%rcx; movabs $tramp_entry,%rax; jmp *%rax;
        // 1: movq %xmm1,%rsi; mov $39,%eax; syscall (trapped)
        let mut code = vec![0x66, 0x48, 0x0f, 0x6e, 0xcf];
        code.extend([0x48, 0x8d, 0x0d, 25, 0, 0, 0]); // 1f is 25 bytes on
        code.extend([0x49, 0xbb]);
        code.extend((39u64 << 48).to_le_bytes());
        code.extend([0x4c, 0x09, 0xd9]);
        code.extend([0x48, 0xb8]);
        code.extend(code::tramp_entry().to_le_bytes());
        code.extend([0xff, 0xe0]);
        code.extend([0x66, 0x48, 0x0f, 0x7e, 0xce, 0xb8, 39, 0, 0, 0, 0x0f, 0x05]);
        let space = space_with_code(&p, &code);
        let mut ctx = p.context();
        let mut st = p.initial_state();
        st.regs.rip = CODE;
        st.regs.rdi = XMM1;
        assert_eq!(
            ctx.switch(space.as_ref(), &mut st).unwrap(),
            SwitchEvent::Syscall
        );
        assert!(!ctx.syscall_trapped(), "the trampoline reported it");
        assert_eq!(st.regs.orig_rax, 39);
        let after = CODE + code.len() as u64 - 12;
        assert_eq!(st.regs.rip, after);

        // The thread sleeps on the futex by now; stop it there, resume it
        // (RESUME written, nobody to see it), interrupt it, let it go on:
        // the interrupt is handled before it looks at the state word.
        std::thread::sleep(Duration::from_millis(20));
        let tid = ctx.threads[0].slot.tid();
        let stopped = || {
            std::fs::read_to_string(format!("/proc/{tid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('T'))
            })
        };
        sys::tgkill(tid, tid, libc::SIGSTOP).unwrap();
        while !stopped() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let interrupter = ctx.interrupter();
        let slot = ctx.threads[0].slot.clone();
        st.regs.rax = 77;
        let (ev, mut ctx, mut st, space) = std::thread::scope(|s| {
            let run = s.spawn(move || {
                let ev = ctx.switch(space.as_ref(), &mut st).unwrap();
                (ev, ctx, st, space)
            });
            let state = slot.mem.u32_at(MSG_STATE as usize);
            while state.load(Ordering::SeqCst) != STATE_RESUME {
                std::thread::sleep(Duration::from_millis(1));
            }
            interrupter.interrupt();
            sys::tgkill(tid, tid, libc::SIGCONT).unwrap();
            run.join().unwrap()
        });
        assert_eq!(ev, SwitchEvent::Interrupt);
        assert_eq!(st.regs.rax, 77, "the interrupted state is the resumed one");
        ctx.pull_full_state(space.as_ref(), &mut st).unwrap();
        let xmm1 = u64::from_le_bytes(st.fp.as_bytes()[176..184].try_into().unwrap());
        assert_eq!(xmm1, XMM1, "FP state adopted from the kernel's frame");
        // And the thread goes on with it.
        assert_eq!(
            ctx.switch(space.as_ref(), &mut st).unwrap(),
            SwitchEvent::Syscall
        );
        assert_eq!(st.regs.rsi, XMM1);
    }

    /// `expect_busy` flags the parked thread's slot until the next switch
    /// resumes it, and a stub that sees the flag still goes to sleep in
    /// the end (its extra spinning is bounded). How much longer it stays
    /// awake depends on timing; seq_read measures it (the stub's futex
    /// calls fell from about 20,000 to about 1,000 per run).
    #[test]
    fn a_busy_flag_lasts_one_event_and_bounds_the_spin() {
        let p = SystrapPlatform::with_patching(false).expect("systrap works here");
        // mov $39,%eax; syscall; jmp back
        let code = [0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7];
        let space = space_with_code(&p, &code);
        let mut ctx = p.context();
        let mut st = p.initial_state();
        st.regs.rip = CODE;
        let syscall = |ctx: &mut SystrapContext, st: &mut ArchState| {
            assert_eq!(
                ctx.switch(space.as_ref(), st).unwrap(),
                SwitchEvent::Syscall
            );
        };
        syscall(&mut ctx, &mut st);
        let slot = ctx.threads[0].slot.clone();
        let busy = slot.mem.u32_at(MSG_BUSY as usize);
        ctx.expect_busy();
        assert_eq!(busy.load(Ordering::SeqCst), 1);
        syscall(&mut ctx, &mut st);
        assert_eq!(busy.load(Ordering::SeqCst), 0, "cleared by the resume");
        // Flagged for good (as only a broken Sentry would leave it): the
        // stub spins its extra budgets and sleeps all the same.
        busy.store(1, Ordering::SeqCst);
        syscall(&mut ctx, &mut st);
        let sleeping = slot.mem.u32_at(MSG_STUB_SLEEPING as usize);
        let deadline = Instant::now() + Duration::from_secs(5);
        while sleeping.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            sleeping.load(Ordering::SeqCst),
            1,
            "the stub sleeps in the end"
        );
        syscall(&mut ctx, &mut st);
    }

    #[test]
    fn slots_stay_below_the_ptrace_stub_page() {
        let end = SLOTS_BASE + MAX_SLOTS as u64 * SLOT_SIZE;
        assert!(end <= crate::ptrace::STUB_ADDR);
        assert_eq!(SLOTS_BASE % SLOT_SIZE, 0);
    }
}
