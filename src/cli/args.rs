//! Raw clap structures. Validation into typed options happens in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A daemonless container image builder and layer store.
#[derive(Debug, Parser)]
#[command(name = "slipway", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Store root (default: /var/lib/slipway as root, $XDG_DATA_HOME/slipway otherwise)
    #[arg(long, global = true, env = "SLIPWAY_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Progress output on stderr: auto = tty when stderr is a terminal and CI is unset, else plain
    #[arg(long, global = true, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    Auto,
    Tty,
    Plain,
    Rawjson,
    Quiet,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the version
    Version,
    /// Show the store root and the parts slipway uses on this machine
    Info(InfoArgs),
    /// Parse a Dockerfile, resolve its stages and run the lint rules
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A build-time variable; `KEY` alone takes the value from the environment
    #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = parse_build_arg)]
    pub build_args: Vec<(String, Option<String>)>,
    /// The stage to build (default: the last one)
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// The build context directory
    #[arg(default_value = ".", value_name = "CONTEXT")]
    pub context: PathBuf,
}

/// Output format of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
}

fn parse_build_arg(value: &str) -> Result<(String, Option<String>), String> {
    let (key, val) = match value.split_once('=') {
        Some((k, v)) => (k, Some(v.to_owned())),
        None => (value, None),
    };
    if key.is_empty() {
        return Err(format!("invalid build-arg {value:?}: the name is empty"));
    }
    Ok((key.to_owned(), val))
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Output format of listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}
