//! The host syscalls the platforms need, as small safe functions.
//!
//! Every `unsafe` block of the crate is here. Each wrapper passes only
//! pointers to live, correctly sized Rust values, so the kernel writes only
//! memory the wrapper owns.

use abi::Errno;
use platform::Regs;

fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret)
    }
}

fn last_errno() -> Errno {
    Errno::from_io(&std::io::Error::last_os_error())
}

/// The calling host thread's id.
pub fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// `ptrace(req, pid, addr, data)` for requests whose `data` is a plain value.
fn ptrace_value(req: libc::c_uint, pid: i32, addr: u64, data: u64) -> Result<libc::c_long, Errno> {
    // SAFETY: for the requests this module passes here (CONT, SYSEMU,
    // SEIZE, INTERRUPT, SETOPTIONS, POKEDATA) addr and data are values, not
    // pointers into our memory (POKEDATA writes into the tracee).
    check(unsafe { libc::ptrace(req, pid, addr, data) })
}

/// Resume a stopped tracee with `PTRACE_CONT`, delivering no signal.
pub fn ptrace_cont(pid: i32) -> Result<(), Errno> {
    ptrace_value(libc::PTRACE_CONT, pid, 0, 0).map(drop)
}

/// Resume a stopped tracee until its next syscall entry, which it does not
/// execute (`PTRACE_SYSEMU`), delivering no signal.
pub fn ptrace_sysemu(pid: i32) -> Result<(), Errno> {
    const PTRACE_SYSEMU: libc::c_uint = 31;
    ptrace_value(PTRACE_SYSEMU, pid, 0, 0).map(drop)
}

/// Trace `pid` from this thread without stopping it (`PTRACE_SEIZE`).
pub fn ptrace_seize(pid: i32, options: u64) -> Result<(), Errno> {
    ptrace_value(libc::PTRACE_SEIZE, pid, 0, options).map(drop)
}

/// Stop a seized tracee (`PTRACE_INTERRUPT`); it reports PTRACE_EVENT_STOP.
pub fn ptrace_interrupt(pid: i32) -> Result<(), Errno> {
    ptrace_value(libc::PTRACE_INTERRUPT, pid, 0, 0).map(drop)
}

/// Set the tracer options of a stopped tracee.
pub fn ptrace_setoptions(pid: i32, options: u64) -> Result<(), Errno> {
    ptrace_value(libc::PTRACE_SETOPTIONS, pid, 0, options).map(drop)
}

/// Write one word into the tracee's memory, even where it is read-only.
pub fn ptrace_pokedata(pid: i32, addr: u64, word: u64) -> Result<(), Errno> {
    ptrace_value(libc::PTRACE_POKEDATA, pid, addr, word).map(drop)
}

/// Read the tracee's general-purpose registers.
pub fn ptrace_getregs(pid: i32, regs: &mut Regs) -> Result<(), Errno> {
    // SAFETY: `Regs` has the layout of `struct user_regs_struct`, and the
    // kernel writes exactly that many bytes through the pointer.
    check(unsafe { libc::ptrace(libc::PTRACE_GETREGS, pid, 0usize, regs as *mut Regs) }).map(drop)
}

/// Set the tracee's general-purpose registers.
pub fn ptrace_setregs(pid: i32, regs: &Regs) -> Result<(), Errno> {
    // SAFETY: `Regs` has the layout of `struct user_regs_struct`; the
    // kernel only reads through the pointer.
    check(unsafe { libc::ptrace(libc::PTRACE_SETREGS, pid, 0usize, regs as *const Regs) }).map(drop)
}

const NT_X86_XSTATE: usize = 0x202;

/// Read the tracee's XSAVE area into `buf`; returns how many bytes the
/// kernel's regset holds.
pub fn ptrace_getxstate(pid: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the iovec describes `buf`, which lives across the call; the
    // kernel writes at most `iov_len` bytes and updates `iov_len`.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            pid,
            NT_X86_XSTATE,
            &mut iov as *mut libc::iovec,
        )
    })?;
    Ok(iov.iov_len)
}

/// Set the tracee's XSAVE area from `buf` (the regset's exact size).
pub fn ptrace_setxstate(pid: i32, buf: &[u8]) -> Result<(), Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the iovec describes `buf`, which lives across the call; for
    // SETREGSET the kernel only reads from it.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            pid,
            NT_X86_XSTATE,
            &mut iov as *mut libc::iovec,
        )
    })
    .map(drop)
}

/// The `siginfo` of the signal that stopped the tracee: signo, code, addr.
pub fn ptrace_getsiginfo(pid: i32) -> Result<(i32, i32, u64), Errno> {
    // SAFETY: an all-zero siginfo_t is a valid value of the plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes one `siginfo_t` through the pointer, which
    // points at `info`.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGINFO,
            pid,
            0usize,
            &mut info as *mut libc::siginfo_t,
        )
    })?;
    // SAFETY: si_addr reads the union member that holds the fault address;
    // for non-fault signals it is some other member's bytes, which the
    // caller ignores.
    let addr = unsafe { info.si_addr() } as u64;
    Ok((info.si_signo, info.si_code, addr))
}

/// How a waited-for tracee changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    /// Stopped: bits 0-7 the signal (`0x80|SIGTRAP` for a syscall stop),
    /// bits 8-15 the ptrace event, as `status >> 8` holds them.
    Stopped(i32),
    Exited(i32),
    Signaled(i32),
}

/// Wait for the tracee `pid` (any thread kind) to change state.
pub fn wait(pid: i32) -> Result<WaitStatus, Errno> {
    loop {
        let mut status = 0;
        // SAFETY: the kernel writes one int through the pointer to `status`.
        let ret = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if ret < 0 {
            let e = last_errno();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        return Ok(if libc::WIFSTOPPED(status) {
            WaitStatus::Stopped((status >> 8) & 0xffff)
        } else if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        });
    }
}

/// Send `sig` to thread `tid` of process `tgid`.
pub fn tgkill(tgid: i32, tid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: tgkill takes plain integers.
    check(unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, sig) }).map(drop)
}

/// Kill process `pid` with SIGKILL and reap it.
pub fn kill_and_reap(pid: i32) {
    kill(pid);
    while let Ok(WaitStatus::Stopped(_)) = wait(pid) {}
}

/// Send SIGKILL to process `pid`.
pub fn kill(pid: i32) {
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Start a stub process: a child sharing this process's file table
/// (`CLONE_FILES`, so the memory file's descriptor means the same there) and
/// nothing else, traced by the calling thread and stopped with SIGSTOP
/// before it runs anything else. Returns its pid.
pub fn clone_stopped_stub() -> Result<i32, Errno> {
    let parent = std::process::id() as libc::c_long;
    // SAFETY: a raw clone without CLONE_VM gives the child a copy of our
    // memory, like fork. The child runs only `stub_child`, which makes raw
    // syscalls and touches no lock, allocator or other shared state, so it
    // is sound after cloning a multi-threaded process.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_FILES | libc::SIGCHLD) as u64,
            0u64,
            0u64,
            0u64,
            0u64,
        )
    };
    match pid {
        0 => stub_child(parent),
        p if p < 0 => Err(last_errno()),
        p => Ok(p as i32),
    }
}

/// The child side of [`clone_stopped_stub`]: only raw syscalls from here on.
fn stub_child(parent: libc::c_long) -> ! {
    // SAFETY: raw syscalls with integer arguments and a pointer to an empty
    // signal set on this thread's stack; nothing here allocates or locks.
    unsafe {
        libc::syscall(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // A parent that died before the prctl never sends the signal.
        if libc::syscall(libc::SYS_getppid) != parent {
            libc::syscall(libc::SYS_exit_group, 1);
        }
        libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0);
        unregister_rseq();
        let empty: u64 = 0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            0usize,
            8usize,
        );
        let pid = libc::syscall(libc::SYS_getpid);
        libc::syscall(libc::SYS_kill, pid, libc::SIGSTOP);
        // The tracer takes over from the stop; it never resumes this code.
        libc::syscall(libc::SYS_exit_group, 1);
    }
    unreachable!("exit_group returned")
}

extern "C" {
    /// glibc (2.35+): offset of this thread's rseq area from the thread
    /// pointer, and the length it registered.
    static __rseq_offset: isize;
    static __rseq_size: u32;
}

/// Drop the rseq registration glibc made for the thread we were cloned from.
/// The kernel would keep writing the CPU number into that area, which the
/// stub is about to unmap, and kill the stub with SIGSEGV when it cannot.
///
/// # Safety
/// Only in a freshly cloned stub child: it reads the thread pointer and
/// glibc's two rseq symbols, and makes one raw syscall.
unsafe fn unregister_rseq() {
    const RSEQ_FLAG_UNREGISTER: u64 = 1;
    const RSEQ_SIG: u64 = 0x5305_3053;
    let tp: u64;
    // SAFETY: on x86-64 glibc keeps the thread pointer at %fs:0.
    unsafe {
        std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    // SAFETY: plain reads of two glibc data symbols that never change after
    // start-up.
    let (offset, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 {
        return; // glibc did not register rseq
    }
    let area = tp.wrapping_add_signed(offset as i64);
    // glibc may register a longer area than __rseq_size says; try both.
    for len in [u64::from(size), 32] {
        // SAFETY: unregistering takes the address glibc registered; the
        // kernel only compares it.
        if unsafe { libc::syscall(libc::SYS_rseq, area, len, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) } == 0
        {
            return;
        }
    }
}

/// The size of the XSAVE area for the features the host enabled
/// (`CPUID.(EAX=0DH,ECX=0):EBX`).
pub fn xsave_size() -> usize {
    let leaf = std::arch::x86_64::__cpuid_count(0xd, 0);
    leaf.ebx as usize
}

/// A fresh anonymous memory file (`memfd_create`, close-on-exec) of `len`
/// bytes.
pub fn memfd(name: &std::ffi::CStr, len: u64) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: `name` is a NUL-terminated string that lives across the call.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_memfd_create,
            name.as_ptr(),
            libc::MFD_CLOEXEC as libc::c_ulong,
        )
    })? as i32;
    // SAFETY: memfd_create just returned this descriptor; nothing else owns it.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let file = std::fs::File::from(fd);
    file.set_len(len).map_err(|e| Errno::from_io(&e))?;
    Ok(file.into())
}

/// A shared mapping of a memory file in this process, which a stub process
/// maps too. The stub's threads write it concurrently and are untrusted, so
/// it is never exposed as a Rust reference to plain data: words are read and
/// written atomically, byte ranges are copied in and out, and every offset
/// is bounds-checked (out-of-range accesses panic, as slice indexing does).
pub struct SharedMem {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory, reachable only through the
// methods below, which use atomic or raw-pointer copies; it does not belong
// to any thread.
unsafe impl Send for SharedMem {}
// SAFETY: as above; every access is atomic or a raw copy, never a reference.
unsafe impl Sync for SharedMem {}

impl SharedMem {
    /// Map `len` bytes of `fd` from offset 0, shared, readable and writable.
    pub fn map(fd: std::os::fd::BorrowedFd<'_>, len: usize) -> Result<SharedMem, Errno> {
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh mapping chosen by the kernel (no MAP_FIXED) cannot
        // overlap any memory Rust already uses.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(last_errno());
        }
        let ptr = std::ptr::NonNull::new(ptr.cast()).ok_or(Errno::EINVAL)?;
        Ok(SharedMem { ptr, len })
    }

    fn at(&self, off: usize, size: usize, align: usize) -> *mut u8 {
        assert!(
            off.checked_add(size).is_some_and(|end| end <= self.len) && off.is_multiple_of(align),
            "shared memory access {off:#x}+{size} out of bounds or misaligned"
        );
        // SAFETY: off + size <= len, so the result stays inside the mapping.
        unsafe { self.ptr.as_ptr().add(off) }
    }

    /// The 32-bit word at `off` (4-aligned), for atomics and futexes.
    pub fn u32_at(&self, off: usize) -> &std::sync::atomic::AtomicU32 {
        let p = self.at(off, 4, 4);
        // SAFETY: `p` is 4-aligned, inside the mapping, and lives as long as
        // `self`; AtomicU32 tolerates concurrent writers, including other
        // processes.
        unsafe { &*p.cast::<std::sync::atomic::AtomicU32>() }
    }

    /// The 64-bit word at `off` (8-aligned).
    pub fn u64_at(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        let p = self.at(off, 8, 8);
        // SAFETY: as for `u32_at`, with 8-byte alignment.
        unsafe { &*p.cast::<std::sync::atomic::AtomicU64>() }
    }

    /// Copy `out.len()` bytes from `off` into `out`.
    pub fn read(&self, off: usize, out: &mut [u8]) {
        let p = self.at(off, out.len(), 1);
        // SAFETY: the source range is inside the mapping and cannot overlap
        // `out`, which is ordinary Rust memory. A concurrent writer in the
        // stub can only make the copied bytes arbitrary, which callers
        // treat as untrusted input.
        unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) };
    }

    /// Copy `data` to `off`.
    pub fn write(&self, off: usize, data: &[u8]) {
        let p = self.at(off, data.len(), 1);
        // SAFETY: the destination range is inside the mapping, which Rust
        // code never holds a reference into, and cannot overlap `data`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
    }

    /// The little-endian u64 at `off` (any alignment).
    pub fn read_u64(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        self.read(off, &mut b);
        u64::from_le_bytes(b)
    }

    /// Store `v` little-endian at `off` (any alignment).
    pub fn write_u64(&self, off: usize, v: u64) {
        self.write(off, &v.to_le_bytes());
    }

    /// Store `v` at `off` unless it is there already: a store takes the
    /// cache line away from the other side's core even when it changes
    /// nothing, and the other side then waits to fetch it back.
    pub fn update_u64(&self, off: usize, v: u64) {
        if self.read_u64(off) != v {
            self.write_u64(off, v);
        }
    }
}

impl Drop for SharedMem {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this length, and no
        // reference into it outlives `self` (the accessors borrow `self`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// `FUTEX_WAIT` (shared, not process-private: the other side is a stub
/// process mapping the same file) while `word` holds `expected`, for at
/// most `timeout`. Returns early on wake-ups, signals and value changes.
pub fn futex_wait(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: std::time::Duration,
) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned 32-bit word and `ts` a live timespec;
    // the kernel only reads them.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        )
    };
}

/// `FUTEX_WAKE` (shared) at most `n` waiters on `word`.
pub fn futex_wake(word: &std::sync::atomic::AtomicU32, n: u32) {
    // SAFETY: `word` is a live, aligned 32-bit word; the kernel only uses
    // its address as a key.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
}

/// Whether user space may use `rdfsbase`/`wrfsbase` (`HWCAP2_FSGSBASE`).
pub fn has_fsgsbase() -> bool {
    const HWCAP2_FSGSBASE: u64 = 1 << 1;
    // SAFETY: getauxval reads the process's auxiliary vector; no pointers.
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    hwcap2 & HWCAP2_FSGSBASE != 0
}

/// The bytes of this binary's own code between two symbols, `start`
/// inclusive and `end` exclusive (the systrap stub code, which is copied
/// into stub processes).
pub fn code_bytes(start: usize, end: usize) -> Vec<u8> {
    assert!(start <= end && end - start < 1 << 20, "bad code range");
    // SAFETY: both addresses are symbols of one section of our own text,
    // which is mapped readable for the life of the process and never
    // written.
    unsafe { std::slice::from_raw_parts(start as *const u8, end - start) }.to_vec()
}

/// TSC cycles per microsecond, measured over about a millisecond (the
/// stub's spin budget is counted with `rdtsc`, which it may use without a
/// syscall).
pub fn tsc_per_us() -> f64 {
    let t0 = std::time::Instant::now();
    let c0 = rdtsc();
    while t0.elapsed() < std::time::Duration::from_millis(1) {
        std::hint::spin_loop();
    }
    let c1 = rdtsc();
    let us = t0.elapsed().as_secs_f64() * 1e6;
    (c1.wrapping_sub(c0) as f64 / us).max(1.0)
}

pub(crate) fn rdtsc() -> u64 {
    // SAFETY: rdtsc reads the time-stamp counter; it touches no memory.
    unsafe { std::arch::x86_64::_rdtsc() }
}

/// Whether child process `pid` has exited (it stays a zombie: this does
/// not reap it).
pub fn exited(pid: i32) -> bool {
    // SAFETY: an all-zero siginfo_t is a valid value of the plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes one siginfo_t through the pointer to `info`.
    let ret = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL,
        )
    };
    // SAFETY: si_pid reads the union member waitid fills for child events;
    // with WNOHANG and no event the kernel zeroes it.
    ret < 0 || unsafe { info.si_pid() } == pid
}
