//! The shared VFS machinery (path walk, mounts, permission checks, file
//! descriptions) over tmpfs.

use std::sync::Arc;

use vfs::inode::SetAttr;
use vfs::mount::MS_RDONLY;
use vfs::tmpfs::{self, TmpfsOptions};
use vfs::walk::Context;
use vfs::{Creds, Errno, Inode, Location, Mounts, NodeKind};

fn tmpfs() -> Arc<dyn Inode> {
    tmpfs::new(TmpfsOptions {
        dev: 7,
        mode: 0o1777,
        uid: 0,
        gid: 0,
        size_limit: 1 << 30,
        devices: None,
        memory: None,
        fifos: None,
    })
}

struct World {
    mounts: Mounts,
    root: Location,
    creds: Creds,
}

impl World {
    fn new() -> World {
        let mounts = Mounts::new(tmpfs(), "tmpfs", "none", 0);
        let root = mounts.root();
        World {
            mounts,
            root,
            creds: Creds::root(),
        }
    }

    fn ctx(&self) -> Context<'_> {
        Context {
            mounts: &self.mounts,
            root: &self.root,
            creds: &self.creds,
        }
    }

    fn as_user(&self, uid: u32) -> World {
        World {
            mounts: Mounts::new(tmpfs(), "x", "x", 0),
            root: self.root.clone(),
            creds: Creds {
                uid,
                gid: uid,
                groups: vec![],
                caps: 0,
            },
        }
    }

    fn mkdir(&self, p: &str) {
        self.ctx()
            .make(&self.root, p, NodeKind::Directory, 0o755)
            .unwrap();
    }

    fn write(&self, p: &str, data: &[u8]) {
        let f = self
            .ctx()
            .open(
                &self.root,
                p,
                libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
                0o644,
                0,
            )
            .unwrap();
        assert_eq!(f.write(data).unwrap(), data.len());
    }

    fn read(&self, p: &str) -> Result<Vec<u8>, Errno> {
        let f = self.ctx().open(&self.root, p, libc::O_RDONLY, 0, 0)?;
        let mut buf = vec![0u8; 4096];
        let n = f.read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn symlink(&self, target: &str, p: &str) {
        self.ctx()
            .make(&self.root, p, NodeKind::Symlink(target.into()), 0o777)
            .unwrap();
    }

    fn lookup(&self, p: &str) -> Result<Location, Errno> {
        self.ctx().lookup(&self.root, p, true)
    }
}

#[test]
fn files_are_created_written_and_read_back() {
    let w = World::new();
    w.mkdir("/a");
    w.write("/a/f", b"hello");
    assert_eq!(w.read("/a/f").unwrap(), b"hello");
    assert_eq!(w.read("/a//./f").unwrap(), b"hello");
    assert_eq!(w.read("/a/../a/f").unwrap(), b"hello");
    assert_eq!(w.read("/a/g").unwrap_err(), Errno::ENOENT);
    assert_eq!(w.read("/a/f/x").unwrap_err(), Errno::ENOTDIR);
    assert_eq!(w.read("/a/f/").unwrap_err(), Errno::ENOTDIR);
    assert_eq!(w.read("").unwrap_err(), Errno::ENOENT);
}

#[test]
fn symlinks_are_followed_up_to_forty() {
    let w = World::new();
    w.mkdir("/d");
    w.write("/d/target", b"t");
    w.symlink("d/target", "/rel");
    w.symlink("/d/target", "/abs");
    w.symlink("../d", "/d/up");
    assert_eq!(w.read("/rel").unwrap(), b"t");
    assert_eq!(w.read("/abs").unwrap(), b"t");
    assert_eq!(w.read("/d/up/up/up/target").unwrap(), b"t");
    // A chain of 40 links resolves; 41 is ELOOP.
    w.symlink("/d/target", "/l0");
    for i in 1..=40 {
        w.symlink(&format!("/l{}", i - 1), &format!("/l{i}"));
    }
    assert_eq!(w.read("/l39").unwrap(), b"t");
    assert_eq!(w.read("/l40").unwrap_err(), Errno::ELOOP);
    w.symlink("/loop", "/loop");
    assert_eq!(w.read("/loop").unwrap_err(), Errno::ELOOP);
    // O_NOFOLLOW on a final symlink is ELOOP; O_PATH|O_NOFOLLOW opens it.
    let ctx = w.ctx();
    assert_eq!(
        ctx.open(&w.root, "/rel", libc::O_RDONLY | libc::O_NOFOLLOW, 0, 0)
            .err(),
        Some(Errno::ELOOP)
    );
    let p = ctx
        .open(&w.root, "/rel", libc::O_PATH | libc::O_NOFOLLOW, 0, 0)
        .unwrap();
    assert_eq!(p.stat().unwrap().mode & vfs::S_IFMT, vfs::S_IFLNK);
    // lookup without following returns the link itself.
    let l = ctx.lookup(&w.root, "/rel", false).unwrap();
    assert_eq!(l.inode().readlink().unwrap(), "d/target");
    // A trailing slash follows the link and needs a directory.
    w.symlink("d", "/dl");
    assert!(ctx.lookup(&w.root, "/dl/", false).unwrap().dentry.is_dir());
}

#[test]
fn creating_through_a_dangling_symlink_creates_its_target() {
    let w = World::new();
    w.symlink("/made", "/dangling");
    w.write("/dangling", b"x");
    assert_eq!(w.read("/made").unwrap(), b"x");
    let ctx = w.ctx();
    assert_eq!(
        ctx.open(
            &w.root,
            "/dangling",
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
            0o644,
            0
        )
        .err(),
        Some(Errno::EEXIST)
    );
    assert_eq!(
        ctx.open(
            &w.root,
            "/newdir/",
            libc::O_CREAT | libc::O_WRONLY,
            0o644,
            0
        )
        .err(),
        Some(Errno::EISDIR)
    );
}

#[test]
fn mounts_are_entered_and_left_by_dotdot() {
    let w = World::new();
    w.mkdir("/mnt");
    w.write("/mnt/under", b"hidden");
    let at = w.lookup("/mnt").unwrap();
    let m = w.mounts.mount_fs(&at, tmpfs(), "tmpfs", "t", 0).unwrap();
    w.write("/mnt/over", b"shown");
    assert_eq!(w.read("/mnt/under").unwrap_err(), Errno::ENOENT);
    assert_eq!(w.read("/mnt/over").unwrap(), b"shown");
    w.write("/top", b"top");
    assert_eq!(w.read("/mnt/../top").unwrap(), b"top");
    let inside = w.lookup("/mnt").unwrap();
    assert!(Arc::ptr_eq(&inside.mount, &m));
    assert_eq!(
        w.ctx().path_of(&w.lookup("/mnt/over").unwrap()),
        "/mnt/over"
    );
    // A mount point cannot be removed or renamed over.
    assert_eq!(w.ctx().rmdir(&w.root, "/mnt").err(), Some(Errno::EBUSY));
    w.mounts.unmount(&inside).unwrap();
    assert_eq!(w.read("/mnt/under").unwrap(), b"hidden");
}

#[test]
fn read_only_mounts_refuse_writes() {
    let w = World::new();
    w.mkdir("/ro");
    let at = w.lookup("/ro").unwrap();
    let fs = tmpfs();
    fs.create("f", NodeKind::Regular, 0o644, (0, 0)).unwrap();
    w.mounts.mount_fs(&at, fs, "tmpfs", "t", MS_RDONLY).unwrap();
    let ctx = w.ctx();
    assert_eq!(
        ctx.open(&w.root, "/ro/f", libc::O_WRONLY, 0, 0).err(),
        Some(Errno::EROFS)
    );
    assert_eq!(
        ctx.open(&w.root, "/ro/g", libc::O_CREAT | libc::O_WRONLY, 0o644, 0)
            .err(),
        Some(Errno::EROFS)
    );
    assert_eq!(ctx.unlink(&w.root, "/ro/f").err(), Some(Errno::EROFS));
    assert!(ctx.open(&w.root, "/ro/f", libc::O_RDONLY, 0, 0).is_ok());
}

#[test]
fn dotdot_stops_at_the_root() {
    let w = World::new();
    w.mkdir("/jail");
    w.write("/jail/in", b"in");
    w.write("/out", b"out");
    let jail = w.lookup("/jail").unwrap();
    let creds = Creds::root();
    let ctx = Context {
        mounts: &w.mounts,
        root: &jail,
        creds: &creds,
    };
    let l = ctx.lookup(&jail, "../../in", true).unwrap();
    assert_eq!(ctx.path_of(&l), "/in");
    assert_eq!(ctx.lookup(&jail, "/out", true).err(), Some(Errno::ENOENT));
    w.symlink("/in", "/jail/abs");
    assert!(ctx.lookup(&jail, "abs", true).is_ok());
}

#[test]
fn openat2_resolve_flags_confine_the_walk() {
    use vfs::walk::{RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_NO_SYMLINKS, RESOLVE_NO_XDEV};
    let w = World::new();
    w.mkdir("/base");
    w.write("/base/f", b"f");
    w.write("/secret", b"s");
    w.symlink("/secret", "/base/abs");
    w.symlink("f", "/base/rel");
    let base = w.lookup("/base").unwrap();
    let ctx = w.ctx();
    let r = |p: &str, flags: u64| ctx.lookup_resolve(&base, p, true, flags).map(|_| ());
    assert_eq!(r("../secret", RESOLVE_BENEATH), Err(Errno::EXDEV));
    assert_eq!(r("/secret", RESOLVE_BENEATH), Err(Errno::EXDEV));
    assert_eq!(r("abs", RESOLVE_BENEATH), Err(Errno::EXDEV));
    assert_eq!(r("rel", RESOLVE_BENEATH), Ok(()));
    assert_eq!(r("rel", RESOLVE_NO_SYMLINKS), Err(Errno::ELOOP));
    // IN_ROOT: "/" and ".." mean the starting directory.
    let f = ctx
        .lookup_resolve(&base, "/../f", true, RESOLVE_IN_ROOT)
        .unwrap();
    assert_eq!(ctx.path_of(&f), "/base/f");
    w.mkdir("/base/m");
    let at = w.lookup("/base/m").unwrap();
    w.mounts.mount_fs(&at, tmpfs(), "tmpfs", "t", 0).unwrap();
    assert_eq!(r("m", RESOLVE_NO_XDEV), Err(Errno::EXDEV));
}

#[test]
fn permissions_follow_owner_group_other() {
    let w = World::new();
    w.mkdir("/home");
    w.write("/home/private", b"p");
    let p = w.lookup("/home/private").unwrap();
    w.ctx()
        .setattr(
            &p,
            SetAttr {
                mode: Some(0o600),
                ..SetAttr::default()
            },
            false,
        )
        .unwrap();
    let u = w.as_user(1000);
    let ctx = Context {
        mounts: &w.mounts,
        root: &w.root,
        creds: &u.creds,
    };
    assert_eq!(
        ctx.open(&w.root, "/home/private", libc::O_RDONLY, 0, 0)
            .err(),
        Some(Errno::EACCES)
    );
    // Not the owner: chmod is EPERM, creating in a 0755 root-owned dir EACCES.
    assert_eq!(
        ctx.setattr(
            &p,
            SetAttr {
                mode: Some(0o644),
                ..SetAttr::default()
            },
            false
        )
        .err(),
        Some(Errno::EPERM)
    );
    assert_eq!(
        ctx.open(
            &w.root,
            "/home/mine",
            libc::O_CREAT | libc::O_WRONLY,
            0o644,
            0
        )
        .err(),
        Some(Errno::EACCES)
    );
    // The sticky root (01777) lets the user create, but not remove root's files.
    let f = ctx
        .open(&w.root, "/mine", libc::O_CREAT | libc::O_WRONLY, 0o644, 0)
        .unwrap();
    assert_eq!(f.stat().unwrap().uid, 1000);
    w.write("/roots", b"r");
    assert_eq!(ctx.unlink(&w.root, "/roots").err(), Some(Errno::EPERM));
    ctx.unlink(&w.root, "/mine").unwrap();
    // Search permission is needed to walk through a directory.
    w.mkdir("/closed");
    w.write("/closed/f", b"f");
    let c = w.lookup("/closed").unwrap();
    w.ctx()
        .setattr(
            &c,
            SetAttr {
                mode: Some(0o700),
                ..SetAttr::default()
            },
            false,
        )
        .unwrap();
    assert_eq!(
        ctx.lookup(&w.root, "/closed/f", true).err(),
        Some(Errno::EACCES)
    );
}

#[test]
fn rename_keeps_dentries_and_refuses_loops() {
    let w = World::new();
    w.mkdir("/a");
    w.mkdir("/a/b");
    w.write("/a/b/f", b"f");
    let f = w.lookup("/a/b/f").unwrap();
    let ctx = w.ctx();
    assert_eq!(
        ctx.rename(&w.root, "/a", &w.root, "/a/b/c", 0).err(),
        Some(Errno::EINVAL)
    );
    ctx.rename(&w.root, "/a", &w.root, "/z", 0).unwrap();
    // An open location follows the rename.
    assert_eq!(ctx.path_of(&f), "/z/b/f");
    assert_eq!(w.read("/z/b/f").unwrap(), b"f");
    assert_eq!(w.read("/a/b/f").unwrap_err(), Errno::ENOENT);
    assert_eq!(
        ctx.rename(&w.root, "/z/.", &w.root, "/y", 0).err(),
        Some(Errno::EBUSY)
    );
    ctx.unlink(&w.root, "/z/b/f").unwrap();
    assert_eq!(ctx.path_of(&f), "/z/b/f (deleted)");
}

#[test]
fn getdents_lists_dot_dotdot_and_entries() {
    let w = World::new();
    w.mkdir("/d");
    for n in ["one", "two", "three"] {
        w.write(&format!("/d/{n}"), b"");
    }
    let d = w
        .ctx()
        .open(&w.root, "/d", libc::O_RDONLY | libc::O_DIRECTORY, 0, 0)
        .unwrap();
    let mut names = Vec::new();
    // A small buffer forces several calls.
    let mut buf = vec![0u8; 40];
    loop {
        let n = d.getdents(&mut buf, 1).unwrap();
        if n == 0 {
            break;
        }
        let mut at = 0;
        while at < n {
            let reclen = u16::from_le_bytes([buf[at + 16], buf[at + 17]]) as usize;
            let name = &buf[at + 19..at + reclen];
            let end = name.iter().position(|&b| b == 0).unwrap();
            names.push(String::from_utf8(name[..end].to_vec()).unwrap());
            at += reclen;
        }
    }
    names.sort();
    assert_eq!(names, [".", "..", "one", "three", "two"]);
    // Rewound, a buffer too small for one record is EINVAL.
    d.seek(0, libc::SEEK_SET).unwrap();
    assert_eq!(d.getdents(&mut [0u8; 8], 1).err(), Some(Errno::EINVAL));
}
