//! `slipway info`.

use anyhow::Result;

use super::store_root;
use crate::cli::args::{Format, GlobalArgs, InfoArgs};

/// Prints the store root and the parts in use.
pub fn info(global: &GlobalArgs, args: &InfoArgs) -> Result<u8> {
    let root = store_root(global);
    let rootless = !rustix::process::geteuid().is_root();
    match args.format {
        Format::Json => {
            let v = serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "root": root,
                "rootless": rootless,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            println!("version:   {}", env!("CARGO_PKG_VERSION"));
            println!("root:      {}", root.display());
            println!("rootless:  {rootless}");
        }
    }
    Ok(0)
}
