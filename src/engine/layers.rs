//! The life of a layer step: cache lookup (hit: reuse the recorded layer, run nothing; miss:
//! say why), a fresh active snapshot on the parent's layers, the step's work in it, the diff
//! into the store as a layer blob, the commit as the snapshot `layer:<chain id>`, the cache
//! record. The active snapshot and its mount are gone when this returns, whatever happened.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::BuildError;
use super::cache_io::CacheStep;
use super::records::StepEntry;
use super::stage::{BuildCtx, State};
use super::step::StepCtx;
use crate::cache::{CacheKey, KeyInputs, LayerRecord, MissReason, Record, Slot, portable_slot};
use crate::image::{chain_ids, layer_snapshot_name, unpack_layers};
use crate::layer::WriteOptions;
use crate::oci::{Descriptor, DiffId, Digest, MediaType};
use crate::progress::{CacheStatus, LogStream, Task};
use crate::snapshot::{Mounts, SnapshotError, Snapshotter};

/// Prefix of the GC roots that keep cached layers.
pub(crate) const CACHE_ROOT: &str = "cache:";

/// A layer step, ready to be looked up: what its key is made of and how it is shown.
pub(crate) struct LayerStep {
    pub inputs: KeyInputs,
    /// For COPY/ADD from the context: each selected file's digest, to explain a miss.
    pub files: Option<Vec<(String, Digest)>>,
    /// The task's name (`[stage 2/5] RUN make`).
    pub title: String,
    /// The history entry's `created_by`.
    pub created_by: String,
    /// `COPY --link`: the work runs on an empty tree, not on the stage's layers, so the layer
    /// does not depend on them (its key has no parent) and is appended as is to any base.
    pub independent: bool,
}

/// A layer step with its key computed once, and its cache slot.
struct Keyed {
    /// The inputs as remembered for explaining misses: those of the key, but the value of an ARG
    /// whose name looks like a secret (`slipway check`'s SecretsUsedInArgOrEnv words) replaced by
    /// its digest, so `cache.db` never holds it (catalogue I1).
    inputs: KeyInputs,
    files: Option<Vec<(String, Digest)>>,
    key: CacheKey,
    slot: Slot,
    independent: bool,
}

/// What a layer step's work is given besides its tree: its progress task, and its entry in the
/// build record, through which it opens its log file.
pub(crate) struct StepRun<'a> {
    pub task: &'a Task,
    ctx: &'a BuildCtx<'a>,
    entry: StepEntry,
    stage: String,
    index: usize,
}

impl StepRun<'_> {
    /// Creates the step's log file, named in the build record.
    pub(crate) fn log_file(&self) -> Result<File, BuildError> {
        let (file, name) = self.ctx.logs.step(self.task.id(), &self.stage, self.index)?;
        self.ctx.record.step_log(self.entry, &name);
        Ok(file)
    }

    /// Reports the cache lookup: a hit (`from` an imported cache, or the store's own), or a
    /// miss and why.
    fn cache(&self, from: Option<&str>, miss: Option<&MissReason>) {
        self.ctx.record.step_cache(self.entry, from, miss);
        self.task.cache(match miss {
            None => CacheStatus::Hit { from: from.map(str::to_string) },
            Some(reason) => CacheStatus::Miss { reason: reason.to_string() },
        });
    }
}

/// Whether the step was looked up and found.
enum Outcome {
    Hit(Box<Record>),
    Miss,
}

/// The whole life of a layer step, on every path: its task starts (and its entry in the build
/// record); it is looked up (a hit reuses the recorded layer and runs nothing, a miss says why);
/// on a miss `work` runs in a fresh snapshot on the stage's layers, whose changes become the
/// step's layer and its cache record; the layer joins the stage and its history entry is
/// written; the task ends — failed, with the error, whatever failed on the way.
pub(crate) fn layer_step(
    sc: &StepCtx<'_>,
    state: &mut State,
    step: LayerStep,
    work: impl FnOnce(&StepRun<'_>, &Path) -> Result<(), BuildError>,
) -> Result<(), BuildError> {
    layer_step_direct(sc, state, step, None, work)
}

/// Writes a step's layer straight from its sources, with no snapshot: given the tree the step
/// goes on (none for an independent step; mounted read-only), it writes the layer to the sink
/// and returns how many entries it holds — or `None`, having written nothing, when only running
/// the work in a snapshot gives the layer.
pub(crate) type Direct<'a> = Box<dyn FnOnce(Option<&Path>, &mut dyn Write) -> Result<Option<u64>, BuildError> + 'a>;

/// [`layer_step`], trying `direct` first on a miss: a layer it writes is the step's layer and
/// no snapshot is made for it (one is extracted from the layer when a later step needs it).
pub(crate) fn layer_step_direct(
    sc: &StepCtx<'_>,
    state: &mut State,
    step: LayerStep,
    direct: Option<Direct<'_>>,
    work: impl FnOnce(&StepRun<'_>, &Path) -> Result<(), BuildError>,
) -> Result<(), BuildError> {
    let ctx = sc.build;
    let task = ctx.builder.reporter.start(|| step.title.clone());
    let entry = ctx.record.step_started(&state.name, &step.title);
    let run = StepRun { task: &task, ctx, entry, stage: state.name.clone(), index: sc.index };
    let key = step.inputs.key();
    let slot = slot(ctx, state, sc.index);
    let keyed = Keyed { inputs: remembered(step.inputs), files: step.files, key, slot, independent: step.independent };
    let portable = portable_slot(&ctx.options.dockerfile_name, &state.name, sc.index);
    match look_up_or_run(ctx, state, &keyed, &portable, &run, direct, work) {
        Ok(record) => {
            apply(ctx, state, &record);
            ctx.steps.push(CacheStep {
                key: keyed.key,
                record: record.clone(),
                slot: portable,
                inputs: keyed.inputs,
                files: keyed.files,
                chain_after: state.chain_id(),
            });
            state.history(state.last_created, super::history::layer(step.created_by, record.layer.is_none()));
            ctx.record.step_ended(entry, Ok(record.layer.as_ref().map(|l| l.blob.size)));
            task.done();
            Ok(())
        }
        Err(e) => {
            ctx.record.step_ended(entry, Err(&e));
            task.fail(&e);
            Err(e)
        }
    }
}

fn look_up_or_run(
    ctx: &BuildCtx<'_>,
    state: &mut State,
    keyed: &Keyed,
    portable: &Slot,
    run: &StepRun<'_>,
    direct: Option<Direct<'_>>,
    work: impl FnOnce(&StepRun<'_>, &Path) -> Result<(), BuildError>,
) -> Result<Record, BuildError> {
    // One step, built once: whoever builds this key (another stage, another process on the
    // store) holds its lock; waiting for it means finding its record afterwards.
    let cancel = ctx.builder.cancel;
    let mut waiting = || run.task.log(LogStream::Stdout, || "waiting for another build of the same step".to_string());
    let Some(lock) = ctx.builder.caches.steps.lock(&keyed.key, &|| cancel.is_cancelled(), &mut waiting)? else {
        return Err(BuildError::Cancelled);
    };
    if let Outcome::Hit(record) = lookup(ctx, state, keyed, portable, run)? {
        lock.release_done();
        state.stats.cached += 1;
        return Ok(*record);
    }
    let written = match direct {
        Some(direct) => write_direct(ctx, state, keyed.independent, direct)?,
        None => None,
    };
    let made = match written {
        Some(made) => made,
        None => run_in_snapshot(ctx, state, keyed.independent, |rootfs| work(run, rootfs))?,
    };
    if let Some(layer) = &made.layer {
        state.stats.bytes += layer.blob.size;
    }
    record(ctx, keyed, &made)?;
    lock.release_done();
    state.stats.run += 1;
    Ok(made)
}

/// `inputs` with the values of secret-looking ARGs replaced by their digests.
fn remembered(mut inputs: KeyInputs) -> KeyInputs {
    for c in &mut inputs.components {
        if let Some(name) = c.name.strip_prefix("arg:")
            && crate::graph::lint::looks_secret(name)
        {
            c.value = Digest::of(c.value.as_bytes()).to_string();
        }
    }
    inputs
}

/// Adds the parent component: the base's content for the stage's first layer step, the layers
/// so far for later ones.
pub(crate) fn add_parent(state: &State, inputs: &mut KeyInputs) {
    let chain = state.chain_id().map_or_else(|| "scratch".to_string(), |c| c.to_string());
    let name = if state.had_layer_step { "parent" } else { "base" };
    inputs.add(name, chain);
}

/// A step's identity across builds: the context, Dockerfile, stage and position, and the
/// platform when it is not this machine's (so the platforms of a multi-platform build each
/// compare with their own previous build, and a host build's slot stays what it was).
fn slot(ctx: &BuildCtx<'_>, state: &State, index: usize) -> Slot {
    let o = ctx.options;
    let mut identity = format!("{}\0{}\0{}\0{}", o.identity, o.dockerfile_name, state.name, index);
    if !state.platform.matches(&crate::oci::Platform::host()) {
        identity.push_str(&format!("\0{}", state.platform));
    }
    Slot::new(&identity)
}

/// Looks the step up — in the store's records, then in the imported caches (`--cache-from`) —
/// and reports the outcome on its task and record. A record whose layer blob is gone is
/// forgotten and counts as a miss; an imported record's blob is fetched when it is read.
fn lookup(
    ctx: &BuildCtx<'_>,
    state: &State,
    keyed: &Keyed,
    portable: &Slot,
    run: &StepRun<'_>,
) -> Result<Outcome, BuildError> {
    let cache = &ctx.builder.caches.records;
    let no_cache =
        ctx.options.no_cache || ctx.options.no_cache_filter.iter().any(|s| s.eq_ignore_ascii_case(&state.name));
    let mut lost = None;
    if !no_cache && let Some(record) = cache.lookup(&keyed.key)? {
        match record.layer.as_ref().filter(|l| !ctx.builder.store.has_blob(&l.blob.digest)) {
            None => {
                if let Some(layer) = &record.layer {
                    ctx.lease.add(&layer.blob.digest)?;
                }
                cache.remember(&keyed.slot, &keyed.inputs, keyed.files.as_deref())?;
                run.cache(None, None);
                return Ok(Outcome::Hit(Box::new(record)));
            }
            // The layer is gone (E6): drop the record and its GC root, run the step again.
            Some(layer) => {
                tracing::warn!(key = %keyed.key, layer = %layer.blob.digest, "a cache record's layer is missing from the store; the step runs again");
                cache.forget(&keyed.key)?;
                ctx.builder.store.remove_roots(&format!("{CACHE_ROOT}{}", keyed.key))?;
                lost = Some(MissReason::LayerMissing { layer: layer.blob.digest });
            }
        }
    }
    if !no_cache && let Some((record, from)) = ctx.builder.imports.lookup(&keyed.key) {
        if let Some(layer) = &record.layer
            && ctx.builder.store.has_blob(&layer.blob.digest)
        {
            ctx.lease.add(&layer.blob.digest)?;
        }
        cache.remember(&keyed.slot, &keyed.inputs, keyed.files.as_deref())?;
        run.cache(Some(from), None);
        return Ok(Outcome::Hit(Box::new(record)));
    }
    let reason = match (no_cache, lost) {
        (true, _) => MissReason::NoCache,
        (false, Some(lost)) => lost,
        (false, None) => match cache.explain(&keyed.slot, &keyed.inputs, keyed.files.as_deref())? {
            MissReason::NoRecord => ctx
                .builder
                .imports
                .explain(portable, &keyed.inputs, keyed.files.as_deref())
                .unwrap_or(MissReason::NoRecord),
            reason => reason,
        },
    };
    run.cache(None, Some(&reason));
    Ok(Outcome::Miss)
}

/// Records a finished step under its key (and the slot's inputs, for the next explanation).
fn record(ctx: &BuildCtx<'_>, keyed: &Keyed, record: &Record) -> Result<(), BuildError> {
    let cache = &ctx.builder.caches.records;
    if let Some(layer) = &record.layer {
        ctx.builder.store.add_root(&format!("{CACHE_ROOT}{}", keyed.key), &layer.blob.digest)?;
    }
    cache.insert(&keyed.key, record)?;
    cache.remember(&keyed.slot, &keyed.inputs, keyed.files.as_deref())?;
    Ok(())
}

/// Applies a hit or a fresh record to the stage: its layer (if any) joins the image.
fn apply(ctx: &BuildCtx<'_>, state: &mut State, record: &Record) {
    state.last_created = ctx.clamp(record.created);
    if let Some(layer) = &record.layer {
        state.config.rootfs.diff_ids.push(layer.diff_id);
        state.layers.push(layer.blob.clone());
    }
    state.had_layer_step = true;
}

/// Makes sure the stage's layers are committed snapshots; returns the top one's name.
pub(crate) fn parent_snapshot(ctx: &BuildCtx<'_>, state: &State) -> Result<Option<String>, BuildError> {
    ensure_local(ctx, &state.layers)?;
    let label = Digest::of(state.name.as_bytes());
    let unpacked = unpack_layers(ctx.builder.store, ctx.builder.snapshotter, &label, state.diff_ids(), &state.layers)?;
    Ok(unpacked.top)
}

/// Brings the blobs of `layers` an imported cache has and the store lacks into the store (under
/// the build's lease): a hit from `--cache-from` is fetched only when something reads it.
pub(crate) fn ensure_local(ctx: &BuildCtx<'_>, layers: &[Descriptor]) -> Result<(), BuildError> {
    let store = ctx.builder.store;
    ctx.builder.imports.ensure_local(store, ctx.lease, ctx.builder.reporter, layers)
}

/// Runs `work` in a fresh active snapshot on the stage's layers (on nothing when
/// `independent`; mounted, or a plain directory for the copy snapshotter), then turns its
/// changes into a layer. Returns the new record.
fn run_in_snapshot(
    ctx: &BuildCtx<'_>,
    state: &State,
    independent: bool,
    work: impl FnOnce(&Path) -> Result<(), BuildError>,
) -> Result<Record, BuildError> {
    let sn = ctx.builder.snapshotter;
    let parent = if independent { None } else { parent_snapshot(ctx, state)? };
    let key = format!("build-{}-{}", std::process::id(), unique_nanos());
    let mounts = sn.prepare(&key, parent.as_deref())?;
    let active = Active { sn, key: &key, live: true };
    with_tree(sn, &mounts, work)?;
    commit(ctx, state, active, independent)
}

/// Writes a step's layer with `direct` (its tree mounted read-only for it); `None` when it
/// declined. The layer is recorded as an independent step's is: a blob, no snapshot.
fn write_direct(
    ctx: &BuildCtx<'_>,
    state: &State,
    independent: bool,
    direct: Direct<'_>,
) -> Result<Option<Record>, BuildError> {
    let store = ctx.builder.store;
    let parent = if independent { None } else { parent_snapshot(ctx, state)? };
    let view = match &parent {
        Some(top) => Some(super::copy::LayersView::of(ctx.builder.snapshotter, top)?),
        None => None,
    };
    let created = ctx.created();
    let mut ingest = store.ingest()?;
    let Some(entries) = direct(view.as_ref().map(|v| v.path()), &mut ingest)? else {
        tracing::debug!(stage = %state.name, "the layer is made in a snapshot");
        return Ok(None);
    };
    drop(view);
    tracing::debug!(stage = %state.name, entries, "the layer was written straight from the sources");
    if entries == 0 {
        return Ok(Some(Record { layer: None, created }));
    }
    let (digest, size) = ingest.commit(None, Some(ctx.lease))?;
    let diff_id = DiffId(digest);
    let blob = Descriptor::new(MediaType::OciLayer, digest, size);
    store.record_layer_blob(diff_id, &blob)?;
    Ok(Some(Record { layer: Some(LayerRecord { diff_id, blob }), created }))
}

/// Runs `f` on a snapshot's tree: its plain directory (copy snapshotter), or a temporary mount
/// point under the snapshotter's directory, unmounted afterwards whatever `f` returned.
pub(crate) fn with_tree<T>(
    sn: &dyn Snapshotter,
    mounts: &Mounts,
    f: impl FnOnce(&Path) -> Result<T, BuildError>,
) -> Result<T, BuildError> {
    if let Some(dir) = mounts.plain_dir() {
        return f(dir);
    }
    let target = crate::snapshot::temp_dir(sn.dir(), "mnt")?;
    let mounted = mounts.mount(target.path())?;
    let result = f(target.path());
    let unmounted = mounted.unmount();
    let value = result?;
    unmounted?;
    Ok(value)
}

/// The active snapshot of a step; removed on drop unless committed.
struct Active<'a> {
    sn: &'a dyn Snapshotter,
    key: &'a str,
    live: bool,
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        if self.live
            && let Err(e) = self.sn.remove(self.key)
        {
            tracing::warn!(key = self.key, error = %e, "removing a step's snapshot");
        }
    }
}

/// Writes the active snapshot's changes as a layer blob and commits the snapshot as
/// `layer:<chain id>` — unless it is `independent` (it holds the new layer alone, not the stage
/// under it: it is dropped, and the layer is extracted onto the stage when a later step needs it).
fn commit(ctx: &BuildCtx<'_>, state: &State, mut active: Active<'_>, independent: bool) -> Result<Record, BuildError> {
    let store = ctx.builder.store;
    let sn = ctx.builder.snapshotter;
    let created = ctx.created();
    let opts = WriteOptions { source_date_epoch: ctx.options.source_date_epoch };
    let mut ingest = store.ingest()?;
    // The ingest hashes what it is given: the layer is hashed once, and its DiffID is the
    // digest the store verified.
    let diff = sn.diff_unhashed(active.key, &opts, &mut ingest)?;
    if diff.entries == 0 {
        // Nothing changed: no layer (the history entry says `empty_layer`).
        return Ok(Record { layer: None, created });
    }
    let (digest, size) = ingest.commit(None, Some(ctx.lease))?;
    let diff_id = DiffId(digest);
    let blob = Descriptor::new(MediaType::OciLayer, digest, size);
    store.record_layer_blob(diff_id, &blob)?;
    if independent {
        return Ok(Record { layer: Some(LayerRecord { diff_id, blob }), created });
    }
    let mut diff_ids = state.diff_ids().to_vec();
    diff_ids.push(diff_id);
    let chain = chain_ids(&diff_ids).last().copied().expect("one layer at least");
    let name = layer_snapshot_name(&chain);
    match sn.commit(&name, active.key, Some(diff_id)) {
        Ok(_) => active.live = false,
        // The same content is already a snapshot (another build, or an earlier identical step).
        Err(SnapshotError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Record { layer: Some(LayerRecord { diff_id, blob }), created })
}

/// Nanoseconds since the epoch, to make snapshot keys unique.
pub(crate) fn unique_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}
