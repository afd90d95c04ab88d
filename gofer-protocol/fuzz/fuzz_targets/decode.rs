//! Fuzzes the lisafs decoders with arbitrary bytes.
//!
//! The first two input bytes are the message id (little-endian), the rest
//! the payload. Each input is decoded as a request and as a response;
//! decoding must never panic, and whatever decodes must survive
//! `decode(encode(m)) == m`.
//!
//! Run (needs a nightly toolchain and `cargo install cargo-fuzz`):
//!
//! ```sh
//! cd gofer-protocol/fuzz
//! cargo +nightly fuzz run decode -- -max_len=4096
//! ```

#![no_main]

use gofer_protocol::{Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let mid = u16::from_le_bytes([data[0], data[1]]) % 40;
    let payload = &data[2..];
    if let Ok(req) = Request::decode(mid, payload) {
        let bytes = req.encode().expect("a decoded request re-encodes");
        assert_eq!(Request::decode(mid, &bytes).as_ref(), Ok(&req));
    }
    if let Ok(resp) = Response::decode(mid, payload) {
        let bytes = resp.encode().expect("a decoded response re-encodes");
        assert_eq!(Response::decode(mid, &bytes).as_ref(), Ok(&resp));
    }
});
