//! Docker's COPY rule table, `.dockerignore` and `--exclude`, ownership, modes, times, links,
//! xattrs, heredoc sources and `--chown` names.

use super::*;

#[test]
fn copy_rule_table() {
    let f = Fixture::new();
    f.file("a.txt", "A").file("b.txt", "B").file("src/main.rs", "fn main() {}").file("src/lib/x.rs", "x");
    fs::create_dir_all(f.rootfs.join("existing")).unwrap();
    fs::write(f.rootfs.join("old.txt"), "old content").unwrap();

    // file → file
    f.copy(&["a.txt"], "/x", CopyOptions::default()).unwrap();
    assert_eq!(f.read("/x"), "A");
    // file → dir/ (created)
    f.copy(&["a.txt"], "/d/", CopyOptions::default()).unwrap();
    assert_eq!(f.read("/d/a.txt"), "A");
    // file → existing dir without a slash
    f.copy(&["a.txt"], "/existing", CopyOptions::default()).unwrap();
    assert_eq!(f.read("/existing/a.txt"), "A");
    // dir → its contents
    f.copy(&["src"], "/app", CopyOptions::default()).unwrap();
    assert_eq!(f.read("/app/main.rs"), "fn main() {}");
    assert_eq!(f.read("/app/lib/x.rs"), "x");
    assert!(!f.rootfs.join("app/src").exists(), "a directory source copies its contents");
    // trailing slash on the source changes nothing
    f.copy(&["src/"], "/app2/", CopyOptions::default()).unwrap();
    assert_eq!(f.read("/app2/main.rs"), "fn main() {}");
    // overwrite an existing file
    f.copy(&["b.txt"], "/old.txt", CopyOptions::default()).unwrap();
    assert_eq!(f.read("/old.txt"), "B");
    // missing parents are created 0755
    f.copy(&["a.txt"], "/p/q/r/", CopyOptions::default()).unwrap();
    assert_eq!(f.read("/p/q/r/a.txt"), "A");
    assert_eq!(f.meta("/p/q").mode() & 0o7777, 0o755);
    // relative destination = from the rootfs root (the caller joins WORKDIR)
    f.copy(&["a.txt"], "rel/", CopyOptions::default()).unwrap();
    assert_eq!(f.read("/rel/a.txt"), "A");
    // `.` = the whole context
    f.copy(&["."], "/all", CopyOptions::default()).unwrap();
    assert_eq!(f.read("/all/src/lib/x.rs"), "x");
    // a file cannot replace a directory
    fs::create_dir_all(f.rootfs.join("dirhere/a.txt")).unwrap();
    let err = f.copy(&["a.txt"], "/dirhere/", CopyOptions::default()).unwrap_err();
    assert!(matches!(err, ContextError::IsADirectory { .. }), "{err}");
    // a directory cannot be copied onto a file
    let err = f.copy(&["src"], "/x", CopyOptions::default()).unwrap_err();
    assert!(matches!(err, ContextError::NotADirectory { .. }), "{err}");
}

#[test]
fn multiple_sources_need_a_directory() {
    let f = Fixture::new();
    f.file("a.txt", "A").file("b.txt", "B");
    let err = f.copy(&["a.txt", "b.txt"], "/dst", CopyOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "when using COPY with more than one source file, the destination must be a directory and end with a /"
    );
    assert!(!f.rootfs.join("dst").exists());
    f.copy(&["a.txt", "b.txt"], "/dst/", CopyOptions::default()).unwrap();
    assert_eq!((f.read("/dst/a.txt"), f.read("/dst/b.txt")), ("A".into(), "B".into()));
    f.copy(&["a.txt", "b.txt"], "/dst2", CopyOptions { dest_is_dir: true, ..Default::default() }).unwrap();
    assert_eq!(f.read("/dst2/b.txt"), "B");
    // one wildcard matching several files makes the destination a directory
    f.copy(&["*.txt"], "/dst3", CopyOptions::default()).unwrap();
    assert_eq!(f.read("/dst3/a.txt"), "A");
}

#[test]
fn globs_follow_go_filepath_match() {
    let f = Fixture::new();
    f.file("a.txt", "").file("b.txt", "").file(".hidden.txt", "").file("c.md", "").file("dir/x.txt", "");
    f.file("dir/y.rs", "").file("other/x.txt", "").file("[lit].txt", "").file("q1", "").file("q22", "");
    let c = f.context();
    let src = c.source();
    let got = |p: &[&str]| paths(&sel(&src, p).unwrap()).into_iter().map(|(p, _)| p.to_owned()).collect::<Vec<_>>();
    assert_eq!(got(&["*.txt"]), [".hidden.txt", "[lit].txt", "a.txt", "b.txt"]);
    assert_eq!(got(&["*/x.txt"]), ["dir/x.txt", "other/x.txt"]);
    assert_eq!(got(&["d*/*"]), ["dir/x.txt", "dir/y.rs"]);
    assert_eq!(got(&["[ab].txt"]), ["a.txt", "b.txt"]);
    assert_eq!(got(&["[^a].txt"]), ["b.txt"]);
    assert_eq!(got(&["q?"]), ["q1"]);
    assert_eq!(got(&["\\[lit\\].txt"]), ["[lit].txt"]);
    assert_eq!(got(&["/dir/./../dir//x.txt"]), ["dir/x.txt"]);
    let all = sel(&src, &["*"]).unwrap();
    assert!(all.items.iter().any(|i| i.path == "dir" && i.is_dir));
    assert_eq!(sel(&src, &["."]).unwrap().items[0].path, "");
    assert_eq!(sel(&src, &["/"]).unwrap().items[0].path, "");
}

#[test]
fn missing_sources_follow_buildkit() {
    let f = Fixture::new();
    f.file("a.txt", "A");
    let c = f.context();
    let src = c.source();
    let err = sel(&src, &["nope.txt"]).unwrap_err();
    assert_eq!(err.to_string(), "nope.txt: not found in build context");
    let err = sel(&src, &["a.txt", "nope.txt"]).unwrap_err();
    assert!(matches!(err, ContextError::NotFound { ref pattern } if pattern == "nope.txt"));
    // a wildcard that matches nothing is fine next to a source that selects something
    assert_eq!(paths(&sel(&src, &["*.none", "a.txt"]).unwrap()), [("a.txt", false)]);
    // ... and an error when every source selects nothing
    let err = sel(&src, &["*.none", "*.zip"]).unwrap_err();
    assert!(matches!(err, ContextError::NotFound { ref pattern } if pattern == "*.none"), "{err}");
    let err = sel(&src, &["[bad"]).unwrap_err();
    assert!(matches!(err, ContextError::NotFound { .. }), "{err}");
}

#[test]
fn dockerignore_hides_paths_and_per_dockerfile_file_wins() {
    let f = Fixture::new();
    f.file("secret.txt", "s").file("app/main.rs", "m").file("app/gen/out.rs", "o").file("keep/k", "k");
    f.file("logs/a.log", "").file("logs/keep.log", "");
    f.file(".dockerignore", "secret.txt\napp/gen\nlogs\n!logs/keep.log\n");
    let c = f.context();
    let err = sel(&c.source(), &["secret.txt"]).unwrap_err();
    assert!(matches!(err, ContextError::NotFound { .. }), "ignored paths are invisible: {err}");
    assert_eq!(paths(&sel(&c.source(), &["*.txt", "keep"]).unwrap()), [("keep", true)]);
    f.copy(&["."], "/out", CopyOptions::default()).unwrap();
    let t = tree::snapshot(&f.rootfs.join("out"));
    let names: BTreeSet<&str> = t.keys().map(|k| std::str::from_utf8(k).unwrap()).collect();
    let want: BTreeSet<&str> =
        ["app", "app/main.rs", "keep", "keep/k", "logs", "logs/keep.log", ".dockerignore"].into_iter().collect();
    assert_eq!(names, want);
    // the digest sees exactly the same files
    let d = digest(&c.source(), &sel(&c.source(), &["."]).unwrap(), &[], None).unwrap();
    let hashed: BTreeSet<&str> = d.files.iter().map(|(p, _)| p.as_str()).collect();
    let want_hashed: BTreeSet<&str> =
        ["", "app", "app/main.rs", "keep", "keep/k", "logs", "logs/keep.log", ".dockerignore"].into_iter().collect();
    assert_eq!(hashed, want_hashed);

    // <Dockerfile>.dockerignore replaces .dockerignore
    let special = f.base().join("app.Dockerfile.dockerignore");
    fs::write(&special, "keep\n").unwrap();
    let c = Context::open_dir(&f.ctx, Some(&DockerfileIgnore::Host(special))).unwrap();
    assert!(sel(&c.source(), &["secret.txt"]).is_ok());
    assert!(sel(&c.source(), &["keep"]).is_err());
    let missing = f.base().join("none.dockerignore");
    let c = Context::open_dir(&f.ctx, Some(&DockerfileIgnore::Host(missing))).unwrap();
    assert!(sel(&c.source(), &["secret.txt"]).is_err(), "a missing special file falls back to .dockerignore");
    fs::write(f.ctx.join(".dockerignore"), "bad[\n").unwrap();
    let err = Context::open_dir(&f.ctx, None).unwrap_err();
    assert!(matches!(err, ContextError::Ignore { .. }), "{err}");
}

#[test]
fn copy_exclude_patterns() {
    let f = Fixture::new();
    f.file("home1/a.txt", "").file("home1/b.md", "").file("home2.txt", "").file("house.md", "").file("homer", "h");
    let opts = CopyOptions { excludes: strings(&["*.txt", "*.md"]), ..Default::default() };
    f.copy(&["hom*"], "/mydir/", opts).unwrap();
    let t = tree::snapshot(&f.rootfs.join("mydir"));
    let names: Vec<&str> = t.keys().map(|k| std::str::from_utf8(k).unwrap()).collect();
    assert_eq!(names, ["homer"], "home2.txt and everything in home1 (whose contents land in /mydir) are excluded");
    let opts = CopyOptions { excludes: strings(&["bad["]), ..Default::default() };
    assert!(matches!(f.copy(&["homer"], "/x", opts), Err(ContextError::Exclude { .. })));
}

// ---------------------------------------------------------------------------------------------
// Ownership, modes, times, links

#[test]
fn ownership_chmod_and_times() {
    let f = Fixture::new();
    f.file("dir/sub/file", "data");
    lchown(f.ctx.join("dir/sub/file"), Some(1234), Some(4321)).unwrap();
    lchown(f.ctx.join("dir/sub"), Some(1234), Some(4321)).unwrap();
    fs::set_permissions(f.ctx.join("dir/sub/file"), fs::Permissions::from_mode(0o4751)).unwrap();
    fs::set_permissions(f.ctx.join("dir/sub"), fs::Permissions::from_mode(0o750)).unwrap();
    set_mtime(&f.ctx.join("dir/sub/file"), 1_500_000_000, 123_456_789);
    set_mtime(&f.ctx.join("dir/sub"), 1_400_000_000, 5);

    // Context files: owner 0:0, modes and times kept.
    f.copy(&["dir"], "/ctx", CopyOptions::default()).unwrap();
    let m = f.meta("/ctx/sub/file");
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 0, 0o4751));
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_500_000_000, 123_456_789));
    let d = f.meta("/ctx/sub");
    assert_eq!((d.uid(), d.mode() & 0o7777, d.mtime()), (0, 0o750, 1_400_000_000));

    // From a stage / image: ids kept.
    let src = SourceRoot::dir(&f.ctx);
    let s = sel(&src, &["dir"]).unwrap();
    copy(&src, &s, &f.rootfs, "/stage", &CopyOptions::default()).unwrap();
    let m = f.meta("/stage/sub/file");
    assert_eq!((m.uid(), m.gid()), (1234, 4321));

    // --chown and --chmod: every copied entry and every created parent (BuildKit's
    // testCopyChmod: created parents take the --chmod bits too).
    let opts = CopyOptions { chown: Some((5, 6)), chmod: Some(Chmod::Octal(0o640)), ..Default::default() };
    f.copy(&["dir"], "/owned/deep/", opts).unwrap();
    // /owned/deep is the destination of `dir` (created here): a created directory like /owned.
    for p in ["/owned", "/owned/deep", "/owned/deep/sub", "/owned/deep/sub/file"] {
        let m = f.meta(p);
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (5, 6, 0o640), "{p}");
    }
}

/// A symbolic `--chmod` applies to each entry's own bits (BuildKit's testChmodNonOctal); the
/// directories created on the way stay 0755 (BuildKit gives `MkdirAll` no mode then).
#[test]
fn symbolic_chmod_applies_to_each_entry() {
    let f = Fixture::new();
    f.file("tree/run.sh", "#!/bin/sh").file("tree/data", "d").file("tree/sub/f", "f");
    for (rel, mode) in [("tree/run.sh", 0o754), ("tree/data", 0o666), ("tree/sub/f", 0o600), ("tree/sub", 0o700)] {
        fs::set_permissions(f.ctx.join(rel), fs::Permissions::from_mode(mode)).unwrap();
    }
    let opts = CopyOptions { chmod: Some("go-w,a+X".parse::<Chmod>().unwrap()), ..Default::default() };
    f.copy(&["tree"], "/made/here/", opts).unwrap();
    for (p, want) in [
        ("/made", 0o755),
        ("/made/here", 0o755),
        ("/made/here/run.sh", 0o755),
        ("/made/here/data", 0o644),
        ("/made/here/sub", 0o711),
        ("/made/here/sub/f", 0o600),
    ] {
        assert_eq!(f.meta(p).mode() & 0o7777, want, "{p}");
    }
}

#[test]
fn symlinks_are_copied_as_links_and_hardlinks_kept() {
    // B2: links are copied with their exact text, never dereferenced.
    let f = Fixture::new();
    f.file("sub/real", "r").file("h1", "shared");
    symlink("../../../etc/group", f.ctx.join("sub/bar")).unwrap();
    symlink("/etc/passwd", f.ctx.join("foo")).unwrap();
    fs::hard_link(f.ctx.join("h1"), f.ctx.join("sub/h2")).unwrap();
    let report = f.copy(&["."], "/ctx", CopyOptions::default()).unwrap();
    assert_eq!(fs::read_link(f.rootfs.join("ctx/sub/bar")).unwrap(), Path::new("../../../etc/group"));
    assert_eq!(fs::read_link(f.rootfs.join("ctx/foo")).unwrap(), Path::new("/etc/passwd"));
    assert_eq!(f.meta("/ctx/foo").uid(), 0);
    let (a, b) = (f.meta("/ctx/h1"), f.meta("/ctx/sub/h2"));
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "hardlinks inside one COPY stay linked");
    assert_eq!(report.files, 5);
    assert_eq!(report.bytes, 7, "the second link costs no bytes");

    // A symlink named by the pattern is followed (inside the root): its target's content lands
    // under the pattern's name.
    symlink("sub/real", f.ctx.join("link")).unwrap();
    f.copy(&["link"], "/followed/", CopyOptions::default()).unwrap();
    assert_eq!(f.read("/followed/link"), "r");
    assert!(f.meta("/followed/link").file_type().is_file());
}

/// `security.capability` v2 with `cap_net_raw` permitted and effective.
const CAP_NET_RAW: [u8; 20] = [0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

#[test]
fn xattrs_are_copied_and_hashed() {
    use rustix::fs::XattrFlags;
    let f = Fixture::new();
    f.file("bin/ping", "ping");
    rustix::fs::lsetxattr(f.ctx.join("bin/ping"), "security.capability", &CAP_NET_RAW, XattrFlags::empty()).unwrap();
    rustix::fs::lsetxattr(f.ctx.join("bin/ping"), "user.note", b"kept", XattrFlags::empty()).unwrap();
    rustix::fs::lsetxattr(f.ctx.join("bin"), "user.dir", b"d", XattrFlags::empty()).unwrap();
    let before = digest_of(&f.ctx, &["."], None);
    // --chown must not drop the capability (chown clears it, so xattrs are set after).
    let report = f.copy(&["."], "/", CopyOptions { chown: Some((5, 6)), ..Default::default() }).unwrap();
    assert_eq!(report.xattrs_skipped, 0);
    let t = tree::snapshot(&f.rootfs);
    let ping = &t[&b"bin/ping"[..]];
    assert_eq!(ping.xattrs.get(&b"security.capability"[..]).map(Vec::as_slice), Some(&CAP_NET_RAW[..]));
    assert_eq!(ping.xattrs.get(&b"user.note"[..]).map(Vec::as_slice), Some(&b"kept"[..]));
    assert_eq!(t[&b"bin"[..]].xattrs.get(&b"user.dir"[..]).map(Vec::as_slice), Some(&b"d"[..]));
    rustix::fs::lsetxattr(f.ctx.join("bin/ping"), "user.note", b"changed", XattrFlags::empty()).unwrap();
    assert_ne!(digest_of(&f.ctx, &["."], None).digest, before.digest, "a file's xattr");
    rustix::fs::lsetxattr(f.ctx.join("bin/ping"), "user.note", b"kept", XattrFlags::empty()).unwrap();
    assert_eq!(digest_of(&f.ctx, &["."], None).digest, before.digest);
    rustix::fs::lremovexattr(f.ctx.join("bin"), "user.dir").unwrap();
    assert_ne!(digest_of(&f.ctx, &["."], None).digest, before.digest, "a directory's xattr");
}

#[test]
fn write_inline_follows_the_dest_rules() {
    let f = Fixture::new();
    let opts = CopyOptions::default();
    write_inline(&f.rootfs, "/etc/app.conf", "EOF", b"k=v\n", 1_600_000_000, &opts).unwrap();
    assert_eq!(f.read("/etc/app.conf"), "k=v\n");
    let m = f.meta("/etc/app.conf");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.mtime()), (0o644, 0, 1_600_000_000));
    write_inline(&f.rootfs, "/scripts/", "run.sh", b"#!/bin/sh\n", 0, &opts).unwrap();
    assert_eq!(f.read("/scripts/run.sh"), "#!/bin/sh\n");
    write_inline(&f.rootfs, "/scripts", "other.sh", b"x", 0, &opts).unwrap();
    assert_eq!(f.read("/scripts/other.sh"), "x", "an existing directory takes the name");
    let opts = CopyOptions { chown: Some((7, 8)), chmod: Some(Chmod::Octal(0o755)), ..Default::default() };
    write_inline(&f.rootfs, "/bin/tool", "EOF", b"y", 0, &opts).unwrap();
    let m = f.meta("/bin/tool");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 7, 8));
    // A symbolic --chmod applies to the heredoc's 0644 (BuildKit copies a 0644 file).
    let opts = CopyOptions { chmod: Some("u+x,o=".parse::<Chmod>().unwrap()), ..Default::default() };
    write_inline(&f.rootfs, "/bin/sym", "EOF", b"z", 0, &opts).unwrap();
    assert_eq!(f.meta("/bin/sym").mode() & 0o7777, 0o740);
    let err = write_inline(&f.rootfs, "/x/", ".wh.bad", b"", 0, &CopyOptions::default()).unwrap_err();
    assert!(matches!(err, ContextError::ReservedName { .. }), "{err}");
}

#[test]
fn chown_names_come_from_the_rootfs() {
    let f = Fixture::new();
    fs::create_dir_all(f.rootfs.join("etc")).unwrap();
    fs::create_dir_all(f.rootfs.join("data")).unwrap();
    fs::write(f.rootfs.join("data/passwd"), "app:x:1000:1001::/home/app:/bin/sh\n").unwrap();
    fs::write(f.rootfs.join("etc/group"), "staff:x:50:\n").unwrap();
    // An absolute symlink is resolved inside the rootfs, never on the host.
    symlink("/../../../data/passwd", f.rootfs.join("etc/passwd")).unwrap();
    assert_eq!(resolve_chown(&f.rootfs, "app").unwrap(), (1000, 1001));
    assert_eq!(resolve_chown(&f.rootfs, "app:staff").unwrap(), (1000, 50));
    assert_eq!(resolve_chown(&f.rootfs, "42").unwrap(), (42, 42));
    assert!(matches!(resolve_chown(&f.rootfs, "root"), Err(ContextError::UnknownUser { .. })), "not the host's root");
}
