//! Our user-space TCP/IP stack, shaped like upstream gVisor's `pkg/tcpip`.

#![forbid(unsafe_code)]

pub mod header;
