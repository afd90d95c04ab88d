//! Signals: dispositions, masks, pending queues, and delivery through
//! Linux's x86-64 signal frame (`arch/x86/kernel/signal_64.c`).

use std::collections::VecDeque;

use abi::Errno;
use platform::ArchState;

pub const SIGKILL: i32 = 9;
pub const SIGSTOP: i32 = 19;
pub const SIGCONT: i32 = 18;
pub const SIGCHLD: i32 = 17;
pub const SIGPIPE: i32 = 13;
pub const SIGXFSZ: i32 = 25;

pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;

pub const SA_NOCLDSTOP: u64 = 0x1;
pub const SA_NOCLDWAIT: u64 = 0x2;
pub const SA_ONSTACK: u64 = 0x0800_0000;
pub const SA_RESTART: u64 = 0x1000_0000;
pub const SA_NODEFER: u64 = 0x4000_0000;
pub const SA_RESETHAND: u64 = 0x8000_0000;

pub const SS_ONSTACK: i32 = 1;
pub const SS_DISABLE: i32 = 2;

/// The bit of `sig` in a signal set.
pub fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// Signals that can be neither blocked, caught nor ignored.
pub const UNBLOCKABLE: u64 = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1));

/// SIGSTOP, SIGTSTP, SIGTTIN and SIGTTOU: the signals whose default action
/// stops the process.
pub const STOP_SIGNALS: u64 = 0b1111 << (SIGSTOP - 1);

/// `struct kernel_sigaction`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

impl SigAction {
    pub fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, v) in [self.handler, self.flags, self.restorer, self.mask]
            .iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    pub fn from_bytes(b: &[u8; 32]) -> SigAction {
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        SigAction {
            handler: w(0),
            flags: w(1),
            restorer: w(2),
            mask: w(3),
        }
    }
}

/// The dispositions of a process (shared by CLONE_SIGHAND threads).
#[derive(Clone, Debug)]
pub struct Handlers {
    pub actions: [SigAction; 64],
}

impl Default for Handlers {
    fn default() -> Self {
        Handlers {
            actions: [SigAction::default(); 64],
        }
    }
}

impl Handlers {
    pub fn get(&self, sig: i32) -> SigAction {
        self.actions[(sig - 1) as usize]
    }

    /// Exec keeps ignored signals ignored and resets handlers to default.
    pub fn reset_for_exec(&mut self) {
        for a in &mut self.actions {
            if a.handler != SIG_IGN {
                *a = SigAction::default();
            }
        }
    }
}

/// What happens to a signal nobody handles (signal(7)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Default_ {
    Terminate,
    /// Terminate and dump core.
    Core,
    Ignore,
    Stop,
    Continue,
}

pub fn default_action(sig: i32) -> Default_ {
    match sig {
        17 | 23 | 28 => Default_::Ignore, // SIGCHLD SIGURG SIGWINCH
        18 => Default_::Continue,         // SIGCONT
        19..=22 => Default_::Stop,        // SIGSTOP SIGTSTP SIGTTIN SIGTTOU
        3..=8 | 11 | 24 | 25 | 31 => Default_::Core, // QUIT ILL TRAP ABRT BUS FPE SEGV XCPU XFSZ SYS
        _ => Default_::Terminate,
    }
}

/// Whether `sig` is dropped when generated under `action` (Linux's
/// `sig_handler_ignored`): SIG_IGN, or the default for a signal whose
/// default does nothing to a running process (SIGCONT's resuming happens at
/// generation, whatever its disposition).
pub fn ignored(action: &SigAction, sig: i32) -> bool {
    action.handler == SIG_IGN
        || (action.handler == SIG_DFL
            && matches!(default_action(sig), Default_::Ignore | Default_::Continue))
}

/// A queued signal with its `siginfo_t` bytes.
#[derive(Clone, Debug)]
pub struct Queued {
    pub sig: i32,
    pub info: [u8; 128],
    /// Sent to the process, not to this thread: Linux keeps such signals
    /// in a queue every thread takes from. Here each waits on one thread
    /// ([`crate::process::ThreadGroup::post`] picks it), and a thread
    /// that comes to accept it takes it over
    /// ([`crate::process::ThreadGroup::claim_for`]).
    pub group: bool,
}

impl Queued {
    /// A signal with its `siginfo_t`; [`crate::process::ThreadGroup::post`]
    /// marks those it queues for the process.
    pub fn new(sig: i32, info: [u8; 128]) -> Queued {
        Queued {
            sig,
            info,
            group: false,
        }
    }
}

/// siginfo for a signal sent by a process (`SI_USER` from kill, `SI_TKILL`
/// from tgkill/tkill).
pub fn user_info(sig: i32, code: i32, pid: i32, uid: u32) -> [u8; 128] {
    let mut info = [0u8; 128];
    info[0..4].copy_from_slice(&sig.to_le_bytes());
    info[8..12].copy_from_slice(&code.to_le_bytes());
    info[16..20].copy_from_slice(&pid.to_le_bytes());
    info[20..24].copy_from_slice(&uid.to_le_bytes());
    info
}

/// siginfo for a fault (`si_addr` at offset 16).
pub fn fault_info(sig: i32, code: i32, addr: u64) -> [u8; 128] {
    let mut info = [0u8; 128];
    info[0..4].copy_from_slice(&sig.to_le_bytes());
    info[8..12].copy_from_slice(&code.to_le_bytes());
    info[16..24].copy_from_slice(&addr.to_le_bytes());
    info
}

/// One thread's signal state that other threads post to.
#[derive(Default)]
pub struct ThreadSignals {
    pub mask: u64,
    pub pending: VecDeque<Queued>,
    /// A stop signal was taken for delivery and no SIGCONT came since
    /// (Linux's JOBCTL_STOP_DEQUEUED): a stop may still begin.
    pub stop_dequeued: bool,
}

impl ThreadSignals {
    /// Standard signals queue once; real-time ones queue every instance.
    pub fn post(&mut self, q: Queued) {
        if q.sig < 32 && self.pending.iter().any(|p| p.sig == q.sig) {
            return;
        }
        self.pending.push_back(q);
    }

    pub fn pending_set(&self) -> u64 {
        self.pending.iter().fold(0, |s, q| s | bit(q.sig))
    }

    /// Whether an unblocked signal waits.
    pub fn deliverable(&self) -> bool {
        self.pending_set() & !self.mask != 0
    }

    /// Take the lowest-numbered pending signal in `set`, blocked or not
    /// (what a signalfd read does).
    pub fn take_in(&mut self, set: u64) -> Option<Queued> {
        let ready = self.pending_set() & set;
        if ready == 0 {
            return None;
        }
        let sig = ready.trailing_zeros() as i32 + 1;
        let i = self.pending.iter().position(|q| q.sig == sig)?;
        self.pending.remove(i)
    }

    /// Take the lowest-numbered unblocked pending signal (standard signals
    /// first, as Linux).
    pub fn take(&mut self) -> Option<Queued> {
        let ready = self.pending_set() & !self.mask;
        if ready == 0 {
            return None;
        }
        let sig = ready.trailing_zeros() as i32 + 1;
        let i = self.pending.iter().position(|q| q.sig == sig)?;
        if bit(sig) & STOP_SIGNALS != 0 {
            self.stop_dequeued = true;
        }
        self.pending.remove(i)
    }

    /// Remove and return the queued signals `pick` selects; the others
    /// stay in order.
    pub fn take_where(&mut self, pick: impl FnMut(&Queued) -> bool) -> VecDeque<Queued> {
        let (taken, kept) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(pick);
        self.pending = kept;
        taken
    }

    pub fn discard(&mut self, sig: i32) {
        self.pending.retain(|q| q.sig != sig);
    }
}

/// The alternate signal stack (`sigaltstack`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AltStack {
    pub sp: u64,
    pub size: u64,
    pub flags: i32,
}

impl AltStack {
    pub fn enabled(&self) -> bool {
        self.flags & SS_DISABLE == 0 && self.size != 0
    }

    pub fn contains(&self, sp: u64) -> bool {
        self.enabled() && sp > self.sp && sp - self.sp <= self.size
    }

    pub fn to_bytes(self, current_sp: u64) -> [u8; 24] {
        let flags = if !self.enabled() {
            SS_DISABLE
        } else if self.contains(current_sp) {
            SS_ONSTACK
        } else {
            0
        };
        let mut b = [0u8; 24];
        b[0..8].copy_from_slice(&self.sp.to_le_bytes());
        b[8..12].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.size.to_le_bytes());
        b
    }
}

const UC_FP_XSTATE: u64 = 1;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// Bytes of `struct rt_sigframe`: pretcode, ucontext (304), siginfo (128).
const FRAME_SIZE: u64 = 8 + 304 + 128;
/// Offset of `uc_mcontext` in the frame.
const MCONTEXT: usize = 8 + 8 + 8 + 24;
/// The x86-64 ABI's red zone below the stack pointer.
const RED_ZONE: u64 = 128;

/// The frame to write and the registers to enter the handler with.
pub struct Frame {
    pub sp: u64,
    pub bytes: Vec<u8>,
    pub fp_addr: u64,
    pub fp_bytes: Vec<u8>,
}

/// Lay out an rt_sigframe for `sig` below `state`'s stack (or on the
/// alternate stack), as Linux's `setup_rt_frame` does. `xfeatures` is the
/// host's XCR0.
pub fn build_frame(
    state: &ArchState,
    action: &SigAction,
    info: &[u8; 128],
    old_mask: u64,
    alt: &AltStack,
    xfeatures: u64,
) -> Result<Frame, Errno> {
    let regs = &state.regs;
    let mut sp = regs.rsp.wrapping_sub(RED_ZONE);
    if action.flags & SA_ONSTACK != 0 && alt.enabled() && !alt.contains(regs.rsp) {
        sp = alt.sp + alt.size;
    }
    // The FP state (XSAVE image plus the trailing magic), 64-byte aligned.
    let xsize = state.fp.as_bytes().len() as u64;
    let fp_addr = (sp.checked_sub(xsize + 4).ok_or(Errno::EFAULT)?) & !63;
    let mut fp_bytes = state.fp.as_bytes().to_vec();
    // struct _fpx_sw_bytes in the FXSAVE area's software-reserved bytes.
    fp_bytes[464..468].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
    fp_bytes[468..472].copy_from_slice(&((xsize + 4) as u32).to_le_bytes());
    fp_bytes[472..480].copy_from_slice(&xfeatures.to_le_bytes());
    fp_bytes[480..484].copy_from_slice(&(xsize as u32).to_le_bytes());
    fp_bytes[484..512].fill(0);
    fp_bytes.extend_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());

    // The frame below it, so that the handler starts with (sp + 8) % 16 == 0
    // (as if called).
    let frame_sp = ((fp_addr - FRAME_SIZE) & !15) - 8;
    let mut f = vec![0u8; FRAME_SIZE as usize];
    let put = |f: &mut Vec<u8>, at: usize, v: u64| f[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put(&mut f, 0, action.restorer);
    put(
        &mut f,
        8,
        UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS,
    );
    put(&mut f, 16, 0); // uc_link
    f[24..48].copy_from_slice(&alt.to_bytes(regs.rsp));
    for (i, v) in regs.sigcontext_gregs().iter().enumerate() {
        put(&mut f, MCONTEXT + i * 8, *v);
    }
    // cs, gs, fs, ss as four u16s.
    let segs = [regs.cs as u16, 0, 0, regs.ss as u16];
    for (i, v) in segs.iter().enumerate() {
        f[MCONTEXT + 144 + i * 2..MCONTEXT + 146 + i * 2].copy_from_slice(&v.to_le_bytes());
    }
    // err, trapno: from a fault's siginfo the kernel would fill these; the
    // platform does not report them, so they stay 0.
    put(&mut f, MCONTEXT + 168, old_mask); // oldmask
    let cr2 = if matches!(
        i32::from_le_bytes(info[0..4].try_into().expect("4")),
        7 | 11
    ) {
        u64::from_le_bytes(info[16..24].try_into().expect("8"))
    } else {
        0
    };
    put(&mut f, MCONTEXT + 176, cr2);
    put(&mut f, MCONTEXT + 184, fp_addr); // fpstate
    put(&mut f, MCONTEXT + 256, old_mask); // uc_sigmask
    f[312..440].copy_from_slice(info);
    Ok(Frame {
        sp: frame_sp,
        bytes: f,
        fp_addr,
        fp_bytes,
    })
}

/// Registers, mask and FP location read back from a frame by rt_sigreturn.
pub struct Restored {
    pub mask: u64,
    pub fp_addr: u64,
    pub alt: AltStack,
}

/// Restore `state.regs` from the ucontext at `uc` (the bytes of the frame
/// from uc_flags on).
pub fn restore_regs(state: &mut ArchState, uc: &[u8; 304]) -> Restored {
    let w = |at: usize| u64::from_le_bytes(uc[at..at + 8].try_into().expect("8 bytes"));
    let m = MCONTEXT - 8;
    let r = &mut state.regs;
    let old_eflags = r.eflags;
    let gregs: [u64; 18] = std::array::from_fn(|i| w(m + i * 8));
    r.set_sigcontext_gregs(&gregs);
    // Only the flags user code may change (Linux's FIX_EFLAGS): CF PF AF ZF
    // SF TF DF OF, AC, RF.
    const FIX_EFLAGS: u64 =
        0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x4_0000 | 0x1_0000;
    r.eflags = (old_eflags & !FIX_EFLAGS) | (gregs[17] & FIX_EFLAGS);
    r.orig_rax = u64::MAX; // no syscall restart after sigreturn
    let alt_flags = i32::from_le_bytes(uc[24..28].try_into().expect("4"));
    Restored {
        mask: w(m + 256) & !UNBLOCKABLE,
        fp_addr: w(m + 184),
        alt: AltStack {
            sp: w(16),
            size: w(32),
            flags: alt_flags & SS_DISABLE,
        },
    }
}

/// Check an FP image read from a signal frame the way Linux does before
/// trusting it: the software bytes' magic and size, and the trailing magic.
pub fn check_fp(image: &[u8], xsize: usize) -> bool {
    let u32_at = |at: usize| {
        image
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
    };
    u32_at(464) == Some(FP_XSTATE_MAGIC1)
        && u32_at(480) == Some(xsize as u32)
        && u32_at(xsize) == Some(FP_XSTATE_MAGIC2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::{FpState, Regs};

    fn state() -> ArchState {
        ArchState {
            regs: Regs {
                rsp: 0x7000_1000,
                rip: 0x401000,
                rax: 42,
                rdi: 7,
                eflags: 0x246,
                cs: 0x33,
                ss: 0x2b,
                ..Regs::default()
            },
            fp: FpState::reset(832),
        }
    }

    #[test]
    fn frame_is_aligned_and_round_trips() {
        let st = state();
        let action = SigAction {
            handler: 0x401100,
            flags: 0x4 | 0x0400_0000,
            restorer: 0x401200,
            mask: 0,
        };
        let info = user_info(10, 0, 1, 0);
        let f = build_frame(&st, &action, &info, 0b1010, &AltStack::default(), 7).unwrap();
        assert_eq!((f.sp + 8) % 16, 0, "handler entry alignment");
        assert_eq!(f.fp_addr % 64, 0);
        assert!(f.sp + FRAME_SIZE <= f.fp_addr);
        assert!(f.fp_addr + f.fp_bytes.len() as u64 <= st.regs.rsp - RED_ZONE);
        assert_eq!(
            u64::from_le_bytes(f.bytes[0..8].try_into().unwrap()),
            0x401200
        );
        assert!(check_fp(&f.fp_bytes, 832));

        let mut back = ArchState {
            regs: Regs::default(),
            fp: FpState::reset(832),
        };
        back.regs.eflags = 0x202;
        let uc: [u8; 304] = f.bytes[8..312].try_into().unwrap();
        let r = restore_regs(&mut back, &uc);
        assert_eq!(
            (back.regs.rip, back.regs.rsp, back.regs.rax, back.regs.rdi),
            (0x401000, 0x7000_1000, 42, 7)
        );
        assert_eq!(back.regs.eflags, 0x246);
        assert_eq!(r.mask, 0b1010);
        assert_eq!(r.fp_addr, f.fp_addr);
    }

    #[test]
    fn onstack_uses_the_alternate_stack() {
        let st = state();
        let action = SigAction {
            handler: 1 << 20,
            flags: SA_ONSTACK | 0x0400_0000,
            restorer: 2,
            mask: 0,
        };
        let alt = AltStack {
            sp: 0x9000_0000,
            size: 0x4000,
            flags: 0,
        };
        let f = build_frame(&st, &action, &[0; 128], 0, &alt, 7).unwrap();
        assert!(f.sp > alt.sp && f.sp < alt.sp + alt.size);
    }

    #[test]
    fn pending_order_and_coalescing() {
        let mut t = ThreadSignals::default();
        t.post(Queued::new(10, [0; 128]));
        t.post(Queued::new(10, [0; 128]));
        t.post(Queued::new(34, [0; 128]));
        t.post(Queued::new(34, [0; 128]));
        t.post(Queued::new(2, [0; 128]));
        assert_eq!(
            t.pending.len(),
            4,
            "standard signals coalesce, real-time ones queue"
        );
        t.mask = bit(2);
        assert_eq!(t.take().map(|q| q.sig), Some(10));
        assert_eq!(t.take().map(|q| q.sig), Some(34));
        assert_eq!(t.take().map(|q| q.sig), Some(34));
        assert_eq!(t.take().map(|q| q.sig), None, "SIGINT is blocked");
        assert!(!t.deliverable());
    }

    #[test]
    fn default_actions_follow_signal_7() {
        assert_eq!(default_action(SIGCHLD), Default_::Ignore);
        assert_eq!(default_action(11), Default_::Core);
        assert_eq!(default_action(15), Default_::Terminate);
        assert_eq!(default_action(SIGPIPE), Default_::Terminate);
        assert_eq!(default_action(SIGSTOP), Default_::Stop);
    }
}
