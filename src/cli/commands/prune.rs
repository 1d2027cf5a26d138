//! `slipway prune [--all]`.

use anyhow::{Context, Result};

use super::store_root;
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
        println!("deleted {digest} {}", human_size(*size));
    }
    for path in &report.temp_removed {
        println!("deleted temp {}", path.display());
    }
    println!(
        "total: {} blob{} deleted, {} freed",
        report.removed.len(),
        if report.removed.len() == 1 { "" } else { "s" },
        human_size(report.bytes_freed)
    );
    Ok(0)
}

/// `1.5 MiB`-style sizes (exact bytes below 1 KiB).
pub(super) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
