//! Descriptors handed between runsc's processes: adopting the ones named
//! on a command line, and placing ones at fixed numbers in a child.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::bail;

/// Take ownership of an inherited descriptor named on the command line
/// (`--{what}={fd}`).
pub fn take_fd(fd: i32, what: &str) -> anyhow::Result<OwnedFd> {
    if fd < 0 {
        bail!("this command needs --{what}");
    }
    // SAFETY: F_GETFD only reads descriptor flags.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        bail!("--{what}={fd} is not an open descriptor");
    }
    // SAFETY: the launcher handed this descriptor to us for our exclusive
    // use, it is open (checked above), and nothing else in this process
    // refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arrange for `fds` to appear in the child at the given numbers. The
/// caller keeps the descriptors open until the child has been spawned.
pub fn pass_fds(cmd: &mut Command, fds: &[(OwnedFd, i32)]) {
    let raw: Vec<(i32, i32)> = fds.iter().map(|(fd, to)| (fd.as_raw_fd(), *to)).collect();
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls fcntl, dup2 and close, which are async-signal-safe; it allocates
    // nothing (`raw` was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            // Move every source out of the target range first, so no dup2
            // overwrites a source that is still to be moved.
            let mut staged = [(-1, -1); 16];
            for (slot, &(from, to)) in staged.iter_mut().zip(raw.iter()) {
                let tmp = libc::fcntl(from, libc::F_DUPFD, 100);
                if tmp < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                *slot = (tmp, to);
            }
            for &(tmp, to) in staged.iter().take(raw.len()) {
                if libc::dup2(tmp, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The staging copy must not outlive exec: a stray write end
                // would keep a pipe from ever reporting EOF.
                libc::close(tmp);
            }
            Ok(())
        });
    }
    assert!(fds.len() <= 16, "pass_fds handles at most 16 descriptors");
}

/// The signals a runtime process passes on to the container's process
/// (as runc does) instead of being ended by them.
pub const FORWARDED_SIGNALS: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Block `sigs` in the calling thread (and so in every thread it starts
/// afterwards); returns the set, for `wait_signal`.
pub fn block_signals(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a set we own;
    // pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Wait for one of the (blocked) signals in `set`.
pub fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: sigwait reads the set and writes one int.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

/// A child starts with no signals blocked, whatever its launcher blocks.
pub fn unblock_in_child(cmd: &mut Command) {
    // SAFETY: runs between fork and exec; sigemptyset and sigprocmask are
    // async-signal-safe and touch only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// Close every descriptor from `first` up in the child, so nothing the
/// launcher inherited (a caller's pipe, say) leaks into it. Register after
/// [`pass_fds`], whose targets must lie below `first`.
pub fn close_from(cmd: &mut Command, first: u32) {
    // SAFETY: runs between fork and exec; close_range is a plain syscall
    // that touches only the child's descriptor table.
    unsafe {
        cmd.pre_exec(move || {
            if libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
