//! The malicious-context catalogue: A2, B1, B3–B7.

use super::*;

#[test]
fn a2_paths_outside_the_context() {
    let f = Fixture::new();
    f.file("a.txt", "A");
    fs::write(f.base().join("secret"), "top secret").unwrap();
    let c = f.context();
    for pattern in ["../secret", "a/../../secret", "..", "sub/../../../x"] {
        let err = sel(&c.source(), &[pattern]).unwrap_err();
        assert_eq!(err.to_string(), format!("{pattern}: path outside the build context"));
    }
    // An absolute source is relative to the context.
    let err = sel(&c.source(), &["/etc/passwd"]).unwrap_err();
    assert!(matches!(err, ContextError::NotFound { .. }), "{err}");
    assert_eq!(paths(&sel(&c.source(), &["/a.txt"]).unwrap()), [("a.txt", false)]);
}

#[test]
fn b1_symlinks_resolve_inside_the_context() {
    let f = Fixture::new();
    f.file("inside/passwd", "context's own");
    symlink("/etc", f.ctx.join("a")).unwrap();
    symlink("../../etc", f.ctx.join("up")).unwrap();
    symlink("/inside", f.ctx.join("abs_inside")).unwrap();
    symlink("b", f.ctx.join("loop_a")).unwrap();
    symlink("loop_a", f.ctx.join("b")).unwrap();
    symlink("c", f.ctx.join("c")).unwrap();
    for i in 0..41 {
        symlink(format!("chain{}", i + 1), f.ctx.join(format!("chain{i}"))).unwrap();
    }
    fs::write(f.ctx.join("chain41"), "end").unwrap();
    symlink("/etc/shadow", f.ctx.join("Dockerfile")).unwrap();
    fs::write(f.base().join("outside-ignore"), "inside\n").unwrap();
    symlink("../outside-ignore", f.ctx.join(".dockerignore")).unwrap();

    let c = f.context();
    assert!(c.ignore().rules().is_empty(), ".dockerignore -> ../x is not read from outside");
    let src = c.source();
    for pattern in ["a/passwd", "up/passwd", "a/shadow"] {
        let err = sel(&src, &[pattern]).unwrap_err();
        assert_eq!(err.to_string(), format!("{pattern}: not found in build context"));
    }
    // An absolute link is taken relative to the context root.
    assert_eq!(paths(&sel(&src, &["abs_inside/passwd"]).unwrap()), [("inside/passwd", false)]);
    for pattern in ["loop_a", "c", "chain0"] {
        let start = Instant::now();
        let err = sel(&src, &[pattern]).unwrap_err();
        assert!(matches!(err, ContextError::SymlinkLoop { .. }), "{pattern}: {err}");
        assert!(start.elapsed() < Duration::from_millis(100));
    }
    // 40 hops are fine.
    assert_eq!(paths(&sel(&src, &["chain1"]).unwrap()), [("chain41", false)]);
    let err = c.read_file("Dockerfile", 1 << 20).unwrap_err();
    assert!(matches!(err, ContextError::NotFound { .. }), "{err}");
    // Copying the whole context copies the links as links.
    f.copy(&["."], "/ctx", CopyOptions::default()).unwrap();
    assert_eq!(fs::read_link(f.rootfs.join("ctx/a")).unwrap(), Path::new("/etc"));
    assert_eq!(fs::read_link(f.rootfs.join("ctx/Dockerfile")).unwrap(), Path::new("/etc/shadow"));
}

#[test]
fn read_file_is_capped_and_regular_only() {
    let f = Fixture::new();
    f.file("Dockerfile", "FROM scratch\n").file("dir/x", "");
    let c = f.context();
    assert_eq!(c.read_file("Dockerfile", 100).unwrap(), b"FROM scratch\n");
    assert_eq!(c.read_file("/./Dockerfile", 13).unwrap(), b"FROM scratch\n");
    assert!(matches!(c.read_file("Dockerfile", 12), Err(ContextError::TooLarge { max: 12, .. })));
    assert!(matches!(c.read_file("dir", 100), Err(ContextError::NotAFile { .. })));
    assert!(matches!(c.read_file("nope", 100), Err(ContextError::NotFound { .. })));
}

#[test]
fn b3_fifo_socket_and_device() {
    let f = Fixture::new();
    f.file("plain", "p");
    rustix::fs::mknodat(CWD, f.ctx.join("fifo"), FileType::Fifo, Mode::from_raw_mode(0o640), 0).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(f.ctx.join("sock")).unwrap();
    let start = Instant::now();
    let report = f.copy(&["."], "/out", CopyOptions::default()).unwrap();
    assert!(f.meta("/out/fifo").file_type().is_fifo(), "the FIFO is recreated, never opened");
    assert_eq!(f.meta("/out/fifo").mode() & 0o7777, 0o640);
    assert!(!f.rootfs.join("out/sock").exists());
    assert_eq!(report.skipped, ["sock"]);
    let d = digest_of(&f.ctx, &["."], None);
    assert!(d.files.iter().any(|(p, _)| p == "fifo") && !d.files.iter().any(|(p, _)| p == "sock"));
    assert!(start.elapsed() < Duration::from_secs(10));

    // A device (we run as root) is refused by name, by the digest and by the copy.
    rustix::fs::mknodat(
        CWD,
        f.ctx.join("zero"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 5),
    )
    .unwrap();
    let c = f.context();
    let s = sel(&c.source(), &["."]).unwrap();
    let err = digest(&c.source(), &s, &[], None).unwrap_err();
    assert_eq!(err.to_string(), "zero: device files cannot be copied");
    let err = f.copy(&["."], "/out2", CopyOptions::default()).unwrap_err();
    assert!(matches!(err, ContextError::Device { ref path } if path == "zero"), "{err}");
    let err = f.copy(&["zero"], "/z", CopyOptions::default()).unwrap_err();
    assert!(matches!(err, ContextError::Device { .. }), "{err}");
}

const NOBODY: u32 = 65534;
const UNREADABLE_ENV: &str = "SLIPWAY_TEST_CONTEXT_UNREADABLE";

/// B5 needs a user the kernel refuses: the test re-runs itself as `nobody` (via `setpriv`) on
/// `b5_unreadable_child`, which hashes and copies a context holding a mode-000 file.
#[test]
fn b5_unreadable_files_fail_by_name() {
    let t = TestContext::new();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let work = t.path().join("work");
    fs::create_dir_all(work.join("ctx/sub")).unwrap();
    fs::create_dir_all(work.join("rootfs")).unwrap();
    fs::write(work.join("ctx/sub/ok"), "ok").unwrap();
    fs::write(work.join("ctx/sub/locked"), "no").unwrap();
    fs::set_permissions(work.join("ctx/sub/locked"), fs::Permissions::from_mode(0o000)).unwrap();
    for p in ["", "ctx", "ctx/sub", "ctx/sub/ok", "ctx/sub/locked", "rootfs"] {
        lchown(work.join(p), Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["context::catalogue::b5_unreadable_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(UNREADABLE_ENV, &work)
        .output()
        .expect("setpriv (util-linux) is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 passed"), "the child test did not run:\n{stdout}");
}

/// The unprivileged half of the test above; does nothing unless started by it.
#[test]
fn b5_unreadable_child() {
    let Some(work) = std::env::var_os(UNREADABLE_ENV).map(PathBuf::from) else {
        return;
    };
    let ctx = work.join("ctx");
    let c = Context::open_dir(&ctx, None).unwrap();
    let s = sel(&c.source(), &["."]).unwrap();
    let err = digest(&c.source(), &s, &[], None).unwrap_err();
    assert_eq!(err.to_string(), "failed to read sub/locked");
    let opts = CopyOptions { from_context: true, chown: Some((NOBODY, NOBODY)), ..Default::default() };
    let err = copy(&c.source(), &s, &work.join("rootfs"), "/", &opts).unwrap_err();
    assert!(matches!(err, ContextError::Read { ref path, .. } if path == "sub/locked"), "{err}");
    // Excluded by .dockerignore, it is no longer a problem.
    fs::write(ctx.join(".dockerignore"), "sub/locked\n").unwrap();
    let c = Context::open_dir(&ctx, None).unwrap();
    let s = sel(&c.source(), &["."]).unwrap();
    digest(&c.source(), &s, &[], None).unwrap();
    copy(&c.source(), &s, &work.join("rootfs"), "/", &opts).unwrap();
    assert_eq!(fs::read_to_string(work.join("rootfs/sub/ok")).unwrap(), "ok");
}

#[test]
fn b6_whiteout_names_are_refused() {
    let f = Fixture::new();
    f.file("dir/.wh.foo", "x").file("ok", "o");
    let err = f.copy(&["."], "/", CopyOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "dir/.wh.foo: name with reserved prefix .wh. cannot be stored in an OCI layer");
    let err = f.copy(&["ok"], "/.wh.target", CopyOptions::default()).unwrap_err();
    assert!(matches!(err, ContextError::ReservedName { .. }), "{err}");
    fs::create_dir_all(f.ctx.join("d2/.wh..wh..opq")).unwrap();
    let err = f.copy(&["d2"], "/d2", CopyOptions::default()).unwrap_err();
    assert!(matches!(err, ContextError::ReservedName { .. }), "{err}");
}

#[test]
fn b7_odd_names_deep_trees_survive_a_copy() {
    let f = Fixture::new();
    let odd: Vec<Vec<u8>> = vec![
        (0x80u8..=0xff).filter(|b| *b != b'/').collect::<Vec<u8>>()[..100].to_vec(),
        b"new\nline".to_vec(),
        b"back\\slash".to_vec(),
        b"...".to_vec(),
        vec![b'n'; 255],
    ];
    for name in &odd {
        let path = f.ctx.join(std::ffi::OsStr::from_bytes(name));
        fs::write(&path, name).unwrap();
        set_mtime(&path, 1_700_000_000, 999_999_999);
    }
    // 200 levels deep, and a path past 3800 bytes of 255-byte components.
    let mut deep = f.ctx.clone();
    for _ in 0..200 {
        deep.push("d");
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom"), "deep").unwrap();
    let mut long = f.ctx.clone();
    for i in 0..15 {
        long.push(format!("{i:x}").repeat(255).chars().take(255).collect::<String>());
    }
    fs::create_dir_all(&long).unwrap();
    fs::write(long.join("f"), "long").unwrap();

    let src = SourceRoot::dir(&f.ctx);
    let s = sel(&src, &["."]).unwrap();
    let d = digest(&src, &s, &[], None).unwrap();
    assert_eq!(d.files.len(), 1 + odd.len() + 200 + 1 + 15 + 1);
    copy(&src, &s, &f.rootfs, "/ctx", &CopyOptions::default()).unwrap();
    tree::assert_same(&tree::snapshot(&f.ctx), &tree::snapshot(&f.rootfs.join("ctx")));
    let m = fs::metadata(f.rootfs.join("ctx").join(std::ffi::OsStr::from_bytes(&odd[0]))).unwrap();
    assert_eq!(m.mtime_nsec(), 999_999_999, "times kept to the nanosecond");
    // The copy holds exactly what was hashed: the same tree hashes the same per entry.
    let copied = SourceRoot::dir(&f.rootfs);
    let d2 = digest(&copied, &sel(&copied, &["ctx"]).unwrap(), &[], None).unwrap();
    let strip = |files: &[(String, slipway::oci::Digest)], prefix: &str| -> Vec<(String, slipway::oci::Digest)> {
        files
            .iter()
            .map(|(p, d)| (p.strip_prefix(prefix).unwrap_or(p).trim_start_matches('/').to_owned(), *d))
            .collect()
    };
    let mut got = strip(&d2.files, "ctx");
    got.sort();
    assert_eq!(got.len(), d.files.len());
    assert_eq!(
        got.iter().filter(|(p, _)| !p.is_empty()).collect::<Vec<_>>(),
        d.files.iter().filter(|(p, _)| !p.is_empty()).collect::<Vec<_>>()
    );
    // A wildcard over a non-UTF-8 name is refused with its escaped name.
    let err = sel(&src, &["*"]).unwrap_err();
    assert!(matches!(err, ContextError::NonUtf8 { .. }), "{err}");
}

/// B4: while COPY runs, a helper keeps swapping the source directory with a symlink to a host
/// directory holding a marker (and to `/`). Each copy copies the real directory or fails; the
/// marker never shows up in any destination.
#[test]
fn b4_swapping_a_source_for_a_symlink_never_escapes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let f = Fixture::new();
    for i in 0..20 {
        f.file(&format!("d/f{i}"), "real");
    }
    let host = f.base().join("host");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("hostmarker"), "host").unwrap();
    let stop = AtomicBool::new(false);
    let rounds = std::env::var("SLIPWAY_TEST_B4_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let (mut ok, mut failed) = (0, 0);
    let mut errors = std::collections::HashMap::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            let (d, parked) = (f.ctx.join("d"), f.ctx.join("d.r"));
            let mut flip = false;
            while !stop.load(Ordering::Relaxed) {
                fs::rename(&d, &parked).unwrap();
                let target = if flip { PathBuf::from("/") } else { host.clone() };
                flip = !flip;
                symlink(&target, &d).unwrap();
                std::thread::sleep(Duration::from_micros(200));
                fs::remove_file(&d).unwrap();
                fs::rename(&parked, &d).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        for i in 0..rounds {
            let dest = format!("/out{i}");
            let c = Context::open_dir(&f.ctx, None).unwrap();
            let opts = CopyOptions { from_context: true, ..Default::default() };
            let res = select(&c.source(), &strings(&["d"]), &[])
                .and_then(|sel| copy(&c.source(), &sel, &f.rootfs, &dest, &opts).map(|_| sel))
                .and_then(|sel| digest(&c.source(), &sel, &[], None));
            match res {
                Ok(_) => ok += 1,
                Err(e) => {
                    failed += 1;
                    errors.insert(std::mem::discriminant(&e), e);
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let mut found = Vec::new();
    for entry in walk_all(&f.rootfs) {
        if entry.file_name().is_some_and(|n| n == "hostmarker") {
            found.push(entry);
        }
    }
    assert!(found.is_empty(), "host files copied: {found:?}");
    // Every failure is one of the typed outcomes of a source that moved under us.
    for e in errors.values() {
        let moved = matches!(
            e,
            ContextError::NotFound { .. }
                | ContextError::Read { .. }
                | ContextError::Changed { .. }
                | ContextError::SymlinkLoop { .. }
        );
        assert!(moved, "{e}");
    }
    assert_eq!(ok + failed, rounds, "every round ended");
}

/// Every path below `root` (never following symlinks).
fn walk_all(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
            out.push(entry.path());
        }
    }
    out
}
