//! The one place manifests, indexes and configs become bytes.
//!
//! Output is compact JSON with struct fields in declaration order and maps sorted (every map
//! in `oci` is a `BTreeMap`), so the same value always gives the same bytes and digest.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Digest;

/// Serialises `value` to its canonical bytes.
pub fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("oci types serialise infallibly: string keys, no non-finite floats")
}

/// Canonical bytes and their digest.
pub fn to_bytes_and_digest<T: Serialize>(value: &T) -> (Vec<u8>, Digest) {
    let bytes = to_bytes(value);
    let digest = Digest::of(&bytes);
    (bytes, digest)
}

/// Why JSON bytes did not decode.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} json")]
pub struct DecodeError {
    pub what: &'static str,
    #[source]
    pub source: serde_json::Error,
}

/// Decodes JSON bytes into an `oci` type; `what` names it in the error.
pub fn from_bytes<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(bytes).map_err(|source| DecodeError { what, source })
}
