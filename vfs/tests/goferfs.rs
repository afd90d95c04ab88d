//! The gofer-backed filesystem against our gofer's file server (the `gofer`
//! crate's HostFs) served over a socketpair in this process: every
//! operation, the data path with and without donated host FDs, the 2022
//! server's smaller message set, revalidation, and hostile replies.

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gofer::{Config, HostFs};
use gofer_protocol::message::{self as msg, MountResp};
use gofer_protocol::sock::{self, GO_SERVER_MAX_MESSAGE_SIZE};
use gofer_protocol::{Client, Mid, Response};
use vfs::goferfs::{self, FileAccess, Options};
use vfs::{Errno, Inode, NodeKind, SetAttr, TimeSpec, TimeUpdate};

fn scratch(name: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("goferfs-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).unwrap();
    base
}

/// The gofer runs with umask 0: the Sentry has applied the program's.
fn umask0() {
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(0) };
}

fn server(root: &Path, readonly: bool) -> UnixStream {
    umask0();
    let fs = HostFs::new(
        root,
        Config {
            readonly,
            ..Config::default()
        },
    )
    .unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    std::thread::spawn(move || {
        let _ = gofer_protocol::serve(Arc::new(fs), b);
    });
    a.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    a
}

fn opts(access: FileAccess) -> Options {
    Options {
        read_only: false,
        file_access: access,
        directfs: false,
    }
}

fn mount_sock(sock: UnixStream, o: Options) -> (Arc<dyn Inode>, Arc<Client>) {
    let client = Arc::new(Client::new(sock));
    let root = goferfs::mount(client.clone(), o).unwrap();
    (root, client)
}

fn mount(dir: &Path, access: FileAccess) -> (Arc<dyn Inode>, Arc<Client>) {
    mount_sock(server(dir, false), opts(access))
}

fn walk(root: &Arc<dyn Inode>, path: &str) -> vfs::Result<Arc<dyn Inode>> {
    let mut node = root.clone();
    for name in path.split('/').filter(|n| !n.is_empty()) {
        node = node.lookup(name)?;
    }
    Ok(node)
}

fn read_all(node: &Arc<dyn Inode>) -> Vec<u8> {
    let f = node.open(libc::O_RDONLY).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 7000];
    loop {
        let n = f.read(&mut buf, out.len() as u64).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn sample_tree(dir: &Path) {
    fs::create_dir_all(dir.join("a/b")).unwrap();
    fs::write(dir.join("a/b/file"), b"hello gofer").unwrap();
    std::os::unix::fs::symlink("b/file", dir.join("a/link")).unwrap();
}

#[test]
fn walk_stat_readlink_statfs() {
    let dir = scratch("walk");
    sample_tree(&dir);
    let (root, client) = mount(&dir, FileAccess::Exclusive);
    let file = walk(&root, "a/b/file").unwrap();
    let st = file.stat().unwrap();
    let host = fs::metadata(dir.join("a/b/file")).unwrap();
    assert_eq!((st.ino, st.dev, st.size), (host.ino(), host.dev(), 11));
    assert_eq!(st.mode, host.mode());
    assert_eq!(st.nlink, 1);
    assert_eq!(st.mtime_sec, host.mtime());

    let link = walk(&root, "a/link").unwrap();
    assert_eq!(link.stat().unwrap().mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(link.readlink().unwrap(), "b/file");
    assert_eq!(file.readlink().err(), Some(Errno::EINVAL));
    assert_eq!(link.open(libc::O_RDONLY).err(), Some(Errno::ELOOP));

    assert_eq!(walk(&root, "a/nope").err(), Some(Errno::ENOENT));
    assert_eq!(file.lookup("x").err(), Some(Errno::ENOTDIR));
    // A cached child is the same node on the next lookup (while its
    // parent lives: the VFS's dentries hold parents).
    let b = walk(&root, "a/b").unwrap();
    let file = b.lookup("file").unwrap();
    let again = b.lookup("file").unwrap();
    assert!(std::ptr::eq(
        Arc::as_ptr(&file) as *const u8,
        Arc::as_ptr(&again) as *const u8
    ));

    let sfs = root.statfs().unwrap();
    // SAFETY: statfs writes one struct statfs into `host`.
    let mut host: libc::statfs = unsafe { std::mem::zeroed() };
    let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: `path` is NUL-terminated and `host` is writable.
    assert_eq!(unsafe { libc::statfs(path.as_ptr(), &mut host) }, 0);
    assert_eq!(sfs.fs_type, host.f_type);
    assert_eq!(sfs.bsize, host.f_bsize);
    assert!(sfs.namelen >= 255);
    // Everything went over the channels upstream's client opens.
    assert!(client.channel_calls() > 0);
}

#[test]
fn data_through_the_donated_host_fd() {
    let dir = scratch("data");
    sample_tree(&dir);
    let (root, _c) = mount(&dir, FileAccess::Exclusive);
    let file = walk(&root, "a/b/file").unwrap();
    let f = file.open(libc::O_RDONLY).unwrap();
    assert!(
        f.host_fd().is_some(),
        "our gofer donates regular files' FDs"
    );
    // Opens of one access mode share one handle (one OpenAt).
    let f2 = file.open(libc::O_RDONLY).unwrap();
    assert_eq!(
        f.host_fd().unwrap().as_raw_fd(),
        f2.host_fd().unwrap().as_raw_fd()
    );
    assert_eq!(read_all(&file), b"hello gofer");

    let w = file.open(libc::O_RDWR).unwrap();
    assert_eq!(w.write(b"HELLO", 0).unwrap(), 5);
    assert_eq!(w.append(b"!!").unwrap(), (2, 13));
    w.sync().unwrap();
    assert_eq!(fs::read(dir.join("a/b/file")).unwrap(), b"HELLO gofer!!");
    // The write dropped the cached attributes.
    assert_eq!(file.stat().unwrap().size, 13);
    w.allocate(0, 0, 8192).unwrap().unwrap();
    assert_eq!(fs::metadata(dir.join("a/b/file")).unwrap().len(), 8192);
    assert_eq!(file.stat().unwrap().size, 8192);

    // O_TRUNC goes to the gofer.
    drop(file.open(libc::O_WRONLY | libc::O_TRUNC).unwrap());
    assert_eq!(fs::metadata(dir.join("a/b/file")).unwrap().len(), 0);
    assert_eq!(file.stat().unwrap().size, 0);
}

#[test]
fn directories_list_every_entry() {
    let dir = scratch("dents");
    let mut want = BTreeSet::new();
    // Enough long names for several Getdents64 calls.
    for i in 0..1500 {
        let name = format!("entry-with-a-rather-long-name-{i:05}");
        fs::write(dir.join(&name), b"").unwrap();
        want.insert(name);
    }
    fs::create_dir(dir.join("sub")).unwrap();
    want.insert("sub".into());
    let (root, _c) = mount(&dir, FileAccess::Exclusive);
    for _ in 0..2 {
        // Twice: the second listing rewinds the same open directory.
        let got = root.read_dir().unwrap();
        let names: BTreeSet<String> = got.iter().map(|e| e.name.clone()).collect();
        assert_eq!(names, want);
        let sub = got.iter().find(|e| e.name == "sub").unwrap();
        assert_eq!(sub.kind, libc::DT_DIR);
        assert_eq!(sub.ino, fs::metadata(dir.join("sub")).unwrap().ino());
    }
    assert_eq!(walk(&root, "sub").unwrap().read_dir().unwrap(), vec![]);
    let d = root.open(libc::O_RDONLY).unwrap();
    assert_eq!(d.read(&mut [0; 8], 0).err(), Some(Errno::EISDIR));
    assert_eq!(root.open(libc::O_RDWR).err(), Some(Errno::EISDIR));
}

#[test]
fn creating_and_removing() {
    let dir = scratch("mutate");
    let (root, _c) = mount(&dir, FileAccess::Exclusive);

    let f = root.create("f", NodeKind::Regular, 0o640, (0, 0)).unwrap();
    let meta = fs::metadata(dir.join("f")).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(f.stat().unwrap().ino, meta.ino());
    // The first open takes the FD the create made.
    let w = f.open(libc::O_WRONLY).unwrap();
    assert_eq!(w.write(b"data", 0).unwrap(), 4);
    drop(w);
    assert_eq!(fs::read(dir.join("f")).unwrap(), b"data");
    assert_eq!(
        root.create("f", NodeKind::Regular, 0o600, (0, 0)).err(),
        Some(Errno::EEXIST)
    );

    let d = root
        .create("d", NodeKind::Directory, 0o751, (0, 0))
        .unwrap();
    assert_eq!(
        fs::metadata(dir.join("d")).unwrap().permissions().mode() & 0o7777,
        0o751
    );
    assert_eq!(d.stat().unwrap().mode & libc::S_IFMT, libc::S_IFDIR);

    let s = d
        .create("s", NodeKind::Symlink("../f".into()), 0o777, (0, 0))
        .unwrap();
    assert_eq!(s.readlink().unwrap(), "../f");
    assert_eq!(fs::read_link(dir.join("d/s")).unwrap(), Path::new("../f"));

    // MknodAt: the gofer makes only regular files, as upstream's does
    // (upstream's Sentry keeps FIFOs and sockets in memory instead).
    for kind in [NodeKind::Fifo, NodeKind::Socket, NodeKind::CharDevice(0)] {
        assert_eq!(
            root.create("node", kind, 0o600, (0, 0)).err(),
            Some(Errno::EPERM)
        );
        assert!(!dir.join("node").exists());
    }

    d.link("hard", &f).unwrap();
    assert_eq!(fs::metadata(dir.join("d/hard")).unwrap().ino(), meta.ino());
    assert_eq!(f.stat().unwrap().nlink, 2);
    assert_eq!(d.link("dirlink", &d).err(), Some(Errno::EPERM));

    root.rename("f", &d, "moved", 0).unwrap();
    assert!(!dir.join("f").exists());
    assert_eq!(fs::read(dir.join("d/moved")).unwrap(), b"data");
    assert_eq!(walk(&root, "f").err(), Some(Errno::ENOENT));
    assert_eq!(
        walk(&root, "d/moved").unwrap().stat().unwrap().ino,
        meta.ino()
    );
    // renameat2 flags (our gofer lists RenameAt2).
    fs::write(dir.join("other"), b"other").unwrap();
    assert_eq!(
        root.rename("other", &d, "moved", vfs::inode::RENAME_NOREPLACE)
            .err(),
        Some(Errno::EEXIST)
    );
    root.rename("other", &d, "moved", vfs::inode::RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(fs::read(dir.join("other")).unwrap(), b"data");
    assert_eq!(fs::read(dir.join("d/moved")).unwrap(), b"other");

    d.unlink("hard").unwrap();
    assert!(!dir.join("d/hard").exists());
    assert_eq!(d.unlink("nope").err(), Some(Errno::ENOENT));
    assert_eq!(root.rmdir("d").err(), Some(Errno::ENOTEMPTY));
    d.unlink("moved").unwrap();
    d.unlink("s").unwrap();
    root.rmdir("d").unwrap();
    assert!(!dir.join("d").exists());
    assert_eq!(walk(&root, "d").err(), Some(Errno::ENOENT));
}

#[test]
fn attributes_and_xattrs() {
    let dir = scratch("attrs");
    fs::write(dir.join("f"), b"0123456789").unwrap();
    let (root, _c) = mount(&dir, FileAccess::Exclusive);
    let f = walk(&root, "f").unwrap();
    f.setattr(&SetAttr {
        mode: Some(0o604),
        size: Some(3),
        atime: Some(TimeUpdate::At(TimeSpec { sec: 1000, nsec: 5 })),
        mtime: Some(TimeUpdate::At(TimeSpec { sec: 2000, nsec: 7 })),
        ..SetAttr::default()
    })
    .unwrap();
    let meta = fs::metadata(dir.join("f")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o604);
    assert_eq!(meta.len(), 3);
    assert_eq!((meta.atime(), meta.atime_nsec()), (1000, 5));
    assert_eq!((meta.mtime(), meta.mtime_nsec()), (2000, 7));
    let st = f.stat().unwrap();
    assert_eq!((st.size, st.mode & 0o7777, st.mtime_sec), (3, 0o604, 2000));
    f.setattr(&SetAttr {
        uid: Some(1234),
        gid: Some(4321),
        ..SetAttr::default()
    })
    .unwrap();
    assert_eq!(
        (meta.uid(), fs::metadata(dir.join("f")).unwrap().uid()).1,
        1234
    );
    assert_eq!(
        root.setattr(&SetAttr {
            size: Some(0),
            ..SetAttr::default()
        })
        .err(),
        Some(Errno::EISDIR)
    );

    f.setxattr("user.k", b"value", 0).unwrap();
    assert_eq!(f.getxattr("user.k").unwrap(), b"value");
    assert_eq!(
        f.setxattr("user.k", b"x", vfs::inode::XATTR_CREATE).err(),
        Some(Errno::EEXIST)
    );
    assert!(f.listxattr().unwrap().contains(&"user.k".to_string()));
    f.removexattr("user.k").unwrap();
    assert_eq!(f.getxattr("user.k").err(), Some(Errno::ENODATA));
    assert!(!f.listxattr().unwrap().contains(&"user.k".to_string()));
}

#[test]
fn a_read_only_mount_refuses_changes_itself() {
    let dir = scratch("ro");
    sample_tree(&dir);
    let o = Options {
        read_only: true,
        ..opts(FileAccess::Exclusive)
    };
    let (root, _c) = mount_sock(server(&dir, false), o);
    let file = walk(&root, "a/b/file").unwrap();
    assert_eq!(file.open(libc::O_RDWR).err(), Some(Errno::EROFS));
    assert_eq!(
        root.create("x", NodeKind::Regular, 0o644, (0, 0)).err(),
        Some(Errno::EROFS)
    );
    assert_eq!(
        walk(&root, "a").unwrap().rmdir("b").err(),
        Some(Errno::EROFS)
    );
    assert_eq!(file.setxattr("user.a", b"", 0).err(), Some(Errno::EROFS));
    assert_eq!(read_all(&file), b"hello gofer");
    // And a gofer serving read-only refuses them too.
    let (root, _c) = mount_sock(server(&dir, true), opts(FileAccess::Exclusive));
    assert_eq!(
        root.create("x", NodeKind::Directory, 0o755, (0, 0)).err(),
        Some(Errno::EROFS)
    );
    assert!(!dir.join("x").exists());
}

#[test]
fn revalidation_by_file_access_mode() {
    let dir = scratch("reval");
    fs::write(dir.join("f"), b"one").unwrap();
    fs::write(dir.join("g"), b"second file").unwrap();
    for access in [FileAccess::Exclusive, FileAccess::Shared] {
        let (root, _c) = mount(&dir, access);
        let f = walk(&root, "f").unwrap();
        assert!(f.valid());
        assert_eq!(f.stat().unwrap().size, 3);
        // Someone else writes to the file and then replaces its name.
        fs::write(dir.join("f"), b"longer").unwrap();
        match access {
            // Trusted: the cached size stays (the sandbox is the only writer).
            FileAccess::Exclusive => assert_eq!(f.stat().unwrap().size, 3),
            FileAccess::Shared => assert_eq!(f.stat().unwrap().size, 6),
        }
        fs::rename(dir.join("g"), dir.join("f")).unwrap();
        assert_eq!(f.valid(), access == FileAccess::Exclusive);
        // A new lookup finds the new file.
        assert_eq!(root.lookup("f").unwrap().stat().unwrap().size, 11);
        // Put things back for the next round.
        fs::write(dir.join("f"), b"one").unwrap();
        fs::write(dir.join("g"), b"second file").unwrap();
    }
}

/// A proxy between the client and our server that makes it look like
/// another server: it replaces the Mount reply's supported list and max
/// message size, and drops donated FDs from OpenAt/OpenCreateAt replies.
/// Without Channel in the list, every call passes through it.
fn proxied(dir: &Path, supported: Vec<u16>, max: u32) -> UnixStream {
    proxied_logged(dir, supported, max).0
}

/// [`proxied`], also returning the MIDs of the requests it has passed on.
fn proxied_logged(dir: &Path, supported: Vec<u16>, max: u32) -> (UnixStream, Arc<Mutex<Vec<u16>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let upstream = server(dir, false);
    let (client, mine) = UnixStream::pair().unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    std::thread::spawn(move || loop {
        let Ok(req) = sock::read_message(&mine, GO_SERVER_MAX_MESSAGE_SIZE, 0) else {
            return;
        };
        seen.lock().unwrap().push(req.mid);
        if sock::write_message(
            &upstream,
            req.mid,
            &req.payload,
            &[],
            GO_SERVER_MAX_MESSAGE_SIZE,
        )
        .is_err()
        {
            return;
        }
        let Ok(mut resp) = sock::read_message(&upstream, GO_SERVER_MAX_MESSAGE_SIZE, 2) else {
            return;
        };
        if resp.mid == Mid::Mount.raw() {
            let Ok(Response::Mount(m)) = Response::decode(resp.mid, &resp.payload) else {
                return;
            };
            let m = MountResp {
                supported: supported.clone(),
                max_message_size: max,
                ..m
            };
            resp.payload = Response::Mount(m).encode().unwrap();
        }
        if resp.mid == Mid::OpenAt.raw() || resp.mid == Mid::OpenCreateAt.raw() {
            resp.fds.clear();
        }
        let fds: Vec<_> = resp.fds.iter().map(|f| f.as_fd()).collect();
        if sock::write_message(
            &mine,
            resp.mid,
            &resp.payload,
            &fds,
            GO_SERVER_MAX_MESSAGE_SIZE,
        )
        .is_err()
        {
            return;
        }
    });
    (client, log)
}

/// What Debian's 2022 fsgofer lists (notes §1.7), without Channel so the
/// proxy sees every call.
fn list_2022() -> Vec<u16> {
    (1..=31).filter(|m| ![2, 20, 27, 28].contains(m)).collect()
}

#[test]
fn data_over_pread_and_pwrite_in_small_messages() {
    let dir = scratch("rpcdata");
    let big: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(dir.join("big"), &big).unwrap();
    // A 4 KiB max message forces many PRead/PWrite chunks.
    let sock = proxied(&dir, list_2022(), 4096);
    let (root, client) = mount_sock(sock, opts(FileAccess::Exclusive));
    assert_eq!(client.channel_calls(), 0);
    let file = walk(&root, "big").unwrap();
    let f = file.open(libc::O_RDWR).unwrap();
    assert!(f.host_fd().is_none());
    assert_eq!(read_all(&file), big);
    let mut tail = [0u8; 100];
    assert_eq!(f.read(&mut tail, 49_950).unwrap(), 50);
    assert_eq!(&tail[..50], &big[49_950..]);

    let new: Vec<u8> = (0..20_000u32).map(|i| (i % 13) as u8).collect();
    assert_eq!(f.write(&new, 40_000).unwrap(), new.len());
    assert_eq!(f.append(b"end").unwrap(), (3, 60_003));
    f.sync().unwrap();
    f.allocate(0, 0, 70_000).unwrap().unwrap();
    let host = fs::read(dir.join("big")).unwrap();
    assert_eq!(host.len(), 70_000);
    assert_eq!(&host[..40_000], &big[..40_000]);
    assert_eq!(&host[40_000..60_000], &new[..]);
    assert_eq!(&host[60_000..60_003], b"end");
    assert_eq!(file.stat().unwrap().size, 70_000);

    // A file made through the gofer, then written through the RPCs.
    let c = root.create("c", NodeKind::Regular, 0o644, (0, 0)).unwrap();
    let w = c.open(libc::O_WRONLY).unwrap();
    assert!(w.host_fd().is_none());
    w.write(b"via pwrite", 0).unwrap();
    assert_eq!(fs::read(dir.join("c")).unwrap(), b"via pwrite");
}

#[test]
fn only_listed_messages_are_sent() {
    let dir = scratch("caps");
    fs::write(dir.join("f"), b"x").unwrap();
    fs::write(dir.join("g"), b"y").unwrap();
    let sock = proxied(&dir, list_2022(), GO_SERVER_MAX_MESSAGE_SIZE);
    let (root, _c) = mount_sock(sock, opts(FileAccess::Shared));
    let f = walk(&root, "f").unwrap();
    // The 2022 server has no FListXattr, FRemoveXattr or RenameAt2.
    assert_eq!(f.listxattr().err(), Some(Errno::EOPNOTSUPP));
    assert_eq!(f.removexattr("user.x").err(), Some(Errno::EOPNOTSUPP));
    assert_eq!(
        root.rename("f", &root, "g", vfs::inode::RENAME_NOREPLACE)
            .err(),
        Some(Errno::EINVAL)
    );
    // Plain rename is RenameAt, which it has; revalidation uses WalkStat.
    root.rename("f", &root, "h", 0).unwrap();
    assert!(dir.join("h").exists());
    let h = walk(&root, "h").unwrap();
    assert!(h.valid());
    // Without WalkStat, revalidation walks instead.
    let no_walkstat: Vec<u16> = list_2022().into_iter().filter(|&m| m != 6).collect();
    let sock = proxied(&dir, no_walkstat, GO_SERVER_MAX_MESSAGE_SIZE);
    let (root, _c) = mount_sock(sock, opts(FileAccess::Shared));
    let h = walk(&root, "h").unwrap();
    assert!(h.valid());
    fs::rename(dir.join("g"), dir.join("h")).unwrap();
    assert!(!h.valid());
}

#[test]
fn directfs_mounts_the_donated_root() {
    let dir = scratch("directfs");
    sample_tree(&dir);
    umask0();
    let fs_ = HostFs::new(
        &dir,
        Config {
            directfs: true,
            ..Config::default()
        },
    )
    .unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    std::thread::spawn(move || {
        let _ = gofer_protocol::serve(Arc::new(fs_), b);
    });
    let o = Options {
        directfs: true,
        read_only: true,
        ..Options::default()
    };
    let (root, _c) = mount_sock(a, o);
    assert_eq!(read_all(&walk(&root, "a/b/file").unwrap()), b"hello gofer");
    // Without a donated FD, directfs cannot mount.
    let client = Arc::new(Client::new(server(&dir, false)));
    let err = goferfs::mount(client, o).err().unwrap();
    assert!(matches!(err, goferfs::MountError::NoDonatedRoot), "{err}");
}

/// A server that answers Mount properly and then every request with what
/// `reply` makes of it (MID, payload).
fn hostile(reply: impl Fn(u16, &[u8]) -> (u16, Vec<u8>) + Send + 'static) -> UnixStream {
    let (client, mine) = UnixStream::pair().unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    std::thread::spawn(move || {
        let max = GO_SERVER_MAX_MESSAGE_SIZE;
        let Ok(_) = sock::read_message(&mine, max, 0) else {
            return;
        };
        let mut root = msg::Inode {
            control_fd: 1,
            ..msg::Inode::default()
        };
        root.stat.mode = (libc::S_IFDIR | 0o755) as u16;
        root.stat.ino = 1;
        let mount = Response::Mount(MountResp {
            root,
            max_message_size: max,
            supported: list_2022(),
        });
        let payload = mount.encode().unwrap();
        if sock::write_message(&mine, Mid::Mount.raw(), &payload, &[], max).is_err() {
            return;
        }
        while let Ok(req) = sock::read_message(&mine, max, 0) {
            let (mid, payload) = reply(req.mid, &req.payload);
            if sock::write_message(&mine, mid, &payload, &[], max).is_err() {
                return;
            }
        }
    });
    client
}

#[test]
fn hostile_replies_are_eio() {
    let walk_inode = |fd: u64, mode: u32| {
        let mut i = msg::Inode {
            control_fd: fd,
            ..msg::Inode::default()
        };
        i.stat.mode = mode as u16;
        i.stat.ino = 9;
        i
    };
    let sock = hostile(move |mid, _| {
        let walk = |status, inodes| {
            Response::Walk(msg::WalkResp { status, inodes })
                .encode()
                .unwrap()
        };
        match mid {
            // Two inodes for a one-name walk.
            5 => (
                mid,
                walk(
                    msg::WalkStatus::Success,
                    vec![walk_inode(2, libc::S_IFREG), walk_inode(3, libc::S_IFREG)],
                ),
            ),
            // A truncated Statx.
            3 => (mid, vec![0u8; 100]),
            // The wrong message id.
            17 => (19, vec![0, 0]),
            // An error response carrying a bogus errno.
            19 => (0, 0xffff_u32.to_le_bytes().to_vec()),
            // Getdents64 with a name holding a slash.
            24 => {
                let r = Response::Getdents64(msg::Getdents64Resp {
                    dirents: vec![msg::Dirent64 {
                        ino: 5,
                        name: b"../../etc".to_vec(),
                        typ: 8,
                        ..msg::Dirent64::default()
                    }],
                });
                (mid, r.encode().unwrap())
            }
            7 => (mid, 77u64.to_le_bytes().to_vec()),
            _ => (0, (libc::ENOSYS as u32).to_le_bytes().to_vec()),
        }
    });
    let o = opts(FileAccess::Shared);
    let (root, _c) = mount_sock(sock, o);
    assert_eq!(root.lookup("x").err(), Some(Errno::EIO));
    assert_eq!(root.stat().err(), Some(Errno::EIO));
    assert_eq!(root.statfs().err(), Some(Errno::EIO));
    assert_eq!(root.read_dir().err(), Some(Errno::EIO));

    // A walk that answers with control FD 0.
    let sock = hostile(move |mid, _| match mid {
        5 => (
            mid,
            Response::Walk(msg::WalkResp {
                status: msg::WalkStatus::Success,
                inodes: vec![walk_inode(0, libc::S_IFREG)],
            })
            .encode()
            .unwrap(),
        ),
        _ => (0, (libc::ENOSYS as u32).to_le_bytes().to_vec()),
    });
    let (root, _c) = mount_sock(sock, o);
    assert_eq!(root.lookup("x").err(), Some(Errno::EIO));

    // A PRead reply longer than asked for.
    let sock = hostile(move |mid, _| match mid {
        5 => (
            mid,
            Response::Walk(msg::WalkResp {
                status: msg::WalkStatus::Success,
                inodes: vec![walk_inode(2, libc::S_IFREG | 0o644)],
            })
            .encode()
            .unwrap(),
        ),
        7 => (mid, 3u64.to_le_bytes().to_vec()),
        12 => (
            mid,
            Response::PRead(msg::PReadResp { data: vec![1; 64] })
                .encode()
                .unwrap(),
        ),
        _ => (0, (libc::ENOSYS as u32).to_le_bytes().to_vec()),
    });
    let (root, _c) = mount_sock(sock, opts(FileAccess::Exclusive));
    let f = root.lookup("x").unwrap().open(libc::O_RDONLY).unwrap();
    assert_eq!(f.read(&mut [0u8; 8], 0).err(), Some(Errno::EIO));

    // A directory listing that never ends.
    let batch = Response::Getdents64(msg::Getdents64Resp {
        dirents: (0..40_000u32)
            .map(|i| msg::Dirent64 {
                ino: u64::from(i) + 1,
                name: format!("f{i}").into_bytes(),
                typ: 8,
                ..msg::Dirent64::default()
            })
            .collect(),
    })
    .encode()
    .unwrap();
    let sock = hostile(move |mid, _| match mid {
        7 => (mid, 3u64.to_le_bytes().to_vec()),
        24 => (mid, batch.clone()),
        _ => (0, (libc::ENOSYS as u32).to_le_bytes().to_vec()),
    });
    let (root, _c) = mount_sock(sock, o);
    assert_eq!(root.read_dir().err(), Some(Errno::EIO));

    // Replies with an unknown message id.
    let sock = hostile(|_, _| (0xffff, vec![0; 3]));
    let (root, _c) = mount_sock(sock, o);
    assert_eq!(root.lookup("x").err(), Some(Errno::EIO));
    assert_eq!(root.lookup("y").err(), Some(Errno::EIO));
}

/// A path walk through the VFS asks for every uncached name ahead in one
/// Walk, also beneath the root overlay.
#[test]
fn one_walk_for_a_path() {
    let dir = scratch("prefetch");
    fs::create_dir_all(dir.join("a/b/c/d")).unwrap();
    fs::write(dir.join("a/b/c/d/file"), b"deep").unwrap();
    std::os::unix::fs::symlink("c", dir.join("a/b/s")).unwrap();
    for overlay in [false, true] {
        let (sock, log) = proxied_logged(&dir, list_2022(), GO_SERVER_MAX_MESSAGE_SIZE);
        let (lower, _c) = mount_sock(sock, opts(FileAccess::Exclusive));
        let root = if overlay {
            let upper = vfs::tmpfs::new(vfs::tmpfs::TmpfsOptions::default());
            vfs::overlay::new(upper, lower, 1).unwrap()
        } else {
            lower
        };
        let mounts = Arc::new(vfs::Mounts::new(root, "test", "none", 0));
        let top = mounts.root();
        let creds = vfs::Creds::root();
        let ctx = vfs::walk::Context {
            mounts: &mounts,
            root: &top,
            creds: &creds,
        };
        let walks = || {
            log.lock()
                .unwrap()
                .iter()
                .filter(|&&m| m == Mid::Walk.raw())
                .count()
        };
        let before = walks();
        let file = ctx.lookup(&top, "a/b/c/d/file", true).unwrap();
        assert_eq!(file.inode().stat().unwrap().size, 4);
        assert_eq!(walks() - before, 1, "overlay {overlay}");
        // Cached now: no more walks.
        ctx.lookup(&top, "/a/b/c/d/file", true).unwrap();
        assert_eq!(walks() - before, 1);
        // A symlink stops the walk; the rest is walked after it.
        let via = ctx.lookup(&top, "a/b/s/d/file", true).unwrap();
        assert_eq!(
            via.inode().stat().unwrap().ino,
            file.inode().stat().unwrap().ino
        );
        assert_eq!(
            ctx.lookup(&top, "a/b/c/nope/x", true).err(),
            Some(Errno::ENOENT)
        );
        assert_eq!(ctx.lookup(&top, "a/x/y/z", true).err(), Some(Errno::ENOENT));
    }
}
