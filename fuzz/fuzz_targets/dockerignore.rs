//! `.dockerignore` patterns: compiling arbitrary patterns and matching them against
//! arbitrary paths must never panic. Input: pattern, a NUL byte, path.
//!
//! Needs `context::ignore` (in progress on another branch); `scripts/fuzz` skips this target
//! until the module is declared in `src/context/mod.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slipway::context::ignore::Pattern;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pattern, path) = text.split_once('\0').unwrap_or((&text, "a/b/c"));
    let Ok(pattern) = Pattern::compile(pattern) else {
        return;
    };
    let _ = pattern.matches(path);
    let _ = pattern.matches_or_parent(path);
    if let Some((dir, _)) = path.rsplit_once('/') {
        let _ = pattern.could_match_under(dir);
    }
});
