//! Atomic operations on memory that may fault: a host file's page mapped
//! into the Sentry for a futex operation, which the host (or the sandbox,
//! by truncating the file) may take away at any moment.
//!
//! Each primitive is a few instructions of assembly between two labels.
//! A SIGBUS or SIGSEGV whose instruction pointer lies between them is
//! answered by resuming at a return path that reports the signal instead
//! of the value (upstream's `pkg/safecopy` does the same for all of the
//! Sentry's copies; Linux uses exception tables). Any other SIGBUS or
//! SIGSEGV goes to the handler that was installed before ours (Rust's
//! stack-overflow report, or the default action).

use std::sync::{Once, OnceLock};

use abi::Errno;

// Leaf functions with the System V calling convention. Each returns 0 in
// eax after storing the word's (old) value through its last argument; on
// a fault the handler moves rip to `runsc_safe_atomic_fault` with the
// signal number in eax, and its `ret` returns to the caller as if the
// function had returned that number (nothing was pushed before the
// faulting access).
std::arch::global_asm!(
    ".pushsection .text.runsc_safe_atomic,\"ax\",@progbits",
    ".p2align 4",
    ".globl runsc_safe_atomic_start",
    ".hidden runsc_safe_atomic_start",
    "runsc_safe_atomic_start:",
    // u32 load(ptr: rdi, out: rsi)
    ".globl runsc_safe_load32",
    ".hidden runsc_safe_load32",
    "runsc_safe_load32:",
    "mov eax, dword ptr [rdi]",
    "mov dword ptr [rsi], eax",
    "xor eax, eax",
    "ret",
    // compare-exchange(ptr: rdi, current: esi, new: edx, out: rcx): the
    // word's value before, whether or not it was replaced.
    ".globl runsc_safe_cas32",
    ".hidden runsc_safe_cas32",
    "runsc_safe_cas32:",
    "mov eax, esi",
    "lock cmpxchg dword ptr [rdi], edx",
    "mov dword ptr [rcx], eax",
    "xor eax, eax",
    "ret",
    ".globl runsc_safe_atomic_fault",
    ".hidden runsc_safe_atomic_fault",
    "runsc_safe_atomic_fault:",
    "ret",
    ".globl runsc_safe_atomic_end",
    ".hidden runsc_safe_atomic_end",
    "runsc_safe_atomic_end:",
    ".popsection",
);

extern "C" {
    fn runsc_safe_atomic_start();
    fn runsc_safe_atomic_end();
    fn runsc_safe_atomic_fault();
    fn runsc_safe_load32(ptr: *const u32, out: *mut u32) -> i32;
    fn runsc_safe_cas32(ptr: *mut u32, current: u32, new: u32, out: *mut u32) -> i32;
}

/// Load the 32-bit word at `ptr` atomically; EFAULT if the access faults.
///
/// # Safety
/// `ptr` is 4-byte aligned and either readable memory or memory whose
/// access faults (unmapped, or a file page past the end of its file); no
/// Rust reference to it is alive for a non-atomic access.
pub unsafe fn load(ptr: *const u32) -> Result<u32, Errno> {
    install();
    let mut out = 0u32;
    // SAFETY: the caller's contract covers `ptr`; `out` is ours.
    match unsafe { runsc_safe_load32(ptr, &mut out) } {
        0 => Ok(out),
        _ => Err(Errno::EFAULT),
    }
}

/// Replace the word at `ptr` with `new` if it holds `current`, atomically;
/// Ok(Ok(current)) if replaced, Ok(Err(actual)) if not, EFAULT if the
/// access faults (also when the memory is read-only).
///
/// # Safety
/// As [`load`], for a read-write access.
pub unsafe fn compare_exchange(
    ptr: *mut u32,
    current: u32,
    new: u32,
) -> Result<Result<u32, u32>, Errno> {
    install();
    let mut out = 0u32;
    // SAFETY: the caller's contract covers `ptr`; `out` is ours.
    match unsafe { runsc_safe_cas32(ptr, current, new, &mut out) } {
        0 if out == current => Ok(Ok(out)),
        0 => Ok(Err(out)),
        _ => Err(Errno::EFAULT),
    }
}

/// The handlers found installed for SIGSEGV and SIGBUS before ours, read
/// by ours for faults that are not its own.
static PREVIOUS: OnceLock<[libc::sigaction; 2]> = OnceLock::new();

const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// Install the fault handler (once per process). The old handlers are
/// recorded first, so ours never runs without them.
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sigaction only reads the current dispositions into
        // zeroed (valid) structs.
        let previous = SIGNALS.map(|sig| unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old);
            old
        });
        if PREVIOUS.set(previous).is_err() {
            return;
        }
        for sig in SIGNALS {
            // SAFETY: a zeroed sigaction is valid; handler, flags and mask
            // are filled in, and `on_fault` has the SA_SIGINFO signature.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_fault as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                    tracing::error!("safe atomics: cannot handle signal {sig}");
                }
            }
        }
    });
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext for SA_SIGINFO handlers.
    let uc = unsafe { &mut *ctx.cast::<libc::ucontext_t>() };
    let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
    let (start, end) = (
        runsc_safe_atomic_start as *const () as usize,
        runsc_safe_atomic_end as *const () as usize,
    );
    if (start..end).contains(&rip) {
        uc.uc_mcontext.gregs[libc::REG_RIP as usize] =
            runsc_safe_atomic_fault as *const () as usize as i64;
        uc.uc_mcontext.gregs[libc::REG_RAX as usize] = i64::from(sig);
        return;
    }
    let i = SIGNALS
        .iter()
        .position(|&s| s == sig)
        .expect("our signals only");
    let Some(prev) = PREVIOUS.get().map(|p| p[i]) else {
        return;
    };
    match prev.sa_sigaction {
        libc::SIG_DFL => {
            // Resume at the faulting instruction with the default action
            // in place: it faults again and the process dies as it would
            // have without us.
            // SAFETY: resetting a signal's disposition.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
        libc::SIG_IGN => {}
        h if prev.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: the previous handler was installed for this signal
            // with SA_SIGINFO and so takes these arguments.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(h) };
            f(sig, info, ctx);
        }
        h => {
            // SAFETY: a plain handler takes the signal number only.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
            f(sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page of a memfd mapped shared, and the memfd.
    fn mapped_page() -> (std::os::fd::OwnedFd, *mut u32) {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: plain host calls on a descriptor we create and own.
        unsafe {
            let fd = libc::memfd_create(c"safe-atomic-test".as_ptr(), libc::MFD_CLOEXEC);
            assert!(fd >= 0);
            let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
            assert_eq!(libc::ftruncate(fd.as_raw_fd(), 4096), 0);
            let p = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            (fd, p.cast())
        }
    }

    #[test]
    fn operations_on_good_memory() {
        let (_fd, p) = mapped_page();
        // SAFETY: `p` is a mapped, aligned word; only these calls touch it.
        unsafe {
            assert_eq!(load(p.add(3)), Ok(0));
            assert_eq!(compare_exchange(p.add(3), 0, 7), Ok(Ok(0)));
            assert_eq!(compare_exchange(p.add(3), 0, 9), Ok(Err(7)));
            assert_eq!(load(p.add(3)), Ok(7));
            libc::munmap(p.cast(), 4096);
        }
    }

    #[test]
    fn a_truncated_file_page_is_efault_not_a_crash() {
        use std::os::fd::AsRawFd;
        let (fd, p) = mapped_page();
        // SAFETY: as above; after the truncation the access faults, which
        // is what the functions are for.
        unsafe {
            assert_eq!(compare_exchange(p, 0, 5), Ok(Ok(0)));
            assert_eq!(libc::ftruncate(fd.as_raw_fd(), 0), 0);
            assert_eq!(load(p), Err(Errno::EFAULT));
            assert_eq!(compare_exchange(p, 5, 6), Err(Errno::EFAULT));
            assert_eq!(libc::ftruncate(fd.as_raw_fd(), 4096), 0);
            assert_eq!(load(p), Ok(0), "the page reads zeros once back");
            libc::munmap(p.cast(), 4096);
        }
    }

    #[test]
    fn read_only_memory_refuses_the_exchange() {
        let (_fd, p) = mapped_page();
        // SAFETY: as above; the word becomes read-only, so the exchange
        // faults (SIGSEGV) while a load does not.
        unsafe {
            assert_eq!(libc::mprotect(p.cast(), 4096, libc::PROT_READ), 0);
            assert_eq!(load(p), Ok(0));
            assert_eq!(compare_exchange(p, 0, 1), Err(Errno::EFAULT));
            libc::munmap(p.cast(), 4096);
        }
    }
}
