//! Tags: `<root>/index.json`, an OCI image index whose manifest descriptors carry the full
//! reference in `org.opencontainers.image.ref.name` and `io.slipway.ref`.
//!
//! Writers read-modify-write the index under the exclusive store lock and replace it atomically
//! (temp in `ingest/` → fsync → rename → fsync dir), so a reader never sees a truncated file and
//! after a crash the index is its previous or its next version (N3). Tags live here, not in the
//! metadata database, so a damaged database can never lose one (E7). A tag is only set once the
//! closure of its manifest is in the store (N2: children before parents). Knows nothing of builds
//! or registries.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::gc::{Requirement, walk};
use super::lock::{StoreLock, try_lock_file};
use super::{Paths, Store, StoreError, fsync_dir};
use crate::failpoint;
use crate::oci::canonical;
use crate::oci::{ANNOTATION_REF_NAME, ANNOTATION_SLIPWAY_REF, Descriptor, ImageIndex, Reference};

/// Largest `index.json` we read (a store with ~100k tags).
const MAX_INDEX_LEN: u64 = 64 << 20;

/// A tag: a reference naming a manifest (or index) descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub reference: Reference,
    pub descriptor: Descriptor,
}

impl Store {
    /// Every tag, sorted by reference. Index entries without a parseable reference are skipped
    /// (and kept untouched on rewrite).
    pub fn tags(&self) -> Result<Vec<Tag>, StoreError> {
        let index = read_index(&self.inner.paths)?;
        let mut tags: Vec<Tag> = index.manifests.iter().filter_map(tag_of).collect();
        tags.sort_by_key(|t| t.reference.to_string());
        Ok(tags)
    }

    /// The descriptor `reference` names, if it is tagged.
    pub fn get_tag(&self, reference: &Reference) -> Result<Option<Descriptor>, StoreError> {
        let index = read_index(&self.inner.paths)?;
        let wanted = reference.to_string();
        Ok(index.manifests.iter().filter_map(tag_of).find(|t| t.reference.to_string() == wanted).map(|t| t.descriptor))
    }

    /// Points `reference` at `descriptor`. Every blob of the descriptor's closure must already be
    /// in the store (N2); otherwise the index is left alone.
    pub fn set_tag(&self, reference: &Reference, descriptor: Descriptor) -> Result<(), StoreError> {
        let _lock = StoreLock::exclusive(&self.inner.paths.lock)?;
        let referenced_by = format!("tag {reference}");
        let closure = walk(
            self,
            vec![(descriptor.digest, Some(descriptor.media_type.clone()), referenced_by, Requirement::Required)],
        )?;
        if let Some(missing) = closure.missing.into_iter().next() {
            return Err(StoreError::MissingBlob { digest: missing.digest, referenced_by: missing.referenced_by });
        }
        if let Some((_, err)) = closure.unreadable.into_iter().next() {
            return Err(err);
        }
        let mut index = read_index(&self.inner.paths)?;
        let name = reference.to_string();
        index.manifests.retain(|d| ref_of(d).as_deref() != Some(name.as_str()));
        let mut stored = descriptor;
        stored.set_annotation(ANNOTATION_REF_NAME, &name);
        stored.set_annotation(ANNOTATION_SLIPWAY_REF, &name);
        index.manifests.push(stored);
        index.manifests.sort_by_key(|d| ref_of(d).unwrap_or_default());
        write_index(&self.inner.paths, &index)?;
        tracing::debug!(reference = %name, "tag set");
        Ok(())
    }

    /// Removes tag `reference`; returns what it pointed at.
    pub fn remove_tag(&self, reference: &Reference) -> Result<Option<Descriptor>, StoreError> {
        let _lock = StoreLock::exclusive(&self.inner.paths.lock)?;
        let mut index = read_index(&self.inner.paths)?;
        let name = reference.to_string();
        let Some(pos) = index.manifests.iter().position(|d| ref_of(d).as_deref() == Some(name.as_str())) else {
            return Ok(None);
        };
        let removed = index.manifests.remove(pos);
        write_index(&self.inner.paths, &index)?;
        Ok(tag_of(&removed).map(|t| t.descriptor))
    }
}

impl Store {
    /// Replaces a tag index that does not parse (`fsck --repair`, N3): the damaged file is moved
    /// to `index.json.corrupt-<unix time>` and the new index names every image the store holds
    /// that no other image lists `salvaged:<first 12 hex digits>`, so that no blob of an image is
    /// left for prune. The old names are lost (a person can read what is left of them in the moved
    /// file). Returns the moved file and the names given. The caller holds the exclusive lock.
    pub(super) fn salvage_index(&self) -> Result<(std::path::PathBuf, Vec<Reference>), StoreError> {
        let paths = &self.inner.paths;
        let aside = std::path::PathBuf::from(format!("{}.corrupt-{}", paths.index.display(), super::unix_now()));
        fs::rename(&paths.index, &aside).map_err(|e| StoreError::io("move aside", &paths.index, e))?;
        let mut index = ImageIndex::new();
        let mut names = Vec::new();
        for mut head in super::gc::heads(self)? {
            let name = format!("salvaged:{}", &head.digest.hex()[..12]);
            let reference = Reference::parse(&name).expect("salvaged:<hex> is a reference");
            let full = reference.to_string();
            head.set_annotation(ANNOTATION_REF_NAME, &full);
            head.set_annotation(ANNOTATION_SLIPWAY_REF, &full);
            index.manifests.push(head);
            names.push(reference);
        }
        index.manifests.sort_by_key(|d| ref_of(d).unwrap_or_default());
        write_index(paths, &index)?;
        Ok((aside, names))
    }
}

/// The reference string an index entry carries.
fn ref_of(d: &Descriptor) -> Option<String> {
    d.annotation(ANNOTATION_SLIPWAY_REF).or_else(|| d.annotation(ANNOTATION_REF_NAME)).map(str::to_string)
}

/// The tag an index entry stands for, with our reference annotations stripped.
fn tag_of(d: &Descriptor) -> Option<Tag> {
    let name = ref_of(d)?;
    let reference = match Reference::parse(&name) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(reference = name, error = %e, "skipping index entry with an unparseable reference");
            return None;
        }
    };
    let mut descriptor = d.clone();
    if let Some(a) = descriptor.annotations.as_mut() {
        a.remove(ANNOTATION_REF_NAME);
        a.remove(ANNOTATION_SLIPWAY_REF);
        if a.is_empty() {
            descriptor.annotations = None;
        }
    }
    Some(Tag { reference, descriptor })
}

/// Reads `index.json`; a missing file is an empty index.
pub(super) fn read_index(paths: &Paths) -> Result<ImageIndex, StoreError> {
    let path = &paths.index;
    let bytes = match fs::File::open(path) {
        Ok(f) => {
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut io::Read::take(f, MAX_INDEX_LEN), &mut bytes)
                .map_err(|e| StoreError::io("read", path, e))?;
            bytes
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ImageIndex::new()),
        Err(e) => return Err(StoreError::io("open", path, e)),
    };
    canonical::from_bytes("image index", &bytes).map_err(|source| StoreError::Index { path: path.clone(), source })
}

/// Replaces `index.json` atomically. Failpoints: `index.write` (half written),
/// `index.before_rename`, `index.before_dir_fsync`.
fn write_index(paths: &Paths, index: &ImageIndex) -> Result<(), StoreError> {
    let bytes = canonical::to_bytes(index);
    let tmp = tempfile::Builder::new()
        .prefix("index-")
        .suffix(".tmp")
        .tempfile_in(&paths.ingest)
        .map_err(|e| StoreError::io("create temp file in", &paths.ingest, e))?;
    let (mut file, tmp_path) = tmp.into_parts();
    let write_err = |e: io::Error| StoreError::io("write", &*tmp_path, e);
    if !try_lock_file(&file) {
        return Err(write_err(io::Error::from(io::ErrorKind::WouldBlock)));
    }
    let (first, second) = bytes.split_at(bytes.len() / 2);
    file.write_all(first).map_err(write_err)?;
    file.flush().map_err(write_err)?;
    failpoint::io("index.write").map_err(write_err)?;
    file.write_all(second).map_err(write_err)?;
    file.sync_all().map_err(|e| StoreError::io("fsync", &*tmp_path, e))?;
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(|e| StoreError::io("set permissions of", &*tmp_path, e))?;
    let target: &Path = &paths.index;
    failpoint::io("index.before_rename").map_err(|e| StoreError::io("rename into place", target, e))?;
    fs::rename(&tmp_path, target).map_err(|e| StoreError::io("rename into place", target, e))?;
    let _ = tmp_path.keep();
    failpoint::io("index.before_dir_fsync").map_err(|e| StoreError::io("fsync directory", &paths.root, e))?;
    fsync_dir(&paths.root)?;
    drop(file);
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::oci::{Digest, ImageManifest, MediaType};

    /// Writes a config + one layer + manifest; returns the manifest descriptor.
    pub(crate) fn image(s: &Store, seed: &[u8]) -> Descriptor {
        let layer = s.write_blob(seed, None).unwrap();
        let config = s.write_blob(b"{}", None).unwrap();
        let m = ImageManifest::oci(
            Descriptor::new(MediaType::OciConfig, config, 2),
            vec![Descriptor::new(MediaType::OciLayer, layer, seed.len() as u64)],
        );
        let bytes = canonical::to_bytes(&m);
        let d = s.write_blob(&bytes, None).unwrap();
        Descriptor::new(MediaType::OciManifest, d, bytes.len() as u64)
    }

    #[test]
    fn tags_round_trip_and_are_annotated() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("r")).unwrap();
        let r = Reference::parse("busybox").unwrap();
        let desc = image(&s, b"layer");
        s.set_tag(&r, desc.clone()).unwrap();
        assert_eq!(s.get_tag(&r).unwrap(), Some(desc.clone()));
        assert_eq!(s.tags().unwrap(), vec![Tag { reference: r.clone(), descriptor: desc.clone() }]);
        let raw = fs::read_to_string(dir.path().join("r/index.json")).unwrap();
        assert!(raw.contains("\"org.opencontainers.image.ref.name\":\"docker.io/library/busybox:latest\""), "{raw}");
        assert!(raw.contains("\"io.slipway.ref\":\"docker.io/library/busybox:latest\""), "{raw}");
        // Re-pointing replaces, not duplicates.
        let desc2 = image(&s, b"layer2");
        s.set_tag(&r, desc2.clone()).unwrap();
        assert_eq!(s.tags().unwrap().len(), 1);
        assert_eq!(s.remove_tag(&r).unwrap(), Some(desc2));
        assert_eq!(s.remove_tag(&r).unwrap(), None);
        assert!(s.tags().unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.path().join("r/ingest")).unwrap().count(), 0);
    }

    #[test]
    fn tag_needs_its_closure() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("r")).unwrap();
        let r = Reference::parse("x").unwrap();
        let absent = Descriptor::new(MediaType::OciManifest, Digest::of(b"nope"), 4);
        assert!(matches!(s.set_tag(&r, absent), Err(StoreError::MissingBlob { .. })));
        let desc = image(&s, b"layer-to-delete");
        fs::remove_file(s.blob_path(&Digest::of(b"layer-to-delete"))).unwrap();
        let err = s.set_tag(&r, desc).unwrap_err();
        assert!(
            matches!(&err, StoreError::MissingBlob { digest, .. } if *digest == Digest::of(b"layer-to-delete")),
            "{err}"
        );
        assert!(s.tags().unwrap().is_empty());
    }
}
