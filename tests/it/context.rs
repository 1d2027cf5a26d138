//! The `context` module with real files: Docker's COPY rules, ownership, links, the content
//! digest and its stat cache, the malicious-context catalogue (A2, B1–B7) and ADD archives
//! (C1–C5 as a local archive).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::fs::{CWD, FileType, Mode, Timespec, Timestamps};
use slipway::context::{
    Context, ContextError, CopyOptions, CopyReport, Selection, SourceRoot, StatCache, copy, digest, resolve_chown,
    select, write_inline,
};

use crate::support::TestContext;
use crate::support::rawtar::RawTar;
use crate::support::tree;

/// A test's context directory and destination rootfs.
struct Fixture {
    _t: TestContext,
    ctx: PathBuf,
    rootfs: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let t = TestContext::new();
        let ctx = t.path().join("ctx");
        let rootfs = t.path().join("rootfs");
        fs::create_dir_all(&ctx).unwrap();
        fs::create_dir_all(&rootfs).unwrap();
        Fixture { _t: t, ctx, rootfs }
    }

    fn base(&self) -> &Path {
        self._t.path()
    }

    /// Writes `content` at `rel` in the context, creating parents.
    fn file(&self, rel: &str, content: &str) -> &Fixture {
        let path = self.ctx.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
        self
    }

    fn context(&self) -> Context {
        Context::open_dir(&self.ctx, None).unwrap()
    }

    /// COPY `patterns` to `dest` from the context with `opts` (`from_context` set).
    fn copy(&self, patterns: &[&str], dest: &str, opts: CopyOptions) -> Result<CopyReport, ContextError> {
        let c = self.context();
        let opts = CopyOptions { from_context: true, ..opts };
        let sel = select(&c.source(), &strings(patterns), &opts.excludes)?;
        copy(&c.source(), &sel, &self.rootfs, dest, &opts)
    }

    fn read(&self, dest: &str) -> String {
        fs::read_to_string(self.rootfs.join(dest.trim_start_matches('/'))).unwrap()
    }

    fn meta(&self, dest: &str) -> fs::Metadata {
        fs::symlink_metadata(self.rootfs.join(dest.trim_start_matches('/'))).unwrap()
    }
}

fn strings(patterns: &[&str]) -> Vec<String> {
    patterns.iter().map(|p| (*p).to_owned()).collect()
}

fn sel(src: &SourceRoot, patterns: &[&str]) -> Result<Selection, ContextError> {
    select(src, &strings(patterns), &[])
}

fn paths(sel: &Selection) -> Vec<(&str, bool)> {
    sel.items.iter().map(|i| (i.path.as_str(), i.is_dir)).collect()
}

fn digest_of(dir: &Path, patterns: &[&str], cache: Option<&StatCache>) -> slipway::context::SourceDigest {
    let src = SourceRoot::dir(dir);
    let sel = sel(&src, patterns).unwrap();
    digest(&src, &sel, &[], cache).unwrap()
}

fn set_mtime(path: &Path, secs: i64, nsecs: i64) {
    let t = Timespec { tv_sec: secs, tv_nsec: nsecs as _ };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps { last_access: t, last_modification: t },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Docker's COPY rule table

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
    let c = Context::open_dir(&f.ctx, Some(&special)).unwrap();
    assert!(sel(&c.source(), &["secret.txt"]).is_ok());
    assert!(sel(&c.source(), &["keep"]).is_err());
    let missing = f.base().join("none.dockerignore");
    let c = Context::open_dir(&f.ctx, Some(&missing)).unwrap();
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

    // --chown and --chmod: every copied entry and every created parent.
    let opts = CopyOptions { chown: Some((5, 6)), chmod: Some(0o640), ..Default::default() };
    f.copy(&["dir"], "/owned/deep/", opts).unwrap();
    let m = f.meta("/owned");
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (5, 6, 0o755), "a created parent");
    // /owned/deep is the copy of `dir` itself (created here), so it takes --chmod too.
    for p in ["/owned/deep", "/owned/deep/sub", "/owned/deep/sub/file"] {
        let m = f.meta(p);
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (5, 6, 0o640), "{p}");
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
    let opts = CopyOptions { chown: Some((7, 8)), chmod: Some(0o755), ..Default::default() };
    write_inline(&f.rootfs, "/bin/tool", "EOF", b"y", 0, &opts).unwrap();
    let m = f.meta("/bin/tool");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 7, 8));
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

// ---------------------------------------------------------------------------------------------
// The digest and the stat cache

#[test]
fn digest_ignores_mtime_and_location_but_not_content_mode_owner_or_links() {
    let t = TestContext::new();
    let make = |name: &str| {
        let dir = t.path().join(name);
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::write(dir.join("src/main.rs"), "fn main() {}").unwrap();
        fs::write(dir.join("README"), "hi").unwrap();
        symlink("src/main.rs", dir.join("link")).unwrap();
        dir
    };
    let a = make("a");
    let b = make("deeper/b");
    let base = digest_of(&a, &["."], None);
    assert_eq!(base.digest, digest_of(&b, &["."], None).digest, "the absolute path does not matter");
    assert_eq!(base.files.len(), 5, "{:?}", base.files);

    set_mtime(&a.join("src/main.rs"), 1, 0);
    set_mtime(&a.join("src"), 2, 0);
    assert_eq!(digest_of(&a, &["."], None).digest, base.digest, "touch does not change the digest");

    fs::write(a.join("src/main.rs"), "fn main() { x }").unwrap();
    let changed = digest_of(&a, &["."], None);
    assert_ne!(changed.digest, base.digest);
    let diff: Vec<&str> =
        base.files.iter().zip(&changed.files).filter(|(x, y)| x != y).map(|(x, _)| x.0.as_str()).collect();
    assert_eq!(diff, ["src/main.rs"], "the listing names exactly the changed file");
    fs::write(a.join("src/main.rs"), "fn main() {}").unwrap();
    assert_eq!(digest_of(&a, &["."], None).digest, base.digest);

    fs::set_permissions(a.join("README"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_ne!(digest_of(&a, &["."], None).digest, base.digest, "mode");
    fs::set_permissions(a.join("README"), fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(digest_of(&a, &["."], None).digest, base.digest);

    lchown(a.join("README"), Some(7), None).unwrap();
    assert_ne!(digest_of(&a, &["."], None).digest, base.digest, "uid");
    lchown(a.join("README"), Some(0), None).unwrap();

    fs::remove_file(a.join("link")).unwrap();
    symlink("README", a.join("link")).unwrap();
    assert_ne!(digest_of(&a, &["."], None).digest, base.digest, "link target");
    fs::remove_file(a.join("link")).unwrap();
    symlink("src/main.rs", a.join("link")).unwrap();
    assert_eq!(digest_of(&a, &["."], None).digest, base.digest);

    fs::rename(a.join("README"), a.join("README2")).unwrap();
    assert_ne!(digest_of(&a, &["."], None).digest, base.digest, "a rename");
    fs::rename(a.join("README2"), a.join("README")).unwrap();

    // What is selected matters, not only what is in the directory.
    assert_ne!(digest_of(&a, &["src"], None).digest, digest_of(&a, &["."], None).digest);
    assert_eq!(digest_of(&a, &["src"], None).digest, digest_of(&b, &["src"], None).digest);
}

#[test]
fn stat_cache_avoids_reading_unchanged_files() {
    let t = TestContext::new();
    let dir = t.path().join("ctx");
    for i in 0..50 {
        fs::create_dir_all(dir.join(format!("d{}", i % 5))).unwrap();
        fs::write(dir.join(format!("d{}/f{i}", i % 5)), format!("content {i}")).unwrap();
    }
    let cache = StatCache::open(&t.path().join("stat.db")).unwrap();
    // Rows are only trusted once the file's ctime is older than the read by the racy window.
    std::thread::sleep(Duration::from_millis(120));
    let cold = digest_of(&dir, &["."], Some(&cache));
    assert_eq!(cold.files_read, 50);
    assert_eq!(cache.len().unwrap(), 50);
    let warm = digest_of(&dir, &["."], Some(&cache));
    assert_eq!(warm.files_read, 0, "nothing read with a warm cache");
    assert_eq!(warm.digest, cold.digest);

    // In place, same size, mtime restored: ctime still tells.
    let path = dir.join("d3/f3");
    let before = fs::metadata(&path).unwrap();
    fs::write(&path, "CONTENT 3").unwrap();
    set_mtime(&path, before.mtime(), before.mtime_nsec());
    let after = digest_of(&dir, &["."], Some(&cache));
    assert_eq!(after.files_read, 1);
    assert_ne!(after.digest, cold.digest);
    assert_eq!(after.digest, digest_of(&dir, &["."], None).digest, "the cache never changes the answer");

    // A copy of the tree elsewhere is a different root: read again, same digest.
    let other = t.path().join("other");
    fs::rename(&dir, &other).unwrap();
    let moved = digest_of(&other, &["."], Some(&cache));
    assert_eq!((moved.files_read, moved.digest), (50, after.digest));

    // Prune drops rows not used lately.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(cache.prune(Duration::from_millis(10)).unwrap(), 100);
    assert!(cache.is_empty().unwrap());
}

#[test]
fn stat_cache_is_shared_by_concurrent_users() {
    let t = TestContext::new();
    let dir = t.path().join("ctx");
    for i in 0..20 {
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("f{i}")), format!("{i}")).unwrap();
    }
    let db = t.path().join("stat.db");
    let want = digest_of(&dir, &["."], None).digest;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let cache = StatCache::open(&db).unwrap();
                for _ in 0..5 {
                    assert_eq!(digest_of(&dir, &["."], Some(&cache)).digest, want);
                }
            });
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Catalogue A2, B1–B7

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
        .args(["context::b5_unreadable_child", "--exact", "--nocapture", "--test-threads=1"])
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

// ---------------------------------------------------------------------------------------------
// Destination confinement and ADD archives (C1–C5 as a local archive)

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

    // An absolute host path in the rootfs is resolved inside it (where it does not exist).
    let err = f.copy(&["a.txt"], "/app/", CopyOptions::default());
    assert!(err.is_err(), "a symlink to a missing directory is not created through");
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
    let c = Context::from_tar(&e.finish().unwrap()[..], &scratch).unwrap();
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
    let err =
        Context::from_tar(Failing { data: std::io::Cursor::new(tar.clone()), left: 100_000 }, &scratch).unwrap_err();
    assert!(matches!(err, ContextError::Open { .. }), "{err}");
    // Bytes after the end-of-archive marker are drained and refused by the strict reader,
    // without the writer ever blocking on a full pipe.
    let scratch = t.path().join("s2");
    fs::create_dir_all(&scratch).unwrap();
    let mut padded = tar.clone();
    padded.extend(vec![1u8; 1 << 20]);
    let err = Context::from_tar(&padded[..], &scratch).unwrap_err();
    assert!(matches!(err, ContextError::Extract { .. }), "{err}");
    // Not an archive at all.
    let scratch = t.path().join("s3");
    fs::create_dir_all(&scratch).unwrap();
    assert!(Context::from_tar(&b"hello, not a tar"[..], &scratch).is_err());
    // The good stream.
    let scratch = t.path().join("s4");
    fs::create_dir_all(&scratch).unwrap();
    let c = Context::from_tar(&tar[..], &scratch).unwrap();
    assert_eq!(c.read_file("a", 1 << 20).unwrap().len(), big.len());
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
