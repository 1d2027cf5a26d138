//! Unit tests of the lint rules: one positive and one negative case per rule, the `check=`
//! directive.

use std::collections::BTreeMap;

use super::*;
use crate::dockerfile::{lower, parse};
use crate::graph::{GraphOptions, build};

/// Runs every rule on `src`; returns `(rule, line, message)`.
#[track_caller]
fn run(src: &str, ignored: Option<&dyn Fn(&str) -> bool>) -> Vec<(&'static str, u32, String)> {
    let ast = parse(src).expect("parses");
    let dockerfile = lower(&ast).ok();
    let options = GraphOptions { escape: ast.escape, ..GraphOptions::default() };
    let graph = dockerfile.as_ref().and_then(|d| build(d, &options).ok());
    let build_args = BTreeMap::new();
    let input = LintInput {
        ast: &ast,
        dockerfile: dockerfile.as_ref(),
        graph: graph.as_ref(),
        build_args: &build_args,
        ignored,
    };
    lint(&input, &CheckConfig::from_ast(&ast))
        .into_iter()
        .map(|f| (f.rule.name(), f.span.start_line, f.message))
        .collect()
}

#[track_caller]
fn rules(src: &str) -> Vec<&'static str> {
    run(src, None).into_iter().map(|(r, _, _)| r).collect()
}

/// Asserts that `src` makes only `rule` fire, at these lines with these messages, in order.
#[track_caller]
fn fires(src: &str, rule: &'static str, expected: &[(u32, &str)]) {
    let expected: Vec<_> = expected.iter().map(|(line, message)| (rule, *line, (*message).to_owned())).collect();
    assert_eq!(run(src, None), expected, "{src:?}");
}

#[test]
fn clean_file_has_no_findings() {
    let src = "ARG TAG=3.20\nFROM alpine:${TAG} AS build\nWORKDIR /src\nENV A=1\nCOPY . .\nRUN make\nFROM scratch\nCOPY --from=build /src/out /out\nCMD [\"/out\"]\n";
    assert_eq!(run(src, None), vec![]);
}

#[test]
fn each_rule_fires() {
    let cases: [(&str, &str); 19] = [
        ("JSONArgsRecommended", "FROM alpine\nCMD echo hi\n"),
        ("StageNameCasing", "FROM alpine AS Build\n"),
        ("FromAsCasing", "FROM alpine as build\n"),
        ("UndefinedVar", "FROM alpine\nENV A=$NOPE\n"),
        ("UndefinedArgInFrom", "FROM alpine:$TAG\n"),
        ("DuplicateStageName", "FROM alpine AS a\nFROM alpine AS a\n"),
        ("MaintainerDeprecated", "FROM alpine\nMAINTAINER me\n"),
        ("WorkdirRelativePath", "FROM alpine\nWORKDIR app\n"),
        ("ConsistentInstructionCasing", "FROM alpine\nRUN a\nrun b\n"),
        ("SecretsUsedInArgOrEnv", "FROM alpine\nARG GITHUB_TOKEN\n"),
        ("InvalidDefaultArgInFrom", "ARG TAG\nFROM busybox:${TAG}\n"),
        ("MultipleInstructionsDisallowed", "FROM alpine\nCMD [\"a\"]\nCMD [\"b\"]\n"),
        ("LegacyKeyValueFormat", "FROM alpine\nENV A 1\n"),
        ("NoEmptyContinuation", "FROM alpine\nRUN a \\\n\n  b\n"),
        ("ReservedStageName", "FROM alpine AS context\n"),
        ("RedundantTargetPlatform", "FROM --platform=$TARGETPLATFORM alpine\n"),
        ("FromPlatformFlagConstDisallowed", "FROM --platform=linux/arm64 alpine AS build\n"),
        ("ExposeProtoCasing", "FROM alpine\nEXPOSE 80/TCP\n"),
        ("ExposeInvalidFormat", "FROM alpine\nEXPOSE 8080:80\n"),
    ];
    for (rule, src) in cases {
        assert_eq!(rules(src), vec![rule], "{src:?}");
    }
}

#[test]
fn copy_ignored_file() {
    let ignored = |p: &str| p == "secret.txt" || p.starts_with("node_modules");
    let src = "FROM alpine\nCOPY ./secret.txt app.js /app/\nADD node_modules/x /x\nCOPY --from=alpine secret.txt /s\n";
    let found = run(src, Some(&ignored));
    assert_eq!(
        found,
        vec![
            ("CopyIgnoredFile", 2, "attempting to copy file \"secret.txt\" that is excluded by .dockerignore".into()),
            (
                "CopyIgnoredFile",
                3,
                "attempting to add file \"node_modules/x\" that is excluded by .dockerignore".into()
            ),
        ]
    );
}

#[test]
fn casing_follows_the_majority() {
    let found = run("from alpine\nrun a\nRUN b\nEntryPoint [\"x\"]\n", None);
    assert_eq!(
        found.iter().map(|(_, l, m)| (*l, m.as_str())).collect::<Vec<_>>(),
        vec![
            (3, "command 'RUN' should match the case of the command majority (lowercase)"),
            (4, "command 'EntryPoint' should be consistently cased"),
        ]
    );
}

#[test]
fn undefined_var_suggests_and_respects_declarations() {
    let found = run("FROM alpine\nARG VERSION\nENV V=$VERSION\nENV W=$VERSOIN\nENV X=$PATH:/bin\n", None);
    assert_eq!(
        found,
        vec![("UndefinedVar", 4, "usage of undefined variable '$VERSOIN' (did you mean $VERSION?)".into())]
    );
    // From scratch nothing is known to define PATH.
    assert_eq!(rules("FROM scratch\nENV X=$PATH\n"), vec!["UndefinedVar"]);
}

#[test]
fn from_args() {
    assert_eq!(rules("ARG TAG\nFROM alpine:${TAG:-3}\n"), Vec::<&str>::new());
    assert_eq!(rules("ARG VARIANT\nFROM busybox:stable${VARIANT}\n"), Vec::<&str>::new());
    assert_eq!(rules("FROM --platform=$BUILDPLATFORM alpine\n"), Vec::<&str>::new());
    assert_eq!(
        run("FROM --platform=$BUILDPLATFROM alpine\n", None)[0].2,
        "FROM argument 'BUILDPLATFROM' is not declared (did you mean BUILDPLATFORM?)"
    );
}

#[test]
fn reserved_stage_names() {
    fires(
        "FROM scratch AS scratch\nFROM scratch AS context\n",
        "ReservedStageName",
        &[
            (1, "stage name should not use the same name as reserved stage \"scratch\""),
            (2, "stage name should not use the same name as reserved stage \"context\""),
        ],
    );
    // Names compare lowercased, as stage names do.
    assert_eq!(rules("FROM alpine AS Scratch\n"), vec!["StageNameCasing", "ReservedStageName"]);
    assert!(rules("FROM scratch\nFROM scratch AS a\nFROM alpine AS contexts\n").is_empty());
}

#[test]
fn redundant_target_platform() {
    fires(
        "FROM --platform=${TARGETPLATFORM} scratch\n",
        "RedundantTargetPlatform",
        &[(1, "setting platform to predefined ${TARGETPLATFORM} in FROM is redundant as this is the default behavior")],
    );
    assert_eq!(rules("FROM --platform=${TARGETPLATFORM:-linux/arm64} alpine\n"), vec!["RedundantTargetPlatform"]);
    assert!(rules("# check=skip=RedundantTargetPlatform\nFROM --platform=$TARGETPLATFORM alpine\n").is_empty());
    // Another variable, or text around it, may make it another platform.
    assert!(rules("FROM --platform=$BUILDPLATFORM alpine\n").is_empty());
    assert!(rules("FROM --platform=$TARGETOS/$TARGETARCH alpine\n").is_empty());
    assert!(rules("ARG V\nFROM --platform=$TARGETPLATFORM$V alpine\n").is_empty());
}

#[test]
fn from_platform_flag_const() {
    fires(
        "FROM --platform=linux/amd64 scratch\n",
        "FromPlatformFlagConstDisallowed",
        &[(1, "FROM --platform flag should not use constant value \"linux/amd64\"")],
    );
    // The stage's name says which os or (normalised) architecture it is for.
    assert!(rules("FROM --platform=linux/amd64 scratch AS my_amd64_stage\n").is_empty());
    assert!(rules("FROM --platform=linux/amd64 scratch AS linux\n").is_empty());
    assert!(rules("FROM --platform=linux/aarch64 alpine AS build-arm64\n").is_empty());
    // A variable is not a constant; a value that is no platform is the graph's error.
    assert!(rules("FROM --platform=$BUILDPLATFORM alpine AS build\n").is_empty());
    assert!(rules("ARG P=linux/amd64\nFROM --platform=$P alpine AS build\n").is_empty());
    assert!(!rules("FROM --platform=linux alpine\n").contains(&"FromPlatformFlagConstDisallowed"));
}

#[test]
fn expose_proto_casing() {
    fires(
        "FROM scratch\nEXPOSE 80/TcP 8080/TCP 8080/udp\n",
        "ExposeProtoCasing",
        &[
            (2, "defined protocol '80/TcP' in EXPOSE instruction should be lowercase"),
            (2, "defined protocol '8080/TCP' in EXPOSE instruction should be lowercase"),
        ],
    );
    assert!(rules("FROM alpine\nEXPOSE 80 53/udp 8000-8010/tcp 9/sctp\n").is_empty());
    // An unknown protocol is the builder's error, not a casing problem.
    assert!(rules("FROM alpine\nEXPOSE 80/HTTP\n").is_empty());
}

#[test]
fn expose_invalid_format() {
    let message = "EXPOSE instruction should not define an IP address or host-port mapping, found";
    fires(
        "FROM scratch\nEXPOSE 127.0.0.1:80:80 [::1]:8080:8080 5000:5000 8000\n",
        "ExposeInvalidFormat",
        &[
            (2, &format!("{message} '127.0.0.1:80:80'")),
            (2, &format!("{message} '[::1]:8080:8080'")),
            (2, &format!("{message} '5000:5000'")),
        ],
    );
    assert_eq!(rules("FROM alpine\nEXPOSE 80:80/UDP\n"), vec!["ExposeProtoCasing", "ExposeInvalidFormat"]);
}

#[test]
fn expose_ports_are_expanded() {
    // ARG and ENV values, the stage's own and those of the stage it is built on.
    let src = "FROM alpine AS base\nENV MAP=8080:80\nFROM base\nARG PROTO=TCP\nEXPOSE $MAP 443/$PROTO\n";
    let messages: Vec<String> = run(src, None).into_iter().map(|(_, _, m)| m).collect();
    assert_eq!(
        messages,
        vec![
            "defined protocol '443/TCP' in EXPOSE instruction should be lowercase",
            "EXPOSE instruction should not define an IP address or host-port mapping, found '8080:80'",
        ]
    );
    // One word may expand to several ports.
    assert_eq!(rules("FROM alpine\nENV PORTS=\"80/TCP 81\"\nEXPOSE $PORTS\n"), vec!["ExposeProtoCasing"]);
    // A variable the base image may set has no value here: the port is not checked
    // (UndefinedVar reports the name).
    assert_eq!(rules("FROM alpine\nEXPOSE $PORT/TCP\n"), vec!["UndefinedVar"]);
}

#[test]
fn negatives() {
    assert!(rules("FROM alpine\nSHELL [\"/bin/bash\", \"-c\"]\nCMD echo hi\n").is_empty(), "SHELL set");
    assert!(rules("FROM alpine AS base\nWORKDIR /app\nFROM base\nWORKDIR sub\n").is_empty(), "inherited workdir");
    assert!(rules("FROM alpine\nARG PUBLIC_KEY\nENV KEYBOARD=us\n").is_empty(), "public key, keyboard");
    assert!(rules("FROM alpine\nCMD [\"a\"]\nFROM alpine\nCMD [\"b\"]\n").is_empty(), "one CMD per stage");
}

#[test]
fn check_directive() {
    let config = CheckConfig::parse("skip=JSONArgsRecommended, stagenamecasing;error=true");
    assert!(config.error);
    assert!(!config.enabled(Rule::JsonArgsRecommended));
    assert!(!config.enabled(Rule::StageNameCasing));
    assert!(config.enabled(Rule::UndefinedVar));
    assert!(!CheckConfig::parse("skip=all").enabled(Rule::UndefinedVar));
    assert!(rules("# check=skip=JSONArgsRecommended\nFROM alpine\nCMD echo\n").is_empty());
}
