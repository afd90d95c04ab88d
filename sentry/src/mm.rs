//! The memory manager: one process's virtual memory areas (VMAs), backed by
//! the memory file and mirrored into the platform's address space.
//!
//! Each VMA maps a contiguous range of the memory file. Memory is reserved
//! in the file when the VMA is created; the host allocates the pages only
//! when they are first touched, so a large reservation costs nothing until
//! used. Copy-on-write and demand faults arrive with fork (issue "Sentry
//! core"); until then every VMA is private to its one process.

use std::collections::BTreeMap;
use std::sync::Arc;

use abi::{page_down, page_up, Errno, PAGE_SIZE};
use platform::{AccessType, AddressSpace};

use crate::memfile::MemoryFile;

/// What a VMA is, for `/proc/self/maps` and for brk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmaKind {
    Anonymous,
    Heap,
    Stack,
    /// A copy of (part of) a file: the ELF image, or a private file mapping.
    File(String),
    /// MAP_SHARED|MAP_ANONYMOUS memory (`/dev/zero (deleted)` in maps).
    SharedAnonymous,
    /// The vDSO parameter page: shared with every process, written only by
    /// the Sentry, never writable or executable by the application.
    Vvar,
    /// The vDSO's code (a private copy, as Linux's copy-on-write one).
    Vdso,
}

#[derive(Clone, Debug)]
struct Vma {
    end: u64,
    access: AccessType,
    /// Memory file offset of the VMA's first byte.
    offset: u64,
    kind: VmaKind,
    /// For MAP_SHARED memory: the memory file range, owned jointly by every
    /// mapping of it (in this process and in forked ones) and freed when
    /// the last goes. Private memory (None) is owned by the VMA itself.
    shared: Option<Arc<SharedRange>>,
}

impl Vma {
    /// `rwxp`-style permissions and the name maps shows for the mapping.
    fn perms_and_name(&self) -> (String, &str) {
        let a = self.access;
        let mut perms: String = [(a.read, 'r'), (a.write, 'w'), (a.execute, 'x')]
            .iter()
            .map(|&(on, c)| if on { c } else { '-' })
            .collect();
        // Linux shows the vvar page as private, like all special mappings.
        let shows_shared = self.shared.is_some() && self.kind != VmaKind::Vvar;
        perms.push(if shows_shared { 's' } else { 'p' });
        let name = match &self.kind {
            VmaKind::Anonymous => "",
            VmaKind::Heap => "[heap]",
            VmaKind::Stack => "[stack]",
            VmaKind::File(path) => path,
            VmaKind::SharedAnonymous => "/dev/zero (deleted)",
            VmaKind::Vvar => "[vvar]",
            VmaKind::Vdso => "[vdso]",
        };
        (perms, name)
    }
}

/// A range of the memory file that several mappings share.
pub(crate) struct SharedRange {
    mf: Arc<MemoryFile>,
    offset: u64,
    len: u64,
}

impl SharedRange {
    /// A new zeroed range of `len` bytes of the memory file.
    pub(crate) fn allocate(mf: &Arc<MemoryFile>, len: u64) -> Result<Arc<SharedRange>, Errno> {
        let offset = mf.allocate(len)?;
        Ok(Arc::new(SharedRange {
            mf: mf.clone(),
            offset,
            len,
        }))
    }

    /// The 64-bit word at `offset` in the range, as an atomic.
    pub(crate) fn atomic_u64(&self, offset: u64) -> &std::sync::atomic::AtomicU64 {
        assert!(
            offset + 8 <= self.len,
            "word past the end of a shared range"
        );
        self.mf.atomic_u64(self.offset + offset)
    }
}

/// Files of the in-memory filesystems keep their data in the memory file
/// once mapped shared, so mappings and read/write see the same bytes.
pub(crate) struct FileMemory(pub Arc<MemoryFile>);

impl vfs::inode::SharedMemory for FileMemory {
    fn allocate(&self, len: u64) -> Result<Arc<dyn vfs::inode::SharedRegion>, Errno> {
        Ok(SharedRange::allocate(&self.0, len)?)
    }
}

impl vfs::inode::SharedRegion for SharedRange {
    fn len(&self) -> u64 {
        self.len
    }

    fn read(&self, offset: u64, buf: &mut [u8]) {
        debug_assert!(offset + buf.len() as u64 <= self.len);
        self.mf.copy_in(self.offset + offset, buf);
    }

    fn write(&self, offset: u64, buf: &[u8]) {
        debug_assert!(offset + buf.len() as u64 <= self.len);
        self.mf.copy_out(self.offset + offset, buf);
    }

    fn zero(&self, offset: u64, len: u64) {
        // Whole pages go back to the host; the edges are written.
        let start = page_up(self.offset + offset).unwrap_or(u64::MAX);
        let end = page_down(self.offset + offset + len);
        if start < end {
            let head = (start - self.offset - offset) as usize;
            self.mf.copy_out(self.offset + offset, &vec![0u8; head]);
            self.mf.zero(start, end - start);
            let tail = (self.offset + offset + len - end) as usize;
            self.mf.copy_out(end, &vec![0u8; tail]);
        } else {
            self.mf
                .copy_out(self.offset + offset, &vec![0u8; len as usize]);
        }
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

impl std::fmt::Debug for SharedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedRange({:#x}, +{:#x})", self.offset, self.len)
    }
}

impl Drop for SharedRange {
    fn drop(&mut self) {
        self.mf.free(self.offset, self.len);
    }
}

pub struct MemoryManager {
    space: Arc<dyn AddressSpace>,
    mf: Arc<MemoryFile>,
    vmas: BTreeMap<u64, Vma>,
    min_addr: u64,
    max_addr: u64,
    /// New mappings without a fixed address go below this.
    pub(crate) mmap_top: u64,
    brk_start: u64,
    brk: u64,
    /// Where the initial stack keeps the argument and environment strings
    /// (`/proc/[pid]/cmdline` and `environ` read them from there).
    pub(crate) args: (u64, u64),
    pub(crate) env: (u64, u64),
}

impl MemoryManager {
    pub fn new(
        space: Arc<dyn AddressSpace>,
        mf: Arc<MemoryFile>,
        min_addr: u64,
        max_addr: u64,
    ) -> Self {
        MemoryManager {
            space,
            mf,
            vmas: BTreeMap::new(),
            min_addr,
            max_addr,
            mmap_top: max_addr,
            brk_start: 0,
            brk: 0,
            args: (0, 0),
            env: (0, 0),
        }
    }

    /// The platform address space, for `Context::switch`.
    pub fn space(&self) -> Arc<dyn AddressSpace> {
        self.space.clone()
    }

    pub fn max_addr(&self) -> u64 {
        self.max_addr
    }

    fn check_range(&self, addr: u64, len: u64) -> Result<u64, Errno> {
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        if addr < self.min_addr || end > self.max_addr {
            return Err(Errno::ENOMEM);
        }
        Ok(end)
    }

    fn overlaps(&self, addr: u64, end: u64) -> bool {
        self.vmas
            .range(..end)
            .next_back()
            .is_some_and(|(_, v)| v.end > addr)
    }

    /// The highest free range of `len` bytes below `mmap_top`.
    pub(crate) fn find_free(&self, len: u64) -> Result<u64, Errno> {
        let mut end = self.mmap_top;
        for (&start, vma) in self.vmas.range(..self.mmap_top).rev() {
            if vma.end <= end && end - vma.end >= len {
                break;
            }
            end = end.min(start);
        }
        end.checked_sub(len)
            .filter(|&a| a >= self.min_addr)
            .ok_or(Errno::ENOMEM)
    }

    /// Map `len` bytes of zeroed memory. `fixed` places it exactly at `addr`,
    /// replacing what is there; otherwise `addr` is a hint.
    pub fn map_anonymous(
        &mut self,
        addr: u64,
        len: u64,
        fixed: bool,
        access: AccessType,
        kind: VmaKind,
    ) -> Result<u64, Errno> {
        self.map_new(addr, len, fixed, access, kind, false)
    }

    /// Like [`map_anonymous`](Self::map_anonymous), but MAP_SHARED: a
    /// forked child shares the memory instead of getting a copy.
    pub fn map_shared_anonymous(
        &mut self,
        addr: u64,
        len: u64,
        fixed: bool,
        access: AccessType,
    ) -> Result<u64, Errno> {
        self.map_new(addr, len, fixed, access, VmaKind::SharedAnonymous, true)
    }

    /// Map `len` bytes of a region from an offset in it on, shared (a
    /// MAP_SHARED file mapping whose file lives in the memory file).
    pub fn map_shared_region(
        &mut self,
        addr: u64,
        len: u64,
        fixed: bool,
        access: AccessType,
        (region, region_offset): (Arc<SharedRange>, u64),
        kind: VmaKind,
    ) -> Result<u64, Errno> {
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        if len == 0 || !region_offset.is_multiple_of(PAGE_SIZE) || region_offset + len > region.len
        {
            return Err(Errno::EINVAL);
        }
        let addr = self.place(addr, len, fixed)?;
        let offset = region.offset + region_offset;
        if let Err(e) = self
            .space
            .map_file(addr, len, self.mf.fd(), offset, access, false)
        {
            tracing::error!("mapping [{addr:#x}, +{len:#x}) into the address space: {e}");
            return Err(Errno::ENOMEM);
        }
        self.vmas.insert(
            addr,
            Vma {
                end: addr + len,
                access,
                offset,
                kind,
                shared: Some(region),
            },
        );
        Ok(addr)
    }

    /// Where a new mapping of `len` bytes goes: exactly `addr` (replacing
    /// what is there) when `fixed`, else near the hint or top-down.
    fn place(&mut self, addr: u64, len: u64, fixed: bool) -> Result<u64, Errno> {
        if fixed {
            if !addr.is_multiple_of(PAGE_SIZE) {
                return Err(Errno::EINVAL);
            }
            self.check_range(addr, len)?;
            self.unmap(addr, len)?;
            Ok(addr)
        } else {
            let hint = page_down(addr);
            match self.check_range(hint, len) {
                Ok(end) if hint != 0 && !self.overlaps(hint, end) => Ok(hint),
                _ => self.find_free(len),
            }
        }
    }

    fn map_new(
        &mut self,
        addr: u64,
        len: u64,
        fixed: bool,
        access: AccessType,
        kind: VmaKind,
        shared: bool,
    ) -> Result<u64, Errno> {
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let addr = self.place(addr, len, fixed)?;
        let offset = self.mf.allocate(len)?;
        if let Err(e) = self
            .space
            .map_file(addr, len, self.mf.fd(), offset, access, false)
        {
            tracing::error!("mapping [{addr:#x}, +{len:#x}) into the address space: {e}");
            self.mf.free(offset, len);
            return Err(Errno::ENOMEM);
        }
        let shared = shared.then(|| {
            Arc::new(SharedRange {
                mf: self.mf.clone(),
                offset,
                len,
            })
        });
        self.vmas.insert(
            addr,
            Vma {
                end: addr + len,
                access,
                offset,
                kind,
                shared,
            },
        );
        Ok(addr)
    }

    /// Whether `[addr, addr+len)` overlaps any mapping.
    pub fn is_mapped(&self, addr: u64, len: u64) -> bool {
        addr.checked_add(len)
            .is_some_and(|end| self.overlaps(addr, end))
    }

    /// Split the VMA containing `addr` (if any) so a VMA starts at `addr`.
    fn split_at(&mut self, addr: u64) {
        let Some((&start, vma)) = self.vmas.range(..addr).next_back() else {
            return;
        };
        if vma.end <= addr {
            return;
        }
        let mut right = vma.clone();
        right.offset += addr - start;
        self.vmas.get_mut(&start).expect("just found").end = addr;
        self.vmas.insert(addr, right);
    }

    /// Remove every mapping in `[addr, addr+len)` and free its memory.
    pub fn unmap(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        let len = page_up(len).ok_or(Errno::EINVAL)?;
        if !addr.is_multiple_of(PAGE_SIZE) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
        if !self.overlaps(addr, end) {
            return Ok(());
        }
        self.split_at(addr);
        self.split_at(end);
        let doomed: Vec<u64> = self.vmas.range(addr..end).map(|(&s, _)| s).collect();
        for start in doomed {
            let vma = self.vmas.remove(&start).expect("just listed");
            if vma.shared.is_none() {
                self.mf.free(vma.offset, vma.end - start);
            }
        }
        self.space.unmap(addr, len).map_err(|e| {
            tracing::error!("unmapping [{addr:#x}, +{len:#x}): {e}");
            Errno::ENOMEM
        })
    }

    /// Change the protection of `[addr, addr+len)`, which must be mapped
    /// throughout (else ENOMEM, as Linux).
    pub fn protect(&mut self, addr: u64, len: u64, access: AccessType) -> Result<(), Errno> {
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        let mut covered = addr;
        for (&s, v) in self.vmas.range(..end) {
            if v.end <= covered {
                continue;
            }
            if s > covered {
                return Err(Errno::ENOMEM);
            }
            covered = v.end;
        }
        if covered < end {
            return Err(Errno::ENOMEM);
        }
        // The vvar page may never become writable or executable (Linux:
        // no VM_MAYWRITE or VM_MAYEXEC, so EACCES).
        if (access.write || access.execute)
            && self
                .vmas
                .range(..end)
                .any(|(_, v)| v.end > addr && v.kind == VmaKind::Vvar)
        {
            return Err(Errno::EACCES);
        }
        self.split_at(addr);
        self.split_at(end);
        let starts: Vec<u64> = self.vmas.range(addr..end).map(|(&s, _)| s).collect();
        for s in starts {
            let vma = self.vmas.get_mut(&s).expect("just listed");
            vma.access = access;
            let (len, offset) = (vma.end - s, vma.offset);
            self.space
                .map_file(s, len, self.mf.fd(), offset, access, false)
                .map_err(|e| {
                    tracing::error!("remapping [{s:#x}, +{len:#x}): {e}");
                    Errno::ENOMEM
                })?;
        }
        Ok(())
    }

    /// A copy of this memory for a forked child, mapped into `space`.
    /// Only pages that hold data are copied; holes stay holes.
    pub fn fork(&self, space: Arc<dyn AddressSpace>) -> Result<MemoryManager, Errno> {
        let mut child = MemoryManager {
            space,
            mf: self.mf.clone(),
            vmas: BTreeMap::new(),
            min_addr: self.min_addr,
            max_addr: self.max_addr,
            mmap_top: self.mmap_top,
            brk_start: self.brk_start,
            brk: self.brk,
            args: self.args,
            env: self.env,
        };
        for (&start, vma) in &self.vmas {
            let len = vma.end - start;
            if vma.shared.is_some() {
                // Shared memory stays shared: the child maps the same pages.
                child.vmas.insert(start, vma.clone());
                child
                    .space
                    .map_file(start, len, self.mf.fd(), vma.offset, vma.access, false)
                    .map_err(|e| {
                        tracing::error!("mapping a forked child's shared memory: {e}");
                        Errno::ENOMEM
                    })?;
                continue;
            }
            let offset = self.mf.allocate(len)?;
            // Owned by the child from here, so its Drop frees it on failure.
            child.vmas.insert(
                start,
                Vma {
                    offset,
                    ..vma.clone()
                },
            );
            self.mf.copy_populated(vma.offset, offset, len);
            child
                .space
                .map_file(start, len, self.mf.fd(), offset, vma.access, false)
                .map_err(|e| {
                    tracing::error!("mapping a forked child's memory: {e}");
                    Errno::ENOMEM
                })?;
        }
        Ok(child)
    }

    /// The VMA covering exactly `[addr, end)` after splitting, or EFAULT if
    /// the range is not one mapping.
    fn single_vma(&mut self, addr: u64, end: u64) -> Result<Vma, Errno> {
        let (&start, vma) = self.vmas.range(..=addr).next_back().ok_or(Errno::EFAULT)?;
        if vma.end < end || start > addr {
            return Err(Errno::EFAULT);
        }
        let vma = vma.clone();
        self.split_at(addr);
        self.split_at(end);
        Ok(Vma {
            offset: vma.offset + (addr - start),
            end,
            ..vma
        })
    }

    /// mremap(2): resize `[old, old+old_len)` (one mapping) to `new_len`,
    /// in place or, with `may_move`, elsewhere (or exactly at `fixed`).
    pub fn remap(
        &mut self,
        old: u64,
        old_len: u64,
        new_len: u64,
        may_move: bool,
        fixed: Option<u64>,
    ) -> Result<u64, Errno> {
        let old_len = page_up(old_len).ok_or(Errno::EINVAL)?;
        let new_len = page_up(new_len).ok_or(Errno::EINVAL)?;
        if !old.is_multiple_of(PAGE_SIZE) || new_len == 0 || old_len == 0 {
            return Err(Errno::EINVAL);
        }
        let old_end = old.checked_add(old_len).ok_or(Errno::EINVAL)?;
        let vma = self.single_vma(old, old_end)?;
        if vma.shared.is_some() && new_len > old_len {
            // Growing would need the shared range itself to grow.
            tracing::info!("mremap: growing a shared mapping is not supported: ENOMEM");
            return Err(Errno::ENOMEM);
        }
        if fixed.is_none() {
            if new_len <= old_len {
                if new_len < old_len {
                    self.unmap(old + new_len, old_len - new_len)?;
                }
                return Ok(old);
            }
            // Grow in place when the pages after it are free.
            let grow_end = old.checked_add(new_len).ok_or(Errno::ENOMEM)?;
            if self.check_range(old, new_len).is_ok() && !self.overlaps(old_end, grow_end) {
                self.map_anonymous(
                    old_end,
                    grow_end - old_end,
                    true,
                    vma.access,
                    vma.kind.clone(),
                )?;
                return Ok(old);
            }
            if !may_move {
                return Err(Errno::ENOMEM);
            }
        }
        // Move: new memory, the old contents copied in, the old range gone.
        let dest = match fixed {
            Some(at) => {
                if at % PAGE_SIZE != 0 {
                    return Err(Errno::EINVAL);
                }
                let at_end = at.checked_add(new_len).ok_or(Errno::EINVAL)?;
                if at < old_end && old < at_end {
                    return Err(Errno::EINVAL);
                }
                self.map_anonymous(at, new_len, true, vma.access, vma.kind.clone())?
            }
            None => self.map_anonymous(0, new_len, false, vma.access, vma.kind.clone())?,
        };
        let dest_offset = self
            .vmas
            .get(&dest)
            .map(|v| v.offset)
            .ok_or(Errno::EFAULT)?;
        self.mf
            .copy_populated(vma.offset, dest_offset, old_len.min(new_len));
        self.unmap(old, old_len)?;
        Ok(dest)
    }

    /// madvise(MADV_DONTNEED/FREE): private anonymous pages read as zeros
    /// afterwards; the memory goes back to the host.
    /// Shared memory keeps its contents (the pages belong to every mapping).
    pub fn discard(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        let mut ranges = Vec::new();
        self.walk(addr, len as usize, AccessType::NONE, |off, _, n| {
            ranges.push((off, n as u64))
        })
        .map_err(|_| Errno::ENOMEM)?;
        let end = addr + len;
        let shared: Vec<(u64, u64)> = self
            .vmas
            .range(..end)
            .filter(|(_, v)| v.end > addr && v.shared.is_some())
            .map(|(_, v)| (v.offset, v.offset + v.shared.as_ref().map_or(0, |r| r.len)))
            .collect();
        ranges.retain(|(off, _)| !shared.iter().any(|&(s, e)| *off >= s && *off < e));
        for (off, n) in ranges {
            self.mf.zero(off, n);
        }
        Ok(())
    }

    /// mincore(2): one byte per page, 1 where the page holds data.
    pub fn residency(&self, addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        self.walk(addr, len as usize, AccessType::NONE, |off, _, n| {
            out.extend(self.mf.resident(off, n as u64));
        })
        .map_err(|_| Errno::ENOMEM)?;
        Ok(out)
    }

    /// Place the program break after the loaded image.
    pub fn set_brk_start(&mut self, addr: u64) {
        self.brk_start = addr;
        self.brk = addr;
    }

    /// brk(2): move the break to `addr` if possible; returns the break.
    pub fn brk(&mut self, addr: u64) -> u64 {
        if addr < self.brk_start {
            return self.brk;
        }
        let (Some(old_top), Some(new_top)) = (page_up(self.brk), page_up(addr)) else {
            return self.brk;
        };
        if new_top > old_top {
            let len = new_top - old_top;
            if self.check_range(old_top, len).is_err() || self.overlaps(old_top, new_top) {
                return self.brk;
            }
            if self
                .map_anonymous(old_top, len, true, AccessType::READ_WRITE, VmaKind::Heap)
                .is_err()
            {
                return self.brk;
            }
        } else if new_top < old_top && self.unmap(new_top, old_top - new_top).is_err() {
            return self.brk;
        }
        self.brk = addr;
        addr
    }

    /// Walk `[addr, addr+len)` VMA by VMA, calling `f(file_offset, buf_pos,
    /// chunk_len)`; EFAULT if any byte is unmapped or lacks `need`.
    fn walk(
        &self,
        addr: u64,
        len: usize,
        need: AccessType,
        mut f: impl FnMut(u64, usize, usize),
    ) -> Result<(), Errno> {
        let end = addr.checked_add(len as u64).ok_or(Errno::EFAULT)?;
        let mut cur = addr;
        while cur < end {
            let (&start, vma) = self.vmas.range(..=cur).next_back().ok_or(Errno::EFAULT)?;
            if vma.end <= cur || !vma.access.allows(need) {
                return Err(Errno::EFAULT);
            }
            let chunk_end = vma.end.min(end);
            f(
                vma.offset + (cur - start),
                (cur - addr) as usize,
                (chunk_end - cur) as usize,
            );
            cur = chunk_end;
        }
        Ok(())
    }

    /// The memory file offset behind `addr`, which must be mapped with
    /// `need` (EFAULT otherwise).
    pub fn translate(&self, addr: u64, need: AccessType) -> Result<u64, Errno> {
        let mut offset = None;
        self.walk(addr, 1, need, |off, _, _| offset = Some(off))?;
        offset.ok_or(Errno::EFAULT)
    }

    /// Copy application memory at `addr` into `buf` (needs read access).
    pub fn copy_in(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        // Check the whole range first so a fault copies nothing.
        self.walk(addr, buf.len(), AccessType::READ, |_, _, _| {})?;
        self.walk(addr, buf.len(), AccessType::READ, |off, pos, n| {
            self.mf.copy_in(off, &mut buf[pos..pos + n])
        })
    }

    /// Copy `buf` to application memory at `addr` (needs write access).
    pub fn copy_out(&self, addr: u64, buf: &[u8]) -> Result<(), Errno> {
        self.copy_out_as(
            addr,
            buf,
            AccessType {
                read: false,
                write: true,
                execute: false,
            },
        )
    }

    /// Copy `buf` to application memory regardless of its protection, as the
    /// loader writes read-only segments.
    pub fn copy_out_force(&self, addr: u64, buf: &[u8]) -> Result<(), Errno> {
        self.copy_out_as(addr, buf, AccessType::NONE)
    }

    fn copy_out_as(&self, addr: u64, buf: &[u8], need: AccessType) -> Result<(), Errno> {
        self.walk(addr, buf.len(), need, |_, _, _| {})?;
        self.walk(addr, buf.len(), need, |off, pos, n| {
            self.mf.copy_out(off, &buf[pos..pos + n])
        })
    }

    /// Read a NUL-terminated string of at most `max` bytes (without the NUL).
    pub fn copy_in_string(&self, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        let mut cur = addr;
        loop {
            let chunk = (PAGE_SIZE - cur % PAGE_SIZE) as usize;
            let mut buf = vec![0u8; chunk];
            self.copy_in(cur, &mut buf)?;
            if let Some(nul) = buf.iter().position(|&b| b == 0) {
                out.extend_from_slice(&buf[..nul]);
                return if out.len() > max {
                    Err(Errno::ENAMETOOLONG)
                } else {
                    Ok(out)
                };
            }
            out.extend_from_slice(&buf);
            if out.len() > max {
                return Err(Errno::ENAMETOOLONG);
            }
            cur += chunk as u64;
        }
    }
}

impl MemoryManager {
    /// The mappings in the format of `/proc/[pid]/maps`. Offsets, devices
    /// and inodes of file mappings are not tracked yet and read as 0.
    pub fn proc_maps(&self) -> String {
        let mut out = String::new();
        for (start, v) in &self.vmas {
            let (perms, name) = v.perms_and_name();
            let line = format!("{start:08x}-{:08x} {perms} 00000000 00:00 0", v.end);
            if name.is_empty() {
                out.push_str(&line);
            } else {
                out.push_str(&format!("{line:<72} {name}"));
            }
            out.push('\n');
        }
        out
    }

    /// Total bytes mapped (VmSize).
    pub fn mapped_bytes(&self) -> u64 {
        self.vmas.iter().map(|(s, v)| v.end - s).sum()
    }

    /// The mappings, one line each, in the format of `/proc/self/maps`
    /// (without device and inode), for logs.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (start, v) in &self.vmas {
            let (perms, name) = v.perms_and_name();
            out.push_str(&format!("{start:08x}-{:08x} {perms} {name}\n", v.end));
        }
        out
    }
}

impl Drop for MemoryManager {
    fn drop(&mut self) {
        for (&start, vma) in &self.vmas {
            if vma.shared.is_none() {
                self.mf.free(vma.offset, vma.end - start);
            }
        }
    }
}
