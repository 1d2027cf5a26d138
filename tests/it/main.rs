//! The one integration-test binary, split by feature.

mod build_cache;
mod build_cli;
mod build_copy;
mod build_meta;
mod build_registry;
mod build_run;
mod build_stages;
mod cache;
mod check;
mod context;
mod dockerfile_corpus;
mod dockerfile_shell;
mod exec;
mod image;
mod image_adversarial;
mod layer;
mod layer_adversarial;
mod progress;
mod registry;
mod registry_auth;
mod registry_config;
mod registry_faults;
mod run;
mod snapshot;
mod store;
mod support;
