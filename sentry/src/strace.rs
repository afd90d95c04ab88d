//! `--strace`: each traced syscall is logged on entry (`E`) and exit (`X`)
//! with its arguments decoded, in the layout and per-type formats of
//! upstream's `pkg/sentry/strace` (strace.go for the line and the common
//! decoders; open.go, mmap.go, signal.go, socket.go, poll.go, epoll.go,
//! clone.go and futex.go for the flag names).
//!
//! Decoding only reads: a bad pointer prints the pointer and an error in
//! place of the value, never fails the call.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use abi::Errno;

use crate::task::Task;

/// How strace shows one argument (upstream's `FormatSpecifier`). `Post*`
/// and `Read*` arguments are results, shown as hex on entry and decoded on
/// a successful exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    Hex,
    /// `0o755`.
    Oct,
    /// A descriptor and what it names (`AT_FDCWD` and the cwd for -100).
    Fd,
    /// A buffer the call fills; its length is the return value.
    ReadBuffer,
    /// A buffer the call reads; its length is the next argument.
    WriteBuffer,
    /// An iovec array filled by the call; the count is the next argument.
    ReadIovec,
    /// An iovec array read by the call; the count is the next argument.
    WriteIovec,
    /// An iovec array shown without contents.
    Iovec,
    Path,
    /// A path the call writes (getcwd).
    PostPath,
    ExecveStringVector,
    PipeFds,
    /// A sockaddr; its length is the next argument.
    SockAddr,
    /// A sockaddr the call writes; the next argument points at its length.
    PostSockAddr,
    SockLen,
    SockFamily,
    SockType,
    SockFlags,
    Timespec,
    PostTimespec,
    UTimeTimespec,
    Timeval,
    ItimerVal,
    PostItimerVal,
    ItimerSpec,
    PostItimerSpec,
    CloneFlags,
    OpenFlags,
    Mode,
    FutexOp,
    ItimerType,
    Signal,
    SignalMaskAction,
    SigSet,
    PostSigSet,
    SigAction,
    PostSigAction,
    /// A pollfd array; the count is the next argument.
    PollFds,
    EpollCtlOp,
    EpollEvent,
    /// An epoll_event array the call fills (as many as it returns).
    EpollEvents,
    MmapProt,
    MmapFlags,
}

/// How a number without a table entry is shown (upstream's defaultFormat).
const DEFAULT: &[Arg] = &[Arg::Hex; 6];

/// What decoding reads from the calling task.
pub(crate) trait Source {
    /// Application memory at `addr` (all of `buf` or an error).
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// A NUL-terminated string of at most `max` bytes.
    fn read_string(&self, addr: u64, max: usize) -> Result<Vec<u8>, Errno>;
    /// What descriptor `fd` names (as /proc/self/fd shows it), if open.
    fn fd_name(&self, fd: i32) -> Option<String>;
    /// The working directory's path.
    fn cwd_name(&self) -> String;
}

impl Source for Task {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.mm().copy_in(addr, buf)
    }
    fn read_string(&self, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        self.mm().copy_in_string(addr, max)
    }
    fn fd_name(&self, fd: i32) -> Option<String> {
        let file = self.fds().get(u64::try_from(fd).ok()?).ok()?;
        let root = self.fs().root.clone();
        Some(match file.location() {
            Some(loc) => vfs::mount::path_of(loc, &root),
            None => file.anon_name().to_string(),
        })
    }
    fn cwd_name(&self) -> String {
        let (root, cwd) = {
            let fs = self.fs();
            (fs.root.clone(), fs.cwd.clone())
        };
        vfs::mount::path_of(&cwd, &root)
    }
}

/// A traced call between its entry and exit lines.
pub(crate) struct Call {
    name: String,
    formats: &'static [Arg],
    shown: Vec<String>,
    started: Instant,
}

fn prefix(task: &Task) -> String {
    format!("[{:4}:{:4}] {}", task.tg.tgid, task.tid, task.comm_str())
}

/// Log the entry line of syscall `nr` (`name` and `formats` from the
/// table; None: a number the table does not know).
pub(crate) fn enter(
    task: &Task,
    known: Option<(&'static str, &'static [Arg])>,
    nr: u64,
    args: &[u64; 6],
) -> Call {
    let (name, formats) = match known {
        Some((name, formats)) => (name.to_string(), formats),
        None => (format!("sys_{nr}"), DEFAULT),
    };
    let shown = pre(task, formats, args, task.kernel.strace.log_size);
    tracing::info!(target: "strace", "{} E {name}({})", prefix(task), shown.join(", "));
    Call {
        name,
        formats,
        shown,
        started: Instant::now(),
    }
}

/// Log the exit line of `call`, which returned `result`.
pub(crate) fn exit(task: &Task, mut call: Call, args: &[u64; 6], result: Result<u64, Errno>) {
    let elapsed = go_duration(call.started.elapsed());
    let outcome = match result {
        Ok(v) => {
            post(
                task,
                call.formats,
                args,
                v,
                &mut call.shown,
                task.kernel.strace.log_size,
            );
            format!("{v} ({v:#x}) ({elapsed})")
        }
        Err(e) => format!("0 (0x0) errno={} ({}) ({elapsed})", e.raw(), describe(e)),
    };
    tracing::info!(
        target: "strace",
        "{} X {}({}) = {outcome}",
        prefix(task),
        call.name,
        call.shown.join(", ")
    );
}

/// An errno's words, as upstream's error values print them (the
/// kernel-internal restart codes included: pkg/errors/linuxerr/internal.go).
fn describe(e: Errno) -> &'static str {
    match e.raw() {
        512 => "to be restarted if SA_RESTART is set",
        513 => "to be restarted",
        514 => "to be restarted if no handler",
        516 => "interrupted by signal",
        _ => e.description(),
    }
}

/// The arguments as shown on entry.
pub(crate) fn pre(src: &dyn Source, formats: &[Arg], a: &[u64; 6], max: usize) -> Vec<String> {
    let next = |i: usize| a.get(i + 1).copied().unwrap_or(0);
    formats
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let v = a[i];
            match f {
                Arg::Fd => fd(src, v),
                Arg::WriteBuffer => dump(src, v, next(i), max),
                Arg::WriteIovec => iovecs(src, v, next(i) as i32, Some(max as u64)),
                Arg::Iovec => iovecs(src, v, next(i) as i32, None),
                Arg::Path => path(src, v),
                Arg::ExecveStringVector => string_vector(src, v),
                Arg::SockAddr => sockaddr(src, v, next(i) as u32),
                Arg::SockLen => socklen(src, v),
                Arg::SockFamily => value(v as i32 as u64, SOCKET_FAMILIES),
                Arg::SockType => sock_type(v as i32),
                Arg::SockFlags => sock_flags(v as i32),
                Arg::Timespec => timespec(src, v),
                Arg::UTimeTimespec => utime_timespec(src, v),
                Arg::ItimerVal => itimerval(src, v),
                Arg::ItimerSpec => itimerspec(src, v),
                Arg::Timeval => timeval(src, v),
                Arg::CloneFlags => flags(u64::from(v as u32), CLONE_FLAGS),
                Arg::OpenFlags => open_flags(u64::from(v as u32)),
                Arg::Mode => mode(v as u16),
                Arg::FutexOp => futex_op(u64::from(v as u32)),
                Arg::ItimerType => value(v as i32 as u64, ITIMER_TYPES),
                Arg::Signal => signal(v),
                Arg::SignalMaskAction => value(v as i32 as u64, SIG_MASK_ACTIONS),
                Arg::SigSet => sigset(src, v),
                Arg::SigAction => sigaction(src, v),
                Arg::PollFds => pollfds(src, v, next(i) as u32, false),
                Arg::EpollCtlOp => value(v as i32 as u64, EPOLL_CTL_OPS),
                Arg::EpollEvent => epoll_event(src, v),
                Arg::EpollEvents => epoll_events(src, v, 0, max),
                Arg::MmapProt => flags(u64::from(v as u32), PROT_FLAGS),
                Arg::MmapFlags => flags(u64::from(v as u32), MMAP_FLAGS),
                Arg::Oct => format!("0o{v:o}"),
                _ => format!("{v:#x}"),
            }
        })
        .collect()
}

/// Fill in the arguments only a successful call (returning `rval`) gives.
pub(crate) fn post(
    src: &dyn Source,
    formats: &[Arg],
    a: &[u64; 6],
    rval: u64,
    shown: &mut [String],
    max: usize,
) {
    let next = |i: usize| a.get(i + 1).copied().unwrap_or(0);
    for (i, f) in formats.iter().enumerate() {
        let v = a[i];
        let s = match f {
            Arg::ReadBuffer => dump(src, v, rval, max),
            Arg::ReadIovec => iovecs(src, v, next(i) as i32, Some(rval.min(max as u64))),
            // The entry line showed what was written.
            Arg::WriteIovec | Arg::Iovec | Arg::WriteBuffer => "...".to_string(),
            Arg::PostPath => path(src, v),
            Arg::PipeFds => pipe_fds(src, v),
            Arg::PostSockAddr => post_sockaddr(src, v, next(i)),
            Arg::SockLen => socklen(src, v),
            Arg::PostTimespec => timespec(src, v),
            Arg::PostItimerVal => itimerval(src, v),
            Arg::PostItimerSpec => itimerspec(src, v),
            Arg::Timeval => timeval(src, v),
            Arg::PostSigSet => sigset(src, v),
            Arg::PostSigAction => sigaction(src, v),
            Arg::PollFds => pollfds(src, v, next(i) as u32, true),
            Arg::EpollEvents => epoll_events(src, v, rval, max),
            _ => continue,
        };
        shown[i] = s;
    }
}

// ---- Formatting helpers in Go's style ----

/// Go's `%q` of a byte string: printable UTF-8 as is, the rest escaped.
pub(crate) fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, false),
            Err(e) => (
                std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default(),
                true,
            ),
        };
        for c in valid.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if c == ' ' || !(c.is_control() || c.is_whitespace()) => out.push(c),
                c if (c as u32) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if (c as u32) < 0x10000 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
        }
        rest = &rest[valid.len()..];
        if bad {
            // One undecodable byte at a time, as Go does.
            let _ = write!(out, "\\x{:02x}", rest[0]);
            rest = &rest[1..];
        }
    }
    out.push('"');
    out
}

/// Go's `time.Duration` String: `0s`, `512ns`, `1.5µs`, `2.000001ms`,
/// `3.2s`, `1m0.5s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let frac = |v: u128, unit: u128, width: usize| {
        let (int, rem) = (v / unit, v % unit);
        if rem == 0 {
            int.to_string()
        } else {
            let digits = format!("{rem:0width$}");
            format!("{int}.{}", digits.trim_end_matches('0'))
        }
    };
    match ns {
        0 => "0s".to_string(),
        1..=999 => format!("{ns}ns"),
        1_000..=999_999 => format!("{}µs", frac(ns, 1_000, 3)),
        1_000_000..=999_999_999 => format!("{}ms", frac(ns, 1_000_000, 6)),
        _ => {
            let (h, rest) = (ns / 3_600_000_000_000, ns % 3_600_000_000_000);
            let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
            let mut s = String::new();
            if h > 0 {
                let _ = write!(s, "{h}h");
            }
            if h > 0 || m > 0 {
                let _ = write!(s, "{m}m");
            }
            s + &frac(rest, 1_000_000_000, 9) + "s"
        }
    }
}

/// Go's `%#x` of a signed value (`-0x1`).
fn signed_hex(v: i64) -> String {
    if v < 0 {
        format!("-{:#x}", v.unsigned_abs())
    } else {
        format!("{v:#x}")
    }
}

/// Named bits, then what is left in hex; `0x0` for none (abi.FlagSet).
fn flags(mut v: u64, set: &[(u64, &str)]) -> String {
    let mut names: Vec<String> = Vec::new();
    for &(bit, name) in set {
        if v & bit == bit {
            names.push(name.to_string());
            v &= !bit;
        }
    }
    if v != 0 {
        names.push(format!("{v:#x}"));
    }
    if names.is_empty() {
        "0x0".to_string()
    } else {
        names.join("|")
    }
}

/// The name of `v`, or `v` in hex (abi.ValueSet.Parse).
fn value(v: u64, set: &[(u64, &str)]) -> String {
    match set.iter().find(|&&(k, _)| k == v) {
        Some(&(_, name)) => name.to_string(),
        None => format!("{v:#x}"),
    }
}

fn read_u32(src: &dyn Source, addr: u64) -> Result<u32, Errno> {
    let mut b = [0u8; 4];
    src.read(addr, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(src: &dyn Source, addr: u64) -> Result<u64, Errno> {
    let mut b = [0u8; 8];
    src.read(addr, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

// ---- Decoders (strace.go) ----

const AT_FDCWD: i32 = -100;
const PATH_MAX: usize = 4096;
const UIO_MAXIOV: i32 = 1024;

fn fd(src: &dyn Source, v: u64) -> String {
    let fd = v as i32;
    if fd == AT_FDCWD {
        return format!("AT_FDCWD {}", src.cwd_name());
    }
    match src.fd_name(fd) {
        Some(name) => format!("{fd:#x} {name}"),
        // A negative descriptor shows as its 64-bit pattern, as upstream's does.
        None => format!("{:#x} (bad FD)", i64::from(fd) as u64),
    }
}

fn path(src: &dyn Source, addr: u64) -> String {
    if addr == 0 {
        return "<null>".to_string();
    }
    match src.read_string(addr, PATH_MAX) {
        Ok(p) => format!("{addr:#x} {}", String::from_utf8_lossy(&p)),
        Err(e) => format!("{addr:#x} (error decoding path: {e})"),
    }
}

/// Up to `max` bytes of the `size`-byte buffer at `addr`, `...` if cut.
fn dump(src: &dyn Source, addr: u64, size: u64, max: usize) -> String {
    let n = size.min(max as u64) as usize;
    if n == 0 {
        return String::new();
    }
    let mut b = vec![0u8; n];
    match src.read(addr, &mut b) {
        Ok(()) => {
            let dots = if (n as u64) < size { "..." } else { "" };
            format!("{addr:#x} {}{dots}", go_quote(&b))
        }
        Err(e) => format!("{addr:#x} (error decoding string: {e})"),
    }
}

/// An iovec array; `content`: how many bytes of data to show in all
/// (None: lengths only).
fn iovecs(src: &dyn Source, addr: u64, count: i32, content: Option<u64>) -> String {
    if !(0..=UIO_MAXIOV).contains(&count) {
        return format!("{addr:#x} (error decoding iovecs: invalid iovcnt)");
    }
    let mut raw = vec![0u8; count as usize * 16];
    if let Err(e) = src.read(addr, &mut raw) {
        return format!("{addr:#x} (error decoding iovecs: {e})");
    }
    let mut budget = content.unwrap_or(0);
    let shown: Vec<String> = raw
        .chunks_exact(16)
        .map(|iov| {
            let base = u64::from_le_bytes(iov[..8].try_into().expect("8 bytes"));
            let len = u64::from_le_bytes(iov[8..].try_into().expect("8 bytes"));
            if len == 0 || content.is_none() {
                return format!("{{base={base:#x}, len={len}}}");
            }
            let n = len.min(budget);
            budget -= n;
            let mut b = vec![0u8; n as usize];
            match src.read(base, &mut b) {
                Ok(()) => {
                    let dots = if n < len { "..." } else { "" };
                    format!("{{base={base:#x}, len={len}, {}{dots}}}", go_quote(&b))
                }
                Err(e) => {
                    format!("{{base={base:#x}, len={len}, \"\"..., error decoding string: {e}}}")
                }
            }
        })
        .collect();
    format!("{addr:#x} {}", shown.join(", "))
}

fn pipe_fds(src: &dyn Source, addr: u64) -> String {
    let mut b = [0u8; 8];
    match src.read(addr, &mut b) {
        Ok(()) => {
            let r = i32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
            let w = i32::from_le_bytes(b[4..].try_into().expect("4 bytes"));
            format!("{addr:#x} [{r} {w}]")
        }
        Err(e) => format!("{addr:#x} (error decoding fds: {e})"),
    }
}

/// argv or envp of execve: the strings up to the null pointer.
fn string_vector(src: &dyn Source, addr: u64) -> String {
    // Linux's limits on one string and on all of them (MAX_ARG_STRLEN, and
    // upstream's ExecMaxTotalSize).
    const MAX_ELEM: usize = 32 * 4096;
    const MAX_TOTAL: usize = 2 * 1024 * 1024;
    let mut items = Vec::new();
    let mut total = 0usize;
    let mut at = addr;
    let result = loop {
        let p = match read_u64(src, at) {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        if p == 0 {
            break Ok(());
        }
        match src.read_string(p, MAX_ELEM) {
            Ok(s) => {
                total += s.len() + 1;
                if total > MAX_TOTAL {
                    break Err(Errno::E2BIG);
                }
                items.push(go_quote(&s));
            }
            Err(e) => break Err(e),
        }
        at = at.wrapping_add(8);
    };
    match result {
        Ok(()) => format!("{addr:#x} [{}]", items.join(", ")),
        Err(e) => format!("{addr:#x} {{error copying vector: {e}}}"),
    }
}

fn timespec(src: &dyn Source, addr: u64) -> String {
    if addr == 0 {
        return "null".to_string();
    }
    match (read_u64(src, addr), read_u64(src, addr.wrapping_add(8))) {
        (Ok(s), Ok(ns)) => format!("{addr:#x} {{sec={} nsec={}}}", s as i64, ns as i64),
        (Err(e), _) | (_, Err(e)) => format!("{addr:#x} (error decoding timespec: {e})"),
    }
}

fn utime_timespec(src: &dyn Source, addr: u64) -> String {
    const UTIME_NOW: i64 = (1 << 30) - 1;
    const UTIME_OMIT: i64 = (1 << 30) - 2;
    if addr == 0 {
        return "null".to_string();
    }
    match (read_u64(src, addr), read_u64(src, addr.wrapping_add(8))) {
        (Ok(s), Ok(ns)) => {
            let ns = match ns as i64 {
                UTIME_NOW => "UTIME_NOW".to_string(),
                UTIME_OMIT => "UTIME_OMIT".to_string(),
                n => n.to_string(),
            };
            format!("{addr:#x} {{sec={} nsec={ns}}}", s as i64)
        }
        (Err(e), _) | (_, Err(e)) => format!("{addr:#x} (error decoding timespec: {e})"),
    }
}

fn timeval(src: &dyn Source, addr: u64) -> String {
    if addr == 0 {
        return "null".to_string();
    }
    match (read_u64(src, addr), read_u64(src, addr.wrapping_add(8))) {
        (Ok(s), Ok(us)) => format!("{addr:#x} {{sec={} usec={}}}", s as i64, us as i64),
        (Err(e), _) | (_, Err(e)) => format!("{addr:#x} (error decoding timeval: {e})"),
    }
}

fn itimerval(src: &dyn Source, addr: u64) -> String {
    if addr == 0 {
        return "null".to_string();
    }
    let interval = timeval(src, addr);
    let value = timeval(src, addr.wrapping_add(16));
    format!("{addr:#x} {{interval={interval}, value={value}}}")
}

fn itimerspec(src: &dyn Source, addr: u64) -> String {
    if addr == 0 {
        return "null".to_string();
    }
    let interval = timespec(src, addr);
    let value = timespec(src, addr.wrapping_add(16));
    format!("{addr:#x} {{interval={interval}, value={value}}}")
}

// ---- Files (open.go, linux.FileMode) ----

/// open(2) flags; the set's order is upstream's (open.go).
const OPEN_FLAGS: &[(u64, &str)] = &[
    (0o2000, "O_APPEND"),
    (0o20000, "O_ASYNC"),
    (0o2000000, "O_CLOEXEC"),
    (0o100, "O_CREAT"),
    (0o40000, "O_DIRECT"),
    (0o200000, "O_DIRECTORY"),
    (0o200, "O_EXCL"),
    (0o1000000, "O_NOATIME"),
    (0o400, "O_NOCTTY"),
    (0o400000, "O_NOFOLLOW"),
    (0o4000, "O_NONBLOCK"),
    (0o10000000, "O_PATH"),
    (0o4010000, "O_SYNC"),
    (0o20200000, "O_TMPFILE"),
    (0o1000, "O_TRUNC"),
];

/// The access mode, then the other flags. Upstream joins the flag set's
/// rendering unconditionally, so no flags reads `O_RDONLY|0x0`; kept so
/// logs compare line for line.
fn open_flags(v: u64) -> String {
    let access = value(v & 3, &[(0, "O_RDONLY"), (1, "O_WRONLY"), (2, "O_RDWR")]);
    format!("{access}|{}", flags(v & !3, OPEN_FLAGS))
}

/// linux.FileMode's String: type, set-id and sticky bits, permissions.
fn mode(m: u16) -> String {
    let m = u64::from(m);
    let mut parts = Vec::new();
    if m & 0o170000 != 0 {
        parts.push(value(
            m & 0o170000,
            &[
                (0o140000, "S_IFSOCK"),
                (0o120000, "S_IFLINK"),
                (0o100000, "S_IFREG"),
                (0o060000, "S_IFBLK"),
                (0o040000, "S_IFDIR"),
                (0o020000, "S_IFCHR"),
                (0o010000, "S_IFIFO"),
            ],
        ));
    }
    if m & 0o7000 != 0 {
        parts.push(flags(
            m & 0o7000,
            &[
                (0o4000, "S_ISUID"),
                (0o2000, "S_ISGID"),
                (0o1000, "S_ISVTX"),
            ],
        ));
    }
    parts.push(format!("0o{:o}", m & 0o777));
    parts.join("|")
}

// ---- Memory (mmap.go) ----

const PROT_FLAGS: &[(u64, &str)] = &[(1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC")];

const MMAP_FLAGS: &[(u64, &str)] = &[
    (0x1, "MAP_SHARED"),
    (0x2, "MAP_PRIVATE"),
    (0x10, "MAP_FIXED"),
    (0x20, "MAP_ANONYMOUS"),
    (0x100, "MAP_GROWSDOWN"),
    (0x800, "MAP_DENYWRITE"),
    (0x1000, "MAP_EXECUTABLE"),
    (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"),
    (0x8000, "MAP_POPULATE"),
    (0x10000, "MAP_NONBLOCK"),
    (0x20000, "MAP_STACK"),
    (0x40000, "MAP_HUGETLB"),
];

// ---- Processes (clone.go, futex.go) ----

const CLONE_FLAGS: &[(u64, &str)] = &[
    (0x100, "CLONE_VM"),
    (0x200, "CLONE_FS"),
    (0x400, "CLONE_FILES"),
    (0x800, "CLONE_SIGHAND"),
    (0x2000, "CLONE_PTRACE"),
    (0x4000, "CLONE_VFORK"),
    (0x8000, "CLONE_PARENT"),
    (0x10000, "CLONE_THREAD"),
    (0x20000, "CLONE_NEWNS"),
    (0x40000, "CLONE_SYSVSEM"),
    (0x80000, "CLONE_SETTLS"),
    (0x100000, "CLONE_PARENT_SETTID"),
    (0x200000, "CLONE_CHILD_CLEARTID"),
    (0x400000, "CLONE_DETACHED"),
    (0x800000, "CLONE_UNTRACED"),
    (0x1000000, "CLONE_CHILD_SETTID"),
    (0x4000000, "CLONE_NEWUTS"),
    (0x8000000, "CLONE_NEWIPC"),
    (0x10000000, "CLONE_NEWUSER"),
    (0x20000000, "CLONE_NEWPID"),
    (0x40000000, "CLONE_NEWNET"),
    (0x80000000, "CLONE_IO"),
];

fn futex_op(op: u64) -> String {
    const PRIVATE: u64 = 128;
    const CLOCK_REALTIME: u64 = 256;
    const CMDS: &[(u64, &str)] = &[
        (0, "FUTEX_WAIT"),
        (1, "FUTEX_WAKE"),
        (2, "FUTEX_FD"),
        (3, "FUTEX_REQUEUE"),
        (4, "FUTEX_CMP_REQUEUE"),
        (5, "FUTEX_WAKE_OP"),
        (6, "FUTEX_LOCK_PI"),
        (7, "FUTEX_UNLOCK_PI"),
        (8, "FUTEX_TRYLOCK_PI"),
        (9, "FUTEX_WAIT_BITSET"),
        (10, "FUTEX_WAKE_BITSET"),
        (11, "FUTEX_WAIT_REQUEUE_PI"),
        (12, "FUTEX_CMP_REQUEUE_PI"),
    ];
    let mut s = value(op & !(PRIVATE | CLOCK_REALTIME), CMDS);
    if op & CLOCK_REALTIME != 0 {
        s += "|FUTEX_CLOCK_REALTIME";
    }
    if op & PRIVATE != 0 {
        s += "|FUTEX_PRIVATE_FLAG";
    }
    s
}

const ITIMER_TYPES: &[(u64, &str)] = &[
    (0, "ITIMER_REAL"),
    (1, "ITIMER_VIRTUAL"),
    (2, "ITIMER_PROF"),
];

// ---- Signals (signal.go) ----

/// Names of signals 1..=31.
const SIGNALS: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// A signal's name, or its number in decimal (real-time signals).
fn signal(v: u64) -> String {
    match v.checked_sub(1).and_then(|i| SIGNALS.get(i as usize)) {
        Some(name) => name.to_string(),
        None => v.to_string(),
    }
}

const SIG_MASK_ACTIONS: &[(u64, &str)] =
    &[(0, "SIG_BLOCK"), (1, "SIG_UNBLOCK"), (2, "SIG_SETMASK")];

const SA_FLAGS: &[(u64, &str)] = &[
    (0x1, "SA_NOCLDSTOP"),
    (0x2, "SA_NOCLDWAIT"),
    (0x4, "SA_SIGINFO"),
    (0x0400_0000, "SA_RESTORER"),
    (0x0800_0000, "SA_ONSTACK"),
    (0x1000_0000, "SA_RESTART"),
    (0x4000_0000, "SA_NODEFER"),
    (0x8000_0000, "SA_RESETHAND"),
];

fn format_sigset(set: u64) -> String {
    let names: Vec<String> = (0..64)
        .filter(|bit| set & (1 << bit) != 0)
        .map(|bit| signal(bit + 1))
        .collect();
    format!("[{}]", names.join(" "))
}

fn sigset(src: &dyn Source, addr: u64) -> String {
    if addr == 0 {
        return "null".to_string();
    }
    match read_u64(src, addr) {
        Ok(set) => format!("{addr:#x} {}", format_sigset(set)),
        Err(e) => format!("{addr:#x} (error copying sigset: {e})"),
    }
}

/// The kernel's `struct sigaction` on x86-64: handler, flags, restorer, mask.
fn sigaction(src: &dyn Source, addr: u64) -> String {
    if addr == 0 {
        return "null".to_string();
    }
    let mut b = [0u8; 32];
    if let Err(e) = src.read(addr, &mut b) {
        return format!("{addr:#x} (error copying sigaction: {e})");
    }
    let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let handler = match word(0) {
        0 => "SIG_DFL".to_string(),
        1 => "SIG_IGN".to_string(),
        h => format!("{h:#x}"),
    };
    format!(
        "{addr:#x} {{Handler: {handler}, Flags: {}, Restorer: {:#x}, Mask: {}}}",
        flags(word(1), SA_FLAGS),
        word(2),
        format_sigset(word(3))
    )
}

// ---- Sockets (socket.go) ----

const SOCKET_FAMILIES: &[(u64, &str)] = &[
    (0, "AF_UNSPEC"),
    (1, "AF_UNIX"),
    (2, "AF_INET"),
    (10, "AF_INET6"),
    (15, "AF_KEY"),
    (16, "AF_NETLINK"),
    (17, "AF_PACKET"),
    (31, "AF_BLUETOOTH"),
    (38, "AF_ALG"),
    (40, "AF_VSOCK"),
];

const SOCK_FLAGS: &[(u64, &str)] = &[(0o2000000, "SOCK_CLOEXEC"), (0o4000, "SOCK_NONBLOCK")];

/// The type, then its flags; as with open flags, upstream shows no flags
/// as `|0x0`.
fn sock_type(t: i32) -> String {
    const TYPES: &[(u64, &str)] = &[
        (1, "SOCK_STREAM"),
        (2, "SOCK_DGRAM"),
        (3, "SOCK_RAW"),
        (4, "SOCK_RDM"),
        (5, "SOCK_SEQPACKET"),
        (6, "SOCK_DCCP"),
        (10, "SOCK_PACKET"),
    ];
    let t = i64::from(t) as u64;
    format!("{}|{}", value(t & 0xf, TYPES), flags(t & !0xf, SOCK_FLAGS))
}

fn sock_flags(f: i32) -> String {
    if f == 0 {
        "0".to_string()
    } else {
        flags(i64::from(f) as u64, SOCK_FLAGS)
    }
}

fn socklen(src: &dyn Source, addr: u64) -> String {
    if addr == 0 {
        return "null".to_string();
    }
    match read_u32(src, addr) {
        Ok(l) => format!("{addr:#x} {{length={l}}}"),
        Err(e) => format!("{addr:#x} {{error reading length: {e}}}"),
    }
}

fn post_sockaddr(src: &dyn Source, addr: u64, len_addr: u64) -> String {
    if addr == 0 {
        return "null".to_string();
    }
    if len_addr == 0 {
        return format!("{addr:#x} {{length null}}");
    }
    match read_u32(src, len_addr) {
        Ok(l) => sockaddr(src, addr, l),
        Err(e) => format!("{addr:#x} {{error reading length: {e}}}"),
    }
}

fn sockaddr(src: &dyn Source, addr: u64, len: u32) -> String {
    // Upstream's limit on a socket address argument (sys_socket.go).
    const MAX_ADDR_LEN: u32 = 200;
    if addr == 0 {
        return "null".to_string();
    }
    if len > MAX_ADDR_LEN {
        return format!("{addr:#x} {{error reading address: {}}}", Errno::EINVAL);
    }
    let mut b = vec![0u8; len as usize];
    if let Err(e) = src.read(addr, &mut b) {
        return format!("{addr:#x} {{error reading address: {e}}}");
    }
    if b.len() < 2 {
        return format!("{addr:#x} {{address too short: {} bytes}}", b.len());
    }
    let family = u16::from_le_bytes([b[0], b[1]]);
    let name = value(u64::from(family), SOCKET_FAMILIES);
    let bad = || {
        format!(
            "{addr:#x} {{Family: {name}, error extracting address: {}}}",
            Errno::EINVAL
        )
    };
    match family {
        1 => {
            let mut path = &b[2..];
            if path.len() > 108 {
                return bad();
            }
            // A filesystem name ends at its NUL; an abstract one is all bytes.
            if path.first().is_some_and(|&c| c != 0) {
                if let Some(n) = path.iter().position(|&c| c == 0) {
                    path = &path[..n];
                }
            }
            format!("{addr:#x} {{Family: {name}, Addr: {}}}", go_quote(path))
        }
        2 => {
            if b.len() < 16 {
                return bad();
            }
            let ip = std::net::Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            let port = u16::from_be_bytes([b[2], b[3]]);
            format!("{addr:#x} {{Family: {name}, Addr: {ip}, Port: {port}}}")
        }
        10 => {
            if b.len() < 28 {
                return bad();
            }
            let octets: [u8; 16] = b[8..24].try_into().expect("16 bytes");
            let ip = std::net::Ipv6Addr::from(octets);
            let port = u16::from_be_bytes([b[2], b[3]]);
            format!("{addr:#x} {{Family: {name}, Addr: {ip}, Port: {port}}}")
        }
        16 => {
            if b.len() < 12 {
                return bad();
            }
            let pid = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes"));
            let groups = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
            format!("{addr:#x} {{Family: {name}, PortID: {pid}, Groups: {groups}}}")
        }
        _ => format!("{addr:#x} {{Family: {name}, family addr format unknown}}"),
    }
}

// ---- poll and epoll (poll.go, epoll.go) ----

const POLL_EVENTS: &[(u64, &str)] = &[
    (0x1, "POLLIN"),
    (0x2, "POLLPRI"),
    (0x4, "POLLOUT"),
    (0x8, "POLLERR"),
    (0x10, "POLLHUP"),
    (0x20, "POLLNVAL"),
    (0x40, "POLLRDNORM"),
    (0x80, "POLLRDBAND"),
    (0x100, "POLLWRNORM"),
    (0x200, "POLLWRBAND"),
    (0x400, "POLLMSG"),
    (0x1000, "POLLREMOVE"),
    (0x2000, "POLLRDHUP"),
    (0x4000, "POLLFREE"),
    (0x8000, "POLL_BUSY_LOOP"),
];

fn pollfds(src: &dyn Source, addr: u64, nfds: u32, after: bool) -> String {
    // The descriptor limit bounds nfds (RLIMIT_NOFILE's default).
    const MAX_FDS: u32 = 1024;
    if addr == 0 {
        return "null".to_string();
    }
    if nfds > MAX_FDS {
        return format!("{addr:#x} (error decoding pollfds: {})", Errno::EINVAL);
    }
    let mut raw = vec![0u8; nfds as usize * 8];
    if let Err(e) = src.read(addr, &mut raw) {
        return format!("{addr:#x} (error decoding pollfds: {e})");
    }
    let shown: Vec<String> = raw
        .chunks_exact(8)
        .map(|p| {
            let pfd = i32::from_le_bytes(p[..4].try_into().expect("4 bytes"));
            let events = u64::from(u16::from_le_bytes([p[4], p[5]]));
            let revents = if after {
                flags(u64::from(u16::from_le_bytes([p[6], p[7]])), POLL_EVENTS)
            } else {
                "...".to_string()
            };
            format!(
                "{{FD: {}, Events: {}, REvents: {revents}}}",
                fd(src, i64::from(pfd) as u64),
                flags(events, POLL_EVENTS)
            )
        })
        .collect();
    format!("{addr:#x} [{}]", shown.join(", "))
}

const EPOLL_CTL_OPS: &[(u64, &str)] = &[
    (1, "EPOLL_CTL_ADD"),
    (2, "EPOLL_CTL_DEL"),
    (3, "EPOLL_CTL_MOD"),
];

const EPOLL_EVENTS: &[(u64, &str)] = &[
    (0x1, "EPOLLIN"),
    (0x2, "EPOLLPRI"),
    (0x4, "EPOLLOUT"),
    (0x8, "EPOLLERR"),
    (0x10, "EPOLLHUP"),
    (0x40, "EPOLLRDNORM"),
    (0x80, "EPOLLRDBAND"),
    (0x100, "EPOLLWRNORM"),
    (0x200, "EPOLLWRBAND"),
    (0x400, "EPOLLMSG"),
    (0x2000, "EPOLLRDHUP"),
    (1 << 28, "EPOLLEXCLUSIVE"),
    (1 << 29, "EPOLLWAKEUP"),
    (1 << 30, "EPOLLONESHOT"),
    (1 << 31, "EPOLLET"),
];

/// `struct epoll_event` (packed on x86-64: u32 events, u64 data).
fn read_epoll_event(src: &dyn Source, addr: u64) -> Result<String, Errno> {
    let mut b = [0u8; 12];
    src.read(addr, &mut b)?;
    let events = u64::from(u32::from_le_bytes(b[..4].try_into().expect("4 bytes")));
    let lo = i32::from_le_bytes(b[4..8].try_into().expect("4 bytes"));
    let hi = i32::from_le_bytes(b[8..].try_into().expect("4 bytes"));
    Ok(format!(
        "{{events={} data=[{}, {}]}}",
        flags(events, EPOLL_EVENTS),
        signed_hex(lo.into()),
        signed_hex(hi.into())
    ))
}

fn epoll_event(src: &dyn Source, addr: u64) -> String {
    match read_epoll_event(src, addr) {
        Ok(e) => format!("{addr:#x} {e}"),
        Err(e) => format!("{addr:#x} {{error reading event: {e}}}"),
    }
}

fn epoll_events(src: &dyn Source, addr: u64, count: u64, max: usize) -> String {
    let mut s = format!("{addr:#x} {{");
    let mut at = addr;
    for _ in 0..count {
        match read_epoll_event(src, at) {
            Ok(e) => s.push_str(&e),
            Err(e) => {
                let _ = write!(s, "{{error reading event at {at:#x}: {e}}}");
            }
        }
        if s.len() >= max {
            s.push_str("...");
            break;
        }
        at = at.wrapping_add(12);
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small address space: one mapped region, descriptors 0..=2 open.
    struct Fake {
        base: u64,
        mem: Vec<u8>,
    }

    impl Fake {
        fn new() -> Fake {
            Fake {
                base: 0x1000,
                mem: vec![0; 0x1000],
            }
        }
        fn put(&mut self, addr: u64, bytes: &[u8]) {
            let at = (addr - self.base) as usize;
            self.mem[at..at + bytes.len()].copy_from_slice(bytes);
        }
    }

    impl Source for Fake {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
            let end = addr.checked_add(buf.len() as u64).ok_or(Errno::EFAULT)?;
            if addr < self.base || end > self.base + self.mem.len() as u64 {
                return Err(Errno::EFAULT);
            }
            let at = (addr - self.base) as usize;
            buf.copy_from_slice(&self.mem[at..at + buf.len()]);
            Ok(())
        }
        fn read_string(&self, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
            let mut out = Vec::new();
            for a in addr.. {
                let mut b = [0u8];
                self.read(a, &mut b)?;
                if b[0] == 0 {
                    return Ok(out);
                }
                out.push(b[0]);
                if out.len() > max {
                    return Err(Errno::ENAMETOOLONG);
                }
            }
            unreachable!()
        }
        fn fd_name(&self, fd: i32) -> Option<String> {
            (0..=2).contains(&fd).then(|| "/dev/pts/0".to_string())
        }
        fn cwd_name(&self) -> String {
            "/home".to_string()
        }
    }

    const UNMAPPED: u64 = 0xdead_0000;

    #[test]
    fn paths_and_descriptors() {
        let mut m = Fake::new();
        m.put(0x1100, b"/etc/passwd\0");
        let a = [(-100i64) as u64, 0x1100, 0o2000000, 0, 0, 0];
        let f = [Arg::Fd, Arg::Path, Arg::OpenFlags, Arg::Mode];
        assert_eq!(
            pre(&m, &f, &a, 1024),
            [
                "AT_FDCWD /home",
                "0x1100 /etc/passwd",
                "O_RDONLY|O_CLOEXEC",
                "0o0"
            ]
        );
        assert_eq!(fd(&m, 1), "0x1 /dev/pts/0");
        assert_eq!(fd(&m, 7), "0x7 (bad FD)");
        assert_eq!(fd(&m, u64::MAX), "0xffffffffffffffff (bad FD)");
        assert_eq!(path(&m, 0), "<null>");
        // A bad pointer shows itself and the error, never fails.
        assert_eq!(
            path(&m, UNMAPPED),
            "0xdead0000 (error decoding path: bad address)"
        );
        assert_eq!(open_flags(0), "O_RDONLY|0x0");
        assert_eq!(
            open_flags(0o1 | 0o100 | 0o1000 | 0o2000000),
            "O_WRONLY|O_CLOEXEC|O_CREAT|O_TRUNC"
        );
        assert_eq!(mode(0o100644), "S_IFREG|0o644");
        assert_eq!(mode(0o4755), "S_ISUID|0o755");
    }

    #[test]
    fn buffers_are_quoted_and_cut_at_the_log_size() {
        let mut m = Fake::new();
        m.put(0x1200, b"hi \"x\"\n\x01\xff\xe2\x82\xac");
        assert_eq!(
            dump(&m, 0x1200, 12, 1024),
            r#"0x1200 "hi \"x\"\n\x01\xff€""#
        );
        assert_eq!(dump(&m, 0x1200, 12, 2), r#"0x1200 "hi"..."#);
        assert_eq!(dump(&m, 0x1200, 0, 1024), "");
        assert_eq!(
            dump(&m, UNMAPPED, 4, 1024),
            "0xdead0000 (error decoding string: bad address)"
        );
        // write: the buffer on entry, "..." on exit; read: the reverse.
        let a = [1, 0x1200, 2, 0, 0, 0];
        let w = [Arg::Fd, Arg::WriteBuffer, Arg::Hex];
        let mut shown = pre(&m, &w, &a, 1024);
        assert_eq!(shown, ["0x1 /dev/pts/0", r#"0x1200 "hi""#, "0x2"]);
        post(&m, &w, &a, 2, &mut shown, 1024);
        assert_eq!(shown[1], "...");
        let r = [Arg::Fd, Arg::ReadBuffer, Arg::Hex];
        let mut shown = pre(&m, &r, &a, 1024);
        assert_eq!(shown[1], "0x1200");
        post(&m, &r, &a, 1, &mut shown, 1024);
        assert_eq!(shown[1], r#"0x1200 "h""#);
    }

    #[test]
    fn iovecs_show_contents_up_to_the_limit() {
        let mut m = Fake::new();
        m.put(0x1200, b"abcdef");
        let mut iov = Vec::new();
        for (base, len) in [(0x1200u64, 3u64), (0x1203, 3), (0x1200, 0)] {
            iov.extend_from_slice(&base.to_le_bytes());
            iov.extend_from_slice(&len.to_le_bytes());
        }
        m.put(0x1300, &iov);
        assert_eq!(
            iovecs(&m, 0x1300, 3, Some(4)),
            r#"0x1300 {base=0x1200, len=3, "abc"}, {base=0x1203, len=3, "d"...}, {base=0x1200, len=0}"#
        );
        assert_eq!(iovecs(&m, 0x1300, 1, None), "0x1300 {base=0x1200, len=3}");
        assert_eq!(
            iovecs(&m, UNMAPPED, 1, None),
            "0xdead0000 (error decoding iovecs: bad address)"
        );
        assert_eq!(
            iovecs(&m, 0x1300, -1, None),
            "0x1300 (error decoding iovecs: invalid iovcnt)"
        );
    }

    #[test]
    fn memory_flags() {
        let a = [0, 4096, 3, 0x22, u64::MAX, 0];
        let f = [
            Arg::Hex,
            Arg::Hex,
            Arg::MmapProt,
            Arg::MmapFlags,
            Arg::Fd,
            Arg::Hex,
        ];
        assert_eq!(
            pre(&Fake::new(), &f, &a, 0),
            [
                "0x0",
                "0x1000",
                "PROT_READ|PROT_WRITE",
                "MAP_PRIVATE|MAP_ANONYMOUS",
                "0xffffffffffffffff (bad FD)",
                "0x0"
            ]
        );
        assert_eq!(flags(0, PROT_FLAGS), "0x0");
        assert_eq!(flags(0x80001, PROT_FLAGS), "PROT_READ|0x80000");
        assert_eq!(
            flags(0x3d0f00, CLONE_FLAGS),
            "CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID"
        );
        assert_eq!(futex_op(0x81), "FUTEX_WAKE|FUTEX_PRIVATE_FLAG");
    }

    #[test]
    fn signals_and_sets() {
        let mut m = Fake::new();
        m.put(0x1400, &((1u64 << 1) | (1 << 14) | (1 << 33)).to_le_bytes());
        let mut act = Vec::new();
        for w in [0x40_1000u64, 0x0400_0004, 0x40_2000, 1 << 16] {
            act.extend_from_slice(&w.to_le_bytes());
        }
        m.put(0x1500, &act);
        assert_eq!(signal(9), "SIGKILL");
        assert_eq!(signal(34), "34");
        assert_eq!(sigset(&m, 0x1400), "0x1400 [SIGINT SIGTERM 34]");
        assert_eq!(sigset(&m, 0), "null");
        assert_eq!(
            sigset(&m, UNMAPPED),
            "0xdead0000 (error copying sigset: bad address)"
        );
        assert_eq!(
            sigaction(&m, 0x1500),
            "0x1500 {Handler: 0x401000, Flags: SA_SIGINFO|SA_RESTORER, Restorer: 0x402000, Mask: [SIGCHLD]}"
        );
        let a = [2, 0x1500, 0x1500, 8, 0, 0];
        let f = [Arg::Signal, Arg::SigAction, Arg::PostSigAction, Arg::Hex];
        let mut shown = pre(&m, &f, &a, 0);
        assert_eq!(shown[0], "SIGINT");
        assert_eq!(shown[2], "0x1500");
        post(&m, &f, &a, 0, &mut shown, 0);
        assert!(shown[2].starts_with("0x1500 {Handler: 0x401000"));
    }

    #[test]
    fn sockets() {
        let mut m = Fake::new();
        let mut un = vec![1u8, 0];
        un.extend_from_slice(b"/tmp/sock\0junk");
        m.put(0x1600, &un);
        let mut inet = vec![2u8, 0, 0x1f, 0x90, 127, 0, 0, 1];
        inet.extend_from_slice(&[0; 8]);
        m.put(0x1700, &inet);
        m.put(0x1800, &16u32.to_le_bytes());
        assert_eq!(
            sockaddr(&m, 0x1600, un.len() as u32),
            r#"0x1600 {Family: AF_UNIX, Addr: "/tmp/sock"}"#
        );
        assert_eq!(
            sockaddr(&m, 0x1700, 16),
            "0x1700 {Family: AF_INET, Addr: 127.0.0.1, Port: 8080}"
        );
        assert_eq!(
            post_sockaddr(&m, 0x1700, 0x1800),
            "0x1700 {Family: AF_INET, Addr: 127.0.0.1, Port: 8080}"
        );
        assert_eq!(
            sockaddr(&m, UNMAPPED, 16),
            "0xdead0000 {error reading address: bad address}"
        );
        assert_eq!(socklen(&m, 0x1800), "0x1800 {length=16}");
        assert_eq!(value(1, SOCKET_FAMILIES), "AF_UNIX");
        assert_eq!(sock_type(1 | 0o2000000), "SOCK_STREAM|SOCK_CLOEXEC");
        assert_eq!(sock_flags(0), "0");
    }

    #[test]
    fn times_polls_and_vectors() {
        let mut m = Fake::new();
        m.put(0x1900, &[5u64.to_le_bytes(), 7u64.to_le_bytes()].concat());
        assert_eq!(timespec(&m, 0x1900), "0x1900 {sec=5 nsec=7}");
        assert_eq!(timespec(&m, 0), "null");
        assert_eq!(
            timespec(&m, UNMAPPED),
            "0xdead0000 (error decoding timespec: bad address)"
        );
        assert_eq!(
            itimerspec(&m, 0x1900),
            "0x1900 {interval=0x1900 {sec=5 nsec=7}, value=0x1910 {sec=0 nsec=0}}"
        );
        // pollfd {fd 1, POLLIN, revents POLLIN|POLLHUP}.
        m.put(0x1a00, &[1, 0, 0, 0, 1, 0, 0x11, 0]);
        assert_eq!(
            pollfds(&m, 0x1a00, 1, false),
            "0x1a00 [{FD: 0x1 /dev/pts/0, Events: POLLIN, REvents: ...}]"
        );
        assert_eq!(
            pollfds(&m, 0x1a00, 1, true),
            "0x1a00 [{FD: 0x1 /dev/pts/0, Events: POLLIN, REvents: POLLIN|POLLHUP}]"
        );
        m.put(0x1b00, b"ls\0-l\0");
        m.put(
            0x1b10,
            &[0x1b00u64, 0x1b03, 0]
                .iter()
                .flat_map(|p| p.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        assert_eq!(string_vector(&m, 0x1b10), r#"0x1b10 ["ls", "-l"]"#);
        assert_eq!(
            string_vector(&m, UNMAPPED),
            "0xdead0000 {error copying vector: bad address}"
        );
        m.put(0x1c00, &[3, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(pipe_fds(&m, 0x1c00), "0x1c00 [3 4]");
        // epoll_event {EPOLLIN, data 5}.
        m.put(0x1d00, &[1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            epoll_event(&m, 0x1d00),
            "0x1d00 {events=EPOLLIN data=[0x5, 0x0]}"
        );
        assert_eq!(
            epoll_events(&m, 0x1d00, 1, 1024),
            "0x1d00 {{events=EPOLLIN data=[0x5, 0x0]}}"
        );
    }

    #[test]
    fn go_formats() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_nanos(512)), "512ns");
        assert_eq!(go_duration(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(go_duration(Duration::from_nanos(2_000_001)), "2.000001ms");
        assert_eq!(go_duration(Duration::from_millis(3_200)), "3.2s");
        assert_eq!(go_duration(Duration::from_millis(60_500)), "1m0.5s");
        assert_eq!(go_quote(b"\t\x7f\xc2\x85"), r#""\t\x7f\u0085""#);
        assert_eq!(signed_hex(-1), "-0x1");
    }
}
