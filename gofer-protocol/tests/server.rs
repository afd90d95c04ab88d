//! The server framework against hostile and careless clients: every
//! malformed request gets upstream's error response (or the connection is
//! closed), the connection stays usable afterwards, nothing panics, and an
//! oversize header never makes the server allocate its length.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use abi::Errno;
use gofer_protocol::message::*;
use gofer_protocol::server::{serve, Ctx, FileServer, Reply, ServeError};
use gofer_protocol::sock::{self, encode_header};
use gofer_protocol::{Client, ClientError};

/// A toy server: control FDs carry a number; FStat reports it as the
/// inode number; Walk with a name "panic" panics; Walk makes one child per
/// name.
struct Toy;

impl FileServer for Toy {
    type Control = u64;
    type Open = ();

    fn supported(&self) -> &[Mid] {
        &[Mid::FStat, Mid::Walk]
    }

    fn max_message_size(&self) -> u32 {
        4096
    }

    fn mount(&self) -> Result<(u64, Statx, Option<OwnedFd>), Errno> {
        Ok((
            7,
            Statx {
                ino: 7,
                mode: 0o040755,
                ..Default::default()
            },
            None,
        ))
    }

    fn handle(&self, req: Request, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        match req {
            Request::FStat(r) => {
                let ino = *ctx.control(r.fd)?;
                Ok(Reply::new(Response::FStat(Statx {
                    ino,
                    ..Default::default()
                })))
            }
            Request::Walk(r) => {
                ctx.control(r.dir_fd)?;
                let mut inodes = Vec::new();
                for (i, name) in r.path.iter().enumerate() {
                    if name == b"panic" {
                        panic!("the toy server was asked to panic");
                    }
                    let id = ctx.insert_control(100 + i as u64)?;
                    inodes.push(Inode {
                        control_fd: id,
                        stat: Statx::default(),
                    });
                }
                Ok(Reply::new(Response::Walk(WalkResp {
                    status: WalkStatus::Success,
                    inodes,
                })))
            }
            _ => Err(Errno::EOPNOTSUPP),
        }
    }
}

fn start() -> (UnixStream, JoinHandle<Result<(), ServeError>>) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let h = std::thread::spawn(move || serve(Arc::new(Toy), b));
    (a, h)
}

/// Sends raw bytes and reads one answer as `(mid, payload)`.
fn raw(sock: &UnixStream, bytes: &[u8]) -> (u16, Vec<u8>) {
    (&*sock).write_all(bytes).unwrap();
    let m = sock::read_message(sock, 1 << 20, 0).unwrap();
    (m.mid, m.payload)
}

fn frame(mid: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = encode_header(payload.len() as u32, mid).to_vec();
    v.extend_from_slice(payload);
    v
}

fn errno_of(answer: (u16, Vec<u8>)) -> i32 {
    assert_eq!(
        answer.0, 0,
        "expected the error response, got MID {}",
        answer.0
    );
    assert_eq!(answer.1.len(), 4);
    i32::from_le_bytes(answer.1[..4].try_into().unwrap())
}

fn mount(sock: &UnixStream) -> MountResp {
    let (mid, p) = raw(sock, &frame(1, &[]));
    assert_eq!(mid, 1);
    match Response::decode(1, &p).unwrap() {
        Response::Mount(m) => m,
        r => panic!("{r:?}"),
    }
}

#[test]
fn mount_advertises_what_the_server_implements() {
    let (s, h) = start();
    let m = mount(&s);
    assert_eq!(m.root.control_fd, 1, "the first FDID is 1");
    assert_eq!(m.root.stat.ino, 7);
    assert_eq!(m.max_message_size, 4096);
    // Mount, Channel and Close are the framework's; FStat and Walk the toy's.
    assert_eq!(m.supported, vec![1, 2, 3, 5, 9]);
    drop(s);
    h.join().unwrap().unwrap();
}

#[test]
fn fdids_count_up_and_close_releases_them() {
    let (s, h) = start();
    let c = Client::new(s);
    c.mount().unwrap();
    let walk = |names: &[&str]| match c
        .call(&Request::Walk(WalkReq {
            dir_fd: 1,
            path: names.iter().map(|n| n.as_bytes().to_vec()).collect(),
        }))
        .unwrap()
        .0
    {
        Response::Walk(w) => w.inodes.iter().map(|i| i.control_fd).collect::<Vec<_>>(),
        r => panic!("{r:?}"),
    };
    assert_eq!(walk(&["a", "b"]), vec![2, 3]);
    assert_eq!(walk(&["c"]), vec![4]);
    // Close 2 and an id that never existed; 2 is gone, 3 is not, and ids
    // are not reused.
    c.call(&Request::Close(CloseReq { fds: vec![2, 999] }))
        .unwrap();
    let e = c.call(&Request::FStat(StatReq { fd: 2 })).unwrap_err();
    assert!(matches!(e, ClientError::Remote(Errno::EBADF)), "{e}");
    match c.call(&Request::FStat(StatReq { fd: 3 })).unwrap().0 {
        Response::FStat(s) => assert_eq!(s.ino, 101),
        r => panic!("{r:?}"),
    }
    assert_eq!(walk(&["d"]), vec![5]);
    // FDID 0 is never valid.
    let e = c.call(&Request::FStat(StatReq { fd: 0 })).unwrap_err();
    assert!(matches!(e, ClientError::Remote(Errno::EBADF)), "{e}");
    drop(c);
    h.join().unwrap().unwrap();
}

#[test]
fn bad_requests_get_upstreams_errnos_and_the_connection_survives() {
    let (s, h) = start();
    mount(&s);
    // MID 0 (Error) as a request.
    assert_eq!(errno_of(raw(&s, &frame(0, &[1, 0, 0, 0]))), libc::EINVAL);
    // A MID lisafs does not define.
    assert_eq!(errno_of(raw(&s, &frame(34, &[]))), libc::EOPNOTSUPP);
    assert_eq!(errno_of(raw(&s, &frame(0xffff, &[]))), libc::EOPNOTSUPP);
    // A MID lisafs defines but this server does not implement.
    assert_eq!(errno_of(raw(&s, &frame(12, &[0; 24]))), libc::EOPNOTSUPP);
    assert_eq!(
        errno_of(raw(&s, &frame(Mid::Flush.raw(), &[0; 8]))),
        libc::EOPNOTSUPP
    );
    // A payload that does not decode: short, and with trailing bytes.
    assert_eq!(errno_of(raw(&s, &frame(3, &[1, 0, 0]))), libc::EIO);
    assert_eq!(errno_of(raw(&s, &frame(3, &[0; 9]))), libc::EIO);
    // Walk whose count promises more strings than the payload holds.
    let mut p = 1u64.to_le_bytes().to_vec();
    p.extend_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(errno_of(raw(&s, &frame(5, &p))), libc::EIO);
    // A payload over the max message size: drained, answered EIO.
    assert_eq!(errno_of(raw(&s, &frame(3, &[0; 5000]))), libc::EIO);
    // A panicking handler: EREMOTEIO, and the server lives on.
    let mut p = 1u64.to_le_bytes().to_vec();
    p.extend_from_slice(&[1, 0, 5, 0]);
    p.extend_from_slice(b"panic");
    assert_eq!(errno_of(raw(&s, &frame(5, &p))), libc::EREMOTEIO);
    // Still serving, with state intact.
    let (mid, p) = raw(&s, &frame(3, &1u64.to_le_bytes()));
    assert_eq!(mid, 3);
    assert_eq!(Response::decode(3, &p).unwrap(), {
        Response::FStat(Statx {
            ino: 7,
            ..Default::default()
        })
    });
    drop(s);
    h.join().unwrap().unwrap();
}

#[test]
fn fds_sent_with_a_request_are_not_kept() {
    let (s, h) = start();
    mount(&s);
    // Attach an FD to a request; the server reads requests with no
    // control space, so the kernel discards it.
    let (x, _y) = UnixStream::pair().unwrap();
    let fd = OwnedFd::from(x);
    sock::write_message(
        &s,
        3,
        &1u64.to_le_bytes(),
        &[std::os::fd::AsFd::as_fd(&fd)],
        4096,
    )
    .unwrap();
    let m = sock::read_message(&s, 4096, 0).unwrap();
    assert_eq!(m.mid, 3);
    drop(s);
    h.join().unwrap().unwrap();
}

#[test]
fn huge_length_then_hangup_ends_the_connection_without_allocating() {
    let (s, h) = start();
    // Claims a 4 GiB payload, sends 100 bytes and hangs up. The server
    // drains in small chunks, sees the stream end and returns an error; it
    // neither allocates 4 GiB nor panics.
    let mut v = encode_header(u32::MAX, 3).to_vec();
    v.extend_from_slice(&[0u8; 100]);
    (&s).write_all(&v).unwrap();
    drop(s);
    assert!(h.join().unwrap().is_err());
}

#[test]
fn a_torn_header_or_payload_closes_the_connection() {
    for bytes in [&[1u8, 0, 0][..], &frame(3, &[0; 8])[..12]] {
        let (s, h) = start();
        (&s).write_all(bytes).unwrap();
        drop(s);
        assert!(h.join().unwrap().is_err(), "{bytes:?}");
    }
}

#[test]
fn a_clean_hangup_ends_the_connection_cleanly() {
    let (s, h) = start();
    drop(s);
    h.join().unwrap().unwrap();
    // Also after the client sent a request but never read the answer.
    let (s, h) = start();
    (&s).write_all(&frame(1, &[])).unwrap();
    s.shutdown(std::net::Shutdown::Both).unwrap();
    drop(s);
    h.join().unwrap().unwrap();
}

#[test]
fn random_garbage_never_panics_the_server() {
    // A deterministic stream of random frames with valid headers (so each
    // one is answered) and random payloads of every MID.
    let (s, h) = start();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..2000 {
        let mid = (next() % 40) as u16;
        let len = (next() % 64) as usize;
        let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let (m, _) = raw(&s, &frame(mid, &payload));
        assert!(m == 0 || m == mid);
    }
    drop(s);
    h.join().unwrap().unwrap();
}
