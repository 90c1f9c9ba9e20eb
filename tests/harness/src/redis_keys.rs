//! Key-prefix hygiene for tests and benchmarks on the shared Redis: a random prefix per run, and
//! deletion of exactly the keys under it (never FLUSHALL/FLUSHDB).

use rand::Rng;

/// A fresh prefix such as `sw-test-3f9c0a1b`.
pub fn random_prefix(tag: &str) -> String {
    format!("sw-{tag}-{:08x}", rand::rng().random::<u32>())
}

/// Delete every key under `prefix:` (SCAN, so it never blocks Redis).
pub fn delete_prefix(redis_url: &str, prefix: &str) -> redis::RedisResult<usize> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_connection()?;
    let pattern = format!("{prefix}:*");
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)?;
        if !keys.is_empty() {
            let n: usize = redis::cmd("UNLINK").arg(&keys).query(&mut conn)?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}
