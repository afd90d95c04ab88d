//! The gofer's own seccomp allow-lists: one for directfs on, one for off.
//!
//! Shaped as upstream's (`runsc/fsgofer/filter/config`, protocol notes
//! §2.4): a list every gofer needs (I/O on FDs it holds, `openat`/`openat2`,
//! `statx` on an FD, the flipcall and fdchannel machinery, threads,
//! memory), plus, only when directfs is off, the calls that serve mutating
//! and directory RPCs (`mkdirat`, `unlinkat`, `renameat2`, `getdents64`,
//! the `f*xattr` family, ...). With directfs the Sentry does those itself
//! beneath the donated root FD, so a directfs gofer that is asked to
//! mutate is killed, as upstream's is. Anything not listed kills the
//! process; creating or converting executable mappings kills it too
//! (upstream's `DenyNewExecMappings`).
//!
//! The lists are upstream's shape, with arguments pinned where upstream
//! pins them, but the entries are what *this* process calls (checked with
//! strace over the differential sequence): a Rust binary on glibc rather
//! than the Go runtime. The differences, each for a reason:
//!
//! * threads: glibc's `pthread_create` tries `clone3` first, whose flags
//!   live in memory a filter cannot read, so `clone3` answers ENOSYS and
//!   glibc falls back to `clone`, which must carry exactly the thread flags
//!   glibc uses; new threads also call `set_robust_list`, `rseq`,
//!   `sigaltstack` and `prctl(PR_SET_NAME)`;
//! * memory: glibc's malloc uses `brk`, `mremap` and `MAP_NORESERVE`
//!   arenas, thread stacks are `MAP_STACK`;
//! * futexes: Rust's locks use `FUTEX_WAIT_BITSET`, and glibc's
//!   `pthread_join` waits on the thread ID word with a shared
//!   `FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME`; timeouts are not pinned
//!   to 0 because our flipcall waits and std's timed waits pass one;
//! * sockets: our framing uses `sendmsg(MSG_NOSIGNAL)` and
//!   `recvmsg(MSG_CMSG_CLOEXEC)` (upstream's unet uses other flags), and
//!   flipcall checks for a hung-up peer with `poll`;
//! * `linkat` carries `AT_EMPTY_PATH` (we link the held FD itself, as the
//!   2022 gofer did) where upstream's now passes 0;
//! * no `socket`, `connect`, `bind`, `listen` or `accept*`: `HostFs`
//!   serves no host sockets (Connect and BindAt are not advertised), so
//!   neither `--host-uds` setting widens the list.
//!
//! Everything is evaluated on the caller's data (`seccomp_data`), so the
//! same compiled programs are checked by a BPF interpreter in the tests
//! below and installed for real by `runsc gofer`.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Which list to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// directfs on: the Sentry mutates the tree itself; the gofer may not.
    pub directfs: bool,
}

/// Building or installing a filter failed.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("building the gofer's seccomp filter: {0}")]
    Build(#[from] seccompiler::BackendError),
    #[error("installing the gofer's seccomp filter (needs Linux ≥ 3.17 with seccomp): {0}")]
    Install(#[from] seccompiler::Error),
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// One argument condition; arguments the kernel treats as `int` are
/// compared on their low 32 bits, as the kernel reads them.
fn arg(index: u8, op: SeccompCmpOp, value: u64) -> SeccompCondition {
    SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value)
        .expect("argument index is below 6")
}

fn eq(index: u8, value: u64) -> SeccompCondition {
    arg(index, SeccompCmpOp::Eq, value)
}

/// An `int` FD argument that is not negative (upstream's `NonNegativeFD`),
/// so `AT_FDCWD` and other path-relative forms are refused.
fn fd(index: u8) -> SeccompCondition {
    arg(index, SeccompCmpOp::Lt, 0x8000_0000)
}

fn rule(conds: Vec<SeccompCondition>) -> SeccompRule {
    SeccompRule::new(conds).expect("a rule has at least one condition")
}

fn c(v: libc::c_int) -> u64 {
    u64::from(v as u32)
}

/// Adds `nr` allowed with any arguments.
fn any(r: &mut Rules, nr: libc::c_long) {
    r.insert(nr, Vec::new());
}

/// Adds `nr` allowed when one of `rules` matches.
fn when(r: &mut Rules, nr: libc::c_long, rules: Vec<SeccompRule>) {
    r.entry(nr).or_default().extend(rules);
}

/// The flags glibc's `clone` fallback passes for a new thread
/// (`sysdeps/unix/sysv/linux/createthread.c`).
const THREAD_CLONE_FLAGS: libc::c_int = libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID;

/// The list every gofer gets. `pid` is the gofer's own (tgkill may only
/// signal itself).
fn common_rules(pid: u32) -> Rules {
    let mut r = Rules::new();
    for nr in [
        // I/O on FDs the server holds.
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_pread64,
        libc::SYS_pwrite64,
        libc::SYS_lseek,
        libc::SYS_close,
        libc::SYS_dup,
        libc::SYS_fsync,
        libc::SYS_fstat,
        // Walks and opens beneath held FDs (openat2 with RESOLVE_BENEATH;
        // re-opens through /proc/self/fd/N with openat).
        libc::SYS_openat,
        libc::SYS_openat2,
        libc::SYS_newfstatat,
        libc::SYS_fchmod,
        libc::SYS_fchmodat,
        libc::SYS_fchownat,
        // Flipcall windows: a sealed memfd per connection.
        libc::SYS_memfd_create,
        // Waiting on a hung-up peer.
        libc::SYS_poll,
        libc::SYS_ppoll,
        // Process and thread plumbing.
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_getrandom,
        libc::SYS_clock_gettime,
        libc::SYS_gettimeofday,
        libc::SYS_nanosleep,
        libc::SYS_clock_nanosleep,
        libc::SYS_sched_yield,
        libc::SYS_sched_getaffinity,
        libc::SYS_restart_syscall,
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        // Memory (exec mappings are refused by the deny filter).
        libc::SYS_brk,
        libc::SYS_mprotect,
        libc::SYS_munmap,
        libc::SYS_madvise,
        // clone3 is answered ENOSYS by its own filter; listed here so the
        // allow-list's kill does not take precedence.
        libc::SYS_clone3,
    ] {
        any(&mut r, nr);
    }
    when(
        &mut r,
        libc::SYS_clone,
        vec![rule(vec![eq(0, c(THREAD_CLONE_FLAGS))])],
    );
    when(
        &mut r,
        libc::SYS_mremap,
        vec![rule(vec![eq(3, c(libc::MREMAP_MAYMOVE))])],
    );
    // statx on an FD we hold, never by path from the working directory.
    when(
        &mut r,
        libc::SYS_statx,
        vec![rule(vec![
            fd(0),
            arg(
                2,
                SeccompCmpOp::MaskedEq(c(libc::AT_EMPTY_PATH)),
                c(libc::AT_EMPTY_PATH),
            ),
        ])],
    );
    let fcntl_cmds = [
        libc::F_GETFL,
        libc::F_SETFL,
        libc::F_GETFD,
        libc::F_DUPFD_CLOEXEC,
        libc::F_ADD_SEALS,
    ];
    when(
        &mut r,
        libc::SYS_fcntl,
        fcntl_cmds
            .iter()
            .map(|&cmd| rule(vec![eq(1, c(cmd))]))
            .collect(),
    );
    let futex_ops = [
        // Flipcall's state word is shared with another process.
        libc::FUTEX_WAIT,
        libc::FUTEX_WAKE,
        // Locks in this process.
        libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
        libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
        libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG,
        libc::FUTEX_WAKE_BITSET | libc::FUTEX_PRIVATE_FLAG,
        libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG | libc::FUTEX_CLOCK_REALTIME,
        // pthread_join waits for the kernel's clear of the thread ID.
        libc::FUTEX_WAIT_BITSET | libc::FUTEX_CLOCK_REALTIME,
    ];
    when(
        &mut r,
        libc::SYS_futex,
        futex_ops
            .iter()
            .map(|&op| rule(vec![eq(1, c(op))]))
            .collect(),
    );
    let private_anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    let mmap_flags = [
        // Flipcall windows.
        libc::MAP_SHARED,
        private_anon,
        private_anon | libc::MAP_FIXED,
        private_anon | libc::MAP_STACK,
        private_anon | libc::MAP_NORESERVE,
    ];
    when(
        &mut r,
        libc::SYS_mmap,
        mmap_flags
            .iter()
            .map(|&f| rule(vec![eq(3, c(f))]))
            .collect(),
    );
    // The fdchannel of each flipcall channel.
    when(
        &mut r,
        libc::SYS_socketpair,
        vec![rule(vec![
            eq(0, c(libc::AF_UNIX)),
            eq(1, c(libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC)),
            eq(2, 0),
        ])],
    );
    when(
        &mut r,
        libc::SYS_sendmsg,
        vec![rule(vec![eq(2, c(libc::MSG_NOSIGNAL))])],
    );
    when(
        &mut r,
        libc::SYS_recvmsg,
        vec![rule(vec![eq(2, c(libc::MSG_CMSG_CLOEXEC))])],
    );
    when(
        &mut r,
        libc::SYS_shutdown,
        vec![rule(vec![eq(1, c(libc::SHUT_RDWR))])],
    );
    when(
        &mut r,
        libc::SYS_prctl,
        vec![
            rule(vec![eq(0, c(libc::PR_SET_NAME))]),
            rule(vec![
                eq(0, c(libc::PR_SET_VMA)),
                eq(1, c(libc::PR_SET_VMA_ANON_NAME)),
            ]),
        ],
    );
    // abort() signals itself; nothing else.
    when(
        &mut r,
        libc::SYS_tgkill,
        vec![rule(vec![eq(0, u64::from(pid))])],
    );
    r
}

/// What serving every lisafs RPC adds (upstream's `lisafsFilters`).
fn lisafs_rules(r: &mut Rules) {
    for nr in [
        libc::SYS_fstatfs,
        libc::SYS_getdents64,
        libc::SYS_mkdirat,
        libc::SYS_mknodat,
        libc::SYS_readlinkat,
        libc::SYS_renameat2,
        libc::SYS_symlinkat,
        libc::SYS_ftruncate,
        libc::SYS_unlinkat,
        libc::SYS_utimensat,
    ] {
        any(r, nr);
    }
    when(r, libc::SYS_fallocate, vec![rule(vec![fd(0), eq(1, 0)])]);
    for nr in [
        libc::SYS_fgetxattr,
        libc::SYS_fsetxattr,
        libc::SYS_flistxattr,
        libc::SYS_fremovexattr,
    ] {
        when(r, nr, vec![rule(vec![fd(0)])]);
    }
    when(
        r,
        libc::SYS_linkat,
        vec![rule(vec![fd(0), fd(2), eq(4, c(libc::AT_EMPTY_PATH))])],
    );
}

/// The allow-list for these options, as a rule table (syscall number →
/// rules, empty meaning any arguments).
fn allow_rules(opts: Options, pid: u32) -> Rules {
    let mut r = common_rules(pid);
    if !opts.directfs {
        lisafs_rules(&mut r);
    }
    r
}

fn arch() -> TargetArch {
    std::env::consts::ARCH
        .try_into()
        .expect("the gofer's filter supports x86_64 and aarch64")
}

/// The programs to install, in order: exec mappings killed, `clone3`
/// answered ENOSYS, then the allow-list (anything else killed). The kernel
/// runs every installed filter and takes the strictest answer.
pub fn compile(opts: Options, pid: u32) -> Result<Vec<BpfProgram>, FilterError> {
    let prot_exec = || {
        rule(vec![arg(
            2,
            SeccompCmpOp::MaskedEq(c(libc::PROT_EXEC)),
            c(libc::PROT_EXEC),
        )])
    };
    let deny_exec: Rules = [
        (libc::SYS_mmap, vec![prot_exec()]),
        (libc::SYS_mprotect, vec![prot_exec()]),
    ]
    .into_iter()
    .collect();
    let clone3: Rules = [(libc::SYS_clone3, Vec::new())].into_iter().collect();
    let filters = [
        SeccompFilter::new(
            deny_exec,
            SeccompAction::Allow,
            SeccompAction::KillProcess,
            arch(),
        )?,
        SeccompFilter::new(
            clone3,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch(),
        )?,
        SeccompFilter::new(
            allow_rules(opts, pid),
            SeccompAction::KillProcess,
            SeccompAction::Allow,
            arch(),
        )?,
    ];
    let mut out = Vec::new();
    for f in filters {
        out.push(BpfProgram::try_from(f)?);
    }
    Ok(out)
}

/// Installs the filters on every thread of this process (with
/// `no_new_privs`). Call it after everything that opens by path (the
/// served roots, `/proc/self/fd`) and after computing anything std reads
/// from /proc or /sys (`gofer_protocol::channel::max_channels`).
pub fn install(opts: Options) -> Result<(), FilterError> {
    for prog in compile(opts, std::process::id())? {
        seccompiler::apply_filter_all_threads(&prog)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The compiled programs, run by a small classic-BPF interpreter on
    //! `seccomp_data` built for each call, the way the kernel runs them.

    use seccompiler::sock_filter;

    use super::*;

    const RET_KILL_PROCESS: u32 = 0x8000_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const PID: u32 = 4242;

    /// Runs one program on `struct seccomp_data { int nr; u32 arch; u64
    /// ip; u64 args[6]; }`.
    fn run(prog: &[sock_filter], nr: i64, args: [u64; 6]) -> u32 {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(&(nr as i32).to_le_bytes());
        data.extend_from_slice(&AUDIT_ARCH_X86_64.to_le_bytes());
        data.extend_from_slice(&0u64.to_le_bytes());
        for a in args {
            data.extend_from_slice(&a.to_le_bytes());
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let ins = &prog[pc];
            pc += 1;
            let k = ins.k;
            match ins.code {
                // BPF_LD | BPF_W | BPF_ABS
                0x20 => {
                    let o = k as usize;
                    acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                }
                // BPF_ALU | BPF_AND | BPF_K
                0x54 => acc &= k,
                // BPF_JMP | BPF_JA
                0x05 => pc += k as usize,
                // BPF_JMP | BPF_{JEQ,JGT,JGE,JSET} | BPF_K
                0x15 | 0x25 | 0x35 | 0x45 => {
                    let taken = match ins.code {
                        0x15 => acc == k,
                        0x25 => acc > k,
                        0x35 => acc >= k,
                        _ => acc & k != 0,
                    };
                    pc += usize::from(if taken { ins.jt } else { ins.jf });
                }
                // BPF_RET | BPF_K
                0x06 => return k,
                op => panic!("instruction {op:#x} not expected from seccompiler"),
            }
        }
    }

    /// The kernel's answer with several filters: the strictest action,
    /// i.e. the lowest `(s32)(ret & SECCOMP_RET_ACTION_FULL)`.
    fn verdict(opts: Options, nr: i64, args: [u64; 6]) -> u32 {
        compile(opts, PID)
            .unwrap()
            .iter()
            .map(|p| run(p, nr, args))
            .min_by_key(|&r| (r & 0xffff_0000) as i32)
            .unwrap()
    }

    fn a(v: &[u64]) -> [u64; 6] {
        let mut out = [0; 6];
        out[..v.len()].copy_from_slice(v);
        out
    }

    const DIRECTFS: Options = Options { directfs: true };
    const LISAFS: Options = Options { directfs: false };

    #[test]
    fn both_lists_allow_what_every_gofer_calls() {
        for o in [DIRECTFS, LISAFS] {
            assert_eq!(verdict(o, libc::SYS_read, a(&[3, 0, 8])), RET_ALLOW);
            assert_eq!(verdict(o, libc::SYS_openat2, a(&[5, 0, 0, 24])), RET_ALLOW);
            assert_eq!(
                verdict(o, libc::SYS_statx, a(&[5, 0, 0x1100, 0xfff])),
                RET_ALLOW
            );
            // Flipcall: non-private futex on the shared state word.
            assert_eq!(verdict(o, libc::SYS_futex, a(&[0x1000, 0, 1])), RET_ALLOW);
            assert_eq!(verdict(o, libc::SYS_futex, a(&[0x1000, 1, 1])), RET_ALLOW);
            assert_eq!(
                verdict(
                    o,
                    libc::SYS_mmap,
                    a(&[0, 4096, 3, libc::MAP_SHARED as u64, 7])
                ),
                RET_ALLOW
            );
            assert_eq!(
                verdict(o, libc::SYS_socketpair, a(&[1, 0x80005, 0])),
                RET_ALLOW
            );
            assert_eq!(
                verdict(o, libc::SYS_clone, a(&[THREAD_CLONE_FLAGS as u64])),
                RET_ALLOW
            );
            assert_eq!(
                verdict(o, libc::SYS_tgkill, a(&[PID as u64, 9, 6])),
                RET_ALLOW
            );
            assert_eq!(
                verdict(o, libc::SYS_sendmsg, a(&[3, 0, libc::MSG_NOSIGNAL as u64])),
                RET_ALLOW
            );
        }
    }

    #[test]
    fn both_lists_kill_what_no_gofer_needs() {
        let killed = |o, nr, args| assert_eq!(verdict(o, nr, a(args)), RET_KILL_PROCESS, "{nr}");
        for o in [DIRECTFS, LISAFS] {
            killed(o, libc::SYS_execve, &[0, 0, 0]);
            killed(o, libc::SYS_ptrace, &[0]);
            killed(o, libc::SYS_socket, &[libc::AF_INET as u64, 1, 0]);
            killed(o, libc::SYS_connect, &[3, 0, 16]);
            // A fork, not a thread.
            killed(o, libc::SYS_clone, &[libc::SIGCHLD as u64]);
            // Executable memory, new or converted.
            killed(o, libc::SYS_mmap, &[0, 4096, 5, 0x22, u64::MAX, 0]);
            killed(o, libc::SYS_mprotect, &[0x1000, 4096, 7]);
            // statx by path from the working directory.
            killed(o, libc::SYS_statx, &[(-100i64) as u64, 0, 0, 0xfff]);
            killed(o, libc::SYS_tgkill, &[1, 1, 9]);
            killed(o, libc::SYS_socketpair, &[1, 1, 0]);
            killed(o, libc::SYS_fcntl, &[3, libc::F_SETOWN as u64]);
            killed(o, libc::SYS_recvmsg, &[3, 0, libc::MSG_PEEK as u64]);
            killed(o, libc::SYS_mount, &[0, 0, 0, 0, 0]);
            killed(o, libc::SYS_unshare, &[0]);
        }
    }

    #[test]
    fn clone3_answers_enosys_so_glibc_falls_back_to_clone() {
        for o in [DIRECTFS, LISAFS] {
            assert_eq!(
                verdict(o, libc::SYS_clone3, a(&[0x1000, 88])),
                RET_ERRNO | libc::ENOSYS as u32
            );
        }
    }

    #[test]
    fn only_the_lisafs_list_serves_mutations_and_directories() {
        let mutations: &[(i64, &[u64])] = &[
            (libc::SYS_mkdirat, &[3, 0, 0o755]),
            (libc::SYS_unlinkat, &[3, 0, 0]),
            (libc::SYS_renameat2, &[3, 0, 3, 0, 0]),
            (libc::SYS_symlinkat, &[0, 3, 0]),
            (libc::SYS_linkat, &[3, 0, 4, 0, libc::AT_EMPTY_PATH as u64]),
            (libc::SYS_getdents64, &[3, 0, 4096]),
            (libc::SYS_fsetxattr, &[3, 0, 0, 0, 0]),
            (libc::SYS_ftruncate, &[3, 0]),
            (libc::SYS_fallocate, &[3, 0, 0, 4096]),
            (libc::SYS_utimensat, &[3, 0, 0, 0]),
        ];
        for &(nr, args) in mutations {
            assert_eq!(verdict(DIRECTFS, nr, a(args)), RET_KILL_PROCESS, "{nr}");
            assert_eq!(verdict(LISAFS, nr, a(args)), RET_ALLOW, "{nr}");
        }
        // Arguments upstream pins stay pinned.
        for (nr, args) in [
            (libc::SYS_fallocate, a(&[3, 1, 0, 4096])),
            (libc::SYS_fgetxattr, a(&[(-100i64) as u64, 0, 0, 0])),
            (
                libc::SYS_linkat,
                a(&[3, 0, 4, 0, libc::AT_SYMLINK_FOLLOW as u64]),
            ),
            (
                libc::SYS_linkat,
                a(&[(-100i64) as u64, 0, 4, 0, libc::AT_EMPTY_PATH as u64]),
            ),
        ] {
            assert_eq!(verdict(LISAFS, nr, args), RET_KILL_PROCESS, "{nr}");
        }
    }
}
