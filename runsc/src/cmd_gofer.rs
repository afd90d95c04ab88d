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
//! Confinement, in upstream's order (§2.2): every served directory and
//! `/proc/self/fd` are opened first; then the gofer leaves the host's tree
//! (below) and installs its seccomp allow-list (`gofer::filter`, one list
//! for directfs on and one for off) before serving. From then on it
//! reaches files only through the FDs it holds, one `openat2(RESOLVE_BENEATH
//! | NO_SYMLINKS | NO_MAGICLINKS)` step at a time.
//!
//! Leaving the host's tree: upstream chroots into the container root
//! (after `--setup-root` has pivoted into a tmpfs holding it, or straight
//! into `root.path` with `--TESTONLY-unsafe-nonroot`). With `--setup-root`
//! we go further, because our server never opens by path: the gofer makes
//! its own mount namespace (upstream relies on the CLI's `CLONE_NEWNS`;
//! doing it here is harmless when that exists too), turns every mount into
//! a slave so nothing propagates back, and pivots into an empty read-only
//! tmpfs, so a compromised gofer finds nothing by path. Without
//! `--setup-root`, or with `--TESTONLY-unsafe-nonroot`, it chroots into
//! `root.path` as upstream does.
//!
//! Not done yet (issue "Gofer"): `--apply-caps` capability dropping and
//! rootless (`--sync-userns-fd`) operation.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
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
    if args.apply_caps {
        tracing::warn!("gofer: --apply-caps is not implemented yet; capabilities are kept");
    }
    // The CLI finishes its setup in our mount namespace, then closes this.
    if args.sync_chroot_fd >= 0 {
        let mut f = File::from(take_fd(args.sync_chroot_fd, "sync-chroot-fd")?);
        let mut sink = Vec::new();
        f.read_to_end(&mut sink)
            .context("waiting for EOF on --sync-chroot-fd")?;
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
    // A core dump would be written into the gofer's working directory,
    // the container's root after the chroot below: never dump.
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass, which outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) } != 0 {
        bail!(
            "setting RLIMIT_CORE to 0: {}",
            std::io::Error::last_os_error()
        );
    }
    // The terminal's interrupts are the container's business: the gofer
    // serves until the sandbox closes its connection.
    // SAFETY: setting SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }

    let mut sources = vec![(spec.root.clone(), spec.readonly)];
    let mounts = serde_json::json!({ "mounts": spec.mounts });
    for b in crate::spec::binds(&mounts) {
        sources.push((PathBuf::from(b.source), b.read_only));
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
    // Everything reached by path is opened now, before leaving the tree.
    let mut served = Vec::new();
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
        served.push((fs, sock, path));
    }
    // std reads /proc and /sys to size this; the filter allows neither.
    let _ = gofer_protocol::channel::max_channels();
    if args.setup_root && !config.get_bool("TESTONLY-unsafe-nonroot") {
        isolate_root().context("--setup-root: making the gofer's empty root")?;
    } else {
        chroot(&spec.root)?;
    }
    gofer::filter::install(gofer::filter::Options { directfs })?;

    let mut threads = Vec::new();
    for (fs, sock, path) in served {
        threads.push(std::thread::spawn(move || {
            if let Err(e) = gofer_protocol::serve(Arc::new(fs), sock) {
                tracing::warn!("gofer connection for {}: {e}", path.display());
            }
        }));
    }
    Ok(threads)
}

fn cstring(p: &Path) -> anyhow::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", p.display()))
}

fn check(what: &str, rc: libc::c_int) -> anyhow::Result<()> {
    if rc != 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Upstream's root change without `--setup-root`: chroot into the root
/// being served, then make `/` the working directory.
fn chroot(root: &Path) -> anyhow::Result<()> {
    let path = cstring(root)?;
    // SAFETY: chroot and chdir read the NUL-terminated paths we pass.
    unsafe {
        check(
            &format!("chroot to {}", root.display()),
            libc::chroot(path.as_ptr()),
        )?;
        check("chdir to /", libc::chdir(c"/".as_ptr()))
    }
}

/// `--setup-root`: a private mount namespace whose root is an empty,
/// read-only tmpfs (see the module comment). The tmpfs is built on /proc,
/// a directory every Linux system has (as upstream does), and becomes the
/// root with `pivot_root(".", ".")`, after which the old root, stacked
/// on top, is detached.
fn isolate_root() -> anyhow::Result<()> {
    let ro = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: each call reads only the NUL-terminated strings passed (or
    // takes none); they change this process's mount namespace, root and
    // working directory, which nothing else in the process depends on by
    // now (every served directory is already open).
    unsafe {
        check(
            "unshare(CLONE_NEWNS) (needs CAP_SYS_ADMIN; run as root, or pass --setup-root=false)",
            libc::unshare(libc::CLONE_NEWNS),
        )?;
        check(
            "making every mount a slave",
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            ),
        )?;
        check(
            "mounting a tmpfs on /proc",
            libc::mount(
                c"runsc-gofer-root".as_ptr(),
                c"/proc".as_ptr(),
                c"tmpfs".as_ptr(),
                ro,
                std::ptr::null(),
            ),
        )?;
        check("chdir to /proc", libc::chdir(c"/proc".as_ptr()))?;
        check(
            "pivot_root",
            libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int,
        )?;
        check(
            "detaching the old root",
            libc::umount2(c".".as_ptr(), libc::MNT_DETACH),
        )?;
        check("chdir to /", libc::chdir(c"/".as_ptr()))
    }
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
