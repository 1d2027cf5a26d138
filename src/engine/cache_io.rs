//! A build cache that travels: `--cache-to` writes the records of a build's steps with their
//! layers as a plain OCI image (to a registry, an OCI layout directory, or inline in the built
//! image's config), `--cache-from` reads them back on another machine.
//!
//! The exported cache is an image every registry stores: an OCI manifest whose layers are the
//! steps' layers (each once, compressed as asked) and whose config is an image config over them
//! with the records in its [`CONFIG_FIELD`] (`cache::ExportedCache`: key → layer index, time,
//! and the sanitized inputs that explain a miss). `type=inline` puts the records of the image's
//! own steps into the built image's config instead.
//!
//! Import is lazy: opening a registry cache reads its manifest and config only. A hit joins the
//! stage with the cache's layer descriptor, and the blob is fetched ([`CacheImports::ensure_local`])
//! only when something reads it — a later step's snapshot, a `COPY --from`, the image written at
//! the end — so a fully cached build downloads the final image's layers and nothing else.
//! Imported records are never written into this store's `cache.db`: they are consulted while
//! the build that named them runs (reliability F6: nothing an image carries becomes a record
//! unless the user named it with `--cache-from`).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use super::BuildError;
use super::images::Connect;
use crate::cache::{
    CONFIG_FIELD, CacheKey, CacheMountRequest, CacheMounts, ExportedCache, ExportedMount, ExportedRecord, KEY_VERSION,
    KeyInputs, LayerRecord, MissReason, Record, Sharing, Slot,
};
use crate::image::{Image, LayerOptions, LayoutSelector, chain_ids, load_image};
use crate::oci::{
    Descriptor, DiffId, Digest, ImageConfig, ImageManifest, LayerCompression, MediaType, Platform, Reference, RootFs,
    canonical,
};
use crate::progress::Reporter;
use crate::registry::{Client, Fetcher, RemoteImage};
use crate::store::{Lease, Store};

/// Largest config read from an imported cache.
const MAX_CONFIG: u64 = 64 << 20;

/// Where `--cache-from` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheFrom {
    /// `type=registry,ref=REF` (or a bare `REF`): a cache image, or an image with inline records.
    Registry(Reference),
    /// `type=local,src=DIR[,tag=TAG]`: an OCI layout a `--cache-to type=local` wrote.
    Local { src: PathBuf, tag: Option<String> },
}

impl std::fmt::Display for CacheFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheFrom::Registry(r) => write!(f, "{r}"),
            CacheFrom::Local { src, .. } => write!(f, "{}", src.display()),
        }
    }
}

/// Where `--cache-to` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheTo {
    Registry(Reference),
    /// An OCI layout directory, the cache tagged `tag` in it.
    Local {
        dest: PathBuf,
        tag: String,
    },
    /// The records of the image's own steps, in its config.
    Inline,
}

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    pub to: CacheTo,
    /// `mode=max`: every step of every stage built; `min` (the default): the final image's.
    pub max: bool,
    pub compression: LayerCompression,
    pub level: Option<u32>,
    /// `ignore-error=true`: a failed export is a warning, not a failed build.
    pub ignore_error: bool,
    /// `mounts=true`: the contents of the build's `RUN --mount=type=cache` directories travel
    /// too, each at most `mounts_max_size` bytes (a bigger one is left out and reported).
    pub mounts: bool,
    pub mounts_max_size: u64,
}

/// The cap of one exported cache mount when `mounts-max-size` is not given.
pub const DEFAULT_MOUNTS_MAX_SIZE: u64 = 1 << 30;

/// A step of this build as an export needs it.
#[derive(Debug, Clone)]
pub(crate) struct CacheStep {
    pub key: CacheKey,
    pub record: Record,
    /// `cache::portable_slot`.
    pub slot: Slot,
    /// The inputs as remembered (secret-looking ARGs digested); sanitized when exported.
    pub inputs: KeyInputs,
    pub files: Option<Vec<(String, Digest)>>,
    /// The chain id of the stage's layers after the step: a step is part of the final image when
    /// this is one of the image's chain ids.
    pub chain_after: Option<Digest>,
}

impl CacheStep {
    /// The step's record as an export carries it, its layer at `layer` of the carrying manifest.
    fn exported(&self, layer: Option<usize>) -> ExportedRecord {
        let files = self.files.as_deref();
        ExportedRecord::new(&self.key, layer, self.record.created, &self.slot, &self.inputs, files)
    }
}

/// The steps a build looked up, in the order they ended, and the ids of the cache mounts its
/// RUN steps declare (run or not); [`super::BuildOutput::cache_steps`].
#[derive(Debug, Clone, Default)]
pub struct CacheSteps {
    pub(crate) steps: Vec<CacheStep>,
    pub(crate) mount_ids: BTreeSet<String>,
}

impl CacheSteps {
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Collects the steps while stages run on their threads.
#[derive(Default)]
pub(crate) struct StepCollector(Mutex<CacheSteps>);

impl StepCollector {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheSteps> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn push(&self, step: CacheStep) {
        self.lock().steps.push(step);
    }

    /// A RUN step declares the cache mount `id`.
    pub(crate) fn note_mount(&self, id: &str) {
        self.lock().mount_ids.insert(id.to_string());
    }

    pub(crate) fn take(&self) -> CacheSteps {
        std::mem::take(&mut *self.lock())
    }

    pub(crate) fn snapshot(&self) -> Vec<CacheStep> {
        self.lock().steps.clone()
    }
}

/// One imported cache.
struct Source {
    name: String,
    fetch: Fetch,
    layers: Vec<Descriptor>,
    diff_ids: Vec<DiffId>,
    records: Vec<ExportedRecord>,
    mounts: Vec<ExportedMount>,
}

/// How an imported cache's missing blobs are brought into the store.
enum Fetch {
    Registry(Box<RegistryFetch>),
    /// Every blob was copied into the store when the layout was read.
    Local,
}

/// A registry cache: where its blobs are fetched from.
struct RegistryFetch {
    client: Client,
    reference: Reference,
    remote: RemoteImage,
}

/// The caches `--cache-from` named, opened; consulted after this store's own records.
#[derive(Default)]
pub struct CacheImports {
    sources: Vec<Source>,
    /// Key → (source, record), the first source's record when several have one.
    by_key: HashMap<CacheKey, (usize, usize)>,
    /// Portable slot → (source, record), for explaining a miss.
    by_slot: HashMap<String, (usize, usize)>,
}

/// What opening the imports needs.
pub struct ImportCtx<'a> {
    pub store: &'a Store,
    /// Keeps the manifests, configs (and a layout's blobs) while the build runs.
    pub lease: &'a Lease,
    pub platform: &'a Platform,
    pub connect: &'a Connect<'a>,
    pub progress: &'a Reporter,
}

impl CacheImports {
    /// No imported cache.
    pub fn none() -> CacheImports {
        CacheImports::default()
    }

    /// Opens every source (a registry's manifest and config, a layout's blobs). A source that
    /// cannot be read — not there yet on a first CI run, unreachable — is passed over: its error
    /// is returned beside the imports, for a warning.
    pub fn open(ctx: &ImportCtx<'_>, from: &[CacheFrom]) -> (CacheImports, Vec<(String, BuildError)>) {
        let mut imports = CacheImports::default();
        let mut failed = Vec::new();
        for spec in from {
            match open_source(ctx, spec) {
                Ok(source) => imports.add(source),
                Err(e) => failed.push((spec.to_string(), e)),
            }
        }
        (imports, failed)
    }

    fn add(&mut self, source: Source) {
        let s = self.sources.len();
        for (r, record) in source.records.iter().enumerate() {
            if let Some(key) = record.cache_key() {
                self.by_key.entry(key).or_insert((s, r));
            }
            self.by_slot.entry(record.slot.clone()).or_insert((s, r));
        }
        self.sources.push(source);
    }

    /// How many records the sources hold, and from how many sources.
    pub fn counts(&self) -> (usize, usize) {
        (self.sources.iter().map(|s| s.records.len()).sum(), self.sources.len())
    }

    /// The imported record of `key`, with the name of its source. Its layer's blob may not be in
    /// the store yet ([`CacheImports::ensure_local`]).
    pub(crate) fn lookup(&self, key: &CacheKey) -> Option<(Record, &str)> {
        let &(s, r) = self.by_key.get(key)?;
        let source = &self.sources[s];
        let record = &source.records[r];
        let layer = match record.layer {
            None => None,
            Some(i) => Some(LayerRecord { diff_id: *source.diff_ids.get(i)?, blob: source.layers.get(i)?.clone() }),
        };
        Some((Record { layer, created: record.created }, source.name.as_str()))
    }

    /// Why a step misses the imported record of its portable `slot`, if one was imported.
    pub(crate) fn explain(
        &self,
        slot: &Slot,
        inputs: &KeyInputs,
        files: Option<&[(String, Digest)]>,
    ) -> Option<MissReason> {
        let &(s, r) = self.by_slot.get(&slot.digest().to_string())?;
        let source = &self.sources[s];
        let record = &source.records[r];
        let reason = record.explain(inputs, files)?;
        let date = crate::oci::time::rfc3339(record.created).chars().take(10).collect();
        Some(MissReason::Imported { reason, date, source: source.name.clone() })
    }

    /// Fills the new cache mount directory `dest` (id `id`) with the contents an imported cache
    /// carries for it, if any (the first source's); returns whether it did.
    pub(crate) fn seed_mount(
        &self,
        store: &Store,
        lease: &Lease,
        progress: &Reporter,
        id: &str,
        dest: &std::path::Path,
    ) -> Result<bool, BuildError> {
        let found = self.sources.iter().find_map(|s| Some((s, s.mounts.iter().find(|m| m.id == id)?.layer)));
        let Some((source, i)) = found else { return Ok(false) };
        let Some(layer) = source.layers.get(i) else { return Ok(false) };
        self.ensure_local(store, lease, progress, std::slice::from_ref(layer))?;
        let blob = store.open_blob(&layer.digest)?;
        let layer_err = |source| BuildError::CacheMountLayer { id: id.to_string(), source };
        let tar = crate::layer::decompress(Box::new(blob)).map_err(layer_err)?;
        crate::layer::apply(tar, dest, &crate::layer::ApplyOptions::default()).map_err(layer_err)?;
        Ok(true)
    }

    /// Before a push of `layers` to `registry` in `compression`: brings in the blobs the store
    /// lacks unless the push can mount them — an imported cache on that same registry holds them,
    /// already in that compression. Returns whether any layer stays absent (to be mounted).
    pub fn prepare_push(
        &self,
        store: &Store,
        lease: &Lease,
        progress: &Reporter,
        layers: &[Descriptor],
        (registry, compression): (&str, LayerCompression),
    ) -> Result<bool, BuildError> {
        let mut fetch = Vec::new();
        let mut absent = false;
        for layer in layers.iter().filter(|l| !store.has_blob(&l.digest)) {
            let mountable = layer.media_type.layer_compression() == Some(compression)
                && self.sources.iter().any(|s| match &s.fetch {
                    Fetch::Registry(r) => {
                        r.client.registry() == registry && s.layers.iter().any(|l| l.digest == layer.digest)
                    }
                    Fetch::Local => false,
                });
            match mountable {
                true => absent = true,
                false => fetch.push(layer.clone()),
            }
        }
        self.ensure_local(store, lease, progress, &fetch)?;
        Ok(absent)
    }

    /// Brings the blobs of `layers` that the store lacks in from the imported cache that has
    /// them (each checked against its DiffID), under `lease`. A blob no import has is left to
    /// whoever reads it (it fails there, naming it).
    pub fn ensure_local(
        &self,
        store: &Store,
        lease: &Lease,
        progress: &Reporter,
        layers: &[Descriptor],
    ) -> Result<(), BuildError> {
        if self.sources.is_empty() {
            return Ok(());
        }
        for layer in layers {
            if store.has_blob(&layer.digest) {
                continue;
            }
            let found = self.sources.iter().find_map(|s| {
                let i = s.layers.iter().position(|l| l.digest == layer.digest)?;
                Some((s, i))
            });
            let Some((source, i)) = found else { continue };
            if let Fetch::Registry(r) = &source.fetch {
                let fetcher = Fetcher::new(&r.client, store, &r.reference, lease, progress);
                fetcher
                    .layers(&r.remote, &[i], 1)
                    .map_err(|e| BuildError::CacheFrom { from: source.name.clone(), source: Box::new(e) })?;
            }
        }
        Ok(())
    }
}

fn open_source(ctx: &ImportCtx<'_>, spec: &CacheFrom) -> Result<Source, BuildError> {
    let name = spec.to_string();
    let (fetch, manifest, config_digest) = match spec {
        CacheFrom::Registry(reference) => {
            let fail = |e| BuildError::CacheFrom { from: name.clone(), source: Box::new(e) };
            let client = (ctx.connect)(reference.registry()).map_err(fail)?;
            let fetcher = Fetcher::new(&client, ctx.store, reference, ctx.lease, ctx.progress);
            let remote = fetcher.image(ctx.platform).map_err(fail)?;
            let manifest = remote.manifest.clone();
            // A push to this registry may mount the cache's layers instead of sending them.
            let digests: Vec<Digest> = manifest.layers.iter().map(|l| l.digest).collect();
            if let Err(e) = ctx.store.record_blob_sources(client.registry(), reference.repository(), &digests) {
                tracing::warn!(error = %e, "cannot remember where the cache's blobs are");
            }
            let config = manifest.config.digest;
            let fetch = Fetch::Registry(Box::new(RegistryFetch { client, reference: reference.clone(), remote }));
            (fetch, manifest, config)
        }
        CacheFrom::Local { src, tag } => {
            let selector = LayoutSelector { tag: tag.clone(), digest: None };
            let image =
                crate::image::load_layout_image(ctx.store, src, &selector, ctx.platform, ctx.lease, ctx.progress)
                    .map_err(|e| BuildError::CacheFromLayout { from: name.clone(), source: Box::new(e) })?;
            (Fetch::Local, image.manifest.clone(), image.manifest.config.digest)
        }
    };
    let bytes = ctx.store.read_blob(&config_digest, MAX_CONFIG)?;
    let ExportedCache { records, mounts, .. } = records_of(&name, &bytes)?;
    let config: ImageConfig =
        serde_json::from_slice(&bytes).map_err(|source| BuildError::CacheRecords { from: name.clone(), source })?;
    Ok(Source { name, fetch, layers: manifest.layers, diff_ids: config.rootfs.diff_ids, records, mounts })
}

/// The records in a config's [`CONFIG_FIELD`]; none when it has no such field, and no step
/// record when they are of another key version (they could never match).
fn records_of(name: &str, config: &[u8]) -> Result<ExportedCache, BuildError> {
    let records_err = |source| BuildError::CacheRecords { from: name.to_string(), source };
    let value: serde_json::Value = serde_json::from_slice(config).map_err(records_err)?;
    let Some(field) = value.get(CONFIG_FIELD) else { return Ok(ExportedCache::default()) };
    let mut cache: ExportedCache = serde_json::from_value(field.clone()).map_err(records_err)?;
    if cache.key_version != KEY_VERSION {
        cache.records.clear();
    }
    Ok(cache)
}

/// The steps an export of `mode` carries: every step (`max`), or those whose result is part of
/// the final image (its chain ids); each key once.
fn selected<'s>(steps: &'s [CacheStep], image_diff_ids: &[DiffId], max: bool) -> Vec<&'s CacheStep> {
    let chains: BTreeSet<Digest> = chain_ids(image_diff_ids).into_iter().collect();
    let mut seen = BTreeSet::new();
    steps
        .iter()
        .filter(|s| max || s.chain_after.as_ref().is_none_or(|c| chains.contains(c)))
        .filter(|s| seen.insert(s.key))
        .collect()
}

/// The records of `steps` over `layers` (each step's layer added once, in order); returns the
/// records and the layers they index.
fn exported_records(steps: &[&CacheStep]) -> (ExportedCache, Vec<(DiffId, Descriptor)>) {
    let mut layers: Vec<(DiffId, Descriptor)> = Vec::new();
    let mut records = Vec::new();
    for step in steps {
        let layer = step.record.layer.as_ref().map(|l| match layers.iter().position(|(d, _)| *d == l.diff_id) {
            Some(i) => i,
            None => {
                layers.push((l.diff_id, l.blob.clone()));
                layers.len() - 1
            }
        });
        records.push(step.exported(layer));
    }
    (ExportedCache { key_version: KEY_VERSION, records, mounts: Vec::new() }, layers)
}

/// The records of the steps that made `image_diff_ids` (`type=inline`), indexing the image's own
/// layers; `None` when no step is part of the image.
pub(crate) fn inline_records(steps: &[CacheStep], image_diff_ids: &[DiffId]) -> Option<serde_json::Value> {
    let chosen = selected(steps, image_diff_ids, false);
    let mut records = Vec::new();
    for step in chosen {
        let layer = match &step.record.layer {
            None => None,
            Some(l) => Some(image_diff_ids.iter().position(|d| *d == l.diff_id)?),
        };
        records.push(step.exported(layer));
    }
    if records.is_empty() {
        return None;
    }
    serde_json::to_value(ExportedCache { key_version: KEY_VERSION, records, mounts: Vec::new() }).ok()
}

/// What writing a cache image needs.
pub struct ExportCtx<'a> {
    pub store: &'a Store,
    /// The store's cache mounts, for `mounts=true`.
    pub mounts: &'a CacheMounts,
    pub imports: &'a CacheImports,
    pub platform: &'a Platform,
    pub connect: &'a Connect<'a>,
    pub progress: &'a Reporter,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportedCacheReport {
    /// Records, layers and cache mounts in the cache.
    pub records: usize,
    pub layers: usize,
    pub mounts: usize,
    /// Cache mounts left out for their size (`mounts-max-size`), with it.
    pub skipped: Vec<(String, u64)>,
    /// The cache manifest's digest as written.
    pub digest: Digest,
}

/// Writes the cache of `output` where `export` says (not `type=inline`, which the build itself
/// writes into the image).
pub fn export_cache(
    ctx: &ExportCtx<'_>,
    output: &super::BuildOutput,
    export: &CacheExport,
) -> Result<ExportedCacheReport, BuildError> {
    let lease = ctx.store.lease("cache-export")?;
    let steps = selected(&output.cache_steps.steps, &output.image.config.rootfs.diff_ids, export.max);
    let (mut cache, mut layers) = exported_records(&steps);
    let mut skipped = Vec::new();
    if export.mounts {
        skipped = export_mounts(ctx, &lease, &output.cache_steps.mount_ids, export, &mut cache, &mut layers)?;
    }
    let descriptors: Vec<Descriptor> = layers.iter().map(|(_, d)| d.clone()).collect();
    let absent_ok = match &export.to {
        // Layers the registry already holds in an imported cache are mounted, not downloaded.
        CacheTo::Registry(r) => {
            let push = (r.registry(), export.compression);
            ctx.imports.prepare_push(ctx.store, &lease, ctx.progress, &descriptors, push)?
        }
        _ => {
            ctx.imports.ensure_local(ctx.store, &lease, ctx.progress, &descriptors)?;
            false
        }
    };
    let image = cache_image(ctx, &lease, &cache, &layers)?;
    let layer_options = LayerOptions { level: export.level, absent_ok, ..LayerOptions::default() };
    let name = match &export.to {
        CacheTo::Registry(r) => r.to_string(),
        CacheTo::Local { dest, .. } => dest.display().to_string(),
        CacheTo::Inline => return Err(BuildError::CacheToInline),
    };
    let image_err = |e| BuildError::CacheToImage { to: name.clone(), source: Box::new(e) };
    let digest = match &export.to {
        CacheTo::Registry(reference) => {
            let registry_err = |e| BuildError::CacheTo { to: name.clone(), source: Box::new(e) };
            let plan = crate::image::distributable_with(
                ctx.store,
                &image,
                export.compression,
                &layer_options,
                &lease,
                ctx.progress,
            )
            .map_err(image_err)?;
            let client = (ctx.connect)(reference.registry()).map_err(registry_err)?;
            let options = crate::registry::PushOptions::default();
            crate::registry::push(&client, ctx.store, &plan, reference, &options, ctx.progress)
                .map_err(registry_err)?
                .digest
        }
        CacheTo::Local { dest, tag } => {
            let opts = crate::image::SaveOptions {
                format: crate::image::SaveFormat::OciDir,
                compression: export.compression,
                layers: layer_options,
                mtime: 0,
            };
            let tagged = Reference::parse(&format!("slipway.invalid/cache:{tag}"))
                .map_err(|source| BuildError::InvalidCacheTag { tag: tag.clone(), source })?;
            crate::image::save_images(
                ctx.store,
                &[(image.clone(), vec![tagged])],
                &opts,
                crate::image::SaveTarget::Dir(dest.clone()),
                ctx.progress,
            )
            .map_err(image_err)?;
            image.manifest_descriptor.digest
        }
        CacheTo::Inline => unreachable!("returned above"),
    };
    Ok(ExportedCacheReport {
        records: cache.records.len(),
        layers: layers.len(),
        mounts: cache.mounts.len(),
        skipped,
        digest,
    })
}

/// Tars each cache mount `ids` names that exists in the store (and fits the cap) into a layer
/// of the cache; returns the ids left out for their size, with it.
fn export_mounts(
    ctx: &ExportCtx<'_>,
    lease: &Lease,
    ids: &BTreeSet<String>,
    export: &CacheExport,
    cache: &mut ExportedCache,
    layers: &mut Vec<(DiffId, Descriptor)>,
) -> Result<Vec<(String, u64)>, BuildError> {
    let mut skipped = Vec::new();
    for info in ctx.mounts.list()?.into_iter().filter(|i| ids.contains(&i.id)) {
        if info.bytes > export.mounts_max_size {
            skipped.push((info.id, info.bytes));
            continue;
        }
        let request = CacheMountRequest { id: &info.id, sharing: Sharing::Shared, mode: 0o755, uid: 0, gid: 0 };
        let mount = ctx.mounts.acquire(&request, &|| false)?;
        let ingest = ctx.store.ingest()?;
        let opts = crate::layer::WriteOptions { source_date_epoch: None };
        let (ingest, diff_id, _) = crate::layer::write_dir(mount.path(), &opts, ingest)
            .map_err(|source| BuildError::CacheMountLayer { id: info.id.clone(), source })?;
        let (digest, size) = ingest.commit(None, Some(lease))?;
        drop(mount);
        let index = match layers.iter().position(|(d, _)| *d == diff_id) {
            Some(i) => i,
            None => {
                layers.push((diff_id, Descriptor::new(MediaType::OciLayer, digest, size)));
                layers.len() - 1
            }
        };
        cache.mounts.push(ExportedMount { id: info.id, layer: index });
    }
    Ok(skipped)
}

/// Writes the cache's config and manifest into the store (under `lease`); returns it as an image.
fn cache_image(
    ctx: &ExportCtx<'_>,
    lease: &Lease,
    cache: &ExportedCache,
    layers: &[(DiffId, Descriptor)],
) -> Result<Image, BuildError> {
    let config = ImageConfig {
        architecture: ctx.platform.architecture.clone(),
        os: ctx.platform.os.clone(),
        variant: ctx.platform.variant.clone(),
        rootfs: RootFs { kind: "layers".into(), diff_ids: layers.iter().map(|(d, _)| *d).collect() },
        ..Default::default()
    };
    let mut value = serde_json::to_value(&config).expect("a config serializes");
    value[CONFIG_FIELD] = serde_json::to_value(cache).expect("records serialize");
    let bytes = canonical::to_bytes(&value);
    let config_digest = ctx.store.write_blob(&bytes, Some(lease))?;
    let config_descriptor = Descriptor::new(MediaType::OciConfig, config_digest, bytes.len() as u64);
    let manifest = ImageManifest::oci(config_descriptor, layers.iter().map(|(_, d)| d.clone()).collect());
    let manifest_bytes = canonical::to_bytes(&manifest);
    let manifest_digest = ctx.store.write_blob(&manifest_bytes, Some(lease))?;
    let descriptor = Descriptor::new(MediaType::OciManifest, manifest_digest, manifest_bytes.len() as u64);
    Ok(load_image(ctx.store, &descriptor, ctx.platform, Vec::new())?)
}
