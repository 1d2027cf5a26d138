//! The records a build exports (`--cache-to`) and another imports (`--cache-from`), as they
//! travel in an image config's [`CONFIG_FIELD`]: per step its cache key, the index of its layer
//! in the carrying manifest, when it was made, and — only to explain a miss on another machine —
//! its portable slot and its inputs with every value a build argument could have written
//! replaced by its digest ([`sanitize`]: no secret, no build-arg value, no host path leaves).
//!
//! Pure: the builder writes and reads the blobs; this module says what is in them.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::files;
use super::key::{CacheKey, KEY_VERSION, KeyInputs, Slot};
use super::miss::{self, MissReason, Remembered};
use crate::oci::Digest;

/// The image config field holding the exported records (beside the standard fields, which
/// registries and tools read as they always do).
pub const CONFIG_FIELD: &str = "slipway.cache.v1";

/// The component names whose values are kept as they are in an export: content digests and
/// settings no build argument writes. Every other value goes out as its digest.
const PLAIN: &[&str] = &["parent", "base", "sources", "bound", "from", "platform", "network", "no-cache"];

/// What [`CONFIG_FIELD`] holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedCache {
    /// [`KEY_VERSION`] of the keys: records of another version never match.
    pub key_version: u32,
    pub records: Vec<ExportedRecord>,
    /// The contents of `RUN --mount=type=cache` directories (`--cache-to …,mounts=true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<ExportedMount>,
}

/// A cache mount's contents: the layer (index in the carrying manifest) holding the tree of
/// the mount with id `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedMount {
    pub id: String,
    pub layer: usize,
}

/// One step's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedRecord {
    pub key: String,
    /// The index of the step's layer in the carrying manifest's layers (and the config's DiffIDs);
    /// `None` when the step changed no file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    /// Unix seconds the record was made (a hit's history keeps it).
    pub created: i64,
    /// [`portable_slot`] of the step.
    pub slot: String,
    /// The step's inputs, [`sanitize`]d, as [`KeyInputs::encode`] writes them, base64.
    pub inputs: String,
    /// For COPY/ADD: the selected files (path and content digest), zstd-compressed, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<String>,
}

/// A step's identity that holds on another machine: the Dockerfile's name as given (relative),
/// the stage and the step's index — no host path.
pub fn portable_slot(dockerfile: &str, stage: &str, index: usize) -> Slot {
    Slot::new(&format!("portable\0{dockerfile}\0{stage}\0{index}"))
}

/// `inputs` as an export may carry them: the [`PLAIN`] components as they are, `url:`/`git:`
/// names as the digest of the source (a URL may hold credentials), every other value as its
/// digest — the `env` component variable by variable, so a miss still names the variable.
pub fn sanitize(inputs: &KeyInputs) -> KeyInputs {
    let hide = |v: &str| Digest::of(v.as_bytes()).to_string();
    let mut out = KeyInputs::default();
    for c in &inputs.components {
        let name = c.name.as_str();
        if PLAIN.contains(&name) {
            out.add(name, c.value.clone());
        } else if let Some(source) = name.strip_prefix("url:").or_else(|| name.strip_prefix("git:")) {
            out.add(format!("{}{}", &name[..4], hide(source)), c.value.clone());
        } else if name == "env" {
            let vars: Vec<String> = c
                .value
                .split(['\n', '\0'])
                .filter(|l| !l.is_empty())
                .map(|l| match l.split_once('=') {
                    Some((k, v)) => format!("{k}={}", hide(v)),
                    None => hide(l),
                })
                .collect();
            out.add(name, vars.join("\n"));
        } else {
            out.add(name, hide(&c.value));
        }
    }
    out
}

impl ExportedRecord {
    /// The record of a step: `inputs` as the key was made from them (sanitized here), `files`
    /// its COPY/ADD file list.
    pub fn new(
        key: &CacheKey,
        layer: Option<usize>,
        created: i64,
        slot: &Slot,
        inputs: &KeyInputs,
        files: Option<&[(String, Digest)]>,
    ) -> ExportedRecord {
        let b64 = base64::engine::general_purpose::STANDARD;
        let files = files.and_then(|f| files::compress(&files::encode(&files::sorted(f))).ok()).map(|z| b64.encode(z));
        ExportedRecord {
            key: key.to_string(),
            layer,
            created,
            slot: slot.digest().to_string(),
            inputs: b64.encode(sanitize(inputs).encode()),
            files,
        }
    }

    /// The key, when it parses.
    pub fn cache_key(&self) -> Option<CacheKey> {
        self.key.parse().ok()
    }

    /// Why a step with `inputs` and `files` (as the builder computed them, unsanitized) misses
    /// this record of the same slot; `None` when nothing differs that an export shows. Values are
    /// never shown (they are digests): `ARG VERSION changed`, `src/main.rs changed (…)`.
    pub fn explain(&self, inputs: &KeyInputs, files: Option<&[(String, Digest)]>) -> Option<String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let old = KeyInputs::decode(&b64.decode(&self.inputs).ok()?)?;
        let remembered = Remembered { key_version: KEY_VERSION, inputs: old };
        let files = files.map(files::sorted);
        let old_files = || self.files.as_ref().and_then(|z| files::decompress(&b64.decode(z).ok()?));
        match miss::explain(Some(&remembered), &sanitize(inputs), files.as_deref(), old_files) {
            MissReason::NoRecord => None,
            reason => Some(reason.without_values()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(version: &str, token: &str, file: &[u8]) -> KeyInputs {
        let mut i = KeyInputs::default();
        i.add("parent", "scratch")
            .add("instruction", format!("COPY app-{version} /app"))
            .add("arg:VERSION", version)
            .add("env", format!("PATH=/bin\nTOKEN={token}"))
            .add("url:https://user:pw@example.test/x", Digest::of(b"body").to_string())
            .add("sources", Digest::of(file).to_string());
        i
    }

    #[test]
    fn no_value_a_build_argument_wrote_leaves_and_misses_are_still_named() {
        let before = inputs("1.2", "s3cr3t", b"a");
        let files_before = vec![("src/main.rs".to_string(), Digest::of(b"a"))];
        let record = ExportedRecord::new(
            &before.key(),
            Some(0),
            1,
            &portable_slot("Dockerfile", "0", 1),
            &before,
            Some(&files_before),
        );
        let json = serde_json::to_string(&ExportedCache {
            key_version: KEY_VERSION,
            records: vec![record.clone()],
            mounts: Vec::new(),
        })
        .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let decoded = String::from_utf8_lossy(&b64.decode(&record.inputs).unwrap()).into_owned();
        for secret in ["1.2", "s3cr3t", "user:pw", "example.test"] {
            assert!(!json.contains(secret) && !decoded.contains(secret), "{secret} leaked: {decoded}");
        }
        assert_eq!(record.explain(&before, Some(&files_before)), None, "nothing differs");
        assert_eq!(
            record.explain(&inputs("1.3", "s3cr3t", b"a"), Some(&files_before)).as_deref(),
            Some("instruction changed")
        );
        assert_eq!(
            record.explain(&inputs("1.2", "other", b"a"), Some(&files_before)).as_deref(),
            Some("ENV TOKEN changed")
        );
        let files_after = vec![("src/main.rs".to_string(), Digest::of(b"b"))];
        let reason = record.explain(&inputs("1.2", "s3cr3t", b"b"), Some(&files_after)).unwrap();
        assert!(reason.starts_with("src/main.rs changed (sha256:"), "{reason}");
        assert_eq!(record.cache_key(), Some(before.key()));
    }

    #[test]
    fn the_portable_slot_holds_no_host_path_and_differs_by_step() {
        assert_eq!(portable_slot("Dockerfile", "build", 2), portable_slot("Dockerfile", "build", 2));
        assert_ne!(portable_slot("Dockerfile", "build", 2), portable_slot("Dockerfile", "build", 3));
    }
}
