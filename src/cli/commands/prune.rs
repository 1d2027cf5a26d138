//! `slipway prune [--all | --cache-mounts] [--keep-storage SIZE] [--format table|json]`:
//! unreferenced blobs, then the layer snapshots no image uses; with `--all` (or only, with
//! `--cache-mounts`) the cache mounts no build holds; with `--keep-storage` then what was least
//! recently used until the store fits (`disk::keep_storage`; JSON schema: docs/df.md).

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::df::item_json;
use super::{open_snapshotter, shown_id, snapshot_min_age, store_root};
use crate::cache::{CacheMounts, ClearedMounts};
use crate::cli::EXIT_FAILURE;
use crate::cli::Failure;
use crate::cli::args::{Format, GlobalArgs, PruneArgs};
use crate::cli::units::size;
use crate::disk::{Category, KeepStorageReport, KeptBecause};
use crate::image::SnapshotPruneReport;
use crate::oci::time::rfc3339;
use crate::progress::Reporter;
use crate::store::{PruneReport, Store};

/// The schema version of `prune --format json` (docs/df.md).
const PRUNE_JSON_VERSION: u64 = 1;

/// What one `slipway prune` did, part by part.
#[derive(Default)]
struct Outcome {
    blobs: Option<PruneReport>,
    snapshots: Option<SnapshotPruneReport>,
    mounts: Option<ClearedMounts>,
    keep: Option<KeepStorageReport>,
}

/// Prunes the store and prints what went (and with `--keep-storage` what stayed and why).
pub fn prune(global: &GlobalArgs, args: &PruneArgs, progress: &Reporter) -> Result<u8> {
    let root = store_root(global);
    let store = Store::open(&root).with_context(|| format!("opening store {}", root.display()))?;
    // With a cap, `--all` only widens what the cap may take: nothing is dropped wholesale.
    let wholesale = args.all && args.keep_storage.is_none();
    let mut out = Outcome::default();
    if !args.cache_mounts {
        out.blobs = Some(
            store.prune_reporting(wholesale, progress).with_context(|| format!("pruning store {}", root.display()))?,
        );
        let sn = open_snapshotter(global)?;
        let snapshots = crate::image::prune_snapshots(&store, sn.as_ref(), snapshot_min_age()?)
            .with_context(|| format!("pruning layer snapshots in {}", root.display()))?;
        out.snapshots = Some(snapshots);
    }
    if wholesale || args.cache_mounts {
        out.mounts = Some(clear_cache_mounts(&store, progress)?);
    }
    if let Some(cap) = args.keep_storage {
        let sn = open_snapshotter(global)?;
        let task = progress.start(|| format!("remove least recently used until the store fits {}", size(cap)));
        let keep = crate::disk::keep_storage(&store, sn.as_ref(), snapshot_min_age()?, cap, args.all);
        out.keep =
            Some(task.finish(keep).with_context(|| format!("keeping store {} under {}", root.display(), size(cap)))?);
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&to_json(&out))?),
        Format::Table => print_outcome(&out),
    }
    match &out.keep {
        Some(keep) if !keep.met() => Err(Failure {
            code: EXIT_FAILURE,
            message: format!(
                "the store still takes {} ({} bytes), over the --keep-storage cap of {} ({} bytes): everything left is kept for the reasons {}",
                size(keep.after),
                keep.after,
                size(keep.cap),
                keep.cap,
                if args.format == Format::Json { "in the report" } else { "above" },
            ),
        }
        .into()),
        _ => Ok(0),
    }
}

/// Removes the cache mounts no build holds.
fn clear_cache_mounts(store: &Store, progress: &Reporter) -> Result<ClearedMounts> {
    let mounts = CacheMounts::open(store.root())?;
    let task = progress.start(|| "remove unused cache mounts".to_string());
    task.finish(mounts.clear()).with_context(|| format!("clearing cache mounts in {}", mounts.dir().display()))
}

/// One line per removed thing and a total per part.
fn print_outcome(out: &Outcome) {
    if let Some(report) = &out.blobs {
        for (digest, bytes) in &report.removed {
            println!("deleted {digest} {}", size(*bytes));
        }
        for path in &report.temp_removed {
            println!("deleted temp {}", path.display());
        }
        let n = report.removed.len();
        let temp = match report.temp_removed.len() {
            0 => String::new(),
            t => format!(", {t} temp file{} deleted", plural(t)),
        };
        println!("total: {n} blob{} deleted{temp}, {} freed", plural(n), size(report.bytes_freed));
    }
    if let Some(snapshots) = &out.snapshots {
        for name in &snapshots.removed {
            println!("deleted snapshot {name}");
        }
        let n = snapshots.removed.len();
        println!("total: {n} layer snapshot{} deleted, {} kept", plural(n), snapshots.kept);
    }
    if let Some(cleared) = &out.mounts {
        for (id, bytes) in &cleared.removed {
            println!("deleted cache mount {} {}", shown_id(id), size(*bytes));
        }
        for id in &cleared.skipped {
            println!("kept cache mount {} (in use)", shown_id(id));
        }
        let n = cleared.removed.len();
        println!(
            "total: {n} cache mount{} deleted, {} in use, {} freed",
            plural(n),
            cleared.skipped.len(),
            size(cleared.bytes_freed)
        );
    }
    if let Some(keep) = &out.keep {
        print_keep(keep);
    }
}

/// The `--keep-storage` part: what went, what stayed and why, where the store ends.
fn print_keep(keep: &KeepStorageReport) {
    println!("keep-storage: the store takes {}, the cap is {}", size(keep.before), size(keep.cap));
    for r in &keep.removed {
        println!("deleted {} {} {}", noun(r.category), shown_id(&r.name), size(r.bytes));
    }
    let (not_needed, kept): (Vec<_>, Vec<_>) =
        keep.kept.iter().partition(|i| matches!(i.kept, Some(KeptBecause::NotNeeded)));
    for i in kept {
        let why = i.kept.as_ref().map_or_else(String::new, ToString::to_string);
        match i.category {
            Category::Other => println!("kept store files {}: {why}", size(i.bytes)),
            _ => println!("kept {} {} {}: {why}", noun(i.category), shown_id(&i.name), size(i.bytes)),
        }
    }
    if !not_needed.is_empty() {
        let bytes: u64 = not_needed.iter().map(|i| i.bytes).sum();
        println!("kept {} more, {}: {}", not_needed.len(), size(bytes), KeptBecause::NotNeeded);
    }
    let n = keep.removed.len();
    let state = if keep.met() { "at or under" } else { "over" };
    println!(
        "total: {n} removed, {} freed; the store takes {}, {state} the {} cap",
        size(keep.before.saturating_sub(keep.after)),
        size(keep.after),
        size(keep.cap)
    );
}

/// The JSON document (docs/df.md).
fn to_json(out: &Outcome) -> Value {
    json!({
        "version": PRUNE_JSON_VERSION,
        "blobs": out.blobs.as_ref().map(|r| json!({
            "removed": r.removed.iter().map(|(d, b)| json!({"digest": d.to_string(), "bytes": b})).collect::<Vec<_>>(),
            "bytes_freed": r.bytes_freed,
            "temp_removed": r.temp_removed,
            "temp_bytes_freed": r.temp_bytes_freed,
        })),
        "snapshots": out.snapshots.as_ref().map(|s| json!({"removed": s.removed, "kept": s.kept})),
        "cache_mounts": out.mounts.as_ref().map(|c| json!({
            "removed": c.removed.iter().map(|(id, b)| json!({"id": id, "bytes": b})).collect::<Vec<_>>(),
            "in_use": c.skipped,
            "bytes_freed": c.bytes_freed,
        })),
        "keep_storage": out.keep.as_ref().map(|k| json!({
            "cap": k.cap,
            "before": k.before,
            "after": k.after,
            "met": k.met(),
            "removed": k.removed.iter().map(|r| json!({
                "type": r.category.key(),
                "name": r.name,
                "bytes": r.bytes,
                "last_used": r.last_used.map(rfc3339),
            })).collect::<Vec<_>>(),
            "kept": k.kept.iter().map(item_json).collect::<Vec<_>>(),
        })),
    })
}

/// What one thing of a category is called in a line.
fn noun(c: Category) -> &'static str {
    match c {
        Category::Images => "image",
        Category::BuildCache => "build cache",
        Category::OtherBlobs => "blobs of",
        Category::Snapshots => "layer snapshot",
        Category::CacheMounts => "cache mount",
        Category::Logs => "build logs",
        Category::Other => "store files",
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
