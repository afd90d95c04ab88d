//! Syscall patching's trampoline (`Platform::syscall_patching`): a patched
//! site must reach the Sentry in exactly the state a trapped `syscall`
//! would, and resume from it likewise. The table and the patched site are
//! written here as the Sentry writes them (`sentry/src/patch.rs`).

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Arc;

use platform::{AccessType, AddressSpace, ArchState, Platform, SwitchEvent};
use platform_systrap::SystrapPlatform;

mod common;

use common::{code_file, map_data_page, CODE_ADDR, DATA_ADDR};

/// `mov $39,%eax; syscall` (trapped), at CODE_ADDR.
const SITE_TRAPPED: u64 = CODE_ADDR;
/// The same site, patched: `jmp *entry`, at CODE_ADDR + 16.
const SITE_PATCHED: u64 = CODE_ADDR + 16;
/// After the patched site: `mov %rax,%rdi; movq %xmm1,%rsi; mov $39,%eax;
/// syscall` (trapped).
const AFTER: u64 = SITE_PATCHED + 7;
/// `jmp .`
const SPIN: u64 = CODE_ADDR + 48;

struct Setup {
    p: SystrapPlatform,
    space: Arc<dyn AddressSpace>,
    _files: Vec<File>,
}

fn setup() -> Option<Setup> {
    let p = SystrapPlatform::new().expect("systrap works here");
    let Some(patch) = p.syscall_patching() else {
        eprintln!("host cannot patch (no FSGSBASE?): skipping");
        return None;
    };
    let entry = patch.table_addr + 32;
    let mut code = vec![0xcc; 64];
    code[0..7].copy_from_slice(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05]);
    code[16..19].copy_from_slice(&[0xff, 0x24, 0x25]);
    code[19..23].copy_from_slice(&(entry as u32).to_le_bytes());
    let after = [
        0x48, 0x89, 0xc7, // mov %rax,%rdi
        0x66, 0x48, 0x0f, 0x7e, 0xce, // movq %xmm1,%rsi
        0xb8, 39, 0, 0, 0, 0x0f, 0x05,
    ];
    code[23..23 + after.len()].copy_from_slice(&after);
    code[48..50].copy_from_slice(&[0xeb, 0xfe]); // SPIN: jmp .
                                                 // The table: its header (the platform's entry), then one entry.
    let mut table = vec![0xcc; 64];
    table[0..8].copy_from_slice(&patch.entry.to_le_bytes());
    table[32..40].copy_from_slice(&(entry + 8).to_le_bytes());
    table[40..42].copy_from_slice(&[0x48, 0xb9]);
    table[42..50].copy_from_slice(&(AFTER | 39 << 48).to_le_bytes());
    table[50..52].copy_from_slice(&[0xff, 0x25]);
    let rel = patch.table_addr as i64 - (entry + 24) as i64;
    table[52..56].copy_from_slice(&(rel as i32).to_le_bytes());

    let space = p.new_address_space().unwrap();
    let code = code_file(&code);
    let table = code_file(&table);
    let rx = AccessType::from_prot(5);
    space
        .map_file(CODE_ADDR, 4096, code.as_fd(), 0, rx, false)
        .unwrap();
    space
        .map_file(patch.table_addr, 4096, table.as_fd(), 0, rx, false)
        .unwrap();
    let data = map_data_page(space.as_ref());
    Some(Setup {
        p,
        space,
        _files: vec![code, table, data],
    })
}

/// Every general register, all arithmetic flags set, xmm1 set.
fn busy_state(p: &SystrapPlatform, rip: u64) -> ArchState {
    let mut st = p.initial_state();
    let r = &mut st.regs;
    r.rip = rip;
    r.rax = 0xdead; // the site sets eax
    r.rbx = 0x1010_1010_1010_1010;
    r.rcx = 0x2020;
    r.rdx = 0x3030_3030;
    r.rsi = 0x4040;
    r.rdi = 0x5050;
    r.rbp = 0x6060_6060_6060;
    r.rsp = DATA_ADDR + 0x800;
    r.r8 = 8;
    r.r9 = 9;
    r.r10 = 10;
    r.r11 = 11;
    r.r12 = 12;
    r.r13 = 13;
    r.r14 = 14;
    r.r15 = 0xffff_ffff_ffff_fff5;
    r.eflags |= 0x8d5; // CF PF AF ZF SF OF
    st.fp.as_bytes_mut()[176..184].copy_from_slice(&0x1234_5678_9abc_def0u64.to_le_bytes());
    st
}

#[test]
fn patched_site_reports_what_a_trap_reports() {
    let Some(s) = setup() else { return };
    let mut ctx = s.p.new_context().unwrap();

    let mut trapped = busy_state(&s.p, SITE_TRAPPED);
    let ev = ctx.switch(s.space.as_ref(), &mut trapped).unwrap();
    assert_eq!(ev, SwitchEvent::Syscall);
    assert!(ctx.syscall_trapped());
    ctx.pull_full_state(s.space.as_ref(), &mut trapped).unwrap();

    let mut patched = busy_state(&s.p, SITE_PATCHED);
    ctx.full_state_changed();
    let ev = ctx.switch(s.space.as_ref(), &mut patched).unwrap();
    assert_eq!(ev, SwitchEvent::Syscall);
    assert!(!ctx.syscall_trapped());
    ctx.pull_full_state(s.space.as_ref(), &mut patched).unwrap();

    assert_eq!(trapped.regs.rip, SITE_TRAPPED + 7);
    assert_eq!(patched.regs.rip, AFTER);
    assert_eq!(trapped.regs.rcx, trapped.regs.rip);
    assert_eq!(patched.regs.rcx, patched.regs.rip);
    // Everything else is the same.
    let mut a = trapped.regs;
    let mut b = patched.regs;
    a.rip = 0;
    a.rcx = 0;
    b.rip = 0;
    b.rcx = 0;
    assert_eq!(a, b);
    assert_eq!(b.orig_rax, 39);
    assert_eq!(b.r11, b.eflags);
    assert_eq!(b.eflags & 0x8d5, 0x8d5);
    assert_eq!(b.r15, 0xffff_ffff_ffff_fff5);
    assert_eq!(b.gs_base, 0, "the slot in GS is not the application's");
    let xmm1 = |st: &ArchState| u64::from_le_bytes(st.fp.as_bytes()[176..184].try_into().unwrap());
    assert_eq!(xmm1(&patched), 0x1234_5678_9abc_def0);
    assert_eq!(trapped.fp.mxcsr(), patched.fp.mxcsr());
}

#[test]
fn patched_site_resumes_with_the_sentrys_state() {
    let Some(s) = setup() else { return };
    let mut ctx = s.p.new_context().unwrap();
    let mut st = busy_state(&s.p, SITE_PATCHED);
    assert_eq!(
        ctx.switch(s.space.as_ref(), &mut st).unwrap(),
        SwitchEvent::Syscall
    );
    assert!(!ctx.syscall_trapped());
    // The result, and new FP state, go back through the trampoline's frame.
    st.regs.rax = 0x7777;
    st.fp.as_bytes_mut()[176..184].copy_from_slice(&0x0fed_cba9u64.to_le_bytes());
    ctx.full_state_changed();
    assert_eq!(
        ctx.switch(s.space.as_ref(), &mut st).unwrap(),
        SwitchEvent::Syscall
    );
    assert!(ctx.syscall_trapped());
    assert_eq!(st.regs.rip, AFTER + 15);
    assert_eq!(st.regs.rdi, 0x7777);
    assert_eq!(st.regs.rsi, 0x0fed_cba9);
    assert_eq!(st.regs.rbp, 0x6060_6060_6060);
    assert_eq!(st.regs.rsp, DATA_ADDR + 0x800);
    assert_eq!(st.regs.eflags & 0x8d5, 0x8d5);
    // Again, without touching the FP state: it stays.
    st.regs.rip = SITE_PATCHED;
    assert_eq!(
        ctx.switch(s.space.as_ref(), &mut st).unwrap(),
        SwitchEvent::Syscall
    );
    st.regs.rax = 5;
    assert_eq!(
        ctx.switch(s.space.as_ref(), &mut st).unwrap(),
        SwitchEvent::Syscall
    );
    assert_eq!((st.regs.rdi, st.regs.rsi), (5, 0x0fed_cba9));
}

#[test]
fn patched_site_with_an_application_gs_base_still_works() {
    let Some(s) = setup() else { return };
    let mut ctx = s.p.new_context().unwrap();
    let mut st = busy_state(&s.p, SITE_PATCHED);
    st.regs.gs_base = DATA_ADDR;
    assert_eq!(
        ctx.switch(s.space.as_ref(), &mut st).unwrap(),
        SwitchEvent::Syscall
    );
    assert_eq!(st.regs.rip, AFTER);
    assert_eq!(st.regs.rcx, AFTER);
    assert_eq!(st.regs.orig_rax, 39);
    assert_eq!(st.regs.gs_base, DATA_ADDR);
    assert_eq!(st.regs.eflags & 0x8d5, 0x8d5);
    assert_eq!(st.regs.r11, st.regs.eflags);
    assert_eq!(st.regs.rbx, 0x1010_1010_1010_1010);
    st.regs.rax = 0x42;
    assert_eq!(
        ctx.switch(s.space.as_ref(), &mut st).unwrap(),
        SwitchEvent::Syscall
    );
    assert_eq!(st.regs.rdi, 0x42);
    assert_eq!(st.regs.gs_base, DATA_ADDR);
}

#[test]
fn interrupts_while_running_patched_calls_are_never_lost() {
    // A loop of patched calls: jmp back to the site after each one.
    let Some(s) = setup() else { return };
    let mut ctx = s.p.new_context().unwrap();
    let intr = ctx.interrupter();
    let mut st = busy_state(&s.p, SITE_PATCHED);
    let mut interrupts = 0;
    let mut syscalls = 0;
    let start = std::time::Instant::now();
    while interrupts < 200 && start.elapsed() < std::time::Duration::from_secs(30) {
        match ctx.switch(s.space.as_ref(), &mut st).unwrap() {
            SwitchEvent::Syscall => {
                syscalls += 1;
                // Straight back into the patched site; every few calls,
                // interrupt from another thread while it runs.
                st.regs.rip = SITE_PATCHED;
                if syscalls % 3 == 0 {
                    let i = intr.clone();
                    std::thread::spawn(move || i.interrupt());
                }
            }
            SwitchEvent::Interrupt => interrupts += 1,
            other => panic!("unexpected {other:?} at {:#x}", st.regs.rip),
        }
    }
    assert!(
        interrupts >= 200,
        "{interrupts} interrupts, {syscalls} syscalls"
    );
}

#[test]
fn interrupts_right_after_a_patched_call_reach_the_sentry() {
    // Resumed from the trampoline into an endless loop: an interrupt sent
    // as the trampoline returns (or any time after) must come back.
    let Some(s) = setup() else { return };
    let mut ctx = s.p.new_context().unwrap();
    let intr = ctx.interrupter();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = done.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(60));
        if !watchdog.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("an interrupt was lost: the context never came back");
            std::process::exit(1);
        }
    });
    let mut st = busy_state(&s.p, SITE_PATCHED);
    for i in 0..300 {
        st.regs.rip = SITE_PATCHED;
        assert_eq!(
            ctx.switch(s.space.as_ref(), &mut st).unwrap(),
            SwitchEvent::Syscall
        );
        st.regs.rip = SPIN;
        let i2 = intr.clone();
        let t = std::thread::spawn(move || {
            for _ in 0..(i % 7) * 50 {
                std::hint::spin_loop();
            }
            i2.interrupt()
        });
        assert_eq!(
            ctx.switch(s.space.as_ref(), &mut st).unwrap(),
            SwitchEvent::Interrupt
        );
        assert!(
            (SPIN..SPIN + 2).contains(&st.regs.rip),
            "{:#x}",
            st.regs.rip
        );
        t.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Not a check: the round trip of a patched call against a trapped one
/// (`cargo test --release --test systrap_patching -- --ignored --nocapture`).
#[test]
#[ignore]
fn time_patched_against_trapped() {
    let Some(s) = setup() else { return };
    for (name, rip) in [("trapped", SITE_TRAPPED), ("patched", SITE_PATCHED)] {
        let mut ctx = s.p.new_context().unwrap();
        let mut st = busy_state(&s.p, rip);
        let n = 200_000;
        let mut run = |n: u32| {
            for _ in 0..n {
                st.regs.rip = rip;
                ctx.switch(s.space.as_ref(), &mut st).unwrap();
            }
        };
        run(n / 10);
        let t = std::time::Instant::now();
        run(n);
        println!("{name}: {} ns/op", t.elapsed().as_nanos() / u128::from(n));
    }
}
