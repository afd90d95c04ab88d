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
mod poll;
mod process;
mod signal;
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
    handler: Handler,
}

impl Entry {
    /// The syscall's name (`"openat"`).
    pub fn name(&self) -> &'static str {
        self.constant.trim_start_matches("__NR_")
    }
}

macro_rules! table {
    ($($nr:ident => $handler:path),* $(,)?) => {
        const TABLE: &[Entry] = &[
            $(Entry { number: $nr, constant: stringify!($nr), handler: $handler },)*
        ];
    };
}

table! {
    __NR_read => file::read,
    __NR_write => file::write,
    __NR_open => file::open,
    __NR_creat => file::creat,
    __NR_close => file::close,
    __NR_stat => file::stat,
    __NR_fstat => file::fstat,
    __NR_lstat => file::lstat,
    __NR_lseek => file::lseek,
    __NR_poll => poll::poll,
    __NR_mmap => mem::mmap,
    __NR_mprotect => mem::mprotect,
    __NR_munmap => mem::munmap,
    __NR_brk => mem::brk,
    __NR_rt_sigaction => signal::rt_sigaction,
    __NR_rt_sigprocmask => signal::rt_sigprocmask,
    __NR_rt_sigreturn => signal::rt_sigreturn,
    __NR_ioctl => file::ioctl,
    __NR_pread64 => file::pread64,
    __NR_pwrite64 => file::pwrite64,
    __NR_readv => file::readv,
    __NR_writev => file::writev,
    __NR_access => file::access,
    __NR_select => poll::select,
    __NR_pipe => clone::pipe,
    __NR_sched_yield => process::sched_yield,
    __NR_mremap => mem::mremap,
    __NR_msync => mem::msync,
    __NR_mincore => mem::mincore,
    __NR_madvise => mem::madvise,
    __NR_dup => file::dup,
    __NR_dup2 => file::dup2,
    __NR_pause => signal::pause,
    __NR_nanosleep => signal::nanosleep,
    __NR_getitimer => timer::getitimer,
    __NR_alarm => timer::alarm,
    __NR_setitimer => timer::setitimer,
    __NR_getpid => process::getpid,
    __NR_sendfile => file::sendfile,
    __NR_epoll_create => events::epoll_create,
    __NR_clone => clone::clone,
    __NR_fork => clone::fork,
    __NR_vfork => clone::vfork,
    __NR_execve => exec::execve,
    __NR_exit => process::exit,
    __NR_wait4 => clone::wait4,
    __NR_kill => signal::kill,
    __NR_uname => process::uname,
    __NR_fcntl => file::fcntl,
    __NR_getcwd => file::getcwd,
    __NR_chdir => file::chdir,
    __NR_fchdir => file::fchdir,
    __NR_readlink => file::readlink,
    __NR_gettimeofday => process::gettimeofday,
    __NR_getrlimit => process::getrlimit,
    __NR_umask => creds::umask,
    __NR_sysinfo => process::sysinfo,
    __NR_getuid => process::getuid,
    __NR_getgid => process::getgid,
    __NR_geteuid => process::geteuid,
    __NR_getegid => process::getegid,
    __NR_setuid => creds::setuid,
    __NR_setgid => creds::setgid,
    __NR_setreuid => creds::setreuid,
    __NR_setregid => creds::setregid,
    __NR_getgroups => creds::getgroups,
    __NR_setgroups => creds::setgroups,
    __NR_setresuid => creds::setresuid,
    __NR_getresuid => creds::getresuid,
    __NR_setresgid => creds::setresgid,
    __NR_getresgid => creds::getresgid,
    __NR_getppid => process::getppid,
    __NR_getpgrp => clone::getpgrp,
    __NR_setsid => clone::setsid,
    __NR_setpgid => clone::setpgid,
    __NR_getpgid => clone::getpgid,
    __NR_getsid => clone::getsid,
    __NR_rt_sigpending => signal::rt_sigpending,
    __NR_rt_sigqueueinfo => signal::rt_sigqueueinfo,
    __NR_rt_sigsuspend => signal::rt_sigsuspend,
    __NR_sigaltstack => signal::sigaltstack,
    __NR_statfs => file::statfs,
    __NR_fstatfs => file::fstatfs,
    __NR_prctl => process::prctl,
    __NR_arch_prctl => process::arch_prctl,
    __NR_gettid => process::gettid,
    __NR_tkill => signal::tkill,
    __NR_time => process::time,
    __NR_getxattr => file::getxattr,
    __NR_lgetxattr => file::lgetxattr,
    __NR_fgetxattr => file::fgetxattr,
    __NR_listxattr => file::listxattr,
    __NR_llistxattr => file::llistxattr,
    __NR_flistxattr => file::flistxattr,
    __NR_sched_getaffinity => process::sched_getaffinity,
    __NR_futex => futex::futex,
    __NR_getdents64 => file::getdents64,
    __NR_set_tid_address => process::set_tid_address,
    __NR_fadvise64 => file::fadvise64,
    __NR_timer_create => timer::timer_create,
    __NR_timer_settime => timer::timer_settime,
    __NR_timer_gettime => timer::timer_gettime,
    __NR_timer_getoverrun => timer::timer_getoverrun,
    __NR_timer_delete => timer::timer_delete,
    __NR_clock_gettime => process::clock_gettime,
    __NR_clock_getres => process::clock_getres,
    __NR_exit_group => process::exit_group,
    __NR_tgkill => signal::tgkill,
    __NR_clock_nanosleep => signal::clock_nanosleep,
    __NR_epoll_wait => events::epoll_wait,
    __NR_epoll_ctl => events::epoll_ctl,
    __NR_waitid => clone::waitid,
    __NR_openat => file::openat,
    __NR_newfstatat => file::newfstatat,
    __NR_readlinkat => file::readlinkat,
    __NR_faccessat => file::faccessat,
    __NR_epoll_pwait => events::epoll_pwait,
    __NR_timerfd_create => events::timerfd_create,
    __NR_eventfd => events::eventfd,
    __NR_timerfd_settime => events::timerfd_settime,
    __NR_timerfd_gettime => events::timerfd_gettime,
    __NR_eventfd2 => events::eventfd2,
    __NR_epoll_create1 => events::epoll_create1,
    __NR_pselect6 => poll::pselect6,
    __NR_ppoll => poll::ppoll,
    __NR_set_robust_list => process::set_robust_list,
    __NR_dup3 => file::dup3,
    __NR_pipe2 => clone::pipe2,
    __NR_prlimit64 => process::prlimit64,
    __NR_rt_tgsigqueueinfo => signal::rt_tgsigqueueinfo,
    __NR_getrandom => process::getrandom,
    __NR_statx => file::statx,
    __NR_execveat => exec::execveat,
    __NR_clone3 => clone::clone3,
    __NR_faccessat2 => file::faccessat2,
}

/// Every implemented syscall, by number.
pub fn syscall_table() -> &'static [Entry] {
    TABLE
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
        tracing::warn!("unsupported syscall {nr}: returning ENOSYS");
    }
}

/// Handle the syscall the task just made and leave the result in `rax`.
pub(crate) fn dispatch(task: &mut Task) {
    let nr = task.state.regs.orig_rax;
    let args = task.state.regs.syscall_args();
    let entry = usize::try_from(nr)
        .ok()
        .and_then(|nr| by_number().get(nr).copied().flatten());
    let result = match entry {
        Some(e) => {
            let r = (e.handler)(task, args);
            tracing::debug!("{}({:#x?}) = {:?}", e.name(), args, r);
            r
        }
        None => {
            report_unimplemented(nr);
            Err(Errno::ENOSYS)
        }
    };
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
