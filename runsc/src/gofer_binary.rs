//! `--gofer-binary=PATH`: run another runsc (Debian's Go one, say) as the
//! gofer, launched the way upstream's CLI launches its own
//! (`Container.createGoferProcess`, protocol notes §2.1): argv[0]
//! `runsc-gofer`, the global flags, `gofer` and its FD flags, in fresh
//! mount, IPC, UTS and network namespaces so that its `--setup-root`
//! (bind-mounting the root and pivoting into a private tmpfs) touches
//! nothing outside, with its capabilities applied by itself
//! (`--apply-caps`, upstream's default).
//!
//! No container ID follows the gofer's flags: the 2022 CLI passes none,
//! and its gofer re-executes itself with flags appended to its argv, which
//! a trailing positional argument would hide from Go's flag parser.
//!
//! Global flags: only those whose value differs from this runsc's default
//! and that the binary defines (asked once with `PATH flags`): its
//! defaults and flag set are its own (the 2022 release has no
//! `--directfs`, and its `--overlay2` values differ).
//!
//! Not done as upstream: the PID namespace (upstream starts the gofer as
//! PID 1 of a new one), user namespaces, cgroups and `--sync-chroot-fd`.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::Context as _;

use crate::cli::Config;

/// The flags `binary` defines, from its `flags` command (Go's flag
/// package lists each as `  -name ...`).
pub fn defined_flags(binary: &str) -> anyhow::Result<Vec<String>> {
    let out = Command::new(binary)
        .arg("flags")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("asking {binary} for its flags"))?;
    // Go's flag package prints the listing to stderr.
    let text = [out.stdout, out.stderr].concat();
    let names: Vec<String> = String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| l.strip_prefix("  -"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        anyhow::bail!("{binary} listed no flags with `{binary} flags`");
    }
    Ok(names)
}

/// The global flags to give `binary`: ours that differ from our defaults
/// and that it defines.
pub fn global_flags(binary: &str, config: &Config) -> anyhow::Result<Vec<String>> {
    let known = defined_flags(binary)?;
    let mut flags = Vec::new();
    for (name, flag) in config.changed_flags() {
        if known.iter().any(|k| k == name) {
            flags.push(flag);
        } else {
            tracing::debug!("{binary} does not define --{name}; not passed");
        }
    }
    Ok(flags)
}

/// The command for `binary` up to (not including) the `gofer` subcommand:
/// program, argv[0], global flags and namespaces.
pub fn command(binary: &str, config: &Config) -> anyhow::Result<Command> {
    let mut cmd = Command::new(binary);
    cmd.arg0("runsc-gofer").args(global_flags(binary, config)?);
    // SAFETY: runs in the child between fork and exec; prctl and unshare
    // are async-signal-safe and touch no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            // `runsc do` is attached: the gofer dies with it, as upstream's.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let flags =
                libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWNET;
            if libc::unshare(flags) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}
