//! Taking signals: running handlers through a signal frame, default
//! actions, syscall restarts, and faults.

use platform::{FpState, SignalInfo};

use crate::host;
use crate::signal::{self, bit, Default_, Queued, SigAction, SIG_DFL, SIG_IGN};
use crate::task::{ExitStatus, Task};

/// Kernel-internal results that ask for a syscall to be restarted; they
/// never reach the application (`include/linux/errno.h`).
pub(crate) const ERESTARTSYS: i32 = 512;
pub(crate) const ERESTARTNOINTR: i32 = 513;
pub(crate) const ERESTARTNOHAND: i32 = 514;

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
            let Some(q) = self.handle.signals().take() else {
                break;
            };
            let action = self.tg.handlers().get(q.sig);
            match action.handler {
                SIG_IGN => continue,
                SIG_DFL => match signal::default_action(q.sig) {
                    Default_::Ignore | Default_::Continue => continue,
                    Default_::Stop => {
                        tracing::info!(
                            "signal {}: job-control stops are not supported; ignored",
                            q.sig
                        );
                        continue;
                    }
                    Default_::Terminate | Default_::Core => {
                        self.exit_group(ExitStatus::Signaled(q.sig));
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
                        self.exit_group(ExitStatus::Signaled(libc::SIGSEGV));
                    }
                    return;
                }
            }
        }
        // No handler ran: an interrupted syscall starts again.
        if let Some(code) = restart {
            if code == ERESTARTNOHAND || code == ERESTARTSYS || code == ERESTARTNOINTR {
                self.restart_syscall();
            } else {
                self.state.regs.rax = abi::Errno::EINTR.as_return();
            }
        }
        if let Some(mask) = self.saved_mask.take() {
            self.handle.signals().mask = mask;
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
            self.exit_group(ExitStatus::Signaled(sig));
            return;
        }
        let q = Queued {
            sig,
            info: signal::fault_info(sig, info.code, info.addr),
        };
        if self.run_handler(&q, &action).is_err() {
            self.exit_group(ExitStatus::Signaled(libc::SIGSEGV));
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
