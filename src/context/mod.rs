//! The build context: walking it in place, `.dockerignore`, the stat cache.
