//! Port reservations and Linux's bind-conflict rules (upstream's
//! `pkg/tcpip/ports`; Linux's `inet_csk_bind_conflict` in
//! `net/ipv4/inet_connection_sock.c` and `udp_lib_lport_inuse` in
//! `net/ipv4/udp.c`).

use std::collections::HashMap;
use std::net::IpAddr;

use abi::Errno;

use crate::stack::EpId;

/// Linux's default `ip_local_port_range`.
pub(crate) const EPHEMERAL: std::ops::RangeInclusive<u16> = 32768..=60999;

/// One socket's hold on a port.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Binding {
    pub ep: EpId,
    /// Canonical address (v4-mapped IPv6 as IPv4); unspecified = wildcard.
    pub addr: IpAddr,
    /// An IPv6 wildcard that also covers IPv4 (`IPV6_V6ONLY` off).
    pub dual: bool,
    pub reuseaddr: bool,
    pub reuseport: bool,
    /// TCP only: the socket is listening.
    pub listening: bool,
}

impl Binding {
    fn overlaps(&self, o: &Binding) -> bool {
        let covers = |a: &Binding, b: &Binding| {
            if !a.addr.is_unspecified() {
                return false;
            }
            a.addr.is_ipv4() == b.addr.is_ipv4() || (a.dual && b.addr.is_ipv4())
        };
        self.addr == o.addr || covers(self, o) || covers(o, self)
    }

    fn conflicts(&self, o: &Binding, tcp: bool) -> bool {
        if !self.overlaps(o) || (self.reuseport && o.reuseport) {
            return false;
        }
        let reuse = self.reuseaddr && o.reuseaddr;
        // TCP: SO_REUSEADDR shares a port, but not with a socket already
        // listening (Linux checks only the existing socket's state, so
        // one of several SO_REUSEADDR sockets may listen).
        !(reuse && (!tcp || !o.listening))
    }
}

/// Reservations of one protocol (TCP or UDP).
#[derive(Default)]
pub(crate) struct PortTable {
    tcp: bool,
    ports: HashMap<u16, Vec<Binding>>,
}

impl PortTable {
    pub fn new(tcp: bool) -> PortTable {
        PortTable {
            tcp,
            ports: HashMap::new(),
        }
    }

    fn free_for(&self, port: u16, b: &Binding) -> bool {
        self.ports
            .get(&port)
            .is_none_or(|v| v.iter().all(|o| o.ep == b.ep || !b.conflicts(o, self.tcp)))
    }

    /// Reserves `port` (0: an ephemeral port starting at `hint`) for `b`.
    /// A full ephemeral range is `exhausted` (EADDRINUSE for bind,
    /// EADDRNOTAVAIL for connect's implicit bind, as Linux).
    pub fn reserve(
        &mut self,
        port: u16,
        b: Binding,
        hint: u32,
        exhausted: Errno,
    ) -> Result<u16, Errno> {
        let port = if port != 0 {
            if !self.free_for(port, &b) {
                return Err(Errno::EADDRINUSE);
            }
            port
        } else {
            let (lo, hi) = (u32::from(*EPHEMERAL.start()), u32::from(*EPHEMERAL.end()));
            let n = hi - lo + 1;
            // An ephemeral port is one nobody holds, so connections made
            // from it never collide with an explicit bind.
            (0..n)
                .map(|i| (lo + (hint + i) % n) as u16)
                .find(|p| !self.ports.contains_key(p))
                .ok_or(exhausted)?
        };
        self.ports.entry(port).or_default().push(b);
        Ok(port)
    }

    /// Changes `ep`'s reservation on `port` to listening, failing if that
    /// now conflicts (the second listener on a SO_REUSEADDR port).
    pub fn listen(&mut self, port: u16, ep: EpId) -> Result<(), Errno> {
        let Some(v) = self.ports.get(&port) else {
            return Err(Errno::EINVAL);
        };
        let Some(mut me) = v.iter().find(|b| b.ep == ep).copied() else {
            return Err(Errno::EINVAL);
        };
        me.listening = true;
        if !self.free_for(port, &me) {
            return Err(Errno::EADDRINUSE);
        }
        if let Some(b) = self
            .ports
            .get_mut(&port)
            .and_then(|v| v.iter_mut().find(|b| b.ep == ep))
        {
            b.listening = true;
        }
        Ok(())
    }

    /// Adds an accepted connection's hold on its listener's port (it
    /// shares the port by construction, so no conflict check).
    pub fn add_child(&mut self, port: u16, b: Binding) {
        self.ports.entry(port).or_default().push(b);
    }

    /// Drops `ep`'s reservation on `port`.
    pub fn release(&mut self, port: u16, ep: EpId) {
        if let Some(v) = self.ports.get_mut(&port) {
            v.retain(|b| b.ep != ep);
            if v.is_empty() {
                self.ports.remove(&port);
            }
        }
    }

    /// The reservations on `port`.
    #[cfg(test)]
    pub fn bindings(&self, port: u16) -> &[Binding] {
        self.ports.get(&port).map_or(&[], |v| v.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn b(ep: u64, addr: IpAddr, reuseaddr: bool, reuseport: bool) -> Binding {
        Binding {
            ep: EpId(ep),
            addr,
            dual: false,
            reuseaddr,
            reuseport,
            listening: false,
        }
    }

    const ANY4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    const LO4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const ANY6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

    #[test]
    fn tcp_rules() {
        let mut t = PortTable::new(true);
        t.reserve(80, b(1, ANY4, false, false), 0, Errno::EADDRINUSE)
            .unwrap();
        // Wildcard overlaps a specific address.
        assert_eq!(
            t.reserve(80, b(2, LO4, false, false), 0, Errno::EADDRINUSE),
            Err(Errno::EADDRINUSE)
        );
        // A v6-only wildcard does not overlap IPv4; a dual one does.
        t.reserve(80, b(3, ANY6, false, false), 0, Errno::EADDRINUSE)
            .unwrap();
        let mut dual = b(4, ANY6, true, false);
        dual.dual = true;
        assert!(t.reserve(81, dual, 0, Errno::EADDRINUSE).is_ok());
        assert_eq!(
            t.reserve(81, b(5, LO4, false, false), 0, Errno::EADDRINUSE),
            Err(Errno::EADDRINUSE)
        );

        // SO_REUSEADDR on both: two binds, one listener.
        let mut t = PortTable::new(true);
        t.reserve(90, b(1, LO4, true, false), 0, Errno::EADDRINUSE)
            .unwrap();
        t.reserve(90, b(2, LO4, true, false), 0, Errno::EADDRINUSE)
            .unwrap();
        t.listen(90, EpId(1)).unwrap();
        assert_eq!(t.listen(90, EpId(2)), Err(Errno::EADDRINUSE));
        // And no new bind next to a listener.
        assert_eq!(
            t.reserve(90, b(3, LO4, true, false), 0, Errno::EADDRINUSE),
            Err(Errno::EADDRINUSE)
        );
        // SO_REUSEPORT on both: several listeners.
        let mut t = PortTable::new(true);
        t.reserve(91, b(1, LO4, false, true), 0, Errno::EADDRINUSE)
            .unwrap();
        t.reserve(91, b(2, LO4, false, true), 0, Errno::EADDRINUSE)
            .unwrap();
        t.listen(91, EpId(1)).unwrap();
        t.listen(91, EpId(2)).unwrap();
        t.release(91, EpId(1));
        t.release(91, EpId(2));
        assert!(t.bindings(91).is_empty());
    }

    #[test]
    fn udp_rules_and_ephemeral() {
        let mut t = PortTable::new(false);
        t.reserve(53, b(1, LO4, true, false), 0, Errno::EADDRINUSE)
            .unwrap();
        t.reserve(53, b(2, LO4, true, false), 0, Errno::EADDRINUSE)
            .unwrap();
        assert_eq!(
            t.reserve(53, b(3, LO4, false, false), 0, Errno::EADDRINUSE),
            Err(Errno::EADDRINUSE)
        );
        let p = t
            .reserve(0, b(4, LO4, false, false), 5, Errno::EADDRINUSE)
            .unwrap();
        assert_eq!(p, 32768 + 5);
        let q = t
            .reserve(0, b(5, LO4, false, false), 5, Errno::EADDRINUSE)
            .unwrap();
        assert_eq!(q, 32768 + 6);
    }
}
