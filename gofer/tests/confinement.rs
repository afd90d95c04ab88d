//! Security invariant 3: whatever a client sends, our server never opens,
//! creates, removes or reads anything outside its root: not through `..`,
//! not through absolute or relative symlinks, not through magic links, and
//! not while the host swaps a directory for a symlink under it.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use abi::Errno;
use common::*;
use gofer::Config;
use gofer_protocol::message::*;
use gofer_protocol::{Client, ClientError};

const SECRET: &[u8] = b"outside the root";
const INSIDE: &[u8] = b"inside the root";

/// `work/outside/target` holds the secret; `work/root` is served.
fn layout(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let work = scratch_dir(name);
    let root = work.join("root");
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::create_dir_all(work.join("outside")).unwrap();
    fs::write(work.join("outside/target"), SECRET).unwrap();
    fs::write(root.join("sub/target"), INSIDE).unwrap();
    symlink("/", root.join("abs")).unwrap();
    symlink(work.join("outside"), root.join("abs_out")).unwrap();
    symlink("../outside", root.join("rel")).unwrap();
    symlink("../../../../../../..", root.join("dotdots")).unwrap();
    symlink("/proc/self/root", root.join("magic")).unwrap();
    symlink("sub/../../outside", root.join("sub_rel")).unwrap();
    (work, root)
}

fn err(r: Result<impl std::fmt::Debug, ClientError>) -> Errno {
    match r {
        Err(ClientError::Remote(e)) => e,
        other => panic!("expected an error response, got {other:?}"),
    }
}

fn create_common(dir_fd: u64) -> CreateCommon {
    CreateCommon {
        dir_fd,
        uid: NO_UID,
        gid: NO_GID,
        mode: 0o644,
    }
}

/// Walks `path`; if it ends on a regular file, opens and reads it.
fn walk_read(c: &Client, path: &[&str]) -> (WalkStatus, Option<Vec<u8>>) {
    let w = walk(c, 1, path).unwrap();
    let ids: Vec<u64> = w.inodes.iter().map(|i| i.control_fd).collect();
    let mut data = None;
    if w.status == WalkStatus::Success && w.inodes.len() == path.len() {
        let last = w.inodes.last().unwrap();
        if u32::from(last.stat.mode) & libc::S_IFMT == libc::S_IFREG {
            let (o, _) = open(c, last.control_fd, libc::O_RDONLY).unwrap();
            data = Some(pread(c, o, 0, 100).unwrap());
            c.call(&Request::Close(CloseReq { fds: vec![o] })).unwrap();
        }
    }
    c.call(&Request::Close(CloseReq { fds: ids })).unwrap();
    (w.status, data)
}

#[test]
fn names_that_leave_the_directory_are_refused() {
    let (work, root) = layout("conf-names");
    let ours = start_ours(&root, Config::default());
    let c = &ours.client;
    c.mount().unwrap();
    for bad in ["..", ".", "", "../outside", "/etc", "sub/target", "a\0b"] {
        assert_eq!(err(walk(c, 1, &[bad])), Errno::EINVAL, "walk {bad:?}");
        assert_eq!(
            err(c.call(&Request::OpenCreateAt(OpenCreateAtReq {
                common: create_common(1),
                flags: libc::O_RDWR as u32,
                name: bad.as_bytes().to_vec(),
            }))),
            Errno::EINVAL,
            "create {bad:?}"
        );
        assert_eq!(
            err(c.call(&Request::MkdirAt(MkdirAtReq {
                common: create_common(1),
                name: bad.as_bytes().to_vec(),
            }))),
            Errno::EINVAL
        );
        assert_eq!(
            err(c.call(&Request::UnlinkAt(UnlinkAtReq {
                dir_fd: 1,
                flags: 0,
                name: bad.as_bytes().to_vec(),
            }))),
            Errno::EINVAL
        );
        assert_eq!(
            err(c.call(&Request::RenameAt(RenameAtReq {
                old_dir: 1,
                new_dir: 1,
                old_name: b"sub".to_vec(),
                new_name: bad.as_bytes().to_vec(),
            }))),
            Errno::EINVAL
        );
        assert_eq!(
            err(c.call(&Request::SymlinkAt(SymlinkAtReq {
                dir_fd: 1,
                uid: NO_UID,
                gid: NO_GID,
                name: bad.as_bytes().to_vec(),
                target: b"x".to_vec(),
            }))),
            Errno::EINVAL
        );
    }
    // WalkStat too (a leading "" is allowed: it means the start itself).
    assert_eq!(
        err(c.call(&Request::WalkStat(WalkReq {
            dir_fd: 1,
            path: names(&["sub", ".."]),
        }))),
        Errno::EINVAL
    );
    assert!(work.join("outside/target").exists());
    drop(ours);
    let _ = fs::remove_dir_all(&work);
}

#[test]
fn symlinks_are_never_followed() {
    let (work, root) = layout("conf-symlinks");
    let ours = start_ours(&root, Config::default());
    let c = &ours.client;
    c.mount().unwrap();
    for link in ["abs", "abs_out", "rel", "dotdots", "magic", "sub_rel"] {
        // A walk through the link stops at it (status 2) with the link's
        // own inode; nothing beyond it is opened.
        let w = walk(c, 1, &[link, "target"]).unwrap();
        assert_eq!(w.status, WalkStatus::ComponentIsSymlink, "{link}");
        assert_eq!(w.inodes.len(), 1);
        let l = &w.inodes[0];
        assert_eq!(u32::from(l.stat.mode) & libc::S_IFMT, libc::S_IFLNK);
        // The link itself cannot be opened, read or listed.
        assert_eq!(err(open(c, l.control_fd, libc::O_RDONLY)), Errno::EINVAL);
        assert_eq!(err(walk(c, l.control_fd, &["target"])), Errno::ENOTDIR);
        // WalkStat stops at it too.
        match c
            .call(&Request::WalkStat(WalkReq {
                dir_fd: 1,
                path: names(&[link, "target"]),
            }))
            .unwrap()
            .0
        {
            Response::WalkStat(ws) => {
                assert_eq!(ws.stats.len(), 1);
                assert_eq!(u32::from(ws.stats[0].mode) & libc::S_IFMT, libc::S_IFLNK);
            }
            r => panic!("{r:?}"),
        }
        // Creating through the link's name creates nothing outside: the
        // name exists (EEXIST), and nothing is followed.
        assert_eq!(
            err(c.call(&Request::OpenCreateAt(OpenCreateAtReq {
                common: create_common(1),
                flags: libc::O_RDWR as u32,
                name: link.as_bytes().to_vec(),
            }))),
            Errno::EEXIST
        );
        assert_eq!(
            err(c.call(&Request::MkdirAt(MkdirAtReq {
                common: create_common(1),
                name: link.as_bytes().to_vec(),
            }))),
            Errno::EEXIST
        );
        // SetStat on the link never reaches its target.
        let _ = c.call(&Request::SetStat(SetStatReq {
            fd: l.control_fd,
            mask: setstat_mask::MODE | setstat_mask::SIZE,
            mode: 0o777,
            size: 0,
            ..Default::default()
        }));
        c.call(&Request::Close(CloseReq {
            fds: vec![l.control_fd],
        }))
        .unwrap();
    }
    assert_eq!(fs::read(work.join("outside/target")).unwrap(), SECRET);
    drop(ours);
    let _ = fs::remove_dir_all(&work);
}

#[test]
fn magic_links_are_not_followed() {
    // Serve /proc/self itself: its root, cwd, exe and fd/N entries are
    // magic links that would jump anywhere if followed.
    let ours = start_ours(Path::new("/proc/self"), Config::default());
    let c = &ours.client;
    c.mount().unwrap();
    for path in [
        &["root", "etc", "passwd"][..],
        &["cwd", "Cargo.toml"],
        &["exe"],
        &["fd", "0"],
        &["fd", "1", "x"],
    ] {
        let w = walk(c, 1, path).unwrap();
        let last = w.inodes.last().expect("the magic link itself is returned");
        assert_eq!(
            u32::from(last.stat.mode) & libc::S_IFMT,
            libc::S_IFLNK,
            "{path:?}: walk must stop on the link, not its target"
        );
        assert!(w.inodes.len() <= 2);
        assert_eq!(err(open(c, last.control_fd, libc::O_RDONLY)), Errno::EINVAL);
    }
    drop(ours);
}

#[test]
fn a_rename_race_never_reaches_outside() {
    let (work, root) = layout("conf-race");
    // `swap` is a symlink to the outside directory; a host thread keeps
    // exchanging it with the real directory `sub` (atomically, with
    // RENAME_EXCHANGE), so `sub` is sometimes a directory holding INSIDE
    // and sometimes a symlink to a directory holding SECRET.
    symlink(work.join("outside"), root.join("swap")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let root = root.clone();
        std::thread::spawn(move || {
            let dir = rustix::fs::open(
                &root,
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    &dir,
                    "sub",
                    &dir,
                    "swap",
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .unwrap();
                n += 1;
            }
            n
        })
    };
    let ours = start_ours(&root, Config::default());
    let c = &ours.client;
    c.mount().unwrap();
    let (mut inside, mut stopped) = (0, 0);
    for _ in 0..3000 {
        for path in [&["sub", "target"][..], &["swap", "target"]] {
            match walk_read(c, path) {
                (WalkStatus::Success, Some(data)) => {
                    assert_eq!(data, INSIDE, "read outside the root through {path:?}");
                    inside += 1;
                }
                (WalkStatus::ComponentIsSymlink, None) => stopped += 1,
                other => panic!("{path:?}: {other:?}"),
            }
        }
        // WalkStat never reports the outside file either.
        if let Response::WalkStat(ws) = c
            .call(&Request::WalkStat(WalkReq {
                dir_fd: 1,
                path: names(&["sub", "target"]),
            }))
            .unwrap()
            .0
        {
            if ws.stats.len() == 2 {
                assert_eq!(ws.stats[1].size, INSIDE.len() as u64);
            }
        }
        // Creating inside a raced directory lands inside, or not at all.
        let w = walk(c, 1, &["sub"]).unwrap();
        if w.status == WalkStatus::Success
            && u32::from(w.inodes[0].stat.mode) & libc::S_IFMT == libc::S_IFDIR
        {
            let d = w.inodes[0].control_fd;
            let _ = c.call(&Request::MkdirAt(MkdirAtReq {
                common: create_common(d),
                name: b"made".to_vec(),
            }));
            let _ = c.call(&Request::UnlinkAt(UnlinkAtReq {
                dir_fd: d,
                flags: libc::AT_REMOVEDIR as u32,
                name: b"made".to_vec(),
            }));
            c.call(&Request::Close(CloseReq { fds: vec![d] })).unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 100, "the swapper ran only {swaps} times");
    assert!(
        inside > 0 && stopped > 0,
        "both outcomes seen: {inside} {stopped}"
    );
    assert!(!work.join("outside/made").exists());
    assert_eq!(fs::read(work.join("outside/target")).unwrap(), SECRET);
    drop(ours);
    let _ = fs::remove_dir_all(&work);
}
