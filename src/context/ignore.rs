//! `.dockerignore`: which context paths the builder must not see, with moby's
//! `patternmatcher` language and precedence.
//!
//! # The file
//!
//! One pattern per line. A line whose first byte is `#` is a comment (a `#` after leading
//! spaces is part of a pattern, as in moby); a UTF-8 BOM on the first line is dropped; blank
//! lines are skipped; leading and trailing whitespace is trimmed. A leading `!` makes the
//! line an *exception* (whitespace after the `!` is trimmed too); a lone `!` is an error.
//! The pattern is then cleaned like Go's `filepath.Clean` (`a//b`, `a/./b`, `a/../b`, a
//! trailing `/`, a leading `./`) and a leading `/` is removed: patterns are always relative
//! to the context root. The pattern syntax is documented in the `pattern` submodule.
//!
//! # Matching
//!
//! A rule matches a path when its pattern matches the path *or any of its parent
//! directories* (moby's `MatchesOrParentMatches`), so a pattern naming a directory excludes
//! everything below it. The last rule that matches decides: an ordinary rule excludes, an
//! exception re-includes. Whether the path is a directory makes no difference: `foo/` is
//! cleaned to `foo` and also excludes a file named `foo`.
//!
//! # What the builder decides
//!
//! Docker always reads the Dockerfile and the ignore file themselves, even when a rule
//! excludes them; they are still excluded from what `COPY`/`ADD` see. This module only
//! answers "does a rule exclude this path"; [`find_ignore_file`] lists where the ignore file
//! is looked for.
//!
//! PURE: text in, answers out; reading the file and walking the tree belong to the caller.

mod pattern;

use thiserror::Error;

use self::pattern::Pattern;
pub use self::pattern::SyntaxError;

/// A parsed ignore file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreFile {
    rules: Vec<Rule>,
}

/// One pattern line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The ignore file the rule came from.
    pub file: String,
    /// Its 1-based line.
    pub line: usize,
    /// The pattern after trimming and cleaning, without the `!`.
    pub pattern: String,
    /// `!pattern`: re-includes what it matches.
    pub exception: bool,
    /// The line as written, without surrounding whitespace.
    pub text: String,
    compiled: Pattern,
}

/// What the rules decide for one path ([`IgnoreFile::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// No rule excludes it.
    Included,
    /// The last rule matching it (or a parent directory) excludes it.
    Excluded(&'a Rule),
    /// `excluded_by` excluded it and the later exception `by` brought it back.
    Reincluded {
        /// The `!` line.
        by: &'a Rule,
        /// The last excluding rule before it that matches the path.
        excluded_by: &'a Rule,
    },
}

/// An ignore file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IgnoreError {
    /// A pattern with bad syntax.
    #[error("{file}:{line}: invalid pattern {pattern:?}: {reason}")]
    BadPattern {
        /// The ignore file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The pattern as cleaned.
        pattern: String,
        /// What is wrong with it.
        reason: SyntaxError,
    },
    /// A line that is only `!`.
    #[error("{file}:{line}: illegal exclusion pattern: \"!\"")]
    EmptyException {
        /// The ignore file.
        file: String,
        /// 1-based line.
        line: usize,
    },
}

impl IgnoreFile {
    /// Parses the text of an ignore file; `file_name` is kept in rules and errors.
    pub fn parse(file_name: &str, text: &str) -> Result<IgnoreFile, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if raw.starts_with('#') {
                continue;
            }
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let (exception, body) = match trimmed.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, trimmed),
            };
            if body.is_empty() {
                return Err(IgnoreError::EmptyException { file: file_name.to_owned(), line });
            }
            let cleaned = clean_path(body);
            let pattern = match cleaned.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => rest.to_owned(),
                _ => cleaned,
            };
            let compiled = match Pattern::compile(&pattern) {
                Ok(compiled) => compiled,
                Err(reason) => {
                    return Err(IgnoreError::BadPattern { file: file_name.to_owned(), line, pattern, reason });
                }
            };
            let text = trimmed.to_owned();
            rules.push(Rule { file: file_name.to_owned(), line, pattern, exception, text, compiled });
        }
        Ok(IgnoreFile { rules })
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether any rule is an exception (without one, an excluded directory can always be
    /// pruned).
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// The rule that excludes `rel_path` (relative to the context root, `/`-separated; it is
    /// cleaned first), or `None` when the path is included: no rule matches, or the last
    /// matching rule is an exception.
    pub fn matches(&self, rel_path: &str) -> Option<&Rule> {
        let path = clean_relative(rel_path);
        if path == "." {
            // The context root itself is never excluded (moby: "don't let them exclude everything").
            return None;
        }
        let last = self.rules.iter().rev().find(|r| r.compiled.matches_or_parent(&path))?;
        (!last.exception).then_some(last)
    }

    /// Why `rel_path` is or is not excluded: [`matches`](Self::matches) with the rules that
    /// decided. A path an exception re-includes names the exception and the last excluding
    /// rule before it; an exception that re-includes nothing (no earlier rule excluded the path)
    /// decides nothing.
    pub fn decide(&self, rel_path: &str) -> Decision<'_> {
        let path = clean_relative(rel_path);
        if path == "." {
            return Decision::Included;
        }
        let mut matching = self.rules.iter().enumerate().rev().filter(|(_, r)| r.compiled.matches_or_parent(&path));
        let Some((at, last)) = matching.next() else {
            return Decision::Included;
        };
        if !last.exception {
            return Decision::Excluded(last);
        }
        match self.rules[..at].iter().rev().find(|r| !r.exception && r.compiled.matches_or_parent(&path)) {
            Some(excluded_by) => Decision::Reincluded { by: last, excluded_by },
            None => Decision::Included,
        }
    }

    /// Whether the walker may skip directory `rel_dir` without looking inside: it is excluded,
    /// and no exception could re-include anything below it. Wildcards in exceptions are taken
    /// into account (moby only compares an exception's literal text with the directory, so it
    /// prunes `vendor` under `*` + `!**/*.go` and loses the re-included files: moby#30018).
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        let dir = clean_relative(rel_dir);
        self.matches(&dir).is_some() && !self.rules.iter().any(|r| r.exception && r.compiled.could_match_under(&dir))
    }
}

/// Where the ignore file for `dockerfile` (its path relative to the context root, as given
/// with `-f`) is looked for, best first: `<Dockerfile path>.dockerignore` beside it, then
/// `.dockerignore` at the context root. The first that exists is used; the others are not
/// merged.
pub fn find_ignore_file(dockerfile: &str) -> Vec<String> {
    let dockerfile = clean_relative(dockerfile);
    let mut candidates = Vec::new();
    if dockerfile != "." {
        candidates.push(format!("{dockerfile}.dockerignore"));
    }
    candidates.push(".dockerignore".to_owned());
    candidates
}

/// Cleans a context-relative path and removes a leading `/`.
fn clean_relative(path: &str) -> String {
    let cleaned = clean_path(path);
    match cleaned.strip_prefix('/') {
        Some("") => ".".to_owned(),
        Some(rest) => rest.to_owned(),
        None => cleaned,
    }
}

/// Go's `filepath.Clean` for `/`-separated paths: drops empty and `.` elements, resolves
/// `..` against the element before it (at the root, drops it), and gives `.` for nothing.
pub fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> IgnoreFile {
        IgnoreFile::parse(".dockerignore", text).expect("valid ignore file")
    }

    /// `(ignore file, path, excluded?)`: every row is checked, failures reported together.
    #[track_caller]
    fn check(cases: &[(&str, &str, bool)]) {
        let failures: Vec<String> = cases
            .iter()
            .filter(|(text, path, want)| ignore(text).matches(path).is_some() != *want)
            .map(|(text, path, want)| format!("{text:?} on {path:?}: want excluded={want}"))
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn clean_path_follows_go() {
        for (input, want) in [
            ("a//b", "a/b"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("a/", "a"),
            ("./a", "a"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("a/..", "."),
            ("/", "/"),
            ("", "."),
            ("a/b/../../..", ".."),
        ] {
            assert_eq!(clean_path(input), want, "clean {input:?}");
        }
    }

    #[test]
    fn comments_blanks_whitespace() {
        let f = ignore("\u{feff}# comment\n\n   \n  node_modules  \n\t*.log\n #not-a-comment\n");
        let patterns: Vec<&str> = f.rules().iter().map(|r| r.pattern.as_str()).collect();
        assert_eq!(patterns, ["node_modules", "*.log", "#not-a-comment"]);
        assert_eq!(f.rules()[0].line, 4);
        assert_eq!(f.rules()[2].line, 6);
        assert_eq!(f.rules()[0].file, ".dockerignore");
        let f = ignore("  !  ./docs//keep/  \n");
        assert_eq!((f.rules()[0].pattern.as_str(), f.rules()[0].text.as_str()), ("docs/keep", "!  ./docs//keep/"));
    }

    #[test]
    fn patterns_are_cleaned_and_made_relative() {
        let f = ignore("/abs\n./dot\na//b/\nc/./d\ne/../f\n!  /g/\n");
        let got: Vec<(&str, bool)> = f.rules().iter().map(|r| (r.pattern.as_str(), r.exception)).collect();
        assert_eq!(got, [("abs", false), ("dot", false), ("a/b", false), ("c/d", false), ("f", false), ("g", true)]);
        check(&[
            ("/abs", "abs", true),
            ("./dot", "dot/x", true),
            ("a//b/", "a/b", true),
            ("e/../f", "f", true),
            ("e/../f", "e/f", false),
            ("x", "./x", true),
            ("x", "/x", true),
        ]);
    }

    #[test]
    fn directories_exclude_everything_below() {
        check(&[
            ("build", "build", true),
            ("build", "build/out/a.o", true),
            ("build", "src/build", false),
            ("*/tmp", "a/tmp/x", true),
            ("*/tmp", "tmp/x", false),
            ("docs/", "docs/index.md", true),
            ("docs/", "docs", true),
        ]);
    }

    #[test]
    fn wildcards() {
        check(&[
            ("*.md", "README.md", true),
            ("*.md", "docs/README.md", false),
            ("**/*.md", "docs/a/README.md", true),
            ("**/*.md", "README.md", true),
            ("temp?", "temp1", true),
            ("temp?", "temp12", false),
            ("**", "any/thing", true),
            ("a/**/z", "a/z", true),
            ("a/**/z", "a/b/c/z", true),
            ("a/**", "a/b", true),
            ("a/**", "a", false),
            ("[a-c]*.txt", "b1.txt", true),
            ("[a-c]*.txt", "d1.txt", false),
            ("[^a-c]*.txt", "d1.txt", true),
            ("[!a]*", "!x", true),
            ("[!a]*", "bx", false),
            ("\\*.txt", "*.txt", true),
            ("\\*.txt", "a.txt", false),
            ("a.txt", "abtxt", false),
        ]);
    }

    #[test]
    fn exceptions_and_last_match_wins() {
        check(&[
            ("*.md\n!README.md", "README.md", false),
            ("*.md\n!README.md", "CHANGES.md", true),
            ("!README.md\n*.md", "README.md", true),
            ("docs\n!docs/keep", "docs/keep", false),
            ("docs\n!docs/keep", "docs/keep/deeper/file", false),
            ("docs\n!docs/keep", "docs/other", true),
            ("*\n!src\nsrc/gen", "src/gen/x.rs", true),
            ("*\n!src\nsrc/gen", "src/main.rs", false),
            ("*\n!src\nsrc/gen\n!src/gen/keep.rs", "src/gen/keep.rs", false),
        ]);
        let f = ignore("*.md\nREADME*\n");
        assert_eq!(f.matches("README.md").map(|r| r.line), Some(2), "the last matching rule is reported");
    }

    #[test]
    fn decisions_name_their_rules() {
        let f = ignore("docs\n**/*.log\n!docs/keep\n!**/important.log\ndocs/keep/secret\n!never\n");
        let lines = |d: Decision<'_>| match d {
            Decision::Included => (0, 0),
            Decision::Excluded(r) => (r.line, 0),
            Decision::Reincluded { by, excluded_by } => (by.line, excluded_by.line),
        };
        assert_eq!(lines(f.decide("src/main.rs")), (0, 0));
        assert_eq!(lines(f.decide("docs/a.md")), (1, 0));
        assert_eq!(lines(f.decide("docs/keep/a.md")), (3, 1));
        assert_eq!(lines(f.decide("docs/keep/x.log")), (3, 2), "the last excluding rule before the exception");
        assert_eq!(lines(f.decide("docs/keep/secret/k")), (5, 0));
        assert_eq!(lines(f.decide("a/b/important.log")), (4, 2));
        assert_eq!(lines(f.decide("never")), (0, 0), "an exception that brings nothing back decides nothing");
        assert_eq!(lines(f.decide(".")), (0, 0));
        for path in ["src/main.rs", "docs/a.md", "docs/keep/a.md", "docs/keep/secret/k", "x.log", "never"] {
            let excluded = matches!(f.decide(path), Decision::Excluded(_));
            assert_eq!(excluded, f.matches(path).is_some(), "{path}: decide agrees with matches");
        }
    }

    #[test]
    fn skipping_directories() {
        let f = ignore("node_modules\nbuild\n!build/keep.txt\n**/cache");
        assert!(f.can_skip_dir("node_modules"));
        assert!(f.can_skip_dir("a/cache"));
        assert!(!f.can_skip_dir("build"), "an exception below it");
        assert!(!f.can_skip_dir("src"), "not excluded");
        assert!(f.has_exceptions());
        let f = ignore("node_modules\n*/secret\n!*/secret/ok");
        assert!(!f.can_skip_dir("x/secret"), "a wildcard exception reaches inside");
        assert!(!f.can_skip_dir("node_modules"), "node_modules/secret/ok is re-included");
        let f = ignore("*\n!**/*.go");
        assert!(!f.can_skip_dir("vendor"), "**/ exceptions reach into every directory");
        let f = ignore("*\n!keep.txt");
        assert!(f.can_skip_dir("vendor"));
        assert!(!f.can_skip_dir("."), "the root is never excluded");
        assert!(ignore("*").matches(".").is_none());
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = IgnoreFile::parse("app.Dockerfile.dockerignore", "ok\n# c\nbad[\n").expect_err("bad pattern");
        assert_eq!(
            err,
            IgnoreError::BadPattern {
                file: "app.Dockerfile.dockerignore".into(),
                line: 3,
                pattern: "bad[".into(),
                reason: SyntaxError::UnterminatedClass,
            }
        );
        assert_eq!(
            err.to_string(),
            "app.Dockerfile.dockerignore:3: invalid pattern \"bad[\": unterminated character class"
        );
        let err = IgnoreFile::parse(".dockerignore", "a\n  !  \n").expect_err("lone !");
        assert_eq!(err, IgnoreError::EmptyException { file: ".dockerignore".into(), line: 2 });
        assert!(IgnoreFile::parse("f", "a\\").is_err());
        assert!(IgnoreFile::parse("f", "[]").is_err());
    }

    #[test]
    fn ignore_file_candidates() {
        assert_eq!(find_ignore_file("Dockerfile"), ["Dockerfile.dockerignore", ".dockerignore"]);
        assert_eq!(find_ignore_file("build/app.Dockerfile"), ["build/app.Dockerfile.dockerignore", ".dockerignore"]);
        assert_eq!(find_ignore_file("./build//app.Dockerfile"), ["build/app.Dockerfile.dockerignore", ".dockerignore"]);
    }
}
