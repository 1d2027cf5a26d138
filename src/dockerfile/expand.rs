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
//! Which instructions expand which parts is listed in [`super::args::expansion_rule`]; which
//! variables a line sees is [`super::args::ArgScope`].
//!
//! One word expands to at most [`MAX_EXPANDED`] bytes: chained variables double a value per
//! line (`ENV B1=$B0$B0`, `ENV B2=$B1$B1`, ...), so without a bound twenty lines of a Dockerfile
//! ask for gigabytes (catalogue A3). Past the bound the word fails with
//! [`ExpandErrorKind::TooLong`], which the builder reports at the word's line.
//!
//! PURE: no IO, no global state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

use thiserror::Error;

use self::pattern::Pattern;

mod pattern;

/// The most bytes one word may expand to (1 MiB): far beyond any real `ENV` or `LABEL` value,
/// small enough that a doubling chain fails before it costs memory (catalogue A3).
pub const MAX_EXPANDED: usize = 1 << 20;

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

/// An ordered `(name, value)` list, such as an image config's `Env` split at the first `=`:
/// the last entry for a name wins, as in BuildKit's `BuildEnvs`.
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
    /// The word grew past [`MAX_EXPANDED`] bytes.
    #[error("expansion exceeds {limit} bytes")]
    TooLong {
        /// The bound, [`MAX_EXPANDED`].
        limit: usize,
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
        // Literal characters add at most the word's own length; the check inside the lexer stops
        // expansions before they allocate, this one holds the bound exactly.
        match lexer.process_until(None, false) {
            Ok((value, _)) if value.len() > MAX_EXPANDED => {
                Err(ExpandError { word: word.to_owned(), kind: Kind::TooLong { limit: MAX_EXPANDED } })
            }
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
                    bounded(&result, &value)?;
                    result.push_str(&value);
                    words.add_string(&value);
                }
                '\'' | '"' => {
                    let value = if ch == '\'' { self.single_quoted()? } else { self.double_quoted()? };
                    bounded(&result, &value)?;
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
                    bounded(&result, &value)?;
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
        compiled.replace(&value, &replacement, replace_all, MAX_EXPANDED).ok_or(Kind::TooLong { limit: MAX_EXPANDED })
    }
}

/// Refuses appending `more` to `so_far` when the word would pass [`MAX_EXPANDED`] bytes.
fn bounded(so_far: &str, more: &str) -> Result<(), Kind> {
    if so_far.len().saturating_add(more.len()) > MAX_EXPANDED {
        return Err(Kind::TooLong { limit: MAX_EXPANDED });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[track_caller]
    fn check(word: &str, pairs: &[(&str, &str)], want: &str) {
        let env = env(pairs);
        let got = Expander::new('\\', &env).expand_word(word);
        assert_eq!(got.map(|e| e.value), Ok(want.to_owned()), "word {word:?}");
    }

    #[track_caller]
    fn check_err(word: &str, pairs: &[(&str, &str)]) -> ExpandErrorKind {
        let env = env(pairs);
        match Expander::new('\\', &env).expand_word(word) {
            Ok(e) => panic!("word {word:?}: want an error, got {:?}", e.value),
            Err(e) => e.kind,
        }
    }

    #[test]
    fn defaults_and_alternatives_tell_unset_from_empty() {
        let vars = [("FOO", "xxx"), ("BAR", "")];
        check("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", &vars, "xxx  ccc");
        check("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", &vars, "xxx bbb ccc");
        check("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", &vars, "aaa bbb ");
        check("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", &vars, "aaa  ");
        check("${FOO:-}", &vars, "xxx");
        check("${BAZ:-$FOO}", &vars, "xxx");
    }

    #[test]
    fn required_variables_carry_the_expanded_message() {
        let unset = [("ARG", "x")];
        let empty = [("VAR", ""), ("ARG", "x")];
        let set = [("VAR", "plain"), ("ARG", "x")];
        check("${VAR:?message here$ARG}", &set, "plain");
        check("${VAR?message here$ARG}", &set, "plain");
        check("${VAR?message here$ARG}", &empty, "");
        let want = ExpandErrorKind::Required { name: "VAR".into(), message: "message herex".into() };
        assert_eq!(check_err("${VAR:?message here$ARG}", &empty), want);
        assert_eq!(check_err("${VAR:?message here$ARG}", &unset), want);
        assert_eq!(check_err("${VAR?message here$ARG}", &unset), want);
        let want = ExpandErrorKind::Required { name: "VAR".into(), message: "is not allowed to be empty".into() };
        assert_eq!(check_err("${VAR:?}", &empty), want);
        let env = env(&unset);
        let err = Expander::new('\\', &env).expand_word("a${VAR?}").expect_err("VAR is unset");
        assert_eq!(err.to_string(), r#"failed to process "a${VAR?}": VAR: is not allowed to be unset"#);
    }

    #[test]
    fn prefix_and_suffix_removal() {
        let foo = [("FOO", "xxyy")];
        check("${FOO#*x*y}", &foo, "y");
        check("${FOO#*}", &foo, "xxyy");
        check("${FOO##*}", &foo, "");
        check("${FOO##*x}", &foo, "yy");
        check("${FOO#x}", &foo, "xyy");
        check("${FOO#}${FOO##}${FOO%}", &foo, "xxyyxxyyxxyy");
        check("${FOO%y*}", &foo, "xxy");
        check("${FOO%%y*}", &foo, "xx");
        check("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], "xyy");
        check("${FOO%%$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy");
        check("${ABC:-.}${FOO%x}${ABC:-.}", &foo, ".xxyy.");
        check("${FOO#?\\?}", &[("FOO", "???y")], "?y");
        check("${FOO%%\\**}", &[("FOO", "xx**")], "xx");
        check("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], "a");
        check(r"${FOO#()[]{\}^$.\*\?|\\}", &[("FOO", r"()[]{}^$.*?|\x")], "x");
        check("${FILE%.tar.gz}", &[("FILE", "app.tar.gz")], "app");
        check("${UNSET#x}", &[], "");
    }

    #[test]
    fn replacement() {
        let vars = [("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")];
        check("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", &vars, "/foo.*/*.txt - /foo..*.txt");
        let vars = [("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")];
        check("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", &vars, "/tmp/bar.txt - /bar.txt");
        let vars = [("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("R", "/")];
        check("${FOO/$NEEDLE/$R} - ${FOO//$NEEDLE/$R}", &vars, "/foo/b/c.txt - /foo/c.txt");
        check("${FOO//\\//\\/}", &[("FOO", "/tmp/foo.txt")], "\\/tmp\\/foo.txt");
        check("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], "wwxxyy");
        check("${FOO//$BAR/-}", &[("FOO", "ab"), ("BAR", "")], "-a-b-");
        check("${FOO///}", &[("FOO", "xxyy")], "xxyy");
        check("${FOO///}", &[], "");
        check("${FOO/x*/z}", &[("FOO", "axbxc")], "az");
        assert_eq!(check_err("${FOO//ww}", &[("FOO", "x")]), ExpandErrorKind::MissingSlash);
        assert_eq!(check_err("${FOO//}", &[("FOO", "x")]), ExpandErrorKind::MissingSlash);
    }

    #[test]
    fn a_word_may_not_expand_past_the_bound() {
        let half = "x".repeat(MAX_EXPANDED / 2);
        let vars = BTreeMap::from([("B".to_string(), half.clone()), ("X".to_string(), "x".to_string())]);
        let ex = Expander::new('\\', &vars);
        assert_eq!(ex.expand_word("$B$B").unwrap().value.len(), MAX_EXPANDED);
        let too_long = ExpandErrorKind::TooLong { limit: MAX_EXPANDED };
        for word in ["$B$B$X", "\"$B$B$X\"", "${B}${B}x", "$B$B'x'", "${B//x/xxx}"] {
            assert_eq!(ex.expand_word(word).err().map(|e| e.kind), Some(too_long.clone()), "{word}");
        }
        assert_eq!(ex.expand_words("$B $B").err().map(|e| e.kind), Some(too_long));
    }

    #[test]
    fn bad_patterns_and_modifiers_are_errors() {
        let foo = [("FOO", "x")];
        let err = check_err("${FOO#\\x}", &foo);
        assert_eq!(err, ExpandErrorKind::InvalidPattern { pattern: "\\x".into(), escaped: EscapedChar(Some('x')) });
        assert!(matches!(check_err("${FOO=aaa}", &foo), ExpandErrorKind::UnsupportedModifier { .. }));
        assert!(matches!(check_err("${FOO:=aaa}", &foo), ExpandErrorKind::UnsupportedModifier { .. }));
        assert_eq!(check_err("${FOO=}", &[]), ExpandErrorKind::UnsupportedModifier { modifier: "=".into() });
        assert_eq!(check_err("${}", &[]), ExpandErrorKind::BadSubstitution);
        assert_eq!(check_err("${FOO", &foo), ExpandErrorKind::MissingBrace);
        assert_eq!(check_err("${FOO:-'x}", &foo), ExpandErrorKind::MissingBrace);
        assert_eq!(check_err("'x", &foo), ExpandErrorKind::UnterminatedSingleQuote);
        assert_eq!(check_err("\"x", &foo), ExpandErrorKind::UnterminatedDoubleQuote);
    }

    #[test]
    fn used_records_set_and_unset_names() {
        let env = env(&[("FOO", "xxx"), ("BAR", "")]);
        let ex = Expander::new('\\', &env);
        let got = ex.expand_word("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc} '$QUOTED' \\$ESCAPED").expect("valid word");
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        assert_eq!(got.used, names(&["BAR", "BAZ", "FOO"]));
        assert_eq!(got.unset, names(&["BAZ"]));
        let got = ex.expand_word("x").expect("valid word");
        assert!(got.used.is_empty());
        let got = ex.expand_word("${A:+$B}${FOO#$C}").expect("valid word");
        assert_eq!(got.used, names(&["A", "B", "C", "FOO"]));
    }

    #[test]
    fn backtick_escape() {
        let env = env(&[("PWD", "/home")]);
        let ex = Expander::new('`', &env);
        let value = |w: &str| ex.expand_word(w).map(|e| e.value);
        assert_eq!(value(r"C:\dir\$PWD"), Ok(r"C:\dir\/home".to_owned()));
        assert_eq!(value("`$PWD"), Ok("$PWD".to_owned()));
        assert_eq!(value("\"a`\"b\""), Ok("a\"b".to_owned()));
        assert_eq!(value("\"a`xb\""), Ok("a`xb".to_owned()));
        assert_eq!(value("a` b"), Ok("a b".to_owned()));
    }

    #[test]
    fn word_splitting() {
        let env = env(&[("SPACE", "a  b"), ("EMPTY", "")]);
        let ex = Expander::new('\\', &env);
        let words = |w: &str| ex.expand_words(w).map(|e| e.words).expect("valid word");
        assert_eq!(words("80 $SPACE"), ["80", "a", "b"]);
        assert_eq!(words("\"$SPACE\" x"), ["a  b", "x"]);
        assert_eq!(words("a\\ b c"), ["a b", "c"]);
        assert_eq!(words("\"\" $EMPTY"), Vec::<String>::new());
        assert_eq!(words("${EMPTY:-\"x y\"}"), ["x", "y"]);
    }

    #[test]
    fn raw_quotes_and_skip_unset_modes() {
        let env = env(&[("A", "1")]);
        let ex = Expander::new('\\', &env).raw_quotes(true);
        assert_eq!(ex.expand_word("'$A' \"$A\"").map(|e| e.value), Ok("'$A' \"1\"".to_owned()));
        let ex = Expander::new('\\', &env).skip_unset(true);
        let got = ex.expand_word("$A $B ${B} ${B:-x} ${B/a/b}").expect("valid word");
        assert_eq!(got.value, "1 $B ${B} ${B:-x} ${B/a/b}");
        assert_eq!(got.unset.len(), 1);
    }

    #[test]
    fn patterns_stay_linear_enough_on_hostile_input() {
        let long = "a".repeat(2000);
        let env = env(&[("V", long.as_str())]);
        let got = Expander::new('\\', &env).expand_word("${V#*a*a*a*a*a*a*a*b}").expect("valid word");
        assert_eq!(got.value.len(), 2000);
    }
}
