//! The target stage → an image in the store: config blob, manifest blob, then the tags (or a GC
//! root when the build names none, so the image survives `prune` and is reachable by id). With
//! `rewrite-timestamp` the layers' mtimes and the history's times are clamped first.

use super::AnnotationTarget;
use super::BuildError;
use super::stage::{BuildCtx, StageResult};
use crate::image::{Image, TimestampRewrite, load_image};
use crate::oci::{Descriptor, Digest, ImageConfig, ImageManifest, MediaType, canonical};

/// Writes the image and names it; returns it, its manifest descriptor and whether it is kept
/// (named, or rooted): an image some of whose layers are only in an imported cache
/// (`fetch_final_layers` off) is written but neither named nor rooted, so the store never names
/// an image it does not wholly hold.
pub(crate) fn export(ctx: &BuildCtx<'_>, target: &StageResult) -> Result<(Image, Descriptor, bool), BuildError> {
    let store = ctx.builder.store;
    let mut config = target.config.clone();
    config.created = Some(crate::oci::time::rfc3339(target.last_created));
    if !ctx.options.labels.is_empty() {
        let labels = config.config.get_or_insert_with(Default::default).labels.get_or_insert_with(Default::default);
        for (k, v) in &ctx.options.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    let mut layers = target.layers.clone();
    // An imported cache's hits are fetched now: the image's layers are in the store with it.
    if ctx.options.fetch_final_layers || ctx.options.rewrite_timestamp {
        super::layers::ensure_local(ctx, &layers)?;
    }
    let kept = layers.iter().all(|l| store.has_blob(&l.digest));
    if ctx.options.rewrite_timestamp {
        let epoch = ctx.options.source_date_epoch.ok_or(BuildError::RewriteWithoutEpoch)?;
        layers = rewrite_timestamps(ctx, &mut config, &layers, epoch)?;
    }
    let config_bytes = match ctx.options.cache_inline {
        false => canonical::to_bytes(&config),
        // `--cache-to type=inline`: the records of the image's own steps beside the config.
        true => {
            let mut value = serde_json::to_value(&config).expect("a config serializes");
            let steps = ctx.steps.snapshot();
            if let Some(records) = super::cache_io::inline_records(&steps, &config.rootfs.diff_ids) {
                value[crate::cache::CONFIG_FIELD] = records;
            }
            canonical::to_bytes(&value)
        }
    };
    let config_digest = store.write_blob(&config_bytes, Some(ctx.lease))?;
    let mut manifest =
        ImageManifest::oci(Descriptor::new(MediaType::OciConfig, config_digest, config_bytes.len() as u64), layers);
    let platform = &ctx.options.platform;
    manifest.annotations = super::annotations::of(&ctx.options.annotations, AnnotationTarget::Manifest, Some(platform));
    let manifest_bytes = canonical::to_bytes(&manifest);
    let manifest_digest = store.write_blob(&manifest_bytes, Some(ctx.lease))?;
    let descriptor = Descriptor::new(MediaType::OciManifest, manifest_digest, manifest_bytes.len() as u64);
    if !kept {
        let image = load_image(store, &descriptor, &ctx.options.platform, Vec::new())?;
        return Ok((image, descriptor, false));
    }
    // One platform of several: the index names it (and the build's lease keeps it until then).
    if ctx.options.index_member {
        let image = load_image(store, &descriptor, &ctx.options.platform, Vec::new())?;
        return Ok((image, descriptor, true));
    }
    if ctx.options.tags.is_empty() {
        store.add_root(&format!("{}{}", crate::image::UNTAGGED_ROOT, manifest_digest.hex()), &manifest_digest)?;
    }
    for tag in &ctx.options.tags {
        store.set_tag(tag, descriptor.clone())?;
    }
    let image = load_image(store, &descriptor, &ctx.options.platform, ctx.options.tags.clone())?;
    Ok((image, descriptor, true))
}

/// `rewrite-timestamp`: the layers with mtimes later than `epoch` clamped (new blobs), the
/// config's DiffIDs to match and every history time later than `epoch` set to it (BuildKit
/// clamps those too); returns the layers.
fn rewrite_timestamps(
    ctx: &BuildCtx<'_>,
    config: &mut ImageConfig,
    layers: &[Descriptor],
    epoch: i64,
) -> Result<Vec<Descriptor>, BuildError> {
    let rewrite =
        TimestampRewrite { store: ctx.builder.store, epoch, lease: ctx.lease, progress: ctx.builder.reporter };
    let name = Digest::of(&canonical::to_bytes(&*config));
    let rewritten = rewrite.rewrite(&name, layers, &config.rootfs.diff_ids)?;
    config.rootfs.diff_ids = rewritten.diff_ids;
    let clamped = crate::oci::time::rfc3339(epoch);
    for entry in &mut config.history {
        let later = entry.created.as_deref().and_then(crate::oci::time::parse_rfc3339).is_none_or(|t| t > epoch);
        if later {
            entry.created = Some(clamped.clone());
        }
    }
    Ok(rewritten.layers)
}
