//! The Linux x86-64 ABI as the Sentry sees it.
//!
//! Numbers come from `linux-raw-sys` (generated from the kernel's UAPI
//! headers), re-exported here so no other crate hand-writes a constant.
//! What `linux-raw-sys` does not carry (the `Errno` type that syscall
//! handlers return, the `stat` layout the ABI fixes) lives here.

#![forbid(unsafe_code)]

mod errno;
mod stat;

pub use errno::Errno;
pub use linux_raw_sys::{auxvec, general as linux, ioctl, prctl};
pub use stat::Stat;

/// Syscall numbers of the x86-64 table (`__NR_*`).
pub mod sysno {
    pub use linux_raw_sys::general::*;
}

/// The page size of x86-64 user memory.
pub const PAGE_SIZE: u64 = 4096;

/// Rounds `addr` down to a page boundary.
pub const fn page_down(addr: u64) -> u64 {
    addr & !(PAGE_SIZE - 1)
}

/// Rounds `addr` up to a page boundary, or `None` if that overflows.
pub const fn page_up(addr: u64) -> Option<u64> {
    match addr.checked_add(PAGE_SIZE - 1) {
        Some(a) => Some(page_down(a)),
        None => None,
    }
}
