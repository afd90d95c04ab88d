//! The OCI lifecycle commands (`create`, `start`, `run`, `state`, `kill`,
//! `delete`, `list`, `wait`, `exec`, `ps`, `events`, `pause`, `resume`,
//! `spec`), as upstream's `runsc/cmd` runs them: state in `--root` (see
//! [`crate::state`]), the sandbox reached only through its control socket
//! (urpc, [`crate::control`]), failures printed as upstream prints them
//! and exit code 128.
//!
//! Where upstream's runsc departs from runc and the OCI spec, we follow
//! runc: `kill` on a created container ends it; a duplicate `create`
//! fails without touching the existing container.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::{Config, OciArgs};
use crate::control::{self, ExecArgs, SignalArgs, WaitPidArgs};
use crate::isolate;
use crate::sandbox;
use crate::spec::{self, Spec};
use crate::state::{self, Container, FullId, Lock, StateDir};

/// A wrong number of arguments: print the usage, exit 128.
#[derive(Debug)]
struct Usage;

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("usage")
    }
}

impl std::error::Error for Usage {}

pub fn run(config: &Config, a: OciArgs) -> i32 {
    crate::logging::init(config, &a.name);
    let r = match a.name.as_str() {
        "create" => create(config, &a),
        "start" => start(config, &a),
        "run" => run_cmd(config, &a),
        "state" => state_cmd(config, &a),
        "kill" => kill(config, &a),
        "delete" => delete(config, &a),
        "list" => list(config, &a),
        "wait" => wait(config, &a),
        "exec" => exec(config, &a),
        "ps" => ps(config, &a),
        "events" => events(config, &a),
        "pause" | "resume" => pause_resume(config, &a),
        "spec" => spec_cmd(&a),
        other => Err(anyhow!("{other} is not an OCI command")),
    };
    match r {
        Ok(code) => code,
        Err(e) if e.is::<Usage>() => {
            eprint!("{}", a.usage());
            128
        }
        Err(e) => fatal(config, &format!("{e:#}")),
    }
}

/// Report a failure as upstream's `util.Fatalf` does: on stderr, and as a
/// JSON line in the `--log` file (containerd reads the last error there).
fn fatal(config: &Config, msg: &str) -> i32 {
    eprintln!("{msg}");
    let log = config.get("log");
    if !log.is_empty() {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let line = if config.get("log-format").starts_with("json") {
                json!({"msg": msg, "level": "error", "time": state::now_rfc3339()}).to_string()
            } else {
                format!("{} FATAL ERROR: {msg}", state::now_rfc3339())
            };
            let _ = writeln!(f, "{line}");
        }
    }
    128
}

fn one_id(a: &OciArgs) -> anyhow::Result<&str> {
    match a.args.as_slice() {
        [id] => Ok(id),
        _ => Err(Usage.into()),
    }
}

/// A container loaded under its lock.
struct Loaded {
    dir: StateDir,
    c: Container,
    _lock: Lock,
}

fn load(config: &Config, partial: &str) -> anyhow::Result<Loaded> {
    let dir = StateDir::open(config.get("root"))?;
    let Some(id) = dir.find(partial).context("loading container")? else {
        bail!("loading container: file does not exist");
    };
    let lock = dir.lock(&id)?;
    let c = dir.read(&id).context("loading container")?;
    Ok(Loaded {
        dir,
        c,
        _lock: lock,
    })
}

/// A connection to the container's sandbox.
fn connect(c: &Container, dir: &StateDir) -> anyhow::Result<urpc::Client> {
    let mut path = PathBuf::from(&c.sandbox.control_socket_path);
    if !path.exists() {
        path = dir.control_socket(&c.sandbox.id);
    }
    let sock = isolate::connect_control(&path)
        .with_context(|| format!("connecting to sandbox {:?}", c.sandbox.id))?;
    Ok(urpc::Client::new(sock))
}

fn call(
    c: &Container,
    dir: &StateDir,
    method: &str,
    arg: &impl Serialize,
    files: &[BorrowedFd<'_>],
) -> anyhow::Result<Value> {
    let mut client = connect(c, dir)?;
    let (v, _) = client.call(method, arg, files)?;
    Ok(v)
}

fn require(c: &Container, action: &str, ok: &[&str]) -> anyhow::Result<()> {
    let status = c.live_status();
    if ok.contains(&status) {
        Ok(())
    } else {
        bail!("cannot {action} container {:?} in state {status}", c.id)
    }
}

fn write_pid_file(path: &str, pid: i32) -> anyhow::Result<()> {
    if path.is_empty() {
        return Ok(());
    }
    std::fs::write(path, pid.to_string()).with_context(|| format!("writing pid file {path:?}"))
}

fn abs_bundle(flag: &str) -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("finding the current directory")?;
    Ok(if flag.is_empty() { cwd } else { cwd.join(flag) })
}

/// The stdio a new process gets: a fresh pty whose master goes to
/// `console_socket` when there is one and a terminal is asked for, else
/// ours.
fn process_stdio(terminal: bool, console_socket: &str) -> anyhow::Result<([OwnedFd; 3], bool)> {
    if terminal && !console_socket.is_empty() {
        let (master, slave) = isolate::open_pty()?;
        isolate::send_console(console_socket, &master)?;
        Ok((sandbox::triple(slave)?, true))
    } else {
        Ok((sandbox::own_stdio()?, false))
    }
}

/// `create`, and the first half of `run`.
fn create_container(
    config: &Config,
    a: &OciArgs,
    attached: bool,
) -> anyhow::Result<(Loaded, sandbox::Started)> {
    config.check_supported()?;
    let id = one_id(a)?;
    state::validate_id(id).context("creating container")?;
    let bundle_dir = abs_bundle(a.string("bundle"))?;
    let bundle = spec::read_bundle(&bundle_dir).context("reading spec")?;
    bundle.spec.validate().context("reading spec")?;
    crate::hooks::check(&bundle.json).context("reading spec")?;
    let dir = StateDir::open(config.get("root"))?;
    let fid = FullId {
        container: id.to_string(),
        sandbox: id.to_string(),
    };
    let existed = dir.list()?.iter().any(|i| i.container == id);
    let lock = dir.lock(&fid)?;
    if existed || dir.state_path(&fid).exists() {
        // The existing container's files stay as they are.
        bail!("creating container: container already exists");
    }
    let fail = |dir: &StateDir, e: anyhow::Error| {
        dir.remove(&fid);
        e
    };
    let console = a.string("console-socket");
    let (stdio, _) =
        process_stdio(bundle.spec.process.terminal, console).map_err(|e| fail(&dir, e))?;
    // What the gofer and the sandbox are given: the spec less the bind
    // mounts they cannot serve yet (the state keeps the spec as written).
    let mut served = bundle.json.clone();
    crate::spec::keep_directory_binds(&mut served);
    let spec_json = serde_json::to_vec(&served)?;
    let control_path = dir.control_socket(id);
    // The groups exist, with their limits, before the gofer and the
    // sandbox start in them.
    let mut cgroup = json!({"cgroupunknown": null});
    let mut groups = None;
    if isolate::isolating(config) && !config.get_bool("ignore-cgroups") {
        let installed = crate::cgroup::name_for(&bundle.json, id)
            .and_then(|name| crate::cgroup::install(&name, &bundle.json, &[]));
        match installed {
            Ok(cg) => {
                cgroup = cg.to_json();
                groups = Some(cg);
            }
            Err(e) => {
                return Err(fail(
                    &dir,
                    e.context("creating container: setting up cgroups"),
                ))
            }
        }
    }
    let cgroup_procs = match groups.as_ref().map(crate::cgroup::Cgroup::procs_files) {
        None => Vec::new(),
        Some(Ok(files)) => files,
        Some(Err(e)) => {
            groups.iter().for_each(crate::cgroup::Cgroup::remove);
            return Err(fail(
                &dir,
                e.context("creating container: setting up cgroups"),
            ));
        }
    };
    let started = sandbox::start(sandbox::Request {
        config,
        id,
        bundle: &bundle_dir,
        spec_json: &spec_json,
        stdio,
        attached,
        control_socket: &control_path,
        cgroup_procs,
    })
    .map_err(|e| {
        groups.iter().for_each(crate::cgroup::Cgroup::remove);
        fail(&dir, e.context("creating container: cannot create sandbox"))
    })?;
    let sandbox_pid = started.sandbox.pid;
    let gofer_pid = started.gofer.id() as i32;
    let c = Container {
        id: id.to_string(),
        spec: bundle.json,
        bundle_dir: bundle_dir.to_string_lossy().into_owned(),
        created_at: state::now_rfc3339(),
        owner: std::env::var("USER").unwrap_or_default(),
        console_socket: console.to_string(),
        status: state::CREATED.into(),
        gofer_pid,
        sandbox: state::Sandbox {
            id: id.to_string(),
            pid: sandbox_pid,
            uid: 0,
            gid: 0,
            cgroup,
            original_oom_score_adj: 0,
            control_socket_path: control_path.to_string_lossy().into_owned(),
            host_start_ticks: state::proc_start(sandbox_pid).map_or(0, |s| s.0),
        },
        compat_cgroup: json!({"cgroupunknown": null}),
        saver: state::Saver {
            root_dir: dir.root.to_string_lossy().into_owned(),
            id: state::SaverId {
                sandbox_id: id.to_string(),
                container_id: id.to_string(),
            },
        },
        gofer_start_ticks: state::proc_start(gofer_pid).map_or(0, |s| s.0),
    };
    dir.save(&c)?;
    let state = serde_json::to_value(oci_state(&c))?;
    for kind in ["prestart", "createRuntime"] {
        if let Err(e) = crate::hooks::run(&c.spec, kind, &state) {
            destroy(&dir, &c);
            return Err(e.context("creating container"));
        }
    }
    write_pid_file(a.string("pid-file"), sandbox_pid)?;
    Ok((
        Loaded {
            dir,
            c,
            _lock: lock,
        },
        started,
    ))
}

fn create(config: &Config, a: &OciArgs) -> anyhow::Result<i32> {
    create_container(config, a, false)?;
    Ok(0)
}

fn start_container(l: &mut Loaded) -> anyhow::Result<()> {
    require(&l.c, "start", &[state::CREATED])?;
    call(&l.c, &l.dir, control::START_ROOT, &l.c.id, &[]).context("starting container")?;
    l.c.status = state::RUNNING.into();
    l.dir.save(&l.c)?;
    let state = serde_json::to_value(oci_state(&l.c))?;
    crate::hooks::run_logged(&l.c.spec, "poststart", &state);
    Ok(())
}

fn start(config: &Config, a: &OciArgs) -> anyhow::Result<i32> {
    let mut l = load(config, one_id(a)?)?;
    start_container(&mut l)?;
    Ok(0)
}

fn run_cmd(config: &Config, a: &OciArgs) -> anyhow::Result<i32> {
    let detach = a.boolean("detach") || a.boolean("d");
    // Signals for the container are taken by a thread, not by us.
    let target: std::sync::Arc<std::sync::Mutex<Option<(Container, PathBuf)>>> = Default::default();
    if !detach {
        let set = crate::fds::block_signals(&crate::fds::FORWARDED_SIGNALS);
        let target = target.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                let sig = crate::fds::wait_signal(&set);
                let Some((c, root)) = target.lock().unwrap_or_else(|e| e.into_inner()).clone()
                else {
                    continue;
                };
                let arg = SignalArgs {
                    cid: c.id.clone(),
                    signo: sig,
                    ..Default::default()
                };
                let _ = call(&c, &StateDir { root }, control::SIGNAL, &arg, &[]);
            })
            .context("starting the signal forwarder")?;
    }
    let (mut l, mut started) = create_container(config, a, !detach)?;
    if let Err(e) = start_container(&mut l) {
        destroy(&l.dir, &l.c);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    *target.lock().unwrap_or_else(|e| e.into_inner()) = Some((l.c.clone(), l.dir.root.clone()));
    let (dir, c) = (l.dir, l.c);
    drop(l._lock);
    let status = started
        .sandbox
        .exit
        .recv()
        .context("waiting for the sandbox")?;
    destroy(&dir, &c);
    let _ = started.gofer.wait();
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        _ => 128,
    })
}

/// `specs.State`, in upstream's key order.
#[derive(Serialize)]
struct OciState {
    #[serde(rename = "ociVersion")]
    oci_version: &'static str,
    id: String,
    status: String,
    pid: i32,
    bundle: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<Value>,
}

fn oci_state(c: &Container) -> OciState {
    let status = c.live_status().to_string();
    OciState {
        oci_version: "1.0.2-dev",
        id: c.id.clone(),
        pid: if status == state::STOPPED {
            -1
        } else {
            c.sandbox.pid
        },
        status,
        bundle: c.bundle_dir.clone(),
        annotations: c
            .spec
            .get("annotations")
            .filter(|a| a.as_object().is_some_and(|o| !o.is_empty()))
            .cloned(),
    }
}

fn state_cmd(config: &Config, a: &OciArgs) -> anyhow::Result<i32> {
    let l = load(config, one_id(a)?)?;
    let text = serde_json::to_string_pretty(&oci_state(&l.c))?;
    print!("{text}");
    Ok(0)
}

/// A signal by number, or by name with or without `SIG`, any case.
fn parse_signal(s: &str) -> anyhow::Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (0..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    const NAMES: &[(&str, i32)] = &[
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("ILL", libc::SIGILL),
        ("TRAP", libc::SIGTRAP),
        ("ABRT", libc::SIGABRT),
        ("IOT", libc::SIGIOT),
        ("BUS", libc::SIGBUS),
        ("FPE", libc::SIGFPE),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("SEGV", libc::SIGSEGV),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("STKFLT", libc::SIGSTKFLT),
        ("CHLD", libc::SIGCHLD),
        ("CONT", libc::SIGCONT),
        ("STOP", libc::SIGSTOP),
        ("TSTP", libc::SIGTSTP),
        ("TTIN", libc::SIGTTIN),
        ("TTOU", libc::SIGTTOU),
        ("URG", libc::SIGURG),
        ("XCPU", libc::SIGXCPU),
        ("XFSZ", libc::SIGXFSZ),
        ("VTALRM", libc::SIGVTALRM),
        ("PROF", libc::SIGPROF),
        ("WINCH", libc::SIGWINCH),
        ("IO", libc::SIGIO),
        ("POLL", libc::SIGPOLL),
        ("PWR", libc::SIGPWR),
        ("SYS", libc::SIGSYS),
    ];
    NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, v)| v)
        .ok_or_else(|| anyhow!("unknown signal {s:?}"))
}

fn kill(config: &Config, a: &OciArgs) -> anyhow::Result<i32> {
    let (id, sig) = match a.args.as_slice() {
        [id] => (id, "TERM"),
        [id, sig] => (id, sig.as_str()),
        _ => return Err(Usage.into()),
    };
    let sig = parse_signal(sig)?;
    let l = load(config, id)?;
    // runc's words for a stopped container (libcontainer's ErrNotRunning):
    // containerd's runc shim matches "container not running" to report the
    // process as already finished instead of an unknown error.
    if l.c.live_status() == state::STOPPED {
        bail!(
            "cannot signal container {:?}: container not running",
            l.c.id
        );
    }
    require(
        &l.c,
        "signal",
        &[state::CREATED, state::RUNNING, state::PAUSED],
    )?;
    let pid = a.int("pid") as i32;
    let arg = SignalArgs {
        cid: l.c.id.clone(),
        signo: sig,
        pid,
        mode: if a.boolean("all") {
            control::DELIVER_TO_ALL_PROCESSES
        } else {
            control::DELIVER_TO_PROCESS
        },
    };
    call(&l.c, &l.dir, control::SIGNAL, &arg, &[])?;
    Ok(0)
}

/// Kill what is left of a container and remove its files; then its
/// poststop hooks run.
fn destroy(dir: &StateDir, c: &Container) {
    let procs = [
        (c.sandbox.pid, c.sandbox.host_start_ticks),
        (c.gofer_pid, c.gofer_start_ticks),
    ];
    for (pid, ticks) in procs {
        if state::alive(pid, ticks) {
            // SAFETY: kill takes plain integers.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let end = std::time::Instant::now() + Duration::from_secs(2);
    while procs.iter().any(|&(p, t)| state::alive(p, t)) && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = std::fs::remove_file(&c.sandbox.control_socket_path);
    crate::cgroup::remove_recorded(&c.sandbox.cgroup);
    dir.remove(&c.full_id());
    if let Ok(mut state) = serde_json::to_value(oci_state(c)) {
        state["status"] = state::STOPPED.into();
        crate::hooks::run_logged(&c.spec, "poststop", &state);
    }
}

fn delete(config: &Config, a: &OciArgs) -> anyhow::Result<i32> {
    if a.args.is_empty() {
        return Err(Usage.into());
    }
    let force = a.boolean("force") || a.boolean("f");
    for id in &a.args {
        let l = match load(config, id) {
            Ok(l) => l,
            Err(e) if force && format!("{e:#}").contains("file does not exist") => continue,
            Err(e) => return Err(e.context(format!("deleting container {id:?}"))),
        };
        let status = l.c.live_status();
        if !force && status != state::STOPPED && status != state::CREATED {
            bail!("cannot delete running container without --force flag");
        }
        destroy(&l.dir, &l.c);
    }
    Ok(0)
}

/// Go's `text/tabwriter` with flags 0 over rows of cells: every column but
/// the last padded to its widest cell plus `padding`, at least `min`.
fn tabwrite(rows: &[Vec<String>], min: usize, padding: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, cell) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            widths[i] = widths[i].max((cell.chars().count() + padding).max(min));
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < r.len() {
                let pad = widths[i] - cell.chars().count();
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
    }
    out
}

fn list(config: &Config, a: &OciArgs) -> anyhow::Result<i32> {
    if !a.args.is_empty() {
        return Err(Usage.into());
    }
    let dir = StateDir::open(config.get("root"))?;
    let ids = dir.list()?;
    if a.boolean("quiet") || a.boolean("q") {
        for id in &ids {
            println!("{}", id.container);
        }
        return Ok(0);
    }
    let mut containers = Vec::new();
    for id in &ids {
        let Ok(_lock) = dir.lock(id) else { continue };
        match dir.read(id) {
            Ok(c) => containers.push(c),
            Err(e) => tracing::warn!("skipping container {:?}: {e:#}", id.container),
        }
    }
    match a.string("format") {
        "text" => {
            let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
                .map(String::from)
                .to_vec()];
            for c in &containers {
                let st = oci_state(c);
                rows.push(vec![
                    c.id.clone(),
                    st.pid.to_string(),
                    st.status,
                    c.bundle_dir.clone(),
                    c.created_at.clone(),
                    c.owner.clone(),
                ]);
            }
            print!("{}", tabwrite(&rows, 12, 3));
        }
        "json" => {
            let states: Vec<OciState> = containers.iter().map(oci_state).collect();
            if states.is_empty() {
                println!("null");
            } else {
                println!("{}", serde_json::to_string(&states)?);
            }
        }
        other => bail!("unknown list format {other:?}"),
    }
    Ok(0)
}

fn wait(config: &Config, a: &OciArgs) -> anyhow::Result<i32> {
    let id = one_id(a)?;
    let (pid, rootpid) = (a.int("pid"), a.int("rootpid"));
    if pid != -1 && rootpid != -1 {
        bail!("only one of -pid and -rootPid can be set");
    }
    let (dir, c) = {
        let l = load(config, id)?;
        (l.dir, l.c)
    };
    let target = if pid != -1 { pid } else { rootpid };
    let ws = if target == -1 {
        let v = call(&c, &dir, control::WAIT, &c.id, &[]).map_err(|e| {
            anyhow!(
                "waiting on container {:?}: {}",
                c.id,
                unavailable_if_gone(&c, e)
            )
        })?;
        // The sandbox exits right after its init (having answered): wait
        // for that too, so a `delete` that follows finds the container
        // stopped rather than racing the sandbox's last moments.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while c.id == c.sandbox.id
            && crate::state::alive(c.sandbox.pid, c.sandbox.host_start_ticks)
            && std::time::Instant::now() < end
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        v.as_u64().unwrap_or(0) as u32
    } else {
        let arg = WaitPidArgs {
            pid: target as i32,
            cid: c.id.clone(),
        };
        let v = call(&c, &dir, control::WAIT_PID, &arg, &[])
            .with_context(|| format!("waiting on PID {target} in container {:?}", c.id))?;
        v.as_u64().unwrap_or(0) as u32
    };
    #[derive(Serialize)]
    struct WaitResult<'a> {
        id: &'a str,
        #[serde(rename = "exitStatus")]
        exit_status: i32,
    }
    let out = WaitResult {
        id,
        exit_status: control::exit_code(ws),
    };
    println!("{}", serde_json::to_string(&out)?);
    Ok(0)
}

/// Upstream's wording when the sandbox is gone and its status with it.
fn unavailable_if_gone(c: &Container, e: anyhow::Error) -> String {
    if c.live_status() == state::STOPPED {
        "sandbox no longer running and its exit status is unavailable".into()
    } else {
        format!("{e:#}")
    }
}

/// The process `exec` runs: from `--process`, or the argv form with the
/// container's spec as defaults.
fn exec_process(a: &OciArgs, spec: &Spec) -> anyhow::Result<(spec::Process, String)> {
    let id = a.args.first().ok_or(Usage)?.clone();
    let path = a.string("process");
    if !path.is_empty() {
        let text = std::fs::read(path).with_context(|| format!("reading process file {path:?}"))?;
        let p: spec::Process = serde_json::from_slice(&text)
            .with_context(|| format!("parsing process file {path:?}"))?;
        if p.args.is_empty() {
            bail!("process file {path:?} has no args");
        }
        return Ok((p, id));
    }
    if a.args.len() < 2 {
        return Err(Usage.into());
    }
    let mut p = spec.process.clone();
    p.args = a.args[1..].to_vec();
    p.terminal = a.boolean("tty") || a.boolean("t");
    for kv in a.list("env") {
        let key = kv.split('=').next().unwrap_or(kv);
        p.env.retain(|e| e.split('=').next() != Some(key));
        p.env.push(kv.clone());
    }
    let cwd = a.string("cwd");
    if !cwd.is_empty() {
        p.cwd = cwd.to_string();
    }
    let user = a.string("user");
    if !user.is_empty() {
        let (u, g) = user.split_once(':').unwrap_or((user, "0"));
        p.user.uid = u
            .parse()
            .map_err(|_| anyhow!("invalid user {user:?}: must be uid[:gid]"))?;
        p.user.gid = g
            .parse()
            .map_err(|_| anyhow!("invalid user {user:?}: must be uid[:gid]"))?;
    }
    for g in a.list("additional-gids") {
        p.user
            .additional_gids
            .push(g.parse().map_err(|_| anyhow!("invalid gid {g:?}"))?);
    }
    Ok((p, id))
}

fn exec(config: &Config, a: &OciArgs) -> anyhow::Result<i32> {
    let Some(id) = a.args.first() else {
        return Err(Usage.into());
    };
    let (dir, c) = {
        let l = load(config, id)?;
        (l.dir, l.c)
    };
    require(&c, "execute in", &[state::RUNNING])?;
    let spec: Spec = serde_json::from_value(c.spec.clone()).context("reading the saved spec")?;
    let (p, _) = exec_process(a, &spec)?;
    let (stdio, pty) = process_stdio(p.terminal, a.string("console-socket"))?;
    let arg = ExecArgs {
        filename: String::new(),
        argv: p.args,
        envv: p.env,
        wd: p.cwd,
        kuid: p.user.uid,
        kgid: p.user.gid,
        extra_kgids: p.user.additional_gids,
        stdio_is_pty: pty,
        container_id: c.id.clone(),
    };
    let files: Vec<BorrowedFd<'_>> = stdio.iter().map(|f| f.as_fd()).collect();
    let detach = a.boolean("detach") || a.boolean("d");
    // Signals sent to us go to the process, as runc's exec forwards them.
    // They are blocked before the process exists: one sent as soon as it
    // shows (in `ps`) waits for the forwarder instead of killing us.
    let set = (!detach).then(|| crate::fds::block_signals(&crate::fds::FORWARDED_SIGNALS));
    let v = call(&c, &dir, control::EXECUTE_ASYNC, &arg, &files).context("executing process")?;
    drop(stdio);
    let pid = v.as_i64().unwrap_or(0) as i32;
    write_pid_file(a.string("internal-pid-file"), pid)?;
    let wait_arg = WaitPidArgs {
        pid,
        cid: c.id.clone(),
    };
    let Some(set) = set else {
        // The host process standing for the exec'd one: it exits with its
        // status, so a caller that reaps the PID in --pid-file (containerd's
        // shim) learns how the process ended.
        let waiter = spawn_waiter(&c, &dir, &wait_arg)?;
        write_pid_file(a.string("pid-file"), waiter)?;
        return Ok(0);
    };
    // SAFETY: getpid cannot fail.
    write_pid_file(a.string("pid-file"), unsafe { libc::getpid() })?;
    {
        let (c, root) = (c.clone(), dir.root.clone());
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                let sig = crate::fds::wait_signal(&set);
                let arg = SignalArgs {
                    cid: c.id.clone(),
                    signo: sig,
                    pid,
                    mode: control::DELIVER_TO_PROCESS,
                };
                let _ = call(
                    &c,
                    &StateDir { root: root.clone() },
                    control::SIGNAL,
                    &arg,
                    &[],
                );
            })
            .context("starting the signal forwarder")?;
    }
    let v = call(&c, &dir, control::WAIT_PID, &wait_arg, &[])
        .with_context(|| format!("waiting on PID {pid} in container {:?}", c.id))?;
    Ok(control::exit_code(v.as_u64().unwrap_or(0) as u32))
}

/// Fork a process that waits for `arg.pid` in the sandbox and exits with
/// its status; its stdio is /dev/null and it is in its own session.
fn spawn_waiter(c: &Container, dir: &StateDir, arg: &WaitPidArgs) -> anyhow::Result<i32> {
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    // The connection is made before the fork so the child only talks.
    let mut client = connect(c, dir)?;
    let _ = std::io::stdout().flush();
    // SAFETY: this command runs no other threads (nothing here spawns
    // any), so the child is a complete copy; it only makes system calls
    // and the allocation of one urpc call before `_exit`.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(std::io::Error::last_os_error()).context("forking the exec waiter"),
        0 => {
            let keep = client.socket_fd() as u32;
            // SAFETY: plain syscalls on descriptors this process owns;
            // everything but stdio (now /dev/null) and the connection is
            // closed, so no pipe of the caller stays open here.
            unsafe {
                libc::setsid();
                for fd in 0..3 {
                    libc::dup2(devnull.as_raw_fd(), fd);
                }
                libc::syscall(libc::SYS_close_range, 3u32, keep - 1, 0);
                libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0);
            }
            let code = match client.call(control::WAIT_PID, arg, &[]) {
                Ok((v, _)) => control::exit_code(v.as_u64().unwrap_or(0) as u32),
                Err(_) => 128,
            };
            // SAFETY: ends the child without running the parent's exit
            // handlers a second time.
            unsafe { libc::_exit(code) }
        }
        child => Ok(child),
    }
}

fn ps(config: &Config, a: &OciArgs) -> anyhow::Result<i32> {
    let l = load(config, one_id(a)?)?;
    require(&l.c, "get processes of", &[state::RUNNING, state::PAUSED])?;
    let v = call(&l.c, &l.dir, control::PROCESSES, &l.c.id, &[]).context("getting processes")?;
    let procs: Vec<control::Process> =
        serde_json::from_value(if v.is_null() { json!([]) } else { v })?;
    match a.string("format") {
        "table" => {
            let mut rows = vec![["UID", "PID", "PPID", "C", "TTY", "STIME", "TIME", "CMD"]
                .map(String::from)
                .to_vec()];
            for p in &procs {
                rows.push(vec![
                    p.uid.to_string(),
                    p.pid.to_string(),
                    p.ppid.to_string(),
                    p.c.to_string(),
                    p.tty.clone(),
                    p.stime.clone(),
                    p.time.clone(),
                    p.cmd.clone(),
                ]);
            }
            print!("{}", tabwrite(&rows, 10, 3));
        }
        "json" => {
            let pids: Vec<i32> = procs.iter().map(|p| p.pid).collect();
            println!("{}", serde_json::to_string(&pids)?);
        }
        other => bail!("unsupported format: {other}"),
    }
    Ok(0)
}

fn events(config: &Config, a: &OciArgs) -> anyhow::Result<i32> {
    let id = one_id(a)?;
    let (dir, c) = {
        let l = load(config, id)?;
        (l.dir, l.c)
    };
    let interval = Duration::from_nanos(a.int("interval").max(0) as u64);
    loop {
        let v = match call(&c, &dir, control::EVENT, &c.id, &[]) {
            Ok(v) => v,
            Err(e) if !a.boolean("stats") && c.live_status() == state::STOPPED => {
                tracing::debug!("events end: {e:#}");
                return Ok(0);
            }
            Err(e) => return Err(e.context("getting events for container")),
        };
        let ev = v.get("event").cloned().unwrap_or(Value::Null);
        println!("{ev}");
        if a.boolean("stats") {
            return Ok(0);
        }
        std::thread::sleep(interval);
    }
}

fn pause_resume(config: &Config, a: &OciArgs) -> anyhow::Result<i32> {
    let mut l = load(config, one_id(a)?)?;
    let (method, from, to) = if a.name == "pause" {
        (control::PAUSE, state::RUNNING, state::PAUSED)
    } else {
        (control::RESUME, state::PAUSED, state::RUNNING)
    };
    require(&l.c, &a.name, &[from])?;
    call(&l.c, &l.dir, method, &json!({}), &[])?;
    l.c.status = to.into();
    l.dir.save(&l.c)?;
    Ok(0)
}

fn spec_cmd(a: &OciArgs) -> anyhow::Result<i32> {
    let bundle = abs_bundle(a.string("bundle"))?;
    let path = bundle.join("config.json");
    if Path::new(&path).exists() {
        bail!("file {:?} already exists", path.to_string_lossy());
    }
    let v = spec::default_config(&a.args, a.string("cwd"), a.string("netns"));
    let mut text = serde_json::to_string_pretty(&v)?;
    text.push('\n');
    std::fs::write(&path, text).with_context(|| format!("writing to {path:?}"))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), libc::SIGUSR1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn tables_pad_like_go_tabwriter() {
        let rows = vec![
            vec!["ID".to_string(), "PID".into(), "OWNER".into()],
            vec!["container-one".to_string(), "12".into(), "root".into()],
        ];
        assert_eq!(
            tabwrite(&rows, 12, 3),
            "ID              PID         OWNER\ncontainer-one   12          root\n"
        );
    }
}
