//! Word splitting used by the line parser: BuildKit's whitespace classes, quote-keeping
//! word splitting (`ENV`, `LABEL`, `ARG`), leading `--flag` extraction, and the small
//! shell-word lexer that finds heredoc delimiters. No expansion happens here.

/// BuildKit's separator class between words: space, `\t`, `\v`, `\f`, `\r`.
pub(crate) fn is_sep(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{0b}' | '\u{0c}' | '\r')
}

/// Splits on runs of [`is_sep`] (the text is expected trimmed), at most `limit` parts
/// (`0` = unlimited). Mirrors a regexp split on `[\t\v\f\r ]+`.
pub(crate) fn split_sep(text: &str, limit: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        if limit != 0 && parts.len() + 1 == limit {
            parts.push(rest.to_string());
            return parts;
        }
        match rest.find(is_sep) {
            Some(i) => {
                parts.push(rest[..i].to_string());
                rest = rest[i..].trim_start_matches(is_sep);
            }
            None => {
                parts.push(rest.to_string());
                return parts;
            }
        }
    }
}

/// Splits like a shell but keeps quotes and escape characters in the words: quotes group
/// words, the escape character protects the next character (not inside single quotes).
/// A trailing escape character is dropped.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            None => {
                if c.is_whitespace() {
                    if in_word && (blank_ok || !word.is_empty()) {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    in_word = false;
                    blank_ok = false;
                    continue;
                }
                in_word = true;
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    blank_ok = true;
                    word.push(c);
                } else if c == escape {
                    match chars.next() {
                        Some(n) => {
                            word.push(c);
                            word.push(n);
                        }
                        None => continue,
                    }
                } else {
                    word.push(c);
                }
            }
            Some(q) => {
                if c == q {
                    quote = None;
                    word.push(c);
                } else if c == escape && q != '\'' {
                    match chars.next() {
                        Some(n) => {
                            word.push(c);
                            word.push(n);
                        }
                        None => quote = None,
                    }
                } else {
                    word.push(c);
                }
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// Pulls the leading `--flag` words off `line`. Quotes are removed (a quoted part may hold
/// spaces) and the escape character protects the next character. A bare `--` ends the
/// flags and is dropped. Returns the rest of the line (untrimmed) and the flags.
pub(crate) fn extract_flags(line: &str, escape: char) -> (&str, Vec<String>) {
    let mut flags = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &line[pos..];
        let skipped = rest.len() - rest.trim_start().len();
        pos += skipped;
        let rest = &line[pos..];
        if rest.is_empty() {
            return ("", flags);
        }
        if !rest.starts_with("--") {
            return (rest, flags);
        }
        // Read one flag word.
        let mut word = String::new();
        let mut blank_ok = false;
        let mut quote: Option<char> = None;
        let mut iter = rest.char_indices();
        let mut end = rest.len();
        while let Some((i, c)) = iter.next() {
            match quote {
                None if c.is_whitespace() => {
                    end = i;
                    break;
                }
                None if c == '\'' || c == '"' => {
                    quote = Some(c);
                    blank_ok = true;
                }
                Some(q) if c == q => quote = None,
                _ if c == escape => {
                    if let Some((_, n)) = iter.next() {
                        word.push(n);
                    } else if quote.is_some() {
                        quote = None;
                    }
                }
                _ => word.push(c),
            }
        }
        pos += end;
        if word == "--" {
            return if end == rest.len() { ("", flags) } else { (&line[pos..], flags) };
        }
        if blank_ok || !word.is_empty() {
            flags.push(word);
        }
    }
}

/// Lexes a logical line into shell words the way heredoc detection needs them: quotes
/// and `\` escapes kept in the words. `None` when a quote is unbalanced.
pub(crate) fn heredoc_line_words(line: &str) -> Option<Vec<String>> {
    lex_shell(line, true, true)
}

/// Lexes a heredoc delimiter: `raw_quotes` keeps the quote characters.
pub(crate) fn heredoc_name_words(text: &str, raw_quotes: bool) -> Option<Vec<String>> {
    lex_shell(text, raw_quotes, false)
}

/// A minimal shell-word lexer with `\` as escape; `$` is literal here.
fn lex_shell(text: &str, raw_quotes: bool, raw_escapes: bool) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                in_word = true;
                if raw_escapes {
                    word.push('\\');
                }
                match chars.next() {
                    Some(n) => word.push(n),
                    None => break,
                }
            }
            '\'' => {
                in_word = true;
                if raw_quotes {
                    word.push('\'');
                }
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => word.push(n),
                        None => return None,
                    }
                }
                if raw_quotes {
                    word.push('\'');
                }
            }
            '"' => {
                in_word = true;
                if raw_quotes {
                    word.push('"');
                }
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '$' | '\\')) => {
                                if raw_escapes {
                                    word.push('\\');
                                }
                                word.push(n);
                            }
                            Some(n) => {
                                word.push('\\');
                                word.push(n);
                            }
                            None => return None,
                        },
                        Some(n) => word.push(n),
                        None => return None,
                    }
                }
                if raw_quotes {
                    word.push('"');
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(parse_words(r#"a="b c" d\ e 'f\'"#, '\\'), vec![r#"a="b c""#, r"d\ e", r"'f\'"]);
        assert_eq!(parse_words(r#"A="" B"#, '\\'), vec![r#"A="""#, "B"]);
        assert_eq!(parse_words("x\\", '\\'), vec!["x"]);
    }

    #[test]
    fn flags_are_unquoted_and_stop_at_double_dash() {
        assert_eq!(extract_flags(r#"--chown="a b" --link src dst"#, '\\'), ("src dst", vec!["--chown=a b".into(), "--link".into()]));
        assert_eq!(extract_flags("--doit=true -- foo /tmp/", '\\'), (" foo /tmp/", vec!["--doit=true".into()]));
        assert_eq!(extract_flags("-- foo", '\\'), (" foo", vec![]));
        assert_eq!(extract_flags("--x", '\\'), ("", vec!["--x".into()]));
        assert_eq!(extract_flags("-x foo", '\\'), ("-x foo", vec![]));
    }

    #[test]
    fn split_sep_limits() {
        assert_eq!(split_sep("a  b\tc", 2), vec!["a", "b\tc"]);
        assert_eq!(split_sep("a  b\tc", 0), vec!["a", "b", "c"]);
    }

    #[test]
    fn shell_lexer_keeps_raw_text() {
        assert_eq!(heredoc_line_words(r#"RUN cat <<'A' "x y""#).unwrap(), vec!["RUN", "cat", "<<'A'", r#""x y""#]);
        assert_eq!(heredoc_line_words("RUN <<'EOF"), None);
        assert_eq!(heredoc_name_words("eo'f'", false).unwrap(), vec!["eof"]);
        assert_eq!(heredoc_name_words(r"eo\'f", true).unwrap(), vec!["eo'f"]);
    }
}
