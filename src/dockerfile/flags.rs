//! Per-instruction flag tables and their validation (bool / string / repeatable flags,
//! unknown and duplicate flags, missing values), plus Go-style duration parsing for
//! `HEALTHCHECK`. Every flag error of a node is reported, not only the first.

use std::collections::HashMap;
use std::time::Duration;

use super::ast::Node;
use super::error::{ParseError, Span, suggest};

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--x`, `--x=true|false`.
    Bool,
    /// `--x=value`, once.
    String,
    /// `--x=value`, repeatable.
    Strings,
}

use FlagKind::{Bool, String as Str, Strings};

pub(crate) const FROM_FLAGS: &[(&str, FlagKind)] = &[("platform", Str)];
pub(crate) const COPY_FLAGS: &[(&str, FlagKind)] =
    &[("from", Str), ("chown", Str), ("chmod", Str), ("link", Bool), ("parents", Bool), ("exclude", Strings)];
pub(crate) const ADD_FLAGS: &[(&str, FlagKind)] = &[
    ("chown", Str),
    ("chmod", Str),
    ("link", Bool),
    ("keep-git-dir", Bool),
    ("checksum", Str),
    ("unpack", Bool),
    ("exclude", Strings),
];
pub(crate) const RUN_FLAGS: &[(&str, FlagKind)] =
    &[("mount", Strings), ("network", Str), ("security", Str), ("device", Strings)];
pub(crate) const HEALTHCHECK_FLAGS: &[(&str, FlagKind)] = &[
    ("interval", Str),
    ("timeout", Str),
    ("start-period", Str),
    ("start-interval", Str),
    ("retries", Str),
];
pub(crate) const NO_FLAGS: &[(&str, FlagKind)] = &[];

/// Validated flag values of one instruction.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: HashMap<&'static str, Vec<String>>,
}

impl Flags {
    /// A single-value flag's value.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last().cloned())
    }

    /// A repeatable flag's values, in order.
    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    /// A boolean flag: `None` when absent.
    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }
}

/// The span of a flag inside the node's first line, when it can be found there.
fn flag_span(node: &Node, name: &str) -> Span {
    let needle = format!("--{name}");
    match node.original.find(&needle) {
        Some(offset) => {
            let before = node.original[..offset].trim_start().chars().count();
            node.span.at_column(node.span.column + u32::try_from(before).unwrap_or(0))
        }
        None => node.span,
    }
}

/// Validates `node.flags` against `table`, pushing every problem to `errors`.
pub(crate) fn parse_flags(node: &Node, table: &[(&'static str, FlagKind)], errors: &mut Vec<ParseError>) -> Flags {
    let mut flags = Flags::default();
    for word in &node.flags {
        if word == "--" {
            break;
        }
        let body = word.strip_prefix("--").unwrap_or(word);
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let span = flag_span(node, name);
        let Some(&(key, kind)) = table.iter().find(|(n, _)| *n == name) else {
            let suggestion = suggest(name, table.iter().map(|(n, _)| *n));
            errors.push(ParseError::UnknownFlag { span, flag: name.to_string(), suggestion });
            continue;
        };
        let seen = flags.values.contains_key(key);
        if seen && kind != Strings {
            errors.push(ParseError::DuplicateFlag { span, flag: name.to_string() });
            continue;
        }
        let stored = match (kind, value) {
            (Bool, Some("")) => {
                errors.push(ParseError::FlagMissingValue { span, flag: name.to_string() });
                continue;
            }
            (Bool, None) => "true".to_string(),
            (Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                "true" => "true".to_string(),
                "false" => "false".to_string(),
                _ => {
                    errors.push(ParseError::FlagNotBool { span, flag: name.to_string(), value: v.to_string() });
                    continue;
                }
            },
            (Str | Strings, None) => {
                errors.push(ParseError::FlagMissingValue { span, flag: name.to_string() });
                continue;
            }
            (Str | Strings, Some(v)) => v.to_string(),
        };
        flags.values.entry(key).or_default().push(stored);
    }
    flags
}

/// Parses a Go duration (`1h2m3.5s`, `300ms`, `-1s`, `0`). Negative values come back as
/// `Err(true)` when well-formed (so callers can report "too short"), `Err(false)` when
/// malformed.
pub(crate) fn parse_go_duration(text: &str) -> Result<Duration, bool> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(false);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let frac_len = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            frac_part = &r[..frac_len];
            rest = &r[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(false);
        }
        let unit_len = rest.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(rest.len());
        let unit: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(false),
        };
        rest = &rest[unit_len..];
        let int: u128 = if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| false)? };
        let mut nanos = int.checked_mul(unit).ok_or(false)?;
        let mut scale = unit;
        for digit in frac_part.chars().take(18) {
            scale /= 10;
            nanos += u128::from(digit.to_digit(10).expect("ascii digit")) * scale;
        }
        total = total.checked_add(nanos).ok_or(false)?;
    }
    if total > i64::MAX as u128 {
        return Err(false);
    }
    if negative && total > 0 {
        return Err(true);
    }
    let nanos = u64::try_from(total).map_err(|_| false)?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parse;

    fn flag_errors(src: &str, table: &[(&'static str, FlagKind)]) -> Vec<String> {
        let node = parse(src).unwrap().nodes.remove(0);
        let mut errors = Vec::new();
        parse_flags(&node, table, &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn flag_rules() {
        assert!(flag_errors("COPY --link --link=false --exclude=a --exclude=b a b", COPY_FLAGS).len() == 1);
        assert_eq!(flag_errors("COPY --link= a b", COPY_FLAGS), vec!["missing a value on flag: --link"]);
        assert_eq!(flag_errors("COPY --from b c", COPY_FLAGS), vec!["missing a value on flag: --from"]);
        assert_eq!(flag_errors("COPY --FROM=x b c", COPY_FLAGS), vec!["unknown flag: --FROM (did you mean `from`?)"]);
        assert_eq!(flag_errors("COPY --link=yes a b", COPY_FLAGS), vec!["expecting boolean value for flag --link, not: yes"]);
        assert!(flag_errors("COPY --link=TRUE --chown=a:b a b", COPY_FLAGS).is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("1h2m3.5s"), Ok(Duration::from_millis(3_723_500)));
        assert_eq!(parse_go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("-1s"), Err(true));
        assert_eq!(parse_go_duration("5"), Err(false));
        assert_eq!(parse_go_duration("1x"), Err(false));
        assert_eq!(parse_go_duration(""), Err(false));
    }
}
