//! `runsc boot`: the sandbox process. It becomes the Sentry.
//!
//! Two ways to run:
//! - With `--controller-fd` (the OCI commands, upstream's protocol): load
//!   the kernel and mount the root, optionally move into an empty root
//!   (`--setup-root`), serve urpc on the controller socket, write one byte
//!   to `--start-sync-fd`, and wait for `containerManager.StartRoot` to
//!   create the container's init. When the init exits, the sandbox exits
//!   with its status. A failure before the sync byte is printed on stderr
//!   (the launcher shows it to the user) and exits 128.
//! - With `--status-fd` (ours, for `runsc do`): run the spec's process at
//!   once and report one line, `ok` or `error: <message>`, then exit with
//!   the workload's status (128 + signal when killed).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use gofer_protocol::Client;
use platform::Platform;
use platform_systrap::{PtracePlatform, SystrapPlatform};
use sentry::{Kernel, KernelConfig, ProcessSpec, Strace, Task};

use crate::cli::{BootArgs, Config};
use crate::fds::{block_signals, take_fd, wait_signal, FORWARDED_SIGNALS};
use crate::spec::Spec;

fn platform_for(config: &Config) -> anyhow::Result<Arc<dyn Platform>> {
    match config.get("platform") {
        "systrap" => Ok(Arc::new(
            SystrapPlatform::with_patching(!config.get_bool("systrap-disable-syscall-patching"))
                .context("starting the systrap platform")?,
        )),
        "ptrace" => Ok(Arc::new(
            PtracePlatform::new().context("starting the ptrace platform")?,
        )),
        other => bail!("platform {other:?} is not supported by this runsc"),
    }
}

/// Run the sandbox; returns the exit code for the process.
pub fn run(config: &Config, args: BootArgs) -> i32 {
    if args.attached {
        die_with_parent();
    }
    if args.controller_fd >= 0 {
        return run_controlled(config, &args);
    }
    // Before any thread starts, so every Sentry thread blocks them and the
    // forwarder below is the only one that takes them.
    let forwarded = block_signals(&FORWARDED_SIGNALS);
    let mut status = match take_fd(args.status_fd, "status-fd") {
        Ok(fd) => File::from(fd),
        Err(e) => {
            eprintln!("{e:#}");
            return 128;
        }
    };
    let (task, kernel, _gofer) = match start(config, &args) {
        Ok(started) => started,
        Err(e) => {
            tracing::error!("starting the sandbox: {e:#}");
            let _ = writeln!(status, "error: {e:#}");
            return 128;
        }
    };
    if let Err(e) = install_filter(config) {
        tracing::error!("starting the sandbox: {e:#}");
        let _ = writeln!(status, "error: {e:#}");
        return 128;
    }
    if writeln!(status, "ok").is_err() {
        // The launcher is gone; nobody is waiting for this workload.
        return 128;
    }
    drop(status);
    std::thread::spawn(move || loop {
        let sig = wait_signal(&forwarded);
        tracing::debug!("forwarding signal {sig} to the container's init");
        kernel.send_signal(1, sig);
    });
    let exit = task.run();
    tracing::info!("workload exited: {exit:?}");
    exit.code()
}

/// `--attached`: the sandbox dies when the process that started it does
/// (a killed `runsc do` must not leave the sandbox running).
fn die_with_parent() {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    // The parent may have gone before the call: then init adopted us.
    // SAFETY: getppid takes no arguments.
    if unsafe { libc::getppid() } == 1 {
        std::process::exit(128 + libc::SIGKILL);
    }
}

/// The Sentry's seccomp allow-list, on every thread, before any
/// application code runs.
fn install_filter(config: &Config) -> anyhow::Result<()> {
    crate::sentry_filter::install(
        config.get("network") == "host",
        crate::sentry_filter::Mode::from_env(),
    )?;
    Ok(())
}

/// Let the Sentry hold as many host descriptors as its hard limit allows:
/// each cached file of the host layer holds one.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one struct rlimit into `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur < lim.rlim_max
    {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit only reads `lim`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            tracing::warn!("raising RLIMIT_NOFILE: {}", std::io::Error::last_os_error());
        }
    }
}

/// How the root is mounted from the gofer: read-only (the overlay's lower
/// layer), with the `--directfs` and `--file-access` flags.
fn root_mount_options(config: &Config) -> vfs::goferfs::Options {
    vfs::goferfs::Options {
        read_only: true,
        file_access: vfs::goferfs::FileAccess::parse(config.get("file-access")).unwrap_or_default(),
        directfs: config.get_bool("directfs"),
    }
}

/// The first process, ready to run, and the gofer connection it mounted
/// its root through (kept open for the sandbox's life).
fn start(config: &Config, args: &BootArgs) -> anyhow::Result<(Task, Arc<Kernel>, Arc<Client>)> {
    let loaded = load(config, args)?;
    let process = ProcessSpec {
        argv: loaded.spec.process.args,
        envv: loaded.spec.process.env,
        cwd: loaded.spec.process.cwd,
        uid: loaded.spec.process.user.uid,
        gid: loaded.spec.process.user.gid,
        stdio: loaded.stdio,
    };
    // The start error's own text is what upstream prints; no extra context.
    Ok((
        Task::start(loaded.kernel.clone(), process)?,
        loaded.kernel,
        loaded.gofer,
    ))
}

/// A kernel with the container's root mounted, and what the container's
/// first process needs.
struct Loaded {
    kernel: Arc<Kernel>,
    spec: Spec,
    stdio: Vec<std::os::fd::OwnedFd>,
    gofer: Arc<Client>,
}

fn load(config: &Config, args: &BootArgs) -> anyhow::Result<Loaded> {
    let mut spec_json = String::new();
    File::from(take_fd(args.spec_fd, "spec-fd")?)
        .read_to_string(&mut spec_json)
        .context("reading the spec")?;
    let spec: Spec = serde_json::from_str(&spec_json).context("parsing the spec")?;
    raise_nofile();
    let json: serde_json::Value = serde_json::from_str(&spec_json).context("parsing the spec")?;
    let binds = crate::spec::binds(&json);
    let Some((&root_fd, bind_fds)) = args.io_fds.split_first() else {
        bail!("boot needs --io-fds: the root's lisafs connection, then one per bind mount");
    };
    if bind_fds.len() != binds.len() {
        bail!(
            "boot got {} --io-fds for the spec's {} bind mount(s) (and the root)",
            args.io_fds.len(),
            binds.len()
        );
    }
    // The root comes from the gofer: with directfs its Mount reply donates
    // the root directory's FD, beneath which the Sentry opens files itself;
    // without, every file operation is a lisafs call.
    let gofer = Arc::new(Client::new(UnixStream::from(take_fd(root_fd, "io-fds")?)));
    let root = vfs::goferfs::mount(gofer.clone(), root_mount_options(config))?;
    // Each bind mount is served the same way, on its own connection.
    let mut bind_mounts = Vec::new();
    for (&fd, bind) in bind_fds.iter().zip(binds) {
        let client = Arc::new(Client::new(UnixStream::from(take_fd(fd, "io-fds")?)));
        // Mounts other than the root may be shared with the host or other
        // containers: upstream's --file-access-mounts (default shared).
        let opts = vfs::goferfs::Options {
            read_only: bind.read_only,
            file_access: vfs::goferfs::FileAccess::parse(config.get("file-access-mounts"))
                .unwrap_or_default(),
            ..root_mount_options(config)
        };
        let fs = vfs::goferfs::mount(client, opts)
            .with_context(|| format!("mounting {} from the gofer", bind.destination))?;
        bind_mounts.push(sentry::BindMount {
            destination: bind.destination,
            fs,
            read_only: bind.read_only,
        });
    }
    let stdio = args
        .stdio_fds
        .iter()
        .map(|&fd| take_fd(fd, "stdio-fds"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if stdio.len() != 3 {
        bail!("boot needs three --stdio-fds, got {}", stdio.len());
    }
    let strace = Strace {
        enabled: config.get_bool("strace"),
        only: config
            .get("strace-syscalls")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        log_size: usize::try_from(config.get_int("strace-log-size")).unwrap_or(usize::MAX),
    };
    let platform = platform_for(config)?;
    // The platform's template stub, from which every later address space
    // is forked, must exist before the Sentry's seccomp filter does, or
    // the stubs would inherit it.
    drop(
        platform
            .new_address_space()
            .context("starting the platform's first stub")?,
    );
    let kernel = Kernel::new(KernelConfig {
        platform,
        strace,
        root,
        binds: bind_mounts,
        hostname: spec.hostname.clone(),
        host_network: config.get("network") == "host",
    })
    .context("creating the kernel")?;
    Ok(Loaded {
        kernel,
        spec,
        stdio,
        gofer,
    })
}

/// The OCI path: serve the control socket until the container is over.
fn run_controlled(config: &Config, args: &BootArgs) -> i32 {
    let forwarded = block_signals(&FORWARDED_SIGNALS);
    let fail = |e: anyhow::Error| {
        tracing::error!("starting the sandbox: {e:#}");
        eprintln!("{e:#}");
        128
    };
    let sync = match take_fd(args.start_sync_fd, "start-sync-fd") {
        Ok(fd) => File::from(fd),
        Err(e) => return fail(e),
    };
    let controller = match take_fd(args.controller_fd, "controller-fd") {
        Ok(fd) => fd,
        Err(e) => return fail(e),
    };
    let loaded = match load(config, args) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    if args.setup_root {
        let confined = crate::isolate::enter_empty_root(config)
            .and_then(|()| crate::isolate::drop_capabilities(crate::isolate::SENTRY_CAPS));
        if let Err(e) = confined {
            return fail(e);
        }
    }
    if let Err(e) = install_filter(config) {
        return fail(e);
    }
    let listener = match crate::isolate::listen(controller) {
        Ok(l) => l,
        Err(e) => return fail(e.context("listening on the control socket")),
    };
    let ctl = Arc::new(crate::control::Controller::new(
        loaded.kernel.clone(),
        args.id.clone(),
        loaded.spec,
        loaded.stdio,
    ));
    let server = urpc::Server::new(Arc::new(crate::control::Receivers(ctl.clone())));
    {
        let server = server.clone();
        std::thread::spawn(move || server.serve(listener));
    }
    {
        // Signals sent to the sandbox process go to the container's init.
        let (ctl, kernel) = (ctl.clone(), loaded.kernel.clone());
        std::thread::spawn(move || loop {
            let sig = wait_signal(&forwarded);
            if let Some(pid) = ctl.init_pid() {
                kernel.send_signal(pid, sig);
            }
        });
    }
    let mut sync = sync;
    if sync.write_all(&[0]).is_err() {
        return 128;
    }
    drop(sync);
    let status = ctl.wait_end();
    tracing::info!("container over: {status:?}");
    // Whatever is left dies with the container's init (a PID namespace's
    // init takes its namespace with it); waiters get their answers first.
    loaded.kernel.kill_all(std::time::Duration::from_secs(1));
    server.wait_idle(std::time::Duration::from_secs(2));
    drop(loaded.gofer);
    status.code()
}
