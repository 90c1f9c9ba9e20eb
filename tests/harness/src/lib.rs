//! Shared pieces of Slipway's test and benchmark harness: a scripted job handler whose
//! behaviour comes from the job's Redis payload, the queue-worker process it runs in, the
//! benchmark sections and report. Redis key prefixes come from `slipway_shared::testing`.

pub mod bench;
pub mod procs;
pub mod scripted;
