//! The memory devices' reads and writes.

use vfs::dev::{open_memory_device, MEMORY_DEVICES};
use vfs::Errno;

fn rdev(name: &str) -> u64 {
    MEMORY_DEVICES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, rdev, _)| rdev)
        .unwrap()
}

#[test]
fn device_numbers_are_linux_ones() {
    let names: Vec<_> = MEMORY_DEVICES.iter().map(|d| d.0).collect();
    assert_eq!(names, ["null", "zero", "full", "random", "urandom"]);
    assert_eq!(rdev("null"), libc::makedev(1, 3));
    assert_eq!(rdev("zero"), libc::makedev(1, 5));
    assert_eq!(rdev("full"), libc::makedev(1, 7));
    assert_eq!(rdev("random"), libc::makedev(1, 8));
    assert_eq!(rdev("urandom"), libc::makedev(1, 9));
    assert!(MEMORY_DEVICES.iter().all(|d| d.2 == 0o666));
}

#[test]
fn null_reads_nothing_and_swallows_writes() {
    let f = open_memory_device(rdev("null"), libc::O_RDWR).unwrap();
    let mut buf = [7u8; 16];
    assert_eq!(f.read(&mut buf, 0).unwrap(), 0);
    assert_eq!(buf, [7u8; 16]);
    assert_eq!(f.write(b"hello", 100).unwrap(), 5);
    assert_eq!(f.append(b"abc").unwrap(), (3, 0));
    assert!(f.seekable());
    assert!(f.host_fd().is_none());
    assert_eq!(
        f.poll(libc::POLLIN | libc::POLLOUT),
        libc::POLLIN | libc::POLLOUT
    );
}

#[test]
fn zero_reads_zeros_and_swallows_writes() {
    let f = open_memory_device(rdev("zero"), libc::O_RDWR).unwrap();
    let mut buf = [7u8; 4096];
    assert_eq!(f.read(&mut buf, 12345).unwrap(), 4096);
    assert!(buf.iter().all(|&b| b == 0));
    assert_eq!(f.write(&[1; 100], 0).unwrap(), 100);
}

#[test]
fn full_reads_zeros_and_refuses_writes() {
    let f = open_memory_device(rdev("full"), libc::O_RDWR).unwrap();
    let mut buf = [7u8; 10];
    assert_eq!(f.read(&mut buf, 0).unwrap(), 10);
    assert_eq!(buf, [0u8; 10]);
    assert_eq!(f.write(b"x", 0).err(), Some(Errno::ENOSPC));
    // Linux refuses even an empty write.
    assert_eq!(f.write(b"", 0).err(), Some(Errno::ENOSPC));
    assert_eq!(f.append(b"x").err(), Some(Errno::ENOSPC));
}

#[test]
fn random_and_urandom_read_random_bytes_and_accept_writes() {
    for name in ["random", "urandom"] {
        let f = open_memory_device(rdev(name), libc::O_RDWR).unwrap();
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        assert_eq!(f.read(&mut a, 0).unwrap(), 64);
        assert_eq!(f.read(&mut b, 0).unwrap(), 64);
        // 512 random bits: equal or all-zero only by a broken source.
        assert_ne!(a, b, "{name}");
        assert_ne!(a, [0u8; 64], "{name}");
        assert_eq!(f.write(b"entropy?", 0).unwrap(), 8, "{name}");
    }
}

#[test]
fn other_devices_are_enxio() {
    for (major, minor) in [(1, 1), (1, 2), (1, 4), (1, 11), (5, 0), (8, 0), (0, 0)] {
        assert_eq!(
            open_memory_device(libc::makedev(major, minor), 0).err(),
            Some(Errno::ENXIO),
            "{major}:{minor}"
        );
    }
}
