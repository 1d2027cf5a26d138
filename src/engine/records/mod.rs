//! Build records: what every build leaves in the store beside its step logs — when it ran, on
//! what, how it ended, and per layer step the cache decision, duration, layer bytes and exit
//! status — and the reading side `slipway builds` uses ([`list`], [`find`], [`remove`]).
//!
//! A record is `<root>/logs/<id>/record.json` ([`RECORD_FILE`], JSON schema in
//! `docs/builds.md`), `<id>` being the build's log directory. The build writes it (`Recorder`)
//! through a temp file and a rename when it starts, as each step starts, is looked up, opens its
//! log and ends, and when it ends; a reader so sees a whole record or none, never a torn one.
//! The build holds a flock on its directory while it runs: a record that still says `running`
//! when nobody holds it was left by a killed process and reads as
//! [`BuildResult::Interrupted`].
//!
//! **Invariant:** a record holds build-arg names, never their values: cache reasons are kept
//! without values ([`crate::cache::MissReason::without_values`]) and the texts that may carry an
//! expanded word (step names, errors, a failed step's last lines) have every build-arg value
//! replaced by `${NAME}`. Secret values never reach it (they never leave the `ExecSpec`).
//!
//! The newest builds are kept, [`RecordSettings::keep`] of them (`[builds] keep` in
//! `config.toml`); a starting build removes the oldest, logs and record together, so no
//! record ever points at logs that are gone.

mod json;
mod recorder;
mod settings;

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::exec::ExitStatus;
use crate::oci::Digest;
use crate::progress::CacheStatus;
use crate::store::Store;

pub(crate) use recorder::{Recorder, StepEntry};
pub use settings::{DEFAULT_KEEP, RecordSettings};

/// The record's file name in a build's log directory.
pub const RECORD_FILE: &str = "record.json";

/// The schema version written in every record (`v`).
pub const RECORD_VERSION: u64 = 1;

/// How a build ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildResult {
    /// Still running: its process holds the directory's flock.
    Running,
    Succeeded,
    Failed,
    /// Stopped by a signal (SIGINT, SIGTERM) or by the caller's cancel token.
    Cancelled,
    /// Never finished: the process was killed (or the machine stopped) while it ran.
    Interrupted,
}

impl BuildResult {
    /// The word records and tables use.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildResult::Running => "running",
            BuildResult::Succeeded => "succeeded",
            BuildResult::Failed => "failed",
            BuildResult::Cancelled => "cancelled",
            BuildResult::Interrupted => "interrupted",
        }
    }
}

/// How a step ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepResult {
    Running,
    Done,
    Failed,
    /// Stopped because the build was cancelled (a signal, or another step failed).
    Cancelled,
    /// Still running when its build's process was killed.
    Interrupted,
}

impl StepResult {
    /// The word records and tables use.
    pub fn as_str(self) -> &'static str {
        match self {
            StepResult::Running => "running",
            StepResult::Done => "done",
            StepResult::Failed => "failed",
            StepResult::Cancelled => "cancelled",
            StepResult::Interrupted => "interrupted",
        }
    }
}

/// Why a build failed, with its Dockerfile location when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedError {
    /// The error and its causes, `: `-separated (build-arg values masked).
    pub message: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

/// One layer step (RUN, COPY, ADD, WORKDIR) of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// As progress names it: `[build 2/5] RUN make` (build-arg values masked).
    pub name: String,
    /// The stage's name, or `stage-N` for an unnamed one.
    pub stage: String,
    /// Milliseconds since the Unix epoch when it started.
    pub started_ms: u64,
    pub duration_ms: Option<u64>,
    /// The cache lookup; `None` until it was made. A miss's reason carries no values.
    pub cache: Option<CacheStatus>,
    /// Bytes of the step's layer blob (new or cached); `None` when it made no layer or did not
    /// finish.
    pub bytes: Option<u64>,
    pub result: StepResult,
    /// How its process ended, for a RUN that failed.
    pub exit: Option<ExitStatus>,
    /// Why it failed (build-arg values masked).
    pub error: Option<String>,
    /// The last lines a failed RUN wrote (build-arg values masked).
    pub last_lines: Vec<String>,
    /// Its log file's name in the build's directory: only a step that ran a process has one.
    pub log: Option<String>,
}

/// One build, as `slipway builds` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRecord {
    /// The build's log directory name: `<unix seconds>-<nanoseconds>-<pid>`.
    pub id: String,
    /// Milliseconds since the Unix epoch when it started.
    pub started_ms: u64,
    pub duration_ms: Option<u64>,
    pub result: BuildResult,
    /// The context directory (canonical), or `-` for a tar on stdin.
    pub context: String,
    /// The Dockerfile as the build named it (`Dockerfile`, `build/app.Dockerfile`, `-`).
    pub dockerfile: String,
    /// `--target`, when given.
    pub target: Option<String>,
    pub platform: String,
    /// `-t` names.
    pub tags: Vec<String>,
    /// The names of the `--build-arg`s given (never their values).
    pub build_args: Vec<String>,
    pub no_cache: bool,
    /// The image id (config digest) of a successful build.
    pub image: Option<Digest>,
    /// Its manifest's digest.
    pub manifest: Option<Digest>,
    pub error: Option<RecordedError>,
    /// Layer steps in the order they started.
    pub steps: Vec<StepRecord>,
}

impl BuildRecord {
    /// Layer steps that ran (missed the cache) and finished.
    pub fn steps_run(&self) -> usize {
        self.count(|hit| !hit)
    }

    /// Layer steps taken from the cache.
    pub fn steps_cached(&self) -> usize {
        self.count(|hit| hit)
    }

    fn count(&self, want: impl Fn(bool) -> bool) -> usize {
        let hit = |s: &StepRecord| matches!(s.cache, Some(CacheStatus::Hit { .. }));
        self.steps.iter().filter(|s| s.result == StepResult::Done && want(hit(s))).count()
    }

    /// The record as JSON, schema version [`RECORD_VERSION`] (`docs/builds.md`): what
    /// `record.json` holds, and what `slipway builds ls|show --format json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        json::encode(self)
    }

    /// The log file of step `number` (1-based, as `slipway builds show` numbers them), when it
    /// has one.
    pub fn log_path(&self, store: &Store, number: usize) -> Option<PathBuf> {
        let step = self.steps.get(number.checked_sub(1)?)?;
        Some(build_dir(store, &self.id).join(step.log.as_deref()?))
    }
}

/// What reading or removing records can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no build {id} (`slipway builds ls` lists them)")]
    NotFound { id: String },
    #[error("build id prefix {prefix} matches {} builds: {}", .matches.len(), .matches.join(", "))]
    Ambiguous { prefix: String, matches: Vec<String> },
    #[error("build {id} has logs but no record (written by an older slipway, or killed as it started)")]
    NoRecord { id: String },
    #[error("build record {path} is not valid JSON")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("build record {path}: field {field} is missing or not what schema version 1 says")]
    Field { path: PathBuf, field: String },
    #[error("build record {path} has schema version {found}, newer than the {supported} this slipway reads")]
    Version { path: PathBuf, found: u64, supported: u64 },
    #[error("build {id} is still running")]
    Running { id: String },
    #[error("configuration file {path}: {reason}")]
    Settings { path: PathBuf, reason: String },
    #[error("configuration file {path}: invalid TOML")]
    SettingsToml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
}

impl RecordError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> RecordError {
        RecordError::Io { action, path: path.to_path_buf(), source }
    }
}

/// `<root>/logs`.
fn logs_dir(store: &Store) -> PathBuf {
    store.root().join(super::LOG_DIR)
}

/// `<root>/logs/<id>`.
fn build_dir(store: &Store, id: &str) -> PathBuf {
    logs_dir(store).join(id)
}

/// The build directories' names, oldest first (names sort by time).
pub(crate) fn build_ids(logs: &Path) -> Result<Vec<String>, RecordError> {
    let entries = match std::fs::read_dir(logs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RecordError::io("list", logs, e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| RecordError::io("list", logs, e))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            ids.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

/// Every readable record, newest first. A directory without a record (logs of an older
/// slipway) is left out; so is a record that cannot be read, with a warning — one bad file
/// never hides the others.
pub fn list(store: &Store) -> Result<Vec<BuildRecord>, RecordError> {
    let mut records = Vec::new();
    for id in build_ids(&logs_dir(store))?.into_iter().rev() {
        match load(store, &id) {
            Ok(record) => records.push(record),
            Err(RecordError::NoRecord { .. }) => {}
            // Removed since it was listed (a build's retention, `builds rm`).
            Err(RecordError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(id, error = %error_chain(&e), "skipping an unreadable build record"),
        }
    }
    Ok(records)
}

/// The build `id` names: an id, or a prefix of exactly one.
pub fn resolve(store: &Store, id: &str) -> Result<String, RecordError> {
    let ids = build_ids(&logs_dir(store))?;
    if ids.iter().any(|i| i == id) {
        return Ok(id.to_string());
    }
    let matches: Vec<String> = ids.into_iter().filter(|i| !id.is_empty() && i.starts_with(id)).collect();
    match matches.len() {
        0 => Err(RecordError::NotFound { id: id.to_string() }),
        1 => Ok(matches.into_iter().next().expect("one match")),
        _ => Err(RecordError::Ambiguous { prefix: id.to_string(), matches }),
    }
}

/// The record of the build `id` names (an id or a unique prefix).
pub fn find(store: &Store, id: &str) -> Result<BuildRecord, RecordError> {
    load(store, &resolve(store, id)?)
}

/// Reads the record of build `id` (exactly); a `running` record nobody runs any more reads as
/// interrupted.
fn load(store: &Store, id: &str) -> Result<BuildRecord, RecordError> {
    if !is_build_id(id) {
        return Err(RecordError::NotFound { id: id.to_string() });
    }
    let dir = build_dir(store, id);
    let path = dir.join(RECORD_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir.is_dir() => {
            return Err(RecordError::NoRecord { id: id.to_string() });
        }
        Err(e) => return Err(RecordError::io("read", &path, e)),
    };
    let mut record = json::decode(&path, &bytes)?;
    if record.result == BuildResult::Running && !is_running(&dir) {
        // The build writes its last record before it lets go of the flock: read again, in case
        // it ended after the first read.
        let bytes = std::fs::read(&path).map_err(|e| RecordError::io("read", &path, e))?;
        record = json::decode(&path, &bytes)?;
    }
    if record.result == BuildResult::Running && !is_running(&dir) {
        record.result = BuildResult::Interrupted;
        for step in record.steps.iter_mut().filter(|s| s.result == StepResult::Running) {
            step.result = StepResult::Interrupted;
        }
    }
    Ok(record)
}

/// Marks build `id` (exactly), which succeeded, as failed by what came after it: an output or a
/// push of its image that failed (`message`, the error chain). Under the creation lock, so
/// retention and `builds rm` do not race it.
pub fn record_output_failure(store: &Store, id: &str, message: &str) -> Result<(), RecordError> {
    let logs = logs_dir(store);
    let _creating = creation_lock(&logs).map_err(|e| RecordError::io("lock", &logs.join(CREATION_LOCK), e))?;
    let mut record = load(store, id)?;
    record.result = BuildResult::Failed;
    record.error = Some(RecordedError { message: format!("exporting the image: {message}"), line: None, column: None });
    let dir = build_dir(store, id);
    recorder::rewrite(&dir, &record).map_err(|e| RecordError::io("write", &dir.join(RECORD_FILE), e))
}

/// Removes build `id` (exactly): its record and logs. A running build is refused.
pub fn remove(store: &Store, id: &str) -> Result<(), RecordError> {
    let logs = logs_dir(store);
    let _creating = match creation_lock(&logs) {
        Ok(lock) => lock,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RecordError::NotFound { id: id.into() }),
        Err(e) => return Err(RecordError::io("lock", &logs.join(CREATION_LOCK), e)),
    };
    remove_unlocked(store, id)
}

fn remove_unlocked(store: &Store, id: &str) -> Result<(), RecordError> {
    if !is_build_id(id) {
        return Err(RecordError::NotFound { id: id.to_string() });
    }
    let dir = build_dir(store, id);
    if is_running(&dir) {
        return Err(RecordError::Running { id: id.to_string() });
    }
    std::fs::remove_dir_all(&dir).map_err(|e| RecordError::io("remove", &dir, e))
}

/// Whether `id` can name a directory under `logs/` (and nothing outside it).
fn is_build_id(id: &str) -> bool {
    !id.is_empty() && !id.starts_with('.') && !id.contains('/')
}

/// What [`remove_all`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    pub removed: Vec<String>,
    /// Builds still running, left alone.
    pub running: Vec<String>,
}

/// Removes every build that is not running, records and logs (also logs without a record).
pub fn remove_all(store: &Store) -> Result<Removed, RecordError> {
    let mut report = Removed::default();
    let logs = logs_dir(store);
    let _creating = match creation_lock(&logs) {
        Ok(lock) => lock,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(RecordError::io("lock", &logs.join(CREATION_LOCK), e)),
    };
    for id in build_ids(&logs)? {
        match remove_unlocked(store, &id) {
            Ok(()) => report.removed.push(id),
            Err(RecordError::Running { id }) => report.running.push(id),
            Err(RecordError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// The name of the file under `<root>/logs` whose flock makes "create a build's directory and
/// take its flock" one step for whoever removes directories (retention, `builds rm`): without it
/// a directory could be seen, not yet flocked, and removed under its starting build.
const CREATION_LOCK: &str = ".lock";

/// Holds `<logs>/.lock` (created if needed) until dropped.
pub(crate) fn creation_lock(logs: &Path) -> std::io::Result<File> {
    let file = File::options().create(true).truncate(false).write(true).open(logs.join(CREATION_LOCK))?;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether a build holds the flock of its directory (it is running).
pub(crate) fn is_running(dir: &Path) -> bool {
    let Ok(file) = File::open(dir) else { return false };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => false,
        Err(e) => e == rustix::io::Errno::WOULDBLOCK,
    }
}

/// An error and its causes on one line, joined by `: ` (a log message, a value in a report).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests;
