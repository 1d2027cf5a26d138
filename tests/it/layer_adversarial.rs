//! Catalogue C1–C10 (`shared/research/reliability.md` §4.C): hostile layers built byte by byte,
//! applied into a rootfs that sits next to canary files. After every case the canaries are
//! unchanged, nothing exists outside the rootfs that was not there before, and the case was
//! either rejected with an error naming the entry or landed inside the rootfs.
//!
//! C10 sizes scale with `SLIPWAY_TEST_BOMB_SCALE` (default 1: tens of MiB, fast in debug).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use slipway::layer::{self, ApplyOptions, ApplyReport, LayerError, Limit};

use crate::support::rawtar::{Hdr, RawTar};
use crate::support::tree::{self, Tree};

fn bomb_scale() -> u64 {
    std::env::var("SLIPWAY_TEST_BOMB_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// `$T/{rootfs,canary}` with a lower-layer `/etc/passwd` in the rootfs.
struct Arena {
    _dir: tempfile::TempDir,
    top: PathBuf,
    rootfs: PathBuf,
    canary: PathBuf,
    before: Tree,
}

impl Arena {
    fn new() -> Arena {
        let dir = tempfile::Builder::new().prefix("slipway-adv-").tempdir().unwrap();
        let top = dir.path().to_path_buf();
        let rootfs = top.join("rootfs");
        let canary = top.join("canary");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::write(rootfs.join("etc/passwd"), b"rootfs passwd\n").unwrap();
        fs::create_dir_all(canary.join("dir")).unwrap();
        fs::write(canary.join("file"), b"canary\n").unwrap();
        fs::write(canary.join("passwd"), b"host passwd\n").unwrap();
        fs::set_permissions(canary.join("file"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(canary.join("dir"), fs::Permissions::from_mode(0o750)).unwrap();
        let mut arena = Arena { _dir: dir, top, rootfs, canary, before: Tree::new() };
        arena.before = arena.outside();
        arena
    }

    /// Everything outside the rootfs (content, mode, owner, mtime, link groups).
    fn outside(&self) -> Tree {
        tree::snapshot(&self.top).into_iter().filter(|(p, _)| !p.starts_with(b"rootfs")).collect()
    }

    fn canary_abs(&self, rel: &str) -> String {
        self.canary.join(rel).display().to_string()
    }

    fn apply_with(&self, bytes: &[u8], opts: &ApplyOptions) -> Result<ApplyReport, LayerError> {
        let res = layer::apply(bytes, &self.rootfs, opts);
        self.check_outside();
        res
    }

    fn apply(&self, bytes: &[u8]) -> Result<ApplyReport, LayerError> {
        self.apply_with(bytes, &ApplyOptions::default())
    }

    #[track_caller]
    fn check_outside(&self) {
        let now = self.outside();
        tree::assert_same(&self.before, &now);
        let top: Vec<_> = fs::read_dir(&self.top).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(top.len(), 2, "something was created next to the rootfs: {top:?}");
        let md = fs::metadata(self.canary.join("file")).unwrap();
        assert_eq!((md.nlink(), md.mode() & 0o7777, md.uid()), (1, 0o600, 0));
    }

    fn inside(&self, rel: &str) -> PathBuf {
        self.rootfs.join(rel)
    }
}

/// Asserts the apply failed with an error whose message names `entry`.
#[track_caller]
fn assert_rejected(res: Result<ApplyReport, LayerError>, entry: &str) -> LayerError {
    let err = res.expect_err("layer was accepted");
    let mut msg = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    assert!(msg.contains(entry), "error does not name {entry:?}: {msg}");
    err
}

fn ino(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}

#[test]
fn c1_symlink_parents_resolve_inside_the_rootfs() {
    let a = Arena::new();
    let tar = RawTar::new()
        .symlink("localetc", "/etc")
        .file("localetc/unbroken", b"inside")
        .file("/dummy/../etc/dotdot", b"clamped")
        .file("../../../etc/climb", b"clamped too")
        .symlink("l1", "l2")
        .symlink("l2", "/etc")
        .file("l1/chained", b"chained")
        .symlink("hostcanary", &a.canary_abs(""))
        .end();
    a.apply(&tar).unwrap();
    for f in ["etc/unbroken", "etc/dotdot", "etc/climb", "etc/chained"] {
        assert!(a.inside(f).is_file(), "{f} did not land in the rootfs");
    }
    assert!(!Path::new("/etc/unbroken").exists() && !Path::new("/etc/chained").exists());
    // Writing through a link to a host directory that does not exist in the rootfs fails.
    let tar = RawTar::new().file("hostcanary/file", b"pwned").end();
    assert_rejected(a.apply(&tar), "hostcanary/file");
    // A relative link climbing out of the rootfs is clamped at its root.
    let tar = RawTar::new().symlink("up", "../../../../../..").file("up/etc/viaup", b"x").end();
    a.apply(&tar).unwrap();
    assert!(a.inside("etc/viaup").is_file());
}

#[test]
fn c2_hardlinks_through_symlinks_resolve_inside_the_rootfs() {
    let a = Arena::new();
    let tar = RawTar::new()
        .dir("breakouts/")
        .symlink("breakouts/d1", "../../etc")
        .hardlink("breakouts/mypasswd", "/breakouts/d1/passwd")
        .hardlink("breakouts/deep", "../../../../../../../etc/passwd")
        .end();
    a.apply(&tar).unwrap();
    let passwd = ino(&a.inside("etc/passwd"));
    assert_eq!(ino(&a.inside("breakouts/mypasswd")), passwd);
    assert_eq!(ino(&a.inside("breakouts/deep")), passwd);
    assert_eq!(fs::read(a.inside("breakouts/mypasswd")).unwrap(), b"rootfs passwd\n");
}

#[test]
fn c3_hardlink_targets_must_exist_inside_the_rootfs() {
    let a = Arena::new();
    let host = a.canary_abs("file");
    // Absolute path to a host file missing in the rootfs, a missing name, a directory.
    for (name, target) in [("h_host", host.as_str()), ("h_missing", "no/such/file"), ("h_dir", "etc")] {
        let tar = RawTar::new().hardlink(name, target).end();
        assert_rejected(a.apply(&tar), name);
        assert!(!a.inside(name).exists());
    }
    // Hardlink to itself.
    let tar = RawTar::new().hardlink("selfie", "./selfie").end();
    assert_rejected(a.apply(&tar), "selfie");
    // A chain of 1000 links, each to the previous one, and a link to a lower-layer file.
    let mut t = RawTar::new();
    t.file("c0", b"chain");
    for i in 1..1000 {
        t.hardlink(&format!("c{i}"), &format!("c{}", i - 1));
    }
    t.hardlink("lowerlink", "etc/passwd");
    a.apply(&t.end()).unwrap();
    assert_eq!(fs::metadata(a.inside("c999")).unwrap().nlink(), 1000);
    assert_eq!(ino(&a.inside("lowerlink")), ino(&a.inside("etc/passwd")));
}

/// Catalogue C4 on `layer::apply` (through a pulled base image: `catalogue_ac`).
#[test]
fn c4_directory_over_symlink_never_chmods_the_target() {
    let a = Arena::new();
    let dir = a.canary_abs("dir");
    for (link, entry) in [(dir.as_str(), "foo/"), ("../canary/dir", "bar/."), ("../../canary/dir", "baz/")] {
        let name = entry.trim_end_matches('/').trim_end_matches("/.");
        let mut h = Hdr::new(entry.as_bytes(), b'5');
        h.mode = 0o777;
        let tar = RawTar::new().symlink(name, link).raw(&h, &[]).end();
        a.apply(&tar).unwrap();
        let md = fs::symlink_metadata(a.inside(name)).unwrap();
        assert!(md.is_dir(), "{name} is not a directory");
        assert_eq!(md.mode() & 0o7777, 0o777);
    }
    // HardlinkSymlinkChmod: a hardlink to a symlink, then a mode on the hardlink.
    let mut h = Hdr::new(b"hl", b'1');
    h.link = b"sl".to_vec();
    h.mode = 0o777;
    let tar = RawTar::new().symlink("sl", &a.canary_abs("file")).raw(&h, &[]).end();
    a.apply(&tar).unwrap();
    assert!(fs::symlink_metadata(a.inside("hl")).unwrap().file_type().is_symlink());
    // A file entry with a mode through the same kind of link replaces the link.
    let tar = RawTar::new().symlink("sl2", &a.canary_abs("file")).file_mode("sl2", 0o4777, b"x").end();
    a.apply(&tar).unwrap();
    assert!(fs::symlink_metadata(a.inside("sl2")).unwrap().is_file());
}

#[test]
fn c5_dotdot_symlink_parent_lands_inside_the_rootfs() {
    // Decision (module doc): `s -> ..` resolves to the rootfs root, missing parents are created
    // there; nothing appears next to the rootfs.
    let a = Arena::new();
    let tar = RawTar::new().symlink("s", "..").file("s/exploit/foo/bar", b"x").end();
    a.apply(&tar).unwrap();
    assert!(a.inside("exploit/foo/bar").is_file());
    assert!(!a.top.join("exploit").exists());
}

/// Catalogue C6 on `layer::apply` (through a pulled base image: `catalogue_ac`).
#[test]
fn c6_duplicate_path_replaces_instead_of_writing_through() {
    let a = Arena::new();
    let tar = RawTar::new().symlink("x", &a.canary_abs("file")).file("x", b"replaced").end();
    a.apply(&tar).unwrap();
    let md = fs::symlink_metadata(a.inside("x")).unwrap();
    assert!(md.is_file());
    assert_eq!(fs::read(a.inside("x")).unwrap(), b"replaced");
    // Relative variant and a directory replaced by a file.
    let tar = RawTar::new().symlink("y", "../canary/file").file("y", b"again").dir("z/").file("z", b"file now").end();
    a.apply(&tar).unwrap();
    assert_eq!(fs::read(a.inside("y")).unwrap(), b"again");
    assert!(a.inside("z").is_file());
}

/// GNU tar's entry names for `bytes`, or None when it refuses the archive.
fn gnu_names(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut child = Command::new("tar")
        .args(["-t", "--quoting-style=literal", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    out.status
        .success()
        .then(|| out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect())
}

/// Catalogue C7 on `layer::apply` (through a pulled base image: `catalogue_ac`).
#[test]
fn c7_pax_desync_is_parsed_like_gnu_tar_or_rejected() {
    let a = Arena::new();
    // (case, bytes, accepted?)
    let mut cases: Vec<(&str, Vec<u8>, bool)> = Vec::new();
    // `x` with size=2048, then a GNU long name, then two files: the size applies to file_a.
    let mut t = RawTar::new();
    t.pax(b'x', &[("size", b"2048")]).gnu_long(b'L', b"long_a").raw(&Hdr::new(b"file_a", b'0'), &[]);
    t.file("file_b", b"bbbb").data(&[b'z'; 1024]);
    cases.push(("x-size then L", t.end(), true));
    // ustar size 0, PAX size 1024.
    let mut t = RawTar::new();
    t.pax(b'x', &[("size", b"1024")]).raw(&Hdr::new(b"zero_ustar", b'0'), &[b'q'; 1024]);
    cases.push(("ustar 0 vs pax 1024", t.end(), true));
    // ustar 512, PAX 0.
    let mut h = Hdr::new(b"smuggler", b'0');
    h.size = 512;
    let mut inner = Hdr::new(b"hidden", b'0');
    inner.size = 0;
    let mut t = RawTar::new();
    t.pax(b'x', &[("size", b"0")]).raw(&h, &inner.encode());
    cases.push(("ustar 512 vs pax 0", t.end(), false));
    // Two `x` in a row.
    let mut t = RawTar::new();
    t.pax(b'x', &[("path", b"first")]).pax(b'x', &[("path", b"second")]).file("plain", b"p");
    cases.push(("two x", t.end(), false));
    // `g` with path=.
    let mut t = RawTar::new();
    t.pax(b'g', &[("path", b"global")]).file("after_global", b"g");
    cases.push(("g with path", t.end(), false));
    // Bad checksum.
    let mut t = RawTar::new();
    let mut block = Hdr::new(b"badsum", b'0').encode();
    block[0] = b'B';
    t.bytes.extend_from_slice(&block);
    cases.push(("bad checksum", t.end(), false));

    for (what, bytes, accepted) in cases {
        let ours = layer::list(&bytes[..]);
        assert_eq!(ours.is_ok(), accepted, "{what}: {ours:?}");
        let applied = a.apply(&bytes);
        match ours {
            Ok(entries) => {
                let names: Vec<Vec<u8>> = entries.into_iter().map(|e| e.path).collect();
                assert_eq!(Some(names), gnu_names(&bytes), "{what}: our reading differs from GNU tar's");
                let report = applied.unwrap_or_else(|e| panic!("{what}: listed but not applied: {e}"));
                assert_eq!(report.bytes, bytes.len() as u64, "{what}: DiffID must cover exactly the parsed bytes");
            }
            Err(e) => {
                assert!(matches!(e, LayerError::Malformed { .. }), "{what}: {e}");
                assert!(applied.is_err(), "{what}: list rejected ({e}) but apply accepted");
            }
        }
    }
    assert!(!a.inside("hidden").exists() && !a.inside("second").exists() && !a.inside("global").exists());
}

#[test]
fn c8_whiteouts_are_validated_and_confined() {
    let a = Arena::new();
    for bad in [".wh..", ".wh...", "etc/.wh..", ".wh.", ".wh.etc/somefile"] {
        let tar = RawTar::new().file(bad, b"").end();
        let err = assert_rejected(a.apply(&tar), bad.trim_end_matches('/'));
        assert!(matches!(err, LayerError::InvalidWhiteout { .. }), "{bad}: {err}");
    }
    assert!(a.inside("etc/passwd").exists());
    // `.wh.localetc` removes only the link; `localcanary/.wh.file` resolves inside the rootfs.
    let tar = RawTar::new().symlink("localetc", "/etc").symlink("localcanary", &a.canary_abs("")).end();
    a.apply(&tar).unwrap();
    let tar = RawTar::new().file(".wh.localetc", b"").file("localcanary/.wh.file", b"").file(".wh.missing", b"").end();
    a.apply(&tar).unwrap();
    assert!(fs::symlink_metadata(a.inside("localetc")).is_err());
    assert!(a.inside("etc/passwd").is_file());
    // Through a link to the rootfs's own /etc, a whiteout removes rootfs/etc/passwd only.
    let tar = RawTar::new().symlink("localetc", "/etc").end();
    a.apply(&tar).unwrap();
    let tar = RawTar::new().file("localetc/.wh.passwd", b"").end();
    a.apply(&tar).unwrap();
    assert!(!a.inside("etc/passwd").exists());
    assert!(a.inside("etc").is_dir());
}

#[test]
fn c9_opaque_marker_applies_first_wherever_it_sits() {
    let a = Arena::new();
    let l1 = RawTar::new().dir("a/").dir("a/b/").dir("a/b/c/").file("a/b/c/bar", b"bar").end();
    a.apply(&l1).unwrap();
    let l2 =
        RawTar::new().dir("a/").dir("a/b/").dir("a/b/c/").file("a/b/c/foo", b"foo").file("a/.wh..wh..opq", b"").end();
    a.apply(&l2).unwrap();
    assert!(a.inside("a/b/c/foo").is_file());
    assert!(!a.inside("a/b/c/bar").exists());
    // Delete `a`, then recreate `a/new` without a marker: nothing old reappears.
    a.apply(&RawTar::new().file(".wh.a", b"").end()).unwrap();
    a.apply(&RawTar::new().file("a/new", b"n").end()).unwrap();
    let names: Vec<_> = fs::read_dir(a.inside("a")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("new")]);
}

fn gzip(chunks: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for c in chunks {
        enc.write_all(&c).unwrap();
    }
    enc.finish().unwrap()
}

#[test]
fn c10_bombs_stop_at_limits() {
    let a = Arena::new();
    let scale = bomb_scale();
    let small = ApplyOptions { max_bytes: 16 << 20, max_entries: 1000, ..ApplyOptions::default() };

    // A 100 GiB entry is refused from its header, before any data is read.
    let mut h = Hdr::new(b"huge", b'0');
    h.size = 100 << 30;
    let mut t = RawTar::new();
    t.bytes.extend_from_slice(&h.encode());
    let err = a.apply(&t.bytes).unwrap_err();
    assert!(matches!(err, LayerError::LimitExceeded { limit: Limit::Bytes, .. }), "{err}");
    assert!(err.to_string().contains("layer exceeds max_bytes"), "{err}");

    // gzip of many 1 MiB zero files: tiny blob, stops when the decompressed stream passes the limit.
    let n_files = 64 * scale;
    let blob = gzip((0..n_files).map(|i| {
        let mut h = Hdr::new(format!("z{i}").as_bytes(), b'0');
        h.size = 1 << 20;
        let mut v = h.encode().to_vec();
        v.resize(512 + (1 << 20), 0);
        v
    }));
    assert!(blob.len() < (1 << 20) * scale as usize);
    let reader = layer::decompress(std::io::Cursor::new(blob)).unwrap();
    let err = layer::apply(reader, &a.rootfs, &small).unwrap_err();
    a.check_outside();
    assert!(matches!(err, LayerError::LimitExceeded { limit: Limit::Bytes, .. }), "{err}");
    // What did land is sparse.
    assert!(fs::metadata(a.inside("z0")).unwrap().blocks() < 16);

    // The same through the ADD-archive formats: xz and bzip2.
    let files = || {
        (0..24 * scale).map(|i| {
            let mut h = Hdr::new(format!("x{i}").as_bytes(), b'0');
            h.size = 1 << 20;
            let mut v = h.encode().to_vec();
            v.resize(512 + (1 << 20), 0);
            v
        })
    };
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 0);
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    for chunk in files() {
        xz.write_all(&chunk).unwrap();
        bz.write_all(&chunk).unwrap();
    }
    for blob in [xz.finish().unwrap(), bz.finish().unwrap()] {
        let err = layer::apply(layer::decompress(std::io::Cursor::new(blob)).unwrap(), &a.rootfs, &small).unwrap_err();
        a.check_outside();
        assert!(matches!(err, LayerError::LimitExceeded { limit: Limit::Bytes, .. }), "{err}");
    }

    // gzip of pure zeros: an end marker followed by a flood of padding.
    let blob = gzip((0..64 * scale).map(|_| vec![0u8; 1 << 20]));
    let err = layer::apply(layer::decompress(std::io::Cursor::new(blob)).unwrap(), &a.rootfs, &ApplyOptions::default())
        .unwrap_err();
    assert!(matches!(err, LayerError::Malformed { .. }), "{err}");

    // Entry count.
    let mut t = RawTar::new();
    for i in 0..(5000 * scale) {
        t.dir(&format!("d{}/", i % 7));
    }
    let err = a.apply_with(&t.end(), &small).unwrap_err();
    assert!(matches!(err, LayerError::LimitExceeded { limit: Limit::Entries, max: 1000 }), "{err}");

    // zstd frame asking for a 2 GiB window.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.window_log(31).unwrap();
    enc.long_distance_matching(true).unwrap();
    enc.write_all(&vec![0u8; 1 << 20]).unwrap();
    let blob = enc.finish().unwrap();
    let err = layer::apply(layer::decompress(std::io::Cursor::new(blob)).unwrap(), &a.rootfs, &ApplyOptions::default())
        .unwrap_err();
    assert!(matches!(err, LayerError::ReadStream { .. }), "{err}");

    // Skippable zstd frames are skipped; the real frame after them is applied.
    let inner = RawTar::new().file("after_skippable", b"ok").end();
    let mut blob = Vec::new();
    for _ in 0..3 {
        blob.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18]);
        blob.extend_from_slice(&(1024u32).to_le_bytes());
        blob.extend_from_slice(&[0xaa; 1024]);
    }
    blob.extend_from_slice(&zstd::encode_all(&inner[..], 3).unwrap());
    layer::apply(layer::decompress(std::io::Cursor::new(blob)).unwrap(), &a.rootfs, &ApplyOptions::default()).unwrap();
    assert_eq!(fs::read(a.inside("after_skippable")).unwrap(), b"ok");

    // GNU sparse entries (old `S` type and PAX GNU.sparse.*) claiming 1 TiB are refused.
    let mut h = Hdr::new(b"sparse_old", b'S');
    h.size = 0;
    let mut t = RawTar::new();
    t.raw(&h, &[]);
    assert_rejected(a.apply(&t.end()), "sparse_old");
    let mut t = RawTar::new();
    t.pax(b'x', &[("GNU.sparse.realsize", b"1099511627776"), ("GNU.sparse.name", b"sparse_pax")]);
    t.raw(&Hdr::new(b"sparse_pax", b'0'), &[]);
    let err = a.apply(&t.end()).unwrap_err();
    assert!(matches!(err, LayerError::UnsupportedEntry { .. }), "{err}");
    a.check_outside();
}
