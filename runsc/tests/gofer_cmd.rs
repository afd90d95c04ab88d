//! `runsc gofer` end to end: our binary launched as Appendix B of the
//! protocol notes launches Debian's Go gofer (socket, spec and mounts pipe
//! at FDs 3, 4, 5), driven by our lisafs client. Every session here runs
//! under the gofer's own seccomp filter (`gofer::filter`), which is checked
//! to be installed (`Seccomp: 2` in /proc/<pid>/status) while it serves.

#[path = "../../gofer/tests/common/mod.rs"]
mod common;

use std::fs;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::script::*;
use common::*;
use gofer_protocol::message::*;
use gofer_protocol::{Client, ClientError};

fn runsc() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_runsc"))
}

/// Our `runsc gofer` serving `root`, with Appendix B's flags plus these.
fn start_runsc_gofer(
    work: &Path,
    root: &Path,
    global: &[&str],
    gofer: &[&str],
) -> (GoGofer, Client) {
    let (mut g, sock, mounts) =
        start_gofer_binary(runsc(), Some("runsc-gofer"), global, gofer, work, root);
    g.mounts = Some(mounts);
    (g, Client::new(sock))
}

/// The `Seccomp:` field of a process's status (0 off, 1 strict, 2 filter).
fn seccomp_mode(g: &GoGofer) -> String {
    let pid = g.child.as_ref().unwrap().id();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no Seccomp line in the status of {pid}:\n{status}"))
}

fn wait_exit(g: &mut GoGofer) -> ExitStatus {
    let child = g.child.as_mut().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            g.child = None;
            return st;
        }
        assert!(Instant::now() < deadline, "runsc gofer did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn directfs_gofer_serves_reads_and_dies_on_a_mutation() {
    let work = scratch_dir("runsc-gofer-directfs");
    let root = work.join("root");
    fs::create_dir_all(root.join("dir")).unwrap();
    fs::write(root.join("dir/file"), b"served by runsc gofer").unwrap();
    let (mut gofer, c) = start_runsc_gofer(&work, &root, &["--TESTONLY-unsafe-nonroot"], &[]);
    let (m, fd) = c
        .mount()
        .unwrap_or_else(|e| panic!("Mount: {e}; log:\n{}", gofer.log()));
    // directfs is on by default: the Mount reply donates the root's FD.
    let donated = fd.expect("directfs donates the root FD");
    let st = rustix::fs::fstat(&donated).unwrap();
    let want = fs::metadata(&root).unwrap();
    assert_eq!(st.st_ino, std::os::unix::fs::MetadataExt::ino(&want));
    assert_eq!(m.root.control_fd, 1);
    let mut json = String::new();
    gofer
        .mounts
        .take()
        .unwrap()
        .read_to_string(&mut json)
        .unwrap();
    assert_eq!(json.trim(), "[]");
    assert_eq!(seccomp_mode(&gofer), "2", "the gofer serves under seccomp");

    let w = walk(&c, 1, &["dir", "file"]).unwrap();
    assert_eq!(w.status, WalkStatus::Success);
    let (o, host) = open(&c, w.inodes[1].control_fd, libc::O_RDONLY).unwrap();
    assert_eq!(host.len(), 1);
    assert_eq!(pread(&c, o, 0, 100).unwrap(), b"served by runsc gofer");

    // As upstream's, the directfs list has no mkdirat: a client that sends
    // mutating RPCs to a directfs gofer gets it killed (protocol notes
    // §1.9), and nothing is created.
    let r = c.call(&Request::MkdirAt(MkdirAtReq {
        common: CreateCommon {
            dir_fd: 1,
            uid: NO_UID,
            gid: NO_GID,
            mode: 0o777,
        },
        name: b"made".to_vec(),
    }));
    assert!(
        matches!(r, Err(ClientError::Frame(_))),
        "MkdirAt on a directfs gofer answered {r:?}"
    );
    let st = wait_exit(&mut gofer);
    assert_eq!(
        st.signal(),
        Some(libc::SIGSYS),
        "the seccomp filter kills the gofer ({st}); log:\n{}",
        gofer.log()
    );
    assert!(!root.join("made").exists());
    let _ = fs::remove_dir_all(&work);
}

/// The differential sequence against Debian's Go gofer and against our
/// `runsc gofer --directfs=false` under its filter, over the socket or
/// over channels.
fn lisafs_gofer_agrees_with_go(channels: bool) {
    let work = scratch_dir(if channels {
        "runsc-gofer-ch"
    } else {
        "runsc-gofer-sock"
    });
    let (go_work, our_work) = (work.join("go"), work.join("ours"));
    let (go_root, our_root) = (go_work.join("root"), our_work.join("root"));
    populate(&go_root);
    populate(&our_root);

    let session = |c: &Client| {
        c.mount().unwrap();
        if channels {
            let n = c.open_default_channels().unwrap();
            assert!(n >= 1, "no channel opened");
        }
        let t = script(c);
        if channels {
            assert!(c.channel_calls() > 0, "the script did not use the channels");
        }
        t
    };

    let (go_gofer, go) = start_go(&go_work, &go_root);
    let go_t = session(&go);
    drop(go);
    drop(go_gofer);

    let (mut ours, c) = start_runsc_gofer(
        &our_work,
        &our_root,
        &["--TESTONLY-unsafe-nonroot", "--directfs=false"],
        &[],
    );
    let our_t = session(&c);
    assert_eq!(seccomp_mode(&ours), "2", "the gofer serves under seccomp");
    drop(c);
    let st = wait_exit(&mut ours);
    let log = ours.log();
    assert!(st.success(), "runsc gofer exited {st}; log:\n{log}");

    let diffs: Vec<String> = go_t
        .iter()
        .zip(&our_t)
        .enumerate()
        .filter(|(_, (g, o))| g != o)
        .map(|(i, (g, o))| format!("step {i}\n  go:   {g}\n  ours: {o}"))
        .collect();
    assert_eq!(go_t.len(), our_t.len());
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}\nlog:\n{log}",
        diffs.len(),
        diffs.join("\n")
    );
    assert_eq!(tree(&go_root), tree(&our_root), "resulting host trees");
    let _ = fs::remove_dir_all(&work);
}

#[test]
fn lisafs_gofer_under_seccomp_agrees_with_go_over_the_socket() {
    lisafs_gofer_agrees_with_go(false);
}

#[test]
fn lisafs_gofer_under_seccomp_agrees_with_go_over_channels() {
    lisafs_gofer_agrees_with_go(true);
}

#[test]
fn setup_root_pivots_into_an_empty_root() {
    let work = scratch_dir("runsc-gofer-setup-root");
    let (a_root, b_root) = (work.join("a/root"), work.join("b/root"));
    populate(&a_root);
    populate(&b_root);

    // Without --TESTONLY-unsafe-nonroot, --setup-root makes the gofer a
    // private mount namespace whose root is an empty tmpfs.
    let (mut gofer, c) = start_runsc_gofer(
        &work.join("a"),
        &a_root,
        &["--directfs=false"],
        &["--setup-root=true"],
    );
    c.mount()
        .unwrap_or_else(|e| panic!("Mount: {e}; log:\n{}", gofer.log()));
    let pid = gofer.child.as_ref().unwrap().id();
    let seen: Vec<_> = fs::read_dir(format!("/proc/{pid}/root"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(seen.is_empty(), "the gofer's root holds {seen:?}");
    assert_ne!(
        fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(),
        fs::read_link("/proc/self/ns/mnt").unwrap(),
        "the gofer has its own mount namespace"
    );
    assert_eq!(seccomp_mode(&gofer), "2");
    let t = script(&c);
    drop(c);
    let st = wait_exit(&mut gofer);
    assert!(
        st.success(),
        "runsc gofer exited {st}; log:\n{}",
        gofer.log()
    );

    // The same sequence against the server in this process.
    let ours = common::start_ours(&b_root, gofer::Config::default());
    ours.client.mount().unwrap();
    let want = script(&ours.client);
    ours.finish();
    assert_eq!(t, want);
    assert_eq!(tree(&a_root), tree(&b_root));
    let _ = fs::remove_dir_all(&work);
}

#[test]
fn runsc_gofer_explains_a_missing_spec() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runsc"))
        .args(["gofer", "--io-fds=3", "id"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(128));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--spec-fd"), "{err}");
}
