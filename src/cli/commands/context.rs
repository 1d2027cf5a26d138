//! `slipway context`: the build context as `build` would see it — the same ignore file, the
//! same Dockerfile, the same stages for `--target` — listed in one walk of the directory
//! (`context::inventory`): every file with its size and status (used by a COPY, ADD or bind
//! mount, read by the builder, sent for nothing, excluded by a named ignore line), then the
//! largest directories, the instructions that read the context and the totals. Entries are
//! printed as the walk finds them, so a context of any size is listed in bounded memory.
//!
//! The table is for people; `--format json` is the versioned schema of `docs/context.md`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::build::{dockerfile_ignore, read_dockerfile, render_error};
use crate::cli::args::{ContextArgs, Format};
use crate::cli::{EXIT_FAILURE, units};
use crate::context::ignore::Rule;
use crate::context::{
    Context, DirSummary, Entry, EntryKind, Inventory, InventorySink, Reader, Selected, Status, Totals, inventory,
};
use crate::engine::BuildOptions;
use crate::graph::{Base, BuildGraph, ContextRead, Expansion, ReadKind, StepOrigin, Word};
use crate::oci::Platform;

/// Version of the JSON output (docs/context.md).
const JSON_VERSION: u32 = 1;

/// How many of the largest directories are shown.
const LARGEST: usize = 10;

/// One instruction reading the context, with what it selects.
struct Source<'g> {
    read: &'g ContextRead,
    /// `Dockerfile:LINE`.
    location: String,
    /// The stage's name or index.
    stage: String,
    /// What its resolved patterns select (nothing when its excludes are not resolved).
    items: Vec<Selected>,
    excludes: Vec<String>,
    /// Why the build would fail on it: a word that fails to expand, a source not found.
    error: Option<String>,
}

/// Lists the context; returns the exit code.
pub fn context(args: &ContextArgs) -> Result<u8> {
    let dir = &args.context;
    if dir.as_os_str() == "-" {
        bail!("slipway context reads a context directory, not a tar stream on stdin");
    }
    if !dir.is_dir() {
        bail!("context {} is not a directory", dir.display());
    }
    let ignore = dockerfile_ignore(args.file.as_deref(), false);
    let context =
        Context::open_dir(dir, ignore.as_ref()).with_context(|| format!("opening the context {}", dir.display()))?;
    let (text, name, _) = read_dockerfile(args.file.as_deref(), &context)?;
    let graph = match crate::engine::static_graph(&text, &options(args, &name)?) {
        Ok(graph) => graph,
        Err(e) => {
            eprint!("{}", render_error(&name, &text, &e));
            return Ok(EXIT_FAILURE);
        }
    };
    let reads = graph.context_reads();
    let sources: Vec<Source<'_>> = reads.iter().map(|r| select_read(&context, &graph, r, &name)).collect();
    let readers: Vec<Reader<'_>> = sources.iter().map(|s| Reader { items: &s.items, excludes: &s.excludes }).collect();
    let builder = builder_files(&context, args.file.as_deref(), &name);
    let report = Report { context: &context, dockerfile: &name, sources: &sources, notes: notes(&graph, &sources) };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        Format::Table => {
            report.table_head(&mut out)?;
            let labels: Vec<&str> = sources.iter().map(|s| s.location.as_str()).collect();
            let mut sink = TableSink { out: &mut out, labels: &labels };
            let inventory = inventory(&context, &readers, &builder, LARGEST, &mut sink)?;
            report.table_tail(&mut out, &inventory)?;
        }
        Format::Json => {
            report.json_head(&mut out)?;
            let mut sink = JsonSink { out: &mut out, first: true };
            let inventory = inventory(&context, &readers, &builder, LARGEST, &mut sink)?;
            report.json_tail(&mut out, &inventory)?;
        }
    }
    out.flush()?;
    Ok(0)
}

/// The build options `build` would use for what the Dockerfile reads.
fn options(args: &ContextArgs, name: &str) -> Result<BuildOptions> {
    let mut options = BuildOptions {
        build_args: super::build_args(&args.build_args),
        target: args.target.clone(),
        dockerfile_name: name.to_owned(),
        ..BuildOptions::default()
    };
    if let Some(p) = &args.platform {
        options.platform = p.parse::<Platform>()?;
    }
    Ok(options)
}

/// Selects what `read` reads, as the builder would: its resolved source patterns, with its
/// `--exclude` patterns.
fn select_read<'g>(context: &Context, graph: &BuildGraph, read: &'g ContextRead, name: &str) -> Source<'g> {
    let stage = graph.stage(read.stage).map_or_else(|| read.stage.to_string(), |s| s.display_name());
    let mut source = Source {
        read,
        location: format!("{name}:{}", read.span.start_line),
        stage,
        items: Vec::new(),
        excludes: Vec::new(),
        error: None,
    };
    let failed = read.sources.iter().chain(&read.excludes).find_map(|w| match &w.expansion {
        Expansion::Failed { message } => Some(message.clone()),
        _ => None,
    });
    if let Some(message) = failed {
        source.error = Some(message);
        return source;
    }
    let value = |w: &Word| match &w.expansion {
        Expansion::Value(v) => Some(v.clone()),
        _ => None,
    };
    let Some(excludes) = read.excludes.iter().map(value).collect::<Option<Vec<String>>>() else {
        return source;
    };
    let patterns: Vec<String> = read.sources.iter().filter_map(value).collect();
    if patterns.is_empty() {
        return source;
    }
    match crate::context::select(&context.source(), &patterns, &excludes) {
        Ok(selection) => source.items = selection.items,
        Err(e) => source.error = Some(chain(&e)),
    }
    source.excludes = excludes;
    source
}

/// An error and its causes, joined with `: `.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// The context paths the builder reads itself: the Dockerfile and the ignore file, when they
/// lie in the context.
fn builder_files(context: &Context, file: Option<&Path>, name: &str) -> Vec<String> {
    let inside = |path: &Path| {
        let real = std::fs::canonicalize(path).ok()?;
        let rel = real.strip_prefix(context.root()).ok()?;
        Some(rel.to_string_lossy().into_owned())
    };
    let mut files = Vec::new();
    match file {
        None => files.push(name.to_owned()),
        Some(f) if f.as_os_str() == "-" => {}
        Some(f) => files.extend(inside(f)),
    }
    files.extend(context.ignore_path().and_then(inside));
    files
}

/// What the listing cannot know, said after it.
fn notes(graph: &BuildGraph, sources: &[Source<'_>]) -> Vec<String> {
    let mut notes = Vec::new();
    let unresolved = sources.iter().filter(|s| !s.read.resolved()).count();
    if unresolved > 0 {
        let what = if unresolved == 1 { "source depends" } else { "sources depend" };
        notes.push(format!(
            "{unresolved} {what} on variables the base image may set: what only they select is listed as unused"
        ));
    }
    let from_image = graph.needed().iter().any(|id| graph.stage(*id).is_some_and(|s| matches!(s.base, Base::Image(_))));
    if from_image {
        notes.push("images are not read: ONBUILD triggers of base images are not counted".to_owned());
    }
    notes
}

/// What is printed around the entries.
struct Report<'a> {
    context: &'a Context,
    dockerfile: &'a str,
    sources: &'a [Source<'a>],
    notes: Vec<String>,
}

/// `FILE:LINE TEXT`: where the rule is and the line as written.
fn rule_text(rule: &Rule) -> String {
    format!("{}:{} {}", rule.file, rule.line, rule.text)
}

fn status_name(status: &Status<'_>) -> &'static str {
    match status {
        Status::Used(_) => "used",
        Status::Builder => "builder",
        Status::Unused => "unused",
        Status::Excluded(_) => "excluded",
    }
}

fn files(t: Totals) -> String {
    let noun = if t.files == 1 { "file" } else { "files" };
    format!("{} {noun}, {}", t.files, units::size(t.bytes))
}

/// Prints each entry as a table row: size, status, path, why.
struct TableSink<'o> {
    out: &'o mut dyn Write,
    /// Each reader's `Dockerfile:LINE`.
    labels: &'o [&'o str],
}

impl InventorySink for TableSink<'_> {
    fn entry(&mut self, e: &Entry<'_>) -> std::io::Result<()> {
        let slash = if e.kind == EntryKind::Dir { "/" } else { "" };
        let mut why = match e.status {
            Status::Used(by) => format!("by {}", by.iter().map(|&r| self.labels[r]).collect::<Vec<_>>().join(", ")),
            Status::Builder => "read by the builder".to_owned(),
            Status::Unused => String::new(),
            Status::Excluded(rule) => format!("by {}", rule_text(rule)),
        };
        if let Some(below) = e.below {
            let noun = if below.totals.files == 1 { "file" } else { "files" };
            let unreadable = if below.complete { "" } else { ", some unreadable" };
            why.push_str(&format!(" ({} {noun}{unreadable})", below.totals.files));
        }
        if let Some((by, over)) = e.reincluded {
            let sep = if why.is_empty() { "" } else { "; " };
            why.push_str(&format!("{sep}brought back by {} over {}", rule_text(by), rule_text(over)));
        }
        let line = format!("{:>8}  {:<8}  {}{slash}  {why}", units::size(e.size), status_name(&e.status), e.path);
        writeln!(self.out, "{}", line.trim_end())
    }
}

impl Report<'_> {
    fn table_head(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "context      {}", self.context.root().display())?;
        writeln!(out, "dockerfile   {}", self.dockerfile)?;
        match self.context.ignore_path() {
            Some(path) => {
                writeln!(out, "ignore file  {} ({} rules)", path.display(), self.context.ignore().rules().len())?
            }
            None => writeln!(out, "ignore file  none")?,
        }
        writeln!(out, "\n{:>8}  {:<8}  PATH", "SIZE", "STATUS")
    }

    fn table_tail(&self, out: &mut dyn Write, inv: &Inventory) -> std::io::Result<()> {
        if !inv.largest.is_empty() {
            writeln!(out, "\nLARGEST DIRECTORIES")?;
            writeln!(out, "{:>8}  {:>6}  {:>8}  {:>8}  {:>8}  PATH", "SIZE", "FILES", "SENT", "UNUSED", "EXCLUDED")?;
            for d in &inv.largest {
                let t = d.total();
                let sizes = [t.bytes, d.sent.bytes, d.unused.bytes, d.excluded.bytes].map(units::size);
                writeln!(
                    out,
                    "{:>8}  {:>6}  {:>8}  {:>8}  {:>8}  {}/",
                    sizes[0], t.files, sizes[1], sizes[2], sizes[3], d.path
                )?;
            }
        }
        self.table_sources(out, inv)?;
        let sent = inv.sent();
        writeln!(out, "\nsent      {}", files(sent))?;
        writeln!(out, "  used    {}", files(inv.used))?;
        writeln!(out, "  unused  {}", files(inv.unused))?;
        writeln!(out, "  builder {}", files(inv.builder))?;
        writeln!(out, "excluded  {}", files(inv.excluded))?;
        if !inv.complete {
            writeln!(out, "note: parts of excluded directories could not be read and are not counted")?;
        }
        for note in &self.notes {
            writeln!(out, "note: {note}")?;
        }
        Ok(())
    }

    fn table_sources(&self, out: &mut dyn Write, inv: &Inventory) -> std::io::Result<()> {
        if self.sources.is_empty() {
            return writeln!(out, "\nno instruction reads the context");
        }
        let rows: Vec<(String, String, String)> = self
            .sources
            .iter()
            .zip(&inv.per_reader)
            .map(|(s, t)| (s.location.clone(), instruction(s.read), selects(s, *t)))
            .collect();
        let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0).max("LOCATION".len());
        let w1 = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0).max("INSTRUCTION".len());
        writeln!(out, "\nREAD BY")?;
        writeln!(out, "{:<w0$}  {:<w1$}  SELECTS", "LOCATION", "INSTRUCTION")?;
        for (location, text, what) in rows {
            writeln!(out, "{location:<w0$}  {text:<w1$}  {what}")?;
        }
        Ok(())
    }
}

/// The instruction as the table shows it: its kind and source words (each with its value when
/// it had variables), its excludes.
fn instruction(read: &ContextRead) -> String {
    let word = |w: &Word, prefix: &str| match &w.expansion {
        Expansion::Value(v) if read.kind == ReadKind::BindMount && w.written.contains('$') => {
            format!("{prefix}{} (source {v})", w.written)
        }
        Expansion::Value(v) if v != &w.written && read.kind != ReadKind::BindMount => {
            format!("{prefix}{} ({v})", w.written)
        }
        _ => format!("{prefix}{}", w.written),
    };
    let mut parts = Vec::new();
    if let StepOrigin::Onbuild { .. } = read.origin {
        parts.push("ONBUILD".to_owned());
    }
    match read.kind {
        ReadKind::BindMount => parts.extend(read.sources.iter().map(|w| word(w, "RUN --mount="))),
        kind => {
            parts.push(kind.as_str().to_owned());
            parts.extend(read.excludes.iter().map(|w| word(w, "--exclude=")));
            parts.extend(read.sources.iter().map(|w| word(w, "")));
        }
    }
    parts.join(" ")
}

/// What a reader selects, for the table.
fn selects(source: &Source<'_>, totals: Totals) -> String {
    if let Some(error) = &source.error {
        return format!("error: {error}");
    }
    let unresolved: Vec<String> = source
        .read
        .sources
        .iter()
        .chain(&source.read.excludes)
        .filter_map(|w| match &w.expansion {
            Expansion::Unresolved { variables } => Some(variables.iter().map(|v| format!("${v}")).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut text = files(totals);
    if !unresolved.is_empty() {
        text.push_str(&format!(" (not resolved: {} may come from the base image)", unresolved.join(", ")));
    }
    text
}

/// Prints each entry as one line of the `entries` array.
struct JsonSink<'o> {
    out: &'o mut dyn Write,
    first: bool,
}

fn rule_json(rule: &Rule) -> Value {
    json!({
        "file": rule.file,
        "line": rule.line,
        "text": rule.text,
        "pattern": rule.pattern,
        "exception": rule.exception,
    })
}

fn totals_json(t: Totals) -> Value {
    json!({ "files": t.files, "bytes": t.bytes })
}

impl InventorySink for JsonSink<'_> {
    fn entry(&mut self, e: &Entry<'_>) -> std::io::Result<()> {
        let mut v = json!({
            "path": e.path,
            "type": e.kind.as_str(),
            "size": e.size,
            "status": status_name(&e.status),
        });
        match e.status {
            Status::Used(by) => v["used_by"] = json!(by),
            Status::Excluded(rule) => v["excluded_by"] = rule_json(rule),
            Status::Builder | Status::Unused => {}
        }
        if let Some(below) = e.below {
            v["files"] = json!(below.totals.files);
            v["complete"] = json!(below.complete);
        }
        if let Some((by, over)) = e.reincluded {
            v["reincluded_by"] = rule_json(by);
            v["reincluded_over"] = rule_json(over);
        }
        let sep = if self.first { "" } else { "," };
        self.first = false;
        write!(self.out, "{sep}\n    {v}")
    }
}

impl Report<'_> {
    fn json_head(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "{{")?;
        writeln!(out, "  \"version\": {JSON_VERSION},")?;
        writeln!(out, "  \"context\": {},", json!(self.context.root().display().to_string()))?;
        writeln!(out, "  \"dockerfile\": {},", json!(self.dockerfile))?;
        let ignore = self.context.ignore_path().map(|p| p.display().to_string());
        writeln!(out, "  \"ignore_file\": {},", json!(ignore))?;
        write!(out, "  \"entries\": [")
    }

    fn json_tail(&self, out: &mut dyn Write, inv: &Inventory) -> std::io::Result<()> {
        writeln!(out, "\n  ],")?;
        let largest: Vec<Value> = inv.largest.iter().map(dir_json).collect();
        let sources: Vec<Value> = self.sources.iter().zip(&inv.per_reader).map(|(s, t)| source_json(s, *t)).collect();
        let totals = json!({
            "sent": totals_json(inv.sent()),
            "used": totals_json(inv.used),
            "unused": totals_json(inv.unused),
            "builder": totals_json(inv.builder),
            "excluded": totals_json(inv.excluded),
        });
        let fields = [
            ("largest_directories", json!(largest)),
            ("sources", json!(sources)),
            ("totals", totals),
            ("complete", json!(inv.complete)),
            ("notes", json!(self.notes)),
        ];
        for (i, (key, value)) in fields.iter().enumerate() {
            let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?.replace('\n', "\n  ");
            let sep = if i + 1 == fields.len() { "" } else { "," };
            writeln!(out, "  {}: {text}{sep}", json!(key))?;
        }
        writeln!(out, "}}")
    }
}

fn dir_json(d: &DirSummary) -> Value {
    let t = d.total();
    json!({
        "path": d.path,
        "files": t.files,
        "bytes": t.bytes,
        "sent": totals_json(d.sent),
        "unused": totals_json(d.unused),
        "excluded": totals_json(d.excluded),
    })
}

fn word_json(w: &Word) -> Value {
    match &w.expansion {
        Expansion::Value(v) => json!({ "written": w.written, "value": v }),
        Expansion::Unresolved { variables } => json!({ "written": w.written, "value": null, "unresolved": variables }),
        Expansion::Failed { message } => json!({ "written": w.written, "value": null, "error": message }),
    }
}

fn source_json(s: &Source<'_>, totals: Totals) -> Value {
    let onbuild = match &s.read.origin {
        StepOrigin::Onbuild { trigger } => Some(trigger.as_str()),
        StepOrigin::Dockerfile => None,
    };
    json!({
        "line": s.read.span.start_line,
        "stage": s.stage,
        "instruction": s.read.kind.as_str(),
        "text": s.read.text,
        "onbuild": onbuild,
        "sources": s.read.sources.iter().map(word_json).collect::<Vec<_>>(),
        "excludes": s.read.excludes.iter().map(word_json).collect::<Vec<_>>(),
        "resolved": s.read.resolved(),
        "error": s.error,
        "selected": totals_json(totals),
    })
}
