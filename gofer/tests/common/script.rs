//! The differential operation sequence: one lisafs session touching
//! every file operation, rendered as a transcript that does not depend on
//! inode numbers or clocks, so that two servers serving identical trees can
//! be compared line for line (Debian's Go gofer, our in-process server, and
//! `runsc gofer` under its seccomp filter).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use gofer_protocol::message::*;
use gofer_protocol::{Client, ClientError};

use super::names;

pub fn populate(root: &Path) {
    fs::create_dir_all(root.join("dir/nested")).unwrap();
    fs::write(root.join("file.txt"), b"hello world\n").unwrap();
    fs::write(root.join("dir/a"), b"a").unwrap();
    fs::write(root.join("dir/bb"), b"bb").unwrap();
    fs::write(root.join("dir/nested/deep"), b"deep").unwrap();
    std::os::unix::fs::symlink("file.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
    fs::set_permissions(
        root.join("dir/bb"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
}

pub fn st(s: &Statx) -> String {
    // Directory sizes depend on the filesystem's history; report only
    // that of files and links.
    let size = if u32::from(s.mode) & libc::S_IFMT == libc::S_IFDIR {
        0
    } else {
        s.size
    };
    format!(
        "mode={:o} size={} nlink={} uid={} gid={}",
        s.mode, size, s.nlink, s.uid, s.gid
    )
}

pub fn res<T>(r: Result<(Response, Vec<std::os::fd::OwnedFd>), ClientError>, f: T) -> String
where
    T: FnOnce(Response, usize) -> String,
{
    match r {
        Ok((resp, fds)) => f(resp, fds.len()),
        Err(ClientError::Remote(e)) => format!("error {e:?}"),
        Err(e) => format!("transport {e}"),
    }
}

pub fn show(resp: Response, nfds: usize) -> String {
    let fds = if nfds > 0 {
        format!(" +{nfds}fd")
    } else {
        String::new()
    };
    let body = match resp {
        Response::Walk(w) => format!(
            "{:?} [{}]",
            w.status,
            w.inodes
                .iter()
                .map(|i| format!("#{} {}", i.control_fd, st(&i.stat)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Response::WalkStat(w) => format!(
            "[{}]",
            w.stats.iter().map(st).collect::<Vec<_>>().join(", ")
        ),
        Response::FStat(s) => st(&s),
        Response::OpenAt(o) => format!("open #{}", o.open_fd),
        Response::OpenCreateAt(o) => {
            format!(
                "#{} {} open #{}",
                o.child.control_fd,
                st(&o.child.stat),
                o.new_fd
            )
        }
        Response::MkdirAt(i)
        | Response::SymlinkAt(i)
        | Response::LinkAt(i)
        | Response::MknodAt(i) => {
            format!("#{} {}", i.control_fd, st(&i.stat))
        }
        Response::PRead(r) => format!("data {:?}", String::from_utf8_lossy(&r.data)),
        Response::PWrite(r) => format!("wrote {}", r.count),
        Response::ReadLinkAt(r) => format!("target {:?}", String::from_utf8_lossy(&r.target)),
        Response::FStatFS(s) => format!("type={:x} namelen={}", s.fs_type, s.name_length),
        Response::SetStat(s) => {
            format!("failed mask={:x} errno={}", s.failure_mask, s.failure_errno)
        }
        Response::Getdents64(d) => {
            let mut v: Vec<String> = d
                .dirents
                .iter()
                .map(|e| format!("{}:{}", String::from_utf8_lossy(&e.name), e.typ))
                .collect();
            v.sort();
            format!("dirents [{}]", v.join(" "))
        }
        other => format!("{other:?}"),
    };
    format!("{body}{fds}")
}

/// Runs the sequence; returns the transcript.
pub fn script(c: &Client) -> Vec<String> {
    let mut t = Vec::new();
    let mut call = |name: &str, req: Request| {
        let line = format!("{name}: {}", res(c.call(&req), show));
        t.push(line);
    };
    let w = |dir: u64, p: &[&str]| {
        Request::Walk(WalkReq {
            dir_fd: dir,
            path: names(p),
        })
    };
    let ws = |dir: u64, p: &[&str]| {
        Request::WalkStat(WalkReq {
            dir_fd: dir,
            path: names(p),
        })
    };
    let cc = |dir_fd, mode| CreateCommon {
        dir_fd,
        uid: NO_UID,
        gid: NO_GID,
        mode,
    };
    let o = |fd, flags: i32| {
        Request::OpenAt(OpenAtReq {
            fd,
            flags: flags as u32,
            pad: 0,
        })
    };
    let rd = |fd, offset, count| {
        Request::PRead(PReadReq {
            offset,
            fd,
            count,
            pad: 0,
        })
    };

    // Walks: FDIDs 2.. as the Go server hands them out.
    call("walk file", w(1, &["file.txt"])); // #2
    call("walk dir/a", w(1, &["dir", "a"])); // #3 #4
    call("walk link/x", w(1, &["link", "x"])); // #5
    call("walk link", w(1, &["link"])); // #6
    call("walk abs/passwd", w(1, &["abs", "passwd"])); // #7
    call("walk missing", w(1, &["missing"]));
    call("walk dir/missing/x", w(1, &["dir", "missing", "x"])); // #8
    call("walk ..", w(1, &[".."]));
    call("walk .", w(1, &["."]));
    call("walk a/b", w(1, &["a/b"]));
    call("walk empty", w(1, &[""]));
    call("walk none", w(1, &[]));
    call("walk from file", w(2, &["x"]));
    call("walk bad fd", w(999, &["x"]));
    call("walkstat ''/dir/a", ws(1, &["", "dir", "a"]));
    call("walkstat dir/nope/x", ws(1, &["dir", "nope", "x"]));
    call("walkstat link/x", ws(1, &["link", "x"]));
    call("walkstat '' on file", ws(2, &[""]));
    call("walkstat x on file", ws(2, &["x"]));
    call("walkstat ..", ws(1, &["dir", ".."]));
    call("fstat root", Request::FStat(StatReq { fd: 1 }));
    call("fstat file", Request::FStat(StatReq { fd: 2 }));
    call("fstat 0", Request::FStat(StatReq { fd: 0 }));
    call("fstatfs", Request::FStatFS(FStatFsReq { fd: 1 }));

    // Opens and reads.
    call("open file ro", o(2, libc::O_RDONLY)); // open #9
    call("pread", rd(9, 6, 100));
    call("pread eof", rd(9, 100, 10));
    call("pread control", rd(2, 0, 10));
    call("pread too big", rd(9, 0, 3 << 20));
    call("fstat open", Request::FStat(StatReq { fd: 9 }));
    call(
        "pwrite ro",
        Request::PWrite(PWriteReq {
            offset: 0,
            fd: 9,
            data: b"x".to_vec(),
        }),
    );
    call("open dir rdwr", o(3, libc::O_RDWR));
    call("open dir trunc", o(3, libc::O_RDONLY | libc::O_TRUNC));
    call("open link", o(6, libc::O_RDONLY));
    call("open open-fd", o(9, libc::O_RDONLY));
    call("open dir", o(3, libc::O_RDONLY)); // #10
    call(
        "getdents dir",
        Request::Getdents64(Getdents64Req {
            dir_fd: 10,
            count: -65536,
            pad: 0,
        }),
    );
    call(
        "getdents dir end",
        Request::Getdents64(Getdents64Req {
            dir_fd: 10,
            count: 65536,
            pad: 0,
        }),
    );
    call(
        "getdents on file",
        Request::Getdents64(Getdents64Req {
            dir_fd: 9,
            count: -65536,
            pad: 0,
        }),
    );
    call("readlink", Request::ReadLinkAt(ReadLinkAtReq { fd: 6 }));
    call("readlink abs", Request::ReadLinkAt(ReadLinkAtReq { fd: 7 }));
    call(
        "readlink file",
        Request::ReadLinkAt(ReadLinkAtReq { fd: 2 }),
    );

    // Creation.
    call(
        "create",
        Request::OpenCreateAt(OpenCreateAtReq {
            common: cc(1, 0o640),
            flags: libc::O_RDWR as u32,
            name: b"new".to_vec(),
        }),
    ); // #11 open #12
    call(
        "pwrite",
        Request::PWrite(PWriteReq {
            offset: 3,
            fd: 12,
            data: b"written".to_vec(),
        }),
    );
    call("pread back", rd(12, 0, 100));
    call("fsync", Request::FSync(FsyncReq { fds: vec![12] }));
    call("fsync control", Request::FSync(FsyncReq { fds: vec![11] }));
    call(
        "create exists",
        Request::OpenCreateAt(OpenCreateAtReq {
            common: cc(1, 0o640),
            flags: 0,
            name: b"new".to_vec(),
        }),
    );
    call(
        "create in file",
        Request::OpenCreateAt(OpenCreateAtReq {
            common: cc(2, 0o640),
            flags: 0,
            name: b"x".to_vec(),
        }),
    );
    call(
        "create wronly",
        Request::OpenCreateAt(OpenCreateAtReq {
            common: cc(3, 0o604),
            flags: libc::O_WRONLY as u32,
            name: b"wo".to_vec(),
        }),
    ); // #13 open #14
    call("pread wronly", rd(14, 0, 1));
    call(
        "mkdir",
        Request::MkdirAt(MkdirAtReq {
            common: cc(1, 0o751),
            name: b"newdir".to_vec(),
        }),
    ); // #15
    call(
        "mkdir exists",
        Request::MkdirAt(MkdirAtReq {
            common: cc(1, 0o751),
            name: b"dir".to_vec(),
        }),
    );
    call(
        "mknod reg",
        Request::MknodAt(MknodAtReq {
            common: cc(15, 0o100600),
            minor: 0,
            major: 0,
            name: b"node".to_vec(),
        }),
    ); // #16
    call(
        "mknod fifo",
        Request::MknodAt(MknodAtReq {
            common: cc(15, 0o010600),
            minor: 0,
            major: 0,
            name: b"fifo".to_vec(),
        }),
    );
    call(
        "symlink",
        Request::SymlinkAt(SymlinkAtReq {
            dir_fd: 15,
            uid: NO_UID,
            gid: NO_GID,
            name: b"sl".to_vec(),
            target: b"../file.txt".to_vec(),
        }),
    ); // #17
    call(
        "link",
        Request::LinkAt(LinkAtReq {
            dir_fd: 15,
            target: 2,
            name: b"hard".to_vec(),
        }),
    ); // #18
    call(
        "link dir",
        Request::LinkAt(LinkAtReq {
            dir_fd: 1,
            target: 3,
            name: b"dl".to_vec(),
        }),
    );
    call(
        "link exists",
        Request::LinkAt(LinkAtReq {
            dir_fd: 15,
            target: 2,
            name: b"hard".to_vec(),
        }),
    );
    call(
        "setstat",
        Request::SetStat(SetStatReq {
            fd: 11,
            mask: setstat_mask::SIZE | setstat_mask::MODE,
            mode: 0o600,
            size: 4,
            ..Default::default()
        }),
    );
    call(
        "setstat bad mask",
        Request::SetStat(SetStatReq {
            fd: 11,
            mask: 0x4,
            ..Default::default()
        }),
    );
    call("fstat new", Request::FStat(StatReq { fd: 11 }));

    // Renames and unlinks.
    call(
        "rename",
        Request::RenameAt(RenameAtReq {
            old_dir: 1,
            new_dir: 15,
            old_name: b"new".to_vec(),
            new_name: b"moved".to_vec(),
        }),
    );
    call(
        "rename same",
        Request::RenameAt(RenameAtReq {
            old_dir: 1,
            new_dir: 1,
            old_name: b"file.txt".to_vec(),
            new_name: b"file.txt".to_vec(),
        }),
    );
    call(
        "rename missing",
        Request::RenameAt(RenameAtReq {
            old_dir: 1,
            new_dir: 1,
            old_name: b"nope".to_vec(),
            new_name: b"x".to_vec(),
        }),
    );
    call(
        "rename into file",
        Request::RenameAt(RenameAtReq {
            old_dir: 1,
            new_dir: 2,
            old_name: b"link".to_vec(),
            new_name: b"x".to_vec(),
        }),
    );
    let unlink = |dir_fd, name: &str, flags: i32| {
        Request::UnlinkAt(UnlinkAtReq {
            dir_fd,
            flags: flags as u32,
            name: name.as_bytes().to_vec(),
        })
    };
    call("unlink dir noflag", unlink(1, "dir", 0));
    call("unlink nonempty", unlink(1, "dir", libc::AT_REMOVEDIR));
    call("unlink missing", unlink(1, "missing", 0));
    call(
        "unlink file as dir",
        unlink(1, "file.txt", libc::AT_REMOVEDIR),
    );
    call("unlink sl", unlink(15, "sl", 0));
    call("unlink hard", unlink(15, "hard", 0));
    call(
        "close",
        Request::Close(CloseReq {
            fds: vec![2, 9, 999],
        }),
    );
    call("fstat closed", Request::FStat(StatReq { fd: 2 }));
    // A walk that fails part-way still uses up FDIDs in the Go server.
    call("walk dir/..", w(1, &["dir", ".."]));
    call("walk dir/a/..", w(1, &["dir", "a", ".."]));
    call("walk link/..", w(1, &["link", ".."]));
    call("walk after close", w(1, &["dir", "nested", "deep"]));
    t
}

/// The host tree, as text: every path with its type, mode and contents.
pub fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if md.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if md.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else {
                format!("{:?}", String::from_utf8_lossy(&fs::read(&p).unwrap()))
            };
            out.push(format!("{rel} {:o} {what}", md.mode()));
        }
    }
    out.sort();
    out
}
