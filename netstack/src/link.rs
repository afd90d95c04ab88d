//! Link endpoints: what carries the stack's IP packets (upstream's
//! `stack.LinkEndpoint` and `pkg/tcpip/link/*`).
//!
//! Links here carry bare IP packets (no link-layer header, no neighbour
//! resolution), like a TUN device or upstream's loopback and channel
//! endpoints. An Ethernet/AF_PACKET link will add its header and ARP/NDP
//! when `--network=sandbox` arrives.

use std::sync::{Arc, Mutex, Weak};

use crate::stack::{NicId, Stack};

/// What a link does for the stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCaps {
    /// Packets never leave the host's memory, so checksums are neither
    /// computed on send nor checked on receive (upstream's loopback
    /// advertises RX and TX checksum offload for the same reason).
    pub checksum_offload: bool,
    /// This is a loopback link: packets to any local address go here,
    /// and every address in its subnets is local (Linux's `lo`).
    pub loopback: bool,
}

/// Hands packets received by a link to the stack. A link gets one when
/// it is attached to a NIC ([`crate::Stack::add_nic`]).
#[derive(Clone)]
pub struct Dispatcher {
    pub(crate) stack: Weak<Stack>,
    pub(crate) nic: NicId,
}

impl Dispatcher {
    /// Delivers one received IP packet. Safe to call from any thread,
    /// and from within [`LinkEndpoint::write_packet`] (the stack queues
    /// work rather than recursing).
    pub fn deliver(&self, packet: Vec<u8>) {
        if let Some(s) = self.stack.upgrade() {
            s.deliver_packet(self.nic, packet);
        }
    }
}

/// A link endpoint. The stack calls `write_packet` without holding its
/// lock, so an implementation may call [`Dispatcher::deliver`] inline.
pub trait LinkEndpoint: Send + Sync {
    /// Largest IP packet the link carries.
    fn mtu(&self) -> usize;
    /// The link's capabilities.
    fn caps(&self) -> LinkCaps;
    /// Called once when the link is attached to a NIC.
    fn attach(&self, dispatcher: Dispatcher);
    /// Sends one IP packet.
    fn write_packet(&self, packet: Vec<u8>);
}

/// Linux's loopback MTU (`drivers/net/loopback.c`).
pub const LOOPBACK_MTU: usize = 65536;

/// The loopback link: every packet written is delivered back to the stack.
#[derive(Default)]
pub struct Loopback {
    dispatcher: Mutex<Option<Dispatcher>>,
}

impl Loopback {
    /// A loopback link, not yet attached.
    pub fn new() -> Arc<Loopback> {
        Arc::new(Loopback::default())
    }
}

impl LinkEndpoint for Loopback {
    fn mtu(&self) -> usize {
        LOOPBACK_MTU
    }

    fn caps(&self) -> LinkCaps {
        LinkCaps {
            checksum_offload: true,
            loopback: true,
        }
    }

    fn attach(&self, dispatcher: Dispatcher) {
        *self.dispatcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(dispatcher);
    }

    fn write_packet(&self, packet: Vec<u8>) {
        let d = self
            .dispatcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(d) = d {
            d.deliver(packet);
        }
    }
}
