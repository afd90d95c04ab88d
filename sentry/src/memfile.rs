//! The memory file: one host memfd that holds all application memory.
//!
//! Address spaces map ranges of it; the Sentry maps the whole file once, so
//! copying to or from application memory is a plain memcpy through that
//! mapping (upstream's `pgalloc.MemoryFile`). Ranges are handed out page by
//! page and their pages are returned to the host (punched out) when freed.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

use abi::{Errno, PAGE_SIZE};

/// How much of the file may be in use at once. The file is sparse: only
/// pages the application touches cost host memory.
const FILE_SIZE: u64 = 64 << 30;

pub struct MemoryFile {
    fd: OwnedFd,
    /// The Sentry's mapping of the whole file.
    base: *mut u8,
    alloc: Mutex<Allocator>,
}

// SAFETY: `base` points at a MAP_SHARED mapping that lives as long as the
// MemoryFile and is never remapped; concurrent access to application memory
// through it is by design (the application shares it too), and copies go
// through `copy_in`/`copy_out`, which do not create references.
unsafe impl Send for MemoryFile {}
// SAFETY: as for Send; the allocator is behind a mutex.
unsafe impl Sync for MemoryFile {}

impl MemoryFile {
    /// Create the memfd and map it into the Sentry.
    pub fn new() -> Result<MemoryFile, Errno> {
        let errno = || Errno::from_io(&std::io::Error::last_os_error());
        // SAFETY: the name is a static C string; memfd_create returns a new
        // descriptor that we own.
        let raw = unsafe { libc::memfd_create(c"runsc-memory".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(errno());
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ftruncate on our own memfd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), FILE_SIZE as i64) } < 0 {
            return Err(errno());
        }
        // SAFETY: a new shared mapping of our own memfd at an address the
        // kernel picks; nothing else is mapped there.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                FILE_SIZE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(errno());
        }
        Ok(MemoryFile {
            fd,
            base: base.cast(),
            alloc: Mutex::new(Allocator::default()),
        })
    }

    /// The descriptor address spaces map.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reserve `len` bytes (page-aligned) of zeroed file; returns the offset.
    pub fn allocate(&self, len: u64) -> Result<u64, Errno> {
        debug_assert!(len > 0 && len.is_multiple_of(PAGE_SIZE));
        self.alloc
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allocate(len)
            .ok_or(Errno::ENOMEM)
    }

    /// Give back `[offset, offset+len)`: its pages go back to the host and
    /// read as zeros when reused.
    pub fn free(&self, offset: u64, len: u64) {
        // SAFETY: punching a hole in our own memfd; the range lies inside it.
        let ret = unsafe {
            libc::fallocate(
                self.fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as i64,
                len as i64,
            )
        };
        if ret < 0 {
            // The pages then stay allocated until the sandbox ends, but the
            // range must not be reused with stale contents.
            tracing::warn!("memory file: punching [{offset:#x}, +{len:#x}) failed; range retired");
            return;
        }
        self.alloc
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .free(offset, len);
    }

    fn check_range(offset: u64, len: usize) {
        assert!(
            offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= FILE_SIZE),
            "memory file access [{offset:#x}, +{len:#x}) out of bounds"
        );
    }

    /// Copy file bytes at `offset` into `dst`.
    pub fn copy_in(&self, offset: u64, dst: &mut [u8]) {
        Self::check_range(offset, dst.len());
        // SAFETY: the range lies inside our mapping (checked above); `dst`
        // is a distinct Rust buffer. The application may write the same
        // bytes concurrently; we copy whatever is there, as a kernel would.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.add(offset as usize),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }

    /// Copy `src` into the file at `offset`.
    pub fn copy_out(&self, offset: u64, src: &[u8]) {
        Self::check_range(offset, src.len());
        // SAFETY: as in `copy_in`, with the roles of the buffers swapped.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.add(offset as usize), src.len())
        }
    }
}

impl MemoryFile {
    /// Zero `[offset, offset+len)` (page-aligned) by returning its pages to
    /// the host.
    pub fn zero(&self, offset: u64, len: u64) {
        Self::check_range(offset, len as usize);
        // SAFETY: punching a hole in our own memfd inside its bounds.
        let ret = unsafe {
            libc::fallocate(
                self.fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as i64,
                len as i64,
            )
        };
        if ret < 0 {
            // Fall back to writing zeros so the contract (reads as zero) holds.
            // SAFETY: the range lies inside our mapping (checked above).
            unsafe { std::ptr::write_bytes(self.base.add(offset as usize), 0, len as usize) };
        }
    }

    /// One byte per page of `[offset, offset+len)`: 1 if it holds data
    /// (was touched and not discarded since).
    pub fn resident(&self, offset: u64, len: u64) -> Vec<u8> {
        Self::check_range(offset, len as usize);
        let mut out = vec![0u8; len.div_ceil(PAGE_SIZE) as usize];
        self.for_each_data(offset, len, |data, hole| {
            for page in (data - offset) / PAGE_SIZE..(hole - offset).div_ceil(PAGE_SIZE) {
                out[page as usize] = 1;
            }
        });
        out
    }

    /// Call `f(start, end)` for each run of data (not holes) in
    /// `[offset, offset+len)`.
    fn for_each_data(&self, offset: u64, len: u64, mut f: impl FnMut(u64, u64)) {
        let seek = |pos: u64, whence: i32| {
            // SAFETY: lseek on our own memfd; only its return value is used,
            // so concurrent seeks from other threads do not matter.
            let r = unsafe { libc::lseek(self.fd.as_raw_fd(), pos as i64, whence) };
            (r >= 0).then_some(r as u64)
        };
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let Some(data) = seek(pos, libc::SEEK_DATA).filter(|&d| d < end) else {
                break;
            };
            let hole = seek(data, libc::SEEK_HOLE).unwrap_or(end).min(end);
            f(data, hole);
            pos = hole;
        }
    }

    /// Copy `[src, src+len)` to `dst`, skipping holes (pages never touched),
    /// which stay holes in the copy.
    pub fn copy_populated(&self, src: u64, dst: u64, len: u64) {
        Self::check_range(src, len as usize);
        Self::check_range(dst, len as usize);
        self.for_each_data(src, len, |data, hole| {
            // SAFETY: both ranges lie inside our mapping (checked above) and
            // do not overlap (distinct allocations).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.base.add(data as usize),
                    self.base.add((dst + (data - src)) as usize),
                    (hole - data) as usize,
                )
            };
        });
    }

    /// The 32-bit word at `offset` (4-byte aligned), as an atomic shared
    /// with the application: futexes compare and update it.
    pub fn atomic_u32(&self, offset: u64) -> &std::sync::atomic::AtomicU32 {
        Self::check_range(offset, 4);
        assert!(offset.is_multiple_of(4), "unaligned atomic at {offset:#x}");
        // SAFETY: the word lies inside our mapping (checked), is aligned
        // (checked), and the mapping outlives `&self`; AtomicU32 has the
        // layout of u32 and every access to the word through it is atomic.
        unsafe { &*(self.base.add(offset as usize) as *const std::sync::atomic::AtomicU32) }
    }

    /// The 64-bit word at `offset` (8-byte aligned), as an atomic shared
    /// with the application (the vDSO parameter page).
    pub fn atomic_u64(&self, offset: u64) -> &std::sync::atomic::AtomicU64 {
        Self::check_range(offset, 8);
        assert!(offset.is_multiple_of(8), "unaligned atomic at {offset:#x}");
        // SAFETY: as for atomic_u32, with AtomicU64 having the layout of u64.
        unsafe { &*(self.base.add(offset as usize) as *const std::sync::atomic::AtomicU64) }
    }
}

impl Drop for MemoryFile {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`; no copies are in
        // flight because we hold the only reference.
        unsafe { libc::munmap(self.base.cast(), FILE_SIZE as usize) };
    }
}

/// First-fit over freed ranges, then a bump pointer.
#[derive(Default)]
struct Allocator {
    next: u64,
    /// Freed ranges, sorted by offset, never adjacent.
    free: Vec<(u64, u64)>,
}

impl Allocator {
    fn allocate(&mut self, len: u64) -> Option<u64> {
        if let Some(i) = self.free.iter().position(|&(_, l)| l >= len) {
            let (off, l) = self.free[i];
            if l == len {
                self.free.remove(i);
            } else {
                self.free[i] = (off + len, l - len);
            }
            return Some(off);
        }
        let off = self.next;
        let end = off.checked_add(len).filter(|&e| e <= FILE_SIZE)?;
        self.next = end;
        Some(off)
    }

    fn free(&mut self, offset: u64, len: u64) {
        let i = self.free.partition_point(|&(o, _)| o < offset);
        self.free.insert(i, (offset, len));
        // Merge with the next, then the previous neighbour.
        if i + 1 < self.free.len() && self.free[i].0 + self.free[i].1 == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == self.free[i].0 {
            self.free[i - 1].1 += self.free[i].1;
            self.free.remove(i);
        }
        // A free range at the top goes back to the bump pointer.
        if let Some(&(o, l)) = self.free.last() {
            if o + l == self.next {
                self.next = o;
                self.free.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_reuses_and_merges() {
        let mut a = Allocator::default();
        let x = a.allocate(4096).unwrap();
        let y = a.allocate(8192).unwrap();
        let z = a.allocate(4096).unwrap();
        assert_eq!((x, y, z), (0, 4096, 12288));
        a.free(x, 4096);
        a.free(y, 8192);
        assert_eq!(a.free, vec![(0, 12288)]);
        assert_eq!(a.allocate(8192), Some(0));
        // Free: [8192, 12288). Freeing z merges it with that range, and the
        // merged range at the top goes back to the bump pointer.
        a.free(z, 4096);
        assert!(a.free.is_empty());
        assert_eq!(a.next, 8192);
    }

    #[test]
    fn copies_keep_data_and_holes() {
        let mf = MemoryFile::new().unwrap();
        let src = mf.allocate(3 * 4096).unwrap();
        let dst = mf.allocate(3 * 4096).unwrap();
        mf.copy_out(src + 5, b"first");
        mf.copy_out(src + 2 * 4096 + 7, b"third");
        mf.copy_populated(src, dst, 3 * 4096);
        let mut b = [0u8; 5];
        mf.copy_in(dst + 5, &mut b);
        assert_eq!(&b, b"first");
        mf.copy_in(dst + 2 * 4096 + 7, &mut b);
        assert_eq!(&b, b"third");
        // The middle page was never touched and stays a hole in the copy.
        // SAFETY: lseek on the test's own memfd.
        let data = unsafe { libc::lseek(mf.fd.as_raw_fd(), (dst + 4096) as i64, libc::SEEK_DATA) };
        assert_eq!(data as u64, dst + 2 * 4096);
    }

    #[test]
    fn freed_memory_reads_as_zero() {
        let mf = MemoryFile::new().unwrap();
        let off = mf.allocate(4096).unwrap();
        mf.copy_out(off + 10, b"hello");
        let mut buf = [0u8; 5];
        mf.copy_in(off + 10, &mut buf);
        assert_eq!(&buf, b"hello");
        mf.free(off, 4096);
        let again = mf.allocate(4096).unwrap();
        assert_eq!(again, off);
        mf.copy_in(off + 10, &mut buf);
        assert_eq!(buf, [0; 5]);
    }
}
