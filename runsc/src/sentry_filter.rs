//! The Sentry's own seccomp allow-list (design.md invariant 1; upstream's
//! map is `runsc/boot/filter/config`), installed on every thread of the
//! sandbox process before any application code runs and after the
//! platform's template stub exists (stubs are forks of it, so they never
//! inherit this list: the application's system calls are the platform's
//! business, trapped by the stub's own filter).
//!
//! One table, [`ALLOWED`], so calls another part of the Sentry starts to
//! make can be added in one place, each with the reason. Entries are what
//! this Rust Sentry on glibc calls across the differential suite in every
//! mode (found with `RUNSC_SENTRY_SECCOMP=trap`, which makes an unlisted
//! call print "seccomp: syscall N" on stderr instead of killing
//! silently), not upstream's Go runtime list.
//! No arguments are pinned yet (upstream pins many); `--network=host`
//! adds [`HOSTINET`]. `clone3` answers ENOSYS so glibc falls back to
//! `clone`. Never allowed, among others: `execve`/`execveat` (nothing in
//! the Sentry runs a program), `open` (only `openat` beneath held FDs can
//! reach a file: the root is an empty tmpfs), `mount`, `umount2`,
//! `chroot`, `pivot_root`, `unshare`, `setns`, `socket` without host
//! networking, `bpf`, `perf_event_open`, `init_module`, `kexec_*`,
//! `keyctl`, `setuid` and friends, `capset`.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};

/// Calls the Sentry makes, with why.
const ALLOWED: &[(libc::c_long, &str)] = &[
    // I/O on held FDs: gofer sockets, donated files (directfs), stdio,
    // host pipes and terminals, the memory file.
    (libc::SYS_read, "I/O"),
    (libc::SYS_write, "I/O"),
    (libc::SYS_readv, "I/O"),
    (libc::SYS_writev, "I/O"),
    (libc::SYS_pread64, "I/O"),
    (libc::SYS_pwrite64, "I/O"),
    (libc::SYS_preadv, "I/O"),
    (libc::SYS_pwritev, "I/O"),
    (libc::SYS_preadv2, "I/O"),
    (libc::SYS_pwritev2, "I/O"),
    (libc::SYS_lseek, "I/O"),
    (libc::SYS_close, "FDs"),
    (libc::SYS_close_range, "FDs"),
    (libc::SYS_dup, "FDs"),
    (libc::SYS_dup3, "FDs"),
    (libc::SYS_fcntl, "FDs"),
    (
        libc::SYS_ioctl,
        "host terminals (TCGETS, TIOCGWINSZ, ...) and FIONREAD",
    ),
    (libc::SYS_fstat, "stat of held FDs"),
    (libc::SYS_newfstatat, "stat beneath held FDs (directfs)"),
    (libc::SYS_statx, "stat beneath held FDs (directfs)"),
    (libc::SYS_fstatfs, "statfs of held FDs"),
    // directfs: file operations beneath the gofer's donated FDs (no
    // absolute path reaches anything: the root is an empty tmpfs).
    (libc::SYS_openat, "directfs opens beneath held FDs"),
    (libc::SYS_openat2, "directfs opens beneath held FDs"),
    (libc::SYS_mkdirat, "directfs"),
    (libc::SYS_mknodat, "directfs"),
    (libc::SYS_unlinkat, "directfs"),
    (libc::SYS_renameat2, "directfs"),
    (libc::SYS_linkat, "directfs"),
    (libc::SYS_symlinkat, "directfs"),
    (libc::SYS_readlinkat, "directfs"),
    (libc::SYS_fchmod, "directfs"),
    (libc::SYS_fchmodat, "directfs"),
    (libc::SYS_fchmodat2, "directfs (AT_SYMLINK_NOFOLLOW chmod)"),
    (libc::SYS_fchown, "directfs"),
    (libc::SYS_fchownat, "directfs"),
    (libc::SYS_ftruncate, "directfs and the memory file"),
    (libc::SYS_fallocate, "directfs and the memory file"),
    (libc::SYS_utimensat, "directfs"),
    (libc::SYS_getdents64, "directfs"),
    (libc::SYS_fsync, "directfs"),
    (libc::SYS_fdatasync, "directfs"),
    (libc::SYS_flistxattr, "directfs"),
    (libc::SYS_fgetxattr, "directfs"),
    (libc::SYS_fsetxattr, "directfs"),
    (libc::SYS_fremovexattr, "directfs"),
    // Memory: malloc, thread stacks, the memory file, stub shared memory.
    (libc::SYS_mmap, "memory"),
    (libc::SYS_munmap, "memory"),
    (libc::SYS_mprotect, "memory"),
    (libc::SYS_mremap, "memory"),
    (libc::SYS_madvise, "memory"),
    (libc::SYS_brk, "memory"),
    (
        libc::SYS_memfd_create,
        "the memory file and stub shared memory",
    ),
    (libc::SYS_membarrier, "memory"),
    // Threads, waiting, time.
    (libc::SYS_clone, "threads"),
    // Listed so the first filter's ENOSYS answer (not this list's kill)
    // is what glibc sees; it then falls back to clone.
    (libc::SYS_clone3, "answered ENOSYS by the first filter"),
    (libc::SYS_futex, "locks and stub synchronisation"),
    (libc::SYS_set_robust_list, "new threads"),
    (libc::SYS_rseq, "new threads"),
    (libc::SYS_sched_yield, "spinning"),
    (libc::SYS_sched_getaffinity, "std's available_parallelism"),
    (libc::SYS_getcpu, "sched_getcpu"),
    (libc::SYS_exit, "threads"),
    (libc::SYS_exit_group, "the sandbox's exit"),
    (libc::SYS_nanosleep, "sleeps"),
    (libc::SYS_clock_nanosleep, "sleeps"),
    (libc::SYS_clock_gettime, "time"),
    (libc::SYS_clock_getres, "time"),
    (libc::SYS_gettimeofday, "time"),
    (libc::SYS_getrandom, "randomness (AT_RANDOM, hash seeds)"),
    (libc::SYS_poll, "waiting on FDs"),
    (libc::SYS_ppoll, "waiting on FDs"),
    (libc::SYS_epoll_create1, "waiting on FDs"),
    (libc::SYS_epoll_ctl, "waiting on FDs"),
    (libc::SYS_epoll_wait, "waiting on FDs"),
    (libc::SYS_epoll_pwait, "waiting on FDs"),
    (libc::SYS_eventfd2, "wakeups"),
    (libc::SYS_pipe2, "host pipes"),
    (libc::SYS_tee, "tee(2) between host pipes"),
    (libc::SYS_timerfd_create, "timers"),
    (libc::SYS_timerfd_settime, "timers"),
    (libc::SYS_timerfd_gettime, "timers"),
    // Signals.
    (libc::SYS_rt_sigaction, "signals"),
    (libc::SYS_rt_sigprocmask, "signals"),
    (libc::SYS_rt_sigreturn, "signals"),
    (libc::SYS_rt_sigtimedwait, "forwarded signals (sigwait)"),
    (libc::SYS_sigaltstack, "signals"),
    (libc::SYS_tgkill, "interrupting threads and stubs"),
    (libc::SYS_tkill, "interrupting threads"),
    (libc::SYS_kill, "killing stub processes"),
    // The platforms' stubs.
    (libc::SYS_ptrace, "the platforms trace their stubs"),
    (libc::SYS_wait4, "reaping stubs"),
    (libc::SYS_waitid, "reaping stubs"),
    (libc::SYS_process_vm_readv, "copying from stubs"),
    (libc::SYS_process_vm_writev, "copying to stubs"),
    (libc::SYS_getpid, "identity"),
    (libc::SYS_gettid, "identity"),
    (libc::SYS_getppid, "identity"),
    (libc::SYS_getuid, "identity"),
    (libc::SYS_geteuid, "identity"),
    (libc::SYS_getgid, "identity"),
    (libc::SYS_getegid, "identity"),
    (libc::SYS_prctl, "thread names, PDEATHSIG checks"),
    (libc::SYS_prlimit64, "limits"),
    (libc::SYS_getrlimit, "limits"),
    (libc::SYS_uname, "glibc"),
    (
        libc::SYS_sysinfo,
        "memory totals for the application's sysinfo and /proc/meminfo",
    ),
    (libc::SYS_restart_syscall, "signals"),
    // Unix sockets: the control socket, gofer connections, FD passing.
    (libc::SYS_accept4, "the control socket"),
    (libc::SYS_listen, "the control socket"),
    (libc::SYS_socketpair, "gofer channels and host socket pairs"),
    (libc::SYS_sendmsg, "lisafs, urpc, FD passing"),
    (libc::SYS_recvmsg, "lisafs, urpc, FD passing"),
    (libc::SYS_sendto, "sockets"),
    (libc::SYS_recvfrom, "sockets"),
    (libc::SYS_shutdown, "sockets"),
    (libc::SYS_getsockopt, "sockets"),
    (libc::SYS_setsockopt, "sockets"),
    (libc::SYS_getsockname, "sockets"),
    (libc::SYS_getpeername, "sockets"),
];

/// What hostinet adds with `--network=host`: the application's sockets are
/// host sockets the Sentry makes and drives for it.
const HOSTINET: &[(libc::c_long, &str)] = &[
    (libc::SYS_socket, "hostinet sockets"),
    (libc::SYS_connect, "hostinet"),
    (libc::SYS_bind, "hostinet"),
    (libc::SYS_sendmmsg, "hostinet"),
    (libc::SYS_recvmmsg, "hostinet"),
];

/// Building or installing the filter failed.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("building the Sentry's seccomp filter: {0}")]
    Build(#[from] seccompiler::BackendError),
    #[error("installing the Sentry's seccomp filter: {0}")]
    Install(#[from] seccompiler::Error),
    #[error("setting no_new_privs before the Sentry's seccomp filter: {0}")]
    NoNewPrivs(std::io::Error),
}

/// What happens to a call that is not listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The sandbox process is killed (the default).
    Kill,
    /// The process reports the call's number on stderr and exits
    /// (developing only, `RUNSC_SENTRY_SECCOMP=trap`: the kernel's audit
    /// log of seccomp kills is rate-limited and here mostly silent).
    Trap,
}

impl Mode {
    /// Kill, unless the environment asks to log.
    pub fn from_env() -> Mode {
        match std::env::var("RUNSC_SENTRY_SECCOMP").as_deref() {
            Ok("trap") => Mode::Trap,
            _ => Mode::Kill,
        }
    }
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

fn rules(host_network: bool) -> Rules {
    let mut r = Rules::new();
    for &(nr, _) in ALLOWED {
        r.insert(nr, Vec::new());
    }
    if host_network {
        for &(nr, _) in HOSTINET {
            r.insert(nr, Vec::new());
        }
    }
    r
}

fn arch() -> TargetArch {
    std::env::consts::ARCH
        .try_into()
        .expect("the Sentry's filter supports x86_64 and aarch64")
}

/// The programs, in order: `clone3` answered ENOSYS, then the allow-list.
pub fn compile(host_network: bool, mode: Mode) -> Result<Vec<BpfProgram>, FilterError> {
    let clone3: Rules = [(libc::SYS_clone3, Vec::new())].into_iter().collect();
    let otherwise = match mode {
        Mode::Kill => SeccompAction::KillProcess,
        Mode::Trap => SeccompAction::Trap,
    };
    let filters = [
        SeccompFilter::new(
            clone3,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch(),
        )?,
        SeccompFilter::new(rules(host_network), otherwise, SeccompAction::Allow, arch())?,
    ];
    let mut out = Vec::new();
    for f in filters {
        out.push(BpfProgram::try_from(f)?);
    }
    Ok(out)
}

/// Set no_new_privs and install the filters on every thread.
pub fn install(host_network: bool, mode: Mode) -> Result<(), FilterError> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(FilterError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    if mode == Mode::Trap {
        report_sigsys();
    }
    for prog in compile(host_network, mode)? {
        seccompiler::apply_filter_all_threads(&prog)?;
    }
    Ok(())
}

/// `Mode::Trap`: a SIGSYS handler that writes "seccomp: syscall N" to
/// stderr and exits 159.
fn report_sigsys() {
    extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo; for SIGSYS from
        // seccomp, si_syscall is the int at byte 24 (after si_call_addr),
        // per the kernel's `struct siginfo` `_sigsys` layout. write and
        // _exit are async-signal-safe; the buffer is on this stack.
        unsafe {
            let nr = *(info as *const u8).add(24).cast::<i32>();
            let mut buf = *b"seccomp: syscall          \n";
            let mut n = nr.unsigned_abs();
            let mut i = 25;
            loop {
                buf[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 || i == 17 {
                    break;
                }
                i -= 1;
            }
            libc::write(2, buf.as_ptr().cast(), buf.len());
            libc::_exit(159);
        }
    }
    // SAFETY: installs a handler for SIGSYS; the sigaction struct is
    // initialised before the call and only read by it.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_compiles_in_both_modes_with_and_without_hostinet() {
        for host in [false, true] {
            for mode in [Mode::Kill, Mode::Trap] {
                assert_eq!(compile(host, mode).unwrap().len(), 2);
            }
        }
    }

    #[test]
    fn no_call_that_escapes_or_reconfigures_the_host_is_listed() {
        let all = rules(true);
        for nr in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_open,
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_chroot,
            libc::SYS_pivot_root,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_bpf,
            libc::SYS_init_module,
            libc::SYS_setuid,
            libc::SYS_capset,
            libc::SYS_fork,
        ] {
            assert!(!all.contains_key(&nr), "syscall {nr} is allowed");
        }
        assert!(!rules(false).contains_key(&libc::SYS_socket));
        // One entry per call.
        let mut seen = std::collections::BTreeSet::new();
        for &(nr, _) in ALLOWED.iter().chain(HOSTINET) {
            assert!(seen.insert(nr), "syscall {nr} is listed twice");
        }
    }
}
