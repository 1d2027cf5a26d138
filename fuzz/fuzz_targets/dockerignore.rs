//! `.dockerignore` files: parsing arbitrary text and matching arbitrary paths against it must
//! never panic. Input: the ignore file, a NUL byte, then paths separated by newlines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slipway::context::ignore::IgnoreFile;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (file, paths) = text.split_once('\0').unwrap_or((&text, "a/b/c\nvendor\nsrc/main.go"));
    let Ok(ignore) = IgnoreFile::parse(".dockerignore", file) else {
        return;
    };
    for path in paths.lines() {
        let _ = ignore.matches(path);
        let _ = ignore.can_skip_dir(path);
    }
});
