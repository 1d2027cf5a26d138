//! The shell glob patterns of `${V#p}`, `${V%p}` and `${V/p/r}`, matched as BuildKit matches
//! them (it converts them to Go regular expressions; we match the glob directly).

use super::{EscapedChar, ExpandErrorKind as Kind};

/// The state of matching one pattern against one text. Whether the rest of the pattern from
/// a token matches at a position does not depend on where the match started, so failures are
/// remembered across start positions: matching is O(tokens × len²) at worst.
struct Search<'t> {
    text: &'t [char],
    greedy: bool,
    failed: Vec<bool>,
}

/// One element of a substitution pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`: any one character except a newline.
    Any,
    /// `*`: any run of characters without a newline.
    Star,
}

/// A shell glob from `${V#p}`, `${V%p}` or `${V/p/r}`, matched the way BuildKit's regular
/// expressions match it: leftmost, and among matches at one position the one a backtracking
/// matcher finds first (`*` as long as possible when greedy, as short as possible otherwise).
/// Like Go's `.`, `?` and `*` never match a newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    /// Parses a pattern whose escapes were kept: `\*`, `\?`, `\\` are literals, `\}` and `\/`
    /// are `}` and `/`, any other escape is an error.
    pub(super) fn parse(text: &str) -> Result<Pattern, Kind> {
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(ch) = chars.next() {
            let token = match ch {
                '*' => Token::Star,
                '?' => Token::Any,
                '\\' => match chars.peek() {
                    Some('}' | '/') => continue,
                    Some(&c @ ('*' | '?' | '\\')) => {
                        chars.next();
                        Token::Literal(c)
                    }
                    other => {
                        let escaped = EscapedChar(other.copied());
                        return Err(Kind::InvalidPattern { pattern: text.to_owned(), escaped });
                    }
                },
                c => Token::Literal(c),
            };
            // `**` matches what `*` matches, with the same preference; one star is enough.
            if !(token == Token::Star && tokens.last() == Some(&Token::Star)) {
                tokens.push(token);
            }
        }
        Ok(Pattern { tokens })
    }

    /// The end of the preferred match of the pattern starting at `start`, if any.
    fn match_at(&self, search: &mut Search<'_>, start: usize) -> Option<usize> {
        self.match_from(search, 0, start)
    }

    fn match_from(&self, search: &mut Search<'_>, token: usize, at: usize) -> Option<usize> {
        let slot = token * (search.text.len() + 1) + at;
        if search.failed[slot] {
            return None;
        }
        let text = search.text;
        let found = match self.tokens.get(token) {
            None => Some(at),
            Some(Token::Literal(c)) if text.get(at) == Some(c) => self.match_from(search, token + 1, at + 1),
            Some(Token::Any) if text.get(at).is_some_and(|&c| c != '\n') => self.match_from(search, token + 1, at + 1),
            Some(Token::Star) => {
                let run = text[at..].iter().take_while(|&&c| c != '\n').count();
                if search.greedy {
                    (at..=at + run).rev().find_map(|end| self.match_from(search, token + 1, end))
                } else {
                    (at..=at + run).find_map(|end| self.match_from(search, token + 1, end))
                }
            }
            Some(_) => None,
        };
        if found.is_none() {
            search.failed[slot] = true;
        }
        found
    }

    fn search<'t>(&self, text: &'t [char], greedy: bool) -> Search<'t> {
        Search { text, greedy, failed: vec![false; (self.tokens.len() + 1) * (text.len() + 1)] }
    }

    /// `${V#p}` / `${V##p}`: removes the preferred match anchored at the start.
    pub(super) fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        match self.match_at(&mut self.search(&chars, greedy), 0) {
            Some(end) => chars[end..].iter().collect(),
            None => value.to_owned(),
        }
    }

    /// `${V%p}` / `${V%%p}`: matches the reversed pattern against the reversed value, as
    /// BuildKit does, so "shortest" and "longest" count from the end.
    pub(super) fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let reversed = Pattern { tokens: self.tokens.iter().rev().copied().collect() };
        let chars: Vec<char> = value.chars().rev().collect();
        match reversed.match_at(&mut reversed.search(&chars, greedy), 0) {
            Some(end) => chars[end..].iter().rev().collect(),
            None => value.to_owned(),
        }
    }

    /// The leftmost preferred match at or after `from`.
    fn find(&self, search: &mut Search<'_>, from: usize) -> Option<(usize, usize)> {
        (from..=search.text.len()).find_map(|start| self.match_at(search, start).map(|end| (start, end)))
    }

    /// `${V/p/r}` / `${V//p/r}`, with greedy stars. Replace-all follows Go's
    /// `ReplaceAllString` stepping: after an empty match it moves on one character, and an
    /// empty match right after a previous match is not replaced. `None` when the result would
    /// pass `limit` bytes (a replacement inserted at each of many matches).
    pub(super) fn replace(&self, value: &str, replacement: &str, all: bool, limit: usize) -> Option<String> {
        let text: Vec<char> = value.chars().collect();
        let mut search = self.search(&text, true);
        if !all {
            return match self.find(&mut search, 0) {
                Some((start, end)) => {
                    let mut out: String = text[..start].iter().collect();
                    out.push_str(replacement);
                    out.extend(&text[end..]);
                    Some(out).filter(|o| o.len() <= limit)
                }
                None => Some(value.to_owned()),
            };
        }
        let mut out = String::new();
        let (mut last_end, mut from) = (0, 0);
        while from <= text.len() {
            let Some((start, end)) = self.find(&mut search, from) else {
                break;
            };
            out.extend(&text[last_end..start]);
            if end > last_end || start == 0 {
                out.push_str(replacement);
            }
            if out.len() > limit {
                return None;
            }
            last_end = end;
            from = if end > from { end } else { from + 1 };
        }
        out.extend(&text[last_end.min(text.len())..]);
        Some(out).filter(|o| o.len() <= limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Pattern {
        Pattern::parse(text).expect("valid pattern")
    }

    #[test]
    fn stars_prefer_long_when_greedy_and_short_otherwise() {
        assert_eq!(pattern("*/").trim_prefix("a/b/c", false), "b/c");
        assert_eq!(pattern("*/").trim_prefix("a/b/c", true), "c");
        assert_eq!(pattern("/*").trim_suffix("a/b/c", false), "a/b");
        assert_eq!(pattern("/*").trim_suffix("a/b/c", true), "a");
        assert_eq!(pattern("?").trim_prefix("한국", false), "국");
        assert_eq!(pattern("x").trim_prefix("abc", false), "abc");
    }

    #[test]
    fn wildcards_do_not_cross_newlines() {
        assert_eq!(pattern("*").trim_prefix("ab\ncd", true), "\ncd");
        assert_eq!(pattern("a?c").replace("a\nc abc", "X", true, usize::MAX).unwrap(), "a\nc X");
    }

    #[test]
    fn escapes() {
        assert_eq!(pattern("\\*").trim_prefix("*x", false), "x");
        assert_eq!(pattern("\\\\*").trim_prefix("\\x", false), "x");
        assert_eq!(pattern("\\}").trim_prefix("}x", false), "x");
        assert_eq!(pattern("\\/").trim_prefix("/x", false), "x");
        assert!(Pattern::parse("a\\").is_err());
        assert!(Pattern::parse("\\a").is_err());
    }

    #[test]
    fn replace_all_steps_like_go() {
        assert_eq!(pattern("").replace("ab", "-", true, usize::MAX).unwrap(), "-a-b-");
        assert_eq!(pattern("x*").replace("axxbx", "-", true, usize::MAX).unwrap(), "a-");
        assert_eq!(pattern("x").replace("axxbx", "-", true, usize::MAX).unwrap(), "a--b-");
        assert_eq!(pattern("?").replace("abc", "-", true, usize::MAX).unwrap(), "---");
        assert_eq!(pattern("b").replace("abcb", "-", false, usize::MAX).unwrap(), "a-cb");
        assert_eq!(pattern("b").replace("abcb", "-", true, 4), Some("a-c-".to_string()));
        assert_eq!(pattern("b").replace("abcb", "--", true, 5), None, "the bound stops a growing result");
    }
}
