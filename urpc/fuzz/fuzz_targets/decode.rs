//! Feeds arbitrary bytes to a urpc server connection and to the request,
//! reply and Go-argument decoders: nothing may panic or hang.
//!
//! Run with `cargo +nightly fuzz run decode` from `urpc/`.
#![no_main]

use std::io::Write;
use std::os::unix::net::UnixStream;

use libfuzzer_sys::fuzz_target;
use urpc::go::{self, GoType};

struct Unknown;

impl urpc::Dispatch for Unknown {
    fn call(
        &self,
        _: &str,
        arg: &serde_json::Value,
        _: Vec<std::os::fd::OwnedFd>,
    ) -> Result<urpc::Reply, urpc::CallError> {
        go::decode(arg, &go::STRINGS)?;
        Err(urpc::CallError::UnknownMethod)
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = urpc::wire::decode_request(&v);
        let _ = urpc::wire::decode_response(&v);
        let _ = go::decode(&v, &GoType::Struct(&go::EMPTY));
        let _ = go::decode(&v, &go::INT32);
    }
    let (mut a, b) = UnixStream::pair().unwrap();
    let server = urpc::Server::new(std::sync::Arc::new(Unknown));
    let t = std::thread::spawn(move || server.serve_conn(urpc::Conn::new(b)));
    let _ = a.write_all(data);
    let _ = a.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(&mut a, &mut out);
    t.join().unwrap();
});
