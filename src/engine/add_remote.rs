//! `ADD` of remote sources: files from `http(s)://` URLs and trees from git repositories
//! (fetched by [`crate::remote`]), as one layer step.
//!
//! The key is the content, known before the lookup: for a URL the sha256 of its body (with the
//! file's name and `Last-Modified`, which make its mtime), found with a conditional request
//! against the version `cache.db` remembers — an unchanged resource answers `304` and nothing
//! is downloaded; for a git source the commit its ref resolves to (`git ls-remote`), with
//! `subdir`, `keep-git-dir` and `submodules`. `--checksum` is checked against the body's digest
//! or the commit before any layer is written. On a miss the work copies the downloaded file
//! (mode 0600, mtime from `Last-Modified`, owner 0:0 or `--chown`, `--chmod`; never unpacked) or
//! the checked-out tree (commit-time mtimes when `SOURCE_DATE_EPOCH` is set) into the step's
//! rootfs with `context::copy`'s rules. Downloads and checkouts live in a scratch directory of
//! the store, removed when the step ends.

use std::path::{Path, PathBuf};

use super::layers::{self, LayerStep};
use super::stage::{State, expand};
use super::step::StepCtx;
use super::{BuildError, Refusal};
use crate::cache::{KeyInputs, RemoteVersion};
use crate::context::{self, Chmod, CopyOptions, SourceRoot};
use crate::dockerfile::{AddInstruction, Span};
use crate::oci::Digest;
use crate::remote::git::{Resolved, set_mtimes};
use crate::remote::http::url_file_name;
use crate::remote::{
    Download, Fetched, GitFetcher, GitSource, HttpClient, HttpOptions, RefKind, RemoteError, RemoteSource, Validators,
    redact,
};

/// The file name BuildKit gives a URL whose path names none.
const UNNAMED: &str = "__unnamed__";

/// An `ADD` whose sources are all remote, with its words expanded.
pub(crate) struct RemoteAdd<'a> {
    pub add: &'a AddInstruction,
    pub sources: Vec<RemoteSource>,
    pub dest_word: String,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<Chmod>,
    pub excludes: Vec<String>,
    /// The instruction as shown (task, history, key).
    pub shown: String,
    /// `ADD --link`: the layer is made on nothing and keyed without the layers below.
    pub link: bool,
}

/// The remote sources among `words` (an ADD's expanded sources), or `None` when none is
/// remote. Remote and local sources together are refused, as is `--checksum` or
/// `--keep-git-dir` without a source it applies to.
pub(crate) fn classify(
    span: Span,
    add: &AddInstruction,
    words: &[String],
    inline: bool,
) -> Result<Option<Vec<RemoteSource>>, BuildError> {
    let mut remote = Vec::new();
    for word in words {
        match crate::remote::source::parse(word) {
            Ok(Some(source)) => remote.push(source),
            Ok(None) => {}
            Err(e) => return Err(step_error(span, e)),
        }
    }
    let refused = |refusal| Err(BuildError::Refused { span, refusal });
    if remote.is_empty() {
        if add.checksum.is_some() {
            return refused(Refusal::AddChecksum);
        }
        if add.keep_git_dir.is_some() {
            return refused(Refusal::AddKeepGitDir);
        }
        return Ok(None);
    }
    if remote.len() != words.len() || inline {
        let url = words.iter().find(|w| crate::graph::is_remote_source(w)).cloned().unwrap_or_default();
        return refused(Refusal::AddRemoteMixed { url: redact(&url) });
    }
    if add.checksum.is_some() && remote.len() != 1 {
        return refused(Refusal::AddChecksum);
    }
    if add.keep_git_dir.is_some() && !remote.iter().any(|s| matches!(s, RemoteSource::Git(_))) {
        return refused(Refusal::AddKeepGitDir);
    }
    if add.unpack == Some(true) && remote.iter().any(|s| matches!(s, RemoteSource::Http(_))) {
        return refused(Refusal::AddRemoteUnpack);
    }
    Ok(Some(remote))
}

fn step_error(span: Span, source: RemoteError) -> BuildError {
    BuildError::Remote { span, source: Box::new(source) }
}

/// One source, fetched or resolved far enough to key the step.
enum Prepared {
    Http {
        url: url::Url,
        shown: String,
        version: RemoteVersion,
        name: String,
        mtime: Option<i64>,
        /// The body, unless a `304` said the remembered version is current.
        file: Option<Box<Fetched>>,
    },
    Git {
        source: GitSource,
        resolved: Resolved,
    },
}

/// Runs one `ADD` of remote sources (or takes it from the cache).
pub(crate) fn add(sc: &StepCtx<'_>, state: &mut State, step: RemoteAdd<'_>) -> Result<(), BuildError> {
    let ctx = sc.build;
    let span = sc.span();
    let checksum = step.add.checksum.as_deref().map(|c| expand(ctx, state, span, c)).transpose()?;
    let scratch = ctx.builder.store.scratch_dir("add-remote")?;
    let proxy_env = crate::dockerfile::args::proxy_env(&ctx.options.build_args);
    let http = HttpClient::new(&HttpOptions {
        timeout: ctx.options.remote_timeout,
        proxy_env: proxy_env.clone(),
        max_bytes: ctx.options.remote_max_bytes,
    })
    .map_err(|e| step_error(span, e))?;
    let git = GitFetcher::new(scratch.path(), proxy_env, ctx.options.ssh.get("default").cloned())
        .map_err(|e| step_error(span, e))?;
    let no_cache =
        ctx.options.no_cache || ctx.options.no_cache_filter.iter().any(|s| s.eq_ignore_ascii_case(&state.name));

    let mut inputs = KeyInputs::default();
    if step.link {
        inputs.add("link", "independent of the layers below".to_string());
    } else {
        layers::add_parent(state, &mut inputs);
    }
    inputs.add("instruction", step.shown.clone());
    inputs.add("dest", step.dest.clone());
    let mut prepared = Vec::new();
    for source in &step.sources {
        // The fetch is a task of its own, named by what it fetches (as BuildKit's source vertex).
        let task = ctx.builder.reporter.start(|| redact(&source_word(source)));
        let p = match source {
            RemoteSource::Http(url) => prepare_http(sc, &http, url, no_cache, scratch.path(), &task),
            RemoteSource::Git(g) => prepare_git(&git, g, step.add.keep_git_dir).map_err(|e| step_error(span, e)),
        };
        let p = task.finish(p)?;
        verify_checksum(span, &p, checksum.as_deref())?;
        key(&mut inputs, &p, ctx.options.source_date_epoch);
        prepared.push(p);
    }
    inputs.add("checksum", checksum.clone().unwrap_or_default());
    inputs.add("chown", step.chown.clone().unwrap_or_default());
    inputs.add("chmod", step.chmod.as_ref().map(Chmod::to_string).unwrap_or_default());
    inputs.add("platform", state.platform.to_string());

    let title = sc.title(state, &step.shown);
    let layer = LayerStep { inputs, files: None, title, created_by: step.shown.clone(), independent: step.link };
    let dest_is_dir = step.dest_word.ends_with('/') || step.sources.len() > 1;
    layers::layer_step(sc, state, layer, |run, rootfs| {
        let mut opts = CopyOptions {
            chown: None,
            chmod: step.chmod.clone(),
            unpack_archives: false,
            from_context: true,
            excludes: step.excludes.clone(),
            dest_is_dir,
            parents: false,
        };
        if let Some(chown) = &step.chown {
            let chown = if step.link { super::copy::link_chown(chown) } else { chown.clone() };
            opts.chown = Some(super::owners::resolve(rootfs, &chown, sc.span(), &format!("--chown={chown}"))?);
        }
        for (i, p) in prepared.into_iter().enumerate() {
            let dir = scratch.path().join(format!("src-{i}"));
            let (root, pattern) = match p {
                Prepared::Http { url, shown, version, name, mtime, file } => {
                    let file = match file {
                        Some(file) => *file,
                        None => refetch(&http, &url, &shown, &version.digest, scratch.path(), run.task)
                            .map_err(|e| step_error(span, e))?,
                    };
                    stage_file(&dir, &file.path, &name, mtime)?;
                    (dir, glob_escape(&name))
                }
                Prepared::Git { source, resolved } => {
                    let checkout = git.checkout(&source, &resolved, &dir).map_err(|e| step_error(span, e))?;
                    if ctx.options.source_date_epoch.is_some() {
                        set_mtimes(&checkout.dir, checkout.commit_time).map_err(|e| step_error(span, e))?;
                    }
                    (checkout.dir, source.subdir.clone().unwrap_or_else(|| ".".to_string()))
                }
            };
            let src = SourceRoot::dir(&root);
            let selection = context::select(&src, &[pattern], &opts.excludes)?;
            context::copy(&src, &selection, rootfs, &step.dest, &opts)?;
        }
        Ok(())
    })
}

/// What a source fetches, for its task: the URL, or the repository and its ref.
fn source_word(source: &RemoteSource) -> String {
    match source {
        RemoteSource::Http(url) => url.to_string(),
        RemoteSource::Git(g) => match &g.reference {
            RefKind::Head => g.remote.clone(),
            RefKind::Any(r) | RefKind::Tag(r) | RefKind::Branch(r) => format!("{}#{r}", g.remote),
        },
    }
}

/// A conditional `GET` against the remembered version (unless the cache is not used): a `304`
/// keeps it, a `200` downloads the new one and remembers it.
fn prepare_http(
    sc: &StepCtx<'_>,
    http: &HttpClient,
    url: &url::Url,
    no_cache: bool,
    scratch: &Path,
    task: &crate::progress::Task,
) -> Result<Prepared, BuildError> {
    let records = &sc.build.builder.caches.records;
    let shown = redact(url.as_str());
    let known = match no_cache {
        true => None,
        false => records.remote_version(&shown)?,
    };
    let validators =
        known.as_ref().map(|k| Validators { etag: k.etag.clone(), last_modified: k.last_modified.clone() });
    let conditional = validators.as_ref().filter(|v| !v.is_empty());
    let (version, file) = match http.get(url, conditional, scratch, task).map_err(|e| step_error(sc.span(), e))? {
        Download::NotModified => (known.expect("a conditional request had validators"), None),
        Download::Fetched(file) => {
            let version = RemoteVersion {
                digest: file.digest,
                etag: file.validators.etag.clone(),
                last_modified: file.validators.last_modified.clone(),
                name: file.disposition_name.clone(),
            };
            records.remember_remote(&shown, &version)?;
            (version, Some(Box::new(file)))
        }
    };
    // The name of the URL's path, else the one Content-Disposition gave, else BuildKit's.
    let name = url_file_name(url).or_else(|| version.name.clone()).unwrap_or_else(|| UNNAMED.to_string());
    let mtime = version.last_modified.as_deref().and_then(crate::oci::time::parse_http_date);
    Ok(Prepared::Http { url: url.clone(), shown, version, name, mtime, file })
}

fn prepare_git(git: &GitFetcher, source: &GitSource, keep_flag: Option<bool>) -> Result<Prepared, RemoteError> {
    let mut source = source.clone();
    // `--keep-git-dir` and `?keep-git-dir=`: the flag, when given, decides.
    source.keep_git_dir = Some(keep_flag.or(source.keep_git_dir).unwrap_or(false));
    let resolved = git.resolve(&source)?;
    if let Some(sum) = &source.checksum
        && !resolved.commit.starts_with(&sum.to_ascii_lowercase())
    {
        return Err(RemoteError::ChecksumMismatch {
            url: redact(&source.remote),
            expected: sum.clone(),
            actual: resolved.commit,
        });
    }
    Ok(Prepared::Git { source, resolved })
}

/// `--checksum`: `sha256:<hex>` for a URL (its body), a commit id or prefix for git.
fn verify_checksum(span: Span, p: &Prepared, checksum: Option<&str>) -> Result<(), BuildError> {
    let Some(sum) = checksum else { return Ok(()) };
    let (url, actual, matches) = match p {
        Prepared::Http { shown, version, .. } => {
            let expected: Digest = sum.parse().map_err(|_| {
                step_error(
                    span,
                    RemoteError::BadChecksum { value: sum.to_string(), reason: "expected sha256:<64 hex digits>" },
                )
            })?;
            (shown.clone(), version.digest.to_string(), expected == version.digest)
        }
        Prepared::Git { source, resolved } => {
            let sum = sum.strip_prefix("sha1:").unwrap_or(sum).to_ascii_lowercase();
            let hex = sum.len() >= 7 && sum.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex {
                let e = RemoteError::BadChecksum { value: sum, reason: "expected a commit id (7 to 40 hex digits)" };
                return Err(step_error(span, e));
            }
            (redact(&source.remote), resolved.commit.clone(), resolved.commit.starts_with(&sum))
        }
    };
    match matches {
        true => Ok(()),
        false => Err(step_error(span, RemoteError::ChecksumMismatch { url, expected: sum.to_string(), actual })),
    }
}

/// The key components of one source.
fn key(inputs: &mut KeyInputs, p: &Prepared, epoch: Option<i64>) {
    match p {
        Prepared::Http { shown, version, name, .. } => {
            inputs.add(format!("url:{shown}"), version.digest.to_string());
            inputs.add("name", name.clone());
            inputs.add("mtime", version.last_modified.clone().unwrap_or_default());
        }
        Prepared::Git { source, resolved } => {
            inputs.add(format!("git:{}", redact(&source.remote)), resolved.commit.clone());
            inputs.add("subdir", source.subdir.clone().unwrap_or_default());
            inputs.add("keep-git-dir", source.keep_git_dir.unwrap_or(false).to_string());
            inputs.add("submodules", source.submodules.to_string());
            inputs.add("mtime", if epoch.is_some() { "commit" } else { "checkout" });
        }
    }
}

/// Downloads a URL again for a step whose conditional request said "not modified" but whose
/// record is gone: the body must be the version the step was keyed on.
fn refetch(
    http: &HttpClient,
    url: &url::Url,
    shown: &str,
    expected: &Digest,
    scratch: &Path,
    task: &crate::progress::Task,
) -> Result<Fetched, RemoteError> {
    match http.get(url, None, scratch, task)? {
        Download::Fetched(fetched) => crate::remote::http::check_digest(&fetched, shown, expected).map(|()| fetched),
        // Only a conditional request takes a 304 as "not modified".
        Download::NotModified => Err(RemoteError::Status { url: shown.to_string(), status: 304 }),
    }
}

/// Puts the downloaded file at `dir/name`, mode 0600, with its mtime.
fn stage_file(dir: &Path, file: &Path, name: &str, mtime: Option<i64>) -> Result<(), BuildError> {
    std::fs::create_dir_all(dir).map_err(|e| BuildError::io("create", dir, e))?;
    let target: PathBuf = dir.join(name);
    std::fs::rename(file, &target).map_err(|e| BuildError::io("move a download to", &target, e))?;
    let f = std::fs::File::open(&target).map_err(|e| BuildError::io("open", &target, e))?;
    rustix::fs::fchmod(&f, rustix::fs::Mode::from_raw_mode(0o600))
        .map_err(|e| BuildError::io("chmod", &target, e.into()))?;
    if let Some(secs) = mtime {
        let t = rustix::fs::Timespec { tv_sec: secs, tv_nsec: 0 };
        rustix::fs::futimens(&f, &rustix::fs::Timestamps { last_access: t, last_modification: t })
            .map_err(|e| BuildError::io("set times of", &target, e.into()))?;
    }
    Ok(())
}

/// A file name as a `select` pattern that matches only itself.
fn glob_escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '*' | '?' | '[' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_for_select() {
        assert_eq!(glob_escape("a*b?[c]\\d"), "a\\*b\\?\\[c]\\\\d");
        assert_eq!(glob_escape("plain.tar.gz"), "plain.tar.gz");
    }
}
