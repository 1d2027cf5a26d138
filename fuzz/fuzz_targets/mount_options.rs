//! `RUN --mount=` values: `RunMount::new`, resolution with an identity expander, `csv_fields`
//! and `parse_device` on arbitrary strings. Errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slipway::dockerfile::{RunMount, csv_fields, parse_device};

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    if let Ok(mount) = RunMount::new(&value) {
        let _ = mount.resolve(&mut |word: &str| Ok(word.to_owned()));
    }
    let _ = csv_fields(&value);
    let _ = parse_device(&value);
});
