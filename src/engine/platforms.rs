//! A multi-platform build (`--platform P1,P2,…`): one build per platform, each with its own
//! options, record and logs, planned one after another before any step runs (so every refusal —
//! a RUN no emulator can run — comes first), then run side by side under one `--jobs` gate and
//! one lease, and named together by an OCI image index.
//!
//! Steps the platforms share (a `FROM --platform=$BUILDPLATFORM` stage whose inputs are the
//! same) have the same cache key: the step lock ([`crate::cache::StepLocks`]) makes one build
//! run them while the others wait and take its record. The first failure cancels the builder's
//! token, so the other platforms stop too.

use std::time::Instant;

use super::{
    Annotation, AnnotationTarget, BuildError, BuildOptions, BuildOutput, Builder, Member, logs, plan, records,
    run_planned, scheduler,
};
use crate::oci::{Descriptor, ImageIndex, MediaType, Platform, Reference, canonical};

/// What a multi-platform build made.
#[derive(Debug, Clone)]
pub struct IndexOutput {
    /// The index's descriptor (what the tags point at).
    pub index: Descriptor,
    /// The index itself: its entries (platform, annotations) and its annotations, which every
    /// output repeats.
    pub document: ImageIndex,
    /// Each platform's image, in the order asked.
    pub platforms: Vec<(Platform, BuildOutput)>,
}

/// Builds `dockerfile` for each of `platforms` (two or more, distinct) and names the images by
/// one index; `options.platform` is ignored.
pub fn build_platforms(
    builder: &Builder<'_>,
    dockerfile: &str,
    options: &BuildOptions,
    platforms: &[Platform],
) -> Result<IndexOutput, BuildError> {
    let started = Instant::now();
    super::refuse::unprivileged()?;
    if options.rewrite_timestamp && options.source_date_epoch.is_none() {
        return Err(BuildError::RewriteWithoutEpoch);
    }
    if options.cache_inline {
        return Err(BuildError::MultiPlatformUnsupported { what: "--cache-to type=inline" });
    }
    let each: Vec<BuildOptions> = platforms
        .iter()
        .map(|p| BuildOptions { platform: p.clone(), tags: Vec::new(), index_member: true, ..options.clone() })
        .collect();
    let context = options.context_name.clone().unwrap_or_else(|| builder.context.root().display().to_string());
    let mut dirs = Vec::new();
    for o in &each {
        let dir = logs::LogDir::create(builder.store, o.keep_builds)?;
        let record = records::Recorder::start(dir.path(), dir.id(), &context, o)?;
        dirs.push((dir, record));
    }
    let members: Vec<Member<'_>> =
        each.iter().zip(&dirs).map(|(options, (logs, record))| Member { options, logs, record }).collect();
    let result = build_members(builder, dockerfile, &members, &options.tags, started);
    for (member, (_, record)) in members.iter().zip(&dirs) {
        match &result {
            Ok(out) => {
                let own = out.platforms.iter().find(|(p, _)| p == &member.options.platform).map(|(_, o)| o);
                match own {
                    Some(o) => record.finish(Ok(o)),
                    None => record.finish(Err(&BuildError::Cancelled)),
                }
            }
            Err(e) => record.finish(Err(e)),
        }
    }
    result
}

/// Plans every member, then runs them side by side; the index is written but not named yet.
fn build_members(
    builder: &Builder<'_>,
    dockerfile: &str,
    members: &[Member<'_>],
    tags: &[Reference],
    started: Instant,
) -> Result<IndexOutput, BuildError> {
    let lease = builder.store.lease("build")?;
    let mut plans = Vec::new();
    for member in members {
        let planned = plan::plan(builder, dockerfile, member.options, &lease).and_then(|plan| {
            if builder.snapshotter.backend() == crate::snapshot::Backend::Overlay {
                plan::check_depth(&plan, crate::snapshot::OVERLAY_MAX_LAYERS)?;
            }
            Ok(plan)
        });
        plans.push(planned.map_err(|e| on_platform(member, e))?);
    }
    let gate = scheduler::Gate::new(members[0].options.jobs);
    let results: Vec<Result<BuildOutput, BuildError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = members
            .iter()
            .zip(&plans)
            .map(|(member, plan)| {
                let (lease, gate) = (&lease, &gate);
                scope.spawn(move || {
                    let result =
                        run_planned(builder, member, plan, lease, gate, started).map_err(|e| on_platform(member, e));
                    if result.is_err() {
                        builder.cancel.cancel();
                    }
                    result
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(Err(BuildError::Cancelled))).collect()
    });
    let mut built = Vec::new();
    let mut first_error: Option<BuildError> = None;
    for (member, result) in members.iter().zip(results) {
        match result {
            Ok(out) => built.push((member.options.platform.clone(), out)),
            Err(e) => {
                // The error reported is the first that is not a consequence of the cancellation.
                if first_error.as_ref().is_none_or(|f| f.is_cancelled() && !e.is_cancelled()) {
                    first_error = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let (index, document) = write_index(builder, &built, &members[0].options.annotations, &lease)?;
    // The index is named (or rooted) before the lease that keeps its blobs ends.
    let out = IndexOutput { index, document, platforms: built };
    name_index(builder, tags, &out)?;
    Ok(out)
}

/// An error of one platform's build, naming the platform (a cancellation stays one).
fn on_platform(member: &Member<'_>, error: BuildError) -> BuildError {
    match error {
        // A Dockerfile's syntax and stage errors are the same on every platform.
        BuildError::Syntax { .. } | BuildError::Stages { .. } | BuildError::Cancelled => error,
        _ => BuildError::OnPlatform { platform: Box::new(member.options.platform.clone()), source: Box::new(error) },
    }
}

/// The index over the platforms' manifests, with the `index` and `manifest-descriptor`
/// annotations, in the store.
fn write_index(
    builder: &Builder<'_>,
    built: &[(Platform, BuildOutput)],
    annotations: &[Annotation],
    lease: &crate::store::Lease,
) -> Result<(Descriptor, ImageIndex), BuildError> {
    let mut index = ImageIndex::new();
    index.annotations = super::annotations::of(annotations, AnnotationTarget::Index, None);
    for (platform, out) in built {
        let mut entry = out.manifest.clone();
        entry.platform = Some(platform.clone());
        entry.annotations = super::annotations::of(annotations, AnnotationTarget::ManifestDescriptor, Some(platform));
        index.manifests.push(entry);
    }
    let bytes = canonical::to_bytes(&index);
    let digest = builder.store.write_blob(&bytes, Some(lease))?;
    Ok((Descriptor::new(MediaType::OciIndex, digest, bytes.len() as u64), index))
}

/// Tags the index with the build's names, or roots it when there are none (as an untagged
/// single-platform image is).
fn name_index(builder: &Builder<'_>, tags: &[Reference], out: &IndexOutput) -> Result<(), BuildError> {
    let store = builder.store;
    if tags.is_empty() {
        store.add_root(&format!("{}{}", crate::image::UNTAGGED_ROOT, out.index.digest.hex()), &out.index.digest)?;
    }
    for tag in tags {
        store.set_tag(tag, out.index.clone())?;
    }
    Ok(())
}
