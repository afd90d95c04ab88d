//! The ptrace platform against real machine code in a real stub.

use std::sync::mpsc;
use std::time::Duration;

use platform::{Platform, SwitchEvent};
use platform_systrap::PtracePlatform;

mod common;

use common::{code_file, map_data_page, space_with_code, CODE_ADDR, DATA_ADDR};

fn run(
    code: &[u8],
    setup: impl FnOnce(&mut platform::ArchState),
) -> (SwitchEvent, platform::ArchState) {
    let p = PtracePlatform::new().expect("ptrace works here");
    let file = code_file(code);
    let space = common::space_with_code(&p, &file);
    let mut ctx = p.new_context().unwrap();
    let mut state = p.initial_state();
    state.regs.rip = CODE_ADDR;
    setup(&mut state);
    let ev = ctx.switch(space.as_ref(), &mut state).unwrap();
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
    // The kernel did not run it: rax is still -ENOSYS.
    assert_eq!(st.regs.rax as i64, -38);
}

#[test]
fn fault_reports_signal_and_address() {
    // mov (%rbx), %rax with rbx pointing at nothing.
    let (ev, _) = run(&[0x48, 0x8b, 0x03], |s| s.regs.rbx = 0xdead_0000);
    match ev {
        SwitchEvent::Signal { info, .. } => {
            assert_eq!(info.signo, libc::SIGSEGV);
            assert_eq!(info.addr, 0xdead_0000);
            assert_eq!(info.code, 1, "SEGV_MAPERR");
        }
        other => panic!("expected SIGSEGV, got {other:?}"),
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
fn interrupt_pulls_a_spinning_thread_out() {
    let p = PtracePlatform::new().unwrap();
    let file = code_file(&[0xeb, 0xfe]); // jmp .
    let space = common::space_with_code(&p, &file);
    let mut ctx = p.new_context().unwrap();
    let mut state = p.initial_state();
    state.regs.rip = CODE_ADDR;
    let interrupter = ctx.interrupter();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while rx.recv_timeout(Duration::from_millis(20)).is_err() {
            interrupter.interrupt();
        }
    });
    let ev = ctx.switch(space.as_ref(), &mut state).unwrap();
    tx.send(()).unwrap();
    assert_eq!(ev, SwitchEvent::Interrupt);
    assert_eq!(state.regs.rip, CODE_ADDR);
}

#[test]
fn stub_holds_nothing_of_the_sentry() {
    // Jump to where this test's own code is mapped in the Sentry: the stub
    // must fault there, because everything inherited was unmapped.
    let here = stub_holds_nothing_of_the_sentry as *const () as usize as u64;
    let (ev, _) = run(&[0xeb, 0xfe], |s| s.regs.rip = here);
    match ev {
        SwitchEvent::Signal { info, .. } => {
            assert_eq!(info.signo, libc::SIGSEGV);
            assert_eq!(info.addr, here);
        }
        other => panic!("expected SIGSEGV at {here:#x}, got {other:?}"),
    }
}

#[test]
fn a_context_stays_with_its_thread() {
    let p = PtracePlatform::new().unwrap();
    let file = code_file(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05]);
    let space = common::space_with_code(&p, &file);
    let mut ctx = p.new_context().unwrap();
    let mut state = p.initial_state();
    state.regs.rip = CODE_ADDR;
    assert_eq!(
        ctx.switch(space.as_ref(), &mut state).unwrap(),
        SwitchEvent::Syscall
    );
    let err = std::thread::scope(|s| {
        s.spawn(|| {
            state.regs.rip = CODE_ADDR;
            ctx.switch(space.as_ref(), &mut state).unwrap_err()
        })
        .join()
        .unwrap()
    });
    assert!(
        matches!(err, platform::PlatformError::WrongThread(_)),
        "{err}"
    );
}

#[test]
fn threads_share_one_address_space() {
    // Thread 1 stores 0x1234 to the data page and makes a syscall; thread 2
    // then loads it: mov (%rbx),%rdi; mov $39,%eax; syscall.
    let p = PtracePlatform::new().unwrap();
    let store = [
        0x48, 0xc7, 0x03, 0x34, 0x12, 0, 0, 0xb8, 39, 0, 0, 0, 0x0f, 0x05,
    ]; // movq $0x1234,(%rbx)
    let load = [0x48, 0x8b, 0x3b, 0xb8, 39, 0, 0, 0, 0x0f, 0x05];
    let mut code = store.to_vec();
    code.resize(64, 0xcc);
    code.extend_from_slice(&load);
    let file = code_file(&code);
    let space = space_with_code(&p, &file);
    let _data = map_data_page(space.as_ref());
    let run = |entry: u64| {
        let mut ctx = p.new_context().unwrap();
        let mut state = p.initial_state();
        state.regs.rip = entry;
        state.regs.rbx = DATA_ADDR;
        let ev = ctx.switch(space.as_ref(), &mut state).unwrap();
        (ev, state.regs.rdi)
    };
    let (ev, _) = std::thread::scope(|s| s.spawn(|| run(CODE_ADDR)).join().unwrap());
    assert_eq!(ev, SwitchEvent::Syscall);
    let (ev, rdi) = std::thread::scope(|s| s.spawn(|| run(CODE_ADDR + 64)).join().unwrap());
    assert_eq!(ev, SwitchEvent::Syscall);
    assert_eq!(rdi, 0x1234);
}
