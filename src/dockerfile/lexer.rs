//! Physical-line handling: BOM and line endings, parser directives at the top of the file,
//! comment lines, and the escape-character continuation rule (with BuildKit's `\\` quirk).
//! Produces nothing itself; the parser drives it line by line.

use std::collections::HashSet;

use super::error::{ParseError, Span};

/// Longest physical line BuildKit's scanner accepts.
pub(crate) const MAX_LINE: usize = 65_535;

/// Splits the source into physical lines the way a line scanner does: on `\n`, with one
/// trailing `\r` removed and no empty last line after a final newline. A leading BOM is
/// dropped.
pub(crate) fn physical_lines(src: &str) -> Vec<&str> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    if src.is_empty() {
        return Vec::new();
    }
    let body = src.strip_suffix('\n').unwrap_or(src);
    body.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect()
}

/// Removes every trailing `\r` / `\n`.
pub(crate) fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// Whether the line, after indentation, starts with `#`.
pub(crate) fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

/// Result of the continuation check on one processed line.
pub(crate) struct Trimmed<'a> {
    /// The line with the continuation marker (and whitespace after it) removed.
    pub text: &'a str,
    /// Whether the logical line ends here.
    pub end: bool,
}

/// A line continues when it ends in the escape character (optionally followed by spaces
/// or tabs) that is not itself preceded by the escape character, or when it is only the
/// escape character. So `a\\` does not continue.
pub(crate) fn trim_continuation(line: &str, escape: char) -> Trimmed<'_> {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape) {
        if before.is_empty() || !before.ends_with(escape) {
            return Trimmed { text: before, end: false };
        }
    }
    Trimmed { text: line, end: true }
}

/// The known directive names.
const DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

/// Recognises `# name=value` directives until the first line that is not one.
#[derive(Default)]
pub(crate) struct DirectiveScanner {
    done: bool,
    lines_seen: u32,
    seen: HashSet<String>,
}

/// A directive found on a line.
pub(crate) struct FoundDirective {
    pub name: String,
    pub value: String,
}

impl DirectiveScanner {
    /// Feeds the next line (indentation already removed for first lines). Returns the
    /// directive on that line, if it is one; a repeated directive is an error.
    pub(crate) fn scan(&mut self, line: &str, line_no: u32) -> Result<Option<FoundDirective>, ParseError> {
        self.lines_seen += 1;
        if self.done {
            return Ok(None);
        }
        if self.lines_seen == 1 && line.starts_with("#!") {
            return Ok(None);
        }
        let Some((name, value)) = match_directive(line) else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        if !DIRECTIVES.contains(&name.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if !self.seen.insert(name.clone()) {
            return Err(ParseError::DuplicateDirective { span: Span::new(line_no, line_no, 1), name });
        }
        Ok(Some(FoundDirective { name, value: value.to_string() }))
    }

    /// Ends the directive block (an instruction was seen).
    pub(crate) fn finish(&mut self) {
        self.done = true;
    }
}

/// Matches `#[ \t]*NAME[ \t]*=[ \t]*VALUE[ \t]*` with NAME `[A-Za-z][A-Za-z0-9]*` and a
/// non-empty VALUE.
fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches([' ', '\t']);
    let name_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
    let name = &rest[..name_len];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let rest = rest[name_len..].trim_start_matches([' ', '\t']).strip_prefix('=')?;
    let value = rest.trim_matches([' ', '\t']);
    if value.is_empty() {
        return None;
    }
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rules() {
        let t = trim_continuation("RUN a \\", '\\');
        assert_eq!((t.text, t.end), ("RUN a ", false));
        let t = trim_continuation("RUN a \\ \t", '\\');
        assert_eq!((t.text, t.end), ("RUN a ", false));
        let t = trim_continuation("COPY a C:\\\\", '\\');
        assert!(t.end, "an escaped escape does not continue");
        let t = trim_continuation("x\\\\\\", '\\');
        assert!(t.end, "three escapes do not continue either");
        let t = trim_continuation("\\", '\\');
        assert_eq!((t.text, t.end), ("", false));
        let t = trim_continuation("RUN a `", '`');
        assert_eq!((t.text, t.end), ("RUN a ", false));
        assert!(trim_continuation("RUN a \\", '`').end);
    }

    #[test]
    fn lines_bom_crlf() {
        assert_eq!(physical_lines("\u{feff}FROM a\r\nRUN b\r\n"), vec!["FROM a", "RUN b"]);
        assert_eq!(physical_lines("a\n\nb"), vec!["a", "", "b"]);
        assert!(physical_lines("").is_empty());
    }

    #[test]
    fn directives() {
        let mut d = DirectiveScanner::default();
        let found = d.scan("# Escape = `", 1).unwrap().unwrap();
        assert_eq!((found.name.as_str(), found.value.as_str()), ("escape", "`"));
        assert!(d.scan("#escape=\\", 2).is_err());
        assert!(d.scan("# unknown=x", 3).unwrap().is_none());
        assert!(d.scan("# syntax=x", 4).unwrap().is_none(), "block ended by the unknown directive");
    }
}
