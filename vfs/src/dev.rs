//! The memory devices: `/dev/null`, `zero`, `full`, `random` and
//! `urandom` (character major 1). They hold no state, so the Sentry serves
//! them itself wherever their device numbers turn up.

use std::sync::Arc;

use abi::Errno;

use crate::{host, FileOps, Result};

/// Linux's `makedev` for the small numbers used here.
const fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xfffff000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffffff00) << 12)
        | (minor & 0xff)
}

/// The memory devices for building `/dev`: name, device number and
/// permission bits (all are character devices).
pub const MEMORY_DEVICES: &[(&str, u64, u32)] = &[
    ("null", makedev(1, 3), 0o666),
    ("zero", makedev(1, 5), 0o666),
    ("full", makedev(1, 7), 0o666),
    ("random", makedev(1, 8), 0o666),
    ("urandom", makedev(1, 9), 0o666),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Zero,
    Full,
    Random,
}

struct MemoryDevice(Kind);

/// Open the memory device `rdev` (a character device number); ENXIO for
/// any other device. The open flags change nothing about these devices.
pub fn open_memory_device(rdev: u64, _flags: i32) -> Result<Arc<dyn FileOps>> {
    let kind = match (libc::major(rdev), libc::minor(rdev)) {
        (1, 3) => Kind::Null,
        (1, 5) => Kind::Zero,
        (1, 7) => Kind::Full,
        // Both read the same pool: since Linux 5.6 /dev/random blocks only
        // until it is initialised, as getrandom(2) with no flags does.
        (1, 8) | (1, 9) => Kind::Random,
        _ => return Err(Errno::ENXIO),
    };
    Ok(Arc::new(MemoryDevice(kind)))
}

impl FileOps for MemoryDevice {
    fn read(&self, buf: &mut [u8], _offset: u64) -> Result<usize> {
        match self.0 {
            Kind::Null => Ok(0),
            Kind::Zero | Kind::Full => {
                buf.fill(0);
                Ok(buf.len())
            }
            Kind::Random => host::getrandom(buf),
        }
    }

    fn write(&self, buf: &[u8], _offset: u64) -> Result<usize> {
        match self.0 {
            Kind::Full => Err(Errno::ENOSPC),
            // Writes to random are mixed into the host pool without credit
            // on Linux; the Sentry just drops them.
            Kind::Null | Kind::Zero | Kind::Random => Ok(buf.len()),
        }
    }

    /// The position of these devices stays 0, as on Linux.
    fn append(&self, buf: &[u8]) -> Result<(usize, u64)> {
        Ok((self.write(buf, 0)?, 0))
    }
}
