//! Escape attempts (issue 7, point 6), each naming the CVE it models, with
//! the evidence taken from the host.

use std::path::Path;
use std::process::{Command, Output, Stdio};

const RUNSC: &str = env!("CARGO_BIN_EXE_runsc");

fn digest(path: &Path) -> Vec<u8> {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(o.status.success(), "sha256sum {path:?}");
    o.stdout
}

fn show(o: &Output) -> String {
    format!(
        "{:?}\nstdout: {:?}\nstderr: {:?}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run_do(flags: &[&str], script: &str) -> Output {
    Command::new(RUNSC)
        .args(flags)
        .args(["do", "sh", "-c", script])
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// CVE-2019-5736 (runc): a container process opens /proc/self/exe, or the
/// /proc/<pid>/exe and /proc/<pid>/fd/* of another process, for writing,
/// to overwrite the runtime binary on the host. In the sandbox those name
/// the container's own files (behind a memory overlay), never the host's
/// runsc: the host runsc binary and the programs the container ran keep
/// their hashes, in every platform and file-access mode.
#[test]
fn cve_2019_5736_proc_self_exe_never_reaches_the_runtime() {
    let runsc = std::fs::canonicalize(RUNSC).unwrap();
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    let sleep = std::fs::canonicalize("/bin/sleep").unwrap();
    let before = [digest(&runsc), digest(&sh), digest(&sleep)];
    let script = "echo pwned > /proc/self/exe; exec 3>>/proc/self/exe && echo pwned >&3; \
                  sleep 2 & p=$!; echo pwned > /proc/$p/exe; \
                  for f in /proc/$p/fd/* /proc/1/fd/*; do echo pwned > $f; done 2>/dev/null; \
                  echo attempted";
    for flags in [
        &["--platform=systrap"][..],
        &["--platform=ptrace"],
        &["--directfs=false"],
    ] {
        let o = run_do(flags, script);
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("attempted"),
            "{flags:?}: {}",
            show(&o)
        );
        let after = [digest(&runsc), digest(&sh), digest(&sleep)];
        assert_eq!(before, after, "{flags:?}: a host binary changed");
    }
}

/// CVE-2024-21626 (runc): a host directory FD leaked into the container
/// (its fd table, or its cwd set to /proc/self/fd/N) lets it walk the host
/// filesystem. In the sandbox the fd table is the Sentry's: only the
/// container's stdio is there, and neither its fds nor its cwd or root
/// reach a host directory: walking `..` from any of them stays inside.
#[test]
fn cve_2024_21626_no_host_directory_is_reachable() {
    let marker = format!("cve-2024-21626-{}", std::process::id());
    let outside = std::env::temp_dir().join(&marker);
    std::fs::create_dir_all(&outside).unwrap();
    // The container's root is a directory that does not hold `outside`.
    let root = std::env::temp_dir().join(format!("{marker}-root"));
    for d in ["bin", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for a in ["sh", "ls", "readlink", "cat"] {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(a));
    }
    let script = format!(
        "for f in /proc/self/fd/*; do echo \"fd $f -> $(readlink $f)\"; done; \
         echo \"cwd -> $(readlink /proc/self/cwd)\"; \
         for f in /proc/self/fd/* /proc/self/cwd /proc/1/cwd; do \
           cd $f/../../../../../.. 2>/dev/null && ls -a . ; done; \
         for p in /tmp/{marker} {outside}; do [ -e $p ] && echo \"reached $p\"; done; echo done",
        outside = outside.display()
    );
    let o = Command::new(RUNSC)
        .args([
            "do",
            "--root",
            root.to_str().unwrap(),
            "/bin/sh",
            "-c",
            &script,
        ])
        .current_dir("/")
        .env("PATH", "/bin")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&outside).unwrap();
    assert!(out.contains("done"), "{}", show(&o));
    // The walks ran, and ended in the container's root.
    assert!(
        out.contains("bin\nproc\n") || out.contains("bin\ndev\n"),
        "{out}"
    );
    for line in out.lines().filter(|l| l.starts_with("fd ")) {
        let target = line.split(" -> ").nth(1).unwrap_or("");
        assert!(
            !target.starts_with('/') || target.starts_with("/proc/") || target == "/dev/null",
            "a host path in the container's fd table: {line}\n{out}"
        );
    }
    assert!(
        !out.contains("reached") && !out.contains(&marker),
        "the host's {marker} was reached:\n{out}"
    );
    // The host's own top-level directories never show up: the walks end
    // at the container's root (bin, proc, tmp, ...).
    assert!(!out.contains("usr\n") && !out.contains("home\n"), "{out}");
}

/// CVE-2021-30465 (runc): a bind mount's destination inside the rootfs is
/// swapped for a symlink to a host directory while the runtime sets the
/// container up, so the mount lands on the host. Here a thread keeps
/// exchanging the destination directory with such a symlink (atomically,
/// renameat2 RENAME_EXCHANGE) while containers with that bind mount are
/// created, started and deleted: afterwards no host mount sits anywhere
/// under the test's directory and the host directory the symlink names is
/// untouched, while every container saw the bind source's file at its
/// mount point: the Sentry makes the mount in its own tree (following the
/// symlink inside the container, as runc's securejoin does), never on the
/// host; `runsc create` makes no host mount beside the sandbox's private
/// empty root.
#[test]
fn cve_2021_30465_no_mount_lands_outside_the_rootfs() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = std::env::temp_dir().join(format!("cve-2021-30465-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let victim = dir.join("victim");
    let source = dir.join("source");
    let rootfs = dir.join("bundle/rootfs");
    for d in [
        &victim,
        &source,
        &rootfs.join("bin"),
        &rootfs.join("mnt/target"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(victim.join("marker"), "host").unwrap();
    std::fs::write(source.join("payload"), "from the bind source").unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in ["sh", "ls", "cat"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    // The swap partner: a symlink that leaves the rootfs.
    std::os::unix::fs::symlink(&victim, rootfs.join("mnt/link")).unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": ["sh", "-c", "ls /mnt/target; echo done"],
            "env": ["PATH=/bin"],
            "cwd": "/",
        },
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/mnt/target", "type": "bind",
             "source": source.to_str().unwrap(), "options": ["rbind", "rw"]},
        ],
    });
    std::fs::write(dir.join("bundle/config.json"), config.to_string()).unwrap();

    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let racer = {
        let stop = stop.clone();
        let a = std::ffi::CString::new(rootfs.join("mnt/target").to_str().unwrap()).unwrap();
        let b = std::ffi::CString::new(rootfs.join("mnt/link").to_str().unwrap()).unwrap();
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: renameat2 reads two NUL-terminated paths that
                // live across the call.
                let r = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
                swaps += 1;
            }
            swaps
        })
    };
    let state = dir.join("state");
    let mut outputs = Vec::new();
    for i in 0..8 {
        let o = Command::new(RUNSC)
            .arg(format!("--root={}", state.display()))
            .args(["run", "--bundle", dir.join("bundle").to_str().unwrap()])
            .arg(format!("race{i}"))
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        outputs.push(o);
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = racer.join().unwrap();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let victim_after: Vec<String> = std::fs::read_dir(&victim)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let marker = std::fs::read_to_string(victim.join("marker")).unwrap();
    let leftover: Vec<&str> = mountinfo
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|m| m.starts_with(dir.to_str().unwrap()))
        })
        .collect();
    for l in &leftover {
        let mnt = l.split(' ').nth(4).unwrap();
        let _ = Command::new("umount").args(["-l", mnt]).status();
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(swaps > 0);
    for o in &outputs {
        // Every container ran and saw the bind source at its mount point
        // (the exchange leaves a directory or a symlink there; either is
        // resolved inside the container).
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("payload") && out.contains("done"),
            "{}",
            show(o)
        );
    }
    assert!(
        leftover.is_empty(),
        "host mounts under the test's directory: {leftover:?}"
    );
    assert_eq!(victim_after, ["marker"], "the host directory changed");
    assert_eq!(marker, "host");
}
