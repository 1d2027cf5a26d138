//! Shell-word expansion of Dockerfile words, with BuildKit's semantics (its `shell.Lex`).
//!
//! One word of a Dockerfile instruction (a `COPY` source, an `ENV` value, a `FROM` image, ...)
//! goes through [`Expander::expand_word`] (one string) or [`Expander::expand_words`] (split
//! into words, e.g. for `EXPOSE`). Both process:
//!
//! - `$NAME` and `${NAME}`. A name is letters, digits and `_`; a leading run of digits (`$1`,
//!   `$001`) or one special character (`@ * # ? - $ ! 0`) is a name by itself and is never
//!   set in a Dockerfile. A `$` not followed by a name stays literal (`$.` is `$.`).
//! - The modifiers `${V:-w} ${V-w} ${V:+w} ${V+w} ${V:?m} ${V?m}` (with `:`, an empty value
//!   counts as unset), `${V#p} ${V##p} ${V%p} ${V%%p}` (shortest/longest prefix/suffix
//!   removal) and `${V/p/r} ${V//p/r}` (replace first/all). Patterns are shell globs with
//!   `*`, `?` and `\` escapes (no bracket expressions), as in BuildKit. The word inside a
//!   modifier is itself expanded. `${}`, `${:x}`, `${{x}` are bad substitutions, any other
//!   modifier (`${V:=w}`, `${V:x}`) is unsupported.
//! - Single quotes (literal, cannot be escaped), double quotes (`$` expands; the escape
//!   character escapes only `"`, `$` and itself, any other `\x` stays as written), and the
//!   escape character outside quotes (escapes any character; a trailing one is dropped).
//!   Unterminated quotes and braces are errors.
//! - Word splitting ([`Expander::expand_words`]): unquoted whitespace separates words,
//!   including whitespace that an unquoted expansion produced; quoted text never splits.
//!   Empty words are dropped (`""` alone gives no word), as in BuildKit.
//!
//! Every variable the word looked up is recorded in `used` (set or not) and, when unset, in
//! `unset` too: the build cache keys a step only on the ARG/ENV values it used, and unset
//! names feed the `UndefinedVar` warning.
//!
//! Two BuildKit modes are available as options: [`Expander::raw_quotes`] keeps the quote
//! characters in the result (used for `COPY`/`ADD` heredoc bodies) and
//! [`Expander::skip_unset`] leaves references to unset variables as written.
//!
//! Known deviations from BuildKit, all in corners no Dockerfile relies on:
//! - `${V//p/r}` inserts `r` literally; Go's `ReplaceAllString` would expand `$1`-style
//!   group references in it (the first-match form `${V/p/r}` is literal in both).
//! - A word ending inside `${NAME` reports a missing `}` (BuildKit: "unsupported modifier").
//! - Letters and digits in names are Unicode alphabetic/numeric chars (Go: categories L/Nd).
//!
//! Which instructions expand which parts is listed in [`super::args::expands`].
//!
//! PURE: no IO, no global state.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;

use thiserror::Error;

/// Where an expansion looks variables up. `None` means unset, `Some("")` set but empty.
pub trait Lookup {
    /// The value of `name`, or `None` when it is not set.
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Lookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl<S: BuildHasher> Lookup for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// A `NAME=value` list, as in an image config's `Env`: the last entry for a name wins, and an
/// entry without `=` sets the name to the empty string (BuildKit's `BuildEnvs`).
impl Lookup for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Expands words against one environment. Cheap to build; build one per instruction.
#[derive(Clone, Copy)]
pub struct Expander<'a> {
    escape: char,
    env: &'a dyn Lookup,
    raw_quotes: bool,
    skip_unset: bool,
}

/// A word expanded into one string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expanded {
    /// The expanded text, quotes and escapes removed.
    pub value: String,
    /// Every variable name the word looked up, set or unset.
    pub used: BTreeSet<String>,
    /// The looked-up names that were unset (a subset of `used`).
    pub unset: BTreeSet<String>,
}

/// A word expanded and split into words.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExpandedWords {
    /// The words, quotes and escapes removed; never an empty word.
    pub words: Vec<String>,
    /// Every variable name the word looked up, set or unset.
    pub used: BTreeSet<String>,
    /// The looked-up names that were unset (a subset of `used`).
    pub unset: BTreeSet<String>,
}

/// Expansion of one word failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("failed to process {word:?}: {kind}")]
pub struct ExpandError {
    /// The word as written.
    pub word: String,
    /// What went wrong.
    pub kind: ExpandErrorKind,
}

/// The ways a word can fail to expand.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExpandErrorKind {
    /// `'...` without its closing quote.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    /// `"...` without its closing quote.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// `${...` without its closing brace.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${V/pattern` without the `/` that ends the pattern.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${}`, `${:...}`, `${{...}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// A modifier other than the supported ones, e.g. `${V:=w}` or `${V.}`.
    #[error("unsupported modifier ({modifier}) in substitution")]
    UnsupportedModifier {
        /// The modifier as written (`:=`, `.`).
        modifier: String,
    },
    /// `${V?msg}` with `V` unset, or `${V:?msg}` with `V` unset or empty.
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The expanded message, or a default one when none was given.
        message: String,
    },
    /// A `#`, `%` or `/` pattern with a bad escape.
    #[error("invalid pattern ({pattern}) in substitution: invalid escape '\\{escaped}'")]
    InvalidPattern {
        /// The pattern after expansion, escapes kept.
        pattern: String,
        /// What followed the `\` (`None`: the pattern ended with it).
        escaped: EscapedChar,
    },
}

/// The character after a bad `\` in a pattern, printable even when the pattern ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscapedChar(pub Option<char>);

impl std::fmt::Display for EscapedChar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(c) => write!(f, "{c}"),
            None => f.write_str("<end>"),
        }
    }
}

impl<'a> Expander<'a> {
    /// An expander with `escape` as the escape character (`\`, or `` ` `` after an
    /// `# escape=`` ` `` directive) over `env`.
    pub fn new(escape: char, env: &'a dyn Lookup) -> Expander<'a> {
        Expander { escape, env, raw_quotes: false, skip_unset: false }
    }

    /// Keep quote characters in the result (BuildKit's `RawQuotes`).
    pub fn raw_quotes(mut self, on: bool) -> Expander<'a> {
        self.raw_quotes = on;
        self
    }

    /// Leave references to unset variables as written (BuildKit's `SkipUnsetEnv`).
    pub fn skip_unset(mut self, on: bool) -> Expander<'a> {
        self.skip_unset = on;
        self
    }

    /// Expands `word` into one string (BuildKit's `ProcessWord`).
    pub fn expand_word(&self, word: &str) -> Result<Expanded, ExpandError> {
        let (lexer, value, _) = self.run(word)?;
        Ok(Expanded { value, used: lexer.used, unset: lexer.unset })
    }

    /// Expands `word` and splits it into words (BuildKit's `ProcessWords`).
    pub fn expand_words(&self, word: &str) -> Result<ExpandedWords, ExpandError> {
        let (lexer, _, words) = self.run(word)?;
        Ok(ExpandedWords { words, used: lexer.used, unset: lexer.unset })
    }

    fn run(&self, word: &str) -> Result<(Lexer<'_, 'a>, String, Vec<String>), ExpandError> {
        let mut lexer = Lexer {
            ex: self,
            chars: word.chars().collect(),
            pos: 0,
            raw_escapes: false,
            used: BTreeSet::new(),
            unset: BTreeSet::new(),
        };
        match lexer.process_until(None, false) {
            Ok((value, words)) => Ok((lexer, value, words)),
            Err(kind) => Err(ExpandError { word: word.to_owned(), kind }),
        }
    }
}

/// Collects the split words as the lexer goes (BuildKit's `wordsStruct`).
#[derive(Default)]
struct WordSplitter {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl WordSplitter {
    /// A character that splits on whitespace (unquoted text, expansion results).
    fn add_char(&mut self, ch: char) {
        if !ch.is_whitespace() {
            self.add_raw_char(ch);
        } else if self.in_word && !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
            self.in_word = false;
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Lexer<'e, 'a> {
    ex: &'e Expander<'a>,
    chars: Vec<char>,
    pos: usize,
    /// Keep escape characters in the output (inside patterns and replacements).
    raw_escapes: bool,
    used: BTreeSet<String>,
    unset: BTreeSet<String>,
}

type Kind = ExpandErrorKind;

impl Lexer<'_, '_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += 1;
        Some(ch)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    /// Processes up to `stop` (consumed) or the end of the word when `stop` is `None`.
    fn process_until(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<(String, Vec<String>), Kind> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.process_until_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn process_until_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), Kind> {
        let mut result = String::new();
        let mut words = WordSplitter::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                    words.add_string(&value);
                }
                '\'' | '"' => {
                    let value = if ch == '\'' { self.single_quoted()? } else { self.double_quoted()? };
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                _ => {
                    self.pos += 1;
                    if ch != self.ex.escape {
                        words.add_char(ch);
                        result.push(ch);
                        continue;
                    }
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    // The escape character escapes anything; at the end of the word it is dropped.
                    let Some(escaped) = self.next() else { break };
                    words.add_raw_char(escaped);
                    result.push(escaped);
                }
            }
        }
        if stop.is_some() {
            // Only `}` and `/` are ever stop characters; callers turn this into their error.
            return Err(Kind::MissingBrace);
        }
        Ok((result, words.finish()))
    }

    fn single_quoted(&mut self) -> Result<String, Kind> {
        let mut result = String::new();
        let open = self.next();
        if self.ex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(Kind::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.ex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, Kind> {
        let mut result = String::new();
        let open = self.next();
        if self.ex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(Kind::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    if self.ex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.ex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // A trailing escape is dropped; the loop then reports the open quote.
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.ex.escape => {
                                self.pos += 1;
                                ch = next;
                            }
                            // Any other escaped character keeps its escape.
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// Reads a name: letters, digits and `_`, or a digit run, or one special parameter.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(d) = self.peek().filter(|c| c.is_numeric()) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !ch.is_alphabetic() && !ch.is_numeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        self.used.insert(name.to_owned());
        let value = self.ex.env.lookup(name).map(str::to_owned);
        if value.is_none() {
            self.unset.insert(name.to_owned());
        }
        value
    }

    /// A sub-word of `${...}` up to `stop`; an error at the end of the word becomes `at_end`.
    fn sub_word(&mut self, stop: char, raw_escapes: bool, at_end: Kind) -> Result<String, Kind> {
        match self.process_until(Some(stop), raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.at_end() => Err(at_end),
            Err(e) => Err(e),
        }
    }

    /// Expands the `$...` at the cursor.
    fn dollar(&mut self) -> Result<String, Kind> {
        self.pos += 1; // the `$`
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.get_env(&name) {
                Some(value) => value,
                None if self.ex.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1; // the `{`
        match self.peek() {
            None => return Err(Kind::MissingBrace),
            Some('{' | '}' | ':') => return Err(Kind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        match self.next() {
            None => Err(Kind::MissingBrace),
            Some('}') => Ok(match self.get_env(&name) {
                Some(value) => value,
                None if self.ex.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(first @ (':' | '+' | '-' | '?' | '#' | '%')) => self.modifier(&name, first),
            Some('/') => self.replace(&name),
            Some(other) => Err(Kind::UnsupportedModifier { modifier: other.to_string() }),
        }
    }

    /// `${name<first>...}` for the default, alternative, required and trim modifiers.
    fn modifier(&mut self, name: &str, first: char) -> Result<String, Kind> {
        let mut modifier = first.to_string();
        let mut op = Some(first);
        let null_is_unset = first == ':';
        if null_is_unset {
            op = self.next();
            modifier.extend(op);
        }
        let word = self.sub_word('}', matches!(op, Some('#' | '%')), Kind::MissingBrace)?;
        let value = self.get_env(name);
        let set = value.is_some();
        if self.ex.skip_unset && !set {
            return Ok(format!("${{{name}{modifier}{word}}}"));
        }
        let value = value.unwrap_or_default();
        let missing = !set || (null_is_unset && value.is_empty());
        match op {
            Some('-') => Ok(if missing { word } else { value }),
            Some('+') => Ok(if missing { String::new() } else { word }),
            Some('?') if !missing => Ok(value),
            Some('?') => {
                let message = match (word.is_empty(), set) {
                    (false, _) => word,
                    (true, true) => "is not allowed to be empty".to_owned(),
                    (true, false) => "is not allowed to be unset".to_owned(),
                };
                Err(Kind::Required { name: name.to_owned(), message })
            }
            Some(trim @ ('#' | '%')) => {
                // `#`/`%` remove the shortest match, `##`/`%%` the longest.
                let pattern_text = word.strip_prefix(trim);
                let greedy = pattern_text.is_some();
                let pattern = Pattern::parse(pattern_text.unwrap_or(&word))?;
                Ok(if trim == '#' { pattern.trim_prefix(&value, greedy) } else { pattern.trim_suffix(&value, greedy) })
            }
            _ => Err(Kind::UnsupportedModifier { modifier }),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn replace(&mut self, name: &str) -> Result<String, Kind> {
        let replace_all = self.peek() == Some('/');
        if replace_all {
            self.pos += 1;
        }
        let pattern = self.sub_word('/', true, Kind::MissingSlash)?;
        let replacement = self.sub_word('}', true, Kind::MissingBrace)?;
        let Some(value) = self.get_env(name).or_else(|| (!self.ex.skip_unset).then(String::new)) else {
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        };
        let compiled = Pattern::parse(&pattern)?;
        Ok(compiled.replace(&value, &replacement, replace_all))
    }
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
struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    /// Parses a pattern whose escapes were kept: `\*`, `\?`, `\\` are literals, `\}` and `\/`
    /// are `}` and `/`, any other escape is an error.
    fn parse(text: &str) -> Result<Pattern, Kind> {
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
    fn match_at(&self, text: &[char], start: usize, greedy: bool) -> Option<usize> {
        let mut failed = HashSet::new();
        self.match_from(0, text, start, greedy, &mut failed)
    }

    fn match_from(
        &self,
        token: usize,
        text: &[char],
        at: usize,
        greedy: bool,
        failed: &mut HashSet<(usize, usize)>,
    ) -> Option<usize> {
        if failed.contains(&(token, at)) {
            return None;
        }
        let found = match self.tokens.get(token) {
            None => Some(at),
            Some(Token::Literal(c)) if text.get(at) == Some(c) => self.match_from(token + 1, text, at + 1, greedy, failed),
            Some(Token::Any) if text.get(at).is_some_and(|&c| c != '\n') => {
                self.match_from(token + 1, text, at + 1, greedy, failed)
            }
            Some(Token::Star) => {
                let run = text[at..].iter().take_while(|&&c| c != '\n').count();
                let mut ends: Box<dyn Iterator<Item = usize>> =
                    if greedy { Box::new((at..=at + run).rev()) } else { Box::new(at..=at + run) };
                ends.find_map(|end| self.match_from(token + 1, text, end, greedy, failed))
            }
            Some(_) => None,
        };
        if found.is_none() {
            failed.insert((token, at));
        }
        found
    }

    /// `${V#p}` / `${V##p}`: removes the preferred match anchored at the start.
    fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        match self.match_at(&chars, 0, greedy) {
            Some(end) => chars[end..].iter().collect(),
            None => value.to_owned(),
        }
    }

    /// `${V%p}` / `${V%%p}`: matches the reversed pattern against the reversed value, as
    /// BuildKit does, so "shortest" and "longest" count from the end.
    fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let reversed = Pattern { tokens: self.tokens.iter().rev().copied().collect() };
        let chars: Vec<char> = value.chars().rev().collect();
        match reversed.match_at(&chars, 0, greedy) {
            Some(end) => chars[end..].iter().rev().collect(),
            None => value.to_owned(),
        }
    }

    /// The leftmost preferred match at or after `from`.
    fn find(&self, text: &[char], from: usize) -> Option<(usize, usize)> {
        (from..=text.len()).find_map(|start| self.match_at(text, start, true).map(|end| (start, end)))
    }

    /// `${V/p/r}` / `${V//p/r}`, with greedy stars. Replace-all follows Go's
    /// `ReplaceAllString` stepping: after an empty match it moves on one character, and an
    /// empty match right after a previous match is not replaced.
    fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let text: Vec<char> = value.chars().collect();
        if !all {
            return match self.find(&text, 0) {
                Some((start, end)) => {
                    let mut out: String = text[..start].iter().collect();
                    out.push_str(replacement);
                    out.extend(&text[end..]);
                    out
                }
                None => value.to_owned(),
            };
        }
        let mut out = String::new();
        let (mut last_end, mut search) = (0, 0);
        while search <= text.len() {
            let Some((start, end)) = self.find(&text, search) else { break };
            out.extend(&text[last_end..start]);
            if end > last_end || start == 0 {
                out.push_str(replacement);
            }
            last_end = end;
            search = if end > search { end } else { search + 1 };
        }
        out.extend(&text[last_end.min(text.len())..]);
        out
    }
}
