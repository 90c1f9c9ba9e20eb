//! Our own small Lua scripts, run next to bullmq-official's on the same keys.
//!
//! Each one is guarded by the job's lock token (so a worker that lost its lease cannot change the
//! job) and touches only fields BullMQ itself ignores (`sw_*`) or fields BullMQ sets the same way
//! (`failedReason`, `atm`, and `ats`, given back by a deferred job). They exist because bullmq-official keeps its script registry private
//! and its lock renewal neither reports a lost lock nor lets us look for a cancel request.

use redis::Script;
use std::sync::LazyLock;

/// Renew a lease: extend the lock if we still own it, take the job out of the stalled set (as
/// BullMQ's `extendLock` does) and report a pending cancel request.
///
/// KEYS: lock, stalled, job. ARGV: token, lock ms, job id.
/// Returns `{0}` when the lock is not ours, `{1}` or `{1, reason}` when renewed.
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  redis.call("SREM", KEYS[2], ARGV[3])
  local c = redis.call("HGET", KEYS[3], "sw_cancel")
  if c then return {1, c} end
  return {1}
end
return {0}
"#,
    )
});

/// Record a failed attempt that will be retried: keep its error where BullMQ keeps it and count
/// it in `atm`, as BullMQ's own retry path does. KEYS: lock, job. ARGV: token, error.
pub(crate) static NOTE_FAILURE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("HSET", KEYS[2], "failedReason", ARGV[2])
  redis.call("HINCRBY", KEYS[2], "atm", 1)
  return 1
end
return 0
"#,
    )
});

/// Before a job over its cap goes back to the delayed set: give back the attempt number its
/// fetch took (`ats`, which BullMQ's fetch incremented), so waiting consumes no attempt and the
/// next fetch gets the same number. KEYS: lock, job. ARGV: token.
pub(crate) static UNCOUNT_START: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  if tonumber(redis.call("HGET", KEYS[2], "ats") or "0") > 0 then
    redis.call("HINCRBY", KEYS[2], "ats", -1)
  end
  return 1
end
return 0
"#,
    )
});

/// Ask the worker running a job to stop: the flag is read at every lease renewal and when the
/// job starts. Only for an existing job. KEYS: job. ARGV: reason.
pub(crate) static FLAG_CANCEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call("EXISTS", KEYS[1]) == 1 then
  redis.call("HSET", KEYS[1], "sw_cancel", ARGV[1])
  return 1
end
return 0
"#,
    )
});

/// Before an operator retry of a dead job: start a fresh attempt budget (attempt numbers keep
/// counting up, so Postgres fencing by attempt number stays sound) and clear a cancel request.
/// Only for a job in the dead (failed) set. KEYS: job, failed. ARGV: job id.
pub(crate) static RESET_BUDGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call("ZSCORE", KEYS[2], ARGV[1]) then
  local ats = redis.call("HGET", KEYS[1], "ats") or "0"
  redis.call("HSET", KEYS[1], "sw_base", ats)
  redis.call("HDEL", KEYS[1], "sw_cancel")
  return 1
end
return 0
"#,
    )
});
