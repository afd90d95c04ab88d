//! Shared by the gofer's tests: start our server or Debian's Go gofer on a
//! socketpair, scratch directories, and small client helpers.
#![allow(dead_code)]

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use gofer::{Config, HostFs};
use gofer_protocol::message::*;
use gofer_protocol::{Client, ClientError};

pub mod script;

pub const RUNSC: &str = "/usr/bin/runsc";

pub fn scratch_dir(name: &str) -> PathBuf {
    let base =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).unwrap();
    base
}

/// The gofer runs with umask 0 (the Sentry applies the application's);
/// tests that create files through our in-process server need the same.
pub fn umask0() {
    rustix::process::umask(rustix::fs::Mode::empty());
}

/// Our server, in a thread of this process.
pub struct Ours {
    pub client: Client,
    thread: Option<JoinHandle<()>>,
}

impl Ours {
    pub fn finish(mut self) {
        let t = self.thread.take().unwrap();
        drop(self);
        t.join().unwrap();
    }
}

pub fn start_ours(root: &Path, config: Config) -> Ours {
    umask0();
    let fs = HostFs::new(root, config).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    a.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let thread = std::thread::spawn(move || {
        gofer_protocol::serve(Arc::new(fs), b).unwrap();
    });
    Ours {
        client: Client::new(a),
        thread: Some(thread),
    }
}

/// Debian's Go gofer (the 2022 release), launched as Appendix B of the
/// protocol notes says; killed and reaped on drop.
pub struct GoGofer {
    pub child: Option<Child>,
    pub log: PathBuf,
    pub mounts: Option<fs::File>,
}

impl Drop for GoGofer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl GoGofer {
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts `prog [global flags] gofer ...` serving `root` with its lisafs
/// socket, spec and mounts pipe at FDs 3, 4 and 5, and `gofer_flags`
/// after Appendix B's (`--setup-root=false --apply-caps=false`; a later
/// flag wins). Appendix B's global `--TESTONLY-unsafe-nonroot` is the
/// caller's to give. Returns the process, our end of
/// the socket and the read end of the mounts pipe.
pub fn start_gofer_binary(
    prog: &Path,
    argv0: Option<&str>,
    global: &[&str],
    gofer_flags: &[&str],
    work: &Path,
    root: &Path,
) -> (GoGofer, UnixStream, fs::File) {
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
    let mut cmd = Command::new(prog);
    if let Some(a) = argv0 {
        cmd.arg0(a);
    }
    cmd.args(global)
        .args([
            "gofer",
            "--bundle",
            bundle.to_str().unwrap(),
            "--setup-root=false",
            "--apply-caps=false",
            "--io-fds=3",
            "--spec-fd=4",
            "--mounts-fd=5",
        ])
        .args(gofer_flags)
        .arg("gofer-test")
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
    let child = cmd.spawn().expect("spawn the gofer");
    drop(srcs);
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    (
        GoGofer {
            child: Some(child),
            log,
            mounts: None,
        },
        client,
        OwnedFd::from(mounts_r).into(),
    )
}

pub fn start_go(work: &Path, root: &Path) -> (GoGofer, Client) {
    assert!(
        Path::new(RUNSC).exists(),
        "{RUNSC} is missing: the differential test talks to upstream's Go gofer from \
         Debian's `runsc` package; ./test.sh installs it (or run `apt-get install runsc`)"
    );
    let (mut g, s, mounts) = start_gofer_binary(
        Path::new(RUNSC),
        None,
        &["--TESTONLY-unsafe-nonroot"],
        &[],
        work,
        root,
    );
    // Keep the pipe's read end: the gofer dies of EPIPE if it is closed
    // before it has written the mount list.
    g.mounts = Some(mounts);
    (g, Client::new(s))
}

pub fn names(v: &[&str]) -> Vec<Vec<u8>> {
    v.iter().map(|n| n.as_bytes().to_vec()).collect()
}

pub fn walk(c: &Client, dir: u64, path: &[&str]) -> Result<WalkResp, ClientError> {
    match c.call(&Request::Walk(WalkReq {
        dir_fd: dir,
        path: names(path),
    }))? {
        (Response::Walk(w), _) => Ok(w),
        r => panic!("Walk answered {r:?}"),
    }
}

pub fn open(c: &Client, fd: u64, flags: i32) -> Result<(u64, Vec<OwnedFd>), ClientError> {
    match c.call(&Request::OpenAt(OpenAtReq {
        fd,
        flags: flags as u32,
        pad: 0,
    }))? {
        (Response::OpenAt(o), fds) => Ok((o.open_fd, fds)),
        r => panic!("OpenAt answered {r:?}"),
    }
}

pub fn pread(c: &Client, fd: u64, offset: u64, count: u32) -> Result<Vec<u8>, ClientError> {
    match c.call(&Request::PRead(PReadReq {
        offset,
        fd,
        count,
        pad: 0,
    }))? {
        (Response::PRead(r), _) => Ok(r.data),
        r => panic!("PRead answered {r:?}"),
    }
}

pub fn readdir(c: &Client, open_fd: u64) -> Result<Vec<Dirent64>, ClientError> {
    let mut all = Vec::new();
    let mut count = -65536;
    loop {
        match c.call(&Request::Getdents64(Getdents64Req {
            dir_fd: open_fd,
            count,
            pad: 0,
        }))? {
            (Response::Getdents64(d), _) => {
                if d.dirents.is_empty() {
                    break;
                }
                all.extend(d.dirents);
            }
            r => panic!("Getdents64 answered {r:?}"),
        }
        count = 65536;
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}
