//! `slipway history`: the config's history entries, each with its layer, the layer's size and
//! how many paths it added, changed and deleted in the filesystem below it.

use super::listing::LayerListing;
use super::source::Opened;
use super::tree::Tree;
use crate::oci::{DiffId, Digest};

/// Paths a layer added, changed and deleted (`slipway diff`'s A, C and D).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FileCounts {
    pub added: u64,
    pub changed: u64,
    pub deleted: u64,
}

/// One history entry, newest first as `docker history` prints them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryRow {
    pub created: Option<String>,
    pub created_by: Option<String>,
    pub author: Option<String>,
    pub comment: Option<String>,
    /// Whether the entry made no layer (a metadata instruction).
    pub empty_layer: bool,
    /// The layer's position, base layer 0; none for an empty-layer entry.
    pub layer: Option<usize>,
    pub diff_id: Option<DiffId>,
    /// The layer blob's digest and its stored (usually compressed) size.
    pub digest: Option<Digest>,
    pub stored_size: Option<u64>,
    /// Bytes of the regular files the layer holds (`docker history`'s SIZE); 0 without a layer.
    pub size: u64,
    /// The paths the layer added, changed and deleted.
    pub files: Option<FileCounts>,
}

/// The history of `image`, newest entry first; `listings` are its layers, base first.
pub fn history(image: &Opened, listings: &[LayerListing]) -> Vec<HistoryRow> {
    let counts = count_changes(listings);
    let mut rows = Vec::new();
    let mut next = 0;
    for entry in &image.config.history {
        let layer = (!entry.empty_layer && next < image.layers.len()).then(|| {
            next += 1;
            next - 1
        });
        rows.push(row(image, listings, &counts, layer, entry));
    }
    // Layers the history does not describe (an image made without history) get a row each.
    while next < image.layers.len() {
        rows.push(row(image, listings, &counts, Some(next), &crate::oci::History::default()));
        next += 1;
    }
    rows.reverse();
    rows
}

fn row(
    image: &Opened,
    listings: &[LayerListing],
    counts: &[FileCounts],
    layer: Option<usize>,
    entry: &crate::oci::History,
) -> HistoryRow {
    let info = layer.map(|i| &image.layers[i]);
    HistoryRow {
        created: entry.created.clone(),
        created_by: entry.created_by.clone(),
        author: entry.author.clone(),
        comment: entry.comment.clone(),
        empty_layer: layer.is_none(),
        layer,
        diff_id: info.map(|l| l.diff_id),
        digest: info.and_then(|l| l.digest),
        stored_size: info.map(|l| l.size),
        size: layer.and_then(|i| listings.get(i)).map(LayerListing::content_bytes).unwrap_or(0),
        files: layer.and_then(|i| counts.get(i)).copied(),
    }
}

/// For each layer, what it changed in the filesystem of the layers below.
fn count_changes(listings: &[LayerListing]) -> Vec<FileCounts> {
    let mut tree = Tree::new();
    listings
        .iter()
        .enumerate()
        .map(|(i, listing)| {
            let mut counts = FileCounts::default();
            for change in tree.apply(i, listing).iter().filter(|c| c.changed()) {
                match (&change.old, &change.new) {
                    (None, _) => counts.added += 1,
                    (_, None) => counts.deleted += 1,
                    _ => counts.changed += 1,
                }
            }
            counts
        })
        .collect()
}
