//! `RUN --mount`: each flag resolved against the stage into what it adds to the step's cache key
//! and, when the step runs, into an `exec` mount (with whatever must stay alive meanwhile).
//!
//! BuildKit's rules: a relative target is below the working directory and `/` is no target; a
//! bind mounts a path of the context (the default; `.dockerignore` applies), of a stage or of
//! an image, read-only unless `rw`, whose writes are discarded; a tmpfs is fresh and empty; a
//! secret is a file (default `/run/secrets/<id>`, mode 0400) and/or an environment variable
//! (`env=`), left out when it was not given and is not `required`. What a mount shows is part of
//! the key (a bind's content digest, as a COPY of the same source) except a secret's value and
//! a cache's contents.
//!
//! **Invariant:** a secret's bytes go from [`BuildOptions::secrets`](super::BuildOptions) to the
//! executor's spec and nowhere else: not into a key, a record, a title, a log or an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::copy::{From, resolve_from, with_layers_guard};
use super::stage::{BuildCtx, State, join_path};
use super::step::StepCtx;
use super::{BuildError, InvalidValue};
use crate::cache::KeyInputs;
use crate::context::{self, CopyOptions, SourceRoot};
use crate::dockerfile::{Mount as MountFlag, MountType, RunInstruction};
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
    Bind { from: From<'r>, source: String, readonly: bool },
    Tmpfs { size: Option<u64> },
    Secret { id: String, file: bool, env: Option<String>, mode: u32, uid: u32, gid: u32, value: Option<&'r Secret> },
}

/// A RUN's mounts, with the files of the context they bind (to explain a miss).
pub(crate) struct RunMounts<'r> {
    planned: Vec<Planned<'r>>,
}

/// Resolves the `--mount` flags of `run` against the stage.
pub(crate) fn plan<'r>(sc: &StepCtx<'r>, state: &State, run: &RunInstruction) -> Result<RunMounts<'r>, BuildError> {
    let ctx = sc.build;
    let span = sc.span();
    let mut planned = Vec::new();
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
        if let Some(p) = plan_one(sc, state, &mount)? {
            planned.push(p);
        }
    }
    Ok(RunMounts { planned })
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
        MountType::Cache | MountType::Ssh => {
            let refusal = super::Refusal::RunMountType { kind: m.kind.as_str() };
            Err(BuildError::Refused { span, refusal })
        }
    }
}

/// `path.Base` of Go: the last component, `/` for the root.
fn base_name(path: &str) -> String {
    path.trim_end_matches('/').rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or("/").to_string()
}

/// A source path relative to its root ("" for the root itself).
fn clean_source(source: &str) -> String {
    join_path("/", source).trim_start_matches('/').to_string()
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
                        From::Context => {
                            let src = ctx.builder.context.source();
                            let selection = context::select(&src, &[source_pattern(source)], &[])?;
                            let digest = context::digest(&src, &selection, &[], Some(&ctx.builder.caches.stat))?;
                            files.extend(digest.files);
                            bound.push(digest.digest.to_string());
                            "context".to_string()
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
        for p in &self.planned {
            match &p.kind {
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
                Kind::Secret { value: None, .. } => {}
            }
        }
        Ok(prepared)
    }
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
        From::Context => copy_selection(ctx, &ctx.builder.context.source(), source, true, prepared),
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

/// Where `source` is below `root`, symlinks resolved inside it; it must exist.
fn resolve_in(root: &Path, source: &str) -> Result<PathBuf, BuildError> {
    let src = SourceRoot::dir(root);
    let selection = context::select(&src, &[source_pattern(source)], &[])?;
    let item = selection.items.first().map(|i| i.path.clone()).unwrap_or_default();
    Ok(if item.is_empty() { root.to_path_buf() } else { root.join(item) })
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
    let scratch = tempfile::Builder::new()
        .prefix("bind-")
        .tempdir_in(sn_dir)
        .map_err(|e| BuildError::io("create a bind mount's copy in", sn_dir, e))?;
    let selection = context::select(src, &[source_pattern(source)], &[])?;
    let item = selection.items.first().cloned();
    let opts = CopyOptions { from_context, dest_is_dir: true, ..CopyOptions::default() };
    context::copy(src, &selection, scratch.path(), "/", &opts)?;
    let path = match item {
        Some(item) if !item.is_dir => scratch.path().join(&item.name),
        _ => scratch.path().to_path_buf(),
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
    }
}
