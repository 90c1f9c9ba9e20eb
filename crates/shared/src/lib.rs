//! Slipway's shared infrastructure, used by every binary: configuration, the Postgres store,
//! the Redis queue, the worker runtime, telemetry, the health/metrics server and the shutdown
//! signal. The domain itself (kinds, states, payloads, validation) lives in `slipway-core`.

pub mod config;
pub mod enqueue;
pub mod health;
pub mod joblog;
pub mod leader;
pub mod queue;
pub mod runtime;
mod signal;
pub mod store;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod worker;

pub use signal::shutdown_signal;
