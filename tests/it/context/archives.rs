//! Destination confinement, ADD of local archives (C1–C5 as a local archive), and a context
//! given as a tar stream.

use super::*;

#[test]
fn destination_symlinks_never_lead_out_of_the_rootfs() {
    let f = Fixture::new();
    f.file("a.txt", "A").file("tree/sub/x", "X");
    let canary = f.base().join("canary");
    fs::create_dir_all(&canary).unwrap();
    fs::create_dir_all(f.rootfs.join("usr/lib")).unwrap();
    symlink(&canary, f.rootfs.join("app")).unwrap();
    symlink("usr/lib", f.rootfs.join("lib")).unwrap();
    symlink("/../../../../", f.rootfs.join("up")).unwrap();

    // Merged-usr: /lib -> usr/lib is followed inside the rootfs.
    f.copy(&["a.txt"], "/lib/", CopyOptions::default()).unwrap();
    assert_eq!(f.read("/usr/lib/a.txt"), "A");
    f.copy(&["tree"], "/up/tree", CopyOptions::default()).unwrap();
    assert_eq!(f.read("/tree/sub/x"), "X");
    // Inside a copied tree, a destination subdirectory that is a symlink is followed inside the root.
    fs::create_dir_all(f.rootfs.join("t2")).unwrap();
    symlink(&canary, f.rootfs.join("t2/sub")).unwrap();
    let res = f.copy(&["tree"], "/t2", CopyOptions::default());
    assert!(res.is_err(), "t2/sub -> a host path missing in the rootfs");
    // An absolute host path in the rootfs is resolved inside it, where it does not exist: it is
    // created there (BuildKit's testSymlinkDestination), never on the host.
    f.copy(&["a.txt"], "/app/", CopyOptions::default()).unwrap();
    assert_eq!(f.read(&format!("{}/a.txt", canary.display())), "A");
    assert_eq!(fs::read_dir(&canary).unwrap().count(), 0, "nothing ever lands in the canary");
}

fn archive_fixture() -> (Fixture, PathBuf) {
    let f = Fixture::new();
    let canary = f.base().join("canary");
    fs::create_dir_all(canary.join("dir")).unwrap();
    fs::write(canary.join("file"), "canary").unwrap();
    fs::set_permissions(canary.join("dir"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::create_dir_all(f.rootfs.join("etc")).unwrap();
    fs::write(f.rootfs.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    (f, canary)
}

fn add(f: &Fixture, name: &str, bytes: &[u8], dest: &str) -> Result<CopyReport, ContextError> {
    fs::write(f.ctx.join(name), bytes).unwrap();
    f.copy(&[name], dest, CopyOptions { unpack_archives: true, ..Default::default() })
}

fn assert_canary(canary: &Path) {
    assert_eq!(fs::read_to_string(canary.join("file")).unwrap(), "canary");
    assert_eq!(fs::metadata(canary.join("dir")).unwrap().mode() & 0o7777, 0o700);
    let names: Vec<_> = fs::read_dir(canary).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn add_archive_c1_symlink_parent_lands_inside() {
    let (f, canary) = archive_fixture();
    let tar =
        RawTar::new().symlink("localetc", "/etc").file("localetc/unbroken", b"u").file("/dummy/../etc/x", b"x").end();
    add(&f, "c1.tar", &tar, "/").unwrap();
    assert_eq!(f.read("/etc/unbroken"), "u");
    assert_eq!(f.read("/etc/x"), "x");
    let tar = RawTar::new().symlink("abs", canary.to_str().unwrap()).file("abs/planted", b"p").end();
    let _ = add(&f, "c1b.tar", &tar, "/");
    assert_canary(&canary);
}

#[test]
fn add_archive_c2_hardlinks_resolve_inside() {
    let (f, canary) = archive_fixture();
    let tar = RawTar::new()
        .dir("breakouts")
        .symlink("breakouts/d1", "../../etc")
        .hardlink("breakouts/mypasswd", "breakouts/d1/passwd")
        .end();
    add(&f, "c2.tar", &tar, "/").unwrap();
    assert_eq!(f.meta("/breakouts/mypasswd").ino(), f.meta("/etc/passwd").ino());
    assert_canary(&canary);
}

#[test]
fn add_archive_c3_escaping_hardlinks_fail() {
    let (f, canary) = archive_fixture();
    let host = canary.join("file");
    let links_before = fs::metadata(&host).unwrap().nlink();
    let tar = RawTar::new().hardlink("grab", host.to_str().unwrap()).end();
    let err = add(&f, "c3.tar", &tar, "/").unwrap_err();
    assert!(matches!(err, ContextError::Unpack { .. }), "{err}");
    let tar = RawTar::new().hardlink("grab2", "../../../../../../nonexistent").end();
    assert!(add(&f, "c3b.tar", &tar, "/").is_err());
    assert_eq!(fs::metadata(&host).unwrap().nlink(), links_before);
    assert_canary(&canary);
}

#[test]
fn add_archive_c4_symlink_then_dir_keeps_the_canary() {
    let (f, canary) = archive_fixture();
    let mut h = crate::support::rawtar::Hdr::new(b"foo/", b'5');
    h.mode = 0o777;
    let mut tar = RawTar::new();
    tar.symlink("foo", canary.join("dir").to_str().unwrap()).raw(&h, &[]);
    let tar = tar.end();
    let _ = add(&f, "c4.tar", &tar, "/");
    assert_canary(&canary);
    assert!(f.meta("/foo").is_dir(), "the directory entry replaced the planted link");
}

#[test]
fn add_archive_c5_dotdot_symlink_stays_inside() {
    let (f, canary) = archive_fixture();
    let tar = RawTar::new().symlink("s", "..").file("s/exploit/foo/bar", b"b").end();
    // The archive is confined to its destination directory: `s -> ..` is that directory
    // (layer::apply's documented C5 decision), so the entry lands below it.
    add(&f, "c5.tar", &tar, "/sub/").unwrap();
    assert_eq!(f.read("/sub/exploit/foo/bar"), "b");
    assert!(!f.base().join("exploit").exists(), "nothing next to the rootfs");
    assert!(!f.rootfs.join("exploit").exists(), "not even above the destination directory");
    assert_canary(&canary);
}

#[test]
fn add_archive_formats_and_non_archives() {
    use std::io::Write;
    let f = Fixture::new();
    let tar = RawTar::new().dir("pkg").file("pkg/hello", b"hello").end();
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let bz = {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let xz = {
        let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let zst = zstd::encode_all(&tar[..], 1).unwrap();
    for (name, bytes) in [("p.tar", &tar), ("p.tgz", &gz), ("p.tbz", &bz), ("p.txz", &xz), ("p.tzst", &zst)] {
        let dest = format!("/{name}-out");
        let report = add(&f, name, bytes, &dest).unwrap();
        assert_eq!(report.archives, 1, "{name}");
        assert_eq!(f.read(&format!("{dest}/pkg/hello")), "hello", "{name}");
    }
    // Compressed but not a tar inside: copied as it is.
    let not_tar = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"just some text that is not a tar archive").unwrap();
        e.finish().unwrap()
    };
    let report = add(&f, "notes.gz", &not_tar, "/notes.gz").unwrap();
    assert_eq!(report.archives, 0);
    assert_eq!(fs::read(f.rootfs.join("notes.gz")).unwrap(), not_tar);
    // COPY never unpacks.
    f.copy(&["p.tgz"], "/copied.tgz", CopyOptions::default()).unwrap();
    assert_eq!(fs::read(f.rootfs.join("copied.tgz")).unwrap(), gz);
}

#[test]
fn add_archive_with_chown() {
    let f = Fixture::new();
    fs::create_dir_all(f.rootfs.join("app")).unwrap();
    fs::write(f.rootfs.join("app/existing"), "e").unwrap();
    let tar = RawTar::new()
        .dir("pkg")
        .file_mode("pkg/su", 0o4755, b"su")
        .symlink("pkg/link", "su")
        .hardlink("pkg/su2", "pkg/su")
        .end();
    fs::write(f.ctx.join("pkg.tar"), &tar).unwrap();
    let opts = CopyOptions { unpack_archives: true, chown: Some((5, 6)), ..Default::default() };
    f.copy(&["pkg.tar"], "/app/", opts).unwrap();
    for p in ["/app/pkg", "/app/pkg/su", "/app/pkg/link", "/app/pkg/su2"] {
        let m = f.meta(p);
        assert_eq!((m.uid(), m.gid()), (5, 6), "{p}");
    }
    assert_eq!(f.meta("/app/pkg/su").mode() & 0o7777, 0o4755, "the setuid bit survives the chown");
    assert_eq!(f.meta("/app/existing").uid(), 0, "what was there before is not the archive's");
}

#[test]
fn context_from_a_tar_stream() {
    use std::io::Write;
    let t = TestContext::new();
    let scratch = t.path().join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    let tar = RawTar::new()
        .file("Dockerfile", b"FROM scratch\nCOPY . /\n")
        .file(".dockerignore", b"secret\n")
        .file("secret", b"s")
        .file("app/main", b"m")
        .symlink("escape", "/etc/passwd")
        .end();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&tar).unwrap();
    let c = Context::from_tar(&e.finish().unwrap()[..], &scratch, None).unwrap();
    assert_eq!(c.root(), fs::canonicalize(&scratch).unwrap());
    assert_eq!(c.read_file("Dockerfile", 1024).unwrap(), b"FROM scratch\nCOPY . /\n");
    assert!(sel(&c.source(), &["secret"]).is_err());
    assert!(matches!(c.read_file("escape", 1024), Err(ContextError::NotFound { .. })));
    let all = sel(&c.source(), &["."]).unwrap();
    let d = digest(&c.source(), &all, &[], None).unwrap();
    assert!(d.files.iter().any(|(p, _)| p == "app/main"));
}

/// A reader that fails after `left` bytes.
struct Failing {
    data: std::io::Cursor<Vec<u8>>,
    left: usize,
}

impl std::io::Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("connection reset"));
        }
        let n = buf.len().min(self.left);
        let got = std::io::Read::read(&mut self.data, &mut buf[..n])?;
        self.left -= got;
        Ok(got)
    }
}

#[test]
fn context_tar_stream_errors_and_trailing_data() {
    let t = TestContext::new();
    let big = vec![7u8; 256 << 10];
    let tar = RawTar::new().file("a", &big).file("b", b"b").end();
    // A reader failing mid-stream is reported as a read error, not as a truncated archive.
    let scratch = t.path().join("s1");
    fs::create_dir_all(&scratch).unwrap();
    let err = Context::from_tar(Failing { data: std::io::Cursor::new(tar.clone()), left: 100_000 }, &scratch, None)
        .unwrap_err();
    assert!(matches!(err, ContextError::Open { .. }), "{err}");
    // Bytes after the end-of-archive marker are drained and refused by the strict reader,
    // without the writer ever blocking on a full pipe.
    let scratch = t.path().join("s2");
    fs::create_dir_all(&scratch).unwrap();
    let mut padded = tar.clone();
    padded.extend(vec![1u8; 1 << 20]);
    let err = Context::from_tar(&padded[..], &scratch, None).unwrap_err();
    assert!(matches!(err, ContextError::Extract { .. }), "{err}");
    // Not an archive at all.
    let scratch = t.path().join("s3");
    fs::create_dir_all(&scratch).unwrap();
    assert!(Context::from_tar(&b"hello, not a tar"[..], &scratch, None).is_err());
    // The good stream.
    let scratch = t.path().join("s4");
    fs::create_dir_all(&scratch).unwrap();
    let c = Context::from_tar(&tar[..], &scratch, None).unwrap();
    assert_eq!(c.read_file("a", 1 << 20).unwrap().len(), big.len());
}
