//! `runsc do PROGRAM ARGS...`: run a host program in a fresh sandbox whose
//! root is the host's (read-only), with this terminal's stdio, and exit
//! with its status (upstream's `runsc/cmd/do.go`).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;

use anyhow::Context as _;

use crate::cli::{Config, DoArgs};
use crate::spec::{Process, Root, Spec, User};

/// How upstream prefixes errors from starting the container.
const START_PREFIX: &str = "starting container: starting root container: starting sandbox: ";

/// Descriptor numbers the sandbox process gets, after stdio.
const SPEC_FD: i32 = 3;
const ROOT_FD: i32 = 4;
const STATUS_FD: i32 = 5;

pub fn run(config: &Config, args: DoArgs) -> i32 {
    match run_inner(config, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            128
        }
    }
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
            user: User { uid, gid },
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
    })
}

fn run_inner(config: &Config, args: DoArgs) -> anyhow::Result<i32> {
    let spec = build_spec(&args)?;
    let root = File::open(&spec.root.path)
        .with_context(|| format!("opening the root {:?}", spec.root.path))?;
    let (spec_r, mut spec_w) = std::io::pipe().context("creating the spec pipe")?;
    let (status_r, status_w) = std::io::pipe().context("creating the status pipe")?;
    let id = format!("runsc-{:06}", std::process::id() % 1_000_000);

    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(config.to_flags())
        .arg("boot")
        .arg(format!("--spec-fd={SPEC_FD}"))
        .arg(format!("--io-fds={ROOT_FD}"))
        .arg(format!("--status-fd={STATUS_FD}"))
        .arg("--stdio-fds=0,1,2")
        .arg("--attached")
        .arg(&id);
    let passed: [(OwnedFd, i32); 3] = [
        (spec_r.into(), SPEC_FD),
        (root.into(), ROOT_FD),
        (status_w.into(), STATUS_FD),
    ];
    let raw: Vec<(i32, i32)> = passed
        .iter()
        .map(|(fd, to)| (fd.as_raw_fd(), *to))
        .collect();
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls dup2, which is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // Move every source out of the target range first, so no dup2
            // overwrites a source that is still to be moved.
            let mut staged = [(0, 0); 3];
            for (i, &(from, to)) in raw.iter().enumerate() {
                let tmp = libc::fcntl(from, libc::F_DUPFD, 100);
                if tmp < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                staged[i] = (tmp, to);
            }
            for (tmp, to) in staged {
                if libc::dup2(tmp, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the sandbox process")?;
    drop(passed);

    // The spec goes through a pipe, written after the child exists so a
    // large environment cannot fill the pipe and block us.
    let json = serde_json::to_vec(&spec).context("encoding the spec")?;
    let wrote = spec_w.write_all(&json);
    drop(spec_w);

    let mut line = String::new();
    let _ = BufReader::new(status_r).read_line(&mut line);
    match line.trim_end().strip_prefix("error: ") {
        Some(msg) => {
            let _ = child.wait();
            anyhow::bail!("{START_PREFIX}{msg}");
        }
        None if line.trim_end() != "ok" => {
            let status = child.wait().context("waiting for the sandbox")?;
            wrote.context("sending the spec to the sandbox")?;
            anyhow::bail!(
                "{START_PREFIX}the sandbox process ended before starting the container ({status})"
            );
        }
        None => {}
    }
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
