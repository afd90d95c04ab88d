//! Host cgroups that bound the whole sandbox (the Sentry, its stubs and the
//! gofer), from the spec's `linux.cgroupsPath` and `linux.resources`
//! (runtime-spec `config-linux.md`), on cgroup v1 (one hierarchy per
//! controller under `/sys/fs/cgroup`) or v2 (the unified hierarchy).
//! As upstream, a spec without a path gets `/<container id>`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

const ROOT: &str = "/sys/fs/cgroup";

/// v1 controllers we create a group in.
const V1: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer",
];

/// The sandbox's cgroups: one directory per v1 controller, or one v2
/// directory.
pub struct Cgroup {
    /// The path inside each hierarchy (`/c1`).
    pub name: String,
    /// Directories we made, to remove on delete.
    pub dirs: Vec<PathBuf>,
    /// The group's directory in each hierarchy (made by us or not).
    groups: Vec<PathBuf>,
    v2: bool,
}

fn unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

fn write(dir: &Path, file: &str, value: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join(file), value)
        .with_context(|| format!("writing {value:?} to {}", dir.join(file).display()))
}

/// The group `spec` asks for (`cgroupsPath`, else `/<id>`); None for a
/// systemd-style path (`slice:prefix:name`, needs --systemd-cgroup).
pub fn name_for(spec: &Value, id: &str) -> anyhow::Result<String> {
    let path = spec
        .pointer("/linux/cgroupsPath")
        .and_then(Value::as_str)
        .unwrap_or("");
    if path.is_empty() {
        return Ok(format!("/{id}"));
    }
    if !path.starts_with('/') && path.contains(':') {
        bail!("cgroupsPath {path:?} is a systemd path; --systemd-cgroup is not supported");
    }
    if path.split('/').any(|c| c == "..") {
        bail!("cgroupsPath {path:?} may not contain \"..\"");
    }
    Ok(if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    })
}

/// Make the group, apply the spec's limits, and move `pids` into it
/// (none, when the processes are to join it themselves before they run
/// anything: see [`Cgroup::procs_files`]).
pub fn install(name: &str, spec: &Value, pids: &[i32]) -> anyhow::Result<Cgroup> {
    let res = spec
        .pointer("/linux/resources")
        .cloned()
        .unwrap_or(Value::Null);
    let rel = name.trim_start_matches('/');
    let mut cg = Cgroup {
        name: name.to_string(),
        dirs: Vec::new(),
        groups: Vec::new(),
        v2: unified(),
    };
    let r = if cg.v2 {
        install_v2(&mut cg, rel, &res, pids)
    } else {
        install_v1(&mut cg, rel, &res, pids)
    };
    if let Err(e) = r {
        cg.remove();
        return Err(e);
    }
    Ok(cg)
}

fn num(res: &Value, ptr: &str) -> Option<i64> {
    res.pointer(ptr).and_then(Value::as_i64)
}

fn text(res: &Value, ptr: &str) -> Option<String> {
    res.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn mkdir(cg: &mut Cgroup, dir: PathBuf) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating cgroup {}", dir.display()))?;
        cg.dirs.push(dir);
    }
    Ok(())
}

fn install_v1(cg: &mut Cgroup, rel: &str, res: &Value, pids: &[i32]) -> anyhow::Result<()> {
    for ctrl in V1 {
        let mount = Path::new(ROOT).join(ctrl);
        if !mount.join("cgroup.procs").exists() {
            continue;
        }
        let dir = mount.join(rel);
        mkdir(cg, dir.clone())?;
        cg.groups.push(dir.clone());
        match *ctrl {
            // A new cpuset is empty; tasks can join only once it has CPUs
            // and memory nodes, inherited here from its parent.
            "cpuset" => {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let parent = dir.parent().unwrap_or(&mount);
                    let want = match (f, text(res, "/cpu/cpus"), text(res, "/cpu/mems")) {
                        ("cpuset.cpus", Some(c), _) => c,
                        ("cpuset.mems", _, Some(m)) => m,
                        _ => std::fs::read_to_string(parent.join(f))
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    if !want.is_empty() {
                        write(&dir, f, &want)?;
                    }
                }
            }
            "memory" => {
                if let Some(v) = num(res, "/memory/limit") {
                    write(&dir, "memory.limit_in_bytes", &v.to_string())?;
                }
                if let Some(v) = num(res, "/memory/reservation") {
                    write(&dir, "memory.soft_limit_in_bytes", &v.to_string())?;
                }
            }
            "cpu" => {
                if let Some(v) = num(res, "/cpu/shares") {
                    write(&dir, "cpu.shares", &v.to_string())?;
                }
                if let Some(v) = num(res, "/cpu/period") {
                    write(&dir, "cpu.cfs_period_us", &v.to_string())?;
                }
                if let Some(v) = num(res, "/cpu/quota") {
                    write(&dir, "cpu.cfs_quota_us", &v.to_string())?;
                }
            }
            "pids" => {
                if let Some(v) = num(res, "/pids/limit") {
                    let v = if v <= 0 {
                        "max".to_string()
                    } else {
                        v.to_string()
                    };
                    write(&dir, "pids.max", &v)?;
                }
            }
            _ => {}
        }
        for pid in pids {
            write(&dir, "cgroup.procs", &pid.to_string())?;
        }
    }
    Ok(())
}

fn install_v2(cg: &mut Cgroup, rel: &str, res: &Value, pids: &[i32]) -> anyhow::Result<()> {
    let dir = Path::new(ROOT).join(rel);
    // Controllers must be enabled in every ancestor's subtree_control.
    let mut at = PathBuf::from(ROOT);
    for comp in Path::new(rel).components() {
        let avail = std::fs::read_to_string(at.join("cgroup.controllers")).unwrap_or_default();
        for c in avail.split_whitespace() {
            if ["cpu", "cpuset", "memory", "pids", "io"].contains(&c) {
                let _ = std::fs::write(at.join("cgroup.subtree_control"), format!("+{c}"));
            }
        }
        at.push(comp);
        mkdir(cg, at.clone())?;
    }
    cg.groups.push(dir.clone());
    if let Some(v) = num(res, "/memory/limit") {
        write(&dir, "memory.max", &v.to_string())?;
    }
    if let Some(v) = num(res, "/memory/reservation") {
        write(&dir, "memory.low", &v.to_string())?;
    }
    if let Some(v) = num(res, "/cpu/shares") {
        // runc's conversion of v1 shares [2, 262144] to weight [1, 10000].
        let w = 1 + ((v.clamp(2, 262_144) - 2) * 9999) / 262_142;
        write(&dir, "cpu.weight", &w.to_string())?;
    }
    if let Some(q) = num(res, "/cpu/quota") {
        let period = num(res, "/cpu/period").unwrap_or(100_000);
        let q = if q <= 0 {
            "max".to_string()
        } else {
            q.to_string()
        };
        write(&dir, "cpu.max", &format!("{q} {period}"))?;
    }
    if let Some(v) = text(res, "/cpu/cpus") {
        write(&dir, "cpuset.cpus", &v)?;
    }
    if let Some(v) = text(res, "/cpu/mems") {
        write(&dir, "cpuset.mems", &v)?;
    }
    if let Some(v) = num(res, "/pids/limit") {
        let v = if v <= 0 {
            "max".to_string()
        } else {
            v.to_string()
        };
        write(&dir, "pids.max", &v)?;
    }
    for pid in pids {
        write(&dir, "cgroup.procs", &pid.to_string())?;
    }
    Ok(())
}

impl Cgroup {
    /// `cgroup.procs` of the group in each hierarchy, opened for writing:
    /// a child that writes "0" to each before exec starts inside the group,
    /// and so does everything it starts (upstream's CLI joins the group
    /// itself around starting the sandbox for the same reason).
    pub fn procs_files(&self) -> anyhow::Result<Vec<std::fs::File>> {
        self.groups
            .iter()
            .map(|g| {
                let path = g.join("cgroup.procs");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .with_context(|| format!("opening {}", path.display()))
            })
            .collect()
    }

    /// What the state file records (upstream's `cgroup` key).
    pub fn to_json(&self) -> Value {
        if self.v2 {
            json!({"cgroupv2": {"mountpoint": ROOT, "path": self.name, "dirs": self.dirs}})
        } else {
            json!({"cgroupv1": {"name": self.name, "dirs": self.dirs}})
        }
    }

    /// Remove the directories we made, deepest first (their processes
    /// must be gone).
    pub fn remove(&self) {
        remove_dirs(&self.dirs);
    }
}

/// Remove cgroup directories recorded in a state file's `cgroup` value.
pub fn remove_recorded(v: &Value) {
    let dirs: Vec<PathBuf> = ["/cgroupv1/dirs", "/cgroupv2/dirs"]
        .iter()
        .filter_map(|p| v.pointer(p))
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(ROOT))
        .collect();
    remove_dirs(&dirs);
}

fn remove_dirs(dirs: &[PathBuf]) {
    let mut dirs = dirs.to_vec();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        // A group empties a moment after its last process is reaped.
        for _ in 0..100 {
            match std::fs::remove_dir(&d) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                _ => break,
            }
        }
    }
}
