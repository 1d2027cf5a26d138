//! `RUN --mount`: each flag resolved against the stage into what it adds to the step's cache key
//! and, when the step runs, into an `exec` mount (with whatever must stay alive meanwhile).
//!
//! BuildKit's rules: a relative target is below the working directory and `/` is no target; a
//! bind mounts a path of the context (the default; `.dockerignore` applies), of a stage or of
//! an image, read-only unless `rw`, whose writes are discarded; a tmpfs is fresh and empty; a
//! secret is a file (default `/run/secrets/<id>`, mode 0400) and/or an environment variable
//! (`env=`), left out when it was not given and is not `required`; a cache is a directory of the
//! store kept across builds (`sharing=` across processes too), seeded from `from` when new.
//! What a mount shows is part of
//! the key (a bind's content digest, as a COPY of the same source) except a secret's value and
//! a cache's contents.
//!
//! **Invariant:** a secret's bytes go from [`BuildOptions::secrets`](super::BuildOptions) to the
//! executor's spec and nowhere else: not into a key, a record, a title, a log or an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::copy::{From, resolve_from, with_layers_guard};
use super::ssh::Forwarder;
use super::stage::{BuildCtx, State, join_path};
use super::step::StepCtx;
use super::{BuildError, InvalidValue};
use crate::cache::{CacheMountRequest, KeyInputs, Sharing as CacheSharing};
use crate::context::{self, CopyOptions, SourceRoot};
use crate::dockerfile::{Mount as MountFlag, MountType, RunInstruction, Sharing};
use crate::exec::{Mount, MountSource, Secret, SecretFile};
use crate::oci::Digest;

/// Where secrets are mounted by default.
const SECRETS_DIR: &str = "/run/secrets";

/// One `--mount`, resolved.
pub(crate) struct Planned<'r> {
    target: String,
    kind: Kind<'r>,
}

enum Kind<'r> {
    Bind {
        from: From<'r>,
        source: String,
        readonly: bool,
    },
    Tmpfs {
        size: Option<u64>,
    },
    Cache(CacheSpec<'r>),
    /// A socket forwarding to the `--ssh` agent `id` (`agent`: its socket; none when not given
    /// and not required: the mount is left out).
    Ssh {
        id: String,
        mode: u32,
        uid: u32,
        gid: u32,
        agent: Option<&'r Path>,
    },
    Secret {
        id: String,
        file: bool,
        env: Option<String>,
        mode: u32,
        uid: u32,
        gid: u32,
        value: Option<&'r Secret>,
    },
}

/// A `type=cache` mount: its id and how it is shared and created; `source` is a path inside
/// the cache, or with `from` the path of that stage or image that seeds a new cache.
struct CacheSpec<'r> {
    id: String,
    sharing: CacheSharing,
    readonly: bool,
    mode: u32,
    uid: u32,
    gid: u32,
    from: Option<From<'r>>,
    source: String,
}

/// A RUN's mounts, with the files of the context they bind (to explain a miss).
pub(crate) struct RunMounts<'r> {
    planned: Vec<Planned<'r>>,
    /// `SSH_AUTH_SOCK=<first ssh target>` when the step has an ssh mount and no such variable.
    pub env: Vec<String>,
}

/// Resolves the `--mount` flags of `run` against the stage.
pub(crate) fn plan<'r>(sc: &StepCtx<'r>, state: &State, run: &RunInstruction) -> Result<RunMounts<'r>, BuildError> {
    let ctx = sc.build;
    let span = sc.span();
    let mut planned = Vec::new();
    let mut ssh_targets = Vec::new();
    for flag in &run.mounts {
        let mount = match &flag.parsed {
            Some(m) => m.clone(),
            None => {
                let mut expand = |w: &str| {
                    crate::dockerfile::expand::Expander::new(ctx.plan.graph.escape, &state.scope)
                        .expand_word(w)
                        .map(|e| e.value)
                };
                flag.resolve(&mut expand).map_err(|source| BuildError::Mount {
                    span,
                    value: flag.raw.clone(),
                    source,
                })?
            }
        };
        if mount.kind == MountType::Ssh {
            // BuildKit's default target counts the step's ssh mounts.
            let written =
                mount.target.clone().unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{}", ssh_targets.len()));
            ssh_targets.push(target_of(state, &written, span)?);
        }
        if let Some(mut p) = plan_one(sc, state, &mount)? {
            if matches!(p.kind, Kind::Ssh { .. }) {
                p.target = ssh_targets.last().cloned().unwrap_or_default();
            }
            planned.push(p);
        }
    }
    let has_sock = state.container_ref().env.unwrap_or_default().iter().any(|e| e.starts_with("SSH_AUTH_SOCK="));
    let env = match ssh_targets.first() {
        Some(first) if !has_sock => vec![format!("SSH_AUTH_SOCK={first}")],
        _ => Vec::new(),
    };
    Ok(RunMounts { planned, env })
}

fn target_of(state: &State, written: &str, span: crate::dockerfile::Span) -> Result<String, BuildError> {
    let target = join_path(&state.workdir(), written);
    match target == "/" {
        true => Err(BuildError::Invalid { span, invalid: InvalidValue::MountTarget(target) }),
        false => Ok(target),
    }
}

fn plan_one<'r>(sc: &StepCtx<'r>, state: &State, m: &MountFlag) -> Result<Option<Planned<'r>>, BuildError> {
    let (ctx, span) = (sc.build, sc.span());
    let written = m.target.clone().unwrap_or_default();
    match m.kind {
        MountType::Bind => {
            let from = match &m.from {
                None => From::Context,
                Some(name) => resolve_from(ctx, sc.done, span, name)?,
            };
            let source = clean_source(m.source.as_deref().unwrap_or(""));
            let target = target_of(state, &written, span)?;
            Ok(Some(Planned { target, kind: Kind::Bind { from, source, readonly: m.read_only } }))
        }
        MountType::Tmpfs => {
            let target = target_of(state, &written, span)?;
            Ok(Some(Planned { target, kind: Kind::Tmpfs { size: m.size } }))
        }
        MountType::Secret => {
            let id = m.source.clone().or_else(|| m.id.clone()).unwrap_or_else(|| base_name(&written));
            let value = ctx.options.secrets.get(&id);
            if value.is_none() {
                if m.required {
                    return Err(BuildError::Refused { span, refusal: super::Refusal::SecretMissing { id } });
                }
                return Ok(None);
            }
            // With `env=` and no target the secret is only the variable.
            let file = m.env.is_none() || m.target.is_some();
            let written = match m.target.as_deref() {
                Some(t) => t.to_string(),
                None => format!("{SECRETS_DIR}/{}", base_name(&id)),
            };
            let target = target_of(state, &written, span)?;
            let (mode, uid, gid) = (m.mode.unwrap_or(0o400), m.uid.unwrap_or(0), m.gid.unwrap_or(0));
            Ok(Some(Planned { target, kind: Kind::Secret { id, file, env: m.env.clone(), mode, uid, gid, value } }))
        }
        MountType::Cache => {
            let target = target_of(state, &written, span)?;
            let from = m.from.as_deref().map(|name| resolve_from(ctx, sc.done, span, name)).transpose()?;
            let cache = CacheSpec {
                // BuildKit's default id: the target as written, cleaned.
                id: m.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| clean_id(&written)),
                sharing: match m.sharing {
                    Some(Sharing::Private) => CacheSharing::Private,
                    Some(Sharing::Locked) => CacheSharing::Locked,
                    Some(Sharing::Shared) | None => CacheSharing::Shared,
                },
                readonly: m.read_only,
                mode: m.mode.unwrap_or(0o755),
                uid: m.uid.unwrap_or(0),
                gid: m.gid.unwrap_or(0),
                from,
                source: clean_source(m.source.as_deref().unwrap_or("")),
            };
            ctx.steps.note_mount(&cache.id);
            Ok(Some(Planned { target, kind: Kind::Cache(cache) }))
        }
        MountType::Ssh => {
            let id = m.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| "default".to_string());
            let agent = ctx.options.ssh.get(&id).map(PathBuf::as_path);
            if agent.is_none() {
                if m.required {
                    return Err(BuildError::Refused { span, refusal: super::Refusal::SshMissing { id } });
                }
                return Ok(None);
            }
            let (mode, uid, gid) = (m.mode.unwrap_or(0o600), m.uid.unwrap_or(0), m.gid.unwrap_or(0));
            // The target is set by `plan`, which numbers the step's ssh mounts.
            Ok(Some(Planned { target: String::new(), kind: Kind::Ssh { id, mode, uid, gid, agent } }))
        }
    }
}

/// `path.Base` of Go: the last component, `/` for the root.
fn base_name(path: &str) -> String {
    path.trim_end_matches('/').rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or("/").to_string()
}

/// Go's `path.Clean` of a cache target, BuildKit's default cache id.
fn clean_id(target: &str) -> String {
    let joined = join_path("/", target);
    let joined = if joined.len() > 1 { joined.trim_end_matches('/') } else { joined.as_str() };
    match target.starts_with('/') {
        true => joined.to_string(),
        false => joined.trim_start_matches('/').to_string(),
    }
}

/// A source path relative to its root ("" for the root itself).
fn clean_source(source: &str) -> String {
    join_path("/", source).trim_matches('/').to_string()
}

impl<'r> RunMounts<'r> {
    /// Adds the mounts to the key: each declaration (never a secret's value), and the content
    /// of what binds show (context: the digest of the selected files, which are also returned
    /// to explain a miss; a stage or image: its chain id).
    pub(crate) fn key(
        &self,
        ctx: &BuildCtx<'_>,
        inputs: &mut KeyInputs,
    ) -> Result<Option<Vec<(String, Digest)>>, BuildError> {
        let mut files: BTreeMap<String, Digest> = BTreeMap::new();
        let mut bound = Vec::new();
        for p in &self.planned {
            let declared = match &p.kind {
                Kind::Bind { from, source, readonly } => {
                    let shows = match from {
                        From::Context | From::Dir { .. } => {
                            let src = from.local(ctx).expect("a local source");
                            let selection = context::select(&src, &[source_pattern(source)], &[])?;
                            let digest = context::digest(&src, &selection, &[], Some(&ctx.builder.caches.stat))?;
                            files.extend(digest.files);
                            bound.push(digest.digest.to_string());
                            from.local_label()
                        }
                        From::Layers { label, diff_ids, .. } => {
                            let chain =
                                crate::image::chain_ids(diff_ids).last().map_or("scratch".into(), |c| c.to_string());
                            format!("{label} {chain}")
                        }
                    };
                    format!("bind from={shows} source=/{source} ro={readonly}")
                }
                Kind::Tmpfs { size } => format!("tmpfs size={}", size.map_or("-".to_string(), |s| s.to_string())),
                Kind::Cache(c) => {
                    let from = c.from.as_ref().map_or("-".to_string(), |f| match f {
                        From::Context | From::Dir { .. } => f.local_label(),
                        From::Layers { label, diff_ids, .. } => {
                            let chain =
                                crate::image::chain_ids(diff_ids).last().map_or("scratch".into(), |c| c.to_string());
                            format!("{label} {chain}")
                        }
                    });
                    format!(
                        "cache id={} sharing={:?} ro={} mode={:o} uid={} gid={} from={from} source=/{}",
                        c.id, c.sharing, c.readonly, c.mode, c.uid, c.gid, c.source
                    )
                }
                Kind::Ssh { id, mode, uid, gid, .. } => format!("ssh id={id} mode={mode:o} uid={uid} gid={gid}"),
                Kind::Secret { id, file, env, mode, uid, gid, .. } => {
                    format!(
                        "secret id={id} file={file} env={} mode={mode:o} uid={uid} gid={gid}",
                        env.as_deref().unwrap_or("-")
                    )
                }
            };
            inputs.add(format!("mount:{}", p.target), declared);
        }
        if bound.is_empty() {
            return Ok(None);
        }
        inputs.add("bound", bound.join(" "));
        Ok(Some(files.into_iter().collect()))
    }

    /// Sets the mounts up for one run of the step: the exec mounts and secret variables, and
    /// what must stay alive until the run is over (views of stages, copies of the context).
    pub(crate) fn prepare<'a>(&self, ctx: &BuildCtx<'a>) -> Result<Prepared<'a>, BuildError> {
        let mut prepared = Prepared::default();
        // Cache mounts are taken in one order (by id), so two steps never wait for each other.
        let mut caches: Vec<&Planned<'_>> = self.planned.iter().filter(|p| matches!(p.kind, Kind::Cache(_))).collect();
        caches.sort_by(|a, b| cache_id(a).cmp(cache_id(b)));
        let (mut cache_paths, mut roots) = (BTreeMap::new(), BTreeMap::new());
        for p in caches {
            if let Kind::Cache(c) = &p.kind {
                cache_paths.insert(p.target.clone(), cache_source(ctx, c, &mut prepared, &mut roots)?);
            }
        }
        for p in &self.planned {
            match &p.kind {
                Kind::Cache(c) => {
                    let path = cache_paths.remove(&p.target).expect("acquired above");
                    prepared.mounts.push(Mount::host(path, p.target.clone(), c.readonly));
                }
                Kind::Bind { from, source, readonly } => {
                    let path = bind_source(ctx, from, source, *readonly, &mut prepared)?;
                    prepared.mounts.push(Mount::host(path, p.target.clone(), *readonly));
                }
                Kind::Tmpfs { size } => {
                    prepared.mounts.push(Mount { target: p.target.clone(), source: MountSource::Tmpfs { size: *size } })
                }
                Kind::Secret { file, env, mode, uid, gid, value: Some(value), .. } => {
                    if *file {
                        let secret = SecretFile { data: (*value).clone(), mode: *mode, uid: *uid, gid: *gid };
                        prepared.mounts.push(Mount { target: p.target.clone(), source: MountSource::Secret(secret) });
                    }
                    if let Some(name) = env {
                        prepared.secret_env.push((name.clone(), (*value).clone()));
                    }
                }
                Kind::Secret { value: None, .. } | Kind::Ssh { agent: None, .. } => {}
                Kind::Ssh { mode, uid, gid, agent: Some(agent), .. } => {
                    let forwarder = Forwarder::start(agent, *uid, *gid, *mode)?;
                    prepared.mounts.push(Mount::host(forwarder.path(), p.target.clone(), false));
                    prepared.keep.push(Box::new(forwarder));
                }
            }
        }
        Ok(prepared)
    }
}

fn cache_id<'p>(p: &'p Planned<'_>) -> &'p str {
    match &p.kind {
        Kind::Cache(c) => &c.id,
        _ => "",
    }
}

/// Takes the cache mount for the run (waiting as its `sharing` says); a new one is seeded from
/// `from`'s `source`. Returns the directory to bind: the cache's, or without `from` its `source`
/// subdirectory (made when missing, resolved inside the cache: a link there never leads out, D5).
///
/// `roots`: the caches this step holds already, by id (one step mounting an id twice takes it
/// once: a second exclusive acquisition would wait for the first forever).
fn cache_source<'a>(
    ctx: &BuildCtx<'a>,
    c: &CacheSpec<'_>,
    prepared: &mut Prepared<'a>,
    roots: &mut BTreeMap<String, PathBuf>,
) -> Result<PathBuf, BuildError> {
    if let Some(root) = roots.get(&c.id) {
        return subdir(root, c);
    }
    let request = CacheMountRequest { id: &c.id, sharing: c.sharing, mode: c.mode, uid: c.uid, gid: c.gid };
    let cancel = ctx.builder.cancel;
    let lease = ctx.builder.caches.mounts.acquire(&request, &|| cancel.is_cancelled())?;
    let root = lease.path().to_path_buf();
    roots.insert(c.id.clone(), root.clone());
    let seeded = match &c.from {
        Some(from) if lease.is_new() => {
            let (src_root, from_context) = match from {
                From::Context | From::Dir { .. } => (from.local(ctx).expect("a local source"), true),
                From::Layers { diff_ids, layers, .. } => {
                    let view = with_layers_guard(ctx, diff_ids, layers)?;
                    let copied = seed(&SourceRoot::dir(view.path()), &c.source, &root, false);
                    prepared.keep.push(Box::new(lease));
                    copied?;
                    return Ok(root);
                }
            };
            seed(&src_root, &c.source, &root, from_context)
        }
        // A new cache that an imported cache (`--cache-from`, `mounts=true`) carries.
        None if lease.is_new() => {
            let b = ctx.builder;
            b.imports.seed_mount(b.store, ctx.lease, b.reporter, &c.id, &root).map(drop)
        }
        _ => Ok(()),
    };
    prepared.keep.push(Box::new(lease));
    seeded?;
    subdir(&root, c)
}

/// The directory of the cache to bind: its root, or without `from` its `source` subdirectory,
/// made when missing and resolved inside the cache.
fn subdir(root: &Path, c: &CacheSpec<'_>) -> Result<PathBuf, BuildError> {
    if c.from.is_some() || c.source.is_empty() {
        return canonical(root);
    }
    context::make_dir(root, &format!("/{}", c.source), Some((c.uid, c.gid))).map_err(|source| {
        BuildError::CacheSource { id: c.id.clone(), path: c.source.clone(), source: Box::new(source) }
    })?;
    resolve_in(root, &c.source)
}

/// Copies what `source` selects in `src` into a new cache directory.
fn seed(src: &SourceRoot<'_>, source: &str, dest: &Path, from_context: bool) -> Result<(), BuildError> {
    let selection = context::select(src, &[source_pattern(source)], &[])?;
    let opts = CopyOptions { from_context, dest_is_dir: true, ..CopyOptions::default() };
    context::copy(src, &selection, dest, "/", &opts)?;
    Ok(())
}

/// The pattern selecting a bind's source ("" = the root).
fn source_pattern(source: &str) -> String {
    if source.is_empty() { ".".to_string() } else { source.to_string() }
}

/// Anything kept alive for a run.
trait Kept {}
impl<T> Kept for T {}

/// The mounts of one run and what keeps them valid; dropping it releases everything.
#[derive(Default)]
pub(crate) struct Prepared<'a> {
    pub mounts: Vec<Mount>,
    pub secret_env: Vec<(String, Secret)>,
    /// Scratch copies and mounted views, released in reverse order on drop.
    keep: Vec<Box<dyn Kept + 'a>>,
}

impl Drop for Prepared<'_> {
    fn drop(&mut self) {
        while let Some(kept) = self.keep.pop() {
            drop(kept);
        }
    }
}

/// The host path a bind shows. The context's selection is copied into a scratch directory
/// (`.dockerignore` applied, writes discarded with it). A stage or image is a read-only view of
/// its layers, bound in place; with `rw`, its selection is copied like the context's.
fn bind_source<'a>(
    ctx: &BuildCtx<'a>,
    from: &From<'_>,
    source: &str,
    readonly: bool,
    prepared: &mut Prepared<'a>,
) -> Result<PathBuf, BuildError> {
    match from {
        From::Context | From::Dir { .. } => {
            copy_selection(ctx, &from.local(ctx).expect("a local source"), source, true, prepared)
        }
        From::Layers { diff_ids, layers, .. } => {
            let view = with_layers_guard(ctx, diff_ids, layers)?;
            let root = view.path().to_path_buf();
            prepared.keep.push(Box::new(view));
            let path = match readonly {
                true => resolve_in(&root, source)?,
                false => copy_selection(ctx, &SourceRoot::dir(&root), source, false, prepared)?,
            };
            Ok(path)
        }
    }
}

/// Where `source` is below `root`, symlinks resolved inside it; it must exist. The result has
/// no link on its way (the root is made canonical): the executor refuses to follow one, so a
/// component a concurrent step turns into a link fails the run instead of leading out (D5).
fn resolve_in(root: &Path, source: &str) -> Result<PathBuf, BuildError> {
    let root = canonical(root)?;
    let src = SourceRoot::dir(&root);
    let selection = context::select(&src, &[source_pattern(source)], &[])?;
    let item = selection.items.first().map(|i| i.path.clone()).unwrap_or_default();
    Ok(if item.is_empty() { root.clone() } else { root.join(item) })
}

/// A directory this build made (a scratch copy, a view, a cache), without links on its way.
fn canonical(dir: &Path) -> Result<PathBuf, BuildError> {
    std::fs::canonicalize(dir).map_err(|e| BuildError::io("resolve", dir, e))
}

/// Copies what `source` selects into a fresh scratch directory; returns the copy (the directory
/// for a directory source, the file for a file).
fn copy_selection(
    ctx: &BuildCtx<'_>,
    src: &SourceRoot<'_>,
    source: &str,
    from_context: bool,
    prepared: &mut Prepared<'_>,
) -> Result<PathBuf, BuildError> {
    let sn_dir = ctx.builder.snapshotter.dir();
    let scratch = crate::snapshot::temp_dir(sn_dir, "bind")?;
    let selection = context::select(src, &[source_pattern(source)], &[])?;
    let item = selection.items.first().cloned();
    let opts = CopyOptions { from_context, dest_is_dir: true, ..CopyOptions::default() };
    context::copy(src, &selection, scratch.path(), "/", &opts)?;
    let dir = canonical(scratch.path())?;
    let path = match item {
        Some(item) if !item.is_dir => dir.join(&item.name),
        _ => dir,
    };
    prepared.keep.push(Box::new(scratch));
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sources() {
        assert_eq!(base_name("/run/secrets/tok"), "tok");
        assert_eq!(base_name("tok/"), "tok");
        assert_eq!(base_name(""), "/");
        assert_eq!(clean_source("/a/../b/"), "b");
        assert_eq!(clean_source(""), "");
        assert_eq!(source_pattern(""), ".");
        assert_eq!(clean_id("/root/.cache/"), "/root/.cache");
        assert_eq!(clean_id("cache/./x"), "cache/x");
    }
}
