//! Opaque keyset-pagination cursors: `(created_at, tiebreak)` of the last row of a page,
//! base64url-encoded so clients treat them as tokens rather than parse them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::StoreError;

/// Encodes the position after a row ordered by `created_at DESC, tiebreak DESC`.
pub(crate) fn encode(created_at: DateTime<Utc>, tiebreak: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{}", created_at.timestamp_micros(), tiebreak))
}

/// Decodes a cursor made by [`encode`]; anything else is [`StoreError::InvalidCursor`].
pub(crate) fn decode(cursor: &str) -> Result<(DateTime<Utc>, String), StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::InvalidCursor)?;
    let (micros, tiebreak) = text.split_once('|').ok_or(StoreError::InvalidCursor)?;
    let micros: i64 = micros.parse().map_err(|_| StoreError::InvalidCursor)?;
    let at = DateTime::from_timestamp_micros(micros).ok_or(StoreError::InvalidCursor)?;
    Ok((at, tiebreak.to_owned()))
}

/// Clamps a requested page size to 1..=1000.
pub(crate) fn clamp_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, 1000))
}

/// Clamps a requested number of log lines to 1..=10000 (lines are small).
pub(crate) fn clamp_limit_logs(limit: u32) -> i64 {
    i64::from(limit.clamp(1, 10_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let at = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let c = encode(at, "org/app#42|x");
        assert_eq!(decode(&c).unwrap(), (at, "org/app#42|x".to_owned()));
        assert!(matches!(decode("!!"), Err(StoreError::InvalidCursor)));
        assert!(matches!(
            decode(&URL_SAFE_NO_PAD.encode("nope")),
            Err(StoreError::InvalidCursor)
        ));
    }
}
