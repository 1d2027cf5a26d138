//! `slipway info`.

use anyhow::Result;

use super::{open_snapshotter, open_store, store_root};
use crate::cli::args::{Format, GlobalArgs, InfoArgs};

/// Prints the store root and the parts in use.
pub fn info(global: &GlobalArgs, args: &InfoArgs) -> Result<u8> {
    let root = store_root(global);
    // Root inside a user namespace is still rootless on the host.
    let rootless = !rustix::process::geteuid().is_root() || crate::snapshot::in_user_namespace();
    // The snapshotter lives in the store root: open the store first so the root is created
    // with its owner-only mode, then probe.
    open_store(global)?;
    let snapshotter = open_snapshotter(global)?.backend().to_string();
    let executor = super::executor_description(global)?;
    match args.format {
        Format::Json => {
            let v = serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "root": root,
                "rootless": rootless,
                "snapshotter": snapshotter,
                "executor": executor,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            println!("version:      {}", env!("CARGO_PKG_VERSION"));
            println!("root:         {}", root.display());
            println!("rootless:     {rootless}");
            println!("snapshotter:  {snapshotter}");
            println!("executor:     {executor}");
        }
    }
    Ok(0)
}
