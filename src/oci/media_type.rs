//! Media types of OCI and Docker schema2 objects.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A media type; the ones slipway handles by name, anything else kept verbatim.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaType {
    OciIndex,
    OciManifest,
    OciConfig,
    OciLayer,
    OciLayerGzip,
    OciLayerZstd,
    OciLayerNonDistributable,
    OciLayerNonDistributableGzip,
    OciLayerNonDistributableZstd,
    DockerManifestList,
    DockerManifest,
    DockerConfig,
    DockerLayerGzip,
    DockerForeignLayerGzip,
    DockerManifestV1,
    DockerManifestV1Signed,
    /// Any other well-formed media type (artifacts, attestations, ...).
    Other(String),
}

/// Why a string is not a media type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid media type {input:?}")]
pub struct MediaTypeError {
    pub input: String,
}

const NAMED: &[(MediaType, &str)] = &[
    (MediaType::OciIndex, "application/vnd.oci.image.index.v1+json"),
    (MediaType::OciManifest, "application/vnd.oci.image.manifest.v1+json"),
    (MediaType::OciConfig, "application/vnd.oci.image.config.v1+json"),
    (MediaType::OciLayer, "application/vnd.oci.image.layer.v1.tar"),
    (MediaType::OciLayerGzip, "application/vnd.oci.image.layer.v1.tar+gzip"),
    (MediaType::OciLayerZstd, "application/vnd.oci.image.layer.v1.tar+zstd"),
    (MediaType::OciLayerNonDistributable, "application/vnd.oci.image.layer.nondistributable.v1.tar"),
    (MediaType::OciLayerNonDistributableGzip, "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
    (MediaType::OciLayerNonDistributableZstd, "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"),
    (MediaType::DockerManifestList, "application/vnd.docker.distribution.manifest.list.v2+json"),
    (MediaType::DockerManifest, "application/vnd.docker.distribution.manifest.v2+json"),
    (MediaType::DockerConfig, "application/vnd.docker.container.image.v1+json"),
    (MediaType::DockerLayerGzip, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
    (MediaType::DockerForeignLayerGzip, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
    (MediaType::DockerManifestV1, "application/vnd.docker.distribution.manifest.v1+json"),
    (MediaType::DockerManifestV1Signed, "application/vnd.docker.distribution.manifest.v1+prettyjws"),
];

/// How a layer blob is compressed, as its media type says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

impl MediaType {
    /// The media type string.
    pub fn as_str(&self) -> &str {
        if let MediaType::Other(s) = self {
            return s;
        }
        NAMED.iter().find(|(m, _)| m == self).map(|(_, s)| *s).expect("every named media type is in NAMED")
    }

    /// An image index or a Docker manifest list.
    pub fn is_index(&self) -> bool {
        matches!(self, MediaType::OciIndex | MediaType::DockerManifestList)
    }

    /// A single-platform image manifest (OCI or Docker schema2).
    pub fn is_manifest(&self) -> bool {
        matches!(self, MediaType::OciManifest | MediaType::DockerManifest)
    }

    /// A layer media type, with its compression.
    pub fn layer_compression(&self) -> Option<LayerCompression> {
        use MediaType::*;
        match self {
            OciLayer | OciLayerNonDistributable => Some(LayerCompression::None),
            OciLayerGzip | OciLayerNonDistributableGzip | DockerLayerGzip | DockerForeignLayerGzip => {
                Some(LayerCompression::Gzip)
            }
            OciLayerZstd | OciLayerNonDistributableZstd => Some(LayerCompression::Zstd),
            Other(s) if s == "application/vnd.docker.image.rootfs.diff.tar" => Some(LayerCompression::None),
            _ => None,
        }
    }

    /// The OCI layer media type for a compression.
    pub fn oci_layer(c: LayerCompression) -> MediaType {
        match c {
            LayerCompression::None => MediaType::OciLayer,
            LayerCompression::Gzip => MediaType::OciLayerGzip,
            LayerCompression::Zstd => MediaType::OciLayerZstd,
        }
    }
}

impl FromStr for MediaType {
    type Err = MediaTypeError;
    fn from_str(s: &str) -> Result<MediaType, MediaTypeError> {
        if let Some((m, _)) = NAMED.iter().find(|(_, name)| *name == s) {
            return Ok(m.clone());
        }
        // RFC 6838: type "/" subtype, restricted-name characters.
        let ok_name = |p: &str| {
            !p.is_empty() && p.len() <= 127 && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        match s.split_once('/') {
            Some((ty, sub)) if ok_name(ty) && ok_name(sub) => Ok(MediaType::Other(s.to_string())),
            _ => Err(MediaTypeError { input: s.to_string() }),
        }
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaType({})", self.as_str())
    }
}

impl Serialize for MediaType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MediaType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<MediaType, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_named_and_other() {
        for (m, s) in NAMED {
            assert_eq!(&s.parse::<MediaType>().unwrap(), m);
            assert_eq!(m.as_str(), *s);
        }
        let other: MediaType = "application/vnd.in-toto+json".parse().unwrap();
        assert_eq!(other.as_str(), "application/vnd.in-toto+json");
        assert!("not a media type".parse::<MediaType>().is_err());
        assert!("a/b/c".parse::<MediaType>().is_err());
    }

    #[test]
    fn layer_compression() {
        assert_eq!(MediaType::DockerLayerGzip.layer_compression(), Some(LayerCompression::Gzip));
        assert_eq!(MediaType::OciLayerZstd.layer_compression(), Some(LayerCompression::Zstd));
        assert_eq!(MediaType::OciConfig.layer_compression(), None);
    }
}
