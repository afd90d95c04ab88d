//! Capabilities (capabilities(7)): the effective, permitted, inheritable
//! and bounding sets of a thread, what set*uid and execve do to them, and
//! capget/capset. No file capabilities, ambient set or user namespaces.

use abi::Errno;

use super::SysResult;
use crate::task::{Credentials, Task};

pub const CAP_SETGID: u32 = 6;
pub const CAP_SETUID: u32 = 7;
pub const CAP_SETPCAP: u32 = 8;
pub const CAP_SYS_CHROOT: u32 = 18;
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SYS_NICE: u32 = 23;
pub const CAP_SYS_RESOURCE: u32 = 24;
/// The highest capability this kernel knows (Linux 5.9+: CAP_CHECKPOINT_RESTORE).
pub const CAP_LAST_CAP: u32 = 40;
const ALL: u64 = (1 << (CAP_LAST_CAP + 1)) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub bounding: u64,
    /// PR_SET_KEEPCAPS: keep the permitted set when every uid leaves 0.
    pub keep: bool,
}

impl CapSets {
    pub fn for_uid(uid: u32) -> CapSets {
        let all = if uid == 0 { ALL } else { 0 };
        CapSets {
            effective: all,
            permitted: all,
            inheritable: 0,
            bounding: ALL,
            keep: false,
        }
    }
}

/// After a change of user ids from `old` (real, effective, saved): Linux's
/// `cap_emulate_setxuid` rules.
pub(crate) fn after_setuid(c: &mut Credentials, (old_r, old_e, old_s): (u32, u32, u32)) {
    let had_root = old_r == 0 || old_e == 0 || old_s == 0;
    let has_root = c.ruid == 0 || c.euid == 0 || c.suid == 0;
    if had_root && !has_root && !c.caps.keep {
        c.caps.permitted = 0;
        c.caps.effective = 0;
    }
    if old_e == 0 && c.euid != 0 {
        c.caps.effective = 0;
    }
    if old_e != 0 && c.euid == 0 {
        c.caps.effective = c.caps.permitted;
    }
}

/// What execve does to the sets: root (real or effective) gets its
/// inheritable and bounding capabilities as permitted (Linux treats its
/// programs as having every file capability), effective if euid is 0;
/// anyone else ends with none. KEEPCAPS does not survive.
pub(crate) fn after_exec(c: &mut Credentials) {
    if c.euid == 0 || c.ruid == 0 {
        c.caps.permitted = c.caps.inheritable | c.caps.bounding;
        c.caps.effective = if c.euid == 0 { c.caps.permitted } else { 0 };
    } else {
        c.caps.permitted = 0;
        c.caps.effective = 0;
    }
    c.caps.keep = false;
}

const VERSION_1: u32 = 0x1998_0330;
const VERSION_2: u32 = 0x2007_1026;
const VERSION_3: u32 = 0x2008_0522;

/// The header's version and how many 32-bit words each set has; an
/// unknown version gets VERSION_3 written back and EINVAL.
fn header(task: &Task, addr: u64) -> Result<(u32, i32, usize), Errno> {
    let mut b = [0u8; 8];
    task.mm().copy_in(addr, &mut b)?;
    let version = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
    let pid = i32::from_le_bytes(b[4..].try_into().expect("4 bytes"));
    match version {
        VERSION_1 => Ok((version, pid, 1)),
        VERSION_2 | VERSION_3 => Ok((version, pid, 2)),
        _ => {
            task.mm().copy_out(addr, &VERSION_3.to_le_bytes())?;
            Err(Errno::EINVAL)
        }
    }
}

pub fn capget(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (_, pid, words) = match header(task, a[0]) {
        // A version probe (no data) succeeds having written the version.
        Err(Errno::EINVAL) if a[1] == 0 => return Ok(0),
        other => other?,
    };
    if pid < 0 {
        return Err(Errno::EINVAL);
    }
    let caps = if pid == 0 || pid == task.tid {
        task.creds.caps
    } else {
        let (_, t) = task.kernel.find_task(pid).ok_or(Errno::ESRCH)?;
        t.view().ok_or(Errno::ESRCH)?.creds.caps
    };
    if a[1] == 0 {
        return Ok(0);
    }
    // struct __user_cap_data_struct { effective, permitted, inheritable }
    // per 32-bit word.
    let mut out = Vec::with_capacity(12 * words);
    for w in 0..words {
        for set in [caps.effective, caps.permitted, caps.inheritable] {
            out.extend_from_slice(&((set >> (32 * w)) as u32).to_le_bytes());
        }
    }
    task.mm().copy_out(a[1], &out)?;
    Ok(0)
}

pub fn capset(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (_, pid, words) = header(task, a[0])?;
    if pid != 0 && pid != task.tid {
        return Err(Errno::EPERM);
    }
    let mut raw = vec![0u8; 12 * words];
    task.mm().copy_in(a[1], &mut raw)?;
    let (mut effective, mut permitted, mut inheritable) = (0u64, 0u64, 0u64);
    for (w, chunk) in raw.chunks_exact(12).enumerate() {
        let word = |i: usize| {
            u64::from(u32::from_le_bytes(
                chunk[4 * i..4 * i + 4].try_into().expect("4"),
            )) << (32 * w)
        };
        effective |= word(0);
        permitted |= word(1);
        inheritable |= word(2);
    }
    // Bits past the last capability are dropped before any check.
    (effective, permitted, inheritable) = (effective & ALL, permitted & ALL, inheritable & ALL);
    let old = task.creds.caps;
    // Linux's cap_capset: inheritable may only grow within the permitted
    // set (or anything with CAP_SETPCAP) and the bounding set; permitted
    // may only shrink; effective must lie within the new permitted set.
    let inheritable_ok =
        inheritable & !(old.inheritable | old.permitted) == 0 || task.creds.has_cap(CAP_SETPCAP);
    if !inheritable_ok
        || inheritable & !(old.inheritable | old.bounding) != 0
        || permitted & !old.permitted != 0
        || effective & !permitted != 0
    {
        return Err(Errno::EPERM);
    }
    task.creds.caps = CapSets {
        effective,
        permitted,
        inheritable,
        ..old
    };
    task.publish();
    Ok(0)
}

/// prctl's capability options; None for options that are not about them.
pub fn prctl(task: &mut Task, a: [u64; 6]) -> Option<SysResult> {
    const PR_GET_KEEPCAPS: u64 = 7;
    const PR_SET_KEEPCAPS: u64 = 8;
    const PR_CAPBSET_READ: u64 = 23;
    const PR_CAPBSET_DROP: u64 = 24;
    Some(match a[0] {
        PR_GET_KEEPCAPS => Ok(u64::from(task.creds.caps.keep)),
        PR_SET_KEEPCAPS => match a[1] {
            0 | 1 => {
                task.creds.caps.keep = a[1] == 1;
                Ok(0)
            }
            _ => Err(Errno::EINVAL),
        },
        PR_CAPBSET_READ if a[1] <= u64::from(CAP_LAST_CAP) => {
            Ok((task.creds.caps.bounding >> a[1]) & 1)
        }
        PR_CAPBSET_DROP if a[1] <= u64::from(CAP_LAST_CAP) => {
            if !task.creds.has_cap(CAP_SETPCAP) {
                return Some(Err(Errno::EPERM));
            }
            task.creds.caps.bounding &= !(1 << a[1]);
            task.publish();
            Ok(0)
        }
        PR_CAPBSET_READ | PR_CAPBSET_DROP => Err(Errno::EINVAL),
        _ => return None,
    })
}
