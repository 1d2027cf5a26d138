//! Finding images in the store by name or id, and reading their manifest and config.

use std::collections::BTreeMap;

use super::{ImageError, MAX_JSON_BLOB};
use crate::oci::{Descriptor, Digest, ImageConfig, ImageIndex, ImageManifest, Platform, Reference, canonical};
use crate::store::Store;

/// Owner prefix of the GC roots that keep untagged images (e.g. a loaded archive without names).
pub(crate) const UNTAGGED_ROOT: &str = "untagged:";

/// A single-platform image in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The names that point at this image's manifest (or at an index containing it).
    pub names: Vec<Reference>,
    /// The manifest (the platform's entry when the name points at an index).
    pub manifest_descriptor: Descriptor,
    pub manifest: ImageManifest,
    pub config: ImageConfig,
}

impl Image {
    /// The image id: the digest of its config.
    pub fn id(&self) -> Digest {
        self.manifest.config.digest
    }

    /// The platform its config names (None when the config names no architecture).
    pub fn platform(&self) -> Option<Platform> {
        let c = &self.config;
        (!c.architecture.is_empty()).then(|| Platform::new(&c.os, &c.architecture, c.variant.as_deref()))
    }
}

/// One row of `slipway images`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageSummary {
    /// `None` for an untagged image.
    pub reference: Option<String>,
    pub repository: String,
    pub tag: String,
    pub id: Digest,
    pub manifest_digest: Digest,
    /// Seconds since the epoch, from the config's `created`.
    pub created: Option<i64>,
    /// Config plus layer blob sizes, as stored.
    pub size: u64,
    /// The platforms the name holds (several for a multi-platform image, in its index's order).
    pub platforms: Vec<String>,
}

/// Reads and decodes a JSON blob.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    store: &Store,
    what: &'static str,
    digest: &Digest,
) -> Result<T, ImageError> {
    let bytes = store.read_blob(digest, MAX_JSON_BLOB)?;
    canonical::from_bytes(what, &bytes).map_err(|source| ImageError::Decode { what, digest: *digest, source })
}

/// Loads the image a descriptor names; an index resolves to the entry for `platform`.
pub fn load_image(
    store: &Store,
    descriptor: &Descriptor,
    platform: &Platform,
    names: Vec<Reference>,
) -> Result<Image, ImageError> {
    let mut descriptor = descriptor.clone();
    for _ in 0..4 {
        if descriptor.media_type.is_index() {
            let index: ImageIndex = read_json(store, "index", &descriptor.digest)?;
            let pick = index
                .manifests
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| p.matches(platform)))
                .or_else(|| if index.manifests.len() == 1 { index.manifests.first() } else { None })
                .ok_or_else(|| ImageError::NoPlatform { digest: descriptor.digest, platform: platform.to_string() })?;
            descriptor = pick.clone();
            continue;
        }
        if !descriptor.media_type.is_manifest() {
            return Err(ImageError::UnsupportedMediaType {
                digest: descriptor.digest,
                media_type: descriptor.media_type.clone(),
            });
        }
        let manifest: ImageManifest = read_json(store, "manifest", &descriptor.digest)?;
        let config: ImageConfig = read_json(store, "config", &manifest.config.digest)?;
        return Ok(Image { names, manifest_descriptor: descriptor, manifest, config });
    }
    Err(ImageError::UnsupportedMediaType { digest: descriptor.digest, media_type: descriptor.media_type })
}

/// Every image root in the store: tagged names and untagged roots, by manifest digest.
pub(crate) fn roots(store: &Store) -> Result<Vec<(Option<Reference>, Descriptor)>, ImageError> {
    let mut out: Vec<(Option<Reference>, Descriptor)> =
        store.tags()?.into_iter().map(|t| (Some(t.reference), t.descriptor)).collect();
    for (_, digest) in store.roots(UNTAGGED_ROOT)? {
        if out.iter().any(|(_, d)| d.digest == digest) {
            continue;
        }
        let bytes = store.read_blob(&digest, MAX_JSON_BLOB)?;
        let versioned: crate::oci::Versioned = canonical::from_bytes("manifest", &bytes)
            .map_err(|source| ImageError::Decode { what: "manifest", digest, source })?;
        let media_type = versioned.media_type.unwrap_or(if versioned.manifests.is_some() {
            crate::oci::MediaType::OciIndex
        } else {
            crate::oci::MediaType::OciManifest
        });
        out.push((None, Descriptor::new(media_type, digest, bytes.len() as u64)));
    }
    Ok(out)
}

/// Loads an image root for `platform`; without one, for this machine's platform, else (a
/// multi-platform image that has no such entry) for its index's first entry.
pub(crate) fn load_root(
    store: &Store,
    descriptor: &Descriptor,
    platform: Option<&Platform>,
    names: Vec<Reference>,
) -> Result<Image, ImageError> {
    match (platform, load_image(store, descriptor, platform.unwrap_or(&Platform::host()), names.clone())) {
        (None, Err(ImageError::NoPlatform { .. })) => {
            let index: ImageIndex = read_json(store, "index", &descriptor.digest)?;
            let first = index.manifests.first().ok_or_else(|| ImageError::NoPlatform {
                digest: descriptor.digest,
                platform: Platform::host().to_string(),
            })?;
            load_image(store, first, &Platform::host(), names)
        }
        (_, loaded) => loaded,
    }
}

/// The platforms an image root holds: its index's entries', else its config's.
pub fn root_platforms(store: &Store, descriptor: &Descriptor) -> Result<Vec<Platform>, ImageError> {
    if descriptor.media_type.is_index() {
        let index: ImageIndex = read_json(store, "index", &descriptor.digest)?;
        return Ok(index.manifests.iter().filter_map(|m| m.platform.clone()).collect());
    }
    let image = load_image(store, descriptor, &Platform::host(), Vec::new())?;
    Ok(image.platform().into_iter().collect())
}

/// Finds an image by name (`busybox`, `localhost:5000/a:t`), by full digest of its config or
/// manifest, or by a unique prefix of its id — names first, as Docker does. A multi-platform
/// image gives this machine's platform, else its first.
pub fn resolve(store: &Store, spec: &str) -> Result<Image, ImageError> {
    resolve_for(store, spec, None)
}

/// [`resolve`] for `platform` when given (a multi-platform image without it is an error).
pub fn resolve_for(store: &Store, spec: &str, wanted_platform: Option<&Platform>) -> Result<Image, ImageError> {
    if let Ok(reference) = Reference::parse(spec) {
        if let Some(descriptor) = store.get_tag(&reference)? {
            let names = names_of(store, &descriptor.digest)?;
            return load_root(store, &descriptor, wanted_platform, names);
        }
    }
    let wanted = spec.strip_prefix("sha256:").unwrap_or(spec);
    if wanted.is_empty() || !wanted.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return Err(ImageError::NotFound { name: spec.to_string() });
    }
    let mut found: BTreeMap<Digest, Image> = BTreeMap::new();
    for (_, descriptor) in roots(store)? {
        let Ok(image) = load_root(store, &descriptor, wanted_platform, Vec::new()) else { continue };
        if image.id().hex().starts_with(wanted) || image.manifest_descriptor.digest.hex().starts_with(wanted) {
            found.entry(image.id()).or_insert(image);
        }
    }
    match found.len() {
        0 => Err(ImageError::NotFound { name: spec.to_string() }),
        1 => {
            let mut image = found.into_values().next().expect("one entry");
            image.names = names_of_image(store, &image.id())?;
            Ok(image)
        }
        count => Err(ImageError::Ambiguous { prefix: spec.to_string(), count }),
    }
}

/// The tags whose descriptor is `manifest`.
fn names_of(store: &Store, manifest: &Digest) -> Result<Vec<Reference>, ImageError> {
    Ok(store.tags()?.into_iter().filter(|t| t.descriptor.digest == *manifest).map(|t| t.reference).collect())
}

/// The tags that resolve to image `id` on this platform.
pub(crate) fn names_of_image(store: &Store, id: &Digest) -> Result<Vec<Reference>, ImageError> {
    let mut names = Vec::new();
    for tag in store.tags()? {
        let image = load_root(store, &tag.descriptor, None, Vec::new())?;
        if image.id() == *id {
            names.push(tag.reference);
        }
    }
    Ok(names)
}

/// Every image in the store, one row per name (untagged images once): for `platform` when given
/// (images without it are left out), else as [`resolve`] picks.
pub fn list(store: &Store, platform: Option<&Platform>) -> Result<Vec<ImageSummary>, ImageError> {
    let mut rows = Vec::new();
    for (reference, descriptor) in roots(store)? {
        let image = match load_root(store, &descriptor, platform, Vec::new()) {
            Ok(image) => image,
            Err(ImageError::NoPlatform { .. }) if platform.is_some() => continue,
            Err(e) => return Err(e),
        };
        if let (Some(wanted), Some(has)) = (platform, image.platform())
            && !has.matches(wanted)
        {
            continue;
        }
        let platforms = root_platforms(store, &descriptor)?.iter().map(Platform::to_string).collect();
        let size = image.manifest.config.size + image.manifest.layers.iter().map(|l| l.size).sum::<u64>();
        let created = image.config.created.as_deref().and_then(crate::oci::time::parse_rfc3339);
        let (repository, tag) = match &reference {
            Some(r) => (r.familiar_name(), r.tag().unwrap_or("<none>").to_string()),
            None => ("<none>".to_string(), "<none>".to_string()),
        };
        rows.push(ImageSummary {
            reference: reference.as_ref().map(|r| r.to_string()),
            repository,
            tag,
            id: image.id(),
            manifest_digest: descriptor.digest,
            created,
            size,
            platforms,
        });
    }
    rows.sort_by(|a, b| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)));
    Ok(rows)
}
