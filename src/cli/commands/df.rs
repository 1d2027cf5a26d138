//! `slipway df [-v] [--format table|json]`: what the store root's bytes are (JSON schema:
//! docs/df.md).

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{open_snapshotter, open_store, shown_id, snapshot_min_age};
use crate::cli::args::{DfArgs, Format, GlobalArgs};
use crate::cli::table::{ago, print_table};
use crate::cli::units::size;
use crate::disk::{self, Category, DiskUsage, Item, KeptBecause};
use crate::oci::time::rfc3339;

/// The schema version of `df --format json` (docs/df.md).
const DF_JSON_VERSION: u64 = 1;

/// Measures the store and prints the rows (and with `-v` every image and item).
pub fn df(global: &GlobalArgs, args: &DfArgs) -> Result<u8> {
    let store = open_store(global)?;
    let sn = open_snapshotter(global)?;
    let usage = disk::usage(&store, sn.as_ref(), snapshot_min_age()?)
        .with_context(|| format!("measuring the store at {}", store.root().display()))?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&to_json(&usage, args.verbose))?),
        Format::Table => print_usage(&usage, args.verbose),
    }
    Ok(0)
}

/// The JSON document (docs/df.md).
fn to_json(u: &DiskUsage, verbose: bool) -> Value {
    let rows: Vec<Value> = u
        .rows
        .iter()
        .map(|r| {
            json!({
                "type": r.category.key(),
                "count": r.count,
                "active": r.active,
                "bytes": r.bytes,
                "reclaimable": r.reclaimable,
            })
        })
        .collect();
    let mut doc = json!({
        "version": DF_JSON_VERSION,
        "root": u.root,
        "total": u.total,
        "reclaimable": u.rows.iter().map(|r| r.reclaimable).sum::<u64>(),
        "rows": rows,
    });
    if verbose {
        let images: Vec<Value> = u
            .images
            .iter()
            .map(|i| {
                json!({
                    "names": i.names,
                    "digest": i.digest.to_string(),
                    "bytes": i.bytes,
                    "shared": i.shared,
                    "unique": i.unique,
                    "last_used": rfc3339(i.last_used),
                    "kept": i.kept.as_ref().map(KeptBecause::key),
                    "why": i.kept.as_ref().map(ToString::to_string),
                })
            })
            .collect();
        doc["images"] = Value::Array(images);
        doc["items"] = Value::Array(u.items.iter().map(item_json).collect());
    }
    doc
}

/// One item as JSON (also `prune --format json`'s kept list).
pub fn item_json(i: &Item) -> Value {
    json!({
        "type": i.category.key(),
        "name": i.name,
        "bytes": i.bytes,
        "last_used": i.last_used.map(rfc3339),
        "kept": i.kept.as_ref().map(KeptBecause::key),
        "why": i.kept.as_ref().map(ToString::to_string),
    })
}

/// The rows as `docker system df` prints them, then with `-v` one table per part.
fn print_usage(u: &DiskUsage, verbose: bool) {
    let percent = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
    let mut rows: Vec<[String; 5]> = u
        .rows
        .iter()
        .map(|r| {
            let counted = r.category != Category::Other;
            [
                r.category.as_str().to_string(),
                if counted { r.count.to_string() } else { "-".to_string() },
                if counted { r.active.to_string() } else { "-".to_string() },
                size(r.bytes),
                format!("{} ({}%)", size(r.reclaimable), percent(r.reclaimable, r.bytes)),
            ]
        })
        .collect();
    let reclaimable: u64 = u.rows.iter().map(|r| r.reclaimable).sum();
    rows.push([
        "total".to_string(),
        String::new(),
        String::new(),
        size(u.total),
        format!("{} ({}%)", size(reclaimable), percent(reclaimable, u.total)),
    ]);
    print_table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows);
    if verbose {
        print_details(u);
    }
}

/// `-v`: the images with shared and unique bytes, then each kind of item.
fn print_details(u: &DiskUsage) {
    let now = unix_now();
    println!("\nImages:");
    let rows: Vec<[String; 6]> = u
        .images
        .iter()
        .map(|i| {
            let name = if i.names.is_empty() { "<untagged>".to_string() } else { i.names.join(", ") };
            let id = i.digest.hex()[..12].to_string();
            [name, id, size(i.bytes), size(i.shared), size(i.unique), ago(now - i.last_used)]
        })
        .collect();
    print_table(&["NAME", "DIGEST", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "LAST USED"], &rows);
    for (category, title) in [
        (Category::BuildCache, "Build cache:"),
        (Category::Snapshots, "Layer snapshots:"),
        (Category::CacheMounts, "Cache mounts:"),
        (Category::Logs, "Builds:"),
    ] {
        println!("\n{title}");
        let rows: Vec<[String; 4]> = u
            .items
            .iter()
            .filter(|i| i.category == category)
            .map(|i| {
                [
                    shown_id(&i.name).into_owned(),
                    size(i.bytes),
                    i.last_used.map_or_else(|| "-".to_string(), |t| ago(now - t)),
                    i.kept.as_ref().map_or_else(|| "reclaimable".to_string(), |k| format!("kept: {k}")),
                ]
            })
            .collect();
        print_table(&["NAME", "SIZE", "LAST USED", "STATUS"], &rows);
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
