//! Interop: our client against upstream's Go gofer, as shipped in Debian's
//! `runsc` package (the 2022 release), launched by hand as in Appendix B of
//! the protocol notes. It serves a scratch directory over lisafs on one end
//! of a socketpair; we drive it with [`gofer_protocol::Client`] and compare
//! what it says with what the host says.
//!
//! Needs root (the gofer chroots into the scratch directory) and
//! `/usr/bin/runsc`, which `test.sh` installs.

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use abi::Errno;
use gofer_protocol::message::*;
use gofer_protocol::{Client, ClientError};

const RUNSC: &str = "/usr/bin/runsc";

/// Kills and reaps the gofer if the test ends early.
struct Gofer {
    child: Option<Child>,
    log: PathBuf,
}

impl Gofer {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most 10 s) for the gofer to exit by itself.
    fn wait(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the gofer did not exit after the client closed its socket");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gofer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let base =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).unwrap();
    base
}

/// Starts `runsc gofer` serving `root`, with its lisafs socket, spec and
/// mounts pipe at FDs 3, 4 and 5.
fn start_gofer(work: &Path, root: &Path) -> (Gofer, UnixStream, fs::File) {
    assert!(
        Path::new(RUNSC).exists(),
        "{RUNSC} is missing: this test talks to upstream's Go gofer from Debian's \
         `runsc` package; ./test.sh installs it (or run `apt-get install runsc`)"
    );
    let bundle = work.join("bundle");
    fs::create_dir_all(&bundle).unwrap();
    let spec = format!(
        r#"{{"ociVersion":"1.0.2","process":{{"args":["/bin/true"],"cwd":"/"}},"root":{{"path":"{}","readonly":false}},"mounts":[]}}"#,
        root.display()
    );
    fs::write(bundle.join("config.json"), spec).unwrap();
    let spec_file = fs::File::open(bundle.join("config.json")).unwrap();
    let (client, server) = UnixStream::pair().unwrap();
    let (mounts_r, mounts_w) = std::io::pipe().unwrap();
    let log = work.join("gofer.log");
    let logf = fs::File::create(&log).unwrap();

    let srcs: [OwnedFd; 3] = [server.into(), spec_file.into(), mounts_w.into()];
    let raw: Vec<i32> = srcs.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = Command::new(RUNSC);
    cmd.args([
        "--TESTONLY-unsafe-nonroot",
        "gofer",
        "--bundle",
        bundle.to_str().unwrap(),
        "--setup-root=false",
        "--apply-caps=false",
        "--io-fds=3",
        "--spec-fd=4",
        "--mounts-fd=5",
        "interop-test",
    ])
    .stdin(Stdio::null())
    .stdout(logf.try_clone().unwrap())
    .stderr(logf);
    // SAFETY: the closure runs in the forked child before exec and calls
    // only async-signal-safe functions (fcntl, dup2) on FDs the parent
    // keeps open (`srcs` lives until after spawn). The sources are first
    // moved above 100 so placing them at 3, 4, 5 cannot clobber one that
    // sits there; dup2 leaves the targets without close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = [0i32; 3];
            for (h, &fd) in high.iter_mut().zip(&raw) {
                *h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100);
                if *h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, &h) in high.iter().enumerate() {
                if libc::dup2(h, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn runsc gofer");
    drop(srcs);
    let gofer = Gofer {
        child: Some(child),
        log,
    };
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    (gofer, client, OwnedFd::from(mounts_r).into())
}

fn walk(c: &Client, dir: u64, names: &[&str]) -> WalkResp {
    let (resp, fds) = c
        .call(&Request::Walk(WalkReq {
            dir_fd: dir,
            path: names.iter().map(|n| n.as_bytes().to_vec()).collect(),
        }))
        .unwrap();
    assert!(fds.is_empty());
    match resp {
        Response::Walk(w) => w,
        r => panic!("Walk answered {r:?}"),
    }
}

fn fstat(c: &Client, fd: u64) -> Result<Statx, ClientError> {
    match c.call(&Request::FStat(StatReq { fd }))? {
        (Response::FStat(s), _) => Ok(s),
        r => panic!("FStat answered {r:?}"),
    }
}

fn open(c: &Client, fd: u64, flags: u32) -> (u64, Vec<OwnedFd>) {
    match c
        .call(&Request::OpenAt(OpenAtReq { fd, flags, pad: 0 }))
        .unwrap()
    {
        (Response::OpenAt(o), fds) => (o.open_fd, fds),
        r => panic!("OpenAt answered {r:?}"),
    }
}

fn assert_stat_matches(s: &Statx, path: &Path) {
    let md = fs::symlink_metadata(path).unwrap();
    assert_eq!(s.size, md.size(), "size of {}", path.display());
    assert_eq!(u32::from(s.mode), md.mode(), "mode of {}", path.display());
    assert_eq!(s.ino, md.ino(), "ino of {}", path.display());
    assert_eq!(
        u64::from(s.nlink),
        md.nlink(),
        "nlink of {}",
        path.display()
    );
    assert_eq!((s.uid, s.gid), (md.uid(), md.gid()));
    assert_eq!(s.mtime.sec, md.mtime());
}

#[test]
fn go_gofer_serves_our_client() {
    let work = scratch_dir("interop-go-gofer");
    let root = work.join("root");
    fs::create_dir_all(root.join("dir")).unwrap();
    let content = b"hello from the host\n";
    fs::write(root.join("file.txt"), content).unwrap();
    fs::write(root.join("dir/a"), b"a").unwrap();
    fs::write(root.join("dir/bb"), b"bb").unwrap();
    std::os::unix::fs::symlink("file.txt", root.join("link")).unwrap();

    let (gofer, sock, mut mounts) = start_gofer(&work, &root);
    let c = Client::new(sock);
    let ctx = |what: &str| format!("{what}; gofer log:\n{}", gofer.log());

    // Mount: root is control FD 1, the 2022 supported set, no FD.
    let (m, fd) = c
        .mount()
        .unwrap_or_else(|e| panic!("{}", ctx(&format!("Mount: {e}"))));
    assert!(fd.is_none(), "the 2022 gofer donates no mount FD");
    assert_eq!(m.root.control_fd, 1);
    assert_stat_matches(&m.root.stat, &root);
    assert!(m.max_message_size >= 1 << 20, "{}", m.max_message_size);
    for mid in [
        Mid::Walk,
        Mid::OpenAt,
        Mid::PRead,
        Mid::ReadLinkAt,
        Mid::Getdents64,
    ] {
        assert!(m.supports(mid), "{mid:?} not advertised: {:?}", m.supported);
    }
    assert!(!m.supports(Mid::Flush));
    if !m.supports(Mid::ConnectWithCreds) {
        // The 2022 dialect, as observed (§1.7).
        let want: Vec<u16> = (1..=19).chain(21..=26).chain(29..=31).collect();
        assert_eq!(m.supported, want);
        assert_eq!(m.max_message_size, 2_093_056);
    }
    // The gofer reports the (empty) resolved mount list on the pipe.
    let mut mounts_json = String::new();
    mounts.read_to_string(&mut mounts_json).unwrap();
    assert_eq!(mounts_json.trim(), "[]");

    // Walk to a regular file; FStat it; compare with the host.
    let w = walk(&c, 1, &["file.txt"]);
    assert_eq!(w.status, WalkStatus::Success);
    assert_eq!(w.inodes.len(), 1);
    let file = w.inodes[0];
    assert_stat_matches(&file.stat, &root.join("file.txt"));
    let s = fstat(&c, file.control_fd).unwrap();
    assert_stat_matches(&s, &root.join("file.txt"));

    // OpenAt read-only: an open FD plus a donated host FD; PRead both ways.
    let (open_fd, mut host) = open(&c, file.control_fd, libc::O_RDONLY as u32);
    assert_eq!(
        host.len(),
        1,
        "the gofer donates the host FD of a regular file"
    );
    let host = fs::File::from(host.pop().unwrap());
    let mut buf = vec![0; 64];
    let n = host.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], content);
    match c
        .call(&Request::PRead(PReadReq {
            offset: 6,
            fd: open_fd,
            count: 4096,
            pad: 0,
        }))
        .unwrap()
    {
        (Response::PRead(r), _) => assert_eq!(r.data, &content[6..]),
        r => panic!("PRead answered {r:?}"),
    }
    match c
        .call(&Request::PRead(PReadReq {
            offset: content.len() as u64,
            fd: open_fd,
            count: 10,
            pad: 0,
        }))
        .unwrap()
    {
        (Response::PRead(r), _) => assert!(r.data.is_empty(), "EOF is an empty read"),
        r => panic!("PRead answered {r:?}"),
    }
    // FStat works on open FDs too.
    assert_stat_matches(&fstat(&c, open_fd).unwrap(), &root.join("file.txt"));

    // A symlink stops the walk after returning it; ReadLinkAt reads it.
    let w = walk(&c, 1, &["link", "beyond"]);
    assert_eq!(w.status, WalkStatus::ComponentIsSymlink);
    assert_eq!(w.inodes.len(), 1);
    let link = w.inodes[0];
    assert_stat_matches(&link.stat, &root.join("link"));
    match c
        .call(&Request::ReadLinkAt(ReadLinkAtReq {
            fd: link.control_fd,
        }))
        .unwrap()
    {
        (Response::ReadLinkAt(r), _) => assert_eq!(r.target, b"file.txt"),
        r => panic!("ReadLinkAt answered {r:?}"),
    }

    // Getdents64 of a directory: seek-to-0 form first, then end.
    let w = walk(&c, 1, &["dir"]);
    assert_eq!(w.status, WalkStatus::Success);
    let dir = w.inodes[0];
    let (dir_open, _) = open(&c, dir.control_fd, libc::O_RDONLY as u32);
    let mut names = Vec::new();
    let mut count = -65536;
    loop {
        let (resp, _) = c
            .call(&Request::Getdents64(Getdents64Req {
                dir_fd: dir_open,
                count,
                pad: 0,
            }))
            .unwrap();
        let Response::Getdents64(d) = resp else {
            panic!("Getdents64 answered {resp:?}");
        };
        if d.dirents.is_empty() {
            break;
        }
        for de in d.dirents {
            let path = root
                .join("dir")
                .join(String::from_utf8(de.name.clone()).unwrap());
            assert_eq!(de.ino, fs::metadata(&path).unwrap().ino());
            assert_eq!(de.typ, libc::DT_REG);
            names.push(de.name);
        }
        count = 65536;
    }
    names.sort();
    assert_eq!(names, vec![b"a".to_vec(), b"bb".to_vec()]);

    // WalkStat with a leading "" stats the starting directory too.
    match c
        .call(&Request::WalkStat(WalkReq {
            dir_fd: 1,
            path: vec![vec![], b"dir".to_vec(), b"bb".to_vec()],
        }))
        .unwrap()
    {
        (Response::WalkStat(ws), _) => {
            assert_eq!(ws.stats.len(), 3);
            assert_stat_matches(&ws.stats[0], &root);
            assert_stat_matches(&ws.stats[1], &root.join("dir"));
            assert_stat_matches(&ws.stats[2], &root.join("dir/bb"));
        }
        r => panic!("WalkStat answered {r:?}"),
    }

    // FStatFS of the root.
    match c.call(&Request::FStatFS(FStatFsReq { fd: 1 })).unwrap() {
        (Response::FStatFS(s), _) => assert!(s.block_size > 0 && s.name_length > 0),
        r => panic!("FStatFS answered {r:?}"),
    }

    // Errors: a missing component stops the walk; unknown FDIDs are EBADF;
    // ReadLinkAt of a regular file is EINVAL; a bad name is EINVAL.
    let w = walk(&c, 1, &["missing"]);
    assert_eq!(w.status, WalkStatus::ComponentDoesNotExist);
    assert!(w.inodes.is_empty());
    let e = fstat(&c, 9999).unwrap_err();
    assert!(matches!(e, ClientError::Remote(Errno::EBADF)), "{e}");
    let e = c
        .call(&Request::ReadLinkAt(ReadLinkAtReq {
            fd: file.control_fd,
        }))
        .unwrap_err();
    assert!(matches!(e, ClientError::Remote(Errno::EINVAL)), "{e}");
    let e = c
        .call(&Request::Walk(WalkReq {
            dir_fd: 1,
            path: vec![b"..".to_vec()],
        }))
        .unwrap_err();
    assert!(matches!(e, ClientError::Remote(Errno::EINVAL)), "{e}");

    // Close everything; the connection still works afterwards.
    let (resp, _) = c
        .call(&Request::Close(CloseReq {
            fds: vec![
                file.control_fd,
                open_fd,
                link.control_fd,
                dir.control_fd,
                dir_open,
            ],
        }))
        .unwrap();
    assert_eq!(resp, Response::Close);
    let e = fstat(&c, file.control_fd).unwrap_err();
    assert!(matches!(e, ClientError::Remote(Errno::EBADF)), "{e}");

    // Closing our end ends the session; the gofer exits cleanly.
    drop(c);
    let log = gofer.log();
    let st = gofer.wait();
    assert!(st.success(), "gofer exited with {st}; log:\n{log}");
    let _ = fs::remove_dir_all(&work);
}

fn inode_of(r: Result<(Response, Vec<OwnedFd>), ClientError>, what: &str) -> Inode {
    match r {
        Ok((Response::MkdirAt(i), _))
        | Ok((Response::SymlinkAt(i), _))
        | Ok((Response::LinkAt(i), _))
        | Ok((Response::MknodAt(i), _)) => i,
        other => panic!("{what} answered {other:?}"),
    }
}

#[test]
fn go_gofer_mutations_and_channel() {
    let work = scratch_dir("interop-go-gofer-mut");
    let root = work.join("root");
    fs::create_dir_all(&root).unwrap();
    let (gofer, sock, _mounts) = start_gofer(&work, &root);
    let c = Client::new(sock);
    c.mount()
        .unwrap_or_else(|e| panic!("Mount: {e}; gofer log:\n{}", gofer.log()));

    // Channel: a 16-byte answer and exactly two FDs (memfd, fdchannel).
    let (resp, fds) = c.call(&Request::Channel).unwrap();
    let Response::Channel(ch) = resp else {
        panic!("Channel answered {resp:?}");
    };
    assert_eq!(fds.len(), 2);
    assert_eq!(ch.data_offset, 0);
    assert_eq!(ch.data_length, 2 << 20);
    let memfd = fs::File::from(fds.into_iter().next().unwrap());
    assert!(memfd.metadata().unwrap().len() >= ch.data_length);

    let common = |name: u16| CreateCommon {
        dir_fd: 1,
        uid: NO_UID,
        gid: NO_GID,
        mode: name,
    };

    // MkdirAt.
    let d = inode_of(
        c.call(&Request::MkdirAt(MkdirAtReq {
            common: common(0o750),
            name: b"newdir".to_vec(),
        })),
        "MkdirAt",
    );
    assert_stat_matches(&d.stat, &root.join("newdir"));
    assert_eq!(d.stat.mode & 0o7777, 0o750);

    // OpenCreateAt read-write, then PWrite through the RPC.
    let (resp, host) = c
        .call(&Request::OpenCreateAt(OpenCreateAtReq {
            common: common(0o640),
            flags: libc::O_RDWR as u32,
            name: b"created".to_vec(),
        }))
        .unwrap();
    let Response::OpenCreateAt(oc) = resp else {
        panic!("OpenCreateAt answered {resp:?}");
    };
    assert!(host.len() <= 1);
    assert_eq!(oc.child.stat.mode, libc::S_IFREG as u16 | 0o640);
    let (resp, _) = c
        .call(&Request::PWrite(PWriteReq {
            offset: 0,
            fd: oc.new_fd,
            data: b"written".to_vec(),
        }))
        .unwrap();
    assert_eq!(resp, Response::PWrite(PWriteResp { count: 7 }));
    let (resp, _) = c
        .call(&Request::FSync(FsyncReq {
            fds: vec![oc.new_fd],
        }))
        .unwrap();
    assert_eq!(resp, Response::FSync);
    assert_eq!(fs::read(root.join("created")).unwrap(), b"written");

    // SetStat: truncate and chmod.
    let (resp, _) = c
        .call(&Request::SetStat(SetStatReq {
            fd: oc.child.control_fd,
            mask: setstat_mask::SIZE | setstat_mask::MODE,
            mode: 0o600,
            size: 3,
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(
        resp,
        Response::SetStat(SetStatResp {
            failure_mask: 0,
            failure_errno: 0
        })
    );
    let md = fs::metadata(root.join("created")).unwrap();
    assert_eq!((md.len(), md.mode() & 0o7777), (3, 0o600));

    // SymlinkAt, LinkAt, RenameAt, UnlinkAt.
    let sl = inode_of(
        c.call(&Request::SymlinkAt(SymlinkAtReq {
            dir_fd: 1,
            uid: NO_UID,
            gid: NO_GID,
            name: b"sl".to_vec(),
            target: b"created".to_vec(),
        })),
        "SymlinkAt",
    );
    assert_stat_matches(&sl.stat, &root.join("sl"));
    assert_eq!(
        fs::read_link(root.join("sl")).unwrap(),
        Path::new("created")
    );
    let hl = inode_of(
        c.call(&Request::LinkAt(LinkAtReq {
            dir_fd: 1,
            target: oc.child.control_fd,
            name: b"hard".to_vec(),
        })),
        "LinkAt",
    );
    assert_eq!(hl.stat.nlink, 2);
    assert_eq!(hl.stat.ino, md.ino());
    let (resp, _) = c
        .call(&Request::RenameAt(RenameAtReq {
            old_dir: 1,
            new_dir: d.control_fd,
            old_name: b"hard".to_vec(),
            new_name: b"moved".to_vec(),
        }))
        .unwrap();
    assert_eq!(resp, Response::RenameAt);
    assert_eq!(fs::read(root.join("newdir/moved")).unwrap(), b"wri");
    let e = c
        .call(&Request::UnlinkAt(UnlinkAtReq {
            dir_fd: 1,
            flags: 0,
            name: b"newdir".to_vec(),
        }))
        .unwrap_err();
    assert!(matches!(e, ClientError::Remote(Errno::EISDIR)), "{e}");
    for (dir, name, flags) in [
        (d.control_fd, "moved", 0),
        (1, "newdir", libc::AT_REMOVEDIR as u32),
        (1, "sl", 0),
    ] {
        let (resp, _) = c
            .call(&Request::UnlinkAt(UnlinkAtReq {
                dir_fd: dir,
                flags,
                name: name.as_bytes().to_vec(),
            }))
            .unwrap();
        assert_eq!(resp, Response::UnlinkAt);
    }
    assert!(!root.join("newdir").exists() && !root.join("sl").exists());
    // Creating what exists is EEXIST.
    let e = c
        .call(&Request::MkdirAt(MkdirAtReq {
            common: common(0o755),
            name: b"created".to_vec(),
        }))
        .unwrap_err();
    assert!(matches!(e, ClientError::Remote(Errno::EEXIST)), "{e}");

    drop(c);
    let log = gofer.log();
    let st = gofer.wait();
    assert!(st.success(), "gofer exited with {st}; log:\n{log}");
    let _ = fs::remove_dir_all(&work);
}

/// The same reads as `go_gofer_serves_our_client`, but over flipcall
/// channels: FStat, Walk, OpenAt (host FD on the fdchannel), PRead,
/// ReadLinkAt, Getdents64, and an error response.
#[test]
fn go_gofer_over_channels() {
    let work = scratch_dir("interop-go-gofer-chan");
    let root = work.join("root");
    fs::create_dir_all(root.join("dir")).unwrap();
    let content = b"hello over flipcall\n";
    fs::write(root.join("file.txt"), content).unwrap();
    fs::write(root.join("dir/a"), b"a").unwrap();
    fs::write(root.join("dir/bb"), b"bb").unwrap();
    std::os::unix::fs::symlink("file.txt", root.join("link")).unwrap();
    let (gofer, sock, _mounts) = start_gofer(&work, &root);
    let c = Client::new(sock);
    let (m, _) = c
        .mount()
        .unwrap_or_else(|e| panic!("Mount: {e}; gofer log:\n{}", gofer.log()));
    assert!(m.supports(Mid::Channel));
    // The Go gofer allows clamp(GOMAXPROCS, 2, 4) channels; ask for more
    // and take what it grants (ENOMEM past its limit).
    let n = c
        .open_channels(8)
        .unwrap_or_else(|e| panic!("Channel: {e}; gofer log:\n{}", gofer.log()));
    assert!((2..=4).contains(&n), "{n} channels");
    assert_eq!(c.idle_channels(), n);

    let before = c.channel_calls();
    let w = walk(&c, 1, &["file.txt"]);
    let file = w.inodes[0];
    assert_stat_matches(&fstat(&c, file.control_fd).unwrap(), &root.join("file.txt"));
    let (open_fd, host) = open(&c, file.control_fd, libc::O_RDONLY as u32);
    assert_eq!(host.len(), 1, "the host FD arrives on the fdchannel");
    let mut buf = vec![0; 64];
    let n_read = fs::File::from(host.into_iter().next().unwrap())
        .read_at(&mut buf, 0)
        .unwrap();
    assert_eq!(&buf[..n_read], content);
    match c
        .call(&Request::PRead(PReadReq {
            offset: 6,
            fd: open_fd,
            count: 4096,
            pad: 0,
        }))
        .unwrap()
    {
        (Response::PRead(r), _) => assert_eq!(r.data, &content[6..]),
        r => panic!("PRead answered {r:?}"),
    }
    // A large read: the whole window's worth of payload path.
    let big = vec![0xabu8; 1 << 20];
    fs::write(root.join("big"), &big).unwrap();
    let bf = walk(&c, 1, &["big"]).inodes[0];
    let (big_open, _) = open(&c, bf.control_fd, libc::O_RDONLY as u32);
    match c
        .call(&Request::PRead(PReadReq {
            offset: 0,
            fd: big_open,
            count: 1 << 20,
            pad: 0,
        }))
        .unwrap()
    {
        (Response::PRead(r), _) => assert!(r.data == big),
        r => panic!("PRead answered {r:?}"),
    }

    let link = walk(&c, 1, &["link"]).inodes[0];
    match c
        .call(&Request::ReadLinkAt(ReadLinkAtReq {
            fd: link.control_fd,
        }))
        .unwrap()
    {
        (Response::ReadLinkAt(r), _) => assert_eq!(r.target, b"file.txt"),
        r => panic!("ReadLinkAt answered {r:?}"),
    }
    let dir = walk(&c, 1, &["dir"]).inodes[0];
    let (dir_open, _) = open(&c, dir.control_fd, libc::O_RDONLY as u32);
    let mut names = Vec::new();
    let mut count = -65536;
    loop {
        let (resp, _) = c
            .call(&Request::Getdents64(Getdents64Req {
                dir_fd: dir_open,
                count,
                pad: 0,
            }))
            .unwrap();
        let Response::Getdents64(d) = resp else {
            panic!("Getdents64 answered {resp:?}");
        };
        if d.dirents.is_empty() {
            break;
        }
        names.extend(d.dirents.into_iter().map(|d| d.name));
        count = 65536;
    }
    names.sort();
    assert_eq!(names, vec![b"a".to_vec(), b"bb".to_vec()]);
    let e = fstat(&c, 9999).unwrap_err();
    assert!(matches!(e, ClientError::Remote(Errno::EBADF)), "{e}");

    // Every one of those went over a channel; none were retired.
    assert_eq!(c.channel_calls() - before, 14);
    assert_eq!(c.idle_channels(), n);

    // Ending the session with channels open: the gofer exits cleanly.
    drop(c);
    let log = gofer.log();
    let st = gofer.wait();
    assert!(st.success(), "gofer exited with {st}; log:\n{log}");
    let _ = fs::remove_dir_all(&work);
}

/// The Go gofer dies (SIGKILL) while our call waits on a channel: the call
/// fails promptly instead of waiting forever on the futex.
#[test]
fn go_gofer_death_mid_call_does_not_hang_us() {
    let work = scratch_dir("interop-go-gofer-death");
    let root = work.join("root");
    fs::create_dir_all(&root).unwrap();
    let (mut gofer, sock, _mounts) = start_gofer(&work, &root);
    let c = Client::new(sock);
    c.mount().unwrap();
    assert!(c.open_channels(2).unwrap() >= 1);
    let pid = gofer.child.as_ref().unwrap().id() as i32;
    // Freeze the gofer so the call is certainly in flight, then kill it.
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    // Wait until every thread of it has stopped (state T).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stopped = fs::read_dir(format!("/proc/{pid}/task")).unwrap().all(|t| {
            let stat = fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            state.starts_with('T') || state.starts_with('t')
        });
        if stopped {
            break;
        }
        assert!(Instant::now() < deadline, "the gofer did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
    let c = std::sync::Arc::new(c);
    let c2 = c.clone();
    let call = std::thread::spawn(move || c2.call(&Request::FStat(StatReq { fd: 1 })));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !call.is_finished(),
        "the call waits while the gofer is stopped"
    );
    let mut child = gofer.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !call.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the call hangs after the gofer died"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let e = call.join().unwrap().unwrap_err();
    assert!(
        matches!(&e, ClientError::Channel(ce) if ce.is_shutdown()),
        "{e}"
    );
    assert_eq!(e.errno(), Errno::EIO);
    let _ = fs::remove_dir_all(&work);
}
