//! OCI image-spec data types. PURE: no IO.
//!
//! Owns digests, media types, platforms, references, descriptors, manifests, indexes, image
//! configs, the docker archive's `manifest.json`, and the one place where they are serialised
//! (`canonical`). Knows nothing of the store, the registry or Dockerfiles.
//!
//! We write these types ourselves rather than use `oci-spec`'s image types: they must carry our
//! validated newtypes (`Digest`, `DiffId`, `MediaType`) end to end and serialise in one canonical
//! way; `oci-spec` keeps digests and media types as loosely checked strings in places.

pub mod canonical;
mod config;
mod digest;
mod docker_archive;
mod manifest;
mod media_type;
mod platform;
mod reference;
pub mod time;

pub use config::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs};
pub use digest::{DiffId, Digest, DigestError, Hasher, HashingReader, HashingWriter};
pub use docker_archive::DockerManifestEntry;
pub use manifest::{
    ANNOTATION_CREATED, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, ANNOTATION_SLIPWAY_REF, Descriptor, ImageIndex,
    ImageManifest, OciLayout, Versioned,
};
pub use media_type::{LayerCompression, MediaType, MediaTypeError};
pub use platform::{Platform, PlatformError};
pub use reference::{DEFAULT_REGISTRY, DEFAULT_TAG, Reference, ReferenceError};
