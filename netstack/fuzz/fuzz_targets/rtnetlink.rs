//! Fuzzes the route netlink request parser with arbitrary bytes, as an
//! application may send them to a NETLINK_ROUTE socket.
//!
//! Every answer must be a sequence of well-formed netlink messages (each
//! length at least the header and within the datagram). Nothing may panic.
//!
//! Run (needs a nightly toolchain and `cargo install cargo-fuzz`):
//!
//! ```sh
//! cd netstack/fuzz
//! cargo +nightly fuzz run rtnetlink -- -max_len=1024
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::rtnetlink::{answer, NLMSG_HDRLEN};
use netstack::{FakeClock, Stack};

fuzz_target!(|data: &[u8]| {
    let stack = Stack::with_loopback(std::sync::Arc::new(FakeClock::new()));
    for d in answer(&stack.interfaces(), data, 1) {
        let mut at = 0;
        while at < d.len() {
            let len = u32::from_le_bytes(d[at..at + 4].try_into().unwrap()) as usize;
            assert!(len >= NLMSG_HDRLEN && at + len <= d.len());
            at += len.next_multiple_of(4);
        }
    }
});
