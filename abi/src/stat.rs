//! `struct stat` as x86-64 Linux lays it out for `fstat`/`newfstatat`.

/// The 144-byte x86-64 `struct stat` (`arch/x86/include/uapi/asm/stat.h`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub pad0: u32,
    pub rdev: u64,
    pub size: i64,
    pub blksize: i64,
    pub blocks: i64,
    pub atime_sec: i64,
    pub atime_nsec: i64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
    pub ctime_sec: i64,
    pub ctime_nsec: i64,
    pub reserved: [i64; 3],
}

impl Stat {
    /// The struct's bytes in the layout user space reads.
    pub fn to_bytes(&self) -> [u8; 144] {
        let words: [u64; 18] = [
            self.dev,
            self.ino,
            self.nlink,
            u64::from(self.mode) | (u64::from(self.uid) << 32),
            u64::from(self.gid) | (u64::from(self.pad0) << 32),
            self.rdev,
            self.size as u64,
            self.blksize as u64,
            self.blocks as u64,
            self.atime_sec as u64,
            self.atime_nsec as u64,
            self.mtime_sec as u64,
            self.mtime_nsec as u64,
            self.ctime_sec as u64,
            self.ctime_nsec as u64,
            self.reserved[0] as u64,
            self.reserved[1] as u64,
            self.reserved[2] as u64,
        ];
        let mut out = [0u8; 144];
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_kernel() {
        assert_eq!(std::mem::size_of::<Stat>(), 144);
        let s = Stat {
            mode: 0o100644,
            uid: 7,
            gid: 9,
            size: 0x1122,
            ..Stat::default()
        };
        let b = s.to_bytes();
        // st_mode at 24, st_uid at 28, st_gid at 32, st_size at 48.
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 0o100644);
        assert_eq!(u32::from_le_bytes(b[28..32].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 9);
        assert_eq!(i64::from_le_bytes(b[48..56].try_into().unwrap()), 0x1122);
    }
}
