//! Loading an ELF executable and building the initial stack
//! (upstream's `pkg/sentry/loader`, Linux's `fs/binfmt_elf.c`).
//!
//! Static and static-PIE x86-64 executables load here. Segments are copied
//! from the file into fresh memory rather than mapped from it: the file is
//! a host file the application must never write through, and the copy is
//! what a private mapping would show.

use std::sync::Arc;

use abi::auxvec::*;
use abi::{page_down, page_up, Errno, PAGE_SIZE};
use platform::AccessType;

use crate::fs::File;
use crate::host;
use crate::mm::{MemoryManager, SharedRange, VmaKind};

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const PHDR_SIZE: usize = 56;
/// Linux refuses program header tables larger than this (ELF_MIN_ALIGN).
const MAX_PHDRS_BYTES: usize = 65536;
/// Where a static-PIE is placed before randomisation (Linux's
/// ELF_ET_DYN_BASE for x86-64).
const DYN_BASE: u64 = 0x5555_5555_4000;
/// How far the stack and a PIE's base move at random (28 bits of pages).
const ASLR_PAGES: u64 = 1 << 28;
/// RLIMIT_STACK's default; the stack is reserved at this size.
pub const STACK_SIZE: u64 = 8 << 20;

/// Why an executable could not be loaded, with the errno `execve` gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFailure {
    pub errno: Errno,
    /// What was wrong, for the log (Linux reports only the errno).
    pub why: &'static str,
}

fn fail(errno: Errno, why: &'static str) -> LoadFailure {
    LoadFailure { errno, why }
}

#[derive(Clone, Copy, Debug)]
struct Phdr {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The parsed parts of an ELF header that loading needs.
#[derive(Debug)]
pub struct ElfHeader {
    kind: u16,
    entry: u64,
    phoff: u64,
    phnum: usize,
}

/// Parse and check the 64-byte ELF header: ENOEXEC for anything that is not
/// an x86-64 little-endian executable, as Linux.
pub fn parse_header(h: &[u8]) -> Result<ElfHeader, LoadFailure> {
    if h.len() < 64 || &h[..4] != ELF_MAGIC {
        return Err(fail(Errno::ENOEXEC, "not an ELF file"));
    }
    // Linux's x86-64 loader checks neither EI_CLASS nor EI_DATA nor
    // EI_VERSION (`elf_check_arch` looks at e_machine only), so neither do we.
    let kind = u16_at(h, 16);
    if kind != ET_EXEC && kind != ET_DYN {
        return Err(fail(
            Errno::ENOEXEC,
            "ELF file is neither an executable nor position-independent",
        ));
    }
    if u16_at(h, 18) != EM_X86_64 {
        return Err(fail(Errno::ENOEXEC, "ELF file is for another architecture"));
    }
    let phentsize = usize::from(u16_at(h, 54));
    let phnum = usize::from(u16_at(h, 56));
    if phentsize != PHDR_SIZE || phnum == 0 || phnum * PHDR_SIZE > MAX_PHDRS_BYTES {
        return Err(fail(Errno::ENOEXEC, "bad ELF program header table"));
    }
    Ok(ElfHeader {
        kind,
        entry: u64_at(h, 24),
        phoff: u64_at(h, 32),
        phnum,
    })
}

fn parse_phdrs(b: &[u8]) -> Vec<Phdr> {
    b.chunks_exact(PHDR_SIZE)
        .map(|p| Phdr {
            kind: u32_at(p, 0),
            flags: u32_at(p, 4),
            offset: u64_at(p, 8),
            vaddr: u64_at(p, 16),
            filesz: u64_at(p, 32),
            memsz: u64_at(p, 40),
        })
        .collect()
}

/// Read exactly `buf.len()` bytes at `offset`; EIO on a short file, as
/// Linux's `elf_read`.
fn read_exact_at(fd: &File, buf: &mut [u8], offset: u64) -> Result<(), LoadFailure> {
    let mut done = 0;
    while done < buf.len() {
        match fd.pread(&mut buf[done..], offset + done as u64) {
            Ok(0) => return Err(fail(Errno::EIO, "ELF file is truncated")),
            Ok(n) => done += n,
            Err(e) => return Err(fail(e, "reading the ELF file")),
        }
    }
    Ok(())
}

/// Where a loaded image landed.
#[derive(Debug, Clone, Copy)]
pub struct Image {
    pub entry: u64,
    pub phdr: u64,
    pub phnum: u64,
    /// One past the highest byte of the image: the program break starts here.
    pub end: u64,
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // getrandom of 8 bytes does not fail short on Linux; if it failed we
    // would place things at their base, which is still correct, just not
    // randomised.
    let _ = host::getrandom(&mut b);
    u64::from_le_bytes(b)
}

/// An ELF file's header and program headers, checked as Linux checks them.
struct ElfFile {
    header: ElfHeader,
    phdrs: Vec<Phdr>,
    loads: Vec<Phdr>,
}

fn read_elf(fd: &File, head: &[u8]) -> Result<ElfFile, LoadFailure> {
    let header = parse_header(head)?;
    let mut table = vec![0u8; header.phnum * PHDR_SIZE];
    // A table past the end of the file is ENOEXEC, as in Linux's
    // load_elf_binary (its elf_read says EIO, which the caller replaces).
    read_exact_at(fd, &mut table, header.phoff).map_err(|f| fail(Errno::ENOEXEC, f.why))?;
    let phdrs = parse_phdrs(&table);
    let loads: Vec<Phdr> = phdrs
        .iter()
        .copied()
        .filter(|p| p.kind == PT_LOAD)
        .collect();
    if loads.is_empty() {
        return Err(fail(Errno::ENOEXEC, "ELF file has no loadable segment"));
    }
    for p in &loads {
        if p.filesz > p.memsz
            || p.vaddr.checked_add(p.memsz).is_none()
            || p.offset.checked_add(p.filesz).is_none()
        {
            return Err(fail(Errno::ENOEXEC, "bad ELF segment"));
        }
    }
    Ok(ElfFile {
        header,
        phdrs,
        loads,
    })
}

impl ElfFile {
    /// The path in PT_INTERP, if the file names an interpreter.
    fn interpreter(&self, fd: &File) -> Result<Option<String>, LoadFailure> {
        let Some(p) = self.phdrs.iter().find(|p| p.kind == PT_INTERP) else {
            return Ok(None);
        };
        // Linux refuses interpreter paths of one byte or more than PATH_MAX.
        if p.filesz < 2 || p.filesz > 4096 {
            return Err(fail(Errno::ENOEXEC, "bad PT_INTERP"));
        }
        let mut buf = vec![0u8; p.filesz as usize];
        read_exact_at(fd, &mut buf, p.offset).map_err(|f| fail(Errno::ENOEXEC, f.why))?;
        if buf.pop() != Some(0) {
            return Err(fail(Errno::ENOEXEC, "PT_INTERP is not NUL-terminated"));
        }
        String::from_utf8(buf)
            .map(Some)
            .map_err(|_| fail(Errno::ENOEXEC, "PT_INTERP is not UTF-8"))
    }

    /// Bytes from the lowest to the highest page of the loadable segments.
    fn span(&self) -> Result<(u64, u64), LoadFailure> {
        let low = page_down(self.loads.iter().map(|p| p.vaddr).min().unwrap_or(0));
        let high = self
            .loads
            .iter()
            .map(|p| p.vaddr + p.memsz)
            .max()
            .unwrap_or(0);
        let high = page_up(high).ok_or(fail(Errno::ENOEXEC, "bad ELF segment"))?;
        Ok((low, high - low))
    }
}

/// Map the loadable segments of `elf` into `mm` at `bias`: the file's
/// cached pages copy-on-write where the segment allows it (page-aligned
/// alike in file and memory), else a copy of its bytes.
fn map_elf(
    mm: &mut MemoryManager,
    fd: &File,
    cached: Option<crate::filecache::CachedPages>,
    elf: &ElfFile,
    bias: u64,
    path: &str,
) -> Result<Image, LoadFailure> {
    // Map segment by segment; a page shared by two segments keeps the
    // first's memory and gets both protections.
    let mut mapped_end = 0u64;
    let mut end = 0u64;
    let mut prev_access = AccessType::NONE;
    for p in &elf.loads {
        let start = bias
            .checked_add(p.vaddr)
            .ok_or(fail(Errno::ENOEXEC, "bad ELF segment"))?;
        let seg_end = start + p.memsz;
        let map_start = page_down(start).max(mapped_end);
        let map_end = page_up(seg_end).ok_or(fail(Errno::ENOEXEC, "bad ELF segment"))?;
        let access = segment_access(p.flags);
        if page_down(start) < mapped_end {
            mm.protect(page_down(start), PAGE_SIZE, access.union(prev_access))
                .map_err(|e| fail(e, "protecting a shared ELF page"))?;
        }
        // The file's pages can back the segment from `map_start` on when
        // the segment sits at the same offset within a page in the file
        // as in memory (always, for a loadable ELF) and lies inside it.
        let file_page = |addr: u64| (addr - start).checked_add(p.offset);
        let backing = cached.filter(|c| {
            (start - p.offset).is_multiple_of(PAGE_SIZE)
                && p.offset.checked_add(p.filesz).is_some_and(|e| e <= c.len)
        });
        // How many of the segment's file bytes to copy in: all, unless the
        // cached pages back it.
        let mut copy_len = p.filesz;
        if map_end > map_start {
            let file_end = page_up(start + p.filesz).unwrap_or(map_end).min(map_end);
            let frames = backing.and_then(|c| {
                let first = file_page(map_start)?;
                (file_end > map_start).then_some((c.offset + first, file_end - map_start))
            });
            mm.map_file_pages(
                map_start,
                map_end - map_start,
                true,
                access,
                VmaKind::File(path.to_string()),
                frames,
            )
            .map_err(|_| {
                fail(
                    Errno::ENOMEM,
                    "ELF segment does not fit in the address space",
                )
            })?;
            if frames.is_some() {
                // Only a first page shared with the previous segment still
                // needs the bytes copied in.
                copy_len = p.filesz.min(map_start.saturating_sub(start));
                if p.memsz > p.filesz {
                    // The rest of the last file page belongs to .bss: zero
                    // it, as Linux's padzero.
                    let zero_start = start + p.filesz;
                    let zero_end = page_up(zero_start).unwrap_or(zero_start).min(seg_end);
                    mm.copy_out_force(zero_start, &vec![0u8; (zero_end - zero_start) as usize])
                        .map_err(|e| fail(e, "zeroing an ELF segment's tail"))?;
                }
            }
        }
        // Copy the file's bytes in bounded chunks (p_filesz is the file's
        // claim, not a size to allocate). Bytes past the end of a short file
        // stay zero here; Linux would fault the program when it touches them.
        let mut chunk = vec![0u8; (copy_len as usize).min(1 << 20)];
        let mut done = 0u64;
        while done < copy_len {
            let want = (copy_len - done).min(chunk.len() as u64) as usize;
            let n = match fd.pread(&mut chunk[..want], p.offset + done) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Err(fail(e, "reading an ELF segment")),
            };
            mm.copy_out_force(start + done, &chunk[..n])
                .map_err(|e| fail(e, "writing an ELF segment"))?;
            done += n as u64;
        }
        mapped_end = mapped_end.max(map_end);
        end = end.max(seg_end);
        prev_access = access;
    }

    let header = &elf.header;
    let phdr = match elf.phdrs.iter().find(|p| p.kind == PT_PHDR) {
        Some(p) => bias + p.vaddr,
        None => {
            // The table lies in the first segment that contains its bytes.
            let p = elf
                .loads
                .iter()
                .find(|p| p.offset <= header.phoff && header.phoff < p.offset + p.filesz)
                .ok_or(fail(Errno::ENOEXEC, "ELF program headers are not loaded"))?;
            bias + p.vaddr + (header.phoff - p.offset)
        }
    };
    Ok(Image {
        entry: bias + header.entry,
        phdr,
        phnum: header.phnum as u64,
        end,
    })
}

/// Linux's limit on nested `#!` interpreters.
const MAX_SCRIPT_DEPTH: usize = 5;
/// How much of a file Linux reads to recognise its format (BINPRM_BUF_SIZE).
const BINPRM_BUF: usize = 256;

/// What `load` produced.
pub struct Loaded {
    /// Where execution starts: the interpreter's entry if there is one.
    pub start: u64,
    pub image: Image,
    /// Load address of the ELF interpreter (AT_BASE), 0 without one.
    pub interp_base: u64,
    /// Top of the stack reserved by `load`.
    pub stack_top: u64,
    /// argv after `#!` rewriting.
    pub argv: Vec<String>,
}

/// Opens files for the loader: the container root, as the kernel sees it.
pub trait Opener {
    /// Open the path for reading; returns the file and its attributes.
    fn open_exec(&self, path: &str) -> Result<(Arc<File>, abi::Stat), Errno>;

    /// The file's pages in the memory file, if it is cached there: its
    /// segments are then mapped copy-on-write rather than copied.
    fn cached_pages(&self, _file: &File) -> Option<crate::filecache::CachedPages> {
        None
    }
}

/// Opens programs through the VFS, as the calling task sees the tree.
pub struct VfsOpener<'a> {
    pub ctx: vfs::walk::Context<'a>,
    pub cwd: &'a vfs::Location,
    pub cache: &'a crate::filecache::FileCache,
}

impl Opener for VfsOpener<'_> {
    fn open_exec(&self, path: &str) -> Result<(Arc<File>, abi::Stat), Errno> {
        let loc = self.ctx.lookup(self.cwd, path, true)?;
        if loc.mount.flags() & vfs::mount::MS_NOEXEC != 0 {
            return Err(Errno::EACCES);
        }
        let st = loc.inode().stat()?;
        if st.mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Errno::EACCES);
        }
        let file = self.ctx.open_location(loc, libc::O_RDONLY, false)?;
        Ok((file, st))
    }

    fn cached_pages(&self, file: &File) -> Option<crate::filecache::CachedPages> {
        // A file the cache cannot read is copied the old way, which then
        // reports the error.
        self.cache.pages(file).ok().flatten()
    }
}

/// Check execve's conditions on an opened file: a regular file with an
/// execute bit that applies to `uid` (root needs any execute bit).
fn check_executable(st: &abi::Stat, uid: u32) -> Result<(), LoadFailure> {
    if st.mode & libc::S_IFMT != libc::S_IFREG {
        return Err(fail(Errno::EACCES, "not a regular file"));
    }
    let bits = if uid == 0 {
        0o111
    } else if st.uid == uid {
        0o100
    } else {
        0o011
    };
    if st.mode & bits == 0 {
        return Err(fail(Errno::EACCES, "no execute permission"));
    }
    Ok(())
}

/// Split a `#!` line as Linux does: the interpreter, then everything after
/// it (trimmed) as one optional argument.
pub fn parse_shebang(head: &[u8]) -> Result<(String, Option<String>), LoadFailure> {
    let line = &head[2..];
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line =
        std::str::from_utf8(line).map_err(|_| fail(Errno::ENOEXEC, "#! line is not UTF-8"))?;
    let line = line.trim_matches(|c| c == ' ' || c == '\t');
    let (interp, arg) = match line.find([' ', '\t']) {
        Some(i) => (
            &line[..i],
            Some(line[i..].trim_matches(|c| c == ' ' || c == '\t')),
        ),
        None => (line, None),
    };
    if interp.is_empty() {
        return Err(fail(Errno::ENOEXEC, "#! names no interpreter"));
    }
    Ok((
        interp.to_string(),
        arg.filter(|a| !a.is_empty()).map(str::to_string),
    ))
}

/// Load the program at `path` (absolute, in the container) into `mm`,
/// following `#!` interpreters and PT_INTERP, and reserve the stack.
pub fn load(
    mm: &mut MemoryManager,
    opener: &dyn Opener,
    path: &str,
    mut argv: Vec<String>,
    uid: u32,
) -> Result<Loaded, LoadFailure> {
    let stack_top = reserve_stack(mm).map_err(|e| fail(e, "reserving the stack"))?;
    let mut path = path.to_string();
    let mut depth = 0;
    loop {
        let (fd, st) = opener
            .open_exec(&path)
            .map_err(|e| fail(e, "opening the program"))?;
        check_executable(&st, uid)?;
        let mut head = vec![0u8; BINPRM_BUF];
        let n = fd
            .pread(&mut head, 0)
            .map_err(|e| fail(e, "reading the program"))?;
        head.truncate(n);
        if head.starts_with(b"#!") {
            depth += 1;
            if depth > MAX_SCRIPT_DEPTH {
                return Err(fail(Errno::ELOOP, "too many nested #! interpreters"));
            }
            let (interp, arg) = parse_shebang(&head)?;
            // argv[0] is replaced by the interpreter (and its argument),
            // followed by the script's path.
            let rest = argv.split_off(argv.len().min(1));
            argv = std::iter::once(interp.clone())
                .chain(arg)
                .chain([path.clone()])
                .chain(rest)
                .collect();
            path = interp;
            continue;
        }
        let elf = read_elf(&fd, &head)?;
        let bias = if elf.header.kind == ET_DYN {
            DYN_BASE + (random_u64() % ASLR_PAGES) * PAGE_SIZE - elf.span()?.0
        } else {
            0
        };
        let interp = elf.interpreter(&fd)?;
        let image = map_elf(mm, &fd, opener.cached_pages(&fd), &elf, bias, &path)?;
        let Some(interp) = interp else {
            return Ok(Loaded {
                start: image.entry,
                image,
                interp_base: 0,
                stack_top,
                argv,
            });
        };
        // The interpreter goes where anonymous mappings go, top-down.
        let (ifd, ist) = opener
            .open_exec(&interp)
            .map_err(|e| fail(e, "opening the ELF interpreter"))?;
        if ist.mode & libc::S_IFMT != libc::S_IFREG {
            return Err(fail(Errno::EACCES, "ELF interpreter is not a regular file"));
        }
        let mut ihead = vec![0u8; 64];
        let n = ifd
            .pread(&mut ihead, 0)
            .map_err(|e| fail(e, "reading the ELF interpreter"))?;
        ihead.truncate(n);
        let ielf = read_elf(&ifd, &ihead).map_err(|f| fail(Errno::ELIBBAD, f.why))?;
        let (low, span) = ielf.span()?;
        let base = mm
            .find_free(span)
            .map_err(|e| fail(e, "placing the ELF interpreter"))?;
        let ibias = base - low;
        let iimage = map_elf(mm, &ifd, opener.cached_pages(&ifd), &ielf, ibias, &interp)?;
        return Ok(Loaded {
            start: iimage.entry,
            image,
            interp_base: base,
            stack_top,
            argv,
        });
    }
}

/// A segment's protection from its `p_flags` (PF_X 1, PF_W 2, PF_R 4).
fn segment_access(flags: u32) -> AccessType {
    AccessType {
        read: flags & 4 != 0,
        write: flags & 2 != 0,
        execute: flags & 1 != 0,
    }
}

/// What the initial stack carries besides argv and envp.
pub struct StackInfo<'a> {
    pub loaded: &'a Loaded,
    /// Where the vDSO's ELF header is (AT_SYSINFO_EHDR).
    pub vdso: u64,
    pub execfn: &'a str,
    pub uid: u32,
    pub gid: u32,
}

/// Map the vDSO parameter page (`[vvar]`, shared, read-only) and directly
/// above it a copy of the vDSO (`[vdso]`), where anonymous mappings go (as
/// Linux 6.x places them: below the interpreter, randomised with
/// `mmap_top`). Returns the vDSO's address for AT_SYSINFO_EHDR.
pub fn map_vdso(mm: &mut MemoryManager, params: &Arc<SharedRange>) -> Result<u64, LoadFailure> {
    let page = vdso::PARAMS_PAGE_SIZE;
    let text_len = page_up(vdso::IMAGE.len() as u64).expect("the image is small");
    let no_room = |e| fail(e, "placing the vDSO");
    let base = mm.find_free(page + text_len).map_err(no_room)?;
    mm.map_shared_region(
        base,
        page,
        true,
        (AccessType::READ, crate::mm::MayWrite::No),
        (params.clone(), 0),
        VmaKind::Vvar,
    )
    .map_err(no_room)?;
    let text = base + page;
    let read_exec = AccessType {
        read: true,
        write: false,
        execute: true,
    };
    mm.map_anonymous(text, text_len, true, read_exec, VmaKind::Vdso)
        .map_err(no_room)?;
    mm.copy_out_force(text, vdso::IMAGE)
        .map_err(|e| fail(e, "copying the vDSO"))?;
    Ok(text)
}

/// Reserve the stack below a randomised gap under the top of user memory,
/// and start anonymous mappings a further gap below it, like Linux.
fn reserve_stack(mm: &mut MemoryManager) -> Result<u64, Errno> {
    let top = page_down(mm.max_addr() - PAGE_SIZE * 16 - (random_u64() % (1 << 16)) * PAGE_SIZE);
    // Up to 8 MiB is reserved now; a larger RLIMIT_STACK lets the stack
    // grow down further on demand. Linux keeps the mmap area at least
    // RLIMIT_STACK (clamped to 128 MiB .. 5/6 of the space) below it;
    // we keep at least 1 GiB.
    let limit = mm.limits.stack.max(128 << 10);
    let size = STACK_SIZE.min(page_down(limit));
    let bottom = top - size;
    mm.map_anonymous(bottom, size, true, AccessType::READ_WRITE, VmaKind::Stack)?;
    mm.set_growsdown(bottom);
    let gap = limit.clamp(1 << 30, mm.max_addr() / 6 * 5);
    mm.mmap_top = page_down(bottom - (random_u64() % (1 << 20)) * PAGE_SIZE - gap);
    Ok(top)
}

/// Lay out argc, argv, envp and auxv on the stack `load` reserved, as
/// Linux's `create_elf_tables` does; returns the initial stack pointer.
pub fn build_stack(
    mm: &mut MemoryManager,
    envv: &[String],
    info: &StackInfo<'_>,
) -> Result<u64, Errno> {
    let argv = &info.loaded.argv;
    let image = info.loaded.image;
    let top = info.loaded.stack_top;
    let mut sp = top;
    let mut push_bytes = |mm: &mut MemoryManager, bytes: &[u8]| -> Result<u64, Errno> {
        sp -= bytes.len() as u64;
        mm.copy_out(sp, bytes)?;
        Ok(sp)
    };
    let cstr = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    };
    push_bytes(mm, &[0u8; 8])?; // end marker
    let execfn = push_bytes(mm, &cstr(info.execfn))?;
    let mut envp = Vec::with_capacity(envv.len());
    for e in envv.iter().rev() {
        envp.push(push_bytes(mm, &cstr(e))?);
    }
    envp.reverse();
    let mut argp = Vec::with_capacity(argv.len());
    for a in argv.iter().rev() {
        argp.push(push_bytes(mm, &cstr(a))?);
    }
    argp.reverse();
    if let (Some(&first), Some(last)) = (argp.first(), argv.last()) {
        mm.args = (first, argp[argp.len() - 1] + last.len() as u64 + 1);
    }
    if let (Some(&first), Some(last)) = (envp.first(), envv.last()) {
        mm.env = (first, envp[envp.len() - 1] + last.len() as u64 + 1);
    }
    let platform = push_bytes(mm, b"x86_64\0")?;
    let mut random = [0u8; 16];
    host::getrandom(&mut random)?;
    let random = push_bytes(mm, &random)?;

    let auxv: Vec<(u32, u64)> = vec![
        (AT_SYSINFO_EHDR, info.vdso),
        (AT_MINSIGSTKSZ, host_auxv(AT_MINSIGSTKSZ)),
        (AT_HWCAP, host_auxv(AT_HWCAP)),
        (AT_PAGESZ, PAGE_SIZE),
        (AT_CLKTCK, 100),
        (AT_PHDR, image.phdr),
        (AT_PHENT, PHDR_SIZE as u64),
        (AT_PHNUM, image.phnum),
        (AT_BASE, info.loaded.interp_base),
        (AT_FLAGS, 0),
        (AT_ENTRY, image.entry),
        (AT_UID, u64::from(info.uid)),
        (AT_EUID, u64::from(info.uid)),
        (AT_GID, u64::from(info.gid)),
        (AT_EGID, u64::from(info.gid)),
        (AT_SECURE, 0),
        (AT_RANDOM, random),
        (AT_HWCAP2, host_auxv(AT_HWCAP2)),
        (AT_EXECFN, execfn),
        (AT_PLATFORM, platform),
        (AT_NULL, 0),
    ];

    let words = 1 + argp.len() + 1 + envp.len() + 1 + 2 * auxv.len();
    sp = (sp - 8 * words as u64) & !15;
    let mut block = Vec::with_capacity(words * 8);
    block.extend_from_slice(&(argp.len() as u64).to_le_bytes());
    for p in argp.iter().chain([&0]).chain(envp.iter()).chain([&0]) {
        block.extend_from_slice(&p.to_le_bytes());
    }
    for (k, v) in auxv {
        block.extend_from_slice(&u64::from(k).to_le_bytes());
        block.extend_from_slice(&v.to_le_bytes());
    }
    mm.copy_out(sp, &block)?;
    Ok(sp)
}

/// A value of the Sentry's own auxiliary vector that describes the CPU the
/// application runs on directly (hardware capabilities, signal stack size).
fn host_auxv(key: u32) -> u64 {
    // SAFETY: getauxval reads the process's auxiliary vector; any key is
    // allowed and unknown ones return 0.
    unsafe { libc::getauxval(libc::c_ulong::from(key)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(ELF_MAGIC);
        h[4] = 2; // ELFCLASS64
        h[5] = 1; // ELFDATA2LSB
        h[6] = 1; // EV_CURRENT
        h[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        h[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        h[24..32].copy_from_slice(&0x401000u64.to_le_bytes());
        h[32..40].copy_from_slice(&64u64.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[56..58].copy_from_slice(&2u16.to_le_bytes());
        h
    }

    #[test]
    fn accepts_an_x86_64_executable() {
        let h = parse_header(&header()).unwrap();
        assert_eq!((h.entry, h.phoff, h.phnum), (0x401000, 64, 2));
    }

    #[test]
    fn rejects_what_linux_rejects_with_enoexec() {
        type Mutation = fn(&mut Vec<u8>);
        let cases: [(&str, Mutation); 7] = [
            ("short", |h| h.truncate(40)),
            ("magic", |h| h[1] = b'X'),
            ("type", |h| h[16] = 1),
            ("machine", |h| h[18] = 0xb7),
            ("phentsize", |h| h[54] = 32),
            ("phnum zero", |h| h[56..58].copy_from_slice(&[0, 0])),
            ("phnum huge", |h| h[56..58].copy_from_slice(&[0xff, 0xff])),
        ];
        for (what, mutate) in cases {
            let mut h = header();
            mutate(&mut h);
            assert_eq!(
                parse_header(&h).unwrap_err().errno,
                Errno::ENOEXEC,
                "{what}"
            );
        }
    }

    #[test]
    fn ident_bytes_after_the_magic_are_ignored_as_by_linux() {
        let mut h = header();
        h[4] = 1;
        h[5] = 2;
        h[6] = 0;
        assert!(parse_header(&h).is_ok());
    }

    #[test]
    fn segment_flags_become_protections() {
        // PF_X = 1, PF_W = 2, PF_R = 4; PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4.
        let prot = |flags: u32| segment_access(flags).to_prot();
        assert_eq!(prot(4), 1);
        assert_eq!(prot(5), 5);
        assert_eq!(prot(6), 3);
        assert_eq!(prot(7), 7);
    }
}
