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
    Chmod, Context, ContextError, CopyOptions, CopyReport, DockerfileIgnore, Selection, SourceRoot, StatCache, copy,
    digest, resolve_chown, select, write_inline,
};

mod archives;
mod catalogue;
mod digest;
mod rules;

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
