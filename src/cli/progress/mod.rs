//! Renderers of `--progress`: library [`Event`]s → text on stderr.
//!
//! `tty` draws one live line per running task (indicatif) with the last few output lines of a
//! running step dimmed beneath it, and collapses a finished task to one line above the live ones;
//! `plain` writes one line per event in BuildKit's plain style (`#N name`, `#N DONE 0.3s`), never
//! clipped or redrawn, folded into collapsible groups on GitHub Actions and GitLab CI; `rawjson`
//! writes one JSON object per event, in the versioned schema of `docs/progress.md`; `quiet` is
//! the silent reporter. The JSON schema lives here, not on the library's types: `Event` derives
//! no `Serialize`, so changing it cannot silently change the schema.

mod plain;
mod rawjson;
mod tty;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use indicatif::ProgressDrawTarget;

pub use plain::{Folding, Plain};
pub use rawjson::RawJson;
pub use tty::{Tty, TtyOptions};

use super::args::ProgressArg;
use super::units;
use crate::progress::{Reporter, Unit};

/// The wall clock; tests pass a fake one.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// A renderer chosen for this run, `auto` resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Tty,
    Plain,
    RawJson,
    Quiet,
}

/// Resolves `auto`: `tty` when stderr is a terminal and `CI` is unset, else `plain`.
pub fn resolve(arg: ProgressArg, stderr_is_terminal: bool, ci_set: bool) -> Mode {
    match arg {
        ProgressArg::Auto if stderr_is_terminal && !ci_set => Mode::Tty,
        ProgressArg::Auto | ProgressArg::Plain => Mode::Plain,
        ProgressArg::Tty => Mode::Tty,
        ProgressArg::Rawjson => Mode::RawJson,
        ProgressArg::Quiet => Mode::Quiet,
    }
}

/// The reporter for `--progress ARG`, rendering to stderr.
pub fn reporter(arg: ProgressArg) -> Reporter {
    let mode = resolve(arg, std::io::stderr().is_terminal(), std::env::var_os("CI").is_some());
    match mode {
        Mode::Tty => {
            // indicatif styles through console, whose own rule differs (any `NO_COLOR`, `CLICOLOR`).
            console::set_colors_enabled_stderr(super::report::colour(&std::io::stderr()));
            Reporter::new(Tty::new(ProgressDrawTarget::stderr(), TtyOptions::default()))
        }
        Mode::Plain => {
            let folding = Folding::detect(|name| std::env::var(name).ok());
            Reporter::new(Plain::with_folding(std::io::stderr(), system_clock(), folding))
        }
        Mode::RawJson => Reporter::new(RawJson::new(std::io::stderr(), system_clock())),
        Mode::Quiet => Reporter::silent(),
    }
}

/// `3.15MB / 10.00MB`, `3.15MB`, `3 / 10 items`, `3 items`.
fn amount(current: u64, total: Option<u64>, unit: Unit) -> String {
    match (unit, total) {
        (Unit::Bytes, Some(t)) => format!("{} / {}", units::size(current), units::size(t)),
        (Unit::Bytes, None) => units::size(current),
        (Unit::Items, Some(t)) => format!("{current} / {t} items"),
        (Unit::Items, None) => format!("{current} items"),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::progress::{CacheStatus, Event, LogStream, Sink};

    pub(crate) fn fake_clock(start: u64) -> (Clock, Arc<AtomicU64>) {
        let ms = Arc::new(AtomicU64::new(start));
        let m = ms.clone();
        let clock: Clock = Arc::new(move || std::time::UNIX_EPOCH + Duration::from_millis(m.load(Ordering::SeqCst)));
        (clock, ms)
    }

    /// A short script of events: (ms since start, event).
    pub(crate) fn script() -> Vec<(u64, Event)> {
        let p = |id, current, total| Event::TaskProgress { id, current, total, unit: Unit::Bytes };
        vec![
            (0, Event::TaskStarted { id: 1, name: "write layer".into() }),
            (0, Event::TaskStarted { id: 2, name: "[2/3] RUN make".into() }),
            (10, Event::TaskCache { id: 2, status: CacheStatus::Miss { reason: "file main.c changed".into() } }),
            (100, p(1, 1_000_000, None)),
            (500, p(1, 2_000_000, None)),
            (1200, p(1, 3_500_000, None)),
            (1250, Event::TaskLog { id: 2, stream: LogStream::Stdout, line: "cc -o main main.c".into() }),
            (1300, p(1, 4_000_000, None)),
            (1400, Event::TaskDone { id: 1, duration: Duration::from_millis(1400) }),
            (1500, Event::TaskFailed { id: 2, duration: Duration::from_millis(1500), error: "exit code 2".into() }),
            (1600, Event::TaskStarted { id: 3, name: "[3/3] COPY . /app".into() }),
            (1600, Event::TaskCache { id: 3, status: CacheStatus::Hit { from: None } }),
            (1600, Event::TaskProgress { id: 3, current: 2, total: Some(5), unit: Unit::Items }),
            (1700, Event::TaskDone { id: 3, duration: Duration::from_millis(100) }),
        ]
    }

    /// Feeds `events` to `sink`, setting the fake clock to 1_700_000_000_000 + each event's ms.
    pub(crate) fn feed(sink: &dyn Sink, ms: &AtomicU64, events: Vec<(u64, Event)>) {
        for (at, event) in events {
            ms.store(1_700_000_000_000 + at, Ordering::SeqCst);
            sink.event(&event);
        }
    }

    #[test]
    fn auto_is_tty_only_on_a_terminal_outside_ci() {
        assert_eq!(resolve(ProgressArg::Auto, true, false), Mode::Tty);
        assert_eq!(resolve(ProgressArg::Auto, true, true), Mode::Plain);
        assert_eq!(resolve(ProgressArg::Auto, false, false), Mode::Plain);
        assert_eq!(resolve(ProgressArg::Tty, false, true), Mode::Tty);
        assert_eq!(resolve(ProgressArg::Rawjson, true, false), Mode::RawJson);
        assert_eq!(resolve(ProgressArg::Quiet, true, false), Mode::Quiet);
    }

    #[test]
    fn item_amounts() {
        assert_eq!(amount(3, Some(10), Unit::Items), "3 / 10 items");
    }
}
