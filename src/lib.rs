//! slipway: a daemonless container image builder and layer store.
//!
//! The library is split into modules walled like crates (see `ARCHITECTURE.md`, whose table of
//! allowed imports `tests/it/architecture.rs` enforces): pure cores (`oci`, `dockerfile`,
//! `graph`) that do no IO, effectful parts (`store`, `layer`, `context`, ...) and the `cli` edge,
//! the only module that prints.
//!
//! # Public surface
//!
//! What a program embedding slipway (and this crate's tests, benches, examples and fuzz
//! targets) uses:
//!
//! - [`oci`]: digests, references, platforms, descriptors, manifests, configs;
//! - [`dockerfile`] and [`graph`]: Dockerfile text → instructions → the graph of a build, and
//!   the lint rules of `slipway check`;
//! - [`engine`]: running a build (`Builder`), with [`cache`] (build cache records and keys) and
//!   [`context`] (the build context, `.dockerignore`, COPY/ADD sources);
//! - [`store`], [`image`], [`registry`]: the blob store and its tags, images in and out of it,
//!   pull and push;
//! - [`inspect`]: images from any source (store, OCI layout or archive, docker archive,
//!   registry) read for `history`, `diff` and `layers`;
//! - [`snapshot`], [`layer`], [`exec`]: root filesystem snapshots, the layer tar format, the
//!   sandbox that runs `RUN`;
//! - [`remote`]: `ADD`'s remote sources, downloads over HTTP and git checkouts;
//! - [`progress`]: the events long operations report, for a caller to render;
//! - [`disk`]: what a store root's bytes are (`slipway df`) and trimming it under a cap
//!   (`prune --keep-storage`).
//!
//! Not API: the command line (`cli`; the binary enters it through the hidden `cli_main`), the
//! shared SQLite helper (`sqlite`) and the crash-test hooks (`failpoint`).

pub mod cache;
mod cli;
pub mod context;
pub(crate) mod dirfd;
pub mod disk;
pub mod dockerfile;
pub mod engine;
pub mod exec;
mod failpoint;
pub mod graph;
pub mod image;
pub mod inspect;
pub mod layer;
pub mod oci;
pub mod progress;
pub mod registry;
pub mod remote;
pub mod snapshot;
mod sqlite;
pub mod store;

/// The `slipway` binary's entry point (`src/main.rs`): parses the command line, runs the
/// command, returns its exit status. Not API.
#[doc(hidden)]
pub fn cli_main() -> std::process::ExitCode {
    cli::main()
}
