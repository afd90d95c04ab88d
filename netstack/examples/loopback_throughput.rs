//! Measures TCP throughput over the loopback link (a benchmark: it prints
//! figures, asserts nothing but the stream's integrity).
//!
//! ```sh
//! cargo run --release -p netstack --example loopback_throughput [MiB]
//! ```
//!
//! Two threads, a writer and a reader, block the way the Sentry will:
//! each registers a waker and sleeps on a condition variable until the
//! socket is ready. Time runs on the host clock with the stack's timer
//! thread.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use netstack::{Errno, Events, Family, MonotonicClock, Stack, TcpSocket};

/// A wakeup flag a waker sets and a blocked thread waits on.
#[derive(Default)]
struct Gate {
    ready: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn waker(self: &Arc<Self>) -> netstack::Waker {
        let g = self.clone();
        Arc::new(move |_| {
            *g.ready.lock().unwrap() = true;
            g.cv.notify_one();
        })
    }

    fn wait(&self) {
        let mut r = self.ready.lock().unwrap();
        while !*r {
            r = self
                .cv
                .wait_timeout(r, Duration::from_millis(100))
                .unwrap()
                .0;
        }
        *r = false;
    }
}

fn run(mib: usize, chunk: usize) -> f64 {
    let stack = Stack::with_loopback(Arc::new(MonotonicClock::new()));
    let _timers = stack.spawn_timer_thread().expect("timer thread");
    let l = TcpSocket::new(&stack, Family::V4);
    l.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    l.listen(1).unwrap();
    let c = TcpSocket::new(&stack, Family::V4);
    assert_eq!(c.connect(l.local_addr()), Err(Errno::EINPROGRESS));
    assert_eq!(c.connect(l.local_addr()), Ok(()));
    let (s, _) = l.accept().unwrap();
    let total = mib << 20;

    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        let gate = Arc::new(Gate::default());
        c.register_waker(Events::WRITABLE | Events::ERR | Events::HUP, gate.waker());
        // Stream byte i is i % 251, whatever size each write takes.
        let buf: Vec<u8> = (0..chunk + 251).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        while sent < total {
            let n = chunk.min(total - sent);
            let at = sent % 251;
            match c.send(&buf[at..at + n]) {
                Ok(k) => sent += k,
                Err(Errno::EAGAIN) => gate.wait(),
                Err(e) => panic!("send: {e}"),
            }
        }
        c.shutdown(netstack::Shutdown::Write).unwrap();
        c
    });
    let gate = Arc::new(Gate::default());
    s.register_waker(Events::READABLE | Events::ERR | Events::HUP, gate.waker());
    let mut buf = vec![0u8; chunk];
    let mut got = 0usize;
    let mut sum = 0u64;
    loop {
        match s.recv(&mut buf, false) {
            Ok(0) => break,
            Ok(n) => {
                sum = buf[..n]
                    .iter()
                    .fold(sum, |a, &b| a.wrapping_add(u64::from(b)));
                got += n;
            }
            Err(Errno::EAGAIN) => gate.wait(),
            Err(e) => panic!("recv: {e}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _c = writer.join().unwrap();
    assert_eq!(got, total);
    let want = (0..total).fold(0u64, |a, i| a.wrapping_add((i % 251) as u64));
    assert_eq!(sum, want, "stream checksum");
    (total as f64 / (1 << 20) as f64) / secs
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    for chunk in [16 * 1024, 64 * 1024, 256 * 1024] {
        let rate = run(mib, chunk);
        println!(
            "loopback TCP, {mib} MiB in {} KiB writes: {rate:.0} MiB/s",
            chunk / 1024
        );
    }
}
