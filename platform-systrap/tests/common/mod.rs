//! Helpers shared by the platform tests and the switch benchmark.

#![allow(dead_code)] // each test binary uses its own subset

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use platform::{AccessType, AddressSpace, Platform};

/// Where the tests map their page of code.
pub const CODE_ADDR: u64 = 0x10_0000;
/// Where the tests that need one map a read-write page of data.
pub const DATA_ADDR: u64 = CODE_ADDR + 0x10000;

/// A page holding `code` (padded with int3) in an unlinked file the stub
/// can map, as the memory file would be.
pub fn code_file(code: &[u8]) -> File {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "platform-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let mut f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let mut page = vec![0xccu8; 4096];
    page[..code.len()].copy_from_slice(code);
    f.write_all(&page).unwrap();
    f
}

/// A new address space of `p` with `file`'s page mapped read+exec at
/// [`CODE_ADDR`].
pub fn space_with_code(p: &dyn Platform, file: &File) -> Arc<dyn AddressSpace> {
    let space = p.new_address_space().unwrap();
    space
        .map_file(
            CODE_ADDR,
            4096,
            file.as_fd(),
            0,
            AccessType::from_prot(5),
            false,
        )
        .unwrap();
    space
}

/// Map a zeroed read-write page at [`DATA_ADDR`] in `space`; the file
/// behind it, which must outlive the mapping's use.
pub fn map_data_page(space: &dyn AddressSpace) -> File {
    let data = code_file(&[]);
    // The page starts zeroed, not 0xcc.
    data.set_len(0).unwrap();
    data.set_len(4096).unwrap();
    space
        .map_file(
            DATA_ADDR,
            4096,
            data.as_fd(),
            0,
            AccessType::READ_WRITE,
            false,
        )
        .unwrap();
    data
}

/// Every process on the host (live or zombie) as (pid, parent pid).
pub fn processes() -> Vec<(i32, i32)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid ...
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            Some((pid, ppid.parse().ok()?))
        })
        .collect()
}
