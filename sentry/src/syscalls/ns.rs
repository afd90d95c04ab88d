//! Namespaces for applications: unshare(2), setns(2), and the UTS names
//! (sethostname, setdomainname). Mount, UTS and IPC namespaces can be
//! made (unshare, clone) and entered (setns on `/proc/[pid]/ns/*`); the
//! sandbox has one PID, network, user, cgroup and time namespace, and
//! asking for another is EINVAL (logged once per flag), never a success
//! that changes nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use abi::Errno;

use super::caps::{CAP_SYS_ADMIN, CAP_SYS_CHROOT};
use super::SysResult;
use crate::fs::FsContext;
use crate::namespace::{IpcNamespace, UtsNamespace};
use crate::procfs::{Ns, NsFile};
use crate::task::Task;

pub(super) const CLONE_NEWTIME: u64 = 0x80;
pub(super) const CLONE_VM: u64 = 0x100;
pub(super) const CLONE_FS: u64 = 0x200;
pub(super) const CLONE_FILES: u64 = 0x400;
pub(super) const CLONE_SIGHAND: u64 = 0x800;
pub(super) const CLONE_THREAD: u64 = 0x10000;
pub(super) const CLONE_NEWNS: u64 = 0x20000;
pub(super) const CLONE_SYSVSEM: u64 = 0x40000;
pub(super) const CLONE_NEWCGROUP: u64 = 0x0200_0000;
pub(super) const CLONE_NEWUTS: u64 = 0x0400_0000;
pub(super) const CLONE_NEWIPC: u64 = 0x0800_0000;
pub(super) const CLONE_NEWUSER: u64 = 0x1000_0000;
pub(super) const CLONE_NEWPID: u64 = 0x2000_0000;
pub(super) const CLONE_NEWNET: u64 = 0x4000_0000;

/// The namespaces the sandbox cannot make another of.
pub(super) const UNSUPPORTED_NS: u64 =
    CLONE_NEWTIME | CLONE_NEWCGROUP | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
/// The namespaces it can.
pub(super) const SUPPORTED_NS: u64 = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC;

/// The unsupported flags already logged.
static LOGGED: AtomicU64 = AtomicU64::new(0);

/// EINVAL for namespace flags the sandbox cannot honour, logged the first
/// time each is asked for.
pub(super) fn refuse_unsupported(call: &str, flags: u64) -> Result<(), Errno> {
    let bad = flags & UNSUPPORTED_NS;
    if bad == 0 {
        return Ok(());
    }
    let new = bad & !LOGGED.fetch_or(bad, Ordering::Relaxed);
    if new != 0 {
        tracing::warn!("{call}: namespace flags {new:#x} not supported (one PID, network, user, cgroup and time namespace per sandbox): EINVAL");
    }
    Err(Errno::EINVAL)
}

/// The caller's fs context in a copy of its mount namespace: root and
/// working directory on the copies of their mounts (copy_mnt_ns).
pub(super) fn new_mount_ns(fs: &FsContext) -> FsContext {
    let (mounts, map) = fs.mounts.copy();
    FsContext {
        mounts: Arc::new(mounts),
        root: map.location(&fs.root),
        cwd: map.location(&fs.cwd),
        umask: fs.umask,
    }
}

/// How many tasks besides `task` hold the object `same` picks out of
/// their published views.
fn others_sharing(task: &Task, same: impl Fn(&crate::process::TaskView) -> bool) -> usize {
    task.kernel
        .all_groups()
        .iter()
        .flat_map(|g| g.lock().threads.clone())
        .filter(|h| h.tid != task.tid)
        .filter_map(|h| h.view())
        .filter(|v| same(v))
        .count()
}

pub fn unshare(task: &mut Task, a: [u64; 6]) -> SysResult {
    let mut flags = a[0];
    const KNOWN: u64 = CLONE_THREAD
        | CLONE_FS
        | CLONE_NEWNS
        | CLONE_SIGHAND
        | CLONE_VM
        | CLONE_FILES
        | CLONE_SYSVSEM
        | SUPPORTED_NS
        | UNSUPPORTED_NS;
    if flags & !KNOWN != 0 {
        return Err(Errno::EINVAL);
    }
    refuse_unsupported("unshare", flags)?;
    // The implications of Linux's ksys_unshare.
    if flags & CLONE_VM != 0 {
        flags |= CLONE_SIGHAND;
    }
    if flags & CLONE_SIGHAND != 0 {
        flags |= CLONE_THREAD;
    }
    if flags & CLONE_NEWNS != 0 {
        flags |= CLONE_FS;
    }
    // check_unshare_flags: the thread, signal-handler and memory sharing
    // can only be "unshared" when there is nothing to unshare.
    if flags & (CLONE_THREAD | CLONE_SIGHAND | CLONE_VM) != 0 {
        if task.tg.lock().threads.len() > 1 {
            return Err(Errno::EINVAL);
        }
        if flags & CLONE_VM != 0 {
            let mm = task.mm.clone();
            if others_sharing(task, |v| Arc::ptr_eq(&v.mm, &mm)) > 0 {
                return Err(Errno::EINVAL);
            }
        }
    }
    if flags & SUPPORTED_NS != 0 && !task.creds.has_cap(CAP_SYS_ADMIN) {
        return Err(Errno::EPERM);
    }
    if flags & CLONE_FS != 0 {
        let fs = task.fs().clone();
        let fs = if flags & CLONE_NEWNS != 0 {
            crate::fs::SharedFs::new(new_mount_ns(&fs))
        } else {
            fs
        };
        task.fs = Arc::new(Mutex::new(fs));
    }
    if flags & CLONE_FILES != 0 {
        let fds = task.fds().clone();
        task.fds = Arc::new(Mutex::new(fds));
    }
    if flags & CLONE_NEWUTS != 0 {
        task.uts = task.uts.copy();
    }
    if flags & CLONE_NEWIPC != 0 {
        task.ipc = IpcNamespace::new();
    }
    // CLONE_SYSVSEM detaches the semaphore undo list; there are no System
    // V semaphores, so there is none.
    task.publish();
    Ok(0)
}

pub fn setns(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (fd, nstype) = (a[0], a[1] as u32 as u64);
    let file = task.fds().get(fd)?;
    let ns = file
        .location()
        .and_then(|l| l.inode().as_any().downcast_ref::<NsFile>())
        .map(|f| f.ns.clone())
        .ok_or(Errno::EINVAL)?;
    if nstype != 0 && nstype != ns.clone_flag() {
        return Err(Errno::EINVAL);
    }
    match ns {
        Ns::Mnt(mounts) => {
            // mntns_install.
            if !task.creds.has_cap(CAP_SYS_ADMIN) || !task.creds.has_cap(CAP_SYS_CHROOT) {
                return Err(Errno::EPERM);
            }
            let fs = task.fs.clone();
            if others_sharing(task, |v| Arc::ptr_eq(&v.fs, &fs)) > 0 {
                return Err(Errno::EINVAL);
            }
            let root = mounts.enter(mounts.root());
            let mut fs = task.fs();
            fs.root = root.clone();
            fs.cwd = root;
            fs.mounts = mounts;
        }
        Ns::Uts(uts) => {
            if !task.creds.has_cap(CAP_SYS_ADMIN) {
                return Err(Errno::EPERM);
            }
            task.uts = uts;
        }
        Ns::Ipc(ipc) => {
            if !task.creds.has_cap(CAP_SYS_ADMIN) {
                return Err(Errno::EPERM);
            }
            task.ipc = ipc;
        }
        Ns::Fixed(..) => {
            refuse_unsupported("setns", ns.clone_flag())?;
        }
    }
    task.publish();
    Ok(0)
}

/// The bytes of a UTS name argument: CAP_SYS_ADMIN, at most 64 bytes.
fn uts_name(task: &Task, addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
    if !task.creds.has_cap(CAP_SYS_ADMIN) {
        return Err(Errno::EPERM);
    }
    let len = len as i32;
    if !(0..=64).contains(&len) {
        return Err(Errno::EINVAL);
    }
    let mut buf = vec![0u8; len as usize];
    task.mm().copy_in(addr, &mut buf)?;
    Ok(buf)
}

pub fn sethostname(task: &mut Task, a: [u64; 6]) -> SysResult {
    let name = uts_name(task, a[0], a[1])?;
    task.uts.set_hostname(name);
    Ok(0)
}

pub fn setdomainname(task: &mut Task, a: [u64; 6]) -> SysResult {
    let name = uts_name(task, a[0], a[1])?;
    task.uts.set_domainname(name);
    Ok(0)
}

/// The UTS namespace a new task gets.
pub(super) fn uts_for_child(task: &Task, flags: u64) -> Arc<UtsNamespace> {
    if flags & CLONE_NEWUTS != 0 {
        task.uts.copy()
    } else {
        task.uts.clone()
    }
}
