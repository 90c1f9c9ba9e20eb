//! Slipway shared infrastructure.

pub mod config;
pub mod health;
pub mod queue;
pub mod runtime;
pub mod store;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
