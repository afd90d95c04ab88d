//! Round-trip cost of a trivial application syscall through
//! `Context::switch` on each platform, against the same syscall made
//! natively. Prints ns/op; run with `cargo bench -p platform-systrap`
//! (optionally `-- ITERATIONS`).

use std::fs::File;
use std::os::fd::AsFd;
use std::time::Instant;

use platform::{AccessType, Platform, SwitchEvent};
use platform_systrap::{PtracePlatform, SystrapPlatform};

#[path = "../tests/common/mod.rs"]
mod common;

use common::CODE_ADDR;

/// 0: mov $39, %eax; syscall; jmp 0
fn code_file() -> File {
    common::code_file(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7])
}

/// ns per syscall round trip through `switch`.
fn measure(p: &dyn Platform, iters: u32) -> f64 {
    let space = p.new_address_space().unwrap();
    let file = code_file();
    space
        .map_file(
            CODE_ADDR,
            4096,
            file.as_fd(),
            0,
            AccessType::from_prot(5),
            false,
        )
        .unwrap();
    let mut ctx = p.new_context().unwrap();
    let mut state = p.initial_state();
    state.regs.rip = CODE_ADDR;
    let mut round = |n: u32| {
        for _ in 0..n {
            let ev = ctx.switch(space.as_ref(), &mut state).unwrap();
            assert_eq!(ev, SwitchEvent::Syscall);
            state.regs.rax = 1;
        }
    };
    round(iters / 10 + 1);
    let start = Instant::now();
    round(iters);
    start.elapsed().as_nanos() as f64 / f64::from(iters)
}

fn native(iters: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        // SAFETY: getpid takes no arguments and cannot fail.
        std::hint::black_box(unsafe { libc::syscall(libc::SYS_getpid) });
    }
    start.elapsed().as_nanos() as f64 / f64::from(iters)
}

fn main() {
    let iters: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let ptrace = PtracePlatform::new().expect("ptrace platform");
    let systrap = SystrapPlatform::new().expect("systrap platform");
    let n = native(iters);
    println!("native getpid:                {n:>9.0} ns/op");
    for round in 0..3 {
        let pt = measure(&ptrace, iters / 5);
        let st = measure(&systrap, iters);
        println!(
            "round {round}: ptrace switch {pt:>9.0} ns/op   systrap switch {st:>9.0} ns/op   \
             ptrace/systrap {:.1}x   systrap/native {:.1}x",
            pt / st,
            st / n
        );
    }
}
