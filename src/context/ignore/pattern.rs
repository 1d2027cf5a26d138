//! One `.dockerignore` pattern: its syntax check, its compiled form, and matching against a
//! clean, relative, `/`-separated path, with moby `patternmatcher`'s semantics.
//!
//! - `*` is any run of characters other than `/`, `?` one character other than `/`.
//! - `[...]` is a character class as Go's `filepath.Match` accepts it: `^` negates (`!` is
//!   an ordinary member), `a-z` ranges, `\` escapes; it may match `/`. An empty class, a
//!   class starting with `-` or `]`, or an unterminated one is a syntax error.
//! - `\x` is the literal `x`; a trailing `\` is a syntax error (as in `filepath.Match`).
//! - `**` matches any number of directories: `**/` (or `**` inside) is `(anything/)?`, a
//!   trailing `**` is anything at all.
//! - moby's shortcuts are kept, quirks included: a pattern without wildcards is compared
//!   exactly; `foo**` / `foo/**` become a plain prefix test; a pattern that starts with `**`
//!   and has no other wildcard becomes a plain *suffix* test: `**/foo` matches `foo` and
//!   `a/b/foo`, and (quirk) `**foo` matches `xfoo` and `a/xfoo`, which the `(.*/)?foo` it
//!   stands for would not.
//!
//! Deviations: moby turns the pattern into a Go regular expression, so `\d` inside a pattern
//! is a regex digit class there and a `*` inside `[...]` breaks the class; here `\d` is `d`
//! and classes hold exactly what `filepath.Match` would put in them.

use std::fmt;

/// Why a pattern is not valid (Go's `filepath.ErrBadPattern`, with the detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyntaxError {
    /// `[` without its `]`, or a class ending inside an escape.
    UnterminatedClass,
    /// `[]`, `[^]`, or a class member or range bound that is an unescaped `-` or `]`.
    BadClass,
    /// The pattern ends with `\`.
    TrailingEscape,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyntaxError::UnterminatedClass => "unterminated character class",
            SyntaxError::BadClass => "bad character class",
            SyntaxError::TrailingEscape => "trailing backslash",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`
    Any,
    /// `*`
    Star,
    /// `[...]`
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**/` or an inner `**`: nothing, or anything ending in `/`.
    AnyDirs,
    /// A trailing `**` after other wildcards: anything.
    AnyRest,
}

/// How moby matches a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Tokens(Vec<Token>),
}

/// moby's `matchType` while compiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Exact,
    Prefix,
    Suffix,
    Tokens,
}

/// A compiled pattern (without its `!`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    kind: Kind,
}

/// Parses the class after a `[` (Go `filepath.Match` rules). Returns the token and the chars
/// consumed, the closing `]` included.
fn parse_class(chars: &[char]) -> Result<(Token, usize), SyntaxError> {
    let mut i = 0;
    let negated = chars.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Ok((Token::Class { negated, ranges }, i + 1));
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (h, next) = class_char(chars, i + 1)?;
            hi = h;
            i = next;
        }
        ranges.push((lo, hi));
    }
}

/// One class member (Go's `getEsc`): not an unescaped `-` or `]`, and not the class's end.
fn class_char(chars: &[char], mut i: usize) -> Result<(char, usize), SyntaxError> {
    match chars.get(i) {
        None => return Err(SyntaxError::UnterminatedClass),
        Some('-' | ']') => return Err(SyntaxError::BadClass),
        Some('\\') => i += 1,
        Some(_) => {}
    }
    let Some(&c) = chars.get(i) else {
        return Err(SyntaxError::UnterminatedClass);
    };
    if i + 1 >= chars.len() {
        return Err(SyntaxError::UnterminatedClass);
    }
    Ok((c, i + 1))
}

impl Pattern {
    /// Compiles a cleaned pattern (no leading `!`).
    pub fn compile(pattern: &str) -> Result<Pattern, SyntaxError> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut how = How::Exact;
        let mut i = 0;
        while i < chars.len() {
            let first = i == 0;
            let ch = chars[i];
            i += 1;
            match ch {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i < chars.len() {
                        tokens.push(Token::AnyDirs);
                        how = How::Tokens;
                    } else if how == How::Exact {
                        how = How::Prefix;
                    } else {
                        tokens.push(Token::AnyRest);
                        how = How::Tokens;
                    }
                    if first {
                        how = How::Suffix;
                    }
                }
                '*' => {
                    tokens.push(Token::Star);
                    how = How::Tokens;
                }
                '?' => {
                    tokens.push(Token::Any);
                    how = How::Tokens;
                }
                '\\' => match chars.get(i) {
                    Some(&c) => {
                        i += 1;
                        tokens.push(Token::Literal(c));
                        how = How::Tokens;
                    }
                    None => return Err(SyntaxError::TrailingEscape),
                },
                '[' => {
                    let (class, used) = parse_class(&chars[i..])?;
                    i += used;
                    tokens.push(class);
                    how = How::Tokens;
                }
                c => tokens.push(Token::Literal(c)),
            }
        }
        let kind = match how {
            How::Tokens => Kind::Tokens(tokens),
            How::Suffix => Kind::Suffix(pattern.get(2..).unwrap_or_default().to_owned()),
            How::Exact => Kind::Exact(pattern.to_owned()),
            How::Prefix => Kind::Prefix(pattern.strip_suffix("**").unwrap_or(pattern).to_owned()),
        };
        Ok(Pattern { kind })
    }

    /// Whether the pattern matches `path` itself (moby's `Pattern.match`).
    pub fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact(p) => path == p,
            Kind::Prefix(p) => path.starts_with(p.as_str()),
            Kind::Suffix(s) => path.ends_with(s.as_str()) || s.strip_prefix('/').is_some_and(|rest| path == rest),
            Kind::Tokens(tokens) => {
                let text: Vec<char> = path.chars().collect();
                let mut failed = vec![false; (tokens.len() + 1) * (text.len() + 1)];
                full_match(tokens, &text, 0, 0, &mut failed)
            }
        }
    }

    /// Whether the pattern matches `path` or one of its parent directories (moby's
    /// `MatchesOrParentMatches` for one pattern).
    pub fn matches_or_parent(&self, path: &str) -> bool {
        self.matches(path) || path.match_indices('/').any(|(i, _)| self.matches(&path[..i]))
    }

    /// Whether the pattern could match some path strictly inside directory `dir`
    /// (conservative: `true` when unsure).
    pub fn could_match_under(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        match &self.kind {
            Kind::Exact(p) => p.starts_with(&prefix),
            Kind::Prefix(p) => p.starts_with(&prefix) || prefix.starts_with(p.as_str()),
            Kind::Suffix(_) => true,
            Kind::Tokens(tokens) => {
                let text: Vec<char> = prefix.chars().collect();
                prefix_alive(tokens, &text, 0, 0)
            }
        }
    }
}

fn token_eats(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(l) => *l == c,
        Token::Any => c != '/',
        Token::Class { negated, ranges } => ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated,
        Token::Star | Token::AnyDirs | Token::AnyRest => false,
    }
}

/// Whether `tokens[tok..]` matches `text[at..]` exactly. Failures are memoised per
/// (token, position), which keeps matching polynomial.
fn full_match(tokens: &[Token], text: &[char], tok: usize, at: usize, failed: &mut [bool]) -> bool {
    let slot = tok * (text.len() + 1) + at;
    if failed[slot] {
        return false;
    }
    let ok = match tokens.get(tok) {
        None => at == text.len(),
        Some(Token::Star) => {
            let run = text[at..].iter().take_while(|&&c| c != '/').count();
            (at..=at + run).any(|end| full_match(tokens, text, tok + 1, end, failed))
        }
        Some(Token::AnyRest) => true,
        Some(Token::AnyDirs) => {
            full_match(tokens, text, tok + 1, at, failed)
                || (at..text.len()).any(|j| text[j] == '/' && full_match(tokens, text, tok + 1, j + 1, failed))
        }
        Some(token) => {
            text.get(at).is_some_and(|&c| token_eats(token, c)) && full_match(tokens, text, tok + 1, at + 1, failed)
        }
    };
    if !ok {
        failed[slot] = true;
    }
    ok
}

/// Whether some prefix of the pattern consumes all of `text[at..]` (so a longer text starting
/// with `text` might match).
fn prefix_alive(tokens: &[Token], text: &[char], tok: usize, at: usize) -> bool {
    if at == text.len() {
        return true;
    }
    match tokens.get(tok) {
        None => false,
        Some(Token::AnyRest | Token::AnyDirs) => true,
        Some(Token::Star) => {
            let run = text[at..].iter().take_while(|&&c| c != '/').count();
            (at..=at + run).any(|end| prefix_alive(tokens, text, tok + 1, end))
        }
        Some(token) => token_eats(token, text[at]) && prefix_alive(tokens, text, tok + 1, at + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Pattern {
        Pattern::compile(text).expect("valid pattern")
    }

    #[test]
    fn kinds_follow_moby() {
        assert_eq!(p("a/b").kind, Kind::Exact("a/b".into()));
        assert_eq!(p("a/**").kind, Kind::Prefix("a/".into()));
        assert_eq!(p("**/a").kind, Kind::Suffix("/a".into()));
        assert_eq!(p("**").kind, Kind::Suffix("".into()));
        assert!(matches!(p("**/*.go").kind, Kind::Tokens(_)));
        assert!(matches!(p("a\\b").kind, Kind::Tokens(_)));
        assert!(p("**foo").matches("a/xfoo"), "moby's suffix shortcut");
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "a", true),
            ("*", "a/b", false),
            ("*/b", "a/b", true),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("*.go", "main.go", true),
            ("*.go", "cmd/main.go", false),
            ("**/*.go", "main.go", true),
            ("**/*.go", "cmd/x/main.go", true),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/xb", false),
            ("a/**", "a/x/y", true),
            ("a/**", "a", false),
            ("**/foo", "foo", true),
            ("**/foo", "x/y/foo", true),
            ("**/foo", "x/yfoo", false),
            ("**", "anything/at/all", true),
            ("a*/**", "ab/c/d", true),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[^a-c]x", "dx", true),
            ("[^a-c]x", "ax", false),
            ("[!a]x", "!x", true),
            ("[!a]x", "bx", false),
            ("[\\]]", "]", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("a.b", "a.b", true),
            ("a.b", "axb", false),
            ("a+(b)|{c}$", "a+(b)|{c}$", true),
            ("한*", "한국", true),
        ];
        let failures: Vec<String> = cases
            .iter()
            .filter(|(pat, path, want)| p(pat).matches(path) != *want)
            .map(|(pat, path, want)| format!("{pat:?} vs {path:?}: want {want}"))
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(Pattern::compile("a["), Err(SyntaxError::UnterminatedClass));
        assert_eq!(Pattern::compile("[a"), Err(SyntaxError::UnterminatedClass));
        assert_eq!(Pattern::compile("[]"), Err(SyntaxError::BadClass));
        assert_eq!(Pattern::compile("[^]"), Err(SyntaxError::BadClass));
        assert_eq!(Pattern::compile("[-a]"), Err(SyntaxError::BadClass));
        assert_eq!(Pattern::compile("[a-]"), Err(SyntaxError::BadClass));
        assert_eq!(Pattern::compile("a\\"), Err(SyntaxError::TrailingEscape));
        assert!(Pattern::compile("[a-z][0-9]").is_ok());
    }

    #[test]
    fn parents() {
        assert!(p("a/b").matches_or_parent("a/b/c/d"));
        assert!(p("*/b").matches_or_parent("x/b/c"));
        assert!(!p("b").matches_or_parent("a/b/c"));
    }

    #[test]
    fn could_match_under() {
        assert!(p("a/b/keep").could_match_under("a"));
        assert!(p("a/b/keep").could_match_under("a/b"));
        assert!(!p("a/b/keep").could_match_under("a/c"));
        assert!(!p("a/b/keep").could_match_under("a/b/keep"));
        assert!(p("*/keep").could_match_under("x"));
        assert!(!p("*/keep").could_match_under("x/y"));
        assert!(p("**/keep").could_match_under("x/y"));
        assert!(p("a/**/k").could_match_under("a/b/c"));
        assert!(p("a/**").could_match_under("a/b"));
        assert!(!p("b/**").could_match_under("a"));
        assert!(p("[ab]/k").could_match_under("a"));
        assert!(!p("[ab]/k").could_match_under("c"));
    }
}
