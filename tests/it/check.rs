//! `slipway check`: one fixture per lint rule (exactly that rule fires), the `# check=`
//! directive, CLI snapshots of the diagnostics for broken Dockerfiles, and the real-world
//! corpus lowering to build graphs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use slipway::dockerfile::parse_dockerfile;
use slipway::graph::{GraphOptions, build};

use crate::support::TestContext;

fn corpus() -> PathBuf {
    crate::support::shared_corpus()
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/check")
}

/// Runs `slipway check ARGS` in `dir`; returns the exit code and stdout.
fn run_in(dir: &Path, args: &[&str]) -> (i32, String) {
    let ctx = TestContext::new();
    let out = ctx.cmd().current_dir(dir).arg("check").args(args).output().expect("spawn slipway");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The rules (or `error:<kind>`) a JSON report lists, in order.
fn reported(json: &str) -> Vec<String> {
    let items: Vec<serde_json::Value> = serde_json::from_str(json).expect("json report");
    items
        .iter()
        .map(|i| match (i["rule"].as_str(), i["error"].as_str()) {
            (Some(rule), _) => rule.to_owned(),
            (None, Some(kind)) => format!("error:{kind}"),
            _ => panic!("entry without rule or error: {i}"),
        })
        .collect()
}

/// Writes `src` (if any) as `Dockerfile` of a fresh context and runs `slipway check ARGS`
/// there; returns `exit: N`, stdout and stderr.
fn check_output(src: Option<&str>, args: &[&str]) -> String {
    let ctx = TestContext::new();
    let dir = ctx.path().join("ctx");
    std::fs::create_dir(&dir).expect("mkdir");
    if let Some(src) = src {
        std::fs::write(dir.join("Dockerfile"), src).expect("write Dockerfile");
    }
    let out = ctx.cmd().current_dir(&dir).arg("check").args(args).output().expect("spawn slipway");
    format!(
        "exit: {}\n{}{}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const RULES: [&str; 20] = [
    "JSONArgsRecommended",
    "StageNameCasing",
    "FromAsCasing",
    "UndefinedVar",
    "UndefinedArgInFrom",
    "DuplicateStageName",
    "MaintainerDeprecated",
    "WorkdirRelativePath",
    "ConsistentInstructionCasing",
    "SecretsUsedInArgOrEnv",
    "CopyIgnoredFile",
    "InvalidDefaultArgInFrom",
    "MultipleInstructionsDisallowed",
    "LegacyKeyValueFormat",
    "NoEmptyContinuation",
    "ReservedStageName",
    "RedundantTargetPlatform",
    "FromPlatformFlagConstDisallowed",
    "ExposeProtoCasing",
    "ExposeInvalidFormat",
];

#[test]
fn each_rule_fixture_fires_exactly_its_rule() {
    let mut failures = Vec::new();
    for rule in RULES {
        let (code, out) = run_in(&fixtures().join(rule), &["--format", "json"]);
        let mut found = reported(&out);
        // The instruction layer rejects duplicate stage names outright (BuildKit only warns),
        // so that fixture also carries the parse error.
        if rule == "DuplicateStageName" {
            found.retain(|r| r != "error:parse");
        }
        let expected_code = if rule == "DuplicateStageName" { 1 } else { 0 };
        if found != [rule] || code != expected_code {
            failures.push(format!("{rule}: exit {code}, found {found:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn clean_fixture_fires_nothing() {
    let (code, out) = run_in(&fixtures().join("clean"), &["--format", "json"]);
    assert_eq!((code, reported(&out)), (0, vec![]));
    let (code, out) = run_in(&fixtures().join("clean"), &[]);
    assert_eq!((code, out.as_str()), (0, "Dockerfile: no problems found\n"));
}

#[test]
fn file_and_context_arguments() {
    let fixture = fixtures().join("CopyIgnoredFile");
    let ctx = TestContext::new();
    let dockerfile = fixture.join("Dockerfile");
    let out = ctx.run(&[
        "check",
        "--format",
        "json",
        "-f",
        dockerfile.to_str().expect("utf-8"),
        fixture.to_str().expect("utf-8"),
    ]);
    assert_eq!(reported(&String::from_utf8_lossy(&out.stdout)), vec!["CopyIgnoredFile"]);
    // Without the context, the .dockerignore is not found: nothing to report.
    let out = ctx.run(&[
        "check",
        "--format",
        "json",
        "-f",
        dockerfile.to_str().expect("utf-8"),
        ctx.path().to_str().expect("utf-8"),
    ]);
    assert_eq!(reported(&String::from_utf8_lossy(&out.stdout)), Vec::<String>::new());
}

#[test]
fn json_report_fields() {
    let out = check_output(Some("FROM alpine\nMAINTAINER me\nRUNN x\n"), &["--format", "json"]);
    insta::assert_snapshot!(out, @r#"
exit: 1
[
  {
    "column": 1,
    "line": 2,
    "message": "the MAINTAINER instruction is deprecated, use a label instead to define an image author",
    "rule": "MaintainerDeprecated",
    "severity": "warning"
  },
  {
    "column": 1,
    "error": "parse",
    "line": 3,
    "message": "unknown instruction: RUNN (did you mean `RUN`?)",
    "severity": "error"
  }
]
"#);
}

#[test]
fn check_directive_skips_rules() {
    let src =
        "# check=skip=JSONArgsRecommended,MaintainerDeprecated\nFROM alpine\nMAINTAINER me\nCMD run\nWORKDIR app\n";
    let out = check_output(Some(src), &["--format", "json"]);
    assert!(out.starts_with("exit: 0\n"), "{out}");
    assert_eq!(reported(&out["exit: 0\n".len()..]), vec!["WorkdirRelativePath"]);
}

#[test]
fn check_directive_skip_all() {
    let out = check_output(Some("# check=skip=all\nfrom alpine AS Build\nCMD run\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 0
Dockerfile: no problems found
"#);
}

#[test]
fn check_directive_error_true_fails() {
    let out = check_output(Some("# check=error=true\nFROM alpine\nCMD run\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:3:1: error[JSONArgsRecommended]: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals
3 | CMD run
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
    // Nothing found: the gate passes.
    let out = check_output(Some("# check=error=true\nFROM alpine\nCMD [\"run\"]\n"), &[]);
    assert!(out.starts_with("exit: 0\n"), "{out}");
}

#[test]
fn check_directive_skip_and_error_combined() {
    let out = check_output(Some("# check=skip=JSONArgsRecommended;error=true\nFROM alpine\nCMD run\n"), &[]);
    assert!(out.starts_with("exit: 0\n"), "{out}");
}

/// `FROM` lines of real-world files that need a build arg without default.
const CORPUS_BUILD_ARGS: &[(&str, &[(&str, &str)])] = &[(
    "containerd__containerd__integration__images__volume-copy-up__Dockerfile_windows",
    &[("BASE", "mcr.microsoft.com/windows/nanoserver:ltsc2022")],
)];

#[test]
fn real_world_corpus_lowers_to_graphs() {
    let dir = corpus().join("real-world");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read corpus")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| !matches!(p.file_name().and_then(|n| n.to_str()), Some("README.md" | "SOURCES.tsv")))
        .collect();
    files.sort();
    assert_eq!(files.len(), 140, "real-world corpus size");
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let src = String::from_utf8_lossy(&std::fs::read(path.join("Dockerfile")).expect("read")).into_owned();
        let dockerfile = match parse_dockerfile(&src) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let build_args: BTreeMap<String, String> = CORPUS_BUILD_ARGS
            .iter()
            .filter(|(file, _)| *file == name)
            .flat_map(|(_, args)| args.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
            .collect();
        let options = GraphOptions { build_args, ..GraphOptions::default() };
        match build(&dockerfile, &options) {
            Ok(graph) => assert!(!graph.levels().is_empty(), "{name}: no levels"),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} failed:\n{}", failures.len(), files.len(), failures.join("\n"));
}

// ---- CLI snapshots of diagnostics for broken Dockerfiles ----

#[test]
fn unknown_instruction_did_you_mean() {
    let out = check_output(Some("FROM alpine\nRUNN echo hi\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: unknown instruction: RUNN (did you mean `RUN`?)
2 | RUNN echo hi
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn unknown_instruction_without_suggestion() {
    let out = check_output(Some("FROM alpine\nFOOBAR x\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: unknown instruction: FOOBAR
2 | FOOBAR x
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn unknown_flag_did_you_mean() {
    let out = check_output(Some("FROM alpine\nCOPY --chmown=1000 a b\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:6: error: unknown flag: --chmown (did you mean `chown`?)
2 | COPY --chmown=1000 a b
  |      ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn unknown_run_flag() {
    let out = check_output(Some("FROM alpine\nRUN --mont=type=cache,target=/root/.cache pip install x\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:5: error: unknown flag: --mont (did you mean `mount`?)
2 | RUN --mont=type=cache,target=/root/.cache pip install x
  |     ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn shell_not_json() {
    let out = check_output(Some("FROM alpine\nSHELL /bin/bash -c\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: `SHELL` requires the arguments to be in json form
2 | SHELL /bin/bash -c
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn shell_json_not_strings() {
    let out = check_output(Some("FROM alpine\nSHELL [\"/bin/sh\", 1]\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:7: error: when using json array syntax, arrays must be comprised of strings only
2 | SHELL ["/bin/sh", 1]
  |       ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn instruction_before_from() {
    let out = check_output(Some("ENV A=1\nFROM alpine\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:1:1: error: no build stage in current context: `ENV` before the first `FROM` (only `ARG` may come first)
1 | ENV A=1
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn workdir_missing_argument() {
    let out = check_output(Some("FROM alpine\nWORKDIR\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: `WORKDIR` requires exactly one argument
2 | WORKDIR
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn copy_without_destination() {
    let out = check_output(Some("FROM alpine\nCOPY onlyone\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: `COPY` requires at least two arguments (sources and a destination), but only one was provided
2 | COPY onlyone
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn from_two_words() {
    let out = check_output(Some("FROM alpine build\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:1:1: error: `FROM` requires either one or three arguments (`FROM image [AS name]`)
1 | FROM alpine build
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn stage_name_starting_with_digit() {
    let out = check_output(Some("FROM alpine AS 1build\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:1:1: error: invalid name for build stage: "1build", name can't start with a number or contain symbols
1 | FROM alpine AS 1build
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn stage_name_with_symbol() {
    let out = check_output(Some("FROM alpine AS my@stage\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:1:1: error: invalid name for build stage: "my@stage", name can't start with a number or contain symbols
1 | FROM alpine AS my@stage
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn unterminated_heredoc() {
    let out = check_output(Some("FROM alpine\nRUN <<EOF\necho hi\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: unterminated heredoc `EOF`
2 | RUN <<EOF
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn mount_unknown_type() {
    let out = check_output(Some("FROM alpine\nRUN --mount=type=bogus ls\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: invalid --mount=type=bogus: unsupported mount type "bogus"
2 | RUN --mount=type=bogus ls
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn mount_unknown_key() {
    let out = check_output(Some("FROM alpine\nRUN --mount=type=cache,taget=/x ls\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: invalid --mount=type=cache,taget=/x: unexpected key 'taget' in 'taget=/x' (did you mean `target`?)
2 | RUN --mount=type=cache,taget=/x ls
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn mount_from_variable() {
    let out = check_output(Some("FROM alpine\nRUN --mount=from=$X,target=/x ls\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: invalid --mount=from=$X,target=/x: 'from' doesn't support variable expansion, define alias stage instead
2 | RUN --mount=from=$X,target=/x ls
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn unknown_target() {
    let out = check_output(Some("FROM alpine AS build\nFROM scratch AS final\n"), &["--target", "prod"]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile: error: target stage "prod" could not be found; stages are: build, final
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn forward_stage_reference() {
    let out = check_output(Some("FROM alpine AS first\nCOPY --from=later /a /a\nFROM alpine AS later\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: stage "later" is used before it is defined (a stage can only refer to earlier stages)
2 | COPY --from=later /a /a
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn stage_refers_to_itself() {
    let out = check_output(Some("FROM alpine AS app\nCOPY --from=app /a /a\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: stage "app" refers to itself (circular dependency)
2 | COPY --from=app /a /a
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn stage_index_out_of_range() {
    let out = check_output(Some("FROM alpine\nFROM scratch\nCOPY --from=3 /a /a\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:3:1: error: stage index 3 is not an earlier stage (this is stage 1)
3 | COPY --from=3 /a /a
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn several_errors_in_one_file() {
    let out = check_output(Some("FROM alpine\nRUNN a\nCOPY --chmown=1 a b\nWORKDIR\nSHELL sh\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: unknown instruction: RUNN (did you mean `RUN`?)
2 | RUNN a
  | ^
Dockerfile:3:6: error: unknown flag: --chmown (did you mean `chown`?)
3 | COPY --chmown=1 a b
  |      ^
Dockerfile:4:1: error: `WORKDIR` requires exactly one argument
4 | WORKDIR
  | ^
Dockerfile:5:1: error: `SHELL` requires the arguments to be in json form
5 | SHELL sh
  | ^
Dockerfile: 4 error(s), 0 warning(s)
"#);
}

#[test]
fn duplicate_flag() {
    let out = check_output(Some("FROM alpine\nCOPY --chown=a --chown=b x y\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:6: error: duplicate flag specified: --chown
2 | COPY --chown=a --chown=b x y
  |      ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn healthcheck_bad_duration() {
    let out = check_output(Some("FROM alpine\nHEALTHCHECK --interval=5x CMD true\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: invalid duration "5x" for --interval
2 | HEALTHCHECK --interval=5x CMD true
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn chained_onbuild() {
    let out = check_output(Some("FROM alpine\nONBUILD ONBUILD RUN x\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: chaining `ONBUILD` via `ONBUILD ONBUILD` isn't allowed
2 | ONBUILD ONBUILD RUN x
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn onbuild_from() {
    let out = check_output(Some("FROM alpine\nONBUILD FROM debian\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: `FROM` isn't allowed as an `ONBUILD` trigger
2 | ONBUILD FROM debian
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn bad_escape_directive() {
    let out = check_output(Some("# escape=x\nFROM alpine\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:1:1: error: invalid escape token `x`: must be ` or \
1 | # escape=x
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn unsupported_network_mode() {
    let out = check_output(Some("FROM alpine\nRUN --network=wifi ls\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: unsupported network mode "wifi"
2 | RUN --network=wifi ls
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn blank_base_from_arg() {
    let out = check_output(Some("ARG IMG\nFROM $IMG\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: base name ($IMG) should not be blank
2 | FROM $IMG
  | ^
Dockerfile:2:1: warning[InvalidDefaultArgInFrom]: default value for ARG $IMG results in empty or invalid base image name
2 | FROM $IMG
  | ^
Dockerfile: 1 error(s), 1 warning(s)
"#);
}

#[test]
fn empty_file() {
    let out = check_output(Some("# just a comment\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:1:1: error: file with no instructions
1 | # just a comment
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn flag_not_bool() {
    let out = check_output(Some("FROM alpine\nCOPY --link=maybe a b\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:6: error: expecting boolean value for flag --link, not: maybe
2 | COPY --link=maybe a b
  |      ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn unterminated_brace_in_env() {
    let out = check_output(Some("FROM alpine\nENV A=${B\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: failed to process "${B": syntax error: missing '}'
2 | ENV A=${B
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn duplicate_directive() {
    let out = check_output(Some("# escape=`\n# escape=\\\nFROM alpine\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:1: error: only one `escape` parser directive can be used
2 | # escape=\
  | ^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn tab_indented_error() {
    let out = check_output(Some("FROM alpine\n\tWORKDIT /x\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:2:2: error: unknown instruction: WORKDIT (did you mean `WORKDIR`?)
2 | 	WORKDIT /x
  | 	^
Dockerfile: 1 error(s), 0 warning(s)
"#);
}

#[test]
fn build_arg_fixes_from() {
    let out = check_output(Some("ARG IMG\nFROM $IMG\n"), &["--build-arg", "IMG=alpine"]);
    insta::assert_snapshot!(out, @r#"
exit: 0
Dockerfile:2:1: warning[InvalidDefaultArgInFrom]: default value for ARG $IMG results in empty or invalid base image name
2 | FROM $IMG
  | ^
Dockerfile: 0 error(s), 1 warning(s)
"#);
}

#[test]
fn bad_build_arg_is_usage() {
    let out = check_output(Some("FROM alpine\n"), &["--build-arg", "=x"]);
    insta::assert_snapshot!(out, @r#"
exit: 2
error: invalid value '=x' for '--build-arg <KEY=VALUE>': invalid build-arg "=x": the name is empty

For more information, try '--help'.
"#);
}

#[test]
fn missing_dockerfile() {
    let out = check_output(None, &[]);
    insta::assert_snapshot!(out, @r#"
exit: 2
error: failed to read ./Dockerfile
caused by: No such file or directory (os error 2)
"#);
}

#[test]
fn errors_and_warnings_together() {
    let out = check_output(Some("FROM alpine as Build\nRUNN x\nCMD run\n"), &[]);
    insta::assert_snapshot!(out, @r#"
exit: 1
Dockerfile:1:1: warning[StageNameCasing]: stage name 'Build' should be lowercase
1 | FROM alpine as Build
  | ^
Dockerfile:1:1: warning[FromAsCasing]: 'as' and 'FROM' keywords' casing do not match
1 | FROM alpine as Build
  | ^
Dockerfile:2:1: error: unknown instruction: RUNN (did you mean `RUN`?)
2 | RUNN x
  | ^
Dockerfile: 1 error(s), 2 warning(s)
"#);
}
