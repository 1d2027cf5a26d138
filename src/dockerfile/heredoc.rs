//! Heredoc detection on a logical line: which words are `[fd]<<[-]WORD` delimiters, with
//! their name, fd, chomp and expand attributes. Bodies are read by the parser.

use super::ast::Heredoc;
use super::words::{heredoc_line_words, heredoc_name_words};

/// The heredocs announced on a logical line (bodies empty), in order. A line that does
/// not lex (unbalanced quote) announces none.
pub(crate) fn heredocs_from_line(line: &str) -> Vec<Heredoc> {
    let Some(words) = heredoc_line_words(line) else {
        return Vec::new();
    };
    let mut docs = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let mut word = words[i].clone();
        // `<< EOF`: an operator word on its own takes the next word as its delimiter.
        if is_bare_operator(&word) && i + 1 < words.len() {
            i += 1;
            word.push_str(&words[i]);
        }
        if let Some(doc) = parse_heredoc(&word) {
            docs.push(doc);
        }
        i += 1;
    }
    docs
}

/// `<<`, `<<-`, `3<<`: the operator without a delimiter.
fn is_bare_operator(word: &str) -> bool {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    rest == "<<" || rest == "<<-"
}

/// Parses one word as `[digits]<<[-]WORD` where WORD holds no `<` and lexes to one word.
pub fn parse_heredoc(word: &str) -> Option<Heredoc> {
    let digits_len = word.find(|c: char| !c.is_ascii_digit()).unwrap_or(word.len());
    let rest = word[digits_len..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let fd = word[..digits_len].parse::<u32>().unwrap_or(0);
    let plain = heredoc_name_words(rest, false)?;
    if plain.len() != 1 {
        return None;
    }
    let raw = heredoc_name_words(rest, true)?;
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    let expand = raw.len() == 1 && quotes(&plain[0]) == quotes(&raw[0]);
    Some(Heredoc { name: plain[0].clone(), fd, expand, chomp, content: String::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, u32, bool, bool)> {
        heredocs_from_line(line).into_iter().map(|h| (h.name, h.fd, h.expand, h.chomp)).collect()
    }

    #[test]
    fn detection() {
        assert_eq!(names("RUN cat <<A && cat <<-B"), vec![("A".into(), 0, true, false), ("B".into(), 0, true, true)]);
        assert_eq!(names("RUN 3<<FD3 cat"), vec![("FD3".into(), 3, true, false)]);
        assert_eq!(names("RUN <<'Q'"), vec![("Q".into(), 0, false, false)]);
        assert_eq!(names("RUN <<eo'f'"), vec![("eof".into(), 0, false, false)]);
        assert_eq!(names(r"RUN <<eo\'f"), vec![("eo'f".into(), 0, true, false)]);
        assert_eq!(names("RUN <<  SPACED"), vec![("SPACED".into(), 0, true, false)]);
        assert!(names("RUN echo <<<here").is_empty());
        assert!(names(r#"RUN echo "<<X""#).is_empty());
        assert!(names("RUN <<'EOF").is_empty());
    }

    #[test]
    fn shift_quirks() {
        assert_eq!(names("RUN echo 1<<2"), vec![("2".into(), 1, true, false)]);
        assert_eq!(names("RUN echo $((1 << 2))"), vec![("2))".into(), 0, true, false)]);
    }
}
