//! Interop in the other direction: upstream's own Go lisafs client
//! (`compat/lisafs-client`, built here with Debian's Go 1.19 against
//! Debian's golang-gvisor-gvisor-dev sources) drives our `runsc gofer` and
//! Debian's Go `runsc gofer` through the same sequence on identical trees,
//! over the socket and over flipcall channels; the transcripts and the
//! resulting trees must match.
//!
//! The one expected difference is extended attributes: the 2022 Go gofer
//! refuses them all (EOPNOTSUPP; it does not even advertise FListXattr and
//! FRemoveXattr, so the client refuses those itself), while ours serves
//! `user.*`. Those lines are compared against what each gofer is known to
//! answer instead of against each other.

#[path = "../../gofer/tests/common/mod.rs"]
mod common;

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::script::{populate, tree};
use common::*;

/// Debian's Go 1.19 (package golang-1.19-go): the 2022 gvisor sources
/// carry `!go1.21` build constraints, so a newer Go cannot build them.
const GO: &str = "/usr/lib/go-1.19/bin/go";
const GOPATH: &str = "/usr/share/gocode";

/// Builds `compat/lisafs-client` once into the target directory.
fn client_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        assert!(
            Path::new(GO).exists(),
            "{GO} is missing: the Go lisafs client is built with Debian's Go 1.19 \
             (`apt-get install golang-1.19-go`; ./test.sh installs it)"
        );
        assert!(
            Path::new(GOPATH)
                .join("src/gvisor.dev/gvisor/pkg/lisafs")
                .exists(),
            "{GOPATH}/src/gvisor.dev/gvisor/pkg/lisafs is missing: install Debian's \
             upstream sources (`apt-get install golang-gvisor-gvisor-dev`; ./test.sh does)"
        );
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let out = tmp.join("lisafs-client");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../compat/lisafs-client");
        let r = Command::new(GO)
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(&src)
            .env("GO111MODULE", "off")
            .env("GOPATH", GOPATH)
            .env("GOCACHE", tmp.join("go-cache"))
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "")
            .output()
            .expect("running go build");
        assert!(
            r.status.success(),
            "go build of {} failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&r.stderr)
        );
        out
    })
}

/// Runs the Go client on `sock` (placed at FD 3); returns its transcript.
fn run_client(sock: OwnedFd, mode: &str, gofer: &GoGofer) -> Vec<String> {
    let raw = sock.as_raw_fd();
    let mut cmd = Command::new(client_binary());
    cmd.arg(format!("--mode={mode}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and calls
    // only async-signal-safe fcntl/dup2 on an FD the parent keeps open
    // until after spawn; moving it above 100 first means dup2 to 3 cannot
    // clobber it, and the copy at 3 has no close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            let high = libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 100);
            if high < 0 || libc::dup2(high, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("starting the Go lisafs client");
    drop(sock);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the Go lisafs client hung; gofer log:\n{}", gofer.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success(),
        "the Go lisafs client exited {status}:\n{err}\n{out}\ngofer log:\n{}",
        gofer.log()
    );
    out.lines().map(str::to_string).collect()
}

/// One session: a fresh tree, a gofer on it, the Go client in `mode`.
fn session(work: &Path, prog: &Path, global: &[&str], mode: &str) -> (Vec<String>, Vec<String>) {
    let root = work.join("root");
    populate(&root);
    let (mut gofer, sock, mounts) = start_gofer_binary(prog, None, global, &[], work, &root);
    gofer.mounts = Some(mounts);
    let transcript = run_client(sock.into(), mode, &gofer);
    (transcript, tree(&root))
}

fn is_xattr(line: &str) -> bool {
    line.starts_with("xattr ")
}

fn go_client_agrees(mode: &str) {
    let work = scratch_dir(&format!("go-client-{mode}"));
    let ours = Path::new(env!("CARGO_BIN_EXE_runsc"));
    let (our_t, our_tree) = session(
        &work.join("ours"),
        ours,
        &["--TESTONLY-unsafe-nonroot", "--directfs=false"],
        mode,
    );
    assert!(
        Path::new(RUNSC).exists(),
        "{RUNSC} is missing: Debian's runsc package holds the Go gofer (./test.sh installs it)"
    );
    let (go_t, go_tree) = session(
        &work.join("go"),
        Path::new(RUNSC),
        &["--TESTONLY-unsafe-nonroot"],
        mode,
    );

    assert_eq!(our_t[0], "channels opened: true", "{our_t:?}");
    assert_eq!(our_t[1], format!("mode: {mode}"));
    let (our_main, our_x): (Vec<_>, Vec<_>) = our_t.iter().partition(|l| !is_xattr(l));
    let (go_main, go_x): (Vec<_>, Vec<_>) = go_t.iter().partition(|l| !is_xattr(l));
    let diffs: Vec<String> = go_main
        .iter()
        .zip(&our_main)
        .filter(|(g, o)| g != o)
        .map(|(g, o)| format!("  go:   {g}\n  ours: {o}"))
        .collect();
    assert!(
        diffs.is_empty() && go_main.len() == our_main.len(),
        "{} differences ({} vs {} lines):\n{}\n\nours:\n{}",
        diffs.len(),
        go_main.len(),
        our_main.len(),
        diffs.join("\n"),
        our_t.join("\n")
    );
    assert!(
        our_main.len() > 30,
        "the sequence stopped early:\n{}",
        our_t.join("\n")
    );
    assert_eq!(
        our_x,
        [
            "xattr set: <nil>",
            "xattr get: \"value\" <nil>",
            "xattr list: [\"user.test\"] <nil>",
            "xattr remove: <nil>",
            "xattr get removed: \"\" no data available",
        ]
    );
    assert_eq!(
        go_x,
        [
            "xattr set: operation not supported",
            "xattr get: \"\" operation not supported",
            "xattr list: [] operation not supported",
            "xattr remove: operation not supported",
            "xattr get removed: \"\" operation not supported",
        ]
    );
    assert_eq!(our_tree, go_tree, "resulting host trees");
    let _ = fs::remove_dir_all(&work);
}

#[test]
fn upstream_go_client_over_the_socket_sees_the_same_as_with_the_go_gofer() {
    go_client_agrees("socket");
}

#[test]
fn upstream_go_client_over_channels_sees_the_same_as_with_the_go_gofer() {
    go_client_agrees("channel");
}
