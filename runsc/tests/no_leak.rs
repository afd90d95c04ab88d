//! Nothing a sandboxed program writes reaches the host: `runsc do` gives
//! it the host root as the read-only lower layer of an overlay whose upper
//! layer is memory. The program creates, deletes, renames, chmods and
//! rewrites host files (including `/etc/passwd`) and sees its changes; the
//! host's files are byte-for-byte and attribute-for-attribute unchanged.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const RUNSC: &str = env!("CARGO_BIN_EXE_runsc");

/// Everything observable about a path on the host.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    exists: bool,
    mode: u32,
    uid: u32,
    size: u64,
    mtime: (i64, i64),
    ino: u64,
    content: Vec<u8>,
    entries: Vec<String>,
}

fn snapshot(p: &Path) -> Snapshot {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return Snapshot {
            exists: false,
            mode: 0,
            uid: 0,
            size: 0,
            mtime: (0, 0),
            ino: 0,
            content: vec![],
            entries: vec![],
        };
    };
    let mut entries: Vec<String> = if meta.is_dir() {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    } else {
        vec![]
    };
    entries.sort();
    Snapshot {
        exists: true,
        mode: meta.mode(),
        uid: meta.uid(),
        size: meta.size(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ino: meta.ino(),
        content: if meta.is_file() {
            std::fs::read(p).unwrap()
        } else {
            vec![]
        },
        entries,
    }
}

/// With directfs, and with the root served over lisafs. One after the
/// other: each changes /tmp (its scratch directory), which the other
/// watches.
#[test]
fn writes_stay_in_the_sandbox() {
    writes_stay_in(&[], "directfs");
    writes_stay_in(&["--directfs=false"], "lisafs");
}

fn writes_stay_in(flags: &[&str], tag: &str) {
    let dir = std::env::temp_dir().join(format!("no-leak-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("keep.txt"), "original\n").unwrap();
    std::fs::write(dir.join("sub/delete-me"), "x").unwrap();
    std::fs::write(dir.join("rename-me"), "r").unwrap();

    let watched: Vec<PathBuf> = [
        "keep.txt",
        "sub",
        "sub/delete-me",
        "rename-me",
        "renamed",
        "new-file",
        "new-dir",
        "",
    ]
    .iter()
    .map(|p| dir.join(p))
    .chain(
        [
            "/etc/passwd",
            "/etc/hostname",
            "/etc",
            "/usr/bin/env",
            "/tmp",
        ]
        .iter()
        .map(PathBuf::from),
    )
    .collect();
    let before: BTreeMap<&PathBuf, Snapshot> = watched.iter().map(|p| (p, snapshot(p))).collect();

    let d = dir.to_str().unwrap();
    let script = format!(
        "set -e
        echo changed >> {d}/keep.txt
        chmod 600 {d}/keep.txt
        rm {d}/sub/delete-me
        mv {d}/rename-me {d}/renamed
        echo new > {d}/new-file
        mkdir {d}/new-dir
        echo 'intruder:x:0:0::/:/bin/sh' >> /etc/passwd
        chmod 777 /etc/hostname
        truncate -s 0 /usr/bin/env
        touch -d @0 /etc/passwd
        echo in-tmp > /tmp/no-leak-probe-{tag}-{pid}
        # The sandbox sees every change.
        tail -n 1 /etc/passwd
        cat {d}/keep.txt
        ls {d} {d}/sub
        stat -c %a /etc/hostname {d}/keep.txt
        stat -c %s /usr/bin/env",
        pid = std::process::id()
    );
    let out = Command::new(RUNSC)
        .args(flags)
        .args(["do", "/bin/sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the script failed: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        format!(
            "intruder:x:0:0::/:/bin/sh\noriginal\nchanged\n{d}:\nkeep.txt\nnew-dir\nnew-file\nrenamed\nsub\n\n{d}/sub:\n777\n600\n0\n"
        )
    );

    for p in &watched {
        assert_eq!(&snapshot(p), &before[p], "{p:?} changed on the host");
    }
    let probe = PathBuf::from(format!("/tmp/no-leak-probe-{tag}-{}", std::process::id()));
    assert!(!probe.exists(), "{probe:?} reached the host");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The user.* extended attributes of host files reach the sandbox (over
/// directfs and over lisafs); setting and removing them inside changes
/// only the sandbox's copy of the file.
#[test]
fn host_xattrs_are_seen_and_writes_stay_in_the_sandbox() {
    for (flags, tag) in [(&[][..], "directfs"), (&["--directfs=false"][..], "lisafs")] {
        // Not under /tmp, which the other test watches.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("xattr-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, "x").unwrap();
        set_xattr(&file, "user.origin", b"host");
        set_xattr(&dir, "user.dir", b"d");
        let before = (list_xattrs(&file), list_xattrs(&dir), snapshot(&file));

        let (f, d) = (file.to_str().unwrap(), dir.to_str().unwrap());
        let script = format!(
            "import os, errno
print(os.getxattr('{f}', 'user.origin'), os.listxattr('{f}'), os.listxattr('{d}'))
try:
    os.getxattr('{f}', 'user.none')
except OSError as e:
    print(errno.errorcode[e.errno])
os.setxattr('{f}', 'user.new', b'sandbox')
os.removexattr('{f}', 'user.origin')
os.setxattr('{d}', 'user.dir', b'changed')
print(sorted(os.listxattr('{f}')), os.getxattr('{d}', 'user.dir'))"
        );
        let out = Command::new(RUNSC)
            .args(["--network=none"])
            .args(flags)
            .args(["do", "python3", "-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tag}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "b'host' ['user.origin'] ['user.dir']\nENODATA\n['user.new'] b'changed'\n",
            "{tag}"
        );
        let after = (list_xattrs(&file), list_xattrs(&dir), snapshot(&file));
        assert_eq!(after, before, "{tag}: the host file's attributes changed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let path = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated and `value` is readable for
    // its length.
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr {p:?}: {}", std::io::Error::last_os_error());
}

fn list_xattrs(p: &Path) -> Vec<u8> {
    let path = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: `path` is NUL-terminated and `buf` writable for its length.
    let n = unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        n >= 0,
        "listxattr {p:?}: {}",
        std::io::Error::last_os_error()
    );
    buf.truncate(n as usize);
    buf
}
