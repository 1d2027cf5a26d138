//! Image configuration (`application/vnd.oci.image.config.v1+json`), with the Docker
//! extensions builders write (`Healthcheck`, `OnBuild`, `Shell`, `ArgsEscaped`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::DiffId;

/// An image config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(rename = "os.version", skip_serializing_if = "Option::is_none", default)]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", skip_serializing_if = "Option::is_none", default)]
    pub os_features: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub history: Vec<History>,
}

/// The runtime defaults of an image (`config` in an image config).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Map<String, serde_json::Value>>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub env: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub volumes: Option<BTreeMap<String, serde_json::Map<String, serde_json::Value>>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub args_escaped: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub on_build: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub shell: Option<Vec<String>>,
}

/// Docker's healthcheck extension; durations in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub test: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub interval: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub start_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub start_interval: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub retries: Option<i64>,
}

/// `rootfs` of an image config: the layers' DiffIDs, base first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<DiffId>,
}

impl Default for RootFs {
    fn default() -> RootFs {
        RootFs { kind: "layers".to_string(), diff_ids: Vec::new() }
    }
}

/// One history entry; `empty_layer` entries have no layer in `rootfs.diff_ids`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// Checks that the non-empty history entries and the layers agree in number.
    pub fn history_matches_layers(&self) -> bool {
        if self.history.is_empty() {
            return true;
        }
        self.history.iter().filter(|h| !h.empty_layer).count() == self.rootfs.diff_ids.len()
    }
}
