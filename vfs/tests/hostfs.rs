//! The host-directory filesystem against real host trees.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vfs::hostfs::{new_root, HostFile};
use vfs::inode::{RENAME_EXCHANGE, RENAME_NOREPLACE};
use vfs::{DirEntry, Errno, FileOps, Inode, NodeKind, SetAttr, TimeSpec, TimeUpdate};
use vfs::{S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};

const DT_DIR: u8 = 4;
const DT_REG: u8 = 8;
const DT_LNK: u8 = 10;

/// A host directory tree that is removed again when dropped:
/// `a.txt` ("hello"), `hard` (a hard link to it), `sub/b.txt` ("bee"),
/// `rel` -> `sub/b.txt`, `abs` -> `/etc`.
struct Tree(PathBuf);

impl Tree {
    fn new(tag: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("vfs-hostfs-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("a.txt"), "hello").unwrap();
        fs::hard_link(dir.join("a.txt"), dir.join("hard")).unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/b.txt"), "bee").unwrap();
        std::os::unix::fs::symlink("sub/b.txt", dir.join("rel")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("abs")).unwrap();
        Tree(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn root(&self, read_only: bool) -> Arc<dyn Inode> {
        open_root(&self.0, read_only)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn open_root(path: &Path, read_only: bool) -> Arc<dyn Inode> {
    new_root(
        OwnedFd::from(fs::File::open(path).unwrap()),
        read_only,
        false,
    )
    .unwrap()
}

fn read_all(file: &Arc<dyn FileOps>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        let n = file.read(&mut buf, out.len() as u64).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn names(entries: &[DirEntry]) -> Vec<String> {
    let mut names: Vec<_> = entries.iter().map(|e| e.name.clone()).collect();
    names.sort();
    names
}

#[test]
fn lookup_stat_and_read() {
    let tree = Tree::new("read");
    let root = tree.root(true);

    let a = root.lookup("a.txt").unwrap();
    let st = a.stat().unwrap();
    let host = fs::metadata(tree.path("a.txt")).unwrap();
    assert_eq!((st.dev, st.ino), (host.dev(), host.ino()));
    assert_eq!(st.mode & S_IFMT, S_IFREG);
    assert_eq!(st.size, 5);
    assert_eq!(st.nlink, 2);

    // The hard link is the same host file.
    let hard = root.lookup("hard").unwrap().stat().unwrap();
    assert_eq!((hard.dev, hard.ino), (st.dev, st.ino));

    let file = a.open(libc::O_RDONLY).unwrap();
    assert!(file.seekable());
    assert!(file.host_fd().is_some());
    assert_eq!(read_all(&file), b"hello");
    let mut buf = [0u8; 10];
    assert_eq!(file.read(&mut buf, 1).unwrap(), 4);
    assert_eq!(&buf[..4], b"ello");
    assert_eq!(file.stat().unwrap().ino, st.ino);

    let sub = root.lookup("sub").unwrap();
    assert_eq!(sub.stat().unwrap().mode & S_IFMT, S_IFDIR);
    let b = sub.lookup("b.txt").unwrap().open(libc::O_RDONLY).unwrap();
    assert_eq!(read_all(&b), b"bee");

    assert_eq!(root.lookup("missing").err(), Some(Errno::ENOENT));
    assert_eq!(a.lookup("x").err(), Some(Errno::ENOTDIR));
    assert_eq!(a.read_dir().err(), Some(Errno::ENOTDIR));
    assert_eq!(a.readlink().err(), Some(Errno::EINVAL));
    // Directories open for reading only.
    assert_eq!(sub.open(libc::O_RDWR).err(), Some(Errno::EISDIR));
    assert!(sub.open(libc::O_RDONLY | libc::O_DIRECTORY).is_ok());
    assert_eq!(
        a.open(libc::O_RDONLY | libc::O_DIRECTORY).err(),
        Some(Errno::ENOTDIR)
    );

    let fs_stat = root.statfs().unwrap();
    assert_eq!(fs_stat.namelen, 255);
    assert_eq!(a.statfs().unwrap().fs_type, fs_stat.fs_type);
    // xattrs are a known gap.
    assert_eq!(a.getxattr("user.x").err(), Some(Errno::ENODATA));
    assert_eq!(a.listxattr().unwrap(), Vec::<String>::new());
}

#[test]
fn read_dir_lists_entries_with_host_inodes() {
    let tree = Tree::new("readdir");
    let root = tree.root(true);
    let mut entries = root.read_dir().unwrap();
    entries.sort_by(|x, y| x.name.cmp(&y.name));
    let ino = |p: &str| fs::symlink_metadata(tree.path(p)).unwrap().ino();
    let want = |name: &str, kind| DirEntry {
        ino: ino(name),
        kind,
        name: name.to_string(),
    };
    assert_eq!(
        entries,
        vec![
            want("a.txt", DT_REG),
            want("abs", DT_LNK),
            want("hard", DT_REG),
            want("rel", DT_LNK),
            want("sub", DT_DIR),
        ]
    );
    let sub = root.lookup("sub").unwrap();
    assert_eq!(names(&sub.read_dir().unwrap()), ["b.txt"]);
}

#[test]
fn symlinks_are_nodes_of_their_own() {
    let tree = Tree::new("symlink");
    let root = tree.root(true);
    let rel = root.lookup("rel").unwrap();
    assert_eq!(rel.stat().unwrap().mode & S_IFMT, S_IFLNK);
    assert_eq!(rel.readlink().unwrap(), "sub/b.txt");
    assert_eq!(rel.open(libc::O_RDONLY).err(), Some(Errno::ELOOP));

    let abs = root.lookup("abs").unwrap();
    assert_eq!(abs.readlink().unwrap(), "/etc");
    // The node is the link, not the host's /etc.
    let host_etc = fs::metadata("/etc").unwrap();
    assert_ne!(abs.stat().unwrap().ino, host_etc.ino());
    assert_eq!(abs.lookup("passwd").err(), Some(Errno::ENOTDIR));
    assert_eq!(abs.read_dir().err(), Some(Errno::ENOTDIR));
}

#[test]
fn read_only_refuses_changes() {
    let tree = Tree::new("ro");
    let root = tree.root(true);
    let a = root.lookup("a.txt").unwrap();
    for flags in [libc::O_WRONLY, libc::O_RDWR, libc::O_RDONLY | libc::O_TRUNC] {
        assert_eq!(a.open(flags).err(), Some(Errno::EROFS), "{flags:#x}");
    }
    assert_eq!(
        root.create("new", NodeKind::Regular, 0o644, (0, 0)).err(),
        Some(Errno::EROFS)
    );
    assert_eq!(
        root.create("d", NodeKind::Directory, 0o755, (0, 0)).err(),
        Some(Errno::EROFS)
    );
    assert_eq!(root.unlink("a.txt").err(), Some(Errno::EROFS));
    assert_eq!(root.rmdir("sub").err(), Some(Errno::EROFS));
    assert_eq!(root.link("l", &a).err(), Some(Errno::EROFS));
    assert_eq!(
        root.rename("a.txt", &root, "b", 0).err(),
        Some(Errno::EROFS)
    );
    let truncate = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    assert_eq!(a.setattr(&truncate).err(), Some(Errno::EROFS));
    assert_eq!(a.setxattr("user.x", b"1", 0).err(), Some(Errno::EROFS));
    assert_eq!(fs::read(tree.path("a.txt")).unwrap(), b"hello");
    assert!(!tree.path("new").exists());
    assert!(!tree.path("d").exists());
}

#[test]
fn read_write_changes_stay_beneath_the_root() {
    let tree = Tree::new("rw");
    let root = tree.root(false);

    // create: the host umask (022 or not) does not cut the asked mode.
    let new = root
        .create("new", NodeKind::Regular, 0o666, (0, 0))
        .unwrap();
    let host = fs::metadata(tree.path("new")).unwrap();
    assert!(host.is_file());
    assert_eq!(host.permissions().mode() & 0o7777, 0o666);
    assert_eq!(
        root.create("new", NodeKind::Regular, 0o644, (0, 0)).err(),
        Some(Errno::EEXIST)
    );

    let file = new.open(libc::O_RDWR).unwrap();
    assert_eq!(file.write(b"data", 0).unwrap(), 4);
    assert_eq!(fs::read(tree.path("new")).unwrap(), b"data");
    let appending = new.open(libc::O_WRONLY | libc::O_APPEND).unwrap();
    assert_eq!(appending.append(b"xy").unwrap(), (2, 6));
    // Without O_APPEND on the host descriptor, append writes at the end too.
    assert_eq!(file.append(b"z").unwrap(), (1, 7));
    assert_eq!(fs::read(tree.path("new")).unwrap(), b"dataxyz");

    // setattr: size, mode, times.
    let attr = SetAttr {
        size: Some(2),
        mode: Some(0o600),
        mtime: Some(TimeUpdate::At(TimeSpec {
            sec: 1_000_000_000,
            nsec: 5,
        })),
        ..SetAttr::default()
    };
    new.setattr(&attr).unwrap();
    let host = fs::metadata(tree.path("new")).unwrap();
    assert_eq!(host.len(), 2);
    assert_eq!(host.permissions().mode() & 0o7777, 0o600);
    assert_eq!((host.mtime(), host.mtime_nsec()), (1_000_000_000, 5));
    let st = new.stat().unwrap();
    assert_eq!(
        (st.size, st.mtime_sec, st.mode & 0o7777),
        (2, 1_000_000_000, 0o600)
    );

    // Directories, symlinks, FIFOs.
    let d = root
        .create("d", NodeKind::Directory, 0o777, (0, 0))
        .unwrap();
    let host = fs::metadata(tree.path("d")).unwrap();
    assert!(host.is_dir());
    assert_eq!(host.permissions().mode() & 0o7777, 0o777);
    assert_eq!(
        d.setattr(&SetAttr {
            size: Some(0),
            ..SetAttr::default()
        })
        .err(),
        Some(Errno::EISDIR)
    );
    let ln = root
        .create(
            "ln",
            NodeKind::Symlink("../../etc/passwd".into()),
            0o777,
            (0, 0),
        )
        .unwrap();
    assert_eq!(ln.readlink().unwrap(), "../../etc/passwd");
    assert_eq!(
        fs::read_link(tree.path("ln")).unwrap(),
        Path::new("../../etc/passwd")
    );
    let fifo = root.create("fifo", NodeKind::Fifo, 0o644, (0, 0)).unwrap();
    assert!(fs::symlink_metadata(tree.path("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(fifo.open(libc::O_RDONLY).err(), Some(Errno::EACCES));

    // rename moves the host file, and the node still opens afterwards.
    root.rename("new", &d, "moved", 0).unwrap();
    assert!(!tree.path("new").exists());
    assert_eq!(fs::read(tree.path("d/moved")).unwrap(), b"da");
    assert_eq!(read_all(&new.open(libc::O_RDONLY).unwrap()), b"da");
    assert_eq!(
        root.rename("a.txt", &root, "hard", RENAME_NOREPLACE).err(),
        Some(Errno::EEXIST)
    );
    root.rename("a.txt", &d, "moved", RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(tree.path("a.txt")).unwrap(), b"da");
    assert_eq!(read_all(&new.open(libc::O_RDONLY).unwrap()), b"da");

    // link, unlink, rmdir.
    let a = root.lookup("hard").unwrap();
    d.link("hl", &a).unwrap();
    assert_eq!(fs::metadata(tree.path("hard")).unwrap().nlink(), 3);
    assert_eq!(fs::read(tree.path("d/hl")).unwrap(), b"hello");
    assert_eq!(d.link("dir", &d).err(), Some(Errno::EPERM));
    let other = tree.root(false);
    assert_eq!(other.link("x", &a).err(), Some(Errno::EXDEV));
    assert_eq!(
        other.rename("hard", &root, "x", 0).err(),
        Some(Errno::EXDEV)
    );
    assert_eq!(root.rmdir("d").err(), Some(Errno::ENOTEMPTY));
    assert_eq!(root.unlink("d").err(), Some(Errno::EISDIR));
    assert_eq!(root.rmdir("hard").err(), Some(Errno::ENOTDIR));
    d.unlink("hl").unwrap();
    d.unlink("moved").unwrap();
    root.rmdir("d").unwrap();
    assert!(!tree.path("d").exists());
    root.unlink("fifo").unwrap();
    assert_eq!(fifo.open(libc::O_RDONLY).err(), Some(Errno::EACCES));
    assert_eq!(fs::metadata(tree.path("hard")).unwrap().nlink(), 1);

    // Owners are set when the host lets the Sentry (root here) do so.
    let as_root = fs::metadata(tree.path("hard")).unwrap().uid() == 0;
    let owned = root
        .create("owned", NodeKind::Regular, 0o644, (1234, 5678))
        .unwrap();
    let host = fs::metadata(tree.path("owned")).unwrap();
    if as_root {
        assert_eq!((host.uid(), host.gid()), (1234, 5678));
        owned
            .setattr(&SetAttr {
                gid: Some(42),
                ..SetAttr::default()
            })
            .unwrap();
        let host = fs::metadata(tree.path("owned")).unwrap();
        assert_eq!((host.uid(), host.gid()), (1234, 42));
    }

    // Names that would leave the directory never reach the host.
    for name in ["../escape", "/tmp/escape", "..", "."] {
        assert_eq!(
            root.create(name, NodeKind::Regular, 0o644, (0, 0)).err(),
            Some(Errno::ENOENT),
            "{name}"
        );
    }
    assert!(!tree.0.parent().unwrap().join("escape").exists());
    // A symlink to a host directory is no directory to create in.
    let abs = root.lookup("abs").unwrap();
    assert_eq!(
        abs.create("x", NodeKind::Regular, 0o644, (0, 0)).err(),
        Some(Errno::ENOTDIR)
    );
    assert_eq!(abs.unlink("hostname").err(), Some(Errno::ENOTDIR));
    assert!(fs::metadata("/etc").unwrap().is_dir());
}

#[test]
fn a_renamed_over_node_is_gone() {
    let tree = Tree::new("replace");
    let root = tree.root(false);
    let hard = root.lookup("hard").unwrap();
    let sub = root.lookup("sub").unwrap();
    let b = sub.lookup("b.txt").unwrap();
    sub.rename("b.txt", &root, "hard", 0).unwrap();
    assert_eq!(fs::read(tree.path("hard")).unwrap(), b"bee");
    assert_eq!(read_all(&b.open(libc::O_RDONLY).unwrap()), b"bee");
    // The replaced node has no name left to reopen by.
    assert_eq!(hard.open(libc::O_RDONLY).err(), Some(Errno::ENOENT));
    // Replaced on the host behind our back: the stale node does not open
    // the new file.
    let a = root.lookup("a.txt").unwrap();
    fs::rename(tree.path("hard"), tree.path("a.txt")).unwrap();
    assert_eq!(a.open(libc::O_RDONLY).err(), Some(Errno::ENOENT));
}

#[test]
fn host_procfs_and_sysfs_are_invisible() {
    let root = open_root(Path::new("/"), true);
    assert_eq!(root.lookup("proc").err(), Some(Errno::ENOENT));
    assert_eq!(root.lookup("sys").err(), Some(Errno::ENOENT));
    let listed = names(&root.read_dir().unwrap());
    assert!(
        !listed.iter().any(|n| n == "proc" || n == "sys"),
        "{listed:?}"
    );
    assert!(listed.iter().any(|n| n == "etc"), "{listed:?}");
    assert!(root.lookup("etc").is_ok());
    // A procfs descriptor cannot become a root either.
    let proc = OwnedFd::from(fs::File::open("/proc").unwrap());
    assert_eq!(new_root(proc, true, false).err(), Some(Errno::EACCES));
}

#[test]
fn only_memory_devices_open() {
    let root = open_root(Path::new("/"), true);
    let dev = root.lookup("dev").unwrap();
    // Writing a device is allowed on a read-only mount, as on Linux.
    let null = dev.lookup("null").unwrap().open(libc::O_RDWR).unwrap();
    assert!(
        null.host_fd().is_none(),
        "served by the Sentry, not the host"
    );
    assert_eq!(null.write(b"hello", 0).unwrap(), 5);
    let mut buf = [1u8; 4];
    assert_eq!(null.read(&mut buf, 0).unwrap(), 0);
    let zero = dev.lookup("zero").unwrap().open(libc::O_RDONLY).unwrap();
    assert_eq!(zero.read(&mut buf, 0).unwrap(), 4);
    assert_eq!(buf, [0; 4]);

    let other = ["kmsg", "tty", "loop0", "mem"]
        .into_iter()
        .find_map(|n| dev.lookup(n).ok())
        .expect("a host device besides the memory devices");
    assert_eq!(other.open(libc::O_RDONLY).err(), Some(Errno::EACCES));
}

#[test]
fn host_file_over_a_pipe_is_not_seekable() {
    let (r, w) = std::io::pipe().unwrap();
    let reader = HostFile::new(OwnedFd::from(r), false);
    let writer = HostFile::new(OwnedFd::from(w), false);
    assert!(!reader.seekable());
    // The offset is ignored without positions.
    assert_eq!(writer.write(b"abc", 1000).unwrap(), 3);
    assert_eq!(writer.append(b"de").unwrap(), (2, 0));
    let mut buf = [0u8; 8];
    assert_eq!(reader.read(&mut buf, 1000).unwrap(), 5);
    assert_eq!(&buf[..5], b"abcde");
    assert_eq!(
        reader.stat().unwrap().mode & S_IFMT,
        vfs::S_IFIFO,
        "fstat of the pipe"
    );
}

/// Read-only with exclusive access (the root's lower layer): a node's
/// attributes come from the host once, and again only after something
/// read through the node, which may have moved its atime. Writable or
/// shared mounts ask the host every time.
#[test]
fn exclusive_read_only_mounts_keep_attributes_until_a_read() {
    let t = Tree::new("attrs");
    let open = |read_only, exclusive| {
        new_root(
            OwnedFd::from(fs::File::open(&t.0).unwrap()),
            read_only,
            exclusive,
        )
        .unwrap()
    };
    let cached = open(true, true);
    let fresh = [open(true, false), open(false, true)];
    let file = cached.lookup("a.txt").unwrap();
    let dir = cached.lookup("sub").unwrap();
    let link = cached.lookup("rel").unwrap();
    let before = (
        file.stat().unwrap(),
        dir.stat().unwrap(),
        link.stat().unwrap(),
    );

    // Behind the sandbox's back (which exclusive access rules out).
    fs::set_permissions(t.path("a.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(t.path("sub/new"), "").unwrap();
    let past = filetime(1_000_000_000);
    set_times(&t.path("rel"), past);
    assert_eq!(file.stat().unwrap(), before.0);
    assert_eq!(dir.stat().unwrap(), before.1);
    assert_eq!(link.stat().unwrap(), before.2);
    for root in &fresh {
        assert_eq!(
            root.lookup("a.txt").unwrap().stat().unwrap().mode & 0o777,
            0o600
        );
        assert_eq!(root.lookup("sub").unwrap().stat().unwrap().ctime_sec, {
            fs::metadata(t.path("sub")).unwrap().ctime()
        });
    }

    // Reads drop what is kept: contents, entries, a link's target.
    let mut buf = [0u8; 5];
    assert_eq!(file.open(libc::O_RDONLY).unwrap().read(&mut buf, 0), Ok(5));
    assert_eq!(file.stat().unwrap().mode & 0o777, 0o600);
    assert!(dir.read_dir().unwrap().iter().any(|e| e.name == "new"));
    assert_eq!(
        dir.stat().unwrap().mtime_sec,
        fs::metadata(t.path("sub")).unwrap().mtime()
    );
    assert_eq!(link.readlink().unwrap(), "sub/b.txt");
    assert_eq!(link.stat().unwrap().mtime_sec, past.tv_sec);
}

fn filetime(sec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec,
        tv_nsec: 0,
    }
}

/// Set a symlink's own atime and mtime.
fn set_times(path: &Path, t: libc::timespec) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string and two timespecs that outlive the call.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            [t, t].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0);
}
