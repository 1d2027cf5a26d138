//! Step output: every line a RUN prints goes to its progress task (the renderer decides what to
//! show), into a log file under the store whatever the progress mode, and into a short ring of
//! the last lines, shown when the step fails.
//!
//! Logs live in `<root>/logs/<build>/`, one file per RUN step, beside the build's record
//! ([`super::records`]); the build holds a flock on the directory while it runs, taken under
//! the flock of `<root>/logs/.lock` so that nobody sees the directory before it. The newest
//! builds are kept (`keep`, [`super::records::RecordSettings`]): a starting build removes the
//! oldest directories, record and logs together, never one whose build still runs.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::BuildError;
use crate::progress::{LogStream, Task};
use crate::store::Store;

/// Directory under the store root that holds build logs.
pub const LOG_DIR: &str = "logs";

/// Lines kept for the error message of a failing step.
const LAST_LINES: usize = 12;

/// Longest line passed on as one progress event; longer output is split, never dropped.
const MAX_LINE: usize = 64 << 10;

/// The log directory of one build, flocked while the build runs.
pub(crate) struct LogDir {
    path: PathBuf,
    id: String,
    /// The directory itself, holding the exclusive flock that says "running".
    _lock: File,
}

impl LogDir {
    /// Creates `<root>/logs/<unix time>-<nanoseconds>-<pid>/`, takes its flock and removes the
    /// oldest builds so that `keep` (at least this one) remain.
    pub(crate) fn create(store: &Store, keep: usize) -> Result<LogDir, BuildError> {
        let base = store.root().join(LOG_DIR);
        std::fs::create_dir_all(&base).map_err(|e| BuildError::io("create", &base, e))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let id = format!("{}-{:09}-{}", now.as_secs(), now.subsec_nanos(), std::process::id());
        let path = base.join(&id);
        // Whoever removes directories waits until this one is flocked (see `creation_lock`).
        let creating = super::records::creation_lock(&base).map_err(|e| BuildError::io("lock", &base, e))?;
        std::fs::create_dir(&path).map_err(|e| BuildError::io("create", &path, e))?;
        let lock = File::open(&path).map_err(|e| BuildError::io("open", &path, e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| BuildError::io("lock", &path, e.into()))?;
        prune(&base, keep.max(1));
        drop(creating);
        Ok(LogDir { path, id, _lock: lock })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The build's id: its directory's name.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// A log file for one step, named after its task number, stage and index; returns the file
    /// and its name in the directory.
    pub(crate) fn step(&self, task: u64, stage: &str, index: usize) -> Result<(File, String), BuildError> {
        let safe: String = stage.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let name = format!("{task:03}-{safe}-{:02}.log", index + 1);
        let path = self.path.join(&name);
        let file = File::create(&path).map_err(|e| BuildError::io("create", &path, e))?;
        Ok((file, name))
    }
}

/// Removes the oldest build directories (names sort by time) until `keep` remain, passing over
/// those whose build still runs; called under the creation lock, so every directory it sees is
/// either flocked by its running build or finished. Best effort: what cannot be removed stays
/// for the next build.
fn prune(base: &Path, keep: usize) {
    let Ok(ids) = super::records::build_ids(base) else { return };
    let excess = ids.len().saturating_sub(keep);
    for id in &ids[..excess] {
        let dir = base.join(id);
        if super::records::is_running(&dir) {
            continue;
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::debug!(dir = %dir.display(), error = %e, "removing an old build's record and logs");
        }
    }
}

/// Where one step's output goes; shared by its stdout and stderr writers.
pub(crate) struct StepLog<'t> {
    task: &'t Task,
    file: Mutex<Option<File>>,
    last: Mutex<VecDeque<String>>,
}

impl<'t> StepLog<'t> {
    pub(crate) fn new(task: &'t Task, file: Option<File>) -> StepLog<'t> {
        StepLog { task, file: Mutex::new(file), last: Mutex::new(VecDeque::with_capacity(LAST_LINES)) }
    }

    /// A writer for one stream.
    pub(crate) fn writer(&self, stream: LogStream) -> LineWriter<'_, 't> {
        LineWriter { log: self, stream, partial: Vec::new() }
    }

    /// The last lines written, oldest first.
    pub(crate) fn last_lines(&self) -> Vec<String> {
        self.last.lock().map(|l| l.iter().cloned().collect()).unwrap_or_default()
    }

    fn raw(&self, bytes: &[u8]) {
        if let Ok(mut file) = self.file.lock()
            && let Some(f) = file.as_mut()
            && let Err(e) = f.write_all(bytes)
        {
            tracing::warn!(error = %e, "writing a build log file; the log stops here");
            *file = None;
        }
    }

    fn line(&self, stream: LogStream, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        self.task.log(stream, || text.to_string());
        if let Ok(mut last) = self.last.lock() {
            if last.len() == LAST_LINES {
                last.pop_front();
            }
            last.push_back(text.to_string());
        }
    }
}

/// Splits a stream into lines for [`StepLog`]; the bytes go to the file unchanged.
pub(crate) struct LineWriter<'l, 't> {
    log: &'l StepLog<'t>,
    stream: LogStream,
    partial: Vec<u8>,
}

impl Write for LineWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.log.raw(buf);
        let mut rest = buf;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..nl]);
            self.log.line(self.stream, &self.partial);
            self.partial.clear();
            rest = &rest[nl + 1..];
        }
        self.partial.extend_from_slice(rest);
        while self.partial.len() >= MAX_LINE {
            let tail = self.partial.split_off(MAX_LINE);
            self.log.line(self.stream, &self.partial);
            self.partial = tail;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_, '_> {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let partial = std::mem::take(&mut self.partial);
            self.log.line(self.stream, &partial);
        }
    }
}
