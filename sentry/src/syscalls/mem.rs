//! Memory syscalls: mmap, munmap, mprotect, brk.

use abi::{page_up, Errno, PAGE_SIZE};
use platform::AccessType;

use super::SysResult;
use crate::mm::{MayWrite, VmaKind};
use crate::task::Task;

const PROT_MASK: u64 = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;

pub fn brk(task: &mut Task, a: [u64; 6]) -> SysResult {
    Ok(task.mm().brk(a[0]))
}

pub fn mmap(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (len, flags) = (a[1], a[3] as i32);
    let at = map(task, a)?;
    let mut mm = task.mm();
    if flags & libc::MAP_GROWSDOWN != 0 {
        mm.set_growsdown(at);
    }
    // MAP_LOCKED memory is also populated; we never swap, so that is all
    // locking means here.
    if flags & (libc::MAP_POPULATE | libc::MAP_LOCKED) != 0 || mm.lock_future {
        mm.populate(at, len)?;
    }
    Ok(at)
}

fn map(task: &mut Task, a: [u64; 6]) -> SysResult {
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
        return if kind == libc::MAP_PRIVATE {
            task.mm()
                .map_anonymous(addr, len, fixed || noreplace, access, VmaKind::Anonymous)
        } else {
            task.mm()
                .map_shared_anonymous(addr, len, fixed || noreplace, access)
        };
    }

    let file = task.fds().get(fd)?;
    if !file.readable() {
        return Err(Errno::EACCES);
    }
    // /dev/zero maps as anonymous memory, shared or private as asked.
    let zero = libc::makedev(1, 5);
    if file
        .stat()
        .is_ok_and(|st| st.mode & libc::S_IFMT == libc::S_IFCHR && st.rdev == zero)
    {
        return map(
            task,
            [
                addr,
                len,
                prot,
                (flags | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        );
    }
    if kind != libc::MAP_PRIVATE {
        if access.write && !file.writable() {
            return Err(Errno::EACCES);
        }
        offset.checked_add(len).ok_or(Errno::EOVERFLOW)?;
        if let Some(map) = file.ops().map_shared(file.writable()) {
            let map = map?;
            if access.write && map.writer.is_none() {
                // Sealed against writes (F_SEAL_WRITE or FUTURE_WRITE).
                return Err(Errno::EPERM);
            }
            let region = map
                .region
                .into_any()
                .downcast::<crate::mm::MemfdRegion>()
                .map_err(|_| Errno::ENODEV)?;
            let name = VmaKind::File(file_name(task, &file));
            return task.mm().map_host_file(
                addr,
                len,
                fixed || noreplace,
                (access, MayWrite::from_writer(map.writer)),
                (region.file.clone(), offset),
                (name, crate::mm::FileSize(map.size)),
            );
        }
        if let Some(at) =
            map_host_shared(task, &file, [addr, len, offset], access, fixed || noreplace)?
        {
            return Ok(at);
        }
        if access.write {
            tracing::info!("mmap: writable shared mapping of a file with no memory: ENODEV");
            return Err(Errno::ENODEV);
        }
    }
    if !file.is_regular() {
        tracing::info!("mmap of a non-regular file not supported: ENODEV");
        return Err(Errno::ENODEV);
    }
    // A private (or read-only shared) mapping of a file nobody writes shows
    // the file's bytes as of now: the cached pages copy-on-write when the
    // file is on the host, else a copy. Bytes past the end of the file
    // read as zeros within the last page.
    if let Some(pages) = task.kernel.file_cache.pages(&file)? {
        let frames = (offset < pages.len).then(|| (pages.offset + offset, pages.len - offset));
        let at = task.mm().map_file_pages(
            addr,
            len,
            fixed || noreplace,
            access,
            VmaKind::File(file_name(task, &file)),
            frames,
        )?;
        let file_pages = page_up(pages.len.saturating_sub(offset)).unwrap_or(u64::MAX);
        task.mm().set_file_end(at, at.saturating_add(file_pages));
        if kind != libc::MAP_PRIVATE {
            task.mm().deny_write(at, len);
        }
        return Ok(at);
    }
    // Not cached: a copy of the mapped part, made now, is what the mapping
    // starts from (and shows again where it lets go of its pages).
    let (frames, done) = copy_of(task, &file, offset, len)?;
    let at = task.mm().map_file_pages(
        addr,
        len,
        fixed || noreplace,
        access,
        VmaKind::File(file_name(task, &file)),
        frames,
    );
    if let Some((pages, plen)) = frames {
        // The mapping holds its own references now (or failed).
        task.kernel.mf.release_private(pages, plen);
    }
    let at = at?;
    if kind != libc::MAP_PRIVATE {
        task.mm().deny_write(at, len);
    }
    let file_pages = page_up(offset.saturating_add(done)).unwrap_or(u64::MAX) - offset;
    task.mm().set_file_end(at, at.saturating_add(file_pages));
    Ok(at)
}

/// A copy of `[offset, offset + len)` of `file` in new private pages of
/// the memory file, which the caller owns (one reference): the pages and
/// their length (None when the file has nothing there), and how many of
/// the file's bytes were there.
fn copy_of(
    task: &Task,
    file: &crate::fs::File,
    offset: u64,
    len: u64,
) -> Result<(Option<(u64, u64)>, u64), Errno> {
    let size = file.stat()?.size.max(0) as u64;
    let want = len.min(size.saturating_sub(offset));
    if want == 0 {
        return Ok((None, 0));
    }
    let plen = page_up(want).ok_or(Errno::ENOMEM)?;
    let mf = &task.kernel.mf;
    let pages = mf.allocate_private(plen)?;
    match crate::filecache::read_into(mf, file, pages, offset, want) {
        Ok(done) => Ok((Some((pages, plen)), done)),
        Err(e) => {
            mf.release_private(pages, plen);
            Err(e)
        }
    }
}

/// MAP_SHARED of a regular file kept on the host (directfs, or a
/// descriptor the gofer donated): the host maps the file itself, so the
/// mapping, read/write and other processes on the host share its pages.
/// None for files without a host descriptor.
fn map_host_shared(
    task: &Task,
    file: &crate::fs::File,
    [addr, len, offset]: [u64; 3],
    access: AccessType,
    fixed: bool,
) -> Result<Option<u64>, Errno> {
    let Some(fd) = file.ops().host_fd() else {
        return Ok(None);
    };
    let st = crate::host::fstat_raw(fd)?;
    if st.mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(None);
    }
    let fd = fd.try_clone_to_owned().map_err(|e| Errno::from_io(&e))?;
    let host = crate::mm::HostFileMapping::new(fd, st.dev, st.ino);
    let size = {
        let host = host.clone();
        crate::mm::FileSize(std::sync::Arc::new(move || host.size()))
    };
    let may_write = if file.writable() {
        MayWrite::Yes
    } else {
        MayWrite::No
    };
    let name = VmaKind::File(file_name(task, file));
    task.mm()
        .map_host_file(
            addr,
            len,
            fixed,
            (access, may_write),
            (host, offset),
            (name, size),
        )
        .map(Some)
}

/// How `/proc/self/maps` will name a mapping of `file`.
fn file_name(task: &Task, file: &crate::fs::File) -> String {
    match file.location() {
        Some(loc) => super::file::Walker::of(task).ctx().path_of(loc),
        None => file.anon_name().to_string(),
    }
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

pub fn mremap(task: &mut Task, a: [u64; 6]) -> SysResult {
    const MREMAP_MAYMOVE: u64 = 1;
    const MREMAP_FIXED: u64 = 2;
    const MREMAP_DONTUNMAP: u64 = 4;
    let (old, old_len, new_len, flags, new_addr) = (a[0], a[1], a[2], a[3], a[4]);
    if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) != 0
        || flags & MREMAP_FIXED != 0 && flags & MREMAP_MAYMOVE == 0
    {
        return Err(Errno::EINVAL);
    }
    if flags & MREMAP_DONTUNMAP != 0 {
        tracing::info!("mremap: MREMAP_DONTUNMAP not supported: EINVAL");
        return Err(Errno::EINVAL);
    }
    let fixed = (flags & MREMAP_FIXED != 0).then_some(new_addr);
    task.mm()
        .remap(old, old_len, new_len, flags & MREMAP_MAYMOVE != 0, fixed)
}

pub fn madvise(task: &mut Task, a: [u64; 6]) -> SysResult {
    const MADV_NORMAL: u64 = 0;
    const MADV_RANDOM: u64 = 1;
    const MADV_SEQUENTIAL: u64 = 2;
    const MADV_WILLNEED: u64 = 3;
    const MADV_DONTNEED: u64 = 4;
    const MADV_FREE: u64 = 8;
    const MADV_DONTFORK: u64 = 10;
    const MADV_DOFORK: u64 = 11;
    const MADV_HUGEPAGE: u64 = 14;
    const MADV_NOHUGEPAGE: u64 = 15;
    let (addr, len, advice) = (a[0], a[1], a[2]);
    if addr % PAGE_SIZE != 0 {
        return Err(Errno::EINVAL);
    }
    let len = page_up(len).ok_or(Errno::EINVAL)?;
    if len == 0 {
        return Ok(0);
    }
    match advice {
        MADV_DONTNEED | MADV_FREE => task.mm().discard(addr, len).map(|()| 0),
        MADV_DONTFORK | MADV_DOFORK => task
            .mm()
            .set_dontfork(addr, len, advice == MADV_DONTFORK)
            .map(|()| 0),
        // Hints about access patterns and page sizes change nothing that
        // the application can observe.
        MADV_NORMAL | MADV_RANDOM | MADV_SEQUENTIAL | MADV_WILLNEED | MADV_HUGEPAGE
        | MADV_NOHUGEPAGE => {
            if task.mm().is_mapped(addr, len) {
                Ok(0)
            } else {
                Err(Errno::ENOMEM)
            }
        }
        other => {
            tracing::info!("madvise advice {other} not supported: EINVAL");
            Err(Errno::EINVAL)
        }
    }
}

pub fn mincore(task: &mut Task, a: [u64; 6]) -> SysResult {
    if !a[0].is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    let len = page_up(a[1]).ok_or(Errno::ENOMEM)?;
    let vec = task.mm().residency(a[0], len)?;
    task.mm().copy_out(a[2], &vec)?;
    Ok(0)
}

pub fn msync(task: &mut Task, a: [u64; 6]) -> SysResult {
    const MS_ASYNC: u64 = 1;
    const MS_INVALIDATE: u64 = 2;
    const MS_SYNC: u64 = 4;
    if !a[0].is_multiple_of(PAGE_SIZE)
        || a[2] & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
        || a[2] & MS_ASYNC != 0 && a[2] & MS_SYNC != 0
    {
        return Err(Errno::EINVAL);
    }
    let len = page_up(a[1]).ok_or(Errno::ENOMEM)?;
    // No mapping writes back to a file (shared writable file mappings are
    // refused), so there is nothing to flush; the range must be mapped.
    if len == 0 || task.mm().is_mapped(a[0], len) {
        Ok(0)
    } else {
        Err(Errno::ENOMEM)
    }
}

/// The range mlock and munlock name, checked as Linux does: page-aligned
/// outward, mapped throughout (else ENOMEM).
fn lock_range(task: &Task, addr: u64, len: u64) -> Result<(u64, u64), Errno> {
    let start = abi::page_down(addr);
    let end = addr
        .checked_add(len)
        .and_then(page_up)
        .ok_or(Errno::ENOMEM)?;
    if end > start && !task.mm().is_covered(start, end - start) {
        return Err(Errno::ENOMEM);
    }
    Ok((start, end - start))
}

/// mlock(2): the pages are faulted in now. We never swap application
/// memory, so there is nothing else to pin; euid 0 is not limited by
/// RLIMIT_MEMLOCK (it has CAP_IPC_LOCK).
pub fn mlock(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (start, len) = lock_range(task, a[0], a[1])?;
    task.mm().populate(start, len)?;
    Ok(0)
}

pub fn mlock2(task: &mut Task, a: [u64; 6]) -> SysResult {
    const MLOCK_ONFAULT: u64 = 1;
    if a[2] & !MLOCK_ONFAULT != 0 {
        return Err(Errno::EINVAL);
    }
    let (start, len) = lock_range(task, a[0], a[1])?;
    if a[2] & MLOCK_ONFAULT == 0 {
        task.mm().populate(start, len)?;
    }
    Ok(0)
}

pub fn munlock(task: &mut Task, a: [u64; 6]) -> SysResult {
    lock_range(task, a[0], a[1]).map(|_| 0)
}

pub fn mlockall(task: &mut Task, a: [u64; 6]) -> SysResult {
    const MCL_CURRENT: u64 = 1;
    const MCL_FUTURE: u64 = 2;
    const MCL_ONFAULT: u64 = 4;
    let flags = a[0];
    if flags & !(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0
        || flags & (MCL_CURRENT | MCL_FUTURE) == 0
    {
        return Err(Errno::EINVAL);
    }
    let mut mm = task.mm();
    let onfault = flags & MCL_ONFAULT != 0;
    mm.lock_future = flags & MCL_FUTURE != 0 && !onfault;
    if flags & MCL_CURRENT != 0 && !onfault {
        mm.populate_all();
    }
    Ok(0)
}

pub fn munlockall(task: &mut Task, _: [u64; 6]) -> SysResult {
    task.mm().lock_future = false;
    Ok(0)
}
