//! Arbitrary bytes as a layer stream (plain tar, gzip or zstd: `layer::decompress` sniffs the
//! magic) applied with `layer::apply` into `tmp/root`: errors are fine, panics are not, and
//! nothing may appear in `tmp` beside `root`. Sizes are bounded by `apply`'s own caps
//! (`max_bytes`, `max_entries`), set small here, so a zip bomb stops at 16 MiB.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use slipway::layer::{self, ApplyOptions};

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).expect("root dir");
    let opts = ApplyOptions { same_owner: false, skip_devices: true, max_bytes: 16 << 20, max_entries: 4096 };
    if let Ok(reader) = layer::decompress(Cursor::new(data.to_vec())) {
        let _ = layer::apply(reader, &root, &opts);
    }
    let names: Vec<_> =
        std::fs::read_dir(tmp.path()).expect("read tmp").map(|e| e.expect("dir entry").file_name()).collect();
    assert_eq!(names, ["root"], "apply wrote outside its root");
});
