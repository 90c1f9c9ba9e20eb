//! API tokens: parsing `SLIPWAY_API_TOKENS` and checking a presented bearer token.
//!
//! Format: comma-separated entries `name:scope+scope:token`, e.g.
//! `catalog:enqueue+read:s3cr3t-value-long-enough,ops:read+admin:sha256:<64 hex>`.
//! - name: 1-64 of `A-Z a-z 0-9 . _ -`, unique; it identifies the caller in logs.
//! - scopes: `enqueue` (POST builds/launches/cleanups/pipelines), `read` (GET), `admin`
//!   (retry, cancel, pause/resume, delete previews). Scopes are independent: `admin` does not
//!   imply `read`; give `read+enqueue+admin` for a token that may do everything.
//! - token: everything after the second `:`. `sha256:<64 hex>` is the hex sha256 of the real
//!   token (so the configuration need not hold it); anything else is the token itself, at
//!   least 16 characters with no whitespace or control characters (and no `,`, which
//!   separates entries). Tokens must be distinct.
//!
//! Only sha256 digests are kept in memory. A presented token is hashed and compared with every
//! entry in constant time, with no early exit, so timing reveals neither which entry matched
//! nor how much of a digest did. Errors and `Debug` output never contain a token or a digest;
//! a malformed entry is identified by its position (and its name once that has parsed).

use sha2::{Digest, Sha256};
use std::fmt;
use std::ops::BitOr;
use std::str::FromStr;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// Shortest plain token accepted: shorter ones are guessable.
pub const MIN_PLAIN_TOKEN_LEN: usize = 16;
pub const MAX_NAME_LEN: usize = 64;
const HASH_PREFIX: &str = "sha256:";

/// A set of scopes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub const NONE: Scopes = Scopes(0);
    pub const ENQUEUE: Scopes = Scopes(1);
    pub const READ: Scopes = Scopes(2);
    pub const ADMIN: Scopes = Scopes(4);
    pub const ALL: Scopes = Scopes(7);
    const NAMED: [(Scopes, &'static str); 3] = [
        (Scopes::ENQUEUE, "enqueue"),
        (Scopes::READ, "read"),
        (Scopes::ADMIN, "admin"),
    ];

    /// Whether every scope of `required` is in `self`.
    pub fn contains(self, required: Scopes) -> bool {
        self.0 & required.0 == required.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// One scope by name.
    pub fn from_name(name: &str) -> Option<Scopes> {
        Self::NAMED
            .into_iter()
            .find(|(_, n)| *n == name)
            .map(|(s, _)| s)
    }
}

impl BitOr for Scopes {
    type Output = Scopes;
    fn bitor(self, rhs: Scopes) -> Scopes {
        Scopes(self.0 | rhs.0)
    }
}

impl fmt::Display for Scopes {
    /// `enqueue+read`; `none` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Self::NAMED
            .into_iter()
            .filter(|(s, _)| self.contains(*s))
            .map(|(_, n)| n)
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join("+"))
        }
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

/// A malformed `SLIPWAY_API_TOKENS`. Never contains any part of a token: the entry is shown as
/// far as it parsed, with the rest elided (`"ci:enqueue:…"`), e.g.
/// `SLIPWAY_API_TOKENS: entry 2 ("ci:enqueue:…"): the token is 9 characters, at least 16 are
/// required`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SLIPWAY_API_TOKENS: entry {entry} ({shown:?}): {reason}")]
pub struct AuthConfigError {
    /// 1-based position among the comma-separated entries.
    pub entry: usize,
    /// The entry's name, once it has parsed as a valid name.
    pub name: Option<String>,
    /// The entry as far as it parsed (name, then scopes), the rest replaced by `…`.
    pub shown: String,
    /// The rule the entry breaks.
    pub reason: String,
}
#[derive(Clone)]
struct Entry {
    name: String,
    scopes: Scopes,
    digest: [u8; 32],
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The configured tokens.
#[derive(Clone, Default)]
pub struct TokenSet {
    entries: Vec<Entry>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("tokens", &self.entries)
            .finish()
    }
}

impl TokenSet {
    /// Parses the `SLIPWAY_API_TOKENS` format. Whitespace around entries and empty entries
    /// (a trailing comma) are ignored; an empty string gives an empty set, which accepts
    /// nothing.
    pub fn parse(s: &str) -> Result<TokenSet, AuthConfigError> {
        let mut entries: Vec<Entry> = Vec::new();
        for (i, raw) in s.split(',').enumerate() {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            // `scopes` is shown only once every scope has parsed: until then it may be the token.
            let err = |name: Option<&str>, scopes: Option<Scopes>, reason: String| {
                let shown = match (name, scopes) {
                    (Some(n), Some(s)) => format!("{n}:{s}:…"),
                    (Some(n), None) => format!("{n}:…"),
                    _ => "…".to_owned(),
                };
                AuthConfigError {
                    entry: i + 1,
                    name: name.map(str::to_owned),
                    shown,
                    reason,
                }
            };
            let mut parts = raw.splitn(3, ':');
            let (Some(name), Some(scopes), Some(token)) =
                (parts.next(), parts.next(), parts.next())
            else {
                let fields = raw.split(':').count();
                return Err(err(
                    None,
                    None,
                    format!(
                        "the entry has {fields} `:`-separated field{}, 3 are required: name:scope+scope:token",
                        if fields == 1 { "" } else { "s" }
                    ),
                ));
            };
            let name_ok = (1..=MAX_NAME_LEN).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !name_ok {
                return Err(err(
                    None,
                    None,
                    "the name must be 1-64 of A-Z a-z 0-9 . _ - (expected name:scope+scope:token)"
                        .into(),
                ));
            }
            let named = Some(name);
            let mut set = Scopes::NONE;
            for scope in scopes.split('+') {
                // The unknown text is not echoed: in a mangled entry it may be the token.
                set = set
                    | Scopes::from_name(scope).ok_or_else(|| {
                        err(
                            named,
                            None,
                            "unknown scope (allowed: enqueue, read, admin, joined with +)".into(),
                        )
                    })?;
            }
            let digest: [u8; 32] = if let Some(hex_digest) = token.strip_prefix(HASH_PREFIX) {
                let mut d = [0u8; 32];
                if hex_digest.len() != 64 || hex::decode_to_slice(hex_digest, &mut d).is_err() {
                    return Err(err(
                        named,
                        Some(set),
                        format!(
                            "a sha256: token must be followed by 64 hex digits, not {} characters{}",
                            hex_digest.chars().count(),
                            if hex_digest.len() == 64 {
                                " with a non-hex digit"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
                d
            } else {
                if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(err(
                        named,
                        Some(set),
                        "the token must not contain whitespace or control characters".into(),
                    ));
                }
                if token.chars().count() < MIN_PLAIN_TOKEN_LEN {
                    return Err(err(
                        named,
                        Some(set),
                        format!(
                            "the token is {} characters, at least {MIN_PLAIN_TOKEN_LEN} are required",
                            token.chars().count()
                        ),
                    ));
                }
                Sha256::digest(token.as_bytes()).into()
            };
            if entries.iter().any(|e| e.name == name) {
                return Err(err(
                    named,
                    Some(set),
                    "the name is used by an earlier entry (names must be unique)".into(),
                ));
            }
            if entries.iter().any(|e| e.digest == digest) {
                return Err(err(
                    named,
                    Some(set),
                    "the token is the same as an earlier entry's (tokens must be distinct)".into(),
                ));
            }
            entries.push(Entry {
                name: name.to_owned(),
                scopes: set,
                digest,
            });
        }
        Ok(TokenSet { entries })
    }

    /// The name and scopes of the entry whose token is `presented`. Every entry is compared,
    /// in constant time, whatever matches.
    pub fn verify(&self, presented: &str) -> Option<(&str, Scopes)> {
        if presented.is_empty() {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = Choice::from(0);
        let mut index: u64 = 0;
        for (i, e) in self.entries.iter().enumerate() {
            let eq = e.digest[..].ct_eq(&digest[..]);
            index.conditional_assign(&(i as u64), eq);
            found |= eq;
        }
        if bool::from(found) {
            let e = self.entries.get(usize::try_from(index).ok()?)?;
            Some((e.name.as_str(), e.scopes))
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Names and scopes, for a startup log line.
    pub fn describe(&self) -> Vec<(&str, Scopes)> {
        self.entries
            .iter()
            .map(|e| (e.name.as_str(), e.scopes))
            .collect()
    }
}

impl FromStr for TokenSet {
    type Err = AuthConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TokenSet::parse(s)
    }
}

/// `sha256:<hex>` of a token: the form to put in `SLIPWAY_API_TOKENS` instead of the token.
pub fn hash_token(token: &str) -> String {
    format!(
        "{HASH_PREFIX}{}",
        hex::encode(Sha256::digest(token.as_bytes()))
    )
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let token = rest.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && !token.chars().any(|c| c.is_whitespace() || c.is_control()))
    .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CI: &str = "ci-token-0123456789";
    const OPS: &str = "ops-token-abcdefghij";

    fn set() -> TokenSet {
        TokenSet::parse(&format!(
            " catalog:enqueue+read:{CI} ,\nops:read+admin:{},,cli.v2:read:another-token-xyz,",
            hash_token(OPS)
        ))
        .unwrap()
    }

    #[test]
    fn verifies_plain_and_hashed_tokens() {
        let s = set();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s.verify(CI),
            Some(("catalog", Scopes::ENQUEUE | Scopes::READ))
        );
        assert_eq!(s.verify(OPS), Some(("ops", Scopes::READ | Scopes::ADMIN)));
        assert_eq!(
            s.verify("another-token-xyz"),
            Some(("cli.v2", Scopes::READ))
        );
        for wrong in [
            "",
            "ci-token-012345678",
            "ci-token-01234567890",
            &hash_token(OPS),
            "CI-TOKEN-0123456789",
            " ci-token-0123456789",
        ] {
            assert_eq!(s.verify(wrong), None, "{wrong:?}");
        }
        let (_, scopes) = s.verify(OPS).unwrap();
        assert!(scopes.contains(Scopes::ADMIN));
        assert!(!scopes.contains(Scopes::ENQUEUE));
        assert!(!scopes.contains(Scopes::ENQUEUE | Scopes::ADMIN));
        assert_eq!(scopes.to_string(), "read+admin");
        assert_eq!(TokenSet::parse("").unwrap().verify(CI), None);
    }

    #[test]
    fn uppercase_hex_digests_are_accepted() {
        let h = hash_token(OPS).replace("sha256:", "").to_uppercase();
        let s = TokenSet::parse(&format!("ops:admin:sha256:{h}")).unwrap();
        assert_eq!(s.verify(OPS), Some(("ops", Scopes::ADMIN)));
    }

    #[test]
    fn parse_errors_never_echo_the_token() {
        let secret = "SUPERSECRETVALUE123";
        let cases: Vec<(String, usize, Option<&str>)> = vec![
            (secret.to_owned(), 1, None),
            (format!("a:read:{CI},{secret}"), 2, None),
            (format!("svc:{secret}"), 1, None),
            (format!("{secret}:read:x"), 1, Some("SUPERSECRETVALUE123")),
            (format!("svc:{secret}:{CI}"), 1, Some("svc")),
            (format!("svc:read+{secret}:{CI}"), 1, Some("svc")),
            (format!("svc::{secret}"), 1, Some("svc")),
            (format!("svc:read:sha256:{secret}"), 1, Some("svc")),
            ("svc:read:short".to_owned(), 1, Some("svc")),
            (format!("svc:read:{secret} x"), 1, Some("svc")),
            (format!("b@d:read:{secret}"), 1, None),
            (format!(":read:{secret}"), 1, None),
            (format!("a:read:{secret},a:admin:{CI}"), 2, Some("a")),
            (format!("a:read:{secret},b:admin:{secret}"), 2, Some("b")),
            (
                format!("a:read:{},b:admin:{secret}", hash_token(secret)),
                2,
                Some("b"),
            ),
        ];
        for (input, entry, name) in cases {
            let e = TokenSet::parse(&input).expect_err(&input);
            // A name that is really a misplaced token is the one thing that can appear, and
            // only when it is shaped like a name and followed by two more fields.
            if name != Some("SUPERSECRETVALUE123") {
                assert!(!e.to_string().contains(secret), "{input} -> {e}");
                assert!(!format!("{e:?}").contains(secret), "{input} -> {e:?}");
            }
            assert_eq!(e.entry, entry, "{input} -> {e}");
            if name != Some("SUPERSECRETVALUE123") {
                assert_eq!(e.name.as_deref(), name, "{input} -> {e}");
            }
        }
    }

    #[test]
    fn errors_name_the_variable_the_entry_and_the_rule() {
        let e = TokenSet::parse(&format!("a:read:{CI},ci:enqueue:short-tok")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "SLIPWAY_API_TOKENS: entry 2 (\"ci:enqueue:…\"): the token is 9 characters, \
             at least 16 are required"
        );
        let e = TokenSet::parse("ci:bogus:0123456789abcdefXYZ").unwrap_err();
        assert_eq!(
            e.to_string(),
            "SLIPWAY_API_TOKENS: entry 1 (\"ci:…\"): unknown scope (allowed: enqueue, read, \
             admin, joined with +)"
        );
        let e = TokenSet::parse("0123456789abcdefXYZ").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "SLIPWAY_API_TOKENS: entry 1 (\"…\"): the entry has 1 `:`-separated field,"
            ),
            "{e}"
        );
    }

    #[test]
    fn debug_redacts() {
        let s = set();
        let dbg = format!("{s:?}");
        assert!(
            dbg.contains("catalog") && dbg.contains("<redacted>"),
            "{dbg}"
        );
        assert!(!dbg.contains(CI) && !dbg.contains(OPS), "{dbg}");
        let hashed = hash_token(OPS);
        assert!(!dbg.contains(&hashed[7..]), "{dbg}");
        assert!(!dbg.contains(&hashed[7..15]), "no digest prefix either");
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER abc "), Some("abc"));
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Basic abc",
            "Bearer a b",
            "Bearerabc",
            "Bearer a\tb",
        ] {
            assert_eq!(bearer_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn scopes() {
        assert_eq!(Scopes::from_name("read"), Some(Scopes::READ));
        assert_eq!(Scopes::from_name("READ"), None);
        assert_eq!(Scopes::ALL, Scopes::ENQUEUE | Scopes::READ | Scopes::ADMIN);
        assert_eq!(Scopes::NONE.to_string(), "none");
        assert!(Scopes::ALL.contains(Scopes::NONE));
    }
}
