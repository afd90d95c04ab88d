//! lisafs: the protocol between the Sentry (client) and the gofer (server),
//! byte-compatible with upstream gVisor (both the 2022 release and current
//! upstream; see `gvisor-protocols.md` §1).
//!
//! * [`message`]: every request and response (MIDs 0-33) and its codec.
//! * [`sock`]: the socket communicator's framing (8-byte header, max
//!   message size) with host FDs passed as `SCM_RIGHTS`.
//! * [`flipcall`]: the shared-memory handoff (packet window, futex on its
//!   state word, connect handshake, shutdown).
//! * [`channel`]: lisafs channels on flipcall windows, their fdchannel,
//!   and the server's window allocator.
//! * [`client`]: a synchronous client over one socket and its channels.
//! * [`server`]: the server framework: a connection loop and FDID table
//!   around a [`server::FileServer`].
//!
//! Only `sys` (sendmsg/recvmsg with control messages, socketpair) and
//! `shm` (memfd, mmap of a window, atomics and futexes on it) use `unsafe`.

#![deny(unsafe_code)]

pub mod channel;
pub mod client;
pub mod flipcall;
pub mod message;
pub mod server;
#[allow(unsafe_code)]
mod shm;
pub mod sock;
#[allow(unsafe_code)]
mod sys;
mod wire;

pub use channel::{Channel, ChannelError};
pub use client::{Client, ClientError};
pub use flipcall::FlipcallError;
pub use message::{DecodeError, EncodeError, Mid, Request, Response};
pub use server::{serve, Ctx, FileServer, Reply, ServeError};
pub use sock::{FrameError, Message};
