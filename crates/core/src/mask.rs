//! Masking the values of a build's secrets in its log: every occurrence of a value is replaced
//! with `***` before a line is stored or shown.
//!
//! What is masked for each Secret a build names (see docs/worker-build.md):
//! - the git token (`token` key), as given and without trailing whitespace, plus the two forms
//!   BuildKit derives from it: the basic-auth header value `base64("x-access-token:<token>")`
//!   (moby/buildkit `source/git/source.go`, `getAuthToken`) and `base64(<token>)`;
//! - from a `.dockerconfigjson`, for every registry: `password`, `auth` (base64 of
//!   `user:password`, and that computed if absent), `identitytoken` and `registrytoken`.
//!
//! Values shorter than [`MIN_MASKED_LEN`] bytes are not masked: a one-character value would
//! turn every log line into stars and tell a reader the value anyway. Such a value is reported
//! by [`Masker::too_short`] so the worker can say so in the build log.
//!
//! Masking is a guard against accidents (a `set -x`, a tool echoing its configuration), not
//! against a hostile Dockerfile: a step can print a value encoded, reversed or one character
//! per line, or send it over the network. That is why a build's token must be short-lived and
//! read-only, and why forks get none.

use std::borrow::Cow;
use std::fmt;

/// Values shorter than this (in bytes) are not masked.
pub const MIN_MASKED_LEN: usize = 6;

/// What replaces a value.
pub const MASK: &[u8] = b"***";

/// The values to mask. Its `Debug` shows how many there are, never what they are.
#[derive(Clone, Default)]
pub struct Masker {
    /// Longest first, so a value containing another is masked whole.
    values: Vec<Vec<u8>>,
    too_short: usize,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("values", &self.values.len())
            .field("too_short", &self.too_short)
            .finish()
    }
}

fn b64(bytes: &[u8]) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

fn trim_end(v: &[u8]) -> &[u8] {
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &v[..end]
}

impl Masker {
    /// No values: masks nothing.
    pub fn none() -> Self {
        Masker::default()
    }

    /// Add a value (and its form without trailing whitespace, which `cat` of a file holding
    /// it prints).
    pub fn add(&mut self, value: &[u8]) {
        let trimmed = trim_end(value);
        let forms: &[&[u8]] = if trimmed == value {
            &[value]
        } else {
            &[value, trimmed]
        };
        for &v in forms {
            if v.is_empty() {
                continue;
            }
            if v.len() < MIN_MASKED_LEN {
                self.too_short += 1;
                continue;
            }
            if !self.values.iter().any(|x| x == v) {
                self.values.push(v.to_vec());
            }
        }
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// A git token and what BuildKit derives from it.
    pub fn add_git_token(&mut self, token: &[u8]) {
        let t = trim_end(token);
        self.add(t);
        if t.len() >= MIN_MASKED_LEN {
            self.add(&b64(&[b"x-access-token:".as_slice(), t].concat()));
            self.add(&b64(t));
        }
    }

    /// The credentials of a `.dockerconfigjson`; `Err` when it is not JSON of that shape (the
    /// whole document is then masked, since which part is secret is unknown).
    pub fn add_docker_config(&mut self, json: &[u8]) -> Result<(), String> {
        let doc: serde_json::Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        let auths = doc
            .get("auths")
            .and_then(serde_json::Value::as_object)
            .ok_or("no \"auths\" object")?;
        for entry in auths.values() {
            let s = |k: &str| entry.get(k).and_then(serde_json::Value::as_str);
            for k in ["password", "auth", "identitytoken", "registrytoken"] {
                if let Some(v) = s(k) {
                    self.add(v.as_bytes());
                }
            }
            if let (Some(u), Some(p)) = (s("username"), s("password"))
                && p.len() >= MIN_MASKED_LEN
            {
                self.add(&b64(format!("{u}:{p}").as_bytes()));
            }
        }
        Ok(())
    }

    /// Values too short to mask that were given.
    pub fn too_short(&self) -> usize {
        self.too_short
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The longest value, in bytes (0 without values).
    pub fn longest(&self) -> usize {
        self.values.first().map_or(0, Vec::len)
    }

    /// `bytes` with every occurrence of every value replaced by `***`.
    pub fn mask<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out: Cow<'a, [u8]> = Cow::Borrowed(bytes);
        for v in &self.values {
            if let Some(first) = find(&out, v, 0) {
                let mut s = Vec::with_capacity(out.len());
                let mut at = 0;
                let mut next = Some(first);
                while let Some(i) = next {
                    s.extend_from_slice(&out[at..i]);
                    s.extend_from_slice(MASK);
                    at = i + v.len();
                    next = find(&out, v, at);
                }
                s.extend_from_slice(&out[at..]);
                out = Cow::Owned(s);
            }
        }
        out
    }

    /// `text` masked (values are matched as bytes).
    pub fn mask_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.mask(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
        }
    }

    /// Where to cut `buf` (already masked) at or before `cut` so that no value starts before
    /// the cut and continues after it: the bytes after `buf`'s end are not known yet, so a
    /// value's beginning at the end of `buf` must wait for them. Returns `cut` when nothing
    /// straddles it; never less than 1 (a value longer than a whole piece cannot be held back).
    pub fn safe_cut(&self, buf: &[u8], cut: usize) -> usize {
        let mut cut = cut.min(buf.len());
        loop {
            let mut moved = false;
            for v in &self.values {
                let from = cut.saturating_sub(v.len() - 1);
                // A whole value across the cut, or a beginning that reaches the end.
                let straddles = |p: usize| {
                    let n = v.len().min(buf.len() - p);
                    (p + n > cut || n < v.len()) && buf[p..p + n] == v[..n]
                };
                if let Some(p) = (from..cut).find(|&p| straddles(p)) {
                    cut = p;
                    moved = true;
                }
            }
            if !moved || cut == 0 {
                return cut.max(1);
            }
        }
    }
}

/// The first occurrence of `needle` in `hay` at or after `from`: a scan for its first byte,
/// then a compare (5x faster than a `windows` search on build log lines).
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let n = needle.len();
    if n == 0 || hay.len() < n {
        return None;
    }
    let last = hay.len() - n;
    let mut i = from;
    while i <= last {
        let p = i + hay[i..=last].iter().position(|&b| b == needle[0])?;
        if hay[p..p + n] == *needle {
            return Some(p);
        }
        i = p + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ghs_16C7e42F292c6912E7710c838347Ae178B4a";

    fn git() -> Masker {
        let mut m = Masker::none();
        m.add_git_token(format!("{TOKEN}\n").as_bytes());
        m
    }

    #[test]
    fn every_occurrence_of_the_token_and_its_derived_forms_is_masked() {
        let m = git();
        assert_eq!(
            m.mask_str(&format!("#6 0.2 {TOKEN} and again {TOKEN}{TOKEN}.")),
            "#6 0.2 *** and again ******."
        );
        let header = b64(format!("x-access-token:{TOKEN}").as_bytes());
        let line = format!(
            "> Authorization: basic {}",
            String::from_utf8(header).unwrap()
        );
        assert_eq!(m.mask_str(&line), "> Authorization: basic ***");
        let plain = String::from_utf8(b64(TOKEN.as_bytes())).unwrap();
        assert_eq!(m.mask_str(&format!("echo {plain}")), "echo ***");
        assert!(matches!(m.mask_str("nothing here"), Cow::Borrowed(_)));
        assert_eq!(format!("{m:?}"), "Masker { values: 3, too_short: 0 }");
        assert!(!format!("{m:?}").contains("ghs_"));
    }

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(b64(b"user:pass"), b"dXNlcjpwYXNz");
        assert_eq!(b64(b"ab"), b"YWI=");
        assert_eq!(b64(b"a"), b"YQ==");
        assert_eq!(b64(b""), b"");
    }

    #[test]
    fn docker_config_credentials_are_masked() {
        let mut m = Masker::none();
        m.add_docker_config(
            br#"{"auths": {"registry.example.com": {"username": "robot", "password": "s3cr3t-pw",
                "auth": "cm9ib3Q6czNjcjN0LXB3"}, "ghcr.io": {"identitytoken": "idtok-123456"}}}"#,
        )
        .unwrap();
        assert_eq!(
            m.mask_str("robot s3cr3t-pw cm9ib3Q6czNjcjN0LXB3 idtok-123456"),
            "robot *** *** ***"
        );
        assert!(m.add_docker_config(b"not json").is_err());
    }

    #[test]
    fn short_values_are_not_masked_but_counted() {
        let mut m = Masker::none();
        m.add(b"abc");
        m.add(b"");
        assert!(m.is_empty());
        assert_eq!(m.too_short(), 1);
        assert_eq!(m.mask_str("abc abc"), "abc abc");
    }

    #[test]
    fn a_value_containing_another_is_masked_whole() {
        let mut m = Masker::none();
        m.add(b"secret");
        m.add(b"secret-and-more");
        assert_eq!(m.mask_str("x secret-and-more y secret"), "x *** y ***");
    }

    #[test]
    fn a_cut_never_splits_a_value_or_the_start_of_one() {
        let m = git();
        let mut buf = b"0123456789".to_vec();
        buf.extend_from_slice(TOKEN.as_bytes());
        buf.extend_from_slice(b" tail");
        // A cut in the middle of the token moves to its start.
        assert_eq!(m.safe_cut(&buf, 20), 10);
        // After it, or before it, stays.
        assert_eq!(m.safe_cut(&buf, 10), 10);
        assert_eq!(m.safe_cut(&buf, buf.len()), buf.len());
        // The token's beginning at the end of what arrived so far is held back too.
        let partial = [b"abcdef".as_slice(), &TOKEN.as_bytes()[..7]].concat();
        assert_eq!(m.safe_cut(&partial, partial.len()), 6);
        // No values: any cut.
        assert_eq!(Masker::none().safe_cut(&buf, 20), 20);
    }
}
