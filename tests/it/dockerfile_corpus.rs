//! Conformance of the Dockerfile frontend against BuildKit's answers in the shared corpus
//! (`shared/corpus/`, see its README): for every case with `expected.json`, our line
//! parser must produce the same instruction list field by field, reject `parse_error`
//! cases on the same line, and our instruction layer must reject `instruction_error` cases
//! (on the same line when BuildKit names one). Where BuildKit's `result` dump exists, our
//! dump must equal it too. One test per corpus directory, reporting
//! every mismatching case at once.

use std::path::{Path, PathBuf};

use serde_json::Value;
use slipway::dockerfile::{self, Ast, Diagnostics, Node};

/// Cases we deliberately do not match, with the reason. Empty: every case conforms.
const EXCEPTIONS: &[(&str, &str)] = &[];

/// The corpus root. `support::shared_corpus()` assumes the repository sits beside
/// `shared/`; a git worktree sits one level deeper, so look in both places.
fn corpus_root() -> PathBuf {
    crate::support::shared_corpus()
}

/// Case directories (holding `Dockerfile` and `expected.json`) directly under `dir`, or
/// `dir` itself when it is a case.
fn cases(dir: &Path) -> Vec<PathBuf> {
    if dir.join("expected.json").is_file() {
        return vec![dir.to_path_buf()];
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("Dockerfile").is_file() && p.join("expected.json").is_file())
        .collect();
    out.sort();
    out
}

/// The first line number in BuildKit's "(at lines A-B,...)" or "on line N", if not 0.
fn expected_line(message: &str) -> Option<u32> {
    let tail = if let Some(i) = message.rfind("(at lines ") {
        &message[i + "(at lines ".len()..]
    } else if let Some(i) = message.find("on line ") {
        &message[i + "on line ".len()..]
    } else {
        return None;
    };
    let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|n| *n > 0)
}

fn has_error_on(diags: &Diagnostics, line: Option<u32>) -> Result<(), String> {
    let Some(line) = line else { return Ok(()) };
    if diags.errors().iter().any(|e| e.span().start_line == line) {
        return Ok(());
    }
    let ours: Vec<String> = diags.errors().iter().map(|e| format!("{}: {e}", e.span().start_line)).collect();
    Err(format!("expected an error on line {line}, ours: {ours:?}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap_or_default().to_string()).collect()).unwrap_or_default()
}

fn diff<T: PartialEq + std::fmt::Debug>(path: &str, field: &str, expected: T, ours: T) -> Result<(), String> {
    if expected == ours {
        return Ok(());
    }
    Err(format!("{path}.{field}: expected {expected:?}, ours {ours:?}"))
}

/// Compares one node with BuildKit's; `parent` is set for an ONBUILD trigger.
fn compare_node(path: &str, exp: &Value, node: &Node, parent: Option<&Node>) -> Result<(), String> {
    diff(path, "cmd", exp["cmd"].as_str().unwrap_or_default(), node.cmd.as_str())?;
    diff(path, "flags", strings(&exp["flags"]), node.flags.clone())?;
    diff(path, "args", strings(&exp["args"]), node.args.clone())?;
    diff(path, "json", exp["json"].as_bool().unwrap_or(false), node.json)?;
    let exp_docs: Vec<(String, u64, bool, bool, String)> = exp["heredocs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| {
                    (
                        h["name"].as_str().unwrap_or_default().to_string(),
                        h["fd"].as_u64().unwrap_or(0),
                        h["expand"].as_bool().unwrap_or(false),
                        h["chomp"].as_bool().unwrap_or(false),
                        h["content"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let our_docs: Vec<(String, u64, bool, bool, String)> =
        node.heredocs.iter().map(|h| (h.name.clone(), u64::from(h.fd), h.expand, h.chomp, h.content.clone())).collect();
    diff(path, "heredocs", exp_docs, our_docs)?;
    // BuildKit leaves an ONBUILD trigger's lines at 0; ours carries the ONBUILD line's span.
    let (exp_start, exp_end) = match parent {
        Some(p) => (u64::from(p.span.start_line), u64::from(p.span.end_line)),
        None => (exp["start_line"].as_u64().unwrap_or(0), exp["end_line"].as_u64().unwrap_or(0)),
    };
    diff(path, "start_line", exp_start, u64::from(node.span.start_line))?;
    diff(path, "end_line", exp_end, u64::from(node.span.end_line))?;
    diff(path, "original", exp["original"].as_str().unwrap_or_default(), node.original.as_str())?;
    match (exp.get("sub"), &node.sub) {
        (None, None) => Ok(()),
        (Some(e), Some(s)) => compare_node(&format!("{path}.sub"), e, s, Some(node)),
        (e, s) => Err(format!("{path}.sub: expected {}, ours {}", e.is_some(), s.is_some())),
    }
}

fn compare_ast(exp: &Value, ast: &Ast) -> Result<(), String> {
    let escape = exp["escape_token"].as_str().unwrap_or("\\");
    diff("", "escape_token", escape.to_string(), ast.escape.to_string())?;
    let exp_warnings: Vec<String> = strings(&exp["warnings"]).iter().map(|w| w.to_lowercase()).collect();
    let our_warnings: Vec<String> = ast.warnings.iter().map(|w| w.message().to_lowercase()).collect();
    diff("", "warnings", exp_warnings, our_warnings)?;
    let exp_nodes = exp["instructions"].as_array().cloned().unwrap_or_default();
    for (i, (e, n)) in exp_nodes.iter().zip(&ast.nodes).enumerate() {
        compare_node(&format!("instructions[{i}]"), e, n, None)?;
    }
    diff("", "instructions.len", exp_nodes.len(), ast.nodes.len())
}

/// Checks one case; on success returns how many instructions were compared.
/// Compares our dump with BuildKit's `result` file (its `Node.Dump()`), line by line.
fn compare_dump(expected: &str, ours: &str) -> Result<(), String> {
    let (exp_lines, our_lines): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), ours.lines().collect());
    for (i, (e, o)) in exp_lines.iter().zip(&our_lines).enumerate() {
        diff("result", &format!("line {}", i + 1), *e, *o)?;
    }
    diff("result", "lines", exp_lines.len(), our_lines.len())
}

fn check_case(dir: &Path) -> Result<usize, String> {
    let src = std::fs::read_to_string(dir.join("Dockerfile")).map_err(|e| format!("read Dockerfile: {e}"))?;
    let text = std::fs::read_to_string(dir.join("expected.json")).map_err(|e| format!("read expected.json: {e}"))?;
    let exp: Value = serde_json::from_str(&text).map_err(|e| format!("expected.json: {e}"))?;

    if let Some(msg) = exp.get("parse_error").and_then(Value::as_str) {
        // BuildKit reports directive errors with a 0-based line number (it counts the
        // line before incrementing); every other location is 1-based.
        let zero_based = msg.contains("parser directive") || msg.contains("escape token");
        let line = if zero_based { expected_line(msg).map_or(Some(1), |n| Some(n + 1)) } else { expected_line(msg) };
        return match dockerfile::parse(&src) {
            Ok(_) => Err(format!("accepted, BuildKit's line parser rejects: {msg}")),
            Err(diags) => has_error_on(&diags, line).map(|()| 0),
        };
    }
    let ast = dockerfile::parse(&src).map_err(|d| format!("rejected: {}", d.render("Dockerfile", &src)))?;
    compare_ast(&exp, &ast)?;
    if let Ok(result) = std::fs::read_to_string(dir.join("result")) {
        compare_dump(&result, &ast.dump())?;
    }
    let compared = ast.nodes.len();
    match (exp.get("instruction_error").and_then(Value::as_str), dockerfile::lower(&ast)) {
        (Some(msg), Ok(_)) => Err(format!("instruction layer accepted, BuildKit rejects: {msg}")),
        (Some(msg), Err(diags)) => has_error_on(&diags, expected_line(msg)),
        (None, Err(diags)) => Err(format!("instruction layer rejected: {}", diags.render("Dockerfile", &src))),
        (None, Ok(df)) => {
            diff("", "stages", exp["stages"].as_u64().unwrap_or(0), df.stages.len() as u64)?;
            diff("", "meta_args", exp["meta_args"].as_u64().unwrap_or(0), df.meta_args.len() as u64)
        }
    }
    .map(|()| compared)
}

/// Runs every case under `sub` and fails listing every mismatch.
fn run_dir(sub: &str) {
    let dir = corpus_root().join(sub);
    let all = cases(&dir);
    assert!(!all.is_empty(), "no cases under {}", dir.display());
    let mut failures = Vec::new();
    let mut passed = 0;
    let mut compared = 0;
    for case in &all {
        let name = case.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let result = check_case(case);
        match (EXCEPTIONS.iter().find(|(n, _)| *n == name), result) {
            (Some(_), Ok(_)) => failures.push(format!("{name}: listed as an exception but passes")),
            (Some(_), Err(_)) => {}
            (None, Ok(n)) => {
                passed += 1;
                compared += n;
            }
            (None, Err(e)) => failures.push(format!("{name}: {e}")),
        }
    }
    let excepted = all.len() - passed - failures.len();
    println!("{sub}: {passed}/{} cases pass, {compared} instructions compared, {excepted} named exceptions", all.len());
    assert!(
        failures.is_empty(),
        "{sub}: {passed}/{} pass ({excepted} named exceptions), {} mismatch:\n{}",
        all.len(),
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn buildkit_testfiles() {
    run_dir("buildkit-parser/testfiles");
}

#[test]
fn buildkit_testfiles_negative() {
    run_dir("buildkit-parser/testfiles-negative");
}

#[test]
fn buildkit_testfile_line() {
    run_dir("buildkit-parser/testfile-line");
}

#[test]
fn synthetic() {
    run_dir("synthetic");
}

#[test]
fn real_world() {
    run_dir("real-world");
}

/// Robustness: every prefix of every synthetic and BuildKit case (cut at each character)
/// parses to `Ok` or `Err` without panicking, and errors render.
#[test]
fn truncated_inputs_never_panic() {
    let root = corpus_root();
    let mut n = 0;
    for sub in ["synthetic", "buildkit-parser/testfiles", "buildkit-parser/testfiles-negative"] {
        for case in cases(&root.join(sub)) {
            let src = std::fs::read_to_string(case.join("Dockerfile")).expect("read Dockerfile");
            for (i, _) in src.char_indices() {
                let prefix = &src[..i];
                if let Err(d) = dockerfile::parse_dockerfile(prefix) {
                    assert!(!d.render("Dockerfile", prefix).is_empty());
                }
                n += 1;
            }
        }
    }
    assert!(n > 1000, "only {n} prefixes tried");
}
