//! Conformance of `dockerfile::expand` with BuildKit's shell-lexer tables
//! (`buildkit-parser/shell/envVarTest` and `wordsTest`), read the way BuildKit's
//! `lex_test.go` reads them. Every line runs; all failures are reported together.

use std::path::PathBuf;

use slipway::dockerfile::expand::Expander;

/// The corpus: `support::shared_corpus()` expects `shared/` beside the repository, which
/// holds for the main checkout but not for a worktree under `wt/`, so look in every ancestor.
fn corpus() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|dir| dir.join("shared/corpus"))
        .find(|p| p.is_dir())
        .unwrap_or_else(crate::support::shared_corpus)
}

fn read_table(name: &str) -> String {
    let path = corpus().join("buildkit-parser/shell").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `NAME=value` strings as BuildKit's `BuildEnvs` reads them.
fn env_of(entries: &[&str]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => ((*e).to_owned(), String::new()),
        })
        .collect()
}

#[test]
fn env_var_table() {
    let text = read_table("envVarTest");
    let env = env_of(&["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]);
    let ex = Expander::new('\\', &env);
    let (mut ran, mut skipped, mut failures) = (0, 0, Vec::new());
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.trim().split('|').collect();
        assert_eq!(fields.len(), 3, "envVarTest:{n}: malformed line {raw:?}");
        let (platform, source, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        match platform {
            "A" | "U" => {}
            // Windows-only lines: `$pwd` is `$PWD` there because env names are case-insensitive.
            "W" => {
                skipped += 1;
                continue;
            }
            other => panic!("envVarTest:{n}: unknown platform tag {other:?}"),
        }
        ran += 1;
        match (ex.expand_word(source), expected) {
            (Err(_), "error") => {}
            (Ok(got), "error") => failures.push(format!("line {n}: {source:?}: want an error, got {:?}", got.value)),
            (Ok(got), want) if got.value == want => {}
            (Ok(got), want) => failures.push(format!("line {n}: {source:?}: want {want:?}, got {:?}", got.value)),
            (Err(e), want) => failures.push(format!("line {n}: {source:?}: want {want:?}, got error: {e}")),
        }
    }
    assert!(failures.is_empty(), "envVarTest: {} of {ran} lines failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!((ran, skipped), (228, 2), "envVarTest: lines run and skipped: the table changed");
}

#[test]
fn words_table() {
    let text = read_table("wordsTest");
    let mut env: Vec<(String, String)> = Vec::new();
    let (mut ran, mut failures) = (0, Vec::new());
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.starts_with('#') {
            continue;
        }
        if let Some(rest) = raw.strip_prefix("ENV ") {
            env.extend(env_of(&[rest.trim_start_matches(' ')]));
            continue;
        }
        let (source, expected) = raw.split_once('|').unwrap_or_else(|| panic!("wordsTest:{n}: no | in {raw:?}"));
        let source = source.trim();
        let want: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        ran += 1;
        let ex = Expander::new('\\', &env);
        let got = match ex.expand_words(source) {
            Ok(w) => w.words,
            Err(_) => vec!["error".to_owned()],
        };
        if got != want {
            failures.push(format!("line {n}: {source:?}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "wordsTest: {} of {ran} lines failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(ran, 24, "wordsTest: lines run: the table changed");
}
