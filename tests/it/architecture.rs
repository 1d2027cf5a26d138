//! The walls between modules, checked: every `crate::X` path in `src/` must follow an edge of
//! the table in `ARCHITECTURE.md` (its `### `module` → deps` headings), and every top-level
//! module has exactly one such heading.
//!
//! The table is parsed from the document, so the document and the test cannot drift: adding an
//! edge means writing it in `ARCHITECTURE.md`. A dependency list is `nothing`, `everything`,
//! `everything below `cli`` (every module but `cli`) or module names separated by commas;
//! anything after a parenthesis is commentary.
//!
//! Some invariants rest on these walls: `cache` → oci, sqlite is what keeps reliability F6 (the
//! cache cannot read an image's history, labels or config to make a key or a record), `exec` →
//! nothing is what keeps the sandbox away from the store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What a module may refer to, by name.
type Table = BTreeMap<String, BTreeSet<String>>;

#[test]
fn every_module_reference_follows_an_edge_of_architecture_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let modules = top_level_modules(&root.join("src"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let table = parse_table(&doc, &modules).unwrap_or_else(|errors| panic!("ARCHITECTURE.md:\n{}", errors.join("\n")));

    let mut violations = Vec::new();
    for file in rust_files(&root.join("src")) {
        let rel = file.strip_prefix(root).unwrap();
        let Some(from) = module_of(file.strip_prefix(root.join("src")).unwrap()) else {
            continue; // lib.rs and main.rs are the crate root, not a module
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, to) in crate_references(&text) {
            if to == from || table[&from].contains(&to) {
                continue;
            }
            let why = if modules.contains(&to) { "edge not in ARCHITECTURE.md" } else { "not a top-level module" };
            violations.push(format!("{}:{line}: {from} → {to}: {why}", rel.display()));
        }
    }
    assert!(violations.is_empty(), "references crossing a wall:\n{}", violations.join("\n"));
}

#[test]
fn the_parser_reads_the_forms_the_document_uses() {
    let modules: BTreeSet<String> = ["a", "b", "c", "cli"].map(String::from).into();
    let doc = "# T\n## Code map\n### `a` → nothing (of slipway's modules)\n### `b` → a, `c`\n\
               ### `c` → everything below `cli`\n### `cli` → everything\n## Other\n### not a module\n";
    let table = parse_table(doc, &modules).unwrap();
    let names = |t: &str| t.split_whitespace().map(String::from).collect::<BTreeSet<_>>();
    assert_eq!(table["a"], names(""));
    assert_eq!(table["b"], names("a c"));
    assert_eq!(table["c"], names("a b"));
    assert_eq!(table["cli"], names("a b c"));

    let doc = "## Code map\n### `a` → nothing\n### `b` → d\n### `e` → a\n### `cli`\n";
    let errors = parse_table(doc, &modules).unwrap_err();
    assert_eq!(
        errors,
        [
            "heading `b` names `d`, which is not a top-level module of src/",
            "heading `e` names a module that src/ does not have",
            "heading `cli` has no `→` list of what it may import",
            "module `c` of src/ has no `### `c` → …` heading",
        ]
    );
}

#[test]
fn references_are_found_in_paths_and_use_groups_but_not_in_comments_or_strings() {
    let text = r##"use crate::a::B;
use crate::{b::C, c, self as me};
use crate::{
    d::{E, F},
    e,
};
// crate::f in a comment
/// crate::g in a doc comment
/* crate::h /* nested */ crate::i */
let s = "crate::j"; let r = r#"crate::k"#; let c = '"'; let l: &'static str = "";
fn f() -> crate::l::T { $crate::m::n(); pub(crate) fn o() {} my_crate::p(); }
"##;
    let found: Vec<(usize, String)> = crate_references(text);
    let expected = [(1, "a"), (2, "b"), (2, "c"), (4, "d"), (5, "e"), (11, "l"), (11, "m")];
    assert_eq!(found, expected.map(|(l, m)| (l, m.to_string())));
}

/// The top-level modules of `src/`: its folders and its `.rs` files but `lib.rs` and `main.rs`.
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    rust_files(src).iter().filter_map(|f| module_of(f.strip_prefix(src).unwrap())).collect()
}

/// The top-level module of a file (path relative to `src/`); `None` for the crate root.
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str().unwrap();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(name) => Some(name.to_string()),
        None => Some(first.to_string()),
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The table of the `### `module` → deps` headings of the "Code map" section, or every problem:
/// a heading without an arrow, a name that is not a module, a module without a heading.
fn parse_table(doc: &str, modules: &BTreeSet<String>) -> Result<Table, Vec<String>> {
    let mut table = Table::new();
    let mut headed = BTreeSet::new();
    let mut errors = Vec::new();
    let mut in_code_map = false;
    for line in doc.lines() {
        if let Some(section) = line.strip_prefix("## ") {
            in_code_map = section.trim() == "Code map";
            continue;
        }
        let Some(heading) = line.strip_prefix("### ").filter(|_| in_code_map) else {
            continue;
        };
        let (name, deps) = match heading.split_once('→') {
            Some((name, deps)) => (unquote(name), Some(deps)),
            None => (unquote(heading), None),
        };
        if !modules.contains(&name) {
            errors.push(format!("heading `{name}` names a module that src/ does not have"));
            continue;
        }
        if !headed.insert(name.clone()) {
            errors.push(format!("module `{name}` has two headings"));
        }
        let Some(deps) = deps else {
            errors.push(format!("heading `{name}` has no `→` list of what it may import"));
            continue;
        };
        // Commentary in parentheses, as in "nothing (of slipway's modules)".
        let deps = deps.split('(').next().unwrap().trim();
        let allowed: BTreeSet<String> = match deps {
            "nothing" => BTreeSet::new(),
            "everything" => modules.clone(),
            "everything below `cli`" => modules.iter().filter(|m| *m != "cli").cloned().collect(),
            list => {
                let names: BTreeSet<String> = list.split(',').map(unquote).collect();
                for unknown in names.difference(modules) {
                    errors.push(format!("heading `{name}` names `{unknown}`, which is not a top-level module of src/"));
                }
                names
            }
        };
        table.insert(name.clone(), allowed.into_iter().filter(|m| *m != name).collect());
    }
    for missing in modules.difference(&headed) {
        errors.push(format!("module `{missing}` of src/ has no `### `{missing}` → …` heading"));
    }
    if errors.is_empty() { Ok(table) } else { Err(errors) }
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('`').to_string()
}

/// Every `crate::X` (and `crate::{X, Y::…}`) in Rust source, as (line, X), outside comments,
/// string and character literals.
fn crate_references(text: &str) -> Vec<(usize, String)> {
    let code = blank_comments_and_literals(text);
    let bytes = code.as_bytes();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            continue; // `my_crate::`
        }
        let mut i = skip_space(bytes, at + "crate::".len());
        if bytes.get(i) == Some(&b'{') {
            // A use group: the first name of every item at depth one.
            let mut depth = 1;
            let mut item_start = true;
            i += 1;
            while i < bytes.len() && depth > 0 {
                match bytes[i] {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    b',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && !c.is_ascii_whitespace() => {
                        item_start = false;
                        let name = ident_at(bytes, i);
                        if name != "self" {
                            found.push((line_of(i), name));
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        } else {
            found.push((line_of(i), ident_at(bytes, i)));
        }
    }
    found
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

fn ident_at(bytes: &[u8], i: usize) -> String {
    let end =
        (i..bytes.len()).find(|&j| !(bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_')).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[i..end]).into_owned()
}

/// `text` with every comment and string or character literal replaced by spaces (newlines kept,
/// so line numbers stay right).
fn blank_comments_and_literals(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let ident_before = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (1, i + 2);
            while j < b.len() && depth > 0 {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if !ident_before && (rest.starts_with(b"r\"") || rest.starts_with(b"r#") || rest.starts_with(b"br")) {
            // Raw string: r"…", r#"…"#, br#"…"#.
            let start = i + if rest[0] == b'b' { 2 } else { 1 };
            let hashes = b[start..].iter().take_while(|&&c| c == b'#').count();
            if b.get(start + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            let body = start + hashes + 1;
            let end =
                b[body..].windows(close.len()).position(|w| w == close).map_or(b.len(), |p| body + p + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if rest[0] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if rest[0] == b'\'' {
            // A character literal ('x', '\n', '\u{..}'), or else a lifetime ('a).
            let end = if rest.get(1) == Some(&b'\\') {
                rest[2..].iter().position(|&c| c == b'\'').map(|p| i + 2 + p + 1)
            } else {
                let width = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (rest.get(1 + width) == Some(&b'\'')).then_some(i + 2 + width)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced, by ASCII spaces")
}
