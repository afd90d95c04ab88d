//! The state directory (`--root`), laid out as upstream's
//! (`runsc/container/state_file.go`; protocol notes §5.4):
//! `<root>/<cid>_sandbox:<sid>.state` holds the container's JSON (mode
//! 0640, rewritten whole), `<root>/<cid>_sandbox:<sid>.lock` is an empty
//! file every reader and writer holds `flock(LOCK_EX)` on, and the control
//! socket is `<root>/runsc-<sid>.sock`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

/// The container's lifecycle status, spelled as the OCI state.
pub const CREATED: &str = "created";
pub const RUNNING: &str = "running";
pub const STOPPED: &str = "stopped";
pub const PAUSED: &str = "paused";

/// What the state file holds (upstream's `Container`, same keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub spec: serde_json::Value,
    #[serde(rename = "bundleDir")]
    pub bundle_dir: String,
    #[serde(rename = "createdAt")]
    pub created_at: String,
    #[serde(default)]
    pub owner: String,
    #[serde(rename = "consoleSocket", default)]
    pub console_socket: String,
    pub status: String,
    #[serde(rename = "goferPid", default)]
    pub gofer_pid: i32,
    pub sandbox: Sandbox,
    #[serde(rename = "compatCgroup", default = "no_cgroup")]
    pub compat_cgroup: serde_json::Value,
    pub saver: Saver,
    /// Ours: when the gofer started (`/proc/<pid>/stat` field 22), so a
    /// reused PID is never taken for it.
    #[serde(rename = "goferStartTicks", default)]
    pub gofer_start_ticks: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: String,
    pub pid: i32,
    pub uid: i32,
    pub gid: i32,
    #[serde(default = "no_cgroup")]
    pub cgroup: serde_json::Value,
    #[serde(rename = "originalOomScoreAdj", default)]
    pub original_oom_score_adj: i32,
    #[serde(rename = "controlSocketPath", default)]
    pub control_socket_path: String,
    /// Ours: the sandbox process's start time in clock ticks, as above.
    #[serde(rename = "hostStartTicks", default)]
    pub host_start_ticks: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saver {
    #[serde(rename = "rootDir")]
    pub root_dir: String,
    pub id: SaverId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SaverId {
    #[serde(rename = "sandboxId")]
    pub sandbox_id: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
}

/// Upstream's encoding of "no cgroup" (cgroups are not managed yet).
fn no_cgroup() -> serde_json::Value {
    serde_json::json!({"cgroupunknown": null})
}

/// A container's full ID: its own and its sandbox's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullId {
    pub container: String,
    pub sandbox: String,
}

/// Upstream's (and runc's) rule: `^[\w+\.-]+$`.
pub fn validate_id(id: &str) -> anyhow::Result<()> {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '.' | '-'));
    // `_` and `:` separate the two IDs in file names.
    if !ok || id.contains('_') {
        bail!("invalid container id: {id}");
    }
    Ok(())
}

/// Parses a state file name (`<cid>_sandbox:<sid>.state`).
fn parse_name(name: &str) -> Option<FullId> {
    let stem = name.strip_suffix(".state")?;
    let (cid, sid) = stem.split_once("_sandbox:")?;
    (validate_id(cid).is_ok() && validate_id(sid).is_ok()).then(|| FullId {
        container: cid.to_string(),
        sandbox: sid.to_string(),
    })
}

/// A held `flock` on a container's lock file (released on drop).
pub struct Lock {
    _file: File,
}

/// The `--root` directory.
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    /// Open (creating it 0711 if needed, as upstream) the state directory.
    pub fn open(root: &str) -> anyhow::Result<StateDir> {
        let root = PathBuf::from(root);
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()?.join(root)
        };
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating root directory {root:?}"))?;
        let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711));
        Ok(StateDir { root })
    }

    fn path(&self, id: &FullId, ext: &str) -> PathBuf {
        self.root
            .join(format!("{}_sandbox:{}.{ext}", id.container, id.sandbox))
    }

    pub fn state_path(&self, id: &FullId) -> PathBuf {
        self.path(id, "state")
    }

    /// Where the sandbox's control socket lives (§4.1).
    pub fn control_socket(&self, sandbox_id: &str) -> PathBuf {
        self.root.join(format!("runsc-{sandbox_id}.sock"))
    }

    /// Take the container's lock (creating the lock file 0600).
    pub fn lock(&self, id: &FullId) -> anyhow::Result<Lock> {
        let path = self.path(id, "lock");
        let file = OpenOptions::new()
            .read(true)
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .with_context(|| format!("acquiring lock on {path:?}"))?;
        loop {
            // SAFETY: flock takes a descriptor we own and an integer.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e).with_context(|| format!("acquiring lock on {path:?}"));
            }
        }
        Ok(Lock { _file: file })
    }

    /// Every container under the root.
    pub fn list(&self) -> anyhow::Result<Vec<FullId>> {
        let mut ids: Vec<FullId> = std::fs::read_dir(&self.root)
            .with_context(|| format!("reading {:?}", self.root))?
            .filter_map(|e| e.ok())
            .filter_map(|e| parse_name(&e.file_name().to_string_lossy()))
            .collect();
        ids.sort_by(|a, b| a.container.cmp(&b.container));
        Ok(ids)
    }

    /// The container `partial` names: exactly, or as the unique prefix of
    /// one ID. `Ok(None)` if there is none.
    pub fn find(&self, partial: &str) -> anyhow::Result<Option<FullId>> {
        let ids = self.list()?;
        if let Some(id) = ids.iter().find(|i| i.container == partial) {
            return Ok(Some(id.clone()));
        }
        let mut matches = ids.iter().filter(|i| i.container.starts_with(partial));
        let Some(first) = matches.next() else {
            return Ok(None);
        };
        if let Some(second) = matches.next() {
            bail!(
                "id {partial:?} is ambiguous and could refer to multiple containers: {:?}, {:?}",
                first.container,
                second.container
            );
        }
        Ok(Some(first.clone()))
    }

    /// Read a container's state (the caller holds its lock).
    pub fn read(&self, id: &FullId) -> anyhow::Result<Container> {
        let path = self.state_path(id);
        let text = std::fs::read(&path)
            .with_context(|| format!("reading container metadata file {path:?}"))?;
        serde_json::from_slice(&text)
            .with_context(|| format!("reading container metadata file {path:?}"))
    }

    /// Write a container's state whole (the caller holds its lock).
    pub fn save(&self, c: &Container) -> anyhow::Result<()> {
        let id = FullId {
            container: c.id.clone(),
            sandbox: c.sandbox.id.clone(),
        };
        let path = self.state_path(&id);
        let tmp = path.with_extension("state.tmp");
        let json = serde_json::to_vec(c).context("encoding the container state")?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)
            .with_context(|| format!("writing json file {tmp:?}"))?;
        f.write_all(&json)
            .with_context(|| format!("writing json file {tmp:?}"))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing json file {path:?}"))?;
        Ok(())
    }

    /// Remove a container's state and lock files.
    pub fn remove(&self, id: &FullId) {
        let _ = std::fs::remove_file(self.state_path(id));
        let _ = std::fs::remove_file(self.path(id, "lock"));
    }
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks) and whether
/// the process is a zombie; None if there is no such process.
pub fn proc_start(pid: i32) -> Option<(u64, bool)> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let zombie = matches!(fields.first(), Some(&"Z") | Some(&"X"));
    Some((fields.get(19)?.parse().ok()?, zombie))
}

/// Whether `pid` is still the live process that started at `ticks`.
pub fn alive(pid: i32, ticks: u64) -> bool {
    matches!(proc_start(pid), Some((t, false)) if t == ticks || ticks == 0)
}

impl Container {
    pub fn full_id(&self) -> FullId {
        FullId {
            container: self.id.clone(),
            sandbox: self.sandbox.id.clone(),
        }
    }

    /// The status as upstream computes it on load: a created, running or
    /// paused container whose sandbox process is gone is stopped.
    pub fn live_status(&self) -> &str {
        if self.status != STOPPED && !alive(self.sandbox.pid, self.sandbox.host_start_ticks) {
            STOPPED
        } else {
            &self.status
        }
    }
}

/// Now as RFC 3339 with nanoseconds, UTC (Go's `time.RFC3339Nano`, which
/// drops trailing zeros of the fraction).
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's civil_from_days algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_file_names() {
        for ok in ["c1", "abc.def-1+2", "A"] {
            validate_id(ok).unwrap();
        }
        for bad in ["", "a_b", "a:b", "a/b", "a b", "é"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_name("c2_sandbox:c1.state"),
            Some(FullId {
                container: "c2".into(),
                sandbox: "c1".into()
            })
        );
        assert_eq!(parse_name("c2_sandbox:c1.lock"), None);
        assert_eq!(parse_name("c2_sandbox:c1.state.tmp"), None);
        assert_eq!(parse_name("runsc-c1.sock"), None);
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400, 500_000_000), "2000-02-29T00:00:00.5Z");
        assert_eq!(
            rfc3339(1_700_000_000, 123),
            "2023-11-14T22:13:20.000000123Z"
        );
    }

    #[test]
    fn prefix_lookup_and_ambiguity() {
        let dir = std::env::temp_dir().join(format!("runsc-state-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sd = StateDir::open(dir.to_str().unwrap()).unwrap();
        for id in ["abc1", "abc2", "xyz", "abc"] {
            std::fs::write(sd.root.join(format!("{id}_sandbox:{id}.state")), "{}").unwrap();
        }
        assert_eq!(sd.find("xy").unwrap().unwrap().container, "xyz");
        assert_eq!(sd.find("abc").unwrap().unwrap().container, "abc");
        assert!(sd.find("ab").is_err());
        assert_eq!(sd.find("q").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
