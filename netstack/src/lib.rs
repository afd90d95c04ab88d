//! Our user-space TCP/IP stack, shaped like upstream gVisor's `pkg/tcpip`.
//!
//! Layers, bottom up:
//! - [`header`]: wire formats (IPv4, IPv6, ICMP echo, UDP, TCP) with
//!   validated parsers, builders and checksums.
//! - [`link`]: the [`LinkEndpoint`] trait and the [`Loopback`] link.
//! - [`Stack`]: NICs, addresses, routes, the IP layer (no fragmentation,
//!   no forwarding), ICMP echo replies, timers.
//! - [`UdpSocket`] and [`TcpSocket`]: the socket-facing endpoints the
//!   Sentry wraps. Every call is non-blocking and returns Linux errno
//!   values ([`abi::Errno`]); the Sentry blocks a task by registering a
//!   [`Waker`] and waiting for the [`Events`] it wants.
//!
//! Time comes from a [`Clock`]: tests drive a [`FakeClock`] with
//! [`Stack::advance`]; the Sentry runs a [`MonotonicClock`] with
//! [`Stack::spawn_timer_thread`]. Locking and callback rules are in the
//! `stack` module's documentation: wakers and links are never called
//! with the stack's lock held.
//!
//! Not here yet: IP fragmentation and reassembly (fragments are
//! dropped), ICMP errors (port/host unreachable are neither sent nor
//! acted on), multicast and broadcast, raw and ping sockets, ARP/NDP
//! (links carry bare IP packets), SYN cookies, urgent data, path MTU
//! discovery, the 200 ms ceiling on TCP_CORK.

#![forbid(unsafe_code)]

mod clock;
pub mod header;
mod link;
mod ports;
pub mod rtnetlink;
mod socket;
mod stack;
mod tcp;
mod udp;
mod waiter;

pub use abi::Errno;
pub use clock::{Clock, FakeClock, MonotonicClock};
pub use link::{Dispatcher, LinkCaps, LinkEndpoint, Loopback, LOOPBACK_MTU};
pub use socket::{Family, RecvInfo, Shutdown, SocketEntry};
pub use stack::{InterfaceAddr, InterfaceInfo, NicCounters, NicId, Stack, Stats, TimerThread};
pub use tcp::{TcpInfo, TcpSocket, TcpSocketOptions, TcpState};
pub use udp::{UdpSocket, UDP_DEFAULT_BUFFER};
pub use waiter::{Events, WaiterId, Waker};
