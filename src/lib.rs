//! slipway: a daemonless container image builder and layer store.
//!
//! The library is split into modules walled like crates (see `ARCHITECTURE.md`):
//! pure cores (`oci`, `dockerfile`, `graph`) that do no IO, effectful parts (`store`, `layer`,
//! `context`, ...) and the `cli` edge, the only module that prints.

pub mod engine;
pub mod cache;
pub mod cli;
pub mod context;
pub(crate) mod dirfd;
pub mod dockerfile;
pub mod exec;
pub mod failpoint;
pub mod graph;
pub mod image;
pub mod layer;
pub mod oci;
pub mod progress;
pub mod registry;
pub mod snapshot;
pub mod sqlite;
pub mod store;
