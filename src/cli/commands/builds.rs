//! `slipway builds ls|show|logs|rm`: the records every build leaves in the store
//! (`engine::records`), rendered; the logs copied out as they were written.

use std::io::Write;

use anyhow::{Context, Result, bail};

use super::open_store;
use crate::cli::args::{BuildsArgs, BuildsCommand, BuildsLogsArgs, BuildsRmArgs, Format, GlobalArgs};
use crate::cli::table::{ago, duration_ms, print_table};
use crate::cli::units::size;
use crate::engine::records::{self, BuildRecord, StepRecord, StepResult};
use crate::progress::CacheStatus;
use crate::store::Store;

/// Runs one `builds` subcommand.
pub fn builds(global: &GlobalArgs, args: &BuildsArgs) -> Result<u8> {
    let store = open_store(global)?;
    match &args.command {
        BuildsCommand::Ls(a) => ls(&store, a.format),
        BuildsCommand::Show(a) => show(&store, &a.id, a.format),
        BuildsCommand::Logs(a) => logs(&store, a),
        BuildsCommand::Rm(a) => rm(&store, a),
    }
}

fn ls(store: &Store, format: Format) -> Result<u8> {
    let list = records::list(store).context("listing build records")?;
    if format == Format::Json {
        let all: Vec<serde_json::Value> = list.iter().map(BuildRecord::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(0);
    }
    let now = now_secs();
    let rows: Vec<[String; 8]> = list
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                ago(now - started_secs(r.started_ms)),
                r.context.clone(),
                r.dockerfile.clone(),
                r.target.clone().unwrap_or_else(|| "-".into()),
                r.result.as_str().to_string(),
                r.duration_ms.map_or_else(|| "-".into(), duration_ms),
                format!("{} run, {} cached", r.steps_run(), r.steps_cached()),
            ]
        })
        .collect();
    print_table(&["BUILD ID", "STARTED", "CONTEXT", "DOCKERFILE", "TARGET", "RESULT", "DURATION", "STEPS"], &rows);
    Ok(0)
}

fn show(store: &Store, id: &str, format: Format) -> Result<u8> {
    let r = records::find(store, id)?;
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&r.to_json())?);
        return Ok(0);
    }
    let started = started_secs(r.started_ms);
    let field = |name: &str, value: &str| println!("{:<12}{value}", format!("{name}:"));
    field("build", &r.id);
    field("started", &format!("{} ({})", crate::oci::time::rfc3339(started), ago(now_secs() - started)));
    field("context", &r.context);
    field("dockerfile", &r.dockerfile);
    field("target", r.target.as_deref().unwrap_or("(the last stage)"));
    field("platform", &r.platform);
    field("tags", &list_or_none(&r.tags));
    field("build args", &list_or_none(&r.build_args));
    let took = r.duration_ms.map(|d| format!(" after {}", duration_ms(d))).unwrap_or_default();
    field("result", &format!("{}{took}", r.result.as_str()));
    if let Some(image) = &r.image {
        field("image", &image.to_string());
    }
    if let Some(e) = &r.error {
        let at = match (e.line, e.column) {
            (Some(line), Some(column)) => format!("{}:{line}:{column}: ", r.dockerfile),
            _ => String::new(),
        };
        field("error", &format!("{at}{}", e.message));
    }
    field("steps", &format!("{} run, {} cached", r.steps_run(), r.steps_cached()));
    if !r.steps.is_empty() {
        println!();
        print_steps(&r);
    }
    Ok(0)
}

/// The steps' table, then what each failed step said and wrote last.
fn print_steps(r: &BuildRecord) {
    let rows: Vec<[String; 6]> = r
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            [
                (i + 1).to_string(),
                s.name.clone(),
                cache(s),
                s.duration_ms.map_or_else(|| "-".into(), duration_ms),
                s.bytes.map_or_else(|| "-".into(), size),
                result(s),
            ]
        })
        .collect();
    print_table(&["#", "STEP", "CACHE", "TIME", "LAYER", "RESULT"], &rows);
    for (i, s) in r.steps.iter().enumerate().filter(|(_, s)| s.result == StepResult::Failed) {
        println!();
        println!("step {} failed: {}", i + 1, s.error.as_deref().unwrap_or("no error recorded"));
        if !s.last_lines.is_empty() {
            println!("last output:");
            for line in &s.last_lines {
                println!("  {line}");
            }
        }
        if s.log.is_some() {
            println!("whole log: slipway builds logs {} {}", r.id, i + 1);
        }
    }
}

fn cache(s: &StepRecord) -> String {
    match &s.cache {
        None => "-".into(),
        Some(CacheStatus::Hit { .. }) => "cached".into(),
        Some(CacheStatus::Miss { reason }) => format!("miss: {reason}"),
    }
}

fn result(s: &StepRecord) -> String {
    match s.exit {
        Some(status) => format!("{}: {status}", s.result.as_str()),
        None => s.result.as_str().to_string(),
    }
}

/// Copies one step's log, or every step's with a `#N NAME` line before each, to stdout.
fn logs(store: &Store, args: &BuildsLogsArgs) -> Result<u8> {
    let r = records::find(store, &args.id)?;
    let mut out = std::io::stdout().lock();
    if let Some(number) = args.step {
        let number = number as usize;
        let Some(step) = r.steps.get(number - 1) else {
            bail!("build {} has no step {number} (it has {})", r.id, r.steps.len());
        };
        let Some(path) = r.log_path(store, number) else {
            bail!("step {number} ({}) has no log: {}", step.name, why_no_log(step));
        };
        copy_log(&path, &mut out)?;
        return Ok(0);
    }
    let mut any = false;
    for (i, step) in r.steps.iter().enumerate() {
        let Some(path) = r.log_path(store, i + 1) else { continue };
        writeln!(out, "#{} {}", i + 1, step.name)?;
        if copy_log(&path, &mut out)? {
            writeln!(out)?;
        }
        any = true;
    }
    out.flush()?;
    if !any {
        eprintln!("build {} has no step logs: no RUN step of it ran a process", r.id);
    }
    Ok(0)
}

fn why_no_log(step: &StepRecord) -> &'static str {
    match &step.cache {
        Some(CacheStatus::Hit { .. }) => "it was taken from the cache and ran nothing",
        _ if step.name.contains("] RUN ") => "it stopped before its process started",
        _ => "only RUN steps run a process",
    }
}

/// Copies a log file whole; returns whether its last line lacks a line ending.
fn copy_log(path: &std::path::Path, out: &mut impl Write) -> Result<bool> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening the step log {}", path.display()))?;
    let len = std::io::copy(&mut file, out).with_context(|| format!("reading the step log {}", path.display()))?;
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(len - 1))?;
    std::io::Read::read_exact(&mut file, &mut last)?;
    Ok(last[0] != b'\n')
}

fn rm(store: &Store, args: &BuildsRmArgs) -> Result<u8> {
    if args.all {
        let report = records::remove_all(store).context("removing build records")?;
        for id in &report.removed {
            println!("removed {id}");
        }
        for id in &report.running {
            println!("kept {id} (running)");
        }
        let plural = if report.removed.len() == 1 { "" } else { "s" };
        println!("total: {} build{plural} removed", report.removed.len());
        return Ok(0);
    }
    for given in &args.ids {
        let id = records::resolve(store, given)?;
        records::remove(store, &id)?;
        println!("removed {id}");
    }
    Ok(0)
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

fn started_secs(ms: u64) -> i64 {
    i64::try_from(ms / 1000).unwrap_or(i64::MAX)
}

fn now_secs() -> i64 {
    crate::image::timestamp(None)
}
