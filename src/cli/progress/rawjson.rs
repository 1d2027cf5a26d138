//! `--progress rawjson`: one JSON object per event, schema version [`RAWJSON_VERSION`]
//! (`docs/progress.md`), written by hand so the library's `Event` cannot change it silently.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::Clock;
use crate::progress::{CacheStatus, Event, LogStream, Sink, Unit};

/// Version of the rawjson schema (`docs/progress.md`): additive fields keep it, anything else
/// bumps it.
pub const RAWJSON_VERSION: u64 = 1;

/// One JSON object per line, schema version [`RAWJSON_VERSION`] (`docs/progress.md`).
pub struct RawJson<W> {
    out: Mutex<W>,
    clock: Clock,
}

impl<W: Write + Send> RawJson<W> {
    /// Writes to `out`, stamping events with `clock`.
    pub fn new(out: W, clock: Clock) -> RawJson<W> {
        RawJson { out: Mutex::new(out), clock }
    }

    /// The writer, for tests.
    #[cfg(test)]
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
        // `hit` is the original v1 field, `status` the additive one readers should prefer.
        Event::TaskCache { status: CacheStatus::Hit { from }, .. } => {
            let mut fields = vec![("status", json!("hit")), ("hit", json!(true))];
            if let Some(from) = from {
                fields.push(("from", json!(from)));
            }
            ("task_cache", fields)
        }
        Event::TaskCache { status: CacheStatus::Miss { reason }, .. } => {
            ("task_cache", vec![("status", json!("miss")), ("hit", json!(false)), ("reason", json!(reason))])
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

#[cfg(test)]
mod tests {
    use super::super::tests::{fake_clock, feed, script};
    use super::*;

    #[test]
    fn rawjson_output() {
        let (clock, ms) = fake_clock(0);
        let raw = RawJson::new(Vec::new(), clock);
        feed(&raw, &ms, script());
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
            r#"{"v":1,"ts":1700000000010,"type":"task_cache","id":2,"status":"miss","hit":false,"reason":"file main.c changed"}"#
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
        assert_eq!(
            out.lines().nth(11).unwrap(),
            r#"{"v":1,"ts":1700000001600,"type":"task_cache","id":3,"status":"hit","hit":true}"#
        );
        assert_eq!(
            out.lines().nth(12).unwrap(),
            r#"{"v":1,"ts":1700000001600,"type":"task_progress","id":3,"current":2,"total":5,"unit":"items"}"#
        );
    }

    /// A step's interval is its `task_started` ts to its `task_done` ts; the duration agrees.
    #[test]
    fn a_step_interval_is_started_to_done() {
        let (clock, ms) = fake_clock(0);
        let raw = RawJson::new(Vec::new(), clock);
        feed(&raw, &ms, script());
        let out = String::from_utf8(raw.into_inner()).unwrap();
        let events: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let ts = |kind: &str, id: u64| {
            events.iter().find(|e| e["type"] == kind && e["id"] == id).unwrap()["ts"].as_u64().unwrap()
        };
        assert_eq!(ts("task_done", 3) - ts("task_started", 3), 100);
        assert_eq!(ts("task_failed", 2) - ts("task_started", 2), 1500);
    }
}
