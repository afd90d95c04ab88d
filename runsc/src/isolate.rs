//! Host-side confinement of the sandbox process and the sockets and
//! terminals the CLI hands it: namespaces, the empty root, the control
//! socket (bound by the CLI, listened on by the sandbox, §4.1), and
//! console sockets (a pty master sent as runc sends it).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use anyhow::{bail, Context as _};

use crate::cli::Config;

fn check(r: libc::c_int, what: &str) -> anyhow::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error()).context(what.to_string())
    } else {
        Ok(())
    }
}

fn cstr(s: &str) -> anyhow::Result<CString> {
    CString::new(s).with_context(|| format!("{s:?} contains a NUL byte"))
}

/// Whether this runsc may build namespaces and roots (it runs as root and
/// `--TESTONLY-unsafe-nonroot` is not set).
pub fn isolating(config: &Config) -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    let euid = unsafe { libc::geteuid() };
    euid == 0 && !config.get_bool("TESTONLY-unsafe-nonroot")
}

/// Namespaces the sandbox process gets besides its PID namespace (which
/// the launcher makes with [`new_pid_namespace_for_children`]): mount,
/// IPC, UTS and network (the Sentry has no host networking).
pub const SANDBOX_NAMESPACES: libc::c_int =
    libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWNET;

/// Make this process's next child the first process of a new PID
/// namespace (upstream starts the sandbox with CLONE_NEWPID). The calling
/// process itself stays where it is; call it just before the one fork it
/// applies to.
pub fn new_pid_namespace_for_children() -> anyhow::Result<()> {
    // SAFETY: unshare takes flags only.
    check(
        unsafe { libc::unshare(libc::CLONE_NEWPID) },
        "creating a PID namespace for the sandbox",
    )
}

/// In the sandbox: make every mount private, put an empty tmpfs over the
/// state directory in our own mount namespace, and make it our root. After
/// this no host path resolves; the Sentry reaches container files only
/// through the FDs it already holds.
pub fn enter_empty_root(config: &Config) -> anyhow::Result<()> {
    let dir = cstr(config.get("root"))?;
    let none = cstr("none")?;
    let tmpfs = cstr("tmpfs")?;
    let slash = cstr("/")?;
    let opts = cstr("size=4k,nr_inodes=4,mode=0555")?;
    // SAFETY: mount and chroot read the NUL-terminated strings above,
    // which live across the calls.
    unsafe {
        check(
            libc::mount(
                none.as_ptr(),
                slash.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            "making mounts private",
        )?;
        check(
            libc::mount(
                tmpfs.as_ptr(),
                dir.as_ptr(),
                tmpfs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                opts.as_ptr().cast(),
            ),
            "mounting an empty root",
        )?;
        check(libc::chroot(dir.as_ptr()), "changing root")?;
        check(libc::chdir(slash.as_ptr()), "changing to the new root")?;
    }
    Ok(())
}

/// The sandbox's side of the control socket: listen on the bound socket
/// the launcher passed.
pub fn listen(fd: OwnedFd) -> anyhow::Result<UnixListener> {
    // SAFETY: listen takes a descriptor we own and a backlog.
    check(unsafe { libc::listen(fd.as_raw_fd(), 128) }, "listen")?;
    Ok(UnixListener::from(fd))
}

fn sockaddr(path: &str) -> anyhow::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        bail!("socket path {path:?} is too long");
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

/// The CLI's side: a stream socket bound at `path` but not listening (the
/// sandbox listens). Long paths are bound through `/proc/self/fd/<dir>`.
pub fn bind_control_socket(path: &Path) -> anyhow::Result<OwnedFd> {
    let _ = std::fs::remove_file(path);
    let dir = path.parent().context("control socket path has no parent")?;
    let name = path
        .file_name()
        .context("control socket path has no name")?;
    let dirf = std::fs::File::open(dir).with_context(|| format!("opening {dir:?}"))?;
    let short = format!(
        "/proc/self/fd/{}/{}",
        dirf.as_raw_fd(),
        name.to_string_lossy()
    );
    let full = path.to_string_lossy();
    let target = if full.len() < 100 {
        full.to_string()
    } else {
        short
    };
    let (addr, len) = sockaddr(&target)?;
    // SAFETY: socket takes integers and returns a new descriptor.
    let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    check(raw, "creating the control socket")?;
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    check(r, &format!("binding the control socket {path:?}"))?;
    Ok(sock)
}

/// Connect to a control socket (through `/proc/self/fd` when the path is
/// too long for a socket address).
pub fn connect_control(path: &Path) -> std::io::Result<UnixStream> {
    if path.as_os_str().len() < 100 {
        return UnixStream::connect(path);
    }
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)?;
    UnixStream::connect(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

/// A new host pseudoterminal: (master, slave).
pub fn open_pty() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: posix_openpt takes flags and returns a new descriptor.
    let m = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    check(m, "opening /dev/ptmx")?;
    // SAFETY: `m` is a fresh descriptor nothing else owns.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: grantpt/unlockpt take our master; ptsname_r writes at most
    // buf.len() bytes into `buf`.
    unsafe {
        check(libc::grantpt(m), "grantpt")?;
        check(libc::unlockpt(m), "unlockpt")?;
        if libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()) != 0 {
            bail!("ptsname: {}", std::io::Error::last_os_error());
        }
    }
    // SAFETY: ptsname_r NUL-terminated `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    // SAFETY: open reads the NUL-terminated name.
    let s = unsafe {
        libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    check(s, "opening the pty slave")?;
    // SAFETY: `s` is a fresh descriptor nothing else owns.
    Ok((master, unsafe { OwnedFd::from_raw_fd(s) }))
}

/// Send `fd` over the console socket at `path` as runc does: one message
/// whose data is the terminal's name and whose SCM_RIGHTS carries the FD.
pub fn send_console(path: &str, fd: &OwnedFd) -> anyhow::Result<()> {
    let sock = UnixStream::connect(path)
        .with_context(|| format!("connecting to console socket {path:?}"))?;
    let name = b"/dev/ptmx";
    let mut iov = libc::iovec {
        iov_base: name.as_ptr() as *mut libc::c_void,
        iov_len: name.len(),
    };
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: the control buffer is aligned and CMSG_SPACE(4) bytes long,
    // room for one header and one int; sendmsg reads `msg`, `iov` and
    // `control`, all live across the call.
    let r = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd.as_raw_fd());
        libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("sending the console to {path:?}"));
    }
    Ok(())
}

/// Capabilities the Sentry keeps once it runs (as upstream's sandbox with
/// directfs): reading any container file through its held descriptors
/// (DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER) and tracing its own stub
/// processes (SYS_PTRACE). Everything else, CAP_SYS_CHROOT and
/// CAP_SYS_ADMIN included, is gone from every set.
pub const SENTRY_CAPS: &[u32] = &[
    1,  // CAP_DAC_OVERRIDE
    2,  // CAP_DAC_READ_SEARCH
    3,  // CAP_FOWNER
    19, // CAP_SYS_PTRACE
];

/// Drop every capability but `keep` from the bounding, ambient,
/// inheritable, permitted and effective sets, and set no_new_privs.
pub fn drop_capabilities(keep: &[u32]) -> anyhow::Result<()> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    // SAFETY: prctl with integer arguments only.
    unsafe {
        check(
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            ),
            "clearing ambient capabilities",
        )?;
        for cap in (0..=last).filter(|c| !keep.contains(c)) {
            check(
                libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0),
                "dropping a bounding capability",
            )?;
        }
    }
    let mask: u64 = keep.iter().fold(0, |m, &c| m | 1 << c);
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let half = |shift: u32| Data {
        effective: (mask >> shift) as u32,
        permitted: (mask >> shift) as u32,
        inheritable: 0,
    };
    let data = [half(0), half(32)];
    // SAFETY: capset reads one header and two data structs, laid out as
    // the kernel's `__user_cap_header_struct` and `__user_cap_data_struct`.
    let r = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    check(r as libc::c_int, "setting capabilities")?;
    // SAFETY: prctl with integer arguments only.
    check(
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
        "setting no_new_privs",
    )
}
