//! Every operation our server implements, driven by our client over a
//! socketpair, checked against what the host then says.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;

use abi::Errno;
use common::*;
use gofer::Config;
use gofer_protocol::message::*;
use gofer_protocol::ClientError;

fn remote(r: Result<impl std::fmt::Debug, ClientError>) -> Errno {
    match r {
        Err(ClientError::Remote(e)) => e,
        other => panic!("expected an error response, got {other:?}"),
    }
}

fn inode(r: Result<(Response, Vec<std::os::fd::OwnedFd>), ClientError>) -> Inode {
    match r.unwrap().0 {
        Response::MkdirAt(i)
        | Response::SymlinkAt(i)
        | Response::LinkAt(i)
        | Response::MknodAt(i) => i,
        r => panic!("{r:?}"),
    }
}

fn assert_stat(s: &Statx, p: &Path) {
    let md = fs::symlink_metadata(p).unwrap();
    assert_eq!(
        (
            u32::from(s.mode),
            s.size,
            s.ino,
            u64::from(s.nlink),
            s.uid,
            s.gid
        ),
        (
            md.mode(),
            md.size(),
            md.ino(),
            md.nlink(),
            md.uid(),
            md.gid()
        ),
        "{}",
        p.display()
    );
    assert_eq!(s.mtime.sec, md.mtime());
}

#[test]
fn every_operation_against_the_host() {
    let work = scratch_dir("ops");
    let root = work.join("root");
    fs::create_dir_all(root.join("dir")).unwrap();
    fs::write(root.join("file.txt"), b"hello world").unwrap();
    fs::write(root.join("dir/a"), b"a").unwrap();
    std::os::unix::fs::symlink("file.txt", root.join("link")).unwrap();
    let ours = start_ours(&root, Config::default());
    let c = &ours.client;

    // Mount.
    let (m, fd) = c.mount().unwrap();
    assert!(fd.is_none());
    assert_eq!(m.root.control_fd, 1);
    assert_stat(&m.root.stat, &root);
    assert_eq!(m.max_message_size, 2_093_056);
    let want: Vec<u16> = (1..=19).chain(22..=28).chain([33]).collect();
    assert_eq!(m.supported, want);

    // Walk, WalkStat, FStat.
    let w = walk(c, 1, &["dir", "a"]).unwrap();
    assert_eq!(w.status, WalkStatus::Success);
    assert_eq!(w.inodes.len(), 2);
    assert_stat(&w.inodes[1].stat, &root.join("dir/a"));
    let dir = w.inodes[0].control_fd;
    let w = walk(c, 1, &["link", "x"]).unwrap();
    assert_eq!(w.status, WalkStatus::ComponentIsSymlink);
    assert_stat(&w.inodes[0].stat, &root.join("link"));
    let link = w.inodes[0].control_fd;
    let w = walk(c, 1, &["dir", "nope", "x"]).unwrap();
    assert_eq!(w.status, WalkStatus::ComponentDoesNotExist);
    assert_eq!(w.inodes.len(), 1);
    assert_eq!(remote(walk(c, 1, &[".."])), Errno::EINVAL);
    assert_eq!(remote(walk(c, 1, &["a/b"])), Errno::EINVAL);
    assert_eq!(remote(walk(c, 1, &[""])), Errno::EINVAL);
    match c
        .call(&Request::WalkStat(WalkReq {
            dir_fd: 1,
            path: names(&["", "dir", "a"]),
        }))
        .unwrap()
        .0
    {
        Response::WalkStat(ws) => {
            assert_eq!(ws.stats.len(), 3);
            assert_stat(&ws.stats[0], &root);
            assert_stat(&ws.stats[2], &root.join("dir/a"));
        }
        r => panic!("{r:?}"),
    }
    let file = walk(c, 1, &["file.txt"]).unwrap().inodes[0].control_fd;
    assert_eq!(remote(walk(c, file, &["x"])), Errno::ENOTDIR);
    match c.call(&Request::FStat(StatReq { fd: file })).unwrap().0 {
        Response::FStat(s) => assert_stat(&s, &root.join("file.txt")),
        r => panic!("{r:?}"),
    }

    // OpenAt: the regular file's host FD is donated; PRead.
    let (ro, fds) = open(c, file, libc::O_RDONLY).unwrap();
    assert_eq!(fds.len(), 1);
    let mut b = [0u8; 5];
    fs::File::from(fds.into_iter().next().unwrap())
        .read_at(&mut b, 6)
        .unwrap();
    assert_eq!(&b, b"world");
    assert_eq!(pread(c, ro, 0, 5).unwrap(), b"hello");
    assert_eq!(pread(c, ro, 100, 5).unwrap(), b"");
    assert_eq!(remote(pread(c, file, 0, 5)), Errno::EINVAL, "control FD");
    assert_eq!(remote(pread(c, ro, 0, 3 << 20)).raw(), libc::ENOBUFS);
    assert_eq!(
        remote(c.call(&Request::PWrite(PWriteReq {
            offset: 0,
            fd: ro,
            data: b"x".to_vec()
        }))),
        Errno::EBADF
    );
    assert_eq!(remote(open(c, dir, libc::O_RDWR)), Errno::EISDIR);
    assert_eq!(remote(open(c, link, libc::O_RDONLY)), Errno::EINVAL);

    // OpenCreateAt, PWrite, FSync, FAllocate.
    let common = |dir_fd, mode| CreateCommon {
        dir_fd,
        uid: NO_UID,
        gid: NO_GID,
        mode,
    };
    let (resp, fds) = c
        .call(&Request::OpenCreateAt(OpenCreateAtReq {
            common: common(1, 0o640),
            flags: libc::O_RDWR as u32,
            name: b"new".to_vec(),
        }))
        .unwrap();
    let Response::OpenCreateAt(oc) = resp else {
        panic!("{resp:?}")
    };
    assert_eq!(fds.len(), 1);
    assert_eq!(oc.child.stat.mode, 0o100640);
    let (resp, _) = c
        .call(&Request::PWrite(PWriteReq {
            offset: 2,
            fd: oc.new_fd,
            data: b"xyz".to_vec(),
        }))
        .unwrap();
    assert_eq!(resp, Response::PWrite(PWriteResp { count: 3 }));
    c.call(&Request::FSync(FsyncReq {
        fds: vec![oc.new_fd],
    }))
    .unwrap();
    assert_eq!(fs::read(root.join("new")).unwrap(), b"\0\0xyz");
    c.call(&Request::FAllocate(FAllocateReq {
        fd: oc.new_fd,
        mode: 0,
        offset: 0,
        length: 100,
    }))
    .unwrap();
    assert_eq!(fs::metadata(root.join("new")).unwrap().len(), 100);
    // Other modes are refused (the Sentry sends none; the gofer's seccomp
    // filter would not let them through).
    assert_eq!(
        remote(c.call(&Request::FAllocate(FAllocateReq {
            fd: oc.new_fd,
            mode: 1,
            offset: 0,
            length: 200,
        }))),
        Errno::EOPNOTSUPP
    );
    assert_eq!(
        remote(c.call(&Request::OpenCreateAt(OpenCreateAtReq {
            common: common(1, 0o640),
            flags: 0,
            name: b"new".to_vec(),
        }))),
        Errno::EEXIST
    );
    assert_eq!(
        remote(c.call(&Request::FSync(FsyncReq { fds: vec![file] }))),
        Errno::EINVAL
    );

    // SetStat: size, mode, times; a bit outside the allowed set is EPERM.
    let (resp, _) = c
        .call(&Request::SetStat(SetStatReq {
            fd: oc.child.control_fd,
            mask: setstat_mask::SIZE | setstat_mask::MODE | setstat_mask::MTIME | setstat_mask::UID,
            mode: 0o604,
            size: 4,
            mtime: Timespec {
                sec: 1_000_000,
                nsec: 5,
            },
            uid: 0,
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(resp, Response::SetStat(SetStatResp::default()));
    let md = fs::metadata(root.join("new")).unwrap();
    assert_eq!(
        (md.len(), md.mode() & 0o7777, md.mtime()),
        (4, 0o604, 1_000_000)
    );
    assert_eq!(
        remote(c.call(&Request::SetStat(SetStatReq {
            fd: 1,
            mask: 0x4,
            ..Default::default()
        }))),
        Errno::EPERM
    );

    // MkdirAt, MknodAt, SymlinkAt, LinkAt, ReadLinkAt.
    let d = inode(c.call(&Request::MkdirAt(MkdirAtReq {
        common: common(1, 0o751),
        name: b"sub".to_vec(),
    })));
    assert_stat(&d.stat, &root.join("sub"));
    assert_eq!(
        fs::metadata(root.join("sub")).unwrap().permissions().mode() & 0o7777,
        0o751
    );
    let n = inode(c.call(&Request::MknodAt(MknodAtReq {
        common: common(d.control_fd, 0o100600),
        minor: 0,
        major: 0,
        name: b"node".to_vec(),
    })));
    assert_stat(&n.stat, &root.join("sub/node"));
    assert_eq!(
        remote(c.call(&Request::MknodAt(MknodAtReq {
            common: common(d.control_fd, 0o020600),
            minor: 1,
            major: 1,
            name: b"chr".to_vec(),
        }))),
        Errno::EPERM
    );
    let s = inode(c.call(&Request::SymlinkAt(SymlinkAtReq {
        dir_fd: d.control_fd,
        uid: NO_UID,
        gid: NO_GID,
        name: b"sl".to_vec(),
        target: b"../../anywhere".to_vec(),
    })));
    assert_stat(&s.stat, &root.join("sub/sl"));
    match c
        .call(&Request::ReadLinkAt(ReadLinkAtReq { fd: s.control_fd }))
        .unwrap()
        .0
    {
        Response::ReadLinkAt(r) => assert_eq!(r.target, b"../../anywhere"),
        r => panic!("{r:?}"),
    }
    assert_eq!(
        remote(c.call(&Request::ReadLinkAt(ReadLinkAtReq { fd: file }))),
        Errno::EINVAL
    );
    let l = inode(c.call(&Request::LinkAt(LinkAtReq {
        dir_fd: d.control_fd,
        target: file,
        name: b"hard".to_vec(),
    })));
    assert_eq!(l.stat.nlink, 2);
    assert_eq!(
        remote(c.call(&Request::LinkAt(LinkAtReq {
            dir_fd: 1,
            target: dir,
            name: b"dirlink".to_vec(),
        }))),
        Errno::EPERM
    );

    // Getdents64 of the new directory.
    let (sub_open, _) = open(c, d.control_fd, libc::O_RDONLY).unwrap();
    let ents = readdir(c, sub_open).unwrap();
    let got: Vec<(&[u8], u8)> = ents.iter().map(|e| (&e.name[..], e.typ)).collect();
    assert_eq!(
        got,
        vec![
            (&b"hard"[..], libc::DT_REG),
            (&b"node"[..], libc::DT_REG),
            (&b"sl"[..], libc::DT_LNK)
        ]
    );
    let md = fs::metadata(root.join("sub/node")).unwrap();
    let e = ents.iter().find(|e| e.name == b"node").unwrap();
    assert_eq!(e.ino, md.ino());
    assert_eq!(
        (u64::from(e.dev_major) << 8) | u64::from(e.dev_minor),
        md.dev() & 0xfffff,
        "dev numbers"
    );
    assert_eq!(remote(readdir(c, ro)), Errno::ENOTDIR);

    // FStatFS.
    match c.call(&Request::FStatFS(FStatFsReq { fd: 1 })).unwrap().0 {
        Response::FStatFS(s) => assert!(s.block_size > 0 && s.name_length == 255),
        r => panic!("{r:?}"),
    }

    // Xattrs in the user namespace; others are refused.
    let set = |name: &str, value: &[u8]| {
        c.call(&Request::FSetXattr(FSetXattrReq {
            fd: file,
            flags: 0,
            name: name.as_bytes().to_vec(),
            value: value.to_vec(),
        }))
    };
    match set("user.test", b"value") {
        Ok(_) => {
            match c
                .call(&Request::FGetXattr(FGetXattrReq {
                    fd: file,
                    buf_size: 100,
                    name: b"user.test".to_vec(),
                }))
                .unwrap()
                .0
            {
                Response::FGetXattr(r) => assert_eq!(r.value, b"value"),
                r => panic!("{r:?}"),
            }
            assert_eq!(
                remote(c.call(&Request::FGetXattr(FGetXattrReq {
                    fd: file,
                    buf_size: 2,
                    name: b"user.test".to_vec(),
                }))),
                Errno::ERANGE
            );
            match c
                .call(&Request::FListXattr(FListXattrReq { fd: file, size: 0 }))
                .unwrap()
                .0
            {
                Response::FListXattr(r) => assert_eq!(r.names, vec![b"user.test".to_vec()]),
                r => panic!("{r:?}"),
            }
            c.call(&Request::FRemoveXattr(FRemoveXattrReq {
                fd: file,
                name: b"user.test".to_vec(),
            }))
            .unwrap();
            assert_eq!(
                remote(c.call(&Request::FGetXattr(FGetXattrReq {
                    fd: file,
                    buf_size: 0,
                    name: b"user.test".to_vec(),
                })))
                .raw(),
                libc::ENODATA
            );
        }
        // Some filesystems (overlay on tmpfs...) lack user xattrs.
        Err(ClientError::Remote(e)) if e == Errno::EOPNOTSUPP => {}
        Err(e) => panic!("FSetXattr: {e}"),
    }
    assert_eq!(remote(set("trusted.x", b"v")), Errno::EOPNOTSUPP);
    assert_eq!(remote(set("security.x", b"v")), Errno::EOPNOTSUPP);

    // RenameAt, RenameAt2, UnlinkAt.
    c.call(&Request::RenameAt(RenameAtReq {
        old_dir: 1,
        new_dir: d.control_fd,
        old_name: b"new".to_vec(),
        new_name: b"moved".to_vec(),
    }))
    .unwrap();
    assert!(root.join("sub/moved").exists() && !root.join("new").exists());
    c.call(&Request::RenameAt(RenameAtReq {
        old_dir: 1,
        new_dir: 1,
        old_name: b"file.txt".to_vec(),
        new_name: b"file.txt".to_vec(),
    }))
    .unwrap();
    assert_eq!(
        remote(c.call(&Request::RenameAt2(RenameAt2Req {
            old_dir: d.control_fd,
            new_dir: d.control_fd,
            old_name: b"moved".to_vec(),
            new_name: b"hard".to_vec(),
            flags: 1, // RENAME_NOREPLACE
        }))),
        Errno::EEXIST
    );
    assert_eq!(
        remote(c.call(&Request::UnlinkAt(UnlinkAtReq {
            dir_fd: 1,
            flags: libc::AT_REMOVEDIR as u32,
            name: b"sub".to_vec(),
        }))),
        Errno::ENOTEMPTY
    );
    assert_eq!(
        remote(c.call(&Request::UnlinkAt(UnlinkAtReq {
            dir_fd: 1,
            flags: 0,
            name: b"sub".to_vec(),
        }))),
        Errno::EISDIR
    );
    for name in ["moved", "hard", "node", "sl"] {
        c.call(&Request::UnlinkAt(UnlinkAtReq {
            dir_fd: d.control_fd,
            flags: 0,
            name: name.as_bytes().to_vec(),
        }))
        .unwrap();
    }
    c.call(&Request::UnlinkAt(UnlinkAtReq {
        dir_fd: 1,
        flags: libc::AT_REMOVEDIR as u32,
        name: b"sub".to_vec(),
    }))
    .unwrap();
    assert!(!root.join("sub").exists());

    // Close.
    c.call(&Request::Close(CloseReq {
        fds: vec![file, ro, dir, link],
    }))
    .unwrap();
    assert_eq!(
        remote(c.call(&Request::FStat(StatReq { fd: file }))),
        Errno::EBADF
    );
    ours.finish();
    let _ = fs::remove_dir_all(&work);
}

#[test]
fn a_readonly_server_refuses_every_mutation() {
    let work = scratch_dir("ops-ro");
    let root = work.join("root");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("f"), b"x").unwrap();
    let ours = start_ours(
        &root,
        Config {
            readonly: true,
            ..Default::default()
        },
    );
    let c = &ours.client;
    c.mount().unwrap();
    let f = walk(c, 1, &["f"]).unwrap().inodes[0].control_fd;
    assert_eq!(remote(open(c, f, libc::O_RDWR)), Errno::EROFS);
    assert_eq!(
        remote(open(c, f, libc::O_RDONLY | libc::O_TRUNC)),
        Errno::EROFS
    );
    assert!(open(c, f, libc::O_RDONLY).is_ok());
    assert_eq!(
        remote(c.call(&Request::MkdirAt(MkdirAtReq {
            common: CreateCommon {
                dir_fd: 1,
                uid: NO_UID,
                gid: NO_GID,
                mode: 0o755
            },
            name: b"d".to_vec(),
        }))),
        Errno::EROFS
    );
    assert_eq!(
        remote(c.call(&Request::UnlinkAt(UnlinkAtReq {
            dir_fd: 1,
            flags: 0,
            name: b"f".to_vec(),
        }))),
        Errno::EROFS
    );
    assert!(root.join("f").exists());
    ours.finish();
    let _ = fs::remove_dir_all(&work);
}
