//! Layer tar streams end to end: write_dir → apply round trip, whiteouts, determinism of the
//! tar and of its gzip / zstd blobs, and GNU tar as an oracle for what we write.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{PermissionsExt, lchown};
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};
use slipway::layer::{
    self, ApplyOptions, Compression, EntryKind, TarWriter, WriteOptions, compress, decompress, write_dir,
};
use slipway::oci::{Digest, HashingReader};

use crate::support::tree::{self, assert_same};

/// Size of the sparse file in the round-trip fixture (`SLIPWAY_TEST_SPARSE_SIZE`, default 1 GiB).
fn sparse_size() -> u64 {
    std::env::var("SLIPWAY_TEST_SPARSE_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(1 << 30)
}

const LONG_NAME_LEN: usize = 200;
/// A v2 file capability: cap_net_raw in the permitted set, effective flag set.
const CAP_NET_RAW: [u8; 20] = [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec { tv_sec: secs, tv_nsec: 0 };
    rustix::fs::utimensat(CWD, path, &Timestamps { last_access: t, last_modification: t }, AtFlags::SYMLINK_NOFOLLOW)
        .unwrap();
}

fn non_utf8_name() -> &'static std::ffi::OsStr {
    std::ffi::OsStr::from_bytes(b"caf\xe9-\xff")
}

/// A 150-byte non-UTF-8 name: needs a PAX `path` record carrying raw bytes.
fn long_non_utf8_name() -> std::ffi::OsString {
    let mut name = b"raw-".to_vec();
    name.extend(std::iter::repeat_n(0xfe_u8, 146));
    std::ffi::OsString::from_vec(name)
}

/// Builds the fixture tree: every kind of object `write_dir` must carry.
fn build_fixture(root: &Path, sparse: u64) {
    let mk = |p: &str| fs::create_dir_all(root.join(p)).unwrap();
    for d in ["etc", "bin", "data/z", "dev", "run", "lib", "big", "tmp", "shared", "owned"] {
        mk(d);
    }
    fs::write(root.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/empty"), b"").unwrap();
    fs::write(root.join("bin/su"), b"#!/bin/false\n").unwrap();
    fs::set_permissions(root.join("bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(root.join("bin/ping"), b"ping").unwrap();
    rustix::fs::lsetxattr(root.join("bin/ping"), "security.capability", &CAP_NET_RAW, XattrFlags::empty()).unwrap();
    rustix::fs::lsetxattr(root.join("bin/ping"), "user.comment", b"pings\0binary", XattrFlags::empty()).unwrap();
    rustix::fs::lsetxattr(root.join("etc"), "user.dir", b"yes", XattrFlags::empty()).unwrap();
    // Hardlinks: three names for one inode, one of them in another directory.
    fs::write(root.join("data/a"), b"shared content").unwrap();
    fs::hard_link(root.join("data/a"), root.join("data/hard")).unwrap();
    fs::hard_link(root.join("data/a"), root.join("data/z/third")).unwrap();
    // Symlinks: relative, absolute, dangling, with a long target.
    std::os::unix::fs::symlink("../etc/passwd", root.join("lib/rel")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("lib/abs")).unwrap();
    std::os::unix::fs::symlink("nowhere/at/all", root.join("lib/dangling")).unwrap();
    let long_target = "t/".repeat(80);
    std::os::unix::fs::symlink(&long_target, root.join("lib/longtarget")).unwrap();
    // Devices and a FIFO (we are root).
    rustix::fs::mknodat(
        CWD,
        root.join("dev/null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    rustix::fs::mknodat(
        CWD,
        root.join("dev/loop9"),
        FileType::BlockDevice,
        Mode::from_raw_mode(0o660),
        rustix::fs::makedev(7, 9),
    )
    .unwrap();
    rustix::fs::mknodat(CWD, root.join("run/fifo"), FileType::Fifo, Mode::from_raw_mode(0o620), 0).unwrap();
    fs::set_permissions(root.join("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::set_permissions(root.join("run/fifo"), fs::Permissions::from_mode(0o620)).unwrap();
    fs::set_permissions(root.join("dev/loop9"), fs::Permissions::from_mode(0o660)).unwrap();
    // Long names: a 200-byte component and a > 100-byte path; a non-UTF-8 name.
    fs::write(root.join("x".repeat(LONG_NAME_LEN)), b"long").unwrap();
    let deep = root.join("d".repeat(60)).join("e".repeat(60));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f"), b"deep").unwrap();
    fs::write(root.join(non_utf8_name()), b"bytes").unwrap();
    fs::write(root.join(long_non_utf8_name()), b"long bytes").unwrap();
    // Sparse file with a little data in the middle and at the end.
    let f = File::create(root.join("big/sparse")).unwrap();
    f.set_len(sparse).unwrap();
    let mut f = f;
    f.seek(SeekFrom::Start(sparse / 2)).unwrap();
    f.write_all(b"middle").unwrap();
    f.seek(SeekFrom::Start(sparse - 3)).unwrap();
    f.write_all(b"end").unwrap();
    drop(f);
    // Modes and owners: sticky, setgid, numeric ids including one that needs PAX.
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(root.join("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    fs::write(root.join("owned/file"), b"mine").unwrap();
    lchown(root.join("owned/file"), Some(1234), Some(5678)).unwrap();
    lchown(root.join("owned"), Some(1000), Some(1000)).unwrap();
    fs::write(root.join("owned/bigid"), b"big ids").unwrap();
    lchown(root.join("owned/bigid"), Some(3_000_000), Some(4_000_000)).unwrap();
    lchown(root.join("lib/rel"), Some(42), Some(43)).unwrap();
    // mtimes: one beyond 11 octal digits (needs PAX), others fixed.
    set_mtime(&root.join("etc/empty"), 10_000_000_000);
    set_mtime(&root.join("lib/rel"), 1_650_000_000);
    set_mtime(&root.join("etc"), 1_640_000_000);
}

fn pipe() -> (File, File) {
    let (r, w) = rustix::pipe::pipe().unwrap();
    (File::from(r), File::from(w))
}

/// write_dir in one thread, apply in another, joined by a pipe: nothing is held in memory or
/// spooled to disk. Returns the DiffID from both sides.
fn stream_tree(src: &Path, dst: &Path, opts: &WriteOptions) -> (Digest, Digest, u64) {
    let (r, w) = pipe();
    let dst = dst.to_path_buf();
    let applier = std::thread::spawn(move || {
        let mut reader = HashingReader::new(r);
        let report = layer::apply(&mut reader, &dst, &ApplyOptions::default()).unwrap();
        // Drain anything after the end marker so the hash covers the whole stream.
        std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
        let (_, digest, len) = reader.finish();
        assert_eq!(report.bytes, len);
        digest
    });
    let (_, diff_id, len) = write_dir(src, opts, w).unwrap();
    let applied = applier.join().unwrap();
    (diff_id.digest(), applied, len)
}

#[test]
fn write_dir_then_apply_round_trips_the_tree() {
    let ctx = crate::support::TestContext::new();
    let src = ctx.path().join("src");
    let dst = ctx.path().join("dst");
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&dst).unwrap();
    let sparse = sparse_size();
    build_fixture(&src, sparse);
    let before = tree::snapshot(&src);

    let (diff_id, applied_digest, len) = stream_tree(&src, &dst, &WriteOptions::default());
    assert_eq!(diff_id, applied_digest, "DiffID differs from the digest of the bytes applied");
    assert!(len > sparse, "tar carries the sparse file's content");

    let after = tree::snapshot(&dst);
    assert_same(&before, &after);
    // Spot checks that the snapshot really saw what we meant to test.
    let node = &after[&b"bin/ping"[..]];
    assert_eq!(node.xattrs.get(&b"security.capability"[..]).map(Vec::as_slice), Some(&CAP_NET_RAW[..]));
    assert_eq!(after[&b"data/z/third"[..]].link_group.as_deref(), Some(&b"data/a"[..]));
    assert_eq!(after[&b"bin/su"[..]].mode, 0o4755);
    assert_eq!(after[&b"owned/bigid"[..]].uid, 3_000_000);
    assert_eq!(after[&b"etc/empty"[..]].mtime, 10_000_000_000);
    assert_eq!(after[&b"dev/loop9"[..]].kind, "block");
    assert!(after.contains_key(non_utf8_name().as_bytes()));
    assert!(after.contains_key(long_non_utf8_name().as_bytes()));
    assert!(after.contains_key("x".repeat(LONG_NAME_LEN).as_bytes()));
    // The applied sparse file is sparse again (zero runs became holes).
    let md = fs::metadata(dst.join("big/sparse")).unwrap();
    assert!(std::os::unix::fs::MetadataExt::blocks(&md) * 512 < sparse / 2 + (1 << 20));
}

fn gnu_tar(args: &[&str], tar: &Path) -> (Vec<u8>, String) {
    let out = Command::new("tar").args(args).arg("-f").arg(tar).output().expect("GNU tar is installed");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tar {args:?} failed: {stderr}");
    (out.stdout, stderr)
}

#[test]
fn gnu_tar_reads_what_we_write() {
    let ctx = crate::support::TestContext::new();
    let src = ctx.path().join("src");
    fs::create_dir_all(&src).unwrap();
    build_fixture(&src, 1 << 20);
    let (bytes, diff_id, len) = write_dir(&src, &WriteOptions::default(), Vec::new()).unwrap();
    assert_eq!(diff_id.digest(), Digest::of(&bytes));
    assert_eq!(len, bytes.len() as u64);
    let tar_path = ctx.path().join("layer.tar");
    fs::write(&tar_path, &bytes).unwrap();

    // Names: GNU tar's list equals ours, byte for byte, and is sorted.
    let (names, stderr) = gnu_tar(&["-t", "--quoting-style=literal"], &tar_path);
    assert_eq!(stderr, "");
    let gnu: Vec<&[u8]> = names.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let ours = layer::list(&bytes[..]).unwrap();
    let ours_names: Vec<&[u8]> = ours.iter().map(|e| e.path.as_slice()).collect();
    assert_eq!(gnu, ours_names);
    let mut sorted = ours_names.clone();
    sorted.sort();
    assert_eq!(sorted, ours_names, "entries are not in byte order");
    assert!(ours_names.contains(&&b"etc/"[..]));
    assert!(!ours_names.iter().any(|n| n.starts_with(b"./") || n.starts_with(b"/")));

    // Verbose listing: types, numeric owners, special mode bits, link targets.
    let (listing, _) = gnu_tar(&["-tv", "--numeric-owner", "--quoting-style=literal"], &tar_path);
    let listing = String::from_utf8_lossy(&listing);
    let line = |name: &str| -> &str {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")) || l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("{name} not in listing:\n{listing}"))
    };
    assert!(line("bin/su").starts_with("-rwsr-xr-x 0/0"), "{}", line("bin/su"));
    assert!(line("tmp/").starts_with("drwxrwxrwt"), "{}", line("tmp/"));
    assert!(line("shared/").starts_with("drwxrwsr-x"), "{}", line("shared/"));
    assert!(line("owned/file").starts_with("-rw-r--r-- 1234/5678"), "{}", line("owned/file"));
    assert!(line("owned/bigid").contains("3000000/4000000"), "{}", line("owned/bigid"));
    assert!(line("dev/null").starts_with("crw-rw-rw-"), "{}", line("dev/null"));
    assert!(line("dev/loop9").starts_with("brw-rw----"), "{}", line("dev/loop9"));
    assert!(line("run/fifo").starts_with("prw--w----"), "{}", line("run/fifo"));
    assert!(line("data/hard").starts_with('h') && line("data/hard").ends_with("link to data/a"));
    assert!(line("data/z/third").ends_with("link to data/a"));
    assert!(line("lib/rel").starts_with("lrwxrwxrwx 42/43") && line("lib/rel").ends_with("-> ../etc/passwd"));
    assert!(line("lib/longtarget").ends_with(&"t/".repeat(80)));
    // Our parser agrees on kinds.
    let kind = |p: &[u8]| ours.iter().find(|e| e.path == p).unwrap().kind;
    assert_eq!(kind(b"data/hard"), EntryKind::Link);
    assert_eq!(kind(b"run/fifo"), EntryKind::Fifo);

    // xattrs: GNU tar extracts them from our SCHILY.xattr records.
    let out_dir = ctx.path().join("gnu");
    fs::create_dir_all(&out_dir).unwrap();
    let status = Command::new("tar")
        .args(["-x", "--xattrs", "--xattrs-include=*", "--same-owner", "-p", "-f"])
        .arg(&tar_path)
        .arg("-C")
        .arg(&out_dir)
        .status()
        .unwrap();
    assert!(status.success());
    let gnu_tree = tree::snapshot(&out_dir);
    assert_eq!(
        gnu_tree[&b"bin/ping"[..]].xattrs.get(&b"security.capability"[..]).map(Vec::as_slice),
        Some(&CAP_NET_RAW[..])
    );
    assert_eq!(
        gnu_tree[&b"bin/ping"[..]].xattrs.get(&b"user.comment"[..]).map(Vec::as_slice),
        Some(&b"pings\0binary"[..])
    );
    assert_eq!(gnu_tree[&b"etc/empty"[..]].mtime, 10_000_000_000);
}

fn touch_all(root: &Path, secs: i64) {
    for path in tree::snapshot(root).keys() {
        set_mtime(&root.join(std::ffi::OsStr::from_bytes(path)), secs);
    }
}

fn blobs(tar: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut gz = Vec::new();
    let gi = compress(tar, Compression::Gzip, &mut gz).unwrap();
    let mut zs = Vec::new();
    let zi = compress(tar, Compression::Zstd, &mut zs).unwrap();
    assert_eq!(gi.diff_id.digest(), Digest::of(tar));
    assert_eq!(zi.diff_id, gi.diff_id);
    assert_eq!(gi.digest, Digest::of(&gz));
    assert_eq!(zi.size, zs.len() as u64);
    (gz, zs)
}

#[test]
fn source_date_epoch_makes_tar_and_blobs_byte_identical() {
    let ctx = crate::support::TestContext::new();
    let src = ctx.path().join("src");
    fs::create_dir_all(&src).unwrap();
    build_fixture(&src, 3 << 20);
    let opts = WriteOptions { source_date_epoch: Some(1_500_000_000) };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;

    touch_all(&src, now);
    let (first, first_id, _) = write_dir(&src, &opts, Vec::new()).unwrap();
    let (gz1, zs1) = blobs(&first);
    touch_all(&src, now + 12_345);
    let (second, second_id, _) = write_dir(&src, &opts, Vec::new()).unwrap();
    let (gz2, zs2) = blobs(&second);

    assert_eq!(first_id, second_id);
    assert!(first == second, "tar streams differ");
    assert!(gz1 == gz2, "gzip blobs differ");
    assert!(zs1 == zs2, "zstd blobs differ");
    assert!(layer::list(&first[..]).unwrap().iter().all(|e| e.mtime <= 1_500_000_000));

    // Without the epoch, mtimes are kept.
    let (kept, _, _) = write_dir(&src, &WriteOptions::default(), Vec::new()).unwrap();
    assert!(layer::list(&kept[..]).unwrap().iter().all(|e| e.mtime == now + 12_345));

    // The blobs decompress to the tar.
    for blob in [gz1, zs1] {
        let mut back = Vec::new();
        decompress(std::io::Cursor::new(blob)).unwrap().read_to_end(&mut back).unwrap();
        assert!(back == first);
    }
}

/// A lower tree, then a layer with whiteouts and an opaque directory whose marker comes last.
#[test]
fn whiteouts_and_opaque_directories_hide_lower_content_only() {
    let ctx = crate::support::TestContext::new();
    let target = ctx.path().join("rootfs");
    let stage = ctx.path().join("stage");
    for d in ["a/b/c", "keep", "gone/deeper", "opq/sub", "opq/lowerdir"] {
        fs::create_dir_all(target.join(d)).unwrap();
    }
    for f in [
        "a/b/c/bar",
        "keep/x",
        "gone/y",
        "gone/deeper/z",
        "file_gone",
        "opq/lower1",
        "opq/sub/lower2",
        "opq/lowerdir/l",
    ] {
        fs::write(target.join(f), f.as_bytes()).unwrap();
    }
    fs::create_dir_all(stage.join("opq/sub")).unwrap();
    fs::write(stage.join("opq/new"), b"new").unwrap();
    fs::write(stage.join("opq/sub/fresh"), b"fresh").unwrap();
    fs::write(stage.join("keep2"), b"k2").unwrap();

    let mut tw = TarWriter::new(Vec::new(), &WriteOptions::default());
    tw.add_whiteout(Path::new("file_gone")).unwrap();
    tw.add_whiteout(Path::new("gone")).unwrap();
    tw.add_whiteout(Path::new("missing")).unwrap();
    tw.add_whiteout(Path::new("a/b/c/nothing")).unwrap();
    tw.add_path(Path::new("keep2"), &stage.join("keep2")).unwrap();
    for p in ["opq", "opq/new", "opq/sub", "opq/sub/fresh"] {
        tw.add_path(Path::new(p), &stage.join(p)).unwrap();
    }
    tw.add_opaque(Path::new("opq")).unwrap();
    let bytes = tw.finish().unwrap();
    let names: Vec<String> =
        layer::list(&bytes[..]).unwrap().iter().map(|e| String::from_utf8_lossy(&e.path).into_owned()).collect();
    assert!(names.contains(&"gone".replace("gone", ".wh.gone")));
    assert!(names.contains(&"opq/.wh..wh..opq".to_string()));

    let report = layer::apply(&bytes[..], &target, &ApplyOptions::default()).unwrap();
    assert_eq!(report.whiteouts, 5);
    let got: Vec<String> = tree::snapshot(&target).keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    let want =
        ["a", "a/b", "a/b/c", "a/b/c/bar", "keep", "keep/x", "keep2", "opq", "opq/new", "opq/sub", "opq/sub/fresh"];
    assert_eq!(got, want);
    assert_eq!(fs::read(target.join("opq/sub/fresh")).unwrap(), b"fresh");

    // A second layer deletes `a`, a third recreates `a/new` without an opaque marker:
    // the lower `bar` must not reappear.
    let mut tw = TarWriter::new(Vec::new(), &WriteOptions::default());
    tw.add_whiteout(Path::new("a")).unwrap();
    layer::apply(&tw.finish().unwrap()[..], &target, &ApplyOptions::default()).unwrap();
    fs::create_dir_all(stage.join("a")).unwrap();
    fs::write(stage.join("a/new"), b"n").unwrap();
    let mut tw = TarWriter::new(Vec::new(), &WriteOptions::default());
    tw.add_path(Path::new("a"), &stage.join("a")).unwrap();
    tw.add_path(Path::new("a/new"), &stage.join("a/new")).unwrap();
    layer::apply(&tw.finish().unwrap()[..], &target, &ApplyOptions::default()).unwrap();
    let a: Vec<PathBuf> = fs::read_dir(target.join("a")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(a, vec![target.join("a/new")]);
}

const NOBODY: u32 = 65534;
const ROOTLESS_ENV: &str = "SLIPWAY_TEST_ROOTLESS_DIR";

/// Unprivileged apply: this test re-runs the test binary as `nobody` (via `setpriv`) on
/// `rootless_apply_child`, which applies a layer with default options; then it inspects the
/// result as root. Devices are skipped, ownership is the applier's, `security.capability` is
/// refused by the kernel and counted, read-only directories still get their content.
#[test]
fn unprivileged_apply_skips_devices_and_keeps_going() {
    let ctx = crate::support::TestContext::new();
    fs::set_permissions(ctx.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let work = ctx.path().join("rootless");
    let stage = ctx.path().join("stage");
    fs::create_dir_all(work.join("rootfs")).unwrap();
    lchown(&work, Some(NOBODY), Some(NOBODY)).unwrap();
    lchown(work.join("rootfs"), Some(NOBODY), Some(NOBODY)).unwrap();
    fs::create_dir_all(stage.join("ro")).unwrap();
    fs::create_dir_all(stage.join("dev")).unwrap();
    fs::write(stage.join("ro/file"), b"inside a read-only dir").unwrap();
    fs::set_permissions(stage.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::write(stage.join("ping"), b"ping").unwrap();
    rustix::fs::lsetxattr(stage.join("ping"), "security.capability", &CAP_NET_RAW, XattrFlags::empty()).unwrap();
    rustix::fs::lsetxattr(stage.join("ping"), "user.note", b"kept", XattrFlags::empty()).unwrap();
    rustix::fs::mknodat(
        CWD,
        stage.join("dev/null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    rustix::fs::mknodat(CWD, stage.join("fifo"), FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();
    let (tar, _, _) = write_dir(&stage, &WriteOptions::default(), Vec::new()).unwrap();
    fs::write(work.join("layer.tar"), &tar).unwrap();

    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["layer::rootless_apply_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROOTLESS_ENV, &work)
        .output()
        .expect("setpriv (util-linux) is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 passed"), "the child test did not run:\n{stdout}");

    let root = work.join("rootfs");
    let t = tree::snapshot(&root);
    assert!(!t.contains_key(&b"dev/null"[..]), "device created without privileges");
    assert_eq!(t[&b"fifo"[..]].kind, "fifo");
    assert_eq!(t[&b"ro"[..]].mode, 0o555);
    assert_eq!(fs::read(root.join("ro/file")).unwrap(), b"inside a read-only dir");
    assert!(t.values().all(|n| n.uid == NOBODY), "ownership must be the applier's");
    let ping = &t[&b"ping"[..]];
    assert_eq!(ping.xattrs.get(&b"user.note"[..]).map(Vec::as_slice), Some(&b"kept"[..]));
    assert!(!ping.xattrs.contains_key(&b"security.capability"[..]));
    let report = fs::read_to_string(work.join("report.txt")).unwrap();
    assert!(report.contains("devices_skipped: 1") && report.contains("xattrs_skipped: 1"), "{report}");
}

/// The unprivileged half of the test above; does nothing unless started by it.
#[test]
fn rootless_apply_child() {
    let Some(work) = std::env::var_os(ROOTLESS_ENV).map(PathBuf::from) else {
        return;
    };
    assert!(!rustix::process::geteuid().is_root());
    let opts = ApplyOptions::default();
    assert!(!opts.same_owner && opts.skip_devices);
    let report = layer::apply(File::open(work.join("layer.tar")).unwrap(), &work.join("rootfs"), &opts).unwrap();
    fs::write(work.join("report.txt"), format!("{report:?}")).unwrap();
}
