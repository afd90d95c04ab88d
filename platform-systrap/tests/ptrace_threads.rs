//! The ptrace platform keeps a finished context's stub thread for the
//! next context its host thread runs, and reaps what it keeps when the
//! host thread or the address space goes. A test binary of its own: it
//! counts this process's children.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use platform::{Platform, SwitchEvent};
use platform_systrap::PtracePlatform;

mod common;

use common::{code_file, space_with_code, CODE_ADDR};

/// The ids of this process's descendants, live or zombie: the stub
/// processes are its children, their stub threads their children.
fn child_pids() -> BTreeSet<i32> {
    let parents = common::processes();
    let me = std::process::id() as i32;
    let mut found = BTreeSet::from([me]);
    while let Some(more) = parents
        .iter()
        .find(|(pid, ppid)| found.contains(ppid) && !found.contains(pid))
    {
        found.insert(more.0);
    }
    found.remove(&me);
    found
}

fn children() -> usize {
    child_pids().len()
}

/// Wait (a while) for the number of children to be `n`.
fn settles_at(n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while children() != n {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[test]
fn a_stub_thread_outlives_its_context_for_the_next_one() {
    let p = PtracePlatform::new().unwrap();
    // mov $39, %eax; syscall; jmp back
    let file = code_file(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7]);
    // The first address space makes the template stub every later one is
    // forked from; it lives as long as the platform.
    drop(space_with_code(&p, &file));
    // The dropped one's stub goes (its request thread reaps it), the
    // template's stays.
    assert!(settles_at(1), "{} children", children());
    let before = children();
    let space = space_with_code(&p, &file);
    let run = || {
        let mut ctx = p.new_context().unwrap();
        let mut state = p.initial_state();
        state.regs.rip = CODE_ADDR;
        let ev = ctx.switch(space.as_ref(), &mut state).unwrap();
        assert_eq!(ev, SwitchEvent::Syscall);
        assert_eq!(state.regs.orig_rax, 39);
    };
    run();
    let with_one = child_pids();
    let one_thread = with_one.len();
    // Each next context on this host thread takes the same stub thread.
    for _ in 0..5 {
        run();
    }
    assert_eq!(child_pids(), with_one);
    // Another host thread cannot drive that one: it gets its own, which
    // is reaped when that host thread exits.
    std::thread::scope(|s| s.spawn(run).join().unwrap());
    assert!(settles_at(one_thread), "{} children", children());
    // The address space takes its idle stub thread with it, reaped.
    drop(space);
    assert!(
        settles_at(before),
        "{} children, {before} before",
        children()
    );
}
