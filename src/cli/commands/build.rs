//! `slipway build`: reads the Dockerfile and opens the context (a directory read in place, or a
//! tar on stdin), runs `build::build`, names the image, writes `--iidfile` / `--metadata-file`,
//! and prints a closing summary — or the failing line of the Dockerfile with the step's last
//! output.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use super::{open_snapshotter, open_store};
use crate::cli::args::{BuildArgs, BuildNetworkArg, GlobalArgs};
use crate::cli::outputs::{self, Output, OutputType};
use crate::cli::{EXIT_FAILURE, units};
use crate::context::{Context, ContextError, DockerfileIgnore};
use crate::dockerfile::{Located, render_located};
use crate::engine::records::RecordSettings;
use crate::engine::{
    BuildCaches, BuildError, BuildOptions, BuildOutput, Builder, CacheImports, CacheTo, Connect, ExportCtx, ImportCtx,
    IndexOutput, RegistryImages,
};
use crate::exec::{CancelToken, Network};
use crate::image::parse_name;
use crate::oci::{Platform, Reference};
use crate::progress::Reporter;
use crate::store::Store;

/// Largest Dockerfile read.
const MAX_DOCKERFILE: u64 = 16 << 20;

/// The Dockerfile read from the context without `-f` (else its lower-case fallback `dockerfile`).
const DEFAULT_DOCKERFILE: &str = "Dockerfile";

/// Runs the build; returns the exit code.
pub fn build(global: &GlobalArgs, args: &BuildArgs, progress: &Reporter) -> Result<u8> {
    let reporter = if args.quiet { Reporter::silent() } else { progress.clone() };
    let cancel = CancelToken::new();
    let signals = crate::exec::cancel_on_signals(&cancel).context("watching for signals")?;
    if args.context == "-" && args.file.as_deref() == Some(Path::new("-")) {
        bail!("the context and the Dockerfile cannot both come from stdin");
    }
    let store = open_store(global)?;
    let sn = open_snapshotter(global)?;
    let executor = super::open_executor(global)?;

    // The context: a directory read in place, or a tar on stdin extracted into the store.
    let scratch;
    let ignore = dockerfile_ignore(args.file.as_deref(), args.context == "-");
    let context = if args.context == "-" {
        scratch = store.scratch_dir("context")?;
        Context::from_tar(std::io::stdin().lock(), scratch.path(), ignore.as_ref())
            .context("reading the context from stdin")?
    } else {
        let dir = Path::new(&args.context);
        if !dir.is_dir() {
            bail!("context {} is not a directory", dir.display());
        }
        Context::open_dir(dir, ignore.as_ref()).with_context(|| format!("opening the context {}", dir.display()))?
    };
    let (text, name, dockerfile_id) = read_dockerfile(args.file.as_deref(), &context)?;

    let (mut options, outputs, platforms) = build_options(args, &name, &dockerfile_id)?;
    let settings_path = crate::registry::settings_path();
    options.keep_builds = RecordSettings::load(&settings_path)
        .with_context(|| format!("reading [builds] of {}", settings_path.display()))?
        .keep;
    // Agents started for key files stop when the build is over.
    let agents = crate::cli::secrets::open_agents(&args.ssh)?;
    options.ssh = agents.iter().map(|(id, agent)| (id.clone(), agent.socket().to_path_buf())).collect();

    let caches = BuildCaches::open(&store).context("opening the build caches")?;
    let settings = super::registry::settings()?;
    let connect = |registry: &str| super::registry::connect(&args.registry, &settings, registry);
    let images = RegistryImages { settings: &settings, connect: &connect, progress: &reporter, always_pull: args.pull };
    // A build that only pushes leaves the layers an imported cache holds in the registry: the
    // push mounts them (buildx's push without --load keeps no image either).
    options.fetch_final_layers = args.cache_from.is_empty()
        || args.load
        || options.rewrite_timestamp
        || outputs.is_empty()
        || !outputs.iter().all(|o| o.kind == OutputType::Image && o.push);
    let import_lease = store.lease("cache-import")?;
    let imports = open_imports(args, &store, &import_lease, &options.platform, &connect, &reporter);
    let builder = Builder {
        store: &store,
        snapshotter: sn.as_ref(),
        executor: executor.as_ref(),
        context: &context,
        caches: &caches,
        images: &images,
        imports: &imports,
        reporter: &reporter,
        cancel: &cancel,
    };
    if platforms.len() > 1 {
        let result = crate::engine::build_platforms(&builder, &text, &options, &platforms);
        caches.prune_stale();
        let interrupted = signals.received().map(|s| 128u8.saturating_add(u8::try_from(s).unwrap_or(0)));
        let pusher = Pusher { store: &store, imports: &imports, args, settings: &settings, progress: &reporter };
        let delivery = super::build_platforms::Delivery {
            store: &store,
            annotations: &options.annotations,
            tags: &options.tags,
            epoch: options.source_date_epoch,
            progress: &reporter,
            pusher: &pusher,
        };
        let render = |e: &BuildError| render_error(&name, &text, e);
        return super::build_platforms::conclude(result, interrupted, &outputs, &delivery, args, &render);
    }
    let result = crate::engine::build(&builder, &text, &options);
    caches.prune_stale();
    let interrupted = signals.received().map(|s| 128u8.saturating_add(u8::try_from(s).unwrap_or(0)));
    match result {
        Ok(output) => {
            if let Some(code) = interrupted {
                return Ok(code);
            }
            let written = outputs::Written {
                store: &store,
                image: &output.image,
                tags: &options.tags,
                epoch: options.source_date_epoch,
                progress: &reporter,
            };
            let pusher = Pusher { store: &store, imports: &imports, args, settings: &settings, progress: &reporter };
            let cache = ExportCtx {
                store: &store,
                mounts: &caches.mounts,
                imports: &imports,
                platform: &options.platform,
                connect: &connect,
                progress: &reporter,
            };
            let exported = deliver(&outputs, &written, &pusher, &cache, &output);
            if let Err(err) = exported {
                // The build's record says what the user saw: the build failed at its outputs.
                if let Err(e) = crate::engine::records::record_output_failure(&store, &output.id, &format!("{err:#}")) {
                    tracing::warn!(error = %e, "recording the failed output in the build record");
                }
                return Err(err);
            }
            finish(args, &options, &output, &reporter)?;
            Ok(0)
        }
        Err(e) => {
            if let Some(code) = interrupted {
                eprintln!("error: build interrupted");
                return Ok(code);
            }
            eprint!("{}", render_error(&name, &text, &e));
            Ok(EXIT_FAILURE)
        }
    }
}

/// The build's results where they go: the outputs, the pushes, the caches (`--cache-to`).
fn deliver(
    outputs: &[Output],
    written: &outputs::Written<'_>,
    pusher: &Pusher<'_>,
    cache: &ExportCtx<'_>,
    output: &BuildOutput,
) -> Result<()> {
    outputs::write(outputs, written)?;
    for out in outputs.iter().filter(|o| o.push) {
        pusher.push(out, written.tags, output)?;
    }
    export_caches(pusher.args, cache, output)
}

/// Opens the caches `--cache-from` names; one that cannot be read (a first CI run has none yet)
/// is a warning, as with buildx.
fn open_imports(
    args: &BuildArgs,
    store: &Store,
    lease: &crate::store::Lease,
    platform: &Platform,
    connect: &Connect<'_>,
    progress: &Reporter,
) -> CacheImports {
    if args.cache_from.is_empty() {
        return CacheImports::none();
    }
    let ctx = ImportCtx { store, lease, platform, connect, progress };
    let (imports, failed) = CacheImports::open(&ctx, &args.cache_from);
    for (from, err) in failed {
        eprintln!("warning: {:#}", anyhow::Error::new(err).context(format!("importing the cache from {from}")));
    }
    if !progress.is_silent() {
        let (records, sources) = imports.counts();
        if sources > 0 {
            eprintln!("imported {records} cache records from {sources} source(s)");
        }
    }
    imports
}

/// `--cache-to` (all but `type=inline`, which the build wrote into the image): each in turn; a
/// failure fails the build unless `ignore-error=true` makes it a warning.
fn export_caches(args: &BuildArgs, ctx: &ExportCtx<'_>, output: &BuildOutput) -> Result<()> {
    for export in args.cache_to.iter().filter(|c| c.to != CacheTo::Inline) {
        match crate::engine::export_cache(ctx, output, export) {
            Ok(report) => {
                if !ctx.progress.is_silent() {
                    let mounts = match report.mounts {
                        0 => String::new(),
                        n => format!(", {n} cache mounts"),
                    };
                    eprintln!(
                        "exported the cache ({} records, {} layers{mounts}) as {}",
                        report.records, report.layers, report.digest
                    );
                }
                for (id, bytes) in &report.skipped {
                    eprintln!(
                        "warning: cache mount {id:?} left out of the cache: {} is over mounts-max-size",
                        units::size(*bytes)
                    );
                }
            }
            Err(e) if export.ignore_error => eprintln!("warning: {:#}", anyhow::Error::new(e)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The build's options from its arguments (secrets read; `--ssh` agents are opened by the
/// caller, who keeps them up for the build) and its outputs, all checked before anything runs.
fn build_options(
    args: &BuildArgs,
    name: &str,
    dockerfile_id: &str,
) -> Result<(BuildOptions, Vec<Output>, Vec<Platform>)> {
    let mut options = BuildOptions {
        build_args: super::build_args(&args.build_args),
        target: args.target.clone(),
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
        labels: args.labels.iter().cloned().collect(),
        allow_network_host: args.allow.iter().any(|a| a == "network.host"),
        allow_security_insecure: args.allow.iter().any(|a| a == "security.insecure"),
        source_date_epoch: args.source_date_epoch,
        copy_in_snapshot: std::env::var_os("SLIPWAY_COPY_IN_SNAPSHOT").is_some_and(|v| v == "1"),
        tags: args.tags.iter().map(|t| parse_name(t)).collect::<Result<_, _>>()?,
        dockerfile_name: name.to_string(),
        identity: identity(&args.context, dockerfile_id),
        context_name: (args.context == "-").then(|| "-".to_string()),
        secrets: crate::cli::secrets::read_secrets(&args.secrets)?,
        extra_hosts: args.add_hosts.clone(),
        shm_size: args.shm_size,
        ulimits: args.ulimits.clone(),
        named_contexts: args.build_contexts.iter().cloned().collect(),
        cache_inline: args.cache_to.iter().any(|c| c.to == CacheTo::Inline),
        ..BuildOptions::default()
    };
    let platforms = super::build_platforms::parse(args.platform.as_deref())?;
    options.platform = platforms[0].clone();
    options.network = match args.network {
        Some(BuildNetworkArg::None) => Network::None,
        Some(BuildNetworkArg::Host) => Network::Host,
        Some(BuildNetworkArg::Default) | None => crate::engine::default_network(),
    };
    if options.network == Network::Host && !options.allow_network_host {
        bail!("--network host needs --allow network.host");
    }
    let outputs =
        outputs::plan(&args.outputs, args.push, args.load, &options.tags, args.quiet, options.source_date_epoch)?;
    if platforms.len() > 1 {
        super::build_platforms::refuse(args, &outputs)?;
    }
    // Names of image outputs are tags in the store too; any rewrite-timestamp rewrites the image.
    for name in outputs.iter().filter(|o| o.kind == OutputType::Image).flat_map(|o| &o.names) {
        if !options.tags.contains(name) {
            options.tags.push(name.clone());
        }
    }
    options.rewrite_timestamp = outputs.iter().any(|o| o.rewrite_timestamp);
    options.annotations = args.annotations.clone();
    // A single platform makes no index: its types have nothing to annotate.
    if platforms.len() == 1
        && let Some(t) =
            args.annotations.iter().flat_map(|a| &a.targets).find(|t| **t != crate::engine::AnnotationTarget::Manifest)
    {
        bail!("--annotation {}: annotations of an index need several platforms (--platform P1,P2)", t.name());
    }
    if let Some(jobs) = args.jobs {
        options.jobs = jobs as usize;
    }
    // Env var overriding the timeout of ADD's downloads (milliseconds; tests).
    if let Some(ms) = std::env::var("SLIPWAY_ADD_TIMEOUT_MS").ok().and_then(|ms| ms.parse().ok()) {
        options.remote_timeout = std::time::Duration::from_millis(ms);
    }
    // Env var overriding the size limit of ADD's downloads (bytes; tests).
    if let Some(bytes) = std::env::var("SLIPWAY_ADD_MAX_BYTES").ok().and_then(|b| b.parse().ok()) {
        options.remote_max_bytes = bytes;
    }
    Ok((options, outputs, platforms))
}

/// The ignore file BuildKit prefers to the context's `.dockerignore`: `<name>.dockerignore` where
/// `<name>` is the Dockerfile it was asked for (`dockerui/config.go`: `filename + ".dockerignore"`).
/// Without `-f` that is `Dockerfile.dockerignore` in the context — also when the Dockerfile found
/// is the lower-case `dockerfile` fallback; with `-f FILE`, `FILE.dockerignore` beside it. None
/// for a Dockerfile on stdin, nor (as before) for `-f FILE` with a context on stdin, where FILE
/// is a host path apart from the context.
pub(super) fn dockerfile_ignore(file: Option<&Path>, context_from_stdin: bool) -> Option<DockerfileIgnore> {
    match file {
        None => Some(DockerfileIgnore::InContext(format!("{DEFAULT_DOCKERFILE}.dockerignore"))),
        Some(f) if f.as_os_str() == "-" || context_from_stdin => None,
        Some(f) => {
            let mut beside = f.as_os_str().to_owned();
            beside.push(".dockerignore");
            Some(DockerfileIgnore::Host(PathBuf::from(beside)))
        }
    }
}

/// The Dockerfile's text, its name in messages, and what identifies it across builds: `-f FILE`
/// (`-` for stdin), else the context's `Dockerfile`, else its `dockerfile`.
pub(super) fn read_dockerfile(file: Option<&Path>, context: &Context) -> Result<(String, String, String)> {
    let (bytes, name) = match file {
        Some(f) if f.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .lock()
                .take(MAX_DOCKERFILE + 1)
                .read_to_end(&mut buf)
                .context("reading the Dockerfile from stdin")?;
            if buf.len() as u64 > MAX_DOCKERFILE {
                bail!("the Dockerfile on stdin is larger than {}", units::size(MAX_DOCKERFILE));
            }
            return Ok((String::from_utf8_lossy(&buf).into_owned(), "Dockerfile".to_string(), "-".to_string()));
        }
        Some(f) => {
            let meta = std::fs::metadata(f).with_context(|| format!("cannot read the Dockerfile {}", f.display()))?;
            if meta.len() > MAX_DOCKERFILE {
                bail!("the Dockerfile {} is larger than {}", f.display(), units::size(MAX_DOCKERFILE));
            }
            let bytes = std::fs::read(f).with_context(|| format!("cannot read the Dockerfile {}", f.display()))?;
            let id = std::fs::canonicalize(f).unwrap_or_else(|_| f.to_path_buf()).display().to_string();
            return Ok((String::from_utf8_lossy(&bytes).into_owned(), shown_path(f), id));
        }
        // BuildKit's default name, and its fallback: `dockerfile` when there is no `Dockerfile`.
        None => match context.read_file(DEFAULT_DOCKERFILE, MAX_DOCKERFILE) {
            Err(ContextError::NotFound { .. }) => {
                let lower = context.read_file("dockerfile", MAX_DOCKERFILE);
                (lower.context("reading Dockerfile from the context (there is no dockerfile either)")?, "dockerfile")
            }
            other => (other.context("reading Dockerfile from the context")?, DEFAULT_DOCKERFILE),
        },
    };
    Ok((String::from_utf8_lossy(&bytes).into_owned(), name.to_string(), name.to_string()))
}

fn shown_path(path: &Path) -> String {
    path.strip_prefix(".").unwrap_or(path).display().to_string()
}

/// The context directory (canonical) and the Dockerfile: which earlier build a step compares with
/// when it explains a miss.
fn identity(context: &str, dockerfile: &str) -> String {
    let dir = if context == "-" {
        "-".to_string()
    } else {
        std::fs::canonicalize(context).map_or_else(|_| context.to_string(), |p| p.display().to_string())
    };
    format!("{dir}\0{dockerfile}")
}

/// Writes `--iidfile` and `--metadata-file`, prints the summary (stderr, none with `--progress quiet`)
/// or the id (`-q`, stdout).
fn finish(args: &BuildArgs, options: &BuildOptions, output: &BuildOutput, progress: &Reporter) -> Result<()> {
    let id = output.image.id();
    if let Some(path) = &args.iidfile {
        super::write_output_file(path, id.to_string().as_bytes())?;
    }
    if let Some(path) = &args.metadata_file {
        let names: Vec<String> = options.tags.iter().map(Reference::to_string).collect();
        let mut meta = json!({
            "containerimage.config.digest": id.to_string(),
            "containerimage.digest": output.manifest.digest.to_string(),
            "containerimage.descriptor": {
                "mediaType": output.manifest.media_type.to_string(),
                "digest": output.manifest.digest.to_string(),
                "size": output.manifest.size,
            },
        });
        if !names.is_empty() {
            meta["image.name"] = json!(names.join(","));
        }
        let mut text = serde_json::to_string_pretty(&meta)?;
        text.push('\n');
        super::write_output_file(path, text.as_bytes())?;
    }
    if args.quiet {
        println!("{id}");
        return Ok(());
    }
    // The closing lines are progress: `--progress quiet` shows nothing but errors.
    if progress.is_silent() {
        return Ok(());
    }
    let steps = output.steps_run + output.steps_cached;
    eprintln!(
        "built {id} in {:.1}s: {steps} layer steps ({} run, {} cached), {} of new layers",
        output.duration.as_secs_f64(),
        output.steps_run,
        output.steps_cached,
        units::size(output.bytes_written)
    );
    if !output.kept {
        eprintln!("not kept in the store: its cached layers stayed in the registry (--load keeps it)");
        return Ok(());
    }
    for tag in &args.tags {
        eprintln!("named {tag}");
    }
    // Then the names only `-o type=image,name=` gave.
    for name in options.tags.iter().skip(args.tags.len()) {
        eprintln!("named {}", name.familiar());
    }
    Ok(())
}

/// What pushing the built image needs.
pub(super) struct Pusher<'a> {
    store: &'a Store,
    /// `--cache-from`: layers a push may mount instead of downloading them first.
    imports: &'a CacheImports,
    args: &'a BuildArgs,
    settings: &'a crate::registry::Settings,
    progress: &'a Reporter,
}

impl Pusher<'_> {
    /// `--push` (`type=image,push=true`): the image to every name of the output (`name=` and
    /// every `-t`), layers in its compression (gzip by default; kept in the store for the next
    /// push), in turn.
    fn push(&self, out: &Output, tags: &[Reference], output: &BuildOutput) -> Result<()> {
        let (store, progress) = (self.store, self.progress);
        let lease = store.lease("push")?;
        // Layers an imported cache holds on the destination's registry are mounted; the others
        // are downloaded first.
        let mut absent_ok = false;
        for destination in &out.destinations(tags) {
            let push = (destination.registry(), out.compression);
            let layers = &output.image.manifest.layers;
            absent_ok |= self.imports.prepare_push(store, &lease, progress, layers, push)?;
        }
        let layer_options = crate::image::LayerOptions { absent_ok, ..out.layers };
        let destinations = out.destinations(tags);
        let options = crate::registry::PushOptions::default();
        let connect = |d: &Reference| super::registry::connect(&self.args.registry, self.settings, d.registry());
        let mut first_client = match destinations.first() {
            Some(first) => Some(connect(first)?),
            None => None,
        };
        // Layers compressed now go to the first destination while they are made.
        let layers = (out.compression, &layer_options);
        let (plan, mut ahead) = match (&first_client, destinations.first()) {
            (Some(client), Some(first)) => {
                let to = (client, first, &options);
                super::registry::distributable_ahead(store, &output.image, layers, &lease, progress, to)?
            }
            _ => (
                crate::image::distributable_with(
                    store,
                    &output.image,
                    out.compression,
                    &layer_options,
                    &lease,
                    progress,
                )?,
                Default::default(),
            ),
        };
        for destination in &destinations {
            let client = match first_client.take() {
                Some(client) => client,
                None => connect(destination)?,
            };
            let options = crate::registry::PushOptions { ahead: std::mem::take(&mut ahead), ..options.clone() };
            let report = crate::registry::push(&client, store, &plan, destination, &options, progress)
                .with_context(|| format!("pushing the built image to {destination}"))?;
            if !progress.is_silent() {
                eprintln!("pushed {}@{}", destination.name(), report.digest);
            }
        }
        Ok(())
    }
}

impl Pusher<'_> {
    /// `--push` of a multi-platform build: every platform's blobs and manifest, then the index,
    /// to every name of the output.
    pub(super) fn push_index(&self, out: &Output, tags: &[Reference], built: &IndexOutput) -> Result<()> {
        let (store, progress) = (self.store, self.progress);
        let lease = store.lease("push")?;
        let mut index =
            crate::registry::IndexPush { annotations: built.document.annotations.clone(), ..Default::default() };
        for ((_, o), entry) in built.platforms.iter().zip(&built.document.manifests) {
            let image =
                crate::image::distributable_with(store, &o.image, out.compression, &out.layers, &lease, progress)?;
            index.entries.push(crate::registry::IndexEntry { entry: entry.clone(), image });
        }
        for destination in &out.destinations(tags) {
            let client = super::registry::connect(&self.args.registry, self.settings, destination.registry())?;
            let options = crate::registry::PushOptions::default();
            let report = crate::registry::push_index(&client, store, &index, destination, &options, progress)
                .with_context(|| format!("pushing the built image to {destination}"))?;
            if !progress.is_silent() {
                eprintln!("pushed {}@{}", destination.name(), report.digest);
            }
        }
        Ok(())
    }
}

/// A build error for humans: the Dockerfile line (with a caret) and, for a failed RUN, its last
/// output lines.
pub(super) fn render_error(name: &str, src: &str, error: &BuildError) -> String {
    match error {
        BuildError::Syntax { diagnostics } => {
            let items: Vec<Located> = diagnostics
                .errors()
                .iter()
                .map(|e| Located { span: Some(e.span()), message: format!("error: {e}") })
                .collect();
            render_located(name, src, &items)
        }
        BuildError::Stages { errors } => {
            let items: Vec<Located> =
                errors.errors().iter().map(|e| Located { span: e.span(), message: format!("error: {e}") }).collect();
            render_located(name, src, &items)
        }
        _ => {
            let mut chain = vec![error.to_string()];
            let mut cause = std::error::Error::source(error);
            while let Some(c) = cause {
                chain.push(c.to_string());
                cause = c.source();
            }
            let message = format!("error: {}", chain.join(": "));
            let mut out = match error.span() {
                Some(span) => render_located(name, src, &[Located { span: Some(span), message }]),
                None => format!("{message}\n"),
            };
            if let Some(lines) = last_lines(error)
                && !lines.is_empty()
            {
                out.push_str("last output:\n");
                for line in lines {
                    out.push_str(&format!("  {line}\n"));
                }
            }
            out
        }
    }
}

fn last_lines(error: &BuildError) -> Option<&[String]> {
    match error {
        BuildError::RunFailed { last_lines, .. } => Some(last_lines),
        BuildError::Step { source, .. } | BuildError::OnPlatform { source, .. } => last_lines(source),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dockerfile_ignore_file_is_buildkits() {
        let in_context = Some(DockerfileIgnore::InContext("Dockerfile.dockerignore".to_owned()));
        assert_eq!(dockerfile_ignore(None, false), in_context);
        assert_eq!(dockerfile_ignore(None, true), in_context, "a tar context holds it too");
        let host = Some(DockerfileIgnore::Host(PathBuf::from("build/app.Dockerfile.dockerignore")));
        assert_eq!(dockerfile_ignore(Some(Path::new("build/app.Dockerfile")), false), host);
        assert_eq!(dockerfile_ignore(Some(Path::new("-")), false), None, "a Dockerfile on stdin");
        assert_eq!(dockerfile_ignore(Some(Path::new("app.Dockerfile")), true), None);
    }
}
