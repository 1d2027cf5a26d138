//! The one integration-test binary, split by feature.

mod support;
mod image;
