//! Arbitrary bytes decoded as manifest, index, image config and `Versioned` with
//! `oci::canonical`; whatever decodes must survive a round trip through `canonical::to_bytes`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slipway::oci::{ImageConfig, ImageIndex, ImageManifest, Versioned, canonical};

fn round_trip<T>(what: &'static str, data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(value) = canonical::from_bytes::<T>(what, data) else {
        return;
    };
    let bytes = canonical::to_bytes(&value);
    let again: T = canonical::from_bytes(what, &bytes).expect("canonical bytes decode");
    assert_eq!(value, again, "{what} changed in a round trip");
    assert_eq!(bytes, canonical::to_bytes(&again), "{what} canonical bytes are not stable");
}

fuzz_target!(|data: &[u8]| {
    round_trip::<ImageManifest>("manifest", data);
    round_trip::<ImageIndex>("index", data);
    round_trip::<ImageConfig>("config", data);
    // Decode only: `Versioned` is a probe, never written.
    let _ = canonical::from_bytes::<Versioned>("manifest", data);
});
