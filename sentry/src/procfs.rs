//! procfs and the sysfs basics: files generated from the kernel's state
//! each time they are opened.
//!
//! Nodes are small and made afresh on each lookup; the VFS caches them by
//! name and asks [`Inode::valid`] before reusing one, so `/proc/[pid]`
//! disappears when the process does and `fd/N` when the descriptor closes.
//! `/proc/self` is "the calling task": each task runs on its own host
//! thread, which records who it is in a thread-local at start.

use std::any::Any;
use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::{Arc, Weak};
use std::time::Instant;

use abi::{Errno, Stat};
use vfs::inode::{dirent_type, DirEntry, FileOps, Inode, StatFs, TimeSpec};
use vfs::{Location, S_IFDIR, S_IFLNK, S_IFREG};

use crate::process::{TaskView, ThreadGroup};
use crate::task::Kernel;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;

thread_local! {
    static CURRENT: Cell<(i32, i32)> = const { Cell::new((0, 0)) };
}

/// Record that the calling host thread runs task `tid` of process `tgid`.
pub(crate) fn set_current(tgid: i32, tid: i32) {
    CURRENT.with(|c| c.set((tgid, tid)));
}

/// The calling task's (process ID, thread ID); zeros outside tasks.
pub(crate) fn current_ids() -> (i32, i32) {
    CURRENT.with(Cell::get)
}

/// The calling task's process ID (0 outside tasks).
pub(crate) fn current_tgid() -> i32 {
    CURRENT.with(Cell::get).0
}

fn current() -> Result<(i32, i32), Errno> {
    let c = CURRENT.with(Cell::get);
    if c.0 == 0 {
        Err(Errno::ENOENT)
    } else {
        Ok(c)
    }
}

type Gen = Arc<dyn Fn() -> Result<Vec<u8>, Errno> + Send + Sync>;
type Text = Arc<dyn Fn() -> Result<String, Errno> + Send + Sync>;
type Jump = Arc<dyn Fn() -> Result<Location, Errno> + Send + Sync>;
/// A directory's entries: name and node.
type Children = Vec<(String, Arc<dyn Inode>)>;
type List = Arc<dyn Fn() -> Result<Children, Errno> + Send + Sync>;
type Alive = Arc<dyn Fn() -> bool + Send + Sync>;

/// What every node shares: identity, the filesystem it belongs to, and
/// whether what it describes still exists.
#[derive(Clone)]
struct Common {
    ino: u64,
    magic: i64,
    dev: u64,
    alive: Option<Alive>,
    boot: TimeSpec,
}

impl Common {
    fn child(&self, key: &str) -> Common {
        Common {
            ino: ino_of(self.ino, key),
            ..self.clone()
        }
    }

    fn with_alive(mut self, alive: Alive) -> Common {
        self.alive = Some(alive);
        self
    }

    fn stat(&self, mode: u32, nlink: u64) -> Stat {
        Stat {
            dev: self.dev,
            ino: self.ino,
            nlink,
            mode,
            blksize: 4096,
            atime_sec: self.boot.sec,
            mtime_sec: self.boot.sec,
            ctime_sec: self.boot.sec,
            ..Stat::default()
        }
    }

    fn statfs(&self) -> StatFs {
        StatFs {
            fs_type: self.magic,
            bsize: 4096,
            namelen: 255,
            frsize: 4096,
            ..StatFs::default()
        }
    }

    fn valid(&self) -> bool {
        self.alive.as_ref().is_none_or(|a| a())
    }
}

/// A stable inode number for the child `key` of `parent` (FNV-1a).
fn ino_of(parent: u64, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ parent;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h | 1
}

struct GenFile {
    c: Common,
    mode: u32,
    gen: Gen,
}

impl Inode for GenFile {
    fn stat(&self) -> Result<Stat, Errno> {
        Ok(self.c.stat(S_IFREG | self.mode, 1))
    }
    fn statfs(&self) -> Result<StatFs, Errno> {
        Ok(self.c.statfs())
    }
    fn open(&self, flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        let data = if flags & libc::O_ACCMODE == libc::O_WRONLY {
            Vec::new()
        } else {
            (self.gen)()?
        };
        Ok(Arc::new(Snapshot {
            data,
            writable: self.mode & 0o200 != 0,
        }))
    }
    fn valid(&self) -> bool {
        self.c.valid()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A generated file's contents as of its opening. Writes to the few
/// writable files (`oom_score_adj`) are accepted and have no effect.
struct Snapshot {
    data: Vec<u8>,
    writable: bool,
}

impl FileOps for Snapshot {
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
        let start = (offset as usize).min(self.data.len());
        let n = buf.len().min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        Ok(n)
    }
    fn write(&self, buf: &[u8], _offset: u64) -> Result<usize, Errno> {
        if self.writable {
            Ok(buf.len())
        } else {
            Err(Errno::EIO)
        }
    }
}

struct Link {
    c: Common,
    target: Text,
    jump: Option<Jump>,
}

impl Inode for Link {
    fn stat(&self) -> Result<Stat, Errno> {
        let mut st = self.c.stat(S_IFLNK | 0o777, 1);
        st.size = (self.target)().map_or(0, |t| t.len() as i64);
        Ok(st)
    }
    fn statfs(&self) -> Result<StatFs, Errno> {
        Ok(self.c.statfs())
    }
    fn readlink(&self) -> Result<String, Errno> {
        (self.target)()
    }
    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Err(Errno::ELOOP)
    }
    fn valid(&self) -> bool {
        self.c.valid()
    }
    fn jump(&self) -> Option<Result<Location, Errno>> {
        self.jump.as_ref().map(|j| j())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Dir {
    c: Common,
    mode: u32,
    list: List,
}

impl Inode for Dir {
    fn stat(&self) -> Result<Stat, Errno> {
        Ok(self.c.stat(S_IFDIR | self.mode, 2))
    }
    fn statfs(&self) -> Result<StatFs, Errno> {
        Ok(self.c.statfs())
    }
    fn lookup(&self, name: &str) -> Result<Arc<dyn Inode>, Errno> {
        (self.list)()?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, i)| i)
            .ok_or(Errno::ENOENT)
    }
    fn read_dir(&self) -> Result<Vec<DirEntry>, Errno> {
        (self.list)()?
            .into_iter()
            .map(|(name, i)| {
                let st = i.stat()?;
                Ok(DirEntry {
                    ino: st.ino,
                    kind: dirent_type(st.mode),
                    name,
                })
            })
            .collect()
    }
    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Ok(Arc::new(DirData))
    }
    fn valid(&self) -> bool {
        self.c.valid()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct DirData;

impl FileOps for DirData {
    fn read(&self, _buf: &mut [u8], _offset: u64) -> Result<usize, Errno> {
        Err(Errno::EISDIR)
    }
}

/// Builders for a directory's entries.
struct Entries {
    c: Common,
    out: Children,
}

impl Entries {
    fn new(c: &Common) -> Entries {
        Entries {
            c: c.clone(),
            out: Vec::new(),
        }
    }

    fn file(
        &mut self,
        name: &str,
        mode: u32,
        gen: impl Fn() -> Result<Vec<u8>, Errno> + Send + Sync + 'static,
    ) {
        let node = GenFile {
            c: self.c.child(name),
            mode,
            gen: Arc::new(gen),
        };
        self.out.push((name.to_string(), Arc::new(node)));
    }

    fn text(
        &mut self,
        name: &str,
        text: impl Fn() -> Result<String, Errno> + Send + Sync + 'static,
    ) {
        self.file(name, 0o444, move || text().map(String::into_bytes));
    }

    fn fixed(&mut self, name: &str, text: &str) {
        let text = text.to_string();
        self.text(name, move || Ok(text.clone()));
    }

    fn link(&mut self, name: &str, target: Text, jump: Option<Jump>) {
        let node = Link {
            c: self.c.child(name),
            target,
            jump,
        };
        self.out.push((name.to_string(), Arc::new(node)));
    }

    fn dir(
        &mut self,
        name: &str,
        mode: u32,
        list: impl Fn(&Common) -> Result<Children, Errno> + Send + Sync + 'static,
    ) {
        let c = self.c.child(name);
        let inner = c.clone();
        let node = Dir {
            c,
            mode,
            list: Arc::new(move || list(&inner)),
        };
        self.out.push((name.to_string(), Arc::new(node)));
    }

    fn done(self) -> Children {
        self.out
    }
}

/// The root of a procfs instance.
pub(crate) fn new_procfs(kernel: Weak<Kernel>, dev: u64) -> Arc<dyn Inode> {
    let c = Common {
        ino: 1,
        magic: PROC_SUPER_MAGIC,
        dev,
        alive: None,
        boot: TimeSpec::now(),
    };
    let boot = Instant::now();
    let inner = c.clone();
    Arc::new(Dir {
        c,
        mode: 0o555,
        list: Arc::new(move || proc_root(&kernel, &inner, boot)),
    })
}

fn kernel_of(k: &Weak<Kernel>) -> Result<Arc<Kernel>, Errno> {
    k.upgrade().ok_or(Errno::ENOENT)
}

fn proc_root(k: &Weak<Kernel>, c: &Common, boot: Instant) -> Result<Children, Errno> {
    let kernel = kernel_of(k)?;
    let mut e = Entries::new(c);
    e.link(
        "self",
        Arc::new(|| current().map(|(tgid, _)| tgid.to_string())),
        None,
    );
    e.link(
        "thread-self",
        Arc::new(|| current().map(|(tgid, tid)| format!("{tgid}/task/{tid}"))),
        None,
    );
    e.link("mounts", Arc::new(|| Ok("self/mounts".into())), None);
    let mut groups = kernel.all_groups();
    groups.sort_by_key(|g| g.tgid);
    for g in groups {
        let pid = g.tgid;
        let kw = k.clone();
        let alive_k = k.clone();
        let dc = c.child(&pid.to_string()).with_alive(Arc::new(move || {
            alive_k
                .upgrade()
                .and_then(|k| k.find_group(pid))
                .is_some_and(|g| !g.lock().zombie)
        }));
        let inner = dc.clone();
        let node = Dir {
            c: dc,
            mode: 0o555,
            list: Arc::new(move || pid_dir(&kw, &inner, pid, None)),
        };
        e.out.push((pid.to_string(), Arc::new(node)));
    }
    e.text("cpuinfo", cpuinfo);
    e.text("meminfo", meminfo);
    let kw = k.clone();
    e.text("stat", move || proc_stat(&kw, boot));
    e.text("uptime", move || {
        let up = boot.elapsed().as_secs_f64();
        Ok(format!("{up:.2} {:.2}\n", up * cpus() as f64))
    });
    let kw = k.clone();
    e.text("loadavg", move || {
        let k = kernel_of(&kw)?;
        let groups = k.all_groups();
        let threads: usize = groups.iter().map(|g| g.lock().threads.len()).sum();
        let last = groups.iter().map(|g| g.tgid).max().unwrap_or(0);
        Ok(format!("0.00 0.00 0.00 1/{threads} {last}\n"))
    });
    e.text("version", || {
        use crate::syscalls::process::{RELEASE, SYSNAME, VERSION};
        Ok(format!(
            "{SYSNAME} version {RELEASE} (root@gvisor) (gcc) {VERSION}\n"
        ))
    });
    e.fixed(
        "filesystems",
        "nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\nnodev\toverlay\nnodev\tdevtmpfs\n",
    );
    e.fixed("cmdline", "BOOT_IMAGE=/vmlinuz-4.4.0 quiet\n");
    let kw = k.clone();
    e.dir("sys", 0o555, move |c| proc_sys(&kw, c));
    if kernel.netstack.is_some() {
        let kw = k.clone();
        e.dir("net", 0o555, move |c| proc_net(&kw, c));
    }
    Ok(e.done())
}

/// `/proc/net` for the sandbox's netstack (`crate::procnet`).
fn proc_net(k: &Weak<Kernel>, c: &Common) -> Result<Children, Errno> {
    fn stack(k: &Weak<Kernel>) -> Result<Arc<netstack::Stack>, Errno> {
        kernel_of(k)?.netstack.clone().ok_or(Errno::ENOENT)
    }
    let mut e = Entries::new(c);
    let kw = k.clone();
    e.text("dev", move || {
        Ok(crate::procnet::dev(&stack(&kw)?.interfaces()))
    });
    let kw = k.clone();
    e.text("if_inet6", move || {
        Ok(crate::procnet::if_inet6(&stack(&kw)?.interfaces()))
    });
    for (name, tcp, v6) in [
        ("tcp", true, false),
        ("tcp6", true, true),
        ("udp", false, false),
        ("udp6", false, true),
    ] {
        let kw = k.clone();
        e.text(name, move || {
            Ok(crate::procnet::sockets(&stack(&kw)?.sockets(), tcp, v6))
        });
    }
    Ok(e.done())
}

fn proc_sys(k: &Weak<Kernel>, c: &Common) -> Result<Children, Errno> {
    let mut e = Entries::new(c);
    let kw = k.clone();
    e.dir("kernel", 0o555, move |c| {
        let mut e = Entries::new(c);
        // The reading task's UTS namespace.
        for (name, host) in [("hostname", true), ("domainname", false)] {
            let kw = kw.clone();
            e.file(name, 0o444, move || {
                let kernel = kernel_of(&kw)?;
                // A reader that is no task (none should be) sees the
                // initial namespace's names.
                let names = current()
                    .and_then(|(tgid, tid)| view_of(&kw, tgid, Some(tid)))
                    .map_or_else(|_| kernel.uts.names(), |(_, v, _)| v.uts.names());
                let mut out = if host {
                    names.hostname
                } else {
                    names.domainname
                };
                out.push(b'\n');
                Ok(out)
            });
        }
        e.fixed("ostype", "Linux\n");
        e.fixed(
            "osrelease",
            &format!("{}\n", crate::syscalls::process::RELEASE),
        );
        e.fixed(
            "version",
            &format!("{}\n", crate::syscalls::process::VERSION),
        );
        e.fixed("pid_max", "4194304\n");
        e.fixed("threads-max", "127408\n");
        e.fixed("ngroups_max", "65536\n");
        e.fixed("cap_last_cap", "40\n");
        e.fixed("shmmax", "18446744073692774399\n");
        e.fixed("shmall", "18446744073692774399\n");
        e.fixed("shmmni", "4096\n");
        e.fixed("yama", "");
        e.dir("random", 0o555, |c| {
            let mut e = Entries::new(c);
            e.text("uuid", || Ok(format!("{}\n", uuid())));
            let boot_id = uuid();
            e.fixed("boot_id", &format!("{boot_id}\n"));
            e.fixed("entropy_avail", "256\n");
            e.fixed("poolsize", "256\n");
            Ok(e.done())
        });
        Ok(e.done())
    });
    e.dir("vm", 0o555, |c| {
        let mut e = Entries::new(c);
        e.fixed("overcommit_memory", "0\n");
        e.fixed("max_map_count", "65530\n");
        e.fixed("mmap_min_addr", "65536\n");
        Ok(e.done())
    });
    e.dir("fs", 0o555, |c| {
        let mut e = Entries::new(c);
        e.fixed("file-max", "9223372036854775807\n");
        e.fixed("nr_open", "1048576\n");
        e.fixed("pipe-max-size", "1048576\n");
        Ok(e.done())
    });
    e.dir("net", 0o555, |c| {
        let mut e = Entries::new(c);
        e.dir("core", 0o555, |c| {
            let mut e = Entries::new(c);
            e.fixed("somaxconn", "4096\n");
            Ok(e.done())
        });
        Ok(e.done())
    });
    Ok(e.done())
}

/// A random version-4 UUID.
fn uuid() -> String {
    let mut b = [0u8; 16];
    let _ = crate::host::getrandom(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether the calling task may read `g`'s private files (environ), as
/// Linux's `mm_access` with PTRACE_MODE_READ_FSCREDS decides without an
/// LSM: its own process; or a caller whose effective ids equal all of
/// the target's real, effective and saved ids, or that holds
/// CAP_SYS_PTRACE; and a target that is dumpable unless the caller holds
/// CAP_SYS_PTRACE. EACCES otherwise, as the open fails on Linux.
fn may_read_private(
    k: &Weak<Kernel>,
    g: &Arc<ThreadGroup>,
    target: &TaskView,
) -> Result<(), Errno> {
    let (tgid, tid) = current_ids();
    if tgid == 0 || tgid == g.tgid {
        return Ok(());
    }
    let me = kernel_of(k)?
        .find_task(tid)
        .and_then(|(_, h)| h.view())
        .ok_or(Errno::EACCES)?;
    let (c, t) = (&me.creds, &target.creds);
    let privileged = c.has_cap(crate::syscalls::caps::CAP_SYS_PTRACE);
    let same_ids = [t.ruid, t.euid, t.suid].iter().all(|&u| u == c.euid)
        && [t.rgid, t.egid, t.sgid].iter().all(|&gid| gid == c.egid);
    if privileged || (same_ids && g.lock().dumpable) {
        Ok(())
    } else {
        Err(Errno::EACCES)
    }
}

/// The process `tgid` and the view of task `tid` (its leader, or any
/// live thread, when `tid` is None).
fn view_of(
    k: &Weak<Kernel>,
    tgid: i32,
    tid: Option<i32>,
) -> Result<(Arc<ThreadGroup>, TaskView, i32), Errno> {
    let kernel = kernel_of(k)?;
    let g = kernel.find_group(tgid).ok_or(Errno::ENOENT)?;
    let threads = g.lock().threads.clone();
    let handle = match tid {
        Some(t) => threads.iter().find(|h| h.tid == t).cloned(),
        None => threads
            .iter()
            .find(|h| h.tid == tgid)
            .or(threads.first())
            .cloned(),
    }
    .ok_or(Errno::ENOENT)?;
    let view = handle.view().ok_or(Errno::ENOENT)?;
    Ok((g, view, handle.tid))
}

fn pid_dir(k: &Weak<Kernel>, c: &Common, tgid: i32, tid: Option<i32>) -> Result<Children, Errno> {
    let mut e = Entries::new(c);
    let view = move |k: &Weak<Kernel>| view_of(k, tgid, tid);
    macro_rules! text {
        ($name:expr, $f:expr) => {{
            let kw = k.clone();
            let f = $f;
            e.text($name, move || {
                let (g, v, t) = view(&kw)?;
                f(&kw, &g, &v, t)
            });
        }};
    }
    let whole = tid.is_none();
    text!("stat", move |_k: &Weak<Kernel>,
                        g: &Arc<ThreadGroup>,
                        v: &TaskView,
                        t: i32| Ok(pid_stat(
        g, v, t, whole
    )));
    text!("status", |_k: &Weak<Kernel>,
                     g: &Arc<ThreadGroup>,
                     v: &TaskView,
                     t: i32| Ok(pid_status(
        g, v, t
    )));
    text!("statm", |_k: &Weak<Kernel>,
                    _g: &Arc<ThreadGroup>,
                    v: &TaskView,
                    _t: i32| {
        let mm = v.mm.lock().unwrap_or_else(|e| e.into_inner());
        let (size, resident) = (mm.mapped_bytes() / 4096, mm.resident_bytes() / 4096);
        Ok(format!("{size} {resident} 0 0 0 {size} 0\n"))
    });
    text!("comm", |_k: &Weak<Kernel>,
                   _g: &Arc<ThreadGroup>,
                   v: &TaskView,
                   _t: i32| {
        Ok(format!("{}\n", String::from_utf8_lossy(&v.comm)))
    });
    text!("maps", |_k: &Weak<Kernel>,
                   _g: &Arc<ThreadGroup>,
                   v: &TaskView,
                   _t: i32| {
        Ok(v.mm.lock().unwrap_or_else(|e| e.into_inner()).proc_maps())
    });
    text!("limits", |_k: &Weak<Kernel>,
                     g: &Arc<ThreadGroup>,
                     _v: &TaskView,
                     _t: i32| {
        Ok(limits(&g.limits.lock().unwrap_or_else(|e| e.into_inner())))
    });
    text!("mounts", |_k: &Weak<Kernel>,
                     _g: &Arc<ThreadGroup>,
                     v: &TaskView,
                     _t: i32| mounts(v, false));
    text!("mountinfo", |_k: &Weak<Kernel>,
                        _g: &Arc<ThreadGroup>,
                        v: &TaskView,
                        _t: i32| mounts(
        v, true
    ));
    text!("cgroup", |_k: &Weak<Kernel>,
                     _g: &Arc<ThreadGroup>,
                     _v: &TaskView,
                     _t: i32| Ok(
        "0::/\n".to_string()
    ));
    for (name, env) in [("cmdline", false), ("environ", true)] {
        let kw = k.clone();
        e.file(name, 0o444, move || {
            let (g, v, _) = view(&kw)?;
            if env {
                may_read_private(&kw, &g, &v)?;
            }
            let mm = v.mm.lock().unwrap_or_else(|e| e.into_inner());
            let (start, end) = if env { mm.env } else { mm.args };
            let mut buf = vec![0u8; end.saturating_sub(start).min(1 << 20) as usize];
            mm.copy_in(start, &mut buf).or(Ok::<(), Errno>(()))?;
            Ok(buf)
        });
    }
    e.file("oom_score_adj", 0o644, || Ok(b"0\n".to_vec()));
    e.file("oom_score", 0o444, || Ok(b"0\n".to_vec()));
    e.file("loginuid", 0o644, || Ok(b"4294967295".to_vec()));
    // Magic links.
    let kw = k.clone();
    let kj = k.clone();
    e.link(
        "cwd",
        Arc::new(move || {
            let (_, v, _) = view(&kw)?;
            let fs = v.fs.lock().unwrap_or_else(|e| e.into_inner()).clone();
            Ok(vfs::mount::path_of(&fs.cwd, &fs.root))
        }),
        Some(Arc::new(move || {
            let (_, v, _) = view(&kj)?;
            let cwd = v.fs.lock().unwrap_or_else(|e| e.into_inner()).cwd.clone();
            Ok(cwd)
        })),
    );
    let kj = k.clone();
    e.link(
        "root",
        Arc::new(|| Ok("/".to_string())),
        Some(Arc::new(move || {
            let (_, v, _) = view(&kj)?;
            let root = v.fs.lock().unwrap_or_else(|e| e.into_inner()).root.clone();
            Ok(root)
        })),
    );
    let kw = k.clone();
    let kj = k.clone();
    e.link(
        "exe",
        Arc::new(move || view(&kw).map(|(_, v, _)| v.exe)),
        Some(Arc::new(move || {
            let (_, v, _) = view(&kj)?;
            let fs = v.fs.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let creds = vfs::Creds::root();
            let ctx = vfs::walk::Context {
                mounts: &fs.mounts,
                root: &fs.root,
                creds: &creds,
            };
            ctx.lookup(&fs.root, &v.exe, true)
        })),
    );
    let kw = k.clone();
    e.dir("ns", 0o511, move |c| ns_dir(&kw, c, tgid, tid));
    let kw = k.clone();
    e.dir("fd", 0o500, move |c| fd_dir(&kw, c, tgid, tid, false));
    let kw = k.clone();
    e.dir("fdinfo", 0o500, move |c| fd_dir(&kw, c, tgid, tid, true));
    if tid.is_none() {
        let kw = k.clone();
        e.dir("task", 0o555, move |c| {
            let kernel = kernel_of(&kw)?;
            let g = kernel.find_group(tgid).ok_or(Errno::ENOENT)?;
            let tids: Vec<i32> = g.lock().threads.iter().map(|h| h.tid).collect();
            let mut e = Entries::new(c);
            for t in tids {
                let kw2 = kw.clone();
                e.dir(&t.to_string(), 0o555, move |c| {
                    pid_dir(&kw2, c, tgid, Some(t))
                });
            }
            Ok(e.done())
        });
    }
    Ok(e.done())
}

fn fd_dir(
    k: &Weak<Kernel>,
    c: &Common,
    tgid: i32,
    tid: Option<i32>,
    info: bool,
) -> Result<Children, Errno> {
    let (_, v, _) = view_of(k, tgid, tid)?;
    let numbers = v.fds.lock().unwrap_or_else(|e| e.into_inner()).numbers();
    let mut e = Entries::new(c);
    for n in numbers {
        let fds = Arc::downgrade(&v.fds);
        let alive: Alive = Arc::new(move || {
            fds.upgrade()
                .is_some_and(|t| t.lock().unwrap_or_else(|e| e.into_inner()).get(n).is_ok())
        });
        let file_of = {
            let fds = Arc::downgrade(&v.fds);
            move || -> Result<Arc<crate::fs::File>, Errno> {
                let t = fds.upgrade().ok_or(Errno::ENOENT)?;
                let f = t.lock().unwrap_or_else(|e| e.into_inner()).get(n);
                f.map_err(|_| Errno::ENOENT)
            }
        };
        let name = n.to_string();
        if info {
            let file_of = file_of.clone();
            let node = GenFile {
                c: c.child(&name).with_alive(alive),
                mode: 0o444,
                gen: Arc::new(move || {
                    let f = file_of()?;
                    let ino = f.stat().map_or(0, |s| s.ino);
                    let mnt = f.location().map_or(0, |l| l.mount.id());
                    Ok(format!(
                        "pos:\t{}\nflags:\t0{:o}\nmnt_id:\t{mnt}\nino:\t{ino}\n",
                        f.position(),
                        f.flags() | libc::O_LARGEFILE
                    )
                    .into_bytes())
                }),
            };
            e.out.push((name, Arc::new(node)));
            continue;
        }
        let root = v.fs.lock().unwrap_or_else(|e| e.into_inner()).root.clone();
        let target_of = file_of.clone();
        let kw = k.clone();
        let node = Link {
            c: c.child(&name).with_alive(alive),
            target: Arc::new(move || {
                let f = target_of()?;
                Ok(match f.location() {
                    Some(loc) => vfs::mount::path_of(loc, &root),
                    None => f.anon_name().to_string(),
                })
            }),
            jump: Some(Arc::new(move || {
                let f = file_of()?;
                if let Some(loc) = f.location() {
                    return Ok(loc.clone());
                }
                let kernel = kernel_of(&kw)?;
                Ok(kernel.mounts.detached(Arc::new(Reopen(f)), "anon_inodefs"))
            })),
        };
        e.out.push((name, Arc::new(node)));
    }
    Ok(e.done())
}

/// A namespace, as `/proc/[pid]/ns/*` names it.
#[derive(Clone)]
pub(crate) enum Ns {
    Mnt(Arc<vfs::Mounts>),
    Uts(Arc<crate::namespace::UtsNamespace>),
    Ipc(Arc<crate::namespace::IpcNamespace>),
    /// One of the sandbox's single namespaces: its kind and inode number.
    Fixed(&'static str, u32),
}

impl Ns {
    /// The kind, as the link's target names it.
    fn kind(&self) -> &'static str {
        match self {
            Ns::Mnt(_) => "mnt",
            Ns::Uts(_) => "uts",
            Ns::Ipc(_) => "ipc",
            Ns::Fixed(name, _) => name.trim_end_matches("_for_children"),
        }
    }

    fn ino(&self) -> u32 {
        match self {
            Ns::Mnt(m) => m.ino(),
            Ns::Uts(u) => u.ino(),
            Ns::Ipc(i) => i.ino(),
            Ns::Fixed(_, ino) => *ino,
        }
    }

    /// The CLONE_NEW* flag of its kind (setns's nstype).
    pub(crate) fn clone_flag(&self) -> u64 {
        match self.kind() {
            "mnt" => 0x2_0000,
            "uts" => 0x0400_0000,
            "ipc" => 0x0800_0000,
            "cgroup" => 0x0200_0000,
            "user" => 0x1000_0000,
            "pid" => 0x2000_0000,
            "net" => 0x4000_0000,
            _ => 0x80, // time
        }
    }
}

/// The file a `/proc/[pid]/ns/*` link leads to (nsfs): opening it gives a
/// descriptor setns(2) takes; it keeps the namespace alive.
pub(crate) struct NsFile {
    pub(crate) ns: Ns,
}

/// nsfs's device number.
fn nsfs_dev() -> u64 {
    static DEV: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *DEV.get_or_init(crate::fs::anon_dev)
}

impl Inode for NsFile {
    fn stat(&self) -> Result<Stat, Errno> {
        Ok(Stat {
            dev: nsfs_dev(),
            ino: u64::from(self.ns.ino()),
            nlink: 1,
            mode: S_IFREG | 0o444,
            blksize: 4096,
            ..Stat::default()
        })
    }
    fn statfs(&self) -> Result<StatFs, Errno> {
        const NSFS_MAGIC: i64 = 0x6e73_6673;
        Ok(StatFs {
            fs_type: NSFS_MAGIC,
            bsize: 4096,
            namelen: 255,
            frsize: 4096,
            ..StatFs::default()
        })
    }
    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Ok(Arc::new(NsData))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct NsData;

impl FileOps for NsData {
    fn read(&self, _buf: &mut [u8], _offset: u64) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }
}

/// `/proc/[pid]/ns`: a magic link per namespace, read as `kind:[ino]`
/// from the task's namespaces at the time of reading.
fn ns_dir(k: &Weak<Kernel>, c: &Common, tgid: i32, tid: Option<i32>) -> Result<Children, Errno> {
    let kernel = kernel_of(k)?;
    let mut names: Vec<&'static str> = vec!["ipc", "mnt", "uts"];
    names.extend(kernel.fixed_ns.0.iter().map(|(n, _)| *n));
    names.sort_unstable();
    let mut e = Entries::new(c);
    for name in names {
        let ns_of = {
            let k = k.clone();
            move || -> Result<Ns, Errno> {
                let (_, v, _) = view_of(&k, tgid, tid)?;
                Ok(match name {
                    "mnt" => Ns::Mnt(
                        v.fs.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .mounts
                            .clone(),
                    ),
                    "uts" => Ns::Uts(v.uts.clone()),
                    "ipc" => Ns::Ipc(v.ipc.clone()),
                    _ => {
                        let kernel = kernel_of(&k)?;
                        let ino = kernel
                            .fixed_ns
                            .0
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map_or(0, |(_, i)| *i);
                        Ns::Fixed(name, ino)
                    }
                })
            }
        };
        let target_of = ns_of.clone();
        let kw = k.clone();
        e.link(
            name,
            Arc::new(move || target_of().map(|ns| format!("{}:[{}]", ns.kind(), ns.ino()))),
            Some(Arc::new(move || {
                let ns = ns_of()?;
                let kernel = kernel_of(&kw)?;
                Ok(kernel.mounts.detached(Arc::new(NsFile { ns }), "nsfs"))
            })),
        );
    }
    Ok(e.done())
}

/// What a magic link to a file without a path leads to: opening it again
/// shares the same underlying object (a pipe end, a host descriptor).
struct Reopen(Arc<crate::fs::File>);

impl Inode for Reopen {
    fn stat(&self) -> Result<Stat, Errno> {
        self.0.stat()
    }
    fn statfs(&self) -> Result<StatFs, Errno> {
        Err(Errno::ENOSYS)
    }
    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Ok(self.0.ops().clone())
    }
    fn setattr(&self, attr: &vfs::SetAttr) -> Result<(), Errno> {
        // `> /dev/stdout` truncates: harmless on pipes and terminals.
        if attr.size == Some(0) {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn state_char(g: &ThreadGroup) -> char {
    if g.lock().zombie {
        'Z'
    } else if current().is_ok_and(|(tgid, _)| tgid == g.tgid) {
        'R'
    } else {
        'S'
    }
}

/// `/proc/[pid]/stat` (`whole`: the process's times) or
/// `/proc/[pid]/task/[tid]/stat` (the thread's).
fn pid_stat(g: &Arc<ThreadGroup>, v: &TaskView, tid: i32, whole: bool) -> String {
    let st = g.lock();
    let ppid = st.parent.upgrade().map_or(0, |p| p.tgid);
    let (pgid, sid, threads) = (st.pgid, st.sid, st.threads.len());
    let thread_times = st
        .threads
        .iter()
        .find(|t| t.tid == tid)
        .map(|t| t.cpu.times());
    let children = st.children_times;
    drop(st);
    let own = if whole {
        g.cpu_times()
    } else {
        thread_times.unwrap_or_default()
    };
    // Clock ticks of USER_HZ (100 a second).
    let ticks = |d: std::time::Duration| d.as_millis() / 10;
    let mm = v.mm.lock().unwrap_or_else(|e| e.into_inner());
    let (vsize, rss) = (mm.mapped_bytes(), mm.resident_bytes());
    let (args, env) = (mm.args, mm.env);
    drop(mm);
    let comm = String::from_utf8_lossy(&v.comm);
    let state = state_char(g);
    // Fields 1-52 of proc(5); faults are not accounted yet.
    format!(
        "{tid} ({comm}) {state} {ppid} {pgid} {sid} 0 -1 4194560 0 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 {threads} 0 0 {vsize} {rss} 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 {exit_signal} 0 0 0 0 0 0 0 0 {a0} {a1} {e0} {e1} 0\n",
        utime = ticks(own.user),
        stime = ticks(own.sys),
        cutime = ticks(children.user),
        cstime = ticks(children.sys),
        rss = rss / 4096,
        exit_signal = g.exit_signal,
        a0 = args.0,
        a1 = args.1,
        e0 = env.0,
        e1 = env.1,
    )
}

fn pid_status(g: &Arc<ThreadGroup>, v: &TaskView, tid: i32) -> String {
    let st = g.lock();
    let ppid = st.parent.upgrade().map_or(0, |p| p.tgid);
    let threads = st.threads.clone();
    let no_new_privs = st.no_new_privs;
    drop(st);
    let blocked = threads
        .iter()
        .find(|h| h.tid == tid)
        .map_or(0, |h| h.signals().mask);
    // Thread-directed signals pending on this thread, and process-directed
    // ones pending anywhere in the process (they wait on some thread).
    let (mut own_pending, mut shared_pending) = (0u64, 0u64);
    for h in &threads {
        for q in &h.signals().pending {
            if q.group {
                shared_pending |= crate::signal::bit(q.sig);
            } else if h.tid == tid {
                own_pending |= crate::signal::bit(q.sig);
            }
        }
    }
    let (mut ignored, mut caught) = (0u64, 0u64);
    {
        let handlers = g.handlers();
        for sig in 1..=64 {
            let a = handlers.get(sig);
            if a.handler == crate::signal::SIG_IGN {
                ignored |= 1 << (sig - 1);
            } else if a.handler != crate::signal::SIG_DFL {
                caught |= 1 << (sig - 1);
            }
        }
    }
    // VmPeak and VmHWM are not tracked over time: they show the current
    // size and resident set, which they are at least.
    let (vm_kb, rss_kb) = {
        let mm = v.mm.lock().unwrap_or_else(|e| e.into_inner());
        (mm.mapped_bytes() / 1024, mm.resident_bytes() / 1024)
    };
    let umask = v.fs.lock().unwrap_or_else(|e| e.into_inner()).umask;
    let c = &v.creds;
    let caps = c.caps;
    let groups: Vec<String> = c.groups.iter().map(u32::to_string).collect();
    let cpus = cpus();
    let mut s = String::new();
    let _ = write!(
        s,
        "Name:\t{name}\nUmask:\t{umask:04o}\nState:\t{state}\nTgid:\t{tgid}\nNgid:\t0\nPid:\t{tid}\nPPid:\t{ppid}\nTracerPid:\t0\n\
         Uid:\t{ru}\t{eu}\t{su}\t{eu}\nGid:\t{rg}\t{eg}\t{sg}\t{eg}\nFDSize:\t64\nGroups:\t{groups}\n\
         NStgid:\t{tgid}\nNSpid:\t{tid}\nNSpgid:\t{tgid}\nNSsid:\t{tgid}\n\
         VmPeak:\t{vm_kb:8} kB\nVmSize:\t{vm_kb:8} kB\nVmLck:\t       0 kB\nVmPin:\t       0 kB\nVmHWM:\t{rss_kb:8} kB\nVmRSS:\t{rss_kb:8} kB\n\
         Threads:\t{nthreads}\nSigQ:\t0/63704\nSigPnd:\t{own_pending:016x}\nShdPnd:\t{shared_pending:016x}\n\
         SigBlk:\t{blocked:016x}\nSigIgn:\t{ignored:016x}\nSigCgt:\t{caught:016x}\n\
         CapInh:\t{inh:016x}\nCapPrm:\t{prm:016x}\nCapEff:\t{eff:016x}\nCapBnd:\t{bnd:016x}\nCapAmb:\t0000000000000000\n\
         NoNewPrivs:\t{nnp}\nSeccomp:\t0\nSeccomp_filters:\t0\n\
         Cpus_allowed:\t{mask:x}\nCpus_allowed_list:\t0-{last}\nMems_allowed:\t1\nMems_allowed_list:\t0\n\
         voluntary_ctxt_switches:\t0\nnonvoluntary_ctxt_switches:\t0\n",
        name = String::from_utf8_lossy(&v.comm),
        state = match state_char(g) {
            'R' => "R (running)",
            'Z' => "Z (zombie)",
            _ => "S (sleeping)",
        },
        tgid = g.tgid,
        ru = c.ruid,
        eu = c.euid,
        su = c.suid,
        rg = c.rgid,
        eg = c.egid,
        sg = c.sgid,
        groups = groups.join(" "),
        nthreads = threads.len(),
        nnp = u8::from(no_new_privs),
        inh = caps.inheritable,
        prm = caps.permitted,
        eff = caps.effective,
        bnd = caps.bounding,
        mask = (1u128 << cpus) - 1,
        last = cpus - 1,
    );
    s
}

fn limits(l: &crate::limits::Limits) -> String {
    const NAMES: [(&str, &str); 16] = [
        ("Max cpu time", "seconds"),
        ("Max file size", "bytes"),
        ("Max data size", "bytes"),
        ("Max stack size", "bytes"),
        ("Max core file size", "bytes"),
        ("Max resident set", "bytes"),
        ("Max processes", "processes"),
        ("Max open files", "files"),
        ("Max locked memory", "bytes"),
        ("Max address space", "bytes"),
        ("Max file locks", "locks"),
        ("Max pending signals", "signals"),
        ("Max msgqueue size", "bytes"),
        ("Max nice priority", ""),
        ("Max realtime priority", ""),
        ("Max realtime timeout", "us"),
    ];
    let show = |v: u64| {
        if v == u64::MAX {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    let mut s = format!(
        "{:<25} {:<20} {:<20} {:<10}\n",
        "Limit", "Soft Limit", "Hard Limit", "Units"
    );
    for (i, (name, unit)) in NAMES.iter().enumerate() {
        let (soft, hard) = l.get(i as u64).unwrap_or((0, 0));
        let _ = writeln!(
            s,
            "{name:<25} {:<20} {:<20} {unit:<10}",
            show(soft),
            show(hard)
        );
    }
    s
}

/// `/proc/[pid]/mounts` and `mountinfo`: the mounts of the task's mount
/// namespace, paths as seen from its root (mountinfo's root field: the
/// mount's root within its filesystem). Every mount is private (no
/// propagation), so mountinfo has no optional fields.
fn mounts(v: &TaskView, info: bool) -> Result<String, Errno> {
    use crate::fs::FsContext;
    let fs = FsContext::clone(&v.fs.lock().unwrap_or_else(|e| e.into_inner()));
    let root = fs.root;
    let mut s = String::new();
    for m in fs.mounts.all() {
        let at = match m.mountpoint() {
            Some(at) => vfs::mount::path_of(&at, &root),
            None => "/".to_string(),
        };
        let f = m.flags();
        let mut opts = vec![if f & vfs::mount::MS_RDONLY != 0 {
            "ro"
        } else {
            "rw"
        }];
        for (bit, name) in [
            (vfs::mount::MS_NOSUID, "nosuid"),
            (vfs::mount::MS_NODEV, "nodev"),
            (vfs::mount::MS_NOEXEC, "noexec"),
        ] {
            if f & bit != 0 {
                opts.push(name);
            }
        }
        let opts = opts.join(",");
        if info {
            let parent = m.mountpoint().map_or(m.id(), |p| p.mount.id());
            let st = m.root().inode().stat().unwrap_or_default();
            let _ = writeln!(
                s,
                "{} {parent} {}:{} {} {at} {opts} - {} {} {}",
                m.id(),
                libc::major(st.dev),
                libc::minor(st.dev),
                vfs::mount::path_in_fs(m.root()),
                m.fs_type,
                m.source,
                if f & vfs::mount::MS_RDONLY != 0 {
                    "ro"
                } else {
                    "rw"
                },
            );
        } else {
            let _ = writeln!(s, "{} {at} {} {opts} 0 0", m.source, m.fs_type);
        }
    }
    Ok(s)
}

fn proc_stat(k: &Weak<Kernel>, boot: Instant) -> Result<String, Errno> {
    let kernel = kernel_of(k)?;
    let btime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .saturating_sub(boot.elapsed().as_secs());
    let mut s = String::from("cpu  0 0 0 0 0 0 0 0 0 0\n");
    for i in 0..cpus() {
        let _ = writeln!(s, "cpu{i} 0 0 0 0 0 0 0 0 0 0");
    }
    let groups = kernel.all_groups();
    let _ = write!(
        s,
        "intr 0\nctxt 0\nbtime {btime}\nprocesses {}\nprocs_running 1\nprocs_blocked 0\nsoftirq 0 0 0 0 0 0 0 0 0 0 0\n",
        groups.iter().map(|g| g.tgid).max().unwrap_or(0)
    );
    Ok(s)
}

fn meminfo() -> Result<String, Errno> {
    // SAFETY: an all-zero sysinfo is a valid value of the C struct.
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: sysinfo writes one struct into `si`.
    unsafe { libc::sysinfo(&mut si) };
    let unit = u64::from(si.mem_unit.max(1));
    let total = si.totalram as u64 * unit / 1024;
    let free = si.freeram as u64 * unit / 1024;
    let mut s = String::new();
    for (name, kb) in [
        ("MemTotal", total),
        ("MemFree", free),
        ("MemAvailable", free),
        ("Buffers", 0),
        ("Cached", 0),
        ("SwapCached", 0),
        ("Active", 0),
        ("Inactive", 0),
        ("SwapTotal", 0),
        ("SwapFree", 0),
        ("Dirty", 0),
        ("Writeback", 0),
        ("AnonPages", 0),
        ("Mapped", 0),
        ("Shmem", 0),
        ("CommitLimit", total),
        ("Committed_AS", 0),
        ("VmallocTotal", 34_359_738_367),
        ("HugePages_Total", 0),
        ("Hugepagesize", 2048),
    ] {
        if name.starts_with("HugePages_") {
            let _ = writeln!(s, "{:<16}{kb:>8}", format!("{name}:"));
        } else {
            let _ = writeln!(s, "{:<16}{kb:>8} kB", format!("{name}:"));
        }
    }
    Ok(s)
}

/// `/proc/cpuinfo` from CPUID: one block per CPU the sandbox may use.
fn cpuinfo() -> Result<String, Errno> {
    use std::arch::x86_64::__cpuid;
    let leaf0 = __cpuid(0);
    let vendor: Vec<u8> = [leaf0.ebx, leaf0.edx, leaf0.ecx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    let leaf1 = __cpuid(1);
    let family = ((leaf1.eax >> 8) & 0xf) + ((leaf1.eax >> 20) & 0xff);
    let model = ((leaf1.eax >> 4) & 0xf) | ((leaf1.eax >> 12) & 0xf0);
    let stepping = leaf1.eax & 0xf;
    let mut brand = Vec::new();
    for leaf in 0x8000_0002u32..=0x8000_0004 {
        let r = __cpuid(leaf);
        for w in [r.eax, r.ebx, r.ecx, r.edx] {
            brand.extend_from_slice(&w.to_le_bytes());
        }
    }
    let brand = String::from_utf8_lossy(&brand)
        .trim_matches(char::from(0))
        .trim()
        .to_string();
    const EDX1: [(u32, &str); 12] = [
        (0, "fpu"),
        (4, "tsc"),
        (5, "msr"),
        (8, "cx8"),
        (15, "cmov"),
        (19, "clflush"),
        (23, "mmx"),
        (24, "fxsr"),
        (25, "sse"),
        (26, "sse2"),
        (28, "ht"),
        (6, "pae"),
    ];
    const ECX1: [(u32, &str); 12] = [
        (0, "pni"),
        (1, "pclmulqdq"),
        (9, "ssse3"),
        (12, "fma"),
        (13, "cx16"),
        (19, "sse4_1"),
        (20, "sse4_2"),
        (22, "movbe"),
        (23, "popcnt"),
        (25, "aes"),
        (26, "xsave"),
        (28, "avx"),
    ];
    let leaf7 = __cpuid(7);
    const EBX7: [(u32, &str); 8] = [
        (0, "fsgsbase"),
        (3, "bmi1"),
        (5, "avx2"),
        (8, "bmi2"),
        (9, "erms"),
        (16, "avx512f"),
        (18, "rdseed"),
        (29, "sha_ni"),
    ];
    let mut flags: Vec<&str> = Vec::new();
    flags.extend(
        EDX1.iter()
            .filter(|(b, _)| leaf1.edx & (1 << b) != 0)
            .map(|(_, n)| *n),
    );
    flags.extend(
        ECX1.iter()
            .filter(|(b, _)| leaf1.ecx & (1 << b) != 0)
            .map(|(_, n)| *n),
    );
    if leaf0.eax >= 7 {
        flags.extend(
            EBX7.iter()
                .filter(|(b, _)| leaf7.ebx & (1 << b) != 0)
                .map(|(_, n)| *n),
        );
    }
    let flags = flags.join(" ");
    let n = cpus();
    let mut s = String::new();
    for i in 0..n {
        let _ = write!(
            s,
            "processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\nmodel name\t: {brand}\nstepping\t: {stepping}\n\
             cpu MHz\t\t: 2000.000\ncache size\t: 8192 KB\nphysical id\t: 0\nsiblings\t: {n}\ncore id\t\t: {i}\ncpu cores\t: {n}\n\
             fpu\t\t: yes\nfpu_exception\t: yes\ncpuid level\t: {level}\nwp\t\t: yes\nflags\t\t: {flags}\nbogomips\t: 4000.00\n\
             clflush size\t: 64\ncache_alignment\t: 64\naddress sizes\t: 46 bits physical, 48 bits virtual\npower management:\n\n",
            vendor = String::from_utf8_lossy(&vendor),
            level = leaf0.eax,
        );
    }
    Ok(s)
}

/// The root of the sysfs basics: `/sys/devices/system/cpu`.
pub(crate) fn new_sysfs(dev: u64) -> Arc<dyn Inode> {
    let c = Common {
        ino: 1,
        magic: SYSFS_MAGIC,
        dev,
        alive: None,
        boot: TimeSpec::now(),
    };
    let inner = c.clone();
    Arc::new(Dir {
        c,
        mode: 0o555,
        list: Arc::new(move || {
            let mut e = Entries::new(&inner);
            e.dir("devices", 0o555, |c| {
                let mut e = Entries::new(c);
                e.dir("system", 0o555, |c| {
                    let mut e = Entries::new(c);
                    e.dir("cpu", 0o555, |c| {
                        let mut e = Entries::new(c);
                        let range = format!("0-{}\n", cpus() - 1);
                        for name in ["online", "possible", "present"] {
                            e.fixed(name, &range);
                        }
                        e.fixed("kernel_max", "8191\n");
                        for i in 0..cpus() {
                            e.dir(&format!("cpu{i}"), 0o555, |c| {
                                let mut e = Entries::new(c);
                                e.fixed("online", "1\n");
                                Ok(e.done())
                            });
                        }
                        Ok(e.done())
                    });
                    Ok(e.done())
                });
                Ok(e.done())
            });
            for name in ["fs", "kernel", "class", "bus", "block", "module"] {
                e.dir(name, 0o555, |c| Ok(Entries::new(c).done()));
            }
            Ok(e.done())
        }),
    })
}
