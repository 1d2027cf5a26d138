//! The one integration-test binary, split by feature.

mod dockerfile_corpus;
mod support;
mod dockerfile_shell;
