//! `rewrite-timestamp`: an image's layers with every file's mtime clamped to `SOURCE_DATE_EPOCH`,
//! so an image whose steps (or whose base) wrote current times is reproducible.
//!
//! A layer with no mtime later than the epoch is kept as it is; any other becomes a new
//! uncompressed blob ([`crate::layer::clamp_mtimes`]) with a new DiffID, recorded as its own
//! layer (its compressed variants are made when it leaves the store, as for any layer).

use super::ImageError;
use crate::layer;
use crate::oci::{Descriptor, DiffId, Digest, MediaType};
use crate::progress::Reporter;
use crate::store::{Lease, Store};

/// Layers of an image after [`TimestampRewrite::rewrite`]: the descriptors and DiffIDs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub layers: Vec<Descriptor>,
    pub diff_ids: Vec<DiffId>,
    /// How many layers got a new blob.
    pub changed: usize,
}

/// What rewriting needs at hand: the store, the epoch, the lease that keeps new blobs, progress.
pub struct TimestampRewrite<'a> {
    pub store: &'a Store,
    /// `SOURCE_DATE_EPOCH`: the latest mtime left in a layer.
    pub epoch: i64,
    pub lease: &'a Lease,
    pub progress: &'a Reporter,
}

impl TimestampRewrite<'_> {
    /// Clamps the mtimes of every layer of (`layers`, `diff_ids`); `config` names the image (or
    /// build) in errors.
    pub fn rewrite(
        &self,
        config: &Digest,
        layers: &[Descriptor],
        diff_ids: &[DiffId],
    ) -> Result<Rewritten, ImageError> {
        if layers.len() != diff_ids.len() {
            return Err(ImageError::LayerCount { config: *config, layers: layers.len(), diff_ids: diff_ids.len() });
        }
        let mut out = Rewritten { layers: Vec::new(), diff_ids: Vec::new(), changed: 0 };
        for (index, (layer, diff_id)) in layers.iter().zip(diff_ids).enumerate() {
            let task = self.progress.start(|| format!("rewrite timestamps of layer {}", diff_id.digest().short()));
            let result = self.layer(config, index, layer, *diff_id);
            match task.finish(result)? {
                Some((descriptor, new_diff_id)) => {
                    out.layers.push(descriptor);
                    out.diff_ids.push(new_diff_id);
                    out.changed += 1;
                }
                None => {
                    out.layers.push(layer.clone());
                    out.diff_ids.push(*diff_id);
                }
            }
        }
        Ok(out)
    }

    /// One layer: its new uncompressed blob and DiffID, or None when no mtime was later than
    /// the epoch.
    fn layer(
        &self,
        config: &Digest,
        index: usize,
        layer: &Descriptor,
        diff_id: DiffId,
    ) -> Result<Option<(Descriptor, DiffId)>, ImageError> {
        let store = self.store;
        let plain = layer::decompress(store.open_blob(&layer.digest)?)?;
        let mut hashed = crate::oci::HashingReader::new(plain);
        let mut ingest = store.ingest()?;
        let report = layer::clamp_mtimes(&mut hashed, self.epoch, &mut ingest)?;
        // The reader stops at the end-of-archive marker: what follows still counts for the DiffID.
        std::io::copy(&mut hashed, &mut std::io::sink()).map_err(|source| layer::LayerError::ReadStream { source })?;
        let (_, read, _) = hashed.finish();
        if read != diff_id.digest() {
            return Err(ImageError::DiffIdMismatch { config: *config, index, expected: diff_id, actual: DiffId(read) });
        }
        if report.clamped == 0 {
            return Ok(None);
        }
        let (digest, size) = ingest.commit(None, Some(self.lease))?;
        let descriptor = Descriptor::new(MediaType::OciLayer, digest, size);
        let new_diff_id = DiffId(digest);
        store.record_layer_blob(new_diff_id, &descriptor)?;
        Ok(Some((descriptor, new_diff_id)))
    }
}
