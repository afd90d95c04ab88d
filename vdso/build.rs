//! Compiles the vDSO (src/vdso.c, laid out by src/vdso.lds) with the
//! system C compiler into `$OUT_DIR/vdso.so`, which lib.rs embeds.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let so = out.join("vdso.so");
    for input in ["src/vdso.c", "src/vdso.lds"] {
        println!("cargo:rerun-if-changed={input}");
    }
    println!("cargo:rerun-if-env-changed=CC");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&cc)
        .args([
            "-shared",
            "-nostdlib",
            "-ffreestanding",
            "-fPIC",
            "-O2",
            "-fno-stack-protector",
            // No .eh_frame: nothing needs to unwind through these leaf
            // functions (glibc and Go call them directly).
            "-fno-asynchronous-unwind-tables",
            "-fno-unwind-tables",
            "-fcf-protection=none",
            "-fno-builtin",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wl,-soname=linux-vdso.so.1",
            // DT_HASH for Go and older loaders, DT_GNU_HASH for glibc.
            "-Wl,--hash-style=both",
            "-Wl,-Bsymbolic",
            "-Wl,--no-undefined",
            "-Wl,--build-id=none",
            "-Wl,-z,max-page-size=4096",
            "-Wl,-z,noexecstack",
            "-Wl,--strip-all",
            "-Wl,-T,src/vdso.lds",
            "-o",
        ])
        .arg(&so)
        .arg("src/vdso.c")
        .status()
        .unwrap_or_else(|e| panic!("running the C compiler {cc:?} for the vDSO: {e}"));
    assert!(status.success(), "compiling the vDSO failed: {status}");
}
