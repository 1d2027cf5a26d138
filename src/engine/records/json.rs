//! A record as JSON, schema version 1 (`docs/builds.md`), written and read by hand: serde
//! derives are `oci`'s alone. Readers ignore fields they do not know (additive changes keep the
//! version); a missing field or one of the wrong type is an error naming it.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::{BuildRecord, BuildResult, RECORD_VERSION, RecordError, RecordedError, StepRecord, StepResult};
use crate::exec::ExitStatus;
use crate::oci::Digest;
use crate::progress::CacheStatus;

/// The record as a JSON value (`steps_run` and `steps_cached` included for readers; they are
/// derived from the steps and not read back).
pub fn encode(r: &BuildRecord) -> Value {
    json!({
        "v": RECORD_VERSION,
        "id": r.id,
        "started_ms": r.started_ms,
        "duration_ms": r.duration_ms,
        "result": r.result.as_str(),
        "context": r.context,
        "dockerfile": r.dockerfile,
        "target": r.target,
        "platform": r.platform,
        "tags": r.tags,
        "build_args": r.build_args,
        "no_cache": r.no_cache,
        "image": r.image.map(|d| d.to_string()),
        "manifest": r.manifest.map(|d| d.to_string()),
        "error": r.error.as_ref().map(|e| json!({"message": e.message, "line": e.line, "column": e.column})),
        "steps_run": r.steps_run(),
        "steps_cached": r.steps_cached(),
        "steps": r.steps.iter().map(encode_step).collect::<Vec<_>>(),
    })
}

fn encode_step(s: &StepRecord) -> Value {
    let (cache, reason, from) = match &s.cache {
        None => (None, None, None),
        Some(CacheStatus::Hit { from }) => (Some("hit"), None, from.as_deref()),
        Some(CacheStatus::Miss { reason }) => (Some("miss"), Some(reason.as_str()), None),
    };
    let mut step = json!({
        "name": s.name,
        "stage": s.stage,
        "started_ms": s.started_ms,
        "duration_ms": s.duration_ms,
        "cache": cache,
        "reason": reason,
        "bytes": s.bytes,
        "result": s.result.as_str(),
        "exit_code": s.exit.and_then(ExitStatus::code),
        "signal": s.exit.and_then(ExitStatus::signal),
        "error": s.error,
        "last_lines": s.last_lines,
        "log": s.log,
    });
    if let Some(from) = from {
        step["cache_from"] = json!(from);
    }
    step
}

/// Reads a record file's bytes.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<BuildRecord, RecordError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|source| RecordError::Parse { path: path.into(), source })?;
    let f = Fields { path, map: value.as_object().ok_or_else(|| field(path, "(the record is not an object)"))? };
    let version = f.u64("v")?;
    if version > RECORD_VERSION {
        return Err(RecordError::Version { path: path.into(), found: version, supported: RECORD_VERSION });
    }
    let error = match f.map.get("error") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => {
            let e = Fields { path, map };
            Some(RecordedError { message: e.str("message")?, line: e.opt_u32("line")?, column: e.opt_u32("column")? })
        }
        Some(_) => return Err(field(path, "error")),
    };
    let steps = f.array("steps")?.iter().map(|s| decode_step(path, s)).collect::<Result<_, _>>()?;
    Ok(BuildRecord {
        id: f.str("id")?,
        started_ms: f.u64("started_ms")?,
        duration_ms: f.opt_u64("duration_ms")?,
        result: build_result(&f.str("result")?).ok_or_else(|| field(path, "result"))?,
        context: f.str("context")?,
        dockerfile: f.str("dockerfile")?,
        target: f.opt_str("target")?,
        platform: f.str("platform")?,
        tags: f.strings("tags")?,
        build_args: f.strings("build_args")?,
        no_cache: f.map.get("no_cache").and_then(Value::as_bool).ok_or_else(|| field(path, "no_cache"))?,
        image: f.opt_digest("image")?,
        manifest: f.opt_digest("manifest")?,
        error,
        steps,
    })
}

fn decode_step(path: &Path, value: &Value) -> Result<StepRecord, RecordError> {
    let f = Fields { path, map: value.as_object().ok_or_else(|| field(path, "steps"))? };
    let cache = match f.opt_str("cache")?.as_deref() {
        None => None,
        Some("hit") => Some(CacheStatus::Hit { from: f.opt_str("cache_from")? }),
        Some("miss") => Some(CacheStatus::Miss { reason: f.opt_str("reason")?.unwrap_or_default() }),
        Some(_) => return Err(field(path, "steps.cache")),
    };
    let exit = match (f.opt_i32("exit_code")?, f.opt_i32("signal")?) {
        (Some(code), _) => Some(ExitStatus::Exited(code)),
        (None, Some(signal)) => Some(ExitStatus::Signaled(signal)),
        (None, None) => None,
    };
    // A log is a file of the build's directory, never a path.
    let log = f.opt_str("log")?;
    if log.as_deref().is_some_and(|l| l.contains('/') || l.starts_with('.')) {
        return Err(field(path, "steps.log"));
    }
    Ok(StepRecord {
        name: f.str("name")?,
        stage: f.str("stage")?,
        started_ms: f.u64("started_ms")?,
        duration_ms: f.opt_u64("duration_ms")?,
        cache,
        bytes: f.opt_u64("bytes")?,
        result: step_result(&f.str("result")?).ok_or_else(|| field(path, "steps.result"))?,
        exit,
        error: f.opt_str("error")?,
        last_lines: f.strings("last_lines")?,
        log,
    })
}

fn build_result(word: &str) -> Option<BuildResult> {
    [
        BuildResult::Running,
        BuildResult::Succeeded,
        BuildResult::Failed,
        BuildResult::Cancelled,
        BuildResult::Interrupted,
    ]
    .into_iter()
    .find(|r| r.as_str() == word)
}

fn step_result(word: &str) -> Option<StepResult> {
    [StepResult::Running, StepResult::Done, StepResult::Failed, StepResult::Cancelled, StepResult::Interrupted]
        .into_iter()
        .find(|r| r.as_str() == word)
}

fn field(path: &Path, name: &str) -> RecordError {
    RecordError::Field { path: path.into(), field: name.to_string() }
}

/// Typed access to an object's fields; every failure names the field.
struct Fields<'a> {
    path: &'a Path,
    map: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn err(&self, name: &str) -> RecordError {
        field(self.path, name)
    }

    /// The field, `None` when absent or null.
    fn opt<T>(&self, name: &str, get: impl Fn(&Value) -> Option<T>) -> Result<Option<T>, RecordError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => get(v).map(Some).ok_or_else(|| self.err(name)),
        }
    }

    fn str(&self, name: &str) -> Result<String, RecordError> {
        self.opt_str(name)?.ok_or_else(|| self.err(name))
    }

    fn opt_str(&self, name: &str) -> Result<Option<String>, RecordError> {
        self.opt(name, |v| v.as_str().map(str::to_string))
    }

    fn u64(&self, name: &str) -> Result<u64, RecordError> {
        self.opt_u64(name)?.ok_or_else(|| self.err(name))
    }

    fn opt_u64(&self, name: &str) -> Result<Option<u64>, RecordError> {
        self.opt(name, Value::as_u64)
    }

    fn opt_u32(&self, name: &str) -> Result<Option<u32>, RecordError> {
        self.opt(name, |v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
    }

    fn opt_i32(&self, name: &str) -> Result<Option<i32>, RecordError> {
        self.opt(name, |v| v.as_i64().and_then(|n| i32::try_from(n).ok()))
    }

    fn opt_digest(&self, name: &str) -> Result<Option<Digest>, RecordError> {
        self.opt(name, |v| v.as_str().and_then(|s| s.parse().ok()))
    }

    fn array(&self, name: &str) -> Result<&Vec<Value>, RecordError> {
        self.map.get(name).and_then(Value::as_array).ok_or_else(|| self.err(name))
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, RecordError> {
        self.array(name)?.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(|| self.err(name))).collect()
    }
}
