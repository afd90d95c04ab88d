//! User and group identities: the set*id family, groups, umask.

use abi::Errno;

use super::SysResult;
use crate::task::Task;

/// `-1` as a uid/gid argument: leave that id unchanged.
const KEEP: u32 = u32::MAX;

/// Which of the three ids (real, effective, saved) a set*id call touches.
#[derive(Clone, Copy)]
enum Ids {
    User,
    Group,
}

/// The capability that lets a task set any id of this kind.
fn set_cap(which: Ids) -> u32 {
    match which {
        Ids::User => super::caps::CAP_SETUID,
        Ids::Group => super::caps::CAP_SETGID,
    }
}

fn ids(task: &mut Task, which: Ids) -> (&mut u32, &mut u32, &mut u32) {
    let c = &mut task.creds;
    match which {
        Ids::User => (&mut c.ruid, &mut c.euid, &mut c.suid),
        Ids::Group => (&mut c.rgid, &mut c.egid, &mut c.sgid),
    }
}

/// setresuid/setresgid: an unprivileged task may only pick among its
/// current real, effective and saved ids.
fn set_res(task: &mut Task, which: Ids, r: u32, e: u32, s: u32) -> SysResult {
    let privileged = task.creds.has_cap(set_cap(which));
    let (cr, ce, cs) = ids(task, which);
    let allowed = |v: u32| v == KEEP || privileged || v == *cr || v == *ce || v == *cs;
    if !(allowed(r) && allowed(e) && allowed(s)) {
        return Err(Errno::EPERM);
    }
    for (cur, new) in [(cr, r), (ce, e), (cs, s)] {
        if new != KEEP {
            *cur = new;
        }
    }
    Ok(0)
}

/// setuid/setgid: privileged tasks set all three ids; others only the
/// effective id, to their real or saved id.
fn set_one(task: &mut Task, which: Ids, v: u32) -> SysResult {
    if v == KEEP {
        return Err(Errno::EINVAL);
    }
    let privileged = task.creds.has_cap(set_cap(which));
    let (r, e, s) = ids(task, which);
    if privileged {
        (*r, *e, *s) = (v, v, v);
    } else if v == *r || v == *s {
        *e = v;
    } else {
        return Err(Errno::EPERM);
    }
    Ok(0)
}

/// setreuid/setregid: the saved id follows the effective id when the real
/// id is set, or the effective id moves away from the real one.
fn set_re(task: &mut Task, which: Ids, new_r: u32, new_e: u32) -> SysResult {
    let privileged = task.creds.has_cap(set_cap(which));
    let (r, e, s) = ids(task, which);
    let (old_r, old_e, old_s) = (*r, *e, *s);
    if !privileged
        && (new_r != KEEP && new_r != old_r && new_r != old_e
            || new_e != KEEP && new_e != old_r && new_e != old_e && new_e != old_s)
    {
        return Err(Errno::EPERM);
    }
    if new_r != KEEP {
        *r = new_r;
    }
    if new_e != KEEP {
        *e = new_e;
    }
    if new_r != KEEP || (new_e != KEEP && new_e != old_r) {
        *s = *e;
    }
    Ok(0)
}

/// After a set*uid: a real uid that changed to one (not root) whose
/// tasks already exceed RLIMIT_NPROC does not fail the call (programs
/// rarely check it) but the next execve, as Linux's flag_nproc_exceeded.
/// The task is still counted under its old uid here.
fn flag_nproc_exceeded(task: &mut Task, old_ruid: u32) {
    let uid = task.creds.ruid;
    if uid == old_ruid {
        return;
    }
    let limit = task.tg.soft_limit(crate::limits::RLIMIT_NPROC);
    task.nproc_exceeded =
        uid != 0 && super::clone::tasks_of(task, uid, limit.saturating_add(1)) > limit;
}

pub fn setuid(task: &mut Task, a: [u64; 6]) -> SysResult {
    let old = (task.creds.ruid, task.creds.euid, task.creds.suid);
    let r = set_one(task, Ids::User, a[0] as u32);
    super::caps::after_setuid(&mut task.creds, old);
    flag_nproc_exceeded(task, old.0);
    task.publish();
    r
}

pub fn setgid(task: &mut Task, a: [u64; 6]) -> SysResult {
    let r = set_one(task, Ids::Group, a[0] as u32);
    task.publish();
    r
}

pub fn setreuid(task: &mut Task, a: [u64; 6]) -> SysResult {
    let old = (task.creds.ruid, task.creds.euid, task.creds.suid);
    let r = set_re(task, Ids::User, a[0] as u32, a[1] as u32);
    super::caps::after_setuid(&mut task.creds, old);
    flag_nproc_exceeded(task, old.0);
    task.publish();
    r
}

pub fn setregid(task: &mut Task, a: [u64; 6]) -> SysResult {
    let r = set_re(task, Ids::Group, a[0] as u32, a[1] as u32);
    task.publish();
    r
}

pub fn setresuid(task: &mut Task, a: [u64; 6]) -> SysResult {
    let old = (task.creds.ruid, task.creds.euid, task.creds.suid);
    let r = set_res(task, Ids::User, a[0] as u32, a[1] as u32, a[2] as u32);
    super::caps::after_setuid(&mut task.creds, old);
    flag_nproc_exceeded(task, old.0);
    task.publish();
    r
}

pub fn setresgid(task: &mut Task, a: [u64; 6]) -> SysResult {
    let r = set_res(task, Ids::Group, a[0] as u32, a[1] as u32, a[2] as u32);
    task.publish();
    r
}

fn get_res(task: &Task, which: Ids, a: [u64; 6]) -> SysResult {
    let c = &task.creds;
    let (r, e, s) = match which {
        Ids::User => (c.ruid, c.euid, c.suid),
        Ids::Group => (c.rgid, c.egid, c.sgid),
    };
    let mut mm = task.mm();
    for (addr, v) in [(a[0], r), (a[1], e), (a[2], s)] {
        mm.copy_out(addr, &v.to_le_bytes())?;
    }
    Ok(0)
}

pub fn getresuid(task: &mut Task, a: [u64; 6]) -> SysResult {
    get_res(task, Ids::User, a)
}

pub fn getresgid(task: &mut Task, a: [u64; 6]) -> SysResult {
    get_res(task, Ids::Group, a)
}

/// The largest supplementary group list (NGROUPS_MAX).
const NGROUPS_MAX: u64 = 65536;

pub fn getgroups(task: &mut Task, a: [u64; 6]) -> SysResult {
    let size = a[0] as i32;
    let groups = &task.creds.groups;
    if size < 0 {
        return Err(Errno::EINVAL);
    }
    if size == 0 {
        return Ok(groups.len() as u64);
    }
    if (size as usize) < groups.len() {
        return Err(Errno::EINVAL);
    }
    let bytes: Vec<u8> = groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    task.mm().copy_out(a[1], &bytes)?;
    Ok(groups.len() as u64)
}

pub fn setgroups(task: &mut Task, a: [u64; 6]) -> SysResult {
    if a[0] > NGROUPS_MAX {
        return Err(Errno::EINVAL);
    }
    if !task.creds.has_cap(super::caps::CAP_SETGID) {
        return Err(Errno::EPERM);
    }
    let mut raw = vec![0u8; a[0] as usize * 4];
    task.mm().copy_in(a[1], &mut raw)?;
    let mut groups: Vec<u32> = raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4")))
        .collect();
    groups.sort_unstable();
    task.creds.groups = groups;
    task.publish();
    Ok(0)
}

pub fn umask(task: &mut Task, a: [u64; 6]) -> SysResult {
    let new = (a[0] & 0o777) as u32;
    Ok(u64::from(std::mem::replace(&mut task.fs().umask, new)))
}
