//! Dockerfile diagnostics: the one error type of the frontend, its source spans, the
//! collection of every error of a file ([`Diagnostics`]) and their rendering with the
//! offending source line and a caret. Knows nothing about how errors are found.

use std::fmt;

use thiserror::Error;

use super::mount::MountError;

/// Where a node or an error sits in the Dockerfile: 1-based lines (inclusive) and the
/// 1-based column (in characters) on `start_line`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// First line, 1-based.
    pub start_line: u32,
    /// Last line, 1-based, inclusive (heredoc bodies included).
    pub end_line: u32,
    /// Column on `start_line`, 1-based, counted in characters.
    pub column: u32,
}

impl Span {
    /// A span covering `start_line..=end_line`, pointing at `column`.
    pub fn new(start_line: u32, end_line: u32, column: u32) -> Span {
        Span { start_line, end_line, column }
    }

    /// The same lines, pointing at another column.
    pub fn at_column(self, column: u32) -> Span {
        Span { column, ..self }
    }
}

/// A "did you mean" hint; displays as nothing or as ` (did you mean `X`?)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Suggestion(pub Option<String>);

impl fmt::Display for Suggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(s) => write!(f, " (did you mean `{s}`?)"),
            None => Ok(()),
        }
    }
}

/// Everything that can be wrong with a Dockerfile, each with the span it was found at.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    // ---- line layer ----
    /// A physical line longer than BuildKit's scanner accepts.
    #[error("line is too long ({len} bytes, at most 65535)")]
    LineTooLong { span: Span, len: usize },
    /// The same parser directive twice.
    #[error("only one `{name}` parser directive can be used")]
    DuplicateDirective { span: Span, name: String },
    /// `# escape=` with something other than `\` or a backtick.
    #[error("invalid escape token `{token}`: must be ` or \\")]
    InvalidEscapeToken { span: Span, token: String },
    /// Empty file, or only comments and directives.
    #[error("file with no instructions")]
    NoInstructions { span: Span },
    /// A valid JSON array holding something other than strings.
    #[error("when using json array syntax, arrays must be comprised of strings only")]
    JsonNotStrings { span: Span },
    /// `ENV KEY` / `LABEL KEY` with no value in the legacy form.
    #[error("`{keyword}` must have two arguments")]
    MissingValue { span: Span, keyword: String },
    /// A word without `=` in the `key=value` form of `ENV` / `LABEL`.
    #[error("syntax error: can't find `=` in {word:?}, must be of the form name=value")]
    MissingEquals { span: Span, word: String },
    /// End of file before the heredoc terminator.
    #[error("unterminated heredoc `{name}`")]
    UnterminatedHeredoc { span: Span, name: String },

    // ---- instruction layer ----
    /// A keyword that is not one of the 18 instructions.
    #[error("unknown instruction: {keyword}{suggestion}")]
    UnknownInstruction { span: Span, keyword: String, suggestion: Suggestion },
    /// A flag the instruction does not take (names are case-sensitive).
    #[error("unknown flag: --{flag}{suggestion}")]
    UnknownFlag { span: Span, flag: String, suggestion: Suggestion },
    /// A single-value flag given twice.
    #[error("duplicate flag specified: --{flag}")]
    DuplicateFlag { span: Span, flag: String },
    /// `--flag` without `=value` where a value is needed, or `--bool=`.
    #[error("missing a value on flag: --{flag}")]
    FlagMissingValue { span: Span, flag: String },
    /// A boolean flag with a value other than true/false.
    #[error("expecting boolean value for flag --{flag}, not: {value}")]
    FlagNotBool { span: Span, flag: String, value: String },
    /// Too few arguments.
    #[error("`{keyword}` requires at least one argument")]
    AtLeastOneArgument { span: Span, keyword: &'static str },
    /// Not exactly one argument.
    #[error("`{keyword}` requires exactly one argument")]
    ExactlyOneArgument { span: Span, keyword: &'static str },
    /// `COPY`/`ADD` with a single word.
    #[error("`{keyword}` requires at least two arguments (sources and a destination), but only one was provided")]
    NoDestination { span: Span, keyword: &'static str },
    /// `COPY <<EOF` used as the destination.
    #[error("`{keyword}` cannot accept a heredoc as a destination")]
    HeredocDestination { span: Span, keyword: &'static str },
    /// `FROM` with 2 or more than 3 words, or 3 words without `AS`.
    #[error("`FROM` requires either one or three arguments (`FROM image [AS name]`)")]
    FromArguments { span: Span },
    /// A stage name outside `^[a-z][a-z0-9-_.]*$`.
    #[error("invalid name for build stage: {name:?}, name can't start with a number or contain symbols")]
    InvalidStageName { span: Span, name: String },
    /// Two stages with the same name.
    #[error("duplicate stage name {name:?}")]
    DuplicateStageName { span: Span, name: String },
    /// `ONBUILD ONBUILD`.
    #[error("chaining `ONBUILD` via `ONBUILD ONBUILD` isn't allowed")]
    ChainedOnbuild { span: Span },
    /// `ONBUILD FROM` / `ONBUILD MAINTAINER`.
    #[error("`{keyword}` isn't allowed as an `ONBUILD` trigger")]
    OnbuildTrigger { span: Span, keyword: String },
    /// `SHELL` in shell form.
    #[error("`{keyword}` requires the arguments to be in json form")]
    NotJson { span: Span, keyword: &'static str },
    /// An instruction other than `ARG` before the first `FROM`.
    #[error("no build stage in current context: `{keyword}` before the first `FROM` (only `ARG` may come first)")]
    NoBuildStage { span: Span, keyword: String },
    /// `ARG =x`, `ENV =x`, `LABEL =x`.
    #[error("`{keyword}` names can not be blank")]
    BlankName { span: Span, keyword: &'static str },
    /// `VOLUME ""`-like empty entry.
    #[error("`VOLUME` specified can not be an empty string")]
    EmptyVolume { span: Span },
    /// `HEALTHCHECK NONE x`.
    #[error("`HEALTHCHECK NONE` takes no arguments")]
    HealthcheckNoneArgs { span: Span },
    /// `HEALTHCHECK CMD` with nothing after it.
    #[error("missing command after `HEALTHCHECK CMD`")]
    HealthcheckMissingCommand { span: Span },
    /// `HEALTHCHECK FOO ...`.
    #[error("unknown type {kind:?} in `HEALTHCHECK` (try CMD)")]
    HealthcheckType { span: Span, kind: String },
    /// A Go-style duration that does not parse.
    #[error("invalid duration {value:?} for --{flag}")]
    InvalidDuration { span: Span, flag: &'static str, value: String },
    /// A duration under one millisecond (zero is allowed and means "default").
    #[error("interval --{flag} cannot be less than 1ms")]
    DurationTooShort { span: Span, flag: &'static str },
    /// `--retries` that is not an integer or is negative.
    #[error("invalid --retries value {value:?}: must be a non-negative integer")]
    InvalidRetries { span: Span, value: String },
    /// `RUN --network=` with an unknown mode.
    #[error("unsupported network mode {value:?}")]
    NetworkMode { span: Span, value: String },
    /// `RUN --security=` with an unknown mode.
    #[error("unsupported security mode {value:?}")]
    SecurityMode { span: Span, value: String },
    /// A `RUN --device` value that does not parse.
    #[error("invalid --device={value}: {reason}")]
    Device { span: Span, value: String, reason: MountError },
    /// A `RUN --mount` value that does not parse.
    #[error("invalid --mount={value}: {reason}")]
    Mount { span: Span, value: String, reason: MountError },
}

impl ParseError {
    /// Where the error was found.
    pub fn span(&self) -> Span {
        use ParseError::*;
        match self {
            LineTooLong { span, .. }
            | DuplicateDirective { span, .. }
            | InvalidEscapeToken { span, .. }
            | NoInstructions { span }
            | JsonNotStrings { span }
            | MissingValue { span, .. }
            | MissingEquals { span, .. }
            | UnterminatedHeredoc { span, .. }
            | UnknownInstruction { span, .. }
            | UnknownFlag { span, .. }
            | DuplicateFlag { span, .. }
            | FlagMissingValue { span, .. }
            | FlagNotBool { span, .. }
            | AtLeastOneArgument { span, .. }
            | ExactlyOneArgument { span, .. }
            | NoDestination { span, .. }
            | HeredocDestination { span, .. }
            | FromArguments { span }
            | InvalidStageName { span, .. }
            | DuplicateStageName { span, .. }
            | ChainedOnbuild { span }
            | OnbuildTrigger { span, .. }
            | NotJson { span, .. }
            | NoBuildStage { span, .. }
            | BlankName { span, .. }
            | EmptyVolume { span }
            | HealthcheckNoneArgs { span }
            | HealthcheckMissingCommand { span }
            | HealthcheckType { span, .. }
            | InvalidDuration { span, .. }
            | DurationTooShort { span, .. }
            | InvalidRetries { span, .. }
            | NetworkMode { span, .. }
            | SecurityMode { span, .. }
            | Device { span, .. }
            | Mount { span, .. } => *span,
        }
    }
}

/// Every error found in one Dockerfile, in source order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Error)]
#[error("{} error(s) in Dockerfile, first: {}", .0.len(), first_message(&.0))]
pub struct Diagnostics(pub Vec<ParseError>);

fn first_message(errors: &[ParseError]) -> String {
    errors.first().map(ToString::to_string).unwrap_or_default()
}

impl Diagnostics {
    /// The errors, in source order.
    pub fn errors(&self) -> &[ParseError] {
        &self.0
    }

    /// Whether no error was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Renders each error as `FILE:LINE:COL: message`, then the source line and a caret
    /// under the column.
    pub fn render(&self, file_name: &str, src: &str) -> String {
        let items: Vec<Located> =
            self.0.iter().map(|e| Located { span: Some(e.span()), message: e.to_string() }).collect();
        render_located(file_name, src, &items)
    }
}

/// One message to render; `span: None` prints `FILE: message` alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Where, if anywhere in the file.
    pub span: Option<Span>,
    /// The text after the location.
    pub message: String,
}

/// The one renderer of located messages (parse errors, graph errors, lint findings).
/// Renders `items` against `src` (the file's text) as `file_name:LINE:COL: message`, then the
/// source line and a caret under the column.
pub fn render_located(file_name: &str, src: &str, items: &[Located]) -> String {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let lines: Vec<&str> = src.split('\n').map(|l| l.trim_end_matches('\r')).collect();
    let mut out = String::new();
    for item in items {
        let Some(span) = item.span else {
            out.push_str(&format!("{file_name}: {}\n", item.message));
            continue;
        };
        out.push_str(&format!("{file_name}:{}:{}: {}\n", span.start_line, span.column, item.message));
        let Some(text) = (span.start_line as usize).checked_sub(1).and_then(|i| lines.get(i)) else {
            continue;
        };
        let number = span.start_line.to_string();
        let pad = " ".repeat(number.len());
        out.push_str(&format!("{number} | {text}\n"));
        // Keep tabs so the caret lines up with the source as displayed.
        let before: String = text
            .chars()
            .take(span.column.saturating_sub(1) as usize)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!("{pad} | {before}^\n"));
    }
    out
}

impl From<Vec<ParseError>> for Diagnostics {
    fn from(errors: Vec<ParseError>) -> Diagnostics {
        Diagnostics(errors)
    }
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to `word` (compared case-insensitively), if it is close enough to
/// be a plausible typo: at most two edits away, whatever its length, as BuildKit's
/// `util/suggest` (the first of equally close candidates). Callers pass words that are no
/// candidate, so a match that differs only in case (`--FROM`) is suggested too.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Suggestion {
    let lower = word.to_lowercase();
    let best = candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d);
    Suggestion(best.map(|(_, c)| c.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let kw = ["WORKDIR", "FROM", "RUN"];
        assert_eq!(suggest("WORKDIT", kw).0.as_deref(), Some("WORKDIR"));
        assert_eq!(suggest("form", kw).0.as_deref(), Some("FROM"));
        assert_eq!(suggest("FOOBAR", kw).0, None);
        // Two edits away from a short candidate still counts, as in BuildKit.
        assert_eq!(suggest("tmp", ["bind", "cache", "tmpfs"]).0.as_deref(), Some("tmpfs"));
    }

    #[test]
    fn render_lists_every_error() {
        let src = "FROM a\nCOPY --bogus x y\nWORKDIR\n";
        let out = crate::dockerfile::parse_dockerfile(src).unwrap_err().render("Dockerfile", src);
        assert_eq!(
            out,
            "Dockerfile:2:6: unknown flag: --bogus\n2 | COPY --bogus x y\n  |      ^\n\
             Dockerfile:3:1: `WORKDIR` requires exactly one argument\n3 | WORKDIR\n  | ^\n"
        );
    }

    #[test]
    fn render_points_at_column() {
        let d = Diagnostics(vec![ParseError::UnknownInstruction {
            span: Span::new(2, 2, 2),
            keyword: "WORKDIT".into(),
            suggestion: Suggestion(Some("WORKDIR".into())),
        }]);
        let out = d.render("Dockerfile", "FROM a\n\tWORKDIT /x\n");
        assert_eq!(
            out,
            "Dockerfile:2:2: unknown instruction: WORKDIT (did you mean `WORKDIR`?)\n2 | \tWORKDIT /x\n  | \t^\n"
        );
    }

    #[test]
    fn located_messages_without_a_span_print_the_file_alone() {
        let out = render_located("Dockerfile", "", &[Located { span: None, message: "no stages".into() }]);
        assert_eq!(out, "Dockerfile: no stages\n");
    }
}
