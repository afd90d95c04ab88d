//! flipcall (§1.4): a synchronous handoff between two processes through a
//! shared "packet window" and a futex on its first word.
//!
//! Window layout: `connState u32` at 0 (the futex word), `dataLen u32` at
//! 4, 8 reserved bytes, then the datagram area (`cap = window - 16`). The
//! state is 0 while the client may touch the datagram, 1 while the server
//! may, and 2 once either side has shut the connection down. A side hands
//! control over by storing the datagram length, moving the state from its
//! own value to the peer's, and waking the futex; it then sleeps on the
//! futex until the state comes back.
//!
//! Waits are sliced ([`WAIT_SLICE`]): after each slice that ends with the
//! peer still active, the endpoint checks a local shutdown flag and, when
//! given one, whether a socket whose other end the peer holds has hung up,
//! so that a dead peer never blocks us for good.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use thiserror::Error;

use crate::shm::{self, Mapping};

/// Bytes of the window header before the datagram.
pub const PACKET_HEADER_SIZE: usize = 16;
/// `connState`: the client holds the window (the initial value).
pub const STATE_CLIENT_ACTIVE: u32 = 0;
/// `connState`: the server holds the window.
pub const STATE_SERVER_ACTIVE: u32 = 1;
/// `connState`: the connection is shut down.
pub const STATE_SHUTDOWN: u32 = 2;
/// What each side writes during the connect handshake (a JSON empty
/// object as a stream encoder emits it).
pub const CONNECT_MESSAGE: &[u8] = b"{}\n";

/// How long one futex wait lasts before the endpoint re-checks its
/// shutdown flag and the peer's liveness.
pub const WAIT_SLICE: Duration = Duration::from_millis(100);

const STATE_OFFSET: usize = 0;
const LEN_OFFSET: usize = 4;

/// Why a handoff failed.
#[derive(Debug, Error)]
pub enum FlipcallError {
    /// The connection was shut down (by us or by the peer).
    #[error("flipcall connection is shut down")]
    Shutdown,
    /// The peer is gone: the socket it held hung up while we waited.
    #[error("flipcall peer went away (its socket hung up) while we waited for it")]
    PeerGone,
    /// The state word holds a value no well-behaved peer writes.
    #[error("flipcall state word holds {0}; expected 0, 1 or 2")]
    BadState(u32),
    /// A datagram length larger than the window's data area.
    #[error("flipcall datagram of {len} bytes does not fit the {cap}-byte window")]
    TooLong { len: u64, cap: u32 },
    /// The connect handshake carried something other than a JSON object.
    #[error("flipcall connect handshake: {0}")]
    Handshake(String),
    /// A futex call failed.
    #[error("flipcall futex: {0}")]
    Io(#[from] io::Error),
}

/// Which end of the window an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// One end of a flipcall connection over a mapped packet window.
#[derive(Debug)]
pub struct Endpoint {
    map: Mapping,
    side: Side,
    cap: u32,
    shut: AtomicBool,
}

impl Endpoint {
    pub(crate) fn new(map: Mapping, side: Side) -> Result<Endpoint, FlipcallError> {
        let cap = map
            .len()
            .checked_sub(PACKET_HEADER_SIZE)
            .and_then(|c| u32::try_from(c).ok())
            .ok_or(FlipcallError::TooLong {
                len: map.len() as u64,
                cap: u32::MAX,
            })?;
        Ok(Endpoint {
            map,
            side,
            cap,
            shut: AtomicBool::new(false),
        })
    }

    /// Which end this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Bytes the datagram area holds.
    pub fn data_cap(&self) -> u32 {
        self.cap
    }

    fn states(&self) -> (u32, u32) {
        match self.side {
            Side::Client => (STATE_CLIENT_ACTIVE, STATE_SERVER_ACTIVE),
            Side::Server => (STATE_SERVER_ACTIVE, STATE_CLIENT_ACTIVE),
        }
    }

    fn check_range(&self, off: usize, len: usize) -> Result<(), FlipcallError> {
        match off.checked_add(len) {
            Some(end) if end <= self.cap as usize => Ok(()),
            _ => Err(FlipcallError::TooLong {
                len: off as u64 + len as u64,
                cap: self.cap,
            }),
        }
    }

    /// Copies `src` into the datagram at `off`.
    pub fn write_data(&self, off: usize, src: &[u8]) -> Result<(), FlipcallError> {
        self.check_range(off, src.len())?;
        self.map.write(PACKET_HEADER_SIZE + off, src);
        Ok(())
    }

    /// Copies `dst.len()` bytes of the datagram at `off` out.
    pub fn read_data(&self, off: usize, dst: &mut [u8]) -> Result<(), FlipcallError> {
        self.check_range(off, dst.len())?;
        self.map.read(PACKET_HEADER_SIZE + off, dst);
        Ok(())
    }

    /// The raw state word (for tests and diagnostics).
    pub fn state(&self) -> u32 {
        self.map.word(STATE_OFFSET).load(Ordering::SeqCst)
    }

    /// Stores a raw datagram length without checking it (tests use this
    /// to play a misbehaving peer).
    pub fn set_raw_data_len(&self, len: u32) {
        self.map.word(LEN_OFFSET).store(len, Ordering::SeqCst);
    }

    /// Hands the window to the peer with a `len`-byte datagram.
    fn hand_off(&self, len: u32) -> Result<(), FlipcallError> {
        if self.shut.load(Ordering::SeqCst) {
            return Err(FlipcallError::Shutdown);
        }
        if len > self.cap {
            return Err(FlipcallError::TooLong {
                len: u64::from(len),
                cap: self.cap,
            });
        }
        let (mine, peer) = self.states();
        self.map.word(LEN_OFFSET).store(len, Ordering::SeqCst);
        let state = self.map.word(STATE_OFFSET);
        match state.compare_exchange(mine, peer, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => {}
            Err(STATE_SHUTDOWN) => return Err(FlipcallError::Shutdown),
            Err(s) => return Err(FlipcallError::BadState(s)),
        }
        shm::futex_wake(state, 1)?;
        Ok(())
    }

    /// Hands the window over with whatever length `len` says, unchecked,
    /// and returns without waiting: what a broken or dying peer does.
    /// Tests use it to play one.
    #[doc(hidden)]
    pub fn hand_off_unchecked(&self, len: u32) -> Result<(), FlipcallError> {
        let (mine, peer) = self.states();
        self.map.word(LEN_OFFSET).store(len, Ordering::SeqCst);
        let state = self.map.word(STATE_OFFSET);
        match state.compare_exchange(mine, peer, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => {}
            Err(STATE_SHUTDOWN) => return Err(FlipcallError::Shutdown),
            Err(s) => return Err(FlipcallError::BadState(s)),
        }
        shm::futex_wake(state, 1)?;
        Ok(())
    }

    /// Waits until the window is ours and returns the incoming datagram's
    /// length (checked against the window). [`Endpoint::send_recv`] is
    /// hand-off plus this.
    pub fn wait(&self, watch: Option<BorrowedFd<'_>>) -> Result<u32, FlipcallError> {
        self.wait_active(watch)
    }

    /// Waits until the window is ours again and returns the incoming
    /// datagram's length (checked against the window).
    fn wait_active(&self, watch: Option<BorrowedFd<'_>>) -> Result<u32, FlipcallError> {
        let (mine, peer) = self.states();
        let state = self.map.word(STATE_OFFSET);
        loop {
            match state.load(Ordering::SeqCst) {
                s if s == mine => break,
                STATE_SHUTDOWN => return Err(FlipcallError::Shutdown),
                s if s == peer => {}
                s => return Err(FlipcallError::BadState(s)),
            }
            if self.shut.load(Ordering::SeqCst) {
                return Err(FlipcallError::Shutdown);
            }
            shm::futex_wait(state, peer, WAIT_SLICE)?;
            if state.load(Ordering::SeqCst) == peer {
                if let Some(w) = watch {
                    if shm::peer_hung_up(w) {
                        return Err(FlipcallError::PeerGone);
                    }
                }
            }
        }
        let len = self.map.word(LEN_OFFSET).load(Ordering::SeqCst);
        if len > self.cap {
            return Err(FlipcallError::TooLong {
                len: u64::from(len),
                cap: self.cap,
            });
        }
        Ok(len)
    }

    /// Hands over a `len`-byte datagram and waits for the reply; returns
    /// the reply's length. `watch` is a socket whose other end the peer
    /// holds: if it hangs up while we wait, the call fails with
    /// [`FlipcallError::PeerGone`].
    pub fn send_recv(&self, len: u32, watch: Option<BorrowedFd<'_>>) -> Result<u32, FlipcallError> {
        self.hand_off(len)?;
        self.wait_active(watch)
    }

    fn read_handshake(&self, len: u32) -> Result<(), FlipcallError> {
        let mut buf = vec![0u8; len as usize];
        self.read_data(0, &mut buf)?;
        let t = buf.trim_ascii();
        if t.first() == Some(&b'{') && t.last() == Some(&b'}') {
            Ok(())
        } else {
            Err(FlipcallError::Handshake(format!(
                "peer sent {:?}, not a JSON object",
                String::from_utf8_lossy(&buf[..buf.len().min(64)])
            )))
        }
    }

    /// Client: the connect handshake (`{}\n` each way). Must precede the
    /// first [`Endpoint::send_recv`].
    pub fn connect(&self, watch: Option<BorrowedFd<'_>>) -> Result<(), FlipcallError> {
        assert_eq!(self.side, Side::Client, "connect is the client's half");
        self.write_data(0, CONNECT_MESSAGE)?;
        let len = self.send_recv(CONNECT_MESSAGE.len() as u32, watch)?;
        self.read_handshake(len)
    }

    /// Server: waits for the client's connect request, answers it, and
    /// waits for the first real datagram; returns its length.
    pub fn recv_first(&self, watch: Option<BorrowedFd<'_>>) -> Result<u32, FlipcallError> {
        assert_eq!(self.side, Side::Server, "recv_first is the server's half");
        let len = self.wait_active(watch)?;
        self.read_handshake(len)?;
        self.write_data(0, CONNECT_MESSAGE)?;
        self.send_recv(CONNECT_MESSAGE.len() as u32, watch)
    }

    /// Shuts the connection down: any later handoff on either side fails,
    /// and a thread of ours or the peer's waiting on the window wakes up.
    pub fn shutdown(&self) {
        self.shut.store(true, Ordering::SeqCst);
        let state = self.map.word(STATE_OFFSET);
        state.swap(STATE_SHUTDOWN, Ordering::SeqCst);
        // Wake everyone: our own waiter (if any) and the peer's, however
        // many threads a misbehaving peer parks on the word.
        let _ = shm::futex_wake(state, i32::MAX);
    }

    /// Whether [`Endpoint::shutdown`] was called on this endpoint.
    pub fn is_shut_down(&self) -> bool {
        self.shut.load(Ordering::SeqCst)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shutdown();
    }
}
