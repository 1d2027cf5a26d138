//! The target stage → an image in the store: config blob, manifest blob, then the tags (or a GC
//! root when the build names none, so the image survives `prune` and is reachable by id).

use super::BuildError;
use super::stage::{BuildCtx, StageResult};
use crate::image::{Image, load_image};
use crate::oci::{Descriptor, ImageManifest, MediaType, canonical};

/// Writes the image and names it; returns it and its manifest descriptor.
pub(crate) fn export(ctx: &BuildCtx<'_>, target: &StageResult) -> Result<(Image, Descriptor), BuildError> {
    let store = ctx.builder.store;
    let mut config = target.config.clone();
    config.created = Some(crate::oci::time::rfc3339(target.last_created));
    if !ctx.options.labels.is_empty() {
        let labels = config.config.get_or_insert_with(Default::default).labels.get_or_insert_with(Default::default);
        for (k, v) in &ctx.options.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    let config_bytes = canonical::to_bytes(&config);
    let config_digest = store.write_blob(&config_bytes, Some(ctx.lease))?;
    let manifest = ImageManifest::oci(
        Descriptor::new(MediaType::OciConfig, config_digest, config_bytes.len() as u64),
        target.layers.clone(),
    );
    let manifest_bytes = canonical::to_bytes(&manifest);
    let manifest_digest = store.write_blob(&manifest_bytes, Some(ctx.lease))?;
    let descriptor = Descriptor::new(MediaType::OciManifest, manifest_digest, manifest_bytes.len() as u64);
    if ctx.options.tags.is_empty() {
        store.add_root(&format!("{}{}", crate::image::UNTAGGED_ROOT, manifest_digest.hex()), &manifest_digest)?;
    }
    for tag in &ctx.options.tags {
        store.set_tag(tag, descriptor.clone())?;
    }
    let image = load_image(store, &descriptor, &ctx.options.platform, ctx.options.tags.clone())?;
    Ok((image, descriptor))
}
