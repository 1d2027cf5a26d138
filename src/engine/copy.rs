//! `COPY` and `ADD` of local files, heredocs, stages and images.
//!
//! The cache key covers exactly what is copied: for the context, a content hash of the selected
//! files (content, mode, owner, link targets — never mtimes or the context's absolute path),
//! computed through the persistent stat cache so an unchanged context is only `stat`ed; for a
//! stage or an image, the chain id of its layers. The copy itself (Docker's destination rules,
//! `--chown` names from the target rootfs, `--chmod`, archives unpacked by ADD) is
//! `context::copy`, confined to the step's rootfs.

use std::collections::BTreeMap;
use std::path::Path;

use super::layers::{self, LayerStep, Outcome};
use super::stage::{BuildCtx, StageResult, State, expand, join_path};
use super::{BuildError, short};
use crate::cache::KeyInputs;
use crate::context::{self, CopyOptions, SourceRoot};
use crate::dockerfile::expand::Expander;
use crate::dockerfile::{AddInstruction, CopyInstruction, Source, Span};
use crate::graph::{StageId, Step};
use crate::image::unpack_layers;
use crate::oci::{Descriptor, DiffId};

/// COPY or ADD, with what only ADD has.
pub(crate) struct CopySpec<'a> {
    keyword: &'static str,
    sources: &'a [Source],
    dest: &'a str,
    from: Option<&'a str>,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
    excludes: &'a [String],
    add: Option<&'a AddInstruction>,
}

impl<'a> CopySpec<'a> {
    pub(crate) fn from_copy(c: &'a CopyInstruction) -> CopySpec<'a> {
        CopySpec {
            keyword: "COPY",
            sources: &c.sources,
            dest: &c.dest,
            from: c.from.as_deref(),
            chown: c.chown.as_deref(),
            chmod: c.chmod.as_deref(),
            excludes: &c.excludes,
            add: None,
        }
    }

    pub(crate) fn from_add(a: &'a AddInstruction) -> CopySpec<'a> {
        CopySpec {
            keyword: "ADD",
            sources: &a.sources,
            dest: &a.dest,
            from: None,
            chown: a.chown.as_deref(),
            chmod: a.chmod.as_deref(),
            excludes: &a.excludes,
            add: Some(a),
        }
    }
}

/// Where the files come from.
enum From<'r> {
    Context,
    /// A stage or an image: its layers, mounted read-only when the step runs.
    Layers {
        label: String,
        diff_ids: &'r [DiffId],
        layers: &'r [Descriptor],
    },
}

/// A source after expansion.
enum Src {
    Path(String),
    Inline { name: String, content: String },
}

/// Runs one COPY/ADD step (or takes it from the cache).
pub(crate) fn copy(
    ctx: &BuildCtx<'_>,
    state: &mut State,
    index: usize,
    total: usize,
    step: &Step,
    spec: &CopySpec<'_>,
    done: &BTreeMap<StageId, StageResult>,
) -> Result<(), BuildError> {
    let span = step.span;
    let unsupported = |what: &str| BuildError::Instruction { span, message: format!("{what} is not supported yet") };
    if let Some(add) = spec.add {
        if add.checksum.is_some() {
            return Err(unsupported("ADD --checksum (remote sources)"));
        }
        if add.keep_git_dir.is_some() {
            return Err(unsupported("ADD --keep-git-dir (git sources)"));
        }
    }
    let mut srcs = Vec::new();
    for source in spec.sources {
        srcs.push(match source {
            Source::Path(p) => {
                let p = expand(ctx, state, span, p)?;
                if spec.add.is_some() && is_remote(&p) {
                    return Err(unsupported(&format!("ADD from a URL or git repository ({p})")));
                }
                Src::Path(p)
            }
            Source::Inline { name, content, expand: true } => {
                let value = Expander::new(ctx.plan.graph.escape, &state.scope)
                    .raw_quotes(true)
                    .expand_word(content)
                    .map_err(|e| BuildError::Instruction { span, message: e.to_string() })?
                    .value;
                Src::Inline { name: name.clone(), content: value }
            }
            Source::Inline { name, content, .. } => Src::Inline { name: name.clone(), content: content.clone() },
        });
    }
    let dest_word = expand(ctx, state, span, spec.dest)?;
    if srcs.len() > 1 && !dest_word.ends_with('/') {
        return Err(BuildError::Instruction {
            span,
            message: format!(
                "when using {} with more than one source file, the destination must be a directory and end with a /",
                spec.keyword
            ),
        });
    }
    let dest = join_path(&state.workdir(), &dest_word);
    let chown = spec.chown.map(|c| expand(ctx, state, span, c)).transpose()?.filter(|c| !c.is_empty());
    let chmod = match spec.chmod.map(|c| expand(ctx, state, span, c)).transpose()? {
        Some(c) => Some(
            u32::from_str_radix(&c, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| BuildError::Instruction { span, message: format!("invalid chmod parameter {c:?}") })?,
        ),
        None => None,
    };
    let excludes: Vec<String> = spec.excludes.iter().map(|e| expand(ctx, state, span, e)).collect::<Result<_, _>>()?;
    let from = match spec.from {
        None => From::Context,
        Some(name) => resolve_from(ctx, done, span, name)?,
    };
    let paths: Vec<String> =
        srcs.iter().filter_map(|s| if let Src::Path(p) = s { Some(p.clone()) } else { None }).collect();
    let opts = CopyOptions {
        chown: None,
        chmod,
        unpack_archives: spec.add.is_some_and(|a| a.unpack != Some(false)) && matches!(from, From::Context),
        from_context: matches!(from, From::Context),
        excludes: excludes.clone(),
        dest_is_dir: dest_word.ends_with('/') || srcs.len() > 1,
    };

    let shown = shown(spec, &srcs, &dest_word, chown.as_deref(), chmod);
    let mut inputs = KeyInputs::default();
    layers::add_parent(state, &mut inputs);
    inputs.add("instruction", shown.clone());
    inputs.add("dest", dest.clone());
    let mut files = None;
    let selection = match &from {
        From::Context if !paths.is_empty() => {
            let src = ctx.builder.context.source();
            let selection = context::select(&src, &paths, &excludes)?;
            let digest = context::digest(&src, &selection, &excludes, ctx.builder.stat_cache)?;
            inputs.add("sources", digest.digest.to_string());
            files = Some(digest.files);
            Some(selection)
        }
        From::Context => None,
        From::Layers { label, diff_ids, .. } => {
            let chain = crate::image::chain_ids(diff_ids).last().map_or("scratch".to_string(), |c| c.to_string());
            inputs.add("from", format!("{label} {chain}"));
            None
        }
    };
    for s in &srcs {
        if let Src::Inline { name, content } = s {
            inputs.add(format!("inline:{name}"), content.clone());
        }
    }
    inputs.add("chown", chown.clone().unwrap_or_default());
    inputs.add("chmod", chmod.map(|m| format!("{m:o}")).unwrap_or_default());
    inputs.add("platform", ctx.options.platform.to_string());

    let title = state.title(index, total, &shown);
    let task = ctx.builder.reporter.start(|| title.clone());
    let step_ref = LayerStep::new(index, inputs, files, &task);
    let record = match layers::lookup(ctx, state, &step_ref)? {
        Outcome::Hit(record) => {
            state.stats.cached += 1;
            *record
        }
        Outcome::Miss => {
            let mtime = ctx.options.source_date_epoch.unwrap_or_else(|| crate::image::timestamp(None));
            let result = layers::run_in_snapshot(ctx, state, |rootfs| {
                let mut opts = opts;
                if let Some(spec) = &chown {
                    opts.chown = Some(context::resolve_chown(rootfs, spec)?);
                }
                for s in &srcs {
                    if let Src::Inline { name, content } = s {
                        context::write_inline(rootfs, &dest, name, content.as_bytes(), mtime, &opts)?;
                    }
                }
                if paths.is_empty() {
                    return Ok(());
                }
                match &from {
                    From::Context => {
                        let selection = selection.as_ref().expect("selected above");
                        context::copy(&ctx.builder.context.source(), selection, rootfs, &dest, &opts)?;
                        Ok(())
                    }
                    From::Layers { diff_ids, layers, .. } => with_layers(ctx, diff_ids, layers, |root| {
                        let src = SourceRoot::dir(root);
                        let selection = context::select(&src, &paths, &excludes)?;
                        context::copy(&src, &selection, rootfs, &dest, &opts)?;
                        Ok(())
                    }),
                }
            });
            match result.and_then(|made| layers::ran(ctx, state, &step_ref, made)) {
                Ok(record) => record,
                Err(e) => {
                    task.fail(&e);
                    return Err(e);
                }
            }
        }
    };
    layers::end(ctx, state, &record, shown, task);
    Ok(())
}

/// `--from=NAME`: a stage by name or index, else an image the plan resolved.
fn resolve_from<'r>(
    ctx: &'r BuildCtx<'_>,
    done: &'r BTreeMap<StageId, StageResult>,
    span: Span,
    name: &str,
) -> Result<From<'r>, BuildError> {
    let graph = &ctx.plan.graph;
    let stage = graph.by_name(name).map(|s| s.id).or_else(|| name.parse::<usize>().ok().map(StageId));
    if let Some(id) = stage
        && graph.stage(id).is_some()
    {
        let result = done.get(&id).ok_or(BuildError::Cancelled)?;
        return Ok(From::Layers {
            label: format!("stage {name}"),
            diff_ids: &result.config.rootfs.diff_ids,
            layers: &result.layers,
        });
    }
    match ctx.plan.copy_images.get(name) {
        Some(image) => Ok(From::Layers {
            label: format!("{name} ({})", short(&image.manifest_descriptor.digest)),
            diff_ids: &image.config.rootfs.diff_ids,
            layers: &image.manifest.layers,
        }),
        None => Err(BuildError::Instruction { span, message: format!("--from={name}: no such stage or image") }),
    }
}

/// Mounts the layers read-only for `f` (extracting the ones that are not snapshots yet).
fn with_layers(
    ctx: &BuildCtx<'_>,
    diff_ids: &[DiffId],
    layers: &[Descriptor],
    f: impl FnOnce(&Path) -> Result<(), BuildError>,
) -> Result<(), BuildError> {
    let sn = ctx.builder.snapshotter;
    let label = crate::oci::Digest::of(b"copy --from");
    let top = unpack_layers(ctx.builder.store, sn, &label, diff_ids, layers)?.top;
    let Some(top) = top else {
        // An image or stage without layers: an empty directory.
        let empty = tempfile::Builder::new()
            .prefix("empty-")
            .tempdir_in(sn.dir())
            .map_err(|e| BuildError::io("create an empty directory in", sn.dir(), e))?;
        return f(empty.path());
    };
    let key = format!("view-{}-{}", std::process::id(), super::layers::unique_nanos());
    let mounts = sn.view(&key, Some(&top))?;
    let result = super::layers::with_tree(sn, &mounts, f);
    if let Err(e) = sn.remove(&key) {
        tracing::warn!(key, error = %e, "removing a --from view");
    }
    result
}

/// A URL or git source (ADD's remote forms).
fn is_remote(src: &str) -> bool {
    let lower = src.to_ascii_lowercase();
    lower.starts_with("http://")
        || lower.starts_with("https://")
        || lower.starts_with("git@")
        || lower.contains(".git#")
}

/// `COPY --chown=1:1 a b /dest/` with expanded values, for the task, history and key.
fn shown(spec: &CopySpec<'_>, srcs: &[Src], dest: &str, chown: Option<&str>, chmod: Option<u32>) -> String {
    let mut out = spec.keyword.to_string();
    if let Some(from) = spec.from {
        out.push_str(&format!(" --from={from}"));
    }
    if let Some(c) = chown {
        out.push_str(&format!(" --chown={c}"));
    }
    if let Some(m) = chmod {
        out.push_str(&format!(" --chmod={m:o}"));
    }
    for e in spec.excludes {
        out.push_str(&format!(" --exclude={e}"));
    }
    for s in srcs {
        match s {
            Src::Path(p) => out.push_str(&format!(" {p}")),
            Src::Inline { name, .. } => out.push_str(&format!(" <<{name}")),
        }
    }
    out.push_str(&format!(" {dest}"));
    out
}
