//! What the inet socket syscalls (`syscalls::inet`) need from an AF_INET
//! or AF_INET6 socket, whichever stack is behind it: a host socket
//! (`--network=host`, `crate::hostinet`) or our netstack
//! (`crate::netstack_socket`). Every call here is non-blocking; the
//! syscall layer does the waiting, the timeouts, SIGPIPE and the copying
//! of addresses and buffers, once for both.
//!
//! NETLINK_ROUTE sockets (`crate::netlink`) take the same path: datagram
//! sockets whose peer is the kernel.
//!
//! Addresses cross this interface as the application's `sockaddr` bytes
//! (at most [`SOCKADDR_MAX`]), so the syscall layer never interprets them.

use std::sync::Arc;
use std::time::Duration;

use abi::Errno;
use vfs::inode::FileOps;

/// `sizeof(struct sockaddr_storage)`: the longest address a caller may pass.
pub const SOCKADDR_MAX: usize = 128;

/// What one receive returned.
pub struct Received {
    /// The call's return value: the bytes copied, or for a datagram read
    /// with MSG_TRUNC its full length.
    pub len: usize,
    /// The sender's address (may be empty for a stream).
    pub name: Vec<u8>,
    /// Control messages, native layout.
    pub control: Vec<u8>,
    /// `msg_flags`.
    pub flags: i32,
}

/// A connection taken from a listener.
pub struct Accepted {
    pub file: Arc<dyn FileOps>,
    /// The file's name (`socket:[N]`).
    pub name: String,
    /// The peer's address.
    pub peer: Vec<u8>,
}

/// An inet socket as the syscall layer sees it. Readiness and waiting go
/// through [`FileOps`]: a host socket has [`FileOps::host_fd`], a
/// netstack socket [`FileOps::poll`] and [`FileOps::waiters`].
pub trait InetSocket: FileOps {
    /// AF_INET or AF_INET6.
    fn family(&self) -> i32;
    /// SOCK_STREAM or SOCK_DGRAM.
    fn sock_type(&self) -> i32;
    /// The protocol as `SO_PROTOCOL` reports it (IPPROTO_TCP/UDP).
    fn protocol(&self) -> i32;
    fn bind(&self, addr: &[u8]) -> Result<(), Errno>;
    /// Start or continue connecting: EINPROGRESS when started, EALREADY
    /// while pending; once done, Ok or the error that ended it (calling
    /// again after completion is how the syscall layer learns the result,
    /// as a second `connect(2)` does on Linux).
    fn connect(&self, addr: &[u8]) -> Result<(), Errno>;
    fn listen(&self, backlog: i32) -> Result<(), Errno>;
    /// A pending connection; EAGAIN if none.
    fn accept(&self) -> Result<Accepted, Errno>;
    fn local_name(&self) -> Result<Vec<u8>, Errno>;
    fn peer_name(&self) -> Result<Vec<u8>, Errno>;
    fn shutdown(&self, how: i32) -> Result<(), Errno>;
    /// One send of what fits (`control` already checked).
    fn send(
        &self,
        data: &[u8],
        to: Option<&[u8]>,
        control: &[u8],
        flags: i32,
    ) -> Result<usize, Errno>;
    /// One receive into `buf`, with room for `control_room` bytes of
    /// control messages.
    fn recv(&self, buf: &mut [u8], control_room: usize, flags: i32) -> Result<Received, Errno>;
    /// `setsockopt` of an option the syscall layer does not answer itself.
    fn set_option(&self, level: i32, name: i32, value: &[u8]) -> Result<(), Errno>;
    /// `getsockopt` into at most `room` bytes.
    fn get_option(&self, level: i32, name: i32, room: usize) -> Result<Vec<u8>, Errno>;
    /// SO_RCVTIMEO (`send == false`) or SO_SNDTIMEO.
    fn timeout(&self, send: bool) -> Option<Duration>;
    fn set_timeout(&self, send: bool, t: Option<Duration>);
}

/// The inet socket behind a file's operations, if it is one.
pub fn inet_of(ops: &dyn FileOps) -> Option<&dyn InetSocket> {
    let any = ops.as_any()?;
    if let Some(h) = any.downcast_ref::<crate::hostinet::HostSocket>() {
        return Some(h);
    }
    if let Some(n) = any.downcast_ref::<crate::netlink::NetlinkSocket>() {
        return Some(n);
    }
    any.downcast_ref::<crate::netstack_socket::NetSocket>()
        .map(|n| n as &dyn InetSocket)
}

/// Keeps SO_RCVTIMEO and SO_SNDTIMEO for a socket (the Sentry blocks, so
/// it keeps them whatever the stack).
#[derive(Default)]
pub struct Timeouts(std::sync::Mutex<[Option<Duration>; 2]>);

impl Timeouts {
    pub fn get(&self, send: bool) -> Option<Duration> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())[usize::from(send)]
    }

    pub fn set(&self, send: bool, t: Option<Duration>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner())[usize::from(send)] = t;
    }
}
