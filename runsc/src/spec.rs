//! The parts of the OCI runtime spec (`config.json`) runsc acts on, read
//! leniently: unknown fields are ignored and optional ones default, so the
//! configs `runsc spec`, runc, containerd and podman write all parse. The
//! whole document is kept as JSON too (the state file stores it verbatim,
//! as upstream's does).
//!
//! Why not the `oci-spec` crate (design.md's choice): it rejects values
//! real hosts write (unknown enum spellings, fields of newer spec versions)
//! and brings a large build; runsc needs a dozen fields.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Spec {
    #[serde(rename = "ociVersion", default)]
    pub oci_version: String,
    #[serde(default)]
    pub process: Process,
    pub root: Root,
    #[serde(default)]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Process {
    #[serde(default)]
    pub terminal: bool,
    #[serde(default)]
    pub user: User,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default = "slash")]
    pub cwd: String,
}

fn slash() -> String {
    "/".into()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(
        rename = "additionalGids",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Root {
    pub path: String,
    #[serde(default)]
    pub readonly: bool,
}

impl Spec {
    /// Upstream's checks before creating a container
    /// (`specutils.ValidateSpec`), with their wording.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.root.path.is_empty() {
            bail!("Spec.Root.Path must be set");
        }
        if self.process.args.is_empty() {
            bail!("Spec.Process.Arg must be defined: {:?}", self.process);
        }
        if !self.process.cwd.starts_with('/') {
            bail!(
                "Spec.Process.Cwd must be an absolute path: {:?}",
                self.process.cwd
            );
        }
        Ok(())
    }
}

/// A bundle's `config.json`: the typed view and the document itself.
pub struct Bundle {
    pub spec: Spec,
    pub json: serde_json::Value,
}

/// Read `<bundle>/config.json` as upstream's `specutils.ReadSpec` does.
pub fn read_bundle(dir: &Path) -> anyhow::Result<Bundle> {
    let path = dir.join("config.json");
    let text = std::fs::read(&path).with_context(|| format!("error opening spec file {path:?}"))?;
    let json: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("error unmarshaling spec from file {path:?}"))?;
    let spec: Spec = serde_json::from_value(json.clone())
        .with_context(|| format!("error unmarshaling spec from file {path:?}"))?;
    Ok(Bundle { spec, json })
}

/// What `runsc spec` writes: runc's default config, as upstream's does.
pub fn default_config(args: &[String], cwd: &str, netns: &str) -> serde_json::Value {
    let args = if args.is_empty() {
        vec!["sh".to_string()]
    } else {
        args.to_vec()
    };
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let mut namespaces = vec![
        serde_json::json!({"type": "pid"}),
        serde_json::json!({"type": "ipc"}),
        serde_json::json!({"type": "uts"}),
        serde_json::json!({"type": "mount"}),
    ];
    if netns.is_empty() {
        namespaces.push(serde_json::json!({"type": "network"}));
    } else {
        namespaces.push(serde_json::json!({"type": "network", "path": netns}));
    }
    serde_json::json!({
        "ociVersion": "1.0.0",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "inheritable": caps, "permitted": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runsc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {"namespaces": namespaces}
    })
}

/// Whether a spec mount is a bind mount (`type: bind`, or a `bind` or
/// `rbind` option, as runc reads it).
fn is_bind(m: &serde_json::Value) -> bool {
    let typ = m.get("type").and_then(|t| t.as_str()).unwrap_or("");
    let opts = m
        .get("options")
        .and_then(|o| o.as_array())
        .is_some_and(|o| {
            o.iter()
                .any(|x| matches!(x.as_str(), Some("bind" | "rbind")))
        });
    typ == "bind" || opts
}

/// One bind mount of a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: String,
    pub destination: String,
    pub read_only: bool,
}

/// The spec's bind mounts, in its order: the gofer serves them on the
/// `--io-fds` after the root's, and the sandbox mounts them in that order.
pub fn binds(spec: &serde_json::Value) -> Vec<Bind> {
    let field = |m: &serde_json::Value, k: &str| {
        m.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string()
    };
    spec.get("mounts")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
        .filter(|m| is_bind(m))
        .map(|m| Bind {
            source: field(m, "source"),
            destination: field(m, "destination"),
            read_only: m
                .get("options")
                .and_then(|o| o.as_array())
                .is_some_and(|o| o.iter().any(|x| x.as_str() == Some("ro"))),
        })
        .collect()
}

/// Drop the bind mounts the sandbox cannot serve yet (a source that is not
/// a directory: docker's and podman's /etc/hosts, /etc/resolv.conf and
/// /etc/hostname), saying which; the rest stay in order.
pub fn keep_directory_binds(spec: &mut serde_json::Value) {
    if let Some(mounts) = spec.get_mut("mounts").and_then(|m| m.as_array_mut()) {
        mounts.retain(|m| {
            if !is_bind(m) {
                return true;
            }
            let source = m.get("source").and_then(|v| v.as_str()).unwrap_or("");
            let dir = std::fs::metadata(source).is_ok_and(|md| md.is_dir());
            if !dir {
                tracing::warn!(
                    "bind mount of {source:?} at {:?} skipped: only directories can be bind-mounted yet",
                    m.get("destination").and_then(|v| v.as_str()).unwrap_or("")
                );
            }
            dir
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_runc_style_config() {
        let json = r#"{
            "ociVersion": "1.0.2",
            "process": {"terminal": false, "user": {"uid": 0, "gid": 0},
                        "args": ["sh"], "env": ["PATH=/bin"], "cwd": "/",
                        "capabilities": {"bounding": ["CAP_KILL"]}},
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "runc",
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]
        }"#;
        let spec: Spec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.process.args, ["sh"]);
        assert_eq!(spec.root.path, "rootfs");
        assert!(spec.root.readonly);
        assert_eq!(spec.hostname, "runc");
        spec.validate().unwrap();
    }

    /// What containerd 1.6 and podman 4.3 put in a bundle (trimmed to the
    /// fields that vary: annotations, additional gids, rlimits, seccomp,
    /// a user without gid, linux sections we do not act on).
    #[test]
    fn reads_containerd_and_podman_configs() {
        let containerd = r#"{"ociVersion":"1.0.2-dev","process":{"user":{"uid":0,"gid":0,"additionalGids":[0,10]},
            "args":["echo","hi"],"env":["PATH=/bin"],"cwd":"/","capabilities":{"bounding":["CAP_CHOWN"]},
            "rlimits":[{"type":"RLIMIT_NOFILE","hard":1024,"soft":1024}],"noNewPrivileges":true},
            "root":{"path":"rootfs"},"mounts":[{"destination":"/proc","type":"proc","source":"proc","options":["nosuid"]}],
            "linux":{"resources":{"devices":[{"allow":false,"access":"rwm"}]},"cgroupsPath":"/default/t1",
            "namespaces":[{"type":"pid"},{"type":"network","path":"/proc/1/ns/net"}],
            "seccomp":{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],"syscalls":[]},
            "maskedPaths":["/proc/kcore"],"readonlyPaths":["/proc/bus"]}}"#;
        let spec: Spec = serde_json::from_str(containerd).unwrap();
        assert_eq!(spec.process.user.additional_gids, [0, 10]);
        spec.validate().unwrap();
        let podman = r#"{"ociVersion":"1.0.2-dev","process":{"terminal":false,"user":{"uid":0},
            "args":["/bin/sh"],"cwd":"/","oomScoreAdj":0},"root":{"path":"/var/lib/containers/storage/overlay/x/merged"},
            "hostname":"abc","annotations":{"io.container.manager":"libpod","org.opencontainers.image.stopSignal":"15"},
            "hooks":{"poststop":[{"path":"/usr/bin/podman","args":["podman","cleanup"]}]},
            "linux":{"sysctl":{"net.ipv4.ping_group_range":"0 0"},"idMappings":{}}}"#;
        let spec: Spec = serde_json::from_str(podman).unwrap();
        assert_eq!(spec.annotations["io.container.manager"], "libpod");
        assert_eq!(spec.process.user.gid, 0);
        spec.validate().unwrap();
    }

    /// What Debian's `runc spec` (1.1.5) and `runsc spec -- /bin/echo hi`
    /// (2022) write, verbatim.
    #[test]
    fn reads_what_runc_and_upstream_runsc_write() {
        for (name, text, args, terminal) in [
            (
                "runc",
                include_str!("testdata/runc-spec.json"),
                vec!["sh"],
                true,
            ),
            (
                "runsc",
                include_str!("testdata/runsc-2022-spec.json"),
                vec!["/bin/echo", "hi"],
                false,
            ),
        ] {
            let spec: Spec = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(spec.process.args, args, "{name}");
            assert_eq!(spec.root.path, "rootfs", "{name}");
            assert_eq!(spec.process.terminal, terminal, "{name}");
            spec.validate().unwrap();
        }
    }

    #[test]
    fn the_default_config_parses_and_validates() {
        let v = default_config(&["echo".into(), "hi".into()], "/", "");
        let spec: Spec = serde_json::from_value(v).unwrap();
        assert_eq!(spec.process.args, ["echo", "hi"]);
        assert!(spec.process.terminal);
        spec.validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let mut spec: Spec =
            serde_json::from_str(r#"{"root":{"path":"r"},"process":{"args":[]}}"#).unwrap();
        assert!(spec
            .validate()
            .unwrap_err()
            .to_string()
            .contains("Process.Arg"));
        spec.process.args = vec!["x".into()];
        spec.process.cwd = "rel".into();
        assert!(spec.validate().unwrap_err().to_string().contains("Cwd"));
    }

    #[test]
    fn binds_are_read_in_order_and_file_binds_are_dropped() {
        let mut spec = serde_json::json!({"mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/a", "type": "bind", "source": "/tmp", "options": ["rw"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts", "options": ["ro"]},
            {"destination": "/b", "type": "none", "source": "/", "options": ["rbind", "ro"]},
        ]});
        let all = binds(&spec);
        assert_eq!(
            all.iter()
                .map(|b| (b.destination.as_str(), b.read_only))
                .collect::<Vec<_>>(),
            [("/a", false), ("/etc/hosts", true), ("/b", true)]
        );
        keep_directory_binds(&mut spec);
        let kept: Vec<String> = binds(&spec).into_iter().map(|b| b.destination).collect();
        assert_eq!(kept, ["/a", "/b"]);
        // Mounts of other kinds stay.
        assert_eq!(spec["mounts"].as_array().unwrap().len(), 3);
    }
}
