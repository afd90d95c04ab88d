//! Starting a sandbox for `create` and `run` (upstream
//! `runsc/sandbox/sandbox.go`, protocol notes §5.6): the gofer serving the
//! bundle's root, then `runsc boot` with the control socket, the spec, the
//! gofer connection, a start-sync pipe and the container's stdio.
//!
//! Neither background process keeps the caller's stdout or stderr: their
//! own stdin and stdout are /dev/null and their stderr is a memfd the
//! launcher reads if they fail, so a startup error shows the failing
//! process's own message (not "EOF"), and a caller reading our output to
//! its end (containerd's shim) is never held up by them.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};

use crate::cli::Config;
use crate::fds::{close_from, pass_fds, unblock_in_child};
use crate::isolate;

/// What the sandbox is started with.
pub struct Request<'a> {
    pub config: &'a Config,
    pub id: &'a str,
    pub bundle: &'a Path,
    /// The spec as given (the gofer and the sandbox each read it).
    pub spec_json: &'a [u8],
    /// The container's stdin, stdout and stderr.
    pub stdio: [OwnedFd; 3],
    /// The sandbox and gofer die with the caller (`run` without
    /// `--detach`).
    pub attached: bool,
    pub control_socket: &'a Path,
    /// `cgroup.procs` of the sandbox's groups: the gofer and the sandbox
    /// join them before they run, so every process they start (the
    /// platform's stubs among them) is bounded too.
    pub cgroup_procs: Vec<File>,
}

/// A started sandbox.
pub struct Started {
    pub sandbox: Sandbox,
    pub gofer: Child,
}

/// The sandbox process, waited for by the thread that started it.
pub struct Sandbox {
    pub pid: i32,
    /// Its exit status, once it has exited.
    pub exit: std::sync::mpsc::Receiver<std::process::ExitStatus>,
}

/// A close-on-exec memfd to catch a child's stderr.
pub fn error_capture(name: &str) -> anyhow::Result<OwnedFd> {
    let cname = std::ffi::CString::new(name)?;
    // SAFETY: memfd_create reads the NUL-terminated name.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("creating an error capture file");
    }
    // SAFETY: `fd` is fresh and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What a child wrote to its error capture, trimmed.
pub fn captured(fd: &OwnedFd) -> String {
    let f = File::from(fd.try_clone().expect("dup of a memfd"));
    let mut buf = vec![0u8; 64 * 1024];
    let n = f.read_at(&mut buf, 0).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).trim().to_string()
}

/// Setsid, and the caller's own signal mask cleared, in a child.
fn detach_session(cmd: &mut Command) {
    // SAFETY: runs between fork and exec; setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    unblock_in_child(cmd);
}

/// Wait up to `limit` for a child to exit.
fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kill and reap a child (startup failed).
fn discard(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

const GOFER_SPEC_FD: i32 = 3;
const GOFER_IO_FD: i32 = 4;
const GOFER_MOUNTS_FD: i32 = 5;

const BOOT_CONTROLLER_FD: i32 = 3;
const BOOT_SPEC_FD: i32 = 4;
const BOOT_IO_FD: i32 = 5;
const BOOT_SYNC_FD: i32 = 6;
const BOOT_STDIO_FD: i32 = 7;

/// Start the gofer and the sandbox; returns once the sandbox's control
/// server is up, or with the cause of the failure.
pub fn start(req: Request<'_>) -> anyhow::Result<Started> {
    let isolating = isolate::isolating(req.config);
    let control = isolate::bind_control_socket(req.control_socket)?;
    let (gofer_end, sentry_end) = UnixStream::pair().context("creating the gofer socket")?;
    // One more connection per bind mount, in the spec's order.
    let spec: serde_json::Value =
        serde_json::from_slice(req.spec_json).context("parsing the spec")?;
    let mut bind_pairs = Vec::new();
    for _ in crate::spec::binds(&spec) {
        bind_pairs.push(UnixStream::pair().context("creating a bind mount's gofer socket")?);
    }
    // Their numbers in each child: after the fixed descriptors.
    let gofer_bind_fds: Vec<i32> = (0..bind_pairs.len() as i32)
        .map(|i| GOFER_MOUNTS_FD + 1 + i)
        .collect();
    let boot_bind_fds: Vec<i32> = (0..bind_pairs.len() as i32)
        .map(|i| BOOT_STDIO_FD + 3 + i)
        .collect();
    let io_fds = |first: i32, more: &[i32]| {
        std::iter::once(first)
            .chain(more.iter().copied())
            .map(|fd| fd.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let (gofer_binds, sentry_binds): (Vec<OwnedFd>, Vec<OwnedFd>) = bind_pairs
        .into_iter()
        .map(|(g, s)| (OwnedFd::from(g), OwnedFd::from(s)))
        .unzip();

    // The gofer.
    let gofer_err = error_capture("runsc-gofer-stderr")?;
    let (gspec_r, mut gspec_w) = std::io::pipe().context("creating the spec pipe")?;
    let (mounts_r, mounts_w) = std::io::pipe().context("creating the mounts pipe")?;
    let mut cmd = Command::new("/proc/self/exe");
    join_cgroups(&mut cmd, &req.cgroup_procs);
    cmd.args(req.config.to_flags())
        .arg("gofer")
        .arg(format!("--bundle={}", req.bundle.display()))
        .arg(format!("--spec-fd={GOFER_SPEC_FD}"))
        .arg(format!("--io-fds={}", io_fds(GOFER_IO_FD, &gofer_bind_fds)))
        .arg(format!("--mounts-fd={GOFER_MOUNTS_FD}"))
        .arg("--setup-root=false")
        .arg("--apply-caps=false")
        .arg(req.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(gofer_err.try_clone()?));
    let mut fds = vec![
        (gspec_r.into(), GOFER_SPEC_FD),
        (gofer_end.into(), GOFER_IO_FD),
        (mounts_w.into(), GOFER_MOUNTS_FD),
    ];
    fds.extend(gofer_binds.into_iter().zip(gofer_bind_fds.iter().copied()));
    pass_fds(&mut cmd, &fds);
    close_from(
        &mut cmd,
        (GOFER_MOUNTS_FD + 1 + gofer_bind_fds.len() as i32) as u32,
    );
    detach_session(&mut cmd);
    if req.attached {
        die_with_parent(&mut cmd);
    }
    let mut gofer = cmd.spawn().context("starting the gofer")?;
    drop(fds);
    let _ = gspec_w.write_all(req.spec_json);
    drop(gspec_w);
    let mut mounts = String::new();
    let _ = { mounts_r }.read_to_string(&mut mounts);

    // The sandbox: the first process of a new PID namespace, in a new user
    // namespace mapping every ID onto itself that owns its new mount, IPC,
    // UTS and network namespaces.
    let boot_err = error_capture("runsc-sandbox-stderr")?;
    let (spec_r, mut spec_w) = std::io::pipe().context("creating the spec pipe")?;
    let (sync_r, sync_w) = std::io::pipe().context("creating the start-sync pipe")?;
    let mut cmd = Command::new("/proc/self/exe");
    join_cgroups(&mut cmd, &req.cgroup_procs);
    cmd.args(req.config.to_flags())
        .arg("boot")
        .arg(format!("--bundle={}", req.bundle.display()))
        .arg(format!("--controller-fd={BOOT_CONTROLLER_FD}"))
        .arg(format!("--spec-fd={BOOT_SPEC_FD}"))
        .arg(format!("--io-fds={}", io_fds(BOOT_IO_FD, &boot_bind_fds)))
        .arg(format!("--start-sync-fd={BOOT_SYNC_FD}"))
        .arg(format!(
            "--stdio-fds={},{},{}",
            BOOT_STDIO_FD,
            BOOT_STDIO_FD + 1,
            BOOT_STDIO_FD + 2
        ));
    if isolating {
        cmd.arg("--setup-root");
    }
    if req.attached {
        cmd.arg("--attached");
    }
    cmd.arg(req.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(boot_err.try_clone()?));
    let [i, o, e] = req.stdio;
    let mut fds = vec![
        (control, BOOT_CONTROLLER_FD),
        (spec_r.into(), BOOT_SPEC_FD),
        (sentry_end.into(), BOOT_IO_FD),
        (sync_w.into(), BOOT_SYNC_FD),
        (i, BOOT_STDIO_FD),
        (o, BOOT_STDIO_FD + 1),
        (e, BOOT_STDIO_FD + 2),
    ];
    fds.extend(sentry_binds.into_iter().zip(boot_bind_fds.iter().copied()));
    // The user namespace first (it owns the others), and before the FDs
    // are moved into place, which could land on its sync socket.
    let userns = if isolating {
        Some(crate::userns::enter_identity_in_child(
            &mut cmd,
            isolate::SANDBOX_NAMESPACES,
        )?)
    } else {
        None
    };
    pass_fds(&mut cmd, &fds);
    close_from(
        &mut cmd,
        (BOOT_STDIO_FD + 3 + boot_bind_fds.len() as i32) as u32,
    );
    detach_session(&mut cmd);
    // A thread of its own makes the PID namespace and forks the sandbox:
    // a thread that has unshared CLONE_NEWPID can start no threads and
    // would put every later child (hooks) in the sandbox's namespace. The
    // thread then waits for the sandbox (it is the "parent" an attached
    // sandbox's PDEATHSIG watches, so it lives as long as the sandbox).
    // The ID map writer is started here: no thread can be started from
    // the spawner once it has unshared CLONE_NEWPID.
    let (mapper, child_end) = match userns {
        Some((maps, child_end)) => (
            Some(std::thread::spawn(move || maps.write_maps())),
            Some(child_end),
        ),
        None => (None, None),
    };
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let (exit_tx, exit_rx) = std::sync::mpsc::channel();
    let spawner = std::thread::Builder::new()
        .name("sandbox".into())
        .spawn(move || {
            if isolating {
                if let Err(e) = isolate::new_pid_namespace_for_children() {
                    let _ = pid_tx.send(Err(e));
                    return;
                }
            }
            let spawned = cmd.spawn();
            // The child's end goes, so a child that died before asking
            // for its maps ends the writer's wait.
            drop(child_end);
            drop(fds);
            let mapped = mapper.map_or(Ok(()), |m| {
                m.join()
                    .unwrap_or_else(|_| Err(anyhow!("the ID map writer panicked")))
            });
            let spawned = match (spawned, mapped) {
                (Ok(child), _) => Ok(child),
                (Err(e), Err(why)) => Err(why.context(e)),
                (Err(e), Ok(())) => Err(anyhow!(e)),
            };
            match spawned {
                Ok(mut child) => {
                    let _ = pid_tx.send(Ok(child.id() as i32));
                    if let Ok(status) = child.wait() {
                        let _ = exit_tx.send(status);
                    }
                }
                Err(e) => {
                    let _ = pid_tx.send(Err(e.context("starting the sandbox process")));
                }
            }
        });
    let spawned = match spawner {
        Ok(_) => pid_rx
            .recv()
            .unwrap_or_else(|_| Err(anyhow!("the sandbox launcher thread ended"))),
        Err(e) => Err(anyhow!(e).context("starting the sandbox launcher thread")),
    };
    let pid = match spawned {
        Ok(pid) => pid,
        Err(e) => {
            discard(&mut gofer);
            return Err(e);
        }
    };
    let sandbox = Sandbox { pid, exit: exit_rx };
    let _ = spec_w.write_all(req.spec_json);
    drop(spec_w);

    let mut byte = [0u8; 1];
    let synced = matches!({ sync_r }.read(&mut byte), Ok(1));
    if synced {
        return Ok(Started { sandbox, gofer });
    }
    // The sandbox died before its control server came up: say why, in
    // the words of the process that failed. A gofer that failed first is
    // the root cause of whatever the sandbox then reports.
    let status = sandbox.exit.recv_timeout(Duration::from_secs(5)).ok();
    let sandbox_msg = captured(&boot_err);
    let gofer_status = wait_for(&mut gofer, Duration::from_secs(2));
    let gofer_msg = captured(&gofer_err);
    if gofer_status.is_none() {
        discard(&mut gofer);
    }
    let gofer_failed = gofer_status.is_some_and(|s| !s.success()) && !gofer_msg.is_empty();
    let mut msg = String::new();
    if gofer_failed {
        msg.push_str(&format!("gofer: {gofer_msg}"));
    }
    if !sandbox_msg.is_empty() {
        if !msg.is_empty() {
            msg.push_str("; ");
        }
        msg.push_str(&format!("sandbox: {sandbox_msg}"));
    }
    if msg.is_empty() {
        msg = format!(
            "the sandbox process exited ({}) without saying why",
            status.map_or_else(|| "unknown status".to_string(), |s| s.to_string())
        );
    }
    let _ = std::fs::remove_file(req.control_socket);
    Err(anyhow!(msg))
}

/// The child writes "0" to each `cgroup.procs` (moving itself into that
/// group) before anything else it does between fork and exec: later steps
/// move descriptors onto fixed numbers, which could land on these.
fn join_cgroups(cmd: &mut Command, procs: &[File]) {
    let fds: Vec<libc::c_int> = procs.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    // SAFETY: runs between fork and exec; write is async-signal-safe and
    // reads a static byte; `fds` was built before the fork and is only
    // read.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// `--attached`: the child dies with its launcher.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: runs between fork and exec; prctl is a plain syscall.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
}

/// The stdio a container gets from this process: dups of our 0, 1, 2.
pub fn own_stdio() -> anyhow::Result<[OwnedFd; 3]> {
    let dup = |fd: i32| -> anyhow::Result<OwnedFd> {
        // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor into a new one.
        let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if n < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("duplicating descriptor {fd}"));
        }
        // SAFETY: `n` is fresh and ours alone.
        Ok(unsafe { OwnedFd::from_raw_fd(n) })
    };
    Ok([dup(0)?, dup(1)?, dup(2)?])
}

/// Three dups of one descriptor (a terminal as stdin, stdout and stderr).
pub fn triple(fd: OwnedFd) -> anyhow::Result<[OwnedFd; 3]> {
    Ok([fd.try_clone()?, fd.try_clone()?, fd])
}
