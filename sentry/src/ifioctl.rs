//! The interface ioctls on sockets (`SIOCGIFCONF`, `SIOCGIFFLAGS`, ...)
//! over the netstack's interfaces, with Linux's layouts and errors
//! (`net/core/dev_ioctl.c`, `net/ipv4/devinet.c`). Only queries: the
//! sandbox cannot change its interfaces.

use std::net::IpAddr;

use abi::Errno;
use netstack::InterfaceInfo;

pub const SIOCGIFNAME: u64 = 0x8910;
pub const SIOCGIFCONF: u64 = 0x8912;
pub const SIOCGIFFLAGS: u64 = 0x8913;
pub const SIOCGIFADDR: u64 = 0x8915;
pub const SIOCGIFNETMASK: u64 = 0x891b;
pub const SIOCGIFMTU: u64 = 0x8921;
pub const SIOCGIFINDEX: u64 = 0x8933;

/// `sizeof(struct ifreq)`.
pub const IFREQ_LEN: usize = 40;
/// `IFNAMSIZ`.
const IFNAMSIZ: usize = 16;

/// Whether `cmd` is one of the `struct ifreq` queries here.
pub fn is_ifreq(cmd: u64) -> bool {
    matches!(
        cmd,
        SIOCGIFNAME | SIOCGIFFLAGS | SIOCGIFADDR | SIOCGIFNETMASK | SIOCGIFMTU | SIOCGIFINDEX
    )
}

fn sockaddr_in(ip: std::net::Ipv4Addr) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_le_bytes());
    b[4..8].copy_from_slice(&ip.octets());
    b
}

fn first_v4(i: &InterfaceInfo) -> Option<(std::net::Ipv4Addr, u8)> {
    i.addrs.iter().find_map(|a| match a.addr {
        IpAddr::V4(v) => Some((v, a.prefix_len)),
        IpAddr::V6(_) => None,
    })
}

fn name_of(req: &[u8; IFREQ_LEN]) -> &[u8] {
    let n = &req[..IFNAMSIZ];
    &n[..n.iter().position(|&c| c == 0).unwrap_or(IFNAMSIZ)]
}

/// Answers an ifreq query in place: `req` holds the application's
/// `struct ifreq` and gets the answer.
pub fn ifreq(ifs: &[InterfaceInfo], cmd: u64, req: &mut [u8; IFREQ_LEN]) -> Result<(), Errno> {
    if cmd == SIOCGIFNAME {
        let index = i32::from_le_bytes(req[16..20].try_into().expect("4 bytes"));
        let i = ifs
            .iter()
            .find(|i| i64::from(i.index) == i64::from(index))
            .ok_or(Errno::ENODEV)?;
        req[..IFNAMSIZ].fill(0);
        let n = i.name.len().min(IFNAMSIZ - 1);
        req[..n].copy_from_slice(&i.name.as_bytes()[..n]);
        return Ok(());
    }
    let name = name_of(req);
    let i = ifs
        .iter()
        .find(|i| i.name.as_bytes() == name)
        .ok_or(Errno::ENODEV)?;
    let data = &mut req[IFNAMSIZ..];
    data.fill(0);
    match cmd {
        SIOCGIFFLAGS => {
            // IFF_UP | IFF_RUNNING, and IFF_LOOPBACK for lo (the short
            // ifr_flags has no room for IFF_LOWER_UP).
            let mut flags: u16 = 0x1 | 0x40;
            if i.loopback {
                flags |= 0x8;
            }
            data[0..2].copy_from_slice(&flags.to_le_bytes());
        }
        SIOCGIFADDR | SIOCGIFNETMASK => {
            let (ip, len) = first_v4(i).ok_or(Errno::EADDRNOTAVAIL)?;
            let v = if cmd == SIOCGIFADDR {
                ip
            } else {
                u32::MAX
                    .checked_shl(32 - u32::from(len.min(32)))
                    .unwrap_or(0)
                    .into()
            };
            data[..16].copy_from_slice(&sockaddr_in(v));
        }
        SIOCGIFMTU => {
            data[0..4].copy_from_slice(&(i.mtu.min(i32::MAX as usize) as i32).to_le_bytes())
        }
        SIOCGIFINDEX => data[0..4].copy_from_slice(&(i.index as i32).to_le_bytes()),
        _ => return Err(Errno::ENOTTY),
    }
    Ok(())
}

/// `SIOCGIFCONF`: one `struct ifreq` per interface with an IPv4 address
/// (its name and that address), as many as fit in `room` bytes; with no
/// buffer (`room` None) the answer is only the length all of them need.
pub fn ifconf(ifs: &[InterfaceInfo], room: Option<usize>) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut need = 0;
    for i in ifs {
        let Some((ip, _)) = first_v4(i) else { continue };
        need += IFREQ_LEN;
        if let Some(room) = room {
            if out.len() + IFREQ_LEN > room {
                break;
            }
            let mut r = [0u8; IFREQ_LEN];
            let n = i.name.len().min(IFNAMSIZ - 1);
            r[..n].copy_from_slice(&i.name.as_bytes()[..n]);
            r[IFNAMSIZ..IFNAMSIZ + 16].copy_from_slice(&sockaddr_in(ip));
            out.extend_from_slice(&r);
        }
    }
    let len = if room.is_some() { out.len() } else { need };
    (out, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lo() -> Vec<InterfaceInfo> {
        vec![crate::procnet::test_loopback()]
    }

    fn req(name: &str) -> [u8; IFREQ_LEN] {
        let mut r = [0u8; IFREQ_LEN];
        r[..name.len()].copy_from_slice(name.as_bytes());
        r
    }

    #[test]
    fn ifreq_queries_golden() {
        let mut r = req("lo");
        ifreq(&lo(), SIOCGIFFLAGS, &mut r).unwrap();
        assert_eq!(&r[16..18], &[0x49, 0]);
        ifreq(&lo(), SIOCGIFADDR, &mut r).unwrap();
        assert_eq!(&r[16..24], &[2, 0, 0, 0, 127, 0, 0, 1]);
        ifreq(&lo(), SIOCGIFNETMASK, &mut r).unwrap();
        assert_eq!(&r[20..24], &[255, 0, 0, 0]);
        ifreq(&lo(), SIOCGIFINDEX, &mut r).unwrap();
        assert_eq!(&r[16..20], &1i32.to_le_bytes());
        let mut by_index = [0u8; IFREQ_LEN];
        by_index[16] = 1;
        ifreq(&lo(), SIOCGIFNAME, &mut by_index).unwrap();
        assert_eq!(&by_index[..3], b"lo\0");
        let mut unknown = req("eth0");
        assert_eq!(ifreq(&lo(), SIOCGIFFLAGS, &mut unknown), Err(Errno::ENODEV));
        // A name filling all 16 bytes without a terminator matches nothing.
        let mut long = [b'l'; IFREQ_LEN];
        assert_eq!(ifreq(&lo(), SIOCGIFINDEX, &mut long), Err(Errno::ENODEV));
        by_index[16] = 9;
        assert_eq!(ifreq(&lo(), SIOCGIFNAME, &mut by_index), Err(Errno::ENODEV));
    }

    #[test]
    fn ifconf_sizes_and_truncates_like_linux() {
        assert_eq!(ifconf(&lo(), None), (Vec::new(), 40));
        let (buf, len) = ifconf(&lo(), Some(100));
        assert_eq!(len, 40);
        assert_eq!(&buf[..3], b"lo\0");
        assert_eq!(&buf[16..24], &[2, 0, 0, 0, 127, 0, 0, 1]);
        assert_eq!(ifconf(&lo(), Some(39)), (Vec::new(), 0));
    }
}
