//! One path component of a `COPY`/`ADD` source pattern, matched as Go's `filepath.Match` does
//! (BuildKit resolves source wildcards with it, component by component).
//!
//! `*` is any run of characters, `?` one character, `[...]` a class (`^` negates, `a-z` ranges,
//! `\` escapes inside), `\x` the literal `x`. A malformed pattern matches nothing and is
//! reported by [`is_valid`]. PURE.

/// Whether `comp` holds a wildcard (`*`, `?`, `[`, or `\`, which Go also treats as special).
pub(super) fn has_magic(comp: &str) -> bool {
    comp.contains(['*', '?', '[', '\\'])
}

/// Whether `comp` is well formed (Go's `ErrBadPattern` otherwise).
pub(super) fn is_valid(comp: &str) -> bool {
    let p: Vec<char> = comp.chars().collect();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return false;
                }
                i += 2;
            }
            '[' => match parse_class(&p, i + 1) {
                Some((_, _, end)) => i = end,
                None => return false,
            },
            _ => i += 1,
        }
    }
    true
}

/// Whether the name `name` matches the pattern component `pat`.
pub(super) fn matches(pat: &str, name: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_at(&p, &n)
}

fn match_at(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    // Backtracking point for the last `*`: (pattern index after it, name index it absorbed to).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' if ni < n.len() => match parse_class(p, pi + 1) {
                    Some((negated, ranges, end)) => {
                        let c = n[ni];
                        let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                        if inside != negated {
                            pi = end;
                            ni += 1;
                            continue;
                        }
                    }
                    None => return false,
                },
                '\\' if pi + 1 < p.len() && ni < n.len() && p[pi + 1] == n[ni] => {
                    pi += 2;
                    ni += 1;
                    continue;
                }
                '\\' => {}
                c if ni < n.len() && c == n[ni] && c != '?' && c != '[' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        } else if ni == n.len() {
            return true;
        }
        // Mismatch: let the last `*` absorb one more character.
        match star {
            Some((sp, sn)) if sn < n.len() => {
                star = Some((sp, sn + 1));
                pi = sp;
                ni = sn + 1;
            }
            _ => return false,
        }
    }
}

/// A parsed `[...]`: negated, its ranges, the index after its `]`.
type Class = (bool, Vec<(char, char)>, usize);

/// Parses a class starting after its `[` at `i`.
fn parse_class(p: &[char], mut i: usize) -> Option<Class> {
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *p.get(i)?;
        if c == ']' && !first {
            return Some((negated, ranges, i + 1));
        }
        first = false;
        let (lo, next) = class_char(p, i)?;
        i = next;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            let (h, next) = class_char(p, i + 1)?;
            hi = h;
            i = next;
        }
        ranges.push((lo, hi));
    }
}

/// One (possibly escaped) class member at `i`; `-` and `]` must be escaped (Go's rule).
fn class_char(p: &[char], i: usize) -> Option<(char, usize)> {
    match *p.get(i)? {
        '\\' => Some((*p.get(i + 1)?, i + 2)),
        '-' | ']' => None,
        c => Some((c, i + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(pattern, name, matches?)`, from Go's `filepath.Match` tests.
    #[test]
    fn go_match_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*/b", "abc/b", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "a", false),
            (".*", ".hidden", true),
            ("*", ".hidden", true),
            ("*.txt", "a.txt", true),
            ("*.txt", "a.txt.bak", false),
            ("?", "", false),
            ("*", "", true),
        ];
        let failures: Vec<String> = cases
            .iter()
            .filter(|(p, n, want)| matches(p, n) != *want)
            .map(|(p, n, want)| format!("{p:?} on {n:?}: want {want}"))
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn malformed_patterns() {
        for bad in ["[", "[^", "[]a]", "[-]", "[x-]", "[a-b-c]", "\\", "a[", "[\\"] {
            assert!(!is_valid(bad), "{bad:?} must be invalid");
        }
        for good in ["a", "*", "[a-c]", "[\\]]", "a\\*", "[^x]"] {
            assert!(is_valid(good), "{good:?} must be valid");
        }
        assert!(!matches("[", "["));
    }

    #[test]
    fn magic_characters() {
        assert!(has_magic("*.rs") && has_magic("a?") && has_magic("[ab]") && has_magic("a\\b"));
        assert!(!has_magic("main.rs"));
    }
}
