//! The error a syscall returns: a Linux errno, `Copy`, no allocation.

use std::fmt;

use linux_raw_sys::errno;

/// A Linux errno value (positive, as in `errno.h`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(u16);

macro_rules! errnos {
    ($($name:ident => $text:literal),* $(,)?) => {
        impl Errno {
            $(
                #[doc = $text]
                pub const $name: Errno = Errno(errno::$name as u16);
            )*

            /// The symbolic name (`"ENOENT"`), if this is a known errno.
            pub fn name(self) -> Option<&'static str> {
                match u32::from(self.0) {
                    $(errno::$name => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// The lower-case description Go's `syscall.Errno` prints, which
            /// is how upstream runsc words errors to users.
            pub fn description(self) -> &'static str {
                match u32::from(self.0) {
                    $(errno::$name => $text,)*
                    _ => "unknown error",
                }
            }
        }
    };
}

errnos! {
    EPERM => "operation not permitted",
    ENOENT => "no such file or directory",
    ESRCH => "no such process",
    EINTR => "interrupted system call",
    EIO => "input/output error",
    ENXIO => "no such device or address",
    E2BIG => "argument list too long",
    ENOEXEC => "exec format error",
    EBADF => "bad file descriptor",
    ECHILD => "no child processes",
    EAGAIN => "resource temporarily unavailable",
    ENOMEM => "cannot allocate memory",
    EACCES => "permission denied",
    EFAULT => "bad address",
    EBUSY => "device or resource busy",
    EEXIST => "file exists",
    EXDEV => "invalid cross-device link",
    ENODEV => "no such device",
    ENOTDIR => "not a directory",
    EISDIR => "is a directory",
    EINVAL => "invalid argument",
    ENFILE => "too many open files in system",
    EMFILE => "too many open files",
    ENOTTY => "inappropriate ioctl for device",
    ETXTBSY => "text file busy",
    EFBIG => "file too large",
    ENOSPC => "no space left on device",
    ESPIPE => "illegal seek",
    EROFS => "read-only file system",
    EMLINK => "too many links",
    EPIPE => "broken pipe",
    EDOM => "numerical argument out of domain",
    ERANGE => "numerical result out of range",
    ENAMETOOLONG => "file name too long",
    ENOSYS => "function not implemented",
    ENOTEMPTY => "directory not empty",
    ELOOP => "too many levels of symbolic links",
    EOVERFLOW => "value too large for defined data type",
    ELIBBAD => "accessing a corrupted shared library",
    EOPNOTSUPP => "operation not supported",
    ETIMEDOUT => "connection timed out",
    ENODATA => "no data available",
    ENOTSOCK => "socket operation on non-socket",
    EDESTADDRREQ => "destination address required",
    EMSGSIZE => "message too long",
    EPROTOTYPE => "protocol wrong type for socket",
    ENOPROTOOPT => "protocol not available",
    EPROTONOSUPPORT => "protocol not supported",
    EAFNOSUPPORT => "address family not supported by protocol",
    EADDRINUSE => "address already in use",
    EADDRNOTAVAIL => "cannot assign requested address",
    ECONNABORTED => "software caused connection abort",
    ECONNRESET => "connection reset by peer",
    EISCONN => "transport endpoint is already connected",
    ENOTCONN => "transport endpoint is not connected",
    ECONNREFUSED => "connection refused",
    EINPROGRESS => "operation now in progress",
    EALREADY => "operation already in progress",
    EDEADLK => "resource deadlock avoided",
    ENOLCK => "no locks available",
    ESTALE => "stale NFS file handle",
    ESOCKTNOSUPPORT => "socket type not supported",
    ENOBUFS => "no buffer space available",
    ENETDOWN => "network is down",
    ENETUNREACH => "network is unreachable",
    ESHUTDOWN => "cannot send after transport endpoint shutdown",
    EHOSTUNREACH => "no route to host",
}

impl Errno {
    /// An errno from its number; `None` outside 1..=4095.
    pub fn new(raw: i32) -> Option<Errno> {
        (1..4096).contains(&raw).then_some(Errno(raw as u16))
    }

    /// The positive errno number.
    pub fn raw(self) -> i32 {
        i32::from(self.0)
    }

    /// The value a syscall leaves in `rax` for this error (`-errno`).
    pub fn as_return(self) -> u64 {
        (-i64::from(self.0)) as u64
    }

    /// The errno of a host `std::io::Error`, or `EIO` if it carries none.
    pub fn from_io(err: &std::io::Error) -> Errno {
        err.raw_os_error()
            .and_then(Errno::new)
            .unwrap_or(Errno::EIO)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_words_match_linux_and_go() {
        assert_eq!(Errno::ENOENT.raw(), 2);
        assert_eq!(Errno::ENOEXEC.raw(), 8);
        assert_eq!(Errno::EACCES.raw(), 13);
        assert_eq!(Errno::ENOSYS.raw(), 38);
        assert_eq!(Errno::ENOENT.to_string(), "no such file or directory");
        assert_eq!(format!("{:?}", Errno::ELOOP), "ELOOP");
        assert_eq!(Errno::EPERM.as_return(), u64::MAX);
        assert_eq!(Errno::new(0), None);
        assert_eq!(Errno::new(4096), None);
    }
}
