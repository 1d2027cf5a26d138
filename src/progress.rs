//! Progress events: what long operations tell whoever is watching.
//!
//! The library never prints. An operation that takes a while (`image::import`, `save`, `load`,
//! `Store::prune`, and later each `build` step) is handed a [`Reporter`] and sends it [`Event`]s
//! through [`Task`] handles; the `cli` module picks a renderer (tty, plain, rawjson, quiet) and
//! turns events into text. A [`Reporter::silent`] costs one branch per call, so library code
//! reports unconditionally.
//!
//! Terminology: a *task* is one unit of work with a number (`#N`, unique within a reporter), a
//! start, optional byte or item counts, optional log lines and cache outcome, and exactly one end
//! (done or failed). Tasks may run in parallel on several threads; events of one task arrive in
//! order. This module knows nothing of terminals, JSON or clocks other than `Instant`.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The number of a task, unique within one [`Reporter`]; the first task is 1.
pub type TaskId = u64;

/// What a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    /// Whole things: blobs, layers, files.
    Items,
}

/// Which output stream a log line came from (a build step's process, later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// Whether a task's result came from the cache, and if not, why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    /// Taken from the cache; `from` names the imported cache (`--cache-from`) the record came
    /// from, `None` for this store's own.
    Hit {
        from: Option<String>,
    },
    Miss {
        reason: String,
    },
}

/// One thing that happened to a task. Closed: renderers match every variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A task began; `name` is what a human reads (`write layer`, `[2/5] RUN make`).
    TaskStarted { id: TaskId, name: String },
    /// How far a task is: `current` of `total` (when known) `unit`s. `current` never decreases.
    TaskProgress { id: TaskId, current: u64, total: Option<u64>, unit: Unit },
    /// One line of output the task produced, without its line ending.
    TaskLog { id: TaskId, stream: LogStream, line: String },
    /// The task's cache lookup: a hit (the task will finish without doing the work) or a miss.
    TaskCache { id: TaskId, status: CacheStatus },
    /// The task finished; `duration` is measured from its start.
    TaskDone { id: TaskId, duration: Duration },
    /// The task failed (or was abandoned by an early return); `error` is its one-line message.
    TaskFailed { id: TaskId, duration: Duration, error: String },
}

impl Event {
    /// The task the event is about.
    pub fn id(&self) -> TaskId {
        match self {
            Event::TaskStarted { id, .. }
            | Event::TaskProgress { id, .. }
            | Event::TaskLog { id, .. }
            | Event::TaskCache { id, .. }
            | Event::TaskDone { id, .. }
            | Event::TaskFailed { id, .. } => *id,
        }
    }
}

/// Receives events. Implementations must be cheap and must not block for long: they are called
/// on the worker's thread, in the middle of its stream.
pub trait Sink: Send + Sync {
    fn event(&self, event: &Event);
}

struct Shared {
    sink: Box<dyn Sink>,
    next_id: AtomicU64,
}

/// A cloneable handle to a [`Sink`], or to nothing ([`Reporter::silent`]).
#[derive(Clone)]
pub struct Reporter {
    shared: Option<Arc<Shared>>,
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporter").field("silent", &self.is_silent()).finish()
    }
}

impl Default for Reporter {
    fn default() -> Reporter {
        Reporter::silent()
    }
}

impl Reporter {
    /// A reporter that drops every event without building it.
    pub fn silent() -> Reporter {
        Reporter { shared: None }
    }

    /// A reporter sending every event to `sink`.
    pub fn new(sink: impl Sink + 'static) -> Reporter {
        Reporter { shared: Some(Arc::new(Shared { sink: Box::new(sink), next_id: AtomicU64::new(1) })) }
    }

    /// Whether events go nowhere.
    pub fn is_silent(&self) -> bool {
        self.shared.is_none()
    }

    /// Starts a task named `name` (built only when someone listens).
    pub fn start(&self, name: impl FnOnce() -> String) -> Task {
        let id = match &self.shared {
            Some(shared) => {
                let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                shared.sink.event(&Event::TaskStarted { id, name: name() });
                id
            }
            None => 0,
        };
        Task { reporter: self.clone(), id, started: Instant::now(), ended: false }
    }

    fn send(&self, event: impl FnOnce() -> Event) {
        if let Some(shared) = &self.shared {
            shared.sink.event(&event());
        }
    }
}

/// A running task. End it with [`Task::done`] or [`Task::fail`]; dropping it unended (an early
/// `?` return) reports it failed, so no renderer keeps a spinner for a task that is gone.
#[derive(Debug)]
pub struct Task {
    reporter: Reporter,
    id: TaskId,
    started: Instant,
    ended: bool,
}

impl Task {
    /// The task's number (0 on a silent reporter).
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Reports `current` of `total` now, unthrottled. Streams use [`Task::meter`] instead.
    pub fn progress(&self, current: u64, total: Option<u64>, unit: Unit) {
        let id = self.id;
        self.reporter.send(|| Event::TaskProgress { id, current, total, unit });
    }

    /// A throttled counter for this task: see [`Meter`].
    pub fn meter(&self, total: Option<u64>, unit: Unit) -> Meter {
        Meter::new(self.reporter.clone(), self.id, total, unit)
    }

    /// Reports one line of the task's output.
    pub fn log(&self, stream: LogStream, line: impl FnOnce() -> String) {
        let id = self.id;
        self.reporter.send(|| Event::TaskLog { id, stream, line: line() });
    }

    /// Reports the task's cache outcome.
    pub fn cache(&self, status: CacheStatus) {
        let id = self.id;
        self.reporter.send(|| Event::TaskCache { id, status });
    }

    /// Ends the task successfully.
    pub fn done(mut self) {
        self.ended = true;
        let (id, duration) = (self.id, self.started.elapsed());
        self.reporter.send(|| Event::TaskDone { id, duration });
    }

    /// Ends the task with an error.
    pub fn fail(mut self, error: &dyn fmt::Display) {
        self.end_failed(error);
    }

    /// Ends the task as `result` says and hands the result back, for `task.finish(op())?`.
    pub fn finish<T, E: fmt::Display>(self, result: Result<T, E>) -> Result<T, E> {
        match &result {
            Ok(_) => self.done(),
            Err(e) => self.fail(e),
        }
        result
    }

    fn end_failed(&mut self, error: &dyn fmt::Display) {
        self.ended = true;
        let (id, duration) = (self.id, self.started.elapsed());
        self.reporter.send(|| Event::TaskFailed { id, duration, error: error.to_string() });
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if !self.ended {
            self.end_failed(&"stopped before finishing");
        }
    }
}

/// Emit at most this often while counting...
const METER_INTERVAL: Duration = Duration::from_millis(100);
/// ...and look at the clock only after this many more bytes, so counting a fast stream costs an
/// addition and a comparison per read or write.
const METER_BYTE_STEP: u64 = 256 << 10;

/// A counter that reports a task's progress at most every 100 ms, plus once at the end.
/// `Send`, so it can travel with a writer into a compression thread.
#[derive(Debug)]
pub struct Meter {
    reporter: Reporter,
    id: TaskId,
    total: Option<u64>,
    unit: Unit,
    current: u64,
    checked_at: u64,
    reported: Option<u64>,
    last: Instant,
}

impl Meter {
    fn new(reporter: Reporter, id: TaskId, total: Option<u64>, unit: Unit) -> Meter {
        Meter { reporter, id, total, unit, current: 0, checked_at: 0, reported: None, last: Instant::now() }
    }

    /// Adds `n` to the count.
    pub fn add(&mut self, n: u64) {
        self.current += n;
        if self.reporter.is_silent() {
            return;
        }
        let step = if self.unit == Unit::Bytes { METER_BYTE_STEP } else { 1 };
        if self.current - self.checked_at < step {
            return;
        }
        self.checked_at = self.current;
        if self.reported.is_none() || self.last.elapsed() >= METER_INTERVAL {
            self.emit();
        }
    }

    /// The count so far.
    pub fn current(&self) -> u64 {
        self.current
    }

    /// Reports the final count unless it was the last one reported.
    pub fn flush(&mut self) {
        if self.reported != Some(self.current) {
            self.emit();
        }
    }

    fn emit(&mut self) {
        self.last = Instant::now();
        self.reported = Some(self.current);
        let (id, current, total, unit) = (self.id, self.current, self.total, self.unit);
        self.reporter.send(|| Event::TaskProgress { id, current, total, unit });
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A writer that counts the bytes written through it into a [`Meter`].
#[derive(Debug)]
pub struct MeteredWriter<W> {
    inner: W,
    meter: Meter,
}

impl<W: Write> MeteredWriter<W> {
    pub fn new(inner: W, meter: Meter) -> MeteredWriter<W> {
        MeteredWriter { inner, meter }
    }

    /// Reports the final count and returns the inner writer.
    pub fn into_inner(self) -> W {
        let MeteredWriter { inner, mut meter } = self;
        meter.flush();
        inner
    }
}

impl<W: Write> Write for MeteredWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that counts the bytes read through it into a [`Meter`].
#[derive(Debug)]
pub struct MeteredReader<R> {
    inner: R,
    meter: Meter,
}

impl<R: Read> MeteredReader<R> {
    pub fn new(inner: R, meter: Meter) -> MeteredReader<R> {
        MeteredReader { inner, meter }
    }
}

impl<R: Read> Read for MeteredReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Event>>>);

    impl Sink for Recorder {
        fn event(&self, event: &Event) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    fn kinds(events: &[Event]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| match e {
                Event::TaskStarted { .. } => "started",
                Event::TaskProgress { .. } => "progress",
                Event::TaskLog { .. } => "log",
                Event::TaskCache { .. } => "cache",
                Event::TaskDone { .. } => "done",
                Event::TaskFailed { .. } => "failed",
            })
            .collect()
    }

    #[test]
    fn tasks_are_numbered_and_end_once() {
        let rec = Recorder::default();
        let reporter = Reporter::new(rec.clone());
        let a = reporter.start(|| "a".into());
        let b = reporter.clone().start(|| "b".into());
        assert_eq!((a.id(), b.id()), (1, 2));
        a.log(LogStream::Stdout, || "hello".into());
        b.cache(CacheStatus::Miss { reason: "new".into() });
        a.done();
        let _ = b.finish(Err::<(), _>("boom"));
        let events = rec.0.lock().unwrap();
        assert_eq!(kinds(&events), ["started", "started", "log", "cache", "done", "failed"]);
        assert!(matches!(&events[5], Event::TaskFailed { id: 2, error, .. } if error == "boom"));
    }

    #[test]
    fn dropped_task_is_reported_failed() {
        let rec = Recorder::default();
        let reporter = Reporter::new(rec.clone());
        drop(reporter.start(|| "x".into()));
        assert_eq!(kinds(&rec.0.lock().unwrap()), ["started", "failed"]);
    }

    #[test]
    fn silent_reporter_builds_nothing() {
        let reporter = Reporter::silent();
        let task = reporter.start(|| panic!("name built for nobody"));
        task.log(LogStream::Stderr, || panic!("line built for nobody"));
        let mut w = MeteredWriter::new(Vec::new(), task.meter(None, Unit::Bytes));
        w.write_all(&[0; 1000]).unwrap();
        assert_eq!(w.into_inner().len(), 1000);
        task.done();
    }

    #[test]
    fn meter_is_throttled_and_ends_at_the_total() {
        let rec = Recorder::default();
        let reporter = Reporter::new(rec.clone());
        let task = reporter.start(|| "copy".into());
        let data = vec![7u8; 3 << 20];
        let mut r = MeteredReader::new(&data[..], task.meter(Some(data.len() as u64), Unit::Bytes));
        let mut out = Vec::new();
        // Small reads: a per-read event would be thousands of events.
        let mut buf = [0u8; 4096];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        drop(r);
        task.done();
        let events = rec.0.lock().unwrap();
        let progress: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::TaskProgress { current, .. } => Some(*current),
                _ => None,
            })
            .collect();
        assert!(progress.len() <= 4, "{progress:?}");
        assert_eq!(progress.last(), Some(&(3 << 20)));
        assert!(progress.windows(2).all(|w| w[0] < w[1]));
        assert!(matches!(events.last(), Some(Event::TaskDone { id: 1, .. })));
    }
}
