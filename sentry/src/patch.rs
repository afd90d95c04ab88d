//! Syscall patching (upstream's "usertrap"; `platform::SyscallPatching`).
//!
//! When the platform trapped a syscall made from a site of one of these
//! shapes, the Sentry rewrites the site into a jump to an entry of the
//! process's trampoline table, so the next executions reach the
//! platform's trampoline without a signal:
//!
//! - `mov $nr,%eax; syscall` (`b8 nn nn nn nn 0f 05`, the shape of most of
//!   glibc's wrappers), `nr` being the syscall's number;
//! - `mov 8(%rsp),%r9; syscall` (`4c 8b 4c 24 08 0f 05`, the end of
//!   glibc's `syscall(2)`);
//! - `xor %eax,%eax; syscall; cmp $imm32,%rax` (`31 c0 0f 05 48 3d` and
//!   four bytes), glibc's read(2), whose number 0 takes no `mov`: ten
//!   bytes, as the jump needs seven and must end on an old instruction's
//!   boundary.
//!
//! The jump is `jmp *abs32` (`ff 24 25` + the entry's address; `ff 24 e5`,
//! the same jump, for read sites; their last three bytes are `int3`). Each
//! entry is written by the Sentry, read-only and executable to the
//! application. The 32-byte entries of the first two shapes are
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
//! and a read site's (64 bytes) returns through its entry, which holds
//! the `cmp` the jump replaced:
//!
//! ```text
//! +0   .quad entry+8
//! +8   movabs $cont, %rcx       number 0
//! +18  jmp *table(%rip)
//! +24  syscall                  where a restart lands (a trapped syscall)
//! +26  cont: cmp $imm32, %rax   the instruction the jump replaced
//! +32  jmp *+38(%rip)
//! +38  .quad site+10
//! +46  int3 x 18
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
//! old and new bytes. But a thread can resume inside the new bytes, at a
//! boundary of the old instructions: one the host preempted there, one
//! that made a trapped syscall at the site (it returns after the
//! `syscall`), one whose syscall restarts (ERESTARTSYS and friends move
//! `rip` back over the 2-byte `syscall`), and code that jumps to a
//! `syscall` with its own number in `rax`. Every such boundary holds a
//! byte that faults, and the Sentry recognises the fault
//! ([`syscall_at_site`], [`resumed_in_entry`]):
//!
//! - the old `syscall` of a 7-byte site is the jump's fifth byte, the
//!   third byte of the table's address, 0x06, invalid in 64-bit mode;
//! - a read site's old `syscall` is the jump's third byte, 0xe5, `in
//!   $imm8,%eax`, which faults (SIGSEGV, `SI_KERNEL`) in user mode;
//! - a read site's old `cmp` is the jump's fifth byte, the second byte of
//!   the entry's address; read entries lie only where that is an opcode
//!   invalid in 64-bit mode ([`INVALID_OPCODES`]), so it is a SIGILL.
//!
//! A fault at an old `syscall` is the syscall the thread was about to
//! make (`rax` holds its number); a fault at a read site's old `cmp`
//! continues at its entry's `cont`. The thread whose trapped read patched
//! the site is moved to `cont` at once.

use abi::{page_down, Errno};

use crate::mm::MemoryManager;
use crate::task::Task;

/// Bytes per table entry.
const ENTRY: u64 = 32;
/// Bytes per entry of a read site.
const READ_ENTRY: u64 = 64;
/// Where a read site's entry continues after the syscall.
const READ_CONT: u64 = 26;
/// Where a read site's entry keeps the address it returns to.
const READ_BACK: u64 = 38;
/// `mov $nr,%eax; syscall` and `mov 8(%rsp),%r9; syscall`.
const SITE_LEN: u64 = 7;
/// `xor %eax,%eax; syscall; cmp $imm32,%rax`.
const READ_SITE_LEN: u64 = 10;
/// `jmp *abs32`'s opcode and ModRM/SIB bytes.
const JMP_ABS32: [u8; 3] = [0xff, 0x24, 0x25];
/// The same jump with another SIB byte (no index register, so the scale
/// bits do not matter), whose third byte on its own is `in $imm8,%eax`.
const JMP_ABS32_IN: [u8; 3] = [0xff, 0x24, 0xe5];
/// `movabs $imm64, %rcx`.
const MOVABS_RCX: [u8; 2] = [0x48, 0xb9];
/// `mov 8(%rsp),%r9`.
const LOAD_R9: [u8; 5] = [0x4c, 0x8b, 0x4c, 0x24, 0x08];
/// `syscall`.
const SYSCALL: [u8; 2] = [0x0f, 0x05];
/// `xor %eax,%eax`.
const XOR_EAX: [u8; 2] = [0x31, 0xc0];
/// `cmp $imm32,%rax`'s opcode bytes.
const CMP_RAX: [u8; 2] = [0x48, 0x3d];
/// `jmp *0(%rip)`: through the quadword that follows it.
const JMP_NEXT: [u8; 6] = [0xff, 0x25, 0, 0, 0, 0];
/// `int3`, the filler.
const INT3: u8 = 0xcc;
/// One-byte opcodes that are invalid in 64-bit mode (Intel SDM vol. 2,
/// table A-2: push and pop of segment registers, daa, das, aaa, aas).
/// The table's 256-byte blocks whose address has one of these as its
/// second byte hold read entries, four each, and nothing else.
const INVALID_OPCODES: [u8; 11] = [
    0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f,
];

/// The patchable shapes of a syscall site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `mov $nr,%eax; syscall`.
    MovEax(u32),
    /// `mov 8(%rsp),%r9; syscall`.
    LoadR9,
    /// `xor %eax,%eax; syscall; cmp $imm32,%rax`, with the immediate.
    XorEax([u8; 4]),
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

    /// The shape of the 10 bytes around a trapped read's `syscall` (from
    /// 4 bytes before its return).
    fn of_read(code: &[u8; READ_SITE_LEN as usize]) -> Option<Shape> {
        (code[..2] == XOR_EAX && code[2..4] == SYSCALL && code[4..6] == CMP_RAX)
            .then(|| Shape::XorEax(code[6..].try_into().expect("4 bytes")))
    }

    fn len(self) -> u64 {
        match self {
            Shape::XorEax(_) => READ_SITE_LEN,
            _ => SITE_LEN,
        }
    }

    /// The site and shape of a trapped syscall `nr` returning to `ret`.
    fn find(mm: &MemoryManager, ret: u64, nr: u32) -> Option<(u64, Shape)> {
        let site = ret.checked_sub(SITE_LEN)?;
        let mut code = [0u8; SITE_LEN as usize];
        if mm.copy_in_code(site, &mut code).is_ok() {
            if let Some(shape) = Shape::of(&code, nr) {
                return Some((site, shape));
            }
        }
        if nr != 0 {
            return None;
        }
        let site = ret - 4;
        let mut code = [0u8; READ_SITE_LEN as usize];
        mm.copy_in_code(site, &mut code).ok()?;
        Some((site, Shape::of_read(&code)?))
    }
}

const RET_MASK: u64 = (1 << 48) - 1;

/// Before a trapped syscall is served: patch its site if it has the shape
/// and the platform patches. A read site's syscall then returns through
/// the new entry.
pub(crate) fn maybe_patch(task: &mut Task) {
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
    let patched = {
        let mut mm = task.mm();
        patch_site(&mut mm, &p, ret, nr as u32)
    };
    match patched {
        Ok(resume) => task.state.regs.rip = resume,
        Err(e) => tracing::debug!("not patching the syscall returning to {ret:#x}: {e}"),
    }
}

/// Patch the site of syscall `nr` returning to `ret`; returns where the
/// trapped syscall returns to now.
fn patch_site(
    mm: &mut MemoryManager,
    p: &platform::SyscallPatching,
    ret: u64,
    nr: u32,
) -> Result<u64, Errno> {
    let table_end = p.table_addr + p.table_len;
    if (p.table_addr..table_end).contains(&ret) {
        return Err(Errno::ENOEXEC);
    }
    let (site, shape) = Shape::find(mm, ret, nr).ok_or(Errno::ENOEXEC)?;
    let len = shape.len();
    // One page, so one swap replaces every byte.
    if page_down(site) != page_down(site + len - 1) {
        return Err(Errno::EXDEV);
    }
    if !mm.is_private_code(site, len) {
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
    let (opcode, entry, resume) = if let Shape::XorEax(imm) = shape {
        let k = mm.usertrap_read_next;
        let entry = read_entry_addr(p, k).ok_or(Errno::ENOSPC)?;
        mm.copy_out_force(entry, &read_entry_bytes(p.table_addr, entry, site, imm))?;
        mm.usertrap_read_next += 1;
        (JMP_ABS32_IN, entry, entry + READ_CONT)
    } else {
        let idx = next_entry(p, mm.usertrap_next).ok_or(Errno::ENOSPC)?;
        let entry = p.table_addr + u64::from(idx) * ENTRY;
        mm.copy_out_force(entry, &entry_bytes(p.table_addr, entry, ret, shape))?;
        mm.usertrap_next = idx + 1;
        (JMP_ABS32, entry, ret)
    };
    let mut jmp = [INT3; READ_SITE_LEN as usize];
    jmp[..3].copy_from_slice(&opcode);
    let abs32 = u32::try_from(entry).map_err(|_| Errno::ERANGE)?;
    jmp[3..7].copy_from_slice(&abs32.to_le_bytes());
    mm.patch_code(site, &jmp[..len as usize])?;
    Ok(resume)
}

/// The entry the jump `opcode` (`JMP_ABS32` or `JMP_ABS32_IN`) at `site`
/// names, if the site holds that jump.
fn jump_target(mm: &MemoryManager, site: u64, opcode: [u8; 3]) -> Option<u64> {
    let mut code = [0u8; SITE_LEN as usize];
    mm.copy_in_code(site, &mut code).ok()?;
    (code[..3] == opcode)
        .then(|| u64::from(u32::from_le_bytes(code[3..].try_into().expect("4 bytes"))))
}

/// Whether `addr` lies in a block kept for read entries.
fn in_read_block(addr: u64) -> bool {
    INVALID_OPCODES.contains(&((addr >> 8) as u8))
}

/// The first free 32-byte entry from index `from` on, past the read
/// entries' blocks.
fn next_entry(p: &platform::SyscallPatching, from: u32) -> Option<u32> {
    let mut idx = from;
    while in_read_block(p.table_addr + u64::from(idx) * ENTRY) {
        idx += 1;
    }
    ((u64::from(idx) + 1) * ENTRY <= p.table_len).then_some(idx)
}

/// The address of read entry `k`, if the table has it.
fn read_entry_addr(p: &platform::SyscallPatching, k: u32) -> Option<u64> {
    let per_block = (256 / READ_ENTRY) as u32;
    let block = *INVALID_OPCODES.get((k / per_block) as usize)?;
    let addr = p.table_addr + (u64::from(block) << 8) + u64::from(k % per_block) * READ_ENTRY;
    ((addr >> 8) as u8 == block && addr + READ_ENTRY <= p.table_addr + p.table_len).then_some(addr)
}

/// A table entry at `entry` for the site of `shape` returning to `ret`.
fn entry_bytes(table: u64, entry: u64, ret: u64, shape: Shape) -> [u8; ENTRY as usize] {
    let mut b = [INT3; ENTRY as usize];
    b[0..8].copy_from_slice(&(entry + 8).to_le_bytes());
    // The movabs, and which header quadword the jump reads.
    let (at, imm, header) = match shape {
        Shape::MovEax(nr) => (8, ret | u64::from(nr) << 48, table),
        Shape::LoadR9 => {
            b[8..13].copy_from_slice(&LOAD_R9);
            (13, ret, table + 8)
        }
        Shape::XorEax(_) => unreachable!("read sites have entries of their own"),
    };
    b[at..at + 2].copy_from_slice(&MOVABS_RCX);
    b[at + 2..at + 10].copy_from_slice(&imm.to_le_bytes());
    b[at + 10..at + 12].copy_from_slice(&[0xff, 0x25]);
    let rel = header as i64 - (entry + at as u64 + 16) as i64;
    b[at + 12..at + 16].copy_from_slice(&(rel as i32).to_le_bytes());
    b
}

/// A read site's entry at `entry` for the site at `site`, whose `cmp`
/// has the immediate `imm`: it starts as a `mov $0,%eax` site's entry
/// returning to `cont` (+26), and goes on from where that one pads.
fn read_entry_bytes(table: u64, entry: u64, site: u64, imm: [u8; 4]) -> [u8; READ_ENTRY as usize] {
    let mut b = [INT3; READ_ENTRY as usize];
    b[..ENTRY as usize].copy_from_slice(&entry_bytes(
        table,
        entry,
        entry + READ_CONT,
        Shape::MovEax(0),
    ));
    b[24..26].copy_from_slice(&SYSCALL);
    b[26..28].copy_from_slice(&CMP_RAX);
    b[28..32].copy_from_slice(&imm);
    b[32..38].copy_from_slice(&JMP_NEXT);
    b[38..46].copy_from_slice(&(site + READ_SITE_LEN).to_le_bytes());
    b
}

/// A fault inside a patched site at an old `syscall`: a SIGILL at the
/// fifth byte of a 7-byte site, or a SIGSEGV (`SI_KERNEL`, from the `in`)
/// at the third byte of a read site. Make the syscall the thread was
/// about to make (number in `rax`), returning where the site's syscall
/// returns, and return true.
pub(crate) fn syscall_at_site(task: &mut Task, info: &platform::SignalInfo) -> bool {
    let Some(p) = task.kernel.platform.syscall_patching() else {
        return false;
    };
    let rip = task.state.regs.rip;
    let ret = {
        let mm = task.mm();
        match info.signo {
            libc::SIGILL => rip
                .checked_sub(5)
                .filter(|&site| is_patched_site(&mm, &p, site))
                .map(|site| site + SITE_LEN),
            libc::SIGSEGV if info.code == SI_KERNEL => rip
                .checked_sub(2)
                .and_then(|site| read_site_entry(&mm, &p, site))
                .map(|entry| entry + READ_CONT),
            _ => None,
        }
    };
    let Some(ret) = ret else {
        return false;
    };
    let r = &mut task.state.regs;
    r.orig_rax = r.rax;
    r.rip = ret;
    r.rcx = ret;
    r.r11 = r.eflags;
    r.rax = Errno::ENOSYS.as_return();
    true
}

/// A SIGILL at a read site's old `cmp` (its fifth byte): continue at the
/// entry's copy of it and return true.
pub(crate) fn resumed_in_entry(task: &mut Task, info: &platform::SignalInfo) -> bool {
    if info.signo != libc::SIGILL {
        return false;
    }
    let Some(p) = task.kernel.platform.syscall_patching() else {
        return false;
    };
    let rip = task.state.regs.rip;
    let entry = {
        let mm = task.mm();
        rip.checked_sub(4)
            .and_then(|site| read_site_entry(&mm, &p, site))
    };
    match entry {
        Some(entry) => {
            task.state.regs.rip = entry + READ_CONT;
            true
        }
        None => false,
    }
}

/// `si_code` of a fault the kernel raised for no address (a #GP).
const SI_KERNEL: i32 = 0x80;

fn is_patched_site(mm: &MemoryManager, p: &platform::SyscallPatching, site: u64) -> bool {
    let Some(entry) = jump_target(mm, site, JMP_ABS32) else {
        return false;
    };
    let used_end = p.table_addr + u64::from(mm.usertrap_next) * ENTRY;
    if entry < p.table_addr + ENTRY
        || entry >= used_end
        || !(entry - p.table_addr).is_multiple_of(ENTRY)
        || in_read_block(entry)
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

/// The entry of the patched read site at `site`, if it is one.
fn read_site_entry(mm: &MemoryManager, p: &platform::SyscallPatching, site: u64) -> Option<u64> {
    let entry = jump_target(mm, site, JMP_ABS32_IN)?;
    (0..mm.usertrap_read_next).find(|&k| read_entry_addr(p, k) == Some(entry))?;
    let mut back = [0u8; 8];
    mm.copy_in_code(entry + READ_BACK, &mut back).ok()?;
    (u64::from_le_bytes(back) == site + READ_SITE_LEN).then_some(entry)
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
        let read = [0x31, 0xc0, 0x0f, 0x05, 0x48, 0x3d, 0x00, 0xf0, 0xff, 0xff];
        assert_eq!(
            Shape::of_read(&read),
            Some(Shape::XorEax([0x00, 0xf0, 0xff, 0xff]))
        );
        let mut other = read;
        other[4] = 0x49; // cmp $imm32,%r8
        assert_eq!(Shape::of_read(&other), None);
    }

    fn patching() -> platform::SyscallPatching {
        platform::SyscallPatching {
            table_addr: 0x6_0000,
            table_len: 0x1_0000,
            entry: 0x1000,
            entry_rax: 0x2000,
        }
    }

    #[test]
    fn read_entries_sit_where_the_jumps_fifth_byte_is_invalid() {
        let p = patching();
        let mut seen = std::collections::HashSet::new();
        let mut k = 0;
        while let Some(entry) = read_entry_addr(&p, k) {
            assert!(INVALID_OPCODES.contains(&((entry >> 8) as u8)));
            assert_eq!((entry >> 16) & 0xff, 0x06);
            assert!(entry % READ_ENTRY == 0 && entry + READ_ENTRY <= 0x7_0000);
            assert!(seen.insert(entry));
            k += 1;
        }
        assert_eq!(k as usize, INVALID_OPCODES.len() * 4);
        // Ordinary entries skip those blocks: 0x60600 starts one.
        assert_eq!(next_entry(&p, 0x600 / 32), Some(0x800 / 32));
        assert_eq!(next_entry(&p, 0x5e0 / 32), Some(0x5e0 / 32));
        assert_eq!(next_entry(&p, 0xffe0 / 32), Some(0xffe0 / 32));
        assert_eq!(next_entry(&p, 0x1_0000 / 32), None);
    }

    #[test]
    fn read_entries_return_through_the_copied_cmp() {
        let table = 0x6_0000;
        let entry = 0x6_0640;
        let site = 0x7f00_1234_5670;
        let b = read_entry_bytes(table, entry, site, [0x00, 0xf0, 0xff, 0xff]);
        assert_eq!(u64::from_le_bytes(b[0..8].try_into().unwrap()), entry + 8);
        assert_eq!(b[8..10], MOVABS_RCX);
        assert_eq!(
            u64::from_le_bytes(b[10..18].try_into().unwrap()),
            entry + READ_CONT
        );
        assert_eq!(b[18..20], [0xff, 0x25]);
        let rel = i32::from_le_bytes(b[20..24].try_into().unwrap()) as i64;
        assert_eq!((entry + 24) as i64 + rel, table as i64);
        // A restart backs up over the syscall just before `cont`.
        assert_eq!(b[READ_CONT as usize - 2..READ_CONT as usize], SYSCALL);
        assert_eq!(b[26..32], [0x48, 0x3d, 0x00, 0xf0, 0xff, 0xff]);
        assert_eq!(b[32..38], JMP_NEXT);
        assert_eq!(
            u64::from_le_bytes(
                b[READ_BACK as usize..READ_BACK as usize + 8]
                    .try_into()
                    .unwrap()
            ),
            site + READ_SITE_LEN
        );
        assert!(b[46..].iter().all(|&x| x == INT3));
    }
}
