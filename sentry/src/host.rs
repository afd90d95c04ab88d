//! The host syscalls the Sentry makes, as small safe functions.
//!
//! Every `unsafe` block of the Sentry outside the memory file is here. The
//! Sentry never opens a host path by name: files are reached only beneath a
//! directory descriptor it was given (the `vfs` crate's host filesystem).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use abi::Errno;

pub(crate) fn last_errno() -> Errno {
    Errno::from_io(&std::io::Error::last_os_error())
}

pub(crate) fn check(ret: libc::c_long) -> Result<usize, Errno> {
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret as usize)
    }
}

/// Retry a host call interrupted by a signal meant for the Sentry.
pub(crate) fn retry(mut f: impl FnMut() -> libc::c_long) -> Result<usize, Errno> {
    loop {
        match check(f()) {
            Err(e) if e == Errno::EINTR => continue,
            other => return other,
        }
    }
}

/// The host descriptor's terminal attributes or window size (`TCGETS`,
/// `TIOCGWINSZ`): read-only ioctls whose result is copied to the
/// application as is.
pub fn ioctl_read(fd: BorrowedFd<'_>, request: u64, out: &mut [u8]) -> Result<(), Errno> {
    // SAFETY: callers pass only requests whose result fits `out` (TCGETS:
    // 60-byte termios; TIOCGWINSZ: 8-byte winsize; FIONREAD: an int); the
    // kernel writes into it.
    check(
        unsafe { libc::ioctl(fd.as_raw_fd(), request as libc::c_ulong, out.as_mut_ptr()) }
            as libc::c_long,
    )
    .map(drop)
}

/// `getrandom(2)` from the host, filling `buf`.
pub fn getrandom(buf: &mut [u8]) -> Result<usize, Errno> {
    retry(|| {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) as libc::c_long }
    })
}

/// The host CPU and NUMA node the calling thread runs on (`getcpu(2)`).
pub fn getcpu() -> Result<(u32, u32), Errno> {
    let (mut cpu, mut node) = (0u32, 0u32);
    // SAFETY: getcpu writes one u32 through each pointer; the third
    // argument is unused by Linux.
    check(unsafe {
        libc::syscall(
            libc::SYS_getcpu,
            &mut cpu as *mut u32,
            &mut node as *mut u32,
            0usize,
        )
    })?;
    Ok((cpu, node))
}

/// `clock_gettime(2)` of a host clock, as (seconds, nanoseconds).
pub fn clock_gettime(clock: i32) -> Result<(i64, i64), Errno> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the kernel writes one timespec into `ts`.
    check(unsafe { libc::clock_gettime(clock, &mut ts) } as libc::c_long)?;
    Ok((ts.tv_sec, ts.tv_nsec))
}

/// The access mode and status flags of a host descriptor (`F_GETFL`).
pub fn status_flags(fd: BorrowedFd<'_>) -> Result<i32, Errno> {
    // SAFETY: F_GETFL only reads the descriptor's flags.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) } as libc::c_long).map(|f| f as i32)
}

/// An `fcntl` command that takes and returns an integer, passed through
/// to a host descriptor the Sentry owns (pipe sizes).
pub fn fcntl_int(fd: BorrowedFd<'_>, cmd: i32, arg: i32) -> Result<u64, Errno> {
    // SAFETY: the commands passed here take an integer argument and touch
    // no memory.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), cmd, arg) } as libc::c_long).map(|v| v as u64)
}

/// `sched_yield(2)`.
pub fn sched_yield() {
    // SAFETY: sched_yield takes no arguments.
    unsafe { libc::sched_yield() };
}

/// `fstatfs(2)`: the raw 120-byte x86-64 `struct statfs`.
pub fn statfs_raw(fd: BorrowedFd<'_>) -> Result<[u8; 120], Errno> {
    let mut buf = [0u8; 120];
    // SAFETY: the kernel writes one 120-byte struct statfs into `buf`.
    check(unsafe { libc::syscall(libc::SYS_fstatfs, fd.as_raw_fd(), buf.as_mut_ptr()) })?;
    Ok(buf)
}

/// Online CPUs of the host (`sysconf(_SC_NPROCESSORS_ONLN)`).
pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The host's `struct sysinfo`: uptime, memory and load.
pub fn sysinfo() -> Result<libc::sysinfo, Errno> {
    // SAFETY: an all-zero sysinfo is a valid value of the C struct.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes one struct sysinfo into `info`.
    check(unsafe { libc::sysinfo(&mut info) } as libc::c_long)?;
    Ok(info)
}

/// The Sentry's own limit on `resource` (soft, hard), as it inherited it.
pub fn getrlimit(resource: u32) -> Result<(u64, u64), Errno> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the kernel writes one struct rlimit into `lim`.
    check(unsafe { libc::getrlimit(resource, &mut lim) } as libc::c_long)?;
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// A host pipe, both ends close-on-exec, with `flags` (O_NONBLOCK,
/// O_DIRECT) added: (read end, write end).
pub fn pipe(flags: i32) -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0i32; 2];
    // SAFETY: the kernel writes two descriptors into `fds`.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), flags | libc::O_CLOEXEC) } as libc::c_long)?;
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `tee(2)` between two host pipes, never blocking (SPLICE_F_NONBLOCK):
/// duplicates up to `len` bytes of `inp` into `out` without consuming them.
pub fn tee(inp: BorrowedFd<'_>, out: BorrowedFd<'_>, len: usize) -> Result<usize, Errno> {
    // SAFETY: tee reads and writes only the two pipes; no memory is passed.
    check(unsafe {
        libc::tee(
            inp.as_raw_fd(),
            out.as_raw_fd(),
            len,
            libc::SPLICE_F_NONBLOCK,
        )
    } as libc::c_long)
}

/// XCR0: the state components the host's XSAVE covers.
pub fn xcr0() -> u64 {
    let (eax, edx): (u32, u32);
    // SAFETY: xgetbv with ECX = 0 reads XCR0; it is available wherever
    // XSAVE is, which the platform requires (it reads XSAVE state through
    // ptrace), and touches no memory.
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") eax, out("edx") edx, options(nomem, nostack, preserves_flags))
    };
    u64::from(edx) << 32 | u64::from(eax)
}

/// `poll(2)` on host descriptors: `fds` holds (fd, events, revents).
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> Result<usize, Errno> {
    // SAFETY: `fds` is a live slice of pollfd structs; the kernel writes
    // their revents fields.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    match check(n as libc::c_long) {
        Err(e) if e == Errno::EINTR => Ok(0),
        other => other,
    }
}

fn owned(ret: libc::c_long) -> Result<OwnedFd, Errno> {
    let fd = check(ret)?;
    // SAFETY: the call returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A host epoll instance (close-on-exec).
pub fn epoll_create() -> Result<OwnedFd, Errno> {
    // SAFETY: epoll_create1 takes a flag and returns a new descriptor.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } as libc::c_long)
}

/// `epoll_ctl` with the application's 12-byte `struct epoll_event` as is.
pub fn epoll_ctl(
    epfd: BorrowedFd<'_>,
    op: i32,
    fd: BorrowedFd<'_>,
    event: Option<[u8; 12]>,
) -> Result<(), Errno> {
    let mut ev = event.map(|b| libc::epoll_event {
        events: u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
        u64: u64::from_le_bytes(b[4..12].try_into().expect("8 bytes")),
    });
    let ptr = ev
        .as_mut()
        .map_or(std::ptr::null_mut(), |e| e as *mut libc::epoll_event);
    // SAFETY: `ptr` is null or points at a live epoll_event the kernel reads.
    check(unsafe { libc::epoll_ctl(epfd.as_raw_fd(), op, fd.as_raw_fd(), ptr) } as libc::c_long)
        .map(drop)
}

/// `epoll_wait` for at most `timeout_ms`; returns events as 12-byte records.
pub fn epoll_wait(
    epfd: BorrowedFd<'_>,
    max: usize,
    timeout_ms: i32,
) -> Result<Vec<[u8; 12]>, Errno> {
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; max];
    // SAFETY: the kernel writes at most `max` events into `evs`.
    let n = unsafe { libc::epoll_wait(epfd.as_raw_fd(), evs.as_mut_ptr(), max as i32, timeout_ms) };
    let n = match check(n as libc::c_long) {
        Err(e) if e == Errno::EINTR => 0,
        other => other?,
    };
    Ok(evs[..n]
        .iter()
        .map(|e| {
            let mut b = [0u8; 12];
            let (events, data) = (e.events, e.u64);
            b[0..4].copy_from_slice(&events.to_le_bytes());
            b[4..12].copy_from_slice(&data.to_le_bytes());
            b
        })
        .collect())
}

/// A host eventfd with `flags` (EFD_NONBLOCK, EFD_SEMAPHORE), close-on-exec.
pub fn eventfd(init: u32, flags: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: eventfd takes integers and returns a new descriptor.
    owned(unsafe { libc::eventfd(init, flags | libc::EFD_CLOEXEC) } as libc::c_long)
}

/// `fstat(2)` into the x86-64 ABI layout.
pub fn fstat_raw(fd: BorrowedFd<'_>) -> Result<abi::Stat, Errno> {
    vfs::host::fstat(fd)
}

/// Add `v` to an eventfd's counter.
pub fn eventfd_write(fd: BorrowedFd<'_>, v: u64) -> Result<(), Errno> {
    let b = v.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live buffer.
    check(unsafe { libc::write(fd.as_raw_fd(), b.as_ptr().cast(), 8) } as libc::c_long).map(drop)
}

/// Read (and reset) an eventfd's counter.
pub fn eventfd_read(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    let mut b = [0u8; 8];
    // SAFETY: reads 8 bytes into a live buffer.
    check(unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 8) } as libc::c_long)?;
    Ok(u64::from_ne_bytes(b))
}

/// A host timerfd on `clock` with `flags` (TFD_NONBLOCK), close-on-exec.
pub fn timerfd_create(clock: i32, flags: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: timerfd_create takes integers and returns a new descriptor.
    owned(unsafe { libc::timerfd_create(clock, flags | libc::TFD_CLOEXEC) } as libc::c_long)
}

/// `timerfd_settime` with raw 32-byte itimerspecs; returns the old one.
pub fn timerfd_settime(fd: BorrowedFd<'_>, flags: i32, new: &[u8; 32]) -> Result<[u8; 32], Errno> {
    let mut old = [0u8; 32];
    // SAFETY: both buffers are 32 bytes, the size of struct itimerspec; the
    // kernel reads `new` and writes `old`.
    check(unsafe {
        libc::syscall(
            libc::SYS_timerfd_settime,
            fd.as_raw_fd(),
            flags,
            new.as_ptr(),
            old.as_mut_ptr(),
        )
    })?;
    Ok(old)
}

/// `timerfd_gettime` as a raw 32-byte itimerspec.
pub fn timerfd_gettime(fd: BorrowedFd<'_>) -> Result<[u8; 32], Errno> {
    let mut cur = [0u8; 32];
    // SAFETY: the kernel writes one 32-byte struct itimerspec into `cur`.
    check(unsafe { libc::syscall(libc::SYS_timerfd_gettime, fd.as_raw_fd(), cur.as_mut_ptr()) })?;
    Ok(cur)
}

/// `clock_getres(2)` of a host clock, as (seconds, nanoseconds).
pub fn clock_getres(clock: i32) -> Result<(i64, i64), Errno> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the kernel writes one timespec into `ts`.
    check(unsafe { libc::clock_getres(clock, &mut ts) } as libc::c_long)?;
    Ok((ts.tv_sec, ts.tv_nsec))
}
