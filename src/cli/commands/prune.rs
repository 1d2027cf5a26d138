//! `slipway prune [--all]`: unreferenced blobs, then the layer snapshots no image uses.

use anyhow::{Context, Result};

use super::{open_snapshotter, store_root};
use crate::cli::args::{GlobalArgs, PruneArgs};
use crate::progress::Reporter;
use crate::store::Store;

/// Prunes the store and prints one line per removed blob and a total.
pub fn prune(global: &GlobalArgs, args: &PruneArgs, progress: &Reporter) -> Result<u8> {
    let root = store_root(global);
    let store = Store::open(&root).with_context(|| format!("opening store {}", root.display()))?;
    let report =
        store.prune_reporting(args.all, progress).with_context(|| format!("pruning store {}", root.display()))?;
    for (digest, size) in &report.removed {
        println!("deleted {digest} {}", crate::cli::units::size(*size));
    }
    for path in &report.temp_removed {
        println!("deleted temp {}", path.display());
    }
    println!(
        "total: {} blob{} deleted, {} freed",
        report.removed.len(),
        if report.removed.len() == 1 { "" } else { "s" },
        crate::cli::units::size(report.bytes_freed)
    );
    let sn = open_snapshotter(global)?;
    let snapshots = crate::image::prune_snapshots(&store, sn.as_ref(), snapshot_min_age()?)
        .with_context(|| format!("pruning layer snapshots in {}", root.display()))?;
    for name in &snapshots.removed {
        println!("deleted snapshot {name}");
    }
    println!(
        "total: {} layer snapshot{} deleted, {} kept",
        snapshots.removed.len(),
        if snapshots.removed.len() == 1 { "" } else { "s" },
        snapshots.kept
    );
    Ok(0)
}

/// Layer snapshots younger than this are kept (a running build may be about to use them):
/// 10 minutes, or `SLIPWAY_PRUNE_SNAPSHOT_MIN_AGE` seconds.
fn snapshot_min_age() -> Result<std::time::Duration> {
    const ENV: &str = "SLIPWAY_PRUNE_SNAPSHOT_MIN_AGE";
    match std::env::var(ENV) {
        Ok(v) => Ok(std::time::Duration::from_secs(v.parse().with_context(|| format!("{ENV}={v:?} is not seconds"))?)),
        Err(_) => Ok(std::time::Duration::from_secs(600)),
    }
}
