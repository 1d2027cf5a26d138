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
    Ok(0)
}
