//! Renderers of `--progress`: library [`Event`]s → text on stderr.
//!
//! `tty` draws one live line per running task (indicatif) and prints finished tasks above them;
//! `plain` writes one line per event in BuildKit's plain style (`#N name`, `#N DONE 0.3s`), never
//! clipped or redrawn; `rawjson` writes one JSON object per event, in the versioned schema of
//! `docs/progress.md`; `quiet` is the silent reporter. The JSON schema lives here, not on the
//! library's types: `Event` derives no `Serialize`, so changing it cannot silently change the
//! schema.

use super::units;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use super::args::ProgressArg;
use crate::progress::{CacheStatus, Event, LogStream, Reporter, Sink, TaskId, Unit};

/// Version of the rawjson schema (`docs/progress.md`): additive fields keep it, anything else
/// bumps it.
pub const RAWJSON_VERSION: u64 = 1;

/// Plain output prints a task's progress at most this often.
const PLAIN_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

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
        Mode::Tty => Reporter::new(Tty::new(ProgressDrawTarget::stderr())),
        Mode::Plain => Reporter::new(Plain::new(std::io::stderr(), system_clock())),
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

// ---------------------------------------------------------------------------------------------
// plain

struct PlainTask {
    started: SystemTime,
    /// When a progress line was last printed, and the latest progress not printed yet.
    printed_at: Option<SystemTime>,
    pending: Option<String>,
}

struct PlainState<W> {
    out: W,
    tasks: HashMap<TaskId, PlainTask>,
}

/// One line per event, in order, never redrawn: logs and CI.
pub struct Plain<W> {
    state: Mutex<PlainState<W>>,
    clock: Clock,
}

impl<W: Write + Send> Plain<W> {
    pub fn new(out: W, clock: Clock) -> Plain<W> {
        Plain { state: Mutex::new(PlainState { out, tasks: HashMap::new() }), clock }
    }

    /// The writer, for tests.
    pub fn into_inner(self) -> W {
        self.state.into_inner().unwrap_or_else(|p| p.into_inner()).out
    }
}

impl<W: Write + Send> Sink for Plain<W> {
    fn event(&self, event: &Event) {
        let now = (self.clock)();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let PlainState { out, tasks } = &mut *state;
        let id = event.id();
        let since = |t: &PlainTask| now.duration_since(t.started).unwrap_or_default();
        let mut lines = Vec::new();
        match event {
            Event::TaskStarted { name, .. } => {
                tasks.insert(id, PlainTask { started: now, printed_at: None, pending: None });
                lines.push(format!("#{id} {name}"));
            }
            Event::TaskProgress { current, total, unit, .. } => {
                if let Some(task) = tasks.get_mut(&id) {
                    let line = format!("#{id} {} {}", amount(*current, *total, *unit), secs(since(task)));
                    let due = task
                        .printed_at
                        .is_none_or(|t| now.duration_since(t).unwrap_or_default() >= PLAIN_PROGRESS_INTERVAL);
                    if due {
                        task.printed_at = Some(now);
                        task.pending = None;
                        lines.push(line);
                    } else {
                        task.pending = Some(line);
                    }
                }
            }
            Event::TaskLog { stream, line, .. } => {
                let at = tasks.get(&id).map(since).unwrap_or_default();
                let marker = if *stream == LogStream::Stderr { " stderr" } else { "" };
                lines.push(format!("#{id} {:.3}{marker} {line}", at.as_secs_f64()));
            }
            Event::TaskCache { status: CacheStatus::Hit, .. } => lines.push(format!("#{id} CACHED")),
            Event::TaskCache { status: CacheStatus::Miss { reason }, .. } => {
                lines.push(format!("#{id} cache miss: {reason}"));
            }
            Event::TaskDone { duration, .. } => {
                lines.extend(tasks.remove(&id).and_then(|t| t.pending));
                lines.push(format!("#{id} DONE {}", secs(*duration)));
            }
            Event::TaskFailed { error, .. } => {
                lines.extend(tasks.remove(&id).and_then(|t| t.pending));
                lines.push(format!("#{id} ERROR: {error}"));
            }
        }
        for line in lines {
            // Progress is best effort: a closed stderr must not fail the operation.
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

// ---------------------------------------------------------------------------------------------
// rawjson

/// One JSON object per line, schema version [`RAWJSON_VERSION`] (`docs/progress.md`).
pub struct RawJson<W> {
    out: Mutex<W>,
    clock: Clock,
}

impl<W: Write + Send> RawJson<W> {
    pub fn new(out: W, clock: Clock) -> RawJson<W> {
        RawJson { out: Mutex::new(out), clock }
    }

    /// The writer, for tests.
    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// The rawjson line of one event (no newline), stamped `ts` (unix milliseconds). Keys come in a
/// fixed order — `v`, `ts`, `type`, `id`, then the type's fields — so lines are easy to read and
/// to compare.
pub fn to_json(event: &Event, ts: SystemTime) -> String {
    let ms = ts.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let ms_of = |d: &Duration| json!(d.as_millis() as u64);
    let (kind, fields): (&str, Vec<(&str, Value)>) = match event {
        Event::TaskStarted { name, .. } => ("task_started", vec![("name", json!(name))]),
        Event::TaskProgress { current, total, unit, .. } => (
            "task_progress",
            vec![
                ("current", json!(current)),
                ("total", json!(total)),
                (
                    "unit",
                    json!(match unit {
                        Unit::Bytes => "bytes",
                        Unit::Items => "items",
                    }),
                ),
            ],
        ),
        Event::TaskLog { stream, line, .. } => (
            "task_log",
            vec![
                (
                    "stream",
                    json!(match stream {
                        LogStream::Stdout => "stdout",
                        LogStream::Stderr => "stderr",
                    }),
                ),
                ("line", json!(line)),
            ],
        ),
        Event::TaskCache { status: CacheStatus::Hit, .. } => ("task_cache", vec![("hit", json!(true))]),
        Event::TaskCache { status: CacheStatus::Miss { reason }, .. } => {
            ("task_cache", vec![("hit", json!(false)), ("reason", json!(reason))])
        }
        Event::TaskDone { duration, .. } => ("task_done", vec![("duration_ms", ms_of(duration))]),
        Event::TaskFailed { duration, error, .. } => {
            ("task_failed", vec![("duration_ms", ms_of(duration)), ("error", json!(error))])
        }
    };
    let mut line = format!(r#"{{"v":{RAWJSON_VERSION},"ts":{ms},"type":"{kind}","id":{}"#, event.id());
    for (key, value) in fields {
        line.push_str(&format!(r#","{key}":{value}"#));
    }
    line.push('}');
    line
}

impl<W: Write + Send> Sink for RawJson<W> {
    fn event(&self, event: &Event) {
        let value = to_json(event, (self.clock)());
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{value}");
        let _ = out.flush();
    }
}

// ---------------------------------------------------------------------------------------------
// tty

struct TtyTask {
    bar: ProgressBar,
    name: String,
}

/// Live lines on a terminal: a spinner or bar and a timer per running task; finished tasks are
/// printed once above the live lines.
pub struct Tty {
    multi: MultiProgress,
    tasks: Mutex<HashMap<TaskId, TtyTask>>,
}

impl Tty {
    pub fn new(target: ProgressDrawTarget) -> Tty {
        Tty { multi: MultiProgress::with_draw_target(target), tasks: Mutex::new(HashMap::new()) }
    }

    fn style(template: &str) -> ProgressStyle {
        ProgressStyle::with_template(template).expect("the templates are valid").progress_chars("=> ")
    }

    /// Prints a finished line above the live ones (which are redrawn below it).
    fn print(&self, line: &str) {
        if !self.multi.is_hidden() {
            self.multi.suspend(|| eprintln!("{line}"));
        }
    }

    /// Number of tasks with a live line, for tests.
    pub fn running(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Sink for Tty {
    fn event(&self, event: &Event) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let id = event.id();
        match event {
            Event::TaskStarted { name, .. } => {
                let bar = ProgressBar::no_length()
                    .with_style(Tty::style("{spinner} #{prefix} {wide_msg} {elapsed:>4}"))
                    .with_prefix(id.to_string())
                    .with_message(name.clone());
                let bar = self.multi.add(bar);
                bar.enable_steady_tick(Duration::from_millis(100));
                tasks.insert(id, TtyTask { bar, name: name.clone() });
            }
            Event::TaskProgress { current, total, unit, .. } => {
                if let Some(task) = tasks.get(&id) {
                    let counts = match unit {
                        Unit::Bytes => "{decimal_bytes}/{decimal_total_bytes}",
                        Unit::Items => "{pos}/{len}",
                    };
                    let template = match total {
                        Some(t) => {
                            task.bar.set_length(*t);
                            format!("{{spinner}} #{{prefix}} {{wide_msg}} [{{bar:25}}] {counts} {{elapsed:>4}}")
                        }
                        None => {
                            let counts = if *unit == Unit::Bytes { "{decimal_bytes}" } else { "{pos}" };
                            format!("{{spinner}} #{{prefix}} {{wide_msg}} {counts} {{elapsed:>4}}")
                        }
                    };
                    task.bar.set_style(Tty::style(&template));
                    task.bar.set_position(*current);
                }
            }
            Event::TaskLog { line, .. } => {
                self.print(&format!("#{id} {line}"));
            }
            Event::TaskCache { status, .. } => {
                if let Some(task) = tasks.get(&id) {
                    let note = match status {
                        CacheStatus::Hit => "CACHED".to_string(),
                        CacheStatus::Miss { reason } => format!("(cache miss: {reason})"),
                    };
                    task.bar.set_message(format!("{} {note}", task.name));
                }
            }
            Event::TaskDone { duration, .. } | Event::TaskFailed { duration, .. } => {
                if let Some(task) = tasks.remove(&id) {
                    task.bar.finish_and_clear();
                    self.multi.remove(&task.bar);
                    let line = match event {
                        Event::TaskFailed { error, .. } => format!("#{id} {} ERROR: {error}", task.name),
                        _ => format!("#{id} {} DONE {}", task.name, secs(*duration)),
                    };
                    self.print(&line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_clock(start: u64) -> (Clock, Arc<std::sync::atomic::AtomicU64>) {
        let ms = Arc::new(std::sync::atomic::AtomicU64::new(start));
        let m = ms.clone();
        let clock: Clock =
            Arc::new(move || UNIX_EPOCH + Duration::from_millis(m.load(std::sync::atomic::Ordering::SeqCst)));
        (clock, ms)
    }

    /// A short script of events: (ms since start, event).
    fn script() -> Vec<(u64, Event)> {
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
            (1600, Event::TaskCache { id: 3, status: CacheStatus::Hit }),
            (1600, Event::TaskProgress { id: 3, current: 2, total: Some(5), unit: Unit::Items }),
            (1700, Event::TaskDone { id: 3, duration: Duration::from_millis(100) }),
        ]
    }

    fn feed(sink: &dyn Sink, ms: &std::sync::atomic::AtomicU64) {
        for (at, event) in script() {
            ms.store(1_700_000_000_000 + at, std::sync::atomic::Ordering::SeqCst);
            sink.event(&event);
        }
    }

    #[test]
    fn plain_output() {
        let (clock, ms) = fake_clock(0);
        let plain = Plain::new(Vec::new(), clock);
        feed(&plain, &ms);
        let out = String::from_utf8(plain.into_inner()).unwrap();
        assert_eq!(
            out,
            "\
#1 write layer
#2 [2/3] RUN make
#2 cache miss: file main.c changed
#1 1MB 0.1s
#1 3.5MB 1.2s
#2 1.250 cc -o main main.c
#1 4MB 1.3s
#1 DONE 1.4s
#2 ERROR: exit code 2
#3 [3/3] COPY . /app
#3 CACHED
#3 2 / 5 items 0.0s
#3 DONE 0.1s
"
        );
    }

    #[test]
    fn rawjson_output() {
        let (clock, ms) = fake_clock(0);
        let raw = RawJson::new(Vec::new(), clock);
        feed(&raw, &ms);
        let out = String::from_utf8(raw.into_inner()).unwrap();
        let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), script().len());
        assert!(lines.iter().all(|l| l["v"] == 1 && l["ts"].as_u64().unwrap() >= 1_700_000_000_000));
        assert_eq!(
            out.lines().next().unwrap(),
            r#"{"v":1,"ts":1700000000000,"type":"task_started","id":1,"name":"write layer"}"#
        );
        assert_eq!(
            out.lines().nth(2).unwrap(),
            r#"{"v":1,"ts":1700000000010,"type":"task_cache","id":2,"hit":false,"reason":"file main.c changed"}"#
        );
        assert_eq!(
            out.lines().nth(3).unwrap(),
            r#"{"v":1,"ts":1700000000100,"type":"task_progress","id":1,"current":1000000,"total":null,"unit":"bytes"}"#
        );
        assert_eq!(
            out.lines().nth(6).unwrap(),
            r#"{"v":1,"ts":1700000001250,"type":"task_log","id":2,"stream":"stdout","line":"cc -o main main.c"}"#
        );
        assert_eq!(
            out.lines().nth(8).unwrap(),
            r#"{"v":1,"ts":1700000001400,"type":"task_done","id":1,"duration_ms":1400}"#
        );
        assert_eq!(
            out.lines().nth(9).unwrap(),
            r#"{"v":1,"ts":1700000001500,"type":"task_failed","id":2,"duration_ms":1500,"error":"exit code 2"}"#
        );
        assert_eq!(out.lines().nth(11).unwrap(), r#"{"v":1,"ts":1700000001600,"type":"task_cache","id":3,"hit":true}"#);
        assert_eq!(
            out.lines().nth(12).unwrap(),
            r#"{"v":1,"ts":1700000001600,"type":"task_progress","id":3,"current":2,"total":5,"unit":"items"}"#
        );
    }

    #[test]
    fn tty_keeps_a_line_per_running_task() {
        let tty = Tty::new(ProgressDrawTarget::hidden());
        let (_, ms) = fake_clock(0);
        let mut running = Vec::new();
        for (at, event) in script() {
            ms.store(at, std::sync::atomic::Ordering::SeqCst);
            tty.event(&event);
            running.push(tty.running());
        }
        assert_eq!(running, [1, 2, 2, 2, 2, 2, 2, 2, 1, 0, 1, 1, 1, 0]);
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
