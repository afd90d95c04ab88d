//! Syscall patching (upstream's "usertrap"; `platform::SyscallPatching`).
//!
//! When the platform trapped a syscall made by `mov $nr,%eax; syscall`
//! (`b8 nn nn nn nn 0f 05`, the shape of glibc's wrappers) and `nr` is the
//! syscall's number, or by `mov 8(%rsp),%r9; syscall`
//! (`4c 8b 4c 24 08 0f 05`, the end of glibc's `syscall(2)`), the Sentry
//! rewrites those 7 bytes into `jmp *abs32` (`ff 24 25` + the address of
//! an entry of the process's trampoline table), so the next executions
//! reach the platform's trampoline without a signal. Each entry (32
//! bytes, written by the Sentry, read-only and executable to the
//! application) is
//!
//! ```text
//! +0   .quad entry+8            the slot `jmp *abs32` reads
//! +8   movabs $ret|nr<<48, %rcx ret = the address after the old syscall
//! +18  jmp *table(%rip)         the table's first quadword: the platform's entry
//! +24  int3 x 8
//! ```
//!
//! or, for the second shape, which keeps the number in rax,
//!
//! ```text
//! +0   .quad entry+8
//! +8   mov 8(%rsp),%r9          the instruction the jump replaced
//! +13  movabs $ret, %rcx
//! +23  jmp *table+8(%rip)       the platform's entry taking the number in rax
//! +29  int3 x 3
//! ```
//!
//! The table is a private mapping (`[usertrap]`) at the platform's fixed
//! address below the lowest address the application may map, made on the
//! first patch: a fork copies it with the patched code, an exec starts
//! without either.
//!
//! **Concurrency.** The new bytes are written into a fresh copy of the
//! page, which replaces the old one in the host in one `mmap`
//! ([`MemoryManager::patch_code`]), so no thread ever executes a mix of
//! old and new bytes. A thread that had executed the old `mov` but not
//! yet the `syscall` resumes at the jump's fifth byte: the third byte of
//! the table's address, 0x06, which is invalid in 64-bit mode. Its SIGILL
//! is turned into the syscall it was about to make ([`syscall_at_site`]:
//! `rax` holds the number, as it would have for the `syscall`). The same
//! path serves a restarted syscall (ERESTARTSYS and friends move `rip`
//! back over the 2-byte `syscall`, which is now that byte), including
//! `restart_syscall`, and code that jumps straight to a patched
//! `syscall` with its own number in `rax`.

use abi::{page_down, Errno};

use crate::mm::MemoryManager;
use crate::task::Task;

/// Bytes per table entry.
const ENTRY: u64 = 32;
/// `mov $nr,%eax; syscall`.
const SITE_LEN: u64 = 7;
/// `jmp *abs32`'s opcode and ModRM/SIB bytes.
const JMP_ABS32: [u8; 3] = [0xff, 0x24, 0x25];
/// `movabs $imm64, %rcx`.
const MOVABS_RCX: [u8; 2] = [0x48, 0xb9];
/// `mov 8(%rsp),%r9`.
const LOAD_R9: [u8; 5] = [0x4c, 0x8b, 0x4c, 0x24, 0x08];
/// `syscall`.
const SYSCALL: [u8; 2] = [0x0f, 0x05];

/// The patchable shapes of a syscall site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `mov $nr,%eax; syscall`.
    MovEax(u32),
    /// `mov 8(%rsp),%r9; syscall`.
    LoadR9,
}

impl Shape {
    /// The shape of the 7 bytes before a trapped syscall `nr`'s return.
    fn of(code: &[u8; SITE_LEN as usize], nr: u32) -> Option<Shape> {
        if code[5..] != SYSCALL {
            return None;
        }
        if code[0] == 0xb8 && code[1..5] == nr.to_le_bytes() {
            Some(Shape::MovEax(nr))
        } else if code[..5] == LOAD_R9 {
            Some(Shape::LoadR9)
        } else {
            None
        }
    }
}
const RET_MASK: u64 = (1 << 48) - 1;

/// Before a trapped syscall is served: patch its site if it has the shape
/// and the platform patches.
pub(crate) fn maybe_patch(task: &Task) {
    if !task.ctx.syscall_trapped() {
        return;
    }
    let Some(p) = task.kernel.platform.syscall_patching() else {
        return;
    };
    let r = &task.state.regs;
    let (nr, ret) = (r.orig_rax, r.rip);
    if nr >= 1 << 16 || !(SITE_LEN..=RET_MASK).contains(&ret) {
        return;
    }
    let mut mm = task.mm();
    if let Err(e) = patch_site(&mut mm, &p, ret - SITE_LEN, nr as u32) {
        tracing::debug!("not patching the syscall at {:#x}: {e}", ret - SITE_LEN);
    }
}

fn patch_site(
    mm: &mut MemoryManager,
    p: &platform::SyscallPatching,
    site: u64,
    nr: u32,
) -> Result<(), Errno> {
    let mut code = [0u8; SITE_LEN as usize];
    mm.copy_in_code(site, &mut code)?;
    let shape = Shape::of(&code, nr).ok_or(Errno::ENOEXEC)?;
    // One page, so one swap replaces all seven bytes.
    if page_down(site) != page_down(site + SITE_LEN - 1) {
        return Err(Errno::EXDEV);
    }
    if !mm.is_private_code(site, SITE_LEN) {
        return Err(Errno::EACCES);
    }
    if mm.usertrap_next == 0 {
        mm.map_usertrap(p.table_addr, p.table_len);
        let mut header = [0u8; 16];
        header[..8].copy_from_slice(&p.entry.to_le_bytes());
        header[8..].copy_from_slice(&p.entry_rax.to_le_bytes());
        mm.copy_out_force(p.table_addr, &header)?;
        mm.usertrap_next = 1;
    }
    let idx = u64::from(mm.usertrap_next);
    if (idx + 1) * ENTRY > p.table_len {
        return Err(Errno::ENOSPC);
    }
    let entry = p.table_addr + idx * ENTRY;
    let abs32 = u32::try_from(entry).map_err(|_| Errno::ERANGE)?;
    mm.copy_out_force(
        entry,
        &entry_bytes(p.table_addr, entry, site + SITE_LEN, shape),
    )?;
    mm.usertrap_next += 1;
    let mut jmp = [0u8; SITE_LEN as usize];
    jmp[..3].copy_from_slice(&JMP_ABS32);
    jmp[3..].copy_from_slice(&abs32.to_le_bytes());
    mm.patch_code(site, &jmp)
}

/// A table entry at `entry` for the site of `shape` returning to `ret`.
fn entry_bytes(table: u64, entry: u64, ret: u64, shape: Shape) -> [u8; ENTRY as usize] {
    let mut b = [0xccu8; ENTRY as usize];
    b[0..8].copy_from_slice(&(entry + 8).to_le_bytes());
    // The movabs, and which header quadword the jump reads.
    let (at, imm, header) = match shape {
        Shape::MovEax(nr) => (8, ret | u64::from(nr) << 48, table),
        Shape::LoadR9 => {
            b[8..13].copy_from_slice(&LOAD_R9);
            (13, ret, table + 8)
        }
    };
    b[at..at + 2].copy_from_slice(&MOVABS_RCX);
    b[at + 2..at + 10].copy_from_slice(&imm.to_le_bytes());
    b[at + 10..at + 12].copy_from_slice(&[0xff, 0x25]);
    let rel = header as i64 - (entry + at as u64 + 16) as i64;
    b[at + 12..at + 16].copy_from_slice(&(rel as i32).to_le_bytes());
    b
}

/// A SIGILL at `rip`: if `rip` is the fifth byte of a patched site (where
/// the old `syscall` was), make the syscall the thread was about to make
/// (number in `rax`) and return true.
pub(crate) fn syscall_at_site(task: &mut Task) -> bool {
    let Some(p) = task.kernel.platform.syscall_patching() else {
        return false;
    };
    let rip = task.state.regs.rip;
    let Some(site) = rip.checked_sub(5) else {
        return false;
    };
    let patched = {
        let mm = task.mm();
        is_patched_site(&mm, &p, site)
    };
    if !patched {
        return false;
    }
    let r = &mut task.state.regs;
    r.orig_rax = r.rax;
    r.rip = site + SITE_LEN;
    r.rcx = r.rip;
    r.r11 = r.eflags;
    r.rax = Errno::ENOSYS.as_return();
    true
}

fn is_patched_site(mm: &MemoryManager, p: &platform::SyscallPatching, site: u64) -> bool {
    let mut code = [0u8; SITE_LEN as usize];
    if mm.copy_in_code(site, &mut code).is_err() || code[..3] != JMP_ABS32 {
        return false;
    }
    let entry = u64::from(u32::from_le_bytes(code[3..7].try_into().expect("4 bytes")));
    let used_end = p.table_addr + u64::from(mm.usertrap_next) * ENTRY;
    if entry < p.table_addr + ENTRY
        || entry >= used_end
        || !(entry - p.table_addr).is_multiple_of(ENTRY)
    {
        return false;
    }
    let mut e = [0u8; 15];
    if mm.copy_in_code(entry + 8, &mut e).is_err() {
        return false;
    }
    let imm = if e[..2] == MOVABS_RCX {
        &e[2..10]
    } else if e[..5] == LOAD_R9 && e[5..7] == MOVABS_RCX {
        &e[7..15]
    } else {
        return false;
    };
    let imm = u64::from_le_bytes(imm.try_into().expect("8 bytes"));
    imm & RET_MASK == site + SITE_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_jump_through_the_table_header() {
        let table = 0x6_0000;
        let entry = table + 3 * ENTRY;
        let b = entry_bytes(table, entry, 0x7f00_1234_5678, Shape::MovEax(39));
        assert_eq!(u64::from_le_bytes(b[0..8].try_into().unwrap()), entry + 8);
        assert_eq!(b[8..10], MOVABS_RCX);
        assert_eq!(
            u64::from_le_bytes(b[10..18].try_into().unwrap()),
            0x7f00_1234_5678 | 39 << 48
        );
        let rel = i32::from_le_bytes(b[20..24].try_into().unwrap()) as i64;
        assert_eq!((entry + 24) as i64 + rel, table as i64);
        // The patched jump's fifth byte (the old syscall's first) is the
        // address's third: 0x06, invalid in 64-bit mode.
        assert_eq!((entry >> 16) & 0xff, 0x06);
    }

    #[test]
    fn syscall2_entries_load_r9_and_use_the_second_entry() {
        let table = 0x6_0000;
        let entry = table + 5 * ENTRY;
        let b = entry_bytes(table, entry, 0x7f00_1234_5678, Shape::LoadR9);
        assert_eq!(b[8..13], LOAD_R9);
        assert_eq!(b[13..15], MOVABS_RCX);
        assert_eq!(
            u64::from_le_bytes(b[15..23].try_into().unwrap()),
            0x7f00_1234_5678
        );
        assert_eq!(b[23..25], [0xff, 0x25]);
        let rel = i32::from_le_bytes(b[25..29].try_into().unwrap()) as i64;
        assert_eq!((entry + 29) as i64 + rel, (table + 8) as i64);
    }

    #[test]
    fn shapes() {
        let mov = [0xb8, 39, 0, 0, 0, 0x0f, 0x05];
        assert_eq!(Shape::of(&mov, 39), Some(Shape::MovEax(39)));
        assert_eq!(Shape::of(&mov, 40), None);
        let r9 = [0x4c, 0x8b, 0x4c, 0x24, 0x08, 0x0f, 0x05];
        assert_eq!(Shape::of(&r9, 1234), Some(Shape::LoadR9));
        assert_eq!(Shape::of(&[0x90; 7], 39), None);
    }
}
