//! The one renderer of located messages for `slipway check`: parse errors, graph errors and
//! lint findings all print as `FILE:LINE:COL: message`, the source line and a caret, the
//! format of `dockerfile::Diagnostics::render` (which only takes parse errors). Pure string
//! building; knows nothing about where the messages come from.

use crate::dockerfile::Span;

/// One message to render; `span: None` prints `FILE: message` alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Where, if anywhere in the file.
    pub span: Option<Span>,
    /// The text after the location.
    pub message: String,
}

/// Renders `items` against `src` (the file's text) as `file_name:LINE:COL: message`, then the
/// source line and a caret under the column.
pub fn render(file_name: &str, src: &str, items: &[Located]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::{Diagnostics, ParseError, Suggestion};

    #[test]
    fn matches_the_parser_rendering() {
        let err = ParseError::UnknownInstruction {
            span: Span::new(2, 2, 2),
            keyword: "WORKDIT".into(),
            suggestion: Suggestion(Some("WORKDIR".into())),
        };
        let src = "FROM a\n\tWORKDIT /x\n";
        let ours = render("Dockerfile", src, &[Located { span: Some(err.span()), message: err.to_string() }]);
        assert_eq!(ours, Diagnostics(vec![err]).render("Dockerfile", src));
    }

    #[test]
    fn without_span() {
        let out = render("Dockerfile", "", &[Located { span: None, message: "no".into() }]);
        assert_eq!(out, "Dockerfile: no\n");
    }
}
