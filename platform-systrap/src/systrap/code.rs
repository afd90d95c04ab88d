//! The systrap stub code, the read-only configuration page next to it, and
//! the seccomp filter every stub thread installs.
//!
//! The code is written here as assembly and assembled into the Sentry's own
//! text (section `.text.runsc_systrap`); its bytes, from
//! `runsc_systrap_start` to `runsc_systrap_end`, are copied into a memory
//! file that every stub maps read-only and executable at [`CODE_ADDR`]. It
//! is position-independent: jumps are relative and the only data it reads
//! is the configuration page, reached `rip`-relative one page above the
//! code's first byte. None of it runs in the Sentry.

use super::layout::*;

/// Where the stub code sits in every stub process.
pub const CODE_ADDR: u64 = SYSTRAP_BASE;
/// Where the read-only configuration page sits: right after the code page.
pub const CONFIG_ADDR: u64 = SYSTRAP_BASE + PAGE;
/// Offset from the code of the read-only table of every slot's `stack_t`
/// (signal stack), after the configuration page.
const STACKS_OFF: u64 = 2 * PAGE;
/// Bytes of the stub image: code, configuration, `stack_t` table.
pub const IMAGE_SIZE: u64 = STACKS_OFF + (MAX_SLOTS as u64 * 24).next_multiple_of(PAGE);
const _: () = assert!(CODE_ADDR + IMAGE_SIZE <= REQ_ADDR);
const _: () = assert!(REP_ADDR + PAGE <= SLOTS_BASE);

// Offsets in the configuration page.
/// `struct kernel_sigaction` for every signal the stub handles.
const CFG_SIGACTION: u64 = 0x00;
/// `struct sock_fprog` pointing at the filter below.
const CFG_FPROG: u64 = 0x20;
/// Nonzero when the handler may use `rdfsbase`/`rdgsbase`.
const CFG_FSGSBASE: u64 = 0x30;
/// An empty signal set for `rt_sigprocmask`.
const CFG_EMPTY_MASK: u64 = 0x38;
/// The most TSC cycles the handler spins waiting for the Sentry before it
/// sleeps on the futex (u64); the Sentry sets the budget for each wait
/// in the slot (`MSG_SPIN_CYCLES`), at most this.
const CFG_SPIN_CYCLES: u64 = 0x40;
/// The first slot's address and one past the last's (u64 each): the
/// syscall trampoline takes the GS base for its slot only inside them.
const CFG_SLOTS_LO: u64 = 0x48;
const CFG_SLOTS_HI: u64 = 0x50;
/// The Sentry's process id (u32): every stub process and thread is its
/// child, and checks so right after asking for its parent-death signal
/// (a parent that died before that would never send it).
const CFG_SENTRY_PID: u64 = 0x58;
/// The seccomp filter's instructions.
const CFG_FILTER: u64 = 0x80;

/// The configuration fields, (offset, size), in address order; a test
/// checks that they do not overlap.
#[cfg(test)]
pub const CFG_FIELDS: [(u64, u64); 9] = [
    (CFG_SIGACTION, 32),
    (CFG_FPROG, 16),
    (CFG_FSGSBASE, 4),
    (CFG_EMPTY_MASK, 8),
    (CFG_SPIN_CYCLES, 8),
    (CFG_SLOTS_LO, 8),
    (CFG_SLOTS_HI, 8),
    (CFG_SENTRY_PID, 4),
    (CFG_FILTER, 8),
];

/// The `sa_mask` the image gives every handler (for tests).
#[cfg(test)]
pub fn image_sa_mask(image: &[u8]) -> u64 {
    let off = (PAGE + CFG_SIGACTION + 24) as usize;
    u64::from_le_bytes(image[off..off + 8].try_into().expect("8 bytes"))
}

std::arch::global_asm!(
    // The handoff, for the handler and the trampoline alike (rbx = the
    // slot): publish the event, waking the Sentry only if it sleeps; spin
    // a while (the Sentry's TSC budget, at most the configured one; up to
    // three budgets while the Sentry says it is busy computing the
    // answer, MSG_BUSY) for its answer, then sleep on the futex. Goes on
    // to `resumed` after a spin, and falls through after a sleep, once
    // the thread has cleared its sleeping flag: only a thread that slept
    // writes that word, as a store after a spin would take the line back
    // from the Sentry for nothing.
    ".macro stub_handoff published, resumed",
    "2:",
    "mov dword ptr [rbx + {state}], {event}",
    "\\published:",
    "xor r8d, r8d", // budgets added (see below)
    "mfence",
    "cmp dword ptr [rbx + {sentry_sleeping}], 0",
    "je 5f",
    "mov eax, 202", // futex(&state, FUTEX_WAKE, 1)
    "lea rdi, [rbx + {state}]",
    "mov esi, 1",
    "mov edx, 1",
    "syscall",
    "5:",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "mov rsi, rax",
    "mov eax, dword ptr [rbx + {spin}]",
    "mov rdx, [rip + .Lsystrap_base + {page} + {cfg_spin_cycles}]",
    "cmp rax, rdx",
    "cmova rax, rdx",
    "add rsi, rax",
    "6:",
    "mov eax, dword ptr [rbx + {state}]",
    "cmp eax, {resume}",
    "je \\resumed",
    "cmp eax, {save_fp}",
    "je 4f",
    "pause",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "cmp rax, rsi",
    "jb 6b",
    // Out of budget: spin up to two budgets more if the Sentry said it is
    // busy with this event (the line is read only here).
    "cmp r8d, 2",
    "jae 7f",
    "cmp dword ptr [rbx + {busy}], 0",
    "je 7f",
    "inc r8d",
    "jmp 5b",
    "7:",
    "mov dword ptr [rbx + {stub_sleeping}], 1",
    "mfence",
    "mov eax, dword ptr [rbx + {state}]",
    "cmp eax, {resume}",
    "je 8f",
    "cmp eax, {save_fp}",
    "je 3f",
    "mov eax, 202", // futex(&state, FUTEX_WAIT, EVENT, NULL)
    "lea rdi, [rbx + {state}]",
    "xor esi, esi",
    "mov edx, {event}",
    "xor r10d, r10d",
    "syscall",
    "jmp 7b",
    // SAVE_FP: the Sentry wants the FP state of a thread parked in the
    // trampoline, which does not save it on its way in: XSAVE it into
    // the trampoline's frame and report the event again.
    "3:",
    "mov dword ptr [rbx + {stub_sleeping}], 0",
    "4:",
    "mov eax, [rbx + {fpsw} + 8]",
    "mov edx, [rbx + {fpsw} + 12]",
    "xsave64 [rbx + {tf_fp}]",
    "jmp 2b",
    "8:",
    "mov dword ptr [rbx + {stub_sleeping}], 0",
    ".endm",
    // Store `reg` at `off` in the trampoline frame's registers (`base` =
    // the slot) unless the frame holds it already: a store would take the
    // cache line from the Sentry's core, and its next read of the line
    // would have to fetch it back.
    ".macro tf_keep base, off, reg",
    "cmp [\\base + {tf_mc} + \\off], \\reg",
    "je 1f",
    "mov [\\base + {tf_mc} + \\off], \\reg",
    "1:",
    ".endm",
    // The same for the copy of a syscall's own registers in the message
    // words (MSG_ARGS).
    ".macro arg_keep base, off, reg",
    "cmp [\\base + {args} + \\off], \\reg",
    "je 1f",
    "mov [\\base + {args} + \\off], \\reg",
    "1:",
    ".endm",
    // The FS base the Sentry asked for (rbx = the slot), with `wrfsbase`.
    ".macro stub_set_fs",
    "cmp dword ptr [rbx + {set_fs}], 0",
    "je 1f",
    "mov rax, [rbx + {fs_base}]",
    "wrfsbase rax",
    "mov dword ptr [rbx + {set_fs}], 0",
    "1:",
    ".endm",
    ".pushsection .text.runsc_systrap,\"ax\",@progbits",
    ".p2align 6",
    ".globl runsc_systrap_start",
    "runsc_systrap_start:",
    ".Lsystrap_base:",
    // ---- A new stub thread, cloned by the syscall thread (below) onto
    // its slot's stack. It uses no stack (other application threads could
    // write it) and reads only registers and the read-only configuration
    // page, so nothing the application does can change what it installs.
    ".Lthread_setup:",
    "mov r15, rsp",
    "and r15, -{slot}", // r15 = the slot (per-thread shared memory)
    // prctl(PR_SET_PDEATHSIG, SIGKILL): die with the Sentry's thread that
    // is our parent; if the Sentry is gone already, so are we.
    "mov eax, 157",
    "mov edi, 1",
    "mov esi, 9",
    "syscall",
    "test rax, rax",
    "jnz 3f",
    "mov eax, 110", // getppid
    "syscall",
    "cmp eax, dword ptr [rip + .Lsystrap_base + {page} + {cfg_sentry_pid}]",
    "mov rax, -3", // ESRCH
    "jne 3f",
    // sigaltstack(&stacks[slot index], NULL), from the read-only table.
    "mov rdi, r15",
    "mov rax, {slots_base}",
    "sub rdi, rax",
    "shr rdi, {slot_shift}",
    "imul rdi, rdi, 24",
    "lea rax, [rip + .Lsystrap_base + {stacks}]",
    "add rdi, rax",
    "mov eax, 131",
    "xor esi, esi",
    "syscall",
    "test rax, rax",
    "jnz 3f",
    // rt_sigaction(sig, &config.sigaction, NULL, 8) for SIGSYS, SIGSEGV,
    // SIGBUS, SIGFPE, SIGILL, SIGTRAP and SIGCHLD (the interrupt signal).
    ".irp sig, 31, 11, 7, 8, 4, 5, 17",
    "mov eax, 13",
    "mov edi, \\sig",
    "lea rsi, [rip + .Lsystrap_base + {page} + {cfg_sigaction}]",
    "xor edx, edx",
    "mov r10d, 8",
    "syscall",
    "test rax, rax",
    "jnz 3f",
    ".endr",
    // rt_sigprocmask(SIG_SETMASK, &empty, NULL, 8)
    "mov eax, 14",
    "mov edi, 2",
    "lea rsi, [rip + .Lsystrap_base + {page} + {cfg_empty_mask}]",
    "xor edx, edx",
    "mov r10d, 8",
    "syscall",
    "test rax, rax",
    "jnz 3f",
    // prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    "mov eax, 157",
    "mov edi, 38",
    "mov esi, 1",
    "xor edx, edx",
    "xor r10d, r10d",
    "xor r8d, r8d",
    "syscall",
    "test rax, rax",
    "jnz 3f",
    // seccomp(SECCOMP_SET_MODE_FILTER, 0, &config.fprog)
    "mov eax, 317",
    "mov edi, 1",
    "xor esi, esi",
    "lea rdx, [rip + .Lsystrap_base + {page} + {cfg_fprog}]",
    "syscall",
    "test rax, rax",
    "jnz 3f",
    // The first trap: getpid, which the filter refuses even from here.
    // The handler reports it and parks; the Sentry resumes the thread
    // into application code by rewriting this signal frame.
    "mov eax, 39",
    "syscall",
    "ud2",
    // Setup failed: leave the error for the Sentry and exit.
    "3:",
    "mov [r15 + {setup_err}], rax",
    "mov eax, 60",
    "mov edi, 1",
    "syscall",
    "ud2",
    // ---- The signal handler for every trap, fault and interrupt. Runs on
    // the slot's signal stack with every signal blocked: rdi = signo,
    // rsi = &siginfo, rdx = &ucontext, [rsp] = the restorer address.
    ".p2align 4",
    ".globl runsc_systrap_handler",
    "runsc_systrap_handler:",
    "mov rbx, rsp",
    "and rbx, -{slot}", // rbx = the slot
    // The syscall trampoline (below) is the only stub code that runs with
    // signals unblocked. A fault there is reported as any other; a
    // signal sent by a process (our interrupt) is either dropped, because
    // the trampoline is on its way to report an event anyway (the
    // Sentry's interrupt stays pending until its next switch), or, once
    // the Sentry has resumed the thread, reported in the trampoline's
    // place, with the trampoline's frame (the state the Sentry wrote) as
    // the interrupted context.
    "mov rax, [rdx + {uc_rip}]",
    "lea rcx, [rip + .Ltramp_start]",
    "cmp rax, rcx",
    "jb .Lh_report",
    "lea rcx, [rip + .Ltramp_end]",
    "cmp rax, rcx",
    "jae .Lh_report",
    "cmp edi, 17",
    "je .Lh_tramp",
    "cmp dword ptr [rsi + 8], 0",
    "jg .Lh_report",
    ".Lh_tramp:",
    "lea rcx, [rip + .Ltramp_exit]",
    "cmp rax, rcx",
    "jae .Lh_adopt",
    "lea rcx, [rip + .Ltramp_published]",
    "cmp rax, rcx",
    "jb .Lh_drop",
    "cmp dword ptr [rbx + {state}], {resume}",
    "je .Lh_adopt",
    ".Lh_drop:",
    "add rsp, 8",
    "mov eax, 15",
    "syscall",
    "ud2",
    // Report the interrupt from the trampoline's frame, with the thread
    // pointers the Sentry asked for already in place.
    ".Lh_adopt:",
    "mov dword ptr [rbx + {stub_sleeping}], 0",
    // The trampoline's frame holds the thread's FP state only if the
    // Sentry wrote it there (FP_LOAD); otherwise the registers held it
    // and the kernel saved them in its own frame: copy them over (at
    // most the trampoline's XSAVE area, whatever size the slot claims).
    "cmp dword ptr [rbx + {fp_load}], 0",
    "jne 1f",
    "mov r12, rsi",
    "mov rsi, [rdx + {uc_fpstate}]",
    "lea rdi, [rbx + {tf_fp}]",
    "mov ecx, [rbx + {fpsw} + 16]", // xstate_size
    "mov eax, {tf_fp_max}",
    "cmp ecx, eax",
    "cmova ecx, eax",
    "rep movsb",
    "mov rsi, r12",
    "1:",
    "stub_set_fs",
    "cmp dword ptr [rbx + {set_gs}], 0",
    "je 1f",
    "mov rax, [rbx + {gs_base}]",
    "wrgsbase rax",
    "mov dword ptr [rbx + {set_gs}], 0",
    "1:",
    "lea rsp, [rbx + {tf_pret}]",
    "lea rdx, [rbx + {tf_uc}]",
    ".Lh_report:",
    "mov [rbx + {siginfo_ptr}], rsi",
    "mov [rbx + {uctx_ptr}], rdx",
    "cmp dword ptr [rip + .Lsystrap_base + {page} + {cfg_fsgsbase}], 0",
    "je 4f",
    "rdfsbase rax",
    "mov [rbx + {fs_base}], rax",
    "rdgsbase rax",
    "mov [rbx + {gs_base}], rax",
    "4:",
    "stub_handoff .Lh_published, 9f",
    // Resumed: the Sentry rewrote the signal frame. Apply the thread
    // pointers it asked for, then return into the application.
    "9:",
    "cmp dword ptr [rbx + {set_fs}], 0",
    "je 12f",
    "mov dword ptr [rbx + {set_fs}], 0",
    "mov eax, 158", // arch_prctl(ARCH_SET_FS, fs_base)
    "mov edi, 0x1002",
    "mov rsi, [rbx + {fs_base}]",
    "syscall",
    "12:",
    "cmp dword ptr [rbx + {set_gs}], 0",
    "je 13f",
    "mov dword ptr [rbx + {set_gs}], 0",
    "mov eax, 158", // arch_prctl(ARCH_SET_GS, gs_base)
    "mov edi, 0x1001",
    "mov rsi, [rbx + {gs_base}]",
    "syscall",
    "13:",
    // From the trampoline's frame (adopted above), rax is in the message
    // words.
    "lea rax, [rbx + {tf_pret}]",
    "cmp rsp, rax",
    "jne 14f",
    "mov rax, [rbx + {rax_word}]",
    "mov [rbx + {tf_mc} + 104], rax",
    "14:",
    "add rsp, 8", // rt_sigreturn expects rsp just past the restorer slot
    "mov eax, 15",
    "syscall",
    "ud2",
    // ---- The syscall thread. The Sentry injects clone() here through the
    // template stub's first (traced) thread; the parent stops on the int3
    // and the child, with rax = 0, starts serving. It uses no stack and
    // keeps its state in registers: r12 = the request page (read-only
    // here, so only the Sentry writes it), r13 = the reply page, r14 =
    // the sequence number of the last request served.
    ".globl runsc_systrap_server_clone",
    "runsc_systrap_server_clone:",
    "syscall",
    "test rax, rax",
    "jz 20f",
    "int3",
    ".globl runsc_systrap_server_clone_stop",
    "runsc_systrap_server_clone_stop:",
    "ud2",
    "20:",
    // prctl(PR_SET_PDEATHSIG, SIGKILL): die with the Sentry (and exit if
    // it is gone already).
    "mov eax, 157",
    "mov edi, 1",
    "mov esi, 9",
    "syscall",
    "test rax, rax",
    "jnz 29f",
    "mov eax, 110",
    "syscall",
    "cmp eax, dword ptr [rip + .Lsystrap_base + {page} + {cfg_sentry_pid}]",
    "jne 29f",
    "mov r12, {req_addr}",
    "mov r13, {rep_addr}",
    "xor r14d, r14d",
    // Wait for a new sequence number on the request page.
    "21:",
    "mov eax, dword ptr [r12 + {req_seq}]",
    "cmp eax, r14d",
    "jne 22f",
    "mov eax, 202", // futex(&req.seq, FUTEX_WAIT, last, NULL)
    "lea rdi, [r12 + {req_seq}]",
    "xor esi, esi",
    "mov edx, r14d",
    "xor r10d, r10d",
    "syscall",
    "jmp 21b",
    "22:",
    "mov r14d, eax",
    "mov rdi, [r12 + {req_args}]",
    "mov rsi, [r12 + {req_args} + 8]",
    "mov rdx, [r12 + {req_args} + 16]",
    "mov r10, [r12 + {req_args} + 24]",
    "mov r8, [r12 + {req_args} + 32]",
    "mov r9, [r12 + {req_args} + 40]",
    "mov eax, dword ptr [r12 + {req_op}]",
    "cmp eax, {op_mmap}",
    "je 23f",
    "cmp eax, {op_munmap}",
    "je 24f",
    "cmp eax, {op_thread}",
    "je 25f",
    "cmp eax, {op_fork}",
    "je 26f",
    "mov rax, -22", // EINVAL: not a request we serve
    "jmp 28f",
    "23:",
    "mov eax, 9", // mmap(args)
    "syscall",
    "jmp 28f",
    "24:",
    "mov eax, 11", // munmap(args)
    "syscall",
    "jmp 28f",
    // A new stub thread: clone(THREAD_FLAGS, sp, ptid, ctid); the child
    // runs the stub thread setup above on its slot's stack.
    "25:",
    "mov edi, {thread_flags}",
    "mov eax, 56",
    "syscall",
    "test rax, rax",
    "jz .Lthread_setup",
    "jmp 28f",
    // A new address space: fork this stub (clone(FORK_FLAGS)). The child
    // is a copy of this thread alone, in a copy of this (thread-less)
    // stub; it maps its own request pages from the descriptor in r8 (the
    // file table is the Sentry's, shared) and serves them.
    "26:",
    "mov edi, {fork_flags}",
    "xor esi, esi",
    "xor edx, edx",
    "xor r10d, r10d",
    "mov eax, 56",
    "syscall",
    "test rax, rax",
    "jnz 28f",
    "mov eax, 157", // prctl(PR_SET_PDEATHSIG, SIGKILL), which fork cleared
    "mov edi, 1",
    "mov esi, 9",
    "syscall",
    "test rax, rax",
    "jnz 29f",
    "mov eax, 110", // and the Sentry must still be our parent
    "syscall",
    "cmp eax, dword ptr [rip + .Lsystrap_base + {page} + {cfg_sentry_pid}]",
    "jne 29f",
    "mov rdi, r12", // mmap(req, PAGE, PROT_READ, MAP_SHARED|MAP_FIXED, fd, 0)
    "mov esi, {page}",
    "mov edx, 1",
    "mov r10d, 0x11",
    "xor r9d, r9d",
    "mov eax, 9",
    "syscall",
    "cmp rax, r12",
    "jne 29f",
    "mov rdi, r13", // mmap(rep, PAGE, PROT_READ|PROT_WRITE, ..., fd, PAGE)
    "mov esi, {page}",
    "mov edx, 3",
    "mov r10d, 0x11",
    "mov r9d, {page}",
    "mov eax, 9",
    "syscall",
    "cmp rax, r13",
    "jne 29f",
    "xor r14d, r14d",
    "jmp 21b",
    // Reply: the result, then the sequence number; wake the Sentry only
    // if it sleeps.
    "28:",
    "mov [r13 + {rep_ret}], rax",
    "mov dword ptr [r13 + {rep_done}], r14d",
    "mfence",
    "cmp dword ptr [r13 + {rep_sentry_sleeping}], 0",
    "je 21b",
    "mov eax, 202", // futex(&rep.done, FUTEX_WAKE, 1)
    "lea rdi, [r13 + {rep_done}]",
    "mov esi, 1",
    "mov edx, 1",
    "syscall",
    "jmp 21b",
    "29:",
    "mov eax, 60", // exit(1)
    "mov edi, 1",
    "syscall",
    "ud2",
    // ---- The syscall trampoline: where a patched `mov $nr,%eax; syscall`
    // jumps (through its entry in the table the Sentry writes below
    // 2 GiB), with rcx = the return address | nr << 48. rax, rcx and r11
    // are the application's to lose (a syscall clobbers them); everything
    // else, the flags included, is saved as a trap would: a signal frame
    // (registers, XSAVE area with the kernel's software-reserved bytes)
    // at the bottom of the slot's signal stack, then the handler's
    // handoff, then `rt_sigreturn` from that frame. The slot is the GS
    // base (the platform keeps it there while the application's is 0);
    // any other GS base takes the fallback below.
    ".p2align 4",
    ".Ltramp_start:",
    // The second entry: the number in rax (any value), rcx = the return
    // address; numbers that do not fit 16 bits take the fallback.
    ".globl runsc_systrap_tramp_entry_rax",
    "runsc_systrap_tramp_entry_rax:",
    "mov r11, rax",
    "lahf",
    "seto al",
    "cmp r11, 0xffff",
    "ja .Ltramp_fallback_rax",
    "shl r11, 48",
    "or rcx, r11",
    "jmp 1f",
    ".globl runsc_systrap_tramp_entry",
    "runsc_systrap_tramp_entry:",
    "lahf",
    "seto al", // ax = the arithmetic flags
    "1:",
    "rdgsbase r11",
    "cmp r11, qword ptr [rip + .Lsystrap_base + {page} + {cfg_slots_lo}]",
    "jb .Ltramp_fallback",
    "cmp r11, qword ptr [rip + .Lsystrap_base + {page} + {cfg_slots_hi}]",
    "jae .Ltramp_fallback",
    "test r11d, {slot_low}",
    "jnz .Ltramp_fallback",
    // Each register is stored only if the frame does not hold it already
    // (most do not change from one call to the next).
    "tf_keep r11, 0, r8",
    "tf_keep r11, 8, r9",
    "tf_keep r11, 16, r10",
    "tf_keep r11, 32, r12",
    "tf_keep r11, 40, r13",
    "tf_keep r11, 48, r14",
    "tf_keep r11, 56, r15",
    "tf_keep r11, 64, rdi",
    "tf_keep r11, 72, rsi",
    "tf_keep r11, 80, rbp",
    "tf_keep r11, 88, rbx",
    "tf_keep r11, 96, rdx",
    "tf_keep r11, 120, rsp",
    "arg_keep r11, 0, rdi",
    "arg_keep r11, 8, rsi",
    "arg_keep r11, 16, rdx",
    "arg_keep r11, 24, r10",
    "arg_keep r11, 32, r8",
    "arg_keep r11, 40, r9",
    "arg_keep r11, 56, rsp",
    "mov rbx, r11", // rbx = the slot from here on
    "lea rsp, [rbx + {tf_pret}]",
    // rflags: the system flags as they are, the arithmetic ones from ax.
    "pushfq",
    "pop rdi",
    "and rdi, -2262", // ~(CF|PF|AF|ZF|SF|OF)
    "movzx esi, ah",
    "and esi, 0xd5",
    "or rdi, rsi",
    "movzx esi, al",
    "shl esi, 11",
    "or rdi, rsi",
    "tf_keep rbx, 136, rdi", // eflags
    "tf_keep rbx, 24, rdi",  // r11 = rflags, as a syscall leaves it
    "mov rax, rcx",
    "shr rax, 48",
    "mov [rbx + {rax_word}], rax", // rax = nr, as a seccomp trap shows it
    "shl rcx, 16",
    "shr rcx, 16",
    "tf_keep rbx, 128, rcx", // rip
    "tf_keep rbx, 112, rcx", // rcx = rip, as a syscall leaves it
    "arg_keep rbx, 48, rcx",
    // The rest of the frame (segments, FP pointer, flags, the SIGSYS
    // siginfo, the XSAVE area's software-reserved bytes and closing magic)
    // the Sentry wrote when the thread started. The FP registers stay
    // live (nothing here touches them, and the kernel keeps them across
    // the futex calls): the Sentry asks for them when it needs them
    // (SAVE_FP, in the handoff).
    "rdfsbase rax",
    "mov [rbx + {fs_base}], rax",
    "mov [rbx + {gs_base}], rbx",
    "lea rax, [rbx + {tf_info}]",
    "mov [rbx + {siginfo_ptr}], rax",
    "lea rax, [rbx + {tf_uc}]",
    "mov [rbx + {uctx_ptr}], rax",
    "stub_handoff .Ltramp_published, .Ltramp_exit",
    // Resumed: from here on an interrupt is reported, not dropped.
    ".Ltramp_exit:",
    "stub_set_fs",
    // A new GS base: the return below jumps through the old one, so
    // return with rt_sigreturn instead (rare: arch_prctl(ARCH_SET_GS)).
    "cmp dword ptr [rbx + {set_gs}], 0",
    "je 1f",
    "mov rax, [rbx + {gs_base}]",
    "wrgsbase rax",
    "mov dword ptr [rbx + {set_gs}], 0",
    // As the handler's signal return, but here, inside the trampoline,
    // where an interrupt is adopted rather than reported from stub code.
    "mov rax, [rbx + {rax_word}]",
    "mov [rbx + {tf_mc} + 104], rax",
    "add rsp, 8",
    "mov eax, 15",
    "syscall",
    "ud2",
    // Return without a syscall: the FP state if the Sentry changed it,
    // then the flags and every general register from the frame (which the
    // Sentry rewrote whole), and a jump to its rip through the GS base,
    // which is still the slot. Nothing else a signal return restores
    // (mask, signal stack, segments) differs on this path.
    "1:",
    "cmp dword ptr [rbx + {fp_load}], 0",
    "je 1f",
    "mov eax, [rbx + {fpsw} + 8]",
    "mov edx, [rbx + {fpsw} + 12]",
    "xrstor64 [rbx + {tf_fp}]",
    "1:",
    "mov rax, [rbx + {tf_mc} + 128]",
    "mov [rbx + {ret_rip}], rax",
    "push qword ptr [rbx + {tf_mc} + 136]",
    "popfq",
    "mov r8, [rbx + {tf_mc} + 0]",
    "mov r9, [rbx + {tf_mc} + 8]",
    "mov r10, [rbx + {tf_mc} + 16]",
    "mov r11, [rbx + {tf_mc} + 24]",
    "mov r12, [rbx + {tf_mc} + 32]",
    "mov r13, [rbx + {tf_mc} + 40]",
    "mov r14, [rbx + {tf_mc} + 48]",
    "mov r15, [rbx + {tf_mc} + 56]",
    "mov rdi, [rbx + {tf_mc} + 64]",
    "mov rsi, [rbx + {tf_mc} + 72]",
    "mov rbp, [rbx + {tf_mc} + 80]",
    "mov rdx, [rbx + {tf_mc} + 96]",
    "mov rax, [rbx + {rax_word}]",
    "mov rcx, [rbx + {tf_mc} + 112]",
    "mov rsp, [rbx + {tf_mc} + 120]",
    "mov rbx, [rbx + {tf_mc} + 88]",
    "jmp qword ptr gs:[{ret_rip}]",
    ".Ltramp_end:",
    // The GS base is not a slot (the application set its own): fault
    // here; the platform makes the syscall of it from rcx and ax.
    ".Ltramp_fallback:",
    ".globl runsc_systrap_tramp_fallback",
    "runsc_systrap_tramp_fallback:",
    "ud2",
    // The same from the second entry, with the number in r11 and the
    // return address in rcx.
    ".Ltramp_fallback_rax:",
    ".globl runsc_systrap_tramp_fallback_rax",
    "runsc_systrap_tramp_fallback_rax:",
    "ud2",
    // ---- sa_restorer (required on x86-64; the handler never returns to it).
    ".globl runsc_systrap_restorer",
    "runsc_systrap_restorer:",
    "mov eax, 15",
    "syscall",
    "ud2",
    ".globl runsc_systrap_end",
    "runsc_systrap_end:",
    ".popsection",
    slot = const SLOT_SIZE,
    page = const PAGE,
    slots_base = const SLOTS_BASE,
    slot_shift = const SLOT_SIZE.trailing_zeros(),
    stacks = const STACKS_OFF,
    setup_err = const MSG_SETUP_ERR,
    siginfo_ptr = const MSG_SIGINFO_PTR,
    uctx_ptr = const MSG_UCTX_PTR,
    fs_base = const MSG_FS_BASE,
    gs_base = const MSG_GS_BASE,
    set_fs = const MSG_SET_FS,
    set_gs = const MSG_SET_GS,
    state = const MSG_STATE,
    stub_sleeping = const MSG_STUB_SLEEPING,
    sentry_sleeping = const MSG_SENTRY_SLEEPING,
    event = const STATE_EVENT,
    resume = const STATE_RESUME,
    cfg_spin_cycles = const CFG_SPIN_CYCLES,
    cfg_sigaction = const CFG_SIGACTION,
    cfg_fprog = const CFG_FPROG,
    cfg_fsgsbase = const CFG_FSGSBASE,
    cfg_empty_mask = const CFG_EMPTY_MASK,
    req_addr = const REQ_ADDR,
    rep_addr = const REP_ADDR,
    req_seq = const REQ_SEQ,
    req_op = const REQ_OP,
    req_args = const REQ_ARGS,
    rep_done = const REP_DONE,
    rep_ret = const REP_RET,
    rep_sentry_sleeping = const REP_SENTRY_SLEEPING,
    op_mmap = const OP_MMAP,
    op_munmap = const OP_MUNMAP,
    op_thread = const OP_THREAD,
    op_fork = const OP_FORK,
    thread_flags = const THREAD_FLAGS,
    fork_flags = const FORK_FLAGS,
    uc_rip = const UC_MCONTEXT_OFF + 128,
    tf_pret = const TF_PRET,
    tf_uc = const TF_UC,
    tf_mc = const TF_UC + UC_MCONTEXT_OFF,
    tf_fp = const TF_FP,
    tf_info = const TF_INFO,
    fpsw = const MSG_FPSW,
    cfg_slots_lo = const CFG_SLOTS_LO,
    cfg_slots_hi = const CFG_SLOTS_HI,
    cfg_sentry_pid = const CFG_SENTRY_PID,
    fp_load = const MSG_FP_LOAD,
    spin = const MSG_SPIN_CYCLES,
    ret_rip = const MSG_RET_RIP,
    rax_word = const MSG_RAX,
    args = const MSG_ARGS,
    save_fp = const STATE_SAVE_FP,
    busy = const MSG_BUSY,
    uc_fpstate = const UC_MCONTEXT_OFF + super::MC_FPSTATE as u64,
    tf_fp_max = const TF_END - 4 - TF_FP,
    slot_low = const SLOT_SIZE - 1,
);

extern "C" {
    fn runsc_systrap_start();
    fn runsc_systrap_handler();
    fn runsc_systrap_restorer();
    fn runsc_systrap_server_clone();
    fn runsc_systrap_server_clone_stop();
    fn runsc_systrap_end();
    fn runsc_systrap_tramp_entry();
    fn runsc_systrap_tramp_fallback();
    fn runsc_systrap_tramp_entry_rax();
    fn runsc_systrap_tramp_fallback_rax();
}

/// The trampoline's entry taking the number in rax.
pub fn tramp_entry_rax() -> u64 {
    CODE_ADDR + offset(runsc_systrap_tramp_entry_rax)
}

/// Where that entry faults for a number beyond 16 bits.
pub fn tramp_fallback_rax() -> u64 {
    CODE_ADDR + offset(runsc_systrap_tramp_fallback_rax)
}

/// The syscall trampoline's entry in every stub.
pub fn tramp_entry() -> u64 {
    CODE_ADDR + offset(runsc_systrap_tramp_entry)
}

/// Where the trampoline faults when the GS base is not a slot.
pub fn tramp_fallback() -> u64 {
    CODE_ADDR + offset(runsc_systrap_tramp_fallback)
}

fn addr(f: unsafe extern "C" fn()) -> u64 {
    f as usize as u64
}

/// Offset of a stub code symbol from the start of the code.
fn offset(f: unsafe extern "C" fn()) -> u64 {
    addr(f) - addr(runsc_systrap_start)
}

/// Where the injected `clone` of a stub's syscall thread starts.
pub fn server_clone_entry() -> u64 {
    CODE_ADDR + offset(runsc_systrap_server_clone)
}

/// Where the injected `clone` of a syscall thread stops (past its `int3`).
pub fn server_clone_stop() -> u64 {
    CODE_ADDR + offset(runsc_systrap_server_clone_stop)
}

/// The memory-file image of the stub's read-only pages: the code, the
/// configuration page, and the table of signal stacks. `spin_cycles` is the
/// handler's spin budget in TSC cycles.
pub fn image(fsgsbase: bool, spin_cycles: u64) -> Vec<u8> {
    let code = crate::sys::code_bytes(
        addr(runsc_systrap_start) as usize,
        addr(runsc_systrap_end) as usize,
    );
    assert!(
        code.len() < PAGE as usize,
        "systrap stub code exceeds a page"
    );
    let mut image = vec![0u8; IMAGE_SIZE as usize];
    image[..PAGE as usize].fill(0xcc);
    image[..code.len()].copy_from_slice(&code);
    // stack_t per slot: ss_sp, ss_flags (int, padded), ss_size.
    for i in 0..MAX_SLOTS {
        let e = STACKS_OFF as usize + 24 * i;
        let sp = SLOTS_BASE + i as u64 * SLOT_SIZE + ALTSTACK_OFF;
        image[e..e + 8].copy_from_slice(&sp.to_le_bytes());
        image[e + 8..e + 16].copy_from_slice(&u64::from(SS_AUTODISARM).to_le_bytes());
        image[e + 16..e + 24].copy_from_slice(&ALTSTACK_SIZE.to_le_bytes());
    }
    let cfg = &mut image[PAGE as usize..STACKS_OFF as usize];
    let put = |cfg: &mut [u8], off: u64, bytes: &[u8]| {
        cfg[off as usize..off as usize + bytes.len()].copy_from_slice(bytes)
    };
    // struct kernel_sigaction: handler, flags, restorer, mask.
    const SA_SIGINFO: u64 = 0x4;
    const SA_ONSTACK: u64 = 0x0800_0000;
    const SA_RESTORER: u64 = 0x0400_0000;
    let handler = CODE_ADDR + offset(runsc_systrap_handler);
    let restorer = CODE_ADDR + offset(runsc_systrap_restorer);
    put(cfg, CFG_SIGACTION, &handler.to_le_bytes());
    put(
        cfg,
        CFG_SIGACTION + 8,
        &(SA_SIGINFO | SA_ONSTACK | SA_RESTORER).to_le_bytes(),
    );
    put(cfg, CFG_SIGACTION + 16, &restorer.to_le_bytes());
    put(cfg, CFG_SIGACTION + 24, &u64::MAX.to_le_bytes()); // block all
    let filter = filter();
    put(cfg, CFG_FPROG, &(filter.len() as u16).to_le_bytes());
    put(
        cfg,
        CFG_FPROG + 8,
        &(CONFIG_ADDR + CFG_FILTER).to_le_bytes(),
    );
    put(cfg, CFG_FSGSBASE, &u32::from(fsgsbase).to_le_bytes());
    put(cfg, CFG_EMPTY_MASK, &0u64.to_le_bytes());
    put(cfg, CFG_SPIN_CYCLES, &spin_cycles.to_le_bytes());
    put(cfg, CFG_SLOTS_LO, &SLOTS_BASE.to_le_bytes());
    put(cfg, CFG_SENTRY_PID, &std::process::id().to_le_bytes());
    put(
        cfg,
        CFG_SLOTS_HI,
        &(SLOTS_BASE + MAX_SLOTS as u64 * SLOT_SIZE).to_le_bytes(),
    );
    let mut off = CFG_FILTER;
    for insn in &filter {
        put(cfg, off, &insn.to_bytes());
        off += 8;
    }
    assert!(off <= PAGE, "seccomp filter exceeds the configuration page");
    image
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Insn {
    fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&self.code.to_le_bytes());
        b[2] = self.jt;
        b[3] = self.jf;
        b[4..8].copy_from_slice(&self.k.to_le_bytes());
        b
    }
}

const LD_ABS_W: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
pub const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
pub const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

// struct seccomp_data offsets.
const D_NR: u32 = 0;
const D_ARCH: u32 = 4;
const D_IP_LO: u32 = 8;
const D_IP_HI: u32 = 12;
const fn d_arg_lo(i: u32) -> u32 {
    16 + 8 * i
}

/// The stub threads' filter. Every syscall traps (SIGSYS) unless it is
/// x86-64, issued from the stub code page, and one of the few the handler
/// makes: `rt_sigreturn`, `futex(FUTEX_WAIT | FUTEX_WAKE)` and
/// `arch_prctl(ARCH_SET_FS | ARCH_SET_GS)`. Application code that jumps
/// into the stub page gains nothing beyond those.
pub fn filter() -> Vec<Insn> {
    // Built back to front is error-prone; instead the two returns sit at
    // fixed places at the end and every jump is computed against them.
    let ld = |k| Insn {
        code: LD_ABS_W,
        jt: 0,
        jf: 0,
        k,
    };
    let mut prog: Vec<(Insn, Option<Target>, Option<Target>)> = Vec::new();
    #[derive(Clone, Copy)]
    enum Target {
        Trap,
        Allow,
        Next,
        /// Skip this many instructions after the next one.
        Skip(usize),
    }
    use Target::*;
    let jeq = |k, t, f| {
        (
            Insn {
                code: JEQ_K,
                jt: 0,
                jf: 0,
                k,
            },
            Some(t),
            Some(f),
        )
    };
    prog.push((ld(D_ARCH), None, None));
    prog.push(jeq(AUDIT_ARCH_X86_64, Next, Trap));
    prog.push((ld(D_IP_HI), None, None));
    prog.push(jeq((CODE_ADDR >> 32) as u32, Next, Trap));
    prog.push((ld(D_IP_LO), None, None));
    // The low half of the code page's range: [lo, lo + PAGE).
    let lo = CODE_ADDR as u32;
    prog.push((
        Insn {
            code: JGE_K,
            jt: 0,
            jf: 0,
            k: lo,
        },
        Some(Next),
        Some(Trap),
    ));
    prog.push((
        Insn {
            code: JGE_K,
            jt: 0,
            jf: 0,
            k: lo + PAGE as u32,
        },
        Some(Trap),
        Some(Next),
    ));
    prog.push((ld(D_NR), None, None));
    prog.push(jeq(libc::SYS_rt_sigreturn as u32, Allow, Next));
    // futex: op (arg 1) must be plain FUTEX_WAIT or FUTEX_WAKE.
    prog.push(jeq(libc::SYS_futex as u32, Next, Skip(3)));
    prog.push((ld(d_arg_lo(1)), None, None));
    prog.push(jeq(libc::FUTEX_WAIT as u32, Allow, Next));
    prog.push(jeq(libc::FUTEX_WAKE as u32, Allow, Trap));
    // arch_prctl: code (arg 0) must be ARCH_SET_FS or ARCH_SET_GS.
    prog.push(jeq(libc::SYS_arch_prctl as u32, Next, Trap));
    prog.push((ld(d_arg_lo(0)), None, None));
    prog.push(jeq(0x1002, Allow, Next));
    prog.push(jeq(0x1001, Allow, Trap));

    // Returns at the end: trap, then allow.
    let trap_at = prog.len();
    let allow_at = trap_at + 1;
    let mut out = Vec::with_capacity(prog.len() + 2);
    for (i, (mut insn, t, f)) in prog.into_iter().enumerate() {
        let rel = |target: Option<Target>| -> u8 {
            let dest = match target {
                None | Some(Next) => i + 1,
                Some(Trap) => trap_at,
                Some(Allow) => allow_at,
                Some(Skip(n)) => i + 1 + n,
            };
            u8::try_from(dest - (i + 1)).expect("BPF jump fits")
        };
        if t.is_some() {
            insn.jt = rel(t);
            insn.jf = rel(f);
        }
        out.push(insn);
    }
    out.push(Insn {
        code: RET_K,
        jt: 0,
        jf: 0,
        k: SECCOMP_RET_TRAP,
    });
    out.push(Insn {
        code: RET_K,
        jt: 0,
        jf: 0,
        k: SECCOMP_RET_ALLOW,
    });
    out
}
