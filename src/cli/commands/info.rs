//! `slipway info`.

use anyhow::{Context, Result};

use super::{open_snapshotter, open_store, shown_id, store_root};
use crate::cache::{CacheMountInfo, CacheMounts};
use crate::cli::args::{Format, GlobalArgs, InfoArgs};
use crate::cli::units::size;

/// Prints the store root, the parts in use and the cache mounts.
pub fn info(global: &GlobalArgs, args: &InfoArgs) -> Result<u8> {
    let root = store_root(global);
    // Root inside a user namespace is still rootless on the host.
    let rootless = !rustix::process::geteuid().is_root() || crate::snapshot::in_user_namespace();
    // The snapshotter lives in the store root: open the store first so the root is created
    // with its owner-only mode, then probe.
    open_store(global)?;
    let snapshotter = open_snapshotter(global)?.backend().to_string();
    let executor = super::executor_description(global)?;
    let isolation = super::isolation(global);
    let mounts = CacheMounts::open(&root)?;
    let cache_mounts =
        mounts.list().with_context(|| format!("listing the cache mounts in {}", mounts.dir().display()))?;
    match args.format {
        Format::Json => {
            let v = serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "root": root,
                "rootless": rootless,
                "snapshotter": snapshotter,
                "executor": executor,
                "isolation": isolation,
                "cache_mounts": cache_mounts.iter().map(|m| serde_json::json!({
                    "id": m.id,
                    "instances": m.instances,
                    "bytes": m.bytes,
                    "last_used": crate::oci::time::rfc3339(m.last_used),
                })).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            println!("version:      {}", env!("CARGO_PKG_VERSION"));
            println!("root:         {}", root.display());
            println!("rootless:     {rootless}");
            println!("snapshotter:  {snapshotter}");
            println!("executor:     {executor}");
            println!("isolation:    {isolation}");
            print_cache_mounts(&cache_mounts);
        }
    }
    Ok(0)
}

/// `cache mounts: N, SIZE` and one line per mount: id, size, instances.
fn print_cache_mounts(mounts: &[CacheMountInfo]) {
    if mounts.is_empty() {
        println!("cache mounts: none");
        return;
    }
    let total: u64 = mounts.iter().map(|m| m.bytes).sum();
    println!("cache mounts: {}, {}", mounts.len(), size(total));
    let rows: Vec<_> = mounts.iter().map(|m| (shown_id(&m.id), size(m.bytes), m.instances)).collect();
    let id_width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let size_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    for (id, bytes, instances) in rows {
        let plural = if instances == 1 { "" } else { "s" };
        println!("  {id:<id_width$}  {bytes:>size_width$}  {instances} instance{plural}");
    }
}
