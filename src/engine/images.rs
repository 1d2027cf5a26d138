//! Where `FROM` and `COPY --from` images come from: the store, and (when given) a registry.
//! A seam with two implementations: [`LocalImages`] and [`RegistryImages`] (the store, then a
//! pull into it), so a program using slipway as a library builds from a registry base as the
//! CLI does.

use super::BuildError;
use crate::image::{Image, ImageError};
use crate::oci::{Platform, Reference};
use crate::progress::Reporter;
use crate::registry::{Client, PullOptions, RegistryError, Settings};
use crate::store::Store;

/// Where base images come from.
pub trait ImageSource: Sync {
    /// The image `reference` names (as written after `FROM`, expanded), for `platform`.
    fn image(&self, store: &Store, reference: &Reference, platform: &Platform) -> Result<Image, BuildError>;
}

/// Images already in the store, nothing else.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalImages;

impl ImageSource for LocalImages {
    fn image(&self, store: &Store, reference: &Reference, _platform: &Platform) -> Result<Image, BuildError> {
        let err = |source| BuildError::BaseImage { reference: reference.clone(), source: Box::new(source) };
        let not_found = || ImageError::NotFound { name: reference.familiar() };
        match crate::image::resolve(store, &reference.to_string()) {
            // `name@sha256:…` pins content: any stored image with that manifest digest is it.
            Err(ImageError::NotFound { .. }) if reference.digest().is_some() => {
                let digest = *reference.digest().expect("checked above");
                let image = crate::image::resolve(store, &digest.to_string()).map_err(err)?;
                if image.manifest_descriptor.digest != digest {
                    return Err(err(not_found()));
                }
                Ok(image)
            }
            Err(ImageError::NotFound { .. }) => Err(err(not_found())),
            other => other.map_err(err),
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
    fn image(&self, store: &Store, reference: &Reference, platform: &Platform) -> Result<Image, BuildError> {
        let local = match LocalImages.image(store, reference, platform) {
            Err(BuildError::BaseImage { source, .. }) if matches!(*source, ImageError::NotFound { .. }) => None,
            Ok(image) if self.always_pull => Some(image),
            other => return other,
        };
        let options = PullOptions { platform: platform.clone(), ..Default::default() };
        let mirrors = self.settings.mirrors_for(reference.registry());
        crate::registry::pull_with_mirrors(mirrors, self.connect, store, reference, &options, self.progress)
            .map_err(|source| BuildError::Pull { reference: reference.clone(), source: Box::new(source) })?;
        let image = LocalImages.image(store, reference, platform)?;
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
