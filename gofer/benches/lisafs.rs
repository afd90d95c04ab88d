//! Our gofer against Debian's Go gofer (the 2022 `runsc gofer`), both in
//! their own process under their own seccomp filter, driven by our lisafs
//! client over the socket and over flipcall channels. Prints operations
//! per second for each row and our/upstream ratio.
//!
//!     cargo bench -p gofer --bench lisafs [-- N]
//!
//! N (default 2000) is the count of each operation; getdents of a
//! 1,000-entry directory runs N/10 times. Each figure is the best of three
//! runs, ours and Go's interleaved, each on a fresh tree and server. Without `--bench` (as
//! `cargo test --all-targets` runs it) it does a short smoke round.
//!
//! The trees live on /dev/shm (tmpfs) when it exists.
//!
//! Rows: walk+stat (Walk two components, FStat the file), open+read
//! 4 KiB+close (OpenAt, PRead, and the close), create+write 4 KiB+close
//! (OpenCreateAt, PWrite, and the close), getdents of 1,000 entries
//! (OpenAt the directory, Getdents64 until empty, close). Closes are
//! batched 100 FDIDs to an RPC, as upstream's client does.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use common::{scratch_dir, start_gofer_binary, GoGofer, RUNSC};
use gofer::{Config, HostFs};
use gofer_protocol::message::*;
use gofer_protocol::Client;

const PAGE: usize = 4096;
const ROUNDS: usize = 3;

/// `--serve ROOT`: our server in this process, on the socket at FD 3,
/// set up as `runsc gofer --directfs=false` sets itself up (umask 0, the
/// lisafs seccomp list), minus the chroot.
fn serve(root: &Path) -> ! {
    rustix::process::umask(rustix::fs::Mode::empty());
    let fs = HostFs::new(root, Config::default()).expect("opening the root to serve");
    let _ = gofer_protocol::channel::max_channels();
    gofer::filter::install(gofer::filter::Options { directfs: false }).expect("seccomp");
    // SAFETY: the parent placed our end of the socketpair at FD 3 and
    // nothing else in this process owns it.
    let sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(3) });
    let code = match gofer_protocol::serve(Arc::new(fs), sock) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bench server: {e}");
            1
        }
    };
    std::process::exit(code)
}

struct Ours(Child);

impl Drop for Ours {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_ours(root: &Path) -> (Ours, Client) {
    let (a, b) = UnixStream::pair().unwrap();
    let raw = b.as_raw_fd();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("--serve").arg(root).stdin(Stdio::null());
    // SAFETY: runs in the forked child before exec; fcntl and dup2 are
    // async-signal-safe and `b` stays open in the parent until spawn
    // returns. Moving it above 100 first keeps dup2 from clobbering it.
    unsafe {
        cmd.pre_exec(move || {
            let high = libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 100);
            if high < 0 || libc::dup2(high, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("starting our server");
    drop(b);
    (Ours(child), Client::new(a))
}

fn start_go(work: &Path, root: &Path) -> (GoGofer, Client) {
    assert!(
        Path::new(RUNSC).exists(),
        "{RUNSC} is missing: install Debian's runsc package (the Go gofer)"
    );
    let (mut g, s, mounts) = start_gofer_binary(
        Path::new(RUNSC),
        None,
        &["--TESTONLY-unsafe-nonroot"],
        &[],
        work,
        root,
    );
    g.mounts = Some(mounts);
    (g, Client::new(s))
}

fn populate(root: &Path) {
    fs::create_dir_all(root.join("d")).unwrap();
    fs::write(root.join("d/file"), b"x").unwrap();
    fs::write(root.join("f4k"), vec![7u8; PAGE]).unwrap();
    fs::create_dir_all(root.join("many")).unwrap();
    for i in 0..1000 {
        fs::write(root.join(format!("many/entry-{i:04}")), b"").unwrap();
    }
    fs::create_dir_all(root.join("new")).unwrap();
}

/// Batches Close RPCs as upstream's client does.
struct Closer<'a> {
    c: &'a Client,
    fds: Vec<u64>,
}

impl Closer<'_> {
    fn close(&mut self, id: u64) {
        self.fds.push(id);
        if self.fds.len() >= 100 {
            self.flush();
        }
    }
    fn flush(&mut self) {
        if !self.fds.is_empty() {
            let fds = std::mem::take(&mut self.fds);
            self.c.call(&Request::Close(CloseReq { fds })).unwrap();
        }
    }
}

fn call(c: &Client, req: Request) -> (Response, Vec<OwnedFd>) {
    c.call(&req).unwrap_or_else(|e| panic!("{req:?}: {e}"))
}

fn lookup(c: &Client, path: &[&str]) -> u64 {
    let (resp, _) = call(
        c,
        Request::Walk(WalkReq {
            dir_fd: 1,
            path: common::names(path),
        }),
    );
    let Response::Walk(w) = resp else {
        unreachable!()
    };
    assert_eq!(w.status, WalkStatus::Success, "{path:?}");
    w.inodes.last().unwrap().control_fd
}

/// Operations per second of each row on one connection.
fn measure(c: &Client, n: usize) -> [f64; 4] {
    let mut closer = Closer { c, fds: Vec::new() };
    let rate = |count: usize, t: Instant| count as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    for _ in 0..n {
        let (resp, _) = call(
            c,
            Request::Walk(WalkReq {
                dir_fd: 1,
                path: common::names(&["d", "file"]),
            }),
        );
        let Response::Walk(w) = resp else {
            unreachable!()
        };
        let file = w.inodes[1].control_fd;
        call(c, Request::FStat(StatReq { fd: file }));
        closer.close(w.inodes[0].control_fd);
        closer.close(file);
    }
    closer.flush();
    let walk_stat = rate(n, t);

    let f4k = lookup(c, &["f4k"]);
    let t = Instant::now();
    for _ in 0..n {
        let (resp, _host) = call(
            c,
            Request::OpenAt(OpenAtReq {
                fd: f4k,
                flags: libc::O_RDONLY as u32,
                pad: 0,
            }),
        );
        let Response::OpenAt(o) = resp else {
            unreachable!()
        };
        let (resp, _) = call(
            c,
            Request::PRead(PReadReq {
                offset: 0,
                fd: o.open_fd,
                count: PAGE as u32,
                pad: 0,
            }),
        );
        let Response::PRead(r) = resp else {
            unreachable!()
        };
        assert_eq!(r.data.len(), PAGE);
        closer.close(o.open_fd);
    }
    closer.flush();
    let open_read = rate(n, t);

    let dir = lookup(c, &["new"]);
    let data = vec![1u8; PAGE];
    let t = Instant::now();
    for i in 0..n {
        let (resp, _host) = call(
            c,
            Request::OpenCreateAt(OpenCreateAtReq {
                common: CreateCommon {
                    dir_fd: dir,
                    uid: NO_UID,
                    gid: NO_GID,
                    mode: 0o644,
                },
                flags: libc::O_RDWR as u32,
                name: format!("c{i}").into_bytes(),
            }),
        );
        let Response::OpenCreateAt(o) = resp else {
            unreachable!()
        };
        call(
            c,
            Request::PWrite(PWriteReq {
                offset: 0,
                fd: o.new_fd,
                data: data.clone(),
            }),
        );
        closer.close(o.new_fd);
        closer.close(o.child.control_fd);
    }
    closer.flush();
    let create_write = rate(n, t);

    let many = lookup(c, &["many"]);
    let rounds = (n / 10).max(1);
    let t = Instant::now();
    for _ in 0..rounds {
        let (resp, _) = call(
            c,
            Request::OpenAt(OpenAtReq {
                fd: many,
                flags: libc::O_RDONLY as u32,
                pad: 0,
            }),
        );
        let Response::OpenAt(o) = resp else {
            unreachable!()
        };
        let (mut seen, mut count) = (0, -65536);
        loop {
            let (resp, _) = call(
                c,
                Request::Getdents64(Getdents64Req {
                    dir_fd: o.open_fd,
                    count,
                    pad: 0,
                }),
            );
            let Response::Getdents64(d) = resp else {
                unreachable!()
            };
            if d.dirents.is_empty() {
                break;
            }
            seen += d.dirents.len();
            count = 65536;
        }
        assert_eq!(seen, 1000);
        closer.close(o.open_fd);
    }
    closer.flush();
    let getdents = rate(rounds, t);
    [walk_stat, open_read, create_write, getdents]
}

/// One fresh tree and server per (server, transport) cell.
fn run(ours: bool, channels: bool, n: usize, work: &Path) -> [f64; 4] {
    let name = format!(
        "{}-{}",
        if ours { "ours" } else { "go" },
        if channels { "ch" } else { "sock" }
    );
    let work = work.join(name);
    let root = work.join("root");
    populate(&root);
    let body = |c: &Client| {
        c.mount().unwrap();
        if channels {
            assert!(c.open_default_channels().unwrap() > 0);
        }
        let r = measure(c, n);
        if channels {
            assert!(c.channel_calls() > 0);
        }
        r
    };
    let r = if ours {
        let (_server, c) = start_ours(&root);
        body(&c)
    } else {
        let (_gofer, c) = start_go(&work, &root);
        body(&c)
    };
    let _ = fs::remove_dir_all(&work);
    r
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(Path::new(&args[i + 1]));
    }
    let bench = args.iter().any(|a| a == "--bench");
    let n: usize = args
        .iter()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if bench { 2000 } else { 20 });
    if !bench {
        println!("smoke run (N={n}); for figures: cargo bench -p gofer --bench lisafs");
    }
    // Trees on tmpfs where there is one, so the disk's noise stays out of
    // the create row.
    let shm = Path::new("/dev/shm");
    let work = if shm.is_dir() {
        let w = shm.join(format!("lisafs-bench-{}", std::process::id()));
        fs::create_dir_all(&w).unwrap();
        w
    } else {
        scratch_dir("lisafs-bench")
    };
    let rows = [
        "walk+stat",
        "open+read 4KiB+close",
        "create+write 4KiB+close",
        "getdents 1000 entries",
    ];
    println!(
        "{:<24} {:<9} {:>12} {:>12} {:>8}",
        format!("operation (N={n})"),
        "transport",
        "ours ops/s",
        "go ops/s",
        "ours/go"
    );
    // The machine is shared: each cell is the best of ROUNDS runs, ours
    // and Go's interleaved so that load affects both alike.
    for channels in [false, true] {
        let (mut ours, mut go) = ([0f64; 4], [0f64; 4]);
        for _ in 0..ROUNDS {
            let o = run(true, channels, n, &work);
            let g = run(false, channels, n, &work);
            for i in 0..4 {
                ours[i] = ours[i].max(o[i]);
                go[i] = go[i].max(g[i]);
            }
        }
        for (i, row) in rows.iter().enumerate() {
            println!(
                "{:<24} {:<9} {:>12.0} {:>12.0} {:>7.2}x",
                row,
                if channels { "channel" } else { "socket" },
                ours[i],
                go[i],
                ours[i] / go[i]
            );
        }
    }
    let _ = fs::remove_dir_all(&work);
}
