//! overlayfs over two tmpfs instances, through the trait objects.

use std::sync::Arc;

use vfs::inode::{RENAME_EXCHANGE, RENAME_NOREPLACE};
use vfs::tmpfs::{self, TmpfsOptions};
use vfs::{overlay, Errno, Inode, NodeKind, SetAttr, TimeSpec, TimeUpdate};

const OPAQUE: &str = "trusted.overlay.opaque";

struct Setup {
    upper: Arc<dyn Inode>,
    lower: Arc<dyn Inode>,
    ovl: Arc<dyn Inode>,
}

fn tmp(dev: u64) -> Arc<dyn Inode> {
    tmpfs::new(TmpfsOptions {
        dev,
        mode: 0o755,
        ..TmpfsOptions::default()
    })
}

/// lower: a (file), b (file), d/ {x, y}, e/ (empty), s -> a
fn setup() -> Setup {
    let lower = tmp(1);
    file(&lower, "a", b"lower a");
    file(&lower, "b", b"lower b");
    let d = mkdir(&lower, "d");
    file(&d, "x", b"x");
    file(&d, "y", b"y");
    mkdir(&lower, "e");
    lower
        .create("s", NodeKind::Symlink("a".into()), 0o777, (0, 0))
        .unwrap();
    let upper = tmp(2);
    let ovl = overlay::new(upper.clone(), lower.clone(), 99).unwrap();
    Setup { upper, lower, ovl }
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

fn at(dir: &Arc<dyn Inode>, path: &str) -> Arc<dyn Inode> {
    path.split('/')
        .fold(dir.clone(), |d, name| d.lookup(name).unwrap())
}

fn is_whiteout(n: &Arc<dyn Inode>) -> bool {
    let st = n.stat().unwrap();
    st.mode & vfs::S_IFMT == vfs::S_IFCHR && st.rdev == 0
}

#[test]
fn new_needs_directories() {
    let s = setup();
    let f = s.lower.lookup("a").unwrap();
    assert_eq!(
        overlay::new(s.upper.clone(), f, 5).err(),
        Some(Errno::ENOTDIR)
    );
}

#[test]
fn lookup_precedence() {
    let s = setup();
    file(&s.upper, "a", b"upper a");
    file(&s.upper, "c", b"upper c");
    let ud = mkdir(&s.upper, "d");
    file(&ud, "z", b"z");

    assert_eq!(contents(&s.ovl.lookup("a").unwrap()), b"upper a");
    assert_eq!(contents(&s.ovl.lookup("b").unwrap()), b"lower b");
    assert_eq!(contents(&s.ovl.lookup("c").unwrap()), b"upper c");
    assert_eq!(s.ovl.lookup("s").unwrap().readlink().unwrap(), "a");
    assert_eq!(s.ovl.lookup("nope").err(), Some(Errno::ENOENT));
    let d = s.ovl.lookup("d").unwrap();
    assert_eq!(names(&d), ["x", "y", "z"]);
    assert_eq!(contents(&d.lookup("x").unwrap()), b"x");
    assert_eq!(contents(&d.lookup("z").unwrap()), b"z");

    // Inode numbers: lower ones for lower and merged nodes, upper ones
    // marked with bit 62; dev is the overlay's.
    let lb = s.lower.lookup("b").unwrap().stat().unwrap();
    let ob = s.ovl.lookup("b").unwrap().stat().unwrap();
    assert_eq!((ob.ino, ob.dev), (lb.ino, 99));
    let uc = s.upper.lookup("c").unwrap().stat().unwrap();
    assert_eq!(
        s.ovl.lookup("c").unwrap().stat().unwrap().ino,
        uc.ino | 1 << 62
    );
    let ld = s.lower.lookup("d").unwrap().stat().unwrap();
    let od = d.stat().unwrap();
    assert_eq!((od.ino, od.dev, od.nlink), (ld.ino, 99, 1));

    // The same name gives the same node.
    let b1 = s.ovl.lookup("b").unwrap();
    let b2 = s.ovl.lookup("b").unwrap();
    assert!(std::ptr::eq(
        Arc::as_ptr(&b1) as *const (),
        Arc::as_ptr(&b2) as *const ()
    ));
}

#[test]
fn upper_file_hides_lower_dir_and_opaque_dir_hides_lower_entries() {
    let s = setup();
    file(&s.upper, "d", b"not a dir");
    let e = mkdir(&s.upper, "e");
    e.setxattr(OPAQUE, b"y", 0).unwrap();
    file(&s.lower.lookup("e").unwrap(), "hidden", b"");
    assert_eq!(contents(&s.ovl.lookup("d").unwrap()), b"not a dir");
    let oe = s.ovl.lookup("e").unwrap();
    assert_eq!(names(&oe), Vec::<String>::new());
    assert_eq!(oe.lookup("hidden").err(), Some(Errno::ENOENT));
    assert_eq!(oe.listxattr().unwrap(), Vec::<String>::new());
    assert_eq!(oe.getxattr(OPAQUE), Err(Errno::EOPNOTSUPP));
}

#[test]
fn read_dir_merges_and_hides_whiteouts() {
    let s = setup();
    file(&s.upper, "c", b"");
    s.upper
        .create("b", NodeKind::CharDevice(0), 0, (0, 0))
        .unwrap();
    let entries = s.ovl.read_dir().unwrap();
    let mut got: Vec<(String, u8)> = entries.iter().map(|e| (e.name.clone(), e.kind)).collect();
    got.sort();
    let want: Vec<(String, u8)> = [
        ("a", libc::DT_REG),
        ("c", libc::DT_REG),
        ("d", libc::DT_DIR),
        ("e", libc::DT_DIR),
        ("s", libc::DT_LNK),
    ]
    .iter()
    .map(|(n, k)| (n.to_string(), *k))
    .collect();
    assert_eq!(got, want);
    // d_ino agrees with st_ino.
    for e in &entries {
        assert_eq!(e.ino, s.ovl.lookup(&e.name).unwrap().stat().unwrap().ino);
    }
    assert_eq!(s.ovl.lookup("b").err(), Some(Errno::ENOENT));
}

#[test]
fn unlink_leaves_a_whiteout() {
    let s = setup();
    s.ovl.unlink("b").unwrap();
    assert!(is_whiteout(&s.upper.lookup("b").unwrap()));
    assert_eq!(contents(&s.lower.lookup("b").unwrap()), b"lower b");
    assert_eq!(s.ovl.lookup("b").err(), Some(Errno::ENOENT));
    assert!(!names(&s.ovl).contains(&"b".to_string()));
    assert_eq!(s.ovl.unlink("b"), Err(Errno::ENOENT));
    assert_eq!(s.ovl.unlink("d"), Err(Errno::EISDIR));

    // Creating over the whiteout replaces it.
    file(&s.ovl, "b", b"new b");
    assert_eq!(contents(&s.ovl.lookup("b").unwrap()), b"new b");
    assert!(!is_whiteout(&s.upper.lookup("b").unwrap()));

    // An upper-only file goes without a trace.
    file(&s.ovl, "c", b"");
    s.ovl.unlink("c").unwrap();
    assert_eq!(s.upper.lookup("c").err(), Some(Errno::ENOENT));

    // Inside a lower-only directory: the directory is copied up first.
    let d = s.ovl.lookup("d").unwrap();
    d.unlink("x").unwrap();
    assert!(is_whiteout(&at(&s.upper, "d/x")));
    assert_eq!(names(&d), ["y"]);
    assert_eq!(names(&s.lower.lookup("d").unwrap()), ["x", "y"]);
}

#[test]
fn rmdir_then_mkdir_gives_an_empty_opaque_dir() {
    let s = setup();
    assert_eq!(s.ovl.rmdir("d"), Err(Errno::ENOTEMPTY));
    assert_eq!(s.ovl.rmdir("a"), Err(Errno::ENOTDIR));
    let d = s.ovl.lookup("d").unwrap();
    d.unlink("x").unwrap();
    assert_eq!(s.ovl.rmdir("d"), Err(Errno::ENOTEMPTY));
    d.unlink("y").unwrap();
    s.ovl.rmdir("d").unwrap();
    assert!(is_whiteout(&s.upper.lookup("d").unwrap()));
    assert_eq!(s.ovl.lookup("d").err(), Some(Errno::ENOENT));
    assert_eq!(names(&s.lower.lookup("d").unwrap()), ["x", "y"]);

    let d = mkdir(&s.ovl, "d");
    assert_eq!(names(&d), Vec::<String>::new());
    assert_eq!(d.lookup("x").err(), Some(Errno::ENOENT));
    let ud = s.upper.lookup("d").unwrap();
    assert_eq!(ud.getxattr(OPAQUE).unwrap(), b"y");
    assert_eq!(d.listxattr().unwrap(), Vec::<String>::new());
    // Looked up afresh through a new overlay, it is still opaque.
    let again = overlay::new(s.upper.clone(), s.lower.clone(), 100).unwrap();
    assert_eq!(names(&again.lookup("d").unwrap()), Vec::<String>::new());

    // An empty lower-only directory goes the same way.
    s.ovl.rmdir("e").unwrap();
    assert!(is_whiteout(&s.upper.lookup("e").unwrap()));
}

#[test]
fn copy_up_on_write() {
    let s = setup();
    let ld = s.lower.lookup("d").unwrap();
    let lx = ld.lookup("x").unwrap();
    lx.setattr(&SetAttr {
        mode: Some(0o640),
        uid: Some(7),
        gid: Some(8),
        atime: Some(TimeUpdate::At(TimeSpec { sec: 111, nsec: 1 })),
        mtime: Some(TimeUpdate::At(TimeSpec { sec: 222, nsec: 2 })),
        ..SetAttr::default()
    })
    .unwrap();
    lx.setxattr("user.tag", b"v", 0).unwrap();
    let lower_ino = lx.stat().unwrap().ino;

    let x = at(&s.ovl, "d/x");
    let before = x.stat().unwrap();
    assert_eq!(before.ino, lower_ino);
    // Read-only opens do not copy up.
    x.open(libc::O_RDONLY).unwrap();
    assert_eq!(s.upper.lookup("d").err(), Some(Errno::ENOENT));

    let f = x.open(libc::O_RDWR).unwrap();
    let ux = at(&s.upper, "d/x");
    let ust = ux.stat().unwrap();
    assert_eq!((ust.atime_sec, ust.atime_nsec), (111, 1));
    assert_eq!((ust.mtime_sec, ust.mtime_nsec), (222, 2));
    assert_eq!(f.write(b"X!", 1), Ok(2));
    assert_eq!(contents(&x), b"xX!");
    assert_eq!(contents(&lx), b"x");
    assert_eq!(contents(&ux), b"xX!");
    let ust = ux.stat().unwrap();
    assert_eq!(ust.mode, vfs::S_IFREG | 0o640);
    assert_eq!((ust.uid, ust.gid), (7, 8));
    assert_eq!(ux.getxattr("user.tag").unwrap(), b"v");
    let after = x.stat().unwrap();
    assert_eq!((after.ino, after.mode, after.uid), (lower_ino, ust.mode, 7));
    assert_eq!(x.listxattr().unwrap(), ["user.tag"]);
    // The parent was copied up empty; its lower entries still show.
    assert_eq!(names(&s.upper.lookup("d").unwrap()), ["x"]);
    assert_eq!(names(&s.ovl.lookup("d").unwrap()), ["x", "y"]);
    // The inode number survives a remount.
    let again = overlay::new(s.upper.clone(), s.lower.clone(), 100).unwrap();
    assert_eq!(at(&again, "d/x").stat().unwrap().ino, lower_ino);
}

#[test]
fn copy_up_keeps_sparse_files_sparse() {
    let s = setup();
    let la = s.lower.lookup("a").unwrap();
    la.setattr(&SetAttr {
        size: Some(1 << 30),
        ..SetAttr::default()
    })
    .unwrap();
    let a = s.ovl.lookup("a").unwrap();
    a.open(libc::O_WRONLY).unwrap().write(b"A", 0).unwrap();
    let st = s.upper.lookup("a").unwrap().stat().unwrap();
    assert_eq!((st.size, st.blocks), (1 << 30, 8));
    let mut buf = [0u8; 7];
    a.open(libc::O_RDONLY).unwrap().read(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"Aower a");
}

#[test]
fn chmod_copies_up() {
    let s = setup();
    let a = s.ovl.lookup("a").unwrap();
    a.setattr(&SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    })
    .unwrap();
    assert_eq!(
        s.lower.lookup("a").unwrap().stat().unwrap().mode & 0o7777,
        0o644
    );
    let ua = s.upper.lookup("a").unwrap();
    assert_eq!(ua.stat().unwrap().mode, vfs::S_IFREG | 0o600);
    assert_eq!(contents(&ua), b"lower a");
    // Seen through a fresh lookup as well as the node already held.
    assert_eq!(
        s.ovl.lookup("a").unwrap().stat().unwrap().mode & 0o7777,
        0o600
    );
    assert_eq!(a.stat().unwrap().mode & 0o7777, 0o600);

    // Symlinks copy up with their target.
    let l = s.ovl.lookup("s").unwrap();
    l.setattr(&SetAttr {
        uid: Some(3),
        ..SetAttr::default()
    })
    .unwrap();
    assert_eq!(s.upper.lookup("s").unwrap().readlink().unwrap(), "a");

    // Truncating a directory is refused before any copy-up.
    let d = s.ovl.lookup("d").unwrap();
    assert_eq!(
        d.setattr(&SetAttr {
            size: Some(0),
            ..SetAttr::default()
        }),
        Err(Errno::EISDIR)
    );
    assert_eq!(s.upper.lookup("d").err(), Some(Errno::ENOENT));
}

#[test]
fn xattrs_copy_up() {
    let s = setup();
    let b = s.ovl.lookup("b").unwrap();
    assert_eq!(b.removexattr("user.none"), Err(Errno::ENODATA));
    assert_eq!(s.upper.lookup("b").err(), Some(Errno::ENOENT));
    b.setxattr("user.k", b"v", 0).unwrap();
    assert_eq!(b.getxattr("user.k").unwrap(), b"v");
    assert_eq!(
        s.lower.lookup("b").unwrap().getxattr("user.k"),
        Err(Errno::ENODATA)
    );
    let ub = s.upper.lookup("b").unwrap();
    assert!(
        ub.listxattr().unwrap().len() > 1,
        "the origin xattr is there"
    );
    assert_eq!(b.listxattr().unwrap(), ["user.k"]);
    assert_eq!(
        b.setxattr("trusted.overlay.opaque", b"y", 0),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn statfs_is_the_uppers() {
    let s = setup();
    let st = s.ovl.statfs().unwrap();
    assert_eq!(st.fs_type, 0x794c_7630);
    assert_eq!(st.bsize, s.upper.statfs().unwrap().bsize);
}

#[test]
fn rename_lower_file_leaves_a_whiteout() {
    let s = setup();
    let b = s.ovl.lookup("b").unwrap();
    let ino = b.stat().unwrap().ino;
    s.ovl.rename("b", &s.ovl, "moved", 0).unwrap();
    assert!(is_whiteout(&s.upper.lookup("b").unwrap()));
    assert_eq!(contents(&s.upper.lookup("moved").unwrap()), b"lower b");
    assert_eq!(contents(&s.lower.lookup("b").unwrap()), b"lower b");
    assert_eq!(s.ovl.lookup("b").err(), Some(Errno::ENOENT));
    let m = s.ovl.lookup("moved").unwrap();
    assert_eq!(m.stat().unwrap().ino, ino);
    assert_eq!(b.stat().unwrap().ino, ino);

    // Onto a lower file: the target is covered, the old name whited out.
    s.ovl.rename("moved", &s.ovl, "a", 0).unwrap();
    assert_eq!(contents(&s.ovl.lookup("a").unwrap()), b"lower b");
    // "moved" never existed in the lower: no whiteout needed.
    assert_eq!(s.upper.lookup("moved").err(), Some(Errno::ENOENT));
    assert_eq!(s.ovl.lookup("moved").err(), Some(Errno::ENOENT));
    assert_eq!(names(&s.ovl), ["a", "d", "e", "s"]);

    // Back over a whiteout.
    s.ovl.rename("a", &s.ovl, "b", RENAME_NOREPLACE).unwrap();
    assert!(!is_whiteout(&s.upper.lookup("b").unwrap()));
    assert!(is_whiteout(&s.upper.lookup("a").unwrap()));
    assert_eq!(names(&s.ovl), ["b", "d", "e", "s"]);
}

#[test]
fn rename_of_lower_directories_is_exdev() {
    let s = setup();
    assert_eq!(s.ovl.rename("d", &s.ovl, "d2", 0), Err(Errno::EXDEV));
    // A merged directory too.
    file(&s.ovl.lookup("e").unwrap(), "new", b"");
    assert_eq!(s.ovl.rename("e", &s.ovl, "e2", 0), Err(Errno::EXDEV));
    assert_eq!(names(&s.ovl), ["a", "b", "d", "e", "s"]);
    // An upper-only directory moves.
    let n = mkdir(&s.ovl, "n");
    file(&n, "inside", b"");
    s.ovl.rename("n", &s.ovl, "n2", 0).unwrap();
    assert_eq!(names(&s.ovl.lookup("n2").unwrap()), ["inside"]);
    assert_eq!(s.upper.lookup("n").err(), Some(Errno::ENOENT));
}

#[test]
fn rename_replacement_rules() {
    let s = setup();
    assert_eq!(s.ovl.rename("a", &s.ovl, "d", 0), Err(Errno::EISDIR));
    let n = mkdir(&s.ovl, "n");
    assert_eq!(s.ovl.rename("n", &s.ovl, "a", 0), Err(Errno::ENOTDIR));
    assert_eq!(s.ovl.rename("n", &s.ovl, "d", 0), Err(Errno::ENOTEMPTY));
    assert_eq!(s.ovl.rename("n", &n, "x", 0), Err(Errno::EINVAL));
    assert_eq!(
        s.ovl.rename("a", &s.ovl, "b", RENAME_NOREPLACE),
        Err(Errno::EEXIST)
    );
    s.ovl.rename("a", &s.ovl, "a", 0).unwrap();
    assert_eq!(contents(&s.ovl.lookup("a").unwrap()), b"lower a");

    // An upper directory replaces the empty lower-only "e" and must hide
    // what the lower has there.
    file(&n, "mine", b"");
    file(&s.lower.lookup("e").unwrap(), "late", b"");
    s.ovl.lookup("e").unwrap().unlink("late").unwrap();
    s.ovl.rename("n", &s.ovl, "e", 0).unwrap();
    assert_eq!(names(&s.ovl.lookup("e").unwrap()), ["mine"]);
    assert_eq!(s.upper.lookup("e").unwrap().getxattr(OPAQUE).unwrap(), b"y");
    assert_eq!(s.ovl.lookup("n").err(), Some(Errno::ENOENT));
}

#[test]
fn rename_exchange() {
    let s = setup();
    file(&s.ovl, "p", b"p");
    mkdir(&s.ovl, "q");
    assert_eq!(
        s.ovl.rename("p", &s.ovl, "missing", RENAME_EXCHANGE),
        Err(Errno::ENOENT)
    );
    s.ovl.rename("p", &s.ovl, "q", RENAME_EXCHANGE).unwrap();
    assert_eq!(contents(&s.ovl.lookup("q").unwrap()), b"p");
    assert_eq!(
        s.ovl.lookup("p").unwrap().stat().unwrap().mode & vfs::S_IFMT,
        vfs::S_IFDIR
    );
    assert_eq!(
        s.ovl.rename("p", &s.ovl, "d", RENAME_EXCHANGE),
        Err(Errno::EXDEV)
    );
}

#[test]
fn link_copies_up_the_target() {
    let s = setup();
    let a = s.ovl.lookup("a").unwrap();
    let ino = a.stat().unwrap().ino;
    let d = s.ovl.lookup("d").unwrap();
    d.link("a2", &a).unwrap();
    let ua = s.upper.lookup("a").unwrap();
    assert_eq!(ua.stat().unwrap().nlink, 2);
    assert_eq!(
        at(&s.upper, "d/a2").stat().unwrap().ino,
        ua.stat().unwrap().ino
    );
    assert_eq!(d.lookup("a2").unwrap().stat().unwrap().ino, ino);
    assert_eq!(a.stat().unwrap().ino, ino);
    assert_eq!(d.link("x", &a), Err(Errno::EEXIST));
    assert_eq!(s.ovl.link("dd", &d), Err(Errno::EPERM));
    let other = tmp(3);
    let f = file(&other, "f", b"");
    assert_eq!(s.ovl.link("f", &f), Err(Errno::EXDEV));
    assert_eq!(s.ovl.rename("a", &other, "a", 0), Err(Errno::EXDEV));
}

#[test]
fn removed_directory_is_not_resurrected() {
    let s = setup();
    let e = s.ovl.lookup("e").unwrap();
    s.ovl.rmdir("e").unwrap();
    assert_eq!(
        e.create("f", NodeKind::Regular, 0o644, (0, 0)).err(),
        Some(Errno::ENOENT)
    );
    assert!(is_whiteout(&s.upper.lookup("e").unwrap()));
}

#[test]
fn concurrent_writers_share_one_copy_up() {
    let s = setup();
    let a = s.ovl.lookup("a").unwrap();
    std::thread::scope(|sc| {
        for i in 0..8u8 {
            let a = a.clone();
            sc.spawn(move || {
                let f = a.open(libc::O_WRONLY).unwrap();
                assert_eq!(f.write(&[b'0' + i], 8 + u64::from(i)), Ok(1));
            });
        }
    });
    assert_eq!(contents(&a), b"lower a\x0001234567");
    assert_eq!(
        contents(&s.upper.lookup("a").unwrap()),
        b"lower a\x0001234567"
    );
    assert_eq!(contents(&s.lower.lookup("a").unwrap()), b"lower a");
}
