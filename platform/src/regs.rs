//! x86-64 register state as ptrace and signal frames see it.

/// General-purpose registers in the order of the kernel's
/// `struct user_regs_struct` (`arch/x86/include/asm/user_64.h`), so the
/// struct can be handed to `PTRACE_GETREGS`/`PTRACE_SETREGS` as is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Regs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

impl Regs {
    /// The general registers in the order `struct sigcontext` stores them
    /// (`arch/x86/include/uapi/asm/sigcontext.h`): r8-r15, rdi, rsi, rbp,
    /// rbx, rdx, rax, rcx, rsp, rip, eflags.
    pub fn sigcontext_gregs(&self) -> [u64; 18] {
        [
            self.r8,
            self.r9,
            self.r10,
            self.r11,
            self.r12,
            self.r13,
            self.r14,
            self.r15,
            self.rdi,
            self.rsi,
            self.rbp,
            self.rbx,
            self.rdx,
            self.rax,
            self.rcx,
            self.rsp,
            self.rip,
            self.eflags,
        ]
    }

    /// Set the registers from `struct sigcontext` order, eflags included
    /// as given (callers decide which flags user code may change).
    pub fn set_sigcontext_gregs(&mut self, g: &[u64; 18]) {
        [
            self.r8,
            self.r9,
            self.r10,
            self.r11,
            self.r12,
            self.r13,
            self.r14,
            self.r15,
            self.rdi,
            self.rsi,
            self.rbp,
            self.rbx,
            self.rdx,
            self.rax,
            self.rcx,
            self.rsp,
            self.rip,
            self.eflags,
        ] = *g;
    }

    /// The six syscall arguments in ABI order.
    pub fn syscall_args(&self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9]
    }
}

/// The XSAVE area (legacy FXSAVE region, XSAVE header, extended components)
/// as `PTRACE_GETREGSET(NT_X86_XSTATE)` reads and writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FpState {
    bytes: Vec<u8>,
}

impl FpState {
    /// Offset of MXCSR in the FXSAVE region.
    const MXCSR: usize = 24;
    /// Offset of XSTATE_BV in the XSAVE header.
    const XSTATE_BV: usize = 512;
    /// Legacy region + XSAVE header.
    pub const MIN_SIZE: usize = 576;

    /// The reset state Linux gives a new process: x87 control word 0x37f,
    /// MXCSR 0x1f80, everything else zero; `size` is the host's XSAVE size.
    pub fn reset(size: usize) -> FpState {
        let mut bytes = vec![0u8; size.max(Self::MIN_SIZE)];
        bytes[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        bytes[Self::MXCSR..Self::MXCSR + 4].copy_from_slice(&0x1f80u32.to_le_bytes());
        // x87 and SSE state are present in the legacy region; every other
        // component is in its init state.
        bytes[Self::XSTATE_BV..Self::XSTATE_BV + 8].copy_from_slice(&3u64.to_le_bytes());
        FpState { bytes }
    }

    /// The raw XSAVE bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The raw XSAVE bytes, writable (the platform reads into them).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// MXCSR, the SSE control and status register.
    pub fn mxcsr(&self) -> u32 {
        u32::from_le_bytes(
            self.bytes[Self::MXCSR..Self::MXCSR + 4]
                .try_into()
                .unwrap_or([0; 4]),
        )
    }
}

/// Everything the platform saves and restores for a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchState {
    pub regs: Regs,
    pub fp: FpState,
}

impl ArchState {
    /// The state Linux starts a 64-bit user thread in: the user code and
    /// stack selectors (0x33, 0x2b), interrupts enabled (IF) and nothing else
    /// in eflags, every other register zero, FP state reset. `xsave_size`
    /// is the host's XSAVE area size.
    pub fn initial(xsave_size: usize) -> ArchState {
        ArchState {
            regs: Regs {
                cs: 0x33,
                ss: 0x2b,
                eflags: 0x202,
                ..Regs::default()
            },
            fp: FpState::reset(xsave_size),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regs_match_user_regs_struct() {
        assert_eq!(std::mem::size_of::<Regs>(), 27 * 8);
        let r = Regs {
            rdi: 1,
            rsi: 2,
            rdx: 3,
            r10: 4,
            r8: 5,
            r9: 6,
            ..Regs::default()
        };
        assert_eq!(r.syscall_args(), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn sigcontext_order_round_trips() {
        let r = Regs {
            r8: 1,
            r15: 8,
            rdi: 9,
            rax: 14,
            rsp: 16,
            rip: 17,
            eflags: 0x246,
            ..Regs::default()
        };
        let g = r.sigcontext_gregs();
        assert_eq!(
            (g[0], g[7], g[8], g[13], g[15], g[16], g[17]),
            (1, 8, 9, 14, 16, 17, 0x246)
        );
        let mut back = Regs::default();
        back.set_sigcontext_gregs(&g);
        assert_eq!(back, r);
    }

    #[test]
    fn reset_fp_state_is_linux_default() {
        let fp = FpState::reset(832);
        assert_eq!(fp.as_bytes().len(), 832);
        assert_eq!(fp.mxcsr(), 0x1f80);
        assert_eq!(&fp.as_bytes()[0..2], &[0x7f, 0x03]);
    }
}
