//! Layer tar streams: the deterministic writer, compression and the safe `apply`.
//!
//! Knows the tar format and OCI whiteouts; knows nothing of where blobs are stored.
