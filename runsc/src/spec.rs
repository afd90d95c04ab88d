//! The slice of the OCI runtime spec (`config.json`) that `do` writes and
//! `boot` reads. Field names are the spec's, so a real bundle's config
//! parses; the full spec (`oci-spec`) comes with the OCI lifecycle commands.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Spec {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub process: Process,
    pub root: Root,
    #[serde(default)]
    pub hostname: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Process {
    #[serde(default)]
    pub terminal: bool,
    pub user: User,
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub cwd: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Root {
    pub path: String,
    #[serde(default)]
    pub readonly: bool,
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
    }
}
