//! Starting a child in a new user namespace whose ID maps the launcher
//! writes, as upstream's CLI starts its sandbox when it runs as root with
//! sandboxed or no networking (`runsc/sandbox/sandbox.go`,
//! `createSandboxProcess`): the only ID mapped is nobody (65534) onto the
//! host's nobody, the child runs as that nobody, and keeps only the
//! capabilities named (upstream: CAP_SYS_ADMIN and CAP_SYS_CHROOT, as
//! ambient capabilities, for its chroot set-up).
//!
//! A namespace's ID maps can only be written from outside it by a process
//! with CAP_SETUID over the parent namespace (user_namespaces(7), "Defining
//! user and group ID mappings"), so the child, after unsharing, sends one
//! byte over a socket with SO_PASSCRED (the kernel fills in its PID as the
//! launcher sees it, whatever PID namespace the child is in), the launcher
//! writes `/proc/<pid>/{uid,gid}_map` and answers with one byte, and only
//! then does the child change its IDs and capabilities and exec.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::Context as _;

/// Host nobody: the ID upstream maps and runs its sandbox as.
pub const NOBODY: u32 = 65534;

/// The launcher's half: call [`MapWriter::write_maps`] from a thread other
/// than the one that spawns the child (spawn returns only after exec,
/// which waits for the maps).
pub struct MapWriter {
    sock: UnixStream,
    /// The one line each of uid_map and gid_map gets: (first ID inside,
    /// first ID outside, count).
    uid: (u32, u32, u32),
    gid: (u32, u32, u32),
}

/// IDs 0 to 2^32-2 (every ID but -1, which cannot be mapped), each onto
/// itself.
const ALL_IDS: u32 = u32::MAX;

/// The sync socket: the launcher's end (SO_PASSCRED, so the child's first
/// byte carries its PID) and the child's.
fn sync_pair() -> anyhow::Result<(UnixStream, OwnedFd)> {
    let (ours, theirs) = UnixStream::pair().context("creating the user namespace sync socket")?;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads one int from `one`, alive across the call.
    let r = unsafe {
        libc::setsockopt(
            ours.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).context("setting SO_PASSCRED");
    }
    Ok((ours, theirs.into()))
}

/// In the child (between fork and exec): unshare, ask for the maps and
/// wait until they are written. Async-signal-safe: plain syscalls only.
fn unshare_and_wait_for_maps(fd: libc::c_int, namespaces: libc::c_int) -> std::io::Result<()> {
    let last = std::io::Error::last_os_error;
    // SAFETY: unshare takes flags; write and read use the one-byte
    // buffers on this stack; close takes the sync socket's FD.
    unsafe {
        if libc::unshare(libc::CLONE_NEWUSER | namespaces) != 0 {
            return Err(last());
        }
        let b = [0u8; 1];
        if libc::write(fd, b.as_ptr().cast(), 1) != 1 {
            return Err(last());
        }
        let mut r = [0u8; 1];
        if libc::read(fd, r.as_mut_ptr().cast(), 1) != 1 || r[0] != 1 {
            // The launcher could not write the maps (it says why).
            return Err(std::io::Error::from_raw_os_error(libc::EPERM));
        }
        libc::close(fd);
    }
    Ok(())
}

/// Make `cmd`'s child unshare a user namespace that maps every ID onto
/// itself, together with `namespaces` (owned by it). The child stays root
/// with its capabilities, but they now hold only over the namespaces it
/// owns, not over the host's (no module loading, host mounts, time,
/// devices, ...); files keep their owners, so a Sentry with directfs acts
/// on them as before. Same contract as [`enter_in_child`] for the writer
/// and the descriptor.
pub fn enter_identity_in_child(
    cmd: &mut Command,
    namespaces: libc::c_int,
) -> anyhow::Result<(MapWriter, OwnedFd)> {
    let (ours, child_end) = sync_pair()?;
    let fd = child_end.as_raw_fd();
    // SAFETY: the closure only makes async-signal-safe syscalls on plain
    // data (see `unshare_and_wait_for_maps`).
    unsafe {
        cmd.pre_exec(move || unshare_and_wait_for_maps(fd, namespaces));
    }
    Ok((
        MapWriter {
            sock: ours,
            uid: (0, 0, ALL_IDS),
            gid: (0, 0, ALL_IDS),
        },
        child_end,
    ))
}

/// Make `cmd`'s child unshare a user namespace together with `namespaces`
/// (other CLONE_NEW* flags, owned by the new user namespace), wait for its
/// ID maps, then become `uid`/`gid` inside, keeping only `ambient`
/// capabilities (raised as ambient so they survive exec). The caller must
/// run the returned writer while spawning, and drop the returned
/// descriptor (the child's end of the sync socket, close-on-exec, used
/// before exec only) once spawn has returned, so that a child that died
/// early ends the writer's wait.
pub fn enter_in_child(
    cmd: &mut Command,
    namespaces: libc::c_int,
    inside: u32,
    host: (u32, u32),
    ambient: &'static [u32],
) -> anyhow::Result<(MapWriter, OwnedFd)> {
    let (ours, child_end) = sync_pair()?;
    let fd = child_end.as_raw_fd();
    let caps: u64 = ambient.iter().fold(0, |m, &c| m | 1 << c);
    // SAFETY: runs in the child between fork and exec, calling only
    // async-signal-safe syscalls (unshare, write, read, prctl, setres*id,
    // setgroups, capset) on plain data built before the fork; it
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let last = std::io::Error::last_os_error;
            unshare_and_wait_for_maps(fd, namespaces)?;
            // Keep the permitted set across the change of uid, then
            // narrow it to `caps` and raise those as ambient.
            if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0
                || libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(inside, inside, inside) != 0
                || libc::setresuid(inside, inside, inside) != 0
            {
                return Err(last());
            }
            let header = CapHeader {
                version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
                pid: 0,
            };
            let half = |shift: u32| CapData {
                effective: (caps >> shift) as u32,
                permitted: (caps >> shift) as u32,
                inheritable: (caps >> shift) as u32,
            };
            let data = [half(0), half(32)];
            if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
                return Err(last());
            }
            for &c in ambient {
                if libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    c as libc::c_ulong,
                    0,
                    0,
                ) != 0
                {
                    return Err(last());
                }
            }
            Ok(())
        });
    }
    Ok((
        MapWriter {
            sock: ours,
            uid: (inside, host.0, 1),
            gid: (inside, host.1, 1),
        },
        child_end,
    ))
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

impl MapWriter {
    /// Wait for the child's byte, write its maps and let it go on. Ends
    /// quietly if the child never got that far (spawn reports why).
    pub fn write_maps(mut self) -> anyhow::Result<()> {
        let pid = match self.peer_pid()? {
            Some(pid) => pid,
            None => return Ok(()),
        };
        let written = (|| -> anyhow::Result<()> {
            let write = |file: &str, (inside, outside, count): (u32, u32, u32)| {
                let path = format!("/proc/{pid}/{file}");
                std::fs::write(&path, format!("{inside} {outside} {count}\n"))
                    .with_context(|| format!("writing {path} of the sandbox's user namespace"))
            };
            write("uid_map", self.uid)?;
            write("gid_map", self.gid)
        })();
        let answer = [u8::from(written.is_ok())];
        let _ = std::io::Write::write_all(&mut self.sock, &answer);
        written
    }

    /// The child's PID in our namespace, from its credentials message;
    /// `None` if it closed the socket first.
    fn peer_pid(&mut self) -> anyhow::Result<Option<i32>> {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        // SAFETY: CMSG_SPACE is arithmetic.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::ucred>() as u32) };
        let mut control = vec![0u64; (space as usize).div_ceil(8)];
        // SAFETY: msghdr is plain data; all-zero is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as usize;
        // SAFETY: recvmsg writes into `byte` and `control`, both sized as
        // `msg` says and alive across the call.
        let n = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error()).context("waiting for the sandbox");
        }
        if n == 0 {
            return Ok(None);
        }
        // SAFETY: the kernel filled `control` with `msg_controllen` bytes
        // of well-formed control messages; we read one ucred from one
        // SCM_CREDENTIALS message, unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                    let cred: libc::ucred = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    return Ok(Some(cred.pid));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        anyhow::bail!("the sandbox's credentials did not arrive")
    }
}
