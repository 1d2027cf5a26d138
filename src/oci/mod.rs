//! OCI image-spec data types. PURE: no IO.
//!
//! Owns digests, media types, platforms, references, descriptors, manifests, indexes and image
//! configs, and the one place where they are serialised (`canonical`). Knows nothing of the store,
//! the registry or Dockerfiles.

mod digest;

pub use digest::{DiffId, Digest, DigestError, Hasher, HashingReader, HashingWriter};
