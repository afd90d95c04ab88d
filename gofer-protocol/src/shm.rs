//! Shared memory for flipcall channels: the memfd that backs packet
//! windows, a `MAP_SHARED` mapping of one window, atomic access to the
//! window's header words, bounded copies in and out of its data area, and
//! non-private futex wait/wake on the state word. Every `unsafe` block the
//! channels need lives here.
//!
//! The peer maps the same pages and may be hostile: it can change any byte
//! at any time. Nothing here hands out a Rust reference to the data area;
//! bytes move only by copies into or out of private buffers, and the two
//! header words are only ever touched through atomics.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// The host page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the running system; no memory
    // is passed.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// Creates a close-on-exec memfd that allows sealing.
pub(crate) fn memfd_create(name: &std::ffi::CStr) -> io::Result<File> {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of
    // the call; the kernel copies it.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned `fd` to us and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Adds `seals` (F_SEAL_*) to a memfd.
pub(crate) fn add_seals(fd: BorrowedFd<'_>, seals: i32) -> io::Result<()> {
    // SAFETY: fcntl(F_ADD_SEALS) takes an int argument and touches no
    // memory of ours.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The seals (F_SEAL_*) of a file; 0 for a file that cannot be sealed.
pub(crate) fn get_seals(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: fcntl(F_GET_SEALS) takes no argument and touches no memory
    // of ours.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINVAL) {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(r)
}

/// A read/write `MAP_SHARED` mapping of one packet window.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; every
// access goes through atomics (header words) or explicit copies (data), so
// using it from several threads is no different from using it from
// several processes, which the protocol already assumes.
unsafe impl Send for Mapping {}
// SAFETY: as for Send: `&Mapping` only exposes atomic accesses and copies.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` at `offset`. The caller has checked that
    /// the file is at least `offset + len` bytes long and cannot shrink
    /// (F_SEAL_SHRINK), so no access can fault; `offset` must be page
    /// aligned and `len` at least 8 and a multiple of 4.
    pub(crate) fn map(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<Mapping> {
        if len < 8 || !len.is_multiple_of(4) || !offset.is_multiple_of(page_size() as u64) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: a fresh mapping at an address the kernel picks; it
        // aliases no Rust object. Arguments are checked above.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(Mapping { ptr, len })
    }

    /// Mapping length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The u32 word at byte `off` (4-aligned, in bounds), as an atomic.
    pub(crate) fn word(&self, off: usize) -> &AtomicU32 {
        assert!(
            off.is_multiple_of(4) && off + 4 <= self.len,
            "window word {off} out of bounds"
        );
        // SAFETY: the mapping is page aligned, so `ptr + off` is 4-aligned
        // and inside the mapping (checked above), which lives as long as
        // `self`. The word is only ever accessed atomically, by us and by
        // a well-behaved peer; a misbehaving peer can change its value but
        // not make our atomic accesses unsound.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(off).cast::<u32>()) }
    }

    /// Copies `dst.len()` bytes out of the mapping starting at `off`.
    /// Panics if the range is out of bounds (callers check lengths first).
    pub(crate) fn read(&self, off: usize, dst: &mut [u8]) {
        let end = off.checked_add(dst.len()).expect("window range overflow");
        assert!(
            end <= self.len,
            "window read {off}..{end} past {}",
            self.len
        );
        // SAFETY: `off..end` is inside the mapping (checked above) and
        // `dst` is a distinct private buffer. The peer may write the same
        // bytes concurrently; we copy them once into `dst` and never form
        // a reference to shared bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), dst.as_mut_ptr(), dst.len())
        }
    }

    /// Copies `src` into the mapping starting at `off`. Panics if the
    /// range is out of bounds (callers check lengths first).
    pub(crate) fn write(&self, off: usize, src: &[u8]) {
        let end = off.checked_add(src.len()).expect("window range overflow");
        assert!(
            end <= self.len,
            "window write {off}..{end} past {}",
            self.len
        );
        // SAFETY: `off..end` is inside the mapping (checked above) and
        // `src` is a distinct private buffer; no reference to the shared
        // bytes exists.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(off), src.len())
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and no
        // reference into the mapping outlives `self` (atomics borrow
        // `self`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// FUTEX_WAIT (non-private: the word is shared with another process) on
/// `word` while it holds `val`, for at most `timeout`. Returns normally on
/// wake-up, timeout, EAGAIN (value changed) or EINTR; the caller re-reads
/// the word.
pub(crate) fn futex_wait(word: &AtomicU32, val: u32, timeout: Duration) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned u32 (an atomic in our mapping) and
    // `ts` a live timespec; FUTEX_WAIT only reads both.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            val,
            &ts as *const libc::timespec,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ETIMEDOUT) => {}
            _ => return Err(e),
        }
    }
    Ok(())
}

/// FUTEX_WAKE (non-private) of up to `n` waiters on `word`.
pub(crate) fn futex_wake(word: &AtomicU32, n: i32) -> io::Result<()> {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not touch it
    // beyond using its address as the key.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the peer of a connected socket has gone away (POLLHUP or
/// POLLRDHUP), checked without blocking.
pub(crate) fn peer_hung_up(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `p` is one live pollfd; timeout 0 never blocks.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r > 0 && p.revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR | libc::POLLNVAL) != 0
}
