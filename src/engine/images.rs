//! Where `FROM` and `COPY --from` images come from: the store, and (when given) a registry.
//! A seam with two implementations: [`LocalImages`] and [`RegistryImages`] (the store, then a
//! pull into it), so a program using slipway as a library builds from a registry base as the
//! CLI does.

use super::BuildError;
use crate::image::{Image, ImageError};
use crate::oci::{Platform, Reference};
use crate::progress::Reporter;
use crate::registry::{Client, PullOptions, RegistryError, Settings};
use crate::store::{Lease, Store};

/// Where base images come from.
pub trait ImageSource: Sync {
    /// The image `reference` names (as written after `FROM`, expanded), for `platform`; what it
    /// brings into the store without naming it is kept by `lease` (the build's).
    fn image(
        &self,
        store: &Store,
        reference: &Reference,
        platform: &Platform,
        lease: &Lease,
    ) -> Result<Image, BuildError>;
}

/// Images already in the store, nothing else.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalImages;

impl ImageSource for LocalImages {
    /// The stored image for `platform`: a multi-platform image's entry, or a single-platform
    /// image of that platform (another platform's is [`ImageError::WrongPlatform`]).
    fn image(&self, store: &Store, reference: &Reference, platform: &Platform, _: &Lease) -> Result<Image, BuildError> {
        let err = |source| BuildError::BaseImage { reference: reference.clone(), source: Box::new(source) };
        let image = self.any_platform(store, reference, platform).map_err(err)?;
        if let Some(has) = image.platform()
            && !has.matches(platform)
        {
            let (name, has, wanted) = (reference.familiar(), has.to_string(), platform.to_string());
            return Err(err(ImageError::WrongPlatform { name, has, wanted }));
        }
        Ok(image)
    }
}

impl LocalImages {
    fn any_platform(&self, store: &Store, reference: &Reference, platform: &Platform) -> Result<Image, ImageError> {
        let not_found = || ImageError::NotFound { name: reference.familiar() };
        match crate::image::resolve_for(store, &reference.to_string(), Some(platform)) {
            // `name@sha256:…` pins content: any stored image with that manifest digest is it.
            Err(ImageError::NotFound { .. }) if reference.digest().is_some() => {
                let digest = *reference.digest().expect("checked above");
                let image = crate::image::resolve_for(store, &digest.to_string(), Some(platform))?;
                if image.manifest_descriptor.digest != digest {
                    return Err(not_found());
                }
                Ok(image)
            }
            Err(ImageError::NotFound { .. }) => Err(not_found()),
            // A multi-platform image without this platform: as another platform's image.
            Err(ImageError::NoPlatform { .. }) => Err(ImageError::WrongPlatform {
                name: reference.familiar(),
                has: "multi-platform".to_string(),
                wanted: platform.to_string(),
            }),
            other => other,
        }
    }
}

/// Opens a registry client for a registry host (credentials and TLS rules are the caller's).
pub type Connect<'a> = dyn Fn(&str) -> Result<Client, RegistryError> + Sync + 'a;

/// Base images from the store first, then pulled from the registry the reference names (the
/// mirrors `settings` gives for it tried first) into the store.
pub struct RegistryImages<'a> {
    /// Mirrors (`config.toml`).
    pub settings: &'a Settings,
    /// How to reach a registry host.
    pub connect: &'a Connect<'a>,
    /// Where the pull reports its progress.
    pub progress: &'a Reporter,
    /// `--pull`: every image is resolved in its registry again, even when the store has it; what
    /// changed is said on a task of its own (`FROM REF: sha256:… → sha256:…`).
    pub always_pull: bool,
}

impl ImageSource for RegistryImages<'_> {
    /// The store's image, else pulled and named; when the store names another platform's image,
    /// this platform's is pulled without a name, kept by `lease` (the name stays what it was).
    fn image(
        &self,
        store: &Store,
        reference: &Reference,
        platform: &Platform,
        lease: &Lease,
    ) -> Result<Image, BuildError> {
        let (local, other_platform) = match LocalImages.image(store, reference, platform, lease) {
            Err(BuildError::BaseImage { source, .. }) if matches!(*source, ImageError::NotFound { .. }) => {
                (None, false)
            }
            Err(BuildError::BaseImage { source, .. }) if matches!(*source, ImageError::WrongPlatform { .. }) => {
                (None, true)
            }
            Ok(image) if self.always_pull => (Some(image), false),
            other => return other,
        };
        let options = PullOptions { platform: platform.clone(), ..Default::default() };
        let mirrors = self.settings.mirrors_for(reference.registry());
        let pull_error = |source| BuildError::Pull { reference: reference.clone(), source: Box::new(source) };
        if other_platform {
            let (connect, progress) = (self.connect, self.progress);
            let report = crate::registry::pull_leased_with_mirrors(
                mirrors, connect, store, reference, &options, lease, progress,
            )
            .map_err(pull_error)?;
            return crate::image::load_image(store, &report.manifest, platform, Vec::new())
                .map_err(|source| BuildError::BaseImage { reference: reference.clone(), source: Box::new(source) });
        }
        crate::registry::pull_with_mirrors(mirrors, self.connect, store, reference, &options, self.progress)
            .map_err(pull_error)?;
        let image = LocalImages.image(store, reference, platform, lease)?;
        if self.always_pull {
            let was = local.map(|l| l.manifest_descriptor.digest);
            let now = image.manifest_descriptor.digest;
            let task = self.progress.start(|| format!("resolve {}", reference.familiar()));
            let name = reference.familiar();
            task.log(crate::progress::LogStream::Stdout, || match was {
                Some(was) if was == now => format!("{name} unchanged ({now})"),
                Some(was) => format!("{name} changed ({was} → {now})"),
                None => format!("{name} pulled ({now})"),
            });
            task.done();
        }
        Ok(image)
    }
}
