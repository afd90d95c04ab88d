//! Taking signals: running handlers through a signal frame, default
//! actions, syscall restarts, and faults.

use platform::{FpState, SignalInfo};

use crate::host;
use crate::process;
use crate::signal::{self, bit, Default_, Queued, SigAction, SIG_DFL, SIG_IGN};
use crate::task::{ExitStatus, Task};

/// Kernel-internal results that ask for a syscall to be restarted; they
/// never reach the application (`include/linux/errno.h`).
pub(crate) const ERESTARTSYS: i32 = 512;
pub(crate) const ERESTARTNOINTR: i32 = 513;
pub(crate) const ERESTARTNOHAND: i32 = 514;
/// Restart through `restart_syscall` with what the task saved (a sleep's
/// deadline), unless a handler runs (then EINTR).
pub(crate) const ERESTART_RESTARTBLOCK: i32 = 516;

/// The smallest RLIMIT_CORE under which Linux writes an ELF core
/// (binfmt_elf's `min_coredump`, one page).
const MIN_COREDUMP: u64 = 4096;

impl Task {
    /// The restart code the syscall that just returned left in rax, if any.
    fn restart_code(&self) -> Option<i32> {
        let r = &self.state.regs;
        if r.orig_rax == u64::MAX {
            return None; // rt_sigreturn, or not a syscall
        }
        let v = -(r.rax as i64);
        (512..=516).contains(&v).then_some(v as i32)
    }

    /// Set the thread's signal mask; returns the old one. A thread that
    /// comes to accept signals it blocked takes over the process-directed
    /// ones waiting on its siblings ([`ThreadGroup::claim_for`]).
    ///
    /// [`ThreadGroup::claim_for`]: crate::process::ThreadGroup::claim_for
    pub(crate) fn set_signal_mask(&self, mask: u64) -> u64 {
        let old = std::mem::replace(&mut self.handle.signals().mask, mask);
        if old & !mask != 0 {
            self.tg.claim_for(&self.handle, 0);
        }
        old
    }

    fn restart_syscall(&mut self) {
        let r = &mut self.state.regs;
        r.rax = r.orig_rax;
        r.rip -= 2; // back over the 2-byte `syscall`
    }

    /// Take pending signals before returning to application code.
    pub(crate) fn deliver_signals(&mut self, after_syscall: bool) {
        let restart = if after_syscall {
            self.restart_code()
        } else {
            None
        };
        loop {
            if self.handle.stop_pending() {
                // Another thread stopped the group: stop too.
                self.group_stop(0);
                if self.exit.is_some() || self.handle.is_killed() {
                    return;
                }
                continue;
            }
            let Some(q) = self.handle.signals().take() else {
                break;
            };
            let action = self.tg.handlers().get(q.sig);
            match action.handler {
                SIG_IGN => continue,
                SIG_DFL => match signal::default_action(q.sig) {
                    Default_::Ignore | Default_::Continue => continue,
                    Default_::Stop => {
                        // SIGTSTP, SIGTTIN and SIGTTOU do nothing to an
                        // orphaned process group; SIGSTOP always stops.
                        if q.sig != signal::SIGSTOP && self.pgrp_orphaned() {
                            continue;
                        }
                        self.group_stop(q.sig);
                        if self.exit.is_some() || self.handle.is_killed() {
                            return;
                        }
                        continue;
                    }
                    Default_::Terminate | Default_::Core => {
                        self.die_of(q.sig);
                        return;
                    }
                },
                _ => {
                    match restart {
                        Some(ERESTARTSYS) if action.flags & signal::SA_RESTART != 0 => {
                            self.restart_syscall()
                        }
                        Some(ERESTARTNOINTR) => self.restart_syscall(),
                        Some(_) => self.state.regs.rax = abi::Errno::EINTR.as_return(),
                        None => {}
                    }
                    if let Err(e) = self.run_handler(&q, &action) {
                        tracing::info!(
                            "signal {}: cannot build the frame ({e:?}); killing with SIGSEGV",
                            q.sig
                        );
                        self.die_of(libc::SIGSEGV);
                    }
                    return;
                }
            }
        }
        // No handler ran: an interrupted syscall starts again.
        if let Some(code) = restart {
            if code == ERESTARTNOHAND || code == ERESTARTSYS || code == ERESTARTNOINTR {
                self.restart_syscall();
            } else if code == ERESTART_RESTARTBLOCK {
                self.restart_syscall();
                self.state.regs.rax = libc::SYS_restart_syscall as u64;
            } else {
                self.state.regs.rax = abi::Errno::EINTR.as_return();
            }
        }
        if let Some(mask) = self.saved_mask.take() {
            self.set_signal_mask(mask);
        }
    }

    /// A synchronous fault: run the handler if there is one the thread does
    /// not block; otherwise the default action, which for every fault
    /// signal kills the process (Linux's `force_sig`).
    pub(crate) fn fault(&mut self, info: SignalInfo) {
        let sig = info.signo;
        let action = self.tg.handlers().get(sig);
        let blocked = self.handle.signals().mask & bit(sig) != 0;
        if action.handler == SIG_DFL || action.handler == SIG_IGN || blocked {
            tracing::info!(
                "task {} killed by signal {sig} (code {}, addr {:#x}) at rip {:#x}",
                self.tid,
                info.code,
                info.addr,
                self.state.regs.rip
            );
            tracing::debug!("mappings at the fault:\n{}", self.mm().describe());
            self.die_of(sig);
            return;
        }
        let q = Queued::new(sig, signal::fault_info(sig, info.code, info.addr));
        if self.run_handler(&q, &action).is_err() {
            self.die_of(libc::SIGSEGV);
        }
    }

    /// End the process by signal `sig`'s default action. Where that dumps
    /// core, the status says a core was dumped when Linux would have
    /// written one (RLIMIT_CORE of at least a page, a dumpable process);
    /// no core file is written.
    pub(crate) fn die_of(&mut self, sig: i32) {
        {
            let core_limit = self.tg.soft_limit(crate::limits::RLIMIT_CORE);
            let mut st = self.tg.lock();
            if st.exit_status.is_none() {
                st.core_dumped = signal::default_action(sig) == Default_::Core
                    && st.dumpable
                    && core_limit >= MIN_COREDUMP;
            }
        }
        self.exit_group(ExitStatus::Signaled(sig));
    }

    /// Whether this process's group is orphaned (job-control stops from
    /// the terminal do nothing to it).
    pub(crate) fn pgrp_orphaned(&self) -> bool {
        let pgid = self.tg.lock().pgid;
        process::orphaned_pgrp(&self.kernel.all_groups(), pgid)
    }

    /// Take part in a group stop (starting one with `sig`, a stop signal
    /// just taken, or joining the one under way with 0) and stay stopped,
    /// holding no lock, until SIGCONT or SIGKILL.
    fn group_stop(&mut self, sig: i32) {
        if !self.tg.stop_thread(&self.handle, sig, self.creds.ruid) {
            return;
        }
        use std::sync::atomic::Ordering;
        loop {
            if self.handle.is_killed() {
                return;
            }
            // SIGKILL ends a stopped process at once, before anything else
            // pending runs.
            if self.handle.signals().pending_set() & bit(signal::SIGKILL) != 0 {
                self.handle.stopped.store(false, Ordering::SeqCst);
                self.exit_group(ExitStatus::Signaled(signal::SIGKILL));
                return;
            }
            if !self.handle.stopped.load(Ordering::SeqCst) {
                // The SIGCONT that woke us is queued under this lock.
                drop(self.tg.lock());
                return;
            }
            self.handle.sleep_until_woken();
        }
    }

    /// Push a signal frame and point the thread at the handler.
    fn run_handler(&mut self, q: &Queued, action: &SigAction) -> Result<(), abi::Errno> {
        self.ctx
            .pull_full_state(self.space.as_ref(), &mut self.state)
            .map_err(|_| abi::Errno::EFAULT)?;
        let old_mask = self.saved_mask.take().unwrap_or(self.handle.signals().mask);
        let frame = signal::build_frame(
            &self.state,
            action,
            &q.info,
            old_mask,
            &self.alt_stack,
            host::xcr0(),
        )?;
        {
            let mut mm = self.mm();
            mm.copy_out(frame.fp_addr, &frame.fp_bytes)?;
            mm.copy_out(frame.sp, &frame.bytes)?;
        }
        let r = &mut self.state.regs;
        r.rsp = frame.sp;
        r.rip = action.handler;
        r.rdi = q.sig as u64;
        r.rsi = frame.sp + 8 + 304; // &siginfo
        r.rdx = frame.sp + 8; // &ucontext
        r.rax = 0;
        r.eflags &= !(0x100 | 0x400); // TF, DF
                                      // The handler starts with a clean FP state, as on Linux.
        let size = self.state.fp.as_bytes().len();
        self.state.fp = FpState::reset(size);
        self.ctx.full_state_changed();
        let mut mask = old_mask | action.mask;
        if action.flags & signal::SA_NODEFER == 0 {
            mask |= bit(q.sig);
        }
        self.handle.signals().mask = mask & !signal::UNBLOCKABLE;
        if action.flags & signal::SA_RESETHAND != 0 {
            self.tg.handlers().actions[(q.sig - 1) as usize] = SigAction::default();
        }
        Ok(())
    }
}
