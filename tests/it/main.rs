//! The one integration-test binary, split by feature.

mod support;
mod dockerfile_shell;
mod check;
