//! Slipway domain core.
