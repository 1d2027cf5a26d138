//! The one integration-test binary, split by feature.

mod cache;
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
mod run;
mod snapshot;
mod store;
mod support;
