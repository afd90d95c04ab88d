//! The OCI lifecycle end to end: bundles made from busybox-static, every
//! command run as a container host runs it, each test with its own
//! `--root` under a temporary directory, and no sandbox or gofer left
//! behind at the end of a test.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const RUNSC: &str = env!("CARGO_BIN_EXE_runsc");

/// One test's private state root and bundles; on drop, checks that none of
/// its processes is left and removes everything.
struct Env {
    dir: PathBuf,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("oci-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        Env { dir }
    }

    fn root(&self) -> String {
        self.dir.join("state").to_string_lossy().into_owned()
    }

    /// A bundle whose rootfs is busybox with its applets, running `args`.
    fn bundle(&self, name: &str, args: &[&str]) -> PathBuf {
        let b = self.dir.join(name);
        let rootfs = b.join("rootfs");
        for d in ["bin", "etc", "tmp", "proc", "dev", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
            }
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        self.config(&b, args);
        b
    }

    fn config(&self, bundle: &Path, args: &[&str]) {
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/bin", "HOME=/root"],
                "cwd": "/",
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "oci-test",
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        });
        std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(RUNSC);
        c.arg(format!("--root={}", self.root()))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Run a command to its end.
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Run a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "runsc {args:?}: {:?}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// `create` with the container's stdio going to files in the test
    /// directory (as a shim gives it fifos).
    fn create(&self, bundle: &Path, id: &str) -> Output {
        let out = std::fs::File::create(self.dir.join(format!("{id}.out"))).unwrap();
        let err = std::fs::File::create(self.dir.join(format!("{id}.err"))).unwrap();
        let o = self
            .cmd(&[
                "create",
                "--bundle",
                bundle.to_str().unwrap(),
                "--pid-file",
                self.dir.join(format!("{id}.pid")).to_str().unwrap(),
                id,
            ])
            .stdout(out)
            .stderr(err)
            .output()
            .unwrap();
        o
    }

    fn container_out(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{id}.out"))).unwrap_or_default()
    }

    fn state(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    /// PIDs of processes started with this test's `--root`.
    fn our_processes(&self) -> Vec<i32> {
        let needle = format!("--root={}", self.root());
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let zombie = std::fs::read_to_string(e.path().join("stat"))
                .map(|s| s.rsplit(") ").next().unwrap_or("").starts_with('Z'))
                .unwrap_or(true);
            if !zombie && cmdline.split(|&b| b == 0).any(|a| a == needle.as_bytes()) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let end = Instant::now() + Duration::from_secs(3);
        let mut left = self.our_processes();
        while !left.is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
            left = self.our_processes();
        }
        for &pid in &left {
            // SAFETY: kill takes plain integers.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if !std::thread::panicking() {
            assert!(left.is_empty(), "processes left behind: {left:?}");
        }
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn lifecycle_create_start_exec_kill_delete() {
    let env = Env::new("life");
    let b = env.bundle("b", &["sh", "-c", "echo started; sleep 1000"]);
    let o = env.create(&b, "c1");
    assert!(
        o.status.success(),
        "{}",
        std::fs::read_to_string(env.dir.join("c1.err")).unwrap()
    );

    // The state directory holds exactly upstream's files.
    let mut files: Vec<String> = std::fs::read_dir(env.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["c1_sandbox:c1.lock", "c1_sandbox:c1.state", "runsc-c1.sock"]
    );
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.dir.join("state/c1_sandbox:c1.state")).unwrap())
            .unwrap();
    for key in [
        "id",
        "spec",
        "bundleDir",
        "createdAt",
        "owner",
        "consoleSocket",
        "status",
        "goferPid",
        "sandbox",
        "saver",
    ] {
        assert!(saved.get(key).is_some(), "state file lacks {key}: {saved}");
    }
    assert_eq!(
        saved["sandbox"]["controlSocketPath"],
        format!("{}/runsc-c1.sock", env.root())
    );

    let pid: i32 = std::fs::read_to_string(env.dir.join("c1.pid"))
        .unwrap()
        .parse()
        .unwrap();
    let st = env.state("c1");
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["bundle"], b.to_str().unwrap());
    assert_eq!(st["ociVersion"], "1.0.2-dev");

    // An abbreviated ID names the container.
    assert_eq!(env.state("c")["id"], "c1");
    env.ok(&["start", "c1"]);
    assert_eq!(env.state("c1")["status"], "running");
    let end = Instant::now() + Duration::from_secs(5);
    while !env.container_out("c1").contains("started") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(env.container_out("c1"), "started\n");

    // list: table, JSON, quiet.
    let table = env.ok(&["list"]);
    let mut lines = table.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("ID          PID         STATUS"));
    assert!(lines
        .next()
        .unwrap()
        .starts_with(&format!("c1          {pid:<12}running")));
    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["list", "--format=json"])).unwrap();
    assert_eq!(list[0]["id"], "c1");
    assert_eq!(list[0]["status"], "running");
    assert_eq!(env.ok(&["list", "-q"]), "c1\n");

    // exec: argv form with the status passed through, then --process.
    let o = env.run(&["exec", "c1", "sh", "-c", "echo exec-ok; exit 7"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "exec-ok\n");
    let o = env.run(&[
        "exec",
        "--env",
        "GREETING=hello",
        "--cwd",
        "/tmp",
        "c1",
        "sh",
        "-c",
        "echo $GREETING $(pwd)",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello /tmp\n",
        "{}",
        stderr(&o)
    );
    let process = env.dir.join("process.json");
    std::fs::write(
        &process,
        r#"{"terminal":false,"user":{"uid":0,"gid":0},"args":["sh","-c","echo from-process-json"],"env":["PATH=/bin"],"cwd":"/"}"#,
    )
    .unwrap();
    let o = env.run(&["exec", "--process", process.to_str().unwrap(), "c1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "from-process-json\n");

    // exec --detach: the pid file holds a host process that exits with
    // the exec'd process's status; wait --pid reports it too.
    let ipid = env.dir.join("i.pid");
    let hpid = env.dir.join("h.pid");
    // Its stdio goes to a file: the process keeps it open while it runs.
    let log = std::fs::File::create(env.dir.join("exec.out")).unwrap();
    let st = env
        .cmd(&[
            "exec",
            "--detach",
            "--internal-pid-file",
            ipid.to_str().unwrap(),
            "--pid-file",
            hpid.to_str().unwrap(),
            "c1",
            "sh",
            "-c",
            "sleep 2; exit 5",
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    assert!(st.success());
    let inner = std::fs::read_to_string(&ipid).unwrap();
    let host: i32 = std::fs::read_to_string(&hpid).unwrap().parse().unwrap();
    assert!(inner.parse::<i32>().unwrap() > 1);
    let ps = env.ok(&["ps", "c1"]);
    assert!(
        ps.starts_with("UID       PID       PPID      C         TTY       STIME     TIME"),
        "{ps}"
    );
    assert!(ps.contains("sleep"), "{ps}");
    let pids: Vec<i32> =
        serde_json::from_str(env.ok(&["ps", "--format=json", "c1"]).trim()).unwrap();
    assert!(
        pids.contains(&1) && pids.contains(&inner.parse().unwrap()),
        "{pids:?}"
    );
    // The waiter is not our child: watch it go away.
    let end = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{host}")).exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !Path::new(&format!("/proc/{host}/cmdline")).exists()
            || std::fs::read(format!("/proc/{host}/cmdline"))
                .unwrap()
                .is_empty()
    );

    // events --stats: one runc-style stats event.
    let ev: serde_json::Value =
        serde_json::from_str(env.ok(&["events", "--stats", "c1"]).trim()).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], "c1");
    assert!(
        ev["data"]["cpu"]["usage"]["total"].as_u64().unwrap() > 0,
        "{ev}"
    );
    assert!(ev["data"]["pids"]["current"].as_u64().unwrap() >= 1, "{ev}");

    // pause and resume.
    env.ok(&["pause", "c1"]);
    assert_eq!(env.state("c1")["status"], "paused");
    assert!(!env.run(&["pause", "c1"]).status.success());
    env.ok(&["resume", "c1"]);
    assert_eq!(env.state("c1")["status"], "running");

    // wait sees the kill; then the container is stopped.
    let waiter = env
        .cmd(&["wait", "c1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    env.ok(&["kill", "c1", "KILL"]);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"id\":\"c1\",\"exitStatus\":137}\n"
    );
    let end = Instant::now() + Duration::from_secs(5);
    while env.state("c1")["status"] != "stopped" && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = env.state("c1");
    assert_eq!(st["status"], "stopped");
    assert_eq!(st["pid"], -1);
    let o = env.run(&["kill", "c1", "TERM"]);
    assert_eq!(o.status.code(), Some(128));
    env.ok(&["delete", "c1"]);
    assert_eq!(std::fs::read_dir(env.root()).unwrap().count(), 0);
    let o = env.run(&["state", "c1"]);
    assert_eq!(o.status.code(), Some(128));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    env.ok(&["delete", "--force", "c1"]);
}

/// containerd's order: `wait` is in place before `start`; once it has
/// printed the status, a plain `delete` finds the container stopped (it
/// used to race the sandbox's last moments: "cannot delete running
/// container").
#[test]
fn wait_then_delete_finds_the_container_stopped() {
    let env = Env::new("waitdel");
    let b = env.bundle("b", &["sh", "-c", "exit 7"]);
    for i in 0..5 {
        let id = format!("w{i}");
        assert!(env.create(&b, &id).status.success());
        let waiter = env
            .cmd(&["wait", &id])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        env.ok(&["start", &id]);
        let out = waiter.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{{\"id\":\"{id}\",\"exitStatus\":7}}")
        );
        env.ok(&["delete", &id]);
    }
}

/// The spec's bind mounts of directories: the gofer serves each on its
/// own connection and the Sentry mounts it at its destination (made in
/// the root's memory layer when missing): writes through a read-write one
/// reach the host, a read-only one refuses them, and /proc/mounts lists
/// them. A bind of a file (docker's /etc/hosts) is skipped, not fatal.
#[test]
fn bind_mounts_of_directories_reach_the_host() {
    let env = Env::new("binds");
    let rw = env.dir.join("host-rw");
    let ro = env.dir.join("host-ro");
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(rw.join("hello"), "from the host\n").unwrap();
    std::fs::write(ro.join("r"), "read only\n").unwrap();
    let script = "cat /data/hello; echo written > /data/new && echo wrote; \
                  (echo x > /ro/x) 2>/dev/null || echo ro-refused; cat /ro/r; \
                  ls /deep/er; grep -E ' /(data|ro|deep/er) ' /proc/mounts | cut -d' ' -f2,4";
    let b = env.bundle("b", &["sh", "-c", script]);
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    let mounts = config["mounts"].as_array_mut().unwrap();
    for (dst, src, opts) in [
        ("/data", &rw, vec!["rbind", "rw"]),
        ("/ro", &ro, vec!["rbind", "ro"]),
        ("/deep/er", &ro, vec!["bind", "ro"]),
    ] {
        mounts.push(serde_json::json!({
            "destination": dst, "type": "bind", "source": src, "options": opts,
        }));
    }
    mounts.push(serde_json::json!({
        "destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts", "options": ["rbind", "ro"],
    }));
    std::fs::write(b.join("config.json"), config.to_string()).unwrap();
    let out = env.ok(&["run", "--bundle", b.to_str().unwrap(), "bm"]);
    assert_eq!(
        out,
        "from the host\nwrote\nro-refused\nread only\nr\n/data rw\n/ro ro\n/deep/er ro\n"
    );
    assert_eq!(
        std::fs::read_to_string(rw.join("new")).unwrap(),
        "written\n"
    );
    assert!(!ro.join("x").exists());
}

/// MAP_SHARED mappings of files in a bind mount are the host file's own
/// pages: the container's stores reach the host, with read/write,
/// SIGBUS past the end, fork and read-only descriptors behaving as on
/// Linux (the program's output was checked against a native run).
#[test]
fn shared_mappings_of_bind_mounted_files_reach_the_host() {
    let env = Env::new("mmap-host");
    let rw = env.dir.join("host-rw");
    let ro = env.dir.join("host-ro");
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(rw.join("file"), vec![b'h'; 8192]).unwrap();
    std::fs::write(ro.join("file"), "read only\n").unwrap();
    let b = env.bundle("b", &["/bin/mmap_shared_host", "/data/file", "/ro/file"]);
    let prog = b.join("rootfs/bin/mmap_shared_host");
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/mmap_shared_host.c"
    );
    let cc = Command::new("gcc")
        .args(["-static", "-O2", "-o", prog.to_str().unwrap(), src])
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    let mounts = config["mounts"].as_array_mut().unwrap();
    for (dst, src, opt) in [("/data", &rw, "rw"), ("/ro", &ro, "ro")] {
        mounts.push(serde_json::json!({
            "destination": dst, "type": "bind", "source": src, "options": ["rbind", opt],
        }));
    }
    std::fs::write(b.join("config.json"), config.to_string()).unwrap();
    for (i, flags) in [&[][..], &["--directfs=false"][..]].iter().enumerate() {
        std::fs::write(rw.join("file"), vec![b'h'; 8192]).unwrap();
        let mut args: Vec<&str> = flags.to_vec();
        let id = format!("mh{i}");
        args.extend(["run", "--bundle", b.to_str().unwrap(), &id]);
        let out = env.ok(&args);
        assert_eq!(
            out,
            "first byte from the host: h\nmsync: 0\npread sees the store: sandbox\n\
             mapping sees pwrite: PW\nwrite from the mapping: sandbox\nread into the mapping: 5\n\
             page past the end: SIGBUS\nafter growing: ok\nchild's store: c\n\
             read-only mapping: read only\nmade writable: EACCES\nwritable mapping of it: EACCES\n",
            "{flags:?}"
        );
        let host = std::fs::read(rw.join("file")).unwrap();
        assert_eq!(host.len(), 3 * 4096, "{flags:?}");
        assert_eq!(&host[..7], b"sandbox", "{flags:?}");
        assert_eq!(&host[100..105], b"piped", "{flags:?}");
        assert_eq!(host[200], b'c', "{flags:?}");
        assert_eq!(&host[4096..4098], b"PW", "{flags:?}");
        assert_eq!(host[2 * 4096], b'z', "{flags:?}");
    }
}

#[test]
fn run_attached_passes_output_and_status() {
    let env = Env::new("run");
    let b = env.bundle("b", &["sh", "-c", "echo hello from $(hostname); exit 3"]);
    let o = env.run(&["run", "--bundle", b.to_str().unwrap(), "r1"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello from oci-test\n");
    // run cleans up after itself.
    assert_eq!(std::fs::read_dir(env.root()).unwrap().count(), 0);
    env.config(&b, &["sh", "-c", "kill -9 $$"]);
    let o = env.run(&["run", "--bundle", b.to_str().unwrap(), "r2"]);
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
}

#[test]
fn run_detached_then_kill_and_force_delete() {
    let env = Env::new("detach");
    let b = env.bundle("b", &["sleep", "1000"]);
    // The container's stdio is run's (as runc's): files here, since the
    // container keeps them open.
    let err = std::fs::File::create(env.dir.join("d1.err")).unwrap();
    let o = env
        .cmd(&["run", "--detach", "--bundle", b.to_str().unwrap(), "d1"])
        .stdout(Stdio::null())
        .stderr(err)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}",
        std::fs::read_to_string(env.dir.join("d1.err")).unwrap()
    );
    assert_eq!(env.state("d1")["status"], "running");
    let o = env.run(&["delete", "d1"]);
    assert_eq!(o.status.code(), Some(128));
    assert!(stderr(&o).contains("without --force"), "{}", stderr(&o));
    env.ok(&["kill", "--all", "d1", "9"]);
    env.ok(&["delete", "--force", "d1"]);
    assert_eq!(std::fs::read_dir(env.root()).unwrap().count(), 0);
}

#[test]
fn duplicate_create_keeps_the_first_and_kill_on_created_stops_it() {
    let env = Env::new("dup");
    let b = env.bundle("b", &["sleep", "1000"]);
    assert!(env.create(&b, "x1").status.success());
    let before = std::fs::read(env.dir.join("state/x1_sandbox:x1.state")).unwrap();
    let o = env.run(&["create", "--bundle", b.to_str().unwrap(), "x1"]);
    assert_eq!(o.status.code(), Some(128));
    assert!(
        stderr(&o).contains("container already exists"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(env.dir.join("state/x1_sandbox:x1.state")).unwrap(),
        before
    );
    assert_eq!(env.state("x1")["status"], "created");
    // As runc: a created container can be killed, and is then stopped.
    env.ok(&["kill", "x1", "TERM"]);
    let end = Instant::now() + Duration::from_secs(5);
    while env.state("x1")["status"] != "stopped" && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(env.state("x1")["status"], "stopped");
    env.ok(&["delete", "x1"]);
    let o = env.run(&["create", "--bundle", b.to_str().unwrap(), "bad_id"]);
    assert_eq!(o.status.code(), Some(128));
    assert!(
        stderr(&o).contains("invalid container id"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn startup_errors_name_the_real_cause() {
    let env = Env::new("errors");
    // Missing rootfs: the gofer's own message.
    let b = env.bundle("b", &["true"]);
    std::fs::rename(b.join("rootfs"), b.join("elsewhere")).unwrap();
    let o = env.run(&["create", "--bundle", b.to_str().unwrap(), "e1"]);
    assert_eq!(o.status.code(), Some(128));
    let e = stderr(&o);
    assert!(
        e.contains("creating container: cannot create sandbox"),
        "{e}"
    );
    assert!(
        e.contains(&format!("{}/rootfs", b.display())) && e.contains("No such file"),
        "{e}"
    );
    assert!(!e.trim_end().ends_with("EOF"), "{e}");
    std::fs::rename(b.join("elsewhere"), b.join("rootfs")).unwrap();

    // A config that is not JSON, and one without args.
    std::fs::write(b.join("config.json"), "{\"root\": {\"path\": \"rootfs\"}, ").unwrap();
    let o = env.run(&["create", "--bundle", b.to_str().unwrap(), "e2"]);
    assert_eq!(o.status.code(), Some(128));
    assert!(stderr(&o).contains("config.json"), "{}", stderr(&o));
    env.config(&b, &[]);
    let o = env.run(&["create", "--bundle", b.to_str().unwrap(), "e3"]);
    assert!(stderr(&o).contains("Process.Arg"), "{}", stderr(&o));

    // A program that is not there: the Sentry's message at start.
    env.config(&b, &["no-such-program"]);
    let o = env.run(&["run", "--bundle", b.to_str().unwrap(), "e4"]);
    assert_eq!(o.status.code(), Some(128));
    assert!(
        stderr(&o).contains("error finding executable \"no-such-program\""),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_dir(env.root()).unwrap().count(), 0);
}

/// One raw exchange on a fresh connection to the sandbox's control socket:
/// what came back before the sandbox closed it (or the first reply).
fn raw_call(sock: &Path, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn control_socket_answers_as_upstream() {
    let env = Env::new("urpc");
    let b = env.bundle("b", &["sleep", "1000"]);
    assert!(env.create(&b, "u1").status.success());
    env.ok(&["start", "u1"]);
    let sock = env.dir.join("state/runsc-u1.sock");
    assert_eq!(
        raw_call(
            &sock,
            br#"{"method":"containerManager.NoSuchMethod","arg":{}}"#
        ),
        br#"{"success":false,"err":"unknown method","result":null}"#
    );
    assert_eq!(
        raw_call(&sock, br#"{"method":"containerManager.Processes","arg":5}"#),
        br#"{"success":false,"err":"json: cannot unmarshal number into Go value of type string","result":null}"#
    );
    assert_eq!(
        raw_call(&sock, br#"{"method":"containerManager.Signal","arg":{"CID":"u1","Signo":"KILL"}}"#),
        br#"{"success":false,"err":"json: cannot unmarshal string into Go struct field SignalArgs.Signo of type int32","result":null}"#
    );
    assert_eq!(
        raw_call(&sock, br#"{"method":"containerManager.Pause","arg":"x"}"#),
        br#"{"success":false,"err":"json: cannot unmarshal string into Go value of type struct {}","result":null}"#
    );
    assert_eq!(
        raw_call(&sock, br#"{"method":"containerManager.ExecuteAsync","arg":{"argv":"sh"}}"#),
        br#"{"success":false,"err":"json: cannot unmarshal string into Go struct field ExecArgs.argv of type []string","result":null}"#
    );
    // Malformed JSON: the sandbox drops the client, as upstream does.
    for bad in [
        &b"{\"method\":"[..],
        b"garbage",
        b"[1,2,3]",
        b"\x00\xff",
        b"{\"method\":[]}",
    ] {
        assert_eq!(
            raw_call(&sock, bad),
            b"",
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // And keeps serving.
    let reply = raw_call(
        &sock,
        br#"{"method":"containerManager.Processes","arg":"u1"}"#,
    );
    let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(v["success"], true);
    assert_eq!(v["result"][0]["pid"], 1);
    assert_eq!(v["result"][0]["cmd"], "sleep");
    assert_eq!(env.state("u1")["status"], "running");
    env.ok(&["delete", "--force", "u1"]);
}

#[test]
fn the_sandbox_is_isolated_and_holds_none_of_the_callers_pipes() {
    let env = Env::new("iso");
    let b = env.bundle("b", &["sleep", "1000"]);
    assert!(env.create(&b, "i1").status.success());
    let pid: i32 = std::fs::read_to_string(env.dir.join("i1.pid"))
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the isolation test needs root, as the test command runs"
    );
    {
        for ns in ["user", "pid", "mnt", "net", "ipc", "uts"] {
            let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
            let its = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
            assert_ne!(ours, its, "the sandbox shares our {ns} namespace");
        }
        // Its user namespace maps every ID onto itself (files keep their
        // owners), so its capabilities hold only over the namespaces it
        // owns.
        for map in ["uid_map", "gid_map"] {
            let text = std::fs::read_to_string(format!("/proc/{pid}/{map}")).unwrap();
            let words: Vec<&str> = text.split_whitespace().collect();
            assert_eq!(words, ["0", "0", "4294967295"], "{map}: {text:?}");
        }
        // Its root is an empty directory, and it is PID 1 of its namespace.
        assert_eq!(
            std::fs::read_dir(format!("/proc/{pid}/root"))
                .unwrap()
                .count(),
            0
        );
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
        assert!(nspid.trim_end().ends_with("\t1"), "{nspid}");
        // Only DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER and SYS_PTRACE are
        // left, in every set, and it can gain no more.
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .trim()
                .to_string()
        };
        let keep = format!("{:016x}", (1u64 << 1) | (1 << 2) | (1 << 3) | (1 << 19));
        assert_eq!(field("CapEff:"), keep);
        assert_eq!(field("CapPrm:"), keep);
        assert_eq!(field("CapBnd:"), keep);
        assert_eq!(field("CapInh:"), "0000000000000000");
        assert_eq!(field("NoNewPrivs:"), "1");
        // Its seccomp allow-list is installed (2: filter mode).
        assert_eq!(field("Seccomp:"), "2");
        // The gofer: chrooted to the bundle's rootfs, under its own
        // allow-list.
        let saved: serde_json::Value = serde_json::from_slice(
            &std::fs::read(env.dir.join("state/i1_sandbox:i1.state")).unwrap(),
        )
        .unwrap();
        let gofer = saved["goferPid"]
            .as_i64()
            .expect("goferPid in the state file");
        assert_eq!(
            std::fs::read_link(format!("/proc/{gofer}/root")).unwrap(),
            std::fs::canonicalize(b.join("rootfs")).unwrap()
        );
        let gstatus = std::fs::read_to_string(format!("/proc/{gofer}/status")).unwrap();
        let gseccomp = gstatus
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map(str::trim);
        assert_eq!(gseccomp, Some("2"), "{gstatus}");
    }
    // `start` returns with its output closed: nothing it leaves holds the
    // pipe (containerd's shim reads it to EOF).
    let mut start = env
        .cmd(&["start", "i1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = Vec::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut pipe = start.stdout.take().unwrap();
    std::thread::spawn(move || {
        let _ = pipe.read_to_end(&mut out);
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "start's stdout stayed open"
    );
    assert!(start.wait().unwrap().success());
    // No host descriptor of ours but stdio and its own reached the
    // sandbox: every fd is a socket, pipe, memfd, /dev/null or the rootfs.
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let target = std::fs::read_link(e.path()).unwrap();
        let t = target.to_string_lossy();
        assert!(
            t.starts_with("socket:")
                || t.starts_with("pipe:")
                || t.starts_with("/memfd:")
                || t == "/dev/null"
                || t.starts_with(b.to_str().unwrap())
                || t.starts_with("anon_inode:")
                || t.starts_with(&env.dir.to_string_lossy().to_string()),
            "unexpected descriptor in the sandbox: {t}"
        );
    }
    env.ok(&["delete", "--force", "i1"]);
}

#[test]
fn spec_writes_a_config_once() {
    let env = Env::new("spec");
    let b = env.dir.join("sb");
    std::fs::create_dir_all(&b).unwrap();
    env.ok(&["spec", "--bundle", b.to_str().unwrap(), "--", "echo", "hi"]);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    assert_eq!(v["process"]["args"], serde_json::json!(["echo", "hi"]));
    assert_eq!(v["root"]["path"], "rootfs");
    let o = env.run(&["spec", "--bundle", b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(128));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
}

/// Receive one FD sent with SCM_RIGHTS (as containerd's console socket
/// does); the message's bytes and the FD.
fn recv_fd(sock: &UnixStream) -> (Vec<u8>, std::os::fd::OwnedFd) {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut data = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `msg` points at live buffers of the stated sizes.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    assert!(n >= 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel filled the control buffer; the first header is
    // within it and, for SCM_RIGHTS, one int follows.
    let fd = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(!cmsg.is_null(), "no control message");
        assert_eq!((*cmsg).cmsg_type, libc::SCM_RIGHTS);
        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>())
    };
    // SAFETY: the kernel installed `fd` for us.
    (data[..n as usize].to_vec(), unsafe {
        std::os::fd::OwnedFd::from_raw_fd(fd)
    })
}

#[test]
fn console_socket_gets_a_pty_master() {
    let env = Env::new("console");
    let b = env.bundle("b", &["sh", "-c", "echo hello-tty"]);
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    config["process"]["terminal"] = serde_json::json!(true);
    std::fs::write(b.join("config.json"), config.to_string()).unwrap();
    let sock_path = env.dir.join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let run = env
        .cmd(&[
            "run",
            "--console-socket",
            sock_path.to_str().unwrap(),
            "--bundle",
            b.to_str().unwrap(),
            "t1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    let (name, master) = recv_fd(&conn);
    assert_eq!(name, b"/dev/ptmx");
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The program's output went through the terminal (ONLCR: "\r\n").
    let mut f = std::fs::File::from(master);
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.ends_with(b"\n") {
            break;
        }
    }
    assert_eq!(String::from_utf8_lossy(&got), "hello-tty\r\n");
}

#[test]
fn term_leaves_an_init_without_a_handler_running() {
    let env = Env::new("initsig");
    let b = env.bundle("b", &["sleep", "1000"]);
    assert!(env.create(&b, "s1").status.success());
    env.ok(&["start", "s1"]);
    // As a PID namespace's init under runc: SIGTERM without a handler is
    // dropped; SIGKILL is not.
    env.ok(&["kill", "s1", "TERM"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(env.state("s1")["status"], "running");
    // An init with a handler gets it.
    let c = env.bundle(
        "c",
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 0' TERM; while :; do sleep 0.1; done",
        ],
    );
    assert!(env.create(&c, "s2").status.success());
    env.ok(&["start", "s2"]);
    std::thread::sleep(Duration::from_millis(300));
    env.ok(&["kill", "s2", "TERM"]);
    let end = Instant::now() + Duration::from_secs(5);
    while env.state("s2")["status"] != "stopped" && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(env.state("s2")["status"], "stopped");
    assert!(env.container_out("s2").contains("got-term"));
    env.ok(&["kill", "s1", "KILL"]);
    env.ok(&["delete", "--force", "s1"]);
    env.ok(&["delete", "s2"]);
}

#[test]
fn hooks_run_with_the_state_on_stdin() {
    let env = Env::new("hooks");
    let b = env.bundle("b", &["sleep", "1000"]);
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    let hook = |name: &str| {
        let out = env.dir.join(format!("{name}.json"));
        serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", out.display())]})
    };
    config["hooks"] = serde_json::json!({
        "prestart": [hook("prestart")],
        "createRuntime": [hook("createRuntime")],
        "poststart": [hook("poststart")],
        "poststop": [hook("poststop")],
    });
    std::fs::write(b.join("config.json"), config.to_string()).unwrap();
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(env.dir.join(format!("{name}.json"))).unwrap())
            .unwrap()
    };
    assert!(env.create(&b, "h1").status.success());
    let pid: i32 = std::fs::read_to_string(env.dir.join("h1.pid"))
        .unwrap()
        .parse()
        .unwrap();
    for kind in ["prestart", "createRuntime"] {
        let st = read(kind);
        assert_eq!(st["id"], "h1");
        assert_eq!(st["status"], "created");
        assert_eq!(st["pid"], pid);
    }
    assert!(!env.dir.join("poststart.json").exists());
    env.ok(&["start", "h1"]);
    assert_eq!(read("poststart")["status"], "running");
    env.ok(&["delete", "--force", "h1"]);
    assert_eq!(read("poststop")["status"], "stopped");

    // A failing prestart hook fails the create and leaves nothing behind.
    config["hooks"] = serde_json::json!({"prestart": [
        {"path": "/bin/sh", "args": ["sh", "-c", "echo hook-says-no >&2; exit 3"]}
    ]});
    std::fs::write(b.join("config.json"), config.to_string()).unwrap();
    let o = env.run(&["create", "--bundle", b.to_str().unwrap(), "h2"]);
    assert_eq!(o.status.code(), Some(128));
    assert!(
        stderr(&o).contains("prestart hook #0") && stderr(&o).contains("hook-says-no"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_dir(env.root()).unwrap().count(), 0);
}

#[test]
fn pause_stops_every_task_until_resume() {
    let env = Env::new("pause");
    let b = env.bundle("b", &["sh", "-c", "while :; do :; done"]);
    assert!(env.create(&b, "p1").status.success());
    env.ok(&["start", "p1"]);
    let cpu = || -> u64 {
        let ev: serde_json::Value =
            serde_json::from_str(env.ok(&["events", "--stats", "p1"]).trim()).unwrap();
        ev["data"]["cpu"]["usage"]["total"].as_u64().unwrap()
    };
    std::thread::sleep(Duration::from_millis(200));
    env.ok(&["pause", "p1"]);
    // Let the tasks reach the Sentry and stop; after that the loop uses
    // no CPU at all, however long we look.
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu();
    std::thread::sleep(Duration::from_millis(500));
    let paused = cpu() - before;
    assert!(paused < 50_000_000, "{paused} ns of CPU while paused");
    env.ok(&["resume", "p1"]);
    let before = cpu();
    let end = Instant::now() + Duration::from_secs(10);
    while cpu() == before && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(cpu() > before, "the loop did not run again after resume");
    env.ok(&["delete", "--force", "p1"]);
}

/// The directory of cgroup `name` for `controller` (v1) or the unified
/// hierarchy's (v2), and whether the host is v2.
fn cgroup_dir(controller: &str, name: &str) -> (PathBuf, bool) {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let base = if v2 {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        Path::new("/sys/fs/cgroup").join(controller)
    };
    (base.join(name.trim_start_matches('/')), v2)
}

#[test]
fn the_specs_cgroup_bounds_the_sandbox() {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the cgroup test needs root, as the test command runs"
    );
    let env = Env::new("cgroup");
    let b = env.bundle("b", &["sleep", "1000"]);
    let name = format!("/runsc-oci-test-{}", std::process::id());
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    config["linux"] = serde_json::json!({
        "cgroupsPath": name,
        "resources": {"memory": {"limit": 268435456}, "pids": {"limit": 200}},
    });
    std::fs::write(b.join("config.json"), config.to_string()).unwrap();
    assert!(
        env.create(&b, "g1").status.success(),
        "{}",
        std::fs::read_to_string(env.dir.join("g1.err")).unwrap()
    );
    let pid = std::fs::read_to_string(env.dir.join("g1.pid")).unwrap();
    let (mem, v2) = cgroup_dir("memory", &name);
    let (pids, _) = cgroup_dir("pids", &name);
    let limit = if v2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(
        std::fs::read_to_string(mem.join(limit)).unwrap().trim(),
        "268435456"
    );
    assert_eq!(
        std::fs::read_to_string(pids.join("pids.max"))
            .unwrap()
            .trim(),
        "200"
    );
    let procs = std::fs::read_to_string(mem.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid),
        "sandbox {pid} not in {procs}"
    );
    // Its processes, the application's stubs included, stay inside.
    env.ok(&["start", "g1"]);
    let o = env.run(&["exec", "g1", "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let procs = std::fs::read_to_string(mem.join("cgroup.procs")).unwrap();
    let shown: Vec<String> = procs
        .lines()
        .map(|p| {
            format!(
                "{p} {:?}",
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " ")
            )
        })
        .collect();
    assert!(procs.lines().count() >= 3, "{shown:?}");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.dir.join("state/g1_sandbox:g1.state")).unwrap())
            .unwrap();
    let key = if v2 { "cgroupv2" } else { "cgroupv1" };
    assert!(
        saved["sandbox"]["cgroup"].get(key).is_some(),
        "{}",
        saved["sandbox"]["cgroup"]
    );
    env.ok(&["delete", "--force", "g1"]);
    assert!(!mem.exists() && !pids.exists(), "cgroups left behind");
}

#[test]
fn exec_passes_signals_on_to_its_process() {
    let env = Env::new("execsig");
    let b = env.bundle("b", &["sleep", "1000"]);
    assert!(env.create(&b, "q1").status.success());
    env.ok(&["start", "q1"]);
    let child = env
        .cmd(&["exec", "q1", "sleep", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the exec'd sleep shows up, then signal the CLI.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<i32> =
            serde_json::from_str(env.ok(&["ps", "--format=json", "q1"]).trim()).unwrap();
        if pids.len() >= 2 || Instant::now() > end {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(128 + libc::SIGTERM),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.state("q1")["status"], "running");
    env.ok(&["delete", "--force", "q1"]);
}
