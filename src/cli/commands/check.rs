//! `slipway check`: reads the Dockerfile (and the context's `.dockerignore`), parses it,
//! lowers it to a build graph and runs the lint rules, then prints every error and finding
//! as text (`Dockerfile:LINE:COL: ...`, source line, caret) or JSON.
//!
//! Exit codes: 0 when the file is valid (warnings allowed), 1 on any parse or graph error,
//! or on findings when the file says `# check=error=true`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;

use crate::cli::EXIT_FAILURE;
use crate::cli::args::{CheckArgs, CheckFormat};
use crate::context::ignore::IgnoreFile;
use crate::dockerfile::{Ast, Dockerfile, lower, parse};
use crate::dockerfile::{Located, render_located};
use crate::graph::lint::{CheckConfig, LintInput, lint};
use crate::graph::{BuildGraph, GraphOptions, build};

/// One line of the report: an error of the file or a lint finding.
struct Entry {
    /// `Some(rule)` for a finding, `None` for an error.
    rule: Option<&'static str>,
    /// `parse` or `graph` for errors.
    kind: &'static str,
    message: String,
    span: Option<crate::dockerfile::Span>,
    error: bool,
}

/// Runs the check; returns the exit code.
pub fn check(args: &CheckArgs) -> Result<u8> {
    let path = match &args.file {
        Some(f) => f.clone(),
        None => args.context.join("Dockerfile"),
    };
    let shown = path.strip_prefix(".").unwrap_or(&path).display().to_string();
    let bytes = std::fs::read(&path).with_context(|| format!("failed to read {}", path.display()))?;
    let src = String::from_utf8_lossy(&bytes).into_owned();
    let ignore = read_dockerignore(&path, &args.context)?;
    let build_args = super::build_args(&args.build_args);

    let mut entries = Vec::new();
    let mut ast: Option<Ast> = None;
    let mut dockerfile: Option<Dockerfile> = None;
    let mut graph: Option<BuildGraph> = None;
    match parse(&src) {
        Err(diagnostics) => {
            entries.extend(diagnostics.0.iter().map(|e| error_entry("parse", e.to_string(), Some(e.span()))))
        }
        Ok(parsed) => {
            match lower(&parsed) {
                Err(diagnostics) => {
                    entries.extend(diagnostics.0.iter().map(|e| error_entry("parse", e.to_string(), Some(e.span()))));
                }
                Ok(lowered) => {
                    let options = GraphOptions {
                        build_args: build_args.clone(),
                        target: args.target.clone(),
                        escape: parsed.escape,
                        ..GraphOptions::default()
                    };
                    match build(&lowered, &options) {
                        Err(errors) => {
                            entries.extend(errors.0.iter().map(|e| error_entry("graph", e.to_string(), e.span())));
                        }
                        Ok(g) => graph = Some(g),
                    }
                    dockerfile = Some(lowered);
                }
            }
            ast = Some(parsed);
        }
    }
    let mut gate = false;
    if let Some(ast) = &ast {
        let config = CheckConfig::from_ast(ast);
        let matcher = |p: &str| ignore.as_ref().is_some_and(|rules| rules.matches(p).is_some());
        let input = LintInput {
            ast,
            dockerfile: dockerfile.as_ref(),
            graph: graph.as_ref(),
            build_args: &build_args,
            ignored: if ignore.is_some() { Some(&matcher) } else { None },
        };
        for finding in lint(&input, &config) {
            gate |= config.error;
            entries.push(Entry {
                rule: Some(finding.rule.name()),
                kind: "lint",
                message: finding.message,
                span: Some(finding.span),
                error: config.error,
            });
        }
    }
    entries.sort_by_key(|e| e.span.map(|s| (s.start_line, s.column)));

    let failed = gate || entries.iter().any(|e| e.rule.is_none());
    match args.format {
        CheckFormat::Json => print_json(&entries)?,
        CheckFormat::Text => print_text(&shown, &src, &entries),
    }
    Ok(if failed { EXIT_FAILURE } else { 0 })
}

fn error_entry(kind: &'static str, message: String, span: Option<crate::dockerfile::Span>) -> Entry {
    Entry { rule: None, kind, message, span, error: true }
}

fn print_text(shown: &str, src: &str, entries: &[Entry]) {
    let items: Vec<Located> = entries
        .iter()
        .map(|e| {
            let severity = if e.error { "error" } else { "warning" };
            let message = match e.rule {
                Some(rule) => format!("{severity}[{rule}]: {}", e.message),
                None => format!("{severity}: {}", e.message),
            };
            Located { span: e.span, message }
        })
        .collect();
    print!("{}", render_located(shown, src, &items));
    let errors = entries.iter().filter(|e| e.error).count();
    let warnings = entries.len() - errors;
    if entries.is_empty() {
        println!("{shown}: no problems found");
    } else {
        println!("{shown}: {errors} error(s), {warnings} warning(s)");
    }
}

fn print_json(entries: &[Entry]) -> Result<()> {
    let items: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let mut v = json!({
                "message": e.message,
                "line": e.span.map(|s| s.start_line),
                "column": e.span.map(|s| s.column),
                "severity": if e.error { "error" } else { "warning" },
            });
            match e.rule {
                Some(rule) => v["rule"] = json!(rule),
                None => v["error"] = json!(e.kind),
            }
            v
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&items)?);
    Ok(())
}

/// `KEY=VALUE` as given, `KEY` alone from the environment (skipped when unset).
/// The ignore file that applies: `<Dockerfile>.dockerignore` beside the Dockerfile, else
/// `.dockerignore` at the context root (BuildKit's precedence).
fn read_dockerignore(dockerfile: &Path, context: &Path) -> Result<Option<IgnoreFile>> {
    let mut beside = dockerfile.as_os_str().to_owned();
    beside.push(".dockerignore");
    for path in [PathBuf::from(beside), context.join(".dockerignore")] {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let name = path.display().to_string();
                return Ok(Some(IgnoreFile::parse(&name, &text)?));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
        }
    }
    Ok(None)
}
