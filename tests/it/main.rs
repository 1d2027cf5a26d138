//! The one integration-test binary, split by feature.

mod check;
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
