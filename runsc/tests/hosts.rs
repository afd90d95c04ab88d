//! Real container hosts drive our runsc exactly as they drive runc: each test
//! starts its host (containerd with `ctr`, podman, dockerd) with private
//! state under a temporary directory, imports an image built here from
//! Debian's busybox-static, runs one sequence of host commands with runc and
//! then with our binary, and compares the exit statuses and outputs step by
//! step. A guard stops every daemon and shim it started, unmounts what they
//! left under the directory and removes it, even when an assertion fails.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUNSC: &str = env!("CARGO_BIN_EXE_runsc");

/// How long one host command may take before the test calls it hung.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// One test's private directory and the daemons started in it.
struct Host {
    dir: PathBuf,
    daemons: Vec<Child>,
}

impl Host {
    fn new(name: &str) -> Host {
        assert!(
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() } == 0,
            "these tests start container daemons and need root"
        );
        let dir = std::env::temp_dir().join(format!("hosts-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Host {
            dir,
            daemons: Vec::new(),
        }
    }

    fn path(&self, rel: &str) -> String {
        self.dir.join(rel).to_string_lossy().into_owned()
    }

    /// Start a daemon in its own session with no inherited stdio (its log
    /// goes to `log`), so nothing of ours keeps the test's pipes open.
    fn daemon(&mut self, argv: &[&str], log: &str) {
        let out = std::fs::File::create(self.path(log)).unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        self.daemons.push(cmd.spawn().unwrap());
    }

    /// Wait until `probe` succeeds, or fail with the daemon's log.
    fn wait_ready(&self, probe: &[&str], log: &str) {
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            let ok = Command::new(probe[0])
                .args(&probe[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = std::fs::read_to_string(self.path(log)).unwrap_or_default();
        panic!("daemon not ready after 30 s: {probe:?}\n{text}");
    }

    /// Processes whose command line, root or working directory is in this
    /// test's directory (the shims, monitors and containers the daemons
    /// started), by pid.
    fn stragglers(&self) -> Vec<i32> {
        let dir = self.dir.to_string_lossy().into_owned();
        let me = std::process::id() as i32;
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            // Container processes name nothing of ours but live in a rootfs
            // (or a bundle) under the directory.
            let under = |link: &str| {
                std::fs::read_link(e.path().join(link))
                    .map(|p| p.starts_with(&self.dir))
                    .unwrap_or(false)
            };
            if String::from_utf8_lossy(&cmdline).contains(&dir) || under("root") || under("cwd") {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            // SAFETY: kill takes plain integers; the child is ours and not yet reaped.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
        }
        let end = Instant::now() + Duration::from_secs(10);
        for d in &mut self.daemons {
            while d.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        for pid in self.stragglers() {
            // SAFETY: as above; these processes work under our directory.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // Overlay and shm mounts the daemons left under the directory,
        // innermost first.
        let dir = self.dir.to_string_lossy().into_owned();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let c = std::ffi::CString::new(m).unwrap();
            // SAFETY: c is a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one host command did: its exit code and its output with
/// surrounding whitespace trimmed.
#[derive(Debug, PartialEq)]
struct Step {
    label: String,
    code: Option<i32>,
    stdout: String,
}

/// Run `argv` with a deadline; stdout is captured, stderr is kept for the
/// failure message.
fn run(label: &str, argv: &[String]) -> (Step, String) {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let end = Instant::now() + STEP_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{label}: {argv:?} hung for {STEP_TIMEOUT:?}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        Step {
            label: label.to_string(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        },
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn argv(base: &[String], rest: &[&str]) -> Vec<String> {
    base.iter()
        .cloned()
        .chain(rest.iter().map(|s| s.to_string()))
        .collect()
}

/// The sequence's steps for one runtime, with each step's stderr for
/// failure messages.
/// Container names carry the runtime's tag (`d-runc`, `d-ours`); outputs
/// that echo them are compared with the tag replaced by `<tag>`.
struct Trace {
    started: Instant,
    /// Set by [`Trace::finish`]: the whole sequence's wall time.
    elapsed: Duration,
    tag: String,
    steps: Vec<Step>,
    stderr: Vec<String>,
}

impl Trace {
    fn new(tag: &str) -> Trace {
        Trace {
            started: Instant::now(),
            elapsed: Duration::ZERO,
            tag: format!("-{tag}"),
            steps: Vec::new(),
            stderr: Vec::new(),
        }
    }

    fn step(&mut self, label: &str, argv: Vec<String>) {
        self.step_with(label, argv, |s| s.to_string());
    }

    fn finish(mut self) -> Trace {
        self.elapsed = self.started.elapsed();
        self
    }

    /// Record a step by its stderr instead of its stdout (for errors the
    /// host words from the runtime's reply).
    fn step_stderr(&mut self, label: &str, argv: Vec<String>) {
        let (mut s, e) = run(label, &argv);
        s.stdout = e.trim().replace(&self.tag, "-<tag>");
        self.steps.push(s);
        self.stderr.push(e);
    }

    /// Record a step whose output is reduced by `f` (for outputs that carry
    /// host pids or ids).
    fn step_with(&mut self, label: &str, argv: Vec<String>, f: impl Fn(&str) -> String) {
        let (mut s, e) = run(label, &argv);
        s.stdout = f(&s.stdout).replace(&self.tag, "-<tag>");
        self.steps.push(s);
        self.stderr.push(e);
    }
}

/// Fail with both traces side by side when they differ.
fn assert_same(reference: &Trace, ours: &Trace) {
    println!(
        "sequence of {} steps: runc {:.2} s, ours {:.2} s",
        ours.steps.len(),
        reference.elapsed.as_secs_f64(),
        ours.elapsed.as_secs_f64()
    );
    assert_eq!(reference.steps.len(), ours.steps.len());
    for (i, (r, o)) in reference.steps.iter().zip(&ours.steps).enumerate() {
        assert_eq!(
            r, o,
            "step {} differs from runc's\nrunc stderr: {}\nours stderr: {}",
            r.label, reference.stderr[i], ours.stderr[i]
        );
    }
}

/// A busybox root filesystem (relative applet links, so they work inside
/// the container), as a plain tar for `import` and as an OCI layout archive
/// for `ctr image import`.
fn make_image(h: &Host) -> (String, String) {
    let rootfs = h.dir.join("rootfs");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    let tar = h.path("busybox-rootfs.tar");
    sh(&h.dir, &["tar", "-C", "rootfs", "-cf", &tar, "."]);
    let oci = "oci:busybox";
    sh(&h.dir, &["umoci", "init", "--layout", "oci"]);
    sh(&h.dir, &["umoci", "new", "--image", oci]);
    sh(&h.dir, &["umoci", "unpack", "--image", oci, "unpacked"]);
    sh(&h.dir, &["cp", "-a", "rootfs/.", "unpacked/rootfs/"]);
    sh(&h.dir, &["umoci", "repack", "--image", oci, "unpacked"]);
    sh(
        &h.dir,
        &[
            "umoci",
            "config",
            "--image",
            oci,
            "--config.cmd=/bin/sh",
            "--config.env=PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "--os",
            "linux",
            "--architecture",
            "amd64",
        ],
    );
    let oci_tar = h.path("busybox-oci.tar");
    sh(&h.dir, &["tar", "-C", "oci", "-cf", &oci_tar, "."]);
    (tar, oci_tar)
}

fn sh(cwd: &Path, argv: &[&str]) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Non-empty lines of a table after its header (ctr's `task ps`), counted:
/// runc reports host pids, our runtime the sandbox's, so only the number of
/// processes can agree.
fn rows(table: &str) -> String {
    format!(
        "{} rows",
        table
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count()
    )
}

/// The STATUS column of ctr's `task ls` for one task.
fn task_status(table: &str) -> String {
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect::<Vec<_>>()
        .join(" ")
}

/// containerd 1.6 with `ctr` and the runc v2 shim, our binary as its runc
/// binary (`--runc-binary`): run --rm, an exit status, and a detached
/// task's exec, ps, pause, resume, kill and delete.
#[test]
fn containerd_ctr_drives_runsc_as_it_drives_runc() {
    let mut h = Host::new("ctr");
    let (_, oci_tar) = make_image(&h);
    let d = h.dir.to_string_lossy().into_owned();
    let config = format!(
        "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
         [grpc]\n  address = \"{d}/containerd.sock\"\n\
         [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
         [debug]\n  address = \"{d}/debug.sock\"\n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
    );
    std::fs::write(h.path("config.toml"), config).unwrap();
    let cfg = h.path("config.toml");
    h.daemon(&["containerd", "--config", &cfg], "containerd.log");
    let sock = h.path("containerd.sock");
    let ctr: Vec<String> = ["ctr", "--address", &sock, "-n", "hosts"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let probe = argv(&ctr, &["version"]);
    let probe: Vec<&str> = probe.iter().map(String::as_str).collect();
    h.wait_ready(&probe, "containerd.log");
    let (s, e) = run(
        "import",
        &argv(
            &ctr,
            &[
                "image",
                "import",
                "--base-name",
                "localhost/busybox",
                &oci_tar,
            ],
        ),
    );
    assert_eq!(s.code, Some(0), "image import: {e}");
    let image = "localhost/busybox:busybox";

    let runc_root = h.path("runc-root");
    let runsc_root = h.path("runsc-root");
    let fifo = h.path("fifo");
    let mut traces = Vec::new();
    for (tag, runtime) in [("runc", &[][..]), ("ours", &["--runc-binary", RUNSC][..])] {
        let root = if tag == "runc" {
            &runc_root
        } else {
            &runsc_root
        };
        let opts: Vec<&str> = runtime
            .iter()
            .copied()
            .chain(["--runc-root", root, "--fifo-dir", &fifo])
            .collect();
        let run_args = |rest: &[&str]| -> Vec<String> {
            let mut a = argv(&ctr, &["run"]);
            a.extend(opts.iter().map(|s| s.to_string()));
            a.extend(rest.iter().map(|s| s.to_string()));
            a
        };
        let id = format!("d-{tag}");
        let mut t = Trace::new(tag);
        t.step(
            "run --rm echo",
            run_args(&["--rm", image, &format!("e-{tag}"), "echo", "hi"]),
        );
        t.step(
            "run --rm exit 7",
            run_args(&["--rm", image, &format!("x-{tag}"), "sh", "-c", "exit 7"]),
        );
        t.step("run -d", run_args(&["-d", image, &id, "sleep", "1000"]));
        t.step(
            "task exec",
            argv(
                &ctr,
                &[
                    "task",
                    "exec",
                    "--exec-id",
                    "e1",
                    &id,
                    "sh",
                    "-c",
                    "echo exec-ok; exit 3",
                ],
            ),
        );
        t.step_with("task ps", argv(&ctr, &["task", "ps", &id]), rows);
        t.step("task pause", argv(&ctr, &["task", "pause", &id]));
        t.step_with("paused", argv(&ctr, &["task", "ls"]), task_status);
        t.step("task resume", argv(&ctr, &["task", "resume", &id]));
        t.step_with("resumed", argv(&ctr, &["task", "ls"]), task_status);
        // PID 1 without a SIGTERM handler ignores SIGTERM, as on Linux.
        t.step("task kill TERM", argv(&ctr, &["task", "kill", &id]));
        std::thread::sleep(Duration::from_millis(500));
        t.step_with("after TERM", argv(&ctr, &["task", "ls"]), task_status);
        t.step(
            "task kill KILL",
            argv(&ctr, &["task", "kill", "-s", "SIGKILL", &id]),
        );
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let (s, _) = run("poll", &argv(&ctr, &["task", "ls"]));
            if task_status(&s.stdout) == "STOPPED" || Instant::now() > end {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        t.step_with("after KILL", argv(&ctr, &["task", "ls"]), task_status);
        // A stopped task: the shim must see "already finished", not an
        // unknown runtime error.
        t.step_stderr(
            "kill stopped",
            argv(&ctr, &["task", "kill", "-s", "SIGKILL", &id]),
        );
        t.step("task delete", argv(&ctr, &["task", "delete", &id]));
        t.step("container rm", argv(&ctr, &["container", "rm", &id]));
        t.step("task ls empty", argv(&ctr, &["task", "ls"]));
        traces.push(t.finish());
    }
    let ours = traces.pop().unwrap();
    let runc = traces.pop().unwrap();
    assert_eq!(
        runc.steps[0].stdout, "hi",
        "the reference sequence itself failed"
    );
    assert_eq!(runc.steps[1].code, Some(7));
    assert_eq!(runc.steps[3].stdout, "exec-ok");
    assert_eq!(runc.steps[3].code, Some(3));
    assert_eq!(runc.steps[6].stdout, "PAUSED");
    assert_same(&runc, &ours);
    let left = std::fs::read_dir(&runsc_root)
        .map(|d| {
            d.flatten()
                .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(
        left, 0,
        "our runtime left container state under {runsc_root}"
    );
}

/// Podman 4.3 (rootful, cgroupfs, no network) with `--runtime` set to our
/// binary: run --rm, an exit status, exec, stop and rm of a detached
/// container.
#[test]
fn podman_drives_runsc_as_it_drives_runc() {
    let h = Host::new("podman");
    let (tar, _) = make_image(&h);
    let podman: Vec<String> = [
        "podman",
        "--root",
        &h.path("root"),
        "--runroot",
        &h.path("runroot"),
        "--tmpdir",
        &h.path("tmp"),
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (s, e) = run(
        "import",
        &argv(&podman, &["import", "-q", &tar, "localhost/busybox:latest"]),
    );
    assert_eq!(s.code, Some(0), "podman import: {e}");
    let image = "localhost/busybox";
    let mut traces = Vec::new();
    for tag in ["runc", "ours"] {
        // runc applies podman's default rlimits on the host, which this
        // machine refuses without CAP_SYS_RESOURCE; the Sentry applies them
        // inside the sandbox. Same explicit limits for both.
        let mut p = podman.clone();
        if tag == "ours" {
            p.extend(["--runtime".to_string(), RUNSC.to_string()]);
        }
        let run_args = |rest: &[&str]| -> Vec<String> {
            argv(
                &p,
                &[
                    &["run", "--network", "none"][..],
                    &[
                        "--ulimit",
                        "nofile=1024:1024",
                        "--ulimit",
                        "nproc=4096:4096",
                    ],
                    rest,
                ]
                .concat(),
            )
        };
        let id = format!("d-{tag}");
        let mut t = Trace::new(tag);
        t.step("run --rm echo", run_args(&["--rm", image, "echo", "hi"]));
        t.step(
            "run --rm exit 5",
            run_args(&["--rm", image, "sh", "-c", "exit 5"]),
        );
        // A terminal: the host hands the runtime a console socket and
        // reads the pty master it gets back.
        t.step(
            "run --rm -t",
            run_args(&["--rm", "-t", image, "sh", "-c", "echo on-a-pty; exit 2"]),
        );
        t.step_with(
            "run -d",
            run_args(&["-d", "--name", &id, image, "sleep", "1000"]),
            |s| format!("{} hex chars", s.len()),
        );
        t.step_with(
            "run -d id",
            argv(&p, &["inspect", "-f", "{{.State.Status}}", &id]),
            |s| s.to_string(),
        );
        t.step(
            "exec",
            argv(&p, &["exec", &id, "sh", "-c", "echo exec-ok; exit 4"]),
        );
        // sleep as PID 1 ignores SIGTERM, so stop ends with SIGKILL (137).
        t.step("stop", argv(&p, &["stop", "-t", "1", &id]));
        t.step(
            "exit code",
            argv(
                &p,
                &[
                    "inspect",
                    "-f",
                    "{{.State.Status}} {{.State.ExitCode}}",
                    &id,
                ],
            ),
        );
        t.step("rm", argv(&p, &["rm", &id]));
        t.step("ps -a", argv(&p, &["ps", "-a", "-q"]));
        traces.push(t.finish());
    }
    let ours = traces.pop().unwrap();
    let runc = traces.pop().unwrap();
    assert_eq!(
        runc.steps[0].stdout, "hi",
        "the reference sequence itself failed"
    );
    assert_eq!(runc.steps[1].code, Some(5));
    assert_eq!(runc.steps[2].stdout, "on-a-pty");
    assert_eq!(runc.steps[5].stdout, "exec-ok");
    assert_eq!(runc.steps[7].stdout, "exited 137");
    assert_same(&runc, &ours);
}

/// dockerd (Debian's docker.io 20.10, its own data-root, overlay2, no
/// iptables or bridge) with a `runtimes` entry for our binary: run --rm,
/// an exit status, exec and stop.
#[test]
fn dockerd_drives_runsc_as_it_drives_runc() {
    let mut h = Host::new("docker");
    let (tar, _) = make_image(&h);
    let d = h.dir.to_string_lossy().into_owned();
    let config = serde_json::json!({
        "data-root": format!("{d}/data"),
        "exec-root": format!("{d}/exec"),
        "pidfile": format!("{d}/docker.pid"),
        "hosts": [format!("unix://{d}/docker.sock")],
        "iptables": false, "ip-forward": false, "ip-masq": false,
        "bridge": "none",
        "storage-driver": "overlay2",
        "exec-opts": ["native.cgroupdriver=cgroupfs"],
        "runtimes": {"ours": {"path": RUNSC}},
    });
    std::fs::write(h.path("daemon.json"), config.to_string()).unwrap();
    let cfg = h.path("daemon.json");
    h.daemon(&["dockerd", "--config-file", &cfg], "dockerd.log");
    // Debian's CLI, not whatever docker comes first in PATH.
    let host = format!("unix://{d}/docker.sock");
    let docker: Vec<String> = ["/usr/bin/docker", "-H", &host]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let probe = argv(&docker, &["version"]);
    let probe: Vec<&str> = probe.iter().map(String::as_str).collect();
    h.wait_ready(&probe, "dockerd.log");
    let (s, e) = run(
        "import",
        &[
            "sh".to_string(),
            "-c".to_string(),
            format!("/usr/bin/docker -H {host} import - localhost/busybox:latest < {tar}"),
        ],
    );
    assert_eq!(s.code, Some(0), "docker import: {e}");
    let image = "localhost/busybox";
    let mut traces = Vec::new();
    for tag in ["runc", "ours"] {
        let runtime = format!("--runtime={tag}");
        let id = format!("d-{tag}");
        let run_args = |rest: &[&str]| -> Vec<String> {
            argv(
                &docker,
                &[&["run", runtime.as_str(), "--network", "none"][..], rest].concat(),
            )
        };
        let mut t = Trace::new(tag);
        t.step("run --rm echo", run_args(&["--rm", image, "echo", "hi"]));
        // A volume: docker -v binds a host directory; what the container
        // writes there is on the host afterwards.
        let vol = h.dir.join(format!("vol-{tag}"));
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::write(vol.join("in"), "from the host\n").unwrap();
        let bind = format!("{}:/vol", vol.display());
        t.step(
            "run --rm -v",
            run_args(&[
                "--rm",
                "-v",
                &bind,
                image,
                "sh",
                "-c",
                "cat /vol/in; echo from-the-container > /vol/out",
            ]),
        );
        assert_eq!(
            std::fs::read_to_string(vol.join("out")).unwrap_or_default(),
            "from-the-container\n",
            "{tag}: the container's write through -v"
        );
        t.step(
            "run --rm exit 6",
            run_args(&["--rm", image, "sh", "-c", "exit 6"]),
        );
        // A terminal: the host hands the runtime a console socket and
        // reads the pty master it gets back.
        t.step(
            "run --rm -t",
            run_args(&["--rm", "-t", image, "sh", "-c", "echo on-a-pty; exit 2"]),
        );
        t.step_with(
            "run -d",
            run_args(&["-d", "--name", &id, image, "sleep", "1000"]),
            |s| format!("{} hex chars", s.len()),
        );
        t.step(
            "exec",
            argv(&docker, &["exec", &id, "sh", "-c", "echo exec-ok; exit 4"]),
        );
        t.step("stop", argv(&docker, &["stop", "-t", "1", &id]));
        t.step(
            "exit code",
            argv(
                &docker,
                &[
                    "inspect",
                    "-f",
                    "{{.State.Status}} {{.State.ExitCode}}",
                    &id,
                ],
            ),
        );
        t.step("rm", argv(&docker, &["rm", &id]));
        t.step("ps -a", argv(&docker, &["ps", "-a", "-q"]));
        traces.push(t.finish());
    }
    let ours = traces.pop().unwrap();
    let runc = traces.pop().unwrap();
    assert_eq!(
        runc.steps[0].stdout, "hi",
        "the reference sequence itself failed"
    );
    assert_eq!(runc.steps[1].stdout, "from the host");
    assert_eq!(runc.steps[2].code, Some(6));
    assert_eq!(runc.steps[3].stdout, "on-a-pty");
    assert_eq!(runc.steps[5].stdout, "exec-ok");
    assert_eq!(runc.steps[7].stdout, "exited 137");
    assert_same(&runc, &ours);
}

/// containerd's CRI plugin (the interface kubelet uses) with our binary as
/// the runc shim's binary for the RuntimeClass handler `ours`, driven by our
/// own CRI client (the cri-client crate): RunPodSandbox, CreateContainer,
/// StartContainer, ExecSync, StopContainer, RemoveContainer, StopPodSandbox,
/// RemovePodSandbox, compared with handler `runc`. Upstream's runsc hangs in
/// StartContainer because a process it leaves behind holds the shim's
/// stdout pipe; every call here is bounded.
#[test]
fn containerd_cri_runs_a_pod_with_runsc_as_with_runc() {
    let client = Path::new(RUNSC).with_file_name("cri-client");
    assert!(
        client.exists(),
        "{} is missing: it is built by `cargo build --release -p cri-client` (test.sh builds every workspace program before the tests)",
        client.display()
    );
    let mut h = Host::new("cri");
    let (_, _) = make_image(&h);
    // The pod's pause image: PID 1 that waits for a signal and exits 0.
    sh(
        &h.dir,
        &[
            "umoci",
            "config",
            "--image",
            "oci:busybox",
            "--tag",
            "pause",
            "--config.cmd=/bin/sh",
            "--config.cmd=-c",
            "--config.cmd=trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done",
        ],
    );
    let images = h.path("images.tar");
    sh(&h.dir, &["tar", "-C", "oci", "-cf", &images, "."]);
    let d = h.dir.to_string_lossy().into_owned();
    std::fs::create_dir_all(h.dir.join("cni")).unwrap();
    std::fs::create_dir_all(h.dir.join("logs")).unwrap();
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    let runtimes = format!("{cri}.containerd.runtimes");
    // No CAP_SYS_RESOURCE on some hosts: restrict_oom_score_adj keeps the
    // pod's oom_score_adj at or above the daemon's.
    let config = format!(
        "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
         [grpc]\n  address = \"{d}/containerd.sock\"\n\
         [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
         [debug]\n  address = \"{d}/debug.sock\"\n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n\
         [{cri}]\n  sandbox_image = \"localhost/pause:local\"\n  restrict_oom_score_adj = true\n\
         [{cri}.containerd]\n  snapshotter = \"overlayfs\"\n  default_runtime_name = \"runc\"\n\
         [{runtimes}.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\
         [{runtimes}.runc.options]\n  Root = \"{d}/runc-root\"\n\
         [{runtimes}.ours]\n  runtime_type = \"io.containerd.runc.v2\"\n\
         [{runtimes}.ours.options]\n  BinaryName = \"{RUNSC}\"\n  Root = \"{d}/runsc-root\"\n\
         [{cri}.cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"{d}/cni\"\n"
    );
    std::fs::write(h.path("config.toml"), config).unwrap();
    let cfg = h.path("config.toml");
    h.daemon(&["containerd", "--config", &cfg], "containerd.log");
    let sock = h.path("containerd.sock");
    let ctr: Vec<String> = ["ctr", "--address", &sock, "-n", "k8s.io"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let probe = argv(&ctr, &["version"]);
    let probe: Vec<&str> = probe.iter().map(String::as_str).collect();
    h.wait_ready(&probe, "containerd.log");
    for step in [
        &[
            "image",
            "import",
            "--base-name",
            "localhost/busybox",
            &images,
        ][..],
        &[
            "image",
            "tag",
            "localhost/busybox:pause",
            "localhost/pause:local",
        ],
    ] {
        let (s, e) = run("images", &argv(&ctr, step));
        assert_eq!(s.code, Some(0), "{step:?}: {e}");
    }
    let logs = h.path("logs");
    let mut traces = Vec::new();
    for handler in ["runc", "ours"] {
        let mut t = Trace::new(handler);
        t.step(
            "pod life",
            vec![
                client.to_string_lossy().into_owned(),
                sock.clone(),
                handler.to_string(),
                "localhost/busybox:busybox".to_string(),
                logs.clone(),
            ],
        );
        traces.push(t.finish());
    }
    let ours = traces.pop().unwrap();
    let runc = traces.pop().unwrap();
    assert_eq!(
        runc.steps[0].code,
        Some(0),
        "the reference pod failed: {}",
        runc.steps[0].stdout
    );
    assert!(runc.steps[0]
        .stdout
        .contains("ExecSync exit=3 stdout=\"exec-ok\\n\""));
    assert_same(&runc, &ours);
    // The pod really went through our binary: its state root is ours.
    assert!(
        h.dir.join("runsc-root/k8s.io").is_dir(),
        "handler ours never ran our runsc"
    );
}
