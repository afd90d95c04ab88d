//! The sandbox's control server: upstream's `containerManager` receiver
//! (`runsc/boot/controller.go`), over urpc, for the methods the runsc CLI
//! calls (protocol notes §4.3). Argument shapes and error texts are
//! upstream's; the Go types below mirror the Go structs field for field
//! (only the fields we act on are declared; Go ignores the rest too).
//!
//! The container's init is created by `StartRoot`, not at boot. When it
//! exits, the sandbox kills what is left and exits with its status (the
//! status containerd's shim reaps from the sandbox PID).

use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use urpc::go::{self, GoStruct, GoType};
use urpc::{CallError, Reply};

use sentry::{ExitStatus, Kernel, ProcessSpec};

use crate::spec::Spec;

pub const START_ROOT: &str = "containerManager.StartRoot";
pub const EXECUTE_ASYNC: &str = "containerManager.ExecuteAsync";
pub const WAIT: &str = "containerManager.Wait";
pub const WAIT_PID: &str = "containerManager.WaitPID";
pub const SIGNAL: &str = "containerManager.Signal";
pub const PROCESSES: &str = "containerManager.Processes";
pub const EVENT: &str = "containerManager.Event";
pub const PAUSE: &str = "containerManager.Pause";
pub const RESUME: &str = "containerManager.Resume";
pub const RUNTIME_STATE: &str = "containerManager.ContainerRuntimeState";

/// `SignalArgs.Mode` (upstream's `SignalDeliveryMode`).
pub const DELIVER_TO_PROCESS: u64 = 0;
pub const DELIVER_TO_ALL_PROCESSES: u64 = 1;

static EXEC_ARGS: GoStruct = GoStruct {
    name: "control.ExecArgs",
    fields: &[
        ("filename", GoType::String),
        ("argv", go::STRINGS),
        ("envv", go::STRINGS),
        ("wd", GoType::String),
        (
            "KUID",
            GoType::Int {
                name: "auth.KUID",
                signed: false,
                bits: 32,
            },
        ),
        (
            "KGID",
            GoType::Int {
                name: "auth.KGID",
                signed: false,
                bits: 32,
            },
        ),
        (
            "ExtraKGIDs",
            GoType::Slice {
                name: "[]auth.KGID",
                elem: &GoType::Int {
                    name: "auth.KGID",
                    signed: false,
                    bits: 32,
                },
            },
        ),
        ("Capabilities", GoType::Any),
        ("StdioIsPty", GoType::Bool),
        (
            "GuestFDs",
            GoType::Slice {
                name: "[]int",
                elem: &go::INT,
            },
        ),
        ("ContainerID", GoType::String),
    ],
};

static WAIT_PID_ARGS: GoStruct = GoStruct {
    name: "boot.WaitPIDArgs",
    fields: &[("PID", go::INT32), ("CID", GoType::String)],
};

static SIGNAL_ARGS: GoStruct = GoStruct {
    name: "boot.SignalArgs",
    fields: &[
        ("CID", GoType::String),
        ("Signo", go::INT32),
        ("PID", go::INT32),
        (
            "Mode",
            GoType::Int {
                name: "boot.SignalDeliveryMode",
                signed: false,
                bits: 64,
            },
        ),
    ],
};

/// `control.ExecArgs`, the fields we send and act on.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ExecArgs {
    #[serde(default)]
    pub filename: String,
    #[serde(default)]
    pub argv: Vec<String>,
    #[serde(default)]
    pub envv: Vec<String>,
    #[serde(default)]
    pub wd: String,
    #[serde(rename = "KUID", default)]
    pub kuid: u32,
    #[serde(rename = "KGID", default)]
    pub kgid: u32,
    #[serde(rename = "ExtraKGIDs", default)]
    pub extra_kgids: Vec<u32>,
    #[serde(rename = "StdioIsPty", default)]
    pub stdio_is_pty: bool,
    #[serde(rename = "ContainerID", default)]
    pub container_id: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WaitPidArgs {
    #[serde(rename = "PID", default)]
    pub pid: i32,
    #[serde(rename = "CID", default)]
    pub cid: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SignalArgs {
    #[serde(rename = "CID", default)]
    pub cid: String,
    #[serde(rename = "Signo", default)]
    pub signo: i32,
    #[serde(rename = "PID", default)]
    pub pid: i32,
    #[serde(rename = "Mode", default)]
    pub mode: u64,
}

/// `control.Process` (upstream's field order).
#[derive(Debug, Serialize, Deserialize)]
pub struct Process {
    pub uid: u32,
    pub pid: i32,
    pub ppid: i32,
    pub threads: Vec<i32>,
    pub c: i32,
    pub tty: String,
    pub stime: String,
    pub time: String,
    pub cmd: String,
}

/// Decode `arg` as Go decodes it into `ty`, then into `T`.
fn arg<T: serde::de::DeserializeOwned>(v: &Value, ty: &GoType) -> Result<T, CallError> {
    let v = go::decode(v, ty).map_err(CallError::Failed)?;
    let v = if v.is_null() {
        Value::Object(Default::default())
    } else {
        v
    };
    serde_json::from_value(v).map_err(|e| CallError::Failed(e.to_string()))
}

fn string_arg(v: &Value) -> Result<String, CallError> {
    let v = go::decode(v, &GoType::String).map_err(CallError::Failed)?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

/// The Linux `wait4` status word for `s`.
pub fn wait_status(s: ExitStatus) -> u32 {
    match s {
        ExitStatus::Exited(c) => ((c & 0xff) as u32) << 8,
        ExitStatus::Signaled(sig) => (sig & 0x7f) as u32,
    }
}

/// The shell's view of a wait status word: the code, or 128 + signal.
pub fn exit_code(ws: u32) -> i32 {
    let sig = (ws & 0x7f) as i32;
    if sig == 0 {
        ((ws >> 8) & 0xff) as i32
    } else {
        128 + sig
    }
}

/// Where the container's init is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Created,
    Running(i32),
    Exited(ExitStatus),
}

pub struct Controller {
    kernel: Arc<Kernel>,
    cid: String,
    spec: Spec,
    /// The container's stdio, handed to init at StartRoot.
    stdio: Mutex<Option<Vec<OwnedFd>>>,
    life: Mutex<Life>,
    changed: Condvar,
}

impl Controller {
    pub fn new(kernel: Arc<Kernel>, cid: String, spec: Spec, stdio: Vec<OwnedFd>) -> Controller {
        Controller {
            kernel,
            cid,
            spec,
            stdio: Mutex::new(Some(stdio)),
            life: Mutex::new(Life::Created),
            changed: Condvar::new(),
        }
    }

    fn life(&self) -> MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Block until the container is over; the status the sandbox exits
    /// with.
    pub fn wait_end(&self) -> ExitStatus {
        let mut life = self.life();
        loop {
            if let Life::Exited(s) = *life {
                return s;
            }
            life = self.changed.wait(life).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The init's PID while it runs (for signals the sandbox receives).
    pub fn init_pid(&self) -> Option<i32> {
        match *self.life() {
            Life::Running(pid) => Some(pid),
            _ => None,
        }
    }

    fn finish(&self, status: ExitStatus) {
        let mut life = self.life();
        if !matches!(*life, Life::Exited(_)) {
            *life = Life::Exited(status);
        }
        self.changed.notify_all();
    }

    fn check_cid(&self, cid: &str) -> Result<(), CallError> {
        if cid.is_empty() || cid == self.cid {
            Ok(())
        } else {
            Err(CallError::Failed(format!("container {cid:?} not found")))
        }
    }

    fn start_root(self: &Arc<Self>, cid: &str) -> Result<Reply, CallError> {
        self.check_cid(cid)?;
        let mut life = self.life();
        if *life != Life::Created {
            return Err(CallError::Failed(format!(
                "cannot start container {:?}: it has already been started",
                self.cid
            )));
        }
        let stdio = self
            .stdio
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        let p = &self.spec.process;
        let pid = self.kernel.start_process(ProcessSpec {
            argv: p.args.clone(),
            envv: p.env.clone(),
            cwd: p.cwd.clone(),
            uid: p.user.uid,
            gid: p.user.gid,
            stdio,
        })?;
        *life = Life::Running(pid);
        drop(life);
        let me = self.clone();
        std::thread::spawn(move || {
            let status = me
                .kernel
                .wait_process(pid, false)
                .unwrap_or(ExitStatus::Signaled(libc::SIGKILL));
            tracing::info!("container init exited: {status:?}");
            me.finish(status);
        });
        Ok(Reply::empty())
    }

    fn execute_async(&self, a: ExecArgs, files: Vec<OwnedFd>) -> Result<Reply, CallError> {
        self.check_cid(&a.container_id)?;
        if !matches!(*self.life(), Life::Running(_)) {
            return Err(CallError::Failed(format!(
                "cannot exec in container {:?}: it is not running",
                self.cid
            )));
        }
        let mut argv = a.argv;
        if argv.is_empty() && !a.filename.is_empty() {
            argv.push(a.filename.clone());
        }
        let wd = if a.wd.is_empty() { "/".into() } else { a.wd };
        let pid = self.kernel.start_process(ProcessSpec {
            argv,
            envv: a.envv,
            cwd: wd,
            uid: a.kuid,
            gid: a.kgid,
            stdio: files,
        })?;
        Ok(Reply::value(pid))
    }

    fn wait(&self, cid: &str) -> Result<Reply, CallError> {
        self.check_cid(cid)?;
        Ok(Reply::value(wait_status(self.wait_end())))
    }

    fn wait_pid(&self, a: WaitPidArgs) -> Result<Reply, CallError> {
        self.check_cid(&a.cid)?;
        if Some(a.pid) == self.init_pid() {
            return self.wait(&a.cid);
        }
        match self.kernel.wait_process(a.pid, true) {
            Some(s) => Ok(Reply::value(wait_status(s))),
            None => Err(CallError::Failed(format!("process {} not found", a.pid))),
        }
    }

    fn signal(&self, a: SignalArgs) -> Result<Reply, CallError> {
        self.check_cid(&a.cid)?;
        if !(0..=64).contains(&a.signo) {
            return Err(CallError::Failed(format!("invalid signal {}", a.signo)));
        }
        let life = *self.life();
        match life {
            // No init yet: as runc, a signal whose default action ends a
            // process ends the container (the sandbox exits with it).
            Life::Created => {
                if a.signo != 0 && !ignored_by_default(a.signo) {
                    self.finish(ExitStatus::Signaled(a.signo));
                }
                Ok(Reply::empty())
            }
            Life::Exited(_) => Err(CallError::Failed(format!(
                "container {:?} is not running",
                self.cid
            ))),
            Life::Running(init) => {
                if a.signo == 0 {
                    return Ok(Reply::empty());
                }
                // The init is protected as a PID namespace's init is.
                let send = |pid: i32| {
                    if pid == init {
                        self.kernel.signal_init(pid, a.signo)
                    } else {
                        self.kernel.send_signal(pid, a.signo)
                    }
                };
                match a.mode {
                    DELIVER_TO_ALL_PROCESSES => {
                        for p in self.kernel.processes() {
                            send(p.pid);
                        }
                        Ok(Reply::empty())
                    }
                    DELIVER_TO_PROCESS => {
                        let pid = if a.pid == 0 { init } else { a.pid };
                        if send(pid) {
                            Ok(Reply::empty())
                        } else {
                            Err(CallError::Failed(format!(
                                "failed to signal process {pid}: no such process"
                            )))
                        }
                    }
                    m => Err(CallError::Failed(format!(
                        "signal delivery mode {m} is not supported"
                    ))),
                }
            }
        }
    }

    fn processes(&self, cid: &str) -> Result<Reply, CallError> {
        self.check_cid(cid)?;
        let now = std::time::SystemTime::now();
        let list: Vec<Process> = self
            .kernel
            .processes()
            .into_iter()
            .map(|p| {
                let life = now.duration_since(p.started).unwrap_or_default();
                let c = if life.is_zero() {
                    0
                } else {
                    (p.cpu.as_nanos() * 100 / life.as_nanos()).min(99) as i32
                };
                Process {
                    uid: p.uid,
                    pid: p.pid,
                    ppid: p.ppid,
                    threads: p.threads,
                    c,
                    tty: "?".into(),
                    stime: format_stime(p.started, now),
                    time: go_duration(p.cpu),
                    cmd: p.cmd,
                }
            })
            .collect();
        Ok(Reply::value(list))
    }

    fn event(&self, cid: &str) -> Result<Reply, CallError> {
        self.check_cid(cid)?;
        let u = self.kernel.usage();
        let total = (u.cpu_user + u.cpu_system).as_nanos() as u64;
        let ev = serde_json::json!({
            "event": {
                "type": "stats",
                "id": self.cid,
                "data": {
                    "cpu": {"usage": {
                        "kernel": u.cpu_system.as_nanos() as u64,
                        "user": u.cpu_user.as_nanos() as u64,
                        "total": total,
                        "percpu": [total],
                    }},
                    "memory": {"usage": {"usage": u.memory, "max": 0, "limit": 0, "failcnt": 0}},
                    "pids": {"current": u.processes, "limit": 0},
                },
            },
            "containerUsage": {self.cid.clone(): total},
        });
        Ok(Reply::value(ev))
    }

    fn runtime_state(&self, cid: &str) -> Result<Reply, CallError> {
        self.check_cid(cid)?;
        Ok(Reply::value(match *self.life() {
            Life::Created => 1,
            Life::Running(_) => 2,
            Life::Exited(_) => 3,
        }))
    }
}

/// Signals whose default action is to do nothing (signal(7)).
fn ignored_by_default(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGCHLD | libc::SIGCONT | libc::SIGURG | libc::SIGWINCH
    )
}

/// Go's `time.Duration.String()` (`1.5s`, `20ms`, `0s`).
pub fn go_duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    let trim = |v: String| {
        if v.contains('.') {
            v.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            v
        }
    };
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{}µs", trim(format!("{:.3}", ns as f64 / 1e3)))
    } else if ns < 1_000_000_000 {
        format!("{}ms", trim(format!("{:.6}", ns as f64 / 1e6)))
    } else {
        let s = d.as_secs();
        let frac = trim(format!("{:.9}", f64::from(d.subsec_nanos()) / 1e9));
        let frac = frac.trim_start_matches('0');
        let secs = s % 60;
        let body = if frac.is_empty() || frac == "." {
            format!("{secs}s")
        } else {
            format!("{secs}{frac}s")
        };
        match (s / 3600, s / 60 % 60) {
            (0, 0) => body,
            (0, m) => format!("{m}m{body}"),
            (h, m) => format!("{h}h{m}m{body}"),
        }
    }
}

/// `ps`'s STIME as upstream formats it: `15:04` today, `Jan02` this
/// year, the year otherwise (UTC; the sandbox has no time zone).
fn format_stime(t: std::time::SystemTime, now: std::time::SystemTime) -> String {
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    };
    let (ts, ns) = (secs(t), secs(now));
    let (y, m, d) = crate::state::civil_from_days(ts.div_euclid(86400));
    let (ny, _, _) = crate::state::civil_from_days(ns.div_euclid(86400));
    if ts.div_euclid(86400) == ns.div_euclid(86400) {
        let r = ts.rem_euclid(86400);
        format!("{:02}:{:02}", r / 3600, r % 3600 / 60)
    } else if y == ny {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        format!("{}{d:02}", MONTHS[(m - 1) as usize])
    } else {
        y.to_string()
    }
}

/// The receiver the urpc server dispatches to.
pub struct Receivers(pub Arc<Controller>);

impl urpc::Dispatch for Receivers {
    fn call(&self, method: &str, a: &Value, files: Vec<OwnedFd>) -> Result<Reply, CallError> {
        let c = &self.0;
        tracing::debug!("control: {method}");
        match method {
            START_ROOT => c.start_root(&string_arg(a)?),
            EXECUTE_ASYNC => c.execute_async(arg(a, &GoType::Struct(&EXEC_ARGS))?, files),
            WAIT => c.wait(&string_arg(a)?),
            WAIT_PID => c.wait_pid(arg(a, &GoType::Struct(&WAIT_PID_ARGS))?),
            SIGNAL => c.signal(arg(a, &GoType::Struct(&SIGNAL_ARGS))?),
            PROCESSES => c.processes(&string_arg(a)?),
            EVENT => c.event(&string_arg(a)?),
            PAUSE | RESUME => {
                go::decode(a, &GoType::Struct(&go::EMPTY)).map_err(CallError::Failed)?;
                if method == PAUSE {
                    c.kernel.pause();
                } else {
                    c.kernel.resume();
                }
                Ok(Reply::empty())
            }
            RUNTIME_STATE => c.runtime_state(&string_arg(a)?),
            _ => Err(CallError::UnknownMethod),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go() {
        use std::time::Duration;
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_nanos(1500)), "1.5µs");
        assert_eq!(go_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3661)), "1h1m1s");
    }

    #[test]
    fn wait_status_words() {
        assert_eq!(wait_status(ExitStatus::Exited(3)), 0x300);
        assert_eq!(wait_status(ExitStatus::Signaled(9)), 9);
        assert_eq!(exit_code(0x300), 3);
        assert_eq!(exit_code(15), 143);
    }
}
