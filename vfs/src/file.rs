//! File descriptions: what a descriptor number refers to.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use abi::{Errno, Stat};

use crate::inode::{dirent_type, DirEntry, FileOps};
use crate::mount::Location;
use crate::notify;
use crate::Result;

/// Status flags `F_SETFL` may change.
const SETFL_MASK: i32 =
    libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_DIRECT | libc::O_NOATIME;

/// An open file: the node it was opened from (if any), the opened data,
/// the status flags and the position. Shared by dup'ed descriptors and
/// across fork, as Linux's `struct file`.
pub struct FileDescription {
    location: Option<Location>,
    ops: Arc<dyn FileOps>,
    flags: AtomicI32,
    pos: Mutex<u64>,
    /// The directory listing `getdents64` walks, taken at position 0.
    listing: Mutex<Option<Vec<DirEntry>>>,
    /// How `/proc/self/fd` names a file that has no path (`pipe:[7]`).
    anon_name: String,
    /// Some OFD or flock lock was taken through this description: release
    /// them when it goes.
    locked: AtomicBool,
    /// Who O_ASYNC signals, and with which signal.
    async_owner: Mutex<AsyncOwner>,
}

/// Who gets a description's O_ASYNC signal (fcntl F_SETOWN, F_SETOWN_EX)
/// and which signal it is (F_SETSIG; 0 means SIGIO).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AsyncOwner {
    /// F_OWNER_TID (0), F_OWNER_PID (1) or F_OWNER_PGRP (2).
    pub kind: i32,
    /// 0: nobody.
    pub id: i32,
    pub sig: i32,
}

impl Drop for FileDescription {
    fn drop(&mut self) {
        if self.locked.load(Ordering::Relaxed) {
            crate::lock::table().release_all(self.lock_owner());
        }
        if let Some(loc) = self.location.as_ref().filter(|_| !self.is_path_only()) {
            let closed = if self.writable() {
                notify::IN_CLOSE_WRITE
            } else {
                notify::IN_CLOSE_NOWRITE
            };
            notify::file_event(loc, closed);
        }
    }
}

impl FileDescription {
    /// A file opened by path.
    pub fn new(location: Location, ops: Arc<dyn FileOps>, flags: i32) -> Arc<FileDescription> {
        Arc::new(FileDescription {
            location: Some(location),
            ops,
            flags: AtomicI32::new(
                flags
                    & !(libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_TRUNC
                        | libc::O_CLOEXEC
                        | libc::O_NOCTTY),
            ),
            pos: Mutex::new(0),
            listing: Mutex::new(None),
            anon_name: String::new(),
            locked: AtomicBool::new(false),
            async_owner: Mutex::default(),
        })
    }

    /// A file with no path (pipes, eventfds, host descriptors).
    pub fn anonymous(name: &str, ops: Arc<dyn FileOps>, flags: i32) -> Arc<FileDescription> {
        Arc::new(FileDescription {
            location: None,
            ops,
            flags: AtomicI32::new(flags & !libc::O_CLOEXEC),
            pos: Mutex::new(0),
            listing: Mutex::new(None),
            anon_name: name.to_string(),
            locked: AtomicBool::new(false),
            async_owner: Mutex::default(),
        })
    }

    /// Who owns OFD and flock locks taken through this description; marks
    /// the description so they are released when it goes.
    pub fn lock_owner(&self) -> crate::lock::Owner {
        self.locked.store(true, Ordering::Relaxed);
        crate::lock::Owner::Description(self as *const FileDescription as usize)
    }

    /// The lock table's name for the file: its node's (device, inode).
    pub fn lock_key(&self) -> Result<crate::lock::FileKey> {
        let st = self.stat()?;
        Ok((st.dev, st.ino))
    }

    pub fn async_owner(&self) -> AsyncOwner {
        *self.async_owner.lock().unwrap()
    }

    pub fn set_async_owner(&self, owner: AsyncOwner) {
        *self.async_owner.lock().unwrap() = owner;
    }

    pub fn location(&self) -> Option<&Location> {
        self.location.as_ref()
    }

    pub fn ops(&self) -> &Arc<dyn FileOps> {
        &self.ops
    }

    pub fn anon_name(&self) -> &str {
        &self.anon_name
    }

    /// Access mode and status flags (what `F_GETFL` reports).
    pub fn flags(&self) -> i32 {
        self.flags.load(Ordering::Relaxed)
    }

    /// `F_SETFL`: only the changeable status flags move.
    pub fn set_status_flags(&self, flags: i32) {
        let old = self.flags();
        self.flags.store(
            (old & !SETFL_MASK) | (flags & SETFL_MASK),
            Ordering::Relaxed,
        );
    }

    pub fn is_path_only(&self) -> bool {
        self.flags() & libc::O_PATH != 0
    }

    pub fn readable(&self) -> bool {
        !self.is_path_only() && self.flags() & libc::O_ACCMODE != libc::O_WRONLY
    }

    pub fn writable(&self) -> bool {
        !self.is_path_only() && self.flags() & libc::O_ACCMODE != libc::O_RDONLY
    }

    pub fn stat(&self) -> Result<Stat> {
        match &self.location {
            Some(loc) => loc.inode().stat(),
            None => self.ops.stat(),
        }
    }

    pub fn file_type(&self) -> u32 {
        match &self.location {
            Some(loc) => loc.dentry.file_type().unwrap_or(0),
            None => self.ops.stat().map_or(0, |s| s.mode & crate::S_IFMT),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.file_type() == crate::S_IFDIR
    }

    pub fn is_regular(&self) -> bool {
        self.file_type() == crate::S_IFREG
    }

    fn read_inner(&self, buf: &mut [u8]) -> Result<usize> {
        if !self.readable() {
            return Err(Errno::EBADF);
        }
        if !self.ops.seekable() {
            return self.ops.read(buf, 0);
        }
        let mut pos = self.pos.lock().unwrap();
        let n = self.ops.read(buf, *pos)?;
        *pos += n as u64;
        Ok(n)
    }

    fn pread_inner(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        if !self.readable() {
            return Err(Errno::EBADF);
        }
        if !self.ops.seekable() {
            return Err(Errno::ESPIPE);
        }
        self.ops.read(buf, offset)
    }

    fn write_inner(&self, buf: &[u8]) -> Result<usize> {
        if !self.writable() {
            return Err(Errno::EBADF);
        }
        if !self.ops.seekable() {
            return self.ops.write(buf, 0);
        }
        let mut pos = self.pos.lock().unwrap();
        if self.flags() & libc::O_APPEND != 0 {
            let (n, end) = self.ops.append(buf)?;
            *pos = end;
            return Ok(n);
        }
        let n = self.ops.write(buf, *pos)?;
        *pos += n as u64;
        Ok(n)
    }

    fn pwrite_inner(&self, buf: &[u8], offset: u64) -> Result<usize> {
        if !self.writable() {
            return Err(Errno::EBADF);
        }
        if !self.ops.seekable() {
            return Err(Errno::ESPIPE);
        }
        if self.flags() & libc::O_APPEND != 0 {
            return self.ops.append(buf).map(|(n, _)| n);
        }
        self.ops.write(buf, offset)
    }

    /// # Safety
    /// As [`IovIo::read_iov`](crate::inode::IovIo::read_iov).
    unsafe fn read_iov_inner(
        &self,
        iov: &[libc::iovec],
        offset: Option<u64>,
    ) -> Option<Result<usize>> {
        let io = self.ops.iov_io()?;
        if !self.readable() {
            return Some(Err(Errno::EBADF));
        }
        let seekable = self.ops.seekable();
        Some(match offset {
            Some(_) if !seekable => Err(Errno::ESPIPE),
            // SAFETY: the caller's contract.
            Some(o) => unsafe { io.read_iov(iov, o) },
            // SAFETY: the caller's contract.
            None if !seekable => unsafe { io.read_iov(iov, 0) },
            None => {
                let mut pos = self.pos.lock().unwrap();
                // SAFETY: the caller's contract.
                let r = unsafe { io.read_iov(iov, *pos) };
                if let Ok(n) = r {
                    *pos += n as u64;
                }
                r
            }
        })
    }

    /// # Safety
    /// As [`IovIo::write_iov`](crate::inode::IovIo::write_iov).
    unsafe fn write_iov_inner(
        &self,
        iov: &[libc::iovec],
        offset: Option<u64>,
    ) -> Option<Result<usize>> {
        let io = self.ops.iov_io()?;
        let seekable = self.ops.seekable();
        if seekable && self.flags() & libc::O_APPEND != 0 {
            return None;
        }
        if !self.writable() {
            return Some(Err(Errno::EBADF));
        }
        Some(match offset {
            Some(_) if !seekable => Err(Errno::ESPIPE),
            // SAFETY: the caller's contract.
            Some(o) => unsafe { io.write_iov(iov, o) },
            // SAFETY: the caller's contract.
            None if !seekable => unsafe { io.write_iov(iov, 0) },
            None => {
                let mut pos = self.pos.lock().unwrap();
                // SAFETY: the caller's contract.
                let r = unsafe { io.write_iov(iov, *pos) };
                if let Ok(n) = r {
                    *pos += n as u64;
                }
                r
            }
        })
    }

    /// Report data moved through a named file to inotify.
    fn noted(&self, r: Result<usize>, mask: u32) -> Result<usize> {
        if let (Ok(n), Some(loc)) = (&r, &self.location) {
            if *n > 0 {
                notify::file_event(loc, mask);
            }
        }
        r
    }

    /// `read(2)`: at the file position, which moves past what was read.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize> {
        self.noted(self.read_inner(buf), notify::IN_ACCESS)
    }

    /// `pread64(2)`.
    pub fn pread(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.noted(self.pread_inner(buf, offset), notify::IN_ACCESS)
    }

    /// `write(2)`: at the position, or at the end with O_APPEND.
    pub fn write(&self, buf: &[u8]) -> Result<usize> {
        self.noted(self.write_inner(buf), notify::IN_MODIFY)
    }

    /// `pwrite64(2)`. (Linux appends anyway on an O_APPEND file.)
    pub fn pwrite(&self, buf: &[u8], offset: u64) -> Result<usize> {
        self.noted(self.pwrite_inner(buf, offset), notify::IN_MODIFY)
    }

    /// [`read`](Self::read) (`offset` None) or [`pread`](Self::pread)
    /// straight into `iov`; None when the file has no vectored path.
    ///
    /// # Safety
    /// As [`IovIo::read_iov`](crate::inode::IovIo::read_iov).
    pub unsafe fn read_iov(
        &self,
        iov: &[libc::iovec],
        offset: Option<u64>,
    ) -> Option<Result<usize>> {
        // SAFETY: the caller's contract.
        let r = unsafe { self.read_iov_inner(iov, offset) }?;
        Some(self.noted(r, notify::IN_ACCESS))
    }

    /// [`write`](Self::write) (`offset` None) or [`pwrite`](Self::pwrite)
    /// straight from `iov`; None when the file has no vectored path or
    /// appends (O_APPEND on a file with positions takes the copying path).
    ///
    /// # Safety
    /// As [`IovIo::write_iov`](crate::inode::IovIo::write_iov).
    pub unsafe fn write_iov(
        &self,
        iov: &[libc::iovec],
        offset: Option<u64>,
    ) -> Option<Result<usize>> {
        // SAFETY: the caller's contract.
        let r = unsafe { self.write_iov_inner(iov, offset) }?;
        Some(self.noted(r, notify::IN_MODIFY))
    }

    /// `lseek(2)`. SEEK_DATA and SEEK_HOLE treat the whole file as data.
    pub fn seek(&self, offset: i64, whence: i32) -> Result<u64> {
        if self.is_path_only() {
            return Err(Errno::EBADF);
        }
        if let Some(r) = self.ops.seek(offset, whence) {
            return r;
        }
        if !self.ops.seekable() {
            return Err(Errno::ESPIPE);
        }
        let mut pos = self.pos.lock().unwrap();
        let size = || self.stat().map(|s| s.size);
        let base: i64 = match whence {
            libc::SEEK_SET => 0,
            libc::SEEK_CUR => *pos as i64,
            libc::SEEK_END => size()?,
            libc::SEEK_DATA | libc::SEEK_HOLE => {
                let size = size()?;
                if offset < 0 || offset >= size {
                    return Err(Errno::ENXIO);
                }
                let at = if whence == libc::SEEK_DATA {
                    offset
                } else {
                    size
                };
                *pos = at as u64;
                return Ok(*pos);
            }
            _ => return Err(Errno::EINVAL),
        };
        let new = base.checked_add(offset).ok_or(Errno::EOVERFLOW)?;
        if new < 0 {
            return Err(Errno::EINVAL);
        }
        *pos = new as u64;
        if self.is_dir() && new == 0 {
            *self.listing.lock().unwrap() = None;
        }
        Ok(*pos)
    }

    pub fn position(&self) -> u64 {
        *self.pos.lock().unwrap()
    }

    /// `getdents64(2)`: fill `buf` with `linux_dirent64` records from the
    /// position on; 0 at the end. EINVAL if not even one record fits.
    pub fn getdents(&self, buf: &mut [u8], parent_ino: u64) -> Result<usize> {
        if self.is_path_only() {
            return Err(Errno::EBADF);
        }
        let loc = self.location.as_ref().ok_or(Errno::ENOTDIR)?;
        if !loc.dentry.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let mut pos = self.pos.lock().unwrap();
        let mut listing = self.listing.lock().unwrap();
        if listing.is_none() || *pos == 0 {
            let me = loc.inode().stat()?;
            let mut entries = vec![
                DirEntry {
                    ino: me.ino,
                    kind: dirent_type(crate::S_IFDIR),
                    name: ".".into(),
                },
                DirEntry {
                    ino: parent_ino,
                    kind: dirent_type(crate::S_IFDIR),
                    name: "..".into(),
                },
            ];
            if !loc.dentry.is_deleted() {
                entries.extend(loc.inode().read_dir()?);
            }
            *listing = Some(entries);
        }
        let entries = listing.as_ref().unwrap();
        let mut used = 0;
        while let Some(e) = entries.get(*pos as usize) {
            let name = e.name.as_bytes();
            let reclen = (19 + name.len() + 1).next_multiple_of(8);
            if used + reclen > buf.len() {
                if used == 0 {
                    return Err(Errno::EINVAL);
                }
                break;
            }
            let rec = &mut buf[used..used + reclen];
            rec.fill(0);
            rec[0..8].copy_from_slice(&e.ino.to_le_bytes());
            rec[8..16].copy_from_slice(&(*pos as i64 + 1).to_le_bytes());
            rec[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
            rec[18] = e.kind;
            rec[19..19 + name.len()].copy_from_slice(name);
            used += reclen;
            *pos += 1;
        }
        drop(listing);
        drop(pos);
        // Linux reports every directory read, even one at the end.
        notify::file_event(loc, notify::IN_ACCESS);
        Ok(used)
    }
}
