//! The dashboard's static files, embedded in the binary and served with long cache lifetimes:
//! their URLs carry the htmx version, the crate version or (live.js) the content's SHA-256, so
//! a new release never meets a stale cached copy.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The vendored htmx release (crates/api/assets/README.md says where it came from).
#[cfg(test)]
const HTMX_FILE: &str = "htmx-2.0.11.min.js";
const HTMX: &[u8] = include_bytes!("../../assets/htmx-2.0.11.min.js");
const APP_CSS: &[u8] = include_bytes!("../../assets/app.css");
/// The live log script (no inline scripts: the CSP allows scripts from this origin only).
const LIVE_JS: &[u8] = include_bytes!("../../assets/live.js");
/// `<sha256>  <file>` lines, as `sha256sum` prints them.
#[cfg(test)]
const SHA256SUMS: &str = include_str!("../../assets/SHA256SUMS");

/// Where pages link htmx from.
pub const HTMX_PATH: &str = "/ui/assets/htmx-2.0.11.min.js";
/// Where pages link the stylesheet from (versioned with the crate).
pub const CSS_PATH: &str = concat!("/ui/assets/", env!("CARGO_PKG_VERSION"), "/app.css");

/// Where live.js is served; pages link it as [`live_href`].
pub const LIVE_PATH: &str = "/ui/assets/live.js";

/// The first 16 hex digits of live.js's SHA-256: the `v` that makes its URL change with it.
fn live_version() -> &'static str {
    static V: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(LIVE_JS))[..16].to_owned()
    });
    V.as_str()
}

/// `/ui/assets/live.js?v=<content hash>`, as pages link it.
pub fn live_href() -> &'static str {
    static H: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{LIVE_PATH}?v={}", live_version()));
    H.as_str()
}

/// A year, immutable: the URL changes when the content does.
const LONG_CACHE: &str = "public, max-age=31536000, immutable";

fn asset(body: &'static [u8], content_type: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(LONG_CACHE)),
        ],
        body,
    )
        .into_response()
}

pub async fn htmx() -> Response {
    asset(HTMX, "text/javascript; charset=utf-8")
}

pub async fn css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

#[derive(Debug, serde::Deserialize)]
pub struct LiveQuery {
    v: Option<String>,
}

/// live.js: cached for a year under its content hash (`?v=`), revalidated otherwise.
pub async fn live(axum::extract::Query(q): axum::extract::Query<LiveQuery>) -> Response {
    let mut resp = asset(LIVE_JS, "text/javascript; charset=utf-8");
    if q.v.as_deref() != Some(live_version()) {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn embedded_htmx_is_the_recorded_release() {
        let recorded = SHA256SUMS
            .lines()
            .find_map(|l| {
                let (sum, file) = l.split_once("  ")?;
                (file.trim() == HTMX_FILE).then_some(sum.trim())
            })
            .expect("SHA256SUMS records the htmx file");
        assert_eq!(hex::encode(Sha256::digest(HTMX)), recorded);
        assert!(HTMX_PATH.ends_with(HTMX_FILE));
    }
}
