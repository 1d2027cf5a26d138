//! Platforms (`linux/amd64`, `linux/arm64/v8`) and their normalisation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An OCI platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(rename = "os.version", skip_serializing_if = "Option::is_none", default)]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", skip_serializing_if = "Option::is_none", default)]
    pub os_features: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

/// Why a string is not a platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {input:?}: expected os/arch[/variant]")]
pub struct PlatformError {
    pub input: String,
}

impl Platform {
    /// The platform this process runs on.
    pub fn host() -> Platform {
        let arch = std::env::consts::ARCH;
        Platform::new("linux", arch, None)
    }

    /// A normalised platform from its parts (`x86_64` → `amd64`, `aarch64` → `arm64`, ...).
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let (arch, default_variant) = match arch.to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" | "amd64" => ("amd64".to_string(), None),
            "aarch64" | "arm64" => ("arm64".to_string(), None),
            "armhf" | "arm" => ("arm".to_string(), Some("v7")),
            "armel" => ("arm".to_string(), Some("v6")),
            "i386" | "i686" | "386" => ("386".to_string(), None),
            other => (other.to_string(), None),
        };
        let mut variant = variant.map(|v| v.to_ascii_lowercase()).or(default_variant.map(str::to_string));
        if arch == "arm64" && variant.as_deref() == Some("v8") {
            variant = None;
        }
        if arch == "arm" {
            variant = Some(match variant.as_deref() {
                Some("5" | "v5") => "v5".to_string(),
                Some("6" | "v6") => "v6".to_string(),
                Some("8" | "v8") => "v8".to_string(),
                _ => "v7".to_string(),
            });
        }
        Platform { architecture: arch, os, os_version: None, os_features: None, variant }
    }

    /// Whether an image for `self` can run where `other` is wanted (same os, arch and variant,
    /// an absent variant matching anything).
    pub fn matches(&self, other: &Platform) -> bool {
        let norm_a = Platform::new(&self.os, &self.architecture, self.variant.as_deref());
        let norm_b = Platform::new(&other.os, &other.architecture, other.variant.as_deref());
        norm_a.os == norm_b.os
            && norm_a.architecture == norm_b.architecture
            && (norm_a.variant.is_none() || norm_b.variant.is_none() || norm_a.variant == norm_b.variant)
    }
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        let err = || PlatformError { input: s.to_string() };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))) {
            return Err(err());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(err()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        assert_eq!("linux/x86_64".parse::<Platform>().unwrap().to_string(), "linux/amd64");
        assert_eq!("linux/arm64/v8".parse::<Platform>().unwrap().to_string(), "linux/arm64");
        assert_eq!("linux/arm".parse::<Platform>().unwrap().to_string(), "linux/arm/v7");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//amd64".parse::<Platform>().is_err());
        assert!("linux/amd64/v2/x".parse::<Platform>().is_err());
    }

    #[test]
    fn matching() {
        let a: Platform = "linux/arm64".parse().unwrap();
        let b: Platform = "linux/aarch64/v8".parse().unwrap();
        assert!(a.matches(&b));
        assert!(!a.matches(&"linux/amd64".parse().unwrap()));
    }
}
