//! One function per subcommand.

use std::path::PathBuf;

use anyhow::Result;

mod check;
mod info;

use super::args::{Cli, Command, GlobalArgs};

/// Runs the parsed command line; returns the exit code.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Version => {
            println!("slipway {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Command::Info(args) => info::info(&cli.global, &args),
        Command::Check(args) => check::check(&args),
    }
}

/// The store root: `--root`, `SLIPWAY_ROOT`, or the per-user default.
pub fn store_root(global: &GlobalArgs) -> PathBuf {
    if let Some(root) = &global.root {
        return root.clone();
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/slipway");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("slipway")
}

