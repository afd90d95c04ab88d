//! Checks of the built image: its ELF structure, and its functions run in
//! this process against a parameter page the test writes.

use super::*;

fn u16_at(at: usize) -> u16 {
    u16::from_le_bytes(IMAGE[at..at + 2].try_into().unwrap())
}
fn u32_at(at: usize) -> u32 {
    u32::from_le_bytes(IMAGE[at..at + 4].try_into().unwrap())
}
fn u64_at(at: usize) -> u64 {
    u64::from_le_bytes(IMAGE[at..at + 8].try_into().unwrap())
}

struct Section {
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
}

fn sections() -> Vec<Section> {
    let shoff = u64_at(0x28) as usize;
    let shnum = usize::from(u16_at(0x3c));
    (0..shnum)
        .map(|i| {
            let s = shoff + i * 64;
            Section {
                kind: u32_at(s + 4),
                offset: u64_at(s + 24),
                size: u64_at(s + 32),
                link: u32_at(s + 40),
            }
        })
        .collect()
}

fn c_str(at: usize) -> &'static str {
    let end = IMAGE[at..].iter().position(|&b| b == 0).unwrap();
    std::str::from_utf8(&IMAGE[at..at + end]).unwrap()
}

/// The address of each defined dynamic symbol, by name.
fn dynamic_symbols() -> Vec<(&'static str, u64)> {
    const SHT_DYNSYM: u32 = 11;
    let all = sections();
    let dynsym = all.iter().find(|s| s.kind == SHT_DYNSYM).unwrap();
    let strtab = &all[dynsym.link as usize];
    (0..dynsym.size / 24)
        .map(|i| (dynsym.offset + i * 24) as usize)
        .filter(|&s| u16_at(s + 6) != 0) // st_shndx: defined
        .map(|s| {
            (
                c_str(strtab.offset as usize + u32_at(s) as usize),
                u64_at(s + 8),
            )
        })
        .collect()
}

#[test]
fn image_is_one_unrelocated_segment_at_zero() {
    assert_eq!(&IMAGE[..4], b"\x7fELF");
    assert_eq!(u16_at(16), 3, "ET_DYN");
    assert_eq!(u16_at(18), 62, "EM_X86_64");
    let (phoff, phnum) = (u64_at(0x20) as usize, usize::from(u16_at(0x38)));
    let loads: Vec<usize> = (0..phnum)
        .map(|i| phoff + i * 56)
        .filter(|&p| u32_at(p) == 1)
        .collect();
    assert_eq!(loads.len(), 1, "one PT_LOAD");
    assert_eq!((u64_at(loads[0] + 8), u64_at(loads[0] + 16)), (0, 0));
    assert_eq!(u32_at(loads[0] + 4), 5, "PF_R|PF_X");
    // SHT_RELA, SHT_REL: glibc does not relocate the vDSO.
    assert!(sections()
        .iter()
        .all(|s| s.kind != 4 && s.kind != 9 || s.size == 0));
    assert!(IMAGE.len() as u64 <= 2 * PARAMS_PAGE_SIZE);
}

#[test]
fn exports_the_linux_symbols() {
    let syms = dynamic_symbols();
    for name in [
        "clock_gettime",
        "gettimeofday",
        "time",
        "getcpu",
        "clock_getres",
    ] {
        let prefixed = format!("__vdso_{name}");
        let find = |n: &str| syms.iter().find(|(s, _)| *s == n).map(|&(_, a)| a);
        let addr = find(&prefixed).unwrap_or_else(|| panic!("{prefixed} missing"));
        assert_eq!(find(name), Some(addr), "{name} aliases {prefixed}");
    }
    assert!(syms.iter().any(|(s, _)| *s == "LINUX_2.6"));
}

/// The image mapped in this process with a parameter page below it.
struct Mapped {
    base: *mut u8,
    len: usize,
}

impl Mapped {
    fn new() -> Mapped {
        let page = PARAMS_PAGE_SIZE as usize;
        let len = page + IMAGE.len().div_ceil(page) * page;
        // SAFETY: a fresh private anonymous mapping; nothing else uses it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let base = base.cast::<u8>();
        // SAFETY: the image fits in the mapping after the first page, and
        // the mapping is ours; then the image pages become read-execute.
        unsafe {
            std::ptr::copy_nonoverlapping(IMAGE.as_ptr(), base.add(page), IMAGE.len());
            let ret = libc::mprotect(
                base.add(page).cast(),
                len - page,
                libc::PROT_READ | libc::PROT_EXEC,
            );
            assert_eq!(ret, 0);
        }
        Mapped { base, len }
    }

    fn set(&self, p: Params) {
        // SAFETY: the first page of our mapping is writable and aligned.
        unsafe { std::ptr::write_volatile(self.base.cast::<Params>(), p) }
    }

    fn function(&self, name: &str) -> *const u8 {
        let (_, addr) = dynamic_symbols()
            .into_iter()
            .find(|(s, _)| *s == name)
            .unwrap();
        // SAFETY: the symbol's address lies inside the image we copied.
        unsafe { self.base.add(PARAMS_PAGE_SIZE as usize + addr as usize) }
    }

    fn clock_gettime(&self, clock: i32) -> (i64, libc::timespec) {
        type F = unsafe extern "C" fn(i32, *mut libc::timespec) -> i64;
        // SAFETY: the symbol is __vdso_clock_gettime, of this C signature.
        let f: F = unsafe { std::mem::transmute(self.function("__vdso_clock_gettime")) };
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec for the call to fill.
        let ret = unsafe { f(clock, &mut ts) };
        (ret, ts)
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no references into it remain.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

fn host_ns(clock: i32) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills `ts`.
    assert_eq!(unsafe { libc::clock_gettime(clock, &mut ts) }, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[test]
fn falls_back_to_the_syscall_until_ready() {
    let m = Mapped::new();
    m.set(Params::default());
    let before = host_ns(libc::CLOCK_MONOTONIC);
    let (ret, ts) = m.clock_gettime(libc::CLOCK_MONOTONIC);
    let after = host_ns(libc::CLOCK_MONOTONIC);
    let got = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    assert_eq!(ret, 0);
    assert!(before <= got && got <= after, "{before} {got} {after}");
    // An invalid clock reaches the kernel, which says EINVAL.
    assert_eq!(m.clock_gettime(12345).0, -i64::from(libc::EINVAL));
}

#[test]
fn computes_what_params_say() {
    let m = Mapped::new();
    let p = Params {
        seq: 2,
        ready: 1,
        base_tsc: rdtsc_ordered(),
        base_ns: 5_000_000_000_123,
        mult: 3 << 31, // 1.5 ns per tick
        shift: 32,
        realtime_offset: 1_700_000_000_000_000_000,
        getcpu_rdtscp: 0,
    };
    m.set(p);
    for clock in [libc::CLOCK_MONOTONIC, libc::CLOCK_REALTIME] {
        let before = p.clock_ns(clock, rdtsc_ordered()).unwrap();
        let (ret, ts) = m.clock_gettime(clock);
        let after = p.clock_ns(clock, rdtsc_ordered()).unwrap();
        let got = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        assert_eq!(ret, 0);
        assert!(before <= got && got <= after, "{before} {got} {after}");
    }
}
