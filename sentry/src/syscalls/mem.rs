//! Memory syscalls: mmap, munmap, mprotect, brk.

use abi::{page_up, Errno, PAGE_SIZE};
use platform::AccessType;

use super::SysResult;
use crate::host;
use crate::mm::VmaKind;
use crate::task::Task;

const PROT_MASK: u64 = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;

pub fn brk(task: &mut Task, a: [u64; 6]) -> SysResult {
    Ok(task.mm().brk(a[0]))
}

pub fn mmap(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (addr, len, prot, flags, fd, offset) = (a[0], a[1], a[2], a[3] as i32, a[4], a[5]);
    if len == 0 || offset % PAGE_SIZE != 0 || prot & !(PROT_MASK | libc::PROT_GROWSDOWN as u64) != 0
    {
        return Err(Errno::EINVAL);
    }
    let len = page_up(len).ok_or(Errno::ENOMEM)?;
    let kind = flags & libc::MAP_TYPE;
    if kind != libc::MAP_PRIVATE && kind != libc::MAP_SHARED && kind != libc::MAP_SHARED_VALIDATE {
        return Err(Errno::EINVAL);
    }
    let fixed = flags & libc::MAP_FIXED != 0;
    let noreplace = flags & libc::MAP_FIXED_NOREPLACE != 0;
    if (fixed || noreplace) && addr % PAGE_SIZE != 0 {
        return Err(Errno::EINVAL);
    }
    if noreplace && task.mm().is_mapped(addr, len) {
        return Err(Errno::EEXIST);
    }
    let access = AccessType::from_prot(prot as u32);
    if flags & libc::MAP_ANONYMOUS != 0 {
        // One process per address space so far: a shared anonymous mapping
        // behaves as a private one until fork exists.
        return task
            .mm()
            .map_anonymous(addr, len, fixed || noreplace, access, VmaKind::Anonymous);
    }

    let file = task.fds().get(fd)?;
    if !file.readable() {
        return Err(Errno::EACCES);
    }
    if kind != libc::MAP_PRIVATE && access.write {
        // Files are read-only, so a writable shared mapping cannot be had.
        return Err(Errno::EACCES);
    }
    if !file.is_regular() {
        tracing::info!("mmap of a non-regular file not supported: ENODEV");
        return Err(Errno::ENODEV);
    }
    // A private (or read-only shared) mapping of a file nobody writes shows
    // the file's bytes as of now; the copy is exactly that. Bytes past the
    // end of the file read as zeros within the last page.
    let at = task.mm().map_anonymous(
        addr,
        len,
        fixed || noreplace,
        access,
        VmaKind::File(file.path.clone()),
    )?;
    let mut buf = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let n = host::read(file.host(), &mut buf[..want], Some(offset + done))?;
        if n == 0 {
            break;
        }
        task.mm().copy_out_force(at + done, &buf[..n])?;
        done += n as u64;
    }
    Ok(at)
}

pub fn munmap(task: &mut Task, a: [u64; 6]) -> SysResult {
    task.mm().unmap(a[0], a[1]).map(|()| 0)
}

pub fn mprotect(task: &mut Task, a: [u64; 6]) -> SysResult {
    if a[2] & !(PROT_MASK | (libc::PROT_GROWSDOWN | libc::PROT_GROWSUP) as u64) != 0 {
        return Err(Errno::EINVAL);
    }
    if a[1] == 0 {
        return if a[0].is_multiple_of(PAGE_SIZE) {
            Ok(0)
        } else {
            Err(Errno::EINVAL)
        };
    }
    task.mm()
        .protect(a[0], a[1], AccessType::from_prot(a[2] as u32))
        .map(|()| 0)
}
