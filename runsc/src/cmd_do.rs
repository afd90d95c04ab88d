//! `runsc do PROGRAM ARGS...`: run a host program in a fresh sandbox whose
//! root is the host's (read-only), with this terminal's stdio, and exit
//! with its status (upstream's `runsc/cmd/do.go`).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use anyhow::Context as _;

use crate::cli::{Config, DoArgs};
use crate::fds::{block_signals, pass_fds, unblock_in_child, wait_signal};
use crate::spec::{Process, Root, Spec, User};

/// How upstream prefixes errors from starting the container.
const START_PREFIX: &str = "starting container: starting root container: starting sandbox: ";

/// Descriptor numbers the gofer and sandbox processes get, after stdio.
const SPEC_FD: i32 = 3;
const IO_FD: i32 = 4;
/// The sandbox's start status, or the gofer's mount list.
const STATUS_FD: i32 = 5;

pub fn run(config: &Config, args: DoArgs) -> i32 {
    // Whatever the sandbox leaves behind (a platform stub orphaned when the
    // Sentry died, which shares the Sentry's descriptor table and so holds
    // our caller's stdout) becomes our child, and is killed below: `do`
    // makes no PID namespace whose end would take it along.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let code = match run_inner(config, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            128
        }
    };
    kill_strays();
    code
}

/// Kill and reap every child still left (the gofer and the sandbox have
/// been waited for), saying which were alive and not already exiting.
fn kill_strays() {
    loop {
        let mut pids = Vec::new();
        for task in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            pids.extend(
                children
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // Stubs the Sentry killed on its way out arrive as zombies,
            // exiting (PF_EXITING, 0x4, in the flags field) or with the
            // SIGKILL still pending.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
            let zombie = fields.first().is_some_and(|s| *s == "Z");
            let exiting = fields
                .get(6)
                .and_then(|f| f.parse::<u64>().ok())
                .is_some_and(|f| f & 0x4 != 0)
                || sigkill_pending(pid);
            if !zombie && !exiting {
                tracing::warn!("killing a process the sandbox left behind: {stat}");
            }
            // SAFETY: kill takes plain integers; the pid is our child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: waitpid takes an integer and a null status pointer.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
    }
}

/// Whether SIGKILL is already on its way to `pid` (a stub whose tracer
/// died is sent one by PTRACE_O_EXITKILL).
fn sigkill_pending(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .any(|mask| mask & (1 << (libc::SIGKILL - 1)) != 0)
}

fn build_spec(args: &DoArgs) -> anyhow::Result<Spec> {
    let cwd = if args.cwd == "." {
        std::env::current_dir()
            .context("finding the current directory")?
            .to_string_lossy()
            .into_owned()
    } else {
        args.cwd.clone()
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    // SAFETY: as for getuid.
    let gid = unsafe { libc::getgid() };
    Ok(Spec {
        oci_version: "1.0.2".into(),
        process: Process {
            terminal: false,
            user: User {
                uid,
                gid,
                additional_gids: Vec::new(),
            },
            args: args.argv.clone(),
            env: std::env::vars_os()
                .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
                .collect(),
            cwd,
        },
        root: Root {
            path: args.root.clone(),
            readonly: true,
        },
        hostname,
        annotations: Default::default(),
    })
}

/// The spec as a file, as upstream hands the gofer its `config.json` (the
/// Go gofer seeks it, so a pipe will not do): an unnamed memory file.
fn spec_file(json: &[u8]) -> anyhow::Result<std::os::fd::OwnedFd> {
    // SAFETY: the name is a NUL-terminated literal; memfd_create returns a
    // new descriptor or -1.
    let fd = unsafe { libc::memfd_create(c"config.json".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("creating the gofer's spec file");
    }
    // SAFETY: `fd` was just returned to us and nothing else owns it.
    let mut file = std::fs::File::from(unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
    });
    file.write_all(json)
        .context("writing the gofer's spec file")?;
    std::io::Seek::rewind(&mut file).context("rewinding the gofer's spec file")?;
    Ok(file.into())
}

/// The gofer's command up to its `gofer` subcommand: this runsc, or the
/// `--gofer-binary` launched as upstream launches its gofer.
fn gofer_command(config: &Config) -> anyhow::Result<Command> {
    match config.get("gofer-binary") {
        "" => {
            let mut cmd = Command::new("/proc/self/exe");
            cmd.args(config.to_flags());
            Ok(cmd)
        }
        binary => crate::gofer_binary::command(binary, config),
    }
}

/// What a gofer that exited unsuccessfully (within a short wait) wrote.
fn gofer_failure(gofer: &mut std::process::Child, stderr: &std::os::fd::OwnedFd) -> Option<String> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match gofer.try_wait() {
            Ok(Some(status)) if !status.success() => {
                let msg = crate::sandbox::captured(stderr);
                return Some(if msg.is_empty() {
                    format!("exited ({status})")
                } else {
                    msg
                });
            }
            Ok(None) if std::time::Instant::now() < end => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            _ => return None,
        }
    }
}

fn run_inner(config: &Config, args: DoArgs) -> anyhow::Result<i32> {
    // The terminal's SIGINT and SIGQUIT reach the sandbox process directly
    // (one process group); SIGTERM and SIGHUP sent to us are passed on.
    let signals = block_signals(&[libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP]);
    let mut spec = build_spec(&args)?;
    let sentry_binary = crate::sentry_binary::resolve(config);
    if sentry_binary.is_some() {
        // Upstream's `do` spec leaves the root writable and relies on the
        // Sentry's memory overlay (a 2022 Sentry overlays no read-only
        // root, so its /tmp would be read-only).
        spec.root.readonly = false;
    }
    let json = serde_json::to_vec(&spec).context("encoding the spec")?;
    let id = format!("runsc-{:06}", std::process::id() % 1_000_000);
    let (gofer_sock, sentry_sock) = UnixStream::pair().context("creating the gofer socket")?;

    // The gofer serves the root; the sandbox mounts it through the socket.
    let gspec = spec_file(&json)?;
    let (mounts_r, mounts_w) = std::io::pipe().context("creating the mounts pipe")?;
    let mut gofer_cmd = gofer_command(config)?;
    gofer_cmd
        .arg("gofer")
        .arg(format!("--bundle={}", spec.process.cwd))
        .arg(format!("--spec-fd={SPEC_FD}"))
        .arg(format!("--io-fds={IO_FD}"))
        .arg(format!("--mounts-fd={STATUS_FD}"));
    if config.get("gofer-binary").is_empty() {
        // Ours runs in our namespaces (it confines itself by openat2).
        gofer_cmd.args(["--setup-root=false", "--apply-caps=false", &id]);
    }
    // The gofer's stderr is kept to name the cause if it dies at startup.
    let gofer_err = crate::sandbox::error_capture("runsc-gofer-stderr")?;
    gofer_cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(gofer_err.try_clone()?));
    let gofer_fds = [
        (gspec, SPEC_FD),
        (gofer_sock.into(), IO_FD),
        (mounts_w.into(), STATUS_FD),
    ];
    pass_fds(&mut gofer_cmd, &gofer_fds);
    unblock_in_child(&mut gofer_cmd);
    let mut gofer = gofer_cmd.spawn().context("starting the gofer")?;
    drop(gofer_fds);
    if let Some(binary) = sentry_binary {
        // Another runsc's Sentry, launched and driven as upstream's CLI
        // drives its own; like upstream's `do`, with a memory overlay over
        // everything unless told otherwise.
        let mut extra_flags = Vec::new();
        if args.force_overlay && !config.is_set("overlay2") {
            extra_flags.push(crate::sentry_binary::do_overlay_flag(&binary)?);
        }
        let launch = crate::sentry_binary::Launch {
            config,
            binary: &binary,
            id: &id,
            bundle: &spec.process.cwd,
            spec: spec_file(&json)?,
            io: vec![sentry_sock.into()],
            mounts: mounts_r.into(),
            stdio: crate::sandbox::own_stdio()?,
            attached: true,
            extra_flags,
        };
        let started = match crate::sentry_binary::start(launch) {
            Ok(s) => s,
            Err(e) => {
                let why = gofer_failure(&mut gofer, &gofer_err);
                let _ = gofer.kill();
                let _ = gofer.wait();
                let e = match why {
                    Some(why) => anyhow::anyhow!("gofer: {why}; {e:#}"),
                    None => e,
                };
                return Err(e.context(START_PREFIX.trim_end_matches(": ")));
            }
        };
        return crate::sentry_binary::run_do(started, &id, signals, &mut gofer);
    }
    // The sandbox has no use for the mount list yet (no bind mounts);
    // read it so the gofer never blocks on a full pipe.
    let mut mounts = String::new();
    let _ = BufReader::new(mounts_r).read_to_string(&mut mounts);

    let (spec_r, mut spec_w) = std::io::pipe().context("creating the spec pipe")?;
    let (status_r, status_w) = std::io::pipe().context("creating the status pipe")?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(config.to_flags())
        .arg("boot")
        .arg(format!("--spec-fd={SPEC_FD}"))
        .arg(format!("--io-fds={IO_FD}"))
        .arg(format!("--status-fd={STATUS_FD}"))
        .arg("--stdio-fds=0,1,2")
        .arg("--attached")
        .arg(&id);
    let boot_fds = [
        (spec_r.into(), SPEC_FD),
        (sentry_sock.into(), IO_FD),
        (status_w.into(), STATUS_FD),
    ];
    pass_fds(&mut cmd, &boot_fds);
    unblock_in_child(&mut cmd);
    let child = cmd.spawn().context("starting the sandbox process");
    drop(boot_fds);
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = gofer.kill();
            let _ = gofer.wait();
            return Err(e);
        }
    };

    let sandbox_pid = child.id() as i32;
    std::thread::spawn(move || loop {
        let sig = wait_signal(&signals);
        if sig == libc::SIGTERM || sig == libc::SIGHUP {
            // SAFETY: kill takes plain integers.
            unsafe { libc::kill(sandbox_pid, sig) };
        }
    });

    // The spec goes through a pipe, written after the child exists so a
    // large environment cannot fill the pipe and block us.
    let wrote = spec_w.write_all(&json);
    drop(spec_w);

    let mut line = String::new();
    let _ = BufReader::new(status_r).read_line(&mut line);
    let result = match line.trim_end().strip_prefix("error: ") {
        Some(msg) => {
            let _ = child.wait();
            // A gofer that died first is the cause of what the sandbox saw
            // (a broken pipe): say what the gofer said.
            match gofer_failure(&mut gofer, &gofer_err) {
                Some(why) => Err(anyhow::anyhow!(
                    "{START_PREFIX}gofer: {why}; sandbox: {msg}"
                )),
                None => Err(anyhow::anyhow!("{START_PREFIX}{msg}")),
            }
        }
        None if line.trim_end() != "ok" => {
            let status = child.wait().context("waiting for the sandbox")?;
            wrote.context("sending the spec to the sandbox")?;
            Err(anyhow::anyhow!(
                "{START_PREFIX}the sandbox process ended before starting the container ({status})"
            ))
        }
        None => {
            let status = child.wait().context("waiting for the sandbox")?;
            Ok(match (status.code(), status.signal()) {
                (Some(code), _) => code,
                (None, Some(sig)) => {
                    eprintln!("runsc: the sandbox process was killed by signal {sig}");
                    128 + sig
                }
                (None, None) => 128,
            })
        }
    };
    // The gofer ends once the sandbox's connection is gone.
    let _ = gofer.wait();
    result
}
