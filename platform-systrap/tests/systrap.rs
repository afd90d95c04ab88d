//! The systrap platform against real machine code in a real stub: the same
//! ground as tests/ptrace.rs, plus what only systrap does (no owner thread,
//! fs base, access types, lazy FP state).

use std::fs::File;
use std::sync::mpsc;
use std::time::Duration;

use platform::{AccessType, AddressSpace, ArchState, Context, Platform, SwitchEvent};
use platform_systrap::SystrapPlatform;

mod common;

use common::{code_file, map_data_page, space_with_code, CODE_ADDR, DATA_ADDR};

struct Setup {
    p: SystrapPlatform,
    space: std::sync::Arc<dyn AddressSpace>,
    _files: Vec<File>,
}

/// A platform and an address space with `code` at CODE_ADDR and a zeroed
/// read-write page at DATA_ADDR.
fn setup(code: &[u8]) -> Setup {
    let p = SystrapPlatform::new().expect("systrap works here");
    let file = code_file(code);
    let space = space_with_code(&p, &file);
    let data = map_data_page(space.as_ref());
    Setup {
        p,
        space,
        _files: vec![file, data],
    }
}

impl Setup {
    fn context(&self, rip: u64) -> (Box<dyn Context>, ArchState) {
        let ctx = self.p.new_context().unwrap();
        let mut state = self.p.initial_state();
        state.regs.rip = rip;
        (ctx, state)
    }
}

fn run(code: &[u8], prep: impl FnOnce(&mut ArchState)) -> (SwitchEvent, ArchState) {
    let s = setup(code);
    let (mut ctx, mut state) = s.context(CODE_ADDR);
    prep(&mut state);
    let ev = ctx.switch(s.space.as_ref(), &mut state).unwrap();
    (ev, state)
}

#[test]
fn syscall_stops_without_running_on_the_host() {
    // mov $39, %eax (getpid); mov $7, %edi; syscall
    let (ev, st) = run(&[0xb8, 39, 0, 0, 0, 0xbf, 7, 0, 0, 0, 0x0f, 0x05], |_| {});
    assert_eq!(ev, SwitchEvent::Syscall);
    assert_eq!(st.regs.orig_rax, 39);
    assert_eq!(st.regs.rdi, 7);
    assert_eq!(st.regs.rip, CODE_ADDR + 12);
    // The kernel did not run it: rax is -ENOSYS.
    assert_eq!(st.regs.rax as i64, -38);
}

#[test]
fn exit_group_is_not_executed_and_results_come_back() {
    // 0:  mov $231, %eax; mov $7, %edi; syscall      exit_group(7)
    // 12: mov %rax, %rdi; mov $39, %eax; syscall     getpid, rdi = result
    let code = [
        0xb8, 231, 0, 0, 0, 0xbf, 7, 0, 0, 0, 0x0f, 0x05, //
        0x48, 0x89, 0xc7, 0xb8, 39, 0, 0, 0, 0x0f, 0x05,
    ];
    let s = setup(&code);
    let (mut ctx, mut st) = s.context(CODE_ADDR);
    assert_eq!(
        ctx.switch(s.space.as_ref(), &mut st).unwrap(),
        SwitchEvent::Syscall
    );
    assert_eq!(st.regs.orig_rax, 231);
    assert_eq!(st.regs.rdi, 7);
    // Had the host run exit_group, the stub thread would be gone now.
    st.regs.rax = 0x5555;
    assert_eq!(
        ctx.switch(s.space.as_ref(), &mut st).unwrap(),
        SwitchEvent::Syscall
    );
    assert_eq!(st.regs.orig_rax, 39);
    assert_eq!(st.regs.rdi, 0x5555);
    assert_eq!(st.regs.rip, CODE_ADDR + 22);
}

#[test]
fn registers_round_trip() {
    // xchg %rbx, %r15; syscall
    let (ev, st) = run(&[0x49, 0x87, 0xdf, 0x0f, 0x05], |s| {
        s.regs.rax = 39;
        s.regs.rbx = 0x1111;
        s.regs.r15 = 0x2222;
        s.regs.r9 = 0x3333;
        s.regs.rbp = 0x4444;
        s.regs.rsp = DATA_ADDR + 0x800;
    });
    assert_eq!(ev, SwitchEvent::Syscall);
    assert_eq!(st.regs.rbx, 0x2222);
    assert_eq!(st.regs.r15, 0x1111);
    assert_eq!(st.regs.r9, 0x3333);
    assert_eq!(st.regs.rbp, 0x4444);
    assert_eq!(st.regs.rsp, DATA_ADDR + 0x800);
    assert_eq!(st.regs.cs, 0x33);
    assert_eq!(st.regs.ss, 0x2b);
}

#[test]
fn fault_reports_signal_address_and_access() {
    // mov (%rbx), %rax with rbx pointing at nothing.
    let (ev, _) = run(&[0x48, 0x8b, 0x03], |s| s.regs.rbx = 0xdead_0000);
    match ev {
        SwitchEvent::Signal { info, access } => {
            assert_eq!(info.signo, libc::SIGSEGV);
            assert_eq!(info.addr, 0xdead_0000);
            assert_eq!(info.code, 1, "SEGV_MAPERR");
            assert_eq!(access, Some(AccessType::READ));
        }
        other => panic!("expected SIGSEGV, got {other:?}"),
    }
    // movq $1, (%rbx) into the read-only code page.
    let (ev, _) = run(&[0x48, 0xc7, 0x03, 1, 0, 0, 0], |s| s.regs.rbx = CODE_ADDR);
    match ev {
        SwitchEvent::Signal { info, access } => {
            assert_eq!(info.signo, libc::SIGSEGV);
            assert_eq!(info.code, 2, "SEGV_ACCERR");
            assert_eq!(info.addr, CODE_ADDR);
            assert!(access.is_some_and(|a| a.write));
        }
        other => panic!("expected SIGSEGV, got {other:?}"),
    }
}

#[test]
fn other_faults_are_signals() {
    // ud2
    let (ev, st) = run(&[0x0f, 0x0b], |_| {});
    assert!(
        matches!(ev, SwitchEvent::Signal { info, .. } if info.signo == libc::SIGILL),
        "{ev:?}"
    );
    assert_eq!(st.regs.rip, CODE_ADDR);
    // int3
    let (ev, st) = run(&[0xcc], |_| {});
    assert!(
        matches!(ev, SwitchEvent::Signal { info, .. } if info.signo == libc::SIGTRAP),
        "{ev:?}"
    );
    assert_eq!(st.regs.rip, CODE_ADDR + 1);
    // xor %ecx,%ecx; div %ecx
    let (ev, _) = run(&[0x31, 0xc9, 0xf7, 0xf1], |_| {});
    assert!(
        matches!(ev, SwitchEvent::Signal { info, .. } if info.signo == libc::SIGFPE),
        "{ev:?}"
    );
}

#[test]
fn int80_is_not_a_syscall() {
    // mov $20, %eax; int $0x80
    let (ev, _) = run(&[0xb8, 20, 0, 0, 0, 0xcd, 0x80], |_| {});
    match ev {
        // SIGSYS from the filter; hosts without IA-32 emulation raise
        // SIGSEGV (#GP) instead.
        SwitchEvent::Signal { info, .. } => {
            assert!(
                [libc::SIGSYS, libc::SIGSEGV].contains(&info.signo),
                "{info:?}"
            )
        }
        other => panic!("int 0x80 must not become a syscall: {other:?}"),
    }
}

#[test]
fn fp_state_reaches_the_application() {
    // movq %xmm0, %rdi; mov $39, %eax; syscall
    let code = [0x66, 0x48, 0x0f, 0x7e, 0xc7, 0xb8, 39, 0, 0, 0, 0x0f, 0x05];
    let (ev, st) = run(&code, |s| {
        // XMM0 lives at byte 160 of the FXSAVE region.
        s.fp.as_bytes_mut()[160..168].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    });
    assert_eq!(ev, SwitchEvent::Syscall);
    assert_eq!(st.regs.rdi, 0x1122_3344_5566_7788);
}

#[test]
fn fp_state_comes_back_on_pull() {
    // movq %rdi, %xmm1; mov $39, %eax; syscall; (then) movq %xmm1, %rsi; syscall
    let code = [
        0x66, 0x48, 0x0f, 0x6e, 0xcf, 0xb8, 39, 0, 0, 0, 0x0f, 0x05, //
        0x66, 0x48, 0x0f, 0x7e, 0xce, 0x0f, 0x05,
    ];
    let s = setup(&code);
    let (mut ctx, mut st) = s.context(CODE_ADDR);
    st.regs.rdi = 0xabcd_ef01_2345_6789;
    assert_eq!(
        ctx.switch(s.space.as_ref(), &mut st).unwrap(),
        SwitchEvent::Syscall
    );
    ctx.pull_full_state(s.space.as_ref(), &mut st).unwrap();
    // XMM1 at byte 176.
    let xmm1 = u64::from_le_bytes(st.fp.as_bytes()[176..184].try_into().unwrap());
    assert_eq!(xmm1, 0xabcd_ef01_2345_6789);
    // Without full_state_changed the thread keeps its own FP state.
    st.regs.rax = 39;
    assert_eq!(
        ctx.switch(s.space.as_ref(), &mut st).unwrap(),
        SwitchEvent::Syscall
    );
    assert_eq!(st.regs.rsi, 0xabcd_ef01_2345_6789);
    // With it, the Sentry's copy wins.
    st.fp.as_bytes_mut()[176..184].copy_from_slice(&7u64.to_le_bytes());
    ctx.full_state_changed();
    st.regs.rip = CODE_ADDR + 12;
    st.regs.rax = 39;
    assert_eq!(
        ctx.switch(s.space.as_ref(), &mut st).unwrap(),
        SwitchEvent::Syscall
    );
    assert_eq!(st.regs.rsi, 7);
}

#[test]
fn fs_base_is_set_and_kept() {
    // mov %fs:0, %rdi; mov $39, %eax; syscall
    let code = [
        0x64, 0x48, 0x8b, 0x3c, 0x25, 0, 0, 0, 0, 0xb8, 39, 0, 0, 0, 0x0f, 0x05,
    ];
    let s = setup(&code);
    let (mut ctx, mut st) = s.context(CODE_ADDR);
    // fs:0 reads the first bytes of the code page.
    st.regs.fs_base = CODE_ADDR;
    assert_eq!(
        ctx.switch(s.space.as_ref(), &mut st).unwrap(),
        SwitchEvent::Syscall
    );
    assert_eq!(st.regs.rdi.to_le_bytes(), code[..8]);
    assert_eq!(st.regs.fs_base, CODE_ADDR);
    st.regs.rip = CODE_ADDR;
    st.regs.fs_base = CODE_ADDR + 8;
    assert_eq!(
        ctx.switch(s.space.as_ref(), &mut st).unwrap(),
        SwitchEvent::Syscall
    );
    assert_eq!(st.regs.rdi.to_le_bytes(), code[8..16]);
}

#[test]
fn interrupt_pulls_a_spinning_thread_out() {
    let s = setup(&[0xeb, 0xfe]); // jmp .
    let (mut ctx, mut state) = s.context(CODE_ADDR);
    let interrupter = ctx.interrupter();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while rx.recv_timeout(Duration::from_millis(20)).is_err() {
            interrupter.interrupt();
        }
    });
    let ev = ctx.switch(s.space.as_ref(), &mut state).unwrap();
    tx.send(()).unwrap();
    assert_eq!(ev, SwitchEvent::Interrupt);
    assert_eq!(state.regs.rip, CODE_ADDR);
}

#[test]
fn interrupt_before_switch_returns_at_once() {
    let s = setup(&[0xeb, 0xfe]);
    let (mut ctx, mut state) = s.context(CODE_ADDR);
    ctx.interrupter().interrupt();
    assert_eq!(
        ctx.switch(s.space.as_ref(), &mut state).unwrap(),
        SwitchEvent::Interrupt
    );
}

#[test]
fn stub_holds_nothing_of_the_sentry() {
    // Jump to where this test's own code is mapped in the Sentry: the stub
    // must fault there, because everything inherited was unmapped.
    let here = stub_holds_nothing_of_the_sentry as *const () as usize as u64;
    let (ev, _) = run(&[0xeb, 0xfe], |s| s.regs.rip = here);
    match ev {
        SwitchEvent::Signal { info, access } => {
            assert_eq!(info.signo, libc::SIGSEGV);
            assert_eq!(info.addr, here);
            assert!(access.is_some_and(|a| a.execute));
        }
        other => panic!("expected SIGSEGV at {here:#x}, got {other:?}"),
    }
}

#[test]
fn stub_code_grants_no_syscalls() {
    // Jump into the stub code at every byte offset, as a hostile
    // application could. Wherever execution reaches one of the stub's own
    // `syscall` instructions with registers the stub's code did not prepare
    // for itself (its setup calls: prctl, sigaltstack, rt_sigaction,
    // rt_sigprocmask, seccomp, and its exit), the filter must trap it: the
    // Sentry sees the syscall instead of the host running it.
    let code_page = 0x7ffe_0000_0000u64;
    let s = setup(&[]);
    // Some entry points park the thread in the stub's own futex wait (on
    // the data page, where rsp points): an interrupt gets it out, as it
    // would in the Sentry.
    let mut trapped = std::collections::BTreeSet::new();
    for off in 0..0x290u64 {
        let (mut ctx, mut st) = s.context(code_page + off);
        st.regs.rsp = DATA_ADDR + 0x800;
        let interrupter = ctx.interrupter();
        let (tx, rx) = mpsc::channel::<()>();
        let kicker = std::thread::spawn(move || {
            while rx.recv_timeout(Duration::from_millis(50)).is_err() {
                interrupter.interrupt();
            }
        });
        let ev = ctx.switch(s.space.as_ref(), &mut st).unwrap();
        tx.send(()).unwrap();
        kicker.join().unwrap();
        if ev == SwitchEvent::Syscall {
            trapped.insert(st.regs.orig_rax);
        }
    }
    for nr in [157, 131, 13, 14, 317, 39, 60] {
        assert!(
            trapped.contains(&nr),
            "syscall {nr} not trapped: {trapped:?}"
        );
    }
}

#[test]
fn a_context_may_move_between_host_threads() {
    let s = setup(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05]);
    let (mut ctx, mut state) = s.context(CODE_ADDR);
    assert_eq!(
        ctx.switch(s.space.as_ref(), &mut state).unwrap(),
        SwitchEvent::Syscall
    );
    let ev = std::thread::scope(|sc| {
        sc.spawn(|| {
            state.regs.rip = CODE_ADDR;
            ctx.switch(s.space.as_ref(), &mut state).unwrap()
        })
        .join()
        .unwrap()
    });
    assert_eq!(ev, SwitchEvent::Syscall);
}

#[test]
fn threads_share_one_address_space() {
    // Context 1 stores 0x1234 to the data page and makes a syscall;
    // context 2 then loads it: mov (%rbx),%rdi; mov $39,%eax; syscall.
    let store = [
        0x48, 0xc7, 0x03, 0x34, 0x12, 0, 0, 0xb8, 39, 0, 0, 0, 0x0f, 0x05,
    ]; // movq $0x1234,(%rbx)
    let load = [0x48, 0x8b, 0x3b, 0xb8, 39, 0, 0, 0, 0x0f, 0x05];
    let mut code = store.to_vec();
    code.resize(64, 0xcc);
    code.extend_from_slice(&load);
    let s = setup(&code);
    let run = |entry: u64| {
        let (mut ctx, mut state) = s.context(entry);
        state.regs.rbx = DATA_ADDR;
        let ev = ctx.switch(s.space.as_ref(), &mut state).unwrap();
        (ev, state.regs.rdi)
    };
    let (ev, _) = std::thread::scope(|sc| sc.spawn(|| run(CODE_ADDR)).join().unwrap());
    assert_eq!(ev, SwitchEvent::Syscall);
    let (ev, rdi) = std::thread::scope(|sc| sc.spawn(|| run(CODE_ADDR + 64)).join().unwrap());
    assert_eq!(ev, SwitchEvent::Syscall);
    assert_eq!(rdi, 0x1234);
}

#[test]
fn two_contexts_run_at_once() {
    // Both loop doing syscalls concurrently in one address space.
    let s = setup(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7]);
    std::thread::scope(|sc| {
        for _ in 0..2 {
            sc.spawn(|| {
                let (mut ctx, mut st) = s.context(CODE_ADDR);
                for i in 0..1000u64 {
                    assert_eq!(
                        ctx.switch(s.space.as_ref(), &mut st).unwrap(),
                        SwitchEvent::Syscall
                    );
                    st.regs.rax = i;
                }
            });
        }
    });
}

#[test]
fn dropped_contexts_free_their_threads() {
    let s = setup(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05]);
    for _ in 0..50 {
        let (mut ctx, mut st) = s.context(CODE_ADDR);
        assert_eq!(
            ctx.switch(s.space.as_ref(), &mut st).unwrap(),
            SwitchEvent::Syscall
        );
    }
}

#[test]
fn both_sides_fall_back_to_the_futex() {
    // 0: mov $20000000, %ecx; 5: dec %ecx; jnz 5; mov $39, %eax; syscall
    // The application runs for milliseconds (the Sentry stops spinning and
    // sleeps), and the Sentry takes milliseconds to answer (the stub's
    // handler stops spinning and sleeps).
    let code = [
        0xb9, 0x00, 0x2d, 0x31, 0x01, 0xff, 0xc9, 0x75, 0xfc, 0xb8, 39, 0, 0, 0, 0x0f, 0x05,
    ];
    let s = setup(&code);
    let (mut ctx, mut st) = s.context(CODE_ADDR);
    for _ in 0..3 {
        st.regs.rip = CODE_ADDR;
        assert_eq!(
            ctx.switch(s.space.as_ref(), &mut st).unwrap(),
            SwitchEvent::Syscall
        );
        assert_eq!(st.regs.orig_rax, 39);
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn interrupts_never_expose_the_stub() {
    // A loop of syscalls hammered with interrupts: every event, interrupts
    // included, must carry application registers, never the handler's.
    let s = setup(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7]);
    let (mut ctx, mut st) = s.context(CODE_ADDR);
    let interrupter = ctx.interrupter();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let kicker = std::thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            interrupter.interrupt();
            std::thread::sleep(Duration::from_micros(20));
        }
    });
    let mut interrupts = 0;
    for _ in 0..20000 {
        let ev = ctx.switch(s.space.as_ref(), &mut st).unwrap();
        assert!(
            (CODE_ADDR..CODE_ADDR + 9).contains(&st.regs.rip),
            "{ev:?} at {:#x}",
            st.regs.rip
        );
        if ev == SwitchEvent::Interrupt {
            interrupts += 1;
        } else {
            st.regs.rax = 0;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    kicker.join().unwrap();
    assert!(interrupts > 0);
}
