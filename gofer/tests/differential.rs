//! Differential test: the same lisafs operation sequence against Debian's
//! Go gofer (the 2022 release, `runsc gofer`) and against our server, each
//! serving an identical fresh tree. The transcripts — walk statuses,
//! FDIDs, errnos, the stat fields that do not depend on the inode
//! allocator or the clock, file contents, directory listings, and the
//! resulting host tree — must be equal line for line.
//!
//! Left out on purpose: xattrs (the 2022 gofer answers EOPNOTSUPP to all of
//! them; ours serves `user.*`), the supported-MID list (ours adds
//! FListXattr, FRemoveXattr and RenameAt2), and Statx's mask and btime
//! (2022 used fstat; upstream and we use statx).

mod common;

use std::fs;

use common::script::*;
use common::*;
use gofer::Config;

#[test]
fn go_gofer_and_ours_agree() {
    let work = scratch_dir("differential");
    let (go_work, our_work) = (work.join("go"), work.join("ours"));
    let (go_root, our_root) = (go_work.join("root"), our_work.join("root"));
    populate(&go_root);
    populate(&our_root);

    let (gofer, go) = start_go(&go_work, &go_root);
    go.mount()
        .unwrap_or_else(|e| panic!("Go Mount: {e}; log:\n{}", gofer.log()));
    let go_t = script(&go);
    drop(go);
    let gofer_log = gofer.log();
    drop(gofer);

    let ours = start_ours(&our_root, Config::default());
    ours.client.mount().unwrap();
    let our_t = script(&ours.client);
    ours.finish();

    if std::env::var_os("GOFER_DIFF_SHOW").is_some() {
        eprintln!("{}", our_t.join("\n"));
    }
    assert!(
        !go_t.iter().any(|l| l.contains("transport")),
        "the Go gofer broke the connection:\n{}\nlog:\n{}",
        go_t.join("\n"),
        gofer_log
    );
    let mut diffs = Vec::new();
    for (i, (g, o)) in go_t.iter().zip(&our_t).enumerate() {
        if g != o {
            diffs.push(format!("step {i}\n  go:   {g}\n  ours: {o}"));
        }
    }
    assert_eq!(go_t.len(), our_t.len());
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}\n\nfull Go transcript:\n{}",
        diffs.len(),
        diffs.join("\n"),
        go_t.join("\n")
    );
    assert_eq!(tree(&go_root), tree(&our_root), "resulting host trees");
    let _ = fs::remove_dir_all(&work);
}
