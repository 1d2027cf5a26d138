//! `COPY` and `ADD` of local files, heredocs, stages and images (`ADD` of URLs and git
//! repositories is [`super::add_remote`]).
//!
//! The cache key covers exactly what is copied: for the context, a content hash of the selected
//! files (content, mode, owner, link targets — never mtimes or the context's absolute path),
//! computed through the persistent stat cache so an unchanged context is only `stat`ed; for a
//! stage or an image, the chain id of its layers. The copy itself (Docker's destination rules,
//! `--chown` names from the target rootfs, `--chmod`, archives unpacked by ADD) is
//! `context::copy`, confined to the step's rootfs.

use std::collections::BTreeMap;
use std::path::Path;

use super::layers::{self, LayerStep};
use super::stage::{BuildCtx, StageResult, State, expand, join_path};
use super::step::StepCtx;
use super::{BuildError, InvalidValue, short};
use crate::cache::KeyInputs;
use crate::context::{self, Chmod, CopyOptions, SourceRoot};
use crate::dockerfile::expand::Expander;
use crate::dockerfile::{AddInstruction, CopyInstruction, Source, Span};
use crate::graph::StageId;
use crate::image::unpack_layers;
use crate::oci::{Descriptor, DiffId};
use crate::snapshot::{Mounted, Snapshotter};

/// COPY or ADD, with what only ADD has.
pub(crate) struct CopySpec<'a> {
    keyword: &'static str,
    sources: &'a [Source],
    dest: &'a str,
    from: Option<&'a str>,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
    excludes: &'a [String],
    /// `--link`: the files become a layer of their own, independent of the stage's layers.
    link: bool,
    /// `COPY --parents`: each source keeps its path (from the pattern's `/./` pivot on).
    parents: bool,
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
            link: c.link,
            parents: c.parents,
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
            link: a.link,
            parents: false,
            add: Some(a),
        }
    }
}

/// Where the files come from.
pub(crate) enum From<'r> {
    Context,
    /// A local directory a `--build-context NAME=DIR` gives.
    Dir {
        name: String,
        path: &'r Path,
    },
    /// A stage or an image: its layers, mounted read-only when the step runs.
    Layers {
        label: String,
        diff_ids: &'r [DiffId],
        layers: &'r [Descriptor],
    },
}

impl From<'_> {
    /// The files of the build context or of a local named context; none for layers.
    pub(crate) fn local<'s>(&'s self, ctx: &'s BuildCtx<'_>) -> Option<SourceRoot<'s>> {
        match self {
            From::Context => Some(ctx.builder.context.source()),
            From::Dir { path, .. } => Some(SourceRoot::dir(path)),
            From::Layers { .. } => None,
        }
    }

    /// How a key shows a local source: `context`, or `context NAME` for a named one.
    pub(crate) fn local_label(&self) -> String {
        match self {
            From::Dir { name, .. } => format!("context {name}"),
            _ => "context".to_string(),
        }
    }
}

/// A source after expansion.
enum Src {
    Path(String),
    Inline { name: String, content: String },
}

/// A COPY/ADD with every word expanded and checked: what the key is made of and the copy does.
struct Expanded {
    srcs: Vec<Src>,
    /// The destination as written (after expansion), for the shown instruction.
    dest_word: String,
    /// The destination joined with the working directory.
    dest: String,
    chown: Option<String>,
    chmod: Option<Chmod>,
    excludes: Vec<String>,
}

impl Expanded {
    fn paths(&self) -> Vec<String> {
        self.srcs.iter().filter_map(|s| if let Src::Path(p) = s { Some(p.clone()) } else { None }).collect()
    }
}

/// Runs one COPY/ADD step (or takes it from the cache).
pub(crate) fn copy(sc: &StepCtx<'_>, state: &mut State, spec: &CopySpec<'_>) -> Result<(), BuildError> {
    let ctx = sc.build;
    let x = expand_copy(sc, state, spec)?;
    if let Some(add) = spec.add {
        let inline = x.srcs.iter().any(|s| matches!(s, Src::Inline { .. }));
        if let Some(sources) = super::add_remote::classify(sc.span(), add, &x.paths(), inline)? {
            // A URL's password never reaches the history, the key or a record.
            let redacted: Vec<Src> = x.paths().iter().map(|p| Src::Path(crate::remote::redact(p))).collect();
            let shown = shown(spec, &redacted, &x.dest_word, x.chown.as_deref(), x.chmod.as_ref());
            let (dest_word, dest, chown, chmod, excludes) = (x.dest_word, x.dest, x.chown, x.chmod, x.excludes);
            let link = spec.link;
            let remote =
                super::add_remote::RemoteAdd { add, sources, dest_word, dest, chown, chmod, excludes, shown, link };
            return super::add_remote::add(sc, state, remote);
        }
    }
    let from = match spec.from {
        None => From::Context,
        Some(name) => resolve_from(ctx, sc.done, sc.span(), name)?,
    };
    let paths = x.paths();
    let opts = CopyOptions {
        chown: None,
        chmod: x.chmod.clone(),
        unpack_archives: spec.add.is_some_and(|a| a.unpack != Some(false)) && matches!(from, From::Context),
        from_context: matches!(from, From::Context | From::Dir { .. }),
        excludes: x.excludes.clone(),
        dest_is_dir: x.dest_word.ends_with('/') || x.srcs.len() > 1,
        parents: spec.parents,
    };
    let select = if spec.parents { context::select_parents } else { context::select };
    let shown = shown(spec, &x.srcs, &x.dest_word, x.chown.as_deref(), x.chmod.as_ref());
    let mut inputs = KeyInputs::default();
    if spec.link {
        // The layer is made on nothing: its key has no parent, so a new base or an earlier
        // step's change keeps it (BuildKit's --link).
        inputs.add("link", "independent of the layers below".to_string());
    } else {
        layers::add_parent(state, &mut inputs);
    }
    inputs.add("instruction", shown.clone());
    inputs.add("dest", x.dest.clone());
    let mut files = None;
    let selection = match &from {
        From::Context | From::Dir { .. } if !paths.is_empty() => {
            let src = from.local(ctx).expect("a local source");
            if let From::Dir { .. } = &from {
                inputs.add("from", from.local_label());
            }
            let selection = select(&src, &paths, &x.excludes)?;
            let digest = context::digest(&src, &selection, &x.excludes, Some(&ctx.builder.caches.stat))?;
            inputs.add("sources", digest.digest.to_string());
            files = Some(digest.files);
            Some(selection)
        }
        From::Context | From::Dir { .. } => None,
        From::Layers { label, diff_ids, .. } => {
            let chain = crate::image::chain_ids(diff_ids).last().map_or("scratch".to_string(), |c| c.to_string());
            inputs.add("from", format!("{label} {chain}"));
            None
        }
    };
    for s in &x.srcs {
        if let Src::Inline { name, content } = s {
            inputs.add(format!("inline:{name}"), content.clone());
        }
    }
    inputs.add("chown", x.chown.clone().unwrap_or_default());
    inputs.add("chmod", x.chmod.as_ref().map(Chmod::to_string).unwrap_or_default());
    inputs.add("platform", state.platform.to_string());

    let step = LayerStep { inputs, files, title: sc.title(state, &shown), created_by: shown, independent: spec.link };
    let inline = x.srcs.iter().any(|s| matches!(s, Src::Inline { .. }));
    let sources = match (&from, &selection) {
        _ if ctx.options.copy_in_snapshot || inline => None,
        (From::Context | From::Dir { .. }, Some(selection)) => Some(DirectSources::Local(selection)),
        (From::Layers { diff_ids, layers, .. }, None) if !paths.is_empty() => {
            Some(DirectSources::Layers { diff_ids, layers, select, paths: &paths })
        }
        _ => None,
    };
    let direct: Option<layers::Direct<'_>> = sources.map(|sources| -> layers::Direct<'_> {
        let direct = DirectCopy { sc, spec, from: &from, sources, x: &x, opts: opts.clone() };
        Box::new(move |lower: Option<&Path>, out: &mut dyn std::io::Write| direct.write(lower, out))
    });
    layers::layer_step_direct(sc, state, step, direct, |_run, rootfs| {
        let mut opts = opts;
        if let Some(chown) = &x.chown {
            let chown = if spec.link { link_chown(chown) } else { chown.clone() };
            opts.chown = Some(super::owners::resolve(rootfs, &chown, sc.span(), &format!("--chown={chown}"))?);
        }
        let mtime = ctx.options.source_date_epoch.unwrap_or_else(|| crate::image::timestamp(None));
        for s in &x.srcs {
            if let Src::Inline { name, content } = s {
                context::write_inline(rootfs, &x.dest, name, content.as_bytes(), mtime, &opts)?;
            }
        }
        if paths.is_empty() {
            return Ok(());
        }
        match &from {
            From::Context | From::Dir { .. } => {
                let selection = selection.as_ref().expect("selected above");
                context::copy(&from.local(ctx).expect("a local source"), selection, rootfs, &x.dest, &opts)?;
                Ok(())
            }
            From::Layers { diff_ids, layers, .. } => with_layers(ctx, diff_ids, layers, |root| {
                let src = SourceRoot::dir(root);
                let selection = select(&src, &paths, &x.excludes)?;
                context::copy(&src, &selection, rootfs, &x.dest, &opts)?;
                Ok(())
            }),
        }
    })
}

/// A COPY to be written straight into its layer.
struct DirectCopy<'a, 'b> {
    sc: &'a StepCtx<'b>,
    spec: &'a CopySpec<'a>,
    from: &'a From<'a>,
    sources: DirectSources<'a>,
    x: &'a Expanded,
    opts: CopyOptions,
}

/// Where a [`DirectCopy`] reads.
enum DirectSources<'a> {
    /// Files of the context or of a local named context, selected (and keyed) already.
    Local(&'a context::Selection),
    /// A stage's or an image's layers, viewed read-only while the layer is written; `paths`
    /// selected there by `select`.
    Layers { diff_ids: &'a [DiffId], layers: &'a [Descriptor], select: SelectFn, paths: &'a [String] },
}

/// `context::select` or `context::select_parents`.
type SelectFn = fn(&SourceRoot<'_>, &[String], &[String]) -> Result<context::Selection, context::ContextError>;

impl DirectCopy<'_, '_> {
    /// Writes the layer when [`context::plan_layer`] can (the destination's paths are new to
    /// `lower`); `None` otherwise, having written nothing.
    fn write(self, lower: Option<&Path>, out: &mut dyn std::io::Write) -> Result<Option<u64>, BuildError> {
        let DirectCopy { sc, spec, from, sources, x, mut opts } = self;
        let ctx = sc.build;
        // `--chown` names are looked up in the tree under the step, as the copy in a snapshot does.
        let empty;
        let rootfs = match lower {
            Some(l) => l,
            None => {
                empty = crate::snapshot::temp_dir(ctx.builder.snapshotter.dir(), "empty")?;
                empty.path()
            }
        };
        if let Some(chown) = &x.chown {
            let chown = if spec.link { link_chown(chown) } else { chown.clone() };
            opts.chown = Some(super::owners::resolve(rootfs, &chown, sc.span(), &format!("--chown={chown}"))?);
        }
        let now = crate::image::timestamp(None);
        let (view, selected);
        let (src, selection) = match sources {
            DirectSources::Local(selection) => (from.local(ctx).expect("a local source"), selection),
            DirectSources::Layers { diff_ids, layers, select, paths } => {
                view = with_layers_guard(ctx, diff_ids, layers)?;
                let src = SourceRoot::dir(view.path());
                selected = select(&src, paths, &x.excludes)?;
                (src, &selected)
            }
        };
        let Some(plan) = context::plan_layer(&src, selection, lower, &x.dest, &opts, now)? else {
            return Ok(None);
        };
        let wopts = crate::layer::WriteOptions { source_date_epoch: ctx.options.source_date_epoch };
        let mut tw = crate::layer::TarWriter::new(out, &wopts);
        let entries = plan.write(&mut tw)?;
        tw.finish().map_err(|source| context::ContextError::Layer { path: x.dest.clone(), source })?;
        Ok(Some(entries))
    }
}

/// Expands the sources, destination, `--chown`, `--chmod` and `--exclude` words against the
/// stage, and checks them as Docker does.
fn expand_copy(sc: &StepCtx<'_>, state: &State, spec: &CopySpec<'_>) -> Result<Expanded, BuildError> {
    let (ctx, span) = (sc.build, sc.span());
    let mut srcs = Vec::new();
    for source in spec.sources {
        srcs.push(match source {
            Source::Path(p) => {
                let p = expand(ctx, state, span, p)?;
                Src::Path(p)
            }
            Source::Inline { name, content, expand: true } => {
                let value = Expander::new('\\', &state.scope)
                    .expand_word(&quotes_as_text(content))
                    .map_err(|source| BuildError::expand(span, format!("<<{name}"), source))?
                    .value;
                Src::Inline { name: name.clone(), content: value }
            }
            Source::Inline { name, content, .. } => Src::Inline { name: name.clone(), content: content.clone() },
        });
    }
    let dest_word = expand(ctx, state, span, spec.dest)?;
    // A destination that expands to nothing is the working directory (BuildKit reads "" as "./").
    let dest_dir = if dest_word.is_empty() { "./" } else { dest_word.as_str() };
    if srcs.len() > 1 && !dest_dir.ends_with('/') {
        let invalid = InvalidValue::SourcesNeedDirectory { keyword: spec.keyword };
        return Err(BuildError::Invalid { span, invalid });
    }
    let dest = join_path(&state.workdir(), dest_dir);
    let chown = spec.chown.map(|c| expand(ctx, state, span, c)).transpose()?.filter(|c| !c.is_empty());
    // An empty value (`--chmod=`, or a variable that expands to nothing) is no chmod (BuildKit).
    let chmod = spec.chmod.map(|c| expand(ctx, state, span, c)).transpose()?.filter(|c| !c.is_empty());
    let chmod = chmod
        .map(|c| c.parse::<Chmod>())
        .transpose()
        .map_err(|e| BuildError::Invalid { span, invalid: InvalidValue::Chmod(e) })?;
    let excludes = spec.excludes.iter().map(|e| expand(ctx, state, span, e)).collect::<Result<_, _>>()?;
    if spec.link
        && let Some(c) = &chown
        && !c.split(':').all(|id| id.is_empty() || id == "root" || id.parse::<u32>().is_ok())
    {
        let invalid = InvalidValue::LinkChownName { keyword: spec.keyword, chown: c.clone() };
        return Err(BuildError::Invalid { span, invalid });
    }
    Ok(Expanded { srcs, dest_word, dest, chown, chmod, excludes })
}

/// A `--link` step's `--chown`: it sees no `/etc/passwd`, so its ids are numbers or `root`
/// (checked when expanded), and `root` is 0.
pub(crate) fn link_chown(chown: &str) -> String {
    chown.split(':').map(|id| if id == "root" { "0" } else { id }).collect::<Vec<_>>().join(":")
}

/// An unquoted heredoc body as BuildKit expands it: `$` everywhere, quotes are plain text (its
/// lexer's `SkipProcessQuotes`) and `\` escapes whatever `# escape=` says. The expander knows
/// shell quoting only, so every quote is escaped first; `\x` pairs pass unchanged.
fn quotes_as_text(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                out.extend(chars.next());
            }
            '\'' | '"' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `--from=NAME`: a stage by name or index, else an image the plan resolved.
pub(crate) fn resolve_from<'r>(
    ctx: &'r BuildCtx<'_>,
    done: &'r BTreeMap<StageId, StageResult>,
    span: Span,
    name: &str,
) -> Result<From<'r>, BuildError> {
    let graph = &ctx.plan.graph;
    // A named context overrides a stage of the same name; its image is among the copy images.
    if let Some(path) = ctx.plan.context_dir(ctx.options, name) {
        return Ok(From::Dir { name: name.to_string(), path });
    }
    let named = ctx.options.named_contexts.contains_key(&name.to_lowercase());
    let stage =
        graph.by_name(name).map(|s| s.id).filter(|_| !named).or_else(|| name.parse::<usize>().ok().map(StageId));
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
        None => Err(BuildError::UnknownFrom { span, name: name.to_string() }),
    }
}

/// Mounts the layers read-only for `f` (extracting the ones that are not snapshots yet).
fn with_layers(
    ctx: &BuildCtx<'_>,
    diff_ids: &[DiffId],
    layers: &[Descriptor],
    f: impl FnOnce(&Path) -> Result<(), BuildError>,
) -> Result<(), BuildError> {
    let view = with_layers_guard(ctx, diff_ids, layers)?;
    f(view.path())
}

/// A read-only view of a stage's or an image's layers (an empty directory when it has none),
/// mounted until dropped; then unmounted and removed.
pub(crate) struct LayersView<'a> {
    sn: &'a dyn Snapshotter,
    key: Option<String>,
    mounted: Option<Mounted>,
    dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl LayersView<'_> {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LayersView<'_> {
    fn drop(&mut self) {
        if let Some(mounted) = self.mounted.take()
            && let Err(e) = mounted.unmount()
        {
            tracing::warn!(dir = %self.dir.path().display(), error = %e, "unmounting a --from view");
        }
        if let Some(key) = &self.key
            && let Err(e) = self.sn.remove(key)
        {
            tracing::warn!(key, error = %e, "removing a --from view");
        }
    }
}

/// Mounts the layers read-only (extracting the ones that are not snapshots yet) until the
/// returned view is dropped.
pub(crate) fn with_layers_guard<'a>(
    ctx: &BuildCtx<'a>,
    diff_ids: &[DiffId],
    layers: &[Descriptor],
) -> Result<LayersView<'a>, BuildError> {
    let sn = ctx.builder.snapshotter;
    super::layers::ensure_local(ctx, layers)?;
    let label = crate::oci::Digest::of(b"copy --from");
    let top = unpack_layers(ctx.builder.store, sn, &label, diff_ids, layers)?.top;
    match top {
        Some(top) => LayersView::of(sn, &top),
        // An image or stage without layers: the empty directory.
        None => {
            let dir = crate::snapshot::temp_dir(sn.dir(), "from")?;
            let path = dir.path().to_path_buf();
            Ok(LayersView { sn, key: None, mounted: None, dir, path })
        }
    }
}

impl<'a> LayersView<'a> {
    /// A read-only view of the committed snapshot `top`.
    pub(crate) fn of(sn: &'a dyn Snapshotter, top: &str) -> Result<LayersView<'a>, BuildError> {
        let dir = crate::snapshot::temp_dir(sn.dir(), "from")?;
        let path = dir.path().to_path_buf();
        let mut view = LayersView { sn, key: None, mounted: None, dir, path };
        let key = format!("view-{}-{}", std::process::id(), super::layers::unique_nanos());
        let mounts = sn.view(&key, Some(top))?;
        view.key = Some(key);
        match mounts.plain_dir() {
            Some(plain) => view.path = plain.to_path_buf(),
            None => view.mounted = Some(mounts.mount(&view.path)?),
        }
        Ok(view)
    }
}

/// `COPY --chown=1:1 a b /dest/` with expanded values, for the task, history and key.
fn shown(spec: &CopySpec<'_>, srcs: &[Src], dest: &str, chown: Option<&str>, chmod: Option<&Chmod>) -> String {
    let mut out = spec.keyword.to_string();
    if let Some(from) = spec.from {
        out.push_str(&format!(" --from={from}"));
    }
    if spec.link {
        out.push_str(" --link");
    }
    if spec.parents {
        out.push_str(" --parents");
    }
    if let Some(c) = chown {
        out.push_str(&format!(" --chown={c}"));
    }
    if let Some(m) = chmod {
        out.push_str(&format!(" --chmod={m}"));
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
