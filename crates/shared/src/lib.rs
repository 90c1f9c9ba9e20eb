//! Slipway shared infrastructure.

pub mod queue;
pub mod runtime;
