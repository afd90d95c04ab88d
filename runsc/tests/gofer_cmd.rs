//! `runsc gofer` end to end: our binary launched as Appendix B of the
//! protocol notes launches Debian's Go gofer (socket, spec and mounts pipe
//! at FDs 3, 4, 5), driven by our lisafs client.

#[path = "../../gofer/tests/common/mod.rs"]
mod common;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use gofer_protocol::message::*;
use gofer_protocol::Client;

#[test]
fn our_runsc_gofer_serves_the_spec_root() {
    let work = scratch_dir("runsc-gofer");
    let root = work.join("root");
    fs::create_dir_all(root.join("dir")).unwrap();
    fs::write(root.join("dir/file"), b"served by runsc gofer").unwrap();
    let (mut gofer, sock, mut mounts) = start_gofer_binary(
        Path::new(env!("CARGO_BIN_EXE_runsc")),
        Some("runsc-gofer"),
        &work,
        &root,
    );
    let c = Client::new(sock);
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
    mounts.read_to_string(&mut json).unwrap();
    assert_eq!(json.trim(), "[]");

    let w = walk(&c, 1, &["dir", "file"]).unwrap();
    assert_eq!(w.status, WalkStatus::Success);
    let (o, host) = open(&c, w.inodes[1].control_fd, libc::O_RDONLY).unwrap();
    assert_eq!(host.len(), 1);
    assert_eq!(pread(&c, o, 0, 100).unwrap(), b"served by runsc gofer");
    // The gofer runs with umask 0: modes arrive exactly as asked.
    let (resp, _) = c
        .call(&Request::MkdirAt(MkdirAtReq {
            common: CreateCommon {
                dir_fd: 1,
                uid: NO_UID,
                gid: NO_GID,
                mode: 0o777,
            },
            name: b"made".to_vec(),
        }))
        .unwrap();
    assert!(matches!(resp, Response::MkdirAt(_)));
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(root.join("made")).unwrap().permissions()
        ) & 0o7777,
        0o777
    );

    // Closing our end ends the session; the gofer exits 0.
    drop(c);
    let mut child = gofer.child.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "runsc gofer did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        st.success(),
        "runsc gofer exited {st}; log:\n{}",
        gofer.log()
    );
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
