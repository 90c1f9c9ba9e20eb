//! Shared pieces of Slipway's test and benchmark harness: a scripted job handler whose
//! behaviour comes from the job's Redis payload, the queue-worker process it runs in, the
//! benchmark sections and report, and helpers to give each test or benchmark run its own Redis
//! key prefix and clean it up.

pub mod bench;
pub mod procs;
pub mod redis_keys;
pub mod scripted;
