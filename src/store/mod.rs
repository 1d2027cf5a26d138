//! The content-addressed store under `--root`: blobs, tags, metadata.
