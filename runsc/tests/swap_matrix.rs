//! The swap matrix (issue 7, point 4): `runsc do` through all four
//! combinations of Sentry (ours, or Debian's 2022 Go runsc's `boot` via
//! `--sentry-binary`) and gofer (ours, or Debian's via `--gofer-binary`),
//! comparing outputs. Debian's runsc needs `--platform=ptrace
//! --network=none` (it has no systrap of ours, and sandbox networking needs
//! a veth) and `--directfs=false` (its gofer donates no root FD).
//!
//! One known difference, from the 2022 Go Sentry itself: its statx rejects
//! AT_NO_AUTOMOUNT with EINVAL (`pkg/sentry/syscalls/linux/sys_stat.go`,
//! the flags check in `Statx`), which Debian's coreutils `ls` passes, so
//! `ls /` fails there (Debian's own `runsc do ls /` does the same). For
//! that command the test compares each Sentry with itself across gofers
//! and checks the Go Sentry's error is that one; a shell glob lists the
//! root through all four.

use std::path::Path;
use std::process::{Command, Output};

const RUNSC: &str = env!("CARGO_BIN_EXE_runsc");
const GO_RUNSC: &str = "/usr/bin/runsc";
const FLAGS: &[&str] = &["--network=none", "--platform=ptrace", "--directfs=false"];

#[derive(Clone, Copy, Debug)]
struct Combo {
    go_sentry: bool,
    go_gofer: bool,
}

fn run(c: Combo, argv: &[&str]) -> Output {
    let mut cmd = Command::new(RUNSC);
    cmd.args(FLAGS);
    if c.go_sentry {
        cmd.arg(format!("--sentry-binary={GO_RUNSC}"));
    }
    if c.go_gofer {
        cmd.arg(format!("--gofer-binary={GO_RUNSC}"));
    }
    cmd.env_remove("GVISOR_SIDECAR_BINARIES_DIR");
    cmd.arg("do").args(argv).current_dir("/");
    cmd.output().unwrap()
}

fn show(o: &Output) -> String {
    format!(
        "{:?}\nstdout: {:?}\nstderr: {:?}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const COMBOS: [Combo; 4] = [
    Combo {
        go_sentry: false,
        go_gofer: false,
    },
    Combo {
        go_sentry: false,
        go_gofer: true,
    },
    Combo {
        go_sentry: true,
        go_gofer: false,
    },
    Combo {
        go_sentry: true,
        go_gofer: true,
    },
];

fn need_go_runsc() {
    assert!(
        Path::new(GO_RUNSC).exists(),
        "{GO_RUNSC} is missing: this test runs Debian's Go runsc from the `runsc` \
         package; ./test.sh installs it (or run `apt-get install runsc`)"
    );
}

#[test]
fn all_four_combinations_agree() {
    need_go_runsc();
    let probe = format!("/tmp/swap-matrix-probe-{}", std::process::id());
    // No `ls` here: see the module note on the 2022 Sentry's statx.
    let write_read = format!("echo written > {probe} && cat {probe} && wc -c < {probe}");
    let cases: [&[&str]; 4] = [
        &["echo", "hello"],
        &["sh", "-c", "for f in /*; do echo $f; done | wc -l"],
        &["sh", "-c", &write_read],
        &[
            "sh",
            "-c",
            "cat /etc/hostname; head -c 16 /bin/sh | od -c | head -1",
        ],
    ];
    for argv in cases {
        let outs: Vec<Output> = COMBOS.iter().map(|&c| run(c, argv)).collect();
        let first = &outs[0];
        assert!(first.status.success(), "{argv:?}: {}", show(first));
        assert!(!first.stdout.is_empty(), "{argv:?}: no output");
        for (c, o) in COMBOS.iter().zip(&outs).skip(1) {
            assert_eq!(
                (o.status.code(), &o.stdout, &o.stderr),
                (first.status.code(), &first.stdout, &first.stderr),
                "{argv:?} with {c:?}: {}\nours: {}",
                show(o),
                show(first)
            );
        }
    }
    assert!(!Path::new(&probe).exists(), "{probe} reached the host");
}

#[test]
fn ls_root_per_sentry() {
    need_go_runsc();
    let argv: &[&str] = &["sh", "-c", "ls / | wc -l"];
    let outs: Vec<Output> = COMBOS.iter().map(|&c| run(c, argv)).collect();
    // Each Sentry gives the same answer whichever gofer serves it.
    for pair in [(0, 1), (2, 3)] {
        let (a, b) = (&outs[pair.0], &outs[pair.1]);
        assert_eq!(
            (a.status.code(), &a.stdout, &a.stderr),
            (b.status.code(), &b.stdout, &b.stderr),
            "{:?}: {}\n{:?}: {}",
            COMBOS[pair.0],
            show(a),
            COMBOS[pair.1],
            show(b)
        );
    }
    let native = Command::new("sh")
        .args(["-c", "ls / | wc -l"])
        .output()
        .unwrap();
    assert_eq!(outs[0].stdout, native.stdout, "ours: {}", show(&outs[0]));
    // The 2022 Sentry's statx refuses coreutils' AT_NO_AUTOMOUNT.
    let go = &outs[2];
    assert!(
        String::from_utf8_lossy(&go.stderr).contains("cannot access '/': Invalid argument"),
        "the Go Sentry's known statx EINVAL is gone; compare outputs instead: {}",
        show(go)
    );
}

#[test]
fn go_sentry_runs_as_nobody_in_its_own_namespaces() {
    need_go_runsc();
    // Launched as upstream launches it: read from the host while a
    // workload sleeps, found by its argv[0] under our `runsc do`.
    let mut child = Command::new(RUNSC)
        .args(FLAGS)
        .arg(format!("--sentry-binary={GO_RUNSC}"))
        .env_remove("GVISOR_SIDECAR_BINARIES_DIR")
        .args(["do", "sleep", "3"])
        .current_dir("/")
        .spawn()
        .unwrap();
    let me = child.id();
    let mut found = None;
    for _ in 0..200 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        found = sandbox_of(me);
        if found.is_some() {
            break;
        }
    }
    let pid = found.expect("no runsc-sandbox process under our runsc do");
    // The sandbox may still be re-executing itself; give it a moment to
    // reach the Sentry.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert!(field("Uid:").starts_with("65534"), "{status}");
    assert_eq!(field("Seccomp:"), "2", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    for ns in ["user", "mnt", "ipc", "uts", "net"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(theirs, ours, "the sandbox shares our {ns} namespace");
    }
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(
        uid_map.split_whitespace().collect::<Vec<_>>(),
        ["65534", "65534", "1"]
    );
    assert!(child.wait().unwrap().success());
}

/// The `runsc-sandbox` process whose parent is `parent`.
fn sandbox_of(parent: u32) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let after = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
        let ppid: u32 = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == parent && cmdline.starts_with(b"runsc-sandbox\0") {
            return Some(pid);
        }
    }
    None
}

/// Upstream's sidecar mechanism: without `--sentry-binary`, a
/// `gvisor_sentry` in `$GVISOR_SIDECAR_BINARIES_DIR` is the Sentry. The two
/// Sentries tell themselves apart by /proc/version (the 2022 one names no
/// compiler).
#[test]
fn sidecar_dir_gvisor_sentry_is_used() {
    need_go_runsc();
    let dir = std::env::temp_dir().join(format!("swap-sidecar-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(GO_RUNSC, dir.join("gvisor_sentry")).unwrap();
    let version = |sidecar: Option<&Path>| {
        let mut cmd = Command::new(RUNSC);
        cmd.args(FLAGS).env_remove("GVISOR_SIDECAR_BINARIES_DIR");
        if let Some(d) = sidecar {
            cmd.env("GVISOR_SIDECAR_BINARIES_DIR", d);
        }
        let o = cmd
            .args(["do", "cat", "/proc/version"])
            .current_dir("/")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let go = Command::new(GO_RUNSC)
        .args([
            "--network=none",
            "--platform=ptrace",
            "do",
            "cat",
            "/proc/version",
        ])
        .current_dir("/")
        .output()
        .unwrap();
    let with_sidecar = version(Some(&dir));
    let without = version(None);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(with_sidecar, String::from_utf8_lossy(&go.stdout));
    assert_ne!(with_sidecar, without);
}

/// Issue 7, point 7: when the sandbox or the gofer dies at startup, the
/// CLI prints what the failing process said, not "EOF" or a broken pipe.
/// A stand-in binary answers `flags` and otherwise fails as a Sentry whose
/// seccomp filter or namespaces could not be set up would.
#[test]
fn startup_failures_name_the_failing_process_and_its_words() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("swap-fail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake = dir.join("fake-runsc");
    std::fs::write(
        &fake,
        "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = flags ] && { echo '  -platform string' >&2; exit 0; }; done\n\
         echo \"fake: installing the seccomp filter: invalid argument\" >&2\nexit 128\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |which: &str| {
        Command::new(RUNSC)
            .args(FLAGS)
            .arg(format!("--{which}={}", fake.display()))
            .env_remove("GVISOR_SIDECAR_BINARIES_DIR")
            .args(["do", "true"])
            .current_dir("/")
            .output()
            .unwrap()
    };
    let sentry = run("sentry-binary");
    let gofer = run("gofer-binary");
    std::fs::remove_dir_all(&dir).unwrap();
    for (who, o) in [("sandbox", &sentry), ("gofer", &gofer)] {
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(128), "{who}: {}", show(o));
        assert!(
            e.contains(&format!(
                "{who}: fake: installing the seccomp filter: invalid argument"
            )),
            "{who}: {}",
            show(o)
        );
        assert!(!e.contains("EOF"), "{who}: {}", show(o));
    }
}
