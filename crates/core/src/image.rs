//! Container image references, parsed by the grammar of the distribution project
//! (`github.com/distribution/reference`), so that a reference the API accepts is one the
//! registry, BuildKit and the kubelet all accept too:
//!
//! ```text
//! reference   := name [ ":" tag ] [ "@" digest ]
//! name        := [ domain "/" ] path
//! domain      := host [ ":" port ]          host: DNS name, IPv4, or [IPv6]
//! path        := component ( "/" component )*
//! component   := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag         := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest      := ( "sha256:" 64 hex | "sha384:" 96 hex | "sha512:" 128 hex ), lowercase
//! ```
//!
//! As in Docker, the first component is the domain only if it contains `.` or `:` or is
//! `localhost` (or has an uppercase letter, which a path never may); the name is at most 255
//! characters. Digests are limited to the algorithms OCI registers, because a registry rejects
//! any other.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The longest name (domain and path) the distribution grammar allows.
pub const MAX_NAME_LEN: usize = 255;
/// The longest tag.
pub const MAX_TAG_LEN: usize = 128;

/// A parsed image reference. `Display` gives back the canonical text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef {
    /// Registry host and optional port, e.g. `localhost:5000`; `None` means the runtime's
    /// default registry.
    pub domain: Option<String>,
    /// Repository path, e.g. `org/app`.
    pub path: String,
    pub tag: Option<String>,
    /// `algorithm:hex`.
    pub digest: Option<String>,
}

/// Why a string is not an image reference. Messages never echo the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("image reference is empty")]
    Empty,
    #[error("image name is longer than {MAX_NAME_LEN} characters")]
    NameTooLong,
    #[error("image registry host or port is invalid")]
    InvalidDomain,
    #[error(
        "image path component is invalid (lowercase letters and digits, separated by '.', '_', '__' or '-')"
    )]
    InvalidPath,
    #[error("image tag is invalid (1-128 of A-Z a-z 0-9 _ . -, not starting with '.' or '-')")]
    InvalidTag,
    #[error("image digest is invalid (sha256:<64 hex>, sha384:<96 hex> or sha512:<128 hex>)")]
    InvalidDigest,
}

impl ImageRef {
    /// The name without tag or digest: `[domain/]path`.
    pub fn name(&self) -> String {
        match &self.domain {
            Some(d) => format!("{d}/{}", self.path),
            None => self.path.clone(),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.domain {
            write!(f, "{d}/")?;
        }
        f.write_str(&self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ImageRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl TryFrom<String> for ImageRef {
    type Error = ImageRefError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        parse(&s)
    }
}

impl From<ImageRef> for String {
    fn from(r: ImageRef) -> String {
        r.to_string()
    }
}

/// Parses a full reference.
pub fn parse(s: &str) -> Result<ImageRef, ImageRefError> {
    if s.is_empty() {
        return Err(ImageRefError::Empty);
    }
    // Everything valid is ASCII; rejecting the rest first keeps the byte slicing below safe.
    if !s.is_ascii() {
        return Err(ImageRefError::InvalidPath);
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => {
            if !is_digest(d) {
                return Err(ImageRefError::InvalidDigest);
            }
            (r, Some(d.to_owned()))
        }
        None => (s, None),
    };
    // A tag is after the last ':' that follows the last '/' (a ':' before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let i = last_slash + i;
            let t = &rest[i + 1..];
            if !is_tag(t) {
                return Err(ImageRefError::InvalidTag);
            }
            (&rest[..i], Some(t.to_owned()))
        }
        None => (rest, None),
    };
    let (domain, path) = split_domain(name)?;
    Ok(ImageRef {
        domain: domain.map(str::to_owned),
        path: path.to_owned(),
        tag,
        digest,
    })
}

/// Parses a bare name (`[domain/]path`), with no tag or digest.
pub fn parse_name(s: &str) -> Result<(Option<&str>, &str), ImageRefError> {
    if s.is_empty() {
        return Err(ImageRefError::Empty);
    }
    if !s.is_ascii() {
        return Err(ImageRefError::InvalidPath);
    }
    split_domain(s)
}

fn split_domain(name: &str) -> Result<(Option<&str>, &str), ImageRefError> {
    if name.is_empty() {
        return Err(ImageRefError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ImageRefError::NameTooLong);
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            if !is_domain(first) {
                return Err(ImageRefError::InvalidDomain);
            }
            (Some(first), rest)
        }
        _ => (None, name),
    };
    if !is_path(path) {
        return Err(ImageRefError::InvalidPath);
    }
    Ok((domain, path))
}

/// `host[:port]`, host a DNS name, dotted IPv4 or a bracketed IPv6 address.
pub fn is_domain(s: &str) -> bool {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else {
            return false;
        };
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match after {
            "" => (v6, None),
            p => match p.strip_prefix(':') {
                Some(p) => (v6, Some(p)),
                None => return false,
            },
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host_ok =
        s.starts_with('[') || (!host.is_empty() && host.split('.').all(is_domain_component));
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

fn is_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_path(p: &str) -> bool {
    !p.is_empty() && p.split('/').all(is_path_component)
}

/// `[a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*`
pub fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        // a run of alphanumerics
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // a separator: ".", "_", "__" or "-"+
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == b.len() {
            return false;
        }
    }
}

/// `[\w][\w.-]{0,127}` with `\w` = ASCII word characters.
pub fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b.iter().all(|x| word(*x) || *x == b'.' || *x == b'-')
}

/// A digest of an OCI-registered algorithm with lowercase hex of the right length.
pub fn is_digest(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let want = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == want
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn accepts_the_usual_shapes() {
        type Case<'a> = (&'a str, Option<&'a str>, &'a str, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            ("nginx", None, "nginx", None),
            ("nginx:1.27", None, "nginx", Some("1.27")),
            ("org/app", None, "org/app", None),
            (
                "library/nginx:latest",
                None,
                "library/nginx",
                Some("latest"),
            ),
            ("localhost/app", Some("localhost"), "app", None),
            (
                "localhost:5000/org/app:abc",
                Some("localhost:5000"),
                "org/app",
                Some("abc"),
            ),
            (
                "ghcr.io/org/app_x__y-z--w.v:v1_2-3.4",
                Some("ghcr.io"),
                "org/app_x__y-z--w.v",
                Some("v1_2-3.4"),
            ),
            (
                "registry.kube-system.svc.cluster.local:80/a",
                Some("registry.kube-system.svc.cluster.local:80"),
                "a",
                None,
            ),
            ("10.0.0.1:5000/a/b/c", Some("10.0.0.1:5000"), "a/b/c", None),
            ("[::1]:5000/app", Some("[::1]:5000"), "app", None),
            (
                "Registry.Example.com/app",
                Some("Registry.Example.com"),
                "app",
                None,
            ),
        ];
        for (input, domain, path, tag) in cases {
            let r = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.domain.as_deref(), *domain, "{input}");
            assert_eq!(r.path, *path, "{input}");
            assert_eq!(r.tag.as_deref(), *tag, "{input}");
            assert_eq!(r.to_string(), *input, "round trip");
        }
        let r = parse(&format!("ghcr.io/org/app:v1@{D}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.tag.as_deref(), Some("v1"));
        let r = parse(&format!("app@{D}")).unwrap();
        assert_eq!((r.tag, r.digest.as_deref()), (None, Some(D)));
    }

    #[test]
    fn rejects_hostile_and_malformed_references() {
        let long_path = "a".repeat(256);
        let long_tag = format!("app:{}", "t".repeat(129));
        let bad = [
            "",
            "Org/App", // uppercase path (first part is a domain, rest invalid)
            "org/App",
            "org//app",
            "/app",
            "app/",
            "-app",
            "app-",
            "a..b",
            "a___b",
            "app:",
            ":tag",
            "app:-tag",
            "app:.tag",
            "app:ta/g",
            "app@",
            "app@sha256:abc",
            "app@md5:0123456789abcdef0123456789abcdef",
            "app@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
            "ghcr.io:/app",
            "ghcr.io:abc/app",
            "ghcr.io:123456/app",
            "-ghcr.io/app",
            "gh_cr.io/app",
            "[::1/app",
            "[]/app",
            "app name",
            "app\nname",
            "app\0",
            "apé",
            "org/app;rm -rf",
            "--help",
            long_path.as_str(),
            long_tag.as_str(),
            "docker://nginx",
            "https://ghcr.io/app",
        ];
        for b in bad {
            assert!(parse(b).is_err(), "{b:?} should be rejected");
        }
    }

    #[test]
    fn tag_and_component_grammar_edges() {
        assert!(is_tag("_"));
        assert!(is_tag(&"a".repeat(128)));
        assert!(!is_tag(&"a".repeat(129)));
        assert!(is_path_component("a-----b"));
        assert!(is_path_component("a__b"));
        assert!(!is_path_component("a.-b"));
        assert!(!is_path_component("a_.b"));
    }

    #[test]
    fn serde_uses_the_string_form() {
        let r: ImageRef = serde_json::from_str("\"ghcr.io/org/app:v1\"").unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"ghcr.io/org/app:v1\"");
        assert!(serde_json::from_str::<ImageRef>("\"Bad Ref\"").is_err());
    }
}
