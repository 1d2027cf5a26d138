//! Dockerfile text → typed instructions. PURE: no IO beyond the text it is given.

pub mod args;
pub mod expand;
