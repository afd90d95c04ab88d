//! The memory file: one host memfd that holds all application memory.
//!
//! Address spaces map ranges of it; the Sentry maps the whole file once, so
//! copying to or from application memory is a plain memcpy through that
//! mapping (upstream's `pgalloc.MemoryFile`). Ranges are handed out page by
//! page and their pages are returned to the host (punched out) when freed,
//! except for a few recently freed small ranges, which are zeroed and
//! kept for the next allocations (see [`Recycled`]).

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use abi::{Errno, PAGE_SIZE};

/// How much of the file may be in use at once. The file is sparse: only
/// pages the application touches cost host memory.
const FILE_SIZE: u64 = 64 << 30;

/// The most freed memory kept for reuse instead of being punched out, the
/// largest single range kept, and how long a range may wait for reuse
/// (checked whenever memory is allocated or freed).
const RECYCLE_MAX: u64 = 16 << 20;
const RECYCLE_RANGE_MAX: u64 = 2 << 20;
const RECYCLE_AGE: Duration = Duration::from_secs(1);

pub struct MemoryFile {
    fd: OwnedFd,
    /// The Sentry's mapping of the whole file.
    base: *mut u8,
    alloc: Mutex<Allocator>,
    recycled: Mutex<Recycled>,
    /// How many private mappings (across all address spaces) use each page
    /// of private memory: fork shares pages copy-on-write instead of
    /// copying them, and a page goes back to the host when its count
    /// reaches zero (upstream's `mm.privateRefs`).
    private_refs: Mutex<RefCounts>,
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
            recycled: Mutex::new(Recycled::default()),
            private_refs: Mutex::new(RefCounts::default()),
        })
    }

    /// The descriptor address spaces map.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reserve `len` bytes (page-aligned) of zeroed file; returns the offset.
    pub fn allocate(&self, len: u64) -> Result<u64, Errno> {
        debug_assert!(len > 0 && len.is_multiple_of(PAGE_SIZE));
        let (reused, expired) = {
            let mut r = self.recycled();
            let expired = r.expire(Instant::now());
            (r.take(len), expired)
        };
        self.punch_and_free(expired);
        if let Some(offset) = reused {
            return Ok(offset);
        }
        self.allocator().allocate(len).ok_or(Errno::ENOMEM)
    }

    /// Give back `[offset, offset+len)`: it reads as zeros when reused.
    /// A small range is zeroed and kept for the next allocations (its pages
    /// stay with the host, so faulting them in again allocates nothing
    /// there); anything else, and whatever has waited too long or does
    /// not fit, goes back to the host.
    pub fn free(&self, offset: u64, len: u64) {
        let keep = len <= RECYCLE_RANGE_MAX && self.zero_in_place(offset, len);
        let mut gone = {
            let mut r = self.recycled();
            let now = Instant::now();
            if keep {
                r.put(offset, len, now);
            }
            let mut gone = r.expire(now);
            gone.extend(r.evict());
            gone
        };
        if !keep {
            gone.push((offset, len));
        }
        self.punch_and_free(gone);
    }

    /// Punch out each range and hand it back to the allocator.
    fn punch_and_free(&self, ranges: Vec<(u64, u64)>) {
        for (offset, len) in ranges {
            if self.punch(offset, len) {
                self.allocator().free(offset, len);
            } else {
                // The pages then stay allocated until the sandbox ends, but
                // the range must not be reused with stale contents.
                tracing::warn!(
                    "memory file: punching [{offset:#x}, +{len:#x}) failed; range retired"
                );
            }
        }
    }

    /// Write zeros over the pages of `[offset, offset+len)` that hold data
    /// (holes are zeros already and stay holes). pwritev from one zero
    /// page: the Sentry's mapping of those pages is not touched, so it
    /// takes no page faults. Whether it all went.
    fn zero_in_place(&self, offset: u64, len: u64) -> bool {
        static ZERO_PAGE: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];
        const IOVS: usize = 256;
        let iov = libc::iovec {
            iov_base: ZERO_PAGE.as_ptr().cast_mut().cast(),
            iov_len: PAGE_SIZE as usize,
        };
        let iovs = [iov; IOVS];
        let mut ok = true;
        self.for_each_data(offset, len, |mut pos, end| {
            while ok && pos < end {
                let n = ((end - pos) / PAGE_SIZE).min(IOVS as u64) as usize;
                // SAFETY: pwritev on our own memfd from a static buffer the
                // kernel only reads (pwritev never writes its iovecs).
                let r = unsafe {
                    libc::pwritev(self.fd.as_raw_fd(), iovs.as_ptr(), n as i32, pos as i64)
                };
                if r <= 0 || !(r as u64).is_multiple_of(PAGE_SIZE) {
                    ok = false;
                } else {
                    pos += r as u64;
                }
            }
        });
        ok
    }

    /// Return the pages of `[offset, offset+len)` to the host; whether the
    /// kernel did.
    fn punch(&self, offset: u64, len: u64) -> bool {
        // SAFETY: punching a hole in our own memfd; the range lies inside it.
        let ret = unsafe {
            libc::fallocate(
                self.fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as i64,
                len as i64,
            )
        };
        ret == 0
    }

    fn allocator(&self) -> std::sync::MutexGuard<'_, Allocator> {
        self.alloc.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn recycled(&self) -> std::sync::MutexGuard<'_, Recycled> {
        self.recycled.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserve `len` bytes of zeroed private memory, referenced once.
    pub fn allocate_private(&self, len: u64) -> Result<u64, Errno> {
        let offset = self.allocate(len)?;
        self.refs().add(offset, offset + len, 1);
        Ok(offset)
    }

    /// One more private mapping uses `[offset, offset+len)`.
    pub fn share_private(&self, offset: u64, len: u64) {
        self.refs().add(offset, offset + len, 1);
    }

    /// One private mapping less uses `[offset, offset+len)`; pages nobody
    /// uses any more are freed.
    pub fn release_private(&self, offset: u64, len: u64) {
        let unused = self.refs().add(offset, offset + len, -1);
        for (start, end) in unused {
            self.free(start, end - start);
        }
    }

    /// Whether exactly one private mapping uses every page of the range,
    /// so it may be written without copying.
    pub fn private_exclusive(&self, offset: u64, len: u64) -> bool {
        self.refs().all_one(offset, offset + len)
    }

    fn refs(&self) -> std::sync::MutexGuard<'_, RefCounts> {
        self.private_refs.lock().unwrap_or_else(|e| e.into_inner())
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

    /// The Sentry's view of `[offset, offset+len)` as a raw `iovec`, for a
    /// host call that reads or writes the bytes in place.
    pub fn iovec(&self, offset: u64, len: usize) -> libc::iovec {
        Self::check_range(offset, len);
        libc::iovec {
            iov_base: self.base.wrapping_add(offset as usize).cast(),
            iov_len: len,
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
        if !self.punch(offset, len) {
            // Fall back to writing zeros so the contract (reads as zero) holds.
            // SAFETY: the range lies inside our mapping (checked above).
            unsafe { std::ptr::write_bytes(self.base.add(offset as usize), 0, len as usize) };
        }
    }

    /// Allocate host pages for `[offset, offset+len)` (page-aligned) now,
    /// contents unchanged (MAP_POPULATE, mlock).
    pub fn commit(&self, offset: u64, len: u64) {
        Self::check_range(offset, len as usize);
        const MADV_POPULATE_WRITE: i32 = 23;
        // SAFETY: the range lies inside our mapping (checked above);
        // populating pages changes no byte.
        let ret = unsafe {
            libc::madvise(
                self.base.add(offset as usize).cast(),
                len as usize,
                MADV_POPULATE_WRITE,
            )
        };
        if ret == 0 {
            return;
        }
        // Kernels before 5.14: an atomic no-op write per page allocates it
        // without racing the application's own writes.
        for page in (offset..offset + len).step_by(PAGE_SIZE as usize) {
            // SAFETY: inside our mapping (checked), page-aligned so aligned
            // for AtomicU64, and only ever accessed atomically here.
            let word =
                unsafe { &*(self.base.add(page as usize) as *const std::sync::atomic::AtomicU64) };
            word.fetch_or(0, std::sync::atomic::Ordering::Relaxed);
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

    /// How many bytes of `[offset, offset+len)` hold data (not holes).
    pub fn resident_bytes(&self, offset: u64, len: u64) -> u64 {
        Self::check_range(offset, len as usize);
        let mut n = 0;
        self.for_each_data(offset, len, |data, hole| n += hole - data);
        n
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

/// Freed ranges kept, zeroed, with the host's pages still behind them:
/// allocating one again spares the host freeing and allocating, zeroing
/// and accounting each page. That costs most when, as here, the Sentry
/// frees on one CPU and the application faults the pages in on another:
/// the kernel's per-CPU page lists then never serve the fault (mmap_touch
/// took a third longer). Bounded in bytes, range size and age
/// (`RECYCLE_*`); newest first, for warm caches.
#[derive(Default)]
struct Recycled {
    /// (offset, len, when freed), oldest first.
    ranges: VecDeque<(u64, u64, Instant)>,
    bytes: u64,
}

impl Recycled {
    fn put(&mut self, offset: u64, len: u64, now: Instant) {
        self.ranges.push_back((offset, len, now));
        self.bytes += len;
    }

    /// A kept range of `len` bytes: the newest of exactly that length
    /// (memory tends to be freed in the pieces it is allocated in again),
    /// else cut from the newest that is longer (its tail stays kept).
    fn take(&mut self, len: u64) -> Option<u64> {
        let i = (self.ranges.iter().rposition(|&(_, l, _)| l == len))
            .or_else(|| self.ranges.iter().rposition(|&(_, l, _)| l > len))?;
        let (offset, l, at) = self.ranges[i];
        if l == len {
            self.ranges.remove(i);
        } else {
            self.ranges[i] = (offset + len, l - len, at);
        }
        self.bytes -= len;
        Some(offset)
    }

    /// The oldest ranges beyond the byte bound, no longer kept.
    fn evict(&mut self) -> Vec<(u64, u64)> {
        self.drop_oldest_while(|bytes, _| bytes > RECYCLE_MAX)
    }

    /// The ranges that waited longer than `RECYCLE_AGE`, no longer kept.
    fn expire(&mut self, now: Instant) -> Vec<(u64, u64)> {
        self.drop_oldest_while(|_, freed| now.duration_since(freed) >= RECYCLE_AGE)
    }

    /// Stop keeping the oldest range while `let_go(bytes kept, when it was
    /// freed)` says so; the ranges let go.
    fn drop_oldest_while(&mut self, let_go: impl Fn(u64, Instant) -> bool) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        while let Some(&(offset, len, freed)) = self.ranges.front() {
            if !let_go(self.bytes, freed) {
                break;
            }
            self.ranges.pop_front();
            self.bytes -= len;
            out.push((offset, len));
        }
        out
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

/// Reference counts over file ranges: non-overlapping segments
/// `start -> (end, count)`, neighbours with equal counts merged.
#[derive(Default)]
struct RefCounts {
    segments: std::collections::BTreeMap<u64, (u64, u32)>,
}

impl RefCounts {
    /// Make a segment boundary at `at`.
    fn split(&mut self, at: u64) {
        if let Some((&start, &(end, count))) = self.segments.range(..at).next_back() {
            if end > at {
                self.segments.insert(start, (at, count));
                self.segments.insert(at, (end, count));
            }
        }
    }

    /// Add `delta` to the count of every page in `[start, end)` (pages with
    /// no segment count as 0). Returns the ranges whose count fell to 0.
    fn add(&mut self, start: u64, end: u64, delta: i32) -> Vec<(u64, u64)> {
        self.split(start);
        self.split(end);
        let mut zeroed: Vec<(u64, u64)> = Vec::new();
        let mut cur = start;
        let keys: Vec<(u64, u64, u32)> = self
            .segments
            .range(start..end)
            .map(|(&s, &(e, c))| (s, e, c))
            .collect();
        let mut new = Vec::new();
        for (s, e, c) in keys {
            if s > cur && delta > 0 {
                new.push((cur, s, delta as u32));
            }
            let count = c.checked_add_signed(delta).unwrap_or_else(|| {
                tracing::error!("private memory [{s:#x}, {e:#x}) released more often than used");
                0
            });
            if count == 0 {
                self.segments.remove(&s);
                match zeroed.last_mut() {
                    Some(last) if last.1 == s => last.1 = e,
                    _ => zeroed.push((s, e)),
                }
            } else {
                self.segments.insert(s, (e, count));
            }
            cur = e;
        }
        if cur < end && delta > 0 {
            new.push((cur, end, delta as u32));
        }
        for (s, e, c) in new {
            self.segments.insert(s, (e, c));
        }
        self.merge_around(start, end);
        zeroed
    }

    /// Merge equal-count neighbours in and at the edges of `[start, end)`.
    fn merge_around(&mut self, start: u64, end: u64) {
        let first = self
            .segments
            .range(..start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        let keys: Vec<u64> = self.segments.range(first..=end).map(|(&s, _)| s).collect();
        let mut prev: Option<u64> = None;
        for k in keys {
            let (e, c) = self.segments[&k];
            if let Some(p) = prev {
                let (pe, pc) = self.segments[&p];
                if pe == k && pc == c {
                    self.segments.insert(p, (e, c));
                    self.segments.remove(&k);
                    continue;
                }
            }
            prev = Some(k);
        }
    }

    /// Whether every page of `[start, end)` has count exactly 1.
    fn all_one(&self, start: u64, end: u64) -> bool {
        let mut cur = start;
        if let Some((_, &(e, c))) = self.segments.range(..=start).next_back() {
            if e > start {
                if c != 1 {
                    return false;
                }
                cur = e;
            }
        }
        for (&s, &(e, c)) in self.segments.range(start + 1..end) {
            if s != cur || c != 1 {
                return false;
            }
            cur = e;
        }
        cur >= end
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
    fn ref_counts_split_merge_and_free() {
        let mut r = RefCounts::default();
        assert!(r.add(0, 0x4000, 1).is_empty());
        assert!(r.all_one(0, 0x4000));
        // A fork shares the middle two pages.
        r.add(0x1000, 0x3000, 1);
        assert!(!r.all_one(0, 0x4000));
        assert!(r.all_one(0, 0x1000) && r.all_one(0x3000, 0x4000));
        // One side lets go of the whole range: the shared pages stay.
        assert_eq!(r.add(0, 0x4000, -1), vec![(0, 0x1000), (0x3000, 0x4000)]);
        assert!(r.all_one(0x1000, 0x3000));
        assert_eq!(r.segments.len(), 1);
        assert_eq!(r.add(0x1000, 0x3000, -1), vec![(0x1000, 0x3000)]);
        assert!(r.segments.is_empty());
        assert!(!r.all_one(0, 0x1000));
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

    /// Whether the page at `offset` holds data (not a hole).
    fn has_data(mf: &MemoryFile, offset: u64) -> bool {
        // SAFETY: lseek on the test's own memfd.
        let data = unsafe { libc::lseek(mf.fd.as_raw_fd(), offset as i64, libc::SEEK_DATA) };
        data as u64 == offset
    }

    #[test]
    fn kept_memory_is_zeroed_and_reused_in_its_pieces() {
        let mf = MemoryFile::new().unwrap();
        let two = mf.allocate(2 * 4096).unwrap();
        let one = mf.allocate(4096).unwrap();
        mf.copy_out(two + 100, b"secret");
        mf.copy_out(one + 200, b"secret");
        mf.free(two, 2 * 4096);
        mf.free(one, 4096);
        // The exact fit, although the older range is long enough too.
        assert_eq!(mf.allocate(4096).unwrap(), one);
        assert_eq!(mf.allocate(2 * 4096).unwrap(), two);
        let mut b = [0xffu8; 6];
        mf.copy_in(one + 200, &mut b);
        assert_eq!(b, [0; 6]);
        mf.copy_in(two + 100, &mut b);
        assert_eq!(b, [0; 6]);
        // Zeroing kept the host's page and wrote nothing into the hole.
        assert!(has_data(&mf, two));
        assert!(!has_data(&mf, two + 4096));
        // A longer kept range is cut: its tail stays kept.
        mf.free(two, 2 * 4096);
        assert_eq!(mf.allocate(4096).unwrap(), two);
        assert_eq!(mf.allocate(4096).unwrap(), two + 4096);
    }

    #[test]
    fn memory_beyond_the_bounds_goes_back_to_the_host() {
        let mf = MemoryFile::new().unwrap();
        let chunks: Vec<u64> = (0..RECYCLE_MAX / RECYCLE_RANGE_MAX + 1)
            .map(|_| mf.allocate(RECYCLE_RANGE_MAX).unwrap())
            .collect();
        let big = mf.allocate(2 * RECYCLE_RANGE_MAX).unwrap();
        for &c in chunks.iter().chain([&big]) {
            mf.copy_out(c, b"x");
        }
        for &c in &chunks {
            mf.free(c, RECYCLE_RANGE_MAX);
        }
        // One chunk too many: the oldest went back to the host.
        assert!(!has_data(&mf, chunks[0]));
        assert!(chunks[1..].iter().all(|&c| has_data(&mf, c)));
        assert_eq!(mf.recycled().bytes, RECYCLE_MAX);
        // Too long to keep at all.
        mf.free(big, 2 * RECYCLE_RANGE_MAX);
        assert!(!has_data(&mf, big));
        // And ranges that waited too long go when memory is next used.
        let later = Instant::now() + RECYCLE_AGE;
        let expired = mf.recycled().expire(later);
        assert_eq!(expired.len(), chunks.len() - 1);
        assert_eq!(mf.recycled().bytes, 0);
    }
}
