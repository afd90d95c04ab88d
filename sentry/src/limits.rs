//! Resource limits (getrlimit(2), setrlimit(2), prlimit(2)): one set per
//! process, inherited by fork, kept across execve.

/// The resources, by their numbers in `<sys/resource.h>`.
pub const RLIMIT_CPU: usize = 0;
pub const RLIMIT_DATA: usize = 2;
pub const RLIMIT_STACK: usize = 3;
pub const RLIMIT_FSIZE: usize = 1;
pub const RLIMIT_CORE: usize = 4;
pub const RLIMIT_NPROC: usize = 6;
pub const RLIMIT_NOFILE: usize = 7;
pub const RLIMIT_AS: usize = 9;
pub const RLIMIT_NICE: usize = 13;
pub const RLIMIT_RTPRIO: usize = 14;
const COUNT: usize = 16;

pub const RLIM_INFINITY: u64 = u64::MAX;

/// Linux's `sysctl fs.nr_open`: RLIMIT_NOFILE can be raised no further.
pub const NR_OPEN: u64 = 1 << 20;

/// (soft, hard) for every resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits([(u64, u64); COUNT]);

impl Default for Limits {
    /// The limits of a new process, as Linux sets them for init's children.
    fn default() -> Self {
        let mut l = [(RLIM_INFINITY, RLIM_INFINITY); COUNT];
        l[RLIMIT_STACK] = (crate::loader::STACK_SIZE, RLIM_INFINITY);
        // RLIMIT_CORE is the one the runtime was started with (upstream's
        // runsc/boot/limits.go says infinity): it decides whether a
        // core-dumping signal's status reports a dump, so a program sees
        // the same status inside as outside under the same `ulimit -c`.
        l[RLIMIT_CORE] =
            crate::host::getrlimit(libc::RLIMIT_CORE).unwrap_or((RLIM_INFINITY, RLIM_INFINITY));
        l[RLIMIT_NPROC] = (63_704, 63_704);
        l[RLIMIT_NOFILE] = (crate::fs::MAX_FDS as u64, 524_288);
        l[8] = (8 << 20, 8 << 20); // memlock
        l[11] = (63_704, 63_704); // sigpending
        l[12] = (819_200, 819_200); // msgqueue
        l[13] = (0, 0); // nice
        l[14] = (0, 0); // rtprio
        l[15] = (RLIM_INFINITY, RLIM_INFINITY); // rttime
        Limits(l)
    }
}

impl Limits {
    /// (soft, hard) of `resource`, or None for a number that is none.
    pub fn get(&self, resource: u64) -> Option<(u64, u64)> {
        usize::try_from(resource)
            .ok()
            .and_then(|r| self.0.get(r))
            .copied()
    }

    /// The soft limit of `resource` (one of the constants above).
    pub fn soft(&self, resource: usize) -> u64 {
        self.0[resource].0
    }

    /// Set `resource` as setrlimit does: EINVAL for an unknown resource or
    /// soft above hard (or RLIMIT_NOFILE above `NR_OPEN`), EPERM for
    /// raising the hard limit without CAP_SYS_RESOURCE.
    pub fn set(
        &mut self,
        resource: u64,
        (soft, hard): (u64, u64),
        may_raise: bool,
    ) -> Result<(), abi::Errno> {
        let slot = usize::try_from(resource)
            .ok()
            .and_then(|r| self.0.get_mut(r))
            .ok_or(abi::Errno::EINVAL)?;
        if soft > hard {
            return Err(abi::Errno::EINVAL);
        }
        if resource == RLIMIT_NOFILE as u64 && hard > NR_OPEN {
            return Err(abi::Errno::EPERM);
        }
        if hard > slot.1 && !may_raise {
            return Err(abi::Errno::EPERM);
        }
        *slot = (soft, hard);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_follows_setrlimit_rules() {
        let mut l = Limits::default();
        assert_eq!(l.get(16), None);
        assert_eq!(
            l.set(RLIMIT_AS as u64, (10, 5), true),
            Err(abi::Errno::EINVAL)
        );
        assert_eq!(l.set(RLIMIT_AS as u64, (1 << 30, 1 << 31), false), Ok(()));
        // Lowering is free; raising the hard limit needs the capability.
        assert_eq!(
            l.set(RLIMIT_AS as u64, (1 << 30, 1 << 32), false),
            Err(abi::Errno::EPERM)
        );
        assert_eq!(l.set(RLIMIT_AS as u64, (1 << 30, 1 << 32), true), Ok(()));
        assert_eq!(
            l.set(RLIMIT_NOFILE as u64, (1024, NR_OPEN + 1), true),
            Err(abi::Errno::EPERM)
        );
        assert_eq!(l.soft(RLIMIT_AS), 1 << 30);
    }
}
