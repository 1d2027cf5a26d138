//! Lint rules of `slipway check`.
