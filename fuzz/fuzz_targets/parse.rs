//! Dockerfile text → AST → typed instructions → build graph → lint findings, with the
//! diagnostics rendered: none of it may panic, whatever the bytes.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use slipway::dockerfile::{lower, parse};
use slipway::graph::lint::{CheckConfig, LintInput, lint};
use slipway::graph::{GraphOptions, build};

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    let ast = match parse(&src) {
        Ok(ast) => ast,
        Err(diagnostics) => {
            let _ = diagnostics.render("Dockerfile", &src);
            return;
        }
    };
    let dockerfile = match lower(&ast) {
        Ok(d) => Some(d),
        Err(diagnostics) => {
            let _ = diagnostics.render("Dockerfile", &src);
            None
        }
    };
    let options = GraphOptions { escape: ast.escape, ..GraphOptions::default() };
    let graph = dockerfile.as_ref().and_then(|d| build(d, &options).ok());
    if let Some(graph) = &graph {
        let _ = graph.levels();
    }
    let build_args = BTreeMap::new();
    let ignored = |p: &str| p.len() % 2 == 0;
    let input = LintInput {
        ast: &ast,
        dockerfile: dockerfile.as_ref(),
        graph: graph.as_ref(),
        build_args: &build_args,
        ignored: Some(&ignored),
    };
    let _ = lint(&input, &CheckConfig::from_ast(&ast));
});
