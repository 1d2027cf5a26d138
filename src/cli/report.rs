//! Error rendering, logging set-up and the one colour rule.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;

use super::{EXIT_USAGE, Failure};

/// Whether what goes to `stream` may be coloured: only when it is a terminal, and never when
/// `NO_COLOR` is set to a non-empty value (<https://no-color.org>). Every renderer asks this
/// (the log lines here, the `tty` progress view); `plain` and `rawjson` never colour.
pub fn colour(stream: &impl IsTerminal) -> bool {
    colour_rule(stream.is_terminal(), std::env::var_os("NO_COLOR"))
}

fn colour_rule(is_terminal: bool, no_color: Option<OsString>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Logs go to stderr, filtered by `SLIPWAY_LOG` (default: warnings), coloured as [`colour`] says.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let ansi = colour(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

/// Prints `error: …` and the `caused by:` chain; returns the exit code the error carries.
pub fn error(err: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::SUCCESS;
    }
    let code = err.downcast_ref::<Failure>().map_or(EXIT_USAGE, |f| f.code);
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("caused by: {cause}");
    }
    ExitCode::from(code)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    use super::colour_rule;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_a_non_empty_no_color() {
        assert!(colour_rule(true, None));
        assert!(colour_rule(true, Some("".into())), "an empty NO_COLOR does not count (no-color.org)");
        assert!(!colour_rule(true, Some("1".into())));
        assert!(!colour_rule(true, Some("false".into())), "any non-empty value");
        assert!(!colour_rule(false, None));
        assert!(!colour_rule(false, Some("".into())));
    }
}
