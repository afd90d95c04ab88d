//! The memory manager: one process's virtual memory areas (VMAs), backed by
//! the memory file and mirrored into the platform's address space.
//!
//! Two layers, as upstream's `mm`: VMAs are what the application asked for
//! (ranges, protections, names: `/proc/self/maps`); PMAs ("private memory
//! areas") are the memory-file pages that back private VMAs where they have
//! been touched. Nothing is mapped into the host address space until the
//! application faults on it: a fault allocates (or finds) the pages and
//! maps a chunk around the faulting address. fork shares every private page
//! copy-on-write: both sides lose write access in the host, and the first
//! write copies the chunk it falls in, unless the writer is by then the
//! only user of those pages. MAP_SHARED VMAs are one range of the memory
//! file (anonymous memory) or a host file (directfs files, and the memfd
//! a tmpfs file moves into), shared by every mapping of it, and mapped
//! whole on first touch.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
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
    /// The syscall trampoline table of syscall patching (`crate::patch`):
    /// below the lowest address the application may map, so it can
    /// neither map over it, unmap it nor change its protection.
    Usertrap,
}

#[derive(Clone, Debug)]
struct Vma {
    end: u64,
    access: AccessType,
    kind: VmaKind,
    /// For MAP_SHARED memory: what is mapped, owned jointly by every
    /// mapping of it (in this process and in forked ones) and released
    /// when the last goes, and the offset of the VMA's first byte in it.
    /// Private memory (None) lives in PMAs.
    shared: Option<(SharedBacking, u64)>,
    /// A shared VMA is mapped into the host whole, on first touch.
    host_mapped: bool,
    /// MAP_GROWSDOWN: a fault just below it extends it downwards.
    growsdown: bool,
    /// MADV_DONTFORK: a forked child does not get this mapping.
    dontfork: bool,
    /// Whether mprotect may make the mapping writable.
    may_write: MayWrite,
    /// A file mapping's first address wholly past the end of the file:
    /// touching it from there on is SIGBUS (BUS_ADRERR), as in Linux.
    bus_from: Option<u64>,
    /// A shared mapping of a file whose size changes while mapped: each
    /// fault compares with the size then, SIGBUS wholly past it, and the
    /// host maps only the part within it (and takes away what a shrinking
    /// file cuts off: the host raises SIGBUS there itself).
    file_size: Option<FileSize>,
    /// This VMA was split off where its file ended when the part before
    /// it was mapped: `/proc/self/maps` shows the two as one mapping.
    eof_tail: bool,
    /// A private file mapping: the file's pages it started from, and the
    /// offset in them of the VMA's first byte. Pages the mapping lets go
    /// of (MADV_DONTNEED) show them again, as Linux shows the file again.
    origin: Option<(Arc<FileOrigin>, u64)>,
}

/// The pages a private file mapping was made from (a cached file's, or a
/// copy made at mmap), kept while any VMA of the mapping lives.
struct FileOrigin {
    mf: Arc<MemoryFile>,
    offset: u64,
    len: u64,
}

impl std::fmt::Debug for FileOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileOrigin({:#x}, +{:#x})", self.offset, self.len)
    }
}

impl Drop for FileOrigin {
    fn drop(&mut self) {
        self.mf.release_private(self.offset, self.len);
    }
}

/// A file's current size, as [`vfs::inode::SharedMap::size`] reports it.
#[derive(Clone)]
pub(crate) struct FileSize(pub Arc<dyn Fn() -> u64 + Send + Sync>);

impl std::fmt::Debug for FileSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileSize({})", (self.0)())
    }
}

/// Whether a mapping may become writable (Linux's VM_MAYWRITE).
#[derive(Clone)]
pub(crate) enum MayWrite {
    Yes,
    /// A shared file mapping that may be written holds its file's token
    /// while it exists (and in forked copies), so the file can refuse
    /// F_SEAL_WRITE.
    Counted {
        _token: Arc<dyn std::any::Any + Send + Sync>,
    },
    /// A shared mapping of a read-only descriptor or a write-sealed file.
    No,
}

impl MayWrite {
    /// What a file's `SharedMap::writer` grants.
    pub(crate) fn from_writer(writer: Option<Arc<dyn std::any::Any + Send + Sync>>) -> MayWrite {
        writer.map_or(MayWrite::No, |t| MayWrite::Counted { _token: t })
    }

    fn allowed(&self) -> bool {
        !matches!(self, MayWrite::No)
    }
}

impl std::fmt::Debug for MayWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MayWrite::Yes => "Yes",
            MayWrite::Counted { .. } => "Counted",
            MayWrite::No => "No",
        })
    }
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
            VmaKind::Usertrap => "[usertrap]",
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

/// Files of the in-memory filesystems move their data into a host memfd
/// of their own once mapped shared: mappings and read/write see the same
/// bytes, and the host makes every mapping follow the file's size (pages
/// cut off by a truncation raise SIGBUS; growth shows).
pub(crate) struct FileMemory;

impl vfs::inode::SharedMemory for FileMemory {
    fn allocate(&self, len: u64) -> Result<Arc<dyn vfs::inode::SharedRegion>, Errno> {
        // SAFETY: the name is a static C string; memfd_create returns a
        // new descriptor that we own.
        let raw = unsafe { libc::memfd_create(c"runsc-tmpfs-shared".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(Errno::from_io(&std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        vfs::host::ftruncate(fd.as_fd(), len)?;
        let st = crate::host::fstat_raw(fd.as_fd())?;
        Ok(Arc::new(MemfdRegion {
            file: HostFileMapping::new(fd, st.dev, st.ino),
        }))
    }
}

/// A file's bytes in a memfd ([`FileMemory`]); mappings of it are host
/// file mappings.
pub(crate) struct MemfdRegion {
    pub(crate) file: Arc<HostFileMapping>,
}

/// Read `buf` from `fd` at `offset`; short only at the end of the file.
fn pread_full(fd: &std::os::fd::OwnedFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    let mut done = 0;
    while done < buf.len() {
        match vfs::host::read(fd.as_fd(), &mut buf[done..], Some(offset + done as u64))? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// Write all of `buf` to `fd` at `offset`.
fn pwrite_all(fd: &std::os::fd::OwnedFd, buf: &[u8], offset: u64) -> Result<(), Errno> {
    let mut done = 0;
    while done < buf.len() {
        match vfs::host::write(fd.as_fd(), &buf[done..], Some(offset + done as u64))? {
            0 => return Err(Errno::ENOSPC),
            n => done += n,
        }
    }
    Ok(())
}

impl vfs::inode::SharedRegion for MemfdRegion {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        pread_full(&self.file.fd, buf, offset)
    }

    fn write(&self, offset: u64, buf: &[u8]) -> Result<(), Errno> {
        pwrite_all(&self.file.fd, buf, offset)
    }

    fn set_len(&self, len: u64) -> Result<(), Errno> {
        vfs::host::ftruncate(self.file.fd.as_fd(), len)
    }

    fn punch(&self, offset: u64, len: u64) -> Result<(), Errno> {
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        vfs::host::fallocate(self.file.fd.as_fd(), mode, offset, len)
    }

    unsafe fn read_iov(&self, iov: &[libc::iovec], offset: u64) -> Result<usize, Errno> {
        let iov = &iov[..iov.len().min(1024)];
        // SAFETY: the caller's contract is readv's.
        unsafe { vfs::host::readv(self.file.fd.as_fd(), iov, Some(offset)) }
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

/// Private memory behind part of a private VMA: a run of memory-file pages.
#[derive(Clone, Debug)]
struct Pma {
    end: u64,
    /// Memory file offset of the PMA's first byte.
    offset: u64,
    /// The pages may be used by another address space too (since a fork):
    /// never mapped writable; written only after copying or proving that
    /// this is their last user.
    cow: bool,
    /// How the host maps the range now; None until the next fault.
    host: Option<AccessType>,
}

/// How much a fault on fresh private memory allocates and maps, and how
/// much a copy-on-write break copies (upstream's `privateAllocUnit`).
const FAULT_CHUNK: u64 = 2 << 20;

/// The gap Linux keeps below a stack that grows down (`stack_guard_gap`,
/// 256 pages).
const STACK_GUARD_GAP: u64 = 256 * PAGE_SIZE;

/// A futex word's identity: the address within one address space for
/// private memory, the memory-file offset for shared memory (so processes
/// sharing it meet), as Linux's `get_futex_key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FutexKey {
    Private {
        mm: u64,
        addr: u64,
    },
    Shared {
        offset: u64,
    },
    /// A shared mapping of a host file: the file and the offset in it.
    HostFile {
        dev: u64,
        ino: u64,
        offset: u64,
    },
}

/// si_code values of SIGSEGV, for faults the memory manager cannot serve.
pub const SEGV_MAPERR: i32 = 1;
pub const SEGV_ACCERR: i32 = 2;
/// si_code of the SIGBUS for a file mapping touched past the file's end.
pub const BUS_ADRERR: i32 = 2;

/// A map whose every mutable borrow counts as a change, so what was read
/// from it can be checked to be current by its generation.
#[derive(Default)]
struct Versioned<T> {
    map: T,
    generation: u64,
}

impl<T> std::ops::Deref for Versioned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.map
    }
}

impl<T> std::ops::DerefMut for Versioned<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.generation = self.generation.wrapping_add(1);
        &mut self.map
    }
}

/// How many recently copied-through ranges are kept: a syscall's copies
/// in and out go to a few places (its string, its structure, the stack).
const RECENT: usize = 4;

/// A private range (one VMA's and one PMA's overlap) a copy went through,
/// valid while neither map changed since (`generations`).
#[derive(Clone, Copy)]
struct Recent {
    generations: (u64, u64),
    start: u64,
    end: u64,
    /// The memory-file offset of `start`.
    offset: u64,
    access: AccessType,
    cow: bool,
}

impl Default for Recent {
    /// Matches nothing.
    fn default() -> Recent {
        Recent {
            generations: (u64::MAX, u64::MAX),
            start: u64::MAX,
            end: 0,
            offset: 0,
            access: AccessType::NONE,
            cow: true,
        }
    }
}

static NEXT_MM_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub struct MemoryManager {
    space: Arc<dyn AddressSpace>,
    mf: Arc<MemoryFile>,
    /// Identifies this address space in private futex keys.
    id: u64,
    vmas: Versioned<BTreeMap<u64, Vma>>,
    /// Private memory, keyed by start address; always inside private VMAs
    /// and never straddling a VMA boundary.
    pmas: Versioned<BTreeMap<u64, Pma>>,
    /// Private ranges copies went through lately (`recent_offset`).
    recent: [std::cell::Cell<Recent>; RECENT],
    /// The entry of `recent` to replace next.
    recent_next: std::cell::Cell<usize>,
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
    /// mlockall(MCL_FUTURE): new mappings are populated at once.
    pub(crate) lock_future: bool,
    /// The process's RLIMIT_AS, RLIMIT_DATA and RLIMIT_STACK soft limits.
    pub(crate) limits: MemoryLimits,
    /// Syscall patching: the next free entry of the trampoline table, 0
    /// while the table is not mapped (`crate::patch`).
    pub(crate) usertrap_next: u32,
    /// The next free entry for a `read` site (`crate::patch`, `XorEax`).
    pub(crate) usertrap_read_next: u32,
}

/// The resource limits the memory manager enforces.
#[derive(Clone, Copy, Debug)]
pub struct MemoryLimits {
    pub address_space: u64,
    pub data: u64,
    pub stack: u64,
}

impl MemoryLimits {
    pub fn of(l: &crate::limits::Limits) -> MemoryLimits {
        use crate::limits::*;
        MemoryLimits {
            address_space: l.soft(RLIMIT_AS),
            data: l.soft(RLIMIT_DATA),
            stack: l.soft(RLIMIT_STACK),
        }
    }
}

/// What a MAP_SHARED VMA maps.
#[derive(Clone, Debug)]
pub(crate) enum SharedBacking {
    /// A range of the memory file (shared anonymous memory, the vDSO
    /// parameter page); the VMA's offset is the memory file's.
    Memory(Arc<SharedRange>),
    /// A file kept on the host, or an in-memory file's memfd
    /// ([`MemfdRegion`]), mapped from its own descriptor, so the host's
    /// page cache is what every mapping and read/write sees; the VMA's
    /// offset is the file's.
    Host(Arc<HostFileMapping>),
}

/// A host file's descriptor, held for as long as any mapping of it lives
/// (the host maps from it on each fault).
#[derive(Debug)]
pub(crate) struct HostFileMapping {
    fd: std::os::fd::OwnedFd,
    /// The file's identity, for futex keys.
    dev: u64,
    ino: u64,
}

impl HostFileMapping {
    pub(crate) fn new(fd: std::os::fd::OwnedFd, dev: u64, ino: u64) -> Arc<HostFileMapping> {
        Arc::new(HostFileMapping { fd, dev, ino })
    }

    /// The file's size now (0 if the host cannot say).
    pub(crate) fn size(&self) -> u64 {
        host_file_size(&self.fd).unwrap_or(0)
    }

    /// Fill `buf` from the file at `offset`; the rest of the page the file
    /// ends in reads as zeros, as the mapping shows it; EFAULT for bytes in
    /// pages wholly past the end (touching them is a fault).
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let n = pread_full(&self.fd, buf, offset).map_err(|_| Errno::EFAULT)?;
        if n < buf.len() {
            let size = host_file_size(&self.fd)?;
            if offset.saturating_add(buf.len() as u64) > page_up(size).unwrap_or(u64::MAX) {
                return Err(Errno::EFAULT);
            }
            buf[n..].fill(0);
        }
        Ok(())
    }

    /// Write `buf` to the file at `offset`, within the file's current
    /// size only (a store past the end of a mapped file is a fault, never
    /// a way to grow it).
    fn write(&self, offset: u64, buf: &[u8]) -> Result<(), Errno> {
        let size = host_file_size(&self.fd)?;
        if offset.saturating_add(buf.len() as u64) > page_up(size).unwrap_or(u64::MAX) {
            return Err(Errno::EFAULT);
        }
        // Bytes of the last page past the end are not the file's: drop them.
        let keep = size.saturating_sub(offset).min(buf.len() as u64) as usize;
        pwrite_all(&self.fd, &buf[..keep], offset).map_err(|_| Errno::EFAULT)
    }
}

/// A futex word the Sentry updates atomically in place, with what keeps
/// it mapped: the memory file, or a page of a host file mapped into the
/// Sentry (which the host may cut short: its operations fault softly).
pub(crate) struct FutexWord {
    ptr: *mut u32,
    _keep: WordMapping,
}

enum WordMapping {
    /// Held, not read: the word lies in the memory file's mapping.
    Memory(#[allow(dead_code)] Arc<MemoryFile>),
    /// The Sentry's own mapping of one page, unmapped on drop.
    HostPage(*mut libc::c_void),
}

impl FutexWord {
    fn in_memory(mf: &Arc<MemoryFile>, offset: u64) -> FutexWord {
        FutexWord {
            ptr: mf.atomic_u32(offset).as_ptr(),
            _keep: WordMapping::Memory(mf.clone()),
        }
    }

    /// Map the page of `file` holding `offset` into the Sentry, writable
    /// if the descriptor allows (a word of a read-only mapping can still
    /// be read; updates then fail with EFAULT, as in Linux).
    fn in_host_file(file: &HostFileMapping, offset: u64) -> Result<FutexWord, Errno> {
        let page = page_down(offset);
        let map = |prot| {
            // SAFETY: a new shared mapping of one page of a descriptor we
            // hold, at an address the host picks.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    PAGE_SIZE as usize,
                    prot,
                    libc::MAP_SHARED,
                    std::os::fd::AsRawFd::as_raw_fd(&file.fd),
                    page as i64,
                )
            };
            (p != libc::MAP_FAILED).then_some(p)
        };
        let base = map(libc::PROT_READ | libc::PROT_WRITE)
            .or_else(|| map(libc::PROT_READ))
            .ok_or(Errno::EFAULT)?;
        Ok(FutexWord {
            ptr: base
                .cast::<u8>()
                .wrapping_add((offset - page) as usize)
                .cast(),
            _keep: WordMapping::HostPage(base),
        })
    }
}

impl crate::futex::Word for FutexWord {
    fn load(&self) -> Result<u32, Errno> {
        // SAFETY: `ptr` is an aligned word of a mapping `_keep` holds;
        // the application shares it, so it is only accessed atomically,
        // and a fault (a truncated host file) is reported, not taken.
        unsafe { crate::safe_atomic::load(self.ptr) }
    }

    fn compare_exchange(&self, current: u32, new: u32) -> Result<Result<u32, u32>, Errno> {
        // SAFETY: as for `load`.
        unsafe { crate::safe_atomic::compare_exchange(self.ptr, current, new) }
    }
}

impl Drop for WordMapping {
    fn drop(&mut self) {
        if let WordMapping::HostPage(base) = *self {
            // SAFETY: our own one-page mapping, made in `in_host_file`;
            // nothing refers to it once the word goes.
            unsafe { libc::munmap(base, PAGE_SIZE as usize) };
        }
    }
}

fn host_file_size(fd: &std::os::fd::OwnedFd) -> Result<u64, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a whole `struct stat` into `st`.
    let rc = unsafe { libc::fstat(std::os::fd::AsRawFd::as_raw_fd(fd), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(Errno::EFAULT);
    }
    // SAFETY: fstat succeeded, so `st` is initialised.
    Ok(unsafe { st.assume_init() }.st_size.max(0) as u64)
}

/// What a piece of application memory is, for copies by the Sentry.
enum Backing<'a> {
    /// Memory-file offset of the piece's first byte.
    File(u64),
    /// A host file and the offset in it of the piece's first byte.
    Host(&'a HostFileMapping, u64),
    /// Private memory never touched: reads as zeros.
    Zero,
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
            id: NEXT_MM_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            vmas: Versioned::default(),
            pmas: Versioned::default(),
            recent: Default::default(),
            recent_next: std::cell::Cell::new(0),
            min_addr,
            max_addr,
            mmap_top: max_addr,
            brk_start: 0,
            brk: 0,
            args: (0, 0),
            env: (0, 0),
            lock_future: false,
            limits: MemoryLimits::of(&crate::limits::Limits::default()),
            usertrap_next: 0,
            usertrap_read_next: 0,
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

    /// The VMA containing `addr`.
    fn vma_at(&self, addr: u64) -> Option<(u64, &Vma)> {
        containing(&self.vmas, addr, |v| v.end)
    }

    /// The PMA containing `addr`.
    fn pma_at(&self, addr: u64) -> Option<(u64, &Pma)> {
        containing(&self.pmas, addr, |p| p.end)
    }

    /// The highest free range of `len` bytes below `mmap_top`, keeping the
    /// guard gap below stacks that grow down.
    pub(crate) fn find_free(&self, len: u64) -> Result<u64, Errno> {
        let mut end = self.mmap_top;
        for (&start, vma) in self.vmas.range(..self.mmap_top).rev() {
            if vma.end <= end && end - vma.end >= len {
                break;
            }
            end = end.min(start);
            if vma.growsdown {
                end = end.saturating_sub(STACK_GUARD_GAP);
            }
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
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let data = access.write && kind != VmaKind::Stack;
        self.charge(fixed.then_some(addr), len, data)?;
        let addr = self.place(addr, len, fixed)?;
        self.insert_vma(addr, len, access, kind, None);
        Ok(addr)
    }

    /// A private mapping whose first `frames.1` bytes start out as the
    /// memory-file pages at `frames.0` (a cached file's), shared
    /// copy-on-write; the rest reads as zeros.
    pub fn map_file_pages(
        &mut self,
        addr: u64,
        len: u64,
        fixed: bool,
        access: AccessType,
        kind: VmaKind,
        frames: Option<(u64, u64)>,
    ) -> Result<u64, Errno> {
        let addr = self.map_anonymous(addr, len, fixed, access, kind)?;
        if let Some((offset, flen)) = frames {
            let flen = page_up(flen.min(len)).ok_or(Errno::ENOMEM)?;
            debug_assert!(offset.is_multiple_of(PAGE_SIZE));
            // The origin's own reference (the PMA takes another).
            self.mf.share_private(offset, flen);
            let origin = Arc::new(FileOrigin {
                mf: self.mf.clone(),
                offset,
                len: flen,
            });
            self.vmas.get_mut(&addr).expect("just mapped").origin = Some((origin, 0));
            self.back_from_origin(addr, addr + flen);
        }
        Ok(addr)
    }

    /// The file mapped at `addr` ends at `file_end` (page-rounded): pages
    /// of the mapping from there on raise SIGBUS when touched.
    /// The part past the end becomes a VMA of its own, so memory backed
    /// or mapped for the file's pages never reaches into it.
    pub fn set_file_end(&mut self, addr: u64, file_end: u64) {
        let Some(end) = self.vmas.get(&addr).map(|v| v.end) else {
            return;
        };
        if file_end >= end {
            return;
        }
        let from = file_end.max(addr);
        self.split_at(from);
        if let Some(tail) = self.vmas.get_mut(&from) {
            tail.bus_from = Some(from);
        }
    }

    /// Where the file behind the shared VMA at `start` ends now, as an
    /// address (page-rounded; may lie past the VMA), or None when the VMA
    /// does not follow a file's size.
    fn shared_eof(&self, start: u64) -> Option<u64> {
        let vma = self.vmas.get(&start)?;
        let size = vma.file_size.as_ref()?;
        let (backing, offset) = vma.shared.as_ref()?;
        let file_offset = match backing {
            SharedBacking::Memory(range) => offset - range.offset,
            SharedBacking::Host(_) => *offset,
        };
        let file_end = page_up((size.0)()).unwrap_or(u64::MAX);
        Some(start.saturating_add(file_end.saturating_sub(file_offset)))
    }

    /// Forbid making the mapping at `[addr, addr + len)` writable: what
    /// stands in for a read-only MAP_SHARED file mapping (Linux: no
    /// VM_MAYWRITE), so mprotect cannot turn it into private writable
    /// memory.
    pub fn deny_write(&mut self, addr: u64, len: u64) {
        let end = addr.saturating_add(len);
        for (_, vma) in self.vmas.range_mut(addr..end) {
            vma.may_write = MayWrite::No;
        }
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
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let region = SharedRange::allocate(&self.mf, len)?;
        self.map_shared_region(
            addr,
            len,
            fixed,
            (access, MayWrite::Yes),
            (region, 0),
            VmaKind::SharedAnonymous,
        )
    }

    /// Map `len` bytes of a memory-file region from an offset in it on,
    /// shared.
    pub fn map_shared_region(
        &mut self,
        addr: u64,
        len: u64,
        fixed: bool,
        (access, may_write): (AccessType, MayWrite),
        (region, region_offset): (Arc<SharedRange>, u64),
        kind: VmaKind,
    ) -> Result<u64, Errno> {
        if region_offset.saturating_add(page_up(len).unwrap_or(u64::MAX)) > region.len {
            return Err(Errno::EINVAL);
        }
        let offset = region.offset + region_offset;
        self.map_shared(
            [addr, len],
            fixed,
            (access, may_write),
            (SharedBacking::Memory(region), offset),
            (kind, None),
        )
    }

    /// Map `len` bytes of a host file from `file_offset` on, shared: the
    /// host maps the file itself, so writes reach it and changes made
    /// behind the sandbox's back show; pages wholly past the end of the
    /// file raise SIGBUS while they are past it (`size`).
    pub fn map_host_file(
        &mut self,
        addr: u64,
        len: u64,
        fixed: bool,
        (access, may_write): (AccessType, MayWrite),
        (file, file_offset): (Arc<HostFileMapping>, u64),
        (kind, size): (VmaKind, FileSize),
    ) -> Result<u64, Errno> {
        self.map_shared(
            [addr, len],
            fixed,
            (access, may_write),
            (SharedBacking::Host(file), file_offset),
            (kind, Some(size)),
        )
    }

    /// A new shared VMA over `backing` from `offset` (page-aligned) on.
    fn map_shared(
        &mut self,
        [addr, len]: [u64; 2],
        fixed: bool,
        (access, may_write): (AccessType, MayWrite),
        (backing, offset): (SharedBacking, u64),
        (kind, size): (VmaKind, Option<FileSize>),
    ) -> Result<u64, Errno> {
        if access.write && !may_write.allowed() {
            return Err(Errno::EACCES);
        }
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        if len == 0 || !offset.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        self.charge(fixed.then_some(addr), len, false)?;
        let addr = self.place(addr, len, fixed)?;
        self.insert_vma(addr, len, access, kind, Some((backing, offset)));
        if let Some(vma) = self.vmas.get_mut(&addr) {
            vma.may_write = may_write;
            vma.file_size = size;
        }
        Ok(addr)
    }

    fn insert_vma(
        &mut self,
        addr: u64,
        len: u64,
        access: AccessType,
        kind: VmaKind,
        shared: Option<(SharedBacking, u64)>,
    ) {
        self.vmas.insert(
            addr,
            Vma {
                end: addr + len,
                access,
                kind,
                shared,
                host_mapped: false,
                growsdown: false,
                dontfork: false,
                may_write: MayWrite::Yes,
                bus_from: None,
                file_size: None,
                eof_tail: false,
                origin: None,
            },
        );
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

    /// ENOMEM if mapping `len` more bytes (replacing what lies at `fixed`,
    /// if given) would take the process past RLIMIT_AS, or past
    /// RLIMIT_DATA for private writable memory (`data`), as Linux's
    /// `may_expand_vm`.
    fn charge(&self, fixed: Option<u64>, len: u64, data: bool) -> Result<(), Errno> {
        let l = self.limits;
        if l.address_space == u64::MAX && (l.data == u64::MAX || !data) {
            return Ok(());
        }
        let is_data = |v: &Vma| v.shared.is_none() && v.access.write && v.kind != VmaKind::Stack;
        let (mut total, mut data_total) = (0u64, 0u64);
        for (&s, v) in self.vmas.iter() {
            let mut n = v.end - s;
            if let Some(at) = fixed {
                // Bytes the new mapping replaces do not count twice.
                let (lo, hi) = (s.max(at), v.end.min(at.saturating_add(len)));
                n -= hi.saturating_sub(lo);
            }
            total += n;
            if is_data(v) {
                data_total += n;
            }
        }
        if total.saturating_add(len) > l.address_space
            || data && data_total.saturating_add(len) > l.data
        {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// Whether `[addr, addr+len)` overlaps any mapping.
    pub fn is_mapped(&self, addr: u64, len: u64) -> bool {
        addr.checked_add(len)
            .is_some_and(|end| self.overlaps(addr, end))
    }

    /// Split the VMA and the PMA containing `addr` (if any) there.
    fn split_at(&mut self, addr: u64) {
        if let Some((start, vma)) = self.vma_at(addr) {
            if start != addr {
                let mut right = vma.clone();
                if let Some((_, offset)) = &mut right.shared {
                    *offset += addr - start;
                }
                if let Some((_, offset)) = &mut right.origin {
                    *offset += addr - start;
                }
                self.vmas.get_mut(&start).expect("just found").end = addr;
                self.vmas.insert(addr, right);
            }
        }
        self.split_pma_at(addr);
    }

    fn split_pma_at(&mut self, addr: u64) {
        if let Some((start, pma)) = self.pma_at(addr) {
            if start != addr {
                let mut right = pma.clone();
                right.offset += addr - start;
                self.pmas.get_mut(&start).expect("just found").end = addr;
                self.pmas.insert(addr, right);
            }
        }
    }

    /// Whether the host maps anything in `[addr, end)`.
    fn host_maps_any(&self, addr: u64, end: u64) -> bool {
        self.pmas
            .range(..end)
            .rev()
            .take_while(|(_, p)| p.end > addr)
            .any(|(_, p)| p.host.is_some())
            || self
                .vmas
                .range(..end)
                .rev()
                .take_while(|(_, v)| v.end > addr)
                .any(|(_, v)| v.host_mapped)
    }

    /// Remove the host's mappings of `[addr, end)` (the next touch faults).
    fn host_unmap(&mut self, addr: u64, end: u64) -> Result<(), Errno> {
        if !self.host_maps_any(addr, end) {
            return Ok(());
        }
        for (_, p) in self.pmas.range_mut(..end).rev() {
            if p.end <= addr {
                break;
            }
            p.host = None;
        }
        for (&s, v) in self.vmas.range_mut(..end).rev() {
            if v.end <= addr {
                break;
            }
            if v.host_mapped {
                // A shared VMA is mapped whole or not at all.
                debug_assert!(s >= addr && v.end <= end, "shared VMA split unmapped");
                v.host_mapped = false;
            }
        }
        self.space.unmap(addr, end - addr).map_err(|e| {
            tracing::error!("unmapping [{addr:#x}, {end:#x}) in the host: {e}");
            Errno::ENOMEM
        })
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
        let host = self.host_unmap(addr, end);
        let doomed: Vec<u64> = self.vmas.range(addr..end).map(|(&s, _)| s).collect();
        for start in doomed {
            self.vmas.remove(&start);
        }
        self.drop_pmas(addr, end);
        host
    }

    /// Forget the PMAs in `[addr, end)` (split at both ends already).
    fn drop_pmas(&mut self, addr: u64, end: u64) {
        let doomed: Vec<u64> = self.pmas.range(addr..end).map(|(&s, _)| s).collect();
        for start in doomed {
            let pma = self.pmas.remove(&start).expect("just listed");
            self.mf.release_private(pma.offset, pma.end - start);
        }
    }

    /// Change the protection of `[addr, addr+len)`, which must be mapped
    /// throughout (else ENOMEM, as Linux).
    pub fn protect(&mut self, addr: u64, len: u64, access: AccessType) -> Result<(), Errno> {
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        self.check_covered(addr, end)?;
        // The vvar page may never become writable or executable (Linux:
        // no VM_MAYWRITE or VM_MAYEXEC, so EACCES), nor may shared mappings
        // of read-only descriptors or write-sealed files become writable.
        if self.vmas.range(..end).any(|(_, v)| {
            v.end > addr
                && ((v.kind == VmaKind::Vvar && (access.write || access.execute))
                    || (access.write && !v.may_write.allowed()))
        }) {
            return Err(Errno::EACCES);
        }
        if access.write {
            // Memory becoming private and writable counts as data now.
            let newly_data: u64 = self
                .vmas
                .range(..end)
                .filter(|(_, v)| v.end > addr)
                .filter(|(_, v)| v.shared.is_none() && !v.access.write && v.kind != VmaKind::Stack)
                .map(|(&s, v)| v.end.min(end) - s.max(addr))
                .sum();
            if newly_data > 0 {
                self.charge(None, newly_data, true)?;
            }
        }
        self.split_at(addr);
        self.split_at(end);
        // The host mapping follows on the next fault.
        self.host_unmap(addr, end)?;
        for (_, vma) in self.vmas.range_mut(addr..end) {
            vma.access = access;
        }
        Ok(())
    }

    /// ENOMEM unless VMAs cover `[addr, end)` without holes.
    fn check_covered(&self, addr: u64, end: u64) -> Result<(), Errno> {
        self.check_access(addr, end, AccessType::NONE)
            .map_err(|_| Errno::ENOMEM)
    }

    /// madvise(MADV_DONTFORK / MADV_DOFORK) over `[addr, addr+len)`.
    pub fn set_dontfork(&mut self, addr: u64, len: u64, dontfork: bool) -> Result<(), Errno> {
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        self.check_covered(addr, end)?;
        self.split_at(addr);
        self.split_at(end);
        for (_, vma) in self.vmas.range_mut(addr..end) {
            vma.dontfork = dontfork;
        }
        Ok(())
    }

    /// Mark the mapping starting at `addr` as growing down (MAP_GROWSDOWN).
    pub fn set_growsdown(&mut self, addr: u64) {
        if let Some(vma) = self.vmas.get_mut(&addr) {
            vma.growsdown = true;
        }
    }

    /// This memory for a forked child, mapped into `space`. Private pages
    /// are shared copy-on-write: this side loses write access in the host
    /// now, the child maps pages as it touches them.
    pub fn fork(&mut self, space: Arc<dyn AddressSpace>) -> Result<MemoryManager, Errno> {
        let mut child = MemoryManager::new(space, self.mf.clone(), self.min_addr, self.max_addr);
        child.mmap_top = self.mmap_top;
        child.brk_start = self.brk_start;
        child.brk = self.brk;
        child.args = self.args;
        child.env = self.env;
        child.limits = self.limits;
        child.usertrap_next = self.usertrap_next;
        child.usertrap_read_next = self.usertrap_read_next;
        for (&start, vma) in self.vmas.iter() {
            if !vma.dontfork {
                child.vmas.insert(
                    start,
                    Vma {
                        host_mapped: false,
                        ..vma.clone()
                    },
                );
            }
        }
        // What the host maps now: (start, end, loses write access).
        let mut mapped: Vec<(u64, u64, bool)> = self
            .vmas
            .iter()
            .filter(|(_, v)| v.host_mapped)
            .map(|(&s, v)| (s, v.end, false))
            .collect();
        for (&start, pma) in self.pmas.iter_mut() {
            let dontfork = self
                .vmas
                .range(..=start)
                .next_back()
                .is_some_and(|(_, v)| v.dontfork);
            let host_write = pma.host.is_some_and(|a| a.write);
            if pma.host.is_some() {
                mapped.push((start, pma.end, host_write && !dontfork));
            }
            if dontfork {
                continue;
            }
            self.mf.share_private(pma.offset, pma.end - start);
            pma.cow = true;
            if host_write {
                pma.host = None;
            }
            child.pmas.insert(
                start,
                Pma {
                    host: None,
                    ..pma.clone()
                },
            );
        }
        // Unmap the writable ranges, merged where nothing else the host
        // maps lies between them, so one host call covers many.
        mapped.sort_unstable();
        let mut writable: Vec<(u64, u64)> = Vec::new();
        let mut extend = false;
        for (start, end, loses_write) in mapped {
            if !loses_write {
                extend = false;
                continue;
            }
            match writable.last_mut() {
                Some(run) if extend => run.1 = end,
                _ => writable.push((start, end)),
            }
            extend = true;
        }
        for (start, end) in writable {
            self.space.unmap(start, end - start).map_err(|e| {
                tracing::error!("unmapping forked memory [{start:#x}, {end:#x}): {e}");
                Errno::ENOMEM
            })?;
        }
        Ok(child)
    }

    /// The VMA covering exactly `[addr, end)` after splitting, or EFAULT if
    /// the range is not one mapping.
    fn single_vma(&mut self, addr: u64, end: u64) -> Result<Vma, Errno> {
        let (start, vma) = self.vma_at(addr).ok_or(Errno::EFAULT)?;
        if vma.end < end || start > addr {
            return Err(Errno::EFAULT);
        }
        self.split_at(addr);
        self.split_at(end);
        Ok(self.vmas[&addr].clone())
    }

    /// mremap(2): resize `[old, old+old_len)` (one mapping) to `new_len`,
    /// in place or, with `may_move`, elsewhere (or exactly at `fixed`).
    /// Moving moves the pages; nothing is copied.
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
                let data = vma.shared.is_none() && vma.access.write && vma.kind != VmaKind::Stack;
                self.charge(None, new_len - old_len, data)?;
                self.vmas.get_mut(&old).expect("just split").end = grow_end;
                return Ok(old);
            }
            if !may_move {
                return Err(Errno::ENOMEM);
            }
        }
        let dest = match fixed {
            Some(at) => {
                if at % PAGE_SIZE != 0 {
                    return Err(Errno::EINVAL);
                }
                let at_end = at.checked_add(new_len).ok_or(Errno::EINVAL)?;
                if at < old_end && old < at_end {
                    return Err(Errno::EINVAL);
                }
                self.check_range(at, new_len)?;
                self.unmap(at, new_len)?;
                at
            }
            None => self.find_free(new_len)?,
        };
        if new_len > old_len {
            let data = vma.shared.is_none() && vma.access.write && vma.kind != VmaKind::Stack;
            self.charge(fixed, new_len - old_len, data)?;
        }
        // Move the VMA and its pages; the part beyond the new length goes.
        if new_len < old_len {
            self.unmap(old + new_len, old_len - new_len)?;
        }
        let moved = old_len.min(new_len);
        self.host_unmap(old, old + moved)?;
        let mut vma = self.vmas.remove(&old).expect("just split");
        vma.end = dest + new_len;
        vma.bus_from = vma.bus_from.map(|b| b - old + dest);
        self.vmas.insert(dest, vma);
        let starts: Vec<u64> = self.pmas.range(old..old + moved).map(|(&s, _)| s).collect();
        for s in starts {
            let mut pma = self.pmas.remove(&s).expect("just listed");
            pma.end = pma.end - old + dest;
            self.pmas.insert(s - old + dest, pma);
        }
        Ok(dest)
    }

    /// madvise(MADV_DONTNEED/FREE): private pages read as zeros afterwards
    /// and their memory goes back to the host. Shared memory keeps its
    /// contents (the pages belong to every mapping).
    pub fn discard(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        self.check_covered(addr, end)?;
        self.split_pma_at(addr);
        self.split_pma_at(end);
        let pieces: Vec<(u64, u64, u64)> = self
            .pmas
            .range(addr..end)
            .map(|(&s, p)| (s, p.end, p.offset))
            .collect();
        for (s, e, offset) in pieces {
            let from_file = self.vma_at(s).is_some_and(|(_, v)| v.origin.is_some());
            if !from_file && self.mf.private_exclusive(offset, e - s) {
                // Ours alone: punch the pages out; the host mapping stays.
                self.mf.zero(offset, e - s);
            } else {
                // Others still use them, or they are a file's: let go, and
                // fault in fresh zeros or the file's pages again.
                self.host_unmap(s, e)?;
                let pma = self.pmas.remove(&s).expect("just listed");
                self.mf.release_private(pma.offset, e - s);
                self.back_from_origin(s, e);
            }
        }
        Ok(())
    }

    /// mincore(2): one byte per page, 1 where the page holds data.
    pub fn residency(&self, addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        self.walk(addr, len as usize, AccessType::NONE, |backing, _, n| {
            let pages = (n as u64).div_ceil(PAGE_SIZE) as usize;
            out.extend(match backing {
                Backing::File(off) => self.mf.resident(off, n as u64),
                // The host's page cache holds what matters: count it in.
                Backing::Host(..) => vec![1; pages],
                Backing::Zero => vec![0; pages],
            });
            Ok(())
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

    /// Serve an application page fault at `addr` (`access`, if the
    /// platform knows it): map, allocate or copy what the VMAs promise.
    /// Err is the signal and si_code the application gets instead.
    pub fn fault(&mut self, addr: u64, access: Option<AccessType>) -> Result<(), (i32, i32)> {
        if let Some((start, vma)) = self.vma_at(page_down(addr)) {
            if vma.bus_from.is_some_and(|b| addr >= b)
                || self.shared_eof(start).is_some_and(|eof| addr >= eof)
            {
                return Err((libc::SIGBUS, BUS_ADRERR));
            }
        }
        self.serve_fault(addr, access, false)
            .map_err(|code| (libc::SIGSEGV, code))
    }

    /// [`fault`](Self::fault); with `populate`, the host also allocates
    /// the pages it maps right away.
    fn serve_fault(
        &mut self,
        addr: u64,
        access: Option<AccessType>,
        populate: bool,
    ) -> Result<(), i32> {
        let page = page_down(addr);
        if self.vma_at(page).is_none() && !self.grow_down(page) {
            return Err(SEGV_MAPERR);
        }
        let (start, vma) = self.vma_at(page).expect("present or grown");
        if vma.access == AccessType::NONE || access.is_some_and(|a| !x86_allows(vma.access, a)) {
            return Err(SEGV_ACCERR);
        }
        if let Some((backing, offset)) = &vma.shared {
            let (backing, offset) = (backing.clone(), *offset);
            if vma.host_mapped {
                // Mapped by another thread since this one faulted: retry.
                return if access.is_some() {
                    Ok(())
                } else {
                    Err(SEGV_ACCERR)
                };
            }
            let (mut end, vma_access) = (vma.end, vma.access);
            if let Some(eof) = self.shared_eof(start) {
                if page >= eof {
                    return Err(SEGV_MAPERR);
                }
                if eof < end {
                    // Only the part within the file is mapped; the rest,
                    // a VMA of its own, is looked at again when touched.
                    self.split_at(eof);
                    self.vmas.get_mut(&eof).expect("just split").eof_tail = true;
                    end = eof;
                }
            }
            match &backing {
                SharedBacking::Memory(_) => {
                    self.host_map(start, end, offset, vma_access, populate)?
                }
                SharedBacking::Host(file) => self
                    .space
                    .map_file(
                        start,
                        end - start,
                        std::os::fd::AsFd::as_fd(&file.fd),
                        offset,
                        vma_access,
                        populate,
                    )
                    .map_err(|e| {
                        tracing::error!("mapping a host file at [{start:#x}, {end:#x}): {e}");
                        SEGV_MAPERR
                    })?,
            }
            self.vmas.get_mut(&start).expect("found").host_mapped = true;
            return Ok(());
        }
        let vma_access = vma.access;
        match self.pma_at(page) {
            None => {
                let s = self.back_fresh(page).map_err(|_| SEGV_MAPERR)?;
                self.host_map_pma(s, vma_access, populate)
            }
            Some((s, pma)) => {
                let wants_write = match access {
                    Some(a) => a.write,
                    // Unknown: a fault on a page the host already maps
                    // readable can only be a write.
                    None => pma.host.is_some(),
                };
                match pma.host {
                    // Another thread of the process mapped it between this
                    // thread's fault and now: the access goes through on
                    // a retry.
                    Some(h) if access.is_some_and(|a| x86_allows(h, a)) => Ok(()),
                    Some(h) if h == vma_access || !vma_access.write || !wants_write => {
                        Err(SEGV_ACCERR)
                    }
                    _ if pma.cow && wants_write && vma_access.write => {
                        let s = self.break_cow(page)?;
                        self.host_map_pma(s, vma_access, populate)
                    }
                    _ => self.host_map_pma(s, vma_access, populate),
                }
            }
        }
    }

    /// Back what the VMA's file origin covers of `[start, end)` (within
    /// one private VMA, with no PMAs) with the origin's pages, shared
    /// copy-on-write; the host maps them at the next fault.
    fn back_from_origin(&mut self, start: u64, end: u64) {
        let Some((vs, vma)) = self.vma_at(start) else {
            return;
        };
        let Some((origin, at)) = &vma.origin else {
            return;
        };
        let from = at + (start - vs);
        if from >= origin.len {
            return;
        }
        let n = (origin.len - from).min(end - start);
        let offset = origin.offset + from;
        self.mf.share_private(offset, n);
        self.pmas.insert(
            start,
            Pma {
                end: start + n,
                offset,
                cow: true,
                host: None,
            },
        );
    }

    /// Back the untouched private page at `page`, and the rest of its
    /// [`fresh_range`](Self::fresh_range), with new zeroed memory; returns
    /// the new PMA's start. The host does not map it yet.
    fn back_fresh(&mut self, page: u64) -> Result<u64, Errno> {
        let (s, e) = self.fresh_range(page);
        let offset = self.mf.allocate_private(e - s)?;
        self.pmas.insert(
            s,
            Pma {
                end: e,
                offset,
                cow: false,
                host: None,
            },
        );
        Ok(s)
    }

    /// The range a fault on fresh private memory at `page` fills: the chunk
    /// around it, within its VMA and between existing PMAs.
    fn fresh_range(&self, page: u64) -> (u64, u64) {
        let (vs, vma) = self.vma_at(page).expect("fault checked the VMA");
        let mut s = page_down_to(page, FAULT_CHUNK).max(vs);
        let mut e = page
            .checked_add(FAULT_CHUNK)
            .map_or(vma.end, |x| page_down_to(x, FAULT_CHUNK))
            .min(vma.end);
        if let Some((_, p)) = self.pmas.range(..page).next_back() {
            s = s.max(p.end);
        }
        if let Some((&ns, _)) = self.pmas.range(page..).next() {
            e = e.min(ns);
        }
        (s, e)
    }

    /// Map the PMA at `start` into the host, writable only if it is no
    /// longer shared copy-on-write.
    fn host_map_pma(
        &mut self,
        start: u64,
        vma_access: AccessType,
        populate: bool,
    ) -> Result<(), i32> {
        let pma = &self.pmas[&start];
        let mut access = vma_access;
        if pma.cow {
            access.write = false;
        }
        let (end, offset) = (pma.end, pma.offset);
        self.host_map(start, end, offset, access, populate)?;
        self.pmas.get_mut(&start).expect("just read").host = Some(access);
        Ok(())
    }

    fn host_map(
        &self,
        start: u64,
        end: u64,
        offset: u64,
        access: AccessType,
        populate: bool,
    ) -> Result<(), i32> {
        self.space
            .map_file(start, end - start, self.mf.fd(), offset, access, populate)
            .map_err(|e| {
                tracing::error!("mapping [{start:#x}, {end:#x}) into the host: {e}");
                SEGV_MAPERR
            })
    }

    /// Make the private page at `page` (inside a copy-on-write PMA) writable
    /// memory of this address space alone: copy the chunk around it unless
    /// nobody else uses those pages any more. Returns the start of the PMA
    /// now holding `page`, which the host no longer maps.
    fn break_cow(&mut self, page: u64) -> Result<u64, i32> {
        let (vs, vma) = self.vma_at(page).expect("PMAs lie in VMAs");
        let (ps, pma) = self.pma_at(page).expect("caller found it");
        // As upstream: executable pages are copied one at a time (the
        // loader and debuggers patch them sparsely), stacks a page either
        // side, everything else a chunk at a time.
        let (mut s, mut e) = if vma.access.execute {
            (page, page + PAGE_SIZE)
        } else if vma.growsdown || vma.kind == VmaKind::Stack {
            (page.saturating_sub(PAGE_SIZE), page + 2 * PAGE_SIZE)
        } else {
            let s = page_down_to(page, FAULT_CHUNK);
            (s, s.saturating_add(FAULT_CHUNK))
        };
        s = s.max(ps).max(vs);
        e = e.min(pma.end).min(vma.end);
        let was_mapped = pma.host.is_some();
        self.split_pma_at(s);
        self.split_pma_at(e);
        if was_mapped {
            self.host_unmap(s, e).map_err(|_| SEGV_MAPERR)?;
        }
        let pma = self.pmas.get_mut(&s).expect("just split");
        if !self.mf.private_exclusive(pma.offset, e - s) {
            let copy = self.mf.allocate_private(e - s).map_err(|_| SEGV_MAPERR)?;
            self.mf.copy_populated(pma.offset, copy, e - s);
            self.mf.release_private(pma.offset, e - s);
            pma.offset = copy;
        }
        pma.cow = false;
        Ok(s)
    }

    /// Extend a MAP_GROWSDOWN mapping above `page` down to it, as Linux
    /// does for a fault just below a stack.
    fn grow_down(&mut self, page: u64) -> bool {
        let Some((&start, vma)) = self.vmas.range(page..).next() else {
            return false;
        };
        if !vma.growsdown || vma.shared.is_some() {
            return false;
        }
        let prev_end = self
            .vmas
            .range(..page)
            .next_back()
            .map_or(self.min_addr, |(_, v)| v.end);
        if page < prev_end.saturating_add(STACK_GUARD_GAP)
            || page < self.min_addr
            || vma.end - page > self.limits.stack
        {
            return false;
        }
        let vma = self.vmas.remove(&start).expect("just found");
        self.vmas.insert(page, vma);
        true
    }

    /// Whether VMAs cover `[addr, addr+len)` without holes.
    pub fn is_covered(&self, addr: u64, len: u64) -> bool {
        addr.checked_add(len)
            .is_some_and(|end| self.check_covered(addr, end).is_ok())
    }

    /// Fault in every mapping (mlockall).
    pub fn populate_all(&mut self) {
        let ranges: Vec<(u64, u64)> = self.vmas.iter().map(|(&s, v)| (s, v.end - s)).collect();
        for (s, len) in ranges {
            let _ = self.populate(s, len);
        }
    }

    /// Back `[addr, addr+len)` with memory now, as MAP_POPULATE and mlock
    /// do (the host maps it on the first touch, one fault per chunk).
    pub fn populate(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        let start = page_down(addr);
        self.check_covered(start, end)?;
        let mut cur = start;
        while cur < end {
            let (vs, vma) = self.vma_at(cur).expect("covered");
            let (piece_end, offset) = match (&vma.shared, self.pma_at(cur)) {
                // The host populates host files when it maps them.
                (Some((SharedBacking::Host(_), _)), _) => {
                    cur = vma.end.min(page_up(end).unwrap_or(end));
                    continue;
                }
                (Some((SharedBacking::Memory(_), off)), _) => (vma.end, off + (cur - vs)),
                (None, Some((ps, p))) => (p.end, p.offset + (cur - ps)),
                (None, None) => {
                    let s = self.back_fresh(cur)?;
                    let p = &self.pmas[&s];
                    (p.end, p.offset + (cur - s))
                }
            };
            let piece_end = piece_end.min(page_up(end).unwrap_or(end));
            self.mf.commit(offset, piece_end - cur);
            cur = piece_end;
        }
        Ok(())
    }

    /// Walk `[addr, addr+len)`, calling `f(backing, buf_pos, chunk_len)`
    /// piece by piece; EFAULT if any byte is unmapped or lacks `need`.
    fn walk(
        &self,
        addr: u64,
        len: usize,
        need: AccessType,
        f: impl FnMut(Backing<'_>, usize, usize) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        let end = addr.checked_add(len as u64).ok_or(Errno::EFAULT)?;
        self.check_access(addr, end, need)?;
        self.walk_checked(addr, end, f)
    }

    /// [`walk`](Self::walk) over `[addr, end)`, which the caller has just
    /// passed through `check_access` (so every byte has a VMA).
    fn walk_checked(
        &self,
        addr: u64,
        end: u64,
        mut f: impl FnMut(Backing<'_>, usize, usize) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        let mut cur = addr;
        while cur < end {
            let (start, vma) = self.vma_at(cur).expect("checked");
            let mut chunk_end = vma.end.min(end);
            let backing = if let Some((shared, offset)) = &vma.shared {
                match shared {
                    SharedBacking::Memory(_) => Backing::File(offset + (cur - start)),
                    SharedBacking::Host(file) => Backing::Host(file, offset + (cur - start)),
                }
            } else if let Some((ps, p)) = self.pma_at(cur) {
                chunk_end = chunk_end.min(p.end);
                Backing::File(p.offset + (cur - ps))
            } else {
                if let Some((&ns, _)) = self.pmas.range(cur..).next() {
                    chunk_end = chunk_end.min(ns);
                }
                Backing::Zero
            };
            f(backing, (cur - addr) as usize, (chunk_end - cur) as usize)?;
            cur = chunk_end;
        }
        Ok(())
    }

    /// EFAULT unless VMAs allowing `need` cover `[addr, end)`.
    fn check_access(&self, addr: u64, end: u64, need: AccessType) -> Result<(), Errno> {
        let mut cur = addr;
        while cur < end {
            let (_, vma) = self.vma_at(cur).ok_or(Errno::EFAULT)?;
            if !vma.access.allows(need) {
                return Err(Errno::EFAULT);
            }
            cur = vma.end;
        }
        Ok(())
    }

    /// Make the private memory of `[addr, end)` this address space's own
    /// and backed (allocating and breaking copy-on-write as needed), so
    /// the Sentry may write it through the memory file.
    fn prepare_write(&mut self, addr: u64, end: u64) -> Result<(), Errno> {
        let mut cur = page_down(addr);
        while cur < end {
            let (_, vma) = self.vma_at(cur).ok_or(Errno::EFAULT)?;
            if vma.shared.is_some() {
                cur = vma.end;
                continue;
            }
            match self.pma_at(cur) {
                None => {
                    let s = self.back_fresh(cur)?;
                    cur = self.pmas[&s].end;
                }
                Some((_, p)) if p.cow => {
                    let s = self.break_cow(cur).map_err(|_| Errno::ENOMEM)?;
                    cur = self.pmas[&s].end;
                }
                Some((_, p)) => cur = p.end,
            }
        }
        Ok(())
    }

    /// The futex word at `addr` (4-byte aligned), which must be mapped
    /// with `need` (EFAULT otherwise), for the Sentry's atomic updates:
    /// private memory is made this address space's own first (so the word
    /// stays put); a host file's page is mapped into the Sentry for as
    /// long as the word is held.
    pub(crate) fn futex_word(&mut self, addr: u64, need: AccessType) -> Result<FutexWord, Errno> {
        if !addr.is_multiple_of(4) {
            return Err(Errno::EINVAL);
        }
        self.check_access(addr, addr + 4, need)?;
        if need.write || self.pma_at(addr).is_none() {
            self.prepare_write(addr, addr + 4)?;
        }
        let mut word = None;
        self.walk(addr, 4, need, |b, _, _| {
            word = Some(match b {
                Backing::File(off) => FutexWord::in_memory(&self.mf, off),
                Backing::Host(file, off) => FutexWord::in_host_file(file, off)?,
                Backing::Zero => return Err(Errno::EFAULT),
            });
            Ok(())
        })?;
        word.ok_or(Errno::EFAULT)
    }

    /// The key of the futex word at `addr` (4-byte aligned, mapped).
    pub fn futex_key(&self, addr: u64) -> Result<FutexKey, Errno> {
        if !addr.is_multiple_of(4) {
            return Err(Errno::EINVAL);
        }
        let (start, vma) = self.vma_at(addr).ok_or(Errno::EFAULT)?;
        Ok(match &vma.shared {
            Some((SharedBacking::Memory(_), offset)) => FutexKey::Shared {
                offset: offset + (addr - start),
            },
            Some((SharedBacking::Host(file), offset)) => FutexKey::HostFile {
                dev: file.dev,
                ino: file.ino,
                offset: offset + (addr - start),
            },
            None => FutexKey::Private { mm: self.id, addr },
        })
    }

    /// Run the host call `io` over the application ranges `ranges` (in
    /// order) as raw `iovec`s into the memory file, so the host reads or
    /// writes the bytes in place. With `write` the call fills the ranges
    /// (a read into application memory): they need write access and are
    /// made this address space's own first. The caller keeps `self` locked
    /// across `io`, so no mapping changes underneath; `io` must not block.
    ///
    /// None, and `io` not called, when a range is not wholly accessible or
    /// needs more than `IOV_MAX` pieces: the copying path then gives the
    /// exact partial-transfer and EFAULT semantics.
    pub fn with_host_iovecs<R>(
        &mut self,
        ranges: &[(u64, u64)],
        write: bool,
        io: impl FnOnce(&[libc::iovec]) -> R,
    ) -> Option<R> {
        /// Unbacked private pages read as zeros: a read-only zero buffer
        /// stands in for them.
        static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
        const IOV_MAX: usize = 1024;
        let need = if write {
            AccessType {
                read: false,
                write: true,
                execute: false,
            }
        } else {
            AccessType::READ
        };
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(ranges.len());
        for &(addr, len) in ranges {
            if len == 0 {
                continue;
            }
            let end = addr.checked_add(len)?;
            self.check_access(addr, end, need).ok()?;
            if write {
                self.prepare_write(addr, end).ok()?;
            }
            let mut too_many = false;
            self.walk_checked(addr, end, |b, _, n| {
                match b {
                    Backing::File(off) => iov.push(self.mf.iovec(off, n)),
                    // The Sentry does not map host files: copy instead.
                    Backing::Host(..) => return Err(Errno::EFAULT),
                    Backing::Zero => {
                        for at in (0..n).step_by(ZEROS.len()) {
                            iov.push(libc::iovec {
                                iov_base: ZEROS.as_ptr() as *mut libc::c_void,
                                iov_len: (n - at).min(ZEROS.len()),
                            });
                        }
                    }
                }
                Ok(())
            })
            .ok()?;
            too_many |= iov.len() > IOV_MAX;
            if too_many {
                return None;
            }
        }
        Some(io(&iov))
    }

    /// Copy application memory at `addr` into `buf` (needs read access).
    pub fn copy_in(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let end = addr.checked_add(buf.len() as u64).ok_or(Errno::EFAULT)?;
        if let Some(off) = self.recent_offset(addr, end, AccessType::READ, false) {
            self.mf.copy_in(off, buf);
            return Ok(());
        }
        self.walk(addr, buf.len(), AccessType::READ, |b, pos, n| {
            match b {
                Backing::File(off) => self.mf.copy_in(off, &mut buf[pos..pos + n]),
                Backing::Host(file, off) => file.read(off, &mut buf[pos..pos + n])?,
                Backing::Zero => buf[pos..pos + n].fill(0),
            }
            Ok(())
        })?;
        self.remember(addr);
        Ok(())
    }

    /// Where `[addr, end)` is in the memory file, if it lies in a private
    /// range a copy went through lately, nothing changed the maps since,
    /// and its VMA allows `need` (and, to `write`, it is not
    /// copy-on-write): what `walk` would find, without a map lookup.
    fn recent_offset(&self, addr: u64, end: u64, need: AccessType, write: bool) -> Option<u64> {
        let now = (self.vmas.generation, self.pmas.generation);
        self.recent.iter().find_map(|r| {
            let r = r.get();
            (r.generations == now
                && r.start <= addr
                && end <= r.end
                && r.access.allows(need)
                && !(write && r.cow))
                .then(|| r.offset + (addr - r.start))
        })
    }

    /// Keep the private range around `addr` (just copied through) for
    /// `recent_offset`.
    fn remember(&self, addr: u64) {
        let Some((vs, vma)) = self.vma_at(addr) else {
            return;
        };
        if vma.shared.is_some() {
            return;
        }
        let Some((ps, pma)) = self.pma_at(addr) else {
            return;
        };
        let start = vs.max(ps);
        let next = self.recent_next.get();
        self.recent[next].set(Recent {
            generations: (self.vmas.generation, self.pmas.generation),
            start,
            end: vma.end.min(pma.end),
            offset: pma.offset + (start - ps),
            access: vma.access,
            cow: pma.cow,
        });
        self.recent_next.set((next + 1) % RECENT);
    }

    /// Copy `buf` to application memory at `addr` (needs write access).
    pub fn copy_out(&mut self, addr: u64, buf: &[u8]) -> Result<(), Errno> {
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

    /// Map the syscall trampoline table at `[addr, addr+len)`, below the
    /// lowest address the application may map: read and execute only,
    /// private (a fork copies it), never writable by the application.
    pub(crate) fn map_usertrap(&mut self, addr: u64, len: u64) {
        let rx = AccessType {
            read: true,
            write: false,
            execute: true,
        };
        self.insert_vma(addr, len, rx, VmaKind::Usertrap, None);
        self.vmas.get_mut(&addr).expect("just inserted").may_write = MayWrite::No;
    }

    /// Replace `bytes` of the code at `addr` (within one page of a private
    /// mapping) so that every other thread sees either the old page or the
    /// new one, never a mix: the new bytes go into a fresh copy of the
    /// page, which then replaces the old one in the host in one `mmap`
    /// (as a copy-on-write break does). A thread running on the page
    /// meanwhile keeps running on the old copy until the swap.
    pub(crate) fn patch_code(&mut self, addr: u64, bytes: &[u8]) -> Result<(), Errno> {
        let end = addr.checked_add(bytes.len() as u64).ok_or(Errno::EFAULT)?;
        let page = page_down(addr);
        if bytes.is_empty() || end > page + PAGE_SIZE {
            return Err(Errno::EINVAL);
        }
        let (_, vma) = self.vma_at(addr).ok_or(Errno::EFAULT)?;
        if vma.shared.is_some() || vma.end < end {
            return Err(Errno::EINVAL);
        }
        let vma_access = vma.access;
        // Backed and this address space's own (a COW break copies it).
        self.prepare_write(addr, end)?;
        self.split_pma_at(page);
        self.split_pma_at(page + PAGE_SIZE);
        let pma = self.pmas.get(&page).ok_or(Errno::EFAULT)?;
        let (old, mapped) = (pma.offset, pma.host.is_some());
        let copy = self.mf.allocate_private(PAGE_SIZE)?;
        self.mf.copy_populated(old, copy, PAGE_SIZE);
        self.mf.copy_out(copy + (addr - page), bytes);
        self.pmas.get_mut(&page).expect("just found").offset = copy;
        if mapped {
            if let Err(code) = self.host_map_pma(page, vma_access, false) {
                tracing::error!("remapping a patched page: si_code {code}");
            }
        }
        self.mf.release_private(old, PAGE_SIZE);
        Ok(())
    }

    /// Copy application code at `addr` into `buf`: needs execute access
    /// (not read: code may be execute-only).
    pub(crate) fn copy_in_code(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let need = AccessType {
            read: false,
            write: false,
            execute: true,
        };
        self.walk(addr, buf.len(), need, |b, pos, n| {
            match b {
                Backing::File(off) => self.mf.copy_in(off, &mut buf[pos..pos + n]),
                Backing::Host(file, off) => file.read(off, &mut buf[pos..pos + n])?,
                Backing::Zero => buf[pos..pos + n].fill(0),
            }
            Ok(())
        })
    }

    /// Whether `[addr, addr+len)` lies in one private mapping that is
    /// executable and not writable: code the Sentry may patch.
    pub(crate) fn is_private_code(&self, addr: u64, len: u64) -> bool {
        self.vma_at(addr).is_some_and(|(_, v)| {
            v.shared.is_none() && v.access.execute && !v.access.write && v.end >= addr + len
        })
    }

    /// Copy `buf` to application memory regardless of its protection, as the
    /// loader writes read-only segments.
    pub fn copy_out_force(&mut self, addr: u64, buf: &[u8]) -> Result<(), Errno> {
        self.copy_out_as(addr, buf, AccessType::NONE)
    }

    fn copy_out_as(&mut self, addr: u64, buf: &[u8], need: AccessType) -> Result<(), Errno> {
        let end = addr.checked_add(buf.len() as u64).ok_or(Errno::EFAULT)?;
        if let Some(off) = self.recent_offset(addr, end, need, true) {
            self.mf.copy_out(off, buf);
            return Ok(());
        }
        // Check the whole range first so a fault copies nothing.
        self.check_access(addr, end, need)?;
        self.prepare_write(addr, end)?;
        self.walk_checked(addr, end, |b, pos, n| {
            match b {
                Backing::File(off) => self.mf.copy_out(off, &buf[pos..pos + n]),
                Backing::Host(file, off) => file.write(off, &buf[pos..pos + n])?,
                Backing::Zero => unreachable!("prepare_write backed every page"),
            }
            Ok(())
        })?;
        self.remember(addr);
        Ok(())
    }

    /// Read a NUL-terminated string of at most `max` bytes (without the NUL).
    pub fn copy_in_string(&self, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        // Most strings (paths) are short: copy a small piece at a time, on
        // the stack, never past the end of a page (where the mapping may
        // end), so a fault happens exactly where copying whole pages would.
        const PIECE: u64 = 256;
        let mut buf = [0u8; PIECE as usize];
        let mut out = Vec::new();
        let mut cur = addr;
        loop {
            let chunk = (PAGE_SIZE - cur % PAGE_SIZE).min(PIECE) as usize;
            let buf = &mut buf[..chunk];
            self.copy_in(cur, buf)?;
            if let Some(nul) = buf.iter().position(|&b| b == 0) {
                out.extend_from_slice(&buf[..nul]);
                return if out.len() > max {
                    Err(Errno::ENAMETOOLONG)
                } else {
                    Ok(out)
                };
            }
            out.extend_from_slice(buf);
            if out.len() > max {
                return Err(Errno::ENAMETOOLONG);
            }
            cur += chunk as u64;
        }
    }
}

/// The entry of `map` (ranges keyed by start, `end` giving each one's
/// end) whose range contains `addr`.
fn containing<V>(map: &BTreeMap<u64, V>, addr: u64, end: impl Fn(&V) -> u64) -> Option<(u64, &V)> {
    map.range(..=addr)
        .next_back()
        .filter(|(_, v)| end(v) > addr)
        .map(|(&s, v)| (s, v))
}

/// Whether a mapping with `access` lets `want` through on x86, which
/// cannot map pages writable or executable but unreadable.
fn x86_allows(mut access: AccessType, want: AccessType) -> bool {
    access.read |= access.write || access.execute;
    access.allows(want)
}

/// `addr` rounded down to a multiple of `unit` (a power of two).
fn page_down_to(addr: u64, unit: u64) -> u64 {
    addr & !(unit - 1)
}

impl MemoryManager {
    /// The mappings in the format of `/proc/[pid]/maps`. Offsets, devices
    /// and inodes of file mappings are not tracked yet and read as 0.
    pub fn proc_maps(&self) -> String {
        // A file mapping's part past the file's end is a VMA of its own
        // here but one mapping in Linux: show it as one line.
        let mut lines: Vec<(u64, u64, String, &str)> = Vec::new();
        for (&start, v) in self.vmas.iter() {
            let (perms, name) = v.perms_and_name();
            if let Some(last) = lines.last_mut() {
                if last.1 == start
                    && (v.bus_from == Some(start) || v.eof_tail)
                    && last.2 == perms
                    && last.3 == name
                {
                    last.1 = v.end;
                    continue;
                }
            }
            lines.push((start, v.end, perms, name));
        }
        let mut out = String::new();
        for (start, end, perms, name) in lines {
            let line = format!("{start:08x}-{end:08x} {perms} 00000000 00:00 0");
            if name.is_empty() {
                out.push_str(&line);
            } else {
                out.push_str(&format!("{line:<72} {name}"));
            }
            out.push('\n');
        }
        out
    }

    /// Bytes that hold data (Linux's RSS, as near as the Sentry can tell):
    /// private and shared anonymous memory whose memory-file pages hold
    /// data, and host-file mappings the host maps now, whole.
    pub fn resident_bytes(&self) -> u64 {
        let private: u64 = self
            .pmas
            .iter()
            .map(|(s, p)| self.mf.resident_bytes(p.offset, p.end - s))
            .sum();
        let shared: u64 = self
            .vmas
            .iter()
            .map(|(s, v)| match &v.shared {
                Some((SharedBacking::Memory(_), off)) => self.mf.resident_bytes(*off, v.end - s),
                Some((SharedBacking::Host(_), _)) if v.host_mapped => v.end - s,
                _ => 0,
            })
            .sum();
        private + shared
    }

    /// Total bytes mapped (VmSize).
    pub fn mapped_bytes(&self) -> u64 {
        self.vmas.iter().map(|(s, v)| v.end - s).sum()
    }

    /// The mappings, one line each, in the format of `/proc/self/maps`
    /// (without device and inode), for logs.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (start, v) in self.vmas.iter() {
            let (perms, name) = v.perms_and_name();
            out.push_str(&format!("{start:08x}-{:08x} {perms} {name}\n", v.end));
        }
        out
    }
}

impl Drop for MemoryManager {
    fn drop(&mut self) {
        for (&start, pma) in self.pmas.iter() {
            self.mf.release_private(pma.offset, pma.end - start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address space that maps nothing: the memory manager's own
    /// bookkeeping and its copies through the memory file are under test.
    struct NoSpace;

    impl AddressSpace for NoSpace {
        fn map_file(
            &self,
            _: u64,
            _: u64,
            _: std::os::fd::BorrowedFd<'_>,
            _: u64,
            _: AccessType,
            _: bool,
        ) -> Result<(), platform::PlatformError> {
            Ok(())
        }
        fn unmap(&self, _: u64, _: u64) -> Result<(), platform::PlatformError> {
            Ok(())
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    const RW: AccessType = AccessType {
        read: true,
        write: true,
        execute: false,
    };

    fn mm() -> MemoryManager {
        let mf = Arc::new(MemoryFile::new().expect("a memory file"));
        MemoryManager::new(Arc::new(NoSpace), mf, 0x10000, 1 << 46)
    }

    fn read(mm: &MemoryManager, addr: u64) -> Result<u64, Errno> {
        let mut b = [0u8; 8];
        mm.copy_in(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Copies through a range kept by `recent_offset` see every change
    /// of the maps since: a new mapping in its place, a protection
    /// change, and a fork's copy-on-write (the parent's next write must
    /// not reach the child).
    #[test]
    fn recent_ranges_follow_changes_to_the_maps() {
        let mut mm = mm();
        let a = mm
            .map_anonymous(0x100000, 2 * PAGE_SIZE, true, RW, VmaKind::Anonymous)
            .unwrap();
        mm.copy_out(a, &7u64.to_le_bytes()).unwrap();
        assert_eq!(read(&mm, a), Ok(7));
        assert!(mm.recent_offset(a, a + 8, AccessType::READ, true).is_some());

        // Replaced by fresh memory: zeros, not the old page.
        mm.unmap(a, 2 * PAGE_SIZE).unwrap();
        assert_eq!(read(&mm, a), Err(Errno::EFAULT));
        let b = mm
            .map_anonymous(a, 2 * PAGE_SIZE, true, RW, VmaKind::Anonymous)
            .unwrap();
        assert_eq!(b, a);
        assert_eq!(read(&mm, a), Ok(0));
        mm.copy_out(a, &8u64.to_le_bytes()).unwrap();

        // Read-only now: writes fault, reads still work.
        mm.protect(a, 2 * PAGE_SIZE, AccessType::READ).unwrap();
        assert_eq!(mm.copy_out(a, &9u64.to_le_bytes()), Err(Errno::EFAULT));
        assert_eq!(read(&mm, a), Ok(8));
        mm.protect(a, 2 * PAGE_SIZE, RW).unwrap();
        mm.copy_out(a, &9u64.to_le_bytes()).unwrap();
        assert_eq!(read(&mm, a), Ok(9));

        // After a fork each side writes its own copy.
        let child = mm.fork(Arc::new(NoSpace)).unwrap();
        mm.copy_out(a, &10u64.to_le_bytes()).unwrap();
        assert_eq!(read(&mm, a), Ok(10));
        assert_eq!(read(&child, a), Ok(9));
    }
}
