//! mount(2) and umount2(2) in the caller's mount namespace: new tmpfs,
//! proc and sysfs instances, bind mounts (recursive too), remounts that
//! change the per-mount flags, moves, and unmounts (lazy too).
//!
//! There is no shared-subtree propagation: every mount is private, so
//! mounts made in one namespace never reach another. Propagation types
//! (MS_SHARED, MS_PRIVATE, MS_SLAVE, MS_UNBINDABLE, with MS_REC) are
//! checked as Linux checks them and accepted, which is what the common
//! `unshare -m` + `mount --make-rprivate /` pattern needs; mountinfo shows
//! every mount private (no optional fields).

use std::sync::Arc;

use abi::Errno;
use vfs::mount::{MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY};
use vfs::{Location, Mounts};

use super::caps::CAP_SYS_ADMIN;
use super::file::{path_arg, start_of, Walker, AT_FDCWD};
use super::SysResult;
use crate::task::Task;

// mount(2) flags (include/uapi/linux/mount.h).
const MS_REMOUNT: u64 = 32;
const MS_BIND: u64 = 4096;
const MS_MOVE: u64 = 8192;
const MS_REC: u64 = 16384;
const MS_SILENT: u64 = 32768;
const MS_UNBINDABLE: u64 = 1 << 17;
const MS_PRIVATE: u64 = 1 << 18;
const MS_SLAVE: u64 = 1 << 19;
const MS_SHARED: u64 = 1 << 20;
const MS_PROPAGATION: u64 = MS_UNBINDABLE | MS_PRIVATE | MS_SLAVE | MS_SHARED;
/// The magic number old callers put in the top half of the flags.
const MS_MGC_MSK: u64 = 0xffff_0000;
const MS_MGC_VAL: u64 = 0xc0ed_0000;
/// The flags the VFS enforces per mount.
const MOUNT_FLAGS: u64 = (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC) as u64;

// umount2(2) flags.
const MNT_FORCE: u64 = 1;
const MNT_DETACH: u64 = 2;
const MNT_EXPIRE: u64 = 4;
const UMOUNT_NOFOLLOW: u64 = 8;

/// A path argument looked up from the working directory.
fn lookup(task: &Task, addr: u64, follow: bool) -> Result<Location, Errno> {
    let path = path_arg(task, addr)?;
    let start = start_of(task, AT_FDCWD, &path)?;
    Walker::of(task).ctx().lookup(&start, &path, follow)
}

/// A string argument of at most `max` bytes.
fn string_arg(task: &Task, addr: u64, max: usize) -> Result<String, Errno> {
    let bytes = task.mm().copy_in_string(addr, max)?;
    String::from_utf8(bytes).map_err(|_| Errno::EINVAL)
}

pub fn mount(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (source, target, fs_type, mut flags, data) = (a[0], a[1], a[2], a[3], a[4]);
    if flags & MS_MGC_MSK == MS_MGC_VAL {
        flags &= !MS_MGC_MSK;
    }
    if !task.creds.has_cap(CAP_SYS_ADMIN) {
        return Err(Errno::EPERM);
    }
    let at = lookup(task, target, true)?;
    let mounts = task.fs().mounts.clone();
    let mount_flags = (flags & MOUNT_FLAGS) as u32;
    // The order of Linux's path_mount.
    if flags & MS_REMOUNT != 0 {
        if !at.is_mount_root() || !mounts.contains(&at.mount) {
            return Err(Errno::EINVAL);
        }
        // With or without MS_BIND, the flags the VFS enforces are the
        // mount's; filesystem options of a remount are not applied.
        at.mount.set_flags(mount_flags);
        return Ok(0);
    }
    if flags & MS_BIND != 0 {
        let src = lookup(task, source, true)?;
        if src.dentry.is_dir() != at.dentry.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        // do_loopback: both ends in the caller's namespace.
        if !mounts.contains(&src.mount) || !mounts.contains(&at.mount) {
            return Err(Errno::EINVAL);
        }
        bind(&mounts, &at, &src, flags & MS_REC != 0)?;
        return Ok(0);
    }
    if flags & MS_PROPAGATION != 0 {
        // Exactly one propagation type and nothing else but MS_REC and
        // MS_SILENT, on a mount root (do_change_type). Linux lets a
        // CAP_SYS_ADMIN caller change another namespace's mounts too.
        let kind = flags & !(MS_REC | MS_SILENT);
        if kind & !MS_PROPAGATION != 0 || kind.count_ones() != 1 || !at.is_mount_root() {
            return Err(Errno::EINVAL);
        }
        return Ok(0);
    }
    if flags & MS_MOVE != 0 {
        let src = lookup(task, source, true)?;
        if src.dentry.is_dir() != at.dentry.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        mounts.move_mount(&src, &at)?;
        return Ok(0);
    }
    let fs_type = string_arg(task, fs_type, 4096)?;
    let data = if data == 0 {
        String::new()
    } else {
        string_arg(task, data, 4096)?
    };
    if !at.dentry.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let root = task.kernel.filesystems.new_instance(&fs_type, &data)?;
    let source = if source == 0 {
        "none".to_string()
    } else {
        string_arg(task, source, 4096)?
    };
    mounts.mount_fs(&at, root, &fs_type, &source, mount_flags)?;
    Ok(0)
}

/// Attach what `src` names on top of `at`; with `rec`, the mounts inside
/// it come along, attached at the same places in the copy.
fn bind(mounts: &Mounts, at: &Location, src: &Location, rec: bool) -> Result<(), Errno> {
    // What is inside the source is listed before the copy exists, so a
    // tree bound into itself is copied once.
    let inside: Vec<Arc<vfs::Mount>> = if rec {
        mounts
            .submounts(&src.mount)
            .into_iter()
            .filter(|m| {
                m.mountpoint()
                    .is_some_and(|p| p.dentry.is_within(&src.dentry))
            })
            .collect()
    } else {
        Vec::new()
    };
    let copy = mounts.mount(
        at,
        src.dentry.clone(),
        &src.mount.fs_type,
        &src.mount.source,
        src.mount.flags(),
    )?;
    for kid in inside {
        let Some(point) = kid.mountpoint() else {
            continue;
        };
        let kid_root = Location {
            dentry: kid.root().clone(),
            mount: kid,
        };
        let new_at = Location {
            mount: copy.clone(),
            dentry: point.dentry,
        };
        bind(mounts, &new_at, &kid_root, true)?;
    }
    Ok(())
}

pub fn umount2(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = a[1];
    if flags & !(MNT_FORCE | MNT_DETACH | MNT_EXPIRE | UMOUNT_NOFOLLOW) != 0
        || (flags & MNT_EXPIRE != 0 && flags & (MNT_FORCE | MNT_DETACH) != 0)
    {
        return Err(Errno::EINVAL);
    }
    if !task.creds.has_cap(CAP_SYS_ADMIN) {
        return Err(Errno::EPERM);
    }
    if flags & MNT_EXPIRE != 0 {
        tracing::info!("umount2: MNT_EXPIRE not supported: EINVAL");
        return Err(Errno::EINVAL);
    }
    let loc = lookup(task, a[0], flags & UMOUNT_NOFOLLOW == 0)?;
    if !loc.is_mount_root() || loc.mount.mountpoint().is_none() {
        return Err(Errno::EINVAL);
    }
    let mounts = task.fs().mounts.clone();
    // do_umount: only the caller's namespace's mounts.
    if !mounts.contains(&loc.mount) {
        return Err(Errno::EINVAL);
    }
    if flags & MNT_DETACH != 0 {
        mounts.detach_tree(&loc)?;
        return Ok(0);
    }
    // Busy: something is mounted inside, or someone besides the tree and
    // this call holds the mount (an open file, a working directory).
    if !mounts.submounts(&loc.mount).is_empty() || Arc::strong_count(&loc.mount) > 2 {
        return Err(Errno::EBUSY);
    }
    mounts.unmount(&loc)?;
    Ok(0)
}

/// pivot_root(2): `new_root` (a mount root) becomes the root of the mount
/// namespace and the old root goes to `put_old`; every process whose root
/// or working directory was the old root moves to the new one, as Linux's
/// `chroot_fs_refs` does.
pub fn pivot_root(task: &mut Task, a: [u64; 6]) -> SysResult {
    if !task.creds.has_cap(CAP_SYS_ADMIN) {
        return Err(Errno::EPERM);
    }
    let new_root = lookup(task, a[0], true)?;
    let put_old = lookup(task, a[1], true)?;
    if !new_root.dentry.is_dir() || !put_old.dentry.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let mounts = task.fs().mounts.clone();
    let old_root = mounts.root();
    // A chrooted caller cannot pivot.
    if !task.fs().root.same(&old_root) {
        return Err(Errno::EINVAL);
    }
    mounts.pivot_root(&new_root, &put_old)?;
    let new = mounts.root();
    let mut contexts = vec![task.fs.clone()];
    for g in task.kernel.all_groups() {
        let threads = g.lock().threads.clone();
        contexts.extend(threads.iter().filter_map(|t| t.view()).map(|v| v.fs));
    }
    for fs in contexts {
        let mut fs = fs.lock().unwrap_or_else(|e| e.into_inner());
        if fs.root.same(&old_root) {
            fs.root = new.clone();
        }
        if fs.cwd.same(&old_root) {
            fs.cwd = new.clone();
        }
    }
    Ok(0)
}
