//! Shell-word expansion of arbitrary words against a small environment, with both escape
//! characters and both BuildKit modes: errors are fine, panics are not.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use slipway::dockerfile::expand::Expander;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let word = String::from_utf8_lossy(rest);
    let env: BTreeMap<String, String> = [("A", "a b"), ("EMPTY", ""), ("P", "/usr/local/bin"), ("STAR", "*?[")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let escape = if mode & 1 == 0 { '\\' } else { '`' };
    let expander = Expander::new(escape, &env).raw_quotes(mode & 2 != 0).skip_unset(mode & 4 != 0);
    let _ = expander.expand_word(&word);
    let _ = expander.expand_words(&word);
});
