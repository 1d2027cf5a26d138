//! `slipway check`: reads the Dockerfile (and the context's `.dockerignore`), parses it,
//! lowers it to a build graph and runs the lint rules, then prints every error and finding
//! as text (`Dockerfile:LINE:COL: ...`, source line, caret) or JSON.
//!
//! Exit codes: 0 when the file is valid (warnings allowed), 1 on any parse or graph error,
//! or on findings when the file says `# check=error=true`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;

use crate::cli::EXIT_FAILURE;
use crate::cli::args::{CheckArgs, CheckFormat};
use crate::dockerfile::{Ast, Dockerfile, lower, parse};
use crate::graph::lint::{CheckConfig, LintInput, lint};
use crate::graph::render::{Located, render};
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
    let ignore = read_dockerignore(&args.context)?;
    let build_args = resolve_build_args(&args.build_args);

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
        let matcher = |p: &str| ignore.as_ref().is_some_and(|rules| rules.excludes(p));
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
    print!("{}", render(shown, src, &items));
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
fn resolve_build_args(args: &[(String, Option<String>)]) -> BTreeMap<String, String> {
    args.iter()
        .filter_map(|(k, v)| match v {
            Some(v) => Some((k.clone(), v.clone())),
            None => std::env::var(k).ok().map(|v| (k.clone(), v)),
        })
        .collect()
}

fn read_dockerignore(context: &Path) -> Result<Option<IgnoreRules>> {
    let path: PathBuf = context.join(".dockerignore");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(IgnoreRules::parse(&text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

/// A stop-gap `.dockerignore` matcher for the CopyIgnoredFile rule until `context::ignore`
/// lands in this branch: `*`, `?`, `**`, `!` exceptions, last match wins, a pattern matching
/// a parent directory excludes what is under it.
struct IgnoreRules {
    rules: Vec<(bool, Vec<String>)>,
}

impl IgnoreRules {
    fn parse(text: &str) -> IgnoreRules {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (negate, pattern) = match l.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, l),
                };
                (negate, clean(pattern))
            })
            .filter(|(_, p)| !p.is_empty())
            .collect();
        IgnoreRules { rules }
    }

    fn excludes(&self, path: &str) -> bool {
        let parts = clean(path);
        let mut excluded = false;
        for (negate, pattern) in &self.rules {
            let hit = (1..=parts.len()).any(|n| segments_match(pattern, &parts[..n]));
            if hit {
                excluded = !negate;
            }
        }
        excluded
    }
}

fn clean(path: &str) -> Vec<String> {
    path.split('/').filter(|s| !s.is_empty() && *s != ".").map(str::to_owned).collect()
}

fn segments_match(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|i| segments_match(rest, &path[i..])),
        Some((first, rest)) => match path.split_first() {
            Some((p, path_rest)) => glob(first.as_bytes(), p.as_bytes()) && segments_match(rest, path_rest),
            None => false,
        },
    }
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((b'\\', rest)) if !rest.is_empty() => text.first() == rest.first() && glob(&rest[1..], &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::IgnoreRules;

    #[test]
    fn dockerignore_stop_gap() {
        let rules = IgnoreRules::parse("# c\nnode_modules\n*.log\n**/secret*\n!keep.log\n");
        assert!(rules.excludes("node_modules/a/b"));
        assert!(rules.excludes("x.log"));
        assert!(!rules.excludes("keep.log"));
        assert!(rules.excludes("a/b/secret.txt"));
        assert!(!rules.excludes("src/main.rs"));
    }
}
