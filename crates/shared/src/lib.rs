//! Slipway shared infrastructure.
