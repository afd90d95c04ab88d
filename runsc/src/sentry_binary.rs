//! `--sentry-binary=PATH`: run another runsc's `boot` (Debian's Go one,
//! say) as the sandbox, launched as upstream's CLI launches its own
//! (`runsc/sandbox/sandbox.go`, `createSandboxProcess`; protocol notes
//! §5.6), and driven over its urpc control socket as ours is.
//!
//! What the launch reproduces (the 2022 and current CLIs agree on it):
//! argv[0] `runsc-sandbox`; the global flags (those that differ from our
//! defaults and that the binary defines); `boot --bundle=DIR`; FDs from 3
//! in upstream's donation order, each as `--NAME=FD`: `--io-fds` (the
//! gofer connections), `--mounts-fd` (the gofer's resolved mount list),
//! `--start-sync-fd`, `--controller-fd` (a unix stream socket bound, not
//! listening, at `\0runsc-sandbox.<id>`, the 2022 address), `--spec-fd` (the
//! spec, seekable), `--stdio-fds` x3; `--total-memory`; `--attached`; the
//! sandbox ID. New IPC, mount and UTS namespaces, a new network namespace
//! unless `--network=host`, and a new PID namespace (`--pidns=true`)
//! unless the platform is ptrace, which needs the current one; and, as
//! upstream does when it is root (with CAP_SETUID and CAP_SETGID), a new
//! user namespace mapping only nobody, the process running as nobody with
//! CAP_SYS_ADMIN and CAP_SYS_CHROOT as ambient capabilities and
//! `--setup-root` (it pivots into an empty tmpfs itself). `setsid`, and
//! SIGKILL when the launcher dies if attached.
//!
//! Not passed (upstream passes them only when configured): log, debug-log,
//! panic-log, profile and user-log FDs, a platform device FD (KVM), an
//! overlay filestore, pod-init config and sink FDs, `--cpu-num` (from a
//! cgroup).
//!
//! Upstream's sidecar mechanism: when `--sentry-binary` is not given, a
//! regular executable named `gvisor_sentry` in `$GVISOR_SIDECAR_BINARIES_DIR`
//! (or, as upstream's `gvisorbinaries.Dir`, in `gvisor-bin` beside this
//! binary) is used the same way.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{anyhow, Context as _};

use crate::cli::Config;
use crate::fds::{pass_fds, unblock_in_child};

/// The sidecar file name upstream gives its Sentry binary.
const SIDECAR_SENTRY: &str = "gvisor_sentry";
/// The environment variable naming upstream's sidecar directory.
const SIDECAR_DIR_ENV: &str = "GVISOR_SIDECAR_BINARIES_DIR";

/// The binary to run as the sandbox, if not this runsc.
pub fn resolve(config: &Config) -> Option<PathBuf> {
    match config.get("sentry-binary") {
        "" => sidecar(),
        path => Some(PathBuf::from(path)),
    }
}

/// `gvisor_sentry` in upstream's sidecar directory, if there is one.
fn sidecar() -> Option<PathBuf> {
    let dir = match std::env::var_os(SIDECAR_DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => std::fs::canonicalize("/proc/self/exe")
            .ok()?
            .parent()?
            .join("gvisor-bin"),
    };
    let path = dir.join(SIDECAR_SENTRY);
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&path).ok()?;
    (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(path)
}

/// The flag `runsc do` adds to overlay everything with memory, in the
/// binary's own dialect: the 2022 release's `do` sets its `--overlay`
/// (its `--overlay2=all:memory` leaves the root read-only there), later
/// ones `--overlay2=all:memory`.
pub fn do_overlay_flag(binary: &Path) -> anyhow::Result<String> {
    let known = crate::gofer_binary::defined_flags(&binary.display().to_string())?;
    Ok(if known.iter().any(|f| f == "overlay") {
        "--overlay=true".to_string()
    } else {
        "--overlay2=all:memory".to_string()
    })
}

/// What the sandbox is started with.
pub struct Launch<'a> {
    pub config: &'a Config,
    pub binary: &'a Path,
    pub id: &'a str,
    pub bundle: &'a str,
    /// The spec, as a seekable file (upstream's boot seeks it).
    pub spec: OwnedFd,
    /// The gofer connections: root first.
    pub io: Vec<OwnedFd>,
    /// The read end of the gofer's mount list.
    pub mounts: OwnedFd,
    pub stdio: [OwnedFd; 3],
    pub attached: bool,
    /// Extra global flags (`do` asks for an overlay as upstream's does).
    pub extra_flags: Vec<String>,
}

/// A started sandbox, its control server up.
pub struct Started {
    pub child: Child,
    /// The control socket's abstract address.
    pub control: SocketAddr,
    /// What the sandbox wrote to its stderr, for errors.
    pub stderr: OwnedFd,
}

/// Upstream's control socket address for sandbox `id` (2022:
/// `boot.ControlSocketAddr`).
fn control_addr(id: &str) -> anyhow::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("runsc-sandbox.{id}"))
        .context("making the control socket address")
}

/// Host memory in bytes (upstream's `totalSystemMemory`: MemTotal).
fn total_memory() -> anyhow::Result<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    info.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context("no MemTotal in /proc/meminfo")
}

/// Capabilities upstream leaves the sandbox as ambient ones in its user
/// namespace: CAP_SYS_ADMIN (mounts for its chroot) and CAP_SYS_CHROOT.
const SANDBOX_AMBIENT: &[u32] = &[21, 18];

/// Start `binary boot` and wait for its start-sync byte.
pub fn start(l: Launch<'_>) -> anyhow::Result<Started> {
    let binary = l.binary.display().to_string();
    let mut flags = crate::gofer_binary::global_flags(&binary, l.config)?;
    flags.extend(l.extra_flags);
    // Upstream binds the socket and the sandbox listens on it.
    let addr = control_addr(l.id)?;
    let control: OwnedFd = UnixListener::bind_addr(&addr)
        .with_context(|| format!("binding the control socket for sandbox {:?}", l.id))?
        .into();
    let (sync_r, sync_w) = std::io::pipe().context("creating the start-sync pipe")?;
    let stderr = crate::sandbox::error_capture("runsc-sandbox-stderr")?;

    let ptrace = l.config.get("platform") == "ptrace";
    let host_net = l.config.get("network") == "host";
    let mut cmd = Command::new(l.binary);
    cmd.arg0("runsc-sandbox").args(&flags);
    // FDs from 3 in upstream's donation order: the log first, as global
    // flags (the sandbox cannot open a log path once in its empty root).
    let mut fds: Vec<(OwnedFd, i32)> = Vec::new();
    let mut next = 3;
    let mut donate = |cmd: &mut Command, name: &str, fd: OwnedFd| {
        cmd.arg(format!("--{name}={next}"));
        fds.push((fd, next));
        next += 1;
    };
    if let Some(log) = crate::logging::open_debug_log(l.config, "boot") {
        donate(&mut cmd, "debug-log-fd", log.into());
    }
    cmd.arg("boot").arg(format!("--bundle={}", l.bundle));
    if !ptrace {
        cmd.arg("--pidns=true");
    }
    cmd.arg("--setup-root")
        .arg("--total-memory")
        .arg(total_memory()?.to_string());
    if l.attached {
        cmd.arg("--attached");
    }
    for io in l.io {
        donate(&mut cmd, "io-fds", io);
    }
    donate(&mut cmd, "mounts-fd", l.mounts);
    donate(&mut cmd, "start-sync-fd", sync_w.into());
    donate(&mut cmd, "controller-fd", control);
    donate(&mut cmd, "spec-fd", l.spec);
    let [i, o, e] = l.stdio;
    for s in [i, o, e] {
        donate(&mut cmd, "stdio-fds", s);
    }
    cmd.arg(l.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr.try_clone()?))
        .env_remove("GOMAXPROCS");

    let mut namespaces = libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if !host_net {
        namespaces |= libc::CLONE_NEWNET;
    }
    // The user namespace first, so every other namespace is its own.
    let (maps, child_end) = crate::userns::enter_in_child(
        &mut cmd,
        namespaces,
        crate::userns::NOBODY,
        (crate::userns::NOBODY, crate::userns::NOBODY),
        SANDBOX_AMBIENT,
    )?;
    pass_fds(&mut cmd, &fds);
    crate::fds::close_from(&mut cmd, next as u32);
    unblock_in_child(&mut cmd);
    let attached = l.attached;
    // SAFETY: runs between fork and exec; setsid and prctl are
    // async-signal-safe syscalls.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if attached {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            }
            Ok(())
        });
    }
    let mapper = std::thread::spawn(move || maps.write_maps());
    let spawned = if ptrace {
        cmd.spawn()
    } else {
        spawn_in_new_pid_namespace(cmd)
    };
    drop(child_end);
    drop(fds);
    let mapped = mapper
        .join()
        .unwrap_or_else(|_| Err(anyhow!("the ID map writer panicked")));
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let e = anyhow!(e).context(format!("starting the sandbox ({binary} boot)"));
            return Err(match mapped {
                Err(m) => m.context(e.to_string()),
                Ok(()) => e,
            });
        }
    };
    let mut byte = [0u8; 1];
    if matches!({ sync_r }.read(&mut byte), Ok(1)) {
        return Ok(Started {
            child,
            control: addr,
            stderr,
        });
    }
    let status = child.wait().ok();
    let msg = crate::sandbox::captured(&stderr);
    Err(if msg.is_empty() {
        anyhow!(
            "the sandbox process ({binary} boot) exited ({}) without saying why",
            status.map_or_else(|| "unknown status".into(), |s| s.to_string())
        )
    } else {
        anyhow!("sandbox: {msg}")
    })
}

/// Spawn `cmd` as the first process of a new PID namespace, from a thread
/// of its own (a thread that has unshared CLONE_NEWPID puts all its later
/// children there).
fn spawn_in_new_pid_namespace(mut cmd: Command) -> std::io::Result<Child> {
    std::thread::spawn(move || {
        // SAFETY: unshare takes flags only and affects this thread's
        // future children.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        cmd.spawn()
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the sandbox spawner panicked")))
}

/// A urpc connection to the sandbox's control server.
pub fn connect(addr: &SocketAddr) -> anyhow::Result<urpc::Client> {
    let sock = UnixStream::connect_addr(addr).context("connecting to the sandbox")?;
    Ok(urpc::Client::new(sock))
}

/// `runsc do` with another Sentry: start the root container, forward
/// SIGTERM and SIGHUP as upstream's `do` does (containerManager.Signal),
/// and return the shell's view of its wait status.
pub fn run_do(
    started: Started,
    id: &str,
    signals: libc::sigset_t,
    gofer: &mut Child,
) -> anyhow::Result<i32> {
    let Started {
        mut child,
        control,
        stderr,
    } = started;
    let outcome = (|| -> anyhow::Result<u32> {
        let mut c = connect(&control)?;
        c.call(crate::control::START_ROOT, &id, &[])
            .map_err(|e| anyhow!("starting the container: {e:?}"))?;
        {
            let control = control.clone();
            let id = id.to_string();
            std::thread::spawn(move || loop {
                let sig = crate::fds::wait_signal(&signals);
                if sig == libc::SIGTERM || sig == libc::SIGHUP {
                    let arg = serde_json::json!({"CID": id, "Signo": sig, "Mode": 0});
                    if let Ok(mut c) = connect(&control) {
                        let _ = c.call("containerManager.Signal", &arg, &[]);
                    }
                }
            });
        }
        let (v, _) = c
            .call(crate::control::WAIT, &id, &[])
            .map_err(|e| anyhow!("waiting for the container: {e:?}"))?;
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| anyhow!("containerManager.Wait returned {v}, not a wait status"))
    })();
    let status = child.wait();
    let _ = gofer.wait();
    match outcome {
        Ok(ws) => Ok(crate::control::exit_code(ws)),
        Err(e) => {
            let msg = crate::sandbox::captured(&stderr);
            let status = status.map(|s| s.to_string()).unwrap_or_default();
            if msg.is_empty() {
                Err(e.context(format!("the sandbox exited ({status})")))
            } else {
                Err(e.context(format!("sandbox ({status}): {msg}")))
            }
        }
    }
}
