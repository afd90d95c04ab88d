//! Real static programs run by the Sentry on the ptrace platform.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use sentry::{ExitStatus, Kernel, KernelConfig, ProcessSpec, StartError, Task};

const BUSYBOX: &str = "/bin/busybox";

fn kernel() -> Arc<Kernel> {
    let platform = platform_systrap::PtracePlatform::new().expect("ptrace is available");
    Kernel::new(KernelConfig {
        platform: Arc::new(platform),
        strace: Default::default(),
        root: vfs::hostfs::new_root(OwnedFd::from(std::fs::File::open("/").unwrap()), true, true)
            .unwrap(),
        binds: Vec::new(),
        hostname: "sandbox".into(),
        host_network: false,
    })
    .unwrap()
}

/// Run argv in the Sentry; returns (status, stdout).
fn run(argv: &[&str]) -> Result<(ExitStatus, String), StartError> {
    let (mut out_r, out_w) = std::io::pipe().unwrap();
    let stdin = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    let stderr = std::io::stderr().as_fd().try_clone_to_owned().unwrap();
    let spec = ProcessSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        envv: vec!["PATH=/usr/bin:/bin".into()],
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        stdio: vec![stdin, OwnedFd::from(out_w), stderr],
    };
    let task = Task::start(kernel(), spec)?;
    let status = task.run();
    let mut out = String::new();
    out_r.read_to_string(&mut out).unwrap();
    Ok((status, out))
}

#[test]
fn busybox_echo() {
    let (status, out) = run(&[BUSYBOX, "echo", "hello", "world"]).unwrap();
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(out, "hello world\n");
}

#[test]
fn busybox_uname_reports_the_sentry() {
    let (status, out) = run(&[BUSYBOX, "uname", "-s", "-n", "-r", "-m"]).unwrap();
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(out, "Linux sandbox 4.4.0 x86_64\n");
}

#[test]
fn busybox_cat_reads_the_root() {
    let (status, out) = run(&["busybox", "cat", "/etc/os-release"]).unwrap();
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(out, std::fs::read_to_string("/etc/os-release").unwrap());
}

#[test]
fn exit_status_passes_through() {
    let (status, _) = run(&[BUSYBOX, "false"]).unwrap();
    assert_eq!(status, ExitStatus::Exited(1));
    let (status, out) = run(&[BUSYBOX, "sh", "-c", "echo in-shell; exit 7"]).unwrap();
    assert_eq!(
        (status, out.as_str()),
        (ExitStatus::Exited(7), "in-shell\n")
    );
}

#[test]
fn proc_describes_the_sandbox_not_the_host() {
    let (status, out) = run(&[BUSYBOX, "cat", "/proc/self/status"]).unwrap();
    assert_eq!(status, ExitStatus::Exited(0));
    assert!(out.contains("\nPid:\t1\n"), "{out}");
    assert!(out.contains("\nPPid:\t0\n"), "{out}");
    let (status, out) = run(&[BUSYBOX, "ls", "/proc"]).unwrap();
    assert_eq!(status, ExitStatus::Exited(0));
    let names: Vec<&str> = out.lines().collect();
    assert!(names.contains(&"1") && names.contains(&"self"), "{names:?}");
    // The test process's own PID is a host PID: not in the sandbox.
    let me = std::process::id().to_string();
    assert!(!names.contains(&me.as_str()), "{names:?}");
}

#[test]
fn sys_holds_only_the_sandbox_basics() {
    let (status, out) = run(&[BUSYBOX, "ls", "/sys"]).unwrap();
    assert_eq!(status, ExitStatus::Exited(0), "ls /sys printed {out:?}");
    let names: Vec<&str> = out.lines().collect();
    assert_eq!(
        names,
        ["block", "bus", "class", "devices", "fs", "kernel", "module"]
    );
    let (_, out) = run(&[BUSYBOX, "cat", "/sys/devices/system/cpu/online"]).unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(out, format!("0-{}\n", cpus - 1));
}

#[test]
fn load_errors_carry_execve_errnos() {
    let err = |argv: &[&str]| match run(argv) {
        Err(e) => e.to_string(),
        Ok(r) => panic!("{argv:?} ran: {r:?}"),
    };
    assert_eq!(
        err(&["/nonexistent"]),
        "creating process: failed to load /nonexistent: no such file or directory"
    );
    assert_eq!(
        err(&["/tmp"]),
        "creating process: failed to load /tmp: permission denied"
    );
    assert_eq!(
        err(&["/etc/os-release"]),
        "creating process: failed to load /etc/os-release: permission denied"
    );
    assert!(err(&["nosuchprog"])
        .starts_with("error finding executable \"nosuchprog\" in PATH [/usr/bin /bin]"));
}

#[test]
fn a_started_process_is_listed_with_its_name_before_it_runs() {
    let k = kernel();
    let spec = ProcessSpec {
        argv: vec![BUSYBOX.into(), "true".into()],
        envv: Vec::new(),
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        stdio: Vec::new(),
    };
    let task = Task::start(k.clone(), spec).unwrap();
    // runsc's `start` answers once the task exists; `ps` may come next.
    let listed = k.processes();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].cmd, "busybox");
    assert_eq!(task.run(), ExitStatus::Exited(0));
}
