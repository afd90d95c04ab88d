//! `runsc gofer`: the process that serves the container's files to the
//! Sentry over lisafs (protocol notes §2).
//!
//! It reads the OCI spec from `--spec-fd`, serves the spec's root
//! (`root.path`, relative to `--bundle`) on the first `--io-fds` socket and
//! each bind mount's source on the following ones (in spec order), writes
//! the mount list as JSON to `--mounts-fd` (`[]` when there are none), and
//! exits 0 once every connection has been closed by its client. With
//! `--directfs` (the default) each Mount reply donates the served
//! directory's host FD, and the Sentry opens files beneath it itself.
//!
//! Not done yet (issue "Gofer"): the `--setup-root` pivot into an empty
//! tmpfs root and chroot, `--apply-caps` capability dropping, the seccomp
//! allow-list, rootless (`--sync-userns-fd`) and `--sync-chroot-fd`
//! synchronisation. Confinement therefore
//! rests on the file server's own `openat2(RESOLVE_BENEATH|...)` walks.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use gofer::{Config as FsConfig, HostFs};

use crate::cli::{Config, GoferArgs};
use crate::fds::take_fd;

/// What the gofer needs from the spec; read leniently (any other field,
/// or a spec other runtimes wrote, is fine).
struct GoferSpec {
    root: PathBuf,
    readonly: bool,
    /// The spec's `mounts`, as given.
    mounts: Vec<serde_json::Value>,
}

fn read_spec(fd: OwnedFd, bundle: &Path) -> anyhow::Result<GoferSpec> {
    let mut text = String::new();
    File::from(fd)
        .read_to_string(&mut text)
        .context("reading the spec from --spec-fd")?;
    let v: serde_json::Value =
        serde_json::from_str(&text).context("the spec on --spec-fd is not JSON")?;
    let Some(path) = v.pointer("/root/path").and_then(|p| p.as_str()) else {
        bail!("the spec has no root.path: set it to the container's root directory");
    };
    let root = if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        bundle.join(path)
    };
    let readonly = v
        .pointer("/root/readonly")
        .and_then(|r| r.as_bool())
        .unwrap_or(false);
    let mounts = v
        .get("mounts")
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default();
    Ok(GoferSpec {
        root,
        readonly,
        mounts,
    })
}

/// Whether a spec mount is a bind mount (served by the gofer).
fn is_bind(m: &serde_json::Value) -> bool {
    let typ = m.get("type").and_then(|t| t.as_str()).unwrap_or("");
    let opts = m
        .get("options")
        .and_then(|o| o.as_array())
        .map(|o| {
            o.iter()
                .any(|x| matches!(x.as_str(), Some("bind" | "rbind")))
        })
        .unwrap_or(false);
    typ == "bind" || opts
}

fn start(config: &Config, args: &GoferArgs) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let bundle = if args.bundle.is_empty() {
        std::env::current_dir().context("finding the current directory")?
    } else {
        PathBuf::from(&args.bundle)
    };
    let spec = read_spec(take_fd(args.spec_fd, "spec-fd")?, &bundle)?;
    if args.io_fds.is_empty() {
        bail!("gofer needs at least one --io-fds (the root's lisafs socket)");
    }
    if args.setup_root || args.apply_caps {
        tracing::warn!(
            "gofer: --setup-root and --apply-caps are not implemented yet; \
             serving without a private root or dropped capabilities"
        );
    }
    // The mount list goes to the Sentry as upstream's gofer sends it.
    if args.mounts_fd >= 0 {
        let mut f = File::from(take_fd(args.mounts_fd, "mounts-fd")?);
        let json = serde_json::to_string(&spec.mounts).context("encoding the mount list")?;
        f.write_all(json.as_bytes())
            .context("writing the mount list to --mounts-fd")?;
    }
    // The Sentry has applied the application's umask; the gofer creates
    // files with exactly the modes it is asked for.
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(0) };
    // The terminal's interrupts are the container's business: the gofer
    // serves until the sandbox closes its connection.
    // SAFETY: setting SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }

    let mut sources = vec![(spec.root.clone(), spec.readonly)];
    for m in spec.mounts.iter().filter(|m| is_bind(m)) {
        let src = m.get("source").and_then(|s| s.as_str()).unwrap_or("");
        let ro = m
            .get("options")
            .and_then(|o| o.as_array())
            .is_some_and(|o| o.iter().any(|x| x.as_str() == Some("ro")));
        sources.push((PathBuf::from(src), ro));
    }
    if args.io_fds.len() > sources.len() {
        bail!(
            "{} --io-fds given but the spec has only the root and {} bind mount(s)",
            args.io_fds.len(),
            sources.len() - 1
        );
    }
    let host_uds = matches!(config.get("host-uds"), "open" | "all");
    let host_fifo = config.get("host-fifo") == "open";
    let directfs = config.get_bool("directfs");
    let mut threads = Vec::new();
    for (&fd, (path, readonly)) in args.io_fds.iter().zip(sources) {
        let sock = UnixStream::from(take_fd(fd, "io-fds")?);
        let fs = HostFs::new(
            &path,
            FsConfig {
                readonly,
                host_fifo,
                host_uds,
                directfs,
            },
        )
        .with_context(|| format!("opening {} to serve it", path.display()))?;
        threads.push(std::thread::spawn(move || {
            if let Err(e) = gofer_protocol::serve(Arc::new(fs), sock) {
                tracing::warn!("gofer connection for {}: {e}", path.display());
            }
        }));
    }
    Ok(threads)
}

/// Runs the gofer; returns the exit code for the process.
pub fn run(config: &Config, args: GoferArgs) -> i32 {
    match start(config, &args) {
        Ok(threads) => {
            for t in threads {
                let _ = t.join();
            }
            0
        }
        Err(e) => {
            eprintln!("runsc gofer: {e:#}");
            128
        }
    }
}
