//! Cache keys: the versioned, ordered components a step's result depends on, hashed.

use std::fmt;
use std::str::FromStr;

use crate::oci::{Digest, DigestError, Hasher};

/// Bump when the meaning of a key changes: old records then simply never match.
pub const KEY_VERSION: u32 = 1;

/// What every key's hash starts with, before the version: keys cannot collide with other sha256
/// uses of the same bytes (a slot, a blob).
const KEY_DOMAIN: &[u8] = b"slipway cache key\0";
const SLOT_DOMAIN: &[u8] = b"slipway cache slot\0";

/// A validated cache key: sha256 over the versioned, ordered components.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(Digest);

impl CacheKey {
    /// The key as a digest.
    pub fn digest(&self) -> Digest {
        self.0
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.0)
    }
}

impl FromStr for CacheKey {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<CacheKey, DigestError> {
        s.parse().map(CacheKey)
    }
}

/// One named input of a key. Names are stable identifiers (see the module doc); values may be long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// A stable identifier: `parent`, `instruction`, `arg:NAME`, ... (the module doc lists them).
    pub name: String,
    /// What the step saw; any length.
    pub value: String,
}

/// The components of one step's key, in the order the builder added them (the order hashed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyInputs {
    pub components: Vec<Component>,
}

impl KeyInputs {
    /// Appends a component.
    pub fn add(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.components.push(Component { name: name.into(), value: value.into() });
        self
    }

    /// The value of the first component named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.components.iter().find(|c| c.name == name).map(|c| c.value.as_str())
    }

    /// sha256 of a domain tag, [`KEY_VERSION`] and each (name, value) length-prefixed, so no two
    /// different component lists hash the same bytes.
    pub fn key(&self) -> CacheKey {
        let mut h = Hasher::new();
        h.update(KEY_DOMAIN);
        h.update(&KEY_VERSION.to_be_bytes());
        h.update(&self.encode());
        CacheKey(h.finish())
    }

    /// The components as bytes: per component, the u64 big-endian length and bytes of the name,
    /// then of the value. Also the on-disk form of a slot's remembered inputs.
    pub(super) fn encode(&self) -> Vec<u8> {
        let len: usize = self.components.iter().map(|c| 16 + c.name.len() + c.value.len()).sum();
        let mut out = Vec::with_capacity(len);
        for c in &self.components {
            for part in [&c.name, &c.value] {
                out.extend_from_slice(&(part.len() as u64).to_be_bytes());
                out.extend_from_slice(part.as_bytes());
            }
        }
        out
    }

    /// The inverse of [`KeyInputs::encode`]; `None` on malformed bytes.
    pub(super) fn decode(mut bytes: &[u8]) -> Option<KeyInputs> {
        let mut take = || -> Option<String> {
            let (len, rest) = bytes.split_first_chunk::<8>()?;
            let len = usize::try_from(u64::from_be_bytes(*len)).ok()?;
            if rest.len() < len {
                return None;
            }
            let (s, rest) = rest.split_at(len);
            bytes = rest;
            String::from_utf8(s.to_vec()).ok()
        };
        let mut inputs = KeyInputs::default();
        while let Some(name) = take() {
            let value = take()?;
            inputs.components.push(Component { name, value });
        }
        bytes.is_empty().then_some(inputs)
    }
}

/// The identity of "this step" across builds (context, Dockerfile, stage, step index), hashed; it
/// names what a slot was last built from, to explain the next miss.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Slot(Digest);

impl Slot {
    /// The slot of `identity` (`<context dir>\0<dockerfile>\0<stage>\0<step index>`).
    pub fn new(identity: &str) -> Slot {
        let mut h = Hasher::new();
        h.update(SLOT_DOMAIN);
        h.update(identity.as_bytes());
        Slot(h.finish())
    }

    /// The slot as a digest.
    pub fn digest(&self) -> Digest {
        self.0
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Slot({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, &str)]) -> KeyInputs {
        let mut k = KeyInputs::default();
        for (n, v) in pairs {
            k.add(*n, *v);
        }
        k
    }

    /// A golden key: if this changes, the key format changed, and [`KEY_VERSION`] must be bumped
    /// (then update the golden value).
    #[test]
    fn key_is_stable() {
        let k = inputs(&[
            ("parent", "scratch"),
            ("base", "scratch"),
            ("instruction", "RUN make all"),
            ("arg:VERSION", "1.2"),
            ("env", "PATH=/usr/bin\nHOME=/root"),
            ("platform", "linux/amd64"),
        ]);
        assert_eq!(KEY_VERSION, 1, "bumped the version: update the golden key below");
        assert_eq!(k.key().to_string(), "sha256:e70b05d7a65315fd7e2fa30bd94ef6be8ad7d12dc06a771d6bc939ad237042b5");
    }

    #[test]
    fn order_and_boundaries_matter() {
        let a = inputs(&[("user", "root"), ("workdir", "/")]);
        let b = inputs(&[("workdir", "/"), ("user", "root")]);
        assert_ne!(a.key(), b.key());
        // Moving bytes between name and value, or between two components, changes the key.
        assert_ne!(inputs(&[("ab", "c")]).key(), inputs(&[("a", "bc")]).key());
        assert_ne!(inputs(&[("a", "b"), ("c", "d")]).key(), inputs(&[("a", "b\0\0\0\0\0\0\0\u{1}c"), ("", "d")]).key());
        assert_ne!(inputs(&[]).key(), inputs(&[("", "")]).key());
        assert_eq!(a.key(), a.clone().key());
    }

    #[test]
    fn key_parses_and_round_trips() {
        let k = inputs(&[("instruction", "RUN true")]).key();
        assert_eq!(k.to_string().parse::<CacheKey>().unwrap(), k);
        assert!(k.to_string().starts_with("sha256:"));
        assert!("sha256:nothex".parse::<CacheKey>().is_err());
        assert_eq!(k.digest().to_string(), k.to_string());
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let k = inputs(&[("env", "A=1\nB=\u{e9}"), ("", ""), ("sources", "sha256:00")]);
        assert_eq!(KeyInputs::decode(&k.encode()), Some(k.clone()));
        let bytes = k.encode();
        assert_eq!(KeyInputs::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(KeyInputs::decode(&[0, 0, 0, 0, 0, 0, 0, 9, b'x']), None);
        assert_eq!(KeyInputs::decode(&[]), Some(KeyInputs::default()));
    }

    #[test]
    fn slots_differ_from_keys_of_the_same_text() {
        let s = Slot::new("/ctx\0Dockerfile\0build\0step-1");
        assert_eq!(s, Slot::new("/ctx\0Dockerfile\0build\0step-1"));
        assert_ne!(s, Slot::new("/ctx\0Dockerfile\0build\0step-2"));
        assert_ne!(s.digest(), inputs(&[]).key().digest());
    }
}
