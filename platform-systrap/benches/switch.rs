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
    let file = code_file();
    let space = common::space_with_code(p, &file);
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

/// µs to create an address space, map one page into it, and run a new
/// context's first syscall there: what a fork or exec pays before copying
/// any memory.
fn setup_cost(p: &dyn Platform, rounds: u32) -> (f64, f64, f64) {
    let file = code_file();
    let (mut space_us, mut map_us, mut first_us) = (0.0, 0.0, 0.0);
    for _ in 0..rounds {
        let t = Instant::now();
        let space = p.new_address_space().unwrap();
        space_us += t.elapsed().as_secs_f64() * 1e6;
        let t = Instant::now();
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
        map_us += t.elapsed().as_secs_f64() * 1e6;
        let t = Instant::now();
        let mut ctx = p.new_context().unwrap();
        let mut state = p.initial_state();
        state.regs.rip = CODE_ADDR;
        assert_eq!(
            ctx.switch(space.as_ref(), &mut state).unwrap(),
            SwitchEvent::Syscall
        );
        first_us += t.elapsed().as_secs_f64() * 1e6;
    }
    let n = f64::from(rounds);
    (space_us / n, map_us / n, first_us / n)
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
    for (name, p) in [("ptrace", &ptrace as &dyn Platform), ("systrap", &systrap)] {
        let (space, map, first) = setup_cost(p, 20);
        println!(
            "{name:>7}: new address space {space:>7.0} us, one mapping {map:>5.0} us, \
             new context to its first syscall {first:>6.0} us"
        );
    }
}
