//! tmpfs through the `Inode`/`FileOps` trait objects.

use std::sync::Arc;

use vfs::inode::{RENAME_EXCHANGE, RENAME_NOREPLACE, XATTR_CREATE, XATTR_REPLACE};
use vfs::tmpfs::{self, TmpfsOptions};
use vfs::{Errno, FileOps, Inode, NodeKind, SetAttr, TimeSpec, TimeUpdate};

fn fs() -> Arc<dyn Inode> {
    tmpfs::new(TmpfsOptions {
        dev: 42,
        mode: 0o1777,
        ..TmpfsOptions::default()
    })
}

fn file(dir: &Arc<dyn Inode>, name: &str, data: &[u8]) -> Arc<dyn Inode> {
    let n = dir.create(name, NodeKind::Regular, 0o644, (0, 0)).unwrap();
    if !data.is_empty() {
        assert_eq!(
            n.open(libc::O_WRONLY).unwrap().write(data, 0),
            Ok(data.len())
        );
    }
    n
}

fn mkdir(dir: &Arc<dyn Inode>, name: &str) -> Arc<dyn Inode> {
    dir.create(name, NodeKind::Directory, 0o755, (0, 0))
        .unwrap()
}

fn contents(n: &Arc<dyn Inode>) -> Vec<u8> {
    let f = n.open(libc::O_RDONLY).unwrap();
    let mut buf = vec![0; n.stat().unwrap().size as usize];
    assert_eq!(f.read(&mut buf, 0), Ok(buf.len()));
    buf
}

fn names(dir: &Arc<dyn Inode>) -> Vec<String> {
    let mut v: Vec<String> = dir
        .read_dir()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    v.sort();
    v
}

fn nlink(n: &Arc<dyn Inode>) -> u64 {
    n.stat().unwrap().nlink
}

fn same(a: &Arc<dyn Inode>, b: &Arc<dyn Inode>) -> bool {
    a.stat().unwrap().ino == b.stat().unwrap().ino
}

#[test]
fn root_attributes_and_statfs() {
    let root = tmpfs::new(TmpfsOptions {
        dev: 7,
        mode: 0o755,
        uid: 5,
        gid: 6,
        size_limit: 1 << 20,
        devices: None,
        memory: None,
        fifos: None,
    });
    let st = root.stat().unwrap();
    assert_eq!(st.mode, vfs::S_IFDIR | 0o755);
    assert_eq!((st.dev, st.uid, st.gid, st.nlink), (7, 5, 6, 2));
    assert_eq!(st.blksize, 4096);
    let sfs = root.statfs().unwrap();
    assert_eq!(sfs.fs_type, 0x0102_1994);
    assert_eq!((sfs.bsize, sfs.namelen), (4096, 255));
    assert_eq!((sfs.blocks, sfs.bfree), (256, 256));
    file(&root, "f", b"x");
    assert_eq!(root.statfs().unwrap().bfree, 255);
}

#[test]
fn create_lookup_read_dir() {
    let root = fs();
    let f = file(&root, "f", b"");
    let d = mkdir(&root, "d");
    let l = root
        .create("l", NodeKind::Symlink("f".into()), 0o777, (1, 2))
        .unwrap();
    let c = root
        .create("c", NodeKind::CharDevice(0x0103), 0o666, (0, 0))
        .unwrap();
    let p = root.create("p", NodeKind::Fifo, 0o600, (0, 0)).unwrap();
    let s = root.create("s", NodeKind::Socket, 0o600, (0, 0)).unwrap();
    let b = root
        .create("b", NodeKind::BlockDevice(0x0801), 0o600, (0, 0))
        .unwrap();
    assert_eq!(
        root.create("f", NodeKind::Directory, 0o755, (0, 0)).err(),
        Some(Errno::EEXIST)
    );
    assert!(same(&root.lookup("f").unwrap(), &f));
    assert!(same(&root.lookup("d").unwrap(), &d));
    assert_eq!(root.lookup("nope").err(), Some(Errno::ENOENT));
    assert_eq!(f.lookup("x").err(), Some(Errno::ENOTDIR));
    assert_eq!(l.readlink().unwrap(), "f");
    assert_eq!(l.stat().unwrap().size, 1);
    assert_eq!((l.stat().unwrap().uid, l.stat().unwrap().gid), (1, 2));
    assert_eq!(f.readlink().err(), Some(Errno::EINVAL));
    assert_eq!(c.stat().unwrap().rdev, 0x0103);
    assert_eq!(c.stat().unwrap().mode, vfs::S_IFCHR | 0o666);
    assert_eq!(b.stat().unwrap().mode, vfs::S_IFBLK | 0o600);
    assert_eq!(p.stat().unwrap().mode, vfs::S_IFIFO | 0o600);
    assert_eq!(s.stat().unwrap().mode, vfs::S_IFSOCK | 0o600);

    let mut entries = root.read_dir().unwrap();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let got: Vec<(&str, u8)> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(
        got,
        [
            ("b", libc::DT_BLK),
            ("c", libc::DT_CHR),
            ("d", libc::DT_DIR),
            ("f", libc::DT_REG),
            ("l", libc::DT_LNK),
            ("p", libc::DT_FIFO),
            ("s", libc::DT_SOCK)
        ]
    );
    let f_entry = entries.iter().find(|e| e.name == "f").unwrap();
    assert_eq!(f_entry.ino, f.stat().unwrap().ino);
    // Stable order between calls.
    assert_eq!(root.read_dir().unwrap(), root.read_dir().unwrap());
    // Unique inode numbers, dev from the options.
    let mut inos: Vec<u64> = entries.iter().map(|e| e.ino).collect();
    inos.push(root.stat().unwrap().ino);
    inos.sort();
    inos.dedup();
    assert_eq!(inos.len(), 8);
    assert_eq!(f.stat().unwrap().dev, 42);
}

#[test]
fn open_kinds() {
    let root = fs();
    let d = mkdir(&root, "d");
    let df = d.open(libc::O_RDONLY).unwrap();
    assert_eq!(df.read(&mut [0; 4], 0), Err(Errno::EISDIR));
    assert_eq!(df.write(b"x", 0), Err(Errno::EISDIR));
    assert_eq!(df.stat().unwrap().ino, d.stat().unwrap().ino);
    let l = root
        .create("l", NodeKind::Symlink("d".into()), 0o777, (0, 0))
        .unwrap();
    assert_eq!(l.open(libc::O_RDONLY).err(), Some(Errno::ELOOP));
    let c = root
        .create("c", NodeKind::CharDevice(0x0103), 0o666, (0, 0))
        .unwrap();
    assert_eq!(c.open(libc::O_RDONLY).err(), Some(Errno::ENXIO));
    let p = root.create("p", NodeKind::Fifo, 0o600, (0, 0)).unwrap();
    assert_eq!(p.open(libc::O_RDONLY).err(), Some(Errno::ENXIO));
}

/// A device whose reads return its rdev and open flags.
struct EchoDev(u64, i32);

impl FileOps for EchoDev {
    fn read(&self, buf: &mut [u8], _offset: u64) -> vfs::Result<usize> {
        buf[..8].copy_from_slice(&self.0.to_le_bytes());
        buf[8..12].copy_from_slice(&self.1.to_le_bytes());
        Ok(12)
    }
}

#[test]
fn devices_open_through_the_opener() {
    let root = tmpfs::new(TmpfsOptions {
        devices: Some(Arc::new(|rdev, flags| {
            Ok(Arc::new(EchoDev(rdev, flags)) as Arc<dyn FileOps>)
        })),
        ..TmpfsOptions::default()
    });
    let c = root
        .create("null", NodeKind::CharDevice(0x0103), 0o666, (0, 0))
        .unwrap();
    let f = c.open(libc::O_RDWR).unwrap();
    let mut buf = [0u8; 12];
    assert_eq!(f.read(&mut buf, 0), Ok(12));
    assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), 0x0103);
    assert_eq!(
        i32::from_le_bytes(buf[8..].try_into().unwrap()),
        libc::O_RDWR
    );
}

#[test]
fn write_read_append() {
    let root = fs();
    let f = file(&root, "f", b"hello");
    let fo = f.open(libc::O_RDWR).unwrap();
    assert!(fo.seekable());
    assert_eq!(fo.write(b"J", 0), Ok(1));
    assert_eq!(fo.write(b" world", 5), Ok(6));
    assert_eq!(contents(&f), b"Jello world");
    let mut buf = [0u8; 4];
    assert_eq!(fo.read(&mut buf, 7), Ok(4));
    assert_eq!(&buf, b"orld");
    assert_eq!(fo.read(&mut buf, 11), Ok(0));
    assert_eq!(fo.read(&mut buf, 1000), Ok(0));
    assert_eq!(fo.append(b"!!"), Ok((2, 13)));
    assert_eq!(contents(&f), b"Jello world!!");
    assert_eq!(fo.stat().unwrap().size, 13);
    // A write across a page boundary, then a hole before it.
    let big = vec![7u8; 5000];
    assert_eq!(fo.write(&big, 10000), Ok(5000));
    let st = f.stat().unwrap();
    assert_eq!(st.size, 15000);
    // Pages 0, 2 and 3 are allocated; page 1 is a hole.
    assert_eq!(st.blocks, 3 * 8);
    let data = contents(&f);
    assert!(data[13..10000].iter().all(|&b| b == 0));
    assert!(data[10000..].iter().all(|&b| b == 7));
}

#[test]
fn sparse_truncate_to_a_tebibyte() {
    let root = fs();
    let f = file(&root, "f", b"head");
    f.setattr(&SetAttr {
        size: Some(1 << 40),
        ..SetAttr::default()
    })
    .unwrap();
    let st = f.stat().unwrap();
    assert_eq!(st.size, 1 << 40);
    assert_eq!(st.blocks, 8);
    let fo = f.open(libc::O_RDWR).unwrap();
    let mut buf = [0xffu8; 8192];
    assert_eq!(fo.read(&mut buf, 1 << 39), Ok(8192));
    assert!(buf.iter().all(|&b| b == 0));
    assert_eq!(fo.write(b"tail", (1 << 40) - 4), Ok(4));
    let mut tail = [0u8; 8];
    assert_eq!(fo.read(&mut tail, (1 << 40) - 8), Ok(8));
    assert_eq!(&tail, b"\0\0\0\0tail");
    assert_eq!(f.stat().unwrap().blocks, 16);
    // Shrinking drops pages and zeroes the cut tail.
    f.setattr(&SetAttr {
        size: Some(2),
        ..SetAttr::default()
    })
    .unwrap();
    f.setattr(&SetAttr {
        size: Some(4),
        ..SetAttr::default()
    })
    .unwrap();
    assert_eq!(contents(&f), b"he\0\0");
    assert_eq!(f.stat().unwrap().blocks, 8);
}

#[test]
fn file_size_limits() {
    let root = fs();
    let f = file(&root, "f", b"");
    let fo = f.open(libc::O_RDWR).unwrap();
    assert_eq!(fo.write(b"x", i64::MAX as u64), Err(Errno::EFBIG));
    // Only what fits below the limit is written.
    assert_eq!(fo.write(b"xyz", i64::MAX as u64 - 1), Ok(1));
    assert_eq!(f.stat().unwrap().size, i64::MAX);
    assert_eq!(
        f.setattr(&SetAttr {
            size: Some(i64::MAX as u64 + 1),
            ..SetAttr::default()
        }),
        Err(Errno::EFBIG)
    );
}

#[test]
fn setattr_rules() {
    let root = fs();
    let f = file(&root, "f", b"abc");
    let d = mkdir(&root, "d");
    let l = root
        .create("l", NodeKind::Symlink("f".into()), 0o777, (0, 0))
        .unwrap();
    let size = |s| SetAttr {
        size: Some(s),
        ..SetAttr::default()
    };
    assert_eq!(d.setattr(&size(0)), Err(Errno::EISDIR));
    assert_eq!(l.setattr(&size(0)), Err(Errno::EINVAL));
    f.setattr(&SetAttr {
        mode: Some(0o4750),
        uid: Some(10),
        gid: Some(20),
        ..SetAttr::default()
    })
    .unwrap();
    let st = f.stat().unwrap();
    assert_eq!(st.mode, vfs::S_IFREG | 0o4750);
    assert_eq!((st.uid, st.gid), (10, 20));
    // Type bits in the request are ignored.
    d.setattr(&SetAttr {
        mode: Some(vfs::S_IFREG | 0o700),
        ..SetAttr::default()
    })
    .unwrap();
    assert_eq!(d.stat().unwrap().mode, vfs::S_IFDIR | 0o700);

    let t = TimeSpec { sec: 1000, nsec: 5 };
    f.setattr(&SetAttr {
        atime: Some(TimeUpdate::At(t)),
        mtime: Some(TimeUpdate::At(TimeSpec { sec: 2000, nsec: 6 })),
        ..SetAttr::default()
    })
    .unwrap();
    let st = f.stat().unwrap();
    assert_eq!((st.atime_sec, st.atime_nsec), (1000, 5));
    assert_eq!((st.mtime_sec, st.mtime_nsec), (2000, 6));
    assert!(st.ctime_sec > 2000, "ctime changes on any setattr");

    // Truncation updates mtime.
    f.setattr(&size(1)).unwrap();
    let st = f.stat().unwrap();
    assert!(st.mtime_sec > 2000);
    assert_eq!(contents(&f), b"a");
}

fn set_old_times(n: &Arc<dyn Inode>) {
    let old = TimeUpdate::At(TimeSpec { sec: 100, nsec: 0 });
    n.setattr(&SetAttr {
        atime: Some(old),
        mtime: Some(old),
        ..SetAttr::default()
    })
    .unwrap();
}

#[test]
fn directory_times_change_with_entries() {
    let root = fs();
    let d = mkdir(&root, "d");
    set_old_times(&d);
    file(&d, "f", b"");
    assert!(d.stat().unwrap().mtime_sec > 100);
    set_old_times(&d);
    d.unlink("f").unwrap();
    assert!(d.stat().unwrap().mtime_sec > 100);

    let f = file(&root, "g", b"x");
    set_old_times(&f);
    f.open(libc::O_WRONLY).unwrap().write(b"y", 0).unwrap();
    assert!(f.stat().unwrap().mtime_sec > 100);
}

#[test]
fn nlink_counts() {
    let root = fs();
    assert_eq!(nlink(&root), 2);
    let a = mkdir(&root, "a");
    assert_eq!((nlink(&root), nlink(&a)), (3, 2));
    let b = mkdir(&a, "b");
    assert_eq!((nlink(&root), nlink(&a), nlink(&b)), (3, 3, 2));
    file(&a, "f", b"");
    assert_eq!(nlink(&a), 3, "files do not count");
    a.rmdir("b").unwrap();
    assert_eq!((nlink(&a), nlink(&b)), (2, 0));
    // A removed directory takes no new entries.
    assert_eq!(
        b.create("x", NodeKind::Regular, 0o644, (0, 0)).err(),
        Some(Errno::ENOENT)
    );

    let f = file(&root, "f", b"data");
    root.link("g", &f).unwrap();
    root.link("h", &root.lookup("g").unwrap()).unwrap();
    assert_eq!(nlink(&f), 3);
    assert!(same(&root.lookup("h").unwrap(), &f));
    assert_eq!(contents(&root.lookup("h").unwrap()), b"data");
    assert_eq!(root.link("g", &f), Err(Errno::EEXIST));
    assert_eq!(root.link("dirlink", &a), Err(Errno::EPERM));
    root.unlink("f").unwrap();
    assert_eq!(nlink(&f), 2);
    assert_eq!(root.unlink("a"), Err(Errno::EISDIR));
    assert_eq!(root.unlink("f"), Err(Errno::ENOENT));
    assert_eq!(root.rmdir("g"), Err(Errno::ENOTDIR));
}

#[test]
fn link_across_instances_is_exdev() {
    let a = fs();
    let b = fs();
    let f = file(&a, "f", b"");
    assert_eq!(b.link("f", &f), Err(Errno::EXDEV));
    assert_eq!(a.rename("f", &b, "f", 0), Err(Errno::EXDEV));
    assert_eq!(nlink(&f), 1);
}

#[test]
fn unlink_while_open() {
    let root = fs();
    let f = file(&root, "f", b"keep");
    let fo = f.open(libc::O_RDWR).unwrap();
    drop(f);
    root.unlink("f").unwrap();
    assert_eq!(root.lookup("f").err(), Some(Errno::ENOENT));
    assert_eq!(fo.stat().unwrap().nlink, 0);
    assert_eq!(fo.write(b" me", 4), Ok(3));
    let mut buf = [0u8; 16];
    assert_eq!(fo.read(&mut buf, 0), Ok(7));
    assert_eq!(&buf[..7], b"keep me");
}

#[test]
fn rmdir_rules() {
    let root = fs();
    let d = mkdir(&root, "d");
    file(&d, "f", b"");
    assert_eq!(root.rmdir("d"), Err(Errno::ENOTEMPTY));
    assert_eq!(root.rmdir("nope"), Err(Errno::ENOENT));
    d.unlink("f").unwrap();
    root.rmdir("d").unwrap();
    assert_eq!(names(&root), Vec::<String>::new());
    assert_eq!(nlink(&root), 2);
}

#[test]
fn rename_moves_and_replaces() {
    let root = fs();
    let a = mkdir(&root, "a");
    let b = mkdir(&root, "b");
    let f = file(&a, "f", b"one");
    file(&b, "g", b"two");

    // Plain move between directories.
    a.rename("f", &b, "f2", 0).unwrap();
    assert_eq!(a.lookup("f").err(), Some(Errno::ENOENT));
    assert!(same(&b.lookup("f2").unwrap(), &f));

    // Replacing a file drops the old one's link.
    let g = b.lookup("g").unwrap();
    b.rename("f2", &b, "g", 0).unwrap();
    assert_eq!(contents(&b.lookup("g").unwrap()), b"one");
    assert_eq!(nlink(&g), 0);
    assert_eq!(names(&b), ["g"]);

    // Onto itself and onto another link of the same inode: no-ops.
    b.rename("g", &b, "g", 0).unwrap();
    b.link("h", &f).unwrap();
    b.rename("g", &b, "h", 0).unwrap();
    assert_eq!(names(&b), ["g", "h"]);
    assert_eq!(nlink(&f), 2);

    assert_eq!(a.rename("missing", &b, "x", 0), Err(Errno::ENOENT));
}

#[test]
fn rename_type_rules() {
    let root = fs();
    let d1 = mkdir(&root, "d1");
    mkdir(&root, "d2");
    let full = mkdir(&root, "full");
    file(&full, "x", b"");
    file(&root, "f", b"");

    assert_eq!(root.rename("f", &root, "d2", 0), Err(Errno::EISDIR));
    assert_eq!(root.rename("d1", &root, "f", 0), Err(Errno::ENOTDIR));
    assert_eq!(root.rename("d1", &root, "full", 0), Err(Errno::ENOTEMPTY));
    // Into itself.
    assert_eq!(root.rename("d1", &d1, "x", 0), Err(Errno::EINVAL));
    let sub = mkdir(&d1, "sub");
    assert_eq!(root.rename("d1", &sub, "x", 0), Err(Errno::EINVAL));
    assert_eq!(root.rename("f", &root, "g", 0x80), Err(Errno::EINVAL));

    // A directory replaces an empty directory.
    assert_eq!(nlink(&root), 5);
    root.rename("d1", &root, "d2", 0).unwrap();
    assert_eq!(names(&root), ["d2", "f", "full"]);
    assert_eq!(nlink(&root), 4);
    assert!(same(&root.lookup("d2").unwrap(), &d1));
}

#[test]
fn rename_directory_updates_parent_links() {
    let root = fs();
    let a = mkdir(&root, "a");
    let b = mkdir(&root, "b");
    let d = mkdir(&a, "d");
    assert_eq!((nlink(&a), nlink(&b)), (3, 2));
    a.rename("d", &b, "d", 0).unwrap();
    assert_eq!((nlink(&a), nlink(&b), nlink(&d)), (2, 3, 2));
    // Moving d below its old parent is fine; below itself is not.
    b.rename("d", &a, "d", 0).unwrap();
    assert_eq!(root.rename("a", &d, "a", 0), Err(Errno::EINVAL));
    // Replacing an empty dir in another parent.
    mkdir(&b, "e");
    a.rename("d", &b, "e", 0).unwrap();
    assert_eq!((nlink(&a), nlink(&b)), (2, 3));
    assert!(same(&b.lookup("e").unwrap(), &d));
}

#[test]
fn rename_noreplace() {
    let root = fs();
    file(&root, "a", b"a");
    file(&root, "b", b"b");
    assert_eq!(
        root.rename("a", &root, "b", RENAME_NOREPLACE),
        Err(Errno::EEXIST)
    );
    assert_eq!(contents(&root.lookup("b").unwrap()), b"b");
    root.rename("a", &root, "c", RENAME_NOREPLACE).unwrap();
    assert_eq!(names(&root), ["b", "c"]);
    assert_eq!(
        root.rename("b", &root, "c", RENAME_NOREPLACE | RENAME_EXCHANGE),
        Err(Errno::EINVAL)
    );
}

#[test]
fn rename_exchange() {
    let root = fs();
    let a = mkdir(&root, "a");
    let f = file(&root, "f", b"file");
    let d = mkdir(&a, "d");
    file(&d, "inside", b"");
    assert_eq!(
        root.rename("f", &root, "missing", RENAME_EXCHANGE),
        Err(Errno::ENOENT)
    );
    // A file and a non-empty directory in different parents swap.
    assert_eq!((nlink(&root), nlink(&a)), (3, 3));
    root.rename("f", &a, "d", RENAME_EXCHANGE).unwrap();
    assert!(same(&root.lookup("f").unwrap(), &d));
    assert!(same(&a.lookup("d").unwrap(), &f));
    assert_eq!((nlink(&root), nlink(&a)), (4, 2));
    assert_eq!(names(&root.lookup("f").unwrap()), ["inside"]);
    // The moved directory's new parent is used for loop checks.
    assert_eq!(root.rename("a", &d, "a", 0), Ok(()));
    assert_eq!(names(&d), ["a", "inside"]);
}

#[test]
fn xattrs() {
    let root = fs();
    let f = file(&root, "f", b"");
    assert_eq!(f.getxattr("user.a"), Err(Errno::ENODATA));
    f.setxattr("user.a", b"1", 0).unwrap();
    assert_eq!(f.setxattr("user.a", b"2", XATTR_CREATE), Err(Errno::EEXIST));
    assert_eq!(
        f.setxattr("user.b", b"2", XATTR_REPLACE),
        Err(Errno::ENODATA)
    );
    f.setxattr("user.a", b"3", XATTR_REPLACE).unwrap();
    assert_eq!(f.getxattr("user.a").unwrap(), b"3");
    f.setxattr("trusted.t", b"", 0).unwrap();
    f.setxattr("security.s", b"s", XATTR_CREATE).unwrap();
    let mut list = f.listxattr().unwrap();
    list.sort();
    assert_eq!(list, ["security.s", "trusted.t", "user.a"]);
    assert_eq!(f.getxattr("trusted.t").unwrap(), b"");

    assert_eq!(f.setxattr("system.x", b"", 0), Err(Errno::EOPNOTSUPP));
    assert_eq!(f.setxattr("plain", b"", 0), Err(Errno::EOPNOTSUPP));
    let long = format!("user.{}", "n".repeat(251));
    assert_eq!(f.setxattr(&long, b"", 0), Err(Errno::ERANGE));
    let max = format!("user.{}", "n".repeat(250));
    f.setxattr(&max, b"", 0).unwrap();
    assert_eq!(
        f.setxattr("user.big", &vec![0; 65537], 0),
        Err(Errno::E2BIG)
    );
    f.setxattr("user.big", &vec![1; 65536], 0).unwrap();

    f.removexattr("user.a").unwrap();
    assert_eq!(f.removexattr("user.a"), Err(Errno::ENODATA));
    assert_eq!(f.getxattr("user.a"), Err(Errno::ENODATA));
}

#[test]
fn enospc() {
    let root = tmpfs::new(TmpfsOptions {
        size_limit: 3 * 4096,
        ..TmpfsOptions::default()
    });
    let f = file(&root, "f", &[1; 8192]);
    let g = file(&root, "g", b"");
    let go = g.open(libc::O_WRONLY).unwrap();
    // One page left: a two-page write is cut short, the next one fails.
    assert_eq!(go.write(&[2; 8192], 0), Ok(4096));
    assert_eq!(go.write(&[2; 10], 4096), Err(Errno::ENOSPC));
    // Rewriting allocated pages and sparse growth still work.
    assert_eq!(go.write(&[3; 10], 0), Ok(10));
    g.setattr(&SetAttr {
        size: Some(1 << 30),
        ..SetAttr::default()
    })
    .unwrap();
    assert_eq!(root.statfs().unwrap().bfree, 0);
    // Space comes back when data goes: truncation and deleting files.
    f.setattr(&SetAttr {
        size: Some(0),
        ..SetAttr::default()
    })
    .unwrap();
    assert_eq!(root.statfs().unwrap().bfree, 2);
    root.unlink("g").unwrap();
    assert_eq!(root.statfs().unwrap().bfree, 2, "still open");
    drop(go);
    drop(g);
    assert_eq!(root.statfs().unwrap().bfree, 3);
}

#[test]
fn concurrent_writers_and_renames() {
    let root = fs();
    let f = file(&root, "f", b"");
    let a = mkdir(&root, "a");
    let b = mkdir(&root, "b");
    file(&b, "y", b"");
    let fo = f.open(libc::O_WRONLY).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let fo = fo.clone();
            s.spawn(move || {
                for _ in 0..1000 {
                    fo.append(b"0123456789").unwrap();
                }
            });
        }
        let (a1, b1) = (a.clone(), b.clone());
        s.spawn(move || {
            for _ in 0..500 {
                let _ = a1.rename("x", &b1, "x", 0);
                let _ = b1.rename("x", &a1, "x", 0);
            }
        });
        let (a2, b2) = (a.clone(), b.clone());
        s.spawn(move || {
            a2.create("x", NodeKind::Directory, 0o755, (0, 0)).unwrap();
            for _ in 0..500 {
                let _ = a2.rename("x", &b2, "y", RENAME_EXCHANGE);
                let _ = b2.rename("x", &a2, "x", 0);
            }
        });
    });
    assert_eq!(f.stat().unwrap().size, 40_000);
    assert_eq!(nlink(&a) + nlink(&b), 5);
}

/// Shared memory on the heap, standing in for the kernel's memory file.
struct HeapMemory;

struct HeapRegion(std::sync::Mutex<Vec<u8>>);

impl vfs::inode::SharedMemory for HeapMemory {
    fn allocate(&self, len: u64) -> Result<Arc<dyn vfs::inode::SharedRegion>, Errno> {
        Ok(Arc::new(HeapRegion(std::sync::Mutex::new(
            vec![0; len as usize],
        ))))
    }
}

impl vfs::inode::SharedRegion for HeapRegion {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let v = self.0.lock().unwrap();
        let from = (offset as usize).min(v.len());
        let n = buf.len().min(v.len() - from);
        buf[..n].copy_from_slice(&v[from..from + n]);
        Ok(n)
    }
    fn write(&self, offset: u64, buf: &[u8]) -> Result<(), Errno> {
        let mut v = self.0.lock().unwrap();
        let end = offset as usize + buf.len();
        if v.len() < end {
            v.resize(end, 0);
        }
        v[offset as usize..end].copy_from_slice(buf);
        Ok(())
    }
    fn set_len(&self, len: u64) -> Result<(), Errno> {
        self.0.lock().unwrap().resize(len as usize, 0);
        Ok(())
    }
    fn punch(&self, offset: u64, len: u64) -> Result<(), Errno> {
        let mut v = self.0.lock().unwrap();
        let end = ((offset + len) as usize).min(v.len());
        v[offset as usize..end].fill(0);
        Ok(())
    }
    unsafe fn read_iov(&self, iov: &[libc::iovec], offset: u64) -> Result<usize, Errno> {
        let v = self.0.lock().unwrap();
        let mut pos = (offset as usize).min(v.len());
        let start = pos;
        for io in iov {
            let n = io.iov_len.min(v.len() - pos);
            // SAFETY: the caller's contract: `io` names `iov_len` writable
            // bytes.
            unsafe { std::ptr::copy(v[pos..].as_ptr(), io.iov_base.cast(), n) };
            pos += n;
        }
        Ok(pos - start)
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

#[test]
fn a_shared_mapped_file_keeps_one_copy_of_its_bytes() {
    let root = tmpfs::new(TmpfsOptions {
        memory: Some(Arc::new(HeapMemory)),
        size_limit: 1 << 30,
        ..TmpfsOptions::default()
    });
    let f = root.create("f", NodeKind::Regular, 0o644, (0, 0)).unwrap();
    let ops = f.open(libc::O_RDWR).unwrap();
    ops.write(b"before mapping", 0).unwrap();
    let region = ops
        .map_shared(true)
        .expect("tmpfs maps shared")
        .unwrap()
        .region;
    let mut b = [0u8; 6];
    region.read(0, &mut b).unwrap();
    assert_eq!(&b, b"before");
    // Writes through the mapping show in read(), and the other way round.
    region.write(0, b"AFTER!").unwrap();
    let mut r = [0u8; 14];
    assert_eq!(ops.read(&mut r, 0).unwrap(), 14);
    assert_eq!(&r, b"AFTER! mapping");
    ops.write(b"xyz", 7).unwrap();
    let mut b = [0u8; 3];
    region.read(7, &mut b).unwrap();
    assert_eq!(&b, b"xyz");
    // A second mapping is the same region.
    let again = ops.map_shared(true).unwrap().unwrap().region;
    again.write(1, b"Z").unwrap();
    region.read(1, &mut b[..1]).unwrap();
    assert_eq!(b[0], b'Z');
    // Truncating zeroes the cut-off bytes, so growing again reads zeros.
    f.setattr(&SetAttr {
        size: Some(3),
        ..SetAttr::default()
    })
    .unwrap();
    f.setattr(&SetAttr {
        size: Some(10),
        ..SetAttr::default()
    })
    .unwrap();
    let mut r = [0xffu8; 10];
    assert_eq!(ops.read(&mut r, 0).unwrap(), 10);
    assert_eq!(&r, b"AZT\0\0\0\0\0\0\0");
    // The region's length is the file's size, whichever way it changes.
    let mut all = [0xffu8; 16];
    assert_eq!(region.read(0, &mut all).unwrap(), 10);
    ops.write(b"end", 1 << 20).unwrap();
    assert_eq!(f.stat().unwrap().size as u64, (1 << 20) + 3);
    let mut b = [0u8; 3];
    assert_eq!(region.read(1 << 20, &mut b).unwrap(), 3);
    assert_eq!(&b, b"end");
    let again = ops.map_shared(true).unwrap().unwrap().region;
    assert!(
        Arc::ptr_eq(&again, &region),
        "one region for the file's life"
    );
}

#[test]
fn seals_follow_memfd_rules() {
    const SEAL: u32 = 1;
    const SHRINK: u32 = 2;
    const GROW: u32 = 4;
    const WRITE: u32 = 8;
    let root = tmpfs::new(TmpfsOptions {
        memory: Some(Arc::new(HeapMemory)),
        ..TmpfsOptions::default()
    });
    let f = root.create("f", NodeKind::Regular, 0o644, (0, 0)).unwrap();
    let ops = f.open(libc::O_RDWR).unwrap();
    // A plain tmpfs file is sealed against seals.
    assert_eq!(ops.seals().unwrap(), SEAL);
    assert_eq!(ops.add_seals(GROW), Err(Errno::EPERM));
    assert!(tmpfs::allow_sealing(ops.as_ref()));
    assert_eq!(ops.seals().unwrap(), 0);
    assert_eq!(ops.add_seals(0x40), Err(Errno::EINVAL));
    ops.write(b"0123456789", 0).unwrap();
    // Shrink and grow seals stop size changes in their direction only.
    ops.add_seals(SHRINK | GROW).unwrap();
    let resize = |size| {
        f.setattr(&SetAttr {
            size: Some(size),
            ..SetAttr::default()
        })
    };
    assert_eq!(resize(5), Err(Errno::EPERM));
    assert_eq!(resize(20), Err(Errno::EPERM));
    resize(10).unwrap();
    assert_eq!(ops.write(b"abc", 9), Err(Errno::EPERM));
    assert_eq!(ops.write(b"abc", 7).unwrap(), 3);
    // A writable shared mapping blocks the write seal until it goes.
    let map = ops.map_shared(true).unwrap().unwrap();
    assert!(map.writer.is_some());
    assert_eq!(ops.add_seals(WRITE), Err(Errno::EBUSY));
    drop(map);
    ops.add_seals(WRITE).unwrap();
    assert_eq!(ops.write(b"x", 0), Err(Errno::EPERM));
    let ro = ops.map_shared(true).unwrap().unwrap();
    assert!(
        ro.writer.is_none(),
        "a write-sealed file never maps writably"
    );
    ops.add_seals(SEAL).unwrap();
    assert_eq!(ops.add_seals(SHRINK), Err(Errno::EPERM));
    assert_eq!(ops.seals().unwrap(), SEAL | SHRINK | GROW | WRITE);
}

#[test]
fn vectored_reads_copy_pages_holes_and_shared_regions() {
    let root = tmpfs::new(TmpfsOptions {
        memory: Some(Arc::new(HeapMemory)),
        ..TmpfsOptions::default()
    });
    let f = root.create("f", NodeKind::Regular, 0o644, (0, 0)).unwrap();
    let ops = f.open(libc::O_RDWR).unwrap();
    ops.write(b"head", 0).unwrap();
    ops.write(b"tail", 8190).unwrap(); // a page boundary inside, a hole before
    let read_all = |ops: &Arc<dyn FileOps>| {
        let (mut a, mut b) = ([0xffu8; 5], [0xffu8; 8192]);
        let iov = [
            libc::iovec {
                iov_base: a.as_mut_ptr().cast(),
                iov_len: a.len(),
            },
            libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            },
        ];
        let io = ops.iov_io().expect("tmpfs files read vectored");
        // SAFETY: both buffers live across the call and nothing else
        // refers to them meanwhile.
        let n = unsafe { io.read_iov(&iov, 0) }.unwrap();
        let mut out = a.to_vec();
        out.extend_from_slice(&b);
        out.truncate(n);
        out
    };
    let mut want = vec![0u8; 8194];
    want[..4].copy_from_slice(b"head");
    want[8190..].copy_from_slice(b"tail");
    assert_eq!(read_all(&ops), want);
    // The same once the bytes live in a shared region, and no further
    // than the file's size even where the region holds more.
    let map = ops.map_shared(true).unwrap().unwrap();
    assert_eq!(read_all(&ops), want);
    map.region.write(8194, b"past the end").unwrap();
    assert_eq!(read_all(&ops), want);
    map.region.set_len(8194).unwrap();
    // Vectored writes land like plain ones.
    let data = *b"XYZ";
    let iov = [libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: 3,
    }];
    // SAFETY: `data` lives across the call.
    let n = unsafe { ops.iov_io().unwrap().write_iov(&iov, 2) }.unwrap();
    assert_eq!(n, 3);
    let mut r = [0u8; 6];
    ops.read(&mut r, 0).unwrap();
    assert_eq!(&r, b"heXYZ\0");
}
