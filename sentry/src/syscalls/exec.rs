//! execve and execveat.

use abi::Errno;

use super::file::{at_location, path_arg, Walker, AT_FDCWD};
use super::SysResult;
use crate::task::Task;

/// Longest single argument or environment string (MAX_ARG_STRLEN).
const MAX_ARG_STRLEN: usize = 32 * 4096;
/// Total size of argv and envp: a quarter of the default 8 MiB stack, as
/// Linux computes ARG_MAX.
const MAX_ARG_TOTAL: usize = 2 << 20;

/// Read a NULL-terminated array of string pointers.
fn string_array(task: &Task, addr: u64, total: &mut usize) -> Result<Vec<String>, Errno> {
    let mut out = Vec::new();
    if addr == 0 {
        return Ok(out);
    }
    for i in 0u64.. {
        let mut ptr = [0u8; 8];
        task.mm().copy_in(addr + i * 8, &mut ptr)?;
        let ptr = u64::from_le_bytes(ptr);
        if ptr == 0 {
            break;
        }
        let s = task
            .mm()
            .copy_in_string(ptr, MAX_ARG_STRLEN - 1)
            .map_err(|e| {
                if e == Errno::ENAMETOOLONG {
                    Errno::E2BIG
                } else {
                    e
                }
            })?;
        *total += s.len() + 1 + 8;
        if *total > MAX_ARG_TOTAL {
            return Err(Errno::E2BIG);
        }
        // Arguments are bytes to Linux; ours must be UTF-8 until the
        // loader carries bytes.
        out.push(String::from_utf8(s).map_err(|_| Errno::EINVAL)?);
    }
    Ok(out)
}

fn exec(task: &mut Task, dirfd: u64, path: u64, argv: u64, envp: u64, flags: u64) -> SysResult {
    const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;
    const AT_SYMLINK_NOFOLLOW: u64 = libc::AT_SYMLINK_NOFOLLOW as u64;
    if flags & !(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 {
        return Err(Errno::EINVAL);
    }
    if task.nproc_exceeded {
        // A set*uid went past RLIMIT_NPROC (see creds.rs): fail while the
        // uid is still over it, counting this task.
        let limit = task.tg.soft_limit(crate::limits::RLIMIT_NPROC);
        if super::clone::tasks_of(task, task.creds.ruid, limit.saturating_add(1)) > limit {
            return Err(Errno::EAGAIN);
        }
        task.nproc_exceeded = false;
    }
    let name = path_arg(task, path)?;
    // The program is found again by path when loading: name it from the
    // task's root when a descriptor is involved.
    let target = if name.is_empty() || (!name.starts_with('/') && dirfd != AT_FDCWD) {
        let dir = at_location(task, dirfd, "", AT_EMPTY_PATH)?;
        let base = Walker::of(task).ctx().path_of(&dir);
        if name.is_empty() {
            base
        } else {
            crate::fs::join(&base, &name)
        }
    } else {
        name
    };
    if flags & AT_SYMLINK_NOFOLLOW != 0
        && at_location(task, AT_FDCWD, &target, AT_SYMLINK_NOFOLLOW)?
            .dentry
            .is_symlink()
    {
        return Err(Errno::ELOOP);
    }
    let mut total = 0;
    let mut args = string_array(task, argv, &mut total)?;
    let envs = string_array(task, envp, &mut total)?;
    if args.is_empty() {
        // Linux (5.18+) gives a program started with no argv an empty argv[0].
        args.push(String::new());
    }
    task.exec(&target, args, &envs)?;
    // The new image starts with rax = 0.
    Ok(0)
}

pub fn execve(task: &mut Task, a: [u64; 6]) -> SysResult {
    exec(task, AT_FDCWD, a[0], a[1], a[2], 0)
}

pub fn execveat(task: &mut Task, a: [u64; 6]) -> SysResult {
    exec(task, a[0], a[1], a[2], a[3], a[4])
}
