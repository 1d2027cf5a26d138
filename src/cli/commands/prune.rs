//! `slipway prune [--all | --cache-mounts]`: unreferenced blobs, then the layer snapshots no
//! image uses; with `--all` (or only, with `--cache-mounts`) the cache mounts no build holds.

use anyhow::{Context, Result};

use super::{open_snapshotter, shown_id, store_root};
use crate::cache::CacheMounts;
use crate::cli::args::{GlobalArgs, PruneArgs};
use crate::cli::units::size;
use crate::progress::Reporter;
use crate::store::Store;

/// Prunes the store and prints one line per removed blob and a total.
pub fn prune(global: &GlobalArgs, args: &PruneArgs, progress: &Reporter) -> Result<u8> {
    let root = store_root(global);
    let store = Store::open(&root).with_context(|| format!("opening store {}", root.display()))?;
    if !args.cache_mounts {
        prune_blobs_and_snapshots(global, &store, args.all, progress)?;
    }
    if args.all || args.cache_mounts {
        clear_cache_mounts(&store, progress)?;
    }
    Ok(0)
}

fn prune_blobs_and_snapshots(global: &GlobalArgs, store: &Store, all: bool, progress: &Reporter) -> Result<()> {
    let root = store.root();
    let report = store.prune_reporting(all, progress).with_context(|| format!("pruning store {}", root.display()))?;
    for (digest, bytes) in &report.removed {
        println!("deleted {digest} {}", size(*bytes));
    }
    for path in &report.temp_removed {
        println!("deleted temp {}", path.display());
    }
    println!(
        "total: {} blob{} deleted, {} freed",
        report.removed.len(),
        if report.removed.len() == 1 { "" } else { "s" },
        size(report.bytes_freed)
    );
    let sn = open_snapshotter(global)?;
    let snapshots = crate::image::prune_snapshots(store, sn.as_ref(), snapshot_min_age()?)
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
    Ok(())
}

/// Removes the cache mounts no build holds; one line per removed or kept id and a total.
fn clear_cache_mounts(store: &Store, progress: &Reporter) -> Result<()> {
    let mounts = CacheMounts::open(store.root())?;
    let task = progress.start(|| "remove unused cache mounts".to_string());
    let cleared =
        task.finish(mounts.clear()).with_context(|| format!("clearing cache mounts in {}", mounts.dir().display()))?;
    for (id, bytes) in &cleared.removed {
        println!("deleted cache mount {} {}", shown_id(id), size(*bytes));
    }
    for id in &cleared.skipped {
        println!("kept cache mount {} (in use)", shown_id(id));
    }
    println!(
        "total: {} cache mount{} deleted, {} in use, {} freed",
        cleared.removed.len(),
        if cleared.removed.len() == 1 { "" } else { "s" },
        cleared.skipped.len(),
        size(cleared.bytes_freed)
    );
    Ok(())
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
