//! The contents of host files that programs map privately (shared
//! libraries, executables), kept in the memory file so every private
//! mapping of the same file maps the same pages copy-on-write instead of
//! reading and copying the file again: the part of a page cache that exec
//! and the dynamic loader need.
//!
//! Only files on the host (the read-only lower layer of the root) are
//! cached; an entry is found again only while the file's identity, size,
//! modification and change times are those it was read with. The cache
//! holds one private reference to each entry's pages; mappings hold
//! their own, so evicting an entry never takes memory from a mapping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use abi::{page_up, Errno, Stat};

use crate::fs::File;
use crate::memfile::MemoryFile;

/// Files larger than this are copied per mapping, not cached.
const MAX_FILE: u64 = 64 << 20;
/// The cache lets go of the least recently used entries beyond this.
const MAX_TOTAL: u64 = 256 << 20;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

struct Entry {
    /// Memory-file offset of the file's first byte; `len` is the size
    /// rounded up to whole pages (the tail of the last page is zero).
    offset: u64,
    len: u64,
    last_use: u64,
}

pub struct FileCache {
    mf: Arc<MemoryFile>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    total: u64,
    clock: u64,
}

/// A cached file's pages: `[offset, offset+len)` of the memory file.
#[derive(Clone, Copy, Debug)]
pub struct CachedPages {
    pub offset: u64,
    pub len: u64,
}

impl FileCache {
    pub fn new(mf: Arc<MemoryFile>) -> FileCache {
        FileCache {
            mf,
            state: Mutex::default(),
        }
    }

    /// The file's pages, reading it into the cache on first use; None if
    /// the file is not one the cache keeps (not on the host, or too big).
    pub fn pages(&self, file: &File) -> Result<Option<CachedPages>, Errno> {
        if file.ops().host_fd().is_none() {
            return Ok(None);
        }
        let st = file.stat()?;
        if st.mode & libc::S_IFMT != libc::S_IFREG || st.size <= 0 || st.size as u64 > MAX_FILE {
            return Ok(None);
        }
        let key = key_of(&st);
        if let Some(found) = self.lookup(key) {
            return Ok(Some(found));
        }
        // Read outside the lock; a racing reader of the same file costs
        // one redundant read, and the loser's copy is released.
        let len = page_up(st.size as u64).ok_or(Errno::EFBIG)?;
        let offset = self.mf.allocate_private(len)?;
        if let Err(e) = read_into(&self.mf, file, offset, 0, st.size as u64) {
            self.mf.release_private(offset, len);
            return Err(e);
        }
        let mut state = self.lock();
        state.clock += 1;
        let clock = state.clock;
        if let Some(entry) = state.entries.get_mut(&key) {
            entry.last_use = clock;
            let found = CachedPages {
                offset: entry.offset,
                len: entry.len,
            };
            drop(state);
            self.mf.release_private(offset, len);
            return Ok(Some(found));
        }
        state.entries.insert(
            key,
            Entry {
                offset,
                len,
                last_use: clock,
            },
        );
        state.total += len;
        let evicted = evict(&mut state, key);
        drop(state);
        for (off, l) in evicted {
            self.mf.release_private(off, l);
        }
        Ok(Some(CachedPages { offset, len }))
    }

    fn lookup(&self, key: Key) -> Option<CachedPages> {
        let mut state = self.lock();
        state.clock += 1;
        let clock = state.clock;
        let entry = state.entries.get_mut(&key)?;
        entry.last_use = clock;
        Some(CachedPages {
            offset: entry.offset,
            len: entry.len,
        })
    }

    /// Read `size` bytes of the file into the memory file at `offset`.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Copy up to `len` bytes of `file` from `from` on into the memory file
/// at `at`; returns how many there were. A file shorter than `len` leaves
/// the rest as it was (zero, in fresh memory), as a mapping past the end
/// of a file reads.
pub(crate) fn read_into(
    mf: &MemoryFile,
    file: &File,
    at: u64,
    from: u64,
    len: u64,
) -> Result<u64, Errno> {
    let mut buf = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let n = file.pread(&mut buf[..want], from + done)?;
        if n == 0 {
            break;
        }
        mf.copy_out(at + done, &buf[..n]);
        done += n as u64;
    }
    Ok(done)
}

fn key_of(st: &Stat) -> Key {
    Key {
        dev: st.dev,
        ino: st.ino,
        size: st.size,
        mtime: (st.mtime_sec, st.mtime_nsec),
        ctime: (st.ctime_sec, st.ctime_nsec),
    }
}

/// Remove least recently used entries (never `keep`) until the total fits;
/// returns the ranges to release.
fn evict(state: &mut State, keep: Key) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    while state.total > MAX_TOTAL {
        let Some(victim) = state
            .entries
            .iter()
            .filter(|(k, _)| **k != keep)
            .min_by_key(|(_, e)| e.last_use)
            .map(|(k, _)| *k)
        else {
            break;
        };
        let e = state.entries.remove(&victim).expect("just found");
        state.total -= e.len;
        out.push((e.offset, e.len));
    }
    out
}
