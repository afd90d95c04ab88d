//! Tests that look at host processes: a stub thread killed from outside,
//! and stub processes released with their address spaces. In their own test
//! binary, one at a time, because they scan this process's children, which
//! would also find other tests' stubs.

use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform::{AddressSpace, Platform, SwitchEvent};
use platform_systrap::SystrapPlatform;

mod common;

use common::{code_file, CODE_ADDR};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn space_with(p: &SystrapPlatform, file: &File) -> Arc<dyn AddressSpace> {
    common::space_with_code(p, file)
}

/// Processes (live or zombie) whose parent is this process.
fn children() -> usize {
    let me = std::process::id() as i32;
    common::processes()
        .into_iter()
        .filter(|&(_, ppid)| ppid == me)
        .count()
}

#[test]
fn stubs_are_released_with_their_address_spaces() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let p = SystrapPlatform::new().unwrap();
    // mov $39, %eax; syscall; jmp back
    let file = code_file(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7]);
    // The first address space makes the template stub every later one is
    // forked from; it lives as long as the platform.
    drop(space_with(&p, &file));
    let before = children();
    // 100 contexts doing syscalls in one address space, and 20 address
    // spaces at once.
    let space = space_with(&p, &file);
    let spaces: Vec<_> = (0..20).map(|_| space_with(&p, &file)).collect();
    std::thread::scope(|s| {
        for i in 0..120 {
            let space = if i < 100 { &space } else { &spaces[i - 100] };
            let p = &p;
            s.spawn(move || {
                let mut ctx = p.new_context().unwrap();
                let mut st = p.initial_state();
                st.regs.rip = CODE_ADDR;
                for _ in 0..50 {
                    let ev = ctx.switch(space.as_ref(), &mut st).unwrap();
                    assert_eq!(ev, SwitchEvent::Syscall);
                }
            });
        }
    });
    assert!(children() > before, "stub processes are children here");
    drop(space);
    drop(spaces);
    assert_eq!(children(), before, "every stub process was reaped");
}

#[test]
fn a_dead_stub_thread_is_reported() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let p = SystrapPlatform::new().unwrap();
    let file = code_file(&[0xeb, 0xfe]); // jmp .
    let space = space_with(&p, &file);
    let mut ctx = p.new_context().unwrap();
    let mut st = p.initial_state();
    st.regs.rip = CODE_ADDR;
    let runner = std::thread::spawn(move || {
        let r = ctx
            .switch(space.as_ref(), &mut st)
            .map_err(|e| e.to_string());
        (r, space)
    });
    std::thread::sleep(Duration::from_millis(200));
    // Kill every stub process of ours that has a slot mapped: the stub
    // thread and the stub's syscall thread (only our own children: other
    // test binaries may be running stubs too).
    let me = std::process::id();
    let mut killed = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status.contains(&format!("PPid:\t{me}\n")) && maps.contains("runsc-systrap-slot") {
            // SAFETY: kill takes plain integers.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed += 1;
        }
    }
    assert!(killed > 0, "found no stub thread to kill");
    let (r, _space) = runner.join().unwrap();
    let err = r.expect_err("switch must fail once its stub thread is gone");
    assert!(err.contains("exited"), "{err}");
}

/// Children of this process that a tracer is attached to.
fn traced_children() -> usize {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            status.contains(&format!("PPid:\t{me}\n")) && !status.contains("TracerPid:\t0\n")
        })
        .count()
}

#[test]
fn address_spaces_change_without_ptrace() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let p = SystrapPlatform::new().unwrap();
    // mov $39, %eax; syscall; jmp back
    let file = code_file(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7]);
    drop(space_with(&p, &file));
    // Only the template's first thread is traced, whatever the address
    // spaces forked from it do.
    assert_eq!(traced_children(), 1);
    let spaces: Vec<_> = (0..3).map(|_| space_with(&p, &file)).collect();
    for space in &spaces {
        let mut ctx = p.new_context().unwrap();
        let mut st = p.initial_state();
        st.regs.rip = CODE_ADDR;
        assert_eq!(
            ctx.switch(space.as_ref(), &mut st).unwrap(),
            SwitchEvent::Syscall
        );
        // The syscall thread unmaps the code: the next instruction faults.
        space.unmap(CODE_ADDR, 4096).unwrap();
        match ctx.switch(space.as_ref(), &mut st).unwrap() {
            SwitchEvent::Signal { info, .. } => {
                assert_eq!(info.signo, libc::SIGSEGV);
                assert_eq!(info.addr, CODE_ADDR + 7);
            }
            other => panic!("expected SIGSEGV, got {other:?}"),
        }
        // And maps it again.
        space
            .map_file(
                CODE_ADDR,
                4096,
                std::os::fd::AsFd::as_fd(&file),
                0,
                platform::AccessType::from_prot(5),
                true,
            )
            .unwrap();
        st.regs.rip = CODE_ADDR;
        assert_eq!(
            ctx.switch(space.as_ref(), &mut st).unwrap(),
            SwitchEvent::Syscall
        );
    }
    assert_eq!(traced_children(), 1);
}

/// Every process descending from `root` (stub processes and stub threads
/// are processes of their own), with its state letter.
fn descendants(root: i32) -> Vec<(i32, char)> {
    let mut procs = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: i32 = f.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        procs.push((pid, ppid, state));
    }
    let mut out: Vec<(i32, char)> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid, state) in &procs {
            if ppid == parent && !out.iter().any(|&(p, _)| p == pid) {
                out.push((pid, state));
                frontier.push(pid);
            }
        }
    }
    out
}

/// Not a test by itself: run by `no_stub_outlives_its_sentry` in a child
/// process, which makes stubs of both platforms (address spaces forked from
/// a template, stub threads), lists them and dies abruptly.
#[test]
fn helper_make_stubs_then_die() {
    if std::env::var_os("RUNSC_STUB_ORPHAN_HELPER").is_none() {
        return;
    }
    let file = code_file(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7]);
    let sys = SystrapPlatform::new().unwrap();
    let spaces: Vec<_> = (0..3).map(|_| space_with(&sys, &file)).collect();
    for space in &spaces {
        let mut ctx = sys.new_context().unwrap();
        let mut st = sys.initial_state();
        st.regs.rip = CODE_ADDR;
        ctx.switch(space.as_ref(), &mut st).unwrap();
        std::mem::forget(ctx);
    }
    let pt = platform_systrap::PtracePlatform::new().unwrap();
    let pspaces: Vec<_> = (0..2)
        .map(|_| common::space_with_code(&pt, &file))
        .collect();
    for space in &pspaces {
        let mut ctx = pt.new_context().unwrap();
        let mut st = pt.initial_state();
        st.regs.rip = CODE_ADDR;
        ctx.switch(space.as_ref(), &mut st).unwrap();
        std::mem::forget(ctx);
    }
    std::mem::forget(spaces);
    std::mem::forget(pspaces);
    let pids: Vec<String> = descendants(std::process::id() as i32)
        .iter()
        .map(|(p, _)| p.to_string())
        .collect();
    println!("STUBS {}", pids.join(" "));
    // SAFETY: kill takes plain integers; this process ends here.
    unsafe { libc::kill(std::process::id() as i32, libc::SIGKILL) };
}

#[test]
fn no_stub_outlives_its_sentry() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_make_stubs_then_die",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RUNSC_STUB_ORPHAN_HELPER", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("STUBS ").map(|(_, pids)| pids))
        .unwrap_or_else(|| panic!("helper printed no stubs: {stdout}"));
    let pids: Vec<i32> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(pids.len() >= 5, "{pids:?}");
    let alive = |pid: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie nobody has reaped yet.
        !stat.is_empty()
            && !stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stubs outlived their Sentry: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
