//! Unit tests of the build graph: bases, edges, target pruning, levels, ONBUILD, errors.

use std::collections::BTreeMap;

use super::*;
use crate::dockerfile::parse_dockerfile;

#[track_caller]
fn graph_with(src: &str, options: &GraphOptions) -> Result<BuildGraph, GraphErrors> {
    let dockerfile = parse_dockerfile(src).expect("dockerfile parses");
    build(&dockerfile, options)
}

#[track_caller]
fn graph(src: &str) -> BuildGraph {
    graph_with(src, &GraphOptions::default()).expect("graph builds")
}

#[track_caller]
fn errors(src: &str, options: &GraphOptions) -> Vec<String> {
    match graph_with(src, options) {
        Ok(_) => panic!("expected graph errors"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn ids(v: &[usize]) -> Vec<StageId> {
    v.iter().copied().map(StageId).collect()
}

#[test]
fn bases_scratch_stage_and_image() {
    let g = graph("FROM scratch AS a\nFROM A AS b\nFROM alpine:3.20\n");
    assert_eq!(g.stages[0].base, Base::Scratch);
    assert_eq!(g.stages[1].base, Base::Stage(StageId(0)));
    assert_eq!(g.stages[2].base, Base::Image(image("alpine:3.20")));
    assert_eq!(g.target, StageId(2));
}

#[test]
fn from_expands_global_args_and_build_args() {
    let src = "ARG BASE=debian\nARG TAG\nFROM $BASE:${TAG:-12}\n";
    assert_eq!(graph(src).stages[0].base, Base::Image(image("debian:12")));
    let build_args = BTreeMap::from([("BASE".into(), "ubuntu".into()), ("TAG".into(), "24.04".into())]);
    let options = GraphOptions { build_args, ..GraphOptions::default() };
    assert_eq!(graph_with(src, &options).expect("graph").stages[0].base, Base::Image(image("ubuntu:24.04")));
}

#[test]
fn from_can_name_a_stage_through_an_arg() {
    let g = graph("ARG VARIANT=build\nFROM alpine AS build\nFROM ${VARIANT}\n");
    assert_eq!(g.stages[1].base, Base::Stage(StageId(0)));
    assert_eq!(g.stages[1].deps, ids(&[0]));
}

#[test]
fn platform_args_are_predefined() {
    let g = graph("FROM --platform=$BUILDPLATFORM alpine\n");
    assert_eq!(g.stages[0].platform.as_ref().map(ToString::to_string).as_deref(), Some("linux/amd64"));
}

#[test]
fn own_name_on_from_is_an_image() {
    let g = graph("FROM node AS node\n");
    assert_eq!(g.stages[0].base, Base::Image(image("node")));
}

#[test]
fn copy_from_stage_index_and_image() {
    let src = "FROM alpine AS one\nFROM alpine\nFROM scratch\nCOPY --from=ONE /a /a\nCOPY --from=1 /b /b\nCOPY --from=busybox:1 /c /c\n";
    let g = graph(src);
    let last = &g.stages[2];
    assert_eq!(last.deps, ids(&[0, 1]));
    assert_eq!(last.edges.iter().map(|e| e.kind).collect::<Vec<_>>(), vec![EdgeKind::CopyFrom; 2]);
    assert_eq!(last.images, vec![ImageInput { image: image("busybox:1"), span: Span::new(6, 6, 1) }]);
}

#[test]
fn run_mount_from_is_an_edge() {
    let g = graph("FROM alpine AS src\nFROM alpine\nRUN --mount=from=src,target=/s ls /s\n");
    assert_eq!(g.stages[1].edges[0].kind, EdgeKind::MountFrom);
    assert_eq!(g.stages[1].deps, ids(&[0]));
}

#[test]
fn target_prunes_unused_stages() {
    let src = "FROM alpine AS a\nFROM alpine AS b\nFROM a AS c\nFROM scratch AS d\nCOPY --from=b /x /x\n";
    let options = GraphOptions { target: Some("C".into()), ..GraphOptions::default() };
    let g = graph_with(src, &options).expect("graph");
    assert_eq!(g.target, StageId(2));
    assert_eq!(g.needed(), ids(&[0, 2]));
    assert_eq!(g.skipped(), ids(&[1, 3]));
    let g = graph(src);
    assert_eq!(g.needed(), ids(&[1, 3]));
}

#[test]
fn unknown_target_lists_the_stages() {
    let options = GraphOptions { target: Some("prod".into()), ..GraphOptions::default() };
    assert_eq!(
        errors("FROM alpine AS build\nFROM alpine AS test\n", &options),
        vec![r#"target stage "prod" could not be found; stages are: build, test"#]
    );
}

#[test]
fn levels_group_independent_stages() {
    let src = "FROM alpine AS a\nFROM alpine AS b\nFROM a AS c\nCOPY --from=b /x /x\nFROM alpine AS d\nFROM scratch\nCOPY --from=c / /\nCOPY --from=d / /\n";
    let g = graph(src);
    assert_eq!(g.levels(), vec![ids(&[0, 1, 3]), ids(&[2]), ids(&[4])]);
}

#[test]
fn forward_and_self_references_are_errors() {
    let src = "FROM later AS first\nFROM alpine AS second\nCOPY --from=second /a /a\nCOPY --from=5 /b /b\nFROM alpine AS later\n";
    assert_eq!(
        errors(src, &GraphOptions::default()),
        vec![
            r#"stage "later" is used before it is defined (a stage can only refer to earlier stages)"#,
            r#"stage "second" refers to itself (circular dependency)"#,
            "stage index 5 is not an earlier stage (this is stage 1)",
        ]
    );
}

#[test]
fn error_spans_point_at_the_instruction() {
    let err = graph_with("FROM alpine\nCOPY --from=0 /a /a\n", &GraphOptions::default()).expect_err("self");
    assert_eq!(err.0[0].span(), Some(Span::new(2, 2, 1)));
}

#[test]
fn blank_base_is_an_error() {
    assert_eq!(errors("ARG IMG\nFROM $IMG\n", &GraphOptions::default()), vec!["base name ($IMG) should not be blank"]);
}

#[test]
fn steps_record_the_variables_they_use() {
    let src =
        "FROM alpine\nARG VERSION=1\nENV DIR=/opt/$VERSION\nWORKDIR $DIR\nCOPY $MISSING /x\nRUN echo\nCMD $IGNORED\n";
    let g = graph(src);
    let steps = &g.stages[0].instructions;
    let used = |i: usize| steps[i].used.iter().cloned().collect::<Vec<_>>();
    assert_eq!(used(1), vec!["VERSION"]);
    assert_eq!(used(2), vec!["DIR"]);
    assert_eq!(used(3), vec!["MISSING"]);
    assert_eq!(steps[3].unset.iter().cloned().collect::<Vec<_>>(), vec!["MISSING"]);
    assert_eq!(used(4), vec!["VERSION"], "RUN sees the ARGs in scope");
    assert!(used(5).is_empty());
}

#[test]
fn child_stage_inherits_variables() {
    let g = graph("FROM alpine AS base\nENV A=1\nFROM base\nRUN true\nUSER $A\n");
    assert!(g.stages[1].instructions[1].unset.is_empty());
}

#[test]
fn onbuild_triggers_go_first_and_add_edges() {
    let mut g = graph("FROM alpine AS assets\nFROM node:22\nRUN build\n");
    let triggers = vec!["COPY --from=assets /a /a".to_string(), "RUN npm ci".to_string()];
    g.apply_onbuild(StageId(1), &triggers).expect("triggers apply");
    let stage = &g.stages[1];
    assert_eq!(stage.instructions.len(), 3);
    assert_eq!(stage.instructions[0].origin, StepOrigin::Onbuild { trigger: triggers[0].clone() });
    assert_eq!(stage.instructions[2].origin, StepOrigin::Dockerfile);
    assert_eq!(stage.deps, ids(&[0]));
}

#[test]
fn onbuild_rejects_forbidden_triggers() {
    let mut g = graph("FROM alpine\n");
    let err = g.apply_onbuild(StageId(0), &["FROM x".to_string(), "BOGUS y".to_string()]).expect_err("rejected");
    assert_eq!(err.0.len(), 2);
    assert_eq!(err.0[0].to_string(), "`FROM` isn't allowed as an ONBUILD trigger (from the base image)");
    assert!(g.stages[0].instructions.is_empty());
}

#[test]
fn no_stages() {
    let dockerfile = Dockerfile { meta_args: Vec::new(), stages: Vec::new() };
    assert_eq!(build(&dockerfile, &GraphOptions::default()).expect_err("empty").0, vec![GraphError::NoStages]);
}

use crate::dockerfile::Dockerfile;

fn image(word: &str) -> ImageRef {
    let image = ImageRef::parse(word);
    assert!(image.reference.is_ok(), "{word} is a reference");
    image
}

#[test]
fn a_word_that_is_no_reference_keeps_its_error_and_a_bad_platform_is_an_error() {
    let g = graph("FROM Alpine\n");
    assert!(matches!(&g.stages[0].base, Base::Image(ImageRef { word, reference: Err(_) }) if word == "Alpine"));
    let errors = graph_with("FROM --platform=linux alpine\n", &GraphOptions::default()).expect_err("no arch");
    assert!(matches!(errors.errors(), [super::GraphError::Platform { .. }]), "{errors:?}");
}
