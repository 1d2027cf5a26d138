//! `WWW-Authenticate` challenges (registry auth) from arbitrary strings: `None` is fine,
//! panics are not. The registry has no `Link` header parser (tag lists are not paginated).
#![no_main]

use libfuzzer_sys::fuzz_target;
use slipway::registry::fuzzing::parse_challenge;

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);
    let _ = parse_challenge(&header);
});
