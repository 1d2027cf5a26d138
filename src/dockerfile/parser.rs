//! The line layer: turns Dockerfile text into an [`Ast`] of [`Node`]s, following BuildKit's
//! parser. Drives the lexer (directives, comments, continuations), splits the keyword and
//! the generic flags off each logical line, splits the arguments per instruction, and reads
//! heredoc bodies. Errors are collected for the whole file.
//!
//! Argument shapes, per keyword (quotes are kept everywhere):
//! - `run cmd entrypoint shell`: JSON array elements, else the whole rest as one string;
//! - `copy add volume`: JSON array elements, else split on whitespace;
//! - `from expose`: split on whitespace;
//! - `env label`: `key, value, sep` triples (`sep` is `=` or empty for the legacy form);
//! - `arg`: shell-like words;
//! - `healthcheck`: the type word, then the command as for `cmd`;
//! - `maintainer user workdir stopsignal`: the rest as one string;
//! - `onbuild`: no args, the trigger in `sub`; unknown keywords: one empty arg.

use super::ast::{Ast, Directive, Heredoc, Node, Warning, WarningKind};
use super::error::{Diagnostics, ParseError, Span};
use super::heredoc::heredocs_from_line;
use super::lexer::{self, DirectiveScanner, MAX_LINE};
use super::words::{extract_flags, is_sep, parse_words, split_sep};

/// Parses Dockerfile text into its line-level AST, or every error found.
pub fn parse(src: &str) -> Result<Ast, Diagnostics> {
    let lines = lexer::physical_lines(src);
    let mut p = Parser {
        lines: &lines,
        idx: 0,
        escape: '\\',
        directive_scanner: DirectiveScanner::default(),
        directives: Vec::new(),
        nodes: Vec::new(),
        warnings: Vec::new(),
        errors: Vec::new(),
        comments: Vec::new(),
    };
    p.run();
    if p.nodes.is_empty() && p.errors.is_empty() {
        let last = u32::try_from(lines.len()).unwrap_or(u32::MAX).max(1);
        p.errors.push(ParseError::NoInstructions { span: Span::new(last, last, 1) });
    }
    if !p.errors.is_empty() {
        return Err(Diagnostics(p.errors));
    }
    Ok(Ast { directives: p.directives, escape: p.escape, nodes: p.nodes, warnings: p.warnings })
}

struct Parser<'a> {
    lines: &'a [&'a str],
    /// Index of the next physical line to read.
    idx: usize,
    escape: char,
    directive_scanner: DirectiveScanner,
    directives: Vec<Directive>,
    nodes: Vec<Node>,
    warnings: Vec<Warning>,
    errors: Vec<ParseError>,
    comments: Vec<String>,
}

fn line_no(idx: usize) -> u32 {
    u32::try_from(idx).unwrap_or(u32::MAX)
}

impl<'a> Parser<'a> {
    /// Reads the next physical line through directive detection and comment removal.
    /// Returns (raw line, processed text).
    fn next_processed(&mut self, strip_left: bool) -> (&'a str, &'a str) {
        let raw = self.lines[self.idx];
        self.idx += 1;
        let n = line_no(self.idx);
        if raw.len() > MAX_LINE {
            self.errors.push(ParseError::LineTooLong { span: Span::new(n, n, 1), len: raw.len() });
        }
        let mut token = lexer::trim_newline(raw);
        if strip_left {
            token = token.trim_start();
        }
        match self.directive_scanner.scan(token, n) {
            Ok(Some(found)) => {
                let span = Span::new(n, n, 1);
                if found.name == "escape" {
                    match found.value.as_str() {
                        "\\" => self.escape = '\\',
                        "`" => self.escape = '`',
                        _ => self.errors.push(ParseError::InvalidEscapeToken { span, token: found.value.clone() }),
                    }
                }
                self.directives.push(Directive { name: found.name, value: found.value, span });
            }
            Ok(None) => {}
            Err(e) => self.errors.push(e),
        }
        let processed = if token.starts_with('#') { "" } else { token };
        (raw, processed)
    }

    fn run(&mut self) {
        while self.idx < self.lines.len() {
            let raw = self.lines[self.idx];
            if lexer::is_comment(raw) {
                let text = lexer::trim_newline(raw).trim_start()[1..].trim();
                if text.is_empty() {
                    self.comments.clear();
                } else {
                    self.comments.push(text.to_string());
                }
            }
            let indent = lexer::trim_newline(raw).chars().take_while(|c| c.is_whitespace()).count();
            let (_, first) = self.next_processed(true);
            let start_line = line_no(self.idx);
            let trimmed = lexer::trim_continuation(first, self.escape);
            if trimmed.end && trimmed.text.is_empty() {
                continue;
            }
            self.directive_scanner.finish();
            let mut line = trimmed.text.to_string();
            let mut end = trimmed.end;
            let mut empty_continuation = false;
            while !end && self.idx < self.lines.len() {
                let (raw, processed) = self.next_processed(false);
                if lexer::is_comment(raw) {
                    continue;
                }
                if processed.trim_start().is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let t = lexer::trim_continuation(processed, self.escape);
                line.push_str(t.text);
                end = t.end;
            }
            let column = u32::try_from(indent + 1).unwrap_or(u32::MAX);
            let mut span = Span::new(start_line, line_no(self.idx), column);
            if empty_continuation {
                self.warnings.push(Warning { kind: WarningKind::EmptyContinuationLine { original: line.clone() }, span });
            }
            let comments = std::mem::take(&mut self.comments);
            let mut node = match node_from_line(&line, self.escape, span) {
                Ok(node) => node,
                Err(e) => {
                    self.errors.push(e);
                    continue;
                }
            };
            node.comments = comments;
            if can_contain_heredoc(&node) && line.contains("<<") {
                for mut doc in heredocs_from_line(&line) {
                    match self.read_heredoc_body(&doc) {
                        Some(content) => {
                            doc.content = content;
                            node.heredocs.push(doc);
                        }
                        None => {
                            span.end_line = line_no(self.idx);
                            self.errors.push(ParseError::UnterminatedHeredoc { span, name: doc.name });
                            return;
                        }
                    }
                }
                span.end_line = line_no(self.idx);
                node.span = span;
                if let Some(sub) = node.sub.as_mut() {
                    sub.span = span;
                }
            }
            self.nodes.push(node);
        }
    }

    /// Reads body lines up to the terminator; `None` at end of file.
    fn read_heredoc_body(&mut self, doc: &Heredoc) -> Option<String> {
        let mut content = String::new();
        while self.idx < self.lines.len() {
            let raw = self.lines[self.idx];
            self.idx += 1;
            let mut candidate = lexer::trim_newline(raw);
            if doc.chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == doc.name {
                return Some(content);
            }
            content.push_str(raw);
            content.push('\n');
        }
        None
    }
}

/// Heredocs are read for `RUN`, `COPY`, `ADD` (also as an `ONBUILD` trigger), never in
/// JSON form.
fn can_contain_heredoc(node: &Node) -> bool {
    let node = match (&node.cmd[..], &node.sub) {
        ("onbuild", Some(sub)) => sub,
        _ => node,
    };
    matches!(&node.cmd[..], "run" | "copy" | "add") && !node.json
}

/// Builds a node from a logical line: keyword, flags, then the per-keyword arguments.
pub(crate) fn node_from_line(line: &str, escape: char, span: Span) -> Result<Node, ParseError> {
    let trimmed = line.trim();
    let (keyword, rest) = match trimmed.find(is_sep) {
        Some(i) => (&trimmed[..i], trimmed[i..].trim_start_matches(is_sep)),
        None => (trimmed, ""),
    };
    let (rest, flags) = if rest.is_empty() { ("", Vec::new()) } else { extract_flags(rest, escape) };
    let rest = rest.trim();
    let cmd = keyword.to_lowercase();
    let mut node = Node {
        cmd,
        keyword: keyword.to_string(),
        flags,
        args: Vec::new(),
        json: false,
        heredocs: Vec::new(),
        sub: None,
        original: line.to_string(),
        comments: Vec::new(),
        span,
    };
    let column_of_rest = || {
        let offset = line.find(rest).unwrap_or(0);
        span.at_column(span.column + u32::try_from(line[..offset].trim_start().chars().count()).unwrap_or(0))
    };
    match &node.cmd[..] {
        "run" | "cmd" | "entrypoint" | "shell" => {
            (node.args, node.json) = maybe_json(rest).map_err(|()| ParseError::JsonNotStrings { span: column_of_rest() })?;
        }
        "copy" | "add" | "volume" => {
            (node.args, node.json) = maybe_json_to_list(rest).map_err(|()| ParseError::JsonNotStrings { span: column_of_rest() })?;
        }
        "from" | "expose" => node.args = whitespace_list(rest),
        "arg" => node.args = parse_words(rest, escape),
        "env" | "label" => node.args = name_vals(rest, &node.cmd, escape, column_of_rest())?,
        "maintainer" | "user" | "workdir" | "stopsignal" => {
            if !rest.is_empty() {
                node.args = vec![rest.to_string()];
            }
        }
        "healthcheck" => {
            let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
            if sep > 0 {
                let (args, json) = maybe_json(rest[sep..].trim_start())
                    .map_err(|()| ParseError::JsonNotStrings { span: column_of_rest() })?;
                node.args = std::iter::once(rest[..sep].to_string()).chain(args).collect();
                node.json = json;
            }
        }
        "onbuild" => {
            if !rest.is_empty() {
                node.sub = Some(Box::new(node_from_line(rest, escape, span)?));
            }
        }
        _ => node.args = vec![String::new()],
    }
    Ok(node)
}

/// A JSON array of strings: `Ok(Some(items))`; a valid array with a non-string element:
/// `Err(())`; anything else: `Ok(None)`.
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, ()> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(()),
        })
        .collect::<Result<Vec<_>, ()>>()
        .map(Some)
}

/// Exec form, or the whole rest as one shell-form string.
fn maybe_json(rest: &str) -> Result<(Vec<String>, bool), ()> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match parse_json(rest)? {
        Some(items) => (items, true),
        None => (vec![rest.to_string()], false),
    })
}

/// Exec form, or the rest split on whitespace.
fn maybe_json_to_list(rest: &str) -> Result<(Vec<String>, bool), ()> {
    Ok(match parse_json(rest)? {
        Some(items) => (items, true),
        None => (whitespace_list(rest), false),
    })
}

fn whitespace_list(rest: &str) -> Vec<String> {
    if rest.is_empty() { Vec::new() } else { split_sep(rest, 0) }
}

/// `ENV`/`LABEL` arguments as `key, value, sep` triples.
fn name_vals(rest: &str, cmd: &str, escape: char, span: Span) -> Result<Vec<String>, ParseError> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let parts = split_sep(rest, 2);
        if parts.len() < 2 {
            return Err(ParseError::MissingValue { span, keyword: cmd.to_uppercase() });
        }
        let mut parts = parts.into_iter();
        let key = parts.next().expect("two parts checked above");
        let value = parts.next().expect("two parts checked above");
        return Ok(vec![key, value, String::new()]);
    }
    let mut args = Vec::with_capacity(words.len() * 3);
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(ParseError::MissingEquals { span, word });
        };
        args.extend([key.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Node {
        let ast = parse(src).unwrap();
        ast.nodes.into_iter().last().unwrap()
    }

    #[test]
    fn json_fallbacks() {
        let n = one("CMD ['a','b']");
        assert_eq!((n.args, n.json), (vec!["['a','b']".to_string()], false));
        let n = one(r#"CMD ["a","b",]"#);
        assert!(!n.json);
        let n = one("CMD []");
        assert_eq!((n.args.len(), n.json), (0, true));
        let n = one(r#"COPY ["a b", "c"]"#);
        assert_eq!((n.args, n.json), (vec!["a b".to_string(), "c".to_string()], true));
        let n = one(r#"COPY ["a b" "c"]"#);
        assert_eq!(n.args, vec![r#"["a"#, r#"b""#, r#""c"]"#]);
        assert!(parse(r#"CMD ["a", 1]"#).is_err());
    }

    #[test]
    fn env_forms() {
        assert_eq!(one("ENV A b c").args, vec!["A", "b c", ""]);
        assert_eq!(one(r#"ENV A="x y" B= C=z\ w"#).args, vec!["A", r#""x y""#, "=", "B", "", "=", "C", r"z\ w", "="]);
        assert!(matches!(parse("ENV A").unwrap_err().0[0], ParseError::MissingValue { .. }));
        assert!(matches!(parse("ENV A=b C").unwrap_err().0[0], ParseError::MissingEquals { .. }));
    }

    #[test]
    fn continuation_and_comments() {
        let ast = parse("RUN a \\\n# c\n  b \\\n\n  c\nRUN d \\").unwrap();
        assert_eq!(ast.nodes[0].args, vec!["a   b   c"]);
        assert_eq!((ast.nodes[0].span.start_line, ast.nodes[0].span.end_line), (1, 5));
        assert_eq!(ast.warnings.len(), 1);
        assert_eq!(ast.nodes[1].args, vec!["d"]);
    }

    #[test]
    fn escape_directive_and_backtick() {
        let ast = parse("# escape=`\nFROM a\nRUN dir c:\\ `\n  x").unwrap();
        assert_eq!(ast.escape, '`');
        assert_eq!(ast.nodes[1].args, vec!["dir c:\\   x"]);
        let ast = parse("FROM a\n# escape=`\nRUN a `").unwrap();
        assert_eq!(ast.escape, '\\');
    }

    #[test]
    fn heredoc_bodies_and_lines() {
        let ast = parse("FROM a\nRUN <<-EOF cat\n\techo\n\tEOF\nRUN b").unwrap();
        let n = &ast.nodes[1];
        assert_eq!(n.heredocs[0].content, "\techo\n");
        assert_eq!(n.heredocs[0].chomped_content(), "echo\n");
        assert_eq!((n.span.start_line, n.span.end_line), (2, 4));
        assert_eq!(ast.nodes[2].span.start_line, 5);
        assert!(matches!(parse("FROM a\nRUN <<E\nx").unwrap_err().0[0], ParseError::UnterminatedHeredoc { .. }));
    }

    #[test]
    fn onbuild_nests() {
        let n = one("ONBUILD RUN --mount=type=cache,target=/x echo");
        let sub = n.sub.unwrap();
        assert_eq!((sub.cmd.as_str(), sub.flags.len(), sub.original.as_str()), ("run", 1, "RUN --mount=type=cache,target=/x echo"));
    }

    #[test]
    fn all_errors_collected() {
        let err = parse("FROM a\nENV A\nCMD [1]\nLABEL x").unwrap_err();
        let lines: Vec<u32> = err.0.iter().map(|e| e.span().start_line).collect();
        assert_eq!(lines, vec![2, 3, 4]);
    }

    #[test]
    fn no_instructions() {
        assert!(matches!(parse("").unwrap_err().0[0], ParseError::NoInstructions { .. }));
        assert!(matches!(parse("# a\n# b\n").unwrap_err().0[0], ParseError::NoInstructions { .. }));
    }
}
