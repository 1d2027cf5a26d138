//! The one integration-test binary, split by feature.

mod dockerfile_corpus;
mod dockerfile_shell;
mod exec;
mod image;
mod image_adversarial;
mod layer;
mod layer_adversarial;
mod store;
mod support;
