//! The `manifest.json` of a docker archive (`docker save`): one entry per image, naming its
//! config and layers by their paths inside the archive.

use serde::{Deserialize, Serialize};

/// One image of a docker archive's `manifest.json` (a JSON array of these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerManifestEntry {
    /// The config's path in the archive (`blobs/sha256/<hex>`, or `<hex>.json` in older archives).
    pub config: String,
    /// The image's names in Docker's familiar form; `null` or absent for an untagged image in
    /// archives Docker wrote, `[]` in the ones slipway writes.
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// The layers' paths in the archive, base layer first.
    pub layers: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_s_untagged_forms_and_writes_an_array() {
        for json in [r#"{"Config":"c","Layers":[]}"#, r#"{"Config":"c","RepoTags":null,"Layers":[]}"#] {
            let entry: DockerManifestEntry = serde_json::from_str(json).unwrap();
            assert_eq!(entry.repo_tags, None);
        }
        let entry = DockerManifestEntry { config: "c".into(), repo_tags: Some(vec![]), layers: vec!["l".into()] };
        let bytes = crate::oci::canonical::to_bytes(&entry);
        assert_eq!(String::from_utf8(bytes).unwrap(), r#"{"Config":"c","RepoTags":[],"Layers":["l"]}"#);
    }
}
