//! `Reference`, `Digest` and `Platform` parsing. What parses must print to a string that
//! parses to an equal value (Docker's normalisation happens at the first parse).
#![no_main]

use libfuzzer_sys::fuzz_target;
use slipway::oci::{Digest, Platform, Reference};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(r) = Reference::parse(&s) {
        let again = Reference::parse(&r.to_string()).expect("a printed reference parses");
        assert_eq!(r, again);
        let _ = r.familiar();
    }
    if let Ok(r) = Reference::parse_loose(&s) {
        let again = Reference::parse_loose(&r.to_string()).expect("a printed reference parses");
        assert_eq!(r, again);
    }
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string().parse::<Digest>().expect("a printed digest parses"), d);
    }
    if let Ok(p) = s.parse::<Platform>() {
        assert_eq!(p.to_string().parse::<Platform>().expect("a printed platform parses"), p);
    }
});
