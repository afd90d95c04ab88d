//! The namespaces a task belongs to, besides its mount namespace (which
//! lives in its `FsContext`, as every walk needs it with the root and
//! working directory): UTS (hostname, domain name) and IPC, each with
//! the inode number `/proc/[pid]/ns/*` shows. The PID, network, user,
//! cgroup and time namespaces are the sandbox's one each: they have
//! inode numbers for the ns links, and nothing can make new ones.

use std::sync::{Arc, Mutex};

use vfs::mount::new_ns_ino;

/// A UTS namespace: the names uname(2) reports.
pub(crate) struct UtsNamespace {
    ino: u32,
    names: Mutex<UtsNames>,
}

#[derive(Clone)]
pub(crate) struct UtsNames {
    pub hostname: Vec<u8>,
    pub domainname: Vec<u8>,
}

impl UtsNamespace {
    pub(crate) fn new(hostname: &str) -> Arc<UtsNamespace> {
        Arc::new(UtsNamespace {
            ino: new_ns_ino(),
            names: Mutex::new(UtsNames {
                hostname: hostname.as_bytes().to_vec(),
                domainname: b"(none)".to_vec(),
            }),
        })
    }

    pub(crate) fn ino(&self) -> u32 {
        self.ino
    }

    pub(crate) fn names(&self) -> UtsNames {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_hostname(&self, name: Vec<u8>) {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hostname = name;
    }

    pub(crate) fn set_domainname(&self, name: Vec<u8>) {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .domainname = name;
    }

    /// A new namespace starting with a copy of this one's names.
    pub(crate) fn copy(&self) -> Arc<UtsNamespace> {
        Arc::new(UtsNamespace {
            ino: new_ns_ino(),
            names: Mutex::new(self.names()),
        })
    }
}

/// An IPC namespace. The Sentry has no System V IPC objects or POSIX
/// message queues yet (those calls are ENOSYS), so a namespace holds
/// nothing but its identity: a new one is exactly as empty as Linux's.
pub(crate) struct IpcNamespace {
    ino: u32,
}

impl IpcNamespace {
    pub(crate) fn new() -> Arc<IpcNamespace> {
        Arc::new(IpcNamespace { ino: new_ns_ino() })
    }

    pub(crate) fn ino(&self) -> u32 {
        self.ino
    }
}

/// The namespaces every task of the sandbox shares because nothing can
/// make another: (name in `/proc/[pid]/ns`, inode number).
pub(crate) struct FixedNamespaces(pub Vec<(&'static str, u32)>);

impl FixedNamespaces {
    pub(crate) fn new() -> FixedNamespaces {
        FixedNamespaces(
            [
                "cgroup",
                "net",
                "pid",
                "pid_for_children",
                "time",
                "time_for_children",
                "user",
            ]
            .iter()
            .scan(None, |prev: &mut Option<u32>, &name| {
                // pid_for_children and time_for_children are the same
                // namespace as pid and time.
                let ino = match (name, *prev) {
                    ("pid_for_children" | "time_for_children", Some(p)) => p,
                    _ => new_ns_ino(),
                };
                *prev = Some(ino);
                Some((name, ino))
            })
            .collect(),
        )
    }
}
