//! The writing side: a build's [`Recorder`] keeps its record in memory and rewrites
//! `record.json` after every change, atomically (a temp file in the same directory, renamed
//! over the old one; fsync'd when the build ends).

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::{BuildRecord, BuildResult, RECORD_FILE, RecordedError, StepRecord, StepResult, json};
use crate::cache::MissReason;
use crate::engine::{BuildError, BuildOptions, BuildOutput};
use crate::progress::CacheStatus;

/// Whether a write must reach the disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Atomic for every reader, not fsync'd: a step's progress.
    Atomic,
    /// Atomic and fsync'd (file and directory): the build's last word.
    Synced,
}

/// The record of the running build.
pub(crate) struct Recorder {
    dir: std::path::PathBuf,
    mask: Mask,
    started: Instant,
    state: Mutex<State>,
}

struct State {
    record: BuildRecord,
    /// When each step started, for its duration.
    clocks: Vec<Instant>,
}

/// A step's place in the record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepEntry(usize);

impl Recorder {
    /// Writes the first record (`running`) of build `id` into `dir`. `context` names the
    /// context (its directory, `-` for a tar).
    pub(crate) fn start(dir: &Path, id: &str, context: &str, options: &BuildOptions) -> Result<Recorder, BuildError> {
        let record = BuildRecord {
            id: id.to_string(),
            started_ms: now_ms(),
            duration_ms: None,
            result: BuildResult::Running,
            context: context.to_string(),
            dockerfile: options.dockerfile_name.clone(),
            target: options.target.clone(),
            platform: options.platform.to_string(),
            tags: options.tags.iter().map(|t| t.familiar()).collect(),
            build_args: options.build_args.keys().cloned().collect(),
            no_cache: options.no_cache,
            image: None,
            manifest: None,
            error: None,
            steps: Vec::new(),
        };
        let recorder = Recorder {
            dir: dir.to_path_buf(),
            mask: Mask::new(&options.build_args),
            started: Instant::now(),
            state: Mutex::new(State { record, clocks: Vec::new() }),
        };
        let state = recorder.state.lock().unwrap_or_else(|p| p.into_inner());
        write(&recorder.dir, &state.record, Durability::Atomic)
            .map_err(|e| BuildError::io("write", recorder.dir.join(RECORD_FILE), e))?;
        drop(state);
        Ok(recorder)
    }

    /// A layer step named `title` (as its progress task) started in `stage`.
    pub(crate) fn step_started(&self, stage: &str, title: &str) -> StepEntry {
        // The `[stage 2/5] ` prefix is the builder's; only the instruction may hold a value.
        let name = match title.split_once("] ") {
            Some((prefix, rest)) => format!("{prefix}] {}", self.mask.apply(rest)),
            None => self.mask.apply(title),
        };
        self.change(|state| {
            state.record.steps.push(StepRecord {
                name,
                stage: stage.to_string(),
                started_ms: now_ms(),
                duration_ms: None,
                cache: None,
                bytes: None,
                result: StepResult::Running,
                exit: None,
                error: None,
                last_lines: Vec::new(),
                log: None,
            });
            state.clocks.push(Instant::now());
            StepEntry(state.record.steps.len() - 1)
        })
    }

    /// The step's cache lookup: a hit (`from` an imported cache, or this store's), or a miss and
    /// why (kept without values).
    pub(crate) fn step_cache(&self, step: StepEntry, from: Option<&str>, miss: Option<&MissReason>) {
        let status = match miss {
            None => CacheStatus::Hit { from: from.map(str::to_string) },
            Some(reason) => CacheStatus::Miss { reason: self.mask.apply(&reason.without_values()) },
        };
        self.change(|state| state.record.steps[step.0].cache = Some(status));
    }

    /// The step's process writes its output to `file` (a name in the build's directory).
    pub(crate) fn step_log(&self, step: StepEntry, file: &str) {
        self.change(|state| state.record.steps[step.0].log = Some(file.to_string()));
    }

    /// The step ended: done with a layer of `bytes` (`None`: no layer), or with `error`.
    pub(crate) fn step_ended(&self, step: StepEntry, outcome: Result<Option<u64>, &BuildError>) {
        let ended = outcome.map_err(|e| {
            let run = run_failure(e);
            StepFailure {
                result: if e.is_cancelled() { StepResult::Cancelled } else { StepResult::Failed },
                error: self.mask.apply(&chain(e)),
                exit: run.map(|(status, _)| status),
                last_lines: run
                    .map(|(_, lines)| lines.iter().map(|l| self.mask.apply(l)).collect())
                    .unwrap_or_default(),
            }
        });
        self.change(|state| {
            let duration = state.clocks[step.0].elapsed();
            let s = &mut state.record.steps[step.0];
            s.duration_ms = Some(millis(duration));
            match ended {
                Ok(bytes) => {
                    s.result = StepResult::Done;
                    s.bytes = bytes;
                }
                Err(failure) => {
                    s.result = failure.result;
                    s.error = Some(failure.error);
                    s.exit = failure.exit;
                    s.last_lines = failure.last_lines;
                }
            }
        });
    }

    /// The build ended as `result` says: the last write, fsync'd.
    pub(crate) fn finish(&self, result: Result<&BuildOutput, &BuildError>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let record = &mut state.record;
        record.duration_ms = Some(millis(self.started.elapsed()));
        match result {
            Ok(output) => {
                record.result = BuildResult::Succeeded;
                record.image = Some(output.image.id());
                record.manifest = Some(output.manifest.digest);
            }
            Err(e) => {
                record.result = if e.is_cancelled() { BuildResult::Cancelled } else { BuildResult::Failed };
                record.error = Some(self.describe(e));
            }
        }
        // A step still running now never got to end (an early return on the way).
        for step in record.steps.iter_mut().filter(|s| s.result == StepResult::Running) {
            step.result = StepResult::Cancelled;
        }
        if let Err(e) = write(&self.dir, &state.record, Durability::Synced) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "writing the build record");
        }
    }

    /// Applies `f` to the state and writes the record (best effort: a record that cannot be
    /// written costs the record, never the build).
    fn change<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let value = f(&mut state);
        if let Err(e) = write(&self.dir, &state.record, Durability::Atomic) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "writing the build record");
        }
        value
    }

    /// The build's error for its record: the message chain (for a Dockerfile that does not
    /// parse or resolve, its first error too) and the location.
    fn describe(&self, error: &BuildError) -> RecordedError {
        let mut message = chain(error);
        let mut span = error.span();
        let first = match error {
            BuildError::Syntax { diagnostics } => {
                diagnostics.errors().first().map(|e| (e.to_string(), Some(e.span()), diagnostics.errors().len()))
            }
            BuildError::Stages { errors } => {
                errors.errors().first().map(|e| (e.to_string(), e.span(), errors.errors().len()))
            }
            _ => None,
        };
        if let Some((text, first_span, count)) = first {
            message = format!("{message}: {text}");
            if count > 1 {
                message.push_str(&format!(" (and {} more)", count - 1));
            }
            span = span.or(first_span);
        }
        RecordedError {
            message: self.mask.apply(&message),
            line: span.map(|s| s.start_line),
            column: span.map(|s| s.column),
        }
    }
}

/// How a step failed, as its record says it.
struct StepFailure {
    result: StepResult,
    error: String,
    exit: Option<crate::exec::ExitStatus>,
    last_lines: Vec<String>,
}

/// A failed RUN's exit status and last lines.
fn run_failure(error: &BuildError) -> Option<(crate::exec::ExitStatus, &[String])> {
    match error {
        BuildError::RunFailed { status, last_lines, .. } => Some((*status, last_lines)),
        BuildError::Step { source, .. } => run_failure(source),
        _ => None,
    }
}

/// An error and its causes, `: `-separated.
fn chain(error: &BuildError) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Writes a finished build's record again (synced), for [`super::record_output_failure`].
pub(super) fn rewrite(dir: &Path, record: &BuildRecord) -> std::io::Result<()> {
    write(dir, record, Durability::Synced)
}

/// Writes `record` as `dir/record.json` through a temp file in `dir` and a rename.
fn write(dir: &Path, record: &BuildRecord, durability: Durability) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(&json::encode(record)).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    let mut tmp = tempfile::Builder::new().prefix(".record-").suffix(".tmp").tempfile_in(dir)?;
    tmp.write_all(&bytes)?;
    if durability == Durability::Synced {
        tmp.as_file().sync_all()?;
    }
    crate::failpoint::io("record.before_rename")?;
    tmp.persist(dir.join(RECORD_FILE)).map_err(|e| e.error)?;
    if durability == Durability::Synced {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, millis)
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Replaces every build-arg value in a text by `${NAME}`.
#[derive(Debug, Default)]
pub(super) struct Mask {
    /// `(value, name)`, longest value first, so a value inside a longer one never splits it.
    values: Vec<(String, String)>,
}

impl Mask {
    pub(super) fn new(build_args: &std::collections::BTreeMap<String, String>) -> Mask {
        let mut values: Vec<(String, String)> =
            build_args.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (v.clone(), k.clone())).collect();
        values.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.cmp(b)));
        Mask { values }
    }

    /// `text` with each whole occurrence of a value replaced, in one pass (what was put in is
    /// never looked at again).
    pub(super) fn apply(&self, text: &str) -> String {
        if self.values.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        'scan: while let Some(c) = rest.chars().next() {
            for (value, name) in &self.values {
                if rest.starts_with(value.as_str()) {
                    out.push_str("${");
                    out.push_str(name);
                    out.push('}');
                    rest = &rest[value.len()..];
                    continue 'scan;
                }
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }
}
