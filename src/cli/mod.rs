//! The command line: the ONLY module that prints or picks exit codes.
//!
//! Raw clap structs live in `args`; each subcommand is a function in `commands`; `progress`
//! renders the library's progress events as `--progress` asks. Library
//! errors arrive as typed errors wrapped in `anyhow` with context; `report` renders them.
//!
//! Exit codes (documented in README.md):
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | build, check or gate failure: a failing RUN, a Dockerfile error, `fsck` found damage, a `prune --keep-storage` cap not met |
//! | 2 | usage or internal error |
//! | 130 / 143 | interrupted by SIGINT / SIGTERM |
//! | 125 / 126 / 127 | `run`: slipway failed / command not executable / command not found |

mod args;
mod cache_specs;
mod commands;
mod outputs;
pub mod progress;
mod report;
mod secrets;
mod table;
mod units;

use std::process::ExitCode;

use clap::Parser;

use args::Cli;

/// Exit status of a failed check or build (a Dockerfile error, damage found by fsck).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status of a usage or internal error.
pub const EXIT_USAGE: u8 = 2;

/// An error that carries its own exit code (1 for failures that are the input's fault).
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse().and_then(args::check_isolation) {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    report::init_tracing();
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => report::error(&err),
    }
}
