//! The syscall table: one entry per implemented x86-64 syscall, each a
//! plain function from the task and its six arguments to a result.
//!
//! A number without an entry returns ENOSYS and is logged once, as upstream
//! does. The table is data, so `runsc help syscalls` can print it.

mod clone;
mod creds;
mod events;
mod exec;
mod file;
mod futex;
mod mem;
mod path;
mod poll;
pub(crate) mod process;
mod signal;
mod socket;
mod timer;

use std::sync::Mutex;

use abi::sysno::*;
use abi::Errno;

use crate::task::Task;

/// What a handler returns: the value for `rax`, or an errno.
pub(crate) type SysResult = Result<u64, Errno>;

type Handler = fn(&mut Task, [u64; 6]) -> SysResult;

/// One implemented syscall.
pub struct Entry {
    pub number: u32,
    /// `__NR_<name>`, as the macro sees it.
    constant: &'static str,
    /// How many arguments the syscall takes (what strace prints).
    args: usize,
    handler: Handler,
}

impl Entry {
    /// The syscall's name (`"openat"`).
    pub fn name(&self) -> &'static str {
        self.constant.trim_start_matches("__NR_")
    }
}

macro_rules! table {
    ($($nr:ident($args:literal) => $handler:path),* $(,)?) => {
        const TABLE: &[Entry] = &[
            $(Entry { number: $nr, constant: stringify!($nr), args: $args, handler: $handler },)*
        ];
    };
}

table! {
    __NR_read(3) => file::read,
    __NR_write(3) => file::write,
    __NR_open(3) => file::open,
    __NR_creat(2) => file::creat,
    __NR_close(1) => file::close,
    __NR_stat(2) => file::stat,
    __NR_fstat(2) => file::fstat,
    __NR_lstat(2) => file::lstat,
    __NR_lseek(3) => file::lseek,
    __NR_poll(3) => poll::poll,
    __NR_mmap(6) => mem::mmap,
    __NR_mprotect(3) => mem::mprotect,
    __NR_munmap(2) => mem::munmap,
    __NR_brk(1) => mem::brk,
    __NR_rt_sigaction(4) => signal::rt_sigaction,
    __NR_rt_sigprocmask(4) => signal::rt_sigprocmask,
    __NR_rt_sigreturn(0) => signal::rt_sigreturn,
    __NR_ioctl(3) => file::ioctl,
    __NR_pread64(4) => file::pread64,
    __NR_pwrite64(4) => file::pwrite64,
    __NR_readv(3) => file::readv,
    __NR_writev(3) => file::writev,
    __NR_access(2) => file::access,
    __NR_select(5) => poll::select,
    __NR_pipe(1) => clone::pipe,
    __NR_sched_yield(0) => process::sched_yield,
    __NR_mremap(5) => mem::mremap,
    __NR_msync(3) => mem::msync,
    __NR_mincore(3) => mem::mincore,
    __NR_madvise(3) => mem::madvise,
    __NR_dup(1) => file::dup,
    __NR_dup2(2) => file::dup2,
    __NR_pause(0) => signal::pause,
    __NR_nanosleep(2) => signal::nanosleep,
    __NR_getitimer(2) => timer::getitimer,
    __NR_alarm(1) => timer::alarm,
    __NR_setitimer(3) => timer::setitimer,
    __NR_getpid(0) => process::getpid,
    __NR_sendfile(4) => file::sendfile,
    __NR_epoll_create(1) => events::epoll_create,
    __NR_clone(5) => clone::clone,
    __NR_fork(0) => clone::fork,
    __NR_vfork(0) => clone::vfork,
    __NR_execve(3) => exec::execve,
    __NR_exit(1) => process::exit,
    __NR_wait4(4) => clone::wait4,
    __NR_kill(2) => signal::kill,
    __NR_uname(1) => process::uname,
    __NR_fcntl(3) => file::fcntl,
    __NR_getcwd(2) => file::getcwd,
    __NR_chdir(1) => file::chdir,
    __NR_fchdir(1) => file::fchdir,
    __NR_readlink(3) => file::readlink,
    __NR_gettimeofday(2) => process::gettimeofday,
    __NR_getrlimit(2) => process::getrlimit,
    __NR_umask(1) => creds::umask,
    __NR_sysinfo(1) => process::sysinfo,
    __NR_getuid(0) => process::getuid,
    __NR_getgid(0) => process::getgid,
    __NR_geteuid(0) => process::geteuid,
    __NR_getegid(0) => process::getegid,
    __NR_setuid(1) => creds::setuid,
    __NR_setgid(1) => creds::setgid,
    __NR_setreuid(2) => creds::setreuid,
    __NR_setregid(2) => creds::setregid,
    __NR_getgroups(2) => creds::getgroups,
    __NR_setgroups(2) => creds::setgroups,
    __NR_setresuid(3) => creds::setresuid,
    __NR_getresuid(3) => creds::getresuid,
    __NR_setresgid(3) => creds::setresgid,
    __NR_getresgid(3) => creds::getresgid,
    __NR_getppid(0) => process::getppid,
    __NR_getpgrp(0) => clone::getpgrp,
    __NR_setsid(0) => clone::setsid,
    __NR_setpgid(2) => clone::setpgid,
    __NR_getpgid(1) => clone::getpgid,
    __NR_getsid(1) => clone::getsid,
    __NR_rt_sigpending(2) => signal::rt_sigpending,
    __NR_rt_sigqueueinfo(3) => signal::rt_sigqueueinfo,
    __NR_rt_sigsuspend(2) => signal::rt_sigsuspend,
    __NR_sigaltstack(2) => signal::sigaltstack,
    __NR_statfs(2) => file::statfs,
    __NR_fstatfs(2) => file::fstatfs,
    __NR_prctl(5) => process::prctl,
    __NR_arch_prctl(2) => process::arch_prctl,
    __NR_gettid(0) => process::gettid,
    __NR_tkill(2) => signal::tkill,
    __NR_time(1) => process::time,
    __NR_getxattr(4) => path::getxattr,
    __NR_lgetxattr(4) => path::lgetxattr,
    __NR_fgetxattr(4) => path::fgetxattr,
    __NR_listxattr(3) => path::listxattr,
    __NR_llistxattr(3) => path::llistxattr,
    __NR_flistxattr(3) => path::flistxattr,
    __NR_sched_getaffinity(3) => process::sched_getaffinity,
    __NR_futex(6) => futex::futex,
    __NR_getdents64(3) => file::getdents64,
    __NR_set_tid_address(1) => process::set_tid_address,
    __NR_fadvise64(4) => file::fadvise64,
    __NR_timer_create(3) => timer::timer_create,
    __NR_timer_settime(4) => timer::timer_settime,
    __NR_timer_gettime(2) => timer::timer_gettime,
    __NR_timer_getoverrun(1) => timer::timer_getoverrun,
    __NR_timer_delete(1) => timer::timer_delete,
    __NR_clock_gettime(2) => process::clock_gettime,
    __NR_clock_getres(2) => process::clock_getres,
    __NR_exit_group(1) => process::exit_group,
    __NR_tgkill(3) => signal::tgkill,
    __NR_clock_nanosleep(4) => signal::clock_nanosleep,
    __NR_epoll_wait(4) => events::epoll_wait,
    __NR_epoll_ctl(4) => events::epoll_ctl,
    __NR_waitid(5) => clone::waitid,
    __NR_openat(4) => file::openat,
    __NR_newfstatat(4) => file::newfstatat,
    __NR_readlinkat(4) => file::readlinkat,
    __NR_faccessat(3) => file::faccessat,
    __NR_epoll_pwait(6) => events::epoll_pwait,
    __NR_timerfd_create(2) => events::timerfd_create,
    __NR_eventfd(1) => events::eventfd,
    __NR_timerfd_settime(4) => events::timerfd_settime,
    __NR_timerfd_gettime(2) => events::timerfd_gettime,
    __NR_eventfd2(2) => events::eventfd2,
    __NR_epoll_create1(1) => events::epoll_create1,
    __NR_pselect6(6) => poll::pselect6,
    __NR_ppoll(5) => poll::ppoll,
    __NR_set_robust_list(2) => process::set_robust_list,
    __NR_get_robust_list(3) => process::get_robust_list,
    __NR_getrusage(2) => process::getrusage,
    __NR_times(1) => process::times,
    __NR_dup3(3) => file::dup3,
    __NR_pipe2(2) => clone::pipe2,
    __NR_prlimit64(4) => process::prlimit64,
    __NR_rt_tgsigqueueinfo(4) => signal::rt_tgsigqueueinfo,
    __NR_getrandom(3) => process::getrandom,
    __NR_statx(5) => file::statx,
    __NR_execveat(5) => exec::execveat,
    __NR_clone3(2) => clone::clone3,
    __NR_faccessat2(4) => file::faccessat2,
    __NR_mkdir(2) => path::mkdir,
    __NR_mkdirat(3) => path::mkdirat,
    __NR_mknod(3) => path::mknod,
    __NR_mknodat(4) => path::mknodat,
    __NR_symlink(2) => path::symlink,
    __NR_symlinkat(3) => path::symlinkat,
    __NR_link(2) => path::link,
    __NR_linkat(5) => path::linkat,
    __NR_unlink(1) => path::unlink,
    __NR_unlinkat(3) => path::unlinkat,
    __NR_rmdir(1) => path::rmdir,
    __NR_rename(2) => path::rename,
    __NR_renameat(4) => path::renameat,
    __NR_renameat2(5) => path::renameat2,
    __NR_chmod(2) => path::chmod,
    __NR_fchmod(2) => path::fchmod,
    __NR_fchmodat(3) => path::fchmodat,
    __NR_chown(3) => path::chown,
    __NR_fchown(3) => path::fchown,
    __NR_lchown(3) => path::lchown,
    __NR_fchownat(5) => path::fchownat,
    __NR_truncate(2) => path::truncate,
    __NR_ftruncate(2) => path::ftruncate,
    __NR_fallocate(4) => path::fallocate,
    __NR_utime(2) => path::utime,
    __NR_utimes(2) => path::utimes,
    __NR_futimesat(3) => path::futimesat,
    __NR_utimensat(4) => path::utimensat,
    __NR_fsync(1) => path::fsync,
    __NR_fdatasync(1) => path::fsync,
    __NR_sync(0) => path::sync,
    __NR_syncfs(1) => path::syncfs,
    __NR_sync_file_range(4) => path::sync_file_range,
    __NR_setxattr(5) => path::setxattr,
    __NR_lsetxattr(5) => path::lsetxattr,
    __NR_fsetxattr(5) => path::fsetxattr,
    __NR_removexattr(2) => path::removexattr,
    __NR_lremovexattr(2) => path::lremovexattr,
    __NR_fremovexattr(2) => path::fremovexattr,
    __NR_chroot(1) => file::chroot,
    __NR_flock(2) => file::flock,
    __NR_signalfd(3) => signal::signalfd,
    __NR_signalfd4(4) => signal::signalfd4,
    __NR_splice(6) => file::splice,
    __NR_copy_file_range(6) => file::copy_file_range,
    __NR_memfd_create(2) => file::memfd_create,
    __NR_socket(3) => socket::socket,
    __NR_socketpair(4) => socket::socketpair,
    __NR_bind(3) => socket::bind,
    __NR_listen(2) => socket::listen,
    __NR_connect(3) => socket::connect,
    __NR_accept(3) => socket::accept,
    __NR_accept4(4) => socket::accept4,
    __NR_getsockname(3) => socket::getsockname,
    __NR_getpeername(3) => socket::getpeername,
    __NR_shutdown(2) => socket::shutdown,
    __NR_sendto(6) => socket::sendto,
    __NR_recvfrom(6) => socket::recvfrom,
    __NR_sendmsg(3) => socket::sendmsg,
    __NR_recvmsg(3) => socket::recvmsg,
    __NR_sendmmsg(4) => socket::sendmmsg,
    __NR_recvmmsg(5) => socket::recvmmsg,
    __NR_setsockopt(5) => socket::setsockopt,
    __NR_getsockopt(5) => socket::getsockopt,
    __NR_openat2(4) => file::openat2,
}

/// Every implemented syscall, by number.
pub fn syscall_table() -> &'static [Entry] {
    TABLE
}

/// Names of x86-64 syscalls the Sentry does not implement, for the log.
fn syscall_name(nr: usize) -> Option<&'static str> {
    const NAMES: &[(usize, &str)] = &[
        (7, "poll"),
        (27, "mincore"),
        (37, "alarm"),
        (41, "socket"),
        (42, "connect"),
        (43, "accept"),
        (44, "sendto"),
        (45, "recvfrom"),
        (46, "sendmsg"),
        (47, "recvmsg"),
        (49, "bind"),
        (50, "listen"),
        (53, "socketpair"),
        (54, "setsockopt"),
        (55, "getsockopt"),
        (76, "truncate"),
        (77, "ftruncate"),
        (82, "rename"),
        (83, "mkdir"),
        (84, "rmdir"),
        (86, "link"),
        (87, "unlink"),
        (88, "symlink"),
        (90, "chmod"),
        (91, "fchmod"),
        (92, "chown"),
        (98, "getrusage"),
        (100, "times"),
        (101, "ptrace"),
        (140, "getpriority"),
        (141, "setpriority"),
        (149, "mlock"),
        (151, "mlockall"),
        (165, "mount"),
        (166, "umount2"),
        (203, "sched_setaffinity"),
        (239, "get_mempolicy"),
        (253, "inotify_add_watch"),
        (258, "mkdirat"),
        (263, "unlinkat"),
        (264, "renameat"),
        (282, "signalfd"),
        (289, "signalfd4"),
        (292, "dup3"),
        (302, "prlimit64"),
        (316, "renameat2"),
        (317, "seccomp"),
        (319, "memfd_create"),
        (326, "copy_file_range"),
        (334, "rseq"),
        (435, "clone3"),
        (437, "openat2"),
        (441, "epoll_pwait2"),
    ];
    TABLE
        .iter()
        .find(|e| e.number as usize == nr)
        .map(Entry::name)
        .or_else(|| NAMES.iter().find(|&&(n, _)| n == nr).map(|&(_, name)| name))
}

/// The table indexed by syscall number, built on first use.
fn by_number() -> &'static [Option<&'static Entry>] {
    static INDEX: std::sync::OnceLock<Vec<Option<&'static Entry>>> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| {
        let len = TABLE
            .iter()
            .map(|e| e.number as usize + 1)
            .max()
            .unwrap_or(0);
        let mut index = vec![None; len];
        for e in TABLE {
            index[e.number as usize] = Some(e);
        }
        index
    })
}

/// Numbers already reported as unimplemented (one bit each).
static REPORTED: Mutex<[u64; 8]> = Mutex::new([0; 8]);

fn report_unimplemented(nr: u64) {
    let mut seen = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
    let (word, bit) = ((nr / 64) as usize, nr % 64);
    if word >= seen.len() || seen[word] & (1 << bit) == 0 {
        if let Some(w) = seen.get_mut(word) {
            *w |= 1 << bit;
        }
        let name = usize::try_from(nr).ok().and_then(syscall_name);
        tracing::warn!(
            "unsupported syscall {nr} ({}): returning ENOSYS",
            name.unwrap_or("unknown")
        );
    }
}

/// The strace rendering of a call: its name and the arguments it takes.
fn render_call(entry: Option<&Entry>, nr: u64, args: &[u64; 6]) -> String {
    let (name, n) = match entry {
        Some(e) => (e.name().to_string(), e.args),
        None => (format!("syscall_{nr}"), 6),
    };
    let shown: Vec<String> = args[..n].iter().map(|a| format!("{a:#x}")).collect();
    format!("{name}({})", shown.join(", "))
}

/// Handle the syscall the task just made and leave the result in `rax`.
pub(crate) fn dispatch(task: &mut Task) {
    let nr = task.state.regs.orig_rax;
    let args = task.state.regs.syscall_args();
    let entry = usize::try_from(nr)
        .ok()
        .and_then(|nr| by_number().get(nr).copied().flatten());
    let traced = task.kernel.strace.traces(entry.map(Entry::name));
    let start = traced.then(|| {
        let call = render_call(entry, nr, &args);
        tracing::info!(target: "strace", "[{:4}:{:4}] {} E {call}", task.tg.tgid, task.tid, task.comm_str());
        (call, std::time::Instant::now())
    });
    let result = match entry {
        Some(e) => (e.handler)(task, args),
        None => {
            report_unimplemented(nr);
            Err(Errno::ENOSYS)
        }
    };
    if let Some((call, started)) = start {
        let micros = started.elapsed().as_secs_f64() * 1e6;
        let outcome = match result {
            Ok(v) => format!("= {v} ({v:#x})"),
            Err(e) => format!("= 0 (0x0) errno={} ({e})", e.raw()),
        };
        tracing::info!(
            target: "strace",
            "[{:4}:{:4}] {} X {call} {outcome} ({micros:.3}\u{b5}s)",
            task.tg.tgid,
            task.tid,
            task.comm_str()
        );
    }
    task.state.regs.rax = match result {
        Ok(v) => v,
        Err(e) => e.as_return(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicates_and_names_match() {
        let mut seen = std::collections::HashSet::new();
        for e in TABLE {
            assert!(seen.insert(e.number), "{} listed twice", e.name());
        }
        let name = |n: usize| by_number()[n].map(|e| e.name());
        assert_eq!(name(0), Some("read"));
        assert_eq!(name(231), Some("exit_group"));
        assert_eq!(name(257), Some("openat"));
    }
}
