//! flipcall channels between our client and our server framework, and
//! against peers that misbehave or die: every malformed datagram ends in an
//! error response or a shut-down channel, and a dead peer never leaves the
//! other side waiting.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use abi::Errno;
use gofer_protocol::channel::{self, Channel, ChannelError, WindowAllocator};
use gofer_protocol::flipcall::{Endpoint, FlipcallError, STATE_SHUTDOWN};
use gofer_protocol::message::*;
use gofer_protocol::server::{serve, Ctx, FileServer, Reply, ServeError};
use gofer_protocol::{Client, ClientError};

/// A toy server that says which thread answered: FStat reports
/// `blksize` 1 on a channel thread and 0 on the socket's. Walk of "sleep"
/// sleeps 400 ms. OpenAt donates /dev/null.
struct Probe;

impl FileServer for Probe {
    type Control = u64;
    type Open = ();

    fn supported(&self) -> &[Mid] {
        &[Mid::FStat, Mid::Walk, Mid::OpenAt]
    }

    fn max_message_size(&self) -> u32 {
        4096
    }

    fn mount(&self) -> Result<(u64, Statx, Option<OwnedFd>), Errno> {
        Ok((7, Statx::default(), None))
    }

    fn handle(&self, req: Request, ctx: &Ctx<'_, Self>) -> Result<Reply, Errno> {
        match req {
            Request::FStat(r) => {
                let ino = *ctx.control(r.fd)?;
                let on_channel = std::thread::current().name() == Some("lisafs-channel");
                Ok(Reply::new(Response::FStat(Statx {
                    ino,
                    blksize: u32::from(on_channel),
                    ..Default::default()
                })))
            }
            Request::Walk(r) => {
                if r.path.iter().any(|p| p == b"sleep") {
                    std::thread::sleep(Duration::from_millis(400));
                }
                Ok(Reply::new(Response::Walk(WalkResp {
                    status: WalkStatus::Success,
                    inodes: Vec::new(),
                })))
            }
            Request::OpenAt(r) => {
                ctx.control(r.fd)?;
                let null = std::fs::File::open("/dev/null").map_err(|_| Errno::EIO)?;
                let id = ctx.insert_open(())?;
                Ok(Reply::with_fds(
                    Response::OpenAt(OpenAtResp { open_fd: id }),
                    vec![null.into()],
                ))
            }
            _ => Err(Errno::EOPNOTSUPP),
        }
    }
}

fn start() -> (Client, JoinHandle<Result<(), ServeError>>) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let h = std::thread::spawn(move || serve(Arc::new(Probe), b));
    let c = Client::new(a);
    c.mount().unwrap();
    (c, h)
}

/// Joins `h`, failing if it takes longer than `secs`.
fn join_within<T>(h: JoinHandle<T>, secs: u64, what: &str) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !h.is_finished() {
        assert!(
            Instant::now() < deadline,
            "{what} still running after {secs} s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    h.join().unwrap()
}

fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what} not within {secs} s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Opens one channel by hand: the Channel RPC on the socket, then map and
/// connect.
fn raw_channel(c: &Client) -> Channel {
    let (resp, fds) = c.call(&Request::Channel).unwrap();
    let Response::Channel(cr) = resp else {
        panic!("Channel answered {resp:?}");
    };
    let mut fds = fds.into_iter();
    Channel::connect(
        &cr,
        fds.next().unwrap(),
        fds.next().unwrap(),
        c.max_message_size(),
    )
    .unwrap()
}

fn fstat_payload(fd: u64) -> Vec<u8> {
    Request::FStat(StatReq { fd }).encode().unwrap()
}

fn errno_of(m: &gofer_protocol::Message) -> u32 {
    assert_eq!(m.mid, 0, "expected the error response, got MID {}", m.mid);
    u32::from_le_bytes(m.payload[..4].try_into().unwrap())
}

fn fstat_blksize(c: &Client, on_socket: bool) -> u32 {
    let req = Request::FStat(StatReq { fd: 1 });
    let r = if on_socket {
        c.call_on_socket(&req)
    } else {
        c.call(&req)
    };
    match r.unwrap().0 {
        Response::FStat(s) => {
            assert_eq!(s.ino, 7);
            s.blksize
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn calls_go_over_channels_when_open() {
    let (c, h) = start();
    // Without channels, calls use the socket.
    assert_eq!(fstat_blksize(&c, false), 0);
    let n = c.open_default_channels().unwrap();
    assert_eq!(n, channel::max_channels());
    assert_eq!(c.idle_channels(), n);
    // One more is refused with ENOMEM: the server's limit.
    let e = c.call(&Request::Channel).unwrap_err();
    assert!(matches!(e, ClientError::Remote(Errno::ENOMEM)), "{e}");
    // Now calls go over a channel, and the socket still works.
    assert_eq!(fstat_blksize(&c, false), 1);
    assert_eq!(fstat_blksize(&c, true), 0);
    assert_eq!(c.channel_calls(), 1);

    // A donated FD travels on the fdchannel.
    let (resp, fds) = c
        .call(&Request::OpenAt(OpenAtReq {
            fd: 1,
            flags: 0,
            pad: 0,
        }))
        .unwrap();
    assert!(matches!(resp, Response::OpenAt(_)), "{resp:?}");
    assert_eq!(fds.len(), 1);
    let md = std::fs::File::from(fds.into_iter().next().unwrap())
        .metadata()
        .unwrap();
    assert!(md.file_type().is_char_device(), "/dev/null came back");
    // Errors come back over the channel too, and it stays usable.
    let e = c.call(&Request::FStat(StatReq { fd: 99 })).unwrap_err();
    assert!(matches!(e, ClientError::Remote(Errno::EBADF)), "{e}");
    let e = c
        .call(&Request::FSync(FsyncReq { fds: vec![] }))
        .unwrap_err();
    assert!(matches!(e, ClientError::Unsupported(Mid::FSync)), "{e}");
    assert_eq!(c.idle_channels(), n);

    // Many threads at once: every call answered, all channels come back.
    let c = Arc::new(c);
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                for _ in 0..200 {
                    fstat_blksize(&c, false);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(c.idle_channels(), n);
    assert!(c.channel_calls() > 3);

    // Dropping the client ends the session: the server's channel threads
    // stop and serve() returns.
    drop(Arc::into_inner(c).unwrap());
    join_within(h, 5, "serve()").unwrap();
}

#[test]
fn server_answers_malformed_channel_requests() {
    let (c, h) = start();
    let ch = raw_channel(&c);
    let ep = ch.endpoint();
    let watch = Some(ch.fd_socket());

    // Unknown MID, MID 0, undecodable payload: error responses.
    assert_eq!(
        errno_of(&ch.call(200, &[]).unwrap()),
        libc::EOPNOTSUPP as u32
    );
    assert_eq!(errno_of(&ch.call(0, &[]).unwrap()), libc::EINVAL as u32);
    assert_eq!(
        errno_of(&ch.call(Mid::FStat.raw(), &[1, 2, 3]).unwrap()),
        libc::EIO as u32
    );
    // A MID the server does not advertise (Flush, 2022 has it, Probe not).
    assert_eq!(
        errno_of(&ch.call(Mid::Flush.raw(), &0u64.to_le_bytes()).unwrap()),
        libc::EOPNOTSUPP as u32
    );

    // A request that announces FDs: EINVAL (requests carry none).
    ep.write_data(0, &[Mid::FStat.raw() as u8, 0, 3, 0])
        .unwrap();
    ep.write_data(4, &fstat_payload(1)).unwrap();
    let len = ep.send_recv(4 + 8, watch).unwrap();
    let mut d = vec![0u8; len as usize];
    ep.read_data(0, &mut d).unwrap();
    assert_eq!(&d[..4], &[0, 0, 0, 0]);
    assert_eq!(d[4..8], (libc::EINVAL as u32).to_le_bytes());

    // A payload that fits the window but exceeds the max message size.
    assert!(ep.data_cap() as usize >= 4 + 5000);
    ep.write_data(0, &[Mid::FStat.raw() as u8, 0, 0, 0])
        .unwrap();
    let len = ep.send_recv(4 + 5000, watch).unwrap();
    let mut d = vec![0u8; len as usize];
    ep.read_data(0, &mut d).unwrap();
    assert_eq!(d[4..8], (libc::EIO as u32).to_le_bytes());

    // The channel still works after all that.
    let m = ch.call(Mid::FStat.raw(), &fstat_payload(1)).unwrap();
    assert_eq!(m.mid, Mid::FStat.raw());

    // A data length past the window: the server ends that channel (its
    // state goes to shutdown) instead of reading out of bounds.
    ep.hand_off_unchecked(ep.data_cap() + 1).unwrap();
    let e = ep.wait(watch).unwrap_err();
    assert!(matches!(e, FlipcallError::Shutdown), "{e}");
    assert_eq!(ep.state(), STATE_SHUTDOWN);
    drop(ch);

    // A datagram shorter than the channel header: likewise.
    let ch = raw_channel(&c);
    let ep = ch.endpoint();
    ep.hand_off_unchecked(2).unwrap();
    let e = ep.wait(Some(ch.fd_socket())).unwrap_err();
    assert!(matches!(e, FlipcallError::Shutdown), "{e}");
    let e = ch.call(Mid::FStat.raw(), &fstat_payload(1)).unwrap_err();
    assert!(e.is_shutdown(), "{e}");
    drop(ch);

    // The socket is unaffected throughout.
    assert_eq!(fstat_blksize(&c, true), 0);
    drop(c);
    join_within(h, 5, "serve()").unwrap();
}

/// A server-side channel in this process, served by `behave` on its own
/// thread after the connect handshake; returns the client's channel.
fn fake_server(
    max: u32,
    behave: impl FnOnce(Channel, u32) + Send + 'static,
) -> (Channel, JoinHandle<()>) {
    let mut alloc = WindowAllocator::new().unwrap();
    let (server, resp, [mem, sock]) = alloc.create_channel(max).unwrap();
    let h = std::thread::spawn(move || {
        let len = server
            .endpoint()
            .recv_first(Some(server.fd_socket()))
            .unwrap();
        behave(server, len);
    });
    let client = Channel::connect(&resp, mem, sock, max).unwrap();
    (client, h)
}

fn respond(server: &Channel, header: [u8; 4], payload: &[u8], len: u32) {
    let ep = server.endpoint();
    ep.write_data(0, &header).unwrap();
    ep.write_data(4, payload).unwrap();
    ep.hand_off_unchecked(len).unwrap();
    // Wait for the client to shut down or call again.
    let _ = ep.wait(Some(server.fd_socket()));
}

#[test]
fn client_rejects_malformed_channel_responses() {
    // numFDs says 2, the fdchannel holds 1.
    let (c, h) = fake_server(4096, |s, _| {
        let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        assert_eq!(s.send_fds(&[null]), 1);
        respond(
            &s,
            [Mid::OpenAt.raw() as u8, 0, 2, 0],
            &1u64.to_le_bytes(),
            12,
        );
    });
    let e = c.call(Mid::OpenAt.raw(), &[0; 16]).unwrap_err();
    assert!(
        matches!(e, ChannelError::MissingFds { want: 2, got: 1 }),
        "{e}"
    );
    drop(c);
    join_within(h, 5, "fake server");

    // A response length past the window.
    let (c, h) = fake_server(4096, |s, _| {
        let cap = s.endpoint().data_cap();
        respond(&s, [0; 4], &[], cap + 1);
    });
    let e = c.call(Mid::FStat.raw(), &fstat_payload(1)).unwrap_err();
    assert!(
        matches!(e, ChannelError::Flipcall(FlipcallError::TooLong { .. })),
        "{e}"
    );
    drop(c);
    join_within(h, 5, "fake server");

    // A response shorter than the channel header.
    let (c, h) = fake_server(4096, |s, _| respond(&s, [0; 4], &[], 3));
    let e = c.call(Mid::FStat.raw(), &fstat_payload(1)).unwrap_err();
    assert!(matches!(e, ChannelError::Short(3)), "{e}");
    drop(c);
    join_within(h, 5, "fake server");

    // A payload within the window but over the max message size.
    let (c, h) = fake_server(4096, |s, _| respond(&s, [5, 0, 0, 0], &[], 4 + 4097));
    let e = c.call(Mid::FStat.raw(), &fstat_payload(1)).unwrap_err();
    assert!(matches!(e, ChannelError::TooLarge { len: 4097, .. }), "{e}");
    drop(c);
    join_within(h, 5, "fake server");

    // A server that takes the request and stalls (alive: its fdchannel
    // end stays open): a local shutdown wakes the waiting caller.
    let (c, h) = fake_server(4096, |s, _| std::mem::forget(s));
    let c = Arc::new(c);
    let c2 = Arc::clone(&c);
    let t = std::thread::spawn(move || c2.call(Mid::FStat.raw(), &fstat_payload(1)));
    join_within(h, 5, "fake server");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!t.is_finished(), "the call waits while the server lives");
    c.shutdown();
    let e = join_within(t, 5, "call on a shut-down channel").unwrap_err();
    assert!(e.is_shutdown(), "{e}");
}

#[test]
fn client_refuses_bad_windows() {
    let mut alloc = WindowAllocator::new().unwrap();
    let (_server, resp, [mem, sock]) = alloc.create_channel(4096).unwrap();
    let max = 4096;
    let dup = |f: &OwnedFd| f.as_fd().try_clone_to_owned().unwrap();
    let bad = |r: Result<Channel, ChannelError>| match r {
        Err(ChannelError::BadWindow(s)) => s,
        other => panic!("expected BadWindow, got {other:?}"),
    };
    // Unaligned offset.
    let mut r = resp;
    r.data_offset = 100;
    bad(Channel::connect(&r, dup(&mem), dup(&sock), max));
    // Negative offset.
    r.data_offset = -4096;
    bad(Channel::connect(&r, dup(&mem), dup(&sock), max));
    // Past the end of the memfd (which would SIGBUS on access).
    let mut r = resp;
    r.data_offset = 1 << 30;
    let s = bad(Channel::connect(&r, dup(&mem), dup(&sock), max));
    assert!(s.contains("past the end"), "{s}");
    // Absurd length.
    let mut r = resp;
    r.data_length = 1 << 40;
    bad(Channel::connect(&r, dup(&mem), dup(&sock), max));
    // Too short for the headers.
    r.data_length = 8;
    bad(Channel::connect(&r, dup(&mem), dup(&sock), max));
    // A memfd that could shrink under us: a plain file is not sealed.
    let plain: OwnedFd = std::fs::File::open("/proc/self/exe").unwrap().into();
    let s = bad(Channel::connect(&resp, plain, dup(&sock), max));
    assert!(s.contains("F_SEAL_SHRINK"), "{s}");
    // The fdchannel must be a SEQPACKET socket.
    let (a, _b) = UnixStream::pair().unwrap();
    let s = bad(Channel::connect(&resp, dup(&mem), a.into(), max));
    assert!(s.contains("SOCK_SEQPACKET"), "{s}");
}

#[test]
fn client_survives_server_death_mid_call() {
    // The server takes the request, then dies: its fdchannel end closes
    // and its window is never handed back or shut down.
    let (c, h) = fake_server(4096, |s, _| {
        let (ep, sock) = s.into_parts();
        let _: &'static Endpoint = Box::leak(Box::new(ep));
        drop(sock);
    });
    let start = Instant::now();
    let e = c.call(Mid::FStat.raw(), &fstat_payload(1)).unwrap_err();
    assert!(
        matches!(e, ChannelError::Flipcall(FlipcallError::PeerGone)),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    join_within(h, 5, "fake server");
}

#[test]
fn server_survives_client_death() {
    let (c, h) = start();

    // Death while the server handles a call: the client hands over a slow
    // request and is gone before the answer. The server finishes, hands
    // back, sees the fdchannel hang up, and shuts the channel down.
    let ch = raw_channel(&c);
    let (ep, sock) = ch.into_parts();
    let ep: &'static Endpoint = Box::leak(Box::new(ep));
    let walk = Request::Walk(WalkReq {
        dir_fd: 1,
        path: vec![b"sleep".to_vec()],
    })
    .encode()
    .unwrap();
    ep.write_data(0, &[Mid::Walk.raw() as u8, 0, 0, 0]).unwrap();
    ep.write_data(4, &walk).unwrap();
    ep.hand_off_unchecked(4 + walk.len() as u32).unwrap();
    drop(sock);
    wait_for(5, "server shuts down the dead client's channel", || {
        ep.state() == STATE_SHUTDOWN
    });

    // Death while the server waits for the next request.
    let ch = raw_channel(&c);
    let (ep, sock) = ch.into_parts();
    let ep: &'static Endpoint = Box::leak(Box::new(ep));
    drop(sock);
    wait_for(5, "server notices an idle channel's client died", || {
        ep.state() == STATE_SHUTDOWN
    });

    // The connection is fine; the dead channels count against the limit
    // until it ends (as upstream), so max-2 more open, then ENOMEM.
    assert_eq!(fstat_blksize(&c, true), 0);
    let room = channel::max_channels() - 2;
    assert_eq!(c.open_channels(room).unwrap(), room);
    let e = c.call(&Request::Channel).unwrap_err();
    assert!(matches!(e, ClientError::Remote(Errno::ENOMEM)), "{e}");
    assert_eq!(fstat_blksize(&c, false), u32::from(room > 0));
    drop(c);
    join_within(h, 5, "serve()").unwrap();
}
