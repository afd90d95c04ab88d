//! The syscall table: one line per x86-64 syscall, numbers 0 to 462,
//! naming how strace shows its arguments, how much of it the Sentry
//! supports, and the function that handles it (none: ENOSYS).
//!
//! An unimplemented number returns ENOSYS and is logged once, as upstream
//! does. The table is data, so `runsc help syscalls` and docs/syscalls.md
//! are printed from it.

pub(crate) mod caps;
mod clone;
mod creds;
mod events;
mod exec;
mod file;
mod futex;
mod inet;
mod mem;
mod mount;
mod ns;
mod path;
mod poll;
pub(crate) mod process;
pub(crate) mod sched;
mod signal;
mod socket;
mod timer;

use std::sync::Mutex;

use abi::sysno::*;
use abi::Errno;

use crate::strace::{self, Arg};
use crate::task::Task;

/// What a handler returns: the value for `rax`, or an errno.
pub(crate) type SysResult = Result<u64, Errno>;

type Handler = fn(&mut Task, [u64; 6]) -> SysResult;

/// How much of a syscall the Sentry implements, in the words of upstream's
/// compatibility docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    Full,
    /// Implemented, with what is missing.
    Partial(&'static str),
    /// Returns ENOSYS; the note says why, when there is a reason.
    Unimplemented(Option<&'static str>),
}

impl Support {
    /// Upstream's label (`runsc syscalls`).
    pub fn label(self) -> &'static str {
        match self {
            Support::Full => "Full Support",
            Support::Partial(_) => "Partial Support",
            Support::Unimplemented(_) => "Unimplemented",
        }
    }

    pub fn note(self) -> &'static str {
        match self {
            Support::Full | Support::Unimplemented(None) => "",
            Support::Partial(n) | Support::Unimplemented(Some(n)) => n,
        }
    }
}

/// One x86-64 syscall.
pub struct Entry {
    pub number: u32,
    /// `__NR_<name>`, as the macro sees it.
    constant: &'static str,
    /// How strace shows each argument (as many as the call takes).
    formats: &'static [Arg],
    support: Support,
    handler: Option<Handler>,
}

impl Entry {
    /// The syscall's name (`"openat"`).
    pub fn name(&self) -> &'static str {
        // strip_prefix is a 5-byte compare; trim_start_matches would build
        // a substring searcher each time.
        self.constant.strip_prefix("__NR_").unwrap_or(self.constant)
    }

    pub fn support(&self) -> Support {
        self.support
    }
}

macro_rules! support {
    (full) => {
        Support::Full
    };
    (partial $note:literal) => {
        Support::Partial($note)
    };
    (none) => {
        Support::Unimplemented(None)
    };
    (none $note:literal) => {
        Support::Unimplemented(Some($note))
    };
}

macro_rules! handler {
    () => {
        None
    };
    ($h:path) => {
        Some($h as Handler)
    };
}

/// `__NR_name(strace formats) level[("note")] [=> handler];` where level is
/// full, partial (with a note) or none (unimplemented, note optional).
macro_rules! table {
    ($($nr:ident($($fmt:ident),*) $level:ident $(($note:literal))? $(=> $handler:path)?;)*) => {
        const TABLE: &[Entry] = &[
            $(Entry {
                number: $nr,
                constant: stringify!($nr),
                formats: &[$(Arg::$fmt),*],
                support: support!($level $($note)?),
                handler: handler!($($handler)?),
            },)*
        ];
    };
}

table! {
    __NR_read(Fd, ReadBuffer, Hex) full => file::read;
    __NR_write(Fd, WriteBuffer, Hex) full => file::write;
    __NR_open(Path, OpenFlags, Mode) full => file::open;
    __NR_close(Fd) full => file::close;
    __NR_stat(Path, Hex) full => file::stat;
    __NR_fstat(Fd, Hex) full => file::fstat;
    __NR_lstat(Path, Hex) full => file::lstat;
    __NR_poll(PollFds, Hex, Hex) full => poll::poll;
    __NR_lseek(Fd, Hex, Hex) full => file::lseek;
    __NR_mmap(Hex, Hex, MmapProt, MmapFlags, Fd, Hex) partial("files: regular files only, no writable shared mapping of a host file") => mem::mmap;
    __NR_mprotect(Hex, Hex, MmapProt) full => mem::mprotect;
    __NR_munmap(Hex, Hex) full => mem::munmap;
    __NR_brk(Hex) full => mem::brk;
    __NR_rt_sigaction(Signal, SigAction, PostSigAction, Hex) full => signal::rt_sigaction;
    __NR_rt_sigprocmask(SignalMaskAction, SigSet, PostSigSet, Hex) full => signal::rt_sigprocmask;
    __NR_rt_sigreturn() full => signal::rt_sigreturn;
    __NR_ioctl(Fd, Hex, Hex) partial("terminal, pty and FIO* requests only") => file::ioctl;
    __NR_pread64(Fd, ReadBuffer, Hex, Hex) full => file::pread64;
    __NR_pwrite64(Fd, WriteBuffer, Hex, Hex) full => file::pwrite64;
    __NR_readv(Fd, ReadIovec, Hex) full => file::readv;
    __NR_writev(Fd, WriteIovec, Hex) full => file::writev;
    __NR_access(Path, Oct) full => file::access;
    __NR_pipe(PipeFds) full => clone::pipe;
    __NR_select(Hex, Hex, Hex, Hex, Timeval) full => poll::select;
    __NR_sched_yield() full => process::sched_yield;
    __NR_mremap(Hex, Hex, Hex, Hex, Hex) partial("no MREMAP_DONTUNMAP") => mem::mremap;
    __NR_msync(Hex, Hex, Hex) full => mem::msync;
    __NR_mincore(Hex, Hex, Hex) full => mem::mincore;
    __NR_madvise(Hex, Hex, Hex) partial("MADV_DONTNEED, MADV_FREE, MADV_DONTFORK/DOFORK and access hints only") => mem::madvise;
    __NR_shmget(Hex, Hex, Hex) none;
    __NR_shmat(Hex, Hex, Hex) none;
    __NR_shmctl(Hex, Hex, Hex) none;
    __NR_dup(Fd) full => file::dup;
    __NR_dup2(Fd, Fd) full => file::dup2;
    __NR_pause() full => signal::pause;
    __NR_nanosleep(Timespec, PostTimespec) full => signal::nanosleep;
    __NR_getitimer(ItimerType, PostItimerVal) full => timer::getitimer;
    __NR_alarm(Hex) full => timer::alarm;
    __NR_setitimer(ItimerType, ItimerVal, PostItimerVal) full => timer::setitimer;
    __NR_getpid() full => process::getpid;
    __NR_sendfile(Fd, Fd, Hex, Hex) full => file::sendfile;
    __NR_socket(SockFamily, SockType, Hex) partial("AF_UNIX; AF_INET and AF_INET6 with --network=host (no raw sockets)") => socket::socket;
    __NR_connect(Fd, SockAddr, Hex) full => socket::connect;
    __NR_accept(Fd, PostSockAddr, SockLen) full => socket::accept;
    __NR_sendto(Fd, WriteBuffer, Hex, Hex, SockAddr, Hex) full => socket::sendto;
    __NR_recvfrom(Fd, ReadBuffer, Hex, Hex, PostSockAddr, SockLen) full => socket::recvfrom;
    __NR_sendmsg(Fd, Hex, Hex) partial("control messages: SCM_RIGHTS and SCM_CREDENTIALS (unix), packet info (inet)") => socket::sendmsg;
    __NR_recvmsg(Fd, Hex, Hex) full => socket::recvmsg;
    __NR_shutdown(Fd, Hex) full => socket::shutdown;
    __NR_bind(Fd, SockAddr, Hex) full => socket::bind;
    __NR_listen(Fd, Hex) full => socket::listen;
    __NR_getsockname(Fd, PostSockAddr, SockLen) full => socket::getsockname;
    __NR_getpeername(Fd, PostSockAddr, SockLen) full => socket::getpeername;
    __NR_socketpair(SockFamily, SockType, Hex, Hex) full => socket::socketpair;
    __NR_setsockopt(Fd, Hex, Hex, Hex, Hex) partial("unix: a few SOL_SOCKET options; inet: an allow-list of socket, IP, IPv6, TCP and UDP options") => socket::setsockopt;
    __NR_getsockopt(Fd, Hex, Hex, Hex, SockLen) partial("unix: a few SOL_SOCKET options; inet: an allow-list of socket, IP, IPv6, TCP and UDP options") => socket::getsockopt;
    __NR_clone(CloneFlags, Hex, Hex, Hex, Hex) partial("namespaces: mount, UTS and IPC only; no CLONE_PTRACE or CLONE_PIDFD") => clone::clone;
    __NR_fork() full => clone::fork;
    __NR_vfork() full => clone::vfork;
    __NR_execve(Path, ExecveStringVector, ExecveStringVector) partial("arguments and environment must be UTF-8") => exec::execve;
    __NR_exit(Hex) full => process::exit;
    __NR_wait4(Hex, Hex, Hex, Hex) partial("rusage: user and system times only; the other fields read 0") => clone::wait4;
    __NR_kill(Hex, Signal) full => signal::kill;
    __NR_uname(Hex) full => process::uname;
    __NR_semget(Hex, Hex, Hex) none;
    __NR_semop(Hex, Hex, Hex) none;
    __NR_semctl(Hex, Hex, Hex, Hex) none;
    __NR_shmdt(Hex) none;
    __NR_msgget(Hex, Hex) none;
    __NR_msgsnd(Hex, Hex, Hex, Hex) none;
    __NR_msgrcv(Hex, Hex, Hex, Hex, Hex) none;
    __NR_msgctl(Hex, Hex, Hex) none;
    __NR_fcntl(Fd, Hex, Hex) partial("no leases or F_NOTIFY") => file::fcntl;
    __NR_flock(Fd, Hex) full => file::flock;
    __NR_fsync(Fd) full => path::fsync;
    __NR_fdatasync(Fd) full => path::fsync;
    __NR_truncate(Path, Hex) full => path::truncate;
    __NR_ftruncate(Fd, Hex) full => path::ftruncate;
    __NR_getdents(Fd, Hex, Hex) none;
    __NR_getcwd(PostPath, Hex) full => file::getcwd;
    __NR_chdir(Path) full => file::chdir;
    __NR_fchdir(Fd) full => file::fchdir;
    __NR_rename(Path, Path) full => path::rename;
    __NR_mkdir(Path, Oct) full => path::mkdir;
    __NR_rmdir(Path) full => path::rmdir;
    __NR_creat(Path, Oct) full => file::creat;
    __NR_link(Path, Path) full => path::link;
    __NR_unlink(Path) full => path::unlink;
    __NR_symlink(Path, Path) full => path::symlink;
    __NR_readlink(Path, ReadBuffer, Hex) full => file::readlink;
    __NR_chmod(Path, Mode) full => path::chmod;
    __NR_fchmod(Fd, Mode) full => path::fchmod;
    __NR_chown(Path, Hex, Hex) full => path::chown;
    __NR_fchown(Fd, Hex, Hex) full => path::fchown;
    __NR_lchown(Path, Hex, Hex) full => path::lchown;
    __NR_umask(Hex) full => creds::umask;
    __NR_gettimeofday(Timeval, Hex) full => process::gettimeofday;
    __NR_getrlimit(Hex, Hex) full => process::getrlimit;
    __NR_getrusage(Hex, Hex) partial("user and system times only; the other fields read 0") => process::getrusage;
    __NR_sysinfo(Hex) full => process::sysinfo;
    __NR_times(Hex) full => process::times;
    __NR_ptrace(Hex, Hex, Hex, Hex) none;
    __NR_getuid() full => process::getuid;
    __NR_syslog(Hex, Hex, Hex) none;
    __NR_getgid() full => process::getgid;
    __NR_setuid(Hex) full => creds::setuid;
    __NR_setgid(Hex) full => creds::setgid;
    __NR_geteuid() full => process::geteuid;
    __NR_getegid() full => process::getegid;
    __NR_setpgid(Hex, Hex) full => clone::setpgid;
    __NR_getppid() full => process::getppid;
    __NR_getpgrp() full => clone::getpgrp;
    __NR_setsid() full => clone::setsid;
    __NR_setreuid(Hex, Hex) full => creds::setreuid;
    __NR_setregid(Hex, Hex) full => creds::setregid;
    __NR_getgroups(Hex, Hex) full => creds::getgroups;
    __NR_setgroups(Hex, Hex) full => creds::setgroups;
    __NR_setresuid(Hex, Hex, Hex) full => creds::setresuid;
    __NR_getresuid(Hex, Hex, Hex) full => creds::getresuid;
    __NR_setresgid(Hex, Hex, Hex) full => creds::setresgid;
    __NR_getresgid(Hex, Hex, Hex) full => creds::getresgid;
    __NR_getpgid(Hex) full => clone::getpgid;
    __NR_setfsuid(Hex) none;
    __NR_setfsgid(Hex) none;
    __NR_getsid(Hex) full => clone::getsid;
    __NR_capget(Hex, Hex) partial("no file capabilities or ambient set") => caps::capget;
    __NR_capset(Hex, Hex) partial("no file capabilities or ambient set") => caps::capset;
    __NR_rt_sigpending(Hex, Hex) full => signal::rt_sigpending;
    __NR_rt_sigtimedwait(SigSet, Hex, Timespec, Hex) full => signal::rt_sigtimedwait;
    __NR_rt_sigqueueinfo(Hex, Signal, Hex) full => signal::rt_sigqueueinfo;
    __NR_rt_sigsuspend(SigSet, Hex) full => signal::rt_sigsuspend;
    __NR_sigaltstack(Hex, Hex) full => signal::sigaltstack;
    __NR_utime(Path, Hex) full => path::utime;
    __NR_mknod(Path, Mode, Hex) full => path::mknod;
    __NR_uselib(Hex) none("not implemented by Linux either");
    __NR_personality(Hex) none;
    __NR_ustat(Hex, Hex) none;
    __NR_statfs(Path, Hex) full => file::statfs;
    __NR_fstatfs(Fd, Hex) full => file::fstatfs;
    __NR_sysfs(Hex, Hex, Hex) none;
    __NR_getpriority(Hex, Hex) full => sched::getpriority;
    __NR_setpriority(Hex, Hex, Hex) partial("recorded; the host schedules") => sched::setpriority;
    __NR_sched_setparam(Hex, Hex) partial("recorded; the host schedules") => sched::sched_setparam;
    __NR_sched_getparam(Hex, Hex) full => sched::sched_getparam;
    __NR_sched_setscheduler(Hex, Hex, Hex) partial("recorded; the host schedules") => sched::sched_setscheduler;
    __NR_sched_getscheduler(Hex) full => sched::sched_getscheduler;
    __NR_sched_get_priority_max(Hex) full => sched::sched_get_priority_max;
    __NR_sched_get_priority_min(Hex) full => sched::sched_get_priority_min;
    __NR_sched_rr_get_interval(Hex, Hex) none;
    __NR_mlock(Hex, Hex) full => mem::mlock;
    __NR_munlock(Hex, Hex) full => mem::munlock;
    __NR_mlockall(Hex) full => mem::mlockall;
    __NR_munlockall() full => mem::munlockall;
    __NR_vhangup() none;
    __NR_modify_ldt(Hex, Hex, Hex) none;
    __NR_pivot_root(Path, Path) full => mount::pivot_root;
    __NR__sysctl(Hex) none("not implemented by Linux either");
    __NR_prctl(Hex, Hex, Hex, Hex, Hex) partial("PDEATHSIG, DUMPABLE, NO_NEW_PRIVS and NAME only") => process::prctl;
    __NR_arch_prctl(Hex, Hex) partial("ARCH_SET_FS/GS and ARCH_GET_FS/GS only") => process::arch_prctl;
    __NR_adjtimex(Hex) none;
    __NR_setrlimit(Hex, Hex) partial("enforced and settable: AS, DATA, STACK, NOFILE, CORE (status bit only), RSS, MEMLOCK; others EPERM") => process::setrlimit;
    __NR_chroot(Path) full => file::chroot;
    __NR_sync() full => path::sync;
    __NR_acct(Hex) none;
    __NR_settimeofday(Timeval, Hex) none;
    __NR_mount(Path, Path, Path, Hex, Path) partial("tmpfs, proc and sysfs, bind mounts, remounts of the mount flags, moves; propagation types are accepted but every mount stays private (no shared subtrees)") => mount::mount;
    __NR_umount2(Path, Hex) partial("no MNT_EXPIRE") => mount::umount2;
    __NR_swapon(Hex, Hex) none;
    __NR_swapoff(Hex) none;
    __NR_reboot(Hex, Hex, Hex, Hex) none;
    __NR_sethostname(Hex, Hex) full => ns::sethostname;
    __NR_setdomainname(Hex, Hex) full => ns::setdomainname;
    __NR_iopl(Hex) none;
    __NR_ioperm(Hex, Hex, Hex) none;
    __NR_create_module(Path, Hex) none("not implemented by Linux either");
    __NR_init_module(Hex, Hex, Hex) none;
    __NR_delete_module(Hex, Hex) none;
    __NR_get_kernel_syms(Hex) none("not implemented by Linux either");
    __NR_query_module(Hex, Hex, Hex, Hex, Hex) none("not implemented by Linux either");
    __NR_quotactl(Hex, Hex, Hex, Hex) none;
    __NR_nfsservctl(Hex, Hex, Hex) none("not implemented by Linux either");
    __NR_getpmsg(Hex, Hex, Hex, Hex, Hex) none("not implemented by Linux either");
    __NR_putpmsg(Hex, Hex, Hex, Hex, Hex) none("not implemented by Linux either");
    __NR_afs_syscall(Hex, Hex, Hex, Hex, Hex) none("not implemented by Linux either");
    __NR_tuxcall(Hex, Hex, Hex) none("not implemented by Linux either");
    __NR_security(Hex, Hex, Hex) none("not implemented by Linux either");
    __NR_gettid() full => process::gettid;
    __NR_readahead(Hex, Hex, Hex) none;
    __NR_setxattr(Path, Path, Hex, Hex, Hex) partial("user, trusted and security namespaces only (no ACLs)") => path::setxattr;
    __NR_lsetxattr(Path, Path, Hex, Hex, Hex) partial("user, trusted and security namespaces only (no ACLs)") => path::lsetxattr;
    __NR_fsetxattr(Fd, Path, Hex, Hex, Hex) partial("user, trusted and security namespaces only (no ACLs)") => path::fsetxattr;
    __NR_getxattr(Path, Path, Hex, Hex) full => path::getxattr;
    __NR_lgetxattr(Path, Path, Hex, Hex) full => path::lgetxattr;
    __NR_fgetxattr(Fd, Path, Hex, Hex) full => path::fgetxattr;
    __NR_listxattr(Path, Path, Hex) full => path::listxattr;
    __NR_llistxattr(Path, Path, Hex) full => path::llistxattr;
    __NR_flistxattr(Fd, Path, Hex) full => path::flistxattr;
    __NR_removexattr(Path, Path) full => path::removexattr;
    __NR_lremovexattr(Path, Path) full => path::lremovexattr;
    __NR_fremovexattr(Fd, Path) full => path::fremovexattr;
    __NR_tkill(Hex, Signal) full => signal::tkill;
    __NR_time(Hex) full => process::time;
    __NR_futex(Hex, FutexOp, Hex, Timespec, Hex, Hex) partial("PI operations hand ownership over exactly but boost no priority (the host schedules)") => futex::futex;
    __NR_sched_setaffinity(Hex, Hex, Hex) partial("recorded, first 64 CPUs; the host schedules") => sched::sched_setaffinity;
    __NR_sched_getaffinity(Hex, Hex, Hex) full => sched::sched_getaffinity;
    __NR_set_thread_area(Hex) none;
    __NR_io_setup(Hex, Hex) none;
    __NR_io_destroy(Hex) none;
    __NR_io_getevents(Hex, Hex, Hex, Hex, Timespec) none;
    __NR_io_submit(Hex, Hex, Hex) none;
    __NR_io_cancel(Hex, Hex, Hex) none;
    __NR_get_thread_area(Hex) none;
    __NR_lookup_dcookie(Hex, Hex, Hex) none;
    __NR_epoll_create(Hex) full => events::epoll_create;
    __NR_epoll_ctl_old(Hex, Hex, Hex, Hex) none("not implemented by Linux either");
    __NR_epoll_wait_old(Hex, Hex, Hex, Hex) none("not implemented by Linux either");
    __NR_remap_file_pages(Hex, Hex, Hex, Hex, Hex) none;
    __NR_getdents64(Fd, Hex, Hex) full => file::getdents64;
    __NR_set_tid_address(Hex) full => process::set_tid_address;
    __NR_restart_syscall() full => signal::restart_syscall;
    __NR_semtimedop(Hex, Hex, Hex, Hex) none;
    __NR_fadvise64(Fd, Hex, Hex, Hex) full => file::fadvise64;
    __NR_timer_create(Hex, Hex, Hex) full => timer::timer_create;
    __NR_timer_settime(Hex, Hex, ItimerSpec, PostItimerSpec) full => timer::timer_settime;
    __NR_timer_gettime(Hex, PostItimerSpec) full => timer::timer_gettime;
    __NR_timer_getoverrun(Hex) full => timer::timer_getoverrun;
    __NR_timer_delete(Hex) full => timer::timer_delete;
    __NR_clock_settime(Hex, Timespec) none;
    __NR_clock_gettime(Hex, PostTimespec) full => process::clock_gettime;
    __NR_clock_getres(Hex, PostTimespec) full => process::clock_getres;
    __NR_clock_nanosleep(Hex, Hex, Timespec, PostTimespec) full => signal::clock_nanosleep;
    __NR_exit_group(Hex) full => process::exit_group;
    __NR_epoll_wait(Fd, EpollEvents, Hex, Hex) full => events::epoll_wait;
    __NR_epoll_ctl(Fd, EpollCtlOp, Fd, EpollEvent) full => events::epoll_ctl;
    __NR_tgkill(Hex, Hex, Signal) full => signal::tgkill;
    __NR_utimes(Path, Timeval) full => path::utimes;
    __NR_vserver(Hex, Hex, Hex, Hex, Hex) none("not implemented by Linux either");
    __NR_mbind(Hex, Hex, Hex, Hex, Hex, Hex) none;
    __NR_set_mempolicy(Hex, Hex, Hex) none;
    __NR_get_mempolicy(Hex, Hex, Hex, Hex, Hex) none;
    __NR_mq_open(Hex, Hex, Hex, Hex) none;
    __NR_mq_unlink(Hex) none;
    __NR_mq_timedsend(Hex, Hex, Hex, Hex, Hex) none;
    __NR_mq_timedreceive(Hex, Hex, Hex, Hex, Hex) none;
    __NR_mq_notify(Hex, Hex) none;
    __NR_mq_getsetattr(Hex, Hex, Hex) none;
    __NR_kexec_load(Hex, Hex, Hex, Hex) none;
    __NR_waitid(Hex, Hex, Hex, Hex, Hex) full => clone::waitid;
    __NR_add_key(Hex, Hex, Hex, Hex, Hex) none;
    __NR_request_key(Hex, Hex, Hex, Hex) none;
    __NR_keyctl(Hex, Hex, Hex, Hex, Hex) none;
    __NR_ioprio_set(Hex, Hex, Hex) none;
    __NR_ioprio_get(Hex, Hex) none;
    __NR_inotify_init() partial("changes made on the host outside the sandbox are not seen") => events::inotify_init;
    __NR_inotify_add_watch(Fd, Path, Hex) partial("changes made on the host outside the sandbox are not seen") => events::inotify_add_watch;
    __NR_inotify_rm_watch(Fd, Hex) full => events::inotify_rm_watch;
    __NR_migrate_pages(Hex, Hex, Hex, Hex) none;
    __NR_openat(Fd, Path, OpenFlags, Mode) full => file::openat;
    __NR_mkdirat(Fd, Path, Hex) full => path::mkdirat;
    __NR_mknodat(Fd, Path, Mode, Hex) full => path::mknodat;
    __NR_fchownat(Fd, Path, Hex, Hex, Hex) full => path::fchownat;
    __NR_futimesat(Fd, Path, Hex) full => path::futimesat;
    __NR_newfstatat(Fd, Path, Hex, Hex) full => file::newfstatat;
    __NR_unlinkat(Fd, Path, Hex) full => path::unlinkat;
    __NR_renameat(Fd, Path, Hex, Path) full => path::renameat;
    __NR_linkat(Fd, Path, Hex, Path, Hex) full => path::linkat;
    __NR_symlinkat(Path, Fd, Path) full => path::symlinkat;
    __NR_readlinkat(Fd, Path, ReadBuffer, Hex) full => file::readlinkat;
    __NR_fchmodat(Fd, Path, Mode) full => path::fchmodat;
    __NR_faccessat(Fd, Path, Oct) full => file::faccessat;
    __NR_pselect6(Hex, Hex, Hex, Hex, Timespec, SigSet) full => poll::pselect6;
    __NR_ppoll(PollFds, Hex, Timespec, SigSet, Hex) full => poll::ppoll;
    __NR_unshare(CloneFlags) partial("CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_FS, CLONE_FILES, CLONE_SYSVSEM; other namespaces are EINVAL") => ns::unshare;
    __NR_set_robust_list(Hex, Hex) full => process::set_robust_list;
    __NR_get_robust_list(Hex, Hex, Hex) full => process::get_robust_list;
    __NR_splice(Fd, Hex, Fd, Hex, Hex, Hex) full => file::splice;
    __NR_tee(Fd, Fd, Hex, Hex) partial("pipes made by pipe(2) only, not FIFOs") => file::tee;
    __NR_sync_file_range(Fd, Hex, Hex, Hex) full => path::sync_file_range;
    __NR_vmsplice(Fd, Hex, Hex, Hex) full => file::vmsplice;
    __NR_move_pages(Hex, Hex, Hex, Hex, Hex, Hex) none;
    __NR_utimensat(Fd, Path, UTimeTimespec, Hex) full => path::utimensat;
    __NR_epoll_pwait(Fd, EpollEvents, Hex, Hex, SigSet, Hex) full => events::epoll_pwait;
    __NR_signalfd(Hex, Hex, Hex) full => signal::signalfd;
    __NR_timerfd_create(Hex, Hex) full => events::timerfd_create;
    __NR_eventfd(Hex) full => events::eventfd;
    __NR_fallocate(Fd, Hex, Hex, Hex) partial("mode 0 only") => path::fallocate;
    __NR_timerfd_settime(Fd, Hex, ItimerSpec, PostItimerSpec) full => events::timerfd_settime;
    __NR_timerfd_gettime(Fd, PostItimerSpec) full => events::timerfd_gettime;
    __NR_accept4(Fd, PostSockAddr, SockLen, SockFlags) full => socket::accept4;
    __NR_signalfd4(Hex, Hex, Hex, Hex) full => signal::signalfd4;
    __NR_eventfd2(Hex, Hex) full => events::eventfd2;
    __NR_epoll_create1(Hex) full => events::epoll_create1;
    __NR_dup3(Fd, Fd, Hex) full => file::dup3;
    __NR_pipe2(PipeFds, Hex) full => clone::pipe2;
    __NR_inotify_init1(Hex) partial("changes made on the host outside the sandbox are not seen") => events::inotify_init1;
    __NR_preadv(Fd, ReadIovec, Hex, Hex) full => file::preadv;
    __NR_pwritev(Fd, WriteIovec, Hex, Hex) full => file::pwritev;
    __NR_rt_tgsigqueueinfo(Hex, Hex, Signal, Hex) full => signal::rt_tgsigqueueinfo;
    __NR_perf_event_open(Hex, Hex, Hex, Hex, Hex) none;
    __NR_recvmmsg(Fd, Hex, Hex, Hex, Hex) full => socket::recvmmsg;
    __NR_fanotify_init(Hex, Hex) none;
    __NR_fanotify_mark(Hex, Hex, Hex, Hex, Hex) none;
    __NR_prlimit64(Hex, Hex, Hex, Hex) partial("enforced and settable: AS, DATA, STACK, NOFILE, CORE (status bit only), RSS, MEMLOCK; others EPERM") => process::prlimit64;
    __NR_name_to_handle_at(Fd, Hex, Hex, Hex, Hex) none;
    __NR_open_by_handle_at(Fd, Hex, Hex) none;
    __NR_clock_adjtime(Hex, Hex) none;
    __NR_syncfs(Fd) full => path::syncfs;
    __NR_sendmmsg(Fd, Hex, Hex, Hex) partial("control messages: SCM_RIGHTS and SCM_CREDENTIALS (unix), packet info (inet)") => socket::sendmmsg;
    __NR_setns(Fd, Hex) partial("mount, UTS and IPC namespace files; no pidfds") => ns::setns;
    __NR_getcpu(Hex, Hex, Hex) full => process::getcpu;
    __NR_process_vm_readv(Hex, ReadIovec, Hex, Iovec, Hex, Hex) none;
    __NR_process_vm_writev(Hex, Iovec, Hex, WriteIovec, Hex, Hex) none;
    __NR_kcmp(Hex, Hex, Hex, Hex, Hex) none;
    __NR_finit_module(Hex, Hex, Hex) none;
    __NR_sched_setattr(Hex, Hex, Hex) none;
    __NR_sched_getattr(Hex, Hex, Hex) none;
    __NR_renameat2(Fd, Path, Hex, Path, Hex) full => path::renameat2;
    __NR_seccomp(Hex, Hex, Hex) none;
    __NR_getrandom(Hex, Hex, Hex) full => process::getrandom;
    __NR_memfd_create(Path, Hex) partial("no file seals or MFD_HUGETLB") => file::memfd_create;
    __NR_kexec_file_load(Fd, Fd, Hex, Hex, Hex) none;
    __NR_bpf(Hex, Hex, Hex) none;
    __NR_execveat(Fd, Path, ExecveStringVector, ExecveStringVector, Hex) partial("arguments and environment must be UTF-8") => exec::execveat;
    __NR_userfaultfd(Hex) none;
    __NR_membarrier(Hex, Hex) none;
    __NR_mlock2(Hex, Hex, Hex) full => mem::mlock2;
    __NR_copy_file_range(Fd, Hex, Fd, Hex, Hex, Hex) full => file::copy_file_range;
    __NR_preadv2(Fd, ReadIovec, Hex, Hex, Hex) partial("RWF_NOWAIT gives EOPNOTSUPP") => file::preadv2;
    __NR_pwritev2(Fd, WriteIovec, Hex, Hex, Hex) partial("RWF_NOWAIT gives EOPNOTSUPP") => file::pwritev2;
    __NR_pkey_mprotect(Hex, Hex, Hex, Hex) none;
    __NR_pkey_alloc(Hex, Hex) none;
    __NR_pkey_free(Hex) none;
    __NR_statx(Fd, Path, Hex, Hex, Hex) full => file::statx;
    __NR_io_pgetevents(Hex, Hex, Hex, Hex, Timespec, SigSet) none;
    __NR_rseq(Hex, Hex, Hex, Hex) none("ENOSYS on purpose: libc runs without restartable sequences");
    __NR_uretprobe() none;
    __NR_pidfd_send_signal(Fd, Signal, Hex, Hex) none;
    __NR_io_uring_setup(Hex, Hex) none;
    __NR_io_uring_enter(Fd, Hex, Hex, Hex, SigSet, Hex) none;
    __NR_io_uring_register(Fd, Hex, Hex, Hex) none;
    __NR_open_tree(Fd, Path, Hex) none;
    __NR_move_mount(Fd, Path, Fd, Path, Hex) none;
    __NR_fsopen(Path, Hex) none;
    __NR_fsconfig(Fd, Hex, Hex, Hex, Hex) none;
    __NR_fsmount(Fd, Hex, Hex) none;
    __NR_fspick(Fd, Path, Hex) none;
    __NR_pidfd_open(Hex, Hex) none;
    __NR_clone3(Hex, Hex) partial("clone's flags (namespaces: mount, UTS and IPC only); no set_tid or cgroup") => clone::clone3;
    __NR_close_range(Fd, Fd, Hex) full => file::close_range;
    __NR_openat2(Fd, Path, Hex, Hex) full => file::openat2;
    __NR_pidfd_getfd(Fd, Fd, Hex) none;
    __NR_faccessat2(Fd, Path, Oct, Hex) full => file::faccessat2;
    __NR_process_madvise(Fd, Hex, Hex, Hex, Hex) none;
    __NR_epoll_pwait2(Fd, EpollEvents, Hex, Timespec, SigSet) none;
    __NR_mount_setattr(Fd, Path, Hex, Hex, Hex) none;
    __NR_quotactl_fd(Fd, Hex, Hex, Hex) none;
    __NR_landlock_create_ruleset(Hex, Hex, Hex) none;
    __NR_landlock_add_rule(Fd, Hex, Hex, Hex) none;
    __NR_landlock_restrict_self(Fd, Hex) none;
    __NR_memfd_secret(Hex) none;
    __NR_process_mrelease(Fd, Hex) none;
    __NR_futex_waitv(Hex, Hex, Hex, Timespec, Hex) none;
    __NR_set_mempolicy_home_node(Hex, Hex, Hex, Hex) none;
    __NR_cachestat(Fd, Hex, Hex, Hex) none;
    __NR_fchmodat2(Fd, Path, Mode, Hex) none;
    __NR_map_shadow_stack(Hex, Hex, Hex) none;
    __NR_futex_wake(Hex, Hex, Hex, Hex) none;
    __NR_futex_wait(Hex, Hex, Hex, Hex, Timespec, Hex) none;
    __NR_futex_requeue(Hex, Hex, Hex, Hex) none;
    __NR_statmount(Hex, Hex, Hex, Hex) none;
    __NR_listmount(Hex, Hex, Hex, Hex) none;
    __NR_lsm_get_self_attr(Hex, Hex, Hex, Hex) none;
    __NR_lsm_set_self_attr(Hex, Hex, Hex, Hex) none;
    __NR_lsm_list_modules(Hex, Hex, Hex) none;
    __NR_mseal(Hex, Hex, Hex) none;
}

/// Every x86-64 syscall, by number.
pub fn syscall_table() -> &'static [Entry] {
    TABLE
}

/// The name of syscall `nr`, if it is one.
fn syscall_name(nr: usize) -> Option<&'static str> {
    by_number().get(nr).copied().flatten().map(Entry::name)
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

/// Log that `nr` is unsupported, the first time only; whether it logged.
fn report_unimplemented(nr: u64) -> bool {
    let mut seen = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
    let (word, bit) = ((nr / 64) as usize, nr % 64);
    let first = word >= seen.len() || seen[word] & (1 << bit) == 0;
    if first {
        if let Some(w) = seen.get_mut(word) {
            *w |= 1 << bit;
        }
        let name = usize::try_from(nr).ok().and_then(syscall_name);
        tracing::warn!(
            "unsupported syscall {nr} ({}): returning ENOSYS",
            name.unwrap_or("unknown")
        );
    }
    first
}

/// Handle the syscall the task just made and leave the result in `rax`.
pub(crate) fn dispatch(task: &mut Task) {
    let nr = task.state.regs.orig_rax;
    let args = task.state.regs.syscall_args();
    let entry = usize::try_from(nr)
        .ok()
        .and_then(|nr| by_number().get(nr).copied().flatten());
    let traced = task.kernel.strace.traces(|| entry.map(Entry::name));
    let call = traced.then(|| strace::enter(task, entry.map(|e| (e.name(), e.formats)), nr, &args));
    let result = match entry.and_then(|e| e.handler) {
        Some(handler) => handler(task, args),
        None => {
            let _ = report_unimplemented(nr);
            Err(Errno::ENOSYS)
        }
    };
    if let Some(call) = call {
        strace::exit(task, call, &args, result);
    }
    task.state.regs.rax = match result {
        Ok(v) => v,
        Err(e) => e.as_return(),
    };
}

/// docs/syscalls.md: every syscall with its support level and note.
pub fn syscalls_markdown() -> String {
    let mut out = String::from(
        "# Syscalls (x86-64)\n\n\
         Generated from the Sentry's syscall table (sentry/src/syscalls/mod.rs)\n\
         by `runsc help syscalls --markdown`; do not edit by hand.\n\
         Unimplemented syscalls return ENOSYS.\n\n\
         | Number | Name | Support | Note |\n\
         |-------:|------|---------|------|\n",
    );
    for e in TABLE {
        let s = e.support();
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            e.number,
            e.name(),
            s.label(),
            s.note().replace('|', "\\|")
        ));
    }
    out
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

    #[test]
    fn every_x86_64_syscall_is_listed() {
        let numbers: Vec<u32> = TABLE.iter().map(|e| e.number).collect();
        let want: Vec<u32> = (0..=335).chain(424..=462).collect();
        assert_eq!(numbers, want, "one line per number, in order");
        assert_eq!(syscall_name(334), Some("rseq"));
        assert_eq!(syscall_name(462), Some("mseal"));
        assert_eq!(syscall_name(400), None);
    }

    #[test]
    fn levels_match_handlers_and_formats_fit() {
        for e in TABLE {
            let unimplemented = matches!(e.support, Support::Unimplemented(_));
            assert_eq!(e.handler.is_none(), unimplemented, "{}", e.name());
            if let Support::Partial(note) = e.support {
                assert!(
                    !note.is_empty(),
                    "{}: a partial level needs a note",
                    e.name()
                );
            }
            assert!(e.formats.len() <= 6, "{}", e.name());
            // These read their length or count from the next argument.
            for (i, f) in e.formats.iter().enumerate() {
                if matches!(
                    f,
                    Arg::WriteBuffer
                        | Arg::ReadIovec
                        | Arg::WriteIovec
                        | Arg::Iovec
                        | Arg::SockAddr
                        | Arg::PostSockAddr
                        | Arg::PollFds
                ) {
                    assert!(i + 1 < e.formats.len(), "{}: {f:?} is last", e.name());
                }
            }
        }
    }

    #[test]
    fn unimplemented_numbers_are_reported_once() {
        // 29 (shmget) has no handler and no other test reports it.
        assert!(by_number()[29].unwrap().handler.is_none());
        assert!(report_unimplemented(29));
        assert!(!report_unimplemented(29));
        // Numbers past the bitmap are logged each time, without panicking.
        assert!(report_unimplemented(100_000));
    }

    #[test]
    fn docs_page_matches_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/syscalls.md");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == syscalls_markdown(),
            "docs/syscalls.md differs from the syscall table; regenerate it with\n  \
             cargo run --release -p runsc -- help syscalls --markdown > docs/syscalls.md"
        );
    }
}
