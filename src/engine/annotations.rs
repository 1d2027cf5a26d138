//! `--annotation [TYPE[PLATFORM]:]KEY=VALUE`, buildx's annotation types: what each annotates in
//! what a build writes. Pure data; the exporters ask [`of`] for their part.

use std::collections::BTreeMap;

use crate::oci::Platform;

/// What an annotation annotates (buildx's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationTarget {
    /// The image manifest (the default type).
    Manifest,
    /// The image index of a multi-platform build.
    Index,
    /// A platform's manifest descriptor inside that index.
    ManifestDescriptor,
    /// The index's descriptor in an OCI layout's `index.json` (`-o type=oci`).
    IndexDescriptor,
}

impl AnnotationTarget {
    /// The type as `--annotation` spells it.
    pub fn name(self) -> &'static str {
        match self {
            AnnotationTarget::Manifest => "manifest",
            AnnotationTarget::Index => "index",
            AnnotationTarget::ManifestDescriptor => "manifest-descriptor",
            AnnotationTarget::IndexDescriptor => "index-descriptor",
        }
    }

    /// The type named `name`.
    pub fn parse(name: &str) -> Option<AnnotationTarget> {
        [Self::Manifest, Self::Index, Self::ManifestDescriptor, Self::IndexDescriptor]
            .into_iter()
            .find(|t| t.name() == name)
    }

    /// Whether it annotates one platform's object, so that a `[PLATFORM]` qualifier means
    /// something for it.
    pub fn per_platform(self) -> bool {
        matches!(self, AnnotationTarget::Manifest | AnnotationTarget::ManifestDescriptor)
    }
}

/// One `--annotation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// What it annotates (`manifest,index:` gives two).
    pub targets: Vec<AnnotationTarget>,
    /// `[PLATFORM]`: only that platform's manifest or descriptor.
    pub platform: Option<Platform>,
    pub key: String,
    pub value: String,
}

impl Annotation {
    /// Whether it annotates `target` (of `platform`'s image, for a per-platform target).
    pub fn applies(&self, target: AnnotationTarget, platform: Option<&Platform>) -> bool {
        self.targets.contains(&target)
            && match (&self.platform, platform) {
                (None, _) => true,
                (Some(wanted), Some(platform)) => wanted.matches(platform),
                (Some(_), None) => false,
            }
    }
}

/// The annotations of `target` (of `platform`'s image for a per-platform one), `None` when there
/// are none (so a document without any is written as before).
pub fn of(
    all: &[Annotation],
    target: AnnotationTarget,
    platform: Option<&Platform>,
) -> Option<BTreeMap<String, String>> {
    let map: BTreeMap<String, String> =
        all.iter().filter(|a| a.applies(target, platform)).map(|a| (a.key.clone(), a.value.clone())).collect();
    (!map.is_empty()).then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(targets: &[AnnotationTarget], platform: Option<&str>, key: &str) -> Annotation {
        Annotation {
            targets: targets.to_vec(),
            platform: platform.map(|p| p.parse().unwrap()),
            key: key.to_string(),
            value: format!("v-{key}"),
        }
    }

    #[test]
    fn each_target_gets_its_own_and_a_platform_only_its_platforms() {
        use AnnotationTarget::*;
        let all = [
            a(&[Manifest], None, "m"),
            a(&[Manifest], Some("linux/arm64"), "m-arm"),
            a(&[Index, Manifest], None, "both"),
            a(&[ManifestDescriptor], Some("linux/amd64"), "d-amd"),
            a(&[IndexDescriptor], None, "id"),
        ];
        let (amd, arm): (Platform, Platform) = ("linux/amd64".parse().unwrap(), "linux/arm64".parse().unwrap());
        let keys =
            |m: Option<BTreeMap<String, String>>| m.map(|m| m.into_keys().collect::<Vec<_>>()).unwrap_or_default();
        assert_eq!(keys(of(&all, Manifest, Some(&amd))), ["both", "m"]);
        assert_eq!(keys(of(&all, Manifest, Some(&arm))), ["both", "m", "m-arm"]);
        assert_eq!(keys(of(&all, Index, None)), ["both"]);
        assert_eq!(keys(of(&all, ManifestDescriptor, Some(&amd))), ["d-amd"]);
        assert_eq!(of(&all, ManifestDescriptor, Some(&arm)), None);
        assert_eq!(keys(of(&all, IndexDescriptor, None)), ["id"]);
        assert_eq!(of(&all, Manifest, Some(&amd)).unwrap()["m"], "v-m");
        for t in [Manifest, Index, ManifestDescriptor, IndexDescriptor] {
            assert_eq!(AnnotationTarget::parse(t.name()), Some(t));
        }
    }
}
